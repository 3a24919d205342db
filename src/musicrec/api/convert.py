"""Runtime results -> response schemas."""

from __future__ import annotations

import time

from musicrec.api.metrics import ApiMetrics
from musicrec.api.schemas import Recommendation, SimilarResponse
from musicrec.serving.recommender import Rec, Recommender


def to_schema(recs: list[Rec]) -> list[Recommendation]:
    return [
        Recommendation(
            rank=rank,
            artist=rec.artist,
            score=rec.score,
            listeners=rec.listeners,
            plays=rec.plays,
            mbid=rec.mbid,
            tags=list(rec.tags),
            because=list(rec.because),
        )
        for rank, rec in enumerate(recs, start=1)
    ]


def elapsed_ms(started: float, now: float) -> float:
    return round((now - started) * 1000.0, 3)


def similar_response(
    recommender: Recommender, metrics: ApiMetrics, name: str, k: int
) -> SimilarResponse:
    """Artists closest to ``name``; answers both ``/similar`` and ``/artists/{name}/similar``."""
    started = time.perf_counter()
    artist, recs = recommender.similar(name, k)
    metrics.lookup("artist", known=True)
    metrics.served("similar", recs)
    return SimilarResponse(
        artist=artist,
        recommendations=to_schema(recs),
        model_version=recommender.version,
        took_ms=elapsed_ms(started, time.perf_counter()),
    )
