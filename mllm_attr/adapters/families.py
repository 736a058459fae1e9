"""Per-family adapters: only what differs from the generic transformers adapter."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .hf import HFAdapter


class LlavaAdapter(HFAdapter):
    """LLaVA-1.5 style models (``LlavaForConditionalGeneration``): one fixed-size view per image."""

    family: ClassVar[str] = "llava"
    model_types: ClassVar[tuple[str, ...]] = ("llava",)
    model_class: ClassVar[str] = "LlavaForConditionalGeneration"


class Qwen2VLAdapter(HFAdapter):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration``): dynamic resolution, M-RoPE.

    The processor's ``mm_token_type_ids`` drive M-RoPE position ids; they are extended
    with zeros (text) over the teacher-forced answer tokens.
    """

    family: ClassVar[str] = "qwen2_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_vl",)
    model_class: ClassVar[str] = "Qwen2VLForConditionalGeneration"


class Qwen25VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``)."""

    family: ClassVar[str] = "qwen2_5_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl",)
    model_class: ClassVar[str] = "Qwen2_5_VLForConditionalGeneration"


class Qwen3VLAdapter(Qwen2VLAdapter):
    """Qwen3-VL (``Qwen3VLForConditionalGeneration``), where transformers has it."""

    family: ClassVar[str] = "qwen3_vl"
    model_types: ClassVar[tuple[str, ...]] = ("qwen3_vl",)
    model_class: ClassVar[str] = "Qwen3VLForConditionalGeneration"


class LlavaNextAdapter(HFAdapter):
    """LLaVA-NeXT (``LlavaNextForConditionalGeneration``): "anyres" multi-crop views + ``image_sizes``.

    Every perturbed image has the original's size, so the crop layout and the number of image
    tokens stay fixed across candidates; crops padded by the processor are constant elements
    that the fast path leaves untouched.
    """

    family: ClassVar[str] = "llava_next"
    model_types: ClassVar[tuple[str, ...]] = ("llava_next",)
    model_class: ClassVar[str] = "LlavaNextForConditionalGeneration"


class LlavaOnevisionAdapter(HFAdapter):
    """LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): anyres-max multi-crop."""

    family: ClassVar[str] = "llava_onevision"
    model_types: ClassVar[tuple[str, ...]] = ("llava_onevision",)
    model_class: ClassVar[str] = "LlavaOnevisionForConditionalGeneration"


class InternVLAdapter(HFAdapter):
    """InternVL in transformers' native format (``InternVLForConditionalGeneration``).

    The processor's ``crop_to_patches`` setting (tiling into 448px patches plus a thumbnail)
    overrides the image processor's; it is passed on for the per-candidate image batches too.
    """

    family: ClassVar[str] = "internvl"
    model_types: ClassVar[tuple[str, ...]] = ("internvl",)
    model_class: ClassVar[str] = "InternVLForConditionalGeneration"


class Idefics3Adapter(HFAdapter):
    """Idefics3 (``Idefics3ForConditionalGeneration``): image splitting into tiles + a global view.

    Its image processor reads a flat list as the images of ONE sample; a batch of candidates
    is therefore passed as one single-image sample each. The chat template writes
    ``<|begin_of_text|>``, which the tokenizer would add again: see :meth:`HFAdapter.prompt_inputs`.
    """

    family: ClassVar[str] = "idefics3"
    model_types: ClassVar[tuple[str, ...]] = ("idefics3",)
    model_class: ClassVar[str] = "Idefics3ForConditionalGeneration"

    def image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """Image tensors for a batch, each image passed as a single-image sample of its own."""
        return dict(self.processor.image_processor(images=[[im] for im in images], return_tensors="pt"))


class SmolVLMAdapter(Idefics3Adapter):
    """SmolVLM (``SmolVLMForConditionalGeneration``), Idefics3's architecture."""

    family: ClassVar[str] = "smolvlm"
    model_types: ClassVar[tuple[str, ...]] = ("smolvlm",)
    model_class: ClassVar[str] = "SmolVLMForConditionalGeneration"


class PaliGemmaAdapter(HFAdapter):
    """PaliGemma (``PaliGemmaForConditionalGeneration``): a prefix-LM, usually without a chat template.

    The prompt is passed as the prefix (the processor inserts the image tokens); generated tokens
    are the suffix, ``token_type_ids = 1`` (causal), so teacher forcing cannot look ahead.
    """

    family: ClassVar[str] = "paligemma"
    model_types: ClassVar[tuple[str, ...]] = ("paligemma",)
    model_class: ClassVar[str] = "PaliGemmaForConditionalGeneration"

    def chat_text(self, prompt: str) -> str:
        """The chat-formatted prompt when the processor has a chat template, else ``prompt`` unchanged."""
        template = getattr(self.processor, "chat_template", None)
        if template:
            return super().chat_text(prompt)
        return prompt

    def text_type_id(self, key: str) -> int:
        """1 for ``token_type_ids`` (generated suffix tokens are causal), 0 for any other key."""
        return 1 if key == "token_type_ids" else 0


class Gemma3Adapter(HFAdapter):
    """Gemma 3 (``Gemma3ForConditionalGeneration``); image tokens are marked by ``token_type_ids = 1``.

    The chat template writes ``<bos>``, which the tokenizer would add again: see :meth:`HFAdapter.prompt_inputs`.
    """

    family: ClassVar[str] = "gemma3"
    model_types: ClassVar[tuple[str, ...]] = ("gemma3",)
    model_class: ClassVar[str] = "Gemma3ForConditionalGeneration"
