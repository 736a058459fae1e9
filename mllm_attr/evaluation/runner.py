"""The evaluation runner: one config (benchmark x model x methods) -> one JSON line per sample.

Usage (any of)::

    python eval/run.py eval/configs/shapes_caption.json                  # one process
    mllm-attr evaluate eval/configs/shapes_caption.json --resume
    accelerate launch --multi_gpu --num_processes 2 eval/run.py CONFIG   # shards over processes/GPUs

Protocol, per sample (method.md §5): generate the answer once, choose the target tokens
with the task's rule (:mod:`.tasks`), split the image ONCE into a label map, and explain
the target with every configured method on that SAME label map; every method is scored by
one replay protocol (insertion / deletion over the regions, in region-rank order) and by
the pointing game (box and mask) on its own map.

Output folder (``"output"`` in the config)::

    config.json                      the resolved config of the first run (resume checks it)
    shards/records.rank{r}of{n}.jsonl  one JSON line per (sample, method), per process
    records.jsonl                    all shards merged: deduplicated by (task, sample, method), sorted
    summary.json / summary.md / curves.png   (see :mod:`.summary`)

Crash safety: each record is one ``os.write`` of a full line followed by ``fsync``; a
torn last line (a crash mid-write) is detected and dropped when reading and truncated
away before the next append; ``--resume`` skips every (sample, method) already written,
so a resumed run never duplicates nor loses a record. Sharding uses
:meth:`accelerate.PartialState.split_between_processes` over the samples left to do.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_text_atomic
from ..explainer import Explainer, require_fast_path_support
from ..explanation import Explanation, versions
from ..mask import FILLS
from ..metrics import pointing_game
from ..search import SEARCHES, search_option_names
from ..segment import SEGMENTERS, Segmentation, segment
from ..store import JsonlWriter
from ..targets import Positions
from ..types import Generation
from .summary import RECORDS_FILE, SHARD_DIR, collect_records, record_key, write_outputs
from .tasks import Sample, Selection, Task, build_task

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_KEYS",
    "EvalConfig",
    "MapMethod",
    "ShardWriter",
    "load_config",
    "load_model_adapter",
    "run_evaluation",
]

SCHEMA_VERSION = 1

#: Valid keys of each config section, with defaults (``...`` = required).
CONFIG_KEYS: dict[str, Any] = {
    "name": None,
    "task": ...,
    "model": {},
    "protocol": {},
    "methods": ["eagle"],
    "seed": 0,
    "output": ...,
    "show_progress": True,
}
MODEL_KEYS: dict[str, Any] = {
    "path": "default",
    "family": None,
    "dtype": "auto",
    "device_map": None,
    "load_in_4bit": False,
    "load_in_8bit": False,
    "attn_implementation": None,
    "trust_remote_code": False,
}
PROTOCOL_KEYS: dict[str, Any] = {
    "n_regions": 36,
    "segmenter": "slic",
    "segmenter_options": {},
    "fill": "black",
    "batch_size": None,
    "fast_path": "auto",
}
EAGLE_KEYS: dict[str, Any] = {
    "search": "greedy",
    "search_options": {},
    "lambda1": 1.0,
    "lambda2": 1.0,
    "max_forwards": None,
}
#: Config keys whose change between a run and its ``--resume`` is allowed.
RESUMABLE_CHANGES = ("limit", "ids")

#: A saliency-map method: ``(adapter, image, generation, positions, *, seed) -> float32[H, W]``.
MapMethod = Callable[..., np.ndarray]


# --------------------------------------------------------------------------- config


def legacy_protocol(protocol: Any, source: str = "<config>") -> Any:
    """``protocol`` with the pre-0.2 key ``"baseline"`` (the fill of hidden regions) renamed to
    ``"fill"`` (a warning says so); anything else is returned unchanged."""
    if isinstance(protocol, Mapping) and "baseline" in protocol:
        if "fill" in protocol:
            raise ValueError(f"{source}: protocol has both 'fill' and its old name 'baseline'; keep 'fill'")
        logger.warning(
            "%s: protocol.baseline is now protocol.fill (the fill of hidden regions); please rename it", source
        )
        return {("fill" if k == "baseline" else k): v for k, v in protocol.items()}
    return protocol


def _section(name: str, value: Any, valid: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"config section {name!r} must be a JSON object; got {type(value).__name__}")
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in config section {name!r}; valid keys: {sorted(valid)}")
    out = copy.deepcopy(dict(valid))
    out.update(copy.deepcopy(dict(value)))
    return out


def _method_spec(entry: Any, index: int) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        raise ValueError(f"methods[{index}] must be a method name or an object with a 'name'; got {entry!r}")
    spec = dict(entry)
    name = spec.pop("name")
    if name == "eagle":
        spec = _section(f"methods[{index}] (eagle)", spec, EAGLE_KEYS)
        if spec["search"] not in SEARCHES:
            raise ValueError(f"methods[{index}]: unknown search {spec['search']!r}; expected one of {sorted(SEARCHES)}")
        params = search_option_names(spec["search"])
        bad = sorted(set(spec["search_options"]) - set(params))
        if bad:
            raise ValueError(
                f"methods[{index}]: unknown search option(s) {bad} for {spec['search']!r}; valid: {params}"
            )
        return {"name": name, **spec}
    options = spec.pop("options", {})
    if spec:
        raise ValueError(
            f"unknown key(s) {sorted(spec)} in methods[{index}] ({name}); valid keys: ['name', 'options'] "
            "(baseline settings go under 'options')"
        )
    if not isinstance(options, Mapping):
        raise TypeError(f"methods[{index}].options must be a JSON object; got {type(options).__name__}")
    return {"name": name, "options": dict(options)}


@dataclasses.dataclass
class EvalConfig:
    """A validated evaluation config (see :func:`load_config` for the file format).

    Attributes:
        name: a label for tables (default: the task kind).
        task: the task section (``{"kind": ..., **options}``).
        model: model loading options (:data:`MODEL_KEYS`).
        protocol: region protocol shared by all methods (:data:`PROTOCOL_KEYS`).
        methods: one spec per method: ``{"name": "eagle", **EAGLE_KEYS}`` or
            ``{"name": <baseline>, "options": {...}}``.
        seed: base seed; each sample's seed is derived from it and the sample id.
        output: results folder.
        show_progress: tqdm progress bar (with ETA).
    """

    name: str
    task: dict[str, Any]
    model: dict[str, Any]
    protocol: dict[str, Any]
    methods: list[dict[str, Any]]
    seed: int
    output: Path
    show_progress: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<config>") -> EvalConfig:
        """Validate a config dict.

        Raises:
            ValueError / TypeError: unknown keys (the message lists the valid ones), missing
                required keys, wrong types or values.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{source}: expected a JSON object at the top level; got {type(data).__name__}")
        unknown = sorted(set(data) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(CONFIG_KEYS)}")
        missing = [k for k, v in CONFIG_KEYS.items() if v is ... and k not in data]
        if missing:
            raise ValueError(f"{source}: missing required key(s) {missing}; valid keys: {sorted(CONFIG_KEYS)}")
        task = data["task"]
        if not isinstance(task, Mapping) or "kind" not in task:
            raise ValueError(f"{source}: 'task' must be an object with a 'kind'; got {task!r}")
        build_task(task)  # validates kind and options (does not read files)
        model = _section("model", data.get("model", {}), MODEL_KEYS)
        protocol = _section("protocol", legacy_protocol(data.get("protocol", {}), source), PROTOCOL_KEYS)
        n = protocol["n_regions"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"{source}: protocol.n_regions must be an integer >= 2; got {n!r}")
        if protocol["segmenter"] not in SEGMENTERS:
            raise ValueError(f"{source}: protocol.segmenter {protocol['segmenter']!r} is not one of {list(SEGMENTERS)}")
        if protocol["fill"] not in FILLS:
            raise ValueError(f"{source}: protocol.fill {protocol['fill']!r} is not one of {list(FILLS)}")
        bs = protocol["batch_size"]
        if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
            raise ValueError(f"{source}: protocol.batch_size must be an integer >= 1 or null; got {bs!r}")
        fp = protocol["fast_path"]
        if not (isinstance(fp, bool) or fp == "auto"):
            raise ValueError(f'{source}: protocol.fast_path must be "auto", true or false; got {fp!r}')
        methods_raw = data.get("methods", CONFIG_KEYS["methods"])
        if not isinstance(methods_raw, list) or not methods_raw:
            raise ValueError(f"{source}: 'methods' must be a non-empty list; got {methods_raw!r}")
        methods = [_method_spec(m, i) for i, m in enumerate(methods_raw)]
        names = [m["name"] for m in methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{source}: method(s) {dup} listed twice")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{source}: 'seed' must be an integer >= 0; got {seed!r}")
        output = data["output"]
        if not isinstance(output, str) or not output.strip():
            raise ValueError(f"{source}: 'output' must be a folder path; got {output!r}")
        return cls(
            name=str(data.get("name") or task["kind"]),
            task=dict(task),
            model=model,
            protocol=protocol,
            methods=methods,
            seed=int(seed),
            output=Path(output),
            show_progress=bool(data.get("show_progress", True)),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the config (``output`` as a string)."""
        return {
            "name": self.name,
            "task": self.task,
            "model": self.model,
            "protocol": self.protocol,
            "methods": self.methods,
            "seed": self.seed,
            "output": str(self.output),
            "show_progress": self.show_progress,
        }


def load_config(path: str | os.PathLike, **overrides: Any) -> EvalConfig:
    """Read and validate a JSON config file.

    File format (every section optional except ``task`` and ``output``)::

        {
          "name": "shapes-caption",
          "task": {"kind": "coco-caption", "root": "data/shapes", "split": "test", "limit": 25},
          "model": {"path": "default", "dtype": "float32"},
          "protocol": {"n_regions": 25, "segmenter": "slic", "fill": "black", "batch_size": 64,
                       "fast_path": "auto"},
          "methods": ["eagle", "random", {"name": "llava_cam", "options": {"n_samples": 4}},
                      {"name": "eagle", "search": "greedy"}],
          "seed": 0,
          "output": "results/shapes-caption"
        }

    Relative paths are relative to the current working directory. ``overrides`` replace
    top-level keys (``output``, ``methods``...) before validation.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or an invalid config (unknown keys are listed with the valid ones).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: expected an evaluation config (JSON) here; no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: expected an evaluation config in JSON; could not parse it: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object at the top level; got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return EvalConfig.from_dict(data, source=str(p))


# --------------------------------------------------------------------------- records i/o


#: The evaluation's shard writer is the package's one JSON-lines writer (:mod:`mllm_attr.store`).
ShardWriter = JsonlWriter


# --------------------------------------------------------------------------- methods


def run_eagle(
    adapter: Any,
    image: np.ndarray,
    generation: Generation,
    positions: Sequence[int],
    labels: np.ndarray,
    *,
    spec: Mapping[str, Any],
    fill: str,
    batch_size: int,
    seed: int,
    fast_path: str | bool = "auto",
) -> Explanation:
    """EAGLE on a GIVEN label map (so every method of a sample shares it): the
    :class:`~mllm_attr.explainer.Explainer` with ``labels=labels`` and the method's search,
    weights and budget from ``spec``; ``fill`` is the fill of hidden regions."""
    explainer = Explainer(
        adapter,
        labels=labels,
        fill=fill,
        search=spec["search"],
        search_options=dict(spec["search_options"]),
        lambda1=float(spec["lambda1"]),
        lambda2=float(spec["lambda2"]),
        max_forwards=spec["max_forwards"],
        batch_size=batch_size,
        seed=seed,
        fast_path=fast_path,
    )
    return explainer(image, generation, target=Positions(tuple(int(p) for p in positions)))


def resolve_method(spec: Mapping[str, Any], extra_methods: Mapping[str, MapMethod] | None = None) -> MapMethod | None:
    """The map callable of a baseline spec (``None`` for EAGLE).

    Raises:
        ValueError: the name is neither ``"eagle"``, a registered baseline nor an extra method.
    """
    name = spec["name"]
    if name == "eagle":
        return None
    if extra_methods and name in extra_methods:
        fn = extra_methods[name]
        return fn if not spec.get("options") else (lambda *a, **k: fn(*a, **{**spec["options"], **k}))
    from ..baselines import get_baseline

    try:
        return get_baseline(name, **spec.get("options", {}))
    except ValueError as exc:
        also = ["eagle", *sorted(extra_methods or {})]
        raise ValueError(f"method {name!r}: {exc} (other methods: {also})") from None


# --------------------------------------------------------------------------- per sample


def sample_seed(seed: int, task: str, sample_id: str) -> int:
    """A per-sample seed independent of sharding and order: ``crc32(seed:task:id)``."""
    return zlib.crc32(f"{seed}:{task}:{sample_id}".encode()) & 0x7FFFFFFF


def labels_digest(labels: np.ndarray) -> str:
    """SHA-1 of a label map (shape + int32 bytes): proves methods shared one map."""
    h = hashlib.sha1(str(labels.shape).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int32).tobytes())
    return h.hexdigest()


