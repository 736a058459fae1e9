"""One name per thing: the fill of hidden regions is ``fill`` everywhere (API, config, CLI);
``baseline`` names the comparison methods. The old spellings still work, with a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mllm_attr import Explainer, Positions
from mllm_attr.adapters.base import ModelAdapter
from mllm_attr.explainer import make_scorer
from mllm_attr.mask import FILLS, make_baseline, make_fill, resolve_fill
from mllm_attr.protocol import score_map
from mllm_attr.testing.fake import make_fake_adapter


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    adapter = make_fake_adapter(image, {"red": rng.random((24, 24))}, answer="a red box")
    return image, adapter


def test_explainer_takes_fill_and_the_old_keyword_with_a_warning(scene):
    image, adapter = scene
    assert Explainer(adapter, fill="blur").settings()["fill"] == "blur"
    with pytest.warns(DeprecationWarning, match="baseline= is now fill="):
        ex = Explainer(adapter, baseline="mean")
    assert ex.fill == "mean" and ex.settings()["fill"] == "mean"
    with pytest.raises(ValueError, match="pass fill= only"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        Explainer(adapter, fill="blur", baseline="mean")
    with pytest.raises(ValueError, match="unknown fill 'white'"):
        Explainer(adapter, fill="white")


def test_old_and_new_spellings_give_the_same_numbers(scene):
    image, adapter = scene
    gen = adapter.generate(image, "q")
    labels = np.repeat(np.arange(4), 144).reshape(24, 24)
    sal = np.linspace(0, 1, 576).reshape(24, 24)
    new = score_map(adapter, image, gen, [1], sal, labels=labels, fill="mean")
    with pytest.warns(DeprecationWarning):
        old = score_map(adapter, image, gen, [1], sal, labels=labels, baseline="mean")
    assert np.array_equal(new.ins, old.ins) and np.array_equal(new.dele, old.dele)
    assert new.settings["fill"] == "mean"
    with pytest.warns(DeprecationWarning, match="make_fill"):
        assert np.array_equal(make_baseline(image, "blur"), make_fill(image, "blur"))
    assert FILLS == ("black", "blur", "mean")
    assert resolve_fill("blur") == "blur"


class _OldStyleAdapter(ModelAdapter):
    """A custom adapter written against the pre-rename contract: ``scorer(..., baseline=)``."""

    def __init__(self, inner):
        self.inner = inner

    def generate(self, image, prompt, *, max_new_tokens=64):
        return self.inner.generate(image, prompt, max_new_tokens=max_new_tokens)

    def teacher_force(self, image, prompt, answer, *, generated_text=None):
        return self.inner.teacher_force(image, prompt, answer, generated_text=generated_text)

    def scorer(self, image, generation, positions, *, baseline=None, batch_size=None):
        self.got = baseline
        return self.inner.scorer(image, generation, positions, fill=baseline, batch_size=batch_size)

    def describe(self):
        return self.inner.describe()


def test_adapters_written_before_the_rename_still_get_the_fill(scene):
    image, adapter = scene
    old = _OldStyleAdapter(adapter)
    gen = old.generate(image, "q")
    fill = make_fill(image, "mean")
    scorer = make_scorer(old, image, gen, [1], fill=fill, batch_size=4)
    assert old.got is fill and scorer.fill is fill
    with pytest.warns(DeprecationWarning, match="Scorer.baseline is now Scorer.fill"):
        assert scorer.baseline is fill
    expl = Explainer(old, n_regions=4, segmenter="grid")(image, gen, target=Positions((1,)))
    assert expl.n_regions == 4
