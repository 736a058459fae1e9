"""POPE / RePOPE loader (JSON lines + an image folder).

Each line of a POPE file (e.g. ``coco_pope_random.json``, despite the suffix) is::

    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg",
     "text": "Is there a snowboard in the image?", "label": "yes"}

As published:

* POPE (AoiDragon/POPE ``output/coco/coco_pope_{random,popular,adversarial}.json``):
  JSON lines, 3000 per file, ``question_id`` 1..3000; ``popular`` and ``adversarial`` end
  their lines with CRLF, ``random`` with LF. The SEEM-built A-OKVQA / GQA files
  (``output/seem/{aokvqa,gqa}/*_pope_seem_<setting>.json``) hold one pretty-printed JSON
  array instead; GQA image names are bare ids (``2405722.jpg``).
* RePOPE (YanNeu/RePOPE ``annotations/coco_repope_{random,popular,adversarial}.json``):
  the same keys with corrected labels and the ambiguous questions removed, so
  ``question_id`` has gaps (e.g. 2774 of 1..3000 for ``random``); the repository also
  carries copies of the POPE files (``annotations/coco_pope_<setting>.json``, LF, no final
  newline).

All of these load as they are. A UTF-8 BOM is skipped. Some files also carry
``"category"`` (random / popular / adversarial), recorded when present.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .coco import MissingImageError, PathLike, describe, load_rgb, require_dir, require_file

logger = logging.getLogger(__name__)

__all__ = ["PopeQuestion", "load_pope"]

_REQUIRED = ("question_id", "image", "text", "label")


@dataclass(frozen=True)
class PopeQuestion:
    """One yes/no object-existence question.

    Attributes:
        question_id: the file's ``question_id`` (int when numeric, else str).
        image: the image file name from the file (``"image"`` key).
        image_path: ``<image_dir>/<image>``.
        question: the question text (``"text"`` key).
        label: ``True`` for ``"yes"`` (the object is present), ``False`` for ``"no"``.
        variant: which file it came from (e.g. ``"coco_pope_random"``, ``"repope_random"``).
        category: the line's ``"category"`` field when present, else ``None``.
    """

    question_id: int | str
    image: str
    image_path: Path
    question: str
    label: bool
    variant: str
    category: str | None = None

    @property
    def answer(self) -> str:
        """The ground-truth answer as text, ``"yes"`` or ``"no"``."""
        return "yes" if self.label else "no"

    def load_image(self) -> Image.Image:
        """The image as RGB PIL."""
        return load_rgb(self.image_path)


def _iter_entries(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(location, parsed object)`` from JSONL or a JSON array; location is
    ``"line N"`` (1-based) or ``"entry N"`` (0-based array index)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: expected UTF-8 JSON lines (POPE); could not decode it: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: expected a JSON array of POPE questions; could not parse it: {exc}") from None
        for i, entry in enumerate(data):
            yield f"entry {i}", entry
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}: line {lineno}: expected one JSON object per line (POPE JSONL); could not parse it: {exc}"
            ) from None


def _parse_label(raw: Any, path: Path, where: str, qid: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("yes", "no"):
        return raw.strip().lower() == "yes"
    raise ValueError(f"{path}: {where} (question_id {qid!r}): expected label 'yes' or 'no'; got {raw!r}")


def load_pope(
    path: PathLike,
    image_dir: PathLike,
    variant: str | None = None,
    *,
    check_images: bool = True,
) -> list[PopeQuestion]:
    """Load a POPE or RePOPE question file.

    Args:
        path: the JSONL file (one object per line with ``question_id, image, text, label``).
        image_dir: folder holding the images named in ``"image"`` (COCO val2014 for POPE-COCO).
        variant: a name recorded on each question; default the file's stem.
        check_images: verify that each image file exists.

    Returns:
        :class:`PopeQuestion` records in file order.

    Raises:
        FileNotFoundError: ``path`` or ``image_dir`` does not exist.
        ValueError: a line is not JSON / not an object / lacks a key / has a label other than
            yes/no, or a question_id repeats (messages name the file, line and question_id).
        MissingImageError: (a ``KeyError`` and ``FileNotFoundError``) with ``check_images``,
            a question's image file is missing (names the question_id and the path).
    """
    path = Path(path)
    require_file(path, "a POPE/RePOPE JSONL file with keys 'question_id', 'image', 'text', 'label'")
    img_dir = require_dir(Path(image_dir), "the POPE image folder (e.g. COCO val2014)")
    variant = variant if variant is not None else path.stem

    records: list[PopeQuestion] = []
    seen: set[int | str] = set()
    for where, entry in _iter_entries(path):
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"{path}: {where}: expected a JSON object with keys {list(_REQUIRED)}; got {describe(entry)}"
            )
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            hint = ""
            if missing == ["label"]:
                hint = (
                    " - a question file without labels (e.g. LLaVA's llava_pope_test.jsonl) cannot be "
                    "scored; use the label files coco_pope_<setting>.json (POPE) or "
                    "coco_repope_<setting>.json (RePOPE)"
                )
            raise ValueError(
                f"{path}: {where}: expected keys {list(_REQUIRED)}; missing {missing} "
                f"(got keys {sorted(map(str, entry))}){hint}"
            )
        raw_qid = entry["question_id"]
        qid: int | str = int(raw_qid) if isinstance(raw_qid, int) or str(raw_qid).isdigit() else str(raw_qid)
        if qid in seen:
            raise ValueError(f"{path}: {where}: question_id {qid!r} appears more than once")
        seen.add(qid)
        image_name = str(entry["image"])
        image_path = img_dir / image_name
        if check_images and not image_path.is_file():
            raise MissingImageError(
                f"{path}: question_id {qid!r} refers to image {image_name!r}, but {image_path} does not exist"
            )
        category = entry.get("category")
        records.append(
            PopeQuestion(
                question_id=qid,
                image=image_name,
                image_path=image_path,
                question=str(entry["text"]),
                label=_parse_label(entry["label"], path, where, qid),
                variant=variant,
                category=None if category is None else str(category),
            )
        )
    if not records:
        raise ValueError(f"{path}: expected at least one POPE question; the file holds none")
    logger.info(
        "loaded POPE variant %s: %d questions (%d yes) from %s",
        variant,
        len(records),
        sum(r.label for r in records),
        path,
    )
    return records
