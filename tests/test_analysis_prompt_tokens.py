"""Prompt-token attribution: joint region + word ordering on a fake model, in-place ablation on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr import CallableAdapter
from mllm_attr.analysis.prompt_tokens import (
    PROMPT_SEARCHES,
    DeleteWordsScorer,
    HFPromptScorer,
    JointObjective,
    delete_words,
    explain_prompt_tokens,
    joint_scorer,
    prompt_words,
)
from mllm_attr.segment import grid_labels


def test_prompt_words_and_deletion():
    words = prompt_words("What color is the circle?")
    assert [w.text for w in words] == ["What", "color", "is", "the", "circle"]
    assert words[4].span == (18, 24)
    assert [w.text for w in prompt_words("Is it red?", include_punctuation=True)] == ["Is", "it", "red", "?"]
    assert delete_words("What color is the circle?", words, [1, 1, 1, 1, 0]) == "What color is the?"
    assert delete_words("What color is the circle?", words, [0, 1, 1, 0, 1]) == "color is circle?"
    with pytest.raises(ValueError, match="non-empty"):
        prompt_words("  ")


def circle_adapter(image: np.ndarray) -> CallableAdapter:
    """p(answer) = visible fraction of grid cell 0 (the "circle"), x 1 if "circle" is in the prompt else x 0.1."""
    cell0 = grid_labels(*image.shape[:2], 4) == 0

    def score(images, generation, positions):
        vis = (np.all(images == image[None], axis=-1) & cell0[None]).sum(axis=(1, 2)) / cell0.sum()
        factor = 1.0 if "circle" in generation.prompt else 0.1
        return np.repeat((vis * factor)[:, None], len(positions), axis=1)

    return CallableAdapter(score, lambda img, prompt: "red", name="circle-fake", batch_size=5)


def test_joint_greedy_by_hand(rgb_image):
    adapter = circle_adapter(rgb_image)
    attr = explain_prompt_tokens(adapter, rgb_image, prompt="What color is the circle?", n_regions=4, segmenter="grid")
    n, m = attr.n_regions, attr.n_words
    assert (n, m) == (4, 5) and attr.settings["text_ablation"] == "delete"
    # Step 1: region 0 alone: ins 0.1, nec 1 -> F 1.1; the word alone: ins 0, nec 0.9 -> F 0.9.
    # Step 2: region 0 + "circle": ins 1, nec 1 -> F 2.
    assert attr.ordering[:2].tolist() == [0, n + 4]
    assert attr.rank_of_word("circle") == 1 and attr.word_rank_among_words("circle") == 0
    assert attr.region_ranks()[0] == 0
    assert attr.forwards == (n + m) * (n + m + 1)
    assert np.allclose(attr.p_full, 1.0) and np.allclose(attr.p_blank, 0.0)
    assert attr.ranking()[0]["name"] == "region 0" and attr.ranking()[1]["name"] == "word 'circle'"
    assert attr.saliency().shape == rgb_image.shape[:2] and attr.saliency()[0, 0] == 1.0
    x, y = attr.feature_insertion_curve()
    assert np.allclose(x, np.arange(n + m + 1) / (n + m)) and y[2] == pytest.approx(1.0)
    assert attr.feature_insertion_auc() > 0.8 and attr.feature_deletion_auc() < 0.15
    scores = attr.word_scores()
    assert scores.argmax() == 4
    js = attr.to_json()
    assert js["word_ranks"][4] == ("circle", 1) and "circle" in attr.table()


def test_joint_objective_evaluate(rgb_image):
    adapter = circle_adapter(rgb_image)
    gen = adapter.from_text(rgb_image, "What color is the circle?", "red")
    words = prompt_words(gen.prompt)
    scorer = joint_scorer(adapter, rgb_image, gen, [0], words, batch_size=4)
    assert isinstance(scorer, DeleteWordsScorer) and scorer.prompt_for([1, 1, 1, 1, 0]) == "What color is the?"
    obj = JointObjective(scorer, grid_labels(40, 40, 4))
    assert obj.n_regions == 9 and obj.n_image == 4 and obj.n_words == 5
    ev = obj.evaluate([[0], [8], [0, 8], []])
    assert np.allclose(ev.ins[:, 0], [0.1, 0.0, 1.0, 0.0])
    assert np.allclose(ev.dele[:, 0], [0.0, 0.1, 0.0, 1.0])
    assert np.allclose(ev.value, [1.1, 0.9, 2.0, 0.0])
    assert obj.forwards == 8


def test_ablation_option_errors(rgb_image):
    adapter = circle_adapter(rgb_image)
    gen = adapter.from_text(rgb_image, "What color?", "red")
    words = prompt_words(gen.prompt)
    with pytest.raises(ValueError, match="transformers adapter"):
        joint_scorer(adapter, rgb_image, gen, [0], words, text_ablation="mask")
    with pytest.raises(ValueError, match="unknown text_ablation"):
        joint_scorer(adapter, rgb_image, gen, [0], words, text_ablation="blank")
    with pytest.raises(TypeError, match="token id"):
        joint_scorer(adapter, rgb_image, gen, [0], words, text_ablation=1.5)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_llava():
    import torch

    from mllm_attr import load_adapter
    from mllm_attr.testing.tiny_models import build_tiny

    torch.manual_seed(0)
    return load_adapter(build_tiny("llava"))


@pytest.mark.parametrize("ablation", ["mask", "pad", "unk"])
def test_hf_in_place_ablation(tiny_llava, ablation):
    image = np.random.default_rng(1).integers(1, 255, size=(32, 32, 3), dtype=np.uint8)
    gen = tiny_llava.generate(image, "What color is the circle?", max_new_tokens=3)
    words = prompt_words(gen.prompt)
    scorer = joint_scorer(tiny_llava, image, gen, [0, 1], words, text_ablation=ablation, batch_size=3)
    assert isinstance(scorer, HFPromptScorer)
    ids = scorer.text["input_ids"][0]
    tok = tiny_llava.tokenizer
    # Each word's tokens in the model input decode to the word.
    for w in scorer.words:
        assert tok.decode(ids[list(w.token_positions)]).strip().lower() == w.text.lower()
    labels = grid_labels(32, 32, 4)
    scorer.set_regions(labels)
    regions = np.ones((3, 4), bool)
    regions[1, :2] = False
    kept = np.ones((3, len(words)), bool)
    kept[2, 4] = False
    got = scorer.score(regions, kept)
    plain = tiny_llava.scorer(image, gen, [0, 1], batch_size=2)
    plain.set_regions(labels)
    assert np.allclose(got[:2], plain.score_regions(regions[:2]), atol=1e-6)  # nothing ablated = the ordinary scorer
    assert not np.allclose(got[2], got[0], atol=1e-9)  # ablating "circle" changes the scores
    if ablation == "mask":
        deleted = joint_scorer(tiny_llava, image, gen, [0, 1], words, text_ablation="delete")
        deleted.set_regions(labels)
        assert np.allclose(got[2], deleted.score(regions[2:], kept[2:])[0], atol=2e-4)  # masking ~ deleting the word


def test_hf_joint_explanation_runs(tiny_llava):
    image = np.random.default_rng(2).integers(1, 255, size=(32, 32, 3), dtype=np.uint8)
    attr = explain_prompt_tokens(
        tiny_llava, image, prompt="Is there a star?", target=0, n_regions=4, segmenter="grid", max_new_tokens=2
    )
    n, m = attr.n_regions, attr.n_words
    assert m == 4 and attr.settings["text_ablation"] == "mask"
    assert sorted(attr.ordering.tolist()) == list(range(n + m))
    assert attr.forwards == (n + m) * (n + m + 1)
    assert [w.token_positions != () for w in attr.words] == [True] * 4


def test_other_searches_and_budget(rgb_image):
    adapter = circle_adapter(rgb_image)
    kw = {"prompt": "What color is the circle?", "n_regions": 16, "segmenter": "grid"}
    eff = explain_prompt_tokens(adapter, rgb_image, search="efficient", **kw)
    assert sorted(eff.ordering.tolist()) == list(range(21)) and eff.forwards < 21 * 22
    assert set(eff.ordering[:2].tolist()) == {0, 16 + 4}
    capped = explain_prompt_tokens(adapter, rgb_image, max_forwards=120, **kw)
    assert capped.forwards <= 120 and sorted(capped.ordering.tolist()) == list(range(21))


def test_geometry_searches_are_refused_for_prompt_words(rgb_image):
    from mllm_attr.search import SEARCHES, get_search

    assert set(PROMPT_SEARCHES) == set(SEARCHES) - {"hierarchical"}
    adapter = circle_adapter(rgb_image)
    with pytest.raises(
        ValueError,
        match=r"'hierarchical' .* prompt word.*supports "
        r"\['bidirectional', 'efficient', 'greedy', 'lazy', 'phasewin', 'scan'\]",
    ):
        explain_prompt_tokens(
            adapter, rgb_image, prompt="What color is the circle?", n_regions=4, segmenter="grid", search="hierarchical"
        )
    # The search itself refuses an objective whose features are not all image regions.
    gen = adapter.from_text(rgb_image, "What color is the circle?", "red")
    obj = JointObjective(joint_scorer(adapter, rgb_image, gen, [0], prompt_words(gen.prompt)), grid_labels(40, 40, 4))
    with pytest.raises(ValueError, match="9 features, 5 of them not image regions"):
        get_search("hierarchical")(obj)
    assert obj.forwards == 0


def word_adapter(image: np.ndarray) -> CallableAdapter:
    """p = 0.875 if "circle" is in the prompt (else 0) + 0.125 x the visible fraction of grid cell 0."""
    cell0 = grid_labels(*image.shape[:2], 4) == 0

    def score(images, generation, positions):
        vis = (np.all(images == image[None], axis=-1) & cell0[None]).sum(axis=(1, 2)) / cell0.sum()
        p = 0.875 * ("circle" in generation.prompt) + 0.125 * vis
        return np.repeat(p[:, None], len(positions), axis=1)

    return CallableAdapter(score, lambda img, prompt: "red", name="word-fake", batch_size=5)


@pytest.mark.parametrize("search", PROMPT_SEARCHES)
def test_every_accepted_search_ranks_the_decisive_word_first(rgb_image, search):
    attr = explain_prompt_tokens(
        word_adapter(rgb_image),
        rgb_image,
        prompt="What color is the circle?",
        n_regions=4,
        segmenter="grid",
        search=search,
    )
    n = attr.n_regions
    # F({"circle"}) = 0.875 (ins: no region, word kept) + 1 - 0.125 (del: all regions, word cut)
    # = 1.75; F({region 0}) = 0.125 + 1 - 0.875 = 0.25; every other feature alone: 0 + 1 - 1 = 0.
    # Every search scores all single features first, so the word leads the joint ordering.
    assert attr.ordering[0] == n + 4 and attr.rank_of_word("circle") == 0
    assert attr.word_rank_among_words("circle") == 0
    if search in ("greedy", "lazy"):
        # Step 2 from {"circle"}: + region 0 -> ins 1, del 0 -> F 2; anything else -> 1.75.
        assert attr.ordering[1] == 0
    assert sorted(attr.ordering.tolist()) == list(range(n + attr.n_words))
