"""An account change takes rights away at once in every server process sharing the data dir.

Why: each server process keeps resolved tokens and sessions for
``accounts.cache_seconds`` (:class:`~zstack_analyzer.service.auth.principal.PrincipalCache`).
Before the accounts-changed marker, a revoked token, a logged-out session, a
disabled user, a removed membership, a demoted admin or group owner, a group
whose level was lowered and a deleted group were seen at once only by the
process that made the change; the others kept honouring the old rights until
their cache entry expired. Two apps on one database and one data dir stand for
two server processes; the second one's cache is made long-lived (an hour) so
only the marker can end its entries, whatever the machine's speed. Each change
is made through the first app's API (or the CLI), and the second app must
refuse at once, with the status the README documents (401 for a dead
credential, 404 for an image one may no longer see, 403 for a route one may no
longer use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from tests.service.authworld import FAST_PASSWORDS, PASSWORD
from tests.service.conftest import upload, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.service.auth.principal import COOKIE_NAME, CSRF_HEADER
from zstack_analyzer.service.config import AccountSettings, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from fastapi.testclient import TestClient

    from zstack_analyzer.service.config import Settings

#: The second process's cache: long enough that only the marker can end an entry.
LONG_CACHE_S = 3600.0


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Processes:
    """Two apps on one data dir; tokens by username (root is an admin)."""

    first: TestClient
    second: TestClient
    settings: Settings
    tmp: Path
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, int] = field(default_factory=dict)

    def auth(self, username: str) -> dict[str, str]:
        """Bearer headers of ``username``'s token."""
        return _bearer(self.tokens[username])

    def upload(self, owner: str, group: str) -> str:
        """An image of ``owner`` in ``group`` (through the first app); its id."""
        tiff = write_ome_tiff(self.tmp / f"{owner}-{group}.ome.tif")
        answer = upload(self.first, tiff, headers=self.auth(owner), params={"group": group})
        assert answer.status_code == 201, answer.text
        image_id: str = answer.json()["id"]
        return image_id

    def login(self, username: str, password: str = PASSWORD) -> tuple[str, str]:
        """A session of ``username`` made through the first app: (cookie, CSRF token)."""
        answer = self.first.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert answer.status_code == 200, answer.text
        cookie = answer.cookies[COOKIE_NAME]
        self.first.cookies.clear()
        return cookie, answer.json()["csrf_token"]


@pytest.fixture
def processes(tmp_path: Path, make_client: Callable[..., TestClient]) -> Processes:
    """root (admin), carol (admin), alice and bob in g-shared (read-annotate); bob leads g-led."""
    from zstack_analyzer.service.auth import accounts

    data = tmp_path / "data"
    settings = make_settings(data, auth="users", accounts=AccountSettings(**FAST_PASSWORDS))
    settings.render.thumbnail_on_upload = False
    long_lived = make_settings(
        data,
        auth="users",
        accounts=AccountSettings(**FAST_PASSWORDS, cache_seconds=LONG_CACHE_S),
    )
    long_lived.render.thumbnail_on_upload = False
    world = Processes(
        first=make_client(settings), second=make_client(long_lived), settings=settings, tmp=tmp_path
    )
    with world.first.app.state.database.sessions() as session:
        accounts.create_group(session, "g-shared", "read-annotate")
        accounts.create_group(session, "g-led", "private")
        for name, admin in (("root", True), ("carol", True), ("alice", False), ("bob", False)):
            accounts.create_user(session, name, password=PASSWORD, admin=admin)
        for name in ("alice", "bob"):
            accounts.set_membership(session, "g-shared", name)
        accounts.set_membership(session, "g-led", "alice")
        accounts.set_membership(session, "g-led", "bob", owner=True)
        for name in ("root", "carol", "alice", "bob"):
            row, secret = accounts.create_token(session, name, name="t")
            world.tokens[name], world.token_ids[name] = secret, row.id
        row, secret = accounts.create_token(session, "bob", name="laptop")
        world.tokens["bob/laptop"], world.token_ids["bob/laptop"] = secret, row.id
    return world


def _me(client: TestClient, headers: dict[str, str] | None = None) -> int:
    return int(client.get("/api/auth/me", headers=headers).status_code)


def _session_me(client: TestClient, cookie: str) -> int:
    """``GET /api/auth/me`` with the session cookie ``cookie`` (the client's jar is left empty)."""
    client.cookies.set(COOKIE_NAME, cookie)
    try:
        return _me(client)
    finally:
        client.cookies.clear()


