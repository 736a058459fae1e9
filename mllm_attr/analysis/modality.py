"""Modality analysis: how much of a token's probability the language prior carries (method.md §6).

For every explained token ``k`` two probabilities frame the question:

* ``p_blank[k]``: the teacher-forced probability with every image region removed (the
  fill image): what the prompt and the answer prefix alone give, the *language prior*;
* ``p_full[k]``: the probability with the whole image: prior plus image evidence.

Decomposition (per token, all in ``[0, 1]``), with ``p_prior`` the language-prior estimate::

    gain        = p_full - p_prior                      # what the image adds (can be < 0)
    prior_share = clip(p_prior / p_full, 0, 1)          # part of p_full the prior already gives
    image_share = 1 - prior_share = clip(gain / p_full, 0, 1)

A token whose ``p_prior >= p_full`` gets ``prior_share = 1``: the image did not raise it.

The prior estimate is ``p_blank`` (method.md §6; the default). A blank image is itself visual
evidence, though ("there is nothing here": it pushes existence questions towards "no"), so
``reference_images=`` offers a second estimate: the *marginal* prior, the mean probability of
the token over unrelated reference images (``p_prior = mean_j p(token | I_j, text)``, the
image marginalised out, as in pointwise-mutual-information analyses of hallucination). Both
``p_blank`` and ``p_prior`` are reported; ``prior_source`` says which one the shares use.

Labels (:class:`ModalityThresholds`, all configurable):

* ``"perception-driven"``: ``gain >= min_gain`` (default 0.2, the "perception-sensitive"
  cut of method.md §6) **and** ``image_share >= perception_share`` (default 0.5);
* ``"prior-driven"``: ``prior_share >= prior_share`` (default 0.7): the blank image
  already gives at least 70 % of the token's probability;
* ``"mixed"``: everything else.

Two ways to get the numbers:

* the cheap path, :func:`analyze_modality`: two forward passes (full and blank image)
  for all tokens of an answer at once;
* the full path, :func:`modality_from_explanation`: an :class:`~mllm_attr.Explanation`
  adds, per token, the insertion-curve AUC, its minimum, the *visual reliance*
  ``AUC(insertion curve) - min(curve)`` (the reference's per-word score) and the regions
  that carry the evidence (the shortest prefix of the ordering that recovers
  ``evidence_fraction`` of the gain).

A whole answer renders as a table (:meth:`ModalityReport.table`) or as coloured text for a
terminal (:meth:`ModalityReport.ansi`) or a web page (:meth:`ModalityReport.html`).

Example:
    >>> report = analyze_modality(adapter, image, prompt="Describe the image.")   # doctest: +SKIP
    >>> print(report.table()); print(report.ansi())                               # doctest: +SKIP
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..explainer import make_scorer
from ..image import ImageLike, load_image
from ..mask import make_fill, resolve_fill
from ..targets import Answer, TargetLike, as_target, resolve
from ..types import Generation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..adapters.base import ModelAdapter
    from ..explanation import Explanation

logger = logging.getLogger(__name__)

PRIOR = "prior-driven"
PERCEPTION = "perception-driven"
MIXED = "mixed"
#: The three labels, in the order tables list them.
LABELS: tuple[str, ...] = (PERCEPTION, MIXED, PRIOR)

_ANSI = {PERCEPTION: "\x1b[32m", MIXED: "\x1b[33m", PRIOR: "\x1b[31m"}
_ANSI_RESET = "\x1b[0m"
_HTML_COLOURS = {PERCEPTION: "#b7e4b0", MIXED: "#fbe7a1", PRIOR: "#f6b3b3"}


@dataclass(frozen=True)
class ModalityThresholds:
    """Cut-offs of the three labels (see the module docstring).

    Attributes:
        min_gain: smallest ``p_full - p_blank`` for "perception-driven" (method.md §6: 0.2).
        perception_share: smallest image share for "perception-driven".
        prior_share: smallest prior share for "prior-driven".
        evidence_fraction: (full path) the evidence regions are the shortest prefix of the
            ordering whose insertion score recovers this fraction of the gain.
    """

    min_gain: float = 0.2
    perception_share: float = 0.5
    prior_share: float = 0.7
    evidence_fraction: float = 0.9

    def __post_init__(self) -> None:
        for name in ("min_gain", "perception_share", "prior_share", "evidence_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"ModalityThresholds.{name} must be a number in [0, 1]; got {v!r}")
        if self.perception_share + self.prior_share <= 1.0:
            raise ValueError(
                "ModalityThresholds: perception_share + prior_share must exceed 1 so that no token is both "
                f"perception- and prior-driven; got {self.perception_share} + {self.prior_share}"
            )


def decompose(p_full: np.ndarray | float, p_blank: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split probabilities into prior and image parts.

    Args:
        p_full: ``float[K]`` (or a scalar) probability with the full image.
        p_blank: ``float[K]`` probability with the blank (fill) image.

    Returns:
        ``(gain, prior_share, image_share)``, each ``float64[K]``: ``gain = p_full - p_blank``,
        ``prior_share = clip(p_blank / p_full, 0, 1)`` (1 where ``p_full`` is 0),
        ``image_share = 1 - prior_share``.
    """
    full = np.atleast_1d(np.asarray(p_full, dtype=np.float64))
    blank = np.atleast_1d(np.asarray(p_blank, dtype=np.float64))
    if full.shape != blank.shape:
        raise ValueError(f"p_full shape {full.shape} differs from p_blank shape {blank.shape}")
    if np.any(~np.isfinite(full)) or np.any(~np.isfinite(blank)):
        raise ValueError("p_full and p_blank must be finite probabilities")
    gain = full - blank
    with np.errstate(divide="ignore", invalid="ignore"):
        prior = np.where(full > 0, np.clip(blank / np.where(full > 0, full, 1.0), 0.0, 1.0), 1.0)
    return gain, prior, 1.0 - prior


