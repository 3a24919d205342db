"""The one place that turns play counts into ALS confidence weights.

Every engine (implicit, Spark) and the new-listener fold-in call :func:`confidence`, and
each passes ``alpha=1`` to its solver: plays are weighted once and scaled once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig


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
        n_docs = len(totals)
        idf = np.log(n_docs) - np.log1p(np.diff(out.indptr))  # per listener
        length_norm = (1.0 - config.bm25_b) + config.bm25_b * totals / totals.mean()
        k1 = config.bm25_k1
        rows = np.repeat(np.arange(out.shape[0]), np.diff(out.indptr))
        out.data = out.data * (k1 + 1.0) / (k1 * length_norm[out.indices] + out.data) * idf[rows]
    out.data *= config.alpha
    return out.astype(np.float32)
