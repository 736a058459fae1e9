"""The evaluation runner: config validation, crash-safe records, resume, shared label maps,
pointing game end to end, kill -9 + resume, and two accelerate processes."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mllm_attr.adapters import load_adapter
from mllm_attr.adapters.callable import CallableAdapter
from mllm_attr.cli.evaluate import add_subcommand
from mllm_attr.data.shapes import COLORS, write_dataset
from mllm_attr.evaluation.runner import (
    CONFIG_KEYS,
    EvalConfig,
    ShardWriter,
    load_config,
    run_evaluation,
)
from mllm_attr.evaluation.summary import collect_records, read_records, record_key
from mllm_attr.store import repair_tail
from mllm_attr.testing.tiny_models import save_tiny

REPO = Path(__file__).resolve().parents[1]
#: Fields that legitimately differ between two runs of the same config.
VOLATILE = {"seconds", "method_seconds", "time", "process", "explanation_settings"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dataset(tmp_path_factory.mktemp("shapes"), n_images=10, seed=5, split="test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llava", tmp_path_factory.mktemp("tiny_llava"))


def _root(paths: dict[str, Path]) -> str:
    return str(paths["instances"].parent.parent)


def _config(shapes: dict[str, Path], tiny: Path, out: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "tiny-caption",
        "task": {"kind": "coco-caption", "root": _root(shapes), "split": "test", "limit": 3, "max_new_tokens": 4},
        "model": {"path": str(tiny)},
        "protocol": {"n_regions": 9, "segmenter": "grid", "batch_size": 64},
        "methods": [{"name": "eagle", "search": "greedy"}, "random"],
        "seed": 1,
        "output": str(out),
        "show_progress": False,
    }
    cfg.update(over)
    return cfg


def _my_random(adapter: Any, image: np.ndarray, generation: Any, positions: Any, *, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(image.shape[:2]).astype(np.float32)


def _stable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in VOLATILE}


# --------------------------------------------------------------------------- config


def test_config_unknown_keys_are_listed(tmp_path: Path, shapes: dict[str, Path], tiny: Path) -> None:
    base = _config(shapes, tiny, tmp_path / "o")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['metods'\]; valid keys: \[.*'methods'"):
        EvalConfig.from_dict({**base, "metods": []})
    with pytest.raises(ValueError, match=r"section 'protocol'; valid keys: \[.*'n_regions'"):
        EvalConfig.from_dict({**base, "protocol": {"regions": 9}})
    with pytest.raises(ValueError, match=r"section 'model'"):
        EvalConfig.from_dict({**base, "model": {"name": "x"}})
    with pytest.raises(ValueError, match=r"eagle.*valid keys.*'search'"):
        EvalConfig.from_dict({**base, "methods": [{"name": "eagle", "serch": "greedy"}]})
    with pytest.raises(ValueError, match="unknown search option"):
        EvalConfig.from_dict({**base, "methods": [{"name": "eagle", "search": "greedy", "search_options": {"x": 1}}]})
    with pytest.raises(ValueError, match=r"'options'"):
        EvalConfig.from_dict({**base, "methods": [{"name": "tam", "smooth": 3}]})
    with pytest.raises(ValueError, match="listed twice"):
        EvalConfig.from_dict({**base, "methods": ["eagle", "eagle"]})
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['output'\]"):
        EvalConfig.from_dict({k: v for k, v in base.items() if k != "output"})
    with pytest.raises(ValueError, match="n_regions"):
        EvalConfig.from_dict({**base, "protocol": {"n_regions": 1}})
    with pytest.raises(ValueError, match="unknown task kind"):
        EvalConfig.from_dict({**base, "task": {"kind": "vqa"}})
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="could not parse"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.json")
    path.write_text(json.dumps(base))
    cfg = load_config(path, output=str(tmp_path / "other"))
    assert cfg.output == tmp_path / "other" and cfg.methods[0]["search"] == "greedy"
    assert set(CONFIG_KEYS) >= {"task", "model", "protocol", "methods", "seed", "output"}


def test_unknown_method_names_the_valid_ones(tmp_path: Path, shapes: dict[str, Path], tiny: Path) -> None:
    cfg = EvalConfig.from_dict(_config(shapes, tiny, tmp_path / "o", methods=["eagle", "gradcam"]))
    with pytest.raises(ValueError, match=r"gradcam.*llava_cam.*eagle"):
        run_evaluation(cfg, distributed=False)
    cfg = EvalConfig.from_dict(
        _config(shapes, tiny, tmp_path / "o", methods=[{"name": "tam", "options": {"bogus": 1}}])
    )
    with pytest.raises(ValueError, match="bogus"):
        run_evaluation(cfg, distributed=False)


# --------------------------------------------------------------------------- records i/o


def test_torn_last_line_is_dropped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "shard.jsonl"
    with ShardWriter(path) as w:
        w.append({"task": "t", "sample_id": "1", "method": "m", "x": float("nan")})
        w.append({"task": "t", "sample_id": "2", "method": "m", "x": np.float32(0.5)})
    with open(path, "ab") as fh:
        fh.write(b'{"task": "t", "sample_id": "3", "met')  # a crash mid-write
    recs = read_records(path)
    assert [r["sample_id"] for r in recs] == ["1", "2"] and recs[0]["x"] is None and recs[1]["x"] == 0.5
    with ShardWriter(path) as w:  # opening repairs the tail before appending
        w.append({"task": "t", "sample_id": "3", "method": "m"})
    assert [r["sample_id"] for r in read_records(path)] == ["1", "2", "3"]
    assert path.read_bytes().count(b"\n") == 3
    # A complete line that is not JSON at the end is also torn; in the middle it is an error.
    with open(path, "ab") as fh:
        fh.write(b"garbage\n")
    assert len(read_records(path)) == 3
    assert repair_tail(path) == len(b"garbage\n")
    path.write_bytes(
        b'{"task": "t", "sample_id": "1", "method": "m"}\nbroken\n{"task": "t", "sample_id": "2", "method": "m"}\n'
    )
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_records(path)


def test_collect_records_dedups_and_sorts_naturally(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    with ShardWriter(shards / "a.jsonl") as w:
        for sid in ("10", "2"):
            w.append({"task": "t", "sample_id": sid, "method": "m", "v": 1})
    with ShardWriter(shards / "b.jsonl") as w:
        w.append({"task": "t", "sample_id": "2", "method": "m", "v": 2})
        w.append({"task": "t", "sample_id": "1", "method": "m", "v": 2})
    recs = collect_records(tmp_path)
    assert [r["sample_id"] for r in recs] == ["1", "2", "10"]
    assert [r["v"] for r in recs] == [2, 1, 1]


# --------------------------------------------------------------------------- runs in process


def test_run_records_settings_shared_label_maps_and_resume(tmp_path: Path, shapes: dict[str, Path], tiny: Path) -> None:
    out = tmp_path / "run"
    adapter = load_adapter(str(tiny))
    extra = {"myrandom": _my_random}
    cfg = EvalConfig.from_dict(_config(shapes, tiny, out, methods=["eagle", "random", "myrandom"]))
    summary = run_evaluation(cfg, adapter=adapter, extra_methods=extra, distributed=False)
    recs = collect_records(out)
    assert len(recs) == 9 and {r["status"] for r in recs} == {"ok"}
    assert len({record_key(r) for r in recs}) == 9
    for sid in ("1", "2", "3"):
        per = [r for r in recs if r["sample_id"] == sid]
        assert len({r["labels_sha1"] for r in per}) == 1  # one label map per sample, all methods
        assert len({r["generated_text"] for r in per}) == 1
    r = next(r for r in recs if r["method"] == "eagle")
    for key in (
        "seed",
        "sample_seed",
        "versions",
        "settings",
        "sample_id",
        "task",
        "method",
        "n_regions",
        "insertion_auc",
        "deletion_auc",
        "highest_confidence",
        "forwards",
        "seconds",
        "curve_x",
    ):
        assert key in r, key
    assert r["settings"]["method"]["search"] == "greedy" and r["settings"]["protocol"]["n_regions"] == 9
    assert r["settings"]["model"]["path"] == str(tiny) and r["settings"]["task"]["kind"] == "coco-caption"
    assert r["versions"]["mllm_attr"] and r["versions"]["accelerate"] and r["seed"] == 1
    assert r["n_regions"] == 9 and r["forwards"] == 9 * 10  # exact greedy n(n+1)
    assert len(r["curve_x"]) == 10 and r["curve_x"][0] == 0.0 and r["curve_x"][-1] == 1.0
    rnd = next(x for x in recs if x["method"] == "random" and x["sample_id"] == r["sample_id"])
    assert rnd["forwards"] == 2 * 8 + 2 and rnd["p_full"] == pytest.approx(r["p_full"])
    assert summary is not None and (out / "summary.md").is_file() and (out / "curves.png").is_file()
    assert json.loads((out / "summary.json").read_text())["label_maps_shared"] == {"tiny-caption": True}
    assert len(read_records(out / "records.jsonl")) == 9
    page = (out / "report.html").read_text(encoding="utf-8")  # the run's self-contained HTML page
    assert all(m in page for m in ("eagle", "random", "myrandom")) and "insertion_auc" in page
    assert "http://" not in page and "https://" not in page and "<svg" in page

    # Not resuming an existing output is refused; resuming extends it without duplicates.
    with pytest.raises(FileExistsError, match="--resume"):
        run_evaluation(cfg, adapter=adapter, extra_methods=extra, distributed=False)
    cfg5 = EvalConfig.from_dict(
        _config(shapes, tiny, out, methods=["eagle", "random", "myrandom"], task={**cfg.task, "limit": 5})
    )
    run_evaluation(cfg5, resume=True, adapter=adapter, extra_methods=extra, distributed=False)
    recs5 = collect_records(out)
    assert len(recs5) == 15 and len({record_key(x) for x in recs5}) == 15
    assert [_stable(x) for x in recs5 if x["sample_id"] in ("1", "2", "3")] == [_stable(x) for x in recs]
    # A resume with another protocol would mix incomparable records: refused.
    bad = EvalConfig.from_dict(_config(shapes, tiny, out, protocol={"n_regions": 16, "segmenter": "grid"}))
    with pytest.raises(ValueError, match="different config"):
        run_evaluation(bad, resume=True, adapter=adapter, distributed=False)
    bad_m = EvalConfig.from_dict(_config(shapes, tiny, out, methods=[{"name": "eagle", "search": "efficient"}]))
    with pytest.raises(ValueError, match="method 'eagle' was run with settings"):
        run_evaluation(bad_m, resume=True, adapter=adapter, distributed=False)
    run_evaluation(cfg, overwrite=True, adapter=adapter, extra_methods=extra, distributed=False)
    assert len(collect_records(out)) == 9


def _oracle(shapes: dict[str, Path]) -> CallableAdapter:
    """A fake model on shapes scenes: answers the colour of the asked shape; the answer's
    probability grows with the visible pixels of that exact colour (i.e. of that object)."""
    inst = json.loads(shapes["instances"].read_text())
    cats = {c["id"]: c["name"] for c in inst["categories"]}
    files = {im["id"]: im["file_name"] for im in inst["images"]}
    by_hash: dict[str, dict[str, str]] = {}
    for a in inst["annotations"]:
        arr = np.asarray(Image.open(shapes["images"] / files[a["image_id"]]).convert("RGB"))
        by_hash.setdefault(hashlib.sha1(arr.tobytes()).hexdigest(), {})[cats[a["category_id"]]] = a["color"]

    def generate(img: np.ndarray, prompt: str) -> str:
        colors = by_hash[hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()]
        shape = next(s for s in colors if f" {s}" in prompt)
        return colors[shape]

    def score(images: np.ndarray, gen: Any, positions: Any) -> np.ndarray:
        rgb = np.asarray(COLORS[gen.text.strip()], dtype=np.uint8)
        count = np.all(images == rgb, axis=-1).sum(axis=(1, 2))
        return np.repeat((1 - np.exp(-count / 40.0))[:, None], len(positions), axis=1)

    return CallableAdapter(score, generate, name="oracle", batch_size=64)


def test_pointing_game_end_to_end_with_an_oracle_model(tmp_path: Path, shapes: dict[str, Path], tiny: Path) -> None:
    task = {
        "kind": "refcoco",
        "refs": str(shapes["refs"]),
        "instances_file": str(shapes["instances"]),
        "image_dir": str(shapes["images"]),
        "prompt": "What color is the {category}?",
        "limit": 8,
    }
    cfg = EvalConfig.from_dict(
        _config(
            shapes,
            tiny,
            tmp_path / "o",
            name="oracle-ref",
            task=task,
            protocol={"n_regions": 25, "segmenter": "slic", "batch_size": 64},
            methods=[{"name": "eagle", "search": "greedy"}, "random"],
        )
    )
    summary = run_evaluation(cfg, adapter=_oracle(shapes), distributed=False)
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["eagle"]["n"] == 8 and rows["eagle"]["n_pointing"] == 8
    # Box: always hit. Mask: a superpixel can straddle a thin object (a cross) and the map's
    # tie rule then points at a background pixel of the top region; still far above random.
    assert rows["eagle"]["pointing_box"] == 1.0 and rows["eagle"]["pointing_mask"] >= 0.75
    assert rows["eagle"]["pointing_mask"] > rows["random"]["pointing_mask"]
    assert rows["eagle"]["insertion_auc"] > rows["random"]["insertion_auc"] + 0.1
    assert rows["eagle"]["deletion_auc"] < rows["random"]["deletion_auc"] - 0.1
    rec = next(r for r in collect_records(tmp_path / "o") if r["method"] == "eagle")
    assert rec["ground_truth"]["name"] in rec["prompt"]


def test_repope_wrong_answers_get_counterfactual_targets_and_amcr(
    tmp_path: Path, shapes: dict[str, Path], tiny: Path
) -> None:
    """A fake model that says "yes" while more than half the image is visible: every "no"
    question is answered wrongly, the correct "no" is explained, and the answer turns
    correct once about half the area is removed (AMCR ~ 0.5 for any ordering)."""

    def visible(images: np.ndarray) -> np.ndarray:
        return np.any(images > 0, axis=-1).mean(axis=(1, 2))

    def generate(img: np.ndarray, prompt: str) -> str:
        return "yes" if visible(img[None])[0] > 0.5 else "no"

    def score(images: np.ndarray, gen: Any, positions: Any) -> np.ndarray:
        v = visible(images)
        p = np.array([v if gen.tokens[i].strip().lower() == "yes" else 1 - v for i in positions]).T
        return p.reshape(len(images), len(positions))

    adapter = CallableAdapter(score, generate, name="yes-sayer", batch_size=64)
    task = {"kind": "repope", "questions": str(shapes["pope_random"]), "image_dir": str(shapes["images"]), "limit": 6}
    cfg = EvalConfig.from_dict(
        _config(
            shapes,
            tiny,
            tmp_path / "o",
            name="pope",
            task=task,
            protocol={"n_regions": 16, "segmenter": "grid"},
            methods=[{"name": "eagle", "search": "greedy"}, "centre"],
        )
    )
    summary = run_evaluation(cfg, adapter=adapter, distributed=False)
    recs = collect_records(tmp_path / "o")
    ok = [r for r in recs if r["status"] == "ok"]
    skipped = [r for r in recs if r["status"] == "skipped"]
    assert ok and skipped and all(r["reason"] == "the model answered correctly" for r in skipped)
    assert all(r["info"]["label"] == "no" and r["counterfactual"] and r["explained_text"] == "no" for r in ok)
    assert all(r["generated_text"] == "yes" for r in ok)
    assert all(0.45 <= r["amcr"] <= 0.6 for r in ok)
    row = next(r for r in summary["rows"] if r["method"] == "eagle")
    assert row["n_amcr"] == row["n"] and row["csr10"] == 0.0 and 0.45 <= row["amcr"] <= 0.6


def test_cli_subcommand_parses(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommand(sub)
    args = parser.parse_args(["evaluate", "cfg.json", "--resume", "--limit", "3", "--methods", "eagle,random", "-q"])
    assert args.config == "cfg.json" and args.resume and args.limit == 3 and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "cfg.json", "--resume", "--overwrite"])


# --------------------------------------------------------------------------- subprocesses


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _write_cfg(tmp_path: Path, name: str, cfg: dict[str, Any]) -> Path:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(cfg))
    return p


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, shapes: dict[str, Path], tiny: Path
) -> None:
    task = {"kind": "coco-caption", "root": _root(shapes), "split": "test", "limit": 10, "max_new_tokens": 4}
    common = {
        "task": task,
        "protocol": {"n_regions": 16, "segmenter": "grid", "batch_size": 16},
        "methods": [{"name": "eagle", "search": "greedy"}, "random"],
    }
    ref_cfg = _write_cfg(tmp_path, "ref", _config(shapes, tiny, tmp_path / "ref", **common))
    cut_cfg = _write_cfg(tmp_path, "cut", _config(shapes, tiny, tmp_path / "cut", **common))
    run = [sys.executable, str(REPO / "eval" / "run.py"), "--threads", "1"]

    proc = subprocess.Popen(
        [*run, str(cut_cfg)], cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    shard = tmp_path / "cut" / "shards" / "records.rank0of1.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if shard.exists() and shard.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_before = len(read_records(shard))
    assert 3 <= n_before < 20
    with open(shard, "ab") as fh:  # and a torn half line, as if the kill had hit a write
        fh.write(b'{"task": "coco-caption", "sample_id": "9", "method": "eag')

    res = subprocess.run(
        [*run, str(cut_cfg), "--resume", "-q"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ref = subprocess.run([*run, str(ref_cfg), "-q"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]

    got = read_records(tmp_path / "cut" / "records.jsonl")
    want = read_records(tmp_path / "ref" / "records.jsonl")
    assert len(got) == len(want) == 20
    assert len({record_key(r) for r in got}) == 20  # none lost, none duplicated
    assert [record_key(r) for r in got] == [record_key(r) for r in want]
    for g, w in zip(got, want):
        g, w = _stable(g), _stable(w)
        g.pop("name"), w.pop("name")
        assert g == w, record_key(g)


@pytest.mark.slow
def test_accelerate_two_cpu_processes_shard_and_merge(tmp_path: Path, shapes: dict[str, Path], tiny: Path) -> None:
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    task = {"kind": "coco-caption", "root": _root(shapes), "split": "test", "limit": 5, "max_new_tokens": 4}
    common = {"task": task, "methods": [{"name": "eagle", "search": "greedy"}, "random"]}
    two = _write_cfg(tmp_path, "two", _config(shapes, tiny, tmp_path / "two", **common))
    one = _write_cfg(tmp_path, "one", _config(shapes, tiny, tmp_path / "one", **common))
    # `accelerate launch --cpu` starts ONE process unless an MPI launcher is configured (1.15);
    # --multi_gpu starts torchrun workers, which use gloo on a machine without CUDA.
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(29600 + os.getpid() % 300),
        str(REPO / "eval" / "run.py"),
        str(two),
        "-q",
        "--threads",
        "1",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=420)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    shards = sorted(p.name for p in (tmp_path / "two" / "shards").glob("*.jsonl"))
    assert shards == ["records.rank0of2.jsonl", "records.rank1of2.jsonl"]
    per_shard = [read_records(tmp_path / "two" / "shards" / s) for s in shards]
    assert all(per_shard) and not ({record_key(r) for r in per_shard[0]} & {record_key(r) for r in per_shard[1]})
    assert {r["process"]["count"] for s in per_shard for r in s} == {2}
    res1 = subprocess.run(
        [sys.executable, str(REPO / "eval" / "run.py"), str(one), "-q", "--threads", "1"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res1.returncode == 0, res1.stderr[-3000:]
    merged = read_records(tmp_path / "two" / "records.jsonl")
    single = read_records(tmp_path / "one" / "records.jsonl")
    assert [record_key(r) for r in merged] == [record_key(r) for r in single] and len(merged) == 10
    for a, b in zip(merged, single):
        assert a["insertion_auc"] == pytest.approx(b["insertion_auc"], abs=1e-9)
        assert a["ordering"] == b["ordering"]
    assert (tmp_path / "two" / "summary.md").is_file()
