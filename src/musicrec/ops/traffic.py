"""A bounded, realistic traffic generator for the API (demos, dashboards, alert checks).

It fetches real user ids, moods and artist names from the API, then sends a weighted mix of
requests (user, mood, similar, listener, search, charts, random, health and a small share of
deliberately bad ones) at a target rate until a time or request budget runs out, and reports
latency percentiles and error counts per kind of request.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np

from musicrec.errors import TrafficError

LOOPBACK_NAMES = ("localhost",)
BAD_SHARE = 0.05


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or a name) is this machine's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_NAMES


def check_target(url: str, allow_remote: bool = False) -> str:
    """The base URL without a trailing slash; non-loopback hosts need ``allow_remote``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TrafficError(f"{url!r} is not an http(s) URL")
    host = parts.hostname
    try:
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        raise TrafficError(f"{url!r}: {exc}") from None
    if not is_loopback(host) and not allow_remote:
        raise TrafficError(f"{host} is not a loopback address; pass --allow-remote to target it")
    return url.rstrip("/")


@dataclass
class EndpointStats:
    """Outcomes of one kind of request."""

    count: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    failures: int = 0  # no HTTP answer (timeout, connection refused)
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, status: int | None, took_ms: float) -> None:
        """One answer (``status`` ``None``: none came) that took ``took_ms``."""
        self.count += 1
        self.latencies_ms.append(took_ms)
        if status is None:
            self.failures += 1
        elif status >= 500:
            self.server_errors += 1
        elif status >= 400:
            self.client_errors += 1
        else:
            self.ok += 1

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "ok": self.ok,
            "client_errors": self.client_errors,
            "server_errors": self.server_errors,
            "failures": self.failures,
            "p50_ms": round(self.percentile(50), 3),
            "p95_ms": round(self.percentile(95), 3),
            "p99_ms": round(self.percentile(99), 3),
        }


@dataclass
class TrafficSummary:
    """What a run sent and got back."""

    url: str
    seconds: float
    endpoints: dict[str, EndpointStats]

    @property
    def total(self) -> int:
        return sum(s.count for s in self.endpoints.values())

    @property
    def server_errors(self) -> int:
        return sum(s.server_errors + s.failures for s in self.endpoints.values())

    @property
    def client_errors(self) -> int:
        return sum(s.client_errors for s in self.endpoints.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "seconds": round(self.seconds, 3),
            "total": self.total,
            "rate": round(self.total / self.seconds, 2) if self.seconds > 0 else 0.0,
            "server_errors": self.server_errors,
            "client_errors": self.client_errors,
            "endpoints": {name: s.to_dict() for name, s in sorted(self.endpoints.items())},
        }


@dataclass(frozen=True)
class Pools:
    """Real names to draw requests from, fetched from the API itself."""

    users: list[str]
    moods: list[str]
    artists: list[str]


Request = tuple[str, str, str, dict[str, Any]]  # label, method, path, httpx kwargs


def fetch_pools(client: httpx.Client) -> Pools:
    """User ids, available moods and popular artists from the running API."""
    try:
        ready = client.get("/ready")
        if ready.status_code != 200:
            raise TrafficError(f"API not ready ({ready.status_code}): {ready.text[:200]}")
        users = client.get("/users", params={"limit": 200}).json()["users"]
        moods = [m["name"] for m in client.get("/moods").json()["moods"] if m["available"]]
        charts = client.get("/charts", params={"k": 100}).json()["recommendations"]
    except httpx.HTTPError as exc:
        raise TrafficError(f"cannot reach the API: {exc}") from exc
    return Pools(users=users, moods=moods, artists=[r["artist"] for r in charts])


