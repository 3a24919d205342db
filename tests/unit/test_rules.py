"""The rule chain's parts on small hand-made cases: each rule, back-fill, cool-down, inputs."""

from __future__ import annotations

import numpy as np
import pytest

from musicrec.errors import ConfigError
from musicrec.rules import (
    RULES,
    Candidates,
    CoolDown,
    Dials,
    Exposure,
    ItemMeta,
    ListenerState,
    apply_rules,
    cosine,
    exposure_from_log,
    held_back,
    rerank_rows,
)

NOW = 1_700_000_000.0
DAY = 86_400.0


def meta(n: int = 20) -> ItemMeta:
    """Item i has 1000 - i listeners; tag (i % 4) first, then 'every'."""
    items = np.repeat(np.arange(n), 2)
    codes = np.ravel([[i % 4, 4] for i in range(n)])
    weights = np.ravel([[2.0, 1.0]] * n)
    names = ["rock", "pop", "jazz", "folk", "every"]
    return ItemMeta.build(1000 - np.arange(n), items, codes, weights, names)


def ranking(n: int = 20) -> Candidates:
    return Candidates.of(np.arange(n), np.linspace(1.0, 0.0, n))


def listed(result) -> list[int]:
    return result.ids.tolist()


def chain(candidates: Candidates, k: int, **kwargs):
    kwargs.setdefault("meta", meta())
    kwargs.setdefault("popularity", np.arange(20))
    return apply_rules(candidates, k, now=NOW, **kwargs)


def test_item_meta_keeps_the_heaviest_tags_first() -> None:
    m = meta(3)
    assert m.tags.tolist() == [[0, 4, -1], [1, 4, -1], [2, 4, -1]]
    assert m.top_tag.tolist() == [0, 1, 2]
    assert m.carries_any(np.array([0, 1, 2]), np.array([1])).tolist() == [False, True, False]


def test_item_meta_depth_drops_light_tags() -> None:
    m = ItemMeta.build(np.ones(1), np.zeros(4), np.arange(4), np.array([1, 4, 3, 2.0]), "abcd", 2)
    assert m.tags.tolist() == [[1, 2]]


def test_each_rule_removes_its_artists_and_counts_them() -> None:
    listener = ListenerState.of(
        played=[1],
        bans=[2, 3],
        ban_until=[np.inf, NOW - 1],  # 3's ban has lifted
        last_event=[4, 5],
        last_event_at=[NOW - 1 * DAY, NOW - 10 * DAY],
        exposure=Exposure(np.array([7, 8]), np.array([3, 2]), np.array([NOW - DAY, NOW - DAY])),
    )
    dials = Dials(
        exclude_artists=(0,),
        exclude_tags=(2,),  # jazz: 2 (banned first), 6, 10, 14, 18
        include_tags=(0, 1, 2, 3),  # every artist carries one: removes nothing
        exclude_recent_days=7,
        cooldown=CoolDown(),
    )
    result = chain(ranking(), 20, listener=listener, dials=dials)
    assert listed(result) == [3, 5, 8, 9, 11, 12, 13, 15, 16, 17, 19]
    assert result.removed == {
        "banned": 1,
        "excluded_artist": 1,
        "excluded_tag": 4,
        "include_tags": 0,
        "played": 1,
        "recent": 1,
        "cooldown": 1,
        "max_per_tag": 0,
    }
    assert set(result.removed) == set(RULES)


def test_include_tags_is_any_of() -> None:
    result = chain(ranking(), 5, dials=Dials(include_tags=(0, 2)))
    assert listed(result) == [0, 2, 4, 6, 8]
    assert result.removed["include_tags"] == 10  # every candidate is looked at: the odd ones


def test_max_per_tag_skips_and_counts() -> None:
    result = chain(ranking(), 6, dials=Dials(max_per_tag=1))
    assert listed(result) == [0, 1, 2, 3]  # four top tags, one artist each
    result = chain(ranking(), 6, dials=Dials(max_per_tag=2))
    assert listed(result) == [0, 1, 2, 3, 4, 5]
    assert result.removed["max_per_tag"] == 0
    result = chain(Candidates.of([0, 4, 8, 1, 2], [5, 4, 3, 2, 1]), 3, dials=Dials(max_per_tag=1))
    assert listed(result) == [0, 1, 2]
    assert result.removed["max_per_tag"] == 2  # 4 and 8 (rock, like 0) passed over


