"""Searches for a region ordering that maximises the objective (method.md §4).

Every search is a plain function ``search(objective, **options) -> SearchResult``
registered in :data:`SEARCHES`. The ordering covers all regions; the curves are
the insertion/deletion scores of its prefixes. A search that does not evaluate
every prefix while searching gets its curves by :func:`replay` (counted in its
forwards). All searches respect ``objective.max_forwards``: the replay cost is
reserved first, and when the budget runs short the rest of the ordering is taken
from the most recent scores.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .objective import Objective

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """An ordering of all regions and the curves of its prefixes.

    Attributes:
        ordering: ``int64[n]`` region indices, most important first.
        ins: ``float64[n, K]`` target probabilities with the first ``t+1`` regions shown.
        dele: ``float64[n, K]`` target probabilities with the first ``t+1`` regions removed.
        value: ``float64[n]`` objective of each prefix.
        info: search-specific counts (steps done exactly, budget cut, ...).
    """

    ordering: np.ndarray
    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class _Progress:
    def __init__(self, total: int, show: bool, desc: str):
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="region", leave=False)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def replay_cost(n_prefixes: int) -> int:
    return 2 * max(0, n_prefixes)


def replay(objective: Objective, ordering: np.ndarray, *, known: int = 0, known_rows: tuple | None = None) -> SearchResult:
    """Curves of an ordering: score every prefix (the last one is the full image, free).

    Args:
        ordering: all region indices, most important first.
        known: the number of leading prefixes already scored, given in ``known_rows``
            as ``(ins[known, K], dele[known, K])``.
    """
    n = objective.n_regions
    ordering = np.asarray(ordering, dtype=np.int64)
    if sorted(ordering.tolist()) != list(range(n)):
        raise ValueError(f"an ordering must contain each of the {n} regions exactly once")
    p_full, p_blank = objective.endpoints()
    k = len(p_full)
    ins = np.empty((n, k))
    dele = np.empty((n, k))
    if known:
        ins[:known], dele[:known] = known_rows[0][:known], known_rows[1][:known]
    todo = [ordering[: t + 1].tolist() for t in range(known, n - 1)]
    if todo:
        ev = objective.evaluate(todo)
        ins[known : n - 1] = ev.ins
        dele[known : n - 1] = ev.dele
    ins[n - 1], dele[n - 1] = p_full, p_blank
    return SearchResult(ordering, ins, dele, objective.value(ins, dele))


def _finish(
    objective: Objective,
    head: list[int],
    head_ins: list[np.ndarray],
    head_dele: list[np.ndarray],
    rest: list[int],
    info: dict[str, Any],
) -> SearchResult:
    ordering = np.asarray(head + rest, dtype=np.int64)
    known = len(head_ins)
    rows = (np.asarray(head_ins).reshape(known, -1), np.asarray(head_dele).reshape(known, -1)) if known else None
    res = replay(objective, ordering, known=min(known, objective.n_regions - 1), known_rows=rows)
    res.info.update(info)
    return res


def greedy(objective: Objective, *, show_progress: bool = False) -> SearchResult:
    """Exact greedy (the reference algorithm): at each step add the region that maximises F.

    Cost without a budget: ``n(n+1)`` forwards (two images per candidate per step, plus the
    full and blank images; the last step is forced and free). Ties go to the lowest region index.
    """
    n = objective.n_regions
    objective.endpoints()
    chosen: list[int] = []
    remaining = list(range(n))
    ins_rows: list[np.ndarray] = []
    dele_rows: list[np.ndarray] = []
    last_value: dict[int, float] = {}
    bar = _Progress(n - 1, show_progress, "greedy")
    cut = False
    while len(remaining) > 1:
        # This step, plus a replay of whatever would be left if the budget then ran out.
        if not objective.can_afford(2 * len(remaining) + replay_cost(len(remaining) - 2)):
            cut = True
            break
        ev = objective.evaluate([chosen + [r] for r in remaining])
        j = int(np.argmax(ev.value))
        last_value = {r: float(v) for r, v in zip(remaining, ev.value)}
        chosen.append(remaining.pop(j))
        ins_rows.append(ev.ins[j])
        dele_rows.append(ev.dele[j])
        bar.update()
    bar.close()
    # Budget cut: order the rest by their most recent (stale) values; unseen ones keep index order.
    rest = sorted(remaining, key=lambda r: (-last_value.get(r, -np.inf), r))
    return _finish(objective, chosen, ins_rows, dele_rows, rest, {"exact_steps": len(chosen), "budget_cut": cut})


#: name -> search function.
SEARCHES: dict[str, Callable[..., SearchResult]] = {"greedy": greedy}


def get_search(name: str) -> Callable[..., SearchResult]:
    try:
        return SEARCHES[name]
    except KeyError:
        raise ValueError(f"unknown search {name!r}; expected one of {sorted(SEARCHES)}") from None
