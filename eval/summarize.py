#!/usr/bin/env python
"""Merge the records of one or more evaluation outputs into one table and plot.

    python eval/summarize.py runs/shapes/caption runs/shapes/object --out runs/shapes

Writes ``<out>/summary.md``, ``summary.json`` and ``curves.png`` (records stay where they are).
"""

from __future__ import annotations

import argparse
import sys

from mllm_attr.evaluation.summary import write_outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outputs", nargs="+", help="evaluation output folders (or records .jsonl files)")
    ap.add_argument("--out", required=True, help="folder for the combined summary")
    ap.add_argument("--reference", default="eagle", help="method the others are compared with (default eagle)")
    args = ap.parse_args(argv)
    summary = write_outputs(args.out, sources=args.outputs, reference=args.reference)
    print(summary["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
