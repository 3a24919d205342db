"""The event store: durable, append-only listening events behind a database URL.

The default is an embedded SQLite file in WAL mode with ``synchronous=FULL``: a batch is
acknowledged only after its transaction committed and the WAL was synced, so neither a killed
process nor a power cut loses it. A PostgreSQL URL (``postgresql+psycopg://...``, with
``synchronous_commit`` left on) serves several hosts. Concurrent appends share commits
(:mod:`musicrec.events.writer`); each listener's events are also kept aggregated per artist,
updated in the same transaction (:mod:`musicrec.events.state`), which is what serving reads.

Event ids increase with every committed batch, so "every event up to id N" is a well-defined
watermark: retraining takes it from :meth:`EventStore.training_watermark` and serving folds in
only what the model has not seen (see :mod:`musicrec.serving.profile`). SQLite serialises
writers; on PostgreSQL every write transaction holds a shared advisory lock and the watermark
is read under the exclusive one, so no event below it can commit after it was read.

An event with an ``event_id`` is stored once per listener: a unique index on (listener,
event id), checked before inserting; a batch sent again reports its events as duplicates.

The same database keeps two small tables for serving replicas: the model pointer set by
``/admin/reload`` and one heartbeat row per API worker (see :mod:`musicrec.api.watch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events import state
from musicrec.events.ingest import store_batches
from musicrec.events.schema import Event
from musicrec.events.tables import (
    SCHEMA_VERSION,
    WRITE_LOCK,
    events_table,
    migrate,
    pointer_table,
    workers_table,
)
from musicrec.events.writer import (
    Appended,
    AsyncRemoteWriter,
    Batches,
    GroupCommit,
    RemoteWriter,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///events.db"
BUSY_TIMEOUT_MS = 30_000
ALL_ROWS = 2**62  # a LIMIT every database accepts (SQLite alone takes -1)
WRITE_ATTEMPTS = 3  # a transaction that lost an event-id race to another host is retried
COLUMNS = ["id", "user_id", "artist", "kind", "plays", "timestamp"]
INT_COLUMNS = {"id", "plays", "timestamp"}
USER_COLUMNS = [*COLUMNS, "until"]  # a listener's events: with when their bans lift


def _dtype(name: str) -> type:
    if name == "until":
        return np.float64  # nan: no until
    return np.int64 if name in INT_COLUMNS else object


_USER_EVENTS = (
    sa.select(*(events_table.c[c] for c in USER_COLUMNS))
    .where(events_table.c.user_id == sa.bindparam("user_id"))
    .order_by(events_table.c.id.desc())
    .limit(sa.bindparam("limit"))
)
_NO_EVENTS = pd.DataFrame({name: np.empty(0, dtype=_dtype(name)) for name in USER_COLUMNS})


@dataclass(frozen=True)
class Pointer:
    target: str
    generation: int
    updated_at: float


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions begin in _sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # the WAL is synced at every commit
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # A write transaction takes the write lock first (BEGIN IMMEDIATE): one that read first
    # and then wrote would fail at once, without waiting, when another process wrote between.
    # Reads run without an explicit transaction (each statement sees a committed state; the
    # few multi-statement reads bound later statements by ids the first one returned).
    mode = conn.get_execution_options().get("sqlite_begin")
    if mode:
        conn.exec_driver_sql(f"BEGIN {mode}")


class EventStore:
    """Append and read listening events; thread-safe, one instance per process.

    ``group_commit``: concurrent appends of this process share transactions. ``writer``: the
    socket of this host's writer (:class:`~musicrec.events.writer.WriterService`), which
    shares them across processes; appends then go there.
    """

    def __init__(
        self, url: str = DEFAULT_URL, group_commit: bool = False, writer: str | None = None
    ):
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"invalid event store URL {url!r}: {exc}") from exc
        self.sqlite_path: Path | None = None
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise StoreError("the event store must be a file, not an in-memory database")
            self.sqlite_path = Path(parsed.database)
        elif parsed.get_backend_name() != "postgresql":
            raise StoreError(f"the event store is SQLite or PostgreSQL, not {url!r}")
        self.engine = sa.create_engine(url, pool_pre_ping=self.sqlite_path is None)
        if self.sqlite_path is not None:
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        # Every write transaction, here and in the modules that keep tables in this store
        # (impressions, experiments, deletions), goes through this engine: on SQLite a plain
        # ``engine.begin()`` starts no transaction at all (see _sqlite_begin).
        self.writes = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._remote = RemoteWriter(writer) if writer else None
        self.async_writer = AsyncRemoteWriter(writer) if writer else None
        self._committer = (
            GroupCommit(self._write_batches, repr(self)) if group_commit and not writer else None
        )

    def __repr__(self) -> str:
        return f"EventStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------ schema

    @property
    def exists(self) -> bool:
        """Whether there is anything to read (a SQLite file is created on first write)."""
        return self._schema_ready or self.sqlite_path is None or self.sqlite_path.exists()

    def ensure_schema(self) -> None:
        """Create the tables, or upgrade an older store in place, once per process."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self.sqlite_path is not None:
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self.writes.begin() as conn:
                    version = migrate(conn)
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"cannot open the event store at {self}: {exc}") from exc
            if version not in (0, SCHEMA_VERSION):
                log.info("event store %s upgraded from schema version %d", self, version)
            self._schema_ready = True

    def _readable(self) -> bool:
        if not self.exists:
            return False
        if not self._schema_ready:
            try:
                self.ensure_schema()
            except StoreError:
                return False
        return True

    @contextlib.contextmanager
    def _write_transaction(self, exclusive: bool = False) -> Iterator[sa.Connection]:
        """A transaction holding the write lock (SQLite) or the writers' advisory lock."""
        with self.writes.begin() as conn:
            if conn.dialect.name == "postgresql":
                function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
                conn.execute(sa.text(f"SELECT {function}(:key)"), {"key": WRITE_LOCK})
            yield conn

    # ------------------------------------------------------------------ events

    def append(self, events: Sequence[Event]) -> Appended:
        """Store ``events`` in one transaction; answered once the commit is durable.

        Events whose ``event_id`` the listener already has are not stored again (counted in
        ``duplicates``). With ``group_commit`` or a ``writer``, batches that arrive together
        share one transaction (one sync); each is still stored entirely or not at all.
        """
        return self.append_batches([events])[0]

    def append_batches(self, batches: Batches) -> list[Appended]:
        """Several batches in one transaction (the group commit's unit)."""
        if not any(batches):
            return [Appended([]) for _ in batches]
        if self._remote is not None:
            return self._remote.append_batches(batches)
        if self._committer is not None:
            return self._committer.submit(batches)
        return self._write_batches(batches)

    def _write_batches(self, batches: Batches) -> list[Appended]:
        self.ensure_schema()
        received = time.time()
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._write_transaction() as conn:
                    return store_batches(conn, batches, received)
            except sa.exc.IntegrityError as exc:
                # Another host stored one of these event ids after this transaction looked.
                if attempt == WRITE_ATTEMPTS:
                    raise StoreError(f"cannot store events in {self}: {exc}") from exc
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"cannot store events in {self}: {exc}") from exc
        raise AssertionError("unreachable")

    def training_watermark(self) -> int:
        """The highest stored id, for a model trained on every event up to it.

        It also starts a new epoch of the per-listener aggregates (:mod:`~musicrec.events.state`),
        so serving that model reads its listeners' state without going back to their events.
        """
        if not self.exists:
            return 0  # no SQLite file yet: nothing stored, nothing created
        self.ensure_schema()
        try:
            with self._write_transaction(exclusive=True) as conn:
                return state.advance_epoch(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot read the event store at {self}: {exc}") from exc

    def user_events(self, user_id: str, limit: int | None = None) -> pd.DataFrame:
        """A user's events, oldest first (the newest ``limit`` when given)."""
        if not self._readable():
            return _NO_EVENTS
        with self.engine.connect() as conn:
            bound = {"user_id": user_id, "limit": limit if limit is not None else ALL_ROWS}
            found = conn.execute(_USER_EVENTS, bound)
            rows = found.all()[::-1]
        if not rows:  # most requests: no frame to build (callers never modify it)
            return _NO_EVENTS
        columns = list(zip(*rows, strict=True))
        return pd.DataFrame(
            {
                name: np.asarray(
                    [np.nan if v is None else v for v in values] if name == "until" else values,
                    dtype=_dtype(name),
                )
                for name, values in zip(USER_COLUMNS, columns, strict=True)
            }
        )

    def compacted_events(
        self, user_id: str, watermark: int, limit: int | None = None
    ) -> pd.DataFrame:
        """What the fold-in needs of a user's events, from their per-artist state.

        Same columns as :meth:`user_events`; at most a few rows per artist (see
        :func:`musicrec.events.state.compacted_events`), so the cost follows the listener's
        artists, never their number of events. ``limit``: most recently active artists read.
        """
        if not self._readable():
            return _NO_EVENTS
        with self.engine.connect() as conn:
            frame = state.compacted_events(
                conn, user_id, watermark, limit if limit is not None else ALL_ROWS
            )
        return _NO_EVENTS if frame is None else frame

    def listener_version(self, user_id: str) -> int:
        """Id of the user's newest event (0 without events): a key for answers built on them."""
        if not self._readable():
            return 0
        with self.engine.connect() as conn:
            return state.listener_version(conn, user_id)

    def read(self, after: int = 0, upto: int | None = None) -> pd.DataFrame:
        """Events with ``after < id <= upto``, in id order (with ``until``: when bans lift)."""
        if not self._readable():
            return pd.DataFrame(columns=USER_COLUMNS)
        columns = (events_table.c[c] for c in USER_COLUMNS)
        query = sa.select(*columns).where(events_table.c.id > after)
        if upto is not None:
            query = query.where(events_table.c.id <= upto)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query.order_by(events_table.c.id), conn)
        return frame

    def max_id(self) -> int:
        """The highest committed event id (0 when empty)."""
        if not self._readable():
            return 0
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.max(events_table.c.id))).scalar()
        return int(value or 0)

    def count(self) -> int:
        if not self._readable():
            return 0
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar()
        return int(value or 0)

    def stats(self) -> dict[str, Any]:
        """Events by kind, distinct users and the id range."""
        if not self._readable():
            return {"events": 0, "by_kind": {}, "users": 0, "max_id": 0}
        with self.engine.connect() as conn:
            by_kind: dict[str, int] = dict(
                conn.execute(
                    sa.select(events_table.c.kind, sa.func.count()).group_by(events_table.c.kind)
                ).all()
            )
            users = conn.execute(
                sa.select(sa.func.count(sa.distinct(events_table.c.user_id)))
            ).scalar()
        return {
            "events": int(sum(by_kind.values())),
            "by_kind": {str(k): int(v) for k, v in sorted(by_kind.items())},
            "users": int(users or 0),
            "max_id": self.max_id(),
        }

    # ------------------------------------------------------------------ serving state

    def set_pointer(self, target: str, name: str = "default") -> Pointer:
        """Point every replica at ``target`` (a new generation, even for the same target)."""
        self.ensure_schema()
        now = time.time()
        with self.writes.begin() as conn:
            current = conn.execute(
                sa.select(pointer_table.c.generation).where(pointer_table.c.name == name)
            ).scalar()
            generation = int(current or 0) + 1
            if current is None:
                conn.execute(
                    sa.insert(pointer_table).values(
                        name=name, target=target, generation=generation, updated_at=now
                    )
                )
            else:
                conn.execute(
                    sa.update(pointer_table)
                    .where(pointer_table.c.name == name)
                    .values(target=target, generation=generation, updated_at=now)
                )
        return Pointer(target, generation, now)

    def pointer(self, name: str = "default") -> Pointer | None:
        if not self._readable():
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    pointer_table.c.target, pointer_table.c.generation, pointer_table.c.updated_at
                ).where(pointer_table.c.name == name)
            ).first()
        return Pointer(str(row[0]), int(row[1]), float(row[2])) if row else None

    def heartbeat(self, worker: str, version: str | None, path: str | None) -> None:
        """Record what ``worker`` serves now (only once the store exists: never creates it)."""
        if not self._readable():
            return
        now = time.time()
        values = {"version": version, "path": path, "seen_at": now}
        with self.writes.begin() as conn:
            updated = conn.execute(
                sa.update(workers_table).where(workers_table.c.worker == worker).values(**values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(workers_table).values(worker=worker, **values))

    def workers(self, max_age_s: float) -> list[dict[str, Any]]:
        """Workers seen in the last ``max_age_s`` seconds, with the version each serves."""
        if not self._readable():
            return []
        since = time.time() - max_age_s
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(workers_table).where(workers_table.c.seen_at >= since)
            ).all()
        return [dict(row._mapping) for row in rows]

    def forget_worker(self, worker: str) -> None:
        if not self._readable():
            return
        with self.writes.begin() as conn:
            conn.execute(sa.delete(workers_table).where(workers_table.c.worker == worker))

    def close(self) -> None:
        if self._committer is not None:
            self._committer.stop()
        if self._remote is not None:
            self._remote.close()
        if self.async_writer is not None:
            self.async_writer.close()
        self.engine.dispose()


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{os.uname().nodename}:{os.getpid()}"
