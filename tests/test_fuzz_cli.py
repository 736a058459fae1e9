"""Property-based fuzzing of the command line, in-process, on a tiny random LLaVA.

Every call ends in exit code 0 with all output files (loadable, the image's size), or exit
code 2 with one ``mllm-attr: error: ...`` line (argparse's ``mllm-attr explain: error: ...``
for malformed options) and no traceback; a failed call leaves the working tree exactly as it
was (no partial output directory, no temp directories). The CLI runs with the working
directory inside a per-case sandbox, so relative paths such as ``.`` stay in it.

Reproducible: derandomized, no example database. ``MLLM_ATTR_FUZZ_STATS=path.jsonl`` appends
the outcome counts; ``MLLM_ATTR_FUZZ_SURVEY=1`` records bug outcomes instead of failing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from mllm_attr import Explanation
from mllm_attr.cli import main
from mllm_attr.testing.tiny_models import save_tiny

# Hypothesis keeps caches (constants, unicode tables) in its storage directory, by default
# ./.hypothesis in the repository: keep them in the system temp directory instead. Examples are
# never stored (database=None).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "mllm_attr_hypothesis")

SURVEY = os.environ.get("MLLM_ATTR_FUZZ_SURVEY") == "1"
OUTCOMES: Counter = Counter()
OUTPUT_FILES = {"explanation.json", "saliency.npy", "arrays.npz", "heatmap.png"}
ERROR_LINE = re.compile(r"^mllm-attr(?: explain)?: error: \S")
CLI_FUZZ = settings(
    max_examples=60,
    deadline=None,
    # Cases come from a seed (see cli_case): shrinking seeds means nothing and reloads the model
    # hundreds of times, so a failure is reported as found.
    phases=(Phase.explicit, Phase.generate),
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on the shared 2-core machine two threads oversubscribe and every
    forward of the tiny model gets 10-40x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _write_outcomes():
    yield
    path = os.environ.get("MLLM_ATTR_FUZZ_STATS")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            for (prop, cat, detail), n in sorted(OUTCOMES.items()):
                fh.write(
                    json.dumps({"file": Path(__file__).name, "property": prop, "outcome": cat, "error": detail, "n": n})
                    + "\n"
                )


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny LLaVA saved once, and one image file of each kind (good and bad)."""
    root = tmp_path_factory.mktemp("cli_fuzz")
    model = save_tiny("llava", root / "model")
    rng = np.random.default_rng(0)
    img_dir = root / "images"
    img_dir.mkdir()
    rgb = rng.integers(1, 255, (32, 32, 3), dtype=np.uint8)
    grey = rng.integers(0, 255, (24, 24), dtype=np.uint8)
    images = {
        "rgb": ("rgb.png", Image.fromarray(rgb), "PNG"),
        "wide": ("wide.png", Image.fromarray(rng.integers(1, 255, (8, 64, 3), dtype=np.uint8)), "PNG"),
        "grey": ("grey.png", Image.fromarray(grey, "L"), "PNG"),
        "rgba": ("rgba.png", Image.fromarray(rng.integers(0, 255, (28, 20, 4), dtype=np.uint8), "RGBA"), "PNG"),
        "deep": ("deep.png", Image.fromarray(grey.astype(np.uint16) * 200), "PNG"),
        "palette": ("palette.gif", Image.fromarray(rgb).convert("P"), "GIF"),
        "jpeg": ("photo.jpg", Image.fromarray(rng.integers(1, 255, (30, 40, 3), dtype=np.uint8)), "JPEG"),
        "tiny": ("tiny.png", Image.fromarray(rgb[:4, :4]), "PNG"),
    }
    paths = {}
    for key, (name, img, fmt) in images.items():
        img.save(img_dir / name, fmt)
        paths[key] = img_dir / name
    good = (img_dir / "rgb.png").read_bytes()
    (img_dir / "truncated.png").write_bytes(good[: len(good) // 2])
    (img_dir / "notes.png").write_text("not an image")
    (img_dir / "bomb.png").write_bytes(_png_header_only(30_000, 30_000))
    (img_dir / "a_dir.png").mkdir()
    paths.update(
        {
            "truncated": img_dir / "truncated.png",
            "text": img_dir / "notes.png",
            "bomb": img_dir / "bomb.png",
            "dir": img_dir / "a_dir.png",
            "missing": img_dir / "missing.png",
        }
    )
    no_config = root / "not_a_model"
    no_config.mkdir()
    (no_config / "weights.txt").write_text("x")
    return SimpleNamespace(root=root, model=model, images=paths, not_a_model=no_config)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr); a traceback escapes as an exception."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, --version, malformed options
            code = exc.code if isinstance(exc.code, int) else 2
    return int(code), out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


GOOD_IMAGES = ["rgb", "wide", "grey", "rgba", "deep", "palette", "jpeg"]
BAD_IMAGES = ["tiny", "truncated", "text", "bomb", "dir", "missing"]
OUT_KINDS = ["fresh"] * 6 + [
    "nested",
    "dotdot",
    "existing-output",
    "existing-empty",
    "existing-nonempty",
    "existing-file",
    "cwd",
]
#: option -> (valid values, weird values)
OPTIONS: dict[str, tuple[list[str], list[str]]] = {
    "--prompt": (["What color is the circle?", "Describe the image.", "is " * 60], ["", "ünïcode ☃ $$"]),
    "--occurrence": (["1", "2"], ["0", "-1", "x"]),
    "--segmenter": (["slic", "grid", "felzenszwalb"], ["bogus"]),
    "--baseline": (["black", "blur", "mean"], ["white"]),
    "--search": (["greedy", "scan", "efficient", "bidirectional", "phasewin", "lazy"], ["exact"]),
    "--lambda1": (["1", "0.5", "0"], ["nan", "inf", "-1", "x", "1e308"]),
    "--lambda2": (["1", "2"], ["0", "nan", "-inf", "x"]),
    "--batch-size": (["1", "4", "16"], ["0", "-1", "x"]),
    "--max-forwards": (["60", "200", "1000"], ["2", "0", "x"]),
    "--seed": (["0", "7"], ["-1", "x"]),
    "--dtype": (["float32", "auto"], ["bf16", "float7"]),
    "--family": (["llava"], ["martian", "qwen2_vl"]),
}
TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "--target": (["all", "the", "red", "circle", "a b"], ["zebra", "", " ", "$$"]),
    "--target-index": (["0", "-1", "0,1", "1"], ["99", "", "a", "1,,2", "-99"]),
    "--answer": (["yes", "a red circle", "no"], ["", "  ", "$x$"]),
}


