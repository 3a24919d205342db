"""The one train -> evaluate sequence, over a dataset already in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.pipeline.observer import StageObserver

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
    *,
    extra: Mapping[str, Any] | None = None,
    build_index: bool = False,
) -> tuple[TrainResult, Report]:
    """Fit ``config`` on ``dataset``, evaluate it on the test split, write it with its metrics.

    One observed stage: the observer's run holds the training, then the evaluation, then ends.
    """
    from musicrec.pipeline.train import Evaluation, train_model

    _, result = train_model(
        dataset,
        out_dir,
        config,
        observer=observer,
        extra=extra,
        build_index=build_index,
        evaluation=Evaluation(tuple(ks), tuple(baselines)),
    )
    assert result.report is not None
    return result, result.report
