"""The one JSON-lines record store of the package: crash-safe appends, tolerant reads, resume.

Every bulk run (``mllm-attr evaluate``'s shards, ``mllm-attr diagnose``'s POPE file) writes one
JSON object per line through :class:`JsonlWriter` and reads it back with :func:`read_jsonl`:

* a line is written with one ``os.write`` and then ``fsync``-ed, so a crash leaves at most one
  torn LAST line;
* opening a writer cuts such a torn tail first (:func:`repair_tail`), so the next record never
  glues onto half a line; readers skip it with a warning;
* values are made JSON-safe (:func:`jsonable`: numpy scalars and arrays, paths, non-finite floats
  as ``null``) and keys sorted, so equal records are equal bytes;
* resuming is "skip the keys already on disk" (:func:`done_keys`), so a rerun neither loses nor
  duplicates a record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars / arrays, tuples and paths turned into JSON types; NaN and
    infinities become ``None`` (JSON has no such numbers)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new, empty directory ``parent/<prefix><random>`` for output that is renamed into place.

    Unlike :func:`tempfile.mkdtemp` (mode 0700) it gets the permissions of any directory the
    user makes, ``0o777 & ~umask`` (0755 under the usual umask 022), without touching the
    process's umask.

    Raises:
        FileExistsError: 100 random names in a row were taken.
    """
    for _ in range(100):
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path)  # mode 0o777, masked by the umask
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a temporary directory {prefix}* in {str(parent)!r}: every name was taken")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line (sorted keys, non-finite floats as ``null``, trailing newline) as UTF-8."""
    return (json.dumps(jsonable(record), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def repair_tail(path: str | os.PathLike) -> int:
    """Truncate a torn last line (no newline, or not JSON) from a JSON-lines file; return bytes cut."""
    p = Path(path)
    if not p.exists():
        return 0
    data = p.read_bytes()
    if not data:
        return 0
    keep = len(data)
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    else:
        last_start = data.rfind(b"\n", 0, len(data) - 1) + 1
        try:
            json.loads(data[last_start:].decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            keep = last_start
    cut = len(data) - keep
    if cut:
        logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", p, cut)
        with open(p, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return cut


class JsonlWriter:
    """Append-only JSON-lines writer: one ``os.write`` per full line, then ``fsync``.

    Opening repairs a torn tail first (:func:`repair_tail`), so an interrupted run's half line
    never glues onto the next record. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{str(self.path)!r} is a directory; expected a .jsonl file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # masked by the umask
        self.written = 0

    def append(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one JSON line (:func:`encode_record`) and fsync the file."""
        if self._fd < 0:
            raise ValueError(f"{self.path}: the writer is closed")
        view = memoryview(encode_record(record))
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.written += 1

    def close(self) -> None:
        """Close the file; further calls do nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike, *, what: str = "records") -> list[dict[str, Any]]:
    """The JSON objects of one JSON-lines file, in file order.

    A last line without a trailing newline, or that is not valid JSON, is the trace of an
    interrupted write: it is skipped with a warning (the file is not modified; the next
    :class:`JsonlWriter` on it cuts it). Blank lines are skipped.

    Raises:
        FileNotFoundError: no such file (the message says ``what`` was expected).
        ValueError: a line other than the last is not a JSON object (names the file and line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: expected a JSONL file of {what}; no such file")
    data = p.read_bytes()
    lines = data.split(b"\n")
    torn_tail = bool(data) and not data.endswith(b"\n")
    if data.endswith(b"\n"):
        lines = lines[:-1]
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(lines):
        last = i == len(lines) - 1
        if last and torn_tail:
            logger.warning("%s: dropping a torn last line (no newline; %d bytes)", p, len(raw))
            break
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if last:
                logger.warning("%s: dropping a torn last line (not JSON: %s)", p, exc)
                break
            raise ValueError(
                f"{p}: line {i + 1} is not valid JSON ({exc}); not a file of {what}, or corrupted"
            ) from None
        if not isinstance(rec, dict):
            raise ValueError(f"{p}: line {i + 1}: expected a JSON object per line; got {type(rec).__name__}")
        out.append(rec)
    return out


def done_keys(
    paths: Iterable[str | os.PathLike], key: Callable[[Mapping[str, Any]], Hashable], *, what: str = "records"
) -> set[Hashable]:
    """The keys of every record already written to the existing files among ``paths`` (for resuming)."""
    keys: set[Hashable] = set()
    for path in paths:
        if Path(path).is_file():
            keys.update(key(rec) for rec in read_jsonl(path, what=what))
    return keys


__all__ = ["JsonlWriter", "done_keys", "encode_record", "jsonable", "make_temp_dir", "read_jsonl", "repair_tail"]
