"""What the rule chain reads: candidates, the catalogue's facts, a listener's state, the dials.

Everything here is item indices (the model's vocabulary) and plain arrays: names are resolved by
the caller (the API resolves artist names and tag names once per request), so the chain itself
never looks anything up by text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from musicrec.errors import ConfigError

DAY_S = 86_400
TAG_DEPTH = 3  # an artist "carries" its heaviest tags: the ones every response shows
COOLDOWN_SHOWS = 3
COOLDOWN_DAYS = 7.0
_EMPTY = np.empty(0, dtype=np.int64)


def _ids(values: Sequence[int] | np.ndarray | None) -> np.ndarray:
    return _EMPTY if values is None else np.asarray(values, dtype=np.int64).ravel()


@dataclass(frozen=True)
class Candidates:
    """A ranking from the model or its index: item ids and scores, best first.

    ``-1`` padding (a ranking that ran out of items) is dropped; scores may be ``nan`` for
    items the source did not score.
    """

    ids: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(
        cls, ids: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray | None = None
    ) -> Candidates:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if scores is None:
            values = np.full(len(ids), np.nan)
        else:
            values = np.asarray(scores, dtype=np.float64).ravel()
            if len(values) != len(ids):
                raise ValueError(f"{len(ids)} candidate ids but {len(values)} scores")
        keep = ids >= 0
        return cls(ids[keep], values[keep])

    def __len__(self) -> int:
        return len(self.ids)


# The top ``n`` of the same ranking as the first candidates (``n`` larger than before).
Deeper = Callable[[int], Candidates]
# Pairwise similarity of items ``ids``: a symmetric ``(n, n)`` array in [-1, 1], 1 on the diagonal.
Similarity = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ItemMeta:
    """Per-item facts the rules use: listeners, and each artist's heaviest tags."""

    listeners: np.ndarray  # int64, one per item
    tags: np.ndarray  # int32 (n_items, depth) tag codes, heaviest first, -1 padded
    tag_names: tuple[str, ...]  # code -> tag

    @classmethod
    def build(
        cls,
        listeners: np.ndarray,
        tag_items: np.ndarray | None = None,
        tag_codes: np.ndarray | None = None,
        tag_weights: np.ndarray | None = None,
        tag_names: Sequence[str] = (),
        depth: int = TAG_DEPTH,
    ) -> ItemMeta:
        """From a tag table in long form (item, code, weight rows), keeping ``depth`` per item."""
        listeners = np.asarray(listeners, dtype=np.int64)
        table = np.full((len(listeners), depth), -1, dtype=np.int32)
        if tag_items is not None and tag_codes is not None and len(tag_items):
            items = np.asarray(tag_items, dtype=np.int64)
            codes = np.asarray(tag_codes, dtype=np.int64)
            weights = np.ones(len(items)) if tag_weights is None else np.asarray(tag_weights, float)
            order = np.lexsort((codes, -weights, items))
            items, codes = items[order], codes[order]
            starts = np.searchsorted(items, items, side="left")
            rank = np.arange(len(items)) - starts
            kept = rank < depth
            table[items[kept], rank[kept]] = codes[kept]
        return cls(listeners, table, tuple(tag_names))

    @property
    def n_items(self) -> int:
        return len(self.listeners)

    @cached_property
    def top_tag(self) -> np.ndarray:
        """Each item's heaviest tag code (-1: untagged), the group ``max_per_tag`` caps."""
        return self.tags[:, 0].astype(np.int64)

    @cached_property
    def n_codes(self) -> int:
        """How many tag codes there are (``tag_names``, or more if ``tags`` holds more)."""
        return max(len(self.tag_names), int(self.tags.max(initial=-1)) + 1)

    def carries_any(self, items: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Whether each of ``items`` carries at least one of the tag ``codes``."""
        codes = np.asarray(codes, dtype=np.int64)
        if not len(codes):
            return np.zeros(len(items), dtype=bool)
        # a table over the codes, its last slot the -1 padding: one lookup per item and depth
        wanted = np.zeros(self.n_codes + 1, dtype=bool)
        wanted[codes[(codes >= 0) & (codes < self.n_codes)]] = True
        wanted[-1] = bool((codes == -1).any())
        hit = wanted[self.tags[items]]
        found: np.ndarray = hit[:, 0].copy()
        for depth in range(1, hit.shape[1]):  # a few columns: faster than any(axis=1)
            found |= hit[:, depth]
        return found


@dataclass(frozen=True)
class Exposure:
    """How often each artist was shown to the listener since they last played it."""

    items: np.ndarray = field(default_factory=lambda: _EMPTY)
    shown: np.ndarray = field(default_factory=lambda: _EMPTY)  # shows since the last play
    last_shown: np.ndarray = field(default_factory=lambda: np.empty(0))  # epoch seconds


@dataclass(frozen=True)
class ListenerState:
    """What the rules know of one listener; every array holds item indices.

    ``played``/``weights``: the listener's artists and their play weight (heaviest = favourite).
    ``bans``/``ban_until``: banned artists and when each ban lifts (``inf``: never).
    ``last_event``/``last_event_at``: each artist's latest event time (``exclude_recent_days``).
    """

    played: np.ndarray = field(default_factory=lambda: _EMPTY)
    weights: np.ndarray = field(default_factory=lambda: np.empty(0))
    bans: np.ndarray = field(default_factory=lambda: _EMPTY)
    ban_until: np.ndarray = field(default_factory=lambda: np.empty(0))
    last_event: np.ndarray = field(default_factory=lambda: _EMPTY)
    last_event_at: np.ndarray = field(default_factory=lambda: np.empty(0))
    exposure: Exposure = field(default_factory=Exposure)

    @classmethod
    def of(
        cls,
        played: Sequence[int] | np.ndarray | None = None,
        weights: Sequence[float] | np.ndarray | None = None,
        bans: Sequence[int] | np.ndarray | None = None,
        ban_until: Sequence[float] | np.ndarray | None = None,
        last_event: Sequence[int] | np.ndarray | None = None,
        last_event_at: Sequence[float] | np.ndarray | None = None,
        exposure: Exposure | None = None,
    ) -> ListenerState:
        """Arrays of the right dtypes; permanent bans and unit weights where not given."""
        played_ids, ban_ids, event_ids = _ids(played), _ids(bans), _ids(last_event)
        return cls(
            played=played_ids,
            weights=_floats(weights, len(played_ids), 1.0, "weights"),
            bans=ban_ids,
            ban_until=_floats(ban_until, len(ban_ids), math.inf, "ban_until"),
            last_event=event_ids,
            last_event_at=_floats(last_event_at, len(event_ids), 0.0, "last_event_at"),
            exposure=exposure or Exposure(),
        )

    def active_bans(self, now: float) -> np.ndarray:
        """Artists banned at ``now``: a ban holds until its ``until`` and lifts after."""
        return np.unique(self.bans[self.ban_until > now])

    def recent(self, days: float | None, now: float) -> np.ndarray:
        """Artists with an event in the last ``days`` days (none when ``days`` is None)."""
        if days is None:
            return _EMPTY
        return np.unique(self.last_event[self.last_event_at >= now - days * DAY_S])

    def favourites(self) -> np.ndarray:
        """Played artists, heaviest first (ties: lower index first), each once."""
        order = np.lexsort((self.played, -self.weights))
        ids = self.played[order]
        _, first = np.unique(ids, return_index=True)
        return ids[np.sort(first)]


def _floats(
    values: Sequence[float] | np.ndarray | None, n: int, fill: float, name: str
) -> np.ndarray:
    if values is None:
        return np.full(n, fill)
    array = np.asarray(values, dtype=np.float64).ravel()
    if len(array) != n:
        raise ValueError(f"{name} needs {n} values, got {len(array)}")
    return array


@dataclass(frozen=True)
class CoolDown:
    """Exposure cool-down: shown ``shows`` times without a play -> held back ``days`` days."""

    shows: int = COOLDOWN_SHOWS
    days: float = COOLDOWN_DAYS

    def __post_init__(self) -> None:
        if self.shows < 1:
            raise ConfigError(f"cool-down shows must be at least 1, got {self.shows}")
        if not (math.isfinite(self.days) and self.days >= 0):
            raise ConfigError(f"cool-down days must be a finite number >= 0, got {self.days}")


def _unit(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be a number in 0..1, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Dials:
    """A request's (or an evaluation's) settings; every default is neutral (today's list).

    ``exclude_artists`` are item indices, the tag fields tag codes of :class:`ItemMeta`.
    ``cooldown=None`` turns the exposure cool-down off.
    """

    exclude_artists: tuple[int, ...] = ()
    exclude_tags: tuple[int, ...] = ()
    include_tags: tuple[int, ...] = ()  # any of
    max_per_tag: int | None = None
    diversity: float = 0.0
    discovery: float = 0.0
    familiar_share: float = 0.0
    exclude_recent_days: float | None = None
    cooldown: CoolDown | None = None

    def __post_init__(self) -> None:
        for name in ("diversity", "discovery", "familiar_share"):
            _unit(name, getattr(self, name))
        if self.max_per_tag is not None and self.max_per_tag < 1:
            raise ConfigError(f"max_per_tag must be at least 1, got {self.max_per_tag}")
        days = self.exclude_recent_days
        if days is not None and not (math.isfinite(days) and days > 0):
            raise ConfigError(f"exclude_recent_days must be a number > 0, got {days!r}")

    @property
    def neutral(self) -> bool:
        """True when these dials leave the model's ranking exactly as it is."""
        return self == NEUTRAL


NEUTRAL = Dials()


@dataclass(frozen=True)
class RuleResult:
    """The list the chain made, and what each rule removed on the way."""

    ids: np.ndarray  # item indices, in list order
    scores: np.ndarray  # the source's score (nan for popularity and familiar fills)
    origin: np.ndarray  # ORIGINS code of each item
    removed: dict[str, int]  # rule -> items it removed
    examined: int  # candidates looked at, from every source

    def __len__(self) -> int:
        return len(self.ids)


# Where a listed item came from (``RuleResult.origin`` holds the index into this tuple).
ORIGINS: tuple[str, ...] = ("model", "deeper", "popularity", "familiar")
MODEL, DEEPER, POPULARITY, FAMILIAR = range(len(ORIGINS))