def classify(
    p_full: np.ndarray | float, p_blank: np.ndarray | float, thresholds: ModalityThresholds | None = None
) -> list[str]:
    """One label per token (``"perception-driven"`` / ``"mixed"`` / ``"prior-driven"``)."""
    th = thresholds or ModalityThresholds()
    gain, prior, image = decompose(p_full, p_blank)
    out = []
    for g, pr, im in zip(gain, prior, image):
        if g >= th.min_gain and im >= th.perception_share:
            out.append(PERCEPTION)
        elif pr >= th.prior_share:
            out.append(PRIOR)
        else:
            out.append(MIXED)
    return out


@dataclass(frozen=True)
class TokenModality:
    """The modality numbers of one explained token (or one word: see :meth:`ModalityReport.words`).

    Attributes:
        positions: token position(s) in the generation (one for a token, several for a word).
        text: the token's (word's) text as it appears in the answer.
        p_full, p_blank: probability with the full / the blank image.
        p_prior: the prior estimate the shares use (``p_blank``, or the reference-image mean).
        gain, prior_share, image_share: see :func:`decompose` (with ``p_prior``).
        label: see :func:`classify`.
        insertion_auc, curve_min, visual_reliance, deletion_auc: full path only (else None):
            the token's insertion-curve AUC, the minimum of that curve, ``AUC - min`` and
            the deletion-curve AUC.
        evidence_regions: full path only: the region ids (ordering prefix) that recover
            ``evidence_fraction`` of the gain (None when the gain is <= 0).
        evidence_area: image fraction covered by ``evidence_regions``.
    """

    positions: tuple[int, ...]
    text: str
    p_full: float
    p_blank: float
    p_prior: float
    gain: float
    prior_share: float
    image_share: float
    label: str
    insertion_auc: float | None = None
    curve_min: float | None = None
    visual_reliance: float | None = None
    deletion_auc: float | None = None
    evidence_regions: tuple[int, ...] | None = None
    evidence_area: float | None = None

    def __repr__(self) -> str:
        """One line: the text, its position(s), the probabilities, the image share and the label."""
        from ..viz import short_text

        return (
            f"TokenModality(text={short_text(self.text, 40)!r}, positions={short_text(str(self.positions), 40)}, "
            f"p_full={self.p_full:.3f}, p_blank={self.p_blank:.3f}, image_share={self.image_share:.2f}, "
            f"label={self.label!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, ``positions`` and ``evidence_regions`` as lists."""
        d = asdict(self)
        d["positions"] = list(self.positions)
        if self.evidence_regions is not None:
            d["evidence_regions"] = list(self.evidence_regions)
        return d


@dataclass
class ModalityReport:
    """Per-token modality of one answer.

    Attributes:
        generation: the answer.
        tokens: one :class:`TokenModality` per explained token, in answer order.
        thresholds: the label cut-offs used.
        forwards: images scored to make the report (2 on the cheap path).
        source: ``"probabilities"`` (cheap path) or ``"explanation"`` (full path).
        prior_source: ``"blank"`` or ``"references"`` (see the module docstring).
    """

    generation: Generation
    tokens: list[TokenModality]
    thresholds: ModalityThresholds = field(default_factory=ModalityThresholds)
    forwards: int = 0
    source: str = "probabilities"
    prior_source: str = "blank"

    # -- selection ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self):
        return iter(self.tokens)

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line: the answer, the token count per label, the source and the forwards."""
        from ..viz import short_text

        counts = ", ".join(f"{lab}={n}" for lab, n in self.counts().items())
        return (
            f"ModalityReport(answer={short_text(self.generation.text, 48)!r}, tokens={len(self.tokens)} ({counts}), "
            f"source={self.source!r}, prior={self.prior_source!r}, forwards={int(self.forwards)})"
        )

    def plot(self, ax: Axes | None = None, *, words: bool = False, **kw: Any) -> Figure:
        """The answer with each analysed token (or word) boxed in its label's colour, the image
        share printed under it (:func:`mllm_attr.viz.render_modality_text`; ``kw`` are its
        options); titled with the prompt. Returns the figure."""
        from ..viz import render_modality_text, short_text

        kw.setdefault("title", f"Q: {short_text(self.generation.prompt, 80)}  (box opacity, number: image share)")
        return render_modality_text(self.words() if words else self.tokens, ax, **kw).figure

    def show(self, **kw: Any) -> None:
        """Display :meth:`plot` (inline in Jupyter, else in a matplotlib window)."""
        from ..viz import show_figure

        show_figure(self.plot(**kw))

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the coloured answer (:meth:`html`) and the label counts."""
        from ..viz import html_card, short_text

        rows: list[tuple[str, Any]] = [("prompt", short_text(self.generation.prompt, 120))]
        rows += [(lab, n) for lab, n in self.counts().items()]
        rows += [("source", f"{self.source} (prior: {self.prior_source})"), ("forwards", int(self.forwards))]
        return html_card(f"ModalityReport: {len(self.tokens)} tokens", rows, extra=self.html())

    @property
    def labels(self) -> list[str]:
        """The label of each row, in answer order."""
        return [t.label for t in self.tokens]

    def counts(self) -> dict[str, int]:
        """Number of tokens per label."""
        return {lab: sum(t.label == lab for t in self.tokens) for lab in LABELS}

    def by_position(self) -> dict[int, TokenModality]:
        """Single-token rows keyed by their token position (rows spanning several tokens are left out)."""
        return {t.positions[0]: t for t in self.tokens if len(t.positions) == 1}

    def words(self) -> list[TokenModality]:
        """Word-level rows: the tokens of each word of the answer merged.

        A word is a run of letters/digits (or one punctuation mark). Its probability is the
        product of its tokens' probabilities (the joint probability of the word); a word is
        listed only when all of its tokens were analysed. Curve-based fields are left empty.
        """
        by_pos = self.by_position()
        gen = self.generation
        out = []
        for m in re.finditer(r"\w+|[^\w\s]", gen.text):
            pos = [
                i
                for i, (s, e) in enumerate(gen.spans)
                if e > s and s < m.end() and e > m.start() and not gen.special[i]
            ]
            if not pos or any(p not in by_pos for p in pos):
                continue
            if len(pos) == 1:
                out.append(by_pos[pos[0]])
                continue
            full = float(np.prod([by_pos[p].p_full for p in pos]))
            blank = float(np.prod([by_pos[p].p_blank for p in pos]))
            prior = float(np.prod([by_pos[p].p_prior for p in pos]))
            out.append(_row(tuple(pos), m.group(0), full, blank, self.thresholds, p_prior=prior))
        return out

    # -- rendering ---------------------------------------------------------------------------
    def table(self, *, words: bool = False) -> str:
        """A fixed-width text table: one row per token (or word)."""
        rows = self.words() if words else self.tokens
        full_path = any(r.insertion_auc is not None for r in rows)
        refs = self.prior_source != "blank"
        head = ["pos", "token", "p_full", "p_blank"] + (["p_prior"] if refs else []) + ["gain", "prior", "image"]
        if full_path:
            head += ["insAUC", "reliance", "evid.area"]
        head.append("label")
        lines = []
        for r in rows:
            cells = (
                [
                    ",".join(str(p) for p in r.positions),
                    repr(r.text.strip() or r.text),
                    f"{r.p_full:.3f}",
                    f"{r.p_blank:.3f}",
                ]
                + ([f"{r.p_prior:.3f}"] if refs else [])
                + [
                    f"{r.gain:+.3f}",
                    f"{100 * r.prior_share:.0f}%",
                    f"{100 * r.image_share:.0f}%",
                ]
            )
            if full_path:
                cells += [_fmt(r.insertion_auc), _fmt(r.visual_reliance), _fmt(r.evidence_area)]
            cells.append(r.label)
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(head)]
        fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*c) for c in lines]
        return "\n".join(out)

    def ansi(self, *, legend: bool = True) -> str:
        """The answer with each analysed token coloured by label (ANSI escape codes).

        Green: perception-driven, yellow: mixed, red: prior-driven; other tokens plain.
        """
        text = self._render(lambda piece, row: f"{_ANSI[row.label]}{piece}{_ANSI_RESET}", lambda s: s)
        if legend:
            text += "\n" + "  ".join(f"{_ANSI[lab]}{lab}{_ANSI_RESET}" for lab in LABELS)
        return text

    def html(self, *, legend: bool = True) -> str:
        """The answer as an HTML fragment: ``<span>`` per analysed token, coloured by label,
        with the numbers in its ``title`` tooltip."""

        def span(piece: str, row: TokenModality) -> str:
            title = (
                f"{row.label}: p_full {row.p_full:.3f}, p_blank {row.p_blank:.3f}, p_prior {row.p_prior:.3f}, "
                f"prior {100 * row.prior_share:.0f}%, image {100 * row.image_share:.0f}%"
            )
            if row.visual_reliance is not None:
                title += f", visual reliance {row.visual_reliance:.3f}"
            cls = "mllm-attr-" + row.label.split("-")[0]
            return (
                f'<span class="{cls}" style="background:{_HTML_COLOURS[row.label]}" '
                f'title="{html.escape(title)}">{html.escape(piece)}</span>'
            )

        body = self._render(span, html.escape)
        out = f'<div class="mllm-attr-modality">{body}</div>'
        if legend:
            keys = " ".join(
                f'<span style="background:{_HTML_COLOURS[lab]}">{html.escape(lab)}</span>' for lab in LABELS
            )
            out += f'\n<div class="mllm-attr-legend">{keys}</div>'
        return out

    def _render(self, mark: Any, plain: Any) -> str:
        gen = self.generation
        by_pos = self.by_position()
        pieces = []
        cursor = 0
        for i, (s, e) in enumerate(gen.spans):
            # Byte tokens of one character share its span: the character is drawn once, in the
            # colour of the first of them.
            s = max(s, cursor)
            if e <= s:
                continue
            if s > cursor:
                pieces.append(plain(gen.text[cursor:s]))
            piece = gen.text[s:e]
            row = by_pos.get(i)
            if row is None:
                pieces.append(plain(piece))
            else:
                # Keep the token's leading white space outside the coloured part.
                stripped = piece.lstrip()
                lead = piece[: len(piece) - len(stripped)]
                pieces.append(plain(lead) + (mark(stripped, row) if stripped else ""))
            cursor = e
        if cursor < len(gen.text):
            pieces.append(plain(gen.text[cursor:]))
        return "".join(pieces)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the answer, sources, forwards, thresholds, label counts and token rows."""
        return {
            "generated_text": self.generation.text,
            "prompt": self.generation.prompt,
            "source": self.source,
            "prior_source": self.prior_source,
            "forwards": int(self.forwards),
            "thresholds": asdict(self.thresholds),
            "counts": self.counts(),
            "tokens": [t.to_dict() for t in self.tokens],
        }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _row(
    positions: tuple[int, ...],
    text: str,
    p_full: float,
    p_blank: float,
    th: ModalityThresholds,
    *,
    p_prior: float | None = None,
    **extra: Any,
) -> TokenModality:
    prior_p = p_blank if p_prior is None else p_prior
    gain, prior, image = decompose(p_full, prior_p)
    return TokenModality(
        positions=positions,
        text=text,
        p_full=float(p_full),
        p_blank=float(p_blank),
        p_prior=float(prior_p),
        gain=float(gain[0]),
        prior_share=float(prior[0]),
        image_share=float(image[0]),
        label=classify(p_full, prior_p, th)[0],
        **extra,
    )


def reference_probs(scorer: Any, references: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``float64[K]``: mean target probability over reference images (resized to the scorer's image).

    Args:
        scorer: a :class:`~mllm_attr.adapters.base.Scorer` of the explained image.
        references: ``uint8[R, h, w, 3]`` images (or a list of images of any sizes), R >= 1.
    """
    from PIL import Image

    h, w = scorer.image.shape[:2]
    refs = []
    for ref in references:
        arr = load_image(ref).array
        if arr.shape[:2] != (h, w):
            arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BICUBIC), dtype=np.uint8)
        refs.append(arr)
    if not refs:
        raise ValueError("reference_images is empty; expected at least one image")
    return scorer.score_images(np.stack(refs)).mean(axis=0)


