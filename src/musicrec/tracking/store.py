"""Where runs are stored and how one is written: the MLflow client, runs, names, errors.

The store is ``$MLFLOW_TRACKING_URI`` when set, else a SQLite database ``mlflow.db`` in the
current directory with run artifacts under ``mlartifacts/`` beside it. Nothing is configured at
import: every function takes (or builds) an explicit :class:`~mlflow.MlflowClient`, so no global
tracking URI or active run is ever set.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicrec import layout
from musicrec.errors import TrackingError
from musicrec.fsutil import write_json_atomic
from musicrec.models.base import IterationCallback

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_EXPERIMENT = "musicrec"
DEFAULT_MODEL_NAME = "musicrec"  # one registered model for every kind
LEGACY_MODEL_NAME = "musicrec-als"  # what stores from before kinds register
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
MODEL_PATH = "model"  # run artifact path of the model directory
LOSS_METRIC = "train_loss"
PARENT_TAG = "mlflow.parentRunId"
_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch call


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (read at call time)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path.cwd() / DB_FILE).as_posix()}"


def display_uri(uri: str) -> str:
    """``uri`` without credentials (``postgresql://user:secret@host`` -> ``postgresql://***@host``)."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


def artifact_location(uri: str) -> str | None:
    """Artifact root of new experiments: ``mlartifacts/`` beside a SQLite file, else the store's."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / ARTIFACTS_DIR).as_uri()


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line serving ``uri`` and its local artifacts."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", host, "--port", str(port)]
    location = artifact_location(uri)
    if location:
        command += ["--artifacts-destination", location]
    return command


def get_client(uri: str | None = None) -> MlflowClient:
    """A client bound to ``uri`` (default :func:`tracking_uri`) for tracking and registry."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def mlflow_errors(action: str) -> Iterator[None]:
    """Re-raise MLflow's exceptions as :class:`TrackingError` with a one-line reason."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        message = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0]
        raise TrackingError(f"{action}: {message}") from exc


def metric_key(name: str) -> str:
    """MLflow-safe metric name: ``ndcg@10`` -> ``ndcg_at_10`` (MLflow rejects ``@``)."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "_at_"))


@dataclass(frozen=True)
class Run:
    """One MLflow run, logged through an explicit client."""

    client: MlflowClient
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        items = [Metric(metric_key(k), float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + _BATCH])

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_json(self, payload: Any, artifact_file: str) -> None:
        """Write ``payload`` as JSON and log it under ``artifact_file`` (e.g. ``metrics.json``)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            write_json_atomic(path, payload)
            self.log_artifact(path, str(Path(artifact_file).parent).strip(".") or None)

    def loss_callback(self) -> IterationCallback:
        """A training callback logging ``train_loss`` and cumulative seconds at each iteration."""

        def on_iteration(iteration: int, seconds: float, loss: float) -> None:
            metrics = {"iteration_seconds": seconds}
            if not math.isnan(loss):
                metrics[LOSS_METRIC] = loss
            self.log_metrics(metrics, step=iteration)

        return on_iteration


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (artifacts per :func:`artifact_location`) if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_location(client.tracking_uri)
        return str(client.create_experiment(name, artifact_location=location))
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(f"experiment {name!r} is deleted; restore it or choose another name")
    return str(experiment.experiment_id)


@contextmanager
def start_run(
    client: MlflowClient,
    experiment: str,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Run]:
    """Create a run (nested under ``parent_run_id`` if given); end it FINISHED or FAILED."""
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    created = client.create_run(experiment_id(client, experiment), tags=all_tags, run_name=run_name)
    run = Run(client, created.info.run_id)
    try:
        yield run
    except BaseException:
        client.set_terminated(run.run_id, "FAILED")
        raise
    client.set_terminated(run.run_id, "FINISHED")


def existing_run(client: MlflowClient, run_id: str | None) -> Run | None:
    """The run ``run_id`` if this store has it and it is not deleted."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        found = client.get_run(run_id)
    except MlflowException:
        return None
    return None if found.info.lifecycle_stage == "deleted" else Run(client, run_id)


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Flatten an evaluation report: ``ndcg_at_10``, its interval ``ndcg_at_10.low`` /
    ``.high``, ``popularity.ndcg_at_10``, ``segment.cold.ndcg_at_10`` (and its interval),
    ``bootstrap.resamples``. Non-numeric entries are skipped."""
    out: dict[str, float] = {}
    for key, value in report.items():
        if key == "segments" and isinstance(value, Mapping):
            for group, values in value.items():
                if isinstance(values, Mapping):
                    out |= _flat(values, f"segment.{metric_key(group)}.")
        elif isinstance(value, Mapping):
            out |= _flat(value, "" if key == "intervals" else f"{metric_key(key)}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[metric_key(key)] = float(value)
    return out


def _flat(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Numbers of one group; an ``intervals`` mapping adds ``<metric>.low`` / ``.high``."""
    out: dict[str, float] = {}
    for name, number in values.items():
        if name == "intervals" and isinstance(number, Mapping):
            out |= _flat(number, prefix)
        elif isinstance(number, Mapping):  # one interval: {"low": ..., "high": ...}
            for bound in ("low", "high"):
                if isinstance(number.get(bound), (int, float)):
                    out[f"{prefix}{metric_key(name)}.{bound}"] = float(number[bound])
        elif isinstance(number, (int, float)) and not isinstance(number, bool):
            out[f"{prefix}{metric_key(name)}"] = float(number)
    return out


def run_tags(
    fingerprint: str, source: str | None, engine: str, kind: str = "als"
) -> dict[str, str]:
    """Tags every musicrec run carries; ``dataset_fingerprint`` is the data version."""
    from musicrec.models.artifact import code_version

    return {
        "code_version": code_version(),
        "kind": kind,
        "engine": engine,
        "data_source": str(source),
        "dataset_fingerprint": fingerprint,
    }


def loss_plot(losses: list[float], path: Path, title: str = "ALS training loss") -> Path:
    """Save a loss-per-iteration PNG (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    points = [(i, x) for i, x in enumerate(losses, start=1) if not math.isnan(x)]
    axes.plot([i for i, _ in points], [x for _, x in points], marker="o", markersize=3)
    axes.set(xlabel="sweep", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def log_evaluation(run: Run, report: Mapping[str, Any], model_dir: Path | None = None) -> None:
    """An evaluation report as run metrics, a JSON artifact and the ``evaluated`` tag; with the
    model's directory, its per-user values and a plot of the intervals too."""
    run.log_metrics(report_metrics(report))
    run.log_json(dict(report), "evaluation/metrics.json")
    if model_dir is not None:
        log_evaluation_files(run, report, model_dir)
    run.set_tags({"evaluated": "true"})


EVALUATION_DIR = "evaluation"
PER_USER_ARTIFACT = f"{EVALUATION_DIR}/{layout.USER_SCORES}"  # what the paired gate reads


def log_evaluation_files(run: Run, report: Mapping[str, Any], model_dir: Path) -> None:
    """Log the model's per-user values and a plot of its metrics with intervals."""
    from musicrec.tracking.plots import intervals_plot

    scores = Path(model_dir) / layout.USER_SCORES
    if scores.is_file():
        run.log_artifact(scores, EVALUATION_DIR)
    if report.get("intervals"):
        with tempfile.TemporaryDirectory() as tmp:
            run.log_artifact(intervals_plot(report, Path(tmp) / "intervals.png"), EVALUATION_DIR)
