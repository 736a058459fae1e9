"""load_adapter without a network: the embedded model by name or by default, and quick, clear
errors (ModelNotFoundError, one CLI line, exit code 2) for a missing path or an uncached hub id."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mllm_attr.adapters import ModelNotFoundError, hub_unavailable_reason, registry
from mllm_attr.adapters.registry import resolve_model_source
from mllm_attr.assets import default_model_path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mllm_attr.cli"]
#: Nothing listens on the discard port of the loopback: a connection there is refused at once.
DEAD_ENDPOINT = "http://127.0.0.1:9"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def _env(offline: bool) -> dict[str, str]:
    """The test session's environment without the hub's offline switches (conftest sets them),
    or with HF_HUB_OFFLINE=1; the endpoint never reachable either way."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXY_VARS)}
    env.update({"HF_ENDPOINT": DEAD_ENDPOINT, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture
def online_env(monkeypatch):
    """In-process: offline mode off (env and huggingface_hub's import-time constant)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_network(monkeypatch):
    """Every TCP connect raises (and is recorded)."""
    attempts: list = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"network disabled by the test (connect to {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


# ------------------------------------------------------------------ the embedded model, offline

GUARDED_LOAD = textwrap.dedent(
    """
    import socket
    attempts = []
    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled by the test")
    socket.socket.connect = refuse
    real_getaddrinfo = socket.getaddrinfo
    def lookup(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("name lookup disabled by the test")
    socket.getaddrinfo = lookup
    from mllm_attr.adapters import load_adapter
    by_name = load_adapter("shapes-llava")
    by_default = load_adapter()
    assert type(by_name).__name__ == type(by_default).__name__ == "LlavaAdapter"
    assert by_name.name == by_default.name
    print("ATTEMPTS", len(attempts), attempts[:3])
    """
)


def test_embedded_model_loads_by_name_and_by_default_without_touching_the_network():
    env = _env(offline=False)
    env.pop("HF_ENDPOINT")
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_LOAD], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ATTEMPTS 0 []" in done.stdout, done.stdout + done.stderr[-2000:]


def test_the_embedded_name_resolves_to_the_shipped_directory(no_network):
    assert resolve_model_source("shapes-llava") == (default_model_path(), None)
    assert no_network == []


# ------------------------------------------------------------------ local paths that do not exist


@pytest.mark.parametrize("name", ["./nomodel", "/no/such/model", "~/no-such-model-dir", "a/b/c", "nomodel/"])
def test_a_missing_local_path_is_a_clear_error_before_transformers(name, no_network, monkeypatch):
    import transformers

    def forbidden(*args, **kwargs):
        raise AssertionError("transformers must not be called for a missing path")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", forbidden)
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="no model directory at") as info:
        registry.load_adapter(name)
    assert time.perf_counter() - t0 < 2
    assert "load_adapter('shapes-llava')" in str(info.value) and "--model" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and no_network == []


def test_a_missing_pathlike_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        registry.load_adapter(tmp_path / "absent")


def test_an_invalid_name_is_a_clear_error(no_network):
    with pytest.raises(ModelNotFoundError, match="neither an existing local path nor a valid hub id"):
        registry.load_adapter("not a model")
    assert no_network == []


# ------------------------------------------------------------------ hub ids


def test_uncached_hub_id_with_the_hub_unreachable_fails_within_seconds(online_env, no_network, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://192.0.2.1")  # an address literal: no name lookup
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache") as info:
        registry.load_adapter("someorg/somemodel")
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert "192.0.2.1:443" in msg and "network disabled by the test" in msg
    assert "load_adapter('shapes-llava')" in msg
    assert [a[1] for a in no_network] == [443]  # one probe, no retries


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_mode_answers_without_a_probe(var, online_env, no_network, monkeypatch):
    monkeypatch.setenv(var, "1")
    assert hub_unavailable_reason() == f"offline mode: {var}=1 is set"
    with pytest.raises(ModelNotFoundError, match=f"{var}=1"):
        registry.load_adapter("someorg/somemodel")
    assert no_network == []


def test_probe_of_a_silent_host_gives_up_after_its_timeout(online_env, monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("late")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    reason = hub_unavailable_reason(timeout=0.2)
    assert time.perf_counter() - t0 < 2 and "no answer within 0.2 s" in reason


def test_a_cached_hub_id_loads_from_the_cache_only_when_the_hub_is_unreachable(online_env, monkeypatch, tmp_path):
    """No network and no offline variable: transformers would retry every optional file that the
    cache lacks (measured: 310 s for a tiny model); the model and processor loads get
    local_files_only instead. With the hub reachable nothing is forced."""
    from huggingface_hub import constants

    snap = tmp_path / "models--someorg--cached" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "llava"}')
    (tmp_path / "models--someorg--cached" / "refs").mkdir()
    (tmp_path / "models--someorg--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(registry, "_model_type_of", lambda *a, **k: "llava")
    seen: list[dict] = []

    class Capture:
        model_types = ("llava",)

        @classmethod
        def from_pretrained(cls, source, **kwargs):
            seen.append(kwargs)
            return "adapter"

    monkeypatch.setitem(registry.ADAPTERS, "llava", Capture)
    monkeypatch.setattr(registry, "hub_unavailable_reason", lambda: "no connection (test)")
    assert resolve_model_source("someorg/cached") == ("someorg/cached", "no connection (test)")
    assert registry.load_adapter("someorg/cached") == "adapter"
    assert seen[-1]["local_files_only"] is True and seen[-1]["processor_kwargs"] == {"local_files_only": True}

    monkeypatch.setattr(registry, "hub_unavailable_reason", lambda: None)
    assert resolve_model_source("someorg/cached") == ("someorg/cached", None)
    registry.load_adapter("someorg/cached")
    assert "local_files_only" not in seen[-1] and "processor_kwargs" not in seen[-1]


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("offline", [False, True], ids=["no-offline-env", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize(
    "model,message",
    [("./nomodel", "no model directory at './nomodel'"), ("someorg/somemodel", "not in the local Hugging Face cache")],
)
def test_cli_model_errors_are_one_line_within_seconds(model, message, offline, tmp_path):
    t0 = time.perf_counter()
    done = subprocess.run(
        [*CLI, "explain", "--model", model, "-q", "--out", str(tmp_path / "out")],
        env=_env(offline),
        capture_output=True,
        text=True,
        timeout=20,
        cwd=tmp_path,
    )
    seconds = time.perf_counter() - t0
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("mllm-attr: error: "), done.stderr[-3000:]
    assert message in lines[0] and "--model shapes-llava" in lines[0]
    assert not (tmp_path / "out").exists()
    print(f"{model} offline={offline}: {seconds:.1f} s")
