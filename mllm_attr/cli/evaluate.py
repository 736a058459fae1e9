"""``mllm-attr evaluate CONFIG``: a benchmark config (task x model x methods), one JSON line per
sample and method, resumable; also the entry point of ``eval/run.py`` (``accelerate launch``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import FAST_PATH_FLAGS, USER_ERRORS, int_at_least, warnings_once


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``mllm-attr evaluate`` (shared with ``eval/run.py``)."""
    p.add_argument("config", help="evaluation config (JSON): task, model, protocol, methods, output")
    p.add_argument("--output", default=None, help="results folder (overrides the config's 'output')")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an interrupted run (skips finished samples)")
    g.add_argument("--overwrite", action="store_true", help="delete earlier records in the output folder first")
    p.add_argument(
        "--limit", type=int_at_least(1), default=None, help="only the first N samples (overrides task.limit)"
    )
    p.add_argument("--methods", default=None, help="comma-separated subset of the config's methods")
    p.add_argument("--summary-only", action="store_true", help="merge existing records and rewrite the summary")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="torch CPU threads per process")
    p.add_argument(
        "--fast-path",
        choices=list(FAST_PATH_FLAGS),
        default=None,
        help="scorer fast path (overrides the config's protocol.fast_path; default: the config's, 'auto')",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="info logging")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~mllm_attr.evaluation.runner.EvalConfig` of the parsed arguments (validated)."""
    from ..evaluation.runner import load_config

    cfg = load_config(args.config, output=args.output)
    if args.limit is not None:
        cfg.task = {**cfg.task, "limit": args.limit}
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        by_name = {m["name"]: m for m in cfg.methods}
        unknown = [m for m in wanted if m not in by_name]
        if unknown:
            raise ValueError(f"--methods: {unknown} not in the config's methods {list(by_name)}")
        cfg.methods = [by_name[m] for m in wanted]
    if getattr(args, "fast_path", None) is not None:
        cfg.protocol = {**cfg.protocol, "fast_path": FAST_PATH_FLAGS[args.fast_path]}
    if args.quiet:
        cfg.show_progress = False
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr evaluate``; the config is read and checked before any model loads."""
    from ..evaluation.runner import run_evaluation
    from ..evaluation.summary import write_outputs

    cfg = config_from_args(args)
    started = time.time()
    if args.threads is not None:
        import torch

        torch.set_num_threads(int(args.threads))
    if args.summary_only:
        summary = write_outputs(cfg.output, name=cfg.name)
    else:
        summary = run_evaluation(cfg, resume=args.resume, overwrite=args.overwrite)
    if summary is not None:
        print(summary["markdown"])
        print(f"wrote: {', '.join(str(p) for p in written_files(cfg.output, summary, since=started))}")
    return 0


def written_files(output: str | os.PathLike, summary: dict[str, Any], *, since: float = 0.0) -> list[Path]:
    """The files of an evaluation folder written at or after ``since`` (a ``time.time()``), in the
    order the ``wrote:`` line lists them: ``config.json``, the shard files, ``records.jsonl``,
    ``summary.md``, ``summary.json``, ``curves.png`` (when there were curves to plot) and
    ``report.html``."""
    from ..evaluation.summary import RECORDS_FILE, SHARD_DIR

    out = Path(output)
    files = [out / "config.json", *sorted((out / SHARD_DIR).glob("*.jsonl"))]
    files += [out / RECORDS_FILE, out / "summary.md", out / "summary.json"]
    files += [Path(summary[k]) for k in ("plot", "report") if summary.get(k)]
    # mtimes have coarse resolution on some file systems: a second of slack.
    return [p for p in files if p.is_file() and p.stat().st_mtime >= since - 1.0]


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr evaluate CONFIG [--resume] ...`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "evaluate",
        help="run a benchmark config (task x model x methods); one JSON line per sample, resumable",
        description="Run an evaluation config; shard across processes with `accelerate launch ... eval/run.py CONFIG`.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval/run.py`` (same options as ``mllm-attr evaluate``)."""
    parser = argparse.ArgumentParser(prog="eval/run.py", description="Run an mllm_attr evaluation config.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        with warnings_once():
            return run(args)
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"eval/run.py: error: {msg}", file=sys.stderr)
        return 2
