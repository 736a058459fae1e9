#!/usr/bin/env python3
"""Adapter conformance checks against a real checkpoint you have (hub id or local directory).

    python adapters/check.py Qwen/Qwen2.5-VL-3B-Instruct --dtype bfloat16 --device-map auto
    python adapters/check.py /models/llava-1.5-7b-hf --image photo.jpg

Checks, in order (each prints PASS/FAIL with the measured figure):
1. load_adapter picks a family from the config;
2. generate() returns tokens with probabilities (greedy; the checkpoint's sampling and
   repetition-penalty defaults that it overrides are printed);
3. score(full image) reproduces the generation-time probabilities;
4. a batch of perturbed images scores the same as one by one;
5. the fast path (masked candidates built in pixel space) is available and close to the slow path;
6. a small explanation runs end to end and reports its forwards.
Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

#: The fast path passes when its probabilities stay within this share of the spread of the
#: processor path's own scores over random region subsets (as in tests/test_adapters_families.py).
FAST_REL_TOL = 0.02


def _synthetic_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = (rng.random((336, 448, 3)) * 60 + 100).astype(np.uint8)
    img[60:200, 80:220] = (210, 40, 40)  # a red square
    yy, xx = np.mgrid[:336, :448]
    img[(yy - 200) ** 2 + (xx - 330) ** 2 < 70**2] = (40, 60, 210)  # a blue disc
    return img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="hub id or local directory")
    ap.add_argument("--family", default=None)
    ap.add_argument("--image", default=None, help="image to use (default: a synthetic red square + blue disc)")
    ap.add_argument("--prompt", default="Describe the image in one sentence.")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device-map", default=None)
    ap.add_argument("--load-in-4bit", action="store_true")
    ap.add_argument("--load-in-8bit", action="store_true")
    ap.add_argument("--trust-remote-code", action="store_true")
    ap.add_argument("--regions", type=int, default=16)
    ap.add_argument("--tol", type=float, default=2e-3, help="tolerance on probabilities (bf16 needs ~1e-2)")
    args = ap.parse_args(argv)

    from mllm_attr import Explainer, load_adapter, load_image
    from mllm_attr.segment import segment

    results: list[tuple[str, bool, str]] = []

    def report(name: str, ok: bool, detail: str) -> None:
        results.append((name, ok, detail))
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    t0 = time.perf_counter()
    try:
        adapter = load_adapter(
            args.model,
            family=args.family,
            dtype=args.dtype,
            device_map=args.device_map,
            load_in_4bit=args.load_in_4bit,
            load_in_8bit=args.load_in_8bit,
            trust_remote_code=args.trust_remote_code,
        )
    except (ValueError, TypeError, OSError) as exc:  # OSError: missing files, no hub access
        report("load", False, f"{type(exc).__name__}: {exc}")
        return 1
    report("load", True, f"family={adapter.family} {adapter.describe()} in {time.perf_counter() - t0:.1f}s")
    image = load_image(args.image).array if args.image else _synthetic_image()

    gen = adapter.generate(image, args.prompt, max_new_tokens=24)
    overridden = adapter.generation_overrides() if hasattr(adapter, "generation_overrides") else {}
    report(
        "generate",
        len(gen) > 0,
        f"{gen.text!r} ({len(gen)} tokens; greedy"
        + (f", overriding the checkpoint's {overridden}" if overridden else "")
        + ")",
    )
    positions = list(range(min(len(gen), 8)))

    scorer = adapter.scorer(image, gen, positions, batch_size=4, fast_path=False)
    full = scorer.score_images(image[None])[0]
    diff = float(np.abs(full - np.asarray(gen.probs)[positions]).max())
    report("full image = generation", diff <= args.tol, f"max |diff| {diff:.2e} (tol {args.tol})")

    seg = segment(image, args.regions, "slic")
    scorer.set_regions(seg.labels)
    table = np.random.default_rng(0).random((4, seg.n_regions)) < 0.5
    batched = scorer.score_regions(table)
    single = np.concatenate([scorer.score_regions(t[None]) for t in table])
    diff = float(np.abs(batched - single).max())
    report("batched = one by one", diff <= args.tol, f"max |diff| {diff:.2e}")

    fast = adapter.scorer(image, gen, positions, batch_size=4, fast_path="auto")
    fast.set_regions(seg.labels)
    if fast.fast_report.get("used"):
        # Relative to the spread of the processor path's own scores over subsets of every size
        # (an absolute tolerance passes anything on a model whose probabilities barely move).
        rng = np.random.default_rng(1)
        subsets = rng.random((12, seg.n_regions)) < rng.random((12, 1))
        slow_scores = scorer.score_regions(subsets)
        spread = float((slow_scores.max(axis=0) - slow_scores.min(axis=0)).max())
        diff = float(np.abs(fast.score_regions(subsets) - slow_scores).max())
        ok = diff <= max(args.tol, FAST_REL_TOL * spread)
        report(
            "fast = processor path",
            ok,
            f"max |diff| {diff:.2e} = {diff / max(spread, 1e-300):.1%} of the spread "
            f"{spread:.2e} (tol {FAST_REL_TOL:.0%}); probe {fast.fast_report}",
        )
    else:
        report("fast path", True, f"not used (slow path is exact): {fast.fast_report.get('reason')}")

    t0 = time.perf_counter()
    expl = Explainer(adapter, n_regions=8, batch_size=8, search="lazy")(image, gen, target=positions[:1])
    report(
        "explain",
        expl.forwards > 0,
        f"{expl.forwards} forwards in {time.perf_counter() - t0:.1f}s, "
        f"insertion AUC {expl.insertion_auc():.3f}, deletion AUC {expl.deletion_auc():.3f}",
    )
    failed = [name for name, ok, _ in results if not ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
