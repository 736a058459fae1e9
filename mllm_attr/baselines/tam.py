"""TAM, the Token Activation Map (Li et al., ICCV 2025; method.md §8), computed for the GENERATED
target tokens.

For a target token ``y_p`` (class ``c = y_p``), with ``h_j`` the final hidden state (after the final
norm) at sequence position ``j`` and ``W`` the output head:

1. Logit-lens activation map: ``A[v] = relu(h_v · W_c)`` at every vision-token position ``v``.
2. Estimated causal inference (interference from context tokens): every earlier text token ``t_j``
   (positions ``j <= P + p - 1``: the prompt's text and the answer before ``y_p``; vision tokens,
   special tokens and tokens equal to ``c`` excluded) has its own map ``A_j[v] = relu(h_v · W_{t_j})``
   and a weight ``w_j = relu(h_j · W_c)`` (how strongly the target class is already active at that
   context token). The interference map is ``I = Σ_j w_j A_j / Σ_j w_j``; with the least-squares
   scale ``s = <A, I> / <I, I>`` (the minimiser of ``‖A − s·I‖²``) the map becomes
   ``relu(A − s·I)``.
3. Normalisation jointly with the target class's text-token scores ``w_j`` (min-max over both,
   as in the reference), then the rank Gaussian filter (:func:`rank_gaussian_filter`, 3x3).

Several target tokens: the per-token grids are averaged, mapped back onto the image, and min-max
normalised. Unlike the reference wrapper (which, called with target index 0, returned the map of
prompt token 0), the class and the context are always those of the generated target positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..maps import normalize_map
from ..types import Generation
from ._model import as_image, check_positions, decoder_parts, require_hf, teacher_forced
from ._vision import VisionLayout, grid_to_image


def rank_gaussian_filter(grid: np.ndarray, size: int = 3) -> np.ndarray:
    """TAM's rank Gaussian filter: a Gaussian-weighted average of each window's SORTED values.

    For each pixel the ``size x size`` window (reflect padding) is sorted; the weights are a
    Gaussian over the rank offset from the median rank with standard deviation equal to the
    window's coefficient of variation (std / mean): a flat window is averaged towards its median,
    a spiky one towards its mean. Windows with mean <= 0 give 0; a constant window keeps its value.

    Args:
        grid: ``float[h, w]``.
        size: odd window side.

    Returns:
        ``float32[h, w]``.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer; got {size}")
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grid; got shape {g.shape}")
    pad = size // 2
    mode = "reflect" if min(g.shape) > 1 else "edge"  # reflect needs at least 2 cells per axis
    padded = np.pad(g, pad, mode=mode)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size)).reshape(*g.shape, size * size)
    ranked = np.sort(windows, axis=-1)
    mean = ranked.mean(axis=-1)
    std = ranked.std(axis=-1)
    offsets = np.arange(size * size) - (size * size) // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), 0.0)
        kernel = np.exp(-(offsets[None, None, :] ** 2) / (2.0 * np.maximum(sigma, 1e-12)[..., None] ** 2))
    kernel /= kernel.sum(axis=-1, keepdims=True)
    value = (ranked * kernel).sum(axis=-1)
    value = np.where(sigma > 1e-12, value, mean)  # constant window: its value
    return np.where(mean > 0, value, 0.0).astype(np.float32)


