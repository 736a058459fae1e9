"""Adapter registry and the :func:`load_adapter` factory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import transformers as _transformers

from . import families as _f
from .base import ModelAdapter
from .hf import HFAdapter

#: family name -> adapter class.
ADAPTERS: dict[str, type[HFAdapter]] = {}


def register(cls: type[HFAdapter]) -> type[HFAdapter]:
    """Register an adapter class under its ``family`` (usable as a decorator)."""
    ADAPTERS[cls.family] = cls
    return cls


# dir() of transformers' lazy module lists its classes without importing their modeling code.
_AVAILABLE = set(dir(_transformers))
for _cls in (
    _f.LlavaAdapter,
    _f.LlavaNextAdapter,
    _f.LlavaOnevisionAdapter,
    _f.Qwen2VLAdapter,
    _f.Qwen25VLAdapter,
    _f.Qwen3VLAdapter,
    _f.InternVLAdapter,
    _f.Idefics3Adapter,
    _f.SmolVLMAdapter,
    _f.PaliGemmaAdapter,
    _f.Gemma3Adapter,
    HFAdapter,
):
    # Families whose model class this transformers version lacks are not offered.
    if _cls.model_class in _AVAILABLE:
        register(_cls)


def supported_families() -> list[str]:
    """Sorted names of the registered model families."""
    return sorted(ADAPTERS)


def family_for_model_type(model_type: str) -> str | None:
    """The first registered family whose adapter lists ``model_type`` in ``model_types``, or ``None``."""
    for fam, cls in ADAPTERS.items():
        if model_type in cls.model_types:
            return fam
    return None


def _model_type_of(source: str | os.PathLike, trust_remote_code: bool) -> str:
    path = Path(source)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise FileNotFoundError(f"{str(path)!r} is a directory but has no config.json; expected a model directory")
        try:
            model_type = json.loads(cfg.read_text()).get("model_type")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(cfg)!r} is not valid JSON: {exc}") from None
        if not model_type:
            raise ValueError(f"{str(cfg)!r} has no 'model_type'; cannot tell the model family")
        return str(model_type)
    if path.exists():
        raise ValueError(f"expected a model directory or hub id; {str(path)!r} is a file")
    from transformers import AutoConfig

    return str(AutoConfig.from_pretrained(str(source), trust_remote_code=trust_remote_code).model_type)


def load_adapter(
    model: Any,
    processor: Any | None = None,
    *,
    family: str | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> ModelAdapter:
    """Build an adapter from a hub id, a local directory, a ``(model, processor)`` pair or an adapter.

    Args:
        model: hub id / local path, a loaded ``PreTrainedModel`` (then pass ``processor``),
            a ``(model, processor)`` tuple, or a ready :class:`ModelAdapter`.
        family: force a family (see :func:`supported_families`); by default it is read from
            the model config's ``model_type``.
        trust_remote_code: passed to transformers; off unless you turn it on.
        **kwargs: loading options (``dtype``, ``device_map``, ``load_in_4bit``, ``load_in_8bit``,
            ``attn_implementation``, ...), passed to :meth:`HFAdapter.from_pretrained`.

    Raises:
        ValueError: the family is unknown or cannot be told; the message lists supported families.
    """
    if isinstance(model, ModelAdapter):
        return model
    if isinstance(model, tuple) and len(model) == 2 and processor is None:
        model, processor = model
    if family is not None and family not in ADAPTERS:
        raise ValueError(f"unknown model family {family!r}; supported: {supported_families()}")

    if isinstance(model, (str, os.PathLike)):
        if processor is not None:
            raise TypeError("pass a processor only together with a loaded model, not with a name or path")
        model_type = _model_type_of(model, trust_remote_code)
        _check_forced_family(family, model_type)
        fam = family or family_for_model_type(model_type) or _generic_or_raise(model_type)
        return ADAPTERS[fam].from_pretrained(model, trust_remote_code=trust_remote_code, **kwargs)

    if processor is None:
        raise TypeError(
            f"expected a hub id, a local path, a (model, processor) pair or a ModelAdapter; got {type(model).__name__} "
            "without a processor"
        )
    if kwargs:
        raise TypeError(f"loading options {sorted(kwargs)} apply only when loading by name or path")
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    _check_forced_family(family, model_type)
    fam = family or family_for_model_type(model_type) or _generic_or_raise(model_type)
    return ADAPTERS[fam](model, processor)


def _check_forced_family(family: str | None, model_type: str) -> None:
    """A forced ``family`` must fit the checkpoint: ``'auto'`` fits any, others their own model types."""
    if family is None or family == "auto":
        return
    detected = family_for_model_type(model_type)
    if detected is not None and detected != family:
        raise ValueError(
            f"family {family!r} does not match the checkpoint: its config says model_type {model_type!r}, "
            f"which is family {detected!r}; drop the family option (it is detected) or use family='auto'"
        )


def _generic_or_raise(model_type: str) -> str:
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    except ImportError:  # pragma: no cover - very old transformers
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES = {}
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "auto"
    raise ValueError(
        f"unknown model family for model_type {model_type!r}; supported families: {supported_families()} "
        "(or any model_type that transformers' AutoModelForImageTextToText supports, through family='auto')"
    )
