"""What a readout is computed from: per-arm, per-listener counts out of the event store.

The listener is the unit of every experiment (assignment is per listener, and one listener's
lists are not independent of each other), so everything here comes as aligned per-listener
arrays: intervals and tests resample or compare listeners, never impressions.

- :func:`arm_counts` (ab mode): per arm and listener, the impressions shown at positions
  below ``k``, how many of them were listened to (at least one play or love attributed),
  and the play, skip, love and ban events attributed to them.
- :func:`interleave_preferences` (interleave mode): per listener, the plays and loves
  credited to each team, and so wins, losses and ties.

Attribution follows :mod:`musicrec.events.outcomes` (request id, else the window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from musicrec.events.impressions import read_impressions
from musicrec.events.outcomes import ATTRIBUTION_WINDOW_S, experiment_outcomes
from musicrec.events.store import EventStore
from musicrec.online.experiments import Experiment
from musicrec.online.interleave import Preferences, preferences

LISTENED_KINDS = ("play", "love")
COUNTED_KINDS = ("play", "skip", "love", "ban")


@dataclass(frozen=True)
class ArmCounts:
    """One arm's counts, one entry per listener who was shown at least one list."""

    arm: str
    listeners: np.ndarray  # object
    impressions: np.ndarray  # int64 from here on
    listened: np.ndarray
    plays: np.ndarray
    skips: np.ndarray
    loves: np.ndarray
    bans: np.ndarray

    def totals(self) -> dict[str, int]:
        """Sums over listeners (counts only; rates and intervals belong to the report)."""
        return {
            "listeners": len(self.listeners),
            "impressions": int(self.impressions.sum()),
            "listened": int(self.listened.sum()),
            "plays": int(self.plays.sum()),
            "skips": int(self.skips.sum()),
            "loves": int(self.loves.sum()),
            "bans": int(self.bans.sum()),
        }


def _shown(store: EventStore, experiment: Experiment, k: int | None) -> pd.DataFrame:
    shown = read_impressions(store, experiment=experiment.name)
    return shown[shown["position"] < k] if k is not None else shown


def _outcomes(
    store: EventStore, experiment: Experiment, shown: pd.DataFrame, window_s: float
) -> pd.DataFrame:
    outcomes = experiment_outcomes(store, experiment.name, window_s)
    return outcomes[outcomes["impression_id"].isin(shown["id"])]


def arm_counts(
    store: EventStore,
    experiment: Experiment,
    k: int | None = None,
    window_s: float = ATTRIBUTION_WINDOW_S,
) -> dict[str, ArmCounts]:
    """Per arm (in the experiment's order), per-listener counts of an ab experiment."""
    shown = _shown(store, experiment, k)
    outcomes = _outcomes(store, experiment, shown, window_s)
    result: dict[str, ArmCounts] = {}
    for arm in experiment.arms:
        arm_shown = shown[shown["arm"] == arm.name]
        ids = pd.Index(pd.unique(arm_shown["listener"].to_numpy(dtype=object)), dtype=object)
        arm_out = outcomes[outcomes["arm"] == arm.name]

        def per_listener(frame: pd.DataFrame, ids: pd.Index = ids) -> np.ndarray:
            counts = frame["listener"].value_counts()
            return counts.reindex(ids, fill_value=0).to_numpy(dtype=np.int64)

        listened = arm_out[arm_out["kind"].isin(LISTENED_KINDS)].drop_duplicates("impression_id")
        by_kind = {kind: per_listener(arm_out[arm_out["kind"] == kind]) for kind in COUNTED_KINDS}
        result[arm.name] = ArmCounts(
            arm=arm.name,
            listeners=ids.to_numpy(),
            impressions=per_listener(arm_shown),
            listened=per_listener(listened),
            plays=by_kind["play"],
            skips=by_kind["skip"],
            loves=by_kind["love"],
            bans=by_kind["ban"],
        )
    return result


def interleave_preferences(
    store: EventStore,
    experiment: Experiment,
    k: int | None = None,
    window_s: float = ATTRIBUTION_WINDOW_S,
) -> Preferences:
    """Per listener of an interleave experiment: credit per team (plays and loves)."""
    shown = _shown(store, experiment, k)
    outcomes = _outcomes(store, experiment, shown, window_s)
    credited = outcomes[outcomes["kind"].isin(LISTENED_KINDS)]
    frame = pd.DataFrame(
        {"listener": credited["listener"].to_numpy(), "team": credited["arm"].to_numpy()}
    )
    return preferences(frame, experiment.arms[0].name, shown["listener"].to_numpy(dtype=object))


def impression_rewards(
    store: EventStore,
    experiment: Experiment,
    k: int | None = None,
    window_s: float = ATTRIBUTION_WINDOW_S,
) -> pd.DataFrame:
    """The experiment's impressions (positions below ``k``) with ``reward``: 1 when the
    impression was listened to (a play or love attributed), else 0. Off-policy replay's logs."""
    shown = _shown(store, experiment, k)
    outcomes = _outcomes(store, experiment, shown, window_s)
    listened = outcomes.loc[outcomes["kind"].isin(LISTENED_KINDS), "impression_id"]
    reward = shown["id"].isin(set(listened.dropna().astype(np.int64))).astype(np.int64)
    return shown.assign(reward=reward.to_numpy()).reset_index(drop=True)


def report_counts(
    store: EventStore, experiment: Experiment, k: int | None = None
) -> dict[str, Any]:
    """What a readout can say from counts alone: per-arm totals, or interleave tallies."""
    report: dict[str, Any] = {"experiment": experiment.to_dict(), "k": k}
    if experiment.mode == "interleave":
        prefs = interleave_preferences(store, experiment, k)
        first, second = (arm.name for arm in experiment.arms)
        report["interleave"] = {
            "listeners": len(prefs.listeners),
            f"{first}_credit": int(prefs.first.sum()),
            f"{second}_credit": int(prefs.second.sum()),
            "wins": prefs.wins,
            "losses": prefs.losses,
            "ties": prefs.ties,
        }
    else:
        counts = arm_counts(store, experiment, k)
        report["arms"] = {name: c.totals() for name, c in counts.items()}
    return report
