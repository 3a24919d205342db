"""Top-k selection under the one ranking contract every model and baseline keeps.

The contract: for each query row, ``k`` item ids best first, never an excluded item; when
fewer than ``k`` items are left to rank, the missing slots are padded explicitly with id
``-1`` and score ``-inf``. Items a model scores as zero are still candidates (ranked after the
positive ones), so a list is only ever shorter than ``k`` when the catalogue runs out.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = -1


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.full((n, k), PAD, dtype=np.int64),
        np.full((n, k), -np.inf, dtype=np.float32),
    )


def topk_dense(
    scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns per row of a dense score matrix, excluded cells never returned.

    ``scores`` is modified in place (excluded cells set to ``-inf``).
    """
    n, n_items = scores.shape
    ids, out = _empty(n, k)
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


def topk_sparse(
    scores: sp.csr_matrix,
    k: int,
    exclude: sp.csr_matrix | None,
    fallback: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` per row of a sparse score matrix; unscored items rank after scored ones.

    Stored scores come first (best first). Rows with fewer than ``k`` eligible stored scores
    are filled, with score 0, from ``fallback`` (every item id, in tie-break order, e.g. most
    listened first), skipping excluded and already chosen items. Negative stored scores rank
    after the zero-score fill, as they would in a dense ranking.
    """
    scores = sp.csr_matrix(scores, dtype=np.float32)
    n = scores.shape[0]
    ids, out = _empty(n, k)
    if n == 0 or k <= 0:
        return ids, out
    if exclude is not None and exclude.nnz:
        blocked = sp.csr_matrix(
            (np.ones(exclude.nnz, dtype=np.float32), exclude.indices, exclude.indptr),
            shape=scores.shape,
        )
        keep = scores - scores.multiply(blocked)  # zero out excluded cells
        keep.eliminate_zeros()
        scores = sp.csr_matrix(keep)
    scores.eliminate_zeros()
    coo = scores.tocoo()
    positive = coo.data > 0
    rows, cols, vals = coo.row[positive], coo.col[positive], coo.data[positive]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(n))
    rank = np.arange(len(rows)) - starts[rows]
    top = rank < k
    ids[rows[top], rank[top]] = cols[top]
    out[rows[top], rank[top]] = vals[top]
    filled = np.bincount(rows[top], minlength=n)
    short = np.flatnonzero(filled < k)
    fallback_list = fallback.tolist() if len(short) else []
    for row in short:
        taken = set(ids[row, : filled[row]].tolist())
        if exclude is not None:
            taken.update(exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]].tolist())
        negatives = scores[row]
        negative_items = negatives.indices[negatives.data < 0]
        taken.update(negative_items.tolist())
        need = k - filled[row]
        fill = _first_missing(fallback_list, taken, need)
        ids[row, filled[row] : filled[row] + len(fill)] = fill
        out[row, filled[row] : filled[row] + len(fill)] = 0.0
        at = filled[row] + len(fill)
        if at < k and len(negative_items):
            neg_scores = negatives.data[negatives.data < 0]
            neg_order = np.argsort(-neg_scores, kind="stable")[: k - at]
            ids[row, at : at + len(neg_order)] = negative_items[neg_order]
            out[row, at : at + len(neg_order)] = neg_scores[neg_order]
    return ids, out


def _first_missing(order: list[int], taken: set[int], need: int) -> list[int]:
    found: list[int] = []
    if need <= 0:
        return found
    for item in order:
        if item not in taken:
            found.append(item)
            if len(found) == need:
                break
    return found


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
