"""LLaVA-CAM (method.md §8): Grad-CAM on one decoder layer, restricted to the vision tokens.

For target tokens ``K`` of an answer, the score is ``Σ_k logit_k`` (teacher-forced exactly like the
scorer: prompt + generated tokens up to the last target). With ``A = [V, d]`` the output of
``layers[layer].post_attention_layernorm`` at the ``V`` vision-token positions and
``G = ∂score/∂A``, the Grad-CAM of a token is ``relu(A · mean_v G)`` (channel weights = gradients
averaged over the vision tokens). SmoothGrad: the CAM is averaged over ``n_samples`` copies of
``pixel_values`` with Gaussian noise of standard deviation ``noise_level × (max − min)`` of the
pixel values (noise from ``torch.Generator().manual_seed(seed)``, so the map is deterministic
for a seed). The per-token CAM is laid on the vision grid and mapped back onto the image
(:mod:`mllm_attr.baselines._vision`), then min-max normalised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..maps import normalize_map
from ..types import Generation
from ._model import as_image, check_positions, decoder_parts, require_hf, target_logits, teacher_forced
from ._vision import grid_to_image
from .base import check_seed

logger = logging.getLogger(__name__)


def resolve_layer(n_layers: int, layer: int | None) -> int:
    """Layer index: ``None`` -> the middle layer ``(n_layers - 1) // 2``; negative counts from the end.

    The last layer is allowed but useless: its pre-MLP activation at a vision position only
    reaches that position's own output, never the later positions whose logits are explained,
    so its gradient there is exactly zero (hence the default never picks it when n_layers >= 2).
    """
    if layer is None:
        return (n_layers - 1) // 2
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"layer must be an integer or None; got {layer!r}")
    idx = int(layer) + (n_layers if layer < 0 else 0)
    if not 0 <= idx < n_layers:
        raise ValueError(f"layer {layer} out of range for a decoder with {n_layers} layers")
    if idx == n_layers - 1:
        logger.warning(
            "Grad-CAM on the last decoder layer: vision-token gradients are zero there; the map will be flat"
        )
    return idx


@dataclass(frozen=True)
class LlavaCAM:
    """Grad-CAM + SmoothGrad on a decoder layer's post-attention layernorm (see module docstring).

    Args:
        layer: decoder layer index (default: the middle layer ``(n_layers - 1) // 2``; negative
            counts from the end; the last layer gives a flat map, see :func:`resolve_layer`).
        n_samples: SmoothGrad copies (>= 1); each costs one forward + backward pass.
        noise_level: noise std as a fraction of the pixel-value range (0 = plain Grad-CAM).
        absolute: a NON-standard variant: ``|A · mean_v G|`` instead of ``relu(A · mean_v G)``. On
            a normalised (RMSNorm) activation the sign of the CAM is arbitrary; on a preliminary
            shapes-LLaVA (30 single-object scenes, no SmoothGrad) the relu map pointed at the object
            in 17% of scenes, the absolute one in 47%. Off by default (the paper's baseline is
            Grad-CAM).
    """

    layer: int | None = None
    n_samples: int = 4
    noise_level: float = 0.1
    absolute: bool = False
    name: ClassVar[str] = "llava_cam"

    def __post_init__(self) -> None:
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, (int, np.integer)) or self.n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1; got {self.n_samples!r}")
        if not (isinstance(self.noise_level, (int, float)) and np.isfinite(self.noise_level) and self.noise_level >= 0):
            raise ValueError(f"noise_level must be a finite number >= 0; got {self.noise_level!r}")

    @torch.inference_mode(False)  # gradients are needed even when the caller runs under inference mode
    def grid(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int], *, seed: int = 0
    ) -> tuple[np.ndarray, Any]:
        """The raw CAM on the vision grid, ``float32[gh, gw]`` (>= 0), and the layout."""
        adapter = require_hf(adapter, self.name)
        arr = as_image(image)
        positions = check_positions(generation, positions, arr)
        tf = teacher_forced(adapter, arr, generation, positions)
        base, layers, head = decoder_parts(adapter.model)
        module = layers[resolve_layer(len(layers), self.layer)].post_attention_layernorm
        vis = torch.as_tensor(tf.layout.positions, device=adapter.device)
        pv = tf.pixel["pixel_values"]
        span = float((pv.max() - pv.min()).float())
        gen = torch.Generator().manual_seed(check_seed(seed))
        cams = []
        for _ in range(self.n_samples):
            noise = torch.randn(pv.shape, generator=gen, dtype=torch.float32) * (self.noise_level * span)
            x = (pv.float().cpu() + noise).to(device=pv.device, dtype=pv.dtype)
            captured: list[torch.Tensor] = []
            handle = module.register_forward_hook(
                lambda _m, _i, out, captured=captured: captured.append(out[0] if isinstance(out, tuple) else out)
            )
            try:
                with torch.enable_grad():
                    x.requires_grad_(True)
                    hidden = base(**tf.text, **{**tf.pixel, "pixel_values": x}, use_cache=False).last_hidden_state
                    score = target_logits(head, hidden, tf).sum()
                    act = captured[0]
                    (grad,) = torch.autograd.grad(score, act)
            finally:
                handle.remove()
            a = act[0, vis].detach().float()
            g = grad[0, vis].float()
            cam = a @ g.mean(dim=0)
            cams.append((cam.abs() if self.absolute else torch.relu(cam)).cpu())
        cam = torch.stack(cams).mean(dim=0).reshape(tf.layout.grid).numpy().astype(np.float32)
        if not np.all(np.isfinite(cam)):
            raise FloatingPointError("Grad-CAM produced non-finite values (check the model dtype)")
        return cam, tf.layout

    def __call__(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int], *, seed: int = 0
    ) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]`` at the input image's size."""
        cam, layout = self.grid(adapter, image, generation, positions, seed=seed)
        return normalize_map(grid_to_image(cam, layout))
