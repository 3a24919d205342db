"""Train stage: a model of any kind fitted on a dataset, and the artifact directory written."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.fsutil import check_replaceable
from musicrec.models.artifact import save_artifact
from musicrec.models.base import IterationCallback, Model
from musicrec.models.registry import build
from musicrec.pipeline.observer import NullObserver, StageObserver, observing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    seconds: float
    loss_history: list[float]
    config: TrainConfig
    fingerprint: str


def fit_model(
    dataset: Dataset,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
    spark_checkpoint_dir: str | None = None,
) -> Model:
    """Fit ``config.kind`` on the dataset's training matrix (Spark reads the dataset itself)."""
    if config.engine == "spark":
        from musicrec.models.spark_engine import fit_on_spark

        return fit_on_spark(
            dataset, config, spark_master, callback, checkpoint_dir=spark_checkpoint_dir
        )
    return build(config).fit(dataset.train, callback=callback, show_progress=show_progress)


def engine_name(config: TrainConfig) -> str:
    """What fits the model: ``implicit`` / ``spark`` for ALS, ``spark`` or the kind otherwise."""
    return config.engine if config.kind == "als" or config.engine == "spark" else config.kind


def train_model(
    dataset: Dataset,
    out_dir: str | Path,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
    observer: StageObserver | None = None,
    spark_checkpoint_dir: str | None = None,
) -> tuple[Model, TrainResult]:
    """Fit on an already loaded dataset and write the artifact to ``out_dir``.

    ``observer`` sees the stage start, every sweep, the final numbers and the saved model.
    """
    check_replaceable(out_dir, layout.MANIFEST)  # before fitting, not after
    observer = observer or NullObserver()
    tags = {
        "stage": "train",
        "kind": config.kind,
        "engine": engine_name(config),
        "dataset_fingerprint": dataset.fingerprint,
        "data_source": str(dataset.meta.get("source")),
    }

    def on_iteration(step: int, seconds: float, loss: float) -> None:
        observer.on_iteration(step, seconds, loss)
        if callback is not None:
            callback(step, seconds, loss)

    with observing(observer, "train", config.to_dict(), tags):
        started = time.perf_counter()
        model = fit_model(
            dataset, config, on_iteration, show_progress, spark_master, spark_checkpoint_dir
        )
        seconds = time.perf_counter() - started
        save_artifact(
            out_dir,
            model=model,
            dataset=dataset,
            engine=engine_name(config),
            params=config.to_dict(),
            extra={"train_seconds": round(seconds, 3), "loss_history": model.loss_history},
        )
        log.info("trained %s in %.1fs -> %s", config.kind, seconds, out_dir)
        losses = [x for x in model.loss_history if not math.isnan(x)]
        final = {"train_seconds": seconds} | ({"final_loss": losses[-1]} if losses else {})
        observer.on_metrics(final)
        observer.on_model(Path(out_dir), dataset.fingerprint, model.loss_history)
    result = TrainResult(Path(out_dir), seconds, model.loss_history, config, dataset.fingerprint)
    return model, result


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
    spark_checkpoint_dir: str | None = None,
) -> TrainResult:
    """Fit ``config`` (default: ALS) on ``data_dir``'s train split; write the artifact."""
    dataset = Dataset.load(data_dir)
    config = config or TrainConfig()
    return train_model(
        dataset,
        out_dir,
        config,
        callback,
        show_progress,
        spark_master,
        spark_checkpoint_dir=spark_checkpoint_dir,
    )[1]
