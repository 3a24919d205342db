"""Putting model directories into the registry: log, register, and promote a local artifact.

The train stage's observer publishes what it trained (:func:`publish_model`); an artifact
trained without tracking is logged and registered afterwards (:func:`track_artifact`), found
again by its identity, never by writing into its directory.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from musicrec import layout
from musicrec.errors import ArtifactError
from musicrec.fsutil import read_json
from musicrec.tracking.registry import (
    ARTIFACT_TAG,
    Decision,
    Judge,
    artifact_id,
    find_version,
    promote,
    register_version,
    run_version,
)
from musicrec.tracking.store import (
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    LOSS_METRIC,
    MODEL_PATH,
    Run,
    display_uri,
    existing_run,
    get_client,
    log_evaluation,
    loss_plot,
    mlflow_errors,
    run_tags,
    start_run,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


def publish_model(
    run: Run,
    model_dir: str | Path,
    model_name: str | None,
    fingerprint: str,
    losses: list[float],
    version_tags: Mapping[str, str] | None = None,
) -> str | None:
    """Log the artifact dir under ``model/`` plus its loss curve, then register it.

    Returns the registered version, or ``None`` without a name. The directory is logged as
    written (its manifest names the run when the train stage knew it).
    """
    if losses:
        with tempfile.TemporaryDirectory() as tmp:
            run.log_artifact(loss_plot(losses, Path(tmp) / "loss_curve.png"))
    run.log_artifacts(model_dir, MODEL_PATH)
    if not model_name:
        return None
    found = register_version(run.client, model_name, run.run_id, fingerprint, tags=version_tags)
    return str(found.version)


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
            log_evaluation(run, manifest["metrics"], Path(model_dir))
        tags = {ARTIFACT_TAG: artifact_id(manifest)}
        return publish_model(run, model_dir, model_name, fingerprint, losses, tags)


def require_artifact(model_dir: str | Path) -> None:
    """Refuse a directory that is not a model artifact (before any store is opened)."""
    if not (Path(model_dir) / layout.MANIFEST).is_file():
        raise ArtifactError(f"{model_dir}: not a model artifact directory (run `musicrec train`)")


def register_and_promote(
    model_dir: str | Path,
    name: str = DEFAULT_MODEL_NAME,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    margin: float | None = None,
    force: bool = False,
    client: MlflowClient | None = None,
    judge: Judge | None = None,
) -> Decision:
    """Promote the registered version of a local artifact, registering it first if needed.

    An artifact from a tracked ``musicrec train`` names its run in its manifest, and the run
    its registered version; one trained with ``--no-track`` is logged to a new run (with the
    metrics its manifest holds) first.
    """
    require_artifact(model_dir)
    client = client or get_client()
    manifest = read_json(Path(model_dir) / layout.MANIFEST)
    run_id = manifest.get("mlflow_run_id")
    with mlflow_errors(f"finding the {name} version of {model_dir}"):
        version = run_version(client, name, run_id) if existing_run(client, run_id) else None
        if version is None:
            version = find_version(client, name, f"tags.{ARTIFACT_TAG}", artifact_id(manifest))
    if version is None:
        version = track_artifact(model_dir, experiment=experiment, model_name=name, client=client)
    return promote(name, str(version), margin, force, client=client, judge=judge)
