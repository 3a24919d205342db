"""Each listener's events aggregated per artist, updated in the transaction that stores them.

Serving folds a listener's stored events into every one of their recommendations. Reading and
re-aggregating the events on each request made that cost grow with the listener's events; the
store instead keeps one row per (listener, artist, epoch) in ``listener_artists``: the summed
play weight, the number of bans and of events, the latest timestamp, and the ids of the first
and last event with plays. A read is one indexed query over the listener's artists.

**Epochs.** The fold-in skips an event at or below the served model's watermark when the
model's training row already holds its artist (see :mod:`musicrec.serving.profile`), so the
aggregate must tell plays before a watermark from plays after it. Retraining asks the store for
its watermark through :meth:`~musicrec.events.store.EventStore.training_watermark`, which also
makes it the current epoch: events stored afterwards go to new rows. For a model with
watermark ``W`` a row is wholly before it when ``play_max_id <= W``, wholly after it when
``play_min_id > W``; a row that spans ``W`` (a model whose watermark is no epoch boundary, such
as one trained before the store was upgraded) is split by reading that artist's events after
``W``: exact in every case, one short query per such artist.

:func:`compacted_events` returns what the fold-in needs in the shape of the listener's events,
so the profile is built the same way from either: per artist at most one play row before the
watermark and one after it (with the summed weight as ``plays`` and a real id of that side), a
ban row if the listener banned it, and a skip row for an artist with neither; every row carries
the artist's latest timestamp, so a recency filter sees the artist exactly when any of its
events is recent.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from musicrec.events.schema import Event, play_weights
from musicrec.events.tables import FOREVER, events_table, listener_artists, meta_value, set_meta

EPOCH_KEY = "epoch"

_c = listener_artists.c
_ROWS = (  # built once: this query runs on every recommendation request of a listener
    sa.select(
        _c.artist,
        _c.plays,
        _c.bans,
        _c.last_timestamp,
        _c.play_min_id,
        _c.play_max_id,
        _c.ban_until,
    )
    .where(_c.user_id == sa.bindparam("user_id"))
    .order_by(_c.last_id.desc())
    .limit(sa.bindparam("limit"))
)
_AFTER = sa.select(events_table.c.kind, events_table.c.plays).where(
    events_table.c.user_id == sa.bindparam("user_id"),
    events_table.c.artist == sa.bindparam("artist"),
    events_table.c.id > sa.bindparam("after"),
    events_table.c.id <= sa.bindparam("upto"),
)


_VERSION = sa.select(sa.func.max(_c.last_id)).where(_c.user_id == sa.bindparam("user_id"))


def listener_version(conn: sa.Connection, user_id: str) -> int:
    """The id of the listener's newest event (0 without any): changes with every new event."""
    return int(conn.execute(_VERSION, {"user_id": user_id}).scalar() or 0)


def current_epoch(conn: sa.Connection) -> int:
    return meta_value(conn, EPOCH_KEY) or 0


def advance_epoch(conn: sa.Connection) -> int:
    """The highest stored id, made the current epoch (in the caller's locked transaction)."""
    watermark = int(conn.execute(sa.select(sa.func.max(events_table.c.id))).scalar() or 0)
    if watermark != current_epoch(conn):
        set_meta(conn, EPOCH_KEY, watermark)
    return watermark


@functools.cache
def _upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding a group's aggregates to the stored ones."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"listener state needs SQLite or PostgreSQL, not {dialect}")
    greatest = sa.func.greatest if dialect == "postgresql" else sa.func.max
    least = sa.func.least if dialect == "postgresql" else sa.func.min
    statement = insert(listener_artists)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[_c.user_id, _c.artist, _c.epoch],
        set_={
            "plays": _c.plays + new.plays,
            "bans": _c.bans + new.bans,
            "events": _c.events + new.events,
            "last_timestamp": greatest(_c.last_timestamp, new.last_timestamp),
            "last_id": greatest(_c.last_id, new.last_id),
            # NULL (no plays yet) on either side: SQLite's min/max give NULL, hence coalesce.
            "play_min_id": sa.func.coalesce(
                least(_c.play_min_id, new.play_min_id), _c.play_min_id, new.play_min_id
            ),
            "play_max_id": sa.func.coalesce(
                greatest(_c.play_max_id, new.play_max_id), _c.play_max_id, new.play_max_id
            ),
            "ban_until": sa.func.coalesce(
                greatest(_c.ban_until, new.ban_until), _c.ban_until, new.ban_until
            ),
        },
    )


