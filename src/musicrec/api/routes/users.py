"""Known listeners: a sample of ids and personalised recommendations."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from musicrec.api.convert import JSONBody, recommend_body
from musicrec.api.deps import RecommenderDep, runtime
from musicrec.api.schemas import (
    K_DEFAULT,
    K_MAX,
    K_MIN,
    NAME_MAX_LENGTH,
    ErrorResponse,
    RecommendResponse,
    UserSampleResponse,
)

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=UserSampleResponse)
def sample_users(
    recommender: RecommenderDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> UserSampleResponse:
    """A deterministic sample of user ids the model knows (demos, load tests)."""
    return UserSampleResponse(users=recommender.sample_users(limit), total=recommender.n_users)


@router.get(
    "/{user_id}/recommendations",
    response_model=RecommendResponse,
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
async def user_recommendations(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)],
    k: Annotated[int, Query(ge=K_MIN, le=K_MAX)] = K_DEFAULT,
    mood: Annotated[str | None, Query(max_length=NAME_MAX_LENGTH)] = None,
) -> JSONBody:
    """Unplayed artists for a known user, each with the history artists behind it.

    ``mood`` blends the mood's direction into the user's taste.
    """
    started = time.perf_counter()
    recommender, metrics = runtime(request)
    recs = recommender.recommend_user(user_id, k, mood=mood or None)
    metrics.lookup("user", known=True)
    if mood:
        metrics.mood_requests.labels(mood=recommender.mood(mood).spec.name).inc()
    metrics.served("user", recs)
    return recommend_body("user", recs, recommender, started, user_id, mood or None)
