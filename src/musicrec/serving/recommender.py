"""The serving runtime: everything the API answers, built once from a :class:`ModelArtifact`.

A :class:`Recommender` is immutable after construction, so the API can swap a new one in with a
single reference assignment while requests in flight finish on the old one.
"""

from __future__ import annotations

import bisect
import difflib
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.sources import fold_accents
from musicrec.errors import (
    MoodUnavailableError,
    UnknownArtistError,
    UnknownMoodError,
    UnknownUserError,
)
from musicrec.models.artifact import ModelArtifact
from musicrec.models.confidence import bm25_weight, confidence, item_totals
from musicrec.models.topk import topk_dense
from musicrec.ranking.hnsw import IndexKind, IndexPair, ItemVectors, open_indexes
from musicrec.serving.moods import ResolvedMood, TagTable, load_mood_specs, read_tags, resolve_moods

log = logging.getLogger(__name__)

TAGS_PER_ARTIST = 3
EXPLAIN_TOP = 2
EXPLAIN_HISTORY = 200  # most-weighted history items considered for explanations
SUGGESTIONS = 5
FUZZY_POOL = 5000  # most popular names searched by difflib for suggestions
DEFAULT_MOOD_WEIGHT = 0.5
# A mood's answer depends on the model only: one top-100 list per mood (the API's largest k)
# is computed on first use and every k up to it is served from its prefix.
MOOD_ANSWER_K = 100


@dataclass(frozen=True)
class Rec:
    """One recommended artist, with everything a response needs."""

    item: int
    artist: str
    score: float
    listeners: int
    plays: int
    mbid: str | None
    tags: tuple[str, ...]
    because: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListenerResult:
    recs: list[Rec]
    used: list[str]
    unknown: list[str]


def fold_names(names: pd.Series, normalized: bool = False) -> np.ndarray:
    """Accent-folded search keys.

    ``normalized`` names (a dataset's ``artist_key``: NFC, casefolded, spaces collapsed) that
    are ASCII are already folded, which skips the Unicode work for most of a catalogue.
    """
    keys = names.astype(str).tolist()
    if normalized:
        return np.array([k if k.isascii() else fold_accents(k) for k in keys], dtype=object)
    return np.array([fold_accents(k) for k in keys], dtype=object)


