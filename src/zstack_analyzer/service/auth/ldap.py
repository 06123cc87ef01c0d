"""Check a password against an LDAP directory and read the person's groups (ldap3).

Why a bind and not a compare: binding as the person is what every directory
(OpenLDAP, 389-ds, Active Directory) supports for checking a password, honours
its own lockout and password policies, and never needs the password hash. The
answer is one of three: a :class:`DirectoryUser` (the password is right), ``None``
(wrong password, unknown user, or any other refusal: the caller must answer
all of them alike), or :class:`LdapUnavailableError` (the directory cannot be
asked, which is not the person's fault and is said so).

This module only talks to the directory; creating the local account and its
memberships is :mod:`.ldap_login`'s job. ldap3 is synchronous: callers run it in
a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ldap3 import Connection, Server

    from zstack_analyzer.service.config import LdapSettings

__all__ = [
    "DirectoryUser",
    "LdapUnavailableError",
    "directory_login",
    "mapped_groups",
    "normalise_dn",
]

logger = logging.getLogger(__name__)

#: Longest username we send to the directory (our ``users.username`` column holds 150).
MAX_USERNAME = 150


class LdapUnavailableError(Exception):
    """The directory could not be asked (down, unreachable, timed out, misconfigured)."""


@dataclass(frozen=True)
class DirectoryUser:
    """A person whose password the directory accepted, with what it says about them."""

    username: str
    dn: str
    display_name: str
    email: str | None
    #: Normalised DNs (:func:`normalise_dn`) of the groups the person is in.
    groups: frozenset[str]


def normalise_dn(dn: str) -> str:
    """A DN in one spelling (lower case, no spaces around ``,`` and ``=``) for comparisons.

    Why: ``cn=Imaging, ou=Groups,dc=example,dc=org`` from a configuration file
    and ``cn=imaging,ou=groups,dc=example,dc=org`` from the server are the same
    group (attribute types and the usual values compare case-insensitively).
    """
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parts = parse_dn(dn.strip(), strip=True)
    except LDAPInvalidDnError:
        return dn.strip().lower()
    return "".join(f"{kind.strip()}={value.strip()}{sep}" for kind, value, sep in parts).lower()


def mapped_groups(user: DirectoryUser, group_map: dict[str, str]) -> set[str]:
    """Our group names for the person's LDAP groups (``group_map``: LDAP DN -> our name)."""
    wanted = {normalise_dn(dn): name for dn, name in group_map.items()}
    return {wanted[dn] for dn in user.groups if dn in wanted}


def _server(settings: LdapSettings) -> Server:
    from ldap3 import Server, Tls

    url = (settings.url or "").rstrip("/")
    tls = None
    if url.lower().startswith("ldaps://") or settings.start_tls:
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
        )
    # get_info NONE: no schema read per login (one round trip instead of three).
    return Server(url, connect_timeout=settings.timeout_seconds, tls=tls, get_info="NO_INFO")


def _connection(
    settings: LdapSettings, server: Server, dn: str | None, password: str | None
) -> Connection:
    from ldap3 import Connection

    return Connection(
        server,
        user=dn,
        password=password,
        authentication="SIMPLE" if dn else "ANONYMOUS",
        # ldap3 packs the receive timeout into a socket option: whole seconds only.
        receive_timeout=max(1, math.ceil(settings.timeout_seconds)),
        raise_exceptions=False,
        read_only=True,
        # Ask for memberOf even where the schema lacks it (no memberof overlay): the
        # server then returns nothing for it instead of ldap3 refusing the search.
        check_names=False,
    )


def _close(connection: Connection) -> None:
    """Unbind, and close the socket ldap3 leaves open when the connect itself failed."""
    from ldap3.core.exceptions import LDAPException

    with contextlib.suppress(LDAPException):
        connection.unbind()
    sock = getattr(connection, "socket", None)
    if sock is not None:
        sock.close()


def _open(
    settings: LdapSettings, server: Server, dn: str | None, password: str | None
) -> Connection | None:
    """A bound connection, ``None`` when the directory refused the credentials.

    Raises :class:`LdapUnavailableError` when it could not be asked at all.
    """
    from ldap3.core.exceptions import LDAPException

    connection = _connection(settings, server, dn, password)
    try:
        connection.open()
        if settings.start_tls and not connection.start_tls():
            msg = f"LDAP server {settings.url}: StartTLS refused ({connection.result})"
            raise LdapUnavailableError(msg)
        if connection.bind():
            return connection
    except LDAPException as exc:
        _close(connection)
        msg = f"LDAP server {settings.url} unavailable: {exc}"
        raise LdapUnavailableError(msg) from exc
    result: dict[str, Any] = connection.result or {}
    connection.unbind()
    # 49 invalidCredentials is the usual refusal; locked or expired accounts (ppolicy,
    # Active Directory) answer 49 or 53 too. Only a server that is not there is "down".
    if result.get("result") in {51, 52, 80}:  # busy, unavailable, other (server side)
        msg = f"LDAP server {settings.url} unavailable: {result.get('description')}"
        raise LdapUnavailableError(msg)
    return None


