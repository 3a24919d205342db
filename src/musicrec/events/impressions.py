"""The impression log: every artist a served list showed, written in batches off the request path.

One row per shown artist: the request it belongs to, the listener, its position (0-based),
the artist, its score, the model version, the experiment and arm when one covers the
listener (in interleave mode the arm is the team that contributed the artist), the time,
and the propensity when the list was sampled (the probability of that artist at that
position, see :mod:`musicrec.online.explore`). The table lives in the event store's database,
beside the events, so every worker and replica writes one log and outcomes can be joined.

:class:`ImpressionWriter` keeps the database off the request path: a request hands its rows
to a bounded queue (never blocking: when the queue is full the rows are dropped and counted)
and one background thread passes them on every ``flush_interval_s`` or every ``batch_rows``
rows, whichever comes first, to its sink. :meth:`ImpressionWriter.stop` passes on everything
still queued (a clean stop loses nothing).

Where the rows go depends on the process. A worker of ``musicrec serve --workers N`` does not
commit them: :func:`forwarding_writer` sends each batch (plain tuples, pickled) every
``HANDOFF_INTERVAL_S`` over the socket of the host's writer process
(:class:`~musicrec.events.writer.WriterService`), so a list costs the worker its rows and a
share of one send. There :func:`attach_to_host` runs one writer that commits the rows of every
worker every ``flush_interval_s``, taking turns with the event commits. A single process
(one worker, or an app used directly) commits in its own writer thread.

A killed worker loses what it had not sent yet: at most about ``HANDOFF_INTERVAL_S``. A killed
host writer (the whole server) loses what it had not committed: about ``flush_interval_s``
plus one commit and one hand-off. ``benchmarks/bench_impression_loss.py`` measures both.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from multiprocessing.connection import Client, Connection
from typing import Any

import pandas as pd
import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.store import EventStore
from musicrec.events.writer import Handoff, WriterService, read_key

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
HANDOFF_INTERVAL_S = 0.1  # a worker's hand-offs to the host writer: what killing it loses
KIND = "impressions"  # the host writer's receiver of these rows
BATCH_ROWS = 5_000
MAX_QUEUED_LISTS = 20_000  # about 200,000 rows of k=10 lists: seconds of peak traffic
MAX_QUEUED_ROWS = 200_000  # the same in rows (the host writer's "lists" are workers' batches)
MAX_RETRY_ROWS = 200_000  # rows kept for the next try while the database refuses writes
CREATE_ATTEMPTS = 5
NAME = 200  # listener ids and artist names, as in the events table
SHORT = 64

# Every secondary index is paid for by every row the writer commits, so the log keeps only
# those its queries use: by experiment (reports, replay) and by listener and time (the
# exposure cool-down's per-request read, outcome attribution, forgetting a listener; both
# join in pandas, never looking a row up by request id or artist). Older versions also kept
# (request_id, position) and (listener, artist, time), random keys that more than halved
# the rows one writer commits per CPU-second (benchmarks/bench_impressions.py); a log made
# by them loses the two at its next start.
metadata = sa.MetaData(
    info={"retired_indexes": ("impressions_request", "impressions_listener_artist")}
)
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
    sa.Index("impressions_experiment", "experiment", "arm"),
    sa.Index("impressions_listener_time", "listener", "time"),
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
values_of = operator.attrgetter(*FIELDS)  # an Impression's values, as a tuple in FIELDS order
Row = Impression | tuple[Any, ...]  # a row, or its values (as sent to the host writer)


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
    (idempotent), adds any index a table made by an older version lacks and drops the ones
    ``tables.info["retired_indexes"]`` names. Another process
    creating them at the same moment makes ``create_all`` fail on a table that now exists, so
    it is tried again until every table is there.
    """
    with _CREATED_LOCK:
        if id(tables) in _CREATED.get(store, set()):
            return
        store.ensure_schema()
        for attempt in range(CREATE_ATTEMPTS):
            try:
                tables.create_all(store.engine, checkfirst=True)
                for table in tables.sorted_tables:  # indexes added since a table was made
                    for index in table.indexes:
                        index.create(store.engine, checkfirst=True)
                with store.engine.begin() as conn:
                    for name in tables.info.get("retired_indexes", ()):
                        conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
                break
            except sa.exc.DBAPIError as exc:  # PostgreSQL: pg_type's unique key, same cause
                raced = "already exists" in str(exc) or "pg_type" in str(exc)
                if not raced or attempt == CREATE_ATTEMPTS - 1:
                    raise StoreError(f"cannot create tables in {store}: {exc}") from exc
                time.sleep(0.05 * (attempt + 1))
        _CREATED.setdefault(store, set()).add(id(tables))


