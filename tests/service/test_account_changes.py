"""Which commits touch the accounts-changed marker, and how a principal cache reads it.

The marker must be touched by every commit that changes what an existing
credential may do (whatever path made it: a route, the CLI, an LDAP login,
a login replacing an old session), never by the frequent writes that change
nothing a cached principal holds (a token's ``last_used_at``, a failed login),
and never by a rolled-back change. A cache entry fetched in the same instant as
the marker, or up to the margin after it (coarse file-system mtimes), is stale.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from tests.service.authworld import FAST_PASSWORDS, PASSWORD
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth.account_changes import AccountChanges
from zstack_analyzer.service.auth.login import authenticate_password
from zstack_analyzer.service.auth.models import Group, User
from zstack_analyzer.service.auth.permissions import Principal
from zstack_analyzer.service.auth.principal import PrincipalCache, resolve_api_token
from zstack_analyzer.service.auth.sessions import end_session, start_session
from zstack_analyzer.service.change_markers import CHANGE_MARGIN_NS, marked_since
from zstack_analyzer.service.config import AccountSettings
from zstack_analyzer.service.db.migrations import upgrade_database
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session


class Watched:
    """A migrated SQLite database whose sessions are watched; tells whether a step marked."""

    def __init__(self, tmp: Path) -> None:
        self.marker = tmp / "accounts.changed"
        self.database = Database(make_engine(f"sqlite:///{tmp / 'zstack.db'}"))
        upgrade_database(self.database.engine)
        AccountChanges(self.marker).watch(self.database.sessions)

    def marks(self, step: Callable[[Session], object]) -> bool:
        """Run ``step`` in a fresh session; whether the marker was touched meanwhile."""
        before = self.marker.stat().st_mtime_ns if self.marker.exists() else None
        with self.database.sessions() as session:
            step(session)
        after = self.marker.stat().st_mtime_ns if self.marker.exists() else None
        return after != before


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    AccountSettings(**FAST_PASSWORDS).apply_password_cost()
    world = Watched(tmp_path)
    yield world
    world.database.engine.dispose()


def test_changes_that_narrow_access_mark_and_others_do_not(watched: Watched) -> None:
    marks = watched.marks
    # Made: nothing cached can depend on a row that did not exist.
    assert not marks(lambda s: accounts.create_user(s, "bob", password=PASSWORD))
    # The first admin is made an owner of "default": a new membership (see below).
    assert marks(lambda s: accounts.create_user(s, "root", password=PASSWORD, admin=True))
    assert not marks(lambda s: accounts.create_user(s, "carol", password=PASSWORD, admin=True))
    assert not marks(lambda s: accounts.create_group(s, "g", "read-annotate"))
    token: dict[str, object] = {}

    def make_token(session: Session) -> None:
        token["row"], token["secret"] = accounts.create_token(session, "bob")

    assert not marks(make_token)
    token_id, secret = token["row"].id, str(token["secret"])  # type: ignore[attr-defined]
    assert not marks(lambda s: start_session(s, 1, hours=1, client="c", previous=None))
    # A new membership changes bob's cached groups (widens; marked all the same).
    assert marks(lambda s: accounts.set_membership(s, "g", "bob"))
    assert not marks(lambda s: accounts.set_membership(s, "g", "bob"))  # no change
    # Frequent writes that change no principal.
    assert not marks(lambda s: resolve_api_token(s, secret))  # writes last_used_at
    assert not marks(lambda s: authenticate_password(s, "bob", "wrong password", "c"))
    assert not marks(lambda s: accounts.update_user(s, "bob", display_name="Bob", email="b@x"))
    # carol has no session and no token: her new password ends nothing (see below).
    assert not marks(lambda s: accounts.update_user(s, "carol", password="another password"))  # noqa: S106
    assert not marks(lambda s: end_session(s, "no such session"))
    # Each change that takes rights away.
    assert marks(lambda s: accounts.set_membership(s, "g", "bob", owner=True))  # role
    assert marks(lambda s: accounts.set_membership(s, "g", "bob", owner=False))  # role
    assert marks(lambda s: accounts.update_group(s, "g", permissions="private"))
    assert marks(lambda s: accounts.revoke_token(s, token_id))
    assert not marks(lambda s: accounts.revoke_token(s, token_id))  # revoked already
    assert marks(lambda s: accounts.update_user(s, "root", admin=False))
    assert marks(lambda s: accounts.set_membership(s, "g", "bob", remove=True))
    assert marks(lambda s: accounts.update_user(s, "bob", active=False))
    assert marks(lambda s: accounts.delete_group(s, "g"))


def test_ending_a_session_marks_logout_and_a_login_replacing_one(watched: Watched) -> None:
    watched.marks(lambda s: accounts.create_user(s, "bob", password=PASSWORD))
    secrets: list[str] = []
    watched.marks(
        lambda s: secrets.append(start_session(s, 1, hours=1, client="c", previous=None)[0])
    )
    # A login from a browser that still holds a session ends that one (session fixation).
    assert watched.marks(lambda s: start_session(s, 1, hours=1, client="c", previous=secrets[0]))
    watched.marks(
        lambda s: secrets.append(start_session(s, 1, hours=1, client="c", previous=None)[0])
    )
    assert watched.marks(lambda s: end_session(s, secrets[1]))  # logout


def test_an_ldap_login_that_leaves_a_group_marks(watched: Watched) -> None:
    from zstack_analyzer.service.auth.ldap_login import sync_memberships

    def setup(session: Session) -> None:
        accounts.create_user(session, "dora", auth_source="ldap")
        for name in ("g-a", "g-b"):
            accounts.create_group(session, name, "read-only")
            accounts.set_membership(session, name, "dora")

    watched.marks(setup)

    def sync(wanted: set[str]) -> Callable[[Session], None]:
        def step(session: Session) -> None:
            user = session.scalars(select(User).where(User.username == "dora")).one()
            sync_memberships(session, user, wanted, {"g-a", "g-b"})
            session.commit()

        return step

    assert not watched.marks(sync({"g-a", "g-b"}))  # the directory agrees: no change
    assert watched.marks(sync({"g-a"}))  # dora left g-b


def test_a_new_password_marks_when_it_ends_a_session_or_revokes_a_token(watched: Watched) -> None:
    def new_password(
        session: Session, *, keep_session: str | None = None, keep_tokens: bool = False
    ) -> None:
        accounts.update_user(
            session,
            "bob",
            password="another password",  # noqa: S106
            keep_session=keep_session,
            keep_tokens=keep_tokens,
        )

    watched.marks(lambda s: accounts.create_user(s, "bob", password=PASSWORD))
    assert not watched.marks(new_password)  # nothing to end
    secrets: list[str] = []
    watched.marks(
        lambda s: secrets.append(start_session(s, 1, hours=1, client="c", previous=None)[0])
    )
    assert not watched.marks(lambda s: new_password(s, keep_session=secrets[0]))  # kept
    assert watched.marks(new_password)  # ended
    watched.marks(lambda s: accounts.create_token(s, "bob"))
    assert not watched.marks(lambda s: new_password(s, keep_tokens=True))  # kept
    assert watched.marks(new_password)  # revoked
    assert not watched.marks(new_password)  # revoked already


def test_the_changing_process_honours_its_change_without_the_marker(tmp_path: Path) -> None:
    """A mark that could not be written still drops the marking instance's older entries."""
    marker = tmp_path / "a-file" / "accounts.changed"
    (tmp_path / "a-file").write_text("not a directory")
    changes = AccountChanges(marker)
    cache = PrincipalCache(ttl_s=3600, changes=changes)
    cache.put("k", _principal(), not_after=None)
    with pytest.raises(OSError):  # a real failure: the marker's folder is a file
        changes.mark()
    assert cache.get("k") is None
    cache.put("k", _principal(), not_after=None)  # fetched after the change
    assert cache.get("k") == _principal()
    # Another instance on the same path (another process) has only the file to go by.
    other = PrincipalCache(ttl_s=3600, changes=AccountChanges(marker))
    other.put("k", _principal(), not_after=None, fetched_ns=time.time_ns() - 10**9)
    assert other.get("k") == _principal()


