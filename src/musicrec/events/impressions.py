"""The impression log: every artist a served list showed, written in batches off the request path.

An impression is one shown artist: the request it belongs to, the listener, its position
(0-based), the artist, its score, the model version, the experiment and arm when one covers
the listener (in interleave mode the arm is the team that contributed the artist), the time,
and the propensity when the list was sampled (the probability of that artist at that
position, see :mod:`musicrec.online.explore`). The log stores one row per served list
(``impression_lists``, its per-position values as JSON arrays); the view ``impressions``
and :func:`read_impressions` give one row per shown artist. The table lives in the event
store's database, beside the events, so every worker and replica writes one log and outcomes
can be joined.

Writing it off the request path is :mod:`musicrec.events.impression_writer`.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from musicrec.errors import StoreError
from musicrec.events.store import EventStore

log = logging.getLogger(__name__)

CREATE_ATTEMPTS = 5
NAME = 200  # listener ids and artist names, as in the events table
SHORT = 64
POSITIONS = 10_000  # positions per list (0-based, below this); an impression's id is
# its list's id times this plus its position, so ids order as lists and positions do

# One row per served list, its per-position values as JSON arrays: one row costs the
# writer about a seventh of the CPU of ten rows, one per shown artist, with the same two
# indexes (benchmarks/bench_impressions.py: CPU per list committed), and every
# secondary index is paid for by every row. The log keeps only the indexes its queries use:
# by experiment (reports, replay) and by listener and time (the exposure cool-down's
# per-request read, outcome attribution, forgetting a listener). ``model_version`` and
# ``arm`` hold the list's one value; ``per_position`` ({"model_version": [...], "arm":
# [...]}) overrides them where positions differ (interleaving). ``propensities`` is set
# when the list was sampled. The view ``impressions`` (SQLite and PostgreSQL) shows one row
# per shown artist, for SQL; Python reads lists and expands them (:func:`expand`).
metadata = sa.MetaData()
lists_table = sa.Table(
    "impression_lists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(SHORT), nullable=False),
    sa.Column("listener", sa.String(NAME), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("experiment", sa.String(SHORT), nullable=True),
    sa.Column("model_version", sa.String(NAME), nullable=False),
    sa.Column("arm", sa.String(SHORT), nullable=True),
    sa.Column("shown", sa.Integer, nullable=False),  # artists in the list
    sa.Column("artists", sa.Text, nullable=False),  # JSON array of names
    sa.Column("scores", sa.Text, nullable=False),  # JSON array of floats
    sa.Column("per_position", sa.Text, nullable=True),
    sa.Column("propensities", sa.Text, nullable=True),
    sa.Index("impression_lists_experiment", "experiment"),
    sa.Index("impression_lists_listener_time", "listener", "time"),
)
LIST_FIELDS = tuple(c.name for c in lists_table.columns if c.name != "id")
SHOWN = LIST_FIELDS.index("shown")
VIEW = "impressions"  # also the name of the one-row-per-artist table of older versions
COLUMNS = [  # an impression row, as read_impressions and the view give them
    "id", "request_id", "listener", "position", "artist", "score", "model_version",
    "experiment", "arm", "time", "propensity",
]  # fmt: skip

_VIEW_SQL = {
    "sqlite": f"""CREATE VIEW IF NOT EXISTS {VIEW} AS
SELECT l.id * {POSITIONS} + s.key AS id, l.request_id, l.listener, s.key AS position,
  s.value AS artist, json_extract(l.scores, '$[' || s.key || ']') AS score,
  COALESCE(json_extract(l.per_position, '$.model_version[' || s.key || ']'), l.model_version)
    AS model_version,
  l.experiment, COALESCE(json_extract(l.per_position, '$.arm[' || s.key || ']'), l.arm) AS arm,
  l.time, json_extract(l.propensities, '$[' || s.key || ']') AS propensity, l.id AS list_id
