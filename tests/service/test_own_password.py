"""``POST /api/auth/password``: every user changes their own password, over HTTP, on a real database.

What OMERO's web client lets every user do, with what a stolen session must not
get: the current password is checked like a login and a wrong one counts toward
the account's lockout and the client's throttle; only a session (not an API
token) may change it; the new password follows the admin routes' rule; a
directory account is refused (``test_ldap.py``, against a real slapd). The
change ends the user's other sessions and keeps the one making it, under a new
id, and the user's own tokens (``accounts.update_user``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from tests.service.authworld import FAST_PASSWORDS
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth.models import User
from zstack_analyzer.service.auth.principal import COOKIE_NAME, CSRF_HEADER

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

PASSWORD = "the first long password"  # noqa: S105  (a test account's)
NEW_PASSWORD = "a second, even longer password"  # noqa: S105
PROBLEM = "application/problem+json"


def _lab(
    settings: Settings, make_client: Callable[..., TestClient], **limits: Any
) -> tuple[TestClient, dict[str, str]]:
    """Users mode: alice and bob (local), root (admin); tokens of alice and root."""
    accounts_settings = settings.accounts.model_copy(
        update={"max_failed_logins": 3, "client_max_failures": 20, **FAST_PASSWORDS, **limits}
    )
    client = make_client(
        settings.model_copy(update={"auth": "users", "accounts": accounts_settings})
    )
    with client.app.state.database.sessions() as session:
        accounts.create_user(session, "root", password=PASSWORD, admin=True)
        accounts.create_group(session, "lab", "read-write")
        for name in ("alice", "bob"):
            accounts.create_user(session, name, password=PASSWORD)
            accounts.set_membership(session, "lab", name)
        tokens = {name: accounts.create_token(session, name)[1] for name in ("alice", "root")}
        tokens["alice/read-only"] = accounts.create_token(session, "alice", read_only=True)[1]
    return client, tokens


@pytest.fixture
def lab(settings: Settings, make_client: Callable[..., TestClient]) -> TestClient:
    return _lab(settings, make_client)[0]


def _login(client: TestClient, username: str, password: str) -> Any:
    client.cookies.clear()
    answer = client.post("/api/auth/login", json={"username": username, "password": password})
    client.cookies.clear()
    return answer


def _session(client: TestClient, username: str = "alice") -> tuple[str, str]:
    """A new session of ``username``: (cookie, CSRF token)."""
    answer = _login(client, username, PASSWORD)
    assert answer.status_code == 200, answer.text
    return answer.cookies[COOKIE_NAME], answer.json()["csrf_token"]


def _change(
    client: TestClient,
    cookie: str | None,
    csrf: str | None,
    current: str = PASSWORD,
    new: str = NEW_PASSWORD,
    headers: dict[str, str] | None = None,
) -> Any:
    client.cookies.clear()
    if cookie:
        client.cookies.set(COOKIE_NAME, cookie)
    sent = dict(headers or {})
    if csrf:
        sent[CSRF_HEADER] = csrf
    answer = client.post(
        "/api/auth/password",
        json={"current_password": current, "new_password": new},
        headers=sent,
    )
    client.cookies.clear()
    return answer


def _me(client: TestClient, cookie: str | None = None, token: str | None = None) -> int:
    client.cookies.clear()
    if cookie:
        client.cookies.set(COOKIE_NAME, cookie)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status = client.get("/api/auth/me", headers=headers).status_code
    client.cookies.clear()
    return status


def _user(client: TestClient, username: str = "alice") -> tuple[str | None, int, Any]:
    """(password hash, failed logins, locked until) as stored."""
    with client.app.state.database.sessions() as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        return user.password_hash, user.failed_logins, user.locked_until


def _audit(client: TestClient, token: str, action: str) -> list[dict[str, Any]]:
    answer = client.get(
        "/api/audit", params={"action": action}, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["data"]
    return events


def test_own_change_keeps_this_session_renewed_ends_the_others_and_keeps_tokens(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client, tokens = _lab(settings, make_client)
    mine, csrf = _session(client)
    other, _ = _session(client)
    bobs, _ = _session(client, "bob")
    changed = _change(client, mine, csrf)
    assert changed.status_code == 200, changed.text
    assert changed.json()["username"] == "alice"
    assert changed.json()["csrf_token"] == csrf
    assert changed.headers["Cache-Control"] == "no-store"
    renewed = changed.cookies[COOKIE_NAME]
    assert renewed not in (mine, other)
    assert "HttpOnly" in changed.headers["set-cookie"]
    # The other session and any copy of the old cookie are over; this one goes on.
    assert _me(client, other) == 401
    assert _me(client, mine) == 401
    assert _me(client, renewed) == 200
    assert _me(client, bobs) == 200  # nobody else's
    assert _me(client, token=tokens["alice"]) == 200  # her own tokens stay
    # The renewed session keeps working for changes (same CSRF token).
    client.cookies.set(COOKIE_NAME, renewed)
    made = client.post("/api/tokens", json={"name": "after"}, headers={CSRF_HEADER: csrf})
    client.cookies.clear()
    assert made.status_code == 201, made.text
    # The old password no longer logs in; the new one does.
    assert _login(client, "alice", PASSWORD).status_code == 401
    assert _login(client, "alice", NEW_PASSWORD).status_code == 200
    stored, _, _ = _user(client)
    assert stored is not None and stored.startswith("$argon2id$")
    assert NEW_PASSWORD not in changed.text
    (event,) = _audit(client, tokens["root"], "password_change")
    assert event["username"] == "alice"
    assert event["details"]["via"] == "session"
    assert NEW_PASSWORD not in str(event) and PASSWORD not in str(event)


def test_a_wrong_current_password_is_refused_and_counts_toward_the_lockout(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client, tokens = _lab(settings, make_client)
    cookie, csrf = _session(client)
    before, _, _ = _user(client)
    wrong = _change(client, cookie, csrf, current="not my password")
    assert wrong.status_code == 403, wrong.text
    assert wrong.headers["content-type"].startswith(PROBLEM)
    assert wrong.json()["code"] == "forbidden"
    assert "current password is wrong" in wrong.json()["detail"]
    assert COOKIE_NAME not in wrong.cookies
    assert _user(client)[:2] == (before, 1)  # counted like a failed login
    assert _me(client, cookie) == 200  # the session is not ended by a typo
    # A failed login and a failed change add up: the third failure locks the account.
    assert _login(client, "alice", "another wrong one").status_code == 401
    assert _change(client, cookie, csrf, current="still wrong").status_code == 403
    hashed, failures, locked_until = _user(client)
    assert hashed == before
    assert locked_until is not None and failures == 0
    # Locked: even the right current password is refused now (429), and so is a login.
    locked = _change(client, cookie, csrf)
    assert locked.status_code == 429, locked.text
    assert int(locked.headers["Retry-After"]) > 0
    assert "locked" in locked.json()["detail"]
    assert _login(client, "alice", PASSWORD).status_code == 401
    assert _user(client)[0] == before
    failed = _audit(client, tokens["root"], "password_change_failed")
    assert [e["username"] for e in failed] == ["alice", "alice"]


def test_wrong_current_passwords_count_toward_the_clients_login_throttle(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client, _ = _lab(settings, make_client, max_failed_logins=50, client_max_failures=2)
    cookie, csrf = _session(client)
    for _ in range(2):
        assert _change(client, cookie, csrf, current="wrong").status_code == 403
    throttled = _change(client, cookie, csrf)
    assert throttled.status_code == 429, throttled.text
    assert "Retry-After" in throttled.headers
    # The same address may not try logins either.
    assert _login(client, "bob", PASSWORD).status_code == 429


@pytest.mark.parametrize("new", ["short", "x" * 1025], ids=["too-short", "too-long"])
def test_a_weak_new_password_is_refused_without_checking_or_changing(
    lab: TestClient, new: str
) -> None:
    cookie, csrf = _session(lab)
    before = _user(lab)
    refused = _change(lab, cookie, csrf, new=new)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert "new_password" in refused.json()["detail"]
    assert _user(lab) == before
    assert _login(lab, "alice", PASSWORD).status_code == 200


def test_without_a_session_or_its_csrf_token_or_with_a_token_nothing_changes(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client, tokens = _lab(settings, make_client)
    cookie, _ = _session(client)
    before = _user(client)
    anonymous = _change(client, None, None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["content-type"].startswith(PROBLEM)
    no_csrf = _change(client, cookie, None)
    assert no_csrf.status_code == 403
    assert CSRF_HEADER in no_csrf.json()["detail"]
    for token in (tokens["alice"], tokens["alice/read-only"]):
        by_token = _change(client, None, None, headers={"Authorization": f"Bearer {token}"})
        assert by_token.status_code == 403, by_token.text
    assert "token" in by_token.json()["detail"]
    assert _user(client) == before
    assert _me(client, cookie) == 200
    assert _login(client, "alice", PASSWORD).status_code == 200


def test_without_accounts_there_is_no_password_to_change(client: TestClient) -> None:
    answer = client.post(
        "/api/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert answer.status_code == 409, answer.text
    assert "ZSTACK_AUTH=users" in answer.json()["detail"]
