"""Error answers: every failure a client can cause is a 4xx with a reason, never a 5xx."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from musicrec.api.events_schemas import first_refused_event
from musicrec.api.metrics import ASGIApp, Message, Receive, Scope, Send
from musicrec.errors import (
    MoodUnavailableError,
    NotFoundError,
    UnknownArtistError,
    UnknownUserError,
)

log = logging.getLogger(__name__)


def error_response(
    status: int,
    detail: Any,
    suggestions: list[str] | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """The one error body (``ErrorResponse``); ASCII-escaped so odd echoed input encodes."""
    payload: dict[str, Any] = {"detail": str(detail), "suggestions": suggestions or []}
    if errors:
        payload["errors"] = errors
    payload.update(extra or {})
    body = json.dumps(payload, ensure_ascii=True, default=str)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echoing "input" could include NaN or huge payloads: keep location, message and type.
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg")),
            "type": str(err.get("type")),
        }
        for err in exc.errors()
    ]


def _summary(errors: list[dict[str, Any]]) -> str:
    """One line naming each invalid part: ``body.k: Input should be ...; query.q: ...``."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more if parts else "invalid request"


def _suggestions(exc: RequestValidationError) -> list[str]:
    """Close valid names an error offers (an unknown tag in the list dials)."""
    for err in exc.errors():
        found = (err.get("ctx") or {}).get("suggestions")
        if isinstance(found, list):
            return [str(name) for name in found]
    return []


def install_error_handlers(app: FastAPI) -> None:
    """Map validation, lookup and HTTP errors to JSON answers, and count lookups."""

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc)
        event = None
        if request.method == "POST" and request.url.path == "/events":
            request.app.state.live_metrics.rejected.labels(reason="invalid").inc()
            event = first_refused_event(errors)  # named as the event validation names it
        return error_response(422, _summary(errors), _suggestions(exc), errors=errors, extra=event)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names only the first route of the path
            headers = {**(headers or {}), "Allow": _allowed(request)}
        return error_response(exc.status_code, exc.detail, headers=headers)

    @app.exception_handler(NotFoundError)
    async def on_not_found(request: Request, exc: NotFoundError) -> Response:
        metrics = request.app.state.metrics
        suggestions = exc.suggestions
        if isinstance(exc, UnknownUserError):
            metrics.lookup("user", known=False)
            suggestions = request.app.state.forgotten.visible(suggestions)
        elif isinstance(exc, UnknownArtistError):
            metrics.lookup("artist", known=False, count=getattr(exc, "count", 1))
        return error_response(404, str(exc), suggestions)

    @app.exception_handler(MoodUnavailableError)
    async def on_unavailable_mood(request: Request, exc: MoodUnavailableError) -> Response:
        return error_response(409, str(exc))


class BodyLimitMiddleware:
    """Refuse bodies above ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await error_response(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if length > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, self._message())(scope, receive, send)


def _allowed(request: Request) -> str:
    """Every method some route of the app serves at this path (several routes may share it)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))
