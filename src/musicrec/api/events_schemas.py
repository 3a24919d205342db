"""Request and response bodies of the event routes (``POST /events`` and friends)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

from musicrec.api.schemas import NAME_PATTERN
from musicrec.events.schema import MAX_BATCH, MAX_PLAYS, MAX_TEXT, MAX_TIMESTAMP, MIN_TIMESTAMP

EventName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NAME_PATTERN)
]
Timestamp = Annotated[
    int,
    Field(
        ge=MIN_TIMESTAMP,
        le=MAX_TIMESTAMP,
        description="Epoch seconds, UTC (default: now). More than a day ahead of the "
        "server clock is recorded as the time of receipt.",
    ),
]


class _EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: EventName = Field(description="The listener.")
    artist: EventName = Field(description="Artist name.")
    timestamp: Timestamp | None = None


class PlayEvent(_EventIn):
    """``plays`` listens of an artist."""

    kind: Literal["play"] = "play"
    plays: int = Field(default=1, ge=1, le=MAX_PLAYS, description="Listens (default 1).")


class MarkEvent(_EventIn):
    """A skip, a love (counts as several plays) or a ban (never recommended again)."""

    kind: Literal["skip", "love", "ban"]
    plays: Literal[1] = Field(default=1, description="Only play events carry plays.")


def _event_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "play" if kind in (None, "play") else "mark"


EventIn = Annotated[
    Annotated[PlayEvent, Tag("play")] | Annotated[MarkEvent, Tag("mark")],
    Discriminator(_event_kind),
]


class EventBatch(BaseModel):
    """``POST /events``: up to ``MAX_BATCH`` events, stored all together or not at all."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Events: play (the default kind, with plays), skip, love or ban.",
    )

    def raw(self) -> list[dict[str, Any]]:
        """The events as mappings for :func:`~musicrec.events.schema.validate_batch`."""
        return [event.model_dump(exclude_none=True) for event in self.events]


def first_refused_event(errors: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``index``, ``field`` and ``reason`` of the first invalid event of a validation error."""
    for error in errors:
        loc = error["loc"]
        if len(loc) >= 3 and loc[:2] == ["body", "events"] and isinstance(loc[2], int):
            field = next((str(p) for p in loc[4:5]), None)  # loc[3] is the kind's tag
            return {"index": loc[2], "field": field, "reason": error["msg"]}
    return None


class EventsAccepted(BaseModel):
    """The batch is durable in the event store."""

    accepted: int
    first_id: int
    last_id: int
    took_ms: float


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
