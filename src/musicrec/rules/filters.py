"""The hard rules (an item either may be listed or not) and the per-tag cap.

Each candidate is charged to the first rule, in :data:`RULES` order, that removes it, so the
counts add up to the candidates removed and say which rule did the work.
"""

from __future__ import annotations

import numpy as np

from musicrec.rules.cooldown import held_back
from musicrec.rules.inputs import Dials, ItemMeta, ListenerState

RULES: tuple[str, ...] = (
    "banned",
    "excluded_artist",
    "excluded_tag",
    "include_tags",
    "played",
    "recent",
    "cooldown",
    "max_per_tag",
)
UNCAPPED = np.iinfo(np.int64).max
_HARD = len(RULES) - 1  # every rule but max_per_tag: one bit each, in RULES order
_BIT = {rule: np.uint8(1 << position) for position, rule in enumerate(RULES[:_HARD])}
# For each bit pattern, 1 + the position of its lowest bit in RULES (0: no bit set): the rule an
# item is charged to is the first one that removes it.
_FIRST = np.array(
    [0] + [(mask & -mask).bit_length() for mask in range(1, 1 << _HARD)], dtype=np.int8
)


class Filters:
    """One request's hard rules, evaluated on batches of item indices.

    Every rule that goes by item (bans, excluded artists, played, recent, cool-down) sets its
    bit in one per-item byte at construction; a batch then costs one gather, the tag rules'
    table lookups and one table lookup for the first rule of each item.
    """

    def __init__(self, dials: Dials, meta: ItemMeta, listener: ListenerState, now: float):
        self.meta = meta
        self._bits = np.zeros(meta.n_items, dtype=np.uint8)
        item_rules = {
            "banned": listener.active_bans(now),
            "excluded_artist": np.asarray(dials.exclude_artists, dtype=np.int64),
            "played": listener.played,
            "recent": listener.recent(dials.exclude_recent_days, now),
        }
        if dials.cooldown is not None:
            item_rules["cooldown"] = held_back(listener.exposure, now, dials.cooldown)
        for rule, items in item_rules.items():
            self._bits[items] |= _BIT[rule]
        self._exclude_tags = np.asarray(dials.exclude_tags, dtype=np.int64)
        self._include_tags = np.asarray(dials.include_tags, dtype=np.int64)
        self.removed: dict[str, int] = dict.fromkeys(RULES, 0)

    def keep(self, ids: np.ndarray, familiar: bool = False) -> np.ndarray:
        """Mask of ``ids`` every rule allows; ``familiar`` items skip the ``played`` rule."""
        bits = self._bits[ids]
        if len(self._exclude_tags):
            excluded = self.meta.carries_any(ids, self._exclude_tags)
            bits |= excluded.view(np.uint8) * _BIT["excluded_tag"]
        if len(self._include_tags):
            outside = ~self.meta.carries_any(ids, self._include_tags)
            bits |= outside.view(np.uint8) * _BIT["include_tags"]
        if familiar:
            bits &= ~_BIT["played"]
        first = _FIRST[bits]
        counts = np.bincount(first, minlength=_HARD + 1).tolist()
        for position, rule in enumerate(RULES[:_HARD], start=1):
            self.removed[rule] += counts[position]
        allowed: np.ndarray = first == 0
        return allowed


class Caps:
    """``max_per_tag``: at most ``cap`` listed artists share a top tag (untagged: no cap).

    The artists listed so far are counted per tag code in one array, so a tag's room left is
    an index lookup.
    """

    def __init__(self, meta: ItemMeta, cap: int | None):
        self.top_tag = meta.top_tag
        self.cap = cap
        # listed artists per tag code; the last slot (code -1, untagged) stays 0
        self._listed = np.zeros(meta.n_codes + 1 if cap is not None else 0, dtype=np.int64)

    def groups(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compact group of each item and the room each group has left.

        Without a cap every item is in group 0, which has unlimited room.
        """
        if self.cap is None:
            return np.zeros(len(ids), dtype=np.int64), np.array([UNCAPPED], dtype=np.int64)
        codes, group = np.unique(self.top_tag[ids], return_inverse=True)
        room = np.where(codes >= 0, np.maximum(self.cap - self._listed[codes], 0), UNCAPPED)
        return group.astype(np.int64), room

    def capacity(self, ids: np.ndarray) -> int:
        """How many of ``ids`` could be listed together under the cap."""
        return self.fit(self.count(ids))

    def count(self, ids: np.ndarray) -> np.ndarray:
        """How many of ``ids`` carry each top tag (untagged first; all of them without a cap):
        counts of batches add up, so a growing pool is counted once per addition."""
        if self.cap is None:
            return np.array([len(ids)], dtype=np.int64)
        return np.bincount(self.top_tag[ids] + 1, minlength=len(self._listed))

    def fit(self, sizes: np.ndarray) -> int:
        """How many items of these :meth:`count` sizes could be listed together under the cap."""
        if self.cap is None:
            return int(sizes.sum())
        room = np.maximum(self.cap - self._listed[:-1], 0)
        return int(sizes[0] + np.minimum(sizes[1:], room).sum())

    def scan(self, ids: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
        """Positions of the first ``limit`` of ``ids`` (in order) the cap allows, and how many
        were passed over for it before the last one taken."""
        if self.cap is None:
            return np.arange(min(limit, len(ids))), 0
        group, room = self.groups(ids)
        positions = first_allowed(group, room, limit)
        reach = positions[-1] + 1 if len(positions) else 0
        return positions, int(reach - len(positions))

    def take(self, ids: np.ndarray) -> None:
        """Count ``ids`` as listed."""
        if self.cap is not None:
            tags = self.top_tag[ids]
            np.add.at(self._listed, tags[tags >= 0], 1)


def first_allowed(group: np.ndarray, room: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the first ``limit`` items, in order, that fit their group's room."""
    if not (room < UNCAPPED).any():
        return np.arange(min(limit, len(group)))
    return np.flatnonzero(occurrence(group) < room[group])[:limit]


def occurrence(group: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions share its group (0 for the first)."""
    order = np.argsort(group, kind="stable")
    sorted_groups = group[order]
    starts = np.searchsorted(sorted_groups, sorted_groups, side="left")
    out = np.empty(len(group), dtype=np.int64)
    out[order] = np.arange(len(group)) - starts
    return out
