"""Model adapters: the :class:`ModelAdapter` contract, families and :func:`load_adapter`."""

from .base import ModelAdapter, Scorer
from .families import LlavaAdapter, Qwen25VLAdapter, Qwen2VLAdapter
from .hf import HFAdapter, HFScorer
from .registry import ADAPTERS, load_adapter, register, supported_families

__all__ = [
    "ADAPTERS",
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
