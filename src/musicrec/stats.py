"""Statistics over units (listeners): bootstrap intervals, paired tests, multiplicity, checks.

One module for every comparison musicrec makes, offline (evaluate, compare, the promotion gate)
and online (per-arm readouts). It depends on numpy and scipy only.

The bootstrap resamples *units* (listeners) with replacement. Resample ``b`` draws its units
from ``numpy.random.default_rng([seed, b])``, so a seed fixes every resample whatever the
chunking, and two arrays over the same units resampled with the same seed are paired.
Statistics receive the multinomial *counts* of each unit in a block of resamples, so a mean over
units is one matrix product and a statistic that is not a mean (catalogue coverage, Gini) sees
the same resamples as the means beside it. ``scipy.stats.bootstrap`` draws an index array per
resample and statistic; at 359K listeners x 1,000 resamples x dozens of metrics that is gigabytes
and minutes, where the counts cost one ``bincount`` per resample shared by every metric.

Intervals are percentile intervals. Tests: :func:`paired_t_test` (``scipy.stats.ttest_rel``),
:func:`randomization_test` (Fisher's sign-flip test, seeded), :func:`holm` (step-down
family-wise correction), :func:`binomial_test` and :func:`srm_chi2` (sample-ratio mismatch).
Planning: :func:`resampled_power` (the share of experiments of ``n`` units, drawn from observed
units, in which a test decides) and :func:`units_for_power`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy

DEFAULT_RESAMPLES = 1000
DEFAULT_PERMUTATIONS = 10_000
CONFIDENCE = 0.95
# Counts of one block of resamples stay near 64 MiB (float32) at any number of units.
BLOCK_CELLS = 1 << 24

Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (``low``/``high`` are NaN when not computed)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def _block(n_units: int) -> int:
    return max(1, min(256, BLOCK_CELLS // max(1, n_units)))


def resample_counts(
    n_units: int, n_resamples: int, seed: int = 0, *, start: int = 0
) -> Iterator[np.ndarray]:
    """Blocks of multinomial counts, float32 ``(resamples_in_block, n_units)``.

    Row ``b`` says how often each unit appears in bootstrap resample ``start + b``; rows sum to
    ``n_units``. Resample ``b`` always comes from ``default_rng([seed, b])``.
    """
    step = _block(n_units)
    for first in range(start, start + n_resamples, step):
        last = min(start + n_resamples, first + step)
        counts = np.empty((last - first, n_units), dtype=np.float32)
        for row, b in enumerate(range(first, last)):
            drawn = np.random.default_rng([seed, b]).integers(0, n_units, n_units)
            counts[row] = np.bincount(drawn, minlength=n_units)
        yield counts


def bootstrap_distribution(
    statistics: list[Statistic], n_units: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> list[np.ndarray]:
    """Each statistic's value on every resample: ``(n_resamples, m)`` arrays.

    A statistic maps a block of counts ``(b, n_units)`` to ``(b, m)`` values; all statistics
    see the same resamples.
    """
    parts: list[list[np.ndarray]] = [[] for _ in statistics]
    for counts in resample_counts(n_units, n_resamples, seed):
        for part, statistic in zip(parts, statistics, strict=True):
            part.append(np.asarray(statistic(counts), dtype=np.float64).reshape(len(counts), -1))
    return [np.concatenate(part) if part else np.empty((0, 0)) for part in parts]


def weighted_means(values: np.ndarray) -> Statistic:
    """A statistic: per column, the mean over units of the finite entries, counts as weights.

    NaN marks a unit a column does not apply to (a listener outside a segment); each column's
    mean is over its own units, as the point estimate is.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values.reshape(len(values), -1)
    finite = np.isfinite(values)
    # C order: BLAS is tens of times slower with a Fortran-ordered operand this shape
    filled = np.ascontiguousarray(np.where(finite, values, 0.0), dtype=np.float32)
    patterns: dict[bytes, int] = {}
    by_column = np.packbits(finite, axis=0).T  # one row of bits per column
    inverse = np.array(
        [patterns.setdefault(row.tobytes(), len(patterns)) for row in by_column], dtype=np.int64
    )
    first = {code: column for column, code in reversed(list(enumerate(inverse)))}
    masks = np.ascontiguousarray(
        finite[:, [first[code] for code in range(len(patterns))]], dtype=np.float32
    )  # (n_units, distinct masks)

    def statistic(counts: np.ndarray) -> np.ndarray:
        sums = (counts @ filled).astype(np.float64)
        weights = (counts @ masks).astype(np.float64)[:, inverse]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weights > 0, sums / np.maximum(weights, 1e-300), np.nan)

    return statistic


