"""Runtime results -> response bodies.

The hot routes (recommendations, similar artists, moods, new listeners, health) build their
JSON straight from plain dicts with orjson and return it as a :class:`JSONBody`: FastAPI then
skips its per-request round trip through the response model (dump, validate, encode,
``json.dumps``), which cost more than the scoring itself. The dicts have exactly the fields,
order and types of the response models in :mod:`musicrec.api.schemas`, which still document
the routes in OpenAPI; ``tests/system/test_api.py`` validates every fast body against its model.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from musicrec.api.metrics import ApiMetrics
from musicrec.api.schemas import Recommendation
from musicrec.online.serving import REQUEST_ID_HEADER, ExperimentRuntime, Served, request_id
from musicrec.rules import NEUTRAL, Dials
from musicrec.serving.recommender import Rec, Recommender


def dumps(content: Any) -> bytes:
    """Compact JSON like Starlette's ``JSONResponse`` (UTF-8, ``null`` for NaN), via orjson."""
    try:
        return orjson.dumps(content)
    except (TypeError, orjson.JSONEncodeError):  # e.g. lone surrogates: escape them instead
        return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=str).encode()


class JSONBody(Response):
    """A JSON response rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def rec_dicts(recs: list[Rec]) -> list[dict[str, Any]]:
    """``Recommendation`` fields of each result, as plain dicts (ranks from 1)."""
    return [
        {
            "rank": rank,
            "artist": rec.artist,
            "score": rec.score,
            "listeners": rec.listeners,
            "plays": rec.plays,
            "mbid": rec.mbid,
            "tags": list(rec.tags),
            "because": list(rec.because),
        }
        for rank, rec in enumerate(recs, start=1)
    ]


def to_schema(recs: list[Rec]) -> list[Recommendation]:
    return [Recommendation(**fields) for fields in rec_dicts(recs)]


def elapsed_ms(started: float, now: float) -> float:
    return round((now - started) * 1000.0, 3)


def recommend_body(
    kind: str,
    recs: list[Rec],
    recommender: Recommender,
    started: float,
    user_id: str | None = None,
    mood: str | None = None,
    request: Request | None = None,
    served: Served | None = None,
) -> JSONBody:
    """A ``RecommendResponse`` body (identified and logged with ``request``)."""
    body = {
        "type": kind,
        "recommendations": rec_dicts(recs),
        "user_id": user_id,
        "mood": mood,
        "model_version": recommender.version,
        "took_ms": elapsed_ms(started, time.perf_counter()),
    }
    if request is None:
        return JSONBody(body)
    return respond(request, served or plain(request, recs, recommender), body, user_id)


def plain(request: Request, recs: list[Rec], recommender: Recommender) -> Served:
    """A list no experiment chose (moods, similar artists, charts, new listeners)."""
    return Served(request_id(request.headers.get(REQUEST_ID_HEADER)), recs, recommender.version)


def respond(
    request: Request, served: Served, body: dict[str, Any], listener: str | None = None
) -> JSONBody:
    """``body`` with its list's ids and the ``X-Request-ID`` header; its impressions queued."""
    body["model_version"] = served.model_version
    body.update(served.envelope())
    online: ExperimentRuntime | None = getattr(request.app.state, "experiments", None)
    if online is not None:
        online.log(served, listener)
    return JSONBody(body, headers={REQUEST_ID_HEADER: served.request_id})


def similar_response(
    recommender: Recommender,
    metrics: ApiMetrics,
    name: str,
    k: int,
    request: Request,
    dials: Dials = NEUTRAL,
) -> JSONBody:
    """Artists closest to ``name``; answers both ``/similar`` and ``/artists/{name}/similar``.

    The body is a ``SimilarResponse``.
    """
    started = time.perf_counter()
    artist, recs = recommender.similar(name, k, dials)
    metrics.lookup("artist", known=True)
    metrics.served("similar", recs)
    body = {
        "type": "similar",
        "artist": artist,
        "recommendations": rec_dicts(recs),
        "model_version": recommender.version,
        "took_ms": elapsed_ms(started, time.perf_counter()),
    }
    return respond(request, plain(request, recs, recommender), body)
