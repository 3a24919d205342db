"""Baselines as models: popularity (most listeners first) and uniformly random unplayed items.

They keep the same contract, are evaluated, saved and served like any kind, and have no files
of their own: both are recomputed from the artifact's training matrix when loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.models.base import IterationCallback, Model
from musicrec.models.query import Query
from musicrec.models.topk import PAD, one_row, own_rows, padded, topk_dense, unpadded


class PopularityModel(Model):
    """Same score order for every user: distinct training listeners; seen items skipped."""

    kind = "popularity"
    exact_explanations = False  # the score does not come from the history

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.listeners = np.empty(0, dtype=np.float32)  # distinct training listeners per item

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        counts = np.bincount(user_items.indices, minlength=user_items.shape[1])
        self.listeners = counts.astype(np.float32)

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.listeners, (user_items.shape[0], self.n_items)).copy()

    def _rank(
        self,
        users: np.ndarray | None,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Popularity order per row, skipping excluded items: no dense scores."""
        assert self.popularity is not None
        scores, order, n = self.listeners, self.popularity, user_items.shape[0]
        seen = np.diff(exclude.indptr)
        n_candidates = min(len(order), k + int(seen.max(initial=0)))
        candidates = np.broadcast_to(order[:n_candidates], (n, n_candidates))
        blocked = np.asarray(exclude[np.arange(n)[:, None], candidates].todense()) != 0
        # Stable sort puts unblocked candidates first, in popularity order.
        pick = np.argsort(blocked, axis=1, kind="stable")[:, :k]
        found = np.take_along_axis(candidates, pick, axis=1).astype(np.int64)
        valid = ~np.take_along_axis(blocked, pick, axis=1)
        ids, out = padded(n, k)
        ids[:, : found.shape[1]] = np.where(valid, found, PAD)
        out[:, : found.shape[1]] = np.where(valid, scores[found], -np.inf)
        return ids, out

    def _rank_history(
        self, query: Query, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        exclude = one_row(banned, self.n_items)
        return unpadded(self._rank(None, exclude, k, exclude))

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The most listened other items, for every item alike."""
        items = np.asarray(items, dtype=np.int64)
        own = own_rows(items, self.n_items)
        return self._rank(None, own, k, own)

    def save(self, directory: Path) -> None:
        return None

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> Model:
        return cls(config).fit(user_items)


class RandomModel(Model):
    """Uniformly random unseen items: the floor every model must clear.

    A batch's scores are drawn from a generator seeded by ``(seed, first user)``, so one batch
    ranks the same every time.
    """

    kind = "random"
    exact_explanations = False

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        return None

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        first = int(users[0]) if users is not None and len(users) else 0
        rng = np.random.default_rng([self.config.seed, first])
        return rng.random((user_items.shape[0], self.n_items), dtype=np.float32)

    def _rank(
        self,
        users: np.ndarray | None,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One generator for the whole batch (drawn row block by row block: the same numbers)."""
        first = int(users[0]) if users is not None and len(users) else 0
        rng = np.random.default_rng([self.config.seed, first])
        ids, out = [], []
        step = max(1, (1 << 25) // max(1, self.n_items))
        for start in range(0, user_items.shape[0], step):
            end = min(user_items.shape[0], start + step)
            scores = rng.random((end - start, self.n_items), dtype=np.float32)
            block_ids, block_scores = topk_dense(scores, k, exclude[start:end])
            ids.append(block_ids)
            out.append(block_scores)
        if not ids:
            return padded(0, k)
        return np.concatenate(ids), np.concatenate(out)

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        items = np.asarray(items, dtype=np.int64)
        own = own_rows(items, self.n_items)
        return self._rank(items, own, k, own)

    def save(self, directory: Path) -> None:
        return None

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> Model:
        return cls(config).fit(user_items)
