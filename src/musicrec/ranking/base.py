"""The ranking contract shared by evaluation, tuning and baselines.

``rank(users, k, exclude)`` returns a ``(len(users), k)`` array of item ids per user, best
first, never an item in that user's row of ``exclude`` (the training matrix), padded with
``-1`` when fewer than ``k`` items are left. ``rank_scored`` returns the scores beside the ids
(``-inf`` in padded slots). Every model kind and every baseline keeps it; the contract test
suite (``tests/contracts``) holds them to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from musicrec.models.base import Model


class Ranker(Protocol):
    name: str

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray: ...


class ModelRanker:
    """A trained model as a :class:`Ranker`: users' histories come from ``user_items``."""

    def __init__(self, model: Model, user_items: sp.csr_matrix, name: str | None = None):
        self.model = model
        self.user_items = sp.csr_matrix(user_items)
        self.name = name or model.kind

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        return self.rank_scored(users, k, exclude)[0]

    def rank_scored(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.model.recommend(users, self.user_items[users], k, exclude=exclude)
