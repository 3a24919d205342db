"""Runtime results -> response schemas."""

from __future__ import annotations

from musicrec.api.schemas import Recommendation
from musicrec.recommender import Rec


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
