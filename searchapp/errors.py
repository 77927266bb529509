"""One error hierarchy; every message is meant for the person at the keyboard."""

from __future__ import annotations


class SearchAppError(Exception):
    """Base class: ``str(err)`` is a one-line message that names the fix."""

    exit_code = 1


class UsageError(SearchAppError):
    """The command line asks for something impossible (its parser cannot tell): exit 2."""

    exit_code = 2


class ConfigError(SearchAppError):
    """A setting, flag or environment variable has a bad value."""


class WeightsUnavailableError(SearchAppError):
    """Model weights cannot be found locally nor downloaded."""


class UnknownModelError(SearchAppError):
    """The model name is not one open_clip knows."""


class DeviceError(SearchAppError):
    """The compute device cannot run the model (out of memory even for one image)."""


class ModelError(SearchAppError):
    """The model's own process stopped (killed, out of memory) or failed a call."""


class ModelCacheError(ModelError):
    """A traced tower in the model cache cannot be read; it is removed for a rebuild."""


class SchemaTooNewError(SearchAppError):
    """The database was written by a newer version of the app."""


class StoreError(SearchAppError):
    """The database cannot be opened or written."""


class DiskFullError(StoreError):
    """The data directory's disk is full."""


class RootError(SearchAppError):
    """A photo folder is missing, not a folder, or not registered."""


class QueryError(SearchAppError):
    """A search query cannot be understood or has nothing to search."""


class PhotoNotFoundError(QueryError):
    """A photo id or path is not in the index."""


class RequestError(QueryError):
    """A request to the engine's socket is malformed (bad JSON, unknown field, bad type)."""


class ImageDecodeError(SearchAppError):
    """A file is not a readable image; the message is the stored reason."""


class AccessDeniedError(SearchAppError):
    """A path outside the indexed folders was requested."""


class WriterBusyError(SearchAppError):
    """Another process holds the writer lock on this data directory."""


class HandoffError(SearchAppError):
    """A request in the hand-off folder is not a well-formed searchapp command."""


class IndexFileError(SearchAppError):
    """The vector index file is missing, damaged or from another model (it is rebuilt)."""


class DamagedLibraryError(StoreError):
    """The database file is damaged; the message says how to recover."""


class ReadOnlyLibraryError(StoreError):
    """The library cannot be written by this user (read-only folder or file)."""


class RayError(SearchAppError):
    """Indexing on a Ray cluster cannot start or go on (``--ray``)."""


class RayUnavailableError(RayError):
    """``--ray`` was asked for, but the optional ``searchapp[ray]`` extra is not installed."""


class RayClusterError(RayError):
    """The Ray cluster cannot be reached, has no workers, or went away mid-run."""


class RayVersionError(RayError):
    """A Ray worker's Python, torch, open_clip or searchapp differs from this machine's."""


def error_class(
    name: object, default: type[SearchAppError] = SearchAppError
) -> type[SearchAppError]:
    """The error class an answer from another process names (its exit code and handling
    follow it), or ``default`` for a name that is not one of ours."""
    found = globals().get(name) if isinstance(name, str) else None
    if isinstance(found, type) and issubclass(found, SearchAppError):
        return found
    return default


def not_a_folder(resolved: str) -> RootError:
    """The error for a photo folder to add that is not a folder."""
    return RootError(f"{resolved} is not a folder; give the path of a photo folder.")
