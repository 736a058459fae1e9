"""Bad input through the CLI: one clear line on stderr, exit code 2, no output directory."""

import numpy as np
import pytest
from PIL import Image

from mllm_attr.cli import main
from mllm_attr.testing.tiny_models import save_tiny


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return save_tiny("llava", tmp_path_factory.mktemp("llava"))


@pytest.fixture
def img_path(tmp_path):
    p = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(1, 255, (32, 32, 3), dtype=np.uint8)).save(p)
    return p


def run(capsys, llava_dir, out, *extra):
    code = main(["explain", "--model", str(llava_dir), "--out", str(out), "--regions", "4", "-q",
                 "--max-new-tokens", "4", *extra])
    return code, capsys.readouterr().err


CASES = [
    (["--image", "{missing}"], "image file not found"),
    (["--image", "{text}"], "could not be read"),
    (["--image", "{img}", "--target", "zebra-not-there"], "not found in the generated answer"),
    (["--image", "{img}", "--target-index", "99"], "out of range"),
    (["--image", "{img}", "--regions", "1"], "n_regions must be >= 2"),
    (["--image", "{img}", "--regions", "5000"], "more than the 32x32=1024 pixels"),
    (["--image", "{img}", "--lambda1", "-1"], "lambda1 must be a finite number >= 0"),
    (["--image", "{img}", "--family", "martian"], "unknown model family 'martian'"),
    (["--image", "{img}", "--dtype", "float7"], "unknown dtype"),
]


@pytest.mark.parametrize("args,message", CASES)
def test_bad_input_is_one_clear_error(args, message, capsys, llava_dir, img_path, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    subst = {"{missing}": str(tmp_path / "missing.png"), "{text}": str(text), "{img}": str(img_path)}
    args = [subst.get(a, a) for a in args]
    out = tmp_path / "out"
    code, err = run(capsys, llava_dir, out, *args)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("mllm-attr: error:") and message in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_target_absent_message_lists_tokens(capsys, llava_dir, img_path, tmp_path):
    code, err = run(capsys, llava_dir, tmp_path / "o", "--image", str(img_path), "--target", "qqqq")
    assert code == 2 and "its tokens are: 0:" in err


def test_grayscale_rgba_16bit_inputs_are_converted(capsys, llava_dir, tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8)
    for name, img in {
        "grey.png": Image.fromarray(arr, "L"),
        "rgba.png": Image.fromarray(np.dstack([arr, arr, arr, arr]), "RGBA"),
        "deep.png": Image.fromarray(arr.astype(np.uint16) * 200),
    }.items():
        img.save(tmp_path / name)
        out = tmp_path / f"out_{name}"
        code, err = run(capsys, llava_dir, out, "--image", str(tmp_path / name), "--target-index", "0")
        assert code == 0, err
        assert (out / "explanation.json").is_file()


def test_out_is_a_file(capsys, llava_dir, img_path, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = run(capsys, llava_dir, f, "--image", str(img_path))
    assert code == 2 and "exists" in err and f.read_text() == "x"
