"""Plackett-Luce exploration: exact list propensities, marginals, and SNIPS replay."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from musicrec.online.explore import (
    effective_sample_size,
    exact_marginals,
    exploration_depth,
    log_weights,
    position_marginals,
    position_matrix,
    sample_list,
    sampling_scores,
    snips,
    snips_by_listener,
)
from musicrec.online.serving import explore
from musicrec.serving.catalogue import Rec


def exact_lists(scores: np.ndarray, k: int, temperature: float) -> dict[tuple[int, ...], float]:
    """Every ordered list of k candidates with its Plackett-Luce probability (enumeration)."""
    weights = np.exp(log_weights(scores, temperature))
    out = {}
    for perm in itertools.permutations(range(len(scores)), k):
        p, left = 1.0, np.ones(len(scores), dtype=bool)
        for j in perm:  # the sum of what is left, not a running difference: no cancellation
            p *= weights[j] / weights[left].sum()
            left[j] = False
        out[perm] = p
    return out


def test_list_propensity_is_exact_and_sums_to_one() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=6)
    exact = exact_lists(scores, 3, 0.7)
    assert sum(exact.values()) == pytest.approx(1.0)
    for _ in range(50):
        sample = sample_list(scores, 3, 0.7, rng, marginal_samples=8)
        assert sample.propensity == pytest.approx(exact[tuple(sample.order)], rel=1e-9)


def test_sampled_lists_follow_their_propensities() -> None:
    rng = np.random.default_rng(4)
    scores = np.array([2.0, 1.0, 0.5, 0.0])
    exact = exact_lists(scores, 2, 1.0)
    draws = [tuple(sample_list(scores, 2, 1.0, rng, 1).order) for _ in range(20_000)]
    keys = sorted(exact)
    observed = np.array([draws.count(key) for key in keys])
    expected = np.array([exact[key] for key in keys]) * len(draws)
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_marginals_match_enumeration() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=7)
    exact = exact_lists(scores, 4, 0.8)
    marginal = np.zeros((7, 4))
    for perm, p in exact.items():
        for i, j in enumerate(perm):
            marginal[j, i] += p
    log_w = log_weights(scores, 0.8)
    for _ in range(5):
        order = sample_list(scores, 4, 0.8, rng).order
        estimate = position_marginals(log_w, order, rng, n=4000)
        truth = marginal[order, np.arange(4)]
        assert estimate[0] == pytest.approx(truth[0], rel=1e-9)  # exact at the top
        assert np.allclose(estimate, truth, rtol=0.05, atol=0.002)
        assert (estimate > 0).all()


@pytest.mark.parametrize("temperature", [0.05, 0.3, 1.0, 4.0])
def test_exact_marginals_match_enumeration(temperature: float) -> None:
    """Every candidate at every position, against the sum over all ordered lists; at 0.05
    the weights span tens of orders of magnitude."""
    rng = np.random.default_rng(7)
    scores = rng.normal(size=7)
    exact = exact_lists(scores, 4, temperature)
    marginal = np.zeros((7, 4))
    for perm, p in exact.items():
        for i, j in enumerate(perm):
            marginal[j, i] += p
    log_w = log_weights(scores, temperature)
    found = position_matrix(log_w, np.arange(7), 4)
    # relative 1e-7, and absolute 1e-16 where the quadrature's cut-off shows (tiny weights)
    assert np.allclose(found, marginal, rtol=1e-7, atol=1e-16)
    order = sample_list(scores, 4, temperature, rng).order
    assert np.allclose(exact_marginals(log_w, order), marginal[order, np.arange(4)], rtol=1e-7)


def test_exact_marginals_of_a_position_sum_to_one_over_fifty_candidates() -> None:
    log_w = log_weights(np.random.default_rng(8).normal(size=50), 1.0)
    found = position_matrix(log_w, np.arange(50), 10)
    assert np.allclose(found.sum(axis=0), 1.0, rtol=1e-9)  # someone is at every position
    assert (found.sum(axis=1) <= 1 + 1e-12).all()  # an artist is shown at most once
    assert np.allclose(found[:, 0], np.exp(log_w) / np.exp(log_w).sum(), rtol=1e-9)


def test_temperature_moves_between_ranking_and_shuffle() -> None:
    rng = np.random.default_rng(6)
    scores = np.linspace(5, 0, 30)
    cold = [sample_list(scores, 5, 0.01, rng, 4).order.tolist() for _ in range(50)]
    assert all(order == [0, 1, 2, 3, 4] for order in cold)
    hot = np.array([sample_list(scores, 1, 1000.0, rng, 4).order[0] for _ in range(3000)])
    assert stats.chisquare(np.bincount(hot, minlength=30)).pvalue > 0.001


def test_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        sample_list(np.array([1.0, 2.0]), 1, 0.0, rng)
    with pytest.raises(ValueError):
        sample_list(np.array([1.0, np.nan]), 1, 1.0, rng)
    with pytest.raises(ValueError):
        snips(np.ones(2), np.array([0.5, 0.0]), np.ones(2))
    assert len(sample_list(np.array([1.0, 2.0]), 5, 1.0, rng).order) == 2  # k capped


def test_snips_recovers_three_targets_listen_through_and_their_order() -> None:
    """Logged with exploration under a position-based click model, replayed for 3 rankers."""
    rng = np.random.default_rng(7)
    n_listeners, m, k, lists_each = 2000, 20, 5, 5
    examine = 0.9 * 0.8 ** np.arange(k)
    relevance = rng.beta(0.6, 2.0, size=(n_listeners, m))
    logging_scores = relevance + rng.normal(scale=0.3, size=relevance.shape)
    targets = {
        "oracle": np.argsort(-relevance, axis=1)[:, :k],
        "noisy": np.argsort(-(relevance + rng.normal(scale=0.3, size=relevance.shape)), axis=1)[
            :, :k
        ],
        "poor": np.argsort(-(relevance + rng.normal(scale=1.5, size=relevance.shape)), axis=1)[
            :, :k
        ],
    }
    truth = {
        name: float((examine * np.take_along_axis(relevance, t, axis=1)).sum(axis=1).mean() / k)
        for name, t in targets.items()
    }
    listener_of, position_of, artist_of, reward, propensity = [], [], [], [], []
    for u in range(n_listeners):
        for _ in range(lists_each):
            shown = sample_list(logging_scores[u], k, 1.0, rng)
            clicks = rng.random(k) < examine * relevance[u, shown.order]
            listener_of += [u] * k
            position_of += list(range(k))
            artist_of += shown.order.tolist()
            reward += clicks.astype(float).tolist()
            propensity += shown.marginal.tolist()
    listeners, positions = np.array(listener_of), np.array(position_of)
    estimates = {}
    for name, ranking in targets.items():
        match = (ranking[listeners, positions] == np.array(artist_of)).astype(float)
        estimates[name] = snips(np.array(reward), np.array(propensity), match)
        assert estimates[name] == pytest.approx(truth[name], rel=0.10), (name, truth, estimates)
        assert effective_sample_size(np.array(propensity), match) > 500
        per_listener = snips_by_listener(listeners, np.array(reward), np.array(propensity), match)
        ratio = per_listener["numerator"].sum() / per_listener["denominator"].sum()
        assert ratio == pytest.approx(estimates[name])
    assert sorted(estimates, key=estimates.get) == sorted(truth, key=truth.get)


def test_a_dominant_artist_shown_low_keeps_a_positive_propensity() -> None:
    """Few sampled prefixes nearly always hold the dominant artist: its estimate alone would be
    zero; the exact prefix's probability bounds it from below."""
    rng = np.random.default_rng(8)
    scores = np.array([100.0] + [0.0] * 49)
    shown_low = 0
    for _ in range(400):
        sample = sample_list(scores, 5, 1.0, rng, marginal_samples=8)
        assert ((sample.marginal > 0) & (sample.marginal <= 1)).all()
        assert (sample.marginal >= np.cumprod(sample.step) * (1 - 1e-12)).all()
        shown_low += int(sample.order[0] != 0 and 0 in sample.order)
    assert shown_low > 0  # the case happened


