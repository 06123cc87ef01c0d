"""LDAP login (``service/auth/ldap.py`` and ``ldap_login.py``) against one real slapd per session.

Why a directory of its own: ``tests/service/test_ldap.py`` starts its slapd per module, which
the mutation runner would restart for every mutant; this one is session-scoped, and the
authenticator is called directly on a migrated SQLite copy, so each check costs a bind or
two. The directory holds what the module's rules turn on: usernames at the length limit and
one over it, a name with a space, two people a filter finds at once, a person without the
optional attributes, groups of both member kinds and a group nobody maps.
"""

from __future__ import annotations

import logging
import socket
import ssl
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from tests.ldapserver import (
    GROUP_MAP,
    GROUPS,
    IMAGING,
    MICROSCOPY,
    OTHERS,
    PEOPLE,
    running_slapd,
    search_settings,
    slapd_missing,
    template_settings,
)
from tests.mutation_kills import service_db
from tests.needs import unavailable
from zstack_analyzer.service.auth import ldap as ldap_mod
from zstack_analyzer.service.auth.audit import AuditEvent
from zstack_analyzer.service.auth.ldap import (
    DirectoryUser,
    LdapUnavailableError,
    directory_login,
    mapped_groups,
    normalise_dn,
)
from zstack_analyzer.service.auth.ldap_login import (
    LdapAuthenticator,
    LoginDirectoryUnavailableError,
    sync_memberships,
)
from zstack_analyzer.service.auth.models import Group, Membership, User
from zstack_analyzer.service.config import LdapSettings

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sqlalchemy.orm import Session

    from tests.ldapserver import LdapServer

LONGEST = "l" * 150
TOO_LONG = "m" * 151
SECRET = "open-sesame-7"  # noqa: S105 - every test person's password

_PEOPLE = [
    # uid, cn, extra attribute lines
    ("alice", "Alice Liddell", "mail: alice@example.org\nmail: a.liddell@example.org\n"),
    ("bob", "Bob Builder", "description: twin\n"),
    ("dora", "Dora", "description: twin\n"),
    ("mary ann", "Mary Ann", ""),
    (LONGEST, "Longest", ""),
    (TOO_LONG, "Too Long", ""),
    ("plain", "P" * 300, "displayName: Plain Person\n"),
]


def _directory() -> str:
    people = "".join(
        f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: S\n"
        f"{extra}userPassword: {SECRET}\n\n"
        for uid, cn, extra in _PEOPLE
    )
    return (
        people
        + f"dn: {IMAGING}\nobjectClass: groupOfNames\ncn: imaging\nmember: uid=alice,{PEOPLE}\n\n"
        + f"dn: {MICROSCOPY}\nobjectClass: groupOfUniqueNames\ncn: microscopy\n"
        + f"uniqueMember: uid=alice,{PEOPLE}\nuniqueMember: uid=plain,{PEOPLE}\n\n"
        + f"dn: {OTHERS}\nobjectClass: groupOfNames\ncn: others\nmember: uid=alice,{PEOPLE}\n"
        + f"member: uid=bob,{PEOPLE}\n"
    )


@pytest.fixture(scope="session")
def slapd() -> Iterator[LdapServer]:
    """One slapd for the whole session (the mutation runner keeps session fixtures)."""
    missing = slapd_missing()
    if missing:
        unavailable(missing)
    with running_slapd(member_of=True) as server:
        server.add(_directory())
        yield server


def _dead_url() -> str:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ldap://127.0.0.1:{port}"


# --- ldap.py: the directory ------------------------------------------------------------------


