#!/usr/bin/env python3
"""Batched exact greedy vs the naive way and vs the research code's way, at real-model SHAPE on a CPU.

The speed figure of eval/search_benchmark.py is measured on the shipped 0.67 M-parameter model
(80-word vocabulary, 64 px images, a 0.7 ms processor), which hides the costs the batched design
removes. Here the models are *twins* (:mod:`mllm_attr.testing.twins`): random models of the real
transformers classes that keep a real checkpoint's vocabulary size (embedding rows), tokenizer,
image processor, resolution and image-token count, with small hidden sizes (text: 2 layers,
hidden 64; vision: 2 layers, hidden 32). Per family, on ONE image and ONE label map, in one
process and on 1 torch thread, one explanation (exact greedy) is run three ways:

* ``batched``: ``Explainer(adapter, labels=..., fast_path=True)``: candidates scored in batches,
  logits only at the explained positions (``logits_to_keep``), the processor replaced by the
  fast path's per-region contributions;
* ``naive``: one image per forward, the processor (chat template, tokenisation, image
  processing) re-run per candidate, logits and a softmax over the whole sequence and the whole
  vocabulary (generalises ``NaiveScorer`` of eval/search_benchmark.py);
* ``research``: the research code's cost model (RuoyuChen10/EAGLE, see docs/method.md §10): per
  step the candidate images are composed as dense float masks times the image; each one is
  converted back to a PIL image (BGR->RGB flip, clamp, byte), sent through the full processor
  with the chat template, scored alone with ``use_cache=True`` over the prompt and the answer up
  to the last explained token, with full-vocabulary logits at every position (no
  ``logits_to_keep``) and a softmax at the explained positions only.

All three use the library's exact greedy loop, so the naive and research orderings must equal the
batched one (asserted). With ``--naive-steps K`` the two slow ways run only the first K greedy
steps and their seconds per explanation are extrapolated per forward (said in the output).
Per-component costs (processor, vision tower, decoder, lm_head, the rest) are measured in the
runs themselves with timers (forward pre/post hooks on the model's submodules, a wrapper around
the processor calls), per scored image.

    python eval/real_shape_benchmark.py --out eval/results/real_shape_benchmark.json
    python eval/real_shape_benchmark.py --tiny --out /tmp/rs.json      # a < 1 min check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

from mllm_attr import Explainer, load_adapter
from mllm_attr._io import write_text_atomic
from mllm_attr.adapters.base import Scorer
from mllm_attr.adapters.hf import TEXT_KEYS, HFAdapter, HFScorer
from mllm_attr.data.shapes import make_scene
from mllm_attr.explanation import versions
from mllm_attr.mask import compose, make_fill
from mllm_attr.objective import Objective
from mllm_attr.search import _greedy_steps
from mllm_attr.segment import segment
from mllm_attr.targets import resolve

FAMILIES = ("qwen2_5_vl", "llava")
COMPONENTS = ("processor", "compose", "vision", "decoder", "lm_head", "softmax", "other")


# ----------------------------------------------------------------------------------------------
# Timers
# ----------------------------------------------------------------------------------------------


def model_parts(model) -> dict[str, list[torch.nn.Module]]:
    """The submodules timed in a forward: vision tower (+ projector), decoder (language model
    without its head), lm_head, and the whole model. Families without a part give an empty list."""
    inner = getattr(model, "model", model)
    vision = [getattr(inner, n) for n in ("visual", "vision_tower", "vision_model") if hasattr(inner, n)]
    vision += [getattr(inner, n) for n in ("multi_modal_projector", "connector", "mlp1") if hasattr(inner, n)]
    decoder = [getattr(inner, n) for n in ("language_model", "text_model") if hasattr(inner, n)]
    head = model.get_output_embeddings()
    return {"vision": vision, "decoder": decoder[:1], "lm_head": [head] if head is not None else [], "forward": [model]}


class Timers:
    """Accumulated seconds and call counts per component name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        #: prepended to every name while set (the fast path's set-up: ``"setup."``).
        self.prefix = ""

    def add(self, name: str, seconds: float, calls: int = 1) -> None:
        name = self.prefix + name
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + calls

    @contextmanager
    def time(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    @contextmanager
    def hooks(self, model, *, sync: bool = False):
        """Time the parts of :func:`model_parts` inside every forward of ``model``; ``sync``: wait
        for the GPU at each boundary (CUDA kernels run asynchronously; this slows the forward a little)."""
        handles = []
        wait = torch.cuda.synchronize if sync and torch.cuda.is_available() else (lambda: None)
        for name, modules in model_parts(model).items():
            for module in modules:
                start: list[float] = []

                def pre(_m, _args, _start=start):
                    wait()
                    _start.append(time.perf_counter())

                def post(_m, _args, _out, _start=start, _name=name):
                    wait()
                    if _start:
                        self.add(_name, time.perf_counter() - _start.pop())

                handles.append(module.register_forward_pre_hook(pre))
                handles.append(module.register_forward_hook(post))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": dict(self.seconds), "calls": dict(self.calls)}


@contextmanager
def timed_batched_path(adapter: HFAdapter, timers: Timers):
    """Timers around the batched path's own steps, for the duration of the block only: the
    adapter's processor entry points (instance attributes, removed afterwards), the fast path's
    pixel assembly (``HFScorer._fast_pixels``: "compose") and its set-up (``HFScorer._prepare_fast``,
    probe included: everything timed inside it is recorded under ``"setup."``). The library's
    classes are restored on exit; nothing is changed on disk."""
    originals = {name: getattr(adapter, name) for name in ("prompt_inputs", "image_inputs")}

    def wrap(fn, name):
        def inner(*args, **kwargs):
            with timers.time(name):
                return fn(*args, **kwargs)

        return inner

    for name, fn in originals.items():
        setattr(adapter, name, wrap(fn, "processor"))
    prepare_attr, pixels_attr = HFScorer.__dict__["_prepare_fast"], HFScorer.__dict__["_fast_pixels"]
    prepare, pixels = prepare_attr, pixels_attr.__func__

    def timed_prepare(self, labels):
        t0 = time.perf_counter()
        timers.prefix = "setup."
        try:
            return prepare(self, labels)
        finally:
            timers.prefix = ""
            timers.add("fast_path_setup", time.perf_counter() - t0)

    HFScorer._prepare_fast = timed_prepare
    HFScorer._fast_pixels = staticmethod(wrap(pixels, "compose"))
    try:
        yield
    finally:
        HFScorer._prepare_fast = prepare_attr
        HFScorer._fast_pixels = pixels_attr
        for name in originals:
            delattr(adapter, name)


# ----------------------------------------------------------------------------------------------
# The slow ways: one image per forward
# ----------------------------------------------------------------------------------------------


class OneByOneScorer(Scorer):
    """One image per forward through the processor.

    ``mode="naive"``: images composed as uint8, the processor (chat template, tokens, pixels) per
    image, ``use_cache=False``, logits and a float32 softmax over the whole sequence and vocabulary
    (the prompt followed by every generated token), the explained probabilities picked from it.

    ``mode="research"``: the research code's cost model: per call, dense float masks of every
    candidate times the float image (stored BGR, as read by OpenCV); per image a BGR->RGB flip,
    clamp and byte conversion to a PIL image, the processor with the chat template, a forward with
    ``use_cache=True`` over the prompt and the answer up to the last explained token with
    full-vocabulary logits at every position, and a softmax at the explained positions only.
    The text tensors are the adapter's (``mm_token_type_ids`` included), so the probabilities are
    the model's: only the costs follow the research code.
    """

    def __init__(self, adapter: HFAdapter, image, fill, generation, positions, mode: str, timers: Timers):
        if mode not in ("naive", "research"):
            raise ValueError(f"unknown mode {mode!r}")
        # The batch only groups the composition (the research code composes a whole step at once);
        # every image still goes through its own forward.
        super().__init__(image, fill, positions, batch_size=4096)
        self.adapter = adapter
        self.generation = generation
        self.mode = mode
        self.timers = timers
        self.gen_ids = torch.tensor(generation.token_ids, dtype=torch.long)
        # The research code keeps the image (read BGR by OpenCV) and the masks on the model's device.
        self.source_bgr = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).float().to(adapter.device)
        self.fill_is_black = not fill.any()

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        if self.mode == "naive":
            with self.timers.time("compose"):
                pils = [Image.fromarray(compose(self.image, self.fill, row[self.labels])) for row in table]
            return self._score_each(pils)
        if not self.fill_is_black:
            raise ValueError("the research code's composition is for the black fill only")
        with self.timers.time("compose"):
            device = self.source_bgr.device
            labels = torch.from_numpy(self.labels.astype(np.int64)).to(device)
            rows = torch.from_numpy(np.asarray(table, dtype=bool)).to(device)
            masks = rows[:, labels].float().unsqueeze(-1)  # [B, H, W, 1], dense float
            batch = masks.expand(-1, -1, -1, 3) * self.source_bgr.unsqueeze(0)
            pils = []
            for t in batch:
                rgb = t[..., [2, 1, 0]].permute(2, 0, 1).clamp(0, 255).byte()
                pils.append(Image.fromarray(rgb.permute(1, 2, 0).cpu().numpy()))
        return self._score_each(pils)

    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        return self._score_each([Image.fromarray(im) for im in images])

    @torch.inference_mode()
    def _score_each(self, pils: list[Image.Image]) -> np.ndarray:
        adapter = self.adapter
        out = []
        max_pos = max(self.positions)
        for pil in pils:
            with self.timers.time("processor"):
                inputs = adapter.prompt_inputs(pil, self.generation.prompt)
            prompt_len = int(inputs["input_ids"].shape[1])
            text = {k: inputs[k] for k in TEXT_KEYS if k in inputs}
            gen = self.gen_ids if self.mode == "naive" else self.gen_ids[:max_pos]
            text = adapter.extend_text_inputs(text, gen)
            pixel = {k: v for k, v in inputs.items() if k not in text}
            inputs = {**text, **pixel}
            inputs = {
                k: (v.to(adapter.device, adapter.dtype) if torch.is_floating_point(v) else v.to(adapter.device))
                for k, v in inputs.items()
            }
            logits = adapter.model(**inputs, use_cache=self.mode == "research").logits
            rows = [prompt_len + p - 1 for p in self.positions]
            with self.timers.time("softmax"):
                if self.mode == "naive":
                    probs = torch.softmax(logits[0].float(), dim=-1)
                    out.append([float(probs[r, self.generation.token_ids[p]]) for r, p in zip(rows, self.positions)])
                else:
                    probs = torch.softmax(logits[:, rows].float(), dim=-1)
                    ids = torch.tensor([self.generation.token_ids[p] for p in self.positions], device=probs.device)
                    out.append(probs.gather(2, ids.view(1, -1, 1)).view(-1).tolist())
        return np.asarray(out, dtype=np.float64)


