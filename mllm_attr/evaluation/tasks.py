"""Benchmark tasks: which samples to explain and which generated tokens are the target.

A :class:`Task` turns a benchmark in its public local-file format (read by
:mod:`mllm_attr.data.benchmarks`) into :class:`Sample` objects (image, prompt, ground
truth) and, once the model has answered, chooses the target tokens the way method.md §1
and the EAGLE paper do:

==============  ===================================  =========================================
kind            prompt (default)                     target
==============  ===================================  =========================================
coco-caption    "Describe the image."                every generated token (EOS optional)
coco-object     "Describe the image."                the FIRST generated word naming a category
                                                     present in the image (word boundaries);
                                                     ground truth: that category's boxes+masks
refcoco         "What color is {sentence}?"          every answer token (or the category word);
                                                     ground truth: the referred object
repope          the POPE question                    for a WRONG yes/no answer: the correct
                                                     answer token, teacher-forced
                                                     (counterfactual); right answers skipped
mmvp            question + options                   every answer token
==============  ===================================  =========================================

Each task is configured by a plain dict (the ``"task"`` section of an evaluation config);
an unknown key raises ``ValueError`` listing the valid ones. Missing files, wrong formats
and ids that do not resolve raise the loaders' errors (``FileNotFoundError``,
``ValueError``, :class:`~mllm_attr.data.benchmarks.UnresolvedIdError`).

Example:
    >>> task = build_task({"kind": "coco-caption", "root": "data/shapes", "split": "test"})  # doctest: +SKIP
    >>> samples = task.samples()                                                                  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..data.benchmarks import (
    CocoObject,
    UnresolvedIdError,
    decode_segmentation,
    load_coco,
    load_mmvp,
    load_pope,
    load_refcoco,
)
from ..image import load_image
from ..metrics import box_mask
from ..types import Generation

logger = logging.getLogger(__name__)

__all__ = [
    "TASKS",
    "GroundTruth",
    "Sample",
    "Selection",
    "Task",
    "CocoCaptionTask",
    "CocoObjectTask",
    "RefCocoTask",
    "RePopeTask",
    "MMVPTask",
    "build_task",
    "find_category_mention",
    "positions_in_span",
    "natural_key",
]

Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class GroundTruth:
    """The object a target token should point at: one category name, one or more instances.

    Attributes:
        name: category (or referred-object) name.
        boxes: COCO ``(x, y, w, h)`` boxes in pixels of the annotated image.
        segmentations: the raw COCO segmentations of the same instances (excluded from
            comparisons).
        height: ``H`` of the annotated image.
        width: ``W`` of the annotated image.
    """

    name: str
    boxes: tuple[Box, ...]
    segmentations: tuple[Any, ...] = field(repr=False, compare=False)
    height: int
    width: int

    def __repr__(self) -> str:
        """One line: the name, the instance count and the image size (never the boxes or polygons)."""
        return f"GroundTruth(name={self.name!r}, instances={len(self.boxes)}, size={self.height}x{self.width})"

    @classmethod
    def from_objects(cls, name: str, objects: Sequence[CocoObject]) -> GroundTruth:
        """Union of COCO instances (all of one category, or the one referred object)."""
        if not objects:
            raise ValueError(f"ground truth {name!r} needs at least one annotated instance; got none")
        return cls(
            name=name,
            boxes=tuple(tuple(float(v) for v in o.bbox) for o in objects),  # type: ignore[misc]
            segmentations=tuple(o.segmentation for o in objects),
            height=int(objects[0].image_height),
            width=int(objects[0].image_width),
        )

    def _fit(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        if mask.shape == tuple(shape):
            return mask
        # The explained image was downscaled on load (very large inputs): nearest-neighbour resize.
        from PIL import Image

        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        return np.asarray(img) > 127

    def mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """``bool[H, W]``: union of the instance masks (resized to ``shape`` when given)."""
        out = np.zeros((self.height, self.width), dtype=bool)
        for seg in self.segmentations:
            if seg is None or (isinstance(seg, list) and not seg):
                continue
            out |= decode_segmentation(seg, self.height, self.width)
        if not out.any():  # no polygon / RLE in the file: fall back to the boxes
            out = self.box_mask()
        return self._fit(out, shape or (self.height, self.width))

    def box_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """``bool[H, W]``: union of the boxes (pixel centres inside; resized to ``shape``)."""
        out = np.zeros((self.height, self.width), dtype=bool)
        for b in self.boxes:
            out |= box_mask((self.height, self.width), b)
        return self._fit(out, shape or (self.height, self.width))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``name``, ``boxes`` and ``size`` ``[H, W]`` (segmentations left out)."""
        return {"name": self.name, "boxes": [list(b) for b in self.boxes], "size": [self.height, self.width]}


