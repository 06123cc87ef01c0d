"""Create and change users, groups, memberships, tokens and import roots.

Why one module for the CLI and the admin routes: ``zstack user add`` and
``POST /api/admin/users`` must make the same rows with the same checks (name
rules, the first admin's adoption of ownerless images, the last-admin guard).
Every function takes the session it runs in and commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from zstack_analyzer.service.auth.login import (
    LoginPolicy,
    authenticate_password,
    local_password,
    locked_for,
)
from zstack_analyzer.service.auth.models import (
    DEFAULT_GROUP,
    ApiToken,
    Group,
    GroupImportRoot,
    Membership,
    Permission,
    User,
)
from zstack_analyzer.service.auth.passwords import hash_password
from zstack_analyzer.service.auth.permissions import GroupRole, Principal
from zstack_analyzer.service.auth.sessions import end_user_sessions
from zstack_analyzer.service.auth.tokens import hash_secret, new_token
from zstack_analyzer.service.db.models import Image

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "AccountConflictError",
    "AccountError",
    "AccountLockedError",
    "AccountNotFoundError",
    "ImportRootInfo",
    "UserChange",
    "WrongPasswordError",
    "add_import_root",
    "change_own_password",
    "change_user",
    "create_group",
    "create_token",
    "create_user",
    "default_group_id",
    "delete_group",
    "find_group",
    "find_user",
    "group_roots",
    "parse_permission",
    "principal_for_user",
    "remove_import_root",
    "revoke_token",
    "revoke_user_tokens",
    "set_membership",
    "update_group",
    "update_user",
]

#: A user or group name; matched whole (``fullmatch``: ``$`` alone would let a trailing
#: newline through, making ``"root\n"`` a second account that prints like ``root``).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,149}")
#: Longest a token may live (days); ``None`` means no expiry.
MAX_TOKEN_DAYS = 3650


class AccountError(ValueError):
    """A refused account change (bad name, bad level, last admin...): 422 over HTTP."""


class AccountNotFoundError(AccountError, LookupError):
    """No such user, group, membership or token: 404 over HTTP."""


class AccountConflictError(AccountError):
    """The name is taken, or the change would leave a group with images undeletable: 409."""


class WrongPasswordError(AccountError):
    """The current password given for one's own change is wrong: 403 over HTTP."""


class AccountLockedError(AccountError):
    """Too many wrong passwords: the account is locked for ``retry_after`` s (429 over HTTP)."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"too many wrong passwords: this account is locked; try again in {retry_after} s"
        )


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        msg = (
            f"{what} {name[:64]!r}: use 1-150 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
        raise AccountError(msg)
    return name


def parse_permission(value: str) -> Permission:
    """A group level from its name (``private``, ``read-only``, ``read-annotate``, ``read-write``)."""
    try:
        return Permission(value.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in Permission)
        msg = f"permissions {value[:32]!r}: expected one of {known}"
        raise AccountError(msg) from None


def find_user(session: Session, username: str) -> User:
    """The user called ``username``, or :class:`AccountNotFoundError`."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        msg = f"no user {username[:64]!r}"
        raise AccountNotFoundError(msg)
    return user


def find_group(session: Session, name: str) -> Group:
    """The group called ``name``, or :class:`AccountNotFoundError`."""
    group = session.scalars(select(Group).where(Group.name == name)).first()
    if group is None:
        msg = f"no group {name[:64]!r}"
        raise AccountNotFoundError(msg)
    return group


def default_group_id(session: Session) -> int:
    """The id of the group ``default`` (made again if an admin deleted it)."""
    group_id = session.scalar(select(Group.id).where(Group.name == DEFAULT_GROUP))
    if group_id is not None:
        return int(group_id)
    group = Group(name=DEFAULT_GROUP, permissions=Permission.READ_ONLY.value)
    session.add(group)
    session.commit()
    return group.id


