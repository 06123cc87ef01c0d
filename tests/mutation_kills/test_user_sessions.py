"""Viewer sessions (``service/auth/sessions.py``): the rows a login writes and a logout deletes.

Why direct calls on a migrated SQLite database: a session is a row (hash of the cookie,
CSRF token, times, client); what login and logout do to the rows is checked exactly,
from another database session (so only committed changes count).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from tests.mutation_kills.service_db import _template
from tests.service.conftest import (
    create_pg_database,
    drop_pg_database,
    postgres_admin,  # noqa: F401 - a fixture used by name
    postgres_template,  # noqa: F401 - a fixture used by name
)
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth import sessions as sessions_module
from zstack_analyzer.service.auth.models import UserSession
from zstack_analyzer.service.auth.sessions import end_session, start_session
from zstack_analyzer.service.auth.tokens import hash_secret
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


CSRF = "x" * 43


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), path)
    database = Database(make_engine(f"sqlite:///{path}"))
    with database.sessions() as session:
        accounts.create_user(session, "alice")
        accounts.create_user(session, "bob")
    yield database
    database.engine.dispose()


def _rows(database: Database) -> dict[str, UserSession]:
    with database.sessions() as session:
        return {row.id_hash: row for row in session.scalars(select(UserSession))}


def test_a_new_session_row(database: Database) -> None:
    before = datetime.now(UTC)
    with database.sessions() as session:
        secret, row = start_session(session, 1, hours=2.5, client="c" * 100, previous=None)
    after = datetime.now(UTC)
    stored = _rows(database)[hash_secret(secret)]
    assert row.id_hash == hash_secret(secret)
    assert stored.user_id == 1
    assert stored.client == "c" * 64
    assert len(secret) == 43
    assert len(stored.csrf_token) == 43
    assert stored.csrf_token != secret
    created = stored.created_at.replace(tzinfo=UTC)
    expires = stored.expires_at.replace(tzinfo=UTC)
    assert before <= created <= after
    assert expires - created == timedelta(hours=2.5)
    with database.sessions() as session:
        other, again = start_session(session, 1, hours=1, client="x", previous=None)
    assert other != secret
    assert again.csrf_token != stored.csrf_token
    assert set(_rows(database)) == {hash_secret(secret), hash_secret(other)}


def test_login_ends_the_previous_session_only(database: Database) -> None:
    with database.sessions() as session:
        old, _ = start_session(session, 1, hours=1, client="a", previous=None)
        bobs, _ = start_session(session, 2, hours=1, client="b", previous=None)
        new, _ = start_session(session, 1, hours=1, client="a", previous=old)
    assert set(_rows(database)) == {hash_secret(bobs), hash_secret(new)}
    with database.sessions() as session:
        newer, _ = start_session(session, 1, hours=1, client="a", previous="")
        start_session(session, 1, hours=1, client="a", previous="unknown")
    assert {hash_secret(bobs), hash_secret(new), hash_secret(newer)} < set(_rows(database))
    assert len(_rows(database)) == 4


def test_login_sweeps_expired_sessions_of_anyone(database: Database) -> None:
    now = datetime.now(UTC)
    with database.sessions() as session:
        session.add_all(
            [
                UserSession(
                    id_hash="gone",
                    user_id=2,
                    csrf_token=CSRF,
                    expires_at=now - timedelta(seconds=1),
                ),
                UserSession(
                    id_hash="live",
                    user_id=2,
                    csrf_token=CSRF,
                    expires_at=now + timedelta(minutes=5),
                ),
            ]
        )
        session.commit()
        secret, _ = start_session(session, 1, hours=1, client="a", previous=None)
    assert set(_rows(database)) == {"live", hash_secret(secret)}


def test_logout(database: Database) -> None:
    with database.sessions() as session:
        mine, _ = start_session(session, 1, hours=1, client="a", previous=None)
        theirs, _ = start_session(session, 2, hours=1, client="b", previous=None)
    with database.sessions() as session:
        assert end_session(session, mine) is True
    assert set(_rows(database)) == {hash_secret(theirs)}
    with database.sessions() as session:
        assert end_session(session, mine) is False
        assert end_session(session, "never-issued") is False
    assert set(_rows(database)) == {hash_secret(theirs)}


def test_times_are_utc_and_the_sweep_keeps_the_expiry_instant(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    class HostClock(datetime):
        """A host nine hours east of UTC: only an explicit zone gives UTC."""

        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            if tz is not None:
                return fixed.astimezone(tz)
            return (fixed + timedelta(hours=9)).replace(tzinfo=None)

    monkeypatch.setattr(sessions_module, "datetime", HostClock)
    with database.sessions() as session:
        session.add_all(
            [
                UserSession(id_hash="edge", user_id=2, csrf_token=CSRF, expires_at=fixed),
                UserSession(
                    id_hash="past",
                    user_id=2,
                    csrf_token=CSRF,
                    expires_at=fixed - timedelta(microseconds=1),
                ),
            ]
        )
        session.commit()
        secret, _ = start_session(session, 1, hours=1, client="a", previous=None)
    rows = _rows(database)
    assert set(rows) == {"edge", hash_secret(secret)}
    mine = rows[hash_secret(secret)]
    assert mine.created_at.replace(tzinfo=UTC) == fixed
    assert mine.expires_at.replace(tzinfo=UTC) == fixed + timedelta(hours=1)


def test_ending_a_users_sessions_keeps_the_named_one_and_counts(database: Database) -> None:
    """``end_user_sessions``: every session of the user but ``keep``; others' stay; how many."""
    from zstack_analyzer.service.auth.sessions import end_user_sessions

    with database.sessions() as session:
        kept, _ = start_session(session, 1, hours=1, client="a", previous=None)
        start_session(session, 1, hours=1, client="b", previous=None)
        start_session(session, 1, hours=1, client="c", previous=None)
        bobs, _ = start_session(session, 2, hours=1, client="d", previous=None)
    with database.sessions() as session:
        assert end_user_sessions(session, 1, keep=kept) == 2
        session.commit()
    assert set(_rows(database)) == {hash_secret(kept), hash_secret(bobs)}
    with database.sessions() as session:
        assert end_user_sessions(session, 1, keep=kept) == 0  # nothing left to end
        assert end_user_sessions(session, 1, keep="") == 1  # an empty cookie keeps nothing
        session.commit()
    assert set(_rows(database)) == {hash_secret(bobs)}
    with database.sessions() as session:
        assert end_user_sessions(session, 2) == 1
        session.rollback()  # the caller's transaction: nothing committed by the call
    assert set(_rows(database)) == {hash_secret(bobs)}