@dataclass(frozen=True)
class Sample:
    """One benchmark item to explain.

    Attributes:
        sample_id: unique id within the task (a string, e.g. ``"139"`` or ``"ref-12"``).
        task: the task kind.
        image_path: the image file.
        prompt: the prompt given to the model.
        info: JSON-serialisable facts stored with the record (image id, label, ...).
        objects: ground-truth candidates, e.g. every category present (coco-object) or
            the referred object (refcoco); excluded from comparisons.
    """

    sample_id: str
    task: str
    image_path: Path
    prompt: str
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)
    objects: tuple[GroundTruth, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:
        """One line: the id, the task, the image file name, the prompt and the ground-truth names."""
        prompt = " ".join(self.prompt.split())
        prompt = prompt if len(prompt) <= 50 else prompt[:49] + "…"
        names = ", ".join(o.name for o in self.objects[:4]) + (", …" if len(self.objects) > 4 else "")
        return (
            f"Sample(sample_id={self.sample_id!r}, task={self.task!r}, image={Path(self.image_path).name!r}, "
            f"prompt={prompt!r}, objects={len(self.objects)} ({names}))"
        )

    def load_image(self) -> np.ndarray:
        """The image as ``uint8[H, W, 3]`` RGB (via :func:`mllm_attr.image.load_image`)."""
        return np.asarray(load_image(self.image_path).array)


@dataclass(frozen=True)
class Selection:
    """What to explain for one sample, or why it is skipped.

    Attributes:
        generation: the answer whose tokens are explained (for RePOPE a teacher-forced
            counterfactual carrying the correct answer).
        positions: 0-based target token positions (empty when skipped).
        ground_truth: the object the explanation should point at, if any.
        skip: the reason the sample is not explained (``None`` when it is).
        info: JSON-serialisable details (matched word, parsed answer, ...).
    """

    generation: Generation
    positions: tuple[int, ...] = ()
    ground_truth: GroundTruth | None = None
    skip: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """Whether the sample is skipped (``skip`` is set)."""
        return self.skip is not None


# --------------------------------------------------------------------------- helpers


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``"2"`` before ``"10"`` (digit runs compared as numbers)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(text)) if p)


def positions_in_span(generation: Generation, start: int, end: int) -> list[int]:
    """Non-special tokens whose character span overlaps ``[start, end)`` of ``generation.text``."""
    return [
        i for i, (s, e) in enumerate(generation.spans) if e > s and s < end and e > start and not generation.special[i]
    ]


def _word_pattern(phrase: str, plurals: bool) -> str:
    words = phrase.strip().split()
    body = r"\s+".join(re.escape(w) for w in words)
    suffix = r"(?:e?s)?" if plurals else ""
    return r"(?<!\w)" + body + suffix + r"(?!\w)"


def find_category_mention(
    text: str, names: Mapping[str, Sequence[str]], *, plurals: bool = True
) -> tuple[str, int, int] | None:
    """The first mention in ``text`` of any category, matched on word boundaries.

    Args:
        text: the generated answer.
        names: category -> the words/phrases that name it (the category name itself and
            any synonyms), case-insensitive.
        plurals: also accept a trailing ``s``/``es`` ("dogs" names "dog"; "catalog" never
            names "cat").

    Returns:
        ``(category, start, end)`` of the earliest match (the longest one when two start at
        the same character), or ``None``.
    """
    best: tuple[int, int, str] | None = None
    for category, words in names.items():
        for word in words:
            if not word.strip():
                continue
            m = re.search(_word_pattern(word, plurals), text, re.IGNORECASE)
            if m is None:
                continue
            key = (m.start(), -(m.end() - m.start()), category)
            if best is None or key < (best[0], -(best[1] - best[0]), best[2]):
                best = (m.start(), m.end(), category)
    if best is None:
        return None
    return best[2], best[0], best[1]


