"""Segmentation decoding and point tests for benchmark annotations.

COCO stores an object's segmentation in one of three forms:

* **polygons** – a list of flat ``[x1, y1, x2, y2, ...]`` float lists (``iscrowd=0``);
* **uncompressed RLE** – ``{"size": [H, W], "counts": [int, ...]}`` (usually ``iscrowd=1``);
* **compressed RLE** – ``{"size": [H, W], "counts": "<LEB128-like str>"}`` (what
  ``pycocotools.mask.encode`` writes, e.g. in LVIS or result files).

All three are decoded here with :mod:`pycocotools.mask` into a ``bool[H, W]`` array,
row ``y`` / column ``x``, ``True`` inside the object.

Point tests use pixel coordinates: pixel ``(col, row)`` covers ``[col, col + 1) x
[row, row + 1)``, the same convention as COCO boxes ``[x, y, w, h]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

logger = logging.getLogger(__name__)

__all__ = [
    "segmentation_kind",
    "segmentation_to_rle",
    "decode_segmentation",
    "segmentation_area",
    "point_in_box",
    "point_in_mask",
]


def segmentation_kind(segmentation: Any) -> str:
    """Name the form of a COCO segmentation.

    Returns:
        ``"polygon"``, ``"uncompressed_rle"`` or ``"compressed_rle"``.

    Raises:
        ValueError: if ``segmentation`` is none of the three COCO forms.
    """
    if isinstance(segmentation, list):
        return "polygon"
    if isinstance(segmentation, Mapping) and "counts" in segmentation and "size" in segmentation:
        counts = segmentation["counts"]
        if isinstance(counts, list):
            return "uncompressed_rle"
        if isinstance(counts, (str, bytes)):
            return "compressed_rle"
        raise ValueError(
            "RLE segmentation 'counts' must be a list of ints (uncompressed) or a str/bytes "
            f"(compressed); got {type(counts).__name__}"
        )
    raise ValueError(
        "expected a COCO segmentation: a list of polygons or a dict with keys 'size' and "
        f"'counts'; got {type(segmentation).__name__}"
        + (f" with keys {sorted(segmentation)}" if isinstance(segmentation, Mapping) else "")
    )


def _check_rle_size(segmentation: Mapping[str, Any], height: int, width: int) -> None:
    size = segmentation["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        raise ValueError(f"RLE 'size' must be [height, width]; got {size!r}")
    if (int(size[0]), int(size[1])) != (height, width):
        raise ValueError(f"RLE 'size' {list(size)} does not match the image size [height, width] = [{height}, {width}]")


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Convert any COCO segmentation to a single compressed RLE (``counts`` as bytes).

    Polygons are rasterised with ``frPyObjects`` and merged (union) into one RLE;
    uncompressed RLE goes through ``frPyObjects``; compressed RLE is returned with its
    ``counts`` as bytes.

    Args:
        segmentation: a COCO segmentation in any of the three forms.
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.

    Raises:
        ValueError: on a malformed segmentation (odd-length or too-short polygon, RLE size
            differing from ``(height, width)``, run lengths not summing to ``H * W``).
    """
    height, width = int(height), int(width)
    kind = segmentation_kind(segmentation)
    if kind == "polygon":
        polygons: list[list[float]] = []
        for i, poly in enumerate(segmentation):
            if not isinstance(poly, (list, tuple)):
                raise ValueError(f"polygon {i} must be a flat list [x1, y1, x2, y2, ...]; got {type(poly).__name__}")
            # pycocotools treats a 4-number list as a box, so a polygon needs >= 3 points.
            if len(poly) < 6 or len(poly) % 2:
                raise ValueError(f"polygon {i} must have an even number (>= 6) of coordinates; got {len(poly)}")
            polygons.append([float(v) for v in poly])
        if not polygons:
            empty = np.zeros((height, width), dtype=np.uint8, order="F")
            return mask_utils.encode(empty)
        rles = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.merge(rles)
    _check_rle_size(segmentation, height, width)
    if kind == "uncompressed_rle":
        counts = [int(c) for c in segmentation["counts"]]
        if any(c < 0 for c in counts):
            raise ValueError("uncompressed RLE 'counts' must be non-negative")
        if sum(counts) != height * width:
            raise ValueError(f"uncompressed RLE run lengths sum to {sum(counts)}; expected H * W = {height * width}")
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    counts = segmentation["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [height, width], "counts": counts}


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation to a boolean mask.

    Args:
        segmentation: polygons, uncompressed RLE or compressed RLE (see module docs).
        height: image height ``H``.
        width: image width ``W``.

    Returns:
        ``bool[H, W]``, ``True`` on the object's pixels (several polygons are merged).

    Raises:
        ValueError: on a malformed segmentation (see :func:`segmentation_to_rle`).
    """
    rle = segmentation_to_rle(segmentation, height, width)
    try:
        decoded = mask_utils.decode(rle)
    except Exception as exc:  # pycocotools raises bare Exceptions on bad counts
        raise ValueError(f"could not decode RLE segmentation: {exc}") from exc
    return np.ascontiguousarray(decoded, dtype=bool)


def segmentation_area(segmentation: Any, height: int, width: int) -> int:
    """Number of pixels covered by the decoded segmentation (an ``int``)."""
    return int(mask_utils.area(segmentation_to_rle(segmentation, height, width)))


def point_in_box(x: float, y: float, bbox: Sequence[float]) -> bool:
    """Whether point ``(x, y)`` lies in the COCO box ``[x, y, w, h]`` (edges included).

    Raises:
        ValueError: if ``bbox`` does not have 4 numbers or has a negative width/height,
            or the point is not finite.
    """
    if len(bbox) != 4:
        raise ValueError(f"expected a box [x, y, w, h] of 4 numbers; got {len(bbox)} values")
    bx, by, bw, bh = (float(v) for v in bbox)
    if bw < 0 or bh < 0:
        raise ValueError(f"box width and height must be >= 0; got w={bw}, h={bh}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"point must be finite; got ({x}, {y})")
    return bx <= x <= bx + bw and by <= y <= by + bh


def point_in_mask(x: float, y: float, mask: np.ndarray) -> bool:
    """Whether point ``(x, y)`` falls on a ``True`` pixel of ``mask`` (``bool[H, W]``).

    The point hits pixel ``(col, row) = (floor(x), floor(y))``; points outside the image
    return ``False``.

    Raises:
        ValueError: if ``mask`` is not 2-D or the point is not finite.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask bool[H, W]; got shape {tuple(mask.shape)}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"point must be finite; got ({x}, {y})")
    col, row = math.floor(x), math.floor(y)
    height, width = mask.shape
    if not (0 <= row < height and 0 <= col < width):
        return False
    return bool(mask[row, col])
