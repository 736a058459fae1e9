"""Hallucination diagnosis: yes/no object questions (POPE / RePOPE) and captions (CHAIR).

Yes/no questions (method.md §5)
-------------------------------
For a question the model answers wrongly, :func:`diagnose_yes_no` gives

* the evidence map of the WRONG answer (the generated answer token explained);
* the explanation of the CORRECT answer (``Answer("no")`` / ``Answer("yes")`` teacher-forced,
  cased like the model's own answer token: "Yes" -> "No");
* the minimal correcting removal: regions are removed from the LEAST important end of the
  correct answer's ordering, the answer is REGENERATED (``adapter.generate``) on the edited
  image, and AMCR is the smallest removed area fraction at which it becomes correct
  (1.0 if it never does, or not within ``max_area``);
* the edited image at that removal.

Removal schedules (every ``generate`` call is counted):

* ``"incremental"``: remove 1, 2, 3, ... regions and stop at the first correct answer: exact
  for this removal order, at most ``n`` generate calls;
* ``"bisection"``: try ``coarse_steps`` evenly spaced removal counts, then bisect between the
  last wrong and the first correct one: about ``coarse_steps + log2(n / coarse_steps)``
  calls; exact when the answer, once corrected, stays corrected as more is removed.

Over a set of questions (:func:`summarize`): POPE accuracy / precision / recall / F1 /
yes-ratio over all questions, and over the wrongly answered ones mean AMCR and
``CSR@10%`` = (samples with AMCR <= 0.1) / (ALL wrongly answered samples), never-corrected
ones included in the denominator. Correctly answered questions have nothing to correct and
do not enter AMCR or CSR.

Captions (CHAIR-style)
----------------------
:func:`caption_hallucinations` finds the object words of a caption (a vocabulary of
category names / synonyms, plurals matched; required, or derived from the ground truth: COCO's
80 categories with their usual synonyms for COCO annotations or COCO names; a ground-truth
name outside the vocabulary is an error), marks each present or absent against the
ground-truth objects, and gives each its modality label (:mod:`.modality`), so the
hallucinated words that came from the language prior are visible. ``CHAIR_i`` = hallucinated
mentioned categories / mentioned categories; ``CHAIR_s`` = captions with any hallucination.

Command line: ``mllm-attr diagnose --pope FILE --images DIR --out OUT.jsonl`` (see
:func:`add_subcommand`) writes one JSON line per question (appended atomically; a rerun
resumes) and ``OUT.summary.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .._io import write_text_atomic
from ..image import ImageLike, load_image
from ..mask import compose, make_baseline
from ..targets import Answer, Positions, find_word
from ..types import Generation
from .modality import (
    GroundedModality,
    ModalityThresholds,
    TokenModality,
    _row,
    grounded_modality,
    modality_from_explanation,
    reference_probs,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..adapters.base import ModelAdapter
    from ..data.coco import CocoImage, CocoObject
    from ..data.pope import PopeQuestion
    from ..explainer import Explainer
    from ..explanation import Explanation

logger = logging.getLogger(__name__)

YES_NO: tuple[str, str] = ("yes", "no")
SCHEDULES: tuple[str, ...] = ("incremental", "bisection")
_WORD = re.compile(r"[^\W_]+")


# --------------------------------------------------------------------------- answers


def parse_yes_no(text: str) -> str | None:
    """``"yes"`` / ``"no"``: the first such word of ``text`` (case-insensitive), else None."""
    for w in _WORD.findall(text.lower()):
        if w in YES_NO:
            return w
    return None


def answer_position(generation: Generation) -> int | None:
    """Position of the yes/no answer token: the first non-special token reading "yes"/"no"
    (any case, punctuation and white space ignored); else the first non-special token; else None."""
    first = None
    for i, tok in enumerate(generation.tokens):
        if generation.special[i]:
            continue
        if first is None:
            first = i
        if "".join(_WORD.findall(tok.lower())) in YES_NO:
            return i
    return first


def cased_like(word: str, reference: str) -> str:
    """``word`` with the casing of ``reference`` ("YES" -> "NO", "Yes" -> "No", "yes" -> "no")."""
    ref = "".join(_WORD.findall(reference))
    if ref.isupper() and len(ref) > 1:
        return word.upper()
    if ref[:1].isupper():
        return word[:1].upper() + word[1:]
    return word.lower()


# --------------------------------------------------------------------------- minimal removal


@dataclass
class RemovalResult:
    """The minimal correcting removal.

    Attributes:
        amcr: removed area fraction at the first correct regenerated answer (1.0 if none).
        corrected: whether any tried removal made the answer correct.
        regions_removed: how many regions were removed at that point (0 if not corrected).
        removed_regions: their ids (least important first).
        removed_area: their area fraction (= amcr when corrected).
        answer_after: the regenerated answer text at that point (None if not corrected).
        generate_calls: ``adapter.generate`` calls made by the schedule.
        schedule: ``"incremental"`` or ``"bisection"``.
        trace: ``(regions removed, area, answer text, correct)`` for every call, in call order.
        edited_image: ``uint8[H, W, 3]`` with the removal applied (None if not corrected).
    """

    amcr: float
    corrected: bool
    regions_removed: int
    removed_regions: list[int]
    removed_area: float
    answer_after: str | None
    generate_calls: int
    schedule: str
    trace: list[tuple[int, float, str, bool]] = field(default_factory=list)
    edited_image: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict without ``edited_image``; trace entries become lists, areas rounded to 6 decimals."""
        d = {k: v for k, v in asdict(self).items() if k != "edited_image"}
        d["trace"] = [[k, round(a, 6), t, c] for k, a, t, c in self.trace]
        return d