def _pointing(expl: Explanation, selection: Selection) -> tuple[bool | None, bool | None]:
    gt = selection.ground_truth
    if gt is None:
        return None, None
    sal = expl.saliency()
    shape = sal.shape
    return pointing_game(sal, gt.box_mask(shape)), pointing_game(sal, gt.mask(shape))


def _compute_amcr(ctx: _Context, image: np.ndarray, expl: Explanation, sample: Sample) -> dict[str, Any]:
    """AMCR of one wrongly answered yes/no question (method.md §5), by
    :func:`mllm_attr.analysis.yes_no.minimal_correcting_removal`: regions leave from the
    LEAST important end of ``expl.ordering`` and the answer is regenerated until it is correct."""
    from ..analysis.yes_no import minimal_correcting_removal, parse_yes_no

    label = str(sample.info["label"])
    res = minimal_correcting_removal(
        ctx.adapter,
        image,
        sample.prompt,
        expl.ordering,
        expl.labels,
        lambda gen: parse_yes_no(gen.text) == label,
        fill=ctx.config.protocol["fill"],
        schedule=str(ctx.task.options.get("amcr_schedule", "incremental")),
        max_new_tokens=ctx.task.max_new_tokens,
    )
    return {
        "amcr": res.amcr,
        "amcr_detail": {k: v for k, v in res.to_dict().items() if k != "trace"} | {"trace_len": len(res.trace)},
    }


