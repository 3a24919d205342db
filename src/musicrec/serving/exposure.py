"""Exposure cool-down in serving: what a listener was shown, read from the impression log.

Every served list is logged (:mod:`musicrec.events.impressions`); an artist shown to a listener
``shows`` times since they last played it rests for ``days`` days (:mod:`musicrec.rules.cooldown`).
The held-back set is part of the key of a kept answer (:mod:`musicrec.serving.live`): an answer
is reused only while the same artists rest.

Counting is incremental, so a request's cost does not grow with how often the listener was
shown lists. Each worker keeps, per listener (least recently used out first, at most
``MUSICREC_FOLD_IN_CACHE`` listeners), their exposure state: per artist the shows since the
last play and the latest show, their plays' times, and the newest impression counted. A
request reads only the impressions from :data:`LATE_S` before that newest one on (one indexed
read on ``(listener, time)``), skips the ones already counted by id, and adds the rest. Rows
are committed up to about half a second after they were shown (``MUSICREC_IMPRESSIONS_FLUSH_S``,
and by several workers), so rows older than the newest counted still arrive; :data:`LATE_S`
covers that. The state is read afresh (the latest :data:`IMPRESSIONS_READ` impressions and,
once some artist reached ``shows``, the listener's plays, as :func:`read_resting` does on
every call) when the listener's events change
(:meth:`~musicrec.events.store.EventStore.listener_version`), for another model, and at least
every :data:`REFRESH_S`: that bounds what a row committed even later (a stalled writer, the
clocks of several hosts more than :data:`LATE_S` apart) can miss.
Between two fresh reads every impression is counted, not only the latest
:data:`IMPRESSIONS_READ`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicrec.events.cache import DEFAULT_SIZE, cache_for
from musicrec.events.impressions import ensure_tables, latest_shown
from musicrec.events.store import EventStore
from musicrec.rules import CoolDown, held_back
from musicrec.rules.cooldown import exposure_from_log
from musicrec.rules.inputs import Exposure
from musicrec.serving.recommender import Recommender

IMPRESSIONS_READ = 10_000  # a listener's latest impressions counted by a fresh read
LATE_S = 30.0  # rows committed up to this long after a newer one still count (flush: ~0.5 s)
REFRESH_S = 600.0  # a listener's exposure state is read afresh at least this often


@dataclass(frozen=True)
class Resting:
    """A listener's exposure and the artists it holds back now (empty: nothing to apply)."""

    exposure: Exposure = field(default_factory=Exposure)
    held: tuple[int, ...] = ()


NOTHING = Resting()


@dataclass
class _Counted:
    """One listener's exposure state in one worker (updated under ``lock``)."""

    version: int  # the listener's event version it was read at
    refresh_at: float  # read afresh from then on
    shown: dict[int, int]  # item -> shows since its latest play
    last_shown: dict[int, float]  # item -> latest show
    played: dict[int, float] | None  # item -> latest play (None: not read, no artist at shows)
    newest: float = -np.inf  # newest impression time counted
    recent: dict[int, float] = field(default_factory=dict)  # ids counted near ``newest``
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Owner:
    """Holds a served model's exposure cache (dropped with the model; forget reaches it)."""


_OWNERS: weakref.WeakKeyDictionary[Recommender, _Owner] = weakref.WeakKeyDictionary()
_OWNERS_LOCK = threading.Lock()


def _owner(recommender: Recommender) -> _Owner:
    with _OWNERS_LOCK:
        return _OWNERS.setdefault(recommender, _Owner())


def resting(
    store: EventStore,
    recommender: Recommender,
    user_id: str,
    policy: CoolDown | None,
    now: float,
    watermark: int = 0,
    version: int | None = None,
    size: int = DEFAULT_SIZE,
) -> Resting:
    """The artists ``user_id`` has been shown too often without a play, resting at ``now``.

    ``version``: the listener's event version when the caller has read it already; ``size``:
    listeners whose state this worker keeps (0: read afresh every time, as :func:`read_resting`).
    """
    if policy is None or not store.exists:
        return NOTHING
    if size <= 0:
        return read_resting(store, recommender, user_id, policy, now, watermark)
    ensure_tables(store)
    if version is None:
        version = store.listener_version(user_id)
    cache = cache_for(_owner(recommender), size)
    key = ("exposure", store.url, user_id, watermark)
    counted = cache.get(key, now)
    if counted is None or counted.version != version or now >= counted.refresh_at:
        counted = _fresh(store, recommender, user_id, policy, now, watermark, version)
        cache.put(key, counted)
        with counted.lock:
            return _held(counted, now, policy)
    with counted.lock:
        _add_new(store, recommender, user_id, counted)
        if counted.played is None and max(counted.shown.values(), default=0) >= policy.shows:
            counted.played = _played(store, recommender, user_id, watermark, version)
            _recount(store, recommender, user_id, counted)
        return _held(counted, now, policy)


