"""Tests for the benchmark loaders on tiny fixtures written in each public format."""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mllm_attr.data.benchmarks import (
    CocoImage,
    MissingImageError,
    UnresolvedIdError,
    decode_segmentation,
    load_coco,
    load_data_pickle,
    load_mmvp,
    load_pope,
    load_refcoco,
    mmvp_pairs,
    parse_mmvp_options,
    point_in_box,
    point_in_mask,
    record_to_row,
    to_hf_dataset,
)

# --------------------------------------------------------------------------- fixture helpers

W1, H1 = 20, 16  # image 1
W2, H2 = 12, 10  # image 2


def _write_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (10, 120, 200)).save(path)


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Column-major run lengths starting with a run of zeros (the COCO convention)."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts: list[int] = []
    current, run = 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = int(v), 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _crowd_mask() -> np.ndarray:
    m = np.zeros((H1, W1), dtype=bool)
    m[9:14, 3:7] = True  # 5 x 4 = 20 px
    m[0, 19] = True  # plus one corner pixel
    return m


def _compressed_mask() -> np.ndarray:
    m = np.zeros((H2, W2), dtype=bool)
    m[2:7, 4:10] = True  # 5 x 6 = 30 px
    return m


POLYGONS = [[2, 2, 10, 2, 10, 8, 2, 8], [12, 10, 16, 10, 16, 14, 12, 14]]  # 8x6 + 4x4 squares
POLYGON_AREA = 8 * 6 + 4 * 4


def _coco_json(file_names: tuple[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    images = [
        {"id": 1, "file_name": file_names[0], "width": W1, "height": H1},
        {"id": 2, "file_name": file_names[1], "width": W2, "height": H2},
    ]
    crowd = _crowd_mask()
    comp = mask_utils.encode(np.asfortranarray(_compressed_mask().astype(np.uint8)))
    instances = {
        "images": images,
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {
                "id": 101,
                "image_id": 1,
                "category_id": 18,
                "bbox": [2, 2, 14, 12],
                "segmentation": POLYGONS,
                "area": float(POLYGON_AREA),
                "iscrowd": 0,
            },
            {
                "id": 102,
                "image_id": 1,
                "category_id": 1,
                "bbox": [3, 0, 17, 14],
                "segmentation": _uncompressed_rle(crowd),
                "area": float(crowd.sum()),
                "iscrowd": 1,
            },
            {
                "id": 103,
                "image_id": 2,
                "category_id": 1,
                "bbox": [4, 2, 6, 5],
                "segmentation": {"size": comp["size"], "counts": comp["counts"].decode("ascii")},
                "area": float(_compressed_mask().sum()),
                "iscrowd": 0,
            },
        ],
    }
    captions = {
        "images": images,
        "annotations": [
            {"id": 1, "image_id": 1, "caption": "A dog sits. "},
            {"id": 2, "image_id": 1, "caption": "Some people and a dog."},
            {"id": 3, "image_id": 2, "caption": "A person."},
        ],
    }
    return instances, captions


def make_coco(root: Path, split: str = "val2017", *, instances: bool = True, captions: bool = True) -> Path:
    """Write a COCO root with 2 images; 2014 splits use ``COCO_<split>_...`` names."""
    if split.endswith("2014"):
        names = (f"COCO_{split}_000000000001.jpg", f"COCO_{split}_000000000002.jpg")
    else:
        names = ("000000000001.jpg", "000000000002.jpg")
    inst, capt = _coco_json(names)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    if instances:
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(inst))
    if captions:
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(capt))
    _write_image(root / split / names[0], (W1, H1))
    _write_image(root / split / names[1], (W2, H2), mode="L")
    return root


# --------------------------------------------------------------------------- masks / points


def test_point_in_box_edges_and_errors() -> None:
    box = (2.0, 3.0, 4.0, 5.0)
    assert point_in_box(2, 3, box) and point_in_box(6, 8, box) and point_in_box(4.5, 5.5, box)
    assert not point_in_box(1.99, 4, box) and not point_in_box(4, 8.01, box)
    with pytest.raises(ValueError, match="4 numbers"):
        point_in_box(0, 0, (1, 2, 3))
    with pytest.raises(ValueError, match="must be >= 0"):
        point_in_box(0, 0, (0, 0, -1, 2))


