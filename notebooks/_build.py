"""Write and run the tutorial notebooks from the Python cell lists below.

    python notebooks/_build.py            # rebuild all nine, executed, outputs (figures included) stored
    python notebooks/_build.py 01 03      # only these

The notebooks are generated so that they stay reviewable as plain Python in code review:
edit this file, run it, commit both. Each notebook is executed in a fresh ``python3`` kernel
(one torch thread, a temporary working directory, the embedded default model) and stored with
its outputs, so it renders where people browse code. ``tests/test_notebooks.py`` checks that
the checked-in code cells are this script's, executes every notebook again and fails when a
stored output disagrees with what the code now produces (:func:`compare_outputs`: text after
masking timings, figures pixel by pixel).

Cells are ``("md", text)`` or ``("code", source)``; a code cell that needs a GPU and real
weights is ``("gpu", source)``: it gets the ``requires-gpu`` tag and must guard itself with
``RUN_REAL_MODEL`` so that it does nothing (but print why) where they are absent.
"""

from __future__ import annotations

import base64
import io
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]

SETUP = """\
%matplotlib inline
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a kernel without ipywidgets
import matplotlib.pyplot as plt
import numpy as np

import mllm_attr
from mllm_attr import Explainer, load_adapter, load_image, viz
from mllm_attr.assets import example_image_path
from mllm_attr.report import write_report

from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # no weight-loading bars in the outputs
OUT = "mllm_attr_notebook_out"  # everything the notebook writes goes here
print("mllm_attr", mllm_attr.__version__)"""

LOAD_DEFAULT = """\
# The embedded default model: a small LLaVA-architecture model trained on the "shapes world"
# (coloured shapes; prompts like "What color is the circle?", "Describe the image."), loaded
# offline by name; a hub id ("Qwen/Qwen2.5-VL-3B-Instruct") or a local folder works the same.
adapter = load_adapter("shapes-llava")
image = load_image(example_image_path()).array  # uint8[H, W, 3], RGB
print(type(adapter).__name__, image.shape)"""

QUICKSTART: list[Cell] = [
    (
        "md",
        """\
# Quick start: which image regions made the model say this?

`mllm_attr` explains the tokens a multimodal LLM generated: it splits the image into regions,
searches for the order in which regions matter most for the chosen tokens (the EAGLE objective:
*insight* = the tokens' probability with only those regions shown, plus *necessity* = the drop
when they are removed), and reports the heatmap, insertion/deletion curves and their AUCs.

This notebook runs in seconds on a CPU with the small model shipped inside the package.""",
    ),
    ("code", SETUP),
    ("code", LOAD_DEFAULT),
    (
        "code",
        """\
fig, ax = plt.subplots(figsize=(2.5, 2.5))
ax.imshow(image)
ax.axis("off");""",
    ),
    ("md", "## 1. Generate an answer\nGreedy decoding; every token keeps its text span and its probability."),
    (
        "code",
        """\
gen = adapter.generate(image, "Describe the image.")
print(repr(gen.text))
print(gen.describe_tokens())""",
    ),
    (
        "md",
        """\
## 2. Explain one word
`target` can be a word or phrase of the answer (matched on word boundaries), token indices,
`"all"`, or a counterfactual `Answer("...")`. `n_regions` sets the granularity; exact greedy
costs about `n(n+1)` forward passes, so keep it small on a CPU (or pick a faster `search`).""",
    ),
    (
        "code",
        """\
from mllm_attr.data.shapes import COLOR_NAMES

word = next(w for w in gen.text.split() if w in COLOR_NAMES)  # the first colour word of the caption
explainer = Explainer(adapter, n_regions=16, segmenter="slic", search="greedy")
expl = explainer(image, gen, target=word)
print(f"explained {expl.target_text!r} (tokens {expl.positions}) with {expl.n_regions} regions, "
      f"{expl.forwards} forwards in {expl.seconds:.1f}s")""",
    ),
    (
        "md",
        """\
## 3. Look at it
A result shows itself: as the last line of a cell it renders the map over the greyed image
(bright: most important, the top regions outlined), the explained tokens, the answer and the
numbers; `print(expl)` is one line.""",
    ),
    ("code", "print(expl)\nexpl"),
    (
        "md",
        """\
`expl.plot()` is the same map as a matplotlib figure (to save or to place in your own layout).
The insertion curve (reveal regions in that order on a black image) should rise fast: high
AUC; the deletion curve (remove them from the full image) should fall fast: low AUC.""",
    ),
    (
        "code",
        """\
fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.8), layout="constrained")
expl.plot(ax=axes[0])
viz.plot_curves(expl, axes[1])
plt.show()""",
    ),
    (
        "md",
        """\
The joint map follows the reference rule (each region's value drops by the objective's change
along the ordering). `plot_token_heatmaps` adds, per explained token, the region's own
marginal gain along the ordering (red: adding the region raised the token's insertion score
plus its necessity; blue: lowered it) and that token's curves.""",
    ),
    ("code", "viz.plot_token_heatmaps(expl)"),
    (
        "code",
        """\
s = expl.summary()
for key in ("generated_text", "target_text", "insertion_auc", "deletion_auc", "highest_confidence", "p_full", "p_blank", "forwards"):
    print(f"{key:20s} {s[key]}")""",
    ),
    (
        "md",
        """\
## 4. Save it and write a report
`expl.save(dir)` writes JSON + arrays + a PNG (reload with `Explanation.load`);
`write_report` writes one self-contained HTML page (open it offline, share it).""",
    ),
    (
        "code",
        """\
from mllm_attr import Explanation

saved = expl.save(f"{OUT}/quickstart", overwrite=True)
again = Explanation.load(saved)
assert np.allclose(again.saliency(), expl.saliency())
report = write_report(expl, f"{OUT}/quickstart.html")
print("wrote", saved, "and", report)""",
    ),
    (
        "md",
        """\
Next: `02_word_vs_sentence.ipynb` (explaining many tokens at once), `03_hallucination.ipynb`,
`04_benchmark.ipynb`, `05_real_hub_model.ipynb`.""",
    ),
]