def one_by_one_greedy(adapter, image, gen, positions, labels, mode: str, steps: int | None) -> dict[str, Any]:
    """The library's exact greedy loop on a :class:`OneByOneScorer`, for ``steps`` steps (all by default)."""
    timers = Timers()
    fill = make_fill(image, "black")
    scorer = OneByOneScorer(adapter, image, fill, gen, positions, mode, timers)
    objective = Objective(scorer, labels)
    n = objective.n_regions
    steps = n - 1 if steps is None else max(1, min(int(steps), n - 1))
    t0 = time.perf_counter()
    with timers.hooks(adapter.model):
        objective.endpoints()
        picked, _ = _greedy_steps(objective, [], list(range(n)), {}, {}, max_steps=steps)
    seconds = time.perf_counter() - t0
    if len(picked) == n - 1:
        picked = picked + [r for r in range(n) if r not in picked]
    return {
        "mode": mode,
        "steps_run": steps,
        "complete": steps == n - 1,
        "forwards": scorer.forwards,
        "seconds": seconds,
        "ordering_prefix": [int(r) for r in picked],
        "timers": timers.as_dict(),
    }


# ----------------------------------------------------------------------------------------------
# The batched way
# ----------------------------------------------------------------------------------------------


def batched_greedy(
    adapter, image, gen, positions, labels, batch_size: int, threads: int, fast_path: bool
) -> dict[str, Any]:
    """The library's way: ``Explainer(adapter, labels=..., batch_size=..., fast_path=...)``, timed."""
    timers = Timers()
    kwargs: dict[str, Any] = {"labels": labels, "batch_size": batch_size, "fast_path": fast_path}
    try:
        explainer = Explainer(adapter, threads=threads, **kwargs)
    except TypeError:  # an Explainer without threads=
        explainer = Explainer(adapter, **kwargs)
    t0 = time.perf_counter()
    with timers.hooks(adapter.model), timed_batched_path(adapter, timers):
        expl = explainer(image, gen, target=list(positions))
    seconds = time.perf_counter() - t0
    fast = expl.settings.get("fast_path", {})
    return {
        "mode": "batched" if fast_path else "batched_processor",
        "forwards": int(expl.forwards),
        "probe_forwards": int(fast.get("probe_forwards", 0)),
        "setup_images": int(fast.get("setup_images", 0)),
        "fast_path": fast,
        "seconds": seconds,
        "ordering": [int(r) for r in expl.ordering],
        "insertion_auc": float(expl.insertion_auc()),
        "deletion_auc": float(expl.deletion_auc()),
        "timers": timers.as_dict(),
    }


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def _mean_run(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two runs of the same batched search as one: seconds and timers averaged, both kept."""
    out = dict(a)
    out["seconds"] = (a["seconds"] + b["seconds"]) / 2
    out["seconds_each"] = [a["seconds"], b["seconds"]]
    keys = set(a["timers"]["seconds"]) | set(b["timers"]["seconds"])
    out["timers"] = {
        "seconds": {k: (a["timers"]["seconds"].get(k, 0.0) + b["timers"]["seconds"].get(k, 0.0)) / 2 for k in keys},
        "calls": a["timers"]["calls"],
    }
    return out


def per_image_breakdown(run: dict[str, Any], images: int) -> dict[str, float]:
    """Milliseconds per scored image of each component of a run (``images``: the images its search
    scored). ``compose``: building the candidates' pixels (uint8 / dense float composition for the
    slow ways, the fast path's sparse assembly of processed pixels for the batched way);
    ``other``: the run's wall time minus every timed component and minus the fast path's set-up
    (reported apart, per explanation): the rest of the forward (embedding merge, position ids,
    masks), the batched way's softmax at the explained positions, and the search's own work."""
    s = run["timers"]["seconds"]

    def g(key: str) -> float:
        return s.get(key, 0.0)

    inside = g("vision") + g("decoder") + g("lm_head")
    timed = g("processor") + g("compose") + g("softmax") + g("forward")
    out = {
        "processor": g("processor"),
        "compose": g("compose"),
        "vision": g("vision"),
        "decoder": g("decoder"),
        "lm_head": g("lm_head"),
        "softmax": g("softmax"),
        "other": run["seconds"] - g("fast_path_setup") - timed + (g("forward") - inside),
    }
    out = {k: v / max(images, 1) * 1000 for k, v in out.items()}
    out["total"] = (run["seconds"] - g("fast_path_setup")) / max(images, 1) * 1000
    out["images"] = images
    return out


def setup_breakdown(run: dict[str, Any]) -> dict[str, float]:
    """Seconds of the batched way's fast-path set-up (once per explanation): processor calls,
    probe pixel assembly, probe forwards, and the rest (building the inclusion-exclusion tables)."""
    s = run["timers"]["seconds"]
    total = s.get("fast_path_setup", 0.0)
    parts = {k: s.get("setup." + k, 0.0) for k in ("processor", "compose", "forward")}
    return {"total": total, **parts, "tables_and_rest": total - sum(parts.values())}


def forward_flops(model, *, vision_tokens: int, sequence: int, kept: int) -> dict[str, float]:
    """Approximate FLOPs of one scored image: 2 x parameters x tokens for the weights of each part
    (vision tower and projector over the vision tokens, the decoder without its embedding over the
    sequence), plus 4 x sequence^2 x hidden per decoder layer for the attention products (the vision
    tower's are left out); the lm_head over the whole sequence (``lm_head_full``) or only the
    ``kept`` explained positions (``lm_head_kept``). Works on a meta-device model (no weights)."""
    parts = model_parts(model)

    def params(modules) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    text = model.config.get_text_config()
    decoder = params(parts["decoder"]) - model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    attention = 4 * sequence**2 * text.hidden_size * text.num_hidden_layers
    out = {
        "vision": 2.0 * params(parts["vision"]) * vision_tokens,
        "decoder": 2.0 * decoder * sequence + attention,
        "lm_head_full": 2.0 * head * sequence,
        "lm_head_kept": 2.0 * head * kept,
    }
    out["lm_head_full_share"] = out["lm_head_full"] / (out["vision"] + out["decoder"] + out["lm_head_full"])
    # What keeping only the explained logits saves in compute alone (same batch, same pixels).
    out["full_over_kept"] = (out["vision"] + out["decoder"] + out["lm_head_full"]) / (
        out["vision"] + out["decoder"] + out["lm_head_kept"]
    )
    return out


def _vision_tokens(model, pixel_values_shape: Sequence[int]) -> int:
    """Tokens the vision tower runs on: patch rows (Qwen-VL) or (image / patch)^2 + CLS (CLIP)."""
    if len(pixel_values_shape) == 2:
        return int(pixel_values_shape[0])
    v = model.config.vision_config
    return (int(v.image_size) // int(v.patch_size)) ** 2 + 1


def flops_estimates(family: str, model, shape: dict[str, Any]) -> dict[str, Any]:
    """:func:`forward_flops` of the twin and of the real checkpoint's shape (published sizes of
    eval/gpu_benchmark.py, built on the meta device), for the measured token counts."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpu_benchmark import published_config

    tokens = {
        "vision_tokens": _vision_tokens(model, shape["pixel_values_shape"]),
        "sequence": shape["naive_sequence"],
        "kept": len(shape["target_positions"]),
    }
    config = published_config(family, model.config)
    with torch.device("meta"):
        real = type(model)._from_config(config, dtype=torch.bfloat16)
    out = {"twin": forward_flops(model, **tokens), "real_checkpoint": forward_flops(real, **tokens), **tokens}
    out["real_checkpoint"]["parameters"] = int(sum(p.numel() for p in real.parameters()))
    del real
    return out


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _scene(size: int, seed: int):
    scene = make_scene(seed, size=size, min_objects=3, max_objects=3, bias=None)
    first = scene.objects[0]
    names = ", ".join(f"{'an' if o.color[0] in 'aeiou' else 'a'} {o.color} {o.shape}" for o in scene.objects)
    answer = f"There is {names}."
    return scene, answer, first.shape


def run_family(family: str, args) -> dict[str, Any]:
    from mllm_attr.testing.twins import TWINS, twin_dir

    t0 = time.perf_counter()
    load_start = _load_average()
    path = twin_dir(family)
    adapter = load_adapter(str(path))
    model = adapter.model
    scene, answer, word = _scene(args.image_size, args.seed)
    image = scene.image
    gen = adapter.teacher_force(image, args.prompt, answer)
    positions = resolve(gen, word)
    seg = segment(image, args.regions, "slic")
    _, labels = np.unique(seg.labels, return_inverse=True)
    labels = labels.reshape(seg.labels.shape).astype(np.int32)
    n = int(labels.max()) + 1
    prompt = adapter.prompt_inputs(Image.fromarray(image), args.prompt)
    image_token_id = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index", None)
    n_image_tokens = int((prompt["input_ids"] == image_token_id).sum()) if image_token_id is not None else None
    shape = {
        "family": family,
        "checkpoint": TWINS[family].checkpoint,
        "model_class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "vocab_rows": int(model.get_output_embeddings().weight.shape[0]),
        "text_hidden": int(model.config.get_text_config().hidden_size),
        "text_layers": int(model.config.get_text_config().num_hidden_layers),
        "image_hw": list(image.shape[:2]),
        "pixel_values_shape": list(prompt["pixel_values"].shape),
        "image_tokens": n_image_tokens,
        "prompt_tokens": int(prompt["input_ids"].shape[1]),
        "answer": answer,
        "answer_tokens": len(gen.token_ids),
        "target_word": word,
        "target_positions": positions,
        "batched_sequence": int(prompt["input_ids"].shape[1]) + max(positions),
        "naive_sequence": int(prompt["input_ids"].shape[1]) + len(gen.token_ids),
        "n_regions": n,
        "full_forwards": n * (n + 1),
    }
    print(
        f"\n## {family} ({shape['checkpoint']} twin): {shape['parameters'] / 1e6:.1f} M parameters, "
        f"{shape['vocab_rows']:,} vocab rows, image {image.shape[1]}x{image.shape[0]} -> "
        f"{shape['image_tokens']} image tokens, sequence {shape['batched_sequence']} "
        f"(naive {shape['naive_sequence']}), "
        f"{n} regions, target {word!r} at {positions}",
        flush=True,
    )
    # Warm-up: allocator, lazy imports, the processor's first call.
    with torch.inference_mode():
        adapter.scorer(image, gen, positions, batch_size=2, fast_path=False).score_images(image[None])

    def batched_pair() -> tuple[dict[str, Any], dict[str, Any]]:
        fast = batched_greedy(adapter, image, gen, positions, labels, args.batch_size, args.threads, True)
        # The same batched search with the image processor on every candidate (fast_path=False).
        proc = batched_greedy(adapter, image, gen, positions, labels, args.batch_size, args.threads, False)
        print(f"batched: {fast['seconds']:.2f} s; processor per candidate: {proc['seconds']:.2f} s", flush=True)
        return fast, proc

    # The batched runs go before AND after the slow ones (the machine's load drifts; the mean is reported).
    before = batched_pair()
    slow = {}
    for mode in ("naive", "research"):
        run = one_by_one_greedy(adapter, image, gen, positions, labels, mode, args.naive_steps)
        k = run["steps_run"]
        expected = before[0]["ordering"][: len(run["ordering_prefix"])]
        if run["ordering_prefix"] != expected:
            raise AssertionError(
                f"{family}: the {mode} ordering {run['ordering_prefix']} differs from the batched one "
                f"{before[0]['ordering'][:k]} (first {k} steps)"
            )
        per_forward = run["seconds"] / run["forwards"]
        run["seconds_per_forward"] = per_forward
        run["seconds_per_explanation"] = run["seconds"] if run["complete"] else per_forward * shape["full_forwards"]
        run["extrapolated"] = not run["complete"]
        run["same_ordering_as_batched"] = True
        slow[mode] = run
        note = (
            ""
            if run["complete"]
            else f" (EXTRAPOLATED per forward: ran {k} of {n - 1} steps, {run['forwards']} of "
            f"{shape['full_forwards']} forwards)"
        )
        print(
            f"{mode}: {run['seconds_per_explanation']:.1f} s per explanation{note}; "
            f"{per_forward * 1000:.1f} ms per forward; same ordering as batched",
            flush=True,
        )
    after = batched_pair()
    batched, processor = (_mean_run(a, b) for a, b in zip(before, after))
    for run in (*before, *after):
        if run["ordering"] != before[0]["ordering"]:
            raise AssertionError(
                f"{family}: batched orderings differ: {before[0]['ordering']} vs {run['ordering']} ({run['mode']})"
            )
    runs = {"batched": batched, "batched_processor": processor, **slow}
    seconds = {
        "batched": batched["seconds"],
        "batched_processor": processor["seconds"],
        "naive": slow["naive"]["seconds_per_explanation"],
        "research": slow["research"]["seconds_per_explanation"],
    }
    result = {
        "shape": shape,
        "seconds_per_explanation": seconds,
        "speedup": {
            "naive_over_batched": seconds["naive"] / seconds["batched"],
            "research_over_batched": seconds["research"] / seconds["batched"],
            "naive_over_batched_processor": seconds["naive"] / seconds["batched_processor"],
            "research_over_batched_processor": seconds["research"] / seconds["batched_processor"],
        },
        "extrapolated": {m: slow[m]["extrapolated"] for m in slow},
        "breakdown_ms_per_image": {way: per_image_breakdown(run, run["forwards"]) for way, run in runs.items()},
        "batched_fast_path_setup_seconds": setup_breakdown(batched),
        "flops_per_image": flops_estimates(family, model, shape),
        "runs": runs,
        "family_seconds": time.perf_counter() - t0,
        # 1-minute load average of the machine (other jobs' work shows here) at the start and end.
        "load_average_start_end": [load_start, _load_average()],
    }
    return result


def markdown(results: dict[str, Any], target: float) -> str:
    lines = [
        "| model (twin) | vocab rows | image tokens | seq | regions | forwards | batched s | "
        "batched, no fast path s | naive s | research s | naive / batched | research / batched |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        sh, s, x = r["shape"], r["seconds_per_explanation"], r["speedup"]
        star = {m: " (extrapolated)" if r["extrapolated"][m] else "" for m in ("naive", "research")}
        lines.append(
            f"| {sh['checkpoint']} | {sh['vocab_rows']:,} | {sh['image_tokens']} | {sh['batched_sequence']} "
            f"| {sh['n_regions']} | {r['runs']['batched']['forwards']} | {s['batched']:.2f} "
            f"| {s['batched_processor']:.2f} | {s['naive']:.1f}{star['naive']} | {s['research']:.1f}{star['research']} "
            f"| **{x['naive_over_batched']:.1f}x** | **{x['research_over_batched']:.1f}x** |"
        )
    lines += [
        "",
        "Milliseconds per scored image (batched: per image of a batch, the fast path's set-up excluded "
        "(below); naive and research: per forward):",
        "",
        "| model | way | " + " | ".join(COMPONENTS) + " | total |",
        "|---|---|" + "---:|" * (len(COMPONENTS) + 1),
    ]
    for fam, r in results.items():
        for way, b in r["breakdown_ms_per_image"].items():
            cells = " | ".join(f"{b[c]:.2f}" for c in COMPONENTS)
            lines.append(f"| {fam} | {way} | {cells} | {b['total']:.2f} |")
    lines.append("")
    for fam, r in results.items():
        su = r["batched_fast_path_setup_seconds"]
        ok = min(r["speedup"]["naive_over_batched"], r["speedup"]["research_over_batched"]) >= target
        lines.append(
            f"- {fam}: target >= {target:g}x (naive and research over batched) **{'met' if ok else 'missed'}**; "
            f"the fast path's set-up takes {su['total']:.2f} s of the batched "
            f"{r['seconds_per_explanation']['batched']:.2f} s (processor {su['processor']:.2f} s for "
            f"{r['runs']['batched']['setup_images']} images, probe forwards {su['forward']:.2f} s, "
            f"building the tables and the rest {su['tables_and_rest']:.2f} s)"
        )
    for fam, r in results.items():
        f = r["flops_per_image"]
        lines.append(
            f"- {fam}: full-sequence logits are {f['twin']['lm_head_full_share']:.1%} of a forward's FLOPs on the "
            f"twin and {f['real_checkpoint']['lm_head_full_share']:.1%} at the real checkpoint's shape "
            f"({f['real_checkpoint']['parameters'] / 1e9:.2f} B parameters; estimate): keeping only the explained "
            f"logits saves {f['twin']['full_over_kept']:.1f}x of the compute on the twin, "
            f"{f['real_checkpoint']['full_over_kept']:.2f}x at real shape"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES), help="twins to run (comma-separated)")
    ap.add_argument("--regions", type=int, default=16, help="requested SLIC regions (the actual count is reported)")
    ap.add_argument("--image-size", type=int, default=448, help="side of the square test scene, in pixels")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--naive-steps", type=int, default=None, help="greedy steps of the naive and research runs (default: all)"
    )
    ap.add_argument("--prompt", default="Describe the image.")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target", type=float, default=10.0, help="speed-up target (reported as met / missed)")
    ap.add_argument("--tiny", action="store_true", help="a < 1 min check: Qwen2.5-VL twin, 224 px, 4 regions")
    ap.add_argument("--out", default="eval/results/real_shape_benchmark.json")
    args = ap.parse_args(argv)
    if args.tiny:
        args.families, args.regions, args.image_size, args.batch_size = "qwen2_5_vl", 6, 224, 8
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = {fam: run_family(fam, args) for fam in args.families.split(",") if fam}
    table = markdown(results, args.target)
    out = {
        "command": "python " + " ".join(["eval/real_shape_benchmark.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {**vars(args), "torch_threads": torch.get_num_threads()},
        "environment": {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "machine": platform.machine(),
            "device": "cpu",
        },
        "versions": versions(),
        "results": results,
        "target": args.target,
        "target_met": {
            fam: min(r["speedup"]["naive_over_batched"], r["speedup"]["research_over_batched"]) >= args.target
            for fam, r in results.items()
        },
        "wall_seconds": time.perf_counter() - t0,
        "table_markdown": table,
    }
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print("\n" + table)
    print(f"\nwall {out['wall_seconds']:.0f} s; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
