"""256 px posters two ways, at the same number of images seen by the GANs:

  A. a GAN trained at 64 px, its samples enlarged x4 by the trained super-resolution network,
  B. a GAN trained directly at 256 px.

Both are scored by multi-scale SWD (postergen.metrics.swd, x10^3 per level and mean) against the same
N real 256 px posters, drawn at random (seeded) from the 256 px dataset. Generated posters use seeds
0..N-1 (postergen.draw.noise) and EMA weights; conditional GANs get the genre vectors (multi-hot)
of those same N real posters, so both methods and the real set share one genre mix.
Two reference rows put the numbers in context (skip them with --no-baselines):
  - real 64 px posters (the same N, from --data64) enlarged x4 by the SR network: the best A can do
    if its GAN were perfect at 64 px (SR's own loss only);
  - A's 64 px samples enlarged by bicubic instead of the network.
Prints a markdown table and writes one figure: real posters, A's samples, B's samples (same seeds).

    OMP_NUM_THREADS=2 python benchmarks/sr_vs_gan256.py --gan64 RUN64 --gan256 RUN256 \
        --sr /tmp/srbench/sr_x4 --data256 /tmp/srbench/hr256 --data64 /tmp/srbench/lr64 \
        --n 1000 --figure docs/img/sr_vs_gan256.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from postergen.data.dataset import open_dataset
from postergen.draw import noise, render
from postergen.metrics.swd import SWDConfig, swd
from postergen.upscale import load_upscaler, upscale_images
from postergen.weights import load_generator


def images_seen(config: dict) -> int:
    return int(config["step"]) * int(config["train"]["batch"])


def widths(config: dict) -> str:
    m = config["model"]
    return f"ngf={m['ngf']} ndf={m['ndf']} max={m['max_channels']}"


def generate(run: Path, seeds: list[int], labels: torch.Tensor, device: str) -> tuple[torch.Tensor, dict]:
    G, config = load_generator(run, ema=True, device=device)
    z = noise(seeds, config["model"]["z_dim"]).to(device)
    genres = labels.float().to(device) if config["model"].get("n_genres") else None
    with torch.no_grad():
        return render(G, z, genres, torch.device(device)), config


def bicubic_x4(images: torch.Tensor, scale: int) -> torch.Tensor:
    out = F.interpolate(images.float(), scale_factor=scale, mode="bicubic", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def figure(rows: list[tuple[str, torch.Tensor]], path: Path, label_w: int = 230, gap: int = 4) -> None:
    """Rows of uint8 (k, 3, H, W) posters, each row labelled on its left, on a white sheet."""
    k = max(len(r) for _, r in rows)
    H, W = rows[0][1].shape[-2:]
    sheet = Image.new("RGB", (label_w + k * (W + gap), len(rows) * (H + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for r, (label, imgs) in enumerate(rows):
        y = gap + r * (H + gap)
        draw.multiline_text((8, y + H // 2 - 30), label, fill="black", font=font, spacing=4)
        for c, img in enumerate(imgs):
            sheet.paste(Image.fromarray(img.permute(1, 2, 0).numpy()), (label_w + c * (W + gap), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gan64", type=Path, required=True, help="GAN run trained at 64 px (method A)")
    ap.add_argument("--gan256", type=Path, required=True, help="GAN run trained at 256 px (method B)")
    ap.add_argument("--sr", type=Path, required=True, help="x4 super-resolution run")
    ap.add_argument("--data256", type=Path, required=True, help="real posters at 256 px (the reference)")
    ap.add_argument("--data64", type=Path, default=None, help="the same posters at 64 px (real+SR baseline)")
    ap.add_argument("--n", type=int, default=1000, help="real and generated posters per set")
    ap.add_argument("--seed", type=int, default=0, help="picks the real posters and SWD's random draws")
    ap.add_argument("--figure", type=Path, default=Path("docs/img/sr_vs_gan256.png"))
    ap.add_argument("--per-row", type=int, default=6, help="posters per figure row")
    ap.add_argument("--no-baselines", action="store_true", help="skip the real+SR and bicubic rows")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    t0 = time.perf_counter()

    ds = open_dataset(args.data256)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds), size=args.n, replace=False))
    real = torch.from_numpy(np.ascontiguousarray(ds.images[idx]))
    labels = torch.from_numpy(ds.labels[idx].astype(np.float32))
    seeds = list(range(args.n))

    low, cfg64 = generate(args.gan64, seeds, labels, args.device)
    sr, sr_cfg = load_upscaler(args.sr, args.device)
    scale = sr_cfg["model"]["scale"]
    t = time.perf_counter()
    a = upscale_images(sr, low, args.device)
    t_sr = time.perf_counter() - t
    b, cfg256 = generate(args.gan256, seeds, labels, args.device)
    assert a.shape == b.shape == real.shape, (a.shape, b.shape, real.shape)

    swd_cfg = SWDConfig()
    rows = [(f"A: GAN 64 px + SR x{scale}", images_seen(cfg64), widths(cfg64), swd(real, a, swd_cfg, args.seed)),
            ("B: GAN 256 px", images_seen(cfg256), widths(cfg256), swd(real, b, swd_cfg, args.seed))]
    if not args.no_baselines:
        rows.append((f"ref: A's 64 px samples, bicubic x{scale}", images_seen(cfg64), widths(cfg64),
                     swd(real, bicubic_x4(low, scale), swd_cfg, args.seed)))
        if args.data64 is not None:
            ds64 = open_dataset(args.data64)
            real_low = torch.from_numpy(np.ascontiguousarray(ds64.images[idx]))
            rows.append((f"ref: real 64 px posters + SR x{scale}", 0, "-",
                         swd(real, upscale_images(sr, real_low, args.device), swd_cfg, args.seed)))
        half = args.n // 2  # two disjoint halves of the real set: the noise floor at n/2 posters
        rows.append((f"ref: real vs real ({half} vs {half})", 0, "-",
                     swd(real[:half], real[half:2 * half], swd_cfg, args.seed)))

    levels = [k for k in rows[0][3] if k != "mean"]
    print(f"\nSWD x10^3 vs {args.n} real {real.shape[-1]} px posters ({args.data256}, seed {args.seed}); "
          f"{args.n} generated per method, seeds 0..{args.n - 1}, EMA weights, genre vectors of the real posters; "
          f"lower is better\n")
    print("| method | images seen | widths | " + " | ".join(f"SWD {k}" for k in levels) + " | SWD mean |")
    print("|---|---:|---|" + "---:|" * (len(levels) + 1))
    for name, seen, w, res in rows:
        seen_s = f"{seen:,}" if seen else "-"
        print(f"| {name} | {seen_s} | {w} | " + " | ".join(f"{res[k]:.1f}" for k in levels) + f" | {res['mean']:.1f} |")
    print(f"\nA: {args.gan64} (step {cfg64['step']}); B: {args.gan256} (step {cfg256['step']}); "
          f"SR: {args.sr} ({sr_cfg['model']['arch']}, step {sr_cfg['step']}); SR of {args.n} posters took {t_sr:.1f} s")

    k = args.per_row
    fig_rows = [("real posters\n(256 px dataset)", real[:k]),
                (f"A: GAN 64 px\n+ SR x{scale}\n{images_seen(cfg64) / 1000:g} kimg", a[:k]),
                (f"B: GAN 256 px\n{images_seen(cfg256) / 1000:g} kimg", b[:k])]
    figure(fig_rows, args.figure)
    print(f"figure: {args.figure} (rows: real posters {idx[:k].tolist()}; A and B: seeds 0..{k - 1} with those "
          f"posters' genres); total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
