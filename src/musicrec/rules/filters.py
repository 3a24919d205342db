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
_ITEM_RULES = ("banned", "excluded_artist", "played", "recent", "cooldown")  # by item, no tags
_TAG_RULES = ("excluded_tag", "include_tags")


class Filters:
    """One request's hard rules, evaluated on batches of item indices."""

    def __init__(self, dials: Dials, meta: ItemMeta, listener: ListenerState, now: float):
        self.meta = meta
        cooldown = np.empty(0, dtype=np.int64)
        if dials.cooldown is not None:
            cooldown = held_back(listener.exposure, now, dials.cooldown)
        self._sets: dict[str, np.ndarray] = {
            "banned": listener.active_bans(now),
            "excluded_artist": np.unique(np.asarray(dials.exclude_artists, dtype=np.int64)),
            "played": np.unique(listener.played),
            "recent": listener.recent(dials.exclude_recent_days, now),
            "cooldown": cooldown,
        }
        self._exclude_tags = np.asarray(dials.exclude_tags, dtype=np.int64)
        self._include_tags = np.asarray(dials.include_tags, dtype=np.int64)
        self.removed: dict[str, int] = dict.fromkeys(RULES, 0)
        # Per item, 1 + the position in RULES of the first item rule removing it (0: none):
        # one gather per batch instead of a set lookup per rule.
        self._first = np.zeros(meta.n_items, dtype=np.int8)
        for rule in reversed(_ITEM_RULES):
            self._first[self._sets[rule]] = RULES.index(rule) + 1

    def _hits(self, rule: str, ids: np.ndarray) -> np.ndarray | None:
        """Which of ``ids`` the rule removes (None: the rule removes nothing here)."""
        if rule == "excluded_tag":
            if not len(self._exclude_tags):
                return None
            return self.meta.carries_any(ids, self._exclude_tags)
        if rule == "include_tags":
            if not len(self._include_tags):
                return None
            return ~self.meta.carries_any(ids, self._include_tags)
        blocked = self._sets.get(rule)
        if blocked is None or not len(blocked):
            return None
        found: np.ndarray = np.isin(ids, blocked, assume_unique=False)
        return found

    def keep(self, ids: np.ndarray, familiar: bool = False) -> np.ndarray:
        """Mask of ``ids`` every rule allows; ``familiar`` items skip the ``played`` rule."""
        if familiar:
            return self._keep_familiar(ids)
        first = self._first[ids]
        for rule in _TAG_RULES:
            hits = self._hits(rule, ids)
            if hits is not None:
                code = RULES.index(rule) + 1
                first = np.where(hits & ((first == 0) | (first > code)), code, first)
        counts = np.bincount(first, minlength=len(RULES) + 1)
        for position, rule in enumerate(RULES[:-1], start=1):
            self.removed[rule] += int(counts[position])
        allowed: np.ndarray = first == 0
        return allowed

    def _keep_familiar(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`keep` for the listener's own artists: rule by rule, ``played`` skipped."""
        alive = np.ones(len(ids), dtype=bool)
        for rule in RULES[:-1]:
            if rule == "played":
                continue
            hits = self._hits(rule, ids)
            if hits is None:
                continue
            hits &= alive
            count = int(hits.sum())
            if count:
                self.removed[rule] += count
                alive &= ~hits
        return alive


class Caps:
    """``max_per_tag``: at most ``cap`` listed artists share a top tag (untagged: no cap)."""

    def __init__(self, meta: ItemMeta, cap: int | None):
        self.top_tag = meta.top_tag
        self.cap = cap
        self.taken = np.empty(0, dtype=np.int64)  # top tags of the artists listed so far

    @property
    def active(self) -> bool:
        return self.cap is not None

    def groups(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compact group of each item, each group's tag and the room each group has left."""
        codes, group = np.unique(self.top_tag[ids], return_inverse=True)
        room = np.full(len(codes), UNCAPPED, dtype=np.int64)
        if self.cap is not None:
            listed, counts = np.unique(self.taken, return_counts=True)
            where = np.minimum(np.searchsorted(listed, codes), max(len(listed) - 1, 0))
            hit = (listed[where] == codes) if len(listed) else np.zeros(len(codes), dtype=bool)
            taken = np.where(hit, counts[where] if len(listed) else 0, 0)
            room = np.where(codes >= 0, np.maximum(self.cap - taken, 0), UNCAPPED)
        return group.astype(np.int64), codes, room

    def capacity(self, ids: np.ndarray) -> int:
        """How many of ``ids`` could be listed together under the cap."""
        if self.cap is None:
            return len(ids)
        group, _, room = self.groups(ids)
        sizes = np.bincount(group, minlength=len(room))
        return int(np.minimum(sizes, room).sum())

    def scan(self, ids: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
        """Positions of the first ``limit`` of ``ids`` (in order) the cap allows, and how many
        were passed over for it before the last one taken."""
        if self.cap is None:
            return np.arange(min(limit, len(ids))), 0
        group, _, room = self.groups(ids)
        allowed = occurrence(group) < room[group]
        positions = np.flatnonzero(allowed)[:limit]
        reach = positions[-1] + 1 if len(positions) else 0
        return positions, int(reach - len(positions))

    def take(self, ids: np.ndarray) -> None:
        """Count ``ids`` as listed."""
        if self.cap is not None:
            tags = self.top_tag[ids]
            self.taken = np.concatenate([self.taken, tags[tags >= 0]])


def occurrence(group: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions share its group (0 for the first)."""
    order = np.argsort(group, kind="stable")
    sorted_groups = group[order]
    starts = np.searchsorted(sorted_groups, sorted_groups, side="left")
    out = np.empty(len(group), dtype=np.int64)
    out[order] = np.arange(len(group)) - starts
    return out
