"""What a stage tells whoever watches it: start, each sweep, metrics, the model, the end.

Stages call an observer; they never know what it does. MLflow tracking is one observer
(:class:`musicrec.tracking.MlflowObserver`); the default does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol


class StageObserver(Protocol):
    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """A stage begins with these parameters and tags."""

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        """A training sweep ended (``loss`` is NaN when not computed)."""

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Numbers the stage measured."""

    def on_model(self, model_dir: Path, fingerprint: str, losses: list[float]) -> None:
        """A complete model artifact was written."""

    def on_evaluation(self, model_dir: Path, report: Mapping[str, Any]) -> None:
        """A model was evaluated; ``report`` is ``Report.to_dict()``."""

    def on_end(self, failed: bool) -> None:
        """The stage finished (``failed``: it raised)."""


class NullObserver:
    """Watches nothing."""

    def on_start(self, stage: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        return None

    def on_iteration(self, step: int, seconds: float, loss: float) -> None:
        return None

    def on_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
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
