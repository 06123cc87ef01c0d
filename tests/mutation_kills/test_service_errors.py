"""The service's error table (``service/errors.py``) on a small app with the real handlers.

What the broader tests leave open: the status, code, title, type URL, detail and headers of
every typed error (429/503 with the client's Retry-After, 503 with the decode budget's,
408 closing the connection, 410, 409 for an unsafe file however deeply a reader or a
library wrapped it), a ``ZstackError`` nobody mapped (500 with a request id that the log
names), HTTPException codes and their headers, the validation error's detail, and the
object storage failing (503, Retry-After 30) or missing an object (500).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Annotated, Any

import pytest
from fastapi import Query

from tests.service.conftest import _testclient_class
from zstack_analyzer import errors as lib
from zstack_analyzer.confine import UnsafeFileError
from zstack_analyzer.service import errors

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"
REQUEST_ID = "req-0123456789"


def _wrapped_by_cause() -> Exception:
    """A reader's CorruptFileError raised ``from`` the UnsafeFileError it hit."""
    try:
        try:
            raise UnsafeFileError("chunk 0/0 leads outside the import roots")
        except UnsafeFileError as unsafe:
            raise lib.CorruptFileError("cells.zarr: chunk 0/0 unreadable") from unsafe
    except lib.CorruptFileError as exc:
        return exc


def _wrapped_by_context() -> Exception:
    """A library error raised ``from None`` while handling an UnsafeFileError (context only)."""
    try:
        try:
            raise UnsafeFileError("companion leads outside the import roots")
        except UnsafeFileError:
            raise RuntimeError("no such file") from None
    except RuntimeError as exc:
        return exc


def _storage_errors() -> dict[str, Exception]:
    from obstore.exceptions import GenericError, NotFoundError

    from zstack_analyzer.storage.base import StorageUnavailableError

    return {
        "storage-down": StorageUnavailableError("bucket unreachable"),
        "storage-generic": GenericError("connection reset"),
        "storage-missing": NotFoundError("no such key"),
    }


RAISED: dict[str, Any] = {
    "image": lambda: errors.ImageNotFoundError("no image 42"),
    "roi": lambda: errors.RoiNotFoundError("no roi 7"),
    "source": lambda: errors.SourceNotFoundError("/data/x.tif: no such file"),
    "forbidden": lambda: errors.ImportForbiddenError("/etc/passwd: outside the roots"),
    "fifo": lambda: errors.NotRegularFileError("/data/pipe: not a regular file"),
    "changed": lambda: errors.OriginalChangedError("x.tif changed"),
    "unsafe": lambda: UnsafeFileError("x.tif leads outside"),
    "missing": lambda: errors.OriginalMissingError("x.tif is gone"),
    "too-large": lambda: errors.UploadTooLargeError("over 10 bytes"),
    "timeout": lambda: errors.UploadTimeoutError("stalled"),
    "busy-client": lambda: errors.UploadBusyError("8 per client", status=429, retry_after=7),
    "busy-server": lambda: errors.UploadBusyError("64 in all", status=503, retry_after=9),
    "decode-busy": lambda: lib.DecodeBusyError("decode budget full"),
    "decode-cancelled": lambda: lib.DecodeCancelledError("shutting down"),
    "unsupported": lambda: lib.UnsupportedFormatError("x.bmp: not an image format"),
    "bad-upload": lambda: errors.BadUploadError("no file field"),
    "missing-dep": lambda: lib.MissingDependencyError("needs nd2", package="nd2"),
    "corrupt": lambda: lib.CorruptFileError("x.czi: truncated"),
    "bad-parameter": lambda: errors.BadParameterError("format: unknown"),
    "invalid-roi": lambda: lib.InvalidRoiError("empty polygon"),
    "plain-zstack": lambda: lib.ZstackError("nobody mapped this"),
    "wrapped-cause": _wrapped_by_cause,
    "wrapped-context": _wrapped_by_context,
    "unexpected": lambda: RuntimeError("boom"),
}


