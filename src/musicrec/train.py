"""Train stage: prepared dataset -> model artifact directory."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.fsutil import check_replaceable
from musicrec.models.als import Factors, IterationCallback, fit_als
from musicrec.models.artifact import save_artifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    seconds: float
    loss_history: list[float]
    config: TrainConfig
    fingerprint: str


def fit(
    dataset: Dataset,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
) -> Factors:
    """Fit the configured engine on the dataset's training matrix."""
    if config.engine == "spark":
        from musicrec.models.spark_als import fit_spark

        return fit_spark(dataset, config, master=spark_master, callback=callback)
    return fit_als(dataset.train, config, callback=callback, show_progress=show_progress)


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    spark_master: str | None = None,
) -> TrainResult:
    """Fit ALS on ``data_dir``'s train split and write the artifact to ``out_dir``."""
    config = config or TrainConfig()
    dataset = Dataset.load(data_dir)
    check_replaceable(out_dir, layout.MANIFEST)  # before fitting, not after
    started = time.perf_counter()
    factors = fit(dataset, config, callback, show_progress, spark_master)
    seconds = time.perf_counter() - started
    save_artifact(
        out_dir,
        user_factors=factors.user_factors,
        item_factors=factors.item_factors,
        dataset=dataset,
        engine=config.engine,
        params=config.to_dict(),
        extra={"train_seconds": round(seconds, 3), "loss_history": factors.loss_history},
    )
    log.info("trained %s in %.1fs -> %s", config.engine, seconds, out_dir)
    return TrainResult(Path(out_dir), seconds, factors.loss_history, config, dataset.fingerprint)
