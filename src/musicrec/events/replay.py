"""``musicrec events replay``: Last.fm-1K-style listening logs fed as live events.

The 1K format is one play per line, ``userid \\t timestamp \\t artist-mbid \\t artist-name \\t
track-mbid \\t track-name``. Replay sorts the rows it reads by time and sends them in batches
at a fixed rate, to the HTTP API (``POST /events``, loopback only unless allowed) or straight
into a store, always bounded by an event count and a duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd

from musicrec.errors import DataError
from musicrec.events.schema import Event, parse_timestamp, validate_batch
from musicrec.events.store import EventStore

LASTFM1K_COLUMNS = ["user_id", "timestamp", "artist_mbid", "artist", "track_mbid", "track"]
Sink = Callable[[list[dict[str, object]]], int]


@dataclass
class ReplaySummary:
    sent: int = 0
    batches: int = 0
    rejected_batches: int = 0
    seconds: float = 0.0
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def read_lastfm1k(path: str | Path, max_rows: int | None = None) -> pd.DataFrame:
    """The first ``max_rows`` plays of a 1K-format file, oldest first."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.tsv"))
        if not candidates:
            raise DataError(f"{path}: no .tsv file")
        path = candidates[0]
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=LASTFM1K_COLUMNS,
        usecols=["user_id", "timestamp", "artist"],
        dtype=str,
        nrows=max_rows,
        quoting=3,
        on_bad_lines="skip",
    )
    frame = frame.dropna(subset=["user_id", "artist"])
    now = time.time()
    frame["timestamp"] = [parse_timestamp(t, now) for t in frame["timestamp"]]
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)


def http_sink(url: str, timeout: float = 10.0) -> tuple[Sink, Callable[[], None]]:
    """POST each batch to ``{url}/events``; returns (send, close)."""
    client = httpx.Client(base_url=url, timeout=timeout)

    def send(batch: list[dict[str, object]]) -> int:
        answer = client.post("/events", json={"events": batch})
        if not answer.is_success:  # 201, or 200 when every event was stored already
            raise DataError(f"POST /events answered {answer.status_code}: {answer.text[:200]}")
        return int(answer.json()["accepted"])

    return send, client.close


def store_sink(store: EventStore) -> Sink:
    def send(batch: list[dict[str, object]]) -> int:
        events: list[Event] = validate_batch(batch)
        appended = store.append(events)
        return len(appended.ids) + appended.duplicates

    return send


def replay(
    frame: pd.DataFrame,
    send: Sink,
    *,
    rate: float = 200.0,
    batch_size: int = 50,
    max_events: int = 10_000,
    duration: float = 60.0,
    retime: bool = False,
) -> ReplaySummary:
    """Send ``frame``'s plays in time order, ``rate`` events/s, until a bound is reached.

    ``retime`` stamps events with the send time instead of their logged time (recency
    filters then see them as new).
    """
    if rate <= 0 or batch_size < 1 or max_events < 1 or duration <= 0:
        raise ValueError("rate, batch size, max events and duration must be positive")
    summary = ReplaySummary()
    started = time.perf_counter()
    rows = frame.head(max_events)
    for start in range(0, len(rows), batch_size):
        elapsed = time.perf_counter() - started
        if elapsed >= duration:
            break
        due = start / rate
        if due > elapsed:
            time.sleep(min(due - elapsed, duration - elapsed))
        chunk = rows.iloc[start : start + batch_size]
        now = int(time.time())
        batch: list[dict[str, object]] = [
            {"user_id": str(user), "artist": str(artist), "timestamp": now if retime else int(ts)}
            for user, artist, ts in zip(
                chunk["user_id"], chunk["artist"], chunk["timestamp"].to_numpy("int64"), strict=True
            )
        ]
        try:
            summary.sent += send(batch)
            summary.batches += 1
        except (DataError, httpx.HTTPError, ValueError) as exc:
            summary.rejected_batches += 1
            if len(summary.errors) < 5:
                summary.errors.append(str(exc))
        stamps = chunk["timestamp"].to_numpy(dtype="int64")
        if summary.first_timestamp is None:
            summary.first_timestamp = int(stamps[0])
        summary.last_timestamp = int(stamps[-1])
    summary.seconds = time.perf_counter() - started
    return summary
