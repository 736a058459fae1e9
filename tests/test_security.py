"""Security checks: no pickle, no remote code by default, safetensors only, contained output paths.

Rules checked here:

- No pickle is ever loaded, except by the data-only unpickler of RefCOCO refs files
  (``mllm_attr/data/refcoco.py``), which refuses every global; ``np.load`` never gets
  ``allow_pickle=True``; no ``torch.load``, ``eval``/``exec``, ``yaml.load``, ``shell=True``.
- ``trust_remote_code`` is off unless the caller turns it on, everywhere it is passed on.
- Model weights are safetensors: what the package writes is ``*.safetensors`` and a
  pickle-based checkpoint (``pytorch_model.bin``) is not loaded.
- Output paths: :meth:`Explanation.save` writes exactly into the *resolved* requested
  directory (``..`` components and symlinks resolved, as any Unix tool writing into
  ``out/`` would) and creates or changes nothing outside it; file names derived from data
  (question ids) stay one path component inside the requested directory.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import pickle
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import mllm_attr
from mllm_attr import Explainer, Explanation, load_adapter
from mllm_attr.testing.fake import make_fake_adapter

# Hypothesis keeps caches (constants, unicode tables) in its storage directory, by default
# ./.hypothesis in the repository: keep them in the system temp directory instead. Examples are
# never stored (database=None).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "mllm_attr_hypothesis")

PKG = Path(mllm_attr.__file__).resolve().parent
REPO = PKG.parent
#: The one module allowed to unpickle (data only, every global refused).
PICKLE_ALLOWED = {PKG / "data" / "refcoco.py"}
SAFE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def python_sources() -> list[Path]:
    """The package plus the runnable scripts shipped next to it."""
    files = sorted(PKG.rglob("*.py"))
    for extra in ("eval", "adapters"):
        files += sorted((REPO / extra).rglob("*.py"))
    files += [p for p in [REPO / "dev.py"] if p.is_file()]
    return [f for f in files if "__pycache__" not in f.parts]


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


FORBIDDEN_CALLS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "_pickle.load",
    "torch.load",
    "joblib.load",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "pd.read_pickle",
    "pandas.read_pickle",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "os.system",
    "os.popen",
    "np.load_pickle",
}
FORBIDDEN_MODULES = {"dill", "cloudpickle", "joblib", "marshal", "shelve", "cPickle", "_pickle"}
#: keyword=value pairs that switch a safety off.
FORBIDDEN_KEYWORDS = {
    ("allow_pickle", True),
    ("weights_only", False),
    ("trust_remote_code", True),
    ("use_safetensors", False),
    ("safe_serialization", False),
    ("shell", True),
}


def scan(path: Path) -> list[str]:
    """Unsafe constructs in one source file, as ``file:line: what`` strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    found: list[str] = []
    pickle_ok = path in PICKLE_ALLOWED
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                if root in FORBIDDEN_MODULES or (root == "pickle" and not pickle_ok):
                    found.append(f"{rel}:{node.lineno}: imports {name}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS and not (pickle_ok and name == "pickle.Unpickler"):
                found.append(f"{rel}:{node.lineno}: calls {name}")
            if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                found.append(f"{rel}:{node.lineno}: calls {node.func.id}()")
            for kw in node.keywords:
                if isinstance(kw.value, ast.Constant) and (kw.arg, kw.value.value) in FORBIDDEN_KEYWORDS:
                    found.append(f"{rel}:{node.lineno}: passes {kw.arg}={kw.value.value}")
        elif isinstance(node, ast.ClassDef) and any(
            _dotted(b) in ("pickle.Unpickler", "Unpickler") for b in node.bases
        ):
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if "find_class" not in methods:
                found.append(f"{rel}:{node.lineno}: an Unpickler subclass without a restrictive find_class")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if arg.arg == "trust_remote_code" and not (
                    isinstance(default, ast.Constant) and default.value is False
                ):
                    found.append(f"{rel}:{node.lineno}: {node.name}(trust_remote_code=...) does not default to False")
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if (
                    isinstance(k, ast.Constant)
                    and k.value == "trust_remote_code"
                    and isinstance(v, ast.Constant)
                    and v.value is True
                ):
                    found.append(f"{rel}:{node.lineno}: a config dict sets trust_remote_code to True")
    return found


def test_no_unsafe_loading_or_code_execution_in_the_sources():
    files = python_sources()
    assert len(files) > 30, "the source scan found suspiciously few files"
    problems = [p for f in files for p in scan(f)]
    assert not problems, "unsafe constructs:\n" + "\n".join(problems)


def test_the_scanner_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, dill\nimport numpy as np\nimport torch\n"
        "pickle.loads(b'')\ntorch.load('x')\nnp.load('x', allow_pickle=True)\neval('1')\n"
        "def f(trust_remote_code=True): pass\nclass U(pickle.Unpickler): pass\nCFG = {'trust_remote_code': True}\n"
    )
    found = "\n".join(scan(bad))
    for what in (
        "imports pickle",
        "imports dill",
        "calls pickle.loads",
        "calls torch.load",
        "allow_pickle=True",
        "calls eval()",
        "does not default to False",
        "without a restrictive find_class",
        "config dict",
    ):
        assert what in found, what


