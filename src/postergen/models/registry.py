"""The model registry: architecture name -> how to build it, for every reader and trainer.

A run's config.json records `kind` (the run kind that trains it) and `arch` (a name here); the
trainers build through `get(arch)`, and sample, export, evaluate, report and the studio rebuild a
generator through `generator(config)`. The CLI's choices and help and train's name checks come from
ARCHS and DISCRIMINATORS, so adding a model family is its module plus one entry in ARCHS, and a
discriminator its class plus one entry in DISCRIMINATORS (docs/architecture.md). What a model needs
from training (its init, options, idle parts, loss parts) it says itself (models/verdict.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from postergen.checkpoint import run_kind
from postergen.config import DATA_FIELDS, TrainConfig, check_choice, flag
from postergen.errors import UserError
from postergen.models import dcgan, fastgan, sr
from postergen.models.ensemble import EnsembleDiscriminator
from postergen.models.projected import ProjectedDiscriminator

# A gan architecture is named by its generator (what every reader rebuilds); the discriminator, used
# only in training, is the model config's `discriminator` field.
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "dcgan": dcgan.Discriminator, "projected": ProjectedDiscriminator, "ensemble": EnsembleDiscriminator,
    "fastgan": fastgan.Discriminator}


def discriminator(name: str) -> type[nn.Module]:
    """The registered D class `name`; a one-line error otherwise."""
    if name not in DISCRIMINATORS:
        raise UserError(f"unknown discriminator {name!r}; known: {', '.join(DISCRIMINATORS)}")
    return DISCRIMINATORS[name]


def init(model: nn.Module) -> nn.Module:
    """`model` after its own initialisation, init_weights(); a model without one keeps PyTorch's."""
    if hasattr(model, "init_weights"):
        model.init_weights()
    return model


def gan(generator: Callable[[Any], nn.Module]) -> Callable[[Any], tuple[nn.Module, nn.Module]]:
    """The builder of a family whose config names its D (`discriminator`): (G, D), each initialised by
    its own init_weights. Both are made before either is initialised, G first: the random draws of
    every earlier version, so old seeds give the same weights."""
    def build(cfg: Any) -> tuple[nn.Module, nn.Module]:
        G, D = generator(cfg), discriminator(cfg.discriminator)(cfg)
        return init(G), init(D)
    return build


@dataclass(frozen=True)
class Arch:
    kind: str  # the run kind that trains it: "gan" or "sr"
    config: type  # its config dataclass: one default per field; config.json "model" holds its fields
    build: Callable[[Any], Any]  # config -> what the trainer needs: (G, D) for gan, the network for sr
    generator: Callable[[Any], nn.Module] | None = None  # config -> G alone, for drawing (gan only)
    about: str = ""  # its one line in --help


ARCHS: dict[str, Arch] = {
    "dcgan": Arch("gan", dcgan.ModelConfig, gan(dcgan.Generator), dcgan.Generator, "the tutorial's"),
    "fastgan": Arch("gan", dcgan.ModelConfig, gan(fastgan.Generator), fastgan.Generator,
                    "lightweight, skip-layer excitation"),
    # the super-resolution nets, by the names models/sr.py gives them
    **{name: Arch("sr", sr.SRConfig, net, about=net.ABOUT) for name, net in sr.NETS.items()},
}


def names(kind: str) -> list[str]:
    """The registered architectures of a run kind, in registration order: the CLI's choices."""
    return [n for n, a in ARCHS.items() if a.kind == kind]


def _either(abouts: dict[str, str]) -> str:
    """'a (about a), b or c (about c)'."""
    items = [f"{n} ({about})" if about else n for n, about in abouts.items()]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def describe(kind: str) -> str:
    """The architectures of a run kind with their one lines, for --arch's help."""
    return _either({n: ARCHS[n].about for n in names(kind)})


def describe_discriminators() -> str:
    """The discriminators with their one lines, for --discriminator's help."""
    return _either({n: getattr(d, "ABOUT", "") for n, d in DISCRIMINATORS.items()})


def own_options(name: str) -> list[dataclasses.Field]:
    """Fields of gan family `name`'s config that TrainConfig has no option for and the data does not
    set: its own options, `--<field>` on the command line, kept in TrainConfig.model_options."""
    shared = {f.name for f in dataclasses.fields(TrainConfig)} | set(DATA_FIELDS)
    return [f for f in dataclasses.fields(get(name, "gan").config) if f.name not in shared]


def check_names(cfg: TrainConfig) -> None:
    """The names in a TrainConfig that config.check cannot see, as its one-line ValueErrors: --arch a
    gan family, --discriminator a registered D, and model_options the family's own options."""
    check_choice("--arch", cfg.arch, names("gan"))
    check_choice("--discriminator", cfg.discriminator, list(DISCRIMINATORS))
    own = {f.name for f in own_options(cfg.arch)}
    stray = sorted(set(cfg.model_options) - own)
    if stray:
        takes = f" (it takes {', '.join(flag(n) for n in sorted(own))})" if own else ""
        raise ValueError(f"{flag(stray[0])} is not an option of --arch {cfg.arch}{takes}")
    # The family's own checks of its options, at its config's default shape: before any data is read.
    config_class = get(cfg.arch, "gan").config
    shape = {f.name: f.default for f in dataclasses.fields(config_class) if f.name in DATA_FIELDS}
    cfg.model_config(shape["height"], shape["width"], shape["n_genres"], config_class)


def get(name: str, kind: str | None = None) -> Arch:
    """The registered architecture `name` (of `kind`, when given); a one-line error otherwise."""
    known = [n for n, a in ARCHS.items() if kind is None or a.kind == kind]
    if name not in known:
        raise UserError(f"unknown {kind + ' ' if kind else ''}architecture {name!r}; known: {', '.join(known)}")
    return ARCHS[name]


def model_config(config: dict) -> Any:
    """The model config object of a run's config.json (or checkpoint) dict."""
    arch = get(run_kind(config)[1])
    return arch.config(**config["model"])


def generator(config: dict) -> nn.Module:
    """A freshly built (untrained) generator for a gan run's config dict; load its weights next."""
    arch = get(run_kind(config)[1], kind="gan")
    return arch.generator(arch.config(**config["model"]))
