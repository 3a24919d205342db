"""Readouts, guardrails and replay on a real event store, through the CLI where there is one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from online_stores import BACKENDS, empty_store
from typer.testing import CliRunner

from musicrec.cli import app as cli_app
from musicrec.events.impressions import pack, write_impressions
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore
from musicrec.online.explore import sample_list
from musicrec.online.guardrails import ArmObservation, enforce_guardrails
from musicrec.online.replay import MIN_SUPPORT, model_ranker, replay

runner = CliRunner()
ARTISTS = [f"A{i}" for i in range(10)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    yield from empty_store(request.param, tmp_path)


def cli(*args: str, url: str) -> tuple[int, str]:
    result = runner.invoke(cli_app, [*args, "--events-url", url])
    return result.exit_code, result.output


def fill(store: EventStore, arm: str, listened: list[int], bans: int = 0) -> None:
    """One list of ten per listener; listener i plays the first listened[i] artists."""
    now = time.time() - 60
    rows, events = [], []
    for i, n in enumerate(listened):
        listener = f"{arm}-{i}"
        rows += [pack(f"{arm}r{i}", listener, ARTISTS, [1.0] * 10, "v", "exp", arm, at=now)]
        events += [{"user_id": listener, "artist": a, "timestamp": now + 1} for a in ARTISTS[:n]]
        if i < bans:
            events.append(
                {"user_id": listener, "artist": "A9", "kind": "ban", "timestamp": now + 2}
            )
    write_impressions(store, rows)
    store.append(validate_batch(events))


def test_report_json_text_and_plot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    arms = (Arm("control", "m", 50), Arm("treatment", "m", 50))
    ExperimentStore(store).create(ExperimentSpec("exp", arms, guardrails={"ban_rate": 0.5}))
    fill(store, "control", [1, 2, 3, 4] * 10, bans=2)
    fill(store, "treatment", [5, 6, 7, 8] * 10)
    code, out = cli("online", "report", "exp", "--json", "--resamples", "300", url=url)
    assert code == 0, out
    report = json.loads(out)
    control = report["arms"]["control"]
    assert (control["listeners"], control["impressions"], control["bans"]) == (40, 400, 2)
    assert control["listen_through"]["value"] == pytest.approx(0.25)
    assert control["ban_rate"]["value"] == pytest.approx(2 / 400)
    assert report["arms"]["treatment"]["listen_through"]["value"] == pytest.approx(0.65)
    (pair,) = report["differences"]
    assert pair["listen_through"]["difference"]["value"] == pytest.approx(0.40)
    assert pair["listen_through"]["p_value"] < 1e-10 and report["winner"] == "treatment"
    assert report["srm"]["p_value"] == pytest.approx(1.0)
    assert control["guardrail_breaches"] == [] and control["stop_reason"] is None
    code, again = cli("online", "report", "exp", "--json", "--resamples", "300", url=url)
    assert json.loads(again) == report  # seeded: the same intervals every time
    plot = tmp_path / "exp.png"
    code, out = cli("online", "report", "exp", "--plot", str(plot), url=url)
    assert code == 0, out
    assert "winner: treatment" in out and "sample ratio" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    code, out = cli("online", "report", "exp", "--plot", str(tmp_path / "no" / "x.png"), url=url)
    assert code == 1 and out.count("\n") == 1 and "does not exist" in out


def test_interleave_report_through_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    arms = (Arm("als", "m", 50), Arm("weak", "m", 50))
    ExperimentStore(store).create(ExperimentSpec("exp", arms, mode="interleave"))
    now = time.time() - 60
    rows, events = [], []
    for i in range(30):  # als wins 20 listeners, weak 5, 5 ties
        teams = ["als", "weak"] * 5
        rows += [pack(f"r{i}", f"u{i}", ARTISTS, [1.0] * 10, "v", "exp", teams, at=now)]
        played = "A0" if i < 20 else ("A1" if i < 25 else None)
        if played:
            events.append({"user_id": f"u{i}", "artist": played, "timestamp": now + 1})
    write_impressions(store, rows)
    store.append(validate_batch(events))
    code, out = cli("online", "report", "exp", "--json", url=url)
    found = json.loads(out)["interleave"]
    assert found["wins"] == {"als": 20, "weak": 5} and found["ties"] == 5
    assert found["p_value"] < 0.01 and found["winner"] == "als"
    code, out = cli("online", "report", "exp", "--plot", str(tmp_path / "tdi.png"), url=url)
    assert code == 0 and "winner: als" in out and (tmp_path / "tdi.png").exists()


def test_guardrails_stop_an_arm_once_and_the_report_says_why(store: EventStore) -> None:
    experiments = ExperimentStore(store)
    arms = (Arm("control", "m", 50), Arm("treatment", "m", 50))
    limits = {"p99_ms": 50.0, "ban_rate": 0.05}
    experiments.create(ExperimentSpec("exp", arms, guardrails=limits))
    fine = ArmObservation(requests=500, p99_ms=20.0, impressions=5000, bans=100)
    banned = ArmObservation(requests=500, p99_ms=20.0, impressions=5000, bans=400)
    assert enforce_guardrails(store, "exp", {"control": fine, "treatment": fine}) == []
    recorded: list = []
    threads = [
        threading.Thread(
            target=lambda: recorded.extend(
                enforce_guardrails(store, "exp", {"control": fine, "treatment": banned}, now=123.0)
            )
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(b.arm, b.guardrail) for b in recorded] == [("treatment", "ban_rate")]
    experiment = experiments.get("exp")
    treatment = experiment.arms[1]
    assert treatment.stopped_at == 123.0 and treatment.stop_reason.startswith(
        "guardrail ban_rate: 0.08 > 0.05 (95 % interval"
    )
    assert experiment.running and experiment.arms[0].stopped_at is None
    report_arm = cli_report(store, "exp")["arms"]["treatment"]
    assert report_arm["stopped_at"] == 123.0 and report_arm["stop_reason"] == treatment.stop_reason
    slow = ArmObservation(requests=500, p99_ms=80.0)
    (last,) = enforce_guardrails(store, "exp", {"control": slow, "treatment": banned}, now=124.0)
    assert last.arm == "control" and last.guardrail == "p99_ms"
    stopped = experiments.get("exp")
    assert not stopped.running and stopped.stop_reason == "every arm stopped by guardrails"
    assert enforce_guardrails(store, "exp", {"control": slow}) == []


def cli_report(store: EventStore, name: str) -> dict:
    from musicrec.online.report import experiment_report

    return experiment_report(store, ExperimentStore(store).get(name), n_resamples=50)


def explored(store: EventStore, model: Path) -> None:
    """40 listeners' exploring lists of 5 from ``model``'s top 20, their plays, and one
    impression without a propensity."""
    rank = model_ranker(str(model))
    from musicrec.serving.recommender import Recommender

    listeners = list(Recommender.load(model).user_ids[:40])
    rng = np.random.default_rng(3)
    now = time.time() - 60
    rows, events = [], []
    for i, listener in enumerate(listeners):
        candidates = list(rank(listener, 20) or [])
        shown = sample_list(np.linspace(2.0, 0.0, len(candidates)), 5, 1.0, rng)
        artists = [candidates[j] for j in shown.order]
        rows += [pack(
            f"r{i}", listener, artists, [1.0] * 5, "v", "exp", "a",
            propensities=list(shown.marginal), at=now,
        )]  # fmt: skip
        events += [
            {"user_id": listener, "artist": artist, "timestamp": now + 1}
            for position, artist in enumerate(artists)
            if rng.random() < 0.6 * 0.7**position
        ]
    rows += [pack("nolog", "ghost", ["X"], [1.0], "v", "exp", "b", at=now)]  # no propensity
    write_impressions(store, rows)
    store.append(validate_batch(events))


def test_replay_through_the_cli_equals_the_estimator(tmp_path: Path, synth_model: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    arms = (Arm("a", str(synth_model), 50), Arm("b", str(synth_model), 50))
    experiment = ExperimentStore(store).create(ExperimentSpec("exp", arms, temperature=1.0))
    explored(store, synth_model)
    code, out = cli("online", "replay", "exp", "--model", str(synth_model), "--json", url=url)
    assert code == 0, out
    result = json.loads(out)
    direct = replay(store, experiment, model_ranker(str(synth_model)))
    assert result["value"] == pytest.approx(direct.value) and result["impressions"] == 200
    assert result["listeners_unknown"] == 0 and 0 < result["matched"] < 200
    assert result["low"] <= result["value"] <= result["high"]
    assert result["support"] == 1.0  # the target is the logging arm's own model
    assert result["trusted"] is True and result["warning"] is None
    code, out = cli("online", "replay", "exp", "--model", "/nowhere", url=url)
    assert code == 1 and out.count("\n") == 1 and "does not load" in out
    code, out = cli("online", "replay", "exp", "--model", str(synth_model), "--min-support",
                    "1.5", url=url)  # fmt: skip
    assert code == 1 and out.count("\n") == 1 and "--min-support" in out
    ExperimentStore(store).stop("exp", "replayed")
    ExperimentStore(store).create(ExperimentSpec("plain", arms))
    code, out = cli("online", "replay", "plain", "--model", str(synth_model), url=url)
    assert code == 1 and "logged no propensities" in out


def test_replay_flags_a_model_outside_the_logging_support(
    tmp_path: Path, synth_dataset: Path, synth_model: Path
) -> None:
    """Popularity lists the same artists for everyone, mostly outside an ALS's top 50 for a
    listener: the estimate comes with trusted false, a warning in the JSON and on stderr."""
    from musicrec.config import TrainConfig
    from musicrec.pipeline.train import train

    popularity = tmp_path / "popularity"
    train(synth_dataset, popularity, TrainConfig.for_kind("popularity"))
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    arms = (Arm("a", str(synth_model), 50), Arm("b", str(synth_model), 50))
    ExperimentStore(store).create(ExperimentSpec("exp", arms, temperature=1.0))
    explored(store, synth_model)
    args = ("online", "replay", "exp", "--model", str(popularity))
    result = runner.invoke(cli_app, [*args, "--json", "--events-url", url])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["support"] < MIN_SUPPORT and found["min_support"] == MIN_SUPPORT
    assert found["trusted"] is False and f"only {found['support']:.0%}" in found["warning"]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("warning: only")
    code, out = cli(*args, url=url)  # text: the estimate's line, then the warning's
    assert code == 0 and out.count("\n") == 2 and "warning: only" in out.splitlines()[1]
    lenient = runner.invoke(cli_app, [*args, "--json", "--min-support", "0", "--events-url", url])
    found = json.loads(lenient.stdout)
    assert found["trusted"] is True and found["warning"] is None and lenient.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        ("online", "start", "new", "--arm", "a={model}", "--arm", "b={model}", "--share", "60,60"),
        ("online", "start", "new", "--arm", "a={model}", "--arm", "b={model}"),  # same listeners
        ("online", "start", "new", "--arm", "a={model}", "--arm", "b=/no/model",
         "--population", "60-100"),
        ("online", "start", "new", "--arm", "a={model}", "--arm", "b=models:/nope@champion",
         "--population", "60-100"),
        ("online", "report", "nope"),
        ("online", "stop", "nope"),
        ("online", "replay", "nope", "--model", "{model}"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_1_and_changes_nothing(
    tmp_path: Path, synth_model: Path, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    url = f"sqlite:///{tmp_path / 'events.db'}"
    model = str(synth_model)
    code, out = cli("online", "start", "exp", "--arm", f"a={model}", "--arm", f"b={model}",
                    "--population", "0-60", url=url)  # fmt: skip
    assert code == 0, out
    before = cli("online", "list", "--json", url=url)[1]
    code, out = cli(*(arg.format(model=model) for arg in args), url=url)
    # the registry's own first-use log lines aside, the message is one line
    lines = [line for line in out.splitlines() if " INFO mlflow" not in line]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:"), out
    assert cli("online", "list", "--json", url=url)[1] == before
