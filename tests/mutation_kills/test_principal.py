"""Who is calling (``service/auth/principal.py``) on a small app over a real migrated SQLite database.

Why a small app: the answer depends only on the settings' auth mode, the request's
method, bearer token, cookie and CSRF header, and the account rows; a route that
echoes the resolved principal shows every field exactly, without starting the whole
service (storage, workers) for each mutant. Accounts, tokens and sessions are made
with the project's own functions (``accounts.py``, ``sessions.py``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import Depends, FastAPI, Request
from sqlalchemy import select, update

from tests.mutation_kills.service_db import _template
from tests.service.conftest import _testclient_class
from tests.service.live import make_settings
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth import principal as principal_module
from zstack_analyzer.service.auth.models import ApiToken, Group, User, UserSession
from zstack_analyzer.service.auth.permissions import Principal
from zstack_analyzer.service.auth.principal import (
    COOKIE_NAME,
    CSRF_HEADER,
    PrincipalCache,
    PrincipalDep,
    principal_cache,
    require_principal,
    token_unless_users,
)
from zstack_analyzer.service.auth.sessions import start_session
from zstack_analyzer.service.auth.tokens import hash_secret
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
WRITES = ["POST", "PUT", "PATCH", "DELETE"]

NO_TOKEN = "missing or invalid bearer token (send 'Authorization: Bearer <token>')"  # noqa: S105
BAD_TOKEN = "invalid, expired or revoked token"  # noqa: S105
LOG_IN = "log in (POST /api/auth/login) or send 'Authorization: Bearer <token>'"
BAD_CSRF = f"missing or wrong {CSRF_HEADER} header (GET /api/auth/me gives it)"
READ_ONLY = "this token is read-only"


def _app(settings: Any, database: Database) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    app.state.database = database

    @app.api_route("/who", methods=ALL_METHODS)
    async def who(principal: PrincipalDep) -> dict[str, Any]:
        return {
            "user_id": principal.user_id,
            "username": principal.username,
            "is_admin": principal.is_admin,
            "via": principal.via,
            "read_only": principal.read_only,
            "csrf_token": principal.csrf_token,
            "token_id": principal.token_id,
            "groups": {
                str(k): [r.name, r.level.value, r.is_owner] for k, r in principal.groups.items()
            },
        }

    @app.post("/login", dependencies=[Depends(token_unless_users)])
    async def login() -> dict[str, bool]:
        return {"open": True}

    @app.get("/guarded", dependencies=[Depends(require_principal)])
    async def guarded() -> dict[str, bool]:
        return {"in": True}

    @app.get("/forget")
    async def forget(request: Request) -> dict[str, bool]:
        principal_cache(request).clear()
        return {"forgotten": True}

    return app


@dataclass
class Lab:
    """The database (alice, a lab owner; bob, disabled; root, an admin) and a client factory."""

    database: Database
    tmp: Path
    secrets: dict[str, str]
    ids: dict[str, int]
    csrf: str
    clients: list[TestClient]

    def client(
        self, auth: str | None = "users", cache_seconds: float = 0.0, **kw: Any
    ) -> TestClient:
        """A started client of the small app in ``auth`` mode."""
        # auth by model_copy (unvalidated, as the tests' settings): token mode without a
        # token is refused by validation, but get_principal must still let nobody in then.
        settings = make_settings(self.tmp / "data", **kw)
        accounts_settings = settings.accounts.model_copy(update={"cache_seconds": cache_seconds})
        settings = settings.model_copy(update={"auth": auth, "accounts": accounts_settings})
        client = _testclient_class()(_app(settings, self.database))
        client.__enter__()
        self.clients.append(client)
        return client

    def db(self) -> Any:
        """A session on the lab's database."""
        return self.database.sessions()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), path)
    database = Database(make_engine(f"sqlite:///{path}"))
    secrets: dict[str, str] = {}
    ids: dict[str, int] = {}
    with database.sessions() as session:
        ids["root"] = accounts.create_user(session, "root", admin=True).id
        accounts.create_group(session, "lab", "read-annotate")
        ids["alice"] = accounts.create_user(session, "alice").id
        accounts.set_membership(session, "lab", "alice", owner=True)
        ids["bob"] = accounts.create_user(session, "bob").id
        for name, user, read_only in (
            ("rw", "alice", False),
            ("ro", "alice", True),
            ("bob", "bob", False),
            ("root", "root", False),
        ):
            row, secrets[name] = accounts.create_token(
                session, user, name=name, read_only=read_only
            )
            ids[f"token-{name}"] = row.id
        secrets["session"], srow = start_session(
            session, ids["alice"], hours=1, client="test", previous=None
        )
        csrf = srow.csrf_token
        secrets["bob-session"], _ = start_session(
            session, ids["bob"], hours=1, client="test", previous=None
        )
        accounts.update_user(session, "bob", active=False)
    lab = Lab(database, tmp_path, secrets, ids, csrf, [])
    yield lab
    for client in lab.clients:
        client.__exit__(None, None, None)
    database.engine.dispose()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _refused(response: Any, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail}
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    else:
        assert "WWW-Authenticate" not in response.headers


