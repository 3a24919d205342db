"""The rule chain on the served model: every list a route returns goes through it.

:class:`ServingRules` is built once per loaded model (the catalogue's listeners and tags as
:class:`~musicrec.rules.ItemMeta`, the tag vocabulary requests are resolved against, the
popularity order of the last back-fill, and the model's item similarity for diversity). Each
request then over-fetches candidates from the model's ranking and lets
:func:`~musicrec.rules.apply_rules` make the list: exactly ``min(k, eligible)`` distinct
artists, never a banned or excluded one, deeper candidates and popular artists filling in
where the rules remove some.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from musicrec.models.base import Model
from musicrec.models.query import Query
from musicrec.rules import (
    NEUTRAL,
    Candidates,
    Dials,
    ItemMeta,
    ListenerState,
    RuleResult,
    TagVocabulary,
    apply_rules,
)
from musicrec.rules.chain import MMR_POOL_FACTOR
from musicrec.serving.catalogue import Catalogue
from musicrec.serving.moods import TagTable

# Candidates fetched per listed artist when some dial is set. Diversity chooses among the best
# MMR_POOL_FACTOR x k (rules.chain): fetching that many at once spares it a second model query;
# the hard rules that remove more than that are served by the chain's deeper calls.
OVERFETCH = MMR_POOL_FACTOR
Ranking = Callable[[int], tuple[np.ndarray, np.ndarray]]
RemovedObserver = Callable[[dict[str, int]], None]


@dataclass(frozen=True)
class Listed:
    """A list the chain made: item ids, scores (the model's), and what each rule removed."""

    ids: np.ndarray
    scores: np.ndarray
    removed: dict[str, int]


def listener_of(query: Query, base: ListenerState | None = None) -> ListenerState:
    """``base`` (bans, recent events, exposure) with the query's history as what was played."""
    base = base or ListenerState()
    return ListenerState(
        played=np.asarray(query.items, dtype=np.int64),
        weights=np.asarray(query.weights, dtype=np.float64),
        bans=base.bans,
        ban_until=base.ban_until,
        last_event=base.last_event,
        last_event_at=base.last_event_at,
        exposure=base.exposure,
    )


class ServingRules:
    """The chain's inputs for one loaded model, and the chain applied to its rankings."""

    def __init__(self, model: Model, catalogue: Catalogue, tags: TagTable | None):
        self.model = model
        if tags is None or not len(tags):
            self.meta = ItemMeta.build(catalogue.listeners)
            self.vocabulary = TagVocabulary([])
        else:
            self.meta = ItemMeta.build(
                catalogue.listeners, tags.items, tags.codes, tags.weights, tags.names
            )
            self.vocabulary = TagVocabulary(tags.names)
        self.popularity = np.asarray(catalogue.by_popularity, dtype=np.int64)
        # Told what each rule removed from every list the chain makes (the API's counter).
        self.observer: RemovedObserver | None = None

    def similarity(self, ids: np.ndarray) -> np.ndarray:
        """Cosine of the model's embedding of ``ids`` (what ``/similar`` ranks by)."""
        rows = np.asarray(self.model.embedding(np.asarray(ids, dtype=np.int64)), np.float32)
        norms = np.linalg.norm(rows, axis=1)
        rows = rows * np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
        sim: np.ndarray = rows @ rows.T
        np.fill_diagonal(sim, 1.0)
        return sim

    def apply(
        self,
        ranking: Ranking,
        k: int,
        dials: Dials = NEUTRAL,
        listener: ListenerState | None = None,
        now: float | None = None,
    ) -> Listed:
        """The list of ``k`` from ``ranking(n)`` (the model's top ``n``) under the rules."""
        first = k if dials.neutral else OVERFETCH * k
        ids, scores = ranking(min(first, self.meta.n_items))

        def deeper(n: int) -> Candidates:
            return Candidates.of(*ranking(n))

        result: RuleResult = apply_rules(
            Candidates.of(ids, scores),
            k,
            meta=self.meta,
            popularity=self.popularity,
            now=time.time() if now is None else now,
            listener=listener,
            dials=dials,
            deeper=deeper,
            similarity=self.similarity if dials.diversity > 0 else None,
        )
        if self.observer is not None:
            self.observer(result.removed)
        return Listed(result.ids, result.scores, result.removed)
