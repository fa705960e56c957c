import json

import pytest

from helpers.config import CLIP_ALONE, PROFILES, Config, active_profile, make_config, parse_overrides
from helpers.log import logger

CONTRACT_FIELDS = ["lambda_adv", "lambda_rec", "lambda_kl", "lambda_clip", "lambda_cls", "batch_size", "epochs",
                   "learning_rate", "latent_dim", "image_size", "feature_dim", "clip_model",
                   "clip_weights", "seed"]


def test_defaults_are_the_designed_ones():
    c = Config()
    assert (c.lambda_adv, c.lambda_rec, c.lambda_kl, c.lambda_clip) == (1.0, 10.0, 1.0, 5.0)
    assert (c.batch_size, c.epochs, c.learning_rate, c.latent_dim, c.feature_dim) == (16, 20, 2e-4, 128, 264)
    # The seed's four-term loss, MLP encoder and loop (no warm-up, one learning rate) by default, and in the gpu
    # profile (the seed's configuration).
    for cfg in (c, make_config("gpu")):
        assert cfg.lambda_cls == 0.0 and cfg.hidden_dim == 512
        assert cfg.adv_warmup_epochs == 0 and cfg.encoder_learning_rate == 0.0
    for name in CONTRACT_FIELDS:
        assert hasattr(c, name)


def test_profiles_only_set_known_fields_and_ci_is_offline_and_tiny():
    for values in PROFILES.values():
        Config.from_dict(values)  # raises on an unknown field
    ci = make_config("ci")
    assert ci.clip_weights == "untrained" and ci.device == "cpu" and ci.profile == "ci"
    assert make_config("gpu").image_size == 224