# -- none and token modes ----------------------------------------------------------------


def test_none_mode_is_the_single_user_whatever_is_sent(lab: Lab) -> None:
    client = lab.client(auth="none")
    for method in ("GET", "POST", "DELETE"):
        answer = client.request(method, "/who", headers=_bearer("nonsense"))
        assert answer.status_code == 200
        assert answer.json() == {
            "user_id": None,
            "username": "local",
            "is_admin": True,
            "via": "none",
            "read_only": False,
            "csrf_token": None,
            "token_id": None,
            "groups": {},
        }
    assert client.post("/login").json() == {"open": True}


def test_token_mode_needs_the_exact_token(lab: Lab) -> None:
    client = lab.client(auth="token", api_token="s3cret-token")  # noqa: S106
    _refused(client.get("/who"), 401, NO_TOKEN)
    _refused(client.get("/who", headers=_bearer("s3cret-toke")), 401, NO_TOKEN)
    _refused(client.get("/who", headers=_bearer("s3cret-token2")), 401, NO_TOKEN)
    _refused(client.post("/login"), 401, NO_TOKEN)
    _refused(client.get("/guarded"), 401, NO_TOKEN)
    # A session cookie means nothing in token mode.
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    _refused(client.get("/who"), 401, NO_TOKEN)
    for method in ("GET", "POST", "DELETE"):
        answer = client.request(method, "/who", headers=_bearer("s3cret-token"))
        assert answer.json() == {
            "user_id": None,
            "username": "token",
            "is_admin": True,
            "via": "token",
            "read_only": False,
            "csrf_token": None,
            "token_id": None,
            "groups": {},
        }
    assert client.post("/login", headers=_bearer("s3cret-token")).json() == {"open": True}
    assert client.get("/guarded", headers=_bearer("s3cret-token")).json() == {"in": True}


def test_token_mode_without_a_token_lets_nobody_in(lab: Lab) -> None:
    # ZSTACK_AUTH=token with no ZSTACK_API_TOKEN: no token can match, not even a guessed default.
    client = lab.client(auth="token")
    _refused(client.get("/who"), 401, NO_TOKEN)
    _refused(client.get("/who", headers=_bearer("XXXX")), 401, NO_TOKEN)
    _refused(client.get("/who", headers=_bearer("None")), 401, NO_TOKEN)


def test_token_mode_no_credentials_do_not_match_a_token(lab: Lab) -> None:
    # The missing credentials compare as nothing, never as some default string.
    client = lab.client(auth="token", api_token="XXXX")  # noqa: S106
    _refused(client.get("/who"), 401, NO_TOKEN)
    assert client.get("/who", headers=_bearer("XXXX")).json()["via"] == "token"


