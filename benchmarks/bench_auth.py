"""What API keys and quotas cost on the hot path.

Two measurements, both in process (no network, so the difference is not lost in noise):

1. **The check alone**: :class:`~musicrec.api.auth.AuthMiddleware` around an ASGI app that
   answers at once, for a GET of a listener's recommendations: no keys file (open API), a
   key without a quota, and a key with a quota in the shared (file-backed) buckets. Per-call
   time in microseconds, median and mean of ``--calls`` calls.
2. **The route**: ``GET /users/{id}/recommendations?k=10`` through the whole app on
   ``--model``, cycling over 1,000 listeners, with the keys file (key with a quota, shared
   buckets) and without; the two arms alternate in blocks of 200 requests, in the order
   A B B A ..., so drifting load and the block order hit both alike. Median per arm and the
   difference of medians with a 95 % bootstrap interval (scipy.stats.bootstrap, 2,000
   resamples).

The model directory is never written: its files are linked into a temporary directory where
the HNSW index is built. Prints a Markdown table and the load average; ``--json`` writes
the numbers.

Usage::

    python benchmarks/bench_auth.py --model PATH [--calls 20000] [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def log(message: str) -> None:
    sys.stderr.write(f"[bench_auth] {message}\n")
    sys.stderr.flush()


def scope(path: str, key: str | None) -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"accept", b"*/*")]
    if key:
        headers.append((b"x-api-key", key.encode()))
    return {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""}


def check_alone(calls: int, workdir: Path) -> dict[str, dict[str, float]]:
    """Per-call time of the middleware around an app that does nothing."""
    from fastapi import FastAPI

    from musicrec.access.keys import create_key
    from musicrec.api.auth import AuthMetrics, AuthMiddleware, KeyRing
    from musicrec.api.metrics import ApiMetrics
    from musicrec.api.quota import SharedBuckets

    keys = workdir / "keys.json"
    _, plain = create_key(keys, "plain", "read")
    _, limited = create_key(keys, "limited", "read", rate=1e6, burst=10**6)
    app = FastAPI()

    @app.get("/users/{user_id}/recommendations")
    def recs(user_id: str) -> dict[str, str]:
        return {"user": user_id}

    app.state.auth_metrics = AuthMetrics(ApiMetrics(multiprocess=False))
    app.state.quota = SharedBuckets(workdir / "quota")

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    middleware = AuthMiddleware(inner, fastapi_app=app)
    arms = {
        "open (no keys file)": (None, None),
        "key": (keys, plain),
        "key + quota": (keys, limited),
    }
    out: dict[str, dict[str, float]] = {}

    async def run(key: str | None) -> list[float]:
        times = []
        for i in range(calls):
            request = scope(f"/users/u{i % 1000}/recommendations", key)
            started = time.perf_counter_ns()
            await middleware(request, receive, send)
            times.append((time.perf_counter_ns() - started) / 1000)
        return times

    for name, (path, key) in arms.items():
        app.state.keyring = KeyRing(path) if path else None
        times = asyncio.run(run(key))[calls // 10 :]  # the first calls warm caches
        out[name] = {"median_us": statistics.median(times), "mean_us": statistics.fmean(times)}
    return out


def linked_model(model: Path, workdir: Path) -> Path:
    """The model's files linked into a writable directory (the index is built there)."""
    target = workdir / "model"
    target.mkdir()
    for item in model.iterdir():
        (target / item.name).symlink_to(item.resolve())
    return target


def route(model: Path, requests: int, workdir: Path, block: int = 200) -> dict[str, Any]:
    """Median time of GET /users/{id}/recommendations with and without the keys file."""
    from fastapi.testclient import TestClient
    from scipy.stats import bootstrap

    from musicrec.access.keys import create_key
    from musicrec.api.app import create_app
    from musicrec.api.auth import KeyRing
    from musicrec.api.settings import Settings

    keys = workdir / "route-keys.json"
    _, key = create_key(keys, "bench", "read", rate=1e6, burst=10**6)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model=str(linked_model(model, workdir)),
        api_keys_file=keys,
        quota_dir=workdir / "route-quota",
        events_url="",
        watch_interval_s=0,
    )
    started = time.perf_counter()
    app = create_app(settings)
    with TestClient(app) as client:
        log(f"model loaded in {time.perf_counter() - started:.1f} s")
        ring: KeyRing = app.state.keyring
        users = client.get("/users", params={"limit": 1000}, headers={"X-API-Key": key}).json()
        paths = [f"/users/{u}/recommendations?k=10" for u in users["users"]]
        times: dict[str, list[float]] = {"without keys": [], "with keys + quota": []}
        for path in paths[:200]:  # warm up
            client.get(path, headers={"X-API-Key": key})
        done = 0
        arms = list(times)
        while done < requests:
            for arm in arms if (done // block) % 2 == 0 else arms[::-1]:  # ABBA: no order bias
                app.state.keyring = ring if arm != "without keys" else None
                headers = {"X-API-Key": key} if app.state.keyring is not None else {}
                for i in range(done, done + block):
                    path = paths[i % len(paths)]
                    t0 = time.perf_counter_ns()
                    answer = client.get(path, headers=headers)
                    times[arm].append((time.perf_counter_ns() - t0) / 1000)
                    assert answer.status_code == 200, answer.text
            done += block
    with_keys = np.asarray(times["with keys + quota"])
    without = np.asarray(times["without keys"])
    interval = bootstrap(
        (with_keys, without),
        lambda a, b, axis=-1: np.median(a, axis=axis) - np.median(b, axis=axis),
        n_resamples=2000,
        vectorized=True,
        random_state=np.random.default_rng(0),
        method="percentile",
    ).confidence_interval
    return {
        "requests_per_arm": len(without),
        "median_us": {arm: float(np.median(v)) for arm, v in times.items()},
        "difference_us": float(np.median(with_keys) - np.median(without)),
        "difference_ci95_us": [float(interval.low), float(interval.high)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="Model artifact directory.")
    parser.add_argument("--calls", type=int, default=20_000, help="Middleware calls per arm.")
    parser.add_argument("--requests", type=int, default=4_000, help="Route requests per arm.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if not 100 <= args.calls <= 1_000_000 or not 200 <= args.requests <= 100_000:
        sys.exit("--calls must be in 100..1000000 and --requests in 200..100000")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        workdir = Path(tmp)
        check = check_alone(args.calls, workdir)
        log("check alone done; loading the model")
        served = route(args.model, args.requests, workdir)
    load = os.getloadavg()
    print(f"## API keys and quotas on the hot path ({args.model}, load {load[0]:.2f})\n")
    print("| the check alone | median µs | mean µs |\n|---|---:|---:|")
    for name, row in check.items():
        print(f"| {name} | {row['median_us']:.2f} | {row['mean_us']:.2f} |")
    low, high = served["difference_ci95_us"]
    print(
        f"\n| GET /users/{{id}}/recommendations, {served['requests_per_arm']} per arm | median µs |"
    )
    print("|---|---:|")
    for arm, median in served["median_us"].items():
        print(f"| {arm} | {median:.1f} |")
    print(
        f"| difference (95 % bootstrap interval) | {served['difference_us']:+.1f} "
        f"[{low:+.1f}, {high:+.1f}] |"
    )
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in load)}")
    if args.json:
        payload = {"check": check, "route": served, "load": load, "model": str(args.model)}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
