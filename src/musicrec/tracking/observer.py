"""What a tracked train or evaluate run records: MLflow as an observer of the stages.

A tracked train run records the :class:`~musicrec.config.TrainConfig` and the dataset as params,
the training loss (metric ``train_loss``, step = sweep; after the last sweep unless
``loss_every`` asks for more), a loss-curve PNG and the model artifact
directory (under ``model/``), then registers that directory as a new version of a registered
model. An evaluation adds every metric at each K with its interval, the baselines, the segments,
the per-user values and a plot of the intervals to the same run, found through ``mlflow_run_id``
in the artifact's manifest.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from musicrec import layout
from musicrec.config import TrainConfig, config_name
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError
from musicrec.fsutil import read_json, write_json_atomic
from musicrec.tracking.registry import Decision, promote
from musicrec.tracking.store import (
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    LOSS_METRIC,
    MODEL_PATH,
    PARENT_TAG,
    Run,
    display_uri,
    existing_run,
    experiment_id,
    get_client,
    metric_key,
    mlflow_errors,
    start_run,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from musicrec.pipeline.gate import GateConfig
    from musicrec.pipeline.train import TrainResult


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


def dataset_params(dataset: Dataset) -> dict[str, Any]:
    """The dataset's identity and size as run params (prefix ``dataset.``)."""
    params: dict[str, Any] = {
        "dataset.fingerprint": dataset.fingerprint,
        "dataset.source": dataset.meta.get("source"),
        "dataset.split": dataset.stats.get("split", dataset.meta.get("config", {}).get("split")),
    }
    for name, value in dataset.meta.get("config", {}).items():
        params[f"dataset.config.{name}"] = value
    for name, value in dataset.stats.get("kept", {}).items():
        params[f"dataset.kept.{name}"] = value
    if "rows_read" in dataset.stats:
        params["dataset.rows_read"] = dataset.stats["rows_read"]
    dvc_md5 = dvc_data_version(dataset.path)
    if dvc_md5:
        params["dataset.dvc_md5"] = dvc_md5
    return params


def dvc_data_version(data_dir: Path, lock_file: Path = Path("dvc.lock")) -> str | None:
    """DVC's hash of ``data_dir`` when a ``dvc.lock`` (in the working directory) records it.

    Under ``dvc repro`` this ties a run to the exact dataset version DVC can ``checkout``;
    outside a DVC pipeline it is ``None`` and the content fingerprint alone identifies the data.
    """
    if not lock_file.is_file():
        return None
    try:
        lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    target = Path(data_dir).resolve()
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if (lock_file.parent / str(out.get("path", ""))).resolve() == target:
                md5 = out.get("md5")
                return str(md5) if md5 else None
    return None


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


def publish_model(
    run: Run,
    model_dir: str | Path,
    experiment: str,
    model_name: str | None,
    fingerprint: str,
    losses: list[float],
) -> str | None:
    """Log the artifact dir under ``model/`` plus its loss curve, then register it.

    The run id (and the registered version) go into the manifest first, so the logged copy
    knows where it came from. Returns the registered version, or ``None`` without a name.
    """
    from musicrec.models.artifact import ModelArtifact

    artifact = ModelArtifact.load(model_dir)
    artifact.update_manifest(mlflow_run_id=run.run_id, mlflow_experiment=experiment)
    if losses:
        with tempfile.TemporaryDirectory() as tmp:
            run.log_artifact(loss_plot(losses, Path(tmp) / "loss_curve.png"))
    run.log_artifacts(model_dir, MODEL_PATH)
    if not model_name:
        return None
    from musicrec.tracking.registry import register_version

    version = str(register_version(run.client, model_name, run.run_id, fingerprint).version)
    artifact.update_manifest(registered_model={"name": model_name, "version": version})
    run.log_artifact(Path(model_dir) / layout.MANIFEST, MODEL_PATH)
    return version


