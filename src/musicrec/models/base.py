"""One model object for every kind: what evaluation, tuning, retraining and serving all call.

A :class:`Model` fits (``fit``, staged ``fit_partial``), ranks users in batches (``recommend``,
``recommend_listener``: evaluation), answers one listener at a time (``user_query`` / ``fold_in``
/ ``direction_query`` -> ``blend`` -> ``rank`` -> ``explain``: serving), finds similar items,
opens its own item index and saves itself, under the ranking contract of
:mod:`musicrec.models.topk`. ``user_items`` are raw plays (users x items), weighted once by
:func:`musicrec.models.confidence.confidence` with the model's config, at every stage. This class
is the score-space default (a query is the dense score row of its history); factor models
override the one-listener calls with vectors and an index.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.confidence import confidence, item_totals, row_confidence
from musicrec.models.query import Query, canonical_plays, unit_max
from musicrec.models.topk import checked_rows, one_row, padded, topk_dense, unpadded

if TYPE_CHECKING:
    from musicrec.data.dataset import Dataset

# (iteration, seconds, loss) after each training sweep; loss is NaN when not computed.
IterationCallback = Callable[[int, float, float], None]
# Rows of a dense score block: keeps a batch's dense scores near 128 MiB at any catalogue size.
DENSE_CELLS = 1 << 25
EXPLAIN_TOP = 2  # history items named per recommendation
EXPLAIN_HISTORY = 200  # most-weighted history items considered for an explanation
# Search-space parameters several kinds search are named per kind in a study ("ease.weighting").
SHARED_SEARCH = ("weighting", "neighbours")


def batchchecked_rows(n_items: int) -> int:
    """How many query rows fit in one dense score block of :data:`DENSE_CELLS` cells."""
    return max(1, DENSE_CELLS // max(1, n_items))


class Model(ABC):
    """A recommender of one kind; subclasses say how to fit, score and store."""

    kind: ClassVar[str]
    # explain()'s terms add up to the score (item-item kinds); else they rank the history only.
    exact_explanations: ClassVar[bool] = True
    # The parameters the tuner searches (the kind's search space is suggest()); () = not tuned.
    searched: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: TrainConfig):
        if config.kind != self.kind:
            raise ConfigError(f"a {self.kind} model cannot take a {config.kind} config")
        self.config = config
        self.loss_history: list[float] = []
        self.item_totals: np.ndarray | None = None
        self.popularity: np.ndarray | None = None  # item ids, most listened first
        self.user_items: sp.csr_matrix | None = None  # the raw plays it was fitted on
        self.mean_total = 0.0

    # ---------------------------------------------------------------- training

    @property
    def iterative(self) -> bool:
        """Fitted in sweeps (the callback sees each); else in one closed-form step."""
        return False

    @property
    def sweeps(self) -> int:
        """Sweeps of one full :meth:`fit`; :meth:`fit_partial` may stop between them."""
        return 1

    @property
    def engine(self) -> str:
        """What fits the model (the manifest's ``engine``)."""
        return self.kind

    @property
    def in_process(self) -> bool:
        """Fitted from an in-memory matrix (``fit_partial`` works); not a cluster engine."""
        return True

    def fit(
        self,
        user_items: sp.csr_matrix,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
    ) -> Model:
        """Fit on raw plays (users x items) and return ``self``; ``callback`` after each sweep."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        self.loss_history = []
        self._remember(user_items)
        started = time.perf_counter()
        self._fit(user_items, callback, show_progress)
        if callback is not None and not self.iterative:
            callback(0, time.perf_counter() - started, math.nan)
        return self

    def fit_partial(
        self,
        user_items: sp.csr_matrix,
        sweeps: int,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
    ) -> Model:
        """Fit ``sweeps`` more sweeps: ``fit_partial(k)`` then ``fit_partial(n - k)`` is ``fit``.

        A kind fitted in closed form is fitted by the first call; later calls change nothing.
        """
        if self.user_items is None:
            self.fit(user_items, callback, show_progress)
        return self

    def fit_dataset(
        self,
        dataset: Dataset,
        callback: IterationCallback | None = None,
        show_progress: bool = False,
        cluster: str | None = None,
    ) -> Model:
        """:meth:`fit` on a prepared dataset's training split; ``cluster`` is where an engine
        that reads the dataset itself runs (a Spark master), ignored by the others."""
        return self.fit(dataset.train, callback, show_progress)

    def _remember(self, user_items: sp.csr_matrix) -> None:
        """What every kind keeps from its training matrix: BM25 totals, the popularity order."""
        self.user_items = user_items
        self.item_totals = item_totals(user_items)
        self.mean_total = float(self.item_totals.mean()) if len(self.item_totals) else 0.0
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

    def history_weights(self, items: np.ndarray, plays: np.ndarray) -> np.ndarray:
        """:meth:`weights` of one row given as sorted distinct ``items`` and their plays."""
        assert self.item_totals is not None, "model is not fitted"
        return row_confidence(items, plays, self.config, self.item_totals, self.mean_total)

    # ---------------------------------------------------------------- batches (evaluation)

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
        user_items = checked_rows(user_items, len(users), self.n_items)
        exclude = user_items if exclude is None else checked_rows(exclude, len(users), self.n_items)
        return self._rank(users, user_items, k, exclude)

    def recommend_listener(
        self, user_items: sp.csr_matrix, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for listeners the model was not trained on (fold-in, no retraining)."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        n = user_items.shape[0]
        user_items = checked_rows(user_items, n, self.n_items)
        exclude = user_items if exclude is None else checked_rows(exclude, n, self.n_items)
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
        ids, scores = padded(n, k)
        step = batchchecked_rows(self.n_items)
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

    # ---------------------------------------------------------------- one listener (serving)

    def user_query(self, user: int) -> Query:
        """The query of training user ``user``: their training row and trained state."""
        assert self.user_items is not None, "model is not fitted"
        train = self.user_items
        if train.has_canonical_format:  # read in place: no sparse slicing per request
            start, end = int(train.indptr[user]), int(train.indptr[user + 1])
            items = train.indices[start:end].astype(np.int64)
            plays = train.data[start:end]
        else:
            row = sp.csr_matrix(train[user])
            row.sum_duplicates()
            items, plays = row.indices.astype(np.int64), row.data
        return self._query(items, np.asarray(plays, dtype=np.float32), user)

    def fold_in(self, items: np.ndarray, plays: np.ndarray) -> Query:
        """The query of a listener from raw plays the model was not trained on (repeats add)."""
        items, plays = canonical_plays(items, plays)
        return self._query(items, plays, None)

    def _query(self, items: np.ndarray, plays: np.ndarray, user: int | None) -> Query:
        weights = self.history_weights(items, plays)
        return Query(items, plays, weights, self._vector(items, weights, user), user)

    def _vector(self, items: np.ndarray, weights: np.ndarray, user: int | None) -> Any:
        """The query vector of a history; score-space kinds score the history when ranking."""
        return None

    def item_directions(self, items: np.ndarray) -> np.ndarray:
        """Unit vectors of ``items`` in the model's item space (a mood averages them)."""
        rows = np.zeros((len(items), self.n_items), dtype=np.float32)
        rows[np.arange(len(items)), np.asarray(items, dtype=np.int64)] = 1.0
        return rows

    def direction_query(self, direction: np.ndarray) -> Query:
        """The query of a direction made by :meth:`item_directions` (a mood).

        Score space: a pseudo-listener whose heaviest item has 10 plays. Its items may be
        recommended (a mood's defining artists are part of the answer).
        """
        items = np.flatnonzero(direction > 0)
        plays = np.zeros(len(items), dtype=np.float32)
        if len(items):
            plays = (10.0 * direction[items] / float(direction[items].max())).astype(np.float32)
        return replace(self.fold_in(items, plays), excludes_history=False)

    def query_scores(self, query: Query) -> np.ndarray:
        """Dense scores of every item for ``query`` (float32)."""
        if query.vector is not None:
            return np.asarray(query.vector, dtype=np.float32)
        row = sp.csr_matrix(
            (query.plays, query.items, [0, len(query.items)]), shape=(1, self.n_items)
        )
        users = None if query.user is None else np.array([query.user])
        return self.scores(users, row)[0]

    def blend(self, query: Query, other: Query, weight: float) -> Query:
        """``query`` moved toward ``other`` by ``weight`` (each scaled to its largest score)."""
        mixed = (1.0 - weight) * unit_max(self.query_scores(query))
        mixed += weight * unit_max(self.query_scores(other))
        return replace(query, vector=mixed.astype(np.float32))

    def rank(
        self, query: Query, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(ids, scores)`` for one query, never its history nor ``exclude``.

        Shorter than ``k`` only when the catalogue runs out (no padding in a single answer).
        """
        banned = query.items if query.excludes_history else np.empty(0, dtype=np.int64)
        if exclude is not None and len(exclude):
            banned = np.union1d(banned, np.asarray(exclude, dtype=np.int64))
        if query.vector is None:
            return self._rank_history(query, k, banned)
        return self._rank_vector(query.vector, k, banned)

    def _rank_history(
        self, query: Query, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._rank_vector(self.query_scores(query), k, banned)

    def _rank_vector(
        self, vector: np.ndarray, k: int, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array(vector, dtype=np.float32)[None, :]
        return unpadded(topk_dense(scores, k, one_row(banned, self.n_items)))

    def contributions(self, query: Query, items: np.ndarray, exact: bool = False) -> np.ndarray:
        """How much each history item of ``query`` adds to each item's score (history x items).

        Where :attr:`exact_explanations` holds, a column sums to the item's score.
        """
        return np.zeros((len(query.items), len(items)), dtype=np.float32)

    def explain(
        self, query: Query, items: np.ndarray, top: int = EXPLAIN_TOP, limit: int = EXPLAIN_HISTORY
    ) -> list[tuple[int, ...]]:
        """Per item, the (at most ``top``) history items behind its score, largest first.

        Only the ``limit`` most-weighted history items are considered (the cost stays bounded);
        a history item never explains itself and only positive contributions count.
        """
        items = np.asarray(items, dtype=np.int64)
        if not len(query.items) or not len(items):
            return [() for _ in items]
        if len(query.items) > limit:
            keep = np.argsort(-query.weights, kind="stable")[:limit]  # heaviest first
            query = replace(
                query,
                items=query.items[keep],
                plays=query.plays[keep],
                weights=query.weights[keep],
            )
        history = query.items
        terms = np.array(self.contributions(query, items), dtype=np.float32)
        terms[history[:, None] == items[None, :]] = -np.inf
        best = np.argsort(-terms, axis=0, kind="stable")[:top]
        return [
            tuple(int(history[r]) for r in best[:, col] if terms[r, col] > 0)
            for col in range(len(items))
        ]

    def similar(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`similar_items` of one item, without padding."""
        return unpadded(self.similar_items(np.array([item], dtype=np.int64), k))

    def embedding(self, items: np.ndarray) -> np.ndarray:
        """Vectors of ``items`` whose cosine orders them as :meth:`similar` does (the map).

        Score space: each item's row of similarity scores restricted to ``items``, unit norm.
        """
        items = np.asarray(items, dtype=np.int64)
        rows = np.zeros((len(items), len(items)), dtype=np.float32)
        position = {int(item): at for at, item in enumerate(items.tolist())}
        ids, scores = self.similar_items(items, min(self.n_items - 1, 200))
        for row in range(len(items)):
            for item, score in zip(ids[row], scores[row], strict=True):
                col = position.get(int(item))
                if col is not None and np.isfinite(score):
                    rows[row, col] = score
        rows[np.arange(len(items)), np.arange(len(items))] = rows.max(initial=0.0)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    # ---------------------------------------------------------------- item index

    @property
    def n_factors(self) -> int:
        """Dimensions of the model's item vectors (0: the kind scores in item space)."""
        return 0

    @property
    def index_kind(self) -> str:
        """How single queries are answered: ``hnsw`` / ``exact`` search, or ``item-item``."""
        return "item-item"

    def open_index(
        self,
        directory: str | Path | None,
        kind: str = "exact",
        *,
        ef: int | None = None,
        ef_cosine: int | None = None,
        save: bool = True,
    ) -> bool:
        """Answer single queries through an index (``exact``/``hnsw``, loaded from ``directory``
        or built and saved there); True when one was built. Score-space kinds have none."""
        return False

    @classmethod
    def index_files(cls) -> tuple[str, ...]:
        """Files of the index :meth:`build_index` writes (none for kinds without one)."""
        return ()

    def build_index(self, directory: str | Path) -> list[Path]:
        """Build the approximate index and save it into ``directory``; the files written."""
        return []

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

    def check_shape(self, n_users: int, n_items: int) -> str | None:
        """Why the model does not fit an ``n_users x n_items`` dataset (``None``: it does)."""
        return None

    def in_memory(self) -> None:  # noqa: B027 (most kinds hold nothing memory-mapped)
        """Read memory-mapped files into memory (for a model that outlives its directory)."""

    def describe(self) -> dict[str, Any]:
        """Facts about the fitted model for the manifest (sizes, not parameters)."""
        return {}

    # ---------------------------------------------------------------- the kind's knowledge

    @classmethod
    def run_name(cls, config: TrainConfig) -> str:
        """A short run name: the kind and its leading parameters."""
        return config.kind

    @classmethod
    def suggest(cls, trial: Any, start: TrainConfig) -> TrainConfig:
        """One point of the kind's search space (an Optuna trial), unsearched from ``start``."""
        raise ConfigError(f"model kind {cls.kind!r} has no search space")

    @classmethod
    def trial_name(cls, name: str) -> str:
        """The study's name of searched parameter ``name``."""
        return f"{cls.kind}.{name}" if name in SHARED_SEARCH else name

    @classmethod
    def trial_params(cls, config: TrainConfig) -> dict[str, Any]:
        """The trial parameters that reproduce ``config`` (to enqueue a starting trial)."""
        return {cls.trial_name(name): getattr(config, name) for name in cls.searched}
