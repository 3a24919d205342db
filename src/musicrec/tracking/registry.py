"""Model registry: versions of a registered model, the ``champion`` alias, its gate and rollback.

One registered model (``musicrec`` by default) holds versions of every kind, so a model of one
kind can replace a champion of another when it scores better on the same data. Stores written
before kinds existed register ``musicrec-als``: the commands keep using it when it is the only
one (:func:`default_model_name`).

A version's source is the artifact directory a tracked train run logged under ``model/``; it is
downloaded as plain files and opened with :class:`~musicrec.models.artifact.ModelArtifact`, so
loading a registered model never unpickles. MLflow 3's ``create_model_version`` accepts such a
run-artifact source without a logged MLflow model (no ``MLmodel`` file is needed).

Promotion gate: a version becomes champion only if it was evaluated on the champion's dataset
fingerprint and passes the paired gate (:mod:`musicrec.tracking.gating`): both versions' per-user
values on the same test users, the interval of the NDCG@10 difference against a margin
(superiority) or a tolerance (non-inferiority), and guardrails on coverage, novelty and segments.
The champion it replaces is recorded on the new version (tag ``previous_champion``) for rollback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicrec import layout
from musicrec.errors import ModelLoadError, MusicrecError, TrackingError
from musicrec.tracking.store import (
    DEFAULT_MODEL_NAME,
    LEGACY_MODEL_NAME,
    MODEL_PATH,
    display_uri,
    get_client,
    mlflow_errors,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from musicrec.tracking.gating import Evidence

log = logging.getLogger(__name__)
REGISTRY_SCHEME = "models:/"

CHAMPION = "champion"
GATE_METRIC = "ndcg_at_10"
FINGERPRINT_TAG = "dataset_fingerprint"
ARTIFACT_TAG = "artifact_id"  # an untracked artifact registered later (register_and_promote)
HISTORY_KEEP = 50
_MODEL_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+|latest))/?$"
)


@dataclass(frozen=True)
class VersionInfo:
    """What the gate needs to know about one registered version."""

    version: str
    run_id: str | None
    ndcg: float | None
    fingerprint: str | None


# The paired gate on a candidate and a champion (run above tracking, in musicrec.loop.gating):
# whether the candidate passes, why, and the evidence recorded with the decision; ``None``
# leaves the plain rules' answer (:func:`gate`).
Judgement = tuple[bool, str, "Evidence | None"]
Judge = Callable[["VersionInfo", "VersionInfo"], "Judgement | None"]


@dataclass(frozen=True)
class Decision:
    """Outcome of a promotion or rollback."""

    name: str
    candidate: VersionInfo
    champion: VersionInfo | None  # before the decision
    promoted: bool
    reason: str
    evidence: Evidence | None = None  # the paired comparison behind the decision

    @property
    def is_champion(self) -> bool:
        """The candidate holds the alias afterwards (promoted now or already)."""
        return self.promoted or (
            self.champion is not None and self.champion.version == self.candidate.version
        )


def gate(
    candidate: VersionInfo, champion: VersionInfo | None, margin: float = 0.0
) -> tuple[bool, str]:
    """Whether ``candidate`` may replace ``champion``, and why (pure: no registry access)."""
    if champion is not None and champion.version == candidate.version:
        return False, f"version {candidate.version} is already the champion"
    if candidate.ndcg is None:
        return False, (
            f"version {candidate.version} has no {GATE_METRIC} metric; "
            "run `musicrec evaluate` on its model"
        )
    if champion is None:
        return True, f"no champion yet; {GATE_METRIC}={candidate.ndcg:.4f}"
    if candidate.fingerprint != champion.fingerprint:
        return False, (
            f"version {candidate.version} was evaluated on dataset {candidate.fingerprint}, the "
            f"champion (version {champion.version}) on {champion.fingerprint}: not comparable"
        )
    if champion.ndcg is None:
        return True, f"champion version {champion.version} has no {GATE_METRIC} recorded"
    verdict = "beats" if candidate.ndcg > champion.ndcg + margin else "does not beat"
    return verdict == "beats", (
        f"{GATE_METRIC} {candidate.ndcg:.4f} {verdict} champion version {champion.version} "
        f"({champion.ndcg:.4f}) + margin {margin:g}"
    )


def register_version(
    client: MlflowClient,
    name: str,
    run_id: str,
    fingerprint: str,
    artifact_path: str = MODEL_PATH,
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register ``<run artifacts>/<artifact_path>`` as a new version of ``name``."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="musicrec model artifacts (any kind)")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    return client.create_model_version(
        name, source, run_id=run_id, tags={FINGERPRINT_TAG: fingerprint, **(tags or {})}
    )


def _registered(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


def default_model_name(client: MlflowClient | None = None) -> str:
    """``musicrec``; ``musicrec-als`` in a store from before kinds that has only that one."""
    client = client or get_client()
    with mlflow_errors(f"reading the registry of {display_uri(client.tracking_uri)}"):
        if _registered(client, DEFAULT_MODEL_NAME) or not _registered(client, LEGACY_MODEL_NAME):
            return DEFAULT_MODEL_NAME
    log.warning("this store registers %r (older musicrec): using it", LEGACY_MODEL_NAME)
    return LEGACY_MODEL_NAME


def run_version(client: MlflowClient, name: str, run_id: str | None) -> str | None:
    """The version of ``name`` registered from run ``run_id``, if there is one."""
    return find_version(client, name, "run_id", run_id)


def find_version(client: MlflowClient, name: str, key: str, value: str | None) -> str | None:
    if not value or "'" in name or "'" in value:
        return None
    found = client.search_model_versions(f"name = '{name}' and {key} = '{value}'")
    return str(max(int(mv.version) for mv in found)) if found else None


def artifact_id(manifest: Mapping[str, Any]) -> str:
    """What identifies a written artifact (its manifest is never rewritten)."""
    parts = (manifest.get("version"), manifest.get("created_at"), manifest.get("train_seconds"))
    return ":".join(str(part) for part in parts)


def version_info(client: MlflowClient, version: ModelVersion) -> VersionInfo:
    """The version's gate metric and dataset fingerprint, read from its run."""
    from mlflow.exceptions import MlflowException

    try:
        data = client.get_run(version.run_id).data if version.run_id else None
    except MlflowException:
        data = None
    fingerprint = version.tags.get(FINGERPRINT_TAG) or (
        data.tags.get(FINGERPRINT_TAG) if data else None
    )
    ndcg = data.metrics.get(GATE_METRIC) if data else None
    return VersionInfo(str(version.version), version.run_id, ndcg, fingerprint)


