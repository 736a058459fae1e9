"""The fast path's pixel assembly (``HFScorer._fast_pixels``) against a plain dense reference.

The assembly copies precomputed rows, overwrites the elements of the regions a row differs in, and
sums the boundary / higher-order elements as sparse products restricted to their columns. Its
float64 values must equal ``base + Σ_orders Σ_{region sets shown} term``, computed here densely and
plainly from the stored terms (``fast["orders"]``), to 1e-12 relative, on a tiny model and on the
embedded model, at sizes the processor resamples (boundary elements, terms of order 2 and 3), and
two broken assemblies (regions' elements shifted by one region, the mixed path dropped) must fail
that check. The set-up's boundary bookkeeping is checked against a plain loop too.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mllm_attr import load_adapter
from mllm_attr.adapters.hf import HFScorer
from mllm_attr.assets import example_image_path
from mllm_attr.data.shapes import make_scene
from mllm_attr.image import load_image
from mllm_attr.segment import segment
from mllm_attr.testing.tiny_models import build_tiny

#: float64 fast pixels vs the dense reference, relative to the largest |pixel|.
REL_TOL = 1e-12


def reference_pixels(fast: dict, table: np.ndarray) -> np.ndarray:
    """``float64[B, elements]``: base plus every stored term whose region set the row shows."""
    ref = np.tile(fast["base"], (len(table), 1))
    for sets, terms in fast["orders"]:
        dense = terms.toarray()
        for j, regions in enumerate(sets):
            shows_all = table[:, regions].all(axis=1)
            ref[shows_all] += dense[j]
    return ref


def fast64(fast: dict, table: np.ndarray) -> np.ndarray:
    return HFScorer._fast_pixels(fast, table, dtype=torch.float64).reshape(len(table), -1).numpy()


def rel_error(fast: dict, table: np.ndarray) -> float:
    ref = reference_pixels(fast, table)
    return float(np.abs(fast64(fast, table) - ref).max() / np.abs(ref).max())


def tables(n: int) -> np.ndarray:
    """Subsets of every size, nothing / everything, singletons and their complements, and greedy-like
    rows (a current set plus one region each, as one search step scores them)."""
    rng = np.random.default_rng(7)
    random = rng.random((10, n)) < rng.random((10, 1))
    current = rng.random(n) < 0.4
    greedy = np.repeat(current[None], n, axis=0)
    greedy[np.arange(n), np.arange(n)] = True
    eye = np.eye(n, dtype=bool)
    return np.concatenate([random, np.zeros((1, n), bool), np.ones((1, n), bool), eye, ~eye, greedy])


def prepared(adapter, image: np.ndarray, n_regions: int, prompt: str) -> tuple[dict, np.ndarray]:
    gen = adapter.generate(image, prompt, max_new_tokens=2)
    labels = segment(image, n_regions, "slic").labels
    scorer = adapter.scorer(image, gen, [0], batch_size=8, fast_path=True)
    scorer.set_regions(labels)
    assert scorer.fast is not None, scorer.fast_report
    return scorer.fast, labels


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[dict, np.ndarray]]:
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    image = rng.integers(1, 255, size=(60, 72, 3), dtype=np.uint8)
    image[10:40, 20:50] = (30, 200, 40)
    tiny = load_adapter(build_tiny("llava"))
    shapes = load_adapter("shapes-llava")
    scene = make_scene(3, size=(150, 200), min_objects=3, max_objects=3, bias=None).image
    return {
        # 60x72 -> the tiny CLIP processor's 32 px view: boundaries and terms of order 2 and 3.
        "tiny_llava": prepared(tiny, image, 12, "Describe the image."),
        # The embedded model's example image (taken as is) and a 150x200 scene (resized, cropped).
        "shapes_example": prepared(shapes, load_image(example_image_path()).array, 12, "What color is the circle?"),
        "shapes_150x200": prepared(shapes, scene, 16, "What color is the circle?"),
    }


RESAMPLED = ("tiny_llava", "shapes_150x200")


@pytest.mark.parametrize("case", ["tiny_llava", "shapes_example", "shapes_150x200"])
def test_fast_pixels_equal_the_dense_reference(cases, case):
    fast, labels = cases[case]
    n = int(labels.max()) + 1
    table = tables(n)
    assert rel_error(fast, table) <= REL_TOL
    # The processor's dtype: the float64 values rounded once, bit for bit.
    rounded = HFScorer._fast_pixels(fast, table)
    assert rounded.dtype == fast["dtype"]
    assert rounded.shape == (len(table) * fast["shape"][0], *fast["shape"][1:])
    assert torch.equal(rounded, torch.from_numpy(fast64(fast, table)).to(fast["dtype"]).reshape(rounded.shape))
    # Row by row (no previous row to start from) gives the same pixels as the batch.
    single = torch.cat([HFScorer._fast_pixels(fast, row[None]) for row in table[:8]])
    assert torch.equal(single, rounded[: len(single)])


@pytest.mark.parametrize("case", RESAMPLED)
def test_resampled_cases_exercise_boundaries_and_higher_orders(cases, case):
    """The reference check covers the mixed path: boundary elements and non-zero terms of order >= 2."""
    fast, labels = cases[case]
    assert fast["mixed_columns"].size > 0
    assert fast["max_order"] >= 2 and any(terms.nnz for _, terms in fast["orders"][1:])
    table = tables(int(labels.max()) + 1)
    ref = reference_pixels(fast, table)
    columns = fast["mixed_columns"]
    # The boundary elements do move between the candidates, and are right there too.
    assert np.ptp(ref[:, columns], axis=0).max() > 0
    err = np.abs(fast64(fast, table)[:, columns] - ref[:, columns]).max() / np.abs(ref).max()
    assert err <= REL_TOL


@pytest.mark.parametrize("case", ["tiny_llava", "shapes_example", "shapes_150x200"])
def test_boundary_bookkeeping_matches_a_plain_loop(cases, case):
    """Regions per element, residual elements and the order-2 region sets, recomputed plainly
    from the dense first-order terms, element by element."""
    fast, labels = cases[case]
    first = fast["orders"][0][1].toarray()
    touching = [tuple(np.flatnonzero(first[:, e])) for e in range(first.shape[1])]
    assert fast["residual_elements"] == sum(len(t) > fast["max_order"] for t in touching)
    boundary = [e for e, t in enumerate(touching) if len(t) > 1]
    assert set(boundary) <= set(fast["mixed_columns"].tolist())
    if fast["max_order"] >= 2:
        pairs = sorted({c for t in touching if len(t) >= 2 for c in itertools.combinations(t, 2)})
        assert [tuple(s) for s in fast["orders"][1][0].tolist()] == pairs


def _shifted_regions(fast: dict) -> dict:
    """A broken gather: region r's single-region elements get region r + 1's elements."""
    offsets = fast["offsets"]
    n = len(offsets) - 1
    groups = [np.arange(offsets[(r + 1) % n], offsets[(r + 1) % n + 1]) for r in range(n)]
    pick = np.concatenate(groups)
    return {
        **fast,
        "index": fast["index"][pick],
        "shown64": fast["shown64"][pick],
        "offsets": np.concatenate([[0], np.cumsum([len(g) for g in groups])]),
    }


def _mixed_dropped(fast: dict) -> dict:
    """A broken assembly: the boundary / higher-order elements are left at the all-hidden values."""
    return {**fast, "mixed_columns": np.zeros(0, dtype=np.intp)}


@pytest.mark.parametrize(
    ("case", "mutant"),
    [
        ("tiny_llava", _shifted_regions),
        ("shapes_example", _shifted_regions),
        ("shapes_150x200", _shifted_regions),
        ("tiny_llava", _mixed_dropped),
        ("shapes_150x200", _mixed_dropped),
    ],
)
def test_the_reference_check_catches_broken_assemblies(cases, case, mutant):
    fast, labels = cases[case]
    table = tables(int(labels.max()) + 1)
    assert rel_error(fast, table) <= REL_TOL
    assert rel_error(mutant(fast), table) > 1e-4, f"{mutant.__name__} went unnoticed on {case}"
