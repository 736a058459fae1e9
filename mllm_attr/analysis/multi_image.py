"""Several images in one prompt: regions of every image ranked in ONE ordering.

Each image is segmented on its own (``n_regions`` per image, or one count per image, or your
own label maps); region ids are offset image after image, so one label space covers all of
them: image 0 has regions ``0..n_0-1``, image 1 ``n_0..n_0+n_1-1``, and so on. One
:class:`~mllm_attr.objective.Objective` over the union is maximised by any search that treats
regions as plain indices (:data:`MULTI_IMAGE_SEARCHES`; ``hierarchical`` reads the geometry of
ONE label map and is refused). A candidate subset shows the kept regions of EVERY image at once
(the others filled), in one prompt with one image entry per image, in order.

Scoring (:class:`~mllm_attr.adapters.hf.HFMultiImageScorer`): the processor runs once on the full
images for the text tensors; per candidate only the image-side tensors change, built on the
exact fast path of one image, set up per image and assembled per candidate (accepted after a
probe against the processor path, as for one image), or else by the image processor on each
candidate's masked images. ``settings["multi_image"]["scoring_path"]`` says which (``"fast"`` /
``"processor"``), ``settings["fast_path"]`` why. Batched, counted forwards (one candidate of N
images = one forward), logits at the target positions only, softmax in float64.

The result, :class:`MultiImageAttribution`, holds the images and their label maps, the
ordering, the curves over the fraction of the TOTAL image area (all images' pixels together),
the AUCs, one map per image, and :meth:`MultiImageAttribution.image_shares`: how the
attribution splits between the images.

Example:
    >>> attr = explain_multi_image(adapter, [img_a, img_b], prompt="Which image shows a cat?")  # doctest: +SKIP
    >>> attr.image_shares()                                                                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..adapters.base import ModelAdapter
from ..adapters.hf import HFAdapter, HFMultiImageScorer, images_sha256, images_to_strip, strip_to_images
from ..explainer import Explainer, _segmenter_name, check_labels_for_image, fast_path_settings
from ..explanation import AttributionResult, versions
from ..image import ImageLike, LoadedImage, load_image
from ..mask import make_fill, resolve_fill
from ..objective import Objective
from ..search import IMAGE_ONLY_SEARCHES, SEARCHES, replay_cost, run_search
from ..segment import Segmentation, SegmenterLike, check_label_map, segment
from ..targets import Answer, TargetLike, as_target, resolve
from ..types import Generation

logger = logging.getLogger(__name__)

#: Searches that can order the regions of several images (every search but the geometric ones).
MULTI_IMAGE_SEARCHES: tuple[str, ...] = tuple(sorted(set(SEARCHES) - IMAGE_ONLY_SEARCHES))


def offset_label_maps(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-image label maps (each ``0..n_i-1``) -> one label space: image ``i``'s ids shifted by
    ``n_0 + ... + n_{i-1}``. Returns ``int32`` maps."""
    out, offset = [], 0
    for m in maps:
        m = np.asarray(m)
        out.append((m + offset).astype(np.int32))
        offset += int(m.max()) + 1
    return out


# --------------------------------------------------------------------------- result


