"""Experiments in the event store, the online CLI, readout counts and the listener simulator."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from online_stores import BACKENDS, empty_store
from typer.testing import CliRunner

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.cli import app as cli_app
from musicrec.data.dataset import Dataset
from musicrec.errors import DataError, ExperimentError, TrafficError, UnknownExperimentError
from musicrec.events.impressions import pack, read_impressions, write_impressions
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.online.arms import parse_arms, start_experiment
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore
from musicrec.online.readout import arm_counts, interleave_preferences, report_counts
from musicrec.online.simulate import ListenerModel, held_out, react, simulate, simulate_url

runner = CliRunner()
ARM_TOTALS = ("listeners", "impressions", "listened", "plays", "skips", "loves", "bans")
THREE_ARMS = (Arm("a", "m", 30), Arm("b", "m", 30), Arm("c", "m", 40))


def spec(
    name: str, model: str = "m", population: tuple[float, float] = (0, 100), **kw
) -> ExperimentSpec:
    arms = (Arm("control", model, 50), Arm("treatment", model, 50))
    return ExperimentSpec(name=name, arms=kw.pop("arms", arms), population=population, **kw)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    yield from empty_store(request.param, tmp_path)


def test_create_list_stop_and_one_experiment_per_population(store: EventStore) -> None:
    experiments = ExperimentStore(store)
    first = experiments.create(spec("first", population=(0, 50), guardrails={"p99_ms": 50}))
    assert first.running and first.salt == "first" and first.guardrails == {"p99_ms": 50}
    with pytest.raises(ExperimentError, match="already runs on listeners 0-50"):
        experiments.create(spec("second", population=(40, 100)))
    experiments.create(spec("second", population=(50, 100)))  # disjoint: fine
    with pytest.raises(ExperimentError, match="exists"):
        experiments.create(spec("first", population=(0, 10)))
    assert [e.name for e in experiments.experiments(running_only=True)] == ["first", "second"]
    listener = next(f"u{i}" for i in range(1000) if first.covers(f"u{i}"))
    assert experiments.running_for(listener).name == "first"
    assert first.arm_for(listener) in ("control", "treatment")
    stopped = experiments.stop("first", "enough data")
    assert (stopped.status, stopped.stop_reason) == ("stopped", "enough data")
    with pytest.raises(ExperimentError, match="already stopped"):
        experiments.stop("first", "again")
    experiments.create(spec("third", population=(0, 50)))  # the population is free again
    with pytest.raises(UnknownExperimentError, match="no experiment named 'nope'"):
        experiments.get("nope")
    arm_stopped = experiments.stop_arm("third", "treatment", "guardrail ban_rate > 0.05")
    assert arm_stopped.arms[1].stop_reason == "guardrail ban_rate > 0.05"
    assert arm_stopped.arms[0].stopped_at is None


def test_concurrent_starts_on_the_same_listeners_let_exactly_one_through(
    store: EventStore,
) -> None:
    experiments = ExperimentStore(store)
    experiments.experiments()  # tables exist before the race
    outcomes: list[str] = []

    def start(i: int) -> None:
        try:
            ExperimentStore(store).create(spec(f"race{i}"))
            outcomes.append("started")
        except ExperimentError:
            outcomes.append("refused")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["started"]
    assert len(experiments.experiments(running_only=True)) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "bad name!"}, "experiment name"),
        ({"mode": "bandit"}, "mode"),
        ({"arms": (Arm("a", "m", 50), Arm("a", "m", 50))}, "differ"),
        ({"arms": (Arm("a", "m", 60), Arm("b", "m", 60))}, "sum to 100"),
        ({"arms": (Arm("a", "m", 100),)}, "two arms"),
        ({"mode": "interleave", "arms": THREE_ARMS}, "exactly two"),
        ({"guardrails": {"latency": 5}}, "unknown guardrail"),
        ({"guardrails": {"ban_rate": 2}}, "ban_rate"),
        ({"temperature": 0}, "temperature"),
        ({"mode": "interleave", "temperature": 1.0}, "ab mode only"),
    ],
)  # fmt: skip
def test_invalid_specs_are_refused_and_store_nothing(
    store: EventStore, changes: dict, message: str
) -> None:
    experiments = ExperimentStore(store)
    values = {"name": "x"} | changes
    with pytest.raises(ExperimentError, match=message):
        experiments.create(spec(**values))
    assert experiments.experiments() == []


def test_arm_parsing() -> None:
    arms = parse_arms(["a=./m1", "b=models:/musicrec@champion", "c=x=y"], None)
    assert [(a.name, a.model, a.share) for a in arms] == [
        ("a", "./m1", 33.33), ("b", "models:/musicrec@champion", 33.33), ("c", "x=y", 33.34)
    ]  # fmt: skip
    with pytest.raises(ExperimentError, match="NAME=MODEL"):
        parse_arms(["nomodel"], None)
    with pytest.raises(ExperimentError, match="2 arms but 3 shares"):
        parse_arms(["a=1", "b=2"], "30,30,40")


def test_start_loads_every_arm_before_writing(store: EventStore, synth_model: Path) -> None:
    broken = ExperimentSpec("e", (Arm("good", str(synth_model), 50), Arm("bad", "/nowhere", 50)))
    with pytest.raises(ExperimentError, match="arm 'bad': model /nowhere does not load"):
        start_experiment(store, broken)
    assert ExperimentStore(store).experiments() == []
    with pytest.raises(ExperimentError, match="arm 'reg'"):
        start_experiment(
            store,
            ExperimentSpec(
                "e", (Arm("good", str(synth_model), 50), Arm("reg", "models:/no-such@champion", 50))
            ),
        )
    started = start_experiment(store, spec("e", str(synth_model)))
    assert started.arms[0].version and started.arms[0].version != "unknown"


# ----------------------------------------------------------------------------- CLI


def cli(*args: str, url: str) -> tuple[int, str]:
    result = runner.invoke(cli_app, [*args, "--events-url", url])
    return result.exit_code, result.output


def test_cli_start_list_report_stop(tmp_path: Path, synth_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    model = str(synth_model)
    code, out = cli("online", "start", "exp", "--arm", f"a={model}", "--arm", f"b={model}",
                    "--share", "30,70", "--guardrail", "ban_rate=0.1", url=url)  # fmt: skip
    assert code == 0, out
    assert "started exp (ab)" in out
    code, out = cli("online", "start", "dup", "--arm", f"a={model}", "--arm", f"b={model}", url=url)
    assert code == 1 and out.count("\n") == 1 and "already runs" in out
    code, out = cli("online", "start", "x", "--arm", f"a={model}", "--arm", "b=/nope",
                    "--population", "0-100", url=url)  # fmt: skip
    assert code == 1 and "does not load" in out and out.count("\n") == 1
    code, out = cli("online", "start", "y", "--arm", f"a={model}", "--arm", f"b={model}",
                    "--share", "50,20", url=url)  # fmt: skip
    assert code == 1 and "sum to 100" in out
    code, out = cli("online", "list", "--json", url=url)
    listed = json.loads(out)
    assert [e["name"] for e in listed] == ["exp"]
    assert [a["share"] for a in listed[0]["arms"]] == [30.0, 70.0]
    store = EventStore(url)
    write_impressions(store, [pack("r1", "u1", ["X", "Y"], [2.0, 1.0], "v", "exp", "a")])
    store.append(validate_batch([{"user_id": "u1", "artist": "Y"}]))
    code, out = cli("online", "report", "exp", "--json", url=url)
    assert code == 0, out
    arm_a = json.loads(out)["arms"]["a"]
    assert {key: arm_a[key] for key in ARM_TOTALS} == {
        "listeners": 1, "impressions": 2, "listened": 1, "plays": 1, "skips": 0, "loves": 0,
        "bans": 0,
    }  # fmt: skip
    code, out = cli("online", "report", "exp", url=url)
    assert code == 0 and "per arm (95 % intervals" in out and "winner: none" in out
    code, out = cli("online", "stop", "exp", "--reason", "done", url=url)
    assert code == 0 and "stopped exp: done" in out
    for args in (("online", "stop", "nope"), ("online", "report", "nope")):
        code, out = cli(*args, url=url)
        assert code == 1 and "no experiment named 'nope'" in out and out.count("\n") == 1


# ----------------------------------------------------------------------------- readout


def test_readout_counts_per_arm_and_listener(store: EventStore) -> None:
    experiment = ExperimentStore(store).create(spec("exp"))
    now = time.time() - 60
    rows = []
    for i, (listener, arm) in enumerate(
        [("u1", "control"), ("u2", "control"), ("u3", "treatment")]
    ):
        rows += [pack(f"r{i}", listener, ["A", "B", "C"], [3, 2, 1], "v", "exp", arm, at=now)]
    write_impressions(store, rows)
    store.append(
        validate_batch(
            [
                {"user_id": "u1", "artist": "A", "timestamp": now + 1},
                {"user_id": "u1", "artist": "A", "kind": "love", "timestamp": now + 2},
                {"user_id": "u1", "artist": "C", "kind": "skip", "timestamp": now + 2},
                {"user_id": "u3", "artist": "B", "kind": "ban", "timestamp": now + 3},
                {"user_id": "u3", "artist": "C", "timestamp": now + 3},
            ]
        )
    )
    counts = arm_counts(store, experiment)
    control, treatment = counts["control"], counts["treatment"]
    assert control.listeners.tolist() == ["u1", "u2"]
    assert control.impressions.tolist() == [3, 3] and control.listened.tolist() == [1, 0]
    assert control.plays.tolist() == [1, 0] and control.loves.tolist() == [1, 0]
    assert control.skips.tolist() == [1, 0]
    assert treatment.bans.tolist() == [1] and treatment.plays.tolist() == [1]
    top_two = arm_counts(store, experiment, k=2)["treatment"]
    assert top_two.impressions.tolist() == [2] and top_two.plays.tolist() == [0]  # C was 3rd
    assert report_counts(store, experiment)["arms"]["control"]["listened"] == 1


def test_interleave_readout_credits_teams(store: EventStore) -> None:
    experiment = ExperimentStore(store).create(spec("tdi", mode="interleave"))
    now = time.time() - 60
    rows = [pack("r1", "u1", ["A", "B"], [1, 1], "v", "tdi", ["control", "treatment"], at=now)]
    rows += [pack("r2", "u2", ["C", "D"], [1, 1], "v", "tdi", ["treatment", "control"], at=now)]
    rows += [pack("r3", "u3", ["E", "F"], [1, 1], "v", "tdi", ["control", "treatment"], at=now)]
    write_impressions(store, rows)
    store.append(validate_batch([
        {"user_id": "u1", "artist": "A", "timestamp": now + 1},
        {"user_id": "u2", "artist": "C", "timestamp": now + 1},
        {"user_id": "u2", "artist": "C", "kind": "love", "timestamp": now + 1},
    ]))  # fmt: skip
    prefs = interleave_preferences(store, experiment)
    assert (prefs.wins, prefs.losses, prefs.ties) == (1, 1, 1)
    assert report_counts(store, experiment)["interleave"]["treatment_credit"] == 2


# ----------------------------------------------------------------------------- simulator


def test_reactions_follow_position_and_held_out_set() -> None:
    rng = np.random.default_rng(0)
    model = ListenerModel(examine_top=1.0, examine_decay=0.5, play_relevant=1.0, play_other=0.0)
    artists = ["Hit", "Miss", "Other"]
    looked = np.zeros(3)
    for _ in range(4000):
        for position, kind in react(artists, {"hit"}, model, rng):
            looked[position] += 1
            assert kind == ("play" if position == 0 else "skip")
    assert looked[0] == 4000 and abs(looked[1] / 4000 - 0.5) < 0.03
    assert abs(looked[2] / 4000 - 0.25) < 0.03


def test_simulator_in_process(synth_model: Path, synth_dataset: Path, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, model=str(synth_model), events_url=f"sqlite:///{tmp_path / 'ev.db'}"
    )  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        summary = simulate(
            client, Dataset.load(synth_dataset), 25, seed=3, k=10, lists_per_listener=2
        )
    assert (summary.listeners, summary.requests, summary.errors) == (25, 50, 0)
    tally = summary.arms["-"]
    assert tally.lists == 50 and tally.shown == 500
    assert summary.events_posted == tally.plays + tally.skips > 0
    stored = EventStore(settings.events_url).stats()  # type: ignore[arg-type]
    assert stored["by_kind"].get("play", 0) == tally.plays
    assert stored["by_kind"].get("skip", 0) == tally.skips
    truth = held_out(Dataset.load(synth_dataset))
    assert len(truth) >= 25


def test_held_events_leave_every_list_of_a_listener_on_the_same_state(
    synth_model: Path, synth_dataset: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ev.db'}"
    settings = Settings(_env_file=None, model=str(synth_model), events_url=url, cooldown_shows=0)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        summary = simulate(
            client, Dataset.load(synth_dataset), 12, seed=4, lists_per_listener=3, hold_events=True
        )
    assert (summary.requests, summary.errors) == (36, 0)
    tally = summary.arms["-"]
    assert summary.events_posted == tally.plays + tally.skips > 0
    shown = read_impressions(EventStore(url))
    lists = shown.groupby(["listener", "request_id"])["artist"].apply(tuple)
    per_listener = lists.groupby(level="listener").nunique()
    assert len(per_listener) == 12 and (per_listener == 1).all()  # nothing folded in between


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def loopback_api(synth_model: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    model = tmp_path / "model"
    shutil.copytree(synth_model, model)
    events = f"sqlite:///{tmp_path / 'events.db'}"
    settings = Settings(_env_file=None, model=str(model), events_url=events)  # type: ignore[call-arg]
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail("test server did not start")
        time.sleep(0.1)
    yield url, events
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_simulate_cli_against_a_loopback_api(
    loopback_api: tuple[str, str], synth_dataset: Path
) -> None:
    url, events = loopback_api
    result = runner.invoke(
        cli_app,
        [
            "simulate",
            "--url",
            url,
            "--data",
            str(synth_dataset),
            "--listeners",
            "20",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["listeners"] == 20 and summary["errors"] == 0
    assert summary["events_posted"] == EventStore(events).count() > 0


def test_simulator_refuses_other_hosts_and_too_many_listeners(synth_dataset: Path) -> None:
    with pytest.raises(TrafficError, match="not a loopback address"):
        simulate_url("http://example.com:8000", str(synth_dataset), 5)
    result = runner.invoke(
        cli_app,
        ["simulate", "--url", "http://10.1.2.3", "--data", str(synth_dataset), "--listeners", "5"],
    )
    assert result.exit_code == 1 and "loopback" in result.output
    with (
        httpx.Client(base_url="http://127.0.0.1:9") as client,
        pytest.raises(DataError, match="test listeners"),
    ):
        simulate(client, Dataset.load(synth_dataset), 10**7)
