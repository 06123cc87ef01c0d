"""The viewer with accounts (ZSTACK_AUTH=users) in a real Chromium against a live server.

What a lab member does: opens the page and gets the login form, logs in, sees only
what their groups allow (with owner and group on every card and in the image panel),
narrows the gallery to one group, makes a token, changes their password (their other
sessions end, this page goes on), logs out (and the session is over on the server, not
just in the page). What an admin does: creates a group and puts a
person in it. And single-user mode keeps its old face: no login, no user menu, no
owner labels.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.service.conftest import write_ome_tiff
from tests.service.live import LiveServer, make_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

PASSWORD = "a long enough passphrase"  # noqa: S105  (a test account's)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A users-mode server: ann in imaging (read-only) and cryo (private), ben in cryo,
    cat alone in secret; root the admin. Images uploaded by their owners over HTTP."""
    from zstack_analyzer.service.auth import accounts

    server = LiveServer(make_settings(tmp_path / "data", auth="users"))
    server.start()
    try:
        with server.app.state.database.sessions() as session:
            accounts.create_user(session, "root", password=PASSWORD, admin=True)
            for group, level in (
                ("imaging", "read-only"),
                ("cryo", "private"),
                ("secret", "private"),
            ):
                accounts.create_group(session, group, level)
            accounts.create_user(session, "ann", password=PASSWORD, display_name="Ann")
            for name in ("ben", "cat", "dan"):
                accounts.create_user(session, name)
            for group, name in (
                ("imaging", "ann"),
                ("cryo", "ann"),
                ("cryo", "ben"),
                ("secret", "cat"),
            ):
                accounts.set_membership(session, group, name)
            tokens = {n: accounts.create_token(session, n)[1] for n in ("ann", "ben", "cat")}
        tiff = write_ome_tiff(tmp_path / "cells.ome.tif", (1, 2, 24, 32))
        images: dict[str, str] = {}
        for label, owner, group in (
            ("ann-imaging", "ann", "imaging"),
            ("ann-cryo", "ann", "cryo"),
            ("ben-cryo", "ben", "cryo"),  # private group: ann must not see it
            ("cat-secret", "cat", "secret"),
        ):
            with tiff.open("rb") as fh:
                answer = httpx.post(
                    f"{server.base_url}/api/images/upload",
                    params={"group": group},
                    files={"file": (f"{label}.ome.tif", fh)},
                    headers={"Authorization": f"Bearer {tokens[owner]}"},
                    timeout=60,
                )
            assert answer.status_code == 201, answer.text
            images[label] = answer.json()["id"]
        yield {"base": server.base_url, "images": images, "server": server}
    finally:
        server.stop()


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.locator("#login-view").wait_for()
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.locator("#user-menu").wait_for()


def card_names(page: Page) -> list[str]:
    return sorted(page.locator("#grid .card .filename").all_inner_texts())


def wait_cards(page: Page, names: list[str]) -> None:
    page.wait_for_function(
        """(want) => {
             const got = [...document.querySelectorAll('#grid .card .filename')]
               .map((a) => a.textContent).sort();
             return JSON.stringify(got) === JSON.stringify(want);
           }""",
        arg=sorted(names),
    )


