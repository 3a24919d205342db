"""The event store on a real PostgreSQL server: two API hosts, restarts, a retrain, SIGKILL.

PostgreSQL comes from the operating system's packages (``scripts/install-os-deps.sh``) and is
started by :class:`musicrec.ops.postgres.LocalPostgres` in a temporary directory, on 127.0.0.1
only; the API processes bind 127.0.0.1 too. The fixtures stop every server when its test ends,
also when it fails, and then check that none of their processes is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_servers import EventPoster, api_server

from conftest import require_or_skip
from musicrec.events.store import EventStore
from musicrec.ops.postgres import LocalPostgres, PostgresError
from musicrec.serving.profile import build_profile
from musicrec.serving.recommender import Recommender

pytest.importorskip("psycopg", reason="the postgres extra (make install) is not installed")
METAL = {"metal", "heavy metal", "thrash metal"}


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    try:
        server = LocalPostgres()
    except PostgresError as exc:
        require_or_skip(False, str(exc))
        raise
    with server:
        yield server
    assert not server.processes(), "PostgreSQL left processes behind"
    assert not server.directory.exists()


@pytest.fixture()
def model(synth_model: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(synth_model, out)
    return out


def metal_share(recs: list[dict]) -> int:
    return sum(bool(METAL & set(r["tags"])) for r in recs)


def recommendations(base: str, user: str) -> list[str]:
    answer = httpx.get(f"{base}/users/{user}/recommendations", params={"k": 10}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [r["artist"] for r in answer.json()["recommendations"]]


def musicrec(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_hosts_share_the_store_across_restarts_and_a_retrain(
    postgres: LocalPostgres, model: Path, synth_raw: Path, tmp_path: Path
) -> None:
    url = postgres.create_database("hosts")
    rec = Recommender.load(model)
    metal = [
        str(rec.catalogue.names[i])
        for i in rec.catalogue.by_popularity
        if METAL & set(rec.catalogue.tags_of(i))
    ][:10]
    logs = [tmp_path / "host-a.log", tmp_path / "host-b.log"]
    with (
        api_server(str(model), url, logs[0], workers=2) as (host_a, _),
        api_server(str(model), url, logs[1]) as (host_b, _),
    ):
        assert host_a != host_b
        users = httpx.get(f"{host_b}/users", params={"limit": 40}).json()["users"]
        shares = []
        for candidate in users:
            recs = httpx.get(f"{host_b}/users/{candidate}/recommendations").json()
            shares.append((metal_share(recs["recommendations"]), candidate))
        user = min(shares)[1]
        before = recommendations(host_b, user)
        events = [
            {"user_id": user, "artist": a, "plays": 3, "event_id": f"m{i}"}
            for i, a in enumerate(metal)
        ]
        posted = httpx.post(f"{host_a}/events", json={"events": events})
        assert posted.status_code == 201 and posted.json()["stored"] == 10
        after_b = recommendations(host_b, user)  # read on the other host
        assert after_b != before and after_b == recommendations(host_a, user)
        shown = httpx.get(f"{host_b}/users/{user}/recommendations").json()["recommendations"]
        assert metal_share(shown) >= 7
        retried = httpx.post(f"{host_b}/events", json={"events": events})  # the other host
        assert retried.status_code == 200 and retried.json()["duplicates"] == 10
        assert httpx.get(f"{host_b}/events/stats").json()["events"] == 10

    with (  # both hosts restarted: the state is the database's, not the processes'
        api_server(str(model), url, logs[0], workers=2) as (host_a, _),
        api_server(str(model), url, logs[1]) as (host_b, _),
    ):
        assert recommendations(host_b, user) == after_b == recommendations(host_a, user)

    config = tmp_path / "train.yaml"
    config.write_text("train:\n  factors: 16\n  iterations: 4\n")
    current = tmp_path / "current"
    done = musicrec(
        "retrain", "--source", "lastfm360k", "--input", synth_raw,
        "--workdir", tmp_path / "work", "--events-url", url, "--config", config,
        "--model-name", "pg-loop", "--experiment", "pg-loop", "--margin", "-1",
        "--publish", current, "--json",
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["status"] == "promoted" and result["watermark"] == 10
    retrained = Recommender.load(current)
    assert retrained.manifest["events_watermark"] == 10
    store = EventStore(url)
    later = [{"user_id": user, "artist": metal[0], "plays": 2, "event_id": "later"}]
    with api_server(str(current), url, logs[1]) as (host_b, _):
        assert httpx.post(f"{host_b}/events", json={"events": later}).status_code == 201
        served = recommendations(host_b, user)
    # After the retrain, the first ten events are in the model; only the later one is new.
    every = build_profile(retrained, store.user_events(user), user)
    compact = build_profile(retrained, store.compacted_events(user, 10), user)
    assert np.array_equal(every.items, compact.items)
    assert np.array_equal(every.plays, compact.plays)
    rows = store.compacted_events(user, 10)
    newer = rows[(rows["artist"] == metal[0]) & (rows["id"] > 10)]  # a row of the new epoch
    assert newer["plays"].tolist() == [2.0]
    profile = compact
    expected = retrained.recommend_user_live(
        user, 10, extra_items=profile.items, extra_plays=profile.plays, fresh_weight=0.5
    )
    assert served == [str(r.artist) for r in expected]
    store.close()


@pytest.mark.slow
def test_sigkill_of_a_two_worker_host_loses_no_acknowledged_event(
    postgres: LocalPostgres, model: Path, tmp_path: Path
) -> None:
    url = postgres.create_database("sigkill")
    log = tmp_path / "serve.log"
    with api_server(str(model), url, log, workers=2) as (base, server):
        poster = EventPoster(base, ["pg-killed-1", "pg-killed-2"], 5000, 0.0, prefix="k")
        poster.thread.start()
        deadline = time.monotonic() + 30
        while len(poster.acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # workers, host writer and all, mid-ingestion
        server.wait(timeout=10)
        poster.stop.set()
        poster.thread.join(timeout=30)
    assert len(poster.acked) >= 500
    store = EventStore(url)
    stored = set(store.read()["id"])
    assert set(poster.acked) <= stored
    with api_server(str(model), url, log, workers=2) as (base, _):
        # A client that lost its answers sends every batch again: nothing is stored twice.
        with httpx.Client(base_url=base, timeout=10) as client:
            for n in range(poster.attempts):
                answer = client.post("/events", json={"events": poster.batch(n)})
                assert answer.status_code in (200, 201), answer.text
        stats = httpx.get(f"{base}/events/stats").json()
    assert stats["events"] == 5 * poster.attempts  # each event id exactly once
    assert stats["max_id"] >= max(poster.acked)
    store.close()


OLD_SCHEMA = """
CREATE TABLE events (
    id SERIAL PRIMARY KEY, user_id VARCHAR(200) NOT NULL, artist VARCHAR(200) NOT NULL,
    kind VARCHAR(8) NOT NULL, plays INTEGER NOT NULL, timestamp BIGINT NOT NULL,
    received_at FLOAT NOT NULL);
