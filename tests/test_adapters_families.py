"""Every family on a tiny random model of its real class: the adapter contract and the fast path."""

import numpy as np
import pytest
import torch

from mllm_attr import Explainer, load_adapter
from mllm_attr.adapters.hf import HFScorer
from mllm_attr.segment import segment
from mllm_attr.testing.tiny_models import FAMILIES, build_tiny

#: Fast-path tolerance: the largest |p_fast - p_slow| over random region subsets, as a share of
#: the spread (max - min) of the processor path's own scores on those subsets. Random tiny
#: models give probabilities of ~0.004 that vary by ~1e-4 between images, so an absolute
#: tolerance would pass anything; measured: exact path <= 0.007 of the spread (idefics3's
#: junction elements), mutants >= 0.097 (see test_fast_path_test_catches_mutants).
FAST_REL_TOL = 0.02


def fast_vs_slow(adapter, image, gen, positions, labels, table, mutate=None) -> float:
    """max |p_fast - p_slow| over ``table``'s subsets, relative to the slow path's spread.

    ``mutate(fast_pixels) -> fast_pixels`` replaces the assembly AFTER the fast path was set up
    and probed (a deliberately broken fast path, to prove that this check catches it)."""
    slow = adapter.scorer(image, gen, positions, batch_size=8, fast_path=False)
    slow.set_regions(labels)
    fast = adapter.scorer(image, gen, positions, batch_size=8, fast_path=True)
    fast.set_regions(labels)
    assert fast.fast_report["used"], fast.fast_report
    expected = slow.score_regions(table)
    spread = expected.max(axis=0) - expected.min(axis=0)
    assert (spread > 0).all(), "the subsets must move the model's probabilities"
    if mutate is not None:
        fast._fast_pixels = mutate(HFScorer._fast_pixels)  # instance attribute shadows the static method
    got = fast.score_regions(table)
    return float((np.abs(got - expected).max(axis=0) / spread).max())


def _subsets(n: int, rows: int = 16) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.random((rows, n)) < rng.random((rows, 1))  # subsets of every size


#: Broken fast paths the check must catch: the contribution table shifted by one region, and
#: the candidate's subset ignored (every row assembled as the full image).
MUTANTS = {
    "shifted_by_one_region": lambda assemble: lambda fast, table: assemble(fast, np.roll(table, 1, axis=1)),
    "subset_ignored": lambda assemble: lambda fast, table: assemble(fast, np.ones_like(table)),
}


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    img = rng.integers(1, 255, size=(60, 72, 3), dtype=np.uint8)
    img[10:40, 20:50] = (30, 200, 40)
    return img


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request):
    torch.manual_seed(0)
    return load_adapter(build_tiny(request.param))


def test_family_detected(adapter):
    assert adapter.family == adapter.model.config.model_type


def test_contract(adapter, image):
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=4)
    positions = list(range(len(gen)))
    seg = segment(image, 12, "slic")
    slow = adapter.scorer(image, gen, positions, batch_size=4, fast_path=False)
    slow.set_regions(seg.labels)
    # full image reproduces generation-time probabilities
    assert np.allclose(slow.score_images(image[None])[0], gen.probs, atol=1e-5)
    table = np.random.default_rng(1).random((6, seg.n_regions)) < 0.5
    batched = slow.score_regions(table)
    single = np.concatenate([slow.score_regions(t[None]) for t in table])
    assert np.allclose(batched, single, atol=1e-5)
    fast = adapter.scorer(image, gen, positions, batch_size=4, fast_path=True)
    fast.set_regions(seg.labels)
    assert fast.fast_report["used"], fast.fast_report
    # region subsets that are all or nothing are exact on the fast path too
    ends = np.stack([np.ones(seg.n_regions, bool), np.zeros(seg.n_regions, bool)])
    assert np.allclose(fast.score_regions(ends), slow.score_regions(ends), atol=1e-5)


def test_fast_path_matches_processor_path(adapter, image):
    """The 60x72 image is resampled by every family's processor (none takes that size as is)."""
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=3)
    seg = segment(image, 12, "slic")
    err = fast_vs_slow(adapter, image, gen, list(range(len(gen))), seg.labels, _subsets(seg.n_regions))
    assert err <= FAST_REL_TOL


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_fast_path_test_catches_mutants(adapter, image, mutant):
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=3)
    seg = segment(image, 12, "slic")
    err = fast_vs_slow(adapter, image, gen, list(range(len(gen))), seg.labels, _subsets(seg.n_regions), MUTANTS[mutant])
    assert err > 2 * FAST_REL_TOL, f"a {mutant} fast path went unnoticed (error {err:.3g} of the spread)"


def test_probe_refuses_a_broken_fast_path(adapter, image, monkeypatch):
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=3)
    seg = segment(image, 12, "slic")
    monkeypatch.setattr(HFScorer, "_fast_pixels", staticmethod(MUTANTS["shifted_by_one_region"](HFScorer._fast_pixels)))
    auto = adapter.scorer(image, gen, [0], batch_size=8, fast_path="auto")
    auto.set_regions(seg.labels)
    assert not auto.fast_report["used"] and auto.fast_report["reason"].startswith("probe:"), auto.fast_report
    with pytest.raises(ValueError, match="fast path requested but unavailable: probe"):
        adapter.scorer(image, gen, [0], batch_size=8, fast_path=True).set_regions(seg.labels)


def test_explain_runs_on_fast_path(adapter, image):
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=3)
    expl = Explainer(adapter, n_regions=6, batch_size=16)(image, gen, target=0)
    assert expl.forwards == expl.n_regions * (expl.n_regions + 1)
    assert expl.saliency().shape == image.shape[:2]


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    from mllm_attr.testing.tiny_models import save_tiny

    return save_tiny("llava", tmp_path_factory.mktemp("llava"))


@pytest.mark.parametrize(
    "kwargs",
    [{"load_in_8bit": True}, {"load_in_4bit": True}, {"device_map": "auto"}, {"dtype": "bfloat16"}],
    ids=["8bit", "4bit", "device_map_auto", "bf16"],
)
def test_loading_options(kwargs, llava_dir, image):
    if any(k.startswith("load_in") for k in kwargs):
        pytest.importorskip("bitsandbytes")
    ref = load_adapter(llava_dir, dtype="float32")
    gen = ref.generate(image, "Describe the image.", max_new_tokens=3)
    ad = load_adapter(llava_dir, **kwargs)
    try:
        p = ad.scorer(image, gen, [0], batch_size=2).score_images(image[None])[0, 0]
    except RuntimeError as exc:
        # bitsandbytes' CPU 4-bit kernel needs matrix sizes larger than the tiny test model's.
        if kwargs.get("load_in_4bit") and "invalid for input of size" in str(exc):
            pytest.skip(f"bitsandbytes CPU 4-bit kernel rejects tiny matrices: {exc}")
        raise
    assert 0.0 < p < 1.0 and np.isfinite(p)
    if "dtype" in kwargs:
        assert ad.dtype == torch.bfloat16
    else:
        assert p == pytest.approx(gen.probs[0], abs=0.05)


def test_conflicting_quantisation(llava_dir):
    with pytest.raises(ValueError, match="at most one"):
        load_adapter(llava_dir, load_in_4bit=True, load_in_8bit=True)
