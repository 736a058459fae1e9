"""Exact expectations from a fake model whose score is the weighted visible fraction."""

import numpy as np
import pytest

from mllm_attr import Answer, Explainer, Explanation
from mllm_attr.explanation import region_values
from mllm_attr.objective import Objective
from mllm_attr.search import greedy, replay
from mllm_attr.segment import grid_labels
from mllm_attr.testing.fake import make_fake_adapter


def explain(rgb_image, weights, **kw):
    adapter = make_fake_adapter(rgb_image, weights, answer="a cat and a dog")
    return Explainer(adapter, n_regions=4, segmenter="grid", **kw)(
        rgb_image, prompt="q", target=kw.pop("target", "cat")
    )


def test_greedy_ordering_curves_aucs_by_hand(rgb_image, quadrant_weights):
    e = explain(rgb_image, {"cat": quadrant_weights})
    # Cells carry 3/4, 1/4, 0, 0 of the weight: greedy takes 0, then 1, then the tie 2 vs 3 goes to 2.
    assert e.ordering.tolist() == [0, 1, 2, 3]
    assert np.allclose(e.areas, [0.25, 0.5, 0.75, 1.0])
    x, y = e.insertion_curve()
    assert np.allclose(x, [0, 0.25, 0.5, 0.75, 1.0]) and np.allclose(y, [0, 0.75, 1, 1, 1])
    _, yd = e.deletion_curve()
    assert np.allclose(yd, [1, 0.25, 0, 0, 0])
    assert e.insertion_auc() == pytest.approx(0.8125)
    assert e.deletion_auc() == pytest.approx(0.1875)
    assert e.highest_confidence() == pytest.approx(1.0)
    assert e.forwards == 4 * 5  # n(n+1)
    assert e.target_text == "cat" and e.positions == [1]


def test_greedy_prefers_weight_over_index(rgb_image):
    w = np.zeros((40, 40))
    w[20:, 20:] = 5.0  # cell 3
    w[20:, :20] = 2.0  # cell 2
    w[:20, 20:] = 1.0  # cell 1
    e = explain(rgb_image, {"cat": w})
    assert e.ordering.tolist() == [3, 2, 1, 0]
    sal = e.saliency()
    assert sal.dtype == np.float32 and sal.shape == (40, 40)
    assert sal[30, 30] == 1.0 and sal[5, 5] == 0.0
    assert sal[30, 30] > sal[30, 5] > sal[5, 30] > sal[5, 5]


def test_multi_token_mean_and_per_token(rgb_image, quadrant_weights):
    other = np.zeros((40, 40))
    other[20:, 20:] = 1.0  # "dog" lives in cell 3 only
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights, "dog": other}, answer="cat dog")
    e = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, prompt="q", target="all")
    assert e.positions == [0, 1] and e.ins.shape == (4, 2)
    # F of a single cell: cat 3/4 or 1/4 (x2), dog 1 for cell 3 -> (0.75+0)*... cell 0: mean ins 0.375; cell 3: 0.5.
    assert e.ordering[0] == 3
    assert e.insertion_auc(1) == pytest.approx(np.trapezoid([0, 1, 1, 1, 1], [0, 0.25, 0.5, 0.75, 1]))


def test_lambda_weights_change_objective(rgb_image, quadrant_weights):
    e = explain(rgb_image, {"cat": quadrant_weights}, lambda1=1.0, lambda2=0.0)
    assert np.allclose(e.value, e.ins.mean(-1))
    with pytest.raises(ValueError, match="lambda1 must be a finite number >= 0"):
        explain(rgb_image, {"cat": quadrant_weights}, lambda1=-1.0)


def test_budget_respected_and_ordering_complete(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    e = Explainer(adapter, n_regions=16, segmenter="grid", max_forwards=60)(rgb_image, prompt="q", target="cat")
    assert e.forwards <= 60
    assert sorted(e.ordering.tolist()) == list(range(16))
    assert e.settings["search_info"]["budget_cut"] is True
    with pytest.raises(ValueError, match="max_forwards must be >= 2"):
        Explainer(adapter, max_forwards=1)


def test_replay_matches_greedy_curves(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights}, answer="a cat")
    gen = adapter.generate(rgb_image, "q")
    labels = grid_labels(40, 40, 9)
    obj = Objective(adapter.scorer(rgb_image, gen, [1]), labels)
    res = greedy(obj)
    obj2 = Objective(adapter.scorer(rgb_image, gen, [1]), labels)
    rep = replay(obj2, res.ordering)
    assert np.allclose(rep.ins, res.ins) and np.allclose(rep.dele, res.dele)
    assert obj2.forwards == 2 + 2 * 8


def test_counterfactual_answer(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"dog": quadrant_weights}, answer="a cat")
    e = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, prompt="q", target=Answer("dog"))
    assert e.generation.counterfactual and e.generation.text == "dog" and e.generation.generated_text == "a cat"
    assert e.ordering[0] == 0


def test_region_values_monotone_with_ties():
    # the research rule min-max normalises: top exactly 1, last exactly 0, strict in between
    v = region_values(np.array([2, 0, 1, 3]), np.array([1.0, 1.0, 1.0, 1.0]), 1.0, rule="reference")
    assert v[2] == 1.0 and v[3] == 0.0 and v[2] > v[0] > v[1] > v[3]
    # the evidence rule: nothing was gained, so no region is bright, yet the ranks stay strict
    v = region_values(np.array([2, 0, 1, 3]), np.array([1.0, 1.0, 1.0, 1.0]), 1.0)
    assert v.max() < 1e-5 and v[2] > v[0] > v[1] > v[3] >= 0.0


def test_save_load_roundtrip_and_no_overwrite(tmp_path, rgb_image, quadrant_weights):
    e = explain(rgb_image, {"cat": quadrant_weights})
    out = e.save(tmp_path / "res")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["arrays.npz", "explanation.json", "heatmap.png", "saliency.npy"]
    e2 = Explanation.load(out)
    assert e2.insertion_auc() == pytest.approx(e.insertion_auc())
    assert np.array_equal(e2.saliency(), e.saliency()) and e2.generation == e.generation
    assert np.load(out / "saliency.npy", allow_pickle=False).dtype == np.float32
    with pytest.raises(FileExistsError, match="not empty"):
        e.save(out)
    e.save(out, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_explainer_config_errors(rgb_image, quadrant_weights):
    adapter = make_fake_adapter(rgb_image, {"cat": quadrant_weights})
    with pytest.raises(ValueError, match="n_regions must be >= 2"):
        Explainer(adapter, n_regions=1)
    with pytest.raises(ValueError, match="unknown search 'magic'"):
        Explainer(adapter, search="magic")
    with pytest.raises(ValueError, match="unknown option"):
        Explainer(adapter, search="greedy", search_options={"scope": 3})
    with pytest.raises(TypeError, match="ModelAdapter"):
        Explainer(object())
    with pytest.raises(ValueError, match="more than the 40x40=1600 pixels"):
        Explainer(adapter, n_regions=5000)(rgb_image, prompt="q", target="cat")
