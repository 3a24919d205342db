"""implicit ALS as a :class:`~musicrec.models.base.Model`: factors, fold-in, an item index.

The only module that builds implicit's ``AlternatingLeastSquares``: for training (CPU or GPU,
:func:`build_als`, continued sweep by sweep by ``fit_partial``) and for fold-in (``solver``,
implicit's ``recalculate_user`` around our item factors).

The training loss is computed by us, not by implicit at every sweep (which costs about a fifth
of a fit at Last.fm-360K scale): after the last sweep by default, or every ``loss_every``
sweeps when a loss curve is wanted, so ``musicrec train`` costs what implicit's bare ``fit``
costs.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from rich.progress import Progress, TextColumn
from threadpoolctl import threadpool_limits

from musicrec import layout
from musicrec.config import WEIGHTINGS, TrainConfig
from musicrec.models.ann import FactorIndex
from musicrec.models.base import IterationCallback, Model
from musicrec.models.confidence import confidence
from musicrec.models.exact import FactorRanker
from musicrec.models.factors import LOSS_EVERY, Factors, has_cuda, loss_sweeps, training_loss
from musicrec.models.query import Query
from musicrec.models.topk import own_rows, padded, topk_dense

if TYPE_CHECKING:
    from musicrec.data.dataset import Dataset

log = logging.getLogger(__name__)

# The search space (Optuna): integers and scales on a log scale where marked.
FACTORS = (16, 256)  # integer, log scale
REGULARIZATION = (1e-3, 100.0)  # log scale
ALPHA = (0.1, 50.0)  # log scale
ITERATIONS = (5, 30)  # integer

__all__ = ["ALSModel", "Factors", "IterationCallback", "build_als", "fit_als", "has_cuda"]


def build_als(config: TrainConfig, n_threads: int = 0, loss: bool = False):  # type: ignore[no-untyped-def]
    """The single CPU/GPU switch: implicit's GPU build when asked for and available."""
    from implicit.als import AlternatingLeastSquares

    use_gpu = config.use_gpu and has_cuda()
    if config.use_gpu and not use_gpu:
        log.warning("use_gpu requested but implicit has no CUDA support here; using the CPU")
    return AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        alpha=1.0,  # confidence is already scaled by musicrec.models.confidence
        iterations=config.iterations,
        calculate_training_loss=loss,
        random_state=config.seed,
        use_gpu=use_gpu,
        num_threads=n_threads,
    )


def fit_als(
    train: sp.csr_matrix,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    loss_every: int = LOSS_EVERY,
) -> Factors:
    """Fit implicit ALS on raw plays ``train`` (users x items): :class:`ALSModel`'s factors."""
    model = ALSModel(config)
    model.loss_every = loss_every
    model.fit(train, callback, show_progress)
    return Factors(model.user_factors, model.item_factors, list(model.loss_history))


