"""Tables of the multi-user mode: users, groups, memberships, API tokens, sessions, roots.

Why integer ids and hashed secrets: users and groups are few and referenced
from every image row (a small integer keeps the ``images`` index narrow); a
token or session id is stored only as the SHA-256 of a 256-bit random secret,
so a leaked database does not let anyone in (nothing to crack, nothing to
replay). Registered on the same ``Base.metadata`` as the images, so Alembic
compares them with migration 0007.
"""

from __future__ import annotations

from datetime import datetime  # noqa: TC003  (SQLAlchemy resolves Mapped[] at runtime)
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from zstack_analyzer.service.db.models import Base, Image, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "DEFAULT_GROUP",
    "ApiToken",
    "Group",
    "GroupImportRoot",
    "Membership",
    "Permission",
    "User",
    "UserSession",
]

#: The group every image made before accounts existed (and every upload in none/token mode) is in.
DEFAULT_GROUP = "default"


class Permission(StrEnum):
    """OMERO's four group permission levels (what members may do to each other's images)."""

    PRIVATE = "private"
    READ_ONLY = "read-only"
    READ_ANNOTATE = "read-annotate"
    READ_WRITE = "read-write"


class User(Base):
    """A person (or a service account) who logs in with a password, LDAP or a token.

    ``password_hash`` is ``None`` for accounts without a local password (LDAP,
    token-only). ``failed_logins`` and ``locked_until`` implement the
    per-account lockout in the database, so every server process agrees.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    auth_source: Mapped[str] = mapped_column(String(32), default="local")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Group(Base):
    """A set of people sharing images under one permission level (``Permission``)."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    permissions: Mapped[str] = mapped_column(String(16), default=Permission.PRIVATE.value)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Base):
    """A user in a group; ``is_owner`` makes them a group owner (OMERO's group leader).

    A user's default group (where an upload without ``?group=`` goes) is the
    one they joined first.
    """

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_owner: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A personal API token: only its SHA-256 is kept; the secret is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserSession(Base):
    """A viewer's login: the cookie holds the secret, the row its SHA-256 and the CSRF token."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    client: Mapped[str | None] = mapped_column(String(64))


class GroupImportRoot(Base):
    """A folder on the server whose files members of ``group_id`` may register in place."""

    __tablename__ = "group_import_roots"
    __table_args__ = (UniqueConstraint("path", name="uq_group_import_roots_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(4096))


def _default_group_on_insert(_mapper: object, connection: Connection, image: Image) -> None:
    """Give an image inserted without a group (command-line ingest, none/token mode) ``default``.

    Why a mapper event: every code path that stores a record (upload, register,
    ``zstack ingest`` straight into the database) ends in a group, so no image
    is visible to admins only by accident.
    """
    if image.group_id is not None:
        return
    from sqlalchemy import insert, select

    group_id = connection.scalar(select(Group.id).where(Group.name == DEFAULT_GROUP))
    if group_id is None:
        inserted = connection.execute(
            insert(Group).values(
                name=DEFAULT_GROUP, permissions=Permission.READ_ONLY.value, created_at=utcnow()
            )
        ).inserted_primary_key
        group_id = inserted[0] if inserted is not None else None
    image.group_id = int(group_id) if group_id is not None else None


event.listen(Image, "before_insert", _default_group_on_insert)
