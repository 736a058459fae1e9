"""Plots: shapes, per-token gains (exact identities), RGB output, no pyplot state, input errors."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from mllm_attr import Explainer, Explanation, viz
from mllm_attr.testing.fake import make_fake_adapter


def _scene() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    img = np.full((48, 48, 3), 200, np.uint8)
    img[6:20, 6:20] = (220, 30, 30)
    yy, xx = np.mgrid[:48, :48]
    circle = (yy - 33) ** 2 + (xx - 33) ** 2 < 9**2
    img[circle] = (30, 60, 220)
    img = np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 1, 255).astype(np.uint8)
    square = np.zeros((48, 48))
    square[6:20, 6:20] = 1.0
    weights = {
        "a": np.ones((48, 48)),
        "red": square,
        "square": square + 0.1,
        "blue": circle * 1.0,
        "circle": circle * 1.0,
    }
    return img, weights


@pytest.fixture(scope="module")
def expl() -> Explanation:
    img, weights = _scene()
    adapter = make_fake_adapter(img, weights, answer="a red square and a blue circle", floor=0.05)
    return Explainer(adapter, n_regions=9, segmenter="grid", lambda1=1.0, lambda2=0.5)(
        img, prompt="Describe the image.", target=[1, 2, 5]
    )


def _image_axes(fig) -> list:
    return [a for a in fig.axes if a.images]


def _is_rgb_png(path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.mode == "RGB"


def test_token_region_gains_identities(expl: Explanation) -> None:
    gains = viz.token_region_gains(expl)
    assert gains.shape == (3, expl.n_regions)
    lam1, lam2 = expl.settings["lambda1"], expl.settings["lambda2"]
    # each token's gains add up to its total image effect
    np.testing.assert_allclose(gains.sum(axis=1), (lam1 + lam2) * (expl.p_full - expl.p_blank), atol=1e-12)
    # the token mean is the joint objective's marginal gain, region by region
    steps = np.diff(np.concatenate([[expl.value_empty()], expl.value]))
    np.testing.assert_allclose(gains.mean(axis=0)[expl.ordering], steps, atol=1e-12)
    # the fake 'blue' token only sees the circle: regions without circle pixels gain nothing for it
    img, weights = _scene()
    no_circle = [r for r in range(expl.n_regions) if weights["blue"][expl.labels == r].sum() == 0]
    assert no_circle and np.allclose(gains[2, no_circle], 0.0)


def test_token_gain_map(expl: Explanation) -> None:
    m = viz.token_gain_map(expl, 0)
    assert m.shape == expl.labels.shape and m.dtype == np.float32
    assert np.abs(m).max() == pytest.approx(1.0)
    raw = viz.token_gain_map(expl, -1, normalize=False)
    np.testing.assert_allclose(raw, viz.token_region_gains(expl)[-1][expl.labels], rtol=1e-6)
    with pytest.raises(IndexError, match="out of range for 3"):
        viz.token_gain_map(expl, 3)
    with pytest.raises(TypeError, match="int index"):
        viz.token_gain_map(expl, "red")  # type: ignore[arg-type]


def test_overlays() -> None:
    img, _ = _scene()
    out = viz.overlay(img, np.linspace(0, 1, 48 * 48).reshape(48, 48))
    assert out.shape == img.shape and out.dtype == np.uint8
    same = viz.overlay_signed(img, np.zeros((48, 48)), gray=False)
    np.testing.assert_array_equal(same, img)  # zero gain leaves the image untouched
    strong = viz.overlay_signed(img, np.ones((48, 48)), alpha=1.0)
    assert (strong[..., 0] > strong[..., 2]).all()  # +1 is the red end of RdBu_r
    with pytest.raises(ValueError, match="expected the image's"):
        viz.overlay(img, np.zeros((10, 10)))
    with pytest.raises(ValueError, match=r"uint8\[H, W, 3\]"):
        viz.overlay(img.astype(np.float32), np.zeros((48, 48)))
    assert viz.normalize_map(np.full((4, 4), 3.0)).max() == 0.0


def test_figures_do_not_touch_pyplot(expl: Explanation, tmp_path) -> None:
    before = sys.modules["matplotlib.pyplot"].get_fignums() if "matplotlib.pyplot" in sys.modules else []
    figs = [
        viz.plot_token_heatmaps(expl),
        viz.plot_token_heatmaps(expl, curves=False, max_tokens=1),
        viz.plot_token_heatmaps(expl, tokens=[-1]),
        viz.plot_curves(expl, token=1).figure,
        viz.plot_heatmap(expl).figure,
    ]
    after = sys.modules["matplotlib.pyplot"].get_fignums() if "matplotlib.pyplot" in sys.modules else []
    # more tokens than max_tokens: the ones with the largest image effect are drawn
    top = int(np.argmax(expl.p_full - expl.p_blank))
    title = figs[1].axes[1].get_title()
    assert f"token {expl.positions[top]}" in title and "2 more explained tokens" in figs[1].texts[0].get_text()
    assert f"token {expl.positions[-1]}" in figs[2].axes[1].get_title()
    with pytest.raises(IndexError, match="out of range"):
        viz.plot_token_heatmaps(expl, tokens=[5])
    assert before == after  # nothing registered with pyplot, nothing to close
    for i, fig in enumerate(figs):
        rgb = viz.figure_to_rgb(fig, dpi=60)
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
        assert rgb.std() > 10  # not blank
        path = viz.save_figure(fig, tmp_path / f"f{i}.png", dpi=60)
        assert _is_rgb_png(path)
    assert viz.save_figure(figs[0], tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match="unsupported figure extension"):
        viz.save_figure(figs[0], tmp_path / "f.jpg")


def test_save_heatmap_and_explanation_save(expl: Explanation, tmp_path) -> None:
    assert _is_rgb_png(viz.save_heatmap(expl, tmp_path / "h.png"))
    out = expl.save(tmp_path / "e")
    assert _is_rgb_png(out / "heatmap.png")


@dataclass
class _Row:  # like mllm_attr.analysis.modality.TokenModality: .text, .label, .image_share
    text: str
    label: str
    image_share: float


def test_render_modality_text() -> None:
    items = [
        (" a", "prior-driven", 0.05),
        (" red", "perception-driven", 0.9),
        (" square", "mixed", 0.5),
        ("</s>", "special"),
    ]
    ax = viz.render_modality_text(items, title="Describe the image.")
    assert viz.figure_to_rgb(ax.figure, dpi=60).std() > 10
    short_h = ax.figure.get_size_inches()[1]
    long_ax = viz.render_modality_text(items * 12, width=4.0)  # wraps onto more lines: taller
    assert long_ax.figure.get_size_inches()[1] > short_h
    rows = [_Row(" red", "perception-driven", 0.9), _Row(" a", "prior-driven", 0.1)]
    texts = [t.get_text() for t in viz.render_modality_text(rows).texts]
    assert "red" in texts and "0.90" in texts
    colours = viz.modality_palette(["perception-driven", "prior-driven", "mixed", "weird", "weird"])
    assert colours["perception-driven"] == viz.MODALITY_COLORS["percep"]
    assert colours["prior-driven"] == viz.MODALITY_COLORS["prior"]
    assert len(colours) == 4 and colours["weird"] not in (colours["mixed"], colours["prior-driven"])
    # on a caller's axes
    fig = viz._new_figure(6, 2)
    ax2 = fig.add_subplot()
    assert viz.render_modality_text(items, ax2) is ax2
    with pytest.raises(ValueError, match="at least one"):
        viz.render_modality_text([])
    with pytest.raises(TypeError, match="token must be a str"):
        viz.render_modality_text([(3, "prior", 0.1)])
    with pytest.raises(TypeError, match=r"\(token, label, score\)"):
        viz.render_modality_text([object()])


def test_hallucination_panel(expl: Explanation, tmp_path) -> None:
    img = expl.image
    removal = np.zeros(img.shape[:2], bool)
    removal[24:, 24:] = True
    fig = viz.plot_hallucination_panel(
        img,
        "yes",
        np.random.default_rng(0).random((12, 12)),
        "no",
        removal,
        question="Is there a triangle in the image?",
        correct_token="no",
    )
    assert len(_image_axes(fig)) == 3  # and a colour bar
    assert "25%" in fig.axes[2].get_title()  # default removed fraction = mask mean
    assert _is_rgb_png(viz.save_figure(fig, tmp_path / "h.png", dpi=60))
    with pytest.raises(ValueError, match="removal_mask has shape"):
        viz.plot_hallucination_panel(img, "yes", expl.saliency(), "no", removal[:10])


def test_plot_methods_and_mean_curves(expl: Explanation) -> None:
    maps = {"EAGLE": expl.saliency(), "random": np.random.default_rng(1).random((8, 8)), "flat": np.ones((48, 48))}
    fig = viz.plot_methods(expl.image, maps, {"EAGLE": {"ins": 0.61, "del": 0.2}}, ncols=2)
    assert len(_image_axes(fig)) == 4 and len(fig.axes) == 5  # input + 3 maps, one colour bar
    assert "ins 0.610" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="unknown method"):
        viz.plot_methods(expl.image, maps, {"nope": {"ins": 1.0}})
    with pytest.raises(ValueError, match="non-empty"):
        viz.plot_methods(expl.image, {})
    curves = {
        "EAGLE": {"insertion": expl.insertion_curve(), "deletion": expl.deletion_curve()},
        "random": {"insertion": np.linspace(0, 1, 5)},
    }
    fig = viz.plot_mean_curves(curves)
    assert viz.figure_to_rgb(fig, dpi=50).std() > 10
    with pytest.raises(ValueError, match="equal length"):
        viz.plot_mean_curves({"bad": {"insertion": ([0, 1], [0, 1, 2])}})


def test_dollar_signs_are_text_not_mathtext(expl: Explanation) -> None:
    """Generated text and names are data: '$\\frac' must render literally, not crash mathtext."""
    evil = "costs $5 and $\\frac{"
    figs = [
        viz.render_modality_text([(evil, "prior", 0.5), ("$", "$label$", None)], title=evil).figure,
        viz.plot_methods(expl.image, {evil: expl.saliency()}, {evil: {"$m$": 1.0}}),
        viz.plot_mean_curves({evil: {"insertion": np.linspace(0, 1, 4)}}, title=evil),
        viz.plot_hallucination_panel(expl.image, evil, expl.saliency(), evil, expl.labels == 0, question=evil),
    ]
    for fig in figs:
        assert viz.figure_to_rgb(fig, dpi=40).std() > 5


def test_per_token_maps_follow_the_same_rule(expl: Explanation) -> None:
    from mllm_attr.explanation import region_values

    lam1, lam2 = expl.settings["lambda1"], expl.settings["lambda2"]
    for k in range(len(expl.positions)):
        f = lam1 * expl.ins[:, k] + lam2 * (1.0 - expl.dele[:, k])
        f0 = lam1 * expl.p_blank[k] + lam2 * (1.0 - expl.p_full[k])
        for rule in ("evidence", "reference"):
            want = region_values(expl.ordering, f, f0, rule)
            np.testing.assert_allclose(expl.region_scores(rule=rule, token=k), want, atol=1e-12)
            np.testing.assert_allclose(expl.saliency(rule=rule, token=k), want[expl.labels].astype(np.float32))
    # the joint map is the rule on the token-mean objective
    np.testing.assert_allclose(expl.region_scores(), region_values(expl.ordering, expl.value, expl.value_empty()))
    # the fake 'blue' token only sees the circle: its own map is not the joint one
    assert not np.allclose(expl.saliency(token=2), expl.saliency())
    with pytest.raises(IndexError, match="out of range"):
        expl.saliency(token=3)


# -- the look: the image stays visible, a perceptually uniform map, outlines, titles, bars -------


@pytest.fixture(scope="module")
def one_cell() -> Explanation:
    """Only grid cell 4 (the centre of 3x3) matters for the explained word."""
    img, _ = _scene()
    cell = np.zeros((48, 48))
    cell[16:32, 16:32] = 1.0
    adapter = make_fake_adapter(img, {"red": cell}, answer="a red square", floor=0.05)
    return Explainer(adapter, n_regions=9, segmenter="grid")(img, prompt="What is in the middle?", target="red")


def _shown(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_heatmap_keeps_the_image_visible(one_cell: Explanation) -> None:
    ax = viz.plot_heatmap(one_cell)
    shown = _shown(ax)
    gray = viz.gray_image(one_cell.image)
    sal = one_cell.saliency()
    none = sal < 1e-3
    assert none.mean() > 0.5
    # where the map holds no evidence, the picture IS the greyed image (not a colour wash; up to
    # rounding of the 1e-6 tie-break values)
    _same(shown[none], gray[none])
    # the image is really visible there: its luminance structure survives (not one flat colour)
    assert shown[none].std() > 5
    # where the evidence is strongest, the map's colour covers it (not the plain image)
    top = sal > 0.99
    assert top.any()
    diff = np.abs(shown[top].astype(int) - gray[top].astype(int)).max(axis=1)
    assert (diff > 30).all()
    np.testing.assert_array_equal(shown, viz.overlay(one_cell.image, sal))


def test_overlay_opacity_grows_with_the_value() -> None:
    img, _ = _scene()
    ramp = np.tile(np.linspace(0, 1, 48), (48, 1))
    out = viz.overlay(img, ramp).astype(int)
    gray = viz.gray_image(img).astype(int)
    dist = np.abs(out - gray).sum(axis=2).mean(axis=0)  # per column, left (0) to right (1)
    assert dist[0] == 0 and dist[-1] > 100
    assert np.all(np.diff(dist[::6]) > 0)
    # the plain blend of earlier versions is still there on request
    plain = viz.overlay(img, ramp, 0.55, gray=False, scale_alpha=False)
    want = 0.45 * img / 255.0 + 0.55 * viz.get_cmap()(ramp)[..., :3]
    np.testing.assert_allclose(plain / 255.0, want, atol=1 / 255 + 1e-9)


def test_colour_map_is_perceptually_uniform_not_jet() -> None:
    assert viz.HEATMAP_CMAP in ("inferno", "magma", "viridis", "cividis", "plasma")
    cm = viz.get_cmap()
    assert "jet" not in cm.name
    # perceptually ordered: luminance rises monotonically from 0 to 1 (jet's does not)
    rgb = cm(np.linspace(0, 1, 64))[:, :3]
    lum = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lum) > 0)
    # the colour bar shows what the picture shows: grey at 0, the map's top colour (mostly) at 1
    shown = viz.display_cmap()
    assert np.allclose(shown(0.0)[:3], 0.42)
    assert np.abs(np.asarray(shown(1.0)[:3]) - np.asarray(cm(1.0)[:3])).max() < 0.25


def test_heatmap_title_bar_and_outline(one_cell: Explanation) -> None:
    ax = viz.plot_heatmap(one_cell)
    title = ax.get_title()
    assert "explained: 'red'" in title and "a red square" in title and "What is in the middle?" in title
    assert "insertion AUC" in title and "deletion AUC" in title
    bar = [a for a in ax.figure.axes if a is not ax]
    assert len(bar) == 1 and "region evidence" in bar[0].get_ylabel() and "1 = strongest" in bar[0].get_ylabel()
    # the top region is the one cell that matters, and it is outlined
    assert viz.top_regions(one_cell).tolist() == [int(one_cell.labels[24, 24])]
    np.testing.assert_array_equal(viz.top_region_mask(one_cell), one_cell.labels == one_cell.labels[24, 24])
    contours = [c for c in ax.collections if c.get_paths()]
    assert contours, "no outline drawn"
    verts = np.concatenate([p.vertices for c in contours for p in c.get_paths()])
    # the outline runs along the cell's pixel edges (rows / columns 16 and 32 -> 15.5 and 31.5)
    assert verts[:, 0].min() == pytest.approx(15.5, abs=0.2) and verts[:, 0].max() == pytest.approx(31.5, abs=0.2)
    caption = " ".join(t.get_text() for t in ax.texts)
    assert "top 1 of 9 regions" in caption and "11% of the image" in caption
    # options: no outline, no bar, the reference rule, a token's own map, another title
    ax2 = viz.plot_heatmap(one_cell, outline=False, colorbar=False, rule="reference", title="T")
    assert not [c for c in ax2.collections if c.get_paths()] and len(ax2.figure.axes) == 1 and ax2.get_title() == "T"
    ax3 = viz.plot_heatmap(one_cell, token=0)
    assert "reference" in viz.map_label(one_cell, rule="reference") and "token 'red'" in ax3.figure.axes[1].get_ylabel()


def test_top_regions_rules(expl: Explanation) -> None:
    # joint: the shortest prefix reaching 90 % of the way to the highest confidence
    # (cut to 30 % of the image: each of the 9 grid cells covers 1/9 of it, so at most 2 of them)
    _, y = expl.insertion_curve()
    reach = int(np.argmax(y >= y[0] + 0.9 * (y.max() - y[0])))
    assert reach > 2
    assert viz.top_regions(expl).tolist() == expl.ordering[:2].tolist()
    assert viz.top_regions(expl, max_area=1.0).tolist() == expl.ordering[:reach].tolist()
    # a token: its own regions by gain ('blue' only sees the circle, bottom right)
    gains = viz.token_region_gains(expl)[2]
    own = viz.top_regions(expl, 2, max_area=1.0)
    assert own.tolist() == np.argsort(-gains, kind="stable")[: len(own)].tolist()
    assert all(gains[r] > 0 for r in own)
    positive = np.maximum(gains, 0).sum()
    assert gains[own].sum() >= 0.9 * positive - 1e-12 > gains[own[:-1]].sum()  # the fewest that reach 90 %
    assert viz.top_regions(expl, 2).tolist() == own[:2].tolist()  # cut to 30 % of the image
    # the area cap and its floor of one region
    assert len(viz.top_regions(expl, max_area=0.01)) == 1
    with pytest.raises(ValueError, match="fraction"):
        viz.top_regions(expl, fraction=0.0)


def test_token_heatmaps_look(expl: Explanation) -> None:
    fig = viz.plot_token_heatmaps(expl, curves=False)
    panels = _image_axes(fig)
    assert len(panels) == 1 + len(expl.positions)
    gray = viz.gray_image(expl.image)
    # a token's panel: regions with no gain for it show the greyed image exactly
    gain = viz.token_gain_map(expl, 2)
    zero = np.abs(gain) < 1e-9
    assert zero.any()
    _same(_shown(panels[3])[zero], gray[zero])
    assert all([c for c in a.collections if c.get_paths()] for a in panels)  # every panel outlined
    assert "explained:" in fig.get_suptitle() and expl.generation.text in fig.get_suptitle()
    bars = [a for a in fig.axes if not a.images]
    labels = " ".join(a.get_ylabel() for a in bars)
    assert len(bars) == 2 and "region evidence" in labels and "gain" in labels


def test_methods_accept_explanations_and_outline_them(one_cell: Explanation) -> None:
    img = one_cell.image
    flat_top = np.zeros((48, 48))
    flat_top[:10, :10] = 1.0
    fig = viz.plot_methods(img, {"EAGLE": one_cell, "box": flat_top})
    panels = _image_axes(fig)
    assert "ins " in panels[1].get_title() and "del " in panels[1].get_title()  # AUCs from the explanation
    gray = viz.gray_image(img)
    np.testing.assert_array_equal(_shown(panels[2])[flat_top == 0], gray[flat_top == 0])
    for a in panels[1:]:
        assert [c for c in a.collections if c.get_paths()]
    bar = [a for a in fig.axes if not a.images]
    assert len(bar) == 1 and "map value" in bar[0].get_ylabel()
    given = viz.plot_methods(img, {"box": flat_top}, outlines={"box": flat_top > 0}, outline=False)
    assert [c for c in _image_axes(given)[1].collections if c.get_paths()]
    with pytest.raises(ValueError, match="unknown method"):
        viz.plot_methods(img, {"box": flat_top}, outlines={"nope": flat_top > 0})


def test_hallucination_panel_evidence_over_the_greyed_image(one_cell: Explanation) -> None:
    ev = one_cell.saliency()
    fig = viz.plot_hallucination_panel(
        one_cell.image, "yes", ev, "no", one_cell.labels == 0, evidence_outline=viz.top_region_mask(one_cell)
    )
    middle = _image_axes(fig)[1]
    none = ev < 1e-3
    _same(_shown(middle)[none], viz.gray_image(one_cell.image)[none])
    assert [c for c in middle.collections if c.get_paths()] and "top regions" in middle.get_title()
    fig = viz.plot_hallucination_panel(one_cell.image, "yes", ev, "(never corrected)", ev < 0, corrected=False)
    assert "no removal corrected it" in fig.axes[2].get_title()


def test_map_image_for_html(one_cell: Explanation) -> None:
    mask = viz.top_region_mask(one_cell)
    arr = viz.map_image(one_cell.image, one_cell.saliency(), outline=mask, min_size=200)
    assert arr.shape == (240, 240, 3) and arr.dtype == np.uint8  # 48 px x 5
    cyan = np.all(arr == np.array([0x00, 0xE5, 0xFF]), axis=-1)
    rows, cols = np.nonzero(cyan)
    assert cyan.any() and rows.min() == 16 * 5 and cols.max() == 32 * 5 - 1  # on the cell's edge, inside it
    # away from the outline and the evidence: the greyed image, enlarged
    np.testing.assert_array_equal(arr[:5, :5], np.repeat(np.repeat(viz.gray_image(one_cell.image)[:1, :1], 5, 0), 5, 1))
    with pytest.raises(ValueError, match="outline has shape"):
        viz.map_image(one_cell.image, one_cell.saliency(), outline=mask[:4])
