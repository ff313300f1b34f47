"""Training the super-resolution network on pairs made from the posters themselves.

High-resolution crops come from a dataset prepared at the target size; their low-resolution
inputs are made on the fly by a randomised degradation (blur, one of three downscalers, noise,
8-bit quantisation, JPEG), so the network also copes with GAN outputs and not only with clean
downscales. Every random choice of step k (posters, crops, flips, degradation) comes from a
generator seeded with (seed, k): resuming continues exactly. The last `val_fraction` of the
posters never train; validation compares the network with bicubic on them.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from postergen import __version__
from postergen.checkpoint import check_kind, read_metrics
from postergen.config import doc_field
from postergen.data.dataset import PosterDataset, open_dataset
from postergen.engine.run import (
    Engine,
    Schedule,
    Task,
    check_dataset,
    dataset_record,
    open_run,
    resume_config,
    start_fresh,
)
from postergen.errors import TrainingDiverged, UserError
from postergen.models import registry
from postergen.models.sr import SRConfig, SRNet, check_sr, sr_forward
from postergen.runfolder import RunFolder, dataset_name
from postergen.runtime import autocast, pick_device, resolve_precision

SR_DEFAULTS = SRConfig()  # the model's defaults live in SRConfig only


@dataclass
class SRTrainConfig:
    """Everything `postergen train-sr` needs besides the dataset and run folder."""

    # model (see SRConfig)
    scale: int = doc_field(SR_DEFAULTS.scale, "enlargement factor: 2 or 4")
    arch: str = doc_field(SR_DEFAULTS.arch, "network, an sr architecture of models/registry.py (`postergen train-sr --help` lists them)")
    channels: int = doc_field(SR_DEFAULTS.channels, "feature width of the network")
    blocks: int = doc_field(SR_DEFAULTS.blocks, "residual blocks (edsr)")
    # duration and optimisation
    steps: int = doc_field(6000, "training steps (one Adam update on one batch each); 6000 x4 steps: ~10 min on 1 CPU core")
    minutes: float = doc_field(0.0, "time budget: stop once the run has trained this many minutes in all "
                                    "(docs/training.md); 0: none")
    batch: int = doc_field(16, "crops per step")
    patch: int = doc_field(32, "low-resolution crop side in pixels; the high-resolution crop is patch x scale")
    lr: float = doc_field(5e-4, "Adam learning rate")
    lr_halve_every: int = doc_field(1500, "halve the learning rate every this many steps; 0: constant")
    # degradation that makes the low-resolution inputs
    blur_prob: float = doc_field(0.5, "share of crops blurred before downscaling")
    blur_max: float = doc_field(0.5, "largest Gaussian blur sigma, in low-resolution pixels (drawn uniformly)")
    noise_prob: float = doc_field(0.25, "share of inputs with Gaussian noise added")
    noise_max: float = doc_field(4.0, "largest noise standard deviation, in 8-bit levels (drawn uniformly)")
    jpeg_prob: float = doc_field(0.25, "share of inputs JPEG-compressed")
    jpeg_min_quality: int = doc_field(50, "lowest JPEG quality drawn (uniformly up to 95)")
    # validation
    val_fraction: float = doc_field(0.05, "last share of the posters held out from training (at least one)")
    val_posters: int = doc_field(32, "held-out posters scored at each validation (whole images); 0: all")
    # run
    seed: int = doc_field(0, "random seed for weights, crops and degradations")
    device: str = doc_field("auto", "auto, cpu, cuda or mps")
    precision: str = doc_field("auto", "auto (bf16 autocast on CUDA and on CPUs with native bf16), bf16 or fp32")
    log_every: int = doc_field(50, "steps between metric lines")
    val_every: int = doc_field(500, "steps between validations (also at the last step)")
    checkpoint_every: int = doc_field(500, "steps between checkpoints")
    keep_checkpoints: int = doc_field(2, "step checkpoints kept besides latest.pt")

    def model_config(self) -> SRConfig:
        return SRConfig(scale=self.scale, arch=self.arch, channels=self.channels, blocks=self.blocks)


# Fields a resumed run may change: how long it runs, how it reports, where it runs.
SR_RESUMABLE = {"steps", "minutes", "log_every", "val_every", "checkpoint_every", "keep_checkpoints", "device", "precision"}
JPEG_MAX_QUALITY = 95
MAX_PATCH = 512  # low-resolution crop side in pixels (a 512 px dataset at x2 is 256)
MAX_VAL_POSTERS = 1_000_000


def check_sr_train(cfg: SRTrainConfig) -> None:
    """Range checks with messages a user can act on: ValueError naming the option, the value and its unit."""
    from postergen.config import MAX_BATCH, MAX_STEPS, check_choice, check_range, check_run_options, flag

    def limit(name: str, *args, **kw) -> None:
        check_range(flag(name), getattr(cfg, name), *args, **kw)

    check_sr(cfg.model_config())
    check_choice("--arch", cfg.arch, registry.names("sr"))
    limit("steps", 1, MAX_STEPS, "steps")
    limit("batch", 1, MAX_BATCH, "crops")
    limit("patch", 4, MAX_PATCH, "px")
    limit("lr", 0.0, 1.0, lo_open=True)
    limit("lr_halve_every", 0, MAX_STEPS, "steps")
    for name in ("blur_prob", "noise_prob", "jpeg_prob"):
        limit(name, 0.0, 1.0)
    limit("blur_max", 0.0, 100.0, "px")  # beyond the largest crop; float32-safe
    # the blur kernel (radius 3 sigma, in high-resolution pixels) must fit inside a crop
    if math.ceil(3 * cfg.blur_max * cfg.scale) >= cfg.patch * cfg.scale:
        raise ValueError(f"--blur-max {cfg.blur_max:g} px blurs across more than a --patch {cfg.patch} px crop "
                         f"(3 sigma); give a --blur-max below {cfg.patch / 3:g} px or a larger --patch")
    limit("noise_max", 0.0, 255.0, "levels")
    limit("jpeg_min_quality", 1, JPEG_MAX_QUALITY)
    limit("val_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
    limit("val_posters", 0, MAX_VAL_POSTERS, "posters")
    check_run_options(cfg, ("log_every", "val_every", "checkpoint_every"))


# ---------------------------------------------------------------------------------------------
# Pure functions: loss, PSNR, degradation

def l1_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    return (sr.float() - hr).abs().mean()  # mean |SR - HR|: sharper than L2, the EDSR choice


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, for uint8 (or [0, 255]) tensors (N, 3, H, W): 10 log10(255^2 / MSE) in dB."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0 ** 2 / mse.clamp(min=1e-10))


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The one source of randomness of a training step; other streams (epoch orders) never overlap it."""
    return torch.Generator().manual_seed((stream << 48) + seed * 1_000_003 + step)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Per-image separable Gaussian blur: x (B, 3, H, W), sigma (B,) in pixels; 0 leaves an image as is."""
    B, C, H, W = x.shape
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    s = sigma.to(x.device).clamp(min=1e-3)[:, None]
    k = torch.exp(-t[None] ** 2 / (2 * s ** 2))  # (B, 2r+1)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(C, 0)  # one kernel per image and channel
    y = F.pad(x.reshape(1, B * C, H, W), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, :, None], groups=B * C)  # vertical
    y = F.conv2d(y, k[:, None, None, :], groups=B * C)  # horizontal
    return y.reshape(B, C, H, W)


def downscale(x: torch.Tensor, scale: int, modes: torch.Tensor) -> torch.Tensor:
    """Per-image downscaler, modes (B,): 0 area, 1 bilinear (what `prepare` uses), 2 bicubic; antialiased."""
    H, W = x.shape[-2] // scale, x.shape[-1] // scale
    out = torch.empty(x.shape[0], x.shape[1], H, W, device=x.device, dtype=x.dtype)
    for mode, name in enumerate(("area", "bilinear", "bicubic")):
        pick = (modes == mode).nonzero().flatten().to(x.device)
        if len(pick):
            extra = {} if name == "area" else {"antialias": True, "align_corners": False}
            out[pick] = F.interpolate(x[pick], size=(H, W), mode=name, **extra)
    return out


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 (3, H, W) through a JPEG encode/decode at `quality` (PIL, 4:2:0 as most encoders)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1).to(image.device)


def degrade(hr: torch.Tensor, scale: int, cfg: SRTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """HR (B, 3, H, W) float in [0, 1] -> LR uint8 (B, 3, H/scale, W/scale), a pure function of `gen`'s state.

    blur (prob, sigma ~ U(0, blur_max) LR px) -> area/bilinear/bicubic downscale -> Gaussian noise
    (prob, std ~ U(0, noise_max) levels) -> 8-bit rounding -> JPEG (prob, quality ~ U(min, 95)).
    All draws happen on the CPU generator, so every device sees the same numbers.
    """
    B = hr.shape[0]
    u = torch.rand(B, 7, generator=gen)
    sigma = torch.where(u[:, 0] < cfg.blur_prob, u[:, 1] * cfg.blur_max * scale, 0.0)  # in HR pixels
    x = gaussian_blur(hr, sigma, radius=math.ceil(3 * cfg.blur_max * scale)) if cfg.blur_max > 0 else hr
    lr = downscale(x, scale, (u[:, 2] * 3).long().clamp(max=2))
    std = torch.where(u[:, 3] < cfg.noise_prob, u[:, 4] * cfg.noise_max / 255.0, 0.0)
    noise = torch.randn(lr.shape, generator=gen) * std[:, None, None, None]
    lr = (lr + noise.to(lr.device)).mul(255).round().clamp(0, 255).to(torch.uint8)
    qualities = cfg.jpeg_min_quality + (u[:, 6] * (JPEG_MAX_QUALITY - cfg.jpeg_min_quality + 1)).long()
    for i in (u[:, 5] < cfg.jpeg_prob).nonzero().flatten().tolist():
        lr[i] = jpeg(lr[i], int(qualities[i]))
    return lr


def clean_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """HR uint8 (N, 3, H, W) -> LR uint8 by antialiased bilinear, the resampling `prepare` uses."""
    lr = downscale(hr.float() / 255, scale, torch.ones(hr.shape[0], dtype=torch.long))
    return lr.mul(255).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# Data: crops of the training posters, whole held-out posters

@dataclass
class Split:
    train: int  # posters [0, train) train
    val: int  # posters [train, train + val) are held out

    @staticmethod
    def of(count: int, val_fraction: float) -> "Split":
        val = max(1, round(count * val_fraction))
        return Split(count - val, val)


class Crops:
    """HR crops for step k: posters in epoch order, random crop and flip, all from step_generator."""

    def __init__(self, ds: PosterDataset, split: Split, cfg: SRTrainConfig, device: torch.device) -> None:
        self.images, self.cfg, self.device = ds.images, cfg, device
        self.side = cfg.patch * cfg.scale
        self.ids = training_ids(ds, split)  # permutation position -> poster (the identity without held-out ones)
        self.count = len(self.ids)
        self.steps_per_epoch = self.count // cfg.batch
        self._perm: tuple[int, torch.Tensor] | None = None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            perm = torch.randperm(self.count, generator=step_generator(self.cfg.seed, epoch, stream=1))
            self._perm = (epoch, self.ids[perm])
        return self._perm[1][i * self.cfg.batch:(i + 1) * self.cfg.batch]

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (HR float (B, 3, P, P) in [0, 1], LR uint8 (B, 3, P/s, P/s)), both on the device."""
        gen = step_generator(self.cfg.seed, step)
        _, _, H, W = self.images.shape
        u = torch.rand(self.cfg.batch, 3, generator=gen)
        ys = (u[:, 0] * (H - self.side + 1)).long().tolist()
        xs = (u[:, 1] * (W - self.side + 1)).long().tolist()
        crops = np.stack([self.images[i, :, y:y + self.side, x:x + self.side]
                          for i, y, x in zip(self._indices(step).tolist(), ys, xs)])
        hr = torch.from_numpy(crops).to(self.device).float().div_(255)  # (B, 3, P, P)
        flip = (u[:, 2] < 0.5).to(self.device)
        hr = torch.where(flip[:, None, None, None], hr.flip(-1), hr)
        return hr, degrade(hr, self.cfg.scale, self.cfg, gen).to(self.device)