def test_member_logs_in_sees_own_groups_filters_and_logs_out(
    lab: dict[str, Any], page: Page, artifacts: Path
) -> None:
    base = lab["base"]
    csrf_sent: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            csrf_sent.append(r.headers.get("x-csrf-token"))
            if r.method != "GET" and "/api/" in r.url and "/api/auth/login" not in r.url
            else None
        ),
    )
    # A token left in the tab from when the server ran in token mode must not get in the way.
    page.goto(base + "/#/nothing")
    page.evaluate("sessionStorage.setItem('zstack-api-token', 'stale-token-mode-secret')")
    page.goto(base + "/")
    # The API said 401: the login page, not the gallery.
    page.locator("#login-view").wait_for()
    assert page.locator("#gallery-view").is_hidden()
    page.screenshot(path=str(artifacts / "accounts-login.png"))
    page.fill("#login-username", "ann")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    page.locator("#login-error").wait_for()
    assert "Wrong username or password" in page.inner_text("#login-error")

    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.locator("#gallery-view").wait_for()
    assert page.inner_text("#user-name") == "ann"
    # Ann sees her own images and imaging's, never ben's in the private cryo group or cat's.
    wait_cards(page, ["ann-cryo.ome.tif", "ann-imaging.ome.tif"])
    owners = page.locator("#grid .card .owner").all_inner_texts()
    assert sorted(owners) == ["ann · cryo", "ann · imaging"]
    page.screenshot(path=str(artifacts / "accounts-gallery.png"))

    # The group filter lists her groups and narrows the gallery on the server.
    assert page.locator("#group-filter").is_visible()
    options = page.locator("#filter-group option").all_inner_texts()
    assert options == ["all my groups", "cryo", "imaging"]
    with page.expect_response(lambda r: "group=cryo" in r.url):
        page.select_option("#filter-group", "cryo")
    wait_cards(page, ["ann-cryo.ome.tif"])
    page.select_option("#filter-group", "")
    wait_cards(page, ["ann-cryo.ome.tif", "ann-imaging.ome.tif"])

    # The image panel names owner and group.
    page.click(f'#grid .card[data-id="{lab["images"]["ann-imaging"]}"] .filename')
    page.locator("#viewer-owner").wait_for()
    assert page.inner_text("#viewer-owner") == "Owner ann · group imaging"
    page.go_back()
    page.locator("#gallery-view").wait_for()

    # The user menu: my tokens (a state-changing request: it carries the CSRF token).
    page.click("#user-button")
    page.click("#menu-tokens")
    page.locator("#tokens-view").wait_for()
    assert page.locator("#menu-admin").is_hidden()
    page.fill("#token-name", "notebook")
    page.check("#token-read-only")
    page.click("#token-create-form button[type=submit]")
    page.locator("#token-created").wait_for()
    secret = page.inner_text("#token-secret")
    assert secret
    # The list is fetched again after the create; the fixture's own token may show first.
    page.locator("#tokens-body tr", has_text="notebook").wait_for()
    assert "read-only" in page.locator("#tokens-body tr", has_text="notebook").inner_text()
    me = httpx.get(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["read_only"]) == ("ann", True)
    assert csrf_sent
    assert all(csrf_sent), f"a state-changing request went without X-CSRF-Token: {csrf_sent}"

    # Delete from the gallery (CSRF again), then log out: the session ends on the server.
    cookie = next(c for c in page.context.cookies() if c["name"] == "zstack_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    page.click("#user-button")
    page.click("#menu-logout")
    page.locator("#login-view").wait_for()
    assert page.locator("#user-menu").is_hidden()
    after = httpx.get(f"{base}/api/auth/me", cookies={"zstack_session": cookie["value"]})
    assert after.status_code == 401
    # Back in the gallery URL without a session: the login page again.
    page.goto(base + "/#/")
    page.locator("#login-view").wait_for()


def test_member_changes_own_password_and_the_page_goes_on(
    lab: dict[str, Any], page: Page, artifacts: Path
) -> None:
    base = lab["base"]
    new_password = "another passphrase, longer"  # noqa: S105  (a test account's)
    # Ann is logged in elsewhere too (a laptop): that session must end with the change.
    elsewhere = httpx.post(
        f"{base}/api/auth/login", json={"username": "ann", "password": PASSWORD}, timeout=30
    )
    assert elsewhere.status_code == 200, elsewhere.text
    page.goto(base + "/")
    log_in(page, "ann")
    page.locator("#gallery-view").wait_for()
    before = next(c for c in page.context.cookies() if c["name"] == "zstack_session")
    page.click("#user-button")
    page.click("#menu-password")
    page.locator("#password-view").wait_for()
    assert page.evaluate("document.activeElement.id") == "password-current"
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.method) if "/api/auth/password" in r.url else None)

    def submit(current: str, new: str, repeat: str) -> None:
        page.fill("#password-current", current)
        page.fill("#password-new", new)
        page.fill("#password-repeat", repeat)
        page.click("#password-submit")

    # Mistakes the page catches itself: nothing is sent.
    submit(PASSWORD, new_password, new_password + "!")
    page.locator("#password-error").wait_for()
    assert page.inner_text("#password-error") == "The two new passwords differ."
    submit(PASSWORD, "short", "short")
    page.wait_for_function(
        "() => document.getElementById('password-error').textContent.includes('at least 8')"
    )
    assert sent == []
    # A wrong current password: the server refuses, the page says so and stays logged in.
    with page.expect_response("**/api/auth/password") as refused:
        submit("not my password", new_password, new_password)
    assert refused.value.status == 403
    page.wait_for_function(
        "() => document.getElementById('password-error').textContent"
        " === 'The current password is wrong.'"
    )
    assert page.locator("#password-done").is_hidden()
    assert page.locator("#password-view").is_visible()
    # The right one: changed.
    with page.expect_response("**/api/auth/password") as changed:
        submit(PASSWORD, new_password, new_password)
    assert changed.value.status == 200
    page.locator("#password-done").wait_for()
    assert "Password changed" in page.inner_text("#password-done")
    assert page.locator("#password-error").is_hidden()
    assert [page.input_value(f"#password-{f}") for f in ("current", "new", "repeat")] == [""] * 3
    page.screenshot(path=str(artifacts / "accounts-password.png"))
    after = next(c for c in page.context.cookies() if c["name"] == "zstack_session")
    assert after["value"] != before["value"]
    assert after["httpOnly"]
    # The laptop's session is over; the old password no longer logs in, the new one does.
    gone = httpx.get(
        f"{base}/api/auth/me", cookies={"zstack_session": elsewhere.cookies["zstack_session"]}
    )
    assert gone.status_code == 401
    for password, status in ((PASSWORD, 401), (new_password, 200)):
        answer = httpx.post(
            f"{base}/api/auth/login", json={"username": "ann", "password": password}, timeout=30
        )
        assert answer.status_code == status, answer.text
    # This page goes on with its renewed cookie: a change (CSRF) and a reload.
    page.click("#user-button")
    page.click("#menu-tokens")
    page.locator("#tokens-view").wait_for()
    page.fill("#token-name", "after the change")
    page.click("#token-create-form button[type=submit]")
    page.locator("#token-created").wait_for()
    page.goto(base + "/#/")
    page.reload()
    page.locator("#gallery-view").wait_for()
    wait_cards(page, ["ann-cryo.ome.tif", "ann-imaging.ome.tif"])
    assert page.inner_text("#user-name") == "ann"
    assert page.locator("#login-view").is_hidden()


