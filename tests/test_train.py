"""The training loop: repeatable, resumable after a hard kill, loud on divergence, CLIP untouched."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.checkpoint import CheckpointError, load_checkpoint
from helpers.config import make_config
from helpers.semantic import load_clip
from helpers.stimuli import render_digits, to_tensor
from helpers.train import Trainer, TrainData, TrainingDivergedError

ROOT = Path(__file__).resolve().parents[1]


def toy_data(n=96, seed=0, feature_dim=264, strength=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(size=(n, feature_dim)).astype(np.float32)
    x[:, :10] += strength * np.eye(10, dtype=np.float32)[y]
    return TrainData.from_numpy(x, y)


@pytest.fixture(scope="module")
def clip_and_stimuli():
    cfg = make_config("ci")
    clip = load_clip(cfg.clip_model, cfg.clip_weights)
    stimuli = to_tensor(render_digits(224), size=cfg.image_size)
    emb = clip.encode_images(to_tensor(render_digits(224))).detach()
    return clip, stimuli, emb


def make_trainer(clip_and_stimuli, out_dir=None, **overrides):
    clip, stimuli, emb = clip_and_stimuli
    cfg = make_config("ci", {"epochs": 2, "batch_size": 16, **overrides})
    return Trainer(cfg, stimuli, clip, emb, out_dir=out_dir)


def weights_of(tr):
    return {f"{name}.{k}": v.clone() for name in ("encoder", "generator", "discriminator")
            for k, v in getattr(tr, name).state_dict().items()}


def test_same_seed_same_run_and_history_files(clip_and_stimuli, tmp_path):
    data = toy_data()
    a = make_trainer(clip_and_stimuli, out_dir=tmp_path)
    ha = a.fit(data, toy_data(32, seed=1), progress=False)
    b = make_trainer(clip_and_stimuli)
    hb = b.fit(data, toy_data(32, seed=1), progress=False)
    wa, wb = weights_of(a), weights_of(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(ha) == strip(hb)
    # every loss term, every epoch, in both formats
    rows = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    for term in ("train_adv", "train_rec", "train_kl", "train_clip", "train_cls", "train_total", "train_disc",
                 "val_rec", "val_clip", "val_semantic_top1", "val_label_head_top1"):
        assert term in rows[0] and np.isfinite(rows[0][term])
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert "train_clip" in header and "val_semantic_top1" in header
    ckpt = load_checkpoint(tmp_path / "models" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["lambda_clip"] == 5.0


def test_clip_stays_frozen_and_bit_identical(clip_and_stimuli):
    clip = clip_and_stimuli[0]
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    tr = make_trainer(clip_and_stimuli, epochs=1)
    tr.fit(toy_data(48), progress=False)
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())
    assert not clip.model.training


def test_lambda_clip_changes_what_the_generator_learns(clip_and_stimuli):
    data = toy_data(48)
    runs = {}
    for lam in (0.0, 5.0):
        tr = make_trainer(clip_and_stimuli, epochs=1, lambda_clip=lam)
        hist = tr.fit(data, progress=False)
        runs[lam] = (weights_of(tr), hist)
    w0, w5 = runs[0.0][0], runs[5.0][0]
    assert any(not torch.equal(w0[k], w5[k]) for k in w0 if k.startswith("generator."))
    assert np.isnan(runs[0.0][1][0]["train_clip"])  # not computed when its weight is 0 ...
    assert np.isfinite(runs[5.0][1][0]["train_clip"])  # ... computed and logged otherwise


def test_label_term_teaches_the_encoder_the_digit_and_is_off_at_zero(clip_and_stimuli):
    # Separable toy features: with lambda_cls the label head decodes the held-out events; without it the head
    # is never trained (its weights stay at their initial values) and the term is not in the loss.
    train, val = toy_data(320, strength=5.0), toy_data(96, seed=1, strength=5.0)
    # The bar is the other arm of the ablation, measured in the same test: the untrained head of the same
    # architecture on the same events sits near chance (0.1); the trained one reached 0.79-0.84 on two machines.
    # Requiring +0.3 over the untrained arm (and 0.45 at least) holds on any CPU yet fails a head that learns nothing.
    on = make_trainer(clip_and_stimuli, epochs=3, lambda_cls=1.0, learning_rate=2e-3)
    hist = on.fit(train, val, progress=False)
    assert hist[-1]["train_cls"] < hist[0]["train_cls"]
    off = make_trainer(clip_and_stimuli, epochs=1, lambda_cls=0.0)
    head0 = {k: v.clone() for k, v in off.encoder.label_head.state_dict().items()}
    hist_off = off.fit(train, val, progress=False)
    assert np.isnan(hist_off[0]["train_cls"]) and "val_label_head_top1" not in hist_off[0]
    assert all(torch.equal(head0[k], v) for k, v in off.encoder.label_head.state_dict().items())
    with torch.no_grad():
        untrained = float((off.encoder.label_head(off.latents(val.x)).argmax(1) == val.y).float().mean())
    assert hist[-1]["val_label_head_top1"] >= max(0.45, untrained + 0.3), (hist[-1], untrained)


def test_encoder_learning_rate_sets_the_encoders_step_and_zero_means_learning_rate(clip_and_stimuli):
    # Adam's first step moves every weight with a gradient by about its learning rate.
    data = toy_data(16)

    def largest_steps(tr):
        params = {"encoder": tr.encoder.mu.parameters, "generator": tr.generator.parameters}
        before = {part: [p.detach().clone() for p in f()] for part, f in params.items()}
        tr.train_step(data.x, data.y)
        return {part: max(float((p.detach() - b).abs().max()) for p, b in zip(f(), before[part]))
                for part, f in params.items()}

    slow = largest_steps(make_trainer(clip_and_stimuli, learning_rate=1e-3, encoder_learning_rate=1e-5))
    assert 0.5e-5 < slow["encoder"] <= 1.01e-5
    assert 0.5e-3 < slow["generator"] <= 1.01e-3
    same = largest_steps(make_trainer(clip_and_stimuli, learning_rate=1e-3, encoder_learning_rate=0.0))
    assert 0.5e-3 < same["encoder"] <= 1.01e-3
    for bad in (-1e-3, float("nan"), True, "fast"):
        with pytest.raises(ValueError, match="encoder_learning_rate"):
            make_trainer(clip_and_stimuli, encoder_learning_rate=bad)


def test_adversarial_warmup_leaves_the_discriminator_alone_then_switches_it_on(clip_and_stimuli):
    tr = make_trainer(clip_and_stimuli, epochs=2, adv_warmup_epochs=1)
    d0 = {k: v.clone() for k, v in tr.discriminator.state_dict().items()}
    hist = tr.fit(toy_data(64), toy_data(32, seed=1), epochs=1, progress=False)
    assert all(torch.equal(d0[k], v) for k, v in tr.discriminator.state_dict().items())
    assert np.isnan(hist[0]["train_adv"]) and np.isnan(hist[0]["train_disc"])
    assert np.isfinite(hist[0]["train_rec"]) and np.isfinite(hist[0]["train_total"])
    hist = tr.fit(toy_data(64), toy_data(32, seed=1), progress=False)
    assert len(hist) == 2 and np.isfinite(hist[1]["train_adv"]) and np.isfinite(hist[1]["train_disc"])
    assert any(not torch.equal(d0[k], v) for k, v in tr.discriminator.state_dict().items())
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="adv_warmup_epochs"):
            make_trainer(clip_and_stimuli, adv_warmup_epochs=bad)
    assert make_trainer(clip_and_stimuli, adv_warmup_epochs=np.int64(1)).config.adv_warmup_epochs == 1
    # Only the adversarial term weighted: nothing would train in the warm-up; the error names the warm-up.
    with pytest.raises(ValueError, match="adv_warmup_epochs=1 .*every other loss weight is 0"):
        make_trainer(clip_and_stimuli, adv_warmup_epochs=1, lambda_rec=0, lambda_kl=0, lambda_clip=0, lambda_cls=0)
    with pytest.warns(UserWarning, match="never switched on"):
        make_trainer(clip_and_stimuli, epochs=2, adv_warmup_epochs=2)


def test_clip_batch_sends_a_subset_through_clip(clip_and_stimuli):
    tr = make_trainer(clip_and_stimuli, clip_batch=4, clip_views=1, lambda_adv=0, lambda_rec=0, lambda_kl=0)
    calls = []
    original = tr.clip.encode_images
    tr.clip.encode_images = lambda images, **kw: (calls.append(len(images)), original(images, **kw))[1]
    try:
        data = toy_data(16)
        tr.train_step(data.x, data.y)
    finally:
        del tr.clip.encode_images
    assert calls == [4]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tr.generator.parameters())


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_nan_loss_stops_with_term_and_step_and_keeps_last_good_checkpoint(clip_and_stimuli, tmp_path, mixed_precision):
    tr = make_trainer(clip_and_stimuli, out_dir=tmp_path, epochs=1, mixed_precision=mixed_precision)
    tr.fit(toy_data(32), progress=False)
    good = (tmp_path / "models" / "last.pt").read_bytes()
    bad = toy_data(32)
    bad.x[:] = float("inf")
    with pytest.raises(TrainingDivergedError, match=r"loss term '\w+' became (nan|inf) at epoch 2, step 3"):
        tr.fit(bad, epochs=2, progress=False)
    assert (tmp_path / "models" / "last.pt").read_bytes() == good


def test_resume_refuses_a_checkpoint_of_another_configuration(clip_and_stimuli, tmp_path):
    make_trainer(clip_and_stimuli, out_dir=tmp_path, epochs=1).fit(toy_data(32), progress=False)
    other = make_trainer(clip_and_stimuli, lambda_clip=1.0)
    with pytest.raises(CheckpointError, match="lambda_clip"):
        other.resume_from(tmp_path)


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    sys.path.insert(0, {root!r})
    from tests.test_train import toy_data
    from helpers.config import make_config
    from helpers.semantic import load_clip
    from helpers.stimuli import render_digits, to_tensor
    from helpers.train import Trainer
    # Warm-up epoch 1, discriminator on from epoch 2 (where the kill lands), encoder at its own learning rate.
    cfg = make_config("ci", {{"epochs": 3, "adv_warmup_epochs": 1, "encoder_learning_rate": 5e-4}})
    clip = load_clip(cfg.clip_model, cfg.clip_weights)
    tr = Trainer(cfg, to_tensor(render_digits(224), size=cfg.image_size), clip,
                 clip.encode_images(to_tensor(render_digits(224))).detach(), out_dir=sys.argv[1])
    if len(sys.argv) > 3:  # the fault: SIGKILL this process when global step sys.argv[3] is about to run
        import os, signal
        step, kill_at = tr.train_step, int(sys.argv[3])
        def train_step(*args, **kw):
            if tr.step + 1 == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(*args, **kw)
        tr.train_step = train_step
    resumed = tr.resume_from(sys.argv[1]) if sys.argv[2] == "resume" else False
    tr.fit(toy_data(80), toy_data(16, seed=1), progress=False)
    print("RESUMED" if resumed else "FRESH", tr.epoch, tr.step)
""")


