"""The "shapes world": seeded synthetic scenes of coloured shapes with exact ground truth.

A scene is a small RGB image (64 x 64 by default; the size is configurable) with one to
four flat-coloured shapes on a plain or lightly textured background. Every object has a
shape (its class name / COCO category), a colour (an attribute), a box and an exact
boolean mask of what is visible after occlusion (later objects are drawn on top).

* shapes (:data:`SHAPES`): circle, square, triangle, star, cross, diamond;
* colours (:data:`COLORS`): red, green, blue, yellow, orange, purple, cyan (well
  separated in RGB, none of them grey, so never confused with the background);
* within one scene every object has a different colour and, by default, a different
  shape, so "the red object" and "the circle" each name exactly one object;
* backgrounds: a grey-ish tint, plain or with light noise, a soft gradient or faint stripes.

All shapes are polygons (a circle is a 48-gon) rasterised with :mod:`pycocotools.mask`,
so a polygon segmentation written to COCO JSON decodes to exactly the mask used to
paint the image.

Co-occurrence bias (deliberate)
-------------------------------
:data:`CO_OCCURRENCE_BIAS` makes one shape (the *anchor*, ``"star"``) almost always
appear together with a *partner* shape (``"diamond"``) in the **train** split: when a
star is in a training scene, a diamond is added with probability 0.95. In the other
splits (``"val"``, ``"test"``) the partner accompanies the anchor only with probability
0.3, so held-out scenes often show a star *without* a diamond. A model trained on the
train split picks up the prior "star => diamond" and hallucinates the diamond (answers
"yes" to "Is there a diamond in the image?", or continues its caption "... a yellow star
and a red diamond ." because captions list the anchor before the partner) when it sees a
star alone. :data:`CO_OCCURRENCE_BIAS.control <CoOccurrenceBias>` (``"circle"``) is an
unbiased shape to compare against. Analysis code should read the pair from the
constant, not hard-code it::

    from mllm_attr.data.shapes import CO_OCCURRENCE_BIAS, BIASED_PAIR
    CO_OCCURRENCE_BIAS.anchor, CO_OCCURRENCE_BIAS.partner   # ("star", "diamond")
    BIASED_PAIR                                              # the same pair
    CO_OCCURRENCE_BIAS.p("train"), CO_OCCURRENCE_BIAS.p("test")  # 0.95, 0.3

Public formats (:func:`write_dataset`)
--------------------------------------
::

    <out>/<split>/shapes_<split>_000001.png
    <out>/annotations/instances_<split>.json   # COCO instances (+ "color" per annotation)
    <out>/annotations/captions_<split>.json    # COCO captions
    <out>/pope_<split>_{random,popular,adversarial}.jsonl   # POPE yes/no questions
    <out>/refs_<split>.json                    # RefCOCO-style referring expressions (JSON)

Everything is deterministic: the same ``seed`` gives the same bytes. Scene ``i`` of a
split depends only on ``(seed, split, i)`` and the generator settings, not on how many
scenes are written.

The model format the shipped shapes-LLaVA understands (see :data:`QUESTION_TEMPLATES`):
``"What color is the circle?"`` -> ``"red"``, ``"Is there a square in the image?"`` ->
``"yes"``/``"no"``, ``"What shape is the red object?"`` -> ``"circle"``,
``"Describe the image."`` -> :func:`canonical_caption` (e.g.
``"a red circle and a blue square ."``: objects in :data:`SHAPES` order joined by "and"),
parsed back with :func:`parse_caption`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = [
    "SHAPES",
    "COLORS",
    "COLOR_NAMES",
    "SPLITS",
    "CoOccurrenceBias",
    "CO_OCCURRENCE_BIAS",
    "BIASED_PAIR",
    "QUESTION_TEMPLATES",
    "ShapeObject",
    "Scene",
    "scene_rng",
    "make_scene",
    "generate_scenes",
    "canonical_caption",
    "parse_caption",
    "parse_answer_word",
    "color_question",
    "exist_question",
    "shape_question",
    "CAPTION_QUESTION",
    "pope_questions",
    "referring_expressions",
    "write_dataset",
    "scene_to_json",
    "EXAMPLE_SEED",
    "example_scene",
    "write_example",
]

#: Shape kinds, in canonical order (COCO category id = index + 1; captions list objects in this order).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")

#: Colour name -> RGB. Pairwise RGB distances are >= 75 and none is grey.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 165, 55),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 35),
    "orange": (245, 135, 25),
    "purple": (150, 55, 200),
    "cyan": (35, 205, 215),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class CoOccurrenceBias:
    """A deliberate co-occurrence bias between two shape categories.

    Attributes:
        anchor: the shape whose presence predicts the partner (``"star"``).
        partner: the shape that (in training data) almost always comes with the anchor.
        control: an unbiased shape to compare hallucination rates against.
        p_partner_given_anchor: per split, probability that a scene containing the anchor
            also contains the partner.
    """

    anchor: str
    partner: str
    control: str
    p_partner_given_anchor: Mapping[str, float]

    def p(self, split: str) -> float:
        """P(partner | anchor) for ``split`` (splits not listed use the ``"test"`` value)."""
        return float(self.p_partner_given_anchor.get(split, self.p_partner_given_anchor["test"]))

    @property
    def pair(self) -> tuple[str, str]:
        """``(anchor, partner)``."""
        return (self.anchor, self.partner)


#: The deliberate bias of the shapes world (see the module docstring).
CO_OCCURRENCE_BIAS = CoOccurrenceBias(
    anchor="star",
    partner="diamond",
    control="circle",
    p_partner_given_anchor={"train": 0.95, "val": 0.3, "test": 0.3},
)
#: ``(anchor, partner)`` of :data:`CO_OCCURRENCE_BIAS`.
BIASED_PAIR: tuple[str, str] = CO_OCCURRENCE_BIAS.pair

#: Prompts the shipped model was trained on (``{shape}``/``{color}`` filled in).
QUESTION_TEMPLATES: dict[str, str] = {
    "color": "What color is the {shape}?",
    "exist": "Is there a {shape} in the image?",
    "shape": "What shape is the {color} object?",
    "caption": "Describe the image.",
}
CAPTION_QUESTION = QUESTION_TEMPLATES["caption"]


def color_question(shape: str) -> str:
    """The colour question about ``shape``: "What color is the <shape>?"."""
    return QUESTION_TEMPLATES["color"].format(shape=shape)


def exist_question(shape: str) -> str:
    """The existence question about ``shape``: "Is there a <shape> in the image?"."""
    return QUESTION_TEMPLATES["exist"].format(shape=shape)


def shape_question(color: str) -> str:
    """The shape question about ``color``: "What shape is the <color> object?"."""
    return QUESTION_TEMPLATES["shape"].format(color=color)


# --------------------------------------------------------------------------- geometry

_CIRCLE_VERTICES = 48


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (x, y) of a shape of "radius" 1 centred at the origin, y pointing down."""
    if shape == "circle":
        t = np.arange(_CIRCLE_VERTICES) * (2 * math.pi / _CIRCLE_VERTICES)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "square":
        s = 0.85
        return np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    if shape == "triangle":
        t = np.deg2rad([-90.0, 30.0, 150.0])
        return 1.12 * np.stack([np.cos(t), np.sin(t)], 1) + np.array([0.0, 0.12])
    if shape == "star":
        t = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.12, 0.46)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        a, w = 1.0, 0.34
        return np.array(
            [[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w], [w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]]
        )
    if shape == "diamond":
        return np.array([[0.0, -1.1], [0.66, 0.0], [0.0, 1.1], [-0.66, 0.0]])
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