def _answer_positions(generation: Generation, include_eos: bool = False) -> list[int]:
    return [i for i in range(len(generation)) if include_eos or not generation.special[i]]


def _check_options(kind: str, options: Mapping[str, Any], valid: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(f"the task section must be a JSON object; got {type(options).__name__}")
    unknown = sorted(set(options) - set(valid) - {"kind"})
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for task kind {kind!r}; valid keys: {sorted(set(valid) | {'kind'})}"
        )
    out = dict(valid)
    out.update({k: v for k, v in options.items() if k != "kind"})
    return out


def _required(kind: str, opts: Mapping[str, Any], *keys: str) -> None:
    missing = [k for k in keys if opts.get(k) in (None, "")]
    if missing:
        raise ValueError(f"task kind {kind!r} needs key(s) {missing} (e.g. the dataset location); got none")


def _opt_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"task key {name!r} must be an integer >= {minimum}{' or null' if allow_none else ''}; got {value!r}"
        )
    return int(value)


#: The keys of a task's ``shapes_data`` option and their defaults (``root`` is required).
SHAPES_DATA_KEYS: dict[str, Any] = {"root": None, "n_images": 50, "seed": 0, "split": "test"}


def _check_shapes_data(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"task key 'shapes_data' must be an object {SHAPES_DATA_KEYS} or null; got {value!r}")
    unknown = sorted(set(value) - set(SHAPES_DATA_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in task key 'shapes_data'; valid keys: {sorted(SHAPES_DATA_KEYS)}")
    out = {**SHAPES_DATA_KEYS, **value}
    if not isinstance(out["root"], str) or not out["root"]:
        raise ValueError(f"task key 'shapes_data' needs a 'root' folder (a string); got {out['root']!r}")
    _check_int("shapes_data.n_images", out["n_images"], 1, allow_none=False)
    _check_int("shapes_data.seed", out["seed"], 0, allow_none=False)
    if not isinstance(out["split"], str) or not out["split"]:
        raise ValueError(f"task key 'shapes_data.split' must be a non-empty string; got {out['split']!r}")
    return out


def prepare_shapes_data(root: str | Path, n_images: int = 50, seed: int = 0, split: str = "test") -> Path:
    """Write the shapes-world benchmark files (:func:`mllm_attr.data.shapes.write_dataset`) into
    ``root`` unless they are there already; returns ``root``.

    Written into a temporary sibling folder and renamed into place, so an interrupted run never
    leaves half a dataset that a later run would take as complete. An existing ``root`` without
    the annotation file is an error (it is not ours to fill).
    """
    import shutil

    from ..data.shapes import write_dataset
    from ..store import make_temp_dir

    root = Path(root)
    marker = root / "annotations" / f"instances_{split}.json"
    if marker.is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise ValueError(
            f"shapes_data: {root} exists but has no {marker.relative_to(root)}; expected an empty or missing folder "
            "to write the shapes-world data into"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(root.parent, f".{root.name}.tmp-")  # the usual permissions, not mkdtemp's 0700
    try:
        logger.info("writing %d shapes-world %s scenes into %s", n_images, split, root)
        write_dataset(tmp, n_images=int(n_images), seed=int(seed), split=str(split))
        if root.exists():
            root.rmdir()
        try:
            tmp.rename(root)
        except OSError:
            if not marker.is_file():  # not another process that wrote the same data first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --------------------------------------------------------------------------- tasks


class Task(abc.ABC):
    """A benchmark task: samples, and the rule that picks target tokens from an answer.

    Subclasses declare :attr:`kind`, :attr:`defaults` (every valid option with its default)
    and implement :meth:`_load` and :meth:`select`.

    Common options: ``limit`` (first N samples in id order), ``ids`` (only these sample ids;
    an id that does not resolve raises :class:`UnresolvedIdError`), ``prompt`` and
    ``max_new_tokens``.
    """

    kind: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    _common: ClassVar[dict[str, Any]] = {"limit": None, "ids": None, "max_new_tokens": 64, "shapes_data": None}

    def __init__(self, **options: Any):
        self.options = _check_options(self.kind, options, {**self._common, **self.defaults})
        _check_int("limit", self.options["limit"], 1)
        _check_int("max_new_tokens", self.options["max_new_tokens"], 1, allow_none=False)
        ids = self.options["ids"]
        if ids is not None and (not isinstance(ids, (list, tuple)) or not ids):
            raise ValueError(f"task key 'ids' must be a non-empty list of sample ids or null; got {ids!r}")
        self.options["shapes_data"] = _check_shapes_data(self.options["shapes_data"])
        self._samples: list[Sample] | None = None

    @property
    def max_new_tokens(self) -> int:
        """The ``max_new_tokens`` option: the cap on generated answer tokens."""
        return int(self.options["max_new_tokens"])

    def settings(self) -> dict[str, Any]:
        """Every option (defaults filled in), JSON-serialisable."""
        return {"kind": self.kind, **{k: (str(v) if isinstance(v, Path) else v) for k, v in self.options.items()}}

    @abc.abstractmethod
    def _load(self) -> list[Sample]:
        """All samples of the benchmark, in file order."""

    def samples(self) -> list[Sample]:
        """The selected samples, sorted by id (natural order), ``ids``/``limit`` applied.

        Raises:
            ValueError: two samples share an id.
            UnresolvedIdError: an id in ``ids`` is not in the benchmark.
        """
        if self._samples is None:
            if self.options["shapes_data"] is not None:
                prepare_shapes_data(**self.options["shapes_data"])
            loaded = self._load()
            by_id: dict[str, Sample] = {}
            for s in loaded:
                if s.sample_id in by_id:
                    raise ValueError(f"task {self.kind!r}: sample id {s.sample_id!r} occurs twice")
                by_id[s.sample_id] = s
            ids = self.options["ids"]
            if ids is not None:
                wanted = [str(i) for i in ids]
                missing = [i for i in wanted if i not in by_id]
                if missing:
                    known = sorted(by_id, key=natural_key)
                    shown = known[:10] + (["..."] if len(known) > 10 else [])
                    raise UnresolvedIdError(
                        f"task {self.kind!r}: sample id(s) {missing} are not in the benchmark "
                        f"(it has {len(known)} ids: {shown})"
                    )
                chosen = [by_id[i] for i in dict.fromkeys(wanted)]
            else:
                chosen = list(by_id.values())
            chosen.sort(key=lambda s: natural_key(s.sample_id))
            if self.options["limit"] is not None:
                chosen = chosen[: self.options["limit"]]
            if not chosen:
                raise ValueError(f"task {self.kind!r}: no samples to evaluate")
            self._samples = chosen
        return list(self._samples)

    @abc.abstractmethod
    def select(self, sample: Sample, generation: Generation, adapter: Any, image: np.ndarray) -> Selection:
        """Choose the target tokens (and ground truth) of ``sample`` given the model's answer."""


class _CocoBase(Task):
    defaults: ClassVar[dict[str, Any]] = {
        "root": None,
        "split": None,
        "image_dir": None,
        "prompt": "Describe the image.",
    }

    def _load(self) -> list[Sample]:
        o = self.options
        _required(self.kind, o, "root")
        ds = load_coco(Path(o["root"]), o["split"], image_dir=_opt_path(o["image_dir"]))
        samples = []
        for im in ds:
            groups: dict[str, list[CocoObject]] = {}
            for obj in im.objects:
                groups.setdefault(obj.category_name, []).append(obj)
            samples.append(
                Sample(
                    sample_id=str(im.image_id),
                    task=self.kind,
                    image_path=im.path,
                    prompt=str(o["prompt"]),
                    info={"image_id": im.image_id, "file_name": im.file_name},
                    objects=tuple(GroundTruth.from_objects(n, objs) for n, objs in groups.items()),
                )
            )
        return samples


class CocoCaptionTask(_CocoBase):
    """COCO captioning: explain every generated token (sentence level).

    Options: ``root`` (COCO root or an annotation file), ``split``, ``image_dir``,
    ``prompt``, ``include_eos`` (explain EOS too), ``limit``, ``ids``, ``max_new_tokens``.
    """

    kind: ClassVar[str] = "coco-caption"
    defaults: ClassVar[dict[str, Any]] = {**_CocoBase.defaults, "include_eos": False}

    def select(self, sample: Sample, generation: Generation, adapter: Any, image: np.ndarray) -> Selection:
        """Target every non-special answer token (EOS too with ``include_eos``); skip an empty answer."""
        positions = _answer_positions(generation, bool(self.options["include_eos"]))
        if not positions:
            return Selection(generation, skip="the model generated no token to explain")
        return Selection(generation, tuple(positions))


class CocoObjectTask(_CocoBase):
    """COCO object words: explain the first generated word that names a category present.

    Matching is case-insensitive on word boundaries ("cat" never matches "catalog"),
    plurals optional; ``synonyms`` maps a category to extra words (``{"person": ["man",
    "woman"]}``). The ground truth is the union of that category's boxes / masks. A caption
    that names no present category is skipped (with the reason recorded).
    """

    kind: ClassVar[str] = "coco-object"
    defaults: ClassVar[dict[str, Any]] = {**_CocoBase.defaults, "synonyms": {}, "plurals": True}

    def __init__(self, **options: Any):
        super().__init__(**options)
        syn = self.options["synonyms"]
        if not isinstance(syn, Mapping) or not all(
            isinstance(v, (list, tuple)) and all(isinstance(w, str) for w in v) for v in syn.values()
        ):
            raise ValueError(f"task key 'synonyms' must map a category to a list of words; got {syn!r}")

    def select(self, sample: Sample, generation: Generation, adapter: Any, image: np.ndarray) -> Selection:
        """Target the first word naming a present category, that category as ground truth; skip when none."""
        syn = self.options["synonyms"]
        names = {gt.name: [gt.name, *syn.get(gt.name, [])] for gt in sample.objects}
        if not names:
            return Selection(generation, skip="the image has no annotated object")
        found = find_category_mention(generation.text, names, plurals=bool(self.options["plurals"]))
        if found is None:
            return Selection(
                generation,
                skip=f"the answer names none of the categories present ({sorted(names)})",
                info={"present": sorted(names)},
            )
        category, start, end = found
        positions = positions_in_span(generation, start, end)
        if not positions:
            return Selection(generation, skip=f"the mention {generation.text[start:end]!r} covers no token")
        gt = next(g for g in sample.objects if g.name == category)
        return Selection(
            generation,
            tuple(positions),
            ground_truth=gt,
            info={"category": category, "word": generation.text[start:end], "char_span": [start, end]},
        )


class RefCocoTask(Task):
    """RefCOCO / RefCOCO+ / RefCOCOg: explain the answer about the referred object.

    The prompt template may use ``{sentence}`` (the referring expression number
    ``sentence_index``) and ``{category}`` (the referred object's category). ``target`` is
    ``"answer"`` (every non-special answer token) or ``"category"`` (the first mention of
    the category name; skipped when absent). The ground truth is the referred object.
    """

    kind: ClassVar[str] = "refcoco"
    defaults: ClassVar[dict[str, Any]] = {
        "refs": None,
        "dataset": "refcoco",
        "split_by": None,
        "split": None,
        "instances_file": None,
        "image_dir": None,
        "prompt": "What color is {sentence}?",
        "sentence_index": 0,
        "target": "answer",
        "max_new_tokens": 16,
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        if self.options["target"] not in ("answer", "category"):
            raise ValueError(f"task key 'target' must be 'answer' or 'category'; got {self.options['target']!r}")
        _check_int("sentence_index", self.options["sentence_index"], 0, allow_none=False)
        try:
            str(self.options["prompt"]).format(sentence="x", category="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"task key 'prompt' may only use the fields {{sentence}} and {{category}}; "
                f"got {self.options['prompt']!r} ({exc!r})"
            ) from None

    def _load(self) -> list[Sample]:
        o = self.options
        _required(self.kind, o, "refs")
        refs = load_refcoco(
            Path(o["refs"]),
            str(o["dataset"]),
            o["split_by"],
            o["split"],
            instances_file=_opt_path(o["instances_file"]),
            image_dir=_opt_path(o["image_dir"]),
        )
        samples = []
        idx = int(o["sentence_index"])
        for ref in refs:
            if not ref.sentences:
                logger.warning("refcoco ref_id %s has no sentences; skipped", ref.ref_id)
                continue
            sentence = ref.sentences[min(idx, len(ref.sentences) - 1)]
            samples.append(
                Sample(
                    sample_id=str(ref.ref_id),
                    task=self.kind,
                    image_path=ref.image.path,
                    prompt=str(o["prompt"]).format(sentence=sentence, category=ref.category_name),
                    info={
                        "ref_id": ref.ref_id,
                        "image_id": ref.image.image_id,
                        "ann_id": ref.target.annotation_id,
                        "sentence": sentence,
                        "split": ref.split,
                    },
                    objects=(GroundTruth.from_objects(ref.category_name, [ref.target]),),
                )
            )
        return samples

    def select(self, sample: Sample, generation: Generation, adapter: Any, image: np.ndarray) -> Selection:
        """Target the answer tokens or the category mention (``target``); the referred object is the ground truth."""
        gt = sample.objects[0]
        if self.options["target"] == "answer":
            positions = _answer_positions(generation)
            if not positions:
                return Selection(generation, skip="the model generated no token to explain")
            return Selection(generation, tuple(positions), ground_truth=gt)
        found = find_category_mention(generation.text, {gt.name: [gt.name]})
        if found is None:
            return Selection(generation, skip=f"the answer does not name the referred category {gt.name!r}")
        _, start, end = found
        positions = positions_in_span(generation, start, end)
        if not positions:
            return Selection(generation, skip=f"the mention {generation.text[start:end]!r} covers no token")
        return Selection(generation, tuple(positions), ground_truth=gt, info={"word": generation.text[start:end]})


_YES_NO = re.compile(r"(?<!\w)(yes|no)(?!\w)", re.IGNORECASE)
_EXIST_OBJECT = re.compile(r"is there an? (?P<obj>.+?) in the (?:image|picture|photo)", re.IGNORECASE)


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class RePopeTask(Task):
    """POPE / RePOPE yes/no object questions: explain the CORRECT answer where the model erred.

    The first "yes"/"no" of the answer (word boundaries, any case) is the model's answer.
    With ``only_wrong`` (default), right answers are skipped; for a wrong one the correct
    word (in the model's casing) is teacher-forced in place of the wrong one (text before it
    kept) and its tokens are explained: a counterfactual target (method.md §1, §5).
    With ``only_wrong: false`` every sample is explained: wrong ones as above, right ones on
    the generated answer word. An answer with neither word is skipped.

    ``annotations`` (optional): a COCO instances file for the same images (matched by file
    name); then the asked-about object, when present, becomes the ground truth.

    ``amcr`` (default true): for every explained wrong answer the runner also measures AMCR
    (regions removed from the least important end of each method's ordering, answer
    regenerated; :func:`mllm_attr.analysis.hallucination.minimal_correcting_removal`), with
    ``amcr_schedule`` ``"incremental"`` (exact) or ``"bisection"``.
    """

    kind: ClassVar[str] = "repope"
    defaults: ClassVar[dict[str, Any]] = {
        "questions": None,
        "image_dir": None,
        "variant": None,
        "only_wrong": True,
        "annotations": None,
        "amcr": True,
        "amcr_schedule": "incremental",
        "max_new_tokens": 8,
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        if self.options["amcr_schedule"] not in ("incremental", "bisection"):
            raise ValueError(
                f"task key 'amcr_schedule' must be 'incremental' or 'bisection'; got {self.options['amcr_schedule']!r}"
            )

    def _load(self) -> list[Sample]:
        o = self.options
        _required(self.kind, o, "questions", "image_dir")
        questions = load_pope(Path(o["questions"]), Path(o["image_dir"]), o["variant"])
        by_file: dict[str, dict[str, list[CocoObject]]] = {}
        if o["annotations"] not in (None, ""):
            ann = Path(o["annotations"])
            coco = load_coco(ann, image_dir=Path(o["image_dir"]))
            for im in coco:
                groups = by_file.setdefault(im.file_name, {})
                for obj in im.objects:
                    groups.setdefault(obj.category_name.lower(), []).append(obj)
        samples = []
        for q in questions:
            objects: tuple[GroundTruth, ...] = ()
            m = _EXIST_OBJECT.search(q.question)
            asked = m.group("obj").strip().lower() if m else None
            if asked and q.image in by_file and asked in by_file[q.image]:
                objects = (GroundTruth.from_objects(asked, by_file[q.image][asked]),)
            samples.append(
                Sample(
                    sample_id=str(q.question_id),
                    task=self.kind,
                    image_path=q.image_path,
                    prompt=q.question,
                    info={
                        "question_id": q.question_id,
                        "image": q.image,
                        "label": q.answer,
                        "variant": q.variant,
                        "object": asked,
                        "category": q.category,
                    },
                    objects=objects,
                )
            )
        return samples

    def select(self, sample: Sample, generation: Generation, adapter: Any, image: np.ndarray) -> Selection:
        """Target the yes/no word: for a wrong answer, the teacher-forced correct word (a counterfactual).

        A right answer is skipped unless ``only_wrong`` is false; an answer with neither word is skipped.
        """
        label = str(sample.info["label"])
        m = _YES_NO.search(generation.text)
        if m is None:
            return Selection(generation, skip="the answer contains neither 'yes' nor 'no'", info={"label": label})
        said = m.group(1).lower()
        gt = sample.objects[0] if sample.objects else None
        info: dict[str, Any] = {"label": label, "answer": said, "correct": said == label}
        if said == label:
            if self.options["only_wrong"]:
                return Selection(generation, skip="the model answered correctly", info=info)
            positions = positions_in_span(generation, m.start(), m.end())
            return Selection(generation, tuple(positions), ground_truth=gt, info=info)
        correct = _match_case(label, m.group(1))
        cf_text = generation.text[: m.start()] + correct
        counterfactual = adapter.teacher_force(image, generation.prompt, cf_text, generated_text=generation.text)
        start = len(counterfactual.text) - len(correct)
        positions = positions_in_span(counterfactual, start, len(counterfactual.text))
        if not positions:  # the tokenizer merged the word with its prefix: explain the last token
            positions = [max(i for i in range(len(counterfactual)) if not counterfactual.special[i])]
        info.update({"counterfactual": cf_text, "generated_text": generation.text})
        return Selection(counterfactual, tuple(positions), ground_truth=gt, info=info)


class MMVPTask(Task):
    """MMVP multiple-choice questions: explain every answer token.

    The prompt template may use ``{question}`` and ``{options}`` (rendered as
    ``"(a) Open (b) Closed"``).
    """

    kind: ClassVar[str] = "mmvp"
    defaults: ClassVar[dict[str, Any]] = {
        "root": None,
        "prompt": "{question} Options: {options}. Answer with the option's letter.",
        "max_new_tokens": 16,
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        try:
            str(self.options["prompt"]).format(question="q", options="o")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"task key 'prompt' may only use the fields {{question}} and {{options}}; "
                f"got {self.options['prompt']!r} ({exc!r})"
            ) from None

    def _load(self) -> list[Sample]:
        _required(self.kind, self.options, "root")
        samples = []
        for q in load_mmvp(Path(self.options["root"])):
            options = " ".join(f"({k}) {v}" for k, v in q.options.items())
            samples.append(
                Sample(
                    sample_id=str(q.index),
                    task=self.kind,
                    image_path=q.image_path,
                    prompt=str(self.options["prompt"]).format(question=q.question, options=options),
                    info={
                        "index": q.index,
                        "pair_id": q.pair_id,
                        "correct_letter": q.correct_letter,
                        "correct_option": q.correct_option,
                    },
                )
            )
        return samples

    def select(self, sample: Sample, generation: Generation, adapter: Any, image: np.ndarray) -> Selection:
        """Target every answer token; ``info["correct"]`` says whether the answer picks the correct option."""
        positions = _answer_positions(generation)
        if not positions:
            return Selection(generation, skip="the model generated no token to explain")
        text = generation.text.strip().lower()
        letter = str(sample.info["correct_letter"])
        right = bool(re.match(rf"\(?{re.escape(letter)}\b", text)) or str(sample.info["correct_option"]).lower() in text
        return Selection(generation, tuple(positions), info={"correct": right})


#: task kind -> class.
TASKS: dict[str, type[Task]] = {
    cls.kind: cls for cls in (CocoCaptionTask, CocoObjectTask, RefCocoTask, RePopeTask, MMVPTask)
}


def build_task(section: Mapping[str, Any]) -> Task:
    """Build a task from the ``"task"`` section of a config (``{"kind": ..., **options}``).

    Raises:
        ValueError: no/unknown ``kind`` (lists the valid kinds) or an unknown option (lists
            the valid keys of that kind).
    """
    if not isinstance(section, Mapping):
        raise TypeError(f"the task section must be a JSON object; got {type(section).__name__}")
    kind = section.get("kind")
    if kind not in TASKS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(TASKS)}")
    return TASKS[kind](**{k: v for k, v in section.items() if k != "kind"})
