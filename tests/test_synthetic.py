"""The synthetic generator: exact format, determinism, labels, and an oracle that matches the data."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import mindbigdata as mbd
from helpers import synthetic as syn

LINE = re.compile(r"^(\d+)\t(\d+)\tEP\t([A-Z0-9]+)\t(-1|\d)\t(\d+)\t(-?\d+\.\d{6}(?:,-?\d+\.\d{6})*)$")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "s.txt"
    spec = syn.SyntheticSpec(n_events=300, seed=1)
    info = syn.write_synthetic(path, spec)
    return path, spec, info


def test_exact_text_format(small):
    path, spec, info = small
    lines = path.read_text().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == info.n_lines == 300 * 14
    channels = mbd.DEVICES["EP"].channels
    for i, line in enumerate(lines[:-1]):
        m = LINE.match(line)
        assert m, f"line {i + 1} does not match the format: {line[:80]}"
        assert m.group(3) == channels[i % 14]
        values = m.group(6).split(",")
        assert len(values) == int(m.group(5))
        if i < 28:  # every value is on the EPOC grid k / 7.8, printed like the real file
            for v in values:
                k = round(float(v) * 7.8)
                assert f"{k / 7.8:.6f}" == v


def test_parses_cleanly_with_expected_ranges(small):
    path, spec, info = small
    events, rep = mbd.parse_file(path)
    assert rep.events_valid == rep.events_total == 300 and rep.events_skipped == {}
    assert events.sizes.min() >= 250 and events.sizes.max() <= 270 and len(np.unique(events.sizes)) > 5
    assert np.all(np.diff(events.event_ids) > 0)  # time order, with gaps like the real file
    assert (np.diff(events.event_ids) > 1).any()
    n_random = int((events.codes == -1).sum())
    assert 1 <= n_random <= 30  # about 3 %
    assert set(np.unique(events.codes[events.codes >= 0])) == set(range(10))
    # DC offsets 4000-4500 uV, EEG-sized fluctuations around them.
    dc = np.array([events.signals[i, :, :events.sizes[i]].mean(axis=1) for i in range(50)])
    assert dc.min() > 3900 and dc.max() < 4600
    detrended = events.signals[:, :, :250] - events.signals[:, :, :250].mean(axis=2, keepdims=True)
    assert 5 < detrended.std() < 60


def test_deterministic_and_seed_dependent(tmp_path):
    # Seed 1 shares the (cached) oracle of the module fixture; strength 0 needs no oracle computation.
    a = syn.write_synthetic(tmp_path / "a.txt", syn.SyntheticSpec(n_events=40, seed=1))
    b = syn.write_synthetic(tmp_path / "b.txt", syn.SyntheticSpec(n_events=40, seed=1))
    c = syn.write_synthetic(tmp_path / "c.txt", syn.SyntheticSpec(n_events=40, seed=4, class_strength=0.0))
    digest = lambda p: hashlib.sha1(Path(p).read_bytes()).hexdigest()  # noqa: E731
    assert digest(a.path) == digest(b.path) != digest(c.path)
    assert syn.read_info(a.path).oracle_top1 == a.oracle_top1


def test_alpha_rhythm_and_blinks(small):
    """Occipital channels show a 10 Hz peak; frontal channels carry the largest slow excursions."""
    path, _, _ = small
    events, _ = mbd.parse_file(path)
    x = events.signals[:, :, :250].astype(np.float64)
    x -= x.mean(axis=2, keepdims=True)
    spec = (np.abs(np.fft.rfft(x, axis=2)) ** 2).mean(axis=0)  # [ch, freq]
    f = np.fft.rfftfreq(250, 1 / 128)
    o1 = events.channels.index("O1")
    alpha = spec[o1, (f > 9) & (f < 11)].mean()
    neighbours = spec[o1, ((f > 13) & (f < 16)) | ((f > 5) & (f < 7))].mean()
    assert alpha > 1.5 * neighbours
    peak = np.abs(x).max(axis=2)  # [events, ch]
    af3, o2 = events.channels.index("AF3"), events.channels.index("O2")
    assert np.quantile(peak[:, af3], 0.95) > 2 * np.quantile(peak[:, o2], 0.95)


def test_oracle_matches_the_written_data(small):
    """The oracle classifier, applied to the parsed file, scores what oracle_top1 promises."""
    path, spec, info = small
    events, _ = mbd.parse_file(path)
    digits = events.codes >= 0
    scores = syn.OracleClassifier(spec).scores(events.signals[digits])
    acc = float((scores.argmax(1) == events.codes[digits]).mean())
    n = int(digits.sum())
    assert 0.4 < info.oracle_top1 < 0.85  # clearly above chance, far from perfect
    assert abs(acc - info.oracle_top1) < 3 * np.sqrt(info.oracle_top1 * (1 - info.oracle_top1) / n) + 0.01


def test_strength_orders_the_oracle_and_zero_is_chance():
    base = syn.SyntheticSpec(seed=1)
    weak = syn.oracle_accuracy(syn.SyntheticSpec(seed=1, class_strength=0.5), n_mc=20_000)[0]
    default = syn.oracle_accuracy(base, n_mc=20_000)[0]
    strong = syn.oracle_accuracy(syn.SyntheticSpec(seed=1, class_strength=2.0), n_mc=20_000)[0]
    assert 0.1 < weak < default < strong
    assert syn.oracle_accuracy(syn.SyntheticSpec(class_strength=0.0)) == (0.1, 0.0)


def test_null_strength_carries_no_class_information(tmp_path):
    """At strength 0 the class means coincide: the oracle classifier is at chance on the data."""
    spec = syn.SyntheticSpec(n_events=200, class_strength=0.0, seed=2)
    info = syn.write_synthetic(tmp_path / "null.txt", spec)
    assert info.oracle_top1 == 0.1
    plan = syn._event_plan(spec)
    x = syn._simulate(spec, plan, 0, 200)
    same_code = plan["codes"] >= 0
    # Same seed and noise with a different class assignment gives identical signals: no class term.
    other = dict(plan, codes=np.where(same_code, (plan["codes"] + 3) % 10, -1))
    np.testing.assert_array_equal(x, syn._simulate(spec, other, 0, 200))


def test_session_blocks_codes_follow_blocks(tmp_path):
    spec = syn.SyntheticSpec(n_events=400, label_mode="session_blocks", n_blocks=8, seed=5)
    info = syn.write_synthetic(tmp_path / "blocks.txt", spec)
    events, _ = mbd.parse_file(info.path)
    assert info.oracle_top1 == 0.1 and info.block_starts == [0, 50, 100, 150, 200, 250, 300, 350]
    bounds = info.block_starts + [400]
    block_codes = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        codes = events.codes[a:b]
        digits = np.unique(codes[codes >= 0])
        assert digits.size == 1, f"block {a}-{b} mixes codes {digits}"
        block_codes.append(int(digits[0]))
    assert len(set(block_codes)) == 8  # 8 blocks, 8 different digits
    # Blocks differ in their EEG (session offsets), events within a block share it.
    means = np.array([events.signals[a:b, :, :250].mean(axis=(0, 2)) for a, b in zip(bounds[:-1], bounds[1:])])
    assert np.abs(np.diff(means, axis=0)).max() > 10


def test_bad_spec_is_refused(tmp_path):
    with pytest.raises(ValueError, match="label_mode"):
        syn.write_synthetic(tmp_path / "x.txt", syn.SyntheticSpec(n_events=5, label_mode="nope"))
    with pytest.raises(ValueError, match="n_events"):
        syn.write_synthetic(tmp_path / "x.txt", syn.SyntheticSpec(n_events=0))
