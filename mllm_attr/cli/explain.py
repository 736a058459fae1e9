"""``mllm-attr explain``: explain generated tokens for one image and prompt, or, with
``--requests FILE.jsonl``, every request of a file (:mod:`mllm_attr.evaluation.requests`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..search import SEARCHES
from ._common import (
    ArgumentError,
    add_explainer_args,
    add_model_args,
    check_explainer_args,
    explainer_from_args,
    int_at_least,
    load_model_from_args,
    parse_indices,
    segments_from_args,
)

#: ``--n-regions`` when not given: for one image (or each of several), and per frame of a video.
N_REGIONS = 64
VIDEO_N_REGIONS = 8


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr explain`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "explain", help="explain generated tokens for one image and prompt (or, with --requests, many)"
    )
    p.add_argument(
        "--requests",
        default=None,
        metavar="FILE.jsonl",
        help='explain every request of this JSON-lines file, one {"image", "prompt"} object per line (optional '
        '"target", "answer", "id", "max_new_tokens"), into --out DIR: DIR/<id>/ per request, records.jsonl, '
        "report.html, run.json; rerunning the same command resumes; exit code 1 if a request failed. Not with "
        "--image, --prompt, --target*, --answer, --occurrence, --labels, --masks",
    )
    p.add_argument(
        "--image",
        default=None,
        action="append",
        help="image path (default: the shipped example scene); not with a text-only model (a causal LM), whose "
        "prompt words are explained. Repeat it for several images in one prompt (in order): their regions are "
        "ranked in one ordering, with a map and a share of the attribution per image",
    )
    vg = p.add_mutually_exclusive_group()
    vg.add_argument(
        "--video",
        default=None,
        metavar="FILE",
        help="explain over a video file's frames x regions, through the model's video input (Qwen2-VL, Qwen2.5-VL, "
        'Qwen3-VL, LLaVA-OneVision; decoding needs PyAV: pip install "mllm_attr[video]"); --num-frames frames '
        "sampled uniformly; --n-regions per frame. Not with --image, --labels, --masks",
    )
    vg.add_argument(
        "--frames",
        default=None,
        nargs="+",
        metavar="IMAGE",
        help="a video given as its frames (image files, in time order, one size); --fps says how far apart",
    )
    p.add_argument(
        "--num-frames",
        type=int_at_least(1, "num_frames"),
        default=None,
        help="frames of --video to sample uniformly (default 8), or of --frames to keep (default all)",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frames per second of --frames (default 2; Qwen2.5-VL and Qwen3-VL place frames in time by it)",
    )
    p.add_argument(
        "--whole-frames",
        action="store_true",
        help="with --video / --frames: one region per frame (which frames carried the tokens; 2 x frames forwards "
        "for the curves)",
    )
    p.add_argument(
        "--prompt",
        default=None,
        help='prompt (default: "Describe the image."; "Describe the video." with --video / --frames; required for a '
        "text-only model)",
    )
    tg = p.add_mutually_exclusive_group()
    tg.add_argument("--target", default=None, help='word or phrase of the answer, or "all" (default: all)')
    tg.add_argument("--target-index", type=parse_indices, default=None, help="token index(es), e.g. 3 or 3,4")
    p.add_argument(
        "--answer",
        default=None,
        help="explain this counterfactual answer (teacher-forced) instead of the generated one; with --target or "
        "--target-index, only those tokens OF THIS ANSWER (e.g. --answer 'a red circle' --target circle)",
    )
    p.add_argument("--occurrence", type=int_at_least(1), default=None, help="which occurrence of --target (default 1)")
    p.add_argument(
        "--include-eos",
        action="store_true",
        help="with --target all (with --requests: a target of all, or none), explain EOS too",
    )
    sg = p.add_mutually_exclusive_group()
    sg.add_argument(
        "--labels",
        default=None,
        metavar="FILE.npy",
        help="use this int[H, W] label map (np.save) as the regions instead of the segmenter; H, W = the image's",
    )
    sg.add_argument(
        "--masks",
        default=None,
        metavar="FILE.npz",
        help="regions from boolean [H, W] masks (np.savez; archive order, or one [N, H, W] array): overlaps go to "
        "the earlier mask, uncovered pixels form one extra last region",
    )
    p.add_argument("--out", default="mllm_attr_out", help="output directory (default: ./mllm_attr_out)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output directory (with --requests: start an earlier bulk run over)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_model_args(p)
    add_explainer_args(
        p,
        n_regions=N_REGIONS,
        n_regions_help=f"requested number of regions (default {N_REGIONS}; with --video / --frames: "
        f"{VIDEO_N_REGIONS} per frame)",
    )
    p.set_defaults(func=run)


def _target(args: argparse.Namespace) -> Any:
    from ..targets import AllTokens, Answer, Positions, Word

    if args.target_index is not None:
        target: Any = Positions(tuple(args.target_index))
    elif args.target is None or args.target == "all":
        target = AllTokens(include_eos=args.include_eos)
    else:
        target = Word(args.target, occurrence=args.occurrence or 1)
    if args.answer is not None:
        # The answer is teacher-forced; --target / --target-index select tokens inside it
        # (all of its tokens without them).
        explicit = args.target is not None or args.target_index is not None
        target = Answer(args.answer, target=target) if explicit else Answer(args.answer)
    return target


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr explain``; every input is checked before the model is loaded."""
    video = getattr(args, "video", None) is not None or getattr(args, "frames", None) is not None
    if video and not getattr(args, "n_regions_given", True):
        args.n_regions = VIDEO_N_REGIONS  # per frame, when --n-regions was not given
    if args.requests is not None:
        return run_requests(args)
    from ..assets import example_image_path
    from ..explanation import check_output_dir
    from ..image import load_image

    try:
        out = check_output_dir(args.out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise FileExistsError(
            str(exc).replace("pass overwrite=True", "pass --overwrite or choose another --out")
        ) from None
    target = _target(args)
    images = list(args.image or [])
    if args.video is not None or args.frames is not None:  # a video: frames x regions
        return run_video(args, out, target)
    video_only = [f for d, f in (("num_frames", "--num-frames"), ("fps", "--fps")) if getattr(args, d) is not None]
    if args.whole_frames:
        video_only.append("--whole-frames")
    if video_only:
        raise ArgumentError(f"{', '.join(video_only)}: only with --video or --frames")
    if len(images) > 1:  # several images in one prompt
        return run_multi(args, out, target, images)
    args.image = images[0] if images else None  # one --image: exactly the single-image path
    if args.image is None and _text_model(args):  # no image and a causal LM: its prompt words are explained
        return run_text(args, out, target)
    image = args.image or str(example_image_path())
    prompt = args.prompt if args.prompt is not None else "Describe the image."

    loaded = load_image(image)  # fail on a bad image before loading the model
    labels, segments_source = segments_from_args(args, loaded)  # and on bad --labels / --masks
    check_explainer_args(args, loaded, labels)  # and on flags that do not fit this image
    if args.image is not None and _text_model(args):
        raise ArgumentError(
            f"--image: {args.model!r} is a text-only model (a causal LM); it takes no image. Leave out --image to "
            "explain the answer over the prompt words, or choose a multimodal --model"
        )
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args, **({"labels": labels} if labels is not None else {}))
    expl = explainer(loaded, target=target, prompt=prompt)  # decoded once: notes kept, warnings once
    if segments_source:
        expl.settings["segments_source"] = segments_source
    expl.save(out, overwrite=args.overwrite)
    s = expl.summary()
    print_answer(prompt, expl.generation, s)
    print(f"insertion AUC:    {s['insertion_auc']:.4f}  (higher is better)")
    print(f"deletion AUC:     {s['deletion_auc']:.4f}  (lower is better)")
    print(f"highest conf.:    {s['highest_confidence']:.4f}")
    if labels is not None:
        print(
            f"regions:          {expl.n_regions} (supplied by {'--labels' if args.labels is not None else '--masks'})"
        )
    else:
        print(f"regions:          {expl.n_regions} (requested {args.n_regions})")
    print(f"forwards:         {s['forwards']} in {s['seconds']:.1f}s")
    print(f"wrote:            {', '.join(str(out / name) for name in _written(out))}")
    return 0


