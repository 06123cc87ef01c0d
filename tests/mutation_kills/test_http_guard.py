"""The HTTP guard in front of routing (``service/guard.py``) on a small app of known routes.

Why a small app: the answers depend only on the route table, the settings' auth mode and the
request's head, so each rule (431, 401 before 404/405, 404 for unknown API paths, 405 with a
complete ``Allow``, HEAD as GET without a body, mounted sub-apps deciding for themselves,
non-API paths untouched) can be checked exactly, and quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.requests import Request  # noqa: TC002 - FastAPI reads the annotation
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.websockets import WebSocket  # noqa: TC002 - FastAPI reads the annotation

from tests.service.conftest import _testclient_class
from tests.service.live import make_settings
from zstack_analyzer.service.guard import HttpGuardMiddleware, api_route_table

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

MAX_HEADERS = 12


def _app(settings: Any) -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/api")

    @router.get("/items")
    def list_items() -> dict[str, str]:
        return {"items": "all"}

    @router.post("/items")
    def add_item() -> dict[str, str]:
        return {"added": "yes"}

    @router.delete("/items/{item_id}")
    def delete_item(item_id: int) -> dict[str, int]:
        return {"deleted": item_id}

    @router.put("/items/{item_id}")
    def put_item(item_id: int) -> dict[str, int]:
        return {"put": item_id}

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, str]:
        return {"echo": (await request.body()).decode()}

    @router.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"one ", b"two ", b"three"]), media_type="text/plain")

    nested = APIRouter()

    @nested.patch("/api/nested/thing")
    def patch_thing() -> dict[str, str]:
        return {"patched": "yes"}

    router_outer = APIRouter()
    router_outer.include_router(nested)
    app.include_router(router)
    app.include_router(router_outer)

    sub = FastAPI()

    @sub.get("/hello")
    def hello() -> PlainTextResponse:
        return PlainTextResponse("sub says hello")

    @sub.post("/echo")
    async def sub_echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(b"sub got " + await request.body())

    app.mount("/api/sub", sub)

    @app.get("/page")
    def page() -> PlainTextResponse:
        return PlainTextResponse("a page")

    @app.post("/form")
    async def form(request: Request) -> PlainTextResponse:
        return PlainTextResponse(b"page got " + await request.body())

    app.state.settings = settings
    app.add_middleware(HttpGuardMiddleware, max_headers=MAX_HEADERS)
    return app


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    with _testclient_class()(_app(make_settings(tmp_path))) as client:
        yield client


@pytest.fixture
def token_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path).model_copy(update={"api_token": "s3cret"})
    with _testclient_class()(_app(settings)) as client:
        yield client


@pytest.fixture
def users_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path).model_copy(update={"auth": "users"})
    with _testclient_class()(_app(settings)) as client:
        yield client


def test_routes_answer_when_allowed(open_client: TestClient) -> None:
    assert open_client.get("/api/items").json() == {"items": "all"}
    assert open_client.post("/api/items").json() == {"added": "yes"}
    assert open_client.delete("/api/items/3").json() == {"deleted": 3}
    assert open_client.patch("/api/nested/thing").json() == {"patched": "yes"}
    assert open_client.get("/page").text == "a page"


def test_an_unknown_api_path_is_404_here(open_client: TestClient) -> None:
    response = open_client.get("/api/nothing/here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "no API route at '/api/nothing/here'" in response.json()["detail"]
    long = open_client.get("/api/" + "x" * 500)
    assert long.status_code == 404
    assert "x" * 195 in long.json()["detail"]
    assert "x" * 300 not in long.json()["detail"]


def test_a_method_no_route_accepts_is_405_with_every_allowed_method(
    open_client: TestClient,
) -> None:
    response = open_client.patch("/api/items")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json()["code"] == "method_not_allowed"
    assert response.json()["detail"] == "PATCH is not allowed here; allowed: GET, HEAD, POST"
    one = open_client.get("/api/items/7")
    assert one.status_code == 405
    assert one.headers["allow"] == "DELETE, PUT"  # no GET here, so no HEAD either
    head = open_client.head("/api/items/7")
    assert head.status_code == 405
    nested = open_client.get("/api/nested/thing")
    assert nested.status_code == 405
    assert nested.headers["allow"] == "PATCH"
    odd = open_client.request("X" * 40, "/api/items")
    assert odd.status_code == 405
    assert odd.json()["detail"].startswith("X" * 16 + " is not allowed")


def test_head_is_get_without_the_body(open_client: TestClient) -> None:
    head = open_client.head("/api/items")
    get = open_client.get("/api/items")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == get.headers["content-type"]
    streamed = open_client.head("/api/stream")
    assert streamed.status_code == 200
    assert streamed.content == b""
    assert open_client.get("/api/stream").content == b"one two three"


def test_mounted_sub_apps_decide_for_themselves(open_client: TestClient) -> None:
    assert open_client.get("/api/sub/hello").text == "sub says hello"
    assert open_client.get("/api/sub/other").status_code == 404
    assert open_client.post("/api/sub/hello").status_code == 405


def test_too_many_headers_is_431(open_client: TestClient) -> None:
    base = len(open_client.build_request("GET", "/api/items").headers)
    fits = {f"x-h{i}": "v" for i in range(MAX_HEADERS - base)}
    assert open_client.get("/api/items", headers=fits).status_code == 200
    over = {f"x-h{i}": "v" for i in range(MAX_HEADERS - base + 1)}
    response = open_client.get("/page", headers=over)
    assert response.status_code == 431
    assert response.json()["code"] == "headers_too_large"
    assert response.json()["detail"] == (
        f"{MAX_HEADERS + 1} request header fields; at most {MAX_HEADERS} are accepted"
    )


def test_a_token_is_asked_for_before_any_404_or_405(token_client: TestClient) -> None:
    for method, path in (
        ("GET", "/api/items"),
        ("GET", "/api/nothing"),
        ("PATCH", "/api/items"),
        ("HEAD", "/api/items"),
        ("GET", "/api/sub/hello"),
    ):
        response = token_client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        if method != "HEAD":
            assert response.json()["code"] == "unauthorized"
    for header in ("Bearer wrong", "Basic s3cret", "s3cret", "Bearer", ""):
        response = token_client.get("/api/items", headers={"Authorization": header})
        assert response.status_code == 401, header
    for header in ("Bearer s3cret", "bearer s3cret", "BEARER  s3cret ", "Bearer s3cret"):
        response = token_client.get("/api/items", headers={"Authorization": header})
        assert response.status_code == 200, header
    good = {"Authorization": "Bearer s3cret"}
    assert token_client.get("/api/nothing", headers=good).status_code == 404
    assert token_client.patch("/api/items", headers=good).status_code == 405
    assert token_client.get("/page").status_code == 200  # not under /api: no token needed


def test_users_mode_asks_only_for_some_credential(users_client: TestClient) -> None:
    assert users_client.get("/api/items").status_code == 401
    assert users_client.get("/api/auth/login").status_code == 404  # open path: routing answers
    assert users_client.get("/api/items", headers={"Authorization": "Bearer x"}).status_code == 200
    assert users_client.get("/api/items", headers={"Authorization": "Bearer "}).status_code == 401
    assert users_client.get("/api/items", headers={"Authorization": "Basic x"}).status_code == 401
    for cookie, status in (
        ("zstack_session=abc", 200),
        ("other=1; zstack_session=abc", 200),
        ("  zstack_session=abc ;x=y", 200),
        ("zstack_session=", 401),
        ("zstack_session= ; other=1", 401),
        ("zstack_sessionx=abc", 401),
        ("other=zstack_session", 401),
    ):
        users_client.cookies.clear()
        response = users_client.get("/api/items", headers={"Cookie": cookie})
        assert response.status_code == status, cookie


def test_the_route_table_lists_api_routes_through_included_routers(tmp_path: Path) -> None:
    app = _app(make_settings(tmp_path))
    table = api_route_table(list(app.routes))
    by_path = {regex.pattern: methods for regex, methods in table}
    assert frozenset({"GET"}) in by_path.values()
    assert any(m == frozenset({"*"}) for m in by_path.values())  # the mounted sub-app
    assert all("page" not in pattern for pattern in by_path)
    matching = [m for regex, m in table if regex.match("/api/items/3")]
    assert sorted(sorted(m) for m in matching) == [["DELETE"], ["PUT"]]
    assert [m for regex, m in table if regex.match("/api/nested/thing")] == [frozenset({"PATCH"})]


def test_websockets_and_lifespan_pass_through(tmp_path: Path) -> None:
    app = _app(make_settings(tmp_path))

    @app.websocket("/api/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hi")
        await socket.close()

    with _testclient_class()(app) as client, client.websocket_connect("/api/ws") as socket:
        assert socket.receive_text() == "hi"


def test_request_bodies_reach_every_route_the_guard_lets_through(
    open_client: TestClient, token_client: TestClient
) -> None:
    """API routes, mounted sub-apps and pages outside ``/api`` all read the body they were sent."""
    assert open_client.post("/api/echo", content=b"payload").json() == {"echo": "payload"}
    assert open_client.post("/api/sub/echo", content=b"abc").text == "sub got abc"
    assert open_client.post("/form", content=b"x=1").text == "page got x=1"
    assert token_client.post("/form", content=b"y=2").text == "page got y=2"


def test_the_refusals_say_what_was_refused(
    open_client: TestClient, token_client: TestClient
) -> None:
    """The problem details of 401 and 404 in full (a path is cut at 200 characters)."""
    refused = token_client.get("/api/items")
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {
        "type": "https://zstack-analyzer.invalid/problems/unauthorized",
        "title": refused.json()["title"],
        "status": 401,
        "detail": "missing or invalid bearer token (send 'Authorization: Bearer <token>')",
        "code": "unauthorized",
    }
    path = "/api/" + "y" * 500
    missing = open_client.get(path)
    assert missing.json()["detail"] == f"no API route at {path[:200]!r}"
    assert missing.json()["status"] == 404


def test_more_credentials_in_users_mode(users_client: TestClient) -> None:
    """A bearer value with spaces, cookie values holding '=' and cookies in any order."""
    for header, status in (("Bearer  two spaces", 200), ("Bearer a b", 200), ("Bearer   ", 401)):
        response = users_client.get("/api/items", headers={"Authorization": header})
        assert response.status_code == status, header
    for cookie, status in (
        ("zstack_session=abc=", 200),  # base64 padding: '=' inside a value is allowed
        ("zstack_session=a=b", 200),
        ("x=y;zstack_session=abc", 200),
        ("a=1;b=2;zstack_session=ok", 200),
        ("x=zstack_session=abc", 401),
    ):
        users_client.cookies.clear()
        response = users_client.get("/api/items", headers={"Cookie": cookie})
        assert response.status_code == status, cookie


def test_an_app_without_settings_asks_for_no_credentials(tmp_path: Path) -> None:
    """The guard reads the auth mode from ``app.state.settings``; without settings auth is off."""
    app = _app(make_settings(tmp_path))
    del app.state.settings
    with _testclient_class()(app) as client:
        assert client.get("/api/items").json() == {"items": "all"}
        assert client.get("/api/nothing").status_code == 404


def _asgi_messages(app: Any, method: str, path: str) -> list[dict[str, Any]]:
    """Every message ``app`` sends for one request, driven as an ASGI server would."""
    import anyio

    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover - sleep_forever never returns

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent


def test_head_completes_the_response_with_one_empty_body_message(tmp_path: Path) -> None:
    """As an ASGI server sees it: the GET's start, then exactly one final, empty body message.

    A server waits for ``more_body: False`` to end the response; a HEAD that never sends it
    (or sends more after it) leaves the client hanging or breaks the connection.
    """
    app = _app(make_settings(tmp_path))
    for path in ("/api/items", "/api/stream"):
        get = _asgi_messages(app, "GET", path)
        head = _asgi_messages(app, "HEAD", path)
        assert head[0]["type"] == "http.response.start"
        assert head[0]["status"] == get[0]["status"] == 200
        assert head[0]["headers"] == get[0]["headers"]
        bodies = head[1:]
        assert [m["type"] for m in bodies] == ["http.response.body"], path
        assert bodies[0].get("body", b"") == b""
        assert bodies[0].get("more_body", False) is False


def test_routes_without_a_path_are_skipped(tmp_path: Path) -> None:
    """A ``Host`` route (matched by host name, no path) does not break the guard or its table."""
    from starlette.routing import Host

    app = _app(make_settings(tmp_path))
    other = FastAPI()

    @other.get("/api/elsewhere")
    def elsewhere() -> dict[str, str]:
        return {"on": "other host"}

    app.router.routes.append(Host("files.example", app=other))
    assert len(api_route_table(list(app.routes))) == len(api_route_table(list(app.routes)[:-1]))
    with _testclient_class()(app) as client:
        assert client.get("/api/items").json() == {"items": "all"}
        assert client.get("/api/nothing").status_code == 404
