"""DCGAN models: tutorial compatibility, shapes at every size and aspect, conditioning, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from conftest import build_gan
from postergen.config import SEED_MODEL
from postergen.models.dcgan import (
    Discriminator,
    Generator,
    MinibatchStd,
    ModelConfig,
    count_params,
    init_weights,
)

# --- literal copy of the PyTorch DCGAN tutorial's networks (nz=100, ngf=ndf=64, nc=3) ---------
nz, ngf, ndf, nc = 100, 64, 64, 3


class TutorialGenerator(nn.Module):
    def __init__(self, ngpu):
        super(TutorialGenerator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. ``(ngf*8) x 4 x 4``
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. ``(ngf*4) x 8 x 8``
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. ``(ngf*2) x 16 x 16``
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. ``(ngf) x 32 x 32``
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
            # state size. ``(nc) x 64 x 64``
        )

    def forward(self, input):
        return self.main(input)


class TutorialDiscriminator(nn.Module):
    def __init__(self, ngpu):
        super(TutorialDiscriminator, self).__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is ``(nc) x 64 x 64``
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. ``(ndf) x 32 x 32``
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. ``(ndf*2) x 16 x 16``
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. ``(ndf*4) x 8 x 8``
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. ``(ndf*8) x 4 x 4``
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        return self.main(input)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


# --- helpers ----------------------------------------------------------------------------------
SIZES = [32, 64, 128, 256]
SMALL = dict(ngf=8, ndf=8)


def small_cfg(width=32, aspect="square", **kw) -> ModelConfig:
    height = width if aspect == "square" else width * 3 // 2
    return ModelConfig(height=height, width=width, **{**SMALL, **kw})


def multi_hot(batch: int, n_genres: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    genres = (torch.rand(batch, n_genres, generator=g) < 0.4).float()
    genres[:, 0] = 1.0  # at least one genre each, so the projection term is never trivially 0
    return genres


# --- the tutorial, exactly --------------------------------------------------------------------
TUTORIAL = ModelConfig(**SEED_MODEL)  # 64 px, unconditional, the seed preset's D: the tutorial's networks


def test_tutorial_parameter_counts():
    G, D = Generator(TUTORIAL), Discriminator(TUTORIAL)
    assert count_params(G) == 3_576_704
    assert count_params(D) == 2_765_568
    assert count_params(G) == count_params(TutorialGenerator(0))
    assert count_params(D) == count_params(TutorialDiscriminator(0))


def test_tutorial_generator_state_dict_loads_and_matches():
    torch.manual_seed(0)
    ref = TutorialGenerator(0)
    ref.apply(weights_init)
    with torch.no_grad():  # populate BatchNorm running stats so the buffers are non-trivial too
        ref(torch.randn(4, nz, 1, 1))
    G = Generator(TUTORIAL)
    G.load_state_dict(ref.state_dict(), strict=True)
    z = torch.randn(2, nz, 1, 1)
    for train in (False, True):  # eval first: train-mode calls update the running stats
        ref.train(train)
        G.train(train)
        with torch.no_grad():
            expected = ref(z)
            assert torch.equal(G(z), expected)
            assert torch.equal(G(z.flatten(1)), expected)  # (B, z_dim) is reshaped by G itself


def test_tutorial_discriminator_state_dict_loads_and_matches():
    torch.manual_seed(0)
    ref = TutorialDiscriminator(0).eval()
    ref.apply(weights_init)
    D = Discriminator(TUTORIAL).eval()
    D.load_state_dict(ref.state_dict(), strict=True)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(D(x)), ref(x).view(-1))


# --- shapes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("aspect", ["square", "poster"])
@pytest.mark.parametrize("width", SIZES)
def test_shapes(width, aspect, conditional):
    torch.manual_seed(0)
    cfg = small_cfg(width, aspect, n_genres=5 if conditional else 0, z_dim=16, genre_dim=8)
    G, D = build_gan(cfg)
    genres = multi_hot(2, 5) if conditional else None
    with torch.no_grad():
        fake = G(torch.randn(2, cfg.z_dim), genres)
        assert fake.shape == (2, 3, cfg.height, cfg.width)
        assert fake.min() >= -1 and fake.max() <= 1
        assert D(fake, genres).shape == (2,)


def test_poster_aspect_64_wide_is_96_by_64():
    G = Generator(ModelConfig(height=96, width=64, ngf=8))
    assert G(torch.randn(2, 100)).shape == (2, 3, 96, 64)
    assert G.main[0].kernel_size == (6, 4)
    assert Discriminator(ModelConfig(height=96, width=64, ndf=8)).main[-1].kernel_size == (6, 4)


def test_max_channels_caps_every_layer():
    cfg = ModelConfig(width=256, height=256, ngf=64, ndf=64, max_channels=128, **SEED_MODEL)  # no mbstd channel
    G, D = Generator(cfg), Discriminator(cfg)
    convs = [m for m in [*G.modules(), *D.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(c.out_channels <= 128 for c in convs)
    assert all(c.in_channels <= 128 for c in convs if c is not G.main[0])


# --- conditioning -----------------------------------------------------------------------------
def test_conditional_parameter_counts_add_exactly_the_embeddings():
    n_genres, genre_dim = 7, 16
    base = small_cfg(64)
    cond = small_cfg(64, n_genres=n_genres, genre_dim=genre_dim)
    first_g = min(base.ngf * 8, base.max_channels)  # G's first ConvTranspose output channels
    last_d = min(base.ndf * 8, base.max_channels)  # D's channels before its last conv
    # G: the embedding table + genre_dim more input channels into the 4x4 first ConvTranspose.
    expected_g = n_genres * genre_dim + genre_dim * first_g * 4 * 4
    # D: one C-vector per genre for the projection term.
    expected_d = n_genres * last_d
    assert count_params(Generator(cond)) - count_params(Generator(base)) == expected_g
    assert count_params(Discriminator(cond)) - count_params(Discriminator(base)) == expected_d


def test_unconditional_models_have_no_genre_parameters():
    G, D = build_gan(small_cfg())
    names = [n for n, _ in [*G.named_parameters(), *D.named_parameters()]]
    assert not any("genre" in n for n in names)
    with pytest.raises(ValueError, match="unconditional"):
        G(torch.randn(2, 100), torch.ones(2, 3))


def test_generator_none_genres_equals_zero_vector():
    torch.manual_seed(0)
    G, _ = build_gan(small_cfg(n_genres=4))
    G.eval()
    z = torch.randn(2, 100)
    with torch.no_grad():
        assert torch.equal(G(z, None), G(z, torch.zeros(2, 4)))
        assert not torch.equal(G(z, None), G(z, multi_hot(2, 4)))


def test_projection_term_changes_d_output():
    torch.manual_seed(0)
    _, D = build_gan(small_cfg(n_genres=4))
    D.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a = torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0]])
    b = torch.tensor([[0.0, 1, 0, 1], [0, 1, 0, 1]])
    with torch.no_grad():
        plain = D(x, None)
        assert torch.equal(plain, D(x, torch.zeros(2, 4)))  # zero vector = no projection term
        assert not torch.allclose(D(x, a), D(x, b))
        # The term is linear in the multi-hot: genres a + b adds both projections.
        torch.testing.assert_close(D(x, a + b) - plain, (D(x, a) - plain) + (D(x, b) - plain))


def test_genres_shape_is_checked():
    G, D = build_gan(small_cfg(n_genres=4))
    with pytest.raises(ValueError, match="shape"):
        G(torch.randn(2, 100), torch.ones(2, 3))
    with pytest.raises(ValueError, match="shape"):
        D(torch.zeros(2, 3, 32, 32), torch.ones(3, 4))


# --- D options --------------------------------------------------------------------------------
@pytest.mark.parametrize("aspect", ["square", "poster"])
def test_spectral_norm_minibatch_std_no_norm(aspect):
    torch.manual_seed(0)
    cfg = small_cfg(32, aspect, n_genres=3, d_norm="none", spectral_norm=True, minibatch_std=True)
    G, D = build_gan(cfg)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    wrapped = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(wrapped) == cfg.n_scales + 2  # stride-2 convs, last conv, projection embedding
    assert all(hasattr(m, "parametrizations") for m in wrapped)
    assert D.main[-1].in_channels == D.feature_channels + 1
    genres = multi_hot(3, 3)  # batch 3: the minibatch-std group falls back to a divisor of B
    logits = D(G(torch.randn(3, 100), genres), genres)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert D.main[0].parametrizations.weight.original.grad is not None


def test_minibatch_std_channel():
    h = torch.randn(8, 5, 4, 4)
    out = MinibatchStd()(h)
    assert out.shape == (8, 6, 4, 4)
    assert torch.equal(out[:, :5], h)
    # Group of 4 = samples {0, 2, 4, 6} (b % 2 == 0) and {1, 3, 5, 7}.
    expected = (h[0::2].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(out[0, 5], expected.expand(4, 4))
    torch.testing.assert_close(out[6, 5], expected.expand(4, 4))
    assert MinibatchStd()(torch.randn(1, 5, 4, 4)).shape == (1, 6, 4, 4)  # batch 1 works


def test_spectral_norm_is_right_after_init():
    torch.manual_seed(0)
    _, D = build_gan(small_cfg(spectral_norm=True, d_norm="none"))
    D.eval()  # eval: no further power iterations, so this checks the u, v that init left behind
    original = D.main[2].parametrizations.weight.original
    assert abs(original.std().item() - 0.02) < 0.003
    for conv in [m for m in D.modules() if isinstance(m, nn.Conv2d)]:
        # With u, v left stale from the pre-init weights this comes out 5..200, not ~1.
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert 0.95 < sigma.item() < 1.25


# --- init and config --------------------------------------------------------------------------
def test_init_statistics():
    torch.manual_seed(0)
    G, D = build_gan(ModelConfig(ngf=32, ndf=32, **SEED_MODEL))
    for w in (G.main[3].weight, D.main[5].weight):
        assert abs(w.std().item() - 0.02) < 0.002
        assert abs(w.mean().item()) < 0.002
    bn = G.main[1]
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and abs(bn.weight.std().item() - 0.02) < 0.01
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    lin = nn.Linear(4, 3)
    init_weights(lin)
    assert torch.equal(lin.bias, torch.zeros(3))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(width=48, height=48), "power of two"),
        (dict(width=16, height=16), "power of two"),
        (dict(width=512, height=512), "power of two"),
        (dict(width=64, height=128), "height"),
        (dict(d_norm="layer"), "d_norm"),
        (dict(z_dim=0), "z_dim"),
        (dict(n_genres=-1), "n_genres"),
    ],
)
def test_invalid_config(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)
