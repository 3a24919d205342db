"""Listening events: validation, the durable store, and what they do to recommendations."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.errors import EventError
from musicrec.events.schema import interactions, validate_batch, validate_event
from musicrec.events.store import EventStore
from musicrec.serving.profile import build_profile
from musicrec.serving.recommender import Recommender

METAL = {"metal", "heavy metal", "thrash metal"}
NOW = 1_700_000_000.0


def metal_share(recs: list[dict]) -> int:
    return sum(bool(METAL & set(r["tags"])) for r in recs)


# ----------------------------------------------------------------------------- validation


def test_valid_events_and_defaults() -> None:
    event = validate_event(0, {"user_id": "u1", "artist": "  Björk  "}, now=NOW)
    assert (event.kind, event.plays, event.timestamp, event.artist) == ("play", 1, NOW, "Björk")
    iso = validate_event(0, {"user_id": 7, "artist": "x", "timestamp": "2023-11-14T22:13:20Z"})
    assert iso.user_id == "7" and iso.timestamp == 1_700_000_000
    assert validate_event(0, {"user_id": "u", "artist": "a", "plays": 3.0}).plays == 3
    ahead = {"user_id": "u", "artist": "a", "timestamp": NOW + 3 * 86400}
    assert validate_event(0, ahead, now=NOW).timestamp == NOW  # a clock far ahead: now


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"artist": "a"}, "user_id"),
        ({"user_id": " ", "artist": "a"}, "user_id"),
        ({"user_id": "u", "artist": "a", "kind": "like"}, "kind"),
        ({"user_id": "u", "artist": "a", "plays": 0}, "plays"),
        ({"user_id": "u", "artist": "a", "plays": 1.5}, "plays"),
        ({"user_id": "u", "artist": "a", "plays": True}, "plays"),
        ({"user_id": "u", "artist": "a", "kind": "ban", "plays": 4}, "plays"),
        ({"user_id": "u", "artist": "a", "timestamp": 4_102_444_800}, "timestamp"),
        ({"user_id": "u", "artist": "a", "timestamp": 5}, "timestamp"),
        ({"user_id": "u", "artist": "a", "timestamp": "yesterday"}, "timestamp"),
        ({"user_id": "u", "artist": "a\x00b"}, "artist"),
        ({"user_id": "u", "artist": "a", "rating": 5}, "rating"),
    ],
)
def test_invalid_event_names_field_and_index(raw: dict, field: str) -> None:
    batch = [{"user_id": "ok", "artist": "fine"}, raw]
    with pytest.raises(EventError) as info:
        validate_batch(batch, now=NOW)
    assert info.value.index == 1 and info.value.field == field and info.value.reason


def test_interactions_weigh_kinds_and_drop_banned_pairs() -> None:
    events = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "u", "v"],
            "artist": ["A", "A", "B", "C", "C", "C"],
            "kind": ["play", "love", "skip", "play", "ban", "play"],
            "plays": [3, 1, 1, 9, 1, 2],
            "timestamp": [1, 2, 3, 4, 5, 6],
        }
    )
    reduced = interactions(events)
    plays = {(r.user_id, r.artist_key): r.plays for r in reduced.plays.itertuples()}
    assert plays == {("u", "A"): 8.0, ("v", "C"): 2.0}  # love = 5 plays; skip adds none
    assert reduced.bans[["user_id", "artist_key"]].values.tolist() == [["u", "C"]]


# ----------------------------------------------------------------------------- store


def test_store_appends_durably_with_increasing_ids(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    assert store.max_id() == 0 and store.user_events("u").empty  # nothing created by reads
    assert not (tmp_path / "ev.db").exists()
    batch = validate_batch([{"user_id": "u", "artist": f"a{i}"} for i in range(3)], now=NOW)
    ids = store.append(batch).ids
    assert ids == [1, 2, 3]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL

    def writer(n: int) -> None:
        for j in range(20):
            store.append(validate_batch([{"user_id": f"w{n}", "artist": f"b{j}"}], now=NOW))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = store.read()
    assert frame["id"].tolist() == list(range(1, 84))
    assert store.read(after=80)["id"].tolist() == [81, 82, 83]
    assert store.stats()["users"] == 5
    pointer = store.set_pointer("models:/m@champion", "x")
    assert store.set_pointer("models:/m@champion", "x").generation == pointer.generation + 1
    store.heartbeat("host:1", "v1", "/p")
    assert [w["version"] for w in store.workers(60)] == ["v1"]


def test_group_commit_shares_transactions_and_keeps_batches_whole(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}", group_commit=True)
    results: list[list[int]] = []

    def writer(n: int) -> None:
        for j in range(20):
            batch = [{"user_id": f"w{n}", "artist": f"a{j}-{i}"} for i in range(3)]
            results.append(store.append(validate_batch(batch, now=NOW)).ids)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert len(results) == 160
    assert all(ids == list(range(ids[0], ids[0] + 3)) for ids in results)  # each batch whole
    assert sorted(i for ids in results for i in ids) == list(range(1, 481))
    frame = EventStore(store.url).read()
    for ids in results:  # every acknowledged batch is stored, in order
        rows = frame.set_index("id").loc[ids]
        assert rows["user_id"].nunique() == 1


# ----------------------------------------------------------------------------- behaviour


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("events-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> Recommender:
    return Recommender.load(model_dir)


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


def metal_artists(rec: Recommender, n: int) -> list[str]:
    ranked = [i for i in rec.catalogue.by_popularity if METAL & set(rec.catalogue.tags_of(i))]
    return [str(rec.catalogue.names[i]) for i in ranked[:n]]


def least_metal_user(client: TestClient, rec: Recommender) -> str:
    shares = []
    for user in rec.sample_users(40):
        recs = client.get(f"/users/{user}/recommendations").json()["recommendations"]
        shares.append((metal_share(recs), user))
    return min(shares)[1]


def test_posting_metal_plays_turns_recommendations_metal(
    client: TestClient, rec: Recommender
) -> None:
    user = least_metal_user(client, rec)
    before = client.get(f"/users/{user}/recommendations").json()["recommendations"]
    assert metal_share(before) <= 2
    events = [{"user_id": user, "artist": a, "plays": 3} for a in metal_artists(rec, 10)]
    posted = client.post("/events", json={"events": events})
    assert posted.status_code == 201 and posted.json()["accepted"] == 10
    after = client.get(f"/users/{user}/recommendations").json()["recommendations"]
    assert len(after) == 10
    assert metal_share(after) >= 7
    played = {a.casefold() for a in metal_artists(rec, 10)}
    assert not played & {r["artist"].casefold() for r in after}  # new plays count as history


def test_new_listener_gets_personal_recommendations(client: TestClient, rec: Recommender) -> None:
    assert client.get("/users/brand-new/recommendations").status_code == 404
    events = [{"user_id": "brand-new", "artist": a} for a in metal_artists(rec, 5)]
    assert client.post("/events", json={"events": events}).status_code == 201
    answer = client.get("/users/brand-new/recommendations", params={"k": 10})
    assert answer.status_code == 200
    assert metal_share(answer.json()["recommendations"]) >= 8


def test_banned_artist_never_comes_back_and_k_holds(client: TestClient, rec: Recommender) -> None:
    user = rec.sample_users(3)[1]
    first = client.get(f"/users/{user}/recommendations", params={"k": 20}).json()
    banned = [r["artist"] for r in first["recommendations"][:3]]
    events = [{"user_id": user, "artist": a, "kind": "ban"} for a in banned]
    assert client.post("/events", json={"events": events}).status_code == 201
    for k in (5, 20, 100):
        recs = client.get(f"/users/{user}/recommendations", params={"k": k}).json()
        names = [r["artist"] for r in recs["recommendations"]]
        assert len(names) == k and not set(banned) & set(names)
    via_post = client.post("/recommend", json={"user_id": user, "k": 20}).json()
    assert not set(banned) & {r["artist"] for r in via_post["recommendations"]}


def test_exclude_recent_days_keeps_skipped_artists_out(
    client: TestClient, rec: Recommender
) -> None:
    user = rec.sample_users(5)[2]
    top = client.get(f"/users/{user}/recommendations").json()["recommendations"][0]["artist"]
    skip = {"user_id": user, "artist": top, "kind": "skip"}
    assert client.post("/events", json={"events": [skip]}).status_code == 201
    plain = client.get(f"/users/{user}/recommendations").json()["recommendations"]
    assert plain[0]["artist"] == top  # a skip adds no plays
    url = f"/users/{user}/recommendations"
    recent = client.get(url, params={"exclude_recent_days": 7}).json()["recommendations"]
    assert top not in {r["artist"] for r in recent} and len(recent) == 10


def test_invalid_batch_is_refused_whole(client: TestClient) -> None:
    events = [{"user_id": "u", "artist": "Metallica"}, {"user_id": "u", "artist": "x", "plays": -2}]
    answer = client.post("/events", json={"events": events})
    assert answer.status_code == 422
    body = answer.json()
    assert (body["index"], body["field"]) == (1, "plays") and "1" in body["reason"]
    assert client.get("/events/stats").json()["events"] == 0  # all-or-nothing
    assert client.post("/events", json={"events": []}).status_code == 422
    assert client.post("/events", json={"events": [{}] * 501}).status_code == 422
    metrics = client.get("/metrics").text
    assert 'events_rejected_total{reason="invalid"} 3.0' in metrics  # every refused batch


def test_events_metrics_and_user_events(client: TestClient) -> None:
    events = [
        {"user_id": "m", "artist": "Metallica", "plays": 2},
        {"user_id": "m", "artist": "Slayer", "kind": "love"},
    ]
    assert client.post("/events", json={"events": events}).status_code == 201
    listed = client.get("/users/m/events").json()["events"]
    assert [e["artist"] for e in listed] == ["Slayer", "Metallica"]  # newest first
    client.get("/users/m/recommendations")
    metrics = client.get("/metrics").text
    assert 'events_ingested_total{kind="play"} 1.0' in metrics
    assert "fold_in_seconds_count 1.0" in metrics
    assert re.search(r'served_model_info\{version="[^"]+"\} 1.0', metrics)
    assert "model_age_seconds" in metrics


def test_events_disabled_without_a_store(model_dir: Path) -> None:
    settings = Settings(_env_file=None, model=str(model_dir), events_url="", watch_interval_s=0)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as plain:
        answer = plain.post("/events", json={"events": [{"user_id": "u", "artist": "a"}]})
        assert answer.status_code == 404
        assert plain.get(
            f"/users/{plain.get('/users').json()['users'][0]}/recommendations"
        ).is_success


def test_events_inside_the_model_are_not_folded_in_twice(rec: Recommender) -> None:
    user = rec.sample_users(1)[0]
    row = rec.train[rec.user_index(user)]
    in_train = str(rec.catalogue.names[row.indices[0]])
    outside = next(
        str(rec.catalogue.names[i]) for i in rec.catalogue.by_popularity if i not in row.indices
    )
    events = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "user_id": [user] * 3,
            "artist": [in_train, outside, in_train],
            "kind": ["play"] * 3,
            "plays": [4, 5, 6],
            "timestamp": [int(NOW)] * 3,
        }
    )
    fresh = build_profile(rec, events, user, now=NOW)
    assert sorted(fresh.plays.tolist()) == [5.0, 10.0]
    original = rec.manifest
    try:
        rec.manifest = {**original, "events_watermark": 2}
        trained = build_profile(rec, events, user, now=NOW)
    finally:
        rec.manifest = original
    # id 1 is in the model (its artist is in the user's training row); id 2's pair was held out
    # or dropped by the model's dataset, so it still counts; id 3 came after the model.
    assert sorted(trained.plays.tolist()) == [5.0, 6.0]


def test_fold_in_of_new_plays_moves_the_list_and_skips_them(rec: Recommender) -> None:
    """Speed is measured by benchmarks/bench_events.py; here only what fold-in does."""
    user = rec.sample_users(1)[0]
    items = np.arange(10, dtype=np.int64)
    before = [r.item for r in rec.recommend_user(user, 10)]
    after = [r.item for r in rec.recommend_user_live(user, 10, extra_items=items, fresh_weight=0.5)]
    assert len(after) == 10 and after != before
    assert not set(after) & set(items.tolist())


# ----------------------------------------------------------------------------- import, replay


def test_import_validates_every_row_then_stores_all(tmp_path: Path) -> None:
    from musicrec.errors import DataError
    from musicrec.events.imports import import_events

    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    good = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "artist": ["Metallica", "Björk", "Slayer"],
            "plays": [3, None, None],
            "kind": ["play", "love", "ban"],
            "timestamp": ["2023-01-01T00:00:00Z", None, "1690000000"],
        }
    )
    good.to_csv(tmp_path / "good.tsv", sep="\t", index=False)
    good.to_parquet(tmp_path / "good.parquet")
    summary = import_events(store, tmp_path / "good.tsv")
    assert (summary.rows, summary.first_id, summary.last_id) == (3, 1, 3)
    assert import_events(store, tmp_path / "good.parquet").rows == 3
    bad = good.assign(plays=[3, None, 2])  # a ban carries no plays
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="row 3.*nothing imported"):
        import_events(store, tmp_path / "bad.csv")
    assert store.count() == 6
    with pytest.raises(DataError, match="unknown column"):
        good.assign(rating=1).to_csv(tmp_path / "extra.csv", index=False)
        import_events(store, tmp_path / "extra.csv")


def test_import_keeps_when_a_ban_lifts(tmp_path: Path) -> None:
    from musicrec.errors import DataError
    from musicrec.events.imports import import_events

    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "artist": ["Metallica", "Slayer", "Björk"],
            "kind": ["ban", "ban", "play"],
            "until": ["2999-01-01T00:00:00Z", None, None],
        }
    )
    frame.to_csv(tmp_path / "bans.csv", index=False)
    assert import_events(store, tmp_path / "bans.csv").rows == 3
    stored = store.read()
    assert stored["until"].tolist()[0] == 32472144000  # 2999-01-01 in epoch seconds
    assert stored["until"].isna().tolist()[1:] == [True, True]
    frame.assign(kind="play").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="row 1.*only ban events carry until"):
        import_events(store, tmp_path / "bad.csv")
    assert store.count() == 3


def test_replay_sends_lastfm1k_plays_in_time_order_and_stops(tmp_path: Path) -> None:
    from musicrec.events.replay import read_lastfm1k, replay, store_sink

    lines = [
        f"user_{i % 3:06d}\t2009-05-0{1 + i % 5}T1{i % 10}:00:00Z\tmbid\tArtist {i % 7}\tt\tTrack"
        for i in range(40)
    ]
    (tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv").write_text(
        "\n".join(lines) + "\n"
    )
    frame = read_lastfm1k(tmp_path)
    assert frame["timestamp"].is_monotonic_increasing and len(frame) == 40
    store = EventStore(f"sqlite:///{tmp_path / 'ev.db'}")
    summary = replay(frame, store_sink(store), rate=1000, batch_size=7, max_events=30)
    assert summary.sent == 30 and summary.batches == 5 and not summary.errors
    stored = store.read()
    assert stored["timestamp"].is_monotonic_increasing and len(stored) == 30
    bounded = replay(frame, store_sink(store), rate=10, batch_size=1, duration=0.3)
    assert 1 <= bounded.sent <= 5  # the duration bound stops it


# ----------------------------------------------------------------------------- replicas


def live_settings(model: Path, events_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        model=str(model),
        events_url=events_url,
        watch_interval_s=0,  # checks are driven by the test
        admin_api_key="k",
    )


def test_workers_follow_a_replaced_artifact_and_an_admin_reload(
    synth_model: Path, synth_dataset: Path, tmp_path: Path
) -> None:
    from musicrec.api.watch import ModelWatcher
    from musicrec.config import TrainConfig
    from musicrec.fsutil import atomic_dir
    from musicrec.pipeline.train import train

    current = tmp_path / "current"
    shutil.copytree(synth_model, current)
    other = tmp_path / "other"
    train(synth_dataset, other, TrainConfig(factors=8, iterations=2, seed=5))
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with (
        TestClient(create_app(live_settings(current, url))) as one,
        TestClient(create_app(live_settings(current, url))) as two,
    ):
        apps = [one.app.state, two.app.state]  # type: ignore[attr-defined]
        watchers = [ModelWatcher(one.app, 1), ModelWatcher(two.app, 1)]  # type: ignore[arg-type]
        assert not any(w.check() for w in watchers)  # nothing moved yet
        with atomic_dir(current, marker="manifest.json") as tmp:  # a retrain publishes
            for path in other.iterdir():
                shutil.copyfile(path, tmp / path.name)
        assert all(w.check() for w in watchers)
        assert {s.recommender.n_factors for s in apps} == {8}
        card = one.get("/model").json()
        assert card["n_factors"] == 8 and card["worker"].endswith(f":{os.getpid()}")

        reload = one.post(
            "/admin/reload", json={"model": str(synth_model)}, headers={"X-API-Key": "k"}
        )
        assert reload.status_code == 200
        # The test's watchers stand in for the lifespan's: worker one applied the pointer itself.
        watchers[0].generation = apps[0].watcher.generation
        assert not watchers[0].check()
        assert watchers[1].check()  # the other worker applies the shared pointer
        assert apps[1].recommender.n_factors == 32
        workers = one.get("/model/workers").json()["workers"]
        assert len(workers) == 1  # both apps run in this process: one host:pid heartbeat


def test_demo_shows_the_listener_before_and_after(client: TestClient) -> None:
    from musicrec.events.demo import run_demo

    result = run_demo("http://testserver", k=10, client=client)
    assert len(result.before) == len(result.after) == 10
    banned = result.before[0]["artist"]
    assert banned not in {r["artist"] for r in result.after}
    assert metal_share(result.after) > metal_share(result.before)
