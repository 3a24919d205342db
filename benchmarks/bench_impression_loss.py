"""What a killed server loses from the impression log, and what a clean stop loses (nothing).

For every trial a fresh ``musicrec serve`` (``--workers``, loopback, its own SQLite event store,
``MUSICREC_IMPRESSIONS=true``, ``MUSICREC_IMPRESSIONS_FLUSH_S=--flush``) is driven by
``--clients`` threads asking ``GET /users/{id}/recommendations?k=10`` in a loop; each answered
list's request id (``X-Request-ID``) and the time it arrived are kept. After a random moment
(``--min-s`` to ``--max-s`` seconds of traffic) the whole server (supervisor and workers) is
sent SIGKILL, ``--kills`` times; with ``--worker-kills N``, N more trials SIGKILL one worker
only, let the clients go on for a second (the other worker answers) and then stop the server
cleanly; last, once SIGTERM (a clean stop) while the clients still ask. Each trial stops
itself after ``--max-requests`` lists at the latest.

Lost = lists answered whose request id has no row in the impression log. The lost window is
the time from the oldest lost list's answer to the kill. With several workers the workers hand
their rows to the serving process's writer every 0.1 s, which commits every ``--flush``
seconds: killing a worker should lose about 0.1 s of its lists, killing the whole server about
``--flush`` plus one commit. Lists/s and lost s count every worker's lists, so for a killed
worker (one of two) lost s understates its own lost time about twice: read the lost window.
Prints a Markdown table; ``--json PATH`` writes it too.

Usage::

    python benchmarks/bench_impression_loss.py --model PATH
    python benchmarks/bench_impression_loss.py --model PATH --workers 2 --kills 5 --flush 0.5
    python benchmarks/bench_impression_loss.py --model PATH --workers 2 --kills 3 --worker-kills 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from bench_wrk import Server, build_requests, cpu_name, log


def stored_request_ids(events_url: str) -> set[str]:
    """Distinct request ids in the impression log (empty without one)."""
    import sqlalchemy as sa

    engine = sa.create_engine(events_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("impression_lists"):
                return set()
            rows = conn.execute(sa.text("SELECT DISTINCT request_id FROM impression_lists"))
            return {str(r[0]) for r in rows}
    finally:
        engine.dispose()


def drive(
    url: str, paths: list[str], clients: int, stop: threading.Event, max_requests: int
) -> tuple[list[threading.Thread], list[tuple[float, str]]]:
    """Ask for lists from ``clients`` threads until ``stop``; (arrival time, request id) each.

    The list fills while the threads run: read it after joining them.
    """
    answered: list[tuple[float, str]] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        i = offset * 7919
        with httpx.Client(base_url=url, timeout=5.0) as http:
            while not stop.is_set():
                i += 1
                try:
                    response = http.get(paths[i % len(paths)])
                except httpx.HTTPError:
                    if stop.is_set():
                        return
                    time.sleep(0.01)
                    continue
                if response.status_code == 200:
                    with lock:
                        answered.append((time.monotonic(), response.headers["X-Request-ID"]))
                        if len(answered) >= max_requests:
                            stop.set()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    return threads, answered


def a_worker(supervisor: int) -> int:
    """The pid of one of ``supervisor``'s uvicorn workers (not multiprocessing's helpers)."""
    for entry in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == supervisor and "spawn_main" in command:
            return int(entry.name)
    raise RuntimeError(f"no worker process under {supervisor}")


def trial(args: argparse.Namespace, work: Path, n: int, how: str, after_s: float) -> dict[str, Any]:
    events_url = f"sqlite:///{work / f'events-{n}.db'}"
    env = {
        "MUSICREC_EVENTS_URL": events_url,
        "MUSICREC_IMPRESSIONS": "true",
        "MUSICREC_IMPRESSIONS_FLUSH_S": str(args.flush),
    }
    server = Server(
        args.model, args.workers, work / f"serve-{n}.log", ["--log-level", "warning"], env
    )
    try:
        paths = [p for _, p, _ in build_requests(server.url)["user"]]
        stop = threading.Event()
        started = time.monotonic()
        threads, answered = drive(server.url, paths, args.clients, stop, args.max_requests)
        stop.wait(after_s)
        victim = a_worker(server.process.pid) if how == "SIGKILL worker" else 0
        signalled = time.monotonic()
        if how == "SIGKILL":
            os.killpg(server.process.pid, signal.SIGKILL)  # the supervisor and every worker
        elif victim:
            os.kill(victim, signal.SIGKILL)
            time.sleep(1.0)  # the other worker answers on; then a clean stop stores its rows
            server.process.terminate()
        else:
            server.process.terminate()  # what `musicrec serve` gets from Ctrl-C / systemd
        server.process.wait(timeout=60)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        server.log.close()
    stored = stored_request_ids(events_url)
    arrived = {rid: t for t, rid in answered}
    lost = [t for rid, t in arrived.items() if rid not in stored]
    seconds = max(1e-9, signalled - started)
    rate = sum(1 for t in arrived.values() if t <= signalled) / seconds
    window = signalled - min(lost) if lost else 0.0
    row = {
        "how": how,
        "after_s": round(signalled - started, 2),
        "answered": len(arrived),
        "stored": len(stored & arrived.keys()),
        "lost": len(lost),
        "rate": rate,
        "lost_s_by_rate": len(lost) / rate if rate else 0.0,
        "lost_window_s": window,
        "load": os.getloadavg()[0],
    }
    log(
        f"{how}: {row['answered']} answered, {row['lost']} lost "
        f"({row['lost_window_s']:.2f} s window, {rate:.0f} lists/s)"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="Model artifact directory.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8, help="Client threads asking at once.")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILL trials (then one SIGTERM).")
    parser.add_argument(
        "--worker-kills", type=int, default=0, help="Trials that SIGKILL one worker only."
    )
    parser.add_argument("--flush", type=float, default=0.5, help="MUSICREC_IMPRESSIONS_FLUSH_S.")
    parser.add_argument("--min-s", type=float, default=2.0, help="Earliest signal (s of traffic).")
    parser.add_argument("--max-s", type=float, default=6.0, help="Latest signal (s of traffic).")
    parser.add_argument("--max-requests", type=int, default=50_000, help="Lists per trial, most.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args()
    if not 0 < args.min_s <= args.max_s <= 60 or args.kills > 20 or args.worker_kills > 20:
        sys.exit("need 0 < --min-s <= --max-s <= 60 and --kills, --worker-kills <= 20")
    if args.worker_kills and args.workers < 2:
        sys.exit("--worker-kills needs --workers 2 or more (one worker must answer on)")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="musicrec-bench-loss-"))
    plan = [("SIGKILL", rng.uniform(args.min_s, args.max_s)) for _ in range(args.kills)]
    plan += [
        ("SIGKILL worker", rng.uniform(args.min_s, args.max_s)) for _ in range(args.worker_kills)
    ]
    plan.append(("SIGTERM", rng.uniform(args.min_s, args.max_s)))
    rows = [trial(args, work, n, how, after) for n, (how, after) in enumerate(plan)]

    print(f"- model: {args.model}; {args.workers} worker(s), {args.clients} client threads")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} CPUs; impressions flush {args.flush:g} s")
    print()
    print("| signal | after s | lists answered | stored | lost | lists/s | lost s (lost/rate) "
          "| lost window s | load |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['how']} | {r['after_s']:.2f} | {r['answered']} | {r['stored']} | {r['lost']} "
            f"| {r['rate']:.0f} | {r['lost_s_by_rate']:.2f} | {r['lost_window_s']:.2f} "
            f"| {r['load']:.1f} |"
        )
    print(
        "\nlost: lists answered (their X-Request-ID received) with no row in the impression log;"
        "\nlost window: from the oldest lost list's answer to the signal."
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
