"""Credentials of ``ZSTACK_AUTH=users``: sessions, CSRF, logout, tokens, disabled users, brute force."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

from tests.service.authworld import FAST_PASSWORDS
from tests.service.conftest import upload
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth.models import ApiToken, User, UserSession
from zstack_analyzer.service.auth.principal import COOKIE_NAME, CSRF_HEADER
from zstack_analyzer.service.auth.tokens import hash_secret

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PASSWORD = "a long enough password"  # noqa: S105  (a test account's)


@pytest.fixture
def lab(settings: Settings, make_client: Callable[..., TestClient]) -> TestClient:
    """A users-mode server with alice (member of 'lab') and an admin; low lockout thresholds."""
    accounts_settings = settings.accounts.model_copy(
        update={
            "max_failed_logins": 3,
            "client_max_failures": 6,
            "cache_seconds": 5.0,
            **FAST_PASSWORDS,
        }
    )
    client = make_client(
        settings.model_copy(update={"auth": "users", "accounts": accounts_settings})
    )
    with client.app.state.database.sessions() as session:
        accounts.create_user(session, "root", password=PASSWORD, admin=True)
        accounts.create_group(session, "lab", "read-write")
        accounts.create_user(session, "alice", password=PASSWORD)
        accounts.set_membership(session, "lab", "alice")
    return client


def _login(client: TestClient, username: str = "alice", password: str = PASSWORD) -> Any:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def _db(client: TestClient) -> Any:
    return client.app.state.database.sessions()


def test_login_sets_a_safe_cookie_and_me_answers(lab: TestClient) -> None:
    answer = _login(lab)
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert f"{COOKIE_NAME}=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # plain http here; https sets it (next test)
    body = answer.json()
    assert body["username"] == "alice"
    assert body["groups"] == [{"name": "lab", "permissions": "read-write", "role": "member"}]
    assert len(body["csrf_token"]) >= 32
    me = lab.get("/api/auth/me").json()
    assert me["csrf_token"] == body["csrf_token"]
    assert me["auth"] == "session"
    # The password is never stored or answered in clear.
    with _db(lab) as session:
        stored = session.scalars(select(User.password_hash).where(User.username == "alice")).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in answer.text


def test_cookie_is_secure_over_https(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(
        settings.model_copy(update={"auth": "users"}), base_url="https://testserver"
    )
    with client.app.state.database.sessions() as session:
        accounts.create_user(session, "alice", password=PASSWORD)
    answer = _login(client)
    assert answer.status_code == 200
    assert "Secure" in answer.headers["set-cookie"]


def test_session_fixation_new_id_at_login(lab: TestClient) -> None:
    """A cookie planted before login is never promoted: login issues a new id and ends the old one."""
    first = _login(lab)
    old = first.cookies[COOKIE_NAME]
    second = _login(lab)
    new = second.cookies[COOKIE_NAME]
    assert new != old
    with _db(lab) as session:
        hashes = set(session.scalars(select(UserSession.id_hash)))
    assert hash_secret(old) not in hashes and hash_secret(new) in hashes
    # A made-up cookie is nobody, and logging in with it planted gives a fresh id.
    lab.cookies.clear()
    planted = {"Cookie": f"{COOKIE_NAME}=attacker-chosen-id"}
    assert lab.get("/api/auth/me", headers=planted).status_code == 401
    third = lab.post(
        "/api/auth/login", json={"username": "alice", "password": PASSWORD}, headers=planted
    )
    assert third.cookies[COOKIE_NAME] not in {"attacker-chosen-id", old, new}
    with _db(lab) as session:
        assert session.get(UserSession, hash_secret("attacker-chosen-id")) is None


def test_csrf_needed_on_every_state_changing_cookie_request(
    lab: TestClient, tiff_file: Path
) -> None:
    csrf = _login(lab).json()["csrf_token"]
    # Reading needs no CSRF header.
    assert lab.get("/api/images/").status_code == 200
    # Writing without it, or with a wrong one: 403, nothing done.
    assert upload(lab, tiff_file).status_code == 403
    assert upload(lab, tiff_file, headers={CSRF_HEADER: "x" * 43}).status_code == 403
    assert lab.post("/api/tokens", json={"name": "n"}).status_code == 403
    assert lab.post("/api/auth/logout").status_code == 403
    assert lab.get("/api/images/").json()["count"] == 0
    created = upload(lab, tiff_file, headers={CSRF_HEADER: csrf})
    assert created.status_code == 201
    image_id = created.json()["id"]
    assert lab.delete(f"/api/images/{image_id}").status_code == 403
    assert lab.delete(f"/api/images/{image_id}", headers={CSRF_HEADER: csrf}).status_code == 204
    # A bearer token needs no CSRF header (a cross-site page cannot send one).
    with _db(lab) as session:
        token = accounts.create_token(session, "alice")[1]
    lab.cookies.clear()
    assert upload(lab, tiff_file, headers={"Authorization": f"Bearer {token}"}).status_code == 201


def test_logout_ends_the_session_server_side(lab: TestClient) -> None:
    answer = _login(lab)
    cookie, csrf = answer.cookies[COOKIE_NAME], answer.json()["csrf_token"]
    assert lab.post("/api/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    with _db(lab) as session:
        assert (
            session.scalar(
                select(UserSession.id_hash).where(UserSession.id_hash == hash_secret(cookie))
            )
            is None
        )
    # The old cookie, replayed, is worth nothing (even though this process cached it).
    lab.cookies.clear()
    lab.cookies.set(COOKIE_NAME, cookie)
    assert lab.get("/api/auth/me").status_code == 401


def test_expired_session_and_tokens(lab: TestClient) -> None:
    cookie = _login(lab).cookies[COOKIE_NAME]
    assert lab.get("/api/auth/me").status_code == 200  # resolved and cached
    with _db(lab) as session:
        _, expired = accounts.create_token(session, "alice", name="old", expires_days=1)
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hash_secret(expired))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.execute(
            update(UserSession)
            .where(UserSession.id_hash == hash_secret(cookie))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    lab.app.state.principal_cache.clear()  # as if cache_seconds had passed
    assert lab.get("/api/auth/me").status_code == 401
    lab.cookies.clear()
    answer = lab.get("/api/images/", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_revoked_token_stops_at_once_and_last_use_is_recorded(lab: TestClient) -> None:
    with _db(lab) as session:
        row, token = accounts.create_token(session, "alice", name="script")
    bearer = {"Authorization": f"Bearer {token}"}
    assert lab.get("/api/images/", headers=bearer).status_code == 200
    listed = lab.get("/api/tokens", headers=bearer).json()
    assert [t["name"] for t in listed] == ["script"]
    assert listed[0]["last_used_at"] is not None
    assert "token" not in listed[0] and token not in str(listed)
    with _db(lab) as session:
        stored = session.scalars(select(ApiToken.token_hash).where(ApiToken.id == row.id)).one()
    assert stored == hash_secret(token) and token not in stored
    assert lab.delete(f"/api/tokens/{row.id}", headers=bearer).status_code == 204
    # Revoked through this process: refused at once, cache or not.
    assert lab.get("/api/images/", headers=bearer).status_code == 401


def test_tokens_created_over_http_are_shown_once(lab: TestClient) -> None:
    with _db(lab) as session:
        token = accounts.create_token(session, "alice")[1]
    bearer = {"Authorization": f"Bearer {token}"}
    made = lab.post(
        "/api/tokens", json={"name": "ro", "read_only": True, "expires_days": 7}, headers=bearer
    )
    assert made.status_code == 201
    secret = made.json()["token"]
    assert secret.startswith("zst_")
    assert all("token" not in t for t in lab.get("/api/tokens", headers=bearer).json())
    ro = {"Authorization": f"Bearer {secret}"}
    assert lab.get("/api/auth/me", headers=ro).json()["read_only"] is True
    assert lab.post("/api/tokens", json={}, headers=ro).status_code == 403


def test_disabled_user_is_locked_out_everywhere(lab: TestClient) -> None:
    _login(lab)
    with _db(lab) as session:
        token = accounts.create_token(session, "alice")[1]
    root = _login(lab, "root")
    csrf = root.json()["csrf_token"]
    answer = lab.patch(
        "/api/admin/users/alice", json={"is_active": False}, headers={CSRF_HEADER: csrf}
    )
    assert answer.status_code == 200 and answer.json()["is_active"] is False
    lab.cookies.clear()
    assert lab.get("/api/images/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # A disabled account answers exactly like a wrong password.
    disabled = _login(lab)
    wrong = _login(lab, "alice", "not the password")
    unknown = _login(lab, "nobody", PASSWORD)
    assert disabled.status_code == wrong.status_code == unknown.status_code == 401
    assert disabled.json()["detail"] == wrong.json()["detail"] == unknown.json()["detail"]


def test_disabling_a_user_revokes_their_tokens_for_good(lab: TestClient) -> None:
    """A leaver's old token stays dead after the account is enabled again; new ones work."""
    with _db(lab) as session:
        row, token = accounts.create_token(session, "alice", name="laptop")
        old_id = row.id
    old = {"Authorization": f"Bearer {token}"}
    assert lab.get("/api/auth/me", headers=old).status_code == 200
    csrf = {CSRF_HEADER: _login(lab, "root").json()["csrf_token"]}
    for active in (False, True):
        answer = lab.patch("/api/admin/users/alice", json={"is_active": active}, headers=csrf)
        assert answer.status_code == 200, answer.text
        assert answer.json()["is_active"] is active
    # The trail says who revoked which token of whom.
    trail = lab.get("/api/audit", params={"action": "token_revoke"}).json()["data"]
    assert [(e["username"], e["target"], e["details"]["target_user"]) for e in trail] == [
        ("root", str(old_id), "alice")
    ]
    lab.cookies.clear()
    answer = lab.get("/api/auth/me", headers=old)
    assert answer.status_code == 401
    assert answer.json()["detail"] == "invalid, expired or revoked token"
    with _db(lab) as session:
        assert session.get(ApiToken, old_id).revoked_at is not None
    # Enabled again, alice logs in and makes a new token, which works.
    alice = {CSRF_HEADER: _login(lab).json()["csrf_token"]}
    made = lab.post("/api/tokens", json={"name": "new laptop"}, headers=alice)
    assert made.status_code == 201, made.text
    lab.cookies.clear()
    new = {"Authorization": f"Bearer {made.json()['token']}"}
    assert lab.get("/api/auth/me", headers=new).json()["username"] == "alice"
    assert lab.get("/api/auth/me", headers=old).status_code == 401


