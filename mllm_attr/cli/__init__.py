"""The command line, ``mllm-attr``: one module per subcommand on top of the library.

=============  ===========================================================================
module         subcommand
=============  ===========================================================================
``explain``    ``mllm-attr explain``: generated tokens of one image and prompt
``diagnose``   ``mllm-attr diagnose``: POPE-style yes/no questions in bulk
``evaluate``   ``mllm-attr evaluate CONFIG``: a benchmark config (also ``eval/run.py``)
``report``     ``mllm-attr report DIR ...``: an HTML page from saved explanations
``app``        ``mllm-attr app``: the interactive explorer in a local web page (Gradio extra)
``_common``    the shared flags (model, attribution) and their checks
=============  ===========================================================================

The library never imports this package. Building the parser imports neither torch nor
transformers, so ``mllm-attr --help`` and every argument error answer at once, before any model
is loaded.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._version import __version__
from . import app, diagnose, evaluate, explain, report
from ._common import (
    USER_ERRORS,
    ArgumentError,
    Parser,
    add_explainer_args,
    add_model_args,
    add_threads_arg,
    apply_threads_arg,
    explainer_from_args,
    load_labels_file,
    load_masks_file,
    load_model_from_args,
    warnings_once,
)

#: The subcommands, in ``--help`` order: each module's ``add_subcommand(subparsers)``.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    explain.add_subcommand,
    diagnose.add_subcommand,
    evaluate.add_subcommand,
    report.add_subcommand,
    app.add_subcommand,
)


def build_parser() -> Parser:
    """The ``mllm-attr`` parser: ``explain``, ``diagnose``, ``evaluate``, ``report`` and ``app``."""
    parser = Parser(
        prog="mllm-attr", description="Explain which image regions a multimodal LLM's generated tokens rely on."
    )
    parser.add_argument("--version", action="version", version=f"mllm-attr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in SUBCOMMANDS:
        add(sub)
    for command in sub.choices.values():
        if not any("--threads" in a.option_strings for a in command._actions):
            add_threads_arg(command)
    return parser


def _quiet_third_party() -> None:
    """CLI only (never the library): silence transformers' loading bars and notices under --quiet."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    A user error (one of :data:`USER_ERRORS`) is printed as one line and gives exit code 2.
    Each warning is shown once per command (:func:`~mllm_attr.cli._common.warnings_once`).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentError as exc:
        print(f"mllm-attr: error: {exc}", file=sys.stderr)
        return 2
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "quiet", False):
        _quiet_third_party()
    try:
        apply_threads_arg(args)
        with warnings_once():
            return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"mllm-attr: error: {msg}", file=sys.stderr)
        return 2


__all__ = [
    "SUBCOMMANDS",
    "ArgumentError",
    "USER_ERRORS",
    "add_explainer_args",
    "add_model_args",
    "build_parser",
    "explainer_from_args",
    "load_labels_file",
    "load_masks_file",
    "load_model_from_args",
    "main",
]
