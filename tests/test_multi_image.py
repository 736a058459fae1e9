"""Several images in one prompt: generation, exact scoring, the explainer, the result, the CLI.

Scores are checked against a plain processor call plus a full forward on hand-masked images
(no code of the scorer involved), on tiny models of the real transformers classes (LLaVA-1.5,
Qwen2-VL, Qwen2.5-VL) and on the embedded shapes-llava model.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from mllm_attr import load_adapter
from mllm_attr.adapters.hf import TEXT_KEYS, images_sha256, images_to_strip
from mllm_attr.analysis.multi_image import (
    MultiImageAttribution,
    MultiImageExplainer,
    explain_multi_image,
    offset_label_maps,
)
from mllm_attr.assets import example_image_path
from mllm_attr.image import load_image
from mllm_attr.segment import segment
from mllm_attr.testing.tiny_models import build_tiny

PROMPT = "what is this"


def reference_probs(adapter, images, generation, positions) -> np.ndarray:
    """Target probabilities by the book: the processor on the (masked) image list and the prompt,
    the generated ids appended, ONE full forward, float64 softmax over every position."""
    inputs = adapter.processor(
        images=list(images),
        text=[adapter.multi_image_chat_text(generation.prompt, len(images))],
        return_tensors="pt",
    )
    inputs = dict(inputs)
    inputs.pop("labels", None)
    length = int(inputs["input_ids"].shape[1])
    ids = torch.tensor(generation.token_ids, dtype=torch.long)
    full = adapter.extend_text_inputs({k: v for k, v in inputs.items() if k in TEXT_KEYS}, ids)
    full.update({k: v for k, v in inputs.items() if k not in TEXT_KEYS})
    with torch.no_grad():
        logits = adapter.model(**full, use_cache=False).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return np.array([float(logp[length + p - 1, generation.token_ids[p]].exp()) for p in positions])


def strip_labels(maps) -> np.ndarray:
    return images_to_strip([m[..., None].repeat(3, axis=-1) for m in maps])[..., 0].astype(np.int32)


def two_images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(1, 255, (40, 48, 3), dtype=np.uint8),
        rng.integers(1, 255, (32, 56, 3), dtype=np.uint8),
    ]


@pytest.fixture(scope="module", params=["llava", "qwen2_vl", "qwen2_5_vl"])
def tiny(request):
    torch.manual_seed(0)
    return load_adapter(build_tiny(request.param))


@pytest.fixture(scope="module")
def tiny_llava():
    torch.manual_seed(0)
    return load_adapter(build_tiny("llava"))


@pytest.fixture(scope="module")
def shapes():
    return load_adapter("shapes-llava")


# -- scoring ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_path", [False, "auto"])
def test_scores_equal_processor_and_full_forward_on_masked_images(tiny, fast_path):
    """Every candidate's score equals the processor + full forward on the hand-masked images: an
    image's mask that were ignored, or region ids shifted between images, would fail this."""
    images = two_images()
    gen = tiny.generate(images, PROMPT, max_new_tokens=3)
    positions = list(range(len(gen)))
    maps = offset_label_maps([segment(im, 4, "grid").labels for im in images])
    labels = strip_labels(maps)
    n = int(labels.max()) + 1
    rng = np.random.default_rng(1)
    table = rng.random((6, n)) < 0.5
    table[0], table[1] = True, False
    table[2] = np.arange(n) < int(maps[0].max()) + 1  # image 0 only
    table[3] = ~table[2]  # image 1 only
    scorer = tiny.multi_image_scorer(images, gen, positions, batch_size=4, fast_path=fast_path)
    scorer.set_regions(labels)
    got = scorer.score_regions(table)
    assert scorer.forwards == len(table)
    want = np.stack(
        [
            reference_probs(
                tiny,
                [np.where(row[m][..., None], im, 0).astype(np.uint8) for m, im in zip(maps, images)],
                gen,
                positions,
            )
            for row in table
        ]
    )
    spread = float(want.max() - want.min())
    assert spread > 1e-5  # the masks change the scores: the comparison can tell masks apart
    if fast_path is False:
        assert scorer.fast_report["used"] is False
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    else:
        assert scorer.fast_report["used"] is True, scorer.fast_report
        np.testing.assert_allclose(got, want, rtol=0, atol=max(1e-6, 3e-3 * spread))


def test_full_input_score_is_the_generation_probability_and_batching_changes_nothing(tiny):
    images = two_images(2)
    gen = tiny.generate(images, PROMPT, max_new_tokens=4)
    positions = list(range(len(gen)))
    maps = offset_label_maps([segment(im, 3, "grid").labels for im in images])
    labels = strip_labels(maps)
    n = int(labels.max()) + 1
    batched = tiny.multi_image_scorer(images, gen, positions, batch_size=5, fast_path=False)
    batched.set_regions(labels)
    full = batched.score_regions(np.ones(n, bool))[0]
    np.testing.assert_allclose(full, gen.probs, rtol=1e-5, atol=1e-7)
    table = np.random.default_rng(3).random((7, n)) < 0.5
    one = tiny.multi_image_scorer(images, gen, positions, batch_size=1, fast_path=False)
    one.set_regions(labels)
    together = batched.score_regions(table)
    alone = np.concatenate([one.score_regions(row) for row in table])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-9)
    assert one.counter.calls == len(table) and one.forwards == len(table)


