"""Every API route of the app ``create_app`` builds sits behind its router's guard.

Why: ``service/app.py`` mounts each router with the one enforcement point
(``Depends(authorize)``, ``service/auth/guard.py``), the accounts' login router with
``token_unless_users``. A router mounted without it serves its routes to anyone, or
leaves the refusal to whatever a route happens to declare, after its other work (a
database session, the storage, the worker pool). The routes are enumerated from the app
at test time, so a route or router added later without the guard fails here too.

What is pinned:

- each ``/api`` operation's first dependency is the guard (the login router's own for
  ``/api/auth/*``), so the guard decides before anything else the route depends on;
- with accounts on (``ZSTACK_AUTH=users``) and with a token (``ZSTACK_AUTH=token``), an
  anonymous request to every operation (and ``HEAD`` on every ``GET``) answers the
  documented 401 problem with ``WWW-Authenticate: Bearer``, on an app whose lifespan has
  not run: no database, storage or pool exists, so only a guard that runs first answers;
- the same on the started service, where the login (users mode), the viewer and the API
  documents stay public, and a logged-in session passes the guard;
- LDAP login is installed exactly when configured (a directory that is down answers 503
  for a name with no local account; without LDAP the same login is a plain 401).

Each test builds its own app: the session mutation runner credits a function called while a
shared fixture is set up to the first test only (docs/mutation-scores.md).
"""

from __future__ import annotations

import re
import shutil
import socket
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.service_db import _template as db_template
from tests.service.authworld import FAST_PASSWORDS
from tests.service.conftest import _testclient_class
from tests.service.live import make_settings
from zstack_analyzer.service.app import create_app
from zstack_analyzer.service.auth.guard import authorize
from zstack_analyzer.service.auth.principal import token_unless_users
from zstack_analyzer.service.config import AccountSettings, LdapSettings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

TOKEN = "s3cret-token"  # noqa: S105 - the test service's
PASSWORD = "a local password"  # noqa: S105 - a test account's
#: Values for the path parameters (an unknown image id: the guard answers before the lookup).
PATH_VALUES = {
    "image_id": "00000000-0000-4000-8000-000000000000",
    "plane": "xz",
    "key": ".zattrs",
    "username": "someone",
    "name": "lab",
}
#: The only /api operation an anonymous caller may reach with accounts on.
PUBLIC_WITH_ACCOUNTS = {("POST", "/api/auth/login")}
#: The routers' own operations under /api/auth (login router: no image guard).
AUTH_OPERATIONS = {
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/password"),
    ("GET", "/api/auth/me"),
}


def _routes(app: FastAPI) -> list[Any]:
    """Every route of ``app`` as served, included routers resolved (with their dependencies).

    FastAPI >= 0.16x keeps included routers as lazy wrappers in ``app.routes`` and resolves
    them with ``iter_route_contexts``; older versions flatten them into ``APIRoute``s.
    """
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - FastAPI before the lazy included routers
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _operations(app: FastAPI) -> dict[tuple[str, str], Any]:
    """``(METHOD, path) -> route`` of every operation under ``/api``."""
    found: dict[tuple[str, str], Any] = {}
    for route in _routes(app):
        path = getattr(route, "path", None) or ""
        if path == "/api" or path.startswith("/api/"):
            for method in getattr(route, "methods", None) or ():
                found[(method, path)] = route
    return found


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES.get(m[1], "1"), path)


def _anonymous_answers(
    client: TestClient, operations: set[tuple[str, str]], *, heads: bool = True
) -> dict[Any, Any]:
    """``(method, path) -> (status, WWW-Authenticate, problem code)`` of anonymous requests.

    With ``heads``, ``HEAD`` is sent for every ``GET`` too (the HTTP guard answers it as the
    ``GET``, with no body: no problem code).
    """
    answers: dict[Any, Any] = {}
    requests = set(operations)
    if heads:
        requests |= {("HEAD", p) for m, p in operations if m == "GET"}
    for method, path in sorted(requests):
        client.cookies.clear()
        answer = client.request(method, _fill(path))
        problem = answer.headers.get("content-type", "").startswith("application/problem+json")
        code = answer.json().get("code") if problem and method != "HEAD" else None
        answers[(method, path)] = (answer.status_code, answer.headers.get("www-authenticate"), code)
    return answers


