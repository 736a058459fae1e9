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
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """Forwards needed to score ``n_prefixes`` prefixes: an insertion and a deletion image each."""
    return 2 * max(0, n_prefixes)


Rows = dict[int, tuple[np.ndarray, np.ndarray]]


def replay(objective: Objective, ordering: np.ndarray, *, known: Rows | None = None) -> SearchResult:
    """Curves of an ordering: score every prefix not already ``known`` (the full one is free).

    Args:
        ordering: all region indices, most important first.
        known: prefix length -> ``(ins[K], dele[K])`` already scored during the search.
    """
    n = objective.n_regions
    ordering = np.asarray(ordering, dtype=np.int64)
    if sorted(ordering.tolist()) != list(range(n)):
        raise ValueError(f"an ordering must contain each of the {n} regions exactly once")
    known = dict(known or {})
    p_full, p_blank = objective.endpoints()
    k = len(p_full)
    ins = np.empty((n, k))
    dele = np.empty((n, k))
    missing = [length for length in range(1, n) if length not in known]
    if missing:
        ev = objective.evaluate([ordering[:length].tolist() for length in missing])
        for row, length in enumerate(missing):
            known[length] = (ev.ins[row], ev.dele[row])
    for length in range(1, n):
        ins[length - 1], dele[length - 1] = known[length]
    ins[n - 1], dele[n - 1] = p_full, p_blank
    return SearchResult(ordering, ins, dele, objective.value(ins, dele))


def _reserve(objective: Objective, cost: int, known: Rows, after: int = 0) -> bool:
    """Can we pay ``cost`` now and still replay every prefix not known (``after`` more will be)?"""
    unknown = (objective.n_regions - 1) - len(known) - after
    return objective.can_afford(cost + replay_cost(unknown))


def _finish(objective: Objective, ordering: list[int], known: Rows, info: dict[str, Any]) -> SearchResult:
    res = replay(objective, np.asarray(ordering, dtype=np.int64), known=known)
    res.info.update(info)
    res.info["replayed_prefixes"] = (objective.n_regions - 1) - len([k for k in known if k < objective.n_regions])
    return res


def _stale_order(remaining: list[int], last_value: dict[int, float]) -> list[int]:
    return sorted(remaining, key=lambda r: (-last_value.get(r, -np.inf), r))


#: a candidate pool: region ids, or ``taken -> region ids`` for a pool that changes every step.
_Pool = list[int] | Callable[[list[int]], list[int]]


def _greedy_steps(
    objective: Objective,
    prefix: list[int],
    candidates: _Pool,
    known: Rows,
    last_value: dict[int, float],
    *,
    max_steps: int | None = None,
    bar: _Progress | None = None,
) -> tuple[list[int], bool]:
    """Exact greedy steps after ``prefix``, the one exact-greedy loop: :func:`greedy`, and the
    exact groups and refine steps of :func:`hierarchical`.

    Each step scores ``prefix + picked + [r]`` for every candidate ``r`` of the pool (two
    images each) and appends the argmax; exact ties go to the lowest region id (the pool is
    sorted ascending before the argmax). Every step records its prefix's scores in ``known``
    (prefix length -> ``(ins[K], dele[K])``) and each candidate's objective in ``last_value``.

    Args:
        prefix: regions already accepted (not changed).
        candidates: the pool, either a list of region ids (a picked region leaves it) or a
            callable ``taken -> pool`` called before every step with ``prefix + picked``
            (for pools that change with the accepted regions, e.g. their neighbours).
        max_steps: stop after this many steps (``None``: until the pool is empty).
        bar: progress bar, advanced once per step.

    Returns:
        ``(picked, cut)``: the regions accepted in order, and whether the forward budget
        stopped the steps (checked with :func:`_reserve` before EVERY step, so the curves of
        the final ordering can always still be replayed).
    """
    picked: list[int] = []
    while max_steps is None or len(picked) < max_steps:
        taken = prefix + picked
        pool = sorted(candidates(taken) if callable(candidates) else (r for r in candidates if r not in picked))
        if not pool:
            break
        if not _reserve(objective, 2 * len(pool), known, after=1):
            return picked, True
        ev = objective.evaluate([taken + [r] for r in pool])
        j = int(np.argmax(ev.value))  # first maximum = lowest id among exact ties
        last_value.update({r: float(v) for r, v in zip(pool, ev.value)})
        picked.append(pool[j])
        known[len(taken) + 1] = (ev.ins[j], ev.dele[j])
        if bar is not None:
            bar.update()
    return picked, False


