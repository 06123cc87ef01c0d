"""Accounts over HTTP (``service/routes/accounts.py``): who may call what, and what they are told.

Why these checks: the permission matrix proves the status of every admin route per role, but
rebuilds a whole lab per mutant (14 s); these tests start one small users-mode app on a copy
of the migrated SQLite database and check the answers' bodies: ``/api/auth/me`` (groups,
levels, roles, read-only, how one authenticated), the users and groups an admin lists (each
user's groups in the order they were joined, each group's members by name with their role),
the 409 of accounts routes on a server without accounts, and the 403 of admin routes.
"""

from __future__ import annotations

import shutil
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from starlette.requests import Request

from tests.mutation_kills.service_db import _template
from tests.service.authworld import FAST_PASSWORDS
from tests.service.conftest import _testclient_class
from tests.service.live import make_settings
from zstack_analyzer.service.config import AccountSettings
from zstack_analyzer.service.routes.accounts import _client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

PASSWORD = "a long enough password"  # noqa: S105  (a test account's)


def _start(tmp_path: Path, **overrides: Any) -> Any:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(_template(), data / "zstack.db")
    from zstack_analyzer.service.app import create_app

    settings = make_settings(data, accounts=AccountSettings(**FAST_PASSWORDS), **overrides)
    return _testclient_class()(create_app(settings))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """One users-mode app for the session (the mutation runner keeps it); its first admin.

    Why session-scoped: starting the app costs seconds under load; each test makes its own
    users and groups under a fresh prefix, so tests and repeated runs never see each other's.
    """
    from zstack_analyzer.service.auth import accounts

    with _start(tmp_path_factory.mktemp("accounts"), auth="users") as client:
        with client.app.state.database.sessions() as session:
            accounts.create_user(session, "root", admin=True)
            root = accounts.create_token(session, "root", name="t")[1]
        yield client, root


@pytest.fixture
def lab(server: tuple[TestClient, str]) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """Under a fresh prefix P: alice joins 'P-b' (owner) then 'P-a'; bob only 'P-a'.

    Returns the client, API tokens by name (``alice-ro`` is alice's read-only token, ``root``
    the first admin's) and the prefix.
    """
    from zstack_analyzer.service.auth import accounts

    client, root = server
    p = "p" + uuid.uuid4().hex[:8]
    tokens: dict[str, str] = {"root": root}
    with client.app.state.database.sessions() as session:
        accounts.create_group(session, f"{p}-a", "read-annotate")  # the lower group id
        accounts.create_group(session, f"{p}-b", "read-only")
        accounts.create_user(session, f"{p}alice", password=PASSWORD, display_name="Alice L")
        accounts.create_user(session, f"{p}bob")
        # alice joins the group of the higher id first: her groups list in joining order.
        accounts.set_membership(session, f"{p}-b", f"{p}alice", owner=True)
        accounts.set_membership(session, f"{p}-a", f"{p}alice")
        accounts.set_membership(session, f"{p}-a", f"{p}bob")
        for name in ("alice", "bob"):
            tokens[name] = accounts.create_token(session, f"{p}{name}", name="t")[1]
        tokens["alice-ro"] = accounts.create_token(session, f"{p}alice", read_only=True)[1]
    try:
        yield client, tokens, p
    finally:
        client.cookies.clear()