def test_explanation_load_passes_allow_pickle_false_explicitly():
    src = inspect.getsource(Explanation.load)
    calls = [
        n
        for n in ast.walk(ast.parse(inspect.cleandoc("\n" + src)))
        if isinstance(n, ast.Call) and _dotted(n.func) == "np.load"
    ]
    assert calls, "Explanation.load no longer uses np.load: update this test"
    for call in calls:
        kws = {kw.arg: kw.value for kw in call.keywords}
        assert isinstance(kws.get("allow_pickle"), ast.Constant) and kws["allow_pickle"].value is False


# ---------------------------------------------------------------------------------------------
# the data-only unpickler (RefCOCO refs files)


class _Evil:
    """Unpickling this runs a shell command (it must never get that far)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", ["system", "eval", "class", "nested"])
def test_refcoco_unpickler_refuses_malicious_pickles(payload, tmp_path):
    from mllm_attr.data.refcoco import load_data_pickle

    marker = tmp_path / "pwned"
    obj = {
        "system": lambda: [{"ref_id": 1, "x": _Evil(marker)}],
        "eval": lambda: _EvalEvil(marker),
        "class": lambda: SimpleNamespace(a=1),
        "nested": lambda: {"refs": [[1, 2, {"deep": _Evil(marker)}]]},
    }[payload]()
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ValueError, match="refused"):
        load_data_pickle(path)
    assert not marker.exists()


def test_refcoco_unpickler_loads_plain_data(tmp_path):
    from mllm_attr.data.refcoco import load_data_pickle

    data = [
        {"ref_id": 1, "sentences": [{"sent": "the red circle", "tokens": ["the", "red"]}], "box": (1.5, 2, None, True)}
    ]
    path = tmp_path / "refs.p"
    path.write_bytes(pickle.dumps(data, protocol=2))
    assert load_data_pickle(path) == data


@settings(SAFE, max_examples=60)
@given(blob=st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(lambda b: b"\x80\x02" + b)))
def test_refcoco_unpickler_on_random_bytes(blob, tmp_path_factory):
    from mllm_attr.data.refcoco import load_data_pickle

    path = tmp_path_factory.mktemp("pkl") / "refs.p"
    path.write_bytes(blob)
    with contextlib.suppress(ValueError):
        load_data_pickle(path)


# ---------------------------------------------------------------------------------------------
# trust_remote_code


def test_trust_remote_code_defaults_to_false_in_every_signature():
    from mllm_attr.adapters._processors import load_processor
    from mllm_attr.adapters.registry import ADAPTERS

    funcs = [load_adapter, load_processor] + [cls.from_pretrained for cls in ADAPTERS.values()]
    for fn in funcs:
        param = inspect.signature(fn).parameters.get("trust_remote_code")
        assert param is not None and param.default is False, fn


def test_cli_does_not_trust_remote_code_unless_asked():
    from mllm_attr.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["explain"]).trust_remote_code is False
    assert parser.parse_args(["explain", "--trust-remote-code"]).trust_remote_code is True


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread (two oversubscribe the shared 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    from mllm_attr.testing.tiny_models import save_tiny

    return save_tiny("llava", tmp_path_factory.mktemp("llava") / "model")


def _capture(monkeypatch, owner, name, calls, *, raise_after=None):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append((f"{owner.__name__}.{name}", kwargs))
        if raise_after is not None:
            raise raise_after
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize("asked", [None, False, True])
def test_load_adapter_passes_trust_remote_code_only_when_asked(asked, llava_dir, monkeypatch):
    import transformers

    calls: list = []
    _capture(monkeypatch, transformers.LlavaForConditionalGeneration, "from_pretrained", calls)
    _capture(monkeypatch, transformers.AutoProcessor, "from_pretrained", calls)
    kwargs = {} if asked is None else {"trust_remote_code": asked}
    load_adapter(llava_dir, **kwargs)
    assert {name for name, _ in calls} >= {
        "LlavaForConditionalGeneration.from_pretrained",
        "AutoProcessor.from_pretrained",
    }
    for name, kw in calls:
        assert kw.get("trust_remote_code") is bool(asked), (name, kw)


def test_hub_ids_are_resolved_without_remote_code(monkeypatch):
    """For a hub id the config is read with AutoConfig: that call must not trust remote code either."""
    import transformers

    calls: list = []

    class Stop(Exception):
        pass

    def fake_config(name, **kwargs):
        calls.append(("AutoConfig.from_pretrained", kwargs))
        return SimpleNamespace(model_type="llava")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake_config)
    _capture(monkeypatch, transformers.LlavaForConditionalGeneration, "from_pretrained", calls, raise_after=Stop())
    with pytest.raises(Stop):
        load_adapter("some-org/some-model")
    assert [n for n, _ in calls] == ["AutoConfig.from_pretrained", "LlavaForConditionalGeneration.from_pretrained"]
    assert all(kw.get("trust_remote_code") is False for _, kw in calls)


# ---------------------------------------------------------------------------------------------
# safetensors only

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".p", ".joblib", ".npy_pickle")


def test_saved_models_are_safetensors(llava_dir):
    names = [p.name for p in Path(llava_dir).iterdir()]
    assert any(n.endswith(".safetensors") for n in names), names
    assert not [n for n in names if n.endswith(PICKLE_SUFFIXES)], names


def test_shipped_assets_hold_no_pickles():
    assets = PKG / "assets"
    files = [p for p in assets.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(PICKLE_SUFFIXES)], files
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth")]
    assert all(p.suffix == ".safetensors" for p in weights), weights


def _pickle_checkpoint(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose weights are a (harmless) pickle-based pytorch_model.bin."""
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    for st_file in dst.glob("*.safetensors"):
        st_file.unlink()
    torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
    return dst


