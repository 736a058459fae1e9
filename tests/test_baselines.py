"""Attribution baselines on tiny random models of the real classes (and the trained shapes model)."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_attr import HFAdapter, load_adapter
from mllm_attr.baselines import (
    BASELINES,
    IGOSPP,
    TAM,
    AttributionMethod,
    LlavaCAM,
    get_baseline,
    normalise_map,
    rank_gaussian_filter,
)
from mllm_attr.baselines._model import teacher_forced
from mllm_attr.baselines._vision import check_family, grid_to_image, mask_to_pixels, vision_layout
from mllm_attr.baselines.cam import resolve_layer
from mllm_attr.baselines.tam import eci
from mllm_attr.metrics import pointing_game
from mllm_attr.testing.fake import make_fake_adapter
from mllm_attr.testing.tiny_models import build_tiny

logger = logging.getLogger(__name__)
FAMILIES = ["llava", "qwen2_vl", "qwen2_5_vl"]
SHAPES_MODEL = Path(__file__).resolve().parents[1] / "mllm_attr" / "assets" / "shapes-llava"
FAST = {"llava_cam": {"n_samples": 2}, "igos_pp": {"iterations": 3}}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    out = {}
    img = np.random.default_rng(0).integers(1, 255, size=(48, 64, 3), dtype=np.uint8)
    for fam in FAMILIES:
        adapter = load_adapter(build_tiny(fam))
        out[fam] = (adapter, img, adapter.generate(img, "what color is the circle ?", max_new_tokens=4))
    return out


def test_registry():
    assert set(BASELINES) == {"llava_cam", "tam", "igos_pp", "random", "centre"}
    for name in BASELINES:
        method = get_baseline(name)
        assert isinstance(method, AttributionMethod) and method.name == name
    with pytest.raises(ValueError, match=r"unknown baseline 'gradcam'.*'centre'.*'igos_pp'.*'llava_cam'"):
        get_baseline("gradcam")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['steps'\].*allowed"):
        get_baseline("igos_pp", steps=3)
    assert get_baseline("llava_cam", layer=0, n_samples=1).layer == 0
    for bad in ({"n_samples": 0}, {"noise_level": -1.0}):
        with pytest.raises(ValueError):
            LlavaCAM(**bad)
    with pytest.raises(ValueError, match="objective"):
        IGOSPP(objective="loss")
    with pytest.raises(ValueError, match="filter_size"):
        TAM(filter_size=2)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_map_contract(tiny, family, name):
    adapter, img, gen = tiny[family]
    method = get_baseline(name, **FAST.get(name, {}))
    sal = method(adapter, img, gen, [1, 2], seed=7)
    assert sal.dtype == np.float32 and sal.shape == img.shape[:2]
    assert np.all(np.isfinite(sal)) and sal.min() >= 0.0 and sal.max() <= 1.0
    assert np.array_equal(sal, method(adapter, img, gen, [1, 2], seed=7))  # deterministic for a seed


def test_gradient_baselines_work_under_inference_mode(tiny):
    adapter, img, gen = tiny["llava"]
    with torch.inference_mode():
        cam = LlavaCAM(layer=0, n_samples=1)(adapter, img, gen, [1])
        mask = IGOSPP(iterations=1)(adapter, img, gen, [1])
    assert np.isfinite(cam).all() and np.isfinite(mask).all()


def test_seed_changes_noise(tiny):
    adapter, img, gen = tiny["llava"]
    rnd = get_baseline("random")
    assert not np.array_equal(rnd(adapter, img, gen, [0], seed=0), rnd(adapter, img, gen, [0], seed=1))
    cam = LlavaCAM(layer=0, n_samples=2, noise_level=0.2)
    g0, _ = cam.grid(adapter, img, gen, [1], seed=0)
    g1, _ = cam.grid(adapter, img, gen, [1], seed=1)
    assert not np.allclose(g0, g1)
    plain, _ = LlavaCAM(layer=0, n_samples=1, noise_level=0.0).grid(adapter, img, gen, [1])
    assert plain.shape == (4, 4) and plain.min() >= 0 and plain.max() > 0  # 32 px / 8 px patches


def test_white_box_needs_hf_adapter_of_known_family(rgb_image):
    fake = make_fake_adapter(rgb_image, {"cat": np.ones((40, 40))}, answer="a cat")
    gen = fake.generate(rgb_image, "q")
    for name in ("llava_cam", "tam", "igos_pp"):
        with pytest.raises(TypeError, match="HFAdapter"):
            get_baseline(name)(fake, rgb_image, gen, [1])
    assert get_baseline("centre")(fake, rgb_image, gen, [1]).shape == (40, 40)  # floors work on any adapter
    with pytest.raises(NotImplementedError, match="llava, qwen2_vl, qwen2_5_vl"):
        check_family("gemma3")
    generic = HFAdapter(*build_tiny("llava"))  # family "auto": grid unknown
    with pytest.raises(NotImplementedError, match="'auto' is not supported"):
        TAM()(generic, rgb_image, generic.generate(rgb_image, "q", max_new_tokens=2), [0])


def test_resolve_layer():
    assert resolve_layer(32, None) == 15 and resolve_layer(2, None) == 0
    assert resolve_layer(32, -2) == 30
    with pytest.raises(ValueError, match="out of range"):
        resolve_layer(2, 2)


# -- geometry ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "family,hw,box",
    [
        ("llava", (32, 32), (8, 16, 0, 8)),  # no resize, no crop
        ("llava", (48, 64), (30, 46, 40, 56)),  # resize 32x42, centre crop 5 px each side
        ("llava", (96, 40), (40, 60, 12, 30)),  # tall: crop top/bottom
        ("qwen2_5_vl", (56, 56), (28, 56, 0, 28)),
        ("qwen2_5_vl", (70, 100), (5, 30, 60, 95)),
    ],
)
def test_grid_maps_back_onto_the_right_pixels(tiny, family, hw, box):
    """Per-token brightness of a white box on black, mapped back, peaks inside the box."""
    adapter = tiny[family][0]
    img = np.zeros((*hw, 3), dtype=np.uint8)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = 255
    inputs = adapter.prompt_inputs(Image.fromarray(img), "q")
    pixel = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    layout = vision_layout(adapter, hw, inputs["input_ids"], pixel)
    pv = pixel["pixel_values"].float()
    if family == "llava":
        p = pv.shape[-1] // layout.grid[1]
        tokens = pv[0].mean(0).reshape(layout.grid[0], p, layout.grid[1], p).mean((1, 3))
    else:
        tokens = pv.reshape(layout.n_tokens, -1).mean(1).reshape(layout.grid)  # 4 rows = 1 merged token
    assert len(layout.positions) == layout.n_tokens
    mapped = grid_to_image(tokens.numpy(), layout)
    assert mapped.shape == hw
    inside = np.zeros(hw, bool)
    inside[y0:y1, x0:x1] = True
    assert mapped[inside].mean() > mapped[~inside].mean()
    assert pointing_game(mapped, inside)  # the maximum (plateau centroid, see its tie rule) is inside


def test_llava_crop_is_zero_outside_the_view(tiny):
    adapter = tiny["llava"][0]
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    inputs = adapter.prompt_inputs(Image.fromarray(img), "q")
    layout = vision_layout(adapter, (48, 64), inputs["input_ids"], {"pixel_values": inputs["pixel_values"]})
    mapped = grid_to_image(np.ones(layout.grid), layout)
    # 64 px wide -> 42 px after resizing, crop 32 from x=5: the view covers x in [7.6, 56.4).
    assert np.all(mapped[:, :7] == 0) and np.all(mapped[:, 57:] == 0) and np.allclose(mapped[:, 8:56], 1)


@pytest.mark.parametrize("family,hw", [("llava", (32, 32)), ("qwen2_5_vl", (56, 56))])
def test_composition_in_pixel_space_is_exact(tiny, family, hw):
    """At the view's own size, composing pixel_values with mask_to_pixels == processing the composite."""
    adapter = tiny[family][0]
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(*hw, 3), dtype=np.uint8)
    base = rng.integers(0, 255, size=(*hw, 3), dtype=np.uint8)
    keep = np.zeros(hw, bool)
    keep[: hw[0] // 2 + 3, 5:] = True
    proc = lambda a: adapter.image_inputs([Image.fromarray(a)])  # noqa: E731
    pi, pb, pc = proc(img), proc(base), proc(np.where(keep[..., None], img, base))
    inputs = adapter.prompt_inputs(Image.fromarray(img), "q")
    layout = vision_layout(adapter, hw, inputs["input_ids"], pi)
    assert layout.input_hw == hw
    m = mask_to_pixels(layout, torch.as_tensor(keep, dtype=torch.float32), pi["pixel_values"], adapter)
    composed = pb["pixel_values"] + (pi["pixel_values"] - pb["pixel_values"]) * m
    assert torch.allclose(composed, pc["pixel_values"], atol=1e-5)


# -- TAM -----------------------------------------------------------------------------------------
def test_rank_gaussian_filter_and_eci():
    assert np.allclose(rank_gaussian_filter(np.full((3, 4), 0.5)), 0.5)
    assert np.all(rank_gaussian_filter(np.zeros((2, 2))) == 0)
    spike = np.zeros((5, 5))
    spike[2, 2] = 1.0
    out = rank_gaussian_filter(spike)
    assert out.dtype == np.float32 and out[2, 2] < 1.0 and np.all(out >= 0)  # an isolated spike is damped
    i_map = np.array([1.0, 0.0, 2.0, 0.0])
    extra = np.array([0.0, 3.0, 0.0, 0.0])
    # A = 2 I + E with E orthogonal to I: the least-squares scale is 2, the interference vanishes.
    assert np.allclose(eci(2 * i_map + extra, i_map[None], np.array([5.0])), extra)
    assert np.allclose(eci(i_map, np.zeros((0, 4)), np.zeros(0)), i_map)


@pytest.mark.parametrize("family", FAMILIES)
def test_tam_explains_the_generated_target_not_prompt_token_0(tiny, family):
    adapter, img, gen = tiny[family]
    tam = TAM()
    tf = teacher_forced(adapter, img, gen, [0])
    prompt_len = int(tf.logit_positions[0]) + 1
    maps = tam.token_maps(adapter, img, gen, [0, 1, 2, 3])
    assert maps.class_ids == list(gen.token_ids[:4])  # the generated tokens' own classes
    assert maps.class_ids[0] != int(tf.input_ids[0, 0])  # never prompt token 0's
    vis = set(maps.layout.positions.tolist())
    for k, ctx in enumerate(maps.context):
        assert ctx and max(ctx) <= prompt_len - 1 + k and not vis & set(ctx)
        assert all(int(tf.input_ids[0, j]) != gen.token_ids[k] for j in ctx if j < prompt_len)
    # Position 0's map is the generated token's, and it differs from the other positions'.
    alone = tam.token_maps(adapter, img, gen, [0])
    assert np.allclose(alone.grids[0], maps.grids[0])
    for k in (1, 2, 3):
        if gen.token_ids[k] != gen.token_ids[0]:
            assert not np.allclose(maps.raw[k], maps.raw[0])
    full = [tam(adapter, img, gen, [k]) for k in range(4)]
    assert any(not np.allclose(full[0], f) for f in full[1:])


# -- IGOS++ --------------------------------------------------------------------------------------
def test_igos_mask(tiny):
    adapter, img, gen = tiny["qwen2_5_vl"]
    m, layout, losses = IGOSPP(mask_size=5, iterations=3).mask(adapter, img, gen, [1])
    assert m.shape == (5, 5) and np.all((m > 0) & (m < 1)) and len(losses) == 3
    assert np.all(np.isfinite(losses))
    assert all(p.grad is None for p in adapter.model.parameters())  # no gradient left on the model


def test_normalise_map():
    assert np.array_equal(normalise_map(np.full((2, 2), 3.0)), np.zeros((2, 2), np.float32))
    assert np.allclose(normalise_map(np.array([[1.0, 3.0]])), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        normalise_map(np.array([[np.nan, 1.0]]))


# -- the trained shapes model --------------------------------------------------------------------
@pytest.mark.skipif(not (SHAPES_MODEL / "config.json").is_file(), reason="trained shapes model not built yet")
def test_gradient_baselines_on_shapes_model_colour_word():
    """Each white-box baseline runs on a single-object scene's colour word; where the maximum lands
    is reported (logged), not asserted: these are the baselines being evaluated, not the method."""
    from mllm_attr import Word
    from mllm_attr.data.shapes import color_question, make_scene
    from mllm_attr.targets import resolve

    torch.set_num_threads(1)
    adapter = load_adapter(str(SHAPES_MODEL))
    scene = make_scene(np.random.default_rng(11), split="test", n_objects=1)
    obj = scene.objects[0]
    gen = adapter.generate(scene.image, color_question(obj.shape), max_new_tokens=4)
    try:
        positions = resolve(gen, Word(obj.color))
    except ValueError:
        positions = [0]
    for name in ("llava_cam", "tam", "igos_pp"):
        sal = get_baseline(name, **FAST.get(name, {}))(adapter, scene.image, gen, positions, seed=0)
        assert sal.shape == scene.image.shape[:2] and np.all(np.isfinite(sal))
        peak = np.unravel_index(np.argmax(sal), sal.shape)
        logger.warning(
            "shapes model, %s on %r (answer %r, object box xywh %s): max at (y, x) = %s, inside object: %s, "
            "pointing game: %s",
            name,
            obj.color,
            gen.text,
            [round(v) for v in obj.bbox],
            tuple(int(v) for v in peak),
            bool(obj.mask[peak]),
            pointing_game(sal, obj.mask),
        )
