"""Multi-scale aggregation of attributions (method.md §7, MSEA of arXiv 2509.22415).

An attribution is computed at several *scales* and the maps are combined:

* region granularities: the same image split into e.g. 16, 36 and 64 regions;
* input resolutions (MSEA): resized copies of the image (e.g. 0.5x, 1x, 2x), each map
  brought back to the original size (bilinear).

Every per-scale map is min-max normalised to ``[0, 1]`` and combined by

* ``"mean"``: the plain average;
* ``"weighted"``: a faithfulness-weighted average, weight ``max(insertion AUC − deletion AUC, 0)``
  of that scale's own explanation (uniform when every weight is 0).

A combined map is a saliency map, not an ordering, so it is scored like every map-based
method by the ONE replay protocol (:func:`mllm_attr.protocol.score_map`, via
:meth:`MultiScaleExplanation.score`): the regions of one fixed label map are ordered by their
mean map value (ties: lower region index first) and :func:`mllm_attr.search.replay` gives the
insertion/deletion curves. Use the same label map for every method compared.

Example:
    >>> ms = MultiScaleExplainer(adapter, region_scales=(16, 36, 64))  # doctest: +SKIP
    >>> ms = ms(image, prompt="What color is the circle?", target=0)   # doctest: +SKIP
    >>> ms.saliency("weighted")                                        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..adapters.base import ModelAdapter
from ..explanation import Explanation, versions
from ..image import ImageLike
from ..maps import normalize_map, resize_map
from ..targets import Positions, TargetLike
from ..types import Generation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Ways to combine per-scale maps.
COMBINES: tuple[str, ...] = ("mean", "weighted")


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``uint8[round(H*scale), round(W*scale), 3]`` (bicubic), at least 8 x 8 pixels."""
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number; got {scale!r}")
    h, w = image.shape[:2]
    size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
    if size == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC), dtype=np.uint8)


