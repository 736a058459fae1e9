#!/usr/bin/env python3
"""Multi-scale aggregation benchmark: does combining scales beat a single scale?

On held-out shapes-world scenes and the embedded model (or --model), for each scene the answer
word of "What color is the <shape>?" (and of "What shape is the <color> object?") about one
object is explained by EAGLE (exact greedy) at several region
granularities (default 16 / 36 / 64 SLIC regions) and several input resolutions (default 0.5x
and 2x, with 36 regions; MSEA), and the per-scale maps are combined (mean, and weighted by each
scale's insertion-minus-deletion AUC). EVERY map - single scales included - is then scored by the
ONE replay protocol (:func:`mllm_attr.protocol.score_map`) on the SAME label map per scene (the
64-region one), so the AUCs are comparable; the pointing game uses each method's own map and
the asked object's visible mask (and its box).

Only answers that are right are used (the asked object is then the evidence).

    python eval/multiscale_benchmark.py --scenes 30 --out eval/results/multiscale_benchmark.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mllm_attr import load_adapter
from mllm_attr.analysis.multiscale import MultiScaleExplainer, combine
from mllm_attr.assets import default_model_path
from mllm_attr.data.shapes import (
    COLOR_NAMES,
    SHAPES,
    color_question,
    make_scene,
    parse_answer_word,
    scene_rng,
    shape_question,
)
from mllm_attr.explanation import versions
from mllm_attr.metrics import box_mask, pointing_game
from mllm_attr.protocol import score_map


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run_scene(
    adapter,
    ms_explainer,
    scene,
    obj,
    kind: str,
    eval_regions: int,
    res_regions: int,
    batch_size: int,
    keep_wrong: bool = False,
) -> dict | None:
    if kind == "color":
        question, vocab, truth = color_question(obj.shape), COLOR_NAMES, obj.color
    else:
        question, vocab, truth = shape_question(obj.color), SHAPES, obj.shape
    gen = adapter.generate(scene.image, question, max_new_tokens=4)
    if parse_answer_word(gen.text, vocab) != truth and not keep_wrong:
        return None
    ms = ms_explainer(scene.image, gen, target=0)
    by_name = {s.name: s for s in ms.scales}
    eval_scale = by_name[f"regions={eval_regions}"]
    labels = eval_scale.explanation.labels
    region_scales = ms.select(resolution=1.0)
    res_scales = [s for s in ms.scales if s.requested_regions == res_regions]
    methods: dict[str, tuple[list, str]] = {}
    for s in region_scales:
        methods[f"single {s.name}"] = ([s], "mean")
    for combo in ("mean", "weighted"):
        methods[f"regions {combo}"] = (region_scales, combo)
        if len(res_scales) > 1:
            methods[f"resolutions {combo}"] = (res_scales, combo)
            methods[f"all {combo}"] = (ms.scales, combo)
    mask = obj.mask
    box = box_mask(mask.shape, obj.bbox)
    rows = {}
    for name, (scales, combo) in methods.items():
        sal = combine([s.saliency for s in scales], None if combo == "mean" else [s.weight for s in scales])
        expl = score_map(adapter, scene.image, gen, [0], sal, labels=labels, batch_size=batch_size, method_name=name)
        rows[name] = {
            "insertion_auc": expl.insertion_auc(),
            "deletion_auc": expl.deletion_auc(),
            "pointing_mask": bool(pointing_game(sal, mask)),
            "pointing_box": bool(pointing_game(sal, box)),
            "explain_forwards": int(sum(s.forwards for s in scales)),
        }
    return {
        "kind": kind,
        "question": question,
        "answer": gen.text,
        "object_area": float(mask.mean()),
        "scales": [s.to_dict() for s in ms.scales],
        "methods": rows,
        "eval_label_regions": int(labels.max()) + 1,
    }


def summarise(records: list[dict]) -> dict:
    names = list(records[0]["methods"]) if records else []
    out = {}
    for name in names:
        vals = {k: np.array([float(r["methods"][name][k]) for r in records]) for k in records[0]["methods"][name]}
        out[name] = {
            k: {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0}
            for k, v in vals.items()
        }
    return out


def paired(records: list[dict], a: str, b: str, key: str) -> dict:
    """Mean of (a - b) per scene with its standard error and the share of scenes where a > b."""
    d = np.array([float(r["methods"][a][key]) - float(r["methods"][b][key]) for r in records])
    return {
        "mean_diff": float(d.mean()),
        "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0,
        "a_better_share": float((d > 0).mean()) if key != "deletion_auc" else float((d < 0).mean()),
    }


def markdown(summary: dict, n: int) -> str:
    lines = [
        f"| method ({n} answers) | insertion AUC ↑ | deletion AUC ↓ | pointing (mask) ↑ | pointing (box) ↑ "
        "| explain forwards |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in summary.items():
        lines.append(
            f"| {name} | {m['insertion_auc']['mean']:.3f} ± {m['insertion_auc']['se']:.3f} "
            f"| {m['deletion_auc']['mean']:.3f} ± {m['deletion_auc']['se']:.3f} "
            f"| {m['pointing_mask']['mean']:.3f} | {m['pointing_box']['mean']:.3f} "
            f"| {m['explain_forwards']['mean']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model dir or hub id (default: the embedded shapes-llava)")
    ap.add_argument("--scenes", type=int, default=20, help="scenes to try (default 20)")
    ap.add_argument(
        "--questions", default="color,shape", help="question kinds per scene: color, shape or both (default)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--segmenter", default="slic", choices=("slic", "grid"))
    ap.add_argument("--region-scales", type=_ints, default=[16, 36, 64], help="comma list (default 16,36,64)")
    ap.add_argument(
        "--resolutions", type=_floats, default=[0.5, 2.0], help="comma list of input scales (default 0.5,2)"
    )
    ap.add_argument("--resolution-regions", type=int, default=36, help="regions at the resolution scales (default 36)")
    ap.add_argument(
        "--eval-regions",
        type=int,
        default=None,
        help="label map used to score every method (default: the largest region scale)",
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-wrong", action="store_true", help="also use scenes answered wrongly (smoke runs only)")
    ap.add_argument("--out", default="eval/results/multiscale_benchmark.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = [k.strip() for k in args.questions.split(",") if k.strip()]
    if not kinds or any(k not in ("color", "shape") for k in kinds):
        ap.error("--questions takes color, shape or color,shape")
    eval_regions = args.eval_regions or max(args.region_scales)
    if eval_regions not in args.region_scales:
        ap.error("--eval-regions must be one of --region-scales")
    adapter = load_adapter(args.model or str(default_model_path()))
    ms_explainer = MultiScaleExplainer(
        adapter,
        region_scales=args.region_scales,
        resolutions=args.resolutions,
        resolution_regions=args.resolution_regions,
        segmenter=args.segmenter,
        search="greedy",
        batch_size=args.batch_size,
        keep_explanations=True,
    )
    records, skipped = [], 0
    t0 = time.perf_counter()
    for i in range(args.scenes):
        rng = scene_rng(args.seed, "test", i)
        scene = make_scene(rng, split="test", min_objects=2, max_objects=3)
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        for kind in kinds:
            rec = run_scene(
                adapter,
                ms_explainer,
                scene,
                obj,
                kind,
                eval_regions,
                args.resolution_regions,
                args.batch_size,
                args.keep_wrong,
            )
            if rec is None:
                skipped += 1
                continue
            rec["scene"] = i
            records.append(rec)
            print(f"scene {i}: {rec['question']} -> {rec['answer']!r}", file=sys.stderr)
    summary = summarise(records)
    comparisons = {}
    single = f"single regions={eval_regions}"
    for name in summary:
        if not name.startswith("single"):
            comparisons[f"{name} vs {single}"] = {
                k: paired(records, name, single, k) for k in ("insertion_auc", "deletion_auc", "pointing_mask")
            }
    result = {
        "command": "python eval/multiscale_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "scenes_tried": args.scenes,
        "samples_used": len(records),
        "skipped_wrong_answer": skipped,
        "settings": dict(vars(args)),
        "eval_label_regions": eval_regions,
        "summary": summary,
        "paired_vs_single": comparisons,
        "seconds": time.perf_counter() - t0,
        "versions": versions(),
        "records": records,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(markdown(summary, len(records)))
    print()
    for k, v in comparisons.items():
        print(f"{k}: " + ", ".join(f"{m} {d['mean_diff']:+.4f} ± {d['se']:.4f}" for m, d in v.items()))
    print(f"wrote {out} ({result['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
