"""The live side of serving: a listener's stored events applied to their recommendations.

The answer is kept until the listener's events change (:mod:`musicrec.events.cache`), and
built from their events compacted per artist (:mod:`musicrec.events.state`): neither grows
with their events.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.cache import cache_for, recency_expiry
from musicrec.events.store import EventStore
from musicrec.rules import NEUTRAL, CoolDown, Dials, ListenerState
from musicrec.serving.exposure import NOTHING, resting
from musicrec.serving.profile import DAY_S, Profile, build_profile, watermark
from musicrec.serving.recommender import Rec, Recommender

log = logging.getLogger(__name__)


def _nothing(*_: object) -> None:
    return None


@dataclass(frozen=True)
class LiveEvents:
    """Where a listener's events come from and how they count (the API's settings).

    ``on_unreadable`` is told when the store cannot be read, ``on_fold_in`` how long reading
    and folding in took, ``on_cache`` whether a kept answer was used (``hit``) or the events
    were folded in (``miss``) (the API's metrics).
    """

    store: EventStore | None
    artists_per_user: int = 10_000
    fresh_weight: float = 0.5
    cache_size: int = 10_000
    on_unreadable: Callable[[], None] = _nothing
    on_fold_in: Callable[[float], None] = _nothing
    on_cache: Callable[[str], None] = _nothing
    cooldown: CoolDown | None = None  # exposure cool-down (None: off)


def user_recommendations(
    recommender: Recommender,
    user_id: str,
    k: int,
    live: LiveEvents,
    mood: str | None = None,
    dials: Dials = NEUTRAL,
) -> list[Rec]:
    """Top-``k`` for ``user_id`` with their events folded in (model only without a store),
    under the rule chain's ``dials``; bans hold until their ``until``, judged now.

    Artists the listener was shown too often without a play rest (``live.cooldown``,
    :mod:`musicrec.serving.exposure`). A store that cannot be read degrades to the model's
    answer, logged, never a failed request.
    """
    store = live.store
    if store is None:
        return recommender.recommend_user(user_id, k, mood=mood, dials=dials)
    started, now = time.perf_counter(), time.time()
    cache = cache_for(recommender, live.cache_size)
    try:
        version = store.listener_version(user_id)
        mark = watermark(recommender)
        rest = resting(
            store, recommender, user_id, live.cooldown, now, mark, version, live.cache_size
        )
        if rest is not NOTHING:
            dials = replace(dials, cooldown=live.cooldown)
        key = (store.url, user_id, version, k, mood, dials, live.fresh_weight, rest.held)
        if not version:  # no events: the model's answer (less what rests)
            shown = ListenerState(exposure=rest.exposure) if rest.held else None
            return recommender.recommend_user(user_id, k, mood=mood, dials=dials, listener=shown)
        cached = cache.get(key, now)
        if cached is not None:
            live.on_cache("hit")
            return cast(list[Rec], cached)
        events = store.compacted_events(
            user_id, watermark(recommender), limit=live.artists_per_user
        )
    except (StoreError, sa.exc.SQLAlchemyError) as exc:
        log.warning("event store unreadable, serving the model alone: %s", exc)
        live.on_unreadable()
        return recommender.recommend_user(user_id, k, mood=mood, dials=dials)
    if events.empty:
        shown = ListenerState(exposure=rest.exposure) if rest.held else None
        return recommender.recommend_user(user_id, k, mood=mood, dials=dials, listener=shown)
    live.on_cache("miss")
    days = dials.exclude_recent_days
    window = days * DAY_S if days is not None else None
    profile = build_profile(recommender, events, user_id, now=now)
    listener = replace(profile.listener, exposure=rest.exposure)
    expiry = min(recency_expiry(events["timestamp"], window, now), ban_expiry(profile, now))
    if profile.empty:
        recent = listener if days is not None or rest.held else None
        recs = recommender.recommend_user(user_id, k, mood=mood, dials=dials, listener=recent)
        cache.put(key, recs, expiry)
        return recs
    recs = recommender.recommend_user_live(
        user_id,
        k,
        mood,
        extra_items=profile.items,
        extra_plays=profile.plays,
        fresh_weight=live.fresh_weight,
        dials=dials,
        listener=listener,
        now=now,
    )
    live.on_fold_in(time.perf_counter() - started)
    cache.put(key, recs, expiry)
    return recs


def ban_expiry(profile: Profile, now: float) -> float:
    """When the first ban holding at ``now`` lifts (a kept answer is stale from then on)."""
    until = profile.listener.ban_until
    held = until[until > now]
    return float(held.min()) if len(held) else math.inf