#: Maximum rotation (degrees) per shape; small, so a square never looks like a diamond.
_MAX_ROTATION = {"circle": 0.0, "square": 10.0, "triangle": 10.0, "star": 15.0, "cross": 10.0, "diamond": 6.0}


def _polygon(shape: str, cx: float, cy: float, radius: float, rotation_deg: float) -> list[float]:
    pts = _unit_polygon(shape) * radius
    th = math.radians(rotation_deg)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    pts = pts @ rot.T + np.array([cx, cy])
    # Round first: the mask is rasterised from exactly the numbers written to JSON.
    return [round(float(v), 2) for v in pts.reshape(-1)]


def _rasterise(poly: Sequence[float], height: int, width: int) -> np.ndarray:
    rles = mask_utils.frPyObjects([list(poly)], height, width)
    with warnings.catch_warnings():
        # pycocotools' decode trips numpy 2's __array__(copy=...) deprecation; harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rles)[:, :, 0].astype(bool)


def _encode(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


# --------------------------------------------------------------------------- scenes


@dataclass
class ShapeObject:
    """One object of a scene.

    Attributes:
        shape: the shape kind (the COCO category name).
        color: the colour name (a key of :data:`COLORS`).
        center: ``(cx, cy)`` in pixels.
        radius: the size parameter in pixels (circumradius-like).
        rotation: rotation in degrees.
        polygon: flat ``[x1, y1, x2, y2, ...]`` outline of the full (unoccluded) shape.
        mask: ``bool[H, W]``: the pixels of this object visible in the image.
        full_mask: ``bool[H, W]``: the whole shape, including occluded parts.
        bbox: ``[x, y, w, h]`` of the visible mask (COCO convention).
    """

    shape: str
    color: str
    center: tuple[float, float]
    radius: float
    rotation: float
    polygon: list[float]
    mask: np.ndarray = field(repr=False)
    full_mask: np.ndarray = field(repr=False)
    bbox: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``"<color> <shape>"``, e.g. ``"red circle"``."""
        return f"{self.color} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        """``(r, g, b)`` of the colour (its :data:`COLORS` entry)."""
        return COLORS[self.color]

    @property
    def area(self) -> int:
        """Number of visible pixels (``mask`` sum)."""
        return int(self.mask.sum())

    @property
    def visible_fraction(self) -> float:
        """Visible share of the full shape's pixels (0.0 for an empty full mask)."""
        full = int(self.full_mask.sum())
        return float(self.mask.sum()) / full if full else 0.0

    @property
    def occluded(self) -> bool:
        """Whether any pixel of the full shape is hidden by other objects."""
        return bool((self.full_mask & ~self.mask).any())


@dataclass
class Scene:
    """A rendered scene: ``image`` is ``uint8[H, W, 3]``; ``objects`` in drawing order."""

    image: np.ndarray = field(repr=False)
    objects: list[ShapeObject]
    background: dict[str, Any]
    split: str = "train"
    #: ``uint8[H, W, 3]``: the background alone (what is behind every object).
    background_image: np.ndarray | None = field(default=None, repr=False)

    def without(self, *indices: int) -> Scene:
        """The same scene with ``objects[i]`` (for each ``i`` in ``indices``) removed: the
        background shows through and objects it covered become visible (counterfactual
        ground truth for attribution)."""
        if self.background_image is None:
            raise ValueError("this scene has no background image")
        drop = {i % len(self.objects) for i in indices}
        keep = [o for i, o in enumerate(self.objects) if i not in drop]
        img = self.background_image.copy()
        objs = []
        for o in keep:
            objs.append(
                ShapeObject(
                    shape=o.shape,
                    color=o.color,
                    center=o.center,
                    radius=o.radius,
                    rotation=o.rotation,
                    polygon=list(o.polygon),
                    mask=o.full_mask.copy(),
                    full_mask=o.full_mask,
                )
            )
        for k, o in enumerate(objs):
            for p in objs[k + 1 :]:
                o.mask &= ~p.full_mask
        for o in objs:
            img[o.mask] = np.asarray(o.rgb, dtype=np.uint8)
            o.bbox = _bbox(o.mask)
        return Scene(
            image=img,
            objects=objs,
            background=dict(self.background),
            split=self.split,
            background_image=self.background_image,
        )

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def shapes(self) -> list[str]:
        """The shape of each object, in drawing order."""
        return [o.shape for o in self.objects]

    @property
    def colors(self) -> list[str]:
        """The colour name of each object, in drawing order."""
        return [o.color for o in self.objects]

    def has(self, shape: str) -> bool:
        """Whether the scene holds an object of ``shape``."""
        return shape in self.shapes

    def find(self, shape: str | None = None, color: str | None = None) -> ShapeObject | None:
        """The first object matching ``shape`` and/or ``color`` (``None`` if none)."""
        for o in self.objects:
            if (shape is None or o.shape == shape) and (color is None or o.color == color):
                return o
        return None

    def caption(self) -> str:
        """The scene's caption in the model's format (:func:`canonical_caption`)."""
        return canonical_caption(self.objects)

    def pil(self) -> Image.Image:
        """The image as an RGB PIL image."""
        return Image.fromarray(self.image, "RGB")


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode("utf-8")) & 0x7FFFFFFF


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator for scene ``index`` of ``split`` under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _split_code(split), int(index)]))


