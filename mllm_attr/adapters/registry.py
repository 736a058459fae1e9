"""Adapter registry and the :func:`load_adapter` factory."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import transformers as _transformers

from ..assets import DEFAULT_MODEL_NAME, default_model_path
from . import families as _f
from .base import ModelAdapter, ModelNotFoundError
from .hf import HFAdapter
from .text import TextAdapter

logger = logging.getLogger(__name__)

#: Seconds the reachability probe of the hub waits for a TCP connection (DNS included).
HUB_PROBE_TIMEOUT = 2.0
#: Environment variables that put Hugging Face libraries offline, and the values that mean "on".
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}
#: The end of every "model not found" message: the model that needs no hub.
EMBEDDED_HINT = (
    f"the embedded model needs neither: load_adapter({DEFAULT_MODEL_NAME!r}) or load_adapter() "
    f"(CLI: leave out --model, or --model {DEFAULT_MODEL_NAME})"
)

#: family name -> adapter class.
ADAPTERS: dict[str, type[HFAdapter] | type[TextAdapter]] = {}


def register(cls: type[HFAdapter] | type[TextAdapter]) -> type[HFAdapter] | type[TextAdapter]:
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
    TextAdapter,
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


def _model_type_of(source: str | os.PathLike, trust_remote_code: bool, offline_reason: str | None = None) -> str:
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

    # With the hub out of reach only transformers' own cache lookup runs: no network retries.
    extra = {"local_files_only": True} if offline_reason is not None else {}
    try:
        config = AutoConfig.from_pretrained(str(source), trust_remote_code=trust_remote_code, **extra)
    except OSError as exc:
        if offline_reason is not None:
            raise _not_on_hub(str(source), offline_reason) from None
        said = " ".join(str(exc).split())  # one line: the CLI prints it as one error line
        raise ModelNotFoundError(f"could not load the config of {str(source)!r}: {said}; {EMBEDDED_HINT}") from exc
    return str(config.model_type)


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in _TRUE


def _looks_like_path(text: str) -> bool:
    """A name meant as a local path: ``./x``, ``/x``, ``~/x``, ``x/``, more than the one slash
    of ``org/name``, a backslash or drive on Windows, or anything that exists on disk."""
    if text.startswith((".", "/", "~")) or text.endswith("/") or text.count("/") > 1:
        return True
    if os.sep != "/" and (os.sep in text or Path(text).drive):
        return True
    return Path(text).expanduser().exists()


def _local_model_path(text: str | os.PathLike) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"no model directory at {str(text)!r} (resolved: {str(path.resolve())!r}); expected a local model "
            f"directory holding config.json, or a Hugging Face hub id like 'org/name'; {EMBEDDED_HINT}"
        )
    return path


def _in_hub_cache(repo_id: str, *, revision: str | None = None, cache_dir: Any = None) -> bool:
    """Whether the hub cache holds ``repo_id``'s ``config.json`` (a local lookup: no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    except (ValueError, OSError):
        return False
    return isinstance(found, str)


def _hub_cache_dir(cache_dir: Any = None) -> str:
    from huggingface_hub import constants

    return str(cache_dir) if cache_dir is not None else str(constants.HF_HUB_CACHE)


def _not_on_hub(repo_id: str, reason: str, cache_dir: Any = None) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"{repo_id!r} is not in the local Hugging Face cache ({_hub_cache_dir(cache_dir)}) and the hub cannot be "
        f"reached ({reason}); download it on a connected machine (`hf download {repo_id}`) into that cache, or "
        f"pass a local model directory; {EMBEDDED_HINT}"
    )


