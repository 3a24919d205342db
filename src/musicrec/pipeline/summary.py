"""From per-user values to a report: means, bootstrap intervals and the segment table.

One bootstrap over test users (:mod:`musicrec.stats`) serves every number: the per-user means
overall, the same means per listener segment and per artist tier (a listener outside a segment
is NaN there, so each segment's mean is over its own listeners in that resample), and coverage
and Gini from the resampled exposure counts. Coverage and Gini are not means over users: their
intervals are the bootstrap spread centred on the estimate (see
:func:`musicrec.stats.centred_interval`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from musicrec import stats
from musicrec.pipeline.beyond import aggregates, exposure_matrix
from musicrec.pipeline.segments import ARTIST_TIERS, LISTENER_SEGMENTS
from musicrec.pipeline.userscores import UserScores

DEFAULT_RESAMPLES = stats.DEFAULT_RESAMPLES
METRIC_ORDER = (
    "precision",
    "recall",
    "map",
    "ndcg",
    "coverage",
    "novelty",
    "diversity",
    "popularity_lift",
    "gini",
)


@dataclass
class Summary:
    """Point estimates, their intervals and the per-segment table."""

    metrics: dict[str, float]
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    segments: dict[str, Any] = field(default_factory=dict)


def columns(scores: UserScores) -> list[tuple[str, str, np.ndarray]]:
    """(group, metric, per-user values): overall, per listener segment, per artist tier."""
    out = [("all", name, scores.values[name]) for name in scores.metric_names]
    for code, segment in enumerate(LISTENER_SEGMENTS):
        member = scores.segments.listener == code
        out += [
            (segment, name, np.where(member, scores.values[name], np.nan))
            for name in scores.metric_names
        ]
    for tier in ARTIST_TIERS:
        prefix = f"{tier}:"
        out += [
            (tier, n[len(prefix) :], v) for n, v in scores.values.items() if n.startswith(prefix)
        ]
    return out


def exposure_statistic(scores: UserScores) -> tuple[list[str], stats.Statistic]:
    """Names and bootstrap statistic of coverage and Gini at each K."""
    names = [f"{metric}@{k}" for k in scores.ks for metric in ("coverage", "gini")]
    exposures = [exposure_matrix(scores.top, k, scores.n_items) for k in scores.ks]
    return names, aggregates(exposures)


def summarize(
    scores: UserScores,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = stats.CONFIDENCE,
) -> Summary:
    """Every metric with its interval (none when ``n_resamples`` is 0), and the segments."""
    cols = columns(scores)
    matrix = np.stack([v for _, _, v in cols], axis=1) if cols else np.empty((0, 0))
    point = stats.nanmean_columns(matrix)
    agg_names, agg_statistic = exposure_statistic(scores)
    ones = np.ones((1, len(scores.users)), dtype=np.float32)
    agg_point = agg_statistic(ones)[0] if len(scores.users) else np.full(len(agg_names), np.nan)
    nan = np.full(len(point), np.nan)
    low, high, agg_low, agg_high = nan, nan, agg_point * np.nan, agg_point * np.nan
    if n_resamples > 0 and len(scores.users):
        # One BLAS thread: many short products, where threads mostly wait for each other
        # (several times faster on a loaded 2-core machine, measured in bench_evaluate.py).
        with threadpool_limits(limits=1, user_api="blas"):
            means, aggs = stats.bootstrap_distribution(
                [stats.weighted_means(matrix), agg_statistic], len(scores.users), n_resamples, seed
            )
        low, high = stats.percentile_interval(means, confidence)
        agg_low, agg_high = stats.centred_interval(agg_point, aggs, confidence)
    groups: dict[str, dict[str, Any]] = {}
    for (group, name, _), v, lo, hi in zip(cols, point, low, high, strict=True):
        _put(groups.setdefault(group, {}), name, v, lo, hi)
    overall = groups.pop("all", {})
    for name, v, lo, hi in zip(agg_names, agg_point, agg_low, agg_high, strict=True):
        _put(overall, name, v, lo, hi)
    summary = Summary(_ordered(overall.get("metrics", {})), overall.get("intervals", {}))
    summary.segments = _segments(scores, groups)
    return summary


def _put(group: dict[str, Any], name: str, value: float, low: float, high: float) -> None:
    group.setdefault("metrics", {})[name] = _number(value)
    if np.isfinite(low) and np.isfinite(high):
        group.setdefault("intervals", {})[name] = {"low": float(low), "high": float(high)}


def _number(value: float) -> float | None:
    """JSON has no NaN: a metric no user defines (an empty segment) is ``None``."""
    return float(value) if np.isfinite(value) else None


def _ordered(metrics: dict[str, float]) -> dict[str, float]:
    def key(name: str) -> tuple[int, int]:
        metric, _, k = name.partition("@")
        rank = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
        return int(k or 0), rank

    return {name: metrics[name] for name in sorted(metrics, key=key)}


def _segments(scores: UserScores, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"thresholds": scores.segments.thresholds()}
    for code, segment in enumerate(LISTENER_SEGMENTS):
        entry: dict[str, Any] = {"users": int((scores.segments.listener == code).sum())}
        entry.update(_ordered(groups.get(segment, {}).get("metrics", {})))
        entry["intervals"] = groups.get(segment, {}).get("intervals", {})
        out[segment] = entry
    k0 = scores.ks[0]
    for code, tier in enumerate(ARTIST_TIERS):
        counted = scores.values.get(f"{tier}:ndcg@{k0}")
        entry = {
            "artists": int((scores.segments.tier == code).sum()),
            "users": int(np.isfinite(counted).sum()) if counted is not None else 0,
        }
        entry.update(_ordered(groups.get(tier, {}).get("metrics", {})))
        entry["intervals"] = groups.get(tier, {}).get("intervals", {})
        out[tier] = entry
    return out
