"""Choosing the listed artists from the pool: relevance, discovery, and MMR diversity.

Relevance is the source's ranking made scale-free: scores are forced non-increasing along the
ranking (the ranking is the truth; an index may return slightly unsorted scores) and scaled to
0..1 over the pool. Items without a score (popularity fills) tie with the lowest score, so they
keep their order behind every scored item.

Discovery blends in novelty, ``-log(1 + listeners)`` scaled to 0..1 over the same pool:
``(1 - discovery) * relevance + discovery * novelty``. For a fixed pool the listed set is the
top ``n`` of that blend, so the mean log-listeners of the list can only fall as the dial rises.

Diversity is maximal marginal relevance with the mean similarity to the items already chosen,
made monotone: greedy MMR lists are built for a fixed ladder of trade-offs (:data:`FRONTIER`)
and the list returned is the one with the best ``(1 - diversity) * mean relevance - diversity *
mean pairwise similarity``. Choosing by that objective over a fixed family is what guarantees
that the list's mean pairwise similarity never rises (its intra-list distance never falls) as
the dial rises; plain greedy MMR does not (its lists can get less diverse at a higher setting).
"""

from __future__ import annotations

import numpy as np

from musicrec.rules.filters import UNCAPPED, occurrence

FRONTIER = np.linspace(0.0, 1.0, 11)  # trade-offs whose greedy lists diversity chooses among


def relevance(scores: np.ndarray) -> np.ndarray:
    """Scores along the ranking -> non-increasing values in 0..1 (unscored items: lowest)."""
    values = np.asarray(scores, dtype=np.float64).copy()
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(len(values))
    values[~finite] = values[finite].min()
    values = np.minimum.accumulate(values)
    spread = values[0] - values[-1]
    if spread <= 0:
        return np.zeros(len(values))
    scaled: np.ndarray = (values - values[-1]) / spread
    return scaled


def novelty(listeners: np.ndarray) -> np.ndarray:
    """Fewer listeners -> higher, scaled to 0..1 over the given items."""
    values = -np.log1p(np.maximum(np.asarray(listeners, dtype=np.float64), 0.0))
    if not len(values):
        return values
    low, high = values.min(), values.max()
    if high <= low:
        return np.zeros(len(values))
    scaled: np.ndarray = (values - low) / (high - low)
    return scaled


def blend(scores: np.ndarray, listeners: np.ndarray, discovery: float) -> np.ndarray:
    """What the list is chosen by: relevance, with ``discovery`` of it novelty."""
    rel = relevance(scores)
    if discovery <= 0:
        return rel
    mixed: np.ndarray = (1.0 - discovery) * rel + discovery * novelty(listeners)
    return mixed


def _gates(
    value: np.ndarray,
    sim: np.ndarray,
    group: np.ndarray,
    item_room: np.ndarray,
    n: int,
    gate: np.ndarray,
    shut: np.ndarray,
) -> None:
    """The cap as arithmetic: fills each list's ``gate`` per item, and what a pick adds to the
    gates (``shut``, items x items).

    An item's gate is ``big * (room left - 1/2)``: at least ``big / 2`` while its tag has room
    in the list, at most ``-big / 2`` once the tag is full; a pick adds ``-big`` to the items
    sharing its capped tag and ``-inf`` to itself. ``big`` is a power of two of at least four
    times the largest objective (largest value plus largest similarity, in magnitude), so
    ``min(objective, gate)`` passes an open item's objective unchanged, a closed item never
    beats an open one, and every gate is exact in float32.
    """
    largest_value = float(np.abs(value).max(initial=1.0))
    bound = largest_value + max(float(sim.max(initial=1.0)), -float(sim.min(initial=-1.0)))
    big = np.float32(2.0 ** np.ceil(np.log2(4.0 * bound)))
    gate[:] = big * (np.minimum(item_room, n + 1) - 0.5)  # room beyond n never runs out
    # equal keys share a capped tag; each uncapped item has a key of its own
    key = np.where(item_room < UNCAPPED, group, -1 - np.arange(len(group)))
    small = max(len(group), int(group.max(initial=0))) < 2**15 - 1
    key = key.astype(np.int16 if small else np.int64)  # int16: a faster compare
    np.multiply(np.equal.outer(key, key), -big, out=shut)
    np.fill_diagonal(shut, -np.inf)


