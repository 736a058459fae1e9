#!/usr/bin/env python
"""The fast path against the processor path, explanation by explanation.

    python eval/fast_path_benchmark.py                          # 6 scenes of 150x200, 25 regions
    python eval/fast_path_benchmark.py --sizes 150x200,64x64,97x131 --regions 36 --out runs/fast_path.json

For held-out scenes of the shipped shapes model at sizes the processor must resample
(shortest edge to 64 px, bicubic, then a centre crop), explain the colour word with exact
greedy twice on the same label map: ``fast_path=True`` (candidates assembled from region
contributions, no image-processor call per candidate) and ``fast_path=False`` (the processor on
every candidate). Reports whether the orderings are identical, the largest difference of any
curve point and of the AUCs, the probe's figures, and the wall time of both. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from mllm_attr import Explainer, load_adapter
from mllm_attr._io import write_text_atomic
from mllm_attr.assets import default_model_path
from mllm_attr.data import shapes as S
from mllm_attr.segment import segment


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="150x200", help="comma-separated HxW scene sizes")
    ap.add_argument("--scenes", type=int, default=6, help="scenes per size")
    ap.add_argument("--regions", type=int, default=25)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    adapter = load_adapter(str(default_model_path()))
    rows = []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        for i in range(args.scenes):
            scene = S.make_scene(
                S.scene_rng(args.seed, "test", i), split="test", size=(h, w), min_objects=1, max_objects=3
            )
            gen = adapter.generate(scene.image, S.color_question(scene.objects[0].shape), max_new_tokens=3)
            labels = segment(scene.image, args.regions, "slic").labels
            runs, secs = {}, {}
            for fp in (True, False):
                t0 = time.perf_counter()
                runs[fp] = Explainer(adapter, labels=labels, fast_path=fp)(scene.image, gen, target=0)
                secs[fp] = time.perf_counter() - t0
            fast, exact = runs[True], runs[False]
            rows.append(
                {
                    "size": size,
                    "scene": i,
                    "regions": exact.n_regions,
                    "same_ordering": bool(np.array_equal(fast.ordering, exact.ordering)),
                    "max_curve_diff": float(
                        max(np.abs(fast.ins - exact.ins).max(), np.abs(fast.dele - exact.dele).max())
                    ),
                    "insertion_auc_diff": abs(fast.insertion_auc() - exact.insertion_auc()),
                    "deletion_auc_diff": abs(fast.deletion_auc() - exact.deletion_auc()),
                    "fast_path": fast.settings["fast_path"],
                    "seconds_fast": secs[True],
                    "seconds_processor": secs[False],
                }
            )
    print(f"{len(rows)} explanations, exact greedy, 1 thread\n")
    print(
        "| size | scenes | identical orderings | max curve diff | max ins. AUC diff | max del. AUC diff "
        "| probe max prob diff | set-up images | seconds fast / processor |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        rs = [r for r in rows if r["size"] == size]
        print(
            f"| {size} | {len(rs)} | {sum(r['same_ordering'] for r in rs)}/{len(rs)} "
            f"| {max(r['max_curve_diff'] for r in rs):.1e} | {max(r['insertion_auc_diff'] for r in rs):.1e} "
            f"| {max(r['deletion_auc_diff'] for r in rs):.1e} "
            f"| {max(r['fast_path'].get('probe_max_abs_prob_diff', float('nan')) for r in rs):.1e} "
            f"| {np.mean([r['fast_path'].get('setup_images', 0) for r in rs]):.0f} "
            f"| {np.mean([r['seconds_fast'] for r in rs]):.1f} / {np.mean([r['seconds_processor'] for r in rs]):.1f} |"
        )
    if args.out:
        write_text_atomic(args.out, json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