def test_overrides_are_typed_and_bad_ones_say_why():
    c = make_config("ci", ["lambda_clip=0", "epochs=3", "mixed_precision=true", "clip_weights=/tmp/x.pt"])
    assert c.lambda_clip == 0.0 and isinstance(c.lambda_clip, float)
    assert c.epochs == 3 and c.mixed_precision is True and c.clip_weights == "/tmp/x.pt"
    with pytest.raises(ValueError, match="unknown config field"):
        parse_overrides(["lambda_klip=1"])
    with pytest.raises(ValueError, match="epochs.*int"):
        parse_overrides(["epochs=many"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["epochs"])


def test_save_load_round_trip(tmp_path):
    c = make_config("cpu", {"seed": 7, "split_fractions": (0.6, 0.2, 0.2)})
    c.save(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 7
    assert Config.load(tmp_path / "config.json") == c


def test_active_profile_reads_environment(monkeypatch):
    monkeypatch.setenv("EEG2IMG_PROFILE", "gpu")
    assert active_profile() == "gpu"
    monkeypatch.setenv("EEG2IMG_PROFILE", "laptop")
    with pytest.raises(ValueError, match="not a profile"):
        active_profile()


@pytest.mark.parametrize("fractions, why", [
    ((0.85, 0.0, 0.15), "validation share is 0"), ((0.85, 0.15, 0.0), "test share is 0"),
    ((0.0, 0.5, 0.5), "train share is 0"), ((0.8, -0.1, 0.3), "validation share is -0.1"),
    ((0.7, 0.2, 0.2), "sum to 1"), ((0.5, 0.5), "three shares"), ((0.6, 0.2, 0.1, 0.1), "three shares")])
def test_split_fractions_that_cannot_work_are_refused_when_the_config_is_made(fractions, why):
    # val=0 used to be accepted here and crash after training, when the validation events were needed.
    for make in (lambda: make_config("ci", {"split_fractions": fractions}),
                 lambda: make_config("ci", ["split_fractions=" + ",".join(map(str, fractions))]),
                 lambda: Config.from_dict({**Config().to_dict(), "split_fractions": list(fractions)})):
        with pytest.raises(ValueError, match=f"split_fractions.*{why}") as e:
            make()
        assert "\n" not in str(e.value)


def test_split_gap_events_defaults_to_a_few_seconds_and_is_checked():
    c = Config()
    assert c.split_gap_events == 2  # about 4 s of MindBigData EP events between blocks
    assert make_config("ci", ["split_gap_events=0"]).split_gap_events == 0
    assert Config.from_dict({k: v for k, v in c.to_dict().items() if k != "split_gap_events"}).split_gap_events == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="split_gap_events"):
            make_config("ci", {"split_gap_events": bad})


def test_with_clip_as_the_only_image_term_the_whole_batch_goes_through_clip_unless_asked_otherwise():
    """The cpu profile's clip_batch 4 leaves 12 of 16 samples without any image gradient when L1 and the
    adversarial term are off (measured: judge top-1 at chance), so the profile's saving is dropped then; a
    clip_batch the user sets is kept (and the trainer warns about it)."""
    alone = ["lambda_rec=0", "lambda_adv=0", "lambda_cls=0", "clip_model=digit-clip"]
    assert make_config("cpu").clip_batch == 4
    assert make_config("cpu", ["lambda_rec=0"]).clip_batch == 4  # the adversarial term still shapes every image
    assert make_config("cpu", alone).clip_batch == 0
    assert make_config("cpu", alone + ["clip_batch=4"]).clip_batch == 4
    assert make_config("cpu", {"lambda_rec": 0.0, "lambda_adv": 0.0, "clip_batch": 8}).clip_batch == 8
    assert make_config("cpu", alone + ["lambda_clip=0"]).clip_batch == 4  # no CLIP term: nothing to decide
    assert make_config("gpu", {"lambda_rec": 0.0, "lambda_adv": 0.0, "clip_batch": 8}).clip_batch == 8
    assert make_config("gpu", {"lambda_rec": 0.0, "lambda_adv": 0.0}).clip_batch == 0


def test_the_cpu_profile_has_its_own_recipe_for_clip_alone_and_every_field_the_user_sets_wins(caplog, monkeypatch):
    """The issue's command (cpu profile, CLIP as the only image term) trains with the profile's CLIP-alone recipe,
    says so in the log, and keeps every field given explicitly; runs with L1 or the GAN keep the profile's values."""
    alone = ["lambda_rec=0", "lambda_adv=0", "lambda_cls=0", "clip_model=digit-clip"]
    main = make_config("cpu")
    recipe = CLIP_ALONE["cpu"]
    monkeypatch.setattr(logger, "propagate", True)  # set_log_level (the CLI's) stops propagation: caplog needs it
    with caplog.at_level("INFO", logger="helpers"):
        config = make_config("cpu", alone)
    assert {k: getattr(config, k) for k in recipe} == recipe
    assert any("CLIP is the only image term" in r.getMessage() and "clip_views 8" in r.getMessage()
               for r in caplog.records)
    assert (config.learning_rate, config.image_size, config.hidden_dim) == (main.learning_rate, main.image_size,
                                                                           main.hidden_dim)
    # Given is given, even when it equals the profile's value (6 epochs, lambda_clip 1), as a string or in a dict.
    for field, value in (("epochs", 3), ("epochs", 6), ("clip_views", 1), ("lambda_clip", 2.0), ("lambda_clip", 1.0)):
        config = make_config("cpu", alone + [f"{field}={value}"])
        assert getattr(config, field) == value
        assert config.clip_batch == 0
        as_dict = make_config("cpu", {**parse_overrides(alone), field: value})
        assert getattr(as_dict, field) == value and as_dict.clip_views == (value if field == "clip_views" else 8)
    with_l1 = make_config("cpu", ["lambda_adv=0", "lambda_cls=0"])  # L1 still pins the images: the profile's values
    assert (with_l1.epochs, with_l1.clip_views, with_l1.lambda_clip) == (main.epochs, main.clip_views, main.lambda_clip)
    assert make_config("gpu", {"lambda_rec": 0.0, "lambda_adv": 0.0}).epochs == make_config("gpu").epochs
