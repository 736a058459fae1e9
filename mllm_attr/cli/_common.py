"""Argument helpers shared by the subcommands: model and attribution flags, their checks, and
the readers of user label maps / masks.

Everything here answers without importing torch or transformers: argument errors come before
any model is loaded (heavy imports happen inside the functions that load or run a model).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..mask import FILLS
from ..search import SEARCHES
from ..segment import SEGMENTERS

logger = logging.getLogger("mllm_attr")


class ArgumentError(Exception):
    """A command-line argument the parser refused (reported as one ``mllm-attr: error:`` line)."""


class OncePerRun(logging.Filter):
    """A handler filter that lets each warning through once: a record of level WARNING or above
    whose logger, level and text were already shown is dropped (an image loaded twice in one
    command warns once that it was downscaled). Lower levels always pass."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


@contextlib.contextmanager
def warnings_once() -> Iterator[None]:
    """For one command: every handler of the root logger gets its own :class:`OncePerRun` filter
    (one per handler: a record goes through each of them), removed again on exit, so each command,
    and each in-process ``main()`` call, starts afresh."""
    filters = [(handler, OncePerRun()) for handler in logging.getLogger().handlers]
    for handler, once in filters:
        handler.addFilter(once)
    try:
        yield
    finally:
        for handler, once in filters:
            handler.removeFilter(once)


#: Exceptions that are the user's input, reported as one line (exit code 2), never a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ArgumentError,
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    KeyError,
)


