"""Family-specific geometry of the vision tokens: where they sit in the sequence, how they tile
the model's input image, and how that input image relates to the original image.

White-box baselines (Grad-CAM, TAM, IGOS++) produce one value per vision token (or per cell of a
mask over the model's input pixels). This module maps such a grid back onto the original image.

Supported families (``adapter.family``), see :data:`SUPPORTED_FAMILIES`:

``llava`` (LLaVA-1.5, ``LlavaForConditionalGeneration``)
    One view per image, ``pixel_values: float[1, 3, H', W']``. The vision tower cuts it into
    ``(H'/patch) x (W'/patch)`` patches in raster order. With
    ``vision_feature_select_strategy="default"`` the CLS token is dropped and there are exactly
    ``(H'/patch) * (W'/patch)`` image tokens; with ``"full"`` the CLS token is kept as the FIRST
    image token (one more): it has no place on the grid and is skipped here. The CLIP processor
    geometry is inverted exactly: optional pad-to-square (``do_pad``, LLaVA image processor),
    resize (shortest edge to ``size["shortest_edge"]``, the long edge ``int(S * long / short)``,
    or to a fixed ``height x width``), optional centre crop (``crop_size``; the crop top/left are
    ``int((resized - crop) / 2)``). Parts of the original image that the crop cut away were never
    seen by the model: they get the value 0. Padding added by the processor is simply off-image.

``qwen2_vl`` / ``qwen2_5_vl`` (Qwen2-VL, Qwen2.5-VL)
    ``image_grid_thw = (t, h, w)`` patches of ``patch_size``; the patch merger joins each 2x2
    (``merge_size``) block into one LLM token, so there are ``t * (h/2) * (w/2)`` image tokens in
    raster order over the ``(h/2, w/2)`` merged grid (one image: ``t = 1``). The processor resizes
    the WHOLE image to ``(h * patch, w * patch)`` (``smart_resize``: multiples of 28, aspect kept
    up to rounding) without cropping, so the grid covers the whole original image. The flat
    ``pixel_values: float[h * w, C * T * patch * patch]`` are laid out as
    ``(h/2, w/2, 2, 2) x (C, T, patch, patch)``; :func:`mask_to_pixels` builds a mask in that
    layout so that images can be composed directly in ``pixel_values`` space.

Any other family raises :class:`NotImplementedError` naming the supported ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

SUPPORTED_FAMILIES: tuple[str, ...] = ("llava", "qwen2_vl", "qwen2_5_vl")
_QWEN = ("qwen2_vl", "qwen2_5_vl")


@dataclass(frozen=True)
class VisionLayout:
    """Where the vision tokens are and what part of the original image they see.

    Attributes:
        family: the adapter family the layout was computed for.
        positions: ``int64[gh * gw]`` absolute sequence positions of the grid's tokens, in raster
            order of the grid (tokens without a place on the grid, like a CLS token, excluded).
        grid: ``(gh, gw)`` vision-token grid.
        input_hw: ``(H', W')`` pixel size of the model's input image (the processed view).
        affine: ``(sy, oy, sx, ox)``: an original-image pixel coordinate ``(y, x)`` (continuous,
            pixel centres at ``+0.5``) lands at ``(y * sy + oy, x * sx + ox)`` in the input image.
        image_hw: ``(H, W)`` of the original image.
    """

    family: str
    positions: np.ndarray
    grid: tuple[int, int]
    input_hw: tuple[int, int]
    affine: tuple[float, float, float, float]
    image_hw: tuple[int, int]

    @property
    def n_tokens(self) -> int:
        """Number of vision tokens on the grid (``gh * gw``)."""
        return int(self.grid[0] * self.grid[1])


def check_family(family: str) -> None:
    """Raise :class:`NotImplementedError` unless the vision-token geometry of ``family`` is known."""
    if family not in SUPPORTED_FAMILIES:
        raise NotImplementedError(
            f"white-box baselines need the vision-token grid of the model family; family {family!r} is not "
            f"supported (supported: {', '.join(SUPPORTED_FAMILIES)}). Add it in mllm_attr/baselines/_vision.py."
        )


def image_token_id(config: Any) -> int:
    """The placeholder id of image tokens (``config.image_token_id`` or ``image_token_index``)."""
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    raise ValueError(f"model config {type(config).__name__} has neither image_token_id nor image_token_index")


def _size_get(size: Any, key: str) -> Any:
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _llava_affine(
    image_processor: Any, image_hw: tuple[int, int], input_hw: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Invert pad-to-square -> resize -> centre crop of a CLIP/LLaVA image processor."""
    h, w = float(image_hw[0]), float(image_hw[1])
    sy, oy, sx, ox = 1.0, 0.0, 1.0, 0.0
    cur_h, cur_w = h, w
    if getattr(image_processor, "do_pad", False):
        side = max(cur_h, cur_w)
        if cur_w > cur_h:
            oy += (side - cur_h) // 2
        else:
            ox += (side - cur_w) // 2
        cur_h = cur_w = side
    if getattr(image_processor, "do_resize", True):
        size = getattr(image_processor, "size", None)
        short_edge = _size_get(size, "shortest_edge")
        height, width = _size_get(size, "height"), _size_get(size, "width")
        if short_edge:
            short, long = (cur_w, cur_h) if cur_w <= cur_h else (cur_h, cur_w)
            new_short, new_long = int(short_edge), int(int(short_edge) * long / short)
            new_h, new_w = (new_long, new_short) if cur_w <= cur_h else (new_short, new_long)
        elif height and width:
            new_h, new_w = int(height), int(width)
        else:
            new_h, new_w = int(cur_h), int(cur_w)
        ry, rx = new_h / cur_h, new_w / cur_w
        sy, oy, sx, ox = sy * ry, oy * ry, sx * rx, ox * rx
        cur_h, cur_w = float(new_h), float(new_w)
    if getattr(image_processor, "do_center_crop", False):
        crop = getattr(image_processor, "crop_size", None)
        ch, cw = _size_get(crop, "height"), _size_get(crop, "width")
        if ch and cw:
            top, left = int((cur_h - ch) / 2.0), int((cur_w - cw) / 2.0)
            oy, ox = oy - top, ox - left
            cur_h, cur_w = float(ch), float(cw)
    if (int(round(cur_h)), int(round(cur_w))) != tuple(input_hw):
        # An image processor this inversion does not know: stretch the whole image onto the view.
        logger.warning(
            "could not invert the image processor %s (predicted %dx%d, got %dx%d); mapping the vision grid "
            "onto the whole image (approximate)",
            type(image_processor).__name__,
            cur_h,
            cur_w,
            input_hw[0],
            input_hw[1],
        )
        return input_hw[0] / h, 0.0, input_hw[1] / w, 0.0
    return sy, oy, sx, ox