def train_config(params: dict[str, Any]) -> TrainConfig:
    """The training configuration from a manifest's params (unknown keys ignored)."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in params.items() if k in known})


class Catalogue:
    """Artist names, popularity and tags, with accent-insensitive lookup and search."""

    def __init__(self, items: pd.DataFrame, tags: TagTable | None):
        self.names = items["artist_name"].astype(str).to_numpy(dtype=object)
        self.listeners = items["listeners"].to_numpy(dtype=np.int64)
        self.plays = items["plays"].to_numpy(dtype=np.int64)
        raw_mbid = items["mbid"].tolist() if "mbid" in items else [None] * len(items)
        self.mbid = np.array(
            [m if isinstance(m, str) and m else None for m in raw_mbid], dtype=object
        )
        if "artist_key" in items:
            self.folded = fold_names(items["artist_key"], normalized=True)
        else:
            self.folded = fold_names(items["artist_name"])
        # Most listened first: search scans this order and stops once it has enough hits.
        self.by_popularity = np.argsort(-self.listeners, kind="stable")
        popular_names = self.folded[self.by_popularity]
        self._blob = "\n" + "\n".join(popular_names) + "\n"
        self._starts = np.cumsum([0, *(len(n) + 1 for n in popular_names)])[:-1] + 1
        # Later entries win: iterate least popular first so the most listened artist keeps a name.
        self.by_name: dict[str, int] = dict(
            zip(popular_names[::-1], self.by_popularity[::-1].tolist(), strict=True)
        )
        self._tag_vocab = tags.names if tags is not None else []
        self._tag_codes, self._tag_offsets = self._tag_table(tags, len(items))

    @staticmethod
    def _tag_table(tags: TagTable | None, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """Tag codes grouped by item (heaviest first) and each item's offset into them."""
        if tags is None or not len(tags):
            return np.empty(0, dtype=np.int64), np.zeros(n_items + 1, dtype=np.int64)
        order = np.lexsort((-tags.weights, tags.items))
        offsets = np.searchsorted(tags.items[order], np.arange(n_items + 1))
        return tags.codes[order], offsets

    def __len__(self) -> int:
        return len(self.names)

    def tags_of(self, item: int, n: int = TAGS_PER_ARTIST) -> tuple[str, ...]:
        start, end = self._tag_offsets[item], self._tag_offsets[item + 1]
        return tuple(self._tag_vocab[c] for c in self._tag_codes[start : min(end, start + n)])

    def rec(self, item: int, score: float, because: tuple[str, ...] = ()) -> Rec:
        return Rec(
            item=int(item),
            artist=str(self.names[item]),
            score=float(score),
            listeners=int(self.listeners[item]),
            plays=int(self.plays[item]),
            mbid=self.mbid[item],
            tags=self.tags_of(int(item)),
            because=because,
        )

    def _item_at(self, position: int) -> int:
        return int(self.by_popularity[np.searchsorted(self._starts, position, side="right") - 1])

    def search(self, query: str, limit: int) -> list[int]:
        """Items whose folded name starts with, then contains, ``query``; popular first."""
        needle = fold_accents(query).replace("\n", " ")
        if not needle or limit <= 0:
            return []
        found: list[int] = []
        seen: set[int] = set()
        for pattern, offset in (("\n" + needle, 1), (needle, 0)):
            pos = self._blob.find(pattern)
            while pos != -1 and len(found) < limit:
                item = self._item_at(pos + offset)
                if item not in seen:
                    seen.add(item)
                    found.append(item)
                pos = self._blob.find(pattern, pos + 1)
            if len(found) >= limit:
                break
        return found

    @cached_property
    def _fuzzy_pool(self) -> list[str]:
        return list(self.folded[self.by_popularity[:FUZZY_POOL]])

    def suggest(self, name: str, n: int = SUGGESTIONS) -> list[str]:
        """Close artist names: prefix/substring hits, then difflib over popular names."""
        items = self.search(name, n)
        folded = fold_accents(name)
        if len(items) < n and folded:
            for match in difflib.get_close_matches(folded, self._fuzzy_pool, n=n, cutoff=0.6):
                item = self.by_name[match]
                if item not in items:
                    items.append(item)
        return [str(self.names[i]) for i in items[:n]]

    def resolve(self, name: str) -> int | None:
        return self.by_name.get(fold_accents(name))

    def require(self, name: str) -> int:
        item = self.resolve(name)
        if item is None:
            raise UnknownArtistError(f"artist {name!r} is not in the catalogue", self.suggest(name))
        return item


