"""Users, groups, memberships, tokens and import roots (``service/auth/accounts.py``), called directly.

Why direct calls on a migrated SQLite database: the CLI and the admin routes both call
these functions; their rows, refusals and messages are checked exactly here, quickly.
Passwords are hashed with argon2id at its lowest cost (restored afterwards).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from tests.mutation_kills.service_db import add_image, session
from zstack_analyzer.service.auth import accounts, passwords
from zstack_analyzer.service.auth.accounts import (
    AccountConflictError,
    AccountError,
    AccountNotFoundError,
)
from zstack_analyzer.service.auth.models import (
    DEFAULT_GROUP,
    ApiToken,
    Group,
    GroupImportRoot,
    Membership,
    Permission,
    User,
    UserSession,
)
from zstack_analyzer.service.auth.permissions import GroupRole
from zstack_analyzer.service.auth.sessions import renew_session, start_session
from zstack_analyzer.service.auth.tokens import hash_secret
from zstack_analyzer.service.db.models import Image

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session

__all__ = ["session"]

PASSWORD = "a long enough password"  # noqa: S105  (a test account's)


@pytest.fixture(autouse=True)
def fast_hashes() -> Iterator[None]:
    before = passwords._parameters
    passwords.configure(passwords.Argon2Parameters(time_cost=1, memory_kib=8192, parallelism=1))
    yield
    passwords.configure(before)


def _error(call: object) -> AccountError:
    with pytest.raises(AccountError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_error_kinds() -> None:
    assert issubclass(AccountError, ValueError)
    assert issubclass(AccountNotFoundError, AccountError)
    assert issubclass(AccountNotFoundError, LookupError)
    assert issubclass(AccountConflictError, AccountError)
    assert not issubclass(AccountConflictError, LookupError)
    assert accounts.MAX_TOKEN_DAYS == 3650


@pytest.mark.parametrize(
    "name", ["a", "Z", "7", "a.b_c@d-e", "A" * 150, "x" + "9" * 149, "ab@lab.org"]
)
def test_names_that_are_accepted(session: Session, name: str) -> None:
    assert accounts.create_user(session, name).username == name
    assert accounts.create_group(session, name).name == name


@pytest.mark.parametrize(
    "name",
    ["", ".a", "-a", "_a", "@a", "a b", "a/b", "a" * 151, "é", "a\n", "\na", "a\x00", "a\t"],
)
def test_names_that_are_refused(session: Session, name: str) -> None:
    error = _error(lambda: accounts.create_user(session, name))
    assert type(error) is AccountError
    assert str(error) == (
        f"username {name[:64]!r}: use 1-150 letters, digits, '.', '_', '@' or '-', "
        "starting with a letter or digit"
    )
    error = _error(lambda: accounts.create_group(session, name))
    assert str(error).startswith(f"group name {name[:64]!r}: use 1-150")
    assert session.scalar(select(User.id).where(User.username == name)) is None
    assert session.scalar(select(Group.id).where(Group.name == name)) is None


def test_parse_permission() -> None:
    assert accounts.parse_permission("private") is Permission.PRIVATE
    assert accounts.parse_permission(" Read-Write \n") is Permission.READ_WRITE
    assert accounts.parse_permission("READ-ANNOTATE") is Permission.READ_ANNOTATE
    error = _error(lambda: accounts.parse_permission("writable" * 10))
    assert type(error) is AccountError
    assert str(error) == (
        f"permissions {('writable' * 10)[:32]!r}: expected one of "
        "private, read-only, read-annotate, read-write"
    )
    assert error.__suppress_context__


def test_find_user_and_group(session: Session) -> None:
    made = accounts.create_user(session, "alice")
    assert accounts.find_user(session, "alice").id == made.id
    group = accounts.create_group(session, "lab")
    assert accounts.find_group(session, "lab").id == group.id
    error = _error(lambda: accounts.find_user(session, "bob" * 30))
    assert type(error) is AccountNotFoundError
    assert str(error) == f"no user {('bob' * 30)[:64]!r}"
    error = _error(lambda: accounts.find_group(session, "g" * 90))
    assert type(error) is AccountNotFoundError
    assert str(error) == f"no group {'g' * 64!r}"
    assert _error(lambda: accounts.find_user(session, "lab")).args  # a group is not a user


def test_default_group_is_kept_or_made_read_only(session: Session) -> None:
    first = accounts.default_group_id(session)
    assert accounts.default_group_id(session) == first
    session.delete(session.get(Group, first))
    session.commit()
    made = accounts.default_group_id(session)
    group = session.get(Group, made)
    assert (group.name, group.permissions) == (DEFAULT_GROUP, Permission.READ_ONLY.value)
    session.rollback()  # committed: still there
    assert session.scalar(select(Group.id).where(Group.name == DEFAULT_GROUP)) == made


def test_create_user_rows(session: Session) -> None:
    user = accounts.create_user(
        session,
        "alice",
        password=PASSWORD,
        display_name="A" * 300,
        email="a@lab.org",
        auth_source="ldap",
    )
    session.expire_all()
    row = session.get(User, user.id)
    assert row.display_name == "A" * 255
    assert (row.email, row.auth_source, row.is_admin, row.is_active, row.failed_logins) == (
        "a@lab.org",
        "ldap",
        False,
        True,
        0,
    )
    assert passwords.verify_password(row.password_hash, PASSWORD)
    plain = accounts.create_user(session, "bob")
    assert (plain.password_hash, plain.display_name, plain.email, plain.auth_source) == (
        None,
        "",
        None,
        "local",
    )
    assert accounts.create_user(session, "carol", password="").password_hash is None
    error = _error(lambda: accounts.create_user(session, "alice", admin=True))
    assert type(error) is AccountConflictError
    assert str(error) == "user 'alice' exists already"
    assert session.scalar(select(User.is_admin).where(User.username == "alice")) is False


def test_the_first_admin_adopts_ownerless_images(session: Session) -> None:
    ownerless = add_image(session, "old.tif")
    default = accounts.default_group_id(session)
    user = accounts.create_user(session, "user")  # not an admin: adopts nothing
    owned = add_image(session, "mine.tif", owner_id=user.id)
    assert session.get(Image, ownerless).owner_id is None
    root = accounts.create_user(session, "root", admin=True)
    session.expire_all()
    assert session.get(Image, ownerless).owner_id == root.id
    assert session.get(Image, owned).owner_id == user.id
    membership = session.get(Membership, (root.id, default))
    assert membership is not None
    assert membership.is_owner is True
    assert session.get(User, root.id).is_admin is True
    # The second admin adopts nothing and joins nothing.
    later = add_image(session, "later.tif")
    second = accounts.create_user(session, "second", admin=True)
    session.expire_all()
    assert session.get(Image, later).owner_id is None
    assert session.get(Membership, (second.id, default)) is None
    assert session.get(Membership, (user.id, default)) is None


def test_the_last_active_admin_stays(session: Session) -> None:
    accounts.create_user(session, "root", admin=True)
    for change in ({"active": False}, {"admin": False}):
        error = _error(lambda c=change: accounts.update_user(session, "root", **c))
        assert type(error) is AccountError
        assert str(error) == "'root' is the last active admin; make another admin first"
    # A disabled second admin does not count.
    accounts.create_user(session, "other", admin=True)
    accounts.update_user(session, "other", active=False)
    assert _error(lambda: accounts.update_user(session, "root", admin=False))
    # An active one does.
    accounts.update_user(session, "other", active=True)
    assert accounts.update_user(session, "root", admin=False).is_admin is False
    assert _error(lambda: accounts.update_user(session, "other", active=False))
    # Changes that do not lose an admin need no other admin.
    assert accounts.update_user(session, "other", admin=True, active=True).is_admin is True
    accounts.create_user(session, "plain")
    assert accounts.update_user(session, "plain", active=False).is_active is False
    assert type(_error(lambda: accounts.update_user(session, "ghost"))) is AccountNotFoundError


def test_update_user_fields(session: Session) -> None:
    user = accounts.create_user(session, "alice", password="old password", email="a@x.org")  # noqa: S106
    user.failed_logins = 4
    user.locked_until = datetime.now(UTC) + timedelta(minutes=5)
    session.commit()
    accounts.update_user(session, "alice", password=PASSWORD)
    session.expire_all()
    row = session.get(User, user.id)
    assert passwords.verify_password(row.password_hash, PASSWORD)
    assert (row.failed_logins, row.locked_until) == (0, None)
    # Re-enabling keeps sessions; disabling ends them.
    secret, _ = start_session(session, user.id, hours=1, client="t", previous=None)
    accounts.update_user(session, "alice", active=True)
    assert session.scalar(select(UserSession.user_id)) == user.id
    accounts.update_user(session, "alice", display_name="D" * 300, email="")
    session.expire_all()
    row = session.get(User, user.id)
    assert (row.display_name, row.email, row.is_active) == ("D" * 255, None, True)
    accounts.update_user(session, "alice", email="new@x.org", admin=True)
    session.expire_all()
    assert (session.get(User, user.id).email, session.get(User, user.id).is_admin) == (
        "new@x.org",
        True,
    )
    accounts.create_user(session, "root", admin=True)
    accounts.update_user(session, "alice", active=False)
    session.expire_all()
    assert session.get(User, user.id).is_active is False
    assert session.scalar(select(UserSession.id_hash)) is None
    assert secret


def _live_sessions(session: Session) -> dict[str, int]:
    rows = session.execute(select(UserSession.id_hash, UserSession.user_id)).all()
    return dict(rows)


def _live_tokens(session: Session) -> list[int]:
    session.expire_all()
    return list(session.scalars(select(ApiToken.id).where(ApiToken.revoked_at.is_(None))))


def test_a_password_reset_ends_the_users_sessions_and_revokes_their_tokens(
    session: Session,
) -> None:
    alice = accounts.create_user(session, "alice", password="old password")  # noqa: S106
    bob = accounts.create_user(session, "bob")
    for user_id in (alice.id, alice.id, bob.id):
        start_session(session, user_id, hours=1, client="t", previous=None)
    alices, _ = accounts.create_token(session, "alice")
    bobs, _ = accounts.create_token(session, "bob")
    revoked, _ = accounts.create_token(session, "alice", name="old")
    accounts.revoke_token(session, revoked.id)
    session.expire_all()
    when = session.get(ApiToken, revoked.id).revoked_at
    accounts.update_user(session, "alice", password=PASSWORD)
    assert set(_live_sessions(session).values()) == {bob.id}  # bob's stays
    assert _live_tokens(session) == [bobs.id]
    assert session.get(ApiToken, alices.id).revoked_at is not None
    assert session.get(ApiToken, revoked.id).revoked_at == when  # revoked once, not again
    # Other changes end nothing.
    start_session(session, alice.id, hours=1, client="t", previous=None)
    accounts.update_user(session, "alice", display_name="A", email="a@x", admin=True, active=True)
    assert sorted(_live_sessions(session).values()) == sorted([alice.id, bob.id])


def test_ones_own_password_change_keeps_that_session_and_the_tokens(session: Session) -> None:
    alice = accounts.create_user(session, "alice", password="old password")  # noqa: S106
    mine, _ = start_session(session, alice.id, hours=1, client="t", previous=None)
    start_session(session, alice.id, hours=1, client="t", previous=None)
    token, _ = accounts.create_token(session, "alice")
    accounts.update_user(session, "alice", password=PASSWORD, keep_session=mine, keep_tokens=True)
    assert _live_sessions(session) == {hash_secret(mine): alice.id}
    assert _live_tokens(session) == [token.id]


def test_renew_session_gives_the_same_session_a_new_id(session: Session) -> None:
    alice = accounts.create_user(session, "alice")
    old, row = start_session(session, alice.id, hours=1, client="t", previous=None)
    csrf, expires = row.csrf_token, row.expires_at
    renewed = renew_session(session, old)
    assert renewed is not None
    new, expires_at = renewed
    assert new != old
    assert expires_at.tzinfo is not None
    assert expires_at == expires.replace(tzinfo=expires_at.tzinfo)
    session.expire_all()
    (kept,) = session.scalars(select(UserSession)).all()
    assert (kept.id_hash, kept.csrf_token, kept.user_id) == (hash_secret(new), csrf, alice.id)
    assert renew_session(session, old) is None  # the old cookie names nothing any more


def test_other_users_sessions_stay_when_one_is_disabled(session: Session) -> None:
    alice = accounts.create_user(session, "alice")
    bob = accounts.create_user(session, "bob")
    start_session(session, alice.id, hours=1, client="t", previous=None)
    start_session(session, bob.id, hours=1, client="t", previous=None)
    accounts.update_user(session, "alice", active=False)
    assert session.scalars(select(UserSession.user_id)).all() == [bob.id]


def test_groups(session: Session) -> None:
    group = accounts.create_group(session, "lab")
    assert group.permissions == "private"
    assert accounts.create_group(session, "rw", " read-write").permissions == "read-write"
    error = _error(lambda: accounts.create_group(session, "lab", "read-only"))
    assert type(error) is AccountConflictError
    assert str(error) == "group 'lab' exists already"
    assert str(_error(lambda: accounts.create_group(session, "new", "bogus"))).startswith(
        "permissions 'bogus'"
    )
    assert session.scalar(select(Group.id).where(Group.name == "new")) is None
    changed = accounts.update_group(session, "lab", permissions="READ-ANNOTATE")
    session.expire_all()
    assert session.get(Group, changed.id).permissions == "read-annotate"
    assert type(_error(lambda: accounts.update_group(session, "x", permissions="private"))) is (
        AccountNotFoundError
    )


def test_delete_group(session: Session) -> None:
    accounts.create_group(session, "empty")
    accounts.delete_group(session, "empty")
    assert session.scalar(select(Group.id).where(Group.name == "empty")) is None
    full = accounts.create_group(session, "full")
    add_image(session, "in.tif", group_id=full.id)
    error = _error(lambda: accounts.delete_group(session, "full"))
    assert type(error) is AccountConflictError
    assert str(error) == "group 'full' still holds images; move or delete them first"
    accounts.default_group_id(session)
    error = _error(lambda: accounts.delete_group(session, DEFAULT_GROUP))
    assert type(error) is AccountConflictError
    assert str(error) == "the group 'default' cannot be deleted"
    assert type(_error(lambda: accounts.delete_group(session, "none"))) is AccountNotFoundError
    # Images elsewhere do not keep a group.
    accounts.create_group(session, "other")
    accounts.delete_group(session, "other")


def test_memberships(session: Session) -> None:
    group = accounts.create_group(session, "lab")
    user = accounts.create_user(session, "alice")
    made = accounts.set_membership(session, "lab", "alice")
    assert (made.user_id, made.group_id, made.is_owner) == (user.id, group.id, False)
    again = accounts.set_membership(session, "lab", "alice", owner=True)
    assert session.get(Membership, (user.id, group.id)).is_owner is True
    assert again.is_owner is True
    accounts.set_membership(session, "lab", "alice", owner=False)
    assert session.get(Membership, (user.id, group.id)).is_owner is False
    assert accounts.set_membership(session, "lab", "alice", remove=True) is None
    assert session.get(Membership, (user.id, group.id)) is None
    error = _error(lambda: accounts.set_membership(session, "lab", "alice", remove=True))
    assert type(error) is AccountNotFoundError
    assert str(error) == "'alice' is not in group 'lab'"
    owner = accounts.set_membership(session, "lab", "alice", owner=True)
    assert owner.is_owner is True
    assert type(_error(lambda: accounts.set_membership(session, "x", "alice"))) is (
        AccountNotFoundError
    )
    assert type(_error(lambda: accounts.set_membership(session, "lab", "x"))) is (
        AccountNotFoundError
    )


def test_tokens(session: Session) -> None:
    user = accounts.create_user(session, "alice")
    before = datetime.now(UTC)
    row, secret = accounts.create_token(session, "alice")
    assert secret.startswith("zst_")
    session.expire_all()
    row = session.get(ApiToken, row.id)
    assert (row.user_id, row.name, row.token_hash, row.read_only, row.expires_at) == (
        user.id,
        "token",
        hash_secret(secret),
        False,
        None,
    )
    named, _ = accounts.create_token(
        session, "alice", name="  " + "n" * 120, expires_days=2.5, read_only=True
    )
    assert named.name == ("n" * 120)[:100]
    assert named.read_only is True
    expires = named.expires_at.replace(tzinfo=UTC)
    assert before + timedelta(days=2.5) <= expires <= datetime.now(UTC) + timedelta(days=2.5)
    assert accounts.create_token(session, "alice", name="   ")[0].name == "token"
    assert accounts.create_token(session, "alice", name=" ci ")[0].name == "ci"
    assert accounts.create_token(session, "alice", expires_days=3650)[0].expires_at is not None
    assert accounts.create_token(session, "alice", expires_days=0.001)[0].expires_at is not None
    for days in (0, -1, 3650.01, 100_000):
        error = _error(lambda d=days: accounts.create_token(session, "alice", expires_days=d))
        assert type(error) is AccountError
        assert str(error) == "expiry: give 0 < days <= 3650"
    accounts.create_user(session, "root", admin=True)
    accounts.update_user(session, "alice", active=False)
    error = _error(lambda: accounts.create_token(session, "alice"))
    assert type(error) is AccountError
    assert str(error) == "user 'alice' is disabled"
    assert type(_error(lambda: accounts.create_token(session, "ghost"))) is AccountNotFoundError


def test_revoke_token(session: Session) -> None:
    alice = accounts.create_user(session, "alice")
    bob = accounts.create_user(session, "bob")
    row, _ = accounts.create_token(session, "alice")
    error = _error(lambda: accounts.revoke_token(session, row.id, user_id=bob.id))
    assert type(error) is AccountNotFoundError
    assert str(error) == f"no token {row.id}"
    assert session.get(ApiToken, row.id).revoked_at is None
    assert str(_error(lambda: accounts.revoke_token(session, 9999))) == "no token 9999"
    revoked = accounts.revoke_token(session, row.id, user_id=alice.id)
    session.expire_all()
    first = session.get(ApiToken, row.id).revoked_at
    assert first is not None
    assert revoked.id == row.id
    accounts.revoke_token(session, row.id)  # again: the first time stays
    session.expire_all()
    assert session.get(ApiToken, row.id).revoked_at == first
    other, _ = accounts.create_token(session, "bob")
    accounts.revoke_token(session, other.id)  # an admin's revoke: any token
    assert session.get(ApiToken, other.id).revoked_at is not None


def test_import_roots(session: Session, tmp_path: Path) -> None:
    lab = accounts.create_group(session, "lab")
    other = accounts.create_group(session, "other")
    (tmp_path / "b").mkdir()
    row = accounts.add_import_root(session, "lab", str(tmp_path / "x" / ".." / "b"))
    assert (row.group_id, row.path) == (lab.id, str(tmp_path / "b"))
    accounts.add_import_root(session, "other", str(tmp_path / "a"))
    error = _error(lambda: accounts.add_import_root(session, "other", str(tmp_path / "b")))
    assert type(error) is AccountConflictError
    assert str(error) == f"{tmp_path / 'b'} is an import root already"
    error = _error(lambda: accounts.add_import_root(session, "lab", "relative/" + "p" * 300))
    assert type(error) is AccountError
    assert str(error) == f"{('relative/' + 'p' * 300)[:200]!r}: give an absolute path"
    assert type(_error(lambda: accounts.add_import_root(session, "x", "/abs"))) is (
        AccountNotFoundError
    )
    roots = accounts.group_roots(session)
    assert roots == [
        accounts.ImportRootInfo(tmp_path / "a", other.id, "other"),
        accounts.ImportRootInfo(tmp_path / "b", lab.id, "lab"),
    ]
    assert isinstance(roots[0].path, Path)
    accounts.remove_import_root(session, str(tmp_path / "c" / ".." / "a"))
    assert [r.group for r in accounts.group_roots(session)] == ["lab"]
    error = _error(lambda: accounts.remove_import_root(session, str(tmp_path / "a")))
    assert type(error) is AccountNotFoundError
    assert str(error) == f"{tmp_path / 'a'} is not an import root"
    assert session.scalar(select(GroupImportRoot.path)) == str(tmp_path / "b")


def test_principal_for_user(session: Session) -> None:
    user = accounts.create_user(session, "alice")
    accounts.create_user(session, "bob")
    for name, level in (("zeta", "read-write"), ("alpha", "read-only"), ("mid", "private")):
        accounts.create_group(session, name, level)
    # Joined alpha first (its membership row comes first), but zeta has the lower group id.
    accounts.set_membership(session, "alpha", "alice")
    accounts.set_membership(session, "zeta", "alice", owner=True)
    accounts.set_membership(session, "mid", "bob")
    session.execute(
        Membership.__table__.update()
        .where(Membership.user_id == user.id)
        .values(created_at=datetime(2024, 1, 1, tzinfo=UTC))
    )
    session.commit()
    zeta = accounts.find_group(session, "zeta").id
    alpha = accounts.find_group(session, "alpha").id
    principal = accounts.principal_for_user(
        session,
        user,
        via="api-token",
        read_only=True,
        csrf_token="c",  # noqa: S106
        token_id=7,
    )
    assert zeta < alpha
    assert list(principal.groups) == [zeta, alpha]  # same join time: by group id
    assert principal.groups[zeta] == GroupRole(zeta, "zeta", Permission.READ_WRITE, True)
    assert principal.groups[alpha] == GroupRole(alpha, "alpha", Permission.READ_ONLY, False)
    assert (
        principal.user_id,
        principal.username,
        principal.is_admin,
        principal.read_only,
        principal.via,
        principal.csrf_token,
        principal.token_id,
    ) == (user.id, "alice", False, True, "api-token", "c", 7)
    session.execute(
        Membership.__table__.update()
        .where(Membership.group_id == alpha)
        .values(created_at=datetime(2023, 1, 1, tzinfo=UTC))
    )
    session.commit()
    plain = accounts.principal_for_user(session, user, via="session")
    assert list(plain.groups) == [alpha, zeta]  # joined first comes first
    assert (plain.read_only, plain.csrf_token, plain.token_id, plain.via) == (
        False,
        None,
        None,
        "session",
    )
    root = accounts.create_user(session, "root", admin=True)
    assert accounts.principal_for_user(session, root, via="session").is_admin is True


def test_token_times_are_utc_on_any_host(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    class HostClock(datetime):
        """A host nine hours east of UTC: only an explicit zone gives UTC."""

        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            if tz is not None:
                return fixed.astimezone(tz)
            return (fixed + timedelta(hours=9)).replace(tzinfo=None)

    monkeypatch.setattr(accounts, "datetime", HostClock)
    accounts.create_user(session, "alice")
    row, _ = accounts.create_token(session, "alice", expires_days=1)
    accounts.revoke_token(session, row.id)
    session.expire_all()
    stored = session.get(ApiToken, row.id)
    assert stored.expires_at.replace(tzinfo=UTC) == fixed + timedelta(days=1)
    assert stored.revoked_at.replace(tzinfo=UTC) == fixed


def test_without_any_admin_a_plain_user_may_still_be_changed(session: Session) -> None:
    """Only an admin can be the last active admin: before the first admin, changes go on."""
    accounts.create_user(session, "plain")
    assert accounts.update_user(session, "plain", active=False).is_active is False
    assert accounts.update_user(session, "plain", admin=False, active=True).is_admin is False


@pytest.mark.usefixtures("tokyo")
def test_a_password_reset_dates_the_revocation_in_utc_on_a_host_east_of_utc(
    session: Session,
) -> None:
    """The revoked tokens' ``revoked_at`` is UTC whatever the host's zone (here UTC+9)."""
    accounts.create_user(session, "alice", password="old password")  # noqa: S106
    token, _ = accounts.create_token(session, "alice")
    before = datetime.now(UTC)
    accounts.update_user(session, "alice", password=PASSWORD)
    after = datetime.now(UTC)
    session.expire_all()
    revoked_at = session.get(ApiToken, token.id).revoked_at
    assert revoked_at is not None
    assert before <= revoked_at.replace(tzinfo=UTC) <= after


def test_ones_own_change_checks_the_current_password_like_a_login(session: Session) -> None:
    """``change_own_password``: right current password, or a failure counted toward the lock.

    The session making the change stays, the others end, the user's tokens stay; a wrong
    current password counts like a failed login (the policy passed in), a locked account is
    refused before any check with the seconds left, a directory account is refused.
    """
    from zstack_analyzer.service.auth.accounts import AccountLockedError, WrongPasswordError
    from zstack_analyzer.service.auth.login import LoginPolicy

    alice = accounts.create_user(session, "alice", password=PASSWORD)
    mine, _ = start_session(session, alice.id, hours=1, client="t", previous=None)
    start_session(session, alice.id, hours=1, client="t", previous=None)
    token, _ = accounts.create_token(session, "alice")
    policy = LoginPolicy(max_failures=2, lockout=timedelta(minutes=10))

    def change(current: str, new: str = "the next password") -> Any:
        return accounts.change_own_password(
            session, "alice", current, new, client="c", policy=policy, keep_session=mine
        )

    changed = change(PASSWORD)
    assert changed.username == "alice"
    session.expire_all()
    assert passwords.verify_password(session.get(User, alice.id).password_hash, "the next password")
    assert _live_sessions(session) == {hash_secret(mine): alice.id}
    assert _live_tokens(session) == [token.id]
    with pytest.raises(WrongPasswordError) as wrong:
        change(PASSWORD)  # the old one is wrong now
    assert str(wrong.value) == "the current password is wrong"
    assert type(wrong.value) is WrongPasswordError and isinstance(wrong.value, AccountError)
    session.expire_all()
    assert session.get(User, alice.id).failed_logins == 1
    with pytest.raises(WrongPasswordError):
        change("another guess")  # the second failure locks (policy: 2)
    session.expire_all()
    assert session.get(User, alice.id).locked_until is not None
    with pytest.raises(AccountLockedError) as locked:
        change("the next password")  # even the right one, while locked
    assert 590 <= locked.value.retry_after <= 600
    assert str(locked.value) == (
        "too many wrong passwords: this account is locked; "
        f"try again in {locked.value.retry_after} s"
    )
    session.expire_all()
    assert passwords.verify_password(session.get(User, alice.id).password_hash, "the next password")
    assert _live_sessions(session) == {hash_secret(mine): alice.id}
    # A directory account's password is not kept here.
    accounts.create_user(session, "dora", auth_source="ldap")
    with pytest.raises(AccountConflictError) as conflict:
        accounts.change_own_password(
            session, "dora", "x", "the next password", client="c", policy=policy, keep_session=None
        )
    assert str(conflict.value) == (
        "the password of 'dora' is kept by the directory (ldap): "
        "change it there; this server never stores it"
    )
    with pytest.raises(AccountNotFoundError):
        accounts.change_own_password(
            session, "ghost", "x", "the next password", client="c", policy=policy, keep_session=None
        )
