"""Command line: ``mllm-attr explain ...`` (see ``mllm-attr --help``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .mask import BASELINES
from .search import SEARCHES
from .segment import SEGMENTERS

logger = logging.getLogger("mllm_attr")

#: Exceptions that are the user's input, reported as one line (exit code 2), never a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, KeyError)


def _parse_indices(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3 or 3,4; got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
    return value


#: ``--fast-path`` value -> the ``fast_path`` argument of the Explainer / scorer.
FAST_PATH_FLAGS: dict[str, str | bool] = {"auto": "auto", "on": True, "off": False}


#: What np.load raises on a corrupt, truncated or pickled file (allow_pickle=False).
_NPY_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _npy_path(path: str, flag: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} file not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"{flag}: expected a file, got a directory: {str(p)!r}")
    return p


def load_labels_file(path: str, flag: str = "--labels") -> np.ndarray:
    """Read a label map saved with ``np.save`` (``.npy``; pickles are refused).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable / corrupt, pickled, or an ``.npz`` archive instead of one array.
    """
    p = _npy_path(path, flag)
    try:
        data = np.load(p, allow_pickle=False)
    except _NPY_ERRORS as exc:
        raise ValueError(f"{flag}: could not read {str(p)!r} as a .npy array (np.save, no pickles): {exc}") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise ValueError(
            f"{flag}: {str(p)!r} is an .npz archive; expected a .npy file holding one int[H, W] label map "
            "(np.save); boolean masks go in --masks"
        )
    return data


def load_masks_file(path: str, flag: str = "--masks") -> list[np.ndarray]:
    """Read boolean masks from an ``.npz`` (``np.savez``; pickles are refused).

    Every array in the archive is one ``bool`` (or 0/1) ``[H, W]`` mask, taken in the archive's
    order; or the archive (or a ``.npy`` file) holds one ``[N, H, W]`` array.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable / corrupt, pickled, empty, or arrays that are not 2-D masks.
    """
    p = _npy_path(path, flag)
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays = [("array", data)]
        else:
            with data:
                arrays = [(key, data[key]) for key in data.files]
    except _NPY_ERRORS as exc:
        raise ValueError(f"{flag}: could not read {str(p)!r} as an .npz of masks (np.savez, no pickles): {exc}") from None
    if not arrays:
        raise ValueError(f"{flag}: {str(p)!r} holds no arrays; expected boolean [H, W] masks")
    if len(arrays) == 1 and arrays[0][1].ndim == 3:
        return list(arrays[0][1])
    masks = []
    for key, arr in arrays:
        if arr.ndim != 2:
            raise ValueError(
                f"{flag}: array {key!r} in {str(p)!r} has shape {arr.shape}; expected one [H, W] mask per array, "
                "or a single [N, H, W] array"
            )
        masks.append(arr)
    return masks


def segments_from_args(args: argparse.Namespace, loaded: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The label map named by ``--labels`` / ``--masks``, validated against the loaded image
    (``(None, {})`` when neither is given), and a note on where it came from."""
    from .explainer import check_labels_for_image, downscale_hint
    from .segment import masks_to_labels

    if getattr(args, "labels", None) is not None:
        raw = load_labels_file(args.labels)
        check_labels_for_image(raw, loaded, what=f"--labels {args.labels}")  # the Explainer checks (and notes) again
        return raw, {"labels_file": str(args.labels)}
    if getattr(args, "masks", None) is not None:
        masks = load_masks_file(args.masks)
        shape = (int(loaded.array.shape[0]), int(loaded.array.shape[1]))
        try:
            labels = masks_to_labels(masks, shape=shape)
        except (ValueError, TypeError) as exc:
            hint = downscale_hint(loaded)
            msg = f"--masks {args.masks}: {exc}" + (f"; {hint}" if hint and "shape" in str(exc) else "")
            raise type(exc)(msg) from None
        remainder = int(labels.max()) == len(masks)
        return labels, {"masks_file": str(args.masks), "n_masks": len(masks), "remainder_region": remainder}
    return None, {}


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the "model" argument group (``--model``, ``--family``, ``--dtype``, quantisation, ...) to ``p``."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="hub id or local directory (default: the embedded shapes-llava model)")
    g.add_argument("--family", default=None, help="force a model family (default: read from the config)")
    g.add_argument("--dtype", default="auto", help="float32 | float16 | bfloat16 | auto")
    g.add_argument("--device-map", default=None, help='e.g. "auto" (accelerate) or "cpu"')
    g.add_argument("--load-in-4bit", action="store_true", help="bitsandbytes 4-bit")
    g.add_argument("--load-in-8bit", action="store_true", help="bitsandbytes 8-bit")
    g.add_argument("--trust-remote-code", action="store_true", help="allow model repos to run their own code (off by default)")


