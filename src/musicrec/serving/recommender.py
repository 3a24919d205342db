"""The serving runtime: a façade over one loaded model, its catalogue and its moods.

Every answer goes through the model's one-listener API (``user_query`` / ``fold_in`` /
``direction_query`` -> ``blend`` -> ``rank`` -> ``explain``, ``similar``), whatever its kind;
this module resolves names and ids, blends moods and fresh plays, and shapes the answers.

A :class:`Recommender` is immutable after construction, so the API can swap a new one in with a
single reference assignment while requests in flight finish on the old one.
"""

from __future__ import annotations

import bisect
import difflib
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musicrec import layout
from musicrec.errors import (
    MoodUnavailableError,
    UnknownArtistError,
    UnknownMoodError,
    UnknownUserError,
)
from musicrec.models.artifact import ModelArtifact
from musicrec.models.query import Query
from musicrec.rules import NEUTRAL, Dials, ListenerState
from musicrec.serving.catalogue import SUGGESTIONS, Catalogue, Rec
from musicrec.serving.moods import ResolvedMood, load_mood_specs, read_tags, resolve_moods
from musicrec.serving.rules import Ranking, ServingRules, listener_of

__all__ = ["DEFAULT_MOOD_WEIGHT", "ListenerResult", "Rec", "Recommender"]

DEFAULT_MOOD_WEIGHT = 0.5
# A mood's answer depends on the model only: one top-100 list per mood (the API's largest k)
# is computed on first use and every k up to it is served from its prefix.
MOOD_ANSWER_K = 100
NO_ITEMS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class ListenerResult:
    recs: list[Rec]
    used: list[str]
    unknown: list[str]


