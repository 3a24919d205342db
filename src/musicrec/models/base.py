"""One model object for every kind: fit, recommend, recommend_listener, similar_items, save/load.

Every kind keeps the ranking contract of :mod:`musicrec.ranking`: ``(ids, scores)`` arrays of
shape ``(n, k)``, best first, never an excluded item, ``-1`` / ``-inf`` padding only when the
catalogue runs out. ``user_items`` are always raw plays (users x items); each model weights
them once, through :func:`musicrec.models.confidence.confidence` with its own config, the same way
at training, evaluation and serving time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.confidence import confidence, item_totals
from musicrec.models.topk import topk_dense

# (iteration, seconds, loss) after each training sweep; loss is NaN when not computed.
IterationCallback = Callable[[int, float, float], None]
# Rows of a dense score block: keeps a batch's dense scores near 128 MiB at any catalogue size.
DENSE_CELLS = 1 << 25


def batch_rows(n_items: int) -> int:
    """How many query rows fit in one dense score block of :data:`DENSE_CELLS` cells."""
    return max(1, DENSE_CELLS // max(1, n_items))


class Model(ABC):
    """A trained recommender of one kind; subclasses say how to fit, score and store."""

    kind: ClassVar[str]
    has_factors: ClassVar[bool] = False

    def __init__(self, config: TrainConfig):
        if config.kind != self.kind:
            raise ConfigError(f"a {self.kind} model cannot take a {config.kind} config")
        self.config = config
        self.loss_history: list[float] = []
        self.item_totals: np.ndarray | None = None
        self.popularity: np.ndarray | None = None  # item ids, most listened first

    # ---------------------------------------------------------------- training

    def fit(
        self,
        user_items: sp.csr_matrix,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
    ) -> Model:
        """Fit on raw plays (users x items) and return ``self``."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        self._remember(user_items)
        self._fit(user_items, callback, show_progress)
        return self

    def _remember(self, user_items: sp.csr_matrix) -> None:
        """What every kind keeps from its training matrix: BM25 totals, the popularity order."""
        self.item_totals = item_totals(user_items)
        listeners = np.bincount(user_items.indices, minlength=user_items.shape[1])
        self.popularity = np.argsort(-listeners, kind="stable").astype(np.int64)

    @abstractmethod
    def _fit(
        self, user_items: sp.csr_matrix, callback: IterationCallback | None, show_progress: bool
    ) -> None: ...

    @property
    def n_items(self) -> int:
        assert self.popularity is not None, "model is not fitted"
        return len(self.popularity)

    def weights(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """Raw plays -> confidence, with the training matrix's per-item totals."""
        return confidence(sp.csr_matrix(user_items), self.config, totals=self.item_totals)

    # ---------------------------------------------------------------- ranking

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for known ``users`` whose played rows are ``user_items``.

        ``exclude`` defaults to ``user_items`` (never recommend what a user already played).
        """
        users = np.asarray(users, dtype=np.int64)
        user_items = _rows(user_items, len(users), self.n_items)
        exclude = user_items if exclude is None else _rows(exclude, len(users), self.n_items)
        return self._rank(users, user_items, k, exclude)

    def recommend_listener(
        self, user_items: sp.csr_matrix, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for listeners the model was not trained on (fold-in, no retraining)."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        n = user_items.shape[0]
        user_items = _rows(user_items, n, self.n_items)
        exclude = user_items if exclude is None else _rows(exclude, n, self.n_items)
        return self._rank(None, user_items, k, exclude)

    def _rank(
        self,
        users: np.ndarray | None,
        user_items: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Default: dense scores in blocks, then exact top-k."""
        n = user_items.shape[0]
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        step = batch_rows(self.n_items)
        for start in range(0, n, step):
            end = min(n, start + step)
            block_users = None if users is None else users[start:end]
            dense = self.scores(block_users, user_items[start:end])
            ids[start:end], scores[start:end] = topk_dense(dense, k, exclude[start:end])
        return ids, scores

    @abstractmethod
    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense ``(rows, n_items)`` float32 scores; ``users=None`` means fold in the rows."""

    @abstractmethod
    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each of ``items`` (never the item itself)."""

    # ---------------------------------------------------------------- storage

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write this kind's files into ``directory`` (the artifact writes the rest)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> Model:
        """Read a model saved by :meth:`save`; ``user_items`` is the artifact's train matrix."""

    @classmethod
    def files(cls, config: TrainConfig) -> tuple[str, ...]:
        """The files :meth:`save` writes (checked when an artifact is loaded)."""
        return ()

    def describe(self) -> dict[str, Any]:
        """Facts about the fitted model for the manifest (sizes, not parameters)."""
        return {}


def _rows(matrix: sp.csr_matrix, n_rows: int, n_items: int) -> sp.csr_matrix:
    """``matrix`` as CSR after checking its shape at the public boundary."""
    matrix = sp.csr_matrix(matrix)
    if matrix.shape[0] != n_rows:
        raise ValueError(
            f"user_items must contain 1 row for every user ({n_rows}), got {matrix.shape[0]}"
        )
    if matrix.shape[1] != n_items:
        raise ValueError(f"user_items must have {n_items} columns, got {matrix.shape[1]}")
    return matrix


# The one place a kind's name maps to its class, by import path (like an entry point), so a
# kind that holds other models (blend) can build them without importing back up.
KIND_CLASSES: dict[str, str] = {
    "als": "musicrec.models.als:ALSModel",
    "ease": "musicrec.models.itemitem:EASEModel",
    "itemknn": "musicrec.models.itemitem:ItemKNNModel",
    "rp3beta": "musicrec.models.itemitem:RP3BetaModel",
    "dlae": "musicrec.models.dlae:DLAEModel",
    "blend": "musicrec.models.blend:BlendModel",
}


def model_class(kind: str) -> type[Model]:
    """The class of model ``kind`` (one-line error for an unknown kind)."""
    import importlib

    if kind not in KIND_CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(KIND_CLASSES)}")
    module, _, name = KIND_CLASSES[kind].partition(":")
    found: type[Model] = getattr(importlib.import_module(module), name)
    return found


def build(config: TrainConfig) -> Model:
    """An unfitted model of ``config.kind``."""
    return model_class(config.kind)(config)
