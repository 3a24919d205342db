"""Properties of the rule chain over random catalogues, listeners, dials and k (hypothesis)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_worlds import NOW, World, blocked, catalogues, eligible, rank, worlds

from musicrec.rules import ORIGINS, Candidates, Dials, ListenerState, apply_rules, cosine
from musicrec.rules.select import blend

FAMILIAR = ORIGINS.index("familiar")
# MUSICREC_PROPERTY_EXAMPLES=10000 for a thorough run (minutes); 300 keeps the suite quick.
EXAMPLES = int(os.environ.get("MUSICREC_PROPERTY_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def run(
    world: World,
    use_deeper: bool,
    dials: Dials | None = None,
    seed: int = 0,
    mmr_pool: int | None = None,
):
    vectors = np.random.default_rng(seed).normal(size=(world.meta.n_items, 4))
    return apply_rules(
        world.candidates,
        world.k,
        meta=world.meta,
        popularity=world.popularity,
        now=NOW,
        listener=world.listener,
        dials=world.dials if dials is None else dials,
        deeper=world.deeper if use_deeper else None,
        similarity=cosine(vectors),
        mmr_pool=mmr_pool,
    )


def check_list(world: World, result) -> None:
    new, familiar = eligible(world)
    expected = min(world.k, rank(world, new | familiar))
    ids = result.ids.tolist()
    assert len(ids) == expected
    assert len(set(ids)) == len(ids)
    for item, origin in zip(ids, result.origin.tolist(), strict=True):
        if origin == FAMILIAR:
            assert item in familiar, (item, blocked(world, item, familiar=True))
        else:
            assert item in new, (item, blocked(world, item))
    cap = world.dials.max_per_tag
    if cap is not None:
        tops = world.meta.top_tag[result.ids]
        tagged = tops[tops >= 0]
        assert np.bincount(tagged).max(initial=0) <= cap
    assert all(count >= 0 for count in result.removed.values())


# None: the chain's own diversity pool; small ones make it walk deeper for the cap's sake
MMR_POOLS = st.sampled_from([None, 1, 3])


@SETTINGS
@given(worlds(), st.booleans(), MMR_POOLS)
def test_exact_count_distinct_and_nothing_excluded(
    world: World, use_deeper: bool, mmr_pool: int | None
) -> None:
    check_list(world, run(world, use_deeper, mmr_pool=mmr_pool))


@SETTINGS
@given(worlds(almost_everything=True), st.booleans())
def test_a_listener_who_played_almost_everything_gets_what_is_left(
    world: World, use_deeper: bool
) -> None:
    result = run(world, use_deeper)
    check_list(world, result)


@SETTINGS
@given(worlds(neutral=True), st.booleans())
def test_neutral_dials_return_the_models_ranking(world: World, use_deeper: bool) -> None:
    """Today's list: the model's top-k; when the candidates run out, its deeper ranking."""
    result = run(world, use_deeper)
    n = min(world.k, len(world.ranking))
    assert len(result) == n
    if use_deeper or len(world.candidates) >= n:
        np.testing.assert_array_equal(result.ids, world.ranking[:n])
    else:
        head = len(world.candidates)
        np.testing.assert_array_equal(result.ids[:head], world.candidates.ids[: min(head, n)])
    # Only the popularity back-fill (the ranking ran out) meets played artists.
    assert {rule for rule, count in result.removed.items() if count} <= {"played"}


def fixed_pool(draw: st.DrawFn) -> tuple[World, np.ndarray]:
    """Candidates that are the whole catalogue, nothing filtered; random vectors."""
    meta = draw(catalogues(min_items=2, max_items=40))
    n = meta.n_items
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    ranking = rng.permutation(n)
    scores = np.sort(rng.normal(size=n))[::-1]
    world = World(
        meta=meta,
        popularity=np.argsort(-meta.listeners, kind="stable"),
        candidates=Candidates.of(ranking, scores),
        ranking=ranking,
        listener=ListenerState(),
        dials=Dials(max_per_tag=draw(st.one_of(st.none(), st.integers(1, 3)))),
        k=draw(st.integers(1, n)),
    )
    return world, rng.normal(size=(n, draw(st.integers(1, 8))))


def intra_list_distance(vectors: np.ndarray, ids: np.ndarray) -> float:
    if len(ids) < 2:
        return 0.0
    sim = cosine(vectors)(ids).astype(np.float64)
    n = len(ids)
    return float((1.0 - sim)[~np.eye(n, dtype=bool)].mean())


@SETTINGS
@given(st.data())
def test_diversity_zero_reproduces_the_ranking_and_distance_never_falls(data) -> None:
    world, vectors = fixed_pool(data.draw)
    ladder = sorted(data.draw(st.lists(st.floats(0, 1), min_size=2, max_size=6)))
    discovery = data.draw(st.sampled_from([0.0, 0.5]))
    similarity = cosine(vectors)
    distances = []
    for diversity in [0.0, *ladder]:
        dials = Dials(max_per_tag=world.dials.max_per_tag, diversity=diversity, discovery=discovery)
        result = apply_rules(
            world.candidates,
            world.k,
            meta=world.meta,
            popularity=world.popularity,
            now=NOW,
            dials=dials,
            similarity=similarity,
        )
        if diversity == 0 and discovery == 0:
            no_cap = world.dials.max_per_tag is None
            if no_cap:
                np.testing.assert_array_equal(result.ids, world.ranking[: world.k])
        distances.append(intra_list_distance(vectors, result.ids))
    # float32 similarities: the same pair can differ in its last bits between two products
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(distances)), distances


def trade_off(world: World, vectors: np.ndarray, ids: np.ndarray, diversity: float) -> float:
    """The diversity dial's stated objective of a list: (1 - d) * mean relevance - d * mean
    pairwise similarity, relevance being the model's scores scaled to 0..1 over the pool."""
    value = blend(world.candidates.scores, world.meta.listeners[world.ranking], 0.0)
    position = np.argsort(world.ranking)[ids]
    mean_pair = 0.0
    if len(ids) > 1:
        sim = cosine(vectors)(ids).astype(np.float64)
        mean_pair = float(sim[~np.eye(len(ids), dtype=bool)].mean())
    return (1.0 - diversity) * float(value[position].mean()) - diversity * mean_pair