def test_point_in_mask_pixel_convention() -> None:
    m = np.zeros((4, 5), dtype=bool)
    m[1, 3] = True  # row 1, column 3
    assert point_in_mask(3.0, 1.0, m) and point_in_mask(3.99, 1.5, m)
    assert not point_in_mask(1.0, 3.0, m)  # x / y not swapped
    assert not point_in_mask(-0.5, 1, m) and not point_in_mask(5, 1, m) and not point_in_mask(3, 4, m)
    with pytest.raises(ValueError, match="2-D"):
        point_in_mask(0, 0, np.zeros((2, 2, 1), bool))


def test_segmentation_errors() -> None:
    with pytest.raises(ValueError, match="even number"):
        decode_segmentation([[1, 1, 5, 5]], 10, 10)  # would be misread as a box
    with pytest.raises(ValueError, match=r"does not match the image size"):
        decode_segmentation({"size": [4, 4], "counts": [16]}, 5, 5)
    with pytest.raises(ValueError, match="sum to 15"):
        decode_segmentation({"size": [4, 4], "counts": [5, 10]}, 4, 4)
    with pytest.raises(ValueError, match="expected a COCO segmentation"):
        decode_segmentation({"polygons": []}, 4, 4)
    assert decode_segmentation([], 3, 4).shape == (3, 4)


# --------------------------------------------------------------------------- COCO


@pytest.mark.parametrize("split", ["val2017", "val2014"])
def test_load_coco_parses_both_layouts(tmp_path: Path, split: str) -> None:
    ds = load_coco(make_coco(tmp_path / "coco", split), split=split)
    assert len(ds) == 2 and ds.split == split
    assert ds.categories == {1: "person", 18: "dog"}
    im1, im2 = ds[1], ds[2]
    prefix = f"COCO_{split}_" if split == "val2014" else ""
    assert im1.file_name == f"{prefix}000000000001.jpg"
    assert im1.path == tmp_path / "coco" / split / im1.file_name
    assert (im1.width, im1.height) == (W1, H1)
    assert im1.captions == ("A dog sits.", "Some people and a dog.")
    assert [o.annotation_id for o in im1.objects] == [101, 102]
    poly, crowd = im1.objects
    assert poly.category_name == "dog" and poly.category_id == 18 and not poly.iscrowd
    assert poly.bbox == (2.0, 2.0, 14.0, 12.0) and all(isinstance(v, float) for v in poly.bbox)
    assert crowd.iscrowd and crowd.category_name == "person"
    # lazy RGB loading, also for a grayscale file
    for im in (im1, im2):
        pil = im.load_image()
        assert pil.mode == "RGB" and pil.size == (im.width, im.height)
    assert ds.annotation(103).image_id == 2
    assert 1 in ds and 3 not in ds
    hash(im1)  # records are hashable despite the raw segmentation


def test_coco_masks_decode_all_three_forms(tmp_path: Path) -> None:
    ds = load_coco(make_coco(tmp_path / "coco"))
    poly, crowd = ds[1].objects
    (comp,) = ds[2].objects
    m_poly, m_crowd, m_comp = poly.mask(), crowd.mask(), comp.mask()
    for m, (h, w) in ((m_poly, (H1, W1)), (m_crowd, (H1, W1)), (m_comp, (H2, W2))):
        assert m.dtype == bool and m.shape == (h, w)
    # RLE: exact area
    assert m_crowd.sum() == crowd.area == crowd.mask_area()
    assert np.array_equal(m_crowd, _crowd_mask())
    assert m_comp.sum() == comp.area
    assert np.array_equal(m_comp, _compressed_mask())
    # polygons: rasterised, both parts merged, area close to the geometric one
    assert abs(int(m_poly.sum()) - poly.area) <= 0.25 * poly.area
    assert m_poly[5, 6] and m_poly[12, 14] and not m_poly[12, 6]
    assert ds[1].masks().shape == (2, H1, W1) and ds[2].masks().dtype == bool
    # pointing game
    assert crowd.contains_point(4.5, 10.2) and not crowd.contains_point(10, 10)
    assert crowd.contains_point(10, 10, use_mask=False)  # inside the box, off the mask
    assert poly.contains_point(14.5, 12.5) and not poly.contains_point(6, 12)


