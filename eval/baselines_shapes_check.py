#!/usr/bin/env python
"""Do the attribution baselines point at the object? A localisation check on the shipped shapes-LLaVA.

    OMP_NUM_THREADS=1 python eval/baselines_shapes_check.py              # 24 scenes, every baseline
    OMP_NUM_THREADS=1 python eval/baselines_shapes_check.py --n 48 --methods tam,igos_pp

Scenes: held-out SINGLE-object scenes (``make_scene(scene_rng(SEED, SPLIT, i), split="test",
n_objects=1, bias=None)``, i = 0..n-1; the shapes model was trained on seed 0, split "train").
Question "What color is the <shape>?"; the explained token is the first generated one (the colour
word; scenes where the model does not answer the object's colour are reported and skipped).

Per scene and method: mean map value inside the object's mask and outside it; per method: the
share of scenes with inside > outside, the mean of the per-scene ratios inside / outside, and
the pointing-game hit rate (:func:`mllm_attr.metrics.pointing_game`). ``--mutate flip`` (map
flipped left-right) or ``--mutate transpose`` shows what a geometry bug would score.

The same measurement backs ``tests/test_baselines_shapes.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field

import numpy as np

#: Held-out scene stream of the check (never used for training: the model was trained on seed 0, "train").
SEED = 20_251_108
SPLIT = "baseline-check"
METHODS = ("llava_cam", "tam", "igos_pp", "random", "centre")
MUTATIONS = {
    "none": lambda m: m,
    "flip": lambda m: m[:, ::-1],  # left-right
    "flipud": lambda m: m[::-1, :],
    "transpose": lambda m: m.T,
    "rot180": lambda m: m[::-1, ::-1],
    "invert": lambda m: m.max() - m,  # wrong sign
    "shift8": lambda m: np.roll(m, 8, axis=1),  # one 8-px vision token to the right (an off-by-one position)
}


def single_object_scene(i: int, seed: int = SEED):
    from mllm_attr.data import shapes as S

    return S.make_scene(S.scene_rng(seed, SPLIT, i), split="test", n_objects=1, bias=None)


@dataclass
class Row:
    scene: int
    shape: str
    color: str
    answer: str
    inside: float
    outside: float
    hit: bool

    @property
    def ratio(self) -> float:
        return self.inside / max(self.outside, 1e-6)


@dataclass
class Result:
    method: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def n_inside_gt_outside(self) -> int:
        return sum(r.inside > r.outside for r in self.rows)

    @property
    def share(self) -> float:
        return self.n_inside_gt_outside / self.n if self.n else float("nan")

    @property
    def mean_ratio(self) -> float:
        return float(np.mean([r.ratio for r in self.rows])) if self.rows else float("nan")

    @property
    def median_ratio(self) -> float:
        return float(np.median([r.ratio for r in self.rows])) if self.rows else float("nan")

    @property
    def n_hits(self) -> int:
        return sum(r.hit for r in self.rows)

    @property
    def hit_rate(self) -> float:
        return self.n_hits / self.n if self.n else float("nan")


def scene_inputs(adapter, n: int, seed: int = SEED) -> list[tuple[int, object, object]]:
    """``(index, scene, generation)`` for the first ``n`` scenes whose answer starts with the object's colour."""
    from mllm_attr.data import shapes as S

    out = []
    for i in range(n):
        scene = single_object_scene(i, seed)
        assert len(scene.objects) == 1
        obj = scene.objects[0]
        gen = adapter.generate(scene.image, S.color_question(obj.shape), max_new_tokens=3)
        if gen.tokens[0].strip() != obj.color:
            print(f"scene {i}: answer {gen.text!r} is not the colour {obj.color!r}; skipped")
            continue
        out.append((i, scene, gen))
    return out


def compute_maps(adapter, inputs, method) -> tuple[list[np.ndarray], float]:
    """The maps of ``method`` (an AttributionMethod) for the first generated token of each input,
    and the seconds taken."""
    t0 = time.perf_counter()
    maps = [np.asarray(method(adapter, scene.image, gen, [0], seed=i), dtype=np.float64) for i, scene, gen in inputs]
    return maps, time.perf_counter() - t0


def score(name: str, inputs, maps, *, mutate: str = "none", seconds: float = 0.0) -> Result:
    """Inside/outside means and pointing game of ``maps`` (one per input), after ``mutate``."""
    from mllm_attr.metrics import pointing_game

    res = Result(name if mutate == "none" else f"{name} ({mutate})", seconds=seconds)
    for (i, scene, gen), sal in zip(inputs, maps):
        sal = MUTATIONS[mutate](sal)
        obj = scene.objects[0]
        res.rows.append(
            Row(
                i,
                obj.shape,
                obj.color,
                gen.text,
                float(sal[obj.mask].mean()),
                float(sal[~obj.mask].mean()),
                pointing_game(sal, obj.mask),
            )
        )
    return res


def measure(adapter, inputs, method, *, mutate: str = "none") -> Result:
    """:func:`compute_maps` then :func:`score`."""
    maps, seconds = compute_maps(adapter, inputs, method)
    return score(getattr(method, "name", str(method)), inputs, maps, mutate=mutate, seconds=seconds)


def table(results: list[Result]) -> str:
    lines = [
        "| method | scenes | inside > outside | ratio inside/outside: mean (median) | pointing game | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.method} | {r.n} | {r.n_inside_gt_outside}/{r.n} ({r.share:.2f}) | "
            f"{r.mean_ratio:.2f} ({r.median_ratio:.2f}) | "
            f"{r.n_hits}/{r.n} ({r.hit_rate:.2f}) | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24, help="scenes (default 24)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--options", default="{}", help='JSON {method: {option: value}}, e.g. \'{"igos_pp": {"iterations": 20}}\''
    )
    ap.add_argument(
        "--mutate",
        default="none",
        help=f"comma-separated transforms of each map before scoring (planted bugs), of {sorted(MUTATIONS)}",
    )
    ap.add_argument("--json", default=None, help="also write per-scene rows here")
    args = ap.parse_args(argv)

    import torch

    from mllm_attr import load_adapter
    from mllm_attr.assets import default_model_path
    from mllm_attr.baselines import get_baseline

    torch.set_num_threads(1)
    adapter = load_adapter(str(default_model_path()))
    inputs = scene_inputs(adapter, args.n, args.seed)
    options = json.loads(args.options)
    results = []
    for name in args.methods.split(","):
        maps, seconds = compute_maps(adapter, inputs, get_baseline(name, **options.get(name, {})))
        for mutate in args.mutate.split(","):
            results.append(score(name, inputs, maps, mutate=mutate, seconds=seconds))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({r.method: [vars(x) for x in r.rows] for r in results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