def _resolve_bias(bias: float | str | None, split: str) -> float | None:
    if bias is None:
        return None
    if isinstance(bias, str):
        if bias != "auto":
            raise ValueError(f"bias must be 'auto', a probability or None; got {bias!r}")
        return CO_OCCURRENCE_BIAS.p(split)
    p = float(bias)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"bias probability must be in [0, 1]; got {p}")
    return p


def _choose_shapes(
    rng: np.random.Generator,
    n: int,
    p_partner: float | None,
    require: Sequence[str],
    exclude: Sequence[str],
    p_duplicate: float,
) -> list[str]:
    anchor, partner = CO_OCCURRENCE_BIAS.anchor, CO_OCCURRENCE_BIAS.partner
    allowed = [s for s in SHAPES if s not in exclude]
    chosen = list(dict.fromkeys(require))
    pool = [s for s in allowed if s not in chosen]
    k = max(0, min(n - len(chosen), len(pool)))
    chosen += [pool[i] for i in rng.permutation(len(pool))[:k]]
    if p_partner is not None and anchor in chosen:
        want = bool(rng.random() < p_partner)
        if partner in require:
            want = True
        if partner in exclude:
            want = False
        if want and partner not in chosen:
            replace = [i for i, s in enumerate(chosen) if s != anchor and s not in require]
            if replace:
                chosen[replace[int(rng.integers(len(replace)))]] = partner
            else:
                chosen.append(partner)
        elif not want and partner in chosen and partner not in require:
            free = [s for s in allowed if s not in chosen and s != partner]
            i = chosen.index(partner)
            if free:
                chosen[i] = free[int(rng.integers(len(free)))]
            else:
                del chosen[i]
    if p_duplicate > 0 and len(chosen) >= 1:
        for i in range(1, len(chosen)):
            if rng.random() < p_duplicate:
                cand = chosen[int(rng.integers(i))]
                if cand not in (anchor, partner) and chosen[i] not in require:
                    chosen[i] = cand
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict[str, Any]]:
    level = float(rng.uniform(70, 190))
    tint = rng.uniform(-10, 10, size=3)
    base = np.clip(level + tint, 0, 255)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    kind = ("plain", "noise", "gradient", "stripes")[int(rng.integers(4))]
    if kind == "noise":
        img += rng.normal(0.0, 5.0, size=(h, w, 1)).astype(np.float32)
    elif kind == "gradient":
        amp = float(rng.uniform(8, 18))
        ang = float(rng.uniform(0, 2 * math.pi))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (math.cos(ang) * (xx / max(w - 1, 1) - 0.5) + math.sin(ang) * (yy / max(h - 1, 1) - 0.5)) * 2 * amp
        img += ramp[..., None]
    elif kind == "stripes":
        period = float(rng.uniform(5, 11)) * w / 64.0
        amp = float(rng.uniform(4, 8))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        coord = xx if rng.random() < 0.5 else yy
        img += (amp * np.sign(np.sin(2 * math.pi * coord / period)))[..., None]
    info = {"kind": kind, "level": round(level, 2), "rgb": [int(round(v)) for v in base]}
    return img, info