def eci(target_map: np.ndarray, context_maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Estimated causal inference: remove context interference from a token's activation map.

    Args:
        target_map: ``float[V]`` activation map of the target class (>= 0).
        context_maps: ``float[J, V]`` maps of the context tokens' own classes (>= 0).
        weights: ``float[J]`` target-class activation at each context token (>= 0).

    Returns:
        ``float64[V]``: ``relu(A − s·I)``, ``I = Σ w_j A_j / Σ w_j``, ``s = <A, I> / <I, I>``
        (``A`` unchanged when there is no context or ``I = 0``).
    """
    a = np.asarray(target_map, dtype=np.float64)
    if len(weights) == 0:
        return a
    w = np.asarray(weights, dtype=np.float64)
    interference = (w / (w.sum() + 1e-8)) @ np.asarray(context_maps, dtype=np.float64)
    denom = float(interference @ interference)
    if denom <= 0:
        return a
    scale = float(a @ interference) / denom
    return np.maximum(a - scale * interference, 0.0)


@dataclass(frozen=True)
class TokenMaps:
    """Per-target TAM grids and what they were computed from (for inspection and tests).

    Attributes:
        grids: ``float32[K, gh, gw]`` filtered, normalised maps, one per target position.
        raw: ``float32[K, gh, gw]`` step-1 logit-lens maps (before interference removal).
        class_ids: ``int[K]`` the token id each map is for (the generated target token).
        context: per target, the absolute sequence positions used as interfering context.
        layout: the vision-token geometry.
    """

    grids: np.ndarray
    raw: np.ndarray
    class_ids: list[int]
    context: list[list[int]]
    layout: VisionLayout


@dataclass(frozen=True)
class TAM:
    """Token Activation Map (see the module docstring).

    Args:
        filter_size: side of the rank Gaussian filter window (odd; 1 disables it).
        use_eci: remove context interference (estimated causal inference).
    """

    filter_size: int = 3
    use_eci: bool = True
    name: ClassVar[str] = "tam"

    def __post_init__(self) -> None:
        if (
            isinstance(self.filter_size, bool)
            or not isinstance(self.filter_size, (int, np.integer))
            or self.filter_size < 1
            or self.filter_size % 2 == 0
        ):
            raise ValueError(f"filter_size must be a positive odd integer; got {self.filter_size!r}")

    @torch.inference_mode()
    def token_maps(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int]
    ) -> TokenMaps:
        """One TAM grid per target position (one forward pass for all of them)."""
        adapter = require_hf(adapter, self.name)
        arr = as_image(image)
        positions = check_positions(generation, positions, arr)
        tf = teacher_forced(adapter, arr, generation, positions)
        base, _layers, head = decoder_parts(adapter.model)
        hidden = base(**tf.text, **tf.pixel, use_cache=False).last_hidden_state[0]  # [L, d]
        ids = tf.input_ids[0].cpu().numpy()
        vis = tf.layout.positions
        is_text = np.ones(len(ids), dtype=bool)
        is_text[vis] = False
        special = {int(i) for i in adapter.tokenizer.all_special_ids}
        is_text &= ~np.isin(ids, list(special))
        targets = [int(t) for t in tf.target_ids.cpu().tolist()]
        logit_pos = [int(q) for q in tf.logit_positions.cpu().tolist()]
        contexts = []
        for c, q in zip(targets, logit_pos):
            ctx = [j for j in range(q + 1) if is_text[j] and int(ids[j]) != c] if self.use_eci else []
            contexts.append(ctx)
        classes = sorted(set(targets) | {int(ids[j]) for ctx in contexts for j in ctx})
        col = {c: i for i, c in enumerate(classes)}
        weight = head.weight[torch.as_tensor(classes, device=hidden.device)]  # [C, d]
        logits = hidden.float() @ weight.float().T  # [L, C]
        bias = getattr(head, "bias", None)
        if bias is not None:
            logits = logits + bias[torch.as_tensor(classes, device=hidden.device)].float()
        logits = torch.relu(logits).cpu().numpy().astype(np.float64)
        grids, raws = [], []
        for c, ctx in zip(targets, contexts):
            a = logits[vis, col[c]]
            raws.append(a.reshape(tf.layout.grid))
            if ctx:
                w = logits[ctx, col[c]]
                context_maps = np.stack([logits[vis, col[int(ids[j])]] for j in ctx])
                a = eci(a, context_maps, w)
            else:
                w = np.zeros(0)
            both = np.concatenate([a, w])
            lo, hi = both.min(), both.max()
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            grid = a.reshape(tf.layout.grid)
            if self.filter_size > 1:
                grid = rank_gaussian_filter(grid, self.filter_size)
            grids.append(grid)
        return TokenMaps(
            grids=np.stack(grids).astype(np.float32),
            raw=np.stack(raws).astype(np.float32),
            class_ids=targets,
            context=contexts,
            layout=tf.layout,
        )

    def __call__(
        self, adapter: Any, image: np.ndarray, generation: Generation, positions: Sequence[int], *, seed: int = 0
    ) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]``; deterministic (``seed`` is not used)."""
        maps = self.token_maps(adapter, image, generation, positions)
        return normalize_map(grid_to_image(maps.grids.mean(axis=0), maps.layout))