def _columns(values: np.ndarray) -> np.ndarray:
    """``values`` as units x columns (a 1-d array is one column; no units is fine)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1 or values.size == 0:
        return values.reshape(len(values), values.shape[1] if values.ndim > 1 else 1)
    return values.reshape(len(values), -1)


def nanmean_columns(values: np.ndarray) -> np.ndarray:
    """Mean of each column over its finite entries (NaN for a column with none)."""
    values = _columns(values)
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(axis=0)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def percentile_interval(
    distribution: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds per column of a ``(resamples, m)`` distribution."""
    tail = (1.0 - confidence) / 2.0
    if distribution.size == 0:
        return np.full(distribution.shape[1:], np.nan), np.full(distribution.shape[1:], np.nan)
    with warnings.catch_warnings():  # a column no resample defines stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(distribution, [tail, 1.0 - tail], axis=0)
    return low, high


def centred_interval(
    estimate: np.ndarray, distribution: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bounds of the bootstrap distribution shifted to centre on ``estimate``.

    For statistics that are not means over units (catalogue coverage, Gini of exposure): a
    resample holds about 63 % distinct units, so their bootstrap distribution sits off the
    estimate; its spread, not its location, measures the sampling error.
    """
    low, high = percentile_interval(distribution, confidence)
    centre = nanmean_columns(distribution) if len(distribution) else np.nan
    return estimate + (low - centre), estimate + (high - centre)


def bootstrap_mean_ci(
    values: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[Estimate]:
    """Mean of each column of ``values`` (units x columns, NaN = not applicable) with its
    percentile bootstrap interval over units."""
    values = _columns(values)
    point = nanmean_columns(values)
    if n_resamples <= 0 or len(values) == 0:
        return [Estimate(float(v), float("nan"), float("nan")) for v in point]
    (dist,) = bootstrap_distribution([weighted_means(values)], len(values), n_resamples, seed)
    low, high = percentile_interval(dist, confidence)
    return [
        Estimate(float(v), float(lo), float(hi)) for v, lo, hi in zip(point, low, high, strict=True)
    ]


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[Estimate]:
    """Mean difference ``b - a`` per column over the same units, with its bootstrap interval.

    A unit counts in a column only where both ``a`` and ``b`` are finite.
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    return bootstrap_mean_ci(b - a, n_resamples, seed, confidence)


def independent_difference(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[Estimate, float]:
    """``mean(b) - mean(a)`` for two independent groups (A/B arms): bootstrap interval
    (each group resampled on its own) and Welch's t-test p-value."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(b.mean() - a.mean())
    if n_resamples > 0 and len(a) and len(b):
        (da,) = bootstrap_distribution([weighted_means(a)], len(a), n_resamples, seed)
        (db,) = bootstrap_distribution([weighted_means(b)], len(b), n_resamples, seed + 1)
        low, high = percentile_interval(db - da, confidence)
        estimate = Estimate(diff, float(low[0]), float(high[0]))
    else:
        estimate = Estimate(diff, float("nan"), float("nan"))
    p = float(_scipy.ttest_ind(b, a, equal_var=False).pvalue) if len(a) > 1 < len(b) else 1.0
    return estimate, p


def paired_t_test(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided") -> float:
    """p-value of the paired t-test of ``b - a`` (``scipy.stats.ttest_rel``).

    Pairs with a non-finite side are dropped; identical arrays give 1.0 (no difference at
    all is no evidence of one), fewer than two pairs 1.0.
    """
    a, b = _finite_pairs(a, b)
    if len(a) < 2:
        return 1.0
    diff = b - a
    if np.ptp(diff) <= 1e-12 * max(1.0, float(np.abs(diff).max())):  # t is 0/0 or infinite
        if abs(diff[0]) <= 1e-12:
            return 1.0
        if alternative == "two-sided":
            return 0.0
        return 0.0 if (diff[0] > 0) == (alternative == "greater") else 1.0
    return float(_scipy.ttest_rel(b, a, alternative=alternative).pvalue)  # type: ignore[arg-type]


def randomization_test(
    a: np.ndarray,
    b: np.ndarray,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alternative: str = "two-sided",
    shift: float = 0.0,
) -> float:
    """Fisher's paired randomization (sign-flip) test of ``mean(b - a) == shift``.

    Under the null each unit's two values are exchangeable: a random sign flips each
    difference. p = (1 + permutations at least as extreme) / (1 + permutations), so it is
    never 0. ``alternative``: ``two-sided``, ``greater`` (b above a + shift) or ``less``.
    """
    a, b = _finite_pairs(a, b)
    return float(
        randomization_p_values((b - a)[:, None], n_permutations, seed, alternative, shift)[0]
    )


def randomization_p_values(
    differences: np.ndarray,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alternative: str = "two-sided",
    shift: float = 0.0,
) -> np.ndarray:
    """:func:`randomization_test` for every column of paired ``differences`` (units x columns,
    NaN = unit not in that column) at once; all columns see the same sign flips."""
    diffs = np.asarray(differences, dtype=np.float64).reshape(len(differences), -1)
    finite = np.isfinite(diffs)
    centred = np.where(finite, diffs - shift, 0.0)
    count = finite.sum(axis=0)
    if not len(diffs):
        return np.ones(diffs.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = centred.sum(axis=0) / count
    tolerance = 1e-12 * np.maximum(1.0, np.abs(centred).max(axis=0))
    rng = np.random.default_rng([seed, 0x5EED])
    step = _block(len(diffs))
    extreme = np.zeros(diffs.shape[1])
    done = 0
    while done < n_permutations:
        size = min(step, n_permutations - done)
        signs = rng.integers(0, 2, (size, len(diffs)), dtype=np.int8).astype(np.float64) * 2 - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            means = signs @ centred / count
        if alternative == "greater":
            extreme += (means >= observed - tolerance).sum(axis=0)
        elif alternative == "less":
            extreme += (means <= observed + tolerance).sum(axis=0)
        else:
            extreme += (np.abs(means) >= np.abs(observed) - tolerance).sum(axis=0)
        done += size
    return np.where(count > 0, (1 + extreme) / (1 + n_permutations), 1.0)


def swap_distribution(
    statistic: Statistic, n_units: int, n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> np.ndarray:
    """A paired statistic that is not a mean over units, under random swaps.

    ``statistic`` receives a block of 0/1 swap masks ``(b, n_units)`` (1: the unit's two
    values trade places) and returns ``(b, m)`` values of the difference; the randomization
    p-value is the share of swaps at least as extreme as the observed (all-zero mask) value.
    """
    rng = np.random.default_rng([seed, 0x5A1])
    step = _block(n_units)
    parts = []
    done = 0
    while done < n_permutations:
        size = min(step, n_permutations - done)
        swaps = rng.integers(0, 2, (size, n_units), dtype=np.int8).astype(np.float32)
        parts.append(np.asarray(statistic(swaps), dtype=np.float64).reshape(size, -1))
        done += size
    return np.concatenate(parts) if parts else np.empty((0, 0))


def swap_p_values(observed: np.ndarray, distribution: np.ndarray) -> np.ndarray:
    """Two-sided randomization p-values from :func:`swap_distribution`."""
    tolerance = 1e-12 * np.maximum(1.0, np.abs(observed))
    extreme = (np.abs(distribution) >= np.abs(observed) - tolerance).sum(axis=0)
    return (1 + extreme) / (1 + len(distribution))


def _finite_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {len(a)} vs {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control across the family).

    Hand-written: scipy has only the false-discovery-rate correction; this is five lines.
    NaN p-values stay NaN and do not count in the family.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def binomial_test(successes: int, trials: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test (``scipy.stats.binomtest``), e.g. interleaving wins."""
    if trials == 0:
        return 1.0
    return float(_scipy.binomtest(successes, trials, p).pvalue)


def srm_chi2(counts: list[int] | np.ndarray, shares: list[float] | np.ndarray) -> float:
    """Sample-ratio mismatch: chi-squared goodness of fit of arm ``counts`` to target ``shares``."""
    observed = np.asarray(counts, dtype=np.float64)
    expected = np.asarray(shares, dtype=np.float64)
    expected = expected / expected.sum() * observed.sum()
    return float(_scipy.chisquare(observed, expected).pvalue)


def proportion_interval(
    successes: int, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``scipy.stats.binomtest``).

    For pooled counts where no per-unit values exist (a guardrail's bans per impression from
    counters); NaNs for zero trials.
    """
    if trials <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials]: {successes} of {trials}")
    found = _scipy.binomtest(int(successes), int(trials)).proportion_ci(confidence, "wilson")
    return float(found.low), float(found.high)


@dataclass(frozen=True)
class Power:
    """How often a test decided over ``repeats`` resampled experiments of ``units`` units,
    with the Wilson interval of that share and the median p-value."""

    units: int
    repeats: int
    decided: int
    low: float
    high: float
    median_p: float

    @property
    def value(self) -> float:
        return self.decided / self.repeats if self.repeats else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return {"units": self.units, "power": self.value, "low": self.low, "high": self.high,
                "repeats": self.repeats, "median_p": self.median_p}  # fmt: skip


def resampled_power(
    decide: Callable[[np.ndarray], tuple[bool, float]],
    n_units: int,
    sizes: Sequence[int],
    repeats: int = 500,
    seed: int = 0,
) -> list[Power]:
    """Power of a test at each experiment size, estimated from ``n_units`` observed units.

    For each size ``n``, ``repeats`` times: draw ``n`` of the observed units with
    replacement (from ``default_rng([seed, n])``) and call ``decide(indices)``, which answers
    ``(decided, p_value)``. The observed units stand for the population (a plug-in
    estimate): every repeat reuses their outcomes, and sizes above ``n_units`` repeat units.
    """
    if n_units < 1 or repeats < 1:
        raise ValueError("resampling needs at least one unit and one repeat")
    found = []
    for size in sizes:
        rng = np.random.default_rng([seed, int(size)])
        hits, p_values = 0, []
        for _ in range(repeats):
            decided, p = decide(rng.integers(0, n_units, int(size)))
            hits += bool(decided)
            p_values.append(p)
        low, high = proportion_interval(hits, repeats)
        found.append(Power(int(size), repeats, hits, low, high, float(np.nanmedian(p_values))))
    return found


def units_for_power(powers: Sequence[Power], target: float = 0.8) -> float | None:
    """The experiment size at which the power curve first reaches ``target``, linearly
    interpolated between the two sizes either side (``None`` when no size reaches it)."""
    ordered = sorted(powers, key=lambda power: power.units)
    for before, after in zip([None, *ordered], ordered, strict=False):
        if after.value < target:
            continue
        if before is None or after.value == before.value:
            return float(after.units)
        share = (target - before.value) / (after.value - before.value)
        return before.units + share * (after.units - before.units)
    return None