# -- users mode: personal tokens ---------------------------------------------------------


def test_personal_token_gives_its_user_groups_and_token(lab: Lab) -> None:
    client = lab.client()
    with lab.db() as session:
        lab_id = session.scalar(select(Group.id).where(Group.name == "lab"))
    for method in ("GET", "POST", "DELETE"):
        answer = client.request(method, "/who", headers=_bearer(lab.secrets["rw"]))
        assert answer.status_code == 200
        assert answer.json() == {
            "user_id": lab.ids["alice"],
            "username": "alice",
            "is_admin": False,
            "via": "api-token",
            "read_only": False,
            "csrf_token": None,
            "token_id": lab.ids["token-rw"],
            "groups": {str(lab_id): ["lab", "read-annotate", True]},
        }
    root = client.get("/who", headers=_bearer(lab.secrets["root"])).json()
    assert (root["username"], root["is_admin"], root["token_id"]) == (
        "root",
        True,
        lab.ids["token-root"],
    )
    assert client.get("/guarded", headers=_bearer(lab.secrets["rw"])).json() == {"in": True}
    assert client.post("/login").json() == {"open": True}  # login is open in users mode


def test_unknown_revoked_expired_and_disabled_tokens_are_refused(lab: Lab) -> None:
    client = lab.client()
    _refused(client.get("/who", headers=_bearer("zst_unknown")), 401, BAD_TOKEN)
    # A session's secret is not a token.
    _refused(client.get("/who", headers=_bearer(lab.secrets["session"])), 401, BAD_TOKEN)
    _refused(client.get("/who", headers=_bearer(lab.secrets["bob"])), 401, BAD_TOKEN)
    _refused(client.get("/guarded", headers=_bearer("zst_unknown")), 401, BAD_TOKEN)
    # A bad token is refused even with a good cookie next to it.
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    _refused(client.get("/who", headers=_bearer("zst_unknown")), 401, BAD_TOKEN)
    client.cookies.clear()
    now = datetime.now(UTC)
    with lab.db() as session:
        token = session.get(ApiToken, lab.ids["token-rw"])
        token.expires_at = now + timedelta(hours=1)
        session.commit()
    assert client.get("/who", headers=_bearer(lab.secrets["rw"])).status_code == 200
    with lab.db() as session:
        token = session.get(ApiToken, lab.ids["token-rw"])
        token.expires_at = now - timedelta(seconds=5)
        session.commit()
    _refused(client.get("/who", headers=_bearer(lab.secrets["rw"])), 401, BAD_TOKEN)
    with lab.db() as session:
        token = session.get(ApiToken, lab.ids["token-ro"])
        token.revoked_at = now + timedelta(hours=1)  # any revocation time counts
        session.commit()
    _refused(client.get("/who", headers=_bearer(lab.secrets["ro"])), 401, BAD_TOKEN)


def test_read_only_token_may_only_read(lab: Lab) -> None:
    client = lab.client()
    ro = _bearer(lab.secrets["ro"])
    answer = client.get("/who", headers=ro).json()
    assert (answer["read_only"], answer["token_id"], answer["via"]) == (
        True,
        lab.ids["token-ro"],
        "api-token",
    )
    assert client.head("/who", headers=ro).status_code == 200
    assert client.options("/who", headers=ro).status_code == 200
    for method in WRITES:
        _refused(client.request(method, "/who", headers=ro), 403, READ_ONLY)


def _last_used(lab: Lab, name: str) -> datetime | None:
    with lab.db() as session:
        value = session.get(ApiToken, lab.ids[f"token-{name}"]).last_used_at
    return None if value is None else value.replace(tzinfo=UTC)


def _set_last_used(lab: Lab, name: str, value: datetime) -> None:
    with lab.db() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == lab.ids[f"token-{name}"])
            .values(last_used_at=value)
        )
        session.commit()


