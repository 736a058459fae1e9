"""Prompt-token attribution: image regions AND prompt words in one ordering.

The EAGLE objective (method.md §3) is extended to a joint feature set: ``n`` image regions
followed by ``m`` words of the prompt. A subset ``S`` of features defines

* an insertion input: the regions of ``S`` shown (fill elsewhere) and the prompt words
  of ``S`` kept (the other words ablated);
* a deletion input: the regions of ``S`` hidden and the prompt words of ``S`` ablated;

and ``F(S) = λ1 · mean_k p_k(insertion) + λ2 · (1 − mean_k p_k(deletion))`` as for regions
alone. Every search of :mod:`mllm_attr.search` that treats features as plain indices
(:data:`PROMPT_SEARCHES`) orders the joint set; the result ranks words and regions on one
scale ("circle" next to the circle's region). Searches that read the image's geometry
(``hierarchical``: colour groups and adjacent regions of the label map) would never score a
word, so they are refused.

Text-only models (:class:`~mllm_attr.adapters.text.TextAdapter`, what :func:`~mllm_attr.load_adapter`
returns for a causal LM with a chat template): the same objective with no image, ``n = 0``
and the ``m`` prompt words as the only features (``explain_prompt_tokens(adapter, prompt=...,
target=...)``, ``image=None``). A word is ablated as below (``"mask"`` by default), the target
tokens are chosen as for images, and the result is a :class:`PromptAttribution` with an empty
image and label map (:attr:`PromptAttribution.text_only`) that plots its words
(:func:`plot_prompt_words`) instead of a map.

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

How it is built (no copy of the image pipeline):

* scoring: :class:`JointScorer` is a :class:`~mllm_attr.adapters.base.Scorer` (same checks,
  batching and forward count); on the transformers path :class:`HFPromptScorer` is an
  :class:`~mllm_attr.adapters.hf.HFScorer` that maps kept words to ablated prompt tokens and
  scores through the scorer's hook
  :meth:`~mllm_attr.adapters.hf.HFScorer.score_regions_ablated`; the generic
  :class:`DeleteWordsScorer` uses the adapter's own scorers on shortened prompts;
* explaining: :class:`PromptTokenExplainer` is an :class:`~mllm_attr.Explainer` (segmenter or
  ``labels=`` user segments, budget check, answer and target, search, seed, settings) that
  swaps in the joint scorer, objective and result; :func:`explain_prompt_tokens` calls it;
* the result: :class:`PromptAttribution` shares its base
  (:class:`~mllm_attr.explanation.AttributionResult`: curves, AUCs, summary, save / load) with
  :class:`~mllm_attr.Explanation`. Its curves run over the fraction of FEATURES (every region
  and word weighs ``1 / (n + m)``), an explanation's over the fraction of image AREA, hence
  the names :meth:`PromptAttribution.feature_insertion_auc` /
  :meth:`~PromptAttribution.feature_deletion_auc`.

Words are runs of letters/digits (``\\w+``); punctuation marks are features only with
``include_punctuation=True``. On the transformers path a word's tokens are found from the
fast tokenizer's character offsets of the chat-formatted prompt, aligned with the
processor's ``input_ids`` (image placeholders expanded); a token that straddles two words
belongs to both.

Example:
    >>> attr = explain_prompt_tokens(adapter, image, prompt="What color is the circle?", target="all")  # doctest: +SKIP
    >>> attr.ranking()[:3]                                                                              # doctest: +SKIP
    >>> attr.save("out/"); PromptAttribution.load("out/")                                               # doctest: +SKIP
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..adapters.base import ModelAdapter, Scorer
from ..adapters.hf import HFAdapter, HFScorer
from ..adapters.text import NO_IMAGE, NO_REGIONS, TextAdapter, TextScorer, is_no_image
from ..explainer import Explainer, check_fast_path, make_scorer
from ..explanation import AttributionResult, versions
from ..image import ImageLike, LoadedImage
from ..mask import make_fill, resolve_fill
from ..objective import Objective
from ..search import IMAGE_ONLY_SEARCHES, SEARCHES, SearchResult, replay_cost, run_search
from ..segment import Segmentation, SegmenterLike
from ..targets import Answer, TargetLike, as_target, resolve
from ..types import Generation

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

    def to_dict(self) -> dict[str, Any]:
        """``{"text", "span", "token_positions"}`` with lists (JSON-ready)."""
        return {"text": self.text, "span": list(self.span), "token_positions": list(self.token_positions)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptWord:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a missing key or a value of the wrong type.
        """
        if not isinstance(d, dict) or not isinstance(d.get("text"), str):
            raise ValueError(f"a prompt word must be an object with a 'text' string; got {d!r}")
        span = d.get("span")
        toks = d.get("token_positions", [])

        def ints(xs: Any) -> bool:
            return isinstance(xs, list) and all(
                isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in xs
            )

        if not ints(span) or len(span) != 2:
            raise ValueError(f"prompt word {d['text']!r}: span must be [start, end]; got {span!r}")
        if not ints(toks):
            raise ValueError(f"prompt word {d['text']!r}: token_positions must be a list of integers; got {toks!r}")
        return cls(d["text"], (int(span[0]), int(span[1])), tuple(int(x) for x in toks))


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


def _check_text_ablation(text_ablation: Any) -> str | int:
    """A valid ``text_ablation``: a name of :data:`TEXT_ABLATIONS`, ``"auto"`` or an integer token id."""
    if isinstance(text_ablation, str):
        if text_ablation not in TEXT_ABLATIONS + ("auto",):
            raise ValueError(
                f"unknown text_ablation {text_ablation!r}; expected one of {list(TEXT_ABLATIONS) + ['auto']} "
                "or a token id"
            )
        return text_ablation
    if isinstance(text_ablation, (bool, np.bool_)) or not isinstance(text_ablation, (int, np.integer)):
        raise TypeError(f"text_ablation must be a name or an integer token id; got {text_ablation!r}")
    return int(text_ablation)


