"""Exposure cool-down in serving: what a listener was shown, read from the impression log.

Every served list is logged (:mod:`musicrec.events.impressions`); an artist shown to a listener
``shows`` times since they last played it rests for ``days`` days (:mod:`musicrec.rules.cooldown`).
Per request this reads the listener's latest :data:`IMPRESSIONS_READ` impressions (one indexed
query); their plays are read only when some artist has reached ``shows`` shows, since a play
can only lower a count. The held-back set is part of the key of a kept answer
(:mod:`musicrec.serving.live`): an answer is reused only while the same artists rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from musicrec.events.impressions import ensure_tables, impressions_table
from musicrec.events.store import EventStore
from musicrec.rules import CoolDown, held_back
from musicrec.rules.cooldown import exposure_from_log
from musicrec.rules.inputs import Exposure
from musicrec.serving.recommender import Recommender

IMPRESSIONS_READ = 10_000  # a listener's latest impressions counted (bounds each request)


@dataclass(frozen=True)
class Resting:
    """A listener's exposure and the artists it holds back now (empty: nothing to apply)."""

    exposure: Exposure = field(default_factory=Exposure)
    held: tuple[int, ...] = ()


NOTHING = Resting()


def resting(
    store: EventStore,
    recommender: Recommender,
    user_id: str,
    policy: CoolDown | None,
    now: float,
    watermark: int = 0,
) -> Resting:
    """The artists ``user_id`` has been shown too often without a play, resting at ``now``."""
    if policy is None or not store.exists:
        return NOTHING
    ensure_tables(store)
    table = impressions_table
    query = (
        sa.select(table.c.artist, table.c.time)
        .where(table.c.listener == user_id)
        .order_by(table.c.time.desc())
        .limit(IMPRESSIONS_READ)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    if len(rows) < policy.shows:
        return NOTHING
    resolve = recommender.catalogue.resolve
    names = {name: resolve(name) for name, _ in rows}
    shown = [(names[name], at) for name, at in rows if names[name] is not None]
    items = np.array([i for i, _ in shown], dtype=np.int64)
    at = np.array([t for _, t in shown], dtype=np.float64)
    if not len(items) or np.bincount(items).max() < policy.shows:
        return NOTHING
    played, played_at = _plays(store, recommender, user_id, watermark)
    exposure = exposure_from_log(items, at, played, played_at)
    held = held_back(exposure, now, policy)
    return Resting(exposure, tuple(int(i) for i in held)) if len(held) else NOTHING


def _plays(
    store: EventStore, recommender: Recommender, user_id: str, watermark: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each played artist of ``user_id`` with the latest time of its events (a play resets)."""
    events = store.compacted_events(user_id, watermark)
    if events.empty:
        return np.empty(0, dtype=np.int64), np.empty(0)
    events = events[events["kind"] == "play"]
    resolve = recommender.catalogue.resolve
    found = [resolve(name) for name in events["artist"]]
    items = np.array([-1 if i is None else i for i in found], dtype=np.int64)
    known = items >= 0
    stamps = events["timestamp"].to_numpy(dtype=np.float64)
    return items[known].astype(np.int64), stamps[known]
