"""Tiny, randomly initialised multimodal models of the *real* transformers classes, built offline.

Each family is built from a small config, a word-level tokenizer made locally with the
``tokenizers`` library (common English words plus the family's special tokens), a Jinja chat
template in that family's real prompt format, and the family's own image processor configured
for small images (a few dozen pixels, a handful of image tokens). Nothing is downloaded.

Example::

    model, processor = build_tiny("qwen2_vl")
    image = PIL.Image.new("RGB", (48, 40))
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": "What is this?"}]}]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    # Equivalent: prompt = processor.apply_chat_template(messages_with_bare_{"type": "image"},
    #     add_generation_prompt=True); processor(images=[image], text=[prompt], return_tensors="pt").
    # With tokenize=True and a bare {"type": "image"} entry the processor raises (no image given).

The models are in eval mode, float32, and identical for a given ``seed``. ``save_tiny`` writes a
directory that reloads with ``<ModelClass>.from_pretrained(dir)`` and
:func:`mllm_attr.adapters._processors.load_processor`.

Batching images for one prompt (what the attribution engine does): repeat the processor's text
tensors and concatenate ``processor.image_processor(images=[...], return_tensors="pt")``; pass
only the keys ``model.forward`` names. Per family (image-processor keys | text keys to repeat):

- llava, internvl, paligemma, gemma3: ``pixel_values`` (InternVL also ``num_patches``, Gemma 3
  ``num_crops``: not forward inputs) | ``input_ids``, ``attention_mask``, plus ``token_type_ids``
  for PaliGemma and Gemma 3 (PaliGemma's ``labels``: drop).
- llava_next, llava_onevision: ``pixel_values`` [B, crops, 3, H, W], ``image_sizes`` (OneVision
  also ``batch_num_images``) | ``input_ids``, ``attention_mask``. Image tokens depend on the
  image's size (anyres): batch same-size images only.
- qwen2_vl, qwen2_5_vl, qwen3_vl: ``pixel_values`` [patches, dim] (rows of all images
  concatenated), ``image_grid_thw`` | ``input_ids``, ``attention_mask``, ``mm_token_type_ids``.
  Image tokens depend on the image's size.
- idefics3, smolvlm: ``pixel_values``, ``pixel_attention_mask``; a flat list of images comes back
  as ONE sample of n images ([1, n, 3, H, W]); the model flattens images, so it still works
  (``images=[[im] for im in ims]`` gives [n, 1, ...]) | ``input_ids``, ``attention_mask``.

When teacher-forcing generated tokens, extend ``attention_mask`` with ones, ``mm_token_type_ids``
and Gemma 3's ``token_type_ids`` with zeros, and PaliGemma's ``token_type_ids`` with ONES (zeros
would put the generated text into the bidirectional prefix).

Randomly initialised weights give near-uniform next-token distributions: compare
probabilities with tolerances, never greedy strings. The image does change the logits in every
family (all-zero weight matrices, such as Gemma 3's multimodal projection, are re-drawn).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = [
    "CAUSAL_LMS",
    "FAMILIES",
    "build_tiny",
    "build_tiny_causal_lm",
    "model_class",
    "save_tiny",
    "save_tiny_causal_lm",
]

# Common lower-case English words: enough for prompts such as "What colour is the cat?" and for
# generated text to decode into words. Everything is lower-cased by the normaliser.
_WORDS = [
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "do",
    "does",
    "did",
    "done",
    "have",
    "has",
    "had",
    "not",
    "no",
    "yes",
    "and",
    "or",
    "but",
    "if",
    "then",
    "so",
    "because",
    "of",
    "in",
    "on",
    "at",
    "to",
    "from",
    "by",
    "with",
    "without",
    "for",
    "about",
    "into",
    "over",
    "under",
    "above",
    "below",
    "left",
    "right",
    "top",
    "bottom",
    "front",
    "back",
    "behind",
    "between",
    "near",
    "far",
    "inside",
    "outside",
    "up",
    "down",
    "out",
    "off",
    "here",
    "there",
    "where",
    "when",
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "why",
    "how",
    "many",
    "much",
    "more",
    "most",
    "less",
    "few",
    "some",
    "any",
    "all",
    "each",
    "every",
    "both",
    "either",
    "neither",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "first",
    "second",
    "third",
    "last",
    "next",
    "other",
    "another",
    "same",
    "different",
    "i",
    "you",
    "he",
    "she",
    "we",
    "they",
    "me",
    "him",
    "her",
    "us",
    "them",
    "my",
    "your",
    "his",
    "our",
    "their",
    "mine",
    "yours",
    "image",
    "picture",
    "photo",
    "photograph",
    "scene",
    "view",
    "frame",
    "region",
    "object",
    "objects",
    "thing",
    "things",
    "area",
    "part",
    "cat",
    "cats",
    "dog",
    "dogs",
    "bird",
    "birds",
    "horse",
    "cow",
    "sheep",
    "person",
    "people",
    "man",
    "woman",
    "men",
    "women",
    "child",
    "children",
    "boy",
    "girl",
    "car",
    "cars",
    "bus",
    "truck",
    "bike",
    "bicycle",
    "train",
    "plane",
    "boat",
    "road",
    "street",
    "tree",
    "trees",
    "grass",
    "sky",
    "cloud",
    "clouds",
    "sun",
    "water",
    "sea",
    "river",
    "lake",
    "beach",
    "mountain",
    "hill",
    "house",
    "building",
    "room",
    "table",
    "chair",
    "bed",
    "sofa",
    "window",
    "door",
    "wall",
    "floor",
    "food",
    "plate",
    "cup",
    "bottle",
    "ball",
    "box",
    "bag",
    "book",
    "phone",
    "computer",
    "screen",
    "sign",
    "light",
    "shape",
    "shapes",
    "circle",
    "square",
    "triangle",
    "rectangle",
    "star",
    "line",
    "dot",
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "colour",
    "color",
    "colours",
    "colors",
    "big",
    "small",
    "large",
    "tiny",
    "little",
    "long",
    "short",
    "tall",
    "high",
    "low",
    "wide",
    "narrow",
    "round",
    "flat",
    "bright",
    "dark",
    "light",
    "heavy",
    "empty",
    "full",
    "open",
    "closed",
    "old",
    "new",
    "young",
    "hot",
    "cold",
    "good",
    "bad",
    "happy",
    "sad",
    "describe",
    "tell",
    "show",
    "give",
    "find",
    "count",
    "name",
    "list",
    "explain",
    "answer",
    "question",
    "say",
    "see",
    "look",
    "looks",
    "looking",
    "sitting",
    "standing",
    "walking",
    "running",
    "lying",
    "holding",
    "eating",
    "playing",
    "flying",
    "driving",
    "riding",
    "wearing",
    "visible",
    "shown",
    "present",
    "missing",
    "located",
    "briefly",
    "detail",
    "details",
    "detailed",
    "caption",
    "short",
    "word",
    "words",
    "sentence",
    "please",
    "only",
    "assistant",
    "user",
    "system",
    "model",
    "human",
    "helpful",
    "harmless",
    "honest",
    "animal",
    "animals",
    "vehicle",
    "vehicles",
    "kind",
    "type",
    "size",
    "position",
    "side",
    "middle",
    "center",
    "centre",
    "corner",
    "background",
    "foreground",
    "number",
    "letter",
    "phrase",
    "single",
]

# Punctuation, digits and single letters ("what's" -> what ' s), so simple prompts rarely hit <unk>.
_SYMBOLS = list(".,:;!?'\"()[]{}-_/\\*+=<>#%&@|~`^$") + [str(d) for d in range(10)] + list("abcdefghijklmnopqrstuvwxyz")


def _vocabulary(special_tokens: Iterable[str], extra_words: Iterable[str] = ()) -> list[str]:
    """Ordered, de-duplicated vocabulary: special tokens first (fixed, small ids), then words."""
    seen: dict[str, None] = {}
    for token in [*special_tokens, *(w.lower() for w in extra_words), *_WORDS, *_SYMBOLS]:
        seen.setdefault(token, None)
    return list(seen)


def _make_tokenizer(
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str,
    named_specials: dict[str, str] | None = None,
    other_specials: Iterable[str] = (),
    extra_words: Iterable[str] = (),
    chat_template: str | None = None,
):
    """A word-level ``PreTrainedTokenizerFast`` with left padding.

    ``named_specials`` become attributes of the tokenizer (``tokenizer.image_token`` and
    ``tokenizer.image_token_id``, ...), which several processors read. Every special token is an
    added token, matched in raw text before the (lower-casing, punctuation-splitting) pre-tokeniser.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    named_specials = dict(named_specials or {})
    core = [t for t in (pad, bos, eos, unk) if t is not None]
    specials = list(dict.fromkeys([*core, *named_specials.values(), *other_specials]))
    vocab = {token: i for i, token in enumerate(_vocabulary(specials, extra_words))}

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    # Words, and runs of punctuation, are tokens; white space separates them and is dropped.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    backend.add_special_tokens(specials)

    kwargs = {"pad_token": pad, "eos_token": eos, "unk_token": unk}
    if bos is not None:
        kwargs["bos_token"] = bos
    if named_specials:
        kwargs["extra_special_tokens"] = named_specials
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side="left",  # set at construction: set afterwards it is not saved (transformers 5)
        model_max_length=4096,
        **kwargs,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def _vocab_size(tokenizer) -> int:
    """Embedding rows for exactly the tokenizer's tokens (added ones included).

    Not rounded up: a randomly initialised model would otherwise generate ids that decode to nothing.
    """
    return len(tokenizer)