def get_version(client: MlflowClient, name: str, version: str = "latest") -> ModelVersion:
    """Version ``version`` of ``name``; ``latest`` is the highest version number."""
    if "'" in name:
        raise TrackingError(f"invalid model name {name!r}")
    if version != "latest":
        return client.get_model_version(name, version)
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise TrackingError(
            f"no versions of registered model {name!r} in {display_uri(client.tracking_uri)}"
        )
    return max(versions, key=lambda mv: int(mv.version))


def alias_version(client: MlflowClient, name: str, alias: str = CHAMPION) -> ModelVersion | None:
    """The version holding ``alias``, or ``None`` when no version holds it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _move_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)
    key = f"{alias}_history"
    history = client.get_registered_model(name).tags.get(key, "")
    entries = [*filter(None, history.split(",")), version][-HISTORY_KEEP:]
    client.set_registered_model_tag(name, key, ",".join(entries))


def promote(
    name: str = DEFAULT_MODEL_NAME,
    version: str = "latest",
    margin: float | None = None,
    force: bool = False,
    *,
    alias: str = CHAMPION,
    client: MlflowClient | None = None,
    judge: Judge | None = None,
) -> Decision:
    """Move ``alias`` to ``version`` if it passes the gate (or ``force``); say why.

    :func:`gate` settles the plain cases (no champion, already champion, no metric, another
    dataset); ``judge`` (the paired gate: per-user values of both versions on the same test
    users, see :mod:`musicrec.loop.gating`) decides on a candidate and a different champion
    when it answers. ``force`` moves the alias without asking either.
    """
    client = client or get_client()
    evidence = None
    with mlflow_errors(f"promoting {name} version {version}"):
        candidate = version_info(client, get_version(client, name, version))
        current = alias_version(client, name, alias)
        champion = version_info(client, current) if current else None
        ok, reason = gate(candidate, champion, margin or 0.0)
        judged = None
        if judge and champion and champion.version != candidate.version and not force:
            judged = judge(candidate, champion)
        if judged is not None:
            ok, reason, evidence = judged
        if not ok and force and not (champion and champion.version == candidate.version):
            ok, reason = True, f"forced past the gate: {reason}"
        if ok:
            if champion is not None:
                client.set_model_version_tag(
                    name, candidate.version, f"previous_{alias}", champion.version
                )
            _move_alias(client, name, alias, candidate.version)
    if evidence is not None:
        from musicrec.tracking.gating import record_gate

        record_gate(client, name, candidate.version, candidate.run_id, evidence, ok)
    return Decision(name, candidate, champion, ok, reason, evidence)


def comparable(candidate: VersionInfo, champion: VersionInfo | None) -> bool:
    """Two versions evaluated on the same dataset, both with the gate metric: the paired gate
    compares their logged per-user values (the plain rules decide the rest)."""
    return (
        champion is not None
        and champion.version != candidate.version
        and candidate.ndcg is not None
        and champion.ndcg is not None
        and candidate.fingerprint == champion.fingerprint
    )


def rollback(
    name: str = DEFAULT_MODEL_NAME, *, alias: str = CHAMPION, client: MlflowClient | None = None
) -> Decision:
    """Move ``alias`` back to the version it replaced (the champion's ``previous_<alias>`` tag)."""
    client = client or get_client()
    with mlflow_errors(f"rolling back {name}@{alias}"):
        current = alias_version(client, name, alias)
        if current is None:
            raise TrackingError(f"{name} has no {alias} to roll back")
        previous = current.tags.get(f"previous_{alias}")
        if not previous:
            raise TrackingError(
                f"{name} version {current.version} has no previous {alias} recorded"
            )
        target = version_info(client, client.get_model_version(name, previous))
        _move_alias(client, name, alias, target.version)
    reason = f"rolled back from version {current.version} to version {target.version}"
    return Decision(name, target, version_info(client, current), True, reason)


def model_cache_dir() -> Path:
    """``$MUSICREC_MODEL_CACHE``, else ``$XDG_CACHE_HOME/musicrec/models`` (``~/.cache``)."""
    if os.environ.get("MUSICREC_MODEL_CACHE"):
        return Path(os.environ["MUSICREC_MODEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "musicrec" / "models"


def resolve_model(uri: str) -> Path:
    """Local artifact directory of ``models:/name@alias`` or ``models:/name/version``.

    Downloaded once per version into :func:`model_cache_dir` and checked with
    :meth:`ModelArtifact.load` before it is used; later calls for that version hit the cache.
    """
    import mlflow.artifacts

    from musicrec.models.artifact import ModelArtifact

    match = _MODEL_URI.match(uri)
    if match is None:
        raise TrackingError(f"{uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, number = match["name"], match["alias"], match["version"]
    store = tracking_uri()
    client = get_client(store)
    with mlflow_errors(f"resolving {uri}"):
        if (
            name == DEFAULT_MODEL_NAME
            and not _registered(client, name)
            and _registered(client, LEGACY_MODEL_NAME)
        ):
            legacy = uri.replace(f"/{name}", f"/{LEGACY_MODEL_NAME}", 1)
            raise TrackingError(
                f"no registered model {name!r} in {display_uri(store)}; this store "
                f"registers {LEGACY_MODEL_NAME!r} (older musicrec): use {legacy}"
            )
        found = alias_version(client, name, alias) if alias else get_version(client, name, number)
        if found is None:
            raise TrackingError(
                f"no version of {name} holds alias {alias!r} in {display_uri(store)}"
            )
    key = hashlib.sha256(f"{store}|{found.source}|{found.run_id}".encode()).hexdigest()[:12]
    target = model_cache_dir() / re.sub(r"[^\w.-]", "_", name) / f"v{found.version}-{key}"
    if (target / layout.MANIFEST).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with mlflow_errors(f"downloading {uri} (version {found.version})"):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=found.source, dst_path=str(staging), tracking_uri=store
            )
        ModelArtifact.load(local)  # refuse an incomplete or foreign directory
        try:
            os.replace(local, target)
        except OSError:
            if not (target / layout.MANIFEST).exists():  # not a concurrent download
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_path(model: str) -> Path:
    """A local artifact directory for ``model``: a path, or a registry URI resolved here."""
    if not model.startswith(REGISTRY_SCHEME):
        return Path(model)
    try:
        return resolve_model(model)
    except (MusicrecError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot resolve {model}: {exc}") from exc