def create_user(
    session: Session,
    username: str,
    *,
    password: str | None = None,
    admin: bool = False,
    display_name: str = "",
    email: str | None = None,
    auth_source: str = "local",
) -> User:
    """A new active user; the first admin adopts every ownerless image.

    Why the adoption: images from before accounts existed (migration 0007) or
    uploaded in none/token mode have no owner; the first admin becomes their
    owner and an owner of the group ``default`` they are in, so nothing is
    orphaned when a lab switches ``ZSTACK_AUTH=users`` on.
    """
    _check_name(username, "username")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        msg = f"user {username!r} exists already"
        raise AccountConflictError(msg)
    first_admin = admin and session.scalar(select(User.id).where(User.is_admin)) is None
    user = User(
        username=username,
        display_name=display_name[:255],
        email=email,
        is_admin=admin,
        is_active=True,
        password_hash=hash_password(password) if password else None,
        auth_source=auth_source,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    if first_admin:
        default = default_group_id(session)
        session.execute(update(Image).where(Image.owner_id.is_(None)).values(owner_id=user.id))
        session.add(Membership(user_id=user.id, group_id=default, is_owner=True))
    session.commit()
    return user


@dataclass(frozen=True, slots=True)
class UserChange:
    """What :func:`change_user` did: the changed user, and the API tokens it revoked.

    Why the ids: each revocation is recorded in the audit trail as a
    ``token_revoke`` of its own (the route or command that made the change
    emits them), so "when did token 7 die, and why" has one answer whether
    its owner, an admin, a reset or a disable revoked it.
    """

    user: User
    revoked_tokens: tuple[int, ...] = ()


def revoke_user_tokens(session: Session, user_id: int) -> tuple[int, ...]:
    """Revoke every live API token of ``user_id``; the ids revoked, in order.

    Does not commit (the caller's change and the revocation are one
    transaction). The bulk update on ``api_tokens`` marks the accounts as
    changed (:mod:`.account_changes`), so every server process drops the
    tokens it cached.
    """
    live = ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)
    ids = tuple(session.scalars(select(ApiToken.id).where(*live).order_by(ApiToken.id)))
    if ids:
        session.execute(
            update(ApiToken).where(ApiToken.id.in_(ids), *live).values(revoked_at=datetime.now(UTC))
        )
    return ids


def change_user(
    session: Session,
    username: str,
    *,
    password: str | None = None,
    active: bool | None = None,
    admin: bool | None = None,
    display_name: str | None = None,
    email: str | None = None,
    keep_session: str | None = None,
    keep_tokens: bool = False,
) -> UserChange:
    """Change a user; refuses to disable or demote the last active admin.

    A new ``password`` ends every session of the user, in the same commit, and
    revokes their API tokens: a reset presumes the account compromised. One's
    own change passes ``keep_session`` (the cookie of the session making it,
    which stays) and ``keep_tokens`` (tokens one made oneself stay valid).

    Disabling (``active=False``) ends every session and revokes every API token
    of the user, in the same commit, whatever ``keep_tokens`` says: a facility
    disabling a leaver expects the old credentials dead for good, and enabling
    the account again must not bring them back (the person makes new ones).
    """
    user = find_user(session, username)
    losing_admin = user.is_admin and (active is False or admin is False)
    if losing_admin:
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.is_admin, User.is_active, User.id != user.id)
        )
        if not others:
            msg = f"{username!r} is the last active admin; make another admin first"
            raise AccountError(msg)
    revoked: tuple[int, ...] = ()
    if password is not None:
        user.password_hash = hash_password(password)
        user.failed_logins = 0
        user.locked_until = None
        # Logins made with the old password end now, in every process (account_changes).
        end_user_sessions(session, user.id, keep=keep_session)
        if not keep_tokens:
            revoked = revoke_user_tokens(session, user.id)
    if active is not None:
        user.is_active = active
        if not active:  # a disabled user's sessions end and tokens die now
            end_user_sessions(session, user.id)
            revoked += revoke_user_tokens(session, user.id)
    if admin is not None:
        user.is_admin = admin
    if display_name is not None:
        user.display_name = display_name[:255]
    if email is not None:
        user.email = email or None
    session.commit()
    return UserChange(user, revoked)


