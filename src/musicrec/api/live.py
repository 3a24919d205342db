"""The live side of serving: a listener's stored events applied to their recommendations."""

from __future__ import annotations

import logging
import time
from typing import cast

import sqlalchemy as sa
from fastapi import Request

from musicrec.api.live_metrics import LiveMetrics
from musicrec.api.settings import Settings
from musicrec.errors import StoreError
from musicrec.events.cache import cache_for, recency_expiry
from musicrec.events.store import EventStore
from musicrec.serving.profile import DAY_S, build_profile, watermark
from musicrec.serving.recommender import Rec, Recommender

log = logging.getLogger(__name__)


def user_recommendations(
    request: Request,
    recommender: Recommender,
    user_id: str,
    k: int,
    mood: str | None = None,
    exclude_recent_days: float | None = None,
) -> list[Rec]:
    """Top-``k`` for ``user_id`` with their events folded in (model only without a store).

    A store that cannot be read degrades to the model's answer, logged, never a failed request.
    """
    store: EventStore | None = request.app.state.event_store
    if store is None:
        return recommender.recommend_user(user_id, k, mood=mood)
    settings: Settings = request.app.state.settings
    live: LiveMetrics = request.app.state.live_metrics
    started, now = time.perf_counter(), time.time()
    # The answer is kept until the listener's events change (events/cache.py), and built from
    # their events compacted per artist (events/state.py): neither grows with their events.
    cache = cache_for(recommender, settings.fold_in_cache)
    try:
        version = store.listener_version(user_id)
        key = (store.url, user_id, version, k, mood, exclude_recent_days, settings.fresh_weight)
        if not version:  # no events: the model's answer
            return recommender.recommend_user(user_id, k, mood=mood)
        cached = cache.get(key, now)
        if cached is not None:
            live.fold_in_cache.labels(result="hit").inc()
            return cast(list[Rec], cached)
        events = store.compacted_events(
            user_id, watermark(recommender), limit=settings.artists_per_user
        )
    except (StoreError, sa.exc.SQLAlchemyError) as exc:
        log.warning("event store unreadable, serving the model alone: %s", exc)
        live.rejected.labels(reason="store_unreadable").inc()
        return recommender.recommend_user(user_id, k, mood=mood)
    if events.empty:
        return recommender.recommend_user(user_id, k, mood=mood)
    live.fold_in_cache.labels(result="miss").inc()
    window = exclude_recent_days * DAY_S if exclude_recent_days is not None else None
    profile = build_profile(recommender, events, user_id, exclude_recent_days, now=now)
    if profile.empty:
        recs = recommender.recommend_user(user_id, k, mood=mood)
        cache.put(key, recs, recency_expiry(events["timestamp"], window, now))
        return recs
    recs = recommender.recommend_user_live(
        user_id,
        k,
        mood,
        extra_items=profile.items,
        extra_plays=profile.plays,
        banned=profile.banned,
        exclude=profile.recent,
        fresh_weight=settings.fresh_weight,
    )
    live.fold_in.observe(time.perf_counter() - started)
    cache.put(key, recs, recency_expiry(events["timestamp"], window, now))
    return recs
