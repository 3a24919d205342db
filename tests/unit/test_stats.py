"""The statistics module: resampling, calibration, tests and corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from musicrec import stats


def ndcg_like(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Per-user scores shaped like NDCG: 35 % zeros, the rest Beta(2, 4); mean 0.65 / 3."""
    return np.where(rng.random(shape) < 0.35, 0.0, rng.beta(2.0, 4.0, shape))


NDCG_LIKE_MEAN = 0.65 * 2.0 / 6.0


def test_counts_are_a_multinomial_resample_per_seed() -> None:
    blocks = list(stats.resample_counts(50, 300, seed=3))
    counts = np.concatenate(blocks)
    assert counts.shape == (300, 50) and (counts.sum(axis=1) == 50).all()
    drawn = np.random.default_rng([3, 17]).integers(0, 50, 50)
    np.testing.assert_array_equal(counts[17], np.bincount(drawn, minlength=50))
    later = np.concatenate(list(stats.resample_counts(50, 10, seed=3, start=17)))
    np.testing.assert_array_equal(later[0], counts[17])  # a resample does not depend on blocks
    other = np.concatenate(list(stats.resample_counts(50, 300, seed=4)))
    assert not np.array_equal(counts, other)


def test_weighted_means_equal_explicit_resampling_and_skip_nan() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((40, 3))
    values[::3, 1] = np.nan  # column 1 applies to two users in three
    (dist,) = stats.bootstrap_distribution([stats.weighted_means(values)], 40, 5, seed=9)
    for b in range(5):
        idx = np.random.default_rng([9, b]).integers(0, 40, 40)
        expected = np.nanmean(values[idx], axis=0)
        np.testing.assert_allclose(dist[b], expected, rtol=1e-5)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    values = ndcg_like(np.random.default_rng(1), (800,))
    first = stats.bootstrap_mean_ci(values, 500, seed=7)
    assert first == stats.bootstrap_mean_ci(values, 500, seed=7)
    assert first != stats.bootstrap_mean_ci(values, 500, seed=8)
    assert first[0].low < first[0].value < first[0].high


def test_interval_agrees_with_scipy_bootstrap() -> None:
    values = ndcg_like(np.random.default_rng(2), (600,))
    (ours,) = stats.bootstrap_mean_ci(values, 4000, seed=0)
    theirs = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=4000, method="percentile", random_state=0
    ).confidence_interval
    width = theirs.high - theirs.low
    assert ours.low == pytest.approx(theirs.low, abs=0.05 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.05 * width)


def test_interval_coverage_is_calibrated() -> None:
    """1,000 simulated evaluations of 500 users with a known mean: 93-97 % of the 95 %
    intervals hold it (one column per simulated set, the same resamples for all)."""
    rng = np.random.default_rng(2026)
    sets = ndcg_like(rng, (500, 1000))
    estimates = stats.bootstrap_mean_ci(sets, 1000, seed=11)
    held = np.mean([e.low <= NDCG_LIKE_MEAN <= e.high for e in estimates])
    assert 0.93 <= held <= 0.97, held
    paired = stats.paired_bootstrap(sets, sets + 0.01 * rng.standard_normal(sets.shape) + 0.002)
    held_paired = np.mean([e.low <= 0.002 <= e.high for e in paired])
    assert 0.93 <= held_paired <= 0.97, held_paired


def test_centred_interval_brackets_the_estimate() -> None:
    distribution = np.array([[0.50], [0.52], [0.54], [0.56], [0.58]])
    low, high = stats.centred_interval(np.array([0.7]), distribution, confidence=0.5)
    assert low[0] < 0.7 < high[0]
    assert high[0] - low[0] == pytest.approx(0.04)


def test_paired_t_test_matches_the_formula() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(300)
    b = a + rng.normal(0.01, 0.1, 300)
    d = b - a
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    expected = 2 * scipy_stats.t.sf(abs(t), len(d) - 1)
    assert stats.paired_t_test(a, b) == pytest.approx(expected, abs=1e-12)
    assert stats.paired_t_test(a, a) == 1.0
    assert stats.paired_t_test(a, a + 0.1) == 0.0
    assert stats.paired_t_test(a, a + 0.1, alternative="less") == 1.0