def minimal_correcting_removal(
    adapter: "ModelAdapter",
    image: np.ndarray,
    prompt: str,
    ordering: Sequence[int],
    labels: np.ndarray,
    is_correct: Callable[[Generation], bool],
    *,
    baseline: str | np.ndarray = "black",
    schedule: str = "incremental",
    coarse_steps: int = 8,
    max_area: float = 1.0,
    max_new_tokens: int = 8,
) -> RemovalResult:
    """Remove regions from the LEAST important end of ``ordering`` until the regenerated answer is correct.

    Args:
        image: ``uint8[H, W, 3]``; labels: ``int32[H, W]``; ordering: region ids, most important first.
        is_correct: judges a regenerated :class:`~mllm_attr.Generation`.
        baseline: fill of removed regions (a name or a ``uint8[H, W, 3]`` image).
        schedule: see the module docstring; coarse_steps: first-pass points of ``"bisection"``.
        max_area: stop once the removed area would exceed this fraction (AMCR is then 1.0).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")
    if not 0 < float(max_area) <= 1:
        raise ValueError(f"max_area must be in (0, 1]; got {max_area!r}")
    if int(coarse_steps) < 1:
        raise ValueError(f"coarse_steps must be >= 1; got {coarse_steps!r}")
    n = int(labels.max()) + 1
    order = np.asarray(ordering, dtype=np.int64)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"ordering must hold each of the {n} regions of the label map once")
    base = make_baseline(image, baseline) if isinstance(baseline, str) else np.asarray(baseline)
    reverse = order[::-1]
    region_area = np.bincount(labels.ravel(), minlength=n) / labels.size
    cum = np.cumsum(region_area[reverse])
    cum[-1] = 1.0
    ks = [k for k in range(1, n + 1) if cum[k - 1] <= max_area + 1e-9]
    cache: dict[int, tuple[bool, str, np.ndarray]] = {}
    trace: list[tuple[int, float, str, bool]] = []

    def edited(k: int) -> np.ndarray:
        removed = np.zeros(n, dtype=bool)
        removed[reverse[:k]] = True
        return compose(image, base, ~removed[labels])

    def check(k: int) -> bool:
        if k not in cache:
            img = edited(k)
            gen = adapter.generate(img, prompt, max_new_tokens=max_new_tokens)
            ok = bool(is_correct(gen))
            cache[k] = (ok, gen.text, img)
            trace.append((k, float(cum[k - 1]), gen.text, ok))
        return cache[k][0]

    found: int | None = None
    if schedule == "incremental":
        for k in ks:
            if check(k):
                found = k
                break
    elif ks:
        idx = sorted({ks[min(len(ks) - 1, max(0, math.ceil(i * len(ks) / coarse_steps) - 1))] for i in range(1, coarse_steps + 1)})
        lo = 0
        for k in idx:
            if check(k):
                found = k
                break
            lo = k
        if found is not None:
            hi = found
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if check(mid):
                    hi = mid
                else:
                    lo = mid
            found = hi
    if found is None:
        return RemovalResult(1.0, False, 0, [], 0.0, None, len(trace), schedule, trace, None)
    ok, text, img = cache[found]
    area = float(cum[found - 1])
    return RemovalResult(area, True, found, reverse[:found].tolist(), area, text, len(trace), schedule, trace, img)


# --------------------------------------------------------------------------- yes/no diagnosis


@dataclass
class YesNoDiagnosis:
    """Everything :func:`diagnose_yes_no` found for one question (see the module docstring).

    ``wrong_explanation``, ``correct_explanation``, ``removal`` and ``modality`` are None when
    the answer was correct.
    """

    question: str
    label: str
    generation: Generation
    predicted: str | None
    answer_position: int | None
    wrong_explanation: "Explanation | None" = None
    correct_explanation: "Explanation | None" = None
    removal: RemovalResult | None = None
    modality: TokenModality | None = None
    question_id: Any = None
    image_name: str | None = None
    generate_calls: int = 1
    forwards: int = 0
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        """Whether the parsed answer equals the label (an unparsed answer counts as wrong)."""
        return self.predicted == self.label

    @property
    def amcr(self) -> float | None:
        """AMCR of a wrong answer; None for a correct one."""
        return None if self.removal is None else self.removal.amcr

    @property
    def edited_image(self) -> np.ndarray | None:
        """The removal's edited image (``uint8[H, W, 3]``); None without a removal or when it was not corrected."""
        return None if self.removal is None else self.removal.edited_image

    def to_json(self) -> dict[str, Any]:
        """One JSON-serialisable record (no arrays; see :meth:`save` for images and maps)."""
        gen = self.generation
        pos = self.answer_position
        d: dict[str, Any] = {
            "question_id": self.question_id,
            "image": self.image_name,
            "question": self.question,
            "label": self.label,
            "answer": gen.text,
            "predicted": self.predicted,
            "correct": self.correct,
            "answer_position": pos,
            "answer_token": None if pos is None else gen.tokens[pos],
            "p_answer": None if pos is None else float(gen.probs[pos]),
            "amcr": self.amcr,
            "corrected": None if self.removal is None else self.removal.corrected,
            "csr10": None if self.removal is None else bool(self.removal.corrected and self.removal.amcr <= 0.1),
            "modality": None if self.modality is None else self.modality.to_dict(),
            "wrong_explanation": _expl_summary(self.wrong_explanation),
            "correct_explanation": _expl_summary(self.correct_explanation),
            "removal": None if self.removal is None else self.removal.to_dict(),
            "generate_calls": int(self.generate_calls),
            "forwards": int(self.forwards),
            "seconds": round(float(self.seconds), 4),
        }
        return d

    def save(self, out_dir: str | os.PathLike, *, overwrite: bool = False) -> dict[str, str]:
        """Write ``wrong/`` and ``correct/`` explanations and ``edited.png`` under ``out_dir``.

        Returns:
            the written paths, keyed ``"wrong"``, ``"correct"``, ``"edited"`` (those that exist).
        """
        from PIL import Image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        if self.wrong_explanation is not None:
            paths["wrong"] = str(self.wrong_explanation.save(out / "wrong", overwrite=overwrite))
        if self.correct_explanation is not None:
            paths["correct"] = str(self.correct_explanation.save(out / "correct", overwrite=overwrite))
        if self.edited_image is not None:
            p = out / "edited.png"
            if p.exists() and not overwrite:
                raise FileExistsError(f"{str(p)!r} exists; pass overwrite=True")
            Image.fromarray(self.edited_image).save(p)
            paths["edited"] = str(p)
        return paths


def _expl_summary(e: "Explanation | None") -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "text": e.generation.text,
        "target_tokens": e.target_tokens,
        "counterfactual": bool(e.generation.counterfactual),
        "p_full": e.p_full.tolist(),
        "p_blank": e.p_blank.tolist(),
        "insertion_auc": e.insertion_auc(),
        "deletion_auc": e.deletion_auc(),
        "n_regions": e.n_regions,
        "top_regions": e.ordering[:5].tolist(),
        "forwards": int(e.forwards),
    }


