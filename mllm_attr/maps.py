"""Saliency-map utilities shared by the engine, the baselines, the analyses and the plots:
one normaliser and one resampler, so that every map in the package is scaled the same way."""

from __future__ import annotations

import numpy as np
from PIL import Image


def normalize_map(saliency: np.ndarray) -> np.ndarray:
    """``float32[H, W]`` min-max scaled to ``[0, 1]``; a constant map (range within ``1e-12`` of its
    magnitude) becomes all zeros.

    Raises:
        ValueError: the map is not 2-D or holds NaN / infinite values.
    """
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected a 2-D saliency map [H, W]; got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("the saliency map holds NaN or infinite values")
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(s.shape, dtype=np.float32)
    return ((s - lo) / (hi - lo)).astype(np.float32)


def resize_map(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``float32[H, W]``: a map brought to ``shape = (H, W)`` (bilinear; unchanged when it already fits)."""
    s = np.asarray(saliency, dtype=np.float32)
    if s.shape == tuple(shape):
        return s
    img = Image.fromarray(np.ascontiguousarray(s), mode="F")
    return np.asarray(img.resize((int(shape[1]), int(shape[0])), Image.BILINEAR), dtype=np.float32)


__all__ = ["normalize_map", "resize_map"]