def test_brute_force_locks_the_account_silently(lab: TestClient) -> None:
    """After 3 failures the right password also fails (same answer) until the lock ends."""
    for _ in range(3):
        assert _login(lab, "alice", "guess").status_code == 401
    locked = _login(lab)
    assert locked.status_code == 401
    assert locked.json()["detail"] == _login(lab, "alice", "guess").json()["detail"]
    with _db(lab) as session:
        session.execute(update(User).where(User.username == "alice").values(locked_until=None))
        session.commit()
    assert _login(lab).status_code == 200


def test_brute_force_from_one_address_is_throttled(lab: TestClient) -> None:
    """Spread over many accounts, one client still gets 429 with Retry-After."""
    statuses = [_login(lab, f"user{i}", "guess").status_code for i in range(6)]
    assert statuses == [401] * 6
    throttled = _login(lab)  # even the right password: the address is throttled
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0


def test_none_and_token_modes_unchanged(
    settings: Settings, make_client: Callable[..., TestClient], tiff_file: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        open_client = make_client(settings)
    assert open_client.get("/api/auth/me").json()["is_admin"] is True
    assert upload(open_client, tiff_file).status_code == 201
    assert (
        open_client.post("/api/auth/login", json={"username": "a", "password": "b"}).status_code
        == 409
    )
    token_client = make_client(
        settings.model_copy(
            update={"api_token": "tok", "auth": "token", "data_dir": settings.data_dir / "t"}
        )
    )
    assert token_client.get("/api/images/").status_code == 401
    assert (
        token_client.get("/api/images/", headers={"Authorization": "Bearer tok"}).status_code == 200
    )
