"""The chain over a batch of model rankings, as evaluation needs it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from musicrec.rules.chain import apply_rules
from musicrec.rules.inputs import NEUTRAL, Candidates, Dials, ItemMeta, ListenerState, Similarity

# (row, n) -> the top n of that row's ranking, for rows whose candidates run dry.
RowDeeper = Callable[[int, int], Candidates]


def rerank_rows(
    ids: np.ndarray,
    scores: np.ndarray,
    played: sp.csr_matrix,
    k: int,
    *,
    meta: ItemMeta,
    popularity: np.ndarray,
    dials: Dials = NEUTRAL,
    similarity: Similarity | None = None,
    deeper: RowDeeper | None = None,
    now: float = 0.0,
    mmr_pool: int | None = None,
) -> np.ndarray:
    """``(n, k)`` item indices, ``-1`` padded, from the model's over-fetched ``(n, m)`` rankings.

    Row ``r`` of ``played`` (raw plays) is that listener's history: the items they play (for
    ``familiar_share``, heaviest first) and the ones never listed as new.
    """
    ids = np.atleast_2d(np.asarray(ids, dtype=np.int64))
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    played = sp.csr_matrix(played)
    if ids.shape != scores.shape or played.shape[0] != ids.shape[0]:
        raise ValueError(
            f"ids {ids.shape}, scores {scores.shape} and played rows {played.shape[0]} disagree"
        )
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row in range(len(ids)):
        start, end = played.indptr[row], played.indptr[row + 1]
        listener = ListenerState.of(played.indices[start:end], played.data[start:end])
        row_deeper = None
        if deeper is not None:
            row_deeper = _bind(deeper, row)
        result = apply_rules(
            Candidates.of(ids[row], scores[row]),
            k,
            meta=meta,
            popularity=popularity,
            now=now,
            listener=listener,
            dials=dials,
            deeper=row_deeper,
            similarity=similarity,
            mmr_pool=mmr_pool,
        )
        out[row, : len(result)] = result.ids
    return out


def _bind(deeper: RowDeeper, row: int) -> Callable[[int], Candidates]:
    return lambda n: deeper(row, n)
