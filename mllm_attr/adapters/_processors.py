"""Loading multimodal processors, with or without torchvision.

Several processors (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, LLaVA-OneVision, SmolVLM) bundle a
*video* processor, and transformers' video processors need torchvision. Without it,
``AutoProcessor.from_pretrained`` either raises or, when it cannot resolve the processor class,
silently returns a bare tokenizer. :func:`load_processor` tries ``AutoProcessor`` first (the
normal path where torchvision works) and otherwise falls back to a subclass of the same processor
without the video part (``Qwen2VLProcessorNoVideo``, ...). Image processors are unaffected:
without torchvision transformers 5 builds their PIL variants (``Qwen2VLImageProcessorPil``, ...).

A ``*NoVideo`` processor saves itself under its base class's name, so a directory it wrote
loads as the full processor wherever torchvision is installed.

Example::

    processor = load_processor("Qwen/Qwen2-VL-2B-Instruct")   # hub id or local directory
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from typing import Any

from transformers import (
    InternVLProcessor,
    LlavaOnevisionProcessor,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
)

logger = logging.getLogger(__name__)

__all__ = [
    "InternVLProcessorNoVideo",
    "LlavaOnevisionProcessorNoVideo",
    "Qwen2VLProcessorNoVideo",
    "Qwen2_5_VLProcessorNoVideo",
    "load_processor",
    "processor_class_without_video",
]


_NO_VIDEO: dict[str, type[ProcessorMixin]] = {}


class _NoVideoMixin:
    """Common behaviour of the processors without their video processor (made by :func:`_without_video`)."""

    @classmethod
    def _base_name(cls) -> str:
        for base in cls.__mro__[1:]:
            if base is not _NoVideoMixin and issubclass(base, ProcessorMixin) and not issubclass(base, _NoVideoMixin):
                return base.__name__
        raise TypeError(f"{cls.__name__} has no processor base class")  # pragma: no cover

    @classmethod
    def _init_parameter_names(cls) -> tuple[str, ...]:
        """The named parameters of ``__init__`` after ``self`` (what its code object would list)."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)

    @classmethod
    def validate_init_kwargs(cls, processor_config, valid_kwargs):
        # ``from_args_and_dict`` takes the accepted settings from ``__init__.__code__``, which
        # names none for the signature-bound ``__init__``: accept its named parameters too.
        accepted = tuple(valid_kwargs) + cls._init_parameter_names()
        return super().validate_init_kwargs(processor_config, accepted)  # type: ignore[misc]

    @classmethod
    def from_args_and_dict(cls, args, processor_dict, **kwargs):
        # ``ProcessorMixin.from_args_and_dict`` lets a setting named like the i-th parameter of
        # ``__init__`` (per its code object) replace ``args[i]``; pass the sub-processors by
        # name instead, keeping the ones such a setting would replace out, so that the setting
        # reaches ``__init__`` under its name. The settings it drops before that step:
        dropped = {*cls.get_attributes(), "auto_map", "processor_class"}
        names = cls._init_parameter_names()
        by_name = {
            name: arg
            for name, arg in zip(names, args)
            if name not in kwargs and (name in dropped or name not in processor_dict)
        }
        return super().from_args_and_dict(list(args[len(names) :]), processor_dict, **by_name, **kwargs)  # type: ignore[misc]

    def __call__(self, *args, **kwargs):
        # Positional order of every processor here: images, text, videos.
        videos = kwargs.get("videos", args[2] if len(args) > 2 else None)
        if videos is not None:
            raise ValueError(
                f"{type(self).__name__} handles images and text only (it is the fallback used without "
                "torchvision); got videos. Install torchvision for video inputs."
            )
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()  # type: ignore[misc]
        output["processor_class"] = self._base_name()
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        files = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)  # type: ignore[misc]
        # The tokenizer records the processor class too (AutoProcessor reads it when there is no
        # processor_config.json): name the base class there as well.
        tokenizer_config = os.path.join(save_directory, "tokenizer_config.json")
        if os.path.isfile(tokenizer_config):
            with open(tokenizer_config, encoding="utf-8") as f:
                config = json.load(f)
            if config.get("processor_class") == type(self).__name__:
                config["processor_class"] = self._base_name()
                with open(tokenizer_config, "w", encoding="utf-8") as f:
                    json.dump(config, f, indent=2, sort_keys=True, ensure_ascii=False)
                    f.write("\n")
        return files


