"""Servers the live-loop system tests start: ``musicrec serve`` on loopback, and an event poster.

Every server runs in its own process group, bound to 127.0.0.1, and is stopped when its block
ends, also when the test fails; then the group must be empty (workers included), or the test
fails for leaving processes behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from musicrec.ops.postgres import group_members

WATCH_INTERVAL_S = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def api_server(
    model: str, events_url: str, log: Path, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``musicrec serve`` in its own process group; yields (base URL, process) once ready.

    On exit (normal or not) the group gets SIGTERM, then SIGKILL after 20 s; a process of it
    still alive after that fails the test (unless the test failed already).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "MUSICREC_EVENTS_URL": events_url,
        "MUSICREC_WATCH_INTERVAL_S": str(WATCH_INTERVAL_S),
        "MUSICREC_MODEL_CACHE": os.environ.get("MUSICREC_MODEL_CACHE", ""),
        "OPENBLAS_NUM_THREADS": "1",
        # These servers test shared state: a list asked for again and again must not change
        # because its artists were shown 3 times (the cool-down has its own tests).
        "MUSICREC_COOLDOWN_SHOWS": "0",
    }
    cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve", "--model", model]
    cmd += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    with log.open("ab") as out:
        server = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"server did not start: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield base, server
    finally:
        stop_group(server)


def stop_group(server: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the server's group, SIGKILL what is left; fail if anything outlives that."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    deadline = time.monotonic() + timeout_s
    while group_members(server.pid) and time.monotonic() < deadline:  # workers exit last
        time.sleep(0.1)
    left = group_members(server.pid)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left and sys.exc_info()[0] is None:
        raise AssertionError(f"musicrec serve left processes behind: {left}")


def worker_versions(base: str) -> dict[str, str | None]:
    rows = httpx.get(f"{base}/model/workers", timeout=5).json()["workers"]
    return {row["worker"]: row["version"] for row in rows}


class EventPoster:
    """Posts small batches until stopped or ``max_batches``; remembers every acknowledged id."""

    def __init__(
        self, base: str, users: list[str], max_batches: int, pause_s: float, prefix: str = ""
    ):
        self.base, self.users, self.prefix = base, users, prefix
        self.max_batches, self.pause_s = max_batches, pause_s
        self.acked: list[int] = []
        self.batches = 0  # acknowledged
        self.attempts = 0  # sent (a batch in flight at a crash was sent, not acknowledged)
        self.refused: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def batch(self, n: int) -> list[dict[str, object]]:
        """Batch number ``n`` (the same every time: a retry resends it unchanged)."""
        artists = ["Metallica", "Slayer", "Björk", "Radiohead", "Daft Punk"]
        user = self.users[n % len(self.users)]
        batch: list[dict[str, object]] = [
            {"user_id": user, "artist": a, "plays": 1 + n % 3} for a in artists
        ]
        if self.prefix:  # ids of the sender's choosing (idempotent retries)
            for i, event in enumerate(batch):
                event["event_id"] = f"{self.prefix}-{n}-{i}"
        return batch

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            for n in range(self.max_batches):
                if self.stop.is_set():
                    return
                self.attempts = n + 1
                try:
                    answer = client.post("/events", json={"events": self.batch(n)})
                except httpx.HTTPError as exc:
                    self.refused.append(repr(exc))
                    continue
                if answer.status_code == 201:
                    body = answer.json()
                    self.acked += list(range(body["first_id"], body["last_id"] + 1))
                    self.batches += 1
                else:
                    self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                time.sleep(self.pause_s)