class JointScorer(Scorer):
    """A :class:`~mllm_attr.adapters.base.Scorer` that also ablates prompt words.

    :meth:`score` takes ``regions`` (``bool[B, n]``, regions shown) and ``words``
    (``bool[B, m]``, words kept) and returns ``float64[B, K]``. Everything else is the image
    scorer's: the region table gets the checks of
    :meth:`~mllm_attr.adapters.base.Scorer.score_regions`, rows are batched in ``batch_size``
    chunks with the same output checks, each row counts as one image in ``counter`` /
    ``forwards``, and ``score_regions`` scores with every word kept. The label map is registered
    with ``set_regions`` (the :class:`~mllm_attr.objective.Objective` does it).

    Subclasses set :attr:`words` and implement :meth:`_score_joint` (inputs already checked).
    """

    #: the ``m`` prompt-word features, in prompt order.
    words: list[PromptWord]

    @property
    def n_words(self) -> int:
        """Number of prompt-word features (``m``)."""
        return len(self.words)

    @property
    def n_regions(self) -> int | None:
        """Regions of the registered label map (0 for the empty map of a text-only model); ``None`` before."""
        if self.labels is None:
            return None
        return 0 if self.labels.size == 0 else int(self.labels.max()) + 1

    def score(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        """``regions``: ``bool[B, n]`` regions shown; ``words``: ``bool[B, m]`` words kept -> ``float64[B, K]``.

        Raises:
            RuntimeError: no label map registered.
            ValueError: a table of the wrong shape, or a non-finite score.
        """
        regions = self._region_table(regions, "score")
        words = np.asarray(words, dtype=bool)
        if words.ndim == 1:
            words = words[None]
        if words.shape != (len(regions), self.n_words):
            raise ValueError(
                f"word mask shape {words.shape}; expected {(len(regions), self.n_words)} (one column per prompt word)"
            )
        return self._score_joint(regions, words)

    @abc.abstractmethod
    def _score_joint(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Checked ``bool[B, n]`` / ``bool[B, m]`` tables -> ``float64[B, K]`` (batched and counted)."""


class DeleteWordsScorer(JointScorer):
    """Generic path: cut ablated words out of the prompt and score with the adapter's own scorer.

    Works with any :class:`~mllm_attr.adapters.base.ModelAdapter` whose scorer reads
    ``generation.prompt`` (all adapters of this package do). One inner scorer (from
    ``adapter.scorer``, with ``fast_path`` where it takes one) per distinct kept-word pattern;
    the forwards are counted here, once per row.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        image: np.ndarray,
        fill: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        words: Sequence[PromptWord],
        batch_size: int,
        *,
        fast_path: str | bool = "auto",
    ):
        super().__init__(image, fill, positions, batch_size)
        self.adapter = adapter
        self.generation = generation
        self.words = list(words)
        self.fast_path = check_fast_path(fast_path)
        self._scorers: dict[tuple[bool, ...], Scorer] = {}

    def prompt_for(self, words: Sequence[bool]) -> str:
        """The prompt with the words whose ``words`` entry is False cut out (see :func:`delete_words`)."""
        return delete_words(self.generation.prompt, self.words, words)

    def set_regions(self, labels: np.ndarray) -> None:
        """Register the label map here and on every inner scorer built so far."""
        super().set_regions(labels)
        for scorer in self._scorers.values():
            scorer.set_regions(labels)

    @property
    def fast_report(self) -> dict[str, Any]:
        """The fast-path report of the full-prompt scorer (every inner scorer probes its own)."""
        full = self._scorers.get(tuple(True for _ in self.words))
        report = getattr(full, "fast_report", None)
        if not isinstance(report, dict):
            return {"used": False, "reason": "no full-prompt scorer with a fast-path report"}
        return {**report, "prompt_variants": len(self._scorers)}

    def _inner(self, pattern: tuple[bool, ...]) -> Scorer:
        if pattern not in self._scorers:
            gen = dataclasses.replace(self.generation, prompt=self.prompt_for(pattern))
            scorer = make_scorer(
                self.adapter,
                self.image,
                gen,
                list(self.positions),
                fill=self.fill,
                batch_size=self.batch_size,
                fast_path=self.fast_path,
            )
            if self.labels is not None:
                scorer.set_regions(self.labels)
            self._scorers[pattern] = scorer
        return self._scorers[pattern]

    def _score_joint(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        n = regions.shape[1]
        # Region and word columns travel in one table so that the chunks keep them together.
        rows = np.concatenate([regions, words], axis=1)
        return self._chunked(rows, lambda chunk: self._by_pattern(chunk[:, :n], chunk[:, n:]))

    def _by_pattern(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        out = np.empty((len(regions), len(self.positions)))
        patterns: dict[tuple[bool, ...], list[int]] = {}
        for row, w in enumerate(words):
            patterns.setdefault(tuple(bool(x) for x in w), []).append(row)
        for pattern, rows in patterns.items():
            out[rows] = self._inner(pattern).score_regions(regions[rows])
        return out

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        return self._by_pattern(table, np.ones((len(table), self.n_words), dtype=bool))

    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        return self._inner(tuple(True for _ in self.words)).score_images(images)


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


def locate_prompt_words(
    adapter: HFAdapter | TextAdapter, prompt_ids: Sequence[int], prompt: str, words: Sequence[PromptWord]
) -> list[PromptWord]:
    """Fill in ``token_positions`` of each word in the processor's ``prompt_ids``.

    Raises:
        ValueError: the prompt is not found in the chat text, the tokenizer gives no offsets,
            a word has no token, or the tokenizer and processor sequences do not align.
    """
    chat = adapter.chat_text(prompt)
    start = chat.rfind(prompt)
    if start < 0:
        raise ValueError("the chat template changed the prompt text; cannot find its words")
    # As the processor tokenises it (HFAdapter.prompt_inputs): a template that writes the BOS
    # itself gets no second one from the tokenizer.
    bos = getattr(adapter.tokenizer, "bos_token", None)
    extra = {"add_special_tokens": False} if bos and chat.startswith(bos) else {}
    enc = adapter.tokenizer(chat, return_offsets_mapping=True, **extra)
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


class HFPromptScorer(JointScorer, HFScorer):
    """Transformers path: ablate words in place (token replacement or attention mask).

    An :class:`~mllm_attr.adapters.hf.HFScorer` (same text tensors, targets, fast path and
    checks) whose :meth:`score` maps the kept words of each row to the prompt tokens to ablate
    (:meth:`ablation_table`) and scores through
    :meth:`~mllm_attr.adapters.hf.HFScorer.score_regions_ablated`: only ``input_ids`` /
    ``attention_mask`` differ per row, so the sequence length, the image-token positions and
    the target logits' positions are those of the unablated input, and a row that keeps every
    word scores exactly as the plain ``HFScorer`` does.

    Args:
        adapter, image, fill, generation, positions, batch_size, fast_path: as for ``HFScorer``.
        words: the prompt words; their ``token_positions`` are located here
            (:func:`locate_prompt_words`).
        ablation: ``"mask"`` (attention mask), ``"pad"`` / ``"unk"`` or an integer token id.

    Raises:
        ValueError: the words' tokens cannot be located, or the tokenizer lacks the neutral token.
    """

    def __init__(
        self,
        adapter: HFAdapter,
        image: np.ndarray,
        fill: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        words: Sequence[PromptWord],
        batch_size: int,
        ablation: str | int = "mask",
        fast_path: bool | str = "auto",
    ):
        super().__init__(adapter, image, fill, generation, positions, batch_size, fast_path)
        _locate_in_place(self, adapter, generation.prompt, words, ablation)

    @property
    def inner(self) -> HFPromptScorer:
        """Deprecated: the scorer is an :class:`~mllm_attr.adapters.hf.HFScorer` itself (use its attributes)."""
        warnings.warn(
            "HFPromptScorer.inner is deprecated: HFPromptScorer is an HFScorer now; use its own attributes "
            "(scorer.text, scorer.target_ids, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self

    def ablation_table(self, words: np.ndarray) -> np.ndarray:
        """``bool[B, prompt_length]``: the prompt tokens ablated when only the words of ``words``
        (``bool[B, m]``) are kept (a token is ablated when any word it belongs to is)."""
        return _ablation_table(self._word_tokens, words)

    def _score_joint(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        return self.score_regions_ablated(regions, self.ablation_table(words), fill=self.neutral_id)


def _locate_in_place(
    scorer: HFPromptScorer | TextPromptScorer,
    adapter: HFAdapter | TextAdapter,
    prompt: str,
    words: Sequence[PromptWord],
    ablation: str | int,
) -> None:
    """Set the in-place ablation state of ``scorer``: :attr:`words` located in its prompt tokens,
    the ablation and its neutral token, and which prompt tokens each word covers."""
    ids = scorer.text["input_ids"][0, : scorer.prompt_length].tolist()
    scorer.words = locate_prompt_words(adapter, ids, prompt, words)
    scorer.ablation = ablation
    scorer.neutral_id = None if ablation == "mask" else _neutral_id(adapter.tokenizer, ablation)
    # Which prompt tokens each word covers (a token straddling two words belongs to both).
    scorer._word_tokens = np.zeros((len(scorer.words), scorer.prompt_length), dtype=bool)
    for j, w in enumerate(scorer.words):
        scorer._word_tokens[j, list(w.token_positions)] = True


def _ablation_table(word_tokens: np.ndarray, words: np.ndarray) -> np.ndarray:
    """``bool[B, prompt_length]`` ablated prompt tokens for the kept words ``words`` (``bool[B, m]``)."""
    words = np.atleast_2d(np.asarray(words, dtype=bool))
    return ((~words).astype(np.int64) @ word_tokens.astype(np.int64)) > 0


class TextPromptScorer(JointScorer, TextScorer):
    """Text-only path: the prompt words of a :class:`~mllm_attr.adapters.text.TextAdapter`'s
    answer, ablated in place exactly as :class:`HFPromptScorer` ablates them (attention mask,
    or a neutral token id), with no image: zero regions (region tables have no column).

    Scores through :meth:`~mllm_attr.adapters.text.TextScorer.score_ablated` (batched, counted,
    logits at the target positions only, float64 softmax there); a row that keeps every word
    scores exactly as the plain :class:`~mllm_attr.adapters.text.TextScorer` does.

    Args:
        adapter, generation, positions, batch_size: as for ``TextScorer``.
        words: the prompt words; their ``token_positions`` are located here
            (:func:`locate_prompt_words`).
        ablation: ``"mask"`` (attention mask), ``"pad"`` / ``"unk"`` or an integer token id.
    """

    ablation: str | int
    neutral_id: int | None

    def __init__(
        self,
        adapter: TextAdapter,
        generation: Generation,
        positions: Sequence[int],
        words: Sequence[PromptWord],
        batch_size: int,
        ablation: str | int = "mask",
    ):
        super().__init__(adapter, generation, positions, batch_size)
        _locate_in_place(self, adapter, generation.prompt, words, ablation)

    def ablation_table(self, words: np.ndarray) -> np.ndarray:
        """``bool[B, prompt_length]``: the prompt tokens ablated when only the words of ``words``
        (``bool[B, m]``) are kept (a token is ablated when any word it belongs to is)."""
        return _ablation_table(self._word_tokens, words)

    def _score_joint(self, regions: np.ndarray, words: np.ndarray) -> np.ndarray:
        return self.score_ablated(self.ablation_table(words), fill=self.neutral_id)


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
    fill: np.ndarray | None = None,
    text_ablation: str | int = "auto",
    batch_size: int | None = None,
    fast_path: str | bool = "auto",
) -> JointScorer:
    """The right :class:`JointScorer` for ``adapter`` and ``text_ablation`` (see module docstring).

    ``"auto"``: ``"mask"`` for a transformers adapter (multimodal or text-only), ``"delete"``
    otherwise. When the in-place path cannot find the words' tokens, it falls back to
    ``"delete"`` (logged). For a :class:`~mllm_attr.adapters.text.TextAdapter` ``image`` must
    be ``None`` (or the empty :data:`~mllm_attr.adapters.text.NO_IMAGE`): a
    :class:`TextPromptScorer` (or, for ``"delete"``, a :class:`DeleteWordsScorer`) with no regions.
    ``fast_path`` is that of :class:`~mllm_attr.Explainer` (``"auto"``, ``True``, ``False``).

    Raises:
        ValueError / TypeError: an unknown ``text_ablation`` or ``fast_path``, or an in-place
            ablation for an adapter that is not a transformers one.
    """
    _check_text_ablation(text_ablation)
    fast_path = check_fast_path(fast_path)
    bs = batch_size or adapter.default_batch_size()
    if isinstance(adapter, TextAdapter):  # no image: the prompt words are the only features
        if not is_no_image(image):
            raise ValueError(f"{adapter.name!r} is a text-only model: it takes no image (pass image=None)")
        mode = "mask" if text_ablation == "auto" else text_ablation
        if mode == "delete":
            return DeleteWordsScorer(adapter, NO_IMAGE, NO_IMAGE, generation, positions, words, bs, fast_path=fast_path)
        return TextPromptScorer(adapter, generation, positions, words, bs, ablation=mode)
    base = make_fill(image) if fill is None else fill
    is_hf = isinstance(adapter, HFAdapter)
    mode = ("mask" if is_hf else "delete") if text_ablation == "auto" else text_ablation
    if mode != "delete":
        if not is_hf:
            raise ValueError(
                f"text_ablation={text_ablation!r} needs a transformers adapter; "
                f"{type(adapter).__name__} supports 'delete'"
            )
        try:
            return HFPromptScorer(
                adapter, image, base, generation, positions, words, bs, ablation=mode, fast_path=fast_path
            )
        except ValueError as exc:
            if text_ablation != "auto":
                raise
            logger.warning("in-place text ablation unavailable (%s); deleting words from the prompt instead", exc)
    return DeleteWordsScorer(adapter, image, base, generation, positions, words, bs, fast_path=fast_path)


# --------------------------------------------------------------------------- objective


class JointObjective(Objective):
    """:class:`~mllm_attr.objective.Objective` over ``n`` regions followed by ``m`` prompt words.

    Feature ``f < n`` is region ``f`` of ``labels``; feature ``n + j`` is prompt word ``j``.
    """

    def __init__(
        self,
        scorer: JointScorer,
        labels: np.ndarray,
        *,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        max_forwards: int | None = None,
    ):
        if np.asarray(labels).size == 0:  # text-only: no image, zero regions (Objective counts labels.max() + 1)
            self._init_without_regions(scorer, lambda1, lambda2, max_forwards)
        else:
            super().__init__(scorer, labels, lambda1=lambda1, lambda2=lambda2, max_forwards=max_forwards)
        self.scorer: JointScorer = scorer
        self.n_image = self.n_regions
        self.n_words = scorer.n_words
        self.n_regions = self.n_image + self.n_words  # the searches order "regions" = features

    def _init_without_regions(
        self, scorer: JointScorer, lambda1: float, lambda2: float, max_forwards: int | None
    ) -> None:
        """:class:`~mllm_attr.objective.Objective`'s set-up (its checks and state) for the empty
        label map: run on a one-pixel map with a stand-in that registers nothing, then the
        region count is set to 0 and the empty map registered on the real scorer."""
        Objective.__init__(
            self,
            _Unregistered(),
            np.zeros((1, 1), np.int32),
            lambda1=lambda1,
            lambda2=lambda2,
            max_forwards=max_forwards,
        )
        self.scorer = scorer
        self.labels = NO_REGIONS
        self.n_regions = 0
        scorer.set_regions(NO_REGIONS)

    def _score(self, table: np.ndarray) -> np.ndarray:
        """Regions (first ``n_image`` columns) and prompt words (the rest) shown -> target probabilities."""
        return self.scorer.score(table[:, : self.n_image], table[:, self.n_image :])


class _Unregistered:
    """A scorer stand-in for :meth:`JointObjective._init_without_regions`: registers no label map."""

    def set_regions(self, labels: np.ndarray) -> None:
        """Nothing to register."""


# --------------------------------------------------------------------------- result


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"PromptAttribution.{old} is deprecated: its x axis is the fraction of FEATURES (regions and prompt "
        f"words), not of the image area as for Explanation.{old}; use PromptAttribution.{new}",
        DeprecationWarning,
        stacklevel=3,
    )


@dataclass(repr=False)  # the base's one-line repr, not one that prints every array
class PromptAttribution(AttributionResult):
    """A joint ordering of image regions and prompt words for generated tokens.

    Shares validation, ranks, curves, AUCs, scores, :meth:`summary`, :meth:`to_json` and
    :meth:`save` / :meth:`load` with :class:`~mllm_attr.explanation.Explanation`
    (:class:`~mllm_attr.explanation.AttributionResult`), with one difference in the curves:
    their x axis is the fraction of FEATURES revealed / removed (:attr:`x_axis`): after step
    ``t`` it is ``(t + 1) / (n + m)`` whatever the feature, a region of any size or a word,
    where an :class:`~mllm_attr.explanation.Explanation` advances by each region's share of
    the image area. The AUCs are therefore :meth:`feature_insertion_auc` /
    :meth:`feature_deletion_auc` (``feature_insertion_auc`` / ``feature_deletion_auc`` in
    :meth:`summary`), not comparable with an explanation's ``insertion_auc``.

    Attributes:
        image: ``uint8[H, W, 3]``; labels: ``int32[H, W]`` (``n`` regions).
        words: the ``m`` prompt-word features.
        ordering: ``int64[n + m]`` features, most important first (``f < n``: region ``f``;
            ``f >= n``: word ``f - n``).
        ins, dele: ``float64[n + m, K]`` per-token scores of each prefix; value: ``float64[n + m]``.
        p_full, p_blank: ``float64[K]`` with everything / nothing (no region, no word).
        generation, positions: the explained answer and token positions.
        forwards, seconds, settings, versions: bookkeeping.

    Example:
        >>> attr = explain_prompt_tokens(adapter, image, prompt="What color is the circle?")  # doctest: +SKIP
        >>> attr.rank_of_word("circle"), attr.feature_insertion_auc()                         # doctest: +SKIP
    """

    result_type: ClassVar[str] = "prompt_attribution"
    x_axis: ClassVar[str] = "fraction of features (image regions and prompt words)"
    auc_names: ClassVar[tuple[str, str]] = ("feature_insertion_auc", "feature_deletion_auc")
    _noun: ClassVar[str] = "prompt-word attribution"
    _meta_keys: ClassVar[tuple[str, ...]] = AttributionResult._meta_keys + ("words",)

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
        if isinstance(self.words, (str, bytes)) or not all(isinstance(w, PromptWord) for w in self.words):
            raise TypeError(f"PromptAttribution.words must be a list of PromptWord; got {self.words!r}")
        self.words = list(self.words)
        if np.asarray(self.labels).size == 0:
            self._check_text_only()
        else:
            super().__post_init__()

    def _check_text_only(self) -> None:
        """The checks of :meth:`AttributionResult.__post_init__` for a text-only attribution: no
        image (``uint8[0, 0, 3]``, label map ``int[0, 0]``), the features are the prompt words."""
        if not isinstance(self.generation, Generation):
            raise TypeError(f"PromptAttribution.generation must be a Generation; got {type(self.generation).__name__}")
        image, labels, ordering = (np.asarray(getattr(self, f)) for f in ("image", "labels", "ordering"))
        if image.dtype != np.uint8 or image.shape != (0, 0, 3):
            raise ValueError(
                f"a text-only PromptAttribution has no image (uint8[0, 0, 3]); got {image.dtype} {image.shape}"
            )
        if labels.shape != (0, 0) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"a text-only PromptAttribution has the empty label map int[0, 0]; got {labels.shape}")
        m, k = len(self.words), len(self.positions)
        if ordering.ndim != 1 or not np.issubdtype(ordering.dtype, np.integer):
            raise ValueError(f"PromptAttribution.ordering must be a 1-D integer array; got {ordering.dtype}")
        if m == 0 or sorted(ordering.tolist()) != list(range(m)):
            raise ValueError(f"PromptAttribution.ordering must contain each of the {m} prompt words exactly once")
        for f in self._float_fields:
            arr = np.asarray(getattr(self, f))
            want = (m, k) if f in ("ins", "dele") else (k,) if f in ("p_full", "p_blank") else (m,)
            if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
                raise ValueError(f"PromptAttribution.{f} must be a real numeric array; got {arr.dtype}")
            if arr.shape != want:
                raise ValueError(f"PromptAttribution.{f} has shape {arr.shape}; expected {want}")
            setattr(self, f, arr.astype(np.float64))
        n = len(self.generation)
        if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < n for p in self.positions):
            raise ValueError(f"PromptAttribution.positions {list(self.positions)} must be token positions in [0, {n})")
        self.image, self.labels, self.ordering = image, labels.astype(np.int32), ordering.astype(np.int64)

    @property
    def n_regions(self) -> int:
        """Number of image regions (0 for a text-only model: :attr:`text_only`)."""
        return 0 if np.asarray(self.labels).size == 0 else super().n_regions

    @property
    def text_only(self) -> bool:
        """True when there is no image (a text-only model): the features are the prompt words alone."""
        return self.n_regions == 0

    def _n_other_features(self) -> int:
        return len(self.words)

    def _count_error(self, n: int, labels: np.ndarray) -> str:
        regions = int(labels.max()) + 1 if labels.size else 0
        return (
            f"ordering has {n} features but the label map holds {regions} regions (labels "
            f"{np.unique(labels)[:8]}...) and there are {len(self.words)} prompt words"
        )

    @property
    def n_words(self) -> int:
        """Number of prompt-word features (``m``)."""
        return len(self.words)

    def feature_name(self, f: int) -> str:
        """``"region 3"`` or ``"word 'circle'"``."""
        f = int(f)
        if f < self.n_regions:
            return f"region {f}"
        return f"word {self.words[f - self.n_regions].text!r}"

    def word_ranks(self) -> list[tuple[str, int]]:
        """``(word, rank among all features)`` for every prompt word, in prompt order."""
        r = self.ranks()
        return [(w.text, int(r[self.n_regions + j])) for j, w in enumerate(self.words)]

    def _word_index(self, text: str, occurrence: int) -> int:
        hits = [j for j, w in enumerate(self.words) if w.text.lower() == text.lower()]
        if len(hits) < occurrence:
            raise ValueError(f"prompt word {text!r} (occurrence {occurrence}) not among {[w.text for w in self.words]}")
        return hits[occurrence - 1]

    def rank_of_word(self, text: str, occurrence: int = 1) -> int:
        """Rank (0-based, among all features) of the ``occurrence``-th prompt word ``text`` (case-insensitive)."""
        return int(self.ranks()[self.n_regions + self._word_index(text, occurrence)])

    def word_rank_among_words(self, text: str, occurrence: int = 1) -> int:
        """Rank (0-based) of the word among the prompt words only."""
        word_order = [f - self.n_regions for f in self.ordering if f >= self.n_regions]
        return word_order.index(self._word_index(text, occurrence))

    def region_ranks(self) -> np.ndarray:
        """``int64[n]``: rank among all features of each region."""
        return self.ranks()[: self.n_regions]

    def word_scores(self, *, rule: str = "evidence", token: int | None = None) -> np.ndarray:
        """``float64[m]``: attribution of each prompt word (its part of :meth:`feature_scores`)."""
        return self.feature_scores(rule=rule, token=token)[self.n_regions :]

    def ranking(self) -> list[dict[str, Any]]:
        """Features in order: ``{"rank", "kind" ("region"|"word"), "index", "name", "score"}``."""
        scores = self.feature_scores()
        out = []
        for rank, f in enumerate(self.ordering.tolist()):
            kind = "region" if f < self.n_regions else "word"
            idx = f if kind == "region" else f - self.n_regions
            out.append(
                {"rank": rank, "kind": kind, "index": idx, "name": self.feature_name(f), "score": float(scores[f])}
            )
        return out

    def table(self, top: int | None = None) -> str:
        """The joint ranking as text lines ``rank  kind  name  score``."""
        rows = self.ranking()[: top or None]
        return "\n".join(f"{r['rank']:>3}  {r['kind']:<6}  {r['name']:<20}  {r['score']:.3f}" for r in rows)

    # -- curves: the x axis is the fraction of FEATURES revealed / removed ---------------------
    def curve_x(self) -> np.ndarray:
        """``float64[n + m]``: ``(t + 1) / (n + m)``, the fraction of features after each step (unweighted)."""
        return np.arange(1, self.n_features + 1) / self.n_features

    def feature_insertion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: fraction of features revealed vs probability; ``token`` picks one token (default: mean)."""
        return self.curve("insertion", token)

    def feature_deletion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: fraction of features removed vs probability; ``token`` picks one token (default: mean)."""
        return self.curve("deletion", token)

    def feature_insertion_auc(self, token: int | None = None) -> float:
        """Area under :meth:`feature_insertion_curve` (higher is better)."""
        return self.auc("insertion", token)

    def feature_deletion_auc(self, token: int | None = None) -> float:
        """Area under :meth:`feature_deletion_curve` (lower is better)."""
        return self.auc("deletion", token)

    def insertion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Deprecated: :meth:`feature_insertion_curve` (the x axis is the fraction of features)."""
        _deprecated("insertion_curve", "feature_insertion_curve")
        return self.feature_insertion_curve(token)

    def deletion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Deprecated: :meth:`feature_deletion_curve` (the x axis is the fraction of features)."""
        _deprecated("deletion_curve", "feature_deletion_curve")
        return self.feature_deletion_curve(token)

    def insertion_auc(self, token: int | None = None) -> float:
        """Deprecated: :meth:`feature_insertion_auc` (the x axis is the fraction of features)."""
        _deprecated("insertion_auc", "feature_insertion_auc")
        return self.feature_insertion_auc(token)

    def deletion_auc(self, token: int | None = None) -> float:
        """Deprecated: :meth:`feature_deletion_auc` (the x axis is the fraction of features)."""
        _deprecated("deletion_auc", "feature_deletion_auc")
        return self.feature_deletion_auc(token)

    # -- display -------------------------------------------------------------------------------
    def plot(self, token: int | None = None, ax: Any = None, **kw: Any) -> Any:
        """The map over the greyed image (as :meth:`Explanation.plot <mllm_attr.Explanation.plot>`);
        for a text-only attribution, the prompt words with their scores and the curves
        (:func:`plot_prompt_words`; ``kw``: its options). Returns the figure."""
        if self.text_only:
            return plot_prompt_words(self, token=token, ax=ax, **kw)
        return super().plot(token, ax, **kw)

    # -- serialisation -------------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        return {"n_regions": self.n_regions, "n_words": self.n_words}

    def _write_files(self, into: Any, *, heatmap: bool) -> None:
        if not self.text_only:
            super()._write_files(into, heatmap=heatmap)
            return
        # No image to paint: heatmap.png shows the prompt words and the curves (plot_prompt_words).
        super()._write_files(into, heatmap=False)
        if heatmap:
            from ..viz import save_figure

            save_figure(plot_prompt_words(self), into / "heatmap.png", dpi=150)

    def _json_extra(self) -> dict[str, Any]:
        return {
            "prompt": self.generation.prompt,
            "words": [w.to_dict() for w in self.words],
            "ranking": self.ranking(),
            "word_ranks": self.word_ranks(),
        }

    @classmethod
    def _from_saved(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], common: dict[str, Any]
    ) -> PromptAttribution:
        words = meta["words"]
        if not isinstance(words, list):
            raise ValueError(f"words must be a list of prompt words; got {words!r}")
        return cls(**common, words=[PromptWord.from_dict(w) for w in words])


