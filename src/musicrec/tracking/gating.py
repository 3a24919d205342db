"""The paired promotion gate in the registry: whose per-user values, the decision, its record.

An evaluation run logs the per-user values of its model (``evaluation/evaluation.npz``) and a
plot of its intervals. ``promote`` compares two versions evaluated on the same dataset
fingerprint from those files (the same test users, no re-scoring), or scores both versions on
``--data`` when asked. The decision, the intervals and the p-values go to the candidate's run
(metrics ``gate.*`` and ``gate/decision.json``) and to the registry version as ``gate.*`` tags.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from musicrec.errors import TrackingError
from musicrec.pipeline.evaluate import SCORES_FILE
from musicrec.pipeline.gate import GateConfig, GateResult, gate_scores
from musicrec.pipeline.userscores import UserScores
from musicrec.tracking.store import Run, existing_run, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient


class VersionInfo(Protocol):
    """What the gate reads of a version (a :class:`musicrec.tracking.registry.VersionInfo`)."""

    @property
    def version(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...


EVALUATION_DIR = "evaluation"
PER_USER_ARTIFACT = f"{EVALUATION_DIR}/{SCORES_FILE}"


def log_evaluation_files(run: Run, report: Mapping[str, Any], model_dir: Path) -> None:
    """Log the model's per-user values and a plot of its metrics with intervals."""
    from musicrec.tracking.plots import intervals_plot

    scores = Path(model_dir) / SCORES_FILE
    if scores.is_file():
        run.log_artifact(scores, EVALUATION_DIR)
    if report.get("intervals"):
        with tempfile.TemporaryDirectory() as tmp:
            run.log_artifact(intervals_plot(report, Path(tmp) / "intervals.png"), EVALUATION_DIR)


def version_scores(client: MlflowClient, name: str, info: VersionInfo) -> UserScores:
    """The per-user values logged by the evaluation of version ``info``."""
    from mlflow.exceptions import MlflowException

    missing = TrackingError(
        f"{name} version {info.version} has no per-user evaluation: run `musicrec evaluate` on "
        "its model, or give --data to score both versions now"
    )
    if not info.run_id:
        raise missing
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(info.run_id, PER_USER_ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise missing from None
        return UserScores.load(local)


def scores_on_data(
    name: str, versions: list[str], data_dir: Path, resolve: Callable[[str], Path]
) -> list[UserScores]:
    """Each version fetched with ``resolve`` (a ``models:/`` URI -> its directory) and scored
    on ``data_dir``'s test users."""
    from musicrec.data.dataset import Dataset
    from musicrec.models.artifact import ModelArtifact
    from musicrec.pipeline.compare import score_artifacts
    from musicrec.pipeline.evaluate import check_trained_on

    dataset = Dataset.load(data_dir)
    artifacts = []
    for version in versions:
        path = resolve(f"models:/{name}/{version}")
        artifact = ModelArtifact.load(path)
        check_trained_on(dataset, artifact, f"{name} version {version}")
        artifacts.append(artifact)
    return score_artifacts(dataset, artifacts, (10,))


def paired_gate(
    client: MlflowClient,
    name: str,
    candidate: VersionInfo,
    champion: VersionInfo,
    config: GateConfig,
    data_dir: Path | None = None,
    resolve: Callable[[str], Path] | None = None,
) -> GateResult:
    """The gate's decision on champion and candidate, scored on the same users."""
    if data_dir is not None:
        assert resolve is not None, "scoring on data needs a model resolver"
        versions = [champion.version, candidate.version]
        theirs, ours = scores_on_data(name, versions, data_dir, resolve)
    else:
        with mlflow_errors(f"reading the evaluations of {name}"):
            theirs = version_scores(client, name, champion)
            ours = version_scores(client, name, candidate)
    return gate_scores(theirs, ours, config)


def record_gate(
    client: MlflowClient,
    name: str,
    version: str,
    run_id: str | None,
    result: GateResult,
    promoted: bool,
) -> None:
    """Tags on the registry version, metrics and ``gate/decision.json`` on its run."""
    with mlflow_errors(f"recording the gate of {name} version {version}"):
        tags = result.tags() | {"gate.decision": "promoted" if promoted else "kept"}
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        run = existing_run(client, run_id)
        if run is not None:
            run.log_metrics(result.metrics())
            run.log_json(result.to_dict() | {"promoted": promoted}, "gate/decision.json")
