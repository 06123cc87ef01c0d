"""Viewer sessions: created at login (a new id every time), ended at logout, server-side.

Why the secret only in the cookie: the row keeps its SHA-256, so reading the
database gives no usable session. A new id at every login prevents session
fixation: whatever cookie the browser sent before is deleted, never promoted.

A new password ends the user's sessions (:func:`end_user_sessions`, called by
``accounts.update_user``); one's own change keeps the session that made it,
under a new id (:func:`renew_session`), as Django's ``update_session_auth_hash``
keeps and cycles the current session: a copy of the old cookie dies too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from zstack_analyzer.service.auth.models import UserSession
from zstack_analyzer.service.auth.tokens import hash_secret, new_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["end_session", "end_user_sessions", "renew_session", "start_session"]


def start_session(
    session: Session, user_id: int, *, hours: float, client: str, previous: str | None
) -> tuple[str, UserSession]:
    """A new session for ``user_id``: ``(cookie secret, row)``; ``previous`` (the old cookie) ends."""
    if previous:
        session.execute(delete(UserSession).where(UserSession.id_hash == hash_secret(previous)))
    now = datetime.now(UTC)
    # Expired sessions of anyone are swept here (logins are rare; no background job needed).
    session.execute(delete(UserSession).where(UserSession.expires_at < now))
    secret = new_secret()
    row = UserSession(
        id_hash=hash_secret(secret),
        user_id=user_id,
        csrf_token=new_secret(),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        client=client[:64],
    )
    session.add(row)
    session.commit()
    return secret, row


def end_session(session: Session, secret: str) -> bool:
    """Delete the session whose cookie is ``secret``; whether one existed."""
    result = session.execute(delete(UserSession).where(UserSession.id_hash == hash_secret(secret)))
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def end_user_sessions(session: Session, user_id: int, *, keep: str | None = None) -> int:
    """Delete every session of ``user_id`` but the one whose cookie is ``keep``; how many.

    Does not commit (the caller's change and the ending are one transaction).
    """
    statement = delete(UserSession).where(UserSession.user_id == user_id)
    if keep:
        statement = statement.where(UserSession.id_hash != hash_secret(keep))
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def renew_session(session: Session, secret: str) -> tuple[str, datetime] | None:
    """Give the session ``secret`` a new id: ``(new cookie secret, its expiry in UTC)``, or ``None``.

    The row (user, CSRF token, expiry) stays; the old cookie stops working.
    """
    old_hash = hash_secret(secret)
    expires_at = session.scalar(
        select(UserSession.expires_at).where(UserSession.id_hash == old_hash)
    )
    if expires_at is None:
        return None
    fresh = new_secret()
    session.execute(
        update(UserSession)
        .where(UserSession.id_hash == old_hash)
        .values(id_hash=hash_secret(fresh))
    )
    session.commit()
    # SQLite hands back naive datetimes; they were stored as UTC.
    return fresh, expires_at if expires_at.tzinfo is not None else expires_at.replace(tzinfo=UTC)
