"""Scoped API keys and quotas, checked before routing by one ASGI middleware.

Without a keys file (``MUSICREC_API_KEYS_FILE``) the API is open, as on a laptop; ``/admin``
and deletion then still need ``MUSICREC_ADMIN_API_KEY`` (see :mod:`musicrec.api.deps`).
With a keys file every route needs a key in ``X-API-Key`` (or ``Authorization: Bearer``)
that carries the route's scope (:data:`ROUTE_SCOPES`): no or an unknown key is 401, a key
without the scope 403, a key over its quota 429 with ``Retry-After``; each with a reason.
``/health``, ``/ready`` and the API documents stay open; ``/metrics`` needs the ``metrics``
scope once some active key has it, and is open before.

Workers re-read the keys file when it changes (checked every watch interval), so a revoked
key stops working everywhere within that interval. The check costs a SHA-256 of the key and
two dictionary lookups, plus the shared token bucket for a key with a quota.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter

from musicrec.access.keys import ApiKey, digest, read_keys
from musicrec.api.errors import error_response
from musicrec.api.metrics import MULTIPROC_ENV, ApiMetrics, ASGIApp, Receive, Scope, Send
from musicrec.api.quota import Buckets, open_buckets
from musicrec.errors import ConfigError

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/redoc"})
ADMIN = "admin"
ENV_ADMIN_NAME = "env-admin-key"  # MUSICREC_ADMIN_API_KEY, accepted as an admin key
# Which scope each route needs. A route missing here needs "admin" (safe by default), and
# tests/unit/test_auth.py fails until it is listed.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/users"): "read",
    ("GET", "/users/{user_id}/recommendations"): "read",
    ("POST", "/recommend"): "read",
    ("POST", "/similar"): "read",
    ("GET", "/charts"): "read",
    ("GET", "/moods"): "read",
    ("POST", "/listeners/recommendations"): "read",
    ("GET", "/artists"): "read",
    ("GET", "/artists/{name}/similar"): "read",
    ("GET", "/artists/map"): "read",
    ("GET", "/model"): "read",
    ("POST", "/events"): "events",
    ("GET", "/users/{user_id}/events"): "events",
    ("GET", "/events/stats"): ADMIN,
    ("GET", "/model/workers"): ADMIN,
    ("POST", "/admin/reload"): ADMIN,
    ("DELETE", "/users/{user_id}"): ADMIN,
    ("GET", "/admin/experiments"): ADMIN,
    ("POST", "/admin/experiments"): ADMIN,
    ("POST", "/admin/experiments/{name}/stop"): ADMIN,
    ("GET", "/admin/experiments/{name}/report"): ADMIN,
    ("GET", "/metrics"): "metrics",
}
METRICS_SCOPE = "metrics"


@dataclass(frozen=True)
class Grant:
    """A loaded key: its record and its slot in the shared quota state."""

    key: ApiKey
    slot: int


class KeyRing:
    """The keys of one keys file, re-read when the file changes."""

    def __init__(self, path: str | Path, admin_key: str | None = None):
        self.path = Path(path)
        self.admin_key = admin_key
        self.by_digest: dict[str, Grant] = {}
        self.metrics_protected = False
        self._stamp: tuple[int, int, int] | None = None
        self.load()

    def _file_stamp(self) -> tuple[int, int, int]:
        info = os.stat(self.path)
        return info.st_ino, info.st_mtime_ns, info.st_size

    def load(self) -> None:
        """Read the file (raises :class:`ConfigError` when it is missing or malformed)."""
        stamp = self._file_stamp() if self.path.exists() else None
        keys = read_keys(self.path)
        grants = {k.sha256: Grant(k, slot) for slot, k in enumerate(keys)}
        if self.admin_key:
            env = ApiKey(ENV_ADMIN_NAME, "envadmin", digest(self.admin_key), (ADMIN,))
            grants[env.sha256] = Grant(env, len(keys))
        self.by_digest = grants
        self.seen: dict[str, Grant] = {}  # presented keys already hashed (valid ones only)
        self.metrics_protected = any(k.active and METRICS_SCOPE in k.scopes for k in keys)
        self._stamp = stamp

    def lookup(self, key: str) -> Grant | None:
        """The grant of a presented key; valid keys are remembered (at most one per grant),
        so the hash is computed once per key and worker, not per request."""
        grant = self.by_digest.get(digest(key))
        if grant is not None and len(self.seen) < len(self.by_digest):
            self.seen = {**self.seen, key: grant}  # replaced, never mutated: readers see one
        return grant

    def refresh(self) -> bool:
        """Re-read the file if it changed; keep the loaded keys if it cannot be read."""
        try:
            if self._file_stamp() == self._stamp:
                return False
            self.load()
        except (OSError, ConfigError) as exc:
            log.error("keeping the loaded API keys: %s", exc)
            return False
        log.info("API keys reloaded from %s (%d keys)", self.path, len(self.by_digest))
        return True


class AuthMetrics:
    """Requests per key name (never the key) and refusals without a usable key."""

    def __init__(self, api: ApiMetrics):
        self.by_key = Counter(
            "api_key_requests_total",
            "Requests by API key name and outcome (allowed, forbidden, over_quota).",
            ["key", "outcome"],
            registry=api.registry,
        )
        self.refused = Counter(
            "api_auth_failures_total",
            "Requests refused for want of a valid key, by reason (missing, unknown, revoked).",
            ["reason"],
            registry=api.registry,
        )
        self._children: dict[tuple[str, str], Any] = {}

    def count(self, key: str, outcome: str) -> None:
        child = self._children.get((key, outcome))
        if child is None:
            child = self._children[(key, outcome)] = self.by_key.labels(key=key, outcome=outcome)
        child.inc()


@dataclass(frozen=True)
class RouteLabel:
    """The matched route template, where the metrics middleware looks for it."""

    path: str


class RouteScopes:
    """The scope a request needs, from its method and path, before routing.

    Built from the app's OpenAPI paths (the public list of its routes): exact paths in a
    dictionary, templated ones (``/users/{user_id}/events``) as compiled patterns.
    """

    def __init__(self, app: FastAPI):
        self.static: dict[tuple[str, str], tuple[str, RouteLabel]] = {}
        self.dynamic: list[tuple[str, re.Pattern[str], str, RouteLabel]] = []
        for path, operations in app.openapi()["paths"].items():
            label = RouteLabel(path)
            for verb in operations:
                method = verb.upper()
                scope = ROUTE_SCOPES.get((method, path), ADMIN)
                if "{" in path:
                    pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))
                    self.dynamic.append((method, re.compile(f"^{pattern}$"), scope, label))
                else:
                    self.static[(method, path)] = (scope, label)

    def find(self, method: str, path: str) -> tuple[str, RouteLabel] | None:
        hit = self.static.get((method, path))
        if hit is not None:
            return hit
        for verb, pattern, scope, label in self.dynamic:
            if verb == method and pattern.match(path):
                return scope, label
        return None


def presented_key(scope: Scope) -> str | None:
    """The key of ``X-API-Key`` or ``Authorization: Bearer``, if any."""
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return value.decode("latin-1")
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    return None


class AuthMiddleware:
    """Refuse requests without the right key (401/403) or over quota (429)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI):
        self.app = app
        self.fastapi_app = fastapi_app
        self._routes: RouteScopes | None = None  # built on the first request: routes are final

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keyring: KeyRing | None = self.fastapi_app.state.keyring
        if keyring is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path in PUBLIC_PATHS or method == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if self._routes is None:
            self._routes = RouteScopes(self.fastapi_app)
        found = self._routes.find(method, path)
        needed = None
        if found is not None:
            needed, scope["route"] = found  # the metrics label refusals by route
            if needed == METRICS_SCOPE and not keyring.metrics_protected:
                await self.app(scope, receive, send)
                return
        refusal = self.check(keyring, scope, method, needed, found)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(
        self,
        keyring: KeyRing,
        scope: Scope,
        method: str,
        needed: str | None,
        found: tuple[str, RouteLabel] | None,
    ) -> Any:
        """``None`` when the request may go on, else the refusal to send."""
        metrics: AuthMetrics = self.fastapi_app.state.auth_metrics
        key = presented_key(scope)
        if not key:
            metrics.refused.labels(reason="missing").inc()
            return _unauthorized("missing API key: send it in the X-API-Key header")
        grant = keyring.seen.get(key) or keyring.lookup(key)
        if grant is None:
            metrics.refused.labels(reason="unknown").inc()
            return _unauthorized("unknown API key")
        record = grant.key
        if record.revoked_at is not None:
            metrics.refused.labels(reason="revoked").inc()
            return _unauthorized(f"API key {record.name!r} was revoked")
        scope.setdefault("state", {})["api_key_name"] = record.name
        if needed is not None and needed not in record.scopes:
            metrics.count(record.name, "forbidden")
            where = f"{method} {found[1].path}" if found is not None else method
            return error_response(
                403, f"API key {record.name!r} lacks the {needed!r} scope needed for {where}"
            )
        if record.rate is not None and record.burst is not None:
            buckets: Buckets = self.fastapi_app.state.quota
            wait = buckets.take(grant.slot, record.id, record.rate, record.burst, time.monotonic())
            if wait > 0:
                metrics.count(record.name, "over_quota")
                retry = max(1, math.ceil(wait))
                return error_response(
                    429,
                    f"API key {record.name!r} is over its quota of {record.rate:g} requests/s "
                    f"(burst {record.burst}); retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
        metrics.count(record.name, "allowed")
        return None


def _unauthorized(reason: str) -> Any:
    return error_response(401, reason, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


def install_auth(
    app: FastAPI, keys_file: Path | None, admin_key: str | None, quota_dir: Path | None
) -> None:
    """Load the keys (``ConfigError`` if the file is unusable) and add the middleware."""
    app.state.keyring = KeyRing(keys_file, admin_key) if keys_file is not None else None
    app.state.auth_metrics = AuthMetrics(app.state.metrics)
    app.state.quota = open_buckets(quota_dir or os.environ.get(MULTIPROC_ENV))
    app.add_middleware(AuthMiddleware, fastapi_app=app)
