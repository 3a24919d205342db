"""A small typed HTTP client for the musicrec API, the web UI's only way to the model.

Every failure becomes an :class:`ApiError` whose message can be shown to a listener as is:
an unreachable or slow service, a model still loading, an unknown artist (with suggestions).
Response bodies are parsed into the API's own schemas, so the UI and the service share one
contract.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from musicrec.access.keys import CLIENT_KEY_ENV, CLIENT_KEY_FILE_ENV, client_key
from musicrec.api.events_schemas import EventsAccepted
from musicrec.api.schemas import (
    ArtistSearchResponse,
    ChartsResponse,
    HealthResponse,
    ListenerResponse,
    ModelCard,
    MoodsResponse,
    RecommendResponse,
    SimilarResponse,
    UserSampleResponse,
)

API_URL_ENV = "MUSICREC_API_URL"
API_TIMEOUT_ENV = "MUSICREC_API_TIMEOUT"
ADMIN_KEY_ENV = "MUSICREC_UI_ADMIN_KEY"  # the Experiments page's key (admin scope)
ADMIN_KEY_FILE_ENV = "MUSICREC_UI_ADMIN_KEY_FILE"  # or a file holding it (a mounted secret)
DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 8.0
CONNECT_TIMEOUT_S = 2.0

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A request the UI could not complete; ``str(err)`` is a listener-friendly sentence."""

    def __init__(self, message: str, *, status: int | None = None, suggestions: Sequence[str] = ()):
        super().__init__(message)
        self.message = message
        self.status = status
        self.suggestions = list(suggestions)


class ApiUnavailable(ApiError):
    """The service did not answer (down, wrong address, too slow, or no model loaded)."""


class ApiRequestError(ApiError):
    """The service answered with a 4xx: the request itself was not acceptable."""


class MapPoint(BaseModel):
    """One artist on the 2-D embedding map."""

    artist: str
    x: float
    y: float
    listeners: int = 0
    mood_seed: bool = False
    moods: list[str] = []


class ArtistMap(BaseModel):
    """A 2-D projection of artist embeddings, as served by ``GET /artists/map``."""

    points: list[MapPoint]
    explained_variance: list[float] = []
    model_version: str = ""


class ExperimentList(BaseModel):
    """``GET /admin/experiments``: every experiment, oldest first (``Experiment.to_dict``)."""

    experiments: list[dict[str, Any]]


class ExperimentReport(BaseModel):
    """``GET /admin/experiments/{name}/report``: what ``musicrec online report --json``
    prints; kept as the API sends it (:mod:`musicrec.ui.readouts` reads it)."""

    model_config = ConfigDict(extra="allow")

    experiment: dict[str, Any]
    arms: dict[str, dict[str, Any]] = {}
    winner: str | None = None


def admin_key_from_env() -> str | None:
    """The UI's admin key: ``$MUSICREC_UI_ADMIN_KEY`` or the file named by
    ``$MUSICREC_UI_ADMIN_KEY_FILE``; ``None`` when neither is set."""
    return client_key(env=ADMIN_KEY_ENV, file_env=ADMIN_KEY_FILE_ENV)


def _key_hint(path: str) -> str:
    """Which key a refused request needs, and how the UI is given one."""
    if path.startswith("/admin"):
        return f"a key with the admin scope: ${ADMIN_KEY_ENV} or ${ADMIN_KEY_FILE_ENV}"
    scope = "events" if path.startswith("/events") else "read"
    return f"a key with the {scope} scope: ${CLIENT_KEY_ENV} or ${CLIENT_KEY_FILE_ENV}"


