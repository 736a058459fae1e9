"""MMVP loader (``Questions.csv`` + ``MMVP Images/``).

Layout, as published (huggingface.co/datasets/MMVP/MMVP; tsb0601/MMVP README)::

    <root>/Questions.csv        # header: lndex,Question,Options,Correct Answer
    <root>/MMVP Images/1.jpg .. 300.jpg   (or <root>/images/<Index>.jpg)

The published header spells the first column ``lndex`` (a lower-case L, sic; research
code reads ``row['lndex']``); re-exported copies spell it ``Index``. Both are accepted,
as are any case / surrounding-space / BOM variations of the four column names. The file
is read as UTF-8 (a BOM is skipped); a file that is not UTF-8 is read as Windows-1252
(what Excel writes) with a warning.

``Options`` reads like ``"(a) Open (b) Closed"`` and ``Correct Answer`` like ``"(a)"``
(``"a"``, ``"(a) Open"`` and the bare option text ``"Open"`` are accepted too).
Questions come in pairs (1-2, 3-4, ...): the same question asked about two images that
a CLIP encoder sees as near-identical; a model scores a pair only if it gets both right.

MMVP-VLM (huggingface.co/datasets/MMVP/MMVP_VLM: per-pattern image folders, one
statement per image, for CLIP-style models) is a different benchmark and is not read
here; pointing :func:`load_mmvp` at it fails with a message that says so.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .coco import MissingImageError, PathLike, load_rgb

logger = logging.getLogger(__name__)

__all__ = [
    "MMVP_COLUMNS",
    "MMVP_COLUMN_ALIASES",
    "MMVPQuestion",
    "load_mmvp",
    "mmvp_pairs",
    "parse_mmvp_options",
]

MMVP_COLUMNS: tuple[str, ...] = ("Index", "Question", "Options", "Correct Answer")
#: Header spellings accepted for each column (compared case-insensitively, spaces collapsed).
#: ``lndex`` is how the published ``Questions.csv`` spells ``Index``.
MMVP_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "Index": ("index", "lndex"),
    "Question": ("question",),
    "Options": ("options",),
    "Correct Answer": ("correct answer",),
}
IMAGE_FOLDERS: tuple[str, ...] = ("MMVP Images", "images")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: Folder names of the MMVP-VLM benchmark (README: ``MMVP_VLM_Images``; its script: ``MLLM_VLM Images``).
_VLM_IMAGE_FOLDERS: tuple[str, ...] = ("MMVP_VLM_Images", "MLLM_VLM Images", "MMVP_VLM Images")
_CSV_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "cp1252")

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
    marked = _OPTION_MARK.match(raw)  # "(a) Open": the marker followed by that option's text
    if marked:
        letter = marked.group(1).lower()
        rest = raw[marked.end() :].strip()
        if letter in options and rest.lower() == options[letter].strip().lower():
            return letter
        return None
    for letter, value in options.items():  # some copies give the option text instead
        if value.strip().lower() == raw.lower():
            return letter
    return None


def _norm_header(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).lower()


def _map_columns(header: list[str]) -> dict[str, str]:
    """``{canonical column: the header cell that holds it}`` for the columns present."""
    found: dict[str, str] = {}
    for cell in header:
        norm = _norm_header(cell)
        for column, aliases in MMVP_COLUMN_ALIASES.items():
            if column not in found and norm in aliases:
                found[column] = cell
    return found


def _vlm_hint(folder: Path, header: list[str] | None = None) -> str:
    looks_vlm = any((folder / name).is_dir() for name in _VLM_IMAGE_FOLDERS) or any(
        "statement" in _norm_header(h) for h in header or []
    )
    if not looks_vlm:
        return ""
    return (
        " - this looks like the MMVP-VLM benchmark (one statement per image, images in "
        "per-pattern folders), which load_mmvp does not read; it reads the MMVP "
        "multiple-choice benchmark (Questions.csv with lndex/Index, Question, Options, "
        "Correct Answer and 'MMVP Images/')"
    )


def _read_csv(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header cells (stripped) and rows keyed by those cells; UTF-8 (BOM skipped), else cp1252."""
    raw = csv_path.read_bytes()
    for k, encoding in enumerate(_CSV_ENCODINGS):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            if k + 1 < len(_CSV_ENCODINGS):
                continue
            raise ValueError(
                f"{csv_path}: expected a UTF-8 (or Windows-1252) CSV; could not decode it: {exc}"
            ) from None
        if k > 0:
            logger.warning("%s: not valid UTF-8; read it as %s", csv_path, encoding)
        break
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [(h or "").strip() for h in (reader.fieldnames or [])]
        rows = [{(key or "").strip(): (v or "") for key, v in row.items()} for row in reader]
    except csv.Error as exc:
        raise ValueError(f"{csv_path}: expected a CSV file; could not parse it: {exc}") from None
    return header, rows


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
            or the ``Questions.csv`` file itself. The header may spell the first column
            ``lndex`` (as published) or ``Index``; see :data:`MMVP_COLUMN_ALIASES`.
        check_images: require each ``<Index>.jpg`` (``.jpeg``/``.png`` also accepted) to exist;
            without it, missing images get the ``.jpg`` path.

    Returns:
        :class:`MMVPQuestion` records sorted by index.

    Raises:
        FileNotFoundError: ``Questions.csv`` or the image folder is missing.
        ValueError: missing columns (the message lists the expected and the found header),
            a file that is neither UTF-8 nor Windows-1252, a non-integer or repeated Index,
            unparsable options, or a correct answer that is not one of the options (messages
            name file and Index). Pointing it at MMVP-VLM says that this is MMVP-VLM.
        MissingImageError: (a ``KeyError`` and ``FileNotFoundError``) with ``check_images``,
            an Index has no image file.
    """
    given = Path(root)
    csv_path = given if given.is_file() else given / "Questions.csv"
    folder = csv_path.parent
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path}: expected the MMVP Questions.csv (columns lndex/Index, Question, Options, "
            f"Correct Answer) here; no such file{_vlm_hint(folder)}"
        )
    header, raw_rows = _read_csv(csv_path)
    columns = _map_columns(header)
    missing = [c for c in MMVP_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{csv_path}: expected columns {list(MMVP_COLUMNS)} (the published file spells Index "
            f"'lndex'); missing {missing} (got columns {header}){_vlm_hint(folder, header)}"
        )
    image_dir = next((folder / name for name in IMAGE_FOLDERS if (folder / name).is_dir()), None)
    if image_dir is None:
        raise FileNotFoundError(
            f"{folder / IMAGE_FOLDERS[0]}: expected the MMVP image folder with <Index>.jpg files "
            f"(or {folder / IMAGE_FOLDERS[1]}); neither exists{_vlm_hint(folder)}"
        )

    rows = [{c: row.get(columns[c], "") for c in MMVP_COLUMNS} for row in raw_rows]
    records: list[MMVPQuestion] = []
    seen: set[int] = set()
    for rowno, row in enumerate(rows, start=2):  # row 1 is the header
        if not any(v.strip() for v in row.values()):
            continue  # a blank spreadsheet row (",,,")
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