def test_pickle_checkpoint_is_not_loaded(llava_dir, tmp_path):
    """BUG (lead): a directory with only pytorch_model.bin loads (through torch.load). Pass
    use_safetensors=True in HFAdapter.from_pretrained and turn transformers' OSError into a
    ValueError that says the weights must be safetensors."""
    model_dir = _pickle_checkpoint(Path(llava_dir), tmp_path / "bin_model")
    with pytest.raises((ValueError, FileNotFoundError), match="safetensors"):
        load_adapter(model_dir)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about the pickle protocol
def test_malicious_pickle_checkpoint_never_runs(llava_dir, tmp_path):
    model_dir = _pickle_checkpoint(Path(llava_dir), tmp_path / "evil_model")
    marker = tmp_path / "pwned"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _Evil(marker)}))
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; nothing may run
        load_adapter(model_dir)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Explanation.load never unpickles


@pytest.fixture(scope="module")
def expl() -> Explanation:
    img = np.random.default_rng(0).integers(1, 255, (16, 16, 3), dtype=np.uint8)
    return Explainer(make_fake_adapter(img, {}, answer="a cat"), n_regions=4, segmenter="grid")(img, prompt="p")


def _replace_arrays(d: Path, **changes) -> None:
    with np.load(d / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(d / "arrays.npz", **arrays)  # np.savez pickles object arrays: that is the attack


@pytest.mark.parametrize("evil", [False, True])
def test_load_refuses_object_arrays(evil, expl, tmp_path):
    d = expl.save(tmp_path / "out", heatmap=False)
    marker = tmp_path / "pwned"
    payload = np.array([_Evil(marker) if evil else "x", 1, None], dtype=object)
    _replace_arrays(d, ordering=payload)
    with pytest.raises(ValueError, match="(?i)pickle|object"):
        Explanation.load(d)
    assert not marker.exists()


def test_load_refuses_a_pickle_disguised_as_npz(expl, tmp_path):
    d = expl.save(tmp_path / "out", heatmap=False)
    marker = tmp_path / "pwned"
    (d / "arrays.npz").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ValueError):
        Explanation.load(d)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# output paths