WORD_VS_SENTENCE: list[Cell] = [
    (
        "md",
        """\
# Word-level vs sentence-level explanations

An explanation has one region ordering for all its target tokens (the search maximises the
token-mean objective). Explaining a single word answers "what did *this word* rely on";
explaining the whole sentence (`target="all"`) answers "what did the *answer* rely on", and each
token's own share can still be read off the shared ordering (its marginal gain at every step,
`viz.token_region_gains`).""",
    ),
    ("code", SETUP),
    ("code", LOAD_DEFAULT),
    (
        "code",
        """\
gen = adapter.generate(image, "Describe the image.")
print(repr(gen.text))
explainer = Explainer(adapter, n_regions=16)""",
    ),
    ("md", "## Word level: one explanation per word"),
    (
        "code",
        """\
from mllm_attr.data.shapes import COLOR_NAMES, SHAPES

words = [w for w in gen.text.split() if w in COLOR_NAMES or w in SHAPES][:2]
word_expls = {w: explainer(image, gen, target=w) for w in words}
for w, e in word_expls.items():
    print(f"{w!r:10} tokens {e.positions}  insertion AUC {e.insertion_auc():.3f}  deletion AUC {e.deletion_auc():.3f}  "
          f"forwards {e.forwards}")""",
    ),
    ("md", "## Sentence level: every generated token at once"),
    (
        "code",
        """\
sentence = explainer(image, gen, target="all")
print(f"{len(sentence.positions)} tokens: {sentence.target_tokens}")
print(f"insertion AUC {sentence.insertion_auc():.3f}  deletion AUC {sentence.deletion_auc():.3f}  forwards {sentence.forwards}")""",
    ),
    (
        "md",
        """\
The joint map (left) ranks regions for the whole answer. Each further column is one token:
red regions raised that token's objective when they were added in the joint order, blue ones
lowered it; below each, the token's own insertion/deletion curves along the joint order.""",
    ),
    ("code", "viz.plot_token_heatmaps(sentence, max_tokens=5)"),
    ("md", "Word-level maps next to the sentence-level joint map, with their AUCs:"),
    (
        "code",
        """\
maps = {f"word {w!r}": e.saliency() for w, e in word_expls.items()}
maps["sentence (joint)"] = sentence.saliency()
metrics = {f"word {w!r}": {"ins": e.insertion_auc(), "del": e.deletion_auc()} for w, e in word_expls.items()}
metrics["sentence (joint)"] = {"ins": sentence.insertion_auc(), "del": sentence.deletion_auc()}
viz.plot_methods(image, maps, metrics)""",
    ),
    (
        "md",
        """\
## Language prior or image? (modality)
For every token, `p_blank` (all regions removed) is what the language prior alone gives and
`p_full` what the image adds to it. Tokens are coloured by the resulting label; the number
under each token is the share of its probability that comes from the image.""",
    ),
    (
        "code",
        """\
from mllm_attr.analysis.modality import modality_from_explanation

modality = modality_from_explanation(sentence)
print(modality.table())
viz.render_modality_text(modality.tokens, title="Describe the image.").figure""",
    ),
    (
        "code",
        """\
report = write_report([*word_expls.values(), sentence], f"{OUT}/word_vs_sentence.html", title="Word vs sentence level")
print("wrote", report)""",
    ),
]