class Recommender:
    """Scores users, moods, artists and new listeners against one loaded model."""

    def __init__(
        self,
        artifact: ModelArtifact,
        index: str = "hnsw",
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
        self.index_built = self.model.open_index(
            artifact.path, index, ef=ef, ef_cosine=ef_cosine, save=save_index
        )
        self.kind = artifact.kind
        self.train = artifact.train_matrix
        self.n_users, self.n_items = (int(x) for x in self.train.shape)
        self.user_ids = pd.Index(artifact.users["user_id"].astype(str))
        tags = read_tags(artifact.path / layout.TAGS)
        self.catalogue = Catalogue(artifact.items, tags)
        self.rules = ServingRules(self.model, self.catalogue, tags)
        self.mood_specs = load_mood_specs(moods_path)
        self.moods: dict[str, ResolvedMood] = resolve_moods(
            self.mood_specs,
            self.model.item_directions,
            self.catalogue.by_name,
            self.catalogue.listeners,
            tags,
        )
        self._mood_queries: dict[str, Query] = {}
        self._mood_answers: dict[str, list[Rec]] = {}
        self.load_seconds = time.perf_counter() - started

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Recommender:
        """Load an artifact directory (memory-mapped files) and build the runtime."""
        return cls(ModelArtifact.load(path), **kwargs)

    @property
    def n_factors(self) -> int:
        return self.model.n_factors

    @property
    def index_kind(self) -> str:
        return self.model.index_kind

    def embedding(self, items: np.ndarray) -> np.ndarray:
        """Vectors of ``items`` whose cosine is what /similar ranks by (for the artist map)."""
        return self.model.embedding(np.asarray(items, dtype=np.int64))

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
        query = self.model.user_query(user)
        return query.items, query.weights

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

    def search_artists(self, query: str, limit: int) -> list[int]:
        return self.catalogue.search(query, limit)

    # ------------------------------------------------------------------ answers

    def _recs(self, ids: np.ndarray, scores: np.ndarray, query: Query | None = None) -> list[Rec]:
        """Answer rows; with ``query``, each explained by the history items behind it."""
        reasons: list[tuple[int, ...]] = [() for _ in ids]
        if query is not None:
            reasons = self.model.explain(query, ids)
        names = self.catalogue.names
        return [
            self.catalogue.rec(int(i), float(s), tuple(str(names[h]) for h in r))
            for i, s, r in zip(ids, scores, reasons, strict=True)
        ]

    def _ruled(
        self,
        ranking: Ranking,
        k: int,
        dials: Dials,
        listener: ListenerState | None,
        query: Query | None,
        explain: Query | None = None,
        now: float | None = None,
    ) -> list[Rec]:
        """The list the rule chain makes from ``ranking``; fills (popular or familiar artists)
        get the ``query``'s score for them (0 without one); explained by ``explain or query``."""
        listed = self.rules.apply(ranking, k, dials, listener, now)
        scores = listed.scores
        missing = np.isnan(scores)
        if missing.any():
            fill = self.model.query_scores(query)[listed.ids[missing]] if query is not None else 0.0
            scores = np.where(missing, 0.0, scores)
            scores[missing] = fill
        return self._recs(listed.ids, scores, explain or query)

    def _mood_query(self, mood: ResolvedMood) -> Query:
        query = self._mood_queries.get(mood.spec.name)
        if query is None:  # a race computes it twice, harmlessly (queries are immutable)
            assert mood.vector is not None  # mood() raises for unavailable moods
            query = self._mood_queries[mood.spec.name] = self.model.direction_query(mood.vector)
        return query

    def _with_mood(self, query: Query, mood: str | None) -> Query:
        """``query`` blended with the mood's direction (``mood_weight`` of it)."""
        if mood is None:
            return query
        return self.model.blend(query, self._mood_query(self.mood(mood)), self.mood_weight)

    def recommend_user(
        self,
        user_id: str,
        k: int,
        mood: str | None = None,
        dials: Dials = NEUTRAL,
        listener: ListenerState | None = None,
    ) -> list[Rec]:
        """Top-``k`` unplayed artists for a known user, optionally blended with a mood, under
        the rule chain's ``dials`` (``listener``: bans, recent events, exposure)."""
        query = self._with_mood(self.model.user_query(self.user_index(user_id)), mood)
        if dials.neutral and listener is None:
            ids, scores = self.model.rank(query, k)
            return self._recs(ids, scores, query)
        ranking: Ranking = lambda n: self.model.rank(query, n)  # noqa: E731
        return self._ruled(ranking, k, dials, listener_of(query, listener), query)

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
        dials: Dials = NEUTRAL,
        listener: ListenerState | None = None,
        now: float | None = None,
    ) -> list[Rec]:
        """:meth:`recommend_user` with listening events the model has not seen yet.

        ``extra_items``/``extra_plays`` (new plays) and ``banned`` items are folded in with the
        user's history (the model re-solves the listener); a user unknown to the model is
        served from the new plays alone. ``fresh_weight`` blends in, like a mood, the new plays
        alone (a listener's current session; a long history otherwise outweighs it). ``banned``
        and ``exclude`` items are never recommended, and the list still has ``k`` items
        whenever the catalogue has that many others. ``listener`` (the bans with their
        ``until``, judged at ``now``, and recent events) and ``dials`` go to the rule chain.
        """
        extra_items = NO_ITEMS if extra_items is None else np.asarray(extra_items, dtype=np.int64)
        if extra_plays is None:
            extra_plays = np.ones(len(extra_items), dtype=np.float32)
        banned = NO_ITEMS if banned is None else np.asarray(banned, dtype=np.int64)
        if listener is not None:
            banned = np.union1d(banned, listener.active_bans(time.time() if now is None else now))
        exclude = NO_ITEMS if exclude is None else np.asarray(exclude, dtype=np.int64)
        if not len(extra_items) and not len(banned) and not len(exclude):
            return self.recommend_user(user_id, k, mood=mood, dials=dials, listener=listener)
        position = int(self.user_ids.get_indexer(pd.Index([user_id]))[0])
        user = position if position >= 0 else None
        if user is None and not len(extra_items):
            self.user_index(user_id)  # raises UnknownUserError with suggestions
        if len(extra_items) or len(banned):
            query = self.model.fold_in(*self._plays(user, extra_items, extra_plays, banned))
            if fresh_weight > 0 and user is not None and len(extra_items):
                fresh = self.model.fold_in(*self._plays(None, extra_items, extra_plays, banned))
                query = self.model.blend(query, fresh, fresh_weight)
        else:
            assert user is not None
            query = self.model.user_query(user)
        query = self._with_mood(query, mood)
        hidden = np.concatenate([banned, exclude])
        if dials.neutral and listener is None:
            ids, scores = self.model.rank(query, k, exclude=hidden)
            return self._recs(ids, scores, query)
        ranking: Ranking = lambda n: self.model.rank(query, n, exclude=hidden)  # noqa: E731
        return self._ruled(ranking, k, dials, listener_of(query, listener), query, now=now)

    def _plays(
        self, user: int | None, items: np.ndarray, plays: np.ndarray, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
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
        return items, plays

    def recommend_mood(self, name: str, k: int, dials: Dials = NEUTRAL) -> list[Rec]:
        """Top-``k`` artists along the mood's direction; explained by its defining artists."""
        mood = self.mood(name)
        if not dials.neutral:
            query = self._mood_query(mood)
            ranking: Ranking = lambda n: self.model.rank(query, n)  # noqa: E731
            return self._ruled(ranking, k, dials, None, query, self._mood_defining(mood))
        if k > MOOD_ANSWER_K:
            return self._mood_recs(mood, k)
        answer = self._mood_answers.get(mood.spec.name)
        if answer is None:  # a race computes it twice, harmlessly (Recs are immutable)
            answer = self._mood_answers[mood.spec.name] = self._mood_recs(mood, MOOD_ANSWER_K)
        return answer[:k]

    def _mood_recs(self, mood: ResolvedMood, k: int) -> list[Rec]:
        ids, scores = self.model.rank(self._mood_query(mood), k)
        return self._recs(ids, scores, self._mood_defining(mood))

    @staticmethod
    def _mood_defining(mood: ResolvedMood) -> Query:
        defining = np.unique(np.concatenate([mood.seed_items, mood.tag_items]))
        return Query.of_items(defining, np.ones(len(defining)))

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

    def similar(self, name: str, k: int, dials: Dials = NEUTRAL) -> tuple[str, list[Rec]]:
        """Resolved artist name and its ``k`` most similar artists under the model."""
        item = self.catalogue.require(name)
        resolved = str(self.catalogue.names[item])
        if dials.neutral:
            return resolved, self._recs(*self.model.similar(item, k))
        ranking: Ranking = lambda n: self.model.similar(item, n)  # noqa: E731
        seed = ListenerState.of(played=[item])  # the artist itself is never its own neighbour
        return resolved, self._ruled(ranking, k, dials, seed, None)

    def recommend_listener(
        self, artists: list[str], plays: list[float] | None, k: int, dials: Dials = NEUTRAL
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
        query = self.model.fold_in(items, values)
        if dials.neutral:
            return ListenerResult(self._recs(*self.model.rank(query, k), query), used, unknown)
        ranking: Ranking = lambda n: self.model.rank(query, n)  # noqa: E731
        recs = self._ruled(ranking, k, dials, listener_of(query), query)
        return ListenerResult(recs, used, unknown)
