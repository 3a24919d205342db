"""The readout of an experiment: rates with intervals, differences with tests, a winner.

Every statistic comes from :mod:`musicrec.stats` and treats the *listener* as the unit
(assignment is per listener; one listener's lists are not independent of each other):

- ab mode, per arm: ``listen_through`` (the share of impressions at positions below ``k``
  that were listened to: at least one play or love attributed), ``skip_rate`` and
  ``ban_rate`` (skips and bans per impression), each computed per listener and averaged over
  the arm's listeners (each listener weighs the same), with a 95 % percentile bootstrap
  interval over listeners (:func:`~musicrec.stats.bootstrap_mean_ci`, seeded). Every pair of
  arms: the difference (later arm minus earlier) with its bootstrap interval and Welch's
  t-test ``p_value`` (:func:`~musicrec.stats.independent_difference`), Holm-adjusted when
  there are more than two arms. ``winner``: the arm whose listen-through beats every other
  arm at (adjusted) p < 0.05, else null. A sample-ratio-mismatch check compares the arms'
  listener counts with their shares (:func:`~musicrec.stats.srm_chi2`); p < 0.001 means the
  split or the logging is broken and no difference should be trusted.
- interleave mode: per listener, which team earned more credit (plays and loves); wins,
  losses and ties; an exact binomial test of wins against losses (ties left out);
  ``preference``, the mean over listeners of +1 (second arm ahead), -1 or 0, with its
  bootstrap interval; ``winner`` when p < 0.05.

Guardrail stops (when and why) come with the arms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from musicrec import stats
from musicrec.events.outcomes import ATTRIBUTION_WINDOW_S
from musicrec.events.store import EventStore
from musicrec.online.experiments import Experiment
from musicrec.online.guardrails import arm_breaches, observations_from_totals
from musicrec.online.interleave import Preferences
from musicrec.online.readout import ArmCounts, arm_counts, interleave_preferences

ALPHA = 0.05
SRM_ALPHA = 0.001  # the usual sample-ratio-mismatch threshold: a broken split, not chance
METRICS = ("listen_through", "skip_rate", "ban_rate")
HIGHER_IS_BETTER = {"listen_through": True, "skip_rate": False, "ban_rate": False}


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _estimate(estimate: stats.Estimate) -> dict[str, float | None]:
    return {key: _finite(value) for key, value in estimate.to_dict().items()}


def per_listener_rates(counts: ArmCounts) -> np.ndarray:
    """``(listeners, 3)``: listen-through, skip rate and ban rate of each listener."""
    shown = np.maximum(counts.impressions, 1).astype(np.float64)
    return np.column_stack([counts.listened / shown, counts.skips / shown, counts.bans / shown])


def ab_readout(
    counts: Mapping[str, ArmCounts],
    shares: Sequence[float],
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-arm rates, pairwise differences, the SRM check and the winner (pure)."""
    names = list(counts)
    rates = {name: per_listener_rates(counts[name]) for name in names}
    arms: dict[str, Any] = {}
    for i, name in enumerate(names):
        estimates = stats.bootstrap_mean_ci(rates[name], n_resamples, seed + 101 * i)
        arms[name] = {
            **counts[name].totals(),
            **{m: _estimate(e) for m, e in zip(METRICS, estimates, strict=True)},
        }
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(names), 2):
        pair: dict[str, Any] = {"arms": [a, b]}
        for column, metric in enumerate(METRICS):
            if len(rates[a]) < 2 or len(rates[b]) < 2:
                pair[metric] = {"difference": None, "p_value": None}
                continue
            difference, p = stats.independent_difference(
                rates[a][:, column], rates[b][:, column], n_resamples, seed + 7919 * (i * 31 + j)
            )
            pair[metric] = {"difference": _estimate(difference), "p_value": _finite(p)}
        pairs.append(pair)
    _adjust(pairs)
    listeners = [len(counts[name].listeners) for name in names]
    srm = stats.srm_chi2(listeners, list(shares)) if sum(listeners) else float("nan")
    return {
        "arms": arms,
        "differences": pairs,
        "srm": {"listeners": listeners, "shares": list(shares), "p_value": _finite(srm)},
        "srm_ok": None if math.isnan(srm) else srm >= SRM_ALPHA,
        "winner": _winner(names, pairs),
    }


