"""Training configuration: one dataclass, one default per field, and the presets.

The field defaults are the `stable` preset; `seed` is the student project's recipe, written as
overrides. The CLI builds its options from these fields, so defaults live only here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

# Limits of the options, far beyond any sensible value: they turn a typo (an extra zero, a pasted
# number) into a one-line error instead of an out-of-memory crash or an overflow deep in torch.
MAX_STEPS = 100_000_000  # training steps, and the *-every intervals
MAX_MINUTES = 1_000_000.0  # a time budget (--minutes): about two years
MAX_BATCH = 65_536  # images per step
MAX_CHANNELS = 4096  # z_dim, ngf, ndf, max_channels, genre_dim
MAX_REPEAT = 1000  # d_every, g_steps, r1_every
MAX_BLOCKS = 64  # --freeze-d: beyond any D's block count (each D's own count is checked when it is built)
MAX_KEEP = 10_000  # checkpoints kept
MAX_SEED = 2**32 - 1  # the seed range of numpy and most tools
MAX_STUDIO_SEED = 2**31 - 1  # the studio's: seeds stay exact as JavaScript numbers and fit every RNG
MAX_WEIGHT = 1e4  # loss weights (R1, feature D): far above any useful value, and finite in float32 gradients
MAX_EMA_KIMG = 1e6  # an EMA half-life longer than any run (1e9 images)
MAX_TRUNCATION = 5.0  # beyond about 3 the truncation trick no longer truncates a Gaussian latent
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp32")
ADAPTIVE = "ada"  # --augment ada: engine/ada.py, instead of a fixed policy list
AUGMENT_POLICIES = ("color", "translation", "cutout")  # DiffAugment's; engine/augment.py implements each


def doc_field(default, doc: str):
    """A dataclass field with its one-line doc, which the CLI turns into --help text."""
    return field(default=default, metadata={"doc": doc})



D_NORMS = ("batch", "none")
DATA_FIELDS = ("height", "width", "n_genres")  # model config fields the dataset sets, never options
FEATURE_RES = (64, 512)  # the projected D's input range in pixels (width; a multiple of 32)
MIN_WIDTH, MAX_WIDTH = 32, 256
# Output widths in pixels G and D are built for: powers of two, each one more stride-2 layer.
WIDTHS = tuple(2**k for k in range(MIN_WIDTH.bit_length() - 1, MAX_WIDTH.bit_length()))  # 32 ... 256
SEED_MODEL = dict(d_norm="batch", spectral_norm=False, minibatch_std=False)  # the tutorial's netD


@dataclass
class ModelConfig:
    """Shape and options of the DCGAN family's G and D (arch "dcgan"); one default per field, the
    stable preset's. TrainConfig takes its model options' defaults and docs from here."""

    height: int = doc_field(64, "output height in pixels; == width (square) or 1.5 * width (2:3 posters)")
    width: int = doc_field(64, "output width in pixels, a power of two in 32..256")
    z_dim: int = doc_field(100, "latent size (the tutorial's nz)")
    ngf: int = doc_field(64, "G width at its last hidden layer (the tutorial's ngf); widths double per layer toward z")
    ndf: int = doc_field(64, "D width at its first layer (the tutorial's ndf); doubles per stride-2 layer; the projected "
                             "D's mini-discriminators scale with it (64: the reference's widths)")
    max_channels: int = doc_field(512, "cap on any layer's width (the tutorial at 64 px never exceeds 512)")
    n_genres: int = doc_field(0, "number of genres; 0 = unconditional, else G and D take a (B, n_genres) multi-hot")
    genre_dim: int = doc_field(64, "size of G's genre embedding")
    genre_bn: bool = doc_field(False, "FastGAN's G: genres also set the gain and bias of every upsampling block's "
                                      "BatchNorm (the reference's conditional form), besides the embedding beside z")
    d_norm: str = doc_field("none", "normalisation in D: batch (the seed) or none")
    spectral_norm: bool = doc_field(True, "spectral norm on D's layers (bounds D's Lipschitz constant)")
    minibatch_std: bool = doc_field(True, "minibatch-std channel in D (lets D see a lack of variety)")
    discriminator: str = doc_field("dcgan", "D, a name in models/registry.py's DISCRIMINATORS (`postergen train "
                                            "--help` lists them); any generator trains with any D")
    feature_res: int = doc_field(224, "projected and ensemble D: width in pixels images are resized to before the "
                                      "frozen network (its ImageNet size is 224), a multiple of 32")

    def __post_init__(self):
        check_size(self.height, self.width)
        if self.d_norm not in D_NORMS:
            raise ValueError(f"d_norm must be one of {', '.join(D_NORMS)}, got {self.d_norm!r}")
        check_feature_res(self.feature_res)
        for name in ("z_dim", "ngf", "ndf", "max_channels", "genre_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_genres < 0:
            raise ValueError(f"n_genres must be >= 0, got {self.n_genres}")

    @property
    def start_hw(self) -> tuple[int, int]:
        """Spatial size (H, W) of G's first map and D's last: 4x4, or 6x4 for 2:3 posters."""
        return (4, 4) if self.height == self.width else (6, 4)

    @property
    def n_scales(self) -> int:
        """Stride-2 layers between the start map and the image: 3 at 32 px ... 6 at 256 px."""
        return int(math.log2(self.width)) - 2


def check_size(height: int, width: int) -> None:
    """The one rule for the image sizes G and D support (ValueError otherwise): a width in WIDTHS,
    and a square or 2:3 (W x H = w x 1.5w) shape."""
    if width not in WIDTHS:
        raise ValueError(f"width must be a power of two in {MIN_WIDTH}..{MAX_WIDTH} px, got {width} px")
    if height != width and 2 * height != 3 * width:
        raise ValueError(f"height must equal width ({width} px) or 1.5 * width ({3 * width // 2} px), got {height} px")


def check_feature_res(res: int) -> None:
    lo, hi = FEATURE_RES
    if not (lo <= res <= hi and res % 32 == 0):
        raise ValueError(f"--feature-res must be a multiple of 32 between {lo} and {hi} px (got {res})")


def _model(name: str):
    """A TrainConfig option that sets a ModelConfig field: its default and doc are the model's."""
    f = ModelConfig.__dataclass_fields__[name]
    return doc_field(f.default, f.metadata["doc"])


