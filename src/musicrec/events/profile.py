"""A listener's stored events turned into fold-in inputs for the served model.

Events the model was trained on are not counted twice: retraining records the highest event id
it read (``events_watermark`` in the manifest). An event at or below that watermark is skipped
when the model's training row of that user already holds the artist; it still counts when the
pair is absent there (the prepare split held it out for testing, or the k-core filter dropped
the user or artist), because the served model then knows nothing of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from musicrec.data.sources import normalize_name
from musicrec.events.schema import WATERMARK_KEY, interactions
from musicrec.recommender import Recommender

DAY_S = 86_400


@dataclass(frozen=True)
class Profile:
    """What a user's events add to the model's view of them."""

    items: np.ndarray  # item indices with new plays
    plays: np.ndarray  # plays of each
    banned: np.ndarray  # item indices never to recommend
    recent: np.ndarray  # items with any event inside the recent window
    events: int  # events read
    unknown_artists: int  # artists not in the served catalogue

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
    """Fold-in inputs of ``user_id`` from their ``events`` (columns of the event store)."""
    empty = np.empty(0, dtype=np.int64)
    if events.empty:
        return Profile(empty, np.empty(0, dtype=np.float32), empty, empty, 0, 0)
    now = time.time() if now is None else now
    catalogue = recommender.catalogue
    names = pd.unique(events["artist"])
    resolved = {name: catalogue.resolve(name) for name in names}
    item = events["artist"].map(resolved)
    known = item.notna()
    frame = events[known].assign(item=item[known].astype(np.int64))

    recent = empty
    if exclude_recent_days is not None and len(frame):
        since = now - exclude_recent_days * DAY_S
        recent = np.unique(frame.loc[frame["timestamp"] >= since, "item"].to_numpy(np.int64))

    position = int(recommender.user_ids.get_indexer(pd.Index([user_id]))[0])
    if position >= 0 and len(frame):
        in_train = np.isin(frame["item"].to_numpy(), recommender.train[position].indices)
        old = frame["id"].to_numpy() <= watermark(recommender)
        counted = frame[~(old & in_train) | (frame["kind"] == "ban")]
    else:
        counted = frame
    reduced = interactions(counted.drop(columns=["artist"]).rename(columns={"item": "artist"}))
    plays = reduced.plays
    unknown = len({normalize_name(str(n)) for n, i in resolved.items() if i is None})
    return Profile(
        items=plays["artist_key"].to_numpy(np.int64),
        plays=plays["plays"].to_numpy(np.float32),
        banned=np.unique(reduced.bans["artist_key"].to_numpy(np.int64)),
        recent=recent,
        events=len(events),
        unknown_artists=unknown,
    )