def cli_case(seed: int) -> dict:
    """One random command line, drawn from a numpy generator seeded by hypothesis so that the mix
    is controlled: half the cases are fully valid, the others break one or two things at once
    (an option value, the image, the model or the output directory)."""
    rng = np.random.default_rng(seed)

    def pick(values: list) -> object:
        return values[int(rng.integers(len(values)))]

    axes = [*TARGETS, *OPTIONS, "--regions", "--max-new-tokens", "image", "model", "out"]
    n_faults = int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))
    faults = set(rng.choice(axes, size=n_faults, replace=False).tolist())

    def value(name: str, valid: list[str], weird: list[str]) -> str:
        return str(pick(weird if name in faults else valid))

    args: list[str] = []
    target_flags = [f for f in TARGETS if f in faults] or [None, *TARGETS]
    flag = pick(target_flags)
    if flag is not None:
        args += [str(flag), value(str(flag), *TARGETS[str(flag)])]
    for name, (valid, weird) in OPTIONS.items():
        if name in faults or rng.random() < 0.5:
            args += [name, value(name, valid, weird)]
    if rng.random() < 0.3:
        args.append("--include-eos")
    args += ["--regions", value("--regions", ["2", "3", "4", "6", "8"], ["1", "0", "-3", "5000", "x", "2.5"])]
    args += ["--max-new-tokens", value("--max-new-tokens", ["1", "3", "5"], ["0", "-2", "x"])]
    return {
        "image": str(pick(BAD_IMAGES if "image" in faults else GOOD_IMAGES)),
        "model": str(pick(["missing", "not-a-model"]) if "model" in faults else "tiny"),
        "out": str(pick(OUT_KINDS[6:] if "out" in faults else ["fresh", "fresh", "fresh", "nested", "dotdot"])),
        "overwrite": bool(rng.random() < 0.5),
        "args": args,
    }


