"""How many CPU threads torch may use for an explanation, without oversubscribing the machine.

An explanation is thousands of small forwards; on a CPU each one splits its matrix products over
torch's intra-op threads. Torch starts with one thread per physical core, which is right on an
idle machine and badly wrong on a busy one: on a 2-core machine shared with another job, two
threads were measured 10-20x slower per explanation than one (the threads wait for each other on
cores that are not free), while on the idle machine two threads were about 2x faster than one
(``eval/threads_benchmark.py`` measures both on the machine at hand).

The default ("auto") is therefore the number of cores this process may run on minus the cores
other work is keeping busy (the 1-minute load average), at least 1, and never more than torch is
already set to (so a ``torch.set_num_threads(1)`` or ``OMP_NUM_THREADS=1`` of the user's stands).
It is decided once per process (the load average later includes our own work) and logged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: Environment variables that fix the thread count for the whole process; "auto" then keeps it.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return 0.0


def free_cpus(*, cpus: int | None = None, load: float | None = None) -> int:
    """``cpus`` (default: :func:`available_cpus`) minus the cores ``load`` keeps busy, at least 1.

    ``load`` defaults to the 1-minute load average; a fractional load rounds to the nearest core.
    """
    cpus = available_cpus() if cpus is None else int(cpus)
    load = _load_average() if load is None else float(load)
    return max(1, min(cpus, int(cpus - load + 0.5)))


@functools.lru_cache(maxsize=1)
def auto_threads() -> int:
    """The auto choice, decided once per process: :func:`free_cpus` now, logged at INFO."""
    cpus = available_cpus()
    load = _load_average()
    n = free_cpus(cpus=cpus, load=load)
    logger.info("threads: %d (auto: %d CPUs available, load average %.2f)", n, cpus, load)
    return n


def check_threads(threads: int | str | None, name: str = "threads") -> int | None:
    """``None`` / ``"auto"`` -> ``None`` (auto); a positive int -> itself; anything else is an error."""
    if threads is None or threads == "auto":
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name} must be a positive int or 'auto', got {threads!r}")
    return threads


def resolve_threads(threads: int | str | None = None) -> int:
    """The thread count to run with: ``threads`` if given, else the auto choice (module docstring)."""
    import torch

    explicit = check_threads(threads)
    if explicit is not None:
        return explicit
    current = torch.get_num_threads()
    if any(os.environ.get(v, "").strip() for v in THREAD_ENV_VARS):
        return current
    return max(1, min(current, auto_threads()))


def set_threads(threads: int | str | None = None) -> int:
    """Set torch's intra-op thread count for the process (``None`` / ``"auto"``: the auto choice)."""
    import torch

    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def limit_threads(threads: int | str | None = None) -> Iterator[int]:
    """Run a block with :func:`resolve_threads` ``(threads)`` torch threads, then restore the old count."""
    import torch

    before = torch.get_num_threads()
    n = resolve_threads(threads)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


__all__ = [
    "auto_threads",
    "available_cpus",
    "check_threads",
    "free_cpus",
    "limit_threads",
    "resolve_threads",
    "set_threads",
]