HALLUCINATION: list[Cell] = [
    (
        "md",
        """\
# Hallucination diagnosis

The shapes world has a deliberate co-occurrence bias: in training scenes a **star** almost always
comes with a **diamond** (in 95 % of training scenes with a star). Shown a star alone, the model
may answer "yes" to "Is there a diamond in the image?". `mllm_attr.analysis.yes_no.diagnose_yes_no` diagnoses such an answer:

1. it explains the **wrong** answer token (where the model found "evidence" for the error);
2. it explains the **correct** answer ("no") as a counterfactual, teacher-forced target;
3. it removes regions starting from the *least* important end for "no" (the regions that
   pushed towards the wrong answer), regenerating the answer each time, until it becomes
   correct. The removed area at that point is the minimal correcting removal (AMCR; 1.0 if
   it never flips).""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from mllm_attr.analysis.yes_no import diagnose_yes_no
from mllm_attr.data.shapes import CO_OCCURRENCE_BIAS, SHAPES, exist_question, make_scene, scene_rng

adapter = load_adapter("shapes-llava")
anchor, partner = CO_OCCURRENCE_BIAS.anchor, CO_OCCURRENCE_BIAS.partner
print(f"bias in training: {anchor!r} -> {partner!r} (P = {CO_OCCURRENCE_BIAS.p('train')})")""",
    ),
    (
        "md",
        """\
Look for a held-out scene with the anchor but without the partner where the model claims the
partner is there. (A correct answer costs one `generate` call and nothing else.)""",
    ),
    (
        "code",
        """\
explainer = Explainer(adapter, n_regions=16)  # used for both explanations


def find_hallucination(n_scenes=40):
    # first the biased question; then any absent shape (a well-calibrated model may resist the bias)
    for shapes_to_ask in ([partner], [s for s in SHAPES if s != anchor]):
        for i in range(n_scenes):
            scene = make_scene(scene_rng(0, "test", i), split="test", require=[anchor], exclude=[partner])
            for shape in shapes_to_ask:
                if scene.has(shape):
                    continue
                diag = diagnose_yes_no(adapter, scene.image, exist_question(shape), "no", explainer=explainer)
                if not diag.correct:
                    return i, scene, diag
    raise RuntimeError("the model answered every question correctly: nothing to diagnose")


i, scene, diag = find_hallucination()
print(f"scene {i}: objects {[o.name for o in scene.objects]}")
print(f"Q: {diag.question!r}  model: {diag.generation.text!r}  truth: {diag.label!r}")""",
    ),
    ("md", "## What the wrong answer relied on, and the evidence for the correct one"),
    (
        "code",
        """\
wrong, right = diag.wrong_explanation, diag.correct_explanation
print(f"wrong answer token {wrong.target_text!r}: modality label {diag.modality.label!r} "
      f"(p with the image {diag.modality.p_full:.2f}, with a blank image {diag.modality.p_blank:.2f})")
print(f"correct answer {right.target_text!r} (counterfactual): p = {right.p_full[0]:.3f} with the image")
viz.plot_methods(
    scene.image,
    {f"evidence for {wrong.target_text!r}": wrong.saliency(), f"evidence for {right.target_text!r}": right.saliency()},
    {f"evidence for {wrong.target_text!r}": {"ins": wrong.insertion_auc(), "del": wrong.deletion_auc()},
     f"evidence for {right.target_text!r}": {"ins": right.insertion_auc(), "del": right.deletion_auc()}},
)""",
    ),
    ("md", "## The minimal removal that corrects the answer"),
    (
        "code",
        """\
removal = diag.removal
removal_mask = np.isin(right.labels, removal.removed_regions)
print(f"AMCR = {removal.amcr:.3f}: {removal.regions_removed} regions removed, {removal.generate_calls} generate calls; "
      f"answer after removal: {removal.answer_after!r}")
for obj in scene.objects:  # which objects did the correcting removal hide?
    print(f"  removal covers {(removal_mask & obj.mask).sum() / max(obj.mask.sum(), 1):4.0%} of the {obj.name}")
viz.plot_hallucination_panel(
    scene.image, diag.generation.text, right.saliency(), removal.answer_after or "(never corrected)", removal_mask,
    question=diag.question, correct_token=right.target_text, removed_fraction=removal.amcr,
)""",
    ),
    (
        "md",
        """\
Reading the panel: the middle map is the evidence for the correct answer; the right panel is the
smallest removal (from the least important end) after which the model answers correctly. When it
covers the star, the co-occurrence prior that the star triggers caused the hallucination; when it
covers another object, the model mistook that object for the one asked about.""",
    ),
    (
        "code",
        """\
print("wrote", write_report([wrong, right], f"{OUT}/hallucination.html", title="Hallucination diagnosis"))""",
    ),
]

BENCHMARK: list[Cell] = [
    (
        "md",
        """\
# Running a benchmark

The evaluation runner (`mllm_attr.evaluation`, also `mllm-attr evaluate CONFIG` and
`python eval/run.py CONFIG`) explains every sample of a benchmark with every configured method
on the **same** regions, scores each by **one** replay protocol (insertion/deletion over the
regions in the method's rank order) and by the pointing game, and writes one JSON line per
(sample, method), resumable, plus a summary.

Here: a handful of synthetic scenes written in the public COCO format, the `coco-object` task
(explain the first word of the caption that names an object in the image), EAGLE against
TAM, random and centre-prior maps.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from mllm_attr.data.shapes import write_dataset
from mllm_attr.evaluation.runner import EvalConfig, run_evaluation
from mllm_attr.evaluation.summary import collect_records, mean_curves
from mllm_attr.report import write_benchmark_report

adapter = load_adapter("shapes-llava")
paths = write_dataset(f"{OUT}/shapes_data", n_images=4, seed=0, split="test")
print({k: str(v) for k, v in paths.items()})""",
    ),
    ("md", "The config is a plain dict (or a JSON file); unknown keys are errors that list the valid ones."),
    (
        "code",
        """\
config = EvalConfig.from_dict({
    "name": "shapes-objects",
    "task": {"kind": "coco-object", "root": f"{OUT}/shapes_data", "split": "test", "limit": 4},
    "model": {"path": "default"},
    "protocol": {"n_regions": 16, "segmenter": "slic", "fill": "black"},
    "methods": [{"name": "eagle", "search": "greedy"}, "tam", "random", "centre"],
    "output": f"{OUT}/bench",
    "show_progress": False,
})
summary = run_evaluation(config, adapter=adapter, overwrite=True, distributed=False)
print(summary["markdown"])""",
    ),
    (
        "code",
        """\
records = collect_records(config.output)
curves = {method: {"insertion": (c["x"], c["insertion"]), "deletion": (c["x"], c["deletion"])}
          for (name, method), c in mean_curves(records).items()}
viz.plot_mean_curves(curves, title="shapes-objects: mean over samples")""",
    ),
    ("md", "One sample, every method's map on the same image (scored on the same regions):"),
    (
        "code",
        """\
from mllm_attr.baselines import get_baseline

first = next(r for r in records if r["method"] == "eagle" and r["status"] == "ok")
image = load_image(first["image"]).array
gen = adapter.generate(image, first["prompt"])
positions = first["target_positions"]
maps = {"eagle": Explainer(adapter, n_regions=16)(image, gen, target=positions).saliency()}
for name in ("tam", "random", "centre"):
    maps[name] = get_baseline(name)(adapter, image, gen, positions, seed=0)
scores = {r["method"]: {"ins": r["insertion_auc"], "del": r["deletion_auc"]}
          for r in records if r["sample_id"] == first["sample_id"] and r["status"] == "ok"}
example_fig = viz.plot_methods(image, maps, scores, title=f"{first['prompt']} -> {first['generated_text']!r}; explained {first['target_text']!r}")
example_fig""",
    ),
    ("md", "The whole run as one self-contained HTML page:"),
    (
        "code",
        """\
columns = ("method", "n", "skipped", "insertion_auc", "deletion_auc", "highest_confidence", "pointing_box", "pointing_mask",
           "forwards", "seconds")
rows = [{k: r.get(k) for k in columns} for r in summary["rows"]]
path = write_benchmark_report(rows, curves, f"{OUT}/benchmark.html", title="Shapes world: object words",
                              settings=config.to_json(), figures={"one sample": example_fig})
print("wrote", path)""",
    ),
]

