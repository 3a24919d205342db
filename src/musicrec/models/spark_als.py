"""Spark MLlib ALS: train on a cluster (or ``local[*]``), return the same factor arrays as implicit.

The training split is read with ``spark.read.parquet`` and weighted with Spark SQL using the
expressions of :mod:`musicrec.models.confidence`, so nothing but the final factors passes
through the driver's Python process. The factors come back in our ``user_idx`` / ``item_idx``
order; :meth:`musicrec.models.als.ALSModel.fit_dataset` adopts them (engine ``spark``).

Two semantic differences from implicit are bridged here (details in ``docs/spark.md``):

- Confidence. implicit uses the stored weight ``w`` as the confidence (``c = w``); Spark uses
  ``c = 1 + alpha * r``. We pass ``r = w`` with ``alpha = 1``, so Spark's confidence is ``1 + w``.
- Regularization. Spark multiplies ``regParam`` by each row's number of ratings (ALS-WR);
  implicit does not. :func:`spark_reg_param` maps ``regularization`` to ``regParam``.

Session handling: an already active ``SparkSession`` (a notebook, ``spark-submit``, a test
fixture) is used as is and left running; otherwise one is started for the fit and stopped after.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError, DataError
from musicrec.models.base import IterationCallback
from musicrec.models.confidence import bm25_weight
from musicrec.models.factors import Factors

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
APP_NAME = "musicrec-als"
# Spark ALS checkpoints its lineage every this many iterations (needs a checkpoint dir);
# without it, long runs overflow the JVM stack.
CHECKPOINT_INTERVAL = 10
# Local mode only: share of physical memory given to the driver JVM, and its bounds in GiB.
DRIVER_MEMORY_SHARE = 0.5
DRIVER_MEMORY_GIB = (1, 16)


def spark_reg_param(regularization: float, n_ratings: int, n_users: int) -> float:
    """Spark ``regParam`` for implicit's ``regularization``.

    Spark's per-row penalty is ``regParam * n_ratings(row)``; dividing by the mean number of
    ratings per user gives the average listener implicit's penalty.
    """
    mean_per_user = n_ratings / max(n_users, 1)
    return regularization / mean_per_user if mean_per_user > 0 else regularization


def _require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "engine 'spark' needs pyspark: pip install 'musicrec[spark]' (and a Java 17+ runtime)"
        ) from exc


def _require_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise ConfigError(
            "engine 'spark' needs a Java 17+ runtime: install one (Debian: default-jre-headless, "
            "or scripts/install-os-deps.sh) or set JAVA_HOME"
        )


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[") or master.startswith("local-cluster")


def _local_driver_memory() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return f"{DRIVER_MEMORY_GIB[0] * 4}g"
    low, high = DRIVER_MEMORY_GIB
    return f"{int(min(high, max(low, total * DRIVER_MEMORY_SHARE / 2**30)))}g"


def default_conf(master: str) -> dict[str, str]:
    """Settings for a session we start; cluster masters keep their own sizing defaults."""
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if is_local(master):
        cores = os.cpu_count() or 2
        conf.update(
            {
                "spark.driver.memory": _local_driver_memory(),
                "spark.sql.shuffle.partitions": str(max(4, 2 * cores)),
                "spark.ui.enabled": "false",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
            }
        )
    return conf


@contextmanager
def spark_session(
    master: str | None = None, conf: Mapping[str, str] | None = None
) -> Iterator[SparkSession]:
    """The active session if there is one (left running), else a new one stopped on exit."""
    _require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        running = active.sparkContext.master
        if master is not None and master != running:
            log.warning("using the active Spark session on %s, not %s", running, master)
        yield active
        return
    _require_java()
    master = master or DEFAULT_MASTER
    builder = SparkSession.builder.master(master).appName(APP_NAME)
    for key, value in {**default_conf(master), **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        yield spark
    finally:
        spark.stop()


@contextmanager
def _checkpointing(spark: SparkSession, checkpoint_dir: str | None) -> Iterator[None]:
    """Make sure ALS can checkpoint; a temporary local directory is removed afterwards."""
    context = spark.sparkContext
    if checkpoint_dir is not None:
        context.setCheckpointDir(checkpoint_dir)
        yield
        return
    current = context.getCheckpointDir()
    if current is not None and not _missing_local_dir(current):
        yield
        return
    if not is_local(context.master or ""):
        log.warning(
            "no Spark checkpoint directory on shared storage; pass checkpoint_dir (e.g. an "
            "hdfs:// or s3a:// path) for long runs on %s",
            context.master,
        )
    tmp = tempfile.mkdtemp(prefix="musicrec-spark-checkpoint-")
    context.setCheckpointDir(tmp)
    try:
        yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _missing_local_dir(uri: str) -> bool:
    path = uri.removeprefix("file:")
    return "://" not in uri.removeprefix("file://") and not os.path.isdir(path)


def weighted_ratings(frame: DataFrame, config: TrainConfig, n_items: int) -> DataFrame:
    """``user_idx, item_idx, rating``: :func:`musicrec.models.confidence.confidence` in Spark SQL.

    Duplicate (user, item) rows are summed first, as the CSR matrix does.
    """
    from pyspark.sql import functions as F

    cells = frame.groupBy("user_idx", "item_idx").agg(
        F.sum(F.col("plays").cast("double")).alias("plays")
    )
    plays: Column = F.col("plays")
    if config.weighting == "none":
        weight = plays
    elif config.weighting == "log1p":
        weight = F.log1p(plays)
    elif config.weighting == "bm25":
        totals = cells.groupBy("item_idx").agg(F.sum("plays").alias("item_total"))
        degrees = cells.groupBy("user_idx").agg(F.count(F.lit(1)).alias("degree"))
        total_plays = cells.agg(F.sum("plays")).first()[0] or 0.0  # type: ignore[index]
        cells = cells.join(totals, "item_idx").join(degrees, "user_idx")
        weight = bm25_weight(
            plays,
            F.col("item_total"),
            float(total_plays) / n_items,  # mean over the whole catalogue, as in numpy
            F.log1p(F.col("degree")),
            n_items,
            config.bm25_k1,
            config.bm25_b,
        )
    else:  # TrainConfig validates; this guards future weightings
        raise ConfigError(f"weighting {config.weighting!r} has no Spark implementation")
    return cells.select(
        F.col("user_idx").cast("int"),
        F.col("item_idx").cast("int"),
        (weight * config.alpha).cast("float").alias("rating"),
    )


def to_numpy(factors: DataFrame, n_rows: int, rank: int, what: str) -> np.ndarray:
    """Spark's ``id, features`` factor table as a float32 array in ``id`` order; absent ids -> 0."""
    with warnings.catch_warnings():
        # pyspark's pandas version check warns about pandas 3; ids and float arrays are fine.
        warnings.filterwarnings("ignore", message=".*pandas >= 3", category=FutureWarning)
        frame = cast("pd.DataFrame", factors.select("id", "features").toPandas())
    out = np.zeros((n_rows, rank), dtype=np.float32)
    if frame.empty:
        return out
    ids = frame["id"].to_numpy(dtype=np.int64)
    if ids.min() < 0 or ids.max() >= n_rows:
        raise DataError(f"Spark returned {what} ids outside 0..{n_rows - 1}")
    out[ids] = np.stack(frame["features"].tolist()).astype(np.float32)
    return out


