"""``mllm-attr diagnose``: POPE-style yes/no questions in bulk (AMCR, CSR@10%), resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.yes_no import SCHEDULES
from ._common import (
    add_explainer_args,
    add_model_args,
    check_explainer_args,
    explainer_from_args,
    fraction,
    int_at_least,
    load_model_from_args,
)


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr diagnose`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "diagnose",
        help="diagnose wrong answers to POPE-style yes/no object questions (AMCR, CSR@10%%)",
        description=(
            "For every question of a POPE-style JSONL file: generate the answer; for a wrong one explain the wrong "
            "and the correct answer and find the minimal removal (least important regions of the correct answer "
            "first) that makes the regenerated answer correct. Writes one JSON line per question (resumable) and a "
            "summary JSON."
        ),
    )
    p.add_argument("--pope", required=True, help="POPE/RePOPE JSONL file (question_id, image, text, label)")
    p.add_argument("--images", required=True, help="folder holding the images named in the file")
    p.add_argument("--out", required=True, help="output JSONL (one line per question); reruns resume it")
    p.add_argument("--summary", default=None, help="summary JSON path (default: OUT.summary.json)")
    p.add_argument("--limit", type=int_at_least(1), default=None, help="only the first N questions")
    p.add_argument(
        "--schedule", choices=SCHEDULES, default="incremental", help="removal schedule (default incremental)"
    )
    p.add_argument("--max-area", type=fraction, default=1.0, help="largest removed area fraction tried (default 1.0)")
    p.add_argument(
        "--answer-tokens",
        type=int_at_least(1),
        default=8,
        help="max new tokens when (re)generating answers (default 8)",
    )
    p.add_argument("--save-dir", default=None, help="write explanations and edited images of wrong answers here")
    p.add_argument("--overwrite", action="store_true", help="start OUT over instead of resuming it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_model_args(p)
    add_explainer_args(p, n_regions=16)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr diagnose``; the question file and the flags are checked before the model loads."""
    from ..data.pope import load_pope
    from ..evaluation.pope import diagnose_pope

    questions = load_pope(args.pope, args.images)  # fail on bad input before loading the model
    check_explainer_args(args)
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args)
    explainer.show_progress = False
    summary = diagnose_pope(
        adapter,
        questions,
        args.out,
        limit=args.limit,
        explainer=explainer,
        schedule=args.schedule,
        max_area=args.max_area,
        max_new_tokens=args.answer_tokens,
        overwrite=args.overwrite,
        save_dir=args.save_dir,
        summary_path=args.summary,
        show_progress=not args.quiet,
    )
    print(f"questions:        {summary['n']} ({summary['n_unparsed']} unparsed)")
    print(
        f"accuracy:         {summary['accuracy']:.4f}   F1 {summary['f1']:.4f}   yes-ratio {summary['yes_ratio']:.4f}"
    )
    print(
        f"wrong answers:    {summary['n_wrong']} (false yes {summary['n_false_yes']}, false no {summary['n_false_no']})"
    )
    print(f"corrected:        {summary['n_corrected']} of {summary['n_wrong']}")
    print(f"mean AMCR:        {_num(summary['mean_amcr'])}")
    print(f"CSR@10%:          {_num(summary['csr_at_10'])}  (over all {summary['csr_denominator']} wrong answers)")
    print(f"generate calls:   {summary['generate_calls']}   forwards {summary['forwards']}")
    print(f"wrote:            {summary['out']}, {summary['summary_path']}")
    for paths in summary.get("artifacts", []):  # --save-dir: one line per wrong answer (folders end in /)
        listed = [f"{v}/" if Path(v).is_dir() else str(v) for v in paths.values()]
        print(f"                  {', '.join(listed)}")
    return 0


def _num(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.4f}"
