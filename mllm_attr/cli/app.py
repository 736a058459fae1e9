"""``mllm-attr app``: the interactive explorer (:mod:`mllm_attr.app`) in a local web page.

Gradio is the optional extra ``pip install "mllm-attr[app]"``; without it the command says so
in one line (exit code 2) before any model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from ._common import add_explainer_args, add_model_args, check_explainer_args, int_at_least, load_model_from_args

#: The explorer's region default (mllm_attr.app.DEFAULT_N_REGIONS; not imported: --help stays light).
_N_REGIONS = 25


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr app`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "app",
        help="the interactive explorer in a local web page: upload an image, click a token, see its map (needs the "
        '"app" extra)',
        description="Serve the interactive explorer: upload an image, type a prompt, click a generated token and see "
        "its map, insertion / deletion curves and modality label. Runs offline on the embedded model by default; "
        'needs Gradio: pip install "mllm-attr[app]".',
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--port",
        type=int_at_least(1, "--port"),
        default=None,
        help="port (default: the first free one from 7860)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the address")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_model_args(p)
    add_explainer_args(p, n_regions=_N_REGIONS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr app``: check Gradio and the flags, load the model, serve until interrupted."""
    if args.port is not None and args.port > 65535:
        raise ValueError(f"--port must be <= 65535; got {args.port}")
    check_explainer_args(args)
    try:
        from ..app import require_gradio

        require_gradio()
    except ImportError as exc:
        print(f"mllm-attr: error: {exc}", file=sys.stderr)
        return 2
    from ..app import Explorer, launch
    from ._common import FAST_PATH_FLAGS

    adapter = load_model_from_args(args)
    explorer = Explorer(
        adapter,
        n_regions=args.n_regions,
        search=args.search,
        max_new_tokens=args.max_new_tokens,
        explainer_options={
            "segmenter": args.segmenter,
            "fill": args.fill,
            "lambda1": args.lambda1,
            "lambda2": args.lambda2,
            "batch_size": args.batch_size,
            "max_forwards": args.max_forwards,
            "seed": args.seed,
            "fast_path": FAST_PATH_FLAGS[args.fast_path],
        },
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the server
        launch(explorer, host=args.host, port=args.port, quiet=args.quiet)
    return 0
