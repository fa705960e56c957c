"""Encoder / generator / discriminator: shapes for every profile, determinism, clear errors."""
import math

import pytest
import torch
from torch import nn

from helpers import models
from helpers.config import make_config


@pytest.mark.parametrize("image_size", [32, 64, 128, 224])
def test_generator_and_discriminator_shapes(image_size):
    torch.manual_seed(0)
    g = models.Generator(latent_dim=16, image_size=image_size)
    d = models.Discriminator(image_size)
    images = g(torch.randn(3, 16))
    assert images.shape == (3, 3, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh: the range CLIP preprocessing expects
    logits = d(images)
    assert logits.shape == (3,)


@pytest.mark.parametrize("profile", ["ci", "cpu", "gpu"])
def test_build_models_follows_each_profile(profile):
    cfg = make_config(profile)
    enc, gen, disc = models.build_models(cfg)
    x = torch.randn(2, cfg.feature_dim)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (2, cfg.latent_dim)
    z = models.reparameterise(mu, logvar)
    img = gen(z)
    assert img.shape == (2, 3, cfg.image_size, cfg.image_size)
    assert disc(img).shape == (2,)


def test_224_starts_from_7x7_and_doubles_five_times():
    assert models.image_size_plan(224) == (7, 5)
    assert models.image_size_plan(32) == (4, 3)
    assert models.image_size_plan(64) == (4, 4)
    assert models.image_size_plan(128) == (4, 5)
    g = models.Generator(8, 224)
    first = g.net[0]
    assert isinstance(first, nn.ConvTranspose2d) and first.kernel_size == (7, 7)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == 6  # projection + 5 doublings


@pytest.mark.parametrize("bad", [100, 0, 3, 48 * 3])
def test_unsupported_image_size_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="image_size"):
        models.Generator(8, bad)
    with pytest.raises(ValueError, match="image_size"):
        models.Discriminator(bad)


def test_wrong_input_shapes_are_clear_errors():
    enc = models.Encoder(feature_dim=264, hidden_dim=32, latent_dim=8)
    with pytest.raises(ValueError, match="264"):
        enc(torch.randn(4, 263))
    with pytest.raises(ValueError, match="z"):
        models.Generator(8, 32)(torch.randn(4, 9))
    with pytest.raises(ValueError, match="32"):
        models.Discriminator(32)(torch.randn(4, 3, 64, 64))


def test_linear_encoder_starts_with_a_narrow_posterior_and_has_a_label_head():
    enc = models.Encoder(feature_dim=264, hidden_dim=0, latent_dim=8)
    # mu and logvar linear in the features (plus biases), and the 10-way head on mu: nothing else.
    assert models.count_parameters(enc) == 2 * (264 * 8 + 8) + (8 * 10 + 10)
    x = torch.randn(5, 264)
    mu, logvar = enc(x)
    assert torch.allclose(logvar, torch.full((5, 8), models.INITIAL_LOGVAR))  # sigma = 0.05 for every event
    assert torch.allclose(enc.mu(x), mu)
    assert enc.label_head(mu).shape == (5, 10)
    assert torch.allclose(models.Encoder(264, 32, 8)(x)[1], torch.full((5, 8), models.INITIAL_LOGVAR))
    with pytest.raises(ValueError, match="hidden_dim"):
        models.Encoder(264, -1, 8)
    with pytest.raises(ValueError, match="latent_dim"):
        models.Encoder(264, 0, 0)


def test_encoder_accepts_a_batch_of_one_in_train_mode():
    enc = models.Encoder(264, 32, 8).train()
    mu, logvar = enc(torch.randn(1, 264))  # LayerNorm, not BatchNorm: no "expected more than 1 value"
    assert mu.shape == (1, 8)


def test_reparameterise_has_the_right_moments_and_gradients():
    n = 20000
    mu = torch.full((n, 2), 2.0, requires_grad=True)
    logvar = torch.full((n, 2), math.log(4.0), requires_grad=True)  # sigma = 2
    z = models.reparameterise(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert z.mean().item() == pytest.approx(2.0, abs=0.05)
    assert z.std().item() == pytest.approx(2.0, abs=0.05)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))  # dz/dmu = 1
    # Very small variance collapses onto the mean.
    z0 = models.reparameterise(torch.tensor([[1.5]]), torch.tensor([[-60.0]]))
    assert z0.item() == pytest.approx(1.5, abs=1e-9)
    with pytest.raises(ValueError):
        models.reparameterise(torch.zeros(2, 3), torch.zeros(2, 4))


def test_reparameterise_with_a_generator_is_reproducible():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
    a = models.reparameterise(mu, logvar, torch.Generator().manual_seed(5))
    b = models.reparameterise(mu, logvar, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_build_models_is_seeded_and_leaves_the_global_rng_alone():
    cfg = make_config("ci")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = models.build_models(cfg)
    assert torch.equal(torch.get_rng_state(), before)
    b = models.build_models(cfg)
    c = models.build_models(cfg, seed=cfg.seed + 1)
    for ma, mb, mc in zip(a, b, c):
        sa, sb, sc = ma.state_dict(), mb.state_dict(), mc.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_count_parameters_known_answers():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 5))  # (3*2 + 2) + (2*5 + 5) = 23
    assert models.count_parameters(net) == 23
    net[0].requires_grad_(False)
    assert models.count_parameters(net, trainable_only=True) == 15
    assert models.count_parameters(net) == 23
    g = models.Generator(32, 32)
    assert models.count_parameters(g) == sum(p.numel() for p in g.parameters()) > 0


def test_discriminator_augments_only_in_training_and_stays_differentiable():
    from helpers.models import Discriminator, diff_augment

    torch.manual_seed(0)
    d = Discriminator(32)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    d.eval()
    assert torch.equal(d(x), d(x))  # evaluation: no augmentation, deterministic
    d.train()
    assert not torch.equal(d(x), d(x))  # training: a new random translation/cutout each call
    x.requires_grad_(True)
    diff_augment(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # batch statistics cannot separate a batch of stimulus copies from a generated batch: no BatchNorm
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


def test_diff_augment_keeps_range_and_moves_content():
    from helpers.models import diff_augment

    torch.manual_seed(1)
    img = -torch.ones(64, 3, 16, 16)  # all ink
    out = diff_augment(img)
    assert out.shape == img.shape and out.min() >= -1 and out.max() <= 1
    assert (out == 1).any()  # translated borders are white paper
    assert (out == 0).any()  # the cutout
