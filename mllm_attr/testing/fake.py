"""A fake model whose scores are a known function of the visible pixels (for exact tests).

Token ``k``'s probability is ``floor + (1 - floor) * Σ w_k · visible / Σ w_k``, where
``visible`` marks pixels equal to the original image and ``w_k`` is a non-negative
weight map per word. With ``w_k`` constant on regions, greedy orderings, curves and
AUCs can be computed by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..adapters.callable import CallableAdapter, generation_from_text
from ..types import Generation


def make_fake_adapter(
    image: np.ndarray,
    weights: dict[str, np.ndarray],
    *,
    answer: str | None = None,
    floor: float = 0.0,
) -> CallableAdapter:
    """A :class:`CallableAdapter` whose word ``w`` has probability = weighted visible fraction.

    Args:
        image: ``uint8[H, W, 3]``: the original (pixels must differ from the black baseline).
        weights: word -> ``float[H, W]`` weight map; words not listed get uniform weights.
        answer: the text ``generate`` returns (default: the words of ``weights`` joined by spaces).
        floor: probability with nothing visible.
    """
    original = np.asarray(image)
    text = answer if answer is not None else " ".join(weights)

    def score(images: np.ndarray, generation: Generation, positions: Sequence[int]) -> np.ndarray:
        visible = np.all(images == original[None], axis=-1).astype(np.float64)  # [B, H, W]
        out = np.empty((len(images), len(positions)))
        for j, p in enumerate(positions):
            word = generation.tokens[p].strip()
            w = weights.get(word, np.ones(original.shape[:2]))
            out[:, j] = floor + (1 - floor) * (visible * w).sum(axis=(1, 2)) / w.sum()
        return out

    def generate(img: np.ndarray, prompt: str) -> str:
        return text

    return CallableAdapter(score, generate, name="fake", batch_size=7)


__all__ = ["generation_from_text", "make_fake_adapter"]