def test_one_image_list_is_the_single_image(tiny_llava):
    image = two_images()[0]
    single, listed = (
        tiny_llava.generate(image, PROMPT, max_new_tokens=3),
        tiny_llava.generate([image], PROMPT, max_new_tokens=3),
    )
    assert single.token_ids == listed.token_ids and single.image_sha256 == listed.image_sha256
    np.testing.assert_allclose(single.probs, listed.probs, rtol=1e-6)


def test_hash_order_and_teacher_forcing(tiny_llava):
    a, b = two_images()
    gen = tiny_llava.generate([a, b], PROMPT, max_new_tokens=3)
    assert gen.image_sha256 == images_sha256([load_image(a).sha256, load_image(b).sha256])
    assert gen.image_sha256 != tiny_llava.generate([b, a], PROMPT, max_new_tokens=3).image_sha256
    with pytest.raises(ValueError, match="other images"):
        MultiImageExplainer(tiny_llava, n_regions=2)([b, a], gen, target=0)
    forced = tiny_llava.teacher_force([a, b], PROMPT, "yes it is")
    assert forced.counterfactual and forced.image_sha256 == gen.image_sha256
    np.testing.assert_allclose(forced.probs, reference_probs(tiny_llava, [a, b], forced, range(len(forced))), rtol=1e-6)


def test_families_that_cannot_are_named():
    torch.manual_seed(0)
    adapter = load_adapter(build_tiny("paligemma"))
    with pytest.raises(ValueError, match="paligemma"):
        adapter.generate(two_images(), PROMPT, max_new_tokens=2)
    with pytest.raises(ValueError, match="paligemma"):
        explain_multi_image(adapter, two_images(), prompt=PROMPT, n_regions=2)


def test_geometry_searches_and_other_adapters_are_refused(tiny_llava):
    with pytest.raises(ValueError, match="hierarchical"):
        MultiImageExplainer(tiny_llava, search="hierarchical")
    from mllm_attr.testing.fake import make_fake_adapter

    with pytest.raises(TypeError, match="transformers adapter"):
        MultiImageExplainer(make_fake_adapter(two_images()[0], {"a": np.ones((40, 48))}))


# -- explainer and result -------------------------------------------------------------------------


@pytest.mark.parametrize("search", ["greedy", "bidirectional", "lazy"])
def test_explainer_runs_generic_searches_and_the_result_round_trips(tiny_llava, search, tmp_path):
    images = two_images()
    attr = explain_multi_image(
        tiny_llava, images, prompt=PROMPT, target=0, n_regions=[4, 2], segmenter="grid", search=search
    )
    assert isinstance(attr, MultiImageAttribution)
    assert attr.n_images == 2 and attr.n_regions_per_image == [4, 2] and attr.region_offsets == [0, 4]
    assert sorted(attr.ordering.tolist()) == list(range(6))
    assert [m.shape for m in attr.saliencies()] == [(40, 48), (32, 56)]
    assert all(np.array_equal(x, y) for x, y in zip(attr.images, images))
    assert attr.image_of_region().tolist() == [0, 0, 0, 0, 1, 1]
    shares = attr.image_shares(top_k=2)
    assert sum(s["score_share"] for s in shares) == pytest.approx(1.0)
    assert sum(s["top_k_share"] for s in shares) == pytest.approx(1.0)
    assert attr.settings["multi_image"]["scoring_path"] in ("fast", "processor")
    assert attr.settings["method"] == "eagle-multi-image"
    np.testing.assert_allclose(attr.p_full, attr.generation.probs[:1], rtol=1e-4)
    out = attr.save(tmp_path / "out")
    assert {p.name for p in out.iterdir()} == {"explanation.json", "saliency.npy", "arrays.npz", "heatmap.png"}
    meta = json.loads((out / "explanation.json").read_text())
    assert meta["result_type"] == "multi_image_attribution" and meta["image_shapes"] == [[40, 48], [32, 56]]
    back = MultiImageAttribution.load(out)
    assert np.array_equal(back.ordering, attr.ordering) and back.image_shares() == attr.image_shares()
    from mllm_attr import Explanation

    with pytest.raises(ValueError, match="multi_image_attribution"):
        Explanation.load(out)
    assert "images=2" in repr(attr)
    assert "image shares" in attr._repr_html_()


def test_budget_and_region_counts_are_checked_before_model_work(tiny_llava):
    with pytest.raises(ValueError, match="too small"):
        MultiImageExplainer(tiny_llava, n_regions=4, segmenter="grid", max_forwards=10)(two_images(), prompt=PROMPT)
    with pytest.raises(ValueError, match="3 counts for 2 images"):
        MultiImageExplainer(tiny_llava, n_regions=[2, 2, 2])(two_images(), prompt=PROMPT)
    with pytest.raises(ValueError, match="n_regions"):
        MultiImageExplainer(tiny_llava, n_regions=[2, 1])


