"""Task builders of the evaluation harness: target choice, ground truth, errors (fast)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm_attr.adapters.callable import CallableAdapter, generation_from_text
from mllm_attr.data.benchmarks import UnresolvedIdError
from mllm_attr.data.shapes import write_dataset
from mllm_attr.evaluation.tasks import (
    TASKS,
    GroundTruth,
    build_task,
    find_category_mention,
    natural_key,
    positions_in_span,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return write_dataset(root, n_images=5, seed=3, split="test")


def _root(paths: dict[str, Path]) -> Path:
    return paths["instances"].parent.parent


def _image(paths: dict[str, Path]) -> np.ndarray:
    return np.asarray(Image.open(sorted(paths["images"].glob("*.png"))[0]).convert("RGB"))


def _fake_adapter(answer: str = "yes") -> CallableAdapter:
    return CallableAdapter(lambda imgs, gen, pos: np.full((len(imgs), len(pos)), 0.5), lambda img, p: answer)


# --------------------------------------------------------------------------- word matching


def test_category_mention_respects_word_boundaries_and_plurals() -> None:
    names = {"cat": ["cat"], "dog": ["dog"]}
    assert find_category_mention("a catalog of things", names) is None
    assert find_category_mention("a concatenation", names) is None
    cat, s, e = find_category_mention("two cats and a dog", names)
    assert (cat, "two cats and a dog"[s:e]) == ("cat", "cats")
    assert find_category_mention("two cats", names, plurals=False) is None


def test_category_mention_takes_the_earliest_then_longest() -> None:
    names = {"dog": ["dog"], "hot dog": ["hot dog"], "person": ["person", "man"]}
    text = "A man eats a hot dog near a dog"
    cat, s, e = find_category_mention(text, names)
    assert (cat, text[s:e]) == ("person", "man")
    cat, s, e = find_category_mention("a Hot  Dog", names)
    assert (cat, "a Hot  Dog"[s:e]) == ("hot dog", "Hot  Dog")


def test_positions_in_span_skips_specials_and_empty_tokens() -> None:
    gen = generation_from_text("p", "a red circle .")
    assert positions_in_span(gen, 6, 12) == [2]
    assert positions_in_span(gen, 0, 5) == [0, 1]


def test_natural_key_orders_numbers() -> None:
    assert sorted(["10", "2", "1", "b", "a"], key=natural_key) == ["1", "2", "10", "a", "b"]


# --------------------------------------------------------------------------- config errors


def test_unknown_kind_and_unknown_key_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown task kind 'coco'.*coco-caption"):
        build_task({"kind": "coco"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['promt'\].*valid keys.*'prompt'"):
        build_task({"kind": "coco-caption", "root": "x", "promt": "hi"})
    with pytest.raises(ValueError, match="limit"):
        build_task({"kind": "coco-caption", "root": "x", "limit": 0})
    with pytest.raises(ValueError, match="target"):
        build_task({"kind": "refcoco", "refs": "x", "target": "everything"})
    with pytest.raises(ValueError, match="only use the fields"):
        build_task({"kind": "refcoco", "refs": "x", "prompt": "What is {object}?"})
    assert set(TASKS) == {"coco-caption", "coco-object", "refcoco", "repope", "mmvp"}


def test_missing_location_files_and_ids(tmp_path: Path, shapes: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="needs key"):
        build_task({"kind": "coco-caption"}).samples()
    with pytest.raises(FileNotFoundError, match="COCO root"):
        build_task({"kind": "coco-caption", "root": str(tmp_path / "nope")}).samples()
    with pytest.raises(FileNotFoundError):
        build_task({"kind": "repope", "questions": str(tmp_path / "q.jsonl"), "image_dir": str(tmp_path)}).samples()
    bad = tmp_path / "pope.jsonl"
    bad.write_text('{"question_id": 1, "image": "x.png"}\n')
    with pytest.raises(ValueError, match="missing"):
        build_task({"kind": "repope", "questions": str(bad), "image_dir": str(tmp_path)}).samples()
    with pytest.raises(UnresolvedIdError, match=r"\['999'\]"):
        build_task({"kind": "coco-caption", "root": str(_root(shapes)), "split": "test", "ids": [1, 999]}).samples()


# --------------------------------------------------------------------------- tasks


def test_coco_caption_samples_sorted_limited_and_all_tokens(shapes: dict[str, Path]) -> None:
    task = build_task({"kind": "coco-caption", "root": str(_root(shapes)), "split": "test", "limit": 3})
    samples = task.samples()
    assert [s.sample_id for s in samples] == ["1", "2", "3"]
    assert samples[0].prompt == "Describe the image."
    assert samples[0].load_image().shape == (64, 64, 3)
    only = build_task({"kind": "coco-caption", "root": str(_root(shapes)), "split": "test", "ids": ["4", 2]}).samples()
    assert [s.sample_id for s in only] == ["2", "4"]
    gen = generation_from_text("Describe the image.", "a red circle .")
    sel = task.select(samples[0], gen, None, samples[0].load_image())
    assert sel.positions == (0, 1, 2, 3) and sel.ground_truth is None and not sel.skipped


def test_coco_object_picks_first_present_category_with_its_mask(shapes: dict[str, Path]) -> None:
    task = build_task({"kind": "coco-object", "root": str(_root(shapes)), "split": "test"})
    sample = task.samples()[0]
    present = [gt.name for gt in sample.objects]
    absent = next(s for s in ("circle", "square", "triangle", "star", "cross", "diamond") if s not in present)
    target = present[-1]
    text = f"a red {absent} , a blue {target}s and a {present[0]} ."
    gen = generation_from_text(sample.prompt, text)
    sel = task.select(sample, gen, None, sample.load_image())
    assert not sel.skipped
    assert [gen.tokens[p].strip() for p in sel.positions] == [f"{target}s"]
    assert sel.ground_truth is not None and sel.ground_truth.name == target
    mask = sel.ground_truth.mask((64, 64))
    assert mask.dtype == bool and mask.any() and sel.ground_truth.box_mask((64, 64))[mask].all()
    none = task.select(sample, generation_from_text(sample.prompt, f"a {absent} ."), None, sample.load_image())
    assert none.skipped and "names none" in none.skip


def test_ground_truth_unions_instances_and_resizes() -> None:
    square = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]
    gt = GroundTruth(name="x", boxes=((2, 2, 4, 4), (10, 10, 2, 2)), segmentations=(square, []), height=16, width=16)
    m = gt.mask()
    assert m.shape == (16, 16) and m[3, 3] and not m[11, 11]
    b = gt.box_mask()
    assert b[3, 3] and b[11, 11] and not b[0, 0]
    assert gt.box_mask((32, 32)).shape == (32, 32) and gt.box_mask((32, 32))[22, 22]
    assert gt.to_json()["boxes"][1] == [10, 10, 2, 2]


def test_refcoco_prompt_and_referred_object(shapes: dict[str, Path]) -> None:
    root = _root(shapes)
    task = build_task(
        {
            "kind": "refcoco",
            "refs": str(shapes["refs"]),
            "instances_file": str(shapes["instances"]),
            "image_dir": str(shapes["images"]),
            "prompt": "What color is the {category}?",
            "target": "category",
        }
    )
    samples = task.samples()
    refs = json.loads(shapes["refs"].read_text())
    inst = json.loads(shapes["instances"].read_text())
    first = samples[0]
    ann = next(a for a in inst["annotations"] if a["id"] == refs[0]["ann_id"])
    cat = next(c["name"] for c in inst["categories"] if c["id"] == ann["category_id"])
    assert first.prompt == f"What color is the {cat}?"
    assert first.objects[0].boxes[0] == tuple(float(v) for v in ann["bbox"])
    sel = task.select(first, generation_from_text(first.prompt, f"the {cat} is red"), None, first.load_image())
    assert sel.ground_truth.name == cat and len(sel.positions) == 1
    miss = task.select(first, generation_from_text(first.prompt, "red"), None, first.load_image())
    assert miss.skipped
    assert root.exists()


def test_repope_explains_the_correct_answer_only_when_wrong(shapes: dict[str, Path]) -> None:
    task = build_task(
        {
            "kind": "repope",
            "questions": str(shapes["pope_random"]),
            "image_dir": str(shapes["images"]),
            "annotations": str(shapes["instances"]),
        }
    )
    samples = task.samples()
    yes_q = next(s for s in samples if s.info["label"] == "yes")
    no_q = next(s for s in samples if s.info["label"] == "no")
    assert yes_q.objects and yes_q.objects[0].name == yes_q.info["object"]
    assert not no_q.objects
    img = yes_q.load_image()
    wrong = task.select(yes_q, generation_from_text(yes_q.prompt, "No ."), _fake_adapter(), img)
    assert not wrong.skipped and wrong.generation.counterfactual
    assert wrong.generation.text == "Yes" and wrong.generation.generated_text == "No ."
    assert [wrong.generation.tokens[p] for p in wrong.positions] == ["Yes"]
    assert wrong.ground_truth is not None
    right = task.select(no_q, generation_from_text(no_q.prompt, "no"), _fake_adapter(), img)
    assert right.skipped and "correctly" in right.skip
    neither = task.select(no_q, generation_from_text(no_q.prompt, "maybe nothing"), _fake_adapter(), img)
    assert neither.skipped and "neither" in neither.skip
    all_task = build_task(
        {
            "kind": "repope",
            "questions": str(shapes["pope_random"]),
            "image_dir": str(shapes["images"]),
            "only_wrong": False,
        }
    )
    kept = all_task.select(no_q, generation_from_text(no_q.prompt, "I think no"), _fake_adapter(), img)
    assert not kept.skipped and [kept.generation.tokens[p].strip() for p in kept.positions] == ["no"]
    # The text before the answer word is kept in the counterfactual.
    pre = task.select(yes_q, generation_from_text(yes_q.prompt, "I think no"), _fake_adapter(), img)
    assert pre.generation.text == "I think yes"
    assert [pre.generation.tokens[p].strip() for p in pre.positions] == ["yes"]


def test_mmvp_prompt_and_answer_tokens(tmp_path: Path, shapes: dict[str, Path]) -> None:
    root = tmp_path / "mmvp"
    (root / "MMVP Images").mkdir(parents=True)
    src = sorted(shapes["images"].glob("*.png"))
    for i in (1, 2):
        Image.open(src[i]).convert("RGB").save(root / "MMVP Images" / f"{i}.jpg")
    with open(root / "Questions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Index", "Question", "Options", "Correct Answer"])
        w.writerow([1, "Is the circle red?", "(a) Yes (b) No", "(a)"])
        w.writerow([2, "Is the circle red?", "(a) Yes (b) No", "(b)"])
    task = build_task({"kind": "mmvp", "root": str(root)})
    samples = task.samples()
    assert [s.sample_id for s in samples] == ["1", "2"]
    assert samples[0].prompt.startswith("Is the circle red? Options: (a) Yes (b) No")
    sel = task.select(samples[0], generation_from_text(samples[0].prompt, "(a) Yes"), None, samples[0].load_image())
    assert sel.positions == (0, 1) and sel.info["correct"] is True
    sel2 = task.select(samples[1], generation_from_text(samples[1].prompt, "(a) Yes"), None, samples[1].load_image())
    assert sel2.info["correct"] is False
    with pytest.raises(FileNotFoundError):
        build_task({"kind": "mmvp", "root": str(tmp_path / "none")}).samples()
