"""A lab on one server (``ZSTACK_AUTH=users``): groups of each level, people in every role, images.

Shared by the permission matrix, the session tests and schemathesis. Accounts
are made with the same functions as the CLI (``service/auth/accounts.py``) on
the app's own database; images are uploaded over HTTP by their owners, so
owner and group come from the real upload path.

Roles (the issue's list): anonymous, a user in another group, a member of each
of the four levels, a group owner (of all four groups), an admin, and a
read-only token (of a read-write member).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

#: argon2id at its lowest allowed cost: real hashes, a few ms each (the default takes ~1 s
#: on a loaded 2-core machine). Used as ``accounts=AccountSettings(**FAST_PASSWORDS)``.
FAST_PASSWORDS = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}
LEVELS = ("private", "read-only", "read-annotate", "read-write")
PASSWORD = "correct horse battery staple"  # noqa: S105  (a test account's)

#: role -> (username, groups it belongs to as member, groups it owns, admin, read-only token)
ROLES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], bool, bool]] = {
    "outsider": ("olga", ("g-other",), (), False, False),
    "member-private": ("mia", ("g-private",), (), False, False),
    "member-read-only": ("rolf", ("g-read-only",), (), False, False),
    "member-read-annotate": ("ada", ("g-read-annotate",), (), False, False),
    "member-read-write": ("walt", ("g-read-write",), (), False, False),
    "group-owner": ("lena", (), tuple(f"g-{level}" for level in LEVELS), False, False),
    "admin": ("root", (), (), True, False),
    "read-only-token": ("rita", ("g-read-write",), (), False, True),
}
#: The owner of the "other's" images: a member of all four level groups.
ALICE = "alice"


@dataclass
class World:
    """The lab: a started client, tokens by role, image ids by (owner role or ALICE, group)."""

    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    images: dict[tuple[str, str], str] = field(default_factory=dict)
    tiff: Path | None = None

    def headers(self, role: str) -> dict[str, str]:
        """Authorization headers of ``role`` (none for anonymous)."""
        if role == "anonymous":
            return {}
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def upload(self, role: str, group: str | None = None) -> Any:
        """Upload the world's file as ``role`` (to ``group``, or the default one)."""
        assert self.tiff is not None
        params = {"group": group} if group else {}
        with self.tiff.open("rb") as fh:
            return self.client.post(
                "/api/images/upload",
                files={"file": ("stack.ome.tif", fh)},
                params=params,
                headers=self.headers(role),
            )


def default_group(role: str) -> str:
    """Where an upload of ``role`` goes without ``?group=``."""
    _, member, owned, admin, _ = ROLES[role]
    if admin:
        return "default"
    return (member + owned)[0]


def build_world(client: TestClient, tiff: Path) -> World:
    """Make the groups, users, tokens and images (alice's in each level group, one own each)."""
    from zstack_analyzer.service.auth import accounts

    database = client.app.state.database
    world = World(client=client, tiff=tiff)
    with database.sessions() as session:
        for level in LEVELS:
            accounts.create_group(session, f"g-{level}", level)
        accounts.create_group(session, "g-other", "private")
        accounts.create_user(session, ALICE, password=PASSWORD)
        for level in LEVELS:
            accounts.set_membership(session, f"g-{level}", ALICE)
        alice_token = accounts.create_token(session, ALICE, name="t")[1]
        for role, (username, member, owned, admin, read_only) in ROLES.items():
            accounts.create_user(session, username, password=PASSWORD, admin=admin)
            for group in member:
                accounts.set_membership(session, group, username)
            for group in owned:
                accounts.set_membership(session, group, username, owner=True)
            world.tokens[role] = accounts.create_token(
                session, username, name="t", read_only=read_only
            )[1]
            if read_only:  # its own images are uploaded with a writable token of the same user
                world.tokens[f"{role}/writer"] = accounts.create_token(session, username)[1]
    world.tokens[ALICE] = alice_token
    for level in LEVELS:
        answer = world.upload(ALICE, f"g-{level}")
        assert answer.status_code == 201, answer.text
        world.images[(ALICE, f"g-{level}")] = answer.json()["id"]
    for role in ROLES:
        writer = f"{role}/writer" if f"{role}/writer" in world.tokens else role
        answer = world.upload(writer)
        assert answer.status_code == 201, answer.text
        world.images[(role, default_group(role))] = answer.json()["id"]
    return world
