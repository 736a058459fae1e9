"""Bulk explain (``mllm-attr explain --requests``, ``mllm_attr.explain_requests``) on the embedded
model: the whole file validated before the model loads, one folder and one record per request,
a resume that neither loses nor duplicates a request after a kill, failures recorded, and the
Python call giving the CLI's numbers."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mllm_attr.assets import default_model_path, example_image_path
from mllm_attr.cli import main
from mllm_attr.explanation import Explanation
from mllm_attr.store import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--n-regions", "8", "--max-new-tokens", "3", "-q"]
FILES = {"explanation.json", "saliency.npy", "arrays.npz", "heatmap.png"}
#: Three requests the embedded model answers: a word target, the default target (an image in a
#: subfolder, default id), and a counterfactual answer with its own max_new_tokens.
ROWS = [
    {"image": "scene.png", "prompt": "Describe the image.", "target": "circle", "id": "desc"},
    {"image": "imgs/scene.png", "prompt": "What color is the circle?"},
    {"image": "scene.png", "prompt": "Is there a star in the image?", "answer": "yes", "max_new_tokens": 2},
]
IDS = ["desc", "0002", "0003"]


def _write_requests(folder: Path, rows: list, name: str = "requests.jsonl") -> Path:
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    for dest in (folder / "scene.png", folder / "imgs" / "scene.png"):
        if not dest.exists():
            shutil.copy(example_image_path(), dest)
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["explain", *argv])
    return code, out.getvalue(), err.getvalue()


def _bulk(requests: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _cli("--requests", str(requests), "--out", str(out), *FAST, *extra)


def _mtimes(out: Path) -> dict[str, int]:
    """Request folder -> when its explanation.json was written (hidden temporary folders left out)."""
    folders = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return {p.name: (p / "explanation.json").stat().st_mtime_ns for p in folders}


@pytest.fixture(scope="module")
def adapter():
    from mllm_attr import load_adapter

    return load_adapter(default_model_path())


@pytest.fixture(scope="module")
def done_run(tmp_path_factory, adapter):
    """One finished CLI run of :data:`ROWS`: ``(requests file, output folder, stdout)``."""
    folder = tmp_path_factory.mktemp("bulk")
    requests = _write_requests(folder, ROWS)
    code, stdout, err = _bulk(requests, folder / "out")
    assert code == 0, err
    return requests, folder / "out", stdout


@pytest.fixture
def run_copy(done_run, tmp_path):
    """A private copy of the finished run, to damage."""
    requests, out, _ = done_run
    folder = tmp_path / "copy"
    shutil.copytree(requests.parent, folder, ignore=shutil.ignore_patterns("out"))
    shutil.copytree(out, folder / "out")
    return folder / requests.name, folder / "out"


# --------------------------------------------------------------------------- validation


BAD_ROWS = [
    ({"image": "scene.png"}, "line 2: missing key 'prompt'"),
    ({"image": "scene.png", "prompt": "x", "taget": "circle"}, "line 2: unknown key 'taget' (did you mean 'target'?)"),
    ({"image": "nope.png", "prompt": "x"}, "line 2: image file not found"),
    ({"image": "scene.png", "prompt": ["x"]}, "line 2: prompt must be a non-empty string; got list"),
    ({"image": "scene.png", "prompt": "x", "target": [1, -2]}, "line 2: target token indices must be >= 0"),
    ({"image": "scene.png", "prompt": "x", "target": {"w": 1}}, "line 2: target must be a word or phrase"),
    ({"image": "scene.png", "prompt": "x", "max_new_tokens": "3"}, "line 2: max_new_tokens must be an integer >= 1"),
    ({"image": "scene.png", "prompt": "x", "id": 7}, "line 2: id must be a string"),
    ({"image": "scene.png", "prompt": "x", "id": "../up"}, "line 2: id '../up' cannot name an output folder"),
    ({"image": "scene.png", "prompt": "x", "id": "0001"}, "line 2: duplicate id '0001': "),
    ('{"image": "scene.png", "prompt": ', "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS, ids=[m.split(": ", 1)[1][:24] for _, m in BAD_ROWS])
def test_a_bad_row_is_one_error_line_before_the_model_and_nothing_is_written(row, message, tmp_path, monkeypatch):
    # The first row is fine and gets the default id "0001"; the second is wrong.
    monkeypatch.setattr("mllm_attr.cli.explain.load_model_from_args", lambda args: pytest.fail("model loaded"))
    requests = _write_requests(tmp_path, [{"image": "scene.png", "prompt": "ok"}, row])
    code, stdout, err = _bulk(requests, tmp_path / "out")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"mllm-attr: error: {requests} {message}"), err
    assert not stdout and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image", "scene.png"], "--requests cannot be combined with --image"),
        (["--target", "circle", "--answer", "no"], "--requests cannot be combined with --target, --answer"),
    ],
)
def test_single_request_flags_are_refused_with_requests(extra, message, tmp_path, monkeypatch):
    monkeypatch.setattr("mllm_attr.cli.explain.load_model_from_args", lambda args: pytest.fail("model loaded"))
    requests = _write_requests(tmp_path, ROWS)
    code, _, err = _bulk(requests, tmp_path / "out", *extra)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_validation_imports_no_torch_and_refuses_a_foreign_output_folder(tmp_path):
    requests = _write_requests(tmp_path, [*ROWS, {"image": "scene.png", "prompt": "x", "id": "desc"}])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    good = _write_requests(tmp_path, ROWS, name="good.jsonl")
    code = (
        "import sys\n"
        "from mllm_attr.cli import main\n"
        f"print(main(['explain', '--requests', {str(requests)!r}, '--out', 'o']))\n"
        f"print(main(['explain', '--requests', {str(good)!r}, '--out', 'mine', '--overwrite']))\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.stdout.split() == ["2", "2", "TORCH", "False"], done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(f"mllm-attr: error: {requests} line 4: duplicate id 'desc': {requests} line 1 has")
    assert "has no run.json (it is not the output of a bulk explain run)" in lines[1]
    assert not (tmp_path / "o").exists() and os.listdir(tmp_path / "mine") == ["notes.txt"]


# --------------------------------------------------------------------------- a run and its resume


def test_a_run_writes_one_folder_and_one_record_per_request_and_one_report(done_run):
    requests, out, stdout = done_run
    assert sorted(p.name for p in out.iterdir()) == sorted([*IDS, "records.jsonl", "report.html", "run.json"])
    records = read_jsonl(out / "records.jsonl")
    assert [r["id"] for r in records] == IDS and {r["status"] for r in records} == {"ok"}
    for rec in records:
        folder = out / rec["dir"]
        assert {p.name for p in folder.iterdir()} == FILES  # the single-explain layout
        expl = Explanation.load(folder)
        assert rec["insertion_auc"] == pytest.approx(expl.insertion_auc(), abs=1e-12)
        assert rec["deletion_auc"] == pytest.approx(expl.deletion_auc(), abs=1e-12)
        assert rec["target_tokens"] == expl.target_tokens and rec["forwards"] == expl.forwards > 0
        assert expl.settings["request"]["id"] == rec["id"]
    desc, color, forced = records
    assert desc["target_text"] == "circle" and desc["image_path"] == str(requests.parent / "scene.png")
    assert color["image"] == "imgs/scene.png" and color["image_path"] == str(requests.parent / "imgs" / "scene.png")
    assert forced["counterfactual"] and forced["explained_text"] == "yes" and forced["generated_text"] != "yes"
    assert forced["max_new_tokens"] == 2 and desc["max_new_tokens"] == 3
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count("<section") == 3 and "3 explanations" in report
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["requests"]["sha256"] == hashlib.sha256(requests.read_bytes()).hexdigest()
    assert run["command"]["n_regions"] == 8 and run["versions"]["mllm_attr"]
    assert "this run:         3 ok, 0 error, 0 skipped" in stdout
    assert f"{out / 'records.jsonl'}, {out / 'report.html'}, {out / 'run.json'}" in stdout


def test_rerunning_the_same_command_skips_every_request(run_copy):
    requests, out = run_copy
    before, mtimes = (out / "records.jsonl").read_bytes(), _mtimes(out)
    code, stdout, _ = _bulk(requests, out)
    assert code == 0 and "0 ok, 0 error, 3 skipped" in stdout
    assert (out / "records.jsonl").read_bytes() == before  # no duplicate record
    assert _mtimes(out) == mtimes  # nothing redone


@pytest.mark.parametrize("damage", ["record_lost", "torn_line"])
def test_a_killed_run_resumes_by_redoing_exactly_the_unrecorded_request(damage, run_copy):
    requests, out = run_copy
    path = out / "records.jsonl"
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    original = json.loads(data[last:])
    if damage == "record_lost":  # killed after the folder was saved, before its record was appended
        path.write_bytes(data[:last])
        (out / ".0003.tmp-x1y2").mkdir()  # and a half-written folder of a save in progress
    else:  # killed in the middle of writing the last record
        path.write_bytes(data[: last + 25])
    mtimes = _mtimes(out)
    code, stdout, _ = _bulk(requests, out)
    assert code == 0 and "1 ok, 0 error, 2 skipped" in stdout
    records = read_jsonl(path)
    assert [r["id"] for r in records] == IDS and path.read_bytes().endswith(b"\n")
    assert path.read_bytes()[:last] == data[:last]  # the earlier records kept as they were
    redone = _mtimes(out)
    assert {k for k in redone if redone[k] != mtimes[k]} == {"0003"}  # its folder replaced, no other
    assert records[-1]["insertion_auc"] == pytest.approx(original["insertion_auc"], abs=1e-9)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_an_interrupt_during_a_save_leaves_no_record_of_that_request(tmp_path, monkeypatch):
    # The folder is saved BEFORE the record is appended: an interrupt in the second save leaves
    # one record and no trace of the second request; the rerun does the other two.
    requests = _write_requests(tmp_path, ROWS)
    real_save, calls = Explanation.save, []

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Explanation, "save", save)
    with pytest.raises(KeyboardInterrupt):
        _bulk(requests, tmp_path / "out")
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "records.jsonl")] == ["desc"]
    assert not (tmp_path / "out" / "0002").exists()
    code, stdout, _ = _bulk(requests, tmp_path / "out")
    assert code == 0 and "2 ok, 0 error, 1 skipped" in stdout
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "records.jsonl")] == IDS


def test_a_failing_request_is_recorded_and_the_run_goes_on(tmp_path):
    rows = [ROWS[0], {"image": "scene.png", "prompt": "Describe the image.", "target": "zebra"}, ROWS[1]]
    requests = _write_requests(tmp_path, rows)
    out = tmp_path / "out"
    code, stdout, _ = _bulk(requests, out)
    assert code == 1  # a request failed
    records = read_jsonl(out / "records.jsonl")
    assert [(r["id"], r["status"]) for r in records] == [("desc", "ok"), ("0002", "error"), ("0003", "ok")]
    bad = records[1]
    assert bad["error_type"] == "TargetNotFoundError" and "'zebra'" in bad["error"] and "not found" in bad["error"]
    assert bad["generated_text"] and bad["insertion_auc"] is None and bad["dir"] is None
    assert not (out / "0002").exists() and (out / "report.html").read_text().count("<section") == 2
    assert "this run:         2 ok, 1 error, 0 skipped" in stdout and "failed:           0002 (line 2)" in stdout
    code, stdout, _ = _bulk(requests, out)  # recorded, so not retried; the exit status stays 1
    assert code == 1 and "0 ok, 0 error, 3 skipped" in stdout and len(read_jsonl(out / "records.jsonl")) == 3


def test_other_settings_or_requests_are_refused_and_overwrite_starts_over(run_copy):
    requests, out = run_copy
    before = (out / "records.jsonl").read_bytes()
    code, _, err = _bulk(requests, out, "--n-regions", "9")
    assert code == 2 and "option n_regions: 8 then, 9 now" in err and "--overwrite" in err
    requests.write_text(requests.read_text() + json.dumps({"image": "scene.png", "prompt": "Describe it."}) + "\n")
    code, _, err = _bulk(requests, out)
    assert code == 2 and "the requests changed" in err
    assert (out / "records.jsonl").read_bytes() == before
    code, stdout, _ = _bulk(requests, out, "--n-regions", "9", "--overwrite")
    assert code == 0 and "4 ok, 0 error, 0 skipped" in stdout
    assert json.loads((out / "run.json").read_text())["command"]["n_regions"] == 9
    (out / "notes.txt").write_text("mine")
    code, _, err = _bulk(requests, out, "--overwrite")
    assert code == 2 and "holds entries that a bulk explain run did not write (['notes.txt'])" in err


def test_the_python_call_gives_the_cli_records(done_run, adapter, tmp_path):
    from mllm_attr import explain_requests

    requests, out, _ = done_run
    cli = {r["id"]: r for r in read_jsonl(out / "records.jsonl")}
    recs = explain_requests(adapter, requests, tmp_path / "py", n_regions=8, max_new_tokens=3)
    assert recs == read_jsonl(tmp_path / "py" / "records.jsonl") and (recs.n_ok, recs.n_skipped) == (3, 0)
    assert recs.report_path == tmp_path / "py" / "report.html"
    for rec in recs:
        for key in ("insertion_auc", "deletion_auc", "highest_confidence"):
            assert rec[key] == pytest.approx(cli[rec["id"]][key], abs=1e-12), (rec["id"], key)
        assert rec["target_positions"] == cli[rec["id"]]["target_positions"]
    # A list of dicts, relative paths against base_dir; the rerun resumes.
    opts = {"n_regions": 8, "max_new_tokens": 3}
    again = explain_requests(adapter, ROWS[:1], tmp_path / "list", base_dir=requests.parent, **opts)
    assert again[0]["insertion_auc"] == pytest.approx(cli["desc"]["insertion_auc"], abs=1e-12)
    assert explain_requests(adapter, ROWS[:1], tmp_path / "list", base_dir=requests.parent, **opts).n_skipped == 1


def test_single_explain_lists_every_file_it_wrote(tmp_path):
    code, stdout, _ = _cli("--out", str(tmp_path / "one"), "--n-regions", "4", "--max-new-tokens", "2", "-q")
    assert code == 0
    wrote = next(line for line in stdout.splitlines() if line.startswith("wrote:"))
    listed = {Path(p.strip()).name for p in wrote.split(":", 1)[1].split(",")}
    assert listed == {p.name for p in (tmp_path / "one").iterdir()} == FILES