def test_change_password_is_offered_only_where_the_server_keeps_the_password(
    tmp_path: Path, page: Page
) -> None:
    """A local account sees "Change password"; a directory (LDAP) account does not.

    The server answers 409 to a directory account's change (its password is changed
    in the directory), so the viewer does not offer it, nor open the page by its address.
    """
    from tests.ldapserver import PEOPLE, running_slapd, slapd_missing, template_settings
    from tests.needs import unavailable
    from zstack_analyzer.service.auth import accounts

    missing = slapd_missing()
    if missing:
        unavailable(missing)
    directory_password = "kept-in-the-directory-7"  # noqa: S105  (a test account's)
    with running_slapd() as slapd:
        slapd.add(
            f"dn: uid=lena,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: lena\ncn: Lena\n"
            f"sn: L\nuserPassword: {directory_password}\n"
        )
        settings = make_settings(tmp_path / "data", auth="users", ldap=template_settings(slapd))
        server = LiveServer(settings)
        server.start()
        try:
            with server.app.state.database.sessions() as session:
                accounts.create_user(session, "ann", password=PASSWORD)
            for username, password, offered in (
                ("ann", PASSWORD, True),
                ("lena", directory_password, False),
            ):
                page.goto(server.base_url + "/#/")
                log_in(page, username, password)
                page.locator("#gallery-view").wait_for()
                assert page.inner_text("#user-name") == username
                page.click("#user-button")
                page.locator("#menu-tokens").wait_for()
                assert page.locator("#menu-password").is_visible() is offered
                page.keyboard.press("Escape")
                # Typing the page's address: the password form only where it can work.
                page.goto(server.base_url + "/#/password")
                shown = "#password-view" if offered else "#gallery-view"
                page.locator(shown).wait_for()
                assert page.locator("#password-view").is_visible() is offered
                page.click("#user-button")
                page.click("#menu-logout")
                page.locator("#login-view").wait_for()
        finally:
            server.stop()


