"""Why a wrong yes/no answer: the evidence of the wrong and the correct answer, and the smallest
region removal that corrects it (AMCR).

(method.md §5)

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

Over a set of questions (:func:`mllm_attr.evaluation.pope.summarize_pope`, bulk runs in
:func:`mllm_attr.evaluation.pope.diagnose_pope`): POPE accuracy / precision / recall / F1 /
yes-ratio over all questions, and over the wrongly answered ones mean AMCR and
``CSR@10%`` = (samples with AMCR <= 0.1) / (ALL wrongly answered samples), never-corrected
ones included in the denominator. Correctly answered questions have nothing to correct and
do not enter AMCR or CSR.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image import ImageLike, load_image
from ..mask import compose, make_fill, resolve_fill
from ..targets import Answer, Positions
from ..types import Generation
from .modality import (
    ModalityThresholds,
    TokenModality,
    modality_from_explanation,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..adapters.base import ModelAdapter
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

    def __repr__(self) -> str:
        """One line: AMCR, whether and after how many regions it corrected, the answer then, the calls."""
        from ..viz import short_text

        after = None if self.answer_after is None else short_text(self.answer_after, 40)
        return (
            f"RemovalResult(amcr={self.amcr:.3f}, corrected={self.corrected}, regions_removed={self.regions_removed}, "
            f"answer_after={after!r}, generate_calls={self.generate_calls}, schedule={self.schedule!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict without ``edited_image``; trace entries become lists, areas rounded to 6 decimals."""
        d = {k: v for k, v in asdict(self).items() if k != "edited_image"}
        d["trace"] = [[k, round(a, 6), t, c] for k, a, t, c in self.trace]
        return d


def minimal_correcting_removal(
    adapter: ModelAdapter,
    image: np.ndarray,
    prompt: str,
    ordering: Sequence[int],
    labels: np.ndarray,
    is_correct: Callable[[Generation], bool],
    *,
    fill: str | np.ndarray = "black",
    baseline: str | np.ndarray | None = None,
    schedule: str = "incremental",
    coarse_steps: int = 8,
    max_area: float = 1.0,
    max_new_tokens: int = 8,
) -> RemovalResult:
    """Remove regions from the LEAST important end of ``ordering`` until the regenerated answer is correct.

    Args:
        image: ``uint8[H, W, 3]``; labels: ``int32[H, W]``; ordering: region ids, most important first.
        is_correct: judges a regenerated :class:`~mllm_attr.Generation`.
        fill: fill of removed regions (a name or a ``uint8[H, W, 3]`` image).
        schedule: see the module docstring; coarse_steps: first-pass points of ``"bisection"``.
        max_area: stop once the removed area would exceed this fraction (AMCR is then 1.0).
    """
    fill = resolve_fill(fill, baseline, where="minimal_correcting_removal")
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
    base = make_fill(image, fill) if isinstance(fill, str) else np.asarray(fill)
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
        idx = sorted(
            {
                ks[min(len(ks) - 1, max(0, math.ceil(i * len(ks) / coarse_steps) - 1))]
                for i in range(1, coarse_steps + 1)
            }
        )
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
    wrong_explanation: Explanation | None = None
    correct_explanation: Explanation | None = None
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

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line: the question, the answer against the label, the AMCR and the forwards."""
        from ..viz import short_text

        amcr = "None" if self.amcr is None else f"{self.amcr:.3f}"
        return (
            f"YesNoDiagnosis(question={short_text(self.question, 60)!r}, "
            f"answer={short_text(self.generation.text, 30)!r}, label={self.label!r}, correct={self.correct}, "
            f"amcr={amcr}, forwards={int(self.forwards)})"
        )

    def plot(self, **kw: Any) -> Figure:
        """The three-panel picture of a wrong answer (:func:`mllm_attr.viz.plot_hallucination_panel`;
        ``kw`` are its options): the image with the wrong answer, the evidence map of the correct
        answer with its top regions outlined, and the minimal correcting removal.

        Raises:
            ValueError: the answer was correct (nothing was explained or removed).
        """
        from ..viz import plot_hallucination_panel, top_region_mask

        right, removal = self.correct_explanation, self.removal
        if right is None or removal is None:
            raise ValueError(
                f"nothing to plot: the answer {self.generation.text!r} to {self.question!r} was correct "
                f"(label {self.label!r}), so there is no evidence map nor removal"
            )
        kw.setdefault("question", self.question)
        kw.setdefault("correct_token", right.target_text)
        kw.setdefault("removed_fraction", removal.amcr if removal.corrected else float(removal.removed_area))
        kw.setdefault("evidence_outline", top_region_mask(right))
        kw.setdefault("corrected", bool(removal.corrected))
        return plot_hallucination_panel(
            right.image,
            self.generation.text,
            right.saliency(),
            removal.answer_after if removal.corrected and removal.answer_after is not None else "(never corrected)",
            np.isin(right.labels, removal.removed_regions),
            **kw,
        )

    def show(self, **kw: Any) -> None:
        """Display :meth:`plot` (inline in Jupyter, else in a matplotlib window)."""
        from ..viz import show_figure

        show_figure(self.plot(**kw))

    def _repr_html_(self) -> str:
        """Jupyter's rich display: :meth:`plot` for a wrong answer (an inline PNG) and the numbers."""
        from ..viz import html_card, short_text

        rows: list[tuple[str, Any]] = [
            ("question", short_text(self.question, 120)),
            ("answer", f"{short_text(self.generation.text, 80)!r} (label {self.label!r})"),
            ("correct", self.correct),
        ]
        if self.removal is not None:
            rows += [
                ("AMCR", f"{self.removal.amcr:.3f}"),
                ("corrected", f"{self.removal.corrected} after {self.removal.regions_removed} regions"),
                ("answer after removal", short_text(str(self.removal.answer_after), 80)),
            ]
        if self.modality is not None:
            rows.append(("wrong answer's modality", self.modality.label))
        rows.append(("forwards", f"{int(self.forwards)}, {int(self.generate_calls)} generate calls"))
        fig = None if self.correct_explanation is None or self.removal is None else self.plot()
        return html_card("YesNoDiagnosis", rows, figure=fig)

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


def _expl_summary(e: Explanation | None) -> dict[str, Any] | None:
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


def default_explainer(adapter: ModelAdapter) -> Explainer:
    from ..explainer import Explainer

    return Explainer(adapter, n_regions=16, segmenter="slic", search="greedy")


def diagnose_yes_no(
    adapter: ModelAdapter,
    image: ImageLike,
    question: str,
    label: str | bool,
    *,
    explainer: Explainer | None = None,
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
            16 SLIC regions, exact greedy, black fill; its fill also fills removed regions).
        explain_wrong: also explain the wrong answer token (the evidence map of the error).
    """
    t0 = time.perf_counter()
    if isinstance(label, bool):
        label = "yes" if label else "no"
    if not isinstance(label, str) or label.strip().lower() not in YES_NO:
        raise ValueError(f"label must be 'yes' or 'no' (or a bool); got {label!r}")
    label = label.strip().lower()
    arr = load_image(image).array
    ex = explainer or default_explainer(adapter)
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
        fill=ex.fill,
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
        question,
        gen.text,
        label,
        diag.removal.amcr,
        diag.generate_calls,
    )
    return diag


__all__ = [
    "SCHEDULES",
    "YES_NO",
    "RemovalResult",
    "YesNoDiagnosis",
    "answer_position",
    "cased_like",
    "default_explainer",
    "diagnose_yes_no",
    "minimal_correcting_removal",
    "parse_yes_no",
]
