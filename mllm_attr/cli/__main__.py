"""``python -m mllm_attr.cli``: the same as ``mllm-attr``."""

import sys

from . import main

sys.exit(main())