def make_scene(
    rng: np.random.Generator | int,
    *,
    size: int | tuple[int, int] = 64,
    split: str = "train",
    bias: float | str | None = "auto",
    n_objects: int | None = None,
    min_objects: int = 1,
    max_objects: int = 4,
    p_occlusion: float = 0.3,
    min_visible: float = 0.6,
    radius_range: tuple[float, float] = (0.125, 0.2),
    require: Sequence[str] = (),
    exclude: Sequence[str] = (),
    p_duplicate: float = 0.0,
) -> Scene:
    """Sample and render one scene.

    Args:
        rng: a numpy ``Generator`` (or an int seed).
        size: image side (``int``) or ``(height, width)``.
        split: the split the scene belongs to (selects the bias strength when ``"auto"``).
        bias: ``"auto"`` (P(partner | anchor) from :data:`CO_OCCURRENCE_BIAS` for ``split``),
            a probability, or ``None`` (no bias: the partner is as likely as any shape).
        n_objects: exact object count (before the bias may add a partner); else uniform in
            ``[min_objects, max_objects]``.
        p_occlusion: probability that an object may overlap earlier ones.
        min_visible: every object keeps at least this fraction of its area visible.
        radius_range: object size range as a fraction of the smaller image side.
        require: shapes that must be present; ``exclude``: shapes that must be absent.
        p_duplicate: probability that an object repeats an earlier object's shape (colours
            always stay distinct). ``0`` keeps shapes unique within a scene.
    """
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    p_partner = _resolve_bias(bias, split)
    n = int(n_objects) if n_objects is not None else int(rng.integers(min_objects, max_objects + 1))
    n = max(n, len(set(require)))
    shapes = _choose_shapes(rng, n, p_partner, require, exclude, p_duplicate)
    colors = [COLOR_NAMES[i] for i in rng.permutation(len(COLOR_NAMES))[: len(shapes)]]
    if len(shapes) > len(colors):
        raise ValueError(f"at most {len(COLOR_NAMES)} objects per scene")
    img, bg = _background(rng, h, w)
    side = min(h, w)
    placed: list[ShapeObject] = []
    for shape, color in zip(shapes, colors):
        allow_overlap = bool(rng.random() < p_occlusion)
        best = None
        for attempt in range(60):
            r = float(rng.uniform(*radius_range)) * side
            if attempt > 30:
                r *= 0.8
            margin = 1.15 * r + 1
            cx = float(rng.uniform(margin, w - margin))
            cy = float(rng.uniform(margin, h - margin))
            rot = float(rng.uniform(-1, 1)) * _MAX_ROTATION[shape]
            poly = _polygon(shape, cx, cy, r, rot)
            full = _rasterise(poly, h, w)
            area = int(full.sum())
            if area == 0:
                continue
            ok = True
            for o in placed:
                inter = o.mask & full
                if inter.any():
                    if not allow_overlap:
                        ok = False
                        break
                    if (o.mask.sum() - inter.sum()) < min_visible * o.full_mask.sum():
                        ok = False
                        break
                if not allow_overlap:
                    # keep a 1-pixel gap between non-overlapping objects
                    grown = np.zeros_like(full)
                    grown[:-1] |= full[1:]
                    grown[1:] |= full[:-1]
                    grown[:, :-1] |= full[:, 1:]
                    grown[:, 1:] |= full[:, :-1]
                    if (grown & o.mask).any():
                        ok = False
                        break
            if ok:
                best = (r, cx, cy, rot, poly, full)
                break
        if best is None:
            continue  # no room: drop this object
        r, cx, cy, rot, poly, full = best
        for o in placed:
            o.mask = o.mask & ~full
        placed.append(
            ShapeObject(
                shape=shape,
                color=color,
                center=(round(cx, 2), round(cy, 2)),
                radius=round(r, 2),
                rotation=round(rot, 2),
                polygon=poly,
                mask=full.copy(),
                full_mask=full,
            )
        )
    bg_image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    for o in placed:
        img[o.mask] = np.asarray(o.rgb, dtype=np.float32)
        o.bbox = _bbox(o.mask)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(image=image, objects=placed, background=bg, split=split, background_image=bg_image)


