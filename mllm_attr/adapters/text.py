"""Text-only causal language models (``AutoModelForCausalLM`` with a chat template).

A :class:`TextAdapter` answers a prompt with no image, and its :class:`TextScorer` gives the
teacher-forced probabilities of target tokens of that answer, with chosen prompt tokens
ablated per row: the same hook as :meth:`~mllm_attr.adapters.hf.HFScorer.score_regions_ablated`
without the image. :mod:`mllm_attr.analysis.prompt_tokens` builds the prompt-word attribution of
plain LLM answers on it (the insight + necessity objective over prompt words).

What is shared with the multimodal adapter (:class:`~mllm_attr.adapters.hf.HFAdapter`), by the
same code: greedy decoding whatever the checkpoint's ``generation_config`` says (and the record of
what was overridden), the one-BOS rule for templates that write the BOS themselves, the
:class:`~mllm_attr.types.Generation` built from the tokens, the stored settings, safetensors-only
loading and ``trust_remote_code`` off unless asked. Scoring follows the speed standards of
:class:`~mllm_attr.adapters.hf.HFScorer`: rows are batched and counted (one row = one forward),
the sequence ends at the last target token, logits are computed only at the target positions
(``logits_to_keep``) and the softmax is float64 there.

A text scorer has no image: its ``image`` and ``fill`` are empty ``uint8[0, 0, 3]`` arrays
(:data:`NO_IMAGE`) and its only label map is the empty ``int32[0, 0]`` one (:data:`NO_REGIONS`:
zero regions), so region tables have zero columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..targets import token_spans
from ..types import Generation
from .base import ModelAdapter, Scorer
from .hf import HFAdapter, _supports_index_logits_to_keep, load_weights

logger = logging.getLogger(__name__)

#: The "image" of a text-only explanation: no pixels.
NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)
NO_IMAGE.setflags(write=False)
#: The label map of a text-only explanation: no pixels, so no regions.
NO_REGIONS = np.zeros((0, 0), dtype=np.int32)
NO_REGIONS.setflags(write=False)


def is_no_image(image: Any) -> bool:
    """True for ``None`` and for an array with no pixels (:data:`NO_IMAGE`)."""
    return image is None or (isinstance(image, np.ndarray) and image.size == 0)


class TextScorer(Scorer):
    """Teacher-forced target-token probabilities of one text-only answer, with prompt tokens ablated per row.

    Public attributes as for :class:`~mllm_attr.adapters.hf.HFScorer`: :attr:`text` (the chat
    prompt + teacher-forced answer up to the last target, ``[1, L]`` tensors), :attr:`prompt_length`
    (the chat prompt's part of them), :attr:`target_ids`.

    Args:
        adapter: the :class:`TextAdapter`.
        generation: the answer (its ``prompt`` is the user prompt before the chat template).
        positions: 0-based target positions in the generated tokens.
        batch_size: rows per forward pass.
    """

    def __init__(self, adapter: TextAdapter, generation: Generation, positions: Sequence[int], batch_size: int):
        super().__init__(NO_IMAGE, NO_IMAGE, positions, batch_size)
        if not self.positions:
            raise ValueError("no target positions to score")
        n = len(generation.token_ids)
        if min(self.positions) < 0 or max(self.positions) >= n:
            raise ValueError(f"target positions {self.positions} out of range for {n} generated tokens")
        self.adapter = adapter
        prompt_inputs = adapter.prompt_inputs(generation.prompt)
        gen_ids = torch.tensor(generation.token_ids, dtype=torch.long)
        max_pos = max(self.positions)
        prompt_len = int(prompt_inputs["input_ids"].shape[1])
        #: tokens of the chat-formatted prompt at the start of ``text``.
        self.prompt_length = prompt_len
        # Inputs: prompt + generated tokens before the last target; nothing after it is needed.
        extra = gen_ids[:max_pos].view(1, -1)
        self.text = {
            "input_ids": torch.cat([prompt_inputs["input_ids"], extra], dim=1),
            "attention_mask": torch.cat(
                [prompt_inputs["attention_mask"], torch.ones_like(extra, dtype=prompt_inputs["attention_mask"].dtype)],
                dim=1,
            ),
        }
        self.target_ids = gen_ids[list(self.positions)]
        # Logit at absolute position P + p - 1 predicts generated token p.
        absolute = [prompt_len + p - 1 for p in self.positions]
        if _supports_index_logits_to_keep():
            self.logits_to_keep: int | torch.Tensor = torch.tensor(absolute, dtype=torch.long)
            self.rel = torch.arange(len(absolute))
        else:  # pragma: no cover - older transformers: keep the tail from the first target
            first = min(absolute)
            self.logits_to_keep = prompt_len + max_pos - first
            self.rel = torch.tensor([a - first for a in absolute], dtype=torch.long)

    # -- no image: zero regions ----------------------------------------------------------------
    def set_regions(self, labels: np.ndarray) -> None:
        """Register the empty label map (:data:`NO_REGIONS`); a text-only scorer has no regions.

        Raises:
            ValueError: a label map with pixels.
        """
        labels = np.asarray(labels)
        if labels.size:
            raise ValueError(
                f"a text-only model has no image regions; got a label map of shape {labels.shape} "
                "(expected the empty label map)"
            )
        self.labels = labels.reshape(0, 0).astype(np.int32)

    @property
    def n_regions(self) -> int | None:
        """0 once the (empty) label map is registered, ``None`` before."""
        return None if self.labels is None else 0

    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        raise TypeError("a text-only model scores no images; use score_ablated (prompt tokens) or score_regions")

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._forward({k: v.repeat(len(table), 1) for k, v in self.text.items()})

    # -- prompt-token ablation -----------------------------------------------------------------
    def score_ablated(self, ablate: np.ndarray, *, fill: int | None = None) -> np.ndarray:
        """Score rows with, per row, some prompt tokens ablated: ``float64[B, K]``.

        Args:
            ablate: ``bool[B, prompt_length]``; ``ablate[b, t]`` ablates token ``t`` of the chat
                prompt (an index into :attr:`text` ``["input_ids"]``) in row ``b``.
            fill: ``None``: an ablated token is removed from attention (``attention_mask = 0``); an
                integer: its id is replaced by the token id ``fill``. (As
                :meth:`~mllm_attr.adapters.hf.HFScorer.score_regions_ablated`.)

        The sequence length and the positions of the target logits are those of the unablated
        input; a row that ablates nothing scores as :meth:`score_regions` does. Rows are batched
        in ``batch_size`` chunks, checked (shape, finite values) and counted as forwards.

        Raises:
            ValueError: ``ablate`` of the wrong shape, or ``fill`` outside the vocabulary.
            TypeError: ``fill`` is not an integer.
        """
        ablate = np.asarray(ablate, dtype=bool)
        if ablate.ndim == 1:
            ablate = ablate[None]
        if ablate.ndim != 2 or ablate.shape[1] != self.prompt_length:
            raise ValueError(
                f"expected an ablation table of shape (B, {self.prompt_length}) (one column per prompt token); "
                f"got shape {ablate.shape}"
            )
        if fill is not None:
            if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (int, np.integer)):
                raise TypeError(f"fill must be None or an integer token id; got {fill!r}")
            vocab = len(self.adapter.tokenizer)
            if not 0 <= int(fill) < vocab:
                raise ValueError(f"fill token id {fill} is outside the vocabulary (0..{vocab - 1})")
            fill = int(fill)
        return self._chunked(ablate, lambda chunk: self._score_ablated_batch(chunk, fill))

    def _ablated_text(self, ablate: np.ndarray, fill: int | None = None) -> dict[str, torch.Tensor]:
        """:attr:`text` repeated for ``len(ablate)`` rows, the prompt tokens where ``ablate`` is True ablated."""
        text = {k: v.repeat(len(ablate), 1) for k, v in self.text.items()}
        r, c = (torch.as_tensor(a, dtype=torch.long) for a in np.nonzero(np.asarray(ablate, dtype=bool)))
        if fill is None:
            text["attention_mask"][r, c] = 0
        else:
            text["input_ids"][r, c] = fill
        return text

    @torch.inference_mode()
    def _score_ablated_batch(self, ablate: np.ndarray, fill: int | None) -> np.ndarray:
        return self._forward(self._ablated_text(ablate, fill))

    @torch.inference_mode()
    def _forward(self, text: dict[str, torch.Tensor]) -> np.ndarray:
        """Target probabilities ``float64[B, K]`` for ``B`` rows of text tensors (``[B, L]``)."""
        device = self.adapter.device
        inputs = {k: v.to(device) for k, v in text.items()}
        batch = int(inputs["input_ids"].shape[0])
        keep = self.logits_to_keep.to(device) if isinstance(self.logits_to_keep, torch.Tensor) else self.logits_to_keep
        logits = self.adapter.model(**inputs, logits_to_keep=keep, use_cache=False).logits
        n_keep = len(self.rel) if isinstance(self.logits_to_keep, torch.Tensor) else int(self.logits_to_keep)
        # Softmax in float64 at the kept positions only (K x vocabulary values).
        picked = logits[:, -n_keep:, :][:, self.rel.to(logits.device), :].double()
        logp = torch.log_softmax(picked, dim=-1)
        tgt = self.target_ids.to(logits.device)
        probs = logp.gather(-1, tgt.view(1, -1, 1).expand(batch, -1, 1)).squeeze(-1).exp()
        return probs.cpu().numpy()


#: ``tokenizer_class`` values that mean "the tokenizer is its tokenizer.json, as written".
GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_path: str | os.PathLike, *, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """The tokenizer of a checkpoint: ``AutoTokenizer``, except where ``tokenizer_config.json``
    declares the generic class (:data:`GENERIC_TOKENIZER_CLASSES`, e.g. Llama 3's
    ``PreTrainedTokenizerFast``): then its ``tokenizer.json`` is loaded as written, with that
    class. (transformers 5's ``AutoTokenizer`` would pick the model type's own class, e.g.
    ``Qwen2Tokenizer``, and rebuild a byte-level BPE from the file's vocabulary, whatever model
    the file describes.)"""
    import transformers

    from ._processors import _read_json

    declared = (_read_json(str(name_or_path), "tokenizer_config.json", kwargs) or {}).get("tokenizer_class")
    if declared in GENERIC_TOKENIZER_CLASSES:
        return transformers.PreTrainedTokenizerFast.from_pretrained(name_or_path, **kwargs)
    return transformers.AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)


class TextAdapter(ModelAdapter):
    """Adapter for a text-only causal LM (``AutoModelForCausalLM``) with a chat template.

    ``generate(prompt)`` (or ``generate(None, prompt)``) answers greedily; ``teacher_force(None,
    prompt, answer)`` scores a given answer; :meth:`scorer` gives the per-explanation
    :class:`TextScorer`. An image is refused everywhere (a ``ValueError`` saying the model is
    text-only). Explain answers with
    :func:`~mllm_attr.analysis.prompt_tokens.explain_prompt_tokens` (``image=None``).

    Args:
        model: a loaded causal LM (any device map, dtype or quantisation).
        tokenizer: its tokenizer (a processor with a ``.tokenizer`` is accepted too).
        name: a display name (the hub id or path), stored in every result.
    """

    family: ClassVar[str] = "text"
    #: text-only models are chosen by transformers' causal-LM mapping, not by model type.
    model_types: ClassVar[tuple[str, ...]] = ()
    model_class: ClassVar[str] = "AutoModelForCausalLM"

    # Shared with the multimodal adapter, by the same code (they read only self.model / self.tokenizer).
    device = HFAdapter.device
    dtype = HFAdapter.dtype
    describe = HFAdapter.describe
    default_batch_size = HFAdapter.default_batch_size
    generation_overrides = HFAdapter.generation_overrides
    generation_settings = HFAdapter.generation_settings
    greedy_generation_config = HFAdapter.greedy_generation_config
    _eos_ids = HFAdapter._eos_ids
    _check_greedy_kwargs = staticmethod(HFAdapter._check_greedy_kwargs)
    _greedy_decode = HFAdapter._greedy_decode
    _starts_with_bos = HFAdapter._starts_with_bos

    def __init__(self, model: Any, tokenizer: Any, *, name: str | None = None):
        tok = getattr(tokenizer, "tokenizer", tokenizer)
        if not callable(tok) or not hasattr(tok, "apply_chat_template"):
            raise TypeError(f"expected a transformers tokenizer; got {type(tokenizer).__name__}")
        self.model = model.eval()
        self._tokenizer = tok
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        return self._tokenizer

    @property
    def processor(self) -> Any:
        """The tokenizer (what ``HFAdapter.processor`` is for a multimodal model)."""
        return self._tokenizer

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: str | torch.dtype | None = "auto",
        device_map: str | dict | None = None,
        load_in_4bit: bool = False,
        load_in_8bit: bool = False,
        trust_remote_code: bool = False,
        processor_kwargs: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> TextAdapter:
        """Load a causal LM and its tokenizer from a hub id or a local directory.

        The options are those of :meth:`HFAdapter.from_pretrained <mllm_attr.adapters.hf.HFAdapter.from_pretrained>`
        (``processor_kwargs`` go to ``AutoTokenizer.from_pretrained``); weights from safetensors
        only unless ``use_safetensors=False``; ``trust_remote_code`` stays off unless you turn it on.
        """
        model = load_weights(
            cls.model_class,
            name_or_path,
            dtype=dtype,
            device_map=device_map,
            load_in_4bit=load_in_4bit,
            load_in_8bit=load_in_8bit,
            trust_remote_code=trust_remote_code,
            **model_kwargs,
        )
        tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code, **(processor_kwargs or {}))
        if not getattr(tokenizer, "chat_template", None):
            logger.warning("%s has no chat template: generate and explain will refuse it", name_or_path)
        return cls(model, tokenizer, name=str(name_or_path))

    # -- prompt --------------------------------------------------------------------------------
    def _refuse_image(self, image: Any, prompt: Any, method: str) -> str:
        """The prompt of a ``method(prompt)`` / ``method(None, prompt)`` call; an image is refused."""
        if prompt is None and isinstance(image, str):
            image, prompt = None, image
        if not is_no_image(image):
            raise ValueError(
                f"{self.name!r} is a text-only model ({type(self.model).__name__}): it takes no image; call "
                f"adapter.{method}(prompt) (or {method}(None, prompt)), or load a multimodal model for images"
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"expected a non-empty prompt string; got {prompt!r}")
        return prompt

    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages of one user turn: ``prompt`` as the user's text."""
        return [{"role": "user", "content": prompt}]

    def chat_text(self, prompt: str) -> str:
        """The full prompt string, chat template applied, ready for generation.

        Raises:
            ValueError: the tokenizer has no chat template.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(
                f"model {self.name!r} has no chat template; use a model with one or subclass TextAdapter.chat_text"
            )
        return self.tokenizer.apply_chat_template(self.messages(prompt), add_generation_prompt=True, tokenize=False)

    def prompt_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` (``[1, P]``) of the chat-formatted prompt; a template
        that writes the BOS itself gets no second one (the rule of :meth:`HFAdapter.prompt_inputs`)."""
        text = self.chat_text(prompt)
        extra = {"add_special_tokens": False} if self._starts_with_bos(text) else {}
        enc = self.tokenizer([text], return_tensors="pt", **extra)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    # -- contract ------------------------------------------------------------------------------
    def _generation(self, prompt: str, ids: list[int], probs: list[float], **extra: Any) -> Generation:
        tok = self.tokenizer
        special_ids = set(tok.all_special_ids)
        text, spans = token_spans(lambda x: tok.decode(x, skip_special_tokens=True), ids)
        tokens = [
            tok.convert_ids_to_tokens(int(i)) if int(i) in special_ids else text[s:e] for i, (s, e) in zip(ids, spans)
        ]
        return Generation(
            prompt=prompt,
            token_ids=tuple(int(i) for i in ids),
            tokens=tuple(tokens),
            spans=tuple(spans),
            text=text,
            probs=tuple(float(p) for p in probs),
            special=tuple(int(i) in special_ids for i in ids),
            **extra,
        )

    @torch.inference_mode()
    def generate(
        self, image: Any = None, prompt: str | None = None, *, max_new_tokens: int = 64, **gen_kwargs: Any
    ) -> Generation:
        """Greedy answer to ``prompt`` (``generate(prompt)`` or ``generate(None, prompt)``).

        Decoding is greedy with no logits processor whatever the checkpoint's ``generation_config``
        says, as for :meth:`HFAdapter.generate <mllm_attr.adapters.hf.HFAdapter.generate>`: each
        token is the argmax of the distribution that :meth:`scorer` scores, and its recorded
        probability is that distribution's. ``gen_kwargs`` that would change the chosen tokens are
        accepted only at their greedy values.

        Raises:
            ValueError: an image, an empty prompt, a non-greedy setting, or no chat template.
        """
        prompt = self._refuse_image(image, prompt, "generate")
        self._check_greedy_kwargs(gen_kwargs)
        inputs = {k: v.to(self.device) for k, v in self.prompt_inputs(prompt).items()}
        ids, probs = self._greedy_decode(inputs, max_new_tokens, gen_kwargs, set_pad=True)
        return self._generation(prompt, ids, probs)

    def teacher_force(
        self,
        image: Any = None,
        prompt: str | None = None,
        answer: str | None = None,
        *,
        generated_text: str | None = None,
    ) -> Generation:
        """Teacher-force a user-given ``answer`` to ``prompt`` (``teacher_force(None, prompt, answer)``)."""
        if answer is None and prompt is not None and isinstance(image, str):  # teacher_force(prompt, answer)
            image, prompt, answer = None, image, prompt
        prompt = self._refuse_image(image, prompt, "teacher_force")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"expected a non-empty counterfactual answer; got {answer!r}")
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"answer {answer!r} tokenises to nothing")
        placeholder = self._generation(prompt, ids, [0.0] * len(ids))
        scorer = TextScorer(self, placeholder, list(range(len(ids))), batch_size=1)
        probs = scorer.score_ablated(np.zeros((1, scorer.prompt_length), dtype=bool))[0]
        return self._generation(prompt, ids, probs.tolist(), counterfactual=True, generated_text=generated_text)

    def scorer(
        self,
        image: Any,
        generation: Generation,
        positions: Sequence[int],
        *,
        fill: Any = None,
        batch_size: int | None = None,
    ) -> TextScorer:
        """The per-explanation :class:`TextScorer`; ``image`` must be ``None`` (or :data:`NO_IMAGE`),
        ``fill`` is ignored (there are no pixels to hide).

        Raises:
            ValueError: an image was given.
        """
        self._refuse_image(image, generation.prompt, "scorer")
        return TextScorer(self, generation, positions, batch_size or self.default_batch_size())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, model_class={type(self.model).__name__})"