def print_answer(prompt: str, gen: Any, s: dict[str, Any]) -> None:
    """The prompt, the generated (and a counterfactual explained) answer and the explained tokens."""
    print(f"prompt:           {prompt}")
    if gen.counterfactual:
        print(f"generated text:   {gen.generated_text}")
        print(f"explained answer: {gen.text}  (counterfactual, teacher-forced)")
    else:
        print(f"generated text:   {gen.text}")
    print(f"explained tokens: {', '.join(f'{p}:{t!r}' for p, t in zip(s['target_positions'], s['target_tokens']))}")


def run_multi(args: argparse.Namespace, out: Path, target: Any, images: list[str]) -> int:
    """``mllm-attr explain --image A --image B ... --prompt TEXT [--target WORD] --out DIR``: the regions of
    every image of one prompt in one ordering (:mod:`mllm_attr.analysis.multi_image`)."""
    from ..analysis.multi_image import MULTI_IMAGE_SEARCHES, MultiImageExplainer
    from ..image import load_image

    given = [flag for dest, flag in _IMAGE_ONLY_FLAGS if getattr(args, dest, None) is not None]
    if given:
        raise ArgumentError(
            f"{', '.join(given)}: one label map cannot cover {len(images)} images; with several --image the "
            "segmenter makes the regions of each image (--n-regions per image)"
        )
    if args.search not in MULTI_IMAGE_SEARCHES:
        raise ArgumentError(
            f"--search {args.search}: it orders the regions of ONE label map by their geometry; with several "
            f"--image use one of {', '.join(MULTI_IMAGE_SEARCHES)}"
        )
    prompt = args.prompt if args.prompt is not None else "Describe the images."
    loaded = [load_image(path) for path in images]  # fail on a bad image before loading the model
    for im in loaded:
        check_explainer_args(args, im)
    _check_budget(args, [im.array for im in loaded], "image")
    if _text_model(args):
        raise ArgumentError(f"--image: {args.model!r} is a text-only model (a causal LM); it takes no image")
    adapter = load_model_from_args(args)
    if not getattr(adapter, "supports_multi_image", lambda: False)():
        raise ArgumentError(
            f"--image given {len(images)} times: model family {getattr(adapter, 'family', '?')!r} is not supported "
            "with several images in one prompt"
        )
    explainer = explainer_from_args(adapter, args, explainer_class=MultiImageExplainer)
    attr = explainer(loaded, target=target, prompt=prompt)
    attr.settings["image_paths"] = list(images)
    attr.save(out, overwrite=args.overwrite)
    s = attr.summary()
    print_answer(prompt, attr.generation, s)
    print(f"insertion AUC:    {s['insertion_auc']:.4f}  (over all images' area; higher is better)")
    print(f"deletion AUC:     {s['deletion_auc']:.4f}  (over all images' area; lower is better)")
    print(f"highest conf.:    {s['highest_confidence']:.4f}")
    print(f"images:           {len(images)}, regions {' + '.join(map(str, attr.n_regions_per_image))}")
    for share, path in zip(attr.image_shares(), images):
        print(
            f"image {share['image'] + 1}:          {path}: {share['score_share']:.0%} of the map, "
            f"{share['top_k_share']:.0%} of the top {share['top_k']} regions, best rank {share['best_rank']}"
        )
    print(f"scoring path:     {attr.settings['multi_image']['scoring_path']}")
    print(f"forwards:         {s['forwards']} in {s['seconds']:.1f}s")
    print(f"wrote:            {', '.join(str(out / name) for name in _written(out))}")
    return 0


