"""Directories and record files the toolkit writes get the usual permissions (0o777 / 0o666
masked by the umask), not the private 0700 of tempfile.mkdtemp."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from mllm_attr import Explainer
from mllm_attr.store import JsonlWriter, make_temp_dir
from mllm_attr.testing.fake import make_fake_adapter


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o755), (0o002, 0o775), (0o077, 0o700)])
def test_saved_explanation_directory_gets_the_usual_mode(mask, expected, umask, tmp_path, rgb_image):
    umask(mask)
    adapter = make_fake_adapter(rgb_image, {"a": np.ones(rgb_image.shape[:2])})
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, prompt="q")
    out = expl.save(tmp_path / "out", heatmap=False)
    assert _mode(out) == expected
    again = expl.save(tmp_path / "out", overwrite=True, heatmap=False)  # the replacing path too
    assert _mode(again) == expected
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_make_temp_dir_is_new_unique_and_masked(umask, tmp_path):
    umask(0o022)
    made = {make_temp_dir(tmp_path, ".x-") for _ in range(20)}
    assert len(made) == 20 and all(p.is_dir() and p.name.startswith(".x-") for p in made)
    assert {_mode(p) for p in made} == {0o755}


def test_record_files_get_the_usual_mode(umask, tmp_path):
    umask(0o002)
    with JsonlWriter(tmp_path / "r.jsonl") as w:
        w.append({"a": 1})
    assert _mode(tmp_path / "r.jsonl") == 0o664


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_text_files_get_the_usual_mode(mask, expected, umask, tmp_path):
    from mllm_attr._io import write_text_atomic

    umask(mask)
    out = write_text_atomic(tmp_path / "summary.json", "{}\n")
    assert _mode(out) == expected and out.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left
