"""HTML reports: self-contained, escaped, atomic; rendered in a real headless Chromium."""

from __future__ import annotations

import argparse
import base64
import html
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm_attr import Explainer, Explanation
from mllm_attr.cli.report import add_subcommand
from mllm_attr.report import write_benchmark_report, write_report
from mllm_attr.testing.fake import make_fake_adapter

EVIL = '<script>alert("x")</script>&'


@pytest.fixture(scope="module")
def expl() -> Explanation:
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, size=(32, 32, 3), dtype=np.uint8)
    img[:16, :16] = (230, 20, 20)
    left = np.zeros((32, 32))
    left[:, :16] = 1.0
    adapter = make_fake_adapter(img, {"red": left, EVIL: np.ones((32, 32))}, answer=f"red thing {EVIL}", floor=0.1)
    return Explainer(adapter, n_regions=4, segmenter="grid")(img, prompt="What <b>is</b> it?", target=[0, 2])


def _no_external_refs(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    for attr in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', text):
        assert attr.startswith(("data:", "#")), attr


def test_write_report_is_self_contained_and_escaped(expl: Explanation, tmp_path: Path) -> None:
    out = write_report(expl, tmp_path / "sub" / "r.html", title="T <1>")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    _no_external_refs(text)
    assert "<script>alert" not in text and html.escape(EVIL) in text  # generated text is escaped
    assert "What &lt;b&gt;is&lt;/b&gt; it?" in text and "T &lt;1&gt;" in text
    # images: input + joint + one per explained token, each a decodable PNG
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 2 + len(expl.positions)
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    # token picker: every generated token; explained ones are buttons with a view each
    assert text.count('class="tok explained"') == len(expl.positions)
    assert text.count('class="tok joint"') == 1
    assert text.count('<span class="tok"') == len(expl.generation) - len(expl.positions)
    for j in range(len(expl.positions)):
        assert f'class="view" data-view="t{j}" hidden' in text
    assert text.count("<svg") == 1 + len(expl.positions)  # curves per view
    assert "insertion AUC" in text and "forwards (images scored)" in text and "lambda1" in text
    assert "numpy" in text  # versions table
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temp file left behind


def test_write_report_many_and_overwrite(expl: Explanation, tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    path.write_text("old")
    write_report([expl, expl], path)
    text = path.read_text()
    assert 'id="e0"' in text and 'id="e1"' in text and 'href="#e1:joint"' in text
    assert (path.stat().st_mode & 0o777) == 0o644


def test_write_report_errors(expl: Explanation, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expected an Explanation"):
        write_report("nope", tmp_path / "r.html")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 1 is a int"):
        write_report([expl, 3], tmp_path / "r.html")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty list"):
        write_report([], tmp_path / "r.html")
    with pytest.raises(IsADirectoryError):
        write_report(expl, tmp_path)
    assert not any(tmp_path.iterdir())


def _bench(tmp_path: Path, expl: Explanation) -> Path:
    rows = [
        {"method": "EAGLE", "insertion_auc": 0.61, "deletion_auc": 0.2, "n": 5},
        {"method": EVIL, "insertion_auc": float("nan"), "pointing": True},
    ]
    curves = {
        "EAGLE": {"insertion": expl.insertion_curve(), "deletion": expl.deletion_curve()},
        "random": {"insertion": np.linspace(0, 1, 6) ** 2, "deletion": 1 - np.linspace(0, 1, 6)},
    }
    from mllm_attr import viz

    figs = {"methods": viz.plot_methods(expl.image, {"EAGLE": expl.saliency()})}
    return write_benchmark_report(
        rows, curves, tmp_path / "bench.html", settings={"model": "shapes", "n": 5}, figures=figs
    )


def test_write_benchmark_report(expl: Explanation, tmp_path: Path) -> None:
    text = _bench(tmp_path, expl).read_text()
    _no_external_refs(text)
    assert "<script>alert" not in text
    for col in ("method", "insertion_auc", "deletion_auc", "n", "pointing"):
        assert f"<th>{col}</th>" in text
    assert "0.610" in text and "–" in text  # NaN shown as a dash
    assert text.count("<svg") == 2 and "EAGLE (AUC" in text
    assert text.count("data:image/png;base64,") == 1
    empty = write_benchmark_report([], {}, tmp_path / "empty.html").read_text()
    assert "no rows" in empty and "<svg" not in empty
    with pytest.raises(TypeError, match="list of dicts"):
        write_benchmark_report({"a": 1}, {}, tmp_path / "x.html")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown key"):
        write_benchmark_report([], {"m": {"insertoin": [0, 1]}}, tmp_path / "x.html")


def test_report_subcommand(expl: Explanation, tmp_path: Path) -> None:
    expl.save(tmp_path / "e1")
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(tmp_path / "e1"), "--out", str(tmp_path / "r.html")])
    assert args.func(args) == 0
    assert 'class="tok explained"' in (tmp_path / "r.html").read_text()


# -- a real browser ----------------------------------------------------------------------------


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); the browser check needs it")
    return exe


def _run_chromium(exe: str, tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
        *extra,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _assert_rendered_png(path: Path) -> None:
    assert path.is_file(), "Chromium wrote no screenshot"
    with Image.open(path) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[:2] == (900, 1200)
    assert arr.std() > 20  # not a blank page
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 200  # text, images and curves were drawn


@pytest.mark.browser
def test_report_renders_in_headless_chromium(expl: Explanation, tmp_path: Path) -> None:
    exe = _chromium()
    report = write_report(expl, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    proc = _run_chromium(exe, tmp_path, report.as_uri(), f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_rendered_png(shot)
    # the page's script ran, the image and the token list are in the rendered DOM, and a
    # deep link selects explained token 1 (its view shown, the joint one hidden)
    proc = _run_chromium(exe, tmp_path, report.as_uri() + "#e0:t1", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-ready="1"' in dom
    assert re.search(r'<img[^>]+src="data:image/png;base64,', dom)
    for tok in expl.generation.tokens:
        assert html.escape(tok.strip(), quote=False) in dom
    assert 'data-selected="t1"' in dom
    assert re.search(r'<div class="view" data-view="t1">', dom)  # no longer hidden
    assert re.search(r'<div class="view" data-view="joint" hidden', dom)
    assert re.search(r'<button[^>]*data-view="t1"[^>]*aria-pressed="true"', dom)
    assert "<script>alert" not in dom


@pytest.mark.browser
def test_benchmark_report_renders_in_headless_chromium(expl: Explanation, tmp_path: Path) -> None:
    exe = _chromium()
    report = _bench(tmp_path, expl)
    shot = tmp_path / "bench.png"
    proc = _run_chromium(exe, tmp_path, report.as_uri(), f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_rendered_png(shot)
