"""Operator routes for online experiments (admin ``X-API-Key``): start, list, stop, report.

The same store and the same checks as ``musicrec online``: an experiment starts only once
every arm's model loads, never on listeners a running one covers; the worker that receives
a start or a stop applies it at once, every other worker and replica at its next watch check.
Bad input answers 4xx with the reason: 400 an invalid definition or an arm whose model does
not load, 404 an unknown experiment (or no event store), 409 a conflict (a name taken, a
population another experiment runs on, an experiment stopped already).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from musicrec.api import experiments_runtime
from musicrec.api.deps import AdminDep
from musicrec.api.schemas import ErrorResponse
from musicrec.errors import ExperimentError, StoreError, UnknownExperimentError
from musicrec.events.store import EventStore
from musicrec.online.arms import start_experiment
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore

router = APIRouter(prefix="/admin/experiments", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 503)
}


class ArmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=1000, description="Artifact path or models:/ URI.")
    share: float = Field(gt=0, le=100, description="Percent of the covered listeners.")


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    arms: list[ArmRequest] = Field(min_length=2, max_length=10)
    mode: Literal["ab", "interleave"] = "ab"
    salt: str | None = Field(default=None, max_length=200)
    population: tuple[float, float] = (0.0, 100.0)
    guardrails: dict[str, float] = Field(default_factory=dict)


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


def _store(request: Request) -> EventStore:
    store: EventStore | None = request.app.state.event_store
    if store is None:
        raise HTTPException(404, "experiments need the event store (set MUSICREC_EVENTS_URL)")
    return store


def _refused(exc: Exception) -> HTTPException:
    if isinstance(exc, UnknownExperimentError):
        return HTTPException(404, str(exc))
    if isinstance(exc, StoreError):
        return HTTPException(503, str(exc))
    if "does not load" in str(exc):  # the model named is not there, as for /admin/reload
        return HTTPException(404, str(exc))
    # A definition the schema allows but the rules refuse (shares that do not sum to 100,
    # a taken name, covered listeners) conflicts with what can run: 409, never 400/422 for
    # a request the published schema accepts.
    return HTTPException(409, str(exc))


@router.get("", responses=ERRORS)
def list_experiments(request: Request, _: AdminDep) -> dict[str, Any]:
    """Every experiment, oldest first, with its arms and state."""
    experiments = ExperimentStore(_store(request)).experiments()
    return {"experiments": [experiment.to_dict() for experiment in experiments]}


@router.post("", status_code=201, responses=ERRORS)
async def start(request: Request, _: AdminDep, body: StartRequest) -> dict[str, Any]:
    """Start an experiment once every arm's model loads; this worker serves it at once."""
    spec = ExperimentSpec(
        body.name,
        tuple(Arm(arm.name, arm.model, arm.share) for arm in body.arms),
        mode=body.mode,
        salt=body.salt,
        population=body.population,
        guardrails=dict(body.guardrails),
    )
    try:
        experiment = await run_in_threadpool(start_experiment, _store(request), spec)
    except (ExperimentError, UnknownExperimentError, StoreError) as exc:
        raise _refused(exc) from exc
    await run_in_threadpool(experiments_runtime.check, request.app)
    return experiment.to_dict()


@router.post("/{name}/stop", responses=ERRORS)
async def stop(request: Request, _: AdminDep, name: str, body: StopRequest) -> dict[str, Any]:
    """Stop a running experiment with a reason; its listeners go back to the champion."""
    try:
        experiment = ExperimentStore(_store(request)).stop(name, body.reason)
    except (ExperimentError, UnknownExperimentError, StoreError) as exc:
        raise _refused(exc) from exc
    await run_in_threadpool(experiments_runtime.check, request.app)
    return experiment.to_dict()


@router.get("/{name}/report", responses=ERRORS)
def report(
    request: Request,
    _: AdminDep,
    name: str,
    k: Annotated[int | None, Query(ge=1, le=100)] = None,
    resamples: Annotated[int, Query(ge=0, le=10_000)] = 1000,
    window_hours: Annotated[float, Query(gt=0, le=24 * 365)] = 24.0,
) -> dict[str, Any]:
    """What ``musicrec online report NAME --json`` prints."""
    from musicrec.online.report import experiment_report

    store = _store(request)
    try:
        experiment = ExperimentStore(store).get(name)
    except (ExperimentError, UnknownExperimentError, StoreError) as exc:
        raise _refused(exc) from exc
    return experiment_report(store, experiment, k, resamples, 0, window_hours * 3600.0)
