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
        # Failed logins of a test must not add up to a 429 over repeated runs (mutants).
        client.app.state.login_throttle = None  # type: ignore[attr-defined]


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
        "password_changeable": True,
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


# --- route bodies (helper mut-r2c): login, logout, tokens, admin effects, move ----------------


def _events(client: TestClient, action: str) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    """The audit rows of ``action``: (actor, target, details), oldest first."""
    from zstack_analyzer.service.auth.audit import AuditEvent

    app: Any = client.app
    app.state.audit.flush()
    with app.state.database.sessions() as session:
        rows = session.query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)
        return [
            (row.username, row.target, {k: v for k, v in row.details.items() if k != "via"})
            for row in rows
        ]


def test_login_sets_the_cookie_and_a_failure_says_401_then_429(lab: Lab) -> None:
    client, _, p = lab
    app: Any = client.app
    app.state.login_throttle = None  # a fresh throttle: other tests' failures do not count
    try:
        ok = client.post("/api/auth/login", json={"username": f"{p}alice", "password": PASSWORD})
        assert ok.status_code == 200, ok.text
        assert ok.headers["Cache-Control"] == "no-store"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "path=/" in cookie
        assert f"max-age={12 * 3600}" in cookie
        assert "secure" not in cookie  # plain HTTP, cookie_secure unset
        assert ok.json()["username"] == f"{p}alice"
        assert any(e[0] == f"{p}alice" for e in _events(client, "login"))
        client.cookies.clear()
        bad = client.post("/api/auth/login", json={"username": f"{p}alice", "password": "wrong1"})
        assert bad.status_code == 401
        assert bad.json()["detail"] == "wrong username or password"
        assert bad.headers["WWW-Authenticate"] == "Bearer"
        assert "set-cookie" not in bad.headers
        failed = _events(client, "login_failed")
        assert failed[-1][0] == f"{p}alice"
        limit = app.state.settings.accounts.client_max_failures
        for _ in range(limit - 1):
            body = {"username": f"{p}nobody", "password": "wrong"}
            assert client.post("/api/auth/login", json=body).status_code == 401
        throttled = client.post(
            "/api/auth/login", json={"username": f"{p}alice", "password": PASSWORD}
        )
        assert throttled.status_code == 429
        wait = int(throttled.headers["Retry-After"])
        assert wait >= 1
        assert throttled.json()["detail"] == (
            f"too many failed logins from testclient; try again in {wait} s"
        )
    finally:
        app.state.login_throttle = None


def test_logout_ends_the_session_and_clears_the_cookie(lab: Lab) -> None:
    client, tokens, p = lab
    login = client.post("/api/auth/login", json={"username": f"{p}alice", "password": PASSWORD})
    csrf = login.json()["csrf_token"]
    cookie = client.cookies.get("zstack_session")
    assert cookie
    out = client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204, out.text
    cleared = out.headers["set-cookie"].lower()
    assert 'zstack_session=""' in cleared or "zstack_session=;" in cleared
    assert "max-age=0" in cleared
    assert "path=/" in cleared
    assert any(e[0] == f"{p}alice" for e in _events(client, "logout"))
    # The server forgot the session: the old cookie no longer authenticates.
    client.cookies.clear()
    client.cookies.set("zstack_session", cookie)
    assert client.get("/api/auth/me").status_code == 401
    client.cookies.clear()
    # With a token there is no session to end: 204, no logout event.
    before = len(_events(client, "logout"))
    assert client.post("/api/auth/logout", headers=_as(tokens, "bob")).status_code == 204
    assert len(_events(client, "logout")) == before


