"""Operator routes, behind ``X-API-Key``: hot model reload."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request

from musicrec.api.deps import AdminDep, SettingsDep
from musicrec.api.schemas import ErrorResponse, ReloadRequest, ReloadResponse
from musicrec.api.watch import pointer_name, swap
from musicrec.errors import ModelLoadError

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 409)},
)
def reload_model(
    request: Request, _: AdminDep, settings: SettingsDep, body: ReloadRequest | None = None
) -> ReloadResponse:
    """Load a model (default: the configured path or alias, re-resolved) and swap it in.

    The new runtime is built completely first; then one reference is replaced, so requests
    in flight finish on the old model. The worker that receives the call swaps at once; with
    an event store the target is also written to the shared model pointer, which every other
    worker and replica applies within ``MUSICREC_WATCH_INTERVAL_S``.
    """
    target = (body.model if body else None) or settings.model
    if not target:
        raise HTTPException(409, "no model given and none configured (MUSICREC_MODEL)")
    started = time.perf_counter()
    try:
        previous = swap(request.app, target, "admin", blocking=False)
    except ModelLoadError as exc:  # nothing loadable there: the model named is not found
        raise HTTPException(404, str(exc)) from exc
    if previous is False:
        raise HTTPException(409, "a reload is already in progress")
    recommender = request.app.state.recommender
    store = request.app.state.event_store
    if store is not None:  # the other workers and replicas follow at their next check
        pointer = store.set_pointer(target, pointer_name(settings))
        request.app.state.watcher.generation = pointer.generation  # applied here already
    return ReloadResponse(
        previous_version=previous.version if previous is not None else None,
        model_version=recommender.version,
        seconds=round(time.perf_counter() - started, 3),
    )