@dataclass
class TrainConfig:
    """Everything `postergen train` needs besides the dataset and run folder."""

    preset: str = doc_field("stable", "recipe the other defaults come from: stable, seed or projected")
    # duration (--epochs and --kimg on the CLI are converted to steps)
    steps: int = doc_field(3000, "training steps; one step = one D update and one G update")
    minutes: float = doc_field(0.0, "time budget: stop once the run has trained this many minutes in all "
                                    "(docs/training.md); 0: none")
    batch: int = doc_field(64, "images per step per process (under torchrun the global batch is batch x processes)")
    # model
    arch: str = doc_field("dcgan", "generator, a gan architecture of models/registry.py (`postergen train --help` "
                                   "lists them)")
    z_dim: int = _model("z_dim")
    ngf: int = _model("ngf")
    ndf: int = _model("ndf")
    max_channels: int = _model("max_channels")
    conditional: bool = doc_field(True, "condition on genres when the dataset has them")
    genre_dim: int = _model("genre_dim")
    genre_bn: bool = _model("genre_bn")
    label_dropout: float = doc_field(0.1, "share of samples trained without genres, so sampling without genres works")
    d_norm: str = _model("d_norm")
    spectral_norm: bool = _model("spectral_norm")
    minibatch_std: bool = _model("minibatch_std")
    discriminator: str = _model("discriminator")
    feature_res: int = _model("feature_res")
    # Objective settings, not model fields: D's modules never read them, the step does (engine/step.py).
    feature_weight: float = doc_field(0.1, "ensemble D: weight w of the feature D's loss in D's and G's objective, "
                                           "loss = loss(dcgan D) + w * loss(feature D); 0 = the feature D never counts")
    feature_start: int = doc_field(1500, "ensemble D: step from which the feature D counts; before it it is neither "
                                         "run nor trained (docs/training.md says why 1500)")
    # loss and optimisation
    loss: str = doc_field("hinge", "adversarial loss: bce (the seed) or hinge")
    lr_g: float = doc_field(2e-4, "G learning rate (Adam)")
    lr_d: float = doc_field(2e-4, "D learning rate (Adam); higher than lr_g is TTUR")
    beta1: float = doc_field(0.0, "Adam beta1")
    beta2: float = doc_field(0.99, "Adam beta2")
    d_every: int = doc_field(1, "update D only every K steps (the seed's D update skips)")
    g_steps: int = doc_field(1, "G updates per step")
    real_label: float = doc_field(1.0, "BCE target for real images; 0.9 is one-sided label smoothing")
    r1_gamma: float = doc_field(0.0, "R1 penalty weight on D's gradient at real images; 0 disables")
    mode_seeking: float = doc_field(0.0, "weight of MSGAN's mode-seeking term in G's loss: each G batch is "
                                         "pairs of noise with the same genres, and G pays for pairs that "
                                         "look alike (variety within a genre); 0: off")
    r1_every: int = doc_field(4, "apply R1 every K D updates, scaled by K (lazy regularisation)")
    ema_kimg: float = doc_field(10.0, "half-life of the EMA of G's weights used for sampling, in thousands of images; 0 disables")
    ema_rampup: float = doc_field(0.05, "early on the half-life is at most this share of images seen, so the EMA keeps up; 0: off")
    augment: str = doc_field("color,translation,cutout", "DiffAugment policies on real and fake, D and G steps; empty: "
                                                         "none; ada: adaptive (each augmentation with a probability p "
                                                         "that follows D's overconfidence on real posters)")
    # run
    seed: int = doc_field(0, "random seed for weights, noise and data order")
    device: str = doc_field("auto", "auto, cpu, cuda or mps")
    channels_last: bool = doc_field(True, "NHWC memory layout for convolutions (faster on CUDA and on CPU)")
    sync_bn: bool = doc_field(False, "under torchrun, BatchNorm statistics over all processes' batches (BatchNorm models)")
    cuda_graph: bool = doc_field(False, "capture each kind of training step once as a CUDA graph and replay it "
                                        "(CUDA, single process; removes per-kernel launch cost at small batches)")
    precision: str = doc_field("auto", "auto (bf16 autocast on CUDA and on CPUs with native bf16), bf16 or fp32")
    log_every: int = doc_field(25, "steps between metric lines (one host sync each)")
    sample_every: int = doc_field(250, "steps between fixed-noise sample grids")
    checkpoint_every: int = doc_field(500, "steps between checkpoints")
    keep_checkpoints: int = doc_field(3, "step checkpoints kept besides latest.pt")
    tensorboard: bool = doc_field(True, "also write TensorBoard scalars and images if tensorboard is installed")
    init_from: str = doc_field("", "start from this trained run folder, checkpoint or exported generator (genres "
                                   "mapped by name; fresh optimisers, step 0); empty: fresh weights")
    # Fixed for a run's life (not in RESUMABLE): it sets which parameters D's optimiser holds.
    freeze_d: int = doc_field(0, "FreezeD: D's first N blocks, nearest the image, never train (with --init-from: "
                                 "keep the parent's low-level features); 0: all of D trains")
    # A family with its own config (models/registry.py) has options no field above names: the CLI
    # makes them from its config's fields, and they are kept here.
    model_options: dict = field(default_factory=dict, metadata={
        "doc": "the arch's own options: fields of its config that are no option above"})

    def model_config(self, height: int, width: int, n_genres: int, config_class: type | None = None):
        """The model this training builds, of the arch's config class (ModelConfig unless given): the
        options named like its fields and its own options, plus the data's shape."""
        config_class = config_class or ModelConfig
        names = {f.name for f in dataclasses.fields(config_class)} - set(DATA_FIELDS)
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in names}
        return config_class(height=height, width=width, n_genres=n_genres if self.conditional else 0,
                            **options, **self.model_options)


