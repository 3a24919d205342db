"""Experiments in serving: request ids, impressions, arms, interleaving, pick-up and guardrails."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from musicrec.api import experiments_runtime
from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.config import TrainConfig
from musicrec.events.impressions import read_impressions
from musicrec.events.store import EventStore
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore
from musicrec.online.explore import exploration_depth
from musicrec.pipeline.train import train
from musicrec.serving.recommender import Recommender

K = 5


@pytest.fixture(scope="module")
def champion(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("online-champion") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def worse(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("online-worse") / "model"
    train(synth_dataset, out, TrainConfig(factors=4, iterations=1, seed=5))
    return out


@pytest.fixture
def events_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


def app_for(model: Path, events_url: str, **changes: object):  # type: ignore[no-untyped-def]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        model=str(model),
        events_url=events_url,
        watch_interval_s=0,  # checks are called by the test
        impressions_flush_s=0.05,
        **changes,  # type: ignore[arg-type]
    )
    return create_app(settings)


def users_of(client: TestClient, n: int = 40) -> list[str]:
    return [str(u) for u in client.get("/users", params={"limit": n}).json()["users"]]


def start(events_url: str, name: str, mode: str, *arms: Arm, **kw: object) -> None:
    spec = ExperimentSpec(name, tuple(arms), mode=mode, **kw)  # type: ignore[arg-type]
    ExperimentStore(EventStore(events_url)).create(spec)


def test_every_list_is_identified_and_logged(champion: Path, events_url: str) -> None:
    app = app_for(champion, events_url)
    with TestClient(app) as client:
        user = users_of(client, 1)[0]
        calls = {
            "user": client.get(f"/users/{user}/recommendations", params={"k": K}),
            "recommend": client.post("/recommend", json={"type": "random", "k": K}),
            "similar": client.post("/similar", json={"artist_name": "slayer", "k": K}),
            "charts": client.get("/charts", params={"k": K}),
            "listener": client.post("/listeners/recommendations", json={"artists": ["Metallica"]}),
        }
        kept = client.get(
            f"/users/{user}/recommendations", params={"k": K}, headers={"X-Request-ID": "mine-1"}
        )
        replaced = client.get(
            f"/users/{user}/recommendations", params={"k": K}, headers={"X-Request-ID": "bad id!"}
        )
    ids = {}
    for name, response in calls.items():
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert body["request_id"] == response.headers["X-Request-ID"], name
        assert body["model_version"] and body["experiment"] is None and body["arm"] is None
        ids[name] = (body["request_id"], [r["artist"] for r in body["recommendations"]])
    assert len({rid for rid, _ in ids.values()}) == len(ids)
    assert kept.json()["request_id"] == "mine-1" == kept.headers["X-Request-ID"]
    assert replaced.json()["request_id"] not in ("bad id!", "mine-1")
    # the clean stop committed every impression
    shown = read_impressions(EventStore(events_url))
    for name, (rid, artists) in ids.items():
        rows = shown[shown["request_id"] == rid].sort_values("position")
        assert rows["artist"].tolist() == artists, name
        assert rows["position"].tolist() == list(range(len(artists)))
        assert rows["experiment"].isna().all()
    user_rows = shown[shown["request_id"] == ids["user"][0]]
    assert set(user_rows["listener"]) == {user}
    assert (shown["request_id"] == "mine-1").sum() == K


def test_ab_arms_serve_their_listeners_and_stop(
    champion: Path, worse: Path, events_url: str
) -> None:
    app = app_for(champion, events_url)
    arm_models = {"control": Recommender.load(champion), "worse": Recommender.load(worse)}
    start(events_url, "ab1", "ab", Arm("control", str(champion), 50), Arm("worse", str(worse), 50))
    with TestClient(app) as client:
        seen: dict[str, int] = {}
        for user in users_of(client):
            body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
            assert body["experiment"] == "ab1" and body["teams"] is None
            arm = body["arm"]
            seen[arm] = seen.get(arm, 0) + 1
            expected = [r.artist for r in arm_models[arm].recommend_user(user, K)]
            assert [r["artist"] for r in body["recommendations"]] == expected, arm
            assert body["model_version"] == arm_models[arm].version
        assert set(seen) == {"control", "worse"}
        ExperimentStore(EventStore(events_url)).stop("ab1", "done")
        experiments_runtime.check(app)  # what the watcher does at its next interval
        user = users_of(client, 1)[0]
        after = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        assert after["experiment"] is None and after["arm"] is None
    shown = read_impressions(EventStore(events_url), experiment="ab1")
    assert set(shown["arm"]) == {"control", "worse"}
    assert len(shown) == K * sum(seen.values())
    assert shown["propensity"].isna().all()  # no temperature: deterministic, no propensity


def test_exploring_arms_sample_from_their_top_candidates_and_log_propensities(
    champion: Path, worse: Path, events_url: str
) -> None:
    app = app_for(champion, events_url)
    models = {"control": Recommender.load(champion), "worse": Recommender.load(worse)}
    arms = Arm("control", str(champion), 50), Arm("worse", str(worse), 50)
    start(events_url, "ex", "ab", *arms, temperature=1.0)
    depth = exploration_depth(K)
    with TestClient(app) as client:
        bodies = [
            client.get(f"/users/{user}/recommendations", params={"k": K}).json()
            for user in users_of(client)
        ]
        rid = bodies[0]["request_id"]
        again = client.get(
            f"/users/{bodies[0]['user_id']}/recommendations",
            params={"k": K},
            headers={"X-Request-ID": rid},
        ).json()
    moved = 0
    for body in bodies:
        artists = [r["artist"] for r in body["recommendations"]]
        assert body["experiment"] == "ex" and len(artists) == len(set(artists)) == K
        model = models[body["arm"]]
        top = [r.artist for r in model.recommend_user(body["user_id"], depth)]
        assert set(artists) <= set(top)
        moved += artists != top[:K]
    assert moved > len(bodies) / 2  # the lists explore
    assert again["recommendations"] == bodies[0]["recommendations"]  # seeded by the request id
    shown = read_impressions(EventStore(events_url), experiment="ex")
    assert len(shown) == K * (len(bodies) + 1)
    assert ((shown["propensity"] > 0) & (shown["propensity"] <= 1)).all()
    logged = shown[shown["request_id"] == rid]  # asked twice: the same rows twice
    assert logged["position"].tolist() == list(range(K)) * 2
    assert logged["artist"].tolist() == [r["artist"] for r in bodies[0]["recommendations"]] * 2
    assert logged["propensity"].tolist()[:K] == logged["propensity"].tolist()[K:]


def test_interleave_merges_two_arms_and_credits_each_position(
    champion: Path, worse: Path, events_url: str
) -> None:
    app = app_for(champion, events_url)
    models = {"a": Recommender.load(champion), "b": Recommender.load(worse)}
    start(events_url, "il", "interleave", Arm("a", str(champion), 50), Arm("b", str(worse), 50))
    with TestClient(app) as client:
        bodies = [
            client.get(f"/users/{user}/recommendations", params={"k": K}).json()
            for user in users_of(client, 20)
        ]
    for body in bodies:
        artists = [r["artist"] for r in body["recommendations"]]
        teams = body["teams"]
        assert body["experiment"] == "il" and body["arm"] is None
        assert len(artists) == len(set(artists)) == K == len(teams)
        assert abs(teams.count("a") - teams.count("b")) <= 1
        own = {
            arm: [r.artist for r in m.recommend_user(body["user_id"], K)]
            for arm, m in models.items()
        }
        for artist, team in zip(artists, teams, strict=True):
            assert artist in own[team]
    shown = read_impressions(EventStore(events_url), experiment="il")
    first = shown[shown["request_id"] == bodies[0]["request_id"]].sort_values("position")
    assert first["arm"].tolist() == bodies[0]["teams"]


def test_an_arm_that_does_not_load_leaves_its_listeners_on_the_champion(
    champion: Path, events_url: str, tmp_path: Path
) -> None:
    app = app_for(champion, events_url)
    missing = str(tmp_path / "no-such-model")
    start(events_url, "broken", "ab", Arm("ok", str(champion), 50), Arm("gone", missing, 50))
    with TestClient(app) as client:
        arms = {
            client.get(f"/users/{user}/recommendations", params={"k": K}).json()["arm"]
            for user in users_of(client)
        }
    assert arms == {"ok", None}


def test_guardrail_breach_stops_the_arm_by_itself(
    champion: Path, worse: Path, events_url: str
) -> None:
    app = app_for(champion, events_url)
    start(
        events_url, "guarded", "ab", Arm("a", str(champion), 50), Arm("b", str(worse), 50),
        guardrails={"p99_ms": 0.001},
    )  # fmt: skip
    with TestClient(app) as client:
        users = users_of(client, 200)
        for _ in range(3):
            for user in users:
                client.get(f"/users/{user}/recommendations", params={"k": K})
        experiments_runtime.check(app)
        experiment = ExperimentStore(EventStore(events_url)).get("guarded")
        assert all(arm.stop_reason and "p99_ms" in arm.stop_reason for arm in experiment.arms)
        assert not experiment.running
        body = client.get(f"/users/{users[0]}/recommendations", params={"k": K}).json()
        assert body["experiment"] is None
        metrics = client.get("/metrics").text
    assert 'experiment_arm_stopped{arm="a",experiment="guarded"} 1.0' in metrics


def test_events_carry_request_id_and_position_to_their_impression(
    champion: Path, worse: Path, events_url: str
) -> None:
    from musicrec.events.outcomes import experiment_outcomes

    app = app_for(champion, events_url)
    start(events_url, "ev", "ab", Arm("a", str(champion), 50), Arm("b", str(worse), 50))
    with TestClient(app) as client:
        user = users_of(client, 1)[0]
        body = client.get(f"/users/{user}/recommendations", params={"k": K}).json()
        rid, artists = body["request_id"], [r["artist"] for r in body["recommendations"]]
        events = [
            {
                "user_id": user,
                "artist": artists[2],
                "kind": "play",
                "request_id": rid,
                "position": 2,
            },
            {"user_id": user, "artist": artists[0], "kind": "skip", "request_id": rid},
            {"user_id": user, "artist": artists[1], "kind": "ban"},  # by the time window
        ]
        assert client.post("/events", json={"events": events}).status_code == 201
        bad = [
            ({"position": 1}, "position"),  # a position needs the request id
            ({"request_id": rid, "position": -1}, "position"),
            ({"request_id": rid, "position": "first"}, "position"),
            ({"request_id": "x" * 65}, "request_id"),
        ]
        for extra, field in bad:
            event = {"user_id": user, "artist": artists[3]} | extra
            refused = client.post("/events", json={"events": [events[0], event]})
            assert refused.status_code == 422, extra
            assert refused.json()["index"] == 1 and refused.json()["field"] == field
        metrics = client.get("/metrics").text
    assert f'experiment_outcomes_total{{arm="{body["arm"]}",experiment="ev",kind="play"}} 1.0' in (
        metrics
    )
    found = experiment_outcomes(EventStore(events_url), "ev").set_index("kind")
    assert found.loc["play", "shown_position"] == 2
    assert found.loc["play", "attributed_by"] == "request"
    assert found.loc["skip", "shown_position"] == 0
    assert found.loc["ban", "attributed_by"] == "window"
    assert set(found["arm"]) == {body["arm"]}
    assert len(EventStore(events_url).user_events(user, limit=50)) == 3  # refused ones: none


def test_admin_experiments_start_list_stop_report_with_reasons(
    champion: Path, worse: Path, events_url: str, tmp_path: Path
) -> None:
    app = app_for(champion, events_url, admin_api_key="k")
    key = {"X-API-Key": "k"}
    arms = [
        {"name": "a", "model": str(champion), "share": 50},
        {"name": "b", "model": str(worse), "share": 50},
    ]
    with TestClient(app) as client:
        assert client.get("/admin/experiments").status_code == 401
        assert client.get("/admin/experiments", headers={"X-API-Key": "no"}).status_code == 403
        started = client.post("/admin/experiments", headers=key, json={"name": "x", "arms": arms})
        assert started.status_code == 201, started.text
        assert [a["version"] for a in started.json()["arms"]] == [
            Recommender.load(champion).version,
            Recommender.load(worse).version,
        ]
        user = users_of(client, 1)[0]  # served at once by the worker that started it
        assert client.get(f"/users/{user}/recommendations").json()["experiment"] == "x"
        refusals = [
            ({"name": "y", "arms": arms}, 409, "already runs"),
            ({"name": "x", "arms": arms}, 409, "exists"),
            ({"name": "z", "arms": [arms[0], arms[1] | {"share": 40}]}, 409, "sum to 100"),
            (
                {"name": "z", "arms": [arms[0], arms[1] | {"model": str(tmp_path / "none")}]},
                404,
                "does not load",
            ),
        ]
        for body, status, reason in refusals:
            refused = client.post("/admin/experiments", headers=key, json=body)
            assert refused.status_code == status, (body, refused.text)
            assert reason in refused.json()["detail"]
        listed = client.get("/admin/experiments", headers=key).json()["experiments"]
        assert [e["name"] for e in listed] == ["x"]  # nothing half-started
        time.sleep(0.3)  # past the writer's 0.05 s flush interval
        report = client.get("/admin/experiments/x/report", headers=key, params={"resamples": 50})
        assert report.status_code == 200 and report.json()["arms"]["a"]["impressions"] > 0
        assert client.get("/admin/experiments/nope/report", headers=key).status_code == 404
        stop = client.post("/admin/experiments/x/stop", headers=key, json={"reason": "done"})
        assert stop.status_code == 200 and stop.json()["status"] == "stopped"
        again = client.post("/admin/experiments/x/stop", headers=key, json={"reason": "done"})
        assert again.status_code == 409
        assert client.get(f"/users/{user}/recommendations").json()["experiment"] is None


@pytest.mark.slow
def test_serve_with_two_workers_commits_impressions_in_the_host_writer(
    champion: Path, tmp_path: Path
) -> None:
    """``serve --workers 2``: the workers hand their rows to the host writer, which (with a
    60 s flush) commits nothing until the clean stop, and then every list, whole."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events_url = f"sqlite:///{tmp_path / 'events.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {"MUSICREC_EVENTS_URL": events_url, "MUSICREC_IMPRESSIONS_FLUSH_S": "60"}
    cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve", "--model"]
    cmd += [str(champion), "--port", str(port), "--workers", "2", "--log-level", "warning"]
    log = (tmp_path / "serve.log").open("w")
    launched = time.monotonic()
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base, shown = f"http://127.0.0.1:{port}", {}
    try:
        deadline = time.monotonic() + 180  # a busy machine starts slowly
        ready = 0
        while ready < 4:  # several answers, so both workers are most likely up
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                ready += httpx.get(f"{base}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        users = httpx.get(f"{base}/users", params={"limit": 40}, timeout=5).json()["users"]
        for user in users:  # a new connection each time: spread over the workers
            body = httpx.get(f"{base}/users/{user}/recommendations", params={"k": K}).json()
            shown[body["request_id"]] = [r["artist"] for r in body["recommendations"]]
        time.sleep(0.5)  # several hand-offs: the rows wait in the host writer
        if time.monotonic() - launched < 55:  # before its first flush
            assert read_impressions(EventStore(events_url)).empty
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    stored = read_impressions(EventStore(events_url))
    assert len(shown) == 40 and set(stored["request_id"]) == set(shown)
    for rid, artists in shown.items():
        assert stored[stored["request_id"] == rid].sort_values("position")["artist"].tolist() == (
            artists
        )
