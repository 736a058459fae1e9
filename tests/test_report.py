"""HTML reports: self-contained, escaped, atomic; rendered in a real headless Chromium."""

from __future__ import annotations

import argparse
import base64
import html
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm_attr import Explainer, Explanation
from mllm_attr.cli.report import add_subcommand
from mllm_attr.report import write_benchmark_report, write_report
from mllm_attr.testing.browser import INSTALL_HINT as CHROMIUM_MISSING
from mllm_attr.testing.browser import find_chromium, run_chromium
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
        # long names may wrap after an underscore (and are whole in the tooltip)
        assert re.search(rf'<th( title="{col}")?>{col}</th>', text.replace("<wbr>", ""))
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
    exe = find_chromium()
    if exe is None:
        pytest.skip(f"{CHROMIUM_MISSING}; the browser check needs it")
    return exe


def _run_chromium(exe: str, tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return run_chromium(exe, url, *extra, profile=tmp_path / "chromium-profile", window=(1200, 900), timeout=120)


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


# -- the pictures and the tables --------------------------------------------------------------


def _uris(text: str) -> list[bytes]:
    return [base64.b64decode(u) for u in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def test_report_maps_keep_the_image_visible_and_outline_the_top_regions(expl: Explanation, tmp_path: Path) -> None:
    from mllm_attr import viz

    text = write_report(expl, tmp_path / "r.html").read_text(encoding="utf-8")
    with Image.open(io.BytesIO(_uris(text)[1])) as im:  # the joint map
        joint = np.asarray(im.convert("RGB"))
    factor = joint.shape[0] // 32
    assert joint.shape[:2] == (32 * factor, 32 * factor) and joint.shape[0] >= 320  # enlarged, sharp
    small = joint[factor // 2 :: factor, factor // 2 :: factor]  # one pixel per image pixel (off the outline)
    sal = expl.saliency()
    # the map over the greyed image, its opacity growing with the value (not a plain colour blend)
    assert np.abs(small.astype(int) - viz.overlay(expl.image, sal).astype(int)).max() <= 1
    low = sal == sal.min()
    gray = viz.gray_image(expl.image).astype(int)
    assert np.abs(small[low] - gray[low]).mean() < np.abs(small[~low] - gray[~low]).mean()
    outline = np.all(joint == np.array([0x00, 0xE5, 0xFF]), axis=-1)
    assert outline.any()  # the top regions are outlined
    top = np.isin(expl.labels, viz.top_regions(expl))
    assert np.repeat(np.repeat(top, factor, 0), factor, 1)[outline].all()  # ... along their own edge
    # the colour bar shows the map's colours and says what they mean
    assert "region evidence" in text and "1: as much as the top region" in text and "outlined: top" in text
    assert "jet" not in text


def test_benchmark_table_formats_counts_and_scrolls(tmp_path: Path) -> None:
    rows = [
        {"method": "eagle", "n": 20, "forwards": 196.0, "pointing_box": 1.0, "insertion_auc": 0.61234},
        {"method": "tam", "n": 20, "forwards": 46.0, "pointing_box": 0.0, "insertion_auc": 0.5},
        {"method": "igos_pp", "n": 20, "forwards": 12000.0, "pointing_box": 0.5, "insertion_auc": None},
    ]
    text = write_benchmark_report(rows, {}, tmp_path / "b.html").read_text(encoding="utf-8")
    cells = re.findall(r'<td class="num">([^<]*)</td>', text)
    assert "196" in cells and "46" in cells and "12000" in cells and "20" in cells
    assert "196.000" not in text and "46.000" not in text
    assert "1.000" in cells and "0.000" in cells and "0.612" in cells  # a rate keeps its decimals
    assert "0.500" in cells
    # the table sits in a box that scrolls sideways instead of running past its card
    assert re.search(r'<div class="scroll"><table><thead>', text)
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", text)


def test_integral_columns() -> None:
    from mllm_attr.report import _fmt, _integral_column

    assert _integral_column([196.0, 46.0, None, float("nan")]) and _integral_column([3, 5])
    assert not _integral_column([1.0, 0.0])  # a rate of 0 / 1 is not a count
    assert not _integral_column([196.5, 46.0]) and not _integral_column(["a", "b"]) and not _integral_column([])
    assert _fmt(196.0, integral=True) == "196" and _fmt(196.0) == "196.000" and _fmt(float("nan"), integral=True) == "–"


@pytest.mark.browser
def test_wide_benchmark_table_stays_inside_its_card(tmp_path: Path) -> None:
    exe = _chromium()
    row = {f"a rather long column name {i}": 0.123456 for i in range(16)}
    report = write_benchmark_report([row, row], {}, tmp_path / "wide.html")
    shot = tmp_path / "wide.png"
    proc = _run_chromium(exe, tmp_path, report.as_uri(), f"--screenshot={shot}", "--hide-scrollbars")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("RGB")).astype(int)
    # the card's right border (a light grey vertical line) runs down the page at the same column,
    # and nothing of the table is drawn to the right of it
    grey = (np.abs(arr - np.array([0xDA, 0xDC, 0xE0])).sum(axis=2) < 12).sum(axis=0)
    right = int(np.nonzero(grey > 60)[0].max())
    assert right < 1200 - 5
    beyond = arr[:, right + 2 :]
    assert (beyond > 245).all(), "the table runs past its card"
