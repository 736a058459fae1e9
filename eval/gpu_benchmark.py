#!/usr/bin/env python3
"""GPU benchmark: full-size random-weight twins of Qwen2.5-VL-3B and LLaVA-1.5-7B, bf16, one GPU.

No checkpoint is downloaded. Each model is the real transformers class built from the PUBLISHED
configuration of the checkpoint (hidden sizes, layers, heads, vocabulary, vision tower; the values
are written below) with random weights, which cost exactly the real compute and memory. Everything
else comes from the project's twins (:mod:`mllm_attr.testing.twins`): the tokenizer, chat
template, image processor and special-token ids, so that the processor, the token layout and
the image-token count are the real ones. Per model it measures, on one scene and one label map:

* ``batch_scaling``: one batched scoring call at each batch size (8/16/32/64): milliseconds and
  images per second, split into the fast path's pixel assembly (CPU) and the forward, and peak
  GPU memory (``torch.cuda.max_memory_allocated``) against the weights alone;
* ``explanations``: a whole explanation with exact greedy and with a fast search
  (``hierarchical``) over 64 requested regions: seconds, forwards, images per second, peak GPU
  memory and its ratio to one batched forward at the same batch size;
* ``naive_sample``: a sample of candidates scored the naive way and the research code's way
  (one image per forward, processor per candidate, full-vocabulary logits; see
  eval/real_shape_benchmark.py), extrapolated per forward to a whole exact-greedy explanation,
  and the speed-up of the batched exact greedy over it.

One command on a machine with a CUDA GPU (about 10 minutes on an H100 / H200)::

    python eval/gpu_benchmark.py --out eval/results/gpu_benchmark.json

``--tiny`` runs the same steps on the small twins (float32, CPU, 4 regions, batch sizes 2 and 4)
in well under a minute; the tests use it. The JSON records the device (``"cpu"`` there).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_shape_benchmark import OneByOneScorer, Timers, _scene  # noqa: E402

from mllm_attr import Explainer, load_adapter  # noqa: E402
from mllm_attr._io import write_text_atomic  # noqa: E402
from mllm_attr.adapters.base import as_pil  # noqa: E402
from mllm_attr.explanation import versions  # noqa: E402
from mllm_attr.mask import compose, make_fill  # noqa: E402
from mllm_attr.segment import segment  # noqa: E402
from mllm_attr.targets import resolve  # noqa: E402

# ----------------------------------------------------------------------------------------------
# Published configurations (recalled from the public config.json files, not downloaded here; the
# parameter counts they give are checked against the published model sizes: see PUBLISHED_SIZE).
# Only sizes are listed; every other setting comes from the twin's configuration, which keeps
# the checkpoint's non-size settings.
# ----------------------------------------------------------------------------------------------

PUBLISHED: dict[str, dict[str, Any]] = {
    "qwen2_5_vl": {
        "checkpoint": "Qwen/Qwen2.5-VL-3B-Instruct",
        # Qwen2.5-VL-3B-Instruct config.json (recalled): Qwen2.5-3B language model.
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_window_layers": 70,
            "tie_word_embeddings": True,
        },
        # M-RoPE sections over head_dim / 2 = 64 (the twin's are scaled to its head_dim 16).
        "mrope_section": [16, 24, 24],
        # vision_config (recalled): 32 blocks of 1280, 16 heads, SwiGLU MLP of 3420, full attention
        # in blocks 7, 15, 23, 31 (112 px windows elsewhere), merger to the text width.
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 2048,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "window_size": 112,
        },
    },
    "llava": {
        "checkpoint": "llava-hf/llava-1.5-7b-hf",
        # llava-1.5-7b-hf config.json (recalled): Vicuna-7B v1.5 (LLaMA-2 7B shape), multi-head attention.
        "text": {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 32064,
        },
        # CLIP ViT-L/14 at 336 px.
        "vision": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
        },
    },
}

#: Published model sizes (parameters, as the model cards round them), to check the recalled configs.
PUBLISHED_SIZE = {"qwen2_5_vl": 3.75e9, "llava": 7.06e9}

FAMILIES = tuple(PUBLISHED)


def published_config(family: str, twin_config) -> Any:
    """The twin's configuration with the published sizes of :data:`PUBLISHED` put in."""
    spec = PUBLISHED[family]
    d = copy.deepcopy(twin_config.to_dict())
    text, vision = d["text_config"], d["vision_config"]
    text.update(spec["text"])
    text.pop("layer_types", None)  # one entry per layer: rebuilt for the new layer count
    if "head_dim" in text:
        text["head_dim"] = spec["text"]["hidden_size"] // spec["text"]["num_attention_heads"]
    if "mrope_section" in spec:
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": list(spec["mrope_section"])}
    vision.update(spec["vision"])
    for key in ("tie_word_embeddings",):
        if key in spec["text"]:
            d[key] = spec["text"][key]
    config = type(twin_config).from_dict(d)
    got = config.get_text_config()
    for key, value in spec["text"].items():
        if getattr(got, key) != value:
            raise AssertionError(f"{family}: text_config.{key} is {getattr(got, key)!r}, expected {value!r}")
    return config