#: Whether the real-model cells run: a CUDA GPU and the weights on disk (never downloads).
REAL_MODEL_CHECK = """\
import os
from pathlib import Path

import torch

# A hub id or a local directory; override with the MLLM_ATTR_REAL_MODEL environment variable.
MODEL_ID = os.environ.get("MLLM_ATTR_REAL_MODEL", "Qwen/Qwen2.5-VL-3B-Instruct")


def weights_available(model_id: str) -> bool:
    \"\"\"True for a local model directory, or a hub id whose files are already cached (never downloads).\"\"\"
    if Path(model_id).is_dir():
        return (Path(model_id) / "config.json").is_file()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


RUN_REAL_MODEL = torch.cuda.is_available() and weights_available(MODEL_ID)
print(f"CUDA available: {torch.cuda.is_available()}; weights for {MODEL_ID!r} available: {weights_available(MODEL_ID)}")
print("RUN_REAL_MODEL =", RUN_REAL_MODEL)"""

REAL_MODEL: list[Cell] = [
    (
        "md",
        """\
# Using a real hub model

The same three lines work with real checkpoints (LLaVA, Qwen2-VL, Qwen2.5-VL, ...): pass a hub
id or a local directory to `load_adapter`. Real models need a GPU for explanations to take
minutes rather than hours, and their weights must be on disk (downloaded beforehand, or in the
Hugging Face cache).

**Cells tagged `requires-gpu` run only when `RUN_REAL_MODEL` is True** (a CUDA GPU *and* the
weights are available); otherwise they print that they were skipped, so the notebook always
runs to the end.""",
    ),
    ("code", SETUP),
    ("code", REAL_MODEL_CHECK),
    (
        "gpu",
        """\
# requires-gpu: load the model (bfloat16, spread over the visible GPUs)
if RUN_REAL_MODEL:
    adapter = load_adapter(MODEL_ID, dtype="bfloat16", device_map="auto")
    image = load_image(example_image_path()).array  # or any photo: load_image("photo.jpg").array
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=48)
    print(gen.text)
else:
    print("skipped: needs a CUDA GPU and the weights of", MODEL_ID)""",
    ),
    (
        "md",
        """\
On a real model, exact greedy over 64 regions costs ~4,000 forwards. `search="scan"` plans
about a fifth of that (`search_options={"forward_share": 0.2}`, its default) and matched greedy
sample by sample on the shipped model's held-out scenes (BENCHMARKS.md, "Fast searches");
`hierarchical` takes about 8 % for a whole answer. `max_forwards` caps the budget and
`batch_size` (default: chosen from free GPU memory) sets images per forward.""",
    ),
    (
        "gpu",
        """\
# requires-gpu: explain the whole answer with a budget
if RUN_REAL_MODEL:
    explainer = Explainer(adapter, n_regions=64, search="efficient", max_forwards=2000, show_progress=True)
    expl = explainer(image, gen, target="all")
    print(f"{expl.forwards} forwards in {expl.seconds:.0f}s; insertion AUC {expl.insertion_auc():.3f}, "
          f"deletion AUC {expl.deletion_auc():.3f}")
else:
    print("skipped: needs a CUDA GPU and the weights of", MODEL_ID)""",
    ),
    (
        "gpu",
        """\
# requires-gpu: per-token views and the report
if RUN_REAL_MODEL:
    fig = viz.plot_token_heatmaps(expl, max_tokens=6)
    viz.save_figure(fig, f"{OUT}/real_model_tokens.png")
    print("wrote", write_report(expl, f"{OUT}/real_model.html"))
    display(fig)
else:
    print("skipped: needs a CUDA GPU and the weights of", MODEL_ID)""",
    ),
    (
        "md",
        """\
Memory: `load_in_4bit=True` (bitsandbytes) fits 7B models on ~8 GB GPUs; explanations score
masked copies of one image, so the cost per forward is the model's, not the method's.""",
    ),
]

