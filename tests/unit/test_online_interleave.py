"""Team-draft interleaving: exactly k distinct artists, balanced teams, credit by team."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicrec.online.interleave import credit, preferences, team_draft

ARTISTS = [f"artist {i}" for i in range(60)]


@st.composite
def list_pairs(draw: st.DrawFn) -> tuple[list[str], list[str], int, int]:
    """Two ranked lists of distinct artists from one catalogue (overlapping), each >= k long."""
    k = draw(st.integers(min_value=1, max_value=20))
    first = draw(st.lists(st.sampled_from(ARTISTS), min_size=k, max_size=40, unique=True))
    second = draw(st.lists(st.sampled_from(ARTISTS), min_size=k, max_size=40, unique=True))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return first, second, k, seed


def check_invariants(first: list[str], second: list[str], k: int, seed: int) -> None:
    merged = team_draft(first, second, k, np.random.default_rng(seed), teams=("a", "b"))
    assert len(merged.artists) == k and not merged.short
    assert len(set(merged.artists)) == k
    assert abs(merged.team_size("a") - merged.team_size("b")) <= 1
    for artist, team in zip(merged.artists, merged.teams, strict=True):
        assert artist in (first if team == "a" else second)
    # each team's picks keep that team's own order
    for team, source in (("a", first), ("b", second)):
        picks = [x for x, t in zip(merged.artists, merged.teams, strict=True) if t == team]
        assert picks == sorted(picks, key=source.index)


def test_10000_random_pairs_give_k_distinct_and_balanced_teams() -> None:
    rng = np.random.default_rng(2026)
    catalogue = np.array(ARTISTS, dtype=object)
    for seed in range(10_000):
        k = int(rng.integers(1, 21))
        sizes = rng.integers(k, 41, size=2)
        first = list(rng.choice(catalogue, size=sizes[0], replace=False))
        second = list(rng.choice(catalogue, size=sizes[1], replace=False))
        check_invariants(first, second, k, seed)


@settings(max_examples=500, deadline=None, database=None)
@given(list_pairs())
def test_k_distinct_and_balanced_teams(pair: tuple[list[str], list[str], int, int]) -> None:
    check_invariants(*pair)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, database=None)
@given(list_pairs())
def test_k_distinct_and_balanced_teams_10000(pair: tuple[list[str], list[str], int, int]) -> None:
    check_invariants(*pair)


@settings(max_examples=2_000, deadline=None, database=None)
@given(
    st.lists(st.sampled_from(ARTISTS[:15]), max_size=15, unique=True),
    st.lists(st.sampled_from(ARTISTS[:15]), max_size=15, unique=True),
    st.integers(min_value=1, max_value=20),
)
def test_short_lists_give_every_distinct_artist(
    first: list[str], second: list[str], k: int
) -> None:
    merged = team_draft(first, second, k, np.random.default_rng(0))
    union = set(first) | set(second)
    assert len(merged.artists) == min(k, len(union))
    assert len(set(merged.artists)) == len(merged.artists)
    assert merged.short == (len(union) < k)


def test_back_fill_from_deeper_items_when_one_list_runs_out() -> None:
    for seed in range(10):
        merged = team_draft(["x"], ["x", "y", "z", "w"], 3, np.random.default_rng(seed))
        assert set(merged.artists) <= {"x", "y", "z", "w"} and len(set(merged.artists)) == 3
        assert merged.team_size("A") <= 1 and merged.team_size("B") >= 2  # A ran out


def test_identical_lists_give_the_ranking_itself() -> None:
    ranking = ARTISTS[:10]
    for seed in range(20):
        merged = team_draft(ranking, ranking, 10, np.random.default_rng(seed))
        assert list(merged.artists) == ranking


def test_each_team_leads_half_the_time() -> None:
    leads = [
        team_draft(["a1", "a2"], ["b1", "b2"], 2, np.random.default_rng(s)).teams[0]
        for s in range(4000)
    ]
    assert 0.46 < leads.count("A") / 4000 < 0.54


def test_credit_follows_the_team_of_each_played_position() -> None:
    teams = ("A", "B", "B", "A")
    assert credit(teams, [0, 2, 3]) == {"A": 2, "B": 1}
    with pytest.raises(ValueError):
        credit(teams, [4])


def test_preferences_per_listener_wins_losses_ties() -> None:
    credited = pd.DataFrame(
        {"listener": ["u", "u", "v", "w", "w"], "team": ["A", "A", "B", "A", "B"]}
    )
    prefs = preferences(credited, "A", shown=["u", "v", "w", "silent"])
    assert list(prefs.listeners) == ["u", "v", "w", "silent"]
    assert prefs.first.tolist() == [2, 0, 1, 0] and prefs.second.tolist() == [0, 1, 1, 0]
    assert (prefs.wins, prefs.losses, prefs.ties) == (1, 1, 2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        team_draft(["a"], ["b"], 0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        team_draft(["a"], ["b"], 1, np.random.default_rng(0), teams=("A", "A"))
