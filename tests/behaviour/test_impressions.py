"""The impression log: batched writes off the request path, and outcomes joined to them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from online_stores import BACKENDS, empty_store

from musicrec.events.forget import forget_listener
from musicrec.events.impression_writer import HANDOFF_INTERVAL_S, ImpressionWriter, attach_to_host
from musicrec.events.impressions import (
    LIST_FIELDS,
    ensure_tables,
    expand,
    pack,
    read_impressions,
    write_impressions,
)
from musicrec.events.outcomes import attribute, experiment_outcomes, record_requests
from musicrec.events.schema import validate_batch
from musicrec.events.store import EventStore
from musicrec.events.writer import WriterService

NOW = 1_700_000_000.0


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    yield from empty_store(request.param, tmp_path)


def a_list(
    request: str, listener: str = "u", at: float = NOW, arm: str | None = "a", exp: str = "exp"
) -> list:
    experiment = exp if arm is not None else None
    return [pack(request, listener, ["A", "B", "C"], [3.0, 2.0, 1.0], "v1", experiment, arm, at=at)]


def test_writer_batches_and_a_clean_stop_loses_nothing(store: EventStore) -> None:
    writer = ImpressionWriter(store, flush_interval_s=30.0, batch_rows=50).start()
    threads = [
        threading.Thread(target=lambda t=t: [writer.write(a_list(f"r{t}-{i}")) for i in range(100)])
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = writer.stop()
    frame = read_impressions(store)
    assert len(frame) == 4 * 100 * 3 == stats.written and stats.dropped == 0
    assert stats.batches >= 1200 // 50 - 1  # committed by size, not one row at a time
    assert frame.groupby("request_id")["position"].apply(list).map([0, 1, 2].__eq__).all()
    assert not writer.write(a_list("late"))  # stopped: refused and counted
    assert writer.stats.dropped == 3
    with pytest.raises(RuntimeError, match="starts once"):
        writer.start()


def test_writer_commits_within_its_interval(store: EventStore) -> None:
    writer = ImpressionWriter(store, flush_interval_s=0.2).start()
    writer.write(a_list("r1"))
    deadline = time.monotonic() + 20
    while len(read_impressions(store)) < 3:
        assert time.monotonic() < deadline, "not committed"
        time.sleep(0.05)
    writer.stop()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    writer = ImpressionWriter(store, flush_interval_s=30.0, max_queued=2)
    writer._accepting = True  # accept without a thread draining the queue
    assert writer.write(a_list("r1")) and writer.write(a_list("r2"))
    started = time.perf_counter()
    assert not writer.write(a_list("r3"))
    assert time.perf_counter() - started < 0.5
    assert writer.stats.dropped == 3


KILLED_WRITER = """
import sys, time
from musicrec.events.impression_writer import ImpressionWriter
from musicrec.events.impressions import pack
from musicrec.events.store import EventStore
writer = ImpressionWriter(EventStore(sys.argv[1]), flush_interval_s=0.2).start()
print("ready", flush=True)
i = 0
while True:
    writer.write([pack(f"r{i}", "u", ["A", "B"], [1.0, 0.5], "v1", at=time.time())])
    i += 1
    time.sleep(0.002)
"""


@pytest.mark.slow
def test_sigkill_loses_at_most_the_last_moments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(2.0)
    finally:
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    stored = read_impressions(EventStore(url))
    assert len(stored) > 0
    newest = stored["time"].max()
    assert killed_at - newest < 2.0  # far less than that unless the machine is very busy
    counts = stored.groupby("request_id").size()
    assert (counts == 2).all()  # a list is stored whole or not at all


# ----------------------------------------------------------------------------- host writer

FORWARDING_WORKER = """
import sys, time
from musicrec.events.impression_writer import forwarding_writer
from musicrec.events.impressions import pack
from musicrec.events.store import EventStore
url, address, name, lists = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
writer = forwarding_writer(EventStore(url), address)
print("ready", flush=True)
i = 0
while lists < 0 or i < lists:
    writer.write([pack(f"{name}-{i}", name, ["A", "B"], [1.0, 0.5], "v1", at=time.time())])
    i += 1
    time.sleep(0.002)