def generate_scenes(n: int, *, seed: int, split: str = "train", start: int = 0, **kwargs: Any) -> Iterator[Scene]:
    """Scenes ``start .. start + n - 1`` of ``split`` under ``seed`` (see :func:`make_scene`)."""
    for i in range(start, start + n):
        yield make_scene(scene_rng(seed, split, i), split=split, **kwargs)


# --------------------------------------------------------------------------- language


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def canonical_caption(objects: Iterable[ShapeObject | tuple[str, str]]) -> str:
    """The model's caption format: objects in :data:`SHAPES` order (then colour order),
    joined with "and", e.g. ``"a red circle and a blue square and an orange star ."``
    (tokens joined by single spaces, as the word-level tokenizer decodes them)."""
    pairs = []
    for o in objects:
        color, shape = (o.color, o.shape) if isinstance(o, ShapeObject) else (o[0], o[1])
        pairs.append((color, shape))
    pairs.sort(key=lambda cs: (SHAPES.index(cs[1]), COLOR_NAMES.index(cs[0])))
    if not pairs:
        return "nothing ."
    return " and ".join(f"{_article(c)} {c} {s}" for c, s in pairs) + " ."


def _sorted_pairs(objects: Iterable[ShapeObject]) -> list[tuple[str, str]]:
    """``(color, shape)`` of ``objects`` in caption order."""
    return sorted(((o.color, o.shape) for o in objects), key=lambda cs: (SHAPES.index(cs[1]), COLOR_NAMES.index(cs[0])))


