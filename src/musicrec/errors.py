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
