"""Prompt-word attribution built on the image pipeline: the scorer hook, the Explainer path, the shared result base."""

from __future__ import annotations

import ast
import dataclasses
import json
import pathlib
import warnings

import numpy as np
import pytest

from mllm_attr import CallableAdapter, Explainer, Explanation
from mllm_attr.adapters.callable import generation_from_text
from mllm_attr.adapters.hf import HFScorer
from mllm_attr.analysis.prompt_tokens import (
    DeleteWordsScorer,
    JointObjective,
    JointScorer,
    PromptAttribution,
    PromptTokenExplainer,
    PromptWord,
    explain_prompt_tokens,
    joint_scorer,
    prompt_words,
)
from mllm_attr.explanation import AttributionResult
from mllm_attr.segment import grid_labels

PROMPT = "What color is the circle?"
POSITIONS = [1, 3]
# Rows: regions shown (grid of 4) and, for rows 4 and 5, words ablated ("circle"; "What" + "is").
REGIONS = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]], bool)
KEPT = np.ones((6, 5), bool)
KEPT[4, 4] = False
KEPT[5, [0, 2]] = False

# Scores of the implementation before the redesign (its own copy of the scorer), for the tiny
# LLaVA below. The in-place ablations now go through HFScorer, which takes the softmax in
# float64 where the copy took it in float32: the values agree to ~1e-9 (relative < 1e-6).
BEFORE = {
    "mask": [
        [0.002105105435475707, 0.0024042802397161722],
        [0.002704437356442213, 0.0029937163926661015],
        [0.002631527604535222, 0.0029543933924287558],
        [0.0028190938755869865, 0.0030372117180377245],
        [0.002100985962897539, 0.0024015624076128006],
        [0.002613046672195196, 0.003009087173268199],
    ],
    "pad": [
        [0.002105105435475707, 0.0024042802397161722],
        [0.002704437356442213, 0.0029937163926661015],
        [0.002631527604535222, 0.0029543933924287558],
        [0.0028190938755869865, 0.0030372117180377245],
        [0.0020950734615325928, 0.002393430797383189],
        [0.0026273911353200674, 0.0029916244093328714],
    ],
    "unk": [
        [0.002105105435475707, 0.0024042802397161722],
        [0.002704437356442213, 0.0029937163926661015],
        [0.002631527604535222, 0.0029543933924287558],
        [0.0028190938755869865, 0.0030372117180377245],
        [0.002112027956172824, 0.0024317363277077675],
        [0.002636691089719534, 0.003045995021238923],
    ],
    "delete": [
        [0.0021051051581168923, 0.002404279840530948],
        [0.002704436776185582, 0.0029937158505235584],
        [0.0026315272521992704, 0.0029543937627821175],
        [0.002819093661485341, 0.0030372109301365184],
        [0.0021008256819350325, 0.0024014553423706863],
        [0.0026149719632490398, 0.0030089358195612933],
    ],
}


@pytest.fixture(scope="module")
def tiny_llava():
    import torch

    from mllm_attr import load_adapter
    from mllm_attr.testing.tiny_models import build_tiny

    torch.manual_seed(0)
    return load_adapter(build_tiny("llava"))


@pytest.fixture(scope="module")
def case(tiny_llava):
    """Image, teacher-forced answer (no greedy string involved), label map."""
    image = np.random.default_rng(1).integers(1, 255, size=(32, 32, 3), dtype=np.uint8)
    gen = tiny_llava.teacher_force(image, PROMPT, "the circle is red")
    return image, gen, grid_labels(32, 32, 4)


# --------------------------------------------------------------------------- the scorer hook


@pytest.mark.parametrize("ablation", ["mask", "pad", "unk", "delete"])
def test_scores_match_the_implementation_before_the_redesign(tiny_llava, case, ablation):
    image, gen, labels = case
    scorer = joint_scorer(tiny_llava, image, gen, POSITIONS, prompt_words(PROMPT), text_ablation=ablation, batch_size=4)
    scorer.set_regions(labels)
    got = scorer.score(REGIONS, KEPT)
    if ablation == "delete":  # the generic path was already built on the adapter's scorers: unchanged
        np.testing.assert_array_equal(got, BEFORE[ablation])
    else:
        np.testing.assert_allclose(got, BEFORE[ablation], rtol=1e-6, atol=0)


