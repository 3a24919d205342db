"""Request and response bodies of the HTTP API.

Field names here are a public contract (the web UI and scripts read them): add fields, never
rename them. Internal objects (artifacts, arrays) never cross this boundary.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
)

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


# A name as the schema states it: no control characters, not only whitespace. The server
# trims the whitespace around it; the pattern is the whole rule, so what the document
# accepts the API accepts.
NAME_PATTERN = r"^[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*$"
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN),
    AfterValidator(str.strip),
]


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


class ErrorDetail(BaseModel):
    """One invalid part of a request."""

    loc: list[str | int] = Field(description="Where: body, query or path, then field names.")
    msg: str = Field(description="Why it is invalid.")
    type: str = Field(description="A machine-readable kind, e.g. missing, string_too_long.")


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer, validation errors included."""

    detail: str = Field(description="What went wrong, in one line.")
    suggestions: list[str] = Field(default_factory=list, description="Close valid names.")
    errors: list[ErrorDetail] = Field(
        default_factory=list, description="422: every invalid part of the request."
    )
    index: int | None = Field(
        default=None, description="POST /events 422: position of the first refused event."
    )
    field: str | None = Field(default=None, description="POST /events 422: its field.")
    reason: str | None = Field(default=None, description="POST /events 422: why.")


# ----------------------------------------------------------------------------- seed-compatible


class UserQuery(ListDials):
    """Recommendations for a known listener (stored events folded in), with the list dials."""

    type: Literal["user"] = "user"
    user_id: str = Field(
        min_length=1, max_length=NAME_MAX_LENGTH, description="Raw dataset user id."
    )
    k: KParam = K_DEFAULT


class MoodQuery(ListDials):
    """Artists along a mood, with the list dials."""

    type: Literal["mood"]
    mood: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, description="Mood key.")
    k: KParam = K_DEFAULT


class RandomQuery(_Strict):
    """A random selection of artists."""

    type: Literal["random"]
    k: KParam = K_DEFAULT


def _query_type(value: Any) -> str:
    """The body's ``type``; ``user`` when absent (as before the variants were split)."""
    if isinstance(value, dict):
        return str(value.get("type", "user"))
    return str(getattr(value, "type", "user"))


RecommendRequest = Annotated[
    Annotated[UserQuery, Tag("user")]
    | Annotated[MoodQuery, Tag("mood")]
    | Annotated[RandomQuery, Tag("random")],
    Discriminator(_query_type),
]
"""``POST /recommend``: one of three bodies, told apart by ``type`` (default ``user``)."""


# What identifies a served list (impressions and outcomes are joined on it); the last fields
# of every list response, in this order.
REQUEST_ID_FIELD = Field(
    default=None,
    description="Id of this list (also the X-Request-ID header); send it back with events.",
)
EXPERIMENT_FIELD = Field(
    default=None, description="The online experiment that chose this list, if any."
)
ARM_FIELD = Field(default=None, description="The experiment arm that served it (ab mode).")
TEAMS_FIELD = Field(
    default=None, description="Interleave mode: the arm that contributed each position."
)


class RecommendResponse(BaseModel):
    """Recommendations plus what they were computed for."""

    type: RecommendationType
    recommendations: list[Recommendation]
    user_id: str | None = None
    mood: str | None = None
    model_version: str
    took_ms: float = Field(description="Server-side scoring time in milliseconds.")
    request_id: str | None = REQUEST_ID_FIELD
    experiment: str | None = EXPERIMENT_FIELD
    arm: str | None = ARM_FIELD
    teams: list[str] | None = TEAMS_FIELD


class SimilarRequest(ListDials):
    """``POST /similar``, with the list dials."""

    artist_name: Name
    k: KParam = K_DEFAULT


class SimilarResponse(BaseModel):
    """Artists closest to ``artist`` (cosine on item factors)."""

    type: Literal["similar"] = "similar"
    artist: str = Field(description="The matched artist's display name.")
    recommendations: list[Recommendation]
    model_version: str
    took_ms: float
    request_id: str | None = REQUEST_ID_FIELD
    experiment: str | None = EXPERIMENT_FIELD
    arm: str | None = ARM_FIELD
    teams: list[str] | None = TEAMS_FIELD


class ChartsResponse(BaseModel):
    """Most listened artists."""

    type: Literal["charts"] = "charts"
    recommendations: list[Recommendation]
    model_version: str
    request_id: str | None = REQUEST_ID_FIELD
    experiment: str | None = EXPERIMENT_FIELD
    arm: str | None = ARM_FIELD
    teams: list[str] | None = TEAMS_FIELD


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

    artists: list[Name] = Field(min_length=1, max_length=LISTENER_MAX_ARTISTS)
    plays: list[Annotated[float, Field(gt=0, lt=1e9)]] | None = Field(
        default=None,
        max_length=LISTENER_MAX_ARTISTS,
        description="Play counts in the order of ``artists``: ``plays[i]`` belongs to "
        "``artists[i]``; an artist without an entry counts 1 play, entries past the last "
        "artist are not used (default: 1 each).",
    )
    k: KParam = K_DEFAULT

    def aligned_plays(self) -> list[float] | None:
        """One play count per artist (1 for those without one), or None when none given."""
        if self.plays is None:
            return None
        plays = self.plays[: len(self.artists)]
        return plays + [1.0] * (len(self.artists) - len(plays))


class ListenerResponse(BaseModel):
    type: Literal["listener"] = "listener"
    recommendations: list[Recommendation]
    used_artists: list[str] = Field(description="Input artists found in the catalogue.")
    unknown_artists: list[str] = Field(description="Input artists that were skipped.")
    model_version: str
    took_ms: float
    request_id: str | None = REQUEST_ID_FIELD
    experiment: str | None = EXPERIMENT_FIELD
    arm: str | None = ARM_FIELD
    teams: list[str] | None = TEAMS_FIELD


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
