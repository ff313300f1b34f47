"""GAN models: DCGAN-family generator and discriminator built from a ModelConfig."""

from postergen.models.dcgan import (
    Discriminator,
    Generator,
    MinibatchStd,
    ModelConfig,
    build_models,
    count_params,
    init_weights,
)

__all__ = [
    "Discriminator",
    "Generator",
    "MinibatchStd",
    "ModelConfig",
    "build_models",
    "count_params",
    "init_weights",
]
