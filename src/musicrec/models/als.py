"""implicit ALS as a :class:`~musicrec.models.base.Model`: factors, fold-in, exact top-k.

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
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.progress import Progress, TextColumn
from threadpoolctl import threadpool_limits

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.models.base import IterationCallback, Model
from musicrec.models.confidence import confidence
from musicrec.models.exact import FactorRanker
from musicrec.models.topk import topk_dense

log = logging.getLogger(__name__)

LOSS_EVERY = 0  # sweeps between two training-loss evaluations (0: only after the last)

__all__ = [
    "ALSModel",
    "Factors",
    "IterationCallback",
    "build_als",
    "fit_als",
    "has_cuda",
    "loss_sweeps",
]


@dataclass(frozen=True)
class Factors:
    user_factors: np.ndarray
    item_factors: np.ndarray
    loss_history: list[float]


def has_cuda() -> bool:
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


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


def loss_sweeps(iterations: int, every: int = LOSS_EVERY) -> list[int]:
    """The sweeps (1-based) after which the training loss is evaluated."""
    return sorted({*range(every, iterations, every), iterations}) if every else [iterations]


def training_loss(model: Any, weighted: sp.csr_matrix, regularization: float) -> float:
    """implicit's own loss function on the model's current factors."""
    if hasattr(model, "to_cpu"):  # GPU models: losses are not worth a device round trip
        return float("nan")
    from implicit.cpu import _als

    return float(
        _als.calculate_loss(
            weighted, model.user_factors, model.item_factors, regularization, num_threads=0
        )
    )


def fit_als(
    train: sp.csr_matrix,
    config: TrainConfig,
    callback: IterationCallback | None = None,
    show_progress: bool = False,
    loss_every: int = LOSS_EVERY,
) -> Factors:
    """Fit implicit ALS on raw plays ``train`` (users x items); weighting happens here once.

    The loss is evaluated after every ``loss_every`` sweeps and after the last (NaN between).
    """
    weighted = confidence(train, config)
    losses: list[float] = []

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
        task = progress.add_task("ALS sweeps", total=config.iterations, loss="-")
        model = build_als(config)

        scored = set(loss_sweeps(config.iterations, loss_every))

        def on_sweep(iteration: int, elapsed: float, _: float | None) -> None:
            loss = float("nan")
            if iteration + 1 in scored:
                started = time.perf_counter()
                loss = training_loss(model, weighted, config.regularization)
                elapsed += time.perf_counter() - started
            losses.append(loss)
            progress.update(task, advance=1, loss="-" if math.isnan(loss) else f"{loss:.5f}")
            if callback is not None:
                callback(iteration, elapsed, loss)

        model.fit(weighted, show_progress=False, callback=on_sweep)
    if hasattr(model, "to_cpu"):
        model = model.to_cpu()
    return Factors(
        user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
        loss_history=losses,
    )


class ALSModel(Model):
    """Matrix factorization: ``score(u, i) = user_factors[u] @ item_factors[i]``."""

    kind = "als"
    has_factors = True

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.user_factors = np.empty((0, config.factors), dtype=np.float32)
        self.item_factors = np.empty((0, config.factors), dtype=np.float32)

    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        factors = fit_als(user_items, self.config, callback, show_progress)
        self.set_factors(factors)

    def set_factors(self, factors: Factors) -> ALSModel:
        """Adopt factors fitted elsewhere (Spark)."""
        self.user_factors = factors.user_factors
        self.item_factors = factors.item_factors
        self.loss_history = list(factors.loss_history)
        self.__dict__.pop("ranker", None)
        self.__dict__.pop("solver", None)
        return self

    @classmethod
    def from_factors(
        cls, config: TrainConfig, factors: Factors, user_items: sp.csr_matrix
    ) -> ALSModel:
        model = cls(config)
        model._remember(sp.csr_matrix(user_items))
        return model.set_factors(factors)

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

    def fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """User vectors re-solved from raw-play rows with the training confidence function."""
        weighted = self.weights(user_items)
        n = weighted.shape[0]
        with threadpool_limits(limits=1, user_api="blas"):
            vectors = self.solver.recalculate_user(np.arange(n), weighted)
        return np.atleast_2d(np.asarray(vectors, dtype=np.float32))

    def _rank(
        self,
        users: np.ndarray | None,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self.user_factors[users] if users is not None else self.fold_in(user_items)
        return self.ranker.rank_queries(queries, k, exclude)

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        queries = self.user_factors[users] if users is not None else self.fold_in(user_items)
        return np.asarray(queries, dtype=np.float32) @ np.asarray(self.item_factors).T

    @cached_property
    def unit_items(self) -> np.ndarray:
        items = np.asarray(self.item_factors, dtype=np.float32)
        norms = np.linalg.norm(items, axis=1, keepdims=True)
        return np.divide(items, norms, out=np.zeros_like(items), where=norms > 0)

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of item factors."""
        items = np.asarray(items, dtype=np.int64)
        scores = self.unit_items[items] @ self.unit_items.T
        own = sp.csr_matrix(
            (np.ones(len(items)), (np.arange(len(items)), items)), shape=scores.shape
        )
        return topk_dense(scores, k, own)

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

    def describe(self) -> dict[str, Any]:
        return {"factors": int(self.item_factors.shape[1])}
