"""Fixtures for the web UI tests: an evaluated tiny model served by a real ``musicrec serve``.

Imported by ``test_ui.py`` and ``test_ui_browser.py``; the model comes from the shared
``synth_model`` fixture (copied, so evaluating it never changes what other tests see).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from musicrec.pipeline.evaluate import evaluate_model

SERVER_START_TIMEOUT_S = 90.0
SERVER_STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def musicrec_executable() -> str:
    """The ``musicrec`` console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "musicrec"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("musicrec")
    if not found:
        pytest.fail("the musicrec console script is not installed (pip install -e .)")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without ``MUSICREC_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.update(extra)
    return env


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the process exits, or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} not ready within {timeout:.0f}s:\n{log_tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)


@contextlib.contextmanager
def running(
    command: list[str], ready_url: str, log: Path, env: dict[str, str], timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (output to ``log``) until the block exits; ready once ``ready_url`` is."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_http(ready_url, process, log, timeout)
            yield process
        finally:
            stop(process)


@pytest.fixture(scope="session")
def ui_model(
    synth_model: Path, synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The shared tiny synthetic model, copied and evaluated (so the model card has metrics)."""
    out = tmp_path_factory.mktemp("ui-model") / "model"
    shutil.copytree(synth_model, out)
    evaluate_model(synth_dataset, out, ks=(10, 20), baselines=("popularity",))
    return out


@pytest.fixture(scope="session")
def api_url(ui_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real ``musicrec serve`` on a free loopback port, stopped at teardown."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("ui-api") / "serve.log"
    command = [
        musicrec_executable(),
        "serve",
        "--model",
        str(ui_model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--index",
        "exact",
        "--log-level",
        "warning",
    ]
    # No event store (the default is events.db in the working directory): this API is the
    # model alone, and a test that posts events sees them refused.
    env = clean_env(MUSICREC_EVENTS_URL="")
    with running(command, f"{url}/ready", log, env, SERVER_START_TIMEOUT_S):
        yield url


# ----------------------------------------------------------------------------- online


ADMIN_KEY = "ui-test-admin-key"
AB, INTERLEAVE = "ranker-ab", "ranker-il"
SEED_K = 10
SKIP_GUARDRAIL = 0.5  # the candidate arm's listeners skip most of what they are shown


@dataclass(frozen=True)
class OnlineApi:
    """A ``musicrec serve`` with an event store, an admin key and two running experiments."""

    url: str
    events_url: str
    admin_key: str


def _seed_outcomes(url: str, rng: random.Random) -> None:
    """Every sampled listener asks for a list and answers it: in ``ranker-ab`` the control
    arm's listeners play most of theirs, the candidate's play little and skip the rest
    (so its skip-rate guardrail stops it); in ``ranker-il`` most listeners play what arm
    ``a`` contributed."""
    users = httpx.get(f"{url}/users", params={"limit": 160}, timeout=10).json()["users"]
    for user in users:
        body = httpx.get(
            f"{url}/users/{user}/recommendations", params={"k": SEED_K}, timeout=10
        ).json()
        rid, shown = body["request_id"], [r["artist"] for r in body["recommendations"]]
        if body["experiment"] == AB:
            played = rng.randint(5, 8) if body["arm"] == "control" else rng.randint(0, 2)
            kinds = ["play"] * played + ["skip"] * (len(shown) - played)
            rng.shuffle(kinds)
        elif body["experiment"] == INTERLEAVE:
            liked = "a" if rng.random() < 0.8 else "b"
            kinds = ["play" if team == liked else "skip" for team in body["teams"]]
        else:
            continue
        events = [
            {"user_id": user, "artist": artist, "kind": kind, "request_id": rid, "position": i}
            for i, (artist, kind) in enumerate(zip(shown, kinds, strict=True))
        ]
        answer = httpx.post(f"{url}/events", json={"events": events}, timeout=10)
        assert answer.status_code == 201, answer.text


def _start_experiments(url: str, model: Path) -> None:
    headers = {"X-API-Key": ADMIN_KEY}
    for name, mode, arms, population, guardrails in (
        (AB, "ab", ("control", "candidate"), [0, 50], {"skip_rate": SKIP_GUARDRAIL}),
        (INTERLEAVE, "interleave", ("a", "b"), [50, 100], {}),
    ):
        body = {
            "name": name,
            "mode": mode,
            "arms": [{"name": arm, "model": str(model), "share": 50} for arm in arms],
            "population": population,
            "guardrails": guardrails,
        }
        answer = httpx.post(f"{url}/admin/experiments", json=body, headers=headers, timeout=60)
        assert answer.status_code == 201, answer.text


def _wait_for_guardrail(url: str, timeout: float = 30.0) -> None:
    """Until the API's watcher has stopped the candidate arm on its skip rate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = httpx.get(
            f"{url}/admin/experiments", headers={"X-API-Key": ADMIN_KEY}, timeout=10
        ).json()["experiments"]
        (ab,) = [e for e in listed if e["name"] == AB]
        arms = {arm["name"]: arm for arm in ab["arms"]}
        if arms["candidate"]["stopped_at"] is not None:
            assert ab["status"] == "running" and arms["control"]["stopped_at"] is None, ab
            return
        time.sleep(0.5)
    pytest.fail("the candidate arm's skip-rate guardrail did not stop it")


@pytest.fixture(scope="session")
def online_api(ui_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnlineApi]:
    """A real ``musicrec serve`` with a SQLite event store and an admin key, running an A/B
    experiment (one arm stopped by its guardrail) and an interleaved one, with outcomes."""
    work = tmp_path_factory.mktemp("ui-online")
    events_url = f"sqlite:///{work / 'events.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [musicrec_executable(), "serve", "--model", str(ui_model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--index", "exact", "--log-level", "warning"]
    env = clean_env(
        MUSICREC_EVENTS_URL=events_url,
        MUSICREC_ADMIN_API_KEY=ADMIN_KEY,
        MUSICREC_WATCH_INTERVAL_S="1",
        # The UI asks for the same lists again and again: no exposure cool-down here.
        MUSICREC_COOLDOWN_SHOWS="0",
    )
    with running(command, f"{url}/ready", work / "serve.log", env, SERVER_START_TIMEOUT_S):
        _start_experiments(url, ui_model)
        _seed_outcomes(url, random.Random(7))
        _wait_for_guardrail(url)
        yield OnlineApi(url, events_url, ADMIN_KEY)
