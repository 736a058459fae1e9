"""Video input at the public boundary: a :class:`Video` is a list of same-size RGB frames plus
the rate they were sampled at.

A video comes in as a file (decoded with PyAV, the optional extra ``video``:
``pip install "mllm_attr[video]"``; ``num_frames`` frames sampled uniformly over the whole
clip, as the Qwen2-VL / Qwen2.5-VL video processors sample with ``num_frames``; Qwen3-VL's run
from the first to the last frame), as a list of frames (paths, PIL images or
``uint8`` arrays; ``fps`` says how far apart they are), or as a :class:`Video` already made.
Every frame goes through :func:`~mllm_attr.image.load_image` (EXIF orientation, RGB, downscale
of very large frames), and all frames must then have one size.

Example:
    >>> video = load_video("clip.mp4", num_frames=8)                  # doctest: +SKIP
    >>> video = load_video(["f0.png", "f1.png", "f2.png"], fps=1.0)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .image import MAX_PIXELS, ImageLike, LoadedImage, image_sha256, load_image

logger = logging.getLogger(__name__)

#: Frames sampled from a video file when ``num_frames`` is not given.
DEFAULT_NUM_FRAMES = 8
#: The frame rate assumed for a list of frames when ``fps`` is not given (the Qwen-VL default
#: sampling rate: two frames per second).
DEFAULT_FPS = 2.0


@dataclass(frozen=True, eq=False)  # frames are arrays: compare videos by sha256
class Video:
    """Frames of a video, in time order, and when each was shown.

    Attributes:
        frames: ``uint8[H, W, 3]`` RGB frames, all of one size.
        fps: frames per second of THESE frames (the sampling rate, not the file's own rate).
        times: each frame's time in seconds from the start of the clip.
        source: the file the frames were decoded from (``None`` for a list of frames).
        notes: conversions on the way in (decoding, sampling, per-frame image notes).
    """

    frames: tuple[np.ndarray, ...]
    fps: float
    times: tuple[float, ...]
    source: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("a video needs at least one frame; got none")
        shapes = {tuple(np.shape(f)) for f in self.frames}
        if len(shapes) != 1:
            raise ValueError(f"all frames of a video must have one size; got shapes {sorted(shapes)}")
        (shape,) = shapes
        if len(shape) != 3 or shape[2] != 3 or any(np.asarray(f).dtype != np.uint8 for f in self.frames):
            raise ValueError(f"video frames must be uint8[H, W, 3] RGB arrays; got shape {shape}")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ValueError(f"fps must be a positive number of frames per second; got {self.fps!r}")
        if len(self.times) != len(self.frames):
            raise ValueError(f"got {len(self.times)} frame times for {len(self.frames)} frames")

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of every frame."""
        h, w = self.frames[0].shape[:2]
        return (int(w), int(h))

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of the frames (in order, each by :func:`~mllm_attr.image.image_sha256`), the
        frame rate and the frame times (Qwen2.5-VL and Qwen3-VL place frames in time by them): what
        a :class:`~mllm_attr.types.Generation` made on the video records."""
        times = ",".join(repr(float(t)) for t in self.times)
        text = "video:" + ",".join(image_sha256(f) for f in self.frames) + f";fps={float(self.fps)!r};times={times}"
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts stored with every result: frames, size, rate, times, source, notes."""
        return {
            "n_frames": self.n_frames,
            "size": list(self.size),
            "fps": float(self.fps),
            "times": [float(t) for t in self.times],
            "source": self.source,
            "notes": list(self.notes),
        }


#: What :func:`load_video` takes.
VideoLike = str | os.PathLike | Sequence[ImageLike] | Video


def is_video(value: Any) -> bool:
    """True for a :class:`Video` (the adapters' way of telling a video from an image or a list of images)."""
    return isinstance(value, Video)


def _sample_indices(total: int, num_frames: int) -> np.ndarray:
    """``num_frames`` frame indices spread uniformly over ``total`` frames: ``floor(i * total / num_frames)``
    in exact integer arithmetic (the first frame included)."""
    return (np.arange(num_frames, dtype=np.int64) * int(total)) // int(num_frames)


def _check_count(num_frames: Any) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer; got {num_frames!r}")
    return int(num_frames)


def _check_fps(fps: Any) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    if not np.isfinite(float(fps)) or float(fps) <= 0:
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    return float(fps)


def decode_video(
    path: str | os.PathLike, *, num_frames: int = DEFAULT_NUM_FRAMES, max_pixels: int = MAX_PIXELS
) -> Video:
    """Decode ``num_frames`` frames spread uniformly over the video file ``path`` (PyAV).

    The frames are taken at indices ``floor(i * total / num_frames)`` of the decoded stream (the
    uniform sampling of the Qwen2-VL / Qwen2.5-VL video processors); their times are the decoder's presentation
    times (from the first frame), their rate ``num_frames / duration``. The stream is decoded twice
    (once to count the frames, once to convert only the sampled ones to RGB), so memory holds
    ``num_frames`` frames, not the clip.

    Raises:
        ImportError: PyAV is not installed (the message names the ``video`` extra).
        FileNotFoundError: no such file.
        ValueError: not a readable video, no video stream, or fewer frames than ``num_frames``.
    """
    num_frames = _check_count(num_frames)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video file not found: {str(p)!r}")
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            'reading a video file needs PyAV: pip install "mllm_attr[video]" (or pass the frames as a list of images)'
        ) from exc

    def frames_of(container: Any) -> Any:
        if not container.streams.video:
            raise ValueError(f"{str(p)!r} has no video stream")
        return container.decode(container.streams.video[0])

    try:
        with av.open(str(p)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            rate = float(stream.average_rate) if stream is not None and stream.average_rate else None
            times = [float(f.time) if f.time is not None else float("nan") for f in frames_of(container)]
        total = len(times)
        if total == 0:
            raise ValueError(f"{str(p)!r} holds no decodable video frames")
        if num_frames > total:
            raise ValueError(f"asked for {num_frames} frames but {str(p)!r} has only {total}; lower num_frames")
        idx = _sample_indices(total, num_frames)
        wanted = set(idx.tolist())
        picked: dict[int, np.ndarray] = {}
        with av.open(str(p)) as container:
            for k, frame in enumerate(frames_of(container)):
                if k in wanted:
                    picked[k] = frame.to_ndarray(format="rgb24")
                if k >= idx[-1]:
                    break
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ValueError(f"cannot decode {str(p)!r} as a video: {exc}") from exc
    if len(picked) != len(wanted):
        raise ValueError(f"{str(p)!r} decoded to fewer frames the second time ({len(picked)} of {len(wanted)})")
    if all(np.isfinite(times)):
        start = times[0]
        duration = times[-1] - start + (1.0 / rate if rate else 0.0)
        picked_times = [times[i] - start for i in idx]
    else:
        duration = total / rate if rate else float(total)
        picked_times = [i / rate if rate else float(i) for i in idx]
    fps = num_frames / duration if duration > 0 else DEFAULT_FPS
    notes = [f"decoded {total} frames of {p.name}, sampled {num_frames} uniformly ({fps:.3g} frames per second)"]
    loaded = [load_image(picked[int(i)], max_pixels=max_pixels) for i in idx]
    for i, im in zip(idx, loaded):
        notes.extend(f"frame {int(i)}: {n}" for n in im.notes)
    return Video(tuple(im.array for im in loaded), fps, tuple(picked_times), str(p), tuple(notes))


def load_video(
    video: VideoLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Video:
    """A :class:`Video` from a file, a list of frames or a :class:`Video`.

    Args:
        video: a video file path (decoded with PyAV), a list of frames (paths, PIL images or
            ``uint8`` arrays: each through :func:`~mllm_attr.image.load_image`), or a :class:`Video`.
        num_frames: frames to sample from a file (default :data:`DEFAULT_NUM_FRAMES`); for a list
            or a :class:`Video`, the number of frames to keep, spread uniformly (default: all),
            each keeping its time.
        fps: the rate of a list of frames (default :data:`DEFAULT_FPS`); not for a file (its rate
            follows from the sampling) or a :class:`Video` (it has its own).
        max_pixels: frames larger than this are downscaled (as images are).

    Raises:
        ValueError: frames of different sizes, an empty list, bad ``num_frames`` / ``fps``, or an
            unreadable file or frame (the message says which).
        FileNotFoundError: a missing file.
    """
    if isinstance(video, Video):
        if fps is not None and float(fps) != video.fps:
            raise ValueError(f"a Video carries its own rate ({video.fps:g} fps); got fps={fps!r}")
        if num_frames is None or num_frames == video.n_frames:
            return video
        n = _check_count(num_frames)
        if n > video.n_frames:
            raise ValueError(f"asked for {n} frames of a video of {video.n_frames}; lower num_frames")
        idx = _sample_indices(video.n_frames, n)
        note = f"kept {n} of {video.n_frames} frames, spread uniformly"
        return Video(
            tuple(video.frames[int(i)] for i in idx),
            video.fps * n / video.n_frames,
            tuple(video.times[int(i)] for i in idx),
            video.source,
            (*video.notes, note),
        )
    if isinstance(video, (str, os.PathLike)):
        if fps is not None:
            raise ValueError("fps applies to a list of frames; a file's rate follows from num_frames and its length")
        count = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
        return decode_video(video, num_frames=count, max_pixels=max_pixels)
    if isinstance(video, np.ndarray) and video.ndim == 4:
        video = list(video)  # type: ignore[assignment]
    if not isinstance(video, (list, tuple)):
        raise TypeError(f"expected a video file path, a list of frames or a Video; got {type(video).__name__}")
    if not video:
        raise ValueError("a video needs at least one frame; got an empty list")
    rate = DEFAULT_FPS if fps is None else _check_fps(fps)
    items = list(video)
    idx = np.arange(len(items))
    kept_rate = rate
    if num_frames is not None:
        n = _check_count(num_frames)
        if n > len(items):
            raise ValueError(f"asked for {n} frames of a list of {len(items)}; lower num_frames")
        idx = _sample_indices(len(items), n)
        kept_rate = rate * n / len(items)
    loaded: list[LoadedImage] = []
    for i in idx:
        try:
            loaded.append(load_image(items[int(i)], max_pixels=max_pixels))
        except (ValueError, FileNotFoundError, TypeError) as exc:
            raise type(exc)(f"frame {int(i)}: {exc}") from exc
    shapes = [im.array.shape for im in loaded]
    if len(set(shapes)) != 1:
        raise ValueError(
            "all frames of a video must have one size; got "
            + ", ".join(f"frame {int(i)}: {s[1]}x{s[0]}" for i, s in zip(idx, shapes))
        )
    notes = [f"frame {int(i)}: {n}" for i, im in zip(idx, loaded) for n in im.notes]
    times = tuple(float(i) / rate for i in idx)  # frame i of the list is shown at i / fps
    return Video(tuple(im.array for im in loaded), kept_rate, times, None, tuple(notes))


__all__ = ["DEFAULT_FPS", "DEFAULT_NUM_FRAMES", "Video", "decode_video", "is_video", "load_video"]
