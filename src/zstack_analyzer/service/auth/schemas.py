"""Request and response bodies of the account routes (login, me, tokens, admin, move)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.passwords import MAX_PASSWORD_CHARS, MIN_NEW_PASSWORD_CHARS

__all__ = [
    "GroupCreate",
    "GroupMembership",
    "GroupPublic",
    "GroupUpdate",
    "ImportRootCreate",
    "ImportRootPublic",
    "LoginRequest",
    "MePublic",
    "MemberPublic",
    "MembershipUpdate",
    "MoveRequest",
    "PasswordChange",
    "TokenCreate",
    "TokenCreated",
    "TokenPublic",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
]


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: A datetime always answered with its zone (UTC).
UtcDatetime = Annotated[datetime, AfterValidator(_aware)]

Name = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")


class LoginRequest(BaseModel):
    """Body of ``POST /api/auth/login``."""

    #: No NUL: no account has one in its name, and PostgreSQL refuses one in any text
    #: it is asked about (the lookup answered 500); such a login is a bad request (422).
    username: str = Field(min_length=1, max_length=150, pattern=r"^[^\x00]+$")
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class PasswordChange(BaseModel):
    """Body of ``POST /api/auth/password``: one's own password, the current one first."""

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)
    new_password: str = Field(min_length=MIN_NEW_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)


class GroupMembership(BaseModel):
    """One of the caller's groups: its level and the caller's role in it."""

    name: str
    permissions: Permission
    role: str = Field(description='"owner" (group leader) or "member"')


class MePublic(BaseModel):
    """Who the caller is (``GET /api/auth/me`` and the login answer)."""

    username: str
    is_admin: bool
    groups: list[GroupMembership]
    read_only: bool = Field(description="A read-only token: only GET/HEAD are allowed")
    auth: str = Field(
        description='How the caller authenticated: "none", "token", "session", "api-token"'
    )
    csrf_token: str | None = Field(
        description="Send it as X-CSRF-Token on every state-changing request made with the "
        "session cookie; null without a session"
    )
    password_changeable: bool = Field(
        default=False,
        description="Whether this server keeps the account's password, so POST "
        "/api/auth/password can change it: false for a directory (LDAP) account, whose "
        "password is changed in the directory, and without a user account",
    )


class TokenCreate(BaseModel):
    """Body of ``POST /api/tokens``."""

    name: str = Field(default="token", min_length=1, max_length=100)
    expires_days: float | None = Field(default=None, gt=0, le=3650, allow_inf_nan=False)
    read_only: bool = False


class TokenPublic(BaseModel):
    """A personal API token as listed (never its secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    read_only: bool
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    last_used_at: UtcDatetime | None
    revoked_at: UtcDatetime | None


class TokenCreated(TokenPublic):
    """A new token: ``token`` is shown this once and never again."""

    token: str


class UserCreate(BaseModel):
    """Body of ``POST /api/admin/users``."""

    username: str = Name
    password: str | None = Field(
        default=None, min_length=MIN_NEW_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS
    )
    is_admin: bool = False
    display_name: str = Field(default="", max_length=255)
    email: str | None = Field(default=None, max_length=320)


class UserUpdate(BaseModel):
    """Body of ``PATCH /api/admin/users/{username}`` (only the fields given change)."""

    password: str | None = Field(
        default=None, min_length=MIN_NEW_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS
    )
    is_active: bool | None = None
    is_admin: bool | None = None
    display_name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)


class UserPublic(BaseModel):
    """A user as an admin sees it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    email: str | None
    is_admin: bool
    is_active: bool
    auth_source: str
    created_at: UtcDatetime
    groups: list[GroupMembership] = Field(default_factory=list)


class GroupCreate(BaseModel):
    """Body of ``POST /api/admin/groups``."""

    name: str = Name
    permissions: Permission = Field(default=Permission("private"))


class GroupUpdate(BaseModel):
    """Body of ``PATCH /api/admin/groups/{name}``."""

    permissions: Permission


class MemberPublic(BaseModel):
    """A member of a group and their role."""

    username: str
    role: str


class GroupPublic(BaseModel):
    """A group with its level and members."""

    id: int
    name: str
    permissions: Permission
    members: list[MemberPublic]


class MembershipUpdate(BaseModel):
    """Body of ``PUT /api/admin/groups/{name}/members/{username}``."""

    is_owner: bool = False


class ImportRootCreate(BaseModel):
    """Body of ``POST /api/admin/import-roots``."""

    group: str = Name
    path: str = Field(min_length=1, max_length=4096)


class ImportRootPublic(BaseModel):
    """A folder members of ``group`` may register files from."""

    path: str
    group: str


class MoveRequest(BaseModel):
    """Body of ``PATCH /api/images/{image_id}``: move the image to another group."""

    group: str = Name