@pytest.mark.parametrize("ablation", ["mask", "pad", "unk", "delete"])
@pytest.mark.parametrize("fast_path", ["auto", False])
def test_no_word_ablated_is_exactly_the_plain_scorer(tiny_llava, case, ablation, fast_path):
    image, gen, labels = case
    words = prompt_words(PROMPT)
    options = {"text_ablation": ablation, "batch_size": 4, "fast_path": fast_path}
    scorer = joint_scorer(tiny_llava, image, gen, POSITIONS, words, **options)
    plain = tiny_llava.scorer(image, gen, POSITIONS, batch_size=4, fast_path=fast_path)
    scorer.set_regions(labels)
    plain.set_regions(labels)
    expected = plain.score_regions(REGIONS)
    np.testing.assert_array_equal(scorer.score(REGIONS, np.ones_like(KEPT)), expected)
    np.testing.assert_array_equal(scorer.score_regions(REGIONS), expected)
    assert isinstance(scorer, JointScorer)
    if ablation != "delete":
        assert isinstance(scorer, HFScorer) and scorer.fast_report["used"] == plain.fast_report["used"]


def _direct_forward(adapter, image, gen, regions, ablated_tokens, fill):
    """Reference: one plain model forward on the composed image and the ablated prompt."""
    import torch
    from PIL import Image

    from mllm_attr.mask import compose

    labels = grid_labels(*image.shape[:2], 4)
    img = Image.fromarray(compose(image, np.zeros_like(image), regions[labels]))
    inputs = dict(adapter.processor(images=[img], text=[adapter.chat_text(gen.prompt)], return_tensors="pt"))
    prompt_len = inputs["input_ids"].shape[1]
    answer = torch.tensor(gen.token_ids[: max(POSITIONS)])[None]
    ids = torch.cat([inputs["input_ids"], answer], 1)
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(answer)], 1)
    if fill is None:
        mask[0, ablated_tokens] = 0
    else:
        ids[0, ablated_tokens] = fill
    with torch.no_grad():
        logits = adapter.model(input_ids=ids, attention_mask=mask, pixel_values=inputs["pixel_values"]).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return np.array([float(logp[prompt_len + p - 1, gen.token_ids[p]].exp()) for p in POSITIONS])


@pytest.mark.parametrize("ablation", ["mask", "pad"])
def test_ablated_words_match_a_direct_forward_on_the_ablated_prompt(tiny_llava, case, ablation):
    image, gen, labels = case
    scorer = joint_scorer(tiny_llava, image, gen, POSITIONS, prompt_words(PROMPT), text_ablation=ablation, batch_size=1)
    scorer.set_regions(labels)
    got = scorer.score(REGIONS[4:], KEPT[4:])
    for row, (regions, kept) in enumerate(zip(REGIONS[4:], KEPT[4:])):
        tokens = sorted({t for w, k in zip(scorer.words, kept) if not k for t in w.token_positions})
        ref = _direct_forward(tiny_llava, image, gen, regions, tokens, scorer.neutral_id)
        # The reference computes every position's logits (the scorer only the targets'): float32 rounding only.
        np.testing.assert_allclose(got[row], ref, rtol=1e-6, atol=0)
        assert not np.allclose(got[row], scorer.score_regions(regions)[0], rtol=1e-4, atol=0)  # the ablation matters


def test_deleted_words_are_the_plain_scorer_on_the_shortened_prompt(tiny_llava, case):
    image, gen, labels = case
    scorer = joint_scorer(tiny_llava, image, gen, POSITIONS, prompt_words(PROMPT), text_ablation="delete", batch_size=4)
    assert isinstance(scorer, DeleteWordsScorer)
    scorer.set_regions(labels)
    short = tiny_llava.scorer(image, dataclasses.replace(gen, prompt="What color is the?"), POSITIONS, batch_size=4)
    short.set_regions(labels)
    np.testing.assert_array_equal(scorer.score(REGIONS[4:5], KEPT[4:5]), short.score_regions(REGIONS[4:5]))


