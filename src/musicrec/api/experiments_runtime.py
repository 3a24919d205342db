"""The API side of online experiments: request ids, arm choice and impressions per list.

Every route that returns a listener's list asks :func:`serve` for it (the listener's
experiment arm, if any, else the champion); :func:`musicrec.api.convert.respond` then adds
``request_id`` (also the ``X-Request-ID`` header; a valid id the client sent is kept), and
``experiment`` / ``arm`` (``teams`` in interleave mode) when an experiment served the list,
and queues the list's impressions for the batched writer.

:func:`start` (in the app's lifespan) opens the impression writer on the event store and
applies the running experiments; :func:`check` (at every watch interval) picks up started
and stopped experiments and enforces guardrails; :func:`stop` commits queued impressions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from musicrec.api.deps import runtime
from musicrec.api.loader import load_recommender
from musicrec.api.settings import Settings
from musicrec.errors import MusicrecError, StoreError
from musicrec.events.impression_writer import ImpressionWriter, forwarding_writer
from musicrec.events.outcomes import record_requests
from musicrec.events.schema import Event
from musicrec.events.store import EventStore
from musicrec.events.writer import Appended
from musicrec.online.metrics import ExperimentMetrics
from musicrec.online.serving import (
    REQUEST_ID_HEADER,
    ExperimentRuntime,
    Make,
    Served,
    request_id,
)

log = logging.getLogger(__name__)


def start(app: FastAPI) -> ExperimentRuntime:
    """Open the impression writer (with an event store) and apply running experiments.

    With a host writer (``events_writer``) the rows are handed to it; else committed here.
    """
    settings: Settings = app.state.settings
    store: EventStore | None = app.state.event_store
    writer = None
    if store is not None and settings.impressions:
        try:
            if settings.events_writer:  # the host's writer commits them (serve --workers N)
                writer = forwarding_writer(store, settings.events_writer)
            else:
                writer = ImpressionWriter(store, flush_interval_s=settings.impressions_flush_s)
                writer.start()
        except MusicrecError as exc:
            log.error("impressions not logged: %s", exc)
    metrics = getattr(app.state, "experiment_metrics", None)
    if metrics is None:  # once per app: a second lifespan must not register them again
        metrics = app.state.experiment_metrics = ExperimentMetrics(app.state.metrics.registry)
    online = ExperimentRuntime(
        store, lambda model: load_recommender(model, settings), metrics, writer
    )
    app.state.experiments = online
    check(app)
    return online


def check(app: FastAPI) -> None:
    """Pick up started and stopped experiments; stop arms that breach their guardrails."""
    online: ExperimentRuntime | None = getattr(app.state, "experiments", None)
    if online is None:
        return
    try:
        online.enforce()
        online.refresh()
    except MusicrecError as exc:  # an unreadable store: keep serving what is loaded
        log.warning("experiments not refreshed: %s", exc)


def stop(app: FastAPI) -> None:
    online: ExperimentRuntime | None = getattr(app.state, "experiments", None)
    if online is not None:
        online.close()


def _online(request: Request) -> ExperimentRuntime | None:
    online: ExperimentRuntime | None = getattr(request.app.state, "experiments", None)
    return online


def serve(request: Request, listener: str, k: int, make: Make) -> Served:
    """``make``'s list of ``k`` for ``listener`` from the model their experiment gives them
    (``make(model, n)``: that model's list of ``n`` under the request's rules; an exploring
    arm asks for more and samples ``k`` of them)."""
    champion, _ = runtime(request)
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    online = _online(request)
    if online is None:
        return Served(rid, make(champion, k), champion.version)
    return online.serve(rid, listener, champion, make, k)


async def link_events(
    request: Request,
    store: EventStore,
    events: Sequence[Event],
    appended: Appended,
    request_ids: Sequence[str | None],
    positions: Sequence[int | None],
) -> None:
    """Remember which list each newly stored event answers, and credit its arm's metrics.

    A link that cannot be written is logged: the event is stored, and the report then
    attributes it by the time window instead.
    """
    if not any(request_ids):
        return
    skipped = set(appended.skipped)
    kept = [i for i in range(len(events)) if i not in skipped]
    rids = [request_ids[i] for i in kept]
    where = [positions[i] for i in kept]
    try:
        await run_in_threadpool(record_requests, store, appended.ids, rids, where)
    except StoreError as exc:
        log.warning("events stored without their request ids: %s", exc)
    for i in kept:
        rid = request_ids[i]
        if rid:
            outcome(request, rid, positions[i], events[i].kind)


def outcome(request: Request, rid: str, position: int | None, kind: str) -> None:
    """Credit an event answering ``rid`` to its arm in this worker's metrics."""
    online = _online(request)
    if online is not None:
        online.outcome(rid, position, kind)
