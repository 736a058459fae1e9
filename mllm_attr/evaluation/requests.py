"""Bulk explain: a list of (image, prompt, target) requests explained one by one, resumable.

A requests file is JSON lines, one object per request::

    {"image": "imgs/cat.png", "prompt": "Describe the image.", "target": "cat", "id": "cat-1"}
    {"image": "imgs/dog.png", "prompt": "Is there a dog?", "answer": "No", "max_new_tokens": 4}

Keys: ``image`` (path; a relative path resolves against the requests file's folder),
``prompt``, and optionally ``target`` (a word / phrase, a token index or a list of them, or
``"all"``; default: every token, as ``mllm-attr explain`` does), ``answer`` (a counterfactual
answer, teacher-forced; the target then selects tokens inside it), ``id`` (letters, digits,
``_ - .``; default: the 1-based line number, ``"0007"``) and ``max_new_tokens``. The whole file
is validated before any model work (:func:`load_requests`); the first problem is a
:class:`RequestsError` naming the file and line.

Output (``out_dir``)::

    run.json        settings, requests sha256, versions (a resume must match them)
    records.jsonl   one line per finished request (status "ok" or "error"), mllm_attr.store
    report.html     one page over every "ok" request, rewritten at the end of each run
    <id>/           the request's explanation, exactly as Explanation.save writes it

Resume: rerunning into the same folder with the same requests (sha256) and settings skips every
request already recorded, "ok" or "error" (fix a failed row in the file, and the changed file is
a new run); other requests or settings are refused, listing what differs; ``overwrite`` starts
over, deleting only what a bulk run writes (never a folder holding anything else). Package
versions are stored, and a resume under other versions only warns.

Kill-safety: a request's folder is written atomically (:meth:`Explanation.save`) BEFORE its
record is appended (one fsync-ed line), so a crash in between only means that request is done
again and its folder replaced; a torn last line is cut when the next run opens the file. A
request whose input is wrong (target not in the answer, unreadable image ...) is recorded with
``status: "error"`` and the run goes on; any other exception (out of memory, disk full, Ctrl-C)
stops the run and the rerun starts again at that request.

Command line: ``mllm-attr explain --requests FILE.jsonl --out DIR``.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import write_text_atomic
from ..store import JsonlWriter, encode_record, jsonable, read_jsonl

if TYPE_CHECKING:  # pragma: no cover
    from ..adapters.base import ModelAdapter
    from ..explainer import Explainer
    from ..targets import Target

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
REPORT_FILE = "report.html"
#: Version of the layout of ``run.json`` and of the records.
SCHEMA_VERSION = 1

#: The keys of a request row: required ones first.
REQUIRED_KEYS: tuple[str, ...] = ("image", "prompt")
OPTIONAL_KEYS: tuple[str, ...] = ("target", "answer", "id", "max_new_tokens")
_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_RESERVED_IDS = frozenset({RUN_FILE, RECORDS_FILE, REPORT_FILE})
#: Temporary names left by Explanation.save (``.<id>.tmp-XXXX``, ``.<id>.old-XXXX``) and by
#: atomic file writes (``.<name>.XXXX.tmp``) when a run is killed mid-write.
_TEMP_RE = re.compile(r"\..+\.(tmp-[A-Za-z0-9_]+|old-[A-Za-z0-9_]+|[A-Za-z0-9_]+\.tmp)")
#: Explainer settings that may change between a run and its resume (speed only, not the results).
_FREE_SETTINGS = ("batch_size", "threads")
#: What the records are called in errors.
_WHAT = "bulk-explain records (one JSON object per request)"


class RequestsError(ValueError):
    """A request row that is not valid; the message starts with ``FILE line N:``."""


@dataclass(frozen=True)
class ExplainRequest:
    """One validated request of a requests file (see the module docstring for the keys).

    ``image`` is the path as written in the file, ``image_path`` where it resolved to;
    ``target`` is ``None`` (the default target), a word / phrase / ``"all"``, or token indices.
    """

    id: str
    image: str
    image_path: Path
    prompt: str
    target: str | tuple[int, ...] | None = None
    answer: str | None = None
    max_new_tokens: int | None = None
    line: int = 0

    def target_spec(self, *, include_eos: bool = False) -> Target:
        """The target value the explainer gets, as ``mllm-attr explain`` builds it from its flags:
        no target means every token (of the answer, with ``answer``); ``include_eos`` applies to
        ``"all"`` and the default."""
        from ..targets import AllTokens, Answer, Positions, Word

        if isinstance(self.target, tuple):
            inner: Target = Positions(self.target)
        elif self.target is None or self.target == "all":
            inner = AllTokens(include_eos=include_eos)
        else:
            inner = Word(self.target)
        if self.answer is None:
            return inner
        return Answer(self.answer) if self.target is None else Answer(self.answer, target=inner)

    def to_json(self) -> dict[str, Any]:
        """The request's fields as JSON types (what a record repeats)."""
        target = list(self.target) if isinstance(self.target, tuple) else self.target
        return {
            "id": self.id,
            "line": self.line,
            "image": self.image,
            "image_path": str(self.image_path),
            "prompt": self.prompt,
            "target": target,
            "answer": self.answer,
        }


