"""LDAP login against a real OpenLDAP (Debian's slapd) that the tests start on loopback.

The directory: alice (in imaging and microscopy), bob (in no mapped group), and a
group nobody maps. Passwords are checked by slapd itself on a simple bind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.ldapserver import BASE_DN, LdapServer, running_slapd, slapd_missing
from tests.needs import unavailable
from zstack_analyzer.service.auth.ldap import (
    LdapUnavailableError,
    directory_login,
    mapped_groups,
    normalise_dn,
)
from zstack_analyzer.service.config import LdapSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
IMAGING = f"cn=imaging,{GROUPS}"
MICROSCOPY = f"cn=microscopy,{GROUPS}"
OTHERS = f"cn=others,{GROUPS}"

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

GROUP_MAP = {
    # Spelled differently from the server on purpose: DNs compare case- and space-blind.
    "cn=Imaging, ou=groups,dc=example,dc=org": "imaging",
    MICROSCOPY: "microscopy",
}


@pytest.fixture(scope="module")
def slapd() -> Iterator[LdapServer]:
    """One slapd with the directory above for this module's tests."""
    missing = slapd_missing()
    if missing:
        unavailable(missing)
    with running_slapd() as server:
        server.add(DIRECTORY)
        yield server


def template_settings(server: LdapServer, **overrides: object) -> LdapSettings:
    values: dict[str, object] = {
        "url": server.url,
        "user_dn_template": f"uid={{username}},{PEOPLE}",
        "group_base": GROUPS,
        "group_map": GROUP_MAP,
    }
    return LdapSettings.model_validate({**values, **overrides})


def search_settings(server: LdapServer, **overrides: object) -> LdapSettings:
    values: dict[str, object] = {
        "url": server.url,
        "search_base": BASE_DN,
        "bind_dn": server.root_dn,
        "bind_password": server.root_password,
        "group_base": GROUPS,
        "group_map": GROUP_MAP,
    }
    return LdapSettings.model_validate({**values, **overrides})


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
