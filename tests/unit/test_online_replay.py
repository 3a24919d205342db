"""Off-policy replay: the SNIPS estimator over logs, against known answers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from musicrec.online.experiments import Arm, ExperimentSpec
from musicrec.online.explore import exploration_depth, sample_list
from musicrec.online.replay import (
    MIN_SUPPORT,
    deterministic_target,
    logging_support,
    replay_estimate,
)


def logs(listeners, positions, artists, propensities, rewards) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "listener": listeners,
            "position": positions,
            "artist": artists,
            "propensity": propensities,
            "reward": rewards,
        }
    )


def test_hand_computed_case() -> None:
    frame = logs(
        ["u1", "u1", "u2", "u2"], [0, 1, 0, 1], ["A", "B", "C", "D"], [0.5, 0.25, 0.5, 1.0],
        [1, 0, 1, 0],
    )  # fmt: skip
    target = deterministic_target(frame, {"u1": ["a", " b "], "u2": ["X", "D", "C"]})
    assert target.tolist() == [1.0, 1.0, 0.0, 1.0]  # names compare without case or spaces
    found = replay_estimate(frame, target, n_resamples=200, by_position=False)
    # weights 2, 4 and 1 on rewards 1, 0 and 0
    assert found.value == pytest.approx(2 / 7)
    # by position (the default): 2/2 at the top, 0/5 below
    assert replay_estimate(frame, target, n_resamples=0).value == pytest.approx(0.5)
    assert found.matched == 3 and found.impressions == 4 and found.listeners == 2
    assert found.effective_size == pytest.approx(49 / 21)
    assert found.logged_rate == pytest.approx(0.5)
    assert found.low <= found.value <= found.high
    nothing = replay_estimate(frame, np.zeros(4), n_resamples=50)
    assert np.isnan(nothing.value) and nothing.to_dict()["value"] is None


def test_by_position_averages_the_rate_at_each_position() -> None:
    frame = logs(
        ["u1", "u2", "u1", "u3"], [0, 0, 1, 2], ["A", "B", "C", "D"], [0.5, 0.25, 0.5, 0.5],
        [1, 0, 0, 1],
    )  # fmt: skip
    target = np.array([1.0, 1.0, 1.0, 0.0])  # position 2 matches nothing: left out
    # weights 2, 4 | 2: position 0 at 2/6, position 1 at 0/2
    found = replay_estimate(frame, target, n_resamples=300, by_position=True)
    assert found.value == pytest.approx((1 / 3 + 0) / 2)
    assert found.listeners == 3 and found.low <= found.value <= found.high
    pooled = replay_estimate(frame, target, n_resamples=0, by_position=False)
    assert pooled.value == pytest.approx(2 / 8)


def test_unknown_listeners_get_no_weight() -> None:
    frame = logs(["u1", "u9"], [0, 0], ["A", "A"], [0.5, 0.5], [1, 0])
    assert deterministic_target(frame, {"u1": ["A"]}).tolist() == [1.0, 0.0]


def test_on_policy_replay_is_the_logged_rate() -> None:
    """Target == logging policy: every weight is 1, the estimate is the observed rate."""
    rng = np.random.default_rng(0)
    n = 2000
    frame = logs(
        rng.integers(0, 300, n).astype(str), rng.integers(0, 10, n), ["x"] * n,
        rng.uniform(0.05, 1.0, n), rng.binomial(1, 0.3, n),
    )  # fmt: skip
    found = replay_estimate(
        frame, frame["propensity"].to_numpy(), n_resamples=500, by_position=False
    )
    assert found.value == pytest.approx(frame["reward"].mean())
    by_position = replay_estimate(frame, frame["propensity"].to_numpy(), n_resamples=0)
    assert by_position.value == pytest.approx(frame.groupby("position")["reward"].mean().mean())
    assert found.effective_size == pytest.approx(n)
    assert found.low < 0.3 < found.high


@pytest.mark.parametrize("by_position", [False, True])
def test_off_policy_estimate_matches_the_true_rate_of_a_position_based_click_model(
    by_position: bool,
) -> None:
    """Lists sampled Plackett-Luce from 30 candidates; a play happens with probability
    examine(position) x appeal(artist). The replayed deterministic rankings' true rates are
    known in closed form."""
    rng = np.random.default_rng(42)
    k, n_lists = 5, 3000
    appeal = np.linspace(0.9, 0.05, 30)
    examine = 0.9 * 0.75 ** np.arange(k)
    scores = np.log(appeal) + rng.normal(0, 0.3, 30)  # a noisy logging ranker
    rows = []
    for list_id in range(n_lists):
        shown = sample_list(scores, k, temperature=1.0, rng=rng)
        plays = rng.random(k) < examine * appeal[shown.order]
        for position in range(k):
            artist = int(shown.order[position])
            rows.append(
                (
                    f"u{list_id}",
                    position,
                    f"a{artist}",
                    shown.marginal[position],
                    int(plays[position]),
                )
            )
    frame = logs(*map(list, zip(*rows, strict=True)))
    estimates = {}
    for name, order in {"best": np.arange(k), "middling": np.arange(10, 10 + k)}.items():
        ranked = [f"a{i}" for i in order]
        truth = float((examine * appeal[order]).mean())
        target = deterministic_target(frame, {f"u{i}": ranked for i in range(n_lists)})
        found = replay_estimate(frame, target, n_resamples=500, seed=1, by_position=by_position)
        assert found.value == pytest.approx(truth, rel=0.10), name
        assert found.low < truth < found.high, name
        estimates[name] = found.value
    assert estimates["best"] > estimates["middling"]


def test_support_is_the_share_of_target_artists_inside_each_arms_candidates() -> None:
    spec = ExperimentSpec("e", (Arm("a", "model-a", 50), Arm("b", "model-b", 50)))
    frame = logs(["u1", "u1", "u2"], [0, 1, 0], ["A", "B", "C"], [0.5] * 3, [0] * 3)
    frame = frame.assign(arm=["a", "a", "b"])
    pools = {"model-a": {"u1": [f"a{i}" for i in range(49)] + ["T1"]},
             "model-b": {"u2": ["t3"]}}  # fmt: skip
    seen_depths = []

    def ranker_of(model: str):  # type: ignore[no-untyped-def]
        def rank(listener: str, depth: int):  # type: ignore[no-untyped-def]
            seen_depths.append(depth)
            return pools[model].get(listener)

        return rank

    lists = {"u1": ["t1", "X"], "u2": ["T3", "Y", "Z"]}
    support = logging_support(frame, spec, lists, ranker_of)  # type: ignore[arg-type]
    assert support == pytest.approx(2 / 5)  # T1 (case folded) and T3 inside; X, Y, Z not
    assert seen_depths == [exploration_depth(2), exploration_depth(1)]
    assert np.isnan(logging_support(frame.iloc[0:0], spec, lists, ranker_of))  # type: ignore[arg-type]


def test_an_estimate_outside_the_logging_support_is_flagged() -> None:
    frame = logs(["u1", "u2"], [0, 0], ["A", "B"], [0.5, 0.5], [1, 0])
    found = replay_estimate(frame, np.ones(2), n_resamples=50)
    assert not found.trusted and "unknown share" in str(found.warning)  # support unknown
    inside = replace(found, support=MIN_SUPPORT)
    assert inside.trusted and inside.warning is None
    assert inside.to_dict()["trusted"] is True and inside.to_dict()["warning"] is None
    outside = replace(found, support=0.5)
    assert not outside.trusted and "only 50%" in str(outside.warning)
    assert outside.to_dict()["warning"] == outside.warning and not outside.to_dict()["trusted"]
    assert not replace(inside, min_support=min(1.0, MIN_SUPPORT + 0.01)).trusted
    nothing = replace(replay_estimate(frame, np.zeros(2), n_resamples=50), support=1.0)
    assert not nothing.trusted and "nothing to estimate" in str(nothing.warning)
