"""The original project's endpoints: /recommend, /similar, /charts and /moods."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from musicrec.api.convert import JSONBody, recommend_body, similar_response, to_schema
from musicrec.api.deps import MetricsDep, RecommenderDep, live_events, runtime
from musicrec.api.schemas import (
    K_DEFAULT,
    K_MAX,
    K_MIN,
    ChartsResponse,
    ErrorResponse,
    MoodInfo,
    MoodsResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    SimilarResponse,
)
from musicrec.serving import live

router = APIRouter(prefix="", tags=["recommendations"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
}


@router.post("/recommend", response_model=RecommendResponse, responses=ERRORS)
async def recommend(body: RecommendRequest, request: Request) -> JSONBody:
    """Recommendations for a user (by raw id, stored events folded in), a mood, or at random."""
    started = time.perf_counter()
    recommender, metrics = runtime(request)
    dials = body.on(recommender) if body.type != "random" else None
    if body.type == "user":
        assert body.user_id is not None and dials is not None
        events = live_events(request)
        recs = live.user_recommendations(recommender, body.user_id, body.k, events, dials=dials)
        metrics.lookup("user", known=True)
    elif body.type == "mood":
        assert body.mood is not None and dials is not None
        recs = recommender.recommend_mood(body.mood, body.k, dials)
        metrics.mood_requests.labels(mood=recommender.mood(body.mood).spec.name).inc()
    else:
        recs = recommender.recommend_random(body.k)
    metrics.served(body.type, recs)
    return recommend_body(body.type, recs, recommender, started, body.user_id, body.mood)


@router.post("/similar", response_model=SimilarResponse, responses=ERRORS)
async def similar(body: SimilarRequest, request: Request) -> JSONBody:
    """Artists closest to ``artist_name`` (accent- and case-insensitive match)."""
    recommender, metrics = runtime(request)
    return similar_response(recommender, metrics, body.artist_name, body.k, body.on(recommender))


@router.get("/charts", response_model=ChartsResponse)
def charts(
    recommender: RecommenderDep,
    metrics: MetricsDep,
    k: Annotated[int, Query(ge=K_MIN, le=K_MAX)] = K_DEFAULT,
) -> ChartsResponse:
    """The most listened artists."""
    recs = recommender.charts(k)
    metrics.served("charts", recs)
    return ChartsResponse(recommendations=to_schema(recs), model_version=recommender.version)


@router.get("/moods", response_model=MoodsResponse)
def moods(recommender: RecommenderDep) -> MoodsResponse:
    """Every configured mood, with the seed artists found in this model's catalogue."""
    names = recommender.catalogue.names
    return MoodsResponse(
        moods=[
            MoodInfo(
                name=mood.spec.name,
                display_name=mood.spec.display_name,
                emoji=mood.spec.emoji,
                description=mood.spec.description,
                seed_artists=[str(names[i]) for i in mood.seed_items],
                tags=list(mood.spec.tags),
                tag_artists=len(mood.tag_items),
                available=mood.available,
                reason=mood.reason,
            )
            for mood in recommender.moods.values()
        ]
    )
