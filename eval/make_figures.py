#!/usr/bin/env python
"""The figures shown in README.md and BENCHMARKS.md, regenerated from the shipped model.

    python eval/make_figures.py                 # -> docs/figures/map_rules.png

``map_rules.png``: three held-out single-object scenes of ``eval/map_rules_benchmark.py``,
the colour word explained with exact greedy on 25 SLIC regions; the ONE ordering painted with
the default ``evidence`` rule and with the research code's ``reference`` rule (README, "How it
works"). One torch thread; about ten seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mllm_attr import Explainer, load_adapter
from mllm_attr.assets import default_model_path
from mllm_attr.data import shapes as S
from mllm_attr.viz import _new_figure, _style, get_cmap, overlay, save_figure


def map_rules_figure(out: Path, scenes: tuple[int, ...] = (3, 13, 0), regions: int = 25) -> Path:
    """Held-out single-object scenes of ``eval/map_rules_benchmark.py`` (same seed and setting)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    adapter = load_adapter(str(default_model_path()))
    with _style():
        fig = _new_figure(9.0, 3.0 * len(scenes))
        axes = fig.subplots(len(scenes), 3, squeeze=False)
        for row, i in enumerate(scenes):
            scene = S.make_scene(S.scene_rng(101, "test", i), split="test", n_objects=1)
            obj = scene.objects[0]
            gen = adapter.generate(scene.image, S.color_question(obj.shape), max_new_tokens=3)
            expl = Explainer(adapter, n_regions=regions)(scene.image, gen, target=0)
            ax = axes[row, 0]
            ax.imshow(scene.image, interpolation="nearest")
            ax.set_title(
                f"scene {i}: {S.color_question(obj.shape)!r}\nanswer {gen.text.strip()!r}, {expl.n_regions} regions",
                fontsize=8,
            )
            for ax, rule in ((axes[row, 1], "evidence"), (axes[row, 2], "reference")):
                m = expl.saliency(rule=rule).astype(np.float64)
                ax.imshow(overlay(scene.image, m), interpolation="nearest")
                ax.set_title(
                    f"{rule}{' (default)' if rule == 'evidence' else ' (research code)'}\n"
                    f"mass on object {m[obj.mask].sum() / m.sum():.0%} · "
                    f"pixels > 0.5: {(m > 0.5).mean():.0%}",
                    fontsize=8,
                )
        for ax in axes.ravel():
            ax.axis("off")
        bar = fig.colorbar(
            ScalarMappable(norm=Normalize(0, 1), cmap=get_cmap()), ax=list(axes[:, 1:].ravel()), shrink=0.6
        )
        bar.set_label("region value", fontsize=8)
    return save_figure(fig, out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/figures", help="output directory (default docs/figures)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    np.random.seed(0)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = map_rules_figure(Path(args.out) / "map_rules.png")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
