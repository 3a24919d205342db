"""Keys, quotas and forgetting on real servers: a two-worker server and a second replica.

Both serve one model from one event store and one keys file, with a 1 s watch interval, as
replicas of one deployment would; requests go over new connections, so both workers of the
first server answer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from access_helpers import served

from musicrec.access.keys import create_key, revoke_key
from musicrec.events.forget import audit
from musicrec.events.store import EventStore
from musicrec.ui.client import ApiClient, ApiUnavailable

DEADLINE_S = 60.0  # what the API promises for forgetting
WATCH_S = 1.0  # the watch interval these servers run with


@dataclass
class Replicas:
    a: str  # two workers
    b: str  # one worker
    keys: Path
    key: str  # read, events, admin
    events_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture(scope="module")
def replicas(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    keys = tmp / "keys.json"
    _, key = create_key(keys, "ops", "read,events,admin")
    env = {
        "MUSICREC_EVENTS_URL": f"sqlite:///{tmp / 'events.db'}",
        "MUSICREC_API_KEYS_FILE": str(keys),
        "MUSICREC_WATCH_INTERVAL_S": str(WATCH_S),
        "TEST_API_KEY": key,
    }
    with (
        served(synth_model, tmp / "a.log", env=env, workers=2) as a,
        served(synth_model, tmp / "b.log", env=env) as b,
    ):
        yield Replicas(a, b, keys, key, env["MUSICREC_EVENTS_URL"])


def test_a_revoked_key_stops_on_every_worker_within_the_interval(replicas: Replicas) -> None:
    _, temporary = create_key(replicas.keys, "temporary", "read")
    headers = {"X-API-Key": temporary}
    started = time.monotonic()
    for base in [replicas.a] * 6 + [replicas.b] * 2:  # new key: picked up at the next check
        while httpx.get(f"{base}/charts", headers=headers).status_code != 200:
            assert time.monotonic() - started < 10 * WATCH_S
            time.sleep(0.1)
    revoke_key(replicas.keys, "temporary")
    revoked_at = time.monotonic()
    time.sleep(WATCH_S + 1.0)  # one interval, and a margin for the check itself
    answers = [
        httpx.get(f"{base}/charts", headers=headers)
        for base in [replicas.a] * 20 + [replicas.b] * 4
    ]
    assert {a.status_code for a in answers} == {401}
    assert all("revoked" in a.json()["detail"] for a in answers)
    print(f"revocation checked {time.monotonic() - revoked_at:.1f} s after it")


def test_the_workers_of_a_host_share_one_quota(replicas: Replicas) -> None:
    """Burst 4 over two workers: 4 requests pass in all, not 4 per worker."""
    _, limited = create_key(replicas.keys, "limited", "read", rate=0.001, burst=4)
    headers = {"X-API-Key": limited}
    started = time.monotonic()
    while httpx.get(f"{replicas.a}/health").status_code == 200:  # wait until both workers
        workers = {
            httpx.get(f"{replicas.a}/model", headers=replicas.headers).json()["worker"]
            for _ in range(8)
        }
        if len(workers) == 2 and time.monotonic() - started > 2 * WATCH_S:
            break
        time.sleep(0.1)
    codes = [httpx.get(f"{replicas.a}/charts", headers=headers).status_code for _ in range(16)]
    assert codes.count(200) == 4 and codes.count(429) == 12, codes


def test_a_forgotten_listener_is_gone_on_every_worker_and_replica(replicas: Replicas) -> None:
    a, b, headers = replicas.a, replicas.b, replicas.headers
    user = httpx.get(f"{a}/users", params={"limit": 5}, headers=headers).json()["users"][2]
    play = {"events": [{"user_id": user, "artist": "Metallica"}]}
    assert httpx.post(f"{a}/events", json=play, headers=headers).status_code == 201
    for base in (a, a, b):
        url = f"{base}/users/{user}/recommendations"
        assert httpx.get(url, headers=headers).status_code == 200

    forgot = httpx.delete(f"{a}/users/{user}", headers=headers)
    rows = forgot.json()["rows"]
    # The lists served above were logged as impressions (one row per list, written off the
    # request path, so the ones flushed by now): forgotten with the rest.
    lists = rows.pop("impression_lists", 0)
    assert forgot.status_code == 200 and rows == {"events": 1, "listener_artists": 1}
    assert 0 <= lists <= 3
    started = time.monotonic()
    while httpx.get(f"{b}/users/{user}/recommendations", headers=headers).status_code != 404:
        assert time.monotonic() - started < DEADLINE_S, "replica b still serves the listener"
        time.sleep(0.1)
    latency = time.monotonic() - started
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"replica b stopped serving the forgotten listener after {latency:.2f} s (load {load})")
    time.sleep(2 * WATCH_S)  # every worker has checked at least once since
    for base in [a] * 20 + [b] * 3:  # new connections: both workers of a answer some
        answer = httpx.get(f"{base}/users/{user}/recommendations", headers=headers)
        assert answer.status_code == 404 and "is not known" in answer.json()["detail"]
        assert httpx.post(f"{base}/events", json=play, headers=headers).status_code == 409
        sample = httpx.get(f"{base}/users", params={"limit": 5}, headers=headers).json()
        assert user not in sample["users"]
    assert httpx.get(f"{b}/users/{user}/events", headers=headers).json()["events"] == []
    assert latency < DEADLINE_S
    (record,) = audit(EventStore(replicas.events_url))
    assert record["actor"] == "ops" and record["rows"] == forgot.json()["rows"]
    assert user not in str(record)


def test_the_ui_client_sends_its_key(replicas: Replicas) -> None:
    """The web UI's client sends MUSICREC_API_KEY; without one it says what is missing."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MUSICREC_API_URL", replicas.b)
        env.setenv("MUSICREC_API_KEY", replicas.key)
        with ApiClient.from_env() as client:
            assert len(client.charts(3).recommendations) == 3
        env.delenv("MUSICREC_API_KEY")
        with ApiClient.from_env() as client, pytest.raises(ApiUnavailable, match="API_KEY"):
            client.charts(3)
