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


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Users mode: admin root; alice joins 'b-lab' (owner) then 'a-lab'; bob only in 'a-lab'.

    Returns the client and API tokens by name (``alice-ro`` is alice's read-only token).
    """
    from zstack_analyzer.service.auth import accounts

    with _start(tmp_path, auth="users") as client:
        tokens: dict[str, str] = {}
        with client.app.state.database.sessions() as session:
            accounts.create_user(session, "root", admin=True)
            accounts.create_group(session, "a-lab", "read-annotate")  # the lower group id
            accounts.create_group(session, "b-lab", "read-only")
            accounts.create_user(session, "alice", password=PASSWORD, display_name="Alice L")
            accounts.create_user(session, "bob")
            # alice joins the group of the higher id first: her groups list in joining order.
            accounts.set_membership(session, "b-lab", "alice", owner=True)
            accounts.set_membership(session, "a-lab", "alice")
            accounts.set_membership(session, "a-lab", "bob")
            for name in ("root", "alice", "bob"):
                tokens[name] = accounts.create_token(session, name, name="t")[1]
            tokens["alice-ro"] = accounts.create_token(session, "alice", read_only=True)[1]
        yield client, tokens


def _as(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


ALICE_GROUPS = [
    {"name": "b-lab", "permissions": "read-only", "role": "owner"},
    {"name": "a-lab", "permissions": "read-annotate", "role": "member"},
]
BOB_GROUPS = [{"name": "a-lab", "permissions": "read-annotate", "role": "member"}]
ROOT_GROUPS = [{"name": "default", "permissions": "read-only", "role": "owner"}]


def test_me_says_who_and_how(lab: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = lab
    me = client.get("/api/auth/me", headers=_as(tokens, "alice"))
    assert me.status_code == 200
    assert me.headers["Cache-Control"] == "no-store"
    body = me.json()
    assert {**body, "groups": sorted(body["groups"], key=lambda g: g["name"])} == {
        "username": "alice",
        "is_admin": False,
        "groups": sorted(ALICE_GROUPS, key=lambda g: g["name"]),
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
    login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["auth"] == "session"
    csrf = login.json()["csrf_token"]
    assert isinstance(csrf, str)
    assert len(csrf) >= 16
    assert client.get("/api/auth/me").json()["csrf_token"] == csrf


def test_admin_lists_users_with_their_groups_in_joining_order(
    lab: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = lab
    answer = client.get("/api/admin/users", headers=_as(tokens, "root"))
    assert answer.status_code == 200, answer.text
    users = {u["username"]: u for u in answer.json()}
    assert list(users) == ["alice", "bob", "root"]
    assert users["alice"]["groups"] == ALICE_GROUPS
    assert users["bob"]["groups"] == BOB_GROUPS
    assert users["root"]["groups"] == ROOT_GROUPS
    assert users["alice"]["display_name"] == "Alice L"
    # Created and changed users answer with their own groups.
    made = client.post(
        "/api/admin/users", json={"username": "carl", "is_admin": True}, headers=_as(tokens, "root")
    )
    assert made.status_code == 201, made.text
    assert (made.json()["username"], made.json()["is_admin"], made.json()["groups"]) == (
        "carl",
        True,
        [],
    )
    changed = client.patch(
        "/api/admin/users/alice", json={"display_name": "Alice"}, headers=_as(tokens, "root")
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["username"] == "alice"
    assert changed.json()["display_name"] == "Alice"
    assert changed.json()["groups"] == ALICE_GROUPS
    bob = client.patch(
        "/api/admin/users/bob", json={"email": "bob@example.org"}, headers=_as(tokens, "root")
    )
    assert bob.json()["groups"] == BOB_GROUPS


def test_admin_sees_groups_with_members_and_roles(
    lab: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = lab
    root = _as(tokens, "root")
    groups = client.get("/api/admin/groups", headers=root).json()
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["a-lab", "b-lab", "default"]
    assert by_name["a-lab"]["permissions"] == "read-annotate"
    assert by_name["a-lab"]["members"] == [
        {"username": "alice", "role": "member"},
        {"username": "bob", "role": "member"},
    ]
    assert by_name["b-lab"]["members"] == [{"username": "alice", "role": "owner"}]
    assert by_name["a-lab"]["id"] < by_name["b-lab"]["id"]
    made = client.post("/api/admin/groups", json={"name": "c-lab"}, headers=root)
    assert made.status_code == 201, made.text
    assert made.json()["members"] == []
    assert isinstance(made.json()["id"], int)
    assert made.json()["id"] > by_name["b-lab"]["id"]
    put = client.put("/api/admin/groups/c-lab/members/bob", json={"is_owner": True}, headers=root)
    assert put.status_code == 200, put.text
    assert put.json() == {
        "id": made.json()["id"],
        "name": "c-lab",
        "permissions": made.json()["permissions"],
        "members": [{"username": "bob", "role": "owner"}],
    }
    changed = client.patch("/api/admin/groups/c-lab", json={"permissions": "private"}, headers=root)
    assert changed.json()["permissions"] == "private"
    assert changed.json()["members"] == [{"username": "bob", "role": "owner"}]
    removed = client.delete("/api/admin/groups/a-lab/members/bob", headers=root)
    assert removed.status_code == 200, removed.text
    assert removed.json()["members"] == [{"username": "alice", "role": "member"}]


def test_admin_routes_refuse_others(lab: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = lab
    for name in ("alice", "bob"):
        for method, path in (("get", "/api/admin/users"), ("get", "/api/admin/groups")):
            answer = client.request(method, path, headers=_as(tokens, name))
            assert answer.status_code == 403, (name, path, answer.text)
            assert answer.json()["detail"] == "admins only"
    assert client.get("/api/admin/users", headers=_as(tokens, "root")).status_code == 200


def test_without_accounts_login_and_tokens_say_why(tmp_path: Path) -> None:
    with _start(tmp_path) as client:  # ZSTACK_AUTH unset, no token: auth "none"
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
