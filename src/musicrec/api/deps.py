"""Request dependencies as ``Annotated`` aliases: the runtime, settings and metrics."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from musicrec.api.live_metrics import LiveMetrics
from musicrec.api.metrics import ApiMetrics
from musicrec.api.settings import Settings
from musicrec.serving.live import LiveEvents
from musicrec.serving.recommender import Recommender


async def get_recommender(request: Request) -> Recommender:
    """The current model; one reference read per request, so a reload never splits one.

    The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in the thread
    pool, a hand-off that cost more than these attribute reads.
    """
    recommender: Recommender | None = request.app.state.recommender
    if recommender is None:
        raise HTTPException(status_code=503, detail="no model is loaded")
    return recommender


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def runtime(request: Request) -> tuple[Recommender, ApiMetrics]:
    """The current model and the metrics, for the hot routes, without dependency injection.

    The same answers as ``RecommenderDep`` and ``MetricsDep`` (503 without a model), minus
    FastAPI solving two sub-dependencies per request (a tenth of a user request's CPU).
    """
    state = request.app.state
    recommender: Recommender | None = state.recommender
    if recommender is None:
        raise HTTPException(status_code=503, detail="no model is loaded")
    metrics: ApiMetrics = state.metrics
    return recommender, metrics


def live_events(request: Request) -> LiveEvents:
    """The event store and settings a live answer reads, with the metrics it reports to."""
    state = request.app.state
    settings: Settings = state.settings
    metrics: LiveMetrics = state.live_metrics
    return LiveEvents(
        state.event_store,
        settings.artists_per_user,
        settings.fresh_weight,
        settings.fold_in_cache,
        on_unreadable=lambda: metrics.rejected.labels(reason="store_unreadable").inc(),
        on_fold_in=metrics.fold_in.observe,
        on_cache=lambda result: metrics.fold_in_cache.labels(result=result).inc(),
        cooldown=settings.cooldown if settings.impressions else None,
    )


def listener_events(request: Request, recommender: Recommender, user_id: str) -> LiveEvents:
    """:func:`live_events` for ``user_id``; a forgotten listener is unknown (404), whatever
    the model holds."""
    request.app.state.forgotten.check_user(user_id, recommender.version)
    return live_events(request)


def require_admin(
    request: Request,
    settings: Annotated[Settings, Depends(get_app_settings)],
    api_key: Annotated[str | None, Header(alias="X-API-Key", include_in_schema=False)] = None,
) -> None:
    """Without a keys file, admin routes answer 404 unless ``MUSICREC_ADMIN_API_KEY`` is set,
    and 401/403 without that key. With a keys file the auth middleware checked the scope.
    """
    if request.app.state.keyring is not None:
        return
    if settings.admin_api_key is None:
        raise HTTPException(
            status_code=404,
            detail="admin API disabled (set MUSICREC_ADMIN_API_KEY or MUSICREC_API_KEYS_FILE)",
        )
    if not api_key:
        raise HTTPException(status_code=401, detail="missing X-API-Key header")
    expected = settings.admin_api_key.get_secret_value()
    if not secrets.compare_digest(api_key.encode(), expected.encode()):
        raise HTTPException(status_code=403, detail="invalid X-API-Key")


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
AdminDep = Annotated[None, Depends(require_admin)]