TEXT_MODELS: list[Cell] = [
    (
        "md",
        """\
# Prompt words: text-only models, and the words of a multimodal prompt

The same insight + necessity objective ranks the words of the PROMPT: a word is hidden by
taking its tokens out of the attention (`text_ablation="mask"`), and the search orders words
(and, with an image, image regions) by how much the explained tokens need them. With a
text-only causal LM (`AutoModelForCausalLM` with a chat template) there is no image at all:
`load_adapter` returns a `TextAdapter` and the features are the prompt words alone.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## 1. A text-only model
A tiny random Qwen2 model built offline (its ranking means nothing; a real checkpoint such as
`Qwen/Qwen2.5-0.5B-Instruct` loads the same way). The answer is a counterfactual one, teacher-forced.""",
    ),
    (
        "code",
        """\
from mllm_attr import Answer
from mllm_attr.analysis import explain_prompt_tokens
from mllm_attr.testing.tiny_models import save_tiny_causal_lm

text_model = load_adapter(str(save_tiny_causal_lm("qwen2", f"{OUT}/tiny-qwen2")))
print(type(text_model).__name__, text_model.family)
attr = explain_prompt_tokens(text_model, prompt="What is the capital of france?",
                             target=Answer("paris is the capital", target="paris"))
print(attr)
print(attr.table())""",
    ),
    ("md", "The result shows itself: word bars in prompt order and the curves over the fraction of words."),
    ("code", "attr.show()"),
    (
        "md",
        """\
## 2. Words and regions together, on the embedded model
With an image, regions and words compete in ONE ordering: does the colour answer come from the
circle's pixels or from the word "circle"?""",
    ),
    ("code", LOAD_DEFAULT),
    (
        "code",
        """\
joint = explain_prompt_tokens(adapter, image, prompt="What color is the circle?", n_regions=12)
print(joint.generation.text, "| features:", joint.n_regions, "regions +", joint.n_words, "words")
print(joint.table(top=6))
print("rank of 'circle' among all features:", joint.rank_of_word("circle"))""",
    ),
    (
        "md",
        """\
## 3. One report for both
`write_report` gives a prompt-word attribution its own section: the prompt with each word
coloured by its score, the region map when there is an image, the curves and the ranking.""",
    ),
    (
        "code",
        """\
path = write_report([joint, attr], f"{OUT}/prompt_words.html")
print(path.name, path.stat().st_size > 10_000)""",
    ),
]

SEVERAL_IMAGES: list[Cell] = [
    (
        "md",
        """\
# Several images in one prompt

With several images in one prompt, the answer can draw on any of them. `explain_multi_image`
segments each image on its own, puts the regions of ALL images in one label space and ranks
them in ONE ordering with the same insight + necessity objective: a candidate shows the kept
regions of every image at once (the others filled), one image entry per image, in order. The
result says which regions matter, and how the attribution splits between the images.

This notebook runs in well under a minute on a CPU with the embedded model.""",
    ),
    ("code", SETUP),
    ("code", LOAD_DEFAULT),
    (
        "md",
        """\
## 1. Two scenes, one answer
The embedded model was trained on one image per prompt; shown two scenes, it describes objects
of both in one caption. The second scene is drawn by the package's scene generator.""",
    ),
    (
        "code",
        """\
from mllm_attr.data.shapes import make_scene, scene_rng

other = make_scene(scene_rng(2, "test", 0)).image
images = [image, other]
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6), layout="constrained")
for i, (ax, im) in enumerate(zip(axes, images)):
    ax.imshow(im)
    ax.set_title(f"image {i + 1}", fontsize=9)
    ax.axis("off")
plt.show()
prompt = "Describe the image."
for i, im in enumerate(images):
    print(f"image {i + 1} alone:", adapter.generate(im, prompt).text)
gen = adapter.generate(images, prompt)  # a list of images: one prompt, one image entry each
print("both images:  ", gen.text)""",
    ),
    (
        "md",
        """\
## 2. Explain a word from each image
"triangle" describes image 1, "cross" image 2 (the shape words: given one, the model guesses
the colour word before it almost without looking). `n_regions` is per image (or one count per
image); exact greedy costs `n(n + 1)` forwards for the `n` regions of all images.""",
    ),
    (
        "code",
        """\
from mllm_attr.analysis import explain_multi_image

attrs = {word: explain_multi_image(adapter, images, gen, target=word, n_regions=8)
         for word in ("triangle", "cross")}
for word, attr in attrs.items():
    print(f"{word!r}: {attr.n_regions} regions ({' + '.join(map(str, attr.n_regions_per_image))}), "
          f"{attr.forwards} forwards, scoring path {attr.settings['multi_image']['scoring_path']!r}")""",
    ),
    (
        "md",
        """\
## 3. How the attribution splits between the images
`image_shares()` gives, per image: `score_share` (its part of the map's mass), `gain_share` (its
part of the objective's positive gains), `top_k_share` (its part of the first regions of the
ordering), `best_rank` (0 = the ordering's first region) and `area` (its share of all pixels:
what a share would be with no preference).""",
    ),
    (
        "code",
        """\
print(f"{'explained':<10}{'image':>6}{'area':>7}{'score':>8}{'gain':>8}{'top-k':>8}{'best rank':>11}")
for word, attr in attrs.items():
    for s in attr.image_shares():
        print(f"{word:<10}{s['image'] + 1:>6}{s['area']:>7.2f}{s['score_share']:>8.2f}{s['gain_share']:>8.2f}"
              f"{s['top_k_share']:>8.2f}{s['best_rank']:>11}")""",
    ),
    (
        "md",
        """\
Each word goes to the image that shows it: about 90 % or more of the map and of the gains. The
top-k share is coarser: for "triangle" the first region (in image 1) recovers the word alone,
and the next two, which happen to lie in image 2, add almost nothing; so read `score_share` and
`gain_share` first, and `top_k_share` when the gains are spread over many regions.""",
    ),
    (
        "md",
        """\
## 4. The maps
`show()` draws one map per image, all on ONE scale (a region's gain relative to the top region
of all images), with the top regions of the joint ordering outlined in whichever image they
lie and each image's share in its title. (`plot()` returns the same figure, to save or place.)""",
    ),
    ("code", 'attrs["cross"].show()'),
    ("code", 'attrs["triangle"].show()'),
    (
        "md",
        """\
The curves run over the fraction of the TOTAL image area (both images' pixels together):""",
    ),
    (
        "code",
        """\
for word, attr in attrs.items():
    print(f"{word!r}: insertion AUC {attr.insertion_auc():.3f} ↑, deletion AUC {attr.deletion_auc():.3f} ↓, "
          f"p(both images) {attr.p_full.mean():.3f}, p(both blank) {attr.p_blank.mean():.3f}")""",
    ),
    (
        "md",
        """\
## 5. The report
`write_report` gives a several-images result its own section: each input image and its map
(one scale) with that image's shares, the curves over the total image area, the share table,
the numbers, settings and versions. `attr.save(dir)` / `MultiImageAttribution.load(dir)` keep it.""",
    ),
    (
        "code",
        """\
path = write_report(list(attrs.values()), f"{OUT}/several_images.html")
print(path.name, path.stat().st_size > 10_000)""",
    ),
]

