"""Bad input through the CLI: one clear line on stderr, exit code 2, no output directory."""

import os
from pathlib import Path

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
    code = main(
        [
            "explain",
            "--model",
            str(llava_dir),
            "--out",
            str(out),
            "--n-regions",
            "4",
            "-q",
            "--max-new-tokens",
            "4",
            *extra,
        ]
    )
    return code, capsys.readouterr().err


CASES = [
    (["--image", "{missing}"], "image file not found"),
    (["--image", "{text}"], "could not be read"),
    (["--image", "{img}", "--target", "zebra-not-there"], "not found in the generated answer"),
    (["--image", "{img}", "--target-index", "99"], "out of range"),
    (["--image", "{img}", "--n-regions", "1"], "n_regions must be >= 2"),
    (["--image", "{img}", "--n-regions", "5000"], "more than the 32x32=1024 pixels"),
    (["--image", "{img}", "--lambda1", "-1"], "lambda1 must be a finite number >= 0"),
    (["--image", "{img}", "--family", "martian"], "unknown model family 'martian'"),
    (["--image", "{img}", "--dtype", "float7"], "unknown dtype"),
    (["--image", "{img}", "--search", "scan", "--search-option", "forward_share=2"], "forward_share must be a number"),
    (["--image", "{img}", "--search", "scan", "--search-option", "groups=4"], "unknown option(s) ['groups']"),
    (["--image", "{img}", "--search-option", "pool"], "expected KEY=VALUE"),
    (["--image", "{img}", "--search", "scan", "--search-option", "pool=a"], "must be a number"),
    (
        ["--image", "{img}", "--search", "scan", "--search-option", "pool=2", "--search-option", "pool=3"],
        "pool is given twice",
    ),
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


# --------------------------------------------------------------------------- --labels / --masks


def _segment_files(tmp_path):
    """Files for --labels / --masks, good and bad, for a 32x32 image."""
    good = np.zeros((32, 32), np.int32)
    good[:, 16:] = 1
    files = {
        "{labels_ok}": tmp_path / "ok.npy",
        "{labels_shape}": tmp_path / "shape.npy",
        "{labels_float}": tmp_path / "float.npy",
        "{labels_one}": tmp_path / "one.npy",
        "{labels_pickle}": tmp_path / "pickle.npy",
        "{labels_corrupt}": tmp_path / "corrupt.npy",
        "{npz}": tmp_path / "masks.npz",
        "{masks_empty}": tmp_path / "empty.npz",
        "{masks_shape}": tmp_path / "mshape.npz",
        "{masks_3d}": tmp_path / "m3d.npz",
        "{masks_corrupt}": tmp_path / "corrupt.npz",
        "{missing_npy}": tmp_path / "missing.npy",
    }
    np.save(files["{labels_ok}"], good)
    np.save(files["{labels_shape}"], np.zeros((16, 32), np.int32) + np.arange(32) % 2)
    np.save(files["{labels_float}"], good.astype(np.float32))
    np.save(files["{labels_one}"], np.zeros((32, 32), np.int32))
    np.save(files["{labels_pickle}"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["{labels_corrupt}"].write_bytes(b"\x93NUMPY garbage")
    np.savez(files["{npz}"], a=good == 1)
    np.savez(files["{masks_empty}"], a=good == 1, b=np.zeros((32, 32), bool))
    np.savez(files["{masks_shape}"], a=np.ones((16, 16), bool))
    np.savez(files["{masks_3d}"], a=good == 1, b=np.ones((2, 32, 32), bool))
    files["{masks_corrupt}"].write_bytes(b"PK\x03\x04 not a zip")
    return {k: str(v) for k, v in files.items()}


SEGMENT_CASES = [
    (["--labels", "{missing_npy}"], "--labels file not found"),
    (["--labels", "{labels_corrupt}"], "could not read"),
    (["--labels", "{labels_pickle}"], "could not read"),
    (["--labels", "{npz}"], "is an .npz archive; expected a .npy file"),
    (
        ["--labels", "{labels_shape}"],
        "expected shape (32, 32) (H, W), the size of the 32x32 explained image; got shape (16, 32)",
    ),
    (["--labels", "{labels_float}"], "expected an integer label map; got dtype float32"),
    (["--labels", "{labels_one}"], "a single region"),
    (["--masks", "{missing_npy}"], "--masks file not found"),
    (["--masks", "{masks_corrupt}"], "could not read"),
    (["--masks", "{labels_pickle}"], "could not read"),
    (["--masks", "{masks_empty}"], "mask 1 is empty"),
    (["--masks", "{masks_shape}"], "mask 0 has shape (16, 16); expected (32, 32)"),
    (["--masks", "{masks_3d}"], "array 'b'"),
]


@pytest.mark.parametrize("args,message", SEGMENT_CASES)
def test_bad_segments_file_is_one_clear_error_before_the_model_loads(
    args, message, capsys, img_path, tmp_path, monkeypatch
):
    import mllm_attr.cli as cli

    def no_model(_args):
        raise AssertionError("the model was loaded although the segments file is bad")

    monkeypatch.setattr(cli, "load_model_from_args", no_model)
    files = _segment_files(tmp_path)
    out = tmp_path / "out"
    code = main(["explain", "--image", str(img_path), "--out", str(out), "-q", *[files.get(a, a) for a in args]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("mllm-attr: error:") and message in err
    assert "Traceback" not in err and not out.exists()


def test_labels_and_masks_are_exclusive(capsys, tmp_path):
    assert main(["explain", "--labels", "a.npy", "--masks", "b.npz"]) == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and err.startswith("mllm-attr: error: ")


# --------------------------------------------------------------------------- --answer with --target


def _shapes_cli(tmp_path, *extra):
    from mllm_attr.assets import example_image_path

    out = tmp_path / "out"
    code = main(
        [
            "explain",
            "--image",
            str(example_image_path()),
            "--prompt",
            "What color is the circle?",
            "--regions",
            "4",
            "--segmenter",
            "grid",
            "--max-new-tokens",
            "2",
            "--out",
            str(out),
            "-q",
            *extra,
        ]
    )
    return code, out


def test_answer_with_target_explains_the_word_inside_the_forced_answer(capsys, tmp_path):
    from mllm_attr import Explanation

    code, out = _shapes_cli(tmp_path, "--answer", "red circle", "--target", "circle")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    expl = Explanation.load(out)
    assert expl.generation.text == "red circle" and expl.generation.counterfactual
    assert list(expl.positions) == [1] and expl.target_text.strip() == "circle"
    assert "explained tokens: 1:' circle'" in captured.out and "(counterfactual, teacher-forced)" in captured.out
    assert expl.settings["target"].startswith("Answer(text='red circle', target=Word(text='circle'")


def test_answer_with_target_index(capsys, tmp_path):
    from mllm_attr import Explanation

    code, out = _shapes_cli(tmp_path, "--answer", "red circle", "--target-index", "0")
    assert code == 0, capsys.readouterr().err
    expl = Explanation.load(out)
    assert list(expl.positions) == [0] and expl.generation.tokens[0] == "red"


def test_answer_with_a_target_not_in_it_is_one_clear_error(capsys, tmp_path):
    code, out = _shapes_cli(tmp_path, "--answer", "red circle", "--target", "square")
    err = capsys.readouterr().err
    assert code == 2 and "not found in the teacher-forced answer 'red circle'" in err and "Traceback" not in err
    assert not out.exists()


def test_api_answer_with_a_target_inside_it(rgb_image):
    from mllm_attr import Answer, Explainer, Word
    from mllm_attr.testing.fake import make_fake_adapter

    adapter = make_fake_adapter(rgb_image, {}, answer="a dog")
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(
        rgb_image, prompt="q", target=Answer("a cat on a mat", target="cat")
    )
    assert expl.generation.text == "a cat on a mat" and expl.generation.generated_text == "a dog"
    assert list(expl.positions) == [1]
    assert Answer("a cat", target="cat") == Answer("a cat", target=Word("cat"))  # normalised, hashable
    assert hash(Answer("a cat", target=[0, 1])) == hash(Answer("a cat", target=[0, 1]))
    with pytest.raises(TypeError, match="cannot be another Answer"):
        Answer("a cat", target=Answer("cat"))
    with pytest.raises(ValueError, match="empty"):
        Answer("a cat", target=" ")


# --------------------------------------------------------------------------- report --out, warnings, "wrote:" lines


@pytest.fixture(scope="module")
def saved_explanation(tmp_path_factory):
    from mllm_attr import Explainer
    from mllm_attr.testing.fake import make_fake_adapter

    img = np.random.default_rng(1).integers(1, 255, (24, 24, 3), dtype=np.uint8)
    expl = Explainer(make_fake_adapter(img, {"a": np.ones((24, 24))}), n_regions=4, segmenter="grid")(img, prompt="q")
    return expl.save(tmp_path_factory.mktemp("expl") / "e", heatmap=False)


def test_report_refuses_an_existing_out_without_overwrite(capsys, saved_explanation, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("keep me")
    code = main(["report", str(saved_explanation), "--out", str(page)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mllm-attr: error: --out")
    assert "--overwrite" in err[0] and page.read_text() == "keep me"
    assert main(["report", str(saved_explanation), "--out", str(page), "--overwrite"]) == 0
    assert page.read_text().startswith("<!DOCTYPE html") or "<html" in page.read_text()
    assert f"wrote: {page}" in capsys.readouterr().out
    code = main(["report", str(saved_explanation), "--out", str(tmp_path)])
    assert code == 2 and "is a directory" in capsys.readouterr().err


def test_downscale_warning_is_shown_once_per_command(capsys, caplog, llava_dir, tmp_path):
    """explain loads the image for its checks and the Explainer loads it again: one warning.
    (An absent target ends the command after both loads, before the slow save of a 2048 px map.)"""
    big = tmp_path / "big.png"
    Image.new("RGB", (2049, 2048), (200, 30, 40)).save(big)
    args = ["--image", str(big), "--segmenter", "grid", "--n-regions", "2", "--max-new-tokens", "2"]
    code, err = run(capsys, llava_dir, tmp_path / "out", *args, "--target", "zebra-not-there")
    assert code == 2 and "not found in the generated answer" in err
    assert len([r for r in caplog.records if "downscaled" in r.getMessage()]) == 1


def test_warnings_once_is_per_handler_and_per_command(caplog):
    import logging

    from mllm_attr.cli._common import warnings_once

    log = logging.getLogger("mllm_attr.test")
    extra = logging.Handler()
    seen: list = []
    extra.emit = seen.append
    logging.getLogger().addHandler(extra)
    try:
        for _ in range(2):  # each command starts afresh
            with warnings_once():
                log.warning("same")
                log.warning("same")
                log.warning("other")
                log.info("info passes")
    finally:
        logging.getLogger().removeHandler(extra)
    assert [r.getMessage() for r in seen if r.levelno >= logging.WARNING] == ["same", "other"] * 2
    assert [r.getMessage() for r in caplog.records] == ["same", "other"] * 2
    assert not extra.filters and not caplog.handler.filters


def test_diagnose_lists_every_file_written(capsys, monkeypatch, tmp_path):
    import mllm_attr.cli.diagnose as cli_diagnose
    import mllm_attr.evaluation.pope as pope

    (tmp_path / "a.png").write_bytes(b"")
    line = '{"question_id": 1, "image": "a.png", "text": "Is there a cat?", "label": "no"}\n'
    (tmp_path / "pope.jsonl").write_text(line)
    (tmp_path / "save" / "1" / "wrong").mkdir(parents=True)
    (tmp_path / "save" / "1" / "correct").mkdir()
    (tmp_path / "save" / "1" / "edited.png").write_bytes(b"")
    art = {k: str(tmp_path / "save" / "1" / k) for k in ("wrong", "correct", "edited.png")}
    summary = {
        "n": 1,
        "n_unparsed": 0,
        **dict.fromkeys(("accuracy", "f1", "yes_ratio", "mean_amcr", "csr_at_10"), 0.0),
        **dict.fromkeys(("n_wrong", "n_false_yes", "n_false_no", "n_corrected", "csr_denominator"), 1),
        "generate_calls": 1,
        "forwards": 1,
        "out": str(tmp_path / "d.jsonl"),
        "summary_path": str(tmp_path / "d.summary.json"),
        "artifacts": [{"wrong": art["wrong"], "correct": art["correct"], "edited": art["edited.png"]}],
    }
    monkeypatch.setattr(cli_diagnose, "load_model_from_args", lambda args: None)
    monkeypatch.setattr(cli_diagnose, "explainer_from_args", lambda adapter, args: type("E", (), {})())
    monkeypatch.setattr(pope, "diagnose_pope", lambda *a, **k: summary)
    argv = ["diagnose", "--pope", str(tmp_path / "pope.jsonl"), "--images", str(tmp_path), "--out", summary["out"]]
    assert main([*argv, "--save-dir", str(tmp_path / "save")]) == 0
    out = capsys.readouterr().out
    assert f"wrote:            {summary['out']}, {summary['summary_path']}\n" in out
    assert f"{art['wrong']}/, {art['correct']}/, {art['edited.png']}\n" in out


def test_evaluate_lists_every_file_written(capsys, monkeypatch, tmp_path):
    import time

    import mllm_attr.evaluation.runner as runner

    out = tmp_path / "run"
    (out / "shards").mkdir(parents=True)
    (out / "config.json").write_text("{}")
    old = time.time() - 3600
    os.utime(out / "config.json", (old, old))  # from an earlier run: not written by this one
    names = ["shards/records.rank0of1.jsonl", "records.jsonl", "summary.md", "summary.json"]
    names += ["curves.png", "report.html"]

    def fake_run(cfg, **kwargs):
        for name in names:
            (cfg.output / name).write_text("x")
        plot, report = cfg.output / "curves.png", cfg.output / "report.html"
        return {"markdown": "| table |", "plot": str(plot), "report": str(report)}

    monkeypatch.setattr(runner, "run_evaluation", fake_run)
    config = Path(__file__).resolve().parents[1] / "eval" / "configs" / "shapes_object.json"
    assert main(["evaluate", str(config), "--output", str(out), "-q"]) == 0
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote: ")]
    assert wrote == ["wrote: " + ", ".join(str(out / n) for n in names)]


def test_search_options_reach_the_search_and_the_stored_settings(capsys, tmp_path):
    from mllm_attr import Explanation

    code, out = _shapes_cli(
        tmp_path,
        "--n-regions",
        "24",
        "--search",
        "scan",
        "--search-option",
        "forward_share=0.2",
        "--search-option",
        "pool=4",
    )
    assert code == 0, capsys.readouterr().err
    expl = Explanation.load(out)
    assert expl.settings["search"] == "scan" and expl.settings["search_options"] == {"forward_share": 0.2, "pool": 4}
    n = expl.n_regions
    assert expl.forwards <= max(int(0.2 * n * (n + 1)), 2 + n + 4 + 2 * (n - 2) + 6) < n * (n + 1)
