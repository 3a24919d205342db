"""Team-draft interleaving: two arms' lists merged into one, each artist credited to its team.

Radlinski, Kurup and Joachims (2008), "How does clickthrough data reflect retrieval quality?".
In every round the team with fewer picks so far (a fair coin when tied) adds its
highest-ranked artist not yet shown. Each list is read as deep as it goes, so when an arm
returns more than ``k`` artists its deeper ones back-fill positions whose top picks the other
team took first.

When one list runs out of unshown artists, the other team picks alone (its team grows past
the other's); when both run out, the list is shorter than ``k``: it holds every distinct
artist of the two lists, and :attr:`Interleaved.short` says so. Callers that must show
exactly ``k`` ask each arm for at least ``k`` artists: then neither can run out, the list
has exactly ``k`` distinct artists and the team sizes differ by at most one.

A play is credited to the team of the position it was played at; a listener's arms are
compared on all the credit they gave over every list they were shown (win, loss or tie).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Interleaved:
    """One merged list: the artists in order and the team (arm name) of each position."""

    artists: tuple[str, ...]
    teams: tuple[str, ...]
    k: int

    @property
    def short(self) -> bool:
        """True when both lists together held fewer than ``k`` distinct artists."""
        return len(self.artists) < self.k

    def team_size(self, team: str) -> int:
        return sum(t == team for t in self.teams)


class _Cursor:
    """Reads one team's list in order, skipping artists already shown."""

    def __init__(self, items: Sequence[str]):
        self.items = items
        self.next = 0

    def peek(self, shown: set[str]) -> str | None:
        while self.next < len(self.items) and self.items[self.next] in shown:
            self.next += 1
        return self.items[self.next] if self.next < len(self.items) else None


def team_draft(
    first: Sequence[str],
    second: Sequence[str],
    k: int,
    rng: np.random.Generator,
    teams: tuple[str, str] = ("A", "B"),
) -> Interleaved:
    """Merge two ranked lists into at most ``k`` distinct artists by team draft.

    ``rng`` decides who picks first whenever the teams are even; seed it from the request
    id to make a list reproducible.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if teams[0] == teams[1]:
        raise ValueError("the two teams need different names")
    cursors = (_Cursor(first), _Cursor(second))
    counts = [0, 0]
    shown: set[str] = set()
    artists: list[str] = []
    picked_by: list[str] = []
    while len(artists) < k:
        candidates = (cursors[0].peek(shown), cursors[1].peek(shown))
        if candidates[0] is None and candidates[1] is None:
            break
        if candidates[1] is None:
            side = 0
        elif candidates[0] is None:
            side = 1
        elif counts[0] != counts[1]:
            side = 0 if counts[0] < counts[1] else 1
        else:
            side = int(rng.random() < 0.5)
        artist = candidates[side]
        assert artist is not None
        shown.add(artist)
        artists.append(artist)
        picked_by.append(teams[side])
        counts[side] += 1
    return Interleaved(tuple(artists), tuple(picked_by), k)


def credit(teams: Sequence[str], played_positions: Iterable[int]) -> dict[str, int]:
    """Plays per team: each played position (0-based) credits the team that filled it."""
    totals: dict[str, int] = {}
    for position in played_positions:
        if not 0 <= position < len(teams):
            raise ValueError(f"position {position} is not in a list of {len(teams)}")
        totals[teams[position]] = totals.get(teams[position], 0) + 1
    return totals


@dataclass(frozen=True)
class Preferences:
    """Per listener: the credit each team earned, and who won."""

    listeners: np.ndarray  # listener ids (object)
    first: np.ndarray  # credit of the first team, per listener (int64)
    second: np.ndarray  # credit of the second team, per listener (int64)

    @property
    def outcome(self) -> np.ndarray:
        """+1 when the first team earned more credit from the listener, -1 when less, 0 tie."""
        return np.sign(self.first - self.second).astype(np.int64)

    @property
    def wins(self) -> int:
        return int((self.outcome > 0).sum())

    @property
    def losses(self) -> int:
        return int((self.outcome < 0).sum())

    @property
    def ties(self) -> int:
        return int((self.outcome == 0).sum())


def preferences(credited: pd.DataFrame, first: str, shown: Iterable[str]) -> Preferences:
    """Per-listener credit from credited plays (a ``listener, team`` frame, one row a play).

    ``first`` names the team whose lead counts as a win; any other team counts for the
    second. Every listener in ``shown`` is included: one without a credited play is a tie.
    """
    ids = pd.Index(pd.unique(np.asarray(list(shown), dtype=object)), dtype=object)
    is_first = credited["team"].to_numpy() == first
    first_counts = credited.loc[is_first, "listener"].value_counts()
    second_counts = credited.loc[~is_first, "listener"].value_counts()
    return Preferences(
        listeners=ids.to_numpy(),
        first=first_counts.reindex(ids, fill_value=0).to_numpy(dtype=np.int64),
        second=second_counts.reindex(ids, fill_value=0).to_numpy(dtype=np.int64),
    )