def modality_from_probs(
    generation: Generation,
    positions: Sequence[int],
    p_full: Sequence[float] | np.ndarray,
    p_blank: Sequence[float] | np.ndarray,
    thresholds: ModalityThresholds | None = None,
    *,
    p_prior: Sequence[float] | np.ndarray | None = None,
    forwards: int = 0,
) -> ModalityReport:
    """A :class:`ModalityReport` from already-scored probabilities.

    Args:
        generation: the answer.
        positions: ``K`` token positions.
        p_full, p_blank: ``float[K]`` probabilities with the full / blank image.
        p_prior: ``float[K]`` another prior estimate (e.g. :func:`reference_probs`); default ``p_blank``.
    """
    th = thresholds or ModalityThresholds()
    full = np.asarray(p_full, dtype=np.float64).reshape(-1)
    blank = np.asarray(p_blank, dtype=np.float64).reshape(-1)
    if not (len(positions) == len(full) == len(blank)):
        raise ValueError(
            f"expected one p_full and one p_blank per position; got {len(positions)} positions, "
            f"{len(full)} p_full, {len(blank)} p_blank"
        )
    prior = blank if p_prior is None else np.asarray(p_prior, dtype=np.float64).reshape(-1)
    if len(prior) != len(full):
        raise ValueError(f"expected one p_prior per position; got {len(prior)} for {len(full)} positions")
    rows = [
        _row((int(p),), generation.tokens[int(p)], f, b, th, p_prior=q)
        for p, f, b, q in zip(positions, full, blank, prior)
    ]
    source = "blank" if p_prior is None else "references"
    return ModalityReport(generation, rows, th, forwards=forwards, source="probabilities", prior_source=source)