FROM impression_lists AS l, json_each(l.artists) AS s""",
    "postgresql": f"""CREATE OR REPLACE VIEW {VIEW} AS
SELECT l.id * {POSITIONS} + s.n - 1 AS id, l.request_id, l.listener, (s.n - 1)::int AS position,
  s.artist, (l.scores::jsonb ->> (s.n - 1)::int)::float8 AS score,
  COALESCE(l.per_position::jsonb -> 'model_version' ->> (s.n - 1)::int, l.model_version)
    AS model_version,
  l.experiment, COALESCE(l.per_position::jsonb -> 'arm' ->> (s.n - 1)::int, l.arm) AS arm,
  l."time", (l.propensities::jsonb ->> (s.n - 1)::int)::float8 AS propensity, l.id AS list_id
FROM impression_lists AS l
CROSS JOIN LATERAL jsonb_array_elements_text(l.artists::jsonb) WITH ORDINALITY AS s(artist, n)""",
}


ShownList = tuple[Any, ...]  # one served list as stored: values in LIST_FIELDS order


def _one_or_each(values: Sequence[Any]) -> tuple[Any, list[Any] | None]:
    """A list's one value, or (its first, all of them) when positions differ."""
    first = values[0]
    return (first, None) if all(v == first for v in values) else (first, list(values))


def pack(
    request_id: str,
    listener: str,
    artists: Sequence[str],
    scores: Sequence[float],
    model_version: str | Sequence[str],
    experiment: str | None = None,
    arms: str | Sequence[str | None] | None = None,
    propensities: Sequence[float] | None = None,
    at: float | None = None,
) -> ShownList:
    """One served list as the log stores it (``model_version`` and ``arms``: one for all,
    or one per position)."""
    n = len(artists)
    if not n:
        raise ValueError("a served list shows at least one artist")
    if n > POSITIONS:
        raise ValueError(f"a list shows at most {POSITIONS} artists")
    versions = [model_version] * n if isinstance(model_version, str) else list(model_version)
    teams = [arms] * n if arms is None or isinstance(arms, str) else list(arms)
    if len(versions) != n or len(teams) != n or len(scores) != n:
        raise ValueError("one score, model version and arm per shown artist")
    if propensities is not None and len(propensities) != n:
        raise ValueError("one propensity per shown artist")
    version, each_version = _one_or_each(versions)
    arm, each_arm = _one_or_each(teams)
    per_position = None
    if each_version is not None or each_arm is not None:
        per_position = json.dumps({"model_version": versions, "arm": teams})
    return (
        request_id,
        listener,
        time.time() if at is None else float(at),
        experiment,
        version,
        arm,
        n,
        json.dumps(list(artists)),
        json.dumps([float(s) for s in scores]),
        per_position,
        None if propensities is None else json.dumps([float(p) for p in propensities]),
    )


def shown_in(rows: Sequence[ShownList]) -> int:
    """The artists shown in packed ``rows``."""
    return sum(row[SHOWN] for row in rows)


_CREATED: weakref.WeakKeyDictionary[EventStore, set[int]] = weakref.WeakKeyDictionary()
_CREATED_LOCK = threading.Lock()


def ensure_tables(store: EventStore, tables: sa.MetaData = metadata) -> None:
    """Create ``tables`` (by default the impression log) in the store's database, once.

    The online tables share the event store's engine; this creates them beside the events
    (idempotent) and adds any index a table made by an older version lacks. For the
    impression log it also moves an older version's one-row-per-artist table into the list
    table (:func:`_upgrade`) and makes the view. Another process creating them at the same
    moment makes ``create_all`` fail on a table that now exists, so it is tried again until
    every table is there.
    """
    with _CREATED_LOCK:
        if id(tables) in _CREATED.get(store, set()):
            return
        store.ensure_schema()
        for attempt in range(CREATE_ATTEMPTS):
            try:
                tables.create_all(store.engine, checkfirst=True)
                for table in tables.sorted_tables:  # indexes added since a table was made
                    for index in table.indexes:
                        index.create(store.engine, checkfirst=True)
                if tables is metadata:
                    _upgrade(store)
                break
            except sa.exc.DBAPIError as exc:  # PostgreSQL: pg_type's unique key, same cause
                text = str(exc)
                raced = any(s in text for s in ("already exists", "pg_type", "does not exist"))
                if not raced or attempt == CREATE_ATTEMPTS - 1:
                    raise StoreError(f"cannot create tables in {store}: {exc}") from exc
                time.sleep(0.05 * (attempt + 1))
        _CREATED.setdefault(store, set()).add(id(tables))


