"""POPE / RePOPE in bulk: every question diagnosed (:func:`mllm_attr.analysis.yes_no.diagnose_yes_no`),
one JSON line per question in the package's record store (:mod:`mllm_attr.store`: atomic
appends, a rerun resumes without losing or duplicating a question), and the set's summary.

Command line: ``mllm-attr diagnose --pope FILE --images DIR --out OUT.jsonl`` writes the records and
``OUT.summary.json`` (:func:`summary_path_for`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import write_text_atomic
from ..analysis.modality import ModalityThresholds
from ..analysis.yes_no import default_explainer, diagnose_yes_no
from ..image import load_image
from ..store import JsonlWriter, done_keys, jsonable, read_jsonl

if TYPE_CHECKING:  # pragma: no cover
    from ..adapters.base import ModelAdapter
    from ..data.pope import PopeQuestion
    from ..explainer import Explainer

logger = logging.getLogger(__name__)

#: What the records of a diagnose output file are called in errors.
_WHAT = "diagnose records (one JSON object per question)"

# --------------------------------------------------------------------------- summaries


def summarize_pope(records: Iterable[Mapping[str, Any]], *, csr_threshold: float = 0.1) -> dict[str, Any]:
    """POPE metrics and AMCR / CSR over per-question records (:meth:`YesNoDiagnosis.to_json`).

    Unparsed answers (neither yes nor no) count as wrong and as "not yes" for precision/recall.
    ``csr_at_10`` (for the default threshold) = wrong samples with AMCR <= threshold over ALL
    wrong samples.
    """
    recs = list(records)
    n = len(recs)
    labels = [r["label"] for r in recs]
    preds = [r.get("predicted") for r in recs]
    tp = sum(p == "yes" and lab == "yes" for p, lab in zip(preds, labels))
    fp = sum(p == "yes" and lab == "no" for p, lab in zip(preds, labels))
    fn = sum(p != "yes" and lab == "yes" for p, lab in zip(preds, labels))
    correct = sum(p == lab for p, lab in zip(preds, labels))
    parsed = [p for p in preds if p is not None]
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else (0.0 if n else float("nan"))
    wrong = [r for r in recs if r.get("predicted") != r["label"]]
    amcrs = [float(r["amcr"]) for r in wrong if r.get("amcr") is not None]
    hits = sum(
        1
        for r in wrong
        if r.get("corrected") and r.get("amcr") is not None and float(r["amcr"]) <= csr_threshold + 1e-12
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
        "n_false_no": sum(p == "no" and lab == "yes" for p, lab in zip(preds, labels)),
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


def _records(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path, what=_WHAT) if path.is_file() else []


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(jsonable(obj), indent=2, allow_nan=False))


def summary_path_for(out: str | os.PathLike) -> Path:
    """``OUT.jsonl`` -> ``OUT.summary.json``."""
    p = Path(out)
    return p.with_name(p.stem + ".summary.json") if p.suffix else p.with_name(p.name + ".summary.json")


def diagnose_pope(
    adapter: ModelAdapter,
    questions: Sequence[PopeQuestion] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    explainer: Explainer | None = None,
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
        the summary (:func:`summarize_pope`) plus ``"out"`` and ``"summary_path"`` (as written to
        the summary file) and ``"artifacts"`` (not written there): the paths this call wrote under
        ``save_dir``, one ``{"wrong": ..., "correct": ..., "edited": ...}`` dict per wrong answer.
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
    done = done_keys([out_path], lambda r: str(r.get("question_id")), what=_WHAT)
    todo = [q for q in qs if str(q.question_id) not in done]
    if done:
        logger.info("resuming %s: %d questions done, %d to go", out_path, len(qs) - len(todo), len(todo))
    ex = explainer or default_explainer(adapter)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="diagnose", unit="question")
    artifacts: list[dict[str, str]] = []
    with JsonlWriter(out_path) as writer:  # repairs a torn tail left by an interrupted run
        for q in todo:
            img = load_image(q.image_path).array
            diag = diagnose_yes_no(
                adapter,
                img,
                q.question,
                q.answer,
                explainer=ex,
                schedule=schedule,
                max_area=max_area,
                max_new_tokens=max_new_tokens,
                thresholds=thresholds,
                question_id=q.question_id,
                image_name=q.image,
            )
            record = diag.to_json()
            if save_dir is not None and not diag.correct:
                record["artifacts"] = diag.save(Path(save_dir) / safe_name(q.question_id), overwrite=True)
                artifacts.append(record["artifacts"])
            writer.append(record)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    qids = {str(q.question_id) for q in qs}
    records = [r for r in _records(out_path) if str(r.get("question_id")) in qids]
    summary = summarize_pope(records)
    spath = Path(summary_path) if summary_path is not None else summary_path_for(out_path)
    summary.update(
        {
            "out": str(out_path),
            "summary_path": str(spath),
            "schedule": schedule,
            "max_area": max_area,
            "explainer": ex.settings(),
            "adapter": adapter.describe(),
        }
    )
    _write_json_atomic(spath, summary)
    summary["artifacts"] = artifacts
    return summary


def safe_name(qid: Any) -> str:
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


__all__ = ["diagnose_pope", "safe_name", "summarize_pope", "summary_path_for"]
