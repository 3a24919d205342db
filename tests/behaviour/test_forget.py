"""Forgetting a listener in the event store: rows, tombstone, audit, late rows, retraining input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from online_stores import BACKENDS, empty_store

from musicrec.api.forgotten import ForgottenListeners
from musicrec.data.sources import RawInteractions
from musicrec.errors import DataError
from musicrec.events import forget, impressions, outcomes, tables
from musicrec.events.cache import cache_for
from musicrec.events.forget import (
    EVENT_LINKS,
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
from musicrec.events.impressions import pack, read_impressions, write_impressions
from musicrec.events.outcomes import links_table, record_requests
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.online import experiments

NOW = 1_700_000_000.0


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    stores = empty_store(request.param, tmp_path)
    fresh = next(stores)
    forget.metadata.drop_all(fresh.engine)  # PostgreSQL: the tombstones of an earlier run
    yield fresh
    stores.close()


def plays(user: str, *artists: str) -> list:
    return validate_batch([{"user_id": user, "artist": a} for a in artists], now=NOW)


def test_every_per_listener_table_is_forgotten() -> None:
    """A table with a listener column must be in LISTENER_TABLES, or forgetting would miss it;
    one keyed by event ids must be in EVENT_LINKS."""
    everything = (tables.metadata, impressions.metadata, outcomes.metadata, experiments.metadata)
    found = {t for m in everything for t in m.sorted_tables}
    keyed = {t.name for t in found if {"user_id", "listener"} & set(t.c.keys())}
    assert keyed == {t.name for t in LISTENER_TABLES}
    linked = {t.name for t in found if "event_id" in t.c and t.name != "events"}
    assert linked == {t.name for t in EVENT_LINKS}


def test_forget_deletes_rows_keeps_a_tombstone_and_an_anonymous_audit(store: EventStore) -> None:
    store.append(plays("jane-doe", "Metallica", "Slayer") + plays("other", "Metallica"))
    done = forget_listener(store, "jane-doe", actor="ops")
    assert done.rows == {"events": 2, "listener_artists": 2} and not done.already
    assert store.user_events("jane-doe").empty and len(store.user_events("other")) == 1
    assert store.listener_version("jane-doe") == 0  # her per-artist state is gone too
    assert not store.compacted_events("jane-doe", watermark=0).size
    assert [t.digest for t in tombstones(store)] == [listener_digest("jane-doe")]
    (record,) = audit(store)
    assert record["actor"] == "ops" and record["rows"] == done.rows
    with store.engine.connect() as conn:  # nothing in the database names her any more
        dump = "\n".join(str(row) for row in conn.execute(sa.text("SELECT * FROM forget_audit")))
        dump += "\n".join(str(row) for row in conn.execute(sa.text("SELECT * FROM events")))
    assert "jane-doe" not in dump
    again = forget_listener(store, "jane-doe", actor="cli")
    assert again.already and again.total == 0 and len(tombstones(store)) == 1
    assert len(audit(store)) == 2


def test_a_sweep_removes_rows_that_arrived_after_the_tombstone(store: EventStore) -> None:
    store.append(plays("other", "Metallica"))
    forget_listener(store, "late", actor="ops")
    store.append(plays("late", "Slayer", "Megadeth") + plays("other", "Slayer"))  # a slow worker
    assert sweep(store, tombstones(store)) == 4  # two events, their two per-artist rows
    assert store.user_events("late").empty and len(store.user_events("other")) == 2
    assert store.listener_version("late") == 0 and sweep(store, tombstones(store)) == 0
    assert tombstones(store)[0].watermarks == {"events": 1}  # only rows after id 1 are read


def test_an_import_of_a_forgotten_listener_is_refused_whole(
    store: EventStore, tmp_path: Path
) -> None:
    forget_listener(store, "gone", actor="cli")
    rows = tmp_path / "events.csv"
    rows.write_text("user_id,artist\nkept,Metallica\ngone,Slayer\n")
    with pytest.raises(DataError, match="row 2 .*forgotten"):
        import_events(store, rows)
    assert store.count() == 0


def test_retraining_input_drops_forgotten_listeners_and_changes_its_key(store: EventStore) -> None:
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


def test_impressions_and_their_links_go_with_the_listener(store: EventStore) -> None:
    write_impressions(store, [pack("r1", "jane", ["A", "B"], [2.0, 1.0], "v1", at=NOW)])
    write_impressions(store, [pack("r2", "other", ["A"], [1.0], "v1", at=NOW)])
    ids = store.append(plays("jane", "A") + plays("other", "A")).ids
    record_requests(store, ids, ["r1", "r2"], [0, 0])
    done = forget_listener(store, "jane", actor="ops")
    assert done.rows == {
        "event_requests": 1,
        "events": 1,
        "listener_artists": 1,
        "impression_lists": 1,  # one list of two shown artists
    }
    assert read_impressions(store)["listener"].tolist() == ["other"]
    with store.engine.connect() as conn:
        linked = conn.execute(sa.select(links_table.c.event_id)).scalars().all()
    assert linked == [ids[1]]
    # An impression written late by a worker that had not seen the tombstone: swept.
    write_impressions(store, [pack("r3", "jane", ["C"], [1.0], "v1", at=NOW)])
    assert sweep(store, tombstones(store)) == 1
    assert read_impressions(store)["listener"].tolist() == ["other"]


def test_a_worker_drops_the_answers_it_kept_for_a_forgotten_listener(store: EventStore) -> None:
    owner = type("Model", (), {})()  # the cache belongs to a served model
    cache = cache_for(owner, 100)
    cache.put((store.url, "jane", 7, 10, None, None, 0.5), ["kept"])
    cache.put((store.url, "other", 3, 10, None, None, 0.5), ["kept"])
    seen_here, elsewhere = ForgottenListeners(), ForgottenListeners()
    seen_here.add("jane")  # the worker that handled the deletion
    assert len(cache) == 1 and cache.get((store.url, "other", 3, 10, None, None, 0.5), NOW)
    cache.put((store.url, "other-2", 1, 10, None, None, 0.5), ["kept"])
    forget_listener(store, "other-2", actor="ops")
    elsewhere.refresh(store)  # another worker reads the tombstones at its next check
    assert len(cache) == 1 and elsewhere.is_forgotten("other-2")
