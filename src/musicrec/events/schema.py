"""What a listening event is, and the one validation every entry point uses.

``POST /events``, ``musicrec events import`` and ``musicrec events replay`` all call
:func:`validate_batch`, so the same input is accepted or refused with the same reason
everywhere. A batch is all-or-nothing: the first invalid event (its index and the reason)
refuses the whole batch.

Kinds and what they mean to the model (:func:`interactions` is the single place that turns
events into plays, used by serving fold-in and by retraining alike):

- ``play``: ``plays`` listens (default 1).
- ``love``: counts as :data:`LOVE_PLAYS` listens.
- ``skip``: recorded, adds no plays (an ALS confidence cannot be negative); the artist is kept
  out of the listener's recommendations while the ``exclude_recent_days`` filter covers it.
- ``ban``: the artist never comes back in that listener's recommendations and their plays of it
  are dropped from fold-in and from retraining. A ban may carry ``until`` (epoch seconds or
  ISO-8601): it holds until then and lifts after (:mod:`musicrec.events.bans`); without it, it is
  permanent. Entry points accept ``until`` once they can keep it (``accept_until=True``).

An event may carry ``event_id``, a string its sender chose: the store keeps each id once per
listener, so a batch sent again after a lost answer is not stored twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd

from musicrec.errors import EventError

EventKind = Literal["play", "skip", "love", "ban"]
KINDS: tuple[str, ...] = ("play", "skip", "love", "ban")
LOVE_PLAYS = 5.0  # a love weighs like this many plays
MAX_PLAYS = 100_000  # per event: more is a counter bug, not listening
MAX_TEXT = 200  # user ids and artist names, as in the rest of the API
MIN_TIMESTAMP = 946_684_800  # 2000-01-01: Last.fm did not exist before
MAX_TIMESTAMP = 4_102_444_799  # 2099-12-31T23:59:59Z: later is not a clock, it is a bug
FUTURE_SKEW_S = 24 * 3600  # clocks drift; further ahead is recorded as the time of receipt
MAX_BATCH = 500  # events per request; ~100 bytes each stays under the 64 KiB body limit
FIELDS = ("user_id", "artist", "plays", "timestamp", "kind", "event_id")
BAN_FIELDS = ("until",)  # only on ban events, only where the caller keeps it
MAX_UNTIL = 32_503_680_000  # 3000-01-01: later is a typo, not a plan
WATERMARK_KEY = "events_watermark"  # manifest: highest event id inside a model


@dataclass(frozen=True)
class Event:
    """One validated listening event."""

    user_id: str
    artist: str
    kind: str = "play"
    plays: int = 1
    timestamp: int = 0  # epoch seconds, UTC
    event_id: str | None = None  # the sender's id: stored once per listener
    until: int | None = None  # ban events: when the ban lifts (None: never)


def _text(index: int, raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise EventError(index, name, "is required")
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventError(index, name, "must be a string")
        value = str(value)  # numeric user ids from CSV files
    text = " ".join(value.split()) if name == "artist" else value.strip()
    if not text:
        raise EventError(index, name, "must not be blank")
    if len(text) > MAX_TEXT:
        raise EventError(index, name, f"longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 for ch in text):
        raise EventError(index, name, "must not contain control characters")
    return text


def parse_timestamp(value: Any, now: float) -> int:
    """Epoch seconds from an int/float, a numeric string or ISO-8601 text (UTC if naive)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return int(now)
    if isinstance(value, bool):
        raise ValueError("must be epoch seconds or ISO-8601 text")
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(moment.timestamp())
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(float(text))
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("must be epoch seconds or ISO-8601 text") from exc
        return parse_timestamp(moment, now)
    raise ValueError("must be epoch seconds or ISO-8601 text")


def _until(index: int, raw: Mapping[str, Any], kind: str, now: float) -> int | None:
    """A ban's ``until``; one in the past is valid (the ban then changes nothing)."""
    value = raw.get("until")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind != "ban":
        raise EventError(index, "until", f"only ban events carry until, not {kind}")
    try:
        until = parse_timestamp(value, now)
    except ValueError as exc:
        raise EventError(index, "until", str(exc)) from None
    if not MIN_TIMESTAMP <= until <= MAX_UNTIL:
        raise EventError(index, "until", "must be between 2000-01-01 and 3000-01-01")
    return until


