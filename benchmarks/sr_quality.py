"""Super-resolution quality and speed: the x4 network vs bicubic on held-out posters (64 -> 256 px).

Data: built-in posters (`synth`), prepared twice from the same files: at 256 px (the high-resolution
targets the network trains on) and at 64 px (what the GAN trains on and imitates, so the honest
low-resolution input). The network is scored on the posters its run held out (the last 5%):
- clean: the 64 px dataset's own posters (prepare's resampling of the original files),
- degraded: the 256 px posters through the training degradation with a fixed seed (blur, noise, JPEG).
PSNR and SSIM (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, on RGB in [0, 255], no border shaved),
against two bicubic enlargements: PyTorch's (a = -0.75, the network's own base) and PIL's (a = -0.5).
Prints the training time of the x4 network and the time to enlarge 1,000 posters of 64 px.
Writes docs/img/sr_compare.png (bicubic | network | original) and, with --gan-run, a grid of upscaled
GAN samples docs/img/sr_gan_samples.png.

    OMP_NUM_THREADS=1 python benchmarks/sr_quality.py --work /tmp/srbench            # 5,000 posters, trains
    python benchmarks/sr_quality.py --work /tmp/srbench --no-train                  # score WORK/sr_x4 again
    python benchmarks/sr_quality.py --work /tmp/srbench --no-train --run RUN --gan-run GAN_RUN
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from postergen.data.dataset import open_dataset
from postergen.data.ingest import PrepareConfig, prepare
from postergen.data.synth import generate
from postergen.draw import save_grid
from postergen.engine.sr import SRTrainConfig, degrade, psnr, step_generator, train_sr
from postergen.upscale import load_upscaler, upscale_images

SCALE = 4
LR_SIZE = 64


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) of (N, 3, H, W) images in [0, 255]; Gaussian window, valid part.

    SSIM = (2 mu_a mu_b + C1)(2 cov + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2)), C = (K L)^2,
    averaged over the channels and the positions where the window fits (as the reference MATLAB code).
    """
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    t = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable, as weighted sums of shifted views (3x conv2d's speed)
        H, W = x.shape[-2] - window + 1, x.shape[-1] - window + 1
        y = sum(g[k] * x[..., k:k + H, :] for k in range(window))
        return sum(g[k] * y[..., k:k + W] for k in range(window))

    out = []
    for i in range(0, len(a), 32):
        x, y = a[i:i + 32].float(), b[i:i + 32].float()
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x ** 2
        var_y = blur(y * y) - mu_y ** 2
        cov = blur(x * y) - mu_x * mu_y
        s = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x ** 2 + mu_y ** 2 + C1) * (var_x + var_y + C2))
        out.append(s.flatten(1).double().mean(1))
    return torch.cat(out)


