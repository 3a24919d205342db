"""Impression log writes off the request path, in batches (:mod:`musicrec.events.impressions`).

:class:`ImpressionWriter` keeps the database off the request path: a request hands its list
(:func:`~musicrec.events.impressions.pack`) to a bounded queue (never blocking: when the
queue is full the list is dropped and its artists counted) and one background thread passes
the lists on every ``flush_interval_s`` or every ``batch_rows`` shown artists, whichever
comes first, to its sink. :meth:`ImpressionWriter.stop` passes on everything still queued
(a clean stop loses nothing).

Where the lists go depends on the process. A worker of ``musicrec serve --workers N`` does not
commit them: :func:`forwarding_writer` sends each batch (packed lists, pickled) every
``HANDOFF_INTERVAL_S`` over the socket of the host's writer process
(:class:`~musicrec.events.writer.WriterService`), so a list costs the worker its packing and
a share of one send. There :func:`attach_to_host` runs one writer that commits the lists of
every worker every ``flush_interval_s``, taking turns with the event commits. A single process
(one worker, or an app used directly) commits in its own writer thread.

A killed worker loses what it had not sent yet: at most about ``HANDOFF_INTERVAL_S``. A killed
host writer (the whole server) loses what it had not committed: about ``flush_interval_s``
plus one commit and one hand-off. ``benchmarks/bench_impression_loss.py`` measures both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection
from typing import Any

from musicrec.errors import StoreError
from musicrec.events.impressions import SHOWN, ShownList, ensure_tables, shown_in, write_impressions
from musicrec.events.store import EventStore
from musicrec.events.writer import Handoff, WriterService, read_key

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
HANDOFF_INTERVAL_S = 0.1  # a worker's hand-offs to the host writer: what killing it loses
KIND = "impressions"  # the host writer's receiver of these rows
BATCH_ROWS = 5_000  # shown artists per commit (whole lists: a commit may hold a few more)
MAX_QUEUED_LISTS = 20_000  # about 200,000 rows of k=10 lists: seconds of peak traffic
MAX_QUEUED_ROWS = 200_000  # the same in shown artists (the host writer's "lists" are batches)
MAX_RETRY_ROWS = 200_000  # shown artists kept for the next try while the database refuses


@dataclass
class WriterStats:
    """What an :class:`ImpressionWriter` has done so far."""

    written: int = 0  # shown artists committed
    dropped: int = 0  # shown artists refused because the queue was full or the writer stopped
    failed_batches: int = 0  # commits the database refused (rows retried)
    batches: int = 0  # commits that succeeded


Sink = Callable[[list[ShownList]], object]


class ImpressionWriter:
    """Batched, non-blocking impression writes for one process (thread-safe).

    ``write`` appends packed lists (:func:`~musicrec.events.impressions.pack`) to a buffer
    under a lock and returns; the thread wakes every ``flush_interval_s``, or once
    ``batch_rows`` shown artists wait, and takes the whole buffer (a request never wakes it
    for its own list). It holds at most ``max_queued`` writes and ``MAX_QUEUED_ROWS`` shown artists;
    beyond either, lists are dropped and their artists counted. ``sink`` stores one batch of
    packed lists or raises :class:`~musicrec.errors.StoreError` (they are tried again); by
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
        self._lists: list[list[ShownList]] = []  # waiting for the thread, and their artists
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

    def write(self, lists: Sequence[ShownList]) -> bool:
        """Queue packed lists (a request's one); never blocks. False (their shown artists
        counted as dropped) when full."""
        if not lists:
            return True
        shown = shown_in(lists)
        with self._lock:
            room = len(self._lists) < self.max_queued and self._rows < MAX_QUEUED_ROWS
            if self._accepting and room:
                self._lists.append(list(lists))
                self._rows += shown
                if self._rows >= self.batch_rows:
                    self._wake.set()
                return True
            self.stats.dropped += shown
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
        pending: list[ShownList] = []  # lists taken from the buffer, not stored yet
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

    def _drain(self, pending: list[ShownList]) -> None:
        """Store every list (at stop), retrying a refused batch a few times."""
        for attempt in range(3):
            pending = self._flush(pending)
            if not pending:
                return
            time.sleep(0.2 * (attempt + 1))
        log.error("impression writer stopped with %d lists it could not store", len(pending))
        with self._lock:
            self.stats.dropped += shown_in(pending)

    def _flush(self, pending: list[ShownList]) -> list[ShownList]:
        """Commit ``pending`` in batches of about ``batch_rows`` shown artists (whole lists);
        what is left after a failure."""
        while pending:
            end, shown = 0, 0
            while end < len(pending) and shown < self.batch_rows:
                shown += pending[end][SHOWN]
                end += 1
            batch = pending[:end]
            try:
                self._sink(batch)
            except StoreError as exc:
                log.warning("impressions not stored yet (%d lists wait): %s", len(pending), exc)
                with self._lock:
                    self.stats.failed_batches += 1
                    overflow, kept = 0, 0  # the oldest lists beyond MAX_RETRY_ROWS go
                    for i in range(len(pending) - 1, -1, -1):
                        kept += pending[i][SHOWN]
                        if kept > MAX_RETRY_ROWS:
                            overflow = i + 1
                            break
                    self.stats.dropped += shown_in(pending[:overflow])
                return pending[overflow:]
            with self._lock:
                self.stats.written += shown
                self.stats.batches += 1
            pending = pending[end:]
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

    def send(rows: list[ShownList]) -> None:
        sender.send(KIND, rows)

    return ImpressionWriter(
        store, flush_interval_s=HANDOFF_INTERVAL_S, sink=send, on_stop=sender.close
    ).start()


def attach_to_host(
    service: WriterService, store: EventStore, flush_interval_s: float = FLUSH_INTERVAL_S
) -> ImpressionWriter:
    """Commit the impressions every worker hands to ``service`` (stopped with it)."""

    def commit(rows: list[ShownList]) -> None:
        with service.lock:  # between the event commits, not waiting on the database's lock
            write_impressions(store, rows)

    writer = ImpressionWriter(store, flush_interval_s=flush_interval_s, sink=commit).start()
    service.attach(KIND, writer)
    return writer