CREATE INDEX events_user_id ON events (user_id, id);
CREATE TABLE model_pointer (name VARCHAR(64) PRIMARY KEY, target VARCHAR(1000) NOT NULL,
    generation INTEGER NOT NULL, updated_at FLOAT NOT NULL);
CREATE TABLE serving_workers (worker VARCHAR(200) PRIMARY KEY, version VARCHAR(200),
    path VARCHAR(1000), seen_at FLOAT NOT NULL);
"""


@pytest.mark.slow
def test_a_first_version_store_on_postgres_is_upgraded_in_place(postgres: LocalPostgres) -> None:
    """The DDL above is what the first release created on PostgreSQL."""
    import sqlalchemy as sa

    from musicrec.events.schema import validate_batch

    url = postgres.create_database("upgrade")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in OLD_SCHEMA.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "INSERT INTO events (user_id, artist, kind, plays, timestamp, received_at) VALUES "
            "('u', 'A', 'play', 3, 1700000000, 0), ('u', 'A', 'love', 1, 1700000001, 0), "
            "('u', 'B', 'ban', 1, 1700000002, 0), ('v', 'A', 'play', 2, 1700000003, 0)"
        )
    engine.dispose()
    stores = [EventStore(url) for _ in range(3)]  # opened at once: upgraded once
    with ThreadPoolExecutor(3) as pool:
        counts = list(pool.map(lambda opened: opened.count(), stores))
    assert counts == [4, 4, 4]
    store = stores[0]
    frame = store.compacted_events("u", 0)
    assert sorted(zip(frame["artist"], frame["kind"], frame["plays"], strict=True)) == [
        ("A", "play", 8.0),
        ("B", "ban", 1.0),
    ]
    batch = validate_batch([{"user_id": "u", "artist": "C", "event_id": "e1"}])
    assert store.append(batch).ids == [5] and store.append(batch).duplicates == 1
    with store.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.exec_driver_sql(
            "INSERT INTO events (user_id, artist, kind, plays, timestamp, received_at, event_id)"
            " VALUES ('u', 'C', 'play', 1, 1700000000, 0, 'e1')"
        )
    for opened in stores:
        opened.close()