_WORD = re.compile(r"[a-z]+")


def parse_caption(text: str) -> list[tuple[str, str]]:
    """``(color, shape)`` pairs named in a caption, in order of mention.

    A shape word counts when it follows a colour word (``"red circle"``); a shape
    mentioned without a colour is returned with colour ``""``.
    """
    words = _WORD.findall(text.lower())
    out: list[tuple[str, str]] = []
    for i, wd in enumerate(words):
        if wd in SHAPES:
            color = words[i - 1] if i > 0 and words[i - 1] in COLORS else ""
            out.append((color, wd))
    return out


def parse_answer_word(text: str, vocabulary: Sequence[str]) -> str | None:
    """The first word of ``text`` that is in ``vocabulary`` (e.g. colours, ``("yes", "no")``)."""
    for wd in _WORD.findall(text.lower()):
        if wd in vocabulary:
            return wd
    return None


def _relation(a: ShapeObject, b: ShapeObject, margin: float) -> str | None:
    dx = a.center[0] - b.center[0]
    dy = a.center[1] - b.center[1]
    if max(abs(dx), abs(dy)) < margin:
        return None
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def referring_expressions(scene: Scene, index: int, rng: np.random.Generator) -> list[str]:
    """Referring expressions for ``scene.objects[index]`` that pick out exactly that object."""
    obj = scene.objects[index]
    others = [o for i, o in enumerate(scene.objects) if i != index]
    sents = [f"the {obj.color} {obj.shape}"]
    if sum(o.shape == obj.shape for o in scene.objects) == 1:
        sents.append(f"the {obj.shape}")
    margin = 0.06 * min(scene.size)
    rel_cands = [(o, _relation(obj, o, margin)) for o in others]
    rel_cands = [(o, r) for o, r in rel_cands if r is not None]
    if rel_cands:
        o, r = rel_cands[int(rng.integers(len(rel_cands)))]
        other_unique = sum(p.shape == o.shape for p in scene.objects) == 1
        other = f"the {o.shape}" if other_unique else f"the {o.color} {o.shape}"
        sents.append(f"the {obj.color} {obj.shape} {r} {other}")
    return sents


# --------------------------------------------------------------------------- POPE


def pope_questions(
    present: Sequence[set[str]],
    rng: np.random.Generator,
    strategy: str,
    *,
    max_per_label: int = 3,
) -> list[list[tuple[str, str]]]:
    """POPE-style questions per image: equal numbers of "yes" (present) and "no" objects.

    Args:
        present: per image, the set of shape categories in it.
        rng: random generator.
        strategy: how negatives are chosen, as in POPE: ``"random"`` (uniform over absent
            categories), ``"popular"`` (the most frequent categories of the split that are
            absent), ``"adversarial"`` (the absent categories that co-occur most often with
            the image's objects).
        max_per_label: at most this many "yes" and "no" questions per image.

    Returns:
        per image, a list of ``(shape, label)`` alternating "yes"/"no".
    """
    if strategy not in ("random", "popular", "adversarial"):
        raise ValueError(f"unknown POPE strategy {strategy!r}")
    freq = Counter(s for p in present for s in p)
    cooc: dict[str, Counter] = {s: Counter() for s in SHAPES}
    for p in present:
        for a in p:
            for b in p:
                if a != b:
                    cooc[a][b] += 1
    out = []
    for p in present:
        pos_pool = sorted(p, key=SHAPES.index)
        absent = [s for s in SHAPES if s not in p]
        k = min(max_per_label, len(pos_pool), len(absent))
        if k == 0:
            out.append([])
            continue
        pos = [pos_pool[i] for i in sorted(rng.permutation(len(pos_pool))[:k])]
        if strategy == "random":
            neg = [absent[i] for i in rng.permutation(len(absent))[:k]]
        elif strategy == "popular":
            neg = sorted(absent, key=lambda s: (-freq[s], SHAPES.index(s)))[:k]
        else:
            score = {s: sum(cooc[q][s] for q in p) for s in absent}
            neg = sorted(absent, key=lambda s: (-score[s], -freq[s], SHAPES.index(s)))[:k]
        qs = []
        for a, b in zip(pos, neg):
            qs += [(a, "yes"), (b, "no")]
        out.append(qs)
    return out


# --------------------------------------------------------------------------- writing