def greedy(objective: Objective, *, show_progress: bool = False) -> SearchResult:
    """Exact greedy (the reference algorithm): at each step add the region that maximises F.

    Ties: among candidates with exactly equal F, the lowest region id goes first.
    Cost without a budget: ``n(n+1)`` forwards (two images per candidate per step, plus the
    full and blank images; the last step is forced and free). Under a budget the steps stop
    when the next one and the replay of the remaining prefixes no longer fit; the rest is
    ordered by the last scores (see :func:`_stale_order`).
    """
    n = objective.n_regions
    objective.endpoints()
    known: Rows = {}
    last_value: dict[int, float] = {}
    bar = _Progress(n - 1, show_progress, "greedy")
    chosen, cut = _greedy_steps(objective, [], list(range(n)), known, last_value, max_steps=n - 1, bar=bar)
    bar.close()
    # The last region is forced; after a budget cut the rest follow their most recent (stale)
    # values, unseen ones in index order.
    rest = [r for r in range(n) if r not in chosen]
    return _finish(
        objective, chosen + _stale_order(rest, last_value), known, {"exact_steps": len(chosen), "budget_cut": cut}
    )


def _tail_step(
    objective: Objective, head: list[int], tail: list[int], candidates: list[int], known: Rows
) -> int | None:
    """Among ``candidates``, the one whose removal (with the current tail) hurts F least."""
    if not candidates or not _reserve(objective, 2 * len(candidates), known, after=1):
        return None
    removed = set(tail)
    keep_all = [r for r in range(objective.n_regions) if r not in removed]
    subsets = [[r for r in keep_all if r != c] for c in candidates]
    ev = objective.evaluate(subsets)
    j = int(np.argmax(ev.value))
    known[len(subsets[j])] = (ev.ins[j], ev.dele[j])
    return candidates[j]


