"""Reading, merging and summarising evaluation records (one JSON line per sample x method).

* :func:`read_records` reads one JSONL file; a torn LAST line (a crash mid-write) is dropped
  with a warning, a broken line elsewhere is an error.
* :func:`collect_records` gathers every shard of an output folder plus its merged file,
  deduplicated by ``(task, sample_id, method)`` and sorted (ids in natural order).
* :func:`summarize` computes per (config name, method) means: insertion AUC ↑, deletion
  AUC ↓, highest confidence ↑, pointing game (box, mask) ↑, AMCR ↓ and CSR@10% ↑ (from
  records that carry ``amcr``), forwards and seconds per sample; plus paired win rates
  of a reference method (EAGLE) against each other method on the samples both explained,
  and whether all methods of a sample shared one label map.
* :func:`to_markdown`, :func:`plot_curves` (mean insertion / deletion curves per method,
  each curve resampled to a common x grid before averaging) and :func:`write_outputs`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_text_atomic
from ..store import encode_record, read_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "RECORDS_FILE",
    "SHARD_DIR",
    "CURVE_GRID",
    "collect_records",
    "merge_records",
    "plot_curves",
    "read_records",
    "record_key",
    "resample_curve",
    "summarize",
    "to_markdown",
    "write_outputs",
]

RECORDS_FILE = "records.jsonl"
SHARD_DIR = "shards"
#: The common x grid (revealed / removed area) curves are resampled to before averaging.
CURVE_GRID = np.linspace(0.0, 1.0, 101)
#: AMCR threshold of CSR (method.md §5: CSR@10%).
CSR_THRESHOLD = 0.1

_METRICS = ("insertion_auc", "deletion_auc", "highest_confidence")


def _natural(text: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(text)) if p)


def record_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(task, sample_id, method)``: what makes a record unique."""
    try:
        return (str(record["task"]), str(record["sample_id"]), str(record["method"]))
    except KeyError as exc:
        raise ValueError(f"record lacks key {exc.args[0]!r}; expected 'task', 'sample_id', 'method'") from None


def _sort_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    task, sid, method = record_key(record)
    return (task, _natural(sid), method)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of one JSONL file, in file order (:func:`mllm_attr.store.read_jsonl`: a torn last
    line, the trace of an interrupted write, is dropped with a warning).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line other than the last is not a JSON object (names file and line).
    """
    return read_jsonl(path, what="evaluation records")


def _record_files(output: Path) -> list[Path]:
    files = sorted((output / SHARD_DIR).glob("*.jsonl")) if (output / SHARD_DIR).is_dir() else []
    merged = output / RECORDS_FILE
    if merged.is_file():
        files.append(merged)
    return files


def collect_records(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """All records of one or more output folders / JSONL files, deduplicated and sorted.

    Duplicates (the same ``(task, sample_id, method)`` in two files) keep the first one met
    (shards before the merged file). Sorted by task, sample id (natural order), method.
    """
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for src in sources:
        p = Path(src)
        files = [p] if p.is_file() else _record_files(p)
        for f in files:
            for rec in read_records(f):
                seen.setdefault(record_key(rec), rec)
    return sorted(seen.values(), key=_sort_key)


def merge_records(output: str | os.PathLike) -> Path:
    """Write ``<output>/records.jsonl``: every shard merged, deduplicated, sorted (atomic replace)."""
    out = Path(output)
    records = collect_records(out)
    target = out / RECORDS_FILE
    text = b"".join(encode_record(rec) for rec in records).decode("utf-8")
    return write_text_atomic(target, text, fsync=True)


# --------------------------------------------------------------------------- statistics


def resample_curve(x: Sequence[float], y: Sequence[float], grid: np.ndarray = CURVE_GRID) -> np.ndarray:
    """``float64[len(grid)]``: ``y(x)`` linearly interpolated on ``grid`` (x must be non-decreasing)."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1 or len(xa) < 2:
        raise ValueError(f"expected two 1-D curves of one length >= 2; got shapes {xa.shape} and {ya.shape}")
    return np.interp(grid, xa, ya)


def _mean_sem(values: Sequence[float]) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], dtype=np.float64)
    if v.size == 0:
        return None, None
    sem = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None
    return float(v.mean()), sem


def _group_label(rec: Mapping[str, Any]) -> str:
    return str(rec.get("name") or rec.get("task"))