def _not_refused(answers: dict[Any, Any], public: set[tuple[str, str]]) -> dict[Any, Any]:
    """The answers that are not the documented refusal (public operations left out)."""
    return {
        (method, path): answer
        for (method, path), answer in answers.items()
        if (method, path) not in public
        and answer != (401, "Bearer", None if method == "HEAD" else "unauthorized")
    }


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    """Settings of a test app on a copy of a migrated SQLite database (fast start-up)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    shutil.copyfile(db_template(), data / "zstack.db")
    return make_settings(data, accounts=AccountSettings(**FAST_PASSWORDS), **overrides)


def _unstarted(settings: Any) -> TestClient:
    """A client of an app whose lifespan never runs (no database, storage or pool)."""
    return _testclient_class()(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def users_client(tmp_path: Path) -> Iterator[TestClient]:
    """The started service with accounts on; one local user, ``lena``."""
    from zstack_analyzer.service.auth import accounts

    settings = _settings(tmp_path, auth="users")
    with _testclient_class()(create_app(settings), raise_server_exceptions=False) as client:
        with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            accounts.create_user(session, "lena", password=PASSWORD)
        yield client


@pytest.mark.parametrize("mode", ["users", "token", "none"])
def test_every_api_operation_depends_first_on_its_guard(tmp_path: Path, mode: str) -> None:
    """The guard is the first dependency of every /api operation, whatever the auth mode."""
    app = create_app(_settings(tmp_path, auth=mode, api_token=TOKEN if mode == "token" else None))
    operations = _operations(app)
    assert len(operations) >= 100, sorted(operations)
    assert {op for op in operations if op[1].startswith("/api/auth/")} == AUTH_OPERATIONS
    firsts = {
        op: (route.dependencies[0].dependency if route.dependencies else None)
        for op, route in operations.items()
    }
    expected = {op: token_unless_users if op in AUTH_OPERATIONS else authorize for op in operations}
    assert firsts == expected


@pytest.mark.parametrize("mode", ["users", "token"])
def test_anonymous_requests_are_refused_before_anything_else_runs(
    tmp_path: Path, mode: str
) -> None:
    """401 problem with ``WWW-Authenticate: Bearer`` on every operation of an unstarted app.

    Token mode refuses the login router's operations too (every /api route wants the
    token). In users mode that router has no guard of its own (the login is open; logout
    and ``me`` resolve the caller in the route, after the database): checked on the
    started service below.
    """
    client = _unstarted(
        _settings(tmp_path, auth=mode, api_token=TOKEN if mode == "token" else None)
    )
    operations = set(_operations(client.app))  # type: ignore[arg-type]
    public = AUTH_OPERATIONS if mode == "users" else set()
    assert public <= operations
    answers = _anonymous_answers(client, operations - public)
    assert _not_refused(answers, public) == {}
    assert len(answers) > len(operations)  # the HEADs too


def test_the_token_lets_every_caller_past_the_guard_in_token_mode(tmp_path: Path) -> None:
    """With the token, the guard lets the request through (here: to the formats list)."""
    client = _unstarted(_settings(tmp_path, auth="token", api_token=TOKEN))
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/images/formats/supported", headers=good).status_code == 200
    assert client.get("/api/images/formats/supported").status_code == 401


def test_with_accounts_on_the_started_service_refuses_anonymous_callers(
    users_client: TestClient,
) -> None:
    operations = set(_operations(users_client.app))  # type: ignore[arg-type]
    answers = _anonymous_answers(users_client, operations, heads=False)
    assert _not_refused(answers, PUBLIC_WITH_ACCOUNTS) == {}
    # The login is reached anonymously: its own validation, its own refusal.
    assert users_client.post("/api/auth/login", json={}).status_code == 422
    wrong = users_client.post("/api/auth/login", json={"username": "lena", "password": "no"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers


def test_the_viewer_documents_and_login_stay_public_and_a_session_passes(
    users_client: TestClient,
) -> None:
    for path in ("/", "/openapi.json", "/docs", "/redoc"):
        users_client.cookies.clear()
        assert users_client.get(path).status_code == 200, path
    users_client.cookies.clear()
    assert users_client.get("/api/health").status_code == 401
    logged_in = users_client.post(
        "/api/auth/login", json={"username": "lena", "password": PASSWORD}
    )
    assert logged_in.status_code == 200
    assert logged_in.json()["username"] == "lena"
    # The session cookie now passes the guard of the other routers.
    assert users_client.get("/api/auth/me").json()["username"] == "lena"
    assert users_client.get("/api/health").json()["database"] == "ok"
    assert users_client.get("/api/images/").status_code == 200
    assert users_client.get("/api/tags").status_code == 200


def _dead_ldap_url() -> str:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ldap://127.0.0.1:{port}"


def test_ldap_login_is_installed_when_configured(tmp_path: Path) -> None:
    """A name with no local account is checked against the directory: down, 503."""
    ldap = LdapSettings(url=_dead_ldap_url(), user_dn_template="uid={username},dc=example")
    settings = _settings(tmp_path, auth="users", ldap=ldap)
    with _testclient_class()(create_app(settings)) as client:
        down = client.post("/api/auth/login", json={"username": "alice", "password": "x"})
    assert down.status_code == 503
    assert down.json()["code"] == "directory_unavailable"


def test_without_ldap_an_unknown_name_is_a_plain_refusal(users_client: TestClient) -> None:
    answer = users_client.post("/api/auth/login", json={"username": "alice", "password": "x"})
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
