"""The event store: durable, append-only listening events behind a database URL.

The default is an embedded SQLite file in WAL mode with ``synchronous=FULL``: a batch is
acknowledged only after its transaction committed and the WAL was synced, so neither a killed
process nor a power cut loses it. Any SQLAlchemy URL works (``postgresql://...``) when several
hosts must share the store.

Event ids increase with every committed batch (SQLite serialises writers), so "every event up
to id N" is a well-defined watermark: retraining records the highest id it included and serving
folds in only what came after (see :mod:`musicrec.serving.profile`). With a server database
whose concurrent transactions can commit ids out of order, keep one writer per store or accept
that such an event is folded in but misses one retraining cycle.

The same database keeps two small tables for serving replicas: the model pointer set by
``/admin/reload`` and one heartbeat row per API worker (see :mod:`musicrec.api.watch`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.schema import Event

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///events.db"
BUSY_TIMEOUT_MS = 30_000
ALL_ROWS = 2**62  # a LIMIT every database accepts (SQLite alone takes -1)

metadata = sa.MetaData()
events_table = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("artist", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("plays", sa.Integer, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("events_user_id", "user_id", "id"),
    sqlite_autoincrement=True,  # ids are never reused: they are watermarks
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
COLUMNS = ["id", "user_id", "artist", "kind", "plays", "timestamp"]
INT_COLUMNS = {"id", "plays", "timestamp"}


_USER_EVENTS = (  # built once: this query runs on every user-recommendation request
    sa.select(*(events_table.c[c] for c in COLUMNS))
    .where(events_table.c.user_id == sa.bindparam("user_id"))
    .order_by(events_table.c.id.desc())
    .limit(sa.bindparam("limit"))
)
_NO_EVENTS = pd.DataFrame(
    {name: np.empty(0, dtype=np.int64 if name in INT_COLUMNS else object) for name in COLUMNS}
)


@dataclass(frozen=True)
class Pointer:
    target: str
    generation: int
    updated_at: float


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # the WAL is synced at every commit
    cursor.close()


class EventStore:
    """Append and read listening events; thread-safe, one instance per process."""

    def __init__(self, url: str = DEFAULT_URL, group_commit: bool = False):
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
        self.engine = sa.create_engine(url, pool_pre_ping=self.sqlite_path is None)
        if self.sqlite_path is not None:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._committer = GroupCommit(self) if group_commit else None

    def __repr__(self) -> str:
        return f"EventStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------ schema

    @property
    def exists(self) -> bool:
        """Whether there is anything to read (a SQLite file is created on first write)."""
        return self._schema_ready or self.sqlite_path is None or self.sqlite_path.exists()

    def ensure_schema(self) -> None:
        """Create the tables once (idempotent, safe from several processes)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self.sqlite_path is not None:
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                metadata.create_all(self.engine, checkfirst=True)
            except sa.exc.OperationalError as exc:
                if "already exists" not in str(exc):  # a concurrent creator won the race
                    raise StoreError(f"cannot create the event store at {self}: {exc}") from exc
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

    # ------------------------------------------------------------------ events

    def append(self, events: Sequence[Event], chunk: int = 5000) -> list[int]:
        """Store ``events`` in one transaction; their ids once the commit is durable.

        Rows go to the database ``chunk`` at a time, all inside that one transaction. With
        ``group_commit``, batches that arrive together from several threads share one
        transaction (one WAL sync); each is still stored entirely or not at all.
        """
        if not events:
            return []
        if self._committer is not None:
            return self._committer.submit(events)
        return self._write(events, chunk)

    def _write(self, events: Sequence[Event], chunk: int = 5000) -> list[int]:
        self.ensure_schema()
        received = time.time()
        statement = sa.insert(events_table).returning(
            events_table.c.id, sort_by_parameter_order=True
        )
        ids: list[int] = []
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(events), chunk):
                    rows = [
                        {
                            "user_id": e.user_id,
                            "artist": e.artist,
                            "kind": e.kind,
                            "plays": e.plays,
                            "timestamp": e.timestamp,
                            "received_at": received,
                        }
                        for e in events[start : start + chunk]
                    ]
                    ids += [int(row[0]) for row in conn.execute(statement, rows)]
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot store events in {self}: {exc}") from exc
        return ids

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
        # Plain object/int64 columns: this runs on every request of a listener with events.
        columns = list(zip(*rows, strict=True))
        return pd.DataFrame(
            {
                name: np.asarray(values, dtype=np.int64 if name in INT_COLUMNS else object)
                for name, values in zip(COLUMNS, columns, strict=True)
            }
        )

    def read(self, after: int = 0, upto: int | None = None) -> pd.DataFrame:
        """Events with ``after < id <= upto``, in id order."""
        if not self._readable():
            return pd.DataFrame(columns=COLUMNS)
        query = sa.select(*(events_table.c[c] for c in COLUMNS)).where(events_table.c.id > after)
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
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            conn.execute(sa.delete(workers_table).where(workers_table.c.worker == worker))

    def close(self) -> None:
        if self._committer is not None:
            self._committer.stop()
        self.engine.dispose()


class GroupCommit:
    """One writer thread: concurrent appends of a process share a transaction and its sync.

    Every caller waits for the commit that holds its batch, so an answer still means durable.
    A failed transaction fails every batch in it (none of them is stored).
    """

    def __init__(self, store: EventStore, max_events: int = 5000, timeout_s: float = 60.0):
        self.store = store
        self.max_events = max_events
        self.timeout_s = timeout_s
        self._queue: queue.Queue[tuple[Sequence[Event], Future[list[int]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def submit(self, events: Sequence[Event]) -> list[int]:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        done: Future[list[int]] = Future()
        self._queue.put((events, done))
        try:
            return done.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise StoreError(f"no commit within {self.timeout_s:g}s in {self.store}") from None

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending = [item]
            size = len(item[0])
            while size < self.max_events:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this commit
                    break
                pending.append(more)
                size += len(more[0])
            try:
                ids = self.store._write([e for events, _ in pending for e in events])
            except Exception as exc:  # every waiter gets the failure; the writer carries on
                for _, done in pending:
                    done.set_exception(exc)
                continue
            start = 0
            for events, done in pending:
                done.set_result(ids[start : start + len(events)])
                start += len(events)


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{os.uname().nodename}:{os.getpid()}"