# TrainConfig options that are ModelConfig fields (the rest of ModelConfig comes from the data).
MODEL_OPTIONS = [f.name for f in dataclasses.fields(TrainConfig) if f.name in ModelConfig.__dataclass_fields__]

# The seed: PyTorch's DCGAN tutorial as the student team ran it (64 px, batch 128, Adam 2e-4
# beta1 0.5, BCE, one D update per G update, BatchNorm D, no conditioning, no tricks).
PRESETS: dict[str, dict] = {
    "stable": {},
    # stable's losses and optimiser with FastGAN's G and the projected D; DCGAN's G collapsed under
    # this D in every measured setting, FastGAN's did not (docs/training.md). Lite0 at 64 px: steps
    # 2.9x faster than at 128 px and 9.5x than at 224 on a 2-core CPU. Genres in G's BatchNorms:
    # at 20k images FD 104 vs 127, SWD 97 vs 140, genre top-1 0.37 vs 0.15, 13% slower.
    # (Runs from before genre_bn existed lack the field and load with its default, False.)
    # Widths: the measured ones on a CPU (ngf 16, ndf 32: 48 to 60 img/s at 64 px on 2 cores, and the
    # quality tables'); on CUDA, CUDA_PRESETS'.
    "projected": dict(arch="fastgan", discriminator="projected", feature_res=64, genre_bn=True, ngf=16, ndf=32),
    "seed": dict(
        batch=128, conditional=False, **SEED_MODEL,
        loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, r1_gamma=0.0, ema_kimg=0.0, augment="",
    ),
}

