"""Known listeners: a sample of ids and personalised recommendations."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from musicrec.api import experiments_runtime
from musicrec.api.convert import JSONBody, recommend_body
from musicrec.api.deps import RecommenderDep, listener_events, runtime
from musicrec.api.dials import QueryDials
from musicrec.api.schemas import (
    K_DEFAULT,
    K_MAX,
    K_MIN,
    NAME_MAX_LENGTH,
    ErrorResponse,
    RecommendResponse,
    UserSampleResponse,
)
from musicrec.serving import live

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=UserSampleResponse)
def sample_users(
    request: Request, recommender: RecommenderDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> UserSampleResponse:
    """A deterministic sample of user ids the model knows (demos, load tests)."""
    users = request.app.state.forgotten.visible(recommender.sample_users(limit))
    return UserSampleResponse(users=users, total=recommender.n_users)


@router.get(
    "/{user_id}/recommendations",
    response_model=RecommendResponse,
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
async def user_recommendations(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)],
    dials: Annotated[QueryDials, Query()],
    k: Annotated[int, Query(ge=K_MIN, le=K_MAX)] = K_DEFAULT,
    mood: Annotated[str | None, Query(max_length=NAME_MAX_LENGTH)] = None,
) -> JSONBody:
    """Unplayed artists for a user, each with the history artists behind it.

    The user's stored events (``POST /events``) are folded in: new plays re-solve their
    taste, banned artists never come back, and a user the model has not seen is served
    from their events. ``exclude_recent_days`` also keeps out every artist with an event
    (a skip included) in that many days. ``mood`` blends the mood's direction in. The
    list dials (docs/dials.md) shape the list; a ban holds until its ``until``.
    """
    started = time.perf_counter()
    recommender, metrics = runtime(request)
    dials.on(recommender, "query")  # unknown tags and bad dials refused before any list
    events = listener_events(request, recommender, user_id)
    served = experiments_runtime.serve(request, user_id, k, lambda model, n: (
        live.user_recommendations(model, user_id, n, events, mood or None, dials.on(model, "query"))
    ))  # fmt: skip
    recs = served.recs
    metrics.lookup("user", known=True)
    if mood:
        metrics.mood_requests.labels(mood=recommender.mood(mood).spec.name).inc()
    metrics.served("user", recs)
    return recommend_body(
        "user", recs, recommender, started, user_id, mood or None, request, served
    )