def fit_spark(
    dataset: Dataset,
    config: TrainConfig,
    master: str | None = None,
    callback: IterationCallback | None = None,
    *,
    train_uri: str | None = None,
    checkpoint_dir: str | None = None,
    conf: Mapping[str, str] | None = None,
    reg_param: float | None = None,
) -> Factors:
    """Fit Spark MLlib ALS on the dataset's train split; factors in our index order.

    Args:
        dataset: the prepared dataset (its vocabularies fix the output shapes).
        config: hyperparameters; ``regularization`` is mapped with :func:`spark_reg_param`.
        master: Spark master URL (default ``local[*]``); ignored when a session is active.
        callback: called once, after the fit, as ``(iterations - 1, seconds, nan)``: Spark's
            ALS has no per-iteration hook.
        train_uri: where executors read ``train.parquet`` (e.g. ``hdfs://`` or ``s3a://``);
            defaults to the file in the dataset directory.
        checkpoint_dir: ALS checkpoint directory; on a cluster, shared storage.
        conf: extra Spark settings for a session started here.
        reg_param: Spark's ``regParam`` as is, instead of mapping ``config.regularization``.
    """
    n_users, n_items = dataset.shape
    uri = train_uri or str(dataset.path.resolve() / layout.TRAIN)
    started = time.perf_counter()
    with spark_session(master, conf) as spark, _checkpointing(spark, checkpoint_dir):
        ratings = _read_ratings(spark, uri, config, n_items).cache()
        try:
            n_ratings = _check_ratings(ratings, uri, n_users, n_items)
            if reg_param is None:
                reg_param = spark_reg_param(config.regularization, n_ratings, n_users)
            estimator = _estimator(spark, config, reg_param)
            log.info(
                "Spark ALS on %s: %d ratings, regParam %.3g, %d blocks",
                spark.sparkContext.master,
                n_ratings,
                reg_param,
                estimator.getNumUserBlocks(),
            )
            model = estimator.fit(ratings)
            user_factors = to_numpy(model.userFactors, n_users, config.factors, "user")
            item_factors = to_numpy(model.itemFactors, n_items, config.factors, "item")
        finally:
            ratings.unpersist()
    seconds = time.perf_counter() - started
    if callback is not None:
        callback(config.iterations - 1, seconds, math.nan)
    return Factors(user_factors=user_factors, item_factors=item_factors, loss_history=[])


