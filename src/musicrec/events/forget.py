"""Forgetting a listener: their rows deleted, a tombstone against every later use, an audit.

:func:`forget_listener` deletes, in one write transaction, every row of the listener in each
table of :data:`LISTENER_TABLES` (their events, their per-artist aggregate, the impressions
shown to them) and the links of their events to requests, and records a tombstone and an
audit record. The tombstone holds a
SHA-256 digest of the listener's id, not the id: it is what keeps the listener out of
serving (every worker re-reads the tombstones each watch interval and answers 404) and out
of every later retraining, although the base data file still holds their plays. The audit
record says when, by which API key name and how many rows of each table, and nothing about
the listener.

An event of a forgotten listener accepted by a worker that has not yet seen the tombstone is
removed by :func:`sweep`, which workers run for recent tombstones at every check; the workers
also drop the listener's kept answers (:mod:`musicrec.events.cache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.impressions import ensure_tables as create_tables
from musicrec.events.impressions import lists_table
from musicrec.events.outcomes import links_table
from musicrec.events.store import EventStore, events_table
from musicrec.events.tables import listener_artists


@dataclass(frozen=True)
class ListenerTable:
    """A table holding rows about one listener: forgetting deletes their rows in it."""

    table: sa.Table
    listener: str  # the column naming the listener
    since: str  # the column a sweep compares with the watermark ...
    watermark: str  # ... of this table (the highest id it had at the tombstone)

    @property
    def name(self) -> str:
        return self.table.name


# Every table holding rows about one listener. A new per-listener table is one line here
# (tests/behaviour/test_forget.py fails for a table with a listener column left out).
LISTENER_TABLES: tuple[ListenerTable, ...] = (
    ListenerTable(events_table, "user_id", "id", "events"),
    ListenerTable(listener_artists, "user_id", "last_id", "events"),
    ListenerTable(lists_table, "listener", "id", "impression_lists"),
)
# Rows about a listener's events, found through the events' ids (deleted before the events).
EVENT_LINKS: tuple[sa.Table, ...] = (links_table,)
WATERMARKED: tuple[sa.Table, ...] = (events_table, lists_table)
SWEEP_WINDOW_S = 180.0  # tombstones this recent are swept again (a late event on a slow worker)
DIGEST_SALT = b"musicrec-forget:"

metadata = sa.MetaData()
_READY: weakref.WeakSet[EventStore] = weakref.WeakSet()  # stores whose tables exist
tombstones_table = sa.Table(
    "forgotten_listeners",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("forgotten_at", sa.Float, nullable=False),
    sa.Column("watermarks", sa.Text, nullable=False),  # JSON: highest row id per table then
    sqlite_autoincrement=True,
)
audit_table = sa.Table(
    "forget_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),  # API key name, or "cli"
    sa.Column("rows", sa.Text, nullable=False),  # JSON: rows deleted per table
    sqlite_autoincrement=True,
)


def listener_digest(user_id: str) -> str:
    """The tombstone's identity of a listener (SHA-256 of the id, hex)."""
    return hashlib.sha256(DIGEST_SALT + user_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Forgotten:
    """What one call of :func:`forget_listener` did."""

    rows: dict[str, int]  # rows deleted per table
    already: bool  # the listener had been forgotten before
    at: float

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class Tombstone:
    seq: int
    digest: str
    forgotten_at: float
    watermarks: dict[str, int]  # rows with a higher id arrived after the tombstone


def ensure_tables(store: EventStore) -> None:
    """Create the event tables and the tombstone and audit tables (once per store object).

    The other per-listener tables (impressions, links) are created by their modules on first
    use; forgetting deletes from those that exist.
    """
    if store in _READY:
        return
    create_tables(store, metadata)  # tried again when another process creates them meanwhile
    _READY.add(store)


def _present(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _watermarks(conn: sa.Connection, present: set[str]) -> dict[str, int]:
    return {
        table.name: int(conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0)
        for table in WATERMARKED
        if table.name in present
    }


def _delete_rows(conn: sa.Connection, user_ids: Iterable[str], present: set[str]) -> dict[str, int]:
    """Delete the listeners' rows in every table there is; rows deleted per table."""
    ids = list(user_ids)
    rows: dict[str, int] = {}
    their_events = sa.select(events_table.c.id).where(events_table.c.user_id.in_(ids))
    for link in EVENT_LINKS:
        if link.name in present:
            deleted = conn.execute(sa.delete(link).where(link.c.event_id.in_(their_events)))
            rows[link.name] = int(deleted.rowcount)
    for owned in LISTENER_TABLES:
        if owned.name in present:
            column = owned.table.c[owned.listener]
            deleted = conn.execute(sa.delete(owned.table).where(column.in_(ids)))
            rows[owned.name] = int(deleted.rowcount)
    return rows


def forget_listener(store: EventStore, user_id: str, actor: str) -> Forgotten:
    """Delete the listener's rows, keep a tombstone and an audit record (one transaction)."""
    ensure_tables(store)
    now = time.time()
    key = listener_digest(user_id)
    try:
        with store.writes.begin() as conn:  # BEGIN IMMEDIATE on SQLite: one write transaction
            present = _present(conn)
            rows = _delete_rows(conn, [user_id], present)
            marks = json.dumps(_watermarks(conn, present), sort_keys=True)
            known = conn.execute(
                sa.select(tombstones_table.c.seq).where(tombstones_table.c.digest == key)
            ).first()
            if known is None:
                conn.execute(
                    sa.insert(tombstones_table).values(
                        digest=key, forgotten_at=now, watermarks=marks
                    )
                )
            else:  # again: sweep from now on as for a new one
                conn.execute(
                    sa.update(tombstones_table)
                    .where(tombstones_table.c.digest == key)
                    .values(forgotten_at=now, watermarks=marks)
                )
            conn.execute(
                sa.insert(audit_table).values(
                    at=now, actor=actor[:100], rows=json.dumps(rows, sort_keys=True)
                )
            )
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot forget the listener in {store}: {exc}") from exc
    return Forgotten(rows=rows, already=known is not None, at=now)


def tombstones(store: EventStore, after_seq: int = 0) -> list[Tombstone]:
    """Tombstones recorded after ``after_seq`` (all by default), oldest first."""
    if not store.exists:
        return []
    ensure_tables(store)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tombstones_table)
            .where(tombstones_table.c.seq > after_seq)
            .order_by(tombstones_table.c.seq)
        ).all()
    return [
        Tombstone(int(r.seq), str(r.digest), float(r.forgotten_at), json.loads(r.watermarks))
        for r in rows
    ]


