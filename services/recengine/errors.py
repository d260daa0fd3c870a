"""Exceptions shared by every part of recengine."""


class RecEngineError(Exception):
    """Base class for recengine errors."""


class ConfigError(RecEngineError):
    """Configuration is invalid; the process stops with one readable line and exit code 2."""


class ArtifactError(RecEngineError):
    """An artifact (checkpoint or embedding version) is missing or corrupt."""


class ChecksumMismatch(ArtifactError):
    """An embedding version's blobs do not match the checksum in its manifest."""


class BackendUnavailable(RecEngineError):
    """A backend (broker, database, cache) could not be reached or did not answer in time."""
