"""Headless Chromium for the checks that need a real browser (the HTML report's tests, the
explorer's test, ``eval/pictures.py``): one command line, two ways to drive it.

* :func:`run_chromium`: one shot, ``chromium --headless ... URL`` with ``--screenshot=`` or
  ``--dump-dom`` (what the report tests and the README pictures use);
* :class:`DevToolsPage`: a live page driven over the Chrome DevTools Protocol (a websocket to
  ``--remote-debugging-port``; the ``websockets`` package of the test extra): navigate, run
  JavaScript, wait for a condition, click like a user (mouse events at the element's centre),
  take screenshots, and list every request the page made.

Debian's ``chromium`` (``apt-get install -y chromium``) is enough: no chromedriver, no browser
download. Every profile is a fresh temporary folder, and the flags turn off Chromium's own
traffic (component updates, sync, background networking, QUIC).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

#: The flags every headless run gets (before the caller's own).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Why a browser check cannot run, for skips and log lines.
INSTALL_HINT = "Chromium is not installed (apt-get install -y chromium)"


def find_chromium() -> str | None:
    """The Chromium executable on ``PATH`` (``chromium`` or ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_command(
    exe: str, url: str | None, *extra: str, profile: str | os.PathLike, window: tuple[int, int] = (1200, 900)
) -> list[str]:
    """The headless command line: :data:`CHROMIUM_FLAGS`, the profile folder, the window size
    (``width, height``), ``extra`` flags and the URL (left out when None)."""
    width, height = window
    return [
        exe,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        *extra,
        *([] if url is None else [url]),
    ]


def run_chromium(
    exe: str,
    url: str,
    *extra: str,
    profile: str | os.PathLike,
    window: tuple[int, int] = (1200, 900),
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run one headless Chromium command (:func:`chromium_command`) to its end; its output is captured as text."""
    cmd = chromium_command(exe, url, *extra, profile=profile, window=window)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(
    url: str, png: str | os.PathLike, *, window: tuple[int, int] = (1200, 1600), timeout: float = 180
) -> Path | None:
    """A screenshot of ``url`` (scrollbars hidden) into ``png``; None, with a warning, without Chromium.

    Raises:
        RuntimeError: Chromium failed or wrote no file (its exit code and the end of its stderr).
    """
    exe = find_chromium()
    png = Path(png)
    if exe is None:
        logger.warning("%s: no screenshot of %s", INSTALL_HINT, url)
        return None
    with tempfile.TemporaryDirectory() as profile:
        done = run_chromium(
            exe, url, "--hide-scrollbars", f"--screenshot={png}", profile=profile, window=window, timeout=timeout
        )
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed (exit {done.returncode}): {done.stderr[-1500:]}")
    return png


def _remove_tree(path: Path, *, attempts: int = 50, pause: float = 0.1) -> None:
    """``shutil.rmtree(path)``, retried while files still appear in it (a process that is ending may
    write one more); a warning, not an error, if it is still there after ``attempts``."""
    for _ in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(pause)
    logger.warning("could not remove the Chromium profile %s; leaving it", path)


class DevToolsError(RuntimeError):
    """Chromium did not start, a DevTools command failed, or a wait ran out of time."""


class DevToolsPage:
    """One headless Chromium page driven over the DevTools protocol; a context manager.

    Args:
        exe: the Chromium executable (default: :func:`find_chromium`).
        window: the page's size in CSS pixels (``width, height``).
        timeout: seconds to wait for Chromium to start and for each command's answer.

    Example:
        >>> with DevToolsPage() as page:                                    # doctest: +SKIP
        ...     page.navigate("http://127.0.0.1:7860/")
        ...     page.wait_for("document.querySelector('#generate') !== null")
        ...     page.click("#generate")
        ...     page.screenshot("shot.png")
    """

    def __init__(self, exe: str | None = None, *, window: tuple[int, int] = (1280, 1000), timeout: float = 60) -> None:
        self.exe = exe or find_chromium()
        if self.exe is None:
            raise DevToolsError(INSTALL_HINT)
        self.window = window
        self.timeout = float(timeout)
        #: Every DevTools event received so far (``{"method": ..., "params": ...}``), in order.
        self.events: list[dict[str, Any]] = []
        self._profile: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None
        self._ws: Any = None
        self._stack: contextlib.ExitStack | None = None
        self._next_id = 0

    # -- start and stop ------------------------------------------------------------------------
    def __enter__(self) -> DevToolsPage:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start Chromium on a blank page, connect to it and enable the page, runtime and network events."""
        from websockets.sync.client import connect

        # Chromium's helper processes (zygote, renderer, crashpad) may still write into the profile
        # for a moment after the browser process ends: the folder is removed with retries (close).
        self._profile = tempfile.TemporaryDirectory(prefix="mllm-attr-chromium-", ignore_cleanup_errors=True)
        profile = Path(self._profile.name)
        cmd = chromium_command(
            str(self.exe),
            "about:blank",
            "--remote-debugging-port=0",
            "--hide-scrollbars",
            profile=profile,
            window=self.window,
        )
        # A session of its own, so that close() can end the helper processes with the browser.
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise DevToolsError(f"chromium exited with {self._proc.returncode} before listening: {err[-1500:]}")
            if time.monotonic() > deadline:
                raise DevToolsError(f"chromium did not open its DevTools port within {self.timeout:.0f} s")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as resp:
            targets = json.load(resp)
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            raise DevToolsError(f"chromium has no page target: {targets}")
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout)
        )
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")

    def close(self) -> None:
        """Close the connection, end Chromium (the process this object started) and remove its profile."""
        if self._stack is not None:
            with contextlib.suppress(Exception):  # a connection Chromium already dropped
                self._stack.close()
            self._stack = None
            self._ws = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the helpers, if any are left
                os.killpg(self._proc.pid, signal.SIGKILL)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None
        if self._profile is not None:
            _remove_tree(Path(self._profile.name))
            self._profile.cleanup()  # ignores what could not be removed (logged by _remove_tree)
            self._profile = None

    # -- the protocol ----------------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its ``result`` (events that arrive meanwhile go to :attr:`events`)."""
        if self._ws is None:
            raise DevToolsError("the page is not started (use it as a context manager)")
        self._next_id += 1
        msg_id = self._next_id
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DevToolsError(f"no answer to {method} within {self.timeout:.0f} s")
            msg = json.loads(self._ws.recv(timeout=left))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise DevToolsError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited; JSON-able values)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise DevToolsError(f"JavaScript error in {expression[:120]!r}: {text}")
        return result.get("result", {}).get("value")

    def navigate(self, url: str, *, wait: bool = True) -> None:
        """Load ``url``; with ``wait``, until the document has finished loading."""
        self.send("Page.navigate", url=url)
        if wait:
            self.wait_for("document.readyState === 'complete'", what=f"{url} to load")

    def wait_for(self, expression: str, *, timeout: float | None = None, what: str | None = None) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value.

        Raises:
            DevToolsError: still falsy after ``timeout`` seconds (default: the page's timeout).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise DevToolsError(f"timed out waiting for {what or expression}")
            time.sleep(0.1)

    def click(self, selector: str, *, index: int = 0) -> None:
        """Click the ``index``-th element matching a CSS selector as a user would: scrolled into
        view, then a left mouse press and release at its centre."""
        box = self.evaluate(
            f"""(() => {{
                const el = document.querySelectorAll({json.dumps(selector)})[{int(index)}];
                if (!el) return null;
                el.scrollIntoView({{block: "center", inline: "center"}});
                const r = el.getBoundingClientRect();
                return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height];
            }})()"""
        )
        if not box or box[2] <= 0 or box[3] <= 0:
            raise DevToolsError(f"nothing visible to click at {selector!r} [{index}]")
        x, y = box[0], box[1]
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_text(self, selector: str, text: str) -> None:
        """Focus the element, select what it holds and type ``text`` over it (real key input)."""
        self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.focus(); el.select(); }})()"
        )
        self.send("Input.insertText", text=text)

    def set_files(self, selector: str, paths: Sequence[str | os.PathLike]) -> None:
        """Give a file ``<input>`` these files, as choosing them in the file dialog does."""
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise DevToolsError(f"no file input at {selector!r}")
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(Path(p).resolve()) for p in paths])

    def screenshot(self, path: str | os.PathLike, *, full_page: bool = True) -> Path:
        """A PNG of the page (the whole page with ``full_page``, else the window) into ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def requested_urls(self) -> list[str]:
        """Every URL the page requested so far (``Network.requestWillBeSent``), in order."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


__all__ = [
    "CHROMIUM_FLAGS",
    "DevToolsError",
    "DevToolsPage",
    "INSTALL_HINT",
    "chromium_command",
    "find_chromium",
    "run_chromium",
    "screenshot",
]
