"""Faithfulness and localisation metrics (method.md §5)."""

from __future__ import annotations

import numpy as np


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under ``y(x)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two 1-D arrays of one length; got shapes {x.shape} and {y.shape}")
    return float(np.trapezoid(y, x))


def insertion_curve(areas: np.ndarray, ins: np.ndarray, p_blank: float) -> tuple[np.ndarray, np.ndarray]:
    """``x = [0, a_1..a_n]``, ``y = [p(blank), ins_1..ins_n]`` (``a_n = 1``, ``ins_n = p(full)``)."""
    return np.concatenate([[0.0], areas]), np.concatenate([[p_blank], ins])


def deletion_curve(areas: np.ndarray, dele: np.ndarray, p_full: float) -> tuple[np.ndarray, np.ndarray]:
    """``x = [0, a_1..a_n]`` (removed area), ``y = [p(full), del_1..del_n]`` (``del_n = p(blank)``)."""
    return np.concatenate([[0.0], areas]), np.concatenate([[p_full], dele])


def pointing_game(saliency: np.ndarray, target: np.ndarray) -> bool:
    """Hit if a global maximum of ``saliency`` lies inside ``target`` (``bool[H, W]``).

    Ties: every pixel holding the maximum counts, and the hit is decided by their
    centroid's nearest maximum pixel — the same rule for every method, so a flat map
    (all pixels tied) points at the image centre rather than at an arbitrary corner.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    target = np.asarray(target, dtype=bool)
    if saliency.shape != target.shape:
        raise ValueError(f"saliency shape {saliency.shape} differs from target shape {target.shape}")
    ys, xs = np.nonzero(saliency >= saliency.max() - 1e-12)
    cy, cx = ys.mean(), xs.mean()
    j = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return bool(target[ys[j], xs[j]])


def box_mask(shape: tuple[int, int], box_xywh: tuple[float, float, float, float]) -> np.ndarray:
    """``bool[H, W]`` of a COCO ``[x, y, w, h]`` box (pixels whose centre lies inside)."""
    h, w = shape
    x, y, bw, bh = box_xywh
    yy = np.arange(h)[:, None] + 0.5
    xx = np.arange(w)[None, :] + 0.5
    return (xx >= x) & (xx <= x + bw) & (yy >= y) & (yy <= y + bh)
