"""The ONE replay protocol every method is scored by (method.md §5).

A saliency map is turned into an ordering of the regions of a label map, and the insertion and
deletion curves of that ordering are replayed with :func:`mllm_attr.search.replay` over the same
:class:`~mllm_attr.objective.Objective` that EAGLE's searches use (same scorer, fill fill,
areas, endpoints). The result is an :class:`~mllm_attr.explanation.Explanation`, so AUCs, highest
confidence and the pointing game mean the same thing for EAGLE and for every baseline.

Ranking rule (:func:`rank_regions`): regions are sorted by the MEAN of the map over their pixels,
highest first; ties (equal means, e.g. a flat map) go to the LOWER region index; a region with no
pixels (cannot happen with :func:`mllm_attr.segment.segment`) goes last. Any monotone rescaling
of the map gives the same ordering.

Cost: ``2 (n - 1) + 2`` forwards (every proper prefix's insertion and deletion image, plus the
full and blank images). ``Explanation.forwards`` counts these replay images only; a baseline's own
passes (gradients, optimisation steps) are not counted there, their time is stored as
``settings["map_seconds"]`` and included in ``Explanation.seconds``.

Example:
    >>> sal = get_baseline("tam")(adapter, image, gen, [3])                            # doctest: +SKIP
    >>> expl = score_map(adapter, image, gen, [3], sal, n_regions=64, method_name="tam")  # doctest: +SKIP
    >>> expl.insertion_auc(), expl.deletion_auc()                                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .adapters.base import ModelAdapter
from .baselines._model import as_image, check_positions
from .baselines.base import AttributionMethod, check_seed
from .explainer import Explainer, check_fast_path, require_fast_path_support
from .explanation import Explanation
from .image import ImageLike
from .maps import normalize_map
from .mask import resolve_fill
from .segment import SEGMENTERS, Segmentation, segment
from .targets import Positions
from .types import Generation

logger = logging.getLogger(__name__)

RANK_RULE = "region mean of the map, descending; ties -> lower region index"


def check_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Validate a label map: integer ``[H, W]`` with values ``0..n-1``; returns ``int32[H, W]``."""
    lab = np.asarray(labels)
    if lab.shape != tuple(shape):
        raise ValueError(f"label map shape {lab.shape} differs from the image's {tuple(shape)}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"expected an integer label map; got dtype {lab.dtype}")
    if lab.min() < 0:
        raise ValueError(f"label values must be >= 0; got minimum {lab.min()}")
    if lab.max() + 1 < 2:
        raise ValueError("the label map has a single region; the protocol needs at least 2")
    return lab.astype(np.int32)


def region_means(saliency: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``float64[n]``: mean of ``saliency`` over each region (``-inf`` for an empty region)."""
    n = int(labels.max()) + 1
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    sums = np.bincount(labels.ravel(), weights=np.asarray(saliency, dtype=np.float64).ravel(), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    return means


def rank_regions(saliency: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``int64[n]``: regions ordered by mean saliency, highest first (ties: lower index first)."""
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.shape != labels.shape:
        raise ValueError(f"saliency shape {sal.shape} differs from the label map's {labels.shape}")
    if not np.all(np.isfinite(sal)):
        raise ValueError("saliency map holds NaN or infinite values")
    means = region_means(sal, labels)
    return np.lexsort((np.arange(len(means)), -means)).astype(np.int64)


def replay_ordering(
    adapter: ModelAdapter,
    image: ImageLike,
    generation: Generation,
    positions: Sequence[int] | int,
    ordering: np.ndarray,
    labels: np.ndarray,
    *,
    fill: str = "black",
    batch_size: int | None = None,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    method_name: str = "ordering",
    saliency_map: np.ndarray | None = None,
    settings: dict[str, Any] | None = None,
    extra_seconds: float = 0.0,
    fast_path: str | bool = "auto",
    baseline: str | None = None,
) -> Explanation:
    """Replay the insertion/deletion curves of a region ``ordering`` and wrap them in an Explanation.

    Args:
        adapter: any :class:`~mllm_attr.adapters.ModelAdapter` (black-box is enough).
        image: ``uint8[H, W, 3]`` (or anything :func:`~mllm_attr.load_image` takes).
        generation, positions: the answer and the explained token positions (0-based).
        ordering: ``int64[n]`` every region of ``labels`` once, most important first.
        labels: ``int[H, W]`` region label map.
        fill: what hidden pixels show: ``"black"``, ``"blur"`` or ``"mean"`` (``baseline=`` is its
            deprecated old name).
        batch_size: images per forward pass (default: the adapter's).
        lambda1, lambda2: objective weights (only affect ``Explanation.value``, not the curves).
        method_name: stored as ``settings["method"]``.
        saliency_map: ``float32[H, W]`` in ``[0, 1]`` to store as the Explanation's map.
        settings: extra settings merged into the stored ones.
        extra_seconds: time spent before the replay (e.g. computing the map), added to ``seconds``.
        fast_path: ``"auto"``, ``True`` or ``False``: the scorer's fast path (see
            :class:`~mllm_attr.Explainer`); what was used is stored in ``settings["fast_path"]``.
    """
    t0 = time.perf_counter()
    fill = resolve_fill(fill, baseline, where="replay_ordering")
    arr = as_image(image)
    positions = check_positions(generation, positions)
    labels = check_labels(labels, arr.shape[:2])
    n = int(labels.max()) + 1
    bs = batch_size or adapter.default_batch_size()
    # The one explain path: the Explainer's steps, with this ordering instead of a search.
    explainer = Explainer(adapter, fill=fill, batch_size=bs, lambda1=lambda1, lambda2=lambda2, fast_path=fast_path)
    seg = Segmentation(labels, "given", n, {})
    expl = explainer.replay(arr, generation, ordering, target=Positions(tuple(positions)), segmentation=seg)
    expl.settings.update(
        {"method": method_name, "protocol": "replay", "rank_rule": RANK_RULE, "n_regions": n, **(settings or {})}
    )
    expl.seconds = extra_seconds + (time.perf_counter() - t0)
    if saliency_map is not None:
        expl.saliency_map = normalize_map(saliency_map)
    logger.info(
        "%s: %d regions, %d forwards, insertion AUC %.3f, deletion AUC %.3f",
        method_name,
        n,
        expl.forwards,
        expl.insertion_auc(),
        expl.deletion_auc(),
    )
    return expl


def score_map(
    adapter: ModelAdapter,
    image: ImageLike,
    generation: Generation,
    positions: Sequence[int] | int,
    saliency: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    n_regions: int = 64,
    segmenter: str = "slic",
    fill: str = "black",
    batch_size: int | None = None,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    method_name: str = "map",
    settings: dict[str, Any] | None = None,
    map_seconds: float = 0.0,
    fast_path: str | bool = "auto",
    baseline: str | None = None,
) -> Explanation:
    """Score a saliency map by the replay protocol (see the module docstring).

    Args:
        saliency: ``float[H, W]`` map at the image's size (any range; higher = more important).
        labels: ``int[H, W]`` label map to rank (pass EAGLE's ``Explanation.labels`` to compare on
            the very same regions); default: ``segment(image, n_regions, segmenter)``.
        n_regions, segmenter: used only when ``labels`` is None.
        fill: what hidden pixels show (``"black"``, ``"blur"``, ``"mean"``; ``baseline=`` is its
            deprecated old name).
        method_name: stored as ``settings["method"]``.
        map_seconds: time spent computing the map (added to ``Explanation.seconds``, stored).
        fast_path: ``"auto"`` (default), ``True`` or ``False``: the scorer's fast path, passed to
            ``adapter.scorer`` only when it takes one (``True`` without one is a ValueError);
            stored as ``settings["fast_path"] = {"requested": ..., **scorer.fast_report}``.

    Returns:
        An :class:`~mllm_attr.explanation.Explanation` whose ``saliency_map`` is the map,
        min-max normalised to ``[0, 1]`` (so the pointing game uses the method's own map).
    """
    fill = resolve_fill(fill, baseline, where="score_map")
    fast_path = check_fast_path(fast_path)
    require_fast_path_support(adapter, fast_path)  # before any segmentation or model work
    arr = as_image(image)
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.shape != arr.shape[:2]:
        raise ValueError(f"saliency shape {sal.shape} differs from the image's {arr.shape[:2]}")
    extra: dict[str, Any] = {}
    if labels is None:
        if segmenter not in SEGMENTERS:
            raise ValueError(f"unknown segmenter {segmenter!r}; expected one of {list(SEGMENTERS)}")
        seg = segment(arr, n_regions, segmenter)
        labels = seg.labels
        extra.update({"segmenter": segmenter, "n_regions_requested": int(n_regions), "segmenter_params": seg.params})
    else:
        labels = check_labels(labels, arr.shape[:2])
        extra.update({"segmenter": "given"})
    ordering = rank_regions(sal, labels)
    extra["map_seconds"] = float(map_seconds)
    extra.update(settings or {})
    return replay_ordering(
        adapter,
        arr,
        generation,
        positions,
        ordering,
        labels,
        fill=fill,
        batch_size=batch_size,
        lambda1=lambda1,
        lambda2=lambda2,
        method_name=method_name,
        saliency_map=sal,
        settings=extra,
        extra_seconds=map_seconds,
        fast_path=fast_path,
    )


def score_method(
    method: AttributionMethod | str,
    adapter: ModelAdapter,
    image: ImageLike,
    generation: Generation,
    positions: Sequence[int] | int,
    *,
    seed: int = 0,
    method_options: dict[str, Any] | None = None,
    **protocol: Any,
) -> Explanation:
    """Compute a baseline's map and score it: ``score_map(..., method(adapter, image, ...))``.

    Args:
        method: an :class:`~mllm_attr.baselines.AttributionMethod` or a registry name.
        method_options: options when ``method`` is a name.
        **protocol: keyword arguments of :func:`score_map` (``labels``, ``n_regions``, ...).
    """
    from .baselines import baseline_options, get_baseline

    if isinstance(method, str):
        method = get_baseline(method, **(method_options or {}))
    elif method_options:
        raise ValueError("method_options only apply when method is given by name")
    arr = as_image(image)
    positions = check_positions(generation, positions, arr)  # before the map's compute
    t0 = time.perf_counter()
    sal = method(adapter, arr, generation, positions, seed=check_seed(seed))
    map_seconds = time.perf_counter() - t0
    name = getattr(method, "name", type(method).__name__)
    settings = dict(protocol.pop("settings", None) or {})
    settings.update({"method_options": baseline_options(method), "seed": int(seed)})
    return score_map(
        adapter,
        arr,
        generation,
        positions,
        sal,
        method_name=protocol.pop("method_name", name),
        settings=settings,
        map_seconds=map_seconds,
        **protocol,
    )


__all__ = ["RANK_RULE", "rank_regions", "region_means", "replay_ordering", "score_map", "score_method"]
