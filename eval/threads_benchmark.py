#!/usr/bin/env python
"""Seconds per explanation at 1, 2, ... torch threads and at the auto default, idle and busy.

    python eval/threads_benchmark.py                       # the shipped model, 24 regions, 3 repeats
    python eval/threads_benchmark.py --busy 1 --out eval/results/threads_benchmark.json

Each measurement is a fresh interpreter (torch's thread pool is set once, before any work):
exact greedy on the shipped example image, the colour word, the same label map. With
``--busy K`` the script first starts K processes that spin on a core each (another job on the
machine) and measures again; they are stopped at the end. The auto default is what
``mllm_attr.threads`` picks in that situation (the free cores, from the load average), so the
benchmark waits until the load average has risen to show the competitors before timing it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
threads = sys.argv[1]
from mllm_attr import Explainer, load_adapter
from mllm_attr.assets import default_model_path, example_image_path
from mllm_attr.threads import resolve_threads
n = resolve_threads(None if threads == "auto" else int(threads))
torch.set_num_threads(n)
adapter = load_adapter(default_model_path())
image = str(example_image_path())
gen = adapter.generate(image, "What color is the circle?", max_new_tokens=3)
explainer = Explainer(adapter, n_regions=int(sys.argv[2]), threads=n)
explainer(image, gen, target=0)  # warm-up
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    expl = explainer(image, gen, target=0)
    times.append(time.perf_counter() - t)
print(json.dumps({"threads": n, "seconds": times, "forwards": expl.forwards}))
"""


def _measure(threads: str, regions: int, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, threads, str(regions), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["requested"] = threads
    row["median_s"] = sorted(row["seconds"])[len(row["seconds"]) // 2]
    row["load_average"] = os.getloadavg()[0]
    return row


def _series(counts: list[str], regions: int, repeats: int, label: str) -> list[dict]:
    rows = []
    for threads in counts:
        row = _measure(threads, regions, repeats)
        row["situation"] = label
        print(
            f"{label:>5}  threads={row['requested']:>4} (used {row['threads']})  "
            f"median {row['median_s']:.2f} s  load {row['load_average']:.2f}",
            flush=True,
        )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=1, help="spinning competitor processes for the busy series (0: none)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = [str(n) for n in sorted({1, 2, cpus})] + ["auto"]
    rows = _series(counts, args.regions, args.repeats, "idle")
    if args.busy:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        try:
            deadline = time.time() + 120
            while os.getloadavg()[0] < args.busy * 0.8 and time.time() < deadline:
                time.sleep(5)
            rows += _series(counts, args.regions, args.repeats, "busy")
        finally:
            for p in spinners:
                p.kill()
    result = {"cpus": cpus, "regions": args.regions, "repeats": args.repeats, "busy": args.busy, "rows": rows}
    if args.out:
        from mllm_attr._io import write_text_atomic

        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