def efficient(
    objective: Objective,
    *,
    search_scope: int = 8,
    pending_samples: int = 6,
    update_step: int = 10,
    show_progress: bool = False,
) -> SearchResult:
    """EAGLE "efficient" search: a head built greedily from a restricted scope, a tail from the end.

    Every ``update_step`` steps (and at the first) all remaining regions are re-ranked; in
    between only the top ``search_scope`` of the last full ranking are re-scored. Each step
    also moves, among the ``pending_samples`` lowest-ranked regions, the one whose removal hurts
    least to a tail list. Ordering = head + reversed tail.
    """
    for name, v in (("search_scope", search_scope), ("pending_samples", pending_samples), ("update_step", update_step)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1; got {v}")
    n = objective.n_regions
    objective.endpoints()
    head: list[int] = []
    tail: list[int] = []
    known: Rows = {}
    ranking: list[int] = []
    last_value: dict[int, float] = {}
    step = 0
    cut = False
    bar = _Progress(n - 1, show_progress, "efficient")
    while True:
        remaining = [r for r in range(n) if r not in head and r not in tail]
        if len(remaining) <= 1:
            head.extend(remaining)
            break
        full = step % update_step == 0 or not ranking
        ranked_left = [r for r in ranking if r in remaining]
        candidates = remaining if full else ranked_left[:search_scope] or remaining
        if not _reserve(objective, 2 * len(candidates), known, after=1):
            cut = True
            head.extend(_stale_order(remaining, last_value))
            break
        ev = objective.evaluate([head + [r] for r in candidates])
        last_value.update({r: float(v) for r, v in zip(candidates, ev.value)})
        if full:
            ranking = [candidates[i] for i in np.argsort(-ev.value, kind="stable")]
        j = int(np.argmax(ev.value))
        head.append(candidates[j])
        known[len(head)] = (ev.ins[j], ev.dele[j])
        bar.update()
        remaining = [r for r in remaining if r != candidates[j]]
        if len(remaining) > 2:
            lowest = [r for r in reversed(ranking) if r in remaining][:pending_samples]
            picked = _tail_step(objective, head, tail, lowest, known)
            if picked is not None:
                tail.append(picked)
                bar.update()
        step += 1
    bar.close()
    ordering = head + list(reversed(tail))
    return _finish(objective, ordering, known, {"head": len(head), "tail": len(tail), "budget_cut": cut})


def bidirectional(objective: Objective, *, pending_samples: int = 4, show_progress: bool = False) -> SearchResult:
    """LIMA-style bidirectional greedy: each step adds the best region to the head (all
    candidates scored) and, among the ``pending_samples`` regions with the lowest head gain
    (the cheap proxy), the one whose removal hurts least to the tail."""
    return efficient(
        objective,
        search_scope=objective.n_regions,
        pending_samples=pending_samples,
        update_step=1,
        show_progress=show_progress,
    )


def phasewin(
    objective: Objective,
    *,
    window: float = 0.3,
    accept_ratio: float = 0.99,
    prune_ratio: float = 0.1,
    show_progress: bool = False,
) -> SearchResult:
    """PhaseWin-style phased windows (arXiv 2511.10914).

    Each phase scores every remaining region, accepts the global best, drops candidates whose
    gain is below ``prune_ratio`` x the best gain, re-scores a window of the top ``window``
    fraction against the grown set, and accepts every window candidate whose gain is within
    ``accept_ratio`` of the window's best.
    """
    if not 0 < window <= 1 or not 0 < accept_ratio <= 1 or not 0 <= prune_ratio < 1:
        raise ValueError(
            f"expected 0<window<=1, 0<accept_ratio<=1, 0<=prune_ratio<1; got {window}, {accept_ratio}, {prune_ratio}"
        )
    n = objective.n_regions
    p_full, p_blank = objective.endpoints()
    chosen: list[int] = []
    known: Rows = {}
    last_value: dict[int, float] = {}
    f_cur = float(objective.value(p_blank[None], p_full[None])[0])
    cut = False
    bar = _Progress(n - 1, show_progress, "phasewin")
    while n - len(chosen) > 1:
        remaining = [r for r in range(n) if r not in chosen]
        if not _reserve(objective, 2 * len(remaining), known, after=1):
            cut = True
            break
        ev = objective.evaluate([chosen + [r] for r in remaining])
        last_value.update({r: float(v) for r, v in zip(remaining, ev.value)})
        order = np.argsort(-ev.value, kind="stable")
        best = int(order[0])
        best_gain = float(ev.value[best]) - f_cur
        chosen.append(remaining[best])
        known[len(chosen)] = (ev.ins[best], ev.dele[best])
        f_cur = float(ev.value[best])
        bar.update()
        size = max(1, int(np.ceil(window * len(remaining))))
        floor = prune_ratio * best_gain if best_gain > 0 else -np.inf
        win = [remaining[i] for i in order[1 : 1 + size] if float(ev.value[i]) - (f_cur - best_gain) >= floor]
        if not win or n - len(chosen) <= 1 or not _reserve(objective, 2 * len(win), known, after=1):
            continue
        ev2 = objective.evaluate([chosen + [r] for r in win])
        gains = ev2.value - f_cur
        top = float(gains.max())
        if top <= 0:
            continue
        w_order = np.argsort(-gains, kind="stable")
        accepted = [win[i] for i in w_order if gains[i] >= accept_ratio * top]
        first = int(w_order[0])
        chosen.append(win[first])
        known[len(chosen)] = (ev2.ins[first], ev2.dele[first])
        f_cur = float(ev2.value[first])
        for r in accepted[1:]:
            if n - len(chosen) <= 1:
                break
            chosen.append(r)
        bar.update(len(accepted))
    bar.close()
    remaining = [r for r in range(n) if r not in chosen]
    return _finish(objective, chosen + _stale_order(remaining, last_value), known, {"budget_cut": cut})


def lazy_greedy(objective: Objective, *, refresh: int = 4, show_progress: bool = False) -> SearchResult:
    """Lazy greedy: keep stale gains in a priority queue and re-score only the top ``refresh``.

    A region is accepted when its fresh gain is at least every other stale gain. Exact for a
    submodular F; here F is not submodular, so it is a heuristic, measured like the others.
    """
    if int(refresh) < 1:
        raise ValueError(f"refresh must be >= 1; got {refresh}")
    n = objective.n_regions
    p_full, p_blank = objective.endpoints()
    chosen: list[int] = []
    known: Rows = {}
    f_cur = float(objective.value(p_blank[None], p_full[None])[0])
    heap: list[tuple[float, int]] = []
    fresh_at: dict[int, int] = {}
    # region -> (F, ins[K], dele[K]) scored with the first fresh_at[region] accepted regions:
    # a region accepted on a score from an earlier pass at the same length still has its row.
    rows: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
    last_value: dict[int, float] = {}
    cut = False
    bar = _Progress(n - 1, show_progress, "lazy")
    if _reserve(objective, 2 * n, known, after=1):
        ev = objective.evaluate([[r] for r in range(n)])
        for r in range(n):
            heapq.heappush(heap, (-(float(ev.value[r]) - f_cur), r))
            fresh_at[r] = 0
            last_value[r] = float(ev.value[r])
        best = int(np.argmax(ev.value))
        chosen.append(best)
        known[1] = (ev.ins[best], ev.dele[best])
        f_cur = float(ev.value[best])
        heap = [(g, r) for g, r in heap if r != best]
        heapq.heapify(heap)
        bar.update()
    else:
        cut = True
    while not cut and n - len(chosen) > 1:
        top = [heapq.heappop(heap) for _ in range(min(refresh, len(heap)))]
        stale = [r for _, r in top if fresh_at[r] != len(chosen)]
        if stale:
            if not _reserve(objective, 2 * len(stale), known, after=1):
                cut = True
                for item in top:
                    heapq.heappush(heap, item)
                break
            ev = objective.evaluate([chosen + [r] for r in stale])
            for i, r in enumerate(stale):
                rows[r] = (float(ev.value[i]), ev.ins[i], ev.dele[i])
                fresh_at[r] = len(chosen)
                last_value[r] = rows[r][0]
        for g, r in top:
            if r in stale:
                g = -(rows[r][0] - f_cur)
            heapq.heappush(heap, (g, r))
        g, r = heap[0]
        if fresh_at[r] == len(chosen):
            heapq.heappop(heap)
            chosen.append(r)
            # Its row was scored at this length (now or in an earlier pass): the prefix is
            # known, as the budget reservation of that pass assumed.
            f_cur, ins, dele = rows[r]
            known[len(chosen)] = (ins, dele)
            bar.update()
    if cut and 0 < len(chosen) < n - 1:
        # The passes at this length reserved the replay as if one of their regions came next:
        # put the best region scored at this length next, so its prefix is known.
        scored = [r for r in rows if fresh_at[r] == len(chosen) and r not in chosen]
        if scored:
            r = min(scored, key=lambda q: (-rows[q][0], q))
            chosen.append(r)
            known[len(chosen)] = (rows[r][1], rows[r][2])
    bar.close()
    remaining = [r for r in range(n) if r not in chosen]
    return _finish(objective, chosen + _stale_order(remaining, last_value), known, {"budget_cut": cut})


#: :func:`scan`: a scan's side counts as barely moving when its best gain is under this share
#: of what the other side could still gain (and that is over :data:`_SCAN_ROOM`).
_SCAN_WEAK_GAIN = 0.1
_SCAN_ROOM = 0.05
_SCAN_SPARE_MOVES = 3
_SCAN_BIG_DROP = 0.05


def scan(
    objective: Objective,
    *,
    forward_share: float = 0.20,
    pool: int = 6,
    chunk: int = 1,
    tolerance: float = 0.002,
    show_progress: bool = False,
) -> SearchResult:
    """Greedy steps from one-sided scans where the curves are decided, then the rest checked
    against its own replay; plans to spend ``forward_share`` of exact greedy's ``n(n+1)``
    forwards, curves included.

    1. **Scans** (as many as the plan allows after reserving the replay): each scores every
       remaining region on ONE side, the side of F with more room (``λ2·deletion`` still to
       remove vs ``λ1·(p_full − insertion)`` still to gain: one image per region, half a greedy
       step), then the other side of its best ``pool`` candidates (a third of that after the
       first scan), and accepts the candidate with the highest F. When the scanned side barely
       moves (evidence spread over several regions: no single removal changes the answer) the
       other side is scanned in full too, which is exact greedy's step.
    2. **The rest** follows the last scan's ranking and is replayed in chunks of ``chunk``
       prefixes (the curves, which any search pays for); a region whose step lowers F by more
       than ``tolerance`` (it brings the token back when removed, or hides it when shown) is
       moved to the end and the replay goes on from the prefix before it.

    Measured against exact greedy sample by sample in BENCHMARKS.md ("Fast searches sample by
    sample"). ``objective.max_forwards`` caps it as every search: when it runs short, the rest
    of the ordering is taken as ranked. Ties go to the lowest region id.
    """
    if not 0 < forward_share <= 1:
        raise ValueError(f"forward_share must be in (0, 1]; got {forward_share}")
    for name, value in (("pool", pool), ("chunk", chunk)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1); got {tolerance}")
    pool, chunk = int(pool), int(chunk)
    n = objective.n_regions
    p_full, p_blank = objective.endpoints()
    lam_ins, lam_del = objective.lambda1, objective.lambda2
    # The plan: the share of greedy's forwards, and never less than one scan plus the replay.
    reserve = _SCAN_SPARE_MOVES * 2 * chunk  # kept for moves that bring the token back (below)
    plan = max(int(forward_share * n * (n + 1)), 2 + n + min(pool, n) + replay_cost(n - 2) + reserve)
    known: Rows = {}
    chosen: list[int] = []
    rest = list(range(n))
    rank: dict[int, float] = {}  # the last scan's score of each region, higher = better next
    info: dict[str, Any] = {"plan": plan, "scans": 0, "two_sided_scans": 0, "moved_to_end": 0, "budget_cut": False}

    def fits(cost: int, after: int, spare: int = 0) -> bool:
        """Can ``cost`` be paid now, with the replay of every prefix not known after it (and
        ``spare`` forwards left in the plan)?"""
        if objective.forwards + cost + replay_cost((n - 1) - len(known) - after) + spare > plan:
            return False
        if not _reserve(objective, cost, known, after):
            info["budget_cut"] = True
            return False
        return True

    def current() -> tuple[np.ndarray, np.ndarray]:
        return known[len(chosen)] if chosen else (p_blank, p_full)

    bar = _Progress(n - 1, show_progress, "scan")
    while len(rest) > 1:
        ins_now, del_now = current()
        # What each side of F can still gain (never below 0); a side with no weight is never scanned.
        room = {
            "deletion": lam_del * max(0.0, float(del_now.mean())),
            "insertion": lam_ins * max(0.0, float(p_full.mean() - ins_now.mean())),
        }
        side = "deletion" if lam_ins == 0 or (lam_del > 0 and room["deletion"] >= room["insertion"]) else "insertion"
        other = "insertion" if side == "deletion" else "deletion"
        m = min(pool if not chosen else max(1, pool // 3), len(rest))
        # A scan leaves room for a few moves in the replay below (each wastes a chunk at most).
        if not fits(len(rest) + m, after=1, spare=reserve):
            break
        a = objective.evaluate_side([chosen + [r] for r in rest], side)
        a_mean = a.mean(axis=1)
        score = -a_mean if side == "deletion" else a_mean  # higher = better on this side
        best = np.argsort(-score, kind="stable")[:m]
        gain = (
            (float(del_now.mean()) - float(a_mean.min()))
            if side == "deletion"
            else (float(a_mean.max()) - float(ins_now.mean()))
        )
        lam_side = lam_del if side == "deletion" else lam_ins
        weak = room[other] > _SCAN_ROOM and lam_side * gain < _SCAN_WEAK_GAIN * room[other]
        if weak and fits(len(rest), after=1):  # the other side of all the rest instead of the pool
            rows = np.arange(len(rest))
            info["two_sided_scans"] += 1
        else:
            rows = np.sort(best)  # ascending region ids: exact ties go to the lowest
        b = objective.evaluate_side([chosen + [rest[j]] for j in rows], other)
        ins, dele = (b, a[rows]) if side == "deletion" else (a[rows], b)
        j = int(np.argmax(objective.value(ins, dele)))
        pick = rest[rows[j]]
        known[len(chosen) + 1] = (ins[j], dele[j])
        rank = {r: float(v) for r, v in zip(rest, score)}
        chosen.append(pick)
        rest.remove(pick)
        info["scans"] += 1
        bar.update()

    # The rest in the last scan's order, replayed in chunks; a step that lowers F by more than
    # ``tolerance`` moves its region to the end (once) and the replay resumes before it.
    queue = sorted(rest, key=lambda r: (-rank.get(r, -np.inf), r))
    moved: set[int] = set()
    f_now = float(objective.value(*(x[None] for x in current()))[0])
    while len(queue) > 1 and not all(r in moved for r in queue):
        block = queue[:chunk]
        subsets = [chosen + block[: t + 1] for t in range(len(block)) if len(chosen) + t + 1 < n]
        if not subsets or not fits(2 * len(subsets), after=len(subsets)):
            break
        ev = objective.evaluate(subsets)
        stop = len(subsets)
        for t in range(len(subsets)):
            # Moving the region leaves the prefixes after it unknown: only if their replay still fits.
            drop = f_now - float(ev.value[t])
            if (
                block[t] not in moved
                and drop > tolerance
                and fits(0, after=0, spare=0 if drop > _SCAN_BIG_DROP else reserve)
            ):
                stop = t
                break
            known[len(chosen) + 1] = (ev.ins[t], ev.dele[t])
            f_now = float(ev.value[t])
            chosen.append(block[t])
        bar.update(stop)
        queue = queue[stop:]
        if stop < len(subsets):
            moved.add(queue[0])
            queue = queue[1:] + queue[:1]
            info["moved_to_end"] += 1
        elif len(subsets) < len(block):
            break
    bar.close()
    return _finish(objective, chosen + queue, known, info)  # the queue holds the regions not chosen


def region_adjacency(labels: np.ndarray) -> np.ndarray:
    """``bool[n, n]``: which regions of a label map share an edge (4-neighbourhood)."""
    n = int(labels.max()) + 1
    horizontal = np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1)
    vertical = np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1)
    pairs = np.concatenate([horizontal, vertical])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    adj = np.zeros((n, n), dtype=bool)
    adj[pairs[:, 0], pairs[:, 1]] = True
    return adj | adj.T


def region_groups(labels: np.ndarray, image: np.ndarray | None, n_groups: int) -> list[list[int]]:
    """Merge adjacent regions into ``n_groups`` groups of similar colour (agglomerative).

    Repeatedly merges the two adjacent groups whose merge adds the least colour variance
    (Ward linkage on mean CIELAB colours over the region adjacency graph); without an image,
    the two adjacent groups of smallest combined area merge. Groups are returned largest first.
    """
    n = int(labels.max()) + 1
    if n_groups >= n:
        return [[r] for r in range(n)]
    adj = region_adjacency(labels)
    area = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    region_area = area.copy()
    if image is not None:
        from skimage.color import rgb2lab

        lab = rgb2lab(np.asarray(image)).reshape(-1, 3)
        sums = [np.bincount(labels.ravel(), weights=lab[:, c], minlength=n) for c in range(3)]
        colour = np.stack(sums, 1) / area[:, None]
    else:
        colour = np.zeros((n, 3))
    members: dict[int, list[int]] = {r: [r] for r in range(n)}
    alive = np.ones(n, dtype=bool)
    while len(members) > n_groups:
        # Ward linkage: the increase of within-group colour variance a merge causes, so groups
        # stay of comparable size (a textured background does not swallow everything); ties
        # (and the no-image case) go to the pair with the smallest combined area.
        dist2 = ((colour[:, None] - colour[None]) ** 2).sum(-1)
        cost = dist2 * (area[:, None] * area[None]) / (area[:, None] + area[None]) + 1e-9 * (area[:, None] + area[None])
        cost[~(adj & alive[:, None] & alive[None])] = np.inf
        if not np.isfinite(cost).any():  # disconnected leftovers: merge the two smallest groups
            idx = sorted(members, key=lambda g: area[g])[:2]
            a, b = idx[0], idx[1]
        else:
            a, b = np.unravel_index(int(np.argmin(cost)), cost.shape)
            a, b = int(a), int(b)
        total = area[a] + area[b]
        colour[a] = (colour[a] * area[a] + colour[b] * area[b]) / total
        area[a] = total
        adj[a] |= adj[b]
        adj[:, a] |= adj[:, b]
        adj[a, a] = False
        adj[b] = False
        adj[:, b] = False
        alive[b] = False
        members[a].extend(members.pop(b))
    return sorted((sorted(m) for m in members.values()), key=lambda m: (-float(region_area[m].sum()), m[0]))


def hierarchical(
    objective: Objective,
    *,
    groups: int = 8,
    exact_groups: int = 1,
    refine: int = 0,
    show_progress: bool = False,
) -> SearchResult:
    """Coarse-to-fine greedy: exact greedy over ``groups`` colour-merged groups of adjacent
    regions, then the regions of each accepted group ranked by one scoring step.

    The groups come from :func:`region_groups` (merging adjacent regions of similar colour,
    so an object split into several superpixels tends to become one group). Each coarse step
    scores every remaining group added to the accepted ones (its prefix is part of the curves);
    inside an accepted group each region is scored once added to the accepted prefix, and the
    group's regions follow in that order; the first ``exact_groups`` accepted groups are
    ordered by exact greedy instead (under a budget: as many exact steps as fit, the rest of
    the group by its last scores). With ``refine > 0``, right after the first group up to
    ``refine`` exact greedy steps are taken over the regions bordering the accepted ones (the
    regions that finish off an object usually touch it). Cost: about ``g(g+1) + 4n`` forwards
    for ``g`` groups and ``n`` regions, curves included, plus ``2·|border|`` per refine step
    (``n(n+1)`` for exact greedy). Exact ties go to the lowest region id, as in :func:`greedy`.

    Raises:
        ValueError: the objective orders features other than the label map's regions (e.g.
            prompt words): groups and borders come from the label map, so those features
            would never be scored.
    """
    n = objective.n_regions
    n_image = int(objective.labels.max()) + 1
    if n != n_image:
        allowed = sorted(set(SEARCHES) - IMAGE_ONLY_SEARCHES)
        raise ValueError(
            f"hierarchical groups the {n_image} regions of the label map by their geometry; this objective "
            f"orders {n} features, {n - n_image} of them not image regions (e.g. prompt words), which it would "
            f"never score; use one of {allowed}"
        )
    objective.endpoints()
    image = getattr(objective.scorer, "image", None)
    group_list = region_groups(objective.labels, image, int(groups))
    chosen: list[int] = []
    known: Rows = {}
    last_value: dict[int, float] = {}
    remaining = list(range(len(group_list)))
    accepted = 0
    cut = False
    bar = _Progress(n - 1, show_progress, "hierarchical")
    while remaining and n - len(chosen) > 1:
        if len(remaining) == 1:
            j = 0
            picked = group_list[remaining[0]]
        else:
            if not _reserve(objective, 2 * len(remaining), known, after=1):
                cut = True
                break
            ev = objective.evaluate([chosen + group_list[g] for g in remaining])
            j = int(np.argmax(ev.value))
            picked = group_list[remaining[j]]
            for g, v in zip(remaining, ev.value):
                for r in group_list[g]:
                    last_value[r] = float(v)
            known[len(chosen) + len(picked)] = (ev.ins[j], ev.dele[j])
        remaining.pop(j)
        k = len(picked)
        if k > 1 and accepted < exact_groups:
            # The head of the ordering matters most: exact greedy inside the first group(s);
            # after a budget cut the rest of the group follows its last scores.
            inner, inner_cut = _greedy_steps(objective, chosen, picked, known, last_value, max_steps=k - 1)
            cut = cut or inner_cut
            picked = inner + _stale_order([r for r in picked if r not in inner], last_value)
        elif k > 1:
            if _reserve(objective, 2 * len(picked), known, after=1):
                ev2 = objective.evaluate([chosen + [r] for r in picked])
                order = np.argsort(-ev2.value, kind="stable")
                known[len(chosen) + 1] = (ev2.ins[order[0]], ev2.dele[order[0]])
                for r, v in zip(picked, ev2.value):
                    last_value[r] = float(v)
                picked = [picked[i] for i in order]
            else:
                cut = True
        chosen.extend(picked)
        accepted += 1
        bar.update(len(picked))
        if accepted == 1 and refine > 0:
            # Right after the first group: greedy steps over the regions bordering the head.
            adj = region_adjacency(objective.labels)

            def border(taken: list[int], adj: np.ndarray = adj) -> list[int]:
                if n - len(taken) <= 1:
                    return []
                inside = np.zeros(n, dtype=bool)
                inside[taken] = True
                return [int(r) for r in np.nonzero(adj[inside].any(0) & ~inside)[0]]

            steps, refine_cut = _greedy_steps(
                objective, chosen, border, known, last_value, max_steps=int(refine), bar=bar
            )
            chosen.extend(steps)
            cut = cut or refine_cut
            taken = set(chosen)
            for g in remaining:
                group_list[g] = [r for r in group_list[g] if r not in taken]
            remaining = [g for g in remaining if group_list[g]]
    bar.close()
    rest = [r for r in range(n) if r not in set(chosen)]
    return _finish(
        objective, chosen + _stale_order(rest, last_value), known, {"groups": len(group_list), "budget_cut": cut}
    )


#: name -> search function.
SEARCHES: dict[str, Callable[..., SearchResult]] = {
    "greedy": greedy,
    "efficient": efficient,
    "bidirectional": bidirectional,
    "phasewin": phasewin,
    "lazy": lazy_greedy,
    "hierarchical": hierarchical,
    "scan": scan,
}

#: Searches that read the label map's geometry (colour groups, adjacent regions): they order
#: image regions only, never other features such as prompt words.
IMAGE_ONLY_SEARCHES: frozenset[str] = frozenset({"hierarchical"})


def get_search(name: str) -> Callable[..., SearchResult]:
    """The search function registered as ``name`` in :data:`SEARCHES`.

    Raises:
        ValueError: ``name`` is not a known search.
    """
    try:
        return SEARCHES[name]
    except KeyError:
        raise ValueError(f"unknown search {name!r}; expected one of {sorted(SEARCHES)}") from None


#: option -> (kind, low, high, low inclusive, high inclusive) for every search option.
_OPTION_RANGES: dict[str, tuple[type, float, float, bool, bool]] = {
    "search_scope": (int, 1, float("inf"), True, False),
    "pending_samples": (int, 1, float("inf"), True, False),
    "update_step": (int, 1, float("inf"), True, False),
    "refresh": (int, 1, float("inf"), True, False),
    "groups": (int, 1, float("inf"), True, False),
    "exact_groups": (int, 0, float("inf"), True, False),
    "refine": (int, 0, float("inf"), True, False),
    "window": (float, 0.0, 1.0, False, True),
    "accept_ratio": (float, 0.0, 1.0, False, True),
    "prune_ratio": (float, 0.0, 1.0, True, False),
    "forward_share": (float, 0.0, 1.0, False, True),
    "pool": (int, 1, float("inf"), True, False),
    "chunk": (int, 1, float("inf"), True, False),
    "tolerance": (float, 0.0, 1.0, True, False),
}


def search_option_names(name: str) -> list[str]:
    """The options search ``name`` takes (its keyword parameters, less the ones the engine passes)."""
    return sorted(set(inspect.signature(get_search(name)).parameters) - {"objective", "show_progress", "rng"})


def search_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``options`` for search ``name`` and return them with their types normalised.

    Raises:
        ValueError: an unknown search, an unknown option, or a value out of range.
        TypeError: a value of the wrong type (``True``, a string, ``inf`` for a count...).
    """
    allowed = search_option_names(name)
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"search_options must be a dict; got {type(options).__name__}")
    unknown = sorted(set(options) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for search {name!r}; allowed: {allowed}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        kind, low, high, low_in, high_in = _OPTION_RANGES[key]
        what = (
            "an integer >= 1"
            if kind is int
            else (f"a number in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}")
        )
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"search option {key} must be {what}; got {value!r}")
        if kind is int and not float(value).is_integer():
            raise TypeError(f"search option {key} must be {what}; got {value!r}")
        v = float(value)
        ok = np.isfinite(v) and (v >= low if low_in else v > low) and (v <= high if high_in else v < high)
        if not ok:
            raise ValueError(f"search option {key} must be {what}; got {value!r}")
        out[key] = int(v) if kind is int else v
    return out


def run_search(
    name: str,
    objective: Objective,
    options: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    show_progress: bool = False,
) -> SearchResult:
    """Run search ``name`` with ``options`` on ``objective``; a search that takes them also gets
    a progress flag and a generator seeded with ``seed`` (the one call every caller shares)."""
    fn = get_search(name)
    kwargs = dict(options or {})
    params = inspect.signature(fn).parameters
    if "show_progress" in params:
        kwargs["show_progress"] = show_progress
    if "rng" in params:
        kwargs["rng"] = np.random.default_rng(seed)
    return fn(objective, **kwargs)