def plot_prompt_words(
    attr: PromptAttribution, *, token: int | None = None, rule: str = "evidence", ax: Any = None
) -> Any:
    """The prompt words of an attribution as bars of their scores (in prompt order, rank beside
    each) with the insertion / deletion curves over the fraction of features; the look of the
    package's maps (:data:`mllm_attr.viz.HEATMAP_CMAP`), titled with the explained words, the
    prompt, the answer and the AUCs. What a text-only attribution plots; works for any
    :class:`PromptAttribution` (its words only). ``ax``: draw the bars there (no curves panel).

    Returns:
        the figure.
    """
    from ..viz import DELETION_COLOR, INSERTION_COLOR, _new_figure, _style, get_cmap, heatmap_title

    scores = attr.word_scores(rule=rule, token=token)
    ranks = [r for _, r in attr.word_ranks()]
    labels = [w.text for w in attr.words]
    cmap = get_cmap()
    with _style():
        if ax is None:
            fig = _new_figure(7.2, max(2.6, 0.9 + 0.24 * len(labels)))
            bars_ax, curve_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1]})
        else:
            fig, bars_ax, curve_ax = ax.figure, ax, None
        y = np.arange(len(labels))
        bars_ax.barh(y, scores, color=[cmap(0.15 + 0.8 * float(v)) for v in scores], height=0.7)
        bars_ax.set_yticks(y)
        bars_ax.set_yticklabels(labels, fontsize=8)
        bars_ax.invert_yaxis()  # prompt order, top to bottom
        bars_ax.set_xlim(0, 1.12)
        for yi, (v, r) in enumerate(zip(scores, ranks)):
            bars_ax.text(float(v) + 0.02, yi, f"#{r + 1}", va="center", fontsize=7, color="#444444")
        bars_ax.set_xlabel("word score (its gain ÷ the top word's)" if rule == "evidence" else f"word score ({rule})")
        bars_ax.set_title(heatmap_title(attr, token), fontsize=8, loc="left")
        if curve_ax is not None:
            xi, yi_ = attr.curve("insertion", token)
            xd, yd = attr.curve("deletion", token)
            curve_ax.fill_between(xi, yi_, color=INSERTION_COLOR, alpha=0.12, linewidth=0)
            curve_ax.plot(xi, yi_, color=INSERTION_COLOR, label=f"insertion ({attr.auc('insertion', token):.3f})")
            curve_ax.plot(
                xd, yd, color=DELETION_COLOR, linestyle="--", label=f"deletion ({attr.auc('deletion', token):.3f})"
            )
            curve_ax.set_xlim(0, 1)
            curve_ax.set_ylim(0, max(1.0, float(np.nanmax(np.concatenate([yi_, yd]))) * 1.05))
            curve_ax.set_xlabel("fraction of prompt words inserted / deleted" if attr.text_only else attr.x_axis)
            curve_ax.set_ylabel("probability")
            curve_ax.grid(True, linewidth=0.4, alpha=0.4)
            curve_ax.legend(fontsize=7, frameon=False)
    return fig


