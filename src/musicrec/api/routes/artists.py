"""Artist search (autocomplete) and similar artists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from musicrec.api.convert import JSONBody, similar_response
from musicrec.api.deps import RecommenderDep, runtime
from musicrec.api.dials import QueryDials
from musicrec.api.schemas import (
    K_DEFAULT,
    K_MAX,
    K_MIN,
    NAME_MAX_LENGTH,
    ArtistHit,
    ArtistSearchResponse,
    ErrorResponse,
    SimilarResponse,
)

router = APIRouter(prefix="/artists", tags=["artists"])


@router.get("", response_model=ArtistSearchResponse)
def search_artists(
    recommender: RecommenderDep,
    q: Annotated[str, Query(min_length=1, max_length=NAME_MAX_LENGTH)],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> ArtistSearchResponse:
    """Case- and accent-insensitive search: prefix matches first, then substrings; popular first."""
    catalogue = recommender.catalogue
    return ArtistSearchResponse(
        query=q,
        results=[
            ArtistHit(
                artist=str(catalogue.names[i]),
                listeners=int(catalogue.listeners[i]),
                plays=int(catalogue.plays[i]),
            )
            for i in recommender.search_artists(q, limit)
        ],
    )


@router.get(
    "/{name}/similar", response_model=SimilarResponse, responses={404: {"model": ErrorResponse}}
)
async def similar_artists(
    request: Request,
    name: Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)],
    dials: Annotated[QueryDials, Query()],
    k: Annotated[int, Query(ge=K_MIN, le=K_MAX)] = K_DEFAULT,
) -> JSONBody:
    """Artists closest to ``name`` by cosine similarity of item factors, under the list dials."""
    recommender, metrics = runtime(request)
    return similar_response(recommender, metrics, name, k, request, dials.on(recommender, "query"))
