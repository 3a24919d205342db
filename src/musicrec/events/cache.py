"""Answers computed from a listener's events, kept until those events change.

Folding a listener's events in (re-solving their vector, searching around the stored
exclusions) costs several times a plain request even when the events come aggregated per
artist (:mod:`musicrec.events.state`). The answer depends only on the listener's state, the
served model and the request's parameters, so it is kept under a key holding the listener's
state version (:meth:`~musicrec.events.store.EventStore.listener_version`, the id of their
newest event): any new event, on any worker or host, changes the version and the next request
computes afresh. An answer that depends on the time (a recency window) also carries the moment
it stops being valid.

One :class:`ListenerCache` per served model (:func:`cache_for`): a swapped-out model's answers
go away with it.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

DEFAULT_SIZE = 10_000


class ListenerCache:
    """A bounded, thread-safe map (least recently used out first) with per-entry expiry."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now: float) -> Any | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            value, expires = found
            if now >= expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any, expires: float = math.inf) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (value, expires)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


_CACHES: weakref.WeakKeyDictionary[Any, ListenerCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(owner: Any, size: int = DEFAULT_SIZE) -> ListenerCache:
    """The cache belonging to ``owner`` (a served model), created on first use."""
    with _CACHES_LOCK:
        cache = _CACHES.get(owner)
        if cache is None or cache.size != size:
            cache = _CACHES[owner] = ListenerCache(size)
        return cache


def recency_expiry(stamps: Any, window_s: float | None, now: float) -> float:
    """When a recency filter of ``window_s`` over events with ``stamps`` changes: the first
    moment one of the recent ones falls out of the window (never, without a window)."""
    if window_s is None:
        return math.inf
    stamps = np.asarray(stamps, dtype=np.float64)
    recent = stamps[stamps >= now - window_s]
    return float(recent.min()) + window_s if len(recent) else math.inf
