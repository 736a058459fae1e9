"""Benchmark evaluation: task builders, a resumable sharded runner, POPE in bulk, and summaries.

* :mod:`.tasks`: benchmark samples and the target-token rule of each task
  (coco-caption, coco-object, refcoco, repope, mmvp).
* :mod:`.runner`: config file -> one JSON line per (sample, method), crash-safe and
  resumable (:mod:`mllm_attr.store`), sharded over ``accelerate launch`` processes;
  ``mllm-attr evaluate``.
* :mod:`.pope`: every question of a POPE-style file diagnosed, resumable; ``mllm-attr diagnose``.
* :mod:`.requests`: a JSONL file of (image, prompt, target) requests explained one by one,
  resumable, with one HTML report; ``mllm-attr explain --requests``.
* :mod:`.summary`: merge shards, metric tables (markdown + JSON), mean curve plots.

Example::

    from mllm_attr.evaluation import load_config, run_evaluation
    summary = run_evaluation(load_config("eval/configs/shapes_caption.json"), resume=True)
    print(summary["markdown"])

Names are imported on first use.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("EvalConfig", "ShardWriter", "load_config", "run_evaluation"), ".runner"),
    **dict.fromkeys(("collect_records", "merge_records", "read_records", "to_markdown", "write_outputs"), ".summary"),
    "summarize": ".summary",
    **dict.fromkeys(("diagnose_pope", "summary_path_for"), ".pope"),
    **dict.fromkeys(("ExplainRequest", "RequestRecords", "RequestsError"), ".requests"),
    **dict.fromkeys(("explain_requests", "load_requests"), ".requests"),
    "summarize_pope": ".pope",
    **dict.fromkeys(("TASKS", "GroundTruth", "Sample", "Selection", "Task", "build_task"), ".tasks"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
