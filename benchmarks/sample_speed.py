"""Sampling speed: 10,000 posters at 64 px from the seed-size generator, time split between the model
(G forward, uint8 conversion) and PNG encoding (with provenance chunks) to disk.

    python benchmarks/sample_speed.py --n 10000 --device cpu
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from postergen.draw import PngWriter, noise, render
from postergen.models.dcgan import Generator, ModelConfig
from postergen.provenance import png_info
from postergen.runtime import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="PNG writer threads (default: cores, at most 8)")
    args = parser.parse_args()
    device = pick_device(args.device)
    G = Generator(ModelConfig())  # the seed's G at 64 px; weights do not change the cost
    G = G.to(device).eval()
    t0 = time.perf_counter()
    z = noise(list(range(args.n)), 100)
    t_noise = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = torch.cat([render(G, z[i:i + args.batch].to(device), None, device) for i in range(0, args.n, args.batch)])
    t_model = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with PngWriter(args.threads) as writer:  # as `postergen sample` writes them
            for s, img in enumerate(images):
                writer.put(img, Path(tmp) / f"all-seed{s}.png", png_info("bench", 0, s, "all"))
        t_png = time.perf_counter() - t0
    total = t_noise + t_model + t_png
    print(f"{args.n} posters at 64 px on {device}: {total:.1f} s ({args.n / total:,.0f} posters/s); "
          f"per-seed noise {t_noise:.1f} s, G forward {t_model:.1f} s, PNG encode+write {t_png:.1f} s "
          f"({writer.threads} writer thread(s))")


if __name__ == "__main__":
    main()
