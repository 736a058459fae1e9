"""The analyses on the trained shapes-world model: each finds what it claims (measured rates).

The shapes world has a deliberate co-occurrence bias (:data:`mllm_attr.data.shapes.CO_OCCURRENCE_BIAS`:
in training a star almost always comes with a diamond, and captions list the star first). On
held-out scenes that show the anchor (star) WITHOUT its partner (diamond), the model sometimes
names the partner anyway. Measured on the shipped model (anchor-only scenes 0..599, seed 7):

* captions, blank prior: object words present in the image are perception-driven in
  1388/1388; hallucinated partner words are prior-driven in 34/34 (the text "... a star and a"
  carries them), while other hallucinated object words are perception-driven in 52/52
  (misperceptions of what is there);
* existence questions: "yes" for a present object is perception-driven in 561/575; "yes" for
  the absent partner (23/600) is, grounded, a co-occurrence prior in 23/23, its evidence on the
  star in 16/23.

The fast tests use a few scenes (a handful picked where the model hallucinates the partner);
the ``slow`` ones re-measure the rates.
"""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr.data import shapes as S

BIAS = S.CO_OCCURRENCE_BIAS


def _model_path():
    from mllm_attr.assets import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError:
        return None


pytestmark = pytest.mark.skipif(_model_path() is None, reason="the shapes-llava model is not in mllm_attr/assets")


@pytest.fixture(scope="module")
def adapter():
    import torch

    from mllm_attr import load_adapter

    torch.set_num_threads(1)
    return load_adapter(str(_model_path()))


def reference_images(n: int = 16) -> np.ndarray:
    """Unrelated held-out scenes (val split): the reference set of the marginal prior."""
    return np.stack([S.make_scene(S.scene_rng(99, "val", i), split="val").image for i in range(n)])


def object_masks(scene) -> dict[str, np.ndarray]:
    """Category -> union of the visible masks of that category's objects (the ground truth)."""
    out: dict[str, np.ndarray] = {}
    for o in scene.objects:
        out[o.shape] = out.get(o.shape, np.zeros(scene.size, bool)) | o.mask
    return out


def anchor_scene(i: int, seed: int = 7):
    """Held-out scene with the bias anchor (star) and WITHOUT its partner (diamond)."""
    return S.make_scene(
        S.scene_rng(seed, "probe-anchor", i), split="test", require=[BIAS.anchor], exclude=[BIAS.partner]
    )


# --------------------------------------------------------------------------- measurements

#: Anchor-only scenes where the shipped model names the partner in its caption / says "yes" to it.
CAPTION_PARTNER_SCENES = (82, 84, 120, 128)
YES_PARTNER_SCENES = (4, 6, 65, 82)


def rate(rows, pred) -> float:
    return float(np.mean([bool(pred(r)) for r in rows])) if rows else float("nan")


def share(labels, value: str = "perception-driven") -> float:
    return float(np.mean([lab == value for lab in labels])) if labels else float("nan")


def measure_yes_no(adapter, indices, seed: int = 7) -> dict:
    """Existence questions on anchor-only scenes, grounded decomposition of the "yes" token.

    For the ABSENT partner (a co-occurrence hallucination when answered "yes") and for a
    PRESENT object: label, prior kind and the object whose removal lowers p("yes") most.
    """
    from mllm_attr.analysis.modality import grounded_modality
    from mllm_attr.analysis.yes_no import answer_position, parse_yes_no

    out: dict = {"partner_asked": 0, "partner_yes": [], "present_yes": []}
    for i in indices:
        scene = anchor_scene(i, seed)
        masks = object_masks(scene)
        for shape, key in ((BIAS.partner, "partner_yes"), (scene.objects[0].shape, "present_yes")):
            gen = adapter.generate(scene.image, S.exist_question(shape), max_new_tokens=3)
            out["partner_asked"] += key == "partner_yes"
            if parse_yes_no(gen.text) != "yes":
                continue
            rows, _ = grounded_modality(adapter, scene.image, gen, [[answer_position(gen)]], [shape], masks)
            out[key].append(rows[0])
    return out


