"""The replay protocol: hand-checkable orderings, curves and AUCs on the fake model."""

import numpy as np
import pytest

from mllm_attr import Explainer, Explanation
from mllm_attr.baselines import get_baseline
from mllm_attr.protocol import rank_regions, region_means, replay_ordering, score_map, score_method
from mllm_attr.segment import grid_labels
from mllm_attr.testing.fake import make_fake_adapter


@pytest.fixture
def fake(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    return adapter, adapter.generate(rgb_image, "q")


def test_rank_regions_mean_and_tie_rule():
    labels = grid_labels(40, 40, 4)
    sal = np.zeros((40, 40))
    sal[:20, 20:] = 1.0  # region 1
    sal[20:, :20] = 1.0  # region 2: ties with 1 -> lower index first
    sal[20:, 20:] = 0.5  # region 3
    assert rank_regions(sal, labels).tolist() == [1, 2, 3, 0]
    assert rank_regions(np.zeros((40, 40)), labels).tolist() == [0, 1, 2, 3]  # flat map: index order
    # Region MEAN, not max: region 0 has one hot pixel, region 3 is uniformly warm.
    sal = np.zeros((40, 40))
    sal[0, 0] = 100.0
    sal[20:, 20:] = 0.3
    assert np.allclose(region_means(sal, labels), [0.25, 0, 0, 0.3])
    assert rank_regions(sal, labels).tolist() == [3, 0, 1, 2]
    # Monotone rescaling keeps the ordering.
    assert rank_regions(3 * sal + 7, labels).tolist() == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="NaN"):
        rank_regions(np.full((40, 40), np.nan), labels)


def test_oracle_map_by_hand(rgb_image, quadrant_weights, fake):
    adapter, gen = fake
    labels = grid_labels(40, 40, 4)
    e = score_map(adapter, rgb_image, gen, [1], quadrant_weights, labels=labels, method_name="oracle")
    # Cells carry 3/4, 1/4, 0, 0 of the weight; the 0-0 tie goes to the lower index.
    assert e.ordering.tolist() == [0, 1, 2, 3]
    assert np.allclose(e.areas, [0.25, 0.5, 0.75, 1.0])
    assert np.allclose(e.insertion_curve()[1], [0, 0.75, 1, 1, 1])
    assert np.allclose(e.deletion_curve()[1], [1, 0.25, 0, 0, 0])
    assert e.insertion_auc() == pytest.approx(0.8125)
    assert e.deletion_auc() == pytest.approx(0.1875)
    assert e.highest_confidence() == pytest.approx(1.0)
    assert e.forwards == 2 * (4 - 1) + 2  # every prefix's pair + full and blank
    assert e.settings["method"] == "oracle" and e.settings["segmenter"] == "given"
    sal = e.saliency()
    assert sal.dtype == np.float32 and sal.shape == (40, 40)
    assert np.allclose(sal, quadrant_weights / 3.0)  # the method's own map, normalised to [0, 1]


def test_same_curves_as_eagle_greedy_when_orderings_agree(rgb_image, quadrant_weights, fake):
    """For an additive fake model greedy = rank by weight: both paths must give identical numbers."""
    adapter, gen = fake
    eagle = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, gen, target="cat")
    e = score_map(adapter, rgb_image, gen, eagle.positions, quadrant_weights, labels=eagle.labels)
    assert e.ordering.tolist() == eagle.ordering.tolist()
    assert np.allclose(e.ins, eagle.ins) and np.allclose(e.dele, eagle.dele)
    assert e.insertion_auc() == pytest.approx(eagle.insertion_auc())
    assert e.deletion_auc() == pytest.approx(eagle.deletion_auc())
    assert np.allclose(e.p_full, eagle.p_full) and np.allclose(e.p_blank, eagle.p_blank)


def test_reversed_map_is_worst(rgb_image, quadrant_weights, fake):
    adapter, gen = fake
    labels = grid_labels(40, 40, 4)
    e = score_map(adapter, rgb_image, gen, [1], -quadrant_weights, labels=labels)
    assert e.ordering.tolist() == [2, 3, 1, 0]
    assert np.allclose(e.insertion_curve()[1], [0, 0, 0, 0.25, 1])
    assert e.insertion_auc() == pytest.approx(0.5 * 0.25 * (0.25 + 0) + 0.5 * 0.25 * (1 + 0.25))


