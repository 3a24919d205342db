"""Item-item similarity on Spark: the Gram product summed over user shards, top-K on the executors.

``itemknn`` and ``rp3beta`` both learn ``S = top_K(post(Lᵀ R))``, where ``L`` and ``R`` are
users x items matrices whose cells depend on one (listener, artist) cell, that listener's own
row and per-artist totals, and ``post`` scales rows and columns by per-artist vectors:

==============  ==========================  ==========================  ======================
kind            ``L`` cell                  ``R`` cell                  ``post(G)[i, j]``
==============  ==========================  ==========================  ======================
itemknn cosine  ``w``                       ``w``                       ``G / (‖wᵢ‖ ‖wⱼ‖)``
itemknn tfidf   ``√w · idf(user)``          same                        ``G / (‖vᵢ‖ ‖vⱼ‖)``
itemknn bm25    ``bm25(w, artist, user)``   same                        ``G``
rp3beta         ``(w / Σ_users w)^α``       ``(w / Σ_artists w)^α``     ``G · popⱼ^-β``
==============  ==========================  ==========================  ======================

``Lᵀ R = Σ_shards L_sᵀ R_s`` over any split of the listeners, so: the cells are weighted and
transformed in Spark SQL (the same :func:`~musicrec.models.spark_als.weighted_ratings` as ALS,
the same formulas as implicit's ``nearest_neighbours`` and :class:`~musicrec.models.itemitem.
RP3BetaModel`), repartitioned by listener, each partition multiplies its own sparse
``L_sᵀ R_s`` with scipy and emits it cut into blocks of artist rows, the blocks are summed by
key, and each summed block is scaled and cut to its rows' top-K on the executor that holds it.
Only the top-K lists (artists x K) reach the driver. Executors run Python with numpy and scipy
(``spark.pyspark.python``); musicrec itself need not be installed there (the shard functions are
shipped by value).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError
from musicrec.models.spark_als import read_ratings, spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

KINDS = ("itemknn", "rp3beta")
BLOCK_ROWS = 2048  # artist rows per block of the summed Gram product
SHARD_CELLS = 200_000  # at most this many (listener, artist) cells per user shard


def spark_similarity(
    dataset: Dataset,
    config: TrainConfig,
    master: str | None = None,
    *,
    train_uri: str | None = None,
    conf: Mapping[str, str] | None = None,
) -> sp.csr_matrix:
    """The ``itemknn`` or ``rp3beta`` similarity ``S`` of ``config``, computed on Spark.

    It equals the one :meth:`~musicrec.models.base.Model.fit` learns on this machine (up to
    floating-point summation order, and the choice among neighbours tied at the K-th place);
    :meth:`musicrec.models.itemitem.ItemItemModel.fit_dataset` adopts it (engine ``spark``).
    """
    if config.kind not in KINDS:
        raise ConfigError(
            f"engine 'spark' fits als, {', '.join(KINDS)}; not {config.kind!r} (use engine "
            "implicit)"
        )
    uri = train_uri or str(dataset.path.resolve() / layout.TRAIN)
    with spark_session(master, conf) as spark:
        ratings, n_ratings = read_ratings(spark, uri, config, dataset.shape)
        try:
            log.info("Spark %s on %s: %d cells", config.kind, spark.sparkContext.master, n_ratings)
            return similarity(spark, ratings, config, dataset.shape[1], n_ratings)
        finally:
            ratings.unpersist()


def similarity(
    spark: SparkSession,
    ratings: DataFrame,
    config: TrainConfig,
    n_items: int,
    n_ratings: int,
) -> sp.csr_matrix:
    """The kind's top-K similarity from ``user_idx, item_idx, rating`` (weighted) cells."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # executors need no musicrec
    cells, spec = transformed_cells(ratings, config, n_items)
    shards = max(spark.sparkContext.defaultParallelism, math.ceil(n_ratings / SHARD_CELLS))
    n_blocks = math.ceil(n_items / BLOCK_ROWS)
    shared = spark.sparkContext.broadcast(spec)  # per-artist vectors, sent once per executor
    rows = cells.repartition(shards, "user_idx").select("user_idx", "item_idx", "left", "right")
    try:
        blocks = (
            rows.rdd.mapPartitions(lambda part: shard_gram(part, n_items, BLOCK_ROWS))
            .reduceByKey(lambda a, b: a + b, numPartitions=max(1, min(n_blocks, shards)))
            .map(lambda kv: (kv[0], finish_block(kv[0], kv[1], shared.value, BLOCK_ROWS)))
            .collect()
        )
    finally:
        shared.unpersist()
    found = dict(blocks)
    parts = []
    for block in range(n_blocks):
        height = min(BLOCK_ROWS, n_items - block * BLOCK_ROWS)
        parts.append(found.get(block, sp.csr_matrix((height, n_items), dtype=np.float32)))
    return sp.csr_matrix(sp.vstack(parts, format="csr"), dtype=np.float32)


