"""The one train -> evaluate sequence, over a dataset already in memory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.pipeline.observer import NullObserver, StageObserver

if TYPE_CHECKING:
    from musicrec.pipeline.evaluate import Report
    from musicrec.pipeline.train import TrainResult


def train_and_evaluate(
    dataset: Dataset,
    out_dir: str | Path,
    config: TrainConfig,
    observer: StageObserver | None = None,
    ks: Sequence[int] = (10, 20),
    baselines: Sequence[str] = ("popularity",),
) -> tuple[TrainResult, Report]:
    """Fit and save ``config`` on ``dataset``, evaluate it on the test split, record metrics."""
    from musicrec.pipeline.evaluate import evaluate_dataset, record_metrics
    from musicrec.pipeline.train import train_model

    observer = observer or NullObserver()
    model, result = train_model(dataset, out_dir, config, observer=observer)
    report = evaluate_dataset(dataset, model, ks, baselines)
    record_metrics(out_dir, report)
    observer.on_evaluation(Path(out_dir), report.to_dict())
    return result, report
