"""MLflow as an observer of the stages: what a train, evaluate, tune or grid run records.

A train run records the stage's parameters (the :class:`~musicrec.config.TrainConfig` and the
dataset), the training loss (metric ``train_loss``, step = sweep; after the last sweep unless
``loss_every`` asks for more), a loss-curve PNG and the model artifact directory (under
``model/``), which it registers as a new version of a registered model when given a name. An
evaluation (every metric with its interval, the baselines, the segments, the per-user values
and a plot of the intervals) in the same stage lands in the same run before it ends; a later
one goes to the run named in the model's manifest (``mlflow_run_id``, written there by the
train stage from :meth:`MlflowObserver.labels`), or to a new ``evaluate`` run. Searches nest
their trials through :meth:`MlflowObserver.child`. The observer never writes into a stage's
directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicrec import layout
from musicrec.fsutil import read_json
from musicrec.tracking.publish import publish_model
from musicrec.tracking.store import (
    DEFAULT_EXPERIMENT,
    MODEL_PATH,
    PARENT_TAG,
    Run,
    display_uri,
    existing_run,
    experiment_id,
    get_client,
    log_evaluation,
    mlflow_errors,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


class MlflowObserver:
    """Records a stage as an MLflow run: params, tags, time and loss per sweep, metrics, the model.

    ``model_name`` registers each saved model as a new version of that registered model (with
    ``version_tags``); children of this observer register under the same name.
    """

    def __init__(
        self,
        client: MlflowClient | None = None,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        model_name: str | None = None,
        version_tags: Mapping[str, str] | None = None,
    ):
        self.client = client or get_client()
        self.experiment = experiment
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.model_name = model_name
        self.version_tags = dict(version_tags or {})
        self.run: Run | None = None
        self.version: str | None = None
        self._owned = False  # this observer created the run (and ends it)
        self._deferred: tuple[Mapping[str, Any], Mapping[str, str]] | None = None
        self._errors = f"MLflow store {display_uri(self.client.tracking_uri)}"

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run else None

    def labels(self) -> Mapping[str, Any]:
        if self.run is None:
            return {}
        return {"mlflow_run_id": self.run.run_id, "mlflow_experiment": self.experiment}

    def child(self, name: str) -> MlflowObserver:
        return MlflowObserver(
            self.client,
            self.experiment,
            run_name=name,
            parent_run_id=self.run_id,
            model_name=self.model_name,
        )

    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        if stage == "evaluate":  # logged into the model's own run when it has one
            self._deferred = (params, tags)
            return
        self._create(self.run_name or stage, params, tags)

    def _create(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> Run:
        from musicrec.models.artifact import code_version

        all_tags = {"code_version": code_version(), **tags}
        if self.parent_run_id:
            all_tags[PARENT_TAG] = self.parent_run_id
        with mlflow_errors(self._errors):
            created = self.client.create_run(
                experiment_id(self.client, self.experiment), tags=all_tags, run_name=name
            )
            self.run = Run(self.client, created.info.run_id)
            self._owned = True
            self.run.log_params(params)
        return self.run

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.run.loss_callback()(step, seconds, loss)

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.run.log_metrics(metrics, step=step)

    def on_tags(self, tags: Mapping[str, str]) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.run.set_tags(tags)

    def on_artifact(self, path: Path) -> None:
        if self.run is not None:
            with mlflow_errors(self._errors):
                self.run.log_artifact(path)

    def on_model(self, model_dir: Path, fingerprint: str, losses: list[float]) -> None:
        if self.run is None:
            return
        with mlflow_errors(self._errors):
            self.version = publish_model(
                self.run, model_dir, self.model_name, fingerprint, losses, self.version_tags
            )

    def on_evaluation(self, model_dir: Path, report: Mapping[str, Any]) -> None:
        manifest_path = Path(model_dir) / layout.MANIFEST
        with mlflow_errors(self._errors):
            run = self.run or existing_run(
                self.client, read_json(manifest_path).get("mlflow_run_id")
            )
            if run is None:
                params, tags = self._deferred or ({}, {})
                run = self._create(self.run_name or "evaluate", params, tags)
            log_evaluation(run, report, Path(model_dir))
            # The registered copy of the model carries the metrics its manifest now holds.
            run.log_artifact(manifest_path, MODEL_PATH)
            self.run = run

    def on_end(self, failed: bool) -> None:
        if self.run is not None and self._owned:
            with mlflow_errors(self._errors):
                self.client.set_terminated(self.run.run_id, "FAILED" if failed else "FINISHED")
            self._owned = False
