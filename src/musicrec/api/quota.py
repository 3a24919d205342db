"""Per-key token buckets, shared by every worker process of one host.

A key with ``rate`` r and ``burst`` b may make b requests at once and r per second after
that. The buckets of all workers on a host live in one small file (in the Prometheus
multiprocess directory, which ``musicrec serve`` sets up for several workers, or
``MUSICREC_QUOTA_DIR``), memory-mapped by each worker: a fixed 24-byte slot per key
(the key's id, its tokens, when they were counted) updated under an exclusive ``flock``.
So N workers share one budget instead of each granting the whole rate (N times too much)
or a share of it (too little for a client whose requests land unevenly); the check is a
lock, two struct reads and a write, a few microseconds (``benchmarks/bench_auth.py``).

One process without such a directory keeps its buckets in memory. Replicas on different
hosts each enforce the quota on their own (documented in ``docs/security.md``).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Protocol

QUOTA_FILE = "musicrec-quota.bin"
SLOT = struct.Struct("<8sdd")  # key id (ascii), tokens, monotonic time they were counted
SLOTS = 65_536  # keys a file can hold: 1.5 MiB
CLOCK_RESTART_S = 60.0  # a bucket this far in the future predates a reboot


class Buckets(Protocol):
    def take(self, slot: int, key_id: str, rate: float, burst: int, now: float) -> float:
        """Take one token; 0.0 when granted, else the seconds until one is available."""
        ...


def _refill(
    tokens: float, updated: float, rate: float, burst: int, now: float
) -> tuple[float, float, float]:
    """Tokens after refilling since ``updated``, then one taken: (tokens, wait, as of when).

    ``now`` was read before the lock: a process that waited for it may bring an older time
    than the last writer's. The bucket's time never moves back, or an interval would be
    refilled twice. A time far ahead comes from before a reboot (the monotonic clock
    restarted): the bucket starts over.
    """
    if updated > now + CLOCK_RESTART_S:
        tokens, updated = float(burst), now
    moment = max(now, updated)
    tokens = min(float(burst), tokens + (moment - updated) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0, moment
    return tokens, (1.0 - tokens) / rate, moment


class LocalBuckets:
    """Buckets of one process (a single worker)."""

    def __init__(self) -> None:
        self._state: dict[int, tuple[str, float, float]] = {}
        self._lock = threading.Lock()

    def take(self, slot: int, key_id: str, rate: float, burst: int, now: float) -> float:
        with self._lock:
            owner, tokens, updated = self._state.get(slot, (key_id, float(burst), now))
            if owner != key_id:  # a different key in this slot: start full
                tokens, updated = float(burst), now
            tokens, wait, moment = _refill(tokens, updated, rate, burst, now)
            self._state[slot] = (key_id, tokens, moment)
            return wait


class SharedBuckets:
    """Buckets in a memory-mapped file shared by the processes of one host."""

    def __init__(self, directory: str | Path, slots: int = SLOTS):
        self.path = Path(directory) / QUOTA_FILE
        self.slots = slots
        size = slots * SLOT.size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:  # first worker: zero-filled slots
                os.ftruncate(self._fd, size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()  # flock does not exclude threads of one process

    def take(self, slot: int, key_id: str, rate: float, burst: int, now: float) -> float:
        offset = (slot % self.slots) * SLOT.size
        owner = key_id.encode("ascii")[:8].ljust(8, b"\0")
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                found, tokens, updated = SLOT.unpack_from(self._map, offset)
                if found != owner:  # empty, or a slot reused by another key: start full
                    tokens, updated = float(burst), now
                tokens, wait, moment = _refill(tokens, updated, rate, burst, now)
                SLOT.pack_into(self._map, offset, owner, tokens, moment)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return wait

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def open_buckets(directory: str | Path | None) -> LocalBuckets | SharedBuckets:
    """Shared buckets in ``directory`` when given, else in-process ones."""
    return SharedBuckets(directory) if directory else LocalBuckets()