def _first(entry: Any, attribute: str) -> str | None:
    """The first value of ``attribute`` of a search entry, as text."""
    values = entry.get("attributes", {}).get(attribute)
    if isinstance(values, list):
        return str(values[0]) if values else None
    return str(values) if values not in (None, "") else None


def _find_dn(settings: LdapSettings, server: Server, username: str) -> str | None:
    """The person's DN: from the template, or by a search (as the service account)."""
    from ldap3 import SUBTREE
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

    if settings.user_dn_template:
        # replace, not str.format: a template may hold other braces (never a KeyError).
        return settings.user_dn_template.replace("{username}", escape_rdn(username))
    password = settings.bind_password.get_secret_value() if settings.bind_password else None
    connection = _open(settings, server, settings.bind_dn, password)
    if connection is None:
        msg = f"LDAP server {settings.url}: the search account {settings.bind_dn} was refused"
        raise LdapUnavailableError(msg)
    try:
        query = settings.search_filter.replace("{username}", escape_filter_chars(username))
        connection.search(
            settings.search_base or "", query, search_scope=SUBTREE, attributes=[], size_limit=2
        )
        entries = [e for e in connection.response or [] if e.get("type") == "searchResEntry"]
    finally:
        connection.unbind()
    # None or several: no one to log in as (several would make the answer ambiguous).
    return str(entries[0]["dn"]) if len(entries) == 1 else None


def _read_person(
    settings: LdapSettings, connection: Connection, dn: str, username: str
) -> DirectoryUser:
    """Name, e-mail and groups of the bound person (read with their own rights)."""
    from ldap3 import BASE, SUBTREE
    from ldap3.utils.conv import escape_filter_chars

    attributes = [
        settings.username_attribute,
        settings.display_name_attribute,
        settings.email_attribute,
        "memberOf",
    ]
    connection.search(dn, "(objectClass=*)", search_scope=BASE, attributes=attributes)
    entries = [e for e in connection.response or [] if e.get("type") == "searchResEntry"]
    entry = entries[0] if entries else {"attributes": {}}
    groups = {normalise_dn(str(g)) for g in entry.get("attributes", {}).get("memberOf") or []}
    if settings.group_base:
        query = settings.group_filter.replace("{dn}", escape_filter_chars(dn))
        connection.search(settings.group_base, query, search_scope=SUBTREE, attributes=[])
        groups |= {
            normalise_dn(str(e["dn"]))
            for e in connection.response or []
            if e.get("type") == "searchResEntry"
        }
    return DirectoryUser(
        username=_first(entry, settings.username_attribute) or username,
        dn=dn,
        display_name=_first(entry, settings.display_name_attribute) or username,
        email=_first(entry, settings.email_attribute),
        groups=frozenset(groups),
    )


def directory_login(settings: LdapSettings, username: str, password: str) -> DirectoryUser | None:
    """Bind as ``username`` with ``password``; the person and their groups, or ``None``.

    ``None`` for a wrong password, an unknown user, an empty password (LDAP
    would treat it as an anonymous bind and say yes) or a username the
    directory cannot hold. Raises :class:`LdapUnavailableError` when the
    directory cannot be asked.
    """
    from ldap3.core.exceptions import LDAPException

    if not settings.url or not password or not username or len(username) > MAX_USERNAME:
        return None
    if any(ord(ch) < 32 for ch in username):
        return None
    try:
        server = _server(settings)
        dn = _find_dn(settings, server, username)
    except LDAPException as exc:  # a filter the server refuses, a dropped connection...
        msg = f"LDAP server {settings.url} unavailable: {exc}"
        raise LdapUnavailableError(msg) from exc
    if dn is None:
        return None
    connection = _open(settings, server, dn, password)
    if connection is None:
        return None
    try:
        return _read_person(settings, connection, dn, username)
    except LDAPException as exc:
        msg = f"LDAP server {settings.url} unavailable: {exc}"
        raise LdapUnavailableError(msg) from exc
    finally:
        connection.unbind()