def _frontier(
    value: np.ndarray,
    sim: np.ndarray,
    group: np.ndarray,
    room: np.ndarray,
    n: int,
    grid: np.ndarray,
) -> np.ndarray:
    """Greedy MMR lists (positions) for every trade-off of ``grid`` at once.

    Step ``s`` picks, per list, the best ``(1 - g) * value - g * mean similarity to the ``s``
    picked`` among the items still open: not picked, their tag not full in that list
    (:func:`_gates`). This loop is the chain's hot path, so each step is the same few numpy
    calls over every list and candidate (float32), whatever the lists picked. Under a cap each
    list's state is its similarity sums and its gates side by side, and so is what a pick adds
    to them, so one gather and one add update both; without one, a picked item's value is set
    to ``-inf`` in the list's own copy.
    """
    lists, size = len(grid), len(value)
    weight = grid.astype(np.float32)[:, None]
    base = (1.0 - weight) * value.astype(np.float32)[None, :]
    item_room = room[group]
    base[:, item_room <= 0] = -np.inf
    base_flat, offsets = base.reshape(-1), np.arange(lists) * size  # each list in base_flat
    capped = bool((item_room < UNCAPPED).any())
    if capped:  # a list's state: similarity sums, then gates; a pick adds its row of effect
        effect = np.empty((size, 2 * size), dtype=np.float32)
        effect[:, :size] = sim
        state = np.zeros((lists, 2 * size), dtype=np.float32)
        gate = state[:, size:]
        _gates(value, sim, group, item_room, n, gate, effect[:, size:])
    else:
        effect, state = sim, np.zeros((lists, size), dtype=np.float32)
    similarity_sum = state[:, :size]
    # step s weighs the mean similarity: g / max(s, 1), per list
    factors = weight[None] / np.maximum(np.arange(n), 1).astype(np.float32)[:, None, None]
    objective = np.empty((lists, size), dtype=np.float32)
    picks = np.empty((lists, n), dtype=np.int64)
    for step in range(n):
        np.multiply(similarity_sum, factors[step], out=objective)
        np.subtract(base, objective, out=objective)
        if capped:
            np.minimum(objective, gate, out=objective)
        chosen = picks[:, step] = objective.argmax(axis=1)
        if step + 1 < n:
            state += effect[chosen]
            if not capped:
                base_flat[offsets + chosen] = -np.inf
    return picks


def diversify(
    value: np.ndarray,
    sim: np.ndarray,
    group: np.ndarray,
    room: np.ndarray,
    n: int,
    diversity: float,
    grid: np.ndarray = FRONTIER,
) -> np.ndarray:
    """Positions of the ``n`` items listed at ``diversity`` (in list order).

    ``value`` is each pool item's blended relevance, ``sim`` their pairwise similarity,
    ``group``/``room`` the per-tag cap (``n`` must fit under it). The objective of each
    candidate list is computed exactly (float64) from ``sim``, so the choice, and with it the
    monotone guarantee, does not depend on the greedy loop's float32 sums.
    """
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    sim = np.asarray(sim, dtype=np.float32)
    picks = _frontier(value, sim, group, room, n, np.asarray(grid, dtype=np.float64))
    mean_value = np.asarray(value, dtype=np.float64)[picks].mean(axis=1)
    mean_pair = np.zeros(len(picks))
    if n > 1:
        # each list's block of sim, gathered through flat indices (cheaper than 2-d indexing)
        pairs = picks[:, :, None] * len(sim) + picks[:, None, :]
        blocks = np.take(sim.ravel(), pairs.reshape(len(picks), -1))
        diagonal = sim.diagonal()[picks].sum(axis=1, dtype=np.float64)
        mean_pair = (blocks.sum(axis=1, dtype=np.float64) - diagonal) / (n * (n - 1))
    objective = (1.0 - diversity) * mean_value - diversity * mean_pair
    best: np.ndarray = picks[int(np.argmax(objective))]
    return best


def cap_removed(order: np.ndarray, chosen: np.ndarray, group: np.ndarray, room: np.ndarray) -> int:
    """Items the cap kept out: not chosen, ranked (by ``order``) above the last one chosen,
    with their tag already full in the list."""
    if not len(chosen) or not (room < UNCAPPED).any():
        return 0
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    listed = np.zeros(len(order), dtype=bool)
    listed[chosen] = True
    full = np.bincount(group[chosen], minlength=len(room)) >= room
    above = rank < rank[chosen].max()
    return int((above & ~listed & full[group]).sum())


def diversity_pool(
    order: np.ndarray, group: np.ndarray, room: np.ndarray, n: int, best: int
) -> np.ndarray:
    """What diversity chooses ``n`` items among: entries of ``order`` (the ranking), in order.

    The best ``best`` of the ranking, then, walking further down it, only the items whose tag
    the pool still holds fewer of than the tag's room, until the pool can hold ``n`` items
    under the cap (or the ranking ends). Those further items are exactly the ones the ranking's
    own list under the cap takes below the first ``best`` (an item's tag has room in the pool
    when it has room among every item ranked above it), so the pool is at most ``best + n``
    long, holds the list diversity 0 gives, and fills ``n`` whenever the whole ranking can.
    Without a cap it is the best ``max(best, n)``.
    """
    best = max(best, n)
    if not (room < UNCAPPED).any():
        return order[:best]
    ranked = group[order]
    listed = np.flatnonzero(occurrence(ranked) < room[ranked])[:n]
    deeper = listed[listed >= best]
    return np.concatenate([order[:best], order[deeper]])
