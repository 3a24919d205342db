"""Prometheus metrics of the API, correct with one process or several uvicorn workers.

Names are a contract with the Grafana dashboard and alert rules in ``deploy/``. With
``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its samples to files there and
``/metrics`` aggregates them (gauges keep the live workers' maximum); otherwise each app gets
its own registry, so tests can build many apps in one process.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

if TYPE_CHECKING:
    from musicrec.serving.recommender import Rec, Recommender

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_CACHED_LABELS = 10_000  # label combinations kept per metric (routes x methods x statuses)
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
POPULARITY_BUCKETS = tuple(float(b) for b in range(1, 16))  # log1p(listeners)
ERROR_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation",
    503: "unavailable",
}


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def error_kind(status: int) -> str:
    return ERROR_KINDS.get(status, "server_error" if status >= 500 else "client_error")


class ApiMetrics:
    """All API metrics, bound to a per-app registry or to the multiprocess directory."""

    def __init__(self, multiprocess: bool | None = None):
        self.multiprocess = multiprocess_enabled() if multiprocess is None else multiprocess
        # In multiprocess mode samples live in files; collection builds a fresh registry.
        reg = None if self.multiprocess else CollectorRegistry()
        self.registry = reg
        if reg is not None:
            ProcessCollector(registry=reg)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "endpoint", "status"],
            registry=reg,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Request handling time by method and route template.",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.errors = Counter(
            "api_errors_total",
            "4xx/5xx answers by route and kind.",
            ["endpoint", "kind"],
            registry=reg,
        )
        self.recommendations = Counter(
            "recommendations_total",
            "Recommendation lists served, by type.",
            ["type"],
            registry=reg,
        )
        self.mood_requests = Counter(
            "mood_requests_total",
            "Mood recommendation requests by (valid) mood.",
            ["mood"],
            registry=reg,
        )
        self.lookups = Counter(
            "lookups_total",
            "User and artist lookups, known or unknown to the model (drift signal).",
            ["kind", "result"],
            registry=reg,
        )
        self.popularity = Histogram(
            "recommended_artist_log_popularity",
            "log1p(listeners) of every recommended artist (popularity drift signal).",
            buckets=POPULARITY_BUCKETS,
            registry=reg,
        )
        self.rule_removed = Counter(
            "rule_removed_total",
            "Candidate artists each rule of the list chain removed (docs/dials.md).",
            ["rule"],
            registry=reg,
        )
        gauge = {"registry": reg, "multiprocess_mode": "livemax"}
        self.model_loaded = Gauge("model_loaded", "1 when a model is loaded.", **gauge)  # type: ignore[arg-type]
        self.model_info = Gauge("model_info", "The served model version.", ["version"], **gauge)  # type: ignore[arg-type]
        self.model_users = Gauge("model_users", "Users known to the model.", **gauge)  # type: ignore[arg-type]
        self.model_artists = Gauge("model_artists", "Artists in the catalogue.", **gauge)  # type: ignore[arg-type]
        self.model_factors = Gauge("model_factors", "Latent factors of the model.", **gauge)  # type: ignore[arg-type]
        self._version: str | None = None
        # Labelled children by label values: ``labels()`` per request costs more than a
        # dict lookup; the children themselves are what prometheus_client caches anyway.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._lookup_children: dict[tuple[str, bool], Any] = {}
        self._served_children: dict[str, Any] = {}

    # ------------------------------------------------------------------ recording

    def set_model(self, recommender: Recommender | None) -> None:
        """Reflect the loaded model (or its absence) in the model gauges."""
        if self._version is not None:
            self.model_info.labels(version=self._version).set(0)
            if not self.multiprocess:
                self.model_info.remove(self._version)
        if recommender is None:
            self._version = None
            self.model_loaded.set(0)
            for g in (self.model_users, self.model_artists, self.model_factors):
                g.set(0)
            return
        self._version = recommender.version
        recommender.rules.observer = self.rules_removed
        self.model_info.labels(version=recommender.version).set(1)
        self.model_loaded.set(1)
        self.model_users.set(recommender.n_users)
        self.model_artists.set(recommender.n_items)
        self.model_factors.set(recommender.n_factors)

    def rules_removed(self, removed: dict[str, int]) -> None:
        for rule, count in removed.items():
            if count:
                self.rule_removed.labels(rule=rule).inc(count)

    def served(self, kind: str, recs: list[Rec]) -> None:
        child = self._served_children.get(kind)
        if child is None:
            child = self._served_children[kind] = self.recommendations.labels(type=kind)
        child.inc()
        observe = self.popularity.observe
        for rec in recs:
            observe(math.log1p(rec.listeners))

    def lookup(self, kind: str, known: bool, count: int = 1) -> None:
        if count:
            child = self._lookup_children.get((kind, known))
            if child is None:
                child = self.lookups.labels(kind=kind, result="known" if known else "unknown")
                self._lookup_children[(kind, known)] = child
            child.inc(count)

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method, endpoint, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method=method, endpoint=endpoint, status=str(status)),
                self.duration.labels(method=method, endpoint=endpoint),
                self.errors.labels(endpoint=endpoint, kind=error_kind(status))
                if status >= 400
                else None,
            )
            if len(self._request_children) < MAX_CACHED_LABELS:
                self._request_children[key] = children
        requests, duration, errors = children
        requests.inc()
        duration.observe(seconds)
        if errors is not None:
            errors.inc()

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """On worker shutdown: drop this process's live gauges from the aggregate."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


class MetricsMiddleware:
    """Counts and times every HTTP request by route template; adds a Server-Timing header."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.3f}".encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe_request(
                scope.get("method", "GET"), endpoint, status, time.perf_counter() - started
            )