class Recommender:
    """Scores users, moods, artists and new listeners against one loaded model."""

    def __init__(
        self,
        artifact: ModelArtifact,
        index: IndexKind = "hnsw",
        ef: int | None = None,
        ef_cosine: int | None = None,
        moods_path: str | Path | None = None,
        mood_weight: float = DEFAULT_MOOD_WEIGHT,
        save_index: bool = True,
    ):
        started = time.perf_counter()
        self.artifact = artifact
        self.manifest = artifact.manifest
        self.version = artifact.version
        self.mood_weight = mood_weight
        self.model = artifact.model
        self.kind = artifact.kind
        self.train = artifact.train_matrix
        self.n_users, self.n_items = (int(x) for x in self.train.shape)
        self.user_ids = pd.Index(artifact.users["user_id"].astype(str))
        tags = read_tags(artifact.path / layout.TAGS)
        self.catalogue = Catalogue(artifact.items, tags)
        self.config = train_config(artifact.manifest.get("params", {}))
        self.totals = item_totals(self.train)
        self.index_kind: str = index
        unit: Callable[[np.ndarray], np.ndarray]
        if self.model.has_factors:
            self.user_factors = artifact.user_factors
            # Copy-on-write map: implicit's solver wants a writable buffer; nothing is copied.
            self.item_factors = np.load(
                artifact.path / layout.ITEM_FACTORS, mmap_mode="c", allow_pickle=False
            )
            self.n_factors = int(self.item_factors.shape[1])
            self.vectors = ItemVectors(self.item_factors)
            kwargs = {"ef": ef} if ef else {}
            if ef_cosine:
                kwargs["ef_cosine"] = ef_cosine
            self.indexes: IndexPair = open_indexes(
                artifact.path, self.vectors, index, save=save_index, **kwargs
            )
            self._solver = self._fold_in_model()
            unit = self.vectors.unit
        else:
            # Item-space kinds score histories through their item x item matrix; moods become
            # artist profiles in item space (one-hot rows averaged like unit factors).
            self.n_factors = 0
            self.index_kind = "item-item"
            unit = self._one_hot
        self._mean_total = float(self.totals.mean()) if len(self.totals) else 0.0
        # Sorted, duplicate-free rows can be weighted straight from the CSR arrays.
        self._canonical_train = bool(self.train.has_canonical_format)
        self.mood_specs = load_mood_specs(moods_path)
        self.moods: dict[str, ResolvedMood] = resolve_moods(
            self.mood_specs,
            unit,
            self.catalogue.by_name,
            self.catalogue.listeners,
            tags,
        )
        self._mood_answers: dict[str, list[Rec]] = {}
        self.load_seconds = time.perf_counter() - started

    def _one_hot(self, ids: np.ndarray) -> np.ndarray:
        rows = np.zeros((len(ids), self.n_items), dtype=np.float32)
        rows[np.arange(len(ids)), np.asarray(ids, dtype=np.int64)] = 1.0
        return rows

    @property
    def factor_space(self) -> bool:
        """True for factor models (HNSW / exact search over item factors)."""
        return bool(self.model.has_factors)

    @property
    def unit_items(self) -> np.ndarray:
        """All unit-normalised item factors (computed on first use); factor models only."""
        return self.vectors.unit_all

    def embedding(self, items: np.ndarray) -> np.ndarray:
        """Vectors of ``items`` whose cosine is what /similar ranks by (for the artist map).

        Factor models: unit item factors. Item-space kinds: the items' rows of the similarity
        scores restricted to the same items, unit-normalised.
        """
        items = np.asarray(items, dtype=np.int64)
        if self.factor_space:
            return self.vectors.unit(items)
        _, _ = self.model.similar_items(items[:1], 1)  # model is loaded and fitted
        rows = np.zeros((len(items), len(items)), dtype=np.float32)
        position = {int(item): at for at, item in enumerate(items.tolist())}
        ids, scores = self.model.similar_items(items, min(self.n_items - 1, 200))
        for row in range(len(items)):
            for item, score in zip(ids[row], scores[row], strict=True):
                col = position.get(int(item))
                if col is not None and np.isfinite(score):
                    rows[row, col] = score
        rows[np.arange(len(items)), np.arange(len(items))] = rows.max(initial=0.0)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Recommender:
        """Load an artifact directory (memory-mapped factors) and build the runtime."""
        return cls(ModelArtifact.load(path), **kwargs)

    def _fold_in_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # BLAS thread advice, not ours
            model = AlternatingLeastSquares(
                factors=self.n_factors,
                regularization=self.config.regularization,
                alpha=1.0,  # confidence() already scaled the row
                num_threads=1,
            )
        model.item_factors = self.item_factors
        model.user_factors = np.zeros((1, self.n_factors), dtype=np.float32)
        _ = model.YtY  # computed once here, not on the first request
        return model

    # ------------------------------------------------------------------ lookups

    def user_index(self, user_id: str) -> int:
        try:
            position = self.user_ids.get_loc(user_id)  # hash lookup, no per-call Index
        except (KeyError, TypeError):
            position = -1
        if not isinstance(position, (int, np.integer)):  # duplicated id: first, as before
            position = self.user_ids.get_indexer_for(pd.Index([user_id]))[0]
        if position < 0:
            raise UnknownUserError(
                f"user {user_id!r} is not known to model {self.version}",
                self._close_user_ids(user_id),
            )
        return int(position)

    @cached_property
    def _sorted_user_ids(self) -> list[str]:
        return sorted(self.user_ids)

    def _close_user_ids(self, user_id: str, n: int = SUGGESTIONS) -> list[str]:
        """Known ids sharing the longest prefix with ``user_id``."""
        ids = self._sorted_user_ids
        at = bisect.bisect_left(ids, user_id)
        window = ids[max(0, at - n) : at + n]

        def shared(other: str) -> int:
            return next(
                (i for i, (a, b) in enumerate(zip(user_id, other, strict=False)) if a != b),
                min(len(user_id), len(other)),
            )

        ranked = sorted(window, key=shared, reverse=True)
        return [other for other in ranked if shared(other) >= 3][:n]

    def sample_users(self, limit: int) -> list[str]:
        """Up to ``limit`` user ids spread evenly over the vocabulary."""
        if self.n_users == 0:
            return []
        positions = np.linspace(0, self.n_users - 1, num=min(limit, self.n_users)).astype(int)
        return [str(self.user_ids[p]) for p in np.unique(positions)]

    def history(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """A known user's training items and their confidence weights."""
        if self._canonical_train:
            return self._history_fast(user)
        row = self.train[user]
        weights = confidence(row, self.config, totals=self.totals)
        return row.indices.astype(np.int64), weights.data.astype(np.float32)

    def _history_fast(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`history` from the CSR arrays: the same arithmetic as
        :func:`musicrec.models.confidence.confidence` on the user's row, with no matrix built."""
        start, end = int(self.train.indptr[user]), int(self.train.indptr[user + 1])
        items = self.train.indices[start:end].astype(np.int64)
        data = self.train.data[start:end].astype(np.float64)
        config = self.config
        if config.weighting == "log1p":
            data = np.log1p(data)
        elif config.weighting == "bm25":
            data = bm25_weight(
                data,
                self.totals[items],
                self._mean_total,
                np.log1p(np.float64(end - start)),
                len(self.totals),
                config.bm25_k1,
                config.bm25_b,
            )
        data *= config.alpha
        return items, data.astype(np.float32)

    def mood(self, name: str) -> ResolvedMood:
        key = name.strip().lower()
        mood = self.moods.get(key)
        if mood is None:
            valid = list(self.moods)
            raise UnknownMoodError(
                f"unknown mood {name!r}; valid moods: {', '.join(valid)}",
                difflib.get_close_matches(key, valid, n=SUGGESTIONS, cutoff=0.5) or valid,
            )
        if not mood.available:
            raise MoodUnavailableError(mood.reason)
        return mood

    # ------------------------------------------------------------------ scoring

    def _explain(
        self, items: np.ndarray, history: np.ndarray, weights: np.ndarray
    ) -> list[tuple[str, ...]]:
        """Per item, the history artists that contribute most to its score.

        Factor models: ``weight x cosine`` of item factors. Item-space kinds: the exact terms
        ``weight[h] * S[h, item]`` of the score.
        """
        if not len(history) or not len(items):
            return [() for _ in items]
        if len(history) > EXPLAIN_HISTORY:
            keep = np.argsort(-weights, kind="stable")[:EXPLAIN_HISTORY]
            history, weights = history[keep], weights[keep]
        if self.factor_space:
            contrib = (self.vectors.unit(history) @ self.vectors.unit(items).T) * weights[:, None]
        else:
            contrib = self._item_contributions(history, items) * weights[:, None]
        contrib[history[:, None] == items[None, :]] = -np.inf  # never "because of itself"
        top = np.argsort(-contrib, axis=0, kind="stable")[:EXPLAIN_TOP]
        names = self.catalogue.names
        return [
            tuple(str(names[history[r]]) for r in top[:, col] if contrib[r, col] > 0)
            for col in range(len(items))
        ]

    def _item_contributions(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``S[history][:, items]`` of the item-item part of the model (dense)."""
        from musicrec.models.itemitem import ItemItemModel

        model = self.model
        parts = [model] + [getattr(model, name, None) for name in ("first", "second")]
        for part in parts:
            if isinstance(part, ItemItemModel):
                block = part.similarity[history][:, items]
                return np.asarray(block.toarray() if sp.issparse(block) else block, np.float32)
        return np.zeros((len(history), len(items)), dtype=np.float32)

    def _recs(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        history: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> list[Rec]:
        reasons: list[tuple[str, ...]] = [() for _ in ids]
        if history is not None and weights is not None:
            reasons = self._explain(ids, history, weights)
        return [
            self.catalogue.rec(int(i), float(s), r)
            for i, s, r in zip(ids, scores, reasons, strict=True)
        ]

    def recommend_user(self, user_id: str, k: int, mood: str | None = None) -> list[Rec]:
        """Top-``k`` unplayed artists for a known user, optionally blended with a mood."""
        user = self.user_index(user_id)
        history, weights = self.history(user)
        if not self.factor_space:
            ids, scores = self._item_space_user(user, k, mood)
            return self._recs(ids, scores, history, weights)
        query = np.asarray(self.user_factors[user], dtype=np.float32)
        query = self._with_mood(query, mood)
        ids, scores = self.indexes.inner.search(query, k, exclude=history)
        return self._recs(ids, scores, history, weights)

    def fold_in(
        self, user: int | None, extra_items: np.ndarray, extra_plays: np.ndarray, banned: np.ndarray
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """A user vector re-solved from history (``user``, if known) plus new plays, minus bans.

        The row is weighted by :func:`confidence` exactly as training rows are, then solved
        with implicit's ``recalculate_user`` against the fixed item factors. Returns the
        vector and the weighted row (whose items are the listener's history).
        """
        row = self._plays_row(user, extra_items, extra_plays, banned)
        weighted = confidence(row, self.config, totals=self.totals)
        if weighted.nnz == 0:
            return np.zeros(self.n_factors, dtype=np.float32), weighted
        vector = self._solver.recalculate_user(0, weighted)
        return np.asarray(vector, dtype=np.float32).ravel(), weighted

    def recommend_user_live(
        self,
        user_id: str,
        k: int,
        mood: str | None = None,
        *,
        extra_items: np.ndarray | None = None,
        extra_plays: np.ndarray | None = None,
        banned: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        fresh_weight: float = 0.0,
    ) -> list[Rec]:
        """:meth:`recommend_user` with listening events the model has not seen yet.

        ``extra_items``/``extra_plays`` (new plays) and ``banned`` items re-solve the user's
        vector by :meth:`fold_in`; a user unknown to the model is served from the new plays
        alone. ``fresh_weight`` blends in, like a mood, the direction of the new plays alone
        (a listener's current session; a long history otherwise outweighs it). ``banned``
        and ``exclude`` items are never recommended, and the list still has ``k`` items
        whenever the catalogue has that many others.
        """
        empty = np.empty(0, dtype=np.int64)
        extra_items = empty if extra_items is None else np.asarray(extra_items, dtype=np.int64)
        if extra_plays is None:
            extra_plays = np.ones(len(extra_items), dtype=np.float32)
        banned = empty if banned is None else np.asarray(banned, dtype=np.int64)
        exclude = empty if exclude is None else np.asarray(exclude, dtype=np.int64)
        if not len(extra_items) and not len(banned) and not len(exclude):
            return self.recommend_user(user_id, k, mood=mood)
        position = int(self.user_ids.get_indexer(pd.Index([user_id]))[0])
        user = position if position >= 0 else None
        if user is None and not len(extra_items):
            self.user_index(user_id)  # raises UnknownUserError with suggestions
        if not self.factor_space:
            return self._item_space_live(
                user, k, mood, extra_items, extra_plays, banned, exclude, fresh_weight
            )
        if len(extra_items) or len(banned):
            query, weighted = self.fold_in(user, extra_items, extra_plays, banned)
            history = weighted.indices.astype(np.int64)
            weights = weighted.data.astype(np.float32)
            if fresh_weight > 0 and user is not None and len(extra_items):
                fresh, _ = self.fold_in(None, extra_items, extra_plays, banned)
                whole, new = float(np.linalg.norm(query)), float(np.linalg.norm(fresh))
                if whole > 0 and new > 0:
                    blend = (1.0 - fresh_weight) * (query / whole) + fresh_weight * (fresh / new)
                    query = blend.astype(np.float32)
        else:
            assert user is not None
            history, weights = self.history(user)
            query = np.asarray(self.user_factors[user], dtype=np.float32)
        query = self._with_mood(query, mood)
        blocked = np.unique(np.concatenate([history, banned, exclude]))
        ids, scores = self.indexes.inner.search(query, k, exclude=blocked)
        return self._recs(ids, scores, history, weights)

    def recommend_mood(self, name: str, k: int) -> list[Rec]:
        """Top-``k`` artists along the mood's direction; explained by its defining artists."""
        mood = self.mood(name)
        if k > MOOD_ANSWER_K:
            return self._mood_recs(mood, k)
        answer = self._mood_answers.get(mood.spec.name)
        if answer is None:  # a race computes it twice, harmlessly (Recs are immutable)
            answer = self._mood_answers[mood.spec.name] = self._mood_recs(mood, MOOD_ANSWER_K)
        return answer[:k]

    def _mood_recs(self, mood: ResolvedMood, k: int) -> list[Rec]:
        assert mood.vector is not None  # mood() raises for unavailable moods
        if self.factor_space:
            ids, scores = self.indexes.inner.search(mood.vector, k)
        else:
            nothing = sp.csr_matrix((1, self.n_items), dtype=np.float32)
            ids, scores = _first_row(
                self.model.recommend_listener(self._profile(mood), k, exclude=nothing)
            )
        defining = np.unique(np.concatenate([mood.seed_items, mood.tag_items]))
        return self._recs(ids, scores, defining, np.ones(len(defining), dtype=np.float32))

    def recommend_random(self, k: int, seed: int | None = None) -> list[Rec]:
        """``k`` distinct artists drawn with probability proportional to log listeners."""
        rng = np.random.default_rng(seed)
        weights = np.log1p(self.catalogue.listeners.astype(np.float64))
        if weights.sum() <= 0:
            weights = np.ones(self.n_items)
        k = min(k, int(np.count_nonzero(weights)))
        ids = rng.choice(self.n_items, size=k, replace=False, p=weights / weights.sum())
        return self._recs(ids, np.zeros(len(ids), dtype=np.float32))

    def charts(self, k: int) -> list[Rec]:
        """The ``k`` artists with the most listeners."""
        ids = self.catalogue.by_popularity[:k]
        return self._recs(ids, self.catalogue.listeners[ids].astype(np.float32))

    def similar(self, name: str, k: int) -> tuple[str, list[Rec]]:
        """Resolved artist name and its ``k`` nearest artists by cosine of item factors."""
        item = self.catalogue.require(name)
        if not self.factor_space:
            ids, scores = _first_row(self.model.similar_items(np.array([item]), k))
            return str(self.catalogue.names[item]), self._recs(ids, scores)
        query = self.vectors.unit(np.array([item], dtype=np.int64))[0]
        ids, scores = self.indexes.cosine.search(query, k, exclude=np.array([item], dtype=np.int64))
        return str(self.catalogue.names[item]), self._recs(ids, scores)

    def recommend_listener(
        self, artists: list[str], plays: list[float] | None, k: int
    ) -> ListenerResult:
        """Fold a listener the model has never seen into it (no retraining) and recommend."""
        counts: dict[int, float] = {}
        used: list[str] = []
        unknown: list[str] = []
        for position, name in enumerate(artists):
            item = self.catalogue.resolve(name)
            if item is None:
                unknown.append(name)
                continue
            if item not in counts:
                used.append(str(self.catalogue.names[item]))
            counts[item] = counts.get(item, 0.0) + (plays[position] if plays else 1.0)
        if not counts:
            suggestions: list[str] = []
            for name in unknown[:3]:
                suggestions += [s for s in self.catalogue.suggest(name, 3) if s not in suggestions]
            raise UnknownArtistError(
                f"none of the {len(artists)} artist(s) are in the catalogue", suggestions
            )
        items = np.fromiter(counts, dtype=np.int64, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        row = sp.csr_matrix(
            (values, (np.zeros(len(items), dtype=np.int64), items)), shape=(1, self.n_items)
        )
        weighted = confidence(row, self.config, totals=self.totals)
        if self.factor_space:
            user = self._solver.recalculate_user(0, weighted)
            ids, scores = self.indexes.inner.search(
                user, k, exclude=weighted.indices.astype(np.int64)
            )
        else:
            ids, scores = _first_row(self.model.recommend_listener(row, k))
        recs = self._recs(
            ids, scores, weighted.indices.astype(np.int64), weighted.data.astype(np.float32)
        )
        return ListenerResult(recs, used, unknown)

    def search_artists(self, query: str, limit: int) -> list[int]:
        return self.catalogue.search(query, limit)

    # ------------------------------------------------------------------ item-space kinds

    def _profile(self, mood: ResolvedMood) -> sp.csr_matrix:
        """A mood's artist profile as a pseudo-listener row (the heaviest artist: 10 plays)."""
        assert mood.vector is not None
        items = np.flatnonzero(mood.vector > 0)
        plays = 10.0 * mood.vector[items] / float(mood.vector[items].max())
        return sp.csr_matrix(
            (plays.astype(np.float32), (np.zeros(len(items), dtype=np.int64), items)),
            shape=(1, self.n_items),
        )

    def _with_mood(self, query: np.ndarray, mood: str | None) -> np.ndarray:
        """``query`` blended (unit norms) with the mood's direction in factor space."""
        if mood is None:
            return query
        vector = self.mood(mood).vector
        norm = float(np.linalg.norm(query))
        if norm > 0 and vector is not None:
            blend = (1.0 - self.mood_weight) * query / norm + self.mood_weight * vector
            return blend.astype(np.float32)
        return query

    def _plays_row(
        self, user: int | None, items: np.ndarray, plays: np.ndarray, banned: np.ndarray
    ) -> sp.csr_matrix:
        """Raw plays of the user's training row (if known) plus ``items``, minus ``banned``
        (the stored row is read in place: no sparse slicing per request)."""
        items = np.asarray(items, dtype=np.int64)
        plays = np.asarray(plays, dtype=np.float64)
        if user is not None:
            start, end = self.train.indptr[user], self.train.indptr[user + 1]
            items = np.concatenate([self.train.indices[start:end].astype(np.int64), items])
            plays = np.concatenate([self.train.data[start:end].astype(np.float64), plays])
        if len(banned):
            keep = ~np.isin(items, banned)
            items, plays = items[keep], plays[keep]
        items, where = np.unique(items, return_inverse=True)
        summed = np.bincount(where, weights=plays, minlength=len(items)).astype(np.float32)
        return sp.csr_matrix((summed, items, [0, len(items)]), shape=(1, self.n_items))

    def _item_space_live(
        self,
        user: int | None,
        k: int,
        mood: str | None,
        extra_items: np.ndarray,
        extra_plays: np.ndarray,
        banned: np.ndarray,
        exclude: np.ndarray,
        fresh_weight: float,
    ) -> list[Rec]:
        """:meth:`recommend_user_live` for item-space kinds: the events join the history."""
        row = self._plays_row(user, extra_items, extra_plays, banned)
        mixed = _unit_max(self.model.scores(None, row))
        if fresh_weight > 0 and user is not None and len(extra_items):
            fresh = self._plays_row(None, extra_items, extra_plays, banned)
            mixed = (1.0 - fresh_weight) * mixed + fresh_weight * _unit_max(
                self.model.scores(None, fresh)
            )
        if mood is not None:
            profile = self._profile(self.mood(mood))
            mixed = (1.0 - self.mood_weight) * mixed + self.mood_weight * _unit_max(
                self.model.scores(None, profile)
            )
        blocked = np.unique(np.concatenate([row.indices.astype(np.int64), banned, exclude]))
        blocked_row = sp.csr_matrix(
            (np.ones(len(blocked), dtype=np.float32), blocked, [0, len(blocked)]),
            shape=(1, self.n_items),
        )
        ids, scores = _first_row(topk_dense(mixed.astype(np.float32), k, blocked_row))
        weighted = confidence(row, self.config, totals=self.totals)
        return self._recs(
            ids, scores, weighted.indices.astype(np.int64), weighted.data.astype(np.float32)
        )

    def _item_space_user(
        self, user: int, k: int, mood: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        row = self.train[[user]]
        users = np.array([user], dtype=np.int64)
        if mood is None:
            return _first_row(self.model.recommend(users, row, k))
        profile = self._profile(self.mood(mood))
        mixed = (1.0 - self.mood_weight) * _unit_max(self.model.scores(users, row))
        mixed += self.mood_weight * _unit_max(self.model.scores(None, profile))
        return _first_row(topk_dense(mixed.astype(np.float32), k, row))


def _first_row(ranking: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The first row of a ranking without its ``-1`` padding."""
    ids, scores = ranking
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def _unit_max(scores: np.ndarray) -> np.ndarray:
    top = np.abs(scores).max(axis=1, keepdims=True)
    return np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)