stats = writer.stop()
print(stats.written, stats.dropped, flush=True)
"""


def forwarding_worker(url: str, service: WriterService, name: str, lists: int) -> subprocess.Popen:
    args = [sys.executable, "-c", FORWARDING_WORKER, url, service.address, name, str(lists)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_two_worker_processes_hand_rows_to_the_host_writer_and_a_clean_stop_loses_none(
    tmp_path: Path,
) -> None:
    """Rows go through the host writer (a 60 s flush: only its stop commits them), whole."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    service = WriterService(store)
    host = attach_to_host(service, store, flush_interval_s=60.0)
    children = [forwarding_worker(url, service, f"w{n}", 300) for n in range(2)]
    try:
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert out.split() == ["600", "0"]  # handed on, none dropped
        assert read_impressions(EventStore(url)).empty  # the workers committed nothing
    finally:
        service.stop()
    stored = read_impressions(EventStore(url))
    assert host.stats.written == len(stored) == 2 * 300 * 2 and host.stats.dropped == 0
    assert set(stored["listener"]) == {"w0", "w1"}
    assert (stored.groupby("request_id")["position"].apply(list).map([0, 1].__eq__)).all()
    assert not Path(service.address).exists()


@pytest.mark.slow
def test_a_killed_worker_loses_at_most_its_last_hand_off(tmp_path: Path) -> None:
    """SIGKILL a forwarding worker: every list it made up to a hand-off before is stored."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    service = WriterService(store)
    attach_to_host(service, store, flush_interval_s=0.2)
    child = forwarding_worker(url, service, "w", -1)
    try:
        time.sleep(1.5)
    finally:
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        service.stop()
    stored = read_impressions(EventStore(url))
    assert killed_at - stored["time"].max() < 10 * HANDOFF_INTERVAL_S  # far less, unless busy
    counts = stored.groupby("request_id").size()
    assert (counts == 2).all() and len(counts) > 100


# ----------------------------------------------------------------------------- attribution


def shown_frame() -> pd.DataFrame:
    rows = (
        a_list("r1", at=NOW)
        + a_list("r2", at=NOW + 100, arm="b")
        + a_list("r3", "v", at=NOW + 50, arm=None)
    )
    lists = pd.DataFrame([dict(zip(LIST_FIELDS, r, strict=True)) for r in rows])
    frame = expand(lists.assign(id=range(1, len(lists) + 1)))
    return frame.assign(id=range(1, len(frame) + 1))  # one id per shown artist, in order


def events(*rows: tuple) -> pd.DataFrame:
    columns = ["listener", "artist", "kind", "timestamp", "request_id", "position"]
    return pd.DataFrame(rows, columns=columns)


def test_attribution_by_request_position_then_window() -> None:
    shown = shown_frame()
    out = attribute(
        events(
            ("u", "C", "play", NOW + 500, "r1", 2),  # by request and position
            ("u", "b", "skip", NOW + 500, "r1", None),  # by request and artist, any case
            ("u", "A", "play", NOW + 101, None, None),  # window: the latest impression of A
            ("u", "A", "play", NOW + 99, None, None),  # window: r2 came after it
            ("u", "A", "ban", NOW + 200_000, None, None),  # outside 24 h
            ("u", "Z", "play", NOW + 10, None, None),  # never shown
            ("u", "A", "play", NOW + 60, "r3", 0),  # another listener's request: window
            ("u", "B", "love", NOW + 1, "nope", 1),  # unknown request: window
        ),
        shown,
    )
    ids = out["impression_id"].astype("float").fillna(-1).astype(int).tolist()
    assert ids == [3, 2, 4, 1, -1, -1, 1, 2]
    assert out["attributed_by"].fillna("-").tolist() == [
        "request", "request", "window", "window", "-", "-", "window", "window",
    ]  # fmt: skip
    assert out["arm"].tolist()[:4] == ["a", "a", "b", "a"]
    assert out["shown_position"].tolist()[:3] == [2, 1, 0]


def test_an_impression_counts_until_the_end_of_the_events_second() -> None:
    shown = shown_frame()  # r1 at NOW (whole second), r2 at NOW + 100
    out = attribute(events(("u", "A", "play", NOW - 1, None, None)), shown)
    assert out["impression_id"].isna().all()  # shown after the event
    out = attribute(events(("u", "A", "play", NOW, None, None)), shown, window_s=60)
    assert out["impression_id"].tolist() == [1]


def test_experiment_outcomes_from_the_store(store: EventStore) -> None:
    store.append(validate_batch([{"user_id": "u", "artist": "old", "timestamp": NOW - 10}]))
    write_impressions(store, a_list("r1", at=NOW) + a_list("r9", "other", at=NOW, arm=None))
    ids = store.append(
        validate_batch(
            [
                {"user_id": "u", "artist": "A", "kind": "play", "timestamp": NOW + 5},
                {"user_id": "u", "artist": "B", "kind": "skip", "timestamp": NOW + 6},
                {"user_id": "u", "artist": "nothing shown", "timestamp": NOW + 7},
                {"user_id": "other", "artist": "A", "timestamp": NOW + 8},
            ]
        )
    ).ids
    assert record_requests(store, ids, ["r1", None, None, None], [0, None, None, None]) == 1
    out = experiment_outcomes(store, "exp")
    assert out[["listener", "artist", "kind", "attributed_by"]].values.tolist() == [
        ["u", "A", "play", "request"],
        ["u", "B", "skip", "window"],
    ]
    assert experiment_outcomes(store, "no such experiment").empty


def mixed_lists() -> list:
    """Three lists: plain, interleaved (an arm and a model per position) and sampled."""
    return [
        pack("r1", "u", ["A", "B"], [2.0, 1.0], "v1", at=NOW),
        pack(
            "r2", "w", ["C", "D", "E"], [3.0, 2.0, 1.0], ["v1", "v9", "v1"], "exp",
            ["a", "b", "a"], at=NOW + 1,
        ),
        pack("r3", "u", ["F"], [0.5], "v2", "exp2", "b", propensities=[0.25], at=NOW + 2),
    ]  # fmt: skip


EXPECTED = [
    ("r1", "u", 0, "A", 2.0, None, None, NOW),
    ("r1", "u", 1, "B", 1.0, None, None, NOW),
    ("r2", "w", 0, "C", 3.0, "exp", "a", NOW + 1),
    ("r2", "w", 1, "D", 2.0, "exp", "b", NOW + 1),
    ("r2", "w", 2, "E", 1.0, "exp", "a", NOW + 1),
    ("r3", "u", 0, "F", 0.5, "exp2", "b", NOW + 2),
]


def as_rows(frame: pd.DataFrame) -> list[tuple]:
    keep = ["request_id", "listener", "position", "artist", "score", "experiment", "arm", "time"]
    out = frame[keep].astype(object).where(frame[keep].notna(), None)
    return [tuple(row) for row in out.itertuples(index=False)]


def test_lists_read_back_as_one_row_per_shown_artist_in_python_and_sql(store: EventStore) -> None:
    assert write_impressions(store, mixed_lists()) == 6
    frame = read_impressions(store)
    assert as_rows(frame) == EXPECTED
    assert frame["model_version"].tolist() == ["v1", "v1", "v1", "v9", "v1", "v2"]
    assert frame["propensity"].isna().tolist() == [True] * 5 + [False]
    assert frame["propensity"].iloc[-1] == 0.25 and frame["id"].is_unique
    with store.engine.connect() as conn:  # the view, for SQL
        view = pd.read_sql(sa.text("SELECT * FROM impressions ORDER BY id"), conn)
    assert as_rows(view) == as_rows(frame) and view["id"].tolist() == frame["id"].tolist()
    assert view["model_version"].tolist() == frame["model_version"].tolist()
    assert view["propensity"].fillna(-1).tolist() == frame["propensity"].fillna(-1).tolist()
    assert as_rows(read_impressions(store, experiment="exp")) == as_rows(frame)[2:5]


def test_a_list_needs_one_value_per_shown_artist() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pack("r1", "u", [], [], "v1")
    with pytest.raises(ValueError, match="one score, model version and arm"):
        pack("r1", "u", ["A", "B"], [1.0], "v1")
    with pytest.raises(ValueError, match="one score, model version and arm"):
        pack("r1", "u", ["A", "B"], [1.0, 0.5], "v1", "exp", ["a"])
    with pytest.raises(ValueError, match="one propensity"):
        pack("r1", "u", ["A"], [1.0], "v1", propensities=[0.5, 0.5])


OLD_LOG = sa.MetaData()
sa.Table(  # the log of older versions: one row per shown artist
    "impressions",
    OLD_LOG,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("listener", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("artist", sa.String(200), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(200), nullable=False),
    sa.Column("experiment", sa.String(64), nullable=True),
    sa.Column("arm", sa.String(64), nullable=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("propensity", sa.Float, nullable=True),
    sa.Index("impressions_listener_time", "listener", "time"),
)


def test_an_older_one_row_per_artist_log_is_moved_into_lists(store: EventStore) -> None:
    versions = ["v1", "v1", "v1", "v9", "v1", "v2"]
    propensities = [None] * 5 + [0.25]
    columns = ["request_id", "listener", "position", "artist", "score", "experiment", "arm"]
    rows = [
        {**dict(zip([*columns, "time"], row, strict=True)), "model_version": version,
         "propensity": propensity}
        for row, version, propensity in zip(EXPECTED, versions, propensities, strict=True)
    ]  # fmt: skip
    store.ensure_schema()
    OLD_LOG.create_all(store.engine)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(OLD_LOG.tables["impressions"]), rows)
    forget_listener(store, "nobody", actor="test")  # a tombstone with the old table's watermark
    moved = read_impressions(store)  # the first use moves the log
    assert as_rows(moved) == EXPECTED and moved["model_version"].tolist() == versions
    assert moved["propensity"].fillna(-1).tolist() == [-1] * 5 + [0.25]
    with store.engine.connect() as conn:
        assert "impressions" not in sa.inspect(conn).get_table_names()
        assert "impressions" in sa.inspect(conn).get_view_names()
        list_ids = conn.execute(sa.text("SELECT id FROM impression_lists ORDER BY id")).scalars()
        assert list(list_ids) == [2, 5, 6]  # each list keeps its last row's id
    for request in ("r4", "r5", "r6"):  # new lists come after the moved ones
        assert write_impressions(store, [pack(request, "u", ["G"], [1.0], "v1")]) == 1
    after = read_impressions(store)
    assert after["request_id"].tolist()[-3:] == ["r4", "r5", "r6"]
    assert (after["id"].iloc[-3:] > after["id"].iloc[5]).all()


def test_the_listener_time_index_is_added_to_an_older_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    ensure_tables(EventStore(url))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX impression_lists_listener_time"))
    ensure_tables(EventStore(url))  # a new process opening a log made before the index
    names = {index["name"] for index in sa.inspect(engine).get_indexes("impression_lists")}
    assert names == {"impression_lists_experiment", "impression_lists_listener_time"}
    reads = {  # the shapes of the log's queries: cool-down, forget, reports, attribution
        "SELECT id, artists, time FROM impression_lists WHERE listener = 'u' AND time >= 1 "
        "ORDER BY time DESC",
        "SELECT id FROM impression_lists WHERE listener = 'u'",
        "SELECT * FROM impression_lists WHERE experiment = 'x' ORDER BY id",
        "SELECT * FROM impression_lists WHERE time >= 1 AND listener IN "
        "(SELECT listener FROM impression_lists WHERE experiment = 'x')",
    }
    with engine.connect() as conn:
        for query in reads:
            plan = " | ".join(
                row[-1] for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {query}"))
            )
            assert "SCAN impression_lists" not in plan and "USING" in plan, (query, plan)
    engine.dispose()
