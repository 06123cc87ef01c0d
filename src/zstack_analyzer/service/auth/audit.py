"""The audit trail: an append-only table of who did what, when, from where (migration 0008).

Why a table of its own and not the log: admins ask it questions ("every
download of this image", "failed logins for alice last night") through
``GET /api/audit``, and it survives log rotation. Why append-only: a trail
that its subjects could edit proves nothing. The application has no code that
updates or deletes a row, no route does, and the database refuses both itself
(triggers on SQLite and PostgreSQL, see migration 0008), so a bug or a stray
``DELETE`` cannot rewrite history either.

A row keeps the username as text and the user id without a foreign key: the
record must outlive the account (and a failed login names a user that may not
exist at all). Writes go through :func:`record` in their own short transaction,
so a refused action (a failed login) is recorded although nothing else is
committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from zstack_analyzer.service.db.models import Base, JSONVariant, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "ACTIONS",
    "AuditEvent",
    "AuditQuery",
    "as_utc",
    "query_events",
    "record",
    "record_many",
]

#: Actions the service records (``action`` is free text, so a new one needs no migration;
#: these are the names the call sites pass to ``events.emit``, listed for the docs and UI).
ACTIONS: tuple[str, ...] = (
    "login",
    "login_failed",
    "logout",
    "password_change",
    "password_change_failed",
    "upload",
    "register",
    "download",
    "delete",
    "move",
    "container_delete",
    "user_create",
    "user_update",
    "group_create",
    "group_update",
    "group_delete",
    "membership_add",
    "membership_remove",
    "import_root_add",
    "import_root_remove",
    "token_create",
    "token_revoke",
)

#: BIGINT on PostgreSQL (a busy server writes many rows); SQLite's rowid alias must be INTEGER.
AuditId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One recorded action (never updated, never deleted)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(AuditId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer)
    #: Who acted; for a failed login, the name that was tried.
    username: Mapped[str | None] = mapped_column(String(150))
    client: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: What it was done to: an image id, a token id, a group or user name.
    target: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSONVariant, default=dict)

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_action_at", "action", "at"),
        Index("ix_audit_events_username_at", "username", "at"),
    )


def record(
    session: Session,
    action: str,
    *,
    user_id: int | None = None,
    username: str | None = None,
    client: str | None = None,
    request_id: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event and commit it (in ``session``'s own transaction)."""
    event = AuditEvent(
        at=utcnow(),
        action=action[:64],
        user_id=user_id,
        username=username[:150] if username is not None else None,
        client=client[:64] if client is not None else None,
        request_id=request_id[:64] if request_id is not None else None,
        target=target[:255] if target is not None else None,
        details=details or {},
    )
    session.add(event)
    session.commit()
    return event


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC.

    Why: SQLite keeps the text of a datetime without its zone, so every value
    written and compared must be in the same zone (UTC) to order correctly.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted past the calendar's end: clamp
        edge = datetime.max if moment.year > 1 else datetime.min
        return edge.replace(tzinfo=UTC)


def record_many(session: Session, events: list[dict[str, Any]]) -> None:
    """Append several events (``record``'s keyword arguments each) in one transaction."""
    session.add_all(
        AuditEvent(
            at=event.get("at") or utcnow(),
            action=event["action"][:64],
            user_id=event.get("user_id"),
            username=_cut(event.get("username"), 150),
            client=_cut(event.get("client"), 64),
            request_id=_cut(event.get("request_id"), 64),
            target=_cut(event.get("target"), 255),
            details=event.get("details") or {},
        )
        for event in events
    )
    session.commit()


def _cut(value: str | None, size: int) -> str | None:
    return value[:size] if value is not None else None


@dataclass(frozen=True)
class AuditQuery:
    """Filters of ``GET /api/audit`` (all optional; ``since`` inclusive, ``until`` exclusive)."""

    username: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    skip: int = 0
    limit: int = 100


def query_events(session: Session, query: AuditQuery) -> tuple[list[AuditEvent], int]:
    """One page of events, newest first, and how many match in all.

    An ``action`` ending in ``*`` selects a family (``membership_*``, ``token_*``);
    anything else matches exactly.
    """
    conditions: list[Any] = []
    if query.username is not None:
        conditions.append(AuditEvent.username == query.username)
    if query.action:
        if query.action.endswith("*"):
            family = query.action.removesuffix("*")
            conditions.append(AuditEvent.action.startswith(family, autoescape=True))
        else:
            conditions.append(AuditEvent.action == query.action)
    if query.since is not None:
        conditions.append(AuditEvent.at >= as_utc(query.since))
    if query.until is not None:
        conditions.append(AuditEvent.at < as_utc(query.until))
    count = session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEvent)
        .where(*conditions)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .offset(query.skip)
        .limit(query.limit)
    ).all()
    return list(rows), count
