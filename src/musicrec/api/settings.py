"""API settings from ``MUSICREC_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from musicrec.models.ann import HNSW_EF_COSINE, HNSW_EF_SEARCH
from musicrec.rules import CoolDown
from musicrec.rules.inputs import COOLDOWN_DAYS, COOLDOWN_SHOWS
from musicrec.serving.recommender import DEFAULT_MOOD_WEIGHT

DEFAULT_ACCESS_REFRESH_S = 10.0  # keys and tombstones, when the model watch is off


class Settings(BaseSettings):
    """Everything the API reads at start-up; tests pass an instance to ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="MUSICREC_", env_file=".env", extra="ignore")

    model: str | None = Field(
        default=None, description="Model artifact directory or a models:/name@alias registry URI."
    )
    index: Literal["hnsw", "exact"] = Field(
        default="hnsw", description="Item search: hnsw or exact."
    )
    hnsw_ef: int = Field(
        default=HNSW_EF_SEARCH, ge=10, le=10_000, description="HNSW breadth: users and moods."
    )
    hnsw_ef_similar: int = Field(
        default=HNSW_EF_COSINE, ge=10, le=10_000, description="HNSW breadth: similar artists."
    )
    save_index: bool = Field(
        default=True, description="Save a freshly built index inside the artifact."
    )
    moods_path: Path | None = Field(
        default=None, description="YAML file replacing the packaged moods."
    )
    mood_weight: float = Field(
        default=DEFAULT_MOOD_WEIGHT,
        ge=0.0,
        le=1.0,
        description="Mood share of a blended user query.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed browser origins, comma-separated."
    )
    admin_api_key: SecretStr | None = Field(
        default=None, description="X-API-Key for /admin routes; unset disables them."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="API keys file (`musicrec keys create`); unset: the API is open.",
    )
    quota_dir: Path | None = Field(
        default=None,
        description="Directory of the quota state shared by a host's workers "
        "(default: PROMETHEUS_MULTIPROC_DIR; neither: per process).",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest accepted request body."
    )
    events_url: str | None = Field(
        default="sqlite:///events.db",
        description="Event store (SQLAlchemy URL; SQLite file by default); empty disables events.",
    )
    artists_per_user: int = Field(
        default=10_000,
        ge=1,
        description="Most recently active artists of a listener whose events a request folds in.",
    )
    fold_in_cache: int = Field(
        default=10_000,
        ge=0,
        description="Answers for listeners with events kept per worker until their events "
        "change (0: none).",
    )
    events_writer: str | None = Field(
        default=None,
        description="Socket of this host's event writer; `musicrec serve --workers N` sets it.",
    )
    fresh_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of a known listener's query taken by their plays not yet in the model.",
    )
    watch_interval_s: float = Field(
        default=10.0,
        ge=0.0,
        description="Seconds between checks of the registry alias / model pointer; 0 disables.",
    )

    impressions: bool = Field(
        default=True,
        description="Log every shown artist to the event store's impression log.",
    )
    impressions_flush_s: float = Field(
        default=0.5,
        gt=0.0,
        le=60.0,
        description="Seconds between impression log commits (what killing the process that "
        "commits them can lose: the worker, or with several workers the serving process).",
    )
    cooldown_shows: int = Field(
        default=COOLDOWN_SHOWS,
        ge=0,
        description="Shows without a play after which an artist rests for a listener (0: off).",
    )
    cooldown_days: float = Field(
        default=COOLDOWN_DAYS,
        ge=0.0,
        allow_inf_nan=False,
        description="Days an artist rests after its latest such show (0: off).",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("events_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_api_key", "api_keys_file", "quota_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def access_refresh_s(self) -> float:
        """How often workers re-read the keys file and the tombstones (the watch interval)."""
        return self.watch_interval_s if self.watch_interval_s > 0 else DEFAULT_ACCESS_REFRESH_S

    @property
    def cooldown(self) -> CoolDown | None:
        """The exposure cool-down every list of a listener follows (None: off)."""
        if self.cooldown_shows == 0 or self.cooldown_days == 0:
            return None
        return CoolDown(self.cooldown_shows, self.cooldown_days)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()  # type: ignore[call-arg]
