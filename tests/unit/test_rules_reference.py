"""The chain's vectorised parts equal straightforward references on random inputs (hypothesis).

The property tests pin what a list must satisfy; these pin the exact output: the hard rules
and their counts, the per-tag cap, the pool diversity chooses from, and every greedy MMR list
it chooses among, each against a plain Python loop written for clarity rather than speed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from rules_worlds import NOW, World, blocked, worlds
from test_rules_properties import SETTINGS

from musicrec.rules import cosine
from musicrec.rules.filters import RULES, UNCAPPED, Caps, Filters
from musicrec.rules.select import FRONTIER, _frontier, diversify, diversity_pool


@SETTINGS
@given(worlds(), st.booleans(), st.data())
def test_hard_rules_keep_and_count_as_the_oracle(world: World, familiar: bool, data) -> None:
    n = world.meta.n_items
    ids = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=2 * n)), dtype=np.int64)
    filters = Filters(world.dials, world.meta, world.listener, NOW)
    kept = filters.keep(ids, familiar=familiar)
    reasons = [blocked(world, int(i), familiar=familiar) for i in ids]
    assert kept.tolist() == [reason is None for reason in reasons]
    expected = Counter(reason for reason in reasons if reason is not None)
    assert filters.removed == {rule: expected.get(rule, 0) for rule in RULES}


def listed_per_tag(top: np.ndarray, ids: list[int]) -> Counter[int]:
    return Counter(int(top[i]) for i in ids if top[i] >= 0)


@SETTINGS
@given(worlds(), st.integers(1, 4), st.data())
def test_the_cap_counts_room_as_a_plain_loop(world: World, cap: int, data) -> None:
    n = world.meta.n_items
    top = world.meta.top_tag
    items = st.lists(st.integers(0, n - 1), max_size=n)
    taken, ids = data.draw(items), data.draw(items.map(lambda x: list(dict.fromkeys(x))))
    limit = data.draw(st.integers(0, n))
    caps = Caps(world.meta, cap)
    caps.take(np.array(taken, dtype=np.int64))
    positions, passed = caps.scan(np.array(ids, dtype=np.int64), limit)
    listed, allowed, seen = listed_per_tag(top, taken), [], []
    for position, item in enumerate(ids):
        tag = int(top[item])
        if tag >= 0 and listed[tag] >= cap:
            seen.append(position)
            continue
        if len(allowed) < limit:
            allowed.append(position)
            listed[tag] += tag >= 0
    assert positions.tolist() == allowed
    assert passed == sum(1 for p in seen if allowed and p < allowed[-1])
    room = listed_per_tag(top, taken)
    by_tag = Counter(int(top[i]) for i in ids)
    expected = sum(
        count if tag < 0 else min(count, max(cap - room[tag], 0)) for tag, count in by_tag.items()
    )
    assert caps.capacity(np.array(ids, dtype=np.int64)) == expected


def reference_frontier(
    value: np.ndarray, sim: np.ndarray, group: np.ndarray, room: np.ndarray, n: int, grid
) -> np.ndarray:
    """One greedy list per trade-off, item by item, in the same float32 arithmetic."""
    lists = []
    for trade_off in np.asarray(grid, dtype=np.float32):
        base = [(np.float32(1.0) - trade_off) * np.float32(v) for v in value]
        sums = [np.float32(0.0)] * len(value)
        left = dict(enumerate(room.tolist()))
        picked: list[int] = []
        for step in range(n):
            factor = trade_off / np.float32(max(step, 1))
            best, best_score = -1, np.float32(0.0)
            for item in range(len(value)):
                if item in picked or left[int(group[item])] <= 0:
                    continue
                score = base[item] - sums[item] * factor
                if best < 0 or score > best_score:
                    best, best_score = item, score
            picked.append(best)
            left[int(group[best])] -= 1
            sums = [total + np.float32(s) for total, s in zip(sums, sim[best], strict=True)]
        lists.append(picked)
    return np.array(lists, dtype=np.int64).reshape(len(grid), n)


def reference_best(value, sim, group, room, n, diversity, grid) -> list[list[int]]:
    """The lists whose ``(1 - d) * mean value - d * mean pairwise similarity`` is best (within
    float rounding: the same items in another order score the same up to summation order)."""
    if n == 0:
        return [[]]
    scores = {}
    for picks in reference_frontier(value, sim, group, room, n, grid).tolist():
        mean_value = sum(float(value[i]) for i in picks) / n
        pairs = [float(sim[i, j]) for i in picks for j in picks if i != j]
        mean_pair = sum(pairs) / len(pairs) if pairs else 0.0
        scores[tuple(picks)] = (1.0 - diversity) * mean_value - diversity * mean_pair
    top = max(scores.values())
    return [list(picks) for picks, score in scores.items() if score >= top - 1e-9]


@st.composite
def mmr_inputs(draw: st.DrawFn):
    size = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    ties = draw(st.booleans())  # values from three levels: many exact ties
    value = rng.choice([0.0, 0.5, 1.0], size) if ties else rng.random(size)
    value = value * draw(st.sampled_from([1.0, 5.0]))  # the cap's gates scale with the values
    vectors = rng.normal(size=(size, draw(st.integers(1, 6))))
    sim = cosine(vectors)(np.arange(size)) * draw(st.sampled_from([1.0, 3.0]))
    groups = draw(st.integers(1, 6))
    group = rng.integers(0, groups, size)
    room = np.array(
        draw(st.lists(st.sampled_from([UNCAPPED, 0, 1, 2, 3]), min_size=groups, max_size=groups)),
        dtype=np.int64,
    )
    capacity = int(np.minimum(np.bincount(group, minlength=groups), room).sum())
    n = draw(st.integers(min(1, capacity), capacity))
    grid = draw(st.one_of(st.just(FRONTIER), st.lists(st.floats(0, 1), min_size=1, max_size=4)))
    return value, sim.astype(np.float32), group, room, n, np.asarray(grid, dtype=np.float64)


@SETTINGS
@given(mmr_inputs(), st.floats(0, 1))
def test_mmr_lists_and_choice_equal_a_plain_loop(inputs, diversity: float) -> None:
    value, sim, group, room, n, grid = inputs
    picks = _frontier(value, sim, group, room, n, grid)
    np.testing.assert_array_equal(picks, reference_frontier(value, sim, group, room, n, grid))
    chosen = diversify(value, sim, group, room, n, diversity, grid)
    assert chosen.tolist() in reference_best(value, sim, group, room, n, diversity, grid)


def reference_pool(order: list[int], group: list[int], room: list[int], n: int, best: int):
    """The best ``max(best, n)`` of the ranking; then, down the ranking, an item only while
    its tag has room left in the pool, until the pool can hold ``n`` under the cap."""
    pool = order[: max(best, n)]
    held = Counter(group[item] for item in pool)
    for item in order[len(pool) :]:
        if sum(min(count, room[tag]) for tag, count in held.items()) >= n:
            break
        if held[group[item]] < room[group[item]]:
            pool.append(item)
            held[group[item]] += 1
    return pool


@SETTINGS
@given(st.data())
def test_the_diversity_pool_is_the_walk_down_the_ranking(data) -> None:
    size = data.draw(st.integers(0, 60))
    groups = data.draw(st.integers(1, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    order, group = rng.permutation(size), rng.integers(0, groups, size)
    room = data.draw(
        st.lists(st.sampled_from([UNCAPPED, 0, 1, 2, 3]), min_size=groups, max_size=groups)
    )
    n, best = data.draw(st.integers(0, size)), data.draw(st.integers(0, 3 * size))
    pool = diversity_pool(order, group, np.array(room, dtype=np.int64), n, best)
    expected = reference_pool(order.tolist(), group.tolist(), room, n, best)
    assert pool.tolist() == expected
    # never longer than the best plus the n the ranking itself would list
    assert len(pool) <= max(best, n) + n
