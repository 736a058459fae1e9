"""White-box access shared by the gradient / logit-lens baselines.

The inputs are built exactly as the scorer builds them (method.md §1): the chat-formatted prompt
with the image, followed by the generated tokens up to the last target (teacher forcing). The
logit at absolute position ``P + p - 1`` predicts generated token ``p`` (``P`` = prompt length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..adapters.base import as_pil
from ..adapters.hf import TEXT_KEYS, HFAdapter
from ..image import ImageLike, check_generation_image, load_image
from ..types import Generation
from ._vision import VisionLayout, check_family, vision_layout


def as_image(image: ImageLike | np.ndarray) -> np.ndarray:
    """``uint8[H, W, 3]`` RGB from an array, PIL image or path."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    return load_image(image).array


def check_positions(
    generation: Generation, positions: Sequence[int] | int, image: np.ndarray | None = None
) -> list[int]:
    """Validate target positions (0-based into ``generation``); returns them as a list, order kept.

    With ``image`` (the pixels about to be attributed), also refuse a ``generation`` made on
    another image (:func:`~mllm_attr.image.check_generation_image`).
    """
    if not isinstance(generation, Generation):
        raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
    if image is not None:
        check_generation_image(generation, image)
    if isinstance(positions, (int, np.integer)) and not isinstance(positions, bool):
        positions = [int(positions)]
    out = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise TypeError(f"target positions must be integers; got {p!r}")
        out.append(int(p))
    if not out:
        raise ValueError("no target positions given")
    n = len(generation.token_ids)
    bad = [p for p in out if not 0 <= p < n]
    if bad:
        raise ValueError(f"target positions {bad} out of range for {n} generated tokens")
    return out


def require_hf(adapter: Any, method: str) -> HFAdapter:
    """The adapter as a white-box :class:`HFAdapter` of a supported family, else a clear error."""
    if not isinstance(adapter, HFAdapter):
        raise TypeError(
            f"baseline {method!r} needs gradients/hidden states of a transformers model (an HFAdapter from "
            f"load_adapter); got {type(adapter).__name__}"
        )
    check_family(adapter.family)
    return adapter


def decoder_parts(model: Any) -> tuple[Any, Any, Any]:
    """``(base_model, decoder_layers, lm_head)`` of a ``*ForConditionalGeneration`` model.

    ``base_model(**inputs).last_hidden_state`` is the final hidden state after the final norm;
    ``decoder_layers[i].post_attention_layernorm`` is layer ``i``'s pre-MLP norm (transformers 5:
    ``model.model.language_model.layers`` for LLaVA and Qwen2/2.5-VL).
    """
    base = getattr(model, "model", None)
    lm = getattr(base, "language_model", None)
    layers = getattr(lm, "layers", None)
    head = model.get_output_embeddings()
    if base is None or layers is None or head is None:
        raise NotImplementedError(
            f"cannot find model.model.language_model.layers and the output head in {type(model).__name__}"
        )
    return base, layers, head


@dataclass
class TeacherForced:
    """One image + prompt + teacher-forced answer, ready for a white-box forward.

    Attributes:
        text: text tensors ``[1, L]`` (input ids, attention mask, M-RoPE type ids) on the model device.
        pixel: image-side tensors of the original image on the model device (floats in model dtype).
        target_ids: ``int64[K]`` the target token ids.
        logit_positions: ``int64[K]`` absolute positions whose logits predict the targets.
        layout: the vision-token geometry.
        image: ``uint8[H, W, 3]`` the original image.
    """

    text: dict[str, torch.Tensor]
    pixel: dict[str, torch.Tensor]
    target_ids: torch.Tensor
    logit_positions: torch.Tensor
    layout: VisionLayout
    image: np.ndarray

    @property
    def input_ids(self) -> torch.Tensor:
        """``[1, L]`` input ids of the prompt and answer (``text["input_ids"]``)."""
        return self.text["input_ids"]


def to_device(adapter: HFAdapter, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` moved to the adapter's device, floating-point ones also cast to its dtype."""
    out = {}
    for key, value in tensors.items():
        if torch.is_floating_point(value):
            out[key] = value.to(device=adapter.device, dtype=adapter.dtype)
        else:
            out[key] = value.to(adapter.device)
    return out


def teacher_forced(
    adapter: HFAdapter, image: np.ndarray, generation: Generation, positions: Sequence[int]
) -> TeacherForced:
    """Build the :class:`TeacherForced` inputs for ``positions`` of ``generation``."""
    prompt_inputs = adapter.prompt_inputs(as_pil(image), generation.prompt)
    gen_ids = torch.tensor(generation.token_ids, dtype=torch.long)
    prompt_len = int(prompt_inputs["input_ids"].shape[1])
    max_pos = max(positions)
    text = adapter.extend_text_inputs({k: prompt_inputs[k] for k in TEXT_KEYS if k in prompt_inputs}, gen_ids[:max_pos])
    pixel = {k: v for k, v in prompt_inputs.items() if k not in TEXT_KEYS}
    layout = vision_layout(adapter, image.shape[:2], text["input_ids"], pixel)
    return TeacherForced(
        text=to_device(adapter, text),
        pixel=to_device(adapter, pixel),
        target_ids=gen_ids[list(positions)].to(adapter.device),
        logit_positions=torch.tensor([prompt_len + p - 1 for p in positions], dtype=torch.long, device=adapter.device),
        layout=layout,
        image=image,
    )


def batched_inputs(tf: TeacherForced, pixel_batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Model inputs for several images with the same text: text repeated, image tensors concatenated.

    Image tensors concatenate along dim 0 for every supported family (LLaVA ``[B, 3, H, W]``;
    Qwen-VL flat patches ``[B * N, D]`` with ``image_grid_thw: [B, 3]``).
    """
    b = len(pixel_batch)
    inputs: dict[str, torch.Tensor] = {k: v.repeat(b, 1) for k, v in tf.text.items()}
    for key in pixel_batch[0]:
        inputs[key] = torch.cat([p[key] for p in pixel_batch], dim=0)
    return inputs


def target_logits(head: Any, hidden: torch.Tensor, tf: TeacherForced) -> torch.Tensor:
    """``float32[B, K]`` logits of the target tokens from final hidden states ``[B, L, d]``."""
    picked = head(hidden[:, tf.logit_positions, :]).float()  # [B, K, V]
    idx = tf.target_ids.view(1, -1, 1).expand(picked.shape[0], -1, 1)
    return picked.gather(-1, idx).squeeze(-1)


def target_logprobs(head: Any, hidden: torch.Tensor, tf: TeacherForced) -> torch.Tensor:
    """``float32[B, K]`` log-probabilities of the target tokens (as the scorer computes them)."""
    picked = torch.log_softmax(head(hidden[:, tf.logit_positions, :]).float(), dim=-1)
    idx = tf.target_ids.view(1, -1, 1).expand(picked.shape[0], -1, 1)
    return picked.gather(-1, idx).squeeze(-1)
