"""Viewer sessions: created at login (a new id every time), ended at logout, server-side.

Why the secret only in the cookie: the row keeps its SHA-256, so reading the
database gives no usable session. A new id at every login prevents session
fixation: whatever cookie the browser sent before is deleted, never promoted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete

from zstack_analyzer.service.auth.models import UserSession
from zstack_analyzer.service.auth.tokens import hash_secret, new_secret

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["end_session", "start_session"]


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
