"""The README's examples run exactly as written, in order, with nothing injected (they must never rot).

Every ```python block runs in one namespace, top to bottom, in an empty working directory: the
first block loads the embedded model itself, later blocks use what earlier ones defined, as a
reader pasting them into one session would. The ```bash blocks of the CLI section run through
``bash -e`` in a folder laid out like the repository root (the example image and the evaluation
configs), with the installed ``mllm-attr`` on the PATH and no hub-offline variable set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str, text: str = README) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced block of ``lang``, in order."""
    out = []
    for m in re.finditer(rf"^```{lang}\n(.*?)^```$", text, flags=re.S | re.M):
        out.append((text[: m.start()].count("\n") + 1, m.group(1)))
    return out


def section(heading: str) -> str:
    """The README text from ``heading`` to the next heading of the same level."""
    start = README.index(heading + "\n")
    level = heading.split(" ")[0]
    m = re.search(rf"^{level} ", README[start + len(heading) :], flags=re.M)
    return README[start : start + len(heading) + (m.start() if m else len(README))]


def test_the_readme_has_the_blocks_these_tests_run():
    assert len(blocks("python")) == 7
    assert len(blocks("bash", section("## CLI"))) == 2
    # Nothing but the synopsis is schematic: a block with placeholders is ```text, never ```bash.
    for _, code in blocks("bash"):
        assert not re.search(r"\b(ID_OR_DIR|IMG_DIR|FILE\.jsonl|OUT_DIR)\b", code), code


@pytest.mark.slow
def test_python_blocks_run_as_written_in_order(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    for line, code in blocks("python"):
        exec(compile(code, f"README.md:{line}", "exec"), ns)  # noqa: S102 - our own README
    # What the blocks say they produce.
    assert (tmp_path / "out" / "explanation.json").is_file()
    assert (tmp_path / "report.html").is_file()
    assert ns["expl"].target_text.strip() == "diamond"
    assert ns["saliency"].shape == ns["expl"].image.shape[:2]
    assert [r["status"] for r in ns["records"]] == ["ok", "ok"]
    assert len(repr(ns["expl"])) < 400


@pytest.mark.slow
def test_cli_blocks_run_as_written(tmp_path):
    (tmp_path / "mllm_attr" / "assets").mkdir(parents=True)
    shutil.copy(ROOT / "mllm_attr" / "assets" / "example.png", tmp_path / "mllm_attr" / "assets")
    shutil.copytree(ROOT / "eval" / "configs", tmp_path / "eval" / "configs")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    for line, code in blocks("bash", section("## CLI")):
        run = subprocess.run(
            ["bash", "-e", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert run.returncode == 0, f"README.md:{line}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    for rel in (
        "out/circle/explanation.json",
        "out/diamond/heatmap.png",
        "out/report.html",
        "runs/shapes/object/report.html",
        "runs/diag.jsonl",
        "runs/diag.summary.json",
        "bulk_out/records.jsonl",
        "bulk_out/report.html",
        "bulk_out/desc/explanation.json",
    ):
        assert (tmp_path / rel).is_file(), f"the README's CLI examples did not write {rel}"