def _read_ratings(spark: SparkSession, uri: str, config: TrainConfig, n_items: int) -> DataFrame:
    """The training split at ``uri`` as weighted ratings (one-line error when unreadable)."""
    from pyspark.errors import AnalysisException

    try:
        frame = spark.read.parquet(uri)
    except AnalysisException as exc:
        raise DataError(f"{uri}: Spark cannot read the training split ({exc})") from exc
    return weighted_ratings(frame, config, n_items)


def _check_ratings(ratings: DataFrame, uri: str, n_users: int, n_items: int) -> int:
    """How many ratings there are; refuse none, or indices outside the dataset's shape."""
    from pyspark.sql import functions as F

    n_ratings = ratings.count()
    if n_ratings == 0:
        raise DataError(f"{uri}: no training interactions")
    low_u, high_u, low_i, high_i = ratings.agg(
        F.min("user_idx"), F.max("user_idx"), F.min("item_idx"), F.max("item_idx")
    ).first()  # type: ignore[misc]
    if low_u < 0 or low_i < 0 or high_u >= n_users or high_i >= n_items:
        raise DataError(f"{uri}: indices outside the dataset's {n_users}x{n_items} shape")
    return int(n_ratings)


def _estimator(spark: SparkSession, config: TrainConfig, reg_param: float) -> Any:
    """Spark's implicit-feedback ALS for ``config``, blocked for the session's parallelism."""
    from pyspark.ml.recommendation import ALS

    blocks = max(
        2 if is_local(spark.sparkContext.master or "") else 10,
        spark.sparkContext.defaultParallelism,
    )
    return ALS(
        rank=config.factors,
        maxIter=config.iterations,
        regParam=reg_param,
        implicitPrefs=True,
        alpha=1.0,  # confidence is already scaled by musicrec.models.confidence
        nonnegative=False,
        seed=config.seed,
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="rating",
        coldStartStrategy="drop",
        checkpointInterval=CHECKPOINT_INTERVAL,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
    )