def combine(maps: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of normalised maps (uniform when ``weights`` is None or sums to 0); ``float32[H, W]`` in [0, 1]."""
    if not maps:
        raise ValueError("no maps to combine")
    stack = np.stack([normalize_map(m) for m in maps]).astype(np.float64)
    w = np.ones(len(maps)) if weights is None else np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    if w.shape != (len(maps),):
        raise ValueError(f"expected {len(maps)} weights; got {w.shape}")
    if w.sum() <= 0:
        w = np.ones(len(maps))
    return normalize_map(np.tensordot(w / w.sum(), stack, axes=1))


@dataclass
class ScaleMap:
    """One scale's attribution.

    Attributes:
        name: ``"regions=36"`` or ``"regions=36@0.5x"``.
        requested_regions: requested region count; n_regions: actual count.
        resolution: input scale factor (1.0 = original).
        saliency: ``float32[H, W]`` in ``[0, 1]`` at the ORIGINAL image size.
        insertion_auc, deletion_auc: of this scale's own explanation (at its own resolution).
        forwards: images scored for this scale.
        explanation: the scale's :class:`~mllm_attr.Explanation` (when kept).
    """

    name: str
    requested_regions: int
    n_regions: int
    resolution: float
    saliency: np.ndarray
    insertion_auc: float
    deletion_auc: float
    forwards: int
    explanation: Explanation | None = None

    @property
    def weight(self) -> float:
        """Faithfulness weight ``max(insertion AUC − deletion AUC, 0)``."""
        return max(self.insertion_auc - self.deletion_auc, 0.0)

    def __repr__(self) -> str:
        """One line: the scale's name, region counts, AUCs and forwards (never the map)."""
        return (
            f"ScaleMap(name={self.name!r}, n_regions={self.n_regions} (requested {self.requested_regions}), "
            f"resolution={self.resolution:g}, insertion_auc={self.insertion_auc:.3f}, "
            f"deletion_auc={self.deletion_auc:.3f}, forwards={int(self.forwards)})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The scale's summary as a dict: name, region counts, resolution, AUCs, weight and forwards (no map)."""
        return {
            "name": self.name,
            "requested_regions": self.requested_regions,
            "n_regions": self.n_regions,
            "resolution": self.resolution,
            "insertion_auc": self.insertion_auc,
            "deletion_auc": self.deletion_auc,
            "weight": self.weight,
            "forwards": self.forwards,
        }


@dataclass
class MultiScaleExplanation:
    """Per-scale maps and their combinations.

    Attributes:
        image: ``uint8[H, W, 3]`` original image.
        generation, positions: what was explained.
        scales: the per-scale results.
        forwards, seconds: totals over all scales.
    """

    image: np.ndarray
    generation: Generation
    positions: list[int]
    scales: list[ScaleMap]
    forwards: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line: the explained tokens, the answer, the scales, the forwards."""
        from ..viz import short_text

        target = "".join(self.generation.tokens[p] for p in self.positions).strip()
        names = short_text(", ".join(s.name for s in self.scales), 80)
        return (
            f"MultiScaleExplanation(target={short_text(target, 40)!r}, "
            f"answer={short_text(self.generation.text, 40)!r}, "
            f"scales={len(self.scales)} ({names}), forwards={int(self.forwards)})"
        )

    def plot(self, *, combined: bool = True, **kw: Any) -> Figure:
        """Every scale's map side by side, then the ``mean`` and ``weighted`` combinations
        (:func:`mllm_attr.viz.plot_methods`; ``kw`` are its options), each with its AUCs and top
        area outlined, titled with the explained tokens and the answer. Returns the figure."""
        from ..viz import plot_methods, short_text

        # a scale's own explanation (its top regions outlined) where it was made at this image size
        maps: dict[str, Any] = {
            s.name: s.explanation
            if s.explanation is not None and s.explanation.image.shape == self.image.shape
            else s.saliency
            for s in self.scales
        }
        metrics = {s.name: {"ins": s.insertion_auc, "del": s.deletion_auc} for s in self.scales}
        if combined:
            for kind in COMBINES:
                maps[f"{kind} of scales"] = self.saliency(kind)
        target = "".join(self.generation.tokens[p] for p in self.positions).strip()
        kw.setdefault(
            "title",
            f"explained {short_text(target, 40)!r}   Q: {short_text(self.generation.prompt, 50)}   "
            f"A: {short_text(self.generation.text, 50)!r}",
        )
        return plot_methods(self.image, maps, metrics, **kw)

    def show(self, **kw: Any) -> None:
        """Display :meth:`plot` (inline in Jupyter, else in a matplotlib window)."""
        from ..viz import show_figure

        show_figure(self.plot(**kw))

    def _repr_html_(self) -> str:
        """Jupyter's rich display: :meth:`plot` (an inline PNG) and the per-scale numbers."""
        from ..viz import html_card, short_text

        rows: list[tuple[str, Any]] = [
            ("prompt", short_text(self.generation.prompt, 120)),
            ("answer", short_text(self.generation.text, 120)),
            ("explained tokens", short_text(", ".join(map(str, self.positions)), 80)),
        ]
        rows += [
            (s.name, f"ins {s.insertion_auc:.3f} · del {s.deletion_auc:.3f} · {s.forwards} forwards")
            for s in self.scales
        ]
        rows.append(("forwards", f"{int(self.forwards)} in {float(self.seconds):.1f} s"))
        return html_card(f"MultiScaleExplanation: {len(self.scales)} scales", rows, figure=self.plot())

    def select(self, *, resolution: float | None = None, regions: Sequence[int] | None = None) -> list[ScaleMap]:
        """Scales with this input resolution and/or these requested region counts."""
        out = self.scales
        if resolution is not None:
            out = [s for s in out if abs(s.resolution - resolution) < 1e-9]
        if regions is not None:
            out = [s for s in out if s.requested_regions in set(regions)]
        return out

    def saliency(self, combine_kind: str = "mean", scales: Sequence[ScaleMap] | None = None) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]``: the ``"mean"`` or ``"weighted"`` combination of ``scales`` (default all)."""
        if combine_kind not in COMBINES:
            raise ValueError(f"unknown combination {combine_kind!r}; expected one of {list(COMBINES)}")
        chosen = list(self.scales if scales is None else scales)
        if not chosen:
            raise ValueError("no scales selected")
        weights = None if combine_kind == "mean" else [s.weight for s in chosen]
        return combine([s.saliency for s in chosen], weights)

    def score(
        self,
        adapter: ModelAdapter,
        labels: np.ndarray,
        *,
        combine_kind: str = "mean",
        scales: Sequence[ScaleMap] | None = None,
        fill: str | None = None,
        batch_size: int | None = None,
    ) -> Explanation:
        """Replay a combined map on ``labels`` by the ONE protocol (:func:`mllm_attr.protocol.score_map`)."""
        from ..protocol import score_map

        chosen = list(self.scales if scales is None else scales)
        return score_map(
            adapter,
            self.image,
            self.generation,
            self.positions,
            self.saliency(combine_kind, chosen),
            labels=labels,
            fill=fill or self.settings.get("fill", "black"),
            batch_size=batch_size,
            lambda1=float(self.settings.get("lambda1", 1.0)),
            lambda2=float(self.settings.get("lambda2", 1.0)),
            method_name=f"multiscale-{combine_kind}",
            settings={"scales": [s.name for s in chosen]},
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the explained tokens, the per-scale summaries (no maps) and bookkeeping."""
        return {
            "generated_text": self.generation.text,
            "target_positions": list(self.positions),
            "target_tokens": [self.generation.tokens[p] for p in self.positions],
            "scales": [s.to_dict() for s in self.scales],
            "forwards": int(self.forwards),
            "seconds": float(self.seconds),
            "settings": self.settings,
            "versions": self.versions,
        }


class MultiScaleExplainer:
    """Run the EAGLE explainer at several region granularities and input resolutions.

    Args:
        adapter: any :class:`~mllm_attr.ModelAdapter`.
        region_scales: requested region counts at the original resolution.
        resolutions: input scale factors (MSEA); each runs with ``resolution_regions`` regions.
            ``1.0`` here adds nothing when ``resolution_regions`` is already in ``region_scales``.
        resolution_regions: region count for the resolution scales (default: the largest of
            ``region_scales``).
        keep_explanations: keep each scale's :class:`~mllm_attr.Explanation` on the result.
        **explainer_options: passed to every :class:`~mllm_attr.Explainer` (``segmenter``,
            ``fill``, ``search``, ``search_options``, ``lambda1``, ``lambda2``,
            ``batch_size``, ``max_forwards`` (per scale), ``seed``, ``max_new_tokens``).
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        region_scales: Sequence[int] = (16, 36, 64),
        resolutions: Sequence[float] = (),
        resolution_regions: int | None = None,
        keep_explanations: bool = False,
        **explainer_options: Any,
    ):
        from ..explainer import Explainer

        if not isinstance(adapter, ModelAdapter):
            raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
        if "n_regions" in explainer_options:
            raise TypeError("pass region counts as region_scales, not n_regions")
        region_scales = [int(n) for n in region_scales]
        resolutions = [float(r) for r in resolutions]
        if not region_scales and not resolutions:
            raise ValueError("expected at least one region scale or resolution")
        for r in resolutions:
            if not np.isfinite(r) or r <= 0:
                raise ValueError(f"resolutions must be positive numbers; got {r!r}")
        res_n = (
            int(resolution_regions) if resolution_regions is not None else (max(region_scales) if region_scales else 36)
        )
        plan: list[tuple[int, float]] = [(n, 1.0) for n in region_scales]
        plan += [(res_n, r) for r in resolutions]
        self.plan = list(dict.fromkeys(plan))
        self.adapter = adapter
        self.keep_explanations = keep_explanations
        self.explainer_options = dict(explainer_options)
        # Build one explainer per region count now, so bad options fail early.
        self._explainers = {n: Explainer(adapter, n_regions=n, **explainer_options) for n, _ in self.plan}

    def __call__(
        self,
        image: ImageLike,
        generation: Generation | None = None,
        *,
        target: TargetLike = "all",
        prompt: str | None = None,
    ) -> MultiScaleExplanation:
        """Explain ``target`` at every scale; see :class:`~mllm_attr.Explainer` for the arguments."""
        t0 = time.perf_counter()
        first = next(iter(self._explainers.values()))
        loaded, generation, positions = first.prepare(image, generation, target, prompt)
        arr = loaded.array
        h, w = arr.shape[:2]
        scales = []
        forwards = 0
        for n, res in self.plan:
            img = arr if res == 1.0 else resize_image(arr, res)
            # The same answer on a resampled copy of the (checked) image: on purpose, so not refused.
            gen_at = generation if res == 1.0 else dataclasses.replace(generation, image_sha256=None)
            expl = self._explainers[n](img, gen_at, target=Positions(tuple(positions)))
            sal = normalize_map(resize_map(expl.saliency(), (h, w)))
            name = f"regions={n}" if res == 1.0 else f"regions={n}@{res:g}x"
            scales.append(
                ScaleMap(
                    name=name,
                    requested_regions=n,
                    n_regions=expl.n_regions,
                    resolution=res,
                    saliency=sal,
                    insertion_auc=expl.insertion_auc(),
                    deletion_auc=expl.deletion_auc(),
                    forwards=expl.forwards,
                    explanation=expl if self.keep_explanations else None,
                )
            )
            forwards += expl.forwards
            logger.info(
                "scale %s: insertion %.3f deletion %.3f (%d forwards)",
                name,
                scales[-1].insertion_auc,
                scales[-1].deletion_auc,
                expl.forwards,
            )
        settings = {k: v for k, v in first.settings().items() if k != "n_regions_requested"}
        settings.update(
            {"method": "eagle-multiscale", "plan": [list(p) for p in self.plan], "adapter": self.adapter.describe()}
        )
        return MultiScaleExplanation(
            image=np.asarray(arr),
            generation=generation,
            positions=list(positions),
            scales=scales,
            forwards=forwards,
            seconds=time.perf_counter() - t0,
            settings=settings,
        )


__all__ = [
    "COMBINES",
    "MultiScaleExplainer",
    "MultiScaleExplanation",
    "ScaleMap",
    "combine",
    "normalize_map",
    "resize_image",
    "resize_map",
]