def _check_budget(args: argparse.Namespace, pictures: list[Any], unit: str, *, one_region_each: bool = False) -> None:
    """With ``--max-forwards``: refuse a budget below what the curves over the regions of all
    ``pictures`` (images or frames, each segmented as the explainer will) alone take."""
    if args.max_forwards is None:
        return
    from ..search import replay_cost
    from ..segment import segment

    n = (
        len(pictures)
        if one_region_each
        else sum(segment(p, args.n_regions, args.segmenter).n_regions for p in pictures)
    )
    needed = 2 + replay_cost(n - 1)
    if args.max_forwards < needed:
        raise ValueError(
            f"--max-forwards: max_forwards={args.max_forwards} is too small for {n} regions over {len(pictures)} "
            f"{unit}s: the full and blank {unit}s plus the insertion and deletion curves alone take {needed} "
            "forwards (2 x regions); raise it or lower --n-regions"
        )


def run_video(args: argparse.Namespace, out: Path, target: Any) -> int:
    """``mllm-attr explain --video FILE | --frames F0 F1 ... --prompt TEXT [--target WORD] --out DIR``: the
    regions of every frame in one ordering, scored through the model's video input
    (:mod:`mllm_attr.analysis.video`)."""
    from ..analysis.multi_image import MULTI_IMAGE_SEARCHES
    from ..analysis.video import VideoExplainer
    from ..video import load_video

    given = [flag for dest, flag in (*_IMAGE_ONLY_FLAGS, ("image", "--image")) if getattr(args, dest, None)]
    if given:
        raise ArgumentError(
            f"{', '.join(given)}: not with --video / --frames (the segmenter makes the regions of each frame, "
            "--n-regions per frame, or --whole-frames)"
        )
    if args.search not in MULTI_IMAGE_SEARCHES:
        raise ArgumentError(
            f"--search {args.search}: it orders the regions of ONE label map by their geometry; with a video use one "
            f"of {', '.join(MULTI_IMAGE_SEARCHES)}"
        )
    if args.video is not None and args.fps is not None:
        raise ArgumentError("--fps: only with --frames (a video file's rate follows from --num-frames and its length)")
    if args.fps is not None and not args.fps > 0:
        raise ArgumentError(f"--fps: expected a positive number of frames per second; got {args.fps}")
    if args.whole_frames and args.n_regions_given:
        raise ArgumentError("--n-regions: --whole-frames makes one region per frame")
    source = args.video if args.video is not None else list(args.frames)
    video = load_video(source, num_frames=args.num_frames, fps=args.fps)  # fail on a bad video before the model
    check_explainer_args(args)  # the flags; the regions are checked over all frames below
    h, w = video.frames[0].shape[:2]
    if not args.whole_frames and args.n_regions > h * w:
        raise ValueError(f"--n-regions {args.n_regions} is more than the {w}x{h}={h * w} pixels of a frame")
    _check_budget(args, list(video.frames), "frame", one_region_each=args.whole_frames)
    if _text_model(args):
        raise ArgumentError(f"--video / --frames: {args.model!r} is a text-only model (a causal LM); it takes no video")
    adapter = load_model_from_args(args)
    if not getattr(adapter, "supports_video", lambda: False)():
        raise ArgumentError(
            f"--video / --frames: model family {getattr(adapter, 'family', '?')!r} is not supported with video input "
            "(Qwen2-VL, Qwen2.5-VL, Qwen3-VL and LLaVA-OneVision are)"
        )
    prompt = args.prompt if args.prompt is not None else "Describe the video."
    if args.whole_frames:  # one region per frame: no region count, no segmenter
        extra = {"image_options": False, "whole_frames": True, "fill": args.fill}
    else:
        extra = {}
    explainer = explainer_from_args(adapter, args, explainer_class=VideoExplainer, **extra)
    attr = explainer(video, target=target, prompt=prompt)
    attr.settings["video_source"] = args.video if args.video is not None else list(args.frames)
    attr.save(out, overwrite=args.overwrite)
    s = attr.summary()
    print_answer(prompt, attr.generation, s)
    print(f"insertion AUC:    {s['insertion_auc']:.4f}  (over all frames' area; higher is better)")
    print(f"deletion AUC:     {s['deletion_auc']:.4f}  (over all frames' area; lower is better)")
    print(f"highest conf.:    {s['highest_confidence']:.4f}")
    regions = " + ".join(map(str, attr.n_regions_per_image))
    print(f"frames:           {attr.n_frames} at {attr.fps:.3g} fps, regions {regions}")
    for share in attr.frame_shares():
        print(
            f"frame {share['frame'] + 1:<3}        {share['time']:.2f} s: {share['score_share']:.0%} of the map, "
            f"{share['top_k_share']:.0%} of the top {share['top_k']} regions, best rank {share['best_rank']}"
        )
    print(f"scoring path:     {attr.settings['multi_image']['scoring_path']}")
    print(f"forwards:         {s['forwards']} in {s['seconds']:.1f}s")
    print(f"wrote:            {', '.join(str(out / name) for name in _written(out))}")
    return 0


