"""A 2-D map of artist embeddings: PCA of the most listened artists' unit item factors.

Cosine similarity is what ``/similar`` ranks by, so the map projects the unit-normalized
factors: artists close on the map tend to share listeners. The projection is recomputed per
request on at most ``MAP_MAX_ARTISTS`` rows (a thin SVD, well under a millisecond per hundred
artists) and is deterministic for a given model.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from musicrec.api.deps import RecommenderDep
from musicrec.serving.recommender import Recommender

MAP_DEFAULT_ARTISTS = 300
MAP_MAX_ARTISTS = 2000

router = APIRouter(prefix="/artists", tags=["artists"])


class MapPoint(BaseModel):
    """One artist on the map."""

    artist: str
    x: float = Field(description="First principal component.")
    y: float = Field(description="Second principal component.")
    listeners: int
    mood_seed: bool = Field(description="True when the artist seeds at least one mood.")
    moods: list[str] = Field(default_factory=list, description="Moods the artist seeds.")


class ArtistMapResponse(BaseModel):
    """The most listened artists projected onto two dimensions."""

    points: list[MapPoint]
    explained_variance: list[float] = Field(
        description="Share of the variance of these artists' unit factors on each axis."
    )
    model_version: str


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA to two dimensions: (n, 2) coordinates and each axis's explained variance share.

    Each axis's sign is fixed so that its largest-magnitude coordinate is positive, so the
    picture does not mirror between runs of the same model.
    """
    data = np.asarray(vectors, dtype=np.float64)
    if data.shape[0] < 2:
        return np.zeros((data.shape[0], 2)), np.zeros(2)
    centered = data - data.mean(axis=0)
    left, singular, _ = np.linalg.svd(centered, full_matrices=False)
    dims = min(2, len(singular))
    coords = np.zeros((data.shape[0], 2))
    coords[:, :dims] = left[:, :dims] * singular[:dims]
    for axis in range(dims):
        if coords[np.argmax(np.abs(coords[:, axis])), axis] < 0:
            coords[:, axis] *= -1
    total = float((singular**2).sum())
    variance = np.zeros(2)
    if total > 0:
        variance[:dims] = singular[:dims] ** 2 / total
    return coords, variance


def seed_moods(recommender: Recommender) -> dict[int, list[str]]:
    """Item index -> display names of the moods it seeds."""
    seeds: dict[int, list[str]] = {}
    for mood in recommender.moods.values():
        for item in mood.seed_items.tolist():
            seeds.setdefault(int(item), []).append(mood.spec.display_name)
    return seeds


@router.get("/map", response_model=ArtistMapResponse)
def artist_map(
    recommender: RecommenderDep,
    limit: Annotated[int, Query(ge=2, le=MAP_MAX_ARTISTS)] = MAP_DEFAULT_ARTISTS,
) -> ArtistMapResponse:
    """The ``limit`` most listened artists in the first two principal components."""
    catalogue = recommender.catalogue
    items = catalogue.by_popularity[: min(limit, len(catalogue))]
    coords, variance = project_2d(recommender.embedding(items))
    seeds = seed_moods(recommender)
    return ArtistMapResponse(
        points=[
            MapPoint(
                artist=str(catalogue.names[item]),
                x=round(float(x), 5),
                y=round(float(y), 5),
                listeners=int(catalogue.listeners[item]),
                mood_seed=int(item) in seeds,
                moods=seeds.get(int(item), []),
            )
            for item, (x, y) in zip(items.tolist(), coords, strict=True)
        ],
        explained_variance=[round(float(v), 5) for v in variance],
        model_version=recommender.version,
    )
