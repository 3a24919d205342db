"""Exposure cool-down in serving: an artist shown too often without a play rests a while."""

from __future__ import annotations

import shutil
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.events.impressions import pack, read_impressions, write_impressions
from musicrec.events.schema import Event
from musicrec.events.store import EventStore
from musicrec.rules import CoolDown
from musicrec.serving import live
from musicrec.serving.exposure import resting
from musicrec.serving.recommender import Recommender

DAY = 86_400
K = 10


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cooldown-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> Recommender:
    return Recommender.load(model_dir)


@pytest.fixture
def app_client(model_dir: Path, tmp_path: Path) -> Iterator[tuple[TestClient, EventStore]]:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        model=str(model_dir),
        events_url=url,
        watch_interval_s=0,
        impressions_flush_s=0.05,
    )
    with TestClient(create_app(settings)) as client:
        yield client, EventStore(url)


def listed(client: TestClient, user: str) -> list[str]:
    answer = client.get(f"/users/{user}/recommendations", params={"k": K})
    assert answer.status_code == 200, answer.text
    return [r["artist"] for r in answer.json()["recommendations"]]


def logged(store: EventStore, user: str, rows: int) -> None:
    deadline = time.monotonic() + 20
    while (read_impressions(store)["listener"] == user).sum() < rows:
        assert time.monotonic() < deadline, "impressions not committed"
        time.sleep(0.02)


def test_shown_three_times_unplayed_rests_then_returns(
    app_client: tuple[TestClient, EventStore], rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = app_client
    user = rec.sample_users(6)[4]
    # an event of an artist far down the ranking: the listener's answers are kept (cache path)
    tail = str(rec.catalogue.names[rec.catalogue.by_popularity[-1]])
    assert (
        client.post("/events", json={"events": [{"user_id": user, "artist": tail}]}).status_code
        == 201
    )
    first = listed(client, user)
    assert len(first) == K
    for shown in (2, 3):
        logged(store, user, (shown - 1) * K)
        assert listed(client, user) == first  # fewer than 3 shows: nothing rests
    logged(store, user, 3 * K)
    rested = listed(client, user)
    assert len(rested) == K and not set(first) & set(rested)  # all ten were shown 3 times
    logged(store, user, 4 * K)
    later = time.time() + 7 * DAY + 60  # the rest (7 days after the latest show) is over
    monkeypatch.setattr(
        live, "time", types.SimpleNamespace(time=lambda: later, perf_counter=time.perf_counter)
    )
    assert listed(client, user) == first


def test_shows_zero_turns_it_off(model_dir: Path, tmp_path: Path, rec: Recommender) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    user = rec.sample_users(6)[4]
    first = [r.artist for r in rec.recommend_user(user, K)]
    rows = []
    for n in range(3):
        rows += [pack(f"r{n}", user, first, [1.0] * K, "v", at=time.time() - 60)]
    write_impressions(EventStore(url), rows)
    for shows, rests in ((0, False), (3, True)):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            model=str(model_dir),
            events_url=url,
            watch_interval_s=0,
            cooldown_shows=shows,
        )
        with TestClient(create_app(settings)) as client:
            got = listed(client, user)
        assert (not set(first) & set(got)) is rests and (got == first) is not rests


def test_a_play_resets_the_count(rec: Recommender, tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    user, now = rec.sample_users(6)[4], time.time()
    artist = str(rec.catalogue.names[rec.catalogue.by_popularity[5]])
    item = rec.catalogue.resolve(artist)
    policy = CoolDown(shows=3, days=7)

    def show(times: int, at: float) -> None:
        rows = [pack(f"r{at}{n}", user, [artist], [1.0], "v", at=at) for n in range(times)]
        write_impressions(store, rows)

    show(3, now - 3 * DAY)
    assert resting(store, rec, user, policy, now).held == (item,)
    store.append([Event(user, artist, "play", timestamp=int(now - 2 * DAY))])
    assert resting(store, rec, user, policy, now).held == ()  # played since: the count starts over
    show(2, now - DAY)
    assert resting(store, rec, user, policy, now).held == ()  # two shows since the play
    show(1, now - 1)
    assert resting(store, rec, user, policy, now).held == (item,)  # a third one: rests again
    assert resting(store, rec, user, None, now).held == ()  # cool-down off
