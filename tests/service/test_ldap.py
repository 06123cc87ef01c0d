"""LDAP login against a real OpenLDAP (Debian's slapd) that the tests start on loopback.

The directory: alice (in imaging and microscopy), bob (in no mapped group), and a
group nobody maps. Passwords are checked by slapd itself on a simple bind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.ldapserver import (
    BASE_DN,
    IMAGING,
    MICROSCOPY,
    OTHERS,
    PEOPLE,
    LdapServer,
    running_slapd,
    search_settings,
    slapd_missing,
    template_settings,
)
from tests.needs import unavailable
from tests.service.live import make_settings
from zstack_analyzer.service.auth.ldap import (
    LdapUnavailableError,
    directory_login,
    mapped_groups,
    normalise_dn,
)
from zstack_analyzer.service.config import LdapSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient
    from httpx import Response

DIRECTORY = f"""\
dn: uid=alice,{PEOPLE}
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.org
userPassword: wonder-land-42

dn: uid=bob,{PEOPLE}
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
userPassword: can-we-fix-it

dn: uid=carol,ou=people,{BASE_DN}
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: C
userPassword: carols-secret

dn: {IMAGING}
objectClass: groupOfNames
cn: imaging
member: uid=alice,{PEOPLE}
member: uid=placeholder,{PEOPLE}

dn: {MICROSCOPY}
objectClass: groupOfUniqueNames
cn: microscopy
uniqueMember: uid=alice,{PEOPLE}
uniqueMember: uid=carol,{PEOPLE}

dn: {OTHERS}
objectClass: groupOfNames
cn: others
member: uid=bob,{PEOPLE}
"""


@pytest.fixture(scope="module")
def slapd() -> Iterator[LdapServer]:
    """One slapd with the directory above for this module's tests."""
    missing = slapd_missing()
    if missing:
        unavailable(missing)
    with running_slapd() as server:
        server.add(DIRECTORY)
        yield server


@pytest.mark.parametrize("make", [template_settings, search_settings], ids=["template", "search"])
def test_bind_reads_person_and_groups(slapd: LdapServer, make: object) -> None:
    settings = make(slapd)  # type: ignore[operator]
    person = directory_login(settings, "alice", "wonder-land-42")
    assert person is not None
    assert person.username == "alice"
    assert person.display_name == "Alice Liddell"
    assert person.email == "alice@example.org"
    assert person.groups == {normalise_dn(IMAGING), normalise_dn(MICROSCOPY)}
    assert mapped_groups(person, settings.group_map) == {"imaging", "microscopy"}
    bob = directory_login(settings, "bob", "can-we-fix-it")
    assert bob is not None
    assert mapped_groups(bob, settings.group_map) == set()


@pytest.mark.parametrize("make", [template_settings, search_settings], ids=["template", "search"])
def test_wrong_password_unknown_user_and_empty_password_are_all_none(
    slapd: LdapServer, make: object
) -> None:
    settings = make(slapd)  # type: ignore[operator]
    assert directory_login(settings, "alice", "wrong") is None
    assert directory_login(settings, "nobody", "wonder-land-42") is None
    # An empty password is an unauthenticated bind, which LDAP answers "success".
    assert directory_login(settings, "alice", "") is None


def test_directory_spelling_of_the_username_wins(slapd: LdapServer) -> None:
    person = directory_login(template_settings(slapd), "ALICE", "wonder-land-42")
    assert person is not None
    assert person.username == "alice"


@pytest.mark.parametrize("username", ["*", "a*", "alice)(uid=*", "alice,ou=people", "\x00alice"])
def test_filter_and_dn_metacharacters_find_nobody(slapd: LdapServer, username: str) -> None:
    for settings in (template_settings(slapd), search_settings(slapd)):
        assert directory_login(settings, username, "wonder-land-42") is None


def test_search_with_a_refused_service_account_is_unavailable(slapd: LdapServer) -> None:
    settings = search_settings(slapd, bind_password="not-the-admin-password")  # noqa: S106
    with pytest.raises(LdapUnavailableError, match="search account"):
        directory_login(settings, "alice", "wonder-land-42")


def test_stopped_server_is_unavailable_not_a_wrong_password() -> None:
    missing = slapd_missing()
    if missing:
        unavailable(missing)
    with running_slapd() as server:
        settings = template_settings(server)
    # The server is stopped now: nothing listens on its port.
    with pytest.raises(LdapUnavailableError, match="unavailable"):
        directory_login(settings, "alice", "wonder-land-42")


def test_settings_need_a_way_to_find_users() -> None:
    with pytest.raises(ValueError, match="USER_DN_TEMPLATE"):
        LdapSettings(url="ldap://127.0.0.1:1")
    with pytest.raises(ValueError, match="username"):
        LdapSettings(url="ldap://127.0.0.1:1", user_dn_template="uid=x,dc=org")
    assert not LdapSettings().enabled()


# --- logging in over HTTP (ZSTACK_AUTH=users with ZSTACK_LDAP__*) ---------------------------


