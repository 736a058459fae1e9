"""Tiny real-class models: build, save, reload offline, generate, teacher-force, batch images."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.utils import is_torchvision_available

from mllm_attr.adapters._processors import load_processor
from mllm_attr.testing.tiny_models import FAMILIES, build_tiny, model_class, save_tiny

# PaliGemma's processor builds labels with np.array(copy=False) on a list (transformers' own warning).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PROMPT = "What colour is the cat?"
# Text-side keys whose extension over generated tokens is not zeros: PaliGemma's token_type_ids
# mark the prefix (0, attended bidirectionally) and the suffix (1, causal); generated text is suffix.
SUFFIX_TYPE = {"paligemma": {"token_type_ids": 1}}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images(n: int, height: int = 40, width: int = 48) -> list[Image.Image]:
    rng = np.random.default_rng(1234)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB") for _ in range(n)]


def _messages(image=None) -> list[dict]:
    image_entry = {"type": "image"} if image is None else {"type": "image", "image": image}
    return [{"role": "user", "content": [image_entry, {"type": "text", "text": PROMPT}]}]


def _forward_inputs(model, features) -> dict:
    """The processor outputs that ``model.forward`` takes by name (drops labels, num_patches, ...)."""
    accepted = set(inspect.signature(model.forward).parameters)
    return {k: v for k, v in features.items() if k in accepted and k != "labels"}


def test_families_known():
    assert {"llava", "qwen2_vl", "qwen2_5_vl", "paligemma", "idefics3", "internvl"} <= set(FAMILIES)
    with pytest.raises(ValueError, match="llava"):
        build_tiny("no_such_family")


def test_deterministic_for_a_seed():
    a, _ = build_tiny("llava", seed=3)
    b, _ = build_tiny("llava", seed=3)
    c, _ = build_tiny("llava", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_family(family, tmp_path):
    out = save_tiny(family, tmp_path / family)
    cls = model_class(family)
    model = cls.from_pretrained(out)
    processor = load_processor(out)
    fresh, fresh_processor = build_tiny(family)

    # Reloaded exactly, in eval mode, float32, with a greedy generation config.
    assert not model.training and model.dtype == torch.float32
    reference = fresh.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    # Same processor class (its video-free variant without torchvision) and every setting kept.
    assert type(processor).__name__.removesuffix("NoVideo") == type(fresh_processor).__name__.removesuffix("NoVideo")
    assert processor.to_dict() == fresh_processor.to_dict()
    assert processor.chat_template == fresh_processor.chat_template
    assert type(processor.image_processor) is type(fresh_processor.image_processor)
    if not is_torchvision_available():
        assert type(processor.image_processor).__name__.endswith("Pil")
    assert processor.tokenizer.padding_side == "left"
    assert processor.tokenizer.get_vocab() == fresh_processor.tokenizer.get_vocab()
    gen = model.generation_config
    assert gen.do_sample is False and gen.eos_token_id is not None and gen.pad_token_id is not None
    assert model.config.get_text_config().vocab_size == len(processor.tokenizer)
    saved = json.loads((out / "processor_config.json").read_text())
    assert not saved["processor_class"].endswith("NoVideo")

    # The chat template renders the image placeholder; the image goes in with the message.
    image = _images(1)[0]
    inputs = processor.apply_chat_template(
        _messages(image), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    prompt = processor.apply_chat_template(_messages(), add_generation_prompt=True)
    direct = processor(images=[image], text=[prompt], return_tensors="pt")
    assert set(inputs) == set(direct) and all(torch.equal(inputs[k], direct[k]) for k in direct)
    model_inputs = _forward_inputs(model, inputs)
    length = inputs["input_ids"].shape[1]

    with torch.no_grad():
        generated = model.generate(
            **model_inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, output_logits=True
        )
    sequences = generated.sequences
    new = sequences.shape[1] - length
    assert 1 <= new <= 3 and torch.equal(sequences[:, :length], inputs["input_ids"])

    # Teacher-forced forward over prompt + generated tokens reproduces the generation's logits;
    # logits_to_keep=1 gives the last position only.
    forced = dict(model_inputs, input_ids=sequences)
    for key, value in model_inputs.items():
        if key != "input_ids" and torch.is_tensor(value) and value.shape[:2] == (1, length):
            fill = 1 if key == "attention_mask" else SUFFIX_TYPE.get(family, {}).get(key, 0)
            forced[key] = torch.cat([value, value.new_full((1, new), fill)], dim=1)
    with torch.no_grad():
        full = model(**forced).logits
        last = model(**forced, logits_to_keep=1).logits
    assert full.shape[:2] == (1, length + new)
    for step, step_logits in enumerate(generated.logits):
        torch.testing.assert_close(full[:, length - 1 + step], step_logits, atol=1e-4, rtol=0)
    assert last.shape == (1, 1, full.shape[-1])
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-5, rtol=0)

    # Batching as the attribution engine does: repeat the text tensors, run the image processor
    # on the images, concatenate. Same logits as one image at a time.
    images = _images(3)
    singles = [processor(images=[im], text=[prompt], return_tensors="pt") for im in images]
    image_features = processor.image_processor(images=images, return_tensors="pt")
    text_keys = [k for k in singles[0] if k not in image_features]
    batch = {k: singles[0][k].repeat(3, *[1] * (singles[0][k].dim() - 1)) for k in text_keys}
    batch.update(image_features)
    with torch.no_grad():
        one_by_one = torch.cat([model(**_forward_inputs(model, s)).logits for s in singles])
        batched = model(**_forward_inputs(model, batch)).logits
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    # The images matter: otherwise the comparison above proves nothing.
    assert (one_by_one[0, -1] - one_by_one[1, -1]).abs().max() > 1e-3