def test_person_groups_and_attributes(slapd: LdapServer) -> None:
    for settings in (template_settings(slapd), search_settings(slapd)):
        alice = directory_login(settings, "alice", SECRET)
        assert alice == DirectoryUser(
            username="alice",
            dn=f"uid=alice,{PEOPLE}",
            display_name="Alice Liddell",
            email="alice@example.org",
            groups=frozenset(normalise_dn(dn) for dn in (IMAGING, MICROSCOPY, OTHERS)),
        )
    # Other attributes by configuration; a missing one falls back (name) or is None (e-mail).
    plain = directory_login(
        template_settings(slapd, display_name_attribute="displayName", email_attribute="mail"),
        "plain",
        SECRET,
    )
    assert plain is not None
    assert (plain.display_name, plain.email) == ("Plain Person", None)
    alice = directory_login(
        template_settings(slapd, display_name_attribute="displayName"), "alice", SECRET
    )
    assert alice is not None
    assert alice.display_name == "alice"
    by_cn = directory_login(template_settings(slapd, username_attribute="cn"), "mary ann", SECRET)
    assert by_cn is not None
    assert by_cn.username == "Mary Ann"
    # Without a group base only memberOf counts (this directory has none).
    bare = directory_login(template_settings(slapd, group_base=None), "alice", SECRET)
    assert bare is not None
    assert bare.groups == {normalise_dn(IMAGING), normalise_dn(OTHERS)}  # groupOfNames only
    plain_groups = directory_login(template_settings(slapd, group_base=None), "plain", SECRET)
    assert plain_groups is not None
    assert plain_groups.groups == frozenset()
    # A group filter of one's own: its groups are added to memberOf's.
    only_unique = template_settings(slapd, group_filter="(uniqueMember={dn})")
    unique = directory_login(only_unique, "alice", SECRET)
    assert unique is not None
    assert unique.groups == {normalise_dn(dn) for dn in (IMAGING, OTHERS, MICROSCOPY)}
    only_plain = directory_login(only_unique, "plain", SECRET)
    assert only_plain is not None
    assert only_plain.groups == {normalise_dn(MICROSCOPY)}


def test_username_limits(slapd: LdapServer) -> None:
    settings = template_settings(slapd)
    assert directory_login(settings, LONGEST, SECRET) is not None
    assert directory_login(settings, TOO_LONG, SECRET) is None  # the directory has it; we don't
    spaced = directory_login(settings, "mary ann", SECRET)
    assert spaced is not None
    assert spaced.username == "mary ann"
    assert directory_login(settings, "mary\x1fann", SECRET) is None
    assert directory_login(settings, "alice", "") is None
    assert directory_login(settings, "", SECRET) is None
    off = LdapSettings()
    assert directory_login(off, "alice", SECRET) is None


def test_search_needs_exactly_one_person(slapd: LdapServer) -> None:
    twins = search_settings(slapd, search_filter="(description={username})")
    assert directory_login(twins, "twin", SECRET) is None  # bob and dora: ambiguous
    one = search_settings(slapd, search_filter="(cn={username})")
    found = directory_login(one, "Bob Builder", SECRET)
    assert found is not None
    assert found.dn == f"uid=bob,{PEOPLE}"
    # The search looks under search_base only.
    elsewhere = search_settings(slapd, search_base=GROUPS)
    assert directory_login(elsewhere, "alice", SECRET) is None
    # An anonymous search (no service account) works where the directory allows reading.
    anonymous = search_settings(slapd, bind_dn=None, bind_password=None)
    assert directory_login(anonymous, "alice", SECRET) is not None


def test_refusals_and_outages(slapd: LdapServer) -> None:
    refused = search_settings(slapd, bind_password="wrong")  # noqa: S106
    with pytest.raises(LdapUnavailableError) as raised:
        directory_login(refused, "alice", SECRET)
    assert str(raised.value) == (
        f"LDAP server {slapd.url}: the search account {slapd.root_dn} was refused"
    )
    dead = template_settings(slapd, url=_dead_url())
    with pytest.raises(LdapUnavailableError) as raised:
        directory_login(dead, "alice", SECRET)
    assert str(raised.value).startswith(f"LDAP server {dead.url} unavailable: ")
    broken = search_settings(slapd, search_filter="(uid={username}")
    with pytest.raises(LdapUnavailableError) as raised:
        directory_login(broken, "alice", SECRET)
    assert str(raised.value).startswith(f"LDAP server {slapd.url} unavailable: ")
    tls = template_settings(slapd, start_tls=True)
    with pytest.raises(LdapUnavailableError) as raised:
        directory_login(tls, "alice", SECRET)
    assert str(raised.value).startswith(f"LDAP server {slapd.url}")


