"""Image input at the public boundary: one place converts anything to RGB uint8.

Everything downstream works on ``uint8[H, W, 3]`` RGB arrays (or RGB PIL images
made from them). Colour order is never flipped anywhere else in the package.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

ImageLike = str | os.PathLike | bytes | Image.Image | np.ndarray

#: Images with a shorter side than this cannot be split into meaningful regions.
MIN_SIDE = 8
#: Images with more pixels than this are downscaled (aspect kept) before explaining.
MAX_PIXELS = 2048 * 2048

#: The EXIF tag that says how a stored image is turned for display (1 = as stored).
EXIF_ORIENTATION = 0x0112
#: What each EXIF orientation value does to the stored pixels to show them upright.
_ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored and rotated 90 degrees counter-clockwise",
    6: "rotated 90 degrees clockwise",
    7: "mirrored and rotated 90 degrees clockwise",
    8: "rotated 90 degrees counter-clockwise",
}


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image plus what happened to it on the way in.

    Attributes:
        array: ``uint8[H, W, 3]`` RGB pixels actually explained.
        original_size: ``(width, height)`` of the input as displayed (after its EXIF
            orientation), before any downscaling.
        original_mode: the PIL mode of the input (``"RGB"``, ``"RGBA"``, ``"I;16"``, ...).
        notes: human-readable notes on conversions (EXIF orientation, mode change, downscale).
    """

    array: np.ndarray
    original_size: tuple[int, int]
    original_mode: str
    notes: tuple[str, ...] = ()

    @property
    def pil(self) -> Image.Image:
        """The explained pixels as a PIL RGB image."""
        return Image.fromarray(self.array, mode="RGB")

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the explained pixels."""
        return (int(self.array.shape[1]), int(self.array.shape[0]))

    @cached_property
    def sha256(self) -> str:
        """:func:`image_sha256` of :attr:`array` (computed once)."""
        return image_sha256(self.array)


def image_sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of ``uint8[H, W, 3]`` pixels and their shape: what a
    :class:`~mllm_attr.types.Generation` records as ``image_sha256``.

    Raises:
        ValueError: ``array`` is not a ``uint8[H, W, 3]`` array (load it with :func:`load_image`).
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected uint8[H, W, 3] RGB pixels; got {arr.dtype} array of shape {arr.shape}")
    digest = hashlib.sha256("{}x{}x{}:".format(*arr.shape).encode("ascii"))
    digest.update(np.ascontiguousarray(arr).data)
    return digest.hexdigest()


def check_generation_image(generation: Any, image: LoadedImage | np.ndarray) -> None:
    """Refuse to explain an answer on an image other than the one it was generated on.

    A :class:`~mllm_attr.types.Generation` from ``adapter.generate`` / ``teacher_force``
    records the SHA-256 of the pixels the model saw (``image_sha256``); one built by hand has
    ``None`` and is not checked. ``image`` is the loaded image about to be scored.

    Raises:
        ValueError: the hashes differ.
    """
    expected = getattr(generation, "image_sha256", None)
    if expected is None:
        return
    got = image.sha256 if isinstance(image, LoadedImage) else image_sha256(_pixels(image))
    if got != expected:
        raise ValueError(
            f"this Generation was made on another image (hash {expected[:8]}… vs {got[:8]}… of the image given "
            "here): call adapter.generate on this image, or pass prompt=... with target=Answer(text) instead of "
            "the Generation to explain a given answer on it"
        )


def _pixels(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    return load_image(arr).array


def _upright(img: Image.Image) -> tuple[Image.Image, str | None]:
    """``img`` turned as its EXIF orientation tag says (as viewers and transformers' own image
    loading show it), and a note; ``(img, None)`` when there is no tag or it says "as stored"."""
    try:
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):  # a corrupt EXIF block: show as stored
        return img, None
    if orientation not in _ORIENTATIONS:
        return img, None
    turned = ImageOps.exif_transpose(img)
    note = (
        f"applied EXIF orientation {orientation} ({_ORIENTATIONS[orientation]}): stored as "
        f"{img.width}x{img.height}, explained as displayed, {turned.width}x{turned.height}"
    )
    return turned, note


def _to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    notes: list[str] = []
    mode = img.mode
    if mode == "RGB":
        return img, notes
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grey: rescale the actual value range to 0..255 rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        notes.append(f"converted {mode} image to 8-bit RGB (value range {lo:g}..{hi:g} rescaled)")
        grey = np.round(scaled).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1), mode="RGB"), notes
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite on white: transparent areas of icons/screenshots are meant as background.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"composited {mode} image on a white background")
        return Image.alpha_composite(background, rgba).convert("RGB"), notes
    notes.append(f"converted {mode} image to RGB")
    return img.convert("RGB"), notes


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4); got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"expected an image array of bool, integer or float values; got dtype {arr.dtype}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    return Image.fromarray(np.ascontiguousarray(arr), mode=mode)


def _open(source: Any, what: str) -> tuple[Image.Image, str | None]:
    """Decode ``source`` (a path or a file object) fully, turned upright by its EXIF orientation
    (read while the file is open: TIFF keeps the tag in the file, not in the decoded image)."""
    try:
        with Image.open(source) as opened:
            opened.load()
            upright, note = _upright(opened)
            return (opened.copy() if upright is opened else upright), note
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"expected an image file (PNG, JPEG, ...), but {what} could not be read as one: {exc}"
        ) from None


def load_image(image: ImageLike | LoadedImage, *, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Load and validate an image from a path, encoded file bytes, a PIL image or an array.

    Images are taken as displayed: an EXIF orientation tag (phone photos) is applied to paths,
    bytes and PIL images, with a note. Grey, palette, RGBA and 16-bit images are converted to
    RGB (with a note); images with more than ``max_pixels`` pixels are downscaled (with one
    logged warning); images with a side shorter than :data:`MIN_SIDE` are refused. A
    :class:`LoadedImage` that fits ``max_pixels`` is returned as it is (notes kept, nothing
    logged again).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a readable image, or the image is too small.
        TypeError: the input is of an unsupported type.
    """
    if isinstance(image, LoadedImage):
        if image.array.shape[0] * image.array.shape[1] <= max_pixels:
            return image
        image = image.array
    source = ""
    exif_note: str | None = None
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {str(path)!r}")
        if path.is_dir():
            raise ValueError(f"expected an image file, got a directory: {str(path)!r}")
        source = f"{str(path)!r}: "
        pil, exif_note = _open(path, repr(str(path)))
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        pil, exif_note = _open(io.BytesIO(data), f"the {len(data)} bytes given")
    elif isinstance(image, Image.Image):
        pil, exif_note = _upright(image)
    elif isinstance(image, np.ndarray):
        pil = _array_to_pil(image)
    else:
        raise TypeError(
            "expected an image path, encoded image bytes, a PIL.Image.Image or a numpy array; "
            f"got {type(image).__name__}"
        )

    original_mode = pil.mode
    original_size = (int(pil.width), int(pil.height))
    if min(original_size) < MIN_SIDE:
        raise ValueError(
            f"image is {original_size[0]}x{original_size[1]} pixels; at least {MIN_SIDE}x{MIN_SIDE} "
            "is needed to split it into regions"
        )
    rgb, notes = _to_rgb(pil)
    if exif_note is not None:
        notes.insert(0, exif_note)
    n_pixels = rgb.width * rgb.height
    if n_pixels > max_pixels:
        scale = (max_pixels / n_pixels) ** 0.5
        new_size = (max(MIN_SIDE, int(rgb.width * scale)), max(MIN_SIDE, int(rgb.height * scale)))
        msg = (
            f"image is {rgb.width}x{rgb.height} ({n_pixels} pixels, more than the {max_pixels} allowed); "
            f"downscaled to {new_size[0]}x{new_size[1]}"
        )
        # Logged once per load (the path says which image); callers that load once log once.
        logger.warning("%s%s", source, msg)
        notes.append(msg)
        rgb = rgb.resize(new_size, Image.Resampling.BICUBIC)
    arr = np.asarray(rgb, dtype=np.uint8)
    if not arr.flags.writeable:
        arr = arr.copy()
    arr.setflags(write=False)
    return LoadedImage(array=arr, original_size=original_size, original_mode=original_mode, notes=tuple(notes))
