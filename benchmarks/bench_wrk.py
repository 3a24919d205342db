"""Serving throughput and latency under load: ``wrk`` against a freshly started ``musicrec serve``.

For every worker count (default 1 and 2) a new server is started on a free loopback port and
waited for (``/ready``); then for every request type and connection count (default 1, 8 and
32) ``wrk`` runs for a bounded time (default 10 s after a 2 s warm-up at the same load) with
a Lua script that cycles through many distinct keys, so no single cached answer is measured:

- ``user``: ``GET /users/{id}/recommendations?k=10`` over up to 1,000 known user ids
- ``user_mood``: the same with ``&mood=`` cycling through the available moods
- ``similar``: ``GET /artists/{name}/similar?k=10`` over the 2,000 most listened artists
  (less the names with a ``/``, which only ``POST /similar`` can carry)
- ``mood``: ``POST /recommend {"type": "mood", ...}`` over the available moods
- ``listener``: ``POST /listeners/recommendations`` with 5 artists drawn from those 2,000
- ``health``: ``GET /health``

It prints requests/s, p50/p90/p99 latency, errors (socket errors, timeouts and non-2xx
answers) and the machine's load average per cell as a Markdown table, and the same as JSON
with ``--json PATH``. The server is stopped after each worker count. Needs ``wrk`` on PATH
(``scripts/install-os-deps.sh``).

Every server gets its own event store (``--events-url``; default: a fresh SQLite file in the
benchmark's temporary folder), created with its tables before the server starts. A server
skips the store read every request makes (the listener's event version, which keys its
folded-in answers) until something has written the store, so without that a cell with
impressions off would leave out the read and charge it to the impression log.
``--impressions on off off on`` starts one server per value in that order
(``MUSICREC_IMPRESSIONS``), so the cost of the impression log is measured in
alternated cells; after each clean stop the rows in its impression log are counted. Impressions
also turn on the exposure cool-down (a read of the listener's impressions per request); add
``--env MUSICREC_COOLDOWN_SHOWS=0`` to measure the writes alone. ``--env`` passes any setting
to every server. ``--pool A.json B.json`` starts nothing: it prints the same on - off
differences over the cells of earlier runs' ``--json`` files together.

Usage::

    python benchmarks/bench_wrk.py --model PATH
    python benchmarks/bench_wrk.py --model PATH --workers 2 --connections 8 --scenarios user
    python benchmarks/bench_wrk.py --model PATH --workers 2 --connections 8 --scenarios user \
        --impressions on off off on --duration 20 --env MUSICREC_COOLDOWN_SHOWS=0
    python benchmarks/bench_wrk.py --pool run1.json run2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from musicrec.events.store import EventStore

SCENARIOS = ("user", "user_mood", "similar", "mood", "listener", "health")
RESULT_MARK = "BENCH_WRK_RESULT "

# wrk Lua: cycles through REQUESTS (method, path, body) per thread from a different offset;
# done() prints one JSON line with the counts and latency percentiles (microseconds).
LUA_TEMPLATE = """
local requests = {
%(requests)s
}
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = thread_id * 7919
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local r = requests[(counter %% #requests) + 1]
  return wrk.format(r[1], r[2], nil, r[3])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def log(message: str) -> None:
    sys.stderr.write(f"[bench_wrk] {message}\n")
    sys.stderr.flush()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``musicrec serve`` as a subprocess on loopback; ``ready_s`` is start -> /ready."""

    def __init__(
        self,
        model: Path,
        workers: int,
        log_path: Path,
        extra: list[str],
        env_extra: dict[str, str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
        env |= env_extra or {}
        cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
        cmd += ["--model", str(model), "--port", str(self.port), "--workers", str(workers)]
        cmd += extra
        self.log = log_path.open("w")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.ready_s = self._wait_ready(started)

    def _wait_ready(self, started: float, timeout: float = 900.0) -> float:
        while time.perf_counter() < started + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}): {self.log.name}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
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


Req = tuple[str, str, str | None]
TRIM = 0.2  # share of cells trimmed from each end for the robust impression-cost interval
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its children (uvicorn's workers) so far."""
    return sum(split_cpu_seconds(pid))


def split_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) so far of ``pid``, and of its children (uvicorn's workers)."""
    own = children = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        seconds = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        if int(entry.name) == pid:
            own += seconds
        elif int(fields[1]) == pid:  # fields[1]: parent pid
            children += seconds
    return own, children


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished children: wrk runs
    return usage.ru_utime + usage.ru_stime


def lua_string(text: str) -> str:
    """A Lua string literal (decimal escapes for anything outside printable ASCII)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch.isascii() and ch.isprintable() and ch not in '"\\':
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(requests: list[Req]) -> str:
    rows = []
    for method, path, body in requests:
        rows.append(
            f"  {{{lua_string(method)}, {lua_string(path)}, "
            f"{lua_string(body) if body is not None else 'nil'}}},"
        )
    return LUA_TEMPLATE % {"requests": "\n".join(rows), "mark": RESULT_MARK}


def build_requests(url: str, n_listeners: int = 1000) -> dict[str, list[Req]]:
    """Request lists per scenario, from what the running server knows."""
    with httpx.Client(base_url=url, timeout=60) as client:
        users = client.get("/users", params={"limit": 1000}).json()["users"]
        moods = [m["name"] for m in client.get("/moods").json()["moods"] if m["available"]]
        points = client.get("/artists/map", params={"limit": 2000}).json()["points"]
    # A name with "/" (AC/DC) cannot be a single path segment: POST /similar serves it.
    artists = [p["artist"] for p in points if "/" not in p["artist"]]
    user_paths = [f"/users/{quote(u, safe='')}/recommendations?k=10" for u in users]
    out: dict[str, list[Req]] = {
        "user": [("GET", p, None) for p in user_paths],
        "user_mood": [
            ("GET", f"{p}&mood={moods[i % len(moods)]}", None) for i, p in enumerate(user_paths)
        ],
        "similar": [("GET", f"/artists/{quote(a, safe='')}/similar?k=10", None) for a in artists],
        "mood": [
            ("POST", "/recommend", json.dumps({"type": "mood", "mood": m, "k": 10})) for m in moods
        ],
        "health": [("GET", "/health", None)],
    }
    listeners = []
    step = 7  # deterministic, distinct 5-artist baskets
    for i in range(n_listeners):
        picks = [artists[(i * step + j * 131) % len(artists)] for j in range(5)]
        listeners.append(
            ("POST", "/listeners/recommendations", json.dumps({"artists": picks, "k": 10}))
        )
    out["listener"] = listeners
    return out


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The ``done()`` line of the Lua script as numbers: req/s, latency in ms, errors."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARK):
            raw = json.loads(line[len(RESULT_MARK) :])
            break
    else:
        raise ValueError(f"no result line in wrk output:\n{stdout}")
    seconds = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"] + raw["status"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": raw["requests"] / seconds if seconds > 0 else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "errors": errors,
        "non_2xx": raw["status"],
        "timeouts": raw["timeout"],
    }


def run_wrk(
    url: str, script: Path, connections: int, duration: int, threads: int
) -> dict[str, Any]:
    threads = max(1, min(threads, connections))
    seconds = max(1, duration)  # wrk takes whole seconds
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"]
    cmd += ["--timeout", "5s", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def impression_rows(events_url: str) -> int | None:
    """Impressions (shown artists) in the log of ``events_url`` (None without one)."""
    import sqlalchemy as sa

    engine = sa.create_engine(events_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("impression_lists"):
                return None
            query = sa.text("SELECT COALESCE(SUM(shown), 0) FROM impression_lists")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def served_recall(model: Path, sample: int, k: int = 10) -> dict[str, float]:
    """Recall@k of what the API serves (its default index and breadths) against exact scoring.

    Users: ``recommend_user`` (played artists excluded) on ``sample`` random users; similar
    artists: ``similar`` on ``sample`` random artists; moods: ``recommend_mood`` for each
    available mood.
    """
    import numpy as np

    from musicrec.api.settings import Settings
    from musicrec.models.ann import open_indexes
    from musicrec.serving.recommender import Recommender

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rec = Recommender.load(model, ef=settings.hnsw_ef, ef_cosine=settings.hnsw_ef_similar)
    model = rec.model
    exact = open_indexes(None, model.vectors, "exact")
    rng = np.random.default_rng(1)
    hits = {"user": [0, 0], "similar": [0, 0], "mood": [0, 0]}

    def count(kind: str, served: list[int], truth: np.ndarray) -> None:
        hits[kind][0] += len(set(served) & set(truth.tolist()))
        hits[kind][1] += len(truth)

    for user in rng.choice(rec.n_users, size=min(sample, rec.n_users), replace=False):
        history, _ = rec.history(int(user))
        query = np.asarray(model.user_factors[user], dtype=np.float32)
        truth, _ = exact.inner.search(query, k, exclude=history)
        count("user", [r.item for r in rec.recommend_user(str(rec.user_ids[user]), k)], truth)
    for item in rng.choice(rec.n_items, size=min(sample, rec.n_items), replace=False):
        query = model.vectors.unit(np.array([item]))[0]
        truth, _ = exact.cosine.search(query, k, exclude=np.array([item]))
        name = str(rec.catalogue.names[item])
        if rec.catalogue.resolve(name) != item:  # a more popular namesake answers this name
            continue
        count("similar", [r.item for r in rec.similar(name, k)[1]], truth)
    for name, mood in rec.moods.items():
        if mood.available and mood.vector is not None:
            truth, _ = exact.inner.search(mood.vector, k)
            count("mood", [r.item for r in rec.recommend_mood(name, k)], truth)
    out = {kind: found / total if total else float("nan") for kind, (found, total) in hits.items()}
    out.update(ef=settings.hnsw_ef, ef_similar=settings.hnsw_ef_similar)
    return out


def impression_cost(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per request type, workers and connections run with impressions both on and off: the
    difference of the cells' mean p50, p99 and workers CPU with a Welch 95 % interval, and
    of their 20 % trimmed means with Yuen's interval (``trimmed``; scipy's trimmed t-test).

    One server per ``--impressions`` value, so each cell is one independent measurement of
    its setting; ``on off off on ...`` alternates them against drifts in the machine's load.
    A cell's p99 now and then catches a stall of the whole machine (seen here: 90 to 240 ms
    against 1.5 to 3 ms, in either setting); one such cell decides a mean of six, while the
    trimmed mean sets the highest and lowest cell of each setting aside.
    """
    from scipy import stats as scipy_stats

    groups: dict[tuple[str, int, int], dict[str, list[dict[str, Any]]]] = {}
    for row in results:
        key = (row["scenario"], row["workers"], row["connections"])
        groups.setdefault(key, {}).setdefault(row["impressions"], []).append(row)
    out = []
    for (scenario, workers, connections), cells in groups.items():
        on, off = cells.get("on", []), cells.get("off", [])
        if len(on) < 2 or len(off) < 2:
            continue
        entry: dict[str, Any] = dict(scenario=scenario, workers=workers, connections=connections)
        entry.update(cells_on=len(on), cells_off=len(off))
        for q in ("p50_ms", "p99_ms", "workers_cpu_ms"):
            a, b = [r[q] for r in on], [r[q] for r in off]
            found = {}
            for trim in (0.0, TRIM):
                test = scipy_stats.ttest_ind(a, b, equal_var=False, trim=trim)
                interval = test.confidence_interval(0.95)
                found[trim] = {
                    "difference": float(
                        scipy_stats.trim_mean(a, trim) - scipy_stats.trim_mean(b, trim)
                    ),
                    "low": float(interval.low),
                    "high": float(interval.high),
                    "p_value": float(test.pvalue),
                }
            entry[q] = found[0.0] | {"trimmed": found[TRIM]}
        out.append(entry)
    return out


def print_costs(differences: list[dict[str, Any]]) -> None:
    """Print :func:`impression_cost`'s differences, of means and of trimmed means."""
    for d in differences:
        for label, pick in (
            ("difference of cell means, Welch 95 % interval", lambda found: found),
            (f"of {TRIM:.0%} trimmed means, Yuen 95 % interval", lambda found: found["trimmed"]),
        ):
            print(
                f"\nimpressions on - off, {d['scenario']} w={d['workers']} c={d['connections']} "
                f"({d['cells_on']} on / {d['cells_off']} off servers): "
                + "; ".join(
                    f"{q} {pick(d[q])['difference']:+.2f} ms "
                    f"[{pick(d[q])['low']:+.2f}, {pick(d[q])['high']:+.2f}]"
                    for q in ("p50_ms", "p99_ms", "workers_cpu_ms")
                )
                + f" ({label})"
            )


def pool(paths: list[Path]) -> None:
    """Print the impression cost over the cells of several earlier runs (their ``--json``)."""
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            results += json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            sys.exit(f"{path}: not a bench_wrk --json file ({exc})")
    print(f"{len(results)} cells from {len(paths)} runs: " + ", ".join(map(str, paths)))
    print_costs(impression_cost(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="Model artifact directory.")
    parser.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        help="Start no server: the impression cost over these runs' --json cells together.",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--duration", type=int, default=10, help="Seconds per cell.")
    parser.add_argument("--warmup", type=int, default=2, help="Warm-up seconds per cell.")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (<= connections).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--serve-arg", action="append", default=[], help="Extra serve option.")
    parser.add_argument(
        "--impressions",
        nargs="+",
        choices=("on", "off", "default"),
        default=["default"],
        help="One server per value, in this order (MUSICREC_IMPRESSIONS; e.g. on off off on).",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A setting for every server (e.g. MUSICREC_COOLDOWN_SHOWS=0); repeatable.",
    )
    parser.add_argument(
        "--events-url",
        help="Event store of the servers (default: a fresh SQLite file per server).",
    )
    parser.add_argument(
        "--recall-sample",
        type=int,
        default=0,
        help="Also measure recall@10 of the served answers vs exact on this many users/artists.",
    )
    args = parser.parse_args()
    if args.pool:
        pool(args.pool)
        return
    if args.model is None:
        sys.exit("--model is required (unless --pool)")
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run scripts/install-os-deps.sh")
    if args.duration > 120 or args.warmup > 30:
        sys.exit("--duration is at most 120 s and --warmup 30 s per cell")
    if any("=" not in item for item in args.env):
        sys.exit("--env takes NAME=VALUE")

    work = Path(tempfile.mkdtemp(prefix="musicrec-bench-wrk-"))
    results: list[dict[str, Any]] = []
    ready: dict[int, float] = {}
    servers: list[tuple[str, int, int | None]] = []
    cells = [(w, imp, n) for n, imp in enumerate(args.impressions) for w in args.workers]
    for workers, impressions, n in cells:
        events_url = args.events_url or f"sqlite:///{work / f'events-{n}-{workers}.db'}"
        env = dict(item.split("=", 1) for item in args.env) | {"MUSICREC_EVENTS_URL": events_url}
        if impressions != "default":
            env["MUSICREC_IMPRESSIONS"] = "true" if impressions == "on" else "false"
        # The store exists before the server starts, as wherever events are taken: without
        # it a server with impressions off would skip the store read every request makes.
        EventStore(events_url).ensure_schema()
        server = Server(
            args.model,
            workers,
            work / f"serve-{n}-{workers}.log",
            ["--log-level", "warning", *args.serve_arg],
            env,
        )
        ready[workers] = server.ready_s
        log(
            f"{workers} worker(s), impressions {impressions}: ready in {server.ready_s:.1f}s "
            f"on {server.url}"
        )
        first_row = len(results)
        try:
            requests = build_requests(server.url)
            for scenario in args.scenarios:
                script = work / f"{scenario}.lua"
                script.write_text(lua_script(requests[scenario]))
                for connections in args.connections:
                    if args.warmup > 0:
                        run_wrk(server.url, script, connections, args.warmup, args.threads)
                    load = os.getloadavg()[0]  # other work on the machine skews every figure
                    before = split_cpu_seconds(server.process.pid), children_cpu_seconds()
                    row = run_wrk(server.url, script, connections, args.duration, args.threads)
                    own, workers_cpu = split_cpu_seconds(server.process.pid)
                    workers_cpu -= before[0][1]
                    server_cpu = own - before[0][0] + workers_cpu
                    wrk_cpu = children_cpu_seconds() - before[1]
                    per_request = 1000.0 / max(1, row["requests"])
                    row.update(
                        scenario=scenario,
                        impressions=impressions,
                        workers=workers,
                        connections=connections,
                        load=load,
                        server_cpu_ms=server_cpu * per_request,
                        workers_cpu_ms=workers_cpu * per_request,
                        wrk_cpu_ms=wrk_cpu * per_request,
                    )
                    results.append(row)
                    log(
                        f"{scenario:9s} w={workers} c={connections:2d}: {row['rps']:7.0f} req/s "
                        f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} ms "
                        f"errors {row['errors']} server CPU {row['server_cpu_ms']:.2f} ms/req "
                        f"load {load:.1f}"
                    )
        finally:
            server.stop()
        stored = impression_rows(events_url)  # after a clean stop: every queued row committed
        for row in results[first_row:]:
            row["impression_rows"] = stored
        servers.append((impressions, workers, stored))
        log(f"impression rows stored: {stored}")

    recall = served_recall(args.model, args.recall_sample) if args.recall_sample else None
    print(f"- model: {args.model}")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        f"- wrk {args.threads} thread(s), {args.duration:g} s per cell after {args.warmup:g} s "
        f"warm-up, same host (loopback); server ready after "
        + ", ".join(f"{s:.1f} s ({w} worker(s))" for w, s in ready.items())
    )
    if recall is not None:
        print(
            f"- recall@10 of the served answers vs exact scoring ({args.recall_sample} random "
            f"users / artists, every mood): users {recall['user']:.4f} (ef={recall['ef']}), "
            f"similar artists {recall['similar']:.4f} (ef={recall['ef_similar']}), "
            f"moods {recall['mood']:.4f}"
        )
    print()
    print(
        "| request | impressions | workers | conns | req/s | p50 ms | p90 ms | p99 ms | errors "
        "| server CPU ms/req | workers CPU ms/req | wrk CPU ms/req | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['scenario']} | {r['impressions']} | {r['workers']} | {r['connections']} "
            f"| {r['rps']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} "
            f"| {r['server_cpu_ms']:.2f} | {r['workers_cpu_ms']:.2f} | {r['wrk_cpu_ms']:.2f} "
            f"| {r['load']:.1f} |"
        )
    print(
        "\nserver CPU ms/req: CPU time of the server's processes per answered request (user +"
        "\nsystem, from /proc), which other work on the machine hardly changes; wrk CPU likewise."
        "\nworkers CPU: the same for the workers alone (without the serving process, which"
        "\nsupervises them and, with several workers, runs the host's event and impression writer)."
        "\nload: the 1-minute load average when the cell started (server and wrk account for 1"
        "\nto 3 of it; more means other work shared the cores and the latencies show it)."
        "\nimpressions: MUSICREC_IMPRESSIONS of that server (default: the setting's default)."
    )
    print(
        "\nimpression rows stored per server, in start order (after its clean stop): "
        + ", ".join(f"{imp} w={w}: {n if n is not None else 'no table'}" for imp, w, n in servers)
    )
    differences = impression_cost(results)
    print_costs(differences)
    if args.json:
        payload = {"ready_s": ready, "recall": recall, "results": results}
        payload["impression_cost"] = differences
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
