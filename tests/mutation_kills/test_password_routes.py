"""New passwords over HTTP (``service/routes/accounts.py``): which sessions and tokens survive.

Why: a new password ends sessions and revokes tokens, and which ones depends on who
sets it and how they are logged in. An admin resetting someone else's password
presumes that account compromised (every session ends, every token is revoked); an
admin setting their own password keeps their tokens and, in a session, that session
under a new cookie whose lifetime is the session's remaining one; a PATCH without a
password renews nothing. One users-mode app on a copy of the migrated SQLite
database (``test_accounts_routes.server``), fresh names per test.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.test_accounts_routes import PASSWORD, server  # noqa: F401  (fixture)
from zstack_analyzer.service.auth.principal import COOKIE_NAME, CSRF_HEADER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi.testclient import TestClient

NEW = "a brand new long password"


class People:
    """adm (an admin) and eve, each with a password and a token, under a fresh prefix."""

    def __init__(self, client: TestClient) -> None:
        from zstack_analyzer.service.auth import accounts

        self.client = client
        self.p = "w" + uuid.uuid4().hex[:8]
        self.tokens: dict[str, str] = {}
        with client.app.state.database.sessions() as session:
            for name, admin in (("adm", True), ("eve", False)):
                accounts.create_user(session, self.p + name, password=PASSWORD, admin=admin)
                self.tokens[name] = accounts.create_token(session, self.p + name)[1]

    def login(self, name: str) -> tuple[str, str]:
        """A new session: (cookie, CSRF token)."""
        self.client.cookies.clear()
        answer = self.client.post(
            "/api/auth/login", json={"username": self.p + name, "password": PASSWORD}
        )
        self.client.cookies.clear()
        assert answer.status_code == 200, answer.text
        return answer.cookies[COOKIE_NAME], answer.json()["csrf_token"]

    def me(self, *, cookie: str | None = None, token: str | None = None) -> int:
        self.client.cookies.clear()
        if cookie:
            self.client.cookies.set(COOKIE_NAME, cookie)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status = self.client.get("/api/auth/me", headers=headers).status_code
        self.client.cookies.clear()
        return int(status)

    def patch(
        self,
        name: str,
        body: dict[str, Any],
        *,
        cookie: str | None = None,
        csrf: str = "",
        token: str | None = None,
    ) -> Any:
        self.client.cookies.clear()
        headers = {"Authorization": f"Bearer {token}"} if token else {CSRF_HEADER: csrf}
        if cookie:
            self.client.cookies.set(COOKIE_NAME, cookie)
        answer = self.client.patch(f"/api/admin/users/{self.p}{name}", json=body, headers=headers)
        self.client.cookies.clear()
        return answer


@pytest.fixture
def people(server: tuple[TestClient, str]) -> Iterator[People]:  # noqa: F811
    client = server[0]
    try:
        yield People(client)
    finally:
        client.cookies.clear()
        client.app.state.login_throttle = None  # type: ignore[attr-defined]


def _max_age(answer: Any) -> int:
    found = re.search(r"Max-Age=(\d+)", answer.headers["set-cookie"])
    assert found is not None, answer.headers["set-cookie"]
    return int(found.group(1))


def test_an_admins_reset_of_another_ends_their_sessions_and_revokes_their_tokens(
    people: People,
) -> None:
    mine, csrf = people.login("adm")
    eves, _ = people.login("eve")
    reset = people.patch("eve", {"password": NEW}, cookie=mine, csrf=csrf)
    assert reset.status_code == 200, reset.text
    assert "set-cookie" not in reset.headers  # the admin's own session is not renewed
    assert people.me(cookie=eves) == 401
    assert people.me(token=people.tokens["eve"]) == 401
    # The admin's session, cookie and tokens are untouched.
    assert people.me(cookie=mine) == 200
    assert people.me(token=people.tokens["adm"]) == 200


def test_an_admin_setting_their_own_password_in_a_session_keeps_it_renewed(
    people: People,
    server: tuple[TestClient, str],  # noqa: F811
) -> None:
    mine, csrf = people.login("adm")
    other, _ = people.login("adm")
    changed = people.patch("adm", {"password": NEW}, cookie=mine, csrf=csrf)
    assert changed.status_code == 200, changed.text
    renewed = changed.cookies[COOKIE_NAME]
    assert renewed not in (mine, other)
    assert changed.headers["Cache-Control"] == "no-store"
    hours = server[0].app.state.settings.accounts.session_hours
    # The new cookie lives as long as the session has left (started a moment ago).
    assert hours * 3600 - 600 <= _max_age(changed) <= hours * 3600
    assert people.me(cookie=renewed) == 200
    assert people.me(cookie=mine) == 401
    assert people.me(cookie=other) == 401
    assert people.me(token=people.tokens["adm"]) == 200  # one's own tokens stay


def test_an_admin_setting_their_own_password_with_a_token_keeps_tokens_ends_sessions(
    people: People,
) -> None:
    mine, _ = people.login("adm")
    changed = people.patch("adm", {"password": NEW}, token=people.tokens["adm"])
    assert changed.status_code == 200, changed.text
    assert "set-cookie" not in changed.headers
    assert people.me(cookie=mine) == 401  # no session made the change: all end
    assert people.me(token=people.tokens["adm"]) == 200


def test_a_patch_without_a_password_renews_and_ends_nothing(people: People) -> None:
    mine, csrf = people.login("adm")
    eves, _ = people.login("eve")
    own = people.patch("adm", {"display_name": "Adm"}, cookie=mine, csrf=csrf)
    assert own.status_code == 200, own.text
    assert "set-cookie" not in own.headers
    other = people.patch("eve", {"display_name": "Eve"}, cookie=mine, csrf=csrf)
    assert other.status_code == 200, other.text
    assert people.me(cookie=mine) == 200
    assert people.me(cookie=eves) == 200
    assert people.me(token=people.tokens["eve"]) == 200


def test_ones_own_change_gives_the_cookie_the_sessions_remaining_lifetime(
    people: People,
    server: tuple[TestClient, str],  # noqa: F811
) -> None:
    cookie, csrf = people.login("eve")
    people.client.cookies.set(COOKIE_NAME, cookie)
    changed = people.client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW},
        headers={CSRF_HEADER: csrf},
    )
    people.client.cookies.clear()
    assert changed.status_code == 200, changed.text
    hours = server[0].app.state.settings.accounts.session_hours
    assert hours * 3600 - 600 <= _max_age(changed) <= hours * 3600
    assert "Secure" not in changed.headers["set-cookie"]  # plain HTTP, cookie_secure unset
    assert "samesite=lax" in changed.headers["set-cookie"].lower()
    assert "Path=/" in changed.headers["set-cookie"]


def test_a_token_cannot_change_the_password_even_beside_a_session_cookie(people: People) -> None:
    """The 403 says how to do it instead; a session cookie sent along does not help a token."""
    cookie, csrf = people.login("eve")
    people.client.cookies.set(COOKIE_NAME, cookie)
    refused = people.client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW},
        headers={"Authorization": f"Bearer {people.tokens['eve']}", CSRF_HEADER: csrf},
    )
    people.client.cookies.clear()
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == (
        "change your password in a logged-in session (the viewer, or POST /api/auth/login); "
        "an API token cannot change it"
    )
    assert (
        people.client.post(
            "/api/auth/login", json={"username": people.p + "eve", "password": PASSWORD}
        ).status_code
        == 200
    )  # unchanged
    people.client.cookies.clear()


def test_a_throttled_password_change_says_what_was_throttled(
    people: People,
    server: tuple[TestClient, str],  # noqa: F811
) -> None:
    from zstack_analyzer.service.auth.login import ClientThrottle

    cookie, csrf = people.login("eve")
    app: Any = server[0].app
    app.state.login_throttle = ClientThrottle(max_failures=1, window_s=3600)
    people.client.cookies.set(COOKIE_NAME, cookie)
    for expected in (403, 429):
        answer = people.client.post(
            "/api/auth/password",
            json={"current_password": "not it at all", "new_password": NEW},
            headers={CSRF_HEADER: csrf},
        )
        assert answer.status_code == expected, answer.text
    people.client.cookies.clear()
    assert answer.json()["detail"].startswith("too many failed password attempts from ")
