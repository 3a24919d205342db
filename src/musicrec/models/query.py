"""What one listener asks a model: their history and, where the kind has one, a query vector.

A :class:`Query` is made by the model (:meth:`~musicrec.models.base.Model.user_query` for a
known user, :meth:`~musicrec.models.base.Model.fold_in` for plays the model has not seen,
:meth:`~musicrec.models.base.Model.direction_query` for a mood) and only read back by it
(``rank``, ``blend``, ``explain``): consumers never look inside, so a factor model and an
item-item model answer through the same calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMPTY_IDS = np.empty(0, dtype=np.int64)
EMPTY_VALUES = np.empty(0, dtype=np.float32)


@dataclass(frozen=True)
class Query:
    """One listener's history (sorted, distinct item ids) and the model's view of it.

    ``plays`` are the raw plays of ``items``; ``weights`` their confidence under the model's
    own weighting (what explanations rank by). ``vector`` is the query in the model's space: a
    user vector for factor models, a dense score row once a score-space query was blended;
    ``None`` means the model scores ``items`` itself when it ranks. ``user`` is the row of a
    user the model was trained on, if any. A listener's history is never recommended back to
    them (``excludes_history``); a mood's defining artists may be.
    """

    items: np.ndarray
    plays: np.ndarray
    weights: np.ndarray
    vector: np.ndarray | None = None
    user: int | None = None
    excludes_history: bool = True

    @classmethod
    def of_vector(cls, vector: np.ndarray) -> Query:
        """A query that is only a direction (a mood in factor space): no history."""
        return cls(EMPTY_IDS, EMPTY_VALUES, EMPTY_VALUES, np.asarray(vector, dtype=np.float32))

    @classmethod
    def of_items(cls, items: np.ndarray, weights: np.ndarray) -> Query:
        """Items with given weights, nothing solved: what an explanation is asked about."""
        items = np.asarray(items, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float32)
        return cls(items, weights, weights, None, None, False)


def canonical_plays(items: np.ndarray, plays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``items`` with the plays of repeated ids summed (float32)."""
    items = np.asarray(items, dtype=np.int64)
    plays = np.asarray(plays, dtype=np.float64)
    unique, where = np.unique(items, return_inverse=True)
    summed = np.bincount(where, weights=plays, minlength=len(unique)).astype(np.float32)
    return unique, summed


def unit_max(scores: np.ndarray) -> np.ndarray:
    """Rows divided by their largest absolute value (zero rows stay zero)."""
    top = np.abs(scores).max(axis=-1, keepdims=True)
    return np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their Euclidean norm (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