def _good_requests(pools: Pools) -> list[tuple[float, Callable[[random.Random], Request]]]:
    def user(rng: random.Random) -> Request:
        params: dict[str, Any] = {"k": rng.choice((5, 10, 20))}
        if pools.moods and rng.random() < 0.15:
            params["mood"] = rng.choice(pools.moods)
        path = f"/users/{quote(rng.choice(pools.users), safe='')}/recommendations"
        return "user", "GET", path, {"params": params}

    def recommend_user(rng: random.Random) -> Request:
        body = {"type": "user", "user_id": rng.choice(pools.users), "k": 10}
        return "recommend_user", "POST", "/recommend", {"json": body}

    def mood(rng: random.Random) -> Request:
        body = {"type": "mood", "mood": rng.choice(pools.moods), "k": 10}
        return "mood", "POST", "/recommend", {"json": body}

    def similar(rng: random.Random) -> Request:
        name = rng.choice(pools.artists)
        if rng.random() < 0.5:
            return "similar", "POST", "/similar", {"json": {"artist_name": name, "k": 10}}
        return "similar", "GET", f"/artists/{quote(name, safe='')}/similar", {"params": {"k": 10}}

    def listener(rng: random.Random) -> Request:
        names = rng.sample(pools.artists, k=min(len(pools.artists), rng.randint(2, 6)))
        body = {"artists": names, "plays": [rng.randint(1, 500) for _ in names], "k": 10}
        return "listener", "POST", "/listeners/recommendations", {"json": body}

    def search(rng: random.Random) -> Request:
        name = rng.choice(pools.artists)
        return "search", "GET", "/artists", {"params": {"q": name[: rng.randint(2, 5)]}}

    def charts(rng: random.Random) -> Request:
        return "charts", "GET", "/charts", {"params": {"k": rng.choice((10, 50))}}

    def random_recs(rng: random.Random) -> Request:
        return "random", "POST", "/recommend", {"json": {"type": "random", "k": 10}}

    def health(rng: random.Random) -> Request:
        return "health", "GET", "/health", {}

    mix: list[tuple[float, Callable[[random.Random], Request]]] = [
        (0.30, user), (0.05, recommend_user), (0.10, similar), (0.10, listener),
        (0.10, search), (0.05, charts), (0.03, random_recs), (0.02, health),
    ]  # fmt: skip
    if pools.moods:
        mix.append((0.15, mood))
    return mix


def _bad_request(rng: random.Random) -> Request:
    choice = rng.randrange(5)
    if choice == 0:
        return "bad", "GET", "/users/no-such-user/recommendations", {}
    if choice == 1:
        return "bad", "GET", "/charts", {"params": {"k": 0}}
    if choice == 2:
        headers = {"content-type": "application/json"}
        return "bad", "POST", "/recommend", {"content": b"{not json", "headers": headers}
    if choice == 3:
        return "bad", "POST", "/recommend", {"json": {"type": "mood", "mood": "no-such-mood"}}
    return "bad", "POST", "/similar", {"json": {"artist_name": "No Such Artist 0x", "k": 5}}


class _Budget:
    """Shared request counter across sender threads."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.used = 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.limit is not None and self.used >= self.limit:
                return False
            self.used += 1
            return True


def _check_load(rate: float, duration: float, max_requests: int | None, concurrency: int) -> None:
    if rate <= 0 or duration <= 0:
        raise TrafficError("rate and duration must be positive")
    if max_requests is not None and max_requests < 1:
        raise TrafficError("max-requests must be at least 1")
    if concurrency < 1:
        raise TrafficError("concurrency must be at least 1")


def run_traffic(
    url: str,
    rate: float,
    duration: float,
    max_requests: int | None = None,
    allow_remote: bool = False,
    concurrency: int = 2,
    timeout: float = 10.0,
    seed: int = 0,
) -> TrafficSummary:
    """Send a realistic request mix at ``rate`` per second for at most ``duration`` seconds.

    Args:
        url: API base URL (loopback unless ``allow_remote``).
        rate: Target requests per second, over all sender threads.
        duration: Upper bound on the run time in seconds.
        max_requests: Upper bound on the number of requests.
        allow_remote: Allow a non-loopback host.
        concurrency: Sender threads (a slow answer does not stall the others).
        timeout: Per-request timeout in seconds.
        seed: Seed of the request mix.
    """
    _check_load(rate, duration, max_requests, concurrency)
    base = check_target(url, allow_remote)
    with httpx.Client(base_url=base, timeout=timeout) as client:
        pools = fetch_pools(client)
    if not pools.users or not pools.artists:
        raise TrafficError("the API returned no users or artists to build requests from")
    mix = _good_requests(pools)
    weights = [w for w, _ in mix]
    stats: dict[str, EndpointStats] = {}
    stats_lock = threading.Lock()
    budget = _Budget(max_requests)
    threads = max(1, concurrency)
    interval = threads / rate
    started = time.perf_counter()
    deadline = started + duration

    def sender(worker: int) -> None:
        rng = random.Random(seed * 1000 + worker)
        next_at = started + worker * interval / threads
        with httpx.Client(base_url=base, timeout=timeout) as client:
            while True:
                now = time.perf_counter()
                if next_at > now:
                    time.sleep(next_at - now)
                if time.perf_counter() >= deadline or not budget.take():
                    return
                next_at += interval
                if rng.random() < BAD_SHARE:
                    label, method, path, kwargs = _bad_request(rng)
                else:
                    label, method, path, kwargs = rng.choices(mix, weights)[0][1](rng)
                sent = time.perf_counter()
                try:
                    status: int | None = client.request(method, path, **kwargs).status_code
                except httpx.HTTPError:
                    status = None
                took = (time.perf_counter() - sent) * 1000.0
                with stats_lock:
                    stats.setdefault(label, EndpointStats()).record(status, took)

    workers = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=duration + timeout + 5)
    return TrafficSummary(base, time.perf_counter() - started, stats)