def test_server_and_connection_options(slapd: LdapServer) -> None:
    plain = ldap_mod._server(template_settings(slapd, url=slapd.url + "/", timeout_seconds=2.5))
    assert (plain.host, plain.port, plain.ssl, plain.tls) == (
        "127.0.0.1",
        int(slapd.url.rsplit(":", 1)[1]),
        False,
        None,
    )
    assert plain.connect_timeout == 2.5
    # Only trailing slashes go (a host may end in any letter).
    named = ldap_mod._server(template_settings(slapd, url="ldap://directoryX//"))
    assert (named.host, named.port) == ("directoryX", 389)
    assert plain.get_info == "NO_INFO"
    ca = "/etc/ssl/certs/ca-certificates.crt"
    secure = ldap_mod._server(template_settings(slapd, url="LDAPS://127.0.0.1:636", ca_file=ca))
    assert secure.ssl is True
    assert secure.tls.validate == ssl.CERT_REQUIRED
    assert secure.tls.ca_certs_file == ca
    starttls = ldap_mod._server(template_settings(slapd, start_tls=True))
    assert starttls.tls.validate == ssl.CERT_REQUIRED
    assert starttls.tls.ca_certs_file is None
    settings = template_settings(slapd, timeout_seconds=1.2)
    bound = ldap_mod._connection(settings, plain, "uid=x", "pw")
    assert (bound.user, bound.password, bound.authentication) == ("uid=x", "pw", "SIMPLE")
    assert bound.receive_timeout == 2
    assert (bound.raise_exceptions, bound.read_only, bound.check_names) == (False, True, False)
    anonymous = ldap_mod._connection(
        template_settings(slapd, timeout_seconds=0.2), plain, None, None
    )
    assert anonymous.authentication == "ANONYMOUS"
    assert anonymous.receive_timeout == 1


def test_dn_spelling_and_mapping() -> None:
    assert normalise_dn(" CN=Imaging , OU=Groups,DC=Example ") == "cn=imaging,ou=groups,dc=example"
    assert normalise_dn("cn=a+uid=B,ou=c") == "cn=a+uid=b,ou=c"
    assert normalise_dn("  Not A DN  ") == "not a dn"
    person = DirectoryUser("a", "uid=a", "A", None, frozenset({"cn=x,dc=y", "cn=z,dc=y"}))
    assert mapped_groups(person, {"CN=X, DC=Y": "ex", "cn=w,dc=y": "we"}) == {"ex"}
    assert ldap_mod._first({"attributes": {"cn": ["one", "two"]}}, "cn") == "one"
    assert ldap_mod._first({"attributes": {"cn": []}}, "cn") is None
    assert ldap_mod._first({"attributes": {"cn": "text"}}, "cn") == "text"
    assert ldap_mod._first({"attributes": {"cn": ""}}, "cn") is None
    assert ldap_mod._first({"attributes": {}}, "cn") is None
    assert ldap_mod._first({}, "cn") is None


# --- ldap_login.py: what a bind means for our accounts ---------------------------------------


def _groups(session: Session, username: str) -> dict[str, bool]:
    rows = session.execute(
        select(Group.name, Membership.is_owner)
        .join(Membership, Membership.group_id == Group.id)
        .join(User, User.id == Membership.user_id)
        .where(User.username == username)
    ).all()
    return dict(rows)


def _trail(session: Session) -> list[tuple[Any, ...]]:
    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    return [(r.action, r.username, r.target, r.details, r.user_id) for r in rows]


