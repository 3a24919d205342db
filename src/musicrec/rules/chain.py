"""The rule chain: candidates in, exactly ``min(k, eligible)`` distinct listable artists out.

Order of work:

1. Hard rules on every candidate (:mod:`~musicrec.rules.filters`): active bans, excluded
   artists, excluded tags, ``include_tags``, already played, recent events, cool-down.
2. Familiar slots: ``round(familiar_share * k)`` of the listener's own artists, favourites
   first, when ``familiar_share > 0``.
3. The pool of new artists: the model's candidates; when they cannot fill the list under the
   rules, deeper candidates from the same ranking (``deeper``), then the most popular artists.
4. Choice (:mod:`~musicrec.rules.select`): the ranking as it is, or re-ranked for
   ``discovery`` and ``diversity``, always under ``max_per_tag``.
5. Top-up: if new artists ran out, more familiar ones (when the share allows any).

"Eligible" is the largest list the rules allow from the whole catalogue, so a listener who has
played almost everything still gets every artist that is left. With every dial at its neutral
value the answer is the model's own top-``k``.
"""

from __future__ import annotations

import math

import numpy as np

from musicrec.errors import ConfigError
from musicrec.rules.filters import Caps, Filters, first_allowed
from musicrec.rules.inputs import (
    DEEPER,
    FAMILIAR,
    MODEL,
    NEUTRAL,
    POPULARITY,
    Candidates,
    Deeper,
    Dials,
    ItemMeta,
    ListenerState,
    RuleResult,
    Similarity,
)
from musicrec.rules.select import blend, cap_removed, diversify, diversity_pool

MAX_DEEPER_CALLS = 3  # then popularity: each deeper call is another model query
FIRST_POPULAR_CHUNK = 64
# Diversity chooses among the best MMR_POOL_FACTOR x n of the pool, and under max_per_tag the
# few further down that the ranking's own capped list takes (select.diversity_pool): at most
# (MMR_POOL_FACTOR + 1) x n. On HetRec-2K the accuracy vs intra-list distance curve is the same
# for 4 x k and 10 x k (docs/dials.md); the pool x pool similarity is the chain's largest cost.
MMR_POOL_FACTOR = 4


class _Pool:
    """Listable new artists gathered from every source, in source order, each once."""

    def __init__(self, n_items: int, filters: Filters, caps: Caps):
        self.seen = np.zeros(n_items, dtype=bool)
        self.filters = filters
        self.caps = caps
        self.sizes = caps.count(np.empty(0, dtype=np.int64))  # the pool's, per top tag
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.examined = 0

    def add(self, candidates: Candidates, origin: int) -> None:
        ids, scores = candidates.ids, candidates.scores
        if len(ids) and (ids.max() >= len(self.seen)):
            raise ValueError(f"candidate id {int(ids.max())} is outside the catalogue")
        fresh = ~self.seen[ids]
        fresh &= _first_occurrence(ids)
        ids, scores = ids[fresh], scores[fresh]
        self.seen[ids] = True
        self.examined += len(ids)
        keep = self.filters.keep(ids)
        self.parts.append((ids[keep], scores[keep], np.full(int(keep.sum()), origin, np.int8)))
        self.sizes = self.sizes + self.caps.count(ids[keep])

    def capacity(self) -> int:
        """How many of the pool could be listed together under the cap."""
        return self.caps.fit(self.sizes)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pool so far (joined once after each addition, not on every call)."""
        if not self.parts:
            self.parts = [(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int8))]
        if len(self.parts) > 1:
            ids, scores, origin = (np.concatenate(part) for part in zip(*self.parts, strict=True))
            self.parts = [(ids, scores, origin)]
        return self.parts[0]


def _first_occurrence(ids: np.ndarray) -> np.ndarray:
    _, first = np.unique(ids, return_index=True)
    mask = np.zeros(len(ids), dtype=bool)
    mask[first] = True
    return mask


def _fill_pool(
    pool: _Pool,
    needed: int,
    candidates: Candidates,
    deeper: Deeper | None,
    popularity: np.ndarray,
) -> None:
    """Candidates, then deeper ones, then popular artists, until ``needed`` fit (or none left)."""
    pool.add(candidates, MODEL)
    fetched, calls, n_items = len(candidates), 0, len(pool.seen)
    while deeper is not None and calls < MAX_DEEPER_CALLS and fetched < n_items:
        if pool.capacity() >= needed:
            return
        want = min(n_items, max(2 * fetched, fetched + 2 * needed))
        more = deeper(want)
        calls += 1
        pool.add(more, DEEPER)
        if len(more) <= fetched:
            break  # the ranking has nothing deeper
        fetched = len(more)
    start, chunk = 0, max(FIRST_POPULAR_CHUNK, 2 * needed)
    while start < len(popularity) and pool.capacity() < needed:
        pool.add(Candidates.of(popularity[start : start + chunk]), POPULARITY)
        start, chunk = start + chunk, 2 * chunk


def _familiar(listener: ListenerState, filters: Filters) -> tuple[np.ndarray, int]:
    """The listener's own artists the rules allow, favourites first; and how many were looked at."""
    favourites = listener.favourites()
    return favourites[filters.keep(favourites, familiar=True)], len(favourites)


