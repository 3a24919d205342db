"""The promotion gate: decide on the paired comparison of candidate and champion.

Both models are scored on the same test users (:mod:`musicrec.pipeline.compare`); the gate reads
the paired-bootstrap interval of the NDCG@10 difference (candidate - champion):

- ``superiority``: promote only if its lower bound is above ``margin``;
- ``non-inferiority``: promote if its lower bound is above ``-delta`` (the default for
  retraining, where a model trained on fresher data has value of its own).

Guardrails block a candidate whatever the mode when

- coverage@10 or novelty@10 may have dropped by more than a share of the champion's value: the
  lower bound of the difference is below ``-share x champion``;
- NDCG@10 is significantly worse in any listener segment or artist tier: the one-sided
  randomization p-value (candidate below champion by more than the mode's tolerance: ``delta``
  under non-inferiority, 0 under superiority), Holm-corrected across the six segments, is below
  ``alpha``.

The defaults are measured (``benchmarks/gate_calibration.py --measure``; the reasoning is in
docs/evaluation.md). Between two trainings that differ only in their seed, the lower bound of
the NDCG@10 interval falls between -0.0096 and +0.0027 in 98 % of pairs on HetRec-2K, so
``delta`` = 0.01 lets such a twin pass non-inferiority and ``margin`` = 0.003 keeps it from
passing superiority. The twins' coverage@10 and novelty@10 lower bounds drop at most 4.2 % and
0.7 % (1st percentiles); the guardrails allow 10 % and 5 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec import stats
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError
from musicrec.models.base import Model
from musicrec.pipeline.beyond import ItemSpace, SimilarItems
from musicrec.pipeline.compare import Comparison, compare_scores
from musicrec.pipeline.segments import ARTIST_TIERS, LISTENER_SEGMENTS
from musicrec.pipeline.summary import columns
from musicrec.pipeline.userscores import Ranking, UserScores, score_users

MODES = ("superiority", "non-inferiority")
PRIMARY = "ndcg@10"
GUARDED = ("coverage@10", "novelty@10")
DEFAULT_DELTA = 0.01
DEFAULT_MARGIN = 0.003
DEFAULT_COVERAGE_SHARE = 0.10
DEFAULT_NOVELTY_SHARE = 0.05
DEFAULT_ALPHA = 0.05
GATE_PERMUTATIONS = 5000


@dataclass(frozen=True)
class GateConfig:
    """How the gate decides; every number has a measured default."""

    mode: str = "superiority"
    delta: float = DEFAULT_DELTA
    margin: float = DEFAULT_MARGIN
    coverage_share: float = DEFAULT_COVERAGE_SHARE
    novelty_share: float = DEFAULT_NOVELTY_SHARE
    segment_delta: float | None = None  # None: delta under non-inferiority, 0 under superiority
    alpha: float = DEFAULT_ALPHA
    resamples: int = stats.DEFAULT_RESAMPLES
    permutations: int = GATE_PERMUTATIONS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--gate must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.delta < 0 or self.coverage_share < 0 or self.novelty_share < 0:
            raise ConfigError("--delta and the guardrail shares must be 0 or more")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def segment_tolerance(self) -> float:
        """How much worse a segment may be before its drop counts (tested one-sided)."""
        if self.segment_delta is not None:
            return self.segment_delta
        return self.delta if self.mode == "non-inferiority" else 0.0


def gate_config(
    mode: str, *, delta: float | None = None, margin: float | None = None, seed: int = 0
) -> GateConfig:
    """A :class:`GateConfig` from command-line options (``None``: the measured default)."""
    return GateConfig(
        mode=mode,
        delta=DEFAULT_DELTA if delta is None else delta,
        margin=DEFAULT_MARGIN if margin is None else margin,
        seed=seed,
    )


@dataclass
class Check:
    """One rule of the gate and whether the candidate passed it."""

    name: str
    passed: bool
    detail: str
    numbers: dict[str, float | str | None] = field(default_factory=dict)


@dataclass
class GateResult:
    """The decision, every check behind it, and the comparison it read."""

    passed: bool
    checks: list[Check]
    comparison: Comparison
    config: GateConfig

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        shown = failed or self.checks[:1]
        verdict = "passes" if self.passed else "fails"
        return f"{self.config.mode} gate {verdict}: " + "; ".join(c.detail for c in shown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "config": self.config.to_dict(),
            "checks": [asdict(c) for c in self.checks],
            "comparison": self.comparison.to_dict(),
        }

    def tags(self) -> dict[str, str]:
        """Short string tags for a registry version (``gate.*``)."""
        out = {"gate.mode": self.config.mode, "gate.passed": str(self.passed).lower()}
        for name, metric in self.comparison.metrics.items():
            key = f"gate.{name.replace('@', '_at_')}"
            out[f"{key}.difference"] = f"{metric.difference:.6g}"
            out[f"{key}.interval"] = f"[{metric.low:.6g}, {metric.high:.6g}]"
            if metric.p_value_t is not None:
                out[f"{key}.p_value_t"] = f"{metric.p_value_t:.4g}"
            out[f"{key}.p_value_randomization"] = f"{metric.p_value_randomization:.4g}"
        for check in self.checks:
            out[f"gate.check.{check.name}"] = "pass" if check.passed else "fail"
        out["gate.reason"] = self.reason[:4900]
        return out

    def metrics(self) -> dict[str, float]:
        """Numbers for an MLflow run (``gate.*``)."""
        out = {"gate.passed": float(self.passed)}
        for name, metric in self.comparison.metrics.items():
            key = f"gate.{name.replace('@', '_at_')}"
            for part in ("difference", "low", "high", "p_value_t", "p_value_randomization"):
                value = getattr(metric, part)
                if value is not None and np.isfinite(value):
                    out[f"{key}.{part}"] = float(value)
        return out


def gate_scores(champion: UserScores, candidate: UserScores, config: GateConfig) -> GateResult:
    """Compare ``candidate`` against ``champion`` (same users) and decide."""
    comparison = compare_scores(
        champion,
        candidate,
        [PRIMARY, *GUARDED],
        config.resamples,
        config.permutations,
        config.seed,
    )
    return decide(comparison, segment_check(champion, candidate, config), config)


def decide(comparison: Comparison, segments: Check, config: GateConfig) -> GateResult:
    """The decision of ``config`` on an existing comparison and segment check."""
    checks = [primary_check(comparison, config)]
    checks += [share_check(comparison, name, share) for name, share in _shares(config)]
    checks.append(segments)
    return GateResult(all(c.passed for c in checks), checks, comparison, config)


def _shares(config: GateConfig) -> list[tuple[str, float]]:
    return [("coverage@10", config.coverage_share), ("novelty@10", config.novelty_share)]


def primary_check(comparison: Comparison, config: GateConfig) -> Check:
    """NDCG@10: the interval's lower bound against the margin of the mode."""
    metric = comparison.metrics[PRIMARY]
    bound = config.margin if config.mode == "superiority" else -config.delta
    passed = metric.low > bound
    detail = (
        f"{PRIMARY} candidate - champion = {metric.difference:+.4f} "
        f"[{metric.low:+.4f}, {metric.high:+.4f}], lower bound "
        f"{'>' if passed else '<='} {bound:+.4f} (p_t {metric.p_value_t:.3g}, "
        f"p_rand {metric.p_value_randomization:.3g})"
    )
    return Check(config.mode, passed, detail, {"bound": bound, "low": metric.low})


