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
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..image import ImageLike, load_image
from ..mask import compose
from ..types import ForwardCounter, Generation


class ModelNotFoundError(FileNotFoundError):
    """No model where :func:`~mllm_attr.adapters.load_adapter` was told to look: a local path
    that does not exist, or a hub id that is neither in the local Hugging Face cache nor
    downloadable now (offline). Raised before transformers is called; the message says what was
    looked for, where, and how to load the embedded model instead."""


class Scorer(abc.ABC):
    """Teacher-forced target-token probabilities for perturbed copies of one image.

    Args:
        image: ``uint8[H, W, 3]`` RGB original.
        fill: ``uint8[H, W, 3]`` RGB fill for hidden pixels.
        positions: 0-based target positions in the generated tokens.
        batch_size: images per forward pass.

    Extension points for subclasses (protected, stable):

    * :meth:`_score_batch` (required): ``uint8[B, H, W, 3]`` images -> ``float64[B, K]``;
    * :meth:`_score_keep_batch` / :meth:`_score_regions_batch`: faster paths for keep-masks or
      region tables (default: compose the images and call :meth:`_score_batch`);
    * :meth:`_region_table`: the input checks of :meth:`score_regions`, for methods that take
      region tables alongside other inputs;
    * :meth:`_chunked`: batching in ``batch_size`` chunks with the output checks (shape,
      finiteness), forward counting and timing; a subclass that scores inputs of its own kind
      (e.g. regions plus prompt tokens, :mod:`mllm_attr.analysis.prompt_tokens`) goes through
      it so that its checks and counts are those of every scorer.
    """

    def __init__(self, image: np.ndarray, fill: np.ndarray, positions: Sequence[int], batch_size: int = 16):
        if image.shape != fill.shape:
            raise ValueError(f"fill shape {fill.shape} differs from image shape {image.shape}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.image = image
        self.fill = fill
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

    @property
    def baseline(self) -> np.ndarray:
        """Deprecated name of :attr:`fill`."""
        warnings.warn("Scorer.baseline is now Scorer.fill", DeprecationWarning, stacklevel=2)
        return self.fill

    @property
    def n_regions(self) -> int | None:
        """Regions of the registered label map (its largest label plus one); ``None`` before :meth:`set_regions`."""
        return None if self.labels is None else int(self.labels.max()) + 1

    def score_regions(self, table: np.ndarray) -> np.ndarray:
        """Score subsets of regions given as ``bool[B, n_regions]`` rows (one row: ``bool[n_regions]``):
        ``float64[B, K]``.

        Raises:
            RuntimeError: no label map registered (:meth:`set_regions`).
            ValueError: the table is not ``[B, n_regions]``.
        """
        return self._chunked(self._region_table(table, "score_regions"), self._score_regions_batch)

    def _region_table(self, table: np.ndarray, caller: str = "score_regions") -> np.ndarray:
        """``table`` as ``bool[B, n_regions]`` (a single row becomes one subset), checked against the label map.

        Raises:
            RuntimeError: no label map registered (``caller`` names the method in the message).
            ValueError: not a 1-D / 2-D table, or its column count is not the label map's region count.
        """
        if self.labels is None:
            raise RuntimeError(f"call set_regions(labels) before {caller}")
        table = np.asarray(table, dtype=bool)
        if table.ndim == 1:
            table = table[None]
        n = self.n_regions
        if table.ndim != 2 or table.shape[1] != n:
            raise ValueError(
                f"expected a region table of shape (B, {n}) (one column per region of the label map); "
                f"got shape {table.shape}"
            )
        return table

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
        images = np.stack([compose(self.image, self.fill, k) for k in keep])
        return self._score_batch(images)

    def score_images(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Score arbitrary ``uint8[H, W, 3]`` images of the original's size: ``float64[B, K]``."""
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        return self._chunked(arr, self._score_batch)

    def score_keep(self, keep: np.ndarray) -> np.ndarray:
        """Score images that show the original where ``keep`` (``bool[B, H, W]``) and the fill elsewhere."""
        keep = np.asarray(keep, dtype=bool)
        if keep.ndim == 2:
            keep = keep[None]
        if keep.shape[1:] != self.image.shape[:2]:
            raise ValueError(f"keep-mask shape {keep.shape[1:]} differs from image shape {self.image.shape[:2]}")
        return self._chunked(keep, self._score_keep_batch)

    def _chunked(self, batch: np.ndarray, fn: Callable[[np.ndarray], Any]) -> np.ndarray:
        """Score ``batch`` (rows of any kind: images, keep-masks, region tables, ...) in chunks of
        ``batch_size`` rows with ``fn(chunk) -> float[len(chunk), K]``.

        Every chunk's output is checked (shape ``(rows, K)``, finite values), its rows are counted
        as images in :attr:`counter` and the time spent is added to :attr:`seconds`.

        Returns:
            ``float64[len(batch), K]``.
        """
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
        """Greedy answer for ``image`` and ``prompt`` with per-token probabilities.

        Implementations record the pixels the model saw, ``image_sha256=load_image(image).sha256``
        (the built-in adapters do), so that explaining the answer on another image is refused; a
        Generation without it is not checked."""

    @abc.abstractmethod
    def teacher_force(self, image: ImageLike, prompt: str, answer: str) -> Generation:
        """A :class:`Generation` for a user-given ``answer`` (probabilities under the full image;
        ``image_sha256`` as for :meth:`generate`)."""

    @abc.abstractmethod
    def scorer(
        self,
        image: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        *,
        fill: np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> Scorer:
        """A :class:`Scorer` for one explanation; hidden pixels show ``fill`` (default black).

        (Adapters written before 0.2 name this keyword ``baseline``; the package's callers still
        pass it under that name to a ``scorer`` that has no ``fill`` parameter.)"""

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