DETAILS = {
    "busy-client": "8 per client",
    "busy-server": "64 in all",
    "decode-busy": "decode budget full",
    "decode-cancelled": "shutting down",
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A fresh app per test: every test reaches the handler table (cheap: no service)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import HTTPException

    app = FastAPI()
    errors.install_error_handlers(app)

    @app.middleware("http")
    async def _request_id(request: Request, call_next: Any) -> Any:
        if request.query_params.get("id") == "given":
            request.state.request_id = REQUEST_ID
        return await call_next(request)

    @app.get("/raise/{kind}")
    def _raise(kind: str) -> None:
        made = {**RAISED, **_storage_errors()}[kind]
        raise made() if callable(made) else made

    @app.get("/http/{status}")
    def _http(status: int, detail: str = "said so") -> None:
        if detail == "dict":
            raise HTTPException(status, detail={"why": "structured"})
        raise HTTPException(status, detail=detail, headers={"X-Extra": "yes"})

    @app.get("/count")
    def _count(n: int, m: int) -> int:
        return n + m

    @app.get("/positive")
    def _positive(n: Annotated[int, Query(gt=0)]) -> int:
        return n

    with _testclient_class()(app, raise_server_exceptions=False) as test_client:
        yield test_client


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://zstack-analyzer.invalid/problems/{code.replace('_', '-')}"
    return body


@pytest.mark.parametrize(
    ("kind", "status", "code", "title", "detail"),
    [
        ("image", 404, "image_not_found", "Not Found", "no image 42"),
        ("roi", 404, "roi_not_found", "Not Found", "no roi 7"),
        ("source", 404, "path_not_found", "Not Found", "/data/x.tif: no such file"),
        ("forbidden", 403, "outside_import_roots", "Forbidden", "/etc/passwd: outside the roots"),
        ("fifo", 403, "not_a_regular_file", "Forbidden", "/data/pipe: not a regular file"),
        ("changed", 409, "original_changed", "Conflict", "x.tif changed"),
        ("unsafe", 409, "unsafe_file", "Conflict", "x.tif leads outside"),
        ("missing", 410, "original_missing", "Gone", "x.tif is gone"),
        ("too-large", 413, "upload_too_large", "Content Too Large", "over 10 bytes"),
        ("unsupported", 400, "unsupported_format", "Bad Request", "x.bmp: not an image format"),
        ("bad-upload", 400, "bad_upload", "Bad Request", "no file field"),
        ("corrupt", 422, "corrupt_file", "Unprocessable Content", "x.czi: truncated"),
        ("bad-parameter", 422, "invalid_parameter", "Unprocessable Content", "format: unknown"),
        ("invalid-roi", 422, "invalid_roi", "Unprocessable Content", "empty polygon"),
        (
            "wrapped-cause",
            409,
            "unsafe_file",
            "Conflict",
            "chunk 0/0 leads outside the import roots",
        ),
        (
            "wrapped-context",
            409,
            "unsafe_file",
            "Conflict",
            "companion leads outside the import roots",
        ),
    ],
)
def test_typed_errors(
    client: TestClient, kind: str, status: int, code: str, title: str, detail: str
) -> None:
    response = client.get(f"/raise/{kind}")
    body = problem(response, status, code)
    assert (body["title"], body["detail"]) == (title, detail)
    assert "request_id" not in body
    assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    ("kind", "status", "retry_after", "title"),
    [
        ("busy-client", 429, "7", "Too Many Requests"),
        ("busy-server", 503, "9", "Service Unavailable"),
        ("decode-busy", 503, "2", "Service Unavailable"),
        ("decode-cancelled", 503, "2", "Service Unavailable"),
    ],
)
def test_busy_errors_say_when_to_retry(
    client: TestClient, kind: str, status: int, retry_after: str, title: str
) -> None:
    response = client.get(f"/raise/{kind}")
    body = problem(response, status, RAISED[kind]().code)
    assert body["detail"] == DETAILS[kind]
    assert response.headers["retry-after"] == retry_after
    assert body["title"] == title
    assert "connection" not in response.headers or response.headers["connection"] != "close"


def test_a_stalled_upload_closes_the_connection(client: TestClient) -> None:
    response = client.get("/raise/timeout")
    body = problem(response, 408, "upload_timeout")
    assert body["title"] == "Request Timeout"
    assert response.headers["connection"] == "close"
    assert "retry-after" not in response.headers


def test_missing_dependency_names_the_install(client: TestClient) -> None:
    body = problem(client.get("/raise/missing-dep"), 500, "missing_dependency")
    assert (body["package"], body["install"]) == ("nd2", "pip install nd2")
    assert body["title"] == "Internal Server Error"
    assert "request_id" not in body


