"""Typed errors of the HTTP client, built from the server's problem+json bodies.

Why typed: a notebook user catches ``LookupError`` for a missing image or
``UnsupportedFormatError`` for a file the server cannot read, the same way as
with the library. Where the problem's ``code`` names one of our library
errors, the raised class is a subclass of both :class:`ClientError` and that
error; otherwise a :class:`ClientError` (or its 401/403, 404 and 429/503
kinds) carries ``.status`` and ``.code``.
"""

from __future__ import annotations

from typing import Any

from zstack_analyzer.errors import (
    CorruptFileError,
    DecodeBusyError,
    DecodeCancelledError,
    ImageLoadError,
    LimitExceededError,
    MetadataError,
    SceneNotFoundError,
    UnsupportedFormatError,
    ZstackError,
)

__all__ = [
    "AuthError",
    "ClientError",
    "NotFoundError",
    "RemoteCorruptFileError",
    "RemoteDecodeBusyError",
    "RemoteDecodeCancelledError",
    "RemoteImageLoadError",
    "RemoteLimitExceededError",
    "RemoteMetadataError",
    "RemoteSceneNotFoundError",
    "RemoteUnsupportedFormatError",
    "ServiceUnavailableError",
    "TransportError",
    "error_for",
]


class ClientError(ZstackError):
    """The server answered with an error (or did not answer: ``status`` 0).

    Parameters
    ----------
    message
        The problem's ``detail`` (what a person reads).
    status
        HTTP status, 0 when no response came.
    code
        The problem+json ``code`` (e.g. ``image_not_found``), or ``http_<status>``.
    body
        The whole problem body, for extra members (``request_id``, ``errors``).
    retry_after
        Seconds the server asked to wait, when it sent ``Retry-After``.
    """

    code = "client_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}" if self.status else self.message


class TransportError(ClientError):
    """No usable answer: connection refused or reset, or a timeout (after the retries)."""


class AuthError(ClientError, PermissionError):
    """401 or 403: no token, a wrong token, or not allowed."""


class NotFoundError(ClientError, LookupError):
    """404: no such image (``image_not_found``) or key."""


class ServiceUnavailableError(ClientError):
    """429 or 503 still answered after the bounded retries (``Retry-After`` honoured)."""


class RemoteImageLoadError(ClientError, ImageLoadError):
    """The server could not read the file (``image_load_error``)."""


class RemoteUnsupportedFormatError(ClientError, UnsupportedFormatError):
    """No reader of the server recognised the file (``unsupported_format``)."""


class RemoteCorruptFileError(ClientError, CorruptFileError):
    """The server found the file truncated or invalid (``corrupt_file``)."""


class RemoteMetadataError(ClientError, MetadataError):
    """The file's metadata is unreadable (``metadata_error``)."""


class RemoteLimitExceededError(ClientError, LimitExceededError):
    """Over the server's read limits (``limit_exceeded``)."""


class RemoteSceneNotFoundError(ClientError, SceneNotFoundError):
    """A scene, level or plane index out of range (``out_of_range``)."""


class RemoteDecodeBusyError(ServiceUnavailableError, DecodeBusyError):
    """The server's decode budget stayed full through the retries (``decode_busy``)."""


class RemoteDecodeCancelledError(ServiceUnavailableError, DecodeCancelledError):
    """The server cancelled the decode (shutting down; ``decode_cancelled``)."""


_BY_CODE: dict[str, type[ClientError]] = {
    "image_load_error": RemoteImageLoadError,
    "unsupported_format": RemoteUnsupportedFormatError,
    "corrupt_file": RemoteCorruptFileError,
    "metadata_error": RemoteMetadataError,
    "limit_exceeded": RemoteLimitExceededError,
    "out_of_range": RemoteSceneNotFoundError,
    "decode_busy": RemoteDecodeBusyError,
    "decode_cancelled": RemoteDecodeCancelledError,
}


def error_for(
    status: int, body: dict[str, Any], *, retry_after: float | None = None
) -> ClientError:
    """The typed error of a failed response: by problem ``code`` first, then by status."""
    code = str(body.get("code") or f"http_{status}")
    detail = body.get("detail")
    message = detail if isinstance(detail, str) and detail else f"HTTP {status}"
    kind = _BY_CODE.get(code)
    if kind is None:
        if status in (401, 403):
            kind = AuthError
        elif status in (404, 410):
            kind = NotFoundError
        elif status in (429, 503):
            kind = ServiceUnavailableError
        else:
            kind = ClientError
    return kind(message, status=status, code=code, body=body, retry_after=retry_after)