UPGRADE_CHUNK = 10_000  # lists inserted at a time while moving an older log


def _upgrade(store: EventStore) -> None:
    """Move an older version's ``impressions`` table (one row per shown artist) into the list
    table, in one transaction, and make the view where the table was.

    A list keeps the highest id of its rows, so the watermarks of older tombstones still
    order it before or after them.
    """
    with store.engine.connect() as conn:  # a read first: most starts find nothing to do
        inspector = sa.inspect(conn)
        view = _VIEW_SQL.get(conn.dialect.name)  # others: read_impressions, no view
        older = VIEW in inspector.get_table_names()
        if not older and (view is None or VIEW in inspector.get_view_names()):
            return
    with store.writes.begin() as conn:  # again under the write lock: another may be done
        inspector = sa.inspect(conn)
        if VIEW in inspector.get_table_names():
            old = sa.Table(VIEW, sa.MetaData(), autoload_with=conn)
            key = (old.c.request_id, old.c.listener, old.c.time)
            rows = conn.execute(sa.select(old).order_by(*key, old.c.position)).yield_per(
                UPGRADE_CHUNK
            )
            runs = itertools.groupby(rows, lambda r: (r.request_id, r.listener, r.time))
            lists = (_list_of(list(run)) for _, run in runs)
            moved = 0
            while chunk := list(itertools.islice(lists, UPGRADE_CHUNK)):
                conn.execute(sa.insert(lists_table), chunk)
                moved += len(chunk)
            conn.execute(sa.text(f"DROP TABLE {VIEW}"))
            if conn.dialect.name == "postgresql" and moved:  # new lists after the moved ones
                conn.execute(
                    sa.text(
                        "SELECT setval(pg_get_serial_sequence('impression_lists', 'id'), "
                        "(SELECT MAX(id) FROM impression_lists))"
                    )
                )
            log.info("impression log: %d lists moved to %s", moved, lists_table.name)
        if view is not None and VIEW not in inspector.get_view_names():
            conn.execute(sa.text(view))


def _list_of(run: list[Any]) -> dict[str, Any]:
    """One list's values from an older log's rows (in position order)."""
    first = run[0]
    propensities = [r.propensity for r in run]
    values = pack(
        first.request_id,
        first.listener,
        [r.artist for r in run],
        [r.score for r in run],
        [r.model_version for r in run],
        first.experiment,
        [r.arm for r in run],
        None if any(p is None for p in propensities) else propensities,
        first.time,
    )
    return {"id": max(int(r.id) for r in run), **dict(zip(LIST_FIELDS, values, strict=True))}


@functools.cache
def _insert_sql(paramstyle: str) -> str:
    """``INSERT INTO impression_lists`` in the driver's positional parameter style."""
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{}"}.get(paramstyle)
    if marker is None:
        raise StoreError(f"no positional parameters in the driver's style {paramstyle!r}")
    markers = ", ".join(marker.format(i + 1) for i in range(len(LIST_FIELDS)))
    names = ", ".join(f'"{f}"' if f == "time" else f for f in LIST_FIELDS)
    return f"INSERT INTO {lists_table.name} ({names}) VALUES ({markers})"