def prepare_out(kind: str, sandbox: Path) -> str:
    """The --out argument for ``kind``; creates what already exists there."""
    if kind == "fresh":
        return str(sandbox / "out")
    if kind == "nested":
        return str(sandbox / "runs" / "a b" / "ü" / "out")
    if kind == "dotdot":
        return str(sandbox / "zz" / ".." / "out")
    if kind == "cwd":
        return "."
    out = sandbox / "out"
    if kind == "existing-file":
        out.write_text("a file in the way")
    elif kind == "existing-empty":
        out.mkdir()
    elif kind == "existing-nonempty":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif kind == "existing-output":
        out.mkdir()
        for name in OUTPUT_FILES:
            (out / name).write_bytes(b"old")
    return str(out)


def judge(
    code: int, stdout: str, stderr: str, out: Path, before: dict, sandbox: Path, image_size: tuple[int, int] | None
) -> str:
    if code == 0:
        files = {p.name for p in out.iterdir()} if out.is_dir() else set()
        assert files == OUTPUT_FILES, f"exit 0 but the output has {sorted(files)}"
        expl = Explanation.load(out)
        if image_size is not None:
            assert expl.saliency().shape == (image_size[1], image_size[0])
        assert "insertion AUC" in stdout
        after = snapshot(sandbox)
        rel_out = "" if out == sandbox else str(out.relative_to(sandbox))
        inside = {
            p
            for p in after
            if rel_out == "" or p == rel_out or p.startswith(rel_out + os.sep) or rel_out.startswith(p + os.sep)
        }
        assert set(after) - set(before) <= inside, f"written outside {out}: {sorted(set(after) - set(before) - inside)}"
        # Files that were not a previous output are never deleted (see test_security's overwrite rule).
        for rel, data in before.items():
            if rel == "keep.txt" or rel.endswith("thesis.tex"):
                assert after.get(rel) == data, f"{rel} was deleted or changed"
        return "result"
    assert code == 2, f"exit code {code}; stderr: {stderr[-500:]}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines and ERROR_LINE.match(lines[-1]), f"last stderr line is not one error line: {stderr[-500:]!r}"
    assert sum("error:" in ln for ln in lines) == 1, stderr
    assert "Traceback" not in stderr
    after = snapshot(sandbox)
    assert after == before, f"a failed call changed the files: {sorted(set(after) ^ set(before))}"
    return "clear"


