"""Attribution baselines of the evaluation (method.md §8), one interface, scored by one protocol.

Every baseline is an :class:`AttributionMethod`:
``method(adapter, image, generation, positions, *, seed=0) -> float32[H, W]`` in ``[0, 1]`` at the
input image's size. Score a map with :func:`mllm_attr.protocol.score_map` (or
:func:`mllm_attr.protocol.score_method`), which replays insertion/deletion exactly as for EAGLE.

============  ==========================================================  ==================
name          what                                                        needs
============  ==========================================================  ==================
llava_cam     Grad-CAM (+SmoothGrad) on a decoder layer, vision tokens    HF adapter, grads
tam           Token Activation Map (logit lens + interference removal)    HF adapter
igos_pp       IGOS++-style optimised insertion+deletion mask, blur base   HF adapter, grads
random        seeded uniform noise                                        any adapter
centre        Gaussian centre prior                                       any adapter
============  ==========================================================  ==================

White-box baselines support the families in :data:`SUPPORTED_FAMILIES` (vision-token geometry
in :mod:`mllm_attr.baselines._vision`).

Example:
    >>> method = get_baseline("tam")                                        # doctest: +SKIP
    >>> sal = method(adapter, image, generation, positions=[2], seed=0)      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..maps import normalize_map
from ._vision import SUPPORTED_FAMILIES
from .base import AttributionMethod, normalise_map
from .cam import LlavaCAM
from .igos import IGOSPP
from .simple import CentrePrior, RandomMap
from .tam import TAM, rank_gaussian_filter

#: name -> baseline class (each a frozen dataclass whose fields are its options).
BASELINES: dict[str, type] = {
    "llava_cam": LlavaCAM,
    "tam": TAM,
    "igos_pp": IGOSPP,
    "random": RandomMap,
    "centre": CentrePrior,
}


def get_baseline(name: str, **options: Any) -> AttributionMethod:
    """Build the baseline ``name`` with ``options`` (the class's fields).

    Raises:
        ValueError: unknown name (the message lists the valid names) or unknown option.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    cls = BASELINES[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for baseline {name!r}; allowed: {allowed}")
    return cls(**options)


def baseline_options(method: AttributionMethod) -> dict[str, Any]:
    """The options of a baseline instance (its dataclass fields), for storing with results."""
    if dataclasses.is_dataclass(method):
        return dataclasses.asdict(method)
    return {}


__all__ = [
    "BASELINES",
    "SUPPORTED_FAMILIES",
    "AttributionMethod",
    "CentrePrior",
    "IGOSPP",
    "LlavaCAM",
    "RandomMap",
    "TAM",
    "baseline_options",
    "get_baseline",
    "normalise_map",
    "normalize_map",
    "rank_gaussian_filter",
]
