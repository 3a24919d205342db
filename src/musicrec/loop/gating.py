"""The paired promotion gate between two registered versions (``musicrec promote``).

Two versions evaluated on the same dataset fingerprint are compared on their logged per-user
values (the same test users, no re-scoring), or both are scored on ``--data`` when asked. The
registry (:func:`musicrec.tracking.registry.promote`) asks the judge built here and records its
decision; tracking itself never scores (it only stores and reads the files).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from musicrec.data.dataset import Dataset
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.compare import score_artifacts
from musicrec.pipeline.evaluate import check_trained_on
from musicrec.pipeline.gate import DEFAULT_MARGIN, GateConfig, gate_scores
from musicrec.pipeline.userscores import UserScores
from musicrec.tracking import registry
from musicrec.tracking.gating import version_scores_file
from musicrec.tracking.registry import (
    CHAMPION,
    Decision,
    Judge,
    Judgement,
    VersionInfo,
    comparable,
    resolve_model,
)
from musicrec.tracking.store import DEFAULT_MODEL_NAME, get_client

if TYPE_CHECKING:
    from mlflow import MlflowClient


def version_scores(client: MlflowClient, name: str, info: VersionInfo) -> UserScores:
    """The per-user values logged by the evaluation of version ``info``."""
    with tempfile.TemporaryDirectory() as tmp:
        return UserScores.load(version_scores_file(client, name, info, Path(tmp)))


def scores_on_data(name: str, versions: list[str], data_dir: Path) -> list[UserScores]:
    """Each registered version scored on ``data_dir``'s test users."""
    dataset = Dataset.load(data_dir)
    artifacts = []
    for version in versions:
        artifact = ModelArtifact.load(resolve_model(f"models:/{name}/{version}"))
        check_trained_on(dataset, artifact, f"{name} version {version}")
        artifacts.append(artifact)
    return score_artifacts(dataset, artifacts, (10,))


def paired_judge(
    name: str,
    config: GateConfig,
    data_dir: Path | None = None,
    client: MlflowClient | None = None,
) -> Judge:
    """The gate on two comparable versions (same dataset, both evaluated); others are left to
    the registry's plain rules."""

    def judge(candidate: VersionInfo, champion: VersionInfo) -> Judgement | None:
        if not comparable(candidate, champion):
            return None
        if data_dir is not None:
            theirs, ours = scores_on_data(name, [champion.version, candidate.version], data_dir)
        else:
            store = client or get_client()
            theirs = version_scores(store, name, champion)
            ours = version_scores(store, name, candidate)
        result = gate_scores(theirs, ours, config)
        return result.passed, result.reason, result

    return judge


def promote(
    name: str = DEFAULT_MODEL_NAME,
    version: str = "latest",
    margin: float | None = None,
    force: bool = False,
    *,
    alias: str = CHAMPION,
    client: MlflowClient | None = None,
    gate_config: GateConfig | None = None,
    data_dir: Path | None = None,
) -> Decision:
    """:func:`musicrec.tracking.registry.promote` through the paired gate: ``gate_config``
    (default: superiority with ``margin``), on the logged per-user values or on ``data_dir``."""
    if gate_config is None:
        gate_config = GateConfig(
            mode="superiority", margin=DEFAULT_MARGIN if margin is None else margin
        )
    judge = paired_judge(name, gate_config, data_dir, client)
    return registry.promote(name, version, margin, force, alias=alias, client=client, judge=judge)
