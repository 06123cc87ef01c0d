"""A login whose user name holds a NUL is a bad request (422), on both engines.

Found by schemathesis (private-member case, PostgreSQL): the name went into the
``users`` lookup, and PostgreSQL refuses a NUL in any text parameter, so the
login answered 500. No account can have such a name (local names follow the
account pattern; directory names come from LDAP strings, which hold no NUL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.service.authworld import FAST_PASSWORDS
from zstack_analyzer.service.auth import accounts

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

PASSWORD = "a long enough password"  # noqa: S105  (a test account's)


def test_a_user_name_with_nul_is_refused_as_a_bad_request(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(
        settings.model_copy(
            update={
                "auth": "users",
                "accounts": settings.accounts.model_copy(update=FAST_PASSWORDS),
            }
        )
    )
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_user(session, "alice", password=PASSWORD)
    for name in ("\x00", "ali\x00ce", "alice\x00"):
        answer = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert answer.status_code == 422, (name, answer.text)
    # The account itself is untouched: no failure counted, the right name still logs in.
    ok = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 200, ok.text