OUTPUT_FILES = {"explanation.json", "saliency.npy", "arrays.npz", "heatmap.png"}


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_save_resolves_dotdot_components(expl, tmp_path):
    """BUG (lead): save('a/../b') writes b/ but also creates an empty a/ (mkdir of the unresolved
    parent). Fix: out = Path(out_dir).resolve() at the top of Explanation.save (and of the CLI's
    pre-check); then work only with the resolved path."""
    expl.save(tmp_path / "a" / ".." / "b", heatmap=False)
    assert tree(tmp_path) == {"b"} | {f"b/{n}" for n in OUTPUT_FILES - {"heatmap.png"}}


def test_save_through_a_symlinked_directory_writes_into_its_target(expl, tmp_path):
    """BUG (lead): saving to a symlink that points at an (empty) directory replaced the symlink
    by a new directory and left the target empty. Rule: write into the resolved directory."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    expl.save(tmp_path / "link", heatmap=False)
    assert (tmp_path / "link").is_symlink()
    assert {p.name for p in (tmp_path / "real").iterdir()} == OUTPUT_FILES - {"heatmap.png"}


def test_save_under_a_symlinked_parent(expl, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    expl.save(tmp_path / "link" / "sub", heatmap=False)
    assert {p.name for p in (tmp_path / "real" / "sub").iterdir()} == OUTPUT_FILES - {"heatmap.png"}
    assert (tmp_path / "link").is_symlink() and tree(tmp_path / "real") == {"sub"} | {
        f"sub/{n}" for n in OUTPUT_FILES - {"heatmap.png"}
    }


@pytest.mark.parametrize("spelling", [".", "here/..", "./"])
def test_overwrite_of_the_working_directory_is_a_clear_refusal(spelling, expl, tmp_path, monkeypatch):
    """BUG (lead): save('.', overwrite=True) raised OSError (EBUSY, renaming '.') and left a
    '..old-*' temp directory behind; 'x/..' likewise. It must refuse with a clear error and
    leave the directory as it was."""
    work = tmp_path / "work"
    (work / "here").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = tree(work)
    with pytest.raises((FileExistsError, ValueError)):
        expl.save(spelling, overwrite=True, heatmap=False)
    assert tree(work) == before and (work / "notes.txt").read_text() == "mine"


def test_overwrite_only_replaces_a_previous_output(expl, tmp_path):
    """PROPOSED RULE (lead to confirm): overwrite=True replaces a directory written by
    Explanation.save (or an empty one), never a directory holding other files: today
    ``--out ~/results --overwrite`` deletes everything in ~/results."""
    out = tmp_path / "results"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError):
        expl.save(out, overwrite=True, heatmap=False)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_a_previous_output(expl, tmp_path):
    out = expl.save(tmp_path / "out", heatmap=False)
    expl.save(out, overwrite=True, heatmap=False)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES - {"heatmap.png"}
    assert tree(tmp_path) == {"out"} | {f"out/{n}" for n in OUTPUT_FILES - {"heatmap.png"}}


@settings(SAFE, max_examples=30)
@given(
    parts=st.lists(st.sampled_from(["a", "b", "..", ".", "in", "out"]), min_size=1, max_size=5),
    via_link=st.booleans(),
)
def test_save_never_writes_outside_the_resolved_directory(parts, via_link, expl, tmp_path_factory):
    """Random relative paths (with '..' and a symlink) from a sandbox: whatever happens, files
    appear only in the resolved requested directory, and nothing outside the sandbox changes."""
    base = tmp_path_factory.mktemp("contain")
    sandbox = base / "l1" / "l2" / "l3" / "l4" / "l5" / "box"
    (sandbox / "in").mkdir(parents=True)
    (sandbox / "link").symlink_to(sandbox / "in", target_is_directory=True)
    outside = base / "outside.txt"
    outside.write_text("do not touch")
    out = sandbox.joinpath("link" if via_link else "in", *parts)
    resolved = out.resolve()
    before = {p: (p.read_bytes() if p.is_file() else None) for p in base.rglob("*") if not p.is_symlink()}
    try:
        expl.save(out, heatmap=False)
        ok = True
    except (FileExistsError, ValueError):
        ok = False
    after = {p: (p.read_bytes() if p.is_file() else None) for p in base.rglob("*") if not p.is_symlink()}
    changed = {p for p in set(before) | set(after) if before.get(p, "absent") != after.get(p, "absent")}
    allowed = {p for p in changed if p == resolved or resolved in p.parents or p in resolved.parents}
    assert changed == allowed, f"changed outside {resolved}: {sorted(map(str, changed - allowed))}"
    assert outside.read_text() == "do not touch"
    if ok:
        assert {p.name for p in resolved.iterdir()} == OUTPUT_FILES - {"heatmap.png"}


# ---------------------------------------------------------------------------------------------
# file names made from data


@settings(SAFE, max_examples=100)
@given(
    qid=st.one_of(
        st.sampled_from(["..", ".", "", "../x", "/etc/passwd", "a/../../b", "~", "..\\..", " "]), st.text(max_size=12)
    )
)
def test_question_ids_stay_inside_the_save_dir(qid, tmp_path_factory):
    """BUG (lead): evaluation.pope.safe_name keeps '.' characters, so a POPE question_id
    of '..' writes its artifacts into the PARENT of save_dir (with overwrite=True). Fix: map
    '', '.' and '..' (and any name starting with '.') to a safe stem such as 'q_' + name."""
    from mllm_attr.evaluation.pope import safe_name as _safe_name

    save_dir = tmp_path_factory.mktemp("diag")
    name = _safe_name(qid)
    assert name and "/" not in name and "\\" not in name and name not in (".", "..")
    assert (save_dir / name).resolve().parent == save_dir.resolve()


def test_distinct_question_ids_get_distinct_dirs():
    """BUG (lead): 'a/b' and 'a_b' (or 'x y' and 'x_y') sanitise to the same directory, and the
    second question's artifacts silently replace the first's (saved with overwrite=True). Fix:
    append a short hash of the original id whenever sanitising changed it."""
    from mllm_attr.evaluation.pope import safe_name as _safe_name

    ids = ["a/b", "a_b", "x y", "x_y", "q?1", "q_1"]
    assert len({_safe_name(q) for q in ids}) == len(ids)