class MlflowObserver:
    """Records a stage as an MLflow run: params, tags, time and loss per sweep, metrics, the model.

    One observer follows one model: its train run, then its evaluation (logged into the same
    run). ``model_name`` registers each saved model as a new version of that registered model.
    An evaluation without a train run of this observer goes to the run named in the model's
    manifest, or to a new ``evaluate`` run.
    """

    def __init__(
        self,
        client: MlflowClient | None = None,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        model_name: str | None = None,
        dataset: Dataset | None = None,
    ):
        self.client = client or get_client()
        self.experiment = experiment
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.model_name = model_name
        self.dataset = dataset
        self.run: Run | None = None
        self.version: str | None = None
        self._errors = f"MLflow store {display_uri(self.client.tracking_uri)}"

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run else None

    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        from musicrec.models.artifact import code_version

        name = self.run_name or stage
        all_tags = {"code_version": code_version(), **tags}
        if self.parent_run_id:
            all_tags[PARENT_TAG] = self.parent_run_id
        with mlflow_errors(self._errors):
            created = self.client.create_run(
                experiment_id(self.client, self.experiment), tags=all_tags, run_name=name
            )
            self.run = Run(self.client, created.info.run_id)
            extra = dataset_params(self.dataset) if self.dataset is not None else {}
            self.run.log_params(dict(params) | extra)

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.run.loss_callback()(step, seconds, loss)

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.run.log_metrics(metrics, step=step)

    def on_model(self, model_dir: Path, fingerprint: str, losses: list[float]) -> None:
        if self.run is None:
            return
        with mlflow_errors(self._errors):
            self.version = publish_model(
                self.run, model_dir, self.experiment, self.model_name, fingerprint, losses
            )

    def on_evaluation(self, model_dir: Path, report: Mapping[str, Any]) -> None:
        manifest_path = Path(model_dir) / layout.MANIFEST
        with mlflow_errors(self._errors):
            run = self.run or existing_run(
                self.client, read_json(manifest_path).get("mlflow_run_id")
            )
            if run is None:
                manifest = read_json(manifest_path)
                dataset = manifest.get("dataset", {})
                tags = run_tags(
                    str(dataset.get("fingerprint")),
                    dataset.get("source"),
                    manifest["engine"],
                    manifest.get("kind", "als"),
                )
                with start_run(
                    self.client, self.experiment, "evaluate", tags=tags | {"stage": "evaluate"}
                ) as run:
                    run.log_params(manifest.get("params", {}))
                    _log_evaluation(run, report, Path(model_dir))
                manifest = read_json(manifest_path)
                manifest.update(mlflow_run_id=run.run_id, mlflow_experiment=self.experiment)
                write_json_atomic(manifest_path, manifest)
                self.run = run
                return
            _log_evaluation(run, report, Path(model_dir))
            run.log_artifact(manifest_path, MODEL_PATH)
            self.run = run

    def on_end(self, failed: bool) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.client.set_terminated(self.run.run_id, "FAILED" if failed else "FINISHED")


@dataclass(frozen=True)
class TrackedTrain:
    """A training result with where it was tracked and registered."""

    result: TrainResult
    run_id: str
    model_name: str | None
    model_version: str | None


def tracked_train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    model_name: str | None = DEFAULT_MODEL_NAME,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
    client: MlflowClient | None = None,
) -> TrackedTrain:
    """The train stage on ``data_dir`` observed by MLflow; register the artifact unless no name."""
    from musicrec.pipeline.train import train_model

    dataset = Dataset.load(data_dir)
    observer = MlflowObserver(
        client,
        experiment,
        run_name=run_name or config_name(config),
        parent_run_id=parent_run_id,
        model_name=model_name,
        dataset=dataset,
    )
    _, result = train_model(
        dataset,
        out_dir,
        config,
        show_progress=show_progress,
        spark_master=spark_master,
        observer=observer,
    )
    assert observer.run_id is not None
    return TrackedTrain(result, observer.run_id, model_name, observer.version)


