"""Password login (``service/auth/login.py``): authenticators, lockout, rehash, per-client throttle.

Why direct calls on a migrated SQLite database: the answer (the user or ``None``) and
the rows it writes (failure count, lock time, rehashed password) are the behaviour;
argon2id runs at its lowest cost so each check takes milliseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tests.mutation_kills.service_db import session
from zstack_analyzer.service.auth import accounts, login, passwords
from zstack_analyzer.service.auth.login import (
    AUTHENTICATORS,
    ClientThrottle,
    LoginPolicy,
    authenticate_password,
    local_password,
)
from zstack_analyzer.service.auth.models import User

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

__all__ = ["session"]

PASSWORD = "a long enough password"  # noqa: S105  (a test account's)
FAST = passwords.Argon2Parameters(time_cost=1, memory_kib=8192, parallelism=1)


@pytest.fixture(autouse=True)
def fast_hashes() -> Iterator[None]:
    before = passwords._parameters
    passwords.configure(FAST)
    yield
    passwords.configure(before)


def _user(session: Session, name: str = "alice") -> User:
    return accounts.create_user(session, name, password=PASSWORD)


def _row(session: Session, name: str = "alice") -> User:
    session.expire_all()
    return accounts.find_user(session, name)


def test_defaults() -> None:
    assert [local_password] == AUTHENTICATORS
    assert LoginPolicy() == LoginPolicy(max_failures=5, lockout=timedelta(minutes=15))
    throttle = ClientThrottle()
    assert (throttle.max_failures, throttle.window_s, throttle.max_clients) == (20, 300.0, 10_000)


def test_local_password(session: Session) -> None:
    user = _user(session)
    assert local_password(session, "alice", PASSWORD, user) is user
    assert local_password(session, "alice", PASSWORD + "!", user) is None
    assert local_password(session, "alice", PASSWORD, None) is None
    user.auth_source = "ldap"  # a directory account: its local hash (if any) is not used
    assert local_password(session, "alice", PASSWORD, user) is None


def test_a_weaker_hash_is_rehashed_at_login(session: Session) -> None:
    user = _user(session)
    old = user.password_hash
    assert local_password(session, "alice", PASSWORD, user) is user
    assert user.password_hash == old  # today's parameters: kept
    passwords.configure(passwords.Argon2Parameters(time_cost=2, memory_kib=8192, parallelism=1))
    assert local_password(session, "alice", PASSWORD, user) is user
    session.commit()
    assert _row(session).password_hash != old
    assert "t=2" in _row(session).password_hash
    assert passwords.verify_password(_row(session).password_hash, PASSWORD)
    # A wrong password rehashes nothing.
    passwords.configure(FAST)
    current = _row(session).password_hash
    assert local_password(session, "alice", "wrong", _row(session)) is None
    assert _row(session).password_hash == current


def test_success_resets_and_failures_lock(session: Session) -> None:
    _user(session)
    policy = LoginPolicy(max_failures=3, lockout=timedelta(minutes=10))
    assert authenticate_password(session, "alice", "wrong", "c", policy=policy) is None
    assert _row(session).failed_logins == 1
    assert authenticate_password(session, "alice", "wrong", "c", policy=policy) is None
    assert (_row(session).failed_logins, _row(session).locked_until) == (2, None)
    found = authenticate_password(session, "alice", PASSWORD, "c", policy=policy)
    assert found is not None
    assert found.username == "alice"
    assert (_row(session).failed_logins, _row(session).locked_until) == (0, None)
    before = datetime.now(UTC)
    for _ in range(3):
        assert authenticate_password(session, "alice", "wrong", "c", policy=policy) is None
    row = _row(session)
    assert row.failed_logins == 0  # the count starts again after a lock
    locked_until = row.locked_until.replace(tzinfo=UTC)
    assert before + timedelta(minutes=10) <= locked_until
    assert locked_until <= datetime.now(UTC) + timedelta(minutes=10)
    # Locked: even the right password fails, and nothing is counted.
    assert authenticate_password(session, "alice", PASSWORD, "c", policy=policy) is None
    assert authenticate_password(session, "alice", "wrong", "c", policy=policy) is None
    assert (_row(session).failed_logins, _row(session).locked_until) == (0, row.locked_until)


def test_the_default_policy_locks_after_five(session: Session) -> None:
    _user(session)
    for _ in range(4):
        authenticate_password(session, "alice", "wrong", "c")
    assert _row(session).locked_until is None
    assert _row(session).failed_logins == 4
    before = datetime.now(UTC)
    authenticate_password(session, "alice", "wrong", "c")
    locked_until = _row(session).locked_until.replace(tzinfo=UTC)
    assert before + timedelta(minutes=15) <= locked_until
    assert locked_until <= datetime.now(UTC) + timedelta(minutes=15)


def test_an_ended_lock(session: Session) -> None:
    user = _user(session)
    user.locked_until = datetime.now(UTC) - timedelta(seconds=1)
    session.commit()
    assert authenticate_password(session, "alice", "wrong", "c") is None
    assert _row(session).failed_logins == 1
    assert authenticate_password(session, "alice", PASSWORD, "c") is not None
    row = _row(session)
    assert (row.failed_logins, row.locked_until) == (0, None)
    row.locked_until = datetime.now(UTC) + timedelta(minutes=1)
    session.commit()
    assert authenticate_password(session, "alice", PASSWORD, "c") is None


def test_disabled_and_unknown_users(session: Session) -> None:
    _user(session)
    accounts.create_user(session, "root", admin=True)
    accounts.update_user(session, "alice", active=False)
    assert authenticate_password(session, "alice", PASSWORD, "c") is None
    assert _row(session).failed_logins == 0
    assert authenticate_password(session, "nobody", PASSWORD, "c") is None


def test_authenticators_in_order(session: Session) -> None:
    alice = _user(session)
    bob = accounts.create_user(session, "bob")
    calls: list[tuple[str, str, object]] = []

    def refuse(db: Session, username: str, password: str, user: User | None, /) -> User | None:
        calls.append(("refuse", username, user))
        return None

    def anyone(db: Session, username: str, password: str, user: User | None, /) -> User | None:
        calls.append(("anyone", username, user))
        return db.get(User, bob.id)

    found = authenticate_password(session, "alice", "x", "c", authenticators=[refuse, anyone])
    assert found is not None
    assert found.username == "bob"
    assert calls == [("refuse", "alice", alice), ("anyone", "alice", alice)]
    calls.clear()
    authenticate_password(session, "alice", "x", "c", authenticators=[anyone, refuse])
    assert [c[0] for c in calls] == ["anyone"]
    # No authenticators: nobody gets in, not even with the right password.
    assert authenticate_password(session, "alice", PASSWORD, "c", authenticators=[]) is None
    assert _row(session).failed_logins == 1

    # A source that answers with a disabled user is a failure.
    def disabled(db: Session, username: str, password: str, user: User | None, /) -> User | None:
        row = db.get(User, bob.id)
        row.is_active = False
        return row

    assert authenticate_password(session, "alice", "x", "c", authenticators=[disabled]) is None
    assert _row(session).failed_logins == 2


def test_client_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(login.time, "monotonic", lambda: clock[0])
    throttle = ClientThrottle(max_failures=3, window_s=100.0, max_clients=2)
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    clock[0] += 10
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 91  # the first failure leaves the window in 90 s
    clock[0] += 89.5
    assert throttle.retry_after("a") == 1
    assert throttle.retry_after("b") == 0
    clock[0] += 0.5  # exactly the window: still counted
    assert throttle.retry_after("a") == 1
    clock[0] += 0.5
    assert throttle.retry_after("a") == 0
    # Bounded: the least recently seen address is forgotten.
    for _ in range(3):
        throttle.failed("c")
    throttle.failed("d")
    assert list(throttle._failures) == ["c", "d"]
    assert throttle.retry_after("c") == 101
    throttle.failed("e")
    assert list(throttle._failures) == ["c", "e"]


def test_client_throttle_real_clock() -> None:
    throttle = ClientThrottle(max_failures=1, window_s=60.0)
    throttle.failed("x")
    assert 1 <= throttle.retry_after("x") <= 61
    assert time.monotonic() > 0


def test_a_lock_ends_at_its_instant(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return fixed.astimezone(tz)

    monkeypatch.setattr(login, "datetime", Frozen)
    user = _user(session)
    user.locked_until = fixed
    session.commit()
    assert authenticate_password(session, "alice", PASSWORD, "c") is not None
    # A lock stored in another zone (PostgreSQL answers in the session's zone) is that instant.
    user = _row(session)
    user.locked_until = fixed + timedelta(seconds=1)
    session.commit()
    assert authenticate_password(session, "alice", PASSWORD, "c") is None
    later = fixed.astimezone(timezone(timedelta(hours=-5))) + timedelta(seconds=1)
    assert login._aware(later) is later


def test_a_directory_account_is_found_under_any_spelling_and_its_failures_count(
    session: Session,
) -> None:
    """``ALICE`` is alice's directory account (a directory compares names case-blind).

    Her failures under another spelling count toward her lockout, and once locked every
    spelling is refused before any check. A local account is its own spelling only, and
    two directory accounts spelled alike but for case name nobody.
    """
    from sqlalchemy import select

    accounts.create_user(session, "alice", auth_source="ldap")
    _user(session, "bob")  # local
    accounts.create_user(session, "dora", auth_source="ldap")
    accounts.create_user(session, "Dora", auth_source="ldap")
    policy = LoginPolicy(max_failures=2, lockout=timedelta(minutes=5))
    assert authenticate_password(session, "ALICE", "guess", "c", policy=policy) is None
    assert _row(session, "alice").failed_logins == 1
    assert authenticate_password(session, "Alice", "guess", "c", policy=policy) is None
    locked = _row(session, "alice")
    assert (locked.failed_logins, locked.locked_until is not None) == (0, True)
    assert login.locked_for(locked) > 0
    # A local account under another spelling is nobody's: bob's count stays.
    assert authenticate_password(session, "BOB", PASSWORD, "c", policy=policy) is None
    assert _row(session, "bob").failed_logins == 0
    # Two directory accounts alike but for case: nobody's failures are counted.
    assert authenticate_password(session, "DORA", "guess", "c", policy=policy) is None
    counts = session.execute(select(User.username, User.failed_logins)).all()
    assert {name: n for name, n in counts if name.lower() == "dora"} == {"dora": 0, "Dora": 0}


def test_locked_for_rounds_up_and_is_zero_when_not_locked(session: Session) -> None:
    user = _user(session)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert login.locked_for(user, now) == 0
    user.locked_until = now + timedelta(seconds=1, microseconds=1)
    assert login.locked_for(user, now) == 2
    user.locked_until = now - timedelta(seconds=30)  # over: zero, never negative
    assert login.locked_for(user, now) == 0
    user.locked_until = now.replace(tzinfo=None)  # SQLite's naive UTC, at the instant
    assert login.locked_for(user, now) == 0
    # Without ``now``: the wall clock in UTC (a lock that ends in an hour).
    user.locked_until = datetime.now(UTC) + timedelta(hours=1)
    assert 3500 < login.locked_for(user) <= 3600