def share_check(comparison: Comparison, name: str, share: float) -> Check:
    """A guardrail: the difference's lower bound must not be below ``-share x champion``."""
    metric = comparison.metrics[name]
    floor = -share * abs(metric.a)
    passed = metric.low >= floor
    relative = metric.low / metric.a if metric.a else float("nan")
    detail = (
        f"{name} {metric.a:.4f} -> {metric.b:.4f}, lower bound of the change "
        f"{relative:+.1%} {'>=' if passed else '<'} -{share:.0%}"
    )
    return Check(name.split("@")[0], passed, detail, {"floor": floor, "low": metric.low})


def segment_check(champion: UserScores, candidate: UserScores, config: GateConfig) -> Check:
    """NDCG@10 in each listener segment and artist tier: worse by more than the tolerance?
    One-sided randomization tests, Holm-corrected across the segments."""
    groups = (*LISTENER_SEGMENTS, *ARTIST_TIERS)
    pick = [(g, n, v) for g, n, v in columns(champion) if n == PRIMARY and g in groups]
    theirs = {g: v for g, n, v in columns(candidate) if n == PRIMARY and g in groups}
    names = [g for g, _, _ in pick]
    diffs = np.stack([theirs[g] - v for g, _, v in pick], axis=1)
    raw = stats.randomization_p_values(
        diffs,
        config.permutations,
        config.seed,
        alternative="less",
        shift=-config.segment_tolerance,
    )
    counted = np.isfinite(diffs).sum(axis=0) > 0
    adjusted = stats.holm(np.where(counted, raw, np.nan))
    worst = int(np.nanargmin(adjusted)) if np.isfinite(adjusted).any() else 0
    failing = [
        n for n, p in zip(names, adjusted, strict=True) if np.isfinite(p) and p < config.alpha
    ]
    means = stats.nanmean_columns(diffs)
    if failing:
        detail = (
            "significantly worse "
            + PRIMARY
            + " in "
            + ", ".join(
                f"{n} ({means[names.index(n)]:+.4f}, Holm p {adjusted[names.index(n)]:.3g})"
                for n in failing
            )
        )
    else:
        detail = (
            f"no segment significantly worse (lowest Holm p {adjusted[worst]:.3g} in "
            f"{names[worst]})"
        )
    numbers: dict[str, float | str | None] = {
        f"{n}.p_holm": float(p) if np.isfinite(p) else None
        for n, p in zip(names, adjusted, strict=True)
    }
    return Check("segments", not failing, detail, numbers)


def gate_rankers(
    champion: Model | Ranking,
    candidate: Model | Ranking,
    dataset: Dataset,
    test: sp.csr_matrix,
    config: GateConfig,
    similar_items: SimilarItems | None = None,
) -> GateResult:
    """Score both (models of ``dataset``'s users or rankings) on ``test``, train and validation
    rows of ``dataset`` excluded, and decide."""
    train = dataset.train
    items = ItemSpace.build(train, dataset.tags, similar_items)
    scores = []
    for ranker in (champion, candidate):
        scored = score_users(ranker, train, test, (10,), items, exclude=dataset.seen)
        scored.fingerprint = dataset.fingerprint
        scores.append(scored)
    return gate_scores(scores[0], scores[1], config)
