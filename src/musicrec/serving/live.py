"""The live side of serving: a listener's stored events applied to their recommendations."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.store import EventStore
from musicrec.serving.profile import build_profile
from musicrec.serving.recommender import Rec, Recommender

log = logging.getLogger(__name__)


def _nothing(*_: object) -> None:
    return None


@dataclass(frozen=True)
class LiveEvents:
    """Where a listener's events come from and how they count (the API's settings).

    ``on_unreadable`` is told when the store cannot be read, ``on_fold_in`` how long reading
    and folding in took (the API's metrics).
    """

    store: EventStore | None
    events_per_user: int = 10_000
    fresh_weight: float = 0.5
    on_unreadable: Callable[[], None] = _nothing
    on_fold_in: Callable[[float], None] = _nothing


def user_recommendations(
    recommender: Recommender,
    user_id: str,
    k: int,
    live: LiveEvents,
    mood: str | None = None,
    exclude_recent_days: float | None = None,
) -> list[Rec]:
    """Top-``k`` for ``user_id`` with their events folded in (model only without a store).

    A store that cannot be read degrades to the model's answer, logged, never a failed request.
    """
    if live.store is None:
        return recommender.recommend_user(user_id, k, mood=mood)
    started = time.perf_counter()
    try:
        events = live.store.user_events(user_id, limit=live.events_per_user)
    except (StoreError, sa.exc.SQLAlchemyError) as exc:
        log.warning("event store unreadable, serving the model alone: %s", exc)
        live.on_unreadable()
        return recommender.recommend_user(user_id, k, mood=mood)
    if events.empty:
        return recommender.recommend_user(user_id, k, mood=mood)
    profile = build_profile(recommender, events, user_id, exclude_recent_days)
    if profile.empty:
        return recommender.recommend_user(user_id, k, mood=mood)
    recs = recommender.recommend_user_live(
        user_id,
        k,
        mood,
        extra_items=profile.items,
        extra_plays=profile.plays,
        banned=profile.banned,
        exclude=profile.recent,
        fresh_weight=live.fresh_weight,
    )
    live.on_fold_in(time.perf_counter() - started)
    return recs
