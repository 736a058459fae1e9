"""Results that show themselves: short reprs (no array dumps), ``plot()`` figures, ``show()``
and Jupyter's ``_repr_html_`` (an inline PNG, the explained words, the answer, the numbers)."""

from __future__ import annotations

import base64
import html
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm_attr import CallableAdapter, Explainer, Explanation, generation_from_text, viz
from mllm_attr.analysis.captions import caption_hallucinations
from mllm_attr.analysis.modality import analyze_modality
from mllm_attr.analysis.multiscale import MultiScaleExplainer
from mllm_attr.analysis.prompt_tokens import explain_prompt_tokens
from mllm_attr.analysis.yes_no import diagnose_yes_no
from mllm_attr.segment import grid_labels
from mllm_attr.testing.fake import make_fake_adapter

H = W = 40
GRID16 = grid_labels(H, W, 16)
CELL = GRID16 == 5  # the one cell the fake models look at


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, size=(H, W, 3), dtype=np.uint8)
    img[CELL] = (230, 30, 30)
    return img


def _visible(images: np.ndarray, image: np.ndarray, where: np.ndarray) -> np.ndarray:
    return (np.all(images == image[None], axis=-1) & where[None]).sum(axis=(1, 2)) / where.sum()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return _image()


@pytest.fixture(scope="module")
def expl(image: np.ndarray) -> Explanation:
    adapter = make_fake_adapter(image, {"red": CELL * 1.0}, answer="a red thing", floor=0.05)
    return Explainer(adapter, n_regions=16, segmenter="grid")(image, prompt="What color is it?", target="red")


def _yes_adapter(image: np.ndarray) -> CallableAdapter:
    """Hallucinates "Yes" while the red cell is visible; p("Yes") = its visible share."""

    def score(images, generation, positions):
        v = _visible(images, image, CELL)
        return np.stack([v if generation.tokens[p].strip().lower() == "yes" else 1 - v for p in positions], axis=1)

    def generate(img, prompt):
        return "Yes" if _visible(img[None], image, CELL)[0] > 0.5 else "No"

    return CallableAdapter(score, generate, name="yes-fake", batch_size=16)


def _caption_adapter(image: np.ndarray) -> CallableAdapter:
    def score(images, generation, positions):
        v = _visible(images, image, CELL)
        return np.stack(
            [
                0.05 + 0.9 * v if generation.tokens[p].strip() == "circle" else np.full(len(images), 0.85)
                for p in positions
            ],
            axis=1,
        )

    return CallableAdapter(score, lambda img, prompt: "a red circle and a blue triangle .", name="caption-fake")


def _red_adapter(image: np.ndarray) -> CallableAdapter:
    def score(images, generation, positions):
        return np.repeat(_visible(images, image, CELL)[:, None], len(positions), axis=1)

    return CallableAdapter(score, lambda img, prompt: "red", name="red-fake", batch_size=32)


@pytest.fixture(scope="module")
def results(image: np.ndarray, expl: Explanation) -> dict[str, object]:
    """One of every result type, on fake models (fast)."""
    diag = diagnose_yes_no(
        _yes_adapter(image),
        image,
        "Is there a cat?",
        "no",
        explainer=Explainer(_yes_adapter(image), n_regions=16, segmenter="grid"),
    )
    caption = caption_hallucinations(_caption_adapter(image), image, {"circle"}, vocabulary="shapes")
    modality = analyze_modality(make_fake_adapter(image, {"red": CELL * 1.0}, answer="a red thing"), image, prompt="q")
    ms = MultiScaleExplainer(_red_adapter(image), region_scales=(4, 16), segmenter="grid", keep_explanations=True)(
        image, prompt="q", target=0
    )
    attr = explain_prompt_tokens(
        _red_adapter(image), image, prompt="What color is the circle?", n_regions=4, segmenter="grid"
    )
    return {
        "Explanation": expl,
        "PromptAttribution": attr,
        "Generation": expl.generation,
        "ModalityReport": modality,
        "TokenModality": modality.tokens[0],
        "YesNoDiagnosis": diag,
        "RemovalResult": diag.removal,
        "CaptionDiagnosis": caption,
        "ObjectMention": caption.mentions[0],
        "MultiScaleExplanation": ms,
        "ScaleMap": ms.scales[0],
    }


def _evaluation_values() -> dict[str, object]:
    from mllm_attr.evaluation.tasks import GroundTruth, Sample, Selection

    boxes = tuple((float(i), 2.0, 30.0, 40.0) for i in range(40))
    truth = GroundTruth("dog", boxes, tuple([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]] for _ in boxes), 480, 640)
    sample = Sample(
        "139", "coco-object", Path("/data/val2014/COCO_val2014_000000000139.jpg"), "Describe it.", {}, (truth,) * 6
    )
    selection = Selection(generation_from_text("q", "a dog on a sofa " * 30), (1,), truth)
    return {"GroundTruth": truth, "Sample": sample, "Selection": selection}


def test_every_result_has_a_short_repr(results: dict[str, object]) -> None:
    for name, obj in {**results, **_evaluation_values()}.items():
        text = repr(obj)
        assert text.startswith(f"{name}("), text
        assert len(text) < 400, f"{name}: {len(text)} characters"
        assert "[" not in text and "array(" not in text, f"{name} dumps a list or an array: {text}"
        assert "\n" not in text


