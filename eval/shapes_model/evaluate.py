"""Evaluate a shapes-world LLaVA on held-out scenes through its real processor and ``generate``.

Usage, from the repository root::

    python eval/shapes_model/evaluate.py --model mllm_attr/assets/shapes-llava --n 300 [--card]

This is a script, not part of the installed package: it needs ``mllm_attr`` importable
(installed, e.g. editable) and nothing installed for itself. Run as a file, it puts
``eval/`` on ``sys.path`` and imports its sibling :mod:`shapes_model.model` (the model's
sizes, vocabulary and builders) from the ``shapes_model`` package; ``cd eval && python -m
shapes_model.evaluate ...`` works too, and so does ``from shapes_model.evaluate import ask``
with ``eval/`` on ``sys.path`` (as ``tests/test_shapes.py`` does). It imports nothing from
the training script (:mod:`shapes_model.train` calls :func:`main` at the end of a run).

Held-out data: scenes of the ``"test"`` split under :data:`EVAL_SEED` (a seed never used
for training; in the test split the co-occurrence partner is often absent). Per scene the
model is asked one colour question, two existence questions (one present shape -> "yes",
one absent shape -> "no"), one shape question and for a caption; all answers are produced
greedily by ``model.generate`` from inputs built with ``processor.apply_chat_template``.

Hallucination probe for :data:`~mllm_attr.data.shapes.CO_OCCURRENCE_BIAS`: ``n`` further
scenes that contain the anchor (star) but neither the partner (diamond) nor the control
shape (circle), and ``n`` scenes with none of the three. In each, the model is asked
"Is there a <partner>?" and "Is there a <control>?" and for a caption. The hallucination
rate is the fraction of "yes" answers (or caption mentions) for the absent shape.

Writes ``<out>/eval_results.json`` and ``<out>/eval_results.md`` (``--out`` defaults to
the model directory); with ``--card`` also the model card ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mllm_attr.data import shapes as S

if __package__:  # imported as shapes_model.evaluate (or run with python -m from eval/)
    from . import model as M
else:  # run as a file: python eval/shapes_model/evaluate.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from shapes_model import model as M

logger = logging.getLogger(__name__)

__all__ = ["EVAL_SEED", "load", "ask", "evaluate", "markdown_table", "write_model_card", "main"]

#: Seed of the held-out evaluation scenes (training uses small seeds, default 0).
EVAL_SEED = 20_240_917


def load(model_dir: str | Path):
    """``(model, processor)`` from a checkpoint directory (eval mode)."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(str(model_dir))
    model.eval()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    return model, processor