def analyze_modality(
    adapter: ModelAdapter,
    image: ImageLike,
    generation: Generation | None = None,
    *,
    prompt: str | None = None,
    target: TargetLike = "all",
    fill: str = "black",
    baseline: str | None = None,
    reference_images: Sequence[np.ndarray] | np.ndarray | None = None,
    thresholds: ModalityThresholds | None = None,
    batch_size: int | None = None,
    max_new_tokens: int = 64,
) -> ModalityReport:
    """Cheap path: score the full and the blank image once (2 forwards) for every target token.

    Args:
        adapter: any :class:`~mllm_attr.ModelAdapter`.
        image: path, PIL image or ``uint8[H, W, 3]``.
        generation: the answer to analyse; generated from ``prompt`` when None.
        target: which tokens (default every non-special token); ``Answer(text)`` analyses a
            counterfactual answer.
        fill: the "no image evidence" fill: ``"black"`` (default), ``"blur"`` or ``"mean"``.
        reference_images: if given, the prior is the mean probability over these unrelated
            images (resized to the image's size; ``R`` more forwards) instead of ``p_blank``.
    """
    fill = resolve_fill(fill, baseline, where="analyze_modality")
    from ..adapters.base import ModelAdapter

    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
    arr = load_image(image).array
    spec = as_target(target)
    if generation is None:
        if prompt is None:
            raise ValueError("pass either a Generation or a prompt to generate one")
        generation = adapter.generate(arr, prompt, max_new_tokens=max_new_tokens)
    elif not isinstance(generation, Generation):
        raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
    if isinstance(spec, Answer):
        generation = adapter.teacher_force(arr, generation.prompt, spec.text, generated_text=generation.text)
    positions = resolve(generation, spec)
    base = make_fill(arr, fill)
    scorer = make_scorer(adapter, arr, generation, positions, fill=base, batch_size=batch_size or 2)
    keep = np.stack([np.ones(arr.shape[:2], bool), np.zeros(arr.shape[:2], bool)])
    scores = scorer.score_keep(keep)
    prior = None if reference_images is None else reference_probs(scorer, reference_images)
    report = modality_from_probs(
        generation, positions, scores[0], scores[1], thresholds, p_prior=prior, forwards=scorer.forwards
    )
    logger.info("modality of %d tokens: %s", len(positions), report.counts())
    return report


