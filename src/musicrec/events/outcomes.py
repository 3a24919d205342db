"""Outcomes joined to impressions: which shown artist a play, skip, love or ban answers.

An event names the list it answers by ``request_id`` (and optionally the ``position`` it
was shown at). The link is kept in a small table of its own, ``event_requests`` (event id,
request id, position), so the events table keeps its shape. Attribution, in this order:

1. ``request_id`` and ``position``: the impression of that request at that position
   (the listener must be the request's listener);
2. ``request_id`` alone, or a position that does not match: the impression of that request
   showing that artist;
3. otherwise, or when the request id matches nothing: the latest impression of that artist
   for that listener within ``window_s`` before the event (default 24 h). Event timestamps
   are whole seconds, so an impression counts up to the end of the event's second.

Artist names are compared after collapsing whitespace and case, as clients may spell them
differently from the name the API showed. An event that matches nothing is unattributed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from musicrec.errors import EventError, StoreError
from musicrec.events.impressions import COLUMNS as IMPRESSION_COLUMNS
from musicrec.events.impressions import POSITIONS, ensure_tables, lists_table, read_lists
from musicrec.events.store import EventStore, events_table

ATTRIBUTION_WINDOW_S = 24 * 3600.0
OUTCOME_KINDS = ("play", "skip", "love", "ban")
TIMESTAMP_RESOLUTION_S = 1.0  # event timestamps are whole seconds

metadata = sa.MetaData()
links_table = sa.Table(
    "event_requests",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=True),
    sa.Index("event_requests_request", "request_id"),
)
ATTRIBUTED = ["impression_id", "experiment", "arm", "shown_position", "attributed_by"]


def record_requests(
    store: EventStore,
    event_ids: Sequence[int],
    request_ids: Sequence[str | None],
    positions: Sequence[int | None] | None = None,
) -> int:
    """Remember which request each stored event answers (events without one are skipped)."""
    positions = positions if positions is not None else [None] * len(event_ids)
    if not len(event_ids) == len(request_ids) == len(positions):
        raise ValueError("one request id and one position per event id")
    rows = [
        {"event_id": int(e), "request_id": r, "position": None if p is None else int(p)}
        for e, r, p in zip(event_ids, request_ids, positions, strict=True)
        if r
    ]
    if rows:
        ensure_tables(store, metadata)
        try:
            with store.writes.begin() as conn:
                conn.execute(sa.insert(links_table), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot link events to requests in {store}: {exc}") from exc
    return len(rows)


LINK_FIELDS = ("request_id", "position")
REQUEST_ID_MAX = 64
REQUEST_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"  # what the API hands out (and keeps from clients)
MAX_POSITION = POSITIONS


def split_links(
    raws: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[str | None], list[int | None]]:
    """Raw events without ``request_id``/``position``, and those two per event (validated).

    ``request_id`` (1-64 characters, as the API gives them) and ``position`` (0-based, only
    with a ``request_id``) name the shown artist an event answers; they are kept beside the
    event (:func:`record_requests`), never in it. :class:`EventError` names the first bad one.
    """
    events: list[Mapping[str, Any]] = []
    request_ids: list[str | None] = []
    positions: list[int | None] = []
    for index, raw in enumerate(raws):
        if not isinstance(raw, Mapping) or not any(f in raw for f in LINK_FIELDS):
            events.append(raw)
            request_ids.append(None)
            positions.append(None)
            continue
        rid, position = raw.get("request_id"), raw.get("position")
        if rid is not None and (not isinstance(rid, str) or not re.fullmatch(REQUEST_ID, rid)):
            raise EventError(
                index, "request_id", f"must be 1-{REQUEST_ID_MAX} of A-Z a-z 0-9 . _ : -"
            )
        if position is not None:
            if rid is None:
                raise EventError(index, "position", "only events with a request_id carry one")
            if isinstance(position, bool) or not isinstance(position, int):
                raise EventError(index, "position", "must be a whole number")
            if not 0 <= position < MAX_POSITION:
                raise EventError(index, "position", f"must be in 0..{MAX_POSITION - 1} (0-based)")
        events.append({key: value for key, value in raw.items() if key not in LINK_FIELDS})
        request_ids.append(rid)
        positions.append(position)
    return events, request_ids, positions


def artist_key(names: pd.Series) -> pd.Series:
    """Artist names compared without regard to case or runs of whitespace."""
    return names.astype(str).str.split().str.join(" ").str.casefold()


def _by_request(events: pd.DataFrame, shown: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Impression id per event row (NaN when none) by an exact match on ``keys``."""
    if events.empty or shown.empty:
        return pd.Series(np.nan, index=events.index)
    right = shown[[*keys, "id"]].drop_duplicates(keys, keep="last")
    merged = events[keys].reset_index().merge(right, on=keys, how="left").set_index("index")
    return merged["id"].reindex(events.index)


