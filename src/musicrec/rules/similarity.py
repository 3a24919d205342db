"""Item similarity for diversity: cosine of item vectors (a model's factors or embeddings)."""

from __future__ import annotations

import numpy as np

from musicrec.rules.inputs import Similarity


def cosine(vectors: np.ndarray) -> Similarity:
    """Pairwise cosine of rows of ``vectors`` (items x dims; memory-mapped arrays work).

    Norms are computed once here; each call then costs one small matrix product. A zero
    vector is similar to nothing (0) but itself (1).
    """
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float32), axis=1)
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    def pairwise(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        unit = np.asarray(vectors[ids], dtype=np.float32) * inverse[ids, None]
        sim = unit @ unit.T
        np.fill_diagonal(sim, 1.0)
        clipped: np.ndarray = np.clip(sim, -1.0, 1.0)
        return clipped

    return pairwise
