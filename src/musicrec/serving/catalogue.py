"""The catalogue a model serves: artist names, popularity and tags, found by name.

Accent- and case-insensitive exact lookup (a hash), prefix-then-substring search over the most
listened first, and close-name suggestions; :class:`Rec` is one answer row.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from musicrec.errors import UnknownArtistError
from musicrec.serving.moods import TagTable
from musicrec.text import fold_accents

TAGS_PER_ARTIST = 3
SUGGESTIONS = 5
FUZZY_POOL = 5000  # most popular names searched by difflib for suggestions


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


def fold_names(names: pd.Series, normalized: bool = False) -> np.ndarray:
    """Accent-folded search keys.

    ``normalized`` names (a dataset's ``artist_key``: NFC, casefolded, spaces collapsed) that
    are ASCII are already folded, which skips the Unicode work for most of a catalogue.
    """
    keys = names.astype(str).tolist()
    if normalized:
        return np.array([k if k.isascii() else fold_accents(k) for k in keys], dtype=object)
    return np.array([fold_accents(k) for k in keys], dtype=object)


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
