"""eval/gpu_benchmark.py (full-size random-weight twins on a GPU): at tiny scale on the CPU it runs
every step and writes every field, the recalled published configurations give the published
model sizes (counted on the meta device), and without a GPU the full-size run is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_eval_script

from mllm_attr.testing.twins import missing_packages

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "eval" / "gpu_benchmark.py"

# The twins' builders read the tokenizer files of the packages each twin declares.
pytestmark = pytest.mark.skipif(
    bool(missing_packages("qwen2_5_vl") + missing_packages("llava")),
    reason="the Qwen2.5-VL and LLaVA twins need the tokenizer packages of the test extra",
)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_tiny_run_writes_every_field(tmp_path, one_thread):
    mod = load_eval_script("gpu_benchmark")
    out = tmp_path / "gpu.json"
    assert mod.main(["--tiny", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["device_info"]["device"] == "cpu"
    assert data["dtype"] == "float32" and data["tiny"] is True
    assert set(data["results"]) == {"qwen2_5_vl", "llava"}
    for family, r in data["results"].items():
        model = r["model"]
        # The published configuration (recalled) gives the published model size within 2 %.
        assert model["full_size_parameters_meta"] == pytest.approx(mod.PUBLISHED_SIZE[family], rel=0.02)
        assert model["parameters"] < 1e8  # the small twin ran, not the full model
        assert model["vocab_rows"] == mod.PUBLISHED[family]["text"]["vocab_size"]
        assert r["shape"]["image_tokens"] == {"qwen2_5_vl": 64, "llava": 576}[family]
        assert [s["batch_size"] for s in r["batch_scaling"]] == [2, 4]
        for s in r["batch_scaling"]:
            assert s["ms_per_image"] > 0 and s["images_per_second"] > 0
            assert s["pixel_assembly_ms_per_image"] >= 0 and s["forward_ms_per_image"] > 0
            assert s["processor_pixels_ms_per_image"] > 0
            assert "peak_memory_bytes" in s and s["peak_memory_bytes"] is None  # no GPU here
        assert set(r["explanations"]) == {"greedy", "hierarchical"}
        greedy = r["explanations"]["greedy"]
        n = greedy["n_regions"]
        assert n == 4 and greedy["forwards"] == n * (n + 1) and greedy["batch_size"] == 4
        for e in r["explanations"].values():
            assert e["seconds"] > 0 and e["images_per_second"] > 0
            for key in ("peak_memory_bytes", "one_forward_peak_memory_bytes", "peak_over_one_forward"):
                assert key in e
            assert e["fast_path"]["used"] is True
        for way in ("naive", "research"):
            s = r["naive_sample"][way]
            assert s["forwards"] == 3 and s["ms_per_forward"] > 0
            assert s["seconds_per_explanation_extrapolated"] == pytest.approx(s["ms_per_forward"] / 1000 * n * (n + 1))
            assert "lm_head" in s["breakdown_ms_per_forward"]
        assert r["speedup"]["naive_over_greedy"] > 0
    assert "| llava-hf/llava-1.5-7b-hf | greedy |" in data["table_markdown"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the full run would start")
def test_the_full_size_run_needs_a_gpu(tmp_path, capsys):
    mod = load_eval_script("gpu_benchmark")
    out = tmp_path / "gpu.json"
    assert mod.main(["--out", str(out)]) == 2
    assert "need a CUDA GPU" in capsys.readouterr().err
    assert not out.exists()
