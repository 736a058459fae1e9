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
