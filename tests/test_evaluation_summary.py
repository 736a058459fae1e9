"""Summary tables, paired comparisons, resampled mean curves (hand-computed values)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mllm_attr.evaluation.runner import ShardWriter
from mllm_attr.evaluation.summary import (
    CURVE_GRID,
    mean_curves,
    plot_curves,
    resample_curve,
    summarize,
    to_markdown,
    write_outputs,
)


def _rec(sid: str, method: str, ins: float, dele: float, **extra: Any) -> dict[str, Any]:
    rec = {
        "name": "bench",
        "task": "repope",
        "sample_id": sid,
        "method": method,
        "status": "ok",
        "insertion_auc": ins,
        "deletion_auc": dele,
        "highest_confidence": ins + 0.1,
        "pointing_box": None,
        "pointing_mask": None,
        "forwards": 10,
        "seconds": 0.5,
        "labels_sha1": f"L{sid}",
        "curve_x": [0.0, 0.5, 1.0],
        "insertion_curve": [0.0, ins, 1.0],
        "deletion_curve": [1.0, dele, 0.0],
        "settings": {"model": {"path": "m"}},
    }
    rec.update(extra)
    return rec


@pytest.fixture
def records() -> list[dict[str, Any]]:
    return [
        _rec("1", "eagle", 0.8, 0.2, amcr=0.05, pointing_box=True, pointing_mask=True),
        _rec("2", "eagle", 0.6, 0.4, amcr=1.0, pointing_box=True, pointing_mask=False),
        _rec("3", "eagle", 0.7, 0.3, amcr=0.1),
        _rec("1", "random", 0.5, 0.5, amcr=0.5, pointing_box=False, pointing_mask=False),
        _rec("2", "random", 0.7, 0.3, amcr=1.0, pointing_box=True, pointing_mask=False),
        {"name": "bench", "task": "repope", "sample_id": "4", "method": "random", "status": "skipped", "reason": "x"},
    ]


def test_summary_means_csr_over_all_samples_and_pointing(records: list[dict[str, Any]]) -> None:
    s = summarize(records)
    rows = {r["method"]: r for r in s["rows"]}
    assert [r["method"] for r in s["rows"]] == ["eagle", "random"]  # the reference first
    e, r = rows["eagle"], rows["random"]
    assert e["n"] == 3 and e["skipped"] == 0 and r["n"] == 2 and r["skipped"] == 1
    assert e["insertion_auc"] == pytest.approx(0.7) and e["deletion_auc"] == pytest.approx(0.3)
    assert e["insertion_auc_sem"] == pytest.approx(0.1 / np.sqrt(3))
    assert e["highest_confidence"] == pytest.approx(0.8)
    assert e["pointing_box"] == 1.0 and e["pointing_mask"] == 0.5 and e["n_pointing"] == 2
    assert e["amcr"] == pytest.approx((0.05 + 1.0 + 0.1) / 3)
    # CSR@10%: 2 of the 3 (AMCR 0.05 and 0.1) -- the never-corrected one stays in the denominator.
    assert e["csr10"] == pytest.approx(2 / 3) and e["n_amcr"] == 3
    assert r["csr10"] == 0.0 and r["forwards"] == 10 and r["seconds"] == 0.5 and e["model"] == "m"
    (p,) = s["paired"]
    assert (p["other"], p["n"]) == ("random", 2)
    assert p["insertion_win_rate"] == 0.5 and p["insertion_auc_diff"] == pytest.approx((0.3 - 0.1) / 2)
    assert p["deletion_win_rate"] == 0.5 and p["pointing_mask_diff"] == pytest.approx(0.5)
    assert s["label_maps_shared"] == {"bench": True}
    md = to_markdown(s)
    assert "| bench | eagle | 3 | 0.700 ± 0.058 | 0.300 ± 0.058 |" in md
    assert "| bench | random | 2 (+1 skipped) |" in md and "CSR@10%" in md and "WARNING" not in md


def test_summary_flags_methods_that_did_not_share_a_label_map(records: list[dict[str, Any]]) -> None:
    records[3]["labels_sha1"] = "other"
    s = summarize(records)
    assert s["label_maps_shared"] == {"bench": False}
    assert "WARNING: methods did not share one label map" in to_markdown(s)


def test_missing_metrics_show_as_dashes() -> None:
    s = summarize([_rec("1", "eagle", 0.5, 0.5)])
    row = s["rows"][0]
    assert row["amcr"] is None and row["csr10"] is None and row["pointing_box"] is None
    assert "| – | – | – | – |" in to_markdown(s)


def test_curves_are_resampled_to_a_common_grid_before_averaging() -> None:
    y = resample_curve([0.0, 0.25, 1.0], [0.0, 1.0, 1.0])
    assert y.shape == CURVE_GRID.shape and y[0] == 0 and y[25] == pytest.approx(1.0) and y[10] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="same length|one length"):
        resample_curve([0.0, 1.0], [0.0])
    a = {
        "name": "b",
        "method": "m",
        "status": "ok",
        "curve_x": [0.0, 1.0],
        "insertion_curve": [0.0, 1.0],
        "deletion_curve": [1.0, 0.0],
    }
    b = {**a, "curve_x": [0.0, 0.5, 1.0], "insertion_curve": [1.0, 1.0, 1.0], "deletion_curve": [0.0, 0.0, 0.0]}
    c = mean_curves([a, b])[("b", "m")]
    assert c["n"] == 2
    np.testing.assert_allclose(c["insertion"], (CURVE_GRID + 1.0) / 2)
    np.testing.assert_allclose(c["deletion"], (1.0 - CURVE_GRID) / 2)


def test_plot_and_write_outputs(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    png = plot_curves(records, tmp_path / "c.png")
    assert png is not None and Image.open(png).size[0] > 100
    assert plot_curves([records[-1]], tmp_path / "none.png") is None
    out = tmp_path / "run"
    with ShardWriter(out / "shards" / "records.rank0of1.jsonl") as w:
        for rec in records:
            w.append(rec)
    s = write_outputs(out, name="bench")
    assert (out / "records.jsonl").is_file() and (out / "summary.md").read_text() == s["markdown"]
    assert json.loads((out / "summary.json").read_text())["n_records"] == 6
    assert (out / "curves.png").is_file()
    combined = write_outputs(tmp_path / "combined", sources=[out])
    assert combined["n_records"] == 6 and not (tmp_path / "combined" / "records.jsonl").exists()
