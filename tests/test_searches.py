"""Every search on fake models with known answers: orderings, curves, forwards, budgets.

With the fake model, a token's probability is the weighted visible fraction, so on the black
baseline ``F(S) = 2 · w(S) / w(all)`` is modular: exact greedy sorts regions by weight, and
the searches that only approximate greedy must agree with it when gains are well separated.
"""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr import Explainer
from mllm_attr.objective import Objective
from mllm_attr.search import SEARCHES, get_search, region_groups, replay, search_options
from mllm_attr.segment import grid_labels
from mllm_attr.testing.fake import make_fake_adapter

SIDE = 48
N = 16  # a 4x4 grid of 12x12 cells


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(1, 255, (SIDE, SIDE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    lab = grid_labels(SIDE, SIDE, N)
    assert int(lab.max()) + 1 == N
    return lab


def separated_weights(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Per-pixel weights constant on cells, cell weights 1.5^k in a random order (well separated)."""
    order = np.random.default_rng(seed).permutation(N)
    cell_w = np.empty(N)
    cell_w[order] = 1.5 ** np.arange(N)[::-1]
    return cell_w[labels], order.tolist()


def objective(image, labels, weights, **kw) -> Objective:
    adapter = make_fake_adapter(image, {"cat": weights}, answer="a cat")
    gen = adapter.generate(image, "q")
    return Objective(adapter.scorer(image, gen, [1]), labels, **kw)


@pytest.mark.parametrize("name", sorted(set(SEARCHES) - {"hierarchical"}))
def test_searches_recover_the_greedy_ordering_of_a_modular_objective(name, image, labels):
    weights, expected = separated_weights(labels)
    res = get_search(name)(objective(image, labels, weights))
    assert res.ordering.tolist() == expected


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_curves_are_the_replay_of_the_ordering_and_forwards_are_counted(name, image, labels):
    weights, _ = separated_weights(labels, seed=3)
    obj = objective(image, labels, weights)
    res = get_search(name)(obj)
    assert sorted(res.ordering.tolist()) == list(range(N))
    check = objective(image, labels, weights)
    rep = replay(check, res.ordering)
    assert np.allclose(rep.ins, res.ins) and np.allclose(rep.dele, res.dele) and np.allclose(rep.value, res.value)
    assert obj.forwards == obj.scorer.counter.images
    if name == "greedy":
        assert obj.forwards == N * (N + 1)
    else:
        assert obj.forwards < N * (N + 1)


@pytest.mark.parametrize("name", sorted(SEARCHES))
@pytest.mark.parametrize("budget", [2 * N, 2 * N + 7, 60, 120])
def test_every_search_respects_a_budget(name, budget, image, labels):
    weights, _ = separated_weights(labels, seed=5)
    obj = objective(image, labels, weights, max_forwards=budget)
    res = get_search(name)(obj)
    assert obj.forwards <= budget
    assert sorted(res.ordering.tolist()) == list(range(N))
    assert np.isfinite(res.ins).all() and np.isfinite(res.dele).all()


def test_region_groups_merge_adjacent_regions_of_one_colour(labels):
    img = np.full((SIDE, SIDE, 3), 128, np.uint8)
    img[:24, :24] = (220, 30, 30)  # cells 0, 1, 4, 5 are one red object
    img[24:, 24:] = (30, 30, 220)  # cells 10, 11, 14, 15 a blue one
    # The two grey blocks touch only at a corner (not adjacent), so four groups it is.
    groups = region_groups(labels, img, 4)
    assert sorted(map(sorted, groups)) == sorted([[0, 1, 4, 5], [10, 11, 14, 15], [2, 3, 6, 7], [8, 9, 12, 13]])
    assert all(len(g) == 1 for g in region_groups(labels, img, N))
    # Only adjacent regions merge: every group is 4-connected in the cell grid.
    for g in region_groups(labels, np.random.default_rng(0).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8), 5):
        cells = {(c // 4, c % 4) for c in g}
        seen, stack = set(), [next(iter(cells))]
        while stack:
            y, x = stack.pop()
            if (y, x) in seen:
                continue
            seen.add((y, x))
            stack += [(y + dy, x + dx) for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)) if (y + dy, x + dx) in cells]
        assert seen == cells


def test_hierarchical_finds_a_multi_region_object_first_at_a_fraction_of_the_cost(labels):
    img = np.full((SIDE, SIDE, 3), 100, np.uint8)
    img += np.random.default_rng(2).integers(0, 20, img.shape, dtype=np.uint8)  # textured background
    img[12:36, 12:36] = (240, 200, 20)  # a yellow object over cells 5, 6, 9, 10
    weights = np.zeros((SIDE, SIDE))
    weights[12:36, 12:36] = 1.0
    weights[img[..., 0] == 240] = 1.0
    obj = objective(img, labels, weights)
    res = get_search("hierarchical")(obj, groups=4)
    assert sorted(res.ordering[:4].tolist()) == [5, 6, 9, 10]
    greedy_obj = objective(img, labels, weights)
    get_search("greedy")(greedy_obj)
    assert obj.forwards <= 4 * 5 + 4 * N and obj.forwards < greedy_obj.forwards / 2


def test_search_options_are_checked_and_normalised():
    assert search_options("hierarchical", {"groups": np.int64(6)}) == {"groups": 6}
    assert search_options("phasewin", {"window": np.float32(0.5)}) == {"window": 0.5}
    with pytest.raises(TypeError, match="groups"):
        search_options("hierarchical", {"groups": 2.5})
    with pytest.raises(ValueError, match="window"):
        search_options("phasewin", {"window": 0})
    with pytest.raises(ValueError, match="unknown option"):
        search_options("greedy", {"groups": 3})


def test_explainer_runs_hierarchical_end_to_end(image):
    weights = np.zeros((SIDE, SIDE))
    weights[:12, :12] = 1.0
    adapter = make_fake_adapter(image, {"cat": weights}, answer="a cat")
    expl = Explainer(adapter, n_regions=N, segmenter="grid", search="hierarchical", search_options={"groups": 4})(
        image, prompt="q", target="cat"
    )
    assert expl.ordering[0] == 0 and expl.settings["search_options"] == {"groups": 4}
    assert expl.settings["search_info"]["groups"] == 4


def test_hierarchical_refine_steps_take_the_regions_bordering_the_head(labels):
    """Refinement picks, among the regions touching the first group, the best by exact greedy."""
    img = np.full((SIDE, SIDE, 3), 100, np.uint8)
    img[:12, :12] = (240, 200, 20)  # cell 0 is its own colour group
    weights = np.zeros((SIDE, SIDE))
    weights[:12, :12] = 4.0
    weights[12:24, :12] = 2.0  # cell 4 (below cell 0) matters next
    weights[36:, 36:] = 1.0  # cell 15 (far away) a little
    obj = objective(img, labels, weights)
    res = get_search("hierarchical")(obj, groups=2, refine=1)
    assert res.ordering[:2].tolist() == [0, 4]
    assert sorted(res.ordering.tolist()) == list(range(N))
    check = objective(img, labels, weights)
    rep = replay(check, res.ordering)
    assert np.allclose(rep.ins, res.ins) and np.allclose(rep.dele, res.dele)
    for budget in (2 * N, 2 * N + 5, 50):
        capped = objective(img, labels, weights, max_forwards=budget)
        get_search("hierarchical")(capped, groups=2, refine=3)
        assert capped.forwards <= budget