def test_admin_page_makes_a_group_and_a_member(
    lab: dict[str, Any], page: Page, artifacts: Path
) -> None:
    base = lab["base"]
    page.goto(base + "/")
    log_in(page, "root")
    # The admin sees everything, and the group filter offers every group.
    wait_cards(
        page, ["ann-cryo.ome.tif", "ann-imaging.ome.tif", "ben-cryo.ome.tif", "cat-secret.ome.tif"]
    )
    page.wait_for_function("() => document.querySelectorAll('#filter-group option').length === 5")
    page.click("#user-button")
    page.click("#menu-admin")
    page.locator("#admin-view").wait_for()
    page.locator('#admin-users-body tr[data-username="ann"]').wait_for()
    page.fill("#new-group", "confocal")
    page.select_option("#new-group-level", "read-annotate")
    page.click("#group-create-form button[type=submit]")
    group = page.locator('.admin-group[data-group="confocal"]')
    group.wait_for()
    group.locator("select[aria-label='User to add to confocal']").select_option("dan")
    group.locator("button[type=submit]").click()
    page.locator('.admin-group[data-group="confocal"] li[data-username="dan"]').wait_for()
    # Change the level and disable a user, all through the admin routes.
    page.locator('.admin-group[data-group="confocal"] select').first.select_option("read-write")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('confocal is now read-write')"
    )
    page.click("button[aria-label='Disable ben']")
    page.locator('#admin-users-body tr[data-username="ben"] >> text=disabled').wait_for()
    page.screenshot(path=str(artifacts / "accounts-admin.png"), full_page=True)

    # The audit trail at the bottom: root's login, and the changes just made (filtered).
    page.locator('#audit-body tr[data-action="login"]').first.wait_for()
    page.fill("#audit-action", "group_*")
    page.click("#audit-form button[type=submit]")
    page.wait_for_function(
        """() => {
             const rows = [...document.querySelectorAll('#audit-body tr')];
             return rows.length === 2 && rows.every((r) => r.dataset.action.startsWith('group_'));
           }"""
    )
    assert "confocal" in page.inner_text("#audit-body")

    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    groups = httpx.get(f"{base}/api/admin/groups", cookies=cookies).json()
    confocal = next(g for g in groups if g["name"] == "confocal")
    assert confocal["permissions"] == "read-write"
    assert confocal["members"] == [{"username": "dan", "role": "member"}]
    users = {u["username"]: u for u in httpx.get(f"{base}/api/admin/users", cookies=cookies).json()}
    assert users["ben"]["is_active"] is False


def test_single_user_mode_has_no_accounts_ui(tmp_path: Path, page: Page) -> None:
    server = LiveServer(make_settings(tmp_path / "data"))
    server.start()
    try:
        tiff = write_ome_tiff(tmp_path / "solo.ome.tif", (1, 2, 24, 32))
        with tiff.open("rb") as fh:
            answer = httpx.post(
                f"{server.base_url}/api/images/upload", files={"file": ("solo.ome.tif", fh)}
            )
        assert answer.status_code == 201
        page.goto(server.base_url + "/")
        wait_cards(page, ["solo.ome.tif"])
        assert page.locator("#login-view").is_hidden()
        assert page.locator("#user-menu").is_hidden()
        assert page.locator("#group-filter").is_hidden()
        assert page.locator("#grid .card .owner").count() == 0
        page.click("#grid .card .filename")
        page.locator("#viewer-view").wait_for()
        page.wait_for_function(
            "() => document.getElementById('viewer-title').textContent === 'solo.ome.tif'"
        )
        assert page.locator("#viewer-owner").is_hidden()
    finally:
        with contextlib.suppress(Exception):
            server.stop()


