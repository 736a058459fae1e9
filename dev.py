#!/usr/bin/env python3
"""Project-local set-up and the two README commands, idempotent, stdlib only.

    python3 dev.py demo    # explain the example image with the embedded model -> ./demo_out/heatmap.png
    python3 dev.py test    # ruff, then the test suite (what .ci/run calls)

Both create ./.venv on first use and install the project with the pinned versions of
constraints.txt (a CPU build of torch; never the multi-GB CUDA wheels). Re-running is cheap:
the install is skipped while pyproject.toml and constraints.txt are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".mllm_attr_installed"


def _digest() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def ensure_venv() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - dev.py runs under any python3 and says what it needs
        sys.exit(f"Python >= 3.10 is needed; this is {sys.version.split()[0]}")
    if not PY.exists():
        _run([sys.executable, "-m", "venv", VENV])
    if STAMP.exists() and STAMP.read_text() == _digest():
        return
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", "constraints.txt"]
    # torch first, pinned, so that nothing later resolves a CUDA build.
    _run(pip + ["torch==2.13.0"])
    _run(pip + ["-e", ".[test,quant]"])
    STAMP.write_text(_digest())


def ensure_chromium() -> None:
    """Best effort: the HTML report test renders in Debian's chromium (skipped when absent)."""
    if shutil.which("chromium") or not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env, stdout=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"note: could not install chromium ({exc}); the browser test will be skipped", flush=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup"):
        print(__doc__)
        return 2
    ensure_venv()
    if argv[0] == "setup":
        return 0
    if argv[0] == "demo":
        extra = argv[1:] or ["--out", "demo_out", "--overwrite"]
        return subprocess.run([BIN / "mllm-attr", "explain", *extra], cwd=ROOT).returncode
    if not argv[1:]:  # the whole suite (CI): the linter first, configured in pyproject.toml
        lint = subprocess.run([BIN / "ruff", "check", "."], cwd=ROOT).returncode
        lint = lint or subprocess.run([BIN / "ruff", "format", "--check", "."], cwd=ROOT).returncode
        if lint:
            fix = ".venv/bin/ruff check --fix . && .venv/bin/ruff format ."
            print(f"ruff found problems (above): run `{fix}`", flush=True)
            return lint
    ensure_chromium()
    return subprocess.run([PY, "-m", "pytest", "-q", *argv[1:]], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
