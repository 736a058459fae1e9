"""Model adapters: the :class:`ModelAdapter` contract, families and :func:`load_adapter`.

Names are imported on first use: the contract (:mod:`.base`) and :class:`CallableAdapter` need
no transformers; the Hugging Face families (:mod:`.hf`, :mod:`.families`, :mod:`.registry`) do.
"""

from .._lazy import lazy_exports

_FAMILIES = (
    "Gemma3Adapter",
    "Idefics3Adapter",
    "InternVLAdapter",
    "LlavaAdapter",
    "LlavaNextAdapter",
    "LlavaOnevisionAdapter",
    "PaliGemmaAdapter",
    "Qwen25VLAdapter",
    "Qwen2VLAdapter",
    "Qwen3VLAdapter",
    "SmolVLMAdapter",
)
_EXPORTS = {
    "ModelAdapter": ".base",
    "ModelNotFoundError": ".base",
    "Scorer": ".base",
    "CallableAdapter": ".callable",
    "HFAdapter": ".hf",
    "HFScorer": ".hf",
    "TextAdapter": ".text",
    "TextScorer": ".text",
    "ADAPTERS": ".registry",
    "load_adapter": ".registry",
    "model_family": ".registry",
    "hub_unavailable_reason": ".registry",
    "register": ".registry",
    "supported_families": ".registry",
    **dict.fromkeys(_FAMILIES, ".families"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
