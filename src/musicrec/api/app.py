"""The FastAPI application factory.

``create_app(settings)`` wires routers, error handlers and middleware; the model is loaded
in ``lifespan`` (never at import) and kept on ``app.state.recommender``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from musicrec import __version__
from musicrec.api.errors import BodyLimitMiddleware, install_error_handlers
from musicrec.api.loader import ModelLoadError, load_recommender
from musicrec.api.metrics import ApiMetrics, MetricsMiddleware
from musicrec.api.routes import ROUTERS
from musicrec.api.settings import Settings, get_settings

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the configured model; without one the API runs degraded (/ready answers 503)."""
    settings: Settings = app.state.settings
    metrics: ApiMetrics = app.state.metrics
    if settings.model and app.state.recommender is None:
        try:
            app.state.recommender = await run_in_threadpool(
                load_recommender, settings.model, settings
            )
        except ModelLoadError as exc:
            log.error("%s; serving without a model until POST /admin/reload", exc)
    elif not settings.model:
        log.warning("no model configured (MUSICREC_MODEL); /ready answers 503")
    metrics.set_model(app.state.recommender)
    try:
        yield
    finally:
        metrics.close()


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
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    origins = settings.cors_origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials="*" not in origins,  # never a wildcard together with credentials
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-API-Key"],
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees all
    return app