def test_randomization_agrees_with_t_on_large_samples_and_is_seeded() -> None:
    rng = np.random.default_rng(4)
    a = ndcg_like(rng, (2000,))
    b = np.clip(a + rng.normal(0.006, 0.12, 2000), 0, 1)
    p_rand = stats.randomization_test(a, b, 20_000, seed=1)
    assert p_rand == stats.randomization_test(a, b, 20_000, seed=1)
    assert p_rand == pytest.approx(stats.paired_t_test(a, b), abs=0.01)
    one_sided = stats.randomization_test(a, b, 20_000, seed=1, alternative="greater")
    assert one_sided == pytest.approx(p_rand / 2, abs=0.01)
    shifted = stats.randomization_test(a, b, 5000, seed=1, alternative="greater", shift=-0.05)
    assert shifted < 0.001  # b is clearly above a - 0.05
    assert stats.randomization_test(a, a, 1000) == 1.0


def test_holm_adjusts_step_down() -> None:
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert (stats.holm([0.5, 0.9]) <= 1).all()


def test_online_helpers() -> None:
    assert stats.srm_chi2([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert stats.srm_chi2([5200, 4800], [0.5, 0.5]) < 0.001
    assert stats.binomial_test(60, 100) == pytest.approx(scipy_stats.binomtest(60, 100).pvalue)
    rng = np.random.default_rng(5)
    control, treatment = rng.normal(0.30, 0.1, 3000), rng.normal(0.32, 0.1, 3000)
    estimate, p = stats.independent_difference(control, treatment, 1000, seed=2)
    assert estimate.low < 0.02 < estimate.high and estimate.low > 0 and p < 0.001
    empty = stats.bootstrap_mean_ci(np.empty((0, 3)), 100)  # an arm nobody was shown yet
    assert len(empty) == 3 and all(math.isnan(e.value) and math.isnan(e.low) for e in empty)
    assert math.isnan(stats.bootstrap_mean_ci(np.empty(0), 100)[0].high)


def test_proportion_interval_is_wilsons_and_covers() -> None:
    z = scipy_stats.norm.ppf(0.975)
    n, x = 100, 5
    centre = (x / n + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(x / n * (1 - x / n) / n + z * z / (4 * n * n))
    low, high = stats.proportion_interval(x, n)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert stats.proportion_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert all(math.isnan(v) for v in stats.proportion_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        stats.proportion_interval(11, 10)
    rng = np.random.default_rng(7)
    draws = rng.binomial(400, 0.03, 2000)
    covered = [lo <= 0.03 <= hi for lo, hi in (stats.proportion_interval(d, 400) for d in draws)]
    assert 0.93 <= np.mean(covered) <= 0.975


def test_the_module_needs_only_numpy_and_scipy() -> None:
    """stats sits at the bottom layer: reusable by online readouts without the pipeline."""
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(stats.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"numpy", "scipy"}


def test_resampled_power_counts_decisions_over_seeded_resamples() -> None:
    """One of ten units is special; a test that decides when a resample of one unit holds it
    has power 0.1 (within its Wilson interval), one of 20 units about 1 - 0.9**20."""

    def decide(indices: np.ndarray) -> tuple[bool, float]:
        return bool((indices == 0).any()), float(len(indices))

    first, second = stats.resampled_power(decide, 10, [1, 20], repeats=2000, seed=3)
    assert (first.units, first.repeats) == (1, 2000)
    assert first.low <= 0.1 <= first.high and abs(first.value - 0.1) < 0.025
    assert second.low <= 1 - 0.9**20 <= second.high
    assert first.median_p == 1.0 and second.median_p == 20.0
    again = stats.resampled_power(decide, 10, [1, 20], repeats=2000, seed=3)
    assert [p.decided for p in again] == [first.decided, second.decided]
    with pytest.raises(ValueError):
        stats.resampled_power(decide, 0, [1])


def test_units_for_power_interpolates_between_grid_points() -> None:
    def power(units: int, decided: int) -> stats.Power:
        return stats.Power(units, 100, decided, math.nan, math.nan, math.nan)

    curve = [power(400, 90), power(100, 40), power(200, 70)]
    assert stats.units_for_power(curve, 0.8) == pytest.approx(200 + 200 / 2)
    assert stats.units_for_power(curve, 0.3) == pytest.approx(100)
    assert stats.units_for_power(curve, 0.95) is None
