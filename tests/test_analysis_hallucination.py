"""Hallucination diagnosis: AMCR / CSR by hand on a fake model, POPE runs (resume), captions, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from mllm_attr import CallableAdapter, Explainer, generation_from_text
from mllm_attr.analysis.captions import caption_hallucinations, chair, find_object_mentions
from mllm_attr.analysis.modality import PERCEPTION, PRIOR
from mllm_attr.analysis.yes_no import (
    answer_position,
    cased_like,
    diagnose_yes_no,
    minimal_correcting_removal,
    parse_yes_no,
)
from mllm_attr.cli.diagnose import add_subcommand
from mllm_attr.evaluation.pope import diagnose_pope, summary_path_for
from mllm_attr.evaluation.pope import summarize_pope as summarize
from mllm_attr.segment import grid_labels
from mllm_attr.types import Generation

H = W = 40
LABELS16 = grid_labels(H, W, 16)  # 4x4 grid, cells of 10x10 pixels = 1/16 of the image each


def test_parsing_helpers():
    assert parse_yes_no("Yes, there is.") == "yes"
    assert parse_yes_no("no") == "no"
    assert parse_yes_no("I think so") is None
    assert parse_yes_no("nope yes") == "yes"
    assert cased_like("no", "Yes") == "No" and cased_like("no", " yes") == "no" and cased_like("yes", "NO") == "YES"
    gen = Generation(
        "q", (1, 2, 3), ("</s>", "Well", " yes"), ((0, 0), (0, 4), (4, 8)), "Well yes", (1, 1, 1), (True, False, False)
    )
    assert answer_position(gen) == 2
    assert answer_position(generation_from_text("q", "maybe later")) == 0


def distractor_adapter(image: np.ndarray, cell: int = 5, stubborn: bool = False) -> CallableAdapter:
    """A model that hallucinates: it says "Yes" while grid cell ``cell`` is visible.

    p("Yes") = visible fraction of the cell; p("No") = 1 - that. ``stubborn``: always "Yes".
    """
    region = cell == LABELS16

    def vis(img: np.ndarray) -> float:
        return float((np.all(img == image, axis=-1) & region).sum() / region.sum())

    def score(images, generation, positions):
        out = np.empty((len(images), len(positions)))
        for b, img in enumerate(images):
            v = vis(img)
            for j, p in enumerate(positions):
                out[b, j] = v if generation.tokens[p].strip().lower() == "yes" else 1 - v
        return out

    def generate(img, prompt):
        return "Yes" if stubborn or vis(img) > 0.5 else "No"

    return CallableAdapter(score, generate, name="distractor", batch_size=16)


@pytest.fixture
def explainer_for():
    return lambda adapter: Explainer(adapter, n_regions=16, segmenter="grid")


@pytest.mark.parametrize("schedule, calls", [("incremental", 1), ("bisection", 2)])
def test_amcr_by_hand(rgb_image, explainer_for, schedule, calls):
    adapter = distractor_adapter(rgb_image, cell=5)
    d = diagnose_yes_no(
        adapter, rgb_image, "Is there a cat?", "no", explainer=explainer_for(adapter), schedule=schedule
    )
    assert d.predicted == "yes" and not d.correct
    # The "No" explanation ranks the distractor cell LAST; removing it first corrects the answer.
    assert d.correct_explanation.generation.text == "No"  # cased like the model's "Yes"
    assert d.correct_explanation.ordering[-1] == 5
    assert d.wrong_explanation.ordering[0] == 5  # the evidence of the wrong "Yes" is the distractor
    assert d.amcr == pytest.approx(1 / 16)
    assert d.removal.corrected and d.removal.removed_regions == [5] and d.removal.answer_after == "No"
    assert d.removal.generate_calls == calls and d.generate_calls == calls + 1
    edited = d.edited_image
    assert (edited[LABELS16 == 5] == 0).all() and (edited[LABELS16 != 5] == rgb_image[LABELS16 != 5]).all()
    assert d.modality.label == PERCEPTION  # p(Yes) is 0 on the blank image, 1 with the distractor
    rec = d.to_json()
    assert rec["csr10"] is True and rec["amcr"] == pytest.approx(0.0625)
    json.dumps(rec)


def test_never_corrected_counts_every_call(rgb_image, explainer_for):
    adapter = distractor_adapter(rgb_image, stubborn=True)
    d = diagnose_yes_no(adapter, rgb_image, "Is there a cat?", False, explainer=explainer_for(adapter))
    assert d.amcr == 1.0 and not d.removal.corrected and d.edited_image is None
    assert d.removal.generate_calls == 16
    capped = diagnose_yes_no(adapter, rgb_image, "q", "no", explainer=explainer_for(adapter), max_area=0.25)
    assert capped.removal.generate_calls == 4 and capped.amcr == 1.0
    bis = diagnose_yes_no(adapter, rgb_image, "q", "no", explainer=explainer_for(adapter), schedule="bisection")
    assert bis.removal.generate_calls == 8 and bis.amcr == 1.0


def test_correct_answer_is_not_explained(rgb_image, explainer_for):
    adapter = distractor_adapter(rgb_image)
    d = diagnose_yes_no(adapter, rgb_image, "q", "yes", explainer=explainer_for(adapter))
    assert d.correct and d.amcr is None and d.correct_explanation is None and d.generate_calls == 1
    assert d.to_json()["csr10"] is None


def test_removal_bisection_matches_incremental_on_monotone_answers(rgb_image):
    # The answer turns correct once at least 7 regions are removed.
    calls = []

    class Counter(CallableAdapter):
        def generate(self, image, prompt, **kw):
            removed = int((np.asarray(image)[::10, ::10] == 0).all(axis=-1).sum())
            calls.append(removed)
            return generation_from_text(prompt, "no" if removed >= 7 else "yes")

    adapter = Counter(lambda i, g, p: np.zeros((len(i), len(p))))
    order = np.arange(16)
    res_i = minimal_correcting_removal(adapter, rgb_image, "q", order, LABELS16, lambda g: g.text == "no")
    res_b = minimal_correcting_removal(
        adapter, rgb_image, "q", order, LABELS16, lambda g: g.text == "no", schedule="bisection"
    )
    assert res_i.regions_removed == res_b.regions_removed == 7
    assert res_i.amcr == res_b.amcr == pytest.approx(7 / 16)
    assert res_i.removed_regions == list(range(15, 8, -1))  # least important (last) first
    assert res_i.generate_calls == 7 and res_b.generate_calls < 7
    with pytest.raises(ValueError, match="schedule"):
        minimal_correcting_removal(adapter, rgb_image, "q", order, LABELS16, lambda g: True, schedule="x")
    with pytest.raises(ValueError, match="ordering"):
        minimal_correcting_removal(adapter, rgb_image, "q", order[:3], LABELS16, lambda g: True)


def test_summarize_csr_over_all_wrong_samples():
    recs = [
        {"label": "no", "predicted": "yes", "amcr": 0.05, "corrected": True},
        {"label": "no", "predicted": "yes", "amcr": 1.0, "corrected": False},  # never corrected: stays in
        {"label": "yes", "predicted": "no", "amcr": 0.3, "corrected": True},
        {"label": "yes", "predicted": None, "amcr": 0.1, "corrected": True},
        {"label": "yes", "predicted": "yes", "amcr": None},
        {"label": "no", "predicted": "no", "amcr": None},
    ]
    s = summarize(recs)
    assert s["n"] == 6 and s["n_wrong"] == 4 and s["csr_denominator"] == 4
    assert s["csr_at_10"] == pytest.approx(2 / 4)
    assert s["mean_amcr"] == pytest.approx((0.05 + 1.0 + 0.3 + 0.1) / 4)
    assert s["accuracy"] == pytest.approx(2 / 6)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
    assert s["n_unparsed"] == 1 and s["yes_ratio"] == pytest.approx(3 / 5)


def _pope_dir(tmp_path, image):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.fromarray(image).save(img_dir / "a.png")
    lines = [
        {"question_id": 1, "image": "a.png", "text": "Is there a cat in the image?", "label": "no"},
        {"question_id": 2, "image": "a.png", "text": "Is there a dog in the image?", "label": "yes"},
        {"question_id": 3, "image": "a.png", "text": "Is there a cow in the image?", "label": "no"},
    ]
    pope = tmp_path / "pope.jsonl"
    pope.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return pope, img_dir


def test_diagnose_pope_writes_lines_and_resumes(tmp_path, rgb_image, explainer_for):
    pope, img_dir = _pope_dir(tmp_path, rgb_image)
    adapter = distractor_adapter(rgb_image)
    out = tmp_path / "res" / "out.jsonl"
    s = diagnose_pope(
        adapter, pope, out, image_dir=img_dir, limit=2, explainer=explainer_for(adapter), save_dir=tmp_path / "art"
    )
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["question_id"] for r in recs] == [1, 2]
    assert recs[0]["amcr"] == pytest.approx(1 / 16) and recs[1]["correct"]
    assert s["n"] == 2 and s["csr_at_10"] == 1.0 and s["n_wrong"] == 1
    assert summary_path_for(out).is_file() and json.loads(summary_path_for(out).read_text())["n"] == 2
    art = recs[0]["artifacts"]
    assert (tmp_path / "art" / "1" / "edited.png").is_file() and set(art) == {"wrong", "correct", "edited"}
    # A torn last line (interrupted run) is dropped; the rerun resumes and finishes the file.
    with open(out, "a") as fh:
        fh.write('{"question_id": 3, "lab')
    s2 = diagnose_pope(adapter, pope, out, image_dir=img_dir, explainer=explainer_for(adapter))
    recs2 = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["question_id"] for r in recs2] == [1, 2, 3] and s2["n"] == 3 and s2["n_wrong"] == 2
    s3 = diagnose_pope(adapter, pope, out, image_dir=img_dir, explainer=explainer_for(adapter))
    assert len(out.read_text().splitlines()) == 3 and s3["n"] == 3
    with pytest.raises(FileExistsError):
        diagnose_pope(adapter, pope, out, image_dir=img_dir, resume=False)
    with pytest.raises(ValueError, match="image_dir"):
        diagnose_pope(adapter, pope, out)


def test_cli_builder_parses(tmp_path):
    parser = argparse.ArgumentParser(prog="mllm-attr")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommand(sub)
    args = parser.parse_args(["diagnose", "--pope", "p.jsonl", "--images", "d", "--out", "o.jsonl", "--limit", "3"])
    assert args.n_regions == 16 and args.schedule == "incremental" and args.limit == 3 and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["diagnose", "--images", "d", "--out", "o.jsonl"])


def test_object_mentions_word_boundaries():
    gen = generation_from_text("q", "two stars , a starfish and a Circle .")
    found = find_object_mentions(gen, ["star", "circle", "fish"])
    assert [(w, c) for w, c, _ in found] == [("stars", "star"), ("Circle", "circle")]
    syn = find_object_mentions(
        generation_from_text("q", "a traffic light and a light"), {"traffic light": "traffic light", "light": "lamp"}
    )
    assert [(c, pos) for _, c, pos in syn] == [("traffic light", (1, 2)), ("lamp", (5,))]


def test_caption_hallucination_labels(rgb_image):
    region = LABELS16 == 0

    def score(images, generation, positions):
        vis = (np.all(images == rgb_image[None], axis=-1) & region[None]).sum(axis=(1, 2)) / region.sum()
        out = np.empty((len(images), len(positions)))
        for j, p in enumerate(positions):
            word = generation.tokens[p].strip()
            out[:, j] = 0.05 + 0.9 * vis if word == "circle" else 0.85  # the triangle comes from the prior
        return out

    adapter = CallableAdapter(score, lambda img, prompt: "a red circle and a blue triangle .")
    d = caption_hallucinations(adapter, rgb_image, {"circle"}, vocabulary="shapes")
    assert d.forwards == 2
    assert [(m.category, m.present, m.modality.label) for m in d.mentions] == [
        ("circle", True, PERCEPTION),
        ("triangle", False, PRIOR),
    ]
    assert d.chair_i == 0.5 and d.chair_s == 1.0 and [m.word for m in d.hallucinated()] == ["triangle"]
    assert "\x1b[4m" in d.ansi() and "NO" in d.table()
    assert "line-through" in d.html() and d.html().count("<span") == 2
    json.dumps(d.to_json())
    agg = chair([d, caption_hallucinations(adapter, rgb_image, {"circle", "triangle"}, vocabulary="shapes")])
    assert agg["chair_i"] == pytest.approx(1 / 4) and agg["chair_s"] == 0.5
    assert agg["hallucinated_words"] == {PRIOR: 1} and agg["present_words"] == {PERCEPTION: 2, PRIOR: 1}
    unknown = caption_hallucinations(adapter, rgb_image, None, vocabulary="shapes")
    assert np.isnan(unknown.chair_i) and unknown.mentions[0].present is None


def test_cli_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    from mllm_attr import cli
    from mllm_attr.data.shapes import write_dataset
    from mllm_attr.testing.tiny_models import save_tiny

    model = save_tiny("llava", tmp_path / "model")
    paths = write_dataset(tmp_path / "data", n_images=2, seed=0, split="test", size=32)
    out = tmp_path / "diag.jsonl"
    argv = [
        "diagnose",
        "--pope",
        str(paths["pope_random"]),
        "--images",
        str(paths["images"]),
        "--model",
        str(model),
        "--out",
        str(out),
        "--limit",
        "2",
        "--regions",
        "4",
        "--segmenter",
        "grid",
        "--max-area",
        "0.5",
        "-q",
    ]
    assert cli.main(argv) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 2 and all(r["label"] in ("yes", "no") for r in recs)
    summary = json.loads(summary_path_for(out).read_text())
    assert summary["n"] == 2 and "csr_at_10" in summary
    assert "CSR@10%" in capsys.readouterr().out
    assert cli.main(argv) == 0 and len(out.read_text().splitlines()) == 2  # resumed: nothing new
    assert (
        cli.main(["diagnose", "--pope", str(tmp_path / "none.jsonl"), "--images", str(tmp_path), "--out", str(out)])
        == 2
    )


def test_caption_grounded_with_masks(rgb_image):
    circle = LABELS16 == 0
    star = LABELS16 == 15

    def vis(images, m):
        return (np.all(images == rgb_image[None], axis=-1) & m[None]).sum(axis=(1, 2)) / m.sum()

    def score(images, generation, positions):
        out = np.empty((len(images), len(positions)))
        for j, p in enumerate(positions):
            word = generation.tokens[p].strip()
            out[:, j] = {"circle": 0.05 + 0.9 * vis(images, circle), "triangle": 0.05 + 0.9 * vis(images, star)}.get(
                word, 0.9
            )
        return out

    adapter = CallableAdapter(score, lambda img, prompt: "a circle , a triangle and a star .")
    d = caption_hallucinations(
        adapter, rgb_image, None, vocabulary="shapes", object_masks={"circle": circle, "star": star}
    )
    assert d.ground_truth == frozenset({"circle", "star"}) and d.forwards == 2 + 2 + 2
    rows = {m.category: m for m in d.mentions}
    assert rows["circle"].label == PERCEPTION and rows["circle"].grounded.evidence_object == "circle"
    # With the blank prior the hallucinated triangle looks image-driven (the star raises it) ...
    assert rows["triangle"].modality.label == PERCEPTION
    # ... the grounded decomposition shows it is carried by another object: a co-occurrence prior.
    assert rows["triangle"].label == PRIOR and rows["triangle"].grounded.prior_kind == "co-occurrence"
    assert rows["triangle"].grounded.evidence_object == "star"
    assert rows["star"].label == PRIOR and rows["star"].grounded.prior_kind == "language"
    assert "co-occurrence <- star" in d.table()
    assert chair([d])["hallucinated_words"] == {PRIOR: 1}
    json.dumps(d.to_json())
