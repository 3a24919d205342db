"""Paired comparison of two models scored on the same test users.

Per metric: ``a``, ``b``, ``difference`` (b - a) with its paired-bootstrap 95 % interval (the
same user resamples for both models), ``p_value_t`` (paired t-test over users),
``p_value_randomization`` (Fisher's sign-flip test, seeded) and ``p_value_holm`` (the
randomization p-value, Holm-corrected across the compared metrics). Coverage and Gini are not
means over users: their interval is the centred bootstrap spread of the difference, their
randomization test swaps whole lists between the models, and they have no t-test.
The same differences per listener segment and artist tier are in ``segments``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from musicrec import stats
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError, ConfigError
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.beyond import (
    PER_USER,
    ItemSpace,
    aggregates,
    exposure_matrix,
    exposure_metrics,
)
from musicrec.pipeline.evaluate import DEFAULT_KS, check_trained_on
from musicrec.pipeline.summary import columns
from musicrec.pipeline.userscores import ACCURACY, UserScores, check_ks, score_users

DEFAULT_PERMUTATIONS = 5000
AGGREGATE_METRICS = ("coverage", "gini")


@dataclass
class MetricComparison:
    """One metric of model ``b`` against model ``a``."""

    a: float
    b: float
    difference: float
    low: float
    high: float
    p_value_t: float | None
    p_value_randomization: float
    p_value_holm: float | None = None
    users: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass
class Comparison:
    """Every compared metric, overall and per segment, and how it was computed."""

    metrics: dict[str, MetricComparison]
    segments: dict[str, dict[str, MetricComparison]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: m.to_dict() for name, m in self.metrics.items()}
        out["segments"] = {
            segment: {name: m.to_dict() for name, m in values.items()}
            for segment, values in self.segments.items()
        }
        out["comparison"] = self.settings
        return out


def known_metrics(scores: UserScores) -> list[str]:
    """Every metric name a comparison of ``scores`` can report."""
    aggregate = [f"{m}@{k}" for k in scores.ks for m in AGGREGATE_METRICS]
    return [*scores.metric_names, *aggregate]


def metric_names(ks: Sequence[int]) -> list[str]:
    """Every metric an evaluation at cut-offs ``ks`` reports."""
    per_user = (*ACCURACY, *PER_USER)
    return [f"{m}@{k}" for k in sorted(set(ks)) for m in (*per_user, *AGGREGATE_METRICS)]


def check_metrics(wanted: Sequence[str], ks: Sequence[int]) -> None:
    """One-line error for a metric name no evaluation at ``ks`` reports."""
    known = metric_names(ks)
    for name in wanted:
        if name not in known:
            raise ConfigError(f"unknown metric {name!r}; choose from {', '.join(known)}")


def score_artifacts(
    dataset: Dataset,
    artifacts: list[ModelArtifact],
    ks: Sequence[int] = DEFAULT_KS,
    show_progress: bool = False,
) -> list[UserScores]:
    """Every artifact scored on the dataset's test users, diversity measured alike for all
    (tags, then the first model's similarity for untagged artists)."""
    check_ks(ks, dataset.shape[1])
    train, test = dataset.train, dataset.test
    items = ItemSpace.build(train, dataset.tags, artifacts[0].model.similar_items)
    scores = []
    for number, artifact in enumerate(artifacts):
        label = f"model {'ab'[number % 2]}"
        # Train and validation items are out of the ranking, as in ``evaluate``.
        scored = score_users(
            artifact.model,
            train,
            test,
            ks,
            items,
            show_progress=show_progress,
            label=label,
            exclude=dataset.seen,
        )
        scored.fingerprint = dataset.fingerprint
        scores.append(scored)
    return scores


def compare_models(
    data_dir: str | Path,
    model_a: str | Path,
    model_b: str | Path,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: list[str] | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    show_progress: bool = False,
) -> Comparison:
    """Score two artifacts on the dataset's test users and compare them (b against a).

    Both must have been trained on ``data_dir``. Diversity measures both models' lists with
    the same item distance (tags, then model ``a``'s similarity for untagged artists).
    """
    check_metrics(metrics or [], ks)
    dataset = Dataset.load(data_dir)
    artifacts = [ModelArtifact.load(model_a), ModelArtifact.load(model_b)]
    found = [art.manifest.get("dataset", {}).get("fingerprint") for art in artifacts]
    if found[0] != found[1]:
        raise ArtifactError(
            f"{model_a} and {model_b} were trained on different datasets ({found[0]} vs "
            f"{found[1]}): not comparable"
        )
    for path, artifact in zip((model_a, model_b), artifacts, strict=True):
        check_trained_on(dataset, artifact, path)
    scores = score_artifacts(dataset, artifacts, ks, show_progress)
    return compare_scores(scores[0], scores[1], metrics, n_resamples, n_permutations, seed)


def check_pair(a: UserScores, b: UserScores) -> None:
    """Both scored on the same dataset and the same users, or a one-line error."""
    if a.fingerprint and b.fingerprint and a.fingerprint != b.fingerprint:
        raise ArtifactError(
            f"the models were evaluated on different datasets ({a.fingerprint} vs "
            f"{b.fingerprint}): not comparable"
        )
    if not np.array_equal(a.users, b.users) or a.n_items != b.n_items:
        raise ArtifactError("the models were not scored on the same test users: not comparable")


def select(scores: UserScores, wanted: list[str] | None) -> list[str]:
    """The requested metric names in report order (all when ``wanted`` is empty)."""
    available = known_metrics(scores)
    if not wanted:
        return available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r}; choose from {', '.join(available)}")
    return [name for name in available if name in wanted]