def test_renewing_a_session_changes_its_id_only(database: Database) -> None:
    """``renew_session``: a new cookie for the same row (user, CSRF token, expiry); the old dies."""
    from zstack_analyzer.service.auth.sessions import renew_session

    with database.sessions() as session:
        old, row = start_session(session, 1, hours=2, client="a", previous=None)
        bobs, _ = start_session(session, 2, hours=1, client="b", previous=None)
    before = _rows(database)[hash_secret(old)]
    with database.sessions() as session:
        renewed = renew_session(session, old)
    assert renewed is not None
    fresh, expires_at = renewed
    assert len(fresh) == 43 and fresh not in (old, bobs)
    assert expires_at.tzinfo is not None
    assert expires_at == before.expires_at.replace(tzinfo=UTC)
    rows = _rows(database)  # read from another session: committed
    assert set(rows) == {hash_secret(fresh), hash_secret(bobs)}
    after = rows[hash_secret(fresh)]
    assert (after.user_id, after.csrf_token) == (1, row.csrf_token)
    with database.sessions() as session:
        assert renew_session(session, old) is None  # the old cookie is no session any more
        assert renew_session(session, "never-issued") is None
    assert set(_rows(database)) == {hash_secret(fresh), hash_secret(bobs)}


@pytest.mark.postgres
def test_a_renewed_sessions_expiry_is_the_same_instant_on_a_postgresql_in_another_zone(
    postgres_admin: str,  # noqa: F811 - the fixture imported above
    postgres_template: str,  # noqa: F811 - the fixture imported above
) -> None:
    """PostgreSQL answers ``timestamptz`` in the connection's zone: already aware, kept as is.

    Why: only SQLite's naive datetimes are UTC by convention; relabelling an aware
    +09:00 time as UTC would give the renewed cookie a lifetime nine hours off.
    """
    from sqlalchemy import text

    from zstack_analyzer.service.auth.sessions import renew_session
    from zstack_analyzer.service.db.session import make_session_factory

    url = create_pg_database(postgres_admin, postgres_template)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            user = accounts.create_user(db, "tokyo")
            old, row = start_session(db, user.id, hours=3, client="a", previous=None)
            expected = row.expires_at
        with make_session_factory(engine)() as db:
            db.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
            renewed = renew_session(db, old)
        assert renewed is not None
        _, expires_at = renewed
        assert expires_at.utcoffset() == timedelta(hours=9)
        assert expires_at == expected
    finally:
        engine.dispose()
        drop_pg_database(postgres_admin, url)