def _take_familiar(
    favourites: np.ndarray, listed: np.ndarray, caps: Caps, limit: int
) -> tuple[np.ndarray, int]:
    """The next ``limit`` favourites not ``listed`` yet that the cap allows (and cap removals)."""
    rest = favourites[~np.isin(favourites, listed)]
    positions, capped = caps.scan(rest, limit)
    caps.take(rest[positions])
    return rest[positions], capped


def _choose_new(
    ids: np.ndarray,
    scores: np.ndarray,
    meta: ItemMeta,
    caps: Caps,
    dials: Dials,
    n: int,
    similarity: Similarity | None,
    mmr_pool: int | None = None,
) -> tuple[np.ndarray, int]:
    """Positions (into the pool) of the ``n`` new artists, in list order; and cap removals."""
    group, room = caps.groups(ids)
    value = blend(scores, meta.listeners[ids], dials.discovery)
    ranked = dials.discovery > 0  # otherwise the source's order stands, exactly
    order = np.argsort(-value, kind="stable") if ranked else np.arange(len(ids))
    if dials.diversity <= 0 or n <= 1:
        chosen = order[first_allowed(group[order], room, n)]
    else:
        assert similarity is not None
        best = MMR_POOL_FACTOR * n if mmr_pool is None else mmr_pool
        head = diversity_pool(order, group, room, n, best)
        sim = np.asarray(similarity(ids[head]))
        if sim.shape != (len(head), len(head)):
            raise ValueError(f"similarity returned {sim.shape}, expected {len(head)} square")
        picked = diversify(value[head], sim, group[head], room, n, dials.diversity)
        chosen = head[picked]
    return chosen, cap_removed(order, chosen, group, room)


def _interleave(new: np.ndarray, familiar: np.ndarray) -> np.ndarray:
    """Where the familiar items go in a list of both: spread evenly, the first near the top."""
    total = len(new) + len(familiar)
    slots = np.zeros(total, dtype=bool)
    if len(familiar):
        slots[np.floor((np.arange(len(familiar)) + 0.5) * total / len(familiar)).astype(int)] = 1
    return slots


def apply_rules(
    candidates: Candidates,
    k: int,
    *,
    meta: ItemMeta,
    popularity: np.ndarray,
    now: float,
    listener: ListenerState | None = None,
    dials: Dials = NEUTRAL,
    deeper: Deeper | None = None,
    similarity: Similarity | None = None,
    mmr_pool: int | None = None,
) -> RuleResult:
    """The list for one request (see the module docstring for the order of work).

    ``popularity`` lists every item, most listened first (the last back-fill); ``now`` is the
    request's time in epoch seconds (bans, recent events and cool-downs are judged at it).
    ``mmr_pool``: how many of the best candidates diversity chooses among (default
    :data:`MMR_POOL_FACTOR` x the new artists wanted), with, under a cap, the ones further down
    that the ranking's own list takes (:func:`~musicrec.rules.select.diversity_pool`).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if dials.diversity > 0 and similarity is None:
        raise ConfigError("diversity needs an item similarity from the model")
    listener = listener or ListenerState()
    filters = Filters(dials, meta, listener, now)
    caps = Caps(meta, dials.max_per_tag)
    familiar = favourites = np.empty(0, dtype=np.int64)
    capped = looked_at = 0
    if dials.familiar_share > 0 and k:
        favourites, looked_at = _familiar(listener, filters)
        target = math.floor(dials.familiar_share * k + 0.5)
        familiar, capped = _take_familiar(favourites, familiar, caps, target)
    pool = _Pool(meta.n_items, filters, caps)
    needed = k - len(familiar)
    _fill_pool(pool, needed, candidates, deeper, np.asarray(popularity, dtype=np.int64))
    ids, scores, origin = pool.arrays()
    n_new = min(needed, pool.capacity())
    chosen, capped_new = _choose_new(ids, scores, meta, caps, dials, n_new, similarity, mmr_pool)
    caps.take(ids[chosen])
    capped += capped_new
    if len(favourites) and len(familiar) + len(chosen) < k:
        more, _ = _take_familiar(favourites, familiar, caps, k - len(familiar) - len(chosen))
        familiar = np.concatenate([familiar, more])
    slots = _interleave(chosen, familiar)
    out_ids = np.empty(len(slots), dtype=np.int64)
    out_scores = np.full(len(slots), np.nan)
    out_origin = np.full(len(slots), FAMILIAR, dtype=np.int8)
    out_ids[slots], out_ids[~slots] = familiar, ids[chosen]
    out_scores[~slots], out_origin[~slots] = scores[chosen], origin[chosen]
    removed = dict(filters.removed)
    removed["max_per_tag"] += capped
    return RuleResult(out_ids, out_scores, out_origin, removed, pool.examined + looked_at)