def ldap_client(
    tmp_path: Path,
    make_client: Callable[..., TestClient],
    ldap: LdapSettings,
    database_url: str | None = None,
) -> TestClient:
    """A users-mode app with LDAP on; groups imaging, microscopy and local-only exist."""
    from zstack_analyzer.service.auth import accounts

    settings = make_settings(tmp_path / "data", database_url=database_url, auth="users", ldap=ldap)
    client = make_client(settings)
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_group(session, "imaging", "read-only")
        accounts.create_group(session, "microscopy", "read-write")
        accounts.create_group(session, "local-only", "private")
    return client


def login(client: TestClient, username: str, password: str) -> Response:
    client.cookies.clear()
    return client.post("/api/auth/login", json={"username": username, "password": password})


def groups_of(client: TestClient, username: str) -> dict[str, str]:
    """``group -> role`` of ``username`` as stored (read from the database)."""
    from sqlalchemy import select

    from zstack_analyzer.service.auth.models import Group, Membership, User

    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        rows = session.execute(
            select(Group.name, Membership.is_owner)
            .join(Membership, Membership.group_id == Group.id)
            .join(User, User.id == Membership.user_id)
            .where(User.username == username)
        ).all()
    return {name: "owner" if owner else "member" for name, owner in rows}


def test_first_bind_creates_the_user_with_mapped_groups(
    slapd: LdapServer,
    tmp_path: Path,
    make_client: Callable[..., TestClient],
    database_url: str | None,
) -> None:
    from sqlalchemy import select

    from zstack_analyzer.service.auth import accounts
    from zstack_analyzer.service.auth.models import User

    client = ldap_client(tmp_path, make_client, template_settings(slapd), database_url)
    answer = login(client, "alice", "wonder-land-42")
    assert answer.status_code == 200, answer.text
    me = client.get("/api/auth/me").json()
    assert me["username"] == "alice"
    assert not me["is_admin"]
    assert {(g["name"], g["permissions"], g["role"]) for g in me["groups"]} == {
        ("imaging", "read-only", "member"),
        ("microscopy", "read-write", "member"),
    }
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        alice = session.scalars(select(User).where(User.username == "alice")).one()
        assert alice.auth_source == "ldap"
        assert alice.password_hash is None
        assert alice.display_name == "Alice Liddell"
        assert alice.email == "alice@example.org"
        # An admin adds her to a group the map does not name: the directory leaves it alone.
        accounts.set_membership(session, "local-only", "alice")
    # The directory takes her out of imaging: the next login follows it.
    slapd.modify(f"dn: {IMAGING}\nchangetype: modify\ndelete: member\nmember: uid=alice,{PEOPLE}\n")
    try:
        assert login(client, "alice", "wonder-land-42").status_code == 200
        assert groups_of(client, "alice") == {"microscopy": "member", "local-only": "member"}
    finally:
        slapd.modify(
            f"dn: {IMAGING}\nchangetype: modify\nadd: member\nmember: uid=alice,{PEOPLE}\n"
        )
    assert login(client, "alice", "wonder-land-42").status_code == 200
    assert groups_of(client, "alice") == {
        "imaging": "member",
        "microscopy": "member",
        "local-only": "member",
    }
    # A person in no mapped group still gets an account (and no group).
    assert login(client, "bob", "can-we-fix-it").status_code == 200
    assert groups_of(client, "bob") == {}
    # What the directory changed is in the audit trail, with the logins.
    client.cookies.clear()
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_user(session, "root", admin=True)
        secret = accounts.create_token(session, "root")[1]
    trail = client.get(
        "/api/audit",
        params={"user": "alice", "limit": 100},
        headers={"Authorization": f"Bearer {secret}"},
    ).json()["data"]
    changes = [(e["action"], e["target"], e["details"]["via"]) for e in reversed(trail)]
    assert [c for c in changes if c[0] != "login"] == [
        ("user_create", "alice", "ldap"),
        ("membership_add", "imaging", "ldap"),
        ("membership_add", "microscopy", "ldap"),
        ("membership_remove", "imaging", "ldap"),
        ("membership_add", "imaging", "ldap"),
    ]
    assert [c for c in changes if c[0] == "login"] == [("login", None, "session")] * 3


