import pytest

from mllm_attr.adapters.callable import generation_from_text
from mllm_attr.targets import AllTokens, Answer, Positions, TargetNotFoundError, Word, as_target, resolve, token_spans
from mllm_attr.types import Generation


def gen(text="A cat sat on the catalog near a bus, busy cat"):
    return generation_from_text("q", text, [0.5] * len(text.split()))


def test_word_boundary_not_substring():
    g = gen()
    assert resolve(g, "cat") == [1]
    assert resolve(g, Word("cat", occurrence=2)) == [10]
    assert resolve(g, "bus") == [8]  # never "busy"
    with pytest.raises(TargetNotFoundError, match="occurrence 3"):
        resolve(g, Word("cat", occurrence=3))


def test_phrase_and_case():
    g = gen()
    assert resolve(g, "the catalog") == [4, 5]
    assert resolve(g, "CAT") == [1]
    with pytest.raises(TargetNotFoundError):
        resolve(g, Word("CAT", case_sensitive=True))


def test_absent_word_error_shows_text_and_tokens():
    with pytest.raises(TargetNotFoundError) as err:
        resolve(gen(), "dog")
    msg = str(err.value)
    assert "A cat sat" in msg and "0:'A'" in msg and "'dog'" in msg


def test_positions_and_range():
    g = gen()
    assert resolve(g, 2) == [2]
    assert resolve(g, [3, 1, 3]) == [1, 3]
    assert resolve(g, -1) == [len(g) - 1]
    with pytest.raises(TargetNotFoundError, match="out of range"):
        resolve(g, 99)


def test_all_with_and_without_eos():
    g = Generation(
        "q", (5, 6, 2), ("a", " b", "</s>"), ((0, 1), (1, 3), (3, 3)), "a b", (0.1, 0.2, 0.3), (False, False, True)
    )
    assert resolve(g, "all") == [0, 1]
    assert resolve(g, AllTokens(include_eos=True)) == [0, 1, 2]
    assert resolve(g, Answer("x")) == [0, 1, 2]


def test_subword_tokens_of_a_word():
    # "catalog" split into sub-tokens "cat" + "alog": the word "catalog" takes both; "cat" takes none.
    text = "the catalog"
    g = Generation("q", (1, 2, 3), ("the", " cat", "alog"), ((0, 3), (3, 7), (7, 11)), text, (1, 1, 1), (False,) * 3)
    assert resolve(g, "catalog") == [1, 2]
    with pytest.raises(TargetNotFoundError):
        resolve(g, "cat")


def test_as_target_errors():
    assert as_target([1, 2]) == Positions((1, 2))
    with pytest.raises(TypeError):
        as_target(True)
    with pytest.raises(ValueError):
        as_target("   ")
    with pytest.raises(TypeError):
        as_target(3.5)


def test_token_spans_incremental():
    pieces = ["Hel", "lo", " wor", "ld"]
    text, spans = token_spans(lambda ids: "".join(pieces[i] for i in ids), [0, 1, 2, 3])
    assert text == "Hello world" and spans == [(0, 3), (3, 5), (5, 9), (9, 11)]


# ----------------------------------------------------------------- multi-byte characters and scripts


def _byte_decoder(pieces, group_bytes=False):
    """A decode over byte pieces: byte-level BPE style (lossy: one U+FFFD for a truncated
    character) or, with ``group_bytes``, SentencePiece byte-fallback style (a run of byte
    pieces that is not valid UTF-8 as a whole becomes one U+FFFD per byte). ``None`` pieces
    are special tokens (skipped)."""

    def decode(ids):
        if not group_bytes:
            return b"".join(pieces[i] for i in ids if pieces[i] is not None).decode("utf-8", errors="replace")
        out, run = [], b""
        for b in [pieces[i] for i in ids if pieces[i] is not None] + [None]:
            if b is not None and len(b) == 1 and b[0] >= 0x80:
                run += b
                continue
            if run:
                try:
                    out.append(run.decode("utf-8"))
                except UnicodeDecodeError:
                    out.append("\ufffd" * len(run))
                run = b""
            if b is not None:
                out.append(b.decode("utf-8"))
        return "".join(out)

    return decode


