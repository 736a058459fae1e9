"""The README's Python examples run as written on the embedded model (they must never rot)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    m = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert m, f"no python block after {heading!r}"
    return m.group(1)


@pytest.fixture(scope="module")
def shapes():
    import torch

    from mllm_attr import Explainer, load_adapter
    from mllm_attr.assets import default_model_path
    from mllm_attr.data.shapes import make_scene, scene_rng

    torch.set_num_threads(1)
    adapter = load_adapter(default_model_path())
    scene = make_scene(
        scene_rng(3, "test", 0), split="test", require=["star", "circle"], exclude=["diamond"], max_objects=2
    )
    gen = adapter.generate(scene.image, "What color is the circle?", max_new_tokens=3)
    expl = Explainer(adapter, n_regions=16)(scene.image, gen, target=0)
    return {"adapter": adapter, "image": scene.image, "gen": gen, "positions": [0], "expl": expl}


@pytest.mark.slow
def test_analyses_block_runs(shapes):
    code = readme_block("### Analyses")
    ns = dict(shapes)
    exec(compile(code, "README.md:Analyses", "exec"), ns)  # noqa: S102 - our own README


@pytest.mark.slow
def test_baselines_block_runs(shapes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = readme_block("### Baselines, one protocol, reports")
    ns = dict(shapes)
    exec(compile(code, "README.md:Baselines", "exec"), ns)  # noqa: S102 - our own README
    assert ns["saliency"].shape == shapes["image"].shape[:2]
    assert np.isfinite(ns["scored"].insertion_auc())
    assert (tmp_path / "report.html").is_file()
