"""Impression log benchmark: the cost on the request path, and what a SIGKILL loses.

Prints a Markdown table of:

- CPU per list of the serving process (every thread), at 500 lists per second for
  ``--cpu-lists`` lists: packing each list only (:func:`~musicrec.events.impressions.pack`);
  packing and committing them in the process (one worker, or an app used directly); packing
  them and handing them to a host writer in another process (``serve --workers N``), which
  commits them;
- ``ImpressionWriter.write`` per served list of ``--k`` artists (packing the list and
  queueing it), p50/p99 in microseconds: the whole cost a request pays;
- impressions (shown artists) committed per second, and CPU per list, by the writer thread's
  step into SQLite (WAL, synchronous=FULL): ``--calls`` lists of ``--k`` for random listeners,
  5,000 shown artists per transaction; and the same lists stored as one row per shown artist
  with the same two indexes (the layout of earlier versions), for comparison;
- SIGKILL: a child process serves ``--rate`` lists per second into a writer
  (``--flush`` seconds between commits) and reports every list it queued; it is killed with
  SIGKILL at a random moment, ``--kills`` times. Lost = lists queued but not in the store,
  in lists and in seconds of traffic (lost / rate). A clean stop (``stop()``) is also run
  once and must lose nothing.

Usage::

    python benchmarks/bench_impressions.py                  # defaults: 200 lists/s, 0.5 s flush
    python benchmarks/bench_impressions.py --rate 1000 --kills 10
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from musicrec.events.impression_writer import BATCH_ROWS, ImpressionWriter, forwarding_writer
from musicrec.events.impressions import pack, read_impressions, write_impressions
from musicrec.events.store import EventStore

CHILD = """
import sys, time
from musicrec.events.impression_writer import ImpressionWriter
from musicrec.events.impressions import pack
from musicrec.events.store import EventStore
url, rate, k, flush = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
writer = ImpressionWriter(EventStore(url), flush_interval_s=flush).start()
artists = [f"artist {j}" for j in range(k)]
scores = [float(k - j) for j in range(k)]
print("ready", flush=True)
started = time.monotonic()
i = 0
while True:
    writer.write([pack(f"r{i}", f"u{i % 1000}", artists, scores, "v1", "exp", "a")])
    i += 1
    print(i, flush=True)  # queued so far: the parent's count of acknowledged lists
    delay = started + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


HOST = """
import sys
from musicrec.events.impression_writer import attach_to_host
from musicrec.events.store import EventStore
from musicrec.events.writer import WriterService
store = EventStore(sys.argv[1])
service = WriterService(store)
attach_to_host(service, store, 1.0)
print(service.address, flush=True)
sys.stdin.read()  # until the parent closes it
service.stop()
"""


def cpu_per_list(url: str, k: int, n: int, rate: float, mode: str) -> float:
    """CPU time (us, all threads of this process) per list, paced at ``rate`` lists/s.

    ``mode``: ``build`` (only packing the lists), ``commit`` (a writer committing in this
    process) or ``hand-off`` (a writer handing them to a host writer in another process).
    Pacing sleeps after every 50 lists, as a busy worker serves lists back to back (a sleep
    per list would add a wake-up and cold caches to every one).
    """
    store = EventStore(url)
    host, writer = None, None
    if mode == "hand-off":
        args = [sys.executable, "-c", HOST, url]
        host = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert host.stdout is not None and host.stdin is not None
        writer = forwarding_writer(store, host.stdout.readline().strip())
    elif mode == "commit":
        writer = ImpressionWriter(store).start()
    artists = [f"artist {j}" for j in range(k)]
    scores = [float(k - j) for j in range(k)]
    cpu, started = time.process_time(), time.monotonic()
    for i in range(n):
        rows = [pack(f"c{i}", f"u{i}", artists, scores, "v1", "exp", "a")]
        if writer is not None:
            writer.write(rows)
        if i % 50 == 49 and (delay := started + (i + 1) / rate - time.monotonic()) > 0:
            time.sleep(delay)
    if writer is not None:
        stats = writer.stop()
        assert stats.written == n * k and stats.dropped == 0, stats
    cpu = time.process_time() - cpu
    if host is not None:
        host.communicate(timeout=60)  # closes its stdin: it stops, committing every row
    if writer is not None:
        assert len(read_impressions(store)) == n * k
    return cpu / n * 1e6


def request_path_cost(store: EventStore, k: int, n: int) -> tuple[float, float]:
    """p50 and p99 (us) of packing and queueing one list."""
    writer = ImpressionWriter(store, flush_interval_s=1.0).start()
    artists = [f"artist {j}" for j in range(k)]
    scores = [float(k - j) for j in range(k)]
    costs = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        writer.write([pack(f"q{i}", f"u{i}", artists, scores, "v1", "exp", "a")])
        costs[i] = time.perf_counter() - started
    stats = writer.stop()
    assert stats.written == n * k and stats.dropped == 0, stats
    p50, p99 = np.percentile(costs * 1e6, [50, 99])
    return float(p50), float(p99)


