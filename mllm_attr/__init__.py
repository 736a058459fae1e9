"""mllm_attr: black-box token attribution for multimodal LLMs (EAGLE).

Three lines to a result::

    adapter = load_adapter("Qwen/Qwen2.5-VL-3B-Instruct", dtype="bfloat16", device_map="auto")
    gen = adapter.generate(image, "Describe the image.")
    expl = Explainer(adapter, n_regions=64)(image, gen, target="cat")
"""

__version__ = "0.1.0"

from .adapters import HFAdapter, ModelAdapter, Scorer, load_adapter, supported_families
from .adapters.callable import CallableAdapter, generation_from_text
from .explainer import Explainer
from .explanation import Explanation
from .image import load_image
from .segment import Segmentation, check_label_map, masks_to_labels, segment
from .targets import AllTokens, Answer, Positions, TargetNotFoundError, Word
from .types import Generation

__all__ = [
    "AllTokens",
    "Answer",
    "CallableAdapter",
    "Explainer",
    "Explanation",
    "Generation",
    "HFAdapter",
    "ModelAdapter",
    "Positions",
    "Scorer",
    "Segmentation",
    "TargetNotFoundError",
    "Word",
    "__version__",
    "check_label_map",
    "generation_from_text",
    "load_adapter",
    "load_image",
    "masks_to_labels",
    "segment",
    "supported_families",
]
