"""Exceptions to ``application/problem+json`` (RFC 9457): never a traceback to the client.

Why one table: every route raises the library's typed errors and this module
alone decides their status codes (DESIGN.md section 5), so the mapping cannot
drift between routes. An unexpected error is a bug: its body carries only a
request id, and the traceback goes to the log under that id.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from zstack_analyzer.confine import UnsafeFileError
from zstack_analyzer.errors import (
    DecodeBusyError,
    DecodeCancelledError,
    ImageLoadError,
    InvalidRoiError,
    MissingDependencyError,
    UnsupportedFormatError,
    ZstackError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "BadParameterError",
    "BadUploadError",
    "ImageNotFoundError",
    "ImportForbiddenError",
    "NotRegularFileError",
    "OriginalChangedError",
    "OriginalMissingError",
    "RoiNotFoundError",
    "SourceNotFoundError",
    "UploadBusyError",
    "UploadTimeoutError",
    "UploadTooLargeError",
    "install_error_handlers",
    "problem_response",
    "status_for",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: Retry-After of a 503 when the decode budget is full (renders take seconds, not minutes).
DECODE_RETRY_AFTER_S = 2


class ImageNotFoundError(ZstackError, LookupError):
    """No image has this id (the only meaning of a 404 from ``/api/images/{id}``)."""

    code = "image_not_found"


class RoiNotFoundError(ZstackError, LookupError):
    """No ROI with this id on this image, or not visible to the caller (404, ``roi_not_found``)."""

    code = "roi_not_found"


class UploadTooLargeError(ZstackError):
    """The upload body is over ``limits.max_upload_bytes``."""

    code = "upload_too_large"


class BadUploadError(ZstackError):
    """The multipart body is malformed or has no ``file`` field."""

    code = "bad_upload"


class ImportForbiddenError(ZstackError):
    """In-place import is off, or the path resolves outside ``ZSTACK_IMPORT_ROOTS`` (403)."""

    code = "outside_import_roots"


class NotRegularFileError(ImportForbiddenError):
    """The path to register is a FIFO, socket or device: refused before it is opened (403)."""

    code = "not_a_regular_file"


class SourceNotFoundError(ZstackError, LookupError):
    """The path given to register does not exist (404, code ``path_not_found``)."""

    code = "path_not_found"


class OriginalChangedError(ZstackError):
    """An in-place original's size or mtime differ from the registered ones (409)."""

    code = "original_changed"


class OriginalMissingError(ZstackError):
    """An in-place original is gone (410)."""

    code = "original_missing"


class UploadTimeoutError(ZstackError):
    """The upload body stalled longer than ``uploads.idle_timeout_seconds`` (408)."""

    code = "upload_timeout"


