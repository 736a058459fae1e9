"""Sparsification: split an image into regions, as ONE ``int32[H, W]`` label map.

Three segmenters are available: ``"slic"`` (superpixels, the EAGLE default),
``"grid"`` (a regular grid) and ``"felzenszwalb"``. Labels are always the
consecutive integers ``0..n-1``; the requested and the actual count are both kept,
because superpixel methods rarely return exactly the count asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SEGMENTERS: tuple[str, ...] = ("slic", "grid", "felzenszwalb")


@dataclass(frozen=True)
class Segmentation:
    """A label map and how it was made.

    Attributes:
        labels: ``int32[H, W]`` region index per pixel, values ``0..n_regions-1``.
        method: segmenter name.
        requested: the number of regions asked for.
        params: the segmenter's settings.
    """

    labels: np.ndarray
    method: str
    requested: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_regions(self) -> int:
        """The actual number of regions."""
        return int(self.labels.max()) + 1

    def areas(self) -> np.ndarray:
        """``float64[n_regions]``: the fraction of the image each region covers."""
        counts = np.bincount(self.labels.ravel(), minlength=self.n_regions)
        return counts / self.labels.size


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Map arbitrary labels to consecutive ``0..n-1`` (ordered by first appearance in raster order)."""
    flat = labels.ravel()
    _, first_idx, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_idx))
    return order[inverse].reshape(labels.shape).astype(np.int32)


def grid_labels(height: int, width: int, n_regions: int) -> np.ndarray:
    """A regular grid of about ``n_regions`` cells whose aspect follows the image's."""
    rows = max(1, round(math.sqrt(n_regions * height / width)))
    rows = min(rows, height)
    cols = max(1, min(width, round(n_regions / rows)))
    row_idx = np.minimum((np.arange(height) * rows) // height, rows - 1)
    col_idx = np.minimum((np.arange(width) * cols) // width, cols - 1)
    return (row_idx[:, None] * cols + col_idx[None, :]).astype(np.int32)


def _slic(image: np.ndarray, n_regions: int, compactness: float = 20.0, sigma: float = 0.0) -> np.ndarray:
    from skimage.segmentation import slic

    return slic(image, n_segments=n_regions, compactness=compactness, sigma=sigma, start_label=0)


def _felzenszwalb(image: np.ndarray, n_regions: int, sigma: float = 0.8, min_size: int | None = None) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    h, w = image.shape[:2]
    # scale grows with the wanted region size so the count lands near the request.
    scale = max(1.0, h * w / max(n_regions, 1) / 8.0)
    if min_size is None:
        min_size = max(1, int(h * w / max(n_regions, 1) / 4))
    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)


_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "slic": _slic,
    "felzenszwalb": _felzenszwalb,
}


#: option -> (smallest allowed value, whether that value itself is excluded, integer only).
_OPTION_RULES: dict[str, tuple[float, bool, bool]] = {
    "compactness": (0.0, True, False),
    "sigma": (0.0, False, False),
    "min_size": (1, False, True),
}


def _check_option(method: str, name: str, value: Any) -> None:
    """Refuse option values the segmenters would fail on deep inside (0, inf, nan, wrong types)."""
    low, strict, integer = _OPTION_RULES[name]
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"option {name} of segmenter {method!r} must be {'an integer' if integer else 'a number'}; got {value!r}")
    if not np.isfinite(value) or value < low or (strict and value == low):
        raise ValueError(f"option {name} of segmenter {method!r} must be finite and {'>' if strict else '>='} {low:g}; got {value!r}")


def segment(image: np.ndarray, n_regions: int = 64, method: str = "slic", **params: Any) -> Segmentation:
    """Split an RGB image into about ``n_regions`` regions.

    Args:
        image: ``uint8[H, W, 3]`` RGB.
        n_regions: requested count, at least 2 and at most the number of pixels.
        method: one of :data:`SEGMENTERS`.
        **params: segmenter options (``compactness``/``sigma`` for SLIC, ``sigma``/``min_size``
            for felzenszwalb).

    Raises:
        ValueError: unknown method or unknown option, or a region count the image cannot hold.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an RGB image as a numpy array of shape (H, W, 3); got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3); got shape {image.shape}")
    h, w = image.shape[:2]
    if isinstance(n_regions, bool) or not isinstance(n_regions, (int, np.integer)):
        raise TypeError(f"n_regions must be an integer; got {n_regions!r}")
    if n_regions < 2:
        raise ValueError(f"n_regions must be at least 2; got {n_regions}")
    if n_regions > h * w:
        raise ValueError(f"n_regions={n_regions} is more than the {h}x{w}={h * w} pixels of the image")
    if method == "grid":
        if params:
            raise ValueError(f"the grid segmenter takes no options; got {sorted(params)}")
        labels = grid_labels(h, w, int(n_regions))
    elif method in _METHODS:
        import inspect

        allowed = set(inspect.signature(_METHODS[method]).parameters) - {"image", "n_regions"}
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for segmenter {method!r}; allowed: {sorted(allowed)}")
        for key, value in params.items():
            _check_option(method, key, value)
        labels = _METHODS[method](image, int(n_regions), **params)
        if method == "slic" and "compactness" not in params:
            # Textured images can collapse into a few superpixels; a more compact (grid-like)
            # setting recovers the requested granularity. The settings used are recorded.
            compactness = 20.0
            while _relabel(np.asarray(labels)).max() + 1 < n_regions / 2 and compactness < 2000:
                compactness *= 5
                labels = _slic(image, int(n_regions), compactness=compactness, **params)
            params = {**params, "compactness": compactness}
    else:
        raise ValueError(f"unknown segmenter {method!r}; expected one of {list(SEGMENTERS)}")
    labels = _relabel(np.asarray(labels))
    if labels.max() < 1:
        # A uniform image gives one superpixel; fall back to a grid so there is something to rank.
        labels = grid_labels(h, w, int(n_regions))
        params = {**params, "fallback": "grid (segmenter returned a single region)"}
    return Segmentation(labels=labels, method=method, requested=int(n_regions), params=dict(params))