VIDEO: list[Cell] = [
    (
        "md",
        """\
# Video: which frames, and which regions of them?

`explain_video` explains an answer about a video over frames x regions as ONE feature set: every
frame is segmented on its own, all frames' regions are ranked in one ordering by the insight +
necessity objective, and each candidate goes through the model's own video input (the frames in
temporal patches, one video token per merged patch for Qwen2-VL, Qwen2.5-VL and Qwen3-VL; one
token per pooled 2 x 2 block of each frame for LLaVA-OneVision).

**What runs here.** The shipped model is a LLaVA class that takes no video, and no real
checkpoint can be downloaded on the machines this notebook is executed on, so part 1 (a real
Qwen2.5-VL on a GPU) runs only where the weights and a GPU are present, and parts 2-4 run on a
TINY RANDOM Qwen2.5-VL of the real transformers class: they show what the toolkit does with a
video (loading, the frame strip, frame shares, whole-frame ablation, the report), not what a
trained model sees. The checks that its scores are the model's own are in `tests/test_video.py`.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## 1. A real Qwen2.5-VL (GPU and weights only)
Cells tagged `requires-gpu` run only when `RUN_REAL_MODEL` is True; elsewhere they say so.
`MLLM_ATTR_REAL_MODEL` may name another hub id or a local folder of Qwen2-VL / 2.5-VL / 3-VL or
LLaVA-OneVision.""",
    ),
    ("code", REAL_MODEL_CHECK),
    (
        "gpu",
        """\
# requires-gpu: four frames of a panning scene, which frames carry the answer's words
from mllm_attr import load_video
from mllm_attr.analysis import explain_video

if RUN_REAL_MODEL:
    real = load_adapter(MODEL_ID, dtype="bfloat16", device_map="auto")
    scene = load_image(example_image_path()).array
    video = load_video([np.roll(scene, 12 * k, axis=1) for k in range(4)], fps=1.0)  # or load_video("clip.mp4")
    real_attr = explain_video(real, video, prompt="Describe the video.", n_regions=6, max_new_tokens=24)
    print(real_attr.generation.text)
    real_attr.show()
else:
    print("skipped: needs a CUDA GPU and the weights of", MODEL_ID)""",
    ),
    (
        "md",
        """\
## 2. A video file, and a tiny random Qwen2.5-VL
`load_video` decodes a file with PyAV (the optional extra `mllm_attr[video]`) and samples
`num_frames` frames uniformly over the clip; a list of frames with their `fps` works too. Here a
short clip is written first: a red square crossing a dark field.""",
    ),
    (
        "code",
        """\
import av
from mllm_attr import load_video
from mllm_attr.testing.tiny_models import build_tiny

os.makedirs(OUT, exist_ok=True)
with av.open(f"{OUT}/clip.mp4", "w") as container:
    stream = container.add_stream("mpeg4", rate=6)
    stream.width, stream.height, stream.pix_fmt = 112, 56, "yuv420p"
    stream.options = {"qscale": "1"}
    for k in range(12):
        frame = np.full((56, 112, 3), 30, np.uint8)
        frame[14:42, 4 + 7 * k : 32 + 7 * k] = (220, 40, 40)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)

video = load_video(f"{OUT}/clip.mp4", num_frames=4)
print(video.n_frames, "frames of", video.size, f"at {video.fps:g} fps, times", video.times)
torch.manual_seed(0)
qwen = load_adapter(build_tiny("qwen2_5_vl"))  # TINY and RANDOM: shows the mechanics only
gen = qwen.generate(video, "What moves?", max_new_tokens=3)
print(type(qwen).__name__, "answers", repr(gen.text))""",
    ),
    (
        "md",
        """\
## 3. Frames x regions in one ordering
`n_regions` is per frame (here a 2 x 3 grid of each frame); exact greedy costs `n(n + 1)`
forwards for the `n` regions of all frames. `frame_shares()` says how the attribution splits
between the frames (time, score share, gain share, top-k share, best rank); `show()` draws the
frame strip: each frame's map on ONE scale, the top regions outlined, a bar of every frame's
share under it.""",
    ),
    (
        "code",
        """\
from mllm_attr.analysis import explain_video

attr = explain_video(qwen, video, gen, n_regions=6, segmenter="grid")
print(f"{attr.n_regions} regions, {attr.forwards} forwards, scoring path {attr.settings['multi_image']['scoring_path']!r}")
for s in attr.frame_shares():
    print(f"frame {s['frame'] + 1} at {s['time']:.2f} s: {s['score_share']:.0%} of the map, best rank {s['best_rank']}")""",
    ),
    ("code", "attr.show()"),
    (
        "md",
        """\
## 4. Whole frames, a frame the fill hides, the report
`whole_frames=True` makes one region per frame, the coarse "which frames?" question. A frame
that equals the fill (black) cannot carry anything: hiding it changes no pixel, so its gain is
zero up to floating-point noise, whatever the model (0.0 here).""",
    ),
    (
        "code",
        """\
frames = list(video.frames)
frames[1] = np.zeros_like(frames[1])
dark = load_video(frames, fps=video.fps)
coarse = explain_video(qwen, dark, prompt="What moves?", whole_frames=True, max_new_tokens=3)
print("ordering of the frames:", (coarse.ordering + 1).tolist(), f"({coarse.forwards} forwards)")
print("gain share of the black frame:", coarse.frame_shares()[1]["gain_share"])
path = write_report([attr, coarse], f"{OUT}/video.html")
print(path.name, path.stat().st_size > 10_000)""",
    ),
]