def validate_event(
    index: int, raw: Mapping[str, Any], now: float | None = None, accept_until: bool = False
) -> Event:
    """One raw mapping to an :class:`Event`, or :class:`EventError` naming field and reason."""
    if not isinstance(raw, Mapping):
        raise EventError(index, None, "must be an object")
    known = FIELDS + BAN_FIELDS if accept_until else FIELDS
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise EventError(index, unknown[0], f"unknown field; expected {', '.join(known)}")
    now = time.time() if now is None else now
    user_id = _text(index, raw, "user_id")
    artist = _text(index, raw, "artist")
    kind = raw.get("kind") or "play"
    if kind not in KINDS:
        raise EventError(index, "kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    plays_raw = raw.get("plays")
    if plays_raw is None or (isinstance(plays_raw, float) and math.isnan(plays_raw)):
        plays = 1
    elif isinstance(plays_raw, bool) or not isinstance(plays_raw, int | float):
        raise EventError(index, "plays", "must be a whole number")
    elif plays_raw != int(plays_raw) or not 1 <= plays_raw <= MAX_PLAYS:
        raise EventError(index, "plays", f"must be a whole number in 1..{MAX_PLAYS}")
    else:
        plays = int(plays_raw)
    if kind != "play" and plays != 1:
        raise EventError(index, "plays", f"only play events carry plays, not {kind}")
    try:
        timestamp = parse_timestamp(raw.get("timestamp"), now)
    except ValueError as exc:
        raise EventError(index, "timestamp", str(exc)) from None
    if timestamp < MIN_TIMESTAMP:
        raise EventError(index, "timestamp", "before 2000-01-01")
    if timestamp > MAX_TIMESTAMP:
        raise EventError(index, "timestamp", "after 2099-12-31")
    if timestamp > now + FUTURE_SKEW_S:  # a device clock far ahead: the event happened now
        timestamp = int(now)
    event_id = None if raw.get("event_id") is None else _text(index, raw, "event_id")
    until = _until(index, raw, kind, now)
    return Event(user_id, artist, kind, plays, timestamp, event_id=event_id, until=until)


def validate_batch(
    raws: Sequence[Mapping[str, Any]],
    now: float | None = None,
    offset: int = 0,
    accept_until: bool = False,
) -> list[Event]:
    """All events of a batch, or :class:`EventError` for the first invalid one."""
    if not raws:
        raise EventError(offset, None, "the batch is empty")
    now = time.time() if now is None else now
    return [validate_event(offset + i, raw, now, accept_until) for i, raw in enumerate(raws)]


def events_frame(events: Iterable[Event]) -> pd.DataFrame:
    """Events as a frame with the columns of :data:`FIELDS`."""
    rows = [(e.user_id, e.artist, e.kind, e.plays, e.timestamp) for e in events]
    return pd.DataFrame(rows, columns=["user_id", "artist", "kind", "plays", "timestamp"])


@dataclass(frozen=True)
class Interactions:
    """Events reduced to what the model consumes: plays per (user, artist) and bans."""

    plays: pd.DataFrame  # user_id, artist, plays (float), timestamp (latest)
    bans: pd.DataFrame  # user_id, artist


def play_weights(kinds: np.ndarray, plays: np.ndarray) -> np.ndarray:
    """Plays each event adds to its (user, artist) pair: the one definition of the kinds."""
    kinds = np.asarray(kinds, dtype=object)
    weights = np.where(kinds == "play", np.asarray(plays, dtype=np.float64), 0.0)
    return np.where(kinds == "love", LOVE_PLAYS, weights)


def interactions(events: pd.DataFrame, key: Any = None, now: float | None = None) -> Interactions:
    """Plays per (user, artist key) from play and love events, minus pairs banned at ``now``.

    ``key`` maps an artist name to its identity (default: the name itself); the display name
    kept is the first spelling seen. A ban holds while ``now < until`` (no ``until`` column, or
    a null one: for ever), as in serving; a lifted ban removes nothing, so retraining counts the
    plays of an artist the listener hid for a while once the hiding is over.
    """
    key = key or (lambda name: name)
    now = time.time() if now is None else now
    frame = events.assign(artist_key=events["artist"].map(key))
    frame = frame.assign(weight=play_weights(frame["kind"].to_numpy(), frame["plays"].to_numpy()))
    is_ban = frame["kind"] == "ban"
    if "until" in frame:
        until = pd.to_numeric(frame["until"], errors="coerce")
        is_ban &= until.isna() | (until > now)
    bans = frame.loc[is_ban, ["user_id", "artist_key", "artist"]]
    bans = bans.drop_duplicates(["user_id", "artist_key"])
    positive = frame[frame["weight"] > 0]
    grouped = positive.groupby(["user_id", "artist_key"], sort=False).agg(
        artist=("artist", "first"), plays=("weight", "sum"), timestamp=("timestamp", "max")
    )
    plays = grouped.reset_index()
    if len(bans):
        banned = pd.MultiIndex.from_frame(bans[["user_id", "artist_key"]])
        pairs = pd.MultiIndex.from_frame(plays[["user_id", "artist_key"]])
        plays = plays[~pairs.isin(banned)]
    return Interactions(
        plays=plays.reset_index(drop=True),
        bans=bans[["user_id", "artist_key", "artist"]].reset_index(drop=True),
    )
