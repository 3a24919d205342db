"""Off-policy replay: what a model's listen-through would have been, from exploration logs.

An arm that explores (``--temperature``) logs, with each shown artist, the probability that
its sampling put that artist at that position (:mod:`musicrec.online.explore`). Replaying a
target model over those logs: each logged impression is weighted by the target's probability
of showing the same artist at the same position (1 or 0 for a deterministic model) over the
logged propensity, and :func:`replay_estimate` returns the self-normalised inverse propensity
estimate (:func:`musicrec.online.explore.snips`) of the target's listen-through: the share of
its impressions at positions below ``k`` that would be listened to. Its interval is a
bootstrap over listeners of that ratio (:mod:`musicrec.stats`); the effective sample size
(Kish) says how many logged impressions the estimate really rests on.

Inverse propensity scoring can only weigh what the logging policy could show. An exploring
arm samples from its own top :func:`~musicrec.online.explore.exploration_depth` candidates,
so a target that lists artists outside them has positions no log can ever match, and the
self-normalised estimate silently leaves those positions out (it is then biased, usually
upward: what the logging model ranks high is what listeners play). ``support`` says how much
of the target's lists lay inside the logging arms' candidates (their models' rankings for the
logged listeners, without the events folded in at serving time): near 1 the estimate can be
trusted within its interval, well below 1 it cannot.

The model is loaded in one place, :func:`model_ranker`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from musicrec import stats
from musicrec.errors import ExperimentError, MusicrecError, NotFoundError
from musicrec.events.outcomes import ATTRIBUTION_WINDOW_S, artist_key
from musicrec.events.store import EventStore
from musicrec.online.experiments import Experiment
from musicrec.online.explore import (
    effective_sample_size,
    exploration_depth,
    snips,
    snips_by_listener,
)
from musicrec.online.readout import impression_rewards

Ranker = Callable[[str, int], Sequence[str] | None]  # listener, k -> artists (None: unknown)


@dataclass(frozen=True)
class ReplayEstimate:
    """A target's estimated listen-through from logs, with how much it rests on."""

    value: float
    low: float
    high: float
    logged_rate: float  # the logging policy's own listen-through over the same impressions
    impressions: int  # logged impressions with a propensity
    matched: int  # of those, impressions the target would have shown the same way
    effective_size: float  # Kish's effective number of impressions
    listeners: int
    listeners_unknown: int  # listeners the target could not rank (weight 0)
    support: float = float("nan")  # share of the target's listed artists the logging could show

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in asdict(self).items()
        }


def deterministic_target(logs: pd.DataFrame, lists: Mapping[str, Sequence[str]]) -> np.ndarray:
    """1.0 where ``lists[listener][position]`` is the logged artist, else 0.0.

    Artist names compare as attribution compares them (case and runs of whitespace aside).
    """
    if logs.empty:
        return np.zeros(0)
    keys = artist_key(logs["artist"]).to_numpy()
    listeners = logs["listener"].to_numpy(dtype=object)
    positions = logs["position"].to_numpy(dtype=np.int64)
    folded = {
        listener: artist_key(pd.Series(list(artists), dtype=object)).tolist()
        for listener, artists in lists.items()
    }
    target = np.zeros(len(logs))
    for row, (listener, position, key) in enumerate(zip(listeners, positions, keys, strict=True)):
        shown = folded.get(listener)
        if shown is not None and position < len(shown) and shown[position] == key:
            target[row] = 1.0
    return target


