#!/usr/bin/env python3
"""Fault injection for the benchmark runner: kill -9 at random moments, resume, compare.

One uninterrupted reference run of a small config (shapes-world captions, the embedded
model, EAGLE greedy + random baseline); then ``--trials`` runs of the same config, each
killed with SIGKILL at 1-3 random moments (uniform over the reference's wall time), with a
torn half record appended after some kills (as if the kill had hit a write), resumed with
``--resume`` after each kill and finally run to completion. Every trial's merged records are
compared with the reference: same set of (task, sample, method) keys, none lost, none
duplicated, identical content apart from timing fields.

    python eval/fault_injection.py --trials 12 --out eval/results/fault_injection.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Record fields that legitimately differ between two runs of one config.
VOLATILE = {"seconds", "method_seconds", "time", "process", "explanation_settings", "name"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _config(data_root: Path, out: Path, limit: int, regions: int) -> dict[str, Any]:
    return {
        "name": "fault-injection",
        "task": {"kind": "coco-caption", "root": str(data_root), "split": "test", "limit": limit, "max_new_tokens": 8},
        "model": {"path": "default"},
        "protocol": {"n_regions": regions, "segmenter": "grid", "batch_size": 32},
        "methods": [{"name": "eagle", "search": "greedy"}, "random"],
        "seed": 0,
        "output": str(out),
        "show_progress": False,
    }


def _run(cfg: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "eval" / "run.py"), str(cfg), "--threads", "1", "-q", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _records(out: Path) -> list[dict[str, Any]]:
    from mllm_attr.evaluation.summary import read_records

    return read_records(out / "records.jsonl")


def _stable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--limit", type=int, default=6, help="samples per run (2 records each)")
    ap.add_argument("--regions", type=int, default=16, help="grid regions per sample (sets the run's length)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="eval/results/fault_injection.json")
    args = ap.parse_args(argv)

    from mllm_attr.data.shapes import write_dataset
    from mllm_attr.evaluation.summary import record_key
    from mllm_attr.explanation import versions

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="mllm_attr_fault_"))
    paths = write_dataset(work / "data", n_images=args.limit, seed=3, split="test")
    data_root = paths["instances"].parent.parent

    ref_cfg = work / "ref.json"
    ref_cfg.write_text(json.dumps(_config(data_root, work / "ref", args.limit, args.regions)))
    t0 = time.perf_counter()
    proc = _run(ref_cfg)
    _, err = proc.communicate()
    ref_seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"reference run failed: {err.decode()[-2000:]}")
    want = _records(work / "ref")
    want_by_key = {record_key(r): _stable(r) for r in want}
    print(f"reference: {len(want)} records in {ref_seconds:.1f}s", flush=True)

    trials = []
    for t in range(args.trials):
        cfg = work / f"trial{t}.json"
        out = work / f"trial{t}"
        cfg.write_text(json.dumps(_config(data_root, out, args.limit, args.regions)))
        n_kills = int(rng.integers(1, 4))
        kills = []
        for k in range(n_kills):
            delay = float(rng.uniform(0.05, 0.95) * ref_seconds)
            proc = _run(cfg, *(["--resume"] if k else []))
            time.sleep(delay)
            alive = proc.poll() is None
            if alive:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            on_disk = (
                sum(f.read_bytes().count(b"\n") for f in (out / "shards").glob("*.jsonl"))
                if (out / "shards").is_dir()
                else 0
            )
            torn = bool(alive and rng.random() < 0.5)
            if torn:
                shards = sorted((out / "shards").glob("*.jsonl"))
                if shards:
                    with open(shards[0], "ab") as fh:
                        fh.write(b'{"task": "coco-caption", "sample_id": "0", "method": "eag')
            kills.append({"after_s": round(delay, 2), "killed": alive, "torn_line": torn, "records_on_disk": on_disk})
        proc = _run(cfg, "--resume")
        _, err = proc.communicate()
        got = _records(out) if proc.returncode == 0 else []
        keys = [record_key(r) for r in got]
        lost = sorted(set(want_by_key) - set(keys))
        dup = len(keys) - len(set(keys))
        differ = [k for k in keys if k in want_by_key and _stable(got[keys.index(k)]) != want_by_key[k]]
        extra = sorted(set(keys) - set(want_by_key))
        ok = proc.returncode == 0 and not lost and not dup and not differ and not extra
        trials.append(
            {
                "trial": t,
                "kills": kills,
                "final_rc": proc.returncode,
                "records": len(got),
                "lost": len(lost),
                "duplicated": dup,
                "different": len(differ),
                "unexpected": len(extra),
                "identical": ok,
                "stderr_tail": "" if proc.returncode == 0 else err.decode()[-500:],
            }
        )
        print(
            f"trial {t}: kills at {[k['after_s'] for k in kills]}s with "
            f"{[k['records_on_disk'] for k in kills]} records "
            f"on disk (killed {sum(k['killed'] for k in kills)}, "
            f"torn {sum(k['torn_line'] for k in kills)}) -> {len(got)} records, lost {len(lost)}, dup {dup}, "
            f"different {len(differ)}: {'identical' if ok else 'MISMATCH'}",
            flush=True,
        )

    result = {
        "command": "python " + " ".join(["eval/fault_injection.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": vars(args),
        "versions": versions(),
        "reference": {"records": len(want), "seconds": ref_seconds},
        "summary": {
            "trials": len(trials),
            "kills": sum(sum(k["killed"] for k in tr["kills"]) for tr in trials),
            "torn_lines": sum(sum(k["torn_line"] for k in tr["kills"]) for tr in trials),
            "kills_mid_run": sum(
                sum(k["killed"] and 0 < k["records_on_disk"] < len(want) for k in tr["kills"]) for tr in trials
            ),
            "identical": sum(tr["identical"] for tr in trials),
            "lost": sum(tr["lost"] for tr in trials),
            "duplicated": sum(tr["duplicated"] for tr in trials),
            "different": sum(tr["different"] for tr in trials),
        },
        "trials": trials,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out_path)
    print(json.dumps(result["summary"]))
    return 0 if result["summary"]["identical"] == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
