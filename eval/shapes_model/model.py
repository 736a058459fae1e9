"""The shapes-llava model itself: sizes, vocabulary, chat template and the builders.

The one place both scripts take these from: :mod:`shapes_model.train` builds a fresh model
with them and trains it, :mod:`shapes_model.evaluate` asks its questions with
:func:`conversation` and describes the checkpoint in its model card. Nothing here trains or
evaluates, and the installed package does not need this module: a trained checkpoint
directory loads with plain ``from_pretrained`` (see :mod:`mllm_attr.assets`).

Used from the scripts next to it, or, with ``eval/`` on ``sys.path``::

    from shapes_model import model as M
    processor = M.build_processor()
    net = M.build_model(processor.tokenizer, seed=0)
"""

from __future__ import annotations

from typing import Any

import torch

from mllm_attr.data import shapes as S

__all__ = [
    "IMAGE_SIZE",
    "PATCH_SIZE",
    "NUM_PATCHES",
    "SPECIAL_TOKENS",
    "VOCABULARY",
    "CHAT_TEMPLATE",
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_ARCH",
    "conversation",
    "build_tokenizer",
    "build_image_processor",
    "build_processor",
    "build_model",
]

IMAGE_SIZE = 64
PATCH_SIZE = 8
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<image>")

#: Word-level vocabulary (lower case; the normaliser lower-cases input text).
VOCABULARY: tuple[str, ...] = SPECIAL_TOKENS + tuple(
    dict.fromkeys(
        [
            "user",
            "assistant",
            "system",
            ":",
            "?",
            ".",
            ",",
            "!",
            "'",
            "-",
            "what",
            "which",
            "color",
            "colour",
            "is",
            "are",
            "the",
            "there",
            "a",
            "an",
            "any",
            "in",
            "on",
            "of",
            "this",
            "that",
            "image",
            "picture",
            "photo",
            "scene",
            "describe",
            "shape",
            "object",
            "objects",
            "yes",
            "no",
            "and",
            "left",
            "right",
            "above",
            "below",
            "to",
            "nothing",
            "how",
            "many",
            "does",
            "it",
            "contain",
            "see",
            "you",
            "do",
            "can",
            "please",
            "briefly",
            "with",
            "background",
            "grey",
            "gray",
            "one",
            "two",
            "three",
            "four",
        ]
        + list(S.COLOR_NAMES)
        + list(S.SHAPES)
    )
)

#: LLaVA-1.5 conversation format: ``USER: <image>\n{prompt} ASSISTANT: {answer}</s>``.
CHAT_TEMPLATE = (
    "{%- macro text_of(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for c in content -%}{%- if c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{ text_of(message['content']) + ' ' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ 'USER: ' }}"
    "{%- if message['content'] is not string -%}"
    "{%- for c in message['content'] -%}{%- if c['type'] == 'image' -%}{{ '<image>\\n' }}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{{ text_of(message['content']) + ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' + text_of(message['content']) + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Model hyper-parameters of the shipped checkpoint.
DEFAULT_ARCH: dict[str, int] = {
    "vision_hidden": 96,
    "vision_layers": 3,
    "vision_heads": 4,
    "vision_mlp": 192,
    "text_hidden": 128,
    "text_layers": 2,
    "text_heads": 4,
    "text_mlp": 320,
}


# --------------------------------------------------------------------------- builders


def build_tokenizer():
    """Word-level ``PreTrainedTokenizerFast`` (left padding, ``<s>`` prepended, words decoded with spaces)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(VOCABULARY)}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )


def build_image_processor():
    """``CLIPImageProcessor`` for 64 x 64 inputs (the PIL backend where torchvision is missing)."""
    try:
        from transformers import CLIPImageProcessorPil as cls  # transformers >= 5 without torchvision
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as cls
    return cls(
        do_resize=True,
        size={"shortest_edge": IMAGE_SIZE},
        resample=3,
        do_center_crop=True,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def build_processor(tokenizer=None, image_processor=None):
    """The shapes-llava ``LlavaProcessor`` (a fresh tokenizer and image processor unless given)."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=image_processor or build_image_processor(),
        tokenizer=tokenizer or build_tokenizer(),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )


def build_model(tokenizer, arch: dict[str, int] | None = None, seed: int = 0):
    """A freshly initialised ``LlavaForConditionalGeneration`` (CLIP vision tower + Llama decoder).

    Its generation config is greedy with at most 24 new tokens.

    Args:
        tokenizer: the word-level tokenizer (vocabulary size and special token ids).
        arch: overrides of the :data:`DEFAULT_ARCH` sizes.
        seed: torch seed for the initial weights.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    a = {**DEFAULT_ARCH, **(arch or {})}
    vision = CLIPVisionConfig(
        hidden_size=a["vision_hidden"],
        intermediate_size=a["vision_mlp"],
        num_hidden_layers=a["vision_layers"],
        num_attention_heads=a["vision_heads"],
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        num_channels=3,
        hidden_act="gelu",
        projection_dim=a["vision_hidden"],
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=a["text_hidden"],
        intermediate_size=a["text_mlp"],
        num_hidden_layers=a["text_layers"],
        num_attention_heads=a["text_heads"],
        num_key_value_heads=a["text_heads"],
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=NUM_PATCHES,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    gc = model.generation_config
    gc.bos_token_id = tokenizer.bos_token_id
    gc.eos_token_id = tokenizer.eos_token_id
    gc.pad_token_id = tokenizer.pad_token_id
    gc.do_sample = False
    gc.max_new_tokens = 24
    return model


def conversation(question: str) -> list[dict[str, Any]]:
    """The one-turn chat (an image, then ``question``) that every prompt of the model uses."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
