"""Per-listener state kept on write, idempotent events, schema upgrades and the host writer.

The fold-in used to re-read and re-aggregate every event of a listener on each request; the
store now keeps them aggregated per artist (``musicrec.events.state``). These tests hold the
new path to the old one: for any sequence of events, training watermarks and served model,
both give the same profile and the same recommendations.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.events.writer import WriterService
from musicrec.serving.profile import Profile, build_profile
from musicrec.serving.recommender import Recommender

NOW = 1_700_000_000.0
DAY = 86_400


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("state-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> Recommender:
    return Recommender.load(model_dir)


def artist_pool(rec: Recommender) -> tuple[str, list[str]]:
    """A known listener and artists of every kind: in their training row, outside it, a
    spelling variant of one of them, and a name the catalogue does not know."""
    user = rec.sample_users(1)[0]
    row = rec.train[rec.user_index(user)].indices
    names = rec.catalogue.names
    inside = [str(names[i]) for i in row[:3]]
    outside = [str(names[i]) for i in rec.catalogue.by_popularity if i not in row][:3]
    return user, [*inside, *outside, inside[0].upper(), "Nobody Knows This Band"]


def assert_same_profile(old: Profile, new: Profile) -> None:
    for name in ("items", "plays", "banned", "recent"):
        assert np.array_equal(getattr(old, name), getattr(new, name)), name
    assert old.unknown_artists == new.unknown_artists


EVENT = st.tuples(
    st.sampled_from([0, 0, 0, 1]),  # listener: known to the model (mostly), or new
    st.sampled_from([0, 0, 1, 2, 3, 4, 5, 6, 7]),  # artist of the pool
    st.sampled_from(["play", "play", "love", "skip", "ban"]),
    st.integers(1, 50),  # plays (play events)
    st.integers(0, 30),  # days before NOW
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(EVENT, min_size=4, max_size=40),
    cuts=st.lists(st.integers(1, 39), max_size=3),
    served=st.integers(0, 3),
    split=st.floats(0.0, 1.0),
)
def test_state_gives_the_profile_of_every_event(
    rec: Recommender,
    events: list[tuple[int, int, str, int, int]],
    cuts: list[int],
    served: int,
    split: float,
) -> None:
    """Any events, retrains in between, and any served watermark (one a retrain recorded, or
    an id no retrain used, which splits an artist's aggregate): the same profile."""
    user, pool = artist_pool(rec)
    listeners = [user, "someone-new"]
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{tmp}/ev.db")
        watermarks = [0]
        for position, (who, artist, kind, plays, days) in enumerate(events):
            if position in cuts:
                watermarks.append(store.training_watermark())
            raw = {"user_id": listeners[who], "artist": pool[artist], "kind": kind}
            raw |= {"timestamp": int(NOW) - days * DAY} | (
                {"plays": plays} if kind == "play" else {}
            )
            store.append(validate_batch([raw], now=NOW))
        arbitrary = round(split * len(events))
        watermark = watermarks[served] if served < len(watermarks) else arbitrary
        original = rec.manifest
        rec.manifest = {**original, "events_watermark": watermark}
        try:
            for listener in listeners:
                every = store.user_events(listener)
                compact = store.compacted_events(listener, watermark)
                assert len(compact) <= 3 * len(pool)
                for days in (None, 7.0):
                    old = build_profile(rec, every, listener, days, now=NOW)
                    new = build_profile(rec, compact, listener, days, now=NOW)
                    assert_same_profile(old, new)
        finally:
            rec.manifest = original
            store.close()


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model=str(model_dir),
        events_url=f"sqlite:///{tmp_path / 'events.db'}",
        watch_interval_s=0,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_served_recommendations_equal_the_reaggregation_of_every_event(
    client: TestClient, rec: Recommender
) -> None:
    """Through the API (state path) and by re-reading every event (the former path)."""
    rng = np.random.default_rng(3)
    users = rec.sample_users(6)
    names = [str(rec.catalogue.names[i]) for i in rec.catalogue.by_popularity[:60]]
    for user in users:
        for _ in range(4):
            batch = [
                {
                    "user_id": user,
                    "artist": names[int(rng.integers(len(names)))],
                    "kind": str(rng.choice(["play", "play", "love", "skip", "ban"])),
                }
                for _ in range(50)
            ]
            assert client.post("/events", json={"events": batch}).status_code == 201
    store: EventStore = client.app.state.event_store  # type: ignore[attr-defined]
    for user in users:
        for params in ({"k": 20}, {"k": 20, "exclude_recent_days": 3}):
            served = client.get(f"/users/{user}/recommendations", params=params).json()
            profile = build_profile(
                rec, store.user_events(user), user, params.get("exclude_recent_days")
            )
            expected = rec.recommend_user_live(
                user,
                20,
                extra_items=profile.items,
                extra_plays=profile.plays,
                banned=profile.banned,
                exclude=profile.recent,
                fresh_weight=0.5,
            )
            assert [r["artist"] for r in served["recommendations"]] == [
                str(r.artist) for r in expected
            ]


# ----------------------------------------------------------------------------- idempotency


def test_event_ids_are_stored_once_per_listener(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    batch = validate_batch(
        [
            {"user_id": "u", "artist": "A", "event_id": "e1"},
            {"user_id": "u", "artist": "B", "event_id": "e2"},
            {"user_id": "u", "artist": "B", "event_id": "e2"},  # repeated inside the batch
            {"user_id": "v", "artist": "A", "event_id": "e1"},  # another listener's e1
            {"user_id": "u", "artist": "C"},  # no id: always stored
        ],
        now=NOW,
    )
    first = store.append(batch)
    assert (first.ids, first.skipped) == ([1, 2, 3, 4], (2,))
    again = store.append(batch)
    assert (again.ids, again.skipped) == ([5], (0, 1, 2, 3))
    assert store.count() == 5
    assert store.compacted_events("u", 0)["plays"].sum() == 4  # A, B, C, C: duplicates add none
    with store.engine.connect() as conn, pytest.raises(Exception, match="UNIQUE"):
        conn.exec_driver_sql(  # the constraint itself, not only the check before inserting
            "INSERT INTO events (user_id, artist, kind, plays, timestamp, received_at, event_id)"
            " VALUES ('u', 'A', 'play', 1, 1700000000, 0, 'e1')"
        )


def test_a_retried_batch_is_answered_2xx_with_its_duplicates(client: TestClient) -> None:
    batch = [{"user_id": "r", "artist": f"a{i}", "event_id": f"r-{i}"} for i in range(3)]
    first = client.post("/events", json={"events": batch})
    assert first.status_code == 201
    assert (first.json()["stored"], first.json()["duplicates"]) == (3, 0)
    retried = client.post("/events", json={"events": batch})
    assert retried.status_code == 200
    body = retried.json()
    assert (body["accepted"], body["stored"], body["duplicates"]) == (3, 0, 3)
    assert body["first_id"] is None and body["last_id"] is None
    grown = client.post("/events", json={"events": [*batch, {"user_id": "r", "artist": "x"}]})
    assert grown.status_code == 201 and (grown.json()["stored"], grown.json()["duplicates"]) == (
        1,
        3,
    )
    assert client.get("/events/stats").json()["events"] == 4
    metrics = client.get("/metrics").text
    assert "events_duplicate_total 6.0" in metrics
    assert 'events_ingested_total{kind="play"} 4.0' in metrics
    bad = client.post("/events", json={"events": [{"user_id": "r", "artist": "a", "event_id": ""}]})
    assert bad.status_code == 422 and bad.json()["field"] == "event_id"


def test_import_of_the_same_file_twice_adds_nothing(tmp_path: Path) -> None:
    from musicrec.events.imports import import_events

    path = tmp_path / "events.csv"
    path.write_text("user_id,artist,event_id\nu,Metallica,1\nu,Slayer,2\nv,Metallica,1\n")
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    first = import_events(store, path)
    assert (first.rows, first.duplicates, first.first_id, first.last_id) == (3, 0, 1, 3)
    second = import_events(store, path)
    assert (second.rows, second.duplicates, second.first_id) == (0, 3, None)
    assert store.count() == 3


# ----------------------------------------------------------------------------- schema upgrade

OLD_SCHEMA = """
CREATE TABLE events (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id VARCHAR(200) NOT NULL, artist VARCHAR(200) NOT NULL, kind VARCHAR(8) NOT NULL,
    plays INTEGER NOT NULL, timestamp BIGINT NOT NULL, received_at FLOAT NOT NULL);
CREATE INDEX events_user_id ON events (user_id, id);
CREATE TABLE model_pointer (name VARCHAR(64) NOT NULL PRIMARY KEY, target VARCHAR(1000) NOT NULL,
    generation INTEGER NOT NULL, updated_at FLOAT NOT NULL);
CREATE TABLE serving_workers (worker VARCHAR(200) NOT NULL PRIMARY KEY, version VARCHAR(200),
    path VARCHAR(1000), seen_at FLOAT NOT NULL);
"""


def test_a_store_of_the_first_version_is_upgraded_in_place(
    tmp_path: Path, rec: Recommender
) -> None:
    """The DDL above is what the first release created (its SQLAlchemy tables, on SQLite)."""
    user, pool = artist_pool(rec)
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
        rows = [
            (user, pool[i % 8], kind, 2 if kind == "play" else 1, int(NOW) - i * 3600, 0.0)
            for i, kind in enumerate(["play", "love", "skip", "ban", "play", "play"] * 5)
        ]
        old.executemany(
            "INSERT INTO events (user_id, artist, kind, plays, timestamp, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        old.execute("INSERT INTO model_pointer VALUES ('default', 'models:/m@champion', 3, 0)")
    store = EventStore(f"sqlite:///{path}")
    assert store.max_id() == 30 and store.pointer() is not None  # read after the upgrade
    assert store.pointer().generation == 3  # type: ignore[union-attr]
    for watermark in (0, 12, 30):  # 12: inside the upgraded aggregates, which span ids 1..30
        original = rec.manifest
        rec.manifest = {**original, "events_watermark": watermark}
        try:
            old_way = build_profile(rec, store.user_events(user), user, 1.0, now=NOW)
            new_way = build_profile(rec, store.compacted_events(user, watermark), user, 1.0, NOW)
            assert_same_profile(old_way, new_way)
        finally:
            rec.manifest = original
    appended = store.append(validate_batch([{"user_id": user, "artist": "x", "event_id": "1"}]))
    assert appended.ids == [31]
    assert (
        store.append(validate_batch([{"user_id": user, "artist": "x", "event_id": "1"}])).ids == []
    )
    store.close()
    again = EventStore(f"sqlite:///{path}")  # a second open finds the current version
    assert again.count() == 31
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT value FROM store_meta WHERE key='schema_version'"
        ).fetchone() == (3,)
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
        assert "events_user_event_id" in indexes
    newer = tmp_path / "newer.db"
    shutil.copy(path, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE store_meta SET value = 99 WHERE key = 'schema_version'")
    from musicrec.errors import StoreError

    with pytest.raises(StoreError, match="schema version 99"):
        EventStore(f"sqlite:///{newer}").ensure_schema()


# ----------------------------------------------------------------------------- host writer


def test_the_host_writer_shares_commits_across_workers(tmp_path: Path) -> None:
    """Two worker stores append through one writer: every batch is stored whole, and batches
    of both workers share transactions (fewer commits than batches)."""
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    service = WriterService(EventStore(url))
    workers = [EventStore(url, writer=service.address) for _ in range(2)]
    acked: list[list[int]] = []
    lock = threading.Lock()

    def post(worker: EventStore, n: int) -> None:
        for j in range(15):
            batch = [
                {"user_id": f"w{n}", "artist": f"a{j}-{i}", "event_id": f"{j}-{i}"}
                for i in range(2)
            ]
            ids = worker.append(validate_batch(batch, now=NOW)).ids
            with lock:
                acked.append(ids)

    threads = [threading.Thread(target=post, args=(workers[n % 2], n)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    commits, batches = service.commits, service.batches
    for worker in workers:
        worker.close()
    service.stop()
    assert not Path(service.address).exists()
    assert len(acked) == 120 and all(ids == list(range(ids[0], ids[0] + 2)) for ids in acked)
    stored = EventStore(url).read()
    assert sorted(stored["id"]) == sorted(i for ids in acked for i in ids)
    assert batches == 120 and commits < batches, (commits, batches)


# ----------------------------------------------------------------------------- kept answers


def test_answers_are_kept_until_the_listener_has_new_events(
    model_dir: Path, tmp_path: Path, rec: Recommender
) -> None:
    """Two workers (apps) on one store: an event posted to either changes the next answer of
    both; between events, answers come from the cache."""

    def app() -> TestClient:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            model=str(model_dir),
            events_url=f"sqlite:///{tmp_path / 'events.db'}",
            watch_interval_s=0,
        )
        return TestClient(create_app(settings))

    user = rec.sample_users(4)[3]
    url = f"/users/{user}/recommendations"
    with app() as one, app() as two:
        plain = one.get(url).json()["recommendations"]
        assert "fold_in_cache_total{" not in one.get("/metrics").text  # no events: no cache
        top = [r["artist"] for r in plain[:2]]
        play = {"user_id": user, "artist": str(rec.catalogue.names[0]), "plays": 5}
        assert two.post("/events", json={"events": [play]}).status_code == 201
        first = one.get(url).json()["recommendations"]
        assert one.get(url).json()["recommendations"] == first
        metrics = one.get("/metrics").text
        assert 'fold_in_cache_total{result="miss"} 1.0' in metrics
        assert 'fold_in_cache_total{result="hit"} 1.0' in metrics
        ban = {"user_id": user, "artist": top[0], "kind": "ban"}
        assert two.post("/events", json={"events": [ban]}).status_code == 201
        after = [r["artist"] for r in one.get(url).json()["recommendations"]]
        assert top[0] not in after  # the other worker's event reached this worker's answer
        assert 'fold_in_cache_total{result="miss"} 2.0' in one.get("/metrics").text
        recent = one.get(url, params={"exclude_recent_days": 1}).json()["recommendations"]
        assert recent != first


def test_listener_cache_expires_evicts_and_follows_the_model() -> None:
    from musicrec.events.cache import ListenerCache, cache_for, recency_expiry

    cache = ListenerCache(size=2)
    cache.put("a", 1, expires=100.0)
    cache.put("b", 2)
    assert cache.get("a", now=99.0) == 1 and cache.get("a", now=100.0) is None  # expired
    cache.put("c", 3)
    cache.put("d", 4)  # "b" was least recently used
    assert cache.get("b", now=0.0) is None and len(cache) == 2
    stamps = np.array([10.0, 50.0, 90.0])
    assert recency_expiry(stamps, 60.0, now=100.0) == 110.0  # 50 leaves the window at 110
    assert recency_expiry(stamps, None, now=100.0) == float("inf")

    class Model:  # a served model: its cache goes with it
        pass

    first, second = Model(), Model()
    assert cache_for(first) is cache_for(first) and cache_for(first) is not cache_for(second)
    kept = cache_for(first)
    kept.put("x", 1)
    del first
    assert "x" not in cache_for(Model())._entries


def test_async_workers_share_the_host_writer(tmp_path: Path) -> None:
    """The request handlers' path: many awaits at once, answered by shared commits."""
    import asyncio

    from musicrec.errors import StoreError
    from musicrec.events.writer import AsyncRemoteWriter

    url = f"sqlite:///{tmp_path / 'ev.db'}"
    service = WriterService(EventStore(url))
    client = AsyncRemoteWriter(service.address)

    async def post_all() -> list[list[int]]:
        async def one(n: int) -> list[int]:
            raw = [{"user_id": f"a{n % 4}", "artist": f"x{n}", "event_id": f"id-{n}"}]
            (appended,) = await client.append_batches([validate_batch(raw, now=NOW)])
            return appended.ids

        first = await asyncio.gather(*(one(n) for n in range(60)))
        again = await asyncio.gather(*(one(n) for n in range(10)))  # retried: duplicates
        assert all(ids == [] for ids in again)
        client.close()
        return list(first)

    acked = asyncio.run(post_all())
    commits = service.commits
    service.stop()
    assert sorted(i for ids in acked for i in ids) == list(range(1, 61))
    assert commits < 70  # 70 batches, fewer transactions
    with pytest.raises(StoreError, match="no event writer"):  # gone: a clear error
        AsyncRemoteWriter(service.address)