def load_model_from_args(args: argparse.Namespace) -> Any:
    """Load the adapter named by ``--model`` and the other model arguments (default: the shipped shapes-llava model)."""
    from .adapters import load_adapter
    from .assets import default_model_path

    model = args.model or str(default_model_path())
    return load_adapter(
        model,
        family=args.family,
        dtype=args.dtype,
        device_map=args.device_map,
        load_in_4bit=args.load_in_4bit,
        load_in_8bit=args.load_in_8bit,
        trust_remote_code=args.trust_remote_code,
    )


def add_explainer_args(p: argparse.ArgumentParser) -> None:
    """Add the "attribution" argument group (regions, segmenter, baseline, search, weights, budget, ...) to ``p``."""
    g = p.add_argument_group("attribution")
    g.add_argument("--regions", type=_positive_int, default=64, help="requested number of regions (default 64)")
    g.add_argument("--segmenter", choices=SEGMENTERS, default="slic")
    g.add_argument("--baseline", choices=BASELINES, default="black")
    g.add_argument("--search", choices=sorted(SEARCHES), default="greedy")
    g.add_argument("--lambda1", type=float, default=1.0, help="weight of insight/sufficiency (default 1)")
    g.add_argument("--lambda2", type=float, default=1.0, help="weight of necessity (default 1)")
    g.add_argument("--batch-size", type=_positive_int, default=None, help="images per forward (default: from free memory)")
    g.add_argument("--max-forwards", type=_positive_int, default=None, help="hard budget of images scored")
    g.add_argument("--seed", type=_positive_int, default=0)
    g.add_argument("--max-new-tokens", type=_positive_int, default=64)
    g.add_argument(
        "--fast-path", choices=list(FAST_PATH_FLAGS), default="auto",
        help="scorer fast path: auto (use it when its probe passes), on (require it), off (the image processor on every candidate)",
    )


def explainer_from_args(adapter: Any, args: argparse.Namespace, **extra: Any) -> Any:
    """An :class:`~mllm_attr.explainer.Explainer` for ``adapter`` built from the parsed arguments, plus ``extra``."""
    from .explainer import Explainer

    return Explainer(
        adapter,
        n_regions=args.regions,
        segmenter=args.segmenter,
        baseline=args.baseline,
        search=args.search,
        lambda1=args.lambda1,
        lambda2=args.lambda2,
        batch_size=args.batch_size,
        max_forwards=args.max_forwards,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        show_progress=not args.quiet,
        fast_path=FAST_PATH_FLAGS[getattr(args, "fast_path", "auto")],
        **extra,
    )


