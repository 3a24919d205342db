"""The rule chain on every route that lists artists: dials, exact k, bans that expire."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.rules import Dials, ListenerState
from musicrec.serving.profile import build_profile
from musicrec.serving.recommender import Recommender

NOW = 1_900_000_000.0
DAY = 86_400


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dials-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> Recommender:
    return Recommender.load(model_dir)


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    events = tmp_path_factory.mktemp("dials-events") / "events.db"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, model=str(model_dir), events_url=f"sqlite:///{events}", watch_interval_s=0
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def names(body: dict) -> list[str]:
    return [r["artist"] for r in body["recommendations"]]


def common_tag(rec: Recommender) -> str:
    """The top tag most artists carry (so include/cap filters leave plenty)."""
    top = rec.rules.meta.top_tag
    codes, counts = np.unique(top[top >= 0], return_counts=True)
    return rec.rules.meta.tag_names[int(codes[np.argmax(counts)])]


def route_calls(rec: Recommender, user: str) -> dict[str, tuple[str, str, dict]]:
    mood = next(m for m, r in rec.moods.items() if r.available)
    artist = str(rec.catalogue.names[rec.catalogue.by_popularity[0]])
    seeds = [str(rec.catalogue.names[i]) for i in rec.catalogue.by_popularity[1:4]]
    return {
        "user GET": ("get", f"/users/{user}/recommendations", {}),
        "user POST": ("post", "/recommend", {"user_id": user}),
        "mood POST": ("post", "/recommend", {"type": "mood", "mood": mood}),
        "similar GET": ("get", f"/artists/{artist}/similar", {}),
        "similar POST": ("post", "/similar", {"artist_name": artist}),
        "listener POST": ("post", "/listeners/recommendations", {"artists": seeds}),
    }


def call(client: TestClient, how: tuple[str, str, dict], k: int, **dials: object) -> dict:
    method, url, base = how
    if method == "get":
        params = {**base, "k": k, **{f: _query(v) for f, v in dials.items()}}
        answer = client.get(url, params=params)
    else:
        answer = client.post(url, json={**base, "k": k, **dials})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _query(value: object) -> object:
    return ",".join(value) if isinstance(value, list) else value


def test_every_route_honours_exclusions_tags_and_the_cap_with_exactly_k(
    client: TestClient, rec: Recommender
) -> None:
    user, tag, k = rec.sample_users(5)[3], common_tag(rec), 20
    for route, how in route_calls(rec, user).items():
        neutral = names(call(client, how, k))
        hidden = neutral[:5]
        listed = names(call(client, how, k, exclude_artists=hidden))
        assert len(listed) == len(set(listed)) == k, route
        assert not set(hidden) & set(listed), route
        assert listed[:5] == neutral[5:10], route  # the rest of the ranking moves up
        included = names(call(client, how, k, include_tags=[tag]))
        assert len(included) == k, route
        for name in included:
            assert tag in rec.catalogue.tags_of(rec.catalogue.require(name), 3), (route, name)
        capped = names(call(client, how, k, max_per_tag=2))
        top = rec.rules.meta.top_tag[[rec.catalogue.require(n) for n in capped]]
        assert len(capped) == k and np.bincount(top[top >= 0]).max() <= 2, route


def test_neutral_dials_give_the_models_own_list(rec: Recommender) -> None:
    for user in rec.sample_users(4):
        plain = rec.recommend_user(user, 30)
        chained = rec.recommend_user(user, 30, listener=ListenerState())
        assert [r.item for r in chained] == [r.item for r in plain]
        assert np.allclose([r.score for r in chained], [r.score for r in plain])


def test_diversity_and_discovery_move_the_list_the_way_they_say(rec: Recommender) -> None:
    distance = {0.0: [], 1.0: []}
    listeners = {0.0: [], 1.0: []}
    for user in rec.sample_users(12):
        for value in (0.0, 1.0):
            ids = np.array(
                [r.item for r in rec.recommend_user(user, 10, dials=Dials(diversity=value))]
            )
            sim = rec.rules.similarity(ids)
            distance[value].append(1 - sim[~np.eye(len(ids), dtype=bool)].mean())
            found = rec.recommend_user(user, 10, dials=Dials(discovery=value))
            listeners[value].append(np.median(rec.catalogue.listeners[[r.item for r in found]]))
    assert np.mean(distance[1.0]) > np.mean(distance[0.0])
    assert np.mean(listeners[1.0]) < np.mean(listeners[0.0])


def test_a_listener_left_with_few_artists_gets_every_one_of_them(rec: Recommender) -> None:
    user = rec.sample_users(3)[1]
    meta = rec.rules.meta
    tag = int(meta.top_tag[meta.top_tag >= 0][0])
    carrying = np.flatnonzero(meta.carries_any(np.arange(meta.n_items), np.array([tag])))
    played = set(rec.history(rec.user_index(user))[0].tolist())
    eligible = [int(i) for i in carrying if int(i) not in played]
    recs = rec.recommend_user(user, 100, dials=Dials(include_tags=(tag,)))
    assert sorted(r.item for r in recs) == sorted(eligible[:100])


def test_unknown_tag_and_out_of_range_dials_are_422(client: TestClient, rec: Recommender) -> None:
    user = rec.sample_users(2)[0]
    tag = common_tag(rec)
    answer = client.get(f"/users/{user}/recommendations", params={"include_tags": tag[:-1] + "x"})
    assert answer.status_code == 422
    body = answer.json()
    assert tag in body["suggestions"] and body["errors"][0]["loc"] == ["query", "include_tags"]
    answer = client.post("/recommend", json={"user_id": user, "diversity": 1.5})
    assert answer.status_code == 422 and "diversity" in str(answer.json()["detail"])


def test_a_ban_holds_until_its_until_and_lifts_after(rec: Recommender) -> None:
    user = rec.sample_users(4)[2]
    top = [r.artist for r in rec.recommend_user(user, 3)]
    events = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "artist": top,
            "kind": ["ban", "ban", "ban"],
            "plays": [1, 1, 1],
            "timestamp": [int(NOW) - DAY] * 3,
            "until": [NOW + DAY, None, NOW - 1],  # a day, forever, already past
        }
    )
    for at, hidden in ((NOW, top[:2]), (NOW + DAY + 1, top[1:2])):
        profile = build_profile(rec, events, user, now=at)
        recs = rec.recommend_user_live(user, 10, listener=profile.listener, now=at)
        listed = [r.artist for r in recs]
        assert len(listed) == 10 and not set(hidden) & set(listed), at
        assert set(top) - set(hidden) <= set(listed), at  # the lifted bans list again


def test_cached_answers_expire_when_a_ban_lifts(rec: Recommender) -> None:
    from musicrec.serving.live import ban_expiry

    events = pd.DataFrame(
        {
            "id": [1, 2],
            "artist": [str(rec.catalogue.names[0]), str(rec.catalogue.names[1])],
            "kind": ["ban", "ban"],
            "plays": [1, 1],
            "timestamp": [int(NOW)] * 2,
            "until": [NOW + 50, NOW + 10],
        }
    )
    profile = build_profile(rec, events, rec.sample_users(1)[0], now=NOW)
    assert ban_expiry(profile, NOW) == NOW + 10
    assert ban_expiry(profile, NOW + 20) == NOW + 50
    assert ban_expiry(profile, time.time() + 1e10) == np.inf


def test_a_stored_ban_with_until_holds_over_http_until_then(
    client: TestClient, rec: Recommender
) -> None:
    user = rec.sample_users(6)[4]
    url = f"/users/{user}/recommendations"
    top = names(client.get(url, params={"k": 5}).json())
    soon = int(time.time()) + 3600  # epoch seconds are whole numbers in the schema
    events = [
        {"user_id": user, "artist": top[0], "kind": "ban", "until": soon},
        {"user_id": user, "artist": top[1], "kind": "ban"},
        {"user_id": user, "artist": top[2], "kind": "ban", "until": "2001-01-01T00:00:00Z"},
    ]
    answer = client.post("/events", json={"events": events})
    assert answer.status_code == 201
    assert "1 ban(s)" in answer.json()["ban_notice"] and "events 2" in answer.json()["ban_notice"]
    for listed in (
        names(client.get(url, params={"k": 10}).json()),
        names(client.post("/recommend", json={"user_id": user, "k": 10}).json()),
        names(client.get(url, params={"k": 10, "diversity": 0.5}).json()),
    ):
        assert len(listed) == 10 and not {top[0], top[1]} & set(listed)
        assert top[2] in listed  # a ban already past has no effect
    store = client.app.state.event_store  # type: ignore[attr-defined]
    compact = store.compacted_events(user, 0)
    bans = compact.loc[compact["kind"] == "ban"].set_index("artist")["until"]
    assert bans[top[0]] == int(soon) and np.isnan(bans[top[1]]) and bans[top[2]] < time.time()
    later = build_profile(rec, compact, user, now=soon + 1)  # the clock past the until
    assert set(later.banned.tolist()) == {rec.catalogue.require(top[1])}
    plain = client.post("/events", json={"events": [{"user_id": user, "artist": top[3]}]})
    assert plain.status_code == 201 and plain.json()["ban_notice"] is None


def test_until_is_refused_on_other_kinds(client: TestClient) -> None:
    event = {"user_id": "u", "artist": "x", "kind": "play", "until": 2_000_000_000}
    answer = client.post("/events", json={"events": [event]})
    assert answer.status_code == 422 and answer.json()["field"] == "until"


def test_a_store_of_version_2_keeps_its_bans_permanent(tmp_path: Path) -> None:
    import sqlite3

    from musicrec.events.schema import validate_batch
    from musicrec.events.store import EventStore

    path = tmp_path / "v2.db"
    store = EventStore(f"sqlite:///{path}")
    ban = {"user_id": "u", "artist": "Slayer", "kind": "ban"}
    store.append(validate_batch([ban, {"user_id": "u", "artist": "Abba"}]))
    store.close()
    with sqlite3.connect(path) as conn:  # what version 2 had: no until anywhere
        conn.execute("ALTER TABLE listener_artists DROP COLUMN ban_until")
        conn.execute("ALTER TABLE events DROP COLUMN until")
        conn.execute("UPDATE store_meta SET value = 2 WHERE key = 'schema_version'")
    upgraded = EventStore(f"sqlite:///{path}")
    compact = upgraded.compacted_events("u", 0)
    bans = compact.loc[compact["kind"] == "ban"]
    assert bans["artist"].tolist() == ["Slayer"] and bans["until"].isna().all()
    later = {"user_id": "u", "artist": "Slayer", "kind": "ban", "until": 2_000_000_000}
    upgraded.append(validate_batch([later], now=NOW, accept_until=True))
    assert upgraded.compacted_events("u", 0).query("kind == 'ban'")["until"].isna().all()
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT value FROM store_meta WHERE key='schema_version'")
        assert version.fetchone() == (3,)


def test_metrics_count_what_each_rule_removed(client: TestClient, rec: Recommender) -> None:
    def removed(rule: str) -> float:
        text = client.get("/metrics").text
        line = next(
            (x for x in text.splitlines() if x.startswith(f'rule_removed_total{{rule="{rule}"')),
            None,
        )
        return float(line.split()[-1]) if line else 0.0

    user = rec.sample_users(7)[5]
    url = f"/users/{user}/recommendations"
    hidden = names(client.get(url, params={"k": 5}).json())[:3]
    before = removed("excluded_artist")
    client.get(url, params={"k": 5, "exclude_artists": ",".join(hidden)})
    assert removed("excluded_artist") == before + 3