# --------------------------------------------------------------------------- reading requests


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_row(row: Any, where: str, number: int, base_dir: Path) -> ExplainRequest:
    if not isinstance(row, dict):
        raise RequestsError(f"{where}: expected a JSON object with keys image, prompt, ...; got {_type_name(row)}")
    known = (*REQUIRED_KEYS, *OPTIONAL_KEYS)
    for key in row:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RequestsError(f"{where}: unknown key {key!r}{hint}; expected keys: {', '.join(known)}")
    for key in REQUIRED_KEYS:
        if key not in row:
            raise RequestsError(f"{where}: missing key {key!r}; every request needs {' and '.join(REQUIRED_KEYS)}")
    image, prompt = row["image"], row["prompt"]
    if not isinstance(image, str) or not image.strip():
        raise RequestsError(f"{where}: image must be a non-empty path string; got {_type_name(image)} {image!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestsError(f"{where}: prompt must be a non-empty string; got {_type_name(prompt)} {prompt!r}")
    path = Path(image).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise RequestsError(f"{where}: image file not found: {str(path)!r}")
    if not path.is_file():
        raise RequestsError(f"{where}: image must be a file; {str(path)!r} is not")

    target: str | tuple[int, ...] | None = None
    if "target" in row and row["target"] is not None:
        t = row["target"]
        if isinstance(t, str):
            if not t.strip():
                raise RequestsError(f"{where}: target is an empty string; expected a word or phrase, or 'all'")
            target = t
        elif _is_int(t) or (isinstance(t, list) and t and all(_is_int(i) for i in t)):
            indices = (t,) if _is_int(t) else tuple(t)
            if min(indices) < 0:
                raise RequestsError(f"{where}: target token indices must be >= 0; got {t!r}")
            target = indices
        else:
            raise RequestsError(
                f"{where}: target must be a word or phrase, 'all', a token index or a non-empty list of token "
                f"indices; got {_type_name(t)} {t!r}"
            )
    answer = row.get("answer")
    if answer is not None and (not isinstance(answer, str) or not answer.strip()):
        raise RequestsError(f"{where}: answer must be a non-empty string; got {_type_name(answer)} {answer!r}")
    mnt = row.get("max_new_tokens")
    if mnt is not None and (not _is_int(mnt) or mnt < 1):
        raise RequestsError(f"{where}: max_new_tokens must be an integer >= 1; got {_type_name(mnt)} {mnt!r}")
    rid = row.get("id")
    if rid is None:
        rid = f"{number:04d}"
    if not isinstance(rid, str):
        raise RequestsError(f"{where}: id must be a string (it names the output folder); got {_type_name(rid)} {rid!r}")
    if not _ID_RE.fullmatch(rid) or rid in _RESERVED_IDS:
        raise RequestsError(
            f"{where}: id {rid!r} cannot name an output folder; expected 1-200 letters, digits, '_', '-' or '.', "
            f"not starting with '.' or '-', and none of {sorted(_RESERVED_IDS)}"
        )
    return ExplainRequest(
        id=rid,
        image=image,
        image_path=path.resolve(),
        prompt=prompt,
        target=target,
        answer=answer,
        max_new_tokens=mnt,
        line=number,
    )


def _check_ids(requests: Sequence[ExplainRequest], where: Callable[[int], str]) -> None:
    # Case-insensitively: "A" and "a" would share a folder on macOS / Windows file systems.
    seen: dict[str, ExplainRequest] = {}
    for req in requests:
        other = seen.get(req.id.lower())
        if other is not None:
            same = "the same id" if other.id == req.id else f"id {other.id!r} (they differ only in case)"
            raise RequestsError(
                f"{where(req.line)}: duplicate id {req.id!r}: {where(other.line)} has {same}; ids name the output "
                "folders and must be unique"
            )
        seen[req.id.lower()] = req


def load_requests(
    requests: str | os.PathLike | Iterable[Mapping[str, Any]], *, base_dir: str | os.PathLike | None = None
) -> tuple[list[ExplainRequest], dict[str, Any]]:
    """Read and validate every request, before any model work.

    Args:
        requests: a JSON-lines file (one object per line; blank lines are skipped, a UTF-8 BOM
            and CRLF line ends are accepted), or a list of dicts with the same keys.
        base_dir: where relative image paths resolve (default: the file's folder; for a list,
            the working directory).

    Returns:
        ``(requests, source)``: the requests in order, and a description of where they came from
        (``path``, ``sha256`` of the file's bytes or of the list's canonical JSON, ``n``).

    Raises:
        FileNotFoundError: no such requests file.
        RequestsError: the first bad row (``FILE line N: ...`` / ``requests[N]: ...``): not a JSON
            object, a missing or unknown key, a wrong type, a missing image file, an id that
            cannot name a folder, a duplicate id; or no request at all.
    """
    out: list[ExplainRequest] = []
    if isinstance(requests, (str, os.PathLike)):
        path = Path(requests)
        if not path.is_file():
            what = "a directory" if path.is_dir() else "no such file"
            raise FileNotFoundError(f"requests file {str(path)!r}: expected a JSON-lines file of requests; {what}")
        data = path.read_bytes()
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RequestsError(f"{path}: expected UTF-8 JSON lines; {exc}") from None
        for i, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RequestsError(f"{path} line {i}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            out.append(_check_row(row, f"{path} line {i}", i, base))

        def where(number: int) -> str:
            return f"{path} line {number}"

        name = str(path)
        source = {"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest()}
    else:
        if isinstance(requests, (bytes, Mapping)):
            raise TypeError(f"expected a requests file path or a list of request dicts; got {type(requests).__name__}")
        rows = list(requests)
        base = Path(base_dir) if base_dir is not None else Path.cwd()

        def where(number: int) -> str:
            return f"requests[{number - 1}]"

        for i, row in enumerate(rows, start=1):
            out.append(_check_row(row, where(i), i, base))
        name = "requests"
        canonical = "\n".join(json.dumps(jsonable(r), sort_keys=True) for r in rows)
        source = {"path": None, "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}
    if not out:
        raise RequestsError(f"{name}: no requests; expected one JSON object per line with keys image and prompt")
    _check_ids(out, where)
    source.update({"n": len(out), "base_dir": str(base.resolve())})
    return out, source


# --------------------------------------------------------------------------- the output folder


def _diff(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """``"key: A then, B now"`` for every value that differs; a key the saved side lacks is not
    compared (a setting added by a later version of the package)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(saved, key=str):
            out += _diff(saved[key], now.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == now else [f"{prefix.rstrip('.')}: {saved!r} then, {now!r} now"]


def _is_explanation_dir(path: Path) -> bool:
    from ..explanation import OUTPUT_NAMES

    return path.is_dir() and not path.is_symlink() and all(p.name in OUTPUT_NAMES for p in path.iterdir())


def check_output(
    out_dir: str | os.PathLike,
    *,
    sha256: str,
    command: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> tuple[Path, bool]:
    """May a bulk run with these settings write into ``out_dir``? (No file is changed.)

    An absent or empty folder starts a run; a folder with a ``run.json`` of the same requests
    (``sha256``), ``command`` (when both have one) and ``settings`` (when given) is resumed;
    ``overwrite`` starts it over instead (its earlier output is deleted by the run).

    Returns:
        ``(resolved folder, resume)``.

    Raises:
        FileExistsError: it is a file; or it holds files but no ``run.json`` (not a bulk output);
            or, with ``overwrite``, entries that a bulk run did not write.
        ValueError: its ``run.json`` was written with other requests or settings (the message lists
            what differs), or it is the working directory or a parent of it.
    """
    out = Path(os.path.realpath(os.fspath(out_dir)))
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {str(out)!r} exists and is a file; expected a directory")
    if not out.exists():
        return out, False
    cwd = Path(os.path.realpath(os.getcwd()))
    if out == cwd or out in cwd.parents:
        raise ValueError(
            f"refusing to write into {str(out)!r}: it is the working directory (or a parent of it); "
            "choose a new directory such as ./out"
        )
    if not any(out.iterdir()):
        return out, False
    run_path = out / RUN_FILE
    if not run_path.is_file():
        raise FileExistsError(
            f"output directory {str(out)!r} exists and is not empty, and it has no {RUN_FILE} (it is not the output "
            "of a bulk explain run); choose another output directory"
        )
    if overwrite:
        foreign = _foreign_entries(out)
        if foreign:
            raise FileExistsError(
                f"refusing to overwrite {str(out)!r}: it holds entries that a bulk explain run did not write "
                f"({foreign[:5]}{' ...' if len(foreign) > 5 else ''}); move them or choose another output directory"
            )
        return out, False
    try:
        saved = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{run_path}: could not be read as JSON ({exc}); pass overwrite to start over") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{run_path}: expected a JSON object; got {type(saved).__name__}")
    diffs: list[str] = []
    saved_sha = (saved.get("requests") or {}).get("sha256")
    if saved_sha != sha256:
        diffs.append(f"requests sha256: {saved_sha} then, {sha256} now (the requests changed)")
    if command is not None and saved.get("command") is not None:
        diffs += _diff(saved["command"], jsonable(dict(command)), "option ")
    if settings is not None:
        diffs += _diff(saved.get("settings"), jsonable(dict(settings)), "setting ")
    if diffs:
        raise ValueError(
            f"{run_path}: this output directory was written by a run with other requests or settings "
            f"({'; '.join(diffs[:5])}{' ...' if len(diffs) > 5 else ''}); rerun with the same ones to resume it, "
            "or choose another output directory, or pass --overwrite (overwrite=True) to start over"
        )
    return out, True


def _foreign_entries(out: Path) -> list[str]:
    """Entries of ``out`` that a bulk run does not write (and ``overwrite`` must not delete)."""
    mine = {RUN_FILE, RECORDS_FILE, REPORT_FILE}
    return sorted(
        p.name
        for p in out.iterdir()
        if not (p.name in mine and p.is_file())
        and not _TEMP_RE.fullmatch(p.name)
        and not (_ID_RE.fullmatch(p.name) and _is_explanation_dir(p))
    )


def _clear(out: Path) -> None:
    """Delete an earlier run's output (``overwrite``); :func:`check_output` vetted every entry."""
    for p in out.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    logger.info("%s: deleted the earlier run's output (overwrite)", out)


def _remove_temp_entries(out: Path) -> None:
    for p in out.iterdir():
        if _TEMP_RE.fullmatch(p.name):
            logger.info("%s: removing %s left by an interrupted run", out, p.name)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- running


class RequestRecords(list[dict[str, Any]]):
    """The records of every request (``dict`` s, in request order), plus what this call did.

    Attributes:
        out_dir: the resolved output folder; ``records_path``, ``run_path`` and ``report_path``
            (``None`` when no request is ``ok``) inside it.
        n_ok, n_error: requests finished by THIS call, by status.
        n_skipped: requests already recorded by an earlier run (not redone).
    """

    def __init__(
        self, records: Iterable[dict[str, Any]], *, out_dir: Path, report_path: Path | None, counts: Mapping[str, int]
    ):
        super().__init__(records)
        self.out_dir = out_dir
        self.records_path = out_dir / RECORDS_FILE
        self.run_path = out_dir / RUN_FILE
        self.report_path = report_path
        self.n_ok = int(counts.get("ok", 0))
        self.n_error = int(counts.get("error", 0))
        self.n_skipped = int(counts.get("skipped", 0))

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The records with ``status`` ``"error"`` (from this run or an earlier one)."""
        return [r for r in self if r.get("status") == "error"]


def _fingerprint(explainer: Explainer, adapter: ModelAdapter, include_eos: bool) -> dict[str, Any]:
    """What must not change between a run and its resume."""
    explainer_settings = {k: v for k, v in explainer.settings().items() if k not in _FREE_SETTINGS}
    model = {k: v for k, v in adapter.describe().items() if k != "device"}  # a resume may use another GPU
    return jsonable({"explainer": explainer_settings, "model": model, "include_eos": bool(include_eos)})


def _record(req: ExplainRequest, max_new_tokens: int) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        **req.to_json(),
        "max_new_tokens": max_new_tokens,
        "status": None,
        "error": None,
        "error_type": None,
        "generated_text": None,
        "explained_text": None,
        "counterfactual": None,
        "target_positions": None,
        "target_tokens": None,
        "target_text": None,
        "insertion_auc": None,
        "deletion_auc": None,
        "highest_confidence": None,
        "n_regions": None,
        "forwards": None,
        "seconds": None,
        "dir": None,
        "time": None,
    }


def _run_one(req: ExplainRequest, explainer: Explainer, out: Path, include_eos: bool) -> tuple[dict[str, Any], Any]:
    """Explain one request, save its folder, and return ``(record, explanation or None)``."""
    from ..image import load_image

    t0 = time.perf_counter()
    mnt = req.max_new_tokens or explainer.max_new_tokens
    rec = _record(req, mnt)
    gen = None
    try:
        loaded = load_image(req.image_path)
        gen = explainer.adapter.generate(loaded.array, req.prompt, max_new_tokens=mnt)
        # As single explain: the path when loading noted a conversion, so the notes are recorded.
        image = loaded.array if not loaded.notes else str(req.image_path)
        expl = explainer(image, gen, target=req.target_spec(include_eos=include_eos))
    except (ValueError, TypeError, FileNotFoundError) as exc:  # the request's input; anything else stops the run
        rec.update({"status": "error", "error": str(exc), "error_type": type(exc).__name__})
        if gen is not None:
            rec["generated_text"] = gen.text
        stale = out / req.id
        if _is_explanation_dir(stale):  # left by a crash of an earlier attempt; the record now says error
            shutil.rmtree(stale)
        rec.update({"seconds": time.perf_counter() - t0, "time": _now()})
        logger.warning("request %s (line %d) failed: %s: %s", req.id, req.line, type(exc).__name__, exc)
        return rec, None
    expl.settings["max_new_tokens"] = mnt
    expl.settings["request"] = {"id": req.id, "line": req.line}
    expl.save(out / req.id, overwrite=True)  # atomic; replaces a folder left by a crash before its record
    s = expl.summary()
    g = expl.generation
    rec.update(
        {
            "status": "ok",
            "generated_text": g.generated_text if g.counterfactual else g.text,  # what the model said
            "explained_text": g.text,
            "counterfactual": bool(g.counterfactual),
            "target_positions": s["target_positions"],
            "target_tokens": s["target_tokens"],
            "target_text": s["target_text"],
            "insertion_auc": s["insertion_auc"],
            "deletion_auc": s["deletion_auc"],
            "highest_confidence": s["highest_confidence"],
            "n_regions": s["n_regions"],
            "forwards": s["forwards"],
            "seconds": time.perf_counter() - t0,
            "dir": req.id,
            "time": _now(),
        }
    )
    return rec, expl


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _write_report(out: Path, records: Sequence[Mapping[str, Any]], title: str) -> Path | None:
    from ..explanation import Explanation
    from ..report import write_report

    expls = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        folder = out / str(rec.get("dir"))
        try:
            expls.append(Explanation.load(folder))
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("report: skipping request %s: its folder %s could not be read (%s)", rec["id"], folder, exc)
    if not expls:
        (out / REPORT_FILE).unlink(missing_ok=True)
        logger.warning("%s: no request was explained; no report written", out)
        return None
    return write_report(expls, out / REPORT_FILE, title=title)


def explain_requests(
    adapter: ModelAdapter,
    requests: str | os.PathLike | Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    explainer: Explainer | None = None,
    include_eos: bool = False,
    overwrite: bool = False,
    base_dir: str | os.PathLike | None = None,
    command: Mapping[str, Any] | None = None,
    show_progress: bool = False,
    **explainer_options: Any,
) -> RequestRecords:
    """Explain every request into ``out_dir``: one folder, one record each, one HTML report.

    Rerunning the same call resumes: requests already in ``records.jsonl`` are skipped (neither
    redone nor recorded twice), the others are done; a different set of requests or settings is
    refused (see :func:`check_output`).

    Args:
        adapter: the model (:func:`~mllm_attr.load_adapter`).
        requests: a JSON-lines file or a list of dicts (see :func:`load_requests`; validated
            in full before anything is written).
        out_dir: the output folder (created; see the module docstring for its layout).
        explainer: a ready :class:`~mllm_attr.Explainer` for ``adapter``; or give its options
            (``n_regions=16, search="hierarchical", ...``) as ``explainer_options``.
        include_eos: explain EOS too for the target ``"all"`` and the default target.
        overwrite: delete the earlier output of a bulk run in ``out_dir`` and start over.
        base_dir: where relative image paths resolve (default: the requests file's folder).
        command: the command-line options, stored in ``run.json`` and compared on resume.
        show_progress: a progress bar over the requests.

    Returns:
        the records of every request in request order (:class:`RequestRecords`, a list of
        dicts: the request's fields, ``status`` ``"ok"`` / ``"error"``, ``error``, the generated
        text, explained tokens, AUCs, highest confidence, forwards, seconds and ``dir``).

    Raises:
        RequestsError: a bad request row (nothing is written).
        FileExistsError / ValueError: ``out_dir`` may not be written (:func:`check_output`).

    Example:
        >>> recs = explain_requests(adapter, "requests.jsonl", "bulk_out", n_regions=16)  # doctest: +SKIP
        >>> [(r["id"], r["status"], r["insertion_auc"]) for r in recs]  # doctest: +SKIP
    """
    from ..explainer import Explainer
    from ..explanation import versions

    reqs, source = load_requests(requests, base_dir=base_dir)
    if explainer is None:
        explainer = Explainer(adapter, **explainer_options)
    elif explainer_options:
        raise TypeError(
            f"pass either explainer= or explainer options, not both; got explainer and {sorted(explainer_options)}"
        )
    elif explainer.adapter is not adapter:
        raise ValueError("explainer= was built for another adapter than the one given")
    settings = _fingerprint(explainer, adapter, include_eos)
    out, resume = check_output(
        out_dir, sha256=source["sha256"], command=command, settings=settings, overwrite=overwrite
    )
    if overwrite and out.exists() and any(out.iterdir()):
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / RUN_FILE
    if not resume:
        run = {
            "schema": SCHEMA_VERSION,
            "kind": "mllm_attr.evaluation.requests.explain_requests",
            "requests": source,
            "command": jsonable(dict(command)) if command is not None else None,
            "settings": settings,
            "batch_size": explainer.batch_size,
            "versions": versions(),
            "created": _now(),
        }
        write_text_atomic(run_path, json.dumps(jsonable(run), indent=2, sort_keys=True, allow_nan=False), fsync=True)
    else:
        saved_versions, now_versions = json.loads(run_path.read_text(encoding="utf-8")).get("versions"), versions()
        if saved_versions != now_versions:
            logger.warning("%s: resuming with other versions (%s then, %s now)", out, saved_versions, now_versions)
    _remove_temp_entries(out)

    records_path = out / RECORDS_FILE
    by_id = {r.id for r in reqs}
    counts = {"ok": 0, "error": 0, "skipped": 0}
    from tqdm.auto import tqdm

    with JsonlWriter(records_path) as writer:  # cuts a torn last line left by a killed run
        done: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(records_path, what=_WHAT):
            rid = rec.get("id")
            if rid not in by_id:
                logger.warning("%s: ignoring a record of unknown request id %r", records_path, rid)
            elif rid in done:
                logger.warning("%s: request %r is recorded twice; keeping the first record", records_path, rid)
            else:
                done[rid] = rec
        todo = [r for r in reqs if r.id not in done]
        counts["skipped"] = len(reqs) - len(todo)
        if done:
            logger.info("resuming %s: %d of %d requests already recorded", out, counts["skipped"], len(reqs))
        bar = tqdm(
            total=len(reqs), initial=counts["skipped"], desc="explain", unit="request", disable=not show_progress
        )
        try:
            for req in todo:
                rec, _ = _run_one(req, explainer, out, include_eos)
                writer.append(rec)  # after the folder: a crash in between redoes this request
                done[req.id] = json.loads(encode_record(rec))  # as a later run reads it back
                counts[rec["status"]] += 1
                bar.set_postfix(ok=counts["ok"], error=counts["error"], refresh=False)
                bar.update(1)
        finally:
            bar.close()
    records = [done[r.id] for r in reqs]
    name = Path(source["path"]).name if source["path"] else "requests"
    report = _write_report(out, records, title=f"{name}: {sum(r['status'] == 'ok' for r in records)} explanations")
    logger.info(
        "%s: %d ok, %d error this run, %d already recorded", out, counts["ok"], counts["error"], counts["skipped"]
    )
    return RequestRecords(records, out_dir=out, report_path=report, counts=counts)


__all__ = [
    "ExplainRequest",
    "RequestRecords",
    "RequestsError",
    "check_output",
    "explain_requests",
    "load_requests",
]
