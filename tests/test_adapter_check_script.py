"""`adapters/check.py` (the conformance check users run on their own checkpoints) passes on the
shipped model and on a tiny Qwen2.5-VL saved to a directory, and fails loudly on a non-model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "adapters" / "check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_check_script_passes_on_the_shipped_model():
    from mllm_attr.assets import default_model_path

    res = _run(str(default_model_path()), "--prompt", "What color is the square?", "--regions", "4")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "FAIL" not in res.stdout and res.stdout.count("PASS") >= 6, res.stdout


@pytest.mark.slow
def test_check_script_passes_on_a_tiny_qwen2_5_vl(tmp_path):
    from mllm_attr.testing.tiny_models import save_tiny

    model = save_tiny("qwen2_5_vl", tmp_path / "qwen")
    res = _run(str(model), "--regions", "4")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "FAIL" not in res.stdout, res.stdout


def test_check_script_fails_on_a_directory_that_is_not_a_model(tmp_path):
    res = _run(str(tmp_path))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