ROWS_TABLE = """CREATE TABLE rows_log (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT NULL,
listener VARCHAR(200) NOT NULL, position INTEGER NOT NULL, artist VARCHAR(200) NOT NULL,
score FLOAT NOT NULL, model_version VARCHAR(200) NOT NULL, experiment VARCHAR(64),
arm VARCHAR(64), time FLOAT NOT NULL, propensity FLOAT)"""
ROWS_INDEXES = (
    "CREATE INDEX rows_log_experiment ON rows_log (experiment, arm)",
    "CREATE INDEX rows_log_listener_time ON rows_log (listener, time)",
)
ROWS_INSERT = "INSERT INTO rows_log (request_id, listener, position, artist, score, " + (
    "model_version, experiment, arm, time, propensity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def commit_cost(url: str, k: int, n: int, per_artist: bool = False) -> tuple[float, float]:
    """Impressions committed per second, and CPU (us) per list, by the writer thread's step
    (one transaction per ``BATCH_ROWS`` shown artists) over ``n`` lists of random listeners
    (the listener-and-time index takes random keys, as in serving).

    ``per_artist``: the same lists as one row per shown artist with the same two indexes,
    the layout of earlier versions, inserted the way they did (the driver's executemany).
    """
    store = EventStore(url)
    rng = np.random.default_rng(1)
    listeners = rng.integers(0, 359_000, n)
    artists = [f"artist {j}" for j in range(k)]
    scores = [float(k - j) for j in range(k)]
    lists = [pack(f"w{i}", f"u{listeners[i]}", artists, scores, "v1", "exp", "a") for i in range(n)]
    step = max(1, BATCH_ROWS // k)
    if per_artist:
        with store.writes.begin() as conn:
            for sql in (ROWS_TABLE, *ROWS_INDEXES):
                conn.exec_driver_sql(sql)
        batches = [
            [
                (f"w{i}", f"u{listeners[i]}", j, artists[j], scores[j], "v1", "exp", "a", 1.0, None)
                for i in range(start, min(start + step, n))
                for j in range(k)
            ]
            for start in range(0, n, step)
        ]

        def commit(batch: list) -> None:
            with store.writes.begin() as conn:
                conn.exec_driver_sql(ROWS_INSERT, batch)
    else:
        write_impressions(store, lists[:1])  # the table, made before the clock starts
        batches = [lists[start : start + step] for start in range(1, n, step)]
        n -= 1

        def commit(batch: list) -> None:
            write_impressions(store, batch)

    cpu, started = time.process_time(), time.perf_counter()
    for batch in batches:
        commit(batch)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return n * k / seconds, cpu / n * 1e6


def one_kill(url: str, rate: float, k: int, flush: float, rng: np.random.Generator) -> int:
    """Lists queued but lost when the writer's process is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(rate), str(k), str(flush)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("child did not start")
    kill_at = time.monotonic() + float(rng.uniform(2.0, 4.0))
    queued = 0
    for line in child.stdout:
        queued = int(line)
        if time.monotonic() >= kill_at:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    stored = read_impressions(EventStore(url))
    return queued - stored["request_id"].nunique()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="lists per second")
    parser.add_argument("--flush", type=float, default=0.5, help="seconds between commits")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-lists", type=int, default=10_000, help="lists for the CPU cost")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-impressions-") as tmp:
        modes = ("build", "commit", "hand-off")
        cpu = {
            mode: cpu_per_list(
                f"sqlite:///{Path(tmp) / f'cpu-{mode}.db'}", args.k, args.cpu_lists, 500.0, mode
            )
            for mode in modes
        }
        store = EventStore(f"sqlite:///{Path(tmp) / 'cost.db'}")
        p50, p99 = request_path_cost(store, args.k, args.calls)
        committed, commit_cpu = commit_cost(f"sqlite:///{Path(tmp) / 'c.db'}", args.k, args.calls)
        rows_committed, rows_cpu = commit_cost(
            f"sqlite:///{Path(tmp) / 'r.db'}", args.k, args.calls, per_artist=True
        )
        losses = []
        for n in range(args.kills):
            url = f"sqlite:///{Path(tmp) / f'kill{n}.db'}"
            losses.append(one_kill(url, args.rate, args.k, args.flush, rng))
    lost = np.array(losses, dtype=float)
    print(f"load average (1/5/15 min) before: {load_before}, after: {os.getloadavg()}")
    print(f"k={args.k}, {args.calls:,} lists for the cost; {args.kills} kills at {args.rate:g}")
    print(f"lists/s with a {args.flush:g} s flush interval; SQLite WAL, synchronous=FULL\n")
    print("| measure | value |\n|---|---|")
    print(f"| process CPU per list at 500 lists/s: packing it | {cpu['build']:.0f} µs |")
    print(f"| ... and committing them in the process | {cpu['commit']:.0f} µs |")
    print(f"| ... and handing them to a host writer | {cpu['hand-off']:.0f} µs |")
    print(f"| write() per list, p50 | {p50:.1f} µs |")
    print(f"| write() per list, p99 | {p99:.1f} µs |")
    print(f"| impressions committed per second (writer thread) | {committed:,.0f} |")
    print(f"| CPU per list committed (writer thread) | {commit_cpu:.1f} µs |")
    print(f"| the same as one row per shown artist: per second | {rows_committed:,.0f} |")
    print(f"| the same as one row per shown artist: CPU per list | {rows_cpu:.1f} µs |")
    print(f"| lists lost per SIGKILL, median / max | {np.median(lost):.0f} / {lost.max():.0f} |")
    seconds = lost / args.rate
    print(f"| seconds of traffic lost, median / max | {np.median(seconds):.2f} / ", end="")
    print(f"{seconds.max():.2f} |")
    print("| lists lost by a clean stop | 0 (asserted) |")


if __name__ == "__main__":
    main()