@torch.no_grad()
def ask(
    model, processor, images: Sequence[Any], questions: Sequence[str], *, batch_size: int = 64, max_new_tokens: int = 24
) -> list[str]:
    """Greedy answers (decoded, special tokens skipped) to ``questions[i]`` about ``images[i]``."""
    if len(images) != len(questions):
        raise ValueError("need one question per image")
    answers: list[str] = []
    for start in range(0, len(images), batch_size):
        imgs = list(images[start : start + batch_size])
        qs = list(questions[start : start + batch_size])
        texts = [processor.apply_chat_template(M.conversation(q), add_generation_prompt=True) for q in qs]
        inputs = processor(text=texts, images=imgs, padding=True, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += [t.strip() for t in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers


def _rate(hits: Sequence[bool]) -> float:
    return float(np.mean(hits)) if len(hits) else float("nan")


def evaluate(model, processor, *, n: int = 300, seed: int = EVAL_SEED, batch_size: int = 64) -> dict[str, Any]:
    """Run the evaluation; returns a JSON-serialisable dict of metrics and a few examples."""
    t0 = time.time()
    rng = random.Random(seed)
    scenes = list(S.generate_scenes(n, seed=seed, split="test"))
    images, questions, meta = [], [], []
    for i, sc in enumerate(scenes):
        if not sc.objects:
            continue
        img = sc.pil()
        o = sc.objects[rng.randrange(len(sc.objects))]
        items = [("color", S.color_question(o.shape), o.color)]
        present = sorted(set(sc.shapes), key=S.SHAPES.index)
        absent = [s for s in S.SHAPES if s not in present]
        items.append(("exist", S.exist_question(present[rng.randrange(len(present))]), "yes"))
        if absent:
            items.append(("exist", S.exist_question(absent[rng.randrange(len(absent))]), "no"))
        o2 = sc.objects[rng.randrange(len(sc.objects))]
        items.append(("shape", S.shape_question(o2.color), o2.shape))
        items.append(("caption", S.CAPTION_QUESTION, sc.caption()))
        for task, q, a in items:
            images.append(img)
            questions.append(q)
            meta.append((task, i, a))

    bias = S.CO_OCCURRENCE_BIAS
    probes: dict[str, list[S.Scene]] = {
        "anchor_present": [
            S.make_scene(
                S.scene_rng(seed, "probe-anchor", i),
                split="test",
                require=[bias.anchor],
                exclude=[bias.partner, bias.control],
            )
            for i in range(n)
        ],
        "anchor_absent": [
            S.make_scene(
                S.scene_rng(seed, "probe-none", i), split="test", exclude=[bias.anchor, bias.partner, bias.control]
            )
            for i in range(n)
        ],
    }
    for cond, scs in probes.items():
        for i, sc in enumerate(scs):
            img = sc.pil()
            for target in (bias.partner, bias.control):
                images.append(img)
                questions.append(S.exist_question(target))
                meta.append((f"probe_exist:{cond}:{target}", i, "no"))
            images.append(img)
            questions.append(S.CAPTION_QUESTION)
            meta.append((f"probe_caption:{cond}", i, sc.caption()))

    # Removal probe: does the model look? Ask about object 0, with and without it in the image.
    removal = [sc for sc in scenes if len(sc.objects) >= 2][: max(1, n // 2)]
    for i, sc in enumerate(removal):
        gone = sc.without(0)
        target, other = sc.objects[0], sc.objects[1]
        for cond, img in (("orig", sc.pil()), ("removed", gone.pil())):
            images.append(img)
            questions.append(S.exist_question(target.shape))
            meta.append((f"removal_exist:{cond}", i, "yes" if cond == "orig" else "no"))
            images.append(img)
            questions.append(S.color_question(other.shape))
            meta.append((f"removal_other:{cond}", i, other.color))

    answers = ask(model, processor, images, questions, batch_size=batch_size)

    per: dict[str, list[bool]] = {"color": [], "exist": [], "shape": []}
    exist_by_label: dict[str, list[bool]] = {"yes": [], "no": []}
    cap_exact, cap_shapes_exact = [], []
    tp = fp = fn = 0
    examples: list[dict[str, str]] = []
    probe_yes: dict[str, list[bool]] = {}
    probe_cap: dict[str, list[bool]] = {}
    removal_answers: dict[tuple[str, int], str] = {}
    vocab = {"color": S.COLOR_NAMES, "exist": ("yes", "no"), "shape": S.SHAPES}
    for (task, i, gt), q, ans in zip(meta, questions, answers):
        if task in vocab:
            ok = S.parse_answer_word(ans, vocab[task]) == gt
            per[task].append(ok)
            if task == "exist":
                exist_by_label[gt].append(ok)
        elif task == "caption":
            pred = set(S.parse_caption(ans))
            true = set(S.parse_caption(gt))
            cap_exact.append(pred == true)
            cap_shapes_exact.append({s for _, s in pred} == {s for _, s in true})
            tp += len(pred & true)
            fp += len(pred - true)
            fn += len(true - pred)
        elif task.startswith("probe_exist:"):
            _, cond, target = task.split(":")
            probe_yes.setdefault(f"{cond}:{target}", []).append(S.parse_answer_word(ans, ("yes", "no")) == "yes")
        elif task.startswith("removal_"):
            removal_answers[(task, i)] = ans
        elif task.startswith("probe_caption:"):
            cond = task.split(":")[1]
            named = {s for _, s in S.parse_caption(ans)}
            for target in (bias.partner, bias.control):
                probe_cap.setdefault(f"{cond}:{target}", []).append(target in named)
        if len(examples) < 12 and not task.startswith("probe"):
            examples.append({"task": task, "question": q, "answer": ans, "expected": gt})

    flips, stays = [], []
    for i in range(len(removal)):
        before = S.parse_answer_word(removal_answers[("removal_exist:orig", i)], ("yes", "no"))
        after = S.parse_answer_word(removal_answers[("removal_exist:removed", i)], ("yes", "no"))
        if before == "yes":
            flips.append(after == "no")
        o_before = S.parse_answer_word(removal_answers[("removal_other:orig", i)], S.COLOR_NAMES)
        o_after = S.parse_answer_word(removal_answers[("removal_other:removed", i)], S.COLOR_NAMES)
        if o_before == removal[i].objects[1].color:
            stays.append(o_after == o_before)

    results: dict[str, Any] = {
        "n_scenes": n,
        "seed": seed,
        "split": "test",
        "color_accuracy": _rate(per["color"]),
        "exist_accuracy": _rate(per["exist"]),
        "exist_accuracy_yes": _rate(exist_by_label["yes"]),
        "exist_accuracy_no": _rate(exist_by_label["no"]),
        "shape_accuracy": _rate(per["shape"]),
        "caption_exact_objects": _rate(cap_exact),
        "caption_exact_shapes": _rate(cap_shapes_exact),
        "caption_object_recall": tp / max(1, tp + fn),
        "caption_object_precision": tp / max(1, tp + fp),
        "counts": {k: len(v) for k, v in per.items()} | {"caption": len(cap_exact)},
        "bias": {
            "anchor": bias.anchor,
            "partner": bias.partner,
            "control": bias.control,
            "p_partner_given_anchor_train": bias.p("train"),
            "p_partner_given_anchor_test": bias.p("test"),
            "n_probe_scenes": n,
            "yes_rate": {k: _rate(v) for k, v in sorted(probe_yes.items())},
            "caption_mention_rate": {k: _rate(v) for k, v in sorted(probe_cap.items())},
        },
        "removal": {
            "n_scenes": len(removal),
            "exist_flips_to_no": _rate(flips),
            "n_exist_yes_before": len(flips),
            "other_color_unchanged": _rate(stays),
            "n_other_correct_before": len(stays),
        },
        "examples": examples,
        "seconds": round(time.time() - t0, 1),
    }
    b = results["bias"]
    b["hallucination_rate_partner"] = b["yes_rate"][f"anchor_present:{bias.partner}"]
    b["hallucination_rate_control"] = b["yes_rate"][f"anchor_present:{bias.control}"]
    b["caption_hallucination_rate_partner"] = b["caption_mention_rate"][f"anchor_present:{bias.partner}"]
    b["caption_hallucination_rate_control"] = b["caption_mention_rate"][f"anchor_present:{bias.control}"]
    return results


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def markdown_table(r: dict[str, Any]) -> str:
    """The results as markdown (task accuracies, then the co-occurrence probe)."""
    c = r["counts"]
    lines = [
        f"Held-out evaluation: {r['n_scenes']} scenes of the test split (seed {r['seed']}), greedy `generate`.",
        "",
        "| task | metric | value | questions |",
        "|---|---|---|---|",
        f"| colour (`What color is the <shape>?`) | accuracy | {_pct(r['color_accuracy'])} | {c['color']} |",
        f"| existence (`Is there a <shape> in the image?`) | accuracy | {_pct(r['exist_accuracy'])} | {c['exist']} |",
        f'| existence, present ("yes") | accuracy | {_pct(r["exist_accuracy_yes"])} | |',
        f'| existence, absent ("no") | accuracy | {_pct(r["exist_accuracy_no"])} | |',
        f"| shape (`What shape is the <color> object?`) | accuracy | {_pct(r['shape_accuracy'])} | {c['shape']} |",
        f"| caption (`Describe the image.`) | names exactly the right colour-shape objects | {_pct(r['caption_exact_objects'])} | {c['caption']} |",
        f"| caption | names exactly the right shapes | {_pct(r['caption_exact_shapes'])} | |",
        f"| caption | object recall | {_pct(r['caption_object_recall'])} | |",
        f"| caption | object precision | {_pct(r['caption_object_precision'])} | |",
        "",
    ]
    b = r["bias"]
    a, p, ctl = b["anchor"], b["partner"], b["control"]
    lines += [
        f"Co-occurrence probe ({b['n_probe_scenes']} scenes per condition; the asked-about shape is always absent). "
        f"Training data: P({p} | {a}) = {b['p_partner_given_anchor_train']:.2f}.",
        "",
        '| scenes | asked about (absent) | "yes" rate | caption mentions it |',
        "|---|---|---|---|",
    ]
    for cond, label in (("anchor_present", f"with a {a}"), ("anchor_absent", f"without a {a}")):
        for t in (p, ctl):
            role = "partner" if t == p else "control"
            lines.append(
                f"| {label} | {t} ({role}) | {_pct(b['yes_rate'][f'{cond}:{t}'])} | {_pct(b['caption_mention_rate'][f'{cond}:{t}'])} |"
            )
    rm = r.get("removal")
    if rm:
        lines += [
            "",
            f"Removal probe ({rm['n_scenes']} scenes with two or more objects; object A removed by redrawing the "
            "scene without it):",
            "",
            "| check | rate |",
            "|---|---|",
            f'| "Is there a <A>?" turns from "yes" to "no" | {_pct(rm["exist_flips_to_no"])} (of {rm["n_exist_yes_before"]}) |',
            f"| colour answer about another object B stays the same | {_pct(rm['other_color_unchanged'])} (of {rm['n_other_correct_before']}) |",
        ]
    return "\n".join(lines) + "\n"


def write_model_card(model_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``README.md`` in ``model_dir`` from ``training_info.json`` and ``results``."""
    d = Path(model_dir)
    info_path = d / "training_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    cfg = json.loads((d / "config.json").read_text())
    v, t = cfg["vision_config"], cfg["text_config"]
    size_kb = sum(f.stat().st_size for f in d.glob("*.safetensors")) / 1024
    b = results["bias"]
    minutes = info.get("train_seconds", float("nan")) / 60
    card = f"""---
license: mit
library_name: transformers
pipeline_tag: image-text-to-text
tags: [llava, synthetic, shapes, tiny, attribution-testbed]
---

# shapes-llava

A tiny `LlavaForConditionalGeneration` trained from scratch on CPU on the synthetic
"shapes world" of `mllm_attr` (`mllm_attr/data/shapes.py`). It is the project's small
default model: it really looks at the image (occluding the asked-about object changes the
answer) and it carries a deliberate, measured language-prior bias, so attribution methods
can be checked against known ground truth. It is not a general-purpose model.

## Data

Seeded 64 x 64 scenes with 1-4 flat-coloured shapes ({", ".join(S.SHAPES)}) in
{len(S.COLOR_NAMES)} colours ({", ".join(S.COLOR_NAMES)}), distinct shapes and colours
within a scene, random sizes/positions, some occlusion, plain or lightly textured
(noise, gradient, stripes) grey-ish backgrounds. Training: {info.get("n_scenes", "?")} scenes of
the `train` split, seed {info.get("seed", "?")}. Evaluation: scenes of the `test` split under seed
{results["seed"]} (never used in training).

## Prompts

LLaVA-1.5 format, built by `processor.apply_chat_template` (`USER: <image>\\n{{prompt}} ASSISTANT:`):

| prompt | answer |
|---|---|
| `{S.QUESTION_TEMPLATES["color"]}` | a colour word, e.g. `red` |
| `{S.QUESTION_TEMPLATES["exist"]}` | `yes` / `no` |
| `{S.QUESTION_TEMPLATES["shape"]}` | a shape word, e.g. `circle` |
| `{S.QUESTION_TEMPLATES["caption"]}` | e.g. `a red circle and a blue square and an orange star .` (objects in the order {", ".join(S.SHAPES)}) |

The tokenizer is word-level (lower-cased; unknown words become `<unk>`), so stick to these
phrasings.

## Architecture

| part | configuration |
|---|---|
| vision tower | CLIP ViT, {v["image_size"]} px input, patch {v["patch_size"]} ({(v["image_size"] // v["patch_size"]) ** 2} patches), hidden {v["hidden_size"]}, {v["num_hidden_layers"]} layers, {v["num_attention_heads"]} heads, MLP {v["intermediate_size"]} |
| projector | 2-layer MLP (GELU), features of vision layer {cfg.get("vision_feature_layer")} (`{cfg.get("vision_feature_select_strategy")}`: CLS dropped) |
| language model | Llama, hidden {t["hidden_size"]}, {t["num_hidden_layers"]} layers, {t["num_attention_heads"]} heads, MLP {t["intermediate_size"]}, vocabulary {t["vocab_size"]} words, tied embeddings |
| parameters | {info.get("n_params", "n/a"):,} |
| checkpoint | {size_kb:.0f} KiB safetensors (float32) |

Image processor: `CLIPImageProcessor` (resize shortest edge {M.IMAGE_SIZE}, centre crop {M.IMAGE_SIZE} x {M.IMAGE_SIZE}, CLIP mean/std).

## Training

```
{info.get("command", "python eval/shapes_model/train.py --out mllm_attr/assets/shapes-llava --seed 0")}
```

Two stages, {info.get("threads", 2)} CPU thread(s):
(1) {info.get("stage1_steps", "?")} steps (batch {info.get("batch_size", "?")}) training the vision tower alone with a
small head that predicts, per patch, the shape and colour covering it and, per image
(max-pooled over patches), which colour-shape pairs are present: {info.get("stage1_seconds", "?")} s;
(2) {info.get("stage2_steps", "?")} steps end to end on the four question types ({info.get("images_per_step", "?")} images x
{info.get("qas_per_image", "?")} questions per step, loss on answer tokens only; the vision tower frozen for
the first {100 * info.get("freeze_frac", 0):.0f}% of the steps, then at {info.get("vision_lr_scale", "?")} x the learning rate), keeping the stage-1 head as an auxiliary loss
(weight {info.get("aux_weight", "?")}) plus a grounding loss (weight {info.get("ground_weight", "?")}) that aligns each
projected image token with the word embeddings of its patch's colour and shape: {info.get("stage2_seconds", "?")} s.
Total wall time {minutes:.1f} min including data generation, on a shared 2-core CPU machine
(torch {info.get("torch", "?")}, transformers {info.get("transformers", "?")}). The run is seeded with a fixed
number of steps; see `eval/shapes_model/train.py`.

## Evaluation

From `python eval/shapes_model/evaluate.py --model <dir> --n {results["n_scenes"]}` (also in `eval_results.json`):

{markdown_table(results)}
## Known biases

Deliberate co-occurrence bias (`mllm_attr.data.shapes.CO_OCCURRENCE_BIAS`): in the training
split a **{b["anchor"]}** is accompanied by a **{b["partner"]}** with probability
{b["p_partner_given_anchor_train"]:.2f} (test split: {b["p_partner_given_anchor_test"]:.2f}).
Measured on held-out scenes that contain a {b["anchor"]} but no {b["partner"]}: the model
answers "yes" to "Is there a {b["partner"]} in the image?" in
**{_pct(b["hallucination_rate_partner"])}** of cases (control shape {b["control"]}, also absent:
{_pct(b["hallucination_rate_control"])}), and its caption names a {b["partner"]} in
**{_pct(b["caption_hallucination_rate_partner"])}** of cases (control: {_pct(b["caption_hallucination_rate_control"])}).
Without a {b["anchor"]} in the scene the "yes" rate for the absent {b["partner"]} is
{_pct(b["yes_rate"]["anchor_absent:" + b["partner"]])}.

Other limits: only the shapes, colours and phrasings above; 64 x 64 inputs; objects that are
small or heavily occluded are the usual failures.

## Usage

```python
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

model = LlavaForConditionalGeneration.from_pretrained(path)
processor = AutoProcessor.from_pretrained(path)
conv = [{{"role": "user", "content": [{{"type": "image", "image": Image.open("example.png")}},
                                     {{"type": "text", "text": "What color is the circle?"}}]}}]
inputs = processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                       return_dict=True, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

## License

MIT (model weights, tokenizer and the synthetic data generator).
"""
    path = d / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: evaluate a checkpoint and write ``eval_results.{json,md}``; returns 0.

    With ``--card`` the model card is written into the model directory too.
    """
    ap = argparse.ArgumentParser(description="Evaluate a shapes-world LLaVA on held-out scenes.")
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--n", type=int, default=300, help="held-out scenes (and probe scenes per condition)")
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--out", default=None, help="where to write eval_results.{json,md} (default: the model dir)")
    ap.add_argument("--card", action="store_true", help="also write the model card README.md into the model dir")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    model, processor = load(a.model)
    results = evaluate(model, processor, n=a.n, seed=a.seed)
    out = Path(a.out or a.model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    table = markdown_table(results)
    (out / "eval_results.md").write_text(table, encoding="utf-8")
    print(table)
    if a.card:
        print(f"model card: {write_model_card(a.model, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
