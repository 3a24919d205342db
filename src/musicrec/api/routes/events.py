"""Listening events in (durable before acknowledged), and the workers that serve them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from musicrec.api import experiments_runtime
from musicrec.api.convert import elapsed_ms
from musicrec.api.errors import error_response
from musicrec.api.events_schemas import (
    EventBatch,
    EventsAccepted,
    EventStats,
    StoredEvent,
    UserEventsResponse,
    WorkerInfo,
    WorkersResponse,
)
from musicrec.api.live_metrics import LiveMetrics
from musicrec.api.schemas import NAME_MAX_LENGTH, ErrorResponse
from musicrec.errors import EventError, StoreError
from musicrec.events.bans import ban_notice
from musicrec.events.outcomes import split_links
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore

router = APIRouter(prefix="", tags=["events"])
HEARTBEAT_WINDOW_FLOOR_S = 30.0


def _store(request: Request) -> EventStore:
    store: EventStore | None = request.app.state.event_store
    if store is None:
        raise HTTPException(404, "events are disabled (set MUSICREC_EVENTS_URL)")
    return store


@router.post(
    "/events",
    status_code=201,
    response_model=EventsAccepted,
    responses={
        200: {"model": EventsAccepted, "description": "Every event was stored already."},
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def post_events(request: Request, body: EventBatch) -> EventsAccepted | Response:
    """Store a batch of listening events; answered only once the batch is durable.

    A batch is all-or-nothing: one the schema refuses is answered 422, one holding an
    event of a forgotten listener 409 (the event named by ``index``, ``field`` and
    ``reason``), and nothing of it is stored. The listener's next recommendations fold the
    new events in. An event whose ``event_id`` the listener already has is acknowledged but
    not stored again (``duplicates``), so a batch may be retried safely; when nothing in it
    was new the answer is 200 instead of 201.
    """
    started = time.perf_counter()
    store = _store(request)
    live: LiveMetrics = request.app.state.live_metrics
    try:
        raws, request_ids, positions = split_links(body.raw())  # which list each answers
        events = validate_batch(raws, accept_until=True)
    except EventError as exc:
        live.rejected.labels(reason="invalid").inc()
        return _refusal(422, exc)
    try:
        request.app.state.forgotten.check_events(events)
    except EventError as exc:
        live.rejected.labels(reason="forgotten").inc()
        return _refusal(409, exc)
    try:  # through the host's writer without a thread when there is one (--workers N)
        if store.async_writer is not None:
            appended = (await store.async_writer.append_batches([events]))[0]
        else:
            appended = await run_in_threadpool(store.append, events)
    except (StoreError, sa.exc.SQLAlchemyError) as exc:
        live.rejected.labels(reason="store_unavailable").inc()
        return error_response(503, f"events not stored: {exc}", headers={"Retry-After": "1"})
    await experiments_runtime.link_events(request, store, events, appended, request_ids, positions)
    ids = appended.ids
    skipped = set(appended.skipped)
    kinds = Counter(e.kind for i, e in enumerate(events) if i not in skipped)
    for kind, count in kinds.items():
        live.ingested.labels(kind=kind).inc(count)
    if appended.duplicates:
        live.duplicates.inc(appended.duplicates)
    accepted = EventsAccepted(
        accepted=len(events),
        stored=len(ids),
        duplicates=appended.duplicates,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
        took_ms=elapsed_ms(started, time.perf_counter()),
        ban_notice=ban_notice(events, time.time()),
    )
    # Serialised here: the hot path of ingestion skips FastAPI's response validation.
    status = 201 if ids else 200
    return Response(accepted.model_dump_json(), status, media_type="application/json")


def _refusal(status: int, exc: EventError) -> Response:
    body = ErrorResponse(detail=str(exc), index=exc.index, field=exc.field, reason=exc.reason)
    return Response(body.model_dump_json(), status, media_type="application/json")


@router.get(
    "/users/{user_id}/events",
    response_model=UserEventsResponse,
    responses={404: {"model": ErrorResponse}},
)
def user_events(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> UserEventsResponse:
    """A listener's most recent stored events."""
    frame = _store(request).user_events(user_id, limit=limit)
    rows = frame.iloc[::-1].to_dict("records")
    return UserEventsResponse(
        user_id=user_id,
        events=[
            StoredEvent(
                id=int(r["id"]),
                artist=str(r["artist"]),
                kind=str(r["kind"]),
                plays=int(r["plays"]),
                timestamp=int(r["timestamp"]),
            )
            for r in rows
        ],
    )


@router.get("/events/stats", response_model=EventStats, responses={404: {"model": ErrorResponse}})
def event_stats(request: Request) -> EventStats:
    """How many events the store holds, by kind, and the highest id."""
    store = _store(request)
    return EventStats(**store.stats(), store=repr(store))


@router.get("/model/workers", response_model=WorkersResponse)
def model_workers(request: Request) -> WorkersResponse:
    """Every API worker (of all replicas sharing the event store) and the version it serves."""
    interval = request.app.state.settings.watch_interval_s
    store: EventStore | None = request.app.state.event_store
    window = max(HEARTBEAT_WINDOW_FLOOR_S, 3 * interval)
    rows = store.workers(window) if store is not None else []
    return WorkersResponse(
        workers=[WorkerInfo(**row) for row in sorted(rows, key=lambda r: r["worker"])],
        watch_interval_s=interval,
    )
