"""The EAGLE objective: ``F(S) = λ1 · insight(S) + λ2 · necessity(S)``.

``insight(S)`` is the token-mean probability with only the regions of ``S`` shown
(sufficiency); ``necessity(S)`` is one minus the token-mean probability with them
removed. Per-token probabilities are kept for the analysis; the search uses the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .adapters.base import Scorer


class BudgetExhausted(RuntimeError):
    """Raised when an evaluation would exceed the forward-pass budget."""


@dataclass(frozen=True)
class Evaluation:
    """Scores of a batch of candidate subsets.

    Attributes:
        ins: ``float64[B, K]`` target probabilities on the insertion images.
        dele: ``float64[B, K]`` target probabilities on the deletion images.
        value: ``float64[B]`` objective ``λ1·mean(ins) + λ2·(1 − mean(dele))``.
    """

    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray


class Objective:
    """Evaluates region subsets for one explanation.

    Args:
        scorer: the per-explanation :class:`~mllm_attr.adapters.base.Scorer`.
        labels: ``int32[H, W]`` region label map.
        lambda1: weight of insight (sufficiency), ``>= 0``.
        lambda2: weight of necessity, ``>= 0``.
        max_forwards: hard cap on images scored (``None``: no cap).
    """

    def __init__(
        self,
        scorer: Scorer,
        labels: np.ndarray,
        *,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        max_forwards: int | None = None,
    ):
        for name, lam in (("lambda1", lambda1), ("lambda2", lambda2)):
            if not np.isfinite(lam) or lam < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {lam}")
        if lambda1 == 0 and lambda2 == 0:
            raise ValueError("lambda1 and lambda2 are both 0; the objective would be constant")
        if max_forwards is not None and max_forwards < 2:
            raise ValueError(f"max_forwards must be >= 2 (the full and blank images); got {max_forwards}")
        self.scorer = scorer
        self.labels = labels
        self.n_regions = int(labels.max()) + 1
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.max_forwards = max_forwards
        self._endpoints: tuple[np.ndarray, np.ndarray] | None = None
        scorer.set_regions(labels)

    @property
    def forwards(self) -> int:
        """Images scored so far by the scorer."""
        return self.scorer.forwards

    def remaining(self) -> float:
        """Images that may still be scored (``inf`` without a budget)."""
        if self.max_forwards is None:
            return float("inf")
        return float(self.max_forwards - self.scorer.forwards)

    def can_afford(self, n_images: int) -> bool:
        """Whether ``n_images`` more images fit in the forward budget."""
        return n_images <= self.remaining()

    def value(self, ins: np.ndarray, dele: np.ndarray) -> np.ndarray:
        """``λ1·mean(ins) + λ2·(1 − mean(dele))``, the means over the last (token) axis."""
        return self.lambda1 * ins.mean(axis=-1) + self.lambda2 * (1.0 - dele.mean(axis=-1))

    def endpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """``(p_full[K], p_blank[K])``: probabilities with every region shown / none shown."""
        if self._endpoints is None:
            self._charge(2)
            table = np.stack([np.ones(self.n_regions, bool), np.zeros(self.n_regions, bool)])
            scores = self._score(table)
            self._endpoints = (scores[0], scores[1])
        return self._endpoints

    def _score(self, table: np.ndarray) -> np.ndarray:
        """``bool[B, n_regions]`` shown-feature table -> ``float64[B, K]`` target probabilities."""
        return self.scorer.score_regions(table)

    def _charge(self, n_images: int) -> None:
        if not self.can_afford(n_images):
            raise BudgetExhausted(
                f"scoring {n_images} more images would exceed max_forwards={self.max_forwards} "
                f"({self.scorer.forwards} used)"
            )

    def _shown_table(self, subsets: Sequence[Sequence[int]]) -> np.ndarray:
        """``bool[len(subsets), n_regions]``: each subset's regions marked as shown."""
        table = np.zeros((len(subsets), self.n_regions), dtype=bool)
        for row, subset in enumerate(subsets):
            table[row, np.asarray(list(subset), dtype=np.int64)] = True
        return table

    def evaluate_side(self, subsets: Sequence[Sequence[int]], side: str) -> np.ndarray:
        """Score ONE image per subset: its regions shown alone (``side="insertion"``) or removed
        (``side="deletion"``): ``float64[len(subsets), K]``. Half the cost of :meth:`evaluate`,
        for searches that rank candidates on one side first."""
        if side not in ("insertion", "deletion"):
            raise ValueError(f"side must be 'insertion' or 'deletion'; got {side!r}")
        k = len(self.scorer.positions)
        if not subsets:
            return np.zeros((0, k))
        self._charge(len(subsets))
        table = self._shown_table(subsets)
        return self._score(table if side == "insertion" else ~table)

    def evaluate(self, subsets: Sequence[Sequence[int]]) -> Evaluation:
        """Score the insertion and deletion image of every subset (2 images per subset)."""
        k = len(self.scorer.positions)
        if not subsets:
            empty = np.zeros((0, k))
            return Evaluation(empty, empty, np.zeros(0))
        self._charge(2 * len(subsets))
        table = self._shown_table(subsets)
        ins = np.empty((len(subsets), k))
        dele = np.empty((len(subsets), k))
        # Insertion and deletion rows of a chunk go out together so batches stay full.
        step = max(1, self.scorer.batch_size // 2)
        for start in range(0, len(subsets), step):
            rows = table[start : start + step]
            scores = self._score(np.concatenate([rows, ~rows], axis=0))
            m = len(rows)
            ins[start : start + m] = scores[:m]
            dele[start : start + m] = scores[m:]
        return Evaluation(ins, dele, self.value(ins, dele))