def accumulate(
    conn: sa.Connection, events: Sequence[Event], ids: Sequence[int], epoch: int
) -> None:
    """Add newly stored ``events`` (with their ``ids``) to their listeners' rows of ``epoch``."""
    if not events:
        return
    weights = play_weights(
        np.array([e.kind for e in events], dtype=object), np.array([e.plays for e in events])
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for event, event_id, weight in zip(events, ids, weights.tolist(), strict=True):
        row = rows.get((event.user_id, event.artist))
        if row is None:
            row = rows[(event.user_id, event.artist)] = {
                "user_id": event.user_id,
                "artist": event.artist,
                "epoch": epoch,
                "plays": 0.0,
                "bans": 0,
                "events": 0,
                "last_timestamp": event.timestamp,
                "last_id": event_id,
                "play_min_id": None,
                "play_max_id": None,
                "ban_until": None,
            }
        row["events"] += 1
        if event.kind == "ban":
            row["bans"] += 1
            until = FOREVER if event.until is None else event.until
            row["ban_until"] = max(row["ban_until"] or until, until)
        row["last_timestamp"] = max(row["last_timestamp"], event.timestamp)
        row["last_id"] = max(row["last_id"], event_id)
        if weight > 0:
            row["plays"] += weight
            low, high = row["play_min_id"], row["play_max_id"]
            row["play_min_id"] = event_id if low is None else min(low, event_id)
            row["play_max_id"] = event_id if high is None else max(high, event_id)
    # Rows in key order: concurrent writers (PostgreSQL) then lock them in the same order.
    conn.execute(_upsert(conn.dialect.name), [rows[key] for key in sorted(rows)])


def _plays_after(conn: sa.Connection, user_id: str, artist: str, after: int, upto: int) -> float:
    found = conn.execute(
        _AFTER, {"user_id": user_id, "artist": artist, "after": after, "upto": upto}
    ).all()
    if not found:
        return 0.0
    kinds, plays = zip(*found, strict=True)
    return float(play_weights(np.array(kinds, dtype=object), np.array(plays)).sum())


def compacted_events(
    conn: sa.Connection, user_id: str, watermark: int, limit: int
) -> pd.DataFrame | None:
    """The listener's events for a model with ``watermark``, compacted per artist (see above).

    ``limit`` bounds the rows read (the most recently active artists first). None without
    any events.
    """
    found = conn.execute(_ROWS, {"user_id": user_id, "limit": limit}).all()
    # artist -> [before, before id, after, after id, bans, ts, ban until]
    artists: dict[str, list[Any]] = {}
    for artist, plays, bans, stamp, low, high, until in found:
        entry = artists.setdefault(artist, [0.0, 0, 0.0, 0, 0, stamp, 0])
        entry[4] += bans
        entry[5] = max(entry[5], stamp)
        if bans:  # a row stored before bans could expire holds permanent ones
            entry[6] = max(entry[6], FOREVER if until is None else until)
        if low is None:  # skips and bans only
            continue
        if high <= watermark:
            before, after = plays, 0.0
        elif low > watermark:
            before, after = 0.0, plays
        else:
            after = _plays_after(conn, user_id, artist, watermark, high)
            before = plays - after
        if before > 0:
            entry[0] += before
            entry[1] = max(entry[1], low)  # an id at or below the watermark
        if after > 0:
            entry[2] += after
            entry[3] = max(entry[3], high)
    # id, artist, kind, plays, timestamp, until (nan: none, or a permanent ban)
    rows: list[tuple[int, str, str, float, int, float]] = []
    nan = float("nan")
    for artist, (before, before_id, after, after_id, bans, stamp, until) in artists.items():
        if before > 0:
            rows.append((before_id, artist, "play", before, stamp, nan))
        if after > 0:
            rows.append((after_id, artist, "play", after, stamp, nan))
        if bans:
            lifts = nan if until >= FOREVER else float(until)
            rows.append((max(before_id, after_id), artist, "ban", 1.0, stamp, lifts))
        if not (before > 0 or after > 0 or bans):
            rows.append((0, artist, "skip", 1.0, stamp, nan))
    if not rows:
        return None
    ids, names, kinds, plays, stamps, untils = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "id": np.array(ids, dtype=np.int64),
            "user_id": np.full(len(rows), user_id, dtype=object),
            "artist": np.array(names, dtype=object),
            "kind": np.array(kinds, dtype=object),
            "plays": np.array(plays, dtype=np.float64),
            "timestamp": np.array(stamps, dtype=np.int64),
            "until": np.array(untils, dtype=np.float64),
        }
    )