# What a preset sets differently on CUDA (from_preset's device_type). The projected preset keeps the
# reference's widths there, ngf = ndf = 64 (not yet measured on a GPU: benchmarks/gpu.sh's curves).
CUDA_PRESETS: dict[str, dict] = {"projected": dict(ngf=64, ndf=64)}

# Fields a resumed run may change: how long it runs, how it reports, where and how fast it runs. Every
# other field defines the model or the optimisation and stays fixed for the life of a run (a new field
# too, until it is listed here); train-sr's SR_RESUMABLE is the same kind of list.
RESUMABLE = {
    "steps", "minutes", "device", "channels_last", "sync_bn", "cuda_graph", "precision", "log_every", "sample_every",
    "checkpoint_every", "keep_checkpoints", "tensorboard",
}


def from_preset(preset: str, device_type: str | None = None, **overrides) -> TrainConfig:
    """Preset values (CUDA_PRESETS' on top when device_type is "cuda"), then explicit overrides. device_type:
    the kind of device the run trains on; None: the `device` override unless it is "auto", else "cpu".
    Unknown presets or fields raise ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
    if device_type is None:
        device = overrides.get("device", "auto")
        device_type = "cpu" if device == "auto" else device
    on_device = CUDA_PRESETS.get(preset, {}) if device_type == "cuda" else {}
    return TrainConfig(**{**PRESETS[preset], **on_device, **overrides, "preset": preset})


def flag(name: str) -> str:
    """A config field as the user types it: lr_g -> --lr-g."""
    return "--" + name.replace("_", "-")


def _number(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def check_range(option: str, value, lo=None, hi=None, unit: str = "", lo_open: bool = False,
                hi_open: bool = False) -> None:
    """ValueError naming the option, the value given and the unit unless lo <= value <= hi (< or >
    with *_open); a float must also be finite (NaN fails every comparison, inf passes `> 0`)."""
    is_float = isinstance(value, float)
    ok = not is_float or math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if ok:
        return
    u = f" {unit}" if unit else ""
    if lo is not None and hi is not None and not (lo_open or hi_open):
        want = f"between {_number(lo)} and {_number(hi)}{u}"
    else:
        parts = [f"{'greater than' if lo_open else 'at least'} {_number(lo)}{u}"] if lo is not None else []
        parts += [f"{'less than' if hi_open else 'at most'} {_number(hi)}{u}"] if hi is not None else []
        want = " and ".join(parts)
    if is_float:
        want = f"a finite number {want}".rstrip()
    got = _number(value) + (u if not is_float or math.isfinite(value) else "")
    raise ValueError(f"{option} must be {want} (got {got})")


def check_choice(option: str, value: str, choices) -> None:
    """ValueError naming the option unless value is one of choices."""
    if value not in choices:
        names = [repr(c) if c == "" else str(c) for c in choices]
        raise ValueError(f"{option} must be {', '.join(names[:-1])} or {names[-1]}, not {value!r}")


def check_augment(policy: str) -> None:
    """'' (no augmentation) or comma-separated DiffAugment policies; blank or unknown names are errors."""
    if policy in ("", ADAPTIVE):
        return
    names = [p.strip() for p in policy.split(",")]
    choose = f"give a comma-separated list of {', '.join(AUGMENT_POLICIES)}, {ADAPTIVE} alone, or '' for none"
    if not all(names):
        raise ValueError(f"--augment {policy!r} has an empty policy name; {choose}")
    unknown = [n for n in names if n not in AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"--augment {policy!r}: unknown policy {', '.join(unknown)}; {choose}")


def check_run_options(cfg, intervals: tuple[str, ...]) -> None:
    """The options every kind of training run has (GAN and SR alike): seed, time budget, device,
    precision, its `*_every` intervals (in steps) and the checkpoints kept. ValueError as check_range's."""
    def limit(name: str, *args, **kw) -> None:
        check_range(flag(name), getattr(cfg, name), *args, **kw)

    limit("seed", 0, MAX_SEED)
    limit("minutes", 0.0, MAX_MINUTES, "minutes")
    check_choice("--device", cfg.device, DEVICES)
    check_choice("--precision", cfg.precision, PRECISIONS)
    for name in intervals:
        limit(name, 1, MAX_STEPS, "steps")
    limit("keep_checkpoints", 0, MAX_KEEP, "checkpoints")


