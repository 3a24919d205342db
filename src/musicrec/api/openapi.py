"""The OpenAPI document, made to tell the truth about every answer.

FastAPI documents each route's success and its own 422 body. This adds what the routes and
the middleware really answer: every 4xx/5xx with the one error body (``ErrorResponse``,
FastAPI's validation body replaced by it), 413 for bodies over the limit, and, with API keys,
the key in ``X-API-Key`` (or ``Authorization: Bearer``) with 401, 403 and 429 (with
``Retry-After``). ``tests/system/test_openapi_contract.py`` runs schemathesis with every
check against a served model, with keys and without, to keep it so.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from musicrec.api.auth import ADMIN, METRICS_SCOPE, PUBLIC_PATHS, ROUTE_SCOPES

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The same key as a bearer."},
}
# What each route answers besides its success and 422 (which FastAPI documents itself).
NO_MODEL = 503  # before a model is loaded
ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET", "/ready"): (NO_MODEL,),
    ("GET", "/metrics"): (503,),
    ("POST", "/recommend"): (404, 409, NO_MODEL),
    ("POST", "/similar"): (404, NO_MODEL),
    ("GET", "/charts"): (NO_MODEL,),
    ("GET", "/moods"): (NO_MODEL,),
    ("GET", "/users"): (NO_MODEL,),
    ("GET", "/users/{user_id}/recommendations"): (404, 409, NO_MODEL),
    ("POST", "/listeners/recommendations"): (404, NO_MODEL),
    ("GET", "/artists"): (NO_MODEL,),
    ("GET", "/artists/{name}/similar"): (404, NO_MODEL),
    ("GET", "/artists/map"): (NO_MODEL,),
    ("GET", "/model"): (NO_MODEL,),
    ("POST", "/admin/reload"): (404, 409),
    ("POST", "/events"): (404, 409, 503),
    ("GET", "/users/{user_id}/events"): (404,),
    ("GET", "/events/stats"): (404,),
    ("DELETE", "/users/{user_id}"): (409, 503),
}
DESCRIPTIONS = {
    400: "The request is malformed (e.g. an invalid Content-Length header).",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key lacks the scope this route needs.",
    404: "Not found: an unknown listener, artist, mood or model, or a disabled feature.",
    409: "Conflicts with the current state: a mood this model cannot serve, an event of a "
    "forgotten listener, a reload already running.",
    413: "The request body is larger than the limit.",
    422: "The request does not match this document.",
    429: "The API key is over its quota; retry after Retry-After seconds.",
    503: "Not available now (no model loaded yet, or the event store is unreachable).",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _statuses(method: str, path: str, operation: dict[str, Any], app: FastAPI) -> set[int]:
    statuses = set(ROUTE_ERRORS.get((method, path), ()))
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if operation.get("requestBody"):
        statuses |= {400, 413}
    if _needs_key(method, path, app):
        statuses |= {401, 403, 429} if app.state.keyring is not None else {401, 403, 404}
    return statuses


def _needs_key(method: str, path: str, app: FastAPI) -> bool:
    """Whether the route asks for a key, as :class:`~musicrec.api.auth.AuthMiddleware` does."""
    scope = ROUTE_SCOPES.get((method, path), ADMIN)
    keyring = app.state.keyring
    if keyring is None:  # open API: only the admin routes, with MUSICREC_ADMIN_API_KEY
        return scope == ADMIN and path in {"/admin/reload", "/users/{user_id}"}
    if path in PUBLIC_PATHS:
        return False
    return scope != METRICS_SCOPE or bool(keyring.metrics_protected)


def document(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Add every answer, the one error body and the key requirement to ``schema``."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    secured = False
    for path, operations in schema.get("paths", {}).items():
        for verb, operation in operations.items():
            method = verb.upper()
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(method, path, operation, app)):
                answer: dict[str, Any] = {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
                if status == 429:
                    answer["headers"] = RETRY_AFTER
                responses[str(status)] = answer
            if _needs_key(method, path, app):
                operation["security"] = SECURITY
                secured = True
    if secured:
        components["securitySchemes"] = SECURITY_SCHEMES
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the documented schema from ``/openapi.json`` (built once, rebuilt on reset)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate(), app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
