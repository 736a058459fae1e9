#!/usr/bin/env python3
"""Searches benchmark: forwards, seconds and faithfulness of every search vs exact greedy.

On held-out shapes-world scenes and the embedded model (or --model), for each scene the
colour word of "What color is the <shape>?" is explained with 64 requested regions by
every search, on ONE label map per scene, in one process (ratios are same-machine, same-run).
Also measured:
- the naive reference: exact greedy with one image per forward, full-vocabulary logits over
  the whole sequence and the processor re-run per candidate (the research code's way);
- peak memory (RSS sampled every 0.5 ms, separate processes) of an explanation vs one batched forward.

    python eval/search_benchmark.py --scenes 6 --out eval/results/search_benchmark.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from mllm_attr import Explainer, load_adapter
from mllm_attr.adapters.base import Scorer
from mllm_attr.adapters.hf import HFAdapter
from mllm_attr.assets import default_model_path
from mllm_attr.data.shapes import color_question, make_scene, scene_rng
from mllm_attr.explanation import versions
from mllm_attr.mask import make_fill
from mllm_attr.objective import Objective
from mllm_attr.search import get_search
from mllm_attr.segment import segment

#: (label, search name, options)
SEARCHES: list[tuple[str, str, dict]] = [
    ("greedy", "greedy", {}),
    ("efficient", "efficient", {"search_scope": 8, "pending_samples": 6, "update_step": 10}),
    ("bidirectional", "bidirectional", {"pending_samples": 4}),
    ("phasewin", "phasewin", {}),
    ("lazy(refresh=4)", "lazy", {"refresh": 4}),
    ("lazy(refresh=2)", "lazy", {"refresh": 2}),
    ("lazy(refresh=1)", "lazy", {"refresh": 1}),
    ("hierarchical(groups=8)", "hierarchical", {"groups": 8}),
    ("hierarchical(groups=12)", "hierarchical", {"groups": 12}),
    ("hierarchical(groups=8, refine=4)", "hierarchical", {"groups": 8, "refine": 4}),
    ("hierarchical(groups=4, refine=6)", "hierarchical", {"groups": 4, "refine": 6}),
]


class NaiveScorer(Scorer):
    """The reference point: processor per image, batch of one, logits over the whole sequence."""

    def __init__(self, adapter: HFAdapter, image, fill, generation, positions):
        super().__init__(image, fill, positions, batch_size=1)
        self.adapter = adapter
        self.generation = generation

    @torch.inference_mode()
    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        out = []
        for im in images:
            from PIL import Image

            inputs = self.adapter.prompt_inputs(Image.fromarray(im), self.generation.prompt)
            text = {
                k: inputs[k]
                for k in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
                if k in inputs
            }
            gen = torch.tensor(self.generation.token_ids, dtype=torch.long)
            text = self.adapter.extend_text_inputs(text, gen)
            pixel = {k: v for k, v in inputs.items() if k not in text}
            logits = self.adapter.model(**text, **pixel, use_cache=False).logits[0].float()
            probs = torch.softmax(logits, dim=-1)
            prompt_len = inputs["input_ids"].shape[1]
            out.append([float(probs[prompt_len + p - 1, self.generation.token_ids[p]]) for p in self.positions])
        return np.asarray(out)


def scene_samples(n: int, seed: int):
    for i in range(n):
        scene = make_scene(scene_rng(seed, "test", i), split="test", min_objects=2, max_objects=3)
        yield i, scene, color_question(scene.objects[0].shape)


def run_search(adapter, image, gen, positions, labels, name, options, batch_size, max_forwards=None):
    base = make_fill(image, "black")
    scorer = adapter.scorer(image, gen, positions, fill=base, batch_size=batch_size)
    obj = Objective(scorer, labels, max_forwards=max_forwards)
    t0 = time.perf_counter()
    res = get_search(name)(obj, **options)
    seconds = time.perf_counter() - t0
    areas = np.cumsum(np.bincount(labels.ravel(), minlength=obj.n_regions)[res.ordering] / labels.size)
    p_full, p_blank = obj.endpoints()
    x = np.concatenate([[0], areas])
    ins = np.trapezoid(np.concatenate([[p_blank.mean()], res.ins.mean(1)]), x)
    dele = np.trapezoid(np.concatenate([[p_full.mean()], res.dele.mean(1)]), x)
    return {
        "forwards": scorer.forwards,
        "calls": scorer.counter.calls,
        "seconds": seconds,
        "insertion_auc": float(ins),
        "deletion_auc": float(dele),
        "fast_path": scorer.fast_report.get("used", False),
    }


def naive_greedy(adapter, image, gen, positions, labels):
    base = make_fill(image, "black")
    scorer = NaiveScorer(adapter, image, base, gen, positions)
    obj = Objective(scorer, labels)
    t0 = time.perf_counter()
    res = get_search("greedy")(obj)
    return {"forwards": scorer.forwards, "seconds": time.perf_counter() - t0, "ordering": res.ordering.tolist()}


@torch.inference_mode()
def cost_breakdown(adapter, image, gen, batch_size: int, repeats: int = 20) -> dict:
    """Per-image milliseconds of what the naive way pays and the engine avoids or amortises:
    the processor, a batch-1 forward with full logits, a batch-``batch_size`` forward."""
    from PIL import Image

    pil = Image.fromarray(image)
    t0 = time.perf_counter()
    for _ in range(repeats):
        inputs = adapter.prompt_inputs(pil, gen.prompt)
    processor_ms = (time.perf_counter() - t0) / repeats * 1000
    text = {k: inputs[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids") if k in inputs}
    text = adapter.extend_text_inputs(text, torch.tensor(gen.token_ids, dtype=torch.long))
    pixel = {k: v for k, v in inputs.items() if k not in text}
    out = {
        "processor_ms": processor_ms,
        "sequence_length": int(text["input_ids"].shape[1]),
        "vocab_size": int(adapter.model.get_output_embeddings().weight.shape[0]),
    }
    for bs, reps in ((1, repeats), (batch_size, 3)):
        tt = {k: v.repeat(bs, *[1] * (v.dim() - 1)) for k, v in text.items()}
        pp = {k: v.repeat(bs, *[1] * (v.dim() - 1)) for k, v in pixel.items()}
        adapter.model(**tt, **pp, use_cache=False)
        t0 = time.perf_counter()
        for _ in range(reps):
            adapter.model(**tt, **pp, use_cache=False)
        out[f"forward_batch{bs}_ms_per_image"] = (time.perf_counter() - t0) / reps / bs * 1000
    return out


def _rss_now() -> int:
    """Resident set size of this process in kB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class PeakRSS:
    """Samples the resident set size every 0.5 ms in a thread; ``peak_kb`` / ``growth_kb`` after."""

    def __enter__(self) -> PeakRSS:
        self.base_kb = self.peak_kb = _rss_now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _rss_now())
            time.sleep(0.0005)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _rss_now())
        self.growth_kb = self.peak_kb - self.base_kb