def vision_layout(
    adapter: Any, image_hw: tuple[int, int], input_ids: torch.Tensor, pixel_inputs: dict[str, torch.Tensor]
) -> VisionLayout:
    """The :class:`VisionLayout` of one image in one sequence.

    Args:
        adapter: an :class:`~mllm_attr.adapters.hf.HFAdapter` of a supported family.
        image_hw: ``(H, W)`` of the original image.
        input_ids: ``int64[1, L]`` the sequence (prompt + teacher-forced answer).
        pixel_inputs: the image-side processor tensors of that image (``pixel_values``, ...).
    """
    family = adapter.family
    check_family(family)
    model = adapter.model
    ids = input_ids[0].detach().cpu().numpy()
    positions = np.nonzero(ids == image_token_id(model.config))[0].astype(np.int64)
    pv = pixel_inputs["pixel_values"]
    if family == "llava":
        if pv.dim() != 4 or pv.shape[0] != 1:
            raise ValueError(f"expected LLaVA pixel_values of shape [1, 3, H, W]; got {tuple(pv.shape)}")
        patch = int(model.config.vision_config.patch_size)
        input_hw = (int(pv.shape[-2]), int(pv.shape[-1]))
        grid = (input_hw[0] // patch, input_hw[1] // patch)
        n = grid[0] * grid[1]
        if len(positions) == n + 1:  # "full" feature strategy: the CLS token comes first
            positions = positions[1:]
        elif len(positions) != n:
            raise ValueError(
                f"LLaVA sequence has {len(positions)} image tokens; expected {n} ({grid[0]}x{grid[1]} patches) "
                f"or {n + 1} (with CLS)"
            )
        affine = _llava_affine(adapter.processor.image_processor, image_hw, input_hw)
    else:  # Qwen2-VL / Qwen2.5-VL
        thw = pixel_inputs.get("image_grid_thw")
        if thw is None or thw.shape[0] != 1:
            raise ValueError(f"expected image_grid_thw for one image; got {None if thw is None else tuple(thw.shape)}")
        t, gh, gw = (int(v) for v in thw[0].tolist())
        ip = adapter.processor.image_processor
        merge = int(getattr(ip, "merge_size", 2))
        patch = int(getattr(ip, "patch_size", 14))
        grid = (gh // merge, gw // merge)
        n = t * grid[0] * grid[1]
        if len(positions) != n:
            raise ValueError(
                f"Qwen-VL sequence has {len(positions)} image tokens; "
                f"expected {n} from image_grid_thw {thw[0].tolist()}"
            )
        if t != 1:
            raise ValueError(f"expected one temporal patch group for a still image; got t={t}")
        input_hw = (gh * patch, gw * patch)
        affine = (input_hw[0] / image_hw[0], 0.0, input_hw[1] / image_hw[1], 0.0)
    return VisionLayout(family, positions, grid, input_hw, affine, (int(image_hw[0]), int(image_hw[1])))


def grid_to_image(grid_map: np.ndarray | torch.Tensor, layout: VisionLayout) -> np.ndarray:
    """Bilinearly map a grid spanning the model's input view onto the original image.

    Args:
        grid_map: ``float[gh, gw]`` (any grid size; it spans the whole input view ``H' x W'``).
        layout: from :func:`vision_layout`.

    Returns:
        ``float32[H, W]``; pixels the model never saw (cropped away) are 0.
    """
    g = torch.as_tensor(
        np.asarray(grid_map, dtype=np.float32) if not isinstance(grid_map, torch.Tensor) else grid_map.float()
    )
    if g.dim() != 2:
        raise ValueError(f"expected a 2-D grid map; got shape {tuple(g.shape)}")
    h, w = layout.image_hw
    sy, oy, sx, ox = layout.affine
    in_h, in_w = layout.input_hw
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * sy + oy  # input-view pixel coordinates
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * sx + ox
    gy = (2.0 * ys / in_h - 1.0).float()
    gx = (2.0 * xs / in_w - 1.0).float()
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]  # [1, H, W, 2] as (x, y)
    out = F.grid_sample(g[None, None].cpu(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0]
    inside = (gy.abs() <= 1.0)[:, None] & (gx.abs() <= 1.0)[None, :]
    return torch.where(inside, out, torch.zeros_like(out)).numpy().astype(np.float32)


def upsample_mask(mask: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """``float[h, w]`` low-resolution mask -> ``float[H', W']`` (bilinear, differentiable)."""
    return F.interpolate(mask[None, None], size=tuple(input_hw), mode="bilinear", align_corners=False)[0, 0]


def mask_to_pixels(layout: VisionLayout, mask: torch.Tensor, pixel_values: torch.Tensor, adapter: Any) -> torch.Tensor:
    """A pixel mask ``float[H', W']`` in the layout of ``pixel_values`` (broadcastable to it).

    Composition in ``pixel_values`` space is exact for per-channel affine normalisation:
    ``norm(a * m + b * (1 - m)) = norm(a) * m + norm(b) * (1 - m)``.

    Returns:
        LLaVA: ``float[1, 1, H', W']``; Qwen-VL: ``float[h * w, C * T * patch * patch]``.
    """
    check_family(layout.family)
    if tuple(mask.shape) != tuple(layout.input_hw):
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the input view {layout.input_hw}")
    if layout.family == "llava":
        return mask[None, None]
    ip = adapter.processor.image_processor
    merge = int(getattr(ip, "merge_size", 2))
    patch = int(getattr(ip, "patch_size", 14))
    gh, gw = layout.input_hw[0] // patch, layout.input_hw[1] // patch
    n, dim = pixel_values.shape
    per_patch = patch * patch
    if n != gh * gw or dim % per_patch:
        raise ValueError(
            f"pixel_values shape {tuple(pixel_values.shape)} does not match a {gh}x{gw} grid of {patch}px patches"
        )
    m = mask.reshape(gh // merge, merge, patch, gw // merge, merge, patch)
    m = m.permute(0, 3, 1, 4, 2, 5).reshape(n, 1, per_patch)  # (gh/m, gw/m, m, m) x (patch, patch)
    return m.expand(n, dim // per_patch, per_patch).reshape(n, dim)
