"""The interactive explorer, ``mllm-attr app``: its callbacks on the embedded model, the missing
extra's one-line error, and the real page in headless Chromium (upload, prompt, Generate, click
a token, its map appears)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm_attr.analysis.modality import LABELS
from mllm_attr.app import Answer, Explorer, ExplorerInputError, build_app, require_gradio
from mllm_attr.assets import example_image_path
from mllm_attr.cli import main
from mllm_attr.testing.browser import INSTALL_HINT as CHROMIUM_MISSING
from mllm_attr.testing.browser import DevToolsPage, find_chromium

ROOT = Path(__file__).resolve().parents[1]
#: The page's tests need Gradio: the "app" extra, which the test extra installs too.
needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None, reason='Gradio is not installed: pip install -e ".[test]"'
)


# -- without the extra ----------------------------------------------------------------------------


def test_app_without_gradio_is_one_error_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import mllm_attr.cli.app as cli_app

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError

    def no_model(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded before the missing extra was reported")

    monkeypatch.setattr(cli_app, "load_model_from_args", no_model)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["app", "--threads", "1"]) == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("mllm-attr: error:") and 'pip install "mllm-attr[app]"' in lines[0]


def test_app_help_and_argument_errors_load_neither_torch_nor_gradio() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from mllm_attr.cli import main\n"
        "for argv in (['app', '--help'], ['app', '--port', '0'], ['app', '--port', '70000'], ['app', '--lambda1', "
        "'0', '--lambda2', '0']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            assert main(argv) == 2, argv\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# -- the callbacks, on the embedded model ---------------------------------------------------------


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    from mllm_attr import load_adapter

    return Explorer(load_adapter("shapes-llava"), n_regions=9, explainer_options={"threads": 1})


@pytest.fixture(scope="module")
def answer(explorer: Explorer) -> Answer:
    return explorer.generate(str(example_image_path()), "Describe the image.")


def test_generate_labels_every_token_of_the_answer(answer: Answer) -> None:
    gen = answer.generation
    assert gen.text.strip() == json.loads((example_image_path().with_suffix(".json")).read_text())["caption"]
    assert answer.positions == [i for i, s in enumerate(gen.special) if not s] and len(answer.positions) >= 5
    spans = answer.spans()
    assert [t for t, _ in spans] == [gen.tokens[p] for p in answer.positions]
    assert {label for _, label in spans} <= set(LABELS)
    assert answer.choices()[2] == ("2: ' circle'", 2)


def test_explain_maps_the_clicked_token(explorer: Explorer, answer: Answer) -> None:
    circle = next(p for p in answer.positions if answer.generation.tokens[p].strip() == "circle")
    view = explorer.explain(answer, circle)
    e = view.explanation
    assert list(e.positions) == [circle] and e.target_tokens == [" circle"]
    assert view.modality.positions == (circle,) and view.modality.label in LABELS
    assert view.modality.insertion_auc is not None  # the full path: from the explanation's curves
    assert view.map_rgb.dtype == np.uint8 and view.map_rgb.ndim == 3 and min(view.map_rgb.shape[:2]) > 300
    assert view.curves_rgb.dtype == np.uint8 and view.curves_rgb.std() > 10
    assert "' circle'" in view.summary and f"{e.insertion_auc():.3f}" in view.summary
    assert f"{int(e.forwards)} forwards" in view.summary
    assert view.modality.label in view.modality_text
    # the page's own settings apply per click
    assert explorer.explain(answer, circle, n_regions=4, search="bidirectional").explanation.n_regions <= 4


def test_user_errors_are_messages(explorer: Explorer, answer: Answer) -> None:
    with pytest.raises(ExplorerInputError, match="no image"):
        explorer.generate(None, "Describe the image.")
    with pytest.raises(ExplorerInputError, match="prompt is empty"):
        explorer.generate(str(example_image_path()), "   ")
    with pytest.raises(ExplorerInputError, match="press Generate"):
        explorer.explain(None, 0)
    with pytest.raises(ExplorerInputError, match="no token picked"):
        explorer.explain(answer, None)
    with pytest.raises(ExplorerInputError, match="not an explainable token"):
        explorer.explain(answer, len(answer.generation.tokens) - 1)  # EOS


@needs_gradio
def test_page_callbacks_show_errors_not_tracebacks(explorer: Explorer, answer: Answer) -> None:
    demo = build_app(explorer)
    fns = {f.fn.__name__: f.fn for f in demo.fns.values()}
    out = fns["on_generate"](None, "Describe the image.")
    assert out[0] is None and out[3].startswith("**Error:**") and "no image" in out[3]
    out = fns["on_generate"](np.asarray(Image.open(example_image_path()).convert("RGB")), "")
    assert "prompt is empty" in out[3]
    out = fns["on_explain"](answer, None, 9, "greedy")
    assert out[0].startswith("**Error:**") and "no token picked" in out[0] and out[1] is None
    out = fns["on_explain"](answer, 2, 9, "greedy")
    assert "' circle'" in out[0] and out[1].ndim == 3 and "' circle'" in out[4]


@needs_gradio
def test_gradio_analytics_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    require_gradio()
    from gradio import analytics

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and not analytics.analytics_enabled()


# -- the page in a real browser ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mllm-attr app`` on the embedded model in a subprocess (9 regions, one thread); its URL."""
    if find_chromium() is None:
        pytest.skip(f"{CHROMIUM_MISSING}; the browser check needs it")
    port = _free_port()
    tmp = tmp_path_factory.mktemp("app")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(tmp / "gradio"), "HF_HUB_OFFLINE": "1"}
    log = (tmp / "server.log").open("w")
    cmd = [sys.executable, "-m", "mllm_attr.cli", "app", "--port", str(port), "--n-regions", "9", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mllm-attr app exited with {proc.returncode}: {(tmp / 'server.log').read_text()[-3000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"mllm-attr app did not answer within 180 s: {(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def _loaded(selector: str) -> str:
    """JavaScript: is the image at ``selector`` there and decoded?"""
    sel = json.dumps(selector)
    return f"(() => {{ const i = document.querySelector({sel}); return !!(i && i.complete && i.naturalWidth > 0); }})()"


_MAP_LOADED = _loaded("#map img")


@pytest.mark.browser
@pytest.mark.slow
@needs_gradio
def test_the_page_explains_a_clicked_token_in_headless_chromium(server: str, tmp_path: Path) -> None:
    flipped = tmp_path / "flipped.png"  # an upload the page has not seen: the example scene mirrored
    Image.open(example_image_path()).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    with DevToolsPage(window=(1280, 1000), timeout=120) as page:
        page.navigate(server)
        page.wait_for("document.querySelector('#generate') !== null", what="the Generate button")
        assert not page.evaluate(_MAP_LOADED)

        # an empty prompt is a message on the page
        page.type_text("#prompt textarea", " ")
        page.click("#generate")
        status = page.wait_for(
            "(() => { const t = document.querySelector('#status').innerText; return t.includes('Error') && t; })()",
            what="the empty-prompt message",
        )
        assert "the prompt is empty" in status and "Traceback" not in status

        # upload, prompt, Generate: the answer comes back as clickable tokens
        before = page.evaluate("document.querySelector('#input-image img').src")
        page.set_files("#input-image input[type=file]", [flipped])
        page.wait_for(
            f"(() => {{ const i = document.querySelector('#input-image img'); "
            f"return i && i.src !== {json.dumps(before)} && i.src.endsWith('flipped.png') && i.naturalWidth > 0; }})()",
            what="the uploaded image",
        )
        page.type_text("#prompt textarea", "Describe the image.")
        page.click("#generate")
        page.wait_for("document.querySelectorAll('#answer .token').length > 3", what="the answer's tokens")
        tokens = page.evaluate("[...document.querySelectorAll('#answer .token')].map(t => t.innerText.trim())")
        assert "circle" in tokens, tokens

        # click the token 'circle': its map, curves, modality label and summary appear
        page.click("#answer .token", index=tokens.index("circle"))
        page.wait_for(_MAP_LOADED, what="the map image", timeout=90)
        size = page.evaluate(
            "(() => { const i = document.querySelector('#map img'); return [i.naturalWidth, i.naturalHeight]; })()"
        )
        assert min(size) > 300, size
        page.wait_for(_loaded("#curves img"), what="the curves image")
        summary = page.evaluate("document.querySelector('#summary').innerText")
        assert "' circle'" in summary and "insertion AUC" in summary and "forwards" in summary
        modality = page.evaluate("document.querySelector('#modality').innerText")
        assert any(label in modality for label in LABELS), modality
        checked = page.evaluate(
            "[...document.querySelectorAll('#tokens input')].filter(i => i.checked).map(i => i.value)"
        )
        assert summary.startswith(f"token {checked[0]} ' circle'"), (checked, summary)

        shot = page.screenshot(tmp_path / "app.png")
        with Image.open(shot) as im:
            arr = np.asarray(im.convert("RGB"))
        assert arr.shape[1] == 1280 and arr.std() > 20

        # nothing but the app itself was requested: no fonts, scripts or analytics from elsewhere
        outside = [u for u in page.requested_urls() if not u.startswith((server, "data:", "blob:", "about:"))]
        assert outside == []


def test_the_chromium_profile_is_removed_even_while_helpers_still_write(tmp_path, monkeypatch, caplog):
    """Chromium's helper processes may write into the profile a moment after the browser ends:
    removing it is retried, and a profile that stays is a warning, never a failed test."""
    import shutil

    from mllm_attr.testing import browser

    calls = []
    real = shutil.rmtree

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) < 3:
            raise OSError(39, "Directory not empty")
        real(path, *args, **kwargs)

    (tmp_path / "profile" / "Default").mkdir(parents=True)
    monkeypatch.setattr(browser.shutil, "rmtree", flaky)
    browser._remove_tree(tmp_path / "profile", pause=0)
    assert len(calls) == 3 and not (tmp_path / "profile").exists()

    def stuck(path, *args, **kwargs):
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(browser.shutil, "rmtree", stuck)
    (tmp_path / "kept").mkdir()
    with caplog.at_level("WARNING", logger=browser.logger.name):
        browser._remove_tree(tmp_path / "kept", attempts=3, pause=0)
    assert "could not remove the Chromium profile" in caplog.text