def test_a_revoked_token_is_refused_by_every_process(processes: Processes) -> None:
    laptop = processes.auth("bob/laptop")
    assert _me(processes.second, headers=laptop) == 200  # now cached in the second process
    revoked = processes.first.delete(
        f"/api/tokens/{processes.token_ids['bob/laptop']}", headers=processes.auth("bob")
    )
    assert revoked.status_code == 204, revoked.text
    answer = processes.second.get("/api/auth/me", headers=laptop)
    assert answer.status_code == 401
    assert answer.json()["detail"] == "invalid, expired or revoked token"
    assert _me(processes.second, headers=processes.auth("bob")) == 200  # the other one works


def test_a_logged_out_session_is_refused_by_every_process(processes: Processes) -> None:
    cookie, csrf = processes.login("alice")
    assert _session_me(processes.second, cookie) == 200
    processes.first.cookies.set(COOKIE_NAME, cookie)
    ended = processes.first.post("/api/auth/logout", headers={CSRF_HEADER: csrf})
    assert ended.status_code == 204, ended.text
    assert _session_me(processes.second, cookie) == 401


def test_a_disabled_user_is_refused_by_every_process(processes: Processes) -> None:
    cookie, _ = processes.login("bob")
    assert _me(processes.second, headers=processes.auth("bob")) == 200
    assert _session_me(processes.second, cookie) == 200
    disabled = processes.first.patch(
        "/api/admin/users/bob", json={"is_active": False}, headers=processes.auth("root")
    )
    assert disabled.status_code == 200, disabled.text
    assert _me(processes.second, headers=processes.auth("bob")) == 401
    assert _session_me(processes.second, cookie) == 401


def test_a_disabled_users_tokens_stay_dead_in_every_process_after_enabling(
    processes: Processes,
) -> None:
    """Disabling revokes the user's tokens: enabling again brings none back, in any process."""
    bob = [processes.auth("bob"), processes.auth("bob/laptop")]
    for headers in bob:
        assert _me(processes.second, headers=headers) == 200  # cached in the second process
    for active in (False, True):
        changed = processes.first.patch(
            "/api/admin/users/bob", json={"is_active": active}, headers=processes.auth("root")
        )
        assert changed.status_code == 200, changed.text
    for client in (processes.first, processes.second):
        for headers in bob:
            assert _me(client, headers=headers) == 401
    assert _me(processes.second, headers=processes.auth("alice")) == 200  # others' stay


NEW_PASSWORD = "a brand new long password"  # noqa: S105  (a test account's)