class ALSModel(FactorIndex, Model):
    """Matrix factorization: ``score(u, i) = user_factors[u] @ item_factors[i]``."""

    kind = "als"
    exact_explanations = False  # cosine x weight unless contributions(exact=True)
    searched = ("factors", "regularization", "alpha", "iterations", "weighting")

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.user_factors = np.empty((0, config.factors), dtype=np.float32)
        self.item_factors = np.empty((0, config.factors), dtype=np.float32)
        self.loss_every = LOSS_EVERY
        self.index = None
        self._als: Any = None  # implicit's model while fitting continues (fit_partial)
        self._done = 0  # sweeps fitted so far

    # ---------------------------------------------------------------- training

    @property
    def iterative(self) -> bool:
        return True

    @property
    def sweeps(self) -> int:
        return self.config.iterations

    @property
    def engine(self) -> str:
        return self.config.engine

    @property
    def in_process(self) -> bool:
        return self.config.engine == "implicit"

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        self._als, self._done = None, 0
        self._sweep(user_items, self.config.iterations, callback, show_progress)

    def fit_partial(
        self,
        user_items: sp.csr_matrix,
        sweeps: int,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
    ) -> ALSModel:
        """``sweeps`` more ALS sweeps from the current factors (bit-identical to one fit)."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        if self._done == 0:
            self.loss_history = []
            self._remember(user_items)
        self._sweep(user_items, sweeps, callback, show_progress)
        return self

    def fit_dataset(
        self,
        dataset: Dataset,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
        cluster: str | None = None,
        checkpoint_dir: str | None = None,
    ) -> ALSModel:
        """implicit on the training matrix, or Spark MLlib on the dataset's parquet files."""
        if self.config.engine != "spark":
            self.fit(dataset.train, callback, show_progress)
            return self
        from musicrec.models.spark_als import fit_spark

        factors = fit_spark(
            dataset, self.config, master=cluster, callback=callback, checkpoint_dir=checkpoint_dir
        )
        self._remember(dataset.train)
        return self.set_factors(factors)

    def _sweep(
        self,
        user_items: sp.csr_matrix,
        sweeps: int,
        callback: IterationCallback | None,
        show_progress: bool,
    ) -> None:
        """Run ``sweeps`` sweeps of implicit's ALS, continuing from the current factors."""
        weighted = confidence(user_items, self.config)
        scored = set(loss_sweeps(self.config.iterations, self.loss_every))
        first = self._done
        # implicit parallelises itself; a multithreaded BLAS underneath only oversubscribes.
        with (
            threadpool_limits(limits=1, user_api="blas"),
            Progress(
                *Progress.get_default_columns(),
                TextColumn("loss {task.fields[loss]}"),
                disable=not show_progress,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task("ALS sweeps", total=sweeps, loss="-")
            als = self._solver_for_training()
            als.iterations = sweeps

            def on_sweep(iteration: int, elapsed: float, _: float | None) -> None:
                sweep, loss = first + iteration, float("nan")
                if sweep + 1 in scored:
                    started = time.perf_counter()
                    loss = training_loss(als, weighted, self.config.regularization)
                    elapsed += time.perf_counter() - started
                self.loss_history.append(loss)
                progress.update(task, advance=1, loss="-" if math.isnan(loss) else f"{loss:.5f}")
                if callback is not None:
                    callback(sweep, elapsed, loss)

            als.fit(weighted, show_progress=False, callback=on_sweep)
        self._done += sweeps
        cpu = als.to_cpu() if hasattr(als, "to_cpu") else als
        self._adopt(cpu.user_factors, cpu.item_factors)

    def _solver_for_training(self) -> Any:
        if self._als is None:
            self._als = build_als(self.config)
            if self._done == 0 and len(self.user_factors):  # a loaded model continues
                self._als.user_factors = np.array(self.user_factors, dtype=np.float32)
                self._als.item_factors = np.array(self.item_factors, dtype=np.float32)
        return self._als

    def _adopt(self, user_factors: np.ndarray, item_factors: np.ndarray) -> None:
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        for name in ("ranker", "solver", "vectors"):
            self.__dict__.pop(name, None)
        self.index = None

    def set_factors(self, factors: Factors) -> ALSModel:
        """Adopt factors fitted elsewhere (Spark)."""
        self._adopt(factors.user_factors, factors.item_factors)
        self.loss_history = list(factors.loss_history)
        return self

    @classmethod
    def from_factors(
        cls, config: TrainConfig, factors: Factors, user_items: sp.csr_matrix
    ) -> ALSModel:
        model = cls(config)
        model._remember(sp.csr_matrix(user_items))
        return model.set_factors(factors)

    # ---------------------------------------------------------------- batches

    @cached_property
    def ranker(self) -> FactorRanker:
        return FactorRanker(self.user_factors, self.item_factors)

    @cached_property
    def solver(self) -> Any:
        """implicit's model around our item factors, for ``recalculate_user`` (fold-in)."""
        from implicit.cpu.als import AlternatingLeastSquares

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # BLAS thread advice, not ours
            model = AlternatingLeastSquares(
                factors=int(self.item_factors.shape[1]),
                regularization=self.config.regularization,
                alpha=1.0,  # confidence() already scaled the rows
                num_threads=1,
            )
        model.item_factors = self.item_factors
        model.user_factors = np.zeros((1, self.item_factors.shape[1]), dtype=np.float32)
        _ = model.YtY  # computed once here, not on the first request
        return model

    def open_index(
        self,
        directory: str | Path | None,
        kind: str = "exact",
        *,
        ef: int | None = None,
        ef_cosine: int | None = None,
        save: bool = True,
    ) -> bool:
        built = super().open_index(directory, kind, ef=ef, ef_cosine=ef_cosine, save=save)
        _ = self.solver  # fold-in's Gram matrix: computed at load, not on the first request
        return built

    def _fold_in_rows(self, user_items: sp.csr_matrix) -> np.ndarray:
        """User vectors re-solved from raw-play rows with the training confidence function."""
        weighted = self.weights(user_items)
        with threadpool_limits(limits=1, user_api="blas"):
            vectors = self.solver.recalculate_user(np.arange(weighted.shape[0]), weighted)
        return np.atleast_2d(np.asarray(vectors, dtype=np.float32))

    def _rank(
        self,
        users: np.ndarray | None,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self.user_factors[users] if users is not None else self._fold_in_rows(user_items)
        if self.index is None or self.index.inner.kind == "exact":
            return self.ranker.rank_queries(queries, k, exclude)
        ids, scores = padded(len(queries), k)
        for row, query in enumerate(queries):
            banned = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
            found, found_scores = self.index.inner.search(query, k, exclude=banned)
            ids[row, : len(found)], scores[row, : len(found)] = found, found_scores
        return ids, scores

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        queries = self.user_factors[users] if users is not None else self._fold_in_rows(user_items)
        return np.asarray(queries, dtype=np.float32) @ np.asarray(self.item_factors).T

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of item factors (through the index when one is open)."""
        items = np.asarray(items, dtype=np.int64)
        if self.index is not None and self.index.cosine.kind != "exact":
            ids, scores = padded(len(items), k)
            for row, item in enumerate(items):
                found, found_scores = self.similar(int(item), k)
                ids[row, : len(found)], scores[row, : len(found)] = found, found_scores
            return ids, scores
        scores = self.vectors.unit(items) @ self.vectors.unit_all.T
        own = own_rows(items, scores.shape[1])
        return topk_dense(scores, k, own)

    # ---------------------------------------------------------------- one listener

    def _vector(self, items: np.ndarray, weights: np.ndarray, user: int | None) -> np.ndarray:
        if user is not None:
            return np.asarray(self.user_factors[user], dtype=np.float32)
        if not len(items):
            return np.zeros(self.n_factors, dtype=np.float32)
        row = sp.csr_matrix((weights, items, [0, len(items)]), shape=(1, len(self.item_factors)))
        return np.asarray(self.solver.recalculate_user(0, row), dtype=np.float32).ravel()

    def item_directions(self, items: np.ndarray) -> np.ndarray:
        return self.vectors.unit(np.asarray(items, dtype=np.int64))

    def direction_query(self, direction: np.ndarray) -> Query:
        return Query.of_vector(direction)

    def query_scores(self, query: Query) -> np.ndarray:
        assert query.vector is not None
        return np.asarray(self.item_factors @ query.vector, dtype=np.float32)

    def blend(self, query: Query, other: Query, weight: float) -> Query:
        """Unit directions mixed (``query`` unchanged when either has no direction)."""
        assert query.vector is not None and other.vector is not None
        ours, theirs = float(np.linalg.norm(query.vector)), float(np.linalg.norm(other.vector))
        if ours <= 0 or theirs <= 0:
            return query
        mixed = (1.0 - weight) * (query.vector / ours) + weight * (other.vector / theirs)
        return replace(query, vector=mixed.astype(np.float32))

    def _rank_vector(
        self, vector: np.ndarray, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.searches.inner.search(vector, k, exclude=banned)

    def similar(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = self.vectors.unit(np.array([item], dtype=np.int64))[0]
        return self.searches.cosine.search(query, k, exclude=np.array([item], dtype=np.int64))

    def embedding(self, items: np.ndarray) -> np.ndarray:
        return self.vectors.unit(np.asarray(items, dtype=np.int64))

    def contributions(self, query: Query, items: np.ndarray, exact: bool = False) -> np.ndarray:
        """``weight x cosine`` of history and item factors; ``exact``: implicit's decomposition.

        Exact: a folded-in vector is ``A^-1 sum_h c_h y_h`` with ``A = Y'Y + reg I +
        sum_h (c_h - 1) y_h y_h'``, so ``score_i = sum_h c_h y_i' A^-1 y_h`` term by term (a
        per-listener solve, about 0.1 ms at 128 factors: serving ranks by cosine instead).
        """
        items = np.asarray(items, dtype=np.int64)
        history, weights = query.items, query.weights
        if not exact:
            return (self.vectors.unit(history) @ self.vectors.unit(items).T) * weights[:, None]
        from scipy.linalg import cho_factor, cho_solve

        factors = np.asarray(self.item_factors, dtype=np.float64)
        rows = factors[history]
        gram = np.asarray(self.solver.YtY, dtype=np.float64) + self.config.regularization * np.eye(
            factors.shape[1]
        )
        gram += (rows.T * (weights - 1.0)) @ rows
        solved = cho_solve(cho_factor(gram), factors[items].T)
        return (rows @ solved) * weights[:, None]

    # ---------------------------------------------------------------- storage and search

    def save(self, directory: Path) -> None:
        np.save(directory / layout.USER_FACTORS, np.ascontiguousarray(self.user_factors))
        np.save(directory / layout.ITEM_FACTORS, np.ascontiguousarray(self.item_factors))

    @classmethod
    def files(cls, config: TrainConfig) -> tuple[str, ...]:
        return (layout.USER_FACTORS, layout.ITEM_FACTORS)

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> ALSModel:
        model = cls(config)
        model._remember(user_items)
        model.user_factors = np.load(directory / layout.USER_FACTORS, mmap_mode="r")
        # Copy-on-write map: implicit's solver wants a writable buffer; nothing is copied.
        model.item_factors = np.load(directory / layout.ITEM_FACTORS, mmap_mode="c")
        return model

    def check_shape(self, n_users: int, n_items: int) -> str | None:
        if self.user_factors.shape[0] != n_users or self.item_factors.shape[0] != n_items:
            return (
                f"factor shapes {self.user_factors.shape}/{self.item_factors.shape} do not "
                f"match {n_users} users x {n_items} items"
            )
        return None

    def in_memory(self) -> None:
        self._adopt(np.array(self.user_factors), np.array(self.item_factors))

    def describe(self) -> dict[str, Any]:
        return {"factors": int(self.item_factors.shape[1])}

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        return f"als-f{config.factors}-i{config.iterations}"

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        weighting = trial.suggest_categorical(cls.trial_name("weighting"), list(WEIGHTINGS))
        return start.override(
            factors=trial.suggest_int("factors", *FACTORS, log=True),
            regularization=trial.suggest_float("regularization", *REGULARIZATION, log=True),
            alpha=trial.suggest_float("alpha", *ALPHA, log=True),
            iterations=trial.suggest_int("iterations", *ITERATIONS),
            weighting=weighting,
        )