def training_ids(ds: PosterDataset, split: Split) -> torch.Tensor:
    """The posters SR trains on: its own split's training part, less the dataset's held-out posters."""
    return torch.from_numpy(ds.training[ds.training < split.train])


def val_pairs(ds: PosterDataset, split: Split, cfg: SRTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole held-out posters (cropped to a multiple of the scale) and their clean LR: uint8, CPU."""
    n = split.val if cfg.val_posters == 0 else min(split.val, cfg.val_posters)
    _, _, H, W = ds.images.shape
    s = cfg.scale
    hr = torch.from_numpy(np.array(ds.images[split.train:split.train + n, :, :H - H % s, :W - W % s]))
    return hr, clean_downscale(hr, s)


# ---------------------------------------------------------------------------------------------
# Configuration: fresh, or the run's own on --resume

def _run_config(cfg: SRTrainConfig, ds: PosterDataset, split: Split, run: Path) -> dict:
    return {"postergen": __version__, "kind": "sr", "arch": cfg.arch, "train": dataclasses.asdict(cfg),
            "model": dataclasses.asdict(cfg.model_config()),
            "dataset": {**dataset_record(ds, run), "train": split.train, "val": split.val}}


def _check_data(ds: PosterDataset, cfg: SRTrainConfig) -> Split:
    H, W = ds.meta["size"]
    side = cfg.patch * cfg.scale
    if min(H, W) < side:
        raise UserError(f"{ds.path}: posters are {W}x{H}, smaller than one training crop of {side} px "
                        f"(patch {cfg.patch} x scale {cfg.scale}); prepare at a larger --size or lower --patch")
    split = Split.of(len(ds), cfg.val_fraction)
    train = len(training_ids(ds, split))
    if train < cfg.batch:
        raise UserError(f"{ds.path}: {train} training posters (after holding out {len(ds) - train}) "
                        f"is fewer than one batch of {cfg.batch}")
    return split


def resumed_config(saved: dict, cfg: SRTrainConfig, changed: set[str], run: Path) -> SRTrainConfig:
    """The run's stored settings with only the options the user gave (and a run may change) applied."""
    check_kind(saved, "sr", run, "postergen train-sr --resume")
    return resume_config(SRTrainConfig, saved["train"], {k: getattr(cfg, k) for k in changed}, SR_RESUMABLE, run)


def lr_at(cfg: SRTrainConfig, step: int) -> float:
    """Step decay that depends on the step only, so a longer resumed run follows the same curve."""
    return cfg.lr * 0.5 ** (step // cfg.lr_halve_every) if cfg.lr_halve_every else cfg.lr


# ---------------------------------------------------------------------------------------------
# The loop

def validate(model: SRNet, val: tuple[torch.Tensor, torch.Tensor], device: torch.device, precision: str) -> dict:
    """Mean PSNR (dB) of the network and of bicubic (the network's own base) on the held-out posters."""
    hr, lr = val
    s = model.cfg.scale
    bicubic = F.interpolate(lr.float(), scale_factor=s, mode="bicubic", align_corners=False)
    bicubic = bicubic.round().clamp(0, 255)
    sr = sr_forward(model, lr, device, precision, batch=8)
    p_sr, p_bic = psnr(sr, hr).mean().item(), psnr(bicubic, hr).mean().item()
    return {"val_psnr": round(p_sr, 3), "val_psnr_bicubic": round(p_bic, 3), "val_gain_db": round(p_sr - p_bic, 3)}


class SRTask(Task):
    kind = "sr"
    divergence_advice = "Try a lower --lr"

    def __init__(self, ds: PosterDataset, cfg: SRTrainConfig, split: Split, device: torch.device) -> None:
        self.cfg, self.device, self.seed = cfg, device, cfg.seed
        torch.manual_seed(cfg.seed)
        self.model = registry.get(cfg.arch, kind="sr").build(cfg.model_config()).to(device)
        fused = {"fused": True} if device.type == "cuda" else {}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, **fused)
        self.crops = Crops(ds, split, cfg, device)
        self.val = val_pairs(ds, split, cfg)
        self.images_per_step = cfg.batch
        self.workload = f"--batch {cfg.batch} crops of {cfg.patch * cfg.scale} px"
        self.precision = resolve_precision(cfg.precision, device)
        self.autocast = autocast(device, cfg.precision)
        self.loss_sum = torch.zeros((), device=device)
        self.loss_count = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def step(self, step: int) -> None:
        hr, lr = self.crops.get(step)  # (B, 3, P, P) float, (B, 3, P/s, P/s) uint8
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, step)
        with self.autocast:
            loss = l1_loss(self.model(lr.float() / 255), hr)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        loss = loss.detach()
        self.loss_sum += loss
        self.loss_count += 1
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad))

    def check_finite(self) -> None:
        bad = int(self.first_bad)
        if bad >= 0:
            raise TrainingDiverged(f"SR loss became NaN/inf at step {bad + 1}")

    def read_stats(self) -> dict[str, float]:
        self.check_finite()
        loss = (self.loss_sum / max(self.loss_count, 1)).item()
        self.loss_sum.zero_()
        self.loss_count = 0
        return {"loss": round(loss, 6), "lr": self.opt.param_groups[0]["lr"]}

    def validate(self, step: int) -> dict[str, float]:
        return validate(self.model, self.val, self.device, self.cfg.precision)

    def epoch_of(self, step: int) -> int:
        return self.crops.epoch_of(step)

    def summary(self) -> dict:
        return {"device": str(self.device)}


