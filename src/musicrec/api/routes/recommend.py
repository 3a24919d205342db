"""The original project's endpoints: /recommend, /similar, /charts and /moods."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from musicrec.api import experiments_runtime
from musicrec.api.convert import (
    JSONBody,
    plain,
    rec_dicts,
    recommend_body,
    respond,
    similar_response,
)
from musicrec.api.deps import MetricsDep, RecommenderDep, listener_events, runtime
from musicrec.api.schemas import (
    K_DEFAULT,
    K_MAX,
    K_MIN,
    ChartsResponse,
    ErrorResponse,
    MoodInfo,
    MoodQuery,
    MoodsResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    SimilarResponse,
    UserQuery,
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
    served = None
    user_id = mood = None
    if isinstance(body, UserQuery):
        user_id = body.user_id
        events = listener_events(request, recommender, user_id)
        body.on(recommender)  # unknown tags and bad dials refused before any list is made
        served = experiments_runtime.serve(request, user_id, body.k, lambda model, n: (
            live.user_recommendations(model, user_id, n, events, dials=body.on(model))
        ))  # fmt: skip
        recs = served.recs
        metrics.lookup("user", known=True)
    elif isinstance(body, MoodQuery):
        mood = body.mood
        recs = recommender.recommend_mood(mood, body.k, body.on(recommender))
        metrics.mood_requests.labels(mood=recommender.mood(mood).spec.name).inc()
    else:
        recs = recommender.recommend_random(body.k)
    metrics.served(body.type, recs)
    return recommend_body(body.type, recs, recommender, started, user_id, mood, request, served)


@router.post("/similar", response_model=SimilarResponse, responses=ERRORS)
async def similar(body: SimilarRequest, request: Request) -> JSONBody:
    """Artists closest to ``artist_name`` (accent- and case-insensitive match)."""
    recommender, metrics = runtime(request)
    return similar_response(
        recommender, metrics, body.artist_name, body.k, request, body.on(recommender)
    )


@router.get("/charts", response_model=ChartsResponse)
def charts(
    request: Request,
    recommender: RecommenderDep,
    metrics: MetricsDep,
    k: Annotated[int, Query(ge=K_MIN, le=K_MAX)] = K_DEFAULT,
) -> JSONBody:
    """The most listened artists."""
    recs = recommender.charts(k)
    metrics.served("charts", recs)
    body = {"type": "charts", "recommendations": rec_dicts(recs), "model_version": ""}
    return respond(request, plain(request, recs, recommender), body)


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
