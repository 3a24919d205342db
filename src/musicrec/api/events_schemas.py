"""Request and response bodies of the event routes (``POST /events`` and friends)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from musicrec.api.schemas import NAME_PATTERN
from musicrec.events.outcomes import MAX_POSITION, REQUEST_ID
from musicrec.events.schema import MAX_BATCH, MAX_PLAYS, MAX_TEXT, MAX_TIMESTAMP, MIN_TIMESTAMP

EventName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NAME_PATTERN)
]
EpochSeconds = Annotated[
    int,
    Field(
        ge=MIN_TIMESTAMP,
        le=MAX_TIMESTAMP,
        description="Epoch seconds, UTC. More than a day ahead of the server clock is "
        "recorded as the time of receipt.",
    ),
]
# ISO-8601 in UTC (``Z`` or none), years 2000-2099, only calendar dates (29 February in leap
# years): the schema admits exactly what validation accepts, so no schema-valid time is refused.
_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_LEAP = r"(?:20(?:[02468][048]|[13579][26])-02-29)"
ISO_PATTERN = rf"^(?:20\d\d-{_DAY}|{_LEAP})T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{{1,6}})?Z?$"
IsoTime = Annotated[
    str,
    StringConstraints(pattern=ISO_PATTERN),
    Field(description="ISO-8601 date and time in UTC, e.g. 2024-05-01T12:00:00Z."),
]
Timestamp = EpochSeconds | IsoTime
RequestId = Annotated[str, StringConstraints(pattern=f"^{REQUEST_ID}$")]


def _whole_number(value: Any) -> Any:
    """A JSON integer (1 or 1.0), never true/false or text, as the schema's "integer" says."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


Position = Annotated[int, Field(ge=0, lt=MAX_POSITION), BeforeValidator(_whole_number)]


class _EventIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"dependentRequired": {"position": ["request_id"]}}
    )

    user_id: EventName = Field(description="The listener.")
    artist: EventName = Field(description="Artist name.")
    timestamp: Timestamp | None = Field(default=None, description="When (default: now).")
    event_id: EventName | None = Field(
        default=None,
        description="The sender's id for the event: one the listener already has is "
        "acknowledged but not stored again, so a batch may be retried safely.",
    )
    request_id: RequestId | SkipJsonSchema[None] = Field(
        default=None,
        description="The request_id of the list this event answers (from its response).",
    )
    position: Position | SkipJsonSchema[None] = Field(
        default=None,
        description="0-based place of the artist in that list; only with request_id.",
    )

    @model_validator(mode="before")
    @classmethod
    def _links_are_not_null(cls, data: Any) -> Any:
        """request_id and position are left out or given: an explicit null is refused, as
        the schema says (a position always comes with a request_id)."""
        if isinstance(data, dict):
            for name in ("request_id", "position", "until"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} may be left out but not null")
        return data


class PlayEvent(_EventIn):
    """``plays`` listens of an artist."""

    kind: Literal["play"] = "play"
    plays: int = Field(default=1, ge=1, le=MAX_PLAYS, description="Listens (default 1).")


class MarkEvent(_EventIn):
    """A skip or a love (counts as several plays)."""

    kind: Literal["skip", "love"]
    plays: Literal[1] = Field(default=1, description="Only play events carry plays.")


class BanEvent(_EventIn):
    """A ban: the artist is never recommended to the listener again, or until ``until``."""

    kind: Literal["ban"]
    plays: Literal[1] = Field(default=1, description="Only play events carry plays.")
    until: Timestamp | SkipJsonSchema[None] = Field(
        default=None, description="When the ban lifts (default: never)."
    )


def _event_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "play" if kind in (None, "play") else "ban" if kind == "ban" else "mark"


EventIn = Annotated[
    Annotated[PlayEvent, Tag("play")]
    | Annotated[MarkEvent, Tag("mark")]
    | Annotated[BanEvent, Tag("ban")],
    Discriminator(_event_kind),
]


class EventBatch(BaseModel):
    """``POST /events``: up to ``MAX_BATCH`` events, stored all together or not at all."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=(
            "Events: play (the default kind, with plays), skip, love or ban. An event whose "
            "event_id the listener already has is not stored again. request_id and position "
            "(0-based, only with a request_id) name the shown list and place the event answers. "
            "A ban may carry until (epoch seconds or ISO-8601) when it lifts; default never."
        ),
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
