"""The accounts-changed marker (``service/auth/account_changes.py``): bulk statements, the flag.

Why: besides the ORM flushes, ``session.execute(update(...)/delete(...))`` on an
account table changes principals too (a password reset revokes tokens that way), and a
bulk statement that hits no row (a login finding no expired session) must not mark:
every process would resolve every cached credential again for nothing. Each step runs
in its own session of a watched, migrated SQLite database; the marker's mtime tells
whether it marked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import delete, select, update

from tests.service.authworld import FAST_PASSWORDS, PASSWORD
from tests.service.test_account_changes import Watched
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth.models import ApiToken, GroupImportRoot, User, UserSession
from zstack_analyzer.service.config import AccountSettings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    AccountSettings(**FAST_PASSWORDS).apply_password_cost()
    world = Watched(tmp_path)
    world.marks(lambda s: accounts.create_user(s, "bob", password=PASSWORD))
    yield world
    world.database.engine.dispose()


def _run(statement: object) -> object:
    def step(session: Session) -> None:
        session.execute(statement)  # type: ignore[call-overload]
        session.commit()

    return step


def test_bulk_statements_on_account_tables_mark_only_when_they_hit_rows(watched: Watched) -> None:
    # Nothing to delete or revoke: no change.
    assert not watched.marks(_run(delete(UserSession).where(UserSession.user_id == 1)))
    assert not watched.marks(_run(update(ApiToken).values(read_only=True)))
    watched.marks(lambda s: accounts.create_token(s, "bob"))
    assert watched.marks(_run(update(ApiToken).values(read_only=True)))
    assert watched.marks(_run(update(User).where(User.username == "bob").values(is_active=False)))
    assert watched.marks(_run(delete(ApiToken)))


def test_bulk_statements_on_other_tables_and_selects_do_not_mark(
    watched: Watched, tmp_path: Path
) -> None:
    watched.marks(lambda s: accounts.add_import_root(s, "default", str(tmp_path)))
    # A row hit, but import roots change no cached principal (placement reads them anew).
    assert not watched.marks(_run(update(GroupImportRoot).values(path=str(tmp_path / "x"))))
    assert not watched.marks(_run(delete(GroupImportRoot)))
    assert not watched.marks(_run(select(User)))


def test_a_flush_changing_a_root_and_a_group_level_marks(watched: Watched, tmp_path: Path) -> None:
    """A dirty row of an unwatched table does not hide a watched change flushed with it.

    ``Session.dirty`` is a set: the import root is looked at first in some flushes and not
    in others, so the flush is tried until the root comes first (rolled back otherwise).
    """
    from zstack_analyzer.service.auth.models import Group

    watched.marks(lambda s: accounts.add_import_root(s, "default", str(tmp_path)))
    first: list[bool] = []

    def both(session: Session) -> None:
        for attempt in range(200):
            root = session.scalars(select(GroupImportRoot)).one()
            group = session.scalars(select(Group).where(Group.name == "default")).one()
            root.path = str(tmp_path / f"elsewhere-{attempt}")
            group.permissions = "private"
            if isinstance(next(iter(session.dirty)), GroupImportRoot):
                first.append(True)
                session.commit()
                return
            session.rollback()
            session.expunge_all()

    assert watched.marks(both)
    assert first == [True]


def test_a_mark_in_the_same_nanosecond_as_a_fetch_drops_it(tmp_path: Path) -> None:
    """The marking process's own memory: a fetch begun in the instant of a change is stale.

    Why: the clock may give the fetch and the change the same reading (coarse clocks), and
    the fetch may then have read the rows before the change committed.
    """
    from zstack_analyzer.service.auth.account_changes import AccountChanges

    changes = AccountChanges(None)  # no marker file: only the instance's memory counts
    assert not changes.changed_since(0)
    changes.mark()
    assert changes.marked_ns is not None
    assert changes.changed_since(changes.marked_ns)
    assert changes.changed_since(changes.marked_ns - 1)
    assert not changes.changed_since(changes.marked_ns + 1)
    with_file = AccountChanges(tmp_path / "accounts.changed")
    with_file.mark()
    assert with_file.marked_ns is not None and with_file.marker is not None
    assert with_file.marker.exists()
    assert with_file.changed_since(with_file.marked_ns)


def test_a_marker_that_cannot_be_written_is_logged_with_its_path_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The commit stands; the ERROR names the marker as such and the file system's reason."""
    from zstack_analyzer.service.auth.account_changes import AccountChanges
    from zstack_analyzer.service.db.migrations import upgrade_database
    from zstack_analyzer.service.db.session import Database, make_engine

    (tmp_path / "a-file").write_text("not a directory")
    blocked = tmp_path / "a-file" / "accounts.changed"  # leads through a regular file
    database = Database(make_engine(f"sqlite:///{tmp_path / 'zstack.db'}"))
    try:
        upgrade_database(database.engine)
        AccountChanges(blocked).watch(database.sessions)
        logger = "zstack_analyzer.service.auth.account_changes"
        with caplog.at_level("ERROR", logger=logger), database.sessions() as session:
            accounts.create_user(session, "root", password=PASSWORD, admin=True)
        with database.sessions() as session:  # committed all the same
            assert session.scalar(select(User.is_admin).where(User.username == "root")) is True
    finally:
        database.engine.dispose()
    (record,) = [r for r in caplog.records if r.name.endswith("account_changes")]
    message = record.getMessage()
    assert message.startswith(
        f"account change committed, but the accounts-changed marker {blocked} cannot be written ("
    )
    from zstack_analyzer.service.change_markers import touch_marker

    with pytest.raises(OSError) as reason:  # what the file system says, not a mock
        touch_marker(blocked)
    assert message == (
        f"account change committed, but the accounts-changed marker {blocked} cannot be "
        f"written ({reason.value}): other server processes honour it only when their cached "
        "credentials expire (ZSTACK_ACCOUNTS__CACHE_SECONDS); make the data dir writable"
    )


def test_a_rollback_forgets_the_change_and_a_read_only_rollback_is_quiet(watched: Watched) -> None:
    """A rolled-back change never marks, not even at the session's next (empty) commit."""
    from zstack_analyzer.service.auth.models import Group

    def roll_back_then_commit_nothing(session: Session) -> None:
        session.scalars(select(User)).all()
        session.rollback()  # nothing flagged: a rollback with no flag must not fail
        group = session.scalars(select(Group).where(Group.name == "default")).one()
        group.permissions = "private"
        session.flush()
        session.rollback()
        session.commit()

    assert not watched.marks(roll_back_then_commit_nothing)
