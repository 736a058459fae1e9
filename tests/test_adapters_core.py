"""LLaVA and Qwen2/2.5-VL adapters on tiny random models of the real classes, built offline."""

import json

import numpy as np
import pytest
import torch

from mllm_attr import Explainer, Explanation, load_adapter
from mllm_attr.adapters import LlavaAdapter, Qwen2VLAdapter, Qwen25VLAdapter
from mllm_attr.cli import main
from mllm_attr.testing.tiny_models import save_tiny

CORE = {"llava": LlavaAdapter, "qwen2_vl": Qwen2VLAdapter, "qwen2_5_vl": Qwen25VLAdapter}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    torch.manual_seed(0)
    return {fam: save_tiny(fam, tmp_path_factory.mktemp(fam)) for fam in CORE}


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    img = rng.integers(1, 255, size=(48, 56, 3), dtype=np.uint8)
    img[10:30, 12:40] = (220, 30, 30)
    return img


@pytest.mark.parametrize("family", list(CORE))
def test_generate_explain_word_roundtrip(family, model_dirs, image, tmp_path):
    adapter = load_adapter(model_dirs[family])
    assert isinstance(adapter, CORE[family]) and adapter.family == family
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=6)
    assert len(gen) >= 1 and len(gen.probs) == len(gen)
    words = [i for i in range(len(gen)) if not gen.special[i] and gen.tokens[i].strip().isalpha()]
    if not words:
        pytest.skip(f"random model produced no plain word: {gen.tokens}")
    word = gen.tokens[words[0]].strip()
    expl = Explainer(adapter, n_regions=6, batch_size=8)(image, gen, target=word)
    assert expl.target_text.lower() == word.lower()
    n = expl.n_regions
    assert expl.forwards == n * (n + 1)
    assert expl.saliency().shape == image.shape[:2]
    out = expl.save(tmp_path / "e")
    back = Explanation.load(out)
    assert back.generation == gen and back.positions == expl.positions
    assert np.allclose(back.ins, expl.ins) and back.settings["adapter"]["family"] == family


@pytest.mark.parametrize("family", list(CORE))
def test_batched_equals_single_and_full_equals_generation(family, model_dirs, image):
    adapter = load_adapter(model_dirs[family])
    gen = adapter.generate(image, "What is this?", max_new_tokens=5)
    positions = list(range(len(gen)))
    scorer = adapter.scorer(image, gen, positions, batch_size=4)
    # score(full image) reproduces the probabilities seen during generation
    full = scorer.score_images(image[None])[0]
    assert np.allclose(full, gen.probs, atol=1e-5)
    rng = np.random.default_rng(0)
    keep = rng.random((5, *image.shape[:2])) > 0.5
    batched = scorer.score_keep(keep)
    single = np.concatenate([scorer.score_keep(k[None]) for k in keep])
    assert np.allclose(batched, single, atol=1e-5)
    assert scorer.counter.calls == 1 + 2 + 5  # full, batch of 5 split 4+1, then 5 singles
    # different images give different scores (the scorer really looks at the pixels)
    assert np.abs(batched - full).max() > 0


def test_counterfactual_answer_on_real_class(model_dirs, image):
    adapter = load_adapter(model_dirs["llava"])
    gen = adapter.generate(image, "Is it red?", max_new_tokens=3)
    cf = adapter.teacher_force(image, gen.prompt, "square", generated_text=gen.text)
    assert cf.counterfactual and cf.text.strip() == "square" and 0 < cf.probs[0] < 1
    scorer = adapter.scorer(image, cf, [0])
    assert np.allclose(scorer.score_images(image[None])[0], cf.probs[:1], atol=1e-6)


def test_load_adapter_errors(tmp_path, model_dirs):
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        load_adapter(model_dirs["llava"], family="nope")
    d = tmp_path / "weird"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="supported families"):
        load_adapter(d)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_adapter(tmp_path)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_cli_explains_word(family, model_dirs, image, tmp_path, capsys):
    from PIL import Image

    img_path = tmp_path / "img.png"
    Image.fromarray(image).save(img_path)
    adapter = load_adapter(model_dirs[family])
    gen = adapter.generate(image, "Describe the image.", max_new_tokens=6)
    word = next((t.strip() for t, s in zip(gen.tokens, gen.special) if not s and t.strip().isalpha()), None)
    if word is None:
        pytest.skip("no plain word generated")
    out = tmp_path / "out"
    args = [
        "explain",
        "--model",
        str(model_dirs[family]),
        "--image",
        str(img_path),
        "--prompt",
        "Describe the image.",
        "--target",
        word,
        "--regions",
        "5",
        "--out",
        str(out),
        "--max-new-tokens",
        "6",
        "-q",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "insertion AUC" in printed and word in printed
    data = json.loads((out / "explanation.json").read_text())
    for key in (
        "generated_text",
        "tokens",
        "target_positions",
        "insertion_auc",
        "deletion_auc",
        "highest_confidence",
        "forwards",
        "seconds",
        "settings",
        "versions",
    ):
        assert key in data
    sal = np.load(out / "saliency.npy", allow_pickle=False)
    assert sal.dtype == np.float32 and sal.shape == image.shape[:2]
    assert (out / "heatmap.png").stat().st_size > 1000
    # existing output dir: refused before any work, and nothing is changed
    before = sorted(p.name for p in out.iterdir())
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
