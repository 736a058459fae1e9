"""The :class:`Explainer`: adapter + segmenter + masker + search, wired per call."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .adapters.base import ModelAdapter
from .image import ImageLike, load_image
from .mask import BASELINES, make_baseline
from .objective import Objective
from .search import replay_cost, run_search
from .search import search_options as _check_search_options
from .segment import SEGMENTERS, segment
from .targets import Answer, TargetLike, as_target, resolve
from .types import Generation
from .explanation import Explanation

logger = logging.getLogger(__name__)


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")


class Explainer:
    """Explain generated tokens of a multimodal LLM with the EAGLE objective.

    Args:
        adapter: a :class:`~mllm_attr.adapters.ModelAdapter` (see :func:`~mllm_attr.load_adapter`).
        n_regions: requested number of image regions (the actual count is reported).
        segmenter: ``"slic"``, ``"grid"`` or ``"felzenszwalb"``; options in ``segmenter_options``.
        baseline: fill for hidden regions: ``"black"``, ``"blur"`` or ``"mean"``.
        search: a name from :data:`mllm_attr.search.SEARCHES`; options in ``search_options``.
        lambda1, lambda2: weights of insight (sufficiency) and necessity.
        batch_size: images per forward pass (default: chosen by the adapter from free memory).
        max_forwards: hard budget of images scored per explanation.
        seed: seed for any randomised step (stored with the result).
        max_new_tokens: generation length when the explainer generates the answer itself.
        show_progress: show a progress bar.

    Example:
        >>> expl = Explainer(adapter, n_regions=64)(image, prompt="Describe the image.", target="cat")  # doctest: +SKIP
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        n_regions: int = 64,
        segmenter: str = "slic",
        segmenter_options: dict[str, Any] | None = None,
        baseline: str = "black",
        search: str = "greedy",
        search_options: dict[str, Any] | None = None,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        batch_size: int | None = None,
        max_forwards: int | None = None,
        seed: int = 0,
        max_new_tokens: int = 64,
        show_progress: bool = False,
    ):
        if not isinstance(adapter, ModelAdapter):
            raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
        _check_int("n_regions", n_regions, 2)
        _check_int("batch_size", batch_size, 1, allow_none=True)
        _check_int("max_forwards", max_forwards, 2, allow_none=True)
        _check_int("max_new_tokens", max_new_tokens, 1)
        _check_int("seed", seed, 0)
        if segmenter not in SEGMENTERS:
            raise ValueError(f"unknown segmenter {segmenter!r}; expected one of {list(SEGMENTERS)}")
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; expected one of {list(BASELINES)}")
        for name, lam in (("lambda1", lambda1), ("lambda2", lambda2)):
            if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not np.isfinite(lam) or lam < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {lam!r}")
        if lambda1 == 0 and lambda2 == 0:
            raise ValueError("lambda1 and lambda2 are both 0; the objective would be constant")
        options = _check_search_options(search, search_options)
        self.adapter = adapter
        self.n_regions = int(n_regions)
        self.segmenter = segmenter
        self.segmenter_options = dict(segmenter_options or {})
        self.baseline = baseline
        self.search = search
        self.search_options = options
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.batch_size = batch_size
        self.max_forwards = max_forwards
        self.seed = int(seed)
        self.max_new_tokens = int(max_new_tokens)
        self.show_progress = show_progress

    def settings(self) -> dict[str, Any]:
        """The explainer's settings as a JSON-serialisable dict (stored with every explanation)."""
        return {
            "method": "eagle",
            "n_regions_requested": self.n_regions,
            "segmenter": self.segmenter,
            "segmenter_options": self.segmenter_options,
            "baseline": self.baseline,
            "search": self.search,
            "search_options": self.search_options,
            "lambda1": self.lambda1,
            "lambda2": self.lambda2,
            "batch_size": self.batch_size,
            "max_forwards": self.max_forwards,
            "seed": self.seed,
            "max_new_tokens": self.max_new_tokens,
        }

    def prepare(
        self, image: ImageLike, generation: Generation | None, target: TargetLike, prompt: str | None
    ) -> tuple[Any, Generation, list[int]]:
        """Load the image, generate (or teacher-force) the answer, and resolve the target."""
        loaded = load_image(image)
        spec = as_target(target)
        if generation is None:
            if prompt is None:
                raise ValueError("pass either a Generation or a prompt to generate one")
            generation = self.adapter.generate(loaded.array, prompt, max_new_tokens=self.max_new_tokens)
        elif not isinstance(generation, Generation):
            raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
        if isinstance(spec, Answer):
            generation = self.adapter.teacher_force(
                loaded.array, generation.prompt, spec.text, generated_text=generation.text
            )
        positions = resolve(generation, spec)
        return loaded, generation, positions

    def __call__(
        self,
        image: ImageLike,
        generation: Generation | None = None,
        *,
        target: TargetLike = "all",
        prompt: str | None = None,
    ) -> Explanation:
        """Explain ``target`` tokens of ``generation`` (generated from ``prompt`` when not given).

        Args:
            image: path, PIL image or ``uint8`` array.
            generation: the answer, from ``adapter.generate``; or ``None`` with ``prompt``.
            target: position(s), a word/phrase, ``"all"``, or ``Answer(text)``.
        """
        t0 = time.perf_counter()
        loaded, generation, positions = self.prepare(image, generation, target, prompt)
        seg = segment(loaded.array, self.n_regions, self.segmenter, **self.segmenter_options)
        needed = 2 + replay_cost(seg.n_regions - 1)
        if self.max_forwards is not None and self.max_forwards < needed:
            raise ValueError(
                f"max_forwards={self.max_forwards} is too small for {seg.n_regions} regions: the full and blank "
                f"images plus the insertion and deletion curves alone take {needed} forwards "
                f"(2 x regions); raise max_forwards or lower n_regions"
            )
        base = make_baseline(loaded.array, self.baseline)
        batch_size = self.batch_size or self.adapter.default_batch_size()
        scorer = self.adapter.scorer(loaded.array, generation, positions, baseline=base, batch_size=batch_size)
        objective = Objective(
            scorer, seg.labels, lambda1=self.lambda1, lambda2=self.lambda2, max_forwards=self.max_forwards
        )
        result = run_search(self.search, objective, self.search_options, seed=self.seed, show_progress=self.show_progress)
        p_full, p_blank = objective.endpoints()
        settings = self.settings()
        settings.update(
            {
                "n_regions": seg.n_regions,
                "batch_size": batch_size,
                "segmenter_params": seg.params,
                "adapter": self.adapter.describe(),
                "image": {
                    "size": list(loaded.size),
                    "original_size": list(loaded.original_size),
                    "original_mode": loaded.original_mode,
                    "notes": list(loaded.notes),
                },
                "target": repr(as_target(target)),
                "search_info": result.info,
                "forward_calls": scorer.counter.calls,
            }
        )
        expl = Explanation.from_search(
            result,
            image=loaded.array,
            labels=seg.labels,
            p_full=p_full,
            p_blank=p_blank,
            generation=generation,
            positions=positions,
            forwards=scorer.forwards,
            seconds=time.perf_counter() - t0,
            settings=settings,
        )
        logger.info(
            "explained %r: %d regions, %d forwards, %.2fs, insertion AUC %.3f, deletion AUC %.3f",
            expl.target_text, seg.n_regions, expl.forwards, expl.seconds, expl.insertion_auc(), expl.deletion_auc(),
        )
        return expl

    explain = __call__