def test_last_use_is_written_at_most_once_a_minute(lab: Lab) -> None:
    client = lab.client()
    assert _last_used(lab, "rw") is None
    before = datetime.now(UTC)
    client.get("/who", headers=_bearer(lab.secrets["rw"]))
    first = _last_used(lab, "rw")
    assert first is not None
    assert first >= before - timedelta(seconds=1)
    # Used 30 s ago: not written again.
    recent = datetime.now(UTC) - timedelta(seconds=30)
    _set_last_used(lab, "rw", recent)
    client.get("/who", headers=_bearer(lab.secrets["rw"]))
    assert _last_used(lab, "rw") == recent
    # Used 2 min ago: written again, to now.
    old = datetime.now(UTC) - timedelta(minutes=2)
    _set_last_used(lab, "rw", old)
    before = datetime.now(UTC)
    client.get("/who", headers=_bearer(lab.secrets["rw"]))
    again = _last_used(lab, "rw")
    assert again is not None
    assert again >= before - timedelta(seconds=1)
    # The other tokens were not touched.
    assert _last_used(lab, "ro") is None


# -- users mode: session cookies and CSRF ---------------------------------------------------


def test_session_cookie_gives_its_user_and_csrf_token(lab: Lab) -> None:
    client = lab.client()
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    answer = client.get("/who")
    assert answer.status_code == 200
    body = answer.json()
    assert body["groups"]
    del body["groups"]
    assert body == {
        "user_id": lab.ids["alice"],
        "username": "alice",
        "is_admin": False,
        "via": "session",
        "read_only": False,
        "csrf_token": lab.csrf,
        "token_id": None,
    }
    assert client.head("/who").status_code == 200
    assert client.options("/who").status_code == 200
    assert client.get("/guarded").json() == {"in": True}


def test_cookie_writes_need_the_csrf_token(lab: Lab) -> None:
    client = lab.client()
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    for method in WRITES:
        _refused(client.request(method, "/who"), 403, BAD_CSRF)
        _refused(
            client.request(method, "/who", headers={CSRF_HEADER: lab.csrf + "x"}), 403, BAD_CSRF
        )
        _refused(
            client.request(method, "/who", headers={CSRF_HEADER: lab.csrf[:-1]}), 403, BAD_CSRF
        )
        answer = client.request(method, "/who", headers={CSRF_HEADER: lab.csrf})
        assert answer.status_code == 200
        assert answer.json()["via"] == "session"
    # A bearer token needs no CSRF token, even with a cookie next to it (it wins).
    answer = client.post("/who", headers=_bearer(lab.secrets["rw"]))
    assert answer.json()["via"] == "api-token"


