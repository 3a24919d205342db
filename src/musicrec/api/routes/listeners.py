"""New listeners: fold a few favourite artists into the model without retraining."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from musicrec.api.convert import JSONBody, elapsed_ms, plain, rec_dicts, respond
from musicrec.api.deps import runtime
from musicrec.api.schemas import ErrorResponse, ListenerRequest, ListenerResponse
from musicrec.errors import UnknownArtistError

router = APIRouter(prefix="/listeners", tags=["listeners"])


@router.post(
    "/recommendations", response_model=ListenerResponse, responses={404: {"model": ErrorResponse}}
)
async def listener_recommendations(body: ListenerRequest, request: Request) -> JSONBody:
    """Recommendations for a listener described by artists (and optional play counts).

    Unknown names are skipped and listed in ``unknown_artists``; if none is known: 404.
    """
    started = time.perf_counter()
    recommender, metrics = runtime(request)
    try:
        result = recommender.recommend_listener(
            body.artists, body.aligned_plays(), body.k, body.on(recommender)
        )
    except UnknownArtistError as exc:
        exc.count = len(body.artists)  # type: ignore[attr-defined]
        raise
    metrics.lookup("artist", known=True, count=len(body.artists) - len(result.unknown))
    metrics.lookup("artist", known=False, count=len(result.unknown))
    metrics.served("listener", result.recs)
    out: dict[str, object] = {
        "type": "listener",
        "recommendations": rec_dicts(result.recs),
        "used_artists": result.used,
        "unknown_artists": result.unknown,
        "model_version": recommender.version,
        "took_ms": elapsed_ms(started, time.perf_counter()),
    }
    return respond(request, plain(request, result.recs, recommender), out)
