"""Live-loop benchmark: event ingestion, fold-in latency and event-to-recommendation time.

Builds (or reuses) a model at Last.fm-360K scale like ``bench_api.py`` (synthetic data;
``--random-factors`` skips ALS training: fold-in cost depends on the shapes, not the values),
then prints a Markdown table of:

- events stored per second straight into the store (SQLite WAL, synchronous=FULL), one event
  per transaction and batches of ``--batch`` events;
- the same through the HTTP API (``POST /events`` to ``musicrec serve`` on loopback),
  sequential and with concurrent clients (whose batches the API commits together);
- fold-in latency in process (read the listener's events, re-solve the vector, search),
  p50/p99 over ``--users`` listeners with ``--events-per-user`` new plays each;
- event to changed recommendation over HTTP: ``POST /events`` sent until the following
  ``GET /users/{id}/recommendations`` returns a list that reflects it.

Usage::

    python benchmarks/bench_events.py --random-factors            # full scale
    python benchmarks/bench_events.py --users-data 20000 --artists 10000 --random-factors
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import build_model, cpu_name, free_port, log


class EventServer:
    """``musicrec serve`` (one worker) with its own event store; stopped by :meth:`stop`."""

    def __init__(self, model: Path, events_url: str, log_path: Path, timeout: float = 600.0):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
        env |= {"MUSICREC_EVENTS_URL": events_url, "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
        cmd += ["--model", str(model), "--port", str(port), "--log-level", "warning"]
        self.log = log_path.open("w")
        self.process = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {log_path}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def store_rates(url: str, n_single: int, n_batches: int, batch: int) -> dict[str, float]:
    from musicrec.events.schema import validate_batch
    from musicrec.events.store import EventStore

    store = EventStore(url)
    one = validate_batch([{"user_id": "bench", "artist": "Metallica"}])
    store.append(one)  # schema created outside the timing
    started = time.perf_counter()
    for _ in range(n_single):
        store.append(one)
    single = n_single / (time.perf_counter() - started)
    events = validate_batch([{"user_id": "bench", "artist": f"a{i}"} for i in range(batch)])
    started = time.perf_counter()
    for _ in range(n_batches):
        store.append(events)
    batched = n_batches * batch / (time.perf_counter() - started)
    return {"single": single, "batch": batched}


def http_rate(base: str, n_requests: int, batch: int, concurrency: int) -> float:
    per_client = n_requests // concurrency
    body = {"events": [{"user_id": "bench-http", "artist": f"a{i}"} for i in range(batch)]}
    errors: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for _ in range(per_client):
                answer = http.post("/events", json=body)
                if answer.status_code != 201:
                    errors.append(answer.status_code)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} POST /events failed: {errors[:5]}")
    return per_client * concurrency * batch / seconds


def fold_in_latency(
    model: Path, url: str, n_users: int, per_user: int, seed: int = 0
) -> dict[str, float]:
    """Store read + profile + fold-in + search, in process, for listeners with new plays."""
    from musicrec.events.schema import validate_batch
    from musicrec.events.store import EventStore
    from musicrec.serving.profile import build_profile
    from musicrec.serving.recommender import Recommender

    rec = Recommender.load(model)
    store = EventStore(url)
    rng = np.random.default_rng(seed)
    users = rec.sample_users(n_users)
    popular = rec.catalogue.by_popularity[:5000]
    for user in users:
        items = rng.choice(popular, size=per_user, replace=False)
        raws = [
            {"user_id": user, "artist": str(rec.catalogue.names[i]), "plays": int(p)}
            for i, p in zip(items, rng.integers(1, 20, per_user), strict=True)
        ]
        store.append(validate_batch(raws))
    timings: list[float] = []
    plain: list[float] = []
    for user in users:
        started = time.perf_counter()
        events = store.user_events(user, limit=10_000)
        profile = build_profile(rec, events, user)
        rec.recommend_user_live(
            user, 10, extra_items=profile.items, extra_plays=profile.plays, fresh_weight=0.5
        )
        timings.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        rec.recommend_user(user, 10)
        plain.append((time.perf_counter() - started) * 1000)
    return {
        "p50": pct(timings, 50),
        "p99": pct(timings, 99),
        "plain_p50": pct(plain, 50),
        "plain_p99": pct(plain, 99),
        "n_users": rec.n_users,
        "n_items": rec.n_items,
        "factors": rec.n_factors,
    }


def event_to_change(base: str, n: int, seed: int = 1) -> dict[str, float]:
    """Milliseconds from sending POST /events until a GET shows a changed list."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=30) as http:
        users = http.get("/users", params={"limit": n}).json()["users"]
        durations: list[float] = []
        unchanged = 0
        for user in users:
            before = http.get(f"/users/{user}/recommendations").json()["recommendations"]
            top = [r["artist"] for r in before]
            ban = top[int(rng.integers(0, 3))]  # a ban must change the list on the next GET
            started = time.perf_counter()
            answer = http.post(
                "/events", json={"events": [{"user_id": user, "artist": ban, "kind": "ban"}]}
            )
            assert answer.status_code == 201, answer.text
            after = http.get(f"/users/{user}/recommendations").json()["recommendations"]
            durations.append((time.perf_counter() - started) * 1000)
            unchanged += ban in {r["artist"] for r in after}
    if unchanged:
        raise RuntimeError(f"{unchanged} of {n} listeners still saw a banned artist")
    return {"p50": pct(durations, 50), "p99": pct(durations, 99), "n": len(durations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="Existing artifact (skips data and training).")
    parser.add_argument("--work", type=Path, help="Working directory (default: a temp dir).")
    parser.add_argument("--users-data", type=int, default=359_000, help="Synthetic listeners.")
    parser.add_argument("--artists", type=int, default=160_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--random-factors", action="store_true", help="Skip ALS training.")
    parser.add_argument("--batch", type=int, default=100, help="Events per batch.")
    parser.add_argument("--single", type=int, default=300, help="Single-event transactions.")
    parser.add_argument("--batches", type=int, default=200, help="Batches per measurement.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--users", type=int, default=1000, help="Listeners for fold-in.")
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--changes", type=int, default=200, help="Event-to-change samples.")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="musicrec-bench-events-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(
        work, args.users_data, args.artists, args.factors, args.random_factors
    )
    from musicrec.models.artifact import ModelArtifact

    loaded = ModelArtifact.load(model).model
    if not all((model / name).exists() for name in loaded.index_files()):
        loaded.build_index(model)
    del loaded

    log("store ingestion")
    rates = store_rates(
        f"sqlite:///{work / 'store-bench.db'}", args.single, args.batches, args.batch
    )
    log("fold-in latency")
    fold = fold_in_latency(
        model, f"sqlite:///{work / 'foldin.db'}", args.users, args.events_per_user
    )
    events_url = f"sqlite:///{work / 'api-events.db'}"
    server = EventServer(model, events_url, work / "serve.log")
    try:
        base = server.url
        log("HTTP ingestion")
        http_single = http_rate(base, args.single, 1, 1)
        http_single_conc = http_rate(base, args.single * 4, 1, args.concurrency * 4)
        http_batch = http_rate(base, args.batches, args.batch, 1)
        http_batch_conc = http_rate(base, args.batches, args.batch, args.concurrency)
        log("event to changed recommendation")
        change = event_to_change(base, args.changes)
    finally:
        server.stop()

    print(f"\n### Live loop · {cpu_name()}\n")
    print(
        f"Model: {fold['n_users']:,} users × {fold['n_items']:,} artists × {fold['factors']} "
        f"factors; store: SQLite WAL, synchronous=FULL, on local disk.\n"
    )
    print("| measurement | value |")
    print("|---|---|")
    print(f"| store: single-event transactions | {rates['single']:,.0f} events/s |")
    print(f"| store: batches of {args.batch} | {rates['batch']:,.0f} events/s |")
    print(f"| HTTP POST /events, 1 event per request | {http_single:,.0f} events/s |")
    print(
        f"| HTTP POST /events, 1 event per request, {args.concurrency * 4} clients "
        f"(group commit) | {http_single_conc:,.0f} events/s |"
    )
    print(f"| HTTP POST /events, batches of {args.batch} | {http_batch:,.0f} events/s |")
    print(
        f"| HTTP POST /events, batches of {args.batch}, {args.concurrency} clients "
        f"| {http_batch_conc:,.0f} events/s |"
    )
    print(
        f"| fold-in ({args.events_per_user} new plays; read + re-solve + HNSW search) p50 / p99 "
        f"| {fold['p50']:.2f} / {fold['p99']:.2f} ms |"
    )
    print(
        f"| same listeners without events (stored vector) p50 / p99 "
        f"| {fold['plain_p50']:.2f} / {fold['plain_p99']:.2f} ms |"
    )
    print(
        f"| event to changed recommendation over HTTP (POST then GET) p50 / p99 "
        f"| {change['p50']:.1f} / {change['p99']:.1f} ms |"
    )


if __name__ == "__main__":
    main()