class _Context:
    """Everything one process needs while running (model, task, methods, writer)."""

    def __init__(
        self,
        config: EvalConfig,
        adapter: Any,
        task: Task,
        methods: list[tuple[dict[str, Any], MapMethod | None]],
        writer: ShardWriter,
        process: dict[str, Any],
    ):
        self.config = config
        self.adapter = adapter
        self.task = task
        self.methods = methods
        self.writer = writer
        self.process = process
        self.protocol_name = "mllm_attr.protocol.score_map"
        self.amcr = task.kind == "repope" and bool(task.options.get("amcr", False))
        self.versions = {**versions(), **_extra_versions()}
        self.batch_size = int(config.protocol["batch_size"] or adapter.default_batch_size())


def _extra_versions() -> dict[str, str]:
    out = {}
    for mod in ("accelerate",):
        with contextlib.suppress(Exception):  # an optional package
            out[mod] = str(__import__(mod).__version__)
    return out


def _base_record(ctx: _Context, sample: Sample, spec: Mapping[str, Any], seed: int) -> dict[str, Any]:
    cfg = ctx.config
    return {
        "schema": SCHEMA_VERSION,
        "name": cfg.name,
        "task": sample.task,
        "sample_id": sample.sample_id,
        "method": spec["name"],
        "seed": cfg.seed,
        "sample_seed": seed,
        "prompt": sample.prompt,
        "image": str(sample.image_path),
        "info": dict(sample.info),
        "settings": {
            "method": dict(spec),
            "protocol": {**cfg.protocol, "batch_size": ctx.batch_size, "replay": ctx.protocol_name},
            "model": {**cfg.model, "adapter": ctx.adapter.describe()},
            "task": ctx.task.settings(),
        },
        "versions": ctx.versions,
        "process": ctx.process,
    }


