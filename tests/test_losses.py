"""Loss terms on known answers, and the combined loss's lambda_clip really steering the generator."""
import math

import pytest
import torch

from helpers import losses, models, semantic
from helpers.config import make_config


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- closed forms ------------------------------------------------------------------------------

def test_kl_is_zero_for_the_prior_and_matches_the_closed_form():
    assert losses.kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # row 0: 0.5*(1 + 1 - 1 - 0) + 0.5*(4 + 2 - 1 - ln 2) = 0.5 + 2.5 - ln(2)/2; row 1: 0;
    # mean over the 2 latent dimensions and the 2 rows
    expected = (0.5 + 2.5 - math.log(2.0) / 2) / 4
    assert losses.kl_divergence(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_agrees_with_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).mean()
    assert losses.kl_divergence(mu, logvar).item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError):
        losses.kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))


def test_discriminator_loss_on_known_logits():
    zero = torch.zeros(4)
    assert losses.discriminator_loss(zero, zero).item() == pytest.approx(math.log(2.0), rel=1e-6)
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)))
    assert losses.discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # A confident, correct discriminator has a loss near 0; a fooled one a large loss.
    assert losses.discriminator_loss(torch.full((3,), 20.0), torch.full((3,), -20.0)).item() < 1e-8
    assert losses.discriminator_loss(torch.full((3,), -5.0), torch.full((3,), 5.0)).item() > 5


def _known_inputs():
    generated = torch.zeros(2, 3, 4, 4)
    target = torch.full((2, 3, 4, 4), 0.5)  # L1 = 0.5
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)  # KL = 0
    d_fake = torch.zeros(2)  # adv = ln 2
    gen_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target_emb = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # 1 - cos: 1 and 0 -> 0.5
    return d_fake, generated, target, mu, logvar, gen_emb, target_emb


def test_generator_losses_terms_and_weighted_total():
    weights = dict(lambda_adv=1.0, lambda_rec=10.0, lambda_kl=1.0, lambda_clip=5.0)
    total, terms = losses.generator_losses(*_known_inputs(), weights)
    assert terms["adv"] == pytest.approx(math.log(2.0), rel=1e-6)
    assert terms["rec"] == pytest.approx(0.5)
    assert terms["kl"] == pytest.approx(0.0, abs=1e-7)
    assert terms["clip"] == pytest.approx(0.5)
    assert terms["total"] == pytest.approx(math.log(2.0) + 10 * 0.5 + 0 + 5 * 0.5, rel=1e-6)
    assert total.item() == pytest.approx(terms["total"])
    assert all(isinstance(v, float) for v in terms.values())
    assert math.isnan(terms["cls"])  # no logits given and lambda_cls absent = 0: the seed's four terms
    # A Config with the same lambdas gives the same answer (the defaults are 1 / 10 / 1 / 5, no label term).
    cfg_total, _ = losses.generator_losses(*_known_inputs(), make_config("gpu"))
    assert cfg_total.item() == pytest.approx(total.item())


def test_label_term_adds_lambda_cls_times_cross_entropy_and_trains_the_logits():
    logits = torch.zeros(2, 10, requires_grad=True)  # uniform over 10 digits: CE = ln 10
    labels = torch.tensor([3, 7])
    weights = dict(lambda_adv=1.0, lambda_rec=10.0, lambda_kl=1.0, lambda_clip=5.0, lambda_cls=2.0)
    total, terms = losses.generator_losses(*_known_inputs(), weights, class_logits=logits, labels=labels)
    assert terms["cls"] == pytest.approx(math.log(10.0), rel=1e-6)
    assert terms["total"] == pytest.approx(math.log(2.0) + 5 + 2.5 + 2 * math.log(10.0), rel=1e-6)
    total.backward()
    # d CE / d logit = softmax - onehot, averaged over the batch, times lambda_cls.
    expected = torch.full((2, 10), 0.1)
    expected[0, 3] -= 1.0
    expected[1, 7] -= 1.0
    assert torch.allclose(logits.grad, 2.0 * expected / 2, atol=1e-6)
    # The profiles that use it must be given the logits: no silent four-term loss.
    with pytest.raises(ValueError, match="lambda_cls"):
        losses.generator_losses(*_known_inputs(), make_config("cpu"))


def test_zero_weight_terms_are_logged_but_left_out():
    weights = dict(lambda_adv=0.0, lambda_rec=1.0, lambda_kl=0.0, lambda_clip=0.0)
    total, terms = losses.generator_losses(*_known_inputs(), weights)
    assert terms["clip"] == pytest.approx(0.5) and terms["adv"] == pytest.approx(math.log(2.0))
    assert total.item() == pytest.approx(0.5)
    # With weight 0 the CLIP / discriminator inputs may be skipped entirely: logged as NaN.
    d_fake, generated, target, mu, logvar, _, _ = _known_inputs()
    total, terms = losses.generator_losses(None, generated, target, mu, logvar, None, None, weights)
    assert math.isnan(terms["clip"]) and math.isnan(terms["adv"]) and total.item() == pytest.approx(0.5)


