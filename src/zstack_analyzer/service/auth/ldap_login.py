"""LDAP as a login source: the authenticator that creates and updates directory users.

Why here and not in ``ldap.py``: that module only talks to the directory;
this one decides what a successful bind means for our accounts:

- a person the directory accepts and we have never seen becomes a user
  (``auth_source="ldap"``, no local password) on that first login;
- at every login their display name, e-mail and memberships in the *mapped*
  groups (``ZSTACK_LDAP__GROUP_MAP``) follow the directory: added when the
  directory lists them, removed when it no longer does; memberships in groups
  the map does not name are the admins' business and stay as they are;
- a local account (``auth_source="local"``) is never checked against the
  directory: a directory entry of the same name cannot take it over, and its
  password is never sent to the directory server;
- when the directory cannot be asked, the login answers 503 with a problem
  that says so (local accounts still log in: the local check runs first).
  While it is down an unknown name answers 503 and a local account's wrong
  password 401, which tells a local name from others; that is the price of
  saying clearly that the directory is down.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from zstack_analyzer.service.auth.accounts import AccountError, create_user
from zstack_analyzer.service.auth.ldap import (
    DirectoryUser,
    LdapUnavailableError,
    directory_login,
    mapped_groups,
)
from zstack_analyzer.service.auth.login import local_password
from zstack_analyzer.service.auth.models import Group, Membership, User

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from sqlalchemy.orm import Session
    from starlette.responses import Response

    from zstack_analyzer.service.auth.login import Authenticator
    from zstack_analyzer.service.config import LdapSettings

__all__ = ["LdapAuthenticator", "install_ldap", "sync_memberships"]

logger = logging.getLogger(__name__)

LDAP_SOURCE = "ldap"


class LoginDirectoryUnavailableError(LdapUnavailableError):
    """The directory was needed for this login and could not be asked (503)."""

    def __init__(self, message: str, username: str) -> None:
        super().__init__(message)
        self.username = username


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def sync_memberships(
    session: Session, user: User, wanted: set[str], managed: set[str]
) -> tuple[list[str], list[str]]:
    """Make ``user``'s memberships in the ``managed`` groups exactly ``wanted``.

    A mapped group that does not exist here is skipped with a warning (an
    admin creates it, choosing its permission level); a group owner keeps the
    owner flag while the directory keeps them in the group. Returns the names
    of the groups joined and left.
    """
    groups = {
        group.name: group
        for group in session.scalars(select(Group).where(Group.name.in_(managed))).all()
    }
    for name in sorted(wanted - groups.keys()):
        logger.warning("LDAP group map names group %r, which does not exist; skipped", name)
    current = {
        membership.group_id: membership
        for membership in session.scalars(
            select(Membership).where(
                Membership.user_id == user.id,
                Membership.group_id.in_([g.id for g in groups.values()]),
            )
        ).all()
    }
    joined: list[str] = []
    left: list[str] = []
    for name, group in sorted(groups.items()):
        if name in wanted and group.id not in current:
            session.add(Membership(user_id=user.id, group_id=group.id, is_owner=False))
            joined.append(name)
        elif name not in wanted and group.id in current:
            session.delete(current[group.id])
            left.append(name)
    session.flush()
    return joined, left


def _stage_audit(session: Session, user: User, action: str, **details: object) -> None:
    """An audit row for a change the directory made, committed with the login itself.

    Why not ``events.emit``: the authenticator runs without the request; these
    rows name the user and ``via: ldap`` (the login event right after them has
    the client address and request id).
    """
    from zstack_analyzer.service.auth.audit import AuditEvent

    target = details.get("group")
    session.add(
        AuditEvent(
            action=action,
            user_id=user.id,
            username=user.username,
            target=str(target) if target is not None else user.username,
            details={**details, "via": "ldap"},
        )
    )


class LdapAuthenticator:
    """An :data:`~.login.Authenticator` binding against the directory (after the local check)."""

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings

    def __call__(
        self, session: Session, username: str, password: str, user: User | None, /
    ) -> User | None:
        """The directory's user (created or updated), or ``None``; 503 when it cannot be asked."""
        if user is not None and user.auth_source != LDAP_SOURCE:
            return None  # a local account: never the directory's to decide
        try:
            person = directory_login(self.settings, username, password)
        except LdapUnavailableError as exc:
            logger.warning("LDAP login of %r: %s", username[:150], exc)
            raise LoginDirectoryUnavailableError(str(exc), username) from exc
        if person is None:
            return None
        return self._account(session, person)

    def _account(self, session: Session, person: DirectoryUser) -> User | None:
        """The local account of ``person``, created on the first login; groups synced."""
        existing = session.scalars(select(User).where(User.username == person.username)).first()
        if existing is not None and existing.auth_source != LDAP_SOURCE:
            logger.warning(
                "LDAP user %r matches a local account of another source; refused", person.username
            )
            return None
        locked_until = existing.locked_until if existing is not None else None
        if locked_until is not None and _aware(locked_until) > datetime.now(UTC):
            return None
        if existing is None:
            try:
                existing = create_user(
                    session,
                    person.username,
                    display_name=person.display_name,
                    email=person.email,
                    auth_source=LDAP_SOURCE,
                )
            except AccountError as exc:
                logger.warning("LDAP user %r cannot be created: %s", person.username, exc)
                session.rollback()
                return None
            _stage_audit(session, existing, "user_create", dn=person.dn)
        else:
            existing.display_name = person.display_name[:255]
            existing.email = person.email
        if existing.is_active:
            joined, left = sync_memberships(
                session,
                existing,
                mapped_groups(person, self.settings.group_map),
                set(self.settings.group_map.values()),
            )
            for name in joined:
                _stage_audit(session, existing, "membership_add", group=name)
            for name in left:
                _stage_audit(session, existing, "membership_remove", group=name)
        return existing


async def _directory_unavailable(request: Request, exc: Exception) -> Response:
    """503 problem+json: the directory is down; local accounts can still log in."""
    from zstack_analyzer.service.auth import events
    from zstack_analyzer.service.errors import problem_response, request_id_of

    username = getattr(exc, "username", None)
    events.emit("login_failed", None, request, username=username, reason="directory unavailable")
    return problem_response(
        503,
        code="directory_unavailable",
        detail="the LDAP directory cannot be reached to check this login; try again later "
        "(accounts with a local password can still log in)",
        request_id=request_id_of(request),
        headers={"Retry-After": "30"},
    )


def install_ldap(app: FastAPI, settings: LdapSettings) -> None:
    """Turn LDAP login on for ``app``: local check first, then the directory."""
    authenticators: list[Authenticator] = [local_password, LdapAuthenticator(settings)]
    app.state.authenticators = authenticators
    app.add_exception_handler(LoginDirectoryUnavailableError, _directory_unavailable)
