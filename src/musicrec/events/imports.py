"""``musicrec events import``: a TSV, CSV or Parquet file of events into the store.

Every row goes through :func:`~musicrec.events.schema.validate_event`, the validation of
``POST /events``; one invalid row refuses the file (its row number and reason are reported)
and the valid file is stored in one transaction, so an import is all-or-nothing too. Rows with
an ``event_id`` the listener already has are skipped, so importing a file again adds nothing.
A ban row may carry ``until`` (epoch seconds or ISO 8601), as in ``POST /events``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from musicrec.errors import DataError, EventError
from musicrec.events.forget import first_forgotten
from musicrec.events.schema import BAN_FIELDS, FIELDS, validate_event
from musicrec.events.store import EventStore

SUFFIXES = {".tsv": "\t", ".csv": ","}


@dataclass(frozen=True)
class ImportSummary:
    path: str
    rows: int  # events stored
    first_id: int | None  # None when every row was stored already
    last_id: int | None
    seconds: float
    duplicates: int = 0  # rows whose event_id the listener already had


def read_events_file(path: str | Path) -> pd.DataFrame:
    """The rows; columns among ``user_id, artist, plays, timestamp, kind, event_id, until``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in SUFFIXES:
        text_columns = {"user_id": str, "artist": str, "event_id": str}
        frame = pd.read_csv(path, sep=SUFFIXES[suffix], dtype=text_columns)
    else:
        raise DataError(f"{path}: expected .tsv, .csv or .parquet, got {suffix or 'no suffix'}")
    known = FIELDS + BAN_FIELDS
    unknown = sorted(set(frame.columns) - set(known))
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; expected {', '.join(known)}")
    return frame


def _clean(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def import_events(store: EventStore, path: str | Path) -> ImportSummary:
    """Validate every row of ``path``, then store them all in one transaction."""
    started = time.perf_counter()
    frame = read_events_file(path)
    if frame.empty:
        raise DataError(f"{path}: no events")
    now = time.time()
    columns = list(frame.columns)
    events = []
    for index, values in enumerate(frame.itertuples(index=False, name=None)):
        raw = {c: _clean(v) for c, v in zip(columns, values, strict=True)}
        try:
            events.append(validate_event(index, raw, now, accept_until=True))
        except EventError as exc:
            raise DataError(
                f"{path}: row {index + 1} (after the header): {exc.reason}"
                f" ({exc.field or 'event'}); nothing imported"
            ) from None
    gone = first_forgotten([e.user_id for e in events], store)
    if gone is not None:
        raise DataError(
            f"{path}: row {gone + 1} (after the header): that listener was forgotten "
            "(musicrec users forget); nothing imported"
        )
    appended = store.append(events)
    ids = appended.ids
    return ImportSummary(
        str(path),
        len(ids),
        ids[0] if ids else None,
        ids[-1] if ids else None,
        time.perf_counter() - started,
        appended.duplicates,
    )
