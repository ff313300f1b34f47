"""Training: losses, augmentation and the training loop."""