def update_user(
    session: Session,
    username: str,
    *,
    password: str | None = None,
    active: bool | None = None,
    admin: bool | None = None,
    display_name: str | None = None,
    email: str | None = None,
    keep_session: str | None = None,
    keep_tokens: bool = False,
) -> User:
    """:func:`change_user` for callers that need only the user (not the revoked token ids)."""
    return change_user(
        session,
        username,
        password=password,
        active=active,
        admin=admin,
        display_name=display_name,
        email=email,
        keep_session=keep_session,
        keep_tokens=keep_tokens,
    ).user


def change_own_password(
    session: Session,
    username: str,
    current_password: str,
    new_password: str,
    *,
    client: str,
    policy: LoginPolicy,
    keep_session: str | None,
) -> User:
    """Change ``username``'s own password after checking the current one as a login does.

    Why through :func:`~.login.authenticate_password`: the same argon2id check
    (and rehash), and a wrong current password counts toward the account's
    lockout exactly like a failed login, so a stolen session cannot guess the
    password faster than the login form can. A locked account is refused
    before any check (:class:`AccountLockedError`); the person is logged in,
    so telling them it is locked discloses nothing. Only the local check is
    asked: an account whose password lives elsewhere (LDAP) is refused first
    (:class:`AccountConflictError`), its password is changed in the directory.

    The change itself is :func:`update_user`'s: every other session of the
    user ends, ``keep_session`` (the cookie making the change) stays, and the
    user's own API tokens stay (the user proved the password: no compromise
    is presumed, unlike an admin's reset).
    """
    user = find_user(session, username)
    if user.auth_source != "local":
        msg = (
            f"the password of {username!r} is kept by the directory ({user.auth_source}): "
            "change it there; this server never stores it"
        )
        raise AccountConflictError(msg)
    wait = locked_for(user)
    if wait:
        raise AccountLockedError(wait)
    checked = authenticate_password(
        session, username, current_password, client, policy=policy, authenticators=[local_password]
    )
    if checked is None:
        msg = "the current password is wrong"
        raise WrongPasswordError(msg)
    return update_user(
        session, username, password=new_password, keep_session=keep_session, keep_tokens=True
    )


def create_group(session: Session, name: str, permissions: str = "private") -> Group:
    """A new group with a permission level."""
    _check_name(name, "group name")
    level = parse_permission(permissions)
    if session.scalar(select(Group.id).where(Group.name == name)) is not None:
        msg = f"group {name!r} exists already"
        raise AccountConflictError(msg)
    group = Group(name=name, permissions=level.value)
    session.add(group)
    session.commit()
    return group


def update_group(session: Session, name: str, *, permissions: str) -> Group:
    """Change a group's permission level (takes effect on the members' next request)."""
    group = find_group(session, name)
    group.permissions = parse_permission(permissions).value
    session.commit()
    return group


def delete_group(session: Session, name: str) -> None:
    """Delete an empty group; one that still holds images is refused (move them first)."""
    group = find_group(session, name)
    if name == DEFAULT_GROUP:
        msg = "the group 'default' cannot be deleted"
        raise AccountConflictError(msg)
    if session.scalar(select(Image.id).where(Image.group_id == group.id).limit(1)) is not None:
        msg = f"group {name!r} still holds images; move or delete them first"
        raise AccountConflictError(msg)
    session.delete(group)
    session.commit()


def set_membership(
    session: Session, group_name: str, username: str, *, owner: bool = False, remove: bool = False
) -> Membership | None:
    """Add ``username`` to ``group_name`` (or change their role); ``remove`` takes them out."""
    group = find_group(session, group_name)
    user = find_user(session, username)
    membership = session.get(Membership, (user.id, group.id))
    if remove:
        if membership is None:
            msg = f"{username!r} is not in group {group_name!r}"
            raise AccountNotFoundError(msg)
        session.delete(membership)
        session.commit()
        return None
    if membership is None:
        membership = Membership(user_id=user.id, group_id=group.id, is_owner=owner)
        session.add(membership)
    else:
        membership.is_owner = owner
    session.commit()
    return membership


