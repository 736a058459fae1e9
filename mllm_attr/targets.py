"""Which generated tokens to explain.

A target is a small value: a position or list of positions, a word or phrase, all tokens,
or a counterfactual :class:`Answer` the model did not give (all of its tokens, or a word /
positions inside it: ``Answer("A dog on a sofa", target="dog")``). Plain strings and ints
are accepted and converted by :func:`as_target`.

>>> resolve(generation, "circle")            # doctest: +SKIP
[3]

Token spans on real tokenizers
    :func:`token_spans` gives every generated token the characters of the decoded answer
    that its BYTES belong to. Byte-level BPE (Qwen) and SentencePiece byte fallback
    (Llama / LLaVA ``<0xNN>``, Gemma) split rare characters (emoji, rare CJK, some Greek or
    accented letters) into several tokens that each hold part of one character's UTF-8
    bytes; each of them gets that whole character's span, so neighbouring tokens may share
    a character, and a token whose bytes run over two characters spans both. Spans are
    found from ids alone, by decoding prefixes: the characters a prefix decodes to that the
    full answer starts with are complete; a trailing incomplete character (U+FFFD) belongs
    to the token(s) still contributing to it. A token that decodes to nothing (a skipped
    special token) gets an empty span.

Word and phrase matching
    A word target selects every non-special token whose span overlaps its match, so all
    sub-tokens of a multi-byte word are selected. Matching is case-insensitive unless
    ``Word(case_sensitive=True)``; the words of a phrase match across any run of white space.
    For scripts written with spaces (Latin, Greek, Cyrillic, Arabic, digits ...) a match
    never starts or ends inside another word: ``"cat"`` matches neither ``"catalog"`` nor
    ``"cats"``, ``"bus"`` not ``"busy"``, ``"4"`` not ``"42"``. For scripts written without
    spaces between words (Han, Hiragana, Katakana, Bopomofo, Thai, Lao, Khmer, Myanmar,
    Tibetan) and for Hangul (whose particles attach to the noun without a space:
    ``"고양이가"``), a query edge made of such characters matches any run of the same
    characters: ``"沙发"`` matches inside ``"红色沙发上"`` and ``"cat"`` matches in ``"一只cat"``.
    A match never splits a user-perceived character (grapheme cluster): ``"👍"`` does not
    match inside ``"👍🏽"``, ``"👩"`` not inside the family ``"👨‍👩‍👧"``, ``"🇷🇩"`` not
    across the flags ``"🇫🇷🇩🇪"``, ``"e"`` not inside ``"e\\u0301"``. Text is compared as
    given (no Unicode normalisation).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    target: TargetLike | None = None

    def __post_init__(self) -> None:
        if self.target is None:
            return
        if isinstance(self.target, Answer):
            raise TypeError("Answer.target selects tokens inside the answer; it cannot be another Answer")
        # Normalise "dog" / 3 / [3, 4] to a target value (hashable, with a readable repr).
        object.__setattr__(self, "target", as_target(self.target))


Target = Positions | Word | AllTokens | Answer
TargetLike = Target | int | str | Sequence[int]


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


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def token_spans(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text and the character span ``(start, end)`` of each token in it.

    ``decode`` must skip special tokens. Works from ids alone (generated ids have no offset
    mapping), by decoding prefixes, which handles pieces that carry their leading space
    (SentencePiece, byte-level BPE) and tokens holding only part of a character's UTF-8
    bytes: every such token gets the span of the character(s) its bytes belong to, so
    neighbouring tokens may share a character (see the module docstring). Tokens that
    decode to nothing (skipped special tokens) get an empty span.
    """
    ids = list(ids)
    text = decode(ids)
    spans: list[tuple[int, int]] = []
    committed = 0  # characters of ``text`` complete after the tokens seen so far
    prev_decoded = ""
    for i in range(len(ids)):
        decoded = decode(ids[: i + 1])
        if decoded == prev_decoded and not decode(ids[i : i + 1]):
            # Contributes nothing: a skipped special token (or a piece the decoder drops).
            spans.append((committed, committed))
            continue
        prev_decoded = decoded
        start = committed
        common = _common_prefix_len(decoded, text)
        # A decoder may re-decode earlier bytes once more arrive (SentencePiece byte
        # fallback turns a whole run of byte tokens into U+FFFD while it is incomplete):
        # what was complete stays complete.
        committed = min(max(common, committed), len(text))
        end = committed
        if len(decoded) > common and committed < len(text):
            # The prefix ends in an incomplete character (U+FFFD): this token holds some of
            # its bytes, and that character is ``text[committed]``.
            end = committed + 1
        spans.append((start, end))
    return text, spans


# ------------------------------------------------------------------------- word matching

