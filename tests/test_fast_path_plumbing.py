"""fast_path ("auto" | True | False) reaches the scorer from every entry point: Explainer,
protocol.score_map, the evaluation runner (config + --fast-path) and the CLI (--fast-path);
what was used is stored in settings["fast_path"]."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mllm_attr import Explainer, Explanation
from mllm_attr.adapters import load_adapter
from mllm_attr.adapters.callable import CallableAdapter, generation_from_text
from mllm_attr.assets import default_model_path, example_image_path
from mllm_attr.cli import ArgumentError, build_parser, explainer_from_args, main
from mllm_attr.explainer import adapter_has_fast_path, check_fast_path
from mllm_attr.image import load_image
from mllm_attr.protocol import score_map
from mllm_attr.segment import grid_labels

DISABLED = {"requested": False, "used": False, "reason": "disabled"}


@pytest.fixture(scope="module")
def shapes_model():
    return load_adapter(str(default_model_path()))


@pytest.fixture(scope="module")
def scene(shapes_model):
    image = load_image(str(example_image_path())).array
    gen = shapes_model.generate(image, "What color is the circle?", max_new_tokens=2)
    return image, gen


class _NoWork(CallableAdapter):
    """A callable adapter that fails the test if it is asked to do anything."""

    def __init__(self) -> None:
        super().__init__(self._fail, self._fail)

    @staticmethod
    def _fail(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("model work happened before the fast_path value was checked")


def _spy(adapter: Any) -> list[Any]:
    """Record the fast_path each scorer is built with (the wrapper keeps the fast_path keyword)."""
    seen: list[Any] = []
    original = adapter.scorer

    def scorer(image, generation, positions, *, fill=None, batch_size=None, fast_path="auto"):
        seen.append(fast_path)
        return original(image, generation, positions, fill=fill, batch_size=batch_size, fast_path=fast_path)

    adapter.scorer = scorer
    return seen


def test_check_fast_path_values():
    assert (
        check_fast_path("auto") == "auto"
        and check_fast_path(True) is True
        and check_fast_path(np.bool_(False)) is False
    )
    for bad in ("on", "yes", 1, 0, None, "AUTO"):
        with pytest.raises(ValueError, match=r"fast_path must be 'auto', True or False"):
            check_fast_path(bad)


def test_adapter_detection(shapes_model):
    assert adapter_has_fast_path(shapes_model)
    assert not adapter_has_fast_path(_NoWork())


# --------------------------------------------------------------------------- Explainer


@pytest.mark.parametrize("value", ["auto", True, False])
def test_explainer_passes_fast_path_to_the_scorer(value, shapes_model, scene):
    image, gen = scene
    seen = _spy(shapes_model)
    try:
        expl = Explainer(shapes_model, n_regions=4, segmenter="grid", fast_path=value)(image, gen, target=0)
    finally:
        del shapes_model.scorer  # back to the class's method
    assert seen == [value]
    fp = expl.settings["fast_path"]
    assert fp["requested"] == value and isinstance(fp["used"], bool)
    if value is False:
        assert fp == DISABLED
    if value is True:
        assert fp["used"] is True


def test_explainer_fast_path_errors_before_any_model_work(shapes_model):
    for bad in ("on", 1, None):
        with pytest.raises(ValueError, match="fast_path must be"):
            Explainer(shapes_model, fast_path=bad)
    with pytest.raises(ValueError, match="fast_path=True, but adapter _NoWork has no fast path"):
        Explainer(_NoWork(), fast_path=True)


def test_adapter_without_fast_path_records_why(rgb_image):
    adapter = CallableAdapter(lambda im, g, p: np.ones((len(im), len(p))) * 0.5, lambda im, q: "a cat")
    expl = Explainer(adapter, n_regions=4, segmenter="grid")(rgb_image, prompt="q")
    assert expl.settings["fast_path"] == {"requested": "auto", "used": False, "reason": "adapter has no fast path"}
    expl = Explainer(adapter, n_regions=4, segmenter="grid", fast_path=False)(rgb_image, prompt="q")
    assert expl.settings["fast_path"] == DISABLED


# --------------------------------------------------------------------------- protocol.score_map


def test_score_map_passes_fast_path(shapes_model, scene):
    image, gen = scene
    labels = grid_labels(64, 64, 4)
    sal = np.random.default_rng(0).random((64, 64))
    seen = _spy(shapes_model)
    try:
        off = score_map(shapes_model, image, gen, [0], sal, labels=labels, fast_path=False)
        auto = score_map(shapes_model, image, gen, [0], sal, labels=labels)
    finally:
        del shapes_model.scorer
    assert seen == [False, "auto"]
    assert off.settings["fast_path"] == DISABLED
    assert auto.settings["fast_path"]["requested"] == "auto" and "used" in auto.settings["fast_path"]
    # The fast path changes how images are prepared, not what is measured (within the probe's tolerance).
    assert np.allclose(off.insertion_curve()[1], auto.insertion_curve()[1], atol=0.02)


def test_score_map_fast_path_errors_before_any_work(rgb_image):
    g = generation_from_text("q", "a cat", [0.5, 0.5])
    with pytest.raises(ValueError, match="fast_path must be"):
        score_map(_NoWork(), rgb_image, g, [0], np.zeros((40, 40)), fast_path="off")
    with pytest.raises(ValueError, match="fast_path=True, but adapter _NoWork has no fast path"):
        score_map(_NoWork(), rgb_image, g, [0], np.zeros((40, 40)), fast_path=True)


# --------------------------------------------------------------------------- CLI


def test_cli_fast_path_flag_reaches_the_explanation(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            "--image",
            str(example_image_path()),
            "--prompt",
            "What color is the circle?",
            "--target-index",
            "0",
            "--regions",
            "4",
            "--segmenter",
            "grid",
            "--max-new-tokens",
            "2",
            "--out",
            str(out),
            "-q",
            "--fast-path",
            "off",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert Explanation.load(out).settings["fast_path"] == DISABLED


def test_cli_fast_path_flag_values_and_subcommands(capsys):
    parser = build_parser()
    with pytest.raises(ArgumentError, match="invalid choice: 'maybe'"):
        parser.parse_args(["explain", "--fast-path", "maybe"])
    # diagnose builds its explainer from the same arguments.
    args = parser.parse_args(
        ["diagnose", "--pope", "p.jsonl", "--images", "i", "--out", "o.jsonl", "--fast-path", "off"]
    )
    adapter = CallableAdapter(lambda im, g, p: np.ones((len(im), len(p))))
    assert explainer_from_args(adapter, args).fast_path is False
    args = parser.parse_args(["explain", "--fast-path", "on"])
    with pytest.raises(ValueError, match="has no fast path"):
        explainer_from_args(adapter, args)
    assert explainer_from_args(adapter, parser.parse_args(["explain"])).fast_path == "auto"


# --------------------------------------------------------------------------- evaluation runner


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    from mllm_attr.data.shapes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("shapes"), n_images=2, seed=5, split="test")


def _eval_config(shapes_data, out: Path, **protocol: Any) -> dict[str, Any]:
    return {
        "name": "fp",
        "task": {
            "kind": "coco-caption",
            "root": str(shapes_data["instances"].parent.parent),
            "split": "test",
            "limit": 1,
            "max_new_tokens": 3,
        },
        "protocol": {"n_regions": 4, "segmenter": "grid", "batch_size": 16, **protocol},
        "methods": ["eagle", "random"],
        "output": str(out),
        "show_progress": False,
    }


def test_evaluation_config_fast_path_is_validated_and_defaults_to_auto(shapes_data, tmp_path):
    from mllm_attr.evaluation.runner import PROTOCOL_KEYS, EvalConfig

    assert PROTOCOL_KEYS["fast_path"] == "auto"
    assert EvalConfig.from_dict(_eval_config(shapes_data, tmp_path / "o")).protocol["fast_path"] == "auto"
    for bad in ("on", 1, None):
        with pytest.raises(ValueError, match=r"protocol.fast_path must be \"auto\", true or false"):
            EvalConfig.from_dict(_eval_config(shapes_data, tmp_path / "o", fast_path=bad))


def test_evaluation_fast_path_reaches_every_method_and_is_stored(shapes_data, shapes_model, tmp_path):
    from mllm_attr.evaluation.runner import EvalConfig, run_evaluation
    from mllm_attr.evaluation.summary import collect_records

    out = tmp_path / "run"
    cfg = EvalConfig.from_dict(_eval_config(shapes_data, out, fast_path=False))
    seen = _spy(shapes_model)
    try:
        run_evaluation(cfg, adapter=shapes_model, distributed=False)
    finally:
        del shapes_model.scorer
    assert seen and set(seen) == {False}  # every EAGLE scorer and every replay scorer
    recs = collect_records(out)
    assert {r["method"] for r in recs} == {"eagle", "random"}
    for r in recs:
        assert r["status"] == "ok"
        assert r["settings"]["protocol"]["fast_path"] is False
        assert r["explanation_settings"]["fast_path"] == DISABLED
    assert json.loads((out / "config.json").read_text())["protocol"]["fast_path"] is False
    # A results folder written before protocol.fast_path existed resumes with the default.
    out2 = tmp_path / "old"
    cfg2 = EvalConfig.from_dict(_eval_config(shapes_data, out2))
    run_evaluation(cfg2, adapter=shapes_model, distributed=False)
    saved = json.loads((out2 / "config.json").read_text())
    del saved["protocol"]["fast_path"]
    (out2 / "config.json").write_text(json.dumps(saved))
    run_evaluation(cfg2, resume=True, adapter=shapes_model, distributed=False)  # no "different config" error


def test_evaluation_fast_path_true_without_one_fails_before_any_sample(shapes_data, tmp_path):
    from mllm_attr.evaluation.runner import EvalConfig, run_evaluation

    cfg = EvalConfig.from_dict(_eval_config(shapes_data, tmp_path / "o", fast_path=True))
    with pytest.raises(ValueError, match="has no fast path"):
        run_evaluation(cfg, adapter=_NoWork(), distributed=False)


def test_evaluate_cli_fast_path_override(shapes_data, tmp_path):
    from mllm_attr.cli.evaluate import add_subcommand
    from mllm_attr.cli.evaluate import config_from_args as _config_from_args

    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(_eval_config(shapes_data, tmp_path / "o")))
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    assert _config_from_args(parser.parse_args(["evaluate", str(path)])).protocol["fast_path"] == "auto"
    for flag, value in (("off", False), ("on", True), ("auto", "auto")):
        cfg = _config_from_args(parser.parse_args(["evaluate", str(path), "--fast-path", flag]))
        assert cfg.protocol["fast_path"] is value if isinstance(value, bool) else cfg.protocol["fast_path"] == value
