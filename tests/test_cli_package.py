"""The command line as a package: flags named as in the API (old spellings kept, with a warning),
and every argument checked before a model is loaded (no torch imported for an argument error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mllm_attr.cli import ArgumentError, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _explain_args(*extra: str):
    return build_parser().parse_args(["explain", *extra])


def test_flags_carry_the_api_names():
    args = _explain_args("--n-regions", "9", "--fill", "blur")
    assert (args.n_regions, args.fill) == (9, "blur")
    defaults = _explain_args()
    assert (defaults.n_regions, defaults.fill) == (64, "black")
    # whether the flag was given: a video's default is 8 regions per frame, not 64
    assert defaults.n_regions_given is False and args.n_regions_given is True
    assert _explain_args("--regions", "7").n_regions_given is True
    explain_help = build_parser()._subparsers._group_actions[0].choices["explain"].format_help()
    assert "(default 64; with --video / --frames: 8 per frame)" in " ".join(explain_help.split())
    assert build_parser().parse_args(["diagnose", "--pope", "p", "--images", "i", "--out", "o"]).n_regions == 16


def test_old_spellings_still_work_and_warn(capsys):
    args = _explain_args("--regions", "7", "--baseline", "mean")
    assert (args.n_regions, args.fill) == (7, "mean")
    err = capsys.readouterr().err
    assert "--regions is deprecated; use --n-regions" in err
    assert "--baseline is deprecated; use --fill" in err
    assert "--regions" not in build_parser().format_help()  # hidden from --help


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-regions", "1"], "argument --n-regions: n_regions must be >= 2; got 1"),
        (["--regions", "1"], "argument --regions: n_regions must be >= 2; got 1"),
        (["--n-regions", "x"], "n_regions must be an integer >= 2; got 'x'"),
        (["--max-forwards", "1"], "max_forwards must be >= 2; got 1"),
        (["--batch-size", "0"], "batch_size must be >= 1; got 0"),
        (["--seed", "-1"], "seed must be >= 0; got -1"),
        (["--lambda1", "-0.5"], "lambda1 must be a finite number >= 0; got -0.5"),
        (["--lambda2", "nan"], "lambda2 must be a finite number >= 0; got nan"),
        (["--fill", "white"], "invalid choice: 'white'"),
        (["--target-index", "-1"], "expected token indices >= 0"),
    ],
)
def test_bad_flags_are_one_error_line(argv, message, capsys):
    with pytest.raises(ArgumentError, match="see mllm-attr explain --help"):
        _explain_args(*argv)
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mllm-attr: error: ") and message in err[-1]
    assert not any(line.startswith("usage:") for line in err)


def _run_cli(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter that reports whether torch got imported."""
    code = (
        "import sys\n"
        "from mllm_attr.cli import main\n"
        f"rc = main({argv!r})\n"
        "print('TORCH', 'torch' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )


def test_errors_that_need_the_image_come_before_the_model(tmp_path):
    # Both lambdas 0; more regions than pixels; a budget below 2 x regions: one line, exit 2,
    # no output directory, and torch never imported (the model was not loaded).
    from PIL import Image

    Image.fromarray(np.zeros((9, 10, 3), np.uint8)).save(tmp_path / "tiny.png")
    cases = [
        (["--lambda1", "0", "--lambda2", "0"], "--lambda1 and --lambda2 are both 0"),
        (["--image", "tiny.png", "--n-regions", "91"], "--n-regions 91 is more than the 10x9=90 pixels"),
        (
            ["--max-forwards", "10", "--n-regions", "16", "--segmenter", "grid"],
            "--max-forwards: max_forwards=10 is too small",
        ),
    ]
    for extra, message in cases:
        done = _run_cli(["explain", "--out", "out", *extra], tmp_path)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "TORCH False" in done.stdout
        assert not (tmp_path / "out").exists()


def test_diagnose_and_evaluate_check_inputs_before_the_model(tmp_path):
    done = _run_cli(["diagnose", "--pope", "missing.jsonl", "--images", ".", "--out", "d.jsonl"], tmp_path)
    assert done.returncode == 2 and "missing.jsonl" in done.stderr and "TORCH False" in done.stdout
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "task": {"kind": "nope"}}))
    done = _run_cli(["evaluate", "bad.json"], tmp_path)
    assert done.returncode == 2 and "TORCH False" in done.stdout, done.stderr
    assert not (tmp_path / "d.jsonl").exists()


def test_python_dash_m_runs_the_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mllm_attr.cli", "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and done.stdout.startswith("mllm-attr ")


def test_main_returns_two_on_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert capsys.readouterr().err.startswith("mllm-attr: error: ")
