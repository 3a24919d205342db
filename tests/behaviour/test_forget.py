"""Forgetting a listener in the event store: rows, tombstone, audit, late rows, retraining input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from musicrec.data.sources import RawInteractions
from musicrec.errors import DataError
from musicrec.events import store as store_module
from musicrec.events.forget import (
    LISTENER_TABLES,
    audit,
    forget_key,
    forget_listener,
    listener_digest,
    sweep,
    tombstones,
    without_forgotten,
)
from musicrec.events.imports import import_events
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore

NOW = 1_700_000_000.0


def plays(user: str, *artists: str) -> list:
    return validate_batch([{"user_id": user, "artist": a} for a in artists], now=NOW)


def test_every_per_listener_table_is_forgotten() -> None:
    """A table keyed by listener must be in LISTENER_TABLES, or forgetting would miss it."""
    keyed = {t.name for t in store_module.metadata.sorted_tables if "user_id" in t.c}
    assert keyed <= {t.name for t in LISTENER_TABLES}


def test_forget_deletes_rows_keeps_a_tombstone_and_an_anonymous_audit(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.append(plays("jane-doe", "Metallica", "Slayer") + plays("other", "Metallica"))
    done = forget_listener(store, "jane-doe", actor="ops")
    assert done.rows == {"events": 2} and not done.already
    assert store.user_events("jane-doe").empty and len(store.user_events("other")) == 1
    assert [t.digest for t in tombstones(store)] == [listener_digest("jane-doe")]
    (record,) = audit(store)
    assert record["actor"] == "ops" and record["rows"] == {"events": 2}
    with store.engine.connect() as conn:  # nothing in the database names her any more
        dump = "\n".join(str(row) for row in conn.execute(sa.text("SELECT * FROM forget_audit")))
        dump += "\n".join(str(row) for row in conn.execute(sa.text("SELECT * FROM events")))
    assert "jane-doe" not in dump
    again = forget_listener(store, "jane-doe", actor="cli")
    assert again.already and again.total == 0 and len(tombstones(store)) == 1
    assert len(audit(store)) == 2


def test_a_sweep_removes_rows_that_arrived_after_the_tombstone(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.append(plays("other", "Metallica"))
    forget_listener(store, "late", actor="ops")
    store.append(plays("late", "Slayer", "Megadeth") + plays("other", "Slayer"))  # a slow worker
    assert sweep(store, tombstones(store)) == 2
    assert store.user_events("late").empty and len(store.user_events("other")) == 2
    assert tombstones(store)[0].watermarks == {"events": 1}  # only rows after id 1 are read


def test_an_import_of_a_forgotten_listener_is_refused_whole(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    forget_listener(store, "gone", actor="cli")
    rows = tmp_path / "events.csv"
    rows.write_text("user_id,artist\nkept,Metallica\ngone,Slayer\n")
    with pytest.raises(DataError, match="row 2 .*forgotten"):
        import_events(store, rows)
    assert store.count() == 0


def test_retraining_input_drops_forgotten_listeners_and_changes_its_key(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    raw = RawInteractions(
        user_codes=np.array([0, 0, 1, 2], dtype=np.int32),
        item_codes=np.array([0, 1, 1, 0], dtype=np.int32),
        plays=np.array([5.0, 3.0, 7.0, 1.0]),
        user_ids=np.array(["a", "b", "c"], dtype=object),
        items=pd.DataFrame({"artist_key": ["x", "y"], "artist_name": ["X", "Y"], "mbid": None}),
        timestamps=np.array([1, 2, 3, 4]),
    )
    assert without_forgotten(raw, store) is raw and forget_key("k1", store) == "k1"
    forget_listener(store, "a", actor="ops")
    kept = without_forgotten(raw, store)
    assert kept.user_ids[kept.user_codes].tolist() == ["b", "c"]
    assert kept.plays.tolist() == [7.0, 1.0] and kept.timestamps.tolist() == [3, 4]
    first = forget_key("k1", store)
    forget_listener(store, "b", actor="ops")
    assert len({"k1", first, forget_key("k1", store)}) == 3  # each tombstone: a new cycle
