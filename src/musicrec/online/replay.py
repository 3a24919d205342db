"""Off-policy replay: what a model's listen-through would have been, from exploration logs.

An arm that explores (``--temperature``) logs, with each shown artist, the probability that
its sampling put that artist at that position (:mod:`musicrec.online.explore`). Replaying a
target model over those logs: each logged impression is weighted by the target's probability
of showing the same artist at the same position (1 or 0 for a deterministic model) over the
logged propensity, and :func:`replay_estimate` returns the self-normalised inverse propensity
estimate of the target's listen-through: the share of its impressions at positions below ``k``
that would be listened to, by default the self-normalised rate at each position averaged over
positions (:func:`musicrec.online.explore.snips_by_position`; :data:`BY_POSITION`), else
pooled (:func:`musicrec.online.explore.snips`). Its interval is a bootstrap over listeners of
that estimate (:mod:`musicrec.stats`); the effective sample size (Kish) says how many logged
impressions the estimate really rests on.

Inverse propensity scoring can only weigh what the logging policy could show. An exploring
arm samples from its own top :func:`~musicrec.online.explore.exploration_depth` candidates,
so a target that lists artists outside them has positions no log can ever match, and the
self-normalised estimate silently leaves those positions out (it is then biased, usually
upward: what the logging model ranks high is what listeners play). ``support`` says how much
of the target's lists lay inside the logging arms' candidates (their models' rankings for the
logged listeners, without the events folded in at serving time): near 1 the estimate can be
trusted within its interval, well below 1 it cannot. Below :data:`MIN_SUPPORT` the estimate
says so (``trusted`` false, a ``warning``).

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
    snips_by_position,
)
from musicrec.online.readout import impression_rewards

Ranker = Callable[[str, int], Sequence[str] | None]  # listener, k -> artists (None: unknown)
# Below this support an estimate is flagged as not to be trusted. Measured with
# benchmarks/replay_defaults_lastfm2k.py (docs/online.md, "Off-policy replay"): targets with
# 88-100 % support replayed -1 % to +5 % high on average (14 % at worst), one with 79 %
# +6 % to +17 % (29 % at worst), less support more, up to +250 %.
MIN_SUPPORT = 0.85
# Average the per-position SNIPS rates (True) rather than pool all impressions: in the same
# benchmark it cut the upward bias of targets with partial support (e.g. 79 %: +14 % against
# +21 %; 88 %: largest error 11 % against 38 %) and left the logging model as it was.
BY_POSITION = True


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
    min_support: float = MIN_SUPPORT  # below it the estimate is flagged

    @property
    def trusted(self) -> bool:
        """Whether the target's lists lay inside the logging candidates enough to estimate
        them (unknown support: not trusted)."""
        return bool(self.support >= self.min_support) and bool(np.isfinite(self.value))

    @property
    def warning(self) -> str | None:
        """Why the estimate is not to be trusted, in one line; None when it is."""
        if self.trusted:
            return None
        if not np.isfinite(self.value):
            return "no logged impression matches the model's lists: nothing to estimate from"
        support = f"{self.support:.0%}" if np.isfinite(self.support) else "an unknown share"
        return (
            f"only {support} of the model's listed artists were among the logging arms' "
            f"candidates (below {self.min_support:.0%}): the estimate leaves the rest out and "
            "is biased, usually upward; do not trust it"
        )

    def to_dict(self) -> dict[str, float | int | bool | str | None]:
        out: dict[str, float | int | bool | str | None] = {
            k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in asdict(self).items()
        }
        return out | {"trusted": self.trusted, "warning": self.warning}


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
    by_position: bool = BY_POSITION,
) -> ReplayEstimate:
    """SNIPS estimate of the target's listen-through over ``logs`` (pure).

    ``logs``: one row per logged impression with ``listener``, ``position``, ``propensity``
    (in (0, 1]) and ``reward`` (1 when listened to); ``target``: the target's probability of
    showing each logged artist at its logged position. ``by_position``: the SNIPS rate at each
    position averaged over positions (:func:`~musicrec.online.explore.snips_by_position`),
    else pooled over all impressions (:func:`~musicrec.online.explore.snips`).
    """
    rewards = logs["reward"].to_numpy(dtype=np.float64)
    propensities = logs["propensity"].to_numpy(dtype=np.float64)
    listeners = logs["listener"].to_numpy(dtype=object)
    positions = logs["position"].to_numpy(dtype=np.int64) if by_position else None
    if positions is None:
        value = snips(rewards, propensities, target)
    else:
        value = snips_by_position(positions, rewards, propensities, target)
    sums = snips_by_listener(listeners, rewards, propensities, target, positions)
    sums = sums.assign(stratum=sums["position"] if positions is not None else 0)
    numerator, denominator = (
        sums.pivot_table(values=name, index="listener", columns="stratum", aggfunc="sum").fillna(
            0.0
        )
        for name in ("numerator", "denominator")
    )
    used = denominator.sum().to_numpy() > 0  # the strata the point estimate averages
    low = high = float("nan")
    if n_resamples > 0 and used.any():
        top = numerator.to_numpy(np.float32)[:, used]
        bottom = denominator.to_numpy(np.float32)[:, used]

        def ratio(counts: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                rates = (counts @ top) / (counts @ bottom)
                finite = np.isfinite(rates)
                return np.where(finite, rates, 0.0).sum(axis=1) / finite.sum(axis=1)

        (distribution,) = stats.bootstrap_distribution([ratio], len(top), n_resamples, seed)
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
        listeners=len(numerator),
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
    min_support: float = MIN_SUPPORT,
) -> ReplayEstimate:
    """Replay ``ranker`` over ``experiment`` 's logged exploration (impressions with a
    propensity, positions below ``k``), with the target's support in the logging arms'
    candidates (their models loaded by ``ranker_of``), flagged below ``min_support``."""
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
    support = logging_support(logged, experiment, lists, ranker_of)
    return replace(estimate, support=support, min_support=min_support)
