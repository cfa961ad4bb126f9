"""Domain errors. Services map them to their transport (HTTP status, CLI message) in one place."""

from __future__ import annotations


class BotifyError(Exception):
    """Root of every error botify raises on purpose."""

    code = "botify_error"


class UnknownTrackError(BotifyError):
    code = "unknown_track"

    def __init__(self, track: int) -> None:
        super().__init__(f"track {track} is not in the catalog")
        self.track = track


class InvalidEventError(BotifyError):
    code = "invalid_event"


class ConfigError(BotifyError):
    code = "config_error"


class UnknownRecommenderError(ConfigError):
    code = "unknown_recommender"


class CatalogError(ConfigError):
    code = "catalog_error"


class ArtifactError(BotifyError):
    """A model artifact (files, meta, arrays or version pointer) is missing or invalid."""

    code = "artifact_error"


class PointerMovedError(ArtifactError):
    """A model's version pointer was not where the caller expected: nothing moved it."""

    code = "pointer_moved"


class BackendUnavailableError(BotifyError):
    code = "backend_unavailable"


class BackendTimeoutError(BackendUnavailableError):
    """A backend did not answer within its timeout; what was sent may still be applied."""

    code = "backend_timeout"