def test_load_coco_captions_only_instances_only_and_file_entry(tmp_path: Path) -> None:
    caps = load_coco(make_coco(tmp_path / "a", captions=True, instances=False))
    assert caps[1].captions and caps[1].objects == () and caps.categories == {}
    inst = load_coco(make_coco(tmp_path / "b", captions=False, instances=True))
    assert inst[1].captions == () and len(inst[1].objects) == 2
    root = make_coco(tmp_path / "c", "val2014")
    from_file = load_coco(root / "annotations" / "instances_val2014.json")
    assert from_file.split == "val2014" and from_file[2].captions == ("A person.",)
    assert from_file[1].path.parent == root / "val2014"
    from_captions = load_coco(root / "annotations" / "captions_val2014.json")
    assert len(from_captions[1].objects) == 2  # sibling instances file picked up


def test_load_coco_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_coco(tmp_path / "nowhere")
    (tmp_path / "empty" / "annotations").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"instances_val2017\.json.*captions_val2017\.json"):
        load_coco(tmp_path / "empty")
    root = make_coco(tmp_path / "coco")
    with pytest.raises(FileNotFoundError, match=r"val2014.*image folder"):
        load_coco(root, split="val2017", image_dir=root / "val2014")
    for f in (root / "val2017").iterdir():
        f.unlink()
    (root / "val2017").rmdir()
    with pytest.raises(FileNotFoundError) as info:
        load_coco(root)
    assert str(root / "val2017") in str(info.value)


def test_load_coco_wrong_format(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco", captions=False)
    inst_path = root / "annotations" / "instances_val2017.json"
    inst_path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError) as info:
        load_coco(root)
    msg = str(info.value)
    assert str(inst_path) in msg and "'images', 'annotations', 'categories'" in msg and "got a list" in msg
    inst_path.write_text("{not json")
    with pytest.raises(ValueError, match="valid JSON"):
        load_coco(root)
    inst_path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"missing \['categories'\]"):
        load_coco(root)


