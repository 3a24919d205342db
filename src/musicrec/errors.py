"""Exceptions raised at the public boundary; the CLI turns them into one-line messages."""

from __future__ import annotations


class MusicrecError(Exception):
    """Base class: an error the user can fix, with a message that says how."""


class DataError(MusicrecError):
    """Input data is missing, malformed or unusable."""


class ArtifactError(MusicrecError):
    """A dataset or model directory is missing, incomplete or of an unknown format."""


class ConfigError(MusicrecError):
    """A configuration value is invalid."""


# Serving


class ModelLoadError(MusicrecError):
    """The model reference could not be resolved or loaded."""


class NotFoundError(MusicrecError):
    """A named user, artist or mood is not known to the model."""

    def __init__(self, message: str, suggestions: list[str] | None = None):
        super().__init__(message)
        self.suggestions = suggestions or []


class UnknownUserError(NotFoundError):
    """The user id is not in the model's vocabulary."""


class UnknownArtistError(NotFoundError):
    """No artist of that name is in the catalogue."""


class UnknownMoodError(NotFoundError):
    """The mood name is not configured."""


class MoodUnavailableError(MusicrecError):
    """The mood is configured but nothing in this model's data defines it."""


# Events


class EventError(MusicrecError):
    """An event is invalid; ``index`` is its position in the batch (or the file's row)."""

    def __init__(self, index: int, field: str | None, reason: str):
        where = f"event {index}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {reason}")
        self.index = index
        self.field = field
        self.reason = reason


class StoreError(MusicrecError):
    """The event store cannot be opened, read or written."""


# Online experiments


class ExperimentError(MusicrecError):
    """An experiment definition is invalid or conflicts with a running one (API: 409/422)."""


class UnknownExperimentError(NotFoundError):
    """No experiment of that name exists."""


# Tracking, registry and retraining


class TrackingError(MusicrecError):
    """The tracking store or registry refused an operation."""


class RetrainError(MusicrecError):
    """A retraining cycle could not run (locked, bad input, registry refused)."""


# Operations


class TrafficError(MusicrecError):
    """The target is not allowed or not ready for traffic."""


class MonitoringError(MusicrecError):
    """Prometheus is missing, misconfigured or did not start."""
