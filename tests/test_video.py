"""Video: frames, the model's video input, exact scoring, the explainer, the result, the CLI.

The video tensors are checked against a layout written here from the Qwen-VL video processors'
documented patch order (frames normalised by hand, temporal patches of two frames, the last frame
repeated to fill one), and candidate scores against ONE full forward on hand-masked frames with
a prompt tokenised here (Qwen3-VL's timestamped placeholder from transformers' own
``Qwen3VLProcessor.replace_video_token``), on tiny models of the real transformers classes
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and LLaVA-OneVision (frames resized, one token per pooled block).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pytest
import torch

from mllm_attr import Video, load_adapter, load_video
from mllm_attr.adapters.hf import VIDEO_FAMILIES
from mllm_attr.analysis.multi_image import offset_label_maps
from mllm_attr.analysis.video import VideoAttribution, VideoExplainer, explain_video
from mllm_attr.segment import segment
from mllm_attr.testing.tiny_models import build_tiny, save_tiny

PROMPT = "what happens"


def frames_of(n: int = 3, seed: int = 0, unit: int = 28) -> list[np.ndarray]:
    """Random frames of 2 x 3 merged patches (``unit`` = patch x merge pixels): the image processor
    then does not resample them."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 255, (2 * unit, 3 * unit, 3), dtype=np.uint8) for _ in range(n)]


def unit_of(adapter) -> int:
    """Pixels per merged patch (Qwen-VL); LLaVA-OneVision resizes frames anyway (any size does)."""
    return 20 if adapter.family == "llava_onevision" else adapter.processor.image_processor.patch_size * 2


