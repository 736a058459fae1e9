import numpy as np
import pytest

from mllm_attr.mask import deletion_image, insertion_image, keep_masks, make_fill
from mllm_attr.segment import grid_labels, segment


@pytest.mark.parametrize("method", ["slic", "grid", "felzenszwalb"])
def test_label_map_contract(rgb_image, method):
    seg = segment(rgb_image, 16, method)
    assert seg.labels.dtype == np.int32 and seg.labels.shape == (40, 40)
    assert set(np.unique(seg.labels)) == set(range(seg.n_regions))
    assert seg.requested == 16 and seg.n_regions >= 2
    assert np.isclose(seg.areas().sum(), 1.0)


def test_grid_counts():
    assert grid_labels(40, 40, 4).max() + 1 == 4
    assert grid_labels(30, 60, 8).max() + 1 == 8


def test_region_count_errors(rgb_image):
    with pytest.raises(ValueError, match="at least 2"):
        segment(rgb_image, 1)
    with pytest.raises(ValueError, match="more than the 40x40=1600 pixels"):
        segment(rgb_image, 1601)
    with pytest.raises(ValueError, match="unknown segmenter 'seeds'"):
        segment(rgb_image, 8, "seeds")
    with pytest.raises(ValueError, match="unknown option"):
        segment(rgb_image, 8, "slic", bogus=1)


def test_uniform_image_still_has_regions():
    seg = segment(np.full((32, 32, 3), 128, np.uint8), 16, "slic")
    assert seg.n_regions >= 2


def test_insertion_deletion_are_complementary(rgb_image):
    labels = grid_labels(40, 40, 4)
    base = make_fill(rgb_image, "black")
    ins = insertion_image(rgb_image, base, labels, [0, 3])
    dele = deletion_image(rgb_image, base, labels, [0, 3])
    assert (ins[:20, :20] == rgb_image[:20, :20]).all() and (ins[:20, 20:] == 0).all()
    assert (dele[:20, :20] == 0).all() and (dele[:20, 20:] == rgb_image[:20, 20:]).all()
    assert ((ins.astype(int) + dele) == rgb_image).all()
    km = keep_masks(labels, [[0], [1, 2], []])
    assert km.shape == (3, 40, 40) and km[0].sum() == 400 and km[1].sum() == 800 and km[2].sum() == 0


@pytest.mark.parametrize("kind", ["black", "blur", "mean"])
def test_fills_rgb(rgb_image, kind):
    b = make_fill(rgb_image, kind)
    assert b.shape == rgb_image.shape and b.dtype == np.uint8
    if kind == "mean":
        assert np.allclose(b[0, 0], rgb_image.reshape(-1, 3).mean(0), atol=0.5)
    with pytest.raises(ValueError, match="unknown fill"):
        make_fill(rgb_image, "white")
