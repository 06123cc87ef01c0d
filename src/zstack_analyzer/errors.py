"""Exception hierarchy shared by the library and the service.

Why a hierarchy of our own: callers (the HTTP layer above all) map failures to
status codes by type, and users need a sentence naming the file and the fault
rather than a third-party traceback. This module imports nothing heavy so that
any layer can raise or catch these cheaply.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CorruptFileError",
    "DecodeBusyError",
    "DecodeCancelledError",
    "ImageLoadError",
    "InvalidRoiError",
    "LimitExceededError",
    "MetadataError",
    "MissingDependencyError",
    "ReaderTimeoutError",
    "SceneNotFoundError",
    "UnsupportedFormatError",
    "ZstackError",
]


class ZstackError(Exception):
    """Root of every error this project raises on purpose.

    Parameters
    ----------
    message
        The sentence a person reads; it should name the file and the fault.
    path
        The file concerned, when there is one.
    detail
        Extra technical detail (the wrapped library's message, an offset).

    Examples
    --------
    >>> err = ZstackError("cells.czi: subblock 17 ends past end of file", path="cells.czi")
    >>> err.path
    PosixPath('cells.czi')
    """

    #: Stable machine-readable name used in problem+json bodies.
    code: str = "zstack_error"

    def __init__(
        self, message: str, *, path: str | Path | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path: Path | None = Path(path) if path is not None else None
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ImageLoadError(ZstackError):
    """A file could not be opened or read as an image."""

    code = "image_load_error"


class UnsupportedFormatError(ImageLoadError, ValueError):
    """No reader recognised the file's content (or its extension, for a missing file)."""

    code = "unsupported_format"


class CorruptFileError(ImageLoadError, ValueError):
    """The file claims a known format but its structure is truncated or invalid."""

    code = "corrupt_file"


class MetadataError(ImageLoadError, ValueError):
    """Metadata is unreadable or contradicts itself beyond repair."""

    code = "metadata_error"


class LimitExceededError(ImageLoadError, ValueError):
    """A size declared by the file (or asked for by the caller) is over the read limits."""

    code = "limit_exceeded"


class DecodeBusyError(ZstackError):
    """The process's decode budget stayed full for the whole wait: try again shortly.

    Not an :class:`ImageLoadError`: the file is fine, the server is busy (HTTP 503).
    """

    code = "decode_busy"


class DecodeCancelledError(ZstackError):
    """A decode stopped because its caller went away or the process is shutting down."""

    code = "decode_cancelled"


class InvalidRoiError(ZstackError, ValueError):
    """A region of interest is malformed: a coordinate not finite, a plane out of range, too many points.

    Not an :class:`ImageLoadError`: the file is fine, the shapes asked of it are not (HTTP 422).
    """

    code = "invalid_roi"


class ReaderTimeoutError(ImageLoadError, TimeoutError):
    """A reader running in a worker process gave no answer in time; the worker was stopped.

    Why an :class:`ImageLoadError` (422): a file that makes its reader loop
    (Bio-Formats on a hostile file) is a file we cannot read, not a busy server.
    """

    code = "read_timeout"


class SceneNotFoundError(ImageLoadError, IndexError):
    """A scene, level, plane, z, t or channel index is out of range."""

    code = "out_of_range"


class MissingDependencyError(ImageLoadError, ImportError):  # type: ignore[misc]  # .path is a Path here, a str on ImportError
    """The format is recognised but its optional reader package is not installed.

    Parameters
    ----------
    message
        The sentence a person reads.
    package
        The PyPI distribution to install.
    path
        The file concerned, when there is one.
    """

    code = "missing_dependency"

    def __init__(self, message: str, *, package: str, path: str | Path | None = None) -> None:
        super().__init__(message, path=path, detail=f"pip install {package}")
        self.package = package
