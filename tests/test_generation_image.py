"""A Generation knows the pixels it was made on: explaining it on another image is refused."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from mllm_attr import Answer, Explainer, Explanation
from mllm_attr.adapters.callable import generation_from_text
from mllm_attr.image import check_generation_image, image_sha256, load_image
from mllm_attr.testing.fake import make_fake_adapter
from mllm_attr.types import Generation


@pytest.fixture
def two_images():
    rng = np.random.default_rng(3)
    a = rng.integers(1, 255, (24, 24, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0] = (b[0, 0] + 1) % 255 + 1  # one pixel differs
    return a, b


@pytest.fixture
def adapter(two_images):
    a, _ = two_images
    return make_fake_adapter(a, {"red": np.ones((24, 24)), "cat": np.ones((24, 24))})


def test_generate_and_teacher_force_record_the_image(adapter, two_images):
    a, _ = two_images
    expected = image_sha256(a)
    assert adapter.generate(a, "q").image_sha256 == expected
    assert adapter.teacher_force(a, "q", "a dog").image_sha256 == expected
    assert adapter.from_text(a, "q", "a dog").image_sha256 == expected
    assert load_image(a).sha256 == expected and len(expected) == 64


def test_the_hash_covers_the_shape(two_images):
    a, _ = two_images
    assert image_sha256(a[:12]) != image_sha256(a.reshape(12, 48, 3)[:, :24])
    with pytest.raises(ValueError, match="expected uint8"):
        image_sha256(a.astype(np.float32))


def test_a_generation_explained_on_another_image_is_refused(adapter, two_images):
    a, b = two_images
    gen = adapter.generate(a, "q")
    explainer = Explainer(adapter, n_regions=4, segmenter="grid")
    with pytest.raises(ValueError, match=r"made on another image \(hash [0-9a-f]{8}… vs [0-9a-f]{8}…") as info:
        explainer(b, gen)
    assert "adapter.generate on this image" in str(info.value) and "Answer(" in str(info.value)
    with pytest.raises(ValueError, match="made on another image"):
        explainer(b, gen, target=Answer("a cat"))  # checked before any teacher forcing
    with pytest.raises(ValueError, match="made on another image"):
        explainer.replay(b, gen, np.arange(4))
    assert explainer(a, gen).generation == gen  # the image it was made on
    assert explainer(b, prompt="q").generation.image_sha256 == image_sha256(b)  # generated here
    fresh = explainer(b, prompt="q", target=Answer("red cat"))  # a counterfactual on B is made on B
    assert fresh.generation.image_sha256 == image_sha256(b) and fresh.generation.counterfactual


def test_a_hand_made_generation_is_not_checked(adapter, two_images):
    _, b = two_images
    gen = generation_from_text("q", "red cat")
    assert gen.image_sha256 is None
    Explainer(adapter, n_regions=4, segmenter="grid")(b, gen)


def test_score_map_and_analyses_check_through_make_scorer(adapter, two_images):
    from mllm_attr.analysis.modality import analyze_modality
    from mllm_attr.protocol import score_map

    a, b = two_images
    gen = adapter.generate(a, "q")
    with pytest.raises(ValueError, match="made on another image"):
        score_map(adapter, b, gen, [0], np.random.default_rng(0).random((24, 24)), n_regions=4, segmenter="grid")
    with pytest.raises(ValueError, match="made on another image"):
        analyze_modality(adapter, b, gen)
    check_generation_image(gen, a)
    check_generation_image(gen, load_image(a))


def test_the_same_photo_by_path_pil_or_bytes_is_the_same_image(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(
        buf, format="JPEG", exif=exif.tobytes()
    )
    path = tmp_path / "phone.jpg"
    path.write_bytes(buf.getvalue())
    upright = load_image(path).array
    gen = make_fake_adapter(upright, {"x": np.ones(upright.shape[:2])}).generate(path, "q")
    for same in (path, str(path), Image.open(path), buf.getvalue(), load_image(path).array):
        check_generation_image(gen, load_image(same))


def test_the_hash_survives_save_and_load_and_old_files_load(adapter, two_images, tmp_path):
    a, _ = two_images
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(a, prompt="q")
    out = expl.save(tmp_path / "e", heatmap=False)
    assert Explanation.load(out).generation.image_sha256 == image_sha256(a)
    assert Generation.from_dict(expl.generation.to_dict()) == expl.generation
    # A file saved before the field existed loads, unchecked.
    meta_path = out / "explanation.json"
    meta = json.loads(meta_path.read_text())
    del meta["generation"]["image_sha256"]
    meta_path.write_text(json.dumps(meta))
    assert Explanation.load(out).generation.image_sha256 is None


def test_the_hf_adapters_record_the_pixels_they_saw(tmp_path):
    from mllm_attr.adapters import load_adapter
    from mllm_attr.testing.tiny_models import save_tiny

    adapter = load_adapter(save_tiny("llava", tmp_path / "m"))
    img = np.random.default_rng(0).integers(1, 255, (20, 28, 3), dtype=np.uint8)
    assert adapter.generate(img, "q", max_new_tokens=2).image_sha256 == image_sha256(img)
    assert adapter.teacher_force(Image.fromarray(img), "q", "a b").image_sha256 == image_sha256(img)
    big = Image.new("RGB", (2049, 2048), (9, 99, 199))  # seen downscaled, as the Explainer scores it
    assert adapter.generate(big, "q", max_new_tokens=1).image_sha256 == load_image(big).sha256


def test_baselines_refuse_another_image_before_computing_their_map(tmp_path):
    from mllm_attr.adapters import load_adapter
    from mllm_attr.baselines import get_baseline
    from mllm_attr.protocol import score_method
    from mllm_attr.testing.tiny_models import save_tiny

    adapter = load_adapter(save_tiny("llava", tmp_path / "m"))
    rng = np.random.default_rng(1)
    a = rng.integers(1, 255, (20, 28, 3), dtype=np.uint8)
    b = a.copy()
    b[3, 3] = (b[3, 3] + 7) % 250 + 1
    gen = adapter.generate(a, "q", max_new_tokens=2)
    for name in ("tam", "llava_cam", "igos_pp"):
        with pytest.raises(ValueError, match="made on another image"):
            get_baseline(name)(adapter, b, gen, [0])
    calls: list[int] = []

    def method(*args, **kwargs):
        calls.append(1)
        return np.zeros(b.shape[:2], np.float32)

    with pytest.raises(ValueError, match="made on another image"):
        score_method(method, adapter, b, gen, [0], n_regions=4)
    assert calls == []  # refused before the map was computed
    assert get_baseline("tam")(adapter, a, gen, [0]).shape == a.shape[:2]
