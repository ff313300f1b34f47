"""Training: the run engine (run.py) with its GAN and SR tasks, the step, objectives, checkpoints."""
