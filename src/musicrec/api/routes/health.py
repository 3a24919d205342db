"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from musicrec.api.convert import JSONBody
from musicrec.api.deps import MetricsDep, runtime
from musicrec.api.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(prefix="", tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> JSONBody:
    """Always 200 while the process runs; says whether and which model is loaded."""
    recommender = request.app.state.recommender
    if recommender is None:
        return JSONBody(
            {
                "status": "degraded",
                "model_loaded": False,
                "model_version": None,
                "n_users": 0,
                "n_artists": 0,
                "n_factors": 0,
                "index": None,
            }
        )
    return JSONBody(
        {
            "status": "healthy",
            "model_loaded": True,
            "model_version": recommender.version,
            "n_users": recommender.n_users,
            "n_artists": recommender.n_items,
            "n_factors": recommender.n_factors,
            "index": recommender.index_kind,
        }
    )


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> JSONBody:
    """200 once a model is loaded, 503 before (readiness probes)."""
    recommender, _ = runtime(request)
    return JSONBody({"status": "ready", "model_version": recommender.version})


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition text (aggregated over workers in multiprocess mode)."""
    try:
        body, content_type = metrics.render()
    except OSError as exc:  # multiprocess dir vanished under us
        raise HTTPException(503, f"metrics unavailable: {exc.strerror}") from exc
    return Response(content=body, media_type=content_type)
