"""Item similarity for diversity: cosine of item vectors (a model's factors or embeddings)."""

from __future__ import annotations

import numpy as np

from musicrec.rules.inputs import Similarity


def cosine(vectors: np.ndarray, unit: bool = False) -> Similarity:
    """Pairwise cosine (float32) of rows of ``vectors`` (items x dims; memory-mapped works).

    Norms are computed once here (skipped when the rows are already ``unit`` length); each
    call then costs one small matrix product. A zero vector is similar to nothing (0) but
    itself (1). Values may stray past +-1 by float rounding.
    """
    inverse: np.ndarray | None = None
    vectors = np.asarray(vectors)  # a memory map as a plain array view: cheaper to index
    if not unit:
        norms = np.linalg.norm(np.asarray(vectors, dtype=np.float32), axis=1)
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    def pairwise(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.asarray(np.take(vectors, ids, axis=0), dtype=np.float32)
        if inverse is not None:
            rows = rows * inverse[ids, None]
        sim: np.ndarray = rows @ rows.T
        np.fill_diagonal(sim, 1.0)
        return sim

    return pairwise
