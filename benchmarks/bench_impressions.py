"""Impression log benchmark: the cost on the request path, and what a SIGKILL loses.

Prints a Markdown table of:

- CPU per list of the serving process (every thread), at 500 lists per second for
  ``--cpu-lists`` lists: building the rows only; building them and committing them in the
  process (one worker, or an app used directly); building them and handing them to a host
  writer in another process (``serve --workers N``), which commits them;
- ``ImpressionWriter.write`` per served list of ``--k`` rows (building the rows with
  ``impressions_of`` and queueing them), p50/p99 in microseconds: the whole cost a request pays;
- rows committed per second by the writer thread into SQLite (WAL, synchronous=FULL);
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

from musicrec.events.impressions import (
    ImpressionWriter,
    forwarding_writer,
    impressions_of,
    read_impressions,
)
from musicrec.events.store import EventStore

CHILD = """
import sys, time
from musicrec.events.impressions import ImpressionWriter, impressions_of
from musicrec.events.store import EventStore
url, rate, k, flush = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
writer = ImpressionWriter(EventStore(url), flush_interval_s=flush).start()
artists = [f"artist {j}" for j in range(k)]
scores = [float(k - j) for j in range(k)]
print("ready", flush=True)
started = time.monotonic()
i = 0
while True:
    writer.write(impressions_of(f"r{i}", f"u{i % 1000}", artists, scores, "v1", "exp", "a"))
    i += 1
    print(i, flush=True)  # queued so far: the parent's count of acknowledged lists
    delay = started + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


HOST = """
import sys
from musicrec.events.impressions import attach_to_host
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

    ``mode``: ``build`` (only the rows), ``commit`` (a writer committing in this process) or
    ``hand-off`` (a writer handing them to a host writer in another process). Pacing sleeps
    after every 50 lists, as a busy worker serves lists back to back (a sleep per list would
    add a wake-up and cold caches to every one).
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
        rows = impressions_of(f"c{i}", f"u{i}", artists, scores, "v1", "exp", "a")
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


def request_path_cost(store: EventStore, k: int, n: int) -> tuple[float, float, float]:
    """p50 and p99 (us) of building and queueing one list, and rows committed per second."""
    writer = ImpressionWriter(store, flush_interval_s=1.0).start()
    artists = [f"artist {j}" for j in range(k)]
    scores = [float(k - j) for j in range(k)]
    costs = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        writer.write(impressions_of(f"q{i}", f"u{i}", artists, scores, "v1", "exp", "a"))
        costs[i] = time.perf_counter() - started
    drain = time.perf_counter()
    stats = writer.stop()
    seconds = time.perf_counter() - drain
    assert stats.written == n * k and stats.dropped == 0, stats
    p50, p99 = np.percentile(costs * 1e6, [50, 99])
    return float(p50), float(p99), n * k / max(seconds, 1e-9)


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
        p50, p99, committed = request_path_cost(store, args.k, args.calls)
        losses = []
        for n in range(args.kills):
            url = f"sqlite:///{Path(tmp) / f'kill{n}.db'}"
            losses.append(one_kill(url, args.rate, args.k, args.flush, rng))
    lost = np.array(losses, dtype=float)
    print(f"load average (1/5/15 min) before: {load_before}, after: {os.getloadavg()}")
    print(f"k={args.k}, {args.calls:,} lists for the cost; {args.kills} kills at {args.rate:g}")
    print(f"lists/s with a {args.flush:g} s flush interval; SQLite WAL, synchronous=FULL\n")
    print("| measure | value |\n|---|---|")
    print(f"| process CPU per list at 500 lists/s: building the rows | {cpu['build']:.0f} µs |")
    print(f"| ... and committing them in the process | {cpu['commit']:.0f} µs |")
    print(f"| ... and handing them to a host writer | {cpu['hand-off']:.0f} µs |")
    print(f"| write() per list, p50 | {p50:.1f} µs |")
    print(f"| write() per list, p99 | {p99:.1f} µs |")
    print(f"| rows committed per second (writer thread) | {committed:,.0f} |")
    print(f"| lists lost per SIGKILL, median / max | {np.median(lost):.0f} / {lost.max():.0f} |")
    seconds = lost / args.rate
    print(f"| seconds of traffic lost, median / max | {np.median(seconds):.2f} / ", end="")
    print(f"{seconds.max():.2f} |")
    print("| lists lost by a clean stop | 0 (asserted) |")


if __name__ == "__main__":
    main()
