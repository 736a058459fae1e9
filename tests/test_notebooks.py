"""The tutorial notebooks: in sync with notebooks/_build.py, stored with their outputs, and
those outputs are what the code produces now.

Each notebook is executed with nbclient in a fresh ``python3`` kernel (this interpreter's
environment, one torch thread), in a temporary working directory, on the embedded default model,
and its outputs are compared with the stored ones (``_build.compare_outputs``).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _builder():
    spec = importlib.util.spec_from_file_location("notebooks_build", NB_DIR / "_build.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


BUILD = _builder()
NAMES = list(BUILD.NOTEBOOKS)


def _stored(name: str):
    path = NB_DIR / name
    assert path.is_file(), f"{name} missing: run python notebooks/_build.py"
    return nbformat.read(path, as_version=4)


def test_every_notebook_checked_in_with_the_builders_code() -> None:
    # the builder's list and the folder hold the same notebooks: none missing, none left over
    assert sorted(NAMES) == sorted(p.name for p in NB_DIR.glob("*.ipynb")) and len(NAMES) >= 6
    for name in NAMES:
        source = nbformat.writes(BUILD.strip_outputs(_stored(name))) + "\n"
        assert source == BUILD.render(name), f"{name} is stale: run python notebooks/_build.py {name[:2]}"


def test_notebooks_are_stored_with_their_outputs() -> None:
    for name in NAMES:
        nb = _stored(name)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{name} was not executed before it was stored"
        if name != "05_real_hub_model.ipynb":
            figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
            assert figures, f"{name} is stored without its figures"


def test_output_comparison_catches_a_stale_output() -> None:
    """The comparison the execution test relies on: a changed number, a missing figure, a changed
    figure are caught; a changed timing is not a difference."""
    nb = _stored("01_quickstart.ipynb")
    assert BUILD.compare_outputs(nb, nbformat.from_dict(nb)) == []
    cells = [c for c in nb.cells if c.cell_type == "code"]
    text_cell = next(c for c in cells if any(o.get("output_type") == "stream" for o in c.outputs))
    fig_cell = next(c for c in cells if any("image/png" in o.get("data", {}) for o in c.outputs))

    timing = nbformat.from_dict(nb)
    stream = next(o for c in timing.cells if c.get("id") == text_cell.id for o in c.outputs if "text" in o)
    stream["text"] = stream["text"] + "done in 12.5s\n"
    fresh = nbformat.from_dict(nb)
    stream2 = next(o for c in fresh.cells if c.get("id") == text_cell.id for o in c.outputs if "text" in o)
    stream2["text"] = stream2["text"] + "done in 3.1s\n"
    assert BUILD.compare_outputs(timing, fresh) == []

    # The kernel may deliver one cell's prints as one stream message or several: the same text
    # split in two is no difference, a word changed in either part is.
    split = nbformat.from_dict(nb)
    cell = next(c for c in split.cells if c.get("id") == text_cell.id)
    k = next(i for i, o in enumerate(cell.outputs) if o.get("output_type") == "stream")
    text = cell.outputs[k]["text"]
    cut = max(1, len(text) // 2)
    first, second = nbformat.from_dict(dict(cell.outputs[k])), nbformat.from_dict(dict(cell.outputs[k]))
    first["text"], second["text"] = text[:cut], text[cut:]
    cell.outputs = [*cell.outputs[:k], first, second, *cell.outputs[k + 1 :]]
    assert BUILD.compare_outputs(nb, split) == []
    second["text"] = second["text"] + "extra line\n"
    assert BUILD.compare_outputs(nb, split)

    changed = nbformat.from_dict(nb)
    out = next(o for c in changed.cells if c.get("id") == text_cell.id for o in c.outputs if "text" in o)
    out["text"] = out["text"].replace("0", "1", 1) if "0" in out["text"] else out["text"] + "x"
    assert BUILD.compare_outputs(nb, changed)

    missing = nbformat.from_dict(nb)
    cell = next(c for c in missing.cells if c.get("id") == fig_cell.id)
    cell.outputs = [o for o in cell.outputs if "image/png" not in o.get("data", {})]
    assert BUILD.compare_outputs(nb, missing)

    import base64
    import io

    import numpy as np
    from PIL import Image

    repainted = nbformat.from_dict(nb)
    out = next(
        o for c in repainted.cells if c.get("id") == fig_cell.id for o in c.outputs if "image/png" in o.get("data", {})
    )
    with Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"]))) as im:
        arr = np.asarray(im.convert("RGB")).copy()
    arr[: arr.shape[0] // 3] = 255 - arr[: arr.shape[0] // 3]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    out["data"]["image/png"] = base64.b64encode(buf.getvalue()).decode()
    assert any("pixels differ" in p for p in BUILD.compare_outputs(nb, repainted))


@pytest.mark.parametrize("name", ["05_real_hub_model.ipynb", "08_video.ipynb"])
def test_gpu_cells_are_tagged_and_guarded(name: str) -> None:
    nb = nbformat.reads(BUILD.render(name), as_version=4)
    gpu = [c for c in nb.cells if "requires-gpu" in c.metadata.get("tags", [])]
    assert gpu, f"{name} has no requires-gpu cells"
    assert all("if RUN_REAL_MODEL:" in c.source for c in gpu)
    flag = [c for c in nb.cells if c.cell_type == "code" and "RUN_REAL_MODEL =" in c.source]
    assert flag and "torch.cuda.is_available()" in flag[0].source


def _default_model_present() -> bool:
    try:
        from mllm_attr.assets import default_model_path, example_image_path

        default_model_path()
        example_image_path()
    except FileNotFoundError:
        return False
    return True


EXPECTED_FILES = {
    "01_quickstart.ipynb": ["quickstart.html", "quickstart/explanation.json"],
    "02_word_vs_sentence.ipynb": ["word_vs_sentence.html"],
    "03_hallucination.ipynb": ["hallucination.html"],
    "04_benchmark.ipynb": ["benchmark.html"],
    "05_real_hub_model.ipynb": [],
    "06_prompt_words_and_text_models.ipynb": ["prompt_words.html", "tiny-qwen2/config.json"],
    "07_several_images.ipynb": ["several_images.html"],
    "08_video.ipynb": ["video.html", "clip.mp4"],
    "09_explorer.ipynb": [],
}


#: Notebooks measured at > 30 s on the 2-core CI machine (kernel start + imports ~8 s included).
SLOW = {"02_word_vs_sentence.ipynb", "03_hallucination.ipynb", "04_benchmark.ipynb"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES])
def test_notebook_runs(name: str, tmp_path: Path) -> None:
    if not _default_model_present():
        pytest.skip("the embedded default model (mllm_attr/assets/shapes-llava) is not built yet")
    nb = nbformat.reads(BUILD.render(name), as_version=4)
    t0 = time.perf_counter()
    BUILD.execute(nb, tmp_path)
    seconds = time.perf_counter() - t0
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    for rel in EXPECTED_FILES[name]:
        assert (tmp_path / "mllm_attr_notebook_out" / rel).is_file(), f"{name} did not write {rel}"
    problems = BUILD.compare_outputs(_stored(name), nb)
    assert not problems, (
        f"{name}: the stored outputs are not what the code produces now; run python notebooks/_build.py "
        f"{name[:2]} and commit the result:\n" + "\n".join(problems[:10])
    )
    print(f"{name}: {seconds:.1f}s")
