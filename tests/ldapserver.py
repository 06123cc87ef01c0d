"""A real OpenLDAP server on loopback for the LDAP login tests.

Debian's ``slapd`` (``scripts/ensure-slapd.sh`` installs it), started as the
current user in a temp dir from a generated ``slapd.conf`` (``-f``): an MDB
database for ``dc=example,dc=org``, the core/cosine/inetorgperson schemas,
listening only on ``ldap://127.0.0.1:PORT/``. Entries are loaded with the real
``ldapadd`` over the wire, so the directory the tests bind against is exactly
what a lab's server would hold. Passwords in the LDIF are cleartext: slapd
compares them on simple bind as it would hashed ones.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zstack_analyzer.service.config import LdapSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BASE_DN",
    "GROUPS",
    "GROUP_MAP",
    "IMAGING",
    "MICROSCOPY",
    "OTHERS",
    "PEOPLE",
    "SLAPD",
    "LdapServer",
    "running_slapd",
    "search_settings",
    "slapd_missing",
    "template_settings",
]

SLAPD = Path("/usr/sbin/slapd")
LDAPADD = "ldapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE_DN = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "admin-secret"  # noqa: S105 - a throwaway test directory
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
IMAGING = f"cn=imaging,{GROUPS}"
MICROSCOPY = f"cn=microscopy,{GROUPS}"
OTHERS = f"cn=others,{GROUPS}"

#: Directory groups -> our groups. Imaging is spelled differently from the server on
#: purpose (attribute types and values in capitals, a space after the comma): DNs compare
#: case- and space-blind.
GROUP_MAP = {"CN=Imaging, OU=groups,dc=example,dc=org": "imaging", MICROSCOPY: "microscopy"}

_CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
modulepath {modules}
moduleload back_mdb
{modules_extra}pidfile {root}/slapd.pid
argsfile {root}/slapd.args
loglevel none

database mdb
maxsize 16777216
suffix "{base}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {root}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
{overlays}"""


def slapd_missing() -> str | None:
    """Why the server cannot run here, or ``None`` when slapd and ldapadd are installed."""
    if not SLAPD.exists():
        return f"{SLAPD} missing: install Debian's slapd (scripts/ensure-slapd.sh)"
    if shutil.which(LDAPADD) is None:
        return "ldapadd missing: install Debian's ldap-utils (scripts/ensure-slapd.sh)"
    if not (SCHEMA_DIR / "inetorgperson.schema").is_file():
        return f"{SCHEMA_DIR}/inetorgperson.schema missing (slapd's schema files)"
    return None


@dataclass
class LdapServer:
    """A running slapd: its URL, process and the directory's admin credentials."""

    url: str
    process: subprocess.Popen[bytes]
    root: Path

    base_dn: str = BASE_DN
    root_dn: str = ROOT_DN
    root_password: str = ROOT_PASSWORD

    def _run(self, tool: str, ldif: str) -> None:
        done = subprocess.run(
            [tool, "-x", "-H", self.url, "-D", self.root_dn, "-w", self.root_password],
            input=ldif.encode(),
            check=False,
            capture_output=True,
            timeout=30,
        )
        if done.returncode:
            msg = f"{tool} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
            raise RuntimeError(msg)

    def add(self, ldif: str) -> None:
        """Load entries with ``ldapadd`` (simple bind as the directory's root)."""
        self._run(LDAPADD, ldif)

    def modify(self, ldif: str) -> None:
        """Change entries with ``ldapmodify`` (an LDIF of ``changetype: modify`` records)."""
        self._run("ldapmodify", ldif)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start(root: Path, *, member_of: bool) -> LdapServer:
    """Start slapd on a free loopback port; retry when another process took the port."""
    (root / "db").mkdir(exist_ok=True)
    config = root / "slapd.conf"
    config.write_text(
        _CONFIG.format(
            schema=SCHEMA_DIR,
            modules=MODULE_DIR,
            root=root,
            base=BASE_DN,
            rootdn=ROOT_DN,
            rootpw=ROOT_PASSWORD,
            modules_extra="moduleload memberof\n" if member_of else "",
            overlays="overlay memberof\n" if member_of else "",
        )
    )
    last_error = ""
    for _attempt in range(5):
        port = _free_port()
        url = f"ldap://127.0.0.1:{port}"
        log = (root / "slapd.log").open("wb")
        # -d 0: stay in the foreground (no fork), so the fixture owns the process.
        process = subprocess.Popen(
            [str(SLAPD), "-f", str(config), "-h", f"{url}/", "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            if _accepts(port):
                return LdapServer(url=url, process=process, root=root)
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        last_error = (root / "slapd.log").read_text(errors="replace")[-2000:]
    msg = f"slapd did not start: {last_error}"
    raise RuntimeError(msg)


def _base_entries() -> str:
    return f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
dc: example
o: Example Lab

dn: ou=people,{BASE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE_DN}
objectClass: organizationalUnit
ou: groups
"""


@contextlib.contextmanager
def running_slapd(*, member_of: bool = False) -> Iterator[LdapServer]:
    """A fresh slapd with the base, ``ou=people`` and ``ou=groups``; stopped afterwards.

    ``member_of``: with the memberof overlay, so people get ``memberOf`` for their
    ``groupOfNames`` groups (an attribute the login reads besides the group search).
    """
    with tempfile.TemporaryDirectory(prefix="zstack-slapd-") as tmp:
        server = _start(Path(tmp), member_of=member_of)
        try:
            server.add(_base_entries())
            yield server
        finally:
            server.stop()


def template_settings(server: LdapServer, **overrides: object) -> LdapSettings:
    """Login settings that bind as ``uid={username},ou=people,...`` (no service account)."""
    values: dict[str, object] = {
        "url": server.url,
        "user_dn_template": f"uid={{username}},{PEOPLE}",
        "group_base": GROUPS,
        "group_map": GROUP_MAP,
    }
    return LdapSettings.model_validate({**values, **overrides})


def search_settings(server: LdapServer, **overrides: object) -> LdapSettings:
    """Login settings that find the person by a search as the directory's root, then bind."""
    values: dict[str, object] = {
        "url": server.url,
        "search_base": BASE_DN,
        "bind_dn": server.root_dn,
        "bind_password": server.root_password,
        "group_base": GROUPS,
        "group_map": GROUP_MAP,
    }
    return LdapSettings.model_validate({**values, **overrides})
