"""Password login: pluggable authenticators, per-account lockout, per-client throttle.

Why a list of authenticators: the local argon2 check is one; LDAP (auth-extras)
appends its own, which may create the user on a first successful bind. Each
gets the session, the username, the password and the existing ``User`` (or
``None``) and returns the authenticated ``User`` or ``None``.

Why the lockout lives in the database: every server process must agree on it.
A locked or disabled account answers exactly like a wrong password (and costs
the same argon2 time), so nobody learns which accounts exist or are locked.
The per-client throttle is per process (a sliding window in memory): it only
has to slow one address down, and it must not need a write per attempt.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import func, select

from zstack_analyzer.service.auth.models import User
from zstack_analyzer.service.auth.passwords import hash_password, needs_rehash, verify_password

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "AUTHENTICATORS",
    "Authenticator",
    "ClientThrottle",
    "LoginPolicy",
    "authenticate_password",
    "local_password",
    "locked_for",
]


class Authenticator(Protocol):
    """Checks a username and password; returns the user on success, else ``None``."""

    def __call__(
        self, session: Session, username: str, password: str, user: User | None, /
    ) -> User | None:
        """The authenticated user, or ``None`` (wrong password, unknown to this source)."""


def local_password(
    session: Session, username: str, password: str, user: User | None, /
) -> User | None:
    """The local check: the user's argon2id hash (a missing user costs the same time)."""
    del username
    hashed = user.password_hash if user is not None and user.auth_source == "local" else None
    if not verify_password(hashed, password):
        return None
    if user is not None and hashed is not None and needs_rehash(hashed):
        user.password_hash = hash_password(password)
        session.flush()
    return user


#: Tried in order; the first that returns a user wins. LDAP appends itself here.
AUTHENTICATORS: list[Authenticator] = [local_password]


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """How many consecutive failures lock an account, and for how long."""

    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def locked_for(user: User, now: datetime | None = None) -> int:
    """Whole seconds (rounded up) until ``user``'s lockout ends; 0 when not locked."""
    if user.locked_until is None:
        return 0
    left = (_aware(user.locked_until) - (now or datetime.now(UTC))).total_seconds()
    return max(0, math.ceil(left))


def _directory_account(session: Session, username: str) -> User | None:
    """The one non-local (LDAP) account spelled like ``username`` but for case, if any.

    Why: a directory compares names case-blind (``ALICE`` binds as ``alice``), so a
    login as ``ALICE`` is a login to alice's account. Without this lookup it found no
    local user: its failures never counted toward alice's lockout (unlimited guesses
    under other spellings) and her lock and disabled flag were not checked first. Local
    accounts are their own spelling only.
    """
    rows = session.scalars(
        select(User)
        .where(func.lower(User.username) == username.lower(), User.auth_source != "local")
        .limit(2)
    ).all()
    return rows[0] if len(rows) == 1 else None


def authenticate_password(
    session: Session,
    username: str,
    password: str,
    client: str,
    *,
    policy: LoginPolicy | None = None,
    authenticators: list[Authenticator] | None = None,
) -> User | None:
    """The active user ``username`` if ``password`` is right and the account is not locked.

    Failures count toward the account's lockout (``policy``); a success resets
    the count. ``client`` (the caller's address) is for the authenticators and
    the audit hook; the per-client throttle is :class:`ClientThrottle`.
    """
    del client
    policy = policy or LoginPolicy()
    now = datetime.now(UTC)
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        user = _directory_account(session, username)
    locked = user is not None and (not user.is_active or locked_for(user, now) > 0)
    if locked:
        verify_password(None, password)  # the same cost as a real check
        return None
    found: User | None = None
    for authenticator in authenticators if authenticators is not None else AUTHENTICATORS:
        found = authenticator(session, username, password, user)
        if found is not None:
            break
    if found is not None and found.is_active:
        found.failed_logins = 0
        found.locked_until = None
        session.commit()
        return found
    if user is not None:
        user.failed_logins = (user.failed_logins or 0) + 1
        if user.failed_logins >= policy.max_failures:
            user.locked_until = now + policy.lockout
            user.failed_logins = 0
        session.commit()
    return None


class ClientThrottle:
    """At most ``max_failures`` failed logins per client address in ``window_s`` seconds.

    Thread-safe; bounded to ``max_clients`` addresses (the oldest are forgotten).
    """

    def __init__(
        self, *, max_failures: int = 20, window_s: float = 300.0, max_clients: int = 10_000
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        return times

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                return 0
            return max(1, int(self.window_s - (now - times[0])) + 1)

    def failed(self, client: str) -> None:
        """Count one failed login from ``client``."""
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