def test_wrong_password_answers_like_an_unknown_user(
    slapd: LdapServer, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    client = ldap_client(tmp_path, make_client, search_settings(slapd))
    assert login(client, "carol", "carols-secret").status_code == 200  # carol exists locally now
    answers = [
        login(client, "alice", "not-her-password"),  # in the directory, not yet here
        login(client, "carol", "not-her-password"),  # in the directory and here
        login(client, "nobody-at-all", "whatever"),  # nowhere
    ]

    def shape(answer: Response) -> tuple[int, str, str, str | None]:
        body = answer.json()
        return answer.status_code, body["code"], body["detail"], answer.headers.get("set-cookie")

    assert [shape(a) for a in answers] == [
        (401, "unauthorized", "wrong username or password", None)
    ] * 3
    # None of them made an account.
    from sqlalchemy import func, select

    from zstack_analyzer.service.auth.models import User

    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_local_accounts_are_not_the_directorys(
    slapd: LdapServer, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    from zstack_analyzer.service.auth import accounts

    client = ldap_client(tmp_path, make_client, template_settings(slapd))
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_user(session, "bob", password="local bob's own password")  # noqa: S106
    # The directory's bob cannot log into the local bob's account...
    assert login(client, "bob", "can-we-fix-it").status_code == 401
    # ...and the local bob still logs in with his own password.
    assert login(client, "bob", "local bob's own password").status_code == 200


def test_a_directory_account_cannot_change_its_password_here(
    slapd: LdapServer, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    """Its password lives in the directory: 409 saying so; nothing is stored or counted."""
    from sqlalchemy import select

    from zstack_analyzer.service.auth.models import User

    client = ldap_client(tmp_path, make_client, template_settings(slapd))
    logged_in = login(client, "alice", "wonder-land-42")
    assert logged_in.status_code == 200, logged_in.text
    refused = client.post(
        "/api/auth/password",
        json={"current_password": "wonder-land-42", "new_password": "a local one at last"},
        headers={"X-CSRF-Token": logged_in.json()["csrf_token"]},
    )
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "directory (ldap)" in refused.json()["detail"]
    assert "set-cookie" not in refused.headers
    assert client.get("/api/auth/me").status_code == 200  # her session goes on
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        alice = session.scalars(select(User).where(User.username == "alice")).one()
        assert (alice.password_hash, alice.failed_logins) == (None, 0)
    assert login(client, "alice", "wonder-land-42").status_code == 200
    assert login(client, "alice", "a local one at last").status_code == 401


def test_me_says_whose_password_this_server_can_change(
    slapd: LdapServer, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    """``password_changeable``: true for a local account, false for a directory one.

    The viewer shows "Change password" only when it is true (the server answers
    409 for a directory account); the field is the same in the login answer,
    ``GET /api/auth/me`` and with an API token of the account.
    """
    from zstack_analyzer.service.auth import accounts

    client = ldap_client(tmp_path, make_client, template_settings(slapd))
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_user(session, "dora", password="dora's local password")  # noqa: S106
    for username, password, changeable in (
        ("dora", "dora's local password", True),
        ("alice", "wonder-land-42", False),
    ):
        logged_in = login(client, username, password)
        assert logged_in.status_code == 200, logged_in.text
        me = client.get("/api/auth/me").json()
        assert (me["username"], me["auth"]) == (username, "session")
        assert logged_in.json()["password_changeable"] is me["password_changeable"] is changeable
        client.cookies.clear()
        with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
            token = accounts.create_token(session, username)[1]
        by_token = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert by_token.json()["password_changeable"] is changeable


def test_directory_down_is_a_clear_error_and_local_accounts_still_log_in(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    from zstack_analyzer.service.auth import accounts

    missing = slapd_missing()
    if missing:
        unavailable(missing)
    with running_slapd() as server:
        settings = template_settings(server)
    # Stopped: nothing listens where the settings point.
    client = ldap_client(tmp_path, make_client, settings)
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        accounts.create_user(session, "lena", password="a local password")  # noqa: S106
    down = login(client, "alice", "wonder-land-42")
    assert down.status_code == 503
    assert down.headers["content-type"].startswith("application/problem+json")
    assert down.json()["code"] == "directory_unavailable"
    assert "LDAP" in down.json()["detail"]
    assert down.headers["Retry-After"]
    assert "set-cookie" not in down.headers
    assert login(client, "lena", "a local password").status_code == 200
    # A local account's wrong password is still a plain 401 (its password never goes to LDAP).
    assert login(client, "lena", "wrong").status_code == 401
    # The outage is in the audit trail as a failed login.
    client.cookies.clear()
    with client.app.state.database.sessions() as session:  # type: ignore[attr-defined]
        secret = accounts.create_token(session, "lena")[1]
        accounts.update_user(session, "lena", admin=True)
    trail = client.get(
        "/api/audit",
        params={"action": "login_failed"},
        headers={"Authorization": f"Bearer {secret}"},
    ).json()["data"]
    assert [(e["username"], e["details"].get("reason")) for e in reversed(trail)] == [
        ("alice", "directory unavailable"),
        ("lena", None),
    ]


def test_a_broken_filter_is_unavailable_not_a_crash(slapd: LdapServer) -> None:
    settings = search_settings(slapd, search_filter="(uid={username}")  # unbalanced
    with pytest.raises(LdapUnavailableError):
        directory_login(settings, "alice", "wonder-land-42")
    # Braces other than the placeholders are kept as they are.
    odd = template_settings(slapd, user_dn_template="uid={username},ou=people,dc=example,dc=org{x}")
    assert directory_login(odd, "alice", "wonder-land-42") is None