def _text_ids(tokenizer) -> dict:
    return {
        "vocab_size": _vocab_size(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


# Small shared sizes. Text: 2 layers, hidden 64, 4 heads (2 key/value heads). Vision: 1-2 layers.
_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}
_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def _image_processor(name: str, **settings):
    """The family's image processor: the torchvision one where torchvision works, else its PIL twin.

    (transformers 5 falls back to ``<name>Pil`` by itself, with a warning; this picks it quietly.)
    """
    import transformers
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available() and hasattr(transformers, name + "Pil"):
        name += "Pil"
    return getattr(transformers, name)(**settings)


def instantiate(model_cls, config, seed: int):
    """``model_cls(config)`` with weights drawn from ``seed`` (the global RNG is left as it was),
    in float32 eval mode.

    Some families zero-initialise weights that matter here (Gemma 3's multimodal projection:
    with it at zero the image has no effect at all; InternVL's position embeddings). Every
    all-zero matrix gets small random values so that every part of the input counts.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() >= 2 and not param.any():
                    param.normal_(0.0, 0.02)
    return model.to(torch.float32).eval()


def finish(model_cls, config, processor, seed: int, generation: dict | None = None):
    """``(model, processor)``: the model instantiated by :func:`instantiate` with a generation config.

    ``generation``: the settings of a checkpoint's ``generation_config.json`` (the twins); by
    default greedy decoding of at most 20 tokens with the tokenizer's special-token ids.
    """
    model = instantiate(model_cls, config, seed)
    if generation is not None:
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig(**generation)
        return model, processor
    tokenizer = processor.tokenizer
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    gen.do_sample = False
    gen.max_new_tokens = 20
    for attr in ("temperature", "top_p", "top_k"):
        if getattr(gen, attr, None) is not None:
            setattr(gen, attr, None)
    return model, processor


# ----------------------------------------------------------------------------------------------
# Chat templates. Written for these tiny models in each family's prompt format; only what the
# tests and adapters need (text and image entries, system/user/assistant turns).
# ----------------------------------------------------------------------------------------------

# LLaVA-1.5: "USER: <image>\n{prompt} ASSISTANT:"
_LLAVA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }} {% endfor %}"
    "{% else %}"
    "{{ message['role'].upper() }}: "
    "{% for c in message['content'] if c['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ c['text'] }}{% endgeneration %}{{ eos_token }}"
    "{% else %}{{ c['text'] }}{% endif %} "
    "{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# LLaVA-NeXT (Mistral flavour): "[INST] <image>\n{prompt} [/INST]"
_LLAVA_NEXT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{% for c in message['content'] if c['type'] == 'text' %}"
    " {% generation %}{{ c['text'] }}{% endgeneration %}"
    "{% endfor %}"
    "{{ eos_token }}"
    "{% else %}"
    "[INST] "
    "{% for c in message['content'] if c['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }} {% endfor %}"
    "[/INST]"
    "{% endif %}"
    "{% endfor %}"
)


# ChatML with a per-family image placeholder, as used by Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
# InternVL (Qwen2.5 text) and LLaVA-OneVision (Qwen2 text).
def _chatml_template(
    image_placeholder: str, default_system: str | None, user_sep: str = "\n", video_placeholder: str | None = None
) -> str:
    system = (
        f"{{% if messages[0]['role'] != 'system' %}}<|im_start|>system\n{default_system}<|im_end|>\n{{% endif %}}"
        if default_system
        else ""
    )
    return (
        system + "{% for message in messages %}"
        "<|im_start|>{{ message['role'] }}" + user_sep + ""
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}"
        "{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}"
        + image_placeholder
        + ""
        + ("{% elif c['type'] == 'video' %}" + video_placeholder if video_placeholder else "")
        + "{% elif c['type'] == 'text' %}"
        "{% if message['role'] == 'assistant' %}{% generation %}{{ c['text'] }}{% endgeneration %}"
        "{% else %}{{ c['text'] }}{% endif %}"
        "{% endif %}"
        "{% endfor %}"
        "{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


# Idefics3: "<|begin_of_text|>User:<image>{prompt}<end_of_utterance>\nAssistant:"
# SmolVLM uses the same shape with "<|im_start|>".
def _idefics_template(start: str) -> str:
    return (
        start + "{% for message in messages %}"
        "{{ message['role'] | capitalize }}"
        "{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
        "{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}<image>"
        "{% elif c['type'] == 'text' %}"
        "{% if message['role'] == 'assistant' %}{% generation %}{{ c['text'] }}{% endgeneration %}"
        "{% else %}{{ c['text'] }}{% endif %}"
        "{% endif %}"
        "{% endfor %}"
        "<end_of_utterance>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"
    )


# PaliGemma has no conversation format: the prompt is "<image>...<image><bos>{prefix}\n", where the
# processor inserts "<bos>" after the last image token and "\n" at the end. The template only puts
# the image placeholders first and the user's text after them.
_PALIGEMMA_TEMPLATE = (
    "{% for message in messages if message['role'] == 'user' %}"
    "{% for c in message['content'] if c['type'] == 'image' %}<image>{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
    "{% endfor %}"
)

# Gemma 3: "<bos><start_of_turn>user\n<start_of_image>{prompt}<end_of_turn>\n<start_of_turn>model\n"
_GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
    "{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ c['text'] }}{% endgeneration %}"
    "{% else %}{{ c['text'] }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_CHATML = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


# ----------------------------------------------------------------------------------------------
# Families. Each recipe returns ``(config kwargs, processor)``; :func:`build_tiny` makes the config
# (the model class's ``config_class``) and the model.
# ----------------------------------------------------------------------------------------------


def _tokenizer(template: str, *, bos: str | None, eos: str, pad: str, **specials):
    """The family's word-level tokenizer with its chat template (``specials``: see :func:`_make_tokenizer`)."""
    return _make_tokenizer(bos=bos, eos=eos, pad=pad, unk="<unk>", chat_template=template, **specials)


def _chatml_tokenizer(template: str, named_specials: dict[str, str]):
    """The tokenizer of the ChatML families (Qwen-VL, InternVL, LLaVA-OneVision): no BOS, turns end with <|im_end|>."""
    return _tokenizer(
        template, bos=None, eos="<|im_end|>", pad="<|endoftext|>", named_specials=named_specials, other_specials=_CHATML
    )


def _processor(name: str, image_processor, tokenizer, template: str, **settings):
    """The transformers processor ``name``, or its video-free variant where it bundles a video processor."""
    import transformers

    from mllm_attr.adapters._processors import processor_class_without_video

    try:
        cls = processor_class_without_video(name)
    except ValueError:
        cls = getattr(transformers, name)
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=template, **settings)


