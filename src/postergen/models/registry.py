"""The model registry: architecture name -> how to build it, for every reader and trainer.

A run's config.json records `kind` (the run kind that trains it) and `arch` (a name here); the
trainers build through `get(arch)`, and sample, export, evaluate, report and the studio rebuild a
generator through `generator(config)`. Adding a model family is its module plus one entry in ARCHS
(docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from postergen.errors import UserError
from postergen.models import dcgan, fastgan, sr
from postergen.models.ensemble import EnsembleDiscriminator
from postergen.models.projected import ProjectedDiscriminator

# A gan architecture is named by its generator (what every reader rebuilds); the discriminator, used
# only in training, is the model config's `discriminator` field.
DISCRIMINATORS = {"dcgan": dcgan.Discriminator, "projected": ProjectedDiscriminator,
                  "ensemble": EnsembleDiscriminator, "fastgan": fastgan.Discriminator}


def _gan(generator: Callable[[Any], nn.Module]) -> Callable[[Any], tuple[nn.Module, nn.Module]]:
    def build(cfg: Any) -> tuple[nn.Module, nn.Module]:
        """(G, D) for cfg. DCGAN-family and FastGAN layers get the tutorial's N(0, 0.02) init (FastGAN's
        reference uses the same); the projected D keeps PyTorch's default init, as its reference does
        (its frozen parts are drawn, not learned), also as the ensemble's feature part, whose base part
        is initialised like the dcgan D."""
        G, D = generator(cfg), DISCRIMINATORS[cfg.discriminator](cfg)
        G.apply(dcgan.init_weights)
        if cfg.discriminator in ("dcgan", "fastgan"):
            D.apply(dcgan.init_weights)
        elif cfg.discriminator == "ensemble":
            D.base.apply(dcgan.init_weights)
        return G, D
    return build


@dataclass(frozen=True)
class Arch:
    kind: str  # the run kind that trains it: "gan" or "sr"
    config: type  # its config dataclass: one default per field; config.json "model" holds its fields
    build: Callable[[Any], Any]  # config -> what the trainer needs: (G, D) for gan, the network for sr
    generator: Callable[[Any], nn.Module] | None = None  # config -> G alone, for drawing (gan only)


ARCHS: dict[str, Arch] = {
    "dcgan": Arch("gan", dcgan.ModelConfig, _gan(dcgan.Generator), dcgan.Generator),
    "fastgan": Arch("gan", dcgan.ModelConfig, _gan(fastgan.Generator), fastgan.Generator),
    "edsr": Arch("sr", sr.SRConfig, sr.build_sr),
    "espcn": Arch("sr", sr.SRConfig, sr.build_sr),
}


def get(name: str, kind: str | None = None) -> Arch:
    """The registered architecture `name` (of `kind`, when given); a one-line error otherwise."""
    names = [n for n, a in ARCHS.items() if kind is None or a.kind == kind]
    if name not in names:
        raise UserError(f"unknown {kind + ' ' if kind else ''}architecture {name!r}; known: {', '.join(names)}")
    return ARCHS[name]


def model_config(config: dict) -> Any:
    """The model config object of a run's config.json (or checkpoint) dict."""
    arch = get(config.get("arch", "dcgan"))
    return arch.config(**config["model"])


def generator(config: dict) -> nn.Module:
    """A freshly built (untrained) generator for a gan run's config dict; load its weights next."""
    arch = get(config.get("arch", "dcgan"), kind="gan")
    return arch.generator(arch.config(**config["model"]))
