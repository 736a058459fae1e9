"""Lazy package exports (PEP 562): a package names what it offers and imports the submodule
that defines a name only when the name is first used, so ``import mllm_attr`` stays light
(no torch, no transformers) until an adapter or an analysis is actually touched."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in ``package + exports[name]``
    (a relative module path such as ``".explainer"``)."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        import sys

        setattr(sys.modules[package], name, value)  # cache: the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        import sys

        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