class UploadBusyError(ZstackError):
    """Too many uploads in flight: 429 for one client, 503 for the server as a whole.

    Parameters
    ----------
    message
        What is over which cap.
    status
        429 (this client's cap) or 503 (the server's cap).
    retry_after
        Seconds the client should wait (sent as ``Retry-After``).
    """

    code = "too_many_uploads"

    def __init__(self, message: str, *, status: int, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BadParameterError(ZstackError):
    """A query parameter is malformed (422, code ``invalid_parameter``)."""

    code = "invalid_parameter"


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    408: "Request Timeout",
    413: "Content Too Large",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_for(exc: ZstackError) -> int:
    """The HTTP status of a library or service error (DESIGN.md section 5)."""
    if isinstance(exc, ImageNotFoundError | SourceNotFoundError | RoiNotFoundError):
        return 404
    if isinstance(exc, ImportForbiddenError):
        return 403
    if isinstance(exc, OriginalChangedError | UnsafeFileError):
        return 409
    if isinstance(exc, OriginalMissingError):
        return 410
    if isinstance(exc, UploadTooLargeError):
        return 413
    if isinstance(exc, UploadTimeoutError):
        return 408
    if isinstance(exc, UploadBusyError):
        return exc.status
    if isinstance(exc, DecodeBusyError | DecodeCancelledError):
        return 503
    if isinstance(exc, UnsupportedFormatError | BadUploadError):
        return 400
    if isinstance(exc, MissingDependencyError):
        return 500
    if isinstance(exc, ImageLoadError | BadParameterError | InvalidRoiError):
        return 422
    return 500


def problem_response(
    status: int,
    *,
    code: str,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response."""
    from fastapi.responses import JSONResponse

    body: dict[str, Any] = {
        "type": f"https://zstack-analyzer.invalid/problems/{code.replace('_', '-')}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def request_id_of(request: Request) -> str:
    """The id the request-id middleware gave this request (or a fresh one)."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else uuid.uuid4().hex


def unsafe_cause(exc: BaseException) -> UnsafeFileError | None:
    """The :class:`UnsafeFileError` behind ``exc``, if any (readers wrap what they hit).

    Why: a reader turns any failure to read a plane into ``CorruptFileError``
    (422); a chunk refused because it leads outside the roots must still say so
    (409), whichever reader or library it went through.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UnsafeFileError):
            return current
        seen.add(id(current))
        # The context too, even when suppressed: libraries re-raise "from None"
        # (oiffile turns any OSError into "no such file").
        current = current.__cause__ or current.__context__
    return None


async def _zstack_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ZstackError)  # noqa: S101  (registered for ZstackError only)
    if isinstance(exc, ImageLoadError):  # a reader's wrapping of what it hit
        exc = unsafe_cause(exc) or exc
    status = status_for(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] | None = None
    if isinstance(exc, UploadBusyError):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, DecodeBusyError | DecodeCancelledError):
        headers = {"Retry-After": str(DECODE_RETRY_AFTER_S)}
    elif isinstance(exc, UploadTimeoutError):
        headers = {"Connection": "close"}
    if isinstance(exc, MissingDependencyError):
        extra["package"] = exc.package
        extra["install"] = f"pip install {exc.package}"
    elif status == 500:
        request_id = request_id_of(request)
        logger.error("request %s failed: %s", request_id, exc, exc_info=exc)
        extra["request_id"] = request_id
    return problem_response(status, code=exc.code, detail=exc.message, headers=headers, **extra)


async def _http_error(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)  # noqa: S101
    codes = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        422: "invalid_parameter",
        429: "too_many_requests",
    }
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return problem_response(
        exc.status_code,
        code=codes.get(exc.status_code, f"http_{exc.status_code}"),
        detail=detail,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError

    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors
    ]
    return problem_response(
        422, code="validation_error", detail="; ".join(parts) or "invalid request", errors=errors
    )


#: Seconds a client is told to wait when the object storage does not answer.
STORAGE_RETRY_AFTER_S = 30


def storage_failures() -> tuple[type[Exception], ...]:
    """Exception types that mean "the object storage failed" (public: start-up uses it)."""
    return _storage_failures()


def _storage_failures() -> tuple[type[Exception], ...]:
    """Exception types that mean "the object storage failed", not "the file is bad".

    Only importable ones: without the ``s3`` extra there is no object storage.
    """
    try:
        from obstore.exceptions import BaseError
    except ImportError:
        return ()
    from zstack_analyzer.storage.base import StorageUnavailableError

    return (StorageUnavailableError, BaseError)


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    """503 with Retry-After: the bucket is down or refuses us; the request may succeed later."""
    from obstore.exceptions import NotFoundError

    # A missing object whose record exists is a server fault (500), as a missing local file is.
    if isinstance(exc, NotFoundError | FileNotFoundError):
        return await _unexpected_error(request, exc)
    request_id = request_id_of(request)
    logger.error("request %s: object storage failed: %s", request_id, exc)
    return problem_response(
        503,
        code="storage_unavailable",
        detail=(
            "the object storage holding the originals did not answer; try again later "
            f"(request id {request_id})"
        ),
        headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)},
        request_id=request_id,
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    unsafe = unsafe_cause(exc)
    if unsafe is not None:  # wrapped by a library on its way up: still a refusal, not a fault
        return await _zstack_error(request, unsafe)
    request_id = request_id_of(request)
    logger.error("request %s failed with an unexpected error", request_id, exc_info=exc)
    return problem_response(
        500,
        code="internal_error",
        detail=f"unexpected server error; quote request id {request_id} when reporting it",
        request_id=request_id,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    app.add_exception_handler(ZstackError, _zstack_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for failure in _storage_failures():
        app.add_exception_handler(failure, _storage_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
