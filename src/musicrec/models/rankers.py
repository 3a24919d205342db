"""Batch rankers behind one interface: ALS factors, popularity and random.

``rank(users, k, exclude)`` returns the top-``k`` item indices per user, best first, never
an item in that user's row of ``exclude`` (the training matrix). The evaluator and the
benchmarks only see this interface.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
from implicit.cpu.topk import topk
from threadpoolctl import threadpool_limits


class Ranker(Protocol):
    name: str

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray: ...


class FactorRanker:
    """Exact inner-product ranking, ``user_factors[u] @ item_factors.T``, in parallel blocks."""

    name = "als"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, n_threads: int = 0):
        self.user_factors = user_factors
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.n_threads = n_threads

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        query = np.ascontiguousarray(self.user_factors[users], dtype=np.float32)
        # implicit splits the work over its own threads; a threaded BLAS inside each of them
        # oversubscribes the cores (measured: ~10x slower on 2 cores).
        with threadpool_limits(limits=1, user_api="blas"):
            ids, _ = topk(
                self.item_factors,
                query,
                k,
                filter_query_items=sp.csr_matrix(exclude, dtype=np.float32),
                num_threads=self.n_threads,
            )
        return np.asarray(ids)


class StaticRanker:
    """Same score order for every user (popularity); seen items are skipped per user."""

    def __init__(self, scores: np.ndarray, name: str):
        self.order = np.argsort(-scores, kind="stable").astype(np.int32)
        self.name = name

    @classmethod
    def popularity(cls, train: sp.csr_matrix) -> StaticRanker:
        """Rank artists by number of distinct training listeners."""
        listeners = np.bincount(train.indices, minlength=train.shape[1])
        return cls(listeners.astype(np.float64), "popularity")

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        seen = np.diff(exclude.indptr)
        n_candidates = min(len(self.order), k + int(seen.max(initial=0)))
        candidates = np.broadcast_to(self.order[:n_candidates], (len(users), n_candidates))
        rows = np.arange(len(users))[:, None]
        blocked = np.asarray(exclude[rows, candidates].todense()) != 0
        # Stable sort puts unblocked candidates first, in popularity order.
        pick = np.argsort(blocked, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(candidates, pick, axis=1)


class RandomRanker:
    """Uniformly random unseen items: the floor every model must clear."""

    name = "random"

    def __init__(self, n_items: int, seed: int = 0):
        self.n_items = n_items
        self.seed = seed

    def rank(self, users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(users[0]) if len(users) else 0])
        scores = rng.random((len(users), self.n_items), dtype=np.float32)
        scores[exclude.nonzero()] = -1.0
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)
