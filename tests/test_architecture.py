"""The package's layering (README "Where things live"): every import, including imports inside
functions and under ``TYPE_CHECKING``, points DOWN the data flow, there is no import cycle, the
library never imports the command line, and the light entry points stay light."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mllm_attr"

#: Layer of each module (longest matching prefix wins); a module may import its own layer or lower.
LAYERS: dict[str, int] = {
    # 0: foundations: data types, images, masks, maps, targets, regions, record store, data loaders
    "mllm_attr._version": 0,
    "mllm_attr._lazy": 0,
    "mllm_attr._io": 0,
    "mllm_attr.store": 0,
    "mllm_attr.types": 0,
    "mllm_attr.image": 0,
    "mllm_attr.video": 0,
    "mllm_attr.mask": 0,
    "mllm_attr.maps": 0,
    "mllm_attr.metrics": 0,
    "mllm_attr.targets": 0,
    "mllm_attr.segment": 0,
    "mllm_attr.assets": 0,
    "mllm_attr.threads": 0,
    "mllm_attr.data": 0,
    # 1: models
    "mllm_attr.adapters": 1,
    # 2: the engine: objective -> search -> explanation (and its plots) -> explainer; test models
    "mllm_attr.objective": 2,
    "mllm_attr.search": 2,
    "mllm_attr.viz": 2,
    "mllm_attr.explanation": 2,
    "mllm_attr.explainer": 2,
    "mllm_attr.testing": 2,
    # 3: comparison methods and the one scoring protocol for any map
    "mllm_attr.baselines": 3,
    "mllm_attr.protocol": 3,
    # 4: analyses on top of the engine
    "mllm_attr.analysis": 4,
    # 5: benchmarks, bulk runs, reports
    "mllm_attr.evaluation": 5,
    "mllm_attr.evaluation.requests": 5,  # bulk explain: Explainer + report
    "mllm_attr.report": 5,
    "mllm_attr.app": 5,  # the interactive explorer: Explainer + analyses + plots in a Gradio page
    # 6: the command line
    "mllm_attr.cli": 6,
    # the root package only re-exports (lazily); nothing inside imports it
    "mllm_attr": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert best is not None, f"{module} has no layer in LAYERS: add it (and to README's folder map)"
    return LAYERS[best]


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import module`` imports that module; ``from pkg import name`` imports pkg.
            subs = [f"{target}.{a.name}" for a in node.names]
            candidates = [c for c in subs if c in known]
            if len(candidates) < len(subs):
                candidates.append(target)
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        out.update(c for c in candidates if c in known and c != module)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_import_points_down(graph):
    upward = [
        f"{src} (layer {_layer(src)}) imports {dst} (layer {_layer(dst)})"
        for src, dsts in sorted(graph.items())
        for dst in sorted(dsts)
        if _layer(dst) > _layer(src)
    ]
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_no_import_cycle(graph):
    # Tarjan's strongly connected components; a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_library_never_imports_the_cli(graph):
    offenders = [
        s
        for s, d in graph.items()
        if not s.startswith("mllm_attr.cli") and any(x.startswith("mllm_attr.cli") for x in d)
    ]
    assert not offenders


def test_no_training_loop_in_the_package():
    # The shapes model is trained by eval/shapes_model/train.py; the only optimiser in the package
    # is IGOS++'s mask optimisation, which IS that baseline method.
    users = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "torch.optim" in p.read_text(encoding="utf-8")
    )
    assert users == [os.path.join("baselines", "igos.py")]
    assert not list(PACKAGE.rglob("train*.py"))


def _fresh_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_mllm_attr_loads_no_transformers_nor_torch():
    out = _fresh_python(
        "import sys, mllm_attr; mllm_attr.Answer, mllm_attr.Positions, mllm_attr.CallableAdapter; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    assert out == "[]"


def test_cli_help_and_argument_errors_load_no_torch():
    out = _fresh_python(
        "import sys, contextlib, io\n"
        "from mllm_attr.cli import main\n"
        "for argv in (['--help'], ['explain', '--help'], ['diagnose', '--help'], ['evaluate', '--help'],\n"
        "             ['explain', '--n-regions', '1'], ['explain', '--lambda1', 'nan']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert out == "False False"


def test_lazy_exports_resolve_to_the_defining_modules():
    import mllm_attr
    import mllm_attr.adapters as adapters
    import mllm_attr.analysis as analysis
    import mllm_attr.evaluation as evaluation

    for pkg in (mllm_attr, adapters, analysis, evaluation):
        for name in pkg.__all__:
            if name == "__version__":
                continue
            obj = getattr(pkg, name)
            assert obj is not None
            assert name in dir(pkg)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mllm_attr.nope  # noqa: B018
