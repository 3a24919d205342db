"""Operator routes, behind ``X-API-Key``: hot model reload."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request

from musicrec.api.deps import AdminDep, SettingsDep
from musicrec.api.loader import ModelLoadError, load_recommender
from musicrec.api.schemas import ErrorResponse, ReloadRequest, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409)},
)
def reload_model(
    request: Request, _: AdminDep, settings: SettingsDep, body: ReloadRequest | None = None
) -> ReloadResponse:
    """Load a model (default: the configured path or alias, re-resolved) and swap it in.

    The new runtime is built completely first; then one reference is replaced, so requests
    in flight finish on the old model. Applies to the worker that receives the call.
    """
    target = (body.model if body else None) or settings.model
    if not target:
        raise HTTPException(400, "no model given and none configured (MUSICREC_MODEL)")
    lock = request.app.state.reload_lock
    if not lock.acquire(blocking=False):
        raise HTTPException(409, "a reload is already in progress")
    try:
        started = time.perf_counter()
        try:
            recommender = load_recommender(target, settings)
        except ModelLoadError as exc:
            raise HTTPException(400, str(exc)) from exc
        previous = request.app.state.recommender
        request.app.state.recommender = recommender
        request.app.state.metrics.set_model(recommender)
    finally:
        lock.release()
    return ReloadResponse(
        previous_version=previous.version if previous is not None else None,
        model_version=recommender.version,
        seconds=round(time.perf_counter() - started, 3),
    )