def test_score_regions_ablated_checks_and_counts(tiny_llava, case):
    image, gen, labels = case
    scorer = tiny_llava.scorer(image, gen, POSITIONS, batch_size=2)
    ablate = np.zeros((3, scorer.prompt_length), bool)
    with pytest.raises(RuntimeError, match="set_regions"):
        scorer.score_regions_ablated(REGIONS[:3], ablate)
    scorer.set_regions(labels)
    with pytest.raises(ValueError, match=r"region table of shape \(B, 4\).*got shape \(3, 5\)"):
        scorer.score_regions_ablated(np.ones((3, 5), bool), ablate)
    with pytest.raises(ValueError, match="ablation table of shape"):
        scorer.score_regions_ablated(REGIONS[:3], ablate[:, :-1])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        scorer.score_regions_ablated(REGIONS[:3], ablate, fill=10**9)
    with pytest.raises(TypeError, match="integer token id"):
        scorer.score_regions_ablated(REGIONS[:3], ablate, fill=1.5)  # type: ignore[arg-type]
    assert scorer.forwards == 0
    out = scorer.score_regions_ablated(REGIONS[:3], ablate)
    assert out.shape == (3, 2) and scorer.forwards == 3 and scorer.counter.calls == 2  # batch_size 2: 2 + 1
    np.testing.assert_array_equal(out, scorer.score_regions(REGIONS[:3]))


def test_the_image_scorer_checks_region_tables(rgb_image):
    adapter = CallableAdapter(lambda ims, g, p: np.full((len(ims), len(p)), 0.5), lambda i, p: "red")
    gen = adapter.from_text(rgb_image, PROMPT, "red")
    scorer = adapter.scorer(rgb_image, gen, [0])
    scorer.set_regions(grid_labels(40, 40, 4))
    with pytest.raises(ValueError, match=r"region table of shape \(B, 4\).*got shape \(2, 3\)"):
        scorer.score_regions(np.ones((2, 3), bool))
    assert scorer.score_regions(np.ones(4, bool)).shape == (1, 1)  # one row = one subset


def test_joint_scorer_has_the_image_scorers_checks(rgb_image):
    """The checks of Scorer: non-finite and mis-shaped outputs are errors, region tables are checked."""
    outputs = {"value": np.nan}

    def score(images, generation, positions):
        return np.full((len(images), len(positions)), outputs["value"])

    adapter = CallableAdapter(score, lambda i, p: "red")
    gen = generation_from_text(PROMPT, "red")  # not from_text: that would score NaN on the full image
    scorer = joint_scorer(adapter, rgb_image, gen, [0], prompt_words(PROMPT), batch_size=2)
    with pytest.raises(RuntimeError, match="set_regions"):
        scorer.score(np.ones((1, 4), bool), np.ones((1, 5), bool))
    scorer.set_regions(grid_labels(40, 40, 4))
    with pytest.raises(ValueError, match="non-finite"):
        scorer.score(np.ones((1, 4), bool), np.ones((1, 5), bool))
    with pytest.raises(ValueError, match="region table"):
        scorer.score(np.ones((1, 3), bool), np.ones((1, 5), bool))
    with pytest.raises(ValueError, match="word mask shape"):
        scorer.score(np.ones((1, 4), bool), np.ones((1, 4), bool))
    outputs["value"] = 0.25
    assert np.array_equal(scorer.score(np.ones((3, 4), bool), np.ones((3, 5), bool)), np.full((3, 1), 0.25))
    assert scorer.forwards == 3 and scorer.counter.calls == 2
    with pytest.raises(ValueError, match="fill shape"):
        joint_scorer(adapter, rgb_image, gen, [0], prompt_words(PROMPT), fill=np.zeros((4, 4, 3), np.uint8))


def test_deprecated_inner_is_the_scorer_itself(tiny_llava, case):
    image, gen, _ = case
    scorer = joint_scorer(tiny_llava, image, gen, POSITIONS, prompt_words(PROMPT))
    with pytest.warns(DeprecationWarning, match="inner"):
        assert scorer.inner is scorer


# --------------------------------------------------------------------------- the Explainer path


def circle_adapter(image: np.ndarray, calls: list | None = None) -> CallableAdapter:
    """p = visible fraction of grid cell 0, x 1 with "circle" in the prompt else x 0.1."""
    cell0 = grid_labels(*image.shape[:2], 4) == 0

    def score(images, generation, positions):
        if calls is not None:
            calls.append(len(images))
        vis = (np.all(images == image[None], axis=-1) & cell0[None]).sum(axis=(1, 2)) / cell0.sum()
        factor = 1.0 if "circle" in generation.prompt else 0.1
        return np.repeat((vis * factor)[:, None], len(positions), axis=1)

    return CallableAdapter(score, lambda img, prompt: "red", name="circle-fake", batch_size=5)