def count_parameters_on_meta(family: str, twin_model) -> int:
    """Parameters of the full-size model, built on the meta device (no memory, no weights)."""
    config = published_config(family, twin_model.config)
    with torch.device("meta"):
        model = type(twin_model)._from_config(config, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    del model
    return int(n)


# ----------------------------------------------------------------------------------------------
# Devices and timing
# ----------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _allocated(device: torch.device) -> int | None:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device.type, "machine": platform.machine(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            {
                "device_name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "total_memory_bytes": int(props.total_memory),
                "cuda": torch.version.cuda,
            }
        )
    else:
        info.update({"device_name": platform.processor() or "cpu", "torch_threads": torch.get_num_threads()})
    return info


def build_adapter(family: str, *, full: bool, device: torch.device, dtype: torch.dtype):
    """``(adapter, info)``: the twin's adapter, with (``full``) a full-size random model of the
    published configuration in place of the twin's small one."""
    from mllm_attr.testing.twins import twin_dir

    t0 = time.perf_counter()
    twin = load_adapter(str(twin_dir(family)))
    info: dict[str, Any] = {"checkpoint": PUBLISHED[family]["checkpoint"]}
    info["full_size_parameters_meta"] = count_parameters_on_meta(family, twin.model)
    info["published_size"] = PUBLISHED_SIZE[family]
    if not full:
        model = twin.model.to(device=device, dtype=dtype).eval()
        info["config_source"] = "twin (small sizes)"
    else:
        config = published_config(family, twin.model.config)
        with torch.device(device):
            model = type(twin.model)._from_config(config, dtype=dtype)
        model.generation_config = copy.deepcopy(twin.model.generation_config)
        model.eval()
        info["config_source"] = "published sizes (recalled) + the twin's other settings"
        del twin.model
    adapter = type(twin)(model, twin.processor, name=f"{info['checkpoint']} shape, random weights")
    text = model.config.get_text_config()
    info.update(
        {
            "model_class": type(model).__name__,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "text": {k: getattr(text, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")},
            "vocab_rows": int(model.get_output_embeddings().weight.shape[0]),
            "dtype": str(dtype).replace("torch.", ""),
            "weights_bytes": _allocated(device),
            "build_seconds": time.perf_counter() - t0,
        }
    )
    return adapter, info


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------


def batch_scaling(adapter, image, gen, positions, labels, batch_sizes: Sequence[int], repeats: int) -> list[dict]:
    """One batched scoring call per batch size: time, split, peak memory."""
    device = adapter.device
    n = int(labels.max()) + 1
    scorer = adapter.scorer(image, gen, positions, batch_size=max(batch_sizes), fast_path="auto")
    scorer.set_regions(labels)
    rng = np.random.default_rng(0)
    rows = []
    for bs in batch_sizes:
        scorer.batch_size = bs
        table = rng.random((bs, n)) < 0.5
        scorer.score_regions(table)  # warm-up (kernels, allocator)
        _reset_peak(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            scorer.score_regions(table)
        _sync(device)
        total = (time.perf_counter() - t0) / repeats
        peak = _peak(device)
        t0 = time.perf_counter()
        pixel = scorer._region_pixel_inputs(table)
        assemble = time.perf_counter() - t0
        # The same batch's pixels through the image processor instead (what fast_path=False pays).
        t0 = time.perf_counter()
        adapter.image_inputs([as_pil(compose(image, scorer.fill, row[labels])) for row in table])
        processor = time.perf_counter() - t0
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            scorer._forward(pixel, bs)
        _sync(device)
        forward = (time.perf_counter() - t0) / repeats
        rows.append(
            {
                "batch_size": bs,
                "ms_per_image": total / bs * 1000,
                "images_per_second": bs / total,
                "pixel_assembly_ms_per_image": assemble / bs * 1000,
                "processor_pixels_ms_per_image": processor / bs * 1000,
                "forward_ms_per_image": forward / bs * 1000,
                "peak_memory_bytes": peak,
            }
        )
        print(
            f"  batch {bs}: {rows[-1]['ms_per_image']:.2f} ms/image ({rows[-1]['images_per_second']:.1f} images/s; "
            f"fast-path pixels {rows[-1]['pixel_assembly_ms_per_image']:.2f} (processor "
            f"{rows[-1]['processor_pixels_ms_per_image']:.2f}), forward {rows[-1]['forward_ms_per_image']:.2f}), "
            f"peak {_gib(peak)}",
            flush=True,
        )
    fast = dict(scorer.fast_report)
    return rows, fast


def _gib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**30:.2f} GiB"


def one_forward_peak(adapter, image, gen, positions, labels, batch_size: int) -> int | None:
    """Peak GPU memory of ONE batched forward of ``batch_size`` candidates (after a warm-up)."""
    device = adapter.device
    if device.type != "cuda":
        return None
    scorer = adapter.scorer(image, gen, positions, batch_size=batch_size, fast_path="auto")
    scorer.set_regions(labels)
    table = np.random.default_rng(1).random((batch_size, int(labels.max()) + 1)) < 0.5
    scorer.score_regions(table)
    _reset_peak(device)
    scorer.score_regions(table)
    return _peak(device)


def explanation(adapter, image, gen, positions, labels, search: str, batch_size: int | None) -> dict[str, Any]:
    device = adapter.device
    explainer = Explainer(adapter, labels=labels, search=search, batch_size=batch_size, fast_path="auto")
    _reset_peak(device)
    t0 = time.perf_counter()
    expl = explainer(image, gen, target=list(positions))
    _sync(device)
    seconds = time.perf_counter() - t0
    used_batch = expl.settings.get("batch_size", batch_size)
    out = {
        "search": search,
        "seconds": seconds,
        "forwards": int(expl.forwards),
        "images_per_second": expl.forwards / seconds,
        "batch_size": used_batch,
        "peak_memory_bytes": _peak(device),
        "fast_path": expl.settings.get("fast_path", {}),
        "insertion_auc": float(expl.insertion_auc()),
        "deletion_auc": float(expl.deletion_auc()),
        "n_regions": int(expl.n_regions) if hasattr(expl, "n_regions") else int(labels.max()) + 1,
    }
    print(
        f"  {search}: {seconds:.1f} s, {out['forwards']} forwards ({out['images_per_second']:.1f} images/s), "
        f"batch {used_batch}, peak {_gib(out['peak_memory_bytes'])}, fast path {out['fast_path'].get('used')}",
        flush=True,
    )
    return out


def naive_sample(adapter, image, gen, positions, labels, mode: str, forwards: int) -> dict[str, Any]:
    """``forwards`` candidates of greedy's first step, one image per forward (``mode``: naive / research)."""
    device = adapter.device
    n = int(labels.max()) + 1
    timers = Timers()
    scorer = OneByOneScorer(adapter, image, make_fill(image, "black"), gen, positions, mode, timers)
    scorer.set_regions(labels)
    table = np.eye(n, dtype=bool)[np.arange(max(forwards, 1)) % n]
    scorer.score_regions(table[:1])  # warm-up
    timers.seconds.clear()
    timers.calls.clear()
    _sync(device)
    t0 = time.perf_counter()
    with timers.hooks(adapter.model, sync=device.type == "cuda"):
        scorer.score_regions(table)
    _sync(device)
    seconds = time.perf_counter() - t0
    per = seconds / len(table)
    breakdown = {k: v / len(table) * 1000 for k, v in timers.seconds.items()}
    out = {
        "mode": mode,
        "forwards": int(len(table)),
        "ms_per_forward": per * 1000,
        "seconds_per_explanation_extrapolated": per * n * (n + 1),
        "breakdown_ms_per_forward": breakdown,
        "note": "extrapolated per forward to n(n+1) forwards; component timers synchronise the GPU",
    }
    print(
        f"  {mode}: {out['ms_per_forward']:.1f} ms per forward -> {out['seconds_per_explanation_extrapolated']:.0f} s "
        f"per exact-greedy explanation (extrapolated from {len(table)} forwards)",
        flush=True,
    )
    return out


def run_family(family: str, args, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    print(f"\n## {family}: building ({'small twin' if args.tiny else 'full size, random weights'})", flush=True)
    adapter, info = build_adapter(family, full=not args.tiny, device=device, dtype=dtype)
    print(
        f"  {info['parameters'] / 1e9:.3f} B parameters ({info['dtype']}, {info['build_seconds']:.0f} s); "
        f"the published config gives {info['full_size_parameters_meta'] / 1e9:.3f} B "
        f"(published size {info['published_size'] / 1e9:.2f} B); weights {_gib(info['weights_bytes'])}",
        flush=True,
    )
    scene, answer, word = _scene(args.image_size, args.seed)
    image = scene.image
    gen = adapter.teacher_force(image, args.prompt, answer)
    positions = resolve(gen, word)
    seg = segment(image, args.regions, args.segmenter)
    _, labels = np.unique(seg.labels, return_inverse=True)
    labels = labels.reshape(seg.labels.shape).astype(np.int32)
    n = int(labels.max()) + 1
    from PIL import Image

    prompt = adapter.prompt_inputs(Image.fromarray(image), args.prompt)
    cfg = adapter.model.config
    image_token = getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index", None)
    shape = {
        "image_hw": list(image.shape[:2]),
        "image_tokens": int((prompt["input_ids"] == image_token).sum()),
        "prompt_tokens": int(prompt["input_ids"].shape[1]),
        "sequence": int(prompt["input_ids"].shape[1]) + max(positions),
        "answer": answer,
        "target_word": word,
        "target_positions": positions,
        "n_regions": n,
    }
    print(
        f"  image {image.shape[1]}x{image.shape[0]} -> {shape['image_tokens']} image tokens, sequence "
        f"{shape['sequence']}, {n} regions",
        flush=True,
    )
    scaling, fast = batch_scaling(adapter, image, gen, positions, labels, args.batch_sizes, args.repeats)
    weights = info["weights_bytes"]
    for row in scaling:
        peak = row["peak_memory_bytes"]
        row["peak_minus_weights_bytes"] = peak - weights if peak is not None and weights is not None else None
    explanations = {}
    for search in args.searches:
        explanations[search] = explanation(adapter, image, gen, positions, labels, search, args.batch_size)
        bs = explanations[search]["batch_size"]
        single = next((r["peak_memory_bytes"] for r in scaling if r["batch_size"] == bs), None)
        if single is None and device.type == "cuda":
            single = one_forward_peak(adapter, image, gen, positions, labels, bs)
        peak = explanations[search]["peak_memory_bytes"]
        explanations[search]["one_forward_peak_memory_bytes"] = single
        explanations[search]["peak_over_one_forward"] = peak / single if peak and single else None
        explanations[search]["peak_minus_weights_bytes"] = peak - weights if peak and weights else None
    naive = {
        m: naive_sample(adapter, image, gen, positions, labels, m, args.naive_forwards) for m in ("naive", "research")
    }
    greedy = explanations.get("greedy")
    speedup = None
    if greedy:
        speedup = {
            f"{m}_over_greedy": naive[m]["seconds_per_explanation_extrapolated"] / greedy["seconds"] for m in naive
        }
    result = {
        "model": info,
        "shape": shape,
        "batch_scaling": scaling,
        "fast_path": fast,
        "explanations": explanations,
        "naive_sample": naive,
        "speedup": speedup,
    }
    del adapter
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def summary_table(results: dict[str, Any]) -> str:
    lines = [
        "| model | search | regions | forwards | s / explanation | images / s | batch | peak GPU | "
        "peak / one forward | naive s (extrap.) | naive / batched |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        naive = r["naive_sample"]["naive"]["seconds_per_explanation_extrapolated"]
        for search, e in r["explanations"].items():
            ratio = naive / e["seconds"] if search == "greedy" else None
            ratio_txt = f"{ratio:.1f}x" if ratio else ""
            naive_txt = f"{naive:.0f}" if search == "greedy" else ""
            po = e["peak_over_one_forward"]
            lines.append(
                f"| {r['model']['checkpoint']} | {search} | {e['n_regions']} | {e['forwards']} | {e['seconds']:.1f} "
                f"| {e['images_per_second']:.1f} | {e['batch_size']} | {_gib(e['peak_memory_bytes'])} "
                f"| {'' if po is None else f'{po:.2f}x'} | {naive_txt} | {ratio_txt} |"
            )
    lines += [
        "",
        "| model | batch | ms / image | images / s | fast-path pixels ms | processor pixels ms | forward ms "
        "| peak GPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        for s in r["batch_scaling"]:
            lines.append(
                f"| {r['model']['checkpoint']} | {s['batch_size']} | {s['ms_per_image']:.2f} "
                f"| {s['images_per_second']:.1f} | {s['pixel_assembly_ms_per_image']:.2f} "
                f"| {s['processor_pixels_ms_per_image']:.2f} "
                f"| {s['forward_ms_per_image']:.2f} | {_gib(s['peak_memory_bytes'])} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--regions", type=int, default=64, help="requested regions (the actual count is reported)")
    ap.add_argument("--segmenter", default="slic")
    ap.add_argument("--searches", default="greedy,hierarchical")
    ap.add_argument("--batch-sizes", default="8,16,32,64")
    ap.add_argument("--batch-size", type=int, default=None, help="explanations' batch size (default: the library's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-forwards", type=int, default=32, help="candidates scored one by one per way")
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--prompt", default="Describe the image.")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cuda, cpu")
    ap.add_argument("--tiny", action="store_true", help="small twins, float32, CPU, 4 regions, batch sizes 2/4")
    ap.add_argument("--out", default="eval/results/gpu_benchmark.json")
    args = ap.parse_args(argv)
    if args.tiny:
        args.device = "cpu" if args.device == "auto" else args.device
        args.regions, args.segmenter, args.batch_sizes, args.batch_size = 4, "grid", "2,4", 4
        args.repeats, args.naive_forwards, args.image_size = 1, 3, 224
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_benchmark: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if device.type != "cuda" and not args.tiny:
        print(
            "gpu_benchmark: error: the full-size models need a CUDA GPU (none found); "
            "run with --tiny for the small CPU check",
            file=sys.stderr,
        )
        return 2
    if device.type == "cpu":
        torch.set_num_threads(1)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b]
    args.searches = [s for s in str(args.searches).split(",") if s]
    t0 = time.perf_counter()
    print(f"device {device} ({device_info(device).get('device_name')}), {dtype}", flush=True)
    results = {fam: run_family(fam, args, device, dtype) for fam in args.families.split(",") if fam}
    table = summary_table(results)
    out = {
        "command": "python " + " ".join(["eval/gpu_benchmark.py", *(sys.argv[1:] if argv is None else argv)]),
        "device": device.type,
        "device_info": device_info(device),
        "dtype": str(dtype).replace("torch.", ""),
        "tiny": bool(args.tiny),
        "settings": dict(vars(args)),
        "versions": versions(),
        "published_configs": PUBLISHED,
        "results": results,
        "wall_seconds": time.perf_counter() - t0,
        "table_markdown": table,
    }
    write_text_atomic(args.out, json.dumps(out, indent=1, default=str))
    print("\n" + table)
    print(f"\nwall {out['wall_seconds']:.0f} s; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
