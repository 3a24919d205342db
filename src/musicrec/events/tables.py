"""The event store's tables, and how a store written by an older version is brought up to date.

Version 1 (the first release) had ``events``, ``model_pointer`` and ``serving_workers``.
Version 2 adds ``events.event_id`` (a sender's id, unique per listener), ``listener_artists``
(each listener's events aggregated per artist, kept up to date on write: see
:mod:`musicrec.events.state`) and ``store_meta`` (the schema version and the training epoch).
:func:`migrate` upgrades in place, once, when a process first opens the store: it adds the
column and the index, creates the new tables and fills ``listener_artists`` from the stored
events. It runs inside a write transaction that holds the database's write lock (SQLite) or an
advisory lock (PostgreSQL), so processes opening the store together upgrade it once.
"""

from __future__ import annotations

import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.schema import LOVE_PLAYS

SCHEMA_VERSION = 3
# ``listener_artists.ban_until`` of a ban without ``until``: above every real until, so the
# largest until of an artist's bans (SQL max) says how long the artist stays banned.
FOREVER = 2**62
# PostgreSQL advisory lock keys (any 64-bit numbers this application alone uses).
MIGRATION_LOCK = 0x6D75_7369_6372_6501
WRITE_LOCK = 0x6D75_7369_6372_6502  # shared by writers, exclusive for a training watermark

metadata = sa.MetaData()
# SQLite only aliases the rowid (and only then honours AUTOINCREMENT) for INTEGER PRIMARY KEY.
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("artist", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("plays", sa.Integer, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("event_id", sa.String(200), nullable=True),
    sa.Column("until", sa.BigInteger, nullable=True),  # ban events: when the ban lifts
    sa.Index("events_user_id", "user_id", "id"),
    sqlite_autoincrement=True,  # ids are never reused: they are watermarks
)
# NULLs are distinct in a unique index (SQLite and PostgreSQL): events without an id never clash.
event_id_index = sa.Index(
    "events_user_event_id", events_table.c.user_id, events_table.c.event_id, unique=True
)

listener_artists = sa.Table(
    "listener_artists",
    metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("artist", sa.String(200), primary_key=True),
    # The training watermark in force when these events were stored (see state.py).
    sa.Column("epoch", sa.BigInteger, primary_key=True),
    sa.Column("plays", sa.Float, nullable=False),  # summed play weight (a love counts 5)
    sa.Column("bans", sa.Integer, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("last_timestamp", sa.BigInteger, nullable=False),
    sa.Column("last_id", sa.BigInteger, nullable=False),
    sa.Column("play_min_id", sa.BigInteger, nullable=True),  # ids of the events with plays
    sa.Column("play_max_id", sa.BigInteger, nullable=True),
    # The largest until of the row's bans (FOREVER: one is permanent; NULL: no ban).
    sa.Column("ban_until", sa.BigInteger, nullable=True),
    # A listener's newest rows first, and their state version (max last_id), from the index.
    sa.Index("listener_artists_recent", "user_id", "last_id"),
)
store_meta = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
pointer_table = sa.Table(
    "model_pointer",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),  # replicas of one configured model
    sa.Column("target", sa.String(1000), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
workers_table = sa.Table(
    "serving_workers",
    metadata,
    sa.Column("worker", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(200), nullable=True),
    sa.Column("path", sa.String(1000), nullable=True),
    sa.Column("seen_at", sa.Float, nullable=False),
)


def play_weight(kind: sa.ColumnElement[str], plays: sa.ColumnElement[int]) -> sa.ColumnElement:
    """SQL twin of :func:`musicrec.events.schema.play_weights` (the backfill uses it)."""
    return sa.case((kind == "play", plays), (kind == "love", LOVE_PLAYS), else_=0.0)


def meta_value(conn: sa.Connection, key: str) -> int | None:
    value = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == key)).scalar()
    return None if value is None else int(value)


def set_meta(conn: sa.Connection, key: str, value: int) -> None:
    updated = conn.execute(
        sa.update(store_meta).where(store_meta.c.key == key).values(value=value)
    ).rowcount
    if not updated:
        conn.execute(sa.insert(store_meta).values(key=key, value=value))


def migrate(conn: sa.Connection) -> int:
    """Create or upgrade every table inside the caller's locked write transaction.

    Returns the version the store had (0 for a new one). A store of a newer version is refused.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    found = meta_value(conn, "schema_version") if "store_meta" in tables else None
    had_events = "events" in tables
    version = found if found is not None else (1 if had_events else 0)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the event store has schema version {version}; this musicrec knows "
            f"{SCHEMA_VERSION}: upgrade musicrec"
        )
    if version == SCHEMA_VERSION:
        return version
    if had_events:
        columns = {column["name"] for column in inspector.get_columns("events")}
        if "event_id" not in columns:
            conn.execute(sa.text("ALTER TABLE events ADD COLUMN event_id VARCHAR(200)"))
        if "until" not in columns:
            conn.execute(sa.text("ALTER TABLE events ADD COLUMN until BIGINT"))
    state_columns = (
        {column["name"] for column in inspector.get_columns("listener_artists")}
        if "listener_artists" in tables
        else {"ban_until"}
    )
    if "ban_until" not in state_columns:  # version 2: every stored ban is permanent
        conn.execute(sa.text("ALTER TABLE listener_artists ADD COLUMN ban_until BIGINT"))
        conn.execute(
            sa.update(listener_artists).where(listener_artists.c.bans > 0).values(ban_until=FOREVER)
        )
    metadata.create_all(conn, checkfirst=True)
    event_id_index.create(conn, checkfirst=True)
    if had_events and "listener_artists" not in tables:
        _backfill_listener_artists(conn)
    set_meta(conn, "schema_version", SCHEMA_VERSION)
    return version


def _backfill_listener_artists(conn: sa.Connection) -> None:
    """Aggregate every stored event into ``listener_artists`` (epoch 0: before any watermark)."""
    e = events_table
    weight = play_weight(e.c.kind, e.c.plays)
    played_id = sa.case((weight > 0, e.c.id), else_=None)
    select = sa.select(
        e.c.user_id,
        e.c.artist,
        sa.literal(0, sa.BigInteger),
        sa.func.sum(weight),
        sa.func.sum(sa.case((e.c.kind == "ban", 1), else_=0)),
        sa.func.count(),
        sa.func.max(e.c.timestamp),
        sa.func.max(e.c.id),
        sa.func.min(played_id),
        sa.func.max(played_id),
        sa.func.max(sa.case((e.c.kind == "ban", sa.func.coalesce(e.c.until, FOREVER)))),
    ).group_by(e.c.user_id, e.c.artist)
    target = listener_artists.c
    conn.execute(
        sa.insert(listener_artists).from_select(
            [
                target.user_id,
                target.artist,
                target.epoch,
                target.plays,
                target.bans,
                target.events,
                target.last_timestamp,
                target.last_id,
                target.play_min_id,
                target.play_max_id,
                target.ban_until,
            ],
            select,
        )
    )
