"""The parts of the benchmarks that can be checked without their hardware or hours: the GPU script's CPU agreement, the
seed-faithful CLIP, and that the clip-effect grid's arms differ in their loss weights only."""
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


def test_the_clip_effect_grid_trains_every_arm_with_the_same_epochs_and_views():
    """The grid compares loss weights only: make_config's recipe for CLIP alone (more epochs and views, another
    lambda_clip) must not reach the clip_alone arms, whose every field the benchmark sets itself."""
    from benchmarks.bench_clip_effect import arm_overrides
    from helpers.config import make_config

    for epochs, sets in ((6, []), (4, ["clip_views=4", "clip_model=digit-clip"])):
        grid = arm_overrides(epochs, 1500, sets)
        configs = {name: make_config("cpu", overrides) for name, overrides in grid.items()}
        assert {c.epochs for c in configs.values()} == {epochs}
        views = {c.clip_views for name, c in configs.items() if name != "clip_alone_no_views"}
        assert views == ({4} if sets else {2})
        # A run-wide --set leaves the references what they are: no views, and the untrained CLIP.
        assert configs["clip_alone_no_views"].clip_views == 1
        assert configs["four_terms_5_untrained_clip"].clip_model == "eeg2img-tiny"
        assert configs["four_terms_5_untrained_clip"].clip_weights == "untrained"
        assert configs["clip_alone"].lambda_clip == configs["four_terms_5"].lambda_clip == 5.0
        assert all(c.clip_batch == 0 and c.synthetic_events == 1500 for c in configs.values())
    assert set(arm_overrides(6, 1500, names=["clip_alone"])) == {"clip_alone"}
