"""The listener simulator's click model: listeners that differ in how much they play."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from scipy.special import logit
from typer.testing import CliRunner

from musicrec.cli import app as cli_app
from musicrec.cli.online import simulate as simulate_command
from musicrec.errors import DataError
from musicrec.online.simulate import DEFAULT_ACTIVITY_SD, ListenerModel, react


def test_no_spread_keeps_every_listener_alike_and_draws_nothing() -> None:
    model = ListenerModel()
    assert model.activity_sd == 0
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    assert model.for_listener(rng) is model
    assert rng.bit_generator.state == before  # the old runs' random streams are untouched


def test_a_listener_shifts_both_play_log_odds_by_one_normal_draw() -> None:
    model = ListenerModel(activity_sd=1.5)
    listeners = [model.for_listener(np.random.default_rng([7, i])) for i in range(4000)]
    relevant = logit([m.play_relevant for m in listeners]) - logit(model.play_relevant)
    other = logit([m.play_other for m in listeners]) - logit(model.play_other)
    np.testing.assert_allclose(relevant, other, atol=1e-6)  # one shift per listener
    assert abs(relevant.mean()) < 0.08 and abs(relevant.std() - 1.5) < 0.06
    assert all(m.play_relevant > m.play_other and m.activity_sd == 0 for m in listeners)
    assert all(m.examine_top == model.examine_top for m in listeners)  # examination unchanged
    again = ListenerModel(activity_sd=1.5).for_listener(np.random.default_rng([7, 0]))
    assert again == listeners[0]  # seeded: the same listener every time


def _plays_per_listener(model: ListenerModel, seed: int) -> np.ndarray:
    """Plays of 600 listeners, each shown the same 20 lists of 10 (3 held-out artists each)."""
    rng = np.random.default_rng(seed)
    artists = [f"a{i}" for i in range(10)]
    relevant = {"a0", "a4", "a8"}
    plays = []
    for _ in range(600):
        listener = model.for_listener(rng)
        plays.append(
            sum(
                kind == "play"
                for _ in range(20)
                for _, kind in react(artists, relevant, listener, rng)
            )
        )
    return np.array(plays)


def test_heterogeneous_listeners_differ_far_more_than_chance() -> None:
    alike = _plays_per_listener(ListenerModel(), seed=11)
    spread = _plays_per_listener(ListenerModel(activity_sd=DEFAULT_ACTIVITY_SD), seed=11)
    # alike: plays are a sum of independent draws, variance near its mean (about 40)
    assert alike.var() < 1.5 * alike.mean()
    # a spread of 1.52 on the log-odds: several times that variance, and a long low tail
    assert spread.var() > 5 * alike.var()
    assert np.percentile(spread, 10) < 0.5 * np.percentile(alike, 10)
    assert 0.6 < spread.mean() / alike.mean() < 1.1  # the median listener is unchanged


def test_activity_spread_is_checked_and_the_cli_default_is_the_measured_one() -> None:
    with pytest.raises(DataError, match="activity spread"):
        ListenerModel(activity_sd=-0.5)
    default = inspect.signature(simulate_command).parameters["activity_sd"].default
    assert default == DEFAULT_ACTIVITY_SD
    line = "simulate --url http://127.0.0.1:9 --data nowhere --listeners 5 --activity-sd -1"
    result = CliRunner().invoke(cli_app, line.split())
    assert result.exit_code == 1 and "activity spread" in result.output