@SETTINGS
@given(st.data())
def test_diversity_never_loses_to_the_ranking_on_its_own_trade_off(data) -> None:
    """At any setting, the list is at least as good as today's (the ranking's top k under the
    cap) by the trade-off the dial states."""
    world, vectors = fixed_pool(data.draw)
    diversity = data.draw(st.floats(0.001, 1))
    mmr_pool = data.draw(MMR_POOLS)
    cap = world.dials.max_per_tag
    lists = {}
    for setting in (0.0, diversity):
        lists[setting] = apply_rules(
            world.candidates,
            world.k,
            meta=world.meta,
            popularity=world.popularity,
            now=NOW,
            dials=Dials(max_per_tag=cap, diversity=setting),
            similarity=cosine(vectors),
            mmr_pool=mmr_pool,
        ).ids
    chosen = trade_off(world, vectors, lists[diversity], diversity)
    today = trade_off(world, vectors, lists[0.0], diversity)
    assert chosen >= today - 1e-6, (chosen, today)


@SETTINGS
@given(st.data())
def test_discovery_lowers_the_lists_popularity(data) -> None:
    """Neither the mean log-listeners nor the median listeners of the list rises with discovery
    (fixed candidates): each step of the dial swaps an artist for one with fewer listeners."""
    world, _ = fixed_pool(data.draw)
    ladder = sorted(data.draw(st.lists(st.floats(0, 1), min_size=2, max_size=6)))
    means, medians = [], []
    for discovery in [0.0, *ladder]:
        dials = Dials(max_per_tag=world.dials.max_per_tag, discovery=discovery)
        result = apply_rules(
            world.candidates,
            world.k,
            meta=world.meta,
            popularity=world.popularity,
            now=NOW,
            dials=dials,
        )
        listeners = world.meta.listeners[result.ids]
        means.append(float(np.log1p(listeners).mean()))
        medians.append(float(np.median(listeners)))
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(means)), means
    assert all(b <= a for a, b in itertools.pairwise(medians)), medians


@SETTINGS
@given(st.data())
def test_discovery_zero_with_no_diversity_keeps_the_order(data) -> None:
    world, _ = fixed_pool(data.draw)
    result = apply_rules(
        world.candidates,
        world.k,
        meta=world.meta,
        popularity=world.popularity,
        now=NOW,
        dials=Dials(max_per_tag=world.dials.max_per_tag),
    )
    position = np.argsort(world.ranking)[result.ids]  # where each listed item was ranked
    assert np.all(np.diff(position) > 0), position


def test_blend_at_full_discovery_orders_by_listeners_only() -> None:
    value = blend(np.array([3.0, 2.0, 1.0]), np.array([100, 10, 1000]), 1.0)
    assert list(np.argsort(-value)) == [1, 0, 2]


@pytest.mark.parametrize("share", [0.2, 0.5, 1.0])
def test_familiar_share_gives_that_share_of_slots(share: float) -> None:
    from musicrec.rules import ItemMeta

    meta = ItemMeta.build(np.arange(100, 0, -1))
    listener = ListenerState.of(played=[90, 91, 92, 93, 94, 95, 96, 97, 98, 99], weights=range(10))
    result = apply_rules(
        Candidates.of(np.arange(50), np.linspace(1, 0, 50)),
        10,
        meta=meta,
        popularity=np.arange(100),
        now=NOW,
        listener=listener,
        dials=Dials(familiar_share=share),
    )
    familiar = result.ids[result.origin == FAMILIAR]
    assert len(familiar) == round(share * 10)
    assert list(familiar) == [99, 98, 97, 96, 95, 94, 93, 92, 91, 90][: len(familiar)]
    assert len(result) == 10