def forgotten_digests(store: EventStore) -> frozenset[str]:
    return frozenset(t.digest for t in tombstones(store))


def audit(store: EventStore) -> list[dict[str, Any]]:
    """Every audit record, oldest first: ``at``, ``actor``, ``rows`` (per table)."""
    if not store.exists:
        return []
    ensure_tables(store)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.id)).all()
    return [{"at": r.at, "actor": r.actor, "rows": json.loads(r.rows)} for r in rows]


def sweep(store: EventStore, recent: Sequence[Tombstone]) -> int:
    """Delete rows of the ``recent`` tombstones' listeners that arrived after the tombstone.

    Only rows above the id each table had at the oldest tombstone are read, so a sweep costs
    a range scan of the newest rows.
    """
    if not recent or not store.exists:
        return 0
    digests = frozenset(t.digest for t in recent)
    with store.engine.connect() as conn:  # a read: no write lock while nothing is late
        present = _present(conn)
        late: set[str] = set()
        for owned in LISTENER_TABLES:
            if owned.name not in present:
                continue
            since = min(t.watermarks.get(owned.watermark, 0) for t in recent)
            column = owned.table.c[owned.listener]
            query = sa.select(column).distinct().where(owned.table.c[owned.since] > since)
            users = conn.execute(query).scalars().all()
            late.update(str(u) for u in users if listener_digest(str(u)) in digests)
    if not late:
        return 0
    with store.writes.begin() as conn:  # rows arriving meanwhile: the next sweep
        return sum(_delete_rows(conn, sorted(late), present).values())


def first_forgotten(user_ids: Sequence[str], store: EventStore) -> int | None:
    """Position of the first id of a forgotten listener in ``user_ids``, if any."""
    digests = forgotten_digests(store)
    if digests:
        for position, user_id in enumerate(user_ids):
            if listener_digest(user_id) in digests:
                return position
    return None


class _Rows(Protocol):
    user_codes: np.ndarray
    item_codes: np.ndarray
    plays: np.ndarray
    user_ids: np.ndarray
    timestamps: np.ndarray | None


R = TypeVar("R", bound=_Rows)


def forgotten_mask(user_ids: Sequence[Any] | np.ndarray, digests: frozenset[str]) -> np.ndarray:
    """True for each user id that was forgotten."""
    if not digests:
        return np.zeros(len(user_ids), dtype=bool)
    return np.fromiter(
        (listener_digest(str(u)) in digests for u in user_ids), dtype=bool, count=len(user_ids)
    )


def without_forgotten(raw: R, store: EventStore) -> R:
    """``raw`` interactions (base data plus events) minus every forgotten listener's rows."""
    digests = forgotten_digests(store)
    if not digests:
        return raw
    gone = forgotten_mask(raw.user_ids, digests)
    if not gone.any():
        return raw
    keep = ~gone[np.asarray(raw.user_codes, dtype=np.int64)]
    stamps = raw.timestamps[keep] if raw.timestamps is not None else None
    return dataclasses.replace(  # type: ignore[type-var]
        raw,
        user_codes=raw.user_codes[keep],
        item_codes=raw.item_codes[keep],
        plays=raw.plays[keep],
        timestamps=stamps,
    )


def forget_key(key: str, store: EventStore) -> str:
    """A retraining cycle key that changes with every new tombstone (so a cycle re-runs)."""
    latest = tombstones(store)
    if not latest:
        return key
    return hashlib.sha256(f"{key}:{latest[-1].seq}:{len(latest)}".encode()).hexdigest()[:16]