def test_repr_says_what_was_explained(results: dict[str, object]) -> None:
    text = repr(results["Explanation"])
    for part in (
        "target='red'",
        "answer='a red thing'",
        "regions=16",
        "insertion_auc=",
        "deletion_auc=",
        "forwards=272",
    ):
        assert part in text, text
    attr = repr(results["PromptAttribution"])
    assert "words=5" in attr and "feature_insertion_auc=" in attr
    assert "amcr=0.062" in repr(results["YesNoDiagnosis"]) and "correct=False" in repr(results["YesNoDiagnosis"])
    assert "hallucinated='triangle'" in repr(results["CaptionDiagnosis"])
    gen = generation_from_text("a very long prompt " * 20, "word " * 500)
    assert len(repr(gen)) < 200 and "tokens=500" in repr(gen)


def _figure_ok(fig) -> None:
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    assert viz.figure_to_rgb(fig, dpi=40).std() > 5  # something was drawn


def test_plot_returns_a_figure(results: dict[str, object], expl: Explanation) -> None:
    for name in (
        "Explanation",
        "PromptAttribution",
        "ModalityReport",
        "YesNoDiagnosis",
        "CaptionDiagnosis",
        "MultiScaleExplanation",
    ):
        _figure_ok(results[name].plot())
    fig = expl.plot()
    assert "explained: 'red'" in fig.axes[0].get_title() and "a red thing" in fig.axes[0].get_title()
    token = expl.plot(token=0, outline=False)
    assert "token 'red'" in token.axes[1].get_ylabel()
    own = viz._new_figure(6, 3)
    ax = own.subplots(1, 2)[1]
    assert expl.plot(ax=ax, colorbar=False) is own and ax.images
    # the prompt-word attribution's title uses its own AUCs (over features) and lists its top words
    attr = results["PromptAttribution"].plot()
    assert "feature insertion AUC" in attr.axes[0].get_title()
    assert "top prompt words" in " ".join(t.get_text() for t in attr.axes[0].texts)
    # the yes/no picture: the wrong answer, the correct answer's evidence, the removal
    panel = results["YesNoDiagnosis"].plot()
    assert "'Yes'" in panel.axes[0].get_title() and "'No'" in panel.axes[2].get_title()
    # the multiscale picture: every scale, then the combinations
    ms = results["MultiScaleExplanation"].plot()
    titles = [a.get_title() for a in ms.axes if a.images]
    assert titles[0] == "input" and titles[1].startswith("regions=4") and titles[-1].startswith("weighted")


def test_correct_yes_no_answer_has_nothing_to_plot(image: np.ndarray) -> None:
    adapter = _yes_adapter(image)
    diag = diagnose_yes_no(adapter, image, "Is there a red cell?", "yes", explainer=Explainer(adapter, n_regions=4))
    assert diag.correct
    with pytest.raises(ValueError, match="was correct"):
        diag.plot()
    page = diag._repr_html_()
    assert "<img" not in page and "Is there a red cell?" in page


def _png_of(page: str) -> Image.Image:
    m = re.search(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert m, "no inline PNG"
    return Image.open(io.BytesIO(base64.b64decode(m.group(1))))


def test_repr_html(results: dict[str, object]) -> None:
    page = results["Explanation"]._repr_html_()
    assert '<img src="data:image/png;base64,' in page
    for part in ("&#x27;red&#x27;", "a red thing", "What color is it?", "insertion auc", "highest confidence", "272"):
        assert part in page, part
    with _png_of(page) as im:
        assert im.format == "PNG" and im.width > 200
    assert len(page) < 200_000  # small enough for a notebook
    for name in ("PromptAttribution", "YesNoDiagnosis", "MultiScaleExplanation"):
        assert '<img src="data:image/png;base64,' in results[name]._repr_html_(), name
    modality = results["ModalityReport"]._repr_html_()
    assert "perception-driven" in modality and '<span class="mllm-attr-perception"' in modality
    caption = results["CaptionDiagnosis"]._repr_html_()
    assert "line-through" in caption and "triangle" in caption and "CHAIR" in caption


def test_repr_html_escapes_generated_text(image: np.ndarray) -> None:
    evil = '<script>alert("x")</script>'
    adapter = make_fake_adapter(image, {"red": CELL * 1.0}, answer=f"red {evil}", floor=0.05)
    e = Explainer(adapter, n_regions=4, segmenter="grid")(image, prompt="<b>q</b>", target="red")
    page = e._repr_html_()
    assert "<script>" not in page and "<b>q</b>" not in page
    assert html.escape("<b>q</b>") in page


def test_show_uses_pyplot_only_on_request(expl: Explanation, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    expl.show()  # Agg: nothing to show; the figure is released again
    assert plt.get_fignums() == before
    # in a Jupyter kernel the figure goes to IPython's display instead
    ipython = pytest.importorskip("IPython")
    shown: list[object] = []

    class Kernel:
        kernel = object()

    monkeypatch.setattr(ipython, "get_ipython", lambda: Kernel())
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    expl.show(token=0)
    assert len(shown) == 1 and type(shown[0]).__name__ == "Figure"
    assert plt.get_fignums() == before
    assert "matplotlib.pyplot" in sys.modules