def test_random_differs_from_oracle(rgb_image, fake):
    adapter, gen = fake
    w = np.zeros((40, 40))
    w[:10, :10] = 1.0  # the evidence is one corner cell of a 4x4 grid
    adapter = make_fake_adapter(rgb_image, {"cat": w}, answer="a cat")
    kw = {"n_regions": 16, "segmenter": "grid"}
    oracle = score_map(adapter, rgb_image, gen, [1], w, **kw)
    rand = score_method("random", adapter, rgb_image, gen, [1], seed=3, **kw)
    assert oracle.ordering[0] == 0 and oracle.insertion_auc() > 0.95
    assert rand.insertion_auc() < oracle.insertion_auc() - 0.1
    assert rand.deletion_auc() > oracle.deletion_auc() + 0.1
    assert rand.settings["method"] == "random" and rand.settings["seed"] == 3
    # Same seed, same ordering; the map is kept.
    again = score_method(get_baseline("random"), adapter, rgb_image, gen, [1], seed=3, **kw)
    assert again.ordering.tolist() == rand.ordering.tolist()
    assert np.array_equal(again.saliency(), rand.saliency())


def test_centre_prior_and_slic_default(rgb_image, fake):
    adapter, gen = fake
    e = score_method("centre", adapter, rgb_image, gen, [1], n_regions=9, segmenter="grid")
    assert e.n_regions == 9 and e.ordering[0] == 4  # the middle cell of a 3x3 grid
    s = score_map(adapter, rgb_image, gen, [1], np.ones((40, 40)), n_regions=8)  # SLIC by default
    assert s.settings["segmenter"] == "slic" and s.n_regions >= 2
    assert s.ordering.tolist() == list(range(s.n_regions))  # flat map -> index order
    assert np.all(s.saliency() == 0)


def test_replay_ordering_and_save_load(tmp_path, rgb_image, fake):
    adapter, gen = fake
    labels = grid_labels(40, 40, 4)
    e = replay_ordering(adapter, rgb_image, gen, [1], np.array([3, 2, 1, 0]), labels, method_name="manual")
    assert e.ordering.tolist() == [3, 2, 1, 0] and e.saliency_map is None
    with pytest.raises(ValueError, match="exactly once"):
        replay_ordering(adapter, rgb_image, gen, [1], np.array([0, 0, 1, 2]), labels)
    sal = np.linspace(0, 2, 1600).reshape(40, 40)
    m = score_map(adapter, rgb_image, gen, [1], sal, labels=labels, method_name="lin")
    m.save(tmp_path / "out")
    back = Explanation.load(tmp_path / "out")
    assert np.allclose(back.saliency(), m.saliency()) and back.settings["method"] == "lin"
    assert back.insertion_auc() == pytest.approx(m.insertion_auc())


def test_input_errors(rgb_image, fake):
    adapter, gen = fake
    labels = grid_labels(40, 40, 4)
    with pytest.raises(ValueError, match="saliency shape"):
        score_map(adapter, rgb_image, gen, [1], np.zeros((10, 10)), labels=labels)
    with pytest.raises(ValueError, match="label map shape"):
        score_map(adapter, rgb_image, gen, [1], np.zeros((40, 40)), labels=labels[:20])
    with pytest.raises(TypeError, match="integer label map"):
        score_map(adapter, rgb_image, gen, [1], np.zeros((40, 40)), labels=labels.astype(float))
    with pytest.raises(ValueError, match="out of range"):
        score_map(adapter, rgb_image, gen, [5], np.zeros((40, 40)), labels=labels)
    with pytest.raises(ValueError, match="unknown segmenter"):
        score_map(adapter, rgb_image, gen, [1], np.zeros((40, 40)), segmenter="quickshift")
    with pytest.raises(ValueError, match="unknown fill"):
        score_map(adapter, rgb_image, gen, [1], np.zeros((40, 40)), labels=labels, fill="white")
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        score_method("nope", adapter, rgb_image, gen, [1])
