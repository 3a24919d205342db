"""API routers, one module per resource; each handler only validates, calls and converts."""

from __future__ import annotations

from fastapi import APIRouter

from musicrec.api.routes import (
    admin,
    admin_experiments,
    artists,
    embedding,
    events,
    forget,
    health,
    listeners,
    model,
    recommend,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    recommend.router,
    users.router,
    listeners.router,
    artists.router,
    embedding.router,
    model.router,
    admin.router,
    admin_experiments.router,
    events.router,
    forget.router,
)
