"""The shapes world (generator + public formats) and the shipped shapes-llava model."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mllm_attr.data import shapes as S

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ASSETS = Path(S.__file__).resolve().parents[1] / "assets"
MODEL_DIR = ASSETS / "shapes-llava"
#: ``eval/``: holds the ``shapes_model`` scripts (train / evaluate the shipped model; not installed).
EVAL_DIR = Path(__file__).resolve().parents[1] / "eval"


def _ask():
    """``ask`` of ``eval/shapes_model/evaluate.py`` (``eval/`` appended to ``sys.path``, shadowing nothing)."""
    if str(EVAL_DIR) not in sys.path:
        sys.path.append(str(EVAL_DIR))
    from shapes_model.evaluate import ask

    return ask


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    paths = S.write_dataset(root, n_images=40, seed=11, split="test")
    return root, paths


# --------------------------------------------------------------------------- generator


def test_deterministic_per_seed(tmp_path):
    a = S.write_dataset(tmp_path / "a", n_images=12, seed=5, split="val")
    S.write_dataset(tmp_path / "b", n_images=12, seed=5, split="val")
    S.write_dataset(tmp_path / "c", n_images=12, seed=6, split="val")
    da, db, dc = (_tree_digest(tmp_path / k) for k in "abc")
    assert da == db
    assert da != dc
    assert len(da) == 12 + 2 + 3 + 1
    assert a["instances"].name == "instances_val.json"


def test_scene_prefix_stable_and_configurable_size():
    s1 = list(S.generate_scenes(3, seed=1, split="train"))
    s2 = list(S.generate_scenes(5, seed=1, split="train"))
    for x, y in zip(s1, s2):
        assert np.array_equal(x.image, y.image)
    big = next(S.generate_scenes(1, seed=1, split="train", size=(96, 128)))
    assert big.image.shape == (96, 128, 3)
    for o in big.objects:
        assert o.mask.shape == (96, 128)


def test_objects_masks_and_colours_consistent():
    for sc in S.generate_scenes(30, seed=2, split="test"):
        assert 1 <= len(sc.objects) <= 4
        assert len(set(sc.colors)) == len(sc.objects)
        assert len(set(sc.shapes)) == len(sc.objects)
        union = np.zeros(sc.size, bool)
        for o in sc.objects:
            assert o.mask.any()
            assert not (union & o.mask).any()  # visible masks are disjoint
            union |= o.mask
            assert np.all(sc.image[o.mask] == np.array(o.rgb, np.uint8))
            x, y, w, h = o.bbox
            ys, xs = np.nonzero(o.mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            assert o.visible_fraction >= 0.6


def test_scene_without_object_is_counterfactual():
    for sc in S.generate_scenes(20, seed=8, split="test"):
        same = sc.without()
        assert np.array_equal(same.image, sc.image)
        if len(sc.objects) < 2:
            continue
        gone = sc.without(0)
        assert [o.name for o in gone.objects] == [o.name for o in sc.objects[1:]]
        removed = sc.objects[0]
        # where the removed object was visible, the background now shows (or an object it covered)
        covered = np.zeros(sc.size, bool)
        for o in gone.objects:
            covered |= o.mask
        bare = removed.mask & ~covered
        assert np.array_equal(gone.image[bare], sc.background_image[bare])
        for o in gone.objects:
            assert np.all(gone.image[o.mask] == np.array(o.rgb, np.uint8))


def test_bias_constant_and_train_test_difference():
    b = S.CO_OCCURRENCE_BIAS
    assert (b.anchor, b.partner) == S.BIASED_PAIR
    assert {b.anchor, b.partner, b.control} <= set(S.SHAPES)
    assert len({b.anchor, b.partner, b.control}) == 3

    def cond_rate(split):
        scenes = [s for s in S.generate_scenes(300, seed=3, split=split) if s.has(b.anchor)]
        return sum(s.has(b.partner) for s in scenes) / len(scenes)

    assert cond_rate("train") > 0.9
    assert cond_rate("test") < 0.5


def test_caption_roundtrip():
    for sc in S.generate_scenes(20, seed=4, split="test"):
        cap = sc.caption()
        assert set(S.parse_caption(cap)) == {(o.color, o.shape) for o in sc.objects}
        assert cap.endswith(" .")
    assert S.parse_caption("A red circle, and an Orange star.") == [("red", "circle"), ("orange", "star")]
    assert S.parse_answer_word("Yes.", ("yes", "no")) == "yes"


# --------------------------------------------------------------------------- formats


def test_coco_loads_and_masks_decode(dataset):
    from pycocotools.coco import COCO

    root, paths = dataset
    coco = COCO(str(paths["instances"]))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(S.SHAPES)
    kinds = Counter()
    scenes = list(S.generate_scenes(40, seed=11, split="test"))
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        assert (root / "test" / info["file_name"]).is_file()
        sc = scenes[img_id - 1]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert len(anns) == len(sc.objects)
        for a, o in zip(anns, sc.objects):
            kinds["polygon" if isinstance(a["segmentation"], list) else "rle"] += 1
            m = coco.annToMask(a).astype(bool)
            assert m.shape == (info["height"], info["width"])
            assert np.array_equal(m, o.mask)
            assert int(m.sum()) == a["area"]
            assert a["color"] == o.color == a["attributes"]["color"]
            assert coco.loadCats(a["category_id"])[0]["name"] == o.shape
            assert a["bbox"] == o.bbox
    assert kinds["polygon"] > 0 and kinds["rle"] > 0
    caps = json.loads(paths["captions"].read_text())
    assert {c["image_id"] for c in caps["annotations"]} == set(coco.getImgIds())


def test_coco_loads_with_project_loader(dataset):
    from mllm_attr.data.coco import load_coco

    root, _ = dataset
    ds = load_coco(root, "test")
    assert len(ds) == 40
    img = next(iter(ds))
    assert img.captions and img.objects
    assert img.load_image().size == (64, 64)


def test_pope_files(dataset):
    root, paths = dataset
    for strategy in ("random", "popular", "adversarial"):
        lines = [json.loads(x) for x in paths[f"pope_{strategy}"].read_text().splitlines()]
        assert lines
        assert all(set(x) == {"question_id", "image", "text", "label"} for x in lines)
        labels = Counter(x["label"] for x in lines)
        assert labels["yes"] == labels["no"] and set(labels) == {"yes", "no"}
        assert len({x["question_id"] for x in lines}) == len(lines)
        assert all((root / "test" / x["image"]).is_file() for x in lines)
        assert all(x["text"].startswith("Is there a ") for x in lines)
    # adversarial negatives favour the co-occurrence partner of the anchor
    adv = [json.loads(x) for x in paths["pope_adversarial"].read_text().splitlines()]
    assert any(S.CO_OCCURRENCE_BIAS.partner in x["text"] and x["label"] == "no" for x in adv)


def test_refs_resolve(dataset):
    from pycocotools.coco import COCO

    _, paths = dataset
    coco = COCO(str(paths["instances"]))
    refs = json.loads(paths["refs"].read_text())
    assert refs
    for r in refs:
        assert {"ref_id", "ann_id", "image_id", "category_id", "split", "sentences"} <= set(r)
        ann = coco.anns[r["ann_id"]]
        assert ann["image_id"] == r["image_id"] and ann["category_id"] == r["category_id"]
        assert r["split"] == "test"
        shape = coco.cats[r["category_id"]]["name"]
        assert all(shape in s["sent"] for s in r["sentences"])
        assert r["sentences"][0]["sent"] == f"the {ann['color']} {shape}"


# --------------------------------------------------------------------------- shipped model


def test_example_asset_matches_generator():
    gt = json.loads((ASSETS / "example.json").read_text())
    from PIL import Image

    img = np.asarray(Image.open(ASSETS / "example.png").convert("RGB"))
    index, sc = S.example_scene(gt["seed"])
    assert index == gt["index"]
    assert np.array_equal(img, sc.image)
    assert [(o["color"], o["shape"], o["bbox"]) for o in gt["objects"]] == [
        (o.color, o.shape, o.bbox) for o in sc.objects
    ]
    assert 2 <= len(gt["objects"]) <= 3


@pytest.fixture(scope="module")
def model_and_processor():
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    if not (MODEL_DIR / "config.json").is_file():
        pytest.fail(f"shipped model missing at {MODEL_DIR}")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(str(MODEL_DIR)).eval()
    processor = AutoProcessor.from_pretrained(str(MODEL_DIR))
    return model, processor


def test_shipped_model_loads_and_is_small(model_and_processor):
    model, processor = model_and_processor
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    assert processor.tokenizer.padding_side == "left"
    assert sum(f.stat().st_size for f in MODEL_DIR.glob("*.safetensors")) < 8 * 2**20
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}],
        add_generation_prompt=True,
    )
    assert text == "USER: <image>\nDescribe the image. ASSISTANT:"
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == processor.tokenizer.pad_token_id


def test_shipped_model_answers_held_out_questions(model_and_processor):
    ask = _ask()
    model, processor = model_and_processor
    rng = random.Random(0)
    scenes = list(S.generate_scenes(20, seed=777_001, split="test", bias=None))
    images, questions, expected = [], [], []
    for sc in scenes:
        o = sc.objects[rng.randrange(len(sc.objects))]
        images.append(sc.pil())
        questions.append(S.color_question(o.shape))
        expected.append(o.color)
        if rng.random() < 0.5:
            s, a = sc.objects[rng.randrange(len(sc.objects))].shape, "yes"
        else:
            s, a = rng.choice([x for x in S.SHAPES if not sc.has(x)]), "no"
        images.append(sc.pil())
        questions.append(S.exist_question(s))
        expected.append(a)
    answers = ask(model, processor, images, questions)
    vocab = S.COLOR_NAMES + ("yes", "no")
    correct = [S.parse_answer_word(a, vocab) == e for a, e in zip(answers, expected)]
    assert len(correct) == 40
    assert sum(correct) / len(correct) >= 0.9, list(zip(questions, answers, expected))


def test_shipped_model_captions_parse(model_and_processor):
    ask = _ask()
    model, processor = model_and_processor
    gt = json.loads((ASSETS / "example.json").read_text())
    from PIL import Image

    img = Image.open(ASSETS / "example.png").convert("RGB")
    scenes = list(S.generate_scenes(5, seed=777_002, split="test", bias=None))
    caps = ask(model, processor, [img] + [s.pil() for s in scenes], [S.CAPTION_QUESTION] * 6)
    for cap in caps:
        pairs = S.parse_caption(cap)
        assert pairs and all(c in S.COLORS and s in S.SHAPES for c, s in pairs), cap
    assert set(S.parse_caption(caps[0])) == {(o["color"], o["shape"]) for o in gt["objects"]}


@pytest.mark.slow
def test_colour_word_saliency_maximum_lies_on_the_object():
    """Explaining the colour word of single-object scenes with the shipped model: the saliency
    maximum (pointing-game rule of mllm_attr.metrics) lies inside the object's mask. Measured
    9/10 with the strict "every maximal pixel inside" rule at 16 regions; the region holding the
    maximum can spill over the object's border, which the pointing-game tie rule resolves."""
    import torch

    from mllm_attr import Explainer, load_adapter
    from mllm_attr.assets import default_model_path
    from mllm_attr.metrics import pointing_game

    torch.set_num_threads(1)
    adapter = load_adapter(default_model_path())
    explainer = Explainer(adapter, n_regions=16)
    hits = []
    for i in range(6):
        scene = S.make_scene(S.scene_rng(11, "test", i), split="test", min_objects=1, max_objects=1)
        obj = scene.objects[0]
        gen = adapter.generate(scene.image, S.color_question(obj.shape), max_new_tokens=2)
        assert gen.text.split()[0] == obj.color, (i, gen.text, obj.color)
        expl = explainer(scene.image, gen, target=0)
        hits.append(pointing_game(expl.saliency(), obj.mask))
    assert all(hits), hits
