"""The ``*NoVideo`` processors' ``__init__``: the base's signature minus ``video_processor``.

``ProcessorMixin`` reads that signature (settings to save, sub-processors to load) and, in
``from_args_and_dict``, which saved settings to pass back on reload; these tests pin what a
hand-written ``__init__`` with those parameters would do.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from mllm_attr.adapters import _processors
from mllm_attr.testing.tiny_models import FAMILIES, build_tiny

NO_VIDEO = sorted(set(_processors._NO_VIDEO.values()), key=lambda cls: cls.__name__)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.mark.parametrize("cls", NO_VIDEO, ids=lambda cls: cls.__name__)
def test_signature_is_the_bases_without_video_processor(cls):
    base = next(b for b in cls.__mro__ if b.__name__ == cls._base_name())
    expected = [
        (p.name, p.kind, p.default, p.annotation)
        for p in inspect.signature(base.__init__).parameters.values()
        if p.name != "video_processor" and p.kind is not p.VAR_KEYWORD
    ]
    parameters = list(inspect.signature(cls.__init__).parameters.values())
    assert [(p.name, p.kind, p.default, p.annotation) for p in parameters[:-1]] == expected
    assert parameters[-1].kind is inspect.Parameter.VAR_KEYWORD
    assert "video_processor" not in cls.get_attributes()
    assert cls.__init__.__qualname__ == f"{cls.__name__}.__init__"


def _qwen():
    if "qwen2_vl" not in FAMILIES:  # pragma: no cover
        pytest.skip("Qwen2-VL not available")
    _, processor = build_tiny("qwen2_vl")
    return processor


def test_init_binds_like_the_signature():
    processor = _qwen()
    cls = _processors.Qwen2VLProcessorNoVideo
    ip, tok, template = processor.image_processor, processor.tokenizer, processor.chat_template
    by_position = cls(ip, tok, template)
    by_name = cls(image_processor=ip, tokenizer=tok, chat_template=template)
    assert by_position.to_dict() == by_name.to_dict() == processor.to_dict()
    assert by_position.chat_template == template
    for bad in ({"tokenizer": tok}, {"video_processor": None}):
        with pytest.raises(TypeError):
            cls(ip, tok, **bad)
    with pytest.raises(TypeError):
        cls(ip, tok, template, 1)


def test_from_pretrained_passes_settings_and_overrides_back(tmp_path):
    processor = _qwen()
    cls = type(processor)
    processor.save_pretrained(tmp_path)
    assert cls.from_pretrained(tmp_path).to_dict() == processor.to_dict()
    # A setting of __init__ given to from_pretrained reaches it; a sub-processor given by name
    # replaces the loaded one; unknown settings are reported, not passed.
    assert cls.from_pretrained(tmp_path, chat_template="{{ 'x' }}").chat_template == "{{ 'x' }}"
    assert cls.from_pretrained(tmp_path, tokenizer=processor.tokenizer).tokenizer is processor.tokenizer
    pdict, _ = cls.get_processor_dict(tmp_path)
    args = cls._get_arguments_from_pretrained(tmp_path, pdict)
    loaded, unused = cls.from_args_and_dict(
        args, {**pdict, "bogus": 3, "chat_template": "{{ 'y' }}"}, return_unused_kwargs=True
    )
    assert loaded.chat_template == "{{ 'y' }}"
    assert "bogus" in unused and "chat_template" not in unused


def test_non_default_setting_survives_a_reload(tmp_path):
    if "internvl" not in FAMILIES:  # pragma: no cover
        pytest.skip("InternVL not available")
    _, processor = build_tiny("internvl")
    cls = type(processor)
    changed = cls(processor.image_processor, processor.tokenizer, image_seq_length=7, chat_template="{{ 'z' }}")
    changed.save_pretrained(tmp_path)
    reloaded = _processors.load_processor(tmp_path)
    assert reloaded.image_seq_length == 7
    assert reloaded.chat_template == "{{ 'z' }}"
    assert reloaded.to_dict() == changed.to_dict()
