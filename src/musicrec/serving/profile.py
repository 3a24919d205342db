"""A listener's stored events turned into fold-in inputs for the served model.

Events the model was trained on are not counted twice: retraining records the highest event id
it read (``events_watermark`` in the manifest). An event at or below that watermark is skipped
when the model's training row of that user already holds the artist; it still counts when the
pair is absent there (the prepare split held it out for testing, or the k-core filter dropped
the user or artist), because the served model then knows nothing of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from musicrec.events.schema import WATERMARK_KEY, play_weights
from musicrec.rules import ListenerState
from musicrec.serving.recommender import Recommender
from musicrec.text import normalize_name

DAY_S = 86_400


@dataclass(frozen=True)
class Profile:
    """What a user's events add to the model's view of them."""

    items: np.ndarray  # item indices with new plays
    plays: np.ndarray  # plays of each
    banned: np.ndarray  # item indices banned at the profile's time
    recent: np.ndarray  # items with any event inside the recent window
    events: int  # events read
    unknown_artists: int  # artists not in the served catalogue
    listener: ListenerState = field(
        default_factory=ListenerState
    )  # bans with their until, last event per artist

    @property
    def empty(self) -> bool:
        return not (len(self.items) or len(self.banned) or len(self.recent))


def watermark(recommender: Recommender) -> int:
    """Highest event id already inside the served model (0 for a model without events)."""
    return int(recommender.manifest.get(WATERMARK_KEY) or 0)


def build_profile(
    recommender: Recommender,
    events: pd.DataFrame,
    user_id: str,
    exclude_recent_days: float | None = None,
    now: float | None = None,
) -> Profile:
    """Fold-in inputs of ``user_id`` from their ``events`` (columns of the event store).

    Plain arrays, no grouping frames: this runs on every request of a listener with events.
    """
    empty = np.empty(0, dtype=np.int64)
    if events.empty:
        return Profile(empty, np.empty(0, dtype=np.float32), empty, empty, 0, 0, ListenerState())
    now = time.time() if now is None else now
    resolve = recommender.catalogue.resolve
    names = events["artist"].tolist()
    resolved = {name: resolve(name) for name in set(names)}
    item = np.array([-1 if resolved[n] is None else resolved[n] for n in names], dtype=np.int64)
    known = item >= 0
    item = item[known]
    kinds = events["kind"].to_numpy(dtype=object)[known]
    ids = events["id"].to_numpy(dtype=np.int64)[known]
    stamps = events["timestamp"].to_numpy(dtype=np.int64)[known]
    weights = play_weights(kinds, events["plays"].to_numpy()[known])

    listener = _listener(events, known, item, kinds, stamps)
    recent = listener.recent(exclude_recent_days, now)
    banned = listener.active_bans(now)
    counted = weights > 0
    position = int(recommender.user_ids.get_indexer(pd.Index([user_id]))[0])
    if position >= 0:  # skip what the model already learnt from this user's events
        in_model = (ids <= watermark(recommender)) & np.isin(
            item, recommender.train[position].indices
        )
        counted &= ~in_model
    counted &= ~np.isin(item, banned)
    items, where = np.unique(item[counted], return_inverse=True)
    plays = np.bincount(where, weights=weights[counted], minlength=len(items))
    unknown = len({normalize_name(str(n)) for n, i in resolved.items() if i is None})
    return Profile(
        items=items.astype(np.int64),
        plays=plays.astype(np.float32),
        banned=banned,
        recent=recent,
        events=len(events),
        unknown_artists=unknown,
        listener=listener,
    )


def _listener(
    events: pd.DataFrame,
    known: np.ndarray,
    item: np.ndarray,
    kinds: np.ndarray,
    stamps: np.ndarray,
) -> ListenerState:
    """What the rule chain reads of the events: every ban with its ``until`` (none: permanent)
    and each artist's latest event (``exclude_recent_days``)."""
    is_ban = kinds == "ban"
    until = None
    if "until" in events:
        values = pd.to_numeric(events["until"], errors="coerce").to_numpy(dtype=np.float64)
        until = np.where(np.isnan(values[known][is_ban]), np.inf, values[known][is_ban])
    last, where = np.unique(item, return_inverse=True)
    latest = np.full(len(last), -np.inf)
    np.maximum.at(latest, where, stamps.astype(np.float64))
    return ListenerState.of(
        bans=item[is_ban], ban_until=until, last_event=last, last_event_at=latest
    )