def reference_video_pixels(adapter, frames: list[np.ndarray], merge=2, temporal=2) -> np.ndarray:
    """``pixel_values_videos`` as the video processors lay them out, from the frames alone.

    Qwen-VL: rescale and normalise each frame, repeat the last frame up to a multiple of
    ``temporal``, then patches in the order (t, h-block, w-block, h-in-block, w-in-block) of values
    (c, t-slot, y, x). LLaVA-OneVision: each frame resized (PIL, bicubic) to the square input size,
    rescaled and normalised, ``[1, F, C, S, S]``."""
    ip = adapter.processor.image_processor
    mean, std = np.asarray(ip.image_mean, np.float32), np.asarray(ip.image_std, np.float32)
    if adapter.family == "llava_onevision":
        from PIL import Image

        side = (ip.size.width, ip.size.height)
        resized = [np.asarray(Image.fromarray(f).resize(side, Image.BICUBIC)) for f in frames]
        return np.stack([((f.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1) for f in resized])[None]
    patch = ip.patch_size
    x = np.stack([((f.astype(np.float32) / 255.0) - mean) / std for f in frames]).transpose(0, 3, 1, 2)
    pad = -len(frames) % temporal
    x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
    t, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(t // temporal, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape((t // temporal) * gh * gw, c * temporal * patch * patch)


def qwen3_placeholder(grid: torch.Tensor, n_frames: int, fps: float) -> str:
    """Qwen3-VL's expansion of one video token, by transformers' own ``replace_video_token``."""
    from types import SimpleNamespace

    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
    from transformers.video_utils import VideoMetadata

    shim = SimpleNamespace(
        video_processor=SimpleNamespace(merge_size=2, temporal_patch_size=2),
        vision_start_token="<|vision_start|>",
        vision_end_token="<|vision_end|>",
        video_token="<|video_pad|>",
        _calculate_timestamps=lambda *args: Qwen3VLProcessor._calculate_timestamps(None, *args),
    )
    metadata = VideoMetadata(total_num_frames=n_frames, fps=fps, frames_indices=list(range(n_frames)))
    return Qwen3VLProcessor.replace_video_token(shim, {"video_grid_thw": grid, "video_metadata": [metadata]}, 0)


def reference_probs(adapter, frames, fps, generation, positions) -> np.ndarray:
    """Target probabilities by the book: the chat template's video entry expanded to one
    ``<|video_pad|>`` per merged patch (Qwen3-VL: :func:`qwen3_placeholder`; LLaVA-OneVision: one
    ``<video>`` per pooled 2 x 2 block of each frame plus one) and tokenised here, the video tensors
    of :func:`reference_video_pixels`, the generated ids appended, ONE full forward, float64 softmax."""
    pixels = torch.from_numpy(reference_video_pixels(adapter, list(frames)))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": generation.prompt}]}]
    text = adapter.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    token = "<video>" if adapter.family == "llava_onevision" else "<|video_pad|>"
    if adapter.family == "llava_onevision":
        side = -(-int(np.sqrt(adapter.processor.num_image_tokens)) // 2)
        count = len(frames) * side * side + 1
        text = text.replace(token, token * count)
    else:
        patch = adapter.processor.image_processor.patch_size
        h, w = frames[0].shape[:2]
        grid = torch.tensor([[-(-len(frames) // 2), h // patch, w // patch]])
        count = int(grid.prod()) // 4
        if adapter.family == "qwen3_vl":
            text = text.replace(token, qwen3_placeholder(grid, len(frames), fps))
        else:
            text = text.replace(token, token * count)
    prompt_ids = torch.tensor([adapter.tokenizer(text, add_special_tokens=False)["input_ids"]])
    video_id = adapter.tokenizer.convert_tokens_to_ids(token)
    assert int((prompt_ids == video_id).sum()) == count
    ids = torch.cat([prompt_ids, torch.tensor([list(generation.token_ids)])], dim=1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels}
    if adapter.family != "llava_onevision":
        types = (prompt_ids == video_id).long() * 2
        zeros = torch.zeros(1, len(generation.token_ids), dtype=torch.long)
        inputs.update({"mm_token_type_ids": torch.cat([types, zeros], dim=1), "video_grid_thw": grid})
    if adapter.family == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.tensor([2.0 / fps])
    length = ids.shape[1] - len(generation.token_ids)
    with torch.no_grad():
        logits = adapter.model(**inputs, use_cache=False).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return np.array([float(logp[length + p - 1, generation.token_ids[p]].exp()) for p in positions])


@pytest.fixture(scope="module", params=sorted(VIDEO_FAMILIES))
def tiny(request):
    torch.manual_seed(0)
    return load_adapter(build_tiny(request.param))


@pytest.fixture(scope="module")
def qwen25():
    torch.manual_seed(0)
    return load_adapter(build_tiny("qwen2_5_vl"))


def strip(maps) -> np.ndarray:
    from mllm_attr.adapters.hf import images_to_strip

    return images_to_strip([m[..., None].repeat(3, axis=-1) for m in maps])[..., 0].astype(np.int32)


# -- the video input ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_frames", [1, 2, 3, 4])
def test_video_tensors_follow_the_video_processors_layout(tiny, n_frames):
    frames = frames_of(n_frames, unit=unit_of(tiny))
    got = tiny.video_inputs(frames, 2.0)
    np.testing.assert_allclose(got["pixel_values_videos"].numpy(), reference_video_pixels(tiny, frames), atol=2e-6)
    if tiny.family == "llava_onevision":
        assert set(got) == {"pixel_values_videos"} and got["pixel_values_videos"].shape[:2] == (1, n_frames)
        return
    assert got["video_grid_thw"].tolist() == [[-(-n_frames // 2), 4, 6]]
    if tiny.family == "qwen2_5_vl":
        assert got["second_per_grid_ts"].tolist() == [1.0]
    else:
        assert "second_per_grid_ts" not in got


def test_prompt_has_one_video_token_per_merged_patch_typed_as_video(tiny):
    video = load_video(frames_of(3, unit=unit_of(tiny)), fps=1.0)
    inputs = tiny.video_prompt_inputs(video, PROMPT)
    ids = inputs["input_ids"][0]
    if tiny.family == "llava_onevision":  # 4 x 4 tokens per frame, pooled to 2 x 2, and one newline
        assert int((ids == tiny.tokenizer.convert_tokens_to_ids("<video>")).sum()) == 3 * 4 + 1
        assert "mm_token_type_ids" not in inputs
        return
    video_id = tiny.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((ids == video_id).sum()) == 2 * 4 * 6 // 4
    np.testing.assert_array_equal(inputs["mm_token_type_ids"][0].numpy(), (ids == video_id).numpy() * 2)
    if tiny.family == "qwen3_vl":  # a timestamp and a start / end pair per temporal patch, in the template's pair
        text = tiny.tokenizer.decode(ids)
        assert text.count("<|vision_start|>") == 3 and text.count("<|vision_end|>") == 3


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])  # Qwen3-VL's video prompt carries timestamps
def test_two_copies_of_an_image_are_that_image(family):
    """A video of two identical frames is one temporal patch holding the image in both slots:
    exactly what the image input carries, so the model answers as for the image (ties the video
    path's tokens, types and positions to the image path, which is checked against the processor)."""
    torch.manual_seed(0)
    tiny = load_adapter(build_tiny(family))
    image = frames_of(1, seed=4, unit=unit_of(tiny))[0]
    as_image = tiny.generate(image, PROMPT, max_new_tokens=4)
    as_video = tiny.generate(load_video([image, image], fps=1.0), PROMPT, max_new_tokens=4)
    assert as_video.token_ids == as_image.token_ids
    np.testing.assert_allclose(as_video.probs, as_image.probs, rtol=1e-6)


def test_frame_order_and_rate_reach_the_model(tiny):
    """Frames in other temporal patches change the answer's probabilities when swapped; Qwen2.5-VL
    places temporal patches in time by the frame rate (``second_per_grid_ts``), Qwen3-VL by the
    timestamps in its prompt, Qwen2-VL and LLaVA-OneVision not at all."""
    a, b, c, d = frames_of(4, seed=5, unit=unit_of(tiny))
    gen = tiny.generate(load_video([a, b, c, d], fps=2.0), PROMPT, max_new_tokens=3)

    def score(frames, fps):
        video = load_video(frames, fps=fps)
        scorer = tiny.video_scorer(video, gen, range(len(gen)), batch_size=1, fast_path=False)
        return scorer.score_images(scorer.image[None])[0]

    base = score([a, b, c, d], 2.0)
    np.testing.assert_allclose(base, gen.probs, rtol=1e-5)
    assert np.abs(score([c, d, a, b], 2.0) - base).max() > 1e-7
    changed = np.abs(score([a, b, c, d], 0.25) - base).max()
    if tiny.family in ("qwen2_vl", "llava_onevision"):
        assert changed == 0.0
    else:  # Qwen2.5-VL: second_per_grid_ts; Qwen3-VL: the timestamps in the prompt
        assert changed > 1e-7


@pytest.mark.parametrize("fast_path", [False, "auto"])
def test_scores_equal_a_full_forward_on_hand_masked_frames(tiny, fast_path):
    """Every candidate's score equals ONE full forward on the hand-masked frames, built here: a
    frame's mask ignored, frames mixed up in the temporal patches or region ids shifted between
    frames would fail this, on the processor path and on the fast path."""
    frames = frames_of(3, seed=1, unit=unit_of(tiny))
    video = load_video(frames, fps=2.0)
    gen = tiny.generate(video, PROMPT, max_new_tokens=3)
    # A random tiny model may answer with its own <|video_pad|> id, which no forward can take back.
    gen = tiny.teacher_force(video, PROMPT, "the red ball") if any(gen.special) else gen
    positions = list(range(len(gen)))
    maps = offset_label_maps([segment(f, 4, "grid").labels for f in frames])
    n = int(maps[-1].max()) + 1
    rng = np.random.default_rng(1)
    table = rng.random((7, n)) < 0.5
    table[0], table[1] = True, False
    table[2] = np.arange(n) < int(maps[0].max()) + 1  # frame 0 only
    table[3] = np.arange(n) >= int(maps[2].min())  # the last frame only (also its padding copy)
    scorer = tiny.video_scorer(video, gen, positions, batch_size=4, fast_path=fast_path)
    scorer.set_regions(strip(maps))
    got = scorer.score_regions(table)
    assert scorer.forwards == len(table)
    want = np.stack(
        [
            reference_probs(
                tiny,
                [np.where(row[m][..., None], f, 0).astype(np.uint8) for m, f in zip(maps, frames)],
                2.0,
                gen,
                positions,
            )
            for row in table
        ]
    )
    spread = float(want.max() - want.min())
    assert spread > 1e-6  # the masks change the scores: the comparison can tell masks apart
    if fast_path is False:
        assert scorer.fast_report["used"] is False
        np.testing.assert_allclose(got[0], gen.probs, rtol=1e-5)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    else:
        assert scorer.fast_report["used"] is True, scorer.fast_report
        np.testing.assert_allclose(got, want, rtol=0, atol=max(1e-7, 3e-3 * spread))


def test_resampled_frames_fast_path_matches_the_processor_path():
    """Frames the image processor resizes (50 x 70 -> 56 x 84): every processed element mixes
    regions, and the fast path's scores still match the processor path's within its probe's rule."""
    torch.manual_seed(0)
    tiny = load_adapter(build_tiny("qwen2_vl"))
    rng = np.random.default_rng(8)
    frames = [rng.integers(1, 255, (50, 70, 3), dtype=np.uint8) for _ in range(3)]
    video = load_video(frames, fps=2.0)
    gen = tiny.teacher_force(video, PROMPT, "the red ball")
    maps = offset_label_maps([segment(f, 4, "grid").labels for f in frames])
    table = np.random.default_rng(2).random((8, int(maps[-1].max()) + 1)) < 0.5
    scores = {}
    for path in (False, True):
        scorer = tiny.video_scorer(video, gen, range(len(gen)), batch_size=4, fast_path=path)
        scorer.set_regions(strip(maps))
        scores[path] = scorer.score_regions(table)
    spread = float(scores[False].max() - scores[False].min())
    assert spread > 1e-6
    np.testing.assert_allclose(scores[True], scores[False], rtol=0, atol=0.01 * spread)


def test_second_per_grid_ts_stays_float32_in_a_bfloat16_model():
    torch.manual_seed(0)
    tiny = load_adapter(build_tiny("qwen2_5_vl"))
    tiny.model.to(torch.bfloat16)
    seen = {}

    def hook(module, args, kwargs):
        seen.update({k: v.dtype for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

    video = load_video(frames_of(4, seed=9), fps=3.0)  # 2 / 3 s per temporal patch: not a bfloat16 number
    gen = tiny.teacher_force(video, PROMPT, "the red ball")
    handle = tiny.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        scorer = tiny.video_scorer(video, gen, range(len(gen)), batch_size=2, fast_path=False)
        scorer.score_images(scorer.image[None])
    finally:
        handle.remove()
    assert seen["second_per_grid_ts"] == torch.float32 and seen["pixel_values_videos"] == torch.bfloat16


def test_a_checkpoints_video_pixel_bounds_are_used(tmp_path):
    """With ``video_preprocessor_config.json`` (the video processor's own bounds) frames are resized
    within those bounds, not the image processor's."""
    folder = save_tiny("qwen2_5_vl", tmp_path / "q")
    frames = frames_of(2, seed=10, unit=28)  # 56 x 84
    plain = load_adapter(str(folder))
    assert plain.video_size is None
    (folder / "video_preprocessor_config.json").write_text(
        json.dumps({"size": {"shortest_edge": 4 * 28 * 28, "longest_edge": 4 * 28 * 28}})
    )
    bounded = load_adapter(str(folder))
    assert bounded.video_size == {"shortest_edge": 4 * 28 * 28, "longest_edge": 4 * 28 * 28}
    assert plain.video_inputs(frames, 2.0)["video_grid_thw"].tolist() == [[1, 4, 6]]
    assert bounded.video_inputs(frames, 2.0)["video_grid_thw"].tolist() == [[1, 2, 4]]


def test_teacher_forcing_and_the_video_hash(qwen25):
    frames = frames_of(2, seed=2)
    video = load_video(frames, fps=1.0)
    gen = qwen25.generate(video, PROMPT, max_new_tokens=3)
    assert gen.image_sha256 == video.sha256
    assert load_video(frames[::-1], fps=1.0).sha256 != video.sha256
    assert load_video(frames, fps=2.0).sha256 != video.sha256
    shifted = Video(video.frames, video.fps, (0.5, 1.5))  # same frames and rate, other times
    assert shifted.sha256 != video.sha256
    forced = qwen25.teacher_force(video, PROMPT, "a red ball")
    assert forced.counterfactual and forced.image_sha256 == video.sha256
    np.testing.assert_allclose(
        forced.probs, reference_probs(qwen25, frames, 1.0, forced, range(len(forced))), rtol=1e-6
    )
    with pytest.raises(ValueError, match="other frames"):
        VideoExplainer(qwen25, n_regions=2)(load_video(frames[::-1], fps=1.0), gen, target=0)


def test_families_without_video_input_are_refused_by_name():
    torch.manual_seed(0)
    llava = load_adapter(build_tiny("llava"))
    video = load_video(frames_of(2), fps=1.0)
    with pytest.raises(
        ValueError, match="not supported with video input.*llava_onevision, qwen2_5_vl, qwen2_vl, qwen3_vl"
    ):
        llava.generate(video, PROMPT)
    with pytest.raises(ValueError, match="not supported with video input"):
        VideoExplainer(llava)
    with pytest.raises(TypeError, match="expected a Video"):
        llava.check_video([np.zeros((4, 4, 3), np.uint8)])


# -- the explainer and the result ----------------------------------------------------------------


def test_explainer_result_round_trip_and_frame_shares(qwen25, tmp_path):
    """A black frame (black fill: hiding its regions changes no pixel) gets no gain; the result says
    which frames carried the tokens, saves and loads with its rate and times."""
    a, b = frames_of(2, seed=3)
    black = np.zeros_like(a)
    video = load_video([a, black, b], fps=1.5)
    attr = explain_video(qwen25, video, prompt=PROMPT, n_regions=3, segmenter="grid", max_new_tokens=2)
    assert isinstance(attr, VideoAttribution) and attr.n_frames == 3 and attr.n_regions == 9
    assert attr.settings["method"] == "eagle-video" and attr.settings["video"]["fps"] == 1.5
    assert attr.settings["multi_image"]["scoring_path"] == "fast"
    assert attr.forwards == 9 * 10  # exact greedy: n(n + 1)
    shares = attr.frame_shares()
    assert [s["frame"] for s in shares] == [0, 1, 2]
    assert [s["time"] for s in shares] == pytest.approx([0.0, 1 / 1.5, 2 / 1.5])
    assert shares[1]["gain_share"] == 0.0 and shares[1]["score_share"] < 1e-6
    assert sum(s["score_share"] for s in shares) == pytest.approx(1.0)
    attr.save(tmp_path / "v")
    meta = json.loads((tmp_path / "v" / "explanation.json").read_text())
    assert meta["result_type"] == "video_attribution" and meta["fps"] == 1.5 and len(meta["frame_shares"]) == 3
    back = VideoAttribution.load(tmp_path / "v")
    assert back.fps == 1.5 and back.times == pytest.approx(attr.times)
    np.testing.assert_array_equal(back.ordering, attr.ordering)
    for x, y in zip(back.frames, attr.frames):
        np.testing.assert_array_equal(x, y)
    assert (tmp_path / "v" / "heatmap.png").stat().st_size > 10_000
    card = attr._repr_html_()  # the notebook display names frames, not images
    assert "frame shares" in card and "image shares" not in card


def test_whole_frames_is_one_region_per_frame(qwen25):
    video = load_video(frames_of(4, seed=6), fps=2.0)
    attr = explain_video(qwen25, video, prompt=PROMPT, whole_frames=True, max_new_tokens=2)
    assert attr.n_regions == 4 and attr.n_regions_per_image == [1, 1, 1, 1]
    assert sorted(attr.ordering.tolist()) == [0, 1, 2, 3] and attr.forwards == 4 * 5
    assert attr.settings["segmenter"] == "whole-frame"
    with pytest.raises(ValueError, match="one region per frame"):
        VideoExplainer(qwen25, whole_frames=True, labels=[np.zeros((56, 84), int)] * 4)
    with pytest.raises(ValueError, match="it takes no n_regions, segmenter"):
        VideoExplainer(qwen25, whole_frames=True, n_regions=4, segmenter="grid")
    frames = frames_of(2, seed=6)
    gen = qwen25.teacher_force(load_video(frames, fps=0.5), PROMPT, "the red ball")
    listed = VideoExplainer(qwen25, whole_frames=True, fps=0.5)(frames, gen)  # a list of frames at 0.5 fps
    assert listed.fps == 0.5 and listed.times == [0.0, 2.0]


def test_geometry_searches_and_budgets_are_refused_before_model_work(qwen25):
    with pytest.raises(ValueError, match="geometry"):
        VideoExplainer(qwen25, search="hierarchical")
    with pytest.raises(ValueError, match="too small for 8 regions over 2 frames"):
        VideoExplainer(qwen25, n_regions=4, segmenter="grid", max_forwards=5)(frames_of(2), prompt=PROMPT)


# -- loading videos ---------------------------------------------------------------------------------


def test_frame_lists_are_checked():
    with pytest.raises(ValueError, match="one size.*frame 1: 84x28"):
        load_video([np.zeros((56, 84, 3), np.uint8), np.zeros((28, 84, 3), np.uint8)])
    with pytest.raises(ValueError, match="at least one frame"):
        load_video([])
    with pytest.raises(ValueError, match="fps must be a positive"):
        load_video(frames_of(2), fps=0)
    with pytest.raises(ValueError, match="asked for 5 frames of a list of 2"):
        load_video(frames_of(2), num_frames=5)
    with pytest.raises(FileNotFoundError, match="frame 1"):
        load_video([frames_of(1)[0], "/no/such/frame.png"])
    kept = load_video(frames_of(6), num_frames=3, fps=3.0)
    assert kept.n_frames == 3 and kept.fps == pytest.approx(1.5) and kept.times == pytest.approx((0, 2 / 3, 4 / 3))
    with pytest.raises(ValueError, match="own rate"):
        load_video(kept, fps=1.0)
    assert load_video(kept) is kept
    again = load_video(kept, num_frames=2)  # a Video resampled keeps its frames' times
    assert again.times == pytest.approx((0, 2 / 3)) and again.notes[-1].startswith("kept 2 of 3")
    np.testing.assert_array_equal(again.frames[1], kept.frames[1])
    # floor(i * total / n) in exact arithmetic: 30 frames, 22 kept -> the 12th is frame 15 (not 14)
    many = load_video([np.full((8, 8, 3), k, np.uint8) for k in range(30)], num_frames=22, fps=30.0)
    assert int(many.frames[11][0, 0, 0]) == 15 and many.times[11] == pytest.approx(15 / 30)
    with pytest.raises(ValueError, match="one size"):
        Video((np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)), 1.0, (0.0, 1.0))


def _write_clip(path, n=12, rate=6, size=(64, 96)) -> list[np.ndarray]:
    av = pytest.importorskip("av")
    frames = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.options = {"qscale": "1"}
        for k in range(n):
            a = np.full((*size, 3), 30, np.uint8)
            a[16:48, 4 + 6 * k : 36 + 6 * k] = (220, 40, 40)
            frames.append(a)
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return frames


def test_video_files_are_decoded_and_sampled_uniformly(tmp_path):
    written = _write_clip(tmp_path / "clip.mp4")
    video = load_video(tmp_path / "clip.mp4", num_frames=4)
    assert video.n_frames == 4 and video.size == (96, 64) and video.source.endswith("clip.mp4")
    assert video.fps == pytest.approx(2.0) and video.times == pytest.approx((0.0, 0.5, 1.0, 1.5))
    for got, k in zip(video.frames, [0, 3, 6, 9]):  # frames floor(i * 12 / 4)
        assert np.abs(got.astype(int) - written[k]).mean() < 6  # lossy codec, the right frame
        others = [np.abs(got.astype(int) - written[j]).mean() for j in range(12) if j != k]
        assert min(others) > np.abs(got.astype(int) - written[k]).mean()
    with pytest.raises(ValueError, match="has only 12"):
        load_video(tmp_path / "clip.mp4", num_frames=13)
    with pytest.raises(ValueError, match="fps applies to a list"):
        load_video(tmp_path / "clip.mp4", fps=1.0)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot decode"):
        load_video(tmp_path / "bad.mp4")
    with pytest.raises(FileNotFoundError, match="video file not found"):
        load_video(tmp_path / "missing.mp4")


def test_without_pyav_the_error_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"mllm_attr\[video\]"):
        load_video(tmp_path / "clip.mp4")


# -- report and CLI -------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from mllm_attr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return int(code), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved_qwen25(tmp_path_factory):
    return save_tiny("qwen2_5_vl", tmp_path_factory.mktemp("qwen25"))


def test_cli_video_file_then_report(saved_qwen25, tmp_path):
    _write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "o"
    base = ["explain", "--model", str(saved_qwen25), "--prompt", PROMPT, "--max-new-tokens", "2", "--threads", "1"]
    code, text, err = run_cli(
        [*base, "--video", str(tmp_path / "clip.mp4"), "--num-frames", "4", "--n-regions", "2", "-q", "--out", str(out)]
    )
    assert code == 0, err
    assert "frames:           4 at 2 fps" in text and "frame 4" in text and "scoring path:     fast" in text
    attr = VideoAttribution.load(out)
    assert attr.n_frames == 4 and attr.settings["video_source"].endswith("clip.mp4")
    code, text, err = run_cli(["report", str(out), "--out", str(tmp_path / "r.html")])
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "a video of 4 frames" in page and "Shares per frame" in page and "frame 4 (1.50 s)" in page


def test_cli_frames_and_refusals(saved_qwen25, tmp_path):
    from PIL import Image

    paths = []
    for i, f in enumerate(frames_of(2, seed=7)):
        paths.append(str(tmp_path / f"f{i}.png"))
        Image.fromarray(f).save(paths[-1])
    base = ["explain", "--model", str(saved_qwen25), "--prompt", PROMPT, "--max-new-tokens", "2", "--threads", "1"]
    code, text, err = run_cli(
        [
            *base,
            "--frames",
            *paths,
            "--fps",
            "0.5",
            "--whole-frames",
            "--max-forwards",
            "8",
            "-q",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0, err
    assert VideoAttribution.load(tmp_path / "o").times == [0.0, 2.0]
    for extra, message in [
        (["--frames", *paths, "--image", paths[0]], "not with --video"),
        (["--frames", *paths, "--search", "hierarchical"], "geometry"),
        (["--video", paths[0], "--fps", "2"], "only with --frames"),
        (["--num-frames", "2"], "only with --video or --frames"),
        (["--frames", *paths, "--whole-frames", "--n-regions", "4"], "one region per frame"),
        (["--frames", *paths, "--max-forwards", "20"], "regions over 2 frames: the full and blank frames"),
        (
            ["--requests", str(tmp_path / "r.jsonl"), "--video", paths[0]],
            "--requests cannot be combined with --prompt, --video",
        ),
        (["--frames", paths[0], "/no/such.png"], "frame 1"),
    ]:
        target = tmp_path / "x"
        code, _, err = run_cli([*base, *extra, "--out", str(target)])
        assert code != 0 and message in err, (extra, err)
        assert not target.exists()
