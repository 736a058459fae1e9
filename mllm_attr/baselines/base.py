"""The interface every attribution baseline implements, and shared helpers."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

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


def normalise_map(saliency: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to ``float32`` in ``[0, 1]``; a constant map becomes all zeros.

    Raises:
        ValueError: the map is not 2-D or holds NaN/inf.
    """
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim != 2:
        raise ValueError(f"expected a 2-D saliency map [H, W]; got shape {sal.shape}")
    if not np.all(np.isfinite(sal)):
        raise ValueError("saliency map holds NaN or infinite values")
    lo, hi = float(sal.min()), float(sal.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(sal.shape, dtype=np.float32)
    return ((sal - lo) / (hi - lo)).astype(np.float32)


def check_seed(seed: Any) -> int:
    """``seed`` as an ``int``, after checking it.

    Raises:
        ValueError: ``seed`` is not an integer >= 0 (a bool is refused too).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)
