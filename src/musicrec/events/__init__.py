"""Listening events: validation, the durable store, fold-in profiles, import and replay."""

from musicrec.events.schema import KINDS, Event, EventError, validate_batch, validate_event
from musicrec.events.store import EventStore, StoreError

__all__ = [
    "KINDS",
    "Event",
    "EventError",
    "EventStore",
    "StoreError",
    "validate_batch",
    "validate_event",
]
