"""Caption object words (CHAIR-style): which words name absent objects, and which came from the
language prior.

:func:`caption_hallucinations` finds the object words of a caption (a vocabulary of
category names / synonyms, plurals matched; required, or derived from the ground truth: COCO's
80 categories with their usual synonyms for COCO annotations or COCO names; a ground-truth
name outside the vocabulary is an error), marks each present or absent against the
ground-truth objects, and gives each its modality label (:mod:`.modality`), so the
hallucinated words that came from the language prior are visible. ``CHAIR_i`` = hallucinated
mentioned categories / mentioned categories; ``CHAIR_s`` = captions with any hallucination.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..explainer import make_scorer
from ..image import ImageLike, load_image
from ..mask import make_fill, resolve_fill
from ..targets import find_word
from ..types import Generation
from .modality import (
    GroundedModality,
    ModalityThresholds,
    TokenModality,
    _row,
    grounded_modality,
    reference_probs,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..adapters.base import ModelAdapter
    from ..data.coco import CocoImage, CocoObject

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectMention:
    """One object word of a caption.

    Attributes:
        word: the word as written; category: the object category it names.
        occurrence: 1-based occurrence of the category in the caption.
        positions: token positions of the word in the generation.
        present: True / False against the ground truth (None without annotations).
        modality: the word's :class:`~mllm_attr.analysis.modality.TokenModality` (product of
            its tokens' probabilities; prior = blank image or reference images).
        grounded: with object masks, the :class:`~mllm_attr.analysis.modality.GroundedModality`
            (language prior / the object's own pixels / context, and the evidence object).
    """

    word: str
    category: str
    occurrence: int
    positions: tuple[int, ...]
    present: bool | None
    modality: TokenModality
    grounded: GroundedModality | None = None

    @property
    def hallucinated(self) -> bool:
        """Whether the ground truth lacks the category (False without annotations)."""
        return self.present is False

    def __repr__(self) -> str:
        """One line: the word, its category, presence, label and probabilities."""
        return (
            f"ObjectMention(word={self.word!r}, category={self.category!r}, present={self.present}, "
            f"label={self.label!r}, p_full={self.modality.p_full:.3f}, p_prior={self.modality.p_prior:.3f})"
        )

    @property
    def label(self) -> str:
        """The grounded label when object masks were given, else the blank/reference-prior label."""
        return self.grounded.label if self.grounded is not None else self.modality.label

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the mention, its modality numbers and its grounded decomposition (if any)."""
        return {
            "word": self.word,
            "category": self.category,
            "occurrence": self.occurrence,
            "positions": list(self.positions),
            "present": self.present,
            "hallucinated": self.hallucinated,
            "label": self.label,
            "prior_label": self.modality.label,
            "p_full": self.modality.p_full,
            "p_blank": self.modality.p_blank,
            "p_prior": self.modality.p_prior,
            "prior_share": self.modality.prior_share,
            "image_share": self.modality.image_share,
            "grounded": None if self.grounded is None else self.grounded.to_dict(),
        }


@dataclass
class CaptionDiagnosis:
    """Object mentions of one caption, with presence and modality.

    Attributes:
        generation: the caption; mentions: in caption order; ground_truth: the categories
        present (None without annotations); forwards: images scored (2).
    """

    generation: Generation
    mentions: list[ObjectMention]
    ground_truth: frozenset[str] | None
    forwards: int = 0
    thresholds: ModalityThresholds = field(default_factory=ModalityThresholds)

    def hallucinated(self) -> list[ObjectMention]:
        """The mentions whose category is absent from the ground truth."""
        return [m for m in self.mentions if m.hallucinated]

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line: the caption, the mentions, the hallucinated ones, CHAIR and the forwards."""
        from ..viz import short_text

        bad = short_text(", ".join(m.word for m in self.hallucinated()), 60)
        return (
            f"CaptionDiagnosis(caption={short_text(self.generation.text, 48)!r}, mentions={len(self.mentions)}, "
            f"hallucinated={bad!r}, chair_i={self.chair_i:.3f}, forwards={int(self.forwards)})"
        )

    def plot(self, ax: Axes | None = None, **kw: Any) -> Figure:
        """The caption's object words boxed in their modality label's colour (a hallucinated one
        marked ✗), the image share under each (:func:`mllm_attr.viz.render_modality_text`; ``kw``
        are its options). Returns the figure.

        Raises:
            ValueError: the caption mentions no object.
        """
        from ..viz import render_modality_text, short_text

        if not self.mentions:
            raise ValueError(f"nothing to plot: the caption {self.generation.text!r} mentions no object")
        items = [
            (("✗ " if m.hallucinated else "") + m.word, m.label, m.modality.image_share) for _, _, m in self._spans()
        ]
        kw.setdefault("title", f"{short_text(self.generation.text, 90)}  (✗: not in the image)")
        return render_modality_text(items, ax, **kw).figure

    def show(self, **kw: Any) -> None:
        """Display :meth:`plot` (inline in Jupyter, else in a matplotlib window)."""
        from ..viz import show_figure

        show_figure(self.plot(**kw))

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the caption with coloured object words (:meth:`html`) and CHAIR."""
        from ..viz import html_card

        rows: list[tuple[str, Any]] = [
            ("mentions", ", ".join(m.word for m in self.mentions) or "–"),
            ("hallucinated", ", ".join(m.word for m in self.hallucinated()) or "–"),
            ("CHAIR-i / CHAIR-s", f"{self.chair_i:.3f} / {self.chair_s:.3f}"),
            ("forwards", int(self.forwards)),
        ]
        return html_card("CaptionDiagnosis", rows, extra=self.html())

    @property
    def chair_i(self) -> float:
        """Hallucinated mentioned categories / mentioned categories (NaN without mentions or annotations)."""
        if self.ground_truth is None:
            return float("nan")
        cats = {m.category for m in self.mentions}
        return len({c for c in cats if c not in self.ground_truth}) / len(cats) if cats else float("nan")

    @property
    def chair_s(self) -> float:
        """1.0 if any mentioned category is absent, else 0.0 (NaN without annotations)."""
        if self.ground_truth is None:
            return float("nan")
        return float(any(m.hallucinated for m in self.mentions))

    def table(self) -> str:
        """A plain-text table with one row per mention.

        Columns: word, presence, ``p_full``, ``p_prior``, prior share, label and, with object masks,
        the prior kind and the evidence object.
        """
        lines = [f"{'word':<12} {'present':<8} {'p_full':>7} {'p_prior':>7} {'prior':>6}  {'label':<18} evidence"]
        for m in self.mentions:
            pres = "?" if m.present is None else ("yes" if m.present else "NO")
            md = m.modality
            g = m.grounded
            extra = (
                ""
                if g is None
                else f"{g.prior_kind or ''} {'<- ' + g.evidence_object if g.evidence_object else ''}".strip()
            )
            lines.append(
                f"{m.word:<12} {pres:<8} {md.p_full:>7.3f} {md.p_prior:>7.3f} {100 * md.prior_share:>5.0f}%  "
                f"{m.label:<18} {extra}"
            )
        return "\n".join(lines)

    def _spans(self) -> list[tuple[int, int, ObjectMention]]:
        text = self.generation.text
        spans = []
        for m in self.mentions:
            s = min(self.generation.spans[p][0] for p in m.positions)
            e = max(self.generation.spans[p][1] for p in m.positions)
            seg = text[s:e]
            spans.append((s + len(seg) - len(seg.lstrip()), e, m))
        return sorted(spans, key=lambda x: x[0])

    def _render(self, mark: Callable[[str, ObjectMention], str], plain: Callable[[str], str]) -> str:
        text = self.generation.text
        out, cursor = [], 0
        for s, e, m in self._spans():
            s = max(s, cursor)  # two mentions may share a token (and so a character)
            if e <= s:
                continue
            out.append(plain(text[cursor:s]))
            out.append(mark(text[s:e], m))
            cursor = e
        out.append(plain(text[cursor:]))
        return "".join(out)

    def ansi(self) -> str:
        """The caption with object words coloured by modality (green perception, yellow mixed,
        red prior); hallucinated ones underlined."""
        from .modality import _ANSI, _ANSI_RESET

        return self._render(
            lambda w, m: f"{_ANSI[m.label]}{chr(27) + '[4m' if m.hallucinated else ''}{w}{_ANSI_RESET}", lambda t: t
        )

    def html(self) -> str:
        """An HTML fragment: object words coloured by modality; hallucinated ones struck through."""
        import html as _html

        from .modality import _HTML_COLOURS

        def mark(w: str, m: ObjectMention) -> str:
            style = f"background:{_HTML_COLOURS[m.label]}"
            if m.hallucinated:
                style += ";text-decoration:line-through"
            state = "unknown" if m.present is None else ("present" if m.present else "HALLUCINATED")
            title = f"{state}; {m.label}; p_full {m.modality.p_full:.3f}, p_prior {m.modality.p_prior:.3f}"
            return f'<span style="{style}" title="{_html.escape(title)}">{_html.escape(w)}</span>'

        return f'<div class="mllm-attr-caption">{self._render(mark, _html.escape)}</div>'

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the caption, prompt, ground truth, CHAIR scores, mentions and forwards."""
        return {
            "caption": self.generation.text,
            "prompt": self.generation.prompt,
            "ground_truth": None if self.ground_truth is None else sorted(self.ground_truth),
            "chair_i": self.chair_i,
            "chair_s": self.chair_s,
            "mentions": [m.to_dict() for m in self.mentions],
            "forwards": int(self.forwards),
        }


# The 80 COCO object categories (the ``name`` of each entry of ``instances_*.json``'s
# "categories") with the words that usually name them in captions (after the CHAIR synonym
# list of Rohrbach et al. 2018, trimmed of words that mostly name something else: "bow",
# "seat", "container", "computer", "baby" as in "baby elephant"). Regular plurals
# ("-s", "-es", "-y" -> "-ies") are matched automatically; irregular ones are listed.
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "people",
        "man",
        "men",
        "woman",
        "women",
        "boy",
        "girl",
        "child",
        "children",
        "kid",
        "adult",
        "lady",
        "guy",
        "gentleman",
        "teenager",
        "toddler",
        "player",
        "rider",
        "skier",
        "snowboarder",
        "skater",
        "skateboarder",
        "surfer",
        "biker",
        "bicyclist",
        "cyclist",
        "pitcher",
        "batter",
        "catcher",
        "umpire",
        "referee",
        "chef",
        "cook",
        "baker",
        "worker",
        "policeman",
        "police officer",
        "officer",
        "soldier",
        "passenger",
        "pedestrian",
        "spectator",
        "tourist",
        "student",
        "mother",
        "father",
        "bride",
        "groom",
        "cowboy",
    ),
    "bicycle": ("bike", "unicycle", "tricycle"),
    "car": (
        "automobile",
        "sedan",
        "suv",
        "van",
        "minivan",
        "taxi",
        "cab",
        "jeep",
        "hatchback",
        "coupe",
        "limousine",
        "limo",
    ),
    "motorcycle": ("motorbike", "motor bike", "motor cycle", "dirt bike", "scooter", "moped"),
    "airplane": ("plane", "aeroplane", "air plane", "aircraft", "jet", "jetliner", "airliner", "biplane", "seaplane"),
    "bus": ("minibus",),
    "train": ("locomotive", "tram", "streetcar"),
    "truck": ("lorry", "pickup", "firetruck"),
    "boat": (
        "ship",
        "sailboat",
        "yacht",
        "canoe",
        "kayak",
        "ferry",
        "motorboat",
        "speedboat",
        "rowboat",
        "tugboat",
        "vessel",
        "barge",
    ),
    "traffic light": ("traffic signal", "stoplight", "stop light"),
    "fire hydrant": ("hydrant",),
    "stop sign": (),
    "parking meter": (),
    "bench": ("pew",),
    "bird": (
        "pigeon",
        "seagull",
        "gull",
        "duck",
        "goose",
        "geese",
        "swan",
        "parrot",
        "owl",
        "eagle",
        "sparrow",
        "crow",
        "pelican",
        "flamingo",
        "rooster",
        "heron",
        "ostrich",
        "peacock",
        "hummingbird",
    ),
    "cat": ("kitten", "kitty", "feline", "tabby"),
    "dog": (
        "puppy",
        "pup",
        "doggy",
        "doggie",
        "canine",
        "terrier",
        "poodle",
        "labrador",
        "retriever",
        "bulldog",
        "beagle",
        "chihuahua",
        "dachshund",
        "husky",
        "corgi",
        "pug",
        "collie",
        "sheepdog",
        "greyhound",
    ),
    "horse": ("pony", "foal", "colt", "stallion", "mare"),
    "sheep": ("lamb", "ram", "ewe"),
    "cow": ("cattle", "calf", "calves", "bull", "ox", "oxen", "heifer"),
    "elephant": (),
    "bear": ("polar bear", "grizzly"),
    "zebra": (),
    "giraffe": (),
    "backpack": ("knapsack", "rucksack"),
    "umbrella": ("parasol",),
    "handbag": ("purse", "pocketbook"),
    "tie": ("necktie", "bow tie"),
    "suitcase": ("suit case", "luggage"),
    "frisbee": ("flying disc",),
    "skis": ("ski",),
    "snowboard": (),
    "sports ball": ("ball", "soccer ball", "football", "basketball", "tennis ball", "volleyball"),
    "kite": (),
    "baseball bat": (),
    "baseball glove": ("baseball mitt", "mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "bottle": (),
    "wine glass": ("wineglass",),
    "cup": ("mug", "teacup"),
    "fork": (),
    "knife": ("knives",),
    "spoon": (),
    "bowl": (),
    "banana": (),
    "apple": (),
    "sandwich": ("burger", "hamburger", "cheeseburger"),
    "orange": (),
    "broccoli": (),
    "carrot": (),
    "hot dog": ("hotdog",),
    "pizza": (),
    "donut": ("doughnut",),
    "cake": ("cupcake", "cheesecake"),
    "chair": ("armchair", "stool"),
    "couch": ("sofa", "loveseat", "settee", "futon"),
    "potted plant": ("houseplant", "house plant"),
    "bed": (),
    "dining table": ("table",),
    "toilet": (),
    "tv": ("television", "tv set", "monitor"),
    "laptop": ("laptop computer", "notebook computer", "macbook"),
    "mouse": ("mice",),
    "remote": ("remote control", "controller"),
    "keyboard": (),
    "cell phone": ("cellphone", "mobile phone", "phone", "smartphone", "iphone"),
    "microwave": ("microwave oven",),
    "oven": ("stove", "stovetop"),
    "toaster": (),
    "sink": (),
    "refrigerator": ("fridge", "freezer"),
    "book": (),
    "clock": (),
    "vase": (),
    "scissors": (),
    "teddy bear": ("teddybear", "teddy"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("tooth brush",),
}

VOCABULARIES: tuple[str, ...] = ("coco", "shapes")
"""Names accepted as ``vocabulary=`` by :func:`caption_hallucinations` / :func:`find_object_mentions`."""


def coco_vocabulary() -> dict[str, str]:
    """Object word -> COCO category: the 80 category names and their synonyms (:data:`COCO_SYNONYMS`)."""
    vocab: dict[str, str] = {}
    for category, words in COCO_SYNONYMS.items():
        for w in (category, *words):
            vocab.setdefault(w.lower(), category)
    return vocab


def _named_vocabulary(name: str) -> Mapping[str, str] | Sequence[str]:
    key = name.strip().lower()
    if key == "coco":
        return coco_vocabulary()
    if key == "shapes":
        from ..data.shapes import SHAPES

        return SHAPES
    raise ValueError(
        f"unknown vocabulary {name!r}; expected one of {list(VOCABULARIES)}, a list of words or a dict word -> category"
    )


def _vocabulary(vocabulary: Mapping[str, str] | Sequence[str] | str | None) -> dict[str, str]:
    """Object word (lower case) -> category."""
    if vocabulary is None:
        raise ValueError(
            "a vocabulary of object words is required: vocabulary='coco' (COCO's 80 categories and synonyms), "
            "'shapes' (the shapes world), a list of category names, or a dict word -> category"
        )
    if isinstance(vocabulary, str):
        vocabulary = _named_vocabulary(vocabulary)
    if isinstance(vocabulary, Mapping):
        vocab = {str(k).lower(): str(v) for k, v in vocabulary.items()}
    else:
        vocab = {str(w).lower(): str(w) for w in vocabulary}
    if not vocab or any(not w.strip() for w in vocab):
        raise ValueError("expected a non-empty vocabulary of object words")
    return vocab


def _truth_names(ground_truth: Any) -> tuple[list[str] | None, bool]:
    """The ground-truth category names, and whether they came from COCO annotations."""
    if ground_truth is None:
        return None, False
    objects = getattr(ground_truth, "objects", None)  # a CocoImage
    if objects is not None and not isinstance(ground_truth, (str, Mapping)):
        ground_truth = objects
        from_coco = True
    else:
        from_coco = False
    if isinstance(ground_truth, str):
        raise TypeError(f"ground_truth must be a collection of category names; got the string {ground_truth!r}")
    names = []
    for g in ground_truth:
        name = getattr(g, "category_name", None)  # a CocoObject
        if name is not None:
            from_coco = True
            names.append(str(name))
        else:
            names.append(str(g))
    return names, from_coco


def _derived_vocabulary(names: list[str] | None, from_coco: bool) -> dict[str, str]:
    """The vocabulary implied by the ground truth: COCO's when it is COCO annotations or COCO names."""
    if names is None:
        raise ValueError(
            "without ground truth (or object masks) the vocabulary cannot be derived: pass vocabulary='coco', "
            "'shapes', a list of category names or a dict word -> category"
        )
    coco = coco_vocabulary()
    if from_coco:
        return coco
    unknown = sorted({n for n in names if n.lower() not in coco})
    if not names or unknown:
        what = "is empty" if not names else f"names {unknown}, which are not COCO categories"
        raise ValueError(
            f"cannot derive the object vocabulary: the ground truth {what}; pass vocabulary= "
            "('coco', 'shapes', a list of category names or a dict word -> category)"
        )
    return coco


def _truth_categories(names: list[str], vocab: Mapping[str, str]) -> frozenset[str]:
    """Map ground-truth names onto the vocabulary's categories; an unknown name is an error."""
    categories = set(vocab.values())
    by_lower = {c.lower(): c for c in categories}
    out, missing = set(), []
    for n in names:
        if n in categories:
            out.add(n)
        elif n.lower() in by_lower:
            out.add(by_lower[n.lower()])
        elif n.lower() in vocab:
            out.add(vocab[n.lower()])  # a synonym: "sofa" -> "couch"
        else:
            missing.append(n)
    if missing:
        raise ValueError(
            f"ground-truth object(s) {sorted(set(missing))} are not in the vocabulary (categories: "
            f"{sorted(categories)[:20]}{' ...' if len(categories) > 20 else ''}); a caption could never be "
            "checked against them: add them to the vocabulary or pass the right one"
        )
    return frozenset(out)


def _forms(word: str) -> set[str]:
    """``word`` and its regular English plural(s) (on the last word of a phrase; ASCII words only):
    "-s"; "-es" after s, x, z, ch, sh, o ("buses", "benches"; never "ski" -> "skies");
    consonant + "y" -> "-ies" ("puppies")."""
    forms = {word}
    last = word[-1].lower()
    if not (last.isascii() and last.isalpha()):
        return forms
    forms.add(word + "s")
    if last in "sxzo" or word.lower().endswith(("ch", "sh")):
        forms.add(word + "es")
    if last == "y" and len(word) > 1 and word[-2].lower() not in "aeiou":
        forms.add(word[:-1] + "ies")
    return forms


def find_object_mentions(
    generation: Generation, vocabulary: Mapping[str, str] | Sequence[str] | str | None = None
) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(word, category, token positions)`` of every object word in the caption, in order.

    ``vocabulary`` is required (``None`` is an error): ``"coco"``, ``"shapes"``, a list of
    category names or a dict word -> category. Words match like word targets
    (:mod:`mllm_attr.targets`: case-insensitive, on word boundaries, CJK words inside runs),
    regular plurals included ("-s", "-es", "-y" -> "-ies"); where two entries overlap the
    longer wins ("traffic light" before "light", "hot dog" before "dog").
    """
    vocab = _vocabulary(vocabulary)
    text = generation.text
    cands = []
    for key in vocab:
        for form in _forms(key):
            for s, e in find_word(text, form):
                cands.append((s, -(e - s), e, key))
    cands.sort()
    out, cursor = [], 0
    for s, _, e, key in cands:
        if s < cursor:
            continue
        pos = tuple(
            i for i, (a, b) in enumerate(generation.spans) if b > a and a < e and b > s and not generation.special[i]
        )
        if pos:
            out.append((text[s:e], vocab[key], pos))
            cursor = e
    return out


def caption_hallucinations(
    adapter: ModelAdapter,
    image: ImageLike,
    ground_truth: Iterable[str] | Iterable[CocoObject] | CocoImage | None,
    *,
    generation: Generation | None = None,
    prompt: str | None = None,
    vocabulary: Mapping[str, str] | Sequence[str] | str | None = None,
    fill: str = "black",
    baseline: str | None = None,
    reference_images: Sequence[np.ndarray] | np.ndarray | None = None,
    object_masks: Mapping[str, np.ndarray] | None = None,
    thresholds: ModalityThresholds | None = None,
    batch_size: int | None = None,
    max_new_tokens: int = 64,
) -> CaptionDiagnosis:
    """Object words of a caption: present / absent, and prior- or perception-driven.

    Args:
        ground_truth: categories present in the image (None: presence unknown): names, COCO
            annotations (:class:`~mllm_attr.data.coco.CocoObject` s) or a
            :class:`~mllm_attr.data.coco.CocoImage` (its objects). Every name must be a
            category (or a word) of the vocabulary: an unknown one is a ``ValueError``, never a
            silent "absent".
        generation: the caption; generated from ``prompt`` (default ``"Describe the image."``) when None.
        vocabulary: the object words to look for: ``"coco"`` (COCO's 80 categories and their
            usual synonyms, :data:`COCO_SYNONYMS`), ``"shapes"`` (the shapes world), a list of
            category names, or a dict word -> category. When None it is derived from the
            ground truth (or the mask names): COCO's when they are COCO annotations or all
            COCO category names / synonyms; anything else (or no ground truth) is a
            ``ValueError`` asking for ``vocabulary=``.
        fill: the "no image evidence" fill for the modality probabilities.
        reference_images: if given, the prior is the mean over these images (see
            :func:`~mllm_attr.analysis.modality.analyze_modality`).
        object_masks: category -> ``bool[H, W]`` of the objects in the image (e.g. COCO
            segmentations): adds the grounded decomposition to every mention
            (:func:`~mllm_attr.analysis.modality.grounded_modality`; ``2 + len(masks)`` more
            forwards) and its label becomes the mention's label. ``ground_truth`` defaults to
            the categories with a non-empty mask.

    Two forwards score every object word at once (full and blank image), plus one per reference image.
    """
    fill = resolve_fill(fill, baseline, where="caption_hallucinations")
    from ..adapters.base import ModelAdapter

    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"expected a ModelAdapter (see load_adapter); got {type(adapter).__name__}")
    th = thresholds or ModalityThresholds()
    arr = load_image(image).array
    if generation is None:
        generation = adapter.generate(arr, prompt or "Describe the image.", max_new_tokens=max_new_tokens)
    elif not isinstance(generation, Generation):
        raise TypeError(f"expected a Generation (from adapter.generate); got {type(generation).__name__}")
    names, from_coco = _truth_names(ground_truth)
    if vocabulary is None:
        pool = None if names is None and object_masks is None else [*(names or []), *map(str, object_masks or {})]
        vocab = _derived_vocabulary(pool, from_coco)
    else:
        vocab = _vocabulary(vocabulary)
    if object_masks is not None:
        # Key the masks by the vocabulary's categories ("sofa" -> "couch"); unknown names are errors.
        keyed: dict[str, np.ndarray] = {}
        for c, m in object_masks.items():
            (cat,) = _truth_categories([str(c)], vocab)
            m = np.asarray(m, dtype=bool)
            keyed[cat] = keyed[cat] | m if cat in keyed else m
        object_masks = keyed
        if names is None:
            names = [c for c, m in keyed.items() if m.any()]
    truth = None if names is None else _truth_categories(names, vocab)
    found = find_object_mentions(generation, vocab)
    positions = sorted({p for _, _, pos in found for p in pos})
    mentions: list[ObjectMention] = []
    forwards = 0
    if positions:
        scorer = make_scorer(adapter, arr, generation, positions, fill=make_fill(arr, fill), batch_size=batch_size or 2)
        keep = np.stack([np.ones(arr.shape[:2], bool), np.zeros(arr.shape[:2], bool)])
        scores = scorer.score_keep(keep)
        prior = None if reference_images is None else reference_probs(scorer, reference_images)
        forwards = scorer.forwards
        col = {p: j for j, p in enumerate(positions)}
        seen: dict[str, int] = {}
        for word, cat, pos in found:
            seen[cat] = seen.get(cat, 0) + 1
            full = float(np.prod([scores[0, col[p]] for p in pos]))
            blank = float(np.prod([scores[1, col[p]] for p in pos]))
            pri = None if prior is None else float(np.prod([prior[col[p]] for p in pos]))
            row = _row(pos, word, full, blank, th, p_prior=pri)
            mentions.append(ObjectMention(word, cat, seen[cat], pos, None if truth is None else cat in truth, row))
        if object_masks is not None:
            grounded, extra = grounded_modality(
                adapter,
                arr,
                generation,
                [m.positions for m in mentions],
                [m.category for m in mentions],
                dict(object_masks),
                fill=fill,
                thresholds=th,
                batch_size=batch_size,
            )
            forwards += extra
            mentions = [dataclasses.replace(m, grounded=g) for m, g in zip(mentions, grounded)]
    return CaptionDiagnosis(generation, mentions, truth, forwards, th)


def chair(diagnoses: Iterable[CaptionDiagnosis]) -> dict[str, Any]:
    """CHAIR over captions plus the modality labels of present vs hallucinated object words.

    ``chair_i`` pools mentioned categories over all captions; ``chair_s`` is the share of
    captions with any hallucinated category.
    """
    ds = [d for d in diagnoses if d.ground_truth is not None]
    cats = hall = 0
    for d in ds:
        c = {m.category for m in d.mentions}
        cats += len(c)
        hall += len({x for x in c if x not in d.ground_truth})  # type: ignore[operator]
    present = [m.label for d in ds for m in d.mentions if m.present]
    absent = [m.label for d in ds for m in d.mentions if m.hallucinated]
    return {
        "n_captions": len(ds),
        "chair_i": hall / cats if cats else float("nan"),
        "chair_s": float(np.mean([d.chair_s for d in ds])) if ds else float("nan"),
        "present_words": {lab: present.count(lab) for lab in sorted(set(present))},
        "hallucinated_words": {lab: absent.count(lab) for lab in sorted(set(absent))},
    }


__all__ = [
    "COCO_SYNONYMS",
    "VOCABULARIES",
    "CaptionDiagnosis",
    "ObjectMention",
    "caption_hallucinations",
    "chair",
    "coco_vocabulary",
    "find_object_mentions",
]