def transformed_cells(
    ratings: DataFrame, config: TrainConfig, n_items: int
) -> tuple[DataFrame, dict[str, Any]]:
    """Cells with ``left`` / ``right`` values, and what :func:`finish_block` needs."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = F.col("rating")  # float32, as the numpy path's confidence matrix
    by_user = Window.partitionBy("user_idx")
    degree = F.count(F.lit(1)).over(by_user)  # artists per listener
    idf = F.lit(math.log(n_items)) - F.log1p(degree)
    spec: dict[str, Any] = {"kind": config.kind, "n_items": n_items}
    if config.kind == "rp3beta":
        alpha = config.rp3_alpha
        totals = ratings.groupBy("item_idx").agg(
            F.sum(w.cast("double")).alias("item_total"),
            F.count(F.when(w > 0, 1)).alias("listeners"),
        )
        listeners = _dense(totals, "listeners", n_items)
        spec["penalty"] = np.power(np.maximum(listeners, 1.0), -config.rp3_beta).astype(np.float32)
        spec["k"] = min(config.neighbours, n_items - 1) if n_items > 1 else 1
        user_total = F.sum(w.cast("double")).over(by_user)
        cells = ratings.join(totals.select("item_idx", "item_total"), "item_idx").select(
            "user_idx",
            "item_idx",
            F.pow(w * (F.lit(1.0) / F.col("item_total")), alpha).alias("left"),
            F.pow(w * (F.lit(1.0) / user_total), alpha).alias("right"),
        )
        return cells, spec
    spec["k"] = min(config.neighbours, n_items)
    if config.similarity == "bm25":  # artists are documents, listeners terms
        k1, b = config.bm25_k1, config.bm25_b
        sums = ratings.groupBy("item_idx").agg(F.sum(w).alias("row_sum"))
        mean = float(sums.agg(F.sum("row_sum")).first()[0] or 0.0) / n_items  # type: ignore[index]
        length_norm = F.lit(1.0 - b) + F.lit(b) * F.col("row_sum") / F.lit(mean)
        value = (w * F.lit(k1 + 1.0).cast("float")) / (F.lit(k1) * length_norm + w) * idf
        cells = ratings.join(sums, "item_idx").withColumn("v", value)
    elif config.similarity == "tfidf":
        cells = ratings.withColumn("v", F.sqrt(w).cast("float").cast("double") * idf)
    else:  # cosine: squares in float32, as implicit's normalize does
        cells = ratings.withColumn("v", w.cast("double"))
    if config.similarity in ("cosine", "tfidf"):
        square = (w * w) if config.similarity == "cosine" else F.col("v") * F.col("v")
        norms2 = cells.groupBy("item_idx").agg(F.sum(square.cast("double")).alias("n2"))
        norm = np.sqrt(_dense(norms2, "n2", n_items))
        spec["scale"] = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    cells = cells.select(
        "user_idx", "item_idx", F.col("v").alias("left"), F.col("v").alias("right")
    )
    return cells, spec


def _dense(frame: DataFrame, column: str, n_items: int) -> np.ndarray:
    """A per-artist aggregate as a float64 vector over the whole catalogue (0 where absent)."""
    out = np.zeros(n_items, dtype=np.float64)
    for row in frame.select("item_idx", column).collect():
        out[int(row[0])] = float(row[1])
    return out


# ------------------------------------------------------------------ run on the executors


def shard_gram(
    rows: Iterable[Any], n_items: int, block_rows: int
) -> Iterator[tuple[int, sp.csr_matrix]]:
    """One user shard's ``L_sᵀ R_s``, cut into blocks of ``block_rows`` artist rows."""
    users, items, left, right = [], [], [], []
    for row in rows:
        users.append(row[0])
        items.append(row[1])
        left.append(row[2])
        right.append(row[3])
    if not users:
        return
    local, user_rows = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
    shape = (len(local), n_items)
    cols = np.asarray(items, dtype=np.int64)
    lmat = sp.csr_matrix((np.asarray(left, dtype=np.float64), (user_rows, cols)), shape=shape)
    rmat = sp.csr_matrix((np.asarray(right, dtype=np.float64), (user_rows, cols)), shape=shape)
    product = sp.csr_matrix(lmat.T @ rmat)
    for block in range(math.ceil(n_items / block_rows)):
        part = product[block * block_rows : (block + 1) * block_rows]
        if part.nnz:
            yield block, part


def finish_block(
    block: int, gram: sp.csr_matrix, spec: dict[str, Any], block_rows: int
) -> sp.csr_matrix:
    """Scale one summed block of artist rows and keep each row's top-K, as the numpy path."""
    gram = sp.csr_matrix(gram)
    gram.sum_duplicates()
    first = block * block_rows
    rows = np.repeat(np.arange(gram.shape[0]), np.diff(gram.indptr))
    cols = gram.indices
    if spec["kind"] == "rp3beta":
        values = gram.data.astype(np.float32) * spec["penalty"][cols]
        values[cols == rows + first] = 0.0  # no walk back to the same artist
    elif "scale" in spec:
        values = gram.data * spec["scale"][rows + first] * spec["scale"][cols]
    else:
        values = gram.data.copy()
    indptr = gram.indptr
    keep = np.zeros(len(values), dtype=bool)
    k = int(spec["k"])
    for row in range(gram.shape[0]):
        lo, hi = indptr[row], indptr[row + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:  # best first, lowest artist index among equals
            order = np.lexsort((cols[lo:hi], -values[lo:hi]))[:k]
            keep[lo + order] = True
    out_rows, out_cols, out_values = rows[keep], cols[keep], values[keep].astype(np.float32)
    if spec["kind"] == "rp3beta":
        positive = out_values > 0
    else:  # itemknn keeps the artist itself among its K, then drops it
        positive = (out_cols != out_rows + first) & (out_values != 0)
    return sp.csr_matrix(
        (out_values[positive], (out_rows[positive], out_cols[positive])),
        shape=gram.shape,
        dtype=np.float32,
    )
