"""Exposure cool-down: an artist shown again and again without a play rests for a while.

The rule (defaults in :class:`~musicrec.rules.inputs.CoolDown`): once an artist has been shown
to a listener ``shows`` times since they last played it, it is held back until ``days`` days
after its latest show. A play resets the count. When the rest is over the artist may be shown
again; each further show without a play starts another rest, so an artist the listener keeps
ignoring comes back at most once every ``days`` days.

The input is what an impression log answers cheaply per listener: for each artist, shows since
the last play and the time of the latest show (:class:`~musicrec.rules.inputs.Exposure`).
:func:`exposure_from_log` computes it from raw (item, time) rows when that is what is at hand.
"""

from __future__ import annotations

import numpy as np

from musicrec.rules.inputs import DAY_S, CoolDown, Exposure


def held_back(exposure: Exposure, now: float, policy: CoolDown | None = None) -> np.ndarray:
    """Artists resting at ``now`` (sorted item indices)."""
    policy = policy or CoolDown()
    shown = np.asarray(exposure.shown, dtype=np.int64)
    last = np.asarray(exposure.last_shown, dtype=np.float64)
    resting = (shown >= policy.shows) & (now < last + policy.days * DAY_S)
    return np.unique(np.asarray(exposure.items, dtype=np.int64)[resting])


def exposure_from_log(
    shown_items: np.ndarray,
    shown_at: np.ndarray,
    played_items: np.ndarray,
    played_at: np.ndarray,
) -> Exposure:
    """Per artist: shows strictly after the listener's latest play of it, and the latest show.

    ``shown_*`` are one listener's impressions (one row per time an artist was in a list they
    were shown), ``played_*`` their plays; both item indices with epoch seconds.
    """
    shown_items = np.asarray(shown_items, dtype=np.int64)
    shown_at = np.asarray(shown_at, dtype=np.float64)
    played_items = np.asarray(played_items, dtype=np.int64)
    played_at = np.asarray(played_at, dtype=np.float64)
    if not len(shown_items):
        return Exposure()
    last_play = np.full(len(shown_items), -np.inf)
    if len(played_items):
        order = np.lexsort((played_at, played_items))  # by item, latest play last
        items, times = played_items[order], played_at[order]
        is_last = np.append(items[1:] != items[:-1], True)
        items, times = items[is_last], times[is_last]
        where = np.searchsorted(items, shown_items)
        found = (where < len(items)) & (items[np.minimum(where, len(items) - 1)] == shown_items)
        last_play[found] = times[where[found]]
    since = shown_at > last_play
    items, inverse = np.unique(shown_items[since], return_inverse=True)
    counts = np.bincount(inverse, minlength=len(items))
    latest = np.full(len(items), -np.inf)
    np.maximum.at(latest, inverse, shown_at[since])
    return Exposure(items=items, shown=counts.astype(np.int64), last_shown=latest)
