"""Prompt-token attribution: image regions AND prompt words in one ordering.

The EAGLE objective (method.md §3) is extended to a joint feature set: ``n`` image regions
followed by ``m`` words of the prompt. A subset ``S`` of features defines

* an insertion input: the regions of ``S`` shown (baseline elsewhere) and the prompt words
  of ``S`` kept (the other words ablated);
* a deletion input: the regions of ``S`` hidden and the prompt words of ``S`` ablated;

and ``F(S) = λ1 · mean_k p_k(insertion) + λ2 · (1 − mean_k p_k(deletion))`` as for regions
alone. Every search of :mod:`mllm_attr.search` that treats features as plain indices
(:data:`PROMPT_SEARCHES`) orders the joint set; the result ranks words and regions on one
scale ("circle" next to the circle's region). Searches that read the image's geometry
(``hierarchical``: colour groups and adjacent regions of the label map) would never score a
word, so they are refused.

Text ablation (``text_ablation``):

* ``"mask"`` (default for transformers models): the word's tokens stay in place but are
  removed from attention (``attention_mask = 0``): a deletion that keeps the sequence
  length, so image-token positions and the target logits' positions stay valid;
* ``"pad"`` / ``"unk"`` / an integer token id: the word's token ids are replaced by that
  neutral token (pad falls back to unk when the tokenizer has no pad token);
* ``"delete"`` (the only option for non-transformers adapters, e.g. :class:`CallableAdapter`):
  the word is cut out of the prompt string and the model re-scored with the shorter prompt
  (one scorer per distinct set of kept words, so the processor runs once per pattern).

On the shipped shapes model the three agree: for "What color is the circle?" (30 held-out
scenes, 16 regions + 4 words, exact greedy) "circle" is the top prompt word in 30/30 with
``"mask"`` and ``"pad"`` and 29/30 with ``"delete"``, and the circle's region is among the top
two of all 20 features in 28-29/30. ``"mask"`` and ``"delete"`` give the same probabilities
within ~1e-4 on the tiny test models (``"mask"`` keeps the position ids of the later tokens).

Words are runs of letters/digits (``\\w+``); punctuation marks are features only with
``include_punctuation=True``. On the transformers path a word's tokens are found from the
fast tokenizer's character offsets of the chat-formatted prompt, aligned with the
processor's ``input_ids`` (image placeholders expanded); a token that straddles two words
belongs to both.

Example:
    >>> attr = explain_prompt_tokens(adapter, image, prompt="What color is the circle?", target="all")  # doctest: +SKIP
    >>> attr.ranking()[:3]                                                                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .. import metrics
from ..adapters.base import ModelAdapter, as_pil
from ..explanation import region_values, versions
from ..image import ImageLike
from ..mask import compose, make_baseline
from ..objective import Objective
from ..search import IMAGE_ONLY_SEARCHES, SEARCHES, run_search
from ..segment import segment
from ..targets import TargetLike
from ..types import ForwardCounter, Generation

if TYPE_CHECKING:  # pragma: no cover
    from ..adapters.hf import HFAdapter, HFScorer

logger = logging.getLogger(__name__)

#: Named text ablations (an integer token id is accepted too).
TEXT_ABLATIONS: tuple[str, ...] = ("mask", "pad", "unk", "delete")

#: Searches that can order the joint feature set (regions + prompt words).
PROMPT_SEARCHES: tuple[str, ...] = tuple(sorted(set(SEARCHES) - IMAGE_ONLY_SEARCHES))


@dataclass(frozen=True)
class PromptWord:
    """One prompt word used as a feature.

    Attributes:
        text: the word as written in the prompt.
        span: ``(start, end)`` character offsets in the prompt.
        token_positions: positions of its tokens in the model's ``input_ids`` (transformers
            path; empty for ``"delete"``).
    """

    text: str
    span: tuple[int, int]
    token_positions: tuple[int, ...] = ()


def prompt_words(prompt: str, *, include_punctuation: bool = False) -> list[PromptWord]:
    """Split a prompt into word features: ``\\w+`` runs (plus punctuation marks if asked)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"expected a non-empty prompt string; got {prompt!r}")
    pattern = r"\w+|[^\w\s]" if include_punctuation else r"\w+"
    return [PromptWord(m.group(0), (m.start(), m.end())) for m in re.finditer(pattern, prompt)]


