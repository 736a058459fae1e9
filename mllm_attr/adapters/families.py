"""Per-family adapters: only what differs from the generic transformers adapter."""

from __future__ import annotations

from typing import ClassVar

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
