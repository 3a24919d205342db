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
from collections.abc import Callable

from fastapi import FastAPI, Request

from musicrec.api.deps import runtime
from musicrec.api.loader import load_recommender
from musicrec.api.settings import Settings
from musicrec.errors import MusicrecError
from musicrec.events.impressions import ImpressionWriter
from musicrec.events.store import EventStore
from musicrec.online.metrics import ExperimentMetrics
from musicrec.online.serving import REQUEST_ID_HEADER, ExperimentRuntime, Served, request_id
from musicrec.serving.recommender import Rec, Recommender

log = logging.getLogger(__name__)


def start(app: FastAPI) -> ExperimentRuntime:
    """Open the impression writer (with an event store) and apply running experiments."""
    settings: Settings = app.state.settings
    store: EventStore | None = app.state.event_store
    writer = None
    if store is not None and settings.impressions:
        try:
            writer = ImpressionWriter(store, flush_interval_s=settings.impressions_flush_s).start()
        except MusicrecError as exc:
            log.error("impressions not logged: %s", exc)
    online = ExperimentRuntime(
        store,
        lambda model: load_recommender(model, settings),
        ExperimentMetrics(app.state.metrics.registry),
        writer,
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


def serve(
    request: Request, listener: str, k: int, make: Callable[[Recommender], list[Rec]]
) -> Served:
    """``make``'s list for ``listener`` from the model their experiment gives them."""
    champion, _ = runtime(request)
    rid = request_id(request.headers.get(REQUEST_ID_HEADER))
    online = _online(request)
    if online is None:
        return Served(rid, make(champion), champion.version)
    return online.serve(rid, listener, champion, make, k)


def outcome(request: Request, rid: str, position: int | None, kind: str) -> None:
    """Credit an event answering ``rid`` to its arm in this worker's metrics."""
    online = _online(request)
    if online is not None:
        online.outcome(rid, position, kind)
