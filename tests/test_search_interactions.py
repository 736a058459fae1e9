"""Searches on NON-modular fake objectives, budgets at every step, and curves on unequal regions.

The objectives here are set functions ``g(S)`` of the shown regions (no model, no pixels):
insertion scores ``g(S)``, deletion scores ``g(complement of S)``. Orderings, curves and AUCs
are derived by hand in the comments.

Note on the weights: with ``λ1 = λ2`` the objective ``F(S) = g(S) + 1 − g(Sᶜ)`` keeps only the
odd part of ``g``, and for a two-region interaction that part is linear: AND, OR and XOR of two
regions all become modular (``AND(S) − AND(Sᶜ) = x0 + x1 − 1``, ``OR(S) − OR(Sᶜ)`` likewise,
and ``XOR(S) = XOR(Sᶜ)`` cancels). :func:`test_pair_interactions_cancel_when_lambdas_are_equal`
checks this; the interaction tests therefore use insight only (``λ1 = 1, λ2 = 0``, ``F = g``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mllm_attr import Explainer, Explanation
from mllm_attr.adapters.base import Scorer
from mllm_attr.objective import Objective
from mllm_attr.protocol import replay_ordering, score_map
from mllm_attr.search import SEARCHES, get_search, replay, run_search
from mllm_attr.segment import grid_labels
from mllm_attr.testing.fake import make_fake_adapter

SetFn = Callable[[frozenset], float]


class SetScorer(Scorer):
    """``p(S) = g(S)`` for the set ``S`` of shown regions; ``after_call`` holds the forward
    count after every scoring call, so a test can check the budget at every step."""

    def __init__(self, g: SetFn, labels: np.ndarray, image: np.ndarray | None = None):
        if image is None:
            image = np.full(labels.shape + (3,), 128, np.uint8)
        super().__init__(image, np.zeros_like(image), [0], batch_size=3)
        self.g = g
        self.after_call: list[int] = []

    def _score_batch(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - never called
        raise AssertionError("the searches score region tables, not images")

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        return np.array([[self.g(frozenset(np.flatnonzero(row).tolist()))] for row in table])

    def score_regions(self, table: np.ndarray) -> np.ndarray:
        out = super().score_regions(table)
        self.after_call.append(self.forwards)
        return out


LABELS4 = grid_labels(8, 8, 4)  # 2x2 cells 0 1 / 2 3
LABELS9 = grid_labels(12, 12, 9)  # 3x3 cells


def set_objective(g: SetFn, labels: np.ndarray = LABELS4, *, lambda2: float = 0.0, **kw) -> Objective:
    return Objective(SetScorer(g, labels), labels, lambda1=1.0, lambda2=lambda2, **kw)


def single_gain_sort(obj: Objective) -> list[int]:
    """Regions sorted by F({r}) alone, highest first, ties by lower id."""
    ev = obj.evaluate([[r] for r in range(obj.n_regions)])
    return sorted(range(obj.n_regions), key=lambda r: (-ev.value[r], r))


# Dyadic weights so that every sum is exact in floating point (exact ties stay exact).
def synergy(s: frozenset) -> float:
    """Regions 0 and 1 count together (0.375) on top of small single effects of 0, 2, 3."""
    return 0.375 * ({0, 1} <= s) + 0.25 * (0 in s) + 0.25 * (2 in s) + 0.125 * (3 in s)


def xor(s: frozenset) -> float:
    """Exactly one of regions 0, 1 gives 0.5 (both give nothing), plus 2 and 3."""
    return 0.5 * ((0 in s) != (1 in s)) + 0.25 * (2 in s) + 0.125 * (3 in s)


def redundant(s: frozenset) -> float:
    """Region 0 or region 1 gives the full 0.5; the second of the pair adds nothing."""
    return 0.5 * (0 in s or 1 in s) + 0.375 * (2 in s) + 0.125 * (3 in s)


def mixed9(s: frozenset) -> float:
    """Nine regions: synergy (0, 1), XOR (3, 4), redundancy (6, 7) and single effects."""
    return (
        0.3 * ({0, 1} <= s)
        + 0.2 * ((3 in s) != (4 in s))
        + 0.25 * (6 in s or 7 in s)
        + 0.1 * (2 in s)
        + 0.1 * (5 in s)
        + 0.05 * (8 in s)
    )


# name -> (g, single-gain sort, exact greedy ordering, F of each greedy prefix), all by hand:
CASES = {
    # Singles F({r}) = g({r}): 0.25, 0, 0.25, 0.125 -> single sort [0, 2, 3, 1].
    # Greedy: step 1 ties 0 and 2 at 0.25 -> 0 (lowest id). Step 2 from {0}: +1 = 0.25+0.375
    # = 0.625, +2 = 0.5, +3 = 0.375 -> 1. Step 3 from {0,1}: +2 = 0.875, +3 = 0.75 -> 2; then 3.
    "synergy": (synergy, [0, 2, 3, 1], [0, 1, 2, 3], [0.25, 0.625, 0.875, 1.0]),
    # Singles: 0.5, 0.5, 0.25, 0.125 -> single sort [0, 1, 2, 3]. Greedy: step 1 ties 0 and 1 ->
    # 0. Step 2 from {0}: +1 = 0 (XOR off), +2 = 0.75, +3 = 0.625 -> 2. Step 3 from {0,2}: +1 =
    # 0.25, +3 = 0.875 -> 3; then 1 (g(all) = 0.375).
    "xor": (xor, [0, 1, 2, 3], [0, 2, 3, 1], [0.5, 0.75, 0.875, 0.375]),
    # Singles: 0.5, 0.5, 0.375, 0.125 -> single sort [0, 1, 2, 3]. Greedy: step 1 ties 0 and 1 ->
    # 0. Step 2 from {0}: +1 = 0.5 (redundant), +2 = 0.875, +3 = 0.625 -> 2. Step 3 from {0,2}:
    # +1 = 0.875, +3 = 1.0 -> 3; then 1.
    "redundant": (redundant, [0, 1, 2, 3], [0, 2, 3, 1], [0.5, 0.875, 1.0, 1.0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exact_greedy_on_interactions_by_hand(case):
    g, single, expected, values = CASES[case]
    obj = set_objective(g)
    assert single_gain_sort(set_objective(g)) == single
    res = get_search("greedy")(obj)
    assert res.ordering.tolist() == expected
    assert expected != single  # greedy sees the interaction, the single-gain sort does not
    assert np.allclose(res.value, values)
    assert obj.forwards == 4 * 5


# Searches whose answer is exact greedy on these four-region cases, with the reason:
EXACT_ON_FOUR = {
    "greedy": {},
    "hierarchical_one_group": {"groups": 1},  # one group of all regions, ordered by exact greedy
    "hierarchical_singletons": {"groups": 4},  # every group one region: the coarse steps ARE greedy
    "lazy": {"refresh": 4},  # refresh >= n - 1 re-scores every stale gain: exact
    # search_scope >= n: the head steps score every remaining region; with n = 4 the one tail
    # step moves the region whose removal from the full set hurts least, which is greedy's last
    # (synergy: removing 3 leaves 0.875; XOR: removing 1 leaves 0.875 > 0.375; redundant:
    # removing 1 leaves 1.0).
    "efficient": {},
    "bidirectional": {},
}


def _search(key: str) -> tuple[str, dict]:
    name = "hierarchical" if key.startswith("hierarchical") else key
    return name, EXACT_ON_FOUR.get(key, {})


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("key", sorted(set(SEARCHES) | set(EXACT_ON_FOUR)))
def test_every_search_on_interactions(case, key):
    g, _, expected, _ = CASES[case]
    name, options = _search(key)
    budget = 4 * 5
    obj = set_objective(g, max_forwards=budget)
    res = get_search(name)(obj, **options)
    order = res.ordering.tolist()
    assert sorted(order) == [0, 1, 2, 3]
    assert obj.forwards <= budget and max(obj.scorer.after_call) <= budget
    # Every search's first step scores all single regions: its head is greedy's first pick.
    assert order[0] == expected[0]
    rep = replay(set_objective(g), res.ordering)
    assert np.allclose(rep.ins, res.ins) and np.allclose(rep.dele, res.dele) and np.allclose(rep.value, res.value)
    if key in EXACT_ON_FOUR:
        assert order == expected
    if name == "phasewin" and case == "synergy":
        # Phase 1 accepts 0 (tie with 2), windows the next best singles {2, 3} (region 1's single
        # gain is 0, outside the window), re-scores them with {0}: 2 -> 0.5, 3 -> 0.375, accepts
        # 2. Phase 2 from {0, 2}: +1 = 0.875, +3 = 0.625 -> 1; then 3. It misses the synergy.
        assert order == [0, 2, 1, 3]


def test_pair_interactions_cancel_when_lambdas_are_equal():
    """With λ1 = λ2 the two-region interactions are modular in F: greedy = the single-gain sort."""
    for g, _, _, _ in CASES.values():
        res = get_search("greedy")(set_objective(g, lambda2=1.0))
        assert res.ordering.tolist() == single_gain_sort(set_objective(g, lambda2=1.0))


def test_exact_ties_go_to_the_lowest_region_id():
    flat = lambda s: 0.5  # noqa: E731 - every candidate ties at every step
    for options in ({}, {"groups": 1}, {"groups": 9}):
        name = "hierarchical" if options else "greedy"
        res = get_search(name)(set_objective(flat, LABELS9), **options)
        assert res.ordering.tolist() == list(range(9)), (name, options)


# ------------------------------------------------------------------------- budgets, every step

BUDGET_CONFIGS = [(name, {}) for name in sorted(SEARCHES)] + [
    ("hierarchical", {"groups": 1}),
    ("hierarchical", {"groups": 3, "exact_groups": 2, "refine": 2}),
    ("hierarchical", {"groups": 2, "refine": 4}),
    ("efficient", {"search_scope": 2, "pending_samples": 2, "update_step": 3}),
    ("lazy", {"refresh": 1}),
]


@pytest.mark.parametrize("name, options", BUDGET_CONFIGS, ids=[f"{n}-{o}" for n, o in BUDGET_CONFIGS])
@pytest.mark.parametrize(
    "g, labels", [(synergy, LABELS4), (xor, LABELS4), (mixed9, LABELS9)], ids=["synergy", "xor", "mixed9"]
)
def test_every_search_respects_the_budget_at_every_step(name, options, g, labels):
    n = int(labels.max()) + 1
    unbudgeted = set_objective(g, labels, lambda2=0.5)
    free = get_search(name)(unbudgeted, **options)
    lowest = 2 + 2 * (n - 1)  # full + blank + the curves' prefixes: the least any search needs
    for budget in range(lowest, n * (n + 1) + 3):
        obj = set_objective(g, labels, lambda2=0.5, max_forwards=budget)
        res = get_search(name)(obj, **options)
        assert max(obj.scorer.after_call) <= budget, (budget, obj.scorer.after_call)
        assert obj.forwards <= budget
        assert sorted(res.ordering.tolist()) == list(range(n))
        rep = replay(set_objective(g, labels, lambda2=0.5), res.ordering)
        assert np.allclose(rep.ins, res.ins) and np.allclose(rep.dele, res.dele)
        if budget >= unbudgeted.forwards:
            # A budget that covers the unbudgeted run changes nothing (no over-reservation).
            assert res.ordering.tolist() == free.ordering.tolist() and obj.forwards == unbudgeted.forwards
            assert res.info["budget_cut"] is False


# ------------------------------------------------------------- curves on regions of unequal size

# An 8x8 label map: region 0 = the left half (32 px, area 1/2), region 1 = the top-right quarter
# (16 px, 1/4), regions 2 and 3 = the two 4x2 strips of the bottom-right quarter (8 px, 1/8 each).
UNEQUAL = np.zeros((8, 8), np.int32)
UNEQUAL[:4, 4:] = 1
UNEQUAL[4:, 4:6] = 2
UNEQUAL[4:, 6:] = 3
# The fake model's probability is the weighted visible fraction; each region carries this share.
SHARES = {0: 1 / 16, 1: 3 / 16, 2: 1 / 2, 3: 1 / 4}


def share_weights(labels: np.ndarray, shares: dict[int, float]) -> np.ndarray:
    """Per-pixel weights constant on each region so that region r carries ``shares[r]`` in all."""
    area = np.bincount(labels.ravel())
    return np.array([shares[r] / area[r] for r in range(len(area))])[labels]


def fake_setup(labels: np.ndarray, shares: dict[int, float]):
    image = np.random.default_rng(4).integers(1, 255, labels.shape + (3,), dtype=np.uint8)
    adapter = make_fake_adapter(image, {"cat": share_weights(labels, shares)}, answer="a cat")
    return image, adapter, adapter.generate(image, "q")


# Modular F: every search orders by share: 2 (1/2), 3 (1/4), 1 (3/16), 0 (1/16).
# Areas in ORDERING order: 1/8, 1/8 + 1/8 = 1/4, 1/4 + 1/4 = 1/2, 1 (label order: 1/2, 3/4, 7/8, 1).
# Insertion y: p(blank) = 0, 1/2, 3/4, 15/16, 1; deletion y: p(full) = 1, 1/2, 1/4, 1/16, 0.
UNEQUAL_ORDER = [2, 3, 1, 0]
UNEQUAL_AREAS = [0.125, 0.25, 0.5, 1.0]
UNEQUAL_INS = [0.0, 0.5, 0.75, 0.9375, 1.0]
UNEQUAL_DEL = [1.0, 0.5, 0.25, 0.0625, 0.0]
# Trapezoids: Σ Δx · (y_i + y_{i+1}) / 2 over x = 0, 1/8, 1/4, 1/2, 1.
UNEQUAL_INS_AUC = 0.125 * 0.5 / 2 + 0.125 * 1.25 / 2 + 0.25 * 1.6875 / 2 + 0.5 * 1.9375 / 2  # 0.8046875
UNEQUAL_DEL_AUC = 0.125 * 1.5 / 2 + 0.125 * 0.75 / 2 + 0.25 * 0.3125 / 2 + 0.5 * 0.0625 / 2  # 0.1953125


def check_unequal(e: Explanation) -> None:
    assert e.ordering.tolist() == UNEQUAL_ORDER
    assert np.allclose(e.areas, UNEQUAL_AREAS)
    x, y = e.insertion_curve()
    assert np.allclose(x, [0.0] + UNEQUAL_AREAS) and np.allclose(y, UNEQUAL_INS)
    xd, yd = e.deletion_curve()
    assert np.allclose(xd, [0.0] + UNEQUAL_AREAS) and np.allclose(yd, UNEQUAL_DEL)
    assert e.insertion_auc() == pytest.approx(UNEQUAL_INS_AUC) and pytest.approx(0.8046875) == UNEQUAL_INS_AUC
    assert e.deletion_auc() == pytest.approx(UNEQUAL_DEL_AUC) and pytest.approx(0.1953125) == UNEQUAL_DEL_AUC


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_every_search_curves_and_aucs_on_unequal_regions(name):
    image, adapter, gen = fake_setup(UNEQUAL, SHARES)
    obj = Objective(adapter.scorer(image, gen, [1]), UNEQUAL)
    res = run_search(name, obj)
    p_full, p_blank = obj.endpoints()
    e = Explanation.from_search(
        res,
        image=image,
        labels=UNEQUAL,
        p_full=p_full,
        p_blank=p_blank,
        generation=gen,
        positions=[1],
        forwards=obj.forwards,
        seconds=0.0,
        settings={"search": name},
    )
    check_unequal(e)


def test_replay_protocol_on_unequal_regions():
    image, adapter, gen = fake_setup(UNEQUAL, SHARES)
    check_unequal(replay_ordering(adapter, image, gen, [1], np.array(UNEQUAL_ORDER), UNEQUAL))
    # Region means of the weight map: 2 -> 1/16, 3 -> 1/32, 1 -> 3/256, 0 -> 1/512: same order.
    m = score_map(adapter, image, gen, [1], share_weights(UNEQUAL, SHARES), labels=UNEQUAL)
    check_unequal(m)
    assert m.forwards == 2 + 2 * 3
    # Label order [0, 1, 2, 3]: areas 1/2, 3/4, 7/8, 1; insertion y 0, 1/16, 1/4, 3/4, 1.
    e = replay_ordering(adapter, image, gen, [1], np.arange(4), UNEQUAL)
    assert np.allclose(e.areas, [0.5, 0.75, 0.875, 1.0])
    assert np.allclose(e.insertion_curve()[1], [0, 1 / 16, 0.25, 0.75, 1])
    auc = 0.5 * (0 + 1 / 16) / 2 + 0.25 * (1 / 16 + 0.25) / 2 + 0.125 * (0.25 + 0.75) / 2 + 0.125 * (0.75 + 1) / 2
    assert e.insertion_auc() == pytest.approx(auc)  # 0.1875


# The 2x2 grid of a 9x9 image has unequal cells: rows/cols 0-4 and 5-8, so cell areas are
# 25, 20, 20, 16 pixels of 81 (cells 0, 1, 2, 3).
GRID9_SHARES = {0: 3 / 16, 1: 1 / 16, 2: 1 / 4, 3: 1 / 2}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_explainer_curves_and_aucs_on_an_unequal_grid(name):
    labels = grid_labels(9, 9, 4)
    assert np.bincount(labels.ravel()).tolist() == [25, 20, 20, 16]
    image, adapter, gen = fake_setup(labels, GRID9_SHARES)
    e = Explainer(adapter, n_regions=4, segmenter="grid", search=name)(image, gen, target="cat")
    assert np.array_equal(e.labels, labels)
    # Order by share: 3 (1/2), 2 (1/4), 0 (3/16), 1 (1/16); areas 16, 16+20, 36+25, 81 (/81).
    assert e.ordering.tolist() == [3, 2, 0, 1]
    assert np.allclose(e.areas, np.array([16, 36, 61, 81]) / 81)  # label order: 25, 45, 65, 81
    ins = [0, 0.5, 0.75, 0.9375, 1]
    dele = [1, 0.5, 0.25, 0.0625, 0]
    assert np.allclose(e.insertion_curve()[1], ins) and np.allclose(e.deletion_curve()[1], dele)
    # Trapezoids with Δx = 16, 20, 25, 20 (/81): insertion (8 + 25 + 42.1875 + 38.75) / 162,
    # deletion (24 + 15 + 7.8125 + 1.25) / 162.
    assert e.insertion_auc() == pytest.approx(113.9375 / 162)
    assert e.deletion_auc() == pytest.approx(48.0625 / 162)
