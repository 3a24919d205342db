"""The FastAPI application factory.

``create_app(settings)`` wires routers, error handlers and middleware; the model is loaded
in ``lifespan`` (never at import) and kept on ``app.state.recommender``.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from musicrec import __version__
from musicrec.api import experiments_runtime
from musicrec.api.auth import install_auth
from musicrec.api.errors import BodyLimitMiddleware, install_error_handlers
from musicrec.api.forgotten import AccessRefresher, ForgottenListeners
from musicrec.api.live_metrics import LiveMetrics
from musicrec.api.loader import load_recommender
from musicrec.api.metrics import ApiMetrics, MetricsMiddleware
from musicrec.api.openapi import install_openapi
from musicrec.api.routes import ROUTERS
from musicrec.api.settings import Settings, get_settings
from musicrec.api.watch import ModelWatcher, remember
from musicrec.errors import ModelLoadError, MusicrecError
from musicrec.events.store import EventStore

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the configured model; without one the API runs degraded (/ready answers 503)."""
    settings: Settings = app.state.settings
    metrics: ApiMetrics = app.state.metrics
    if settings.events_url:
        try:
            app.state.event_store = EventStore(
                settings.events_url, group_commit=True, writer=settings.events_writer
            )
        except (MusicrecError, ImportError) as exc:  # e.g. a server database without its driver
            log.error("event store unavailable (%s); serving without events", exc)
    forgotten: ForgottenListeners = app.state.forgotten
    await run_in_threadpool(forgotten.refresh, app.state.event_store)
    refresher = AccessRefresher(access_checks(app), settings.access_refresh_s)
    refresher.start()
    watcher = app.state.watcher = ModelWatcher(app, settings.watch_interval_s)
    target = await run_in_threadpool(watcher.target)  # a replica pointer wins over the config
    if target and app.state.recommender is None:
        try:
            app.state.recommender = await run_in_threadpool(load_recommender, target, settings)
            remember(app, target, Path(app.state.recommender.artifact.path))
        except ModelLoadError as exc:
            log.error("%s; serving without a model until POST /admin/reload", exc)
    elif not target:
        log.warning("no model configured (MUSICREC_MODEL); /ready answers 503")
    # What is loaded now lives as long as the process: keep it out of the cyclic collector,
    # whose full passes over a full-scale model's objects (117 ms) paused every request.
    gc.collect()
    gc.freeze()
    metrics.set_model(app.state.recommender)
    app.state.live_metrics.set_model(app.state.recommender)
    await run_in_threadpool(experiments_runtime.start, app)  # impressions, running experiments
    if settings.watch_interval_s > 0:
        watcher.start()
    try:
        yield
    finally:
        await run_in_threadpool(refresher.stop)
        if settings.watch_interval_s > 0:
            await run_in_threadpool(watcher.stop)
        await run_in_threadpool(experiments_runtime.stop, app)  # commits queued impressions
        if app.state.event_store is not None:
            app.state.event_store.close()
        metrics.close()


def access_checks(app: FastAPI) -> list[Callable[[], Any]]:
    """What the access refresher runs every interval: the keys file and the tombstones."""
    checks: list[Callable[[], Any]] = [lambda: app.state.forgotten.refresh(app.state.event_store)]
    keyring = app.state.keyring
    if keyring is not None:

        def keys() -> None:
            if keyring.refresh():
                app.openapi_schema = None  # whether /metrics needs a key may have changed

        checks.append(keys)
    return checks


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; ``settings`` defaults to the environment (``MUSICREC_*``)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="musicrec",
        version=__version__,
        summary="Music recommendations from Last.fm listening data (implicit ALS).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    app.state.recommender = None
    app.state.reload_lock = threading.Lock()
    app.state.live_metrics = LiveMetrics(app.state.metrics)
    app.state.event_store = None  # opened in lifespan when MUSICREC_EVENTS_URL is set
    app.state.served_target = None  # what the served model was loaded from
    app.state.served_stamp = None  # and the identity of its files
    app.state.watcher = None  # the ModelWatcher, made in lifespan
    app.state.forgotten = ForgottenListeners()
    app.state.experiments = None  # the ExperimentRuntime, made in lifespan
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    admin_key = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    install_auth(app, settings.api_keys_file, admin_key, settings.quota_dir)  # inside CORS
    install_openapi(app)
    origins = settings.cors_origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials="*" not in origins,  # never a wildcard together with credentials
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees all
    return app
