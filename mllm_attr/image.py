"""Image input at the public boundary: one place converts anything to RGB uint8.

Everything downstream works on ``uint8[H, W, 3]`` RGB arrays (or RGB PIL images
made from them). Colour order is never flipped anywhere else in the package.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

ImageLike = str | os.PathLike | Image.Image | np.ndarray

#: Images with a shorter side than this cannot be split into meaningful regions.
MIN_SIDE = 8
#: Images with more pixels than this are downscaled (aspect kept) before explaining.
MAX_PIXELS = 2048 * 2048


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image plus what happened to it on the way in.

    Attributes:
        array: ``uint8[H, W, 3]`` RGB pixels actually explained.
        original_size: ``(width, height)`` of the input before any downscaling.
        original_mode: the PIL mode of the input (``"RGB"``, ``"RGBA"``, ``"I;16"``, ...).
        notes: human-readable notes on conversions (mode change, downscale).
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


def load_image(image: ImageLike, *, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Load and validate an image from a path, a PIL image or an array.

    Grey, palette, RGBA and 16-bit images are converted to RGB (with a note);
    images with more than ``max_pixels`` pixels are downscaled (with a logged
    warning); images with a side shorter than :data:`MIN_SIDE` are refused.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a readable image, or the image is too small.
        TypeError: the input is of an unsupported type.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {str(path)!r}")
        if path.is_dir():
            raise ValueError(f"expected an image file, got a directory: {str(path)!r}")
        try:
            with Image.open(path) as opened:
                opened.load()
                pil = opened.copy()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            raise ValueError(
                f"expected an image file (PNG, JPEG, ...), but {str(path)!r} could not be read as one: {exc}"
            ) from None
    elif isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        pil = _array_to_pil(image)
    else:
        raise TypeError(f"expected an image path, a PIL.Image.Image or a numpy array; got {type(image).__name__}")

    original_mode = pil.mode
    original_size = (int(pil.width), int(pil.height))
    if min(original_size) < MIN_SIDE:
        raise ValueError(
            f"image is {original_size[0]}x{original_size[1]} pixels; at least {MIN_SIDE}x{MIN_SIDE} "
            "is needed to split it into regions"
        )
    rgb, notes = _to_rgb(pil)
    n_pixels = rgb.width * rgb.height
    if n_pixels > max_pixels:
        scale = (max_pixels / n_pixels) ** 0.5
        new_size = (max(MIN_SIDE, int(rgb.width * scale)), max(MIN_SIDE, int(rgb.height * scale)))
        msg = (
            f"image is {rgb.width}x{rgb.height} ({n_pixels} pixels, more than the {max_pixels} allowed); "
            f"downscaled to {new_size[0]}x{new_size[1]}"
        )
        logger.warning(msg)
        notes.append(msg)
        rgb = rgb.resize(new_size, Image.Resampling.BICUBIC)
    arr = np.asarray(rgb, dtype=np.uint8)
    if not arr.flags.writeable:
        arr = arr.copy()
    arr.setflags(write=False)
    return LoadedImage(array=arr, original_size=original_size, original_mode=original_mode, notes=tuple(notes))