def test_bad_weights_are_clear_errors():
    args = _known_inputs()
    with pytest.raises(ValueError, match="lambda_clip"):
        losses.generator_losses(*args, dict(lambda_adv=1, lambda_rec=1, lambda_kl=1, lambda_clip=-1))
    with pytest.raises(KeyError, match="lambda_kl"):
        losses.generator_losses(*args, dict(lambda_adv=1, lambda_rec=1, lambda_clip=1))
    with pytest.raises(ValueError, match="all loss weights are 0"):
        losses.generator_losses(*args, dict(lambda_adv=0, lambda_rec=0, lambda_kl=0, lambda_clip=0))
    d_fake, generated, target, mu, logvar, _, target_emb = args
    with pytest.raises(ValueError, match="lambda_clip"):
        losses.generator_losses(d_fake, generated, target, mu, logvar, None, target_emb,
                                dict(lambda_adv=1, lambda_rec=1, lambda_kl=1, lambda_clip=1))


# --- lambda_clip steers the generator through the frozen CLIP ----------------------------------

@pytest.fixture(scope="module")
def setup():
    clip = semantic.load_clip(semantic.TINY_CLIP_NAME, "untrained")
    torch.manual_seed(0)
    gen = models.Generator(latent_dim=16, image_size=32)
    stimuli = torch.ones(10, 3, 32, 32)
    for k in range(10):
        stimuli[k, :, 2 * k:2 * k + 8, 8:24] = -1.0
    targets = semantic.StimulusEmbeddings.compute(clip, stimuli)
    labels = torch.tensor([0, 3, 7, 9])
    return clip, gen, stimuli, targets, labels, torch.randn(4, 16)


def _close(a, b, rel=1e-4):
    # Relative to the tensor's norm: float32 sums in another order differ in the last bits.
    return (a - b).norm() <= rel * b.norm()


def _generator_grads(setup, **lambdas):
    clip, gen, stimuli, targets, labels, z = setup
    gen.zero_grad(set_to_none=True)
    weights = {**dict(lambda_adv=0.0, lambda_rec=0.0, lambda_kl=0.0, lambda_clip=0.0), **lambdas}
    images = gen(z)
    mu, logvar = torch.zeros(4, 16), torch.zeros(4, 16)
    total, _ = losses.generator_losses(torch.zeros(4), images, stimuli[labels], mu, logvar,
                                       clip.encode_images(images), targets.for_labels(labels), weights)
    total.backward()
    assert all(p.grad is None for p in clip.parameters())
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in gen.parameters()]


def test_semantic_term_alone_gives_the_generator_gradients(setup):
    grads = _generator_grads(setup, lambda_clip=1.0)
    assert all(g.abs().sum() > 0 for g in grads)


def test_generator_gradients_scale_with_lambda_clip_and_vanish_at_zero(setup):
    g1 = _generator_grads(setup, lambda_clip=1.0)
    g3 = _generator_grads(setup, lambda_clip=3.0)
    for a, b in zip(g1, g3):
        assert _close(b, 3.0 * a)
    # With L1 present: lambda_clip adds exactly lambda_clip * (semantic gradient), and nothing at 0.
    rec_only = _generator_grads(setup, lambda_rec=1.0, lambda_clip=0.0)
    rec_clip = _generator_grads(setup, lambda_rec=1.0, lambda_clip=2.0)
    for r, rc, c in zip(rec_only, rec_clip, g1):
        assert _close(rc - r, 2.0 * c)
    assert any(not torch.allclose(r, rc) for r, rc in zip(rec_only, rec_clip))


def test_the_semantic_term_alone_trains_the_generator_towards_its_target():
    # The prototype's loss was under no_grad and trained nothing; ours must lower 1 - cos by itself.
    clip = semantic.load_clip(semantic.TINY_CLIP_NAME, "untrained")
    torch.manual_seed(0)
    gen = models.Generator(latent_dim=16, image_size=32)
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
    z = torch.randn(4, 16)
    target = torch.ones(1, 3, 32, 32)
    target[:, :, 8:24, 14:18] = -1.0  # a "1"
    target_emb = clip.encode_images(target).detach().expand(4, -1)
    weights = dict(lambda_adv=0.0, lambda_rec=0.0, lambda_kl=0.0, lambda_clip=1.0)
    history = []
    for _ in range(8):
        images = gen(z)
        total, terms = losses.generator_losses(None, images, images.detach(), torch.zeros(4, 1), torch.zeros(4, 1),
                                               clip.encode_images(images), target_emb, weights)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(terms["clip"])
    assert history[-1] < 0.2 * history[0], history  # untrained CLIP: typically 0.06 -> 0.001
