"""The adapter contract between the attribution engine and a model.

An adapter does two things: ``generate`` an answer for an image and a prompt,
and build a :class:`Scorer` for ONE explanation (one image, one answer, the target
positions). The scorer returns teacher-forced probabilities of the target tokens
for batches of perturbed images. All per-explanation state lives on the scorer,
never on the adapter, so one adapter can serve many explanations (and threads).
"""

from __future__ import annotations

import abc
import time
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..image import ImageLike, load_image
from ..mask import compose
from ..types import ForwardCounter, Generation


class Scorer(abc.ABC):
    """Teacher-forced target-token probabilities for perturbed copies of one image.

    Args:
        image: ``uint8[H, W, 3]`` RGB original.
        baseline: ``uint8[H, W, 3]`` RGB fill for hidden pixels.
        positions: 0-based target positions in the generated tokens.
        batch_size: images per forward pass.
    """

    def __init__(self, image: np.ndarray, baseline: np.ndarray, positions: Sequence[int], batch_size: int = 16):
        if image.shape != baseline.shape:
            raise ValueError(f"baseline shape {baseline.shape} differs from image shape {image.shape}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.image = image
        self.baseline = baseline
        self.positions = tuple(int(p) for p in positions)
        self.batch_size = int(batch_size)
        self.counter = ForwardCounter()
        self.seconds = 0.0
        self.labels: np.ndarray | None = None

    def set_regions(self, labels: np.ndarray) -> None:
        """Register the ``int32[H, W]`` label map that :meth:`score_regions` subsets refer to.

        A scorer may precompute per-region data here (the fast path does).
        """
        if labels.shape != self.image.shape[:2]:
            raise ValueError(f"label map shape {labels.shape} differs from image shape {self.image.shape[:2]}")
        self.labels = labels

    def score_regions(self, table: np.ndarray) -> np.ndarray:
        """Score subsets of regions given as ``bool[B, n_regions]`` rows: ``float64[B, K]``."""
        if self.labels is None:
            raise RuntimeError("call set_regions(labels) before score_regions")
        table = np.asarray(table, dtype=bool)
        return self._chunked(table, self._score_regions_batch)

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        return self._score_keep_batch(table[:, self.labels])

    @property
    def forwards(self) -> int:
        """Images scored so far (the unit the paper counts: one image = one forward)."""
        return self.counter.images

    @abc.abstractmethod
    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        """``uint8[B, H, W, 3]`` -> ``float64[B, K]`` for one batch that fits in memory."""

    def _score_keep_batch(self, keep: np.ndarray) -> np.ndarray:
        """``bool[B, H, W]`` keep-masks -> ``float64[B, K]``; a fast path may override this."""
        images = np.stack([compose(self.image, self.baseline, k) for k in keep])
        return self._score_batch(images)

    def score_images(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Score arbitrary ``uint8[H, W, 3]`` images of the original's size: ``float64[B, K]``."""
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        return self._chunked(arr, self._score_batch)

    def score_keep(self, keep: np.ndarray) -> np.ndarray:
        """Score images that show the original where ``keep`` (``bool[B, H, W]``) and the baseline elsewhere."""
        keep = np.asarray(keep, dtype=bool)
        if keep.ndim == 2:
            keep = keep[None]
        if keep.shape[1:] != self.image.shape[:2]:
            raise ValueError(f"keep-mask shape {keep.shape[1:]} differs from image shape {self.image.shape[:2]}")
        return self._chunked(keep, self._score_keep_batch)

    def _chunked(self, batch: np.ndarray, fn: Any) -> np.ndarray:
        out = []
        t0 = time.perf_counter()
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            scores = np.asarray(fn(chunk), dtype=np.float64)
            if scores.shape != (len(chunk), len(self.positions)):
                raise ValueError(
                    f"scorer returned shape {scores.shape}; expected {(len(chunk), len(self.positions))}"
                    " (images x explained tokens)"
                )
            if not np.isfinite(scores).all():
                bad = int((~np.isfinite(scores)).sum())
                raise ValueError(
                    f"the model returned {bad} non-finite probabilities (NaN/inf) out of {scores.size}; "
                    "expected finite values in [0, 1]. A float16 overflow is the usual cause: "
                    "try dtype='bfloat16' or 'float32'"
                )
            self.counter.add(len(chunk))
            out.append(scores)
        self.seconds += time.perf_counter() - t0
        if not out:
            return np.zeros((0, len(self.positions)))
        return np.concatenate(out, axis=0)


class ModelAdapter(abc.ABC):
    """What the engine needs from a model. Subclass it, or use :class:`CallableAdapter`."""

    #: registry name of the model family (``"llava"``, ``"qwen2_5_vl"``, ...).
    family: str = "custom"

    @abc.abstractmethod
    def generate(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64, **gen_kwargs: Any) -> Generation:
        """Greedy answer for ``image`` and ``prompt`` with per-token probabilities."""

    @abc.abstractmethod
    def teacher_force(self, image: ImageLike, prompt: str, answer: str) -> Generation:
        """A :class:`Generation` for a user-given ``answer`` (probabilities under the full image)."""

    @abc.abstractmethod
    def scorer(
        self,
        image: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        *,
        baseline: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> Scorer:
        """A :class:`Scorer` for one explanation."""

    def describe(self) -> dict[str, Any]:
        """Settings stored with every result (model name, family, dtype, device)."""
        return {"family": self.family, "adapter": type(self).__name__}

    def default_batch_size(self) -> int:
        """Images per forward pass when the caller gives no batch size (16; subclasses may size it)."""
        return 16


def as_pil(image: ImageLike | np.ndarray) -> Image.Image:
    """RGB PIL image from anything :func:`mllm_attr.image.load_image` accepts."""
    if isinstance(image, Image.Image) and image.mode == "RGB":
        return image
    return load_image(image).pil
