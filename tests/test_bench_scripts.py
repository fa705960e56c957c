"""The parts of the speed benchmarks that can be checked without their hardware (the GPU script's CPU agreement)."""
import warnings

import torch

from benchmarks.bench_train import open_clip_modules
from benchmarks.bench_train_gpu import device_agreement
from helpers.semantic import TINY_CLIP_NAME, load_clip


def test_the_gpu_scripts_agreement_check_finds_a_device_equal_to_itself():
    """CPU against CPU: same weights, same noise, no dropout or DiffAugment, so every term of every step is
    identical although each side reseeds the global RNG differently (a random draw left uncontrolled would show
    here); a GPU run of the same function then measures only what the device changes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained CLIP banner
        got = device_agreement("cpu", steps=2, batch=8, profile="ci")
    assert got["agree"] and set(got["max_relative_difference"]) >= {"total", "rec", "clip", "kl"}
    assert all(v == 0.0 for v in got["max_relative_difference"].values())


def test_the_seed_faithful_clip_has_open_clips_modules_and_the_same_weights():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = load_clip(TINY_CLIP_NAME, "untrained")
    stock = open_clip_modules(ours)
    assert ours.fast_modules > 0 and stock.fast_modules == 0
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(stock.encode_images(images), ours.encode_images(images), rtol=1e-5, atol=1e-5)
