"""Plots as free functions taking results (matplotlib, RGB, Agg backend when headless)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .explanation import Explanation


def _plt() -> Any:
    import matplotlib

    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.55, cmap: str = "jet") -> np.ndarray:
    """``uint8[H, W, 3]``: the saliency (``[0, 1]``) blended over the RGB image."""
    import matplotlib

    colours = matplotlib.colormaps[cmap](np.clip(saliency, 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float64) / 255.0 + alpha * colours
    return np.clip(blended * 255.0, 0, 255).astype(np.uint8)


def plot_heatmap(expl: "Explanation", ax: Any = None, *, alpha: float = 0.55) -> Any:
    """Draw the heatmap overlay, titled with the explained words; returns the axes."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(overlay(expl.image, expl.saliency(), alpha=alpha))
    answer = expl.generation.text if len(expl.generation.text) <= 60 else expl.generation.text[:57] + "..."
    kind = "counterfactual" if expl.generation.counterfactual else "answer"
    ax.set_title(
        f"{expl.target_text!r}\n{kind}: {answer}\nins AUC {expl.insertion_auc():.3f} · del AUC {expl.deletion_auc():.3f}",
        fontsize=9,
    )
    ax.axis("off")
    return ax


def save_heatmap(expl: "Explanation", path: str | os.PathLike) -> Path:
    """Write the heatmap overlay as a PNG."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5.6))
    plot_heatmap(expl, ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
