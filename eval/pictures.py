#!/usr/bin/env python
"""The pictures a reader of the package sees, regenerated from the embedded model.

    python eval/pictures.py                          # -> docs/figures/pictures/
    python eval/pictures.py --out /tmp/pics --no-screenshot

Writes, for the shipped example scene (``mllm_attr.assets.example_image_path``) and the
embedded shapes-llava model, exact greedy on 25 SLIC regions, seed 0, one torch thread:

* ``heatmap.png``: "What color is the circle?", the colour word explained
  (:func:`mllm_attr.viz.save_heatmap`, what ``Explanation.save`` writes);
* ``token_heatmaps.png``: "Describe the image.", every answer token
  (:func:`mllm_attr.viz.plot_token_heatmaps`, the six with the largest image effect);
* ``methods.png``: EAGLE and the baselines (:func:`mllm_attr.baselines.get_baseline`) on the
  colour word, each scored by :func:`mllm_attr.protocol.score_map` on EAGLE's regions
  (:func:`mllm_attr.viz.plot_methods`);
* ``report.html``: both explanations (:func:`mllm_attr.report.write_report`), and
  ``report.png``, a headless Chromium screenshot of it (1200 x 1600; skipped with a note when
  Chromium is missing).

About a minute on one CPU core.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from mllm_attr import Explainer, load_adapter, load_image, viz
from mllm_attr.assets import default_model_path, example_image_path
from mllm_attr.baselines import get_baseline
from mllm_attr.protocol import score_map
from mllm_attr.report import write_report
from mllm_attr.testing.browser import screenshot as browser_screenshot

logger = logging.getLogger("pictures")

SEED = 0
N_REGIONS = 25
COLOUR_PROMPT = "What color is the circle?"
DESCRIBE_PROMPT = "Describe the image."
#: the baselines drawn next to EAGLE, in this order (those that fail on this model are left out, with a note).
BASELINES = ("llava_cam", "tam", "igos_pp", "random", "centre")
DISPLAY = {"llava_cam": "LLaVA-CAM", "tam": "TAM", "igos_pp": "IGOS++", "random": "random", "centre": "centre prior"}


def chromium_screenshot(html: Path, png: Path, *, width: int = 1200, height: int = 1600) -> Path | None:
    """Screenshot ``html`` with headless Chromium (:func:`mllm_attr.testing.browser.screenshot`, the
    flags tests/test_report.py uses, scrollbars hidden); None, with a warning, without Chromium."""
    return browser_screenshot(html.resolve().as_uri(), png, window=(width, height), timeout=180)


def make_pictures(out: Path, *, screenshot: bool = True) -> list[Path]:
    """Render every picture into ``out``; returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    adapter = load_adapter(str(default_model_path()))
    image = load_image(str(example_image_path())).array
    explainer = Explainer(adapter, n_regions=N_REGIONS, seed=SEED)
    written: list[Path] = []

    # 1. one word: the colour of the circle
    gen = adapter.generate(image, COLOUR_PROMPT, max_new_tokens=4)
    colour = explainer(image, gen, target=0)
    colour.settings["method"] = "eagle"
    logger.info("%r -> %r; explained %r", COLOUR_PROMPT, gen.text, colour.target_text)
    written.append(viz.save_heatmap(colour, out / "heatmap.png"))

    # 2. every token of a description
    desc_gen = adapter.generate(image, DESCRIBE_PROMPT)
    description = explainer(image, desc_gen, target="all")
    description.settings["method"] = "eagle"
    fig = viz.plot_token_heatmaps(description, max_tokens=6)
    written.append(viz.save_figure(fig, out / "token_heatmaps.png", dpi=110))

    # 3. EAGLE and the baselines, each replayed on EAGLE's regions by the one protocol
    scored = {"EAGLE": colour}
    for name in BASELINES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                saliency = get_baseline(name)(adapter, image, gen, colour.positions, seed=SEED)
        except Exception as exc:  # noqa: BLE001 - a baseline this model cannot run is left out, said so
            logger.warning("baseline %s skipped: %s: %s", name, type(exc).__name__, exc)
            continue
        scored[DISPLAY[name]] = score_map(
            adapter, image, gen, colour.positions, saliency, labels=colour.labels, method_name=name
        )
    fig = viz.plot_methods(
        image,
        scored,
        ncols=4,
        title=f"Q: {COLOUR_PROMPT}  A: {gen.text.strip()!r}; explained {colour.target_text!r}, "
        f"{colour.n_regions} regions (ins ↑ del ↓: the protocol's AUCs on those regions)",
    )
    written.append(viz.save_figure(fig, out / "methods.png", dpi=110))

    # 4. the HTML report of both explanations, and what a browser shows of it
    report = write_report([colour, description], out / "report.html", title="mllm_attr: the example scene")
    written.append(report)
    if screenshot:
        shot = chromium_screenshot(report, out / "report.png")
        if shot is not None:
            written.append(shot)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/figures/pictures", help="output directory (default docs/figures/pictures)")
    ap.add_argument("--no-screenshot", action="store_true", help="skip the Chromium screenshot of the report")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    torch.set_num_threads(1)
    for path in make_pictures(Path(args.out), screenshot=not args.no_screenshot):
        logger.info("wrote %s (%.0f KB)", path, path.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
