"""Hugging Face transformers adapters: one generic implementation, small per-family hooks.

The scorer runs the processor ONCE per explanation (chat template, tokenisation,
image-token expansion) and then, per batch of perturbed images, only the family's
image preprocessing. The text tensors are the prompt's followed by the generated
tokens up to the last target (teacher forcing); logits are computed only at the
target positions (``logits_to_keep``), never over the whole sequence.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..image import ImageLike, load_image
from ..mask import make_baseline
from ..targets import token_spans
from ..types import Generation
from .base import ModelAdapter, Scorer, as_pil

logger = logging.getLogger(__name__)

#: Keys of a processor's output that belong to the text and are repeated across a batch.
TEXT_KEYS: tuple[str, ...] = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``"bfloat16"``/``"bf16"``/``torch.bfloat16``/``"auto"``/``None`` -> what ``from_pretrained`` takes."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(set(_DTYPES))} or 'auto'")


def _supports_index_logits_to_keep() -> bool:
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return True


class HFScorer(Scorer):
    """Scores perturbed images with a transformers model; see the module docstring."""

    def __init__(
        self,
        adapter: "HFAdapter",
        image: np.ndarray,
        baseline: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        batch_size: int,
        fast_path: bool | str = "auto",
    ):
        super().__init__(image, baseline, positions, batch_size)
        if fast_path not in (True, False, "auto"):
            raise ValueError(f"fast_path must be True, False or 'auto'; got {fast_path!r}")
        self.fast_path_requested = fast_path
        self.fast: dict[str, Any] | None = None
        self.fast_report: dict[str, Any] = {"used": False, "reason": "no label map registered"}
        if not self.positions:
            raise ValueError("no target positions to score")
        n = len(generation.token_ids)
        if min(self.positions) < 0 or max(self.positions) >= n:
            raise ValueError(f"target positions {self.positions} out of range for {n} generated tokens")
        self.adapter = adapter
        prompt_inputs = adapter.prompt_inputs(as_pil(image), generation.prompt)
        self.image_keys = tuple(k for k in prompt_inputs.keys() if k not in TEXT_KEYS)
        gen_ids = torch.tensor(generation.token_ids, dtype=torch.long)
        max_pos = max(self.positions)
        prompt_len = int(prompt_inputs["input_ids"].shape[1])
        # Inputs: prompt + generated tokens before the last target; nothing after it is needed.
        self.text = adapter.extend_text_inputs(
            {k: prompt_inputs[k] for k in TEXT_KEYS if k in prompt_inputs}, gen_ids[:max_pos]
        )
        self.target_ids = gen_ids[list(self.positions)]
        # Logit at absolute position P + p - 1 predicts generated token p.
        absolute = [prompt_len + p - 1 for p in self.positions]
        if _supports_index_logits_to_keep():
            self.logits_to_keep: int | torch.Tensor = torch.tensor(absolute, dtype=torch.long)
            self.rel = torch.arange(len(absolute))
        else:
            first = min(absolute)
            total = prompt_len + max_pos
            self.logits_to_keep = total - first
            self.rel = torch.tensor([a - first for a in absolute], dtype=torch.long)

    # -- fast path ---------------------------------------------------------------------------
    #: Largest error of fast-path pixel values, relative to the white-black span of each element,
    #: tolerated in the probe (mean over elements / worst element). Errors concentrate on region
    #: boundaries, where resampling mixes kept and hidden pixels.
    FAST_MEAN_TOL = 0.02
    FAST_MAX_TOL = 0.75

    def set_regions(self, labels: np.ndarray) -> None:
        """Register the label map and, if possible, prepare the fast path.

        The fast path uses that the family's preprocessing is (nearly) linear in the pixels for a
        fixed image size: with ``P`` the image processor, ``A_r = (P(1_r) - P(0)) / (P(1) - P(0))``
        is region ``r``'s footprint in the model's pixel space (any resize, crop or patch layout).
        A subset ``S`` then gives ``P(B) + (P(I) - P(B)) * sum_{r in S} A_r`` with no image processor
        call per candidate. A probe compares it with the processor on random subsets and falls
        back to the slow path when the error exceeds the tolerances above.
        """
        super().set_regions(labels)
        self.fast = None
        if self.fast_path_requested is False:
            self.fast_report = {"used": False, "reason": "disabled"}
            return
        try:
            self.fast, self.fast_report = self._prepare_fast(labels)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the exact slow path
            self.fast, self.fast_report = None, {"used": False, "reason": f"preparation failed: {exc}"}
        if self.fast is None:
            if self.fast_path_requested is True:
                raise ValueError(f"fast path requested but unavailable: {self.fast_report['reason']}")
            logger.info("fast path not used: %s", self.fast_report["reason"])

    def _pixel_outputs(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(images), max(1, self.batch_size)):
            chunk = images[start : start + self.batch_size]
            feats = self.adapter.image_inputs([as_pil(im) for im in chunk])
            out.extend(_split_images(feats, len(chunk)))
        return out

    def _prepare_fast(self, labels: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        n = int(labels.max()) + 1
        h, w = labels.shape
        white = np.full((h, w, 3), 255, np.uint8)
        black = np.zeros((h, w, 3), np.uint8)
        indicators = [np.where((labels == r)[..., None], white, black) for r in range(n)]
        outs = self._pixel_outputs([self.image, self.baseline, white, black] + indicators)
        key = "pixel_values"
        if key not in outs[0]:
            return None, {"used": False, "reason": "image processor returns no pixel_values"}
        for k in outs[0]:
            if k != key and any(not torch.equal(o[k], outs[0][k]) for o in outs[1:]):
                return None, {"used": False, "reason": f"image-side key {k!r} depends on the image content"}
        shapes = {tuple(o[key].shape) for o in outs}
        if len(shapes) != 1:
            return None, {"used": False, "reason": "pixel_values shape depends on the image content"}
        pv = [o[key].double() for o in outs]
        span = pv[2] - pv[3]
        # Elements that do not respond to the image (padding of multi-crop layouts) stay constant.
        dead = span.abs() < 1e-8
        if bool(dead.all()):
            return None, {"used": False, "reason": "pixel_values do not respond to the image"}
        if not torch.equal(pv[0][dead], pv[1][dead]):
            return None, {"used": False, "reason": "constant pixel_values differ between image and baseline"}
        safe = torch.where(dead, torch.ones_like(span), span)
        footprints = torch.stack([torch.where(dead, torch.zeros_like(p), (p - pv[3]) / safe) for p in pv[4:]])
        span = safe
        fast = {
            "orig": pv[0],
            "base": pv[1],
            "span": span,
            "A": footprints.reshape(n, -1).float(),
            "const": {k: v for k, v in outs[0].items() if k != key},
            "shape": pv[0].shape,
        }
        # Probe: random subsets (and their complements) through the processor vs the fast path.
        rng = np.random.default_rng(12345)
        table = rng.random((3, n)) < 0.5
        table = np.concatenate([table, ~table])
        slow = self._pixel_outputs([np.where(t[labels][..., None], self.image, self.baseline) for t in table])
        fast_pv = self._fast_pixels(fast, table)
        errs = []
        for i, o in enumerate(slow):
            diff = (fast_pv[i].double() - o[key].double()).abs() / span.abs()
            errs.append((float(diff.mean()), float(diff.max())))
        mean_err = max(e[0] for e in errs)
        max_err = max(e[1] for e in errs)
        report = {"used": True, "probe_mean_rel_error": mean_err, "probe_max_rel_error": max_err}
        if mean_err > self.FAST_MEAN_TOL or max_err > self.FAST_MAX_TOL:
            return None, {**report, "used": False, "reason": f"probe error too large (mean {mean_err:.3g}, max {max_err:.3g})"}
        return fast, report

    @staticmethod
    def _fast_pixels(fast: dict[str, Any], table: np.ndarray) -> list[torch.Tensor]:
        weights = torch.as_tensor(np.asarray(table, dtype=np.float32))
        m = (weights @ fast["A"]).double().reshape(len(table), *fast["shape"])
        return list(fast["base"].unsqueeze(0) + (fast["orig"] - fast["base"]).unsqueeze(0) * m)

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        if self.fast is None:
            return super()._score_regions_batch(table)
        with torch.inference_mode():
            pixels = self._fast_pixels(self.fast, table)
            inputs = {"pixel_values": torch.cat(pixels, dim=0).to(self.adapter.dtype)}
            for k, v in self.fast["const"].items():
                inputs[k] = torch.cat([v] * len(table), dim=0)
            return self._forward(inputs, len(table))

    @torch.inference_mode()
    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        pixel_inputs = self.adapter.image_inputs([as_pil(im) for im in images])
        return self._forward(pixel_inputs, len(images))

    @torch.inference_mode()
    def _forward(self, pixel_inputs: dict[str, torch.Tensor], batch: int) -> np.ndarray:
        model = self.adapter.model
        device = self.adapter.device
        inputs: dict[str, Any] = {k: v.to(device).repeat(batch, 1) for k, v in self.text.items()}
        for key, value in pixel_inputs.items():
            if torch.is_floating_point(value):
                value = value.to(device=device, dtype=self.adapter.dtype)
            else:
                value = value.to(device)
            inputs[key] = value
        keep = self.logits_to_keep.to(device) if isinstance(self.logits_to_keep, torch.Tensor) else self.logits_to_keep
        out = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = out.logits
        n_keep = len(self.rel) if isinstance(self.logits_to_keep, torch.Tensor) else int(self.logits_to_keep)
        logits = logits[:, -n_keep:, :].float()
        picked = logits[:, self.rel.to(logits.device), :]
        logp = torch.log_softmax(picked, dim=-1)
        tgt = self.target_ids.to(logits.device)
        probs = logp.gather(-1, tgt.view(1, -1, 1).expand(batch, -1, 1)).squeeze(-1).exp()
        return probs.double().cpu().numpy()


def _split_images(feats: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """Split a batched image-processor output into per-image outputs (inverse of ``torch.cat``)."""
    per: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for k, v in feats.items():
        if not isinstance(v, torch.Tensor):
            continue
        if v.shape[0] % n:
            raise ValueError(f"cannot split image output {k!r} of shape {tuple(v.shape)} into {n} images")
        for i, part in enumerate(torch.chunk(v, n, dim=0)):
            per[i][k] = part
    return per


class HFAdapter(ModelAdapter):
    """Generic adapter for a transformers image-text-to-text model with a chat template.

    Args:
        model: a loaded ``PreTrainedModel`` (any device map, dtype or quantisation).
        processor: its ``ProcessorMixin``.
        name: a display name (the hub id or path), stored in every result.
    """

    family: ClassVar[str] = "auto"
    #: ``config.model_type`` values this adapter is chosen for.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: the transformers class used by :meth:`from_pretrained`.
    model_class: ClassVar[str] = "AutoModelForImageTextToText"

    def __init__(self, model: Any, processor: Any, *, name: str | None = None):
        if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
            raise TypeError(
                f"expected a multimodal processor with .image_processor and .tokenizer; got {type(processor).__name__}"
            )
        self.model = model.eval()
        self.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: str | torch.dtype | None = "auto",
        device_map: str | dict | None = None,
        load_in_4bit: bool = False,
        load_in_8bit: bool = False,
        trust_remote_code: bool = False,
        processor_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> "HFAdapter":
        """Load model and processor from a hub id or a local directory.

        ``load_in_4bit``/``load_in_8bit`` use bitsandbytes; ``device_map="auto"`` uses accelerate.
        ``trust_remote_code`` stays off unless you turn it on.
        """
        import transformers

        from ._processors import load_processor

        if load_in_4bit and load_in_8bit:
            raise ValueError("choose at most one of load_in_4bit and load_in_8bit")
        kwargs: dict[str, Any] = dict(model_kwargs)
        torch_dtype = parse_dtype(dtype)
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype
        if device_map is not None:
            kwargs["device_map"] = device_map
        if load_in_4bit or load_in_8bit:
            compute = torch_dtype if isinstance(torch_dtype, torch.dtype) else torch.float32
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit, bnb_4bit_compute_dtype=compute
            )
        # Weights are read from safetensors only: a pickle-based pytorch_model.bin can run code.
        kwargs.setdefault("use_safetensors", True)
        model_cls = getattr(transformers, cls.model_class)
        try:
            model = model_cls.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)
        except OSError as exc:
            if kwargs["use_safetensors"] and "safetensors" in str(exc).lower():
                raise ValueError(
                    f"no safetensors weights found for {str(name_or_path)!r}; mllm_attr loads model weights only "
                    "from *.safetensors files (pickle-based .bin/.pt checkpoints can run code when loaded). "
                    "Convert the checkpoint to safetensors, or pass use_safetensors=False if you trust it"
                ) from exc
            raise
        processor = load_processor(name_or_path, trust_remote_code=trust_remote_code, **(processor_kwargs or {}))
        return cls(model, processor, name=str(name_or_path))

    # -- properties ----------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer."""
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter (where inputs are sent)."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model's first floating-point parameter if float16, bfloat16 or float32; else float32."""
        for p in self.model.parameters():
            if torch.is_floating_point(p):
                return p.dtype if p.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32
        return torch.float32

    def describe(self) -> dict[str, Any]:
        """Settings stored with results: family, adapter class, model name and class, dtype and device."""
        return {
            "family": self.family,
            "adapter": type(self).__name__,
            "model": self.name,
            "model_class": type(self.model).__name__,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
        }

    def default_batch_size(self) -> int:
        """A batch size that fits the free memory of the model's device (heuristic)."""
        cfg = getattr(self.model.config, "text_config", self.model.config)
        hidden = int(getattr(cfg, "hidden_size", 1024))
        layers = int(getattr(cfg, "num_hidden_layers", 16))
        # Rough activation bytes per image: a few copies of (tokens x hidden) per layer.
        per_image = 4 * 1024 * hidden * 4 * max(layers, 1) // 4
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free * 0.5
        else:
            budget = _available_ram() * 0.25
        return int(max(1, min(32, budget // max(per_image, 1))))

    # -- family hooks ------------------------------------------------------------------------
    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages of one user turn: an image placeholder followed by ``prompt``."""
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]

    def chat_text(self, prompt: str) -> str:
        """The full prompt string, chat template applied, ready for generation."""
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise ValueError(
                f"model {self.name!r} has no chat template; use a model with one or subclass HFAdapter.chat_text"
            )
        return self.processor.apply_chat_template(self.messages(prompt), add_generation_prompt=True, tokenize=False)

    def prompt_inputs(self, image: Any, prompt: str) -> dict[str, torch.Tensor]:
        """Processor output (text + image tensors) for one image and the chat-formatted prompt."""
        out = self.processor(images=[image], text=[self.chat_text(prompt)], return_tensors="pt")
        out = dict(out)
        out.pop("labels", None)
        return out

    def image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """The image-side tensors for a batch of same-size images (no tokenisation).

        Image options that the processor sets over its image processor (InternVL's
        ``crop_to_patches``, for instance) are applied here too, so the candidates get exactly
        the layout (and image-token count) of the processor call that built the prompt.
        """
        return dict(self.processor.image_processor(images=images, return_tensors="pt", **self.processor_image_kwargs()))

    def processor_image_kwargs(self) -> dict[str, Any]:
        """Image options declared by the processor class (its ``images_kwargs``) for :meth:`image_inputs`.

        ``data_format`` and ``return_tensors`` are left out; ``{}`` when the class declares none.
        """
        defaults = getattr(type(self.processor), "images_kwargs", None)
        if not isinstance(defaults, dict):
            return {}
        return {k: v for k, v in defaults.items() if k not in ("data_format", "return_tensors")}

    def extend_text_inputs(self, text: dict[str, torch.Tensor], gen_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Append teacher-forced generated ids to the prompt's text tensors."""
        n = int(gen_ids.numel())
        out = {}
        for key, value in text.items():
            if key == "input_ids":
                out[key] = torch.cat([value, gen_ids.view(1, -1).to(value.dtype)], dim=1)
            elif key == "attention_mask":
                out[key] = torch.cat([value, torch.ones(1, n, dtype=value.dtype)], dim=1)
            else:  # mm_token_type_ids / token_type_ids: generated tokens are plain text
                out[key] = torch.cat([value, torch.full((1, n), self.text_type_id(key), dtype=value.dtype)], dim=1)
        return out

    def text_type_id(self, key: str) -> int:
        """The value that extends the type-id tensor ``key`` over the generated tokens (0: plain text)."""
        return 0

    # -- contract ----------------------------------------------------------------------------
    def _generation(self, prompt: str, ids: list[int], probs: list[float], **extra: Any) -> Generation:
        tok = self.tokenizer
        special_ids = set(tok.all_special_ids)
        text, spans = token_spans(lambda x: tok.decode(x, skip_special_tokens=True), ids)
        tokens = []
        for i, (s, e) in zip(ids, spans):
            tokens.append(tok.convert_ids_to_tokens(int(i)) if int(i) in special_ids else text[s:e])
        return Generation(
            prompt=prompt,
            token_ids=tuple(int(i) for i in ids),
            tokens=tuple(tokens),
            spans=tuple(spans),
            text=text,
            probs=tuple(float(p) for p in probs),
            special=tuple(int(i) in special_ids for i in ids),
            **extra,
        )

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}

    @torch.inference_mode()
    def generate(self, image: ImageLike, prompt: str, *, max_new_tokens: int = 64, **gen_kwargs: Any) -> Generation:
        """Greedy decoding; per-token probabilities come from the raw logits of each step."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"expected a non-empty prompt string; got {prompt!r}")
        pil = as_pil(image)
        inputs = self.prompt_inputs(pil, prompt)
        inputs = {k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device)) for k, v in inputs.items()}
        gen_kwargs.setdefault("do_sample", False)
        out = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            output_logits=True,
            **gen_kwargs,
        )
        prompt_len = inputs["input_ids"].shape[1]
        seq = out.sequences[0, prompt_len:].tolist()
        eos = self._eos_ids()
        ids: list[int] = []
        probs: list[float] = []
        for step, token in enumerate(seq):
            logits = out.logits[step][0].float()
            probs.append(float(torch.softmax(logits, dim=-1)[token]))
            ids.append(int(token))
            if token in eos:
                break
        return self._generation(prompt, ids, probs)

    def teacher_force(self, image: ImageLike, prompt: str, answer: str, *, generated_text: str | None = None) -> Generation:
        """Teacher-force a user-given ``answer``; probabilities are scored under the full image."""
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"expected a non-empty counterfactual answer; got {answer!r}")
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"answer {answer!r} tokenises to nothing")
        arr = load_image(image).array if not isinstance(image, np.ndarray) or image.ndim != 3 else image
        placeholder = self._generation(prompt, ids, [0.0] * len(ids))
        scorer = HFScorer(self, arr, arr, placeholder, list(range(len(ids))), batch_size=1)
        probs = scorer.score_images(arr[None])[0]
        return self._generation(prompt, ids, probs.tolist(), counterfactual=True, generated_text=generated_text)

    def scorer(
        self,
        image: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        *,
        baseline: np.ndarray | None = None,
        batch_size: int | None = None,
        fast_path: bool | str = "auto",
    ) -> HFScorer:
        """Per-explanation scorer; ``fast_path`` = ``"auto"`` (probe, fall back), ``True`` (require) or ``False``."""
        base = make_baseline(image) if baseline is None else baseline
        return HFScorer(self, image, base, generation, positions, batch_size or self.default_batch_size(), fast_path)


def _available_ram() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8e9