def _as(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def _alice_groups(p: str) -> list[dict[str, str]]:
    return [
        {"name": f"{p}-b", "permissions": "read-only", "role": "owner"},
        {"name": f"{p}-a", "permissions": "read-annotate", "role": "member"},
    ]


def _bob_groups(p: str) -> list[dict[str, str]]:
    return [{"name": f"{p}-a", "permissions": "read-annotate", "role": "member"}]


ROOT_GROUPS = [{"name": "default", "permissions": "read-only", "role": "owner"}]
Lab = tuple["TestClient", dict[str, str], str]


def test_me_says_who_and_how(lab: Lab) -> None:
    client, tokens, p = lab
    me = client.get("/api/auth/me", headers=_as(tokens, "alice"))
    assert me.status_code == 200
    assert me.headers["Cache-Control"] == "no-store"
    body = me.json()
    assert {**body, "groups": sorted(body["groups"], key=lambda g: g["name"])} == {
        "username": f"{p}alice",
        "is_admin": False,
        "groups": sorted(_alice_groups(p), key=lambda g: g["name"]),
        "read_only": False,
        "auth": "api-token",
        "csrf_token": None,
    }
    read_only = client.get("/api/auth/me", headers=_as(tokens, "alice-ro")).json()
    assert (read_only["read_only"], read_only["is_admin"]) == (True, False)
    root = client.get("/api/auth/me", headers=_as(tokens, "root")).json()
    # The first admin owns the "default" group (adopting what was there before accounts).
    assert (root["username"], root["is_admin"], root["groups"]) == ("root", True, ROOT_GROUPS)
    # A session: the login answer and /me name it and carry its CSRF token.
    login = client.post("/api/auth/login", json={"username": f"{p}alice", "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["auth"] == "session"
    csrf = login.json()["csrf_token"]
    assert isinstance(csrf, str)
    assert len(csrf) >= 16
    assert client.get("/api/auth/me").json()["csrf_token"] == csrf


def test_admin_lists_users_with_their_groups_in_joining_order(lab: Lab) -> None:
    client, tokens, p = lab
    answer = client.get("/api/admin/users", headers=_as(tokens, "root"))
    assert answer.status_code == 200, answer.text
    users = {u["username"]: u for u in answer.json()}
    names = [u["username"] for u in answer.json()]
    assert names == sorted(names)
    assert users[f"{p}alice"]["groups"] == _alice_groups(p)
    assert users[f"{p}bob"]["groups"] == _bob_groups(p)
    assert users["root"]["groups"] == ROOT_GROUPS
    assert users[f"{p}alice"]["display_name"] == "Alice L"
    # Created and changed users answer with their own groups.
    made = client.post(
        "/api/admin/users",
        json={"username": f"{p}carl", "is_admin": True},
        headers=_as(tokens, "root"),
    )
    assert made.status_code == 201, made.text
    assert (made.json()["username"], made.json()["is_admin"], made.json()["groups"]) == (
        f"{p}carl",
        True,
        [],
    )
    changed = client.patch(
        f"/api/admin/users/{p}alice", json={"display_name": "Alice"}, headers=_as(tokens, "root")
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["username"] == f"{p}alice"
    assert changed.json()["display_name"] == "Alice"
    assert changed.json()["groups"] == _alice_groups(p)
    bob = client.patch(
        f"/api/admin/users/{p}bob", json={"email": "bob@example.org"}, headers=_as(tokens, "root")
    )
    assert bob.json()["groups"] == _bob_groups(p)


def test_admin_sees_groups_with_members_and_roles(lab: Lab) -> None:
    client, tokens, p = lab
    root = _as(tokens, "root")
    groups = client.get("/api/admin/groups", headers=root).json()
    names = [g["name"] for g in groups]
    assert names == sorted(names)
    by_name = {g["name"]: g for g in groups}
    assert by_name["default"]["permissions"] == "read-only"
    assert by_name[f"{p}-a"]["permissions"] == "read-annotate"
    assert by_name[f"{p}-a"]["members"] == [
        {"username": f"{p}alice", "role": "member"},
        {"username": f"{p}bob", "role": "member"},
    ]
    assert by_name[f"{p}-b"]["members"] == [{"username": f"{p}alice", "role": "owner"}]
    assert by_name[f"{p}-a"]["id"] < by_name[f"{p}-b"]["id"]
    made = client.post("/api/admin/groups", json={"name": f"{p}-c"}, headers=root)
    assert made.status_code == 201, made.text
    assert made.json()["members"] == []
    assert isinstance(made.json()["id"], int)
    assert made.json()["id"] > by_name[f"{p}-b"]["id"]
    put = client.put(
        f"/api/admin/groups/{p}-c/members/{p}bob", json={"is_owner": True}, headers=root
    )
    assert put.status_code == 200, put.text
    assert put.json() == {
        "id": made.json()["id"],
        "name": f"{p}-c",
        "permissions": made.json()["permissions"],
        "members": [{"username": f"{p}bob", "role": "owner"}],
    }
    changed = client.patch(
        f"/api/admin/groups/{p}-c", json={"permissions": "private"}, headers=root
    )
    assert changed.json()["permissions"] == "private"
    assert changed.json()["members"] == [{"username": f"{p}bob", "role": "owner"}]
    # Members by name, not by when they joined.
    made_aaron = client.post("/api/admin/users", json={"username": f"{p}aaron"}, headers=root)
    assert made_aaron.status_code == 201, made_aaron.text
    joined = client.put(f"/api/admin/groups/{p}-a/members/{p}aaron", json={}, headers=root)
    assert [m["username"] for m in joined.json()["members"]] == [
        f"{p}aaron",
        f"{p}alice",
        f"{p}bob",
    ]
    client.delete(f"/api/admin/groups/{p}-a/members/{p}aaron", headers=root)
    removed = client.delete(f"/api/admin/groups/{p}-a/members/{p}bob", headers=root)
    assert removed.status_code == 200, removed.text
    assert removed.json()["members"] == [{"username": f"{p}alice", "role": "member"}]


def test_admin_routes_refuse_others(lab: Lab) -> None:
    client, tokens, _ = lab
    for name in ("alice", "bob"):
        for method, path in (("get", "/api/admin/users"), ("get", "/api/admin/groups")):
            answer = client.request(method, path, headers=_as(tokens, name))
            assert answer.status_code == 403, (name, path, answer.text)
            assert answer.json()["detail"] == "admins only"
    assert client.get("/api/admin/users", headers=_as(tokens, "root")).status_code == 200


@pytest.fixture(scope="session")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app without accounts (ZSTACK_AUTH unset, no token: auth "none"), for the session."""
    with _start(tmp_path_factory.mktemp("open")) as client:
        yield client


def test_without_accounts_login_and_tokens_say_why(open_server: TestClient) -> None:
    client = open_server
    login = client.post("/api/auth/login", json={"username": "a", "password": "b"})
    assert login.status_code == 409
    assert login.json()["detail"] == (
        "accounts are off on this server (ZSTACK_AUTH=users turns them on)"
    )
    tokens = client.get("/api/tokens")
    assert tokens.status_code == 409
    assert tokens.json()["detail"] == "personal tokens need ZSTACK_AUTH=users and a user"
    created = client.post("/api/tokens", json={"name": "x"})
    assert created.status_code == 409


def test_client_address_or_unknown() -> None:
    """The login throttle's key: the peer's address, "unknown" without one (a Unix socket)."""
    with_peer = Request({"type": "http", "client": ("10.1.2.3", 5555), "headers": []})
    assert _client(with_peer) == "10.1.2.3"
    without = Request({"type": "http", "client": None, "headers": []})
    assert _client(without) == "unknown"