def track_evaluation(
    model_dir: str | Path,
    report: Mapping[str, Any],
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    client: MlflowClient | None = None,
) -> str:
    """Log an evaluation report into the model's train run (or a new run); return the run id.

    The artifact's manifest (already holding the metrics) is logged again under ``model/`` so
    the registered copy carries them too.
    """
    observer = MlflowObserver(client, experiment)
    observer.on_evaluation(Path(model_dir), report)
    assert observer.run_id is not None
    return observer.run_id


def _log_evaluation(run: Run, report: Mapping[str, Any], model_dir: Path | None = None) -> None:
    run.log_metrics(report_metrics(report))
    run.log_json(dict(report), "evaluation/metrics.json")
    if model_dir is not None:
        from musicrec.tracking.gating import log_evaluation_files

        log_evaluation_files(run, report, model_dir)
    run.set_tags({"evaluated": "true"})


def track_artifact(
    model_dir: str | Path,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    model_name: str | None = DEFAULT_MODEL_NAME,
    client: MlflowClient | None = None,
) -> str | None:
    """Log an existing (untracked) artifact to a new run from its manifest; register it.

    Params, loss history and evaluation metrics come from manifest.json. Returns the
    registered version (``None`` without a model name).
    """
    client = client or get_client()
    manifest = read_json(Path(model_dir) / layout.MANIFEST)
    dataset = manifest.get("dataset", {})
    fingerprint = str(dataset.get("fingerprint"))
    tags = run_tags(
        fingerprint, dataset.get("source"), manifest["engine"], manifest.get("kind", "als")
    )
    losses = [float(x) for x in manifest.get("loss_history", [])]
    with (
        mlflow_errors(f"tracking {model_dir} in {display_uri(client.tracking_uri)}"),
        start_run(client, experiment, "register", tags=tags | {"stage": "register"}) as run,
    ):
        run.log_params(manifest.get("params", {}) | {"dataset.fingerprint": fingerprint})
        for step, loss in enumerate(losses):
            if not math.isnan(loss):
                run.log_metrics({LOSS_METRIC: loss}, step=step)
        if "train_seconds" in manifest:
            run.log_metrics({"train_seconds": float(manifest["train_seconds"])})
        if manifest.get("metrics"):
            _log_evaluation(run, manifest["metrics"], Path(model_dir))
        return publish_model(run, model_dir, experiment, model_name, fingerprint, losses)


def register_and_promote(
    model_dir: str | Path,
    name: str = DEFAULT_MODEL_NAME,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    margin: float | None = None,
    force: bool = False,
    client: MlflowClient | None = None,
    gate_config: GateConfig | None = None,
    data_dir: Path | None = None,
) -> Decision:
    """Promote the registered version of a local artifact, registering it first if needed.

    An artifact from a tracked ``musicrec train`` names its version in its manifest; one trained
    with ``--no-track`` is logged to a new run (with the metrics its manifest holds) first.
    """
    if not (Path(model_dir) / layout.MANIFEST).is_file():
        raise ArtifactError(f"{model_dir}: not a model artifact directory (run `musicrec train`)")
    client = client or get_client()
    manifest = read_json(Path(model_dir) / layout.MANIFEST)
    registered = manifest.get("registered_model") or {}
    version = None
    if registered.get("name") == name and existing_run(client, manifest.get("mlflow_run_id")):
        with mlflow_errors(f"reading {name} version {registered.get('version')}"):
            found = client.get_model_version(name, str(registered["version"]))
        if found.run_id == manifest["mlflow_run_id"]:
            version = str(found.version)
    if version is None:
        version = track_artifact(model_dir, experiment=experiment, model_name=name, client=client)
    return promote(
        name, str(version), margin, force, client=client, gate_config=gate_config, data_dir=data_dir
    )
