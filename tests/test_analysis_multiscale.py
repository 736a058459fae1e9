"""Multi-scale aggregation: helpers, per-scale maps at the original size, combinations, replay scoring."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr import CallableAdapter
from mllm_attr.analysis.multiscale import MultiScaleExplainer, combine, resize_image
from mllm_attr.maps import normalize_map as normalise
from mllm_attr.maps import resize_map
from mllm_attr.metrics import pointing_game
from mllm_attr.segment import grid_labels


def test_normalise_and_combine():
    a = np.array([[0.0, 2.0], [4.0, 4.0]])
    assert np.allclose(normalise(a), [[0, 0.5], [1, 1]]) and normalise(a).dtype == np.float32
    assert np.all(normalise(np.full((2, 2), 3.0)) == 0)
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert np.allclose(combine([a, b]), normalise((normalise(a) + b) / 2))
    assert np.allclose(combine([a, b], [1.0, 0.0]), normalise(a))
    assert np.allclose(combine([a, b], [0.0, 0.0]), combine([a, b]))  # all-zero weights -> uniform
    with pytest.raises(ValueError, match="weights"):
        combine([a, b], [1.0])
    with pytest.raises(ValueError, match="no maps"):
        combine([])
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalise(np.array([[np.nan, 1.0]]))


def test_resizing():
    img = np.zeros((40, 30, 3), np.uint8)
    assert resize_image(img, 0.5).shape == (20, 15, 3) and resize_image(img, 1.0) is img
    assert resize_image(img, 0.01).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="positive"):
        resize_image(img, 0)
    m = np.zeros((4, 4), np.float32)
    m[:2, :2] = 1
    big = resize_map(m, (40, 40))
    assert big.shape == (40, 40) and big[5, 5] == pytest.approx(1.0) and big[35, 35] == pytest.approx(0.0)


RED = (230, 20, 20)


def red_scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    img = rng.integers(40, 150, size=(40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[4:16, 4:16] = True  # 9% of the image
    img[mask] = RED
    return img, mask


def red_adapter() -> CallableAdapter:
    """Resolution-free fake: p("red") = visible red pixels / (9% of the image), capped at 1."""

    def score(images, generation, positions):
        x = images.astype(np.int32)
        red = (x[..., 0] > 180) & (x[..., 1] < 70) & (x[..., 2] < 70)
        frac = red.sum(axis=(1, 2)) / (0.09 * images.shape[1] * images.shape[2])
        return np.repeat(np.minimum(frac, 1.0)[:, None], len(positions), axis=1)

    return CallableAdapter(score, lambda img, prompt: "red", name="red-fake", batch_size=32)


def test_multiscale_maps_find_the_object():
    img, mask = red_scene()
    adapter = red_adapter()
    ms = MultiScaleExplainer(adapter, region_scales=(4, 16), resolutions=(0.5,), segmenter="grid")(
        img, prompt="q", target=0
    )
    assert [s.name for s in ms.scales] == ["regions=4", "regions=16", "regions=16@0.5x"]
    assert [s.n_regions for s in ms.scales] == [4, 16, 16]
    assert ms.forwards == 4 * 5 + 16 * 17 + 16 * 17  # exact greedy at each scale
    for s in ms.scales:
        assert s.saliency.shape == (40, 40) and s.saliency.min() >= 0 and s.saliency.max() == pytest.approx(1.0)
        assert pointing_game(s.saliency, mask), s.name
        assert s.weight == pytest.approx(max(s.insertion_auc - s.deletion_auc, 0))
    mean = ms.saliency("mean")
    weighted = ms.saliency("weighted")
    assert np.allclose(mean, combine([s.saliency for s in ms.scales]))
    assert np.allclose(weighted, combine([s.saliency for s in ms.scales], [s.weight for s in ms.scales]))
    assert pointing_game(mean, mask) and pointing_game(weighted, mask)
    assert [s.name for s in ms.select(resolution=1.0)] == ["regions=4", "regions=16"]
    assert ms.to_json()["scales"][2]["resolution"] == 0.5
    with pytest.raises(ValueError, match="combination"):
        ms.saliency("max")


def test_combined_map_is_scored_by_the_replay_protocol():
    img, mask = red_scene()
    adapter = red_adapter()
    ms = MultiScaleExplainer(adapter, region_scales=(4, 16), segmenter="grid", keep_explanations=True)(
        img, prompt="q", target=0
    )
    labels = grid_labels(40, 40, 16)
    expl = ms.score(adapter, labels, combine_kind="weighted")
    assert expl.forwards == 2 * (16 - 1) + 2 and expl.settings["protocol"] == "replay"
    assert expl.settings["method"] == "multiscale-weighted"
    # The cell holding most of the red square comes first; the map stored is the combined map.
    assert expl.ordering[0] == int(np.argmax(np.bincount(labels[mask], minlength=16)))
    assert np.allclose(expl.saliency(), ms.saliency("weighted"))
    # Replaying the 16-region scale's own map on its own label map reproduces its curves.
    own = ms.scales[1].explanation
    again = ms.score(adapter, own.labels, combine_kind="mean", scales=[ms.scales[1]])
    assert np.allclose(again.insertion_auc(), own.insertion_auc()) and np.allclose(
        again.deletion_auc(), own.deletion_auc()
    )


def test_errors():
    adapter = red_adapter()
    with pytest.raises(TypeError, match="region_scales"):
        MultiScaleExplainer(adapter, n_regions=16)
    with pytest.raises(ValueError, match="positive"):
        MultiScaleExplainer(adapter, resolutions=(0.0,))
    with pytest.raises(ValueError, match="at least one"):
        MultiScaleExplainer(adapter, region_scales=(), resolutions=())
    with pytest.raises(ValueError, match="segmenter"):
        MultiScaleExplainer(adapter, segmenter="nope")
    with pytest.raises(TypeError, match="ModelAdapter"):
        MultiScaleExplainer(object())  # type: ignore[arg-type]