def create_token(
    session: Session,
    username: str,
    *,
    name: str = "token",
    expires_days: float | None = None,
    read_only: bool = False,
) -> tuple[ApiToken, str]:
    """A personal API token: ``(row, secret)``; the secret is never stored or shown again."""
    user = find_user(session, username)
    if not user.is_active:
        msg = f"user {username!r} is disabled"
        raise AccountError(msg)
    if expires_days is not None and not 0 < expires_days <= MAX_TOKEN_DAYS:
        msg = f"expiry: give 0 < days <= {MAX_TOKEN_DAYS}"
        raise AccountError(msg)
    secret = new_token()
    token = ApiToken(
        user_id=user.id,
        name=(name.strip() or "token")[:100],
        token_hash=hash_secret(secret),
        read_only=read_only,
        expires_at=(
            datetime.now(UTC) + timedelta(days=expires_days) if expires_days is not None else None
        ),
    )
    session.add(token)
    session.commit()
    return token, secret


def revoke_token(session: Session, token_id: int, *, user_id: int | None = None) -> ApiToken:
    """Revoke a token (only ``user_id``'s own when given); revoked tokens stay listed."""
    token = session.get(ApiToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        msg = f"no token {token_id}"
        raise AccountNotFoundError(msg)
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        session.commit()
    return token


@dataclass(frozen=True, slots=True)
class ImportRootInfo:
    """A folder members of ``group_id`` may register files from."""

    path: Path
    group_id: int
    group: str


def add_import_root(session: Session, group_name: str, path: str) -> GroupImportRoot:
    """Let members of ``group_name`` register files under ``path`` (absolute, resolved)."""
    group = find_group(session, group_name)
    root = Path(path)
    if not root.is_absolute():
        msg = f"{path[:200]!r}: give an absolute path"
        raise AccountError(msg)
    resolved = str(root.resolve(strict=False))
    if session.scalar(select(GroupImportRoot.id).where(GroupImportRoot.path == resolved)):
        msg = f"{resolved} is an import root already"
        raise AccountConflictError(msg)
    row = GroupImportRoot(group_id=group.id, path=resolved)
    session.add(row)
    session.commit()
    return row


def remove_import_root(session: Session, path: str) -> None:
    """Stop registrations under ``path`` (records registered from it stay)."""
    resolved = str(Path(path).resolve(strict=False))
    row = session.scalars(select(GroupImportRoot).where(GroupImportRoot.path == resolved)).first()
    if row is None:
        msg = f"{resolved} is not an import root"
        raise AccountNotFoundError(msg)
    session.delete(row)
    session.commit()


def group_roots(session: Session) -> list[ImportRootInfo]:
    """Every group import root with its group."""
    rows = session.execute(
        select(GroupImportRoot.path, Group.id, Group.name)
        .join(Group, Group.id == GroupImportRoot.group_id)
        .order_by(GroupImportRoot.path)
    ).all()
    return [ImportRootInfo(Path(path), group_id, name) for path, group_id, name in rows]


def principal_for_user(
    session: Session,
    user: User,
    *,
    via: str,
    read_only: bool = False,
    csrf_token: str | None = None,
    token_id: int | None = None,
) -> Principal:
    """The :class:`Principal` of ``user`` with their groups, levels and roles (one query)."""
    rows = session.execute(
        select(Group.id, Group.name, Group.permissions, Membership.is_owner)
        .join(Membership, Membership.group_id == Group.id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at, Group.id)
    ).all()
    groups = {
        group_id: GroupRole(group_id, name, Permission(level), bool(is_owner))
        for group_id, name, level, is_owner in rows
    }
    return Principal(
        user_id=user.id,
        username=user.username,
        is_admin=bool(user.is_admin),
        groups=groups,
        read_only=read_only,
        via=via,
        csrf_token=csrf_token,
        token_id=token_id,
        auth_source=user.auth_source,
    )