def api_url_from_env() -> str:
    """Base URL of the API: ``$MUSICREC_API_URL`` or the local default."""
    return (os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


def timeout_from_env() -> float:
    """Read timeout in seconds: ``$MUSICREC_API_TIMEOUT`` or the default."""
    raw = os.environ.get(API_TIMEOUT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def _detail_text(body: Any) -> tuple[str, list[str]]:
    """The human part of an error body: FastAPI's ``detail`` (string or 422 list)."""
    if not isinstance(body, dict):
        return "", []
    suggestions = [str(s) for s in body.get("suggestions") or []]
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail, suggestions
    if isinstance(detail, list):
        parts = []
        for entry in detail:
            if isinstance(entry, dict):
                where = ".".join(str(p) for p in entry.get("loc", [])[1:])
                msg = str(entry.get("msg", ""))
                parts.append(f"{where}: {msg}" if where else msg)
            else:
                parts.append(str(entry))
        return "; ".join(parts), suggestions
    return ("" if detail is None else str(detail)), suggestions


@dataclass
class ApiClient:
    """Typed access to the musicrec HTTP API with short timeouts and friendly errors."""

    base_url: str = DEFAULT_API_URL
    timeout: float = DEFAULT_TIMEOUT_S
    transport: httpx.BaseTransport | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        headers = {"User-Agent": "musicrec-ui"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT_S, self.timeout)),
            transport=self.transport,
            headers=headers,
        )

    @classmethod
    def from_env(cls) -> ApiClient:
        """A client for ``$MUSICREC_API_URL`` with ``$MUSICREC_API_TIMEOUT`` and the API key
        of ``$MUSICREC_API_KEY`` (or the file named by ``$MUSICREC_API_KEY_FILE``)."""
        return cls(api_url_from_env(), timeout_from_env(), api_key=client_key())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------- transport

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiUnavailable(
                f"The recommendation service at {self.base_url} did not answer within "
                f"{self.timeout:g} s. It may be busy; try again in a moment."
            ) from None
        except httpx.TransportError:
            raise ApiUnavailable(
                f"The recommendation service at {self.base_url} is not reachable. "
                "Start it with `musicrec serve --model DIR`, or point the UI at it with "
                f"`musicrec ui --api-url URL` (or ${API_URL_ENV})."
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            detail, suggestions = _detail_text(body)
            status = response.status_code
            if status == 503:
                raise ApiUnavailable(
                    "The recommendation service is up but has no model ready yet"
                    + (f" ({detail})" if detail else "")
                    + ". Try again in a moment.",
                    status=status,
                )
            if status in (401, 403):
                raise ApiUnavailable(
                    f"The recommendation service refused the UI's API key ({detail}). "
                    f"Give the UI {_key_hint(path)}.",
                    status=status,
                )
            if status == 429:
                raise ApiUnavailable(
                    "The recommendation service is busy for this UI (over its quota). "
                    "Try again in a moment.",
                    status=status,
                )
            if status >= 500:
                raise ApiUnavailable(
                    f"The recommendation service failed to answer (HTTP {status}). "
                    "Try again, or check the service logs.",
                    status=status,
                )
            if status == 404 and not detail:
                detail = f"{path} was not found on the service"
            raise ApiRequestError(
                detail or f"The request was refused (HTTP {status}).",
                status=status,
                suggestions=suggestions,
            )
        if body is None:
            raise ApiUnavailable(
                f"The service at {self.base_url} answered {path} with something other than JSON; "
                "is the address right?"
            )
        return body

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        clean = {key: value for key, value in params.items() if value is not None}
        return self._parse(model, self._request("GET", path, params=clean), path)

    def _post(self, path: str, model: type[M], payload: dict[str, Any]) -> M:
        clean = {key: value for key, value in payload.items() if value is not None}
        return self._parse(model, self._request("POST", path, json=clean), path)

    def _parse(self, model: type[M], body: Any, path: str) -> M:
        try:
            return model.model_validate(body)
        except ValidationError:
            raise ApiUnavailable(
                f"The service at {self.base_url} answered {path} in an unexpected format; "
                "the UI and the service versions may not match."
            ) from None

    # ------------------------------------------------------------------------- endpoints

    def health(self) -> HealthResponse:
        """``GET /health``: liveness and what is loaded."""
        return self._get("/health", HealthResponse)

    def model_card(self) -> ModelCard:
        """``GET /model``: version, parameters, metrics, dataset statistics."""
        return self._get("/model", ModelCard)

    def moods(self) -> MoodsResponse:
        """``GET /moods``: the moods resolved on the loaded model."""
        return self._get("/moods", MoodsResponse)

    def recommend_mood(self, mood: str, k: int = 10, **dials: Any) -> RecommendResponse:
        """Artists for a mood, shaped by the list ``dials`` (docs/dials.md)."""
        payload = {"type": "mood", "mood": mood, "k": k, **dials}
        return self._post("/recommend", RecommendResponse, payload)

    def recommend_random(self, k: int = 10) -> RecommendResponse:
        """A random selection of artists, for discovery."""
        return self._post("/recommend", RecommendResponse, {"type": "random", "k": k})

    def recommend_user(self, user_id: str, k: int = 10) -> RecommendResponse:
        """Recommendations for a listener of the training data."""
        return self._post(
            "/recommend", RecommendResponse, {"type": "user", "user_id": user_id, "k": k}
        )

    def similar(self, artist: str, k: int = 10) -> SimilarResponse:
        """Artists closest to ``artist``."""
        return self._post("/similar", SimilarResponse, {"artist_name": artist, "k": k})

    def charts(self, k: int = 20) -> ChartsResponse:
        """The most listened artists."""
        return self._get("/charts", ChartsResponse, k=k)

    def listener(
        self,
        artists: Sequence[str],
        plays: Sequence[float] | None = None,
        k: int = 10,
        **dials: Any,
    ) -> ListenerResponse:
        """Recommendations for a new listener described by a few artists (and play counts),
        shaped by the list ``dials``."""
        payload: dict[str, Any] = {"artists": list(artists), "k": k, **dials}
        if plays is not None:
            payload["plays"] = [float(p) for p in plays]
        return self._post("/listeners/recommendations", ListenerResponse, payload)

    def search_artists(self, query: str, limit: int = 10) -> ArtistSearchResponse:
        """Autocomplete: artists whose name matches ``query``."""
        return self._get("/artists", ArtistSearchResponse, q=query, limit=limit)

    def artist_map(self, limit: int = 300) -> ArtistMap:
        """A 2-D map of the most listened artists' embeddings."""
        return self._get("/artists/map", ArtistMap, limit=limit)

    def users(self, limit: int = 50) -> UserSampleResponse:
        """A deterministic sample of listener ids the model knows."""
        return self._get("/users", UserSampleResponse, limit=limit)

    def for_listener(
        self, user_id: str, k: int = 10, mood: str | None = None, **dials: Any
    ) -> RecommendResponse:
        """A known listener's list (their stored events folded in, their bans left out),
        along ``mood`` when given, shaped by the list ``dials``."""
        path = f"/users/{quote(user_id, safe='')}/recommendations"
        return self._get(path, RecommendResponse, k=k, mood=mood, **dials)

    def ban(
        self,
        user_id: str,
        artist: str,
        until: int,
        request_id: str | None = None,
        position: int | None = None,
    ) -> EventsAccepted:
        """``POST /events``: ``user_id`` bans ``artist`` until ``until`` (epoch seconds);
        ``request_id`` and ``position`` name the shown list and place it answers."""
        event: dict[str, Any] = {"user_id": user_id, "artist": artist, "kind": "ban"}
        event["until"] = int(until)
        if request_id:
            event["request_id"] = request_id
            if position is not None:
                event["position"] = int(position)
        return self._post("/events", EventsAccepted, {"events": [event]})

    def experiments(self) -> ExperimentList:
        """``GET /admin/experiments`` (admin key): every experiment with its arms and state."""
        return self._get("/admin/experiments", ExperimentList)

    def experiment_report(self, name: str, resamples: int = 1000) -> ExperimentReport:
        """``GET /admin/experiments/{name}/report`` (admin key): the readout with intervals."""
        path = f"/admin/experiments/{quote(name, safe='')}/report"
        return self._get(path, ExperimentReport, resamples=resamples)