@pytest.fixture
def lab(session: Session) -> Session:
    from zstack_analyzer.service.auth import accounts

    accounts.create_group(session, "imaging", "read-only")
    accounts.create_group(session, "microscopy", "read-write")
    accounts.create_group(session, "local-only", "private")
    return session


def test_first_login_creates_the_user_with_mapped_groups(
    slapd: LdapServer,
    lab: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = LdapAuthenticator(template_settings(slapd, group_map={**GROUP_MAP, OTHERS: "missing"}))
    with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.ldap_login"):
        user = check(lab, "alice", SECRET, None)
    assert isinstance(user, User)
    lab.commit()
    assert (user.username, user.auth_source, user.display_name, user.email) == (
        "alice",
        "ldap",
        "Alice Liddell",
        "alice@example.org",
    )
    assert user.password_hash is None
    assert _groups(lab, "alice") == {"imaging": False, "microscopy": False}
    assert caplog.messages == [
        "LDAP group map names group 'missing', which does not exist; skipped"
    ]
    dn = f"uid=alice,{PEOPLE}"
    assert _trail(lab) == [
        ("user_create", "alice", "alice", {"dn": dn, "via": "ldap"}, user.id),
        ("membership_add", "alice", "imaging", {"group": "imaging", "via": "ldap"}, user.id),
        ("membership_add", "alice", "microscopy", {"group": "microscopy", "via": "ldap"}, user.id),
    ]
    # The wrong password, and an unknown person: no account, nothing recorded.
    assert check(lab, "alice", "wrong", user) is None
    assert check(lab, "nobody", SECRET, None) is None
    assert len(_trail(lab)) == 3


def test_later_logins_follow_the_directory(slapd: LdapServer, lab: Session) -> None:
    from zstack_analyzer.service.auth import accounts

    check = LdapAuthenticator(template_settings(slapd))
    user = check(lab, "alice", SECRET, None)
    assert user is not None
    lab.commit()
    # Admins' changes: an owner flag in a mapped group, a group the map does not name; and the
    # directory no longer lists imaging (the map now names microscopy only).
    accounts.set_membership(lab, "microscopy", "alice", owner=True)
    accounts.set_membership(lab, "local-only", "alice")
    user.display_name = "old"
    user.email = "old@example.org"
    lab.commit()
    narrowed = LdapAuthenticator(template_settings(slapd, group_map={MICROSCOPY: "microscopy"}))
    narrowed_check = narrowed(lab, "alice", SECRET, user)
    assert narrowed_check is user
    lab.commit()
    assert _groups(lab, "alice") == {"imaging": False, "microscopy": True, "local-only": False}
    # Imaging is not managed by that map: it stays. With the full map and alice out of
    # microscopy in the directory's eyes (a filter that finds only groupOfNames groups):
    only_names = LdapAuthenticator(template_settings(slapd, group_filter="(member={dn})"))
    assert only_names(lab, "alice", SECRET, user) is user
    lab.commit()
    assert _groups(lab, "alice") == {"imaging": False, "local-only": False}
    assert (user.display_name, user.email) == ("Alice Liddell", "alice@example.org")
    assert _trail(lab)[-1] == (
        "membership_remove",
        "alice",
        "microscopy",
        {"group": "microscopy", "via": "ldap"},
        user.id,
    )
    # A long directory name is cut to the column's 255 characters.
    plain = check(lab, "plain", SECRET, None)
    assert plain is not None
    lab.commit()
    assert plain.display_name == "P" * 255
    again = check(lab, "plain", SECRET, plain)
    assert again is plain
    assert plain.display_name == "P" * 255


def test_disabled_and_locked_accounts(slapd: LdapServer, lab: Session) -> None:
    check = LdapAuthenticator(template_settings(slapd))
    user = check(lab, "alice", SECRET, None)
    assert user is not None
    lab.commit()
    events = len(_trail(lab))
    # Disabled: the directory still says yes (the caller refuses inactive users), but the
    # memberships are not touched.
    user.is_active = False
    lab.execute(select(Membership))  # keep the session usable
    for membership in lab.scalars(select(Membership).where(Membership.user_id == user.id)):
        lab.delete(membership)
    lab.commit()
    assert check(lab, "alice", SECRET, user) is user
    assert _groups(lab, "alice") == {}
    assert len(_trail(lab)) == events
    user.is_active = True
    # Locked (a naive time, as SQLite gives it back): refused until the lock ends.
    user.locked_until = (datetime.now(UTC) + timedelta(minutes=5)).replace(tzinfo=None)
    lab.commit()
    assert check(lab, "alice", SECRET, user) is None
    user.locked_until = datetime.now(UTC) + timedelta(minutes=5)
    assert check(lab, "alice", SECRET, user) is None
    user.locked_until = (datetime.now(UTC) - timedelta(minutes=1)).replace(tzinfo=None)
    lab.commit()
    assert check(lab, "alice", SECRET, user) is user
    # An aware time in another zone is that instant (ended a minute ago: not locked).
    user.locked_until = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(
        timezone(timedelta(hours=5))
    )
    assert check(lab, "alice", SECRET, user) is user


def test_local_accounts_are_never_the_directorys(
    slapd: LdapServer, lab: Session, caplog: pytest.LogCaptureFixture
) -> None:
    from zstack_analyzer.service.auth import accounts

    local = accounts.create_user(lab, "alice", password="a local password")  # noqa: S106
    check = LdapAuthenticator(template_settings(slapd))
    # Passed the local account: the directory is not even asked (a dead URL would raise).
    assert (
        LdapAuthenticator(template_settings(slapd, url=_dead_url()))(lab, "alice", SECRET, local)
        is None
    )
    # Logging in as "ALICE" finds no local "ALICE", but the directory's spelling is "alice".
    with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.ldap_login"):
        assert check(lab, "ALICE", SECRET, None) is None
    assert caplog.messages == [
        "LDAP user 'alice' matches a local account of another source; refused"
    ]
    assert local.auth_source == "local"
    assert _groups(lab, "alice") == {}


def test_a_name_we_cannot_hold_is_refused(
    slapd: LdapServer, lab: Session, caplog: pytest.LogCaptureFixture
) -> None:
    check = LdapAuthenticator(template_settings(slapd))
    with caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.ldap_login"):
        assert check(lab, "mary ann", SECRET, None) is None  # a space: not a valid username
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("LDAP user 'mary ann' cannot be created: username ")
    assert "use 1-150 letters" in caplog.messages[0]
    assert lab.scalars(select(User)).all() == []
    assert _trail(lab) == []


def test_directory_down_is_its_own_error(lab: Session, caplog: pytest.LogCaptureFixture) -> None:
    settings = LdapSettings(url=_dead_url(), user_dn_template=f"uid={{username}},{PEOPLE}")
    name = "x" * 149 + "yz"
    with (
        caplog.at_level(logging.WARNING, "zstack_analyzer.service.auth.ldap_login"),
        pytest.raises(LoginDirectoryUnavailableError) as raised,
    ):
        LdapAuthenticator(settings)(lab, "alice", SECRET, None)
    assert raised.value.username == "alice"
    assert str(raised.value).startswith(f"LDAP server {settings.url} unavailable: ")
    assert caplog.messages == [f"LDAP login of 'alice': {raised.value}"]
    # A name too long for the directory is no one (not an outage): the log is not asked.
    assert LdapAuthenticator(settings)(lab, name, SECRET, None) is None


def test_sync_memberships_reports_what_changed(lab: Session) -> None:
    from zstack_analyzer.service.auth import accounts

    user = accounts.create_user(lab, "eve")
    accounts.create_group(lab, "zeta", "private")
    managed = {"imaging", "microscopy", "zeta"}
    assert sync_memberships(lab, user, {"zeta", "imaging"}, managed) == (["imaging", "zeta"], [])
    assert sync_memberships(lab, user, {"zeta", "imaging"}, managed) == ([], [])
    assert sync_memberships(lab, user, {"microscopy"}, managed) == (
        ["microscopy"],
        ["imaging", "zeta"],
    )
    lab.commit()
    assert _groups(lab, "eve") == {"microscopy": False}
    other = accounts.create_user(lab, "fay")
    accounts.set_membership(lab, "imaging", "fay")
    # Another user's memberships are not this user's.
    assert sync_memberships(lab, user, {"imaging"}, managed) == (["imaging"], ["microscopy"])
    lab.commit()
    assert _groups(lab, "fay") == {"imaging": False}
    assert other.id != user.id


def test_directory_down_over_http(tmp_path: Path) -> None:
    """503 problem (not 401) naming the outage; the failed login is in the audit trail."""
    import shutil

    from tests.mutation_kills.service_db import _template as db_template
    from tests.service.authworld import FAST_PASSWORDS
    from tests.service.conftest import _testclient_class
    from tests.service.live import make_settings
    from zstack_analyzer.service.app import create_app
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.config import AccountSettings

    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(db_template(), data / "zstack.db")
    ldap = LdapSettings(url=_dead_url(), user_dn_template=f"uid={{username}},{PEOPLE}")
    settings = make_settings(
        data, auth="users", ldap=ldap, accounts=AccountSettings(**FAST_PASSWORDS)
    )
    with _testclient_class()(create_app(settings)) as client:
        with client.app.state.database.sessions() as db:
            accounts.create_user(db, "root", admin=True)
            token = accounts.create_token(db, "root")[1]
        down = client.post("/api/auth/login", json={"username": "alice", "password": SECRET})
        assert down.status_code == 503
        body = down.json()
        assert (body["status"], body["code"], body["detail"]) == (
            503,
            "directory_unavailable",
            "the LDAP directory cannot be reached to check this login; try again later "
            "(accounts with a local password can still log in)",
        )
        assert body["title"]
        assert body["request_id"] == down.headers["X-Request-ID"]
        assert down.headers["Retry-After"] == "30"
        assert down.headers["X-Request-ID"]
        trail = client.get(
            "/api/audit", headers={"Authorization": f"Bearer {token}"}, params={"limit": 10}
        ).json()["data"]
    failed = [e for e in trail if e["action"] == "login_failed"]
    assert len(failed) == 1
    assert failed[0]["username"] == "alice"
    assert failed[0]["details"] == {"reason": "directory unavailable"}
    assert failed[0]["request_id"] == down.headers["X-Request-ID"]


def test_other_spellings_count_toward_the_lockout(slapd: LdapServer, lab: Session) -> None:
    """The directory compares names case-blind: ``ALICE`` is alice, failures included.

    Before the fix, a wrong password under another spelling found no local account, so it
    never counted toward alice's lockout: unlimited guesses as ``ALICE``, ``Alice``...
    """
    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.auth.login import (
        LoginPolicy,
        authenticate_password,
        local_password,
    )

    policy = LoginPolicy(max_failures=2, lockout=timedelta(minutes=5))
    chain = [local_password, LdapAuthenticator(template_settings(slapd))]

    def login(name: str, password: str) -> User | None:
        return authenticate_password(
            lab, name, password, "10.0.0.1", policy=policy, authenticators=chain
        )

    alice = login("alice", SECRET)
    assert alice is not None
    assert login("ALICE", SECRET) is alice  # the same account
    assert login("ALICE", "wrong") is None
    assert login("Alice", "wrong") is None
    lab.refresh(alice)
    assert alice.locked_until is not None
    assert login("alice", SECRET) is None
    assert login("aLiCe", SECRET) is None
    # A local account is its own spelling only: "BOB" is not the local bob.
    bob = accounts.create_user(lab, "bob", password="bob's local password")  # noqa: S106
    assert login("BOB", "wrong") is None
    assert login("BOB", "wrong") is None
    lab.refresh(bob)
    assert (bob.failed_logins, bob.locked_until) == (0, None)