def test_prompt_token_explainer_is_an_explainer(rgb_image):
    ex = PromptTokenExplainer(circle_adapter(rgb_image), n_regions=4, segmenter="grid", seed=3)
    assert isinstance(ex, Explainer)
    attr = ex(rgb_image, prompt=PROMPT)
    assert isinstance(attr, PromptAttribution) and isinstance(attr, AttributionResult)
    s = attr.settings
    assert s["method"] == "eagle-joint-prompt" and s["seed"] == 3 and s["n_words"] == 5
    assert s["text_ablation"] == "delete" and s["text_ablation_requested"] == "auto"
    assert s["segmenter"] == "grid" and s["segments_supplied"] is False and s["n_regions"] == 4
    for key in ("fast_path", "image", "target", "segmenter_params", "forward_calls", "adapter", "search_info"):
        assert key in s, key  # recorded by the Explainer's machinery, as for an Explanation


def test_user_labels_are_supported(rgb_image):
    labels = grid_labels(40, 40, 4)
    adapter = circle_adapter(rgb_image)
    by_labels = explain_prompt_tokens(adapter, rgb_image, prompt=PROMPT, labels=labels + 10)  # relabelled 0..3
    by_grid = explain_prompt_tokens(adapter, rgb_image, prompt=PROMPT, n_regions=4, segmenter="grid")
    assert by_labels.settings["segmenter"] == "user-labels" and by_labels.settings["segments_supplied"] is True
    assert np.array_equal(by_labels.labels, by_grid.labels)
    assert np.array_equal(by_labels.ordering, by_grid.ordering) and np.array_equal(by_labels.ins, by_grid.ins)
    by_callable = explain_prompt_tokens(
        adapter, rgb_image, prompt=PROMPT, segmenter=lambda im: grid_labels(*im.shape[:2], 4)
    )
    assert by_callable.settings["segmenter"] == "user-callable"
    assert np.array_equal(by_callable.ordering, by_grid.ordering)


def test_bad_labels_and_budget_fail_before_any_model_work(rgb_image):
    calls: list = []
    adapter = circle_adapter(rgb_image, calls)
    gen = adapter.from_text(rgb_image, PROMPT, "red")
    calls.clear()
    with pytest.raises(ValueError, match=r"expected shape \(40, 40\)"):
        explain_prompt_tokens(adapter, rgb_image, gen, labels=grid_labels(40, 30, 4))
    # 4 regions + 5 words: 2 + 2 x 8 = 18 forwards at least.
    too_small = r"max_forwards=17 is too small for 9 features \(4 regions \+ 5 prompt words\).* 18 forwards"
    with pytest.raises(ValueError, match=too_small):
        explain_prompt_tokens(adapter, rgb_image, gen, n_regions=4, segmenter="grid", max_forwards=17)
    with pytest.raises(ValueError, match="no word to attribute"):
        explain_prompt_tokens(adapter, rgb_image, prompt="?!", n_regions=4, segmenter="grid")
    assert calls == []
    assert explain_prompt_tokens(adapter, rgb_image, gen, n_regions=4, segmenter="grid", max_forwards=18).forwards <= 18


def test_explainer_options_are_checked_at_construction(rgb_image):
    adapter = circle_adapter(rgb_image)
    with pytest.raises(ValueError, match="unknown text_ablation"):
        PromptTokenExplainer(adapter, text_ablation="blank")
    with pytest.raises(ValueError, match="'hierarchical' .* prompt word"):
        PromptTokenExplainer(adapter, search="hierarchical")
    with pytest.raises(ValueError, match="fast_path=True"):
        PromptTokenExplainer(adapter, fast_path=True)
    with pytest.raises(ValueError, match="n_regions must be >= 2"):
        PromptTokenExplainer(adapter, n_regions=1)
    with pytest.raises(TypeError, match="include_punctuation"):
        PromptTokenExplainer(adapter, include_punctuation="yes")  # type: ignore[arg-type]


def test_explanations_are_unchanged_by_the_refactor(rgb_image):
    """The plain Explainer still gives an Explanation with its usual settings."""
    expl = Explainer(circle_adapter(rgb_image), n_regions=4, segmenter="grid")(rgb_image, prompt=PROMPT)
    assert type(expl) is Explanation and expl.settings["method"] == "eagle"
    assert expl.ordering[0] == 0 and expl.forwards == 4 * 5


# --------------------------------------------------------------------------- the result base


