"""The :class:`Explainer`: adapter + segmenter + masker + search, wired per call."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from .adapters.base import ModelAdapter, Scorer
from .explanation import Explanation
from .image import MAX_PIXELS, ImageLike, LoadedImage, check_generation_image, load_image
from .mask import FILLS, make_fill, resolve_fill
from .objective import Objective
from .search import SearchResult, replay, replay_cost, run_search
from .search import search_options as _check_search_options
from .segment import SEGMENTERS, Segmentation, SegmenterLike, check_label_map, segment
from .targets import Answer, TargetLike, as_target, resolve
from .threads import check_threads, limit_threads
from .types import Generation

logger = logging.getLogger(__name__)


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")


# --------------------------------------------------------------------------- fast path plumbing

#: Values of ``fast_path``: ``"auto"`` (use the adapter's fast path when its probe passes, else
#: the image processor on every candidate), ``True`` (require it: an error when unavailable), ``False`` (never).
FAST_PATH_CHOICES: tuple[str | bool, ...] = ("auto", True, False)


def check_fast_path(value: Any, *, name: str = "fast_path") -> str | bool:
    """Validate a ``fast_path`` value: ``"auto"``, ``True`` or ``False`` (``1``/``"on"`` are refused)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "auto":
        return "auto"
    raise ValueError(f"{name} must be 'auto', True or False; got {value!r}")


def adapter_has_fast_path(adapter: Any) -> bool:
    """Whether ``adapter.scorer`` takes a ``fast_path`` keyword (the HF adapters do; CallableAdapter does not)."""
    try:
        params = inspect.signature(adapter.scorer).parameters
    except (TypeError, ValueError):  # builtins / C callables without a signature
        return False
    p = params.get("fast_path")
    return p is not None and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def require_fast_path_support(adapter: Any, fast_path: str | bool) -> bool:
    """``adapter_has_fast_path(adapter)``; raises ValueError when ``fast_path`` is True and it has none."""
    supported = adapter_has_fast_path(adapter)
    if fast_path is True and not supported:
        raise ValueError(
            f"fast_path=True, but adapter {type(adapter).__name__} has no fast path (its scorer takes no "
            "fast_path argument); use fast_path='auto' or False"
        )
    return supported


def make_scorer(
    adapter: Any,
    image: np.ndarray,
    generation: Generation,
    positions: Sequence[int],
    *,
    fill: np.ndarray,
    batch_size: int,
    fast_path: str | bool = "auto",
) -> Scorer:
    """``adapter.scorer(...)``, passing ``fast_path`` only to adapters whose scorer takes it.

    Raises:
        ValueError: an invalid ``fast_path``, ``True`` for an adapter without a fast path, or a
            ``generation`` made on another image (:func:`~mllm_attr.image.check_generation_image`).
    """
    fast_path = check_fast_path(fast_path)
    check_generation_image(generation, image)
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if require_fast_path_support(adapter, fast_path):
        kwargs["fast_path"] = fast_path
    # Adapters written before the rename take the fill as ``baseline=``.
    kwargs["fill" if _takes(adapter.scorer, "fill") else "baseline"] = fill
    return adapter.scorer(image, generation, positions, **kwargs)


