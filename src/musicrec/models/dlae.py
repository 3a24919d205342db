"""DLAE: the closed-form linear autoencoder trained with dropout (Steck, NeurIPS 2020).

"Autoencoders that don't overfit towards the identity": item-item weights
``B = (G + L)^-1 G`` with ``G = X'X`` and ``L = l2 + dropout / (1 - dropout) * diag(G)``, the
exact solution of a linear autoencoder whose input entries are dropped with probability
``dropout``. Unlike EASE it keeps no zero-diagonal constraint; the dropout penalty grows with an
item's popularity instead, which is what keeps ``B`` away from the identity.

Only a square matrix of the smaller side is ever inverted, so a catalogue far larger than its
listeners (HetRec Last.fm-2K: 1,892 listeners, 17,632 artists) costs a 1,892 x 1,892 inverse:

- items <= users (primal): ``P = (G + L)^-1`` (items x items); ``h B = h - (h P) * L``;
- users < items (dual, Woodbury): ``M = I + X L^-1 X'`` (users x users);
  ``h B = ((h / L) X') M^-1 X``.

Both give the same scores. The inverse and ``L`` are saved as ``dlae_inverse.npy`` and
``dlae_penalty.npy``; ``X`` is the artifact's training matrix, weighted again at load. An
explanation is exact: the terms ``weight[h] * B[h, j]``, with only the history's rows of ``B``
formed. The search space (``suggest``) is ``l2`` on a log scale, ``dropout`` and the weighting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from musicrec.config import WEIGHTINGS, TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.base import IterationCallback, Model
from musicrec.models.itemitem import check_ease_memory
from musicrec.models.query import Query
from musicrec.models.topk import own_rows, topk_dense

INVERSE = "dlae_inverse.npy"
PENALTY = "dlae_penalty.npy"
L2 = (1.0, 1e4)  # search range, log scale
DROPOUT = (0.0, 0.8)


class DLAEModel(Model):
    """Linear autoencoder with dropout; scores ``weights(history) @ B`` without forming ``B``."""

    kind = "dlae"
    searched: ClassVar[tuple[str, ...]] = ("l2", "dropout", "weighting")

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.inverse = np.zeros((0, 0), dtype=np.float32)
        self.penalty = np.zeros(0, dtype=np.float32)
        self.weighted = sp.csr_matrix((0, 0), dtype=np.float32)

    @property
    def dual(self) -> bool:
        """Whether the inverse is users x users (fewer listeners than items)."""
        return self.weighted.shape[0] < self.weighted.shape[1]

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        x = sp.csr_matrix(self.weights(user_items), dtype=np.float64)
        self.weighted = x.astype(np.float32)
        check_ease_memory(min(x.shape))
        dropout = self.config.dropout
        gram_diag = np.asarray(x.multiply(x).sum(axis=0)).ravel()
        penalty = self.config.l2 + dropout / (1.0 - dropout) * gram_diag
        if self.dual:
            scaled = x @ sp.diags(1.0 / penalty)
            system = np.asarray((scaled @ x.T).toarray(), dtype=np.float64)
            system[np.diag_indices_from(system)] += 1.0
        else:
            system = np.asarray((x.T @ x).toarray(), dtype=np.float64)
            system[np.diag_indices_from(system)] += penalty
        self.inverse = _spd_inverse(system).astype(np.float32)
        self.penalty = penalty.astype(np.float32)

    def _scores_of(self, weighted: sp.csr_matrix) -> np.ndarray:
        """``weighted @ B`` for rows of already weighted plays."""
        with threadpool_limits(limits=1, user_api="blas"):
            if self.dual:
                left = ((weighted @ sp.diags(1.0 / self.penalty)) @ self.weighted.T).toarray()
                right = left @ self.inverse
                return np.asarray((self.weighted.T @ right.T).T, dtype=np.float32)
            projected = np.asarray(weighted @ self.inverse)
            return np.asarray(weighted.toarray() - projected * self.penalty, dtype=np.float32)

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        return self._scores_of(sp.csr_matrix(self.weights(user_items), dtype=np.float32))

    def rows(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``B[history][:, items]`` (float32), without forming the rest of ``B``."""
        history = np.asarray(history, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if self.dual:
            columns = sp.csr_matrix(self.weighted.T)
            left = columns[history].toarray() / self.penalty[history, None]  # (h, users)
            right = self.inverse @ columns[items].toarray().T  # (users, items)
            return np.asarray(left @ right, dtype=np.float32)
        block = -self.inverse[np.ix_(history, items)] * self.penalty[items]
        block += history[:, None] == items[None, :]
        return np.asarray(block, dtype=np.float32)

    def contributions(self, query: Query, items: np.ndarray, exact: bool = False) -> np.ndarray:
        """The exact terms ``weight[h] * B[h, item]`` of each score."""
        return self.rows(query.items, items) * query.weights[:, None]

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``B``: the items an item's presence in a history raises most."""
        items = np.asarray(items, dtype=np.int64)
        own = own_rows(items, self.n_items)
        return topk_dense(self._scores_of(own), k, own)

    def save(self, directory: Path) -> None:
        np.save(directory / INVERSE, self.inverse)
        np.save(directory / PENALTY, self.penalty)

    @classmethod
    def files(cls, config: TrainConfig) -> tuple[str, ...]:
        return (INVERSE, PENALTY)

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> Model:
        model = cls(config)
        model._remember(sp.csr_matrix(user_items, dtype=np.float32))
        model.weighted = sp.csr_matrix(model.weights(user_items), dtype=np.float32)
        model.inverse = np.load(directory / INVERSE, allow_pickle=False)
        model.penalty = np.load(directory / PENALTY, allow_pickle=False)
        side = min(model.weighted.shape)
        if model.inverse.shape != (side, side) or model.penalty.shape != (user_items.shape[1],):
            raise ConfigError(
                f"{directory}: DLAE files do not match the training matrix {user_items.shape}"
            )
        return model

    def describe(self) -> dict[str, Any]:
        return {"form": "dual" if self.dual else "primal", "inverse_side": len(self.inverse)}

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        return f"dlae-l{config.l2:g}-p{config.dropout:.2g}"

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        """One point of the search space (an Optuna trial); ``start`` gives the rest."""
        weighting = trial.suggest_categorical(cls.trial_name("weighting"), list(WEIGHTINGS))
        return start.override(
            l2=trial.suggest_float("l2", *L2, log=True),
            dropout=trial.suggest_float("dropout", *DROPOUT),
            weighting=weighting,
        )


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix (Cholesky), full and symmetric."""
    from scipy.linalg import cho_factor, cho_solve

    try:
        factor = cho_factor(matrix, lower=False, overwrite_a=False)
    except np.linalg.LinAlgError as exc:
        raise ConfigError(f"DLAE: the system is not positive definite ({exc}); raise l2") from exc
    return np.asarray(cho_solve(factor, np.eye(len(matrix))))
