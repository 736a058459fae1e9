import io

import numpy as np
import pytest
from PIL import Image

from mllm_attr.image import MAX_PIXELS, load_image


def _save(tmp_path, img, name="x.png"):
    p = tmp_path / name
    img.save(p)
    return p


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_image(tmp_path / "nope.png")


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image")
    with pytest.raises(ValueError, match="could not be read"):
        load_image(p)


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[:40])
    with pytest.raises(ValueError, match="could not be read"):
        load_image(p)


def test_directory_refused(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK"])
def test_modes_converted_to_rgb(tmp_path, mode):
    img = Image.new("RGB", (16, 12), (200, 40, 10)).convert(mode)
    loaded = load_image(_save(tmp_path, img, "a.tiff" if mode == "CMYK" else "a.png"))
    assert loaded.array.shape == (12, 16, 3) and loaded.array.dtype == np.uint8
    assert loaded.original_mode == mode


def test_rgba_composited_on_white():
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[..., 0] = 255  # red, fully transparent
    loaded = load_image(Image.fromarray(arr, "RGBA"))
    assert (loaded.array == 255).all()
    assert any("white" in n for n in loaded.notes)


def test_16bit_png_rescaled(tmp_path):
    arr = (np.arange(20 * 20, dtype=np.uint16).reshape(20, 20) * 100).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    loaded = load_image(p)
    assert loaded.original_mode.startswith("I")
    assert loaded.array.shape == (20, 20, 3)
    assert loaded.array.min() == 0 and loaded.array.max() == 255


def test_tiny_image_refused():
    with pytest.raises(ValueError, match="1x1 pixels"):
        load_image(Image.new("RGB", (1, 1)))


def test_huge_image_downscaled(caplog):
    img = Image.new("RGB", (10000, 10000), (1, 2, 3))
    loaded = load_image(img)
    assert loaded.array.shape[0] * loaded.array.shape[1] <= MAX_PIXELS
    assert loaded.original_size == (10000, 10000)
    assert any("downscaled" in n for n in loaded.notes)
    assert "downscaled" in caplog.text


def test_array_input_and_type_error():
    arr = np.full((9, 9), 0.5)
    assert load_image(arr).array[0, 0, 0] == 127
    with pytest.raises(TypeError, match="expected an image path"):
        load_image(42)


# ------------------------------------------------------------------ images as displayed (EXIF orientation)


def _stored_pixels() -> np.ndarray:
    """A 24x16 (H x W) image with a distinct colour in each corner (JPEG keeps flat blocks close)."""
    arr = np.full((24, 16, 3), 128, np.uint8)
    arr[:8, :8] = (255, 0, 0)
    arr[:8, 8:] = (0, 255, 0)
    arr[16:, :8] = (0, 0, 255)
    return arr


def _rotated_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(_stored_pixels()).save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation,turn", [(6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)])
@pytest.mark.parametrize("kind", ["path", "bytes", "pil"])
def test_exif_orientation_is_applied(orientation, turn, kind, tmp_path):
    data = _rotated_jpeg(orientation)
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    as_stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # the decoded, unturned pixels
    expected = np.asarray(Image.fromarray(as_stored).transpose(turn))
    source = {"path": path, "bytes": data, "pil": Image.open(path)}[kind]
    loaded = load_image(source)
    assert as_stored.shape == (24, 16, 3) and loaded.array.shape == (16, 24, 3)
    np.testing.assert_array_equal(loaded.array, expected)
    assert loaded.original_size == (24, 16)
    (note,) = [n for n in loaded.notes if "EXIF orientation" in n]
    assert f"orientation {orientation}" in note and "stored as 16x24" in note


def test_exif_orientation_1_and_no_exif_add_no_note(tmp_path):
    loaded = load_image(_rotated_jpeg(1))
    assert loaded.array.shape == (24, 16, 3) and loaded.notes == ()
    assert load_image(Image.fromarray(_stored_pixels())).notes == ()


def test_exif_turned_pil_is_not_turned_twice():
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(_rotated_jpeg(6))))
    loaded = load_image(upright)
    assert loaded.array.shape == (16, 24, 3) and loaded.notes == ()


def test_bytes_that_are_no_image_are_a_clear_error():
    with pytest.raises(ValueError, match="the 5 bytes given could not be read"):
        load_image(b"hello")


def test_exif_note_reaches_the_explanation_settings(tmp_path):
    from mllm_attr import Explainer
    from mllm_attr.testing.fake import make_fake_adapter

    path = tmp_path / "phone.jpg"
    path.write_bytes(_rotated_jpeg(6))
    loaded = load_image(path)
    adapter = make_fake_adapter(loaded.array, {"a": np.ones((16, 24))})
    expl = Explainer(adapter, n_regions=4)(path, prompt="q", target="all")
    assert expl.image.shape == (16, 24, 3)
    assert any("EXIF orientation 6" in n for n in expl.settings["image"]["notes"])


# ------------------------------------------------------------------ loaded once, warned once


def test_a_loaded_image_is_passed_through_with_its_notes(caplog):
    loaded = load_image(Image.new("RGB", (2100, 2100), (1, 2, 3)))
    caplog.clear()
    assert load_image(loaded) is loaded
    assert caplog.records == []


def test_downscale_warning_once_per_load_and_names_the_path(tmp_path, caplog):
    p = tmp_path / "big.png"
    Image.new("RGB", (2100, 2100), (1, 2, 3)).save(p)
    load_image(p)
    warnings = [r for r in caplog.records if "downscaled" in r.getMessage()]
    assert len(warnings) == 1 and str(p) in warnings[0].getMessage()


def test_explainer_warns_once_per_call(caplog):
    from mllm_attr import Explainer
    from mllm_attr.testing.fake import make_fake_adapter

    img = Image.new("RGB", (2100, 2100), (10, 20, 30))
    small = load_image(img).array
    adapter = make_fake_adapter(small, {"a": np.ones(small.shape[:2])})
    caplog.clear()
    Explainer(adapter, n_regions=2, segmenter="grid")(img, prompt="q")
    assert len([r for r in caplog.records if "downscaled" in r.getMessage()]) == 1
