"""postergen: train GANs on movie posters and generate new ones."""

__version__ = "0.1.0"
