"""Request and response bodies of the event routes (``POST /events`` and friends)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from musicrec.events.schema import MAX_BATCH


class EventBatch(BaseModel):
    """``POST /events``: up to ``MAX_BATCH`` events, stored all together or not at all."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=(
            "Events: user_id, artist (required); kind play|skip|love|ban (default play); "
            "plays (whole number, play events only, default 1); timestamp (epoch seconds "
            "or ISO-8601, default now); event_id (optional, the sender's id: an event "
            "whose event_id the listener already has is not stored again); until (ban "
            "events only: epoch seconds or ISO-8601 when the ban lifts; default never)."
        ),
    )


class EventsAccepted(BaseModel):
    """The batch is durable in the event store (201; 200 when nothing in it was new)."""

    accepted: int = Field(description="Events of the batch, all of them now in the store.")
    stored: int = Field(description="Events this request stored.")
    duplicates: int = Field(
        description="Events whose event_id the listener already had: stored once, not again."
    )
    first_id: int | None = Field(description="Id of the first stored event (null if none).")
    last_id: int | None = Field(description="Id of the last stored event (null if none).")
    took_ms: float
    ban_notice: str | None = Field(
        default=None,
        description="Set when some bans have an until already past: stored, but no effect.",
    )


class EventRejection(BaseModel):
    """Why a batch was refused: the first offending event and the reason."""

    detail: str
    index: int | None = Field(description="Position of the offending event in the batch.")
    field: str | None = None
    reason: str


class StoredEvent(BaseModel):
    id: int
    artist: str
    kind: str
    plays: int
    timestamp: int


class UserEventsResponse(BaseModel):
    user_id: str
    events: list[StoredEvent] = Field(description="Most recent first.")


class EventStats(BaseModel):
    events: int
    by_kind: dict[str, int]
    users: int
    max_id: int
    store: str


class WorkerInfo(BaseModel):
    worker: str = Field(description="host:pid of the API worker.")
    version: str | None
    path: str | None
    seen_at: float = Field(description="Last heartbeat, epoch seconds.")


class WorkersResponse(BaseModel):
    workers: list[WorkerInfo]
    watch_interval_s: float
