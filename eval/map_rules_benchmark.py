#!/usr/bin/env python
"""Where the map puts its mass: the ``evidence`` rule vs the research code's ``reference`` rule.

    python eval/map_rules_benchmark.py                        # 20 scenes, 25 regions (the test's setting)
    python eval/map_rules_benchmark.py --scenes 24 --regions 36 --out runs/map_rules.json

On held-out single-object scenes of the shipped shapes model (``scene_rng(SEED, "test", i)``),
explain the colour word of "What color is the <shape>?" with exact greedy, then paint the ONE
ordering with each rule and measure: the share of the map's mass inside the object's mask, the
share of pixels above 0.5, and the pointing game. Prints a markdown table; ``--out`` writes the
per-scene rows as JSON (atomically). One torch thread.
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
from mllm_attr.explanation import MAP_RULES
from mllm_attr.metrics import pointing_game


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--regions", type=int, default=25)
    ap.add_argument("--seed", type=int, default=101, help="scene seed (held out: training uses others)")
    ap.add_argument("--out", default=None, help="write per-scene rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    adapter = load_adapter(str(default_model_path()))
    rows = []
    t0 = time.perf_counter()
    for i in range(args.scenes):
        scene = S.make_scene(S.scene_rng(args.seed, "test", i), split="test", n_objects=1)
        obj = scene.objects[0]
        gen = adapter.generate(scene.image, S.color_question(obj.shape), max_new_tokens=3)
        expl = Explainer(adapter, n_regions=args.regions)(scene.image, gen, target=0)
        row = {"scene": i, "answer": gen.text, "color": obj.color, "object_area": float(obj.mask.mean())}
        for rule in MAP_RULES:
            m = expl.saliency(rule=rule).astype(np.float64)
            row[rule] = {
                "mass_inside": float(m[obj.mask].sum() / m.sum()),
                "pixels_above_half": float((m > 0.5).mean()),
                "pointing_hit": pointing_game(m, obj.mask),
            }
        rows.append(row)
    seconds = time.perf_counter() - t0
    print(f"{args.scenes} scenes, {args.regions} regions, exact greedy, 1 thread, {seconds:.0f} s\n")
    print("| rule | mean mass inside the object | median | mean share of pixels > 0.5 | max | pointing game |")
    print("|---|---|---|---|---|---|")
    for rule in MAP_RULES:
        inside = np.array([r[rule]["mass_inside"] for r in rows])
        bright = np.array([r[rule]["pixels_above_half"] for r in rows])
        hits = np.array([r[rule]["pointing_hit"] for r in rows])
        print(
            f"| {rule} | {inside.mean():.3f} | {np.median(inside):.3f} | {bright.mean():.3f} | {bright.max():.3f} "
            f"| {hits.sum()}/{len(hits)} |"
        )
    area = np.mean([r["object_area"] for r in rows])
    print(f"\nmean object area: {area:.3f} of the image")
    if args.out:
        write_text_atomic(args.out, json.dumps({"args": vars(args), "seconds": seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
