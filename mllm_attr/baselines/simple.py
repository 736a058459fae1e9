"""Sanity floors (method.md §8): a seeded random map and a Gaussian centre prior.

Neither looks at the model; both work with any adapter (closed models included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..maps import normalize_map
from ..types import Generation
from ._model import as_image
from .base import check_seed


@dataclass(frozen=True)
class RandomMap:
    """Uniform noise in ``[0, 1)`` from ``numpy.random.default_rng(seed)``: one value per pixel.

    Ranked by region mean (the replay protocol), it gives a random region ordering that
    changes with the seed.
    """

    name: ClassVar[str] = "random"

    def __call__(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int], *, seed: int = 0
    ) -> np.ndarray:
        """``float32[H, W]`` noise for the image's size."""
        arr = as_image(image)
        rng = np.random.default_rng(check_seed(seed))
        return rng.random(arr.shape[:2], dtype=np.float32)


@dataclass(frozen=True)
class CentrePrior:
    """A Gaussian bump at the image centre: ``exp(-((y-cy)^2/(2(σH)^2) + (x-cx)^2/(2(σW)^2)))``.

    Args:
        sigma: standard deviation as a fraction of the image height/width (default 0.25).
    """

    sigma: float = 0.25
    name: ClassVar[str] = "centre"

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and np.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0; got {self.sigma!r}")

    def __call__(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int], *, seed: int = 0
    ) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]`` (1 at the centre); ``seed`` is not used."""
        check_seed(seed)
        h, w = as_image(image).shape[:2]
        y = (np.arange(h) + 0.5 - h / 2.0) / (self.sigma * h)
        x = (np.arange(w) + 0.5 - w / 2.0) / (self.sigma * w)
        return normalize_map(np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)))
