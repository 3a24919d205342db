"""The live loop on loopback: real API workers, events, a retrain promoted under traffic.

Bounded in count and time: each server runs for tens of seconds at most and every load
generator stops by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from live_servers import WATCH_INTERVAL_S, EventPoster, api_server, worker_versions

from musicrec.config import TrainConfig
from musicrec.events.store import EventStore
from musicrec.loop.retrain import RetrainConfig, retrain
from musicrec.ops.traffic import run_traffic
from musicrec.pipeline.gate import GateConfig

# Accepts any candidate: no NDCG bound, no guardrail can trip (coverage and novelty stay >= 0).
LENIENT = GateConfig(
    mode="non-inferiority", delta=1.0, coverage_share=1.0, novelty_share=1.0, alpha=1e-9
)
SWAP_SLACK_S = 4.0  # loading the new version (download, index) after the check that sees it
MODEL_NAME = "live-loop"


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
        gate=LENIENT,  # this test is about the swap, not the gate (see test_retrain)
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
