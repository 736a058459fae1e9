"""Evaluation configs prepare their shapes-world data themselves (a fresh clone runs them as written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mllm_attr.evaluation.tasks import build_task, prepare_shapes_data

ROOT = Path(__file__).resolve().parents[1]


def test_a_task_with_shapes_data_writes_it_once(tmp_path):
    data = tmp_path / "runs" / "data"
    task = build_task(
        {"kind": "coco-object", "root": str(data), "split": "test", "shapes_data": {"root": str(data), "n_images": 3}}
    )
    samples = task.samples()
    assert len(samples) == 3 and (data / "annotations" / "instances_test.json").is_file()
    stamp = (data / "annotations" / "instances_test.json").stat().st_mtime_ns
    prepare_shapes_data(data, n_images=3)  # already there: nothing rewritten
    assert (data / "annotations" / "instances_test.json").stat().st_mtime_ns == stamp
    assert not [p for p in data.parent.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"


def test_same_seed_same_bytes_and_a_foreign_folder_is_refused(tmp_path):
    a = prepare_shapes_data(tmp_path / "a", n_images=2, seed=5)
    b = prepare_shapes_data(tmp_path / "b", n_images=2, seed=5)
    for f in ("annotations/instances_test.json", "annotations/captions_test.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists but has no annotations"):
        prepare_shapes_data(other, n_images=2)
    assert (other / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"n_images": 3}, "needs a 'root'"),
        ({"root": "x", "images": 3}, "unknown key"),
        ({"root": "x", "n_images": 0}, "n_images"),
        ("runs/x", "must be an object"),
    ],
)
def test_bad_shapes_data_is_an_error_when_the_config_is_read(bad, message):
    with pytest.raises(ValueError, match=message):
        build_task({"kind": "coco-caption", "root": "x", "split": "test", "shapes_data": bad})


@pytest.mark.parametrize("name", ["shapes_caption", "shapes_object", "shapes_refcoco", "shapes_repope"])
def test_shipped_shapes_configs_prepare_their_data(name):
    cfg = json.loads((ROOT / "eval" / "configs" / f"{name}.json").read_text())
    prep = cfg["task"]["shapes_data"]
    paths = [v for k, v in cfg["task"].items() if isinstance(v, str) and k != "prompt" and "/" in v]
    assert paths and all(p.startswith(prep["root"]) for p in paths), (name, paths)


def test_evaluate_cli_runs_the_shipped_config_on_a_fresh_checkout(tmp_path, monkeypatch, capsys):
    """`mllm-attr evaluate eval/configs/shapes_object.json` as the README writes it, in a clean folder."""
    from mllm_attr.cli import main

    shutil.copytree(ROOT / "eval" / "configs", tmp_path / "eval" / "configs")
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", "eval/configs/shapes_object.json", "--limit", "1", "--methods", "random", "-q"])
    assert code == 0, capsys.readouterr().err
    assert Path("runs/shapes/data/annotations/instances_test.json").is_file()
    assert Path("runs/shapes/object/records.jsonl").is_file()
