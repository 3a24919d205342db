"""Live-loop benchmark: event ingestion, fold-in latency and event-to-recommendation time.

Builds (or reuses) a model at Last.fm-360K scale like ``bench_api.py`` (synthetic data;
``--random-factors`` skips ALS training: fold-in cost depends on the shapes, not the values),
then prints a Markdown table of:

- events stored per second straight into the store (SQLite WAL, synchronous=FULL), one event
  per transaction and batches of ``--batch`` events;
- the same through the HTTP API (``POST /events`` to ``musicrec serve`` on loopback),
  sequential and with concurrent clients (whose batches the API commits together);
- fold-in latency in process (read the listener's events compacted per artist, as serving
  does, re-solve the vector, search; answers kept between requests are not used here),
  p50/p99 over ``--users`` listeners with ``--events-per-user`` new plays each;
- event to changed recommendation over HTTP: ``POST /events`` sent until the following
  ``GET /users/{id}/recommendations`` returns a list that reflects it.

Usage::

    python benchmarks/bench_events.py --random-factors            # full scale
    python benchmarks/bench_events.py --users-data 20000 --artists 10000 --random-factors

``bench_events.py wrk --model PATH`` measures the HTTP API under load with ``wrk`` instead, per
event store (SQLite, and PostgreSQL started from the OS packages on loopback):

- writes: ``POST /events`` with one event per request (a Lua script; distinct listeners and
  artists, with or without a unique ``event_id``), ``--workers`` API workers, ``--connections``
  connections; requests/s, latency percentiles, errors and timeouts, and how many acknowledged
  events the store holds afterwards;
- reads: ``GET /users/{id}/recommendations`` for ``--listeners`` known listeners who each got
  ``--events-per-listener`` events (over ``--listener-artists`` artists, popular ones more
  often) against as many listeners without events, alternating cells, with the throughput
  ratio and its 95 % interval (Welch t on log requests/s).

``--server-src DIR`` runs the server from another checkout's ``src`` (PYTHONPATH) to compare
versions on the same requests (``--id-modes off`` for a version without ``event_id``)::

    python benchmarks/bench_events.py wrk --model PATH --stores sqlite postgres
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
    from musicrec.serving.profile import build_profile, watermark
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
        events = store.compacted_events(user, watermark(rec), limit=10_000)  # as served
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


# ----------------------------------------------------------------------------- wrk

WRITE_LUA = """
local users = {
%(users)s
}
local artists = {
%(artists)s
}
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local id = ""
  if %(with_ids)s then
    id = string.format(',"event_id":"%(nonce)s-%%d-%%d"', thread_id, counter)
  end
  local body = '{"events":[{"user_id":' .. users[(counter %% #users) + 1] .. ',"artist":' ..
    artists[((counter * 7919 + thread_id) %% #artists) + 1] .. id .. '}]}'
  return wrk.format("POST", "/events", nil, body)
end
"""


def write_script(users: list[str], artists: list[str], with_ids: bool, nonce: str) -> str:
    """The Lua script of the write cells: one event per request, unique ids per run if asked."""
    from bench_wrk import LUA_TEMPLATE, RESULT_MARK, lua_string

    done = LUA_TEMPLATE[LUA_TEMPLATE.index("function done") :] % {"mark": RESULT_MARK}
    rows = {
        "users": "\n".join(f"  {lua_string(json.dumps(u))}," for u in users),
        "artists": "\n".join(f"  {lua_string(json.dumps(a))}," for a in artists),
    }
    return WRITE_LUA % {**rows, "with_ids": str(with_ids).lower(), "nonce": nonce} + done


def start_store(kind: str, work: Path, n: int) -> tuple[str, Any]:
    """(URL, stop) of a fresh store: a SQLite file, or a PostgreSQL server on loopback."""
    if kind == "sqlite":
        return f"sqlite:///{work / f'events-{n}.db'}", lambda: None
    from musicrec.ops.postgres import LocalPostgres

    server = LocalPostgres()
    server.start()
    return server.url, server.stop


def wrk_cell(server: Any, script: Path, connections: int, seconds: int, threads: int) -> dict:
    from bench_wrk import run_wrk, tree_cpu_seconds

    load = os.getloadavg()[0]
    cpu = tree_cpu_seconds(server.process.pid)
    row = run_wrk(server.url, script, connections, seconds, threads)
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    row.update(load=load, server_cpu_ms=1000.0 * cpu / max(1, row["requests"]))
    return row


def post_listener_events(
    base: str, listeners: list[str], n_events: int, pool: list[str], n_artists: int, seed: int
) -> int:
    """``n_events`` per listener over ``n_artists`` of ``pool`` (Zipf-like, as listening is)."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["play", "love", "skip", "ban"])
    distinct = 0
    with httpx.Client(base_url=base, timeout=120) as http:
        for listener in listeners:
            artists = rng.choice(pool, size=min(n_artists, len(pool)), replace=False)
            weights = 1.0 / np.arange(1, len(artists) + 1)
            picks = rng.choice(artists, size=n_events, p=weights / weights.sum())
            chosen = rng.choice(kinds, size=n_events, p=[0.9, 0.05, 0.04, 0.01])
            distinct = max(distinct, len(set(picks.tolist())))
            for start in range(0, n_events, 500):
                batch = [
                    {"user_id": listener, "artist": str(a), "kind": str(k)}
                    for a, k in zip(
                        picks[start : start + 500], chosen[start : start + 500], strict=True
                    )
                ]
                answer = http.post("/events", json={"events": batch})
                if answer.status_code != 201:
                    raise RuntimeError(f"POST /events: {answer.status_code} {answer.text[:300]}")
    return distinct


def ratio_interval(with_rps: list[float], without_rps: list[float]) -> tuple[float, float, float]:
    """Mean ratio and its 95 % interval (Welch t on log requests/s; needs 2+ cells each)."""
    from scipy import stats

    logs_with, logs_without = np.log(with_rps), np.log(without_rps)
    ratio = float(np.exp(logs_with.mean() - logs_without.mean()))
    if min(len(with_rps), len(without_rps)) < 2:
        return ratio, float("nan"), float("nan")
    test = stats.ttest_ind(logs_with, logs_without, equal_var=False)
    low, high = test.confidence_interval(0.95)
    return ratio, float(np.exp(low)), float(np.exp(high))


def write_cells(server: Any, kind: str, pool: list[str], args: argparse.Namespace, work: Path):
    """One measured wrk cell per event-id mode (after a warm-up); checks what was stored."""
    rows = []
    writers = [f"bench-writer-{i}" for i in range(10_000)]
    for mode in args.id_modes:
        script = work / f"write-{kind}-{mode}.lua"
        for phase, seconds in (("warm-up", args.warmup), ("measured", args.duration)):
            nonce = f"{kind}-{mode}-{phase}-{time.time_ns()}"
            script.write_text(write_script(writers, pool[:2000], mode == "on", nonce))
            before = httpx.get(f"{server.url}/events/stats", timeout=60).json()["events"]
            row = wrk_cell(server, script, args.connections, seconds, args.threads)
            stored = httpx.get(f"{server.url}/events/stats", timeout=60).json()["events"]
        acked = row["requests"] - row["non_2xx"]
        row.update(event_ids=mode, acked=acked, stored=stored - before)
        if row["stored"] < acked:
            raise RuntimeError(f"{acked} events acknowledged but {row['stored']} stored")
        rows.append(row)
        log(f"{kind} writes ids={mode}: {row['rps']:.0f} req/s p99 {row['p99_ms']:.1f} ms")
    return rows


def read_cells(
    server: Any, kind: str, groups: dict[str, list[str]], cache: str, args: argparse.Namespace,
    work: Path,
) -> list[dict[str, Any]]:  # fmt: skip
    """Alternating wrk cells over the listeners of each group (after one warm-up each)."""
    from bench_wrk import lua_script

    scripts = {}
    for name, group in groups.items():
        paths = [("GET", f"/users/{quote(u, safe='')}/recommendations?k=10", None) for u in group]
        scripts[name] = work / f"read-{kind}-{name}.lua"
        scripts[name].write_text(lua_script(paths))
        wrk_cell(server, scripts[name], args.connections, args.warmup, args.threads)
    rows = []
    for rep in range(args.reps):
        for name in groups:
            row = wrk_cell(
                server, scripts[name], args.connections, args.read_duration, args.threads
            )
            row.update(listeners=name, rep=rep, cache=cache)
            rows.append(row)
            log(f"{kind} reads {name} ({cache}): {row['rps']:.0f} req/s p99 {row['p99_ms']:.1f} ms")
    return rows


def bench_store(kind: str, n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench_wrk import Server

    url, stop_store = start_store(kind, work, n)
    env = {"MUSICREC_EVENTS_URL": url, "MUSICREC_WATCH_INTERVAL_S": "0"}
    if args.server_src:
        env["PYTHONPATH"] = str(args.server_src)
    out: dict[str, Any] = {"store": kind, "writes": [], "reads": []}
    server = None
    try:
        server = Server(
            args.model, args.workers, work / f"serve-{kind}.log", ["--log-level", "warning"], env
        )
        out["ready_s"] = server.ready_s
        with httpx.Client(base_url=server.url, timeout=60) as http:
            known = http.get("/users", params={"limit": 1000}).json()["users"]
            points = http.get("/artists/map", params={"limit": 2000}).json()["points"]
        pool = [p["artist"] for p in points]
        out["writes"] = write_cells(server, kind, pool, args, work)
        rng = np.random.default_rng(args.seed)
        chosen = rng.choice(known, size=2 * args.listeners, replace=False).tolist()
        groups = {"without": chosen[args.listeners :], "with": chosen[: args.listeners]}
        log(f"posting {args.events_per_listener} events for each of {args.listeners} listeners")
        out["distinct_artists"] = post_listener_events(
            server.url, groups["with"], args.events_per_listener, pool, args.listener_artists, 1
        )
        out["reads"] = read_cells(server, kind, groups, "defaults", args, work)
        if args.uncached:  # the same listeners with every answer folded in afresh
            server.stop()
            env["MUSICREC_FOLD_IN_CACHE"] = "0"
            server = Server(
                args.model,
                args.workers,
                work / f"serve-{kind}-0.log",
                ["--log-level", "warning"],
                env,
            )
            out["reads"] += read_cells(server, kind, groups, "MUSICREC_FOLD_IN_CACHE=0", args, work)
    finally:
        if server is not None:
            server.stop()
        stop_store()
    return out


def print_wrk_tables(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from bench_wrk import cpu_name

    print(f"\n### POST /events and reads under wrk · {args.label} · {cpu_name()}\n")
    print(
        f"Model {args.model}; {args.workers} workers; wrk {args.threads} thread(s), "
        f"{args.connections} connections, writes {args.duration} s and reads "
        f"{args.read_duration} s per cell after {args.warmup} s warm-up; loopback.\n"
    )
    print("| store | event_id | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | "
          "timeouts | acked | stored | server CPU ms/req | load |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        for r in result["writes"]:
            print(
                f"| {result['store']} | {r['event_ids']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} "
                f"| {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['errors']} "
                f"| {r['timeouts']} | {r['acked']:,} | {r['stored']:,} "
                f"| {r['server_cpu_ms']:.2f} | {r['load']:.1f} |"
            )
    print(
        f"\nReads: GET recommendations of {args.listeners} listeners with "
        f"{args.events_per_listener:,} events each (over up to {args.listener_artists} artists) "
        f"vs {args.listeners} without, {args.reps} alternating cells each.\n"
    )
    print("| store | server | listeners | req/s (cells) | p50 ms | p99 ms | errors | "
          "server CPU ms/req | load | with / without [95% CI] |")  # fmt: skip
    print("|---|---|---|---|---:|---:|---:|---:|---:|---|")
    for result in results:
        for cache in dict.fromkeys(r["cache"] for r in result["reads"]):
            rows = {
                name: [r for r in result["reads"] if r["listeners"] == name and r["cache"] == cache]
                for name in ("without", "with")
            }
            ratio, low, high = ratio_interval(
                [r["rps"] for r in rows["with"]], [r["rps"] for r in rows["without"]]
            )
            for name, cells in rows.items():
                label = "without events"
                if name == "with":
                    label = f"with events ({result['distinct_artists']} artists)"
                rps = " / ".join(f"{r['rps']:,.0f}" for r in cells)
                summary = f"{ratio:.2f} [{low:.2f}, {high:.2f}]" if name == "with" else ""
                print(
                    f"| {result['store']} | {cache} | {label} | {rps} "
                    f"| {np.median([r['p50_ms'] for r in cells]):.1f} "
                    f"| {np.median([r['p99_ms'] for r in cells]):.1f} "
                    f"| {sum(r['errors'] for r in cells)} "
                    f"| {np.median([r['server_cpu_ms'] for r in cells]):.2f} "
                    f"| {max(r['load'] for r in cells):.1f} | {summary} |"
                )


def wrk_main(argv: list[str]) -> None:
    import shutil

    parser = argparse.ArgumentParser(prog="bench_events.py wrk", description="Events under wrk.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"],
                        choices=["sqlite", "postgres"])  # fmt: skip
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads.")
    parser.add_argument("--duration", type=int, default=20, help="Seconds per write cell.")
    parser.add_argument("--read-duration", type=int, default=10, help="Seconds per read cell.")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3, help="Read cells per group.")
    parser.add_argument("--id-modes", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--listeners", type=int, default=10)
    parser.add_argument("--events-per-listener", type=int, default=10_000)
    parser.add_argument("--listener-artists", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--uncached", action="store_true", help="Also read with MUSICREC_FOLD_IN_CACHE=0."
    )
    parser.add_argument("--server-src", type=Path, help="Run the server from this src/ dir.")
    parser.add_argument("--label", default="this version")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run scripts/install-os-deps.sh")
    if max(args.duration, args.read_duration) > 120 or args.reps > 10:
        sys.exit("cells are at most 120 s and 10 repetitions")
    work = Path(tempfile.mkdtemp(prefix="musicrec-bench-events-wrk-"))
    results = [bench_store(kind, n, args, work) for n, kind in enumerate(args.stores)]
    print_wrk_tables(results, args)
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "results": results}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "wrk":
        wrk_main(sys.argv[2:])
    else:
        main()
