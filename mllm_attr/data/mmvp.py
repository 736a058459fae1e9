"""MMVP loader (``Questions.csv`` + ``MMVP Images/``).

Layout::

    <root>/Questions.csv        # columns: Index, Question, Options, Correct Answer
    <root>/MMVP Images/<Index>.jpg   (or <root>/images/<Index>.jpg)

``Options`` reads like ``"(a) Open (b) Closed"`` and ``Correct Answer`` like ``"(a)"``.
Questions come in pairs (1-2, 3-4, ...): the same question asked about two images that
a CLIP encoder sees as near-identical; a model scores a pair only if it gets both right.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from PIL import Image

from .coco import MissingImageError, PathLike, load_rgb, require_file

logger = logging.getLogger(__name__)

__all__ = ["MMVPQuestion", "load_mmvp", "mmvp_pairs", "parse_mmvp_options"]

MMVP_COLUMNS: tuple[str, ...] = ("Index", "Question", "Options", "Correct Answer")
IMAGE_FOLDERS: tuple[str, ...] = ("MMVP Images", "images")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")

_OPTION_MARK = re.compile(r"\(([A-Za-z])\)")
_LETTER_ONLY = re.compile(r"^\(?\s*([A-Za-z])\s*\)?\.?$")


@dataclass(frozen=True)
class MMVPQuestion:
    """One MMVP multiple-choice question.

    Attributes:
        index: the 1-based ``Index`` (pairs are ``(2k-1, 2k)``).
        image_path: ``<root>/MMVP Images/<index>.jpg`` (or the ``images/`` variant).
        question: the question text.
        options: ``{"a": "Open", "b": "Closed"}`` (lower-case letters, file order);
            excluded from hashing.
        correct_letter: the correct option's letter, lower-case (``"a"``).
        correct_option: the correct option's text (``"Open"``).
    """

    index: int
    image_path: Path
    question: str
    options: Mapping[str, str] = field(hash=False)
    correct_letter: str
    correct_option: str

    @property
    def pair_id(self) -> int:
        """1-based id of the pair this question belongs to (questions 1 and 2 → 1)."""
        return (self.index + 1) // 2

    @property
    def partner_index(self) -> int:
        """Index of the other question of the pair."""
        return self.index + 1 if self.index % 2 else self.index - 1

    def load_image(self) -> Image.Image:
        """The image as RGB PIL."""
        return load_rgb(self.image_path)


def parse_mmvp_options(text: str) -> dict[str, str]:
    """Split ``"(a) Open (b) Closed"`` into ``{"a": "Open", "b": "Closed"}``.

    Raises:
        ValueError: fewer than two ``(x)`` markers, a repeated letter, or an empty option.
    """
    marks = list(_OPTION_MARK.finditer(text))
    if len(marks) < 2:
        raise ValueError(f"expected options like '(a) ... (b) ...'; got {text!r}")
    options: dict[str, str] = {}
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        letter = mark.group(1).lower()
        value = text[mark.end() : end].strip()
        if letter in options:
            raise ValueError(f"option ({letter}) appears twice in {text!r}")
        if not value:
            raise ValueError(f"option ({letter}) is empty in {text!r}")
        options[letter] = value
    return options


def _correct_letter(raw: str, options: Mapping[str, str]) -> str | None:
    raw = raw.strip()
    match = _LETTER_ONLY.match(raw)
    if match:
        letter = match.group(1).lower()
        return letter if letter in options else None
    for letter, value in options.items():  # some copies give the option text instead
        if value.strip().lower() == raw.lower():
            return letter
    return None


def _find_image(folder: Path, index: int) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        cand = folder / f"{index}{suffix}"
        if cand.is_file():
            return cand
    return None


def load_mmvp(root: PathLike, *, check_images: bool = True) -> list[MMVPQuestion]:
    """Load the MMVP benchmark.

    Args:
        root: the MMVP folder (holding ``Questions.csv`` and ``MMVP Images/`` or ``images/``),
            or the ``Questions.csv`` file itself.
        check_images: require each ``<Index>.jpg`` (``.jpeg``/``.png`` also accepted) to exist;
            without it, missing images get the ``.jpg`` path.

    Returns:
        :class:`MMVPQuestion` records sorted by index.

    Raises:
        FileNotFoundError: ``Questions.csv`` or the image folder is missing.
        ValueError: missing columns, a non-integer or repeated Index, unparsable options, or
            a correct answer that is not one of the options (messages name file and Index).
        MissingImageError: (a ``KeyError`` and ``FileNotFoundError``) with ``check_images``,
            an Index has no image file.
    """
    given = Path(root)
    csv_path = given if given.is_file() else given / "Questions.csv"
    folder = csv_path.parent
    require_file(csv_path, "the MMVP Questions.csv (columns Index, Question, Options, Correct Answer)")
    image_dir = next((folder / name for name in IMAGE_FOLDERS if (folder / name).is_dir()), None)
    if image_dir is None:
        raise FileNotFoundError(
            f"{folder / IMAGE_FOLDERS[0]}: expected the MMVP image folder with <Index>.jpg files "
            f"(or {folder / IMAGE_FOLDERS[1]}); neither exists"
        )

    try:
        with csv_path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{csv_path}: expected a UTF-8 CSV; could not read it: {exc}") from None
    missing = [c for c in MMVP_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{csv_path}: expected columns {list(MMVP_COLUMNS)}; missing {missing} (got columns {header})"
        )

    records: list[MMVPQuestion] = []
    seen: set[int] = set()
    for rowno, row in enumerate(rows, start=2):  # row 1 is the header
        raw_index = row["Index"].strip()
        try:
            index = int(raw_index)
        except ValueError:
            raise ValueError(f"{csv_path}: row {rowno}: expected an integer Index; got {raw_index!r}") from None
        if index < 1:
            raise ValueError(f"{csv_path}: row {rowno}: expected a 1-based Index (>= 1); got {index}")
        if index in seen:
            raise ValueError(f"{csv_path}: row {rowno}: Index {index} appears more than once")
        seen.add(index)
        try:
            options = parse_mmvp_options(row["Options"])
        except ValueError as exc:
            raise ValueError(f"{csv_path}: Index {index}: {exc}") from None
        letter = _correct_letter(row["Correct Answer"], options)
        if letter is None:
            raise ValueError(
                f"{csv_path}: Index {index}: expected 'Correct Answer' to name one of the options "
                f"{sorted(options)} (like '(a)'); got {row['Correct Answer']!r}"
            )
        image_path = _find_image(image_dir, index)
        if image_path is None:
            if check_images:
                raise MissingImageError(
                    f"{csv_path}: Index {index} has no image {index}.jpg (or .jpeg/.png) in {image_dir}"
                )
            image_path = image_dir / f"{index}.jpg"
        records.append(
            MMVPQuestion(
                index=index,
                image_path=image_path,
                question=row["Question"].strip(),
                options=options,
                correct_letter=letter,
                correct_option=options[letter],
            )
        )
    if not records:
        raise ValueError(f"{csv_path}: expected at least one question row; the file has none")
    records.sort(key=lambda r: r.index)
    logger.info("loaded MMVP: %d questions (%d pairs) from %s", len(records), len(records) // 2, csv_path)
    return records


def mmvp_pairs(questions: Iterable[MMVPQuestion]) -> list[tuple[MMVPQuestion, MMVPQuestion]]:
    """Group questions into their pairs ``(2k-1, 2k)``, ordered by pair id.

    Raises:
        ValueError: a question's partner is absent (names the index and the missing partner).
    """
    by_index = {q.index: q for q in questions}
    pairs: list[tuple[MMVPQuestion, MMVPQuestion]] = []
    for index in sorted(by_index):
        if index % 2 == 0:
            continue
        first = by_index[index]
        second = by_index.get(first.partner_index)
        if second is None:
            raise ValueError(f"MMVP question {index} has no partner: index {first.partner_index} is missing")
        pairs.append((first, second))
    for index in by_index:
        if index % 2 == 0 and (index - 1) not in by_index:
            raise ValueError(f"MMVP question {index} has no partner: index {index - 1} is missing")
    return pairs