def _text_model(args: argparse.Namespace) -> bool:
    """Whether ``--model`` is a text-only causal LM (family ``"text"``), read from its config (no weights).

    Answered without torch or transformers for the embedded model, another forced family, and a
    local folder whose config names no causal-LM class (so the image checks still come before
    any heavy import); otherwise by :func:`~mllm_attr.adapters.registry.model_family`.
    """
    from ..assets import DEFAULT_MODEL_NAME

    model = args.model or DEFAULT_MODEL_NAME
    if args.family not in (None, "text") or (model == DEFAULT_MODEL_NAME and args.family is None):
        return False
    path = Path(model).expanduser()
    if args.family is None and path.is_dir():
        try:
            archs = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError, AttributeError):
            return False  # load_adapter reports what is wrong with the folder
        if not any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            return False
    from ..adapters.registry import model_family

    family = model_family(model, family=args.family, trust_remote_code=args.trust_remote_code)
    return family == "text"


#: Flags about image regions, refused for a text-only model (dest, flag).
_IMAGE_ONLY_FLAGS = (("labels", "--labels"), ("masks", "--masks"))


def run_text(args: argparse.Namespace, out: Path, target: Any) -> int:
    """``mllm-attr explain --model TEXT_MODEL --prompt TEXT [--target ...] --out DIR``: the answer of a
    text-only model explained over its prompt words (the insight + necessity objective; no image)."""
    from ..analysis.prompt_tokens import PromptTokenExplainer
    from ..search import IMAGE_ONLY_SEARCHES

    given = [flag for dest, flag in _IMAGE_ONLY_FLAGS if getattr(args, dest, None) is not None]
    if given:
        raise ArgumentError(f"{', '.join(given)}: {args.model!r} is a text-only model; there are no image regions")
    if args.search in IMAGE_ONLY_SEARCHES:
        raise ArgumentError(
            f"--search {args.search}: it orders image regions by their geometry; a text-only model's prompt words "
            f"are ordered by {', '.join(sorted(set(SEARCHES) - IMAGE_ONLY_SEARCHES))}"
        )
    if args.prompt is None or not args.prompt.strip():
        raise ArgumentError(f"--prompt is required for a text-only model ({args.model!r})")
    check_explainer_args(args)
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args, explainer_class=PromptTokenExplainer, image_options=False)
    attr = explainer(None, target=target, prompt=args.prompt)
    attr.save(out, overwrite=args.overwrite)
    s = attr.summary()
    print_answer(args.prompt, attr.generation, s)
    print(f"insertion AUC:    {s['feature_insertion_auc']:.4f}  (over prompt words; higher is better)")
    print(f"deletion AUC:     {s['feature_deletion_auc']:.4f}  (over prompt words; lower is better)")
    print(f"highest conf.:    {s['highest_confidence']:.4f}")
    ranked = sorted(attr.word_ranks(), key=lambda wr: wr[1])
    print(f"prompt words:     {len(ranked)}, most important first: {', '.join(repr(w) for w, _ in ranked[:8])}")
    print(f"forwards:         {s['forwards']} in {s['seconds']:.1f}s")
    print(f"wrote:            {', '.join(str(out / name) for name in _written(out))}")
    return 0


