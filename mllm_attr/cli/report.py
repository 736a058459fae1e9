"""``mllm-attr report DIR [DIR ...] --out report.html``: one self-contained HTML page from saved explanations."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr report`` on the CLI's subparsers."""
    p = subparsers.add_parser("report", help="write a self-contained HTML report from saved explanation directories")
    p.add_argument("explanations", nargs="+", help="directories written by `mllm-attr explain` / Explanation.save")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: ./report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused by default)")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=run)


def check_report_path(out: str, *, overwrite: bool) -> Path:
    """The ``--out`` path, refused when it is a folder, or an existing file without ``--overwrite``.

    Raises:
        IsADirectoryError: ``out`` is a folder.
        FileExistsError: ``out`` exists and ``overwrite`` is False (the file is left as it is).
    """
    path = Path(out)
    if path.is_dir():
        raise IsADirectoryError(f"--out {out!r} is a directory; expected an .html file path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"--out {out!r} exists; pass --overwrite to replace it or choose another --out")
    return path


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr report``; ``--out`` is checked before any explanation is read."""
    from ..report import write_report

    path = check_report_path(args.out, overwrite=args.overwrite)
    expls = [load_result(d) for d in args.explanations]
    out = write_report(expls, path, title=args.title)
    print(f"wrote: {out}")
    return 0


def load_result(directory: str) -> Any:
    """An :class:`~mllm_attr.Explanation`, a :class:`~mllm_attr.analysis.PromptAttribution`, a
    :class:`~mllm_attr.analysis.MultiImageAttribution` or a :class:`~mllm_attr.analysis.VideoAttribution`,
    by the ``result_type`` its ``explanation.json`` records (files without one are explanations)."""
    import json

    from ..explanation import Explanation

    meta = Path(directory) / "explanation.json"
    kind = None
    if meta.is_file():
        try:
            kind = json.loads(meta.read_text(encoding="utf-8")).get("result_type")
        except (ValueError, AttributeError):
            kind = None  # Explanation.load says what is wrong with the file
    if kind == "prompt_attribution":
        from ..analysis.prompt_tokens import PromptAttribution

        return PromptAttribution.load(directory)
    if kind == "multi_image_attribution":
        from ..analysis.multi_image import MultiImageAttribution

        return MultiImageAttribution.load(directory)
    if kind == "video_attribution":
        from ..analysis.video import VideoAttribution

        return VideoAttribution.load(directory)
    return Explanation.load(directory)