def _takes(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def fast_path_settings(adapter: Any, scorer: Any, requested: str | bool) -> dict[str, Any]:
    """What is stored as ``settings["fast_path"]``: ``{"requested": ..., **scorer.fast_report}``.

    Read it AFTER the label map is registered (the report is made there). An adapter without a
    fast path gives ``{"requested": ..., "used": False, "reason": "adapter has no fast path"}``
    (``"disabled"`` when ``requested`` is False).
    """
    if not adapter_has_fast_path(adapter):
        reason = "disabled" if requested is False else "adapter has no fast path"
        return {"requested": requested, "used": False, "reason": reason}
    report = getattr(scorer, "fast_report", None)
    if not isinstance(report, dict):
        return {"requested": requested, "used": None, "reason": "the scorer gave no fast-path report"}
    return {"requested": requested, **report}


def downscale_hint(loaded: LoadedImage) -> str:
    """A note for shape-mismatch errors when ``loaded`` was downscaled on load (``""`` otherwise)."""
    if tuple(loaded.original_size) == tuple(loaded.size):
        return ""
    (w0, h0), (w, h) = loaded.original_size, loaded.size
    return (
        f"the image was downscaled on load from {w0}x{h0} to {w}x{h} (images over {MAX_PIXELS} pixels are): "
        f"supply the label map at {w}x{h}, i.e. shape ({h}, {w}), or downscale the image yourself first"
    )


def check_labels_for_image(
    labels: Any, loaded: LoadedImage, *, method: str = "user-labels", what: str = "labels"
) -> Segmentation:
    """:func:`~mllm_attr.segment.check_label_map` against the explained image's ``(H, W)``
    (the error says when the image was downscaled on load)."""
    shape = (int(loaded.array.shape[0]), int(loaded.array.shape[1]))
    return check_label_map(labels, shape, method=method, what=what, hint=downscale_hint(loaded))


def _segmenter_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__)


