"""The HTTP API: ``create_app()`` builds a FastAPI application around a loaded model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from musicrec.api.app import create_app
    from musicrec.api.settings import Settings, get_settings

__all__ = ["Settings", "create_app", "get_settings"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not pull in FastAPI or prometheus_client (whose
    # multiprocess mode is decided when it is first imported).
    if name == "create_app":
        from musicrec.api.app import create_app

        return create_app
    if name in ("Settings", "get_settings"):
        from musicrec.api import settings

        return getattr(settings, name)
    raise AttributeError(name)