# --------------------------------------------------------------------------- explainer


class PromptTokenExplainer(Explainer):
    """An :class:`~mllm_attr.Explainer` whose features are the image regions AND the prompt words.

    The segmentation (``segmenter``, ``labels=`` user segments), the budget check, the answer
    and target, the search and its seed, and the settings are the explainer's; the scorer is a
    :class:`JointScorer` (:func:`joint_scorer`), the objective a :class:`JointObjective`, and
    the result a :class:`PromptAttribution`.

    Args:
        adapter, n_regions, segmenter, segmenter_options, labels, fill, search_options,
            lambda1, lambda2, batch_size, max_forwards, seed, max_new_tokens, show_progress,
            fast_path: as for :class:`~mllm_attr.Explainer` (``n_regions`` defaults to 16:
            exact greedy costs ``(n + m)(n + m + 1)`` forwards).
        search: one of :data:`PROMPT_SEARCHES`.
        text_ablation: ``"auto"``, ``"mask"``, ``"pad"``, ``"unk"``, ``"delete"`` or a token id
            (see the module docstring).
        include_punctuation: punctuation marks are features too.

    Raises:
        ValueError: ``search`` reads the image geometry (``hierarchical``) and so cannot
            order prompt words (the message lists the searches that can); the options the
            :class:`~mllm_attr.Explainer` refuses.

    Example:
        >>> explainer = PromptTokenExplainer(adapter, n_regions=16)             # doctest: +SKIP
        >>> attr = explainer(image, prompt="What color is the circle?")         # doctest: +SKIP
    """

    explains_text_models: ClassVar[bool] = True

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        n_regions: int = 16,
        segmenter: SegmenterLike = "slic",
        segmenter_options: dict[str, Any] | None = None,
        labels: np.ndarray | None = None,
        fill: str = "black",
        baseline: str | None = None,
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
        fast_path: str | bool = "auto",
    ):
        fill = resolve_fill(fill, baseline, where="PromptTokenExplainer")
        if search in IMAGE_ONLY_SEARCHES:
            raise ValueError(
                f"search {search!r} orders image regions by their geometry (colour groups, adjacency) and "
                f"would never score a prompt word; prompt-word attribution supports {list(PROMPT_SEARCHES)}"
            )
        self.text_ablation = _check_text_ablation(text_ablation)
        if not isinstance(include_punctuation, (bool, np.bool_)):
            raise TypeError(f"include_punctuation must be True or False; got {include_punctuation!r}")
        self.include_punctuation = bool(include_punctuation)
        super().__init__(
            adapter,
            n_regions=n_regions,
            segmenter=segmenter,
            segmenter_options=segmenter_options,
            labels=labels,
            fill=fill,
            search=search,
            search_options=search_options,
            lambda1=lambda1,
            lambda2=lambda2,
            batch_size=batch_size,
            max_forwards=max_forwards,
            seed=seed,
            max_new_tokens=max_new_tokens,
            show_progress=show_progress,
            fast_path=fast_path,
        )

    def __call__(
        self,
        image: ImageLike | None = None,
        generation: Generation | None = None,
        *,
        target: TargetLike = "all",
        prompt: str | None = None,
    ) -> PromptAttribution:
        """Order the regions of ``image`` and the words of the prompt for ``target`` tokens of
        ``generation`` (generated from ``prompt`` when not given); see :meth:`Explainer.__call__`.

        For a text-only model (:class:`~mllm_attr.adapters.text.TextAdapter`) ``image`` is
        ``None`` and the prompt words are the only features (:meth:`explain_text`).

        Raises:
            ValueError: an image for a text-only model, or none for a multimodal one.
        """
        if self.text_only:
            if image is not None:
                raise ValueError(
                    f"{self.adapter.name!r} is a text-only model: it takes no image; explain its answer with "
                    "image=None (the prompt words are the features)"
                )
        elif image is None:
            raise ValueError(
                "an image is needed for a multimodal model; only a text-only model (load_adapter of a causal LM, "
                "a TextAdapter) explains prompt words without one"
            )
        return self._explain(image, generation, target=target, prompt=prompt)

    def explain_text(
        self, generation: Generation | None = None, *, target: TargetLike = "all", prompt: str | None = None
    ) -> PromptAttribution:
        """``self(None, generation, target=..., prompt=...)`` for a text-only model."""
        return self(None, generation, target=target, prompt=prompt)

    @property
    def text_only(self) -> bool:
        """True for a text-only model (:class:`~mllm_attr.adapters.text.TextAdapter`): no image, words only."""
        return isinstance(self.adapter, TextAdapter)

    explain = __call__

    def settings(self) -> dict[str, Any]:
        """The explainer's settings plus ``method = "eagle-joint-prompt"`` (``"eagle-text-prompt"``
        for a text-only model, whose image settings are ``None``), ``text_ablation`` and
        ``include_punctuation``."""
        out = super().settings()
        out.update(
            {
                "method": "eagle-joint-prompt",
                "text_ablation": self.text_ablation,
                "include_punctuation": self.include_punctuation,
            }
        )
        if self.text_only:
            out.update(
                {
                    "method": "eagle-text-prompt",
                    "n_regions_requested": None,
                    "segmenter": None,
                    "segmenter_options": {},
                    "segments_supplied": False,
                    "fill": None,
                }
            )
        return out

    # -- the text-only path: no image, the prompt words are the features ----------------------
    def _explain_steps(
        self,
        image: ImageLike | None,
        generation: Generation | None,
        *,
        target: TargetLike,
        prompt: str | None,
        segmentation: Segmentation | None,
        search: Any,
        n_threads: int,
    ) -> PromptAttribution:
        if not self.text_only:
            return super()._explain_steps(
                image,
                generation,
                target=target,
                prompt=prompt,
                segmentation=segmentation,
                search=search,
                n_threads=n_threads,
            )
        if segmentation is not None or search is not None:
            raise ValueError("replay of a given ordering is not supported for a text-only model")
        t0 = time.perf_counter()
        # Words and budget first: a prompt with no word or a too small budget fails before any model work.
        text = generation.prompt if isinstance(generation, Generation) else prompt
        if isinstance(text, str):
            m = len(self.words(text))
            needed = 2 + replay_cost(m - 1)
            if self.max_forwards is not None and self.max_forwards < needed:
                raise ValueError(
                    f"max_forwards={self.max_forwards} is too small for {m} prompt words: the full and empty "
                    f"prompts plus the insertion and deletion curves alone take {needed} forwards (2 x words); "
                    "raise max_forwards"
                )
        generation, positions = self._prepare_text(generation, target, prompt)
        batch_size = self.batch_size or self.adapter.default_batch_size()
        scorer = self._make_scorer(NO_IMAGE, generation, positions, fill=NO_IMAGE, batch_size=batch_size)
        objective = JointObjective(
            scorer, NO_REGIONS, lambda1=self.lambda1, lambda2=self.lambda2, max_forwards=self.max_forwards
        )
        result = run_search(
            self.search, objective, self.search_options, seed=self.seed, show_progress=self.show_progress
        )
        p_full, p_blank = objective.endpoints()
        settings = self.settings()
        settings.update(
            {
                "n_regions": 0,
                "batch_size": batch_size,
                "fast_path": {"requested": self.fast_path, "used": False, "reason": "text-only model: no image"},
                "adapter": self.adapter.describe(),
                "image": None,
                "target": repr(as_target(target)),
                "search_info": result.info,
                "forward_calls": scorer.counter.calls,
                "threads": {"requested": self.threads, "used": n_threads},
            }
        )
        return self._make_result(
            result,
            loaded=None,
            seg=None,
            generation=generation,
            positions=positions,
            p_full=p_full,
            p_blank=p_blank,
            scorer=scorer,
            settings=settings,
            seconds=time.perf_counter() - t0,
        )

    def _prepare_text(
        self, generation: Generation | None, target: TargetLike, prompt: str | None
    ) -> tuple[Generation, list[int]]:
        """Generate (or teacher-force) the answer with no image and resolve the target (as :meth:`prepare`)."""
        spec = as_target(target)
        if generation is None:
            if prompt is None:
                raise ValueError("pass either a Generation or a prompt to generate one")
            generation = self.adapter.generate(None, prompt, max_new_tokens=self.max_new_tokens)
        elif not isinstance(generation, Generation):
            raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
        elif generation.image_sha256 is not None:
            raise ValueError(
                "this Generation was made on an image; a text-only model explains answers it gave to a prompt alone "
                "(adapter.generate(prompt))"
            )
        if isinstance(spec, Answer):
            generation = self.adapter.teacher_force(None, generation.prompt, spec.text, generated_text=generation.text)
        return generation, resolve(generation, spec)

    def words(self, prompt: str) -> list[PromptWord]:
        """The word features of ``prompt`` (:func:`prompt_words` with ``include_punctuation``).

        Raises:
            ValueError: an empty prompt, or one with no word to attribute.
        """
        words = prompt_words(prompt, include_punctuation=self.include_punctuation)
        if not words:
            raise ValueError(f"the prompt {prompt!r} has no word to attribute")
        return words

    def _feature_count(self, seg: Segmentation, generation: Generation | None, prompt: str | None) -> tuple[int, str]:
        text = generation.prompt if isinstance(generation, Generation) else prompt if generation is None else None
        if not isinstance(text, str):
            return super()._feature_count(seg, generation, prompt)  # prepare() raises the right error
        m = len(self.words(text))
        n = seg.n_regions + m
        return n, f"{n} features ({seg.n_regions} regions + {m} prompt words)"

    def _make_scorer(
        self,
        image: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        *,
        fill: np.ndarray,
        batch_size: int,
    ) -> JointScorer:
        return joint_scorer(
            self.adapter,
            image,
            generation,
            positions,
            self.words(generation.prompt),
            fill=fill,
            text_ablation=self.text_ablation,
            batch_size=batch_size,
            fast_path=self.fast_path,
        )

    def _make_objective(self, scorer: Scorer, seg: Segmentation) -> JointObjective:
        if not isinstance(scorer, JointScorer):
            raise TypeError(f"expected a JointScorer; got {type(scorer).__name__}")
        return JointObjective(
            scorer, seg.labels, lambda1=self.lambda1, lambda2=self.lambda2, max_forwards=self.max_forwards
        )

    def _make_result(
        self,
        result: SearchResult,
        *,
        loaded: LoadedImage | None,
        seg: Segmentation | None,
        generation: Generation,
        positions: list[int],
        p_full: np.ndarray,
        p_blank: np.ndarray,
        scorer: Scorer,
        settings: dict[str, Any],
        seconds: float,
    ) -> PromptAttribution:
        if not isinstance(scorer, JointScorer):
            raise TypeError(f"expected a JointScorer; got {type(scorer).__name__}")
        used = "delete" if isinstance(scorer, DeleteWordsScorer) else getattr(scorer, "ablation", self.text_ablation)
        settings.update(
            {"n_words": scorer.n_words, "text_ablation": used, "text_ablation_requested": self.text_ablation}
        )
        out = PromptAttribution(
            image=NO_IMAGE.copy() if loaded is None else np.asarray(loaded.array),
            labels=NO_REGIONS.copy() if seg is None else seg.labels,
            words=list(scorer.words),
            ordering=result.ordering,
            ins=result.ins,
            dele=result.dele,
            value=result.value,
            p_full=np.asarray(p_full, dtype=np.float64),
            p_blank=np.asarray(p_blank, dtype=np.float64),
            generation=generation,
            positions=list(positions),
            forwards=scorer.forwards,
            seconds=seconds,
            settings=settings,
        )
        logger.info(
            "joint prompt attribution: %d regions + %d words, %d forwards, feature insertion AUC %.3f",
            out.n_regions,
            out.n_words,
            out.forwards,
            out.feature_insertion_auc(),
        )
        return out