def test_deeper_then_popularity_fill_the_list() -> None:
    asked: list[int] = []

    def deeper(n: int) -> Candidates:
        asked.append(n)
        return Candidates.of(np.arange(min(n, 12)), np.linspace(1, 0, min(n, 12)))

    listener = ListenerState.of(played=[0, 1, 2, 3, 4, 5])
    result = chain(ranking(6), 10, listener=listener, deeper=deeper, popularity=np.arange(20)[::-1])
    # 6..11 from the deeper ranking, then the most popular left: 19, 18, 17, 16
    assert listed(result) == [6, 7, 8, 9, 10, 11, 19, 18, 17, 16]
    assert result.origin.tolist() == [1] * 6 + [2] * 4
    assert asked and asked[0] > 6
    assert np.isnan(result.scores[-4:]).all() and np.isfinite(result.scores[:6]).all()


def test_a_full_tag_sends_the_chain_deeper_into_the_ranking_before_popularity() -> None:
    """Five rock candidates cannot fill three slots at one per tag: the next ones come from
    the model's deeper ranking (other tags), not from the popularity back-fill."""

    def deeper(n: int) -> Candidates:
        return Candidates.of(np.arange(min(n, 20)), np.linspace(1, 0, min(n, 20)))

    rock = Candidates.of([0, 4, 8, 12, 16], [5, 4, 3, 2, 1])
    result = chain(
        rock, 3, dials=Dials(max_per_tag=1), deeper=deeper, popularity=np.arange(20)[::-1]
    )
    assert listed(result) == [0, 1, 2]
    assert result.origin.tolist() == [0, 1, 1]


def test_a_listener_who_played_everything_gets_nothing_new() -> None:
    listener = ListenerState.of(played=np.arange(20))
    assert len(chain(ranking(), 10, listener=listener)) == 0
    # ... unless familiar artists may fill the list
    result = chain(ranking(), 10, listener=listener, dials=Dials(familiar_share=0.1))
    assert len(result) == 10 and (result.origin == 3).all()


def test_familiar_slots_are_spread_and_favourites_first() -> None:
    listener = ListenerState.of(played=[15, 16, 17, 18, 19], weights=[1, 2, 3, 4, 5])
    result = chain(ranking(15), 10, listener=listener, dials=Dials(familiar_share=0.3))
    assert listed(result) == [0, 19, 1, 2, 3, 18, 4, 5, 17, 6]


def test_duplicates_in_candidates_are_listed_once() -> None:
    result = chain(Candidates.of([3, 3, 1, 3, 2], [5, 5, 4, 4, 3]), 3)
    assert listed(result) == [3, 1, 2]


def test_padding_is_dropped_and_bad_ids_refused() -> None:
    assert listed(chain(Candidates.of([2, 1, -1, -1], [2, 1, 0, 0]), 2)) == [2, 1]
    with pytest.raises(ValueError, match="outside the catalogue"):
        chain(Candidates.of([25]), 1)
    with pytest.raises(ValueError, match="scores"):
        Candidates.of([1, 2], [1.0])


def test_diversity_needs_a_similarity() -> None:
    with pytest.raises(ConfigError, match="similarity"):
        chain(ranking(), 5, dials=Dials(diversity=0.5))


def test_diversity_spreads_a_clustered_ranking() -> None:
    # items 0-9 point one way, 10-19 the other; the ranking lists the first cluster first
    vectors = np.array([[1.0, 0.1 * i] for i in range(10)] + [[-1.0, 0.1 * i] for i in range(10)])
    similarity = cosine(vectors)
    plain = chain(ranking(), 4, similarity=similarity)
    mixed = chain(ranking(), 4, similarity=similarity, dials=Dials(diversity=0.6))
    assert listed(plain) == [0, 1, 2, 3]
    assert listed(mixed)[0] == 0 and any(i >= 10 for i in listed(mixed))


def test_discovery_favours_few_listeners() -> None:
    result = chain(ranking(), 3, dials=Dials(discovery=1.0))
    assert listed(result) == [19, 18, 17]
    # relevance falls and listeners fall evenly along this ranking: the dial's middle is a tie
    assert listed(chain(ranking(), 3, dials=Dials(discovery=0.45))) == [0, 1, 2]
    assert listed(chain(ranking(), 3, dials=Dials(discovery=0.55))) == [19, 18, 17]


