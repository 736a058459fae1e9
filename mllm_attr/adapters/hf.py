"""Hugging Face transformers adapters: one generic implementation, small per-family hooks.

The scorer runs the processor ONCE per explanation (chat template, tokenisation,
image-token expansion) and then, per batch of perturbed images, only the family's
image preprocessing. The text tensors are the prompt's followed by the generated
tokens up to the last target (teacher forcing); logits are computed only at the
target positions (``logits_to_keep``), never over the whole sequence.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..image import ImageLike, image_sha256, load_image
from ..mask import compose, make_fill
from ..targets import token_spans
from ..types import Generation
from ..video import Video, is_video
from .base import ModelAdapter, Scorer, as_pil

logger = logging.getLogger(__name__)

#: Keys of a processor's output that belong to the text and are repeated across a batch.
TEXT_KEYS: tuple[str, ...] = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
#: Floating-point model inputs that are NOT pixels and keep their own dtype (never cast to the
#: model's): Qwen2.5-VL's seconds per temporal patch of a video, which set its time positions.
KEEP_DTYPE_KEYS: frozenset[str] = frozenset({"second_per_grid_ts"})

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``"bfloat16"``/``"bf16"``/``torch.bfloat16``/``"auto"``/``None`` -> what ``from_pretrained`` takes."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(set(_DTYPES))} or 'auto'")


def _supports_index_logits_to_keep() -> bool:
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return True


class HFScorer(Scorer):
    """Scores perturbed images with a transformers model; see the module docstring.

    Besides the image-only scoring of :class:`~mllm_attr.adapters.base.Scorer`,
    :meth:`score_regions_ablated` also ablates chosen prompt tokens per row (the hook that
    :mod:`mllm_attr.analysis.prompt_tokens` builds on). Public attributes: :attr:`text` (the
    prompt + teacher-forced answer tensors, ``[1, L]`` each), :attr:`prompt_length` (the
    prompt's part of them, image tokens included), :attr:`target_ids`.
    """

    def __init__(
        self,
        adapter: HFAdapter,
        image: np.ndarray,
        fill: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        batch_size: int,
        fast_path: bool | str = "auto",
    ):
        super().__init__(image, fill, positions, batch_size)
        self._check_request(adapter, generation, fast_path)
        self._set_text(adapter.prompt_inputs(as_pil(image), generation.prompt), generation)

    def _check_request(self, adapter: HFAdapter, generation: Generation, fast_path: bool | str) -> None:
        """Check ``fast_path`` and the target positions against ``generation``; set the fast-path state."""
        if fast_path not in (True, False, "auto"):
            raise ValueError(f"fast_path must be True, False or 'auto'; got {fast_path!r}")
        self.fast_path_requested = fast_path
        self.fast: dict[str, Any] | None = None
        self.fast_report: dict[str, Any] = {"used": False, "reason": "no label map registered"}
        if not self.positions:
            raise ValueError("no target positions to score")
        n = len(generation.token_ids)
        if min(self.positions) < 0 or max(self.positions) >= n:
            raise ValueError(f"target positions {self.positions} out of range for {n} generated tokens")
        self.adapter = adapter

    def _set_text(self, prompt_inputs: dict[str, torch.Tensor], generation: Generation) -> None:
        """The text tensors (prompt + teacher-forced answer up to the last target), the target ids
        and the kept-logit positions, from the processor's output for the prompt."""
        self.image_keys = tuple(k for k in prompt_inputs if k not in TEXT_KEYS)
        gen_ids = torch.tensor(generation.token_ids, dtype=torch.long)
        max_pos = max(self.positions)
        prompt_len = int(prompt_inputs["input_ids"].shape[1])
        #: tokens of the chat-formatted prompt (image tokens expanded) at the start of ``text``.
        self.prompt_length = prompt_len
        # Inputs: prompt + generated tokens before the last target; nothing after it is needed.
        self.text = self.adapter.extend_text_inputs(
            {k: prompt_inputs[k] for k in TEXT_KEYS if k in prompt_inputs}, gen_ids[:max_pos]
        )
        self.target_ids = gen_ids[list(self.positions)]
        # Logit at absolute position P + p - 1 predicts generated token p.
        absolute = [prompt_len + p - 1 for p in self.positions]
        if _supports_index_logits_to_keep():
            self.logits_to_keep: int | torch.Tensor = torch.tensor(absolute, dtype=torch.long)
            self.rel = torch.arange(len(absolute))
        else:
            first = min(absolute)
            total = prompt_len + max_pos
            self.logits_to_keep = total - first
            self.rel = torch.tensor([a - first for a in absolute], dtype=torch.long)

    # -- fast path ---------------------------------------------------------------------------
    #: A fast path is accepted ("auto") when, on the probe subsets, no target probability differs
    #: from the processor path's by more than this share of the spread of the processor path's
    #: own probe scores (or by more than ``FAST_ABS_TOL``, whichever is larger).
    FAST_REL_TOL = 0.01
    FAST_ABS_TOL = 1e-6
    #: Probe subsets per explanation (each scored on both paths, with its complement).
    FAST_PROBES = 3
    #: Highest order of the inclusion-exclusion terms (region sets mixed in one element).
    FAST_MAX_ORDER = 3
    #: At most this many higher-order region sets per region are processed at set-up.
    FAST_MAX_SETS_PER_REGION = 16

    def set_regions(self, labels: np.ndarray) -> None:
        """Register the label map and, if possible, prepare the fast path.

        The image processors of the supported families are linear in the pixels for a fixed
        image size (resize, crop, rescale, normalise, patch layout), up to the rounding and
        clipping of the resize step. A candidate ``S`` is ``x_S = B + (I − B)·1_S``, so with
        ``P`` the image processor its processed pixels are ``P(B) + Σ_{r∈S} C_r``, where
        ``C_r = P(I on r, B elsewhere) − P(B)`` is region ``r``'s contribution: exact where a
        processed element depends on one region only, and within the processor's own rounding
        and clipping where it mixes regions (region boundaries). A batch of candidates is then the
        product of the ``bool[B, n]`` region table with the contribution table, with no
        image-processor call per candidate: copies of precomputed rows for the elements of one
        region, a sparse product on the boundary elements only (see :meth:`_fast_pixels`).

        The fast path is used only where the processor's layout does not depend on the image
        content (same shape and same non-pixel outputs for every region image). A probe then
        scores a few subsets and their complements on both paths and compares the TARGET
        PROBABILITIES (and the pixels); with ``fast_path="auto"`` a difference above
        ``FAST_REL_TOL`` of the processor path's own spread falls back to the processor per
        candidate. What was used, and the measured differences, are in :attr:`fast_report`
        (stored as ``settings["fast_path"]`` with every explanation). The probe's images are
        counted in ``fast_report["probe_forwards"]``, not in the search's forwards.
        """
        super().set_regions(labels)
        self.fast = None
        if self.fast_path_requested is False:
            self.fast_report = {"used": False, "reason": "disabled"}
            return
        try:
            self.fast, self.fast_report = self._prepare_fast(labels)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the exact slow path
            self.fast, self.fast_report = None, {"used": False, "reason": f"preparation failed: {exc}"}
        if self.fast is None:
            if self.fast_path_requested is True:
                raise ValueError(f"fast path requested but unavailable: {self.fast_report['reason']}")
            logger.info("fast path not used: %s", self.fast_report["reason"])

    def _pixel_outputs(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(images), max(1, self.batch_size)):
            chunk = images[start : start + self.batch_size]
            feats = self.adapter.image_inputs([as_pil(im) for im in chunk])
            out.extend(_split_images(feats, len(chunk)))
        return out

    def _prepare_fast(self, labels: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Contribution tables of the fast path (inclusion-exclusion up to ``FAST_MAX_ORDER``).

        With ``f(T) = P(I on T, B elsewhere)``, a processed element ``o`` depends only on the set
        ``R_o`` of regions its resampling support touches, and for every subset
        ``f(S)_o = Σ_{U ⊆ S ∩ R_o} μ(U)_o`` with the Möbius terms
        ``μ(U) = Σ_{V ⊆ U} (−1)^{|U − V|} f(V)``. First-order terms (``C_r``) are zero away from
        region ``r``; a term of order ``k`` is non-zero only on elements that mix ``k`` regions
        (boundaries, junctions), where it carries exactly what rounding and clipping make
        non-additive. Terms are computed for every region set that shares an element, up to
        ``FAST_MAX_ORDER``; elements mixing more regions than that keep a residual error, which
        the probe measures.
        """
        import itertools

        import scipy.sparse

        n = int(labels.max()) + 1
        key = "pixel_values"

        def composite(regions: tuple[int, ...]) -> np.ndarray:
            return np.where(np.isin(labels, regions)[..., None], self.image, self.fill)

        ends = self._pixel_outputs([self.image, self.fill])
        if key not in ends[0]:
            return None, {"used": False, "reason": "image processor returns no pixel_values"}
        const = {k: v for k, v in ends[0].items() if k != key}
        shape, dtype, keys = tuple(ends[0][key].shape), ends[0][key].dtype, set(ends[0])
        base = ends[1][key].double().reshape(-1).numpy()
        # f(V) − f(∅) for every processed region set V: sparse (zero away from V's regions), so
        # set-up memory stays about the image's size times the number of sets, not dense tables.
        delta: dict[tuple[int, ...], Any] = {}

        def process(sets: list[tuple[int, ...]]) -> str | None:
            for start in range(0, len(sets), max(1, self.batch_size)):
                chunk = sets[start : start + self.batch_size]
                for u, o in zip(chunk, self._pixel_outputs([composite(u) for u in chunk])):
                    if tuple(o[key].shape) != shape:
                        return "pixel_values shape depends on the image content"
                    if set(o) != keys or any(not torch.equal(o[k], v) for k, v in const.items()):
                        return "image-side inputs other than pixel_values depend on the image content"
                    # The nonzeros of the float64 difference, without forming it densely.
                    flat = o[key].double().reshape(-1).numpy()
                    cols = np.flatnonzero(flat != base)
                    delta[u] = scipy.sparse.csr_matrix(
                        (flat[cols] - base[cols], cols, [0, cols.size]), shape=(1, base.size)
                    )
            return None

        problem = (
            process([(r,) for r in range(n)])
            if tuple(ends[1][key].shape) == shape
            else ("pixel_values shape depends on the image content")
        )
        if problem:
            return None, {"used": False, "reason": problem}
        first = scipy.sparse.vstack([delta[(r,)] for r in range(n)], format="csr")
        # Which regions each processed element depends on (from the first-order terms): their
        # number from the column pointers; the region tuples only for the boundary elements.
        csc = first.tocsc()
        per_element = np.diff(csc.indptr)
        mixed = _boundary_region_sets(csc, per_element)
        orders: list[tuple[list[tuple[int, ...]], Any]] = [([(r,) for r in range(n)], first)]
        budget = self.FAST_MAX_SETS_PER_REGION * n
        for k in range(2, self.FAST_MAX_ORDER + 1):
            sets = sorted({c for t in mixed if len(t) >= k for c in itertools.combinations(t, k)})
            if not sets or len(sets) > budget:
                break
            budget -= len(sets)
            problem = process(sets)
            if problem:
                return None, {"used": False, "reason": problem}
            rows = []
            for u in sets:
                # μ(U) = Σ_{∅≠V⊆U} (−1)^{|U−V|} (f(V) − f(∅)); the f(∅) terms cancel for |U| >= 1.
                mu = sum(
                    (
                        (-1.0) ** (k - size) * delta[v]
                        for size in range(1, k + 1)
                        for v in itertools.combinations(u, size)
                    ),
                    scipy.sparse.csr_matrix((1, base.size)),
                )
                mu.eliminate_zeros()
                rows.append(mu)
            orders.append((sets, scipy.sparse.vstack(rows, format="csr")))
        max_order = len(orders)
        fast = {
            "base": base,
            "orders": [(np.asarray(sets, dtype=np.int64), table) for sets, table in orders],
            "dtype": dtype,
            "const": const,
            "shape": shape,
            "setup_images": len(delta) + 2,
            "residual_elements": int((per_element > max_order).sum()),
            "max_order": max_order,
        }
        fast.update(_assembly_plan(fast, csc, per_element, n))
        return self._probe(fast, labels)

    def _probe_table(self, n: int) -> np.ndarray:
        """``bool[2 * FAST_PROBES, n]``: the probe's region subsets (sizes 1 to n/2, a fixed seed)
        and their complements, the same for every scorer of ``n`` regions."""
        rng = np.random.default_rng(12345)
        sizes = np.linspace(1, max(1, n // 2), self.FAST_PROBES).round().astype(int)
        table = np.zeros((len(sizes), n), dtype=bool)
        for row, size in enumerate(sizes):
            table[row, rng.choice(n, size=int(size), replace=False)] = True
        return np.concatenate([table, ~table])

    def _probe(self, fast: dict[str, Any], labels: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Score probe subsets (and complements) on both paths; accept or refuse ``fast``."""
        table = self._probe_table(int(labels.max()) + 1)
        images = [np.where(t[labels][..., None], self.image, self.fill) for t in table]
        slow_pv = torch.cat([o["pixel_values"] for o in self._pixel_outputs(images)])
        fast_pv = self._fast_pixels(fast, table)
        span = float((slow_pv.double().max() - slow_pv.double().min()).clamp_min(1e-12))
        pixel_err = float((fast_pv.double() - slow_pv.double()).abs().max()) / span
        with torch.inference_mode():
            slow = self._score_chunks({"pixel_values": slow_pv}, fast["const"], len(table))
            quick = self._score_chunks({"pixel_values": fast_pv}, fast["const"], len(table))
        spread = float((slow.max(axis=0) - slow.min(axis=0)).max())
        prob_err = float(np.abs(quick - slow).max())
        tol = max(self.FAST_ABS_TOL, self.FAST_REL_TOL * spread)
        report = {
            "used": True,
            "method": "inclusion-exclusion over region sets",
            "probe_subsets": int(len(table)),
            "probe_forwards": int(2 * len(table)),
            "probe_max_abs_prob_diff": prob_err,
            "probe_prob_spread": spread,
            "probe_tolerance": tol,
            "probe_max_pixel_diff_rel": pixel_err,
            "setup_images": int(fast["setup_images"]),
            "max_order": int(fast["max_order"]),
            "residual_elements": int(fast["residual_elements"]),
        }
        if prob_err > tol:
            reason = (
                f"probe: target probabilities differ from the processor path by up to {prob_err:.3g} "
                f"(tolerance {tol:.3g}, {self.FAST_REL_TOL:g} of the probe spread {spread:.3g})"
            )
            return None, {**report, "used": False, "reason": reason}
        return fast, report

    @staticmethod
    def _fast_pixels(fast: dict[str, Any], table: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``pixel_values`` of every candidate row of ``table`` (``bool[B, n]``), batched like the processor's.

        Each element is ``base + Σ_orders Σ_{U ⊆ shown} μ(U)`` in float64, rounded once to the
        processor's dtype (``dtype`` overrides it, e.g. ``torch.float64`` for the unrounded
        values). An element that depends on one region only, with no higher-order term, takes one
        of two values: ``base`` or ``base + C_r``, both computed and rounded at set-up. A row is
        therefore a copy of the nearest of the all-hidden row, the all-shown row and the previous
        row, with only the elements of the regions that differ from it overwritten (the
        candidates of a greedy step differ in one or two regions). The other elements (boundaries,
        junctions, higher-order terms: ``fast["mixed_columns"]``) are summed as sparse products
        restricted to their columns, in float64 and in the order of the full product. The values
        are bit for bit those of the dense ``base + Σ W·T`` (then rounded); the row copies and
        overwrites move raw bits, so they hold for any dtype.
        """
        table = np.asarray(table, dtype=bool)
        dtype = fast["dtype"] if dtype is None else dtype
        values = fast["values"] if dtype == fast["dtype"] else _raw_values(fast, dtype)
        hidden, shown = values["hidden"], values["shown"]
        index, offsets = fast["index"], fast["offsets"]
        sizes = np.diff(offsets)
        out = np.empty((len(table), values["hidden_row"].size), dtype=hidden.dtype)
        for b, row in enumerate(table):
            # (source row, regions whose elements differ from it): nothing shown, all shown, previous row.
            starts = [(values["hidden_row"], row), (values["shown_row"], ~row)]
            if b:
                starts.append((out[b - 1], row ^ table[b - 1]))
            source, differ = min(starts, key=lambda start: int(sizes[start[1]].sum()))
            np.copyto(out[b], source)
            target = out[b]
            for r in np.flatnonzero(differ):
                part = slice(offsets[r], offsets[r + 1])
                target[index[part]] = (shown if row[r] else hidden)[part]
        columns = fast["mixed_columns"]
        if columns.size:
            mixed = np.broadcast_to(fast["mixed_base"], (len(table), columns.size)).copy()
            for sets, terms in fast["mixed_orders"]:
                # A term of region set U counts for a candidate that shows every region of U.
                weights = table[:, sets].all(axis=2).astype(np.float64)
                mixed += np.asarray(terms.T.dot(weights.T)).T
            out[:, columns] = _raw(mixed, dtype)
        shape = fast["shape"]
        return torch.from_numpy(out).view(dtype).reshape(len(table) * shape[0], *shape[1:])

    def _score_chunks(
        self, pixel_inputs: dict[str, torch.Tensor], const: dict[str, torch.Tensor], batch: int
    ) -> np.ndarray:
        """Forward ``batch`` images whose pixel tensors are given, in chunks of ``batch_size`` (not counted)."""
        per = pixel_inputs["pixel_values"].shape[0] // batch
        out = []
        for start in range(0, batch, self.batch_size):
            m = min(self.batch_size, batch - start)
            inputs = {"pixel_values": pixel_inputs["pixel_values"][start * per : (start + m) * per]}
            for k, v in const.items():
                inputs[k] = torch.cat([v] * m, dim=0)
            out.append(self._forward(inputs, m))
        return np.concatenate(out)

    def _region_pixel_inputs(self, table: np.ndarray) -> dict[str, torch.Tensor]:
        """The image-side model inputs of the ``bool[B, n]`` region rows: the fast path's when it is
        prepared, else the image processor's on the composed images (what :meth:`score_regions` feeds)."""
        if self.fast is None:
            images = [as_pil(compose(self.image, self.fill, row[self.labels])) for row in table]
            return self.adapter.image_inputs(images)
        inputs = {"pixel_values": self._fast_pixels(self.fast, table)}
        for k, v in self.fast["const"].items():
            inputs[k] = torch.cat([v] * len(table), dim=0)
        return inputs

    def _score_regions_batch(self, table: np.ndarray) -> np.ndarray:
        if self.fast is None:
            return super()._score_regions_batch(table)
        with torch.inference_mode():
            return self._forward(self._region_pixel_inputs(table), len(table))

    # -- prompt-token ablation (the hook of analysis.prompt_tokens) ------------------------------
    def score_regions_ablated(self, table: np.ndarray, ablate: np.ndarray, *, fill: int | None = None) -> np.ndarray:
        """Score region subsets with, per row, some prompt tokens ablated: ``float64[B, K]``.

        Args:
            table: ``bool[B, n_regions]`` regions shown, as for :meth:`score_regions` (same checks).
            ablate: ``bool[B, prompt_length]``; ``ablate[b, t]`` ablates token ``t`` of the prompt
                (an index into :attr:`text` ``["input_ids"]``, image tokens included) in row ``b``.
            fill: ``None``: an ablated token is removed from attention (``attention_mask = 0``);
                an integer: its id is replaced by the token id ``fill``.

        The sequence length, the image-token positions and the positions of the target logits
        are those of the unablated input; a row that ablates nothing scores as
        :meth:`score_regions` scores it. Rows are batched, checked and counted as there.

        Raises:
            RuntimeError: no label map registered.
            ValueError: a table or ``ablate`` of the wrong shape, or ``fill`` outside the vocabulary.
            TypeError: ``fill`` is not an integer.
        """
        table = self._region_table(table, "score_regions_ablated")
        ablate = np.asarray(ablate, dtype=bool)
        if ablate.ndim == 1:
            ablate = ablate[None]
        if ablate.shape != (len(table), self.prompt_length):
            raise ValueError(
                f"expected an ablation table of shape {(len(table), self.prompt_length)} (one row per region row, "
                f"one column per prompt token); got shape {ablate.shape}"
            )
        if fill is not None:
            if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (int, np.integer)):
                raise TypeError(f"fill must be None or an integer token id; got {fill!r}")
            vocab = len(self.adapter.tokenizer)
            if not 0 <= int(fill) < vocab:
                raise ValueError(f"fill token id {fill} is outside the vocabulary (0..{vocab - 1})")
            fill = int(fill)
        elif "attention_mask" not in self.text:
            raise ValueError("the processor gives no attention_mask; ablate by token replacement (fill=<token id>)")
        n = table.shape[1]
        # Region and ablation columns travel in one table so that the chunks keep them together.
        rows = np.concatenate([table, ablate], axis=1)
        return self._chunked(rows, lambda chunk: self._score_ablated_batch(chunk[:, :n], chunk[:, n:], fill))

    def _ablated_text(self, ablate: np.ndarray, fill: int | None = None) -> dict[str, torch.Tensor]:
        """The text tensors of :attr:`text` repeated for ``len(ablate)`` rows, with the prompt tokens
        where ``ablate`` (``bool[B, prompt_length]``) is True ablated (see :meth:`score_regions_ablated`)."""
        rows = len(ablate)
        text = {k: v.repeat(rows, 1) for k, v in self.text.items()}
        r, c = (torch.as_tensor(a, dtype=torch.long) for a in np.nonzero(np.asarray(ablate, dtype=bool)))
        if fill is None:
            text["attention_mask"][r, c] = 0
        else:
            text["input_ids"][r, c] = fill
        return text

    @torch.inference_mode()
    def _score_ablated_batch(self, table: np.ndarray, ablate: np.ndarray, fill: int | None) -> np.ndarray:
        return self._forward(self._region_pixel_inputs(table), len(table), text=self._ablated_text(ablate, fill))

    @torch.inference_mode()
    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        pixel_inputs = self.adapter.image_inputs([as_pil(im) for im in images])
        return self._forward(pixel_inputs, len(images))

    @torch.inference_mode()
    def _forward(
        self, pixel_inputs: dict[str, torch.Tensor], batch: int, text: dict[str, torch.Tensor] | None = None
    ) -> np.ndarray:
        """Target probabilities ``float64[batch, K]`` for ``batch`` rows of image-side inputs.

        ``text``: per-row text tensors (``[batch, L]``, the keys of :attr:`text`) used instead of
        :attr:`text` repeated (e.g. :meth:`_ablated_text`); the targets and kept logits do not change.
        """
        model = self.adapter.model
        device = self.adapter.device
        if text is None:
            inputs: dict[str, Any] = {k: v.to(device).repeat(batch, 1) for k, v in self.text.items()}
        else:
            inputs = {k: v.to(device) for k, v in text.items()}
        for key, value in pixel_inputs.items():
            if torch.is_floating_point(value) and key not in KEEP_DTYPE_KEYS:
                value = value.to(device=device, dtype=self.adapter.dtype)
            else:
                value = value.to(device)
            inputs[key] = value
        keep = self.logits_to_keep.to(device) if isinstance(self.logits_to_keep, torch.Tensor) else self.logits_to_keep
        out = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = out.logits
        n_keep = len(self.rel) if isinstance(self.logits_to_keep, torch.Tensor) else int(self.logits_to_keep)
        # Softmax in float64 at the kept positions only: near-ties between candidates are then
        # decided by the model, not by float32 rounding (K x vocabulary values, cheap).
        logits = logits[:, -n_keep:, :]
        picked = logits[:, self.rel.to(logits.device), :].double()
        logp = torch.log_softmax(picked, dim=-1)
        tgt = self.target_ids.to(logits.device)
        probs = logp.gather(-1, tgt.view(1, -1, 1).expand(batch, -1, 1)).squeeze(-1).exp()
        return probs.double().cpu().numpy()


# -- fast-path helpers (HFScorer._prepare_fast / _fast_pixels) -------------------------------------
#: Integer dtypes by item size: the fast path copies pixel values as raw bits.
_RAW_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _raw(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """float64 ``values`` rounded to ``dtype`` as torch rounds them, returned as their raw bits."""
    rounded = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(dtype)
    return rounded.view(_RAW_INT[rounded.element_size()]).numpy()


def _boundary_region_sets(csc: Any, per_element: np.ndarray) -> set[tuple[int, ...]]:
    """The distinct region tuples of the elements that depend on more than one region.

    ``csc``: the first-order terms (``n × elements``, CSC), ``per_element``: regions per element
    (``np.diff(csc.indptr)``). Only boundary columns are visited, grouped by their region count.
    """
    columns = np.flatnonzero(per_element > 1)
    counts = per_element[columns]
    sets: set[tuple[int, ...]] = set()
    for k in np.unique(counts):
        group = columns[counts == k]
        regions = csc.indices[csc.indptr[group][:, None] + np.arange(k)]
        sets.update(map(tuple, np.unique(regions, axis=0).tolist()))
    return sets


def _assembly_plan(fast: dict[str, Any], csc: Any, per_element: np.ndarray, n: int) -> dict[str, Any]:
    """What :meth:`HFScorer._fast_pixels` assembles from, given the terms in ``fast``.

    Elements with one region ``r`` and no higher-order term (``single``) are grouped by region:
    ``index[offsets[r]:offsets[r + 1]]`` are region ``r``'s, ``shown64`` their value
    ``base + C_r``. Every other element with a term (boundaries, junctions, higher orders) is a
    ``mixed_columns`` column, with the terms restricted to those columns in ``mixed_orders``
    (rows and their order kept). Elements without any term are ``base`` in every candidate.
    """
    base = fast["base"]
    higher = np.zeros(base.size, dtype=bool)
    for _, terms in fast["orders"][1:]:
        higher[terms.indices] = True
    single = (per_element == 1) & ~higher
    elements = np.flatnonzero(single)
    starts = csc.indptr[elements]
    regions = csc.indices[starts]
    order = np.argsort(regions, kind="stable")
    elements, regions, starts = elements[order], regions[order], starts[order]
    columns = np.flatnonzero(~single & ((per_element > 0) | higher))
    plan = {
        "index": elements,
        "offsets": np.searchsorted(regions, np.arange(n + 1)),
        "shown64": base[elements] + csc.data[starts],
        "mixed_columns": columns,
        "mixed_base": base[columns],
        "mixed_orders": [(sets, terms[:, columns].tocsr()) for sets, terms in fast["orders"]],
    }
    plan["values"] = _raw_values({**fast, **plan}, fast["dtype"])
    return plan


def _raw_values(fast: dict[str, Any], dtype: torch.dtype) -> dict[str, np.ndarray]:
    """The rounded values the fast path copies, as raw bits of ``dtype``: the rows with no region and
    with every region shown, and the single-region elements' values when hidden and when shown."""
    hidden_row = _raw(fast["base"], dtype)
    shown = _raw(fast["shown64"], dtype)
    shown_row = hidden_row.copy()
    shown_row[fast["index"]] = shown
    return {"hidden_row": hidden_row, "shown_row": shown_row, "hidden": hidden_row[fast["index"]], "shown": shown}


def _split_images(feats: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """Split a batched image-processor output into per-image outputs (inverse of ``torch.cat``)."""
    per: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for k, v in feats.items():
        if not isinstance(v, torch.Tensor):
            continue
        if v.shape[0] % n:
            raise ValueError(f"cannot split image output {k!r} of shape {tuple(v.shape)} into {n} images")
        for i, part in enumerate(torch.chunk(v, n, dim=0)):
            per[i][k] = part
    return per


#: What :meth:`HFAdapter.generate` sets over (a copy of) the checkpoint's ``generation_config``:
#: greedy search, and every logits processor off. The chosen token is then the argmax of the
#: model's own next-token distribution, which is what teacher forcing scores (checkpoints such
#: as Qwen2.5-VL-Instruct ship ``do_sample: true`` with a ``repetition_penalty`` of 1.05).
#: ``None`` = unset (sampling parameters, which greedy search does not read).
GREEDY_GENERATION: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "num_beam_groups": 1,
    "num_return_sequences": 1,
    "penalty_alpha": None,
    "dola_layers": None,
    "temperature": None,
    "top_k": None,
    "top_p": None,
    "min_p": None,
    "top_h": None,
    "typical_p": None,
    "epsilon_cutoff": None,
    "eta_cutoff": None,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "diversity_penalty": 0.0,
    "length_penalty": None,
    "bad_words_ids": None,
    "force_words_ids": None,
    "constraints": None,
    "sequence_bias": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "min_length": 0,
    "min_new_tokens": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "guidance_scale": None,
    "watermarking_config": None,
    "token_healing": False,
}

#: Values that mean "off" for a setting, besides ``None`` and its entry in ``GREEDY_GENERATION``.
_NEUTRAL_EQUIVALENTS: dict[str, tuple[Any, ...]] = {
    "temperature": (1.0,),
    "top_p": (1.0,),
    "typical_p": (1.0,),
    "top_k": (0, 50),  # 50 is transformers' default, read only when sampling
    "min_p": (0.0,),
    "epsilon_cutoff": (0.0,),
    "eta_cutoff": (0.0,),
    "length_penalty": (1.0,),
    "min_new_tokens": (0,),
    "bad_words_ids": ([],),
    "suppress_tokens": ([],),
    "begin_suppress_tokens": ([],),
}


def _is_neutral(key: str, value: Any) -> bool:
    if value is None or value == GREEDY_GENERATION[key]:
        return True
    return any(value == v for v in _NEUTRAL_EQUIVALENTS.get(key, ()))


def load_weights(
    model_class: str,
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = "auto",
    device_map: str | dict | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    trust_remote_code: bool = False,
    **model_kwargs: Any,
) -> Any:
    """``transformers.<model_class>.from_pretrained`` with the package's loading rules: the dtype
    parsed, bitsandbytes 4/8-bit, ``device_map`` (accelerate), and weights from safetensors only
    unless ``use_safetensors=False`` (a pickle-based ``pytorch_model.bin`` can run code).

    Raises:
        ValueError: both 4- and 8-bit asked for, or no safetensors weights in the checkpoint.
    """
    import transformers

    if load_in_4bit and load_in_8bit:
        raise ValueError("choose at most one of load_in_4bit and load_in_8bit")
    kwargs: dict[str, Any] = dict(model_kwargs)
    torch_dtype = parse_dtype(dtype)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if load_in_4bit or load_in_8bit:
        compute = torch_dtype if isinstance(torch_dtype, torch.dtype) else torch.float32
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit, bnb_4bit_compute_dtype=compute
        )
    kwargs.setdefault("use_safetensors", True)
    model_cls = getattr(transformers, model_class)
    try:
        return model_cls.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as exc:
        if kwargs["use_safetensors"] and "safetensors" in str(exc).lower():
            raise ValueError(
                f"no safetensors weights found for {str(name_or_path)!r}; mllm_attr loads model weights only "
                "from *.safetensors files (pickle-based .bin/.pt checkpoints can run code when loaded). "
                "Convert the checkpoint to safetensors, or pass use_safetensors=False if you trust it"
            ) from exc
        raise


class HFAdapter(ModelAdapter):
    """Generic adapter for a transformers image-text-to-text model with a chat template.

    Args:
        model: a loaded ``PreTrainedModel`` (any device map, dtype or quantisation).
        processor: its ``ProcessorMixin``.
        name: a display name (the hub id or path), stored in every result.
    """

    family: ClassVar[str] = "auto"
    #: ``config.model_type`` values this adapter is chosen for.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: the transformers class used by :meth:`from_pretrained`.
    model_class: ClassVar[str] = "AutoModelForImageTextToText"

    def __init__(self, model: Any, processor: Any, *, name: str | None = None):
        if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
            raise TypeError(
                f"expected a multimodal processor with .image_processor and .tokenizer; got {type(processor).__name__}"
            )
        self.model = model.eval()
        self.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        #: Frame pixel bounds of the checkpoint's video processor (``from_pretrained`` reads them from
        #: ``video_preprocessor_config.json``); None: the image processor's own.
        self.video_size: dict[str, int] | None = None

    # -- loading -----------------------------------------------------------------------------
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
    ) -> HFAdapter:
        """Load model and processor from a hub id or a local directory.

        ``load_in_4bit``/``load_in_8bit`` use bitsandbytes; ``device_map="auto"`` uses accelerate.
        ``trust_remote_code`` stays off unless you turn it on.
        """
        from ._processors import load_processor, video_size_bounds

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
        processor = load_processor(name_or_path, trust_remote_code=trust_remote_code, **(processor_kwargs or {}))
        adapter = cls(model, processor, name=str(name_or_path))
        where = ("revision", "subfolder", "cache_dir", "token")
        hub = {k: v for k, v in (processor_kwargs or {}).items() if k in where}
        adapter.video_size = video_size_bounds(name_or_path, **hub)
        return adapter

    # -- properties ----------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer."""
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter (where inputs are sent)."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model's first floating-point parameter if float16, bfloat16 or float32; else float32."""
        for p in self.model.parameters():
            if torch.is_floating_point(p):
                return p.dtype if p.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float32
        return torch.float32

    def describe(self) -> dict[str, Any]:
        """Settings stored with results: family, adapter class, model name and class, dtype and device."""
        return {
            "family": self.family,
            "adapter": type(self).__name__,
            "model": self.name,
            "model_class": type(self.model).__name__,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "generation": self.generation_settings(),
        }

    def default_batch_size(self) -> int:
        """A batch size that fits the free memory of the model's device (heuristic)."""
        cfg = getattr(self.model.config, "text_config", self.model.config)
        hidden = int(getattr(cfg, "hidden_size", 1024))
        layers = int(getattr(cfg, "num_hidden_layers", 16))
        # Rough activation bytes per image: a few copies of (tokens x hidden) per layer.
        per_image = 4 * 1024 * hidden * 4 * max(layers, 1) // 4
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free * 0.5
        else:
            budget = _available_ram() * 0.25
        return int(max(1, min(32, budget // max(per_image, 1))))

    # -- family hooks ------------------------------------------------------------------------
    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages of one user turn: an image placeholder followed by ``prompt``."""
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]

    def chat_text(self, prompt: str) -> str:
        """The full prompt string, chat template applied, ready for generation."""
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise ValueError(
                f"model {self.name!r} has no chat template; use a model with one or subclass HFAdapter.chat_text"
            )
        return self.processor.apply_chat_template(self.messages(prompt), add_generation_prompt=True, tokenize=False)

    def prompt_inputs(self, image: Any, prompt: str) -> dict[str, torch.Tensor]:
        """Processor output (text + image tensors) for one image and the chat-formatted prompt.

        A rendered prompt that already starts with the tokenizer's BOS (templates that write
        ``{{ bos_token }}``: Idefics3, SmolVLM, Gemma 3) is tokenised with
        ``add_special_tokens=False``, the rule of transformers' own
        ``apply_chat_template(tokenize=True)``: one BOS, never two.
        """
        if is_image_list(image):
            return self.multi_image_prompt_inputs(image, prompt)
        text = self.chat_text(prompt)
        extra = {"add_special_tokens": False} if self._starts_with_bos(text) else {}
        out = dict(self.processor(images=[image], text=[text], return_tensors="pt", **extra))
        out.pop("labels", None)
        return out

    # -- several images in one prompt ----------------------------------------------------------
    def supports_multi_image(self) -> bool:
        """Whether this family takes several images in one prompt (:data:`MULTI_IMAGE_FAMILIES`;
        the generic ``"auto"`` adapter is tried)."""
        return self.family in MULTI_IMAGE_FAMILIES or self.family == "auto"

    def check_multi_image(self, n_images: int) -> None:
        """Refuse a prompt of ``n_images`` images that this family cannot take.

        Raises:
            ValueError: no image, or several for a family outside :data:`MULTI_IMAGE_FAMILIES`
                (the message names the family and lists those that can).
        """
        if n_images < 1:
            raise ValueError("expected at least one image; got an empty list")
        if n_images > 1 and not self.supports_multi_image():
            raise ValueError(
                f"model family {self.family!r} ({type(self).__name__}) is not supported with several images in one "
                f"prompt; families that are: {', '.join(sorted(MULTI_IMAGE_FAMILIES))}"
            )

    def multi_image_messages(self, prompt: str, n_images: int) -> list[dict[str, Any]]:
        """The chat messages of one user turn with ``n_images`` image placeholders, in order, then ``prompt``."""
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        return [{"role": "user", "content": [*content, {"type": "text", "text": prompt}]}]

    def multi_image_chat_text(self, prompt: str, n_images: int) -> str:
        """The prompt string for ``n_images`` images (one image: exactly :meth:`chat_text`)."""
        if n_images == 1:
            return self.chat_text(prompt)
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise ValueError(
                f"model {self.name!r} has no chat template: there is no way to place {n_images} images in its prompt"
            )
        messages = self.multi_image_messages(prompt, n_images)
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def multi_image_prompt_inputs(self, images: Sequence[Any], prompt: str) -> dict[str, torch.Tensor]:
        """Processor output for several images (in order, one image entry each in the chat template)
        and the prompt: the processor gets the list (see :meth:`prompt_inputs` for the BOS rule)."""
        images = list(images)
        self.check_multi_image(len(images))
        text = self.multi_image_chat_text(prompt, len(images))
        extra = {"add_special_tokens": False} if self._starts_with_bos(text) else {}
        out = dict(self.processor(images=[as_pil(im) for im in images], text=[text], return_tensors="pt", **extra))
        out.pop("labels", None)
        return out

    def multi_image_scorer(
        self,
        images: Sequence[np.ndarray],
        generation: Generation,
        positions: Sequence[int],
        *,
        fills: Sequence[np.ndarray] | None = None,
        batch_size: int | None = None,
        fast_path: bool | str = "auto",
    ) -> HFMultiImageScorer:
        """Per-explanation scorer of several images in one prompt (:class:`HFMultiImageScorer`);
        ``fills`` default to black, ``fast_path`` as for :meth:`scorer`."""
        arrays = [np.asarray(im) for im in images]
        base = [make_fill(im) for im in arrays] if fills is None else [np.asarray(f) for f in fills]
        bs = batch_size or self.default_batch_size()
        return HFMultiImageScorer(self, arrays, base, generation, positions, bs, fast_path)

    # -- video -------------------------------------------------------------------------------
    def supports_video(self) -> bool:
        """Whether this family takes a video (:data:`VIDEO_FAMILIES`)."""
        return self.family in VIDEO_FAMILIES

    def check_video(self, video: Any = None) -> None:
        """Refuse what this adapter cannot take as a video (``video=None``: check the family only).

        Raises:
            TypeError: ``video`` is not a :class:`~mllm_attr.video.Video` (see :func:`~mllm_attr.video.load_video`).
            ValueError: a family outside :data:`VIDEO_FAMILIES` (the message lists those that are).
        """
        if video is not None and not is_video(video):
            raise TypeError(f"expected a Video (mllm_attr.load_video); got {type(video).__name__}")
        if not self.supports_video():
            raise ValueError(
                f"model family {self.family!r} ({type(self).__name__}) is not supported with video input; families "
                f"that are: {', '.join(sorted(VIDEO_FAMILIES))} (a list of frames can go in as several images "
                "with families that take them, which is not the model's video input)"
            )

    def video_messages(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages of one user turn: a video placeholder followed by ``prompt``."""
        return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]

    def _video_token(self) -> str:
        token = getattr(self.processor, "video_token", None) or getattr(self.tokenizer, "video_token", None)
        if not token:
            raise ValueError(f"model {self.name!r}: the processor names no video token")
        return str(token)

    def video_chat_text(self, prompt: str) -> str:
        """The prompt string with ONE video placeholder token (expanded by :meth:`video_prompt_inputs`).

        Raises:
            ValueError: no chat template, or a template that renders no (or several) video tokens.
        """
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise ValueError(
                f"model {self.name!r} has no chat template: there is no way to place a video in its prompt"
            )
        text = self.processor.apply_chat_template(
            self.video_messages(prompt), add_generation_prompt=True, tokenize=False
        )
        token = self._video_token()
        if text.count(token) != 1:
            raise ValueError(
                f"model {self.name!r}: its chat template renders {text.count(token)} video tokens {token!r} for one "
                "video entry (expected 1): the template has no video entry"
            )
        return text

    def _video_geometry(self) -> tuple[int, int, int]:
        """``(patch_size, temporal_patch_size, merge_size)`` of the family's vision input."""
        ip = self.processor.image_processor
        return int(ip.patch_size), int(ip.temporal_patch_size), int(ip.merge_size)

    def video_frame_inputs(self, frames: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Each frame's tensors in the layout of a one-frame video, from the family's image processor.

        Qwen-VL: its ``pixel_values`` ``[F * N, D]`` (the frame in every temporal slot of a patch) and
        ``image_grid_thw`` ``[F, 3]``: the resize rule and patch layout of their video processors,
        frame by frame; resampling (PIL here), normalisation and per-frame caps may differ (README,
        "Video"). LLaVA-OneVision: the first view of its
        image processor's output, ``pixel_values`` ``[F, C, S, S]`` (the frame resized to the
        square input size, as its video processor resizes frames), without the anyres crops.
        """
        images = [as_pil(f) for f in frames]
        if self.family == "llava_onevision":
            # One anyres grid, the input square itself: the first view is all that is used.
            ip = self.processor.image_processor
            square = [[int(ip.size["height"]), int(ip.size["width"])]]
            out = self.processor.image_processor(images=images, return_tensors="pt", image_grid_pinpoints=square)
            return {"pixel_values": out["pixel_values"][:, 0].contiguous()}
        bounds = self.frame_size_bounds()
        if bounds is None:
            return self.image_inputs(images)
        kwargs = {**self.processor_image_kwargs(), "size": dict(bounds)}
        return dict(self.processor.image_processor(images=images, return_tensors="pt", **kwargs))

    def frame_size_bounds(self) -> dict[str, int] | None:
        """The pixel bounds frames are resized within (Qwen-VL): the processor's video processor's when
        it has one (torchvision present), else :attr:`video_size` (the checkpoint's video processor
        configuration), else None (the image processor's own bounds)."""
        video_processor = getattr(self.processor, "video_processor", None)
        size = getattr(video_processor, "size", None)
        low, high = getattr(size, "shortest_edge", None), getattr(size, "longest_edge", None)
        if isinstance(low, int) and isinstance(high, int):
            return {"shortest_edge": low, "longest_edge": high}
        return self.video_size

    def assemble_video(
        self, pixels: torch.Tensor, const: dict[str, torch.Tensor], fps: float
    ) -> dict[str, torch.Tensor]:
        """The video inputs of ``B`` candidates from their frames' tensors.

        ``pixels``: ``[B, F, *frame]``, each frame's ``pixel_values`` from :meth:`video_frame_inputs`
        (``frame`` its shape for one frame); ``const``: the other tensors of one frame (Qwen-VL's
        ``image_grid_thw``).

        Qwen-VL: ``frame = (N, D)``, ``N`` patches of ``D = C * T * p * p`` values with the frame in
        each of the ``T`` temporal slots. Frame ``f`` goes to temporal slot ``f mod T`` of temporal
        patch ``f // T``; a frame count that is not a multiple of ``T`` is padded with copies of the
        last frame (as the video processors pad). Returns ``pixel_values_videos`` ``[B * G * N, D]``
        (``G = ceil(F / T)``), ``video_grid_thw`` ``[B, 3]`` and, for Qwen2.5-VL,
        ``second_per_grid_ts`` ``[B]`` = ``T / fps``. LLaVA-OneVision: ``frame = (1, C, S, S)`` (one view);
        ``pixel_values_videos`` ``[B, F, C, S, S]``.
        """
        if self.family == "llava_onevision":
            return {"pixel_values_videos": pixels[:, :, 0].contiguous()}  # each frame's one view
        patch, temporal, _ = self._video_geometry()
        b, f, n, d = pixels.shape
        channels = d // (temporal * patch * patch)
        if channels * temporal * patch * patch != d:
            raise ValueError(f"frame rows of {d} values do not split into temporal patches of {temporal} x {patch}^2")
        x = pixels.reshape(b, f, n, channels, temporal, patch * patch)[:, :, :, :, 0, :]
        pad = -f % temporal
        if pad:
            x = torch.cat([x, x[:, -1:].expand(b, pad, *x.shape[2:])], dim=1)
        g = (f + pad) // temporal
        x = x.reshape(b, g, temporal, n, channels, patch * patch).permute(0, 1, 3, 4, 2, 5)
        grid = const["image_grid_thw"][0]
        out = {
            "pixel_values_videos": x.reshape(b * g * n, d).contiguous(),
            "video_grid_thw": torch.tensor([[g, int(grid[1]), int(grid[2])]] * b, dtype=torch.long),
        }
        if self.family == "qwen2_5_vl":
            out["second_per_grid_ts"] = torch.full((b,), temporal / float(fps), dtype=torch.float32)
        return out

    def video_inputs(self, frames: Sequence[Any], fps: float) -> dict[str, torch.Tensor]:
        """The video-side model inputs of one video (frames in order): :meth:`assemble_video` of
        :meth:`video_frame_inputs`."""
        per = self.video_frame_inputs(frames)
        for key, value in per.items():
            if key != "pixel_values" and len({tuple(row.tolist()) for row in value}) != 1:
                raise ValueError("the frames of a video must all have one size")
        pixels = per["pixel_values"]
        pixels = pixels.reshape(1, len(frames), pixels.shape[0] // len(frames), *pixels.shape[1:])
        return self.assemble_video(pixels, {k: v[:1] for k, v in per.items() if k != "pixel_values"}, fps)

    def _video_placeholder(self, video: Video, grid_thw: torch.Tensor) -> tuple[str, int]:
        """What replaces the chat template's one video token, and how many video tokens it holds.

        Qwen2-VL / Qwen2.5-VL: one video token per merged patch (``G * h * w / merge^2``). Qwen3-VL
        (as its processor expands it): per temporal patch, its time ``<t seconds>`` (the mean of its
        first and last frame's times, one decimal) then ``<|vision_start|>``, the patch's video tokens
        and ``<|vision_end|>``, inside the template's own start / end pair.
        """
        token = self._video_token()
        if self.family == "llava_onevision":
            # As LlavaOnevisionProcessor counts them: each frame's tokens pooled 2 x 2 (rounded up),
            # and one newline token after the last frame.
            side = math.ceil(math.isqrt(int(self.processor.num_image_tokens)) / 2)
            count = video.n_frames * side * side + 1
            return token * count, count
        _, temporal, merge = self._video_geometry()
        g, h, w = (int(v) for v in grid_thw)
        per_patch = h * w // merge**2
        if self.family != "qwen3_vl":
            return token * (g * per_patch), g * per_patch
        start = getattr(self.processor, "vision_start_token", None) or "<|vision_start|>"
        end = getattr(self.processor, "vision_end_token", None) or "<|vision_end|>"
        times = list(video.times)
        parts = []
        for k in range(g):
            first, last = (
                times[min(k * temporal, len(times) - 1)],
                times[min(k * temporal + temporal - 1, len(times) - 1)],
            )
            parts.append(f"<{(first + last) / 2:.1f} seconds>{start}{token * per_patch}{end}")
        return "".join(parts), g * per_patch

    def video_prompt_inputs(self, video: Video, prompt: str) -> dict[str, torch.Tensor]:
        """Model inputs for a video and the chat-formatted prompt: the video placeholder expanded as
        the family's processor expands it (:meth:`_video_placeholder`), tokenised, with
        ``mm_token_type_ids`` 2 on the video tokens, plus :meth:`video_inputs`.

        Raises:
            TypeError / ValueError: see :meth:`check_video` and :meth:`video_chat_text`.
        """
        self.check_video(video)
        visual = self.video_inputs(list(video.frames), video.fps)
        token = self._video_token()
        placeholder, count = self._video_placeholder(video, visual.get("video_grid_thw", torch.zeros(1, 3))[0])
        text = self.video_chat_text(prompt).replace(token, placeholder)
        extra = {"add_special_tokens": False} if self._starts_with_bos(text) else {}
        out = {k: v for k, v in dict(self.tokenizer([text], return_tensors="pt", **extra)).items() if k in TEXT_KEYS}
        ids = out["input_ids"]
        video_id = self.tokenizer.convert_tokens_to_ids(token)
        if int((ids == video_id).sum()) != count:
            raise ValueError(
                f"the tokenised prompt holds {int((ids == video_id).sum())} video tokens; expected {count}"
            )
        if getattr(type(self.processor), "return_mm_token_type_ids", False):
            types = torch.zeros_like(ids)
            image_id = getattr(self.processor, "image_token_id", None)
            if image_id is not None:
                types[ids == int(image_id)] = 1
            types[ids == video_id] = 2
            out["mm_token_type_ids"] = types
        out.update(visual)
        return out

    def video_scorer(
        self,
        video: Video,
        generation: Generation,
        positions: Sequence[int],
        *,
        fills: Sequence[np.ndarray] | None = None,
        batch_size: int | None = None,
        fast_path: bool | str = "auto",
    ) -> HFVideoScorer:
        """Per-explanation scorer of a video's frames (:class:`HFVideoScorer`); ``fills`` default to
        black, ``fast_path`` as for :meth:`scorer`."""
        base = [make_fill(f) for f in video.frames] if fills is None else [np.asarray(f) for f in fills]
        bs = batch_size or self.default_batch_size()
        return HFVideoScorer(self, video, base, generation, positions, bs, fast_path)

    def _starts_with_bos(self, text: str) -> bool:
        bos = getattr(self.tokenizer, "bos_token", None)
        return bool(bos) and text.startswith(bos)

    def image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """The image-side tensors for a batch of same-size images (no tokenisation).

        Image options that the processor sets over its image processor (InternVL's
        ``crop_to_patches``, for instance) are applied here too, so the candidates get exactly
        the layout (and image-token count) of the processor call that built the prompt.
        """
        return dict(self.processor.image_processor(images=images, return_tensors="pt", **self.processor_image_kwargs()))

    def processor_image_kwargs(self) -> dict[str, Any]:
        """Image options declared by the processor class (its ``images_kwargs``) for :meth:`image_inputs`.

        ``data_format`` and ``return_tensors`` are left out; ``{}`` when the class declares none.
        """
        defaults = getattr(type(self.processor), "images_kwargs", None)
        if not isinstance(defaults, dict):
            return {}
        return {k: v for k, v in defaults.items() if k not in ("data_format", "return_tensors")}

    def extend_text_inputs(self, text: dict[str, torch.Tensor], gen_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Append teacher-forced generated ids to the prompt's text tensors."""
        n = int(gen_ids.numel())
        out = {}
        for key, value in text.items():
            if key == "input_ids":
                out[key] = torch.cat([value, gen_ids.view(1, -1).to(value.dtype)], dim=1)
            elif key == "attention_mask":
                out[key] = torch.cat([value, torch.ones(1, n, dtype=value.dtype)], dim=1)
            else:  # mm_token_type_ids / token_type_ids: generated tokens are plain text
                out[key] = torch.cat([value, torch.full((1, n), self.text_type_id(key), dtype=value.dtype)], dim=1)
        return out

    def text_type_id(self, key: str) -> int:
        """The value that extends the type-id tensor ``key`` over the generated tokens (0: plain text)."""
        return 0

    # -- contract ----------------------------------------------------------------------------
    def _generation(self, prompt: str, ids: list[int], probs: list[float], **extra: Any) -> Generation:
        tok = self.tokenizer
        special_ids = set(tok.all_special_ids)
        text, spans = token_spans(lambda x: tok.decode(x, skip_special_tokens=True), ids)
        tokens = []
        for i, (s, e) in zip(ids, spans):
            tokens.append(tok.convert_ids_to_tokens(int(i)) if int(i) in special_ids else text[s:e])
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

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}

    def generation_overrides(self) -> dict[str, list[Any]]:
        """The checkpoint's generation settings that :meth:`generate` overrides: ``{name: [checkpoint, used]}``.

        Empty when the checkpoint's ``generation_config`` is already greedy with no logits
        processor. ``used`` is ``None`` for sampling parameters that greedy search does not read.
        """
        config = getattr(self.model, "generation_config", None)
        if config is None:
            return {}
        out: dict[str, list[Any]] = {}
        for key, used in GREEDY_GENERATION.items():
            value = getattr(config, key, None)
            if not _is_neutral(key, value):
                out[key] = [_jsonable(value), used]
        return out

    def generation_settings(self) -> dict[str, Any]:
        """How :meth:`generate` decodes (stored with every result through :meth:`describe`).

        ``decoding`` is always ``"greedy"``; ``overridden`` lists the checkpoint's settings that were
        replaced (see :meth:`generation_overrides`), so a result says when the checkpoint would
        have sampled or penalised repetitions by default.
        """
        return {"decoding": "greedy", "logits_processors": "none", "overridden": self.generation_overrides()}

    def greedy_generation_config(self) -> Any:
        """A copy of the model's ``generation_config`` with :data:`GREEDY_GENERATION` applied."""
        from transformers import GenerationConfig

        base = getattr(self.model, "generation_config", None)
        config = copy.deepcopy(base) if base is not None else GenerationConfig()
        for key, value in GREEDY_GENERATION.items():
            if hasattr(config, key) or value is not None:
                setattr(config, key, value)
        return config

    @staticmethod
    def _check_greedy_kwargs(gen_kwargs: dict[str, Any]) -> None:
        """Refuse ``gen_kwargs`` that would change the chosen tokens (non-greedy values of
        :data:`GREEDY_GENERATION`)."""
        for key, value in gen_kwargs.items():
            if key in GREEDY_GENERATION and not _is_neutral(key, value):
                raise ValueError(
                    f"generate() decodes greedily with no logits processor, so that the generated tokens and "
                    f"their probabilities are those that teacher forcing scores; {key}={value!r} would change "
                    f"them (allowed: {GREEDY_GENERATION[key]!r})"
                )

    def _greedy_decode(
        self, inputs: dict[str, Any], max_new_tokens: int, gen_kwargs: dict[str, Any], *, set_pad: bool = False
    ) -> tuple[list[int], list[float]]:
        """Greedy ``model.generate`` on prepared ``inputs``: the new token ids up to and including
        the first end-of-sequence token, and each one's probability from that step's raw logits.
        ``set_pad``: give the config the tokenizer's pad id where it has none (text-only models)."""
        config = self.greedy_generation_config()
        config.max_new_tokens = max_new_tokens
        config.return_dict_in_generate = True
        config.output_logits = True
        for key in gen_kwargs:
            if key in GREEDY_GENERATION:
                setattr(config, key, GREEDY_GENERATION[key])
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if set_pad and getattr(config, "pad_token_id", None) is None and pad is not None:
            config.pad_token_id = pad
        extra = {k: v for k, v in gen_kwargs.items() if k not in GREEDY_GENERATION}
        # transformers fills every unset (None) field of a passed config from model.generation_config,
        # which would bring the checkpoint's sampling settings back: the model's config is swapped
        # for the greedy copy for the duration of the call.
        model = self.model
        saved = getattr(model, "generation_config", None)
        model.generation_config = config
        try:
            out = model.generate(**inputs, generation_config=config, **extra)
        finally:
            model.generation_config = saved
        prompt_len = inputs["input_ids"].shape[1]
        seq = out.sequences[0, prompt_len:].tolist()
        eos = self._eos_ids()
        ids: list[int] = []
        probs: list[float] = []
        for step, token in enumerate(seq):
            probs.append(float(torch.softmax(out.logits[step][0].float(), dim=-1)[token]))
            ids.append(int(token))
            if token in eos:
                break
        return ids, probs

    @torch.inference_mode()
    def generate(
        self,
        image: ImageLike | Sequence[ImageLike] | Video,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        **gen_kwargs: Any,
    ) -> Generation:
        """Greedy decoding; per-token probabilities come from the raw logits of each step.

        ``image`` may be a list of images: several images in one prompt, in order (one image entry
        each in the chat template; families of :data:`MULTI_IMAGE_FAMILIES`); the Generation then
        records :func:`images_sha256` of them. It may be a :class:`~mllm_attr.video.Video`: the
        frames go in as the family's video input (:meth:`video_prompt_inputs`; families of
        :data:`VIDEO_FAMILIES`), and the Generation records the video's ``sha256``.

        Whatever the checkpoint's ``generation_config`` says (sampling, temperature, top-k/p,
        repetition penalty, n-gram blocking, ...), decoding is greedy with no logits processor:
        each token is the argmax of the distribution that :meth:`scorer` later scores under
        teacher forcing, and its recorded probability is that distribution's. What was overridden
        is in :meth:`generation_settings` (stored with results via :meth:`describe`).

        ``gen_kwargs`` are passed to ``model.generate``; settings that would change the chosen
        tokens (those of :data:`GREEDY_GENERATION`) are accepted only at their greedy values.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"expected a non-empty prompt string; got {prompt!r}")
        self._check_greedy_kwargs(gen_kwargs)
        # The pixels the explainer will score (load_image: EXIF orientation, RGB, downscale), hashed once.
        if is_video(image):  # a video: its frames through the family's video input
            sha = image.sha256
            inputs = self.video_prompt_inputs(image, prompt)
        elif is_image_list(image):  # several images in one prompt, in order
            loaded_all = [load_image(im) for im in image]
            self.check_multi_image(len(loaded_all))
            sha = images_sha256([im.sha256 for im in loaded_all])
            inputs = self.prompt_inputs([im.pil for im in loaded_all], prompt)
        else:
            loaded = load_image(image)
            sha = loaded.sha256
            inputs = self.prompt_inputs(loaded.pil, prompt)
        inputs = {
            k: (
                v.to(self.device, self.dtype)
                if torch.is_floating_point(v) and k not in KEEP_DTYPE_KEYS
                else v.to(self.device)
            )
            for k, v in inputs.items()
        }
        ids, probs = self._greedy_decode(inputs, max_new_tokens, gen_kwargs)
        return self._generation(prompt, ids, probs, image_sha256=sha)

    def teacher_force(
        self,
        image: ImageLike | Sequence[ImageLike] | Video,
        prompt: str,
        answer: str,
        *,
        generated_text: str | None = None,
    ) -> Generation:
        """Teacher-force a user-given ``answer``; probabilities are scored under the full image
        (a list of images: all of them, in one prompt; a video: all its frames; as :meth:`generate`
        takes them)."""
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"expected a non-empty counterfactual answer; got {answer!r}")
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"answer {answer!r} tokenises to nothing")
        placeholder = self._generation(prompt, ids, [0.0] * len(ids))
        if is_video(image):  # a video: scored with every frame shown
            frames = list(image.frames)
            video_scorer = HFVideoScorer(self, image, frames, placeholder, list(range(len(ids))), 1, False)
            probs = video_scorer.score_images(video_scorer.image[None])[0]
            sha = image.sha256
        elif is_image_list(image):  # several images in one prompt: scored with all of them shown
            arrays = [load_image(im).array for im in image]
            self.check_multi_image(len(arrays))
            multi = HFMultiImageScorer(self, arrays, arrays, placeholder, list(range(len(ids))), 1, False)
            probs = multi.score_images(multi.image[None])[0]
            sha = images_sha256([image_sha256(a) for a in arrays])
        else:
            loaded = load_image(image)
            arr = loaded.array
            scorer = HFScorer(self, arr, arr, placeholder, list(range(len(ids))), batch_size=1)
            probs = scorer.score_images(arr[None])[0]
            sha = loaded.sha256
        return self._generation(
            prompt,
            ids,
            probs.tolist(),
            counterfactual=True,
            generated_text=generated_text,
            image_sha256=sha,
        )

    def scorer(
        self,
        image: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        *,
        fill: np.ndarray | None = None,
        batch_size: int | None = None,
        fast_path: bool | str = "auto",
    ) -> HFScorer:
        """Per-explanation scorer; ``fast_path`` = ``"auto"`` (probe, fall back), ``True`` (require) or ``False``."""
        base = make_fill(image) if fill is None else fill
        return HFScorer(self, image, base, generation, positions, batch_size or self.default_batch_size(), fast_path)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-friendly data (lists for tuples, ``repr`` for objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _available_ram() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8e9


# -- several images in one prompt --------------------------------------------------------------------
#: Families whose processor and model take several images in one prompt, in order. Each is checked
#: on the tiny models of the real transformers classes (``tests/test_multi_image.py``): the scores
#: of a batch of candidates equal the processor plus a full forward on the hand-masked images. The
#: generic ``"auto"`` adapter is tried as well; any other family is refused with its name.
MULTI_IMAGE_FAMILIES: frozenset[str] = frozenset(
    {
        "llava",
        "llava_next",
        "llava_onevision",
        "qwen2_vl",
        "qwen2_5_vl",
        "qwen3_vl",
        "internvl",
        "idefics3",
        "smolvlm",
        "gemma3",
    }
)


def is_image_list(image: Any) -> bool:
    """True for a list or tuple of images (several images in one prompt); a single image never is one."""
    return isinstance(image, (list, tuple))


def images_sha256(hashes: Sequence[str]) -> str:
    """The ``image_sha256`` of a :class:`~mllm_attr.types.Generation` made on several images.

    One image: its own hash (a one-image list is the single image). Several: the SHA-256 of
    ``"images:"`` followed by the per-image hashes (:func:`~mllm_attr.image.image_sha256`) in order,
    comma-separated, so another image, another order or another count gives another hash.
    """
    hashes = [str(h) for h in hashes]
    if not hashes:
        raise ValueError("expected at least one image hash")
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256(("images:" + ",".join(hashes)).encode("ascii")).hexdigest()


def images_to_strip(images: Sequence[np.ndarray]) -> np.ndarray:
    """``uint8[1, P, 3]``: the pixels of every image, row-major, in order (``P = Σ H_i W_i``)."""
    return np.concatenate([np.asarray(im).reshape(-1, 3) for im in images])[None]


def strip_to_images(strip: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Inverse of :func:`images_to_strip` (also for label maps: ``int[1, P]`` with 2-D ``shapes``)."""
    flat = np.asarray(strip).reshape(-1, *np.asarray(strip).shape[2:])
    out, start = [], 0
    for shape in shapes:
        size = int(shape[0]) * int(shape[1])
        out.append(flat[start : start + size].reshape(shape))
        start += size
    if start != len(flat):
        raise ValueError(f"a strip of {len(flat)} pixels does not hold images of shapes {list(shapes)}")
    return out


class _ImageTables(HFScorer):
    """The fast path's tables of ONE image of a multi-image prompt: :meth:`HFScorer._prepare_fast`
    (region images through the image processor, inclusion-exclusion terms, assembly plan) without
    text, forward or single-image probe; :class:`HFMultiImageScorer` probes the assembled inputs."""

    def __init__(
        self,
        adapter: HFAdapter,
        image: np.ndarray,
        fill: np.ndarray,
        batch_size: int,
        inputs: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
    ):
        Scorer.__init__(self, image, fill, (0,), batch_size)
        self.adapter = adapter
        #: What turns a batch of images into their tensors (default: the adapter's image processor).
        self._inputs = inputs or adapter.image_inputs

    def _pixel_outputs(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(images), max(1, self.batch_size)):
            chunk = images[start : start + self.batch_size]
            out.extend(_split_images(self._inputs([as_pil(im) for im in chunk]), len(chunk)))
        return out

    def _probe(self, fast: dict[str, Any], labels: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        return fast, {"used": True}


def _concat_inputs(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Image-side inputs of several candidates: each key's tensors concatenated along dim 0, in order."""
    keys = list(parts[0])
    for p in parts[1:]:
        if list(p) != keys:
            raise ValueError(f"image processor outputs differ in their keys: {keys} vs {list(p)}")
    return {k: torch.cat([p[k] for p in parts], dim=0) for k in keys if isinstance(parts[0][k], torch.Tensor)}


class HFMultiImageScorer(HFScorer):
    """Scores candidates of SEVERAL images shown together in one prompt (one explanation).

    The images are held as one strip (:func:`images_to_strip`): :attr:`image` is ``uint8[1, P, 3]``,
    the pixels of every image in order, and a label map of the strip (``int[1, P]``, one id per
    region of every image) is what :meth:`set_regions` registers. Every method of
    :class:`~mllm_attr.adapters.base.Scorer` (images, keep-masks, region tables; batching, checks,
    forward counting) therefore works unchanged: one candidate (all of its images) is one row and
    counts as one forward.

    The text tensors come from ONE processor call on the full images (:meth:`HFAdapter.prompt_inputs`
    with the list: one image entry per image in the chat template); per candidate only image-side
    tensors change. They are built on one of two paths, recorded in :attr:`fast_report`:

    * fast path (``fast_path`` ``"auto"`` / ``True``): :class:`HFScorer`'s exact fast path set up per
      image (each image's regions through the image processor once), and a candidate's tensors
      assembled from the per-image tables, image after image, as the image processor lays out a
      list; accepted when the assembled full and empty candidates have the processor's layout and a
      probe of a few subsets (and complements) gives the processor path's probabilities within
      :attr:`FAST_REL_TOL` of their spread (as for one image);
    * processor path (otherwise, or ``fast_path=False``): the image processor on each candidate's
      masked images (``adapter.image_inputs(images)``), concatenated over the batch.

    Logits are computed at the target positions only, softmax in float64 (:meth:`HFScorer._forward`).

    Args:
        adapter: the transformers adapter (its family must take several images: :data:`MULTI_IMAGE_FAMILIES`).
        images: ``uint8[H_i, W_i, 3]`` RGB images, in prompt order.
        fills: what hidden pixels of each image show (same shapes).
        generation, positions, batch_size, fast_path: as for :class:`HFScorer`.
    """

    def __init__(
        self,
        adapter: HFAdapter,
        images: Sequence[np.ndarray],
        fills: Sequence[np.ndarray],
        generation: Generation,
        positions: Sequence[int],
        batch_size: int,
        fast_path: bool | str = "auto",
    ):
        images = [np.asarray(im) for im in images]
        fills = [np.asarray(f) for f in fills]
        self._check_count(adapter, len(images))
        if len(fills) != len(images):
            raise ValueError(f"got {len(fills)} fills for {len(images)} images")
        for i, (im, f) in enumerate(zip(images, fills)):
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(f"image {i}: expected uint8[H, W, 3] RGB pixels; got {im.dtype} {im.shape}")
            if f.shape != im.shape:
                raise ValueError(f"image {i}: fill shape {f.shape} differs from image shape {im.shape}")
        if fast_path not in (True, False, "auto"):
            raise ValueError(f"fast_path must be True, False or 'auto'; got {fast_path!r}")
        Scorer.__init__(self, images_to_strip(images), images_to_strip(fills), positions, batch_size)
        self.images = images
        self.fills = fills
        self.shapes = [tuple(int(d) for d in im.shape) for im in images]
        self._check_request(adapter, generation, fast_path)
        self._set_text(self._prompt_inputs(generation.prompt), generation)

    #: The image-side key that carries the pixels (what the fast path builds, the probe compares).
    pixel_key: ClassVar[str] = "pixel_values"

    def _check_count(self, adapter: HFAdapter, n_images: int) -> None:
        adapter.check_multi_image(n_images)

    def _image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        """One image's tensors for the per-image fast-path tables (the image processor)."""
        return self.adapter.image_inputs(images)

    def _prompt_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        """The processor's output for the full images and the prompt (text tensors and all)."""
        return self.adapter.prompt_inputs([as_pil(im) for im in self.images], prompt)

    @property
    def n_images(self) -> int:
        """Number of images in the prompt."""
        return len(self.images)

    def split(self, strip: np.ndarray) -> list[np.ndarray]:
        """The images of one strip (``uint8[1, P, 3]``), in order."""
        return strip_to_images(strip, self.shapes)

    def score_image_lists(self, candidates: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """Score candidates given as lists of images (one per prompt image, each of its image's
        shape): ``float64[B, K]`` (batched and counted as :meth:`score_images`)."""
        strips = []
        for c, cand in enumerate(candidates):
            if len(cand) != self.n_images or any(np.shape(im) != s for im, s in zip(cand, self.shapes)):
                raise ValueError(
                    f"candidate {c}: expected {self.n_images} images of shapes {self.shapes}; "
                    f"got {[np.shape(im) for im in cand]}"
                )
            strips.append(images_to_strip([np.asarray(im, dtype=np.uint8) for im in cand]))
        return self.score_images(np.stack(strips))

    # -- processor path ----------------------------------------------------------------------
    def _candidate_inputs(self, candidates: Sequence[Sequence[np.ndarray]]) -> dict[str, torch.Tensor]:
        """Image-side inputs of candidates (lists of images): the image processor on each candidate's
        images, as the processor call on the full list lays them out, concatenated over the batch."""
        parts = [self.adapter.image_inputs([as_pil(im) for im in cand]) for cand in candidates]
        return _concat_inputs(parts)

    @torch.inference_mode()
    def _score_batch(self, images: np.ndarray) -> np.ndarray:
        return self._forward(self._candidate_inputs([self.split(x) for x in images]), len(images))

    def _region_pixel_inputs(self, table: np.ndarray) -> dict[str, torch.Tensor]:
        """Image-side inputs of ``bool[B, n]`` region rows: assembled on the fast path when it is
        prepared, else the image processor on the composed images."""
        if self.fast is None:
            images = [self.split(compose(self.image, self.fill, row[self.labels])) for row in table]
            return self._candidate_inputs(images)
        return self._fast_inputs(self.fast, table)

    # -- fast path: HFScorer's per image, assembled per candidate ------------------------------
    def set_regions(self, labels: np.ndarray) -> None:
        """Register the strip's label map (``int[1, P]``, see :func:`images_to_strip`) and prepare
        the fast path (per image; see the class docstring). What was used is in :attr:`fast_report`."""
        Scorer.set_regions(self, labels)
        self.fast = None
        if self.fast_path_requested is False:
            self.fast_report = {"used": False, "path": "processor", "reason": "disabled"}
            return
        try:
            self.fast, self.fast_report = self._prepare_multi_fast(labels)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the exact processor path
            self.fast, self.fast_report = None, {"used": False, "reason": f"preparation failed: {exc}"}
        if self.fast is None:
            self.fast_report["path"] = "processor"
            if self.fast_path_requested is True:
                raise ValueError(f"fast path requested but unavailable: {self.fast_report['reason']}")
            logger.info("multi-image fast path not used: %s", self.fast_report["reason"])

    def _prepare_multi_fast(self, labels: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        maps = strip_to_images(labels, [s[:2] for s in self.shapes])
        blocks: list[tuple[int, int]] = []
        for i, m in enumerate(maps):
            lo, hi = int(m.min()), int(m.max()) + 1
            if any(lo < b and a < hi for a, b in blocks):
                return None, {"used": False, "reason": f"image {i} shares region ids with another image"}
            blocks.append((lo, hi))
        tables = []
        for i, ((lo, _), m) in enumerate(zip(blocks, maps)):
            helper = _ImageTables(self.adapter, self.images[i], self.fills[i], self.batch_size, self._image_inputs)
            fast_i, report_i = helper._prepare_fast((m - lo).astype(labels.dtype))
            if fast_i is None:
                return None, {"used": False, "reason": f"image {i}: {report_i.get('reason')}"}
            tables.append(fast_i)
        fast = {"blocks": blocks, "tables": tables}
        # The assembled layout must be the processor's (keys, shapes, every non-pixel tensor).
        n = self.n_regions or 0
        ends = self._fast_inputs(fast, np.stack([np.ones(n, bool), np.zeros(n, bool)]))
        ref = self._candidate_inputs([self.images, self.fills])
        if set(ends) != set(ref):
            return None, {"used": False, "reason": f"assembled keys {sorted(ends)} differ from the processor's"}
        for k, v in ref.items():
            if tuple(ends[k].shape) != tuple(v.shape) or (k != self.pixel_key and not torch.equal(ends[k], v)):
                return None, {"used": False, "reason": f"assembled {k!r} differs from the processor's layout"}
        return self._probe_multi(fast, labels)

    def _fast_inputs(self, fast: dict[str, Any], table: np.ndarray) -> dict[str, torch.Tensor]:
        """Image-side inputs of ``bool[B, n]`` region rows from the per-image tables: per candidate
        the images' tensors one after the other (as the image processor lays out a list)."""
        table = np.asarray(table, dtype=bool)
        b = len(table)
        per_key: dict[str, list[torch.Tensor]] = {}
        for (lo, hi), t in zip(fast["blocks"], fast["tables"]):
            pv = self._fast_pixels(t, table[:, lo:hi])
            per_key.setdefault("pixel_values", []).append(pv.reshape(b, -1, *pv.shape[1:]))
            for k, v in t["const"].items():
                per_key.setdefault(k, []).append(v.unsqueeze(0).expand(b, *v.shape))
        out = {}
        for k, parts in per_key.items():
            joined = torch.cat(parts, dim=1)
            out[k] = joined.reshape(-1, *joined.shape[2:]).contiguous()
        return out

    def _probe_multi(self, fast: dict[str, Any], labels: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Score probe subsets (and complements) of all regions on both paths; accept or refuse ``fast``."""
        table = self._probe_table(int(labels.max()) + 1)
        slow, quick, pixel_err = [], [], 0.0
        with torch.inference_mode():
            for start in range(0, len(table), self.batch_size):
                rows = table[start : start + self.batch_size]
                slow_in = self._candidate_inputs([self.split(compose(self.image, self.fill, r[labels])) for r in rows])
                fast_in = self._fast_inputs(fast, rows)
                ref = slow_in[self.pixel_key].double()
                span = float((ref.max() - ref.min()).clamp_min(1e-12))
                pixel_err = max(pixel_err, float((fast_in[self.pixel_key].double() - ref).abs().max()) / span)
                slow.append(self._forward(slow_in, len(rows)))
                quick.append(self._forward(fast_in, len(rows)))
        slow_p, quick_p = np.concatenate(slow), np.concatenate(quick)
        spread = float((slow_p.max(axis=0) - slow_p.min(axis=0)).max())
        prob_err = float(np.abs(quick_p - slow_p).max())
        tol = max(self.FAST_ABS_TOL, self.FAST_REL_TOL * spread)
        report = {
            "used": True,
            "path": "fast",
            "method": "per-image inclusion-exclusion tables, assembled per candidate",
            "images": self.n_images,
            "probe_subsets": int(len(table)),
            "probe_forwards": int(2 * len(table)),
            "probe_max_abs_prob_diff": prob_err,
            "probe_prob_spread": spread,
            "probe_tolerance": tol,
            "probe_max_pixel_diff_rel": pixel_err,
            "setup_images": int(sum(t["setup_images"] for t in fast["tables"])),
            "residual_elements": int(sum(t["residual_elements"] for t in fast["tables"])),
        }
        if prob_err > tol:
            reason = (
                f"probe: target probabilities differ from the processor path by up to {prob_err:.3g} "
                f"(tolerance {tol:.3g}, {self.FAST_REL_TOL:g} of the probe spread {spread:.3g})"
            )
            return None, {**report, "used": False, "reason": reason}
        return fast, report


# -- video ------------------------------------------------------------------------------------------
#: Families that take a video (their model's ``pixel_values_videos`` / ``video_grid_thw`` input,
#: video placeholder tokens, temporal M-RoPE). Checked on tiny models of the real transformers
#: classes (``tests/test_video.py``). Their video processors need torchvision; the frames are
#: prepared by the family's image processor instead (:meth:`HFAdapter.video_frame_inputs`).
VIDEO_FAMILIES: frozenset[str] = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision"})


class HFVideoScorer(HFMultiImageScorer):
    """Scores candidates of a VIDEO's frames (one explanation): every frame's regions in one label
    space, as :class:`HFMultiImageScorer` holds several images (the frames, in time order, are the
    strip's images), fed through the family's video input.

    Per candidate the video tensors are built from the masked frames: on the fast path from each
    frame's exact inclusion-exclusion tables (set up frame by frame through the image processor,
    as for several images), assembled into temporal patches (:meth:`HFAdapter.assemble_video`);
    else by the image processor on each masked frame, assembled the same way. The probe against
    the processor path, the batching, the counting and the float64 softmax at the target
    positions are those of :class:`HFMultiImageScorer`.

    Args:
        adapter: a transformers adapter of a family of :data:`VIDEO_FAMILIES`.
        video: the :class:`~mllm_attr.video.Video`.
        fills: what hidden pixels of each frame show (the frames' shapes).
        generation, positions, batch_size, fast_path: as for :class:`HFScorer`.
    """

    pixel_key: ClassVar[str] = "pixel_values_videos"

    def __init__(
        self,
        adapter: HFAdapter,
        video: Video,
        fills: Sequence[np.ndarray],
        generation: Generation,
        positions: Sequence[int],
        batch_size: int,
        fast_path: bool | str = "auto",
    ):
        self.video = video  # checked by _check_count, which the base class calls first
        super().__init__(adapter, list(video.frames), fills, generation, positions, batch_size, fast_path)

    def _check_count(self, adapter: HFAdapter, n_images: int) -> None:
        adapter.check_video(self.video)

    def _prompt_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        return self.adapter.video_prompt_inputs(self.video, prompt)

    def _image_inputs(self, images: list[Any]) -> dict[str, torch.Tensor]:
        return self.adapter.video_frame_inputs(images)

    def _candidate_inputs(self, candidates: Sequence[Sequence[np.ndarray]]) -> dict[str, torch.Tensor]:
        """Video inputs of candidates (lists of frames): the image processor on each candidate's
        frames, assembled into temporal patches, concatenated over the batch."""
        return _concat_inputs([self.adapter.video_inputs(list(c), self.video.fps) for c in candidates])

    def _fast_inputs(self, fast: dict[str, Any], table: np.ndarray) -> dict[str, torch.Tensor]:
        """Video inputs of ``bool[B, n]`` region rows from the per-frame tables, assembled."""
        table = np.asarray(table, dtype=bool)
        b = len(table)
        frames = []
        for (lo, hi), t in zip(fast["blocks"], fast["tables"]):
            pv = self._fast_pixels(t, table[:, lo:hi])
            frames.append(pv.reshape(b, *t["shape"]))
        const = fast["tables"][0]["const"]
        return self.adapter.assemble_video(torch.stack(frames, dim=1), const, self.video.fps)