def read_resting(
    store: EventStore,
    recommender: Recommender,
    user_id: str,
    policy: CoolDown | None,
    now: float,
    watermark: int = 0,
) -> Resting:
    """:func:`resting` from scratch, keeping nothing: the latest :data:`IMPRESSIONS_READ`
    impressions, and the plays when some artist has reached ``shows`` (a play only lowers)."""
    if policy is None or not store.exists:
        return NOTHING
    ensure_tables(store)
    with store.engine.connect() as conn:
        rows = [(name, at) for _, name, at in latest_shown(conn, user_id, IMPRESSIONS_READ)]
    if len(rows) < policy.shows:
        return NOTHING
    resolve = recommender.catalogue.resolve
    names = {name: resolve(name) for name, _ in rows}
    shown = [(names[name], at) for name, at in rows if names[name] is not None]
    items = np.array([i for i, _ in shown], dtype=np.int64)
    at = np.array([t for _, t in shown], dtype=np.float64)
    if not len(items) or np.bincount(items).max() < policy.shows:
        return NOTHING
    played = _played(store, recommender, user_id, watermark)
    exposure = exposure_from_log(
        items,
        at,
        np.fromiter(played.keys(), dtype=np.int64, count=len(played)),
        np.fromiter(played.values(), dtype=np.float64, count=len(played)),
    )
    return _resting(exposure, now, policy)


def _fresh(
    store: EventStore,
    recommender: Recommender,
    user_id: str,
    policy: CoolDown,
    now: float,
    watermark: int,
    version: int,
) -> _Counted:
    """The state read afresh: the latest impressions, and the plays once some reach ``shows``."""
    counted = _Counted(version, now + REFRESH_S, {}, {}, None)
    _recount(store, recommender, user_id, counted)
    if max(counted.shown.values(), default=0) >= policy.shows:
        counted.played = _played(store, recommender, user_id, watermark, version)
        _recount(store, recommender, user_id, counted)
    return counted


def _recount(store: EventStore, recommender: Recommender, user_id: str, counted: _Counted) -> None:
    """Count the listener's latest :data:`IMPRESSIONS_READ` impressions into ``counted``."""
    with store.engine.connect() as conn:
        rows = latest_shown(conn, user_id, IMPRESSIONS_READ)
    counted.shown, counted.last_shown, counted.newest, counted.recent = {}, {}, -np.inf, {}
    _count(recommender, rows, counted)


def _add_new(store: EventStore, recommender: Recommender, user_id: str, counted: _Counted) -> None:
    """Count the impressions committed since the last request (from ``LATE_S`` before the
    newest counted on, less the ids counted already)."""
    since = counted.newest - LATE_S if counted.newest > -np.inf else None
    with store.engine.connect() as conn:
        rows = latest_shown(conn, user_id, IMPRESSIONS_READ, since)
    _count(recommender, [row for row in rows if row[0] not in counted.recent], counted)


def _count(recommender: Recommender, rows: Sequence[Any], counted: _Counted) -> None:
    """Add impression rows ``(id, artist, time)`` to ``counted``: a show counts when it comes
    after the artist's latest play."""
    resolve = recommender.catalogue.resolve
    names: dict[str, int | None] = {}
    played = counted.played or {}
    for row_id, name, at in rows:
        counted.recent[row_id] = at
        counted.newest = max(counted.newest, at)
        item = names[name] if name in names else names.setdefault(name, resolve(name))
        if item is None or at <= played.get(item, -np.inf):
            continue
        counted.shown[item] = counted.shown.get(item, 0) + 1
        counted.last_shown[item] = max(counted.last_shown.get(item, -np.inf), at)
    oldest = counted.newest - LATE_S
    counted.recent = {i: at for i, at in counted.recent.items() if at >= oldest}


def _held(counted: _Counted, now: float, policy: CoolDown) -> Resting:
    """What ``counted`` holds back at ``now`` (:data:`NOTHING` when no artist rests)."""
    if max(counted.shown.values(), default=0) < policy.shows:
        return NOTHING
    items = np.array(sorted(counted.shown), dtype=np.int64)
    exposure = Exposure(
        items=items,
        shown=np.array([counted.shown[i] for i in items], dtype=np.int64),
        last_shown=np.array([counted.last_shown[i] for i in items], dtype=np.float64),
    )
    return _resting(exposure, now, policy)


def _played(
    store: EventStore,
    recommender: Recommender,
    user_id: str,
    watermark: int,
    version: int | None = None,
) -> dict[int, float]:
    """Each played artist of ``user_id`` with the latest time of its events (a play resets);
    nothing to read when their event ``version`` is 0 (no events)."""
    if version == 0:
        return {}
    events = store.compacted_events(user_id, watermark)
    if events.empty:
        return {}
    events = events[events["kind"] == "play"]
    resolve = recommender.catalogue.resolve
    latest: dict[int, float] = {}
    for name, at in zip(events["artist"], events["timestamp"], strict=True):
        item = resolve(name)
        if item is not None:
            latest[item] = max(latest.get(item, -np.inf), float(at))
    return latest


def _resting(exposure: Exposure, now: float, policy: CoolDown) -> Resting:
    held = held_back(exposure, now, policy)
    return Resting(exposure, tuple(int(i) for i in held)) if len(held) else NOTHING