def test_load_coco_unresolved_ids(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco", captions=False)
    inst_path = root / "annotations" / "instances_val2017.json"
    inst, _ = _coco_json(("000000000001.jpg", "000000000002.jpg"))
    inst["annotations"][1]["image_id"] = 999
    inst_path.write_text(json.dumps(inst))
    with pytest.raises(KeyError) as info:
        load_coco(root)
    assert "annotation id 102" in str(info.value) and "image id 999" in str(info.value)
    inst, _ = _coco_json(("000000000001.jpg", "000000000002.jpg"))
    inst["annotations"][0]["category_id"] = 77
    inst_path.write_text(json.dumps(inst))
    with pytest.raises(KeyError, match="category id 77"):
        load_coco(root)
    ds = load_coco(make_coco(tmp_path / "ok"))
    with pytest.raises(UnresolvedIdError, match="image id 5"):
        ds[5]
    with pytest.raises(KeyError, match="annotation id 7"):
        ds.annotation(7)


# --------------------------------------------------------------------------- RefCOCO


def _refs() -> list[dict[str, Any]]:
    def sents(*texts: str) -> list[dict[str, Any]]:
        return [{"tokens": t.split(), "raw": t.upper(), "sent_id": 500 + i, "sent": t} for i, t in enumerate(texts)]

    return [
        {
            "ref_id": 0,
            "ann_id": 101,
            "image_id": 1,
            "split": "train",
            "category_id": 18,
            "sent_ids": [500, 501],
            "file_name": "COCO_train2014_000000000001_101.jpg",
            "sentences": sents("left dog", "the brown dog"),
        },
        {
            "ref_id": 1,
            "ann_id": 102,
            "image_id": 1,
            "split": "testA",
            "category_id": 1,
            "sent_ids": [500],
            "file_name": "COCO_train2014_000000000001_102.jpg",
            "sentences": sents("people in the back"),
        },
        {
            "ref_id": 2,
            "ann_id": 103,
            "image_id": 2,
            "split": "val",
            "category_id": 1,
            "sent_ids": [500],
            "file_name": "COCO_train2014_000000000002_103.jpg",
            "sentences": sents("person"),
        },
    ]


def make_refer(
    root: Path,
    dataset: str = "refcoco",
    split_by: str = "unc",
    refs: Any = None,
    protocol: int = pickle.HIGHEST_PROTOCOL,
) -> Path:
    """``<root>/<dataset>/refs(<split_by>).p`` + ``instances.json`` + train2014 images."""
    names = ("COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg")
    inst, _ = _coco_json(names)
    ddir = root / dataset
    ddir.mkdir(parents=True, exist_ok=True)
    (ddir / "instances.json").write_text(json.dumps(inst))
    with (ddir / f"refs({split_by}).p").open("wb") as fh:
        pickle.dump(_refs() if refs is None else refs, fh, protocol=protocol)
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    _write_image(img_dir / names[0], (W1, H1))
    _write_image(img_dir / names[1], (W2, H2))
    return root


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_load_refcoco_pickle(tmp_path: Path, protocol: int) -> None:
    root = make_refer(tmp_path / "refer", protocol=protocol)
    refs = load_refcoco(root, "refcoco")
    assert [r.ref_id for r in refs] == [0, 1, 2]
    r0 = refs[0]
    assert r0.split == "train" and r0.dataset == "refcoco" and r0.split_by == "unc"
    assert r0.sentences == ("left dog", "the brown dog") and r0.sentence_ids == (500, 501)
    assert r0.target.annotation_id == 101 and r0.bbox == (2.0, 2.0, 14.0, 12.0)
    assert r0.category_name == "dog"
    assert isinstance(r0.image, CocoImage) and r0.image.image_id == 1
    assert r0.image.path == root / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000001.jpg"
    assert r0.load_image().size == (W1, H1)
    assert r0.mask().shape == (H1, W1) and refs[1].mask().sum() == _crowd_mask().sum()
    assert refs[2].contains_point(5, 3)
    assert [r.ref_id for r in load_refcoco(root, "refcoco", split="testA")] == [1]
    with pytest.raises(ValueError, match=r"no refs with split 'testB'.*\['testA', 'train', 'val'\]"):
        load_refcoco(root, "refcoco", split="testB")


def test_load_refcoco_json_variants(tmp_path: Path) -> None:
    root = make_refer(tmp_path / "refer", dataset="refcocog", split_by="umd")
    ddir = root / "refcocog"
    (ddir / "refs(umd).p").unlink()
    (ddir / "refs(umd).json").write_text(json.dumps(_refs()))
    refs = load_refcoco(root, "refcocog")  # default splitBy umd, JSON fallback
    assert len(refs) == 3 and refs[2].sentences == ("person",)
    plain = [dict(r, sentences=[s["sent"] for s in r["sentences"]]) for r in _refs()]
    (ddir / "my_refs.json").write_text(json.dumps(plain))
    refs = load_refcoco(ddir / "my_refs.json", "refcocog")  # any .json path
    assert refs[0].sentences == ("left dog", "the brown dog") and refs[0].sentence_ids == ()


def test_refcoco_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    root = make_refer(tmp_path / "refer", refs=_refs() + [{"ref_id": 9, "x": _Evil(marker)}])
    with pytest.raises(ValueError) as info:
        load_refcoco(root, "refcoco")
    msg = str(info.value)
    assert "refs(unc).p" in msg and "system" in msg and "refused" in msg
    assert not marker.exists()
    # a bare top-level payload is refused as well
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ValueError, match="refused"):
        load_data_pickle(path)
    assert not marker.exists()
    # sanity: plain pickle *would* have run it
    assert b"system" in path.read_bytes()


