"""Benchmark loaders in their public local-file formats, in one namespace.

=============  =====================================  ==========================
benchmark      loader                                 record
=============  =====================================  ==========================
COCO 14 / 17   :func:`load_coco`                      :class:`CocoImage` (+ :class:`CocoObject`)
RefCOCO(+/g)   :func:`load_refcoco`                   :class:`RefCocoRef`
POPE / RePOPE  :func:`load_pope`                      :class:`PopeQuestion`
MMVP           :func:`load_mmvp`, :func:`mmvp_pairs`  :class:`MMVPQuestion`
=============  =====================================  ==========================

Each loader reads its benchmark's files as the benchmark distributes them (MMVP's ``lndex``
header, Python-2 RefCOCO pickles, POPE's CRLF / JSON-array files, RePOPE's gapped ids, COCO
2014 and 2017 files with their ``info`` / ``licenses`` blocks and crowd RLEs); each module's
docstring lists the quirks, ``tests/fixtures/published/`` reproduces them.

All records are frozen dataclasses that store image *paths*; ``record.load_image()``
returns an RGB PIL image. Error conventions shared by every loader:

* missing file / folder → ``FileNotFoundError`` naming the path and what belongs there;
* wrong format → ``ValueError`` naming the file, what was expected and what was found;
* an id that resolves to nothing → :class:`UnresolvedIdError` (a ``KeyError``) naming
  the id; a missing POPE / MMVP image file → :class:`MissingImageError` (both a
  ``KeyError`` and a ``FileNotFoundError``).

:func:`to_hf_dataset` turns a list of records into a :class:`datasets.Dataset` of plain
columns (paths as str, segmentations as JSON strings; no decoded pixels).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .coco import (
    CocoDataset,
    CocoImage,
    CocoObject,
    MissingImageError,
    UnresolvedIdError,
    load_coco,
)
from .masks import decode_segmentation, point_in_box, point_in_mask, segmentation_area
from .mmvp import MMVPQuestion, load_mmvp, mmvp_pairs, parse_mmvp_options
from .pope import PopeQuestion, load_pope
from .refcoco import DataOnlyUnpickler, RefCocoRef, load_data_pickle, load_refcoco

if TYPE_CHECKING:  # datasets is imported lazily: it is slow to import
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "CocoDataset",
    "CocoImage",
    "CocoObject",
    "DataOnlyUnpickler",
    "MMVPQuestion",
    "MissingImageError",
    "PopeQuestion",
    "RefCocoRef",
    "UnresolvedIdError",
    "decode_segmentation",
    "load_coco",
    "load_data_pickle",
    "load_mmvp",
    "load_pope",
    "load_refcoco",
    "mmvp_pairs",
    "parse_mmvp_options",
    "point_in_box",
    "point_in_mask",
    "record_to_row",
    "segmentation_area",
    "to_hf_dataset",
]


def _plain(value: Any, key: str | None = None) -> Any:
    if key == "segmentation":
        return json.dumps(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return record_to_row(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def record_to_row(record: Any) -> dict[str, Any]:
    """A record (any loader's dataclass) as a dict of plain Python values.

    Nested records become dicts, paths become ``str``, tuples become lists and a COCO
    ``segmentation`` becomes its JSON text (its three forms do not share one Arrow type).

    Raises:
        TypeError: ``record`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"expected a benchmark record (a dataclass instance); got {type(record).__name__}")
    return {
        f.name: _plain(getattr(record, f.name), f.name)
        for f in dataclasses.fields(record)
        if not f.name.startswith("_")
    }


def to_hf_dataset(records: Sequence[Any]) -> datasets.Dataset:
    """Build a :class:`datasets.Dataset` with one row per record (no decoded images).

    Columns are the record's fields (see :func:`record_to_row`); image paths are strings,
    so ``dataset.cast_column("image_path", datasets.Image())`` can decode lazily later.
    MMVP ``options`` becomes a struct whose letters absent in a row are ``None``.

    Raises:
        ValueError: ``records`` is empty or mixes record types.
    """
    if not records:
        raise ValueError("expected at least one record to build a dataset from; got none")
    kinds = {type(r).__name__ for r in records}
    if len(kinds) > 1:
        raise ValueError(f"expected records of one type; got {sorted(kinds)}")
    import datasets  # noqa: PLC0415 - slow import, only needed here

    rows = [record_to_row(r) for r in records]
    logger.debug("building a datasets.Dataset of %d %s rows", len(rows), kinds.pop())
    return datasets.Dataset.from_list(rows)