EXPLORER: list[Cell] = [
    (
        "md",
        """\
# The interactive explorer, and the pieces it is made of

`mllm-attr app` (the optional extra `pip install "mllm_attr[app]"`, Gradio) serves a page on
`http://127.0.0.1:7860/` (or the next free port): upload an image, type a prompt, press Generate; the answer comes back
as tokens coloured by modality; click a token to see its map, its curves, its modality label and
its numbers. The page is a thin layer over `mllm_attr.app.Explorer`, which this notebook drives
directly, on the embedded model: what the page shows is exactly what these two calls return.

![the explorer in a browser](../docs/figures/app.png)""",
    ),
    ("code", SETUP),
    ("code", LOAD_DEFAULT),
    (
        "md",
        """\
## 1. Generate: the answer and each token's modality
`Explorer.generate` answers and labels every token with the cheap two-forward modality test
(the full image against the blank one): what the page colours.""",
    ),
    (
        "code",
        """\
from mllm_attr.app import Explorer

explorer = Explorer(adapter, n_regions=16)
answer = explorer.generate(image, "Describe the image.")
print(answer.generation.text)
for token, label in answer.spans():
    print(f"{token!r:>12}  {label}")""",
    ),
    (
        "md",
        """\
## 2. Click a token: its map, curves and modality
`Explorer.explain(answer, position)` is what a click runs: an explanation of that one token (the
page's region count and search), its heatmap and curves as pictures, and its modality with the
numbers behind it.""",
    ),
    (
        "code",
        """\
position = next(p for p in answer.positions if answer.generation.tokens[p].strip() == "diamond")
view = explorer.explain(answer, position)
print(view.summary)
print(view.modality_text)
fig, axes = plt.subplots(1, 2, figsize=(8, 4), layout="constrained")
for ax, picture in zip(axes, (view.map_rgb, view.curves_rgb)):
    ax.imshow(picture)
    ax.axis("off")
plt.show()""",
    ),
    (
        "md",
        """\
## 3. The page itself
`build_app(explorer)` makes the Gradio page around the same explorer (without serving it);
`launch(explorer)` serves it (what `mllm-attr app` runs: local address only, no share link, no
analytics), and `mllm-attr app --model Qwen/Qwen2.5-VL-3B-Instruct` does the same for a real
model. `tests/test_app.py` starts the app and clicks through it in headless Chromium.""",
    ),
    (
        "code",
        """\
from mllm_attr.app import build_app

page = build_app(explorer)
print(type(page).__name__, "with", len(page.blocks), "components")""",
    ),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_word_vs_sentence.ipynb": WORD_VS_SENTENCE,
    "03_hallucination.ipynb": HALLUCINATION,
    "04_benchmark.ipynb": BENCHMARK,
    "05_real_hub_model.ipynb": REAL_MODEL,
    "06_prompt_words_and_text_models.ipynb": TEXT_MODELS,
    "07_several_images.ipynb": SEVERAL_IMAGES,
    "08_video.ipynb": VIDEO,
    "09_explorer.ipynb": EXPLORER,
}


def build(name: str, cells: Sequence[Cell]) -> nbformat.NotebookNode:
    """A notebook without outputs, with stable cell ids (so rebuilding changes nothing)."""
    stem = name.split("_", 1)[0]
    out = []
    for i, (kind, source) in enumerate(cells):
        cid = f"c{stem}-{i:02d}"
        if kind == "md":
            out.append(nbformat.v4.new_markdown_cell(source, id=cid))
        elif kind in ("code", "gpu"):
            cell = nbformat.v4.new_code_cell(source, id=cid)
            if kind == "gpu":
                cell.metadata["tags"] = ["requires-gpu"]
            out.append(cell)
        else:
            raise ValueError(f"unknown cell kind {kind!r} in {name}; expected 'md', 'code' or 'gpu'")
    nb = nbformat.v4.new_notebook(cells=out)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The notebook's source as stored, without outputs (what the sync test compares against)."""
    return nbformat.writes(build(name, NOTEBOOKS[name])) + "\n"


def execute(nb: nbformat.NotebookNode, workdir: Path, *, timeout: int = 600) -> nbformat.NotebookNode:
    """Run ``nb`` in place in a fresh ``python3`` kernel with ``workdir`` as its working directory.

    One torch thread (``OMP_NUM_THREADS=1``: the figures do not depend on it, the time does) and
    no hub access. Timing metadata is not recorded and ``workdir`` is written as ``.`` in the
    outputs, so two runs of unchanged code store the same notebook.
    """
    import copy

    import nbclient

    metadata = copy.deepcopy(nb.metadata)  # the kernel adds its language_info: keep the builder's
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()  # raises CellExecutionError (with the traceback) on the first failing cell
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nb.metadata = metadata
    where = str(workdir)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = out["text"].replace(where, ".")
            for key, value in list(out.get("data", {}).items()):
                if isinstance(value, str) and not key.startswith("image/"):
                    out["data"][key] = value.replace(where, ".")
    return nb