def replay_estimate(
    logs: pd.DataFrame,
    target: np.ndarray,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
    listeners_unknown: int = 0,
) -> ReplayEstimate:
    """SNIPS estimate of the target's listen-through over ``logs`` (pure).

    ``logs``: one row per logged impression with ``listener``, ``propensity`` (in (0, 1])
    and ``reward`` (1 when listened to); ``target``: the target's probability of showing each
    logged artist at its logged position.
    """
    rewards = logs["reward"].to_numpy(dtype=np.float64)
    propensities = logs["propensity"].to_numpy(dtype=np.float64)
    value = snips(rewards, propensities, target)
    per_listener = snips_by_listener(
        logs["listener"].to_numpy(dtype=object), rewards, propensities, target
    )
    low = high = float("nan")
    if n_resamples > 0 and len(per_listener) and per_listener["denominator"].sum() > 0:
        numerator = per_listener["numerator"].to_numpy(np.float32)
        denominator = per_listener["denominator"].to_numpy(np.float32)

        def ratio(counts: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return (counts @ numerator) / (counts @ denominator)

        (distribution,) = stats.bootstrap_distribution(
            [ratio], len(per_listener), n_resamples, seed
        )
        lows, highs = stats.percentile_interval(distribution)
        low, high = float(lows[0]), float(highs[0])
    return ReplayEstimate(
        value=value,
        low=low,
        high=high,
        logged_rate=float(rewards.mean()) if len(rewards) else float("nan"),
        impressions=len(logs),
        matched=int((np.asarray(target) > 0).sum()),
        effective_size=effective_sample_size(propensities, target),
        listeners=len(per_listener),
        listeners_unknown=listeners_unknown,
    )


def model_ranker(model: str) -> Ranker:
    """A ranker over a model reference (artifact path or ``models:/`` URI).

    The one place replay loads a model: the serving runtime's loader of today.
    """
    from musicrec.online.arms import REGISTRY_SCHEME
    from musicrec.serving.recommender import Recommender

    try:
        if model.startswith(REGISTRY_SCHEME):
            from musicrec.tracking.registry import resolve_model

            path = Path(resolve_model(model))
        else:
            path = Path(model)
        recommender = Recommender.load(path)
    except (MusicrecError, OSError, ValueError) as exc:
        raise ExperimentError(f"model {model} does not load: {exc}") from exc

    def rank(listener: str, k: int) -> Sequence[str] | None:
        try:
            return [rec.artist for rec in recommender.recommend_user(listener, k)]
        except NotFoundError:
            return None

    return rank


def logging_support(
    logs: pd.DataFrame,
    experiment: Experiment,
    lists: Mapping[str, Sequence[str]],
    ranker_of: Callable[[str], Ranker] = model_ranker,
) -> float:
    """Share of the target's listed artists (``lists``) that were among the candidates their
    listener's logging arm explored from; NaN when no arm's candidates are known.

    ``logs``: every logged impression with a propensity (all positions: a list's length sets
    the depth its arm sampled from); ``ranker_of`` loads an arm's model.
    """
    inside = total = 0
    for arm in experiment.arms:
        rows = logs[logs["arm"] == arm.name]
        if rows.empty:
            continue
        depth = exploration_depth(int(rows["position"].max()) + 1)
        rank = ranker_of(arm.model)
        for listener in pd.unique(rows["listener"].to_numpy(dtype=object)):
            target = lists.get(listener)
            candidates = rank(str(listener), depth)
            if not target or candidates is None:
                continue
            pool = set(artist_key(pd.Series(list(candidates), dtype=object)))
            keys = artist_key(pd.Series(list(target), dtype=object))
            inside += int(keys.isin(pool).sum())
            total += len(keys)
    return inside / total if total else float("nan")


def replay(
    store: EventStore,
    experiment: Experiment,
    ranker: Ranker,
    k: int | None = None,
    n_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
    window_s: float = ATTRIBUTION_WINDOW_S,
    ranker_of: Callable[[str], Ranker] = model_ranker,
) -> ReplayEstimate:
    """Replay ``ranker`` over ``experiment`` 's logged exploration (impressions with a
    propensity, positions below ``k``), with the target's support in the logging arms'
    candidates (their models loaded by ``ranker_of``)."""
    logged = impression_rewards(store, experiment, None, window_s)
    logged = logged[logged["propensity"].notna()].reset_index(drop=True)
    logs = logged if k is None else logged[logged["position"] < k].reset_index(drop=True)
    if logs.empty:
        raise ExperimentError(
            f"experiment {experiment.name!r} logged no propensities: start it with "
            "--temperature so its arms explore"
        )
    depth = int(logs["position"].max()) + 1 if k is None else k
    lists: dict[str, Sequence[str]] = {}
    unknown = 0
    for listener in pd.unique(logs["listener"].to_numpy(dtype=object)):
        ranked = ranker(str(listener), depth)
        if ranked is None:
            unknown += 1
        else:
            lists[listener] = ranked
    target = deterministic_target(logs, lists)
    estimate = replay_estimate(logs, target, n_resamples, seed, listeners_unknown=unknown)
    return replace(estimate, support=logging_support(logged, experiment, lists, ranker_of))
