"""What the registry keeps of the paired promotion gate: the evaluation files, the decision.

An evaluation run logs the per-user values of its model (``evaluation/evaluation.npz``) and a
plot of its intervals (:func:`musicrec.tracking.store.log_evaluation`). The gate itself
(:mod:`musicrec.pipeline.gate`) is run above tracking (:mod:`musicrec.loop.gating`): it reads
those files back through :func:`version_scores_file` and hands
:func:`musicrec.tracking.registry.promote` its decision, which goes to the candidate's run
(metrics ``gate.*`` and ``gate/decision.json``) and to the registry version as ``gate.*`` tags
(:func:`record_gate`). Tracking only stores and reads; it never scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from musicrec.errors import TrackingError
from musicrec.tracking.store import PER_USER_ARTIFACT, existing_run, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient


class VersionInfo(Protocol):
    """What the gate reads of a version (a :class:`musicrec.tracking.registry.VersionInfo`)."""

    @property
    def version(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...


class Evidence(Protocol):
    """A gate's decision as the registry records it (a ``pipeline.gate.GateResult``)."""

    @property
    def passed(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    def tags(self) -> dict[str, str]: ...

    def metrics(self) -> dict[str, float]: ...

    def to_dict(self) -> dict[str, Any]: ...


def version_scores_file(client: MlflowClient, name: str, info: VersionInfo, into: Path) -> Path:
    """Download the per-user values logged by the evaluation of version ``info`` into ``into``."""
    from mlflow.exceptions import MlflowException

    missing = TrackingError(
        f"{name} version {info.version} has no per-user evaluation: run `musicrec evaluate` on "
        "its model, or give --data to score both versions now"
    )
    if not info.run_id:
        raise missing
    with mlflow_errors(f"reading the evaluations of {name}"):
        try:
            return Path(client.download_artifacts(info.run_id, PER_USER_ARTIFACT, str(into)))
        except (MlflowException, OSError):
            raise missing from None


def record_gate(
    client: MlflowClient,
    name: str,
    version: str,
    run_id: str | None,
    result: Evidence,
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
