"""Train stage: a model of any kind fitted on a dataset, and the artifact directory written.

The stage that writes the directory is the only one that writes its manifest: where the
observer records the run (its labels), the evaluation when the stage evaluates
(:func:`musicrec.pipeline.sequence.train_and_evaluate`) and the caller's ``extra`` facts go into
the manifest when the directory is written, once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.fsutil import check_replaceable
from musicrec.models.artifact import save_artifact
from musicrec.models.base import IterationCallback, Model
from musicrec.models.kinds import build
from musicrec.pipeline.observer import (
    NullObserver,
    StageObserver,
    dataset_params,
    dataset_tags,
    observing,
)

if TYPE_CHECKING:
    from musicrec.pipeline.evaluate import Report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    seconds: float
    loss_history: list[float]
    config: TrainConfig
    fingerprint: str
    report: Report | None = None  # when the stage evaluated the model before writing it


@dataclass(frozen=True)
class Evaluation:
    """Evaluate the fitted model before it is written (its metrics go into the manifest)."""

    ks: Sequence[int] = (10, 20)
    baselines: Sequence[str] = ("popularity",)


def train_model(
    dataset: Dataset,
    out_dir: str | Path,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
    observer: StageObserver | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
    build_index: bool = False,
    evaluation: Evaluation | None = None,
) -> tuple[Model, TrainResult]:
    """Fit on an already loaded dataset and write the artifact to ``out_dir``.

    ``observer`` sees the stage start, every sweep, the final numbers, the saved model and,
    with ``evaluation``, the evaluation (also stored in the manifest), all before the stage
    ends. ``extra`` facts go into the manifest; ``build_index`` saves the model's index too.
    """
    from musicrec.pipeline.evaluate import evaluate_dataset

    out_dir = Path(out_dir)
    check_replaceable(out_dir, layout.MANIFEST)  # before fitting, not after
    observer = observer or NullObserver()
    model = build(config)
    tags = {"stage": "train", "kind": config.kind, "engine": model.engine} | dataset_tags(dataset)

    def on_iteration(step: int, seconds: float, loss: float) -> None:
        observer.on_iteration(step, seconds, loss)
        if callback is not None:
            callback(step, seconds, loss)

    with observing(observer, "train", config.to_dict() | dataset_params(dataset), tags):
        started = time.perf_counter()
        model.fit_dataset(dataset, on_iteration, show_progress, cluster=spark_master)
        seconds = time.perf_counter() - started
        report = None
        if evaluation is not None:
            report = evaluate_dataset(dataset, model, evaluation.ks, evaluation.baselines)
        facts = {"train_seconds": round(seconds, 3), "loss_history": model.loss_history}
        facts |= dict(observer.labels()) | dict(extra or {})
        if report is not None:
            facts["metrics"] = report.to_dict()
        save_artifact(
            out_dir,
            model=model,
            dataset=dataset,
            engine=model.engine,
            params=config.to_dict(),
            extra=facts,
            build_index=build_index,
        )
        log.info("trained %s in %.1fs -> %s", config.kind, seconds, out_dir)
        losses = [x for x in model.loss_history if not math.isnan(x)]
        final = {"train_seconds": seconds} | ({"final_loss": losses[-1]} if losses else {})
        observer.on_metrics(final)
        observer.on_model(out_dir, dataset.fingerprint, model.loss_history)
        if report is not None:
            if report.scores is not None:  # beside the manifest, not in the registered copy
                report.scores.save(out_dir / layout.USER_SCORES)
            observer.on_evaluation(out_dir, report.to_dict())
    result = TrainResult(out_dir, seconds, model.loss_history, config, dataset.fingerprint, report)
    return model, result


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
    observer: StageObserver | None = None,
) -> TrainResult:
    """Fit ``config`` (default: ALS) on ``data_dir``'s train split; write the artifact."""
    dataset = Dataset.load(data_dir)
    config = config or TrainConfig()
    return train_model(
        dataset, out_dir, config, callback, show_progress, spark_master, observer=observer
    )[1]
