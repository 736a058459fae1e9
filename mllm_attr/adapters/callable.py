"""An adapter around plain Python callables: closed/API models, or anything custom.

``score_fn(images, generation, positions) -> float[B, K]`` returns the probability of
each target token (teacher-forced on ``generation``) for a batch of ``uint8[B, H, W, 3]``
RGB images. ``generate_fn(image, prompt) -> str | Generation`` produces the answer
(optional: without it, pass a :class:`~mllm_attr.types.Generation` or use
:meth:`CallableAdapter.from_text`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..image import ImageLike, LoadedImage, load_image
from ..mask import make_fill
from ..types import Generation
from .base import ModelAdapter, Scorer

ScoreFn = Callable[[np.ndarray, Generation, Sequence[int]], np.ndarray]
GenerateFn = Callable[[np.ndarray, str], "str | Generation"]


def generation_from_text(prompt: str, text: str, probs: Sequence[float] | None = None, **extra: Any) -> Generation:
    """A word-level :class:`Generation`: each token is a word with its leading whitespace."""
    pieces = re.findall(r"\s*\S+", text)
    spans, pos = [], 0
    for piece in pieces:
        spans.append((pos, pos + len(piece)))
        pos += len(piece)
    probs = list(probs) if probs is not None else [float("nan")] * len(pieces)
    return Generation(
        prompt=prompt,
        token_ids=tuple(range(len(pieces))),
        tokens=tuple(pieces),
        spans=tuple(spans),
        text=text,
        probs=tuple(float(p) for p in probs),
        special=tuple(False for _ in pieces),
        **extra,
    )


class CallableScorer(Scorer):
    """A :class:`Scorer` that hands every batch of images to ``fn(images, generation, positions)``.

    Args:
        fn: the score function (see the module docstring).
        generation: the answer passed to ``fn`` with every batch.
        image, fill, positions, batch_size: as for :class:`Scorer`.
    """

    def __init__(self, fn: ScoreFn, image, fill, generation, positions, batch_size):
        super().__init__(image, fill, positions, batch_size)
        self.fn = fn
        self.generation = generation

    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(images, self.generation, self.positions), dtype=np.float64)


class CallableAdapter(ModelAdapter):
    """Adapter for a model reachable only through functions (see module docstring).

    Example:
        >>> adapter = CallableAdapter(my_score_fn, my_generate_fn, name="my-api-model")  # doctest: +SKIP
    """

    family = "callable"

    def __init__(
        self, score_fn: ScoreFn, generate_fn: GenerateFn | None = None, *, name: str = "callable", batch_size: int = 16
    ):
        if not callable(score_fn):
            raise TypeError(f"score_fn must be callable; got {type(score_fn).__name__}")
        if generate_fn is not None and not callable(generate_fn):
            raise TypeError(f"generate_fn must be callable or None; got {type(generate_fn).__name__}")
        self.score_fn = score_fn
        self.generate_fn = generate_fn
        self.name = name
        self._batch_size = int(batch_size)

    def describe(self) -> dict[str, Any]:
        """Settings stored with results: family, adapter class and the ``name`` given."""
        return {"family": self.family, "adapter": type(self).__name__, "model": self.name}

    def default_batch_size(self) -> int:
        """The ``batch_size`` given to the constructor."""
        return self._batch_size

    def _full_probs(self, image: np.ndarray, gen: Generation) -> list[float]:
        return np.asarray(self.score_fn(image[None], gen, list(range(len(gen)))), dtype=np.float64)[0].tolist()

    def from_text(self, image: ImageLike | LoadedImage, prompt: str, text: str, **extra: Any) -> Generation:
        """A Generation for ``text`` (word tokens) with probabilities scored on the full image
        (and the image's hash, :attr:`Generation.image_sha256`)."""
        loaded = load_image(image)
        extra.setdefault("image_sha256", loaded.sha256)
        gen = generation_from_text(prompt, text, **extra)
        return generation_from_text(prompt, text, self._full_probs(loaded.array, gen), **extra)

    def generate(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64, **gen_kwargs: Any) -> Generation:
        """Answer with ``generate_fn``; a returned str becomes a word-level Generation scored on the full image.

        The result records the image's hash (:attr:`Generation.image_sha256`; also on a Generation
        that ``generate_fn`` returns without one). ``max_new_tokens`` and ``gen_kwargs`` are ignored.

        Raises:
            ValueError: the adapter has no ``generate_fn``.
            TypeError: ``generate_fn`` returned neither a str nor a Generation.
        """
        if self.generate_fn is None:
            raise ValueError(
                "this CallableAdapter has no generate_fn; pass a Generation (see CallableAdapter.from_text)"
            )
        loaded = load_image(image)
        out = self.generate_fn(loaded.array, prompt)
        if isinstance(out, Generation):
            return out if out.image_sha256 is not None else dataclasses.replace(out, image_sha256=loaded.sha256)
        if not isinstance(out, str):
            raise TypeError(f"generate_fn must return a str or a Generation; got {type(out).__name__}")
        return self.from_text(loaded, prompt, out)

    def teacher_force(
        self, image: ImageLike, prompt: str, answer: str, *, generated_text: str | None = None
    ) -> Generation:
        """A counterfactual word-level Generation for ``answer``, with probabilities scored on the full image.

        Args:
            generated_text: what the model actually generated (stored on the result).

        Raises:
            ValueError: ``answer`` is not a non-empty string.
        """
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"expected a non-empty counterfactual answer; got {answer!r}")
        return self.from_text(image, prompt, answer, counterfactual=True, generated_text=generated_text)

    def scorer(self, image, generation, positions, *, fill=None, batch_size=None) -> CallableScorer:
        """A :class:`CallableScorer` for one explanation (black fill unless ``fill`` is given)."""
        base = make_fill(image) if fill is None else fill
        return CallableScorer(self.score_fn, image, base, generation, positions, batch_size or self._batch_size)
