"""Listening events: validation, the durable store, fold-in profiles, import and replay."""

from musicrec.errors import EventError, StoreError
from musicrec.events.schema import KINDS, Event, validate_batch, validate_event
from musicrec.events.store import EventStore

__all__ = [
    "KINDS",
    "Event",
    "EventError",
    "EventStore",
    "StoreError",
    "validate_batch",
    "validate_event",
]
