"""COCO 2014 / 2017 loader (instances + captions) with lazily loaded images.

Public layout (either annotation file may be missing, but not both)::

    <root>/annotations/instances_<split>.json   # {"images", "annotations", "categories"}
    <root>/annotations/captions_<split>.json    # {"images", "annotations"}
    <root>/<split>/<file_name>                  # e.g. val2017/000000000139.jpg or
                                                #      val2014/COCO_val2014_000000000042.jpg

Image paths are built from each image's ``file_name`` in the JSON, so both the 2014
(``COCO_val2014_...jpg``) and 2017 (``000000...jpg``) naming work unchanged.

The published files (cocodataset.org, the format of cocodataset/cocoapi) are read as they
are: the ``info`` and ``licenses`` blocks (which differ between 2014 and 2017) and the extra
image keys (``license``, ``coco_url``, ``flickr_url``, ``date_captured``) are ignored;
captions files have no ``categories``; images with no instance annotation (there are some
in every split) get ``objects == ()``; crowd regions (``iscrowd: 1``) carry an
*uncompressed* RLE (``{"counts": [int, ...], "size": [H, W]}``) and have 12-digit
annotation ids (``900100...``); other objects carry one or more polygons, a few of them
degenerate (zero area, e.g. ``instances_train2017`` annotation 918); captions may end
with spaces or a newline (stripped here).

This module also holds the small helpers (JSON reading, the id-resolution error types)
that the RefCOCO, POPE and MMVP loaders share.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .masks import decode_segmentation, point_in_box, point_in_mask, segmentation_area

logger = logging.getLogger(__name__)

__all__ = [
    "UnresolvedIdError",
    "MissingImageError",
    "CocoObject",
    "CocoImage",
    "CocoDataset",
    "load_coco",
    "coco_from_json",
    "read_json",
    "load_rgb",
]

PathLike = str | Path


# --------------------------------------------------------------------------- errors / io


class UnresolvedIdError(KeyError):
    """An id in one record points to nothing (e.g. an annotation to a missing image).

    A :class:`KeyError` whose ``str()`` is the plain message (no extra quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingImageError(UnresolvedIdError, FileNotFoundError):
    """A record's image file does not exist; both a :class:`KeyError` and a
    :class:`FileNotFoundError`, so either ``except`` clause catches it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is an existing file, else raise ``FileNotFoundError``.

    Args:
        path: the file expected.
        what: a description of what should be there (goes into the message).
    """
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise FileNotFoundError(f"{path}: expected {what} here; no such file{hint}")
    return path


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is an existing directory, else raise ``FileNotFoundError``."""
    if not path.is_dir():
        hint = " (it is a file)" if path.is_file() else ""
        raise FileNotFoundError(f"{path}: expected {what} here; no such directory{hint}")
    return path


def describe(value: Any) -> str:
    """Short description of a parsed JSON value for error messages."""
    if isinstance(value, Mapping):
        keys = sorted(map(str, value))
        shown = keys[:8] + (["..."] if len(keys) > 8 else [])
        return f"an object with keys {shown}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not valid UTF-8 JSON (message names the file and ``what``).
    """
    require_file(path, what)
    try:
        with path.open("r", encoding="utf-8-sig") as fh:  # a BOM, if any, is skipped
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: expected {what} (valid JSON); could not parse it: {exc}") from exc


def load_rgb(path: Path) -> Image.Image:
    """Open an image file and return it as an RGB PIL image (``mode == "RGB"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image PIL can read.
    """
    require_file(path, "an image file")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{path}: expected an image file PIL can read; {exc}") from exc


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class CocoObject:
    """One COCO instance annotation.

    Attributes:
        annotation_id: the annotation's ``id``.
        image_id: id of the image it belongs to.
        category_id: COCO category id (1..90 for COCO, sparse).
        category_name: the category's ``name`` (e.g. ``"person"``).
        bbox: ``(x, y, w, h)`` floats in pixels, top-left origin.
        segmentation: the raw COCO segmentation — a list of polygons, an uncompressed RLE
            dict (``counts`` list) or a compressed RLE dict (``counts`` str); excluded from
            hashing.
        area: the annotation's ``area`` field (pixels, float).
        iscrowd: ``True`` for crowd regions (usually RLE).
        image_height: ``H`` of the image, needed to decode the segmentation.
        image_width: ``W`` of the image.
    """

    annotation_id: int
    image_id: int
    category_id: int
    category_name: str
    bbox: tuple[float, float, float, float]
    segmentation: Any = field(repr=False, hash=False, compare=False)
    area: float
    iscrowd: bool
    image_height: int
    image_width: int

    def mask(self) -> np.ndarray:
        """Decode the segmentation: ``bool[H, W]`` (polygons merged), via pycocotools."""
        return decode_segmentation(self.segmentation, self.image_height, self.image_width)

    def mask_area(self) -> int:
        """Pixel count of the decoded mask (``int``)."""
        return segmentation_area(self.segmentation, self.image_height, self.image_width)

    def contains_point(self, x: float, y: float, *, use_mask: bool = True) -> bool:
        """Pointing-game hit test: is ``(x, y)`` on the object's mask (or in its box)?

        Args:
            x: column coordinate in pixels.
            y: row coordinate in pixels.
            use_mask: test the decoded mask when ``True``, the box when ``False``.
        """
        if use_mask:
            return point_in_mask(x, y, self.mask())
        return point_in_box(x, y, self.bbox)


@dataclass(frozen=True)
class CocoImage:
    """One COCO image with its captions and objects; the pixels are loaded lazily.

    Attributes:
        image_id: the image's ``id``.
        file_name: the JSON's ``file_name`` (e.g. ``COCO_val2014_000000000042.jpg``).
        path: ``<image_dir>/<file_name>`` (not checked to exist).
        width: ``W`` in pixels.
        height: ``H`` in pixels.
        captions: caption strings (empty without a captions file).
        objects: instance annotations (empty without an instances file).
    """

    image_id: int
    file_name: str
    path: Path
    width: int
    height: int
    captions: tuple[str, ...] = ()
    objects: tuple[CocoObject, ...] = ()

    def load_image(self) -> Image.Image:
        """Read the image from :attr:`path` as RGB PIL (``size == (width, height)``)."""
        return load_rgb(self.path)

    def masks(self) -> np.ndarray:
        """All object masks stacked: ``bool[N, H, W]`` (``N = len(objects)``, may be 0)."""
        if not self.objects:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.stack([obj.mask() for obj in self.objects])


@dataclass(frozen=True)
class CocoDataset:
    """The images of one COCO split, iterable in JSON order and indexable by image id.

    Attributes:
        split: e.g. ``"val2017"``.
        image_dir: folder the image paths are built from.
        images: the :class:`CocoImage` records.
        categories: ``{category_id: name}``.
    """

    split: str
    image_dir: Path
    images: tuple[CocoImage, ...]
    categories: Mapping[int, str] = field(hash=False)
    _by_id: Mapping[int, CocoImage] = field(init=False, repr=False, hash=False, compare=False)
    _objects: Mapping[int, CocoObject] = field(init=False, repr=False, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {im.image_id: im for im in self.images})
        object.__setattr__(self, "_objects", {obj.annotation_id: obj for im in self.images for obj in im.objects})

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[CocoImage]:
        return iter(self.images)

    def __getitem__(self, image_id: int) -> CocoImage:
        """The image with this id.

        Raises:
            UnresolvedIdError: (a ``KeyError``) no image has this id.
        """
        try:
            return self._by_id[image_id]
        except KeyError:
            raise UnresolvedIdError(f"image id {image_id!r} is not in COCO split {self.split!r}") from None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._by_id

    def annotation(self, annotation_id: int) -> CocoObject:
        """The instance annotation with this id.

        Raises:
            UnresolvedIdError: (a ``KeyError``) no annotation has this id.
        """
        try:
            return self._objects[annotation_id]
        except KeyError:
            raise UnresolvedIdError(f"annotation id {annotation_id!r} is not in COCO split {self.split!r}") from None


# --------------------------------------------------------------------------- parsing


def _require_keys(obj: Any, keys: Sequence[str], source: Path, what: str) -> Mapping[str, Any]:
    expected = ", ".join(repr(k) for k in keys)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected {what} as a JSON object with keys {expected}; got {describe(obj)}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(
            f"{source}: expected {what} as a JSON object with keys {expected}; "
            f"missing {missing} (got keys {sorted(map(str, obj))})"
        )
    for k in keys:
        if not isinstance(obj[k], list):
            raise ValueError(f"{source}: expected key {k!r} to hold a list; got {describe(obj[k])}")
    return obj


def _entry(entry: Any, keys: Sequence[str], source: Path, where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{source}: expected {where} to be a JSON object; got {describe(entry)}")
    missing = [k for k in keys if k not in entry]
    if missing:
        ident = f" (id {entry['id']!r})" if "id" in entry else ""
        raise ValueError(f"{source}: {where}{ident} lacks required keys {missing}; has {sorted(map(str, entry))}")
    return entry


def _parse_bbox(raw: Any, source: Path, ann_id: Any) -> tuple[float, float, float, float]:
    if not (isinstance(raw, (list, tuple)) and len(raw) == 4):
        raise ValueError(f"{source}: annotation {ann_id!r}: expected 'bbox' as [x, y, w, h]; got {raw!r}")
    try:
        x, y, w, h = (float(v) for v in raw)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: annotation {ann_id!r}: 'bbox' must hold numbers; got {raw!r}") from None
    return (x, y, w, h)


def coco_from_json(
    instances: Mapping[str, Any] | None,
    captions: Mapping[str, Any] | None,
    image_dir: Path,
    split: str,
    *,
    instances_source: Path = Path("<instances>"),
    captions_source: Path = Path("<captions>"),
) -> CocoDataset:
    """Build a :class:`CocoDataset` from already-parsed instance / caption JSON.

    Args:
        instances: the instances JSON (``images``, ``annotations``, ``categories``) or None.
        captions: the captions JSON (``images``, ``annotations``) or None.
        image_dir: folder the ``file_name`` of each image is joined to.
        split: split name, recorded on the dataset.
        instances_source / captions_source: file names used in error messages.

    Raises:
        ValueError: a wrong structure (message names the source file, expectation, finding).
        UnresolvedIdError: an annotation refers to a missing image or category.
    """
    if instances is None and captions is None:
        raise ValueError("coco_from_json needs at least one of instances / captions")
    images_meta: dict[int, Mapping[str, Any]] = {}
    order: list[int] = []
    sources: list[tuple[Mapping[str, Any], Path]] = []
    if instances is not None:
        _require_keys(instances, ("images", "annotations", "categories"), instances_source, "COCO instances")
        sources.append((instances, instances_source))
    if captions is not None:
        _require_keys(captions, ("images", "annotations"), captions_source, "COCO captions")
        sources.append((captions, captions_source))
    for data, source in sources:
        for i, img in enumerate(data["images"]):
            img = _entry(img, ("id", "file_name", "width", "height"), source, f"images[{i}]")
            image_id = int(img["id"])
            if image_id not in images_meta:
                images_meta[image_id] = img
                order.append(image_id)

    categories: dict[int, str] = {}
    if instances is not None:
        for i, cat in enumerate(instances["categories"]):
            cat = _entry(cat, ("id", "name"), instances_source, f"categories[{i}]")
            categories[int(cat["id"])] = str(cat["name"])

    objects_per_image: dict[int, list[CocoObject]] = {i: [] for i in order}
    if instances is not None:
        for i, ann in enumerate(instances["annotations"]):
            ann = _entry(ann, ("id", "image_id", "category_id", "bbox"), instances_source, f"annotations[{i}]")
            ann_id, image_id, cat_id = int(ann["id"]), int(ann["image_id"]), int(ann["category_id"])
            meta = images_meta.get(image_id)
            if meta is None:
                raise UnresolvedIdError(
                    f"{instances_source}: annotation id {ann_id} refers to image id {image_id}, "
                    "which is not in 'images'"
                )
            if cat_id not in categories:
                raise UnresolvedIdError(
                    f"{instances_source}: annotation id {ann_id} refers to category id {cat_id}, "
                    "which is not in 'categories'"
                )
            obj = CocoObject(
                annotation_id=ann_id,
                image_id=image_id,
                category_id=cat_id,
                category_name=categories[cat_id],
                bbox=_parse_bbox(ann["bbox"], instances_source, ann_id),
                segmentation=ann.get("segmentation", []),
                area=float(ann.get("area", 0.0)),
                iscrowd=bool(ann.get("iscrowd", 0)),
                image_height=int(meta["height"]),
                image_width=int(meta["width"]),
            )
            objects_per_image[image_id].append(obj)

    captions_per_image: dict[int, list[str]] = {i: [] for i in order}
    if captions is not None:
        for i, ann in enumerate(captions["annotations"]):
            ann = _entry(ann, ("image_id", "caption"), captions_source, f"annotations[{i}]")
            image_id = int(ann["image_id"])
            if image_id not in captions_per_image:
                raise UnresolvedIdError(
                    f"{captions_source}: caption id {ann.get('id')!r} refers to image id {image_id}, "
                    "which is not in 'images'"
                )
            captions_per_image[image_id].append(str(ann["caption"]).strip())

    records = []
    for image_id in order:
        meta = images_meta[image_id]
        records.append(
            CocoImage(
                image_id=image_id,
                file_name=str(meta["file_name"]),
                path=image_dir / str(meta["file_name"]),
                width=int(meta["width"]),
                height=int(meta["height"]),
                captions=tuple(captions_per_image[image_id]),
                objects=tuple(objects_per_image[image_id]),
            )
        )
    return CocoDataset(split=split, image_dir=image_dir, images=tuple(records), categories=categories)


_ANN_NAME = re.compile(r"^(instances|captions)_(?P<split>.+)\.json$")


def load_coco(
    root_or_annotation_file: PathLike,
    split: str | None = None,
    *,
    image_dir: PathLike | None = None,
) -> CocoDataset:
    """Load a COCO split (instances and/or captions) with lazily loaded images.

    Args:
        root_or_annotation_file: either the COCO root (holding ``annotations/`` and
            ``<split>/``) or one annotation file ``instances_<split>.json`` /
            ``captions_<split>.json``; with a file, its sibling of the other kind is read
            too when present, and the split is taken from the file name unless given.
        split: e.g. ``"val2017"`` or ``"val2014"`` (default ``"val2017"`` for a root).
        image_dir: image folder; default ``<root>/<split>`` (for a file: ``<file's
            folder>/../<split>``).

    Returns:
        A :class:`CocoDataset`; each :class:`CocoImage` has captions and/or objects.

    Raises:
        FileNotFoundError: the root / file / image folder is missing, or neither
            annotation file exists (message lists the paths looked for).
        ValueError: a file is not the expected JSON structure.
        UnresolvedIdError: (``KeyError``) an annotation points to a missing image/category.
    """
    given = Path(root_or_annotation_file)
    if given.is_file():
        match = _ANN_NAME.match(given.name)
        if split is None:
            if match is None:
                raise ValueError(
                    f"{given}: cannot infer the split from the file name; expected "
                    "'instances_<split>.json' or 'captions_<split>.json', or pass split="
                )
            split = match.group("split")
        ann_dir = given.parent
        root = ann_dir.parent
        if match is not None and match.group(1) == "captions":
            captions_path: Path | None = given
            other = ann_dir / f"instances_{split}.json"
            instances_path: Path | None = other if other.is_file() else None
        else:
            instances_path = given
            other = ann_dir / f"captions_{split}.json"
            captions_path = other if other.is_file() else None
    else:
        require_dir(given, "a COCO root folder with 'annotations/' (or a COCO annotation JSON file)")
        split = split or "val2017"
        root = given
        ann_dir = root / "annotations"
        inst = ann_dir / f"instances_{split}.json"
        capt = ann_dir / f"captions_{split}.json"
        instances_path = inst if inst.is_file() else None
        captions_path = capt if capt.is_file() else None
        if instances_path is None and captions_path is None:
            raise FileNotFoundError(
                f"{ann_dir}: expected COCO annotations for split {split!r} here "
                f"({inst.name} and/or {capt.name}); found neither"
            )

    img_dir = Path(image_dir) if image_dir is not None else root / split
    require_dir(img_dir, f"the COCO image folder for split {split!r} (files named as in 'file_name')")

    instances = read_json(instances_path, "COCO instances JSON") if instances_path else None
    captions = read_json(captions_path, "COCO captions JSON") if captions_path else None
    dataset = coco_from_json(
        instances,
        captions,
        img_dir,
        split,
        instances_source=instances_path or Path("<instances>"),
        captions_source=captions_path or Path("<captions>"),
    )
    logger.info(
        "loaded COCO %s: %d images, %d objects, %d categories (instances=%s, captions=%s)",
        split,
        len(dataset),
        sum(len(im.objects) for im in dataset),
        len(dataset.categories),
        instances_path,
        captions_path,
    )
    return dataset