def explain_prompt_tokens(
    adapter: ModelAdapter,
    image: ImageLike | None = None,
    generation: Generation | None = None,
    *,
    target: TargetLike = "all",
    prompt: str | None = None,
    n_regions: int = 16,
    segmenter: SegmenterLike = "slic",
    segmenter_options: dict[str, Any] | None = None,
    labels: np.ndarray | None = None,
    fill: str = "black",
    baseline: str | None = None,
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
    fast_path: str | bool = "auto",
) -> PromptAttribution:
    """Order image regions and prompt words jointly by the EAGLE objective.

    ``PromptTokenExplainer(adapter, **options)(image, generation, target=..., prompt=...)``:
    the arguments are those of :class:`~mllm_attr.Explainer` (``labels=`` user segments
    included) plus ``text_ablation`` and ``include_punctuation`` (see the module docstring).
    Exact greedy costs ``(n + m)(n + m + 1)`` forwards. ``search`` is one of :data:`PROMPT_SEARCHES`.

    For a text-only model (``load_adapter`` of a causal LM: a
    :class:`~mllm_attr.adapters.text.TextAdapter`) pass ``image=None``: the ``m`` prompt words
    are the only features (``m(m + 1)`` forwards for greedy), ablated as here (``"mask"`` by
    default); the image options do not apply. E.g.
    ``explain_prompt_tokens(adapter, prompt="What is the capital of France?", target="Paris")``.

    Returns:
        a :class:`PromptAttribution`.

    Raises:
        ValueError: ``search`` reads the image geometry (``hierarchical``) and so cannot
            order prompt words; the message lists the searches that can. ``max_forwards`` too
            small for the ``n + m`` features; the options the ``Explainer`` refuses.
    """
    fill = resolve_fill(fill, baseline, where="explain_prompt_tokens")
    explainer = PromptTokenExplainer(
        adapter,
        n_regions=n_regions,
        segmenter=segmenter,
        segmenter_options=segmenter_options,
        labels=labels,
        fill=fill,
        search=search,
        search_options=search_options,
        text_ablation=text_ablation,
        include_punctuation=include_punctuation,
        lambda1=lambda1,
        lambda2=lambda2,
        batch_size=batch_size,
        max_forwards=max_forwards,
        seed=seed,
        max_new_tokens=max_new_tokens,
        show_progress=show_progress,
        fast_path=fast_path,
    )
    return explainer(image, generation, target=target, prompt=prompt)


__all__ = [
    "PROMPT_SEARCHES",
    "TEXT_ABLATIONS",
    "DeleteWordsScorer",
    "HFPromptScorer",
    "JointObjective",
    "JointScorer",
    "PromptAttribution",
    "PromptTokenExplainer",
    "PromptWord",
    "delete_words",
    "explain_prompt_tokens",
    "TextPromptScorer",
    "joint_scorer",
    "locate_prompt_words",
    "plot_prompt_words",
    "prompt_words",
]