def train_sr(dataset_hr: Path, run: Path, cfg: SRTrainConfig, resume: bool = False, force: bool = False,
             changed: set[str] | None = None, allow_other_data: bool = False) -> dict:
    """Train (or continue) an SR run on a dataset prepared at the target size; returns a summary.

    changed: the fields the user set explicitly (on --resume only those, and only ones a run may
    change, override the stored settings); None: the fields that differ from SRTrainConfig's
    defaults. Ctrl-C/SIGTERM stop after a checkpoint.
    """
    try:
        check_sr_train(cfg)
    except ValueError as e:
        raise UserError(str(e)) from None
    if changed is None:
        default = SRTrainConfig()
        changed = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}
    ds = open_dataset(Path(dataset_hr))
    run = Path(run)
    lock, start = open_run(run, resume, force, echo=print)
    with lock:
        if start is not None:
            saved = start["config"]
            cfg = resumed_config(saved, cfg, set(changed), run)
            if [saved["dataset"][k] for k in ("count", "size")] != [len(ds), ds.meta["size"]]:
                raise UserError(f"{run} was trained on {dataset_name(saved['dataset'])} ({saved['dataset']['count']} "
                                f"posters at {saved['dataset']['size']}); {ds.path} does not match")
            note = check_dataset(saved["dataset"], ds, run, allow_other_data)
            if note:
                print(note)
            split = Split(saved["dataset"]["train"], saved["dataset"]["val"])
            data = {**saved["dataset"], **dataset_record(ds, run)}  # the data it trains on from now on
            config = {**saved, "arch": cfg.arch, "train": dataclasses.asdict(cfg), "dataset": data}
        else:
            split = _check_data(ds, cfg)
            config = _run_config(cfg, ds, split, run)
        task = SRTask(ds, cfg, split, pick_device(cfg.device))
        if start is None:
            start_fresh(run, config, force)
        schedule = Schedule(cfg.steps, cfg.log_every, cfg.val_every, cfg.checkpoint_every, cfg.keep_checkpoints,
                            cfg.minutes)
        summary = Engine(task, run, config, schedule, start, lock).run()
    last_val = next((r for r in reversed(read_metrics(RunFolder(run).metrics)) if "val_psnr" in r), {})
    return {**summary, **{k: v for k, v in last_val.items() if k.startswith("val_")}}