def _attr(rgb_image) -> PromptAttribution:
    return explain_prompt_tokens(circle_adapter(rgb_image), rgb_image, prompt=PROMPT, n_regions=4, segmenter="grid")


def test_curve_axes_are_named_for_what_they_are(rgb_image):
    attr = _attr(rgb_image)
    n = attr.n_features
    assert attr.x_axis.startswith("fraction of features") and Explanation.x_axis == "fraction of image area"
    np.testing.assert_array_equal(attr.curve_x(), np.arange(1, n + 1) / n)
    x, y = attr.feature_deletion_curve()
    assert x[0] == 0 and x[-1] == 1 and len(x) == n + 1
    assert attr.auc("insertion") == attr.feature_insertion_auc() and attr.auc("deletion") == attr.feature_deletion_auc()
    summary = attr.summary()
    assert "feature_insertion_auc" in summary and "insertion_auc" not in summary and summary["n_words"] == 5
    js = attr.to_json()
    assert js["result_type"] == "prompt_attribution" and js["curve_x_axis"] == attr.x_axis
    assert "feature_deletion_auc" in js["per_token"][0]
    with pytest.raises(ValueError, match="unknown curve kind"):
        attr.curve("sideways")


def test_explanation_auc_is_area_weighted(rgb_image):
    """Regions of unequal size: the explanation's x axis is the area, a prompt attribution's the feature count."""
    labels = np.zeros((40, 40), np.int32)
    labels[:, 30:] = 1  # region 0: 75 % of the image, region 1: 25 %
    adapter = circle_adapter(rgb_image)
    expl = Explainer(adapter, labels=labels)(rgb_image, prompt=PROMPT)
    attr = explain_prompt_tokens(adapter, rgb_image, prompt=PROMPT, labels=labels)
    assert expl.summary().keys() >= {"insertion_auc", "deletion_auc", "n_regions"}
    area_first = 0.75 if expl.ordering[0] == 0 else 0.25
    np.testing.assert_allclose(expl.curve_x(), [area_first, 1.0])
    np.testing.assert_allclose(expl.insertion_curve()[0], [0.0, area_first, 1.0])
    np.testing.assert_allclose(attr.curve_x(), np.arange(1, 2 + 6) / 7)  # 2 regions + 5 words
    assert expl.insertion_auc() == expl.auc("insertion")


def test_old_curve_names_are_deprecated_aliases(rgb_image):
    attr = _attr(rgb_image)
    for old, new in (
        ("insertion_auc", "feature_insertion_auc"),
        ("deletion_auc", "feature_deletion_auc"),
        ("insertion_curve", "feature_insertion_curve"),
        ("deletion_curve", "feature_deletion_curve"),
    ):
        with pytest.warns(DeprecationWarning, match=f"PromptAttribution.{old} is deprecated.*{new}"):
            got = getattr(attr, old)()
        want = getattr(attr, new)()
        assert np.array_equal(np.asarray(got), np.asarray(want)), old


