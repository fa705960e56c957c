"""The VAE-GAN: an EEG-feature encoder, a ConvTranspose2d image generator and a conv discriminator.

Shapes (docs/DESIGN.md#models): features [B, feature_dim] -> (mu, logvar) [B, latent_dim] -> z ->
image [B, 3, image_size, image_size] in [-1, 1] (Tanh). The discriminator scores images with one
logit each: real = the stimulus image of the event's digit, fake = the generated image.

Generator and discriminator follow DCGAN (Radford et al. 2016): 4x4 stride-2 (de)convolutions,
BatchNorm, ReLU / LeakyReLU(0.2), N(0, 0.02) initialisation, because that recipe is known to train
stably at these sizes. Image sizes are base * 2**k with base 4 (32, 64, 128, ...) or 7 (the seed's
224 = 7 -> 14 -> 28 -> 56 -> 112 -> 224).
"""
from __future__ import annotations

import torch
from torch import nn

from helpers.stimuli import N_DIGITS

MAX_CHANNELS = 512


def image_size_plan(image_size: int) -> tuple[int, int]:
    """Return (base, n_doublings) with base * 2**n_doublings == image_size, base 4 or 7.

    Raises ValueError for sizes the stride-2 stack cannot reach (e.g. 100), naming valid ones.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool):
        raise ValueError(f"image_size must be an int, got {image_size!r}")
    for base in (4, 7):
        size, k = image_size, 0
        while size > base and size % 2 == 0:
            size //= 2
            k += 1
        if size == base and k >= 1:
            return base, k
    valid = sorted({b * 2 ** k for b in (4, 7) for k in range(1, 7)})
    raise ValueError(f"image_size={image_size} is not supported; use 4*2**k or 7*2**k, e.g. {valid}")


def _channel_plan(n_doublings: int, base_channels: int) -> list[int]:
    # Widest at the smallest resolution, halving each time the image doubles (DCGAN).
    return [min(MAX_CHANNELS, base_channels * 2 ** j) for j in range(n_doublings - 1, -1, -1)]


def init_dcgan_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation in place: conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


# The posterior starts narrow: log(sigma^2) = -6 (sigma = 0.05) for every event. With the usual start
# (sigma = 1 in all 128 dimensions) the generator sees N(0, I) noise that drowns the EEG's small mean, learns
# to ignore z and draws one average digit; on the synthetic data the linear encoder's validation judge top-1
# after 6 CPU epochs went from 0.26 to 0.39 with this start (no adversarial and no label term, tiny CLIP). The KL term
# still pulls sigma towards 1 as far as the reconstruction allows.
INITIAL_LOGVAR = -6.0
N_CLASSES = N_DIGITS  # one class per stimulus digit


class Encoder(nn.Module):
    """VAE encoder: feature vector [B, feature_dim] -> (mu, logvar), each [B, latent_dim].

    ``hidden_dim > 0``: two hidden layers (LayerNorm rather than BatchNorm, so that a batch of one behaves
    like any other). ``hidden_dim = 0``: mu and logvar are linear in the features, like the linear EEG
    baseline. With ~2,000 training events the MLP's 400 k weights fit the training events almost perfectly
    (train judge 0.97 vs 0.42 on validation; the linear map: 0.80 vs 0.42-0.45) and, without the label term,
    learn far more slowly (validation judge 0.20 vs 0.26 after 6 epochs, no adversarial term).

    ``label_head`` maps mu to 10 digit logits. It is used only by the optional auxiliary term
    ``lambda_cls * CE(label_head(mu), digit)`` (helpers.losses), which gives the encoder the direct,
    noise-free signal that the image losses give only through the generator.
    """

    def __init__(self, feature_dim: int = 264, hidden_dim: int = 512, latent_dim: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        for name, v, lo in (("feature_dim", feature_dim, 1), ("hidden_dim", hidden_dim, 0),
                            ("latent_dim", latent_dim, 1)):
            if isinstance(v, bool) or int(v) != v or int(v) < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.feature_dim, self.hidden_dim, self.latent_dim = int(feature_dim), int(hidden_dim), int(latent_dim)
        if self.hidden_dim:
            self.body = nn.Sequential(
                nn.Linear(feature_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.LeakyReLU(0.2),
            )
        else:
            self.body = nn.Identity()
        width = self.hidden_dim or self.feature_dim
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, INITIAL_LOGVAR)
        self.label_head = nn.Linear(latent_dim, N_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ValueError(f"Encoder expects features [batch, {self.feature_dim}], got {tuple(x.shape)}")
        h = self.body(x)
        return self.mu(h), self.logvar(h)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps with eps ~ N(0, I); differentiable in mu and logvar.

    Pass a torch.Generator to draw eps reproducibly without touching the global RNG.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


class Generator(nn.Module):
    """Latent [B, latent_dim] -> RGB image [B, 3, image_size, image_size] in [-1, 1].

    A ConvTranspose2d projects z to base x base (4 or 7), then each stride-2 ConvTranspose2d doubles
    the size (BatchNorm + ReLU in between, Tanh at the end).
    """

    def __init__(self, latent_dim: int = 128, image_size: int = 224, base_channels: int = 32):
        super().__init__()
        base, k = image_size_plan(image_size)
        self.latent_dim, self.image_size = int(latent_dim), image_size
        ch = _channel_plan(k, base_channels)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, ch[0], base, 1, 0, bias=False),
                                   nn.BatchNorm2d(ch[0]), nn.ReLU(True)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ch[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"Generator expects z [batch, {self.latent_dim}], got {tuple(z.shape)}")
        return self.net(z[:, :, None, None])


def diff_augment(images: torch.Tensor, shift_frac: float = 0.125, cutout_frac: float = 0.5) -> torch.Tensor:
    """Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020): a random
    translation (zero = black padding in [-1, 1] would be ink, so the border is white) and a random cutout.

    With only 10 distinct real images the discriminator otherwise memorises them and wins at once; its
    gradient then drives the generator to one collapsed image for every EEG input (measured: the
    oracle-label generator fell to 0 % judge accuracy). Applied alike to real and generated images, it
    stays differentiable, so the generator still learns through it.
    """
    b, _, h, w = images.shape
    dev = images.device
    sh, sw = int(h * shift_frac + 0.5), int(w * shift_frac + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=dev)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=dev)
    rows = torch.arange(h, device=dev).view(1, h, 1) - tx
    cols = torch.arange(w, device=dev).view(1, 1, w) - ty
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    idx = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
    flat = images.flatten(2)
    shifted = torch.gather(flat, 2, idx.flatten(1).unsqueeze(1).expand(-1, images.shape[1], -1)).view_as(images)
    shifted = torch.where(inside.unsqueeze(1), shifted, torch.ones_like(shifted))
    ch, cw = int(h * cutout_frac + 0.5), int(w * cutout_frac + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=dev)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=dev)
    r = torch.arange(h, device=dev).view(1, h, 1)
    c = torch.arange(w, device=dev).view(1, 1, w)
    cut = ((r - cy).abs() <= ch // 2) & ((c - cx).abs() <= cw // 2)
    return shifted * (~cut).unsqueeze(1).to(shifted.dtype)


class Discriminator(nn.Module):
    """Image [B, 3, image_size, image_size] in [-1, 1] -> one real/fake logit per image, shape [B].

    Spectral normalisation instead of BatchNorm: the real batch holds only copies of 10 stimuli, so batch
    statistics alone would tell it from a generated batch. In training mode the input goes through
    :func:`diff_augment` (``augment=True``), which keeps the discriminator from memorising the 10 images.
    """

    def __init__(self, image_size: int = 224, base_channels: int = 32, augment: bool = True):
        super().__init__()
        base, k = image_size_plan(image_size)
        self.image_size, self.augment = image_size, bool(augment)
        ch = _channel_plan(k, base_channels)[::-1]  # narrow at full resolution, wide at base x base
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ch[-1], 1, base, 1, 0)]  # base x base -> 1 x 1
        self.net = init_dcgan_(nn.Sequential(*layers))
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                nn.utils.parametrizations.spectral_norm(m)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        expected = (3, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"Discriminator expects images [batch, {expected[0]}, {expected[1]}, {expected[2]}],"
                             f" got {tuple(images.shape)}")
        if self.training and self.augment:
            images = diff_augment(images)
        return self.net(images).flatten()


def build_models(config, seed: int | None = None) -> tuple[Encoder, Generator, Discriminator]:
    """(encoder, generator, discriminator) sized by a Config (feature_dim, hidden_dim, latent_dim, image_size).

    Initialisation is drawn from ``seed`` (default ``config.seed``, else 0) in a forked RNG, so the same
    config gives the same weights and the caller's global random state is left untouched.
    """
    if seed is None:
        seed = int(getattr(config, "seed", 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = Encoder(config.feature_dim, config.hidden_dim, config.latent_dim)
        generator = Generator(config.latent_dim, config.image_size)
        discriminator = Discriminator(config.image_size)
    return encoder, generator, discriminator


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (only those with requires_grad if trainable_only)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
