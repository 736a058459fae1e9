"""load_processor: AutoProcessor first, a video-free processor when that fails, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from transformers import AutoProcessor, AutoTokenizer, Qwen2VLProcessor
from transformers.utils import is_torchvision_available

from mllm_attr.adapters import _processors
from mllm_attr.adapters._processors import (
    Qwen2VLProcessorNoVideo,
    load_processor,
    processor_class_without_video,
)
from mllm_attr.testing.tiny_models import FAMILIES, build_tiny, save_tiny

VIDEO_FAMILIES = [
    f for f in ("llava_onevision", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl", "smolvlm") if f in FAMILIES
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_tiny("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl"))


def test_plain_processor_comes_from_auto_processor(tmp_path):
    out = save_tiny("llava", tmp_path)
    processor = load_processor(out)
    assert type(processor) is type(AutoProcessor.from_pretrained(out))


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_video_free_subclass_saves_under_base_name_and_reloads(family, tmp_path):
    _, built = build_tiny(family)
    base = getattr(transformers, built._base_name())
    out = save_tiny(family, tmp_path)
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == base.__name__
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config.get("processor_class", base.__name__) == base.__name__
    loaded = load_processor(out)
    assert isinstance(loaded, base)
    # Settings given to __init__ (image_seq_length, num_image_tokens, ...) survive the reload.
    assert loaded.to_dict() == built.to_dict()
    if not is_torchvision_available():
        assert type(loaded).__name__ == base.__name__ + "NoVideo"
        assert not hasattr(loaded, "video_processor")


def test_falls_back_when_auto_processor_raises(qwen_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("Qwen2VLVideoProcessor requires the Torchvision library")

    monkeypatch.setattr(AutoProcessor, "from_pretrained", broken)
    processor = load_processor(qwen_dir)
    assert isinstance(processor, Qwen2VLProcessorNoVideo)
    assert processor.image_processor.merge_size == 2


def test_falls_back_when_auto_processor_returns_a_tokenizer(qwen_dir, monkeypatch):
    monkeypatch.setattr(AutoProcessor, "from_pretrained", lambda path, **kw: AutoTokenizer.from_pretrained(path))
    processor = load_processor(qwen_dir)
    assert isinstance(processor, Qwen2VLProcessor)
    assert processor.image_token == "<|image_pad|>"


def test_video_free_processor_rejects_videos(qwen_dir):
    processor = processor_class_without_video("Qwen2VLProcessor").from_pretrained(qwen_dir)
    with pytest.raises(ValueError, match="videos"):
        processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[torch.zeros(2, 3, 28, 28)])


def test_unknown_processor_class_is_a_value_error():
    with pytest.raises(ValueError, match="Qwen2VLProcessor"):
        processor_class_without_video("NotAProcessor")


def test_empty_or_missing_directory_error_names_the_path(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_processor(tmp_path)
    with pytest.raises(ValueError, match="no such directory"):
        load_processor(tmp_path / "missing")


def test_text_only_checkpoint_is_refused(tmp_path):
    _, processor = build_tiny("llava")
    processor.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="multimodal"):
        load_processor(tmp_path)


def test_unrecognised_multimodal_checkpoint_lists_what_was_found(qwen_dir, tmp_path, monkeypatch):
    for name in ("processor_config.json", "tokenizer_config.json", "tokenizer.json", "config.json"):
        text = (qwen_dir / name).read_text()
        if name != "tokenizer.json":
            text = text.replace('"Qwen2VLProcessor"', '"MadeUpProcessor"').replace('"qwen2_vl"', '"made_up"')
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match="MadeUpProcessor") as excinfo:
        load_processor(tmp_path)
    assert str(tmp_path) in str(excinfo.value)


def test_registry_covers_every_video_processor():
    # Every transformers processor here that bundles a video processor has a video-free variant.
    for name in ("Qwen2VLProcessor", "Qwen2_5_VLProcessor", "InternVLProcessor", "LlavaOnevisionProcessor"):
        cls = processor_class_without_video(name)
        assert "video_processor" not in cls.get_attributes()
        assert cls._base_name() == name
    assert set(_processors.__all__) >= {"load_processor", "Qwen2VLProcessorNoVideo"}