def test_the_tree_offers_no_change_of_another_members_containers(
    lab: dict[str, Any], page: Page, tmp_path: Path
) -> None:
    """In a read-only group ann sees dan's project and dataset but is offered nothing to change.

    The server refuses ann's rename, delete, link and unlink of dan's containers (403);
    the tree must not offer them: no rename form, no drop target, not among the link
    targets or the projects a new dataset may go into, no "Unlink" on its cards.
    """
    from zstack_analyzer.service.auth import accounts

    base, server = lab["base"], lab["server"]
    with server.app.state.database.sessions() as session:
        accounts.set_membership(session, "imaging", "dan")
        dan_token = accounts.create_token(session, "dan")[1]
        ann_token = accounts.create_token(session, "ann")[1]

    def api(token: str, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(
            method,
            f"{base}{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            **kwargs,
        )
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    tiff = write_ome_tiff(tmp_path / "dan.ome.tif", (1, 2, 24, 32))
    with tiff.open("rb") as fh:
        dan_image = api(
            dan_token,
            "POST",
            "/api/images/upload",
            params={"group": "imaging"},
            files={"file": ("dan-imaging.ome.tif", fh)},
        )["id"]
    dan_project = api(
        dan_token, "POST", "/api/projects", params={"group": "imaging"}, json={"name": "dan-proj"}
    )
    dan_dataset = api(
        dan_token,
        "POST",
        "/api/datasets",
        params={"group": "imaging"},
        json={"name": "dan-ds", "project_id": dan_project["id"]},
    )
    api(
        dan_token,
        "POST",
        f"/api/datasets/{dan_dataset['id']}/images",
        json={"image_ids": [dan_image]},
    )
    api(ann_token, "POST", "/api/projects", params={"group": "imaging"}, json={"name": "ann-proj"})
    api(ann_token, "POST", "/api/datasets", params={"group": "imaging"}, json={"name": "ann-ds"})

    page.goto(base + "/")
    log_in(page, "ann")
    dan_node = page.locator(f'.tree-dataset[data-dataset-id="{dan_dataset["id"]}"]')
    dan_node.wait_for()
    assert "read-only" in (dan_node.get_attribute("class") or "")
    assert "dan's" in (dan_node.get_attribute("title") or "")
    ann_node = page.locator(".tree-dataset", has_text="ann-ds")
    assert "read-only" not in (ann_node.get_attribute("class") or "")
    # Only what ann may change is offered as a link target or a new dataset's project.
    assert page.locator("#link-target option").all_inner_texts() == ["choose…", "ann-ds"]
    assert page.locator("#new-dataset-project option").all_inner_texts() == [
        "no project",
        "ann-proj",
    ]

    # Dan's dataset: its images, but no rename/delete form and no "Unlink" on its cards.
    dan_node.click()
    wait_cards(page, ["dan-imaging.ome.tif"])
    assert page.locator("#scope-form").is_hidden()
    assert page.inner_text("#scope-read-only") == "dan's: you may view it, not change it"
    assert page.locator("#grid .card .unlink").count() == 0
    # The server agrees: ann may not rename it.
    refused = httpx.patch(
        f"{base}/api/datasets/{dan_dataset['id']}",
        json={"name": "mine now"},
        headers={"Authorization": f"Bearer {ann_token}"},
    )
    assert refused.status_code == 403, refused.text

    # Her own dataset: the form, and no read-only note.
    ann_node.click()
    page.locator("#scope-form").wait_for()
    assert page.locator("#scope-read-only").is_hidden()
    assert page.input_value("#scope-name") == "ann-ds"
