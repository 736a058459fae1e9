"""Modality analysis: decomposition, labels, full path, rendering; and a measured rate on the shapes model."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr import CallableAdapter, Explainer, generation_from_text
from mllm_attr.analysis.modality import (
    MIXED,
    PERCEPTION,
    PRIOR,
    ModalityThresholds,
    analyze_modality,
    classify,
    decompose,
    evidence_prefix,
    modality_from_explanation,
    modality_from_probs,
)
from mllm_attr.types import Generation


def test_decompose_by_hand():
    gain, prior, image = decompose([0.8, 0.5, 0.2, 0.0], [0.2, 0.5, 0.4, 0.1])
    assert np.allclose(gain, [0.6, 0.0, -0.2, -0.1])
    assert np.allclose(prior, [0.25, 1.0, 1.0, 1.0])  # p_blank >= p_full, or p_full = 0 -> all prior
    assert np.allclose(image, [0.75, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="differs"):
        decompose([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        decompose([np.nan], [0.1])


@pytest.mark.parametrize(
    "p_full, p_blank, label",
    [
        (0.9, 0.1, PERCEPTION),  # gain 0.8, image share 0.89
        (0.5, 0.25, PERCEPTION),  # gain 0.25 >= 0.2, image share exactly 0.5
        (0.5, 0.45, PRIOR),  # prior share 0.9
        (0.3, 0.15, MIXED),  # image share 0.5 but gain 0.15 < 0.2; prior share 0.5 < 0.7
        (0.2, 0.9, PRIOR),  # the image lowers the probability
        (0.9, 0.6, MIXED),  # gain 0.3 but image share 0.33; prior share 0.67
    ],
)
def test_classify_default_thresholds(p_full, p_blank, label):
    assert classify(p_full, p_blank) == [label]


def test_thresholds_configurable_and_validated():
    assert classify(0.9, 0.6, ModalityThresholds(perception_share=0.3, prior_share=0.8)) == [PERCEPTION]
    assert classify(0.9, 0.6, ModalityThresholds(prior_share=0.6)) == [PRIOR]
    with pytest.raises(ValueError, match="exceed 1"):
        ModalityThresholds(perception_share=0.3, prior_share=0.6)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ModalityThresholds(min_gain=1.5)


def _fake(image: np.ndarray, floors: dict[str, float], region: np.ndarray, answer: str) -> CallableAdapter:
    """Word w: p = floor_w + (1 - floor_w) * visible fraction of ``region`` (w not in floors: constant 0.8)."""

    def score(images, generation, positions):
        visible = np.all(images == image[None], axis=-1)
        frac = (visible & region[None]).sum(axis=(1, 2)) / region.sum()
        out = np.empty((len(images), len(positions)))
        for j, p in enumerate(positions):
            word = generation.tokens[p].strip()
            out[:, j] = floors[word] + (1 - floors[word]) * frac if word in floors else 0.8
        return out

    return CallableAdapter(score, lambda img, prompt: answer, name="fake-modality", batch_size=8)


@pytest.fixture
def scene(rgb_image):
    region = np.zeros((40, 40), bool)
    region[:20, :20] = True  # grid cell 0 of a 2x2 grid
    return rgb_image, region


def test_cheap_path_two_forwards_and_labels(scene):
    image, region = scene
    adapter = _fake(image, {"red": 0.05, "circle": 0.6}, region, "the red circle")
    report = analyze_modality(adapter, image, prompt="q")
    assert report.forwards == 2 and report.source == "probabilities"
    rows = {r.text.strip(): r for r in report.tokens}
    assert rows["red"].p_full == pytest.approx(1.0) and rows["red"].p_blank == pytest.approx(0.05)
    assert rows["red"].label == PERCEPTION
    assert rows["the"].label == PRIOR and rows["the"].gain == pytest.approx(0.0)
    assert rows["circle"].prior_share == pytest.approx(0.6) and rows["circle"].label == MIXED
    assert report.counts() == {PERCEPTION: 1, MIXED: 1, PRIOR: 1}
    # A word target analyses only that word.
    only = analyze_modality(adapter, image, report.generation, target="red")
    assert [r.text.strip() for r in only.tokens] == ["red"]


def test_counterfactual_answer(scene):
    image, region = scene
    adapter = _fake(image, {"blue": 0.9}, region, "red")
    from mllm_attr import Answer

    report = analyze_modality(adapter, image, prompt="q", target=Answer("blue"))
    assert report.generation.counterfactual and report.tokens[0].label == PRIOR


def test_full_path_reliance_and_evidence(scene):
    image, region = scene
    adapter = _fake(image, {"red": 0.0, "circle": 0.7}, region, "red circle")
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(image, prompt="q", target="all")
    report = modality_from_explanation(expl)
    assert report.source == "explanation" and report.forwards == 0
    red, circle = report.tokens
    # Cell 0 (one quarter of the image) carries all the evidence, and greedy puts it first.
    assert expl.ordering[0] == 0
    assert red.evidence_regions == (0,) and red.evidence_area == pytest.approx(0.25)
    x, y = expl.insertion_curve(0)
    assert red.insertion_auc == pytest.approx(np.trapezoid(y, x))
    assert red.curve_min == pytest.approx(0.0)
    assert red.visual_reliance == pytest.approx(red.insertion_auc - 0.0)
    assert red.label == PERCEPTION and circle.label == PRIOR
    assert circle.visual_reliance == pytest.approx(circle.insertion_auc - 0.7)
    assert red.deletion_auc == pytest.approx(expl.deletion_auc(0))


def test_evidence_prefix():
    assert evidence_prefix(np.array([0.2, 0.95, 1.0]), 1.0, 0.0, 0.9) == 2
    assert evidence_prefix(np.array([0.5, 0.5]), 0.5, 0.6) is None


def test_words_merge_subtokens_and_rendering():
    gen = Generation(
        prompt="q",
        token_ids=(1, 2, 3, 4),
        tokens=("a", " cir", "cle", " <b>"),
        spans=((0, 1), (1, 5), (5, 8), (8, 12)),
        text="a circle <b>",
        probs=(0.9, 0.5, 0.9, 0.1),
        special=(False, False, False, False),
    )
    report = modality_from_probs(gen, [0, 1, 2, 3], [0.9, 0.5, 0.9, 0.2], [0.9, 0.05, 0.9, 0.05])
    words = report.words()
    circle = [w for w in words if w.text == "circle"][0]
    assert circle.positions == (1, 2)
    assert circle.p_full == pytest.approx(0.45) and circle.p_blank == pytest.approx(0.045)
    assert circle.label == PERCEPTION
    ansi = report.ansi()
    assert "\x1b[32mcir\x1b[0m" in ansi and "\x1b[31ma\x1b[0m" in ansi
    html = report.html()
    assert "&lt;b&gt;" in html
    assert 'class="mllm-attr-perception"' in html and 'class="mllm-attr-prior"' in html
    assert "<b>" not in html  # escaped
    table = report.table()
    assert "perception-driven" in table and "p_blank" in table
    assert "circle" in report.table(words=True)
    js = report.to_json()
    assert js["counts"] == {PERCEPTION: 1, MIXED: 1, PRIOR: 2} and len(js["tokens"]) == 4


def test_errors(scene):
    image, region = scene
    adapter = _fake(image, {}, region, "x")
    with pytest.raises(ValueError, match="prompt"):
        analyze_modality(adapter, image)
    with pytest.raises(TypeError, match="ModelAdapter"):
        analyze_modality(object(), image, prompt="q")  # type: ignore[arg-type]
    gen = generation_from_text("q", "a b")
    with pytest.raises(ValueError, match="one p_full"):
        modality_from_probs(gen, [0, 1], [0.1], [0.1, 0.2])


def test_reference_images_prior():
    """p("yes") = mean red level of the image: black gives 0, the references 0.5 and 0.7 on average."""
    image = np.full((8, 8, 3), 204, np.uint8)  # red level 0.8

    def score(images, generation, positions):
        return np.repeat((images[..., 0].mean(axis=(1, 2)) / 255.0)[:, None], len(positions), axis=1)

    adapter = CallableAdapter(score, lambda img, prompt: "yes")
    refs = [np.full((8, 8, 3), 102, np.uint8), np.full((16, 16, 3), 204, np.uint8)]  # 0.4 and 0.8 (resized)
    blank = analyze_modality(adapter, image, prompt="q")
    marg = analyze_modality(adapter, image, prompt="q", reference_images=refs)
    assert blank.tokens[0].p_prior == blank.tokens[0].p_blank == 0 and blank.tokens[0].label == PERCEPTION
    t = marg.tokens[0]
    assert t.p_blank == 0 and t.p_prior == pytest.approx(0.6) and t.prior_share == pytest.approx(0.75)
    assert t.label == PRIOR and marg.prior_source == "references" and marg.forwards == 4
    assert "p_prior" in marg.table()
    with pytest.raises(ValueError, match="empty"):
        analyze_modality(adapter, image, prompt="q", reference_images=[])


def test_grounded_decomposition_by_hand(rgb_image):
    from mllm_attr.analysis.modality import grounded_modality

    cells = {
        "circle": (slice(0, 20), slice(0, 20)),
        "cross": (slice(0, 20), slice(20, 40)),
        "star": (slice(20, 40), slice(20, 40)),
    }
    masks = {}
    for name, (ys, xs) in cells.items():
        m = np.zeros((40, 40), bool)
        m[ys, xs] = True
        masks[name] = m

    def vis(images, name):
        return (np.all(images == rgb_image[None], axis=-1) & masks[name][None]).sum(axis=(1, 2)) / masks[name].sum()

    def score(images, generation, positions):
        out = np.empty((len(images), len(positions)))
        for j, p in enumerate(positions):
            word = generation.tokens[p].strip()
            if word == "circle":
                out[:, j] = 0.1 + 0.8 * vis(images, "circle")  # its own pixels
            elif word == "diamond":
                out[:, j] = 0.05 + 0.9 * vis(images, "star")  # absent; triggered by the star
            else:
                out[:, j] = 0.9  # the text alone
        return out

    adapter = CallableAdapter(score, lambda img, prompt: "circle diamond cross")
    gen = adapter.generate(rgb_image, "q")
    rows, forwards = grounded_modality(adapter, rgb_image, gen, [[0], [1], [2]], ["circle", "diamond", "cross"], masks)
    assert forwards == 2 + 3
    circle, diamond, cross = rows
    assert (
        circle.present and circle.object_share == pytest.approx(0.8 / 0.9) and circle.context_share == pytest.approx(0)
    )
    assert circle.label == PERCEPTION and circle.prior_kind is None and circle.evidence_object == "circle"
    assert not diamond.present and diamond.p_without_object == pytest.approx(0.95) and diamond.object_share == 0
    assert diamond.language_share == pytest.approx(0.05 / 0.95) and diamond.context_share == pytest.approx(0.9 / 0.95)
    assert diamond.label == PRIOR and diamond.prior_kind == "co-occurrence" and diamond.evidence_object == "star"
    assert diamond.drops["star"] == pytest.approx(0.9)
    assert cross.label == PRIOR and cross.prior_kind == "language" and cross.evidence_object is None
    with pytest.raises(ValueError, match="one category per word"):
        grounded_modality(adapter, rgb_image, gen, [[0]], [], masks)
    with pytest.raises(ValueError, match="shape"):
        grounded_modality(adapter, rgb_image, gen, [[0]], ["circle"], {"circle": np.zeros((3, 3), bool)})