def _explain_one(
    ctx: _Context,
    sample: Sample,
    image: np.ndarray,
    selection: Selection,
    seg: Segmentation,
    spec: Mapping[str, Any],
    fn: MapMethod | None,
    seed: int,
) -> dict[str, Any]:
    proto = ctx.config.protocol
    gen = selection.generation
    positions = list(selection.positions)
    t0 = time.perf_counter()
    if fn is None:
        expl = run_eagle(
            ctx.adapter,
            image,
            gen,
            positions,
            seg.labels,
            spec=spec,
            fill=proto["fill"],
            batch_size=ctx.batch_size,
            seed=seed,
            fast_path=proto["fast_path"],
        )
        method_seconds = time.perf_counter() - t0
    else:
        from ..protocol import score_map

        saliency = np.asarray(fn(ctx.adapter, image, gen, positions, seed=seed), dtype=np.float32)
        method_seconds = time.perf_counter() - t0
        expl = score_map(
            ctx.adapter,
            image,
            gen,
            positions,
            saliency,
            labels=seg.labels,
            n_regions=proto["n_regions"],
            segmenter=proto["segmenter"],
            fill=proto["fill"],
            batch_size=ctx.batch_size,
            method_name=spec["name"],
            settings={"seed": seed, "method_options": dict(spec.get("options", {}))},
            map_seconds=method_seconds,
            fast_path=proto["fast_path"],
        )
    seconds = time.perf_counter() - t0
    box_hit, mask_hit = _pointing(expl, selection)
    x_ins, y_ins = expl.insertion_curve()
    _, y_del = expl.deletion_curve()
    rec: dict[str, Any] = {
        "status": "ok",
        "generated_text": gen.generated_text if gen.counterfactual else gen.text,
        "explained_text": gen.text,
        "counterfactual": gen.counterfactual,
        "target_positions": positions,
        "target_tokens": [gen.tokens[p] for p in positions],
        "target_text": expl.target_text,
        "selection": dict(selection.info),
        "ground_truth": selection.ground_truth.to_json() if selection.ground_truth else None,
        "n_regions": expl.n_regions,
        "n_regions_requested": proto["n_regions"],
        "labels_sha1": labels_digest(seg.labels),
        "insertion_auc": expl.insertion_auc(),
        "deletion_auc": expl.deletion_auc(),
        "highest_confidence": expl.highest_confidence(),
        "p_full": expl.p_full,
        "p_blank": expl.p_blank,
        "pointing_box": box_hit,
        "pointing_mask": mask_hit,
        "curve_x": x_ins,
        "insertion_curve": y_ins,
        "deletion_curve": y_del,
        "ordering": expl.ordering,
        "forwards": int(expl.forwards),
        "method_seconds": method_seconds,
        "seconds": seconds,
        "explanation_settings": expl.settings,
    }
    if ctx.amcr and selection.info.get("correct") is False:
        rec.update(_compute_amcr(ctx, image, expl, sample))
    return rec