def _by_window(events: pd.DataFrame, shown: pd.DataFrame, window_s: float) -> pd.Series:
    """Impression id per event row: the latest of its artist for its listener in the window."""
    if events.empty or shown.empty:
        return pd.Series(np.nan, index=events.index)
    left = events[["listener", "akey"]].assign(
        t=events["timestamp"].astype(np.float64) + TIMESTAMP_RESOLUTION_S, row=events.index
    )
    right = shown[["listener", "akey", "time", "id"]].astype({"time": np.float64})
    merged = pd.merge_asof(
        left.sort_values("t"),
        right.sort_values("time"),
        left_on="t",
        right_on="time",
        by=["listener", "akey"],
        direction="backward",
        allow_exact_matches=False,
        tolerance=window_s + TIMESTAMP_RESOLUTION_S,  # type: ignore[arg-type]  # float keys
    )
    return merged.set_index("row")["id"].reindex(events.index)


def attribute(
    events: pd.DataFrame, impressions: pd.DataFrame, window_s: float = ATTRIBUTION_WINDOW_S
) -> pd.DataFrame:
    """``events`` with the impression each answers, by the rules in the module docstring.

    ``events``: ``listener, artist, kind, timestamp`` and optionally ``request_id`` and
    ``position``; ``impressions``: rows as stored. Adds ``impression_id`` (nullable int),
    ``experiment``, ``arm``, ``shown_position`` and ``attributed_by`` (``request``,
    ``window`` or None).
    """
    if window_s <= 0:
        raise ValueError(f"the attribution window must be positive, not {window_s}")
    ev = events.reset_index(drop=True).assign(akey=lambda f: artist_key(f["artist"]))
    for name in ("request_id", "position"):
        if name not in ev:
            ev[name] = None
    shown = impressions.assign(akey=artist_key(impressions["artist"].astype(object)))
    found = pd.Series(np.nan, index=ev.index)
    has_request = ev["request_id"].notna()
    with_position = ev[has_request & ev["position"].notna()].astype({"position": np.int64})
    found.update(_by_request(with_position, shown, ["request_id", "listener", "position"]))
    rest = ev[has_request & found.isna()]
    found.update(_by_request(rest, shown, ["request_id", "listener", "akey"]))
    by_request = found.notna()
    found.update(_by_window(ev[found.isna()], shown, window_s))
    info = shown.set_index("id")[["experiment", "arm", "position"]]
    matched = info.reindex(found.to_numpy())
    out = events.reset_index(drop=True).copy()
    out["impression_id"] = found.astype("Int64").array
    out["experiment"] = matched["experiment"].to_numpy()
    out["arm"] = matched["arm"].to_numpy()
    out["shown_position"] = matched["position"].astype("Int64").array
    how = np.full(len(out), None, dtype=object)
    how[found.notna().to_numpy()] = "window"
    how[by_request.to_numpy()] = "request"
    out["attributed_by"] = how
    return out


def _events_of(store: EventStore, listeners: sa.Select, since: float) -> pd.DataFrame:
    e, link = events_table, links_table
    query = (
        sa.select(
            e.c.id.label("event_id"),
            e.c.user_id.label("listener"),
            e.c.artist,
            e.c.kind,
            e.c.plays,
            e.c.timestamp,
            link.c.request_id,
            link.c.position,
        )
        .select_from(e.outerjoin(link, link.c.event_id == e.c.id))
        .where(e.c.timestamp >= int(since), e.c.kind.in_(OUTCOME_KINDS))
        .where(e.c.user_id.in_(listeners))
        .order_by(e.c.id)
    )
    with store.engine.connect() as conn:
        return pd.read_sql(query, conn)


def experiment_outcomes(
    store: EventStore, experiment: str, window_s: float = ATTRIBUTION_WINDOW_S
) -> pd.DataFrame:
    """Every outcome event attributed to an impression of ``experiment``.

    Events of the experiment's listeners are attributed against all their impressions (an
    event answers its latest impression even when that one was outside the experiment), and
    only those landing on the experiment's impressions are kept.
    """
    if not store.exists:
        return pd.DataFrame(columns=["event_id", "listener", "artist", "kind", *ATTRIBUTED])
    ensure_tables(store)
    ensure_tables(store, metadata)
    imp = lists_table
    listeners = sa.select(imp.c.listener).where(imp.c.experiment == experiment).distinct()
    with store.engine.connect() as conn:
        first = conn.execute(
            sa.select(sa.func.min(imp.c.time)).where(imp.c.experiment == experiment)
        ).scalar()
    if first is None:
        return pd.DataFrame(columns=["event_id", "listener", "artist", "kind", *ATTRIBUTED])
    query = sa.select(imp).where(
        imp.c.listener.in_(listeners), imp.c.time >= float(first) - window_s
    )
    shown = read_lists(store, query.order_by(imp.c.id))
    events = _events_of(store, listeners, float(first) - TIMESTAMP_RESOLUTION_S)
    attributed = attribute(events, shown[IMPRESSION_COLUMNS], window_s)
    return attributed[attributed["experiment"] == experiment].reset_index(drop=True)