def check(cfg: TrainConfig) -> None:
    """Range checks with messages a user can act on: ValueError naming the option, the value and its unit.
    The names of models (--arch, --discriminator) are the registry's to check: models.registry.check_names."""
    def limit(name: str, *args, **kw) -> None:
        check_range(flag(name), getattr(cfg, name), *args, **kw)

    check_choice("--preset", cfg.preset, PRESETS)
    limit("steps", 1, MAX_STEPS, "steps")
    limit("batch", 2, MAX_BATCH, "images")
    for name in ("z_dim", "ngf", "ndf", "max_channels", "genre_dim"):
        limit(name, 1, MAX_CHANNELS, "channels")
    limit("label_dropout", 0.0, 1.0)
    check_choice("--d-norm", cfg.d_norm, D_NORMS)
    check_feature_res(cfg.feature_res)
    limit("feature_weight", 0.0, MAX_WEIGHT)
    limit("feature_start", 0, MAX_STEPS, "steps")
    check_choice("--loss", cfg.loss, ("bce", "hinge"))
    limit("lr_g", 0.0, 1.0, lo_open=True)
    limit("lr_d", 0.0, 1.0, lo_open=True)
    limit("beta1", 0.0, 1.0, hi_open=True)  # Adam needs 0 <= beta < 1
    limit("beta2", 0.0, 1.0, hi_open=True)
    limit("d_every", 1, MAX_REPEAT, "steps")
    limit("g_steps", 1, MAX_REPEAT, "G updates")
    limit("real_label", 0.0, 1.0, lo_open=True)
    limit("r1_gamma", 0.0, MAX_WEIGHT)
    limit("r1_every", 1, MAX_REPEAT, "D updates")
    limit("mode_seeking", 0.0, MAX_WEIGHT)
    limit("freeze_d", 0, MAX_BLOCKS, "blocks")
    limit("ema_kimg", 0.0, MAX_EMA_KIMG, "kimg")
    limit("ema_rampup", 0.0, 1.0)
    check_augment(cfg.augment)
    check_run_options(cfg, ("log_every", "sample_every", "checkpoint_every"))
