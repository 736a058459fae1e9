"""mllm_attr: black-box token attribution for multimodal LLMs (EAGLE).

Three lines to a result::

    adapter = load_adapter("shapes-llava")  # or "Qwen/Qwen2.5-VL-3B-Instruct", dtype="bfloat16", device_map="auto"
    gen = adapter.generate(image, "Describe the image.")
    expl = Explainer(adapter, n_regions=64)(image, gen, target="diamond")

The names below are imported on first use: ``import mllm_attr`` loads neither torch nor
transformers (a :class:`CallableAdapter` for a closed model never needs them).
"""

from ._lazy import lazy_exports
from ._version import __version__

_EXPORTS = {
    "AllTokens": ".targets",
    "Answer": ".targets",
    "CallableAdapter": ".adapters.callable",
    "Explainer": ".explainer",
    "Explanation": ".explanation",
    "Generation": ".types",
    "HFAdapter": ".adapters.hf",
    "ModelAdapter": ".adapters.base",
    "ModelNotFoundError": ".adapters.base",
    "Positions": ".targets",
    "Scorer": ".adapters.base",
    "Segmentation": ".segment",
    "TargetNotFoundError": ".targets",
    "Word": ".targets",
    "check_label_map": ".segment",
    "explain_requests": ".evaluation.requests",
    "generation_from_text": ".adapters.callable",
    "load_adapter": ".adapters.registry",
    "load_image": ".image",
    "load_video": ".video",
    "Video": ".video",
    "masks_to_labels": ".segment",
    "segment": ".segment",
    "supported_families": ".adapters.registry",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["__version__", *sorted(_EXPORTS)]