def evidence_prefix(ins: np.ndarray, p_full: float, p_blank: float, fraction: float = 0.9) -> int | None:
    """Length of the shortest ordering prefix whose insertion score reaches
    ``p_blank + fraction * (p_full - p_blank)``; None when the gain is not positive.

    Args:
        ins: ``float[n]`` insertion scores of the prefixes of one token (last = ``p_full``).
    """
    gain = p_full - p_blank
    if gain <= 0:
        return None
    goal = p_blank + fraction * gain
    hit = np.nonzero(np.asarray(ins) >= goal - 1e-12)[0]
    return int(hit[0]) + 1 if hit.size else len(ins)


def modality_from_explanation(
    explanation: Explanation,
    thresholds: ModalityThresholds | None = None,
    *,
    p_prior: Sequence[float] | np.ndarray | None = None,
) -> ModalityReport:
    """Full path: the explanation's endpoints and per-token curves (no new forward pass).

    Adds insertion AUC, curve minimum, visual reliance (``AUC - min``), deletion AUC and the
    evidence regions to every token. ``p_prior`` (``float[K]``) replaces ``p_blank`` as the
    prior estimate of the shares and labels (the curves and evidence regions keep ``p_blank``).
    """
    th = thresholds or ModalityThresholds()
    e = explanation
    region_area = np.bincount(e.labels.ravel(), minlength=e.n_regions) / e.labels.size
    prior = None if p_prior is None else np.asarray(p_prior, dtype=np.float64).reshape(-1)
    if prior is not None and len(prior) != len(e.positions):
        raise ValueError(f"expected one p_prior per explained token; got {len(prior)} for {len(e.positions)}")
    rows = []
    for i, p in enumerate(e.positions):
        _, y = e.insertion_curve(i)
        auc = e.insertion_auc(i)
        k = evidence_prefix(e.ins[:, i], float(e.p_full[i]), float(e.p_blank[i]), th.evidence_fraction)
        regions = None if k is None else tuple(int(r) for r in e.ordering[:k])
        rows.append(
            _row(
                (int(p),),
                e.generation.tokens[p],
                float(e.p_full[i]),
                float(e.p_blank[i]),
                th,
                p_prior=None if prior is None else float(prior[i]),
                insertion_auc=auc,
                curve_min=float(y.min()),
                visual_reliance=float(auc - y.min()),
                deletion_auc=e.deletion_auc(i),
                evidence_regions=regions,
                evidence_area=None if regions is None else float(region_area[list(regions)].sum()),
            )
        )
    return ModalityReport(
        e.generation,
        rows,
        th,
        forwards=0,
        source="explanation",
        prior_source="blank" if prior is None else "references",
    )


