"""Which generated tokens to explain.

A target is a small value: a position or list of positions, a word or phrase
(matched on word boundaries: ``"cat"`` never matches inside ``"catalog"``), all
tokens, or a counterfactual :class:`Answer` the model did not give (all of its tokens, or a
word / positions inside it: ``Answer("A dog on a sofa", target="dog")``). Plain strings
and ints are accepted and converted by :func:`as_target`.

>>> resolve(generation, "circle")            # doctest: +SKIP
[3]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from .types import Generation


class TargetNotFoundError(ValueError):
    """The requested target does not occur in the generated answer."""


@dataclass(frozen=True)
class Positions:
    """Explicit 0-based indices into the generated tokens (negative counts from the end)."""

    indices: tuple[int, ...]


@dataclass(frozen=True)
class Word:
    """A word or phrase of the answer: every token overlapping its ``occurrence``-th match."""

    text: str
    occurrence: int = 1
    case_sensitive: bool = False


@dataclass(frozen=True)
class AllTokens:
    """Every generated token (sentence level); EOS only when ``include_eos``."""

    include_eos: bool = False


@dataclass(frozen=True)
class Answer:
    """A counterfactual answer text, teacher-forced in place of the generated one.

    By default all of its tokens are explained (e.g. explain ``"No"`` where the model said
    ``"Yes"``). ``target`` selects tokens INSIDE the teacher-forced answer instead: a word or
    phrase (``str`` / :class:`Word`, matched on word boundaries), position(s) into the answer's
    tokens (``int`` / list / :class:`Positions`), or :class:`AllTokens`. It is resolved after
    teacher forcing, against the answer's own tokens.

    Example:
        >>> Answer("A dog on a sofa", target="dog")     # explain "dog" in a forced answer  # doctest: +SKIP
        >>> Answer("red circle", target=Word("circle"))  # the same, explicit             # doctest: +SKIP
    """

    text: str
    target: "TargetLike | None" = None

    def __post_init__(self) -> None:
        if self.target is None:
            return
        if isinstance(self.target, Answer):
            raise TypeError("Answer.target selects tokens inside the answer; it cannot be another Answer")
        # Normalise "dog" / 3 / [3, 4] to a target value (hashable, with a readable repr).
        object.__setattr__(self, "target", as_target(self.target))


Target = Union[Positions, Word, AllTokens, Answer]
TargetLike = Union[Target, int, str, Sequence[int]]


def as_target(spec: TargetLike) -> Target:
    """Normalise a user target spec: ``3``, ``[3, 4]``, ``"all"``, ``"circle"`` or a target value."""
    if isinstance(spec, (Positions, Word, AllTokens, Answer)):
        return spec
    if isinstance(spec, bool):
        raise TypeError(f"expected a target (int, list of ints, word, 'all' or Answer); got {spec!r}")
    if isinstance(spec, int):
        return Positions((spec,))
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("target word is empty; expected a word or phrase of the generated answer")
        if spec == "all":
            return AllTokens()
        return Word(spec)
    if isinstance(spec, Sequence) and spec and all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
        return Positions(tuple(int(i) for i in spec))
    raise TypeError(
        f"expected a target: a token index, a list of indices, a word or phrase, 'all', or Answer(text); got {spec!r}"
    )


def token_spans(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Character span of each token in the decoded text, by incremental decoding.

    ``decode`` must skip special tokens. Incremental decoding handles tokenizers
    whose pieces carry their leading space (SentencePiece, byte-level BPE).
    """
    text = decode(list(ids))
    spans: list[tuple[int, int]] = []
    prev = 0
    for i in range(len(ids)):
        cur = len(decode(list(ids[: i + 1])))
        cur = min(max(cur, prev), len(text))
        spans.append((prev, cur))
        prev = cur
    return text, spans


def _not_found(generation: Generation, what: str) -> TargetNotFoundError:
    where = "the teacher-forced answer" if getattr(generation, "counterfactual", False) else "the generated answer"
    return TargetNotFoundError(f"{what} in {where} {generation.text!r}; its tokens are: {generation.describe_tokens()}")


def resolve(generation: Generation, target: TargetLike) -> list[int]:
    """Return the sorted 0-based token positions that ``target`` selects.

    Raises:
        TargetNotFoundError: the word is absent, or an index is out of range; the message
            shows the generated text and its tokens.
    """
    t = as_target(target)
    n = len(generation)
    if n == 0:
        raise TargetNotFoundError(f"the model generated no tokens for prompt {generation.prompt!r}; nothing to explain")
    if isinstance(t, Positions):
        out = []
        for i in t.indices:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                raise _not_found(generation, f"token index {i} is out of range (0..{n - 1})")
            out.append(j)
        return sorted(set(out))
    if isinstance(t, AllTokens):
        out = [i for i in range(n) if t.include_eos or not generation.special[i]]
        if not out:
            raise _not_found(generation, "no non-special token")
        return out
    if isinstance(t, Answer):
        # The explainer teacher-forces the answer first; then every token is the target,
        # or the tokens that ``t.target`` selects inside it.
        if t.target is None:
            return list(range(n))
        return resolve(generation, t.target)
    if isinstance(t, Word):
        if not isinstance(t.text, str):
            raise TypeError(f"Word.text must be a word or phrase (str); got {type(t.text).__name__} {t.text!r}")
        if not t.text.strip():
            raise ValueError("target word is empty; expected a word or phrase of the generated answer")
        if isinstance(t.occurrence, bool) or not hasattr(t.occurrence, "__index__"):
            raise TypeError(f"Word.occurrence must be an integer >= 1; got {t.occurrence!r}")
        if t.occurrence < 1:
            raise ValueError(f"occurrence must be >= 1; got {t.occurrence}")
        words = t.text.strip()
        # Word boundaries on both sides; inner whitespace of a phrase matches any whitespace run.
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words.split()) + r"(?!\w)"
        flags = 0 if t.case_sensitive else re.IGNORECASE
        matches = list(re.finditer(pattern, generation.text, flags))
        if len(matches) < t.occurrence:
            found = f"found {len(matches)} time(s)" if matches else "not found"
            raise _not_found(generation, f"target {words!r} (occurrence {t.occurrence}) {found}")
        m = matches[t.occurrence - 1]
        out = [
            i
            for i, (s, e) in enumerate(generation.spans)
            if e > s and s < m.end() and e > m.start() and not generation.special[i]
        ]
        if not out:
            raise _not_found(generation, f"target {words!r} matched text but no token")
        return out
    raise TypeError(f"unsupported target {t!r}")