def _run(out, mode, kill_at=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT)), str(out), mode,
                           *([str(kill_at)] if kill_at else [])],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _run(full, "fresh").returncode == 0
    # 80 events / batch 16 = 5 steps per epoch: step 8 is in the middle of epoch 2.
    dead = _run(killed, "fresh", kill_at=8)
    assert dead.returncode == -9, dead.stderr
    assert load_checkpoint(killed / "models" / "last.pt")["epoch"] == 1
    again = _run(killed, "resume")
    assert again.returncode == 0, again.stderr
    assert "RESUMED 3 15" in again.stdout
    a, b = load_checkpoint(full / "models" / "last.pt"), load_checkpoint(killed / "models" / "last.pt")
    # NaN (adv and disc in the warm-up epoch) never equals itself: compare it as None.
    strip = lambda h: [{k: (None if v != v else v) for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["history"][0]["train_disc"] != a["history"][0]["train_disc"] and a["history"][1]["train_disc"] > 0
    for net in ("encoder", "generator", "discriminator"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"


def test_resume_refuses_networks_of_another_version(clip_and_stimuli, tmp_path):
    tr = make_trainer(clip_and_stimuli, out_dir=tmp_path, epochs=1)
    tr.fit(toy_data(32), progress=False)
    state = load_checkpoint(tmp_path / "models" / "last.pt")
    state["generator"] = {k + ".old": v for k, v in state["generator"].items()}  # renamed layers
    other = make_trainer(clip_and_stimuli)
    with pytest.raises(CheckpointError, match="do not match this version"):
        other.load_state_dict(state)


def test_resume_refuses_other_data_features_or_clip(clip_and_stimuli, tmp_path):
    tr = make_trainer(clip_and_stimuli, out_dir=tmp_path, epochs=1)
    tr.identity = {"data_source": "synthetic_EP_600_1_0.txt", "clip_weights": "untrained"}
    tr.fit(toy_data(32), progress=False)
    later = make_trainer(clip_and_stimuli)
    later.identity = {"data_source": "EP1.01.txt", "clip_weights": "untrained"}  # the user added the real file
    with pytest.raises(CheckpointError, match="identity.data_source"):
        later.resume_from(tmp_path)
    same = make_trainer(clip_and_stimuli)
    same.identity = dict(tr.identity)
    assert same.resume_from(tmp_path) and same.epoch == 1
    other_data = make_trainer(clip_and_stimuli, synthetic_events=900)  # data settings are part of the run too
    with pytest.raises(CheckpointError, match="synthetic_events"):
        other_data.resume_from(tmp_path)


def test_each_save_keeps_the_previous_checkpoint_and_a_damaged_last_falls_back_to_it(clip_and_stimuli, tmp_path):
    tr = make_trainer(clip_and_stimuli, out_dir=tmp_path, epochs=2)
    tr.fit(toy_data(32), progress=False)
    models = tmp_path / "models"
    assert load_checkpoint(models / "previous.pt")["epoch"] == 1 and load_checkpoint(models / "last.pt")["epoch"] == 2
    data = (models / "last.pt").read_bytes()
    for damaged in (data[:-1], data[: len(data) // 3], b"epoch,total\n"):  # cut at the end, in the middle, text
        (models / "last.pt").write_bytes(damaged)
        logs = []
        again = make_trainer(clip_and_stimuli)
        assert again.resume_from(tmp_path, log=logs.append) and again.epoch == 1
        assert len(logs) == 1 and "last.pt" in logs[0] and "previous.pt" in logs[0] and "falling back" in logs[0]
    (models / "previous.pt").write_bytes(b"")
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    with pytest.raises(CheckpointError, match="no good checkpoint"):
        make_trainer(clip_and_stimuli).resume_from(tmp_path)
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before


def _spy_clip(tr):
    calls = []
    original = tr.clip.encode_images
    tr.clip.encode_images = lambda images, **kw: (calls.append(len(images)), original(images, **kw))[1]
    return calls


def test_clip_views_average_the_clip_term_over_views_with_gradient_to_the_generator(clip_and_stimuli):
    tr = make_trainer(clip_and_stimuli, clip_batch=4, clip_views=4, lambda_adv=0, lambda_rec=0, lambda_kl=0,
                      lambda_cls=0)
    calls = _spy_clip(tr)
    try:
        data = toy_data(16)
        terms = tr.train_step(data.x, data.y)
    finally:
        del tr.clip.encode_images
    assert calls == [16]  # 4 images x 4 views, in one pass through CLIP
    assert np.isfinite(terms["clip"])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tr.generator.parameters())
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="clip_views"):
            make_trainer(clip_and_stimuli, clip_views=bad)


def test_views_are_for_training_only_generate_and_validate_ignore_them(clip_and_stimuli):
    x, val = toy_data(24, seed=3), toy_data(32, seed=1)
    four, one = make_trainer(clip_and_stimuli, clip_views=4), make_trainer(clip_and_stimuli, clip_views=1)
    calls = _spy_clip(four)
    try:
        rng = torch.random.get_rng_state()
        g4, v4 = four.generate(x.x), four.validate(val)
        assert torch.equal(torch.random.get_rng_state(), rng)  # no random views drawn
        assert calls == [len(val)]  # each validation image once, not once per view
    finally:
        del four.clip.encode_images
    assert torch.equal(g4, one.generate(x.x)) and torch.equal(g4, four.generate(x.x))
    assert v4 == one.validate(val) == four.validate(val)


def test_no_discriminator_update_at_all_when_lambda_adv_is_zero(clip_and_stimuli):
    tr = make_trainer(clip_and_stimuli, epochs=1, lambda_adv=0.0)
    d0 = {k: v.clone() for k, v in tr.discriminator.state_dict().items()}
    forwards = []
    tr.discriminator.register_forward_hook(lambda *a: forwards.append(1))
    hist = tr.fit(toy_data(48), progress=False)
    assert forwards == []  # not even a forward pass
    assert all(torch.equal(d0[k], v) for k, v in tr.discriminator.state_dict().items())
    assert tr.opt_d.state_dict()["state"] == {}  # the optimiser never stepped
    assert np.isnan(hist[0]["train_adv"]) and np.isnan(hist[0]["train_disc"])
    assert np.isfinite(hist[0]["train_total"])



def test_mixed_precision_on_cpu_trains_in_bfloat16_and_keeps_clip_and_weights_float32(clip_and_stimuli):
    """bf16 autocast on CPU: the first step's loss terms agree with float32 within bf16's precision, CLIP is asked
    for its bfloat16 pass, weights and CLIP embeddings stay float32, and a few steps keep every term finite."""
    data = toy_data(64)
    x, y = data.x[:16], data.y[:16]
    torch.manual_seed(0)
    fp32 = make_trainer(clip_and_stimuli, adv_warmup_epochs=0)
    torch.manual_seed(0)
    bf16 = make_trainer(clip_and_stimuli, adv_warmup_epochs=0, mixed_precision=True)
    assert bf16.amp_dtype == torch.bfloat16 and bf16.scaler is None and fp32.amp_dtype is None
    torch.manual_seed(1)
    a = fp32.train_step(x, y)
    seen = []  # the two trainers share one CLIP: watch it for the bf16 trainer's step only
    encode = bf16.clip.encode_images
    bf16.clip.encode_images = lambda im, **kw: seen.append((kw, encode(im, **kw))) or seen[-1][1]
    torch.manual_seed(1)
    b = bf16.train_step(x, y)
    bf16.clip.encode_images = encode
    for k in ("rec", "kl", "clip", "adv", "disc"):
        assert b[k] == pytest.approx(a[k], rel=0.05, abs=0.02), f"{k}: fp32 {a[k]:.4f} vs bf16 {b[k]:.4f}"
    assert any(b[k] != a[k] for k in ("rec", "kl", "adv")), "autocast changed nothing: not in bf16?"
    assert seen and all(kw == {"low_precision": True} and e.dtype == torch.float32 for kw, e in seen)
    assert all(p.dtype == torch.float32 for p in bf16.generator.parameters())
    for _ in range(3):
        assert all(math.isfinite(v) for v in bf16.train_step(x, y).values() if v == v)


def test_a_partial_clip_batch_is_flagged_when_clip_is_the_only_image_term(clip_and_stimuli):
    with pytest.warns(UserWarning, match="no image gradient"):
        make_trainer(clip_and_stimuli, clip_batch=4, lambda_rec=0.0, lambda_adv=0.0, adv_warmup_epochs=0)
    import warnings as w

    with w.catch_warnings():
        w.simplefilter("error")
        make_trainer(clip_and_stimuli, clip_batch=4)  # with L1 present it is a fair saving: no warning