#: Timings in printed text ("12.3s", "0.8 s", "in 4 s") are masked before outputs are compared.
_TIMING = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|sec|seconds)\b")
#: Inline images (base64) inside HTML outputs are compared as images, not as text.
_DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _mask_table_columns(text: str, names: tuple[str, ...] = ("seconds", "time", "s/sample", "s / sample")) -> str:
    """Mask the cells of markdown-table columns named like a timing (``| seconds |``)."""
    lines = text.split("\n")
    masked: list[int] = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("|"):
            cells = line.split("|")
            if any(c.strip().lower() in names for c in cells):
                masked = [j for j, c in enumerate(cells) if c.strip().lower() in names]
            elif masked and len(cells) > max(masked):
                for j in masked:
                    if not set(cells[j].strip()) <= set("-: "):
                        cells[j] = " <t> "
                lines[i] = "|".join(cells)
        else:
            masked = []
    return "\n".join(lines)


def normalise_text(text: str) -> str:
    """Text of an output as compared: timings masked, inline images replaced by a marker."""
    text = _DATA_URI.sub("data:image/png;base64,<img>", text)
    text = re.sub(r"\b0x[0-9a-f]{6,}\b", "0x<addr>", text)
    return _TIMING.sub("<t>s", _mask_table_columns(text))


def _png_pixels(data: str):
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _images_differ(a: str, b: str, *, tol: int = 24, max_fraction: float = 0.002) -> str | None:
    """Why two base64 PNGs differ (size, or more than ``max_fraction`` of pixels off by > ``tol``), else None."""
    import numpy as np

    pa, pb = _png_pixels(a), _png_pixels(b)
    if pa.shape != pb.shape:
        return f"figure size {pa.shape[1]}x{pa.shape[0]} vs {pb.shape[1]}x{pb.shape[0]}"
    off = float(np.mean(np.abs(pa - pb).max(axis=-1) > tol))
    return f"{off:.1%} of the figure's pixels differ" if off > max_fraction else None


def _signature(out: nbformat.NotebookNode) -> tuple[str, dict[str, str], list[str]]:
    """(kind, text by mime type, inline images) of one output, normalised for comparison."""
    kind = out.get("output_type", "")
    texts: dict[str, str] = {}
    images: list[str] = []
    if kind == "stream":
        texts[out.get("name", "stdout")] = normalise_text(out.get("text", ""))
    elif kind == "error":
        texts["error"] = f"{out.get('ename')}: {out.get('evalue')}"
    for mime, value in out.get("data", {}).items():
        if mime == "image/png":
            images.append(value if isinstance(value, str) else "".join(value))
        elif isinstance(value, str):
            images.extend(_DATA_URI.findall(value))
            if mime == "text/plain" and "data" in out and "text/html" in out["data"]:
                continue  # the plain fallback of a rich output: the HTML is compared
            texts[mime] = normalise_text(value)
    return kind, texts, images


def _merged_streams(outputs: Sequence[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """``outputs`` with each run of consecutive stream outputs of one name joined into one: the
    kernel splits a cell's prints into messages by timing, so their number is not the code's."""
    merged: list[nbformat.NotebookNode] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            last is not None
            and out.get("output_type") == "stream"
            and last.get("output_type") == "stream"
            and out.get("name") == last.get("name")
        ):
            merged[-1] = nbformat.from_dict({**last, "text": last.get("text", "") + out.get("text", "")})
        else:
            merged.append(out)
    return merged


def compare_outputs(stored: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """Where the stored outputs disagree with a fresh execution of the same code (empty: they agree).
    Consecutive prints to one stream count as one output (:func:`_merged_streams`)."""
    problems: list[str] = []
    code_s = [c for c in stored.cells if c.cell_type == "code"]
    code_f = [c for c in fresh.cells if c.cell_type == "code"]
    if [c.source for c in code_s] != [c.source for c in code_f]:
        return ["the code cells differ"]
    for cs, cf in zip(code_s, code_f, strict=True):
        where = f"cell {cs.get('id')} ({cs.source.splitlines()[0][:50] if cs.source else ''!r})"
        so, fo = _merged_streams(cs.get("outputs", [])), _merged_streams(cf.get("outputs", []))
        if len(so) != len(fo):
            problems.append(f"{where}: {len(so)} stored outputs, {len(fo)} now")
            continue
        for k, (a, b) in enumerate(zip(so, fo, strict=True)):
            (ka, ta, ia), (kb, tb, ib) = _signature(a), _signature(b)
            if ka != kb or ta != tb:
                diff = next((m for m in sorted(set(ta) | set(tb)) if ta.get(m) != tb.get(m)), ka)
                problems.append(f"{where}, output {k}: {diff} differs")
            elif len(ia) != len(ib):
                problems.append(f"{where}, output {k}: {len(ia)} stored figures, {len(ib)} now")
            else:
                for x, y in zip(ia, ib, strict=True):
                    why = _images_differ(x, y)
                    if why:
                        problems.append(f"{where}, output {k}: {why}")
    return problems


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without outputs or execution counts (its source, as :func:`render` writes it)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def main(names: Sequence[str] = (), out_dir: Path = HERE) -> list[Path]:
    """Build, execute and store the notebooks (all, or those whose name starts with one of ``names``)."""
    written = []
    for name in NOTEBOOKS:
        if names and not any(name.startswith(n) for n in names):
            continue
        nb = build(name, NOTEBOOKS[name])
        with tempfile.TemporaryDirectory(prefix="mllm_attr_nb_") as tmp:
            execute(nb, Path(tmp))
        path = out_dir / name
        text = nbformat.writes(nb) + "\n"
        tmp_path = path.with_suffix(".ipynb.tmp")
        tmp_path.write_text(text, encoding="utf-8")
        os.replace(tmp_path, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(sys.argv[1:]):
        print("wrote", p)