@functools.cache
def _insert_sql(paramstyle: str) -> str:
    """``INSERT INTO impressions`` in the driver's positional parameter style."""
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{}"}.get(paramstyle)
    if marker is None:
        raise StoreError(f"no positional parameters in the driver's style {paramstyle!r}")
    markers = ", ".join(marker.format(i + 1) for i in range(len(FIELDS)))
    return f"INSERT INTO {impressions_table.name} ({', '.join(FIELDS)}) VALUES ({markers})"


def write_impressions(store: EventStore, rows: Sequence[Row]) -> int:
    """Commit ``rows`` in one transaction (the writer thread's step; also for tools and tests)."""
    if not rows:
        return 0
    ensure_tables(store)
    values = [row if isinstance(row, tuple) else values_of(row) for row in rows]
    try:
        with store.writes.begin() as conn:
            # The driver's own executemany over plain tuples, without SQLAlchemy's per-row
            # parameter processing (benchmarks/bench_impressions.py: rows committed per second).
            conn.exec_driver_sql(_insert_sql(conn.dialect.paramstyle), values)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot store impressions in {store}: {exc}") from exc
    return len(rows)


def read_impressions(
    store: EventStore, experiment: str | None = None, since: float | None = None
) -> pd.DataFrame:
    """Impression rows (all columns), filtered by experiment and time."""
    if not store.exists:
        return pd.DataFrame(columns=COLUMNS)
    ensure_tables(store)
    query = sa.select(impressions_table)
    if experiment is not None:
        query = query.where(impressions_table.c.experiment == experiment)
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


Sink = Callable[[list[Row]], object]


