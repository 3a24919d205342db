"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from musicrec.api.deps import MetricsDep, RecommenderDep
from musicrec.api.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(prefix="", tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health(request: Request) -> HealthResponse:
    """Always 200 while the process runs; says whether and which model is loaded."""
    recommender = request.app.state.recommender
    if recommender is None:
        return HealthResponse(status="degraded", model_loaded=False)
    return HealthResponse(
        status="healthy",
        model_loaded=True,
        model_version=recommender.version,
        n_users=recommender.n_users,
        n_artists=recommender.n_items,
        n_factors=recommender.n_factors,
        index=recommender.index_kind,
    )


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ErrorResponse}})
def ready(recommender: RecommenderDep) -> ReadyResponse:
    """200 once a model is loaded, 503 before (readiness probes)."""
    return ReadyResponse(model_version=recommender.version)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition text (aggregated over workers in multiprocess mode)."""
    try:
        body, content_type = metrics.render()
    except OSError as exc:  # multiprocess dir vanished under us
        raise HTTPException(503, f"metrics unavailable: {exc.strerror}") from exc
    return Response(content=body, media_type=content_type)
