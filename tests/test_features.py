"""Feature pipeline: each step on signals with known answers, the fused pipeline, and fitting on
training events only."""
import io

import numpy as np
import pytest
import torch
from scipy import signal

from helpers import features as F
from helpers.mindbigdata import Events

SFREQ = 128.0
CHANNELS = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4")


def sine(freq, n_times=512, amp=1.0):
    t = np.arange(n_times) / SFREQ
    return amp * np.sin(2 * np.pi * freq * t)


def make_events(n=400, max_size=140, seed=0, n_ch=14):
    """EEG-like arrays: DC ~4000 uV + random-walk-ish noise, sizes 120..140 (some below 128)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(120, max_size + 1, n)
    x = rng.standard_normal((n, n_ch, max_size)) * 10
    x = np.cumsum(x, axis=-1) * 0.2 + x + rng.uniform(4000, 4500, (1, n_ch, 1))
    x *= np.arange(max_size)[None, None, :] < sizes[:, None, None]  # zeros after each size
    codes = rng.integers(0, 10, n)
    codes[::25] = -1
    return Events(signals=x.astype(np.float32), sizes=sizes, codes=codes,
                  event_ids=np.arange(1000, 1000 + n, dtype=np.int64), channels=CHANNELS[:n_ch])


# ---------------------------------------------------------------------------------------- steps

def zero_phase_gain(freq, low, high):
    """Amplitude gain of the forward-backward Butterworth at ``freq``: |H(f)|^2."""
    _, h = signal.sosfreqz(F.bandpass_sos(SFREQ, low, high), worN=[freq], fs=SFREQ)
    return float(np.abs(h[0]) ** 2)


def rms(a):
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


def test_bandpass_passes_10hz_and_attenuates_50hz():
    n = 4096  # long, so that the middle half is far from the edge transients
    x = np.stack([sine(10.0, n), sine(50.0, n)])[:, None, :].astype(np.float32)  # 2 events, 1 channel
    y = F.bandpass(x, SFREQ, 0.5, 30.0)
    mid = slice(n // 4, 3 * n // 4)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert rms(y[0, 0, mid]) / rms(x[0, 0, mid]) == pytest.approx(1.0, abs=0.01)
    # Zero-phase: the 10 Hz sine comes out aligned with the input, not delayed.
    lags = range(-4, 5)
    corr = [np.dot(np.roll(y[0, 0], lag)[mid], x[0, 0, mid]) for lag in lags]
    assert lags[int(np.argmax(corr))] == 0
    # 50 Hz: -79 dB (the known digital response, squared by the two passes).
    expected = zero_phase_gain(50.0, 0.5, 30.0)
    assert expected < 2e-4
    assert rms(y[1, 0, mid]) / rms(x[1, 0, mid]) == pytest.approx(expected, rel=0.1)
    # The default recipe band (0.5-15 Hz) also passes 10 Hz.
    assert rms(F.bandpass(x[:1], SFREQ)[0, 0, mid]) / rms(x[0, 0, mid]) > 0.97


def test_bandpass_filters_only_the_valid_part():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 200)).astype(np.float32) + 4000
    sizes = np.array([200, 150, 60])
    for i, s in enumerate(sizes):
        x[i, :, s:] = 0
    y = F.bandpass(x, SFREQ, sizes=sizes)
    for i, s in enumerate(sizes):
        alone = F.bandpass(x[i:i + 1, :, :s], SFREQ)  # the event cut to its valid samples
        np.testing.assert_allclose(y[i, :, :s], alone[0], atol=1e-5)
        assert np.all(y[i, :, s:] == 0)


def test_bandpass_rejects_bad_band():
    x = np.zeros((1, 1, 100), np.float32)
    with pytest.raises(ValueError, match="sfreq/2"):
        F.bandpass(x, SFREQ, 0.5, 70.0)
    with pytest.raises(ValueError, match="n_events, n_channels, n_times"):
        F.bandpass(np.zeros((3, 100)), SFREQ)
    with pytest.raises(ValueError, match="sizes must lie"):
        F.bandpass(x, SFREQ, sizes=np.array([101]))


def test_fix_length_crops_and_edge_pads():
    x = np.arange(2 * 1 * 6, dtype=np.float32).reshape(2, 1, 6)  # event 0: 0..5, event 1: 6..11
    out = F.fix_length(x, np.array([6, 3]), n_times=5)
    np.testing.assert_array_equal(out[0, 0], [0, 1, 2, 3, 4])          # cropped to the first 5
    np.testing.assert_array_equal(out[1, 0], [6, 7, 8, 8, 8])          # 3 valid, edge-padded
    assert out.dtype == np.float32


def test_demean_per_event_and_channel():
    x = np.random.default_rng(0).standard_normal((4, 3, 50)) + np.arange(12).reshape(4, 3, 1)
    y = F.demean(x.astype(np.float32))
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(y, x - x.mean(-1, keepdims=True), atol=1e-5)


def test_artifact_mask_counts_planted_artefacts():
    x = np.zeros((10, 3, 100), np.float32)
    x[:, :, 50] = 20.0                 # every event: peak-to-peak 20 uV
    x[[2, 7], 1, 10] = 300.0           # two planted artefacts: 300 uV on one channel
    m = F.artifact_mask(x, threshold_uv=100.0)
    assert m.n_rejected == 2
    np.testing.assert_array_equal(np.flatnonzero(~m.keep), [2, 7])
    np.testing.assert_allclose(m.ptp_uv[[0, 2]], [20.0, 300.0])
    assert F.artifact_mask(x, None).n_rejected == 0
    with pytest.raises(ValueError, match="threshold_uv"):
        F.artifact_mask(x, -1.0)


def test_auto_threshold_flags_outliers_only():
    rng = np.random.default_rng(0)
    ptp = np.exp(rng.normal(np.log(60.0), 0.2, 1000))
    thr = F.auto_ptp_threshold(ptp)
    # Log-normal with sigma 0.2: the threshold is near 60 * exp(4 * 0.2) = 134 uV.
    assert thr == pytest.approx(60 * np.exp(0.8), rel=0.08)
    assert (ptp > thr).sum() <= 2
    assert np.all(np.r_[ptp, 1000.0, 2000.0][-2:] > thr)


def test_standardise_uses_given_training_stats():
    rng = np.random.default_rng(0)
    train = rng.normal([[5.0], [-3.0]], [[2.0], [0.5]], size=(2000, 2, 64))
    mean, std = F.channel_stats(train)
    np.testing.assert_allclose(mean, [5.0, -3.0], atol=0.01)
    np.testing.assert_allclose(std, [2.0, 0.5], rtol=0.01)
    test = np.full((1, 2, 4), 7.0)
    # Known answer with the TRAINING stats, not the test event's own (which would give 0).
    np.testing.assert_allclose(F.standardise(test, mean, std)[0, :, 0], (7.0 - mean) / std, rtol=1e-6)
    with pytest.raises(ValueError, match="std must be finite"):
        F.standardise(test, mean, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="n_channels"):
        F.standardise(test, mean[:1], std[:1])


def test_decimate():
    x = np.stack([sine(5.0), sine(40.0)])[:, None, :].astype(np.float32)
    np.testing.assert_array_equal(F.decimate(x, 4, prefiltered=True), x[..., ::4])
    y = F.decimate(x, 4)  # with its own anti-alias filter: 40 Hz would alias to 8 Hz at 32 Hz
    assert y.shape == (2, 1, 128)
    mid = slice(32, 96)
    assert np.sqrt(np.mean(y[1, 0, mid] ** 2)) < 0.01
    np.testing.assert_allclose(y[0, 0, mid], x[0, 0, ::4][mid], atol=0.05)
    with pytest.raises(ValueError, match="positive integer"):
        F.decimate(x, 0)


def test_bandpass_then_subsampling_keeps_aliasing_small():
    # The recipe's justification: after the 0.5-15 Hz band-pass, a 24 Hz tone (which folds to 8 Hz at
    # 32 Hz) keeps amplitude |H(24)|^2 = 0.010 (-40 dB).
    n = 2048
    x = sine(24.0, n)[None, None, :].astype(np.float32)
    y = F.decimate(F.bandpass(x, SFREQ), 4, prefiltered=True)[0, 0]
    gain = rms(y[n // 16:3 * n // 16]) / np.sqrt(0.5)
    assert gain == pytest.approx(zero_phase_gain(24.0, 0.5, 15.0), rel=0.05)
    assert gain < 0.011


def test_digit_events_excludes_code_minus_one():
    ev = make_events(n=100)
    digits, n_excluded = F.digit_events(ev)
    assert n_excluded == 4 and len(digits) == 96
    assert digits.codes.min() >= 0
    np.testing.assert_array_equal(F.digit_indices(np.array([-1, 3, 9, -1, 0])), [1, 2, 4])


# ---------------------------------------------------------------------------------------- pipeline

def small_config(**kw):
    return F.FeatureConfig(**{"feature_dim": 64, **kw})


def test_fused_preprocessing_equals_step_functions():
    ev = make_events(n=40)
    pipe = F.FeaturePipeline(F.FeatureConfig())
    fused = pipe._preprocess(ev.signals, ev.sizes)
    steps = F.demean(F.fix_length(F.bandpass(ev.signals, SFREQ, sizes=ev.sizes), ev.sizes, 128))
    assert fused.shape == (40, 14, 128) and fused.dtype == np.float32
    np.testing.assert_allclose(fused, steps, atol=2e-3 * np.abs(steps).max())


def test_shapes_dtypes_counts_and_labels():
    ev = make_events(n=400)
    train = np.arange(280)
    pipe = F.FeaturePipeline(F.FeatureConfig(reject_ptp_uv=None)).fit(ev, train)
    fs = pipe.transform(ev)
    assert fs.X.shape == (400, 264) and fs.X.dtype == np.float32
    np.testing.assert_array_equal(fs.labels, ev.codes)
    np.testing.assert_array_equal(fs.event_ids, ev.event_ids)
    assert fs.counts() == {"n_events": 400, "n_rejected": 0, "n_kept": 400}
    assert pipe.n_input_dims == 14 * 32
    # Whitened PCA: unit variance and zero mean on the training events, uncorrelated components.
    Xtr = fs.X[train].astype(np.float64)
    np.testing.assert_allclose(Xtr.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(Xtr.T), np.eye(264), atol=1e-3)
    ratios = pipe.explained_variance_ratio_
    assert np.all(np.diff(ratios) <= 1e-12) and 0 < pipe.explained_variance_total < 1
    sub = pipe.transform(ev, np.array([5, 300]))
    np.testing.assert_allclose(sub.X, fs.X[[5, 300]], atol=1e-5)
    np.testing.assert_array_equal(sub.indices, [5, 300])


def test_full_rank_pca_explains_all_variance():
    ev = make_events(n=300)
    cfg = F.FeatureConfig(n_times=32, decim=4, feature_dim=14 * 8, reject_ptp_uv=None)
    pipe = F.FeaturePipeline(cfg).fit(ev, np.arange(300))
    assert pipe.explained_variance_total == pytest.approx(1.0, abs=1e-9)


def test_unwhitened_pca_keeps_component_variances():
    ev = make_events(n=300)
    pipe = F.FeaturePipeline(small_config(whiten=False, reject_ptp_uv=None)).fit(ev, np.arange(300))
    X = pipe.transform(ev).X.astype(np.float64)
    np.testing.assert_allclose(X.var(0, ddof=1), pipe.explained_variance_, rtol=1e-3)


def test_other_feature_dim_and_too_large():
    ev = make_events(n=200)
    pipe = F.FeaturePipeline(small_config(feature_dim=64)).fit(ev, np.arange(150))
    assert pipe.transform(ev).X.shape == (200, 64)
    with pytest.raises(ValueError, match=r"feature_dim=500 exceeds the 448 dimensions"):
        F.FeaturePipeline(F.FeatureConfig(feature_dim=500)).fit(make_events(n=600), np.arange(600))
    with pytest.raises(ValueError, match=r"feature_dim=264 exceeds the 149 dimensions"):
        F.FeaturePipeline(F.FeatureConfig()).fit(ev, np.arange(150))


def test_deterministic():
    ev = make_events(n=300)
    a = F.FeaturePipeline(small_config()).fit(ev, np.arange(200)).transform(ev).X
    b = F.FeaturePipeline(small_config()).fit(ev, np.arange(200)).transform(ev).X
    np.testing.assert_array_equal(a, b)


def test_fit_sees_only_training_events():
    ev = make_events(n=300)
    train = np.arange(60, 260)  # a middle block; the rest plays validation/test
    other = np.setdiff1d(np.arange(300), train)
    wild = Events(signals=ev.signals.copy(), sizes=ev.sizes.copy(), codes=ev.codes, event_ids=ev.event_ids,
                  channels=ev.channels)
    rng = np.random.default_rng(5)
    wild.signals[other] = rng.standard_normal(wild.signals[other].shape).astype(np.float32) * 1e5
    wild.sizes[other] = 135
    s1 = F.FeaturePipeline(small_config()).fit(ev, train).state_dict()
    s2 = F.FeaturePipeline(small_config()).fit(wild, train).state_dict()
    assert s1.keys() == s2.keys()
    for key, v in s1.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, s2[key]), key
        else:
            assert v == s2[key], key
    # And the training features themselves do not change.
    p1 = F.FeaturePipeline.from_state_dict(s1)
    np.testing.assert_array_equal(p1.transform(ev, train).X, p1.transform(wild, train).X)


def test_state_dict_round_trip_through_torch_weights_only():
    ev = make_events(n=300)
    pipe = F.FeaturePipeline(small_config()).fit(ev, np.arange(200))
    buf = io.BytesIO()
    torch.save({"features": pipe.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["features"]
    loaded = F.FeaturePipeline.from_state_dict(state)
    a, b = pipe.transform(ev), loaded.transform(ev)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.rejected, b.rejected)
    assert loaded.config == pipe.config and loaded.fit_counts_ == pipe.fit_counts_
    with pytest.raises(ValueError, match="not a FeaturePipeline state"):
        F.FeaturePipeline.from_state_dict({"kind": "other"})


def test_rejection_counts_on_planted_artefacts():
    ev = make_events(n=300)
    blinks_train, blinks_test = [10, 20, 30], [250, 260]
    for i in blinks_train + blinks_test:
        t = np.arange(ev.sizes[i])
        ev.signals[i, 0, :ev.sizes[i]] += 2000 * np.exp(-((t - 60) / 6.0) ** 2)  # a 2 mV blink on AF3
    train = np.arange(200)
    pipe = F.FeaturePipeline(small_config()).fit(ev, train)  # reject_ptp_uv="auto"
    assert pipe.fit_counts_ == {"n_train_events": 200, "n_train_rejected": 3, "n_fit_events": 197}
    test = pipe.transform(ev, np.arange(200, 300))
    np.testing.assert_array_equal(test.indices[test.rejected], blinks_test)
    assert test.counts() == {"n_events": 100, "n_rejected": 2, "n_kept": 98}
    kept = test.kept()
    assert kept.n_events == 98 and not kept.rejected.any() and len(kept.labels) == 98
    # A fixed threshold in uV.
    fixed = F.FeaturePipeline(small_config(reject_ptp_uv=1000.0)).fit(ev, train)
    assert fixed.ptp_threshold_uv_ == 1000.0 and fixed.fit_counts_["n_train_rejected"] == 3


def test_rejected_training_events_do_not_enter_the_fit():
    ev = make_events(n=300)
    ev.signals[10, 0, :100] += 5000.0 * np.sin(np.arange(100) / 3)  # a wild training artefact
    other = Events(signals=ev.signals.copy(), sizes=ev.sizes, codes=ev.codes, event_ids=ev.event_ids,
                   channels=ev.channels)
    other.signals[10, 0, :100] *= 3  # a different wild artefact: still rejected, fit unchanged
    a = F.FeaturePipeline(small_config()).fit(ev, np.arange(200))
    b = F.FeaturePipeline(small_config()).fit(other, np.arange(200))
    assert a.fit_counts_["n_train_rejected"] == 1
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.channel_std_, b.channel_std_)


def test_clear_errors():
    ev = make_events(n=100)
    with pytest.raises(ValueError, match="alias"):
        F.FeatureConfig(band=(0.5, 30.0), decim=4)
    with pytest.raises(ValueError, match="reject_ptp_uv"):
        F.FeatureConfig(reject_ptp_uv="sometimes")
    with pytest.raises(RuntimeError, match="not fitted"):
        F.FeaturePipeline().transform(ev)
    with pytest.raises(ValueError, match="256.0 Hz"):
        F.FeaturePipeline(F.FeatureConfig(sfreq=256.0, feature_dim=8)).fit(ev, np.arange(50))
    with pytest.raises(ValueError, match="train_idx must lie"):
        F.FeaturePipeline(small_config()).fit(ev, np.arange(50, 150))
    pipe = F.FeaturePipeline(small_config(feature_dim=8)).fit(ev, np.arange(80))
    with pytest.raises(ValueError, match="channels"):
        pipe.transform(make_events(n=10, n_ch=4))


def test_plain_arrays_are_accepted():
    ev = make_events(n=200)
    a = F.FeaturePipeline(small_config(feature_dim=16)).fit((ev.signals, ev.sizes), np.arange(150))
    fs = a.transform((ev.signals, ev.sizes))
    assert fs.labels is None and fs.X.shape == (200, 16)
    b = F.FeaturePipeline(small_config(feature_dim=16)).fit(ev, np.arange(150))
    np.testing.assert_array_equal(fs.X, b.transform(ev).X)


def test_from_config_takes_feature_dim_and_seed():
    from helpers.config import make_config
    cfg = make_config("ci", {"feature_dim": 32, "seed": 3})
    fc = F.FeatureConfig.from_config(cfg)
    assert fc.feature_dim == 32 and fc.seed == 3 and fc.band == (0.5, 15.0)


@pytest.mark.parametrize("short_size", [1, 30])
def test_an_event_too_short_to_filter_is_rejected_and_counted_not_fatal(short_size):
    ev = make_events(n=300)
    cfg = small_config()
    assert cfg.min_samples == 64  # half of the 1 s crop window
    for i in (7, 250):  # one training event and one test event with a single sample (or a few)
        ev.sizes[i] = short_size
        ev.signals[i, :, short_size:] = 0
    pipe = F.FeaturePipeline(cfg).fit(ev, np.arange(200))  # used to raise "sizes must lie in 2..140"
    assert pipe.fit_counts_["n_train_too_short"] == 1 and pipe.fit_counts_["n_train_events"] == 200
    assert pipe.fit_counts_["n_fit_events"] == 200 - pipe.fit_counts_["n_train_rejected"]
    test = pipe.transform(ev, np.arange(200, 300))
    assert test.rejected[50] and test.too_short[50] and test.too_short.sum() == 1
    assert test.rejection_reasons()["too_short"] == 1
    assert sum(test.rejection_reasons().values()) == test.n_rejected
    assert np.isfinite(test.X).all() and not np.any(test.X[50])
    kept = test.kept()
    assert 250 not in kept.indices.tolist() and kept.n_events == 100 - test.n_rejected
    # The other events' features are exactly those of a fit without the short training event.
    ref = F.FeaturePipeline(cfg).fit(ev, np.setdiff1d(np.arange(200), [7]))
    np.testing.assert_array_equal(ref.components_, pipe.components_)
    np.testing.assert_allclose(ref.transform(ev, np.arange(200, 250)).X, test.X[:50], atol=1e-5)
    # Without any short event the saved counts keep their usual keys (a run's identity is unchanged).
    assert "n_train_too_short" not in F.FeaturePipeline(cfg).fit(make_events(n=300), np.arange(200)).fit_counts_