@pytest.mark.parametrize("stored", ["", "XXXX"])
def test_csrf_never_matches_a_default(lab: Lab, stored: str) -> None:
    # A session whose CSRF token is empty accepts no write; a missing header is never a match.
    with lab.db() as session:
        session.add(
            UserSession(
                id_hash=hash_secret("odd-session"),
                user_id=lab.ids["alice"],
                csrf_token=stored,
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        session.commit()
    client = lab.client()
    client.cookies.set(COOKIE_NAME, "odd-session")
    assert client.get("/who").json()["csrf_token"] == stored
    _refused(client.post("/who"), 403, BAD_CSRF)
    _refused(client.post("/who", headers={CSRF_HEADER: ""}), 403, BAD_CSRF)
    if stored:
        assert client.post("/who", headers={CSRF_HEADER: stored}).status_code == 200
    else:
        _refused(client.post("/who", headers={CSRF_HEADER: "XXXX"}), 403, BAD_CSRF)


def test_missing_unknown_expired_and_disabled_sessions(lab: Lab) -> None:
    client = lab.client()
    _refused(client.get("/who"), 401, LOG_IN)
    _refused(client.post("/who"), 401, LOG_IN)
    _refused(client.get("/guarded"), 401, LOG_IN)
    client.cookies.set(COOKIE_NAME, "")
    _refused(client.get("/who"), 401, LOG_IN)
    client.cookies.set(COOKIE_NAME, "not-a-session")
    _refused(client.get("/who"), 401, LOG_IN)
    # A token's secret is not a session.
    client.cookies.set(COOKIE_NAME, lab.secrets["rw"])
    _refused(client.get("/who"), 401, LOG_IN)
    client.cookies.set(COOKIE_NAME, lab.secrets["bob-session"])
    _refused(client.get("/who"), 401, LOG_IN)
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    assert client.get("/who").status_code == 200
    with lab.db() as session:
        session.execute(
            update(UserSession)
            .where(UserSession.id_hash == hash_secret(lab.secrets["session"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
        session.commit()
    _refused(client.get("/who"), 401, LOG_IN)


def test_disabled_user_with_a_live_session_row_is_refused(lab: Lab) -> None:
    # update_user deletes a disabled user's sessions; a row left behind must still not work.
    with lab.db() as session:
        secret, _ = start_session(session, lab.ids["alice"], hours=1, client="t", previous=None)
        session.execute(update(User).where(User.id == lab.ids["alice"]).values(is_active=False))
        session.commit()
    client = lab.client()
    client.cookies.set(COOKIE_NAME, secret)
    _refused(client.get("/who"), 401, LOG_IN)


# -- the cache ---------------------------------------------------------------------------


def test_cache_keeps_principals_until_forgotten(lab: Lab) -> None:
    client = lab.client(cache_seconds=600.0)
    rw = _bearer(lab.secrets["rw"])
    assert client.get("/who", headers=rw).json()["username"] == "alice"
    cache = client.app.state.principal_cache
    assert cache.ttl_s == 600.0
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    assert client.get("/who").json()["via"] == "session"
    assert client.app.state.principal_cache is cache
    with lab.db() as session:
        session.execute(update(ApiToken).values(revoked_at=datetime.now(UTC)))
        session.execute(update(UserSession).values(expires_at=datetime.now(UTC)))
        session.commit()
    # Cached: still in (this process did not make the change).
    assert client.get("/who", headers=rw).json()["via"] == "api-token"
    assert client.get("/who").json()["via"] == "session"
    # The same secret as a cookie is another key: not taken from the token's entry.
    client.cookies.set(COOKIE_NAME, lab.secrets["rw"])
    _refused(client.get("/who"), 401, LOG_IN)
    assert client.get("/forget").json() == {"forgotten": True}
    _refused(client.get("/who", headers=rw), 401, BAD_TOKEN)
    client.cookies.set(COOKIE_NAME, lab.secrets["session"])
    _refused(client.get("/who"), 401, LOG_IN)


def test_cache_never_outlives_the_credential(lab: Lab) -> None:
    client = lab.client(cache_seconds=600.0)
    with lab.db() as session:
        token = session.get(ApiToken, lab.ids["token-rw"])
        token.expires_at = datetime.now(UTC) + timedelta(seconds=30)
        session.commit()
    client.get("/who", headers=_bearer(lab.secrets["rw"]))
    cache = client.app.state.principal_cache
    ((deadline, _, principal),) = cache._entries.values()
    assert principal.username == "alice"
    assert deadline <= time.monotonic() + 30
    assert deadline > time.monotonic() + 20


def _who(name: str) -> Principal:
    return Principal(user_id=1, username=name)


def test_principal_cache_ttl_expiry_and_bound() -> None:
    cache = PrincipalCache(ttl_s=60, max_entries=2)
    assert cache.max_entries == 2
    assert cache.get("a") is None
    cache.put("a", _who("a"), not_after=None)
    cache.put("b", _who("b"), not_after=None)
    assert cache.get("a") == _who("a")
    deadline, _, _ = cache._entries["a"]
    assert time.monotonic() + 50 < deadline <= time.monotonic() + 60
    # Putting "a" again makes it the newest: "b" is the one dropped by the third.
    cache.put("a", _who("a2"), not_after=None)
    cache.put("c", _who("c"), not_after=None)
    assert cache.get("b") is None
    assert cache.get("a") == _who("a2")
    assert cache.get("c") == _who("c")
    assert list(cache._entries) == ["a", "c"]
    # A stale entry is dropped when read.
    cache._entries["c"] = (time.monotonic() - 1, time.time_ns(), _who("c"))
    assert cache.get("c") is None
    assert list(cache._entries) == ["a"]
    cache.clear()
    assert cache.get("a") is None


def test_principal_cache_respects_the_credentials_expiry() -> None:
    cache = PrincipalCache(ttl_s=60)
    assert cache.max_entries == 10_000
    now = datetime.now(UTC)
    cache.put("gone", _who("gone"), not_after=now - timedelta(seconds=1))
    assert cache.get("gone") is None
    assert "gone" not in cache._entries
    # A naive expiry (SQLite) is UTC.
    cache.put("naive", _who("naive"), not_after=(now + timedelta(seconds=10)).replace(tzinfo=None))
    deadline, _, _ = cache._entries["naive"]
    assert time.monotonic() + 5 < deadline <= time.monotonic() + 10
    cache.put("later", _who("later"), not_after=now + timedelta(hours=1))
    deadline, _, _ = cache._entries["later"]
    assert deadline <= time.monotonic() + 60
    zero = PrincipalCache(ttl_s=0)
    zero.put("x", _who("x"), not_after=None)
    assert not zero._entries  # not even kept until the next read
    assert zero.get("x") is None


def test_cache_bound_keeps_many() -> None:
    cache = PrincipalCache(ttl_s=60)
    for index in range(10_001):
        cache.put(str(index), _who("x"), not_after=None)
    assert len(cache._entries) == 10_000
    assert cache.get("0") is None
    assert cache.get("1") is not None


def test_principal_cache_short_ttls_and_zoned_expiries() -> None:
    short = PrincipalCache(ttl_s=0.5)
    short.put("x", _who("x"), not_after=None)
    assert list(short._entries) == ["x"]
    # An expiry in another zone (PostgreSQL may answer in the session's zone) is that instant.
    cache = PrincipalCache(ttl_s=3600)
    plus_two = timezone(timedelta(hours=2))
    cache.put("zoned", _who("z"), not_after=datetime.now(plus_two) + timedelta(seconds=10))
    deadline, _, _ = cache._entries["zoned"]
    assert deadline <= time.monotonic() + 10


def test_principal_cache_deadline_is_exclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [500.0]
    monkeypatch.setattr(principal_module.time, "monotonic", lambda: clock[0])
    cache = PrincipalCache(ttl_s=10)
    cache.put("k", _who("k"), not_after=None)
    clock[0] = 509.5
    assert cache.get("k") == _who("k")
    clock[0] = 510.0  # the deadline itself: stale
    assert cache.get("k") is None


def test_alive_until_the_expiry_instant() -> None:
    now = datetime.now(UTC)
    assert principal_module._alive(None, now) is True
    assert principal_module._alive(now + timedelta(microseconds=1), now) is True
    assert principal_module._alive(now, now) is False
    assert principal_module._alive(now.replace(tzinfo=None), now) is False


def test_last_use_exactly_a_minute_ago_is_not_written(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return fixed

    monkeypatch.setattr(principal_module, "datetime", Frozen)
    _set_last_used(lab, "rw", fixed - timedelta(minutes=1))
    with lab.db() as session:
        found = principal_module.resolve_api_token(session, lab.secrets["rw"])
    assert found is not None
    assert _last_used(lab, "rw") == fixed - timedelta(minutes=1)
    _set_last_used(lab, "rw", fixed - timedelta(minutes=1, microseconds=1))
    with lab.db() as session:
        principal_module.resolve_api_token(session, lab.secrets["rw"])
    assert _last_used(lab, "rw") == fixed
