"""``musicrec events import``: a TSV, CSV or Parquet file of events into the store.

Every row goes through :func:`~musicrec.events.schema.validate_event`, the validation of
``POST /events``; one invalid row refuses the file (its row number and reason are reported)
and the valid file is stored in one transaction, so an import is all-or-nothing too. Rows with
an ``event_id`` the listener already has are skipped, so importing a file again adds nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from musicrec.errors import DataError, EventError
from musicrec.events.schema import FIELDS, validate_event
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
    """The file's rows; columns among ``user_id, artist, plays, timestamp, kind, event_id``."""
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
    unknown = sorted(set(frame.columns) - set(FIELDS))
    if unknown:
        raise DataError(f"{path}: unknown column(s) {unknown}; expected {', '.join(FIELDS)}")
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
            events.append(validate_event(index, raw, now))
        except EventError as exc:
            raise DataError(
                f"{path}: row {index + 1} (after the header): {exc.reason}"
                f" ({exc.field or 'event'}); nothing imported"
            ) from None
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
