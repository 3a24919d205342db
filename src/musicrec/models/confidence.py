"""The one place that turns play counts into ALS confidence weights.

Every engine (implicit, Spark) and the new-listener fold-in call :func:`confidence` (one row:
:func:`row_confidence`, the same arithmetic), and
each passes ``alpha=1`` to its solver: plays are weighted once and scaled once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig


def bm25_weight(
    plays: Any,
    item_total: Any,
    mean_item_total: float,
    log1p_degree: Any,
    n_items: int,
    k1: float,
    b: float,
) -> Any:
    """BM25 weight of one (listener, artist) cell, before ``alpha``.

    Artists are documents (length: total plays ``item_total``), listeners are terms
    (idf from ``log1p_degree``, the log1p of how many artists the listener played).
    Pure arithmetic on ndarrays or Spark SQL columns alike, so :func:`confidence` and
    :mod:`musicrec.models.spark_als` evaluate the same expression.
    """
    length_norm = (1.0 - b) + b * item_total / mean_item_total
    idf = math.log(n_items) - log1p_degree
    return plays * (k1 + 1.0) / (k1 * length_norm + plays) * idf


def item_totals(user_items: sp.csr_matrix) -> np.ndarray:
    """Total plays per item: the BM25 document length, kept with the model for fold-in."""
    return np.asarray(user_items.sum(axis=0), dtype=np.float64).ravel()


def confidence(
    user_items: sp.csr_matrix, config: TrainConfig, totals: np.ndarray | None = None
) -> sp.csr_matrix:
    """Users x items confidence ``alpha * weight(plays)`` as float32 CSR.

    ``bm25`` treats artists as documents and listeners as terms, the weighting of
    implicit's ``bm25_weight`` applied to the items x users matrix as in its examples.
    ``totals`` (per-item play sums) defaults to this matrix's; a new listener's row passes
    the training matrix's so it is weighted exactly like the rows the model was fit on.
    """
    out = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    out.sum_duplicates()
    if config.weighting == "log1p":
        out.data = np.log1p(out.data)
    elif config.weighting == "bm25":
        totals = item_totals(out) if totals is None else np.asarray(totals, dtype=np.float64)
        degree = np.diff(out.indptr)  # artists per listener
        rows = np.repeat(np.arange(out.shape[0]), degree)
        out.data = bm25_weight(
            out.data,
            totals[out.indices],
            float(totals.mean()),
            np.log1p(degree)[rows],
            len(totals),
            config.bm25_k1,
            config.bm25_b,
        )
    out.data *= config.alpha
    return out.astype(np.float32)


def row_confidence(
    items: np.ndarray,
    plays: np.ndarray,
    config: TrainConfig,
    totals: np.ndarray,
    mean_total: float,
) -> np.ndarray:
    """:func:`confidence` of one listener's row given as arrays (sorted, distinct ``items``).

    The same arithmetic without building a matrix: what serving pays per request. ``totals``
    and ``mean_total`` are the training matrix's per-item play sums and their mean.
    """
    data = np.asarray(plays, dtype=np.float64)
    if config.weighting == "log1p":
        data = np.log1p(data)
    elif config.weighting == "bm25":
        data = bm25_weight(
            data,
            totals[items],
            mean_total,
            np.log1p(np.float64(len(items))),
            len(totals),
            config.bm25_k1,
            config.bm25_b,
        )
    else:
        data = data.copy()
    data *= config.alpha
    return data.astype(np.float32)