class ImpressionWriter:
    """Batched, non-blocking impression writes for one process (thread-safe).

    ``write`` appends a list's rows to a buffer under a lock and returns; the thread wakes
    every ``flush_interval_s``, or once ``batch_rows`` rows wait, and takes the whole buffer
    (a request never wakes it for its own rows). It holds at most ``max_queued`` lists and
    ``MAX_QUEUED_ROWS`` rows; beyond either, rows are dropped and counted. ``sink`` stores
    one batch or raises :class:`~musicrec.errors.StoreError` (the rows are tried again); by
    default it commits them to ``store``. ``on_stop`` runs after the last batch.
    """

    def __init__(
        self,
        store: EventStore,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        batch_rows: int = BATCH_ROWS,
        max_queued: int = MAX_QUEUED_LISTS,
        sink: Sink | None = None,
        on_stop: Callable[[], object] | None = None,
    ):
        if flush_interval_s <= 0 or batch_rows < 1 or max_queued < 1:
            raise ValueError("flush interval, batch size and queue bound must be positive")
        self.store = store
        self.local = sink is None  # commits in this process (else hands the rows on)
        self._sink: Sink = sink or (lambda rows: write_impressions(store, rows))
        self._on_stop = on_stop
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.max_queued = max_queued
        self.stats = WriterStats()
        self._lists: list[Sequence[Row]] = []  # waiting for the thread, and their rows
        self._rows = 0
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
        self._lock = threading.Lock()
        self._accepting = False

    def start(self) -> ImpressionWriter:
        """Create the table (when it commits here) and start the writer thread."""
        if self.local:
            ensure_tables(self.store)
        with self._lock:
            if self._thread.ident is not None:
                raise RuntimeError("an impression writer starts once; make a new one")
            self._accepting = True
            self._thread.start()
        return self

    def write(self, rows: Sequence[Row]) -> bool:
        """Queue one list's rows; never blocks. False (rows counted as dropped) when full."""
        if not rows:
            return True
        with self._lock:
            room = len(self._lists) < self.max_queued and self._rows < MAX_QUEUED_ROWS
            if self._accepting and room:
                self._lists.append(rows)
                self._rows += len(rows)
                if self._rows >= self.batch_rows:
                    self._wake.set()
                return True
            self.stats.dropped += len(rows)
        return False

    @property
    def queued(self) -> int:
        """Lists waiting for the writer thread."""
        return len(self._lists)

    def stop(self, timeout_s: float = 30.0) -> WriterStats:
        """Stop accepting rows, pass on everything queued, and end the thread."""
        with self._lock:
            was_accepting, self._accepting = self._accepting, False
        if not was_accepting:
            return self.stats
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.warning("impression writer did not finish within %.0fs", timeout_s)
        if self._on_stop is not None:
            self._on_stop()
        return self.stats

    def _run(self) -> None:
        pending: list[Row] = []  # rows taken from the buffer, not stored yet
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._lock:  # every list accepted before a stop is taken here
                lists, self._lists, self._rows = self._lists, [], 0
                stopping = not self._accepting
            pending.extend(row for rows in lists for row in rows)
            if stopping:
                self._drain(pending)
                return
            pending = self._flush(pending)

    def _drain(self, pending: list[Row]) -> None:
        """Store every row (at stop), retrying a refused batch a few times."""
        for attempt in range(3):
            pending = self._flush(pending)
            if not pending:
                return
            time.sleep(0.2 * (attempt + 1))
        log.error("impression writer stopped with %d rows it could not store", len(pending))
        with self._lock:
            self.stats.dropped += len(pending)

    def _flush(self, pending: list[Row]) -> list[Row]:
        """Commit ``pending`` in chunks of ``batch_rows``; what is left after a failure."""
        while pending:
            batch = pending[: self.batch_rows]
            try:
                self._sink(batch)
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


# ----------------------------------------------------------------------------- host writer


class RowSender:
    """A worker's one-way channel to the host writer: :class:`~musicrec.events.writer.Handoff`
    messages, no answers.

    One connection, opened on first use and again after a failure; for one sending thread.
    """

    def __init__(self, address: str):
        self.address = address
        self._key = read_key(address)
        self._conn: Connection | None = None

    def send(self, kind: str, rows: list[Any]) -> None:
        """Hand ``rows`` to the host writer (on its way once this returns, not yet stored)."""
        try:
            if self._conn is None:
                self._conn = Client(self.address, family="AF_UNIX", authkey=self._key)
            self._conn.send(Handoff(kind, rows))
        except (OSError, EOFError) as exc:
            self.close()
            raise StoreError(f"event writer at {self.address} unreachable: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None


def forwarding_writer(store: EventStore, address: str) -> ImpressionWriter:
    """A worker's writer that hands its rows to the host writer at ``address`` (started)."""
    sender = RowSender(address)

    def send(rows: list[Row]) -> None:
        sender.send(KIND, [row if isinstance(row, tuple) else values_of(row) for row in rows])

    return ImpressionWriter(
        store, flush_interval_s=HANDOFF_INTERVAL_S, sink=send, on_stop=sender.close
    ).start()


def attach_to_host(
    service: WriterService, store: EventStore, flush_interval_s: float = FLUSH_INTERVAL_S
) -> ImpressionWriter:
    """Commit the impressions every worker hands to ``service`` (stopped with it)."""

    def commit(rows: list[Row]) -> None:
        with service.lock:  # between the event commits, not waiting on the database's lock
            write_impressions(store, rows)

    writer = ImpressionWriter(store, flush_interval_s=flush_interval_s, sink=commit).start()
    service.attach(KIND, writer)
    return writer
