"""Request and response bodies of the HTTP API.

Field names here are a public contract (the web UI and scripts read them): add fields, never
rename them. Internal objects (artifacts, arrays) never cross this boundary.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from musicrec.api.dials import ListDials
from musicrec.api.limits import K_DEFAULT as K_DEFAULT  # re-exported: routes read them
from musicrec.api.limits import K_MAX as K_MAX
from musicrec.api.limits import K_MIN as K_MIN
from musicrec.api.limits import NAME_MAX_LENGTH as NAME_MAX_LENGTH

LISTENER_MAX_ARTISTS = 200

KParam = Annotated[int, Field(ge=K_MIN, le=K_MAX, description="How many results to return.")]

RecommendationType = Literal["user", "mood", "random", "similar", "listener", "charts"]


class _Strict(BaseModel):
    """Request bodies reject unknown fields, so typos surface as 422 instead of silence."""

    model_config = ConfigDict(extra="forbid")


def _clean_name(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank")
    if any(ord(ch) < 32 for ch in text):
        raise ValueError("must not contain control characters")
    return text


# ----------------------------------------------------------------------------- shared parts


class Recommendation(BaseModel):
    """One recommended artist."""

    rank: int = Field(description="1-based position in the list.")
    artist: str = Field(description="Artist display name.")
    score: float = Field(description="Model score (inner product or cosine); higher is better.")
    listeners: int = Field(description="Distinct listeners of the artist in the training data.")
    plays: int = Field(default=0, description="Total plays of the artist in the training data.")
    mbid: str | None = Field(default=None, description="MusicBrainz id when known.")
    tags: list[str] = Field(default_factory=list, description="Top user tags, when available.")
    because: list[str] = Field(
        default_factory=list,
        description="Artists from the listener's history that contribute most to this score.",
    )


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer."""

    detail: Any = Field(description="What went wrong (a string, or a list for 422s).")
    suggestions: list[str] = Field(default_factory=list, description="Close valid names.")


# ----------------------------------------------------------------------------- seed-compatible


class RecommendRequest(ListDials):
    """``POST /recommend``: recommendations for a known user, a mood or at random; the list
    dials shape the user and mood lists (a random draw ignores them)."""

    type: Literal["user", "mood", "random"] = "user"
    user_id: str | None = Field(
        default=None, max_length=NAME_MAX_LENGTH, description="Raw dataset user id (type=user)."
    )
    mood: str | None = Field(
        default=None, max_length=NAME_MAX_LENGTH, description="Mood key (type=mood)."
    )
    k: KParam = K_DEFAULT

    @model_validator(mode="after")
    def _needs_target(self) -> RecommendRequest:
        if self.type == "user" and not self.user_id:
            raise ValueError("type=user needs user_id")
        if self.type == "mood" and not self.mood:
            raise ValueError("type=mood needs mood")
        return self


class RecommendResponse(BaseModel):
    """Recommendations plus what they were computed for."""

    type: RecommendationType
    recommendations: list[Recommendation]
    user_id: str | None = None
    mood: str | None = None
    model_version: str
    took_ms: float = Field(description="Server-side scoring time in milliseconds.")