def test_an_admins_password_reset_ends_the_users_sessions_and_tokens_in_every_process(
    processes: Processes,
) -> None:
    """A reset presumes the account compromised: every login and every token of it ends."""
    cookies = [processes.login("alice")[0] for _ in range(2)]
    alice = processes.auth("alice")
    for cookie in cookies:
        assert _session_me(processes.second, cookie) == 200  # cached in the second process
    assert _me(processes.second, headers=alice) == 200
    reset = processes.first.patch(
        "/api/admin/users/alice", json={"password": NEW_PASSWORD}, headers=processes.auth("root")
    )
    assert reset.status_code == 200, reset.text
    assert COOKIE_NAME not in reset.cookies  # the admin's own credentials are untouched
    for client in (processes.second, processes.first):
        for cookie in cookies:
            assert _session_me(client, cookie) == 401
        assert _me(client, headers=alice) == 401
    # Nobody else lost anything; alice logs in with the new password only.
    assert _me(processes.second, headers=processes.auth("bob")) == 200
    refused = processes.first.post(
        "/api/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert refused.status_code == 401
    cookie, _ = processes.login("alice", NEW_PASSWORD)
    assert _session_me(processes.second, cookie) == 200


def test_ones_own_password_change_keeps_that_session_renewed_and_the_tokens(
    processes: Processes,
) -> None:
    """Like Django's update_session_auth_hash: the changing session stays, under a new id."""
    mine, csrf = processes.login("carol")
    other, _ = processes.login("carol")
    carol = processes.auth("carol")
    for cookie in (mine, other):
        assert _session_me(processes.second, cookie) == 200
    assert _me(processes.second, headers=carol) == 200
    processes.first.cookies.set(COOKIE_NAME, mine)
    changed = processes.first.patch(
        "/api/admin/users/carol", json={"password": NEW_PASSWORD}, headers={CSRF_HEADER: csrf}
    )
    processes.first.cookies.clear()
    assert changed.status_code == 200, changed.text
    renewed = changed.cookies[COOKIE_NAME]
    assert renewed not in (mine, other)
    assert changed.headers["Cache-Control"] == "no-store"
    for client in (processes.second, processes.first):
        assert _session_me(client, other) == 401
        assert _session_me(client, mine) == 401  # a copy of the old cookie is dead too
        assert _session_me(client, renewed) == 200
        assert _me(client, headers=carol) == 200  # tokens one made oneself stay
    # The renewed session keeps its CSRF token.
    processes.second.cookies.set(COOKIE_NAME, renewed)
    ended = processes.second.post("/api/auth/logout", headers={CSRF_HEADER: csrf})
    processes.second.cookies.clear()
    assert ended.status_code == 204, ended.text
    assert _session_me(processes.first, renewed) == 401


def test_ones_own_password_change_with_a_token_ends_every_session(processes: Processes) -> None:
    cookie, _ = processes.login("carol")
    assert _session_me(processes.second, cookie) == 200
    changed = processes.first.patch(
        "/api/admin/users/carol", json={"password": NEW_PASSWORD}, headers=processes.auth("carol")
    )
    assert changed.status_code == 200, changed.text
    assert COOKIE_NAME not in changed.cookies
    assert _session_me(processes.second, cookie) == 401
    assert _me(processes.second, headers=processes.auth("carol")) == 200


def test_a_committed_change_whose_marker_cannot_be_written_answers_its_success(
    processes: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    """The marker's path cannot be a file (it leads through a regular file): the commit stands.

    The revoke is committed, so it answers 204, not 500; the failure is logged as
    an error naming the marker; the process that made the change refuses the
    token at once all the same (its own cache, an hour long here, is told).
    """
    from zstack_analyzer.service.change_markers import touch_marker

    marker = processes.settings.accounts_marker
    blocker = marker.parent / "a-file"
    blocker.write_text("not a directory")
    marker.unlink(missing_ok=True)
    marker.symlink_to(blocker / "accounts.changed")
    with pytest.raises(OSError, match="Not a directory"):
        touch_marker(marker)  # a real failure of the file system, not a mock
    laptop = processes.auth("bob/laptop")
    assert _me(processes.second, headers=laptop) == 200  # cached for an hour
    with caplog.at_level("ERROR", logger="zstack_analyzer.service.auth.account_changes"):
        revoked = processes.second.delete(
            f"/api/tokens/{processes.token_ids['bob/laptop']}", headers=processes.auth("bob")
        )
    assert revoked.status_code == 204, revoked.text
    (record,) = [r for r in caplog.records if r.name.endswith("account_changes")]
    assert record.levelname == "ERROR"
    assert str(marker) in record.getMessage()
    assert "committed" in record.getMessage()
    assert "ZSTACK_ACCOUNTS__CACHE_SECONDS" in record.getMessage()
    assert _me(processes.second, headers=laptop) == 401
    assert _me(processes.first, headers=laptop) == 401  # the database has it
    assert _me(processes.second, headers=processes.auth("bob")) == 200


def test_a_removed_membership_hides_the_groups_images_in_every_process(
    processes: Processes,
) -> None:
    image = f"/api/images/{processes.upload('alice', 'g-shared')}"
    bob = processes.auth("bob")
    assert processes.second.get(image, headers=bob).status_code == 200
    removed = processes.first.delete(
        "/api/admin/groups/g-shared/members/bob", headers=processes.auth("root")
    )
    assert removed.status_code == 200, removed.text
    assert processes.second.get(image, headers=bob).status_code == 404
    assert processes.second.get(image, headers=processes.auth("alice")).status_code == 200


def test_a_lowered_group_level_is_enforced_by_every_process(processes: Processes) -> None:
    image = f"/api/images/{processes.upload('alice', 'g-shared')}"
    bob = processes.auth("bob")
    assert processes.second.get(image, headers=bob).status_code == 200
    lowered = processes.first.patch(
        "/api/admin/groups/g-shared",
        json={"permissions": "private"},
        headers=processes.auth("root"),
    )
    assert lowered.status_code == 200, lowered.text
    # private: members no longer see each other's images.
    assert processes.second.get(image, headers=bob).status_code == 404


def test_a_group_owner_made_a_member_loses_the_owners_rights_in_every_process(
    processes: Processes,
) -> None:
    image = f"/api/images/{processes.upload('alice', 'g-led')}"
    bob = processes.auth("bob")
    assert processes.second.get(image, headers=bob).status_code == 200  # the group's owner
    demoted = processes.first.put(
        "/api/admin/groups/g-led/members/bob",
        json={"is_owner": False},
        headers=processes.auth("root"),
    )
    assert demoted.status_code == 200, demoted.text
    # A member of a private group does not see another member's image.
    assert processes.second.get(image, headers=bob).status_code == 404


def test_a_demoted_admin_loses_the_admin_routes_in_every_process(processes: Processes) -> None:
    carol = processes.auth("carol")
    assert processes.second.get("/api/admin/users", headers=carol).status_code == 200
    demoted = processes.first.patch(
        "/api/admin/users/carol", json={"is_admin": False}, headers=processes.auth("root")
    )
    assert demoted.status_code == 200, demoted.text
    assert processes.second.get("/api/admin/users", headers=carol).status_code == 403


def test_a_deleted_group_gives_no_rights_in_its_successor_in_any_process(
    processes: Processes,
) -> None:
    """SQLite reuses the highest free id: a group made after a delete may get the old group's id.

    A cached principal still listing the deleted group would then open the new
    group's images to the old group's members.
    """
    root = processes.auth("root")
    made = processes.first.post(
        "/api/admin/groups", json={"name": "g-old", "permissions": "read-only"}, headers=root
    )
    assert made.status_code == 201, made.text
    old_id = made.json()["id"]
    joined = processes.first.put("/api/admin/groups/g-old/members/bob", json={}, headers=root)
    assert joined.status_code == 200, joined.text
    bob = processes.auth("bob")
    me = processes.second.get("/api/auth/me", headers=bob)
    assert "g-old" in {group["name"] for group in me.json()["groups"]}  # cached with g-old
    assert processes.first.delete("/api/admin/groups/g-old", headers=root).status_code == 204
    made = processes.first.post(
        "/api/admin/groups", json={"name": "g-new", "permissions": "read-only"}, headers=root
    )
    assert made.status_code == 201, made.text
    assert made.json()["id"] == old_id  # the id is reused (SQLite, no AUTOINCREMENT)
    added = processes.first.put("/api/admin/groups/g-new/members/alice", json={}, headers=root)
    assert added.status_code == 200, added.text
    image = f"/api/images/{processes.upload('alice', 'g-new')}"

    assert processes.second.get(image, headers=bob).status_code == 404
    me = processes.second.get("/api/auth/me", headers=bob)
    assert {group["name"] for group in me.json()["groups"]} == {"g-shared", "g-led"}


# -- the same through the CLI (`zstack user ...`, `zstack group ...`) ----------------------


runner = CliRunner()


@pytest.fixture
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _zstack(processes: Processes, *args: str, stdin: str | None = None) -> str:
    from zstack_analyzer.cli import app

    env = {"ZSTACK_DATA_DIR": str(processes.settings.data_dir), "ZSTACK_AUTH": "users"}
    env.update({f"ZSTACK_ACCOUNTS__{k.upper()}": str(v) for k, v in FAST_PASSWORDS.items()})
    result = runner.invoke(app, list(args), env=env, input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.usefixtures("_fresh_settings")
def test_zstack_user_disable_is_seen_by_every_running_server(processes: Processes) -> None:
    bob = processes.auth("bob")
    assert _me(processes.first, headers=bob) == 200
    assert _me(processes.second, headers=bob) == 200
    _zstack(processes, "user", "disable", "bob")
    assert _me(processes.first, headers=bob) == 401
    assert _me(processes.second, headers=bob) == 401
    # Enabled again: the password works, the old tokens stay revoked.
    _zstack(processes, "user", "disable", "bob", "--enable")
    assert _me(processes.first, headers=bob) == 401
    assert _me(processes.second, headers=bob) == 401
    processes.login("bob")


@pytest.mark.usefixtures("_fresh_settings")
def test_zstack_group_member_remove_is_seen_by_every_running_server(
    processes: Processes,
) -> None:
    image = f"/api/images/{processes.upload('alice', 'g-shared')}"
    bob = processes.auth("bob")
    assert processes.second.get(image, headers=bob).status_code == 200
    _zstack(processes, "group", "member", "g-shared", "bob", "--remove")
    assert processes.second.get(image, headers=bob).status_code == 404


@pytest.mark.usefixtures("_fresh_settings")
def test_zstack_user_passwd_ends_sessions_and_tokens_in_every_running_server(
    processes: Processes,
) -> None:
    cookie, _ = processes.login("bob")
    bob = processes.auth("bob")
    for client in (processes.first, processes.second):
        assert _session_me(client, cookie) == 200
        assert _me(client, headers=bob) == 200
    said = _zstack(
        processes, "user", "passwd", "bob", "--password-stdin", stdin=NEW_PASSWORD + "\n"
    )
    for client in (processes.first, processes.second):
        assert _session_me(client, cookie) == 401
        assert _me(client, headers=bob) == 401
        assert _me(client, headers=processes.auth("bob/laptop")) == 401
        assert _me(client, headers=processes.auth("alice")) == 200
    assert "sessions ended" in said
    assert "tokens revoked" in said
