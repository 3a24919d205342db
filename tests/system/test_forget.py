"""Forgetting a listener reaches every worker and replica, and every later retraining."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from access_helpers import served

from musicrec.access.keys import create_key
from musicrec.config import TrainConfig
from musicrec.events.forget import audit, forget_listener
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.models.artifact import ModelArtifact
from musicrec.tracking.retrain import RetrainConfig, retrain
from musicrec.ui.client import ApiClient, ApiUnavailable

DEADLINE_S = 60.0  # what the API promises
WATCH_S = 1.0  # the watch interval these servers run with


def test_a_forgotten_listener_is_gone_on_every_worker_and_replica(
    synth_model: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    _, key = create_key(keys, "ops", "read,events,admin")
    env = {
        "MUSICREC_EVENTS_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "MUSICREC_API_KEYS_FILE": str(keys),
        "MUSICREC_WATCH_INTERVAL_S": str(WATCH_S),
        "TEST_API_KEY": key,
    }
    headers = {"X-API-Key": key}
    with (
        served(synth_model, tmp_path / "a.log", env=env, workers=2) as a,
        served(synth_model, tmp_path / "b.log", env=env) as b,
    ):
        user = httpx.get(f"{a}/users", params={"limit": 5}, headers=headers).json()["users"][2]
        play = {"events": [{"user_id": user, "artist": "Metallica"}]}
        assert httpx.post(f"{a}/events", json=play, headers=headers).status_code == 201
        for base in (a, a, b):
            url = f"{base}/users/{user}/recommendations"
            assert httpx.get(url, headers=headers).status_code == 200

        forgot = httpx.delete(f"{a}/users/{user}", headers=headers)
        assert forgot.status_code == 200 and forgot.json()["rows"] == {"events": 1}
        started = time.monotonic()
        while httpx.get(f"{b}/users/{user}/recommendations", headers=headers).status_code != 404:
            assert time.monotonic() - started < DEADLINE_S, "replica b still serves the listener"
            time.sleep(0.1)
        latency = time.monotonic() - started
        print(f"replica b stopped serving the forgotten listener after {latency:.2f} s")
        time.sleep(2 * WATCH_S)  # every worker has checked at least once since
        for base in [a] * 20 + [b] * 3:  # new connections: both workers of a answer some
            answer = httpx.get(f"{base}/users/{user}/recommendations", headers=headers)
            assert answer.status_code == 404 and "is not known" in answer.json()["detail"]
            assert httpx.post(f"{base}/events", json=play, headers=headers).status_code == 409
            sample = httpx.get(f"{base}/users", params={"limit": 5}, headers=headers).json()
            assert user not in sample["users"]
        assert httpx.get(f"{b}/users/{user}/events", headers=headers).json()["events"] == []
        ui_client_uses_its_key(b, key)
    assert latency < DEADLINE_S
    store = EventStore(env["MUSICREC_EVENTS_URL"])
    (record,) = audit(store)
    assert record["actor"] == "ops" and record["rows"] == {"events": 1}
    assert user not in str(record)


def ui_client_uses_its_key(base: str, key: str) -> None:
    """The web UI's client sends MUSICREC_API_KEY; without one it says what is missing."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MUSICREC_API_URL", base)
        env.setenv("MUSICREC_API_KEY", key)
        with ApiClient.from_env() as client:
            assert len(client.charts(3).recommendations) == 3
        env.delenv("MUSICREC_API_KEY")
        with ApiClient.from_env() as client, pytest.raises(ApiUnavailable, match="API_KEY"):
            client.charts(3)


@pytest.mark.slow
def test_retraining_leaves_out_a_forgotten_listener_of_the_base_data(
    synth_raw: Path, synth_model: Path, tmp_path: Path
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    config = RetrainConfig(
        source="lastfm360k",
        input=synth_raw,
        workdir=tmp_path / "work",
        events_url=store.url,
        train=TrainConfig(factors=16, iterations=4),
        model_name="forget-test",
        experiment="forget-test",
        margin=-1.0,
    )
    user = str(ModelArtifact.load(synth_model).users["user_id"].iloc[3])  # in the base file
    store.append(validate_batch([{"user_id": user, "artist": "Metallica"}]))
    before = retrain(config)
    assert before.model_dir is not None
    assert user in set(ModelArtifact.load(before.model_dir).users["user_id"])

    forget_listener(store, user, actor="cli")
    after = retrain(config)  # same base file, same watermark: the tombstone makes a new cycle
    assert after.status != "up_to_date" and after.key != before.key
    assert after.model_dir is not None
    trained = ModelArtifact.load(after.model_dir)
    assert user not in set(trained.users["user_id"])
    assert trained.manifest["events_included"] == 0  # her event is gone from the store