def pil_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    out = []
    for img in lr:
        im = Image.fromarray(img.permute(1, 2, 0).numpy())
        out.append(np.asarray(im.resize((im.width * scale, im.height * scale), Image.BICUBIC)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def torch_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    up = F.interpolate(lr.float(), scale_factor=scale, mode="bicubic", align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8)


def make_data(work: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Synth posters once, prepared at 256 and at 64 px (cached in `work`)."""
    posters, hr, lr = work / "posters", work / f"hr{LR_SIZE * SCALE}", work / f"lr{LR_SIZE}"
    if not (posters / "MovieGenre.csv").is_file():
        t = time.perf_counter()
        generate(posters, n=n, seed=seed, workers=2)
        print(f"synth: {n} posters in {time.perf_counter() - t:.0f} s")
    for out, size in ((hr, LR_SIZE * SCALE), (lr, LR_SIZE)):
        if not (out / "dataset.json").is_file():
            t = time.perf_counter()
            prepare([posters], out, PrepareConfig(size=size, workers=2))
            print(f"prepare {size} px: {time.perf_counter() - t:.0f} s")
    a, b = open_dataset(hr), open_dataset(lr)
    assert a.meta["sources"] == b.meta["sources"], "the two datasets must list the same posters in the same order"
    return hr, lr


def train(hr: Path, run: Path, args: argparse.Namespace) -> None:
    cfg = SRTrainConfig(scale=SCALE, steps=args.steps, device="cpu", **json.loads(args.train_json))
    print(f"training {run}: {json.dumps(dataclasses.asdict(cfg))}")
    t = time.perf_counter()
    summary = train_sr(hr, run, cfg, force=True)
    print(f"trained x4 ({cfg.arch}, {cfg.channels} ch, {cfg.blocks} blocks): {summary['step']} steps of "
          f"{cfg.batch} in {(time.perf_counter() - t) / 60:.1f} min wall ({summary['seconds'] / 60:.1f} min in the "
          f"loop), {torch.get_num_threads()} threads; held-out gain {summary.get('val_gain_db')} dB")


def score(model, hr: torch.Tensor, lr: torch.Tensor) -> dict:
    """PSNR / SSIM means of the network and both bicubics against hr (uint8 tensors)."""
    outs = {"network": upscale_images(model, lr, "cpu", batch=32), "bicubic_torch": torch_bicubic(lr, SCALE),
            "bicubic_pil": pil_bicubic(lr, SCALE)}
    return {name: {"psnr": psnr(x, hr).mean().item(), "ssim": ssim(x, hr).mean().item()} for name, x in outs.items()}


def held_out(run: Path, hr_path: Path, lr_path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The run's held-out posters: HR 256 px, their 64 px from the LR dataset, and a degraded 64 px."""
    config = json.loads((run / "config.json").read_text())
    first, count = config["dataset"]["train"], config["dataset"]["val"]
    hr = torch.from_numpy(np.array(open_dataset(hr_path).images[first:first + count]))
    clean = torch.from_numpy(np.array(open_dataset(lr_path).images[first:first + count]))
    cfg = SRTrainConfig(**config["train"])
    degraded = torch.cat([degrade(hr[i:i + 50].float() / 255, SCALE, cfg, step_generator(12345, i))
                          for i in range(0, len(hr), 50)])
    return hr, clean, degraded


def report(results: dict, n: int) -> None:
    print(f"\nx4 on {n} held-out posters (64 -> 256 px), mean over posters:")
    print(f"{'input':<10} {'method':<15} {'PSNR dB':>8} {'SSIM':>7}")
    for inp, rows in results.items():
        for name, r in rows.items():
            print(f"{inp:<10} {name:<15} {r['psnr']:8.2f} {r['ssim']:7.4f}")
        net = rows["network"]["psnr"]
        best = max(rows["bicubic_torch"]["psnr"], rows["bicubic_pil"]["psnr"])
        print(f"{inp:<10} gain over the better bicubic: {net - best:+.2f} dB PSNR, "
              f"{rows['network']['ssim'] - max(rows['bicubic_torch']['ssim'], rows['bicubic_pil']['ssim']):+.4f} SSIM")


def speed(model, lr_path: Path, n: int = 1000) -> None:
    images = torch.from_numpy(np.array(open_dataset(lr_path).images[:n]))
    images = images.repeat(-(-n // len(images)), 1, 1, 1)[:n]
    upscale_images(model, images[:32], "cpu")  # warm-up
    t = time.perf_counter()
    upscale_images(model, images, "cpu", batch=64)
    s = time.perf_counter() - t
    print(f"upscale {n} posters 64 -> 256 px on CPU ({torch.get_num_threads()} threads): {s:.1f} s ({n / s:.0f}/s)")


def compare_figure(model, hr: torch.Tensor, lr: torch.Tensor, out: Path, rows: int = 3) -> None:
    """One row per poster: bicubic | network | original; a last row zooms 2x into the first poster's lower half."""
    pick = torch.linspace(0, len(hr) - 1, rows).round().long()
    tiles = []
    for i in pick:
        tiles += [pil_bicubic(lr[i:i + 1], SCALE)[0], upscale_images(model, lr[i:i + 1])[0], hr[i]]
    H, W = hr.shape[-2:]
    zoom = [t[:, H // 2:, W // 4:W // 4 + W // 2].repeat_interleave(2, 1).repeat_interleave(2, 2) for t in tiles[:3]]
    save_grid(torch.stack(tiles + zoom), 3, out)
    print(f"wrote {out} (bicubic | network | original; last row: 2x zoom)")


def gan_figure(model, gan_run: Path, out: Path, n: int = 16) -> None:
    from postergen.draw import noise, render
    from postergen.weights import load_generator

    G, config = load_generator(gan_run)
    genres = None
    if config["genres"]:  # conditional: cycle through the genres
        genres = torch.eye(len(config["genres"]))[torch.arange(n) % len(config["genres"])]
    small = render(G, noise(list(range(n)), config["model"]["z_dim"]), genres, torch.device("cpu"))
    save_grid(upscale_images(model, small), 4, out)
    print(f"wrote {out}: {n} samples of {gan_run} (step {config['step']}), "
          f"{small.shape[-1]}x{small.shape[-2]} -> x{SCALE}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/srbench"), help="cache of posters, datasets and the run")
    p.add_argument("--n", type=int, default=5000, help="synth posters")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=SRTrainConfig.steps, help="training steps")
    p.add_argument("--train-json", default="{}", help='other SRTrainConfig fields as JSON, e.g. \'{"arch": "espcn"}\'')
    p.add_argument("--run", type=Path, default=None, help="SR run folder to train (default WORK/sr_x4)")
    p.add_argument("--no-train", action="store_true", help="score the trained --run instead of training it")
    p.add_argument("--gan-run", type=Path, default=None, help="also write a grid of this GAN's samples, upscaled")
    p.add_argument("--img-dir", type=Path, default=Path("docs/img"), help="where the figures go")
    args = p.parse_args()
    hr_path, lr_path = make_data(args.work, args.n, args.seed)
    run = args.run or args.work / "sr_x4"
    if not args.no_train:
        train(hr_path, run, args)
    model, config = load_upscaler(run)
    if config["model"]["scale"] != SCALE:
        raise SystemExit(f"{run} is a x{config['model']['scale']} run; this benchmark scores x{SCALE}")
    hr, clean, degraded = held_out(run, hr_path, lr_path)
    report({"clean": score(model, hr, clean), "degraded": score(model, hr, degraded)}, len(hr))
    speed(model, lr_path)
    args.img_dir.mkdir(parents=True, exist_ok=True)
    compare_figure(model, hr, clean, args.img_dir / "sr_compare.png")
    if args.gan_run is not None:
        gan_figure(model, args.gan_run, args.img_dir / "sr_gan_samples.png")


if __name__ == "__main__":
    main()