def summarize(records: Sequence[Mapping[str, Any]], *, reference: str = "eagle") -> dict[str, Any]:
    """Per (config name, method) metrics of a record set.

    Returns:
        ``{"rows": [...], "paired": [...], "label_maps_shared": {name: bool}}``. Each row:
        ``name, task, model, method, n, skipped, insertion_auc, insertion_auc_sem,
        deletion_auc, deletion_auc_sem, highest_confidence, pointing_box, pointing_mask,
        n_pointing, amcr, csr10, n_amcr, forwards, seconds`` (means over explained samples;
        ``None`` where no sample carries the metric). CSR@10% is the share of samples with
        ``amcr <= 0.1`` over ALL samples that carry an ``amcr`` (never-corrected ones have
        AMCR 1.0 and stay in the denominator). ``paired``: for each other method, on the
        samples both explained, how often ``reference`` had the higher insertion AUC / lower
        deletion AUC / a pointing hit where the other missed, and the mean differences.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(_group_label(rec), str(rec["method"]))].append(rec)
    rows = []
    for (name, method), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != reference, kv[0][1])):
        ok = [r for r in recs if r.get("status") == "ok"]
        row: dict[str, Any] = {
            "name": name,
            "task": recs[0].get("task"),
            "model": ((recs[0].get("settings") or {}).get("model") or {}).get("path"),
            "method": method,
            "n": len(ok),
            "skipped": sum(r.get("status") == "skipped" for r in recs),
        }
        for m in _METRICS:
            row[m], row[f"{m}_sem"] = _mean_sem([r.get(m) for r in ok])
        for m in ("pointing_box", "pointing_mask"):
            vals = [float(bool(r[m])) for r in ok if r.get(m) is not None]
            row[m] = float(np.mean(vals)) if vals else None
        row["n_pointing"] = sum(r.get("pointing_box") is not None for r in ok)
        amcr = [float(r["amcr"]) for r in ok if r.get("amcr") is not None]
        row["amcr"] = float(np.mean(amcr)) if amcr else None
        row["csr10"] = float(np.mean([a <= CSR_THRESHOLD + 1e-12 for a in amcr])) if amcr else None
        row["n_amcr"] = len(amcr)
        row["forwards"] = float(np.mean([r["forwards"] for r in ok])) if ok else None
        row["seconds"] = float(np.mean([r["seconds"] for r in ok])) if ok else None
        rows.append(row)

    # Paired comparison against the reference method, and the shared-label-map check.
    by_sample: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for rec in records:
        if rec.get("status") == "ok":
            by_sample[(_group_label(rec), str(rec["sample_id"]))][str(rec["method"])] = rec
    shared: dict[str, bool] = {}
    for (name, _), per_method in by_sample.items():
        digests = {r.get("labels_sha1") for r in per_method.values()}
        shared[name] = shared.get(name, True) and len(digests) == 1
    paired = []
    names = sorted({n for n, _ in groups})
    for name in names:
        others = sorted({m for n, m in groups if n == name and m != reference})
        for other in others:
            pairs = [
                (pm[reference], pm[other])
                for (n, _), pm in by_sample.items()
                if n == name and reference in pm and other in pm
            ]
            if not pairs:
                continue
            d_ins = [a["insertion_auc"] - b["insertion_auc"] for a, b in pairs]
            d_del = [a["deletion_auc"] - b["deletion_auc"] for a, b in pairs]
            pg = [
                (a.get("pointing_mask"), b.get("pointing_mask")) for a, b in pairs if a.get("pointing_mask") is not None
            ]
            paired.append(
                {
                    "name": name,
                    "reference": reference,
                    "other": other,
                    "n": len(pairs),
                    "insertion_win_rate": float(np.mean([d > 0 for d in d_ins])),
                    "insertion_auc_diff": float(np.mean(d_ins)),
                    "deletion_win_rate": float(np.mean([d < 0 for d in d_del])),
                    "deletion_auc_diff": float(np.mean(d_del)),
                    "pointing_mask_diff": float(np.mean([float(a) - float(b) for a, b in pg])) if pg else None,
                }
            )
    return {"rows": rows, "paired": paired, "label_maps_shared": shared, "reference": reference}


def _fmt(value: Any, digits: int = 3, sem: Any = None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.{digits}f}"
        if sem is not None:
            text += f" ± {sem:.{digits}f}"
        return text
    return str(value)


def to_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as markdown tables (metrics, then paired comparisons)."""
    head = (
        "| benchmark | method | n | insertion AUC ↑ | deletion AUC ↓ | highest conf. ↑ | PG box ↑ | PG mask ↑ "
        "| AMCR ↓ | CSR@10% ↑ | forwards / sample | s / sample |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in summary["rows"]:
        n = f"{r['n']}" + (f" (+{r['skipped']} skipped)" if r["skipped"] else "")
        lines.append(
            "| "
            + " | ".join(
                [
                    str(r["name"]),
                    str(r["method"]),
                    n,
                    _fmt(r["insertion_auc"], sem=r["insertion_auc_sem"]),
                    _fmt(r["deletion_auc"], sem=r["deletion_auc_sem"]),
                    _fmt(r["highest_confidence"]),
                    _fmt(r["pointing_box"]),
                    _fmt(r["pointing_mask"]),
                    _fmt(r["amcr"]),
                    _fmt(r["csr10"]),
                    _fmt(r["forwards"], 0),
                    _fmt(r["seconds"], 2),
                ]
            )
            + " |"
        )
    if summary.get("paired"):
        ref = summary.get("reference", "eagle")
        lines += [
            "",
            f"Paired with {ref} on the same samples and label maps (win = {ref} better):",
            "",
            "| benchmark | vs | n | insertion win rate | Δ insertion AUC | deletion win rate | Δ deletion AUC "
            "| Δ PG mask |",
            "|" + "---|" * 8,
        ]
        for p in summary["paired"]:
            lines.append(
                f"| {p['name']} | {p['other']} | {p['n']} | {_fmt(p['insertion_win_rate'], 2)} | "
                f"{p['insertion_auc_diff']:+.3f} | {_fmt(p['deletion_win_rate'], 2)} | {p['deletion_auc_diff']:+.3f} | "
                f"{'–' if p['pointing_mask_diff'] is None else format(p['pointing_mask_diff'], '+.2f')} |"
            )
    bad = [n for n, ok in summary.get("label_maps_shared", {}).items() if not ok]
    if bad:
        lines += ["", f"WARNING: methods did not share one label map per sample in {bad}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def mean_curves(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (name, method): mean insertion / deletion curves on :data:`CURVE_GRID` and ``n``."""
    acc: dict[tuple[str, str], dict[str, list[np.ndarray]]] = defaultdict(lambda: {"ins": [], "del": []})
    for r in records:
        if r.get("status") != "ok" or not r.get("curve_x"):
            continue
        key = (_group_label(r), str(r["method"]))
        acc[key]["ins"].append(resample_curve(r["curve_x"], r["insertion_curve"]))
        acc[key]["del"].append(resample_curve(r["curve_x"], r["deletion_curve"]))
    return {
        k: {
            "x": CURVE_GRID,
            "insertion": np.mean(v["ins"], axis=0),
            "deletion": np.mean(v["del"], axis=0),
            "n": len(v["ins"]),
        }
        for k, v in acc.items()
    }


def plot_curves(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """Write a PNG of the mean insertion (left) and deletion (right) curves per method,
    one row per benchmark (matplotlib Agg canvas; no pyplot state). ``None`` if no curve."""
    curves = mean_curves(records)
    if not curves:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = sorted({n for n, _ in curves})
    fig = Figure(figsize=(10, 3.4 * len(names)), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 2, squeeze=False)
    for row, name in enumerate(names):
        methods = sorted((m for n, m in curves if n == name), key=lambda m: (m != "eagle", m))
        for col, kind in enumerate(("insertion", "deletion")):
            ax = axes[row][col]
            for m in methods:
                c = curves[(name, m)]
                auc = float(np.trapezoid(c[kind], c["x"]))
                ax.plot(c["x"], c[kind], lw=2.2 if m == "eagle" else 1.4, label=f"{m} (AUC {auc:.3f}, n={c['n']})")
            ax.set_xlim(0, 1)
            ax.set_xlabel("revealed area" if kind == "insertion" else "removed area")
            ax.set_ylabel("target probability (token mean)")
            ax.set_title(f"{name}: {kind} ({'higher' if kind == 'insertion' else 'lower'} is better)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out


def write_outputs(
    output: str | os.PathLike,
    *,
    name: str | None = None,
    sources: Sequence[str | os.PathLike] | None = None,
    reference: str = "eagle",
) -> dict[str, Any]:
    """Merge the records of ``output`` (or of ``sources``) and write ``records.jsonl`` (only
    for ``output`` itself), ``summary.json``, ``summary.md`` and ``curves.png`` into ``output``.

    Returns:
        the summary dict, with its markdown under ``"markdown"``.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    if sources is None:
        merge_records(out)
        records = collect_records(out)
    else:
        records = collect_records(sources)
    summary = summarize(records, reference=reference)
    summary["name"] = name
    summary["n_records"] = len(records)
    md = to_markdown(summary)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True, allow_nan=False))
    write_text_atomic(out / "summary.md", md)
    plot = plot_curves(records, out / "curves.png")
    report = write_report_page(summary, records, out / "report.html", title=name)
    summary["markdown"] = md
    summary["plot"] = str(plot) if plot else None
    summary["report"] = str(report)
    return summary


#: columns of the benchmark report's table, in order.
REPORT_COLUMNS = (
    "name",
    "method",
    "n",
    "skipped",
    "insertion_auc",
    "deletion_auc",
    "highest_confidence",
    "pointing_box",
    "pointing_mask",
    "amcr",
    "csr10",
    "forwards",
    "seconds",
)


def write_report_page(
    summary: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """The run's self-contained HTML page (:func:`mllm_attr.report.write_benchmark_report`): the
    summary table, the mean insertion / deletion curves per method, and the settings of the run."""
    from ..report import write_benchmark_report

    rows = [{k: row.get(k) for k in REPORT_COLUMNS} for row in summary.get("rows", [])]
    curves = mean_curves(records)
    several = len({n for n, _ in curves}) > 1
    page_curves = {
        (f"{n}: {m}" if several else m): {"insertion": (c["x"], c["insertion"]), "deletion": (c["x"], c["deletion"])}
        for (n, m), c in sorted(curves.items())
    }
    first = next((r for r in records if r.get("settings")), None)
    settings = dict(first["settings"]) if first else {}
    settings["records"] = len(records)
    return write_benchmark_report(rows, page_curves, path, title=title or "Benchmark report", settings=settings)
