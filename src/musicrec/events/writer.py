"""Group commit: concurrent appends share a transaction and its sync, across a host's workers.

Every acknowledged event must be durable, so each answer waits for a commit that synced the
database's log (SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on``). A sync costs
milliseconds, so one commit per request caps ingestion at a few hundred requests per second.
:class:`GroupCommit` is one writer thread: batches that arrive while it commits go together
into the next transaction, and every caller gets its answer when the commit holding its batch
is durable (a failed transaction fails every batch in it; none of them is stored).

Within one process that is enough. With several worker processes (``musicrec serve --workers
N``) their writers would take turns on the database's write lock, and SQLite's busy handler
waits by sleeping, up to 100 ms at a time, so latency grew with load. So the serving process
that supervises the workers runs a :class:`WriterService`: one :class:`GroupCommit` for the
whole host, reached by every worker through a :class:`RemoteWriter` over a Unix socket
(``multiprocessing.connection``, authenticated with a key in a file only this user can read).
One thread waits on all the workers' connections: the batches that reach it while a commit is
under way go together into the next one, whichever worker sent them. Server databases serve
several hosts, each with its own writer.

Rows that need no answer (the impression log, :mod:`musicrec.events.impressions`) reach the
same process as :class:`Handoff` messages, sent by a worker's :class:`RowSender` in batches:
the service passes them to the receiver attached for their kind, which commits them on its own
clock, holding :attr:`WriterService.lock` so its commits take turns with the events' in this
process instead of waiting on the database's lock. :meth:`WriterService.stop` reads what the
workers sent before they went, then stops the receivers, which commit everything they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import queue
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener, wait
from pathlib import Path
from typing import Any, Protocol, cast

from musicrec.errors import StoreError
from musicrec.events.schema import Event

log = logging.getLogger(__name__)

Batches = Sequence[Sequence[Event]]
SOCKET_NAME = "writer.sock"
KEY_NAME = "writer.key"
PID_NAME = "writer.pid"
DIR_PREFIX = "musicrec-writer-"
DRAIN_S = 10.0  # at stop, the longest it reads what workers still send


@dataclass(frozen=True)
class Appended:
    """What one batch added: the ids of its new events, and where its duplicates were."""

    ids: list[int]
    skipped: tuple[int, ...] = ()  # positions in the batch of events stored already

    @property
    def duplicates(self) -> int:
        return len(self.skipped)


class GroupCommit:
    """One writer thread; ``sink`` stores a list of batches in one transaction."""

    def __init__(
        self,
        sink: Callable[[Batches], list[Appended]],
        name: str,
        max_events: int = 5000,
        timeout_s: float = 60.0,
    ):
        self.sink = sink
        self.name = name
        self.max_events = max_events
        self.timeout_s = timeout_s
        self.commits = 0  # transactions, and the batches they held (for tests and metrics)
        self.batches = 0
        self._queue: queue.Queue[tuple[Batches, Future[list[Appended]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def submit(self, batches: Batches) -> list[Appended]:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        done: Future[list[Appended]] = Future()
        self._queue.put((batches, done))
        try:
            return done.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise StoreError(f"no commit within {self.timeout_s:g}s in {self.name}") from None

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
            size = sum(len(batch) for batch in item[0])
            while size < self.max_events:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this commit
                    break
                pending.append(more)
                size += sum(len(batch) for batch in more[0])
            try:
                results = self.sink([batch for batches, _ in pending for batch in batches])
            except Exception as exc:  # every waiter gets the failure; the writer carries on
                for _, done in pending:
                    done.set_exception(exc)
                continue
            self.commits += 1
            start = 0
            for batches, done in pending:
                done.set_result(results[start : start + len(batches)])
                start += len(batches)
            self.batches += start


class _Appender(Protocol):
    def append_batches(self, batches: Batches) -> list[Appended]: ...

    def close(self) -> None: ...


class _Receiver(Protocol):
    def write(self, rows: Sequence[Any]) -> bool: ...

    def stop(self) -> object: ...


@dataclass(frozen=True)
class Handoff:
    """Rows of ``kind`` for the host writer's receiver of that kind; no answer is sent."""

    kind: str
    rows: list[Any]


