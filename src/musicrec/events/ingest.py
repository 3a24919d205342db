"""The body of a write transaction: skip events already stored, insert, update listener state."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from musicrec.events import state
from musicrec.events.schema import Event
from musicrec.events.tables import events_table
from musicrec.events.writer import Appended, Batches

ID_LOOKUP_CHUNK = 1000


def store_batches(conn: sa.Connection, batches: Batches, received: float) -> list[Appended]:
    """Store ``batches`` in the caller's transaction; per batch, its new ids and duplicates.

    An event whose (listener, event id) is stored already, or came earlier in this group, is a
    duplicate and is skipped; the unique index catches a race with another host (the
    transaction then fails with an integrity error and the caller retries it).
    """
    epoch = state.current_epoch(conn)
    seen = stored_event_ids(conn, batches)
    fresh: list[Event] = []
    skipped: list[tuple[int, ...]] = []  # per batch, the positions of its duplicates
    for batch in batches:
        positions = []
        for position, event in enumerate(batch):
            if event.event_id is not None:
                key = (event.user_id, event.event_id)
                if key in seen:
                    positions.append(position)
                    continue
                seen.add(key)
            fresh.append(event)
        skipped.append(tuple(positions))
    ids = insert_events(conn, fresh, received)
    state.accumulate(conn, fresh, ids, epoch)
    results, start = [], 0
    for batch, duplicates in zip(batches, skipped, strict=True):
        new = len(batch) - len(duplicates)
        results.append(Appended(ids[start : start + new], duplicates))
        start += new
    return results


def stored_event_ids(conn: sa.Connection, batches: Batches) -> set[tuple[str, str]]:
    """The (listener, event id) pairs of ``batches`` that are stored already."""
    keys = sorted({(e.user_id, e.event_id) for b in batches for e in b if e.event_id is not None})
    found: set[tuple[str, str]] = set()
    c = events_table.c
    for start in range(0, len(keys), ID_LOOKUP_CHUNK):
        chunk = keys[start : start + ID_LOOKUP_CHUNK]
        users = sorted({user for user, _ in chunk})
        event_ids = sorted({event_id for _, event_id in chunk})
        query = sa.select(c.user_id, c.event_id).where(
            c.user_id.in_(users), c.event_id.in_(event_ids)
        )
        rows = {(str(user), str(event_id)) for user, event_id in conn.execute(query).all()}
        found |= rows & set(chunk)
    return found


def insert_events(
    conn: sa.Connection, events: Sequence[Event], received: float, chunk: int = 5000
) -> list[int]:
    statement = sa.insert(events_table).returning(events_table.c.id, sort_by_parameter_order=True)
    ids: list[int] = []
    for start in range(0, len(events), chunk):
        rows = [
            {
                "user_id": e.user_id,
                "artist": e.artist,
                "kind": e.kind,
                "plays": e.plays,
                "timestamp": e.timestamp,
                "received_at": received,
                "event_id": e.event_id,
                "until": e.until,
            }
            for e in events[start : start + chunk]
        ]
        ids += [int(row[0]) for row in conn.execute(statement, rows)]
    return ids
