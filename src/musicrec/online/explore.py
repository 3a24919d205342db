"""Exploration: lists sampled Plackett-Luce style, their propensities, and SNIPS replay.

An arm that explores ranks its top candidates as usual, then samples the ``k`` artists it
shows without replacement, each next one with probability proportional to
``exp(z / temperature)`` among those left, where ``z`` is the candidate's score standardised
over the candidates (so one temperature means the same for every model kind, whatever its
score scale). A low temperature approaches the plain ranking; a high one a uniform shuffle.

Three propensities come with every sampled list:

- ``step[i]``: the probability of the artist at position ``i`` given the artists above it
  (exact); their product, :attr:`Exploration.propensity`, is the probability of the list.
- ``marginal[i]``: the probability that this artist is shown at position ``i`` at all,
  whatever is above it. This is what item-position inverse propensity scoring needs. It is
  computed exactly (:func:`exact_marginals`: an integral over the exponential race's time
  whose integrand is a Poisson-binomial probability, by the trapezoid rule in log time).
  :func:`position_marginals`, a Rao-Blackwellised Monte-Carlo estimate (the average over
  sampled prefixes of the exact probability of picking the artist next), was the default
  until a replay study showed its rare misses (a tiny estimate, a huge weight) swing a
  replayed estimate by 100 % and more (``benchmarks/replay_defaults_lastfm2k.py``); it is
  kept for comparison. Either is floored at the probability of the exact prefix drawn
  followed by the artist (a true lower bound), so a shown artist's inverse is finite.

:func:`snips` is the self-normalised inverse propensity estimate of a target model's
listen-through from logged impressions: each logged (position, artist, reward) is weighted by
the target's probability of showing that artist at that position over the logging
propensity, and the weighted rewards are divided by the sum of the weights. For a
deterministic target the numerator counts only impressions where the logged artist is the
one the target puts at that position. Under a position-based click model (a play depends
on the artist and its position) it estimates the target's plays per impression.
:func:`snips_by_listener` gives the per-listener sums that a bootstrap over listeners needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_LOG_WEIGHT = -600.0  # exp() stays a positive float64: every candidate keeps a chance
MARGINAL_SAMPLES = 256  # the Monte-Carlo marginals' former default, kept for comparison
# A list of k explores among its arm's best max(5 k, 50) listable artists: deep enough that a
# temperature of 1 reaches past the top k, shallow enough to stay among plausible artists.
# Only artists in that pool can ever be logged: the support a replayed model needs.
DEPTH_FACTOR = 5
MIN_DEPTH = 50


def exploration_depth(k: int) -> int:
    """How many of an arm's best listable artists an exploring list of ``k`` samples from."""
    return max(DEPTH_FACTOR * int(k), MIN_DEPTH)


@dataclass(frozen=True)
class Exploration:
    """A sampled list: candidate indices in shown order and their propensities."""

    order: np.ndarray  # int64, indices into the candidates, length k
    step: np.ndarray  # float64, P(artist at i | artists above it)
    marginal: np.ndarray  # float64, P(this artist is shown at position i)

    @property
    def propensity(self) -> float:
        """Probability of showing exactly this list in this order."""
        return float(np.prod(self.step))


def log_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Plackett-Luce log-weights of candidates: standardised scores over the temperature."""
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, not {temperature}")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError("scores must be a non-empty 1-d array of finite numbers")
    spread = float(values.std())
    z = (values - values.max()) / (spread if spread > 0 else 1.0)
    return np.maximum(z / temperature, MIN_LOG_WEIGHT)


def _race(weights: np.ndarray, k: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Plackett-Luce orderings of length ``k``, shape (n, k).

    The exponential race (equivalent to Gumbel-top-k): each candidate draws an arrival time
    ``Exp(1) / weight``; the first ``k`` arrivals in order are a Plackett-Luce sample.
    """
    keys = rng.standard_exponential(size=(n, len(weights))) / weights[None, :]
    if k < len(weights):
        top = np.argpartition(keys, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(len(weights)), (n, len(weights))).copy()
    ranked = np.take_along_axis(keys, top, axis=1)
    return np.take_along_axis(top, np.argsort(ranked, axis=1), axis=1)


