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
    g = Generation("q", (5, 6, 2), ("a", " b", "</s>"), ((0, 1), (1, 3), (3, 3)), "a b", (0.1, 0.2, 0.3), (False, False, True))
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
