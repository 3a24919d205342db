"""A model kind that is not shipped: how many files adding one takes (this one, one line).

Co-occurrence counts: ``S[i, j]`` = listeners who played both ``i`` and ``j``, the ``neighbours``
largest per item. Everything else (ranking, fold-in, explanations, storage, serving, tuning's
search space) comes from the item-item base class and :class:`~musicrec.models.base.Model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.models.itemitem import ItemItemModel, _keep_top

SPEC_PARAMS = ("neighbours", "weighting", "alpha", "bm25_k1", "bm25_b")


class CooccurrenceModel(ItemItemModel):
    kind = "cooccurrence"
    searched = ("neighbours",)

    def _learn(self, weighted: sp.csr_matrix, show_progress: bool) -> sp.csr_matrix:
        played = sp.csr_matrix((weighted > 0).astype(np.float32))
        counts = (played.T @ played).toarray()
        np.fill_diagonal(counts, 0.0)
        return sp.csr_matrix(_keep_top(counts, min(self.config.neighbours, counts.shape[1])))

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        return f"cooccurrence-k{config.neighbours}"

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        return start.override(neighbours=trial.suggest_int("cooccurrence.neighbours", 5, 500))