def test_refcoco_format_errors(tmp_path: Path) -> None:
    root = make_refer(tmp_path / "refer", refs={"refs": []})
    with pytest.raises(ValueError, match=r"expected RefCOCO refs: a list of dicts.*got an object with keys \['refs'\]"):
        load_refcoco(root, "refcoco")
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(_refs())[:40])
    with pytest.raises(ValueError, match="could not unpickle"):
        load_refcoco(root, "refcoco")
    make_refer(root, refs=[{"ref_id": 3, "ann_id": 101}])
    with pytest.raises(ValueError, match=r"ref_id 3.*lacks keys \['image_id', 'split', 'sentences'\]"):
        load_refcoco(root, "refcoco")
    with pytest.raises(ValueError, match="no default split_by"):
        load_refcoco(root, "mystery")


def test_refcoco_unresolved_ids(tmp_path: Path) -> None:
    bad_ann = _refs()
    bad_ann[1]["ann_id"] = 4242
    root = make_refer(tmp_path / "refer", refs=bad_ann)
    with pytest.raises(KeyError) as info:
        load_refcoco(root, "refcoco")
    assert "ref_id 1" in str(info.value) and "annotation id 4242" in str(info.value)
    bad_img = _refs()
    bad_img[2]["image_id"] = 77
    make_refer(root, refs=bad_img)
    with pytest.raises(KeyError, match="ref_id 2 refers to image id 77"):
        load_refcoco(root, "refcoco")
    wrong_img = _refs()
    wrong_img[0]["image_id"] = 2
    make_refer(root, refs=wrong_img)
    with pytest.raises(ValueError, match="annotation 101 belongs to image id 1"):
        load_refcoco(root, "refcoco")


def test_refcoco_missing_paths(tmp_path: Path) -> None:
    root = make_refer(tmp_path / "refer")
    with pytest.raises(FileNotFoundError, match=r"refcoco\+.*refs\(<splitBy>\)\.p"):
        load_refcoco(root, "refcoco+")
    with pytest.raises(FileNotFoundError, match=r"refs\(google\)\.p"):
        load_refcoco(root, "refcoco", split_by="google")
    (root / "refcoco" / "instances.json").unlink()
    with pytest.raises(FileNotFoundError, match="instances.json"):
        load_refcoco(root, "refcoco")
    root2 = make_refer(tmp_path / "refer2")
    with pytest.raises(FileNotFoundError, match="train2014 image folder"):
        load_refcoco(root2, "refcoco", image_dir=tmp_path / "no_images")
    with pytest.raises(FileNotFoundError, match="no such path"):
        load_refcoco(tmp_path / "absent")


# --------------------------------------------------------------------------- POPE


POPE_LINES = [
    {
        "question_id": 1,
        "image": "COCO_val2014_000000000001.png",
        "text": "Is there a dog in the image?",
        "label": "yes",
    },
    {"question_id": 2, "image": "COCO_val2014_000000000001.png", "text": "Is there a car in the image?", "label": "no"},
    {
        "question_id": 3,
        "image": "COCO_val2014_000000000002.png",
        "text": "Is there a person in the image?",
        "label": "Yes",
        "category": "adversarial",
    },
]


def make_pope(root: Path, name: str = "coco_pope_random.json", lines: list[Any] | None = None) -> Path:
    img_dir = root / "val2014"
    _write_image(img_dir / "COCO_val2014_000000000001.png", (W1, H1))
    _write_image(img_dir / "COCO_val2014_000000000002.png", (W2, H2), mode="RGBA")
    path = root / name
    path.write_text("\n".join(json.dumps(x) for x in (POPE_LINES if lines is None else lines)) + "\n\n")
    return path


