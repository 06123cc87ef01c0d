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

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BASE_DN",
    "SLAPD",
    "LdapServer",
    "running_slapd",
    "slapd_missing",
]

SLAPD = Path("/usr/sbin/slapd")
LDAPADD = "ldapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE_DN = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "admin-secret"  # noqa: S105 - a throwaway test directory

_CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
modulepath {modules}
moduleload back_mdb
pidfile {root}/slapd.pid
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
"""


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


def _start(root: Path) -> LdapServer:
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
def running_slapd() -> Iterator[LdapServer]:
    """A fresh slapd with the base, ``ou=people`` and ``ou=groups``; stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="zstack-slapd-") as tmp:
        server = _start(Path(tmp))
        try:
            server.add(_base_entries())
            yield server
        finally:
            server.stop()
