"""Sparsification: split an image into regions, as ONE ``int32[H, W]`` label map.

Three segmenters are available: ``"slic"`` (superpixels, the EAGLE default),
``"grid"`` (a regular grid) and ``"felzenszwalb"``. Labels are always the
consecutive integers ``0..n-1``; the requested and the actual count are both kept,
because superpixel methods rarely return exactly the count asked for.

User segments: :func:`check_label_map` validates a label map made elsewhere (one function for
the :class:`~mllm_attr.Explainer`, the CLI and callable segmenters) and
:func:`masks_to_labels` turns a list of boolean masks (e.g. from SAM) into one.

>>> labels = masks_to_labels([mask_dog, mask_sofa])   # doctest: +SKIP
>>> Explainer(adapter, labels=labels)(image, gen, target="dog")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SEGMENTERS: tuple[str, ...] = ("slic", "grid", "felzenszwalb")

#: A user segmenter: ``fn(uint8[H, W, 3] RGB) -> int[H, W]`` label map.
SegmenterFn = Callable[[np.ndarray], Any]
#: What ``Explainer(segmenter=...)`` takes: a name from :data:`SEGMENTERS` or a :data:`SegmenterFn`.
SegmenterLike = str | SegmenterFn


@dataclass(frozen=True)
class Segmentation:
    """A label map and how it was made.

    Attributes:
        labels: ``int32[H, W]`` region index per pixel, values ``0..n_regions-1``.
        method: segmenter name.
        requested: the number of regions asked for.
        params: the segmenter's settings.
    """

    labels: np.ndarray
    method: str
    requested: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_regions(self) -> int:
        """The actual number of regions."""
        return int(self.labels.max()) + 1

    def areas(self) -> np.ndarray:
        """``float64[n_regions]``: the fraction of the image each region covers."""
        counts = np.bincount(self.labels.ravel(), minlength=self.n_regions)
        return counts / self.labels.size


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Map arbitrary labels to consecutive ``0..n-1`` (ordered by first appearance in raster order)."""
    flat = labels.ravel()
    _, first_idx, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_idx))
    return order[inverse].reshape(labels.shape).astype(np.int32)


def grid_labels(height: int, width: int, n_regions: int) -> np.ndarray:
    """A regular grid of about ``n_regions`` cells whose aspect follows the image's."""
    rows = max(1, round(math.sqrt(n_regions * height / width)))
    rows = min(rows, height)
    cols = max(1, min(width, round(n_regions / rows)))
    row_idx = np.minimum((np.arange(height) * rows) // height, rows - 1)
    col_idx = np.minimum((np.arange(width) * cols) // width, cols - 1)
    return (row_idx[:, None] * cols + col_idx[None, :]).astype(np.int32)


def _slic(image: np.ndarray, n_regions: int, compactness: float = 20.0, sigma: float = 0.0) -> np.ndarray:
    from skimage.segmentation import slic

    return slic(image, n_segments=n_regions, compactness=compactness, sigma=sigma, start_label=0)


def _felzenszwalb(image: np.ndarray, n_regions: int, sigma: float = 0.8, min_size: int | None = None) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    h, w = image.shape[:2]
    # scale grows with the wanted region size so the count lands near the request.
    scale = max(1.0, h * w / max(n_regions, 1) / 8.0)
    if min_size is None:
        min_size = max(1, int(h * w / max(n_regions, 1) / 4))
    return felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)


_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "slic": _slic,
    "felzenszwalb": _felzenszwalb,
}


#: option -> (smallest allowed value, whether that value itself is excluded, integer only).
_OPTION_RULES: dict[str, tuple[float, bool, bool]] = {
    "compactness": (0.0, True, False),
    "sigma": (0.0, False, False),
    "min_size": (1, False, True),
}


def _check_option(method: str, name: str, value: Any) -> None:
    """Refuse option values the segmenters would fail on deep inside (0, inf, nan, wrong types)."""
    low, strict, integer = _OPTION_RULES[name]
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(
            f"option {name} of segmenter {method!r} must be {'an integer' if integer else 'a number'}; got {value!r}"
        )
    if not np.isfinite(value) or value < low or (strict and value == low):
        raise ValueError(
            f"option {name} of segmenter {method!r} must be finite and {'>' if strict else '>='} {low:g}; got {value!r}"
        )