# --------------------------------------------------------------------------- grounded (object masks)


@dataclass(frozen=True)
class GroundedModality:
    """Three-way decomposition of an object word's probability, given object masks.

    With the masks of the objects in the image (ground truth), the image part of ``p_full``
    splits into the word's OWN object and the rest (context)::

        language_share = clip(p_blank / p_full, 0, 1)                      # text alone
        object_share   = clip((p_full - p_without_object) / p_full, 0, 1)  # the object's own pixels
        context_share  = max(1 - language_share - object_share, 0)          # other objects, background

    ``p_without_object`` is the probability with the named object's pixels replaced by the
    fill (deletion keeps the rest of the scene in distribution); for an object that is
    not in the image it equals ``p_full``: nothing of it can be perceived.

    Labels: ``"perception-driven"`` when ``object_share >= perception_share`` and
    ``p_full - p_without_object >= min_gain``; ``"prior-driven"`` when
    ``language_share + context_share >= prior_share``; else ``"mixed"``. ``prior_kind`` says
    which prior dominates: ``"language"`` (the text alone) or ``"co-occurrence"`` (evidence
    in OTHER objects or the background). ``evidence_object`` is the category whose removal
    lowers the probability most (``drops``: ``p_full - p(category removed)`` per category).

    Caveat: for an absent object ``object_share`` is 0 by construction, so such a word is never
    perception-driven; what is measured is which prior carries it and where its evidence is.
    """

    positions: tuple[int, ...]
    text: str
    category: str | None
    present: bool
    p_full: float
    p_blank: float
    p_without_object: float
    language_share: float
    object_share: float
    context_share: float
    label: str
    prior_kind: str | None
    evidence_object: str | None
    drops: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: the word, its category and presence, the three shares, the label and the evidence object."""
        from ..viz import short_text

        return (
            f"GroundedModality(text={short_text(self.text, 30)!r}, category={self.category!r}, present={self.present}, "
            f"language={self.language_share:.2f}, object={self.object_share:.2f}, context={self.context_share:.2f}, "
            f"label={self.label!r}, evidence_object={self.evidence_object!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, ``positions`` as a list."""
        d = asdict(self)
        d["positions"] = list(self.positions)
        return d