def test_load_pope_and_repope(tmp_path: Path) -> None:
    path = make_pope(tmp_path)
    qs = load_pope(path, tmp_path / "val2014")
    assert [q.question_id for q in qs] == [1, 2, 3]
    assert [q.label for q in qs] == [True, False, True] and qs[1].answer == "no"
    assert qs[0].question == "Is there a dog in the image?" and qs[0].variant == "coco_pope_random"
    assert qs[0].category is None and qs[2].category == "adversarial"
    assert qs[2].image_path == tmp_path / "val2014" / "COCO_val2014_000000000002.png"
    assert qs[2].load_image().mode == "RGB"
    corrected = [dict(x, label="no") if x["question_id"] == 1 else x for x in POPE_LINES]
    repope = make_pope(tmp_path, "repope_random.jsonl", corrected)
    rq = load_pope(repope, tmp_path / "val2014", variant="repope-random")
    assert rq[0].label is False and rq[0].variant == "repope-random"
    arr = tmp_path / "as_array.json"
    arr.write_text(json.dumps(POPE_LINES))
    assert len(load_pope(arr, tmp_path / "val2014")) == 3


def test_pope_errors(tmp_path: Path) -> None:
    img_dir = tmp_path / "val2014"
    with pytest.raises(FileNotFoundError, match="POPE/RePOPE JSONL"):
        load_pope(tmp_path / "missing.json", img_dir)
    path = make_pope(tmp_path)
    with pytest.raises(FileNotFoundError, match="POPE image folder"):
        load_pope(path, tmp_path / "no_dir")
    missing_img = POPE_LINES + [{"question_id": 4, "image": "gone.png", "text": "?", "label": "no"}]
    make_pope(tmp_path, lines=missing_img)
    with pytest.raises(KeyError, match=r"question_id 4 refers to image 'gone.png'"):
        load_pope(path, img_dir)
    with pytest.raises(MissingImageError) as info:
        load_pope(path, img_dir)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, KeyError)
    assert len(load_pope(path, img_dir, check_images=False)) == 4
    make_pope(tmp_path, lines=[dict(POPE_LINES[0], label="maybe")])
    with pytest.raises(ValueError, match=r"line 1 \(question_id 1\): expected label 'yes' or 'no'; got 'maybe'"):
        load_pope(path, img_dir)
    make_pope(tmp_path, lines=[{"question_id": 1, "image": "x.png", "label": "yes"}])
    with pytest.raises(ValueError, match=r"missing \['text'\]"):
        load_pope(path, img_dir)
    make_pope(tmp_path, lines=[POPE_LINES[0], POPE_LINES[0]])
    with pytest.raises(ValueError, match="question_id 1 appears more than once"):
        load_pope(path, img_dir)
    path.write_text(json.dumps(POPE_LINES[0]) + "\n{broken\n")
    with pytest.raises(ValueError, match=f"{path.name}: line 2: expected one JSON object per line"):
        load_pope(path, img_dir)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="entry 0: expected a JSON object.*got an int"):
        load_pope(path, img_dir)


# --------------------------------------------------------------------------- MMVP


MMVP_ROWS = [
    ["1", "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(a)"],
    ["2", "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(b)"],
    ["3", "Is the dog facing left or right?", "(a) Left (b) Right (c) Neither", "(c)"],
    ["4", "Is the dog facing left or right?", "(a) Left (b) Right (c) Neither", "(a)"],
]


