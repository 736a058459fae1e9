"""Train the project's small default model, ``shapes-llava``, from scratch on CPU.

The model is a real ``LlavaForConditionalGeneration`` (CLIP vision tower + Llama decoder,
under a million parameters) with its own word-level tokenizer, a LLaVA-1.5 chat template
and a ``CLIPImageProcessor`` for 64 x 64 images, trained on scenes of the "shapes world"
(:mod:`mllm_attr.data.shapes`, train split, which carries the deliberate star => diamond
co-occurrence bias). It answers::

    What color is the <shape>?          -> "<color>"
    Is there a <shape> in the image?    -> "yes" / "no"
    What shape is the <color> object?   -> "<shape>"
    Describe the image.                 -> "a red circle and a blue square ."

Training has two stages (end-to-end training from scratch alone plateaus: the language
model learns the answer priors long before the vision tower learns to see):

1. the vision tower alone, with a small head on its patch features that predicts, per
   patch, the shape and the colour covering it and, per image (max-pooled over patches),
   which colour-shape pairs are present, so the patch features become object detectors;
2. the whole model end to end on the question/answer pairs (loss on the answer tokens
   only; the vision tower at a lower learning rate), keeping the stage-1 head as an
   auxiliary loss, plus a *grounding* loss that makes each projected image token score
   the word embeddings of its patch's colour and shape (``background`` for empty
   patches), a dense form of LLaVA's projector-alignment stage. Several questions about
   the same image share one row (a block-diagonal 4-D attention mask with restarted
   position ids makes this exactly equivalent to one sequence per question, checked at
   start-up), which saves recomputing the 64 image tokens per question.

Usage, from the repository root (the command that produced the shipped checkpoint; about
16 minutes on a shared 2-core CPU machine)::

    python eval/shapes_model/train.py --out mllm_attr/assets/shapes-llava --seed 0 --threads 1

This is a script, not part of the installed package: it needs ``mllm_attr`` importable
(installed, e.g. editable) and nothing installed for itself. Run as a file, it puts
``eval/`` on ``sys.path`` and imports its siblings as the ``shapes_model`` package
(:mod:`shapes_model.model`: sizes, vocabulary, chat template and the model / tokenizer /
processor builders; :mod:`shapes_model.evaluate`: the held-out evaluation and the model
card); ``cd eval && python -m shapes_model.train ...`` works too.

The run is seeded and uses a fixed number of steps; with the same ``--threads`` it gives
the same bytes (``--minutes`` only caps the wall time, which makes a capped run
machine-dependent). ``--threads`` defaults to 2; on a machine whose cores are also busy
with other work, 1 thread is several times faster (2 threads then contend). At the end it
evaluates the model with :mod:`shapes_model.evaluate` (``eval/shapes_model/evaluate.py``)
and writes the model card. The output directory loads without this project::

    LlavaForConditionalGeneration.from_pretrained(out); AutoProcessor.from_pretrained(out)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mllm_attr.data import shapes as S

if __package__:  # imported as shapes_model.train (or run with python -m from eval/)
    from . import evaluate as E
    from . import model as M
else:  # run as a file: python eval/shapes_model/train.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from shapes_model import evaluate as E
    from shapes_model import model as M

logger = logging.getLogger(__name__)

__all__ = ["SceneBank", "sample_qa", "Encoder", "VisionHead", "grounding_loss", "train", "main"]

# --------------------------------------------------------------------------- data


class SceneBank:
    """Pre-rendered training scenes: normalised pixels, objects and per-patch labels.

    ``patch_shape[i, p]`` / ``patch_color[i, p]`` name the object that covers most of patch
    ``p`` of scene ``i`` (1-based index into :data:`SHAPES` / :data:`COLOR_NAMES`; 0 where
    less than an eighth of the patch is covered by any object).
    """

    def __init__(self, n: int, seed: int, split: str = "train"):
        mean = torch.tensor(M.CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(M.CLIP_STD).view(1, 3, 1, 1)
        g = M.IMAGE_SIZE // M.PATCH_SIZE
        imgs = np.empty((n, M.IMAGE_SIZE, M.IMAGE_SIZE, 3), dtype=np.uint8)
        patch_shape = np.zeros((n, g * g), dtype=np.int64)
        patch_color = np.zeros((n, g * g), dtype=np.int64)
        self.objects: list[list[tuple[str, str]]] = []
        for i, sc in enumerate(S.generate_scenes(n, seed=seed, split=split, size=M.IMAGE_SIZE)):
            imgs[i] = sc.image
            self.objects.append([(o.color, o.shape) for o in sc.objects])
            if sc.objects:
                cover = np.stack(
                    [o.mask.reshape(g, M.PATCH_SIZE, g, M.PATCH_SIZE).sum((1, 3)).reshape(-1) for o in sc.objects]
                )
                best = cover.argmax(0)
                keep = cover.max(0) >= M.PATCH_SIZE * M.PATCH_SIZE // 8
                sh = np.array([S.SHAPES.index(o.shape) + 1 for o in sc.objects])
                co = np.array([S.COLOR_NAMES.index(o.color) + 1 for o in sc.objects])
                patch_shape[i] = np.where(keep, sh[best], 0)
                patch_color[i] = np.where(keep, co[best], 0)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
        self.pixels = ((x - mean) / std).contiguous()
        self.patch_shape = torch.from_numpy(patch_shape)
        self.patch_color = torch.from_numpy(patch_color)
        n_pairs = len(S.COLOR_NAMES) * len(S.SHAPES)
        self.pair_labels = torch.zeros(n, n_pairs)
        for i, objs in enumerate(self.objects):
            for c, s in objs:
                self.pair_labels[i, pair_index(c, s)] = 1.0

    def __len__(self) -> int:
        return len(self.objects)


def pair_index(color: str, shape: str) -> int:
    return S.COLOR_NAMES.index(color) * len(S.SHAPES) + S.SHAPES.index(shape)


TASK_WEIGHTS = {"color": 0.22, "exist": 0.28, "shape": 0.20, "caption": 0.30}


def sample_qa(objects: Sequence[tuple[str, str]], rng: random.Random) -> tuple[str, str, str]:
    """One ``(task, question, answer)`` for a scene with ``objects`` = ``[(color, shape), ...]``."""
    task = rng.choices(list(TASK_WEIGHTS), weights=list(TASK_WEIGHTS.values()))[0]
    if task == "caption" or not objects:
        return "caption", S.CAPTION_QUESTION, S.canonical_caption(objects)
    color, shape = objects[rng.randrange(len(objects))]
    if task == "color":
        return task, S.color_question(shape), color
    if task == "shape":
        return task, S.shape_question(color), shape
    present = {s for _, s in objects}
    absent = [s for s in S.SHAPES if s not in present]
    if absent and rng.random() < 0.5:
        return task, S.exist_question(absent[rng.randrange(len(absent))]), "no"
    return task, S.exist_question(shape), "yes"


class Encoder:
    """Token ids for prompts and answers, identical to what the processor produces."""

    def __init__(self, processor):
        self.processor = processor
        self.tok = processor.tokenizer
        self._prompt: dict[str, list[int]] = {}
        self._answer: dict[str, list[int]] = {}

    def prompt(self, question: str) -> list[int]:
        ids = self._prompt.get(question)
        if ids is None:
            text = self.processor.apply_chat_template(M.conversation(question), add_generation_prompt=True)
            text = text.replace("<image>", "<image>" * M.NUM_PATCHES)
            ids = self.tok(text)["input_ids"]
            self._prompt[question] = ids
        return ids

    def answer(self, answer: str) -> list[int]:
        ids = self._answer.get(answer)
        if ids is None:
            ids = self.tok(answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
            self._answer[answer] = ids
        return ids

    def batch(self, pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        seqs, starts = [], []
        for q, a in pairs:
            p = self.prompt(q)
            seqs.append(p + self.answer(a))
            starts.append(len(p))
        L = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), L), pad, dtype=torch.long)
        att = torch.zeros((len(seqs), L), dtype=torch.long)
        labels = torch.full((len(seqs), L), -100, dtype=torch.long)
        for i, (s, st) in enumerate(zip(seqs, starts)):
            off = L - len(s)
            ids[i, off:] = torch.tensor(s)
            att[i, off:] = 1
            labels[i, off + st :] = torch.tensor(s[st:])
        return {"input_ids": ids, "attention_mask": att, "labels": labels}

    def packed_batch(self, groups: Sequence[Sequence[tuple[str, str]]]) -> dict[str, torch.Tensor]:
        """Several questions about the same image in one row, as if each were its own sequence.

        Row ``i`` holds the shared prefix (``<s> USER : <image> x 64``) once, followed by one
        block per ``(question, answer)`` of ``groups[i]``. A 4-D attention mask lets every
        block see the prefix and itself only, and each block's position ids restart where
        the prefix ends, so each block's logits equal those of the single-question sequence
        (checked in :func:`_check_packing`). Returns ``input_ids``, ``attention_mask``
        (``float[B, 1, L, L]``, 0 = attend), ``position_ids``, ``labels`` and ``qa_index``
        (per label position, the index of its question in the flattened ``groups``; -1 elsewhere).
        """
        pre = self.prefix_len
        rows, blocks_per_row = [], []
        for group in groups:
            q0 = group[0][0]
            seq = list(self.prompt(q0)[:pre])
            blocks = []
            for q, a in group:
                p = self.prompt(q)
                blk = p[pre:] + self.answer(a)
                blocks.append((len(seq), len(blk), len(p) - pre))
                seq += blk
            rows.append(seq)
            blocks_per_row.append(blocks)
        L = max(len(r) for r in rows)
        B = len(rows)
        pad = self.tok.pad_token_id
        ids = torch.full((B, L), pad, dtype=torch.long)
        pos = torch.zeros((B, L), dtype=torch.long)
        labels = torch.full((B, L), -100, dtype=torch.long)
        qa_index = torch.full((B, L), -1, dtype=torch.long)
        allow = torch.zeros((B, L, L), dtype=torch.bool)
        tri = torch.tril(torch.ones((L, L), dtype=torch.bool))
        k = 0
        for i, (seq, blocks) in enumerate(zip(rows, blocks_per_row)):
            off = L - len(seq)
            ids[i, off:] = torch.tensor(seq)
            pos[i, off : off + pre] = torch.arange(pre)
            allow[i, off : off + pre, off : off + pre] = tri[:pre, :pre]
            for st, n, nq in blocks:
                a0, a1 = off + st, off + st + n
                pos[i, a0:a1] = torch.arange(pre, pre + n)
                allow[i, a0:a1, off : off + pre] = True
                allow[i, a0:a1, a0:a1] = tri[:n, :n]
                labels[i, a0 + nq : a1] = ids[i, a0 + nq : a1]
                qa_index[i, a0 + nq : a1] = k
                k += 1
            allow[i, :off, :off] = torch.eye(off, dtype=torch.bool)  # padding attends to itself only
        mask = torch.zeros((B, 1, L, L))
        mask.masked_fill_(~allow[:, None], torch.finfo(torch.float32).min)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "labels": labels, "qa_index": qa_index}

    @property
    def prefix_len(self) -> int:
        """Tokens before the question: ``<s> USER :`` and the image tokens."""
        p = self.prompt(S.CAPTION_QUESTION)
        img = self.tok.convert_tokens_to_ids("<image>")
        return max(i for i, t in enumerate(p) if t == img) + 1


# --------------------------------------------------------------------------- training


class VisionHead(torch.nn.Module):
    """Stage-1 head on the vision tower's patch features.

    * per patch: which shape and which colour covers it (dense, 7 and 8 classes);
    * per image: which colour-shape pairs are present (per-patch scores pooled with a
      smooth maximum over patches).
    """

    def __init__(self, dim: int, n_pairs: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.pairs = torch.nn.Linear(dim, n_pairs)
        self.shape = torch.nn.Linear(dim, len(S.SHAPES) + 1)
        self.color = torch.nn.Linear(dim, len(S.COLOR_NAMES) + 1)

    def forward(self, patch_features: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.norm(patch_features)
        scores = self.pairs(h)  # (B, P, K)
        t = 4.0
        pooled = torch.logsumexp(scores * t, dim=1) / t - math.log(scores.shape[1]) / t
        return {"pairs": pooled, "shape": self.shape(h), "color": self.color(h)}

    def loss(self, patch_features: torch.Tensor, bank: SceneBank, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        out = self(patch_features)
        l_pairs = F.binary_cross_entropy_with_logits(out["pairs"], bank.pair_labels[idx])
        l_shape = F.cross_entropy(out["shape"].flatten(0, 1), bank.patch_shape[idx].flatten())
        l_color = F.cross_entropy(out["color"].flatten(0, 1), bank.patch_color[idx].flatten())
        with torch.no_grad():
            exact = ((out["pairs"] > 0).float() == bank.pair_labels[idx]).all(1).float().mean().item()
            patch_acc = (
                (
                    (out["shape"].argmax(-1) == bank.patch_shape[idx])
                    & (out["color"].argmax(-1) == bank.patch_color[idx])
                )
                .float()
                .mean()
                .item()
            )
        return l_pairs + 0.5 * (l_shape + l_color), {"exact_set": exact, "patch_acc": patch_acc}


def _grounding_targets(tok) -> dict[str, torch.Tensor]:
    """Word ids for patch labels: index 0 (no object) -> "background", else the shape / colour word."""
    ids = lambda words: torch.tensor(tok.convert_tokens_to_ids(list(words)))  # noqa: E731
    return {"shape": ids(("background",) + S.SHAPES), "color": ids(("background",) + S.COLOR_NAMES)}


def grounding_loss(
    projected: torch.Tensor, embeddings: torch.Tensor, bank: SceneBank, idx: torch.Tensor, targets: dict
) -> torch.Tensor:
    """Align projected image tokens with the word embeddings of what they show.

    The logits of each image token against the (tied) word embeddings should put half of
    the probability on the patch's colour word and half on its shape word (``background``
    for patches without an object): the projector maps a red-circle patch near
    ``embed("red") + embed("circle")``, so the language model can match the question's words
    to image tokens from the start (a dense form of LLaVA's projector-alignment stage).
    """
    logp = torch.log_softmax(projected.float() @ embeddings.float().T, dim=-1)  # (B, P, V)
    shape_ids = targets["shape"][bank.patch_shape[idx]]  # (B, P)
    color_ids = targets["color"][bank.patch_color[idx]]
    nll = -0.5 * (logp.gather(-1, shape_ids[..., None]) + logp.gather(-1, color_ids[..., None]))
    return nll.mean()


def _vision_patches(model, pixel_values: torch.Tensor) -> torch.Tensor:
    out = model.model.vision_tower(pixel_values, output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer][:, 1:]


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    prog = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, prog))))


def train(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_scenes: int = 20000,
    stage1_steps: int = 1400,
    stage2_steps: int = 3000,
    batch_size: int = 64,
    images_per_step: int = 24,
    qas_per_image: int = 4,
    lr1: float = 3e-3,
    lr2: float = 1.5e-3,
    aux_weight: float = 0.3,
    minutes: float | None = None,
    arch: dict[str, int] | None = None,
    threads: int = 2,
    log_every: int = 100,
    freeze_frac: float = 0.15,
    vision_lr_scale: float = 0.5,
    ground_weight: float = 0.5,
) -> dict[str, Any]:
    """Train and save the model to ``out_dir``; returns training info (also saved as JSON)."""
    t0 = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    deadline = t0 + 60 * minutes if minutes else None
    processor = M.build_processor()
    tok = processor.tokenizer
    model = M.build_model(tok, arch, seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %d parameters", n_params)

    bank = SceneBank(n_scenes, seed=seed, split="train")
    logger.info("rendered %d training scenes in %.1fs", len(bank), time.time() - t0)
    _check_pixels(processor, seed)
    enc = Encoder(processor)
    _check_encoder(processor, enc)
    _check_packing(model, enc, bank)
    head = VisionHead(model.config.vision_config.hidden_size, bank.pair_labels.shape[1])
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    history: list[dict[str, float]] = []

    # ---- stage 1: vision tower + pair head
    vparams = list(model.model.vision_tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(vparams, lr=lr1, weight_decay=0.01)
    model.train()
    t1 = time.time()
    s1_done = 0
    for step in range(stage1_steps):
        if deadline and time.time() > t0 + 0.25 * (deadline - t0):
            break
        idx = torch.randint(len(bank), (batch_size,), generator=g)
        for gr in opt.param_groups:
            gr["lr"] = _lr(step, stage1_steps, lr1, 100)
        loss, stats = head.loss(_vision_patches(model, bank.pixels[idx]), bank, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vparams, 1.0)
        opt.step()
        s1_done = step + 1
        if step % log_every == 0 or step == stage1_steps - 1:
            history.append({"stage": 1, "step": step, "loss": loss.item(), **stats})
            logger.info(
                "stage1 %5d loss %.4f exact-set %.3f patch-acc %.3f (%.0fs)",
                step,
                loss.item(),
                stats["exact_set"],
                stats["patch_acc"],
                time.time() - t0,
            )
    stage1_s = time.time() - t1

    # ---- stage 2: end to end (the vision tower frozen for the first ``freeze_frac`` of the steps)
    vision_params = list(model.model.vision_tower.parameters())
    vision_ids = {id(p) for p in vision_params}
    other = [p for p in model.parameters() if id(p) not in vision_ids]
    opt = torch.optim.AdamW(
        [
            {"params": other, "lr_scale": 1.0},
            {"params": vision_params + list(head.parameters()), "lr_scale": vision_lr_scale},
        ],
        lr=lr2,
        weight_decay=0.01,
    )
    params = other + vision_params + list(head.parameters())
    t2 = time.time()
    s2_done = 0
    running: dict[str, list[bool]] = {}
    freeze_steps = int(freeze_frac * stage2_steps)
    ground_targets = _grounding_targets(tok)
    for step in range(stage2_steps):
        if deadline and time.time() > deadline:
            break
        frozen = step < freeze_steps
        for p in vision_params:
            p.requires_grad_(not frozen)
        for gr in opt.param_groups:
            gr["lr"] = (
                _lr(step, stage2_steps, lr2, 200) * gr["lr_scale"] * (0.0 if frozen and gr["lr_scale"] != 1.0 else 1.0)
            )
        idx = torch.randint(len(bank), (images_per_step,), generator=g)
        groups = [[sample_qa(bank.objects[i], rng) for _ in range(qas_per_image)] for i in idx.tolist()]
        qas = [qa for grp in groups for qa in grp]
        batch = enc.packed_batch([[(q, a) for _, q, a in grp] for grp in groups])
        captured: dict[str, torch.Tensor] = {}

        def hook(_m, _inp, out, captured=captured):
            captured["h"] = out.hidden_states[model.config.vision_feature_layer][:, 1:]

        def proj_hook(_m, _inp, out, captured=captured):
            captured["proj"] = out

        handles = [
            model.model.vision_tower.register_forward_hook(hook),
            model.model.multi_modal_projector.register_forward_hook(proj_hook),
        ]
        try:
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"],
                pixel_values=bank.pixels[idx],
            )
        finally:
            for h in handles:
                h.remove()
        logits = out.logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        qa_index = batch["qa_index"][:, 1:]
        tok_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        valid = labels != -100
        n_qa = len(qas)
        qa_sum = torch.zeros(n_qa).index_add_(0, qa_index[valid], tok_loss[valid])
        qa_len = torch.zeros(n_qa).index_add_(0, qa_index[valid], torch.ones_like(tok_loss[valid]))
        lm_loss = (qa_sum / qa_len.clamp(min=1)).mean()
        if frozen:
            aux = torch.zeros(())
            loss = lm_loss
        else:
            aux, _ = head.loss(captured["h"], bank, idx)
            loss = lm_loss + aux_weight * aux
        if ground_weight > 0:
            ground = grounding_loss(captured["proj"], model.get_input_embeddings().weight, bank, idx, ground_targets)
            loss = loss + ground_weight * ground
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        s2_done = step + 1
        with torch.no_grad():
            wrong = ((logits.argmax(-1) != labels) & valid).float()
            qa_wrong = torch.zeros(n_qa).index_add_(0, qa_index[valid], wrong[valid])
        for (task, _, _), w in zip(qas, qa_wrong.tolist()):
            running.setdefault(task, []).append(w == 0)
        if step % log_every == 0 or step == stage2_steps - 1:
            accs = {k: round(float(np.mean(v)), 3) for k, v in sorted(running.items())}
            running.clear()
            history.append({"stage": 2, "step": step, "loss": lm_loss.item(), "aux": aux.item(), **accs})
            logger.info(
                "stage2 %5d lm %.4f aux %.4f acc %s (%.0fs)", step, lm_loss.item(), aux.item(), accs, time.time() - t0
            )
    stage2_s = time.time() - t2

    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    info = {
        "seed": seed,
        "n_scenes": n_scenes,
        "stage1_steps": s1_done,
        "stage2_steps": s2_done,
        "stage1_steps_planned": stage1_steps,
        "stage2_steps_planned": stage2_steps,
        "batch_size": batch_size,
        "images_per_step": images_per_step,
        "qas_per_image": qas_per_image,
        "lr1": lr1,
        "lr2": lr2,
        "aux_weight": aux_weight,
        "freeze_frac": freeze_frac,
        "ground_weight": ground_weight,
        "vision_lr_scale": vision_lr_scale,
        "arch": {**M.DEFAULT_ARCH, **(arch or {})},
        "n_params": n_params,
        "stage1_seconds": round(stage1_s, 1),
        "stage2_seconds": round(stage2_s, 1),
        "train_seconds": round(time.time() - t0, 1),
        "threads": threads,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "command": "python eval/shapes_model/train.py " + " ".join(sys.argv[1:]),
        "history": history,
    }
    (out / "training_info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return info


def _check_pixels(processor, seed: int) -> None:
    """The training pixels equal what the image processor produces (to float tolerance)."""
    sc = next(S.generate_scenes(1, seed=seed + 7, split="train", size=M.IMAGE_SIZE))
    ref = processor.image_processor(images=sc.pil(), return_tensors="pt")["pixel_values"][0]
    mean = torch.tensor(M.CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(M.CLIP_STD).view(3, 1, 1)
    mine = (torch.from_numpy(sc.image).permute(2, 0, 1).float() / 255.0 - mean) / std
    diff = (ref - mine).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"training pixels differ from the image processor's output (max diff {diff})")


def _check_encoder(processor, enc: Encoder) -> None:
    """The prompt ids equal what ``processor.apply_chat_template(..., tokenize=True)`` gives."""
    from PIL import Image

    q = S.color_question("circle")
    conv = M.conversation(q)
    conv[0]["content"][0]["image"] = Image.new("RGB", (M.IMAGE_SIZE, M.IMAGE_SIZE))
    ref = processor.apply_chat_template(
        conv, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    if ref["input_ids"][0].tolist() != enc.prompt(q):
        raise RuntimeError("prompt encoding differs from the processor's")


@torch.no_grad()
def _check_packing(model, enc: Encoder, bank: SceneBank) -> None:
    """Packed rows give the same answer logits as one sequence per question."""
    rng = random.Random(1)
    groups = [[sample_qa(bank.objects[i], rng)[1:] for _ in range(3)] for i in range(2)]
    packed = enc.packed_batch(groups)
    was_training = model.training
    model.eval()
    try:
        logits = model(
            input_ids=packed["input_ids"],
            attention_mask=packed["attention_mask"],
            position_ids=packed["position_ids"],
            pixel_values=bank.pixels[:2],
        ).logits
        k = 0
        for i, grp in enumerate(groups):
            for q, a in grp:
                single = enc.prompt(q) + enc.answer(a)
                ref = model(input_ids=torch.tensor([single]), pixel_values=bank.pixels[i : i + 1]).logits[0]
                n_ans = len(enc.answer(a))
                where = (packed["qa_index"][i] == k).nonzero().flatten()
                got = logits[i, where - 1]
                want = ref[len(single) - n_ans - 1 : len(single) - 1]
                if got.shape != want.shape or (got - want).abs().max().item() > 1e-4:
                    raise RuntimeError("packed training rows differ from single sequences")
                k += 1
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train shapes-llava into ``--out``; returns 0.

    Unless ``--eval-n 0``, the checkpoint is then evaluated and its model card written.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output checkpoint directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=None, help="wall-time cap (makes the run machine-dependent)")
    ap.add_argument("--scenes", type=int, default=20000)
    ap.add_argument("--stage1-steps", type=int, default=1400)
    ap.add_argument("--stage2-steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64, help="stage-1 batch size")
    ap.add_argument("--images-per-step", type=int, default=24)
    ap.add_argument("--qas-per-image", type=int, default=4)
    ap.add_argument("--freeze-frac", type=float, default=0.15)
    ap.add_argument("--vision-lr-scale", type=float, default=0.5)
    ap.add_argument("--ground-weight", type=float, default=0.5)
    ap.add_argument("--text-layers", type=int, default=M.DEFAULT_ARCH["text_layers"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr2", type=float, default=1.5e-3)
    ap.add_argument("--eval-n", type=int, default=300, help="held-out scenes for the final evaluation (0: skip)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    info = train(
        a.out,
        seed=a.seed,
        n_scenes=a.scenes,
        stage1_steps=a.stage1_steps,
        stage2_steps=a.stage2_steps,
        batch_size=a.batch_size,
        minutes=a.minutes,
        threads=a.threads,
        lr2=a.lr2,
        images_per_step=a.images_per_step,
        qas_per_image=a.qas_per_image,
        freeze_frac=a.freeze_frac,
        ground_weight=a.ground_weight,
        vision_lr_scale=a.vision_lr_scale,
        arch={"text_layers": a.text_layers},
    )
    logger.info("trained in %.0fs (%d parameters)", info["train_seconds"], info["n_params"])
    if a.eval_n > 0:
        E.main(["--model", a.out, "--n", str(a.eval_n), "--card"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