def _init_without_video(base: type[ProcessorMixin]):
    """``base.__init__`` minus its ``video_processor`` parameter (passed as None).

    ``ProcessorMixin`` reads the signature (which settings to save, which sub-processors to
    load), so the returned function carries the base's other parameters (names, defaults,
    annotations) as its ``__signature__`` and binds its arguments to it; ``base.__init__`` gets
    every named parameter by keyword. ``ProcessorMixin.from_args_and_dict`` reads the code object
    instead, which names none of them: :class:`_NoVideoMixin` overrides it to match.
    """
    params = [p for p in inspect.signature(base.__init__).parameters.values() if p.name != "video_processor"]
    named = [p for p in params[1:] if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    if len(named) != len(params) - 2 or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        raise TypeError(f"unexpected signature of {base.__name__}.__init__")  # pragma: no cover
    # Annotated as a hand-written ``def __init__(self, <named>, **kwargs)`` would be: the named
    # parameters keep theirs, ``**kwargs`` and the return have none.
    var_keyword = params[-1].name
    signature = inspect.Signature([*params[:-1], inspect.Parameter(var_keyword, inspect.Parameter.VAR_KEYWORD)])

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments[params[0].name]
        extra = arguments.pop(var_keyword)
        base.__init__(self, **arguments, video_processor=None, **extra)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__annotations__ = {p.name: p.annotation for p in named if p.annotation is not p.empty}
    return __init__


def _without_video(base: type[ProcessorMixin], note: str = "", **methods) -> type[ProcessorMixin]:
    """``<base>NoVideo``: ``base`` for images and text only, registered for :func:`load_processor`.

    ``methods`` override the base's (what a base reads from its video processor).
    """
    name = base.__name__ + "NoVideo"
    cls = type(
        name,
        (_NoVideoMixin, base),
        {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"``{base.__name__}`` for images and text only (no torchvision needed{note}).",
            "__init__": _init_without_video(base),
            **methods,
        },
    )
    cls.__init__.__qualname__ = f"{name}.__init__"
    cls.__init__.__module__ = __name__
    _NO_VIDEO[base.__name__] = cls
    return cls


def _apply_chat_template_without_frames(self, conversation, chat_template=None, **kwargs):
    """Apply the chat template through ``ProcessorMixin``, skipping SmolVLM's video-frame layer."""
    # SmolVLMProcessor's override reads frame settings from the video processor, which this
    # class has not got; without videos those settings are unused, so skip that layer.
    return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


Qwen2VLProcessorNoVideo = _without_video(Qwen2VLProcessor)
Qwen2_5_VLProcessorNoVideo = _without_video(Qwen2_5_VLProcessor)
InternVLProcessorNoVideo = _without_video(InternVLProcessor)
LlavaOnevisionProcessorNoVideo = _without_video(LlavaOnevisionProcessor)

# Families whose processor class exists only in some transformers versions.
try:
    from transformers import Qwen3VLProcessor
except ImportError:  # pragma: no cover - older transformers
    pass
else:
    Qwen3VLProcessorNoVideo = _without_video(Qwen3VLProcessor)
    __all__.append("Qwen3VLProcessorNoVideo")

try:
    from transformers import SmolVLMProcessor
except ImportError:  # pragma: no cover - older transformers
    pass
else:
    SmolVLMProcessorNoVideo = _without_video(
        SmolVLMProcessor, "; needs ``num2words``", apply_chat_template=_apply_chat_template_without_frames
    )
    __all__.append("SmolVLMProcessorNoVideo")

# A directory saved by an older version of this module may name the subclass itself.
_NO_VIDEO.update({cls.__name__: cls for cls in list(_NO_VIDEO.values())})


def processor_class_without_video(processor_class: str) -> type[ProcessorMixin]:
    """The image-and-text-only subclass of the transformers processor named ``processor_class``.

    Raises:
        ValueError: no such subclass is defined here.
    """
    try:
        return _NO_VIDEO[processor_class]
    except KeyError:
        known = sorted({cls._base_name() for cls in _NO_VIDEO.values()})
        raise ValueError(f"No video-free variant of {processor_class!r}; known: {', '.join(known)}.") from None


# Keys of ``from_pretrained`` kwargs that locate files (passed to ``cached_file``).
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def _read_json(name_or_path: str, filename: str, kwargs: dict) -> dict | None:
    """A JSON file of a local directory or hub repository, or None when absent/unreadable."""
    path = os.path.join(name_or_path, kwargs.get("subfolder") or "", filename)
    if os.path.isdir(name_or_path):
        resolved = path if os.path.isfile(path) else None
    else:
        try:
            from transformers.utils import cached_file

            # Only what AutoProcessor already fetched into the cache: no further network calls
            # (an unreachable hub would otherwise cost retries per file).
            hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
            hub_kwargs["local_files_only"] = True
            resolved = cached_file(
                name_or_path,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                _raise_exceptions_for_gated_repo=False,
                **hub_kwargs,
            )
        except Exception:  # noqa: BLE001 - an unreachable hub means "unknown", not an error here
            resolved = None
    if resolved is None:
        return None
    try:
        with open(resolved, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def video_size_bounds(name_or_path: str | os.PathLike, **kwargs: Any) -> dict[str, int] | None:
    """The frame pixel bounds of a checkpoint's video processor (``video_preprocessor_config.json``:
    ``size`` with ``shortest_edge`` / ``longest_edge``, or ``min_pixels`` / ``max_pixels``), as
    ``{"shortest_edge": ..., "longest_edge": ...}``; None when the checkpoint has no such file (or
    it names no bounds), which is when transformers builds the video processor from the image
    processor's own configuration."""
    data = _read_json(os.path.expanduser(os.fspath(name_or_path)), "video_preprocessor_config.json", kwargs)
    if not data:
        return None
    size = data.get("size") if isinstance(data.get("size"), dict) else {}
    low = size.get("shortest_edge", data.get("min_pixels"))
    high = size.get("longest_edge", data.get("max_pixels"))
    if not isinstance(low, int) or not isinstance(high, int) or isinstance(low, bool) or isinstance(high, bool):
        return None
    return {"shortest_edge": low, "longest_edge": high}


def _describe_checkpoint(name_or_path: str, kwargs: dict) -> dict[str, Any]:
    """What the checkpoint's files say: candidate processor classes, model type, multimodality."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    candidates: list[str] = []
    files: dict[str, dict | None] = {
        name: _read_json(name_or_path, name, kwargs)
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "config.json")
    }
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json", "config.json"):
        data = files[name] or {}
        if isinstance(data.get("processor_class"), str):
            candidates.append(data["processor_class"])
    config = files["config.json"] or {}
    model_type = config.get("model_type")
    if model_type in PROCESSOR_MAPPING_NAMES:
        mapped = PROCESSOR_MAPPING_NAMES[model_type]
        candidates.extend([mapped] if isinstance(mapped, str) else [m for m in mapped if m])
    processor_config = files["processor_config.json"] or {}
    multimodal = bool(
        "vision_config" in config or "image_processor" in processor_config or files["preprocessor_config.json"]
    )
    return {
        "candidates": list(dict.fromkeys(candidates)),
        "model_type": model_type,
        "multimodal": multimodal,
        "files": sorted(name for name, data in files.items() if data is not None),
    }


def load_processor(name_or_path: str | os.PathLike, *, trust_remote_code: bool = False, **kwargs) -> ProcessorMixin:
    """Load the multimodal processor of a checkpoint (hub id or local directory).

    Tries ``AutoProcessor.from_pretrained``; when that raises, or returns a bare tokenizer or
    image processor for a multimodal checkpoint (what happens without torchvision for processors
    that bundle a video processor), loads the image-and-text-only variant of the processor class
    named by the checkpoint (``Qwen2VLProcessorNoVideo``, ...).

    Args:
        name_or_path: hub id or local directory.
        trust_remote_code: passed to transformers.
        **kwargs: passed to ``from_pretrained`` (``revision``, ``local_files_only``, ...).

    Returns:
        A ``ProcessorMixin`` with at least an image processor and a tokenizer.

    Raises:
        ValueError: no multimodal processor could be built; the message names the path, what
            ``AutoProcessor`` returned or raised, and the processor classes that were tried.
    """
    from transformers import AutoProcessor

    name = os.path.expanduser(os.fspath(name_or_path))
    if not os.path.exists(name) and (os.path.isabs(name) or name.startswith(".")):
        raise ValueError(f"Could not load a multimodal processor from {name!r}: no such directory.")
    auto_error: BaseException | None = None
    result: Any = None
    try:
        result = AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported below if the fallback fails too
        auto_error = exc
    if isinstance(result, ProcessorMixin) and hasattr(result, "image_processor"):
        return result

    info = _describe_checkpoint(name, kwargs)
    found = (
        f"AutoProcessor raised {type(auto_error).__name__}: {auto_error}"
        if auto_error
        else (f"AutoProcessor returned a {type(result).__name__}")
    )
    if result is not None and not info["multimodal"] and not isinstance(result, ProcessorMixin):
        raise ValueError(
            f"{name!r} does not look like a multimodal checkpoint ({found}; files: {info['files'] or 'none'}; "
            f"no vision_config in config.json and no image processor config). Expected a vision-language model."
        )

    fallback_errors: list[str] = []
    for candidate in info["candidates"]:
        cls = _NO_VIDEO.get(candidate)
        if cls is None:
            continue
        try:
            processor = cls.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
        except Exception as exc:  # noqa: BLE001 - collected into the final message
            fallback_errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")
            continue
        logger.info("Loaded %s for %s (%s)", cls.__name__, name, found)
        return processor

    tried = "; ".join(fallback_errors) if fallback_errors else "none applicable"
    raise ValueError(
        f"Could not load a multimodal processor from {name!r}: {found}. "
        f"Processor classes named by the checkpoint: {', '.join(info['candidates']) or 'none'} "
        f"(model_type={info['model_type']!r}; files: {', '.join(info['files']) or 'none'}). "
        f"Video-free fallbacks tried: {tried}."
    ) from auto_error
