"""Tracking, registry and experiments against a throw-away SQLite MLflow store per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from musicrec.cli import app
from musicrec.config import TrainConfig
from musicrec.errors import TrackingError
from musicrec.loop.gating import promote
from musicrec.models.artifact import ModelArtifact
from musicrec.models.factors import loss_sweeps
from musicrec.models.kinds import config_name
from musicrec.pipeline.evaluate import evaluate_model
from musicrec.pipeline.grid import load_grid, run_grid
from musicrec.pipeline.segments import Segments
from musicrec.pipeline.sequence import train_and_evaluate
from musicrec.pipeline.train import TrainResult, train
from musicrec.pipeline.userscores import UserScores
from musicrec.tracking import (
    LOSS_METRIC,
    MlflowObserver,
    artifact_location,
    default_model_name,
    display_uri,
    get_client,
    metric_key,
    register_and_promote,
    report_metrics,
    start_run,
    tracking_uri,
    ui_command,
)
from musicrec.tracking.registry import (
    VersionInfo,
    gate,
    register_version,
    resolve_model,
    rollback,
    run_version,
)
from musicrec.tracking.report import experiment_report, pareto_front

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = TrainConfig(factors=8, iterations=4)


def tracked_train(
    data: Path, out: Path, config: TrainConfig, model_name: str | None = "musicrec"
) -> tuple[TrainResult, MlflowObserver]:
    """The train stage observed by MLflow, registering the model (as ``musicrec train``)."""
    observer = MlflowObserver(run_name=config_name(config), model_name=model_name)
    return train(data, out, config, observer=observer), observer


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow SQLite database, copied per test (creating one takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    get_client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private tracking store in ``tmp_path`` (also the working directory) and model cache."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MUSICREC_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return uri


def test_metric_names_are_mlflow_safe() -> None:
    report = {
        "ndcg@10": 0.3,
        "users_evaluated": 12,
        "popularity": {"ndcg@10": 0.1},
        "intervals": {"ndcg@10": {"low": 0.28, "high": 0.32}},
        "segments": {
            "thresholds": {"cold": "<= 5 training artists"},
            "cold": {
                "users": 3,
                "ndcg@10": 0.2,
                "intervals": {"ndcg@10": {"low": 0.1, "high": 0.3}},
            },
        },
    }
    flat = report_metrics(report)
    assert metric_key("share_of_recommendations@10") == "share_of_recommendations_at_10"
    assert flat == {
        "ndcg_at_10": 0.3,
        "users_evaluated": 12.0,
        "popularity.ndcg_at_10": 0.1,
        "ndcg_at_10.low": 0.28,
        "ndcg_at_10.high": 0.32,
        "segment.cold.users": 3.0,
        "segment.cold.ndcg_at_10": 0.2,
        "segment.cold.ndcg_at_10.low": 0.1,
        "segment.cold.ndcg_at_10.high": 0.3,
    }


def test_default_store_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking_uri()
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_location(uri) == (tmp_path / "mlartifacts").as_uri()
    command = ui_command(uri, port=5001)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert command[command.index("--backend-store-uri") + 1] == uri
    assert command[command.index("--port") + 1] == "5001"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri() == "http://mlflow:5000"
    assert artifact_location(tracking_uri()) is None  # the server decides
    assert (
        display_uri("postgresql://user:secret@db:5432/mlflow") == "postgresql://***@db:5432/mlflow"
    )


def test_gate_rules() -> None:
    champion = VersionInfo("1", "r1", 0.20, "fp-a")
    assert gate(VersionInfo("2", "r2", 0.25, "fp-a"), None)[0]
    assert gate(VersionInfo("2", "r2", 0.25, "fp-a"), champion)[0]
    assert not gate(VersionInfo("2", "r2", 0.20, "fp-a"), champion)[0]  # a tie does not beat
    assert not gate(VersionInfo("2", "r2", 0.21, "fp-a"), champion, margin=0.02)[0]
    assert gate(VersionInfo("2", "r2", 0.23, "fp-a"), champion, margin=0.02)[0]
    ok, reason = gate(VersionInfo("2", "r2", 0.90, "fp-b"), champion)
    assert not ok and "not comparable" in reason
    ok, reason = gate(VersionInfo("2", "r2", None, "fp-a"), champion)
    assert not ok and "musicrec evaluate" in reason
    assert not gate(champion, champion)[0]


def test_pareto_front() -> None:
    seconds = np.array([1.0, 2.0, 3.0, 4.0, 2.0])
    scores = np.array([0.10, 0.20, 0.15, 0.30, 0.18])
    assert pareto_front(seconds, scores).tolist() == [True, True, False, True, False]


def test_observed_train_and_a_later_evaluation_share_a_run(store: str, synth_dataset: Path) -> None:
    model_dir = Path("model")
    _, tracked = tracked_train(synth_dataset, model_dir, TINY)
    assert tracked.run_id is not None
    client = get_client()
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["factors"] == "8"
    assert run.data.params["weighting"] == TINY.weighting
    fingerprint = ModelArtifact.load(model_dir).manifest["dataset"]["fingerprint"]
    assert run.data.params["dataset.fingerprint"] == fingerprint
    assert run.data.tags["dataset_fingerprint"] == fingerprint
    assert {"code_version", "engine", "data_source"} <= set(run.data.tags)
    losses = client.get_metric_history(tracked.run_id, LOSS_METRIC)
    assert [m.step for m in losses] == [s - 1 for s in loss_sweeps(TINY.iterations)]
    sweeps = client.get_metric_history(tracked.run_id, "iteration_seconds")
    assert len({m.step for m in sweeps}) == TINY.iterations  # every sweep is observed
    artifacts = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert {"loss_curve.png", "model"} <= artifacts
    logged_model = {a.path for a in client.list_artifacts(tracked.run_id, "model")}
    assert {"model/manifest.json", "model/user_factors.npy"} <= logged_model
    manifest = ModelArtifact.load(model_dir).manifest
    assert manifest["mlflow_run_id"] == tracked.run_id  # written once, by the train stage
    assert "registered_model" not in manifest  # tracking never writes into the directory
    assert tracked.version == "1" == run_version(client, "musicrec", tracked.run_id)

    evaluation = MlflowObserver()
    report = evaluate_model(synth_dataset, model_dir, observer=evaluation).to_dict()
    assert evaluation.run_id == tracked.run_id  # logged into the model's own run
    metrics = client.get_run(tracked.run_id).data.metrics
    assert metrics["ndcg_at_10"] == pytest.approx(report["ndcg@10"])
    assert metrics["popularity.ndcg_at_10"] == pytest.approx(report["popularity"]["ndcg@10"])
    assert "segment.light.ndcg_at_10" in metrics and "ndcg_at_10.low" in metrics
    assert "evaluation/metrics.json" in {
        a.path for a in client.list_artifacts(tracked.run_id, "evaluation")
    }
    _, second = tracked_train(synth_dataset, Path("model2"), TINY)
    assert second.version == "2"


def test_train_then_evaluate_is_one_run_ended_after_the_evaluation(
    store: str, synth_dataset: Path
) -> None:
    from musicrec.data.dataset import Dataset

    observer = MlflowObserver(run_name="sequence", model_name="musicrec")
    _, report = train_and_evaluate(Dataset.load(synth_dataset), Path("model"), TINY, observer)
    client = get_client()
    assert observer.run_id is not None
    run = client.get_run(observer.run_id)
    assert run.info.status == "FINISHED"
    logged = client.get_metric_history(observer.run_id, "ndcg_at_10")
    assert logged and logged[-1].value == pytest.approx(report.model["ndcg@10"])
    assert run.info.end_time >= logged[-1].timestamp  # the run ended after the evaluation
    manifest = ModelArtifact.load("model").manifest
    assert manifest["metrics"]["ndcg@10"] == pytest.approx(report.model["ndcg@10"])
    assert manifest["mlflow_run_id"] == observer.run_id
    registered = resolve_model("models:/musicrec/1")
    assert ModelArtifact.load(registered).manifest["metrics"] == manifest["metrics"]


def test_a_store_from_before_kinds_keeps_working(store: str, synth_dataset: Path) -> None:
    """Versions registered as musicrec-als: defaults use it; the new URI says what to use."""
    tracked_train(synth_dataset, Path("model"), TINY, model_name="musicrec-als")
    evaluate_model(synth_dataset, "model", observer=MlflowObserver())
    assert default_model_name() == "musicrec-als"
    runner = CliRunner()
    promoted = runner.invoke(app, ["promote"])
    assert promoted.exit_code == 0 and "musicrec-als" in promoted.output
    with pytest.raises(TrackingError, match="models:/musicrec-als@champion"):
        resolve_model("models:/musicrec@champion")
    assert ModelArtifact.load(resolve_model("models:/musicrec-als@champion")).kind == "als"


def test_cli_train_evaluate_promote(store: str, synth_dataset: Path) -> None:
    runner = CliRunner()

    def train_and_evaluate(out: str, *extra: str) -> None:
        args = ["train", "--data", str(synth_dataset), "--out", out, "--factors", "8"]
        result = runner.invoke(app, [*args, "--iterations", "3", *extra])
        assert result.exit_code == 0, result.output
        args = ["evaluate", "--data", str(synth_dataset), "--model", out, *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output

    train_and_evaluate("m1")
    assert default_model_name() == "musicrec"
    run_id = ModelArtifact.load("m1").manifest["mlflow_run_id"]
    assert "ndcg_at_10" in get_client().get_run(run_id).data.metrics  # evaluate found the run
    assert runner.invoke(app, ["promote"]).exit_code == 0
    assert runner.invoke(app, ["promote", "--version", "1"]).exit_code == 0  # already champion
    train_and_evaluate("m2")  # same data, same seed: the same lists, no gain beyond the margin
    refused = runner.invoke(app, ["promote", "--version", "latest"])
    assert refused.exit_code == 1 and "superiority gate fails" in refused.output
    assert "+0.0000 [+0.0000, +0.0000]" in refused.output  # the paired difference of twins
    tags = get_client().get_model_version("musicrec", "2").tags
    assert tags["gate.decision"] == "kept" and tags["gate.check.superiority"] == "fail"
    rescored = runner.invoke(app, ["promote", "--data", str(synth_dataset), "--allow-refusal"])
    assert rescored.exit_code == 0 and "superiority gate fails" in rescored.output  # scored now
    tolerated = runner.invoke(app, ["promote", "--gate", "non-inferiority", "--delta", "0.01"])
    assert tolerated.exit_code == 0, tolerated.output  # an identical model is not inferior
    assert runner.invoke(app, ["promote", "--allow-refusal"]).exit_code == 0
    train_and_evaluate("m3", "--no-track")
    assert "mlflow_run_id" not in ModelArtifact.load("m3").manifest


def synthetic_scores(ndcg: float, fingerprint: str, n: int = 300) -> UserScores:
    """Per-user values with mean ``ndcg``: a shared per-user level plus a little own noise."""
    shared = np.random.default_rng(0).normal(0.0, 0.1, n)
    own = np.random.default_rng(round(ndcg * 1000)).normal(0.0, 0.005, n)
    top = ((np.arange(n)[:, None] + np.arange(10)) % 50).astype(np.int32)
    listener = (np.arange(n) % 3).astype(np.int8)
    segments = Segments(listener, np.zeros(50, dtype=np.int8), 10, 5, 1)
    values = {"ndcg@10": ndcg + shared + own, "novelty@10": np.full(n, 5.0)}
    return UserScores(np.arange(n), values, top, segments, (10,), 50, fingerprint)


def _version_with_ndcg(client, name: str, ndcg: float, fingerprint: str, tmp: Path) -> str:  # type: ignore[no-untyped-def]
    """Register a version whose run carries a known ndcg_at_10 and per-user values of that
    mean (the model files are irrelevant here)."""
    with start_run(client, "gate", tags={"dataset_fingerprint": fingerprint}) as run:
        run.log_metrics({"ndcg_at_10": ndcg})
        (tmp / "m").mkdir(exist_ok=True)
        (tmp / "m" / "manifest.json").write_text("{}")
        run.log_artifacts(tmp / "m", "model")
        path = synthetic_scores(ndcg, fingerprint).save(tmp / "m" / "evaluation.npz")
        run.log_artifact(path, "evaluation")
    return str(register_version(client, name, run.run_id, fingerprint).version)


def test_promotion_gate_and_rollback(store: str, tmp_path: Path) -> None:
    client = get_client()
    name = "gate-model"
    scores = [(0.20, "A"), (0.19, "A"), (0.25, "A"), (0.30, "B"), (0.26, "A")]
    v = [_version_with_ndcg(client, name, s, fp, tmp_path) for s, fp in scores]

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, "champion").version)

    assert promote(name, v[0]).promoted and champion() == v[0]
    refused = promote(name, v[1])
    assert not refused.promoted and champion() == v[0]
    assert promote(name, v[2]).promoted and champion() == v[2]
    other_data = promote(name, v[3])
    assert not other_data.promoted and "not comparable" in other_data.reason
    assert champion() == v[2]
    narrow = promote(name, v[4], margin=0.02)  # +0.01 [about +0.009, +0.011] is not > 0.02
    assert not narrow.promoted and narrow.evidence is not None
    assert narrow.evidence.comparison.metrics["ndcg@10"].low == pytest.approx(0.01, abs=0.002)
    assert promote(name, v[4], margin=0.005).promoted and champion() == v[4]
    tags = client.get_model_version(name, v[4]).tags
    assert tags["gate.decision"] == "promoted" and tags["gate.mode"] == "superiority"
    assert "gate.ndcg_at_10.interval" in tags and "gate.ndcg_at_10.p_value_t" in tags
    assert promote(name, v[3], force=True).promoted and champion() == v[3]

    assert rollback(name).candidate.version == v[4] and champion() == v[4]
    assert rollback(name).candidate.version == v[2] and champion() == v[2]
    assert rollback(name).candidate.version == v[0] and champion() == v[0]
    with pytest.raises(TrackingError, match="no previous champion"):
        rollback(name)
    history = client.get_registered_model(name).tags["champion_history"].split(",")
    assert history == [v[0], v[2], v[4], v[3], v[4], v[2], v[0]]


def test_resolve_model_downloads_once_and_loads(store: str, synth_dataset: Path) -> None:
    _, tracked = tracked_train(synth_dataset, Path("model"), TINY)
    evaluate_model(synth_dataset, "model", observer=MlflowObserver())
    assert promote().promoted
    local = resolve_model("models:/musicrec@champion")
    loaded = ModelArtifact.load(local)
    np.testing.assert_array_equal(loaded.item_factors, ModelArtifact.load("model").item_factors)
    assert loaded.manifest["mlflow_run_id"] == tracked.run_id
    assert loaded.manifest["metrics"]["ndcg@10"] > 0  # evaluation reached the registered copy
    assert tracked.run_id is not None
    run_artifacts = Path(
        get_client().get_run(tracked.run_id).info.artifact_uri.removeprefix("file://")
    )
    shutil.rmtree(run_artifacts)  # a cached version must not be downloaded again
    assert resolve_model("models:/musicrec/1") == local
    with pytest.raises(TrackingError, match="not models:/"):
        resolve_model("runs:/abc/model")
    with pytest.raises(TrackingError):
        resolve_model("models:/musicrec@no-such-alias")


def test_register_and_promote_untracked_artifact(store: str, synth_dataset: Path) -> None:
    train(synth_dataset, "plain", TINY)
    report = evaluate_model(synth_dataset, "plain")  # metrics recorded in the manifest
    decision = register_and_promote("plain")
    assert decision.promoted and decision.candidate.version == "1"
    assert decision.candidate.ndcg == pytest.approx(report.model["ndcg@10"])
    again = register_and_promote("plain")  # same artifact: same version, already champion
    assert again.candidate.version == "1" and again.is_champion and not again.promoted


def test_grid_and_report(store: str, synth_dataset: Path, tmp_path: Path) -> None:
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        "base: {regularization: 0.05}\ngrid:\n"
        "  - {factors: 8, iterations: 2}\n  - {factors: 16, iterations: 3}\n"
    )
    configs = load_grid(grid_file)
    assert [(c.factors, c.iterations, c.regularization) for c in configs] == [
        (8, 2, 0.05),
        (16, 3, 0.05),
    ]
    assert len(load_grid(REPO_ROOT / "configs" / "grid.yaml")) == 5
    observer = MlflowObserver(experiment="musicrec-grid", run_name="grid")
    runs = run_grid(synth_dataset, configs, tmp_path / "models", observer=observer)
    parent = observer.run_id
    client = get_client()
    children = client.search_runs(
        [client.get_experiment_by_name("musicrec-grid").experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert {r.info.run_id for r in children} == {r.run_id for r in runs}
    assert all("ndcg_at_10" in r.data.metrics for r in children)
    files = experiment_report("musicrec-grid", tmp_path / "report")
    assert files.runs == 2
    table = files.markdown.read_text()
    assert "als-f8-i2" in table and "als-f16-i3" in table
    assert "ndcg@10 per segment" in table and "| run | light | heavy | head | mid | tail |" in table
    assert files.plot.read_bytes()[:4] == b"\x89PNG"
    header = files.csv.read_text().splitlines()[0]
    assert header.startswith("run,") and "ndcg_at_10.low" in header  # the error bars' data
    logged = {a.path for a in client.list_artifacts(runs[0].run_id, "evaluation")}
    assert {"evaluation/evaluation.npz", "evaluation/intervals.png"} <= logged


def test_dvc_data_version_links_a_run_to_the_dvc_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicrec.pipeline.observer import dvc_data_version

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "dataset").mkdir(parents=True)
    assert dvc_data_version(tmp_path / "data" / "dataset") is None
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prepare:\n    cmd: musicrec data prepare\n    outs:\n"
        "    - path: data/dataset\n      md5: 0123abcd.dir\n      size: 10\n      nfiles: 3\n"
    )
    assert dvc_data_version(tmp_path / "data" / "dataset") == "0123abcd.dir"
    assert dvc_data_version(tmp_path / "elsewhere") is None


def test_a_grid_loads_its_dataset_once(
    synth_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N configs, one Dataset.load: stages run on the dataset in memory, tracking observes."""
    from musicrec.data.dataset import Dataset

    loads: list[Path] = []
    original = Dataset.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Dataset], path: str | Path) -> Dataset:
        loads.append(Path(path))
        return original(cls, path)

    monkeypatch.setattr(Dataset, "load", classmethod(counting))
    configs = [TINY, TINY.override(factors=4), TrainConfig.for_kind("itemknn", neighbours=20)]
    observer = MlflowObserver(experiment="musicrec-grid", run_name="grid")
    runs = run_grid(synth_dataset, configs, tmp_path / "grid", observer=observer)
    parent = observer.run_id
    assert loads == [synth_dataset]
    assert len(runs) == 3 and all("ndcg@10" in run.metrics for run in runs)
    client = get_client()
    children = client.search_runs(
        [client.get_experiment_by_name("musicrec-grid").experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert {run.data.tags["kind"] for run in children} == {"als", "itemknn"}
    assert all("ndcg_at_10" in run.data.metrics for run in children)