def measure_captions(adapter, indices, refs: np.ndarray | None = None, seed: int = 7) -> dict:
    """Captions of anchor-only scenes; every object word labelled with the blank prior, the
    reference-image prior (when ``refs``) and grounded; split into present / partner / other."""
    from mllm_attr.analysis.captions import caption_hallucinations
    from mllm_attr.analysis.modality import _row

    out: dict = {k: {"blank": [], "reference": [], "grounded": []} for k in ("present", "partner", "other")}
    for i in indices:
        scene = anchor_scene(i, seed)
        d = caption_hallucinations(
            adapter, scene.image, None, vocabulary="shapes", object_masks=object_masks(scene), reference_images=refs
        )
        for m in d.mentions:
            key = "present" if m.present else ("partner" if m.category == BIAS.partner else "other")
            md = m.modality
            out[key]["blank"].append(_row(md.positions, md.text, md.p_full, md.p_blank, d.thresholds).label)
            if refs is not None:
                out[key]["reference"].append(md.label)
            out[key]["grounded"].append(m.grounded)
    return out


# --------------------------------------------------------------------------- modality


def test_caption_present_words_perception_partner_words_prior(adapter):
    m = measure_captions(adapter, tuple(range(8)) + CAPTION_PARTNER_SCENES, reference_images(8))
    present, partner = m["present"], m["partner"]
    assert len(present["blank"]) >= 20 and len(partner["blank"]) >= 3
    assert share(present["blank"]) >= 0.9 and share(present["reference"]) >= 0.7
    assert share(partner["blank"], "prior-driven") >= 0.75
    assert all(g.label == "prior-driven" for g in partner["grounded"])  # no own pixels


@pytest.mark.slow
def test_caption_modality_measured_rates(adapter):
    """300 anchor-only scenes: present words vs hallucinated partner words vs other hallucinations."""
    m = measure_captions(adapter, range(300))
    present, partner, other = m["present"], m["partner"], m["other"]
    assert len(present["blank"]) >= 300 and len(partner["blank"]) >= 8
    assert share(present["blank"]) >= 0.95
    assert share(partner["blank"], "prior-driven") >= 0.8
    # Other hallucinations are misperceptions: raised by the image, not by the text.
    assert share(other["blank"]) >= 0.6
    assert rate(partner["grounded"], lambda g: g.prior_kind == "language") >= 0.8


def test_yes_no_present_perception_partner_co_occurrence(adapter):
    m = measure_yes_no(adapter, tuple(range(12)) + YES_PARTNER_SCENES)
    assert len(m["present_yes"]) >= 12 and len(m["partner_yes"]) >= 2
    assert rate(m["present_yes"], lambda r: r.label == "perception-driven") >= 0.85
    assert all(r.label == "prior-driven" for r in m["partner_yes"])
    assert rate(m["partner_yes"], lambda r: r.prior_kind == "co-occurrence") >= 0.5


@pytest.mark.slow
def test_yes_no_measured_rates(adapter):
    m = measure_yes_no(adapter, range(600))
    assert len(m["present_yes"]) >= 500 and len(m["partner_yes"]) >= 10
    assert rate(m["present_yes"], lambda r: r.label == "perception-driven") >= 0.9
    assert rate(m["partner_yes"], lambda r: r.prior_kind == "co-occurrence") >= 0.8
    assert rate(m["partner_yes"], lambda r: r.evidence_object == BIAS.anchor) >= 0.5


def test_colour_answers_are_perception_driven(adapter):
    from mllm_attr.analysis.modality import analyze_modality

    labels = []
    for i in range(16):
        scene = S.make_scene(S.scene_rng(8, "test", i), split="test")
        obj = scene.objects[0]
        gen = adapter.generate(scene.image, S.color_question(obj.shape), max_new_tokens=3)
        if S.parse_answer_word(gen.text, S.COLOR_NAMES) == obj.color:
            labels.append(analyze_modality(adapter, scene.image, gen, target=0).tokens[0].label)
    assert len(labels) >= 12
    assert share(labels) >= 0.9


# --------------------------------------------------------------------------- prompt tokens


