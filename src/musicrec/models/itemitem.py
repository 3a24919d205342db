"""Item-item models: a similarity matrix ``S`` scores a history as ``weights(history) @ S``.

``S[i, j]`` is how much having played ``i`` recommends ``j``; row ``i`` holds ``i``'s
neighbours, so similar artists are a row lookup and an explanation is an exact sum of
``weights[h] * S[h, j]`` terms. The kinds differ only in how ``S`` is learned:

- ``itemknn``: implicit's nearest-neighbour models (cosine, BM25 or TF-IDF), top-K per item.
- ``rp3beta``: random walks item -> user -> item with popularity penalised by ``pop ** beta``.
- ``ease``: the closed-form linear autoencoder (Steck, 2019); ``S`` is dense.

Sparse ``S`` is saved as ``similarity.npz``, dense as ``similarity.npy``; no pickle.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from musicrec import layout
from musicrec.config import SIMILARITIES, WEIGHTINGS, TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError
from musicrec.models.base import IterationCallback, Model
from musicrec.models.query import Query
from musicrec.models.topk import (
    own_rows,
    padded,
    rank_candidates,
    topk_dense,
    topk_sparse,
    unpadded,
)

log = logging.getLogger(__name__)

EASE_BYTES_PER_CELL = 4 * 4  # float32 Gram matrix, its inverse, the symmetrised copy, the result
EASE_MEMORY_SHARE = 0.6  # of physical memory EASE may plan to use
RP3_BLOCK = 1024  # item rows per block of the random-walk product
# The search spaces (Optuna).
L2 = (20.0, 1e4)  # EASE, log scale
NEIGHBOURS = (10, 1000)  # itemknn / rp3beta, integer, log scale
RP3_ALPHA = (0.2, 1.5)
RP3_BETA = (0.0, 1.0)


class ItemItemModel(Model):
    """Shared scoring for every kind that learns an item x item matrix."""

    dense: bool = False

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.similarity: sp.csr_matrix | np.ndarray = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        self.similarity = self._learn(self.weights(user_items), show_progress)

    def _learn(self, weighted: sp.csr_matrix, show_progress: bool) -> Any:
        raise NotImplementedError

    @property
    def engine(self) -> str:
        return "spark" if self.config.engine == "spark" else self.kind

    @property
    def in_process(self) -> bool:
        return self.config.engine != "spark"

    def fit_dataset(
        self,
        dataset: Dataset,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
        cluster: str | None = None,
        checkpoint_dir: str | None = None,
    ) -> ItemItemModel:
        """In this process, or (engine ``spark``) ``S`` computed on Spark from the parquet split.

        Both give the same model (up to summation order and ties at the K-th neighbour); Spark
        needs no checkpoints for this.
        """
        if self.config.engine != "spark":
            self.fit(dataset.train, callback, show_progress)
            return self
        from musicrec.models.spark_itemitem import spark_similarity

        started = time.perf_counter()
        similarity = spark_similarity(dataset, self.config, cluster)
        self.loss_history = []
        self._remember(dataset.train)
        self.similarity = similarity
        if callback is not None:
            callback(0, time.perf_counter() - started, math.nan)
        return self

    def history_scores(self, weighted: sp.csr_matrix) -> sp.csr_matrix | np.ndarray:
        """``weighted @ S``: sparse for sparse ``S``, dense float32 for dense ``S``."""
        if self.dense:
            with threadpool_limits(limits=1, user_api="blas"):
                return np.asarray(weighted @ self.similarity, dtype=np.float32)
        return sp.csr_matrix(weighted @ self.similarity, dtype=np.float32)

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        result = self.history_scores(self.weights(user_items))
        return result if isinstance(result, np.ndarray) else result.toarray()

    def _rank(
        self,
        users: np.ndarray | None,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.dense:
            return super()._rank(users, user_items, k, exclude)
        n = user_items.shape[0]
        ids, scores = padded(n, k)
        weighted = self.weights(user_items)
        for row in range(n):  # plain numpy per row: no sparse product over the whole block
            lo, hi = weighted.indptr[row], weighted.indptr[row + 1]
            banned = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
            ids[row], scores[row] = self._rank_one(
                weighted.indices[lo:hi], weighted.data[lo:hi], k, banned
            )
        return ids, scores

    def _rank_one(
        self, history: np.ndarray, weights: np.ndarray, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One history's top-``k``: the ranking :func:`topk_sparse` gives for its row."""
        assert self.popularity is not None and isinstance(self.similarity, sp.csr_matrix)
        indptr, indices, data = (
            self.similarity.indptr,
            self.similarity.indices,
            self.similarity.data,
        )
        starts, ends = indptr[history], indptr[history + 1]
        lengths = ends - starts
        if lengths.sum():
            offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
            positions = np.arange(int(lengths.sum())) + offsets
            cols = indices[positions]
            vals = data[positions] * np.repeat(weights.astype(np.float32), lengths)
            order = np.argsort(cols, kind="stable")
            cols, vals = cols[order], vals[order]
            first = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
            cand, score = cols[first], np.add.reduceat(vals, first).astype(np.float32)
        else:
            cand = np.empty(0, dtype=np.int64)
            score = np.empty(0, dtype=np.float32)
        return rank_candidates(cand, score, k, banned, self.popularity)

    def _rank_history(
        self, query: Query, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.dense:
            return super()._rank_history(query, k, banned)
        ids, scores = self._rank_one(query.items, query.weights, k, banned)
        return unpadded((ids[None, :], scores[None, :]))

    def contributions(self, query: Query, items: np.ndarray, exact: bool = False) -> np.ndarray:
        """The exact terms ``weight[h] * S[h, item]`` of each score."""
        block = self.similarity[query.items][:, np.asarray(items, dtype=np.int64)]
        dense = block.toarray() if sp.issparse(block) else np.asarray(block)
        return np.asarray(dense, dtype=np.float32) * query.weights[:, None]

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        items = np.asarray(items, dtype=np.int64)
        own = own_rows(items, self.n_items)
        if self.dense:
            rows = np.array(self.similarity[items], dtype=np.float32)
            return topk_dense(rows, k, own)
        assert self.popularity is not None
        rows = sp.csr_matrix(self.similarity[items])
        return topk_sparse(rows, k, own, self.popularity)

    def save(self, directory: Path) -> None:
        if self.dense:
            np.save(directory / layout.SIMILARITY_DENSE, np.asarray(self.similarity, np.float32))
        else:
            sp.save_npz(directory / layout.SIMILARITY, sp.csr_matrix(self.similarity))

    @classmethod
    def files(cls, config: TrainConfig) -> tuple[str, ...]:
        return (layout.SIMILARITY_DENSE if cls.dense else layout.SIMILARITY,)

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> Model:
        model = cls(config)
        model._remember(user_items)
        if cls.dense:
            model.similarity = np.load(
                directory / layout.SIMILARITY_DENSE, mmap_mode="r", allow_pickle=False
            )
        else:
            model.similarity = sp.load_npz(directory / layout.SIMILARITY).tocsr()
        return model

    def describe(self) -> dict[str, Any]:
        if isinstance(self.similarity, np.ndarray):
            return {"similarity": "dense", "similarity_nnz": int(self.similarity.size)}
        return {"similarity": "sparse", "similarity_nnz": int(self.similarity.nnz)}


class ItemKNNModel(ItemItemModel):
    """implicit's item-item nearest neighbours (cosine, BM25 or TF-IDF), ``neighbours`` per item."""

    kind = "itemknn"
    searched = ("similarity", "neighbours", "weighting")

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        return f"itemknn-{config.similarity}-k{config.neighbours}"

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        weighting = trial.suggest_categorical(cls.trial_name("weighting"), list(WEIGHTINGS))
        return start.override(
            similarity=trial.suggest_categorical("similarity", list(SIMILARITIES)),
            neighbours=trial.suggest_int(cls.trial_name("neighbours"), *NEIGHBOURS, log=True),
            weighting=weighting,
        )

    def _learn(self, weighted: sp.csr_matrix, show_progress: bool) -> sp.csr_matrix:
        from implicit.nearest_neighbours import (
            BM25Recommender,
            CosineRecommender,
            TFIDFRecommender,
        )

        k = min(self.config.neighbours, weighted.shape[1])
        if self.config.similarity == "bm25":
            knn: Any = BM25Recommender(K=k, K1=self.config.bm25_k1, B=self.config.bm25_b)
        elif self.config.similarity == "tfidf":
            knn = TFIDFRecommender(K=k)
        else:
            knn = CosineRecommender(K=k)
        knn.fit(weighted, show_progress=show_progress)
        similarity = sp.csr_matrix(knn.similarity, dtype=np.float32)
        similarity.setdiag(0)  # an item never recommends itself
        similarity.eliminate_zeros()
        return similarity


class RP3BetaModel(ItemItemModel):
    """RP3beta (Paudel et al., 2017): item -> user -> item walks, popularity penalised."""

    kind = "rp3beta"
    searched = ("rp3_alpha", "rp3_beta", "neighbours", "weighting")

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        return f"rp3beta-a{config.rp3_alpha:.2g}-b{config.rp3_beta:.2g}-k{config.neighbours}"

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        weighting = trial.suggest_categorical(cls.trial_name("weighting"), list(WEIGHTINGS))
        return start.override(
            rp3_alpha=trial.suggest_float("rp3_alpha", *RP3_ALPHA),
            rp3_beta=trial.suggest_float("rp3_beta", *RP3_BETA),
            neighbours=trial.suggest_int(cls.trial_name("neighbours"), *NEIGHBOURS, log=True),
            weighting=weighting,
        )

    def _learn(self, weighted: sp.csr_matrix, show_progress: bool) -> sp.csr_matrix:
        from rich.progress import Progress

        alpha, beta = self.config.rp3_alpha, self.config.rp3_beta
        n_items = weighted.shape[1]
        user_item = _row_normalize(weighted)  # P(item | user)
        item_user = _row_normalize(sp.csr_matrix(weighted.T))  # P(user | item)
        user_item.data **= alpha
        item_user.data **= alpha
        popularity = np.asarray((weighted > 0).sum(axis=0), dtype=np.float64).ravel()
        penalty = np.power(np.maximum(popularity, 1.0), -beta).astype(np.float32)
        k = min(self.config.neighbours, n_items - 1) if n_items > 1 else 1
        blocks = []
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("RP3beta walks", total=n_items)
            for start in range(0, n_items, RP3_BLOCK):
                end = min(n_items, start + RP3_BLOCK)
                walk = (item_user[start:end] @ user_item).toarray().astype(np.float32)
                walk *= penalty[None, :]
                walk[np.arange(end - start), np.arange(start, end)] = 0.0
                blocks.append(_keep_top(walk, k))
                progress.advance(task, end - start)
        return sp.csr_matrix(sp.vstack(blocks), dtype=np.float32)


class EASEModel(ItemItemModel):
    """EASE^R (Steck, 2019): ``B = I - P / diag(P)`` with ``P = (X'X + l2 I)^-1``; dense."""

    kind = "ease"
    dense = True
    searched = ("l2", "weighting")

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        return f"ease-l{config.l2:g}"

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        weighting = trial.suggest_categorical(cls.trial_name("weighting"), list(WEIGHTINGS))
        return start.override(l2=trial.suggest_float("l2", *L2, log=True), weighting=weighting)

    def _learn(self, weighted: sp.csr_matrix, show_progress: bool) -> np.ndarray:
        from scipy.linalg import lapack

        check_ease_memory(weighted.shape[1])
        gram = np.asarray((weighted.T @ weighted).toarray(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += self.config.l2
        # Cholesky inverse of the symmetric positive definite Gram matrix: float32 first (a
        # third of the time of a float64 LU inverse), float64 when float32 loses definiteness.
        with threadpool_limits(limits=os.cpu_count() or 1, user_api="blas"):
            for potrf, potri, dtype in (
                (lapack.spotrf, lapack.spotri, np.float32),
                (lapack.dpotrf, lapack.dpotri, np.float64),
            ):
                factor, info = potrf(gram.astype(dtype), lower=False, overwrite_a=True)
                if info == 0:
                    inverse, info = potri(factor, lower=False, overwrite_c=True)
                if info == 0:
                    break
        if info != 0:
            raise ConfigError(
                f"EASE: the regularized Gram matrix is not positive definite (LAPACK info "
                f"{info}); raise l2 (now {self.config.l2:g})"
            )
        del gram, factor
        upper = np.triu(inverse)
        inverse = upper + np.triu(upper, 1).T
        weights = inverse / (-np.diag(inverse))
        weights[np.diag_indices_from(weights)] = 0.0
        return weights.astype(np.float32, copy=False)


def ease_memory_bytes(n_items: int) -> int:
    """Memory EASE plans for a catalogue of ``n_items`` (dense item x item matrices)."""
    return EASE_BYTES_PER_CELL * n_items * n_items


def physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_ease_memory(n_items: int, budget: int | None = None) -> None:
    """Refuse, with an estimate, a catalogue whose dense item x item matrices do not fit."""
    budget = budget if budget is not None else int(EASE_MEMORY_SHARE * physical_memory())
    need = ease_memory_bytes(n_items)
    if need > budget:
        raise ConfigError(
            f"EASE needs dense {n_items:,} x {n_items:,} item matrices: about "
            f"{need / 2**30:,.1f} GiB of memory, more than the {budget / 2**30:,.1f} GiB "
            f"allowed here; use kind itemknn or rp3beta, or shrink the catalogue "
            f"(musicrec data prepare --min-item-users)"
        )


def _row_normalize(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix)


def _keep_top(block: np.ndarray, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest positive entries as a sparse block."""
    if k < block.shape[1]:
        cut = np.argpartition(-block, k - 1, axis=1)[:, :k]
        kept = np.zeros_like(block)
        rows = np.arange(block.shape[0])[:, None]
        kept[rows, cut] = block[rows, cut]
        block = kept
    block[block < 0] = 0.0
    return sp.csr_matrix(block)
