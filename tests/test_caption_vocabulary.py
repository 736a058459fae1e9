"""Caption hallucinations: the object vocabulary is required or derived, never a silent default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mllm_attr import CallableAdapter, generation_from_text
from mllm_attr.analysis.captions import (
    COCO_SYNONYMS,
    caption_hallucinations,
    coco_vocabulary,
    find_object_mentions,
)
from mllm_attr.data.coco import CocoImage, CocoObject

# The 80 category names of COCO's instances_*.json (2014 and 2017 are the same).
COCO_80 = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def _adapter(caption: str) -> CallableAdapter:
    def score(images, generation, positions):
        return np.full((len(images), len(positions)), 0.5)

    return CallableAdapter(score, lambda img, prompt: caption)


def _coco_object(name: str, cid: int = 1) -> CocoObject:
    return CocoObject(
        annotation_id=cid,
        image_id=1,
        category_id=cid,
        category_name=name,
        bbox=(0.0, 0.0, 4.0, 4.0),
        segmentation=[],
        area=16.0,
        iscrowd=False,
        image_height=32,
        image_width=32,
    )


def test_coco_table_has_the_80_categories_and_no_word_names_two():
    assert len(COCO_80) == 80 and sorted(COCO_SYNONYMS) == sorted(COCO_80)
    seen: dict[str, str] = {}
    for cat, words in COCO_SYNONYMS.items():
        for w in (cat, *words):
            assert seen.setdefault(w.lower(), cat) == cat, (w, seen[w.lower()], cat)
    assert coco_vocabulary()["sofa"] == "couch" and coco_vocabulary()["people"] == "person"


def test_issue_example_derives_coco_and_reports_the_hallucinations(rgb_image):
    d = caption_hallucinations(_adapter("a cat and a dog on a sofa"), rgb_image, ["cat"])
    assert [(m.word, m.category, m.present) for m in d.mentions] == [
        ("cat", "cat", True),
        ("dog", "dog", False),
        ("sofa", "couch", False),
    ]
    assert d.chair_i == pytest.approx(2 / 3) and d.chair_s == 1.0


def test_coco_annotations_and_synonyms_as_ground_truth(rgb_image):
    caption = "Two men ride motorbikes past a hot dog stand near a couch."
    image = CocoImage(
        image_id=1,
        file_name="x.jpg",
        path=Path("x.jpg"),
        width=32,
        height=32,
        captions=(),
        objects=(_coco_object("person"), _coco_object("couch", 63)),
    )
    for truth in (image, list(image.objects), ["people", "sofa"]):
        d = caption_hallucinations(_adapter(caption), rgb_image, truth)
        assert d.ground_truth == frozenset({"person", "couch"})
        assert [(m.word, m.category, m.present) for m in d.mentions] == [
            ("men", "person", True),
            ("motorbikes", "motorcycle", False),
            ("hot dog", "hot dog", False),
            ("couch", "couch", True),
        ]
    # An image with no annotated object is still COCO: every mention is a hallucination.
    empty = CocoImage(image_id=2, file_name="y.jpg", path=Path("y.jpg"), width=32, height=32, captions=(), objects=())
    d = caption_hallucinations(_adapter(caption), rgb_image, empty)
    assert d.ground_truth == frozenset() and d.chair_s == 1.0 and len(d.mentions) == 4


def test_ground_truth_outside_the_vocabulary_is_an_error(rgb_image):
    adapter = _adapter("a cat and a dog on a sofa")
    with pytest.raises(ValueError, match=r"\['circle'\].*not COCO categories.*vocabulary="):
        caption_hallucinations(adapter, rgb_image, ["cat", "circle"])
    with pytest.raises(ValueError, match=r"\['circle'\] are not in the vocabulary"):
        caption_hallucinations(adapter, rgb_image, ["cat", "circle"], vocabulary="coco")
    with pytest.raises(ValueError, match=r"\['cat'\] are not in the vocabulary"):
        caption_hallucinations(adapter, rgb_image, ["cat"], vocabulary="shapes")
    with pytest.raises(ValueError, match="cannot be derived"):
        caption_hallucinations(adapter, rgb_image, None)
    with pytest.raises(ValueError, match="empty"):
        caption_hallucinations(adapter, rgb_image, [])
    with pytest.raises(ValueError, match="unknown vocabulary 'imagenet'"):
        caption_hallucinations(adapter, rgb_image, ["cat"], vocabulary="imagenet")
    with pytest.raises(TypeError, match="collection of category names"):
        caption_hallucinations(adapter, rgb_image, "cat")
    # Presence unknown is fine once the vocabulary is given.
    d = caption_hallucinations(adapter, rgb_image, None, vocabulary="coco")
    assert [m.present for m in d.mentions] == [None, None, None] and np.isnan(d.chair_i)


def test_object_masks_keyed_by_synonyms(rgb_image):
    sofa = np.zeros(rgb_image.shape[:2], bool)
    sofa[:8, :8] = True
    d = caption_hallucinations(_adapter("a cat on a sofa"), rgb_image, None, object_masks={"sofa": sofa})
    assert d.ground_truth == frozenset({"couch"})
    assert [(m.category, m.present) for m in d.mentions] == [("cat", False), ("couch", True)]
    assert d.mentions[1].grounded is not None
    with pytest.raises(ValueError, match=r"\['unicorn'\], which are not COCO categories"):
        caption_hallucinations(_adapter("a cat"), rgb_image, ["cat"], object_masks={"unicorn": sofa})
    with pytest.raises(ValueError, match=r"\['unicorn'\] are not in the vocabulary"):
        caption_hallucinations(_adapter("a cat"), rgb_image, ["cat"], vocabulary="coco", object_masks={"unicorn": sofa})


def test_find_object_mentions_needs_a_vocabulary_and_handles_compounds_and_plurals():
    gen = generation_from_text(
        "q", "Teddy bears, puppies and ponies near traffic lights; a catalog, a bear and hot dogs."
    )
    with pytest.raises(ValueError, match="vocabulary of object words is required"):
        find_object_mentions(gen)
    found = [(w, c) for w, c, _ in find_object_mentions(gen, "coco")]
    assert found == [
        ("Teddy bears", "teddy bear"),
        ("puppies", "dog"),
        ("ponies", "horse"),
        ("traffic lights", "traffic light"),
        ("bear", "bear"),
        ("hot dogs", "hot dog"),
    ]
    assert [c for _, c, _ in find_object_mentions(generation_from_text("q", "two stars"), "shapes")] == ["star"]
    sky = generation_from_text("q", "Skiers under blue skies carry skis; buses pass benches.")
    assert [(w, c) for w, c, _ in find_object_mentions(sky, "coco")] == [
        ("Skiers", "person"),
        ("skis", "skis"),
        ("buses", "bus"),
        ("benches", "bench"),
    ]


def test_cjk_vocabulary_words_match_inside_runs():
    gen = generation_from_text("q", "一只猫坐在沙发上")
    assert find_object_mentions(gen, {"猫": "cat", "沙发": "couch"}) == [("猫", "cat", (0,)), ("沙发", "couch", (0,))]
