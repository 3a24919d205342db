"""Readouts from known counts: rates, intervals, differences, SRM, winners; guardrail decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from musicrec import stats
from musicrec.online.experiments import Arm, Experiment
from musicrec.online.guardrails import (
    MIN_REQUESTS,
    MIN_TRIALS,
    ArmObservation,
    arm_breaches,
    check_guardrails,
)
from musicrec.online.interleave import Preferences
from musicrec.online.readout import ArmCounts
from musicrec.online.report import ab_readout, interleave_readout, per_listener_rates


def counts(name: str, listened, impressions=None, skips=None, bans=None) -> ArmCounts:
    listened = np.asarray(listened, dtype=np.int64)
    n = len(listened)
    shown = np.full(n, 10, dtype=np.int64) if impressions is None else np.asarray(impressions)
    zeros = np.zeros(n, dtype=np.int64)
    return ArmCounts(
        arm=name,
        listeners=np.array([f"{name}{i}" for i in range(n)], dtype=object),
        impressions=shown,
        listened=listened,
        plays=listened.copy(),
        skips=zeros if skips is None else np.asarray(skips, dtype=np.int64),
        loves=zeros,
        bans=zeros if bans is None else np.asarray(bans, dtype=np.int64),
    )


def binomial_arm(name: str, n: int, rate: float, seed: int) -> ArmCounts:
    return counts(name, np.random.default_rng(seed).binomial(10, rate, n))


def test_known_counts_give_known_rates_and_totals() -> None:
    control = counts("control", [1, 2, 3, 4], skips=[0, 1, 0, 1], bans=[0, 0, 0, 1])
    treatment = counts("treatment", [5, 5, 6, 6], impressions=[10, 10, 20, 20])
    out = ab_readout({"control": control, "treatment": treatment}, [50, 50], 500, seed=1)
    c, t = out["arms"]["control"], out["arms"]["treatment"]
    assert (c["listeners"], c["impressions"], c["listened"], c["skips"]) == (4, 40, 10, 2)
    assert c["listen_through"]["value"] == pytest.approx(0.25)
    assert c["skip_rate"]["value"] == pytest.approx(0.05)
    assert c["ban_rate"]["value"] == pytest.approx(0.025)
    assert 0.1 <= c["listen_through"]["low"] < 0.25 < c["listen_through"]["high"] <= 0.4
    assert t["listen_through"]["value"] == pytest.approx(
        (0.5 + 0.5 + 0.3 + 0.3) / 4
    )  # per listener
    (pair,) = out["differences"]
    assert pair["arms"] == ["control", "treatment"]
    assert pair["listen_through"]["difference"]["value"] == pytest.approx(0.40 - 0.25)
    welch = scipy_stats.ttest_ind([0.5, 0.5, 0.3, 0.3], [0.1, 0.2, 0.3, 0.4], equal_var=False)
    assert pair["listen_through"]["p_value"] == pytest.approx(welch.pvalue)
    assert out["srm"]["p_value"] == pytest.approx(1.0) and out["srm_ok"] is True


def test_a_clear_difference_names_the_better_arm() -> None:
    control, treatment = (
        binomial_arm("control", 400, 0.2, 1),
        binomial_arm("treatment", 400, 0.4, 2),
    )
    out = ab_readout({"control": control, "treatment": treatment}, [50, 50], 1000, seed=0)
    found = out["differences"][0]["listen_through"]
    assert found["p_value"] < 1e-6 and out["winner"] == "treatment"
    assert 0.15 < found["difference"]["low"] < 0.2 < found["difference"]["high"] < 0.25
    # a lower listen-through in the second arm makes the first the winner
    swapped = ab_readout({"a": treatment, "b": control}, [50, 50], 200, seed=0)
    assert swapped["winner"] == "a"
    assert swapped["differences"][0]["listen_through"]["difference"]["value"] < 0


def test_no_difference_names_no_winner() -> None:
    a, b = binomial_arm("a", 300, 0.3, 3), binomial_arm("b", 300, 0.3, 4)
    out = ab_readout({"a": a, "b": b}, [50, 50], 500, seed=0)
    found = out["differences"][0]["listen_through"]
    assert found["p_value"] > 0.05 and out["winner"] is None
    assert found["difference"]["low"] < 0 < found["difference"]["high"]


def test_sample_ratio_mismatch_is_flagged() -> None:
    a, b = binomial_arm("a", 300, 0.3, 5), binomial_arm("b", 500, 0.3, 6)
    out = ab_readout({"a": a, "b": b}, [50, 50], 100)
    assert out["srm"]["listeners"] == [300, 500]
    assert out["srm"]["p_value"] == pytest.approx(scipy_stats.chisquare([300, 500]).pvalue)
    assert out["srm_ok"] is False
    assert ab_readout({"a": a, "b": b}, [37.5, 62.5], 100)["srm_ok"] is True


def test_three_arms_need_to_beat_every_other_after_holm() -> None:
    arms = {
        "a": binomial_arm("a", 300, 0.2, 7),
        "b": binomial_arm("b", 300, 0.2, 8),
        "c": binomial_arm("c", 300, 0.4, 9),
    }
    out = ab_readout(arms, [33.33, 33.33, 33.34], 200)
    assert [p["arms"] for p in out["differences"]] == [["a", "b"], ["a", "c"], ["b", "c"]]
    for pair in out["differences"]:
        found = pair["listen_through"]
        assert found["p_adjusted"] >= found["p_value"]
    assert out["winner"] == "c"
    arms["c"] = binomial_arm("c", 300, 0.2, 10)
    assert ab_readout(arms, [33.33, 33.33, 33.34], 200)["winner"] is None


def test_an_arm_nobody_saw_yet_reads_as_unknown() -> None:
    out = ab_readout({"a": counts("a", []), "b": counts("b", [1, 2])}, [50, 50], 100)
    assert out["arms"]["a"]["listen_through"] == {"value": None, "low": None, "high": None}
    assert out["differences"][0]["listen_through"]["p_value"] is None
    assert out["winner"] is None
    empty = ab_readout({"a": counts("a", []), "b": counts("b", [])}, [50, 50], 100)
    assert empty["srm"]["p_value"] is None and empty["srm_ok"] is None


def test_interleave_counts_wins_and_tests_them() -> None:
    outcome = [1] * 30 + [-1] * 10 + [0] * 60  # first team ahead for 30 listeners, behind for 10
    first = np.array([2 if o > 0 else 0 for o in outcome])
    second = np.array([1 if o < 0 else 0 for o in outcome])
    prefs = Preferences(np.array([f"u{i}" for i in range(100)], dtype=object), first, second)
    out = interleave_readout(prefs, "als", "weak", 1000, seed=0)
    assert out["wins"] == {"als": 30, "weak": 10} and out["ties"] == 60
    assert out["credit"] == {"als": 60, "weak": 10}
    assert out["p_value"] == pytest.approx(scipy_stats.binomtest(30, 40).pvalue)
    assert out["winner"] == "als"
    preference = out["preference"]
    assert preference["toward"] == "weak" and preference["value"] == pytest.approx(-0.2)
    assert preference["low"] < -0.2 < preference["high"] < 0
    even = Preferences(prefs.listeners, second, second)
    assert interleave_readout(even, "als", "weak", 100)["winner"] is None


# ----------------------------------------------------------------------------- guardrails


def test_p99_needs_enough_lists() -> None:
    limits = {"p99_ms": 50.0}
    slow = ArmObservation(requests=MIN_REQUESTS - 1, p99_ms=500.0)
    assert arm_breaches("a", slow, limits) == []
    (breach,) = arm_breaches("a", ArmObservation(requests=MIN_REQUESTS, p99_ms=80.0), limits)
    assert (breach.guardrail, breach.value, breach.limit) == ("p99_ms", 80.0, 50.0)
    assert breach.reason.startswith("guardrail p99_ms: 80 > 50 (over 100 lists")
    assert arm_breaches("a", ArmObservation(requests=1000, p99_ms=49.0), limits) == []


@pytest.mark.parametrize(
    ("guardrail", "observation", "breached"),
    [
        ("ban_rate", ArmObservation(impressions=1000, bans=60), False),  # 6 %: could be 5 %
        ("ban_rate", ArmObservation(impressions=1000, bans=90), True),  # interval above 5 %
        ("ban_rate", ArmObservation(impressions=MIN_TRIALS - 1, bans=50), False),  # too few
        ("skip_rate", ArmObservation(impressions=200, skips=40), True),
        ("error_rate", ArmObservation(requests=500, errors=40), True),
        ("error_rate", ArmObservation(requests=500, errors=30), False),
    ],
)
def test_rates_breach_only_when_their_interval_is_above_the_limit(
    guardrail: str, observation: ArmObservation, breached: bool
) -> None:
    found = arm_breaches("a", observation, {guardrail: 0.05})
    assert bool(found) == breached
    for breach in found:
        assert breach.low > 0.05 and breach.low <= breach.value <= breach.high


def test_check_skips_stopped_arms_and_stopped_experiments() -> None:
    arms = (Arm("a", "m", 50), Arm("b", "m", 50, stopped_at=1.0, stop_reason="x"))
    experiment = Experiment(
        "e", "ab", "e", (0.0, 100.0), arms, {"ban_rate": 0.05}, None, "running", 0.0
    )
    bad = ArmObservation(impressions=1000, bans=200)
    assert [b.arm for b in check_guardrails(experiment, {"a": bad, "b": bad})] == ["a"]
    stopped = Experiment(**{**vars(experiment), "status": "stopped"})
    assert check_guardrails(stopped, {"a": bad}) == []
    assert math.isnan(
        arm_breaches("a", ArmObservation(requests=200, p99_ms=99), {"p99_ms": 1})[0].low
    )


def aa_experiment(rng: np.random.Generator, listeners: int = 300) -> tuple[ArmCounts, ArmCounts]:
    """Both arms from one population: listeners differ in taste (a skewed chance of playing
    an artist, most rarely play) and in how many lists of 10 they were shown (1 to 6)."""
    taste = rng.beta(0.3, 2.7, listeners)
    shown = 10 * np.minimum(1 + rng.poisson(1.0, listeners), 6)
    listened = rng.binomial(shown, taste)
    arm = rng.random(listeners) < 0.5
    return (
        counts("a", listened[arm], impressions=shown[arm]),
        counts("b", listened[~arm], impressions=shown[~arm]),
    )


def test_ab_p_value_holds_its_size_on_aa_experiments() -> None:
    """2,000 simulated A/A experiments of 300 listeners: the readout's listen-through test
    rejects at p < 0.05 in a share within the 99.9 % binomial band around 5 %. The first
    200 tested per impression (pooled counts, listeners ignored) reject far more often than
    the band allows: it catches a test whose unit is wrong."""
    rng = np.random.default_rng(20)
    experiments = 2000
    band = scipy_stats.binom.interval(0.999, experiments, 0.05)
    ours = pooled = 0
    for experiment in range(experiments):
        a, b = aa_experiment(rng)
        rates_a, rates_b = per_listener_rates(a)[:, 0], per_listener_rates(b)[:, 0]
        _, p = stats.independent_difference(rates_a, rates_b, n_resamples=0)
        ours += p < 0.05
        if experiment >= 200:
            continue
        table = [
            [a.listened.sum(), a.impressions.sum() - a.listened.sum()],
            [b.listened.sum(), b.impressions.sum() - b.listened.sum()],
        ]
        pooled += scipy_stats.chi2_contingency(table, correction=False).pvalue < 0.05
    assert band[0] <= ours <= band[1], ours / experiments
    assert pooled / 200 > band[1] / experiments, pooled / 200
    # the readout reports exactly this p-value for listen-through
    out = ab_readout({"a": a, "b": b}, [50, 50], n_resamples=0)
    assert out["differences"][0]["listen_through"]["p_value"] == pytest.approx(p)