def _default_explainer(adapter: "ModelAdapter") -> "Explainer":
    from ..explainer import Explainer

    return Explainer(adapter, n_regions=16, segmenter="slic", search="greedy")


def diagnose_yes_no(
    adapter: "ModelAdapter",
    image: ImageLike,
    question: str,
    label: str | bool,
    *,
    explainer: "Explainer | None" = None,
    schedule: str = "incremental",
    coarse_steps: int = 8,
    max_area: float = 1.0,
    max_new_tokens: int = 8,
    thresholds: ModalityThresholds | None = None,
    explain_wrong: bool = True,
    question_id: Any = None,
    image_name: str | None = None,
) -> YesNoDiagnosis:
    """Diagnose one yes/no object question (see the module docstring).

    Args:
        adapter: any :class:`~mllm_attr.ModelAdapter`.
        image: path, PIL image or ``uint8[H, W, 3]``.
        question: e.g. ``"Is there a triangle in the image?"``.
        label: the ground truth, ``"yes"``/``"no"`` or a bool (True = yes).
        explainer: the :class:`~mllm_attr.Explainer` used for both explanations (default:
            16 SLIC regions, exact greedy, black baseline; its baseline also fills removed regions).
        explain_wrong: also explain the wrong answer token (the evidence map of the error).
    """
    t0 = time.perf_counter()
    if isinstance(label, bool):
        label = "yes" if label else "no"
    if not isinstance(label, str) or label.strip().lower() not in YES_NO:
        raise ValueError(f"label must be 'yes' or 'no' (or a bool); got {label!r}")
    label = label.strip().lower()
    arr = load_image(image).array
    ex = explainer or _default_explainer(adapter)
    gen = adapter.generate(arr, question, max_new_tokens=max_new_tokens)
    predicted = parse_yes_no(gen.text)
    pos = answer_position(gen)
    diag = YesNoDiagnosis(question, label, gen, predicted, pos, question_id=question_id, image_name=image_name)
    if predicted == label:
        diag.seconds = time.perf_counter() - t0
        return diag
    th = thresholds or ModalityThresholds()
    forwards = 0
    if explain_wrong and pos is not None:
        wrong = ex(arr, gen, target=Positions((pos,)))
        diag.wrong_explanation = wrong
        diag.modality = modality_from_explanation(wrong, th).tokens[0]
        forwards += wrong.forwards
    reference = gen.tokens[pos] if pos is not None else label
    correct_text = cased_like(label, reference)
    right = ex(arr, gen, target=Answer(correct_text))
    diag.correct_explanation = right
    forwards += right.forwards
    diag.removal = minimal_correcting_removal(
        adapter,
        arr,
        question,
        right.ordering,
        right.labels,
        lambda g: parse_yes_no(g.text) == label,
        baseline=ex.baseline,
        schedule=schedule,
        coarse_steps=coarse_steps,
        max_area=max_area,
        max_new_tokens=max_new_tokens,
    )
    diag.generate_calls = 1 + diag.removal.generate_calls
    diag.forwards = forwards
    diag.seconds = time.perf_counter() - t0
    logger.info(
        "question %r: answered %r (truth %r); AMCR %.3f after %d generate calls",
        question, gen.text, label, diag.removal.amcr, diag.generate_calls,
    )
    return diag


# --------------------------------------------------------------------------- summaries


def summarize(records: Iterable[Mapping[str, Any]], *, csr_threshold: float = 0.1) -> dict[str, Any]:
    """POPE metrics and AMCR / CSR over per-question records (:meth:`YesNoDiagnosis.to_json`).

    Unparsed answers (neither yes nor no) count as wrong and as "not yes" for precision/recall.
    ``csr_at_10`` (for the default threshold) = wrong samples with AMCR <= threshold over ALL
    wrong samples.
    """
    recs = list(records)
    n = len(recs)
    labels = [r["label"] for r in recs]
    preds = [r.get("predicted") for r in recs]
    tp = sum(p == "yes" and l == "yes" for p, l in zip(preds, labels))
    fp = sum(p == "yes" and l == "no" for p, l in zip(preds, labels))
    fn = sum(p != "yes" and l == "yes" for p, l in zip(preds, labels))
    correct = sum(p == l for p, l in zip(preds, labels))
    parsed = [p for p in preds if p is not None]
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else (0.0 if n else float("nan"))
    wrong = [r for r in recs if r.get("predicted") != r["label"]]
    amcrs = [float(r["amcr"]) for r in wrong if r.get("amcr") is not None]
    hits = sum(
        1 for r in wrong if r.get("corrected") and r.get("amcr") is not None and float(r["amcr"]) <= csr_threshold + 1e-12
    )
    labels_mod = [r["modality"]["label"] for r in wrong if r.get("modality")]
    key = "csr_at_10" if abs(csr_threshold - 0.1) < 1e-12 else f"csr_at_{csr_threshold:g}"
    return {
        "n": n,
        "n_unparsed": n - len(parsed),
        "accuracy": correct / n if n else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(p == "yes" for p in parsed) / len(parsed) if parsed else float("nan"),
        "n_wrong": len(wrong),
        "n_false_yes": fp,
        "n_false_no": sum(p == "no" and l == "yes" for p, l in zip(preds, labels)),
        "n_corrected": sum(bool(r.get("corrected")) for r in wrong),
        "mean_amcr": float(np.mean(amcrs)) if amcrs else float("nan"),
        "median_amcr": float(np.median(amcrs)) if amcrs else float("nan"),
        key: hits / len(wrong) if wrong else float("nan"),
        "csr_denominator": len(wrong),
        "wrong_answer_modality": {lab: labels_mod.count(lab) for lab in sorted(set(labels_mod))},
        "generate_calls": int(sum(int(r.get("generate_calls", 0)) for r in recs)),
        "forwards": int(sum(int(r.get("forwards", 0)) for r in recs)),
        "seconds": float(sum(float(r.get("seconds", 0.0)) for r in recs)),
    }


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL output; a torn last line (interrupted write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        logger.warning("%s: dropping an incomplete last line (interrupted run)", path)
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        raw = raw[:cut]
    out = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {lineno} is not JSON ({exc}); not a diagnose output file?") from None
    return out


def _append_line(path: Path, record: Mapping[str, Any]) -> None:
    data = (json.dumps(record, allow_nan=True) + "\n").encode("utf-8")
    with open(path, "ab") as fh:
        fh.write(data)  # one write per line: a crash leaves at most one torn last line
        fh.flush()
        os.fsync(fh.fileno())


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=True))


