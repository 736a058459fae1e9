"""Twins of real checkpoints (mllm_attr.testing.twins): the adapter contract at real resolutions.

Each twin keeps what its checkpoint's files define (tokenizer, hub chat template, image-processor
configuration, special-token ids, vocabulary size, generation_config) and shrinks only the
hidden sizes, so the inputs go through the real code paths: a 336 px CLIP view with 576 image
tokens for LLaVA-1.5, ~200 merged patches for Qwen2.5-VL at 340x452, anyres crops for LLaVA-NeXT.
Twins are built once and cached on disk (``MLLM_ATTR_TWIN_CACHE``), then loaded from their
directory exactly as a downloaded checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_attr import load_adapter
from mllm_attr.adapters.hf import GREEDY_GENERATION
from mllm_attr.segment import segment
from mllm_attr.testing.twins import TWIN_FAMILIES, TWINS, twin_dir

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Describe the image."
#: Same criterion as tests/test_adapters_families.py: |p_fast - p_slow| within 2% of the spread
#: of the processor path's own scores over random region subsets.
FAST_REL_TOL = 0.02
#: Full-image score vs generation-time probability, and batched vs one by one.
PROB_TOL = 1e-5
N_REGIONS = 10

#: Per family: image tokens the prompt must hold at the twin's test image size (what the real
#: checkpoint gives at that size), and the pixel_values shape.
EXPECTED = {
    # 340x452 -> smart_resize to 336x448 (multiples of 28) -> 24x32 patches -> 12x16 merged tokens.
    "qwen2_5_vl": {"image_tokens": 192, "pixel_values": (768, 3 * 2 * 14 * 14)},
    "qwen2_vl": {"image_tokens": 192, "pixel_values": (768, 3 * 2 * 14 * 14)},
    # Qwen3-VL: 16 px patches, 32 px per token: 340x452 -> 352x448 -> 11x14 tokens.
    "qwen3_vl": {"image_tokens": 154, "pixel_values": (616, 3 * 2 * 16 * 16)},
    # One 336 px view (shortest edge 336, centre crop): 24x24 patches, CLS dropped.
    "llava": {"image_tokens": 576, "pixel_values": (1, 3, 336, 336)},
    # 300x500 -> best pinpoint 336x672: base view + 2 crops of 336 px.
    "llava_next": {"pixel_values": (1, 3, 3, 336, 336)},
    # 320x640 (2:1) -> a 2x1 grid of 448 px tiles + a thumbnail: 3 x 256 tokens.
    "internvl": {"image_tokens": 768, "pixel_values": (3, 3, 448, 448)},
    # 300x500 -> best pinpoint 384x768: base view (729 tokens) + a 1x2 grid of 384 px crops
    # (27 x 54 features) unpadded to the image's aspect, with image_newline tokens: 1998.
    "llava_onevision": {"image_tokens": 1998, "pixel_values": (1, 3, 3, 384, 384)},
    # 400x800 -> longest edge 1456 (728x1456) -> a 2x4 grid of 364 px tiles + the global image:
    # 9 x 169 tokens (26x26 patches, pixel shuffle 2).
    "idefics3": {"image_tokens": 1521, "pixel_values": (1, 9, 3, 364, 364)},
    # SmolVLM: 400x800 -> longest edge 2048 (1024x2048) -> 2x4 tiles of 512 px + global: 9 x 64.
    "smolvlm": {"image_tokens": 576, "pixel_values": (1, 9, 3, 512, 512)},
    # PaliGemma: one 224 px view (resized, not cropped): 16x16 patches.
    "paligemma": {"image_tokens": 256, "pixel_values": (1, 3, 224, 224)},
    # Gemma 3: one 896 px view (600x800 resized, pan-and-scan off): 64x64 patches pooled to 16x16.
    "gemma3": {"image_tokens": 256, "pixel_values": (1, 3, 896, 896)},
}

#: Families whose contract test is heavy on one CPU thread (many image tokens): marked slow.
HEAVY = {"internvl", "llava_next", "smolvlm"}


def _scene(h: int, w: int) -> np.ndarray:
    """A non-square test scene: textured background, a red rectangle, a blue disc (no black pixel)."""
    rng = np.random.default_rng(0)
    img = (rng.random((h, w, 3)) * 60 + 100).astype(np.uint8)
    img[h // 6 : h // 2, w // 5 : w // 2] = (210, 40, 40)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - 0.6 * h) ** 2 + (xx - 0.72 * w) ** 2 < (0.2 * h) ** 2] = (40, 60, 210)
    return img


@pytest.fixture(
    scope="module",
    params=[pytest.param(f, marks=pytest.mark.slow) if f in HEAVY else f for f in TWIN_FAMILIES],
)
def twin(request):
    family = request.param
    torch.manual_seed(0)
    path = twin_dir(family)
    adapter = load_adapter(path)
    image = _scene(*TWINS[family].image_hw)
    gen = adapter.generate(image, PROMPT, max_new_tokens=4)
    return family, path, adapter, image, gen


def _image_token_id(adapter) -> int:
    cfg = adapter.model.config
    for name in ("image_token_id", "image_token_index"):
        if getattr(cfg, name, None) is not None:
            return int(getattr(cfg, name))
    raise AssertionError("no image token id in the config")


def test_twin_keeps_the_checkpoint_files(twin):
    family, path, adapter, image, _ = twin
    facts = TWINS[family].facts
    cfg = adapter.model.config
    text_cfg = cfg.get_text_config()
    assert adapter.family == family
    # The real vocabulary size (embedding rows), not the tokenizer's length.
    assert text_cfg.vocab_size == facts["vocab_size"]
    assert adapter.model.get_input_embeddings().weight.shape[0] == facts["vocab_size"]
    assert len(adapter.tokenizer) <= facts["vocab_size"]
    # Special tokens: the config's image token is the tokenizer's.
    image_id = _image_token_id(adapter)
    image_token = adapter.processor.image_token
    if family == "gemma3":  # Gemma3Processor.image_token is the placeholder <start_of_image>
        image_token = adapter.tokenizer.image_token
    assert adapter.tokenizer.convert_tokens_to_ids(image_token) == image_id
    # The generation config is the checkpoint's, sampling settings included.
    saved = (path / "generation_config.json").read_text()
    if family == "qwen2_5_vl":
        assert '"do_sample": true' in saved and '"repetition_penalty": 1.05' in saved
        assert adapter.tokenizer.convert_tokens_to_ids("<|vision_start|>") == 151652
        assert len(adapter.tokenizer) == 151665
        assert adapter.chat_text(PROMPT) == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n<|im_start|>assistant\n"
        )
        ip = adapter.processor.image_processor
        assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (14, 2, 2)
        assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (3136, 12845056)
    if family == "llava":
        assert adapter.chat_text(PROMPT) == "USER: <image>\nDescribe the image. ASSISTANT:"
        assert (image_id, adapter.tokenizer.pad_token_id, adapter.tokenizer.bos_token_id) == (32000, 32001, 1)
        ids = adapter.tokenizer("USER: hello")["input_ids"]
        assert ids[0] == 1  # <s> is added, as by the LLaMA tokenizer
        ip = adapter.processor.image_processor
        assert ip.size == {"shortest_edge": 336} and ip.crop_size == {"height": 336, "width": 336}
        assert int(ip.resample) == 3 and ip.do_center_crop
    # The tokenizer is a real sub-word tokenizer: a sentence splits into real pieces, and decodes back.
    sentence = "A red square next to a blue circle."
    ids = adapter.tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert 5 <= len(ids) <= 12 and adapter.tokenizer.decode(ids) == sentence


def test_real_resolution_inputs(twin):
    family, _, adapter, image, _ = twin
    inputs = adapter.prompt_inputs(Image.fromarray(image), PROMPT)
    expected = EXPECTED.get(family, {})
    n_image = int((inputs["input_ids"] == _image_token_id(adapter)).sum())
    if "image_tokens" in expected:
        assert n_image == expected["image_tokens"]
    else:
        assert n_image > 576  # several crops
    if "pixel_values" in expected:
        assert tuple(inputs["pixel_values"].shape) == expected["pixel_values"]


def test_contract_at_real_resolution(twin):
    """Full image = generation probabilities; batched = one by one; the fast path is used and exact."""
    family, _, adapter, image, gen = twin
    positions = list(range(len(gen)))
    assert min(gen.probs) > 1e-3, "twins give peaked distributions (absolute tolerances mean something)"
    slow = adapter.scorer(image, gen, positions, batch_size=8, fast_path=False)
    assert np.abs(slow.score_images(image[None])[0] - np.asarray(gen.probs)).max() <= PROB_TOL
    seg = segment(image, N_REGIONS, "slic")
    slow.set_regions(seg.labels)
    rng = np.random.default_rng(1)
    table = rng.random((12, seg.n_regions)) < rng.random((12, 1))  # subsets of every size
    expected = slow.score_regions(table)
    single = np.concatenate([slow.score_regions(t[None]) for t in table[:3]])
    assert np.abs(expected[:3] - single).max() <= PROB_TOL

    fast = adapter.scorer(image, gen, positions, batch_size=8, fast_path="auto")
    fast.set_regions(seg.labels)
    assert fast.fast_report["used"], fast.fast_report
    got = fast.score_regions(table)
    spread = expected.max(axis=0) - expected.min(axis=0)
    assert (spread > 1e-4).all(), "the subsets must move the model's probabilities"
    rel = float((np.abs(got - expected).max(axis=0) / spread).max())
    assert rel <= FAST_REL_TOL, (family, rel, fast.fast_report)


@pytest.fixture(scope="module")
def qwen():
    if "qwen2_5_vl" not in TWIN_FAMILIES:  # pragma: no cover - transformers without Qwen2.5-VL
        pytest.fail("transformers lacks Qwen2_5_VLForConditionalGeneration")
    adapter = load_adapter(twin_dir("qwen2_5_vl"))
    return adapter, _scene(*TWINS["qwen2_5_vl"].image_hw)


def _argmax_chain(adapter, image, gen) -> list[int]:
    """The argmax token of the model's teacher-forced distribution at every generated position."""
    inputs = adapter.prompt_inputs(Image.fromarray(image), gen.prompt)
    ids = torch.tensor([gen.token_ids], dtype=torch.long)
    text = adapter.extend_text_inputs(
        {k: inputs[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids") if k in inputs}, ids[0, :-1]
    )
    feed = {**{k: v for k, v in inputs.items() if k not in text}, **text}
    with torch.inference_mode():
        logits = adapter.model(**feed, use_cache=False).logits[0]
    prompt_len = inputs["input_ids"].shape[1]
    return logits[prompt_len - 1 : prompt_len - 1 + len(gen)].argmax(-1).tolist()


def test_generation_is_greedy_whatever_the_checkpoint_defaults(qwen):
    """Qwen2.5-VL-3B-Instruct's generation_config samples with a repetition penalty of 1.05:
    generate() overrides both, says so, and every token is the argmax of the scored distribution."""
    adapter, image = qwen
    settings = adapter.describe()["generation"]
    assert settings["decoding"] == "greedy"
    assert settings["overridden"]["do_sample"] == [True, False]
    assert settings["overridden"]["repetition_penalty"] == [1.05, 1.0]
    assert settings["overridden"]["temperature"] == [1e-06, None]
    gen = adapter.generate(image, PROMPT, max_new_tokens=6)
    assert list(gen.token_ids) == _argmax_chain(adapter, image, gen)
    # The checkpoint's config is left as it was.
    assert adapter.model.generation_config.do_sample is True
    assert adapter.model.generation_config.repetition_penalty == 1.05


def test_generation_ignores_logits_processors_of_the_checkpoint(qwen, monkeypatch):
    """With processors that certainly change the tokens (no repeated token at all, a strong
    penalty) in the checkpoint's config, plain model.generate() departs from the argmax chain;
    adapter.generate() does not, and records what it overrode."""
    adapter, image = qwen
    reference = adapter.generate(image, PROMPT, max_new_tokens=6)
    cfg = adapter.model.generation_config
    monkeypatch.setattr(cfg, "no_repeat_ngram_size", 1)
    monkeypatch.setattr(cfg, "repetition_penalty", 3.0)
    monkeypatch.setattr(cfg, "do_sample", False)
    monkeypatch.setattr(cfg, "temperature", None)
    inputs = adapter.prompt_inputs(Image.fromarray(image), PROMPT)
    with torch.inference_mode():
        plain = adapter.model.generate(**inputs, max_new_tokens=6)[0, inputs["input_ids"].shape[1] :].tolist()
    assert plain != list(reference.token_ids), "the mutant config must change plain generation"
    gen = adapter.generate(image, PROMPT, max_new_tokens=6)
    assert gen.token_ids == reference.token_ids
    assert np.allclose(gen.probs, reference.probs, atol=1e-7)
    assert adapter.generation_overrides()["no_repeat_ngram_size"] == [1, 0]
    scorer = adapter.scorer(image, gen, list(range(len(gen))), batch_size=2, fast_path=False)
    assert np.abs(scorer.score_images(image[None])[0] - np.asarray(gen.probs)).max() <= PROB_TOL


def test_generate_refuses_settings_that_change_the_tokens(qwen):
    adapter, image = qwen
    for kwargs in ({"do_sample": True}, {"repetition_penalty": 1.2}, {"num_beams": 3}, {"no_repeat_ngram_size": 2}):
        with pytest.raises(ValueError, match="greedily"):
            adapter.generate(image, PROMPT, max_new_tokens=2, **kwargs)
    # Greedy values are accepted.
    gen = adapter.generate(image, PROMPT, max_new_tokens=2, do_sample=False, repetition_penalty=1.0, num_beams=1)
    assert len(gen) == 2
    assert set(GREEDY_GENERATION) >= {"do_sample", "repetition_penalty", "no_repeat_ngram_size", "top_k"}


def _check_script(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(REPO / "adapters" / "check.py"), str(path), "--regions", "8"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("family", TWIN_FAMILIES)
def test_check_script_passes_on_a_twin(family):
    """`python adapters/check.py DIR`, as a user runs it on a downloaded checkpoint."""
    res = _check_script(twin_dir(family))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "FAIL" not in res.stdout and res.stdout.count("[PASS]") >= 6, res.stdout
    assert "fast = processor path" in res.stdout, res.stdout  # the fast path was used and compared
    if family == "qwen2_5_vl":  # the checkpoint samples with a repetition penalty: said, and overridden
        assert "overriding the checkpoint's" in res.stdout and "repetition_penalty" in res.stdout, res.stdout
