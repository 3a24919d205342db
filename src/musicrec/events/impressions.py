"""The impression log: every artist a served list showed, written in batches off the request path.

One row per shown artist: the request it belongs to, the listener, its position (0-based),
the artist, its score, the model version, the experiment and arm when one covers the
listener (in interleave mode the arm is the team that contributed the artist), the time,
and the propensity when the list was sampled (the probability of that artist at that
position, see :mod:`musicrec.online.explore`). The table lives in the event store's database,
beside the events, so every worker and replica writes one log and outcomes can be joined.

:class:`ImpressionWriter` keeps the database off the request path: a request hands its rows
to a bounded queue (never blocking: when the queue is full the rows are dropped and counted)
and one background thread commits them every ``flush_interval_s`` or every ``batch_rows``
rows, whichever comes first. :meth:`ImpressionWriter.stop` commits everything still queued
(a clean stop loses nothing). A process killed outright loses what was queued since the last
commit: at most about ``flush_interval_s`` of impressions plus one commit's time;
``benchmarks/bench_impressions.py`` measures it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.store import EventStore

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
BATCH_ROWS = 5_000
MAX_QUEUED_LISTS = 20_000  # about 200,000 rows of k=10 lists: seconds of peak traffic
MAX_RETRY_ROWS = 200_000  # rows kept for the next try while the database refuses writes
CREATE_ATTEMPTS = 5
NAME = 200  # listener ids and artist names, as in the events table
SHORT = 64

metadata = sa.MetaData()
impressions_table = sa.Table(
    "impressions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(SHORT), nullable=False),
    sa.Column("listener", sa.String(NAME), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("artist", sa.String(NAME), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(NAME), nullable=False),
    sa.Column("experiment", sa.String(SHORT), nullable=True),
    sa.Column("arm", sa.String(SHORT), nullable=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("propensity", sa.Float, nullable=True),
    sa.Index("impressions_request", "request_id", "position"),
    sa.Index("impressions_listener_artist", "listener", "artist", "time"),
    sa.Index("impressions_experiment", "experiment", "arm"),
)
COLUMNS = [c.name for c in impressions_table.columns]


@dataclass(frozen=True, slots=True)
class Impression:
    """One shown artist."""

    request_id: str
    listener: str
    position: int
    artist: str
    score: float
    model_version: str
    experiment: str | None = None
    arm: str | None = None
    time: float = 0.0
    propensity: float | None = None


FIELDS = tuple(f.name for f in fields(Impression))


def impressions_of(
    request_id: str,
    listener: str,
    artists: Sequence[str],
    scores: Sequence[float],
    model_version: str,
    experiment: str | None = None,
    arms: str | Sequence[str | None] | None = None,
    propensities: Sequence[float] | None = None,
    at: float | None = None,
) -> list[Impression]:
    """The rows of one served list; ``arms`` is one arm for all or one per position."""
    at = time.time() if at is None else at
    per_position = [arms] * len(artists) if arms is None or isinstance(arms, str) else list(arms)
    if len(per_position) != len(artists) or len(scores) != len(artists):
        raise ValueError("one score and one arm per shown artist")
    if propensities is not None and len(propensities) != len(artists):
        raise ValueError("one propensity per shown artist")
    return [
        Impression(
            request_id=request_id,
            listener=listener,
            position=i,
            artist=artist,
            score=float(scores[i]),
            model_version=model_version,
            experiment=experiment,
            arm=per_position[i],
            time=at,
            propensity=None if propensities is None else float(propensities[i]),
        )
        for i, artist in enumerate(artists)
    ]


_CREATED: weakref.WeakKeyDictionary[EventStore, set[int]] = weakref.WeakKeyDictionary()
_CREATED_LOCK = threading.Lock()


def ensure_tables(store: EventStore, tables: sa.MetaData = metadata) -> None:
    """Create ``tables`` (by default the impression log) in the store's database, once.

    The online tables share the event store's engine; this creates them beside the events
    (idempotent). Another process creating them at the same moment makes ``create_all`` fail
    on a table that now exists, so it is tried again until every table is there.
    """
    with _CREATED_LOCK:
        if id(tables) in _CREATED.get(store, set()):
            return
        store.ensure_schema()
        for attempt in range(CREATE_ATTEMPTS):
            try:
                tables.create_all(store.engine, checkfirst=True)
                break
            except sa.exc.DBAPIError as exc:  # PostgreSQL: pg_type's unique key, same cause
                raced = "already exists" in str(exc) or "pg_type" in str(exc)
                if not raced or attempt == CREATE_ATTEMPTS - 1:
                    raise StoreError(f"cannot create tables in {store}: {exc}") from exc
                time.sleep(0.05 * (attempt + 1))
        _CREATED.setdefault(store, set()).add(id(tables))


def write_impressions(store: EventStore, rows: Sequence[Impression]) -> int:
    """Commit ``rows`` in one transaction (the writer thread's step; also for tools and tests)."""
    if not rows:
        return 0
    ensure_tables(store)
    try:
        with store.writes.begin() as conn:
            conn.execute(
                sa.insert(impressions_table),
                [{name: getattr(row, name) for name in FIELDS} for row in rows],
            )
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot store impressions in {store}: {exc}") from exc
    return len(rows)


def read_impressions(
    store: EventStore,
    experiment: str | None = None,
    request_ids: Sequence[str] | None = None,
    since: float | None = None,
) -> pd.DataFrame:
    """Impression rows (all columns), filtered by experiment, request ids and time."""
    if not store.exists:
        return pd.DataFrame(columns=COLUMNS)
    ensure_tables(store)
    query = sa.select(impressions_table)
    if experiment is not None:
        query = query.where(impressions_table.c.experiment == experiment)
    if request_ids is not None:
        query = query.where(impressions_table.c.request_id.in_(list(request_ids)))
    if since is not None:
        query = query.where(impressions_table.c.time >= since)
    with store.engine.connect() as conn:
        return pd.read_sql(query.order_by(impressions_table.c.id), conn)


@dataclass
class WriterStats:
    """What an :class:`ImpressionWriter` has done so far."""

    written: int = 0  # rows committed
    dropped: int = 0  # rows refused because the queue was full or the writer stopped
    failed_batches: int = 0  # commits the database refused (rows retried)
    batches: int = 0  # commits that succeeded


_STOP = object()


class ImpressionWriter:
    """Batched, non-blocking impression writes for one process (thread-safe)."""

    def __init__(
        self,
        store: EventStore,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        batch_rows: int = BATCH_ROWS,
        max_queued: int = MAX_QUEUED_LISTS,
    ):
        if flush_interval_s <= 0 or batch_rows < 1 or max_queued < 1:
            raise ValueError("flush interval, batch size and queue bound must be positive")
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.stats = WriterStats()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
        self._lock = threading.Lock()
        self._accepting = False

    def start(self) -> ImpressionWriter:
        """Create the table and start the writer thread."""
        ensure_tables(self.store)
        with self._lock:
            if self._thread.ident is not None:
                raise RuntimeError("an impression writer starts once; make a new one")
            self._accepting = True
            self._thread.start()
        return self

    def write(self, rows: Sequence[Impression]) -> bool:
        """Queue one list's rows; never blocks. False (rows counted as dropped) when full."""
        if not rows:
            return True
        if self._accepting:
            try:
                self._queue.put_nowait(rows)
                return True
            except queue.Full:
                pass
        with self._lock:
            self.stats.dropped += len(rows)
        return False

    @property
    def queued(self) -> int:
        """Lists waiting for the writer thread (approximate)."""
        return self._queue.qsize()

    def stop(self, timeout_s: float = 30.0) -> WriterStats:
        """Stop accepting rows, commit everything queued, and end the thread."""
        with self._lock:
            was_accepting, self._accepting = self._accepting, False
        if not was_accepting:
            return self.stats
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            log.warning("impression writer queue stayed full for %.0fs", timeout_s)
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.warning("impression writer did not finish within %.0fs", timeout_s)
        else:  # a write racing with stop() may have queued rows behind the stop mark
            self._drain([])
        return self.stats

    def _run(self) -> None:
        pending: list[Impression] = []
        deadline = time.monotonic() + self.flush_interval_s
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                if item is _STOP:
                    stopping = True
                else:
                    pending.extend(item)
            except queue.Empty:
                pass
            if stopping or len(pending) >= self.batch_rows or time.monotonic() >= deadline:
                pending = self._drain(pending) if stopping else self._flush(pending)
                deadline = time.monotonic() + self.flush_interval_s

    def _drain(self, pending: list[Impression]) -> list[Impression]:
        """Commit every queued row (at stop), retrying a refused commit a few times."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                pending.extend(item)
        for attempt in range(3):
            pending = self._flush(pending)
            if not pending:
                break
            time.sleep(0.2 * (attempt + 1))
        if pending:
            log.error("impression writer stopped with %d rows it could not store", len(pending))
            with self._lock:
                self.stats.dropped += len(pending)
        return []

    def _flush(self, pending: list[Impression]) -> list[Impression]:
        """Commit ``pending`` in chunks of ``batch_rows``; what is left after a failure."""
        while pending:
            batch = pending[: self.batch_rows]
            try:
                write_impressions(self.store, batch)
            except StoreError as exc:
                log.warning("impressions not stored yet (%d rows wait): %s", len(pending), exc)
                with self._lock:
                    self.stats.failed_batches += 1
                    overflow = max(0, len(pending) - MAX_RETRY_ROWS)
                    self.stats.dropped += overflow
                return pending[overflow:]
            with self._lock:
                self.stats.written += len(batch)
                self.stats.batches += 1
            pending = pending[self.batch_rows :]
        return pending
