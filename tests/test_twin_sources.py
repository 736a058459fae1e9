"""The twins keep the facts found in their checkpoints' files, and the adapters tokenise as the real ones.

Chat templates are pinned by SHA-256 to the texts they were copied from (a verified copy, a
conversion script, a test fixture: see the ``template_source`` fact of each twin). The BOS tests
check the ``input_ids`` that reach the model in ``generate`` and ``teacher_force``: a family whose
chat template writes the BOS token and whose tokenizer adds one too must still get exactly one.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_attr import load_adapter
from mllm_attr.adapters.hf import HFAdapter
from mllm_attr.testing import twins
from mllm_attr.testing.twins import TWIN_FAMILIES, TWINS, twin_dir

PROMPT = "Describe the image."

#: SHA-256 and byte count of each template's source text.
TEMPLATE_PINS = {
    # Qwen/Qwen2-VL-2B-Instruct processor_config / tokenizer_config chat_template, as a mirror of the hub
    # metadata shows it (ai-nexus-293.pages.dev/model/qwen/qwen2-vl-2b-instruct).
    "QWEN2_VL_TEMPLATE": ("a0bc6f6fc7a29a80017a433e8f03a1cc1236e838a944a2d034295a60c4f2fddb", 1017),
    # Qwen/Qwen3-VL-8B-Instruct(-GGUF) tokenizer.chat_template, as pinned by a third-party test.
    "QWEN3_VL_TEMPLATE": ("3636d0f0bd6bef02654cdffdc447b79cb2cef8ab02cc75267345946291a489e4", 5292),
    # transformers' convert_internvl_weights_to_hf.py chat_template.
    "INTERNVL_TEMPLATE": ("b3e3fa7cdeceec1d3dfe0d17b77724baf3857714e688f3a700261567e96140eb", 481),
    # Idefics3-8B-Llama3: third-party copy (renders what transformers' hub-backed test expects).
    "IDEFICS3_TEMPLATE": ("0d7e56ca41705b79932de707b22bc855c3cfcefae62f1ac5e458560654883d2e", 408),
    # transformers' tests/models/smolvlm/test_processing_smolvlm.py fixture.
    "SMOLVLM_TEMPLATE": ("830005085ddd94cec605b6e21b885b28ffad6e3f82ee6a212c523533e8f04f01", 403),
    # transformers' convert_gemma3_weights.py _CHAT_TEMPLATE, in the hub's quoted form.
    "GEMMA3_TEMPLATE": ("d2f96210400e38149e26e01918a408c3f2ad3d4bd87c44e8dcf8e1a611a98535", 1539),
}

#: Families whose chat template writes the tokenizer's BOS token at the start of the prompt.
TEMPLATE_WRITES_BOS = {"idefics3", "smolvlm", "gemma3"}


def _scene(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = (rng.random((h, w, 3)) * 60 + 100).astype(np.uint8)
    img[h // 6 : h // 2, w // 5 : w // 2] = (210, 40, 40)
    return img


_ADAPTERS: dict[str, HFAdapter] = {}


def _adapter(family: str) -> HFAdapter:
    if family not in TWIN_FAMILIES:
        pytest.skip(f"transformers lacks {TWINS[family].model_class}")
    if family not in _ADAPTERS:
        torch.manual_seed(0)
        _ADAPTERS[family] = load_adapter(twin_dir(family))
    return _ADAPTERS[family]


@pytest.mark.parametrize("name", sorted(TEMPLATE_PINS))
def test_template_is_its_source_text(name):
    text = getattr(twins, name).encode("utf-8")
    digest, size = TEMPLATE_PINS[name]
    assert len(text) == size
    assert hashlib.sha256(text).hexdigest() == digest


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "internvl", "idefics3", "smolvlm", "gemma3"])
def test_saved_twin_has_the_template(family):
    """The saved twin's processor and tokenizer carry the template text unchanged."""
    adapter = _adapter(family)
    name = {
        "qwen2_vl": "QWEN2_VL_TEMPLATE",
        "qwen3_vl": "QWEN3_VL_TEMPLATE",
        "internvl": "INTERNVL_TEMPLATE",
        "idefics3": "IDEFICS3_TEMPLATE",
        "smolvlm": "SMOLVLM_TEMPLATE",
        "gemma3": "GEMMA3_TEMPLATE",
    }[family]
    assert adapter.processor.chat_template == getattr(twins, name)
    assert TWINS[family].facts["template_source"]