def _rss_child(mode: str, model: str, batch_size: int, regions: int, q) -> None:
    torch.set_num_threads(1)
    adapter = load_adapter(model)
    scene = make_scene(scene_rng(7, "test", 0), split="test", min_objects=2, max_objects=3)
    gen = adapter.generate(scene.image, color_question(scene.objects[0].shape), max_new_tokens=4)
    seg = segment(scene.image, regions, "slic")
    scorer = adapter.scorer(scene.image, gen, [0], batch_size=batch_size)
    scorer.set_regions(seg.labels)
    scorer.score_regions(np.ones((1, seg.n_regions), bool))  # warm-up: allocator, fast-path tables
    if mode == "forward":
        table = np.random.default_rng(0).random((batch_size, seg.n_regions)) < 0.5
        with PeakRSS() as m:
            scorer.score_regions(table)
    else:
        with PeakRSS() as m:
            Explainer(adapter, n_regions=regions, batch_size=batch_size)(scene.image, gen, target=0)
    q.put({"peak_rss_kb": m.peak_kb, "base_rss_kb": m.base_kb, "growth_kb": m.growth_kb})


def peak_memory(model: str, batch_size: int, regions: int) -> dict:
    """Peak RSS of one explanation vs one batched forward, each in a fresh process after the same warm-up."""
    ctx = mp.get_context("spawn")
    out = {}
    for mode in ("forward", "explain"):
        q = ctx.Queue()
        p = ctx.Process(target=_rss_child, args=(mode, model, batch_size, regions, q))
        p.start()
        out[mode] = q.get(timeout=900)
        p.join()
    out["ratio_peak_rss"] = out["explain"]["peak_rss_kb"] / out["forward"]["peak_rss_kb"]
    fwd_growth = max(out["forward"]["growth_kb"], 1)
    out["ratio_growth"] = out["explain"]["growth_kb"] / fwd_growth
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir or hub id (default: embedded shapes-llava)")
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--regions", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--naive-scenes", type=int, default=1, help="scenes on which to run the naive reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="eval/results/search_benchmark.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = args.model or str(default_model_path())
    adapter = load_adapter(model)
    rows = []
    for i, scene, question in scene_samples(args.scenes, args.seed):
        gen = adapter.generate(scene.image, question, max_new_tokens=4)
        labels = segment(scene.image, args.regions, "slic").labels
        sample = {
            "scene": i,
            "question": question,
            "answer": gen.text,
            "truth": scene.objects[0].color,
            "n_regions": int(labels.max()) + 1,
            "searches": {},
        }
        for label, name, options in SEARCHES:
            sample["searches"][label] = run_search(
                adapter, scene.image, gen, [0], labels, name, options, args.batch_size
            )
        if i < args.naive_scenes:
            naive = naive_greedy(adapter, scene.image, gen, [0], labels)
            sample["naive_greedy"] = {k: v for k, v in naive.items() if k != "ordering"}
        rows.append(sample)
        g = sample["searches"]["greedy"]
        print(
            f"scene {i}: {question!r} -> {gen.text!r}; greedy {g['forwards']} fwd {g['seconds']:.1f}s "
            f"ins {g['insertion_auc']:.3f} del {g['deletion_auc']:.3f}",
            flush=True,
        )

    summary = {}
    for label, _, _ in SEARCHES:
        ratios = {"insertion": [], "deletion": [], "forwards": [], "seconds": []}
        for s in rows:
            g, r = s["searches"]["greedy"], s["searches"][label]
            ratios["insertion"].append(r["insertion_auc"] / g["insertion_auc"])
            ratios["deletion"].append(r["deletion_auc"] / g["deletion_auc"] if g["deletion_auc"] > 0 else 1.0)
            ratios["forwards"].append(r["forwards"] / g["forwards"])
            ratios["seconds"].append(r["seconds"] / g["seconds"])
        summary[label] = {
            "forwards": float(np.mean([s["searches"][label]["forwards"] for s in rows])),
            "seconds": float(np.mean([s["searches"][label]["seconds"] for s in rows])),
            "insertion_auc": float(np.mean([s["searches"][label]["insertion_auc"] for s in rows])),
            "deletion_auc": float(np.mean([s["searches"][label]["deletion_auc"] for s in rows])),
            "insertion_ratio": float(np.mean(ratios["insertion"])),
            "deletion_ratio": float(np.mean(ratios["deletion"])),
            "forwards_ratio": float(np.mean(ratios["forwards"])),
            # ratios of the means over scenes (a few scenes with a tiny deletion AUC dominate the mean ratio)
            "insertion_ratio_of_means": float(
                np.mean([s["searches"][label]["insertion_auc"] for s in rows])
                / np.mean([s["searches"]["greedy"]["insertion_auc"] for s in rows])
            ),
            "deletion_ratio_of_means": float(
                np.mean([s["searches"][label]["deletion_auc"] for s in rows])
                / np.mean([s["searches"]["greedy"]["deletion_auc"] for s in rows])
            ),
            "seconds_ratio": float(np.mean(ratios["seconds"])),
        }
    naive = [s for s in rows if "naive_greedy" in s]
    speed = None
    if naive:
        speed = {
            "naive_seconds": float(np.mean([s["naive_greedy"]["seconds"] for s in naive])),
            "greedy_seconds": float(np.mean([s["searches"]["greedy"]["seconds"] for s in naive])),
        }
        speed["speedup"] = speed["naive_seconds"] / speed["greedy_seconds"]
    first = next(scene_samples(1, args.seed))
    first_gen = adapter.generate(first[1].image, first[2], max_new_tokens=4)
    breakdown = cost_breakdown(adapter, first[1].image, first_gen, args.batch_size)
    memory = peak_memory(model, args.batch_size, args.regions)
    result = {
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "settings": vars(args),
        "versions": versions(),
        "summary": summary,
        "naive_vs_greedy": speed,
        "cost_breakdown": breakdown,
        "memory": memory,
        "samples": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print(
        "\n| search | forwards | seconds | ins AUC | del AUC | ins/greedy | del/greedy | del/greedy (means) "
        "| fwd/greedy | s/greedy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, s in summary.items():
        print(
            f"| {label} | {s['forwards']:.0f} | {s['seconds']:.2f} | {s['insertion_auc']:.4f} "
            f"| {s['deletion_auc']:.4f} "
            f"| {s['insertion_ratio']:.3f} | {s['deletion_ratio']:.3f} | {s['deletion_ratio_of_means']:.3f} "
            f"| {s['forwards_ratio']:.3f} | {s['seconds_ratio']:.3f} |"
        )
    if speed:
        print(
            f"\nnaive greedy {speed['naive_seconds']:.1f}s vs batched greedy {speed['greedy_seconds']:.1f}s: "
            f"{speed['speedup']:.1f}x"
        )
    print(
        "per-image cost: "
        + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in breakdown.items())
    )
    print(
        f"peak RSS explanation / one batched forward: {memory['ratio_peak_rss']:.3f} "
        f"(peak {memory['explain']['peak_rss_kb']} vs {memory['forward']['peak_rss_kb']} kB; growth over the "
        f"warm process {memory['explain']['growth_kb']} vs {memory['forward']['growth_kb']} kB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
