"""The one JSON-lines record store (runner shards and POPE diagnosis alike)."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_attr.store import JsonlWriter, done_keys, encode_record, jsonable, read_jsonl, repair_tail


def test_values_become_json_and_equal_records_equal_bytes(tmp_path):
    rec = {
        "b": np.float32(0.5),
        "a": np.arange(3),
        "nan": float("nan"),
        "inf": np.inf,
        "ok": np.bool_(True),
        "path": tmp_path,
        "t": (1, 2),
    }
    assert jsonable(rec) == {
        "b": 0.5,
        "a": [0, 1, 2],
        "nan": None,
        "inf": None,
        "ok": True,
        "path": str(tmp_path),
        "t": [1, 2],
    }
    assert encode_record(rec) == encode_record(dict(reversed(list(rec.items()))))
    assert encode_record(rec).endswith(b"\n") and encode_record(rec).count(b"\n") == 1


def test_a_torn_tail_is_skipped_by_readers_and_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as w:
        w.append({"id": 1})
        w.append({"id": 2})
    with open(path, "ab") as fh:
        fh.write(b'{"id": 3, "x": ')  # a crash mid-write
    assert [r["id"] for r in read_jsonl(path)] == [1, 2]
    assert path.read_bytes().endswith(b'"x": ')  # reading never modifies the file
    with JsonlWriter(path) as w:  # opening cuts the torn line before appending
        w.append({"id": 3})
        assert w.written == 1
    assert [r["id"] for r in read_jsonl(path)] == [1, 2, 3]
    assert repair_tail(path) == 0


def test_a_complete_but_invalid_last_line_is_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": 1}\nnot json\n')
    assert read_jsonl(path) == [{"id": 1}]
    assert repair_tail(path) == len(b"not json\n")
    assert path.read_bytes() == b'{"id": 1}\n'


def test_corruption_before_the_last_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": 1}\ngarbage\n{"id": 3}\n')
    with pytest.raises(ValueError, match=r"r.jsonl: line 2 is not valid JSON"):
        read_jsonl(path)
    path.write_bytes(b'[1, 2]\n{"id": 3}\n')
    with pytest.raises(ValueError, match="expected a JSON object per line; got list"):
        read_jsonl(path)
    with pytest.raises(FileNotFoundError, match="expected a JSONL file of diagnose records"):
        read_jsonl(tmp_path / "missing.jsonl", what="diagnose records")


def test_resume_keys_skip_what_is_on_disk(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with JsonlWriter(a) as w:
        w.append({"k": "x"})
        w.append({"k": "y"})
    assert done_keys([a, b], lambda r: r["k"]) == {"x", "y"}  # a missing file holds nothing


def test_writer_refuses_a_directory_and_a_closed_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="expected a .jsonl file path"):
        JsonlWriter(tmp_path)
    w = JsonlWriter(tmp_path / "x.jsonl")
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.append({"a": 1})