def test_qwen3_vl_renders_the_hub_format():
    adapter = _adapter("qwen3_vl")
    assert adapter.chat_text(PROMPT) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # The hub template renders a system message only as messages[0].
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "dropped"}]},
    ]
    text = adapter.processor.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_gemma3_folds_the_system_message_into_the_first_user_turn():
    adapter = _adapter("gemma3")
    bos = adapter.tokenizer.bos_token
    assert adapter.chat_text(PROMPT) == (
        f"{bos}<start_of_turn>user\n<start_of_image>Describe the image.<end_of_turn>\n<start_of_turn>model\n"
    )
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
    ]
    text = adapter.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"{bos}<start_of_turn>user\nBe brief.\n\n<start_of_image>What is it?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_gemma3_generation_config_is_the_checkpoints():
    adapter = _adapter("gemma3")
    saved = json.loads((twin_dir("gemma3") / "generation_config.json").read_text())
    assert saved["cache_implementation"] == "hybrid"
    assert (saved["do_sample"], saved["top_k"], saved["top_p"]) == (True, 64, 0.95)
    assert adapter.model.generation_config.cache_implementation == "hybrid"


#: LLaMA / Llama-2 encodings published by belladoreai/llama-tokenizer-js (``llama-tokenizer.js``,
#: ``runTests``, commit 4735fb73), made with the real tokenizer: <s> = 1 first. (Its texts that start
#: with a space are left out: transformers 5's LlamaTokenizer drops that space, for the hub files too.)
LLAMA_PUBLISHED = [
    ("grabbed", [1, 2646, 1327, 287]),
    ("\n", [1, 29871, 13]),
    ("\ttabs\t\t\t\tout here", [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244]),
    ("ax\n####\nboo", [1, 4853, 13, 4136, 13, 833, 29877]),
    ("\u9547", [1, 29871, 30411]),
    ("\U0001f999", [1, 29871, 243, 162, 169, 156]),
    ("\U0001f999\ua64a", [1, 29871, 243, 162, 169, 156, 237, 156, 141]),
    ("\ua64a\U0001f999", [1, 29871, 237, 156, 141, 243, 162, 169, 156]),
    ("Hello this is a test", [1, 15043, 445, 338, 263, 1243]),
]


def test_llava_tokenizer_is_llama2s():
    """The LLaVA-1.5 twin's tokenizer is the real Llama-2 one: published ids, the hub's merges."""
    tok = _adapter("llava").tokenizer
    for text, ids in LLAMA_PUBLISHED:
        assert tok(text)["input_ids"] == ids, text
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert len(tok) == 32002
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<0x0A>", "<image>", "<pad>"]) == [
        0,
        1,
        2,
        13,
        32000,
        32001,
    ]
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    assert len(merges) == 61249
    first, last = (m if isinstance(m, str) else " ".join(m) for m in (merges[0], merges[-1]))
    assert first == "\u2581 t"  # the first merge of the hub file; the runs of "\u2581" come last
    assert set(last.replace(" ", "")) == {"\u2581"}


def test_idefics3_tokenizer_adds_bos_like_the_real_one():
    """Llama 3.1's post-processor: <|begin_of_text|> before every text, none without special tokens."""
    tok = _adapter("idefics3").tokenizer
    ids = tok("User: hello")["input_ids"]
    assert ids[0] == tok.bos_token_id == 128000 and ids.count(128000) == 1
    assert 128000 not in tok("User: hello", add_special_tokens=False)["input_ids"]