def _written(out: Path) -> list[str]:
    """The files of a saved explanation, from the folder itself (explanation.json first)."""
    return sorted((p.name for p in out.iterdir() if p.is_file()), key=lambda n: (n != "explanation.json", n))


#: Per-request flags of single explain: a requests file sets these for each of its rows.
_SINGLE_ONLY = (
    ("image", "--image"),
    ("prompt", "--prompt"),
    ("target", "--target"),
    ("target_index", "--target-index"),
    ("answer", "--answer"),
    ("occurrence", "--occurrence"),
    ("labels", "--labels"),
    ("masks", "--masks"),
    ("video", "--video"),
    ("frames", "--frames"),
    ("num_frames", "--num-frames"),
    ("fps", "--fps"),
)
#: Arguments that do not change a bulk run's results (left out of run.json's "command").
_NOT_SETTINGS = frozenset(
    {"func", "command", "requests", "out", "overwrite", "quiet", "verbose", "batch_size", "device_map", "threads"}
    | {"whole_frames", "n_regions_given"}
    | {dest for dest, _ in _SINGLE_ONLY}
)


def _command_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_SETTINGS and not callable(v)}


def run_requests(args: argparse.Namespace) -> int:
    """``mllm-attr explain --requests FILE.jsonl --out DIR``: validate the file and the output
    folder, then load the model and explain every request not yet recorded.

    Returns:
        0 when every request of the file is recorded "ok", 1 when one is recorded "error"
        (in this run or an earlier one).
    """
    from ..evaluation.requests import check_output, explain_requests, load_requests

    given = [flag for dest, flag in _SINGLE_ONLY if getattr(args, dest, None) is not None]
    if getattr(args, "whole_frames", False):
        given.append("--whole-frames")
    if given:
        raise ArgumentError(
            f"--requests cannot be combined with {', '.join(given)}: each request of the file sets its own image, "
            "prompt, target and answer; requests are images, not videos (see mllm-attr explain --help)"
        )
    requests, source = load_requests(args.requests)  # the whole file, before the model loads
    if _text_model(args):
        raise ArgumentError(
            f"--requests: {args.model!r} is a text-only model; bulk requests (image + prompt) are for multimodal "
            "models. Explain a text model's answers one prompt at a time (--prompt)"
        )
    command = _command_options(args)
    check_output(args.out, sha256=source["sha256"], command=command, overwrite=args.overwrite)
    check_explainer_args(args)
    adapter = load_model_from_args(args)
    quiet = argparse.Namespace(**{**vars(args), "quiet": True})  # one bar over the requests, none per request
    records = explain_requests(
        adapter,
        args.requests,
        args.out,
        explainer=explainer_from_args(adapter, quiet),
        include_eos=args.include_eos,
        overwrite=args.overwrite,
        command=command,
        show_progress=not args.quiet,
    )
    failed = records.failed
    n_ok = sum(r["status"] == "ok" for r in records)
    print(f"requests:         {args.requests} ({len(requests)})")
    print(
        f"this run:         {records.n_ok} ok, {records.n_error} error, {records.n_skipped} skipped (already recorded)"
    )
    print(f"all requests:     {n_ok} ok, {len(failed)} error")
    for rec in failed[:10]:
        msg = str(rec.get("error") or "").splitlines()[0] if rec.get("error") else ""
        msg = msg if len(msg) <= 160 else msg[:157] + "..."
        print(f"failed:           {rec['id']} (line {rec['line']}): {rec.get('error_type')}: {msg}")
    if len(failed) > 10:
        print(f"failed:           ... and {len(failed) - 10} more (see {records.records_path})")
    wrote = [records.records_path, *([records.report_path] if records.report_path else []), records.run_path]
    folders = f"{n_ok} request folder{'' if n_ok == 1 else 's'} {records.out_dir}/<id>/"
    print(f"wrote:            {', '.join(map(str, wrote))}, and {folders}")
    return 1 if failed else 0