@pytest.mark.parametrize("group_bytes", [False, True])
def test_token_spans_give_every_byte_token_its_character(group_bytes):
    cat = "🐱".encode()
    sofa = "沙发".encode()
    pieces = [
        b"A",
        b" ",
        cat[:1],
        cat[1:2],
        cat[2:3],
        cat[3:],
        b" on",
        b" ",
        sofa[:1],
        sofa[1:2],
        sofa[2:3],
        sofa[3:4],
        sofa[4:5],
        sofa[5:],
        b"!",
        None,
    ]
    text, spans = token_spans(_byte_decoder(pieces, group_bytes), list(range(len(pieces))))
    assert text == "A 🐱 on 沙发!"
    assert spans == [
        (0, 1),
        (1, 2),
        (2, 3),
        (2, 3),
        (2, 3),
        (2, 3),
        (3, 6),
        (6, 7),
        (7, 8),
        (7, 8),
        (7, 8),
        (8, 9),
        (8, 9),
        (8, 9),
        (9, 10),
        (10, 10),
    ]


def test_token_spans_token_holding_bytes_of_two_characters():
    # byte-level BPE merges across a character boundary: ' \xe9' | '\xac' | '\xb1\xe9' | '\xac\xb1'
    b = " 鬱鬱".encode()
    pieces = [b[:2], b[2:3], b[3:5], b[5:]]
    text, spans = token_spans(_byte_decoder(pieces), [0, 1, 2, 3])
    assert text == " 鬱鬱" and spans == [(0, 2), (1, 2), (1, 3), (2, 3)]
    g = Generation("q", (0, 1, 2, 3), tuple(text[s:e] for s, e in spans), tuple(spans), text, (1.0,) * 4, (False,) * 4)
    assert resolve(g, "鬱") == [0, 1, 2]  # the first character's bytes are in tokens 0-2
    assert resolve(g, Word("鬱", occurrence=2)) == [2, 3]


def _g(text):
    return generation_from_text("q", text)


def test_cjk_words_match_inside_runs():
    g = _g("一只猫坐在红色沙发上 旁边是一只cat")
    assert g.text[slice(*g.spans[resolve(g, "沙发")[0]])] == "一只猫坐在红色沙发上"
    assert resolve(g, "沙发") == [0] and resolve(g, "cat") == [1]  # Latin word next to CJK: a boundary
    assert resolve(g, Word("一只", occurrence=2)) == [1]
    g2 = _g("고양이가 소파에 있다 ソファに座る")
    assert resolve(g2, "고양이") == [0]  # Hangul: particles attach without a space
    assert resolve(g2, "ソファ") == [3]


def test_spaced_scripts_keep_word_boundaries():
    g = _g("β-carotene café, naïve Zürich καλημέρα 42 cats 3.14")
    assert resolve(g, "β") == [0] and resolve(g, "carotene") == [0]
    assert resolve(g, "CAFÉ") == [1] and resolve(g, "zürich") == [3]
    for word in ("caf", "καλη", "4", "cat", "na"):
        with pytest.raises(TargetNotFoundError):
            resolve(g, word)
    assert resolve(g, "3.14") == [7] and resolve(g, "42 cats") == [5, 6]
    assert resolve(g, ",") == [1]  # punctuation needs no word boundary


def test_matches_never_split_a_grapheme():
    g = _g("👍🏽 👨‍👩‍👧 🇫🇷🇩🇪 1️⃣ cafe\u0301 👍")
    assert resolve(g, "👍🏽") == [0] and resolve(g, "👨‍👩‍👧") == [1] and resolve(g, "🇩🇪") == [2]
    assert resolve(g, "👍") == [5]  # not the one with a skin tone
    for word in ("👩", "👨", "🇷🇩", "1", "cafe"):
        with pytest.raises(TargetNotFoundError):
            resolve(g, word)