@settings(CLI_FUZZ, max_examples=60)
@given(seed=st.integers(0, 2**32 - 1))
def test_cli_random_arguments(seed, env, tmp_path_factory):
    case = cli_case(seed)
    sandbox = tmp_path_factory.mktemp("cli_case")
    (sandbox / "keep.txt").write_text("user file")
    out_arg = prepare_out(case["out"], sandbox)
    model = {"tiny": str(env.model), "missing": str(env.root / "no_such_model"), "not-a-model": str(env.not_a_model)}[
        case["model"]
    ]
    image_path = env.images[case["image"]]
    argv = ["explain", "--model", model, "--image", str(image_path), "--out", out_arg, "-q", *case["args"]]
    if case["overwrite"]:
        argv.append("--overwrite")
    before = snapshot(sandbox)
    image_size = None
    if case["image"] in GOOD_IMAGES:
        with Image.open(image_path) as im:
            image_size = im.size
    cwd = os.getcwd()
    os.chdir(sandbox)
    try:
        code, stdout, stderr = run_cli(argv)
    except BaseException as exc:  # noqa: BLE001 - a traceback out of main() is a bug
        OUTCOMES[("cli", "bug", type(exc).__name__)] += 1
        if SURVEY:
            return
        raise AssertionError(f"main({argv}) raised {type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(cwd)
    out = Path(os.path.normpath(sandbox / out_arg))
    try:
        cat = judge(code, stdout, stderr, out, before, sandbox, image_size)
    except AssertionError as exc:
        first = (str(exc).strip().splitlines() or ["assertion"])[0]
        OUTCOMES[("cli", "bug", f"exit {code}: " + re.sub(r"/tmp/\S+", "<tmp>", first)[:70])] += 1
        if SURVEY:
            return
        raise
    detail = "" if cat == "result" else stderr.strip().splitlines()[-1].split("error:", 1)[1].strip()[:40]
    OUTCOMES[("cli", cat, "" if cat == "result" else re.sub(r"'[^']*'|\d+", "…", detail))] += 1
    assert (sandbox / "keep.txt").read_text() == "user file"


def test_cli_small_budget_is_a_clear_error(env, tmp_path):
    """BUG (lead): --max-forwards below what the curves need (2 + 2(n-1)) ends in a
    BudgetExhausted traceback (RuntimeError) after the model ran."""
    code, _, err = run_cli(
        [
            "explain",
            "--model",
            str(env.model),
            "--image",
            str(env.images["rgb"]),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--regions",
            "4",
            "--segmenter",
            "grid",
            "--max-new-tokens",
            "2",
            "--max-forwards",
            "5",
        ]
    )
    assert code == 2 and "max_forwards" in err and not (tmp_path / "o").exists()


def test_cli_answer_with_dollar_signs_is_saved(env, tmp_path):
    """BUG (lead): a counterfactual answer (or a generated one) containing '$$' made the heatmap
    title fail to parse as mathtext, so the run ended in an error after the whole explanation."""
    code, _, err = run_cli(
        [
            "explain",
            "--model",
            str(env.model),
            "--image",
            str(env.images["rgb"]),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--regions",
            "2",
            "--segmenter",
            "grid",
            "--answer",
            "costs $$",
        ]
    )
    assert code == 0, err
    assert {p.name for p in (tmp_path / "o").iterdir()} == OUTPUT_FILES


def test_cli_out_dot_with_overwrite_is_refused_cleanly(env, tmp_path, monkeypatch):
    """BUG (lead): --out . --overwrite ends in an OSError traceback (renaming '.') and leaves a
    '..old-*' directory behind. It must be a one-line refusal with the directory unchanged."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    code, _, err = run_cli(
        [
            "explain",
            "--model",
            str(env.model),
            "--image",
            str(env.images["rgb"]),
            "--out",
            ".",
            "--overwrite",
            "-q",
            "--regions",
            "2",
            "--segmenter",
            "grid",
            "--max-new-tokens",
            "1",
        ]
    )
    assert code == 2 and ERROR_LINE.match(err.strip().splitlines()[-1])
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma", "gemma3"])
def test_cli_family_that_does_not_match_the_checkpoint_is_a_clear_error(family, env, tmp_path):
    """BUG (lead): --family forces an adapter class whatever the checkpoint is; on the LLaVA
    checkpoint qwen2_vl/paligemma end in AttributeError and gemma3/internvl in RuntimeError
    tracebacks from inside transformers. Fix (load_adapter): when the config's model_type maps
    to a known family other than the forced one (and the forced one is not 'auto'), raise
    ValueError naming both."""
    code, _, err = run_cli(
        [
            "explain",
            "--model",
            str(env.model),
            "--image",
            str(env.images["rgb"]),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--regions",
            "2",
            "--max-new-tokens",
            "1",
            "--family",
            family,
        ]
    )
    assert code == 2 and family in err and "llava" in err, err
    assert not (tmp_path / "o").exists()
