"""Scores are a float64 softmax of the kept logits; exact ties go to the lowest region id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mllm_attr import load_adapter
from mllm_attr.objective import Objective
from mllm_attr.search import greedy
from mllm_attr.testing.tiny_models import build_tiny


@pytest.fixture(scope="module")
def adapter():
    torch.manual_seed(0)
    return load_adapter(build_tiny("llava"))


def test_probabilities_are_a_float64_softmax_of_the_kept_logits(adapter, monkeypatch):
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, size=(40, 48, 3), dtype=np.uint8)
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=4)
    positions = list(range(len(gen)))
    scorer = adapter.scorer(image, gen, positions, batch_size=2, fast_path=False)
    captured = {}
    forward = adapter.model.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        captured["logits"] = out.logits.detach().clone()
        return out

    monkeypatch.setattr(adapter.model, "forward", spy)
    got = scorer.score_images(image[None])[0]
    logits = captured["logits"][0]
    assert logits.shape[0] == len(positions), "logits are kept at the explained positions only"
    ref = torch.log_softmax(logits.double(), dim=-1)[torch.arange(len(positions)), scorer.target_ids].exp().numpy()
    # float64 all the way: a float32 softmax differs from this by ~1e-8 relative
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)
    f32 = (
        torch.log_softmax(logits.float(), dim=-1)[torch.arange(len(positions)), scorer.target_ids]
        .exp()
        .double()
        .numpy()
    )
    assert np.abs(f32 - ref).max() > 0, "the check above would not tell float32 from float64"


class _TiedScorer:
    """Every region alone gives the same score: greedy must take region ids in ascending order."""

    def __init__(self, n: int):
        self.positions = (0,)
        self.batch_size = 64
        self.forwards = 0
        self.image = None
        self.n = n

    def set_regions(self, labels):
        self.labels = labels

    def score_regions(self, table):
        self.forwards += len(table)
        return table.mean(axis=1, keepdims=True).astype(np.float64)


def test_exact_ties_go_to_the_lowest_region_id():
    labels = np.repeat(np.arange(6), 4).reshape(4, 6).T.copy()  # 6 regions of equal size
    result = greedy(Objective(_TiedScorer(6), labels))
    assert result.ordering.tolist() == [0, 1, 2, 3, 4, 5]