def test_sampling_scores_follow_the_list_when_a_rule_reordered_it() -> None:
    ranked = np.array([3.0, 2.0, 2.0, 0.5])
    assert sampling_scores(ranked).tolist() == ranked.tolist()
    reordered = np.array([3.0, 0.5, 2.0])  # e.g. discovery or diversity moved an artist up
    assert sampling_scores(reordered).tolist() == [0.0, -1.0, -2.0]


def recs_of(scores: list[float]) -> list[Rec]:
    return [Rec(i, f"artist {i}", s, 1, 1, None, ()) for i, s in enumerate(scores)]


def test_served_exploration_is_k_distinct_candidates_reproducible_from_the_request_id() -> None:
    candidates = recs_of(list(np.linspace(2.0, -1.0, exploration_depth(10))))
    assert exploration_depth(10) == 50 and exploration_depth(20) == 100
    lists = {}
    for i in range(200):
        recs, propensities = explore(candidates, 10, 1.0, f"req-{i}")
        artists = [r.artist for r in recs]
        assert len(artists) == len(set(artists)) == 10
        assert all(r in candidates for r in recs)
        assert len(propensities) == 10 and all(0 < p <= 1 for p in propensities)
        again, again_p = explore(candidates, 10, 1.0, f"req-{i}")
        assert again == recs and again_p == propensities
        lists[tuple(artists)] = propensities
    assert len(lists) > 150  # different requests, different lists
    short, p = explore(candidates[:4], 10, 1.0, "few")
    assert len(short) == 4 and len(p) == 4  # fewer candidates than k: all of them
    assert explore([], 10, 1.0, "none") == ([], ())