# -- the embedded model ---------------------------------------------------------------------------


def test_shapes_llava_takes_two_images_and_a_blank_image_gets_no_share(shapes):
    """The embedded model was trained on one image per prompt; with two it still answers, the
    full-input score is the generation probability, and a black image (black fill: hiding its
    regions changes no pixel) gets exactly no gain."""
    scene = load_image(example_image_path()).array
    black = np.zeros((48, 64, 3), dtype=np.uint8)
    gen = shapes.generate([scene, black], "Describe the image.")
    assert "diamond" in gen.text
    attr = explain_multi_image(shapes, [scene, black], gen, target="diamond", n_regions=4, fast_path="auto")
    np.testing.assert_allclose(attr.p_full, [gen.probs[p] for p in attr.positions], rtol=1e-4)
    first, second = attr.image_shares(top_k=1)
    assert second["gain_share"] == 0.0 and first["gain_share"] == pytest.approx(1.0)
    assert first["top_k_share"] == 1.0 and first["best_rank"] == 0
    assert attr.insertion_auc() > attr.deletion_auc()


def test_report_has_a_section_for_several_images(shapes, tmp_path):
    """write_report draws one map per image (one scale), each image's shares, the curves over the
    total image area and the per-image table; a list mixing it with a one-image explanation works."""
    from mllm_attr import Explainer
    from mllm_attr.data.shapes import make_scene, scene_rng
    from mllm_attr.report import write_report

    scene = load_image(example_image_path()).array
    other = make_scene(scene_rng(2, "test", 0)).image
    gen = shapes.generate([scene, other], "Describe the image.")
    attr = explain_multi_image(shapes, [scene, other], gen, target="orange cross", n_regions=[4, 3], segmenter="grid")
    single = Explainer(shapes, n_regions=4, segmenter="grid")(scene, prompt="Describe the image.", target="diamond")
    page = write_report([attr, single], tmp_path / "r.html").read_text()
    multi, rest = page.split('<section class="expl" id="e1"')
    assert '<section class="expl multi" id="e0"' in multi and "(2 images in one prompt)" in multi
    for i in (1, 2):
        assert multi.count(f'alt="input image {i}"') == 1 and multi.count(f'alt="map of image {i}"') == 1
    assert multi.count('alt="map of image') == 2 and multi.count("data:image/png") == 4
    for s in attr.image_shares():
        assert f"<b>image {s['image'] + 1}</b>: {s['score_share']:.1%} of the map, {s['gain_share']:.1%}" in multi
        assert f"{s['top_k_share']:.0%} of the top {s['top_k']} regions; best rank {s['best_rank']} " in multi
        assert f'<td class="num">{s["score_share"]:.3f}</td><td class="num">{s["gain_share"]:.3f}</td>' in multi
    assert multi.count('<svg role="img"') == 1 and "fraction of the total image area (all images)" in multi
    assert f"insertion (AUC {attr.insertion_auc():.3f})" in multi and "Shares per image" in multi
    assert _html_escape(gen.text) in multi and "Settings" in multi and "scoring path" in multi
    assert "joint heatmap" in rest and "joint heatmap" not in multi  # the one-image section, as before
    with pytest.raises(TypeError, match="MultiImageAttribution"):
        write_report([attr, "not a result"], tmp_path / "x.html")


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# -- CLI ------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from mllm_attr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return int(code), out.getvalue(), err.getvalue()


def test_cli_repeated_image_writes_the_multi_image_result(tmp_path):
    from PIL import Image

    flipped = tmp_path / "flipped.png"
    Image.fromarray(np.ascontiguousarray(load_image(example_image_path()).array[:, ::-1])).save(flipped)
    argv = ["explain", "--image", str(example_image_path()), "--image", str(flipped), "--prompt", "Describe the image."]
    code, out, err = run_cli(
        [*argv, "--target", "diamond", "--n-regions", "3", "--threads", "1", "-q", "--out", str(tmp_path / "o")]
    )
    assert code == 0, err
    assert "image 2:" in out and "scoring path:" in out
    attr = MultiImageAttribution.load(tmp_path / "o")
    assert attr.n_images == 2 and attr.target_text == "diamond"
    code, _, err = run_cli(["report", str(tmp_path / "o"), "--out", str(tmp_path / "r.html")])
    assert code == 0, err  # the report command reads a several-images result by its result_type
    assert "2 images in one prompt" in (tmp_path / "r.html").read_text()
    code, _, err = run_cli([*argv, "--labels", "x.npy", "--out", str(tmp_path / "p")])
    assert code == 2 and "one label map" in err and not (tmp_path / "p").exists()
    code, _, err = run_cli([*argv, "--n-regions", "3", "--max-forwards", "7", "--out", str(tmp_path / "b")])
    assert code != 0 and "over 2 images" in err and not (tmp_path / "b").exists()
    code, _, err = run_cli([*argv, "--search", "hierarchical", "--out", str(tmp_path / "q")])
    assert code == 2 and "hierarchical" in err and not (tmp_path / "q").exists()