def _cmd_explain(args: argparse.Namespace) -> int:
    from .assets import example_image_path
    from .targets import AllTokens, Answer, Positions, Word

    from .explanation import check_output_dir

    try:
        out = check_output_dir(args.out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise FileExistsError(str(exc).replace("pass overwrite=True", "pass --overwrite or choose another --out")) from None
    if args.target_index is not None:
        target: Any = Positions(tuple(args.target_index))
    elif args.target is None or args.target == "all":
        target = AllTokens(include_eos=args.include_eos)
    else:
        target = Word(args.target, occurrence=args.occurrence)
    if args.answer is not None:
        # The answer is teacher-forced; --target / --target-index select tokens inside it
        # (all of its tokens without them).
        explicit = args.target is not None or args.target_index is not None
        target = Answer(args.answer, target=target) if explicit else Answer(args.answer)
    image = args.image or str(example_image_path())
    prompt = args.prompt if args.prompt is not None else "Describe the image."

    from .image import load_image

    loaded = load_image(image)  # fail on a bad image before loading the model
    labels, segments_source = segments_from_args(args, loaded)  # and on bad --labels / --masks
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args, **({"labels": labels} if labels is not None else {}))
    expl = explainer(loaded.array if not loaded.notes else image, target=target, prompt=prompt)
    if segments_source:
        expl.settings["segments_source"] = segments_source
    expl.save(out, overwrite=args.overwrite)
    s = expl.summary()
    gen = expl.generation
    print(f"prompt:           {prompt}")
    if gen.counterfactual:
        print(f"generated text:   {gen.generated_text}")
        print(f"explained answer: {gen.text}  (counterfactual, teacher-forced)")
    else:
        print(f"generated text:   {gen.text}")
    print(f"explained tokens: {', '.join(f'{p}:{t!r}' for p, t in zip(s['target_positions'], s['target_tokens']))}")
    print(f"insertion AUC:    {s['insertion_auc']:.4f}  (higher is better)")
    print(f"deletion AUC:     {s['deletion_auc']:.4f}  (lower is better)")
    print(f"highest conf.:    {s['highest_confidence']:.4f}")
    if labels is not None:
        print(f"regions:          {expl.n_regions} (supplied by {'--labels' if args.labels is not None else '--masks'})")
    else:
        print(f"regions:          {expl.n_regions} (requested {args.regions})")
    print(f"forwards:         {s['forwards']} in {s['seconds']:.1f}s")
    print(f"wrote:            {out / 'explanation.json'}, {out / 'saliency.npy'}, {out / 'heatmap.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mllm-attr`` parser: ``explain``, ``diagnose``, ``evaluate``, ``report`` and any extra subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mllm-attr", description="Explain which image regions a multimodal LLM's generated tokens rely on."
    )
    parser.add_argument("--version", action="version", version=f"mllm-attr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("explain", help="explain generated tokens for one image and prompt")
    p.add_argument("--image", default=None, help="image path (default: the shipped example scene)")
    p.add_argument("--prompt", default=None, help='prompt (default: "Describe the image.")')
    tg = p.add_mutually_exclusive_group()
    tg.add_argument("--target", default=None, help='word or phrase of the answer, or "all" (default: all)')
    tg.add_argument("--target-index", type=_parse_indices, default=None, help="token index(es), e.g. 3 or 3,4")
    p.add_argument(
        "--answer", default=None,
        help="explain this counterfactual answer (teacher-forced) instead of the generated one; with --target or "
        "--target-index, only those tokens OF THIS ANSWER (e.g. --answer 'a red circle' --target circle)",
    )
    p.add_argument("--occurrence", type=_positive_int, default=1, help="which occurrence of --target (default 1)")
    p.add_argument("--include-eos", action="store_true", help="with --target all, explain EOS too")
    sg = p.add_mutually_exclusive_group()
    sg.add_argument(
        "--labels", default=None, metavar="FILE.npy",
        help="use this int[H, W] label map (np.save) as the regions instead of the segmenter; H, W = the image's",
    )
    sg.add_argument(
        "--masks", default=None, metavar="FILE.npz",
        help="regions from boolean [H, W] masks (np.savez; archive order, or one [N, H, W] array): overlaps go to "
        "the earlier mask, uncovered pixels form one extra last region",
    )
    p.add_argument("--out", default="mllm_attr_out", help="output directory (default: ./mllm_attr_out)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_model_args(p)
    add_explainer_args(p)
    p.set_defaults(func=_cmd_explain)

    from .analysis.hallucination import add_subcommand as add_diagnose
    from .evaluation.runner import add_subcommand as add_evaluate
    from .report import add_subcommand as add_report

    for extra in (add_diagnose, add_evaluate, add_report, *_EXTRA_COMMANDS):
        extra(sub)
    return parser


#: Other modules register subcommands here: ``fn(subparsers)``.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _quiet_third_party() -> None:
    """CLI only (never the library): silence transformers' loading bars and notices under --quiet."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    A user error (one of :data:`USER_ERRORS`) is printed as one line and gives exit code 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "quiet", False):
        _quiet_third_party()
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"mllm-attr: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