def delete_words(prompt: str, words: Sequence[PromptWord], keep: Sequence[bool]) -> str:
    """The prompt with the words whose ``keep`` is False cut out (white space collapsed)."""
    out = []
    cursor = 0
    for w, k in zip(words, keep):
        if not k:
            out.append(prompt[cursor : w.span[0]])
            cursor = w.span[1]
    out.append(prompt[cursor:])
    text = "".join(out)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r" +([?.!,;:])", r"\1", text)
    return text.strip() or " "


# --------------------------------------------------------------------------- scorers


class JointScorer:
    """Scores (regions shown, words kept) pairs: ``score(bool[B, n], bool[B, m]) -> float64[B, K]``.

    :meth:`set_regions` registers the ``int32[H, W]`` label map the region columns refer to
    (the :class:`~mllm_attr.objective.Objective` does it). Attributes shared with
    :class:`~mllm_attr.adapters.base.Scorer` so that objectives and searches can use it:
    ``positions``, ``batch_size``, ``counter``, ``forwards``, ``image``.
    """

    def __init__(self, image: np.ndarray, baseline: np.ndarray, positions: Sequence[int], words: Sequence[PromptWord], batch_size: int):
        if image.shape != baseline.shape:
            raise ValueError(f"baseline shape {baseline.shape} differs from image shape {image.shape}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.image = image
        self.baseline = baseline
        self.positions = tuple(int(p) for p in positions)
        self.words = list(words)
        self.batch_size = int(batch_size)
        self.counter = ForwardCounter()
        self.seconds = 0.0
        self.labels: np.ndarray | None = None

    @property
    def forwards(self) -> int:
        """Images scored so far (``counter.images``)."""
        return self.counter.images

    @property
    def n_words(self) -> int:
        """Number of prompt-word features (``m``)."""
        return len(self.words)

    def set_regions(self, labels: np.ndarray) -> None:
        """Register the label map (``int32[H, W]``, the image's size)."""
        if labels.shape != self.image.shape[:2]:
            raise ValueError(f"label map shape {labels.shape} differs from image shape {self.image.shape[:2]}")
        self.labels = labels

    def score(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        """``regions``: ``bool[B, n]`` regions shown; ``words``: ``bool[B, m]`` words kept."""
        if self.labels is None:
            raise RuntimeError("call set_regions(labels) before score")
        regions = np.atleast_2d(np.asarray(regions, dtype=bool))
        words = np.atleast_2d(np.asarray(words, dtype=bool))
        n = int(self.labels.max()) + 1
        if regions.shape[1] != n:
            raise ValueError(f"region table has {regions.shape[1]} columns; the label map has {n} regions")
        if words.shape != (len(regions), self.n_words):
            raise ValueError(f"word mask shape {words.shape}; expected {(len(regions), self.n_words)}")
        t0 = time.perf_counter()
        out = []
        for start in range(0, len(regions), self.batch_size):
            r = regions[start : start + self.batch_size]
            w = words[start : start + self.batch_size]
            scores = np.asarray(self._score_batch(r, w), dtype=np.float64)
            if scores.shape != (len(r), len(self.positions)):
                raise RuntimeError(f"scorer returned shape {scores.shape}; expected {(len(r), len(self.positions))}")
            self.counter.add(len(r))
            out.append(scores)
        self.seconds += time.perf_counter() - t0
        if not out:
            return np.zeros((0, len(self.positions)))
        return np.concatenate(out, axis=0)

    def _score_batch(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class DeleteWordsScorer(JointScorer):
    """Generic path: cut ablated words out of the prompt and score with the adapter's own scorer.

    Works with any :class:`~mllm_attr.ModelAdapter` whose scorer reads ``generation.prompt``
    (all adapters of this package do). One inner scorer per distinct kept-word pattern.
    """

    def __init__(self, adapter: ModelAdapter, image, baseline, generation: Generation, positions, words, batch_size):
        super().__init__(image, baseline, positions, words, batch_size)
        self.adapter = adapter
        self.generation = generation
        self._scorers: dict[tuple[bool, ...], Any] = {}

    def prompt_for(self, words: Sequence[bool]) -> str:
        """The prompt with the words whose ``words`` entry is False cut out (see :func:`delete_words`)."""
        return delete_words(self.generation.prompt, self.words, words)

    def _inner(self, pattern: tuple[bool, ...]) -> Any:
        if pattern not in self._scorers:
            gen = dataclasses.replace(self.generation, prompt=self.prompt_for(pattern))
            scorer = self.adapter.scorer(
                self.image, gen, list(self.positions), baseline=self.baseline, batch_size=self.batch_size
            )
            scorer.set_regions(self.labels)
            self._scorers[pattern] = scorer
        return self._scorers[pattern]

    def _score_batch(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        out = np.empty((len(regions), len(self.positions)))
        patterns: dict[tuple[bool, ...], list[int]] = {}
        for row, w in enumerate(words):
            patterns.setdefault(tuple(bool(x) for x in w), []).append(row)
        for pattern, rows in patterns.items():
            out[rows] = self._inner(pattern).score_regions(regions[rows])
        return out


def _align(proc_ids: Sequence[int], tok_ids: Sequence[int]) -> list[int | None]:
    """Map tokenizer index -> processor index (None where unknown).

    First a forward walk in which the processor may repeat (expand) a token (LLaVA, Qwen
    image placeholders); if that fails, the longest common suffix (the prompt follows the
    image in every chat template here, however the processor expands the image).
    """
    mapping: list[int | None] = []
    i = 0
    try:
        for j, t in enumerate(tok_ids):
            while i < len(proc_ids) and proc_ids[i] != t:
                if i > 0 and proc_ids[i] == proc_ids[i - 1]:
                    i += 1  # an expanded placeholder (image tokens)
                    continue
                raise ValueError(j)
            if i >= len(proc_ids):
                raise ValueError(j)
            mapping.append(i)
            i += 1
        return mapping
    except ValueError:
        pass
    out: list[int | None] = [None] * len(tok_ids)
    i, j = len(proc_ids) - 1, len(tok_ids) - 1
    while i >= 0 and j >= 0 and proc_ids[i] == tok_ids[j]:
        out[j] = i
        i -= 1
        j -= 1
    return out


def locate_prompt_words(adapter: "HFAdapter", prompt_ids: Sequence[int], prompt: str, words: Sequence[PromptWord]) -> list[PromptWord]:
    """Fill in ``token_positions`` of each word in the processor's ``prompt_ids``.

    Raises:
        ValueError: the prompt is not found in the chat text, the tokenizer gives no offsets,
            a word has no token, or the tokenizer and processor sequences do not align.
    """
    chat = adapter.chat_text(prompt)
    start = chat.rfind(prompt)
    if start < 0:
        raise ValueError("the chat template changed the prompt text; cannot find its words")
    enc = adapter.tokenizer(chat, return_offsets_mapping=True)
    if "offset_mapping" not in enc:
        raise ValueError("the tokenizer gives no character offsets (a fast tokenizer is needed)")
    tok_ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    mapping = _align(list(prompt_ids), tok_ids)
    out = []
    for w in words:
        s, e = w.span[0] + start, w.span[1] + start
        toks = [j for j, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
        if not toks:
            raise ValueError(f"prompt word {w.text!r} has no token in the tokenised chat text")
        pos = [mapping[j] for j in toks]
        if any(p is None for p in pos):
            raise ValueError(f"cannot align the tokens of prompt word {w.text!r} with the processor's input_ids")
        out.append(dataclasses.replace(w, token_positions=tuple(int(p) for p in pos)))  # type: ignore[arg-type]
    return out


class HFPromptScorer(JointScorer):
    """Transformers path: ablate words in place (token replacement or attention mask).

    Uses an :class:`~mllm_attr.adapters.hf.HFScorer` for the text tensors (prompt plus
    teacher-forced answer), target ids and ``logits_to_keep``; only ``input_ids`` /
    ``attention_mask`` differ per row, so the sequence length, the image-token positions and
    the target logits' positions are those of the unablated input.
    """

    def __init__(self, adapter: "HFAdapter", image, baseline, generation: Generation, positions, words, batch_size, ablation: str | int = "mask"):
        from ..adapters.hf import HFScorer

        super().__init__(image, baseline, positions, words, batch_size)
        self.adapter = adapter
        self.inner: HFScorer = HFScorer(adapter, image, baseline, generation, positions, batch_size)
        ids = self.inner.text["input_ids"][0].tolist()
        prompt_len = len(ids) - max(self.positions)
        self.words = locate_prompt_words(adapter, ids[:prompt_len], generation.prompt, words)
        self.ablation = ablation
        self.neutral_id: int | None = None
        if ablation != "mask":
            self.neutral_id = _neutral_id(adapter.tokenizer, ablation)

    def set_regions(self, labels: np.ndarray) -> None:
        """Register the label map; the inner scorer prepares its pixel fast path when it can."""
        super().set_regions(labels)
        self.inner.set_regions(labels)

    def _pixels(self, regions: np.ndarray) -> dict[str, torch.Tensor]:
        inner = self.inner
        fast = getattr(inner, "fast", None)
        if fast is not None:
            out = {"pixel_values": inner._fast_pixels(fast, regions).to(self.adapter.dtype)}
            for k, v in fast["const"].items():
                out[k] = torch.cat([v] * len(regions), dim=0)
            return out
        images = [as_pil(compose(self.image, self.baseline, r[self.labels])) for r in regions]
        return self.adapter.image_inputs(images)

    @torch.inference_mode()
    def _score_batch(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        pixel_inputs = self._pixels(regions)
        batch = len(regions)
        inner = self.inner
        device = self.adapter.device
        inputs: dict[str, Any] = {k: v.repeat(batch, 1).clone() for k, v in inner.text.items()}
        for row in range(batch):
            for w, kept in zip(self.words, words[row]):
                if kept:
                    continue
                idx = list(w.token_positions)
                if self.ablation == "mask":
                    inputs["attention_mask"][row, idx] = 0
                else:
                    inputs["input_ids"][row, idx] = self.neutral_id
        inputs = {k: v.to(device) for k, v in inputs.items()}
        for key, value in pixel_inputs.items():
            if torch.is_floating_point(value):
                value = value.to(device=device, dtype=self.adapter.dtype)
            else:
                value = value.to(device)
            inputs[key] = value
        keep_logits = inner.logits_to_keep.to(device) if isinstance(inner.logits_to_keep, torch.Tensor) else inner.logits_to_keep
        out = self.adapter.model(**inputs, logits_to_keep=keep_logits, use_cache=False)
        n_keep = len(inner.rel) if isinstance(inner.logits_to_keep, torch.Tensor) else int(inner.logits_to_keep)
        logits = out.logits[:, -n_keep:, :].float()
        picked = logits[:, inner.rel.to(logits.device), :]
        logp = torch.log_softmax(picked, dim=-1)
        tgt = inner.target_ids.to(logits.device)
        probs = logp.gather(-1, tgt.view(1, -1, 1).expand(batch, -1, 1)).squeeze(-1).exp()
        return probs.double().cpu().numpy()


def _neutral_id(tokenizer: Any, ablation: str | int) -> int:
    if isinstance(ablation, (int, np.integer)) and not isinstance(ablation, bool):
        if not 0 <= int(ablation) < len(tokenizer):
            raise ValueError(f"text_ablation token id {ablation} is outside the vocabulary (0..{len(tokenizer) - 1})")
        return int(ablation)
    if ablation == "pad" and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if ablation in ("pad", "unk") and tokenizer.unk_token_id is not None:
        return int(tokenizer.unk_token_id)
    raise ValueError(f"the tokenizer has no {ablation!r} token; use text_ablation='mask' or a token id")


def joint_scorer(
    adapter: ModelAdapter,
    image: np.ndarray,
    generation: Generation,
    positions: Sequence[int],
    words: Sequence[PromptWord],
    *,
    baseline: np.ndarray | None = None,
    text_ablation: str | int = "auto",
    batch_size: int | None = None,
) -> JointScorer:
    """The right :class:`JointScorer` for ``adapter`` and ``text_ablation`` (see module docstring).

    ``"auto"``: ``"mask"`` for a transformers adapter, ``"delete"`` otherwise. When the
    in-place path cannot find the words' tokens, it falls back to ``"delete"`` (logged).
    """
    from ..adapters.hf import HFAdapter

    named = isinstance(text_ablation, str)
    if named and text_ablation not in TEXT_ABLATIONS + ("auto",):
        raise ValueError(f"unknown text_ablation {text_ablation!r}; expected one of {list(TEXT_ABLATIONS) + ['auto']} or a token id")
    if not named and (isinstance(text_ablation, bool) or not isinstance(text_ablation, (int, np.integer))):
        raise TypeError(f"text_ablation must be a name or an integer token id; got {text_ablation!r}")
    base = make_baseline(image) if baseline is None else baseline
    bs = batch_size or adapter.default_batch_size()
    is_hf = isinstance(adapter, HFAdapter)
    mode = ("mask" if is_hf else "delete") if text_ablation == "auto" else text_ablation
    if mode != "delete":
        if not is_hf:
            raise ValueError(
                f"text_ablation={text_ablation!r} needs a transformers adapter; {type(adapter).__name__} supports 'delete'"
            )
        try:
            return HFPromptScorer(adapter, image, base, generation, positions, words, bs, ablation=mode)
        except ValueError as exc:
            if text_ablation != "auto":
                raise
            logger.warning("in-place text ablation unavailable (%s); deleting words from the prompt instead", exc)
    return DeleteWordsScorer(adapter, image, base, generation, positions, words, bs)


# --------------------------------------------------------------------------- objective


class JointObjective(Objective):
    """:class:`~mllm_attr.objective.Objective` over ``n`` regions followed by ``m`` prompt words.

    Feature ``f < n`` is region ``f`` of ``labels``; feature ``n + j`` is prompt word ``j``.
    """

    def __init__(self, scorer: JointScorer, labels: np.ndarray, *, lambda1: float = 1.0, lambda2: float = 1.0, max_forwards: int | None = None):
        super().__init__(scorer, labels, lambda1=lambda1, lambda2=lambda2, max_forwards=max_forwards)  # type: ignore[arg-type]
        self.n_image = self.n_regions
        self.n_words = scorer.n_words
        self.n_regions = self.n_image + self.n_words  # the searches order "regions" = features

    def _score(self, table: np.ndarray) -> np.ndarray:
        """Regions (first ``n_image`` columns) and prompt words (the rest) shown -> target probabilities."""
        return self.scorer.score(table[:, : self.n_image], table[:, self.n_image :])  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- result


@dataclass
class PromptAttribution:
    """A joint ordering of image regions and prompt words for generated tokens.

    Attributes:
        image: ``uint8[H, W, 3]``; labels: ``int32[H, W]`` (``n`` regions).
        words: the ``m`` prompt-word features.
        ordering: ``int64[n + m]`` features, most important first (``f < n``: region ``f``;
            ``f >= n``: word ``f - n``).
        ins, dele: ``float64[n + m, K]`` per-token scores of each prefix; value: ``float64[n + m]``.
        p_full, p_blank: ``float64[K]`` with everything / nothing (no region, no word).
        generation, positions: the explained answer and token positions.
        forwards, seconds, settings, versions: bookkeeping.
    """

    image: np.ndarray
    labels: np.ndarray
    words: list[PromptWord]
    ordering: np.ndarray
    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray
    p_full: np.ndarray
    p_blank: np.ndarray
    generation: Generation
    positions: list[int]
    forwards: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)

    def __post_init__(self) -> None:
        n = self.n_features
        k = len(self.positions)
        for name, want in (("ins", (n, k)), ("dele", (n, k)), ("value", (n,)), ("p_full", (k,)), ("p_blank", (k,))):
            got = tuple(getattr(self, name).shape)
            if got != want:
                raise ValueError(f"PromptAttribution.{name} has shape {got}; expected {want}")
        if sorted(self.ordering.tolist()) != list(range(n)):
            raise ValueError(f"ordering must hold each of the {n} features once")

    @property
    def n_regions(self) -> int:
        """Number of image regions (``n``): the largest label plus one."""
        return int(self.labels.max()) + 1

    @property
    def n_words(self) -> int:
        """Number of prompt-word features (``m``)."""
        return len(self.words)

    @property
    def n_features(self) -> int:
        """Total number of features, regions plus words (``n + m``)."""
        return self.n_regions + self.n_words

    def feature_name(self, f: int) -> str:
        """``"region 3"`` or ``"word 'circle'"``."""
        f = int(f)
        if f < self.n_regions:
            return f"region {f}"
        return f"word {self.words[f - self.n_regions].text!r}"

    def ranks(self) -> np.ndarray:
        """``int64[n + m]``: 0-based rank of each feature (0 = most important)."""
        r = np.empty(self.n_features, dtype=np.int64)
        r[self.ordering] = np.arange(self.n_features)
        return r

    def word_ranks(self) -> list[tuple[str, int]]:
        """``(word, rank among all features)`` for every prompt word, in prompt order."""
        r = self.ranks()
        return [(w.text, int(r[self.n_regions + j])) for j, w in enumerate(self.words)]

    def rank_of_word(self, text: str, occurrence: int = 1) -> int:
        """Rank (0-based, among all features) of the ``occurrence``-th prompt word ``text`` (case-insensitive)."""
        hits = [j for j, w in enumerate(self.words) if w.text.lower() == text.lower()]
        if len(hits) < occurrence:
            raise ValueError(f"prompt word {text!r} (occurrence {occurrence}) not among {[w.text for w in self.words]}")
        return int(self.ranks()[self.n_regions + hits[occurrence - 1]])

    def word_rank_among_words(self, text: str, occurrence: int = 1) -> int:
        """Rank (0-based) of the word among the prompt words only."""
        word_order = [f - self.n_regions for f in self.ordering if f >= self.n_regions]
        hits = [j for j, w in enumerate(self.words) if w.text.lower() == text.lower()]
        if len(hits) < occurrence:
            raise ValueError(f"prompt word {text!r} (occurrence {occurrence}) not among {[w.text for w in self.words]}")
        return word_order.index(hits[occurrence - 1])

    def region_ranks(self) -> np.ndarray:
        """``int64[n]``: rank among all features of each region."""
        return self.ranks()[: self.n_regions]

    def feature_scores(self, *, rule: str = "evidence") -> np.ndarray:
        """``float64[n + m]`` in ``[0, 1]``, strictly decreasing with rank
        (:func:`~mllm_attr.explanation.region_values`: ``"evidence"`` or ``"reference"``)."""
        lam1 = float(self.settings.get("lambda1", 1.0))
        lam2 = float(self.settings.get("lambda2", 1.0))
        f0 = lam1 * float(self.p_blank.mean()) + lam2 * (1.0 - float(self.p_full.mean()))
        return region_values(self.ordering, self.value, f0, rule)

    def word_scores(self, *, rule: str = "evidence") -> np.ndarray:
        """``float64[m]``: attribution of each prompt word."""
        return self.feature_scores(rule=rule)[self.n_regions :]

    def region_scores(self, *, rule: str = "evidence") -> np.ndarray:
        """``float64[n]``: attribution of each region."""
        return self.feature_scores(rule=rule)[: self.n_regions]

    def saliency(self, *, rule: str = "evidence") -> np.ndarray:
        """``float32[H, W]``: the regions' part of the joint attribution."""
        return self.region_scores(rule=rule)[self.labels].astype(np.float32)

    def ranking(self) -> list[dict[str, Any]]:
        """Features in order: ``{"rank", "kind" ("region"|"word"), "index", "name", "score"}``."""
        scores = self.feature_scores()
        out = []
        for rank, f in enumerate(self.ordering.tolist()):
            kind = "region" if f < self.n_regions else "word"
            idx = f if kind == "region" else f - self.n_regions
            out.append({"rank": rank, "kind": kind, "index": idx, "name": self.feature_name(f), "score": float(scores[f])})
        return out

    # -- curves: the x axis is the fraction of features revealed / removed -------------------
    def _tok(self, arr: np.ndarray, token: int | None) -> np.ndarray:
        return arr.mean(axis=-1) if token is None else arr[..., token]

    def _x(self) -> np.ndarray:
        return np.arange(1, self.n_features + 1) / self.n_features

    def insertion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: fraction of features revealed vs probability; ``token`` picks one token (default: mean)."""
        return metrics.insertion_curve(self._x(), self._tok(self.ins, token), float(self._tok(self.p_blank, token)))

    def deletion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: fraction of features removed vs probability; ``token`` picks one token (default: mean)."""
        return metrics.deletion_curve(self._x(), self._tok(self.dele, token), float(self._tok(self.p_full, token)))

    def insertion_auc(self, token: int | None = None) -> float:
        """Area under :meth:`insertion_curve` (higher is better)."""
        return metrics.auc(*self.insertion_curve(token))

    def deletion_auc(self, token: int | None = None) -> float:
        """Area under :meth:`deletion_curve` (lower is better)."""
        return metrics.auc(*self.deletion_curve(token))

    def table(self, top: int | None = None) -> str:
        """The joint ranking as text lines ``rank  kind  name  score``."""
        rows = self.ranking()[: top or None]
        return "\n".join(f"{r['rank']:>3}  {r['kind']:<6}  {r['name']:<20}  {r['score']:.3f}" for r in rows)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the answer, prompt words, joint ranking, AUCs, endpoints and bookkeeping."""
        return {
            "generated_text": self.generation.text,
            "prompt": self.generation.prompt,
            "target_positions": list(self.positions),
            "target_tokens": [self.generation.tokens[p] for p in self.positions],
            "n_regions": self.n_regions,
            "words": [{"text": w.text, "span": list(w.span), "token_positions": list(w.token_positions)} for w in self.words],
            "ranking": self.ranking(),
            "word_ranks": self.word_ranks(),
            "insertion_auc": self.insertion_auc(),
            "deletion_auc": self.deletion_auc(),
            "p_full": self.p_full.tolist(),
            "p_blank": self.p_blank.tolist(),
            "forwards": int(self.forwards),
            "seconds": float(self.seconds),
            "settings": self.settings,
            "versions": self.versions,
        }


def explain_prompt_tokens(
    adapter: ModelAdapter,
    image: ImageLike,
    generation: Generation | None = None,
    *,
    target: TargetLike = "all",
    prompt: str | None = None,
    n_regions: int = 16,
    segmenter: str = "slic",
    segmenter_options: dict[str, Any] | None = None,
    baseline: str = "black",
    search: str = "greedy",
    search_options: dict[str, Any] | None = None,
    text_ablation: str | int = "auto",
    include_punctuation: bool = False,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    batch_size: int | None = None,
    max_forwards: int | None = None,
    seed: int = 0,
    max_new_tokens: int = 64,
    show_progress: bool = False,
) -> PromptAttribution:
    """Order image regions and prompt words jointly by the EAGLE objective.

    Arguments are those of :class:`~mllm_attr.Explainer` plus ``text_ablation`` and
    ``include_punctuation`` (see the module docstring). Exact greedy costs
    ``(n + m)(n + m + 1)`` forwards. ``search`` is one of :data:`PROMPT_SEARCHES`.

    Returns:
        a :class:`PromptAttribution`.

    Raises:
        ValueError: ``search`` reads the image geometry (``hierarchical``) and so cannot
            order prompt words; the message lists the searches that can.
    """
    from ..explainer import Explainer

    if search in IMAGE_ONLY_SEARCHES:
        raise ValueError(
            f"search {search!r} orders image regions by their geometry (colour groups, adjacency) and "
            f"would never score a prompt word; prompt-word attribution supports {list(PROMPT_SEARCHES)}"
        )
    t0 = time.perf_counter()
    # The Explainer validates the shared options and resolves the target the same way.
    ex = Explainer(
        adapter,
        n_regions=n_regions,
        segmenter=segmenter,
        segmenter_options=segmenter_options,
        baseline=baseline,
        search=search,
        search_options=search_options,
        lambda1=lambda1,
        lambda2=lambda2,
        batch_size=batch_size,
        max_forwards=max_forwards,
        seed=seed,
        max_new_tokens=max_new_tokens,
        show_progress=show_progress,
    )
    loaded, generation, positions = ex.prepare(image, generation, target, prompt)
    arr = loaded.array
    words = prompt_words(generation.prompt, include_punctuation=include_punctuation)
    if not words:
        raise ValueError(f"the prompt {generation.prompt!r} has no word to attribute")
    seg = segment(arr, ex.n_regions, ex.segmenter, **ex.segmenter_options)
    base = make_baseline(arr, ex.baseline)
    bs = ex.batch_size or adapter.default_batch_size()
    scorer = joint_scorer(adapter, arr, generation, positions, words, baseline=base, text_ablation=text_ablation, batch_size=bs)
    objective = JointObjective(scorer, seg.labels, lambda1=ex.lambda1, lambda2=ex.lambda2, max_forwards=ex.max_forwards)
    result = run_search(ex.search, objective, ex.search_options, seed=seed, show_progress=show_progress)
    p_full, p_blank = objective.endpoints()
    settings = ex.settings()
    settings.update(
        {
            "method": "eagle-joint-prompt",
            "n_regions": seg.n_regions,
            "n_words": len(words),
            "text_ablation": "delete" if isinstance(scorer, DeleteWordsScorer) else getattr(scorer, "ablation", text_ablation),
            "include_punctuation": include_punctuation,
            "batch_size": bs,
            "adapter": adapter.describe(),
            "search_info": result.info,
        }
    )
    out = PromptAttribution(
        image=np.asarray(arr),
        labels=seg.labels,
        words=list(scorer.words),
        ordering=result.ordering,
        ins=result.ins,
        dele=result.dele,
        value=result.value,
        p_full=np.asarray(p_full, dtype=np.float64),
        p_blank=np.asarray(p_blank, dtype=np.float64),
        generation=generation,
        positions=positions,
        forwards=scorer.forwards,
        seconds=time.perf_counter() - t0,
        settings=settings,
    )
    logger.info("joint prompt attribution: %d regions + %d words, %d forwards", seg.n_regions, len(words), out.forwards)
    return out


__all__ = [
    "PROMPT_SEARCHES",
    "TEXT_ABLATIONS",
    "DeleteWordsScorer",
    "HFPromptScorer",
    "JointObjective",
    "JointScorer",
    "PromptAttribution",
    "PromptWord",
    "delete_words",
    "explain_prompt_tokens",
    "joint_scorer",
    "locate_prompt_words",
    "prompt_words",
]