def write_impressions(store: EventStore, rows: Sequence[ShownList]) -> int:
    """Commit packed lists in one transaction (the writer thread's step; also for tools and
    tests); the number of shown artists stored."""
    if not rows:
        return 0
    ensure_tables(store)
    values = list(rows)
    try:
        with store.writes.begin() as conn:
            # The driver's own executemany over plain tuples, without SQLAlchemy's per-row
            # parameter processing (benchmarks/bench_impressions.py: rows committed per second).
            conn.exec_driver_sql(_insert_sql(conn.dialect.paramstyle), values)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot store impressions in {store}: {exc}") from exc
    return shown_in(values)


def expand(lists: pd.DataFrame) -> pd.DataFrame:
    """Stored lists (``id`` and the list columns) as impression rows (:data:`COLUMNS`)."""
    if lists.empty:
        return pd.DataFrame(columns=COLUMNS)
    n = lists["shown"].to_numpy(np.int64)
    starts = np.cumsum(n) - n  # each list's first row
    at = np.repeat(np.arange(len(lists)), n)
    position = np.arange(int(n.sum())) - np.repeat(starts, n)
    decode = json.loads
    version = np.repeat(lists["model_version"].to_numpy(object), n)
    arm = np.repeat(lists["arm"].to_numpy(object), n)
    propensity = np.full(len(position), np.nan)
    for i, k, each in zip(starts, n, lists["per_position"], strict=True):
        if isinstance(each, str):  # interleaved: an arm and a model per position
            values = decode(each)
            version[i : i + k], arm[i : i + k] = values["model_version"], values["arm"]
    for i, k, each in zip(starts, n, lists["propensities"], strict=True):
        if isinstance(each, str):
            propensity[i : i + k] = decode(each)
    return pd.DataFrame(
        {
            "id": lists["id"].to_numpy(np.int64)[at] * POSITIONS + position,
            "request_id": lists["request_id"].to_numpy(object)[at],
            "listener": lists["listener"].to_numpy(object)[at],
            "position": position,
            "artist": [a for each in lists["artists"] for a in decode(each)],
            "score": [s for each in lists["scores"] for s in decode(each)],
            "model_version": version,
            "experiment": lists["experiment"].to_numpy(object)[at],
            "arm": arm,
            "time": lists["time"].to_numpy(np.float64)[at],
            "propensity": propensity,
        },
        columns=COLUMNS,
    )


def read_lists(store: EventStore, query: sa.Select) -> pd.DataFrame:
    """The impression rows of the lists ``query`` selects (all columns of ``lists_table``)."""
    with store.engine.connect() as conn:
        return expand(pd.read_sql(query, conn))


def read_impressions(
    store: EventStore, experiment: str | None = None, since: float | None = None
) -> pd.DataFrame:
    """Impression rows (:data:`COLUMNS`), filtered by experiment and time, in id order."""
    if not store.exists:
        return pd.DataFrame(columns=COLUMNS)
    ensure_tables(store)
    table = lists_table
    query = sa.select(table)
    if experiment is not None:
        query = query.where(table.c.experiment == experiment)
    if since is not None:
        query = query.where(table.c.time >= since)
    return read_lists(store, query.order_by(table.c.id))


def latest_shown(
    conn: sa.Connection, listener: str, limit: int, since: float | None = None
) -> list[tuple[int, str, float]]:
    """``(impression id, artist, time)`` of the listener's latest ``limit`` impressions (at
    or after ``since``), newest list first."""
    table = lists_table
    query = sa.select(table.c.id, table.c.artists, table.c.time).where(table.c.listener == listener)
    if since is not None:
        query = query.where(table.c.time >= since)
    out: list[tuple[int, str, float]] = []
    newest = query.order_by(table.c.time.desc()).limit(limit)  # a list shows one or more
    for list_id, artists, at in conn.execute(newest):
        base = int(list_id) * POSITIONS
        out.extend((base + i, name, at) for i, name in enumerate(json.loads(artists)))
        if len(out) >= limit:
            return out[:limit]
    return out
