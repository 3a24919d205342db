"""Serving never answers for a forgotten listener: the tombstones each worker keeps in memory.

The worker that handles ``DELETE /users/{id}`` knows at once; every other worker and replica
reads new tombstones from the event store at its next check (every watch interval), and
then answers 404 for the listener exactly as for one the model never knew, whatever model it
serves (a rollback included), refuses their new events, and sweeps rows of theirs that
arrived meanwhile. The check on the hot path is one set lookup, skipped while the set is
empty. A worker that learns of a tombstone also drops the answers it kept for the listener
(:func:`~musicrec.events.cache.discard_everywhere`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from musicrec.errors import EventError, UnknownUserError
from musicrec.events.cache import discard_everywhere
from musicrec.events.forget import SWEEP_WINDOW_S, Tombstone, listener_digest, sweep, tombstones
from musicrec.events.schema import Event
from musicrec.events.store import EventStore

log = logging.getLogger(__name__)


class ForgottenListeners:
    """Digests of forgotten listeners, as far as this worker has read them."""

    def __init__(self) -> None:
        self.digests: frozenset[str] = frozenset()
        self.last_seq = 0
        self._recent: dict[str, Tombstone] = {}
        self._lock = threading.Lock()

    def add(self, user_id: str) -> None:
        """A listener forgotten by this worker: effective here at once."""
        digest = listener_digest(user_id)
        with self._lock:
            self.digests = self.digests | {digest}
        drop_answers(frozenset({digest}))

    def refresh(self, store: EventStore | None, now: float | None = None) -> int:
        """Read tombstones newer than the last read and sweep recent ones; rows swept."""
        if store is None:
            return 0
        now = time.time() if now is None else now
        new = tombstones(store, after_seq=self.last_seq)
        with self._lock:
            if new:
                self.digests = self.digests | {t.digest for t in new}
                self.last_seq = new[-1].seq
            for stone in new:
                self._recent[stone.digest] = stone
            for digest in [
                d for d, t in self._recent.items() if now - t.forgotten_at > SWEEP_WINDOW_S
            ]:
                del self._recent[digest]
            recent = list(self._recent.values())
        if new:
            drop_answers(frozenset(t.digest for t in new))
        swept = sweep(store, recent) if recent else 0
        if swept:
            log.info("removed %d rows of forgotten listeners that arrived late", swept)
        return swept

    def is_forgotten(self, user_id: str) -> bool:
        digests = self.digests
        return bool(digests) and listener_digest(user_id) in digests

    def check_user(self, user_id: str, version: str) -> None:
        """Raise the 404 of an unknown listener for a forgotten one."""
        if self.is_forgotten(user_id):
            raise UnknownUserError(f"user {user_id!r} is not known to model {version}")

    def check_events(self, events: Sequence[Event]) -> None:
        """Refuse a batch holding an event of a forgotten listener (:class:`EventError`)."""
        if not self.digests:
            return
        for index, event in enumerate(events):
            if self.is_forgotten(event.user_id):
                raise EventError(index, "user_id", "this listener was forgotten")

    def visible(self, user_ids: Sequence[str]) -> list[str]:
        """``user_ids`` without the forgotten ones (samples, suggestions)."""
        if not self.digests:
            return list(user_ids)
        return [u for u in user_ids if not self.is_forgotten(u)]


def drop_answers(digests: frozenset[str]) -> int:
    """Drop every kept answer whose key names a listener of ``digests``; answers dropped.

    Any text in a key is tried (the listener's id is one of them), so this holds whatever
    else the key carries.
    """

    def names_one(key: Hashable) -> bool:
        parts = key if isinstance(key, tuple) else (key,)
        return any(isinstance(p, str) and listener_digest(p) in digests for p in parts)

    return discard_everywhere(names_one)


class AccessRefresher:
    """A daemon thread running the access checks (keys file, tombstones) every interval."""

    def __init__(self, checks: Sequence[Callable[[], Any]], interval: float):
        self.checks = checks
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for check in self.checks:
                try:
                    check()
                except Exception:  # a refresher must survive anything; the next tick retries
                    log.exception("access refresh failed")
