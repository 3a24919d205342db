"""Experiment tracking with MLflow: the store, the stage observer, the registry and reports.

The tracking package only observes (it never calls a stage or loads data):
:class:`MlflowObserver` is handed to the stages (train, evaluate, tune, grid), ``registry``
registers, gates and promotes, ``report`` reads runs back into tables and plots.
"""

from musicrec.errors import TrackingError
from musicrec.tracking.observer import MlflowObserver
from musicrec.tracking.publish import publish_model, register_and_promote, track_artifact
from musicrec.tracking.registry import default_model_name, resolve_model_path
from musicrec.tracking.store import (
    ARTIFACTS_DIR,
    DB_FILE,
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    LEGACY_MODEL_NAME,
    LOSS_METRIC,
    MODEL_PATH,
    PARENT_TAG,
    Run,
    artifact_location,
    display_uri,
    existing_run,
    experiment_id,
    get_client,
    log_evaluation,
    loss_plot,
    metric_key,
    mlflow_errors,
    report_metrics,
    run_tags,
    start_run,
    tracking_uri,
    ui_command,
)

__all__ = [
    "ARTIFACTS_DIR",
    "DB_FILE",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODEL_NAME",
    "LEGACY_MODEL_NAME",
    "LOSS_METRIC",
    "MODEL_PATH",
    "PARENT_TAG",
    "MlflowObserver",
    "Run",
    "TrackingError",
    "artifact_location",
    "default_model_name",
    "display_uri",
    "existing_run",
    "experiment_id",
    "get_client",
    "log_evaluation",
    "loss_plot",
    "metric_key",
    "mlflow_errors",
    "publish_model",
    "register_and_promote",
    "report_metrics",
    "resolve_model_path",
    "run_tags",
    "start_run",
    "track_artifact",
    "tracking_uri",
    "ui_command",
]
