"""Stimuli: deterministic rendering, strict folder loading, tensor conversion."""
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import stimuli


@pytest.fixture(scope="module")
def rendered():
    return stimuli.render_digits(size=64)


def test_render_shape_dtype_and_colours(rendered):
    assert rendered.shape == (10, 64, 64, 3) and rendered.dtype == np.uint8
    # Black digit on white: corners are white paper, some pixels are (near) black ink, RGB channels equal.
    assert (rendered[:, 0, 0] == 255).all() and (rendered[:, -1, -1] == 255).all()
    assert (rendered.reshape(10, -1).min(1) < 30).all()
    assert (rendered[..., 0] == rendered[..., 1]).all() and (rendered[..., 1] == rendered[..., 2]).all()


def test_render_is_deterministic_and_digits_differ(rendered):
    again = stimuli.render_digits(size=64)
    assert np.array_equal(rendered, again)
    flat = rendered[..., 0].reshape(10, -1).astype(int)
    for a in range(10):
        for b in range(a + 1, 10):
            assert np.abs(flat[a] - flat[b]).sum() > 0, (a, b)


def test_digit_is_centred_and_large(rendered):
    for d in range(10):
        ink = rendered[d, :, :, 0] < 128
        rows, cols = np.nonzero(ink)
        height = rows.max() - rows.min() + 1
        # Ink height about 0.7 of the frame, centre within 2 px of the frame centre.
        assert 0.6 * 64 <= height <= 0.78 * 64, (d, height)
        assert abs((rows.max() + rows.min()) / 2 - 31.5) <= 2.0, d
        assert abs((cols.max() + cols.min()) / 2 - 31.5) <= 2.0, d


def test_render_default_size_is_224():
    img = stimuli.render_digit(7)
    assert img.shape == (224, 224, 3)


@pytest.mark.parametrize("bad", [-1, 10, 3.0, "3", True])
def test_render_rejects_bad_digit(bad):
    with pytest.raises(ValueError, match="digit"):
        stimuli.render_digit(bad, size=32)


def test_unknown_font_is_an_error():
    with pytest.raises((ValueError, FileNotFoundError), match="font"):
        stimuli.render_digit(1, size=32, font="No Such Font 123")


def _write_folder(folder, imgs, suffix=".jpg", skip=()):
    for d in range(10):
        if d not in skip:
            Image.fromarray(imgs[d]).save(folder / f"{d}{suffix}")


def test_load_stimuli_round_trip_png(tmp_path, rendered):
    _write_folder(tmp_path, rendered, ".png")
    loaded = stimuli.load_stimuli(tmp_path, size=64)
    assert np.array_equal(loaded, rendered)  # PNG is lossless and the size already matches


def test_load_stimuli_jpg_and_resize(tmp_path, rendered):
    _write_folder(tmp_path, rendered, ".jpg")
    loaded = stimuli.load_stimuli(tmp_path, size=32)
    assert loaded.shape == (10, 32, 32, 3) and loaded.dtype == np.uint8
    # Each loaded image is closest to its own digit, so the order is right (no remapping).
    small = stimuli.render_digits(size=32).astype(float)
    dist = ((loaded[:, None].astype(float) - small[None]) ** 2).sum(axis=(2, 3, 4))
    assert (dist.argmin(1) == np.arange(10)).all()


def test_missing_digit_is_named(tmp_path, rendered):
    _write_folder(tmp_path, rendered, ".jpg", skip=(4,))
    with pytest.raises(FileNotFoundError, match=r"\[4\].*4\.jpg"):
        stimuli.load_stimuli(tmp_path, size=32)


def test_unreadable_image_is_named(tmp_path, rendered):
    _write_folder(tmp_path, rendered, ".jpg", skip=(6,))
    (tmp_path / "6.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="6.jpg"):
        stimuli.load_stimuli(tmp_path, size=32)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        stimuli.load_stimuli(tmp_path / "nope")


def test_to_tensor_range_and_values(rendered):
    t = stimuli.to_tensor(rendered)
    assert t.shape == (10, 3, 64, 64) and t.dtype == torch.float32
    assert t.min().item() == -1.0 and t.max().item() == 1.0  # black -> -1, white -> +1 exactly
    assert torch.all(t[:, :, 0, 0] == 1.0)
    small = stimuli.to_tensor(rendered, size=16)
    assert small.shape == (10, 3, 16, 16)
    assert small.min() >= -1.0 and small.max() <= 1.0
    # Antialiased downsampling preserves mean brightness (to within a few percent).
    assert torch.allclose(small.mean(dim=(1, 2, 3)), t.mean(dim=(1, 2, 3)), atol=0.03)


def test_to_tensor_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        stimuli.to_tensor(np.zeros((10, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        stimuli.to_tensor(np.zeros((10, 8, 8), dtype=np.uint8))


def test_get_stimuli_prefers_folder(tmp_path, monkeypatch, rendered):
    monkeypatch.setenv("EEG2IMG_DATA_DIR", str(tmp_path))
    # No dataset/stimuli: rendered digits.
    assert np.array_equal(stimuli.get_stimuli(size=64), rendered)
    assert stimuli.stimuli_source().startswith("rendered")
    # A dataset/stimuli folder (here: inverted digits) takes precedence.
    folder = tmp_path / "stimuli"
    folder.mkdir()
    _write_folder(folder, 255 - rendered, ".png")
    assert np.array_equal(stimuli.get_stimuli(size=64), 255 - rendered)
    assert "folder" in stimuli.stimuli_source()