def _assert_same(a: AttributionResult, b: AttributionResult) -> None:
    assert type(a) is type(b)
    for name in ("image", "labels", "ordering", "ins", "dele", "value", "p_full", "p_blank"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.generation == b.generation and a.positions == b.positions
    assert a.forwards == b.forwards and a.seconds == b.seconds
    assert json.loads(json.dumps(a.to_json())) == json.loads(json.dumps(b.to_json()))


@pytest.mark.filterwarnings("ignore:PromptAttribution.*is deprecated:DeprecationWarning")  # viz's heatmap title
@pytest.mark.parametrize("heatmap", [False, True])
def test_prompt_attribution_round_trip(rgb_image, tmp_path, heatmap):
    attr = _attr(rgb_image)
    out = attr.save(tmp_path / "out", heatmap=heatmap)
    assert (out / "heatmap.png").exists() == heatmap and (out / "saliency.npy").exists()
    back = PromptAttribution.load(out)
    _assert_same(back, attr)
    assert back.words == attr.words and all(isinstance(w, PromptWord) for w in back.words)
    assert back.rank_of_word("circle") == attr.rank_of_word("circle") and back.table() == attr.table()
    np.testing.assert_array_equal(np.load(out / "saliency.npy"), attr.saliency())
    with pytest.raises(FileExistsError):
        attr.save(out)
    attr.save(out, overwrite=True, heatmap=False)


def test_hf_prompt_attribution_round_trip(tiny_llava, case, tmp_path):
    image, gen, labels = case
    attr = explain_prompt_tokens(tiny_llava, image, gen, target=[1], labels=labels, text_ablation="pad")
    assert attr.settings["text_ablation"] == "pad" and attr.settings["fast_path"]["requested"] == "auto"
    back = PromptAttribution.load(attr.save(tmp_path / "hf", heatmap=False))
    _assert_same(back, attr)
    assert [w.token_positions for w in back.words] == [w.token_positions for w in attr.words] != [()] * 5


def test_explanation_round_trip_and_result_types_are_kept_apart(rgb_image, tmp_path):
    adapter = circle_adapter(rgb_image)
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, prompt=PROMPT)
    e_dir = expl.save(tmp_path / "expl", heatmap=False)
    _assert_same(Explanation.load(e_dir), expl)
    assert json.loads((e_dir / "explanation.json").read_text())["result_type"] == "explanation"
    p_dir = _attr(rgb_image).save(tmp_path / "prompt", heatmap=False)
    with pytest.raises(ValueError, match="'prompt_attribution'.*Explanation"):
        Explanation.load(p_dir)
    with pytest.raises(ValueError, match="'explanation'.*PromptAttribution"):
        PromptAttribution.load(e_dir)
    # Files written before result_type existed are explanations.
    meta = json.loads((e_dir / "explanation.json").read_text())
    del meta["result_type"]
    (e_dir / "explanation.json").write_text(json.dumps(meta))
    _assert_same(Explanation.load(e_dir), expl)


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.pop("words"),
        lambda m: m.update(words="circle"),
        lambda m: m.update(words=[{"text": "x", "span": [0]}] * 5),
        lambda m: m.update(words=m["words"][:4]),
    ],
)
def test_damaged_prompt_words_are_a_clear_error(rgb_image, tmp_path, damage):
    d = _attr(rgb_image).save(tmp_path / "out", heatmap=False)
    meta = json.loads((d / "explanation.json").read_text())
    damage(meta)
    (d / "explanation.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="prompt-word attribution"):
        PromptAttribution.load(d)


def test_result_validation_is_shared(rgb_image):
    attr = _attr(rgb_image)
    fields = {f.name: getattr(attr, f.name) for f in dataclasses.fields(attr)}
    with pytest.raises(ValueError, match="must contain each of the 9 features exactly once"):
        PromptAttribution(**{**fields, "ordering": np.zeros(9, np.int64)})
    with pytest.raises(ValueError, match="9 features but the label map holds 4 regions.*4 prompt words"):
        PromptAttribution(**{**fields, "words": attr.words[:4]})
    with pytest.raises(ValueError, match=r"PromptAttribution.positions \[5\]"):
        PromptAttribution(**{**fields, "positions": [5]})
    with pytest.raises(ValueError, match="uint8"):
        PromptAttribution(**{**fields, "image": attr.image.astype(np.float64)})
    with pytest.raises(TypeError, match="PromptWord"):
        PromptAttribution(**{**fields, "words": ["circle"] * 5})
    with pytest.raises(IndexError, match="token 3 out of range"):
        attr.feature_insertion_auc(3)


def test_joint_objective_orders_features(rgb_image):
    adapter = circle_adapter(rgb_image)
    gen = adapter.from_text(rgb_image, PROMPT, "red")
    obj = JointObjective(joint_scorer(adapter, rgb_image, gen, [0], prompt_words(PROMPT)), grid_labels(40, 40, 4))
    p_full, p_blank = obj.endpoints()
    assert obj.n_regions == 9 and p_full[0] == 1.0 and p_blank[0] == 0.0 and obj.forwards == 2


# --------------------------------------------------------------------------- imports


def test_prompt_tokens_imports_submodules_not_the_package_root():
    src = pathlib.Path(__file__).parents[1] / "mllm_attr" / "analysis" / "prompt_tokens.py"
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert not (node.level == 2 and node.module is None), "from .. import X: import from the submodule"
            assert node.module != "mllm_attr", "import from the submodules, not the package root"


def test_modules_import_on_their_own():
    import subprocess
    import sys

    for mod in ("mllm_attr.explanation", "mllm_attr.analysis.prompt_tokens", "mllm_attr.explainer"):
        proc = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_no_warning_from_the_new_names(rgb_image):
    attr = _attr(rgb_image)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        attr.summary(), attr.to_json(), attr.feature_insertion_curve(), attr.saliency()
