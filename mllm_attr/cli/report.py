"""``mllm-attr report DIR [DIR ...] --out report.html``: one self-contained HTML page from saved explanations."""

from __future__ import annotations

import argparse
from typing import Any


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr report`` on the CLI's subparsers."""
    p = subparsers.add_parser("report", help="write a self-contained HTML report from saved explanation directories")
    p.add_argument("explanations", nargs="+", help="directories written by `mllm-attr explain` / Explanation.save")
    p.add_argument("--out", default="report.html", help="HTML file to write (default: ./report.html)")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr report``."""
    from ..explanation import Explanation
    from ..report import write_report

    expls = [Explanation.load(d) for d in args.explanations]
    out = write_report(expls, args.out, title=args.title)
    print(f"wrote: {out}")
    return 0