# Scripts written without spaces between words, and Hangul (particles attach to the noun):
# a query edge in one of these matches any run of the same characters.
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x3035),  # kana repeat marks
    (0x3038, 0x303C),
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31A0, 0x31BF),  # Bopomofo extended
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xA9E0, 0xA9FF),  # Myanmar extended B
    (0xAA60, 0xAA7F),  # Myanmar extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC),  # halfwidth Katakana and Hangul
    (0x1B000, 0x1B16F),  # Kana supplement / extended
    (0x20000, 0x323AF),  # CJK extensions B-H, compatibility supplement
)


def _no_space(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _NO_SPACE_RANGES)


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")


def _spaced_word_char(ch: str) -> bool:
    """A letter, digit or mark of a script written with spaces between words."""
    return (ch.isalnum() or ch == "_" or _is_mark(ch)) and not _no_space(ch)


_ZWJ = "\u200d"


def _extends(ch: str) -> bool:
    """Joins the previous character into one grapheme cluster (UAX #29 Extend / SpacingMark / ZWJ)."""
    cp = ord(ch)
    return (
        _is_mark(ch)
        or ch in (_ZWJ, "\u200c")
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (emoji / text presentation)
        or 0xE0100 <= cp <= 0xE01EF
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tones
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _pictographic(ch: str) -> bool:
    return unicodedata.category(ch) == "So" or 0x1F000 <= ord(ch) <= 0x1FAFF


def _grapheme_boundary(text: str, i: int) -> bool:
    """Whether a cut at ``i`` leaves every grapheme cluster whole (the rules that matter here)."""
    if i <= 0 or i >= len(text):
        return True
    prev, nxt = text[i - 1], text[i]
    if prev == "\r" and nxt == "\n":
        return False
    if _extends(nxt):
        return False
    if prev == _ZWJ and _pictographic(nxt):
        return False
    if _regional(prev) and _regional(nxt):
        run = 0
        j = i - 1
        while j >= 0 and _regional(text[j]):
            run += 1
            j -= 1
        return run % 2 == 0  # flags are pairs of regional indicators
    return not _hangul_joins(prev, nxt)


def _hangul_joins(prev: str, nxt: str) -> bool:
    p, n = ord(prev), ord(nxt)
    lead = lambda c: 0x1100 <= c <= 0x115F or 0xA960 <= c <= 0xA97C  # noqa: E731
    vowel = lambda c: 0x1160 <= c <= 0x11A7 or 0xD7B0 <= c <= 0xD7C6  # noqa: E731
    trail = lambda c: 0x11A8 <= c <= 0x11FF or 0xD7CB <= c <= 0xD7FB  # noqa: E731
    syllable = 0xAC00 <= p <= 0xD7A3
    lv = syllable and (p - 0xAC00) % 28 == 0
    if lead(p):
        return lead(n) or vowel(n) or 0xAC00 <= n <= 0xD7A3
    if vowel(p) or lv:
        return vowel(n) or trail(n)
    if trail(p) or syllable:
        return trail(n)
    return False


def _base_before(text: str, i: int) -> str | None:
    """The base character of the grapheme ending at ``i`` (marks skipped), or None at the start."""
    j = i - 1
    while j >= 0 and _is_mark(text[j]):
        j -= 1
    return text[j] if j >= 0 else None


def find_word(text: str, words: str, *, case_sensitive: bool = False) -> list[tuple[int, int]]:
    """Every ``(start, end)`` match of the word or phrase ``words`` in ``text`` (rules: module docstring)."""
    parts = words.split()
    if not parts:
        return []
    pattern = re.compile(r"\s+".join(re.escape(w) for w in parts), 0 if case_sensitive else re.IGNORECASE)
    first, last = parts[0][0], parts[-1][-1]
    check_start, check_end = _spaced_word_char(first), _spaced_word_char(last)
    out: list[tuple[int, int]] = []
    pos = 0
    while pos <= len(text):
        m = pattern.search(text, pos)
        if m is None:
            break
        s, e = m.span()
        ok = _grapheme_boundary(text, s) and _grapheme_boundary(text, e)
        if ok and check_start:
            before = _base_before(text, s)
            ok = before is None or not _spaced_word_char(before)
        if ok and check_end:
            ok = e >= len(text) or not _spaced_word_char(text[e])
        if ok:
            out.append((s, e))
            pos = e if e > s else s + 1
        else:
            pos = s + 1
    return out


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
        matches = find_word(generation.text, words, case_sensitive=t.case_sensitive)
        if len(matches) < t.occurrence:
            found = f"found {len(matches)} time(s)" if matches else "not found"
            raise _not_found(generation, f"target {words!r} (occurrence {t.occurrence}) {found}")
        start, end = matches[t.occurrence - 1]
        # Every token sharing a character with the match: all sub-tokens of the word,
        # including each byte token of a character split over several tokens.
        out = [
            i
            for i, (s, e) in enumerate(generation.spans)
            if e > s and s < end and e > start and not generation.special[i]
        ]
        if not out:
            raise _not_found(generation, f"target {words!r} matched text but no token")
        return out
    raise TypeError(f"unsupported target {t!r}")