def scene_to_json(scene: Scene) -> dict[str, Any]:
    """A JSON-serialisable description of a scene's ground truth (no pixels, no masks)."""
    h, w = scene.size
    return {
        "height": h,
        "width": w,
        "background": scene.background,
        "caption": scene.caption(),
        "objects": [
            {
                "shape": o.shape,
                "color": o.color,
                "name": o.name,
                "rgb": list(o.rgb),
                "bbox": o.bbox,
                "center": list(o.center),
                "radius": o.radius,
                "rotation": o.rotation,
                "area": o.area,
                "visible_fraction": round(o.visible_fraction, 4),
                "occluded": o.occluded,
                "polygon": o.polygon,
                "segmentation": _encode(o.mask),
            }
            for o in scene.objects
        ],
    }


def _dump(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":")), encoding="utf-8")


def write_dataset(
    out_dir: str | Path,
    *,
    n_images: int,
    seed: int,
    split: str,
    bias: float | str | None = "auto",
    size: int = 64,
    max_objects: int = 4,
    p_occlusion: float = 0.3,
    p_duplicate: float = 0.0,
) -> dict[str, Path]:
    """Write ``n_images`` scenes of ``split`` in the public formats (see the module docstring).

    Args:
        out_dir: dataset root (created).
        n_images: number of images.
        seed: base seed; same seed, same bytes.
        split: split name (``"train"``, ``"val"``, ``"test"``, or any other string; the
            bias strength for ``"auto"`` is the train value only for ``"train"``).
        bias: see :func:`make_scene`.
        size, max_objects, p_occlusion, p_duplicate: generator settings.

    Segmentations: polygon shapes that are not occluded get a polygon (it decodes exactly
    to the visible mask); circles and occluded objects get a compressed RLE. ``area`` is
    the visible pixel count, ``bbox`` the visible mask's box. Each annotation also has
    ``"color"`` (the colour name) and ``"attributes": {"color": ...}``.

    Returns:
        paths of the written files, keyed ``"instances"``, ``"captions"``, ``"refs"``,
        ``"pope_random"``, ``"pope_popular"``, ``"pope_adversarial"``, ``"images"``.
    """
    out = Path(out_dir)
    img_dir = out / split
    ann_dir = out / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    p_partner = _resolve_bias(bias, split)

    categories = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    cat_id = {s: i + 1 for i, s in enumerate(SHAPES)}
    images, annotations, captions, refs = [], [], [], []
    present: list[set[str]] = []
    ann_id = 0
    ref_rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _split_code(split), 1 << 20]))
    for i in range(n_images):
        scene = make_scene(
            scene_rng(seed, split, i),
            size=size,
            split=split,
            bias=bias,
            max_objects=max_objects,
            p_occlusion=p_occlusion,
            p_duplicate=p_duplicate,
        )
        image_id = i + 1
        file_name = f"shapes_{split}_{image_id:06d}.png"
        scene.pil().save(img_dir / file_name, format="PNG")
        h, w = scene.size
        images.append(
            {"id": image_id, "file_name": file_name, "height": h, "width": w, "background": scene.background["kind"]}
        )
        caption_pairs = canonical_caption(scene.objects)
        captions.append({"id": 2 * image_id - 1, "image_id": image_id, "caption": caption_pairs})
        items = [f"{_article(c)} {c} {sh}" for c, sh in _sorted_pairs(scene.objects)]
        natural = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        captions.append(
            {
                "id": 2 * image_id,
                "image_id": image_id,
                "caption": f"{natural[0].upper()}{natural[1:]} on a grey background.",
            }
        )
        present.append(set(scene.shapes))
        for k, o in enumerate(scene.objects):
            ann_id += 1
            if o.shape != "circle" and not o.occluded:
                seg: Any = [o.polygon]
            else:
                seg = _encode(o.mask)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat_id[o.shape],
                    "bbox": o.bbox,
                    "area": float(o.area),
                    "iscrowd": 0,
                    "segmentation": seg,
                    "color": o.color,
                    "attributes": {"color": o.color, "rgb": list(o.rgb)},
                    "occluded": o.occluded,
                    "visible_fraction": round(o.visible_fraction, 4),
                    "depth": k,
                }
            )
            sents = referring_expressions(scene, k, ref_rng)
            ref_id = len(refs) + 1
            refs.append(
                {
                    "ref_id": ref_id,
                    "ann_id": ann_id,
                    "image_id": image_id,
                    "category_id": cat_id[o.shape],
                    "split": split,
                    "file_name": file_name,
                    "sent_ids": [ref_id * 10 + j for j in range(len(sents))],
                    "sentences": [
                        {"sent_id": ref_id * 10 + j, "sent": s, "raw": s, "tokens": s.split()}
                        for j, s in enumerate(sents)
                    ],
                }
            )
    bias_info = {
        "anchor": CO_OCCURRENCE_BIAS.anchor,
        "partner": CO_OCCURRENCE_BIAS.partner,
        "p_partner_given_anchor": p_partner,
    }
    info = {
        "description": f"mllm_attr shapes world, split {split}",
        "version": "1.0",
        "year": 2025,
        "seed": int(seed),
        "split": split,
        "co_occurrence_bias": bias_info,
    }
    licenses = [{"id": 1, "name": "MIT", "url": "https://opensource.org/licenses/MIT"}]
    paths = {
        "instances": ann_dir / f"instances_{split}.json",
        "captions": ann_dir / f"captions_{split}.json",
        "refs": out / f"refs_{split}.json",
        "images": img_dir,
    }
    _dump(
        {"info": info, "licenses": licenses, "images": images, "annotations": annotations, "categories": categories},
        paths["instances"],
    )
    _dump({"info": info, "licenses": licenses, "images": images, "annotations": captions}, paths["captions"])
    _dump(refs, paths["refs"])
    for strategy in ("random", "popular", "adversarial"):
        rng = np.random.default_rng(
            np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _split_code(split), 1 << 21, len(strategy)])
        )
        per_image = pope_questions(present, rng, strategy)
        path = out / f"pope_{split}_{strategy}.jsonl"
        lines = []
        qid = 0
        for img, qs in zip(images, per_image):
            for shape, label in qs:
                qid += 1
                lines.append(
                    json.dumps(
                        {"question_id": qid, "image": img["file_name"], "text": exist_question(shape), "label": label}
                    )
                )
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        paths[f"pope_{strategy}"] = path
    return paths


