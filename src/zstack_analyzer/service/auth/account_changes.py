"""One "accounts changed" marker for every server process sharing the data dir.

Why: each server process keeps resolved tokens and sessions in a short-lived
:class:`~.principal.PrincipalCache` (``accounts.cache_seconds``). A revoked
token, an ended session, a disabled user, a removed membership, a changed
role or a group whose level was lowered must stop working in *every* process
at once, not only in the one that made the change (a revoked token that keeps
working for 5 s is a revoked token that works).

How, in one place: :meth:`AccountChanges.watch` hooks the session factory
(the app's and the CLI's), so no route or command has to remember a call.
A flush that changes or deletes a row that a cached principal was built from
(users, groups, memberships, tokens, sessions; see :data:`WATCHED`), or that
adds a membership, flags the session; after its *commit* the marker
``<data_dir>/accounts.changed`` (``Settings.accounts_marker``) is touched (:mod:`..change_markers`: mtime
set to the wall clock then). Every cache hit stats the marker and drops an
entry fetched before it (less a 2 s margin), so the next request resolves
the credential again from the database. A rollback drops the flag.

What does not mark: new users, groups, tokens and sessions (no cached
principal can depend on a row that did not exist), a token's ``last_used_at``
and the lockout counters (they change no principal), display names, e-mails
and password hashes (a new password marks through what it ends: the user's
sessions and tokens, ``accounts.update_user``). Cost: one ``stat`` per request with a cached principal
(see ``bench/principal_marker.py``), and after a change one database round
trip per cached credential and process.

The marker is a single file: a change to one account drops every cached
principal of every process, like :meth:`~.principal.PrincipalCache.clear`
did in the changing process before. Account changes are rare, so a per-user
or per-group marker would buy little and cost more stats per request.

When the marker cannot be written (a read-only or full data dir, a marker
path that cannot be a file): the change *is* committed, so the request or
command succeeds as it should; an ERROR is logged naming the marker and the
consequence. The process that made the change honours it at once all the
same (each :class:`AccountChanges` also remembers when it last marked, and
the app's principal cache uses the app's instance); other processes honour
it only when their cached entries expire (``accounts.cache_seconds``, 5 s).
Answering 500 instead would tell the caller a committed change failed, and
a retry would find nothing left to change.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect

from zstack_analyzer.service.auth.models import ApiToken, Group, Membership, User, UserSession
from zstack_analyzer.service.change_markers import marked_since, touch_marker

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Result
    from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

__all__ = ["WATCHED", "AccountChanges"]

logger = logging.getLogger(__name__)

#: Per account table, the columns a :class:`~.permissions.Principal` (or whether its
#: credential resolves at all) depends on. A change to one of them, or a deleted row,
#: marks; so does a new membership.
WATCHED: dict[type, frozenset[str]] = {
    User: frozenset({"username", "is_active", "is_admin"}),
    Group: frozenset({"name", "permissions"}),
    Membership: frozenset({"user_id", "group_id", "is_owner"}),
    ApiToken: frozenset({"user_id", "token_hash", "read_only", "expires_at", "revoked_at"}),
    UserSession: frozenset({"id_hash", "user_id", "csrf_token", "expires_at"}),
}
#: The ``Session.info`` key of the "this transaction changed accounts" flag.
_FLAG = "zstack.accounts_changed"


def _changes_principals(session: Session) -> bool:
    """Whether the flush about to be written changes what a cached principal may do."""
    if any(type(row) in WATCHED for row in session.deleted):
        return True
    if any(isinstance(row, Membership) for row in session.new):
        return True
    for row in session.dirty:
        columns = WATCHED.get(type(row))
        if columns is None:
            continue
        attrs = inspect(row).attrs
        if any(attrs[name].history.has_changes() for name in columns):
            return True
    return False


class AccountChanges:
    """The marker of one data dir: written after account commits, read by the principal caches."""

    def __init__(self, marker: Path | None) -> None:
        self.marker = marker
        #: The wall clock (ns) of this instance's last mark, written or not.
        self.marked_ns: int | None = None

    def mark(self) -> None:
        """Every process's cached principals fetched before now are stale (after a commit).

        Raises :class:`OSError` when the marker cannot be written; this instance
        remembers the change all the same (:meth:`changed_since`).
        """
        self.marked_ns = time.time_ns()
        if self.marker is not None:
            touch_marker(self.marker)

    def changed_since(self, fetched_ns: int) -> bool:
        """Whether accounts changed after (or about when) a fetch begun at ``fetched_ns``."""
        if self.marked_ns is not None and self.marked_ns >= fetched_ns:
            return True
        if self.marker is None:
            return False
        return marked_since(self.marker, fetched_ns)

    def watch(self, sessions: sessionmaker[Session]) -> None:
        """Mark after every commit of a session from ``sessions`` that changed accounts."""
        event.listen(sessions, "after_flush", self._after_flush)
        event.listen(sessions, "do_orm_execute", self._bulk)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    @staticmethod
    def _after_flush(session: Session, _context: Any) -> None:
        # new/dirty/deleted and attribute histories still show the flushed state here.
        if _changes_principals(session):
            session.info[_FLAG] = True

    @staticmethod
    def _bulk(state: ORMExecuteState) -> Result[Any] | None:
        """``session.execute(update(...)/delete(...))`` on an account table that hit rows."""
        if not (state.is_update or state.is_delete):
            return None
        mapper = state.bind_mapper
        if mapper is None or mapper.class_ not in WATCHED:
            return None
        result = state.invoke_statement()
        # Deleting nothing (a login finding no expired sessions) is no change.
        if getattr(result, "rowcount", 1) != 0:
            state.session.info[_FLAG] = True
        return result

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_FLAG, False):
            try:
                self.mark()
            except OSError as exc:
                # Committed: answer the success it is, and say loudly what is delayed.
                logger.error(
                    "account change committed, but the accounts-changed marker %s cannot be "
                    "written (%s): other server processes honour it only when their cached "
                    "credentials expire (ZSTACK_ACCOUNTS__CACHE_SECONDS); make the data dir "
                    "writable",
                    self.marker,
                    exc,
                )

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(_FLAG, None)