def summary_path_for(out: str | os.PathLike) -> Path:
    """``OUT.jsonl`` -> ``OUT.summary.json``."""
    p = Path(out)
    return p.with_name(p.stem + ".summary.json") if p.suffix else p.with_name(p.name + ".summary.json")


def diagnose_pope(
    adapter: "ModelAdapter",
    questions: "Sequence[PopeQuestion] | str | os.PathLike",
    out: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    explainer: "Explainer | None" = None,
    schedule: str = "incremental",
    max_area: float = 1.0,
    max_new_tokens: int = 8,
    thresholds: ModalityThresholds | None = None,
    resume: bool = True,
    overwrite: bool = False,
    save_dir: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Diagnose every question of a POPE-style set; one JSON line per question in ``out``.

    Args:
        questions: :class:`~mllm_attr.data.pope.PopeQuestion` records, or a POPE JSONL path
            (then ``image_dir`` is required).
        out: the JSONL output. Existing lines are kept and their questions skipped
            (``resume``); ``overwrite=True`` starts over; otherwise an existing non-empty file
            with ``resume=False`` raises FileExistsError.
        limit: only the first ``limit`` questions.
        save_dir: write each wrong answer's explanations and edited image to ``save_dir/<question_id>/``.
        summary_path: default ``OUT.summary.json``; computed over every line of ``out``.

    Returns:
        the summary (:func:`summarize`) plus ``"out"`` and ``"summary_path"``.
    """
    from ..data.pope import load_pope

    if isinstance(questions, (str, os.PathLike)):
        if image_dir is None:
            raise ValueError("image_dir is required when questions is a POPE file path")
        questions = load_pope(questions, image_dir)
    qs = list(questions)
    if limit is not None:
        if int(limit) < 1:
            raise ValueError(f"limit must be >= 1; got {limit!r}")
        qs = qs[: int(limit)]
    out_path = Path(out)
    if out_path.exists() and out_path.is_dir():
        raise IsADirectoryError(f"--out {str(out_path)!r} is a directory; expected a .jsonl file path")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite and out_path.exists():
        out_path.unlink()
    if out_path.exists() and out_path.stat().st_size and not resume:
        raise FileExistsError(f"{str(out_path)!r} exists; pass resume=True to continue it or overwrite=True")
    done = {str(r.get("question_id")) for r in _read_records(out_path)}
    todo = [q for q in qs if str(q.question_id) not in done]
    if done:
        logger.info("resuming %s: %d questions done, %d to go", out_path, len(qs) - len(todo), len(todo))
    ex = explainer or _default_explainer(adapter)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="diagnose", unit="question")
    for q in todo:
        img = load_image(q.image_path).array
        diag = diagnose_yes_no(
            adapter, img, q.question, q.answer, explainer=ex, schedule=schedule, max_area=max_area,
            max_new_tokens=max_new_tokens, thresholds=thresholds, question_id=q.question_id, image_name=q.image,
        )
        record = diag.to_json()
        if save_dir is not None and not diag.correct:
            record["artifacts"] = diag.save(Path(save_dir) / _safe_name(q.question_id), overwrite=True)
        _append_line(out_path, record)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    qids = {str(q.question_id) for q in qs}
    records = [r for r in _read_records(out_path) if str(r.get("question_id")) in qids]
    summary = summarize(records)
    spath = Path(summary_path) if summary_path is not None else summary_path_for(out_path)
    summary.update({"out": str(out_path), "summary_path": str(spath), "schedule": schedule, "max_area": max_area,
                    "explainer": ex.settings(), "adapter": adapter.describe()})
    _write_json_atomic(spath, summary)
    return summary


def _safe_name(qid: Any) -> str:
    """A directory name for a question id that stays inside ``save_dir`` and is unique per id.

    Characters other than ``[A-Za-z0-9_.-]`` become ``_``; a leading dot (``.``, ``..``,
    hidden names) or an empty result gets a ``q_`` prefix; whenever the id was changed, a short
    hash of the original id is appended so distinct ids never share a directory.
    """
    raw = str(qid)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", raw)
    if not name or name.startswith("."):
        name = "q_" + name
    if name != raw:
        name += "-" + hashlib.sha1(raw.encode("utf-8")).hexdigest()[:8]
    return name


# --------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class ObjectMention:
    """One object word of a caption.

    Attributes:
        word: the word as written; category: the object category it names.
        occurrence: 1-based occurrence of the category in the caption.
        positions: token positions of the word in the generation.
        present: True / False against the ground truth (None without annotations).
        modality: the word's :class:`~mllm_attr.analysis.modality.TokenModality` (product of
            its tokens' probabilities; prior = blank image or reference images).
        grounded: with object masks, the :class:`~mllm_attr.analysis.modality.GroundedModality`
            (language prior / the object's own pixels / context, and the evidence object).
    """

    word: str
    category: str
    occurrence: int
    positions: tuple[int, ...]
    present: bool | None
    modality: TokenModality
    grounded: GroundedModality | None = None

    @property
    def hallucinated(self) -> bool:
        """Whether the ground truth lacks the category (False without annotations)."""
        return self.present is False

    @property
    def label(self) -> str:
        """The grounded label when object masks were given, else the blank/reference-prior label."""
        return self.grounded.label if self.grounded is not None else self.modality.label

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the mention, its modality numbers and its grounded decomposition (if any)."""
        return {
            "word": self.word,
            "category": self.category,
            "occurrence": self.occurrence,
            "positions": list(self.positions),
            "present": self.present,
            "hallucinated": self.hallucinated,
            "label": self.label,
            "prior_label": self.modality.label,
            "p_full": self.modality.p_full,
            "p_blank": self.modality.p_blank,
            "p_prior": self.modality.p_prior,
            "prior_share": self.modality.prior_share,
            "image_share": self.modality.image_share,
            "grounded": None if self.grounded is None else self.grounded.to_dict(),
        }


@dataclass
class CaptionDiagnosis:
    """Object mentions of one caption, with presence and modality.

    Attributes:
        generation: the caption; mentions: in caption order; ground_truth: the categories
        present (None without annotations); forwards: images scored (2).
    """

    generation: Generation
    mentions: list[ObjectMention]
    ground_truth: frozenset[str] | None
    forwards: int = 0
    thresholds: ModalityThresholds = field(default_factory=ModalityThresholds)

    def hallucinated(self) -> list[ObjectMention]:
        """The mentions whose category is absent from the ground truth."""
        return [m for m in self.mentions if m.hallucinated]

    @property
    def chair_i(self) -> float:
        """Hallucinated mentioned categories / mentioned categories (NaN without mentions or annotations)."""
        if self.ground_truth is None:
            return float("nan")
        cats = {m.category for m in self.mentions}
        return len({c for c in cats if c not in self.ground_truth}) / len(cats) if cats else float("nan")

    @property
    def chair_s(self) -> float:
        """1.0 if any mentioned category is absent, else 0.0 (NaN without annotations)."""
        if self.ground_truth is None:
            return float("nan")
        return float(any(m.hallucinated for m in self.mentions))

    def table(self) -> str:
        """A plain-text table with one row per mention.

        Columns: word, presence, ``p_full``, ``p_prior``, prior share, label and, with object masks,
        the prior kind and the evidence object.
        """
        lines = [f"{'word':<12} {'present':<8} {'p_full':>7} {'p_prior':>7} {'prior':>6}  {'label':<18} evidence"]
        for m in self.mentions:
            pres = "?" if m.present is None else ("yes" if m.present else "NO")
            md = m.modality
            g = m.grounded
            extra = "" if g is None else f"{g.prior_kind or ''} {'<- ' + g.evidence_object if g.evidence_object else ''}".strip()
            lines.append(
                f"{m.word:<12} {pres:<8} {md.p_full:>7.3f} {md.p_prior:>7.3f} {100 * md.prior_share:>5.0f}%  {m.label:<18} {extra}"
            )
        return "\n".join(lines)

    def _spans(self) -> list[tuple[int, int, ObjectMention]]:
        text = self.generation.text
        spans = []
        for m in self.mentions:
            s = min(self.generation.spans[p][0] for p in m.positions)
            e = max(self.generation.spans[p][1] for p in m.positions)
            seg = text[s:e]
            spans.append((s + len(seg) - len(seg.lstrip()), e, m))
        return sorted(spans, key=lambda x: x[0])

    def _render(self, mark: Callable[[str, ObjectMention], str], plain: Callable[[str], str]) -> str:
        text = self.generation.text
        out, cursor = [], 0
        for s, e, m in self._spans():
            s = max(s, cursor)  # two mentions may share a token (and so a character)
            if e <= s:
                continue
            out.append(plain(text[cursor:s]))
            out.append(mark(text[s:e], m))
            cursor = e
        out.append(plain(text[cursor:]))
        return "".join(out)

    def ansi(self) -> str:
        """The caption with object words coloured by modality (green perception, yellow mixed,
        red prior); hallucinated ones underlined."""
        from .modality import _ANSI, _ANSI_RESET

        return self._render(
            lambda w, m: f"{_ANSI[m.label]}{chr(27) + '[4m' if m.hallucinated else ''}{w}{_ANSI_RESET}", lambda t: t
        )

    def html(self) -> str:
        """An HTML fragment: object words coloured by modality; hallucinated ones struck through."""
        import html as _html

        from .modality import _HTML_COLOURS

        def mark(w: str, m: ObjectMention) -> str:
            style = f"background:{_HTML_COLOURS[m.label]}"
            if m.hallucinated:
                style += ";text-decoration:line-through"
            state = "unknown" if m.present is None else ("present" if m.present else "HALLUCINATED")
            title = f"{state}; {m.label}; p_full {m.modality.p_full:.3f}, p_prior {m.modality.p_prior:.3f}"
            return f'<span style="{style}" title="{_html.escape(title)}">{_html.escape(w)}</span>'

        return f'<div class="mllm-attr-caption">{self._render(mark, _html.escape)}</div>'

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the caption, prompt, ground truth, CHAIR scores, mentions and forwards."""
        return {
            "caption": self.generation.text,
            "prompt": self.generation.prompt,
            "ground_truth": None if self.ground_truth is None else sorted(self.ground_truth),
            "chair_i": self.chair_i,
            "chair_s": self.chair_s,
            "mentions": [m.to_dict() for m in self.mentions],
            "forwards": int(self.forwards),
        }


# The 80 COCO object categories (the ``name`` of each entry of ``instances_*.json``'s
# "categories") with the words that usually name them in captions (after the CHAIR synonym
# list of Rohrbach et al. 2018, trimmed of words that mostly name something else: "bow",
# "seat", "container", "computer", "baby" as in "baby elephant"). Regular plurals
# ("-s", "-es", "-y" -> "-ies") are matched automatically; irregular ones are listed.
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "people", "man", "men", "woman", "women", "boy", "girl", "child", "children", "kid", "adult",
        "lady", "guy", "gentleman", "teenager", "toddler", "player", "rider", "skier", "snowboarder",
        "skater", "skateboarder", "surfer", "biker", "bicyclist", "cyclist", "pitcher", "batter",
        "catcher", "umpire", "referee", "chef", "cook", "baker", "worker", "policeman", "police officer",
        "officer", "soldier", "passenger", "pedestrian", "spectator", "tourist", "student", "mother",
        "father", "bride", "groom", "cowboy",
    ),
    "bicycle": ("bike", "unicycle", "tricycle"),
    "car": (
        "automobile", "sedan", "suv", "van", "minivan", "taxi", "cab", "jeep", "hatchback", "coupe", "limousine", "limo",
    ),
    "motorcycle": ("motorbike", "motor bike", "motor cycle", "dirt bike", "scooter", "moped"),
    "airplane": ("plane", "aeroplane", "air plane", "aircraft", "jet", "jetliner", "airliner", "biplane", "seaplane"),
    "bus": ("minibus",),
    "train": ("locomotive", "tram", "streetcar"),
    "truck": ("lorry", "pickup", "firetruck"),
    "boat": (
        "ship", "sailboat", "yacht", "canoe", "kayak", "ferry", "motorboat", "speedboat", "rowboat",
        "tugboat", "vessel", "barge",
    ),
    "traffic light": ("traffic signal", "stoplight", "stop light"),
    "fire hydrant": ("hydrant",),
    "stop sign": (),
    "parking meter": (),
    "bench": ("pew",),
    "bird": (
        "pigeon", "seagull", "gull", "duck", "goose", "geese", "swan", "parrot", "owl", "eagle", "sparrow",
        "crow", "pelican", "flamingo", "rooster", "heron", "ostrich", "peacock", "hummingbird",
    ),
    "cat": ("kitten", "kitty", "feline", "tabby"),
    "dog": (
        "puppy", "pup", "doggy", "doggie", "canine", "terrier", "poodle", "labrador", "retriever",
        "bulldog", "beagle", "chihuahua", "dachshund", "husky", "corgi", "pug", "collie", "sheepdog",
        "greyhound",
    ),
    "horse": ("pony", "foal", "colt", "stallion", "mare"),
    "sheep": ("lamb", "ram", "ewe"),
    "cow": ("cattle", "calf", "calves", "bull", "ox", "oxen", "heifer"),
    "elephant": (),
    "bear": ("polar bear", "grizzly"),
    "zebra": (),
    "giraffe": (),
    "backpack": ("knapsack", "rucksack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "pocketbook"),
    "tie": ("necktie", "bow tie"),
    "suitcase": ("suit case", "luggage"),
    "frisbee": ("flying disc",),
    "skis": ("ski",),
    "snowboard": (),
    "sports ball": ("ball", "soccer ball", "football", "basketball", "tennis ball", "volleyball"),
    "kite": (),
    "baseball bat": (),
    "baseball glove": ("baseball mitt", "mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "bottle": (),
    "wine glass": ("wineglass",),
    "cup": ("mug", "teacup"),
    "fork": (),
    "knife": ("knives",),
    "spoon": (),
    "bowl": (),
    "banana": (),
    "apple": (),
    "sandwich": ("burger", "hamburger", "cheeseburger"),
    "orange": (),
    "broccoli": (),
    "carrot": (),
    "hot dog": ("hotdog",),
    "pizza": (),
    "donut": ("doughnut",),
    "cake": ("cupcake", "cheesecake"),
    "chair": ("armchair", "stool"),
    "couch": ("sofa", "loveseat", "settee", "futon"),
    "potted plant": ("houseplant", "house plant"),
    "bed": (),
    "dining table": ("table",),
    "toilet": (),
    "tv": ("television", "tv set", "monitor"),
    "laptop": ("laptop computer", "notebook computer", "macbook"),
    "mouse": ("mice",),
    "remote": ("remote control", "controller"),
    "keyboard": (),
    "cell phone": ("cellphone", "mobile phone", "phone", "smartphone", "iphone"),
    "microwave": ("microwave oven",),
    "oven": ("stove", "stovetop"),
    "toaster": (),
    "sink": (),
    "refrigerator": ("fridge", "freezer"),
    "book": (),
    "clock": (),
    "vase": (),
    "scissors": (),
    "teddy bear": ("teddybear", "teddy"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}

VOCABULARIES: tuple[str, ...] = ("coco", "shapes")
"""Names accepted as ``vocabulary=`` by :func:`caption_hallucinations` / :func:`find_object_mentions`."""


def coco_vocabulary() -> dict[str, str]:
    """Object word -> COCO category: the 80 category names and their synonyms (:data:`COCO_SYNONYMS`)."""
    vocab: dict[str, str] = {}
    for category, words in COCO_SYNONYMS.items():
        for w in (category, *words):
            vocab.setdefault(w.lower(), category)
    return vocab


def _named_vocabulary(name: str) -> Mapping[str, str] | Sequence[str]:
    key = name.strip().lower()
    if key == "coco":
        return coco_vocabulary()
    if key == "shapes":
        from ..data.shapes import SHAPES

        return SHAPES
    raise ValueError(
        f"unknown vocabulary {name!r}; expected one of {list(VOCABULARIES)}, a list of words or a dict word -> category"
    )


def _vocabulary(vocabulary: Mapping[str, str] | Sequence[str] | str | None) -> dict[str, str]:
    """Object word (lower case) -> category."""
    if vocabulary is None:
        raise ValueError(
            "a vocabulary of object words is required: vocabulary='coco' (COCO's 80 categories and synonyms), "
            "'shapes' (the shapes world), a list of category names, or a dict word -> category"
        )
    if isinstance(vocabulary, str):
        vocabulary = _named_vocabulary(vocabulary)
    if isinstance(vocabulary, Mapping):
        vocab = {str(k).lower(): str(v) for k, v in vocabulary.items()}
    else:
        vocab = {str(w).lower(): str(w) for w in vocabulary}
    if not vocab or any(not w.strip() for w in vocab):
        raise ValueError("expected a non-empty vocabulary of object words")
    return vocab


def _truth_names(ground_truth: Any) -> tuple[list[str] | None, bool]:
    """The ground-truth category names, and whether they came from COCO annotations."""
    if ground_truth is None:
        return None, False
    objects = getattr(ground_truth, "objects", None)  # a CocoImage
    if objects is not None and not isinstance(ground_truth, (str, Mapping)):
        ground_truth = objects
        from_coco = True
    else:
        from_coco = False
    if isinstance(ground_truth, str):
        raise TypeError(f"ground_truth must be a collection of category names; got the string {ground_truth!r}")
    names = []
    for g in ground_truth:
        name = getattr(g, "category_name", None)  # a CocoObject
        if name is not None:
            from_coco = True
            names.append(str(name))
        else:
            names.append(str(g))
    return names, from_coco


def _derived_vocabulary(names: list[str] | None, from_coco: bool) -> dict[str, str]:
    """The vocabulary implied by the ground truth: COCO's when it is COCO annotations or COCO names."""
    if names is None:
        raise ValueError(
            "without ground truth (or object masks) the vocabulary cannot be derived: pass vocabulary='coco', "
            "'shapes', a list of category names or a dict word -> category"
        )
    coco = coco_vocabulary()
    if from_coco:
        return coco
    unknown = sorted({n for n in names if n.lower() not in coco})
    if not names or unknown:
        what = "is empty" if not names else f"names {unknown}, which are not COCO categories"
        raise ValueError(
            f"cannot derive the object vocabulary: the ground truth {what}; pass vocabulary= "
            "('coco', 'shapes', a list of category names or a dict word -> category)"
        )
    return coco


def _truth_categories(names: list[str], vocab: Mapping[str, str]) -> frozenset[str]:
    """Map ground-truth names onto the vocabulary's categories; an unknown name is an error."""
    categories = set(vocab.values())
    by_lower = {c.lower(): c for c in categories}
    out, missing = set(), []
    for n in names:
        if n in categories:
            out.add(n)
        elif n.lower() in by_lower:
            out.add(by_lower[n.lower()])
        elif n.lower() in vocab:
            out.add(vocab[n.lower()])  # a synonym: "sofa" -> "couch"
        else:
            missing.append(n)
    if missing:
        raise ValueError(
            f"ground-truth object(s) {sorted(set(missing))} are not in the vocabulary (categories: "
            f"{sorted(categories)[:20]}{' ...' if len(categories) > 20 else ''}); a caption could never be "
            "checked against them: add them to the vocabulary or pass the right one"
        )
    return frozenset(out)


def _forms(word: str) -> set[str]:
    """``word`` and its regular English plural(s) (on the last word of a phrase; ASCII words only):
    "-s"; "-es" after s, x, z, ch, sh, o ("buses", "benches"; never "ski" -> "skies");
    consonant + "y" -> "-ies" ("puppies")."""
    forms = {word}
    last = word[-1].lower()
    if not (last.isascii() and last.isalpha()):
        return forms
    forms.add(word + "s")
    if last in "sxzo" or word.lower().endswith(("ch", "sh")):
        forms.add(word + "es")
    if last == "y" and len(word) > 1 and word[-2].lower() not in "aeiou":
        forms.add(word[:-1] + "ies")
    return forms


def find_object_mentions(
    generation: Generation, vocabulary: Mapping[str, str] | Sequence[str] | str | None = None
) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(word, category, token positions)`` of every object word in the caption, in order.

    ``vocabulary`` is required (``None`` is an error): ``"coco"``, ``"shapes"``, a list of
    category names or a dict word -> category. Words match like word targets
    (:mod:`mllm_attr.targets`: case-insensitive, on word boundaries, CJK words inside runs),
    regular plurals included ("-s", "-es", "-y" -> "-ies"); where two entries overlap the
    longer wins ("traffic light" before "light", "hot dog" before "dog").
    """
    vocab = _vocabulary(vocabulary)
    text = generation.text
    cands = []
    for key in vocab:
        for form in _forms(key):
            for s, e in find_word(text, form):
                cands.append((s, -(e - s), e, key))
    cands.sort()
    out, cursor = [], 0
    for s, _, e, key in cands:
        if s < cursor:
            continue
        pos = tuple(
            i for i, (a, b) in enumerate(generation.spans)
            if b > a and a < e and b > s and not generation.special[i]
        )
        if pos:
            out.append((text[s:e], vocab[key], pos))
            cursor = e
    return out


def caption_hallucinations(
    adapter: "ModelAdapter",
    image: ImageLike,
    ground_truth: "Iterable[str] | Iterable[CocoObject] | CocoImage | None",
    *,
    generation: Generation | None = None,
    prompt: str | None = None,
    vocabulary: Mapping[str, str] | Sequence[str] | str | None = None,
    baseline: str = "black",
    reference_images: Sequence[np.ndarray] | np.ndarray | None = None,
    object_masks: Mapping[str, np.ndarray] | None = None,
    thresholds: ModalityThresholds | None = None,
    batch_size: int | None = None,
    max_new_tokens: int = 64,
) -> CaptionDiagnosis:
    """Object words of a caption: present / absent, and prior- or perception-driven.

    Args:
        ground_truth: categories present in the image (None: presence unknown): names, COCO
            annotations (:class:`~mllm_attr.data.coco.CocoObject` s) or a
            :class:`~mllm_attr.data.coco.CocoImage` (its objects). Every name must be a
            category (or a word) of the vocabulary: an unknown one is a ``ValueError``, never a
            silent "absent".
        generation: the caption; generated from ``prompt`` (default ``"Describe the image."``) when None.
        vocabulary: the object words to look for: ``"coco"`` (COCO's 80 categories and their
            usual synonyms, :data:`COCO_SYNONYMS`), ``"shapes"`` (the shapes world), a list of
            category names, or a dict word -> category. When None it is derived from the
            ground truth (or the mask names): COCO's when they are COCO annotations or all
            COCO category names / synonyms; anything else (or no ground truth) is a
            ``ValueError`` asking for ``vocabulary=``.
        baseline: the "no image evidence" fill for the modality probabilities.
        reference_images: if given, the prior is the mean over these images (see
            :func:`~mllm_attr.analysis.modality.analyze_modality`).
        object_masks: category -> ``bool[H, W]`` of the objects in the image (e.g. COCO
            segmentations): adds the grounded decomposition to every mention
            (:func:`~mllm_attr.analysis.modality.grounded_modality`; ``2 + len(masks)`` more
            forwards) and its label becomes the mention's label. ``ground_truth`` defaults to
            the categories with a non-empty mask.

    Two forwards score every object word at once (full and blank image), plus one per reference image.
    """
    from ..adapters.base import ModelAdapter

    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
    th = thresholds or ModalityThresholds()
    arr = load_image(image).array
    if generation is None:
        generation = adapter.generate(arr, prompt or "Describe the image.", max_new_tokens=max_new_tokens)
    elif not isinstance(generation, Generation):
        raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
    names, from_coco = _truth_names(ground_truth)
    if vocabulary is None:
        pool = None if names is None and object_masks is None else [*(names or []), *map(str, object_masks or {})]
        vocab = _derived_vocabulary(pool, from_coco)
    else:
        vocab = _vocabulary(vocabulary)
    if object_masks is not None:
        # Key the masks by the vocabulary's categories ("sofa" -> "couch"); unknown names are errors.
        keyed: dict[str, np.ndarray] = {}
        for c, m in object_masks.items():
            (cat,) = _truth_categories([str(c)], vocab)
            m = np.asarray(m, dtype=bool)
            keyed[cat] = keyed[cat] | m if cat in keyed else m
        object_masks = keyed
        if names is None:
            names = [c for c, m in keyed.items() if m.any()]
    truth = None if names is None else _truth_categories(names, vocab)
    found = find_object_mentions(generation, vocab)
    positions = sorted({p for _, _, pos in found for p in pos})
    mentions: list[ObjectMention] = []
    forwards = 0
    if positions:
        scorer = adapter.scorer(arr, generation, positions, baseline=make_baseline(arr, baseline), batch_size=batch_size or 2)
        keep = np.stack([np.ones(arr.shape[:2], bool), np.zeros(arr.shape[:2], bool)])
        scores = scorer.score_keep(keep)
        prior = None if reference_images is None else reference_probs(scorer, reference_images)
        forwards = scorer.forwards
        col = {p: j for j, p in enumerate(positions)}
        seen: dict[str, int] = {}
        for word, cat, pos in found:
            seen[cat] = seen.get(cat, 0) + 1
            full = float(np.prod([scores[0, col[p]] for p in pos]))
            blank = float(np.prod([scores[1, col[p]] for p in pos]))
            pri = None if prior is None else float(np.prod([prior[col[p]] for p in pos]))
            row = _row(pos, word, full, blank, th, p_prior=pri)
            mentions.append(ObjectMention(word, cat, seen[cat], pos, None if truth is None else cat in truth, row))
        if object_masks is not None:
            grounded, extra = grounded_modality(
                adapter, arr, generation, [m.positions for m in mentions], [m.category for m in mentions],
                dict(object_masks), baseline=baseline, thresholds=th, batch_size=batch_size,
            )
            forwards += extra
            mentions = [dataclasses.replace(m, grounded=g) for m, g in zip(mentions, grounded)]
    return CaptionDiagnosis(generation, mentions, truth, forwards, th)


def chair(diagnoses: Iterable[CaptionDiagnosis]) -> dict[str, Any]:
    """CHAIR over captions plus the modality labels of present vs hallucinated object words.

    ``chair_i`` pools mentioned categories over all captions; ``chair_s`` is the share of
    captions with any hallucinated category.
    """
    ds = [d for d in diagnoses if d.ground_truth is not None]
    cats = hall = 0
    for d in ds:
        c = {m.category for m in d.mentions}
        cats += len(c)
        hall += len({x for x in c if x not in d.ground_truth})  # type: ignore[operator]
    present = [m.label for d in ds for m in d.mentions if m.present]
    absent = [m.label for d in ds for m in d.mentions if m.hallucinated]
    return {
        "n_captions": len(ds),
        "chair_i": hall / cats if cats else float("nan"),
        "chair_s": float(np.mean([d.chair_s for d in ds])) if ds else float("nan"),
        "present_words": {lab: present.count(lab) for lab in sorted(set(present))},
        "hallucinated_words": {lab: absent.count(lab) for lab in sorted(set(absent))},
    }


# --------------------------------------------------------------------------- command line


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr diagnose`` on an argparse ``subparsers`` object."""
    from ..cli import add_explainer_args, add_model_args

    p = subparsers.add_parser(
        "diagnose",
        help="diagnose wrong answers to POPE-style yes/no object questions (AMCR, CSR@10%%)",
        description=(
            "For every question of a POPE-style JSONL file: generate the answer; for a wrong one explain the wrong "
            "and the correct answer and find the minimal removal (least important regions of the correct answer "
            "first) that makes the regenerated answer correct. Writes one JSON line per question (resumable) and a "
            "summary JSON."
        ),
    )
    p.add_argument("--pope", required=True, help="POPE/RePOPE JSONL file (question_id, image, text, label)")
    p.add_argument("--images", required=True, help="folder holding the images named in the file")
    p.add_argument("--out", required=True, help="output JSONL (one line per question); reruns resume it")
    p.add_argument("--summary", default=None, help="summary JSON path (default: OUT.summary.json)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--schedule", choices=SCHEDULES, default="incremental", help="removal schedule (default incremental)")
    p.add_argument("--max-area", type=float, default=1.0, help="largest removed area fraction tried (default 1.0)")
    p.add_argument("--answer-tokens", type=int, default=8, help="max new tokens when (re)generating answers (default 8)")
    p.add_argument("--save-dir", default=None, help="write explanations and edited images of wrong answers here")
    p.add_argument("--overwrite", action="store_true", help="start OUT over instead of resuming it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_model_args(p)
    add_explainer_args(p)
    p.set_defaults(func=_cmd_diagnose, regions=16)


def _cmd_diagnose(args: Any) -> int:
    from ..cli import explainer_from_args, load_model_from_args
    from ..data.pope import load_pope

    questions = load_pope(args.pope, args.images)  # fail on bad input before loading the model
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1; got {args.limit}")
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args)
    explainer.show_progress = False
    summary = diagnose_pope(
        adapter,
        questions,
        args.out,
        limit=args.limit,
        explainer=explainer,
        schedule=args.schedule,
        max_area=args.max_area,
        max_new_tokens=args.answer_tokens,
        overwrite=args.overwrite,
        save_dir=args.save_dir,
        summary_path=args.summary,
        show_progress=not args.quiet,
    )
    print(f"questions:        {summary['n']} ({summary['n_unparsed']} unparsed)")
    print(f"accuracy:         {summary['accuracy']:.4f}   F1 {summary['f1']:.4f}   yes-ratio {summary['yes_ratio']:.4f}")
    print(f"wrong answers:    {summary['n_wrong']} (false yes {summary['n_false_yes']}, false no {summary['n_false_no']})")
    print(f"corrected:        {summary['n_corrected']} of {summary['n_wrong']}")
    print(f"mean AMCR:        {summary['mean_amcr']:.4f}")
    print(f"CSR@10%:          {summary['csr_at_10']:.4f}  (over all {summary['csr_denominator']} wrong answers)")
    print(f"generate calls:   {summary['generate_calls']}   forwards {summary['forwards']}")
    print(f"wrote:            {summary['out']}, {summary['summary_path']}")
    return 0


__all__ = [
    "SCHEDULES",
    "YES_NO",
    "COCO_SYNONYMS",
    "CaptionDiagnosis",
    "ObjectMention",
    "VOCABULARIES",
    "RemovalResult",
    "YesNoDiagnosis",
    "add_subcommand",
    "answer_position",
    "caption_hallucinations",
    "cased_like",
    "chair",
    "coco_vocabulary",
    "diagnose_pope",
    "diagnose_yes_no",
    "find_object_mentions",
    "minimal_correcting_removal",
    "parse_yes_no",
    "summarize",
    "summary_path_for",
]
