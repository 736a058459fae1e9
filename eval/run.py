#!/usr/bin/env python
"""Run an evaluation config: ``python eval/run.py eval/configs/shapes_caption.json [--resume]``.

Scale out over processes / GPUs with accelerate (each process writes its own shard file;
the main process merges them and writes the summary)::

    accelerate launch --multi_gpu --num_processes 2 eval/run.py CONFIG --resume

(``--multi_gpu`` starts the processes with torchrun; on a machine without CUDA they use
the gloo backend on the CPU. ``accelerate launch --cpu`` starts ONE process unless an MPI
launcher is configured.) Same options as ``mllm-attr evaluate``; see ``--help``.
"""

import sys

from mllm_attr.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