def test_a_rolled_back_change_does_not_mark(watched: Watched) -> None:
    watched.marks(lambda s: accounts.create_group(s, "g", "read-write"))

    def lower_then_roll_back(session: Session) -> None:
        group = session.scalars(select(Group).where(Group.name == "g")).one()
        group.permissions = "private"
        session.flush()
        session.rollback()
        session.commit()  # nothing left to commit

    assert not watched.marks(lower_then_roll_back)


def _principal() -> Principal:
    return Principal(user_id=1, username="bob")


def _set_marker(path: Path, ns: int) -> None:
    path.touch()
    os.utime(path, ns=(ns, ns))


def test_a_marker_in_the_same_instant_as_the_fetch_or_within_the_margin_drops_it(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "accounts.changed"
    cache = PrincipalCache(ttl_s=3600, changes=AccountChanges(marker))
    fetched = time.time_ns() - 10 * CHANGE_MARGIN_NS  # a fetch well in the past
    cache.put("k", _principal(), not_after=None, fetched_ns=fetched)
    assert cache.get("k") == _principal()  # no marker yet: "never changed"
    _set_marker(marker, fetched - CHANGE_MARGIN_NS - 1)  # long before the fetch
    assert cache.get("k") == _principal()
    _set_marker(marker, fetched - CHANGE_MARGIN_NS)  # a coarse mtime rounded down
    assert cache.get("k") is None
    assert "k" not in cache._entries
    cache.put("k", _principal(), not_after=None, fetched_ns=fetched)
    _set_marker(marker, fetched)  # the same instant
    assert cache.get("k") is None
    # Without a marker path (no shared data dir) the cache only has its TTL.
    alone = PrincipalCache(ttl_s=3600, changes=AccountChanges(None))
    alone.put("k", _principal(), not_after=None, fetched_ns=fetched)
    assert alone.get("k") == _principal()


def test_marked_since_compares_with_the_margin(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    assert not marked_since(marker, 0)  # missing: never changed
    _set_marker(marker, 10 * CHANGE_MARGIN_NS)
    assert marked_since(marker, 11 * CHANGE_MARGIN_NS)
    assert not marked_since(marker, 11 * CHANGE_MARGIN_NS + 1)
    assert not marked_since(marker, 10 * CHANGE_MARGIN_NS + 1, margin_ns=0)
    assert marked_since(marker, 10 * CHANGE_MARGIN_NS, margin_ns=0)
