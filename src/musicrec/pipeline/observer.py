"""What a stage tells whoever watches it: start, each sweep, metrics, the model, the end.

Stages call an observer; they never know what it does. MLflow tracking is one observer
(:class:`musicrec.tracking.MlflowObserver`); the default does nothing. A search (tune, grid)
hands each trial a ``child`` observer, so trials nest under the search's own record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

if TYPE_CHECKING:
    from musicrec.data.dataset import Dataset


class StageObserver(Protocol):
    @property
    def run_id(self) -> str | None:
        """The id of the record this observer writes (``None``: it writes none)."""

    def labels(self) -> Mapping[str, Any]:
        """Where the running stage is recorded, for the manifest of what the stage writes."""

    def child(self, name: str) -> StageObserver:
        """An observer of a stage nested in this one (a trial of a search)."""

    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """A stage begins with these parameters and tags."""

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        """A training sweep ended (``loss`` is NaN when not computed)."""

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Numbers the stage measured."""

    def on_tags(self, tags: Mapping[str, str]) -> None:
        """Facts the stage learnt (a trial's state, the best kind)."""

    def on_artifact(self, path: Path) -> None:
        """A file the stage wrote (a search's best config)."""

    def on_model(self, model_dir: Path, fingerprint: str, losses: list[float]) -> None:
        """A complete model artifact was written."""

    def on_evaluation(self, model_dir: Path, report: Mapping[str, Any]) -> None:
        """A model was evaluated; ``report`` is ``Report.to_dict()``."""

    def on_end(self, failed: bool) -> None:
        """The stage finished (``failed``: it raised)."""


class NullObserver:
    """Watches nothing."""

    @property
    def run_id(self) -> str | None:
        return None

    def labels(self) -> Mapping[str, Any]:
        return {}

    def child(self, name: str) -> NullObserver:
        return self

    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        return None

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        return None

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        return None

    def on_tags(self, tags: Mapping[str, str]) -> None:
        return None

    def on_artifact(self, path: Path) -> None:
        return None

    def on_model(self, model_dir: Path, fingerprint: str, losses: list[float]) -> None:
        return None

    def on_evaluation(self, model_dir: Path, report: Mapping[str, Any]) -> None:
        return None

    def on_end(self, failed: bool) -> None:
        return None


@contextmanager
def observing(
    observer: StageObserver, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[StageObserver]:
    """``on_start`` now, ``on_end`` when the block exits (``failed`` if it raised)."""
    observer.on_start(stage, params, tags)
    try:
        yield observer
    except BaseException:
        observer.on_end(failed=True)
        raise
    observer.on_end(failed=False)


def dataset_tags(dataset: Dataset) -> dict[str, str]:
    """Tags every stage on ``dataset`` announces; ``dataset_fingerprint`` is the data version."""
    return {
        "dataset_fingerprint": dataset.fingerprint,
        "data_source": str(dataset.meta.get("source")),
    }


def dataset_params(dataset: Dataset) -> dict[str, Any]:
    """The dataset's identity and size as stage params (prefix ``dataset.``)."""
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