#: Where the shipped example scene comes from (a held-out seed of the test split).
EXAMPLE_SEED = 424242


def example_scene(seed: int = EXAMPLE_SEED, size: int = 64) -> tuple[int, Scene]:
    """The first test-split scene under ``seed`` with three well-separated, unoccluded,
    not-small objects on a plain background, one of them a circle, none of them the
    bias anchor (so the scene is free of the deliberate bias); returns ``(index, scene)``."""
    for i in range(10_000):
        sc = make_scene(
            scene_rng(seed, "test", i),
            size=size,
            split="test",
            n_objects=3,
            p_occlusion=0.0,
            exclude=[CO_OCCURRENCE_BIAS.anchor],
        )
        if (
            len(sc.objects) == 3
            and sc.background["kind"] == "plain"
            and sc.has("circle")
            and all(not o.occluded and o.radius >= 0.16 * size for o in sc.objects)
        ):
            return i, sc
    raise RuntimeError("no example scene found")


def write_example(png_path: str | Path, json_path: str | Path, *, seed: int = EXAMPLE_SEED) -> Scene:
    """Write :func:`example_scene` as a PNG and its ground truth as JSON."""
    index, sc = example_scene(seed)
    sc.pil().save(png_path, format="PNG")
    gt = scene_to_json(sc)
    gt.update(
        {
            "file_name": Path(png_path).name,
            "seed": seed,
            "split": "test",
            "index": index,
            "generator": "mllm_attr.data.shapes.example_scene",
            "questions": [{"question": color_question(o.shape), "answer": o.color} for o in sc.objects]
            + [{"question": exist_question(s), "answer": "yes" if sc.has(s) else "no"} for s in SHAPES]
            + [{"question": CAPTION_QUESTION, "answer": sc.caption()}],
        }
    )
    Path(json_path).write_text(json.dumps(gt, indent=1), encoding="utf-8")
    return sc


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Write a shapes-world dataset (COCO, POPE, RefCOCO formats).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="test")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--example", action="store_true", help="write example.png/example.json into --out instead")
    a = ap.parse_args(argv)
    if a.example:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        write_example(out / "example.png", out / "example.json")
        print(f"wrote {out / 'example.png'} and {out / 'example.json'}")
        return
    paths = write_dataset(a.out, n_images=a.n, seed=a.seed, split=a.split, size=a.size)
    for k, v in paths.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    _main()
