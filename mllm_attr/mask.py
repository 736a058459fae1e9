"""Masking: insertion / deletion images for subsets of regions, RGB in and out.

Insertion image of a subset ``S``: ``I * M_S + B * (1 - M_S)``; deletion image:
``I * (1 - M_S) + B * M_S``, with ``M_S`` the union of the regions in ``S`` and
``B`` the fill image (black, blurred or mean colour) that hidden regions show.

"Fill" is this module's word for what hides a region; "baseline" in this package names the
comparison attribution methods (:mod:`mllm_attr.baselines`). The old names
:data:`BASELINES` / :func:`make_baseline` remain as deprecated aliases.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

#: The fills of hidden regions.
FILLS: tuple[str, ...] = ("black", "blur", "mean")
#: Deprecated name of :data:`FILLS`.
BASELINES = FILLS


def make_fill(image: np.ndarray, kind: str = "black", *, blur_radius: float | None = None) -> np.ndarray:
    """Return the ``uint8[H, W, 3]`` fill image that hidden regions show.

    Args:
        image: ``uint8[H, W, 3]`` RGB.
        kind: ``"black"`` (the reference default), ``"blur"`` (Gaussian, radius ~ 1/10 of the
            shorter side unless ``blur_radius`` is given) or ``"mean"`` (the image's mean colour).
    """
    if kind == "black":
        return np.zeros_like(image)
    if kind == "mean":
        mean = image.reshape(-1, 3).mean(axis=0)
        return np.broadcast_to(np.round(mean).astype(np.uint8), image.shape).copy()
    if kind == "blur":
        radius = blur_radius if blur_radius is not None else max(1.0, min(image.shape[:2]) / 10.0)
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)
    raise ValueError(f"unknown fill {kind!r}; expected one of {list(FILLS)}")


def make_baseline(image: np.ndarray, kind: str = "black", *, blur_radius: float | None = None) -> np.ndarray:
    """Deprecated name of :func:`make_fill`."""
    warnings.warn("mllm_attr.mask.make_baseline is now make_fill", DeprecationWarning, stacklevel=2)
    return make_fill(image, kind, blur_radius=blur_radius)


def resolve_fill(fill: Any, baseline: Any = None, *, where: str = "fill") -> Any:
    """``fill``, or the deprecated ``baseline=`` keyword's value when one was passed (with a
    DeprecationWarning naming ``where``); both given and different is an error."""
    if baseline is None:
        return fill
    warnings.warn(f"{where}: baseline= is now fill= (what hidden regions show)", DeprecationWarning, stacklevel=3)
    default = fill is None or (isinstance(fill, str) and fill == "black")
    same = fill is baseline or (isinstance(fill, str) and isinstance(baseline, str) and fill == baseline)
    if not (default or same):
        raise ValueError(f"{where}: pass fill= only (baseline= is its deprecated old name); got both")
    return baseline


def subset_mask(labels: np.ndarray, subset: Iterable[int], n_regions: int | None = None) -> np.ndarray:
    """``bool[H, W]``: True on the pixels of the regions in ``subset``."""
    n = int(labels.max()) + 1 if n_regions is None else n_regions
    keep = np.zeros(n, dtype=bool)
    idx = np.fromiter(subset, dtype=np.int64)
    if idx.size:
        keep[idx] = True
    return keep[labels]


def compose(image: np.ndarray, fill: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``uint8[H, W, 3]``: ``image`` where ``keep`` is True, ``fill`` elsewhere."""
    return np.where(keep[..., None], image, fill)


def insertion_image(image: np.ndarray, fill: np.ndarray, labels: np.ndarray, subset: Iterable[int]) -> np.ndarray:
    """The image with only the regions in ``subset`` revealed."""
    return compose(image, fill, subset_mask(labels, subset))


def deletion_image(image: np.ndarray, fill: np.ndarray, labels: np.ndarray, subset: Iterable[int]) -> np.ndarray:
    """The image with the regions in ``subset`` replaced by the fill."""
    return compose(image, fill, ~subset_mask(labels, subset))


def keep_masks(labels: np.ndarray, subsets: Sequence[Iterable[int]], n_regions: int | None = None) -> np.ndarray:
    """``bool[B, H, W]``: one keep-mask per subset (for batched composition)."""
    n = int(labels.max()) + 1 if n_regions is None else n_regions
    table = np.zeros((len(subsets), n), dtype=bool)
    for row, subset in enumerate(subsets):
        idx = np.fromiter(subset, dtype=np.int64)
        if idx.size:
            table[row, idx] = True
    return table[:, labels]