def _tcp_probe(host: str, port: int, timeout: float) -> str | None:
    """``None`` when a TCP connection to ``host:port`` opens within ``timeout`` seconds (name
    lookup included: it runs in a thread, since ``getaddrinfo`` takes no timeout); else why not."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "unreachable"
            outcome.append(f"{host}:{port}: {exc or type(exc).__name__}")

    thread = threading.Thread(target=attempt, name="mllm-attr-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"


def hub_unavailable_reason(timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why the Hugging Face hub cannot be used now, or ``None`` when it can.

    Offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set) answers at once; otherwise
    one TCP connection to the endpoint host (``HF_ENDPOINT``, default ``huggingface.co:443``; the
    HTTPS proxy when one is configured for it) is tried for at most ``timeout`` seconds (a
    reachable hub answers in milliseconds). Called for hub ids only, never for local folders or
    the embedded model.
    """
    from huggingface_hub import constants

    for var in OFFLINE_ENV:
        if _is_true(os.environ.get(var)):
            return f"offline mode: {var}={os.environ[var]} is set"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "offline mode: huggingface_hub.constants.HF_HUB_OFFLINE is on"
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    proxy = urllib.request.getproxies().get(url.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if purl.hostname:
            host, port = purl.hostname, purl.port or (443 if purl.scheme == "https" else 80)
    return _tcp_probe(host, port, timeout)


def resolve_model_source(
    model: str | os.PathLike, *, revision: str | None = None, cache_dir: Any = None
) -> tuple[str | Path, str | None]:
    """Where ``model`` will be loaded from, checked before transformers is called.

    Returns:
        ``(source, offline_reason)``: the embedded model's directory for ``"shapes-llava"`` (a
        reserved name; ``"./shapes-llava"`` is a local folder of that name), the
        local directory for a path, the hub id otherwise; ``offline_reason`` is set for a hub id
        when the hub cannot be reached (then only the local cache is searched, so a cached model
        loads without network retries).

    Raises:
        ModelNotFoundError: a path (``./x``, ``/x``, ``~/x``, ``a/b/c``, a ``PathLike``) that does
            not exist; a name that is not a valid hub id; a hub id missing from the cache while
            the hub is unreachable (:func:`hub_unavailable_reason`, within seconds).
    """
    if not isinstance(model, str):
        return _local_model_path(model), None
    if model == DEFAULT_MODEL_NAME:  # a reserved name: a local folder of that name is "./shapes-llava"
        return default_model_path(), None
    if not model.strip():
        raise ModelNotFoundError(f"expected a hub id or a local model directory; got {model!r}; {EMBEDDED_HINT}")
    if _looks_like_path(model):
        return _local_model_path(model), None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as exc:
        raise ModelNotFoundError(
            f"{model!r} is neither an existing local path nor a valid hub id like 'org/name' ({exc}); {EMBEDDED_HINT}"
        ) from None
    cached = _in_hub_cache(model, revision=revision, cache_dir=cache_dir)
    reason = hub_unavailable_reason()
    if reason is not None:
        if cached:  # loads from the cache only: transformers would otherwise retry every missing file
            logger.info("loading %r from the local cache only: %s", model, reason)
        else:
            logger.debug("%r is not cached and the hub is unavailable: %s", model, reason)
    return model, reason


def load_adapter(
    model: Any = DEFAULT_MODEL_NAME,
    processor: Any | None = None,
    *,
    family: str | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> ModelAdapter:
    """Build an adapter from a hub id, a local directory, a ``(model, processor)`` pair or an adapter.

    Args:
        model: ``"shapes-llava"`` (the default: the embedded model, loaded offline), a hub id, a
            local path, a loaded ``PreTrainedModel`` (then pass ``processor``), a
            ``(model, processor)`` tuple, or a ready :class:`ModelAdapter`. Names are checked
            before transformers runs (:func:`resolve_model_source`).
        family: force a family (see :func:`supported_families`); by default it is read from
            the model config's ``model_type``. A text-only causal LM (a ``model_type`` that
            ``AutoModelForCausalLM`` loads and no image-text class does) is family ``"text"``: a
            :class:`~mllm_attr.adapters.text.TextAdapter` (model + tokenizer; prompt words only).
        trust_remote_code: passed to transformers; off unless you turn it on.
        **kwargs: loading options (``dtype``, ``device_map``, ``load_in_4bit``, ``load_in_8bit``,
            ``attn_implementation``, ...), passed to :meth:`HFAdapter.from_pretrained`.

    Raises:
        ModelNotFoundError: a local path that does not exist, or a hub id that is not in the local
            cache while the hub is unreachable (offline mode, or no connection within
            :data:`HUB_PROBE_TIMEOUT` seconds); the message names the embedded model.
        ValueError: the family is unknown or cannot be told; the message lists supported families.

    Example:
        >>> adapter = load_adapter()  # the embedded shapes-llava model, no network  # doctest: +SKIP
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
        where = {"revision": kwargs.get("revision"), "cache_dir": kwargs.get("cache_dir")}
        source, offline = resolve_model_source(model, **where)
        model_type = _model_type_of(source, trust_remote_code, offline)
        _check_forced_family(family, model_type)
        fam = (
            family
            or family_for_model_type(model_type)
            or _generic_or_raise(model_type, _architectures_of(source, trust_remote_code, offline))
        )
        if offline is not None and isinstance(source, str):
            # A hub id with the hub out of reach: model and processor from the cache only (no retries).
            kwargs.setdefault("local_files_only", True)
            kwargs["processor_kwargs"] = {"local_files_only": True, **(kwargs.get("processor_kwargs") or {})}
        return ADAPTERS[fam].from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)

    if processor is None:
        raise TypeError(
            f"expected a hub id, a local path, a (model, processor) pair or a ModelAdapter; got {type(model).__name__} "
            "without a processor"
        )
    if kwargs:
        raise TypeError(f"loading options {sorted(kwargs)} apply only when loading by name or path")
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    _check_forced_family(family, model_type)
    fam = family or family_for_model_type(model_type) or _generic_or_raise(model_type, (type(model).__name__,))
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


def _architectures_of(
    source: str | os.PathLike, trust_remote_code: bool, offline_reason: str | None = None
) -> tuple[str, ...]:
    """The model classes a checkpoint's config names (``architectures``); ``()`` when it names none."""
    path = Path(source)
    if path.is_dir():
        try:
            archs = json.loads((path / "config.json").read_text()).get("architectures")
        except (OSError, ValueError):
            return ()
    else:
        from transformers import AutoConfig

        extra = {"local_files_only": True} if offline_reason is not None else {}
        try:
            archs = AutoConfig.from_pretrained(str(source), trust_remote_code=trust_remote_code, **extra).architectures
        except OSError:
            return ()
    return tuple(str(a) for a in archs) if isinstance(archs, (list, tuple)) else ()


def _generic_or_raise(model_type: str, architectures: tuple[str, ...] = ()) -> str:
    """``"auto"`` for an image-text-to-text model type; ``"text"`` for a causal LM (its model type is
    one ``AutoModelForCausalLM`` loads AND the config names a causal-LM class, e.g.
    ``Qwen2ForCausalLM``: an encoder such as BERT, whose model type also maps to a causal-LM head,
    is not taken for a chat model); otherwise a ValueError listing the supported families."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    except ImportError:  # pragma: no cover - very old transformers
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES = {}
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "auto"
    if "text" in ADAPTERS and _is_causal_lm(model_type, architectures):
        return "text"  # a text-only causal LM (Qwen2ForCausalLM, LlamaForCausalLM, ...): prompt words only
    raise ValueError(
        f"unknown model family for model_type {model_type!r}; supported families: {supported_families()} "
        "(or any model_type that transformers' AutoModelForImageTextToText supports, through family='auto', "
        "or AutoModelForCausalLM, through family='text')"
    )


def _is_causal_lm(model_type: str, architectures: tuple[str, ...]) -> bool:
    """``model_type`` is one transformers' ``AutoModelForCausalLM`` loads and ``architectures``
    names a causal-LM class (its mapped class, or any ``*ForCausalLM``)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - very old transformers
        return False
    mapped = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if mapped is None:
        return False
    names = {mapped} if isinstance(mapped, str) else set(mapped)
    return any(a in names or a.endswith("ForCausalLM") for a in architectures)


def model_family(
    model: Any = DEFAULT_MODEL_NAME,
    *,
    family: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    cache_dir: Any = None,
) -> str:
    """The family :func:`load_adapter` would use for ``model``, read from its config without loading
    weights: ``"text"`` for a text-only causal LM, a multimodal family otherwise. Accepts what
    :func:`load_adapter` accepts (a ready adapter: its ``family``).

    Raises:
        ModelNotFoundError, ValueError: as :func:`load_adapter`.
    """
    if isinstance(model, ModelAdapter):
        return model.family
    if family is not None and family not in ADAPTERS:
        raise ValueError(f"unknown model family {family!r}; supported: {supported_families()}")
    if isinstance(model, (str, os.PathLike)):
        source, offline = resolve_model_source(model, revision=revision, cache_dir=cache_dir)
        model_type = _model_type_of(source, trust_remote_code, offline)
        fam = family or family_for_model_type(model_type)
        archs = () if fam else _architectures_of(source, trust_remote_code, offline)
    else:
        model = model[0] if isinstance(model, tuple) else model
        model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
        archs = (type(model).__name__,)
    _check_forced_family(family, model_type)
    return family or family_for_model_type(model_type) or _generic_or_raise(model_type, archs)
