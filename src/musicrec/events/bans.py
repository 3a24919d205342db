"""Bans that expire: which of a listener's bans hold at a given time.

A ban event may carry ``until`` (epoch seconds). It holds while ``at < until`` and lifts from
``until`` on; a ban without ``until`` never lifts. When an artist was banned more than once it
stays banned while any of its bans holds, so a later ban whose ``until`` is already past (which
the event schema accepts) changes nothing: it neither lifts an earlier ban nor adds one.

The time a ban was made does not matter here (clocks of clients drift; a ban posted with a
timestamp slightly ahead must still hold at once): callers pass the events known at ``at``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from musicrec.events.schema import Event

PERMANENT = math.inf


def active_bans(
    events: pd.DataFrame, at: float, key: Callable[[str], object] | None = None
) -> pd.DataFrame:
    """Artists banned at ``at``, with when each lifts (``inf``: never).

    ``events`` has the event store's columns (``kind``, ``artist``; ``until`` where the store
    keeps it, absent or null for permanent bans). ``key`` maps a name to the artist's identity
    (default: the name); one row per identity, named by its first spelling.
    """
    columns = ["artist", "until"]
    if events.empty or "kind" not in events:
        return pd.DataFrame({"artist": pd.Series(dtype=object), "until": pd.Series(dtype=float)})
    bans = events.loc[events["kind"] == "ban"]
    until = _until_column(bans)
    frame = pd.DataFrame({"artist": bans["artist"].to_numpy(dtype=object), "until": until})
    identity = frame["artist"].map(key) if key is not None else frame["artist"]
    grouped = frame.groupby(identity.to_numpy(), sort=False).agg(
        artist=("artist", "first"), until=("until", "max")
    )
    held = grouped.loc[grouped["until"] > at, columns]
    return held.reset_index(drop=True)


def _until_column(bans: pd.DataFrame) -> np.ndarray:
    if "until" not in bans:
        return np.full(len(bans), PERMANENT)
    values = pd.to_numeric(bans["until"], errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isnan(values), PERMANENT, values)


def ineffective_bans(events: Sequence[Event], now: float) -> list[int]:
    """Positions of ban events whose ``until`` is not after ``now``: accepted, but they change
    nothing (the answer to ``POST /events`` says so)."""
    return [
        position
        for position, event in enumerate(events)
        if event.kind == "ban" and event.until is not None and event.until <= now
    ]


def ban_notice(events: Sequence[Event], now: float) -> str | None:
    """One sentence for the response when some bans of a batch have no effect, else None."""
    positions = ineffective_bans(events, now)
    if not positions:
        return None
    where = ", ".join(str(p) for p in positions[:10]) + (" ..." if len(positions) > 10 else "")
    return (
        f"{len(positions)} ban(s) have an until that has already passed and have no effect "
        f"(events {where})"
    )
