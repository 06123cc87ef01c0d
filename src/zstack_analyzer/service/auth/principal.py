"""Who is calling: the :class:`Principal` of a request, in each of the three modes.

- ``none``: everyone is :data:`SINGLE_USER` (all-powerful), as before accounts.
- ``token``: the bearer token must equal ``ZSTACK_API_TOKEN`` (constant time); the
  caller is then the single all-powerful principal.
- ``users``: a personal API token (``Authorization: Bearer zst_...``) or the
  viewer's session cookie. A cookie request that changes state must carry the
  session's CSRF token in ``X-CSRF-Token`` (double submit: the token comes from
  the login answer or ``GET /api/auth/me``, a cross-site page cannot read it).
  A read-only token may only read.

Why a small cache (:class:`PrincipalCache`): resolving a token or session is
one database round trip in a worker thread, more than a cached thumbnail
costs. Entries live ``accounts.cache_seconds`` (never past the credential's
own expiry), but every hit first stats the shared "accounts changed" marker
(:class:`~.account_changes.AccountChanges`): an entry fetched before the last
account change, made by this process, another one or the CLI, is resolved
again. So a revoked token or a removed membership stops working at once in
every process sharing the data dir.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from zstack_analyzer.service.auth.account_changes import AccountChanges
from zstack_analyzer.service.auth.models import ApiToken, User, UserSession
from zstack_analyzer.service.auth.permissions import SINGLE_USER, Principal
from zstack_analyzer.service.auth.tokens import hash_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.config import Settings
    from zstack_analyzer.service.db.session import Database

__all__ = [
    "COOKIE_NAME",
    "CSRF_HEADER",
    "PrincipalCache",
    "PrincipalDep",
    "get_principal",
    "require_principal",
    "token_unless_users",
]

#: The viewer's session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS).
COOKIE_NAME = "zstack_session"
#: The header a cookie request that changes state must carry (double-submit CSRF token).
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``last_used_at`` of a token is written at most this often.
LAST_USED_EVERY = timedelta(minutes=1)

TOKEN_USER = Principal(user_id=None, username="token", is_admin=True, via="token")

_bearer = HTTPBearer(
    auto_error=False,
    description="ZSTACK_AUTH=token: ZSTACK_API_TOKEN. ZSTACK_AUTH=users: a personal API token "
    "(zstack token create USER); the viewer uses a session cookie instead",
)


def unauthorized(detail: str) -> HTTPException:
    """401 with ``WWW-Authenticate: Bearer`` (problem+json via the error handlers)."""
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


class PrincipalCache:
    """``key -> (deadline, fetched_ns, Principal)`` for resolved credentials; bounded, thread-safe.

    ``changes``: the shared marker; a hit fetched before its time is dropped
    (one ``stat`` per hit). ``fetched_ns`` is the wall clock (ns) taken before
    the database was asked (:func:`time.time_ns`, the marker's clock).
    """

    def __init__(
        self, *, ttl_s: float, max_entries: int = 10_000, changes: AccountChanges | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.changes = changes
        self._entries: OrderedDict[str, tuple[float, int, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Principal | None:
        """The cached principal, if still fresh and fetched after the last account change."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if time.monotonic() >= hit[0]:
                self._entries.pop(key, None)
                return None
        if self.changes is not None and self.changes.changed_since(hit[1]):
            with self._lock:
                if self._entries.get(key) is hit:
                    self._entries.pop(key)
            return None
        return hit[2]

    def put(
        self,
        key: str,
        principal: Principal,
        *,
        not_after: datetime | None,
        fetched_ns: int | None = None,
    ) -> None:
        """Keep ``principal`` for the TTL (never past the credential's own expiry).

        ``fetched_ns``: when its resolution began (default: now; pass the time
        taken *before* the query, so a change committed during it counts as later).
        """
        ttl = self.ttl_s
        if not_after is not None:
            ttl = min(ttl, (_aware(not_after) - datetime.now(UTC)).total_seconds())
        if ttl <= 0:
            return
        fetched = time.time_ns() if fetched_ns is None else fetched_ns
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, fetched, principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()


def principal_cache(request: Request) -> PrincipalCache:
    """The app's :class:`PrincipalCache` (made on first use)."""
    state = request.app.state
    cache: PrincipalCache | None = getattr(state, "principal_cache", None)
    if cache is None:
        settings: Settings = state.settings
        # The instance that marks this app's commits (app start-up), when there is one.
        changes = getattr(state, "account_changes", None)
        cache = PrincipalCache(
            ttl_s=settings.accounts.cache_seconds,
            changes=changes if changes is not None else AccountChanges(settings.accounts_marker),
        )
        state.principal_cache = cache
    return cache


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _alive(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or _aware(expires_at) > now


def resolve_api_token(session: Session, secret: str) -> tuple[Principal, datetime | None] | None:
    """The principal of a personal token, or ``None`` (unknown, revoked, expired, disabled)."""
    from zstack_analyzer.service.auth.accounts import principal_for_user

    now = datetime.now(UTC)
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_secret(secret))
    ).first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or not _alive(token.expires_at, now) or not user.is_active:
        return None
    if token.last_used_at is None or now - _aware(token.last_used_at) > LAST_USED_EVERY:
        # A row change, not a bulk UPDATE: account_changes knows last_used_at changes no principal.
        token.last_used_at = now
        session.commit()
    principal = principal_for_user(
        session, user, via="api-token", read_only=bool(token.read_only), token_id=token.id
    )
    return principal, token.expires_at