def segment(image: np.ndarray, n_regions: int = 64, method: str = "slic", **params: Any) -> Segmentation:
    """Split an RGB image into about ``n_regions`` regions.

    Args:
        image: ``uint8[H, W, 3]`` RGB.
        n_regions: requested count, at least 2 and at most the number of pixels.
        method: one of :data:`SEGMENTERS`.
        **params: segmenter options (``compactness``/``sigma`` for SLIC, ``sigma``/``min_size``
            for felzenszwalb).

    Raises:
        ValueError: unknown method or unknown option, or a region count the image cannot hold.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an RGB image as a numpy array of shape (H, W, 3); got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3); got shape {image.shape}")
    h, w = image.shape[:2]
    if isinstance(n_regions, bool) or not isinstance(n_regions, (int, np.integer)):
        raise TypeError(f"n_regions must be an integer; got {n_regions!r}")
    if n_regions < 2:
        raise ValueError(f"n_regions must be at least 2; got {n_regions}")
    if n_regions > h * w:
        raise ValueError(f"n_regions={n_regions} is more than the {h}x{w}={h * w} pixels of the image")
    if method == "grid":
        if params:
            raise ValueError(f"the grid segmenter takes no options; got {sorted(params)}")
        labels = grid_labels(h, w, int(n_regions))
    elif method in _METHODS:
        import inspect

        allowed = set(inspect.signature(_METHODS[method]).parameters) - {"image", "n_regions"}
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(
                f"unknown option(s) {sorted(unknown)} for segmenter {method!r}; allowed: {sorted(allowed)}"
            )
        for key, value in params.items():
            _check_option(method, key, value)
        labels = _METHODS[method](image, int(n_regions), **params)
        if method == "slic" and "compactness" not in params:
            # Textured images can collapse into a few superpixels; a more compact (grid-like)
            # setting recovers the requested granularity. The settings used are recorded.
            compactness = 20.0
            while _relabel(np.asarray(labels)).max() + 1 < n_regions / 2 and compactness < 2000:
                compactness *= 5
                labels = _slic(image, int(n_regions), compactness=compactness, **params)
            params = {**params, "compactness": compactness}
    else:
        raise ValueError(f"unknown segmenter {method!r}; expected one of {list(SEGMENTERS)}")
    labels = _relabel(np.asarray(labels))
    if labels.max() < 1:
        # A uniform image gives one superpixel; fall back to a grid so there is something to rank.
        labels = grid_labels(h, w, int(n_regions))
        params = {**params, "fallback": "grid (segmenter returned a single region)"}
    return Segmentation(labels=labels, method=method, requested=int(n_regions), params=dict(params))


# --------------------------------------------------------------------------- user segments


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def check_label_map(
    labels: Any,
    shape: tuple[int, int] | None = None,
    *,
    method: str = "user-labels",
    what: str = "labels",
    hint: str = "",
) -> Segmentation:
    """Validate a label map made outside this package and wrap it in a :class:`Segmentation`.

    The one check used for ``Explainer(labels=...)``, callable segmenters and the CLI's
    ``--labels`` / ``--masks``.

    Rules:
        * an integer ``[H, W]`` array (bool and float maps are refused: build a map from boolean
          masks with :func:`masks_to_labels`, convert whole-number floats with ``.astype(np.int32)``);
        * ``shape`` (the explained image's ``(H, W)``) must match exactly;
        * labels that are not already the consecutive integers ``0..n-1`` are RELABELLED to them
          in ascending order of the original values (e.g. ``{3, 7, 9} -> {0, 1, 2}``; negative
          values are allowed); the mapping is recorded in ``params["relabelled"]`` and a note in
          ``params["notes"]``. A map that is already ``0..n-1`` is returned unchanged (as int32);
        * at least 2 regions, and no more regions than pixels.

    Args:
        labels: the label map.
        shape: expected ``(H, W)``; ``None`` skips the shape check.
        method: stored as :attr:`Segmentation.method` (``"user-labels"``, ``"user-callable"``).
        what: how the map is named in error messages (``"labels"``, ``"--labels file.npy"``, ...).
        hint: appended to the shape-mismatch message (e.g. that the image was downscaled on load).

    Returns:
        a :class:`Segmentation` with ``int32[H, W]`` labels ``0..n-1`` and ``requested = n``.

    Raises:
        TypeError: not an array, or not an integer dtype.
        ValueError: not 2-D, wrong shape, fewer than 2 regions, more regions than pixels.
    """
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{what}: expected an integer numpy array of shape (H, W); got {type(labels).__name__}")
    if labels.dtype.kind == "b":
        raise TypeError(
            f"{what}: expected an integer label map; got a boolean array (for boolean masks use "
            "mllm_attr.masks_to_labels([mask, ...]) or the CLI's --masks)"
        )
    if labels.dtype.kind not in "iu":
        extra = " (convert with .astype(np.int32) if the values are whole numbers)" if labels.dtype.kind == "f" else ""
        raise TypeError(f"{what}: expected an integer label map; got dtype {labels.dtype}{extra}")
    if labels.ndim != 2:
        want = f"{_shape_text(shape)} (H, W)" if shape is not None else "(H, W)"
        raise ValueError(f"{what}: expected a 2-D label map of shape {want}; got shape {_shape_text(labels.shape)}")
    if shape is not None and tuple(labels.shape) != tuple(shape):
        msg = (
            f"{what}: expected shape {_shape_text(tuple(shape))} (H, W), the size of the "
            f"{shape[1]}x{shape[0]} explained image; got shape {_shape_text(labels.shape)}"
        )
        raise ValueError(msg + (f"; {hint}" if hint else ""))
    h, w = labels.shape
    if labels.size == 0:
        raise ValueError(f"{what}: the label map is empty (shape {_shape_text(labels.shape)})")
    values, inverse = np.unique(labels, return_inverse=True)
    n = int(values.size)
    if n < 2:
        raise ValueError(f"{what}: a single region (every pixel is {int(values[0])}); at least 2 are needed")
    if n > h * w:  # cannot happen after np.unique; kept as the documented contract
        raise ValueError(f"{what}: {n} regions, more than the {h}x{w}={h * w} pixels")
    params: dict[str, Any] = {"source": what}
    if int(values[0]) == 0 and int(values[-1]) == n - 1:
        out = labels.astype(np.int32, copy=True)
    else:
        out = inverse.reshape(labels.shape).astype(np.int32)
        lo, hi = int(values[0]), int(values[-1])
        note = f"{what}: {n} distinct labels in {lo}..{hi} relabelled to 0..{n - 1} in ascending order"
        logger.info(note)
        params["notes"] = [note]
        if n <= 256:
            params["relabelled"] = {str(int(v)): i for i, v in enumerate(values)}
    return Segmentation(labels=out, method=method, requested=n, params=params)


def _as_mask(mask: Any, index: int) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"mask {index}: expected a boolean (or 0/1) array; got dtype {arr.dtype}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))].ravel()[0].item()
        raise ValueError(f"mask {index}: expected boolean or 0/1 values; found {bad!r}")
    return arr.astype(bool)


def masks_to_labels(masks: Sequence[np.ndarray] | np.ndarray, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Turn boolean masks into ONE ``int32[H, W]`` label map.

    Mask ``i`` becomes region ``i``. Overlaps are resolved in order: **the earlier mask wins**
    (a pixel in masks 2 and 5 belongs to region 2). Pixels covered by no mask form one extra
    region, the LAST label (``len(masks)``); without such pixels the labels are ``0..N-1``.
    Labels are always contiguous from 0.

    Args:
        masks: a sequence of ``bool[H, W]`` arrays (0/1 integer or float arrays are accepted),
            or one ``bool[N, H, W]`` array.
        shape: the expected ``(H, W)`` (e.g. the image's); default: the first mask's shape.

    Returns:
        ``int32[H, W]`` label map with ``N`` or ``N + 1`` regions.

    Raises:
        ValueError: no masks; a mask that is not 2-D or whose shape differs from ``shape``
            (the message names the mask, the expected and the actual shape); more masks than
            pixels; a mask that is empty, or becomes empty because earlier masks cover all of
            it (the message names its index); masks that give a single region.
        TypeError: a mask that is not boolean / 0-1 numeric.

    Example:
        >>> masks_to_labels([np.eye(2, dtype=bool)]).tolist()
        [[0, 1], [1, 0]]
    """
    if isinstance(masks, np.ndarray):
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3:
            raise ValueError(
                f"expected masks as a list of (H, W) arrays or one (N, H, W) array; got shape {masks.shape}"
            )
        items: list[Any] = list(masks)
    elif isinstance(masks, (list, tuple)):
        items = list(masks)
    else:
        raise TypeError(
            f"expected masks as a list of boolean (H, W) arrays or one (N, H, W) array; got {type(masks).__name__}"
        )
    if not items:
        raise ValueError("expected at least one mask; got none")
    arrays = [_as_mask(m, i) for i, m in enumerate(items)]
    if shape is None:
        shape = tuple(arrays[0].shape)  # type: ignore[assignment]
    shape = tuple(int(d) for d in shape)  # type: ignore[assignment]
    for i, m in enumerate(arrays):
        if m.ndim != 2 or tuple(m.shape) != shape:
            raise ValueError(f"mask {i} has shape {_shape_text(m.shape)}; expected {_shape_text(shape)} (H, W)")
    h, w = shape
    if len(arrays) > h * w:
        raise ValueError(f"{len(arrays)} masks give more regions than the {h}x{w}={h * w} pixels of the image")
    labels = np.full(shape, -1, dtype=np.int32)
    for i, m in enumerate(arrays):
        if not m.any():
            raise ValueError(f"mask {i} is empty (no pixel set); every mask must cover at least one pixel")
        free = m & (labels < 0)
        if not free.any():
            owners = sorted({int(v) for v in np.unique(labels[m])})
            raise ValueError(
                f"mask {i} is entirely covered by earlier mask(s) {owners} (overlaps go to the earlier mask), "
                "so its region would be empty; drop it or reorder the masks"
            )
        labels[free] = i
    rest = labels < 0
    if rest.any():
        labels[rest] = len(arrays)
    if int(labels.max()) < 1:
        raise ValueError("the masks give a single region (mask 0 covers the whole image); at least 2 are needed")
    return labels