@pytest.mark.parametrize(
    ("dials", "message"),
    [
        ({"diversity": 1.5}, "diversity"),
        ({"discovery": -0.1}, "discovery"),
        ({"familiar_share": float("nan")}, "familiar_share"),
        ({"max_per_tag": 0}, "max_per_tag"),
        ({"exclude_recent_days": 0}, "exclude_recent_days"),
    ],
)
def test_dials_out_of_range_are_refused(dials: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Dials(**dials)


def test_neutral_dials() -> None:
    assert Dials().neutral
    assert not Dials(diversity=0.1).neutral
    assert not Dials(cooldown=CoolDown()).neutral


# ---------------------------------------------------------------- bans and cool-down


def test_a_ban_holds_until_its_time_then_lifts() -> None:
    listener = ListenerState.of(bans=[1, 2], ban_until=[NOW + DAY, np.inf])
    assert listener.active_bans(NOW).tolist() == [1, 2]
    assert listener.active_bans(NOW + DAY - 1).tolist() == [1, 2]
    assert listener.active_bans(NOW + DAY).tolist() == [2]
    assert listed(chain(ranking(5), 3, listener=listener)) == [0, 3, 4]
    later = apply_rules(
        ranking(5), 3, meta=meta(), popularity=np.arange(20), now=NOW + 2 * DAY, listener=listener
    )
    assert listed(later) == [0, 1, 3]


def test_cool_down_holds_back_after_n_unplayed_shows_for_d_days() -> None:
    exposure = Exposure(
        items=np.array([1, 2, 3]),
        shown=np.array([3, 2, 5]),
        last_shown=np.array([NOW, NOW, NOW - 8 * DAY]),
    )
    assert held_back(exposure, NOW).tolist() == [1]
    assert held_back(exposure, NOW + 7 * DAY - 1).tolist() == [1]
    assert held_back(exposure, NOW + 7 * DAY).tolist() == []
    assert held_back(exposure, NOW, CoolDown(shows=2, days=1)).tolist() == [1, 2]
    with pytest.raises(ConfigError):
        CoolDown(shows=0)


def test_exposure_counts_shows_since_the_last_play() -> None:
    exposure = exposure_from_log(
        shown_items=np.array([1, 1, 1, 2, 2, 3]),
        shown_at=np.array([10, 20, 30, 10, 40, 5]),
        played_items=np.array([1, 2, 2]),
        played_at=np.array([15, 5, 30]),
    )
    assert exposure.items.tolist() == [1, 2, 3]
    assert exposure.shown.tolist() == [2, 1, 1]
    assert exposure.last_shown.tolist() == [30, 40, 5]
    assert len(exposure_from_log([], [], [1], [1]).items) == 0


def test_a_shown_and_ignored_artist_comes_back_after_its_rest() -> None:
    shows = np.array([NOW - 3 * DAY, NOW - 2 * DAY, NOW - DAY])
    exposure = exposure_from_log(np.array([0, 0, 0]), shows, np.array([]), np.array([]))
    listener = ListenerState.of(exposure=exposure)
    dials = Dials(cooldown=CoolDown())
    assert 0 not in listed(chain(ranking(5), 3, listener=listener, dials=dials))
    back = apply_rules(
        ranking(5),
        3,
        meta=meta(),
        popularity=np.arange(20),
        now=NOW + 6 * DAY,
        listener=listener,
        dials=dials,
    )
    assert listed(back)[0] == 0


# ---------------------------------------------------------------- batches and similarity


def test_rerank_rows_pads_and_matches_the_single_list() -> None:
    ids = np.array([[0, 1, 2, 3], [3, 2, -1, -1]])
    scores = np.array([[4, 3, 2, 1], [2, 1, -np.inf, -np.inf]], dtype=float)
    import scipy.sparse as sp

    played = sp.csr_matrix(np.array([[0, 5] + [0] * 18, [0] * 20], dtype=np.float32))
    out = rerank_rows(ids, scores, played, 3, meta=meta(), popularity=np.arange(20))
    assert out.tolist() == [[0, 2, 3], [3, 2, 0]]


def test_cosine_similarity_is_symmetric_with_unit_diagonal() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    sim = cosine(vectors)(np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(sim, sim.T)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert sim[0, 1] == 0 and sim[2, 3] == 0
    assert sim[0, 3] == pytest.approx(np.sqrt(0.5))
