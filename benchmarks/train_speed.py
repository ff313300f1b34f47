"""Training speed: postergen's step vs the PyTorch DCGAN example as published, same data, same batch.

The reference is the example's loop: ImageFolder of JPEGs -> Resize/CenterCrop/ToTensor/Normalize ->
DataLoader (2 workers, its default in the example), D with Sigmoid + BCELoss, `.item()` every step.
postergen runs the seed preset's model and losses from a prepared dataset on the device, with
its precision setting and no per-step host syncs. Prints img/s, the ratio, and FLOP utilisation
when the device's peak is known (--peak-tflops).

    python benchmarks/train_speed.py                        # 2-core CPU: 64 px, batch 128
    python benchmarks/train_speed.py --device cuda --res 64 --batch 128 2048 --peak-tflops 790 --cuda-graph
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from postergen.config import from_preset
from postergen.data.dataset import Batches, open_dataset
from postergen.data.ingest import PrepareConfig, prepare
from postergen.data.synth import generate
from postergen.engine.gan import build
from postergen.engine.step import Meter, Models, Stepper, step_runner


class TutorialG(nn.Module):
    """The DCGAN tutorial's generator, verbatim in structure (nz=100, ngf=64, 64 px)."""

    def __init__(self, nz=100, ngf=64):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class TutorialD(nn.Module):
    def __init__(self, ndf=64):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x)


def reference_rate(posters: Path, batch: int, device: torch.device, steps: int, warmup: int) -> float:
    """The example's loop, timed from after `warmup` steps (loader start-up excluded)."""
    import torchvision.datasets as dset
    import torchvision.transforms as transforms

    ds = dset.ImageFolder(root=str(posters), transform=transforms.Compose([
        transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
    netG, netD = TutorialG().to(device), TutorialD().to(device)
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    done, t0 = 0, None
    while done < warmup + steps:
        for data in loader:
            if done == warmup:
                t0 = time.perf_counter()
            if done == warmup + steps:
                break
            real = data[0].to(device)
            b = real.size(0)
            netD.zero_grad()
            label = torch.full((b,), 1.0, device=device)
            output = netD(real).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()  # the example reads these back every step
            fake = netG(torch.randn(b, 100, 1, 1, device=device))
            label.fill_(0.0)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            optD.step()
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optG.step()
            _ = (errD_real + errD_fake).item(), errG.item(), D_x, D_G_z1, D_G_z2
            done += 1
    return steps * batch / (time.perf_counter() - t0)


def postergen_rate(dataset: Path, batch: int, device: str, steps: int, warmup: int, precision: str,
                   cuda_graph: bool = False) -> tuple[float, float]:
    """img/s of the seed preset's step (captured and replayed with cuda_graph), and FLOPs per image of one step."""
    ds = open_dataset(dataset)
    cfg = from_preset("seed", batch=batch, device=device, precision=precision, cuda_graph=cuda_graph)
    dev = torch.device(device)
    H, W = ds.meta["size"]
    m: Models = build(cfg, cfg.model_config(H, W, 0), dev)
    stepper = Stepper(m, cfg, dev, conditional=False)
    batches = Batches(ds, batch, dev, cfg.seed)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # one eager step
        stepper.step(0, *batches.get(0))
    flops = counter.get_total_flops() / batch
    step = step_runner(stepper, Meter(dev), cuda_graph)  # as Trainer.run steps
    if cuda_graph:
        from postergen.engine.step import GraphedStep

        warmup = max(warmup, GraphedStep.WARMUP + 1)  # the eager warm-up steps and the capture
    for s in range(1, warmup + 1):
        step(s, *batches.get(s))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for s in range(warmup + 1, warmup + 1 + steps):
        step(s, *batches.get(s))
    sync()
    return steps * batch / (time.perf_counter() - t0), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[128])
    parser.add_argument("--res", type=int, default=64, help="image size; the reference runs at 64 px only")
    parser.add_argument("--posters", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", default="auto", help="postergen's precision setting (auto, bf16, fp32)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for FLOP utilisation")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--cuda-graph", action="store_true", help="also time postergen with --cuda-graph (CUDA only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp / "posters", n=args.posters, seed=0)
        prepare([tmp / "posters"], tmp / "ds", PrepareConfig(size=args.res, use_labels=False))
        for batch in args.batch:
            ref = None if args.skip_reference or args.res != 64 else reference_rate(tmp / "posters", batch, torch.device(args.device),
                                                                  args.steps, args.warmup)
            for graphed in (False, True) if args.cuda_graph else (False,):
                rate, flops = postergen_rate(tmp / "ds", batch, args.device, args.steps, args.warmup,
                                             args.precision, cuda_graph=graphed)
                name = "postergen --cuda-graph" if graphed else "postergen"
                line = f"{args.res} px batch {batch} on {args.device}: {name} {rate:,.0f} img/s"
                if ref:
                    line += f", reference {ref:,.0f} img/s, ratio {rate / ref:.2f}x"
                line += f"; {flops / 1e9:.2f} GFLOP/img, {rate * flops / 1e12:.2f} TFLOP/s"
                if args.peak_tflops:
                    line += f", MFU {rate * flops / 1e12 / args.peak_tflops:.1%}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
