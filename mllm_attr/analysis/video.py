"""Video: the regions of every frame ranked in ONE ordering, scored through the model's video input.

A video (:class:`~mllm_attr.video.Video`: frames of one size, in time order, and their rate; from a
file, decoded with the optional PyAV extra, or from a list of frames) is explained over
frames x regions as one feature set: each frame is segmented on its own (``n_regions`` per frame,
any segmenter, ``"grid"`` included, or your own label maps), region ids run frame after frame, and
one :class:`~mllm_attr.objective.Objective` over all of them is maximised by any search that treats
regions as plain indices. ``whole_frames=True`` is the coarse option: one region per frame, which
answers "which frames?" with ``2 x frames`` forwards for the curves and ``F(F + 1)`` for exact greedy.

A candidate shows the kept regions of every frame (the rest filled) and goes through the family's
VIDEO input (:class:`~mllm_attr.adapters.hf.HFVideoScorer`): the video placeholder expanded to one
token per merged patch, the frames in temporal patches (``pixel_values_videos``,
``video_grid_thw``; Qwen2.5-VL's ``second_per_grid_ts`` from the frame rate), temporal M-RoPE.
The frames are prepared by the family's image processor (its video processor needs torchvision);
per candidate only the video tensors change, built on the exact fast path (per-frame tables
assembled into temporal patches, accepted after a probe) or by the image processor on each masked
frame. Families: :data:`~mllm_attr.adapters.hf.VIDEO_FAMILIES`.

The result, :class:`VideoAttribution`, is a :class:`~mllm_attr.analysis.multi_image.MultiImageAttribution`
whose images are the frames, with the frame rate and times: :meth:`VideoAttribution.frame_shares`
says which frames carried the tokens, :meth:`~VideoAttribution.saliencies` which regions of each.

Example:
    >>> video = load_video("clip.mp4", num_frames=4)                          # doctest: +SKIP
    >>> attr = explain_video(adapter, video, prompt="What happens?", n_regions=6)  # doctest: +SKIP
    >>> [round(s["score_share"], 2) for s in attr.frame_shares()]              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..adapters.base import ModelAdapter
from ..adapters.hf import HFAdapter, HFVideoScorer
from ..image import LoadedImage
from ..segment import Segmentation
from ..targets import TargetLike
from ..types import Generation
from ..video import Video, VideoLike, load_video
from .multi_image import MultiImageAttribution, MultiImageExplainer


@dataclass(repr=False)
class VideoAttribution(MultiImageAttribution):
    """Regions of a video's frames in one ordering, for generated tokens.

    Everything of :class:`~mllm_attr.analysis.multi_image.MultiImageAttribution`, with the frames as
    its images (:attr:`frames` = :attr:`images`), plus:

    Attributes:
        fps: the rate of the explained frames (frames per second).
        times: each frame's time in seconds.

    The curves run over the fraction of the total frame area (all frames' pixels together);
    :meth:`frame_shares` is :meth:`image_shares` with each frame's time; :meth:`plot` draws the
    frame strip. ``explanation.json`` holds ``fps``, ``times`` and ``frame_shares``.
    """

    result_type: ClassVar[str] = "video_attribution"
    x_axis: ClassVar[str] = "fraction of the total frame area (all frames)"
    _noun: ClassVar[str] = "video attribution"
    _meta_keys: ClassVar[tuple[str, ...]] = MultiImageAttribution._meta_keys + ("fps", "times")
    unit: ClassVar[str] = "frame"

    fps: float = 2.0
    times: list[float] = field(default_factory=list)

    def _check_more(self, h: int, w: int) -> None:
        super()._check_more(h, w)
        if len(set(self.image_shapes)) != 1:
            raise ValueError(f"VideoAttribution: frames must have one size; got {self.image_shapes}")
        fps = float(self.fps)
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"VideoAttribution.fps must be positive; got {self.fps!r}")
        self.fps = fps
        times = [float(t) for t in self.times] if self.times else [k / fps for k in range(self.n_images)]
        if len(times) != self.n_images:
            raise ValueError(f"VideoAttribution: {len(times)} frame times for {self.n_images} frames")
        self.times = times

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.n_images

    @property
    def frames(self) -> list[np.ndarray]:
        """The explained frames, ``uint8[H, W, 3]`` each, in time order."""
        return self.images

    def frame_shares(self, **kw: Any) -> list[dict[str, Any]]:
        """:meth:`image_shares` per frame (same options), each with ``frame`` (its index) and
        ``time`` (seconds): which frames carried the explained tokens."""
        out = []
        for share, t in zip(self.image_shares(**kw), self.times):
            out.append({"frame": share["image"], "time": float(t), **share})
        return out

    def plot(self, token: int | None = None, ax: Any = None, **kw: Any) -> Any:
        """The frame strip: each frame's map on one scale, the top regions outlined, each frame's
        time and share in its title, and a bar of every frame's share of the map below
        (:func:`mllm_attr.viz.plot_video`). Returns the figure."""
        if ax is not None:
            raise ValueError("VideoAttribution.plot draws one axes per frame; it takes no ax")
        from ..viz import plot_video

        return plot_video(self, token=token, **kw)

    def _counts(self) -> dict[str, int]:
        return {"n_regions": self.n_regions, "n_frames": self.n_frames}

    def _json_extra(self) -> dict[str, Any]:
        return {
            **super()._json_extra(),
            "fps": self.fps,
            "times": list(self.times),
            "frame_shares": self.frame_shares(),
        }

    @classmethod
    def _from_saved(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], common: dict[str, Any]
    ) -> VideoAttribution:
        base = MultiImageAttribution._from_saved.__func__(cls, meta, arrays, common)  # type: ignore[attr-defined]
        times = meta["times"]
        if not isinstance(times, list):
            raise ValueError(f"times must be a list of seconds; got {times!r}")
        base.fps = float(meta["fps"])
        base.times = [float(t) for t in times]
        base._check_more(*np.asarray(base.image).shape[:2])
        return base


class VideoExplainer(MultiImageExplainer):
    """An :class:`~mllm_attr.Explainer` over a VIDEO's frames x regions (see the module docstring).

    Args:
        adapter: a transformers adapter of a family of :data:`~mllm_attr.adapters.hf.VIDEO_FAMILIES`.
        n_regions: regions per frame (one count for every frame, or one per frame; default 8).
        whole_frames: one region per frame (the coarse "which frames?" question); not with
            ``n_regions``, ``labels``, a ``segmenter`` or ``segmenter_options``.
        num_frames: frames to keep (sampled uniformly) when the explainer loads the video itself
            (a file: default 8; a list of frames or a Video: all).
        fps: the rate of a list of frames the explainer loads (default 2; see
            :func:`~mllm_attr.video.load_video`).
        labels: your own label maps, one ``int[H, W]`` per frame.
        options: the rest of :class:`~mllm_attr.analysis.multi_image.MultiImageExplainer`'s
            (``segmenter``, ``search``, ``fill``, ``batch_size``, ``max_forwards``, ``fast_path``, ...).

    Raises:
        ValueError / TypeError: a family without video input, ``whole_frames`` with user regions,
            and what :class:`~mllm_attr.analysis.multi_image.MultiImageExplainer` refuses.
    """

    _unit: ClassVar[str] = "frame"
    _result_class: ClassVar[type[MultiImageAttribution]] = VideoAttribution

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        n_regions: int | list[int] | None = None,
        whole_frames: bool = False,
        num_frames: int | None = None,
        fps: float | None = None,
        **options: Any,
    ):
        if isinstance(adapter, HFAdapter):
            adapter.check_video()
        if not isinstance(whole_frames, bool):
            raise TypeError(f"whole_frames must be True or False; got {whole_frames!r}")
        if whole_frames:
            user = [k for k in ("labels", "segmenter_options", "segmenter") if options.get(k) is not None]
            if n_regions is not None:
                user.insert(0, "n_regions")
            if user:
                raise ValueError(f"whole_frames=True makes one region per frame; it takes no {', '.join(user)}")
        super().__init__(adapter, n_regions=8 if n_regions is None else n_regions, **options)
        self.whole_frames = whole_frames
        self.num_frames = num_frames
        self.fps = fps

    def settings(self) -> dict[str, Any]:
        """The explainer's settings with ``method = "eagle-video"`` and ``whole_frames``."""
        out = super().settings()
        out.update({"method": "eagle-video", "whole_frames": self.whole_frames})
        if self.whole_frames:
            out.update({"segmenter": "whole-frame", "n_regions_requested": 1})
        return out

    def image_segmentations(self, images: Any) -> list[Segmentation]:
        """Each frame's regions: one region per frame with ``whole_frames``, else as for several images."""
        if self.whole_frames:
            return [Segmentation(np.zeros(im.array.shape[:2], dtype=np.int32), "whole-frame", 1, {}) for im in images]
        return super().image_segmentations(images)

    def __call__(  # type: ignore[override]
        self,
        video: VideoLike,
        generation: Generation | None = None,
        *,
        target: TargetLike = "all",
        prompt: str | None = None,
    ) -> VideoAttribution:
        """Explain ``target`` tokens of ``generation`` (generated from ``prompt`` and the video when not
        given) over the regions of every frame of ``video`` (a :class:`~mllm_attr.video.Video`, a
        video file or a list of frames; see :func:`~mllm_attr.video.load_video`).

        Raises:
            ValueError: a ``generation`` made on another video (its ``image_sha256`` differs), a
                budget too small for all regions, and what :func:`~mllm_attr.video.load_video` refuses.
        """
        loaded = load_video(video, num_frames=self.num_frames, fps=self.fps)
        return self._explain(loaded, generation, target=target, prompt=prompt)  # type: ignore[return-value]

    explain = __call__

    def replay(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported for a video (explain it with :meth:`__call__`)."""
        raise NotImplementedError("replay of a given ordering is not supported for a video")

    # -- the hooks of MultiImageExplainer ---------------------------------------------------------
    def _load_inputs(self, image: Any) -> tuple[list[LoadedImage], str, Any]:
        video: Video = image
        self.adapter.check_video(video)
        frames = [LoadedImage(f, (int(f.shape[1]), int(f.shape[0])), "RGB", ()) for f in video.frames]
        return frames, video.sha256, video

    def _make_scorer(
        self, model_input: Any, generation: Generation, positions: Any, fills: list[np.ndarray], batch_size: int
    ) -> HFVideoScorer:
        return self.adapter.video_scorer(
            model_input, generation, positions, fills=fills, batch_size=batch_size, fast_path=self.fast_path
        )

    def _extra_settings(self, model_input: Any) -> dict[str, Any]:
        video: Video = model_input
        return {
            "video": {
                **video.describe(),
                "input": "the model's video input (pixel_values_videos); frames prepared by the image processor",
                "whole_frames": self.whole_frames,
            }
        }

    def _result_fields(self, model_input: Any) -> dict[str, Any]:
        return {"fps": float(model_input.fps), "times": [float(t) for t in model_input.times]}


def explain_video(
    adapter: ModelAdapter,
    video: VideoLike,
    generation: Generation | None = None,
    *,
    target: TargetLike = "all",
    prompt: str | None = None,
    **options: Any,
) -> VideoAttribution:
    """Order the regions of a video's frames by the EAGLE objective:
    ``VideoExplainer(adapter, **options)(video, generation, target=..., prompt=...)``.

    ``options`` are those of :class:`VideoExplainer` (``n_regions`` per frame, default 8;
    ``whole_frames``; exact greedy costs ``n(n + 1)`` forwards for ``n`` regions in all).
    """
    return VideoExplainer(adapter, **options)(video, generation, target=target, prompt=prompt)


__all__ = ["VideoAttribution", "VideoExplainer", "explain_video"]