def _adjust(pairs: list[dict[str, Any]]) -> None:
    """Holm-adjusted p-values per metric across the pairs (equal to p with one pair)."""
    for metric in METRICS:
        raw = [pair[metric]["p_value"] for pair in pairs]
        values = [np.nan if p is None else p for p in raw]
        adjusted = stats.holm(values) if len(pairs) > 1 else np.asarray(values, dtype=float)
        for pair, p in zip(pairs, adjusted, strict=True):
            pair[metric]["p_adjusted"] = _finite(float(p))


def _winner(names: list[str], pairs: list[dict[str, Any]]) -> str | None:
    """The arm whose listen-through beats every other arm significantly, if one does."""
    beaten: dict[str, set[str]] = {name: set() for name in names}
    for pair in pairs:
        found = pair["listen_through"]
        p, difference = found.get("p_adjusted"), found["difference"]
        if p is None or difference is None or p >= ALPHA or not difference["value"]:
            continue
        a, b = pair["arms"]
        better, worse = (b, a) if difference["value"] > 0 else (a, b)
        beaten[better].add(worse)
    winners = [name for name in names if len(beaten[name]) == len(names) - 1]
    return winners[0] if len(winners) == 1 else None


def interleave_readout(
    prefs: Preferences,
    first: str,
    second: str,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Wins, losses, ties, the binomial test, the preference and the winner (pure)."""
    wins, losses = prefs.wins, prefs.losses  # from the first arm's side
    p = stats.binomial_test(wins, wins + losses)
    toward_second = -prefs.outcome.astype(np.float64)
    (preference,) = stats.bootstrap_mean_ci(toward_second, n_resamples, seed)
    winner = None
    if wins + losses and p < ALPHA and wins != losses:
        winner = first if wins > losses else second
    return {
        "listeners": len(prefs.listeners),
        "credit": {first: int(prefs.first.sum()), second: int(prefs.second.sum())},
        "wins": {first: wins, second: losses},
        "ties": prefs.ties,
        "preference": {"toward": second, **_estimate(preference)},
        "p_value": _finite(p),
        "winner": winner,
    }


def _arm_state(experiment: Experiment) -> dict[str, dict[str, Any]]:
    return {
        arm.name: {
            "model": arm.model,
            "version": arm.version,
            "share": arm.share,
            "stopped_at": arm.stopped_at,
            "stop_reason": arm.stop_reason,
        }
        for arm in experiment.arms
    }


def experiment_report(
    store: EventStore,
    experiment: Experiment,
    k: int | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
    window_s: float = ATTRIBUTION_WINDOW_S,
) -> dict[str, Any]:
    """The full readout of ``experiment`` from the impressions and outcomes in ``store``.

    ``window_s``: how long after an impression an event without a request id still counts
    for it (see :mod:`musicrec.events.outcomes`).
    """
    report: dict[str, Any] = {
        "experiment": experiment.to_dict(),
        "k": k,
        "attribution_window_s": window_s,
        "confidence": stats.CONFIDENCE,
        "resamples": n_resamples,
        "seed": seed,
    }
    state = _arm_state(experiment)
    if experiment.mode == "interleave":
        first, second = (arm.name for arm in experiment.arms)
        prefs = interleave_preferences(store, experiment, k, window_s)
        report["interleave"] = interleave_readout(prefs, first, second, n_resamples, seed)
        report["arms"] = state
        report["winner"] = report["interleave"]["winner"]
        return report
    counts = arm_counts(store, experiment, k, window_s)
    readout = ab_readout(counts, [arm.share for arm in experiment.arms], n_resamples, seed)
    for name, values in readout["arms"].items():
        values.update(state[name])
        seen = observations_from_totals(counts[name].totals())
        values["guardrail_breaches"] = [
            b.to_dict() for b in arm_breaches(name, seen, experiment.guardrails)
        ]
    report.update(readout)
    return report