def resolve_session(session: Session, secret: str) -> tuple[Principal, datetime | None] | None:
    """The principal of a session cookie, or ``None`` (unknown, ended, expired, disabled)."""
    from zstack_analyzer.service.auth.accounts import principal_for_user

    now = datetime.now(UTC)
    row = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id_hash == hash_secret(secret))
    ).first()
    if row is None:
        return None
    user_session, user = row
    if not _alive(user_session.expires_at, now) or not user.is_active:
        return None
    principal = principal_for_user(session, user, via="session", csrf_token=user_session.csrf_token)
    return principal, user_session.expires_at


async def _resolve(request: Request, kind: str, secret: str) -> Principal | None:
    cache = principal_cache(request)
    key = f"{kind}:{hash_secret(secret)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    database: Database = request.app.state.database
    resolver = resolve_api_token if kind == "t" else resolve_session
    fetched_ns = time.time_ns()  # before the query: a change committed during it is "after"
    found = await database.run(resolver, secret)
    if found is None:
        return None
    principal, not_after = found
    cache.put(key, principal, not_after=not_after, fetched_ns=fetched_ns)
    return principal


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller; 401 without valid credentials, 403 for a missing CSRF token or a read-only token.

    FastAPI caches a dependency per request, so the routes that take
    :data:`PrincipalDep` get the same object the router's guard checked.
    """
    settings: Settings = request.app.state.settings
    mode = settings.auth_mode()
    if mode == "none":
        return SINGLE_USER
    if mode == "token":
        expected = settings.token() or ""
        given = credentials.credentials if credentials is not None else ""
        if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
            msg = "missing or invalid bearer token (send 'Authorization: Bearer <token>')"
            raise unauthorized(msg)
        return TOKEN_USER
    principal: Principal | None = None
    if credentials is not None:
        principal = await _resolve(request, "t", credentials.credentials)
        if principal is None:
            msg = "invalid, expired or revoked token"
            raise unauthorized(msg)
    else:
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            principal = await _resolve(request, "s", cookie)
        if principal is None:
            msg = "log in (POST /api/auth/login) or send 'Authorization: Bearer <token>'"
            raise unauthorized(msg)
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            expected = principal.csrf_token or ""
            if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
                msg = f"missing or wrong {CSRF_HEADER} header (GET /api/auth/me gives it)"
                raise HTTPException(403, msg)
    if principal.read_only and request.method not in SAFE_METHODS:
        msg = "this token is read-only"
        raise HTTPException(403, msg)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_principal(principal: PrincipalDep) -> None:
    """Router dependency: resolve the caller (401/403 before the route runs)."""
    del principal


async def token_unless_users(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Router dependency of ``/api/auth``: login is open in users mode, behind the token in token mode.

    Why: with ``ZSTACK_AUTH=token`` every ``/api`` route answers 401 without the
    token, as before accounts existed; in users mode login must work without
    credentials (it is how one gets them).
    """
    settings: Settings = request.app.state.settings
    if settings.auth_mode() == "token":
        await get_principal(request, credentials)
