"""Beyond accuracy: novelty, intra-list diversity, popularity lift, coverage and Gini.

Per listener (a value per test user, averaged like the accuracy metrics):

- ``novelty@K``         mean self-information of the recommended artists, -log2(share of training
                        listeners who played the artist); an artist no one played in training
                        counts as one listener.
- ``diversity@K``       intra-list diversity: mean over the pairs of recommended artists of
                        1 - cosine of their tag profiles (tag weights). A pair with an artist that
                        has no tags uses the model's item similarity instead (``similar_items``,
                        scaled so the artist's nearest neighbour is 1; 0 outside the neighbours
                        asked for). NaN for a list of fewer than two artists.
- ``popularity_lift@K`` mean popularity (share of training listeners) of the recommended artists
                        over the mean popularity of the listener's own training artists.

Over the catalogue (aggregates of the exposure counts: in how many top-K lists each artist is):

- ``coverage@K``        share of the catalogue in anyone's top K.
- ``gini@K``            Gini coefficient of exposure over the whole catalogue (0: every artist
                        shown equally often; 1: one artist takes every slot).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

SimilarItems = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
# Neighbours asked of the model per untagged artist: the whole catalogue when it fits this many
# cells in all, fewer otherwise (never under FALLBACK_MIN_NEIGHBOURS).
FALLBACK_CELLS = 4_000_000
FALLBACK_MIN_NEIGHBOURS = 50
PER_USER = ("novelty", "diversity", "popularity_lift")
AGGREGATE = ("coverage", "gini")


@dataclass
class ItemSpace:
    """What the beyond-accuracy metrics know about the catalogue (from the training split)."""

    listeners: np.ndarray  # training listeners per artist
    n_users: int
    profiles: sp.csr_matrix  # L2-normalised tag profiles, zero rows for untagged artists
    tagged: np.ndarray  # bool per artist
    fallback: sp.csr_matrix | None  # similarity of pairs with an untagged artist, symmetric

    @property
    def popularity(self) -> np.ndarray:
        return self.listeners / max(1, self.n_users)

    @property
    def self_information(self) -> np.ndarray:
        return -np.log2(np.maximum(self.listeners, 1) / max(1, self.n_users))

    @classmethod
    def build(
        cls,
        train: sp.csr_matrix,
        tags: pd.DataFrame | None = None,
        similar_items: SimilarItems | None = None,
    ) -> ItemSpace:
        """From the training matrix, the dataset's tags and the model's ``similar_items``."""
        n_users, n_items = train.shape
        listeners = np.bincount(sp.csr_matrix(train).indices, minlength=n_items)
        profiles = tag_profiles(tags, n_items)
        tagged = np.diff(profiles.indptr) > 0
        fallback = None
        if similar_items is not None and not tagged.all():
            fallback = model_similarity(similar_items, np.flatnonzero(~tagged), n_items)
        return cls(listeners.astype(np.float64), n_users, profiles, tagged, fallback)


def tag_profiles(tags: pd.DataFrame | None, n_items: int) -> sp.csr_matrix:
    """Artists x tags CSR of tag weights, each row scaled to unit length."""
    if tags is None or tags.empty:
        return sp.csr_matrix((n_items, 0), dtype=np.float64)
    tag_codes, _ = pd.factorize(tags["tag"])
    weights = tags["weight"].to_numpy(dtype=np.float64)
    keep = weights > 0
    matrix = sp.csr_matrix(
        (weights[keep], (tags["item_idx"].to_numpy()[keep], tag_codes[keep])),
        shape=(n_items, int(tag_codes.max()) + 1 if len(tag_codes) else 0),
    )
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix)


def model_similarity(
    similar_items: SimilarItems, untagged: np.ndarray, n_items: int
) -> sp.csr_matrix:
    """Symmetric artists x artists similarity for every pair with an untagged artist.

    Row ``u`` comes from ``similar_items(u)``, scaled by its best score and clipped to [0, 1];
    a pair of two untagged artists averages both directions.
    """
    k = min(n_items - 1, max(FALLBACK_MIN_NEIGHBOURS, FALLBACK_CELLS // max(1, len(untagged))))
    ids, scores = similar_items(untagged, k)
    scores = np.asarray(scores, dtype=np.float64)
    top = np.where(ids[:, :1] >= 0, scores[:, :1], 0.0)
    scaled = np.clip(scores / np.where(top > 0, top, np.inf), 0.0, 1.0)
    keep = (ids >= 0) & (scaled > 0) & (ids != untagged[:, None])
    rows = np.repeat(untagged, ids.shape[1]).reshape(ids.shape)[keep]
    one_way = sp.csr_matrix((scaled[keep], (rows, ids[keep])), shape=(n_items, n_items))
    both = one_way + one_way.T
    is_untagged = np.zeros(n_items)
    is_untagged[untagged] = 1.0
    twice = sp.diags(is_untagged) @ both @ sp.diags(is_untagged)  # counted from both rows
    return sp.csr_matrix(both - 0.5 * twice)


def list_matrix(top: np.ndarray, n_items: int, dtype: type = np.float64) -> sp.csr_matrix:
    """Users x artists indicator of each ranked list (``-1`` padding left out)."""
    rows, cols = np.nonzero(top >= 0)
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=dtype), (rows, top[rows, cols])), shape=(len(top), n_items)
    )


def per_user(
    items: ItemSpace, top: np.ndarray, history: sp.csr_matrix, k: int
) -> dict[str, np.ndarray]:
    """``novelty``, ``diversity`` and ``popularity_lift`` at ``k`` for each ranked list."""
    top = top[:, :k]
    filled = top >= 0
    length = filled.sum(axis=1)
    safe = np.where(filled, top, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        novelty = np.where(filled, items.self_information[safe], 0.0).sum(axis=1) / length
        shown = np.where(filled, items.popularity[safe], 0.0).sum(axis=1) / length
        played = sp.csr_matrix(history, dtype=np.float64)
        played.data[:] = 1.0
        own = (played @ items.popularity) / np.diff(played.indptr)
        lift = shown / own
    return {
        "novelty": novelty,
        "diversity": diversity(items, list_matrix(top, len(items.listeners)), length),
        "popularity_lift": lift,
    }


def diversity(items: ItemSpace, lists: sp.csr_matrix, length: np.ndarray) -> np.ndarray:
    """Mean pairwise distance per list, from sums of unit vectors: for unit vectors v_i,
    the sum of cosines over pairs is (|sum v_i|^2 - count) / 2."""
    tagged_lists = sp.csr_matrix(lists @ sp.diags(items.tagged.astype(np.float64)))
    summed = tagged_lists @ items.profiles
    n_tagged = np.asarray(tagged_lists.sum(axis=1)).ravel()
    similarity = (np.asarray(summed.multiply(summed).sum(axis=1)).ravel() - n_tagged) / 2
    pairs = n_tagged * (n_tagged - 1) / 2
    if items.fallback is not None:
        similarity += np.asarray((lists @ items.fallback).multiply(lists).sum(axis=1)).ravel() / 2
        pairs = length * (length - 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, 1.0 - similarity / np.maximum(pairs, 1), np.nan)


def exposure_matrix(top: np.ndarray, k: int, n_items: int) -> sp.csr_matrix:
    """Users x artists indicator (float32): artist ``i`` is in user ``u``'s top ``k``."""
    return list_matrix(top[:, :k], n_items, np.float32)


