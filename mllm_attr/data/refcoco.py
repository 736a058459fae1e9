"""RefCOCO / RefCOCO+ / RefCOCOg loader, with a pickle reader that cannot run code.

Public layout (as distributed with the ``refer`` toolkit)::

    <root>/<dataset>/refs(<splitBy>).p     # pickle of a list of dicts (or refs(<splitBy>).json)
    <root>/<dataset>/instances.json        # COCO-style images / annotations / categories
    <root>/images/mscoco/images/train2014/  # COCO train2014 images (or pass image_dir=)

Each ref dict carries ``ref_id, ann_id, image_id, split, sentences`` (each sentence a
dict with ``sent`` / ``raw`` / ``tokens`` / ``sent_id``), plus ``category_id``,
``sent_ids`` and ``file_name`` which are not needed here (``file_name`` looks like
``COCO_train2014_000000581857_16.jpg``, with a number appended: it is *not* an image
file; the image path comes from the image's ``file_name`` in ``instances.json``).

The published ``refs(<splitBy>).p`` files (``refcoco/refs(unc).p``, ``refcoco/refs(google).p``,
``refcoco+/refs(unc).p``, ``refcocog/refs(umd).p``, ``refcocog/refs(google).p``) were written
by Python 2 (``cPickle``), so their strings are Python-2 ``str`` opcodes (raw bytes) rather
than unicode: :func:`load_data_pickle` decodes them as UTF-8 and, if some are not valid
UTF-8, reads the whole file again decoding them as latin-1 (which never fails). Pickle
protocols 0, 1 and 2 (and the Python 3 ones) are all accepted.

The ``.p`` file is read with :class:`DataOnlyUnpickler`, whose ``find_class`` refuses
every global: a plain refs file (only dicts, lists, str, int, float) loads normally, but
a pickle that tries to import anything (``os.system``, ``builtins.eval``, a class) fails
with ``ValueError`` before any of it is called.

Split selection follows the ``refer`` toolkit: ``split="test"`` selects every ``test*``
split (RefCOCO/RefCOCO+ ``testA`` + ``testB``; RefCOCOg-umd ``test``), ``"testA"`` /
``"testB"`` / ``"testC"`` select the ``test*`` splits whose name contains that letter
(``testAB`` too), any other name must match exactly.
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .coco import (
    CocoDataset,
    CocoImage,
    CocoObject,
    PathLike,
    UnresolvedIdError,
    coco_from_json,
    describe,
    read_json,
    require_dir,
    require_file,
)

logger = logging.getLogger(__name__)

__all__ = [
    "REFCOCO_SPLIT_BY",
    "REFCOCO_SPLITS",
    "DataOnlyUnpickler",
    "load_data_pickle",
    "split_matches",
    "RefCocoRef",
    "load_refcoco",
]

#: The usual ``splitBy`` per dataset (RefCOCOg also ships ``refs(google).p``).
REFCOCO_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
#: Split names that appear in the public refs files.
REFCOCO_SPLITS: tuple[str, ...] = ("train", "val", "test", "testA", "testB", "testC")

_PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"refused global {module}.{name}")
        self.module = module
        self.name = name


class DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler for plain data: every global lookup is refused.

    Pickles of dicts, lists, tuples, str, bytes, int, float, bool and None need no
    globals and load normally; anything that names a module attribute (a class, a
    function such as ``os.system``) raises :class:`pickle.UnpicklingError` at the
    lookup, so nothing from the file is ever called. Persistent ids are refused too
    (the base class already does that).
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented above
        """Refuse the lookup of ``module.name``: always raises :class:`pickle.UnpicklingError`."""
        raise _RefusedGlobal(module, name)


#: How Python-2 ``str`` values (raw bytes in the pickle) are decoded, in order of preference.
PY2_STR_ENCODINGS: tuple[str, ...] = ("utf-8", "latin-1")


def load_data_pickle(path: Path, what: str = "a pickle of plain data") -> Any:
    """Load a pickle that may only hold plain data, with :class:`DataOnlyUnpickler`.

    Python 2 ``str`` values (``STRING`` / ``BINSTRING`` / ``SHORT_BINSTRING`` opcodes, as
    written by Python 2's ``cPickle``) come back as ``str``: decoded as UTF-8 when every one
    of them is valid UTF-8 (ASCII included), otherwise the file is read again decoding them
    as latin-1 (a warning is logged). Python-2 ``unicode`` and Python-3 ``str`` values are
    UTF-8 in every protocol and unaffected; Python-3 ``bytes`` stay ``bytes``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file references a global (names which one) or is not a valid pickle.
    """
    require_file(path, what)
    data = path.read_bytes()
    for k, encoding in enumerate(PY2_STR_ENCODINGS):
        try:
            result = DataOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
        except _RefusedGlobal as exc:
            raise ValueError(
                f"{path}: expected {what} (only dicts/lists/str/int/float); it references the "
                f"global {exc.module}.{exc.name}, which is refused for safety - the file was not loaded"
            ) from None
        except UnicodeDecodeError as exc:
            if k + 1 < len(PY2_STR_ENCODINGS):
                logger.debug("%s: Python-2 strings are not %s (%s); retrying", path, encoding, exc)
                continue
            raise ValueError(f"{path}: expected {what}; could not decode its strings: {exc}") from None
        except Exception as exc:  # truncated / corrupt pickles raise many different types
            raise ValueError(f"{path}: expected {what}; could not unpickle it: {type(exc).__name__}: {exc}") from None
        if k > 0:
            logger.warning(
                "%s: some Python-2 strings are not valid %s; decoded them as %s",
                path,
                PY2_STR_ENCODINGS[0],
                encoding,
            )
        return result
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class RefCocoRef:
    """One referring expression group: a COCO object and the sentences that describe it.

    Attributes:
        ref_id: the ref's ``ref_id``.
        dataset: ``"refcoco"``, ``"refcoco+"``, ``"refcocog"`` (or the folder name).
        split_by: e.g. ``"unc"``, ``"umd"``, ``"google"``.
        split: ``"train"``, ``"val"``, ``"test"``, ``"testA"`` or ``"testB"``.
        image: the COCO image record (lazy pixels, all its objects).
        target: the referred object (``bbox``, ``mask()``, category).
        sentences: the referring expressions (the ``sent`` field, else ``raw``).
        sentence_ids: the matching ``sent_id`` values (empty when the file has none).
    """

    ref_id: int
    dataset: str
    split_by: str
    split: str
    image: CocoImage
    target: CocoObject
    sentences: tuple[str, ...]
    sentence_ids: tuple[int, ...] = ()

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The referred object's box ``(x, y, w, h)`` in pixels."""
        return self.target.bbox

    @property
    def category_name(self) -> str:
        """The referred object's COCO category name."""
        return self.target.category_name

    def mask(self) -> np.ndarray:
        """The referred object's mask, ``bool[H, W]``."""
        return self.target.mask()

    def contains_point(self, x: float, y: float, *, use_mask: bool = True) -> bool:
        """Pointing-game hit test against the referred object's mask (or box)."""
        return self.target.contains_point(x, y, use_mask=use_mask)

    def load_image(self) -> Image.Image:
        """The image as RGB PIL."""
        return self.image.load_image()


def _read_refs(path: Path) -> list[Mapping[str, Any]]:
    what = "RefCOCO refs: a list of dicts with keys 'ref_id', 'ann_id', 'image_id', 'split', 'sentences'"
    if path.suffix.lower() == ".json":
        refs = read_json(path, what)
    else:
        refs = load_data_pickle(path, what)
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected {what}; got {describe(refs)}")
    return refs


def _parse_sentences(raw: Any, path: Path, ref_id: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if not isinstance(raw, list):
        raise ValueError(f"{path}: ref_id {ref_id!r}: expected 'sentences' to be a list; got {describe(raw)}")
    texts: list[str] = []
    ids: list[int] = []
    for j, sent in enumerate(raw):
        if isinstance(sent, str):
            texts.append(sent)
        elif isinstance(sent, Mapping) and ("sent" in sent or "raw" in sent):
            texts.append(str(sent.get("sent", sent.get("raw"))))
            if "sent_id" in sent:
                ids.append(int(sent["sent_id"]))
        else:
            raise ValueError(
                f"{path}: ref_id {ref_id!r}: sentence {j} must be a str or a dict with 'sent'/'raw'; "
                f"got {describe(sent)}"
            )
    return tuple(texts), tuple(ids) if len(ids) == len(texts) else ()


def split_matches(ref_split: str, wanted: str) -> bool:
    """Whether a ref of split ``ref_split`` belongs to the requested split ``wanted``.

    As in the ``refer`` toolkit: ``"test"`` takes every ``test*`` split; ``"testA"`` /
    ``"testB"`` / ``"testC"`` take the ``test*`` splits whose name contains that letter
    (so ``testAB`` counts for both ``testA`` and ``testB``); other names match exactly.
    """
    if wanted == "test":
        return ref_split.startswith("test")
    if wanted in ("testA", "testB", "testC"):
        return ref_split.startswith("test") and wanted[-1] in ref_split[4:]
    return ref_split == wanted


def _find_dataset_dir(given: Path, dataset: str) -> Path:
    if (given / dataset).is_dir():
        return given / dataset
    if given.is_dir() and (any(given.glob("refs(*).p")) or any(given.glob("refs(*).json"))):
        return given
    raise FileNotFoundError(
        f"{given / dataset}: expected the {dataset} folder with 'refs(<splitBy>).p' and "
        f"'instances.json' (or pass the dataset folder / refs file itself); not found"
    )


def _default_image_dir(data_root: Path) -> Path:
    candidates = [
        data_root / "images" / "mscoco" / "images" / "train2014",
        data_root / "images" / "train2014",
        data_root / "train2014",
    ]
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        f"{candidates[0]}: expected the COCO train2014 image folder for RefCOCO here (also tried "
        f"{', '.join(str(c) for c in candidates[1:])}); none exists - pass image_dir="
    )


def load_refcoco(
    root: PathLike,
    dataset: str = "refcoco",
    split_by: str | None = None,
    split: str | None = None,
    *,
    instances_file: PathLike | None = None,
    image_dir: PathLike | None = None,
) -> list[RefCocoRef]:
    """Load RefCOCO / RefCOCO+ / RefCOCOg refs joined with their COCO objects.

    Args:
        root: the data root holding ``<dataset>/``, the dataset folder itself, or a refs
            file (``refs(<splitBy>).p``, or any ``.json`` with the same list).
        dataset: ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split_by: ``"unc"`` / ``"umd"`` / ``"google"``; default from :data:`REFCOCO_SPLIT_BY`.
        split: keep only refs of this split (``train``, ``val``, ``test``, ``testA``, ``testB``;
            ``test`` / ``testA`` / ``testB`` as in the ``refer`` toolkit, see
            :func:`split_matches`); ``None`` keeps all.
        instances_file: default ``<dataset folder>/instances.json``.
        image_dir: COCO train2014 images; default the first existing of
            ``<data root>/images/mscoco/images/train2014``, ``<data root>/images/train2014``,
            ``<data root>/train2014``.

    Returns:
        :class:`RefCocoRef` records in file order.

    Raises:
        FileNotFoundError: a folder / refs file / instances file / image folder is missing.
        ValueError: a malformed file, a pickle that references any global, a requested split
            absent from the file, or a ref whose object lies in another image.
        UnresolvedIdError: (``KeyError``) a ref's ``ann_id`` or ``image_id`` is not in
            ``instances.json`` (message names the ref_id and the id).
    """
    given = Path(root)
    if split_by is None:
        if dataset not in REFCOCO_SPLIT_BY:
            raise ValueError(
                f"no default split_by for dataset {dataset!r}; pass split_by= (known defaults: {REFCOCO_SPLIT_BY})"
            )
        split_by = REFCOCO_SPLIT_BY[dataset]

    if given.is_file():
        refs_path = given
        dataset_dir = given.parent
    else:
        if not given.exists():
            raise FileNotFoundError(
                f"{given}: expected a RefCOCO data root (with '{dataset}/'), a dataset folder or a refs file; "
                "no such path"
            )
        dataset_dir = _find_dataset_dir(given, dataset)
        pickled = dataset_dir / f"refs({split_by}).p"
        as_json = dataset_dir / f"refs({split_by}).json"
        if pickled.is_file():
            refs_path = pickled
        elif as_json.is_file():
            refs_path = as_json
        else:
            raise FileNotFoundError(
                f"{pickled}: expected the {dataset} refs for splitBy {split_by!r} here "
                f"(or {as_json.name}); neither exists"
            )
    if refs_path.suffix.lower() not in (".json", *_PICKLE_SUFFIXES):
        raise ValueError(f"{refs_path}: expected a refs file ending in .p/.pkl/.pickle or .json")

    inst_path = Path(instances_file) if instances_file is not None else dataset_dir / "instances.json"
    require_file(inst_path, f"the COCO-style instances.json for {dataset}")
    img_dir = Path(image_dir) if image_dir is not None else _default_image_dir(dataset_dir.parent)
    require_dir(img_dir, "the COCO train2014 image folder")

    refs = _read_refs(refs_path)
    coco: CocoDataset = coco_from_json(
        read_json(inst_path, "COCO-style instances JSON"),
        None,
        img_dir,
        f"{dataset}({split_by})",
        instances_source=inst_path,
    )

    present = sorted({str(r.get("split")) for r in refs if isinstance(r, Mapping)})
    if split is not None and not any(split_matches(p, split) for p in present):
        raise ValueError(f"{refs_path}: no refs with split {split!r}; the file has splits {present}")

    records: list[RefCocoRef] = []
    required = ("ref_id", "ann_id", "image_id", "split", "sentences")
    for i, ref in enumerate(refs):
        if not isinstance(ref, Mapping):
            raise ValueError(f"{refs_path}: expected ref {i} to be a dict; got {describe(ref)}")
        missing = [k for k in required if k not in ref]
        if missing:
            raise ValueError(
                f"{refs_path}: ref {i} (ref_id {ref.get('ref_id')!r}) lacks keys {missing}; has {sorted(map(str, ref))}"
            )
        if split is not None and not split_matches(str(ref["split"]), split):
            continue
        ref_id, ann_id, image_id = int(ref["ref_id"]), int(ref["ann_id"]), int(ref["image_id"])
        if image_id not in coco:
            raise UnresolvedIdError(f"{refs_path}: ref_id {ref_id} refers to image id {image_id}, not in {inst_path}")
        try:
            target = coco.annotation(ann_id)
        except KeyError:
            raise UnresolvedIdError(
                f"{refs_path}: ref_id {ref_id} refers to annotation id {ann_id}, not in {inst_path}"
            ) from None
        if target.image_id != image_id:
            raise ValueError(
                f"{refs_path}: ref_id {ref_id} says image id {image_id} but its annotation {ann_id} "
                f"belongs to image id {target.image_id}"
            )
        sentences, sent_ids = _parse_sentences(ref["sentences"], refs_path, ref_id)
        records.append(
            RefCocoRef(
                ref_id=ref_id,
                dataset=dataset,
                split_by=split_by,
                split=str(ref["split"]),
                image=coco[image_id],
                target=target,
                sentences=sentences,
                sentence_ids=sent_ids,
            )
        )
    logger.info("loaded %s(%s) split=%s: %d refs from %s", dataset, split_by, split, len(records), refs_path)
    return records