def measure_prompt_tokens(adapter, indices, shape: str | None = None, seed: int = 11) -> list[tuple[int, int, int]]:
    """``(word rank among prompt words, word rank among all features, object-region rank)``
    for "What color is the <shape>?" answered correctly; 16 SLIC regions + 4 words, exact greedy."""
    from mllm_attr.analysis.prompt_tokens import explain_prompt_tokens

    out = []
    for i in indices:
        kw = {"require": [shape]} if shape else {}
        scene = S.make_scene(S.scene_rng(seed, "test", i), split="test", min_objects=2, max_objects=4, **kw)
        obj = scene.find(shape) if shape else scene.objects[0]
        gen = adapter.generate(scene.image, S.color_question(obj.shape), max_new_tokens=3)
        if S.parse_answer_word(gen.text, S.COLOR_NAMES) != obj.color:
            continue
        attr = explain_prompt_tokens(adapter, scene.image, gen, target=0, n_regions=16, batch_size=64)
        region = int(np.argmax(np.bincount(attr.labels[obj.mask], minlength=attr.n_regions)))
        out.append(
            (attr.word_rank_among_words(obj.shape), attr.rank_of_word(obj.shape), int(attr.region_ranks()[region]))
        )
    return out


def test_prompt_tokens_circle_question(adapter):
    """ "What color is the circle?": the word "circle" and the circle's region rank high."""
    rows = np.array(measure_prompt_tokens(adapter, range(4), shape="circle"))
    assert len(rows) >= 3
    assert np.all(rows[:, 0] == 0)  # "circle" is the most important prompt word
    assert np.mean(rows[:, 1] <= 2) >= 0.6  # ... and among the top 3 of all 20 features
    assert np.mean(rows[:, 2] <= 1) >= 0.6  # the circle's region is in the top 2


@pytest.mark.slow
def test_prompt_tokens_measured_rates(adapter):
    circle = np.array(measure_prompt_tokens(adapter, range(30), shape="circle"))
    assert len(circle) >= 25
    assert np.mean(circle[:, 0] == 0) >= 0.9 and np.mean(circle[:, 2] <= 1) >= 0.8
    anyshape = np.array(measure_prompt_tokens(adapter, range(30)))
    assert np.mean(anyshape[:, 0] == 0) >= 0.75 and np.mean(anyshape[:, 2] <= 1) >= 0.9


# --------------------------------------------------------------------------- hallucination


def run_pope(adapter, tmp_path, n_images: int, limit: int | None) -> tuple[dict, list]:
    import json

    from mllm_attr import Explainer
    from mllm_attr.evaluation.pope import diagnose_pope

    paths = S.write_dataset(tmp_path / "shapes", n_images=n_images, seed=3, split="test")
    explainer = Explainer(adapter, n_regions=16, segmenter="slic", batch_size=64)
    out = tmp_path / "pope.jsonl"
    summary = diagnose_pope(
        adapter, paths["pope_adversarial"], out, image_dir=paths["images"], limit=limit, explainer=explainer
    )
    return summary, [json.loads(x) for x in out.read_text().splitlines()]


def test_pope_diagnosis_on_the_shapes_model(adapter, tmp_path):
    summary, recs = run_pope(adapter, tmp_path, 12, 40)
    assert summary["n"] == len(recs) == 40
    assert summary["accuracy"] >= 0.8
    assert summary["csr_denominator"] == summary["n_wrong"]
    for r in recs:
        if not r["correct"]:
            assert 0 < r["amcr"] <= 1 and r["generate_calls"] >= 2 and r["correct_explanation"]["counterfactual"]


def test_hallucinated_partner_is_corrected_by_removing_the_anchor(adapter):
    """A "yes" to the absent partner: removing the least important regions of the "no"
    explanation takes the star away first, and the regenerated answer becomes "no"."""
    from mllm_attr import Explainer
    from mllm_attr.analysis.yes_no import diagnose_yes_no

    explainer = Explainer(adapter, n_regions=16, segmenter="slic", batch_size=64)
    covered = []
    for i in YES_PARTNER_SCENES:
        scene = anchor_scene(i)
        d = diagnose_yes_no(adapter, scene.image, S.exist_question(BIAS.partner), "no", explainer=explainer)
        if d.correct:
            continue
        assert d.removal.corrected and d.amcr <= 0.5
        removed = np.isin(d.correct_explanation.labels, d.removal.removed_regions)
        star = scene.find(BIAS.anchor).mask
        covered.append((removed & star).sum() / star.sum())
    assert len(covered) >= 3
    assert np.mean(np.array(covered) >= 0.5) >= 0.5


@pytest.mark.slow
def test_pope_diagnosis_measured(adapter, tmp_path):
    summary, _ = run_pope(adapter, tmp_path, 60, None)
    assert summary["n_wrong"] >= 5
    assert summary["n_corrected"] >= 0.6 * summary["n_wrong"]