def position_marginals(
    log_w: np.ndarray, order: np.ndarray, rng: np.random.Generator, n: int = MARGINAL_SAMPLES
) -> np.ndarray:
    """P(``order[i]`` is shown at position ``i``) for every ``i`` (Rao-Blackwellised).

    For each of ``n`` sampled prefixes, the exact probability of drawing ``order[i]`` right
    after the prefix's first ``i`` artists (zero if they hold it); averaged over prefixes.
    """
    k = len(order)
    weights = np.exp(log_w)
    total = weights.sum()
    marginal = np.empty(k, dtype=np.float64)
    marginal[0] = weights[order[0]] / total
    if k == 1:
        return marginal
    prefixes = _race(weights, k - 1, rng, n)  # (n, k-1)
    removed = np.zeros((n, k), dtype=np.float64)
    removed[:, 1:] = np.cumsum(weights[prefixes], axis=1)
    # where each shown artist sits in each sampled prefix (k-1 when it is not in it)
    where = np.full((n, len(weights)), k - 1, dtype=np.int64)
    where[np.arange(n)[:, None], prefixes] = np.arange(k - 1)[None, :]
    rank = where[:, order]  # (n, k)
    positions = np.arange(k)
    free = rank >= positions[None, :]  # not among the first i of the prefix
    remaining = np.maximum(total - removed, weights[order][None, :])
    chance = np.where(free, weights[order][None, :] / remaining, 0.0)
    marginal[1:] = chance[:, 1:].mean(axis=0)
    return marginal


# Exact marginals: the integral over the exponential race's time, on a grid in log time.
QUADRATURE_STEP = 0.25  # trapezoid step in log time: the error is ~exp(-pi^2 / (2 step))
QUADRATURE_SPAN = (-40.0, 4.0)  # log(w t) range; outside, the integrand is below 1e-17


def position_matrix(log_w: np.ndarray, artists: np.ndarray, k: int) -> np.ndarray:
    """P(``artists[r]`` is shown at position ``i``) for every row ``r`` and ``i < k``, exact to
    the quadrature's error (relative 1e-7 and better, tested): shape ``(len(artists), k)``.

    In the exponential race each candidate ``j`` arrives at ``T_j ~ Exp(w_j)``; artist ``a``
    is shown at position ``i`` when exactly ``i`` others arrive before it:
    ``P = E[P(exactly i of the others arrive before T_a)]``, an integral over ``T_a`` whose
    integrand is a Poisson-binomial probability (each other ``j`` arrived with probability
    ``1 - exp(-w_j t)``), computed by the usual recursion over the candidates. In log time
    the integrand is smooth and decays like ``exp(s)`` on one side and ``exp(-exp(s))`` on the
    other, where the trapezoid rule converges geometrically.
    """
    weights = np.exp(np.asarray(log_w, dtype=np.float64))
    artists = np.asarray(artists, dtype=np.int64)
    s = np.arange(QUADRATURE_SPAN[0], QUADRATURE_SPAN[1] + QUADRATURE_STEP / 2, QUADRATURE_STEP)
    density = np.exp(s - np.exp(s)) * QUADRATURE_STEP  # w_a t exp(-w_a t) ds, t = e^s / w_a
    times = np.exp(s)[None, :] / weights[artists][:, None]  # (rows, m)
    counts = np.zeros((len(artists), len(s), k), dtype=np.float64)  # P(c others arrived)
    counts[:, :, 0] = 1.0
    for j, weight in enumerate(weights):
        arrived = -np.expm1(-weight * times)  # (rows, m)
        arrived[artists == j] = 0.0  # an artist does not race itself
        counts[:, :, 1:] = counts[:, :, 1:] * (1 - arrived)[:, :, None] + (
            counts[:, :, :-1] * arrived[:, :, None]
        )
        counts[:, :, 0] *= 1 - arrived
    return np.clip(np.einsum("rmc,m->rc", counts, density), 0.0, 1.0)


def exact_marginals(log_w: np.ndarray, order: np.ndarray) -> np.ndarray:
    """P(``order[i]`` is shown at position ``i``) for every ``i`` (:func:`position_matrix`)."""
    order = np.asarray(order, dtype=np.int64)
    if len(order) == 0:
        return np.zeros(0)
    return position_matrix(log_w, order, len(order))[np.arange(len(order)), np.arange(len(order))]


