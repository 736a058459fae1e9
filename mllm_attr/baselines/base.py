"""The interface every attribution baseline implements, and shared helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..maps import normalize_map
from ..types import Generation


@runtime_checkable
class AttributionMethod(Protocol):
    """A saliency-map method: ``method(adapter, image, generation, positions, seed=0) -> float32[H, W]``.

    The map has the input image's size, values in ``[0, 1]`` (higher = more important for the
    target tokens at ``positions`` of ``generation``), and is a deterministic function of the
    arguments and ``seed``. Maps are scored by :func:`mllm_attr.protocol.score_map`, the same
    replay protocol as EAGLE.

    Example:
        >>> sal = get_baseline("llava_cam", n_samples=2)(adapter, image, gen, [3], seed=0)  # doctest: +SKIP
    """

    name: str

    def __call__(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int], *, seed: int = 0
    ) -> np.ndarray: ...


#: Deprecated spelling of :func:`mllm_attr.maps.normalize_map` (the package's one normaliser).
normalise_map = normalize_map


def check_seed(seed: Any) -> int:
    """``seed`` as an ``int``, after checking it.

    Raises:
        ValueError: ``seed`` is not an integer >= 0 (a bool is refused too).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)
