"""The live loop on loopback: real API workers, events, a retrain promoted under traffic.

Bounded in count and time: each server runs for tens of seconds at most and every load
generator stops by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from musicrec.config import TrainConfig
from musicrec.events.store import EventStore
from musicrec.loop.retrain import RetrainConfig, retrain
from musicrec.ops.traffic import run_traffic

WATCH_INTERVAL_S = 1.0
SWAP_SLACK_S = 4.0  # loading the new version (download, index) after the check that sees it
MODEL_NAME = "live-loop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def api_server(
    model: str, events_url: str, log: Path, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``musicrec serve`` in its own process group; yields (base URL, process) once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "MUSICREC_EVENTS_URL": events_url,
        "MUSICREC_WATCH_INTERVAL_S": str(WATCH_INTERVAL_S),
        "MUSICREC_MODEL_CACHE": os.environ.get("MUSICREC_MODEL_CACHE", ""),
        "OPENBLAS_NUM_THREADS": "1",
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
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def worker_versions(base: str) -> dict[str, str | None]:
    rows = httpx.get(f"{base}/model/workers", timeout=5).json()["workers"]
    return {row["worker"]: row["version"] for row in rows}


class EventPoster:
    """Posts small batches until stopped or ``max_batches``; remembers every acknowledged id."""

    def __init__(self, base: str, users: list[str], max_batches: int, pause_s: float):
        self.base, self.users = base, users
        self.max_batches, self.pause_s = max_batches, pause_s
        self.acked: list[int] = []
        self.refused: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        artists = ["Metallica", "Slayer", "Björk", "Radiohead", "Daft Punk"]
        with httpx.Client(base_url=self.base, timeout=10) as client:
            for n in range(self.max_batches):
                if self.stop.is_set():
                    return
                user = self.users[n % len(self.users)]
                batch = [{"user_id": user, "artist": a, "plays": 1 + n % 3} for a in artists]
                try:
                    answer = client.post("/events", json={"events": batch})
                except httpx.HTTPError as exc:
                    self.refused.append(repr(exc))
                    continue
                if answer.status_code == 201:
                    body = answer.json()
                    self.acked += list(range(body["first_id"], body["last_id"] + 1))
                else:
                    self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                time.sleep(self.pause_s)


@pytest.mark.slow
def test_two_workers_follow_a_retrain_under_traffic(synth_raw: Path, tmp_path: Path) -> None:
    events_url = f"sqlite:///{tmp_path / 'events.db'}"
    config = RetrainConfig(
        source="lastfm360k",
        input=synth_raw,
        workdir=tmp_path / "work",
        events_url=events_url,
        train=TrainConfig(factors=16, iterations=4),
        model_name=MODEL_NAME,
        experiment=MODEL_NAME,
        margin=-1.0,  # this test is about the swap, not the gate (see test_retrain)
    )
    first = retrain(config)
    assert first.status == "promoted"
    log = tmp_path / "serve.log"
    with api_server(f"models:/{MODEL_NAME}@champion", events_url, log, workers=2) as (base, _):
        deadline = time.monotonic() + 30
        while len(worker_versions(base)) < 2:  # both workers heartbeat once the store exists
            httpx.post(f"{base}/events", json={"events": [{"user_id": "warm", "artist": "x"}]})
            assert time.monotonic() < deadline, "two workers did not report"
            time.sleep(0.3)
        old = set(worker_versions(base).values())
        assert len(old) == 1

        users = httpx.get(f"{base}/users", params={"limit": 20}).json()["users"]
        poster = EventPoster(base, [*users[:5], "loop-newcomer"], max_batches=400, pause_s=0.02)
        traffic: dict[str, object] = {}
        sender = threading.Thread(
            target=lambda: traffic.update(
                summary=run_traffic(base, rate=40, duration=15, max_requests=600, concurrency=4)
            ),
            daemon=True,
        )
        poster.thread.start()
        sender.start()
        time.sleep(2)
        second = retrain(config)  # promoted mid-traffic, events read up to now included
        promoted_at = time.monotonic()
        assert second.status == "promoted" and second.watermark > 0
        new_versions: dict[str, str | None] = {}
        while time.monotonic() - promoted_at < WATCH_INTERVAL_S + SWAP_SLACK_S:
            new_versions = worker_versions(base)
            if len(new_versions) == 2 and not old & set(new_versions.values()):
                break
            time.sleep(0.1)
        converged = time.monotonic() - promoted_at
        assert len(set(new_versions.values())) == 1 and not old & set(new_versions.values()), (
            f"workers did not converge in {converged:.1f}s: {new_versions}"
        )
        sender.join(timeout=60)
        poster.stop.set()
        poster.thread.join(timeout=30)
        metrics = httpx.get(f"{base}/metrics").text

    summary = traffic["summary"]
    assert summary.total > 100, summary.to_dict()  # type: ignore[attr-defined]
    assert summary.server_errors == 0, summary.to_dict()  # type: ignore[attr-defined]
    assert not poster.refused, poster.refused[:3]
    stored = set(EventStore(events_url).read()["id"])
    assert poster.acked and set(poster.acked) <= stored
    new_version = next(iter(new_versions.values()))
    serving_new = re.findall(
        rf'served_model_info{{pid="\d+",version="{new_version}"}} 1.0', metrics
    )
    assert len(serving_new) == 2, metrics
    assert "model_swaps_total" in metrics


@pytest.mark.slow
def test_sigkill_during_ingestion_loses_no_acknowledged_event(
    synth_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(synth_model, model)
    events_url = f"sqlite:///{tmp_path / 'events.db'}"
    log = tmp_path / "serve.log"
    with api_server(str(model), events_url, log) as (base, server):
        poster = EventPoster(base, ["killed-1", "killed-2"], max_batches=5000, pause_s=0.0)
        poster.thread.start()
        deadline = time.monotonic() + 20
        while len(poster.acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # mid-ingestion, batches in flight
        server.wait(timeout=10)
        poster.stop.set()
        poster.thread.join(timeout=30)
    assert len(poster.acked) >= 500
    with api_server(str(model), events_url, log) as (base, _):
        stats = httpx.get(f"{base}/events/stats").json()
        assert stats["max_id"] >= max(poster.acked)
    stored = set(EventStore(events_url).read()["id"])
    assert set(poster.acked) <= stored