@dataclass(repr=False)  # the base's one-line repr, not one that prints every array
class MultiImageAttribution(AttributionResult):
    """Regions of several images (one prompt) in one ordering, for generated tokens.

    The images are stored as one strip of pixels (:func:`~mllm_attr.adapters.hf.images_to_strip`):
    :attr:`image` is ``uint8[1, P, 3]`` (every image's pixels, row-major, in order) and
    :attr:`labels` ``int32[1, P]`` their regions in one label space (image 0 first). So the
    common machinery of :class:`~mllm_attr.explanation.AttributionResult` (validation, ranks,
    curves, AUCs, scores, summary, save / load) applies unchanged; :attr:`images`,
    :attr:`label_maps` and :meth:`saliencies` give them back per image.

    The curves run over the fraction of the TOTAL image area (:attr:`x_axis`): a region advances
    ``x`` by its share of all images' pixels together (:attr:`areas`), as an
    :class:`~mllm_attr.Explanation`'s over one image.

    Attributes:
        image: ``uint8[1, P, 3]`` strip of all images; labels: ``int32[1, P]`` (``n`` regions).
        image_shapes: ``(H_i, W_i)`` of each image, in prompt order.
        ordering: ``int64[n]`` regions, most important first; areas: ``float64[n]`` total-area
            fraction revealed after each step (last = 1).
        ins, dele: ``float64[n, K]``; value: ``float64[n]``; p_full, p_blank: ``float64[K]``.
        generation, positions, forwards, seconds, settings, versions: as for an explanation.

    On disk (:meth:`save`): the usual files; ``saliency.npy`` is the strip's map
    (``float32[1, P]``; :meth:`saliencies` splits it), ``explanation.json`` holds
    ``image_shapes``, ``region_offsets`` and ``image_shares``, ``heatmap.png`` one map per image.
    """

    result_type: ClassVar[str] = "multi_image_attribution"
    x_axis: ClassVar[str] = "fraction of the total image area (all images)"
    _noun: ClassVar[str] = "multi-image attribution"
    _float_fields: ClassVar[tuple[str, ...]] = ("areas", "ins", "dele", "value", "p_full", "p_blank")
    _meta_keys: ClassVar[tuple[str, ...]] = AttributionResult._meta_keys + ("image_shapes",)
    #: What one image of the result is called in displays and reports.
    unit: ClassVar[str] = "image"

    image: np.ndarray
    labels: np.ndarray
    image_shapes: list[tuple[int, int]]
    ordering: np.ndarray
    areas: np.ndarray
    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray
    p_full: np.ndarray
    p_blank: np.ndarray
    generation: Generation
    positions: list[int]
    forwards: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)

    def _feature_noun(self) -> str:
        return "regions"

    def _check_more(self, h: int, w: int) -> None:
        try:
            shapes = [(int(a), int(b)) for a, b in self.image_shapes]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"MultiImageAttribution.image_shapes must be (H, W) pairs; got {self.image_shapes!r}"
            ) from exc
        if not shapes or any(a < 1 or b < 1 for a, b in shapes):
            raise ValueError(f"MultiImageAttribution.image_shapes must be positive (H, W) pairs; got {shapes}")
        if h != 1 or sum(a * b for a, b in shapes) != w:
            raise ValueError(
                f"MultiImageAttribution: a strip of shape {(h, w)} does not hold images of shapes {shapes} "
                f"({sum(a * b for a, b in shapes)} pixels)"
            )
        self.image_shapes = shapes
        maps = strip_to_images(np.asarray(self.labels), shapes)
        owners = [set(np.unique(m).tolist()) for m in maps]
        for i in range(len(owners)):
            for j in range(i):
                if owners[i] & owners[j]:
                    raise ValueError(f"MultiImageAttribution: images {j} and {i} share region ids")

    # -- per image -----------------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        """Number of images in the prompt."""
        return len(self.image_shapes)

    @property
    def images(self) -> list[np.ndarray]:
        """The explained images, ``uint8[H_i, W_i, 3]`` each, in prompt order."""
        return strip_to_images(self.image, [(h, w, 3) for h, w in self.image_shapes])

    @property
    def label_maps(self) -> list[np.ndarray]:
        """Each image's label map (``int32[H_i, W_i]``), in the shared label space."""
        return strip_to_images(self.labels, self.image_shapes)

    def image_of_region(self) -> np.ndarray:
        """``int64[n]``: the image each region belongs to."""
        out = np.full(self.n_regions, -1, dtype=np.int64)
        for i, m in enumerate(self.label_maps):
            out[np.unique(m)] = i
        return out

    @property
    def region_offsets(self) -> list[int]:
        """The first region id of each image (``image i`` has ids ``offsets[i] .. offsets[i + 1] - 1``)."""
        return [int(m.min()) for m in self.label_maps]

    @property
    def n_regions_per_image(self) -> list[int]:
        """Regions of each image."""
        return [int(np.unique(m).size) for m in self.label_maps]

    def saliencies(self, *, rule: str = "evidence", token: int | None = None) -> list[np.ndarray]:
        """One ``float32[H_i, W_i]`` map per image, in ``[0, 1]`` on ONE scale (a region's value is
        its gain relative to the top region of ALL images; see :meth:`region_scores`)."""
        return strip_to_images(self.saliency(rule=rule, token=token), self.image_shapes)

    def image_shares(
        self, *, top_k: int | None = None, rule: str = "evidence", token: int | None = None
    ) -> list[dict[str, Any]]:
        """How the attribution splits between the images: one dict per image, in prompt order.

        With ``s_r`` the region scores (:meth:`region_scores`, ``rule`` / ``token``; in ``[0, 1]``,
        on one scale for all images) and ``g_r = max(0, F_t − F_{t−1})`` the objective gain
        (insight + necessity) of region ``r`` at its step ``t`` of the ordering:

        * ``score_share``: ``Σ_{r in image} s_r / Σ_r s_r``, the image's part of the map's mass;
        * ``gain_share``: ``Σ_{r in image} g_r / Σ_r g_r``, its part of the positive objective gains
          (0 for every image when no region gained anything);
        * ``top_k_share``: the fraction of the ``top_k`` first regions of the ordering that are the
          image's (``top_k`` default: ``max(1, round(n / 5))`` of the ``n`` regions);
        * ``best_rank``: the rank (0-based) of the image's highest region;
        * ``area``: the image's share of all pixels (what a share would be with no preference);
        * ``image``, ``n_regions``, ``top_k``.

        Each share sums to 1 over the images (except ``gain_share`` when nothing gained).
        """
        n = self.n_regions
        if top_k is None:
            top_k = max(1, round(n / 5))
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= n:
            raise ValueError(f"top_k must be an integer in [1, {n}]; got {top_k!r}")
        owner = self.image_of_region()
        scores = self.region_scores(rule=rule, token=token)
        f0, value = self.objective_curve(token)
        steps = np.diff(np.concatenate([[f0], np.asarray(value, dtype=np.float64)]))
        gains = np.empty(n)
        gains[self.ordering] = np.maximum(steps, 0.0)
        ranks = self.ranks()
        top = owner[self.ordering[: int(top_k)]]
        total_s, total_g = float(scores.sum()), float(gains.sum())
        pixels = np.array([h * w for h, w in self.image_shapes], dtype=np.float64)
        out = []
        for i in range(self.n_images):
            mine = owner == i
            out.append(
                {
                    "image": i,
                    "n_regions": int(mine.sum()),
                    "area": float(pixels[i] / pixels.sum()),
                    "score_share": float(scores[mine].sum() / total_s) if total_s > 0 else 0.0,
                    "gain_share": float(gains[mine].sum() / total_g) if total_g > 0 else 0.0,
                    "top_k": int(top_k),
                    "top_k_share": float((top == i).mean()),
                    "best_rank": int(ranks[mine].min()),
                }
            )
        return out

    # -- curves over the total image area ------------------------------------------------------
    def curve_x(self) -> np.ndarray:
        """``float64[n]``: :attr:`areas`, the fraction of all images' pixels revealed after each step."""
        return self.areas

    def insertion_auc(self, token: int | None = None) -> float:
        """Area under the insertion curve over the total image area (higher is better)."""
        return self.auc("insertion", token)

    def deletion_auc(self, token: int | None = None) -> float:
        """Area under the deletion curve over the total image area (lower is better)."""
        return self.auc("deletion", token)

    def insertion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: revealed fraction of the total image area vs probability."""
        return self.curve("insertion", token)

    def deletion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: removed fraction of the total image area vs probability."""
        return self.curve("deletion", token)

    # -- display -------------------------------------------------------------------------------
    def plot(self, token: int | None = None, ax: Any = None, **kw: Any) -> Any:
        """One map per image side by side, on one scale, with the top regions outlined and each
        image's share in its title (:func:`mllm_attr.viz.plot_multi_image`; ``kw`` its options).
        ``ax`` is not supported (the figure has one axes per image). Returns the figure."""
        if ax is not None:
            raise ValueError("MultiImageAttribution.plot draws one axes per image; it takes no ax")
        from ..viz import plot_multi_image

        return plot_multi_image(self, token=token, **kw)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the maps, the explained tokens, the answer, the per-image shares."""
        from ..viz import html_card, short_text

        gen = self.generation
        rows: list[tuple[str, Any]] = [("prompt", short_text(gen.prompt, 120))]
        if gen.counterfactual:
            rows.append(("generated", short_text(gen.generated_text or "", 120)))
        rows += [
            ("counterfactual answer" if gen.counterfactual else "answer", short_text(gen.text, 120)),
            ("explained", short_text(f"{self.target_text!r} (tokens {', '.join(map(str, self.positions))})", 160)),
            (f"{self.unit}s", str(self.n_images)),
            ("regions", " + ".join(map(str, self.n_regions_per_image))),
            (
                f"{self.unit} shares (score / top-k)",
                ", ".join(
                    f"#{s['image'] + 1}: {s['score_share']:.0%} / {s['top_k_share']:.0%}" for s in self.image_shares()
                ),
            ),
            ("insertion AUC ↑", f"{self.auc('insertion'):.3f}"),
            ("deletion AUC ↓", f"{self.auc('deletion'):.3f}"),
            ("highest confidence", f"{self.highest_confidence():.3f}"),
            ("forwards", f"{int(self.forwards)} in {float(self.seconds):.1f} s"),
        ]
        fig = self.plot()
        return html_card(f"{type(self).__name__}: {short_text(self.target_text, 60)!r}", rows, figure=fig)

    # -- serialisation -------------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        return {"n_regions": self.n_regions, "n_images": self.n_images}

    def _json_extra(self) -> dict[str, Any]:
        return {
            "areas": self.areas.tolist(),
            "image_shapes": [list(s) for s in self.image_shapes],
            "region_offsets": self.region_offsets,
            "n_regions_per_image": self.n_regions_per_image,
            "image_shares": self.image_shares(),
        }

    def _write_files(self, into: Any, *, heatmap: bool) -> None:
        super()._write_files(into, heatmap=False)
        if heatmap:
            from ..viz import save_figure

            save_figure(self.plot(), into / "heatmap.png", dpi=150)

    @classmethod
    def _from_saved(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], common: dict[str, Any]
    ) -> MultiImageAttribution:
        shapes = meta["image_shapes"]
        if not isinstance(shapes, list) or not all(isinstance(s, list) and len(s) == 2 for s in shapes):
            raise ValueError(f"image_shapes must be a list of [H, W] pairs; got {shapes!r}")
        return cls(**common, image_shapes=[(int(a), int(b)) for a, b in shapes])


# --------------------------------------------------------------------------- explainer


class MultiImageExplainer(Explainer):
    """An :class:`~mllm_attr.Explainer` over SEVERAL images in one prompt (see the module docstring).

    Args:
        adapter: a transformers adapter whose family takes several images
            (:data:`~mllm_attr.adapters.hf.MULTI_IMAGE_FAMILIES`).
        n_regions: regions requested per image: one count for every image, or one per image.
        labels: your own label maps instead of the segmenter, one ``int[H_i, W_i]`` per image
            (each relabelled to ``0..n_i-1`` as :class:`~mllm_attr.Explainer` does, then offset).
        search: one of :data:`MULTI_IMAGE_SEARCHES` (``hierarchical`` is refused).
        segmenter, segmenter_options, fill, search_options, lambda1, lambda2, batch_size,
            max_forwards, seed, max_new_tokens, show_progress, fast_path, threads: as for
            :class:`~mllm_attr.Explainer` (each image is segmented and filled on its own).

    Raises:
        ValueError / TypeError: a search that reads one label map's geometry, an adapter that is not
            a transformers one, bad region counts or label maps, and what the Explainer refuses.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        n_regions: int | Sequence[int] = 16,
        segmenter: SegmenterLike = "slic",
        segmenter_options: dict[str, Any] | None = None,
        labels: Sequence[np.ndarray] | None = None,
        fill: str = "black",
        baseline: str | None = None,
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
    ):
        fill = resolve_fill(fill, baseline, where="MultiImageExplainer")
        if search in IMAGE_ONLY_SEARCHES:
            raise ValueError(
                f"search {search!r} orders the regions of ONE label map by their geometry (colour groups, "
                f"adjacency); several images have one label map each: use one of {list(MULTI_IMAGE_SEARCHES)}"
            )
        if not isinstance(adapter, HFAdapter):
            raise TypeError(
                "several images in one prompt need a transformers adapter (load_adapter of a multimodal model); "
                f"got {type(adapter).__name__}"
            )
        counts: list[int] | None = None
        if isinstance(n_regions, (list, tuple, np.ndarray)):
            counts = [int(c) if isinstance(c, (int, np.integer)) and not isinstance(c, bool) else c for c in n_regions]
            if not counts or any(isinstance(c, bool) or not isinstance(c, int) or c < 2 for c in counts):
                raise ValueError(
                    f"n_regions must be an integer >= 2 or a list of them (one per image); got {n_regions!r}"
                )
        maps: list[np.ndarray] | None = None
        if labels is not None:
            if isinstance(labels, np.ndarray) or not isinstance(labels, (list, tuple)) or not labels:
                raise TypeError("labels must be a list of label maps, one int[H, W] per image")
            if callable(segmenter) and not isinstance(segmenter, str):
                raise ValueError("pass either labels or a callable segmenter, not both")
            maps = []
            for i, m in enumerate(labels):
                check_label_map(m, None, what=f"labels[{i}]")
                arr = np.array(m, copy=True)
                arr.setflags(write=False)
                maps.append(arr)
        super().__init__(
            adapter,
            n_regions=16 if counts is not None else n_regions,  # type: ignore[arg-type]
            segmenter=segmenter,
            segmenter_options=segmenter_options if maps is None else None,
            fill=fill,
            search=search,
            search_options=search_options,
            lambda1=lambda1,
            lambda2=lambda2,
            batch_size=batch_size,
            max_forwards=max_forwards,
            seed=seed,
            max_new_tokens=max_new_tokens,
            show_progress=show_progress,
            fast_path=fast_path,
            threads=threads,
        )
        if maps is not None and segmenter_options:
            raise ValueError("segmenter_options do not apply when labels are given")
        self.region_counts = counts
        self.label_maps = maps

    @property
    def segments_supplied(self) -> bool:
        """True when the regions come from the user (``labels`` or a callable segmenter)."""
        return getattr(self, "label_maps", None) is not None or not isinstance(self.segmenter, str)

    def _segmenter_setting(self) -> str:
        if getattr(self, "label_maps", None) is not None:
            return "user-labels"
        return super()._segmenter_setting()

    def settings(self) -> dict[str, Any]:
        """The explainer's settings plus ``method = "eagle-multi-image"`` and the per-image counts."""
        out = super().settings()
        requested: Any = self.n_regions if self.region_counts is None else list(self.region_counts)
        if self.label_maps is not None:
            requested = [int(np.unique(m).size) for m in self.label_maps]
        elif not isinstance(self.segmenter, str):
            requested = None
        out.update({"method": "eagle-multi-image", "n_regions_requested": requested})
        return out

    def image_segmentations(self, images: Sequence[LoadedImage]) -> list[Segmentation]:
        """The regions of each image (its own ids ``0..n_i-1``): the user maps, the callable
        segmenter's, or :func:`~mllm_attr.segment.segment` with that image's region count."""
        n = len(images)
        if self.region_counts is not None and len(self.region_counts) != n:
            raise ValueError(f"n_regions gives {len(self.region_counts)} counts for {n} images")
        if self.label_maps is not None and len(self.label_maps) != n:
            raise ValueError(f"labels gives {len(self.label_maps)} label maps for {n} images")
        out = []
        for i, loaded in enumerate(images):
            if self.label_maps is not None:
                out.append(check_labels_for_image(self.label_maps[i], loaded, what=f"labels[{i}]"))
            elif not isinstance(self.segmenter, str):
                name = _segmenter_name(self.segmenter)
                got = self.segmenter(np.array(loaded.array, copy=True))
                what = f"the label map returned by segmenter {name!r} for image {i}"
                seg = check_labels_for_image(got, loaded, method="user-callable", what=what)
                out.append(Segmentation(seg.labels, seg.method, seg.requested, {**seg.params, "segmenter_name": name}))
            else:
                count = self.n_regions if self.region_counts is None else self.region_counts[i]
                out.append(segment(loaded.array, count, self.segmenter, **self.segmenter_options))
        return out

    def __call__(  # type: ignore[override]
        self,
        images: Sequence[ImageLike | LoadedImage],
        generation: Generation | None = None,
        *,
        target: TargetLike = "all",
        prompt: str | None = None,
    ) -> MultiImageAttribution:
        """Explain ``target`` tokens of ``generation`` (generated from ``prompt`` and ``images`` when not
        given) over the regions of all ``images`` (a list, in prompt order).

        Raises:
            ValueError: no image, a family that takes one image only, a ``generation`` made on other
                images (its ``image_sha256`` differs), a budget too small for all regions.
        """
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError("images must be a non-empty list of images (paths, PIL images or uint8 arrays)")
        return self._explain(list(images), generation, target=target, prompt=prompt)  # type: ignore[arg-type]

    explain = __call__

    def replay(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported for several images (explain them with :meth:`__call__`)."""
        raise NotImplementedError("replay of a given ordering is not supported for several images")

    # -- what a subclass for other inputs (a video's frames) changes ---------------------------
    #: What one of the inputs is called in messages.
    _unit: ClassVar[str] = "image"
    #: The result class.
    _result_class: ClassVar[type[MultiImageAttribution]] = MultiImageAttribution

    def _load_inputs(self, image: Any) -> tuple[list[LoadedImage], str, Any]:
        """``(loaded images, the hash a Generation made on them records, what the adapter takes)``."""
        loaded = [load_image(im) for im in image]
        self.adapter.check_multi_image(len(loaded))
        return loaded, images_sha256([im.sha256 for im in loaded]), [im.array for im in loaded]

    def _make_scorer(
        self,
        model_input: Any,
        generation: Generation,
        positions: Sequence[int],
        fills: list[np.ndarray],
        batch_size: int,
    ) -> HFMultiImageScorer:
        return self.adapter.multi_image_scorer(
            model_input, generation, positions, fills=fills, batch_size=batch_size, fast_path=self.fast_path
        )

    def _extra_settings(self, model_input: Any) -> dict[str, Any]:
        """Settings entries of this kind of input, added to every result."""
        return {}

    def _result_fields(self, model_input: Any) -> dict[str, Any]:
        """Fields of :attr:`_result_class` beyond those of :class:`MultiImageAttribution`."""
        return {}

    def _explain_steps(  # type: ignore[override]
        self,
        image: Sequence[ImageLike | LoadedImage],
        generation: Generation | None,
        *,
        target: TargetLike,
        prompt: str | None,
        segmentation: Any,
        search: Any,
        n_threads: int,
    ) -> MultiImageAttribution:
        t0 = time.perf_counter()
        loaded, sha, model_input = self._load_inputs(image)
        unit = self._unit
        # Regions and budget first: bad label maps or a too small budget fail before any model work.
        segs = self.image_segmentations(loaded)
        maps = offset_label_maps([s.labels for s in segs])
        n = int(maps[-1].max()) + 1
        needed = 2 + replay_cost(n - 1)
        if self.max_forwards is not None and self.max_forwards < needed:
            raise ValueError(
                f"max_forwards={self.max_forwards} is too small for {n} regions over {len(loaded)} {unit}s: the full "
                f"and blank {unit}s plus the insertion and deletion curves alone take {needed} forwards "
                "(2 x regions); raise max_forwards or lower n_regions"
            )
        arrays = [im.array for im in loaded]
        spec = as_target(target)
        if generation is None:
            if prompt is None:
                raise ValueError("pass either a Generation or a prompt to generate one")
            generation = self.adapter.generate(model_input, prompt, max_new_tokens=self.max_new_tokens)
        elif not isinstance(generation, Generation):
            raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
        elif generation.image_sha256 is not None and generation.image_sha256 != sha:
            raise ValueError(
                f"this Generation was made on other {unit}s (hash {generation.image_sha256[:8]}… vs {sha[:8]}… of "
                f"the {len(loaded)} {unit}s given here, in this order): call adapter.generate on these {unit}s"
            )
        if isinstance(spec, Answer):
            generation = self.adapter.teacher_force(
                model_input, generation.prompt, spec.text, generated_text=generation.text
            )
        positions = resolve(generation, spec)
        fills = [make_fill(a, self.fill) for a in arrays]
        batch_size = self.batch_size or self.adapter.default_batch_size()
        scorer = self._make_scorer(model_input, generation, positions, fills, batch_size)
        strip_labels = images_to_strip([m[..., None].repeat(3, axis=-1) for m in maps])[..., 0].astype(np.int32)
        objective = Objective(
            scorer, strip_labels, lambda1=self.lambda1, lambda2=self.lambda2, max_forwards=self.max_forwards
        )
        result = run_search(
            self.search, objective, self.search_options, seed=self.seed, show_progress=self.show_progress
        )
        p_full, p_blank = objective.endpoints()
        fast = fast_path_settings(self.adapter, scorer, self.fast_path)
        settings = self.settings()
        settings.update(
            {
                "n_regions": n,
                "batch_size": batch_size,
                "segmenter_params": [s.params for s in segs],
                "fast_path": fast,
                "adapter": self.adapter.describe(),
                "image": [
                    {
                        "size": list(im.size),
                        "original_size": list(im.original_size),
                        "original_mode": im.original_mode,
                        "notes": list(im.notes),
                    }
                    for im in loaded
                ],
                "multi_image": {
                    "n_images": len(loaded),
                    "n_regions_per_image": [s.n_regions for s in segs],
                    "n_regions_requested_per_image": [s.requested for s in segs],
                    "region_offsets": [int(m.min()) for m in maps],
                    "scoring_path": "fast" if fast.get("used") else "processor",
                },
                **self._extra_settings(model_input),
                "target": repr(spec),
                "search_info": result.info,
                "forward_calls": scorer.counter.calls,
                "threads": {"requested": self.threads, "used": n_threads},
            }
        )
        sizes = np.bincount(strip_labels.ravel(), minlength=n) / strip_labels.size
        areas = np.cumsum(sizes[np.asarray(result.ordering)])
        areas[-1] = 1.0
        out = self._result_class(
            image=images_to_strip(arrays),
            labels=strip_labels,
            image_shapes=[tuple(a.shape[:2]) for a in arrays],
            ordering=result.ordering,
            areas=areas,
            ins=result.ins,
            dele=result.dele,
            value=result.value,
            p_full=np.asarray(p_full, dtype=np.float64),
            p_blank=np.asarray(p_blank, dtype=np.float64),
            generation=generation,
            positions=list(positions),
            forwards=scorer.forwards,
            seconds=time.perf_counter() - t0,
            settings=settings,
            **self._result_fields(model_input),
        )
        logger.info(
            "%s: %d %ss, %d regions, %d forwards (%s path), insertion AUC %.3f",
            out._noun,
            unit,
            out.n_images,
            n,
            out.forwards,
            settings["multi_image"]["scoring_path"],
            out.insertion_auc(),
        )
        return out


def explain_multi_image(
    adapter: ModelAdapter,
    images: Sequence[ImageLike],
    generation: Generation | None = None,
    *,
    target: TargetLike = "all",
    prompt: str | None = None,
    **options: Any,
) -> MultiImageAttribution:
    """Order the regions of several images of one prompt by the EAGLE objective:
    ``MultiImageExplainer(adapter, **options)(images, generation, target=..., prompt=...)``.

    ``options`` are those of :class:`MultiImageExplainer` (``n_regions`` per image, default 16;
    exact greedy costs ``n(n + 1)`` forwards for ``n`` regions in all).
    """
    return MultiImageExplainer(adapter, **options)(images, generation, target=target, prompt=prompt)


__all__ = [
    "MULTI_IMAGE_SEARCHES",
    "MultiImageAttribution",
    "MultiImageExplainer",
    "explain_multi_image",
    "offset_label_maps",
]
