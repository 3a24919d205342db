"""Baselines under the ranking contract: popularity and uniformly random unplayed items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from musicrec.models.topk import topk_dense


class StaticRanker:
    """Same score order for every user (popularity); seen items are skipped per user."""

    def __init__(self, scores: np.ndarray, name: str):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.order = np.argsort(-self.scores, kind="stable").astype(np.int64)
        self.name = name

    @classmethod
    def popularity(cls, train: sp.csr_matrix) -> StaticRanker:
        """Rank artists by number of distinct training listeners."""
        listeners = np.bincount(train.indices, minlength=train.shape[1])
        return cls(listeners.astype(np.float64), "popularity")

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        return self.rank_scored(users, k, exclude)[0]

    def rank_scored(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` per user; ``-1`` pads users with fewer than ``k`` unseen items."""
        seen = np.diff(exclude.indptr)
        n_candidates = min(len(self.order), k + int(seen.max(initial=0)))
        candidates = np.broadcast_to(self.order[:n_candidates], (len(users), n_candidates))
        rows = np.arange(len(users))[:, None]
        blocked = np.asarray(exclude[rows, candidates].todense()) != 0
        # Stable sort puts unblocked candidates first, in popularity order.
        pick = np.argsort(blocked, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(candidates, pick, axis=1).astype(np.int64)
        valid = ~np.take_along_axis(blocked, pick, axis=1)
        scores = np.where(valid, self.scores[ids], -np.inf).astype(np.float32)
        ids = np.where(valid, ids, -1)
        if ids.shape[1] < k:  # catalogue smaller than k
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids, scores


class RandomRanker:
    """Uniformly random unseen items: the floor every model must clear."""

    name = "random"

    def __init__(self, n_items: int, seed: int = 0):
        self.n_items = n_items
        self.seed = seed

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        return self.rank_scored(users, k, exclude)[0]

    def rank_scored(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(users[0]) if len(users) else 0])
        scores = rng.random((len(users), self.n_items), dtype=np.float32)
        return topk_dense(scores, k, sp.csr_matrix(exclude))