def compare_scores(
    a: UserScores,
    b: UserScores,
    metrics: list[str] | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> Comparison:
    """Model ``b`` against model ``a`` on the same users (see the module docstring)."""
    with threadpool_limits(limits=1, user_api="blas"):  # many short products (see summary)
        return _compare(a, b, metrics, n_resamples, n_permutations, seed)


def _compare(
    a: UserScores,
    b: UserScores,
    metrics: list[str] | None,
    n_resamples: int,
    n_permutations: int,
    seed: int,
) -> Comparison:
    check_pair(a, b)
    names = select(a, metrics)
    per_user = [n for n in names if n.split("@")[0] not in AGGREGATE_METRICS]
    aggregate = [n for n in names if n not in per_user]
    cols_a = [c for c in columns(a) if c[1] in per_user]
    cols_b = [c for c in columns(b) if c[1] in per_user]
    values_a = _stack(cols_a, len(a.users))
    values_b = _stack(cols_b, len(a.users))
    both = np.isfinite(values_a) & np.isfinite(values_b)
    values_a, values_b = np.where(both, values_a, np.nan), np.where(both, values_b, np.nan)
    diffs = values_b - values_a
    agg_ks = sorted({int(n.split("@")[1]) for n in aggregate})
    agg_stat = _aggregate_difference(a, b, agg_ks)
    n = len(a.users)
    dist_means, dist_agg = stats.bootstrap_distribution(
        [stats.weighted_means(diffs), agg_stat], n, n_resamples, seed
    )
    low, high = stats.percentile_interval(dist_means)
    p_rand = stats.randomization_p_values(diffs, n_permutations, seed)
    results: dict[tuple[str, str], MetricComparison] = {}
    for j, (group, name, _) in enumerate(cols_a):
        results[(group, name)] = MetricComparison(
            a=float(np.nanmean(values_a[:, j])) if both[:, j].any() else float("nan"),
            b=float(np.nanmean(values_b[:, j])) if both[:, j].any() else float("nan"),
            difference=float(np.nanmean(diffs[:, j])) if both[:, j].any() else float("nan"),
            low=float(low[j]),
            high=float(high[j]),
            p_value_t=stats.paired_t_test(values_a[:, j], values_b[:, j]),
            p_value_randomization=float(p_rand[j]),
            users=int(both[:, j].sum()),
        )
    results |= _aggregate_results(a, b, agg_ks, aggregate, dist_agg, n_permutations, seed)
    overall = {name: results[("all", name)] for name in names}
    adjusted = stats.holm([m.p_value_randomization for m in overall.values()])
    for metric, p in zip(overall.values(), adjusted, strict=True):
        metric.p_value_holm = float(p)
    segments: dict[str, dict[str, MetricComparison]] = {}
    for (group, name), metric in results.items():
        if group != "all":
            segments.setdefault(group, {})[name] = metric
    settings = {
        "users": n,
        "resamples": n_resamples,
        "permutations": n_permutations,
        "seed": seed,
        "confidence": stats.CONFIDENCE,
        "holm": "randomization p-values across the compared metrics",
    }
    return Comparison(overall, segments, settings)


def _stack(cols: list[tuple[str, str, np.ndarray]], n: int) -> np.ndarray:
    return np.stack([v for _, _, v in cols], axis=1) if cols else np.empty((n, 0))


def _aggregate_difference(a: UserScores, b: UserScores, ks: list[int]) -> stats.Statistic:
    """Bootstrap statistic: b's coverage and Gini minus a's, per K (none without a K)."""
    if not ks:
        return lambda counts: np.empty((len(counts), 0))
    stat_a = aggregates([exposure_matrix(a.top, k, a.n_items) for k in ks])
    stat_b = aggregates([exposure_matrix(b.top, k, b.n_items) for k in ks])
    return lambda counts: stat_b(counts) - stat_a(counts)


def _aggregate_results(
    a: UserScores,
    b: UserScores,
    ks: list[int],
    names: list[str],
    distribution: np.ndarray,
    n_permutations: int,
    seed: int,
) -> dict[tuple[str, str], MetricComparison]:
    if not ks:
        return {}
    labels = [f"{m}@{k}" for k in ks for m in AGGREGATE_METRICS]
    ones = np.ones((1, len(a.users)), dtype=np.float32)
    exp_a = [exposure_matrix(a.top, k, a.n_items) for k in ks]
    exp_b = [exposure_matrix(b.top, k, b.n_items) for k in ks]
    value_a = aggregates(exp_a)(ones)[0]
    value_b = aggregates(exp_b)(ones)[0]
    observed = value_b - value_a
    low, high = stats.centred_interval(observed, distribution)

    by_artist_a = [sp.csr_matrix(e.T) for e in exp_a]
    by_artist_b = [sp.csr_matrix(e.T) for e in exp_b]

    def swapped(swaps: np.ndarray) -> np.ndarray:
        """b's lists where not swapped plus a's where swapped, against the reverse."""
        moved = np.ascontiguousarray(swaps.T)
        kept = 1.0 - moved
        new_b = [eb @ kept + ea @ moved for ea, eb in zip(by_artist_a, by_artist_b, strict=True)]
        new_a = [ea @ kept + eb @ moved for ea, eb in zip(by_artist_a, by_artist_b, strict=True)]
        return exposure_metrics(new_b) - exposure_metrics(new_a)

    p_rand = stats.swap_p_values(
        observed, stats.swap_distribution(swapped, len(a.users), n_permutations, seed)
    )
    out = {}
    for j, label in enumerate(labels):
        if label in names:
            out[("all", label)] = MetricComparison(
                float(value_a[j]),
                float(value_b[j]),
                float(observed[j]),
                float(low[j]),
                float(high[j]),
                None,
                float(p_rand[j]),
                users=len(a.users),
            )
    return out
