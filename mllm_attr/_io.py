"""Atomic file writes shared by every writer of the package (results, summaries, reports)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory renamed into
    place, so that a reader (or a crash) never sees a half-written file. Missing parent
    directories are created; the file gets the usual mode (``0o666 & ~umask``: 0644 under umask
    022), as any file the user writes; ``fsync`` flushes it to disk first.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = str(out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # masked by the umask
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"could not create a temporary file next to {out}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