def _square(size: int) -> dict:
    return {"height": size, "width": size}


def _llama_text(tokenizer, **overrides):
    from transformers import LlamaConfig

    return LlamaConfig(**{**_TEXT, **_text_ids(tokenizer), **overrides})


def _qwen2_text(tokenizer, **overrides):
    from transformers import Qwen2Config

    return Qwen2Config(**{**_TEXT, **_text_ids(tokenizer), **overrides})


def _clip_vision(image_size: int, patch_size: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**_VISION, image_size=image_size, patch_size=patch_size, projection_dim=32)


def _siglip_vision(image_size: int, patch_size: int, **overrides):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(**{**_VISION, "image_size": image_size, "patch_size": patch_size, **overrides})


def _llava_like(name: str, template: str, *, pinpoints=None, other_specials: Iterable[str] = ()):
    """LLaVA-1.5 (``name`` "Llava") or LLaVA-NeXT ("LlavaNext", anyres over ``pinpoints``).

    32 px views, 8 px patches: 16 patch tokens per view (+ CLS, dropped by the "default" strategy).
    """
    size, patch = 32, 8
    grid = {} if pinpoints is None else {"image_grid_pinpoints": pinpoints}
    tokenizer = _tokenizer(
        template,
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        named_specials={"image_token": "<image>"},
        other_specials=other_specials,
    )
    image_processor = _image_processor(
        "CLIPImageProcessor" if name == "Llava" else name + "ImageProcessor",
        size={"shortest_edge": size},
        crop_size=_square(size),
        **grid,
    )
    processor = _processor(
        name + "Processor",
        image_processor,
        tokenizer,
        template,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    config = {
        "vision_config": _clip_vision(size, patch),
        "text_config": _llama_text(tokenizer),
        "image_token_index": tokenizer.image_token_id,
        **grid,
        "image_seq_length": (size // patch) ** 2,
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    }
    return config, processor


def _llava():
    return _llava_like("Llava", _LLAVA_TEMPLATE)


def _llava_next():
    # Base view 32 px; anyres grid of at most 2x2 crops of 32 px.
    return _llava_like(
        "LlavaNext",
        _LLAVA_NEXT_TEMPLATE,
        pinpoints=[[32, 64], [64, 32], [64, 64]],
        other_specials=["[INST]", "[/INST]"],
    )


def _llava_onevision():
    size, patch = 32, 8
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    template = _chatml_template("<image>\n", None, user_sep=" ", video_placeholder="<video>")
    tokenizer = _chatml_tokenizer(template, {"image_token": "<image>", "video_token": "<video>"})
    image_processor = _image_processor(
        "LlavaOnevisionImageProcessor", size=_square(size), crop_size=_square(size), image_grid_pinpoints=pinpoints
    )
    processor = _processor(
        "LlavaOnevisionProcessor",
        image_processor,
        tokenizer,
        template,
        num_image_tokens=(size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    config = {
        "vision_config": _siglip_vision(size, patch, vision_use_head=False),
        "text_config": _qwen2_text(tokenizer),
        "image_token_index": tokenizer.image_token_id,
        "video_token_index": tokenizer.video_token_id,
        "image_grid_pinpoints": pinpoints,
        "vision_feature_select_strategy": "full",
        "vision_feature_layer": -1,
        "vision_aspect_ratio": "anyres_max_9",
    }
    return config, processor


_QWEN_VL_SPECIALS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


def _qwen_vl(name: str, *, patch: int, system: str | None, vision: dict, text: dict | None = None, drop=()):
    """Qwen2-VL, Qwen2.5-VL, Qwen3-VL (``name`` "Qwen2VL", ...): ChatML, merge 2, M-RoPE.

    ``vision``: the vision config's own settings; ``text`` is merged into the text config, ``drop``
    names text-config keys left out.
    """
    template = _chatml_template(
        "<|vision_start|><|image_pad|><|vision_end|>",
        system,
        video_placeholder="<|vision_start|><|video_pad|><|vision_end|>",
    )
    tokenizer = _chatml_tokenizer(template, _QWEN_VL_SPECIALS)
    # A 2x2 grid of merged tokens at least (min_pixels) and 4x4 at most (max_pixels): a
    # 56x56 image (patch 14) becomes 4x4 patches -> 4 image tokens.
    unit = patch * 2
    image_processor = _image_processor(
        "Qwen2VLImageProcessor",
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * unit) ** 2,
        max_pixels=(4 * unit) ** 2,
    )
    processor = _processor(name + "Processor", image_processor, tokenizer, template)
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    text_config = {**_TEXT, **_text_ids(tokenizer), "rope_parameters": rope, **(text or {})}
    config = {
        "text_config": {k: v for k, v in text_config.items() if k not in drop},
        "vision_config": {
            "depth": 2,
            "num_heads": 2,
            "patch_size": patch,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            **vision,
        },
        "image_token_id": tokenizer.image_token_id,
        "video_token_id": tokenizer.video_token_id,
        "vision_start_token_id": tokenizer.vision_start_token_id,
        "vision_end_token_id": tokenizer.vision_end_token_id,
    }
    return config, processor


def _qwen2_vl():
    return _qwen_vl(
        "Qwen2VL",
        patch=14,
        system="You are a helpful assistant.",
        vision={"embed_dim": 32, "hidden_size": _TEXT["hidden_size"], "mlp_ratio": 2},
    )


def _qwen2_5_vl():
    return _qwen_vl(
        "Qwen2_5_VL",
        patch=14,
        system="You are a helpful assistant.",
        vision={
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": _TEXT["hidden_size"],
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
    )


def _qwen3_vl():
    return _qwen_vl(
        "Qwen3VL",
        patch=16,
        system=None,
        vision={
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": _TEXT["hidden_size"],
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        text={
            "head_dim": 16,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        drop=("bos_token_id", "eos_token_id"),
    )


def _internvl():
    # 32 px views, 8 px patches: 16 patches, pixel-shuffled (ratio 0.5) into 4 image tokens.
    size, patch = 32, 8
    template = _chatml_template("<IMG_CONTEXT>\n", None)
    tokenizer = _chatml_tokenizer(
        template,
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    # The processor's own default ``crop_to_patches=True`` overrides the image processor's setting;
    # ``max_patches=1`` keeps one 32 px view per image either way.
    image_processor = _image_processor(
        "GotOcr2ImageProcessor", size=_square(size), crop_to_patches=False, min_patches=1, max_patches=1
    )
    image_seq_length = int((size // patch) ** 2 * 0.5**2)
    processor = _processor("InternVLProcessor", image_processor, tokenizer, template, image_seq_length=image_seq_length)
    config = {
        "vision_config": {
            **_VISION,
            "image_size": [size, size],
            "patch_size": [patch, patch],
            "use_mean_pooling": True,
        },
        "text_config": _qwen2_text(tokenizer),
        "image_token_id": tokenizer.context_image_token_id,
        "image_seq_length": image_seq_length,
        "downsample_ratio": 0.5,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
    }
    return config, processor


def _idefics_like(name: str, *, start: str, pad: str, other_specials: Iterable[str] = ()):
    """Idefics3 (``name`` "Idefics3") or SmolVLM ("SmolVLM"): ``start`` opens the prompt (and is BOS).

    One 32 px view (no splitting), 8 px patches: 16 patches, pixel-shuffled by 2 into 4 tokens.
    """
    size, patch, scale = 32, 8, 2
    template = _idefics_template(start)
    row_col = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer = _tokenizer(
        template,
        bos=start,
        eos="<end_of_utterance>",
        pad=pad,
        other_specials=[
            "<fake_token_around_image>",
            "<image>",
            "<end_of_utterance>",
            "<global-img>",
            *row_col,
            *other_specials,
        ],
    )
    image_processor = _image_processor(
        name + "ImageProcessor",
        size={"longest_edge": size},
        max_image_size={"longest_edge": size},
        do_image_splitting=False,
    )
    processor = _processor(
        name + "Processor", image_processor, tokenizer, template, image_seq_len=(size // patch) ** 2 // scale**2
    )
    config = {
        "vision_config": {**_VISION, "image_size": size, "patch_size": patch},
        "text_config": _llama_text(tokenizer),
        "image_token_id": tokenizer.convert_tokens_to_ids("<image>"),
        "scale_factor": scale,
    }
    return config, processor


def _idefics3():
    return _idefics_like("Idefics3", start="<|begin_of_text|>", pad="<|finetune_right_pad_id|>")


def _smolvlm():
    return _idefics_like("SmolVLM", start="<|im_start|>", pad="<|im_end|>", other_specials=["<video>"])


def _paligemma():
    from transformers import GemmaConfig

    size, patch = 32, 8
    tokenizer = _tokenizer(
        _PALIGEMMA_TEMPLATE, bos="<bos>", eos="<eos>", pad="<pad>", named_specials={"image_token": "<image>"}
    )
    image_processor = _image_processor("SiglipImageProcessor", size=_square(size))
    image_processor.image_seq_length = (size // patch) ** 2
    # The processor adds 1,152 location/segmentation tokens: size the vocabulary afterwards.
    processor = _processor("PaliGemmaProcessor", image_processor, tokenizer, _PALIGEMMA_TEMPLATE)
    text = GemmaConfig(**{**_TEXT, **_text_ids(processor.tokenizer), "head_dim": 16})
    config = {
        # (PaliGemmaConfig sets the vision config's projection_dim to its own.)
        "vision_config": _siglip_vision(size, patch, projection_dim=_TEXT["hidden_size"]),
        "text_config": text,
        "image_token_index": processor.image_token_id,
        "vocab_size": text.vocab_size,
        "projection_dim": _TEXT["hidden_size"],
        "hidden_size": _TEXT["hidden_size"],
    }
    return config, processor


def _gemma3():
    # 32 px, 8 px patches: 4x4 patches average-pooled into 2x2 = 4 image tokens.
    size, patch, tokens = 32, 8, 4
    tokenizer = _tokenizer(
        _GEMMA3_TEMPLATE,
        bos="<bos>",
        eos="<end_of_turn>",
        pad="<pad>",
        named_specials={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
        other_specials=["<eos>", "<start_of_turn>"],
    )
    image_processor = _image_processor("Gemma3ImageProcessor", size=_square(size), do_pan_and_scan=False)
    processor = _processor("Gemma3Processor", image_processor, tokenizer, _GEMMA3_TEMPLATE, image_seq_length=tokens)
    text = {
        **_TEXT,
        **_text_ids(tokenizer),
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": 64,
        "layer_types": ["sliding_attention", "full_attention"],
    }
    config = {
        "text_config": text,
        "vision_config": _siglip_vision(size, patch, vision_use_head=False).to_dict(),
        "mm_tokens_per_image": tokens,
        "boi_token_index": tokenizer.boi_token_id,
        "eoi_token_index": tokenizer.eoi_token_id,
        "image_token_index": tokenizer.image_token_id,
    }
    return config, processor


@dataclass(frozen=True)
class _Family:
    recipe: Callable[[], tuple[dict, object]]  # () -> (config kwargs, processor)
    model_class: str
    needs: tuple[str, ...] = ()  # importable modules the family needs beyond transformers


_REGISTRY: dict[str, _Family] = {
    "llava": _Family(_llava, "LlavaForConditionalGeneration"),
    "llava_next": _Family(_llava_next, "LlavaNextForConditionalGeneration"),
    "llava_onevision": _Family(_llava_onevision, "LlavaOnevisionForConditionalGeneration"),
    "qwen2_vl": _Family(_qwen2_vl, "Qwen2VLForConditionalGeneration"),
    "qwen2_5_vl": _Family(_qwen2_5_vl, "Qwen2_5_VLForConditionalGeneration"),
    "qwen3_vl": _Family(_qwen3_vl, "Qwen3VLForConditionalGeneration"),
    "internvl": _Family(_internvl, "InternVLForConditionalGeneration"),
    "idefics3": _Family(_idefics3, "Idefics3ForConditionalGeneration"),
    # The SmolVLM processor refuses to build without the ``num2words`` package.
    "smolvlm": _Family(_smolvlm, "SmolVLMForConditionalGeneration", needs=("num2words",)),
    "paligemma": _Family(_paligemma, "PaliGemmaForConditionalGeneration"),
    "gemma3": _Family(_gemma3, "Gemma3ForConditionalGeneration"),
}


def _available(family: _Family) -> bool:
    import transformers

    if not hasattr(transformers, family.model_class):
        return False
    return all(importlib.util.find_spec(name) is not None for name in family.needs)


FAMILIES: tuple[str, ...] = tuple(name for name, fam in _REGISTRY.items() if _available(fam))


def build_tiny(family: str, *, seed: int = 0):
    """Build a tiny randomly initialised ``(model, processor)`` pair of a real transformers class.

    Args:
        family: one of :data:`FAMILIES`.
        seed: weights are a deterministic function of the seed.

    Returns:
        ``(model, processor)``: the model in eval mode, float32; the family's processor with a
        left-padding word-level tokenizer, a chat template in the family's format and an image
        processor for small images.
    """
    if family not in _REGISTRY:
        raise ValueError(f"Unknown family {family!r}; expected one of {', '.join(FAMILIES)}.")
    if family not in FAMILIES:
        fam = _REGISTRY[family]
        raise ValueError(
            f"Family {family!r} is not available here: it needs transformers.{fam.model_class}"
            + (f" and the packages {', '.join(fam.needs)}" if fam.needs else "")
            + f". Available: {', '.join(FAMILIES)}."
        )
    cls = model_class(family)
    config, processor = _REGISTRY[family].recipe()
    return finish(cls, cls.config_class(**config), processor, seed)


def save_tiny(family: str, out_dir: str | os.PathLike, *, seed: int = 0) -> pathlib.Path:
    """Build a tiny model of ``family`` and ``save_pretrained`` it and its processor into ``out_dir``.

    Returns the directory, which reloads with ``<ModelClass>.from_pretrained(out_dir)`` and
    :func:`mllm_attr.adapters._processors.load_processor`, with no network.
    """
    model, processor = build_tiny(family, seed=seed)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def model_class(family: str):
    """The transformers model class of ``family`` (for ``from_pretrained`` on a saved directory)."""
    if family not in _REGISTRY:
        raise ValueError(f"Unknown family {family!r}; expected one of {', '.join(FAMILIES)}.")
    return getattr(importlib.import_module("transformers"), _REGISTRY[family].model_class)


# ----------------------------------------------------------------------------------------------
# Text-only causal LMs (AutoModelForCausalLM): the language models of the families above, alone.
# ----------------------------------------------------------------------------------------------

# Llama 3 style: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>..."
_LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_LLAMA3 = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad|>"]

# Words of plain questions and answers ("What is the capital of France?" -> "Paris").
_CAUSAL_LM_WORDS = [
    "capital",
    "city",
    "country",
    "france",
    "paris",
    "germany",
    "berlin",
    "london",
    "river",
    "sky",
    "blue",
]

#: Tiny text-only causal LMs: ``name -> transformers class`` (see :func:`build_tiny_causal_lm`).
CAUSAL_LMS: dict[str, str] = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}


def build_tiny_causal_lm(kind: str = "qwen2", *, seed: int = 0, tokenizer=None):
    """A tiny randomly initialised text-only ``(model, tokenizer)`` of a real causal-LM class, offline.

    Args:
        kind: ``"qwen2"`` (``Qwen2ForCausalLM``, ChatML template, no BOS, turns end with
            ``<|im_end|>``) or ``"llama"`` (``LlamaForCausalLM``, a Llama 3 style template that
            writes ``<|begin_of_text|>`` itself, turns end with ``<|eot_id|>``).
        seed: weights are a deterministic function of the seed.
        tokenizer: a tokenizer to use instead of the word-level one (e.g. a real Qwen2.5
            tokenizer with a chat template); the embedding gets one row per token.

    Returns:
        ``(model, tokenizer)``: float32, eval mode, greedy ``generation_config`` of at most 20 tokens.
    """
    from types import SimpleNamespace

    import transformers

    if kind not in CAUSAL_LMS:
        raise ValueError(f"Unknown causal LM {kind!r}; expected one of {', '.join(CAUSAL_LMS)}.")
    if tokenizer is None:
        if kind == "qwen2":
            tokenizer = _tokenizer(
                _chatml_template("", "You are a helpful assistant."),
                bos=None,
                eos="<|im_end|>",
                pad="<|endoftext|>",
                other_specials=_CHATML,
                extra_words=_CAUSAL_LM_WORDS,
            )
        else:
            tokenizer = _tokenizer(
                _LLAMA3_TEMPLATE,
                bos="<|begin_of_text|>",
                eos="<|eot_id|>",
                pad="<|finetune_right_pad|>",
                other_specials=_LLAMA3,
                extra_words=_CAUSAL_LM_WORDS,
            )
    config = (_qwen2_text if kind == "qwen2" else _llama_text)(tokenizer, tie_word_embeddings=True)
    cls = getattr(transformers, CAUSAL_LMS[kind])
    model, _ = finish(cls, config, SimpleNamespace(tokenizer=tokenizer), seed)
    return model, tokenizer


def save_tiny_causal_lm(kind: str, out_dir: str | os.PathLike, *, seed: int = 0) -> pathlib.Path:
    """:func:`build_tiny_causal_lm` saved into ``out_dir`` (``config.json``, safetensors, tokenizer
    with its chat template): it reloads with ``AutoModelForCausalLM`` / ``AutoTokenizer``, offline."""
    model, tokenizer = build_tiny_causal_lm(kind, seed=seed)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