def parse_indices(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3 or 3,4; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3 or 3,4; got {text!r}")
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected token indices >= 0; got {text!r}")
    return values


def int_at_least(minimum: int, name: str | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``; the error reads like the API's
    (``n_regions must be >= 2; got 1``) when ``name`` is given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            what = f"{name} must be an integer >= {minimum}" if name else f"expected an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"{what}; got {text!r}") from None
        if value < minimum:
            what = f"{name} must be >= {minimum}" if name else f"expected an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"{what}; got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def non_negative_float(name: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number >= 0 (``lambda1 must be a finite number >= 0; got -1``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be a finite number >= 0; got {text}")
        return value

    parse.__name__ = "number >= 0"
    return parse


def fraction(text: str) -> float:
    """An argparse ``type``: a number in ``(0, 1]``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0.0 < value <= 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1]; got {text}")
    return value


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are raised (:class:`ArgumentError`) instead of
    printing the usage and exiting, so that :func:`mllm_attr.cli.main` reports every user error
    the same way: one line, exit code 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ArgumentError(f"{message} (see {self.prog} --help)")


class DeprecatedAlias(argparse.Action):
    """An old flag spelling kept for existing scripts: stores into the new flag's ``dest`` and
    warns on stderr once per use (``--regions`` -> ``--n-regions``)."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, type: Any = None, **kwargs: Any):
        kwargs.setdefault("help", argparse.SUPPRESS)
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, type=type, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"mllm-attr: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


class StoreGiven(argparse.Action):
    """``store``, and ``<dest>_given = True`` on the namespace: whether the flag was on the command
    line at all (a subcommand whose default depends on its input tells "not given" from the default)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def add_alias(group: Any, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Register ``old`` as a hidden, deprecated spelling of ``new`` (same ``dest``)."""
    group.add_argument(old, action=DeprecatedAlias, dest=dest, new=new, **kwargs)


#: ``--fast-path`` value -> the ``fast_path`` argument of the Explainer / scorer.
FAST_PATH_FLAGS: dict[str, str | bool] = {"auto": "auto", "on": True, "off": False}


#: What np.load raises on a corrupt, truncated or pickled file (allow_pickle=False).
_NPY_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _npy_path(path: str, flag: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} file not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"{flag}: expected a file, got a directory: {str(p)!r}")
    return p


def load_labels_file(path: str, flag: str = "--labels") -> np.ndarray:
    """Read a label map saved with ``np.save`` (``.npy``; pickles are refused).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable / corrupt, pickled, or an ``.npz`` archive instead of one array.
    """
    p = _npy_path(path, flag)
    try:
        data = np.load(p, allow_pickle=False)
    except _NPY_ERRORS as exc:
        raise ValueError(f"{flag}: could not read {str(p)!r} as a .npy array (np.save, no pickles): {exc}") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise ValueError(
            f"{flag}: {str(p)!r} is an .npz archive; expected a .npy file holding one int[H, W] label map "
            "(np.save); boolean masks go in --masks"
        )
    return data


def load_masks_file(path: str, flag: str = "--masks") -> list[np.ndarray]:
    """Read boolean masks from an ``.npz`` (``np.savez``; pickles are refused).

    Every array in the archive is one ``bool`` (or 0/1) ``[H, W]`` mask, taken in the archive's
    order; or the archive (or a ``.npy`` file) holds one ``[N, H, W]`` array.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable / corrupt, pickled, empty, or arrays that are not 2-D masks.
    """
    p = _npy_path(path, flag)
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays = [("array", data)]
        else:
            with data:
                arrays = [(key, data[key]) for key in data.files]
    except _NPY_ERRORS as exc:
        raise ValueError(
            f"{flag}: could not read {str(p)!r} as an .npz of masks (np.savez, no pickles): {exc}"
        ) from None
    if not arrays:
        raise ValueError(f"{flag}: {str(p)!r} holds no arrays; expected boolean [H, W] masks")
    if len(arrays) == 1 and arrays[0][1].ndim == 3:
        return list(arrays[0][1])
    masks = []
    for key, arr in arrays:
        if arr.ndim != 2:
            raise ValueError(
                f"{flag}: array {key!r} in {str(p)!r} has shape {arr.shape}; expected one [H, W] mask per array, "
                "or a single [N, H, W] array"
            )
        masks.append(arr)
    return masks


def segments_from_args(args: argparse.Namespace, loaded: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The label map named by ``--labels`` / ``--masks``, validated against the loaded image
    (``(None, {})`` when neither is given), and a note on where it came from."""
    from ..explainer import check_labels_for_image, downscale_hint
    from ..segment import masks_to_labels

    if getattr(args, "labels", None) is not None:
        raw = load_labels_file(args.labels)
        check_labels_for_image(raw, loaded, what=f"--labels {args.labels}")  # the Explainer checks (and notes) again
        return raw, {"labels_file": str(args.labels)}
    if getattr(args, "masks", None) is not None:
        masks = load_masks_file(args.masks)
        shape = (int(loaded.array.shape[0]), int(loaded.array.shape[1]))
        try:
            labels = masks_to_labels(masks, shape=shape)
        except (ValueError, TypeError) as exc:
            hint = downscale_hint(loaded)
            msg = f"--masks {args.masks}: {exc}" + (f"; {hint}" if hint and "shape" in str(exc) else "")
            raise type(exc)(msg) from None
        remainder = int(labels.max()) == len(masks)
        return labels, {"masks_file": str(args.masks), "n_masks": len(masks), "remainder_region": remainder}
    return None, {}


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch CPU threads (default: the free cores, see :mod:`mllm_attr.threads`)."""
    p.add_argument(
        "--threads",
        type=int_at_least(1, "--threads"),
        default=None,
        help="torch CPU threads (default: the machine's free cores, never oversubscribing a busy machine)",
    )


def apply_threads_arg(args: argparse.Namespace) -> int:
    """Apply ``--threads`` (auto when absent) to torch; returns the count.

    Torch is not imported for it (argument errors must answer at once): when torch is not loaded
    yet, ``OMP_NUM_THREADS`` is set instead, which torch reads when it starts (a value the user
    exported stands unless ``--threads`` is given).
    """
    from ..threads import THREAD_ENV_VARS, auto_threads, set_threads

    threads = getattr(args, "threads", None)
    if "torch" in sys.modules:
        return set_threads(threads)
    if threads is None:
        if any(os.environ.get(v, "").strip() for v in THREAD_ENV_VARS):
            return int(os.environ.get("OMP_NUM_THREADS") or os.environ["MKL_NUM_THREADS"])
        threads = auto_threads()
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    return int(threads)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the "model" argument group (``--model``, ``--family``, ``--dtype``, quantisation, ...) to ``p``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=None,
        help="hub id, local directory, or shapes-llava (the embedded model, loaded offline; the default)",
    )
    g.add_argument("--family", default=None, help="force a model family (default: read from the config)")
    g.add_argument("--dtype", default="auto", help="float32 | float16 | bfloat16 | auto")
    g.add_argument("--device-map", default=None, help='e.g. "auto" (accelerate) or "cpu"')
    g.add_argument("--load-in-4bit", action="store_true", help="bitsandbytes 4-bit")
    g.add_argument("--load-in-8bit", action="store_true", help="bitsandbytes 8-bit")
    g.add_argument(
        "--trust-remote-code", action="store_true", help="allow model repos to run their own code (off by default)"
    )


def load_model_from_args(args: argparse.Namespace) -> Any:
    """Load the adapter named by ``--model`` and the other model arguments (default: the shipped shapes-llava model).

    A ``--model`` path that does not exist, or a hub id that is not cached while the hub is
    unreachable, fails within seconds (:class:`~mllm_attr.adapters.ModelNotFoundError`, a
    ``FileNotFoundError``: one error line, exit code 2).
    """
    from ..adapters import load_adapter
    from ..assets import DEFAULT_MODEL_NAME

    model = args.model or DEFAULT_MODEL_NAME
    return load_adapter(
        model,
        family=args.family,
        dtype=args.dtype,
        device_map=args.device_map,
        load_in_4bit=args.load_in_4bit,
        load_in_8bit=args.load_in_8bit,
        trust_remote_code=args.trust_remote_code,
    )


def add_explainer_args(p: argparse.ArgumentParser, *, n_regions: int = 64, n_regions_help: str | None = None) -> None:
    """Add the "attribution" argument group (regions, segmenter, fill, search, weights, budget, ...) to ``p``.

    ``args.n_regions_given`` says whether ``--n-regions`` was on the command line (a subcommand
    whose default depends on its input, ``n_regions_help`` saying so, reads it)."""
    g = p.add_argument_group("attribution")
    g.add_argument(
        "--n-regions",
        dest="n_regions",
        action=StoreGiven,
        type=int_at_least(2, "n_regions"),
        default=n_regions,
        help=n_regions_help or f"requested number of regions (default {n_regions})",
    )
    p.set_defaults(n_regions_given=False)
    add_alias(g, "--regions", "--n-regions", "n_regions", type=int_at_least(2, "n_regions"))
    g.add_argument("--segmenter", choices=SEGMENTERS, default="slic")
    g.add_argument("--fill", choices=FILLS, default="black", help="what hidden regions show (default black)")
    add_alias(g, "--baseline", "--fill", "fill", choices=FILLS)
    g.add_argument("--search", choices=sorted(SEARCHES), default="greedy")
    g.add_argument(
        "--search-option",
        dest="search_options",
        action="append",
        type=search_option_pair,
        default=None,
        metavar="KEY=VALUE",
        help="an option of the search, repeatable (e.g. --search scan --search-option forward_share=0.2)",
    )
    g.add_argument(
        "--lambda1", type=non_negative_float("lambda1"), default=1.0, help="weight of insight/sufficiency (default 1)"
    )
    g.add_argument("--lambda2", type=non_negative_float("lambda2"), default=1.0, help="weight of necessity (default 1)")
    g.add_argument(
        "--batch-size",
        type=int_at_least(1, "batch_size"),
        default=None,
        help="images per forward (default: from free memory)",
    )
    g.add_argument(
        "--max-forwards",
        type=int_at_least(2, "max_forwards"),
        default=None,
        help="hard budget of images scored; at least 2 x regions (full, blank and both curves)",
    )
    g.add_argument("--seed", type=int_at_least(0, "seed"), default=0)
    g.add_argument("--max-new-tokens", type=int_at_least(1, "max_new_tokens"), default=64)
    g.add_argument(
        "--fast-path",
        choices=list(FAST_PATH_FLAGS),
        default="auto",
        help="scorer fast path: auto (use it when its probe passes), on (require it), "
        "off (the image processor on every candidate)",
    )


def search_option_pair(text: str) -> tuple[str, float | int]:
    """``KEY=VALUE`` -> ``(key, number)``: an integer when VALUE is one, else a float."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. forward_share=0.2); got {text!r}")
    try:
        return key, int(value)
    except ValueError:
        pass
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the value of {key} must be a number; got {value!r}") from None


def search_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--search-option`` pairs as a dict, checked for ``--search`` (a key given twice is an error)."""
    from ..search import search_options

    pairs = getattr(args, "search_options", None) or []
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"--search-option {key} is given twice")
        out[key] = value
    try:
        return search_options(args.search, out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--search-option: {exc}") from None


def check_explainer_args(args: argparse.Namespace, loaded: Any = None, labels: np.ndarray | None = None) -> None:
    """Every check of the attribution flags that can be made before the model is loaded.

    With the loaded image: the region count against its pixels and, with ``--max-forwards``,
    the budget against the regions the segmentation gives (the segmenter is run once here; it is
    deterministic, so the explanation gets the same map).

    Raises:
        ValueError: both lambdas 0, more regions than pixels, or a budget below 2 x regions.
    """
    from ..search import replay_cost

    if args.lambda1 == 0 and args.lambda2 == 0:
        raise ValueError("--lambda1 and --lambda2 are both 0; the objective would be constant")
    search_options_from_args(args)
    if loaded is None:
        return
    h, w = int(loaded.array.shape[0]), int(loaded.array.shape[1])
    if labels is None and args.n_regions > h * w:
        raise ValueError(f"--n-regions {args.n_regions} is more than the {w}x{h}={h * w} pixels of the image")
    if args.max_forwards is None:
        return
    if labels is not None:
        n = int(np.unique(labels).size)
    else:
        from ..segment import segment

        n = segment(loaded.array, args.n_regions, args.segmenter).n_regions
    needed = 2 + replay_cost(n - 1)
    if args.max_forwards < needed:
        raise ValueError(
            f"--max-forwards: max_forwards={args.max_forwards} is too small for {n} regions: the full and blank "
            f"images plus the insertion and deletion curves alone take {needed} forwards (2 x regions); raise it or "
            "lower --n-regions"
        )


def explainer_from_args(
    adapter: Any, args: argparse.Namespace, *, explainer_class: Any = None, image_options: bool = True, **extra: Any
) -> Any:
    """An explainer for ``adapter`` built from the parsed arguments, plus ``extra``: an
    :class:`~mllm_attr.explainer.Explainer` unless ``explainer_class`` names another (the
    multi-image and prompt-word explainers take the same options); ``image_options=False``
    leaves out the segmentation and fill options (a text-only model has no image)."""
    from ..explainer import Explainer

    if image_options:
        extra = {"n_regions": args.n_regions, "segmenter": args.segmenter, "fill": args.fill, **extra}
    return (explainer_class or Explainer)(
        adapter,
        search=args.search,
        search_options=search_options_from_args(args),
        lambda1=args.lambda1,
        lambda2=args.lambda2,
        batch_size=args.batch_size,
        max_forwards=args.max_forwards,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        show_progress=not args.quiet,
        fast_path=FAST_PATH_FLAGS[getattr(args, "fast_path", "auto")],
        **extra,
    )