def test_an_unmapped_typed_error_is_500_with_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.errors"):
        body = problem(
            client.get("/raise/plain-zstack", params={"id": "given"}), 500, "zstack_error"
        )
    assert body["detail"] == "nobody mapped this"
    assert body["request_id"] == REQUEST_ID
    [record] = [r for r in caplog.records if r.name == "zstack_analyzer.service.errors"]
    assert record.getMessage() == f"request {REQUEST_ID} failed: nobody mapped this"
    assert record.exc_info is not None
    # Without the middleware's id, a fresh one.
    fresh = problem(client.get("/raise/plain-zstack"), 500, "zstack_error")["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)


def test_unexpected_error_is_500_quoting_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.errors"):
        response = client.get("/raise/unexpected", params={"id": "given"})
    body = problem(response, 500, "internal_error")
    assert body["title"] == "Internal Server Error"
    assert body["detail"] == (
        f"unexpected server error; quote request id {REQUEST_ID} when reporting it"
    )
    assert body["request_id"] == REQUEST_ID
    [record] = [r for r in caplog.records if r.name == "zstack_analyzer.service.errors"]
    assert record.getMessage() == f"request {REQUEST_ID} failed with an unexpected error"
    assert record.exc_info is not None
    assert "boom" not in response.text


@pytest.mark.parametrize("kind", ["storage-down", "storage-generic"])
def test_object_storage_failing_is_503_retry_later(
    client: TestClient, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.errors"):
        response = client.get(f"/raise/{kind}", params={"id": "given"})
    body = problem(response, 503, "storage_unavailable")
    assert body["title"] == "Service Unavailable"
    assert body["detail"] == (
        "the object storage holding the originals did not answer; try again later "
        f"(request id {REQUEST_ID})"
    )
    assert body["request_id"] == REQUEST_ID
    assert response.headers["retry-after"] == "30"
    [record] = [r for r in caplog.records if r.name == "zstack_analyzer.service.errors"]
    assert record.getMessage() == (
        f"request {REQUEST_ID}: object storage failed: {_storage_errors()[kind]}"
    )


def test_a_missing_object_is_a_server_fault(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from obstore.exceptions import NotFoundError

    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.errors"):
        response = client.get("/raise/storage-missing", params={"id": "given"})
    body = problem(response, 500, "internal_error")
    assert body["request_id"] == REQUEST_ID
    assert "retry-after" not in response.headers
    # The log's traceback is the missing object's, not a fault of the handler.
    [record] = [r for r in caplog.records if r.name == "zstack_analyzer.service.errors"]
    assert record.getMessage() == f"request {REQUEST_ID} failed with an unexpected error"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], NotFoundError)


@pytest.mark.parametrize(
    ("status", "code", "title"),
    [
        (401, "unauthorized", "Unauthorized"),
        (403, "forbidden", "Forbidden"),
        (404, "not_found", "Not Found"),
        (405, "method_not_allowed", "Method Not Allowed"),
        (409, "conflict", "Conflict"),
        (422, "invalid_parameter", "Unprocessable Content"),
        (429, "too_many_requests", "Too Many Requests"),
        (416, "http_416", "Range Not Satisfiable"),
        (431, "http_431", "Request Header Fields Too Large"),
        (418, "http_418", "Error"),
    ],
)
def test_http_exceptions(client: TestClient, status: int, code: str, title: str) -> None:
    response = client.get(f"/http/{status}")
    body = problem(response, status, code)
    assert (body["title"], body["detail"]) == (title, "said so")
    assert response.headers["x-extra"] == "yes"


def test_http_exception_detail_that_is_no_text(client: TestClient) -> None:
    body = problem(client.get("/http/409", params={"detail": "dict"}), 409, "conflict")
    assert body["detail"] == "{'why': 'structured'}"


def test_validation_error_names_every_field(client: TestClient) -> None:
    response = client.get("/count", params={"n": "many"})
    body = problem(response, 422, "validation_error")
    assert body["title"] == "Unprocessable Content"
    assert body["detail"] == (
        "query.n: Input should be a valid integer, unable to parse string as an integer; "
        "query.m: Field required"
    )
    assert [e["loc"] for e in body["errors"]] == [["query", "n"], ["query", "m"]]
    assert all("input" not in e and "ctx" not in e and "url" not in e for e in body["errors"])


def test_validation_error_leaves_out_the_context(client: TestClient) -> None:
    body = problem(client.get("/positive", params={"n": "-1"}), 422, "validation_error")
    assert body["detail"] == "query.n: Input should be greater than 0"
    assert body["errors"] == [
        {"type": "greater_than", "loc": ["query", "n"], "msg": "Input should be greater than 0"}
    ]


def test_problem_response_title_and_extra() -> None:
    response = errors.problem_response(
        418, code="a_b_c", detail="d", title="Custom", headers={"X-A": "1"}, more=3
    )
    assert response.media_type == PROBLEM
    assert response.headers["x-a"] == "1"
    assert response.body == (
        b'{"type":"https://zstack-analyzer.invalid/problems/a-b-c","title":"Custom",'
        b'"status":418,"detail":"d","code":"a_b_c","more":3}'
    )


def test_unsafe_cause_follows_causes_and_stops_on_a_cycle() -> None:
    assert isinstance(errors.unsafe_cause(_wrapped_by_cause()), UnsafeFileError)
    assert isinstance(errors.unsafe_cause(_wrapped_by_context()), UnsafeFileError)
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__ = second
    second.__context__ = first
    assert errors.unsafe_cause(first) is None
    # The cause is preferred to the context.
    outer = RuntimeError("outer")
    outer.__cause__ = ValueError("cause")
    outer.__context__ = UnsafeFileError("context")
    assert errors.unsafe_cause(outer) is None


def test_storage_failures_are_the_storage_errors() -> None:
    from obstore.exceptions import BaseError

    from zstack_analyzer.storage.base import StorageUnavailableError

    assert errors.storage_failures() == (StorageUnavailableError, BaseError)
