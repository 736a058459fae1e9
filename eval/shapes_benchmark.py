#!/usr/bin/env python
"""The shapes-world benchmark in one command: data, every task x every method, one table.

    python eval/shapes_benchmark.py                 # writes runs/shapes/{data,caption,object,refcoco,repope}
    python eval/shapes_benchmark.py --resume        # continue an interrupted run

Steps: (1) write the held-out shapes test split in the public formats (COCO instances and
captions, RefCOCO refs, POPE questions) with :func:`mllm_attr.data.shapes.write_dataset`
unless it is there; (2) run ``eval/configs/shapes_{caption,object,refcoco,repope}.json``
(the shipped shapes-LLaVA, every method, one label map per sample shared by all methods);
(3) merge everything into ``runs/shapes/summary.{md,json}`` and ``runs/shapes/curves.png``
and the wall time of each step into ``runs/shapes/timing.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from mllm_attr.data.shapes import write_dataset
from mllm_attr.evaluation.runner import load_config, load_model_adapter, run_evaluation
from mllm_attr.evaluation.summary import write_outputs

CONFIGS = ("shapes_caption", "shapes_object", "shapes_refcoco", "shapes_repope")
DATA = "runs/shapes/data"
#: Held-out scenes: the same seed as ``eval/shapes_model/evaluate.py`` (``EVAL_SEED``; never used for training).
EVAL_SEED = 20_240_917


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/shapes", help="results root (default runs/shapes)")
    ap.add_argument(
        "--n-images",
        type=int,
        default=120,
        help="test scenes to write (default 120; the RePOPE task uses all their questions)",
    )
    ap.add_argument("--seed", type=int, default=EVAL_SEED, help="scene seed (default: the held-out eval seed)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated config names in eval/configs")
    ap.add_argument("--model", default=None, help="override the configs' model path (default: the shipped model)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of methods")
    ap.add_argument("--limit", type=int, default=None, help="override every task's sample limit")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true")
    g.add_argument("--overwrite", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    out = Path(args.out)
    data = out / "data"
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    if not (data / "annotations" / "instances_test.json").is_file():
        write_dataset(data, n_images=args.n_images, seed=args.seed, split="test")
    timing["data"] = time.perf_counter() - t0

    here = Path(__file__).resolve().parent / "configs"
    outputs = []
    adapter = None
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        cfg = load_config(here / f"{name}.json")
        short = name.replace("shapes_", "")
        cfg.output = out / short
        cfg.task = {k: (str(v).replace(DATA, str(data)) if isinstance(v, str) else v) for k, v in cfg.task.items()}
        cfg.task.pop("shapes_data", None)  # written above, with this run's --n-images / --seed
        if args.limit is not None:
            cfg.task["limit"] = args.limit
        if args.model is not None:
            cfg.model = {**cfg.model, "path": args.model}
        if args.methods:
            keep = [m.strip() for m in args.methods.split(",")]
            cfg.methods = [m for m in cfg.methods if m["name"] in keep]
        if args.quiet:
            cfg.show_progress = False
        t = time.perf_counter()
        if adapter is None:
            adapter = load_model_adapter(cfg)
        run_evaluation(cfg, resume=args.resume, overwrite=args.overwrite, adapter=adapter, distributed=False)
        timing[short] = time.perf_counter() - t
        outputs.append(cfg.output)
    summary = write_outputs(out, sources=outputs, name="shapes-world")
    timing["total"] = time.perf_counter() - t0
    (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(summary["markdown"])
    print("wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timing.items()))
    print(f"wrote {out / 'summary.md'}, {out / 'summary.json'}, {out / 'curves.png'}, {out / 'timing.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
