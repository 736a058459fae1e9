"""Model adapters: the :class:`ModelAdapter` contract, families and :func:`load_adapter`."""

from .base import ModelAdapter, Scorer
from .callable import CallableAdapter
from .families import (
    Gemma3Adapter,
    Idefics3Adapter,
    InternVLAdapter,
    LlavaAdapter,
    LlavaNextAdapter,
    LlavaOnevisionAdapter,
    PaliGemmaAdapter,
    Qwen25VLAdapter,
    Qwen2VLAdapter,
    Qwen3VLAdapter,
    SmolVLMAdapter,
)
from .hf import HFAdapter, HFScorer
from .registry import ADAPTERS, load_adapter, register, supported_families

__all__ = [
    "ADAPTERS",
    "CallableAdapter",
    "Gemma3Adapter",
    "Idefics3Adapter",
    "InternVLAdapter",
    "LlavaNextAdapter",
    "LlavaOnevisionAdapter",
    "PaliGemmaAdapter",
    "Qwen3VLAdapter",
    "SmolVLMAdapter",
    "HFAdapter",
    "HFScorer",
    "LlavaAdapter",
    "ModelAdapter",
    "Qwen25VLAdapter",
    "Qwen2VLAdapter",
    "Scorer",
    "load_adapter",
    "register",
    "supported_families",
]
