"""Command line: ``mllm-attr explain ...`` (see ``mllm-attr --help``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

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
    if args.answer is not None:
        target: Any = Answer(args.answer)
    elif args.target_index is not None:
        target = Positions(tuple(args.target_index))
    elif args.target is None or args.target == "all":
        target = AllTokens(include_eos=args.include_eos)
    else:
        target = Word(args.target, occurrence=args.occurrence)
    image = args.image or str(example_image_path())
    prompt = args.prompt if args.prompt is not None else "Describe the image."

    from .image import load_image

    loaded = load_image(image)  # fail on a bad image before loading the model
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args)
    expl = explainer(loaded.array if not loaded.notes else image, target=target, prompt=prompt)
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
    tg.add_argument("--answer", default=None, help="explain this counterfactual answer instead of the generated one")
    p.add_argument("--occurrence", type=_positive_int, default=1, help="which occurrence of --target (default 1)")
    p.add_argument("--include-eos", action="store_true", help="with --target all, explain EOS too")
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