class WriterService:
    """The host's writer: stores the batches its workers send, sharing commits among them.

    One thread waits on every worker connection at once; all the batches that arrived while a
    commit was under way go into the next transaction, whichever worker sent them, and every
    sender gets its answer once that transaction is durable. ``store`` is an
    :class:`~musicrec.events.store.EventStore` (without ``group_commit``: this is the grouping);
    :attr:`address` is the socket the workers pass to theirs (``writer=``).
    """

    def __init__(self, store: _Appender):
        self.store = store
        self.commits = 0  # transactions, and the batches they held (for tests and metrics)
        self.batches = 0
        self.lock = threading.Lock()  # held by every commit of this process (see Handoff)
        self._receivers: dict[str, _Receiver] = {}
        self._unknown: set[str] = set()  # kinds sent without a receiver (warned once)
        remove_stale_directories()
        self.directory = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))  # mode 0700
        (self.directory / PID_NAME).write_text(str(os.getpid()))
        self.address = str(self.directory / SOCKET_NAME)
        key = os.urandom(32)
        key_path = self.directory / KEY_NAME
        key_path.write_bytes(key)
        key_path.chmod(stat.S_IRUSR)
        self._listener = Listener(self.address, family="AF_UNIX", authkey=key)
        self._closed = threading.Event()
        self._new: queue.Queue[Connection] = queue.Queue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._connections: list[Connection] = []
        self._acceptor = threading.Thread(target=self._accept, name="writer-accept", daemon=True)
        self._writer = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._acceptor.start()
        self._writer.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except Exception as exc:  # a client that failed the handshake, or closing
                if not self._closed.is_set():
                    log.warning("event writer refused a connection: %s", exc)
                continue
            self._new.put(conn)
            with contextlib.suppress(OSError):
                self._wake_write.send(b"+")

    def attach(self, kind: str, receiver: _Receiver) -> None:
        """Pass every :class:`Handoff` of ``kind`` to ``receiver`` (stopped by :meth:`stop`)."""
        self._receivers[kind] = receiver

    def _run(self) -> None:
        while not self._closed.is_set():
            self._serve(wait([self._wake_read, *self._connections], timeout=1.0))
        while not self._new.empty():  # stopping: read what the workers sent before they went
            self._connections.append(self._new.get())
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and (ready := wait(self._connections, timeout=0.05)):
            self._serve(ready)

    def _serve(self, ready: list[Any]) -> None:
        requests: list[tuple[Connection, Batches]] = []
        for source in ready:
            if source is self._wake_read:
                self._wake_read.recv(4096)
                while not self._new.empty():
                    self._connections.append(self._new.get())
                continue
            conn = cast(Connection, source)
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the worker went away
                with contextlib.suppress(ValueError):
                    self._connections.remove(conn)
                conn.close()
                continue
            if isinstance(message, Handoff):
                self._hand_off(message)
            else:
                requests.append((conn, message))
        if requests:
            self._commit(requests)

    def _hand_off(self, message: Handoff) -> None:
        receiver = self._receivers.get(message.kind)
        if receiver is not None:
            receiver.write(message.rows)
        elif message.kind not in self._unknown:
            self._unknown.add(message.kind)
            log.warning("event writer has no receiver for %s: their rows are dropped", message.kind)

    def _commit(self, requests: list[tuple[Connection, Batches]]) -> None:
        """One transaction for every batch of ``requests``; then each sender's answer."""
        batches = [batch for _, sent in requests for batch in sent]
        replies: list[tuple[str, object]]
        try:
            with self.lock:
                results = self.store.append_batches(batches)
        except Exception as exc:  # never leave a worker waiting for nothing
            if not isinstance(exc, StoreError):
                log.exception("event writer failed")
            replies = [("error", str(exc))] * len(requests)
        else:
            self.commits += 1
            self.batches += len(batches)
            replies, start = [], 0
            for _, sent in requests:
                replies.append(("ok", results[start : start + len(sent)]))
                start += len(sent)
        for (conn, _), reply in zip(requests, replies, strict=True):
            try:
                conn.send(reply)
            except OSError:
                with contextlib.suppress(ValueError):
                    self._connections.remove(conn)
                conn.close()

    def stop(self) -> None:
        """Stop accepting, store what was sent, stop the receivers, close the store."""
        self._closed.set()
        with (  # wake accept(): a client without the key
            contextlib.suppress(OSError),
            contextlib.closing(Client(self.address, family="AF_UNIX")),
        ):
            pass
        with contextlib.suppress(OSError):
            self._wake_write.send(b"+")
        self._acceptor.join(timeout=5)
        self._writer.join(timeout=30)  # after the commit under way and what was left to read
        for receiver in self._receivers.values():
            receiver.stop()  # commits every row it holds
        self._listener.close()
        for conn in [*self._connections, *list(self._new.queue)]:
            with contextlib.suppress(OSError):
                conn.close()
        self._wake_read.close()
        self._wake_write.close()
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def remove_stale_directories() -> None:
    """Socket directories of writers whose process is gone (killed before it could clean up)."""
    for directory in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            if directory.stat().st_uid != os.getuid():
                continue
            pid = int((directory / PID_NAME).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except PermissionError:
            pass


def read_key(address: str) -> bytes:
    """The key that authenticates a worker to the host writer listening at ``address``."""
    try:
        return (Path(address).parent / KEY_NAME).read_bytes()
    except OSError as exc:
        raise StoreError(f"no event writer at {address}: {exc}") from exc


class RemoteWriter:
    """A worker's side of the host writer: one connection per concurrent append, reused."""

    def __init__(self, address: str, timeout_s: float = 60.0):
        self.address = address
        self.timeout_s = timeout_s
        self._key = read_key(address)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Client(self.address, family="AF_UNIX", authkey=self._key)

    def append_batches(self, batches: Batches) -> list[Appended]:
        """Store ``batches`` through the host writer; their results once durable."""
        try:
            conn = self._connection()
        except (OSError, EOFError) as exc:
            raise StoreError(f"event writer at {self.address} unreachable: {exc}") from exc
        try:
            conn.send(list(batches))
            if not conn.poll(self.timeout_s):
                raise StoreError(f"no commit within {self.timeout_s:g}s from the event writer")
            status, payload = conn.recv()
        except (OSError, EOFError) as exc:
            conn.close()
            raise StoreError(f"event writer at {self.address} failed: {exc}") from exc
        except StoreError:
            conn.close()  # its answer may still come: never reuse it
            raise
        with self._lock:
            self._idle.append(conn)
        if status != "ok":
            raise StoreError(str(payload))
        return payload  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()


class AsyncRemoteWriter:
    """:class:`RemoteWriter` for ``async`` callers: the same messages on asyncio streams.

    A request handler awaits its commit without holding a thread. The handshake (which
    authenticates with the key) runs in a thread once per connection; then the socket
    speaks :mod:`multiprocessing.connection`'s framing: a 4-byte big-endian length (-1 and
    an 8-byte length for larger messages) and a pickle.
    """

    def __init__(self, address: str, timeout_s: float = 60.0):
        self.address = address
        self.timeout_s = timeout_s
        self._key = read_key(address)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = await asyncio.to_thread(Client, self.address, family="AF_UNIX", authkey=self._key)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(conn.fileno()))
        finally:
            conn.close()
        return await asyncio.open_unix_connection(sock=sock)

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes
    ) -> object:
        writer.write(struct.pack("!i", len(message)) + message)
        await writer.drain()
        (size,) = struct.unpack("!i", await reader.readexactly(4))
        if size == -1:
            (size,) = struct.unpack("!Q", await reader.readexactly(8))
        return pickle.loads(await reader.readexactly(size))

    async def append_batches(self, batches: Batches) -> list[Appended]:
        """Store ``batches`` through the host writer; their results once durable."""
        message = pickle.dumps(list(batches), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            reader, writer = self._idle.pop() if self._idle else await self._open()
        except (OSError, EOFError) as exc:
            raise StoreError(f"event writer at {self.address} unreachable: {exc}") from exc
        try:
            reply = await asyncio.wait_for(
                self._exchange(reader, writer, message), timeout=self.timeout_s
            )
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            writer.close()  # a late answer must never reach the next request
            raise StoreError(f"event writer at {self.address} failed: {exc!r}") from exc
        except asyncio.CancelledError:  # the client went away: same reason
            writer.close()
            raise
        self._idle.append((reader, writer))
        status, payload = cast(tuple[str, object], reply)
        if status != "ok":
            raise StoreError(str(payload))
        return cast(list[Appended], payload)

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