def sample_list(
    scores: np.ndarray,
    k: int,
    temperature: float,
    rng: np.random.Generator,
    marginal_samples: int | None = None,
) -> Exploration:
    """Sample ``k`` of the candidates (``min(k, len(scores))``) with their propensities.

    The marginals are exact (:func:`exact_marginals`) unless ``marginal_samples`` asks for
    the Monte-Carlo estimate over that many prefixes (:func:`position_marginals`).
    """
    log_w = log_weights(scores, temperature)
    k = min(int(k), len(log_w))
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    weights = np.exp(log_w)  # the largest is 1: log_w <= 0
    order = _race(weights, k, rng, 1)[0].astype(np.int64)
    before = np.concatenate(([0.0], np.cumsum(weights[order])[:-1]))
    step = weights[order] / np.maximum(weights.sum() - before, weights[order])
    if marginal_samples is None:
        marginal = exact_marginals(log_w, order)
    else:
        marginal = position_marginals(log_w, order, rng, marginal_samples)
    # A Monte-Carlo estimate can miss a shown artist in every sampled prefix (a dominant
    # artist shown low), and the quadrature underflows for an artist tens of orders of
    # magnitude below the others; the probability of the exact prefix drawn, then this
    # artist, is a true lower bound of its marginal, so the logged propensity is never zero.
    floor = np.maximum(np.cumprod(step), np.finfo(np.float64).tiny)
    marginal = np.clip(np.maximum(marginal, floor), None, 1.0)
    return Exploration(order=order, step=step, marginal=marginal)


def sampling_scores(scores: np.ndarray) -> np.ndarray:
    """What a served list is sampled by: its scores when they fall along the list (the list is
    the model's ranking), else minus the position (a rule re-ranked it: its order stands)."""
    values = np.asarray(scores, dtype=np.float64)
    if np.isfinite(values).all() and (np.diff(values) <= 0).all():
        return values
    return -np.arange(len(values), dtype=np.float64)


def _weights(propensities: np.ndarray, target: np.ndarray) -> np.ndarray:
    logged = np.asarray(propensities, dtype=np.float64)
    if len(logged) and not ((logged > 0) & (logged <= 1)).all():
        raise ValueError("logged propensities must be in (0, 1]")
    target = np.asarray(target, dtype=np.float64)
    if target.shape != logged.shape:
        raise ValueError("one target probability per logged impression")
    return target / logged


def snips(rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray) -> float:
    """Self-normalised IPS estimate of the target's mean reward per impression.

    ``target``: the target's probability of showing each logged artist at its logged
    position (0 or 1 for a deterministic model). NaN when no logged impression matches.
    """
    weights = _weights(propensities, target)
    rewards = np.asarray(rewards, dtype=np.float64)
    denominator = weights.sum()
    return float((weights * rewards).sum() / denominator) if denominator > 0 else float("nan")


def snips_by_position(
    positions: np.ndarray, rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray
) -> float:
    """The SNIPS rate at each position, averaged over the positions any impression matches.

    A target's listen-through is the mean over its positions; pooled :func:`snips` weighs
    each position by how much of the log matched it there, which drifts from the target's
    even mix where matches are scarce (low positions, little support). NaN when nothing
    matches.
    """
    weights = _weights(propensities, target)
    frame = pd.DataFrame(
        {
            "position": np.asarray(positions, dtype=np.int64),
            "numerator": weights * np.asarray(rewards, dtype=np.float64),
            "denominator": weights,
        }
    )
    sums = frame.groupby("position").sum()
    sums = sums[sums["denominator"] > 0]
    return float((sums["numerator"] / sums["denominator"]).mean()) if len(sums) else float("nan")


def effective_sample_size(propensities: np.ndarray, target: np.ndarray) -> float:
    """Kish's effective number of impressions behind a SNIPS estimate."""
    weights = _weights(propensities, target)
    squares = float((weights**2).sum())
    return float(weights.sum() ** 2 / squares) if squares > 0 else 0.0


def snips_by_listener(
    listeners: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    target: np.ndarray,
    positions: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per listener (and per position, given ``positions``): the weighted-reward sum and the
    weight sum (``numerator``, ``denominator``).

    The SNIPS estimate is ``numerator.sum() / denominator.sum()`` (per position, for
    :func:`snips_by_position`); resampling listeners and recomputing it gives its interval.
    """
    weights = _weights(propensities, target)
    frame = pd.DataFrame(
        {
            "listener": np.asarray(listeners, dtype=object),
            "numerator": weights * np.asarray(rewards, dtype=np.float64),
            "denominator": weights,
        }
    )
    keys = ["listener"]
    if positions is not None:
        frame.insert(1, "position", np.asarray(positions, dtype=np.int64))
        keys.append("position")
    return frame.groupby(keys, sort=True).sum().reset_index()
