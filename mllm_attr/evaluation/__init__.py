"""Benchmark evaluation: task builders, a resumable sharded runner, and summaries.

* :mod:`.tasks`: benchmark samples and the target-token rule of each task
  (coco-caption, coco-object, refcoco, repope, mmvp).
* :mod:`.runner`: config file -> one JSON line per (sample, method), crash-safe and
  resumable, sharded over ``accelerate launch`` processes; ``mllm-attr evaluate``.
* :mod:`.summary`: merge shards, metric tables (markdown + JSON), mean curve plots.

Example::

    from mllm_attr.evaluation import load_config, run_evaluation
    summary = run_evaluation(load_config("eval/configs/shapes_caption.json"), resume=True)
    print(summary["markdown"])
"""

from .runner import EvalConfig, ShardWriter, add_subcommand, load_config, run_evaluation
from .summary import collect_records, merge_records, read_records, summarize, to_markdown, write_outputs
from .tasks import TASKS, GroundTruth, Sample, Selection, Task, build_task

__all__ = [
    "TASKS",
    "EvalConfig",
    "GroundTruth",
    "Sample",
    "Selection",
    "ShardWriter",
    "Task",
    "add_subcommand",
    "build_task",
    "collect_records",
    "load_config",
    "merge_records",
    "read_records",
    "run_evaluation",
    "summarize",
    "to_markdown",
    "write_outputs",
]