class SimilarRequest(ListDials):
    """``POST /similar``, with the list dials."""

    artist_name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    k: KParam = K_DEFAULT

    @field_validator("artist_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _clean_name(value)


class SimilarResponse(BaseModel):
    """Artists closest to ``artist`` (cosine on item factors)."""

    type: Literal["similar"] = "similar"
    artist: str = Field(description="The matched artist's display name.")
    recommendations: list[Recommendation]
    model_version: str
    took_ms: float


class ChartsResponse(BaseModel):
    """Most listened artists."""

    type: Literal["charts"] = "charts"
    recommendations: list[Recommendation]
    model_version: str


class MoodInfo(BaseModel):
    """A mood as resolved on the loaded model."""

    name: str = Field(description="Key to pass as ``mood``.")
    display_name: str
    emoji: str
    description: str
    seed_artists: list[str] = Field(description="Seed artists found in this model's catalogue.")
    tags: list[str] = Field(description="Tags that define the mood.")
    tag_artists: int = Field(default=0, description="Artists pulled in through the mood's tags.")
    available: bool = Field(description="False when nothing on this dataset defines the mood.")
    reason: str | None = Field(default=None, description="Why the mood is unavailable.")


class MoodsResponse(BaseModel):
    moods: list[MoodInfo]


class HealthResponse(BaseModel):
    """Liveness plus what is loaded; ``model_loaded`` is false while no model is ready."""

    status: Literal["healthy", "degraded"]
    model_loaded: bool
    model_version: str | None = None
    n_users: int = 0
    n_artists: int = 0
    n_factors: int = 0
    index: str | None = Field(default=None, description="hnsw or exact.")


# ----------------------------------------------------------------------------- resources


class ListenerRequest(ListDials):
    """``POST /listeners/recommendations``: a listener the model has never seen, with the list
    dials."""

    artists: list[str] = Field(min_length=1, max_length=LISTENER_MAX_ARTISTS)
    plays: list[float] | None = Field(
        default=None,
        max_length=LISTENER_MAX_ARTISTS,
        description="Play counts aligned with ``artists`` (default: 1 each).",
    )
    k: KParam = K_DEFAULT

    @field_validator("artists")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        cleaned = []
        for name in value:
            if len(name) > NAME_MAX_LENGTH:
                raise ValueError(f"artist names are at most {NAME_MAX_LENGTH} characters")
            cleaned.append(_clean_name(name))
        return cleaned

    @field_validator("plays")
    @classmethod
    def _plays(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not (0 < p < 1e9) for p in value):
            raise ValueError("plays must be positive finite numbers below 1e9")
        return value

    @model_validator(mode="after")
    def _aligned(self) -> ListenerRequest:
        if self.plays is not None and len(self.plays) != len(self.artists):
            raise ValueError("plays must have one entry per artist")
        return self


class ListenerResponse(BaseModel):
    type: Literal["listener"] = "listener"
    recommendations: list[Recommendation]
    used_artists: list[str] = Field(description="Input artists found in the catalogue.")
    unknown_artists: list[str] = Field(description="Input artists that were skipped.")
    model_version: str
    took_ms: float


class ArtistHit(BaseModel):
    artist: str
    listeners: int
    plays: int


class ArtistSearchResponse(BaseModel):
    query: str
    results: list[ArtistHit]


class UserSampleResponse(BaseModel):
    """A few raw user ids known to the model (for demos and traffic generation)."""

    users: list[str]
    total: int


class ModelCard(BaseModel):
    """What is being served and how good it is."""

    version: str
    kind: str = Field(default="als", description="Model kind: als, ease, itemknn, rp3beta, blend.")
    engine: str
    created_at: str | None = None
    code_version: str | None = None
    params: dict[str, Any]
    metrics: dict[str, Any] = Field(description="Evaluation metrics, baselines included.")
    baseline: dict[str, Any] = Field(
        default_factory=dict, description="Popularity baseline on the same split."
    )
    dataset: dict[str, Any]
    n_users: int
    n_artists: int
    n_factors: int
    index: str
    path: str
    worker: str | None = Field(default=None, description="host:pid of the worker answering.")
    events_watermark: int = Field(
        default=0, description="Highest event id inside this model (0: trained without events)."
    )


class ReloadRequest(_Strict):
    """``POST /admin/reload``: a path or ``models:/name@alias`` URI; default: the configured one."""

    model: str | None = Field(default=None, min_length=1, max_length=1000)


class ReloadResponse(BaseModel):
    status: Literal["reloaded"] = "reloaded"
    previous_version: str | None
    model_version: str
    seconds: float


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str