def make_mmvp(
    root: Path, rows: list[list[str]] | None = None, folder: str = "MMVP Images", header: list[str] | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = MMVP_ROWS if rows is None else rows
    with (root / "Questions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header or ["Index", "Question", "Options", "Correct Answer"])
        writer.writerows(rows)
    for row in rows:
        _write_image(root / folder / f"{row[0]}.jpg", (8, 6))
    return root


def test_load_mmvp_and_pairs(tmp_path: Path) -> None:
    qs = load_mmvp(make_mmvp(tmp_path / "MMVP"))
    assert [q.index for q in qs] == [1, 2, 3, 4]
    q1, q2, q3, _ = qs
    assert q1.options == {"a": "Open", "b": "Closed"} and q1.correct_letter == "a" and q1.correct_option == "Open"
    assert q2.correct_option == "Closed" and q3.correct_option == "Neither"
    assert q1.image_path == tmp_path / "MMVP" / "MMVP Images" / "1.jpg"
    assert q1.load_image().size == (8, 6)
    assert (q1.pair_id, q2.pair_id, q3.pair_id) == (1, 1, 2) and q2.partner_index == 1
    pairs = mmvp_pairs(qs)
    assert [(a.index, b.index) for a, b in pairs] == [(1, 2), (3, 4)]
    with pytest.raises(ValueError, match="question 3 has no partner: index 4 is missing"):
        mmvp_pairs(qs[:3])
    with pytest.raises(ValueError, match="question 2 has no partner: index 1"):
        mmvp_pairs(qs[1:2])
    alt = load_mmvp(make_mmvp(tmp_path / "alt", folder="images") / "Questions.csv")
    assert alt[0].image_path.parent.name == "images"
    hash(q1)


def test_parse_mmvp_options() -> None:
    assert parse_mmvp_options("(a) Yes (b) No") == {"a": "Yes", "b": "No"}
    assert parse_mmvp_options("(A) red apple (B) green (apple)") == {"a": "red apple", "b": "green (apple)"}
    with pytest.raises(ValueError, match="expected options like"):
        parse_mmvp_options("Yes or no")


def test_mmvp_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Questions.csv"):
        load_mmvp(tmp_path / "nothing")
    root = make_mmvp(tmp_path / "m1", header=["Index", "Question", "Choices", "Correct Answer"])
    with pytest.raises(ValueError, match=r"missing \['Options'\].*got columns \['Index', 'Question', 'Choices'"):
        load_mmvp(root)
    bad = [r[:] for r in MMVP_ROWS]
    bad[1][3] = "(d)"
    with pytest.raises(ValueError, match=r"Index 2: expected 'Correct Answer' to name one of the options \['a', 'b'\]"):
        load_mmvp(make_mmvp(tmp_path / "m2", bad))
    root = make_mmvp(tmp_path / "m3")
    (root / "MMVP Images" / "3.jpg").unlink()
    with pytest.raises(KeyError, match=r"Index 3 has no image 3\.jpg"):
        load_mmvp(root)
    assert load_mmvp(root, check_images=False)[2].image_path.name == "3.jpg"
    root = make_mmvp(tmp_path / "m4", folder="pictures")
    with pytest.raises(FileNotFoundError, match="MMVP Images: expected the MMVP image folder"):
        load_mmvp(root)
    bad = [r[:] for r in MMVP_ROWS]
    bad[0][0] = "one"
    with pytest.raises(ValueError, match="row 2: expected an integer Index; got 'one'"):
        load_mmvp(make_mmvp(tmp_path / "m5", bad))


# --------------------------------------------------------------------------- HF datasets


def test_to_hf_dataset(tmp_path: Path) -> None:
    pope = to_hf_dataset(load_pope(make_pope(tmp_path), tmp_path / "val2014"))
    assert pope.num_rows == 3 and pope[0]["image_path"].endswith("COCO_val2014_000000000001.png")
    assert pope["label"] == [True, False, True]
    mmvp = to_hf_dataset(load_mmvp(make_mmvp(tmp_path / "MMVP")))
    assert mmvp[0]["options"]["a"] == "Open" and mmvp[0]["options"]["c"] is None
    coco = to_hf_dataset(list(load_coco(make_coco(tmp_path / "coco"))))
    seg = json.loads(coco[0]["objects"][1]["segmentation"])
    assert seg["counts"] == _uncompressed_rle(_crowd_mask())["counts"]
    assert record_to_row(load_mmvp(tmp_path / "MMVP")[0])["correct_letter"] == "a"
    with pytest.raises(ValueError, match="at least one record"):
        to_hf_dataset([])
    with pytest.raises(TypeError, match="dataclass"):
        record_to_row({"a": 1})