def test_smolvlm_added_tokens_at_their_real_ids():
    adapter = _adapter("smolvlm")
    tok = adapter.tokenizer
    assert TWINS["smolvlm"].checkpoint == "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
    assert len(tok) == 49280 == adapter.model.config.get_text_config().vocab_size
    expected = {
        "<|endoftext|>": 0,
        "<|im_start|>": 1,
        "<|im_end|>": 2,
        "<global-img>": 49152,
        "<row_1_col_1>": 49153,
        "<row_1_col_6>": 49158,
        "<row_2_col_1>": 49159,
        "<row_6_col_6>": 49188,
        "<fake_token_around_image>": 49189,
        "<image>": 49190,
        "<|reserved_special_token_0|>": 49191,
        "<|reserved_special_token_87|>": 49278,
        "<end_of_utterance>": 49279,
    }
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>",
        "<end_of_utterance>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert "<video>" not in tok.get_vocab()
    assert adapter.model.config.image_token_id == 49190


def test_internvl_saved_files_and_processor_tiling():
    """crop_to_patches is false in the saved image-processor file (as the conversion script saves it);
    InternVLProcessor tiles at call time, for the prompt and for the adapter's image batches alike."""
    path = twin_dir("internvl")
    adapter = _adapter("internvl")
    # transformers 5 saves the image processor inside processor_config.json; older versions (and the
    # hub repository) have preprocessor_config.json.
    file = path / "preprocessor_config.json"
    saved = (
        json.loads(file.read_text())
        if file.is_file()
        else json.loads((path / "processor_config.json").read_text())["image_processor"]
    )
    assert saved["crop_to_patches"] is False
    assert adapter.tokenizer.model_max_length == 8192
    assert adapter.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == 151667 == adapter.model.config.image_token_id
    assert adapter.processor.video_token == "<video>"
    image = _scene(*TWINS["internvl"].image_hw)  # 320x640: a 2x1 grid + a thumbnail
    inputs = adapter.prompt_inputs(Image.fromarray(image), PROMPT)
    assert tuple(inputs["pixel_values"].shape) == (3, 3, 448, 448)
    batch = adapter.image_inputs([Image.fromarray(image)] * 2)
    assert tuple(batch["pixel_values"].shape) == (6, 3, 448, 448)


def _captured_prompt_ids(adapter, fn) -> list[int]:
    """``input_ids`` of the first model call made by ``fn()`` (the full prompt)."""
    seen: list[list[int]] = []

    def hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and not seen:
            seen.append(ids[0].tolist())

    handle = adapter.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    assert seen, "no model call with input_ids"
    return seen[0]


def _assert_one_bos(adapter, ids: list[int], family: str) -> None:
    bos = adapter.tokenizer.bos_token_id
    if family in TEMPLATE_WRITES_BOS:
        assert ids[0] == bos, (family, ids[:4])
    if bos is not None:
        assert not (len(ids) > 1 and ids[0] == bos and ids[1] == bos), f"{family}: two BOS tokens {ids[:4]}"
        assert ids.count(bos) <= 1, (family, ids.count(bos))


@pytest.mark.parametrize("family", list(TWINS))
def test_one_bos_in_generate_and_teacher_force(family):
    adapter = _adapter(family)
    image = _scene(*TWINS[family].image_hw)
    gen_ids = _captured_prompt_ids(adapter, lambda: adapter.generate(image, PROMPT, max_new_tokens=1))
    _assert_one_bos(adapter, gen_ids, family)
    tf_ids = _captured_prompt_ids(adapter, lambda: adapter.teacher_force(image, PROMPT, "A red square."))
    _assert_one_bos(adapter, tf_ids, family)
    assert tf_ids[: len(gen_ids)] == gen_ids  # the same prompt tokens on both paths


@pytest.mark.parametrize("family", sorted(TEMPLATE_WRITES_BOS - {"smolvlm"}))
def test_plain_processor_call_would_double_the_bos(family):
    """What the fix guards against: these twins' tokenizers add the BOS the template already wrote,
    as the real checkpoints' do, so the processor's default call on the rendered template gives
    two (what every family got before the fix in HFAdapter.prompt_inputs)."""
    adapter = _adapter(family)
    image = Image.fromarray(_scene(*TWINS[family].image_hw))
    raw = adapter.processor(images=[image], text=[adapter.chat_text(PROMPT)], return_tensors="pt")
    plain = raw["input_ids"][0].tolist()
    bos = adapter.tokenizer.bos_token_id
    assert plain[:2] == [bos, bos]
    fixed = adapter.prompt_inputs(image, PROMPT)["input_ids"][0].tolist()
    assert fixed == plain[1:]