def test_own_tokens_listed_created_and_revoked(lab: Lab) -> None:
    client, tokens, p = lab
    bob = _as(tokens, "bob")
    listed = client.get("/api/tokens", headers=bob)
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()] == ["t"]  # only his own, not alice's
    made = client.post("/api/tokens", json={"name": "ci", "read_only": True}, headers=bob)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["name"], body["read_only"]) == ("ci", True)
    secret = body["token"]
    who = client.get("/api/auth/me", headers={"Authorization": f"Bearer {secret}"}).json()
    assert (who["username"], who["read_only"]) == (f"{p}bob", True)
    later = client.post("/api/tokens", json={"name": "later", "expires_days": 3}, headers=bob)
    assert later.json()["expires_at"] is not None
    names = [t["name"] for t in client.get("/api/tokens", headers=bob).json()]
    assert names == ["later", "ci", "t"]  # newest first
    assert (f"{p}bob", None, {"token_id": body["id"]}) in [
        (a, None, d) for a, _, d in _events(client, "token_create")
    ]
    # alice cannot revoke bob's token; bob can, and it stops working at once.
    other = client.delete(f"/api/tokens/{body['id']}", headers=_as(tokens, "alice"))
    assert other.status_code == 404
    gone = client.delete(f"/api/tokens/{body['id']}", headers=bob)
    assert gone.status_code == 204
    assert (
        client.get("/api/auth/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )
    assert any(d == {"token_id": body["id"]} for _, _, d in _events(client, "token_revoke"))


def test_admin_changes_take_effect_at_once_and_are_audited(lab: Lab) -> None:
    client, tokens, p = lab
    root = _as(tokens, "root")
    bob = _as(tokens, "bob")
    assert client.get("/api/auth/me", headers=bob).status_code == 200  # cached now
    # A group's new level shows at once for its members.
    changed = client.patch(
        f"/api/admin/groups/{p}-a", json={"permissions": "read-write"}, headers=root
    )
    assert changed.status_code == 200
    assert (
        client.get("/api/auth/me", headers=bob).json()["groups"][0]["permissions"] == "read-write"
    )
    assert ("root", None, {"group": f"{p}-a", "permissions": "read-write"}) in [
        (a, None, d) for a, _, d in _events(client, "group_update")
    ]
    # A membership added or removed shows at once.
    client.post(
        "/api/admin/groups", json={"name": f"{p}-d", "permissions": "read-write"}, headers=root
    )
    assert ("root", None, {"group": f"{p}-d", "permissions": "read-write"}) in [
        (a, None, d) for a, _, d in _events(client, "group_create")
    ]
    added = client.put(f"/api/admin/groups/{p}-d/members/{p}bob", json={}, headers=root)
    assert added.status_code == 200
    mine = {g["name"] for g in client.get("/api/auth/me", headers=bob).json()["groups"]}
    assert f"{p}-d" in mine
    added_event = {"group": f"{p}-d", "target_user": f"{p}bob", "owner": False}
    assert added_event in [d for _, _, d in _events(client, "membership_add")]
    client.delete(f"/api/admin/groups/{p}-d/members/{p}bob", headers=root)
    mine = {g["name"] for g in client.get("/api/auth/me", headers=bob).json()["groups"]}
    assert f"{p}-d" not in mine
    removed_event = {"group": f"{p}-d", "target_user": f"{p}bob"}
    assert removed_event in [d for _, _, d in _events(client, "membership_remove")]
    # Unknown names: 404; a duplicate group: 409.
    assert (
        client.put(f"/api/admin/groups/{p}-zz/members/{p}bob", json={}, headers=root).status_code
        == 404
    )
    assert (
        client.delete(f"/api/admin/groups/{p}-zz/members/{p}bob", headers=root).status_code == 404
    )
    assert (
        client.patch(
            f"/api/admin/groups/{p}-zz", json={"permissions": "private"}, headers=root
        ).status_code
        == 404
    )
    dup = client.post("/api/admin/groups", json={"name": f"{p}-d"}, headers=root)
    assert dup.status_code == 409
    # Deleting an empty group: 204, then 404.
    deleted = client.delete(f"/api/admin/groups/{p}-d", headers=root)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert ("root", {"group": f"{p}-d"}) in [(a, d) for a, _, d in _events(client, "group_delete")]
    assert client.delete(f"/api/admin/groups/{p}-d", headers=root).status_code == 404
    # Disabling a user: their token stops working at once; the event names what changed.
    off = client.patch(
        f"/api/admin/users/{p}bob",
        json={"is_active": False, "password": "a new long password"},
        headers=root,
    )
    assert off.status_code == 200
    assert off.json()["is_active"] is False
    assert client.get("/api/auth/me", headers=bob).status_code == 401
    update = {"target_user": f"{p}bob", "changed": ["is_active"], "password": True}
    assert update in [d for _, _, d in _events(client, "user_update")]
    assert (
        client.patch(
            f"/api/admin/users/{p}nobody", json={"email": "x@y.org"}, headers=root
        ).status_code
        == 404
    )
    made = {"target_user": f"{p}carl", "admin": False}
    client.post(
        "/api/admin/users", json={"username": f"{p}carl", "password": PASSWORD}, headers=root
    )
    assert made in [d for _, _, d in _events(client, "user_create")]
    assert (
        client.post("/api/admin/users", json={"username": f"{p}carl"}, headers=root).status_code
        == 409
    )


def test_import_roots_added_listed_and_removed(lab: Lab, tmp_path: Path) -> None:
    client, tokens, p = lab
    root = _as(tokens, "root")
    folder = tmp_path / "roots" / "lab"
    folder.mkdir(parents=True)
    added = client.post(
        "/api/admin/import-roots",
        json={"group": f"{p}-a", "path": str(tmp_path / "roots" / "x" / ".." / "lab")},
        headers=root,
    )
    assert added.status_code == 201, added.text
    assert added.json() == {"path": str(folder.resolve()), "group": f"{p}-a"}
    listed = client.get("/api/admin/import-roots", headers=root).json()
    assert {"path": str(folder.resolve()), "group": f"{p}-a"} in listed
    event = {"group": f"{p}-a", "path": str(folder.resolve())}
    assert ("root", event) in [(a, d) for a, _, d in _events(client, "import_root_add")]
    unknown = client.post(
        "/api/admin/import-roots", json={"group": f"{p}-zz", "path": str(folder)}, headers=root
    )
    assert unknown.status_code == 404
    gone = client.delete("/api/admin/import-roots", params={"path": str(folder)}, headers=root)
    assert gone.status_code == 204
    assert gone.content == b""
    removed = [(a, d) for a, _, d in _events(client, "import_root_remove")]
    assert ("root", {"path": str(folder)}) in removed
    listed = client.get("/api/admin/import-roots", headers=root).json()
    assert all(r["path"] != str(folder.resolve()) for r in listed)
    again = client.delete("/api/admin/import-roots", params={"path": str(folder)}, headers=root)
    assert again.status_code == 404


def test_move_needs_the_owner_in_both_groups_or_an_admin(lab: Lab, tmp_path: Path) -> None:
    from tests.service.conftest import write_ome_tiff
    from zstack_analyzer.service.auth import accounts

    client, tokens, p = lab
    root = _as(tokens, "root")
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_group(session, f"{p}-w", "read-write")
        accounts.set_membership(session, f"{p}-w", f"{p}alice")
        accounts.set_membership(session, f"{p}-w", f"{p}bob")
    tiff = write_ome_tiff(tmp_path / "m.ome.tif", (1, 2, 8, 8), seed=uuid.uuid4().int % 1000 + 30)
    with tiff.open("rb") as fh:
        up = client.post(
            "/api/images/upload",
            files={"file": ("m.ome.tif", fh)},
            params={"group": f"{p}-w"},
            headers=_as(tokens, "alice"),
        )
    assert up.status_code == 201, up.text
    image_id = up.json()["id"]
    # bob may change images of the read-write group, but only the owner moves them.
    by_bob = client.patch(
        f"/api/images/{image_id}", json={"group": f"{p}-a"}, headers=_as(tokens, "bob")
    )
    assert by_bob.status_code == 403
    assert (
        by_bob.json()["detail"]
        == "only the image's owner (or an admin) may move it to another group"
    )
    moved = client.patch(
        f"/api/images/{image_id}", json={"group": f"{p}-a"}, headers=_as(tokens, "alice")
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["group"] == f"{p}-a"
    assert moved.json()["owner"] == f"{p}alice"
    assert client.get(f"/api/images/{image_id}", headers=root).json()["group"] == f"{p}-a"
    # Other processes' memos are told: the image's change marker is touched.
    records: Any = client.app.state.records  # type: ignore[attr-defined]
    assert (records.deleted_dir / f"{image_id}.changed").is_file()
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        w_id = accounts.find_group(session, f"{p}-w").id
    moves = [(a, t, d) for a, t, d in _events(client, "move")]
    event = {"image_id": image_id, "from_group": w_id, "group": f"{p}-a"}
    assert (f"{p}alice", image_id, event) in moves
    # Back to -w, then alice leaves -w: she may no longer move it out of there.
    assert (
        client.patch(f"/api/images/{image_id}", json={"group": f"{p}-w"}, headers=root).status_code
        == 200
    )
    client.delete(f"/api/admin/groups/{p}-w/members/{p}alice", headers=root)
    left = client.patch(
        f"/api/images/{image_id}", json={"group": f"{p}-a"}, headers=_as(tokens, "alice")
    )
    assert left.status_code == 403
    assert left.json()["detail"] == "you must belong to the image's current group to move it"
    assert client.get(f"/api/images/{image_id}", headers=root).json()["group"] == f"{p}-w"


def test_login_uses_the_configured_lockout_and_client_limit_and_rotates_the_session(
    lab: Lab,
) -> None:
    """The route builds its policy and throttle from ``settings.accounts`` (not the defaults)."""
    from zstack_analyzer.service.auth.audit import AuditEvent

    client, _, p = lab
    app: Any = client.app
    accounts = app.state.settings.accounts
    saved = (accounts.max_failed_logins, accounts.lockout_minutes, accounts.client_max_failures)
    app.state.login_throttle = None
    try:
        # Two failures lock alice for 15 minutes (the default policy would allow five).
        accounts.max_failed_logins, accounts.client_max_failures = 2, 50
        for _ in range(2):
            body = {"username": f"{p}alice", "password": "wrong"}
            assert client.post("/api/auth/login", json=body).status_code == 401
        right = {"username": f"{p}alice", "password": PASSWORD}
        assert client.post("/api/auth/login", json=right).status_code == 401
        app.state.audit.flush()
        with app.state.database.sessions() as session:
            row = session.query(AuditEvent).filter_by(action="login_failed", username=f"{p}alice")
            assert {r.client for r in row} == {"testclient"}
        # With no lockout time, the lock is over at once.
        from zstack_analyzer.service.auth import accounts as account_rules

        with app.state.database.sessions() as session:
            account_rules.create_user(session, f"{p}dora", password=PASSWORD)
        accounts.lockout_minutes = 0
        for _ in range(2):
            body = {"username": f"{p}dora", "password": "wrong"}
            assert client.post("/api/auth/login", json=body).status_code == 401
        dora = {"username": f"{p}dora", "password": PASSWORD}
        first = client.post("/api/auth/login", json=dora)
        assert first.status_code == 200, first.text
        old = client.cookies.get("zstack_session")
        # A second login from the same browser ends the first session.
        assert client.post("/api/auth/login", json=dora).status_code == 200
        client.cookies.clear()
        client.cookies.set("zstack_session", old)
        assert client.get("/api/auth/me").status_code == 401
        client.cookies.clear()
        # Three failures from one client are the configured limit: then 429.
        app.state.login_throttle = None
        accounts.client_max_failures = 3
        for _ in range(3):
            body = {"username": f"{p}nobody", "password": "wrong"}
            assert client.post("/api/auth/login", json=body).status_code == 401
        assert client.post("/api/auth/login", json=dora).status_code == 429
    finally:
        (accounts.max_failed_logins, accounts.lockout_minutes, accounts.client_max_failures) = saved
        app.state.login_throttle = None


def test_admin_made_and_changed_users_get_every_field(lab: Lab) -> None:
    client, tokens, p = lab
    root = _as(tokens, "root")
    made = client.post(
        "/api/admin/users",
        json={
            "username": f"{p}erin",
            "password": PASSWORD,
            "is_admin": False,
            "display_name": "Erin E",
            "email": "erin@example.org",
        },
        headers=root,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["display_name"], body["email"], body["is_admin"]) == (
        "Erin E",
        "erin@example.org",
        False,
    )
    listed = {u["username"]: u for u in client.get("/api/admin/users", headers=root).json()}
    assert listed[f"{p}erin"]["groups"] == []  # no group: an empty list, not null
    login = {"username": f"{p}erin", "password": PASSWORD}
    assert client.post("/api/auth/login", json=login).status_code == 200
    client.cookies.clear()
    new = "another long enough password"
    changed = client.patch(
        f"/api/admin/users/{p}erin",
        json={
            "password": new,
            "is_admin": True,
            "display_name": "Erin F",
            "email": "f@example.org",
        },
        headers=root,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["display_name"], body["email"], body["is_admin"], body["is_active"]) == (
        "Erin F",
        "f@example.org",
        True,
        True,
    )
    assert client.post("/api/auth/login", json=login).status_code == 401
    again = client.post("/api/auth/login", json={"username": f"{p}erin", "password": new})
    assert again.status_code == 200
    client.cookies.clear()
    # The revoke event names who revoked.
    own = client.post("/api/tokens", json={"name": "r"}, headers=_as(tokens, "bob")).json()
    assert client.delete(f"/api/tokens/{own['id']}", headers=_as(tokens, "bob")).status_code == 204
    revoked = [(a, d) for a, _, d in _events(client, "token_revoke")]
    assert (f"{p}bob", {"token_id": own["id"]}) in revoked


def test_logout_with_a_token_leaves_the_browser_session_alone(lab: Lab) -> None:
    client, tokens, p = lab
    login = client.post("/api/auth/login", json={"username": f"{p}alice", "password": PASSWORD})
    assert login.status_code == 200
    cookie = client.cookies.get("zstack_session")
    # bob's token wins over alice's cookie: bob has no session to end; alice's stays.
    out = client.post("/api/auth/logout", headers=_as(tokens, "bob"))
    assert out.status_code == 204
    client.cookies.clear()  # the answer told the browser to drop it; the server kept it
    client.cookies.set("zstack_session", cookie)
    assert client.get("/api/auth/me").json()["username"] == f"{p}alice"
    csrf = login.json()["csrf_token"]
    ended = client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    cleared = ended.headers["set-cookie"]
    assert "HttpOnly" in cleared
    assert "SameSite=lax" in cleared
    assert "Path=/" in cleared


@pytest.mark.parametrize(
    ("base", "setting", "secure"),
    [
        ("https://testserver", None, True),  # unset: Secure when served over HTTPS
        ("http://testserver", None, False),
        ("http://testserver", True, True),  # behind a TLS proxy that speaks HTTP to us
        ("https://testserver", False, False),
    ],
)
def test_the_session_cookie_is_secure_over_https_or_when_configured(
    lab: Lab, base: str, setting: bool | None, secure: bool
) -> None:
    """The Secure flag follows ``cookie_secure``, or the request's scheme when it is unset.

    Why: a session cookie without Secure goes out over plain HTTP too; no other test logged
    in over HTTPS or set ``cookie_secure``, so a login that dropped the flag passed.
    """
    client, _, p = lab
    accounts = client.app.state.settings.accounts  # type: ignore[attr-defined]
    before = accounts.cookie_secure
    accounts.cookie_secure = setting
    try:
        ok = client.post(
            f"{base}/api/auth/login", json={"username": f"{p}alice", "password": PASSWORD}
        )
        assert ok.status_code == 200, ok.text
        attributes = [a.strip().lower() for a in ok.headers["set-cookie"].split(";")]
        assert ("secure" in attributes) is secure, attributes
        assert "httponly" in attributes
    finally:
        accounts.cookie_secure = before


# --- login's throttle window (helper mut-imgs, eighth round) -----------------------------------


def test_the_client_throttle_uses_the_configured_window(lab: Lab) -> None:
    """A throttled client is told to wait at most ``client_window_seconds``, not the default.

    Why: the throttle the route builds took the configured failure count but no test set
    the window, so a throttle built with ``ClientThrottle``'s own 300 s window passed.
    """
    client, _, p = lab
    app: Any = client.app
    accounts = app.state.settings.accounts
    saved = (accounts.client_max_failures, accounts.client_window_seconds)
    app.state.login_throttle = None
    try:
        accounts.client_max_failures, accounts.client_window_seconds = 2, 40.0
        for _ in range(2):
            body = {"username": f"{p}nobody", "password": "wrong"}
            assert client.post("/api/auth/login", json=body).status_code == 401
        right = {"username": f"{p}alice", "password": PASSWORD}
        throttled = client.post("/api/auth/login", json=right)
        assert throttled.status_code == 429
        # The first failure is at most 40 s old: the wait is within the configured window.
        assert 1 <= int(throttled.headers["Retry-After"]) <= 41
    finally:
        accounts.client_max_failures, accounts.client_window_seconds = saved
        app.state.login_throttle = None
