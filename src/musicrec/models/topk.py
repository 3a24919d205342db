"""Top-k selection under the one ranking contract every model kind (baselines too) keeps.

The contract: for each query row, ``k`` item ids best first, never an excluded item; when
fewer than ``k`` items are left to rank, the missing slots are padded explicitly with id
``-1`` and score ``-inf`` (:func:`padded`; :func:`unpadded` strips it for one row). Items a model
scores as zero are still candidates (ranked after the positive ones), so a list is only ever
shorter than ``k`` when the catalogue runs out.

Two selections, one per shape of scores: :func:`topk_dense` for dense rows and
:func:`rank_candidates` for one row of scored candidates (sparse scores), which fills the rest
of the list from a fallback order.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = -1


def padded(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` empty rankings of length ``k``: ids ``-1``, scores ``-inf`` (the one padding)."""
    return (
        np.full((n, k), PAD, dtype=np.int64),
        np.full((n, k), -np.inf, dtype=np.float32),
    )


def unpadded(ranking: tuple[np.ndarray, np.ndarray], row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One row of a ranking without its padding."""
    ids, scores = ranking
    keep = ids[row] >= 0
    return ids[row][keep], scores[row][keep]


def one_row(ids: np.ndarray, n_items: int) -> sp.csr_matrix:
    """A ``1 x n_items`` indicator row of ``ids`` (an exclusion row)."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    return sp.csr_matrix(
        (np.ones(len(ids), dtype=np.float32), ids, [0, len(ids)]), shape=(1, n_items)
    )


def own_rows(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """``len(items) x n_items``, row ``i`` marking ``items[i]``: keeps a query item out of its
    own similar items."""
    items = np.asarray(items, dtype=np.int64)
    rows = np.arange(len(items) + 1)
    return sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), items, rows), (len(items), n_items)
    )


def checked_rows(matrix: sp.csr_matrix, n_rows: int, n_items: int) -> sp.csr_matrix:
    """``matrix`` as CSR after checking its shape at the public boundary of a model."""
    matrix = sp.csr_matrix(matrix)
    if matrix.shape[0] != n_rows:
        raise ValueError(
            f"user_items must contain 1 row for every user ({n_rows}), got {matrix.shape[0]}"
        )
    if matrix.shape[1] != n_items:
        raise ValueError(f"user_items must have {n_items} columns, got {matrix.shape[1]}")
    return matrix


def topk_dense(
    scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns per row of a dense score matrix, excluded cells never returned.

    ``scores`` is modified in place (excluded cells set to ``-inf``).
    """
    n, n_items = scores.shape
    ids, out = padded(n, k)
    if n == 0 or k <= 0:
        return ids, out
    if exclude is not None and exclude.nnz:
        rows, cols = exclude.nonzero()
        scores[rows, cols] = -np.inf
    take = min(k, n_items)
    top = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < n_items else None
    if top is None:
        top = np.broadcast_to(np.arange(n_items), (n, n_items))
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    valid = np.isfinite(top_scores)
    ids[:, :take] = np.where(valid, top, PAD)
    out[:, :take] = np.where(valid, top_scores, -np.inf)
    return ids, out


def rank_candidates(
    candidates: np.ndarray,
    scores: np.ndarray,
    k: int,
    banned: np.ndarray,
    fallback: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One row's top-``k`` from scored ``candidates`` (distinct ids); the rest are unscored.

    Positive scores come first (best first, ties by id). Unscored and zero-score items follow
    with score 0 in ``fallback`` order (every item id, e.g. most listened first), then negative
    scores, as a dense ranking of the same row would order them. ``banned`` never appears.
    """
    ids = np.full(k, PAD, dtype=np.int64)
    out = np.full(k, -np.inf, dtype=np.float32)
    allowed = ~np.isin(candidates, banned)
    negative = allowed & (scores < 0)
    neg_cand, neg_score = candidates[negative], scores[negative]
    keep = allowed & (scores > 0)
    candidates, scores = candidates[keep], scores[keep]
    top = np.lexsort((candidates, -scores))[:k]
    at = len(top)
    ids[:at], out[:at] = candidates[top], scores[top]
    if at < k:
        taken = np.concatenate([banned, candidates[top], neg_cand])
        rest = fallback[~np.isin(fallback, taken)][: k - at]
        ids[at : at + len(rest)], out[at : at + len(rest)] = rest, 0.0
        at += len(rest)
    if at < k and len(neg_cand):
        order = np.lexsort((neg_cand, -neg_score))[: k - at]
        ids[at : at + len(order)], out[at : at + len(order)] = neg_cand[order], neg_score[order]
    return ids, out


def topk_sparse(
    scores: sp.csr_matrix,
    k: int,
    exclude: sp.csr_matrix | None,
    fallback: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` per row of a sparse score matrix (:func:`rank_candidates` on each row)."""
    scores = sp.csr_matrix(scores, dtype=np.float32)
    scores.sum_duplicates()
    n = scores.shape[0]
    ids, out = padded(n, k)
    if k <= 0:
        return ids, out
    none = np.empty(0, dtype=np.int64)
    for row in range(n):
        lo, hi = scores.indptr[row], scores.indptr[row + 1]
        banned = none
        if exclude is not None:
            banned = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
        ids[row], out[row] = rank_candidates(
            scores.indices[lo:hi].astype(np.int64), scores.data[lo:hi], k, banned, fallback
        )
    return ids, out


def check_ranking(ids: np.ndarray, scores: np.ndarray, exclude: sp.csr_matrix | None) -> None:
    """Raise ``AssertionError`` when ``(ids, scores)`` break the ranking contract."""
    assert ids.shape == scores.shape
    for row in range(ids.shape[0]):
        real = ids[row] >= 0
        n_real = int(real.sum())
        assert real[:n_real].all(), "padding must come last"
        assert np.all(np.isneginf(scores[row, n_real:])), "padding scores must be -inf"
        assert len(set(ids[row, :n_real].tolist())) == n_real, "duplicate items"
        assert np.all(np.diff(scores[row, :n_real]) <= 1e-6), "scores must be best first"
        if exclude is not None:
            banned = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
            assert not np.isin(ids[row, :n_real], banned).any(), "excluded item returned"