def grounded_modality(
    adapter: ModelAdapter,
    image: ImageLike,
    generation: Generation,
    groups: Sequence[Sequence[int]],
    categories: Sequence[str | None],
    object_masks: dict[str, np.ndarray] | Any,
    *,
    fill: str = "black",
    baseline: str | None = None,
    thresholds: ModalityThresholds | None = None,
    batch_size: int | None = None,
) -> tuple[list[GroundedModality], int]:
    """Grounded decomposition (:class:`GroundedModality`) of several words of one answer.

    Args:
        groups: per word, its token positions (a word's probability is the product).
        categories: per word, the object category it names (None: not an object word).
        object_masks: category -> ``bool[H, W]`` pixels of that category's objects in the image.

    Returns:
        ``(rows, forwards)``; ``2 + len(object_masks)`` images scored in all.
    """
    fill = resolve_fill(fill, baseline, where="grounded_modality")
    from ..adapters.base import ModelAdapter

    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
    if len(groups) != len(categories):
        raise ValueError(f"expected one category per word; got {len(categories)} for {len(groups)} words")
    th = thresholds or ModalityThresholds()
    arr = load_image(image).array
    cats = list(object_masks)
    masks = []
    for c in cats:
        m = np.asarray(object_masks[c], dtype=bool)
        if m.shape != arr.shape[:2]:
            raise ValueError(f"mask of {c!r} has shape {m.shape}; expected the image's {arr.shape[:2]}")
        masks.append(m)
    positions = sorted({int(p) for g in groups for p in g})
    if not positions:
        return [], 0
    scorer = make_scorer(adapter, arr, generation, positions, fill=make_fill(arr, fill), batch_size=batch_size or 8)
    keep = np.stack([np.ones(arr.shape[:2], bool), np.zeros(arr.shape[:2], bool)] + [~m for m in masks])
    scores = scorer.score_keep(keep)
    col = {p: j for j, p in enumerate(positions)}
    rows = []
    for group, cat in zip(groups, categories):
        prob = np.prod(scores[:, [col[int(p)] for p in group]], axis=1)  # [2 + C]
        full, blank = float(prob[0]), float(prob[1])
        removed = {c: float(prob[2 + i]) for i, c in enumerate(cats)}
        present = cat is not None and cat in removed and bool(masks[cats.index(cat)].any())
        without = removed[cat] if present else full
        denom = full if full > 0 else 1.0
        language = float(np.clip(blank / denom, 0, 1)) if full > 0 else 1.0
        obj = float(np.clip((full - without) / denom, 0, 1)) if full > 0 else 0.0
        context = max(1.0 - language - obj, 0.0)
        if obj >= th.perception_share and full - without >= th.min_gain:
            label = PERCEPTION
        elif language + context >= th.prior_share:
            label = PRIOR
        else:
            label = MIXED
        kind = None if label != PRIOR else ("language" if language >= context else "co-occurrence")
        drops = {c: full - v for c, v in removed.items()}
        best = max(drops, key=lambda c: drops[c]) if drops else None
        evidence = best if best is not None and drops[best] > 0 else None
        text = generation.text[min(generation.spans[p][0] for p in group) : max(generation.spans[p][1] for p in group)]
        rows.append(
            GroundedModality(
                tuple(int(p) for p in group),
                text.strip(),
                cat,
                present,
                full,
                blank,
                without,
                language,
                obj,
                context,
                label,
                kind,
                evidence,
                drops,
            )
        )
    return rows, scorer.forwards


__all__ = [
    "LABELS",
    "MIXED",
    "GroundedModality",
    "PERCEPTION",
    "PRIOR",
    "ModalityReport",
    "ModalityThresholds",
    "TokenModality",
    "analyze_modality",
    "classify",
    "decompose",
    "evidence_prefix",
    "grounded_modality",
    "modality_from_explanation",
    "modality_from_probs",
    "reference_probs",
]
