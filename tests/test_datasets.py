"""load_dataset: the real file when present, else a loud, cached, deterministic synthetic default."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import datasets
from helpers import mindbigdata as mbd
from helpers.synthetic import SyntheticSpec, write_synthetic


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EEG2IMG_PROFILE", "ci")
    return tmp_path


def test_synthetic_default_is_loud_cached_and_reused(data_dir):
    # Loud = a warning, shown by default (and logged when verbose): helpers.log.
    with pytest.warns(datasets.SyntheticDataWarning, match="SYNTHETIC"):
        first = datasets.load_dataset(n_events=60, seed=1)
    assert first.synthetic and first.label_mode == "signal"
    assert first.source == str(data_dir / "synthetic_EP_60_1_1.txt")
    assert first.cache_path == str(data_dir / "synthetic_EP_60_1_1.npz")
    assert 0.4 < first.oracle_top1 < 0.85
    assert len(first.events) == 60 and set(np.unique(first.events.codes)) <= set(range(-1, 10))
    mtime = (data_dir / "synthetic_EP_60_1_1.txt").stat().st_mtime_ns
    with pytest.warns(datasets.SyntheticDataWarning):
        again = datasets.load_dataset(n_events=60, seed=1, verbose=False)
    assert (data_dir / "synthetic_EP_60_1_1.txt").stat().st_mtime_ns == mtime  # not rewritten
    np.testing.assert_array_equal(again.events.signals, first.events.signals)
    assert again.oracle_top1 == first.oracle_top1


def test_sizes_come_from_the_caller_not_from_the_profile_variable(data_dir, monkeypatch):
    # Configuration is read at the edge: a bad EEG2IMG_PROFILE cannot break a loader given its values.
    monkeypatch.setenv("EEG2IMG_PROFILE", "no-such-profile")
    with pytest.warns(datasets.SyntheticDataWarning):
        loaded = datasets.load_dataset(n_events=600, strength=0.0, seed=2, verbose=False)
    assert len(loaded.events) == 600 and loaded.oracle_top1 == 0.1
    assert "chance is 0.100" in datasets.describe(loaded)


def test_real_file_is_preferred_and_not_called_synthetic(data_dir, recwarn):
    # A "real" file: the format is the same, but no synthetic info sits next to it.
    tmp = data_dir / "gen" / "x.txt"
    write_synthetic(tmp, SyntheticSpec(n_events=30, seed=1))
    (data_dir / datasets.REAL_FILE).write_bytes(tmp.read_bytes())
    loaded = datasets.load_dataset(verbose=False)
    assert not loaded.synthetic and loaded.oracle_top1 is None
    assert loaded.source == str(data_dir / datasets.REAL_FILE)
    assert loaded.cache_path == str(data_dir / "EP1.01.npz") and len(loaded.events) == 30
    assert not [w for w in recwarn if issubclass(w.category, datasets.SyntheticDataWarning)]
    assert "Recorded EEG" in datasets.describe(loaded)
    first10 = datasets.load_dataset(n_events=10, verbose=False)
    assert first10.events.event_ids.tolist() == loaded.events.event_ids[:10].tolist()
    # a demonstration that needs a known generating process still gets synthetic data, and says so
    with pytest.warns(datasets.SyntheticDataWarning):
        demo = datasets.load_dataset(n_events=40, label_mode="session_blocks", synthetic_only=True, verbose=False)
    assert demo.synthetic and demo.label_mode == "session_blocks" and len(demo.events) == 40
    with pytest.raises(ValueError, match="synthetic_only"):
        datasets.load_dataset(data_dir / datasets.REAL_FILE, synthetic_only=True)


def test_explicit_path_and_cache_path(data_dir):
    src = data_dir / "mine.txt"
    info = write_synthetic(src, SyntheticSpec(n_events=20, seed=1))
    with pytest.warns(datasets.SyntheticDataWarning):
        loaded = datasets.load_dataset(src, verbose=False)
    assert loaded.synthetic and loaded.oracle_top1 == info.oracle_top1  # its info file says so
    with pytest.warns(datasets.SyntheticDataWarning):
        from_cache = datasets.load_dataset(loaded.cache_path, verbose=False)
    np.testing.assert_array_equal(from_cache.events.signals, loaded.events.signals)
    with pytest.raises(FileNotFoundError):
        datasets.load_dataset(data_dir / "absent.txt")


def test_strict_failure_propagates(data_dir):
    bad = data_dir / "bad.txt"
    bad.write_text("1\t1\tEP\tAF3\t3\t2\t1.0\n")
    with pytest.raises(mbd.MindBigDataError) as e:
        datasets.load_dataset(bad, strict=True)
    assert e.value.line_number == 1 and e.value.reason == "size_mismatch"


def test_the_downloaded_zip_is_the_real_data_when_the_text_file_is_absent(data_dir):
    """`python -m helpers download` leaves MindBigData-EP-v1.0.zip in the data folder: it is used as it is."""
    import zipfile

    src = data_dir / "gen" / "x.txt"
    write_synthetic(src, SyntheticSpec(n_events=30, seed=1))
    with zipfile.ZipFile(data_dir / datasets.REAL_ZIP, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("EP1.01.txt", src.read_bytes())
    assert datasets.real_data_path() == data_dir / datasets.REAL_ZIP
    loaded = datasets.load_dataset(verbose=False)
    assert not loaded.synthetic and len(loaded.events) == 30 and loaded.source.endswith(datasets.REAL_ZIP)
    (data_dir / datasets.REAL_FILE).write_bytes(src.read_bytes())
    assert datasets.real_data_path() == data_dir / datasets.REAL_FILE  # the text file, when there, comes first