def gini(exposure: np.ndarray, n_items: int | None = None) -> np.ndarray:
    """Gini coefficient of each column of integer ``exposure`` (artists x resamples).

    ``n_items`` counts artists left out of ``exposure`` because they are never shown (zeros).
    sum_i (2i - n - 1) x_(i) / (n sum x) over the values sorted ascending: from a histogram of
    the values per column when the largest value is below the number of artists (exposure counts
    are small integers), else from a sort.
    """
    counts = np.asarray(exposure)
    rows, b = counts.shape
    n = rows if n_items is None else n_items
    zeros = n - rows
    width = int(counts.max(initial=0)) + 1
    if width > rows:  # a few artists shown very often: sorting is cheaper than the histogram
        ordered = np.sort(np.ascontiguousarray(counts.T), axis=1)
        ranks = (2 * (np.arange(1, rows + 1) + zeros) - n - 1).astype(np.float64)
        total_sorted = ordered.sum(axis=1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.einsum("bi,i->b", ordered, ranks)
            return np.where(total_sorted > 0, spread / (n * total_sorted), np.nan)
    offsets = np.arange(b, dtype=np.float64) * width
    codes: np.ndarray
    if b * width < 1 << 24:  # exact in float32: one narrow pass
        codes = (counts + offsets.astype(np.float32)).astype(np.int32).ravel()
    else:
        codes = (counts + offsets).astype(np.int64).ravel()
    hist = np.bincount(codes, minlength=b * width).reshape(b, width)
    hist[:, 0] += zeros
    below = np.cumsum(hist, axis=1) - hist  # artists with fewer exposures than v
    value = np.arange(width, dtype=np.float64)
    rank_sum = hist * (below + 1) + hist * (hist - 1) / 2  # sum of 1-based ranks holding v
    weighted = np.einsum("bv,v->b", rank_sum, value)  # einsum: no BLAS threads for a matvec
    total = np.einsum("bv,v->b", hist.astype(np.float64), value)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (2 * weighted - (n + 1) * total) / (n * total), np.nan)


def aggregates(exposures: list[sp.csr_matrix]) -> Callable[[np.ndarray], np.ndarray]:
    """A bootstrap statistic: coverage and Gini at each K (one exposure matrix per K, K
    ascending) from a block of user counts ``(b, users)``; columns ``coverage@k1, gini@k1, ...``.

    Only artists in someone's list are counted explicitly (no resample shows the others).
    """
    n_items = exposures[-1].shape[1]
    shown_ever = np.flatnonzero(np.diff(sp.csc_matrix(exposures[-1]).indptr) > 0)
    # Lists at a larger K extend those at a smaller one: multiply only the added ranks.
    added = [exposures[0], *(b - a for a, b in itertools.pairwise(exposures))]
    by_artist = [sp.csr_matrix(part.T)[shown_ever] for part in added]

    def statistic(counts: np.ndarray) -> np.ndarray:
        weights = np.ascontiguousarray(counts.T)
        shown = [by_artist[0] @ weights]
        for part in by_artist[1:]:
            shown.append(shown[-1] + part @ weights)
        return exposure_metrics(shown, n_items)

    return statistic


def exposure_metrics(shown: list[np.ndarray], n_items: int | None = None) -> np.ndarray:
    """Coverage and Gini per column of each ``(artists, b)`` exposure-count matrix (one per K):
    ``(b, 2 * len(shown))``, columns ``coverage@k1, gini@k1, ...``. ``n_items``: the catalogue,
    when the matrices leave out artists never shown."""
    out = []
    for counts in shown:
        n = len(counts) if n_items is None else n_items
        out += [(counts > 0).sum(axis=0) / n, gini(counts, n)]
    return np.stack(out, axis=1)
