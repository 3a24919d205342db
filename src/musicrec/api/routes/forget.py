"""Forgetting a listener: ``DELETE /users/{user_id}`` (admin)."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field

from musicrec.api.deps import AdminDep
from musicrec.api.schemas import NAME_MAX_LENGTH, ErrorResponse
from musicrec.errors import StoreError
from musicrec.events.forget import forget_listener
from musicrec.events.store import EventStore

router = APIRouter(prefix="/users", tags=["users"])


class ForgetResponse(BaseModel):
    """The listener's rows are deleted and their tombstone recorded."""

    forgotten: bool = True
    already_forgotten: bool = Field(description="The listener had been forgotten before.")
    rows: dict[str, int] = Field(description="Rows deleted, by table.")
    propagates_within_s: float = Field(
        description="Every other worker and replica applies it within this many seconds."
    )


@router.delete(
    "/{user_id}",
    response_model=ForgetResponse,
    responses={409: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
def forget_user(
    request: Request,
    _: AdminDep,
    user_id: Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)],
) -> ForgetResponse:
    """Forget a listener: delete their data, stop serving them, keep them out of retraining.

    Their rows in the event store (events, per-artist aggregates, impressions) are deleted
    now, with the answers kept for them; this worker answers 404 for them at once,
    every other worker and replica within ``propagates_within_s``; no later ``retrain``
    uses their plays, even those in the base data file. An audit record keeps when, by which
    key name and how many rows, nothing about the listener. Repeating the call is harmless.
    """
    store: EventStore | None = request.app.state.event_store
    if store is None:
        raise HTTPException(409, "forgetting needs the event store (set MUSICREC_EVENTS_URL)")
    actor = getattr(request.state, "api_key_name", None) or (
        "admin-key" if request.app.state.settings.admin_api_key else "anonymous"
    )
    try:
        done = forget_listener(store, user_id, actor)
    except (StoreError, sa.exc.SQLAlchemyError) as exc:
        raise HTTPException(503, f"listener not forgotten: {exc}", {"Retry-After": "1"}) from exc
    request.app.state.forgotten.add(user_id)
    return ForgetResponse(
        already_forgotten=done.already,
        rows=done.rows,
        propagates_within_s=request.app.state.settings.access_refresh_s,
    )
