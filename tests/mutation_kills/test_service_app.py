"""The app factory's wiring (``service/app.py``) that needs no started service.

What the broader tests leave open: every CORS method, request header and exposed header
the viewer on another origin needs, the request id on every answer (a fresh one each
time), a failure before the answer started turned into a 500 problem quoting that id, and
the installed version.
"""

from __future__ import annotations

import logging
import re
from importlib import metadata
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.service.conftest import _testclient_class
from zstack_analyzer.service.app import RequestIdMiddleware, create_app, service_version
from zstack_analyzer.service.config import Settings

if TYPE_CHECKING:
    from pathlib import Path

ORIGIN = "http://viewer.example"


def test_cors_preflight_and_exposed_headers(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, cors_origins=[ORIGIN])  # type: ignore[call-arg]
    client = _testclient_class()(create_app(settings))  # no lifespan: CORS answers first
    preflight = client.options(
        "/api/images/",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, x-csrf-token, range",
        },
    )
    assert preflight.status_code == 200
    methods = preflight.headers["access-control-allow-methods"].split(", ")
    assert methods == ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert allowed >= {"authorization", "content-type", "if-none-match", "range", "x-csrf-token"}
    page = client.get("/", headers={"Origin": ORIGIN})
    assert page.headers["access-control-allow-origin"] == ORIGIN
    exposed = [h.strip() for h in page.headers["access-control-expose-headers"].split(",")]
    assert exposed == [
        "ETag",
        "X-Duplicate-Of",
        "X-Request-ID",
        "Content-Disposition",
        "Content-Range",
        "Location",
    ]
    other = client.options(
        "/api/images/",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_every_answer_has_a_fresh_request_id(tmp_path: Path) -> None:
    client = _testclient_class()(create_app(Settings(_env_file=None, data_dir=tmp_path)))  # type: ignore[call-arg]
    first, second = client.get("/"), client.get("/")
    assert first.status_code == 200
    ids = [r.headers["x-request-id"] for r in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids[0] != ids[1]


def _run(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(lambda: RequestIdMiddleware(app)(scope, receive, send))
    return sent


def test_a_failure_before_the_answer_is_a_500_quoting_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with caplog.at_level(logging.ERROR, logger="zstack_analyzer.service.app"):
        sent = _run(broken, scope)
    start, body = sent
    assert start["status"] == 500
    headers = dict(start["headers"])
    request_id = scope["state"]["request_id"]
    assert headers[b"x-request-id"] == request_id.encode()
    assert headers[b"content-type"] == b"application/problem+json"
    import json

    problem = json.loads(body["body"])
    assert problem["code"] == "internal_error"
    assert problem["request_id"] == request_id
    assert problem["detail"] == (
        f"unexpected server error; quote request id {request_id} when reporting it"
    )
    [record] = caplog.records
    assert record.getMessage() == f"request {request_id} failed with an unexpected error"
    assert record.exc_info is not None


def test_a_failure_after_the_answer_started_is_raised() -> None:
    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
        raise RuntimeError("mid-body")

    with pytest.raises(RuntimeError, match="mid-body"):
        _run(half, {"type": "http", "method": "GET", "path": "/", "headers": []})


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    _run(app, {"type": "lifespan"})
    assert seen == [{"type": "lifespan"}]


def test_service_version_is_the_installed_one() -> None:
    assert service_version() == metadata.version("zstack-analyzer")


def test_an_answer_without_headers_still_gets_the_id() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    start, _body = _run(bare, scope)
    assert start["headers"] == [(b"x-request-id", scope["state"]["request_id"].encode())]


def test_the_openapi_names_the_service(tmp_path: Path) -> None:
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert (app.title, app.version) == ("zstack-analyzer", service_version())
    assert app.summary == "Microscopy z-stacks: metadata, thumbnails, projections and downloads"


def test_version_of_a_source_tree_without_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)  # as in an uninstalled checkout
    assert service_version() == "0+unknown"


def test_the_openapi_version_is_the_installed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata, "version", lambda name: "9.8.7")  # another release
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert app.version == "9.8.7"