class Explainer:
    """Explain generated tokens of a multimodal LLM with the EAGLE objective.

    Args:
        adapter: a :class:`~mllm_attr.adapters.ModelAdapter` (see :func:`~mllm_attr.load_adapter`).
        n_regions: requested number of image regions (the actual count is reported); ignored
            with ``labels`` or a callable ``segmenter``.
        segmenter: ``"slic"``, ``"grid"`` or ``"felzenszwalb"`` (options in ``segmenter_options``),
            or a callable ``fn(uint8[H, W, 3] RGB image) -> int[H, W]`` label map, called once per
            explanation on the image as explained (after any conversion / downscale on load).
        labels: a ready ``int[H, W]`` label map used instead of the segmenter (e.g. from
            :func:`~mllm_attr.segment.masks_to_labels`). Its shape must be the explained image's
            ``(H, W)``; labels that are not ``0..n-1`` are relabelled in ascending order (noted in
            ``settings["segmenter_params"]``). See :func:`~mllm_attr.segment.check_label_map`.
            The same map is used for every image this explainer is called on.
        fill: what hidden regions show: ``"black"``, ``"blur"`` or ``"mean"`` (``baseline=`` is
            its deprecated old name).
        search: a name from :data:`mllm_attr.search.SEARCHES`; options in ``search_options``.
        lambda1, lambda2: weights of insight (sufficiency) and necessity.
        batch_size: images per forward pass (default: chosen by the adapter from free memory).
        max_forwards: hard budget of images scored per explanation.
        seed: seed for any randomised step (stored with the result).
        max_new_tokens: generation length when the explainer generates the answer itself.
        show_progress: show a progress bar.
        fast_path: ``"auto"`` (default: the adapter's fast path when its probe passes, else the
            image processor on every candidate), ``True`` (require it) or ``False`` (never). Passed to
            ``adapter.scorer`` only when it takes ``fast_path``; ``True`` for an adapter without one
            is a ValueError. What was used is stored in ``settings["fast_path"]``.
        threads: torch CPU threads while explaining (restored afterwards): a positive int, or
            ``"auto"`` (default): the free cores of the machine, never more than torch is set to
            (see :mod:`mllm_attr.threads`). The count used is stored in ``settings["threads"]``.

    Supplied segments are recorded as ``settings["segmenter"] = "user-labels"`` /
    ``"user-callable"`` with ``settings["segments_supplied"] = True``.

    Subclasses that order other features with the same machinery (segmentation, ``labels``,
    budget check, answer and target, search, seed, settings) override the protected steps
    :meth:`_feature_count`, :meth:`_make_scorer`, :meth:`_make_objective` and
    :meth:`_make_result` (and extend :meth:`settings`), e.g.
    :class:`~mllm_attr.analysis.prompt_tokens.PromptTokenExplainer`.

    Example:
        >>> expl = Explainer(adapter, n_regions=64)(image, prompt="Describe the image.", target="cat")  # doctest: +SKIP
    """

    #: Whether this explainer has features without an image (prompt words): a text-only
    #: model (``family == "text"``) is refused otherwise.
    explains_text_models: ClassVar[bool] = False

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        n_regions: int = 64,
        segmenter: SegmenterLike = "slic",
        segmenter_options: dict[str, Any] | None = None,
        labels: np.ndarray | None = None,
        fill: str = "black",
        search: str = "greedy",
        search_options: dict[str, Any] | None = None,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        batch_size: int | None = None,
        max_forwards: int | None = None,
        seed: int = 0,
        max_new_tokens: int = 64,
        show_progress: bool = False,
        fast_path: str | bool = "auto",
        threads: int | str | None = "auto",
        baseline: str | None = None,
    ):
        fill = resolve_fill(fill, baseline, where="Explainer")
        if not isinstance(adapter, ModelAdapter):
            raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
        if getattr(adapter, "family", None) == "text" and not self.explains_text_models:
            raise ValueError(
                "this is a text-only model: there is no image to explain; explain its answer over the prompt "
                "words with mllm_attr.analysis.explain_prompt_tokens(adapter, prompt=..., target=...) or "
                "PromptTokenExplainer(adapter).explain_text(...)"
            )
        _check_int("n_regions", n_regions, 2)
        _check_int("batch_size", batch_size, 1, allow_none=True)
        _check_int("max_forwards", max_forwards, 2, allow_none=True)
        _check_int("max_new_tokens", max_new_tokens, 1)
        _check_int("seed", seed, 0)
        if isinstance(segmenter, str):
            if segmenter not in SEGMENTERS:
                raise ValueError(f"unknown segmenter {segmenter!r}; expected one of {list(SEGMENTERS)}")
        elif isinstance(segmenter, np.ndarray):
            raise TypeError(
                "segmenter must be a name from " + str(list(SEGMENTERS)) + " or a callable "
                f"fn(image) -> label map; got a numpy array of shape {segmenter.shape}: pass a ready "
                "label map as labels=... instead"
            )
        elif callable(segmenter):
            if segmenter_options:
                raise ValueError("segmenter_options only apply to the named segmenters, not to a callable segmenter")
        else:
            raise TypeError(
                f"segmenter must be a name from {list(SEGMENTERS)} or a callable fn(image) -> label map; "
                f"got {type(segmenter).__name__}"
            )
        user_labels: np.ndarray | None = None
        if labels is not None:
            if callable(segmenter) and not isinstance(segmenter, str):
                raise ValueError("pass either labels or a callable segmenter, not both")
            if segmenter_options:
                raise ValueError("segmenter_options do not apply when labels are given")
            check_label_map(labels, None, what="labels")  # type, dtype, 2-D, region count: fail early
            user_labels = np.array(labels, copy=True)
            user_labels.setflags(write=False)
        fast_path = check_fast_path(fast_path)
        require_fast_path_support(adapter, fast_path)
        check_threads(threads)
        if not isinstance(fill, str) or fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; expected one of {list(FILLS)}")
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
        self.fill = fill
        self.search = search
        self.search_options = options
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.batch_size = batch_size
        self.max_forwards = max_forwards
        self.seed = int(seed)
        self.max_new_tokens = int(max_new_tokens)
        self.show_progress = show_progress
        self.labels = user_labels
        self.fast_path = fast_path
        self.threads = "auto" if threads is None else threads

    @property
    def segments_supplied(self) -> bool:
        """True when the regions come from the user (``labels`` or a callable segmenter)."""
        return self.labels is not None or not isinstance(self.segmenter, str)

    def _segmenter_setting(self) -> str:
        if self.labels is not None:
            return "user-labels"
        if not isinstance(self.segmenter, str):
            return "user-callable"
        return self.segmenter

    def settings(self) -> dict[str, Any]:
        """The explainer's settings as a JSON-serialisable dict (stored with every explanation)."""
        extra: dict[str, Any] = {}
        requested: int | None = self.n_regions
        if self.labels is not None:
            requested = int(np.unique(self.labels).size)
        elif not isinstance(self.segmenter, str):
            requested = None
            extra["segmenter_name"] = _segmenter_name(self.segmenter)
        return {
            "method": "eagle",
            "n_regions_requested": requested,
            "segmenter": self._segmenter_setting(),
            **extra,
            "segments_supplied": self.segments_supplied,
            "segmenter_options": self.segmenter_options,
            "fill": self.fill,
            "search": self.search,
            "search_options": self.search_options,
            "lambda1": self.lambda1,
            "lambda2": self.lambda2,
            "batch_size": self.batch_size,
            "max_forwards": self.max_forwards,
            "seed": self.seed,
            "max_new_tokens": self.max_new_tokens,
            "fast_path": {"requested": self.fast_path},
            "threads": {"requested": self.threads},
        }

    def segmentation(self, image: ImageLike | LoadedImage) -> Segmentation:
        """The regions of ``image``: the user ``labels``, the callable segmenter's map, or :func:`segment`.

        Raises:
            ValueError / TypeError: a supplied map that fails :func:`~mllm_attr.segment.check_label_map`
                (wrong shape: the message names the expected ``(H, W)``, and says when the image was
                downscaled on load).
        """
        loaded = image if isinstance(image, LoadedImage) else load_image(image)
        if self.labels is not None:
            return check_labels_for_image(self.labels, loaded, method="user-labels", what="labels")
        if not isinstance(self.segmenter, str):
            name = _segmenter_name(self.segmenter)
            out = self.segmenter(np.array(loaded.array, copy=True))
            what = f"the label map returned by segmenter {name!r}"
            seg = check_labels_for_image(out, loaded, method="user-callable", what=what)
            return Segmentation(seg.labels, seg.method, seg.requested, {**seg.params, "segmenter_name": name})
        return segment(loaded.array, self.n_regions, self.segmenter, **self.segmenter_options)

    def prepare(
        self, image: ImageLike | LoadedImage, generation: Generation | None, target: TargetLike, prompt: str | None
    ) -> tuple[LoadedImage, Generation, list[int]]:
        """Load the image (a :class:`~mllm_attr.image.LoadedImage` is used as is), generate (or
        teacher-force) the answer, and resolve the target."""
        loaded = image if isinstance(image, LoadedImage) else load_image(image)
        spec = as_target(target)
        if generation is None:
            if prompt is None:
                raise ValueError("pass either a Generation or a prompt to generate one")
            generation = self.adapter.generate(loaded.array, prompt, max_new_tokens=self.max_new_tokens)
        elif not isinstance(generation, Generation):
            raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
        else:
            check_generation_image(generation, loaded)  # before any teacher forcing
        if isinstance(spec, Answer):
            generation = self.adapter.teacher_force(
                loaded.array, generation.prompt, spec.text, generated_text=generation.text
            )
        positions = resolve(generation, spec)
        return loaded, generation, positions

    def __call__(
        self,
        image: ImageLike | LoadedImage,
        generation: Generation | None = None,
        *,
        target: TargetLike = "all",
        prompt: str | None = None,
    ) -> Explanation:
        """Explain ``target`` tokens of ``generation`` (generated from ``prompt`` when not given).

        Args:
            image: path, PIL image, ``uint8`` array, or a :class:`~mllm_attr.image.LoadedImage`
                (used as it is).
            generation: the answer, from ``adapter.generate``; or ``None`` with ``prompt``.
            target: position(s), a word/phrase, ``"all"``, or ``Answer(text)``.

        Raises:
            ValueError: among others, ``generation`` was made on another image (its
                ``image_sha256`` differs from this image's).
        """
        return self._explain(image, generation, target=target, prompt=prompt)

    def replay(
        self,
        image: ImageLike,
        generation: Generation,
        ordering: Sequence[int] | np.ndarray,
        *,
        target: TargetLike = "all",
        segmentation: Segmentation | None = None,
    ) -> Explanation:
        """The insertion / deletion curves of a GIVEN region ``ordering`` (no search), by the same
        steps as an explanation: same fill, scorer (fast path included), objective and result.

        Args:
            image, generation, target: as for :meth:`__call__` (the answer must be given).
            ordering: every region once, most important first.
            segmentation: the regions ``ordering`` refers to, taken as they are (empty regions
                included); default: this explainer's own regions of ``image``.

        Raises:
            ValueError: ``ordering`` is not a permutation of the regions.
        """
        order = np.asarray(ordering, dtype=np.int64)

        def check(seg: Segmentation) -> None:
            n = int(seg.labels.max()) + 1
            if order.shape != (n,) or sorted(order.tolist()) != list(range(n)):
                raise ValueError(f"ordering must contain each of the {n} regions exactly once; got {order.tolist()}")

        if segmentation is not None:
            check(segmentation)  # before any model work

        def run(objective: Objective, seg: Segmentation) -> SearchResult:
            check(seg)
            return replay(objective, order)

        return self._explain(image, generation, target=target, prompt=None, segmentation=segmentation, search=run)

    # -- the steps of one explanation (extension points for subclasses) ------------------------
    def _explain(
        self,
        image: ImageLike,
        generation: Generation | None,
        *,
        target: TargetLike,
        prompt: str | None,
        segmentation: Segmentation | None = None,
        search: Callable[[Objective, Segmentation], SearchResult] | None = None,
    ) -> Any:
        """One explanation: regions, budget check, answer and target, scorer, objective, search,
        settings, result. Subclasses change a step through the hooks below, never the sequence;
        :meth:`replay` passes its regions and its fixed ordering as ``segmentation`` / ``search``."""
        with limit_threads(self.threads) as n_threads:
            return self._explain_steps(
                image,
                generation,
                target=target,
                prompt=prompt,
                segmentation=segmentation,
                search=search,
                n_threads=n_threads,
            )

    def _explain_steps(
        self,
        image: ImageLike,
        generation: Generation | None,
        *,
        target: TargetLike,
        prompt: str | None,
        segmentation: Segmentation | None,
        search: Callable[[Objective, Segmentation], SearchResult] | None,
        n_threads: int,
    ) -> Any:
        t0 = time.perf_counter()
        loaded = load_image(image)  # a LoadedImage is used as it is (its notes kept, not logged again)
        # Regions first: a bad user label map or a too small budget fails before any model work.
        seg = self.segmentation(loaded) if segmentation is None else segmentation
        self.check_budget(seg, generation, prompt)
        loaded, generation, positions = self.prepare(loaded, generation, target, prompt)
        base = make_fill(loaded.array, self.fill)
        batch_size = self.batch_size or self.adapter.default_batch_size()
        scorer = self._make_scorer(loaded.array, generation, positions, fill=base, batch_size=batch_size)
        objective = self._make_objective(scorer, seg)
        if search is None:
            result = run_search(
                self.search, objective, self.search_options, seed=self.seed, show_progress=self.show_progress
            )
        else:
            result = search(objective, seg)
        p_full, p_blank = objective.endpoints()
        settings = self._run_settings(seg, loaded, target, scorer, result, batch_size)
        settings["threads"] = {"requested": self.threads, "used": n_threads}
        if segmentation is not None:
            settings.update({"segmenter": segmentation.method, "segments_supplied": True})
        if search is not None:
            settings.update({"search": "replay", "search_options": {}})
        return self._make_result(
            result,
            loaded=loaded,
            seg=seg,
            generation=generation,
            positions=positions,
            p_full=p_full,
            p_blank=p_blank,
            scorer=scorer,
            settings=settings,
            seconds=time.perf_counter() - t0,
        )

    def _feature_count(self, seg: Segmentation, generation: Generation | None, prompt: str | None) -> tuple[int, str]:
        """``(N, description)``: how many features the search orders, and how messages name them.

        Called before any model work (the answer may not exist yet); default: the regions.
        """
        return seg.n_regions, f"{seg.n_regions} regions"

    def check_budget(self, seg: Segmentation, generation: Generation | None = None, prompt: str | None = None) -> None:
        """Refuse a ``max_forwards`` below what the full and blank images and the curves of the
        ordering alone take (``2 + 2 (N - 1)`` forwards for ``N`` features).

        Raises:
            ValueError: the budget is too small (the message says how many forwards are needed).
        """
        n, what = self._feature_count(seg, generation, prompt)
        needed = 2 + replay_cost(n - 1)
        if self.max_forwards is not None and self.max_forwards < needed:
            unit = "regions" if n == seg.n_regions else "features"
            raise ValueError(
                f"max_forwards={self.max_forwards} is too small for {what}: the full and blank "
                f"images plus the insertion and deletion curves alone take {needed} forwards "
                f"(2 x {unit}); raise max_forwards or lower n_regions"
            )

    def _make_scorer(
        self,
        image: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        *,
        fill: np.ndarray,
        batch_size: int,
    ) -> Scorer:
        """The per-explanation scorer (default: the adapter's, via :func:`make_scorer` with ``fast_path``)."""
        return make_scorer(
            self.adapter,
            image,
            generation,
            positions,
            fill=fill,
            batch_size=batch_size,
            fast_path=self.fast_path,
        )

    def _make_objective(self, scorer: Scorer, seg: Segmentation) -> Objective:
        """The objective the search maximises (default: :class:`~mllm_attr.objective.Objective` over the regions)."""
        return Objective(scorer, seg.labels, lambda1=self.lambda1, lambda2=self.lambda2, max_forwards=self.max_forwards)

    def _run_settings(
        self,
        seg: Segmentation,
        loaded: LoadedImage,
        target: TargetLike,
        scorer: Scorer,
        result: SearchResult,
        batch_size: int,
    ) -> dict[str, Any]:
        """:meth:`settings` plus what this call used (regions, batch size, fast path, adapter, image,
        target, search)."""
        settings = self.settings()
        settings.update(
            {
                "n_regions": seg.n_regions,
                "n_regions_requested": seg.requested,
                "batch_size": batch_size,
                "segmenter_params": seg.params,
                "fast_path": fast_path_settings(self.adapter, scorer, self.fast_path),
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
        return settings

    def _make_result(
        self,
        result: SearchResult,
        *,
        loaded: LoadedImage,
        seg: Segmentation,
        generation: Generation,
        positions: list[int],
        p_full: np.ndarray,
        p_blank: np.ndarray,
        scorer: Scorer,
        settings: dict[str, Any],
        seconds: float,
    ) -> Any:
        """The result object (default: an :class:`~mllm_attr.explanation.Explanation`), logged."""
        expl = Explanation.from_search(
            result,
            image=loaded.array,
            labels=seg.labels,
            p_full=p_full,
            p_blank=p_blank,
            generation=generation,
            positions=positions,
            forwards=scorer.forwards,
            seconds=seconds,
            settings=settings,
        )
        logger.info(
            "explained %r: %d regions, %d forwards, %.2fs, insertion AUC %.3f, deletion AUC %.3f",
            expl.target_text,
            seg.n_regions,
            expl.forwards,
            expl.seconds,
            expl.insertion_auc(),
            expl.deletion_auc(),
        )
        return expl

    explain = __call__
