"""The thread count: auto never oversubscribes, explicit counts are used and restored, the CLI flag."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mllm_attr import threads as th


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "cpus,load,expected",
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.2, 1), (2, 7.0, 1), (16, 3.2, 13), (1, 0.0, 1)],
)
def test_free_cpus_subtracts_the_busy_cores(cpus, load, expected):
    assert th.free_cpus(cpus=cpus, load=load) == expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_bad_thread_counts_are_errors(bad):
    with pytest.raises(ValueError, match="threads must be a positive int or 'auto'"):
        th.check_threads(bad)


def test_auto_never_exceeds_what_torch_is_set_to(torch_threads, monkeypatch):
    for var in th.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(th, "auto_threads", lambda: 8)
    torch.set_num_threads(1)
    assert th.resolve_threads("auto") == 1
    torch.set_num_threads(2)
    monkeypatch.setattr(th, "auto_threads", lambda: 1)  # a busy machine: fewer than torch's count
    assert th.resolve_threads(None) == 1
    assert th.resolve_threads(2) == 2  # explicit wins


def test_an_exported_thread_count_stands_under_auto(torch_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(th, "auto_threads", lambda: 1)
    torch.set_num_threads(2)
    assert th.resolve_threads("auto") == 2


def test_limit_threads_sets_and_restores(torch_threads):
    torch.set_num_threads(2)
    with th.limit_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), th.limit_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_explainer_runs_with_its_threads_and_records_them(torch_threads):
    from mllm_attr import Explainer
    from mllm_attr.testing.fake import make_fake_adapter

    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, size=(24, 24, 3), dtype=np.uint8)
    adapter = make_fake_adapter(image, {"cat": np.ones((24, 24))}, answer="cat")
    seen: list[int] = []
    score = adapter.scorer

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return score(*args, **kwargs)

    adapter.scorer = spy
    torch.set_num_threads(2)
    expl = Explainer(adapter, n_regions=4, segmenter="grid", threads=1)(image, prompt="q", target=0)
    assert seen == [1] and torch.get_num_threads() == 2
    assert expl.settings["threads"] == {"requested": 1, "used": 1}
    with pytest.raises(ValueError, match="threads"):
        Explainer(adapter, threads=0)


def test_every_command_takes_threads_and_checks_it():
    from mllm_attr.cli import build_parser, main

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert any("--threads" in a.option_strings for a in command._actions), name
    assert main(["explain", "--threads", "0", "--image", "x.png", "--prompt", "q"]) == 2


def test_cli_threads_reach_torch_without_importing_it_early(tmp_path):
    """--threads is applied through OMP_NUM_THREADS when torch is not loaded yet; torch then uses it."""
    code = (
        "import sys\n"
        "from mllm_attr.cli._common import apply_threads_arg\n"
        "import argparse\n"
        "n = apply_threads_arg(argparse.Namespace(threads=1, command='explain'))\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "print(n, torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in th.THREAD_ENV_VARS}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]