def _run_sample(ctx: _Context, sample: Sample, todo: list[tuple[dict[str, Any], MapMethod | None]]) -> None:
    seed = sample_seed(ctx.config.seed, sample.task, sample.sample_id)
    image = sample.load_image()
    generation = ctx.adapter.generate(image, sample.prompt, max_new_tokens=ctx.task.max_new_tokens)
    selection = ctx.task.select(sample, generation, ctx.adapter, image)
    if selection.skipped:
        for spec, _ in todo:
            rec = _base_record(ctx, sample, spec, seed)
            rec.update(
                {
                    "status": "skipped",
                    "reason": selection.skip,
                    "generated_text": generation.text,
                    "selection": dict(selection.info),
                }
            )
            rec["time"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
            ctx.writer.append(rec)
        return
    proto = ctx.config.protocol
    seg = segment(image, int(proto["n_regions"]), proto["segmenter"], **proto["segmenter_options"])
    for spec, fn in todo:
        rec = _base_record(ctx, sample, spec, seed)
        rec.update(_explain_one(ctx, sample, image, selection, seg, spec, fn, seed))
        rec["segmentation"] = {"method": seg.method, "requested": seg.requested, "params": seg.params}
        rec["time"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        ctx.writer.append(rec)


# --------------------------------------------------------------------------- orchestration


def _fingerprint(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a config that must not change between a run and its resume."""
    task = {k: v for k, v in cfg["task"].items() if k not in RESUMABLE_CHANGES}
    return {"task": task, "model": cfg["model"], "protocol": cfg["protocol"], "seed": cfg["seed"]}


def _check_resume(config: EvalConfig, out: Path) -> None:
    saved_path = out / "config.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    if isinstance(saved.get("protocol"), dict):
        # Configs saved before protocol.fast_path existed ran with the default;
        # those saved before the rename call the fill "baseline".
        saved["protocol"] = {("fill" if k == "baseline" else k): v for k, v in saved["protocol"].items()}
        saved["protocol"].setdefault("fast_path", PROTOCOL_KEYS["fast_path"])
    now = json.loads(json.dumps(config.to_json()))
    if _fingerprint(saved) != _fingerprint(now):
        diff = [k for k in ("task", "model", "protocol", "seed") if _fingerprint(saved)[k] != _fingerprint(now)[k]]
        raise ValueError(
            f"{saved_path}: this output folder was written with a different config ({diff} differ); "
            "resume with the same config, or choose another output / pass --overwrite"
        )
    saved_methods = {m["name"]: m for m in saved.get("methods", [])}
    for m in now["methods"]:
        if m["name"] in saved_methods and saved_methods[m["name"]] != m:
            raise ValueError(
                f"{saved_path}: method {m['name']!r} was run with settings {saved_methods[m['name']]} "
                "but the config now "
                f"says {m}; resume with the same settings or choose another output"
            )


def _prepare_output(config: EvalConfig, *, resume: bool, overwrite: bool, is_main: bool) -> None:
    out = config.output
    existing = collect_records(out) if out.exists() else []
    if existing and not resume and not overwrite:
        raise FileExistsError(
            f"{out}: holds {len(existing)} records from an earlier run; pass --resume to continue it or "
            "--overwrite to start over"
        )
    if not is_main:
        return
    if overwrite and out.exists():
        for p in [*(out / SHARD_DIR).glob("*.jsonl"), out / RECORDS_FILE, out / "config.json"]:
            if p.exists():
                p.unlink()
    if resume:
        _check_resume(config, out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if not cfg_path.exists() or overwrite:
        write_text_atomic(cfg_path, json.dumps(config.to_json(), indent=2, sort_keys=True))


def load_model_adapter(config: EvalConfig, state: Any = None) -> Any:
    """Load the config's model (``"default"``: the shipped shapes-LLaVA); under accelerate with
    GPUs each process gets one whole copy on its own device."""
    from ..adapters import load_adapter

    m = config.model
    path = m["path"]
    if path in (None, "", "default"):
        from ..assets import default_model_path

        path = str(default_model_path())
    kwargs: dict[str, Any] = {"dtype": m["dtype"], "load_in_4bit": m["load_in_4bit"], "load_in_8bit": m["load_in_8bit"]}
    device_map = m["device_map"]
    if state is not None and state.num_processes > 1 and state.device.type != "cpu":
        device_map = {"": str(state.device)}  # one whole model per process / GPU
    elif device_map is None and state is not None and state.device.type != "cpu":
        device_map = {"": str(state.device)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if m["attn_implementation"]:
        kwargs["attn_implementation"] = m["attn_implementation"]
    return load_adapter(path, family=m["family"], trust_remote_code=bool(m["trust_remote_code"]), **kwargs)


def _partial_state(timeout_s: float) -> Any:
    """accelerate's process state; CPU-only machines get gloo (``cpu=True``)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=_dt.timedelta(seconds=timeout_s))


def run_evaluation(
    config: EvalConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    adapter: Any = None,
    extra_methods: Mapping[str, MapMethod] | None = None,
    distributed: bool = True,
    barrier_timeout_s: float = 7 * 24 * 3600.0,
) -> dict[str, Any] | None:
    """Run (or resume) an evaluation and write records, merged records and the summary.

    Args:
        config: the validated config.
        resume: continue an earlier run in ``config.output`` (skips finished records).
        overwrite: delete earlier records in ``config.output`` first.
        adapter: a ready :class:`~mllm_attr.adapters.ModelAdapter` (default: load ``config.model``).
        extra_methods: map methods by name in addition to :mod:`mllm_attr.baselines`
            (``(adapter, image, generation, positions, *, seed) -> float32[H, W]``).
        distributed: use ``accelerate.PartialState`` (shards across ``accelerate launch``
            processes); ``False`` runs everything in this process.
        barrier_timeout_s: how long processes wait for each other at the end.

    Returns:
        the summary (see :func:`.summary.summarize`) on the main process, else ``None``.

    Raises:
        FileExistsError: the output holds records and neither ``resume`` nor ``overwrite``.
        ValueError: an unknown method, or ``resume`` with a config that differs from the
            saved one in task / model / protocol / seed / a method's settings.
    """
    if resume and overwrite:
        raise ValueError("choose at most one of resume and overwrite")
    state = _partial_state(barrier_timeout_s) if distributed else None
    rank = state.process_index if state is not None else 0
    world = state.num_processes if state is not None else 1
    is_main = rank == 0

    methods = [(spec, resolve_method(spec, extra_methods)) for spec in config.methods]
    task = build_task(config.task)
    samples = task.samples()
    _prepare_output(config, resume=resume, overwrite=overwrite, is_main=is_main)
    if state is not None:
        state.wait_for_everyone()
    done = {record_key(r) for r in collect_records(config.output)}
    if state is not None:
        state.wait_for_everyone()  # everyone has read the done set before anyone appends

    def todo_of(s: Sample) -> list[tuple[dict[str, Any], MapMethod | None]]:
        return [(spec, fn) for spec, fn in methods if (s.task, s.sample_id, spec["name"]) not in done]

    remaining = [s for s in samples if todo_of(s)]
    if state is not None and world > 1:
        with state.split_between_processes(remaining) as part:
            mine = list(part)
    else:
        mine = remaining
    logger.info(
        "process %d/%d: %d samples in the task, %d left to do, %d assigned here",
        rank,
        world,
        len(samples),
        len(remaining),
        len(mine),
    )
    if mine:
        if adapter is None:
            adapter = load_model_adapter(config, state)
        # fast_path=true on an adapter without one: refuse before any sample is run.
        require_fast_path_support(adapter, config.protocol["fast_path"])
        writer = ShardWriter(config.output / SHARD_DIR / f"records.rank{rank}of{world}.jsonl")
        process = {"index": rank, "count": world, "host": socket.gethostname(), "pid": os.getpid()}
        ctx = _Context(config, adapter, task, methods, writer, process)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(mine),
            desc=f"{config.name} [{rank + 1}/{world}]" if world > 1 else config.name,
            unit="sample",
            position=rank,
            disable=not config.show_progress,
            dynamic_ncols=True,
        )
        try:
            for s in mine:
                _run_sample(ctx, s, todo_of(s))
                bar.update(1)
        finally:
            bar.close()
            writer.close()
    if state is not None:
        state.wait_for_everyone()
    if not is_main:
        return None
    return write_outputs(config.output, name=config.name)
