"""The permission matrix, generated from the OpenAPI document: every route x every role x own/other's image.

Every operation of ``app.openapi()`` must be classified in ``CATEGORIES``; a new
route that is not fails ``test_every_route_is_classified``. For each category
the expected status comes from the issue's table, written out here by hand
(``LEVEL_TABLE``, ``expect_see``, ``expect_change``), not from the code under
test. Roles: anonymous, a user in another group, a member of each of the four
levels, a group owner, an admin and a read-only token (tests/service/authworld.py).
Images: every image of the world (alice's in each level group, and each role's
own), so each role meets its own image and others' of every level.

The whole matrix runs on SQLite; a subset (records, a picture, download, list,
search, delete) also on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tests.service.authworld import (
    ALICE,
    FAST_PASSWORDS,
    LEVELS,
    PASSWORD,
    ROLES,
    build_world,
    default_group,
)
from tests.service.conftest import create_pg_database, drop_pg_database, write_ome_tiff
from tests.service.live import make_settings
from zstack_analyzer.service.config import AccountSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.service.authworld import World

#: level -> (members see others' images, annotate them, change or delete them): the issue's table.
LEVEL_TABLE = {
    "private": (False, False, False),
    "read-only": (True, False, False),
    "read-annotate": (True, True, False),
    "read-write": (True, True, True),
}
ALL_ROLES = ("anonymous", *ROLES)

#: Every API operation, by category. A route missing here fails the test below.
CATEGORIES: dict[tuple[str, str], str] = {
    ("get", "/api/health"): "open",
    ("get", "/api/images/formats/supported"): "open",
    ("get", "/api/images/"): "list",
    ("get", "/api/images/search"): "list",
    ("get", "/api/images/lookup"): "list",
    ("post", "/api/images/upload"): "upload",
    ("post", "/api/images/register"): "register",
    ("get", "/api/images/{image_id}"): "image-view",
    ("get", "/api/images/{image_id}/metadata"): "image-view",
    ("get", "/api/images/{image_id}/quality"): "image-view",
    ("get", "/api/images/{image_id}/thumbnail"): "image-view",
    ("get", "/api/images/{image_id}/mip"): "image-view",
    ("get", "/api/images/{image_id}/slice/{z}"): "image-view",
    ("get", "/api/images/{image_id}/section/{plane}/{index}"): "image-view",
    ("get", "/api/images/{image_id}/orthogonal"): "image-view",
    ("get", "/api/images/{image_id}/histogram"): "image-view",
    ("get", "/api/images/{image_id}/download"): "image-view",
    ("get", "/api/images/{image_id}/zarr/{key}"): "image-view",
    ("get", "/api/images/{image_id}.ome.zarr/{key}"): "image-view",
    ("get", "/api/images/{image_id}/tile/{level}/{row}/{column}"): "image-view",
    ("delete", "/api/images/{image_id}"): "image-delete",
    ("patch", "/api/images/{image_id}"): "image-move",
    ("post", "/api/auth/login"): "login",
    ("post", "/api/auth/logout"): "self",
    ("get", "/api/auth/me"): "self",
    ("post", "/api/auth/password"): "self",
    ("get", "/api/tokens"): "self",
    ("post", "/api/tokens"): "self",
    ("delete", "/api/tokens/{token_id}"): "self",
    ("get", "/api/admin/users"): "admin",
    ("post", "/api/admin/users"): "admin",
    ("patch", "/api/admin/users/{username}"): "admin",
    ("get", "/api/admin/groups"): "admin",
    ("post", "/api/admin/groups"): "admin",
    ("patch", "/api/admin/groups/{name}"): "admin",
    ("delete", "/api/admin/groups/{name}"): "admin",
    ("put", "/api/admin/groups/{name}/members/{username}"): "admin",
    ("delete", "/api/admin/groups/{name}/members/{username}"): "admin",
    ("get", "/api/admin/import-roots"): "admin",
    ("post", "/api/admin/import-roots"): "admin",
    ("delete", "/api/admin/import-roots"): "admin",
    ("get", "/api/admin/quality/backfill"): "admin",
    ("post", "/api/admin/quality/backfill"): "admin",
    ("get", "/api/audit"): "admin",
    # Organize and annotate (issue 24). Reading an image's annotations is seeing the image;
    # writing them is annotating it (read-annotate lets members annotate others' images).
    **{
        ("get", f"/api/images/{{image_id}}/{part}"): "image-view"
        for part in ("tags", "key-values", "comments", "attachments", "datasets")
    },
    ("put", "/api/images/{image_id}/tags"): "image-annotate",
    ("put", "/api/images/{image_id}/key-values"): "image-annotate",
    ("post", "/api/images/{image_id}/comments"): "image-annotate",
    ("post", "/api/images/{image_id}/attachments"): "image-annotate",
    # Containers, their annotations, tags, bulk: tests/service/test_annotation_permissions.py.
    **{
        (method, f"/api/{plural}"): "annotations"
        for plural in ("projects", "datasets")
        for method in ("get", "post")
    },
    **{
        (method, f"/api/{plural}/{{{kind}_id}}"): "annotations"
        for plural, kind in (("projects", "project"), ("datasets", "dataset"))
        for method in ("get", "patch", "delete")
    },
    **{
        (method, f"/api/{plural}/{{{kind}_id}}/{part}"): "annotations"
        for plural, kind in (("projects", "project"), ("datasets", "dataset"))
        for part, method in (
            ("tags", "get"),
            ("tags", "put"),
            ("key-values", "get"),
            ("key-values", "put"),
            ("comments", "get"),
            ("comments", "post"),
            ("attachments", "get"),
            ("attachments", "post"),
        )
    },
    ("post", "/api/datasets/{dataset_id}/images"): "annotations",
    ("get", "/api/datasets/{dataset_id}/images"): "annotations",
    ("delete", "/api/datasets/{dataset_id}/images/{image_id}"): "annotations",
    ("post", "/api/projects/{project_id}/datasets"): "annotations",
    ("delete", "/api/projects/{project_id}/datasets/{dataset_id}"): "annotations",
    ("get", "/api/tags"): "annotations",
    ("patch", "/api/tags/{tag_id}"): "annotations",
    ("post", "/api/tags/{tag_id}/merge"): "annotations",
    ("delete", "/api/comments/{comment_id}"): "annotations",
    ("get", "/api/attachments/{attachment_id}"): "annotations",
    ("delete", "/api/attachments/{attachment_id}"): "annotations",
    ("get", "/api/annotations/templates"): "annotations",
    ("post", "/api/annotations/bulk"): "annotations",
    ("get", "/api/images/{image_id}/rois"): "roi-view",
    ("get", "/api/images/{image_id}/rois/{roi_id}"): "roi-view",
    ("get", "/api/images/{image_id}/rois/{roi_id}/stats"): "roi-view",
    ("get", "/api/images/{image_id}/rois.csv"): "roi-view",
    ("get", "/api/images/{image_id}/rois.geojson"): "roi-view",
    ("post", "/api/images/{image_id}/rois"): "roi-annotate",
    ("post", "/api/images/{image_id}/rois/import"): "roi-annotate",
    ("delete", "/api/images/{image_id}/rois"): "roi-delete",
    ("delete", "/api/images/{image_id}/rois/{roi_id}"): "roi-delete",
    ("put", "/api/images/{image_id}/rois/{roi_id}"): "roi-delete",
}
#: Path parameters of the image routes (valid for the world's 2 x 3 x 16 x 20 stack).
PATH_VALUES = {
    "z": "0",
    "plane": "xz",
    "index": "0",
    "key": ".zattrs",
    "level": "0",
    "row": "0",
    "column": "0",
}
#: Statuses counted over the whole run (printed for the closing note).
TALLY: Counter[str] = Counter()


def _role_of_user(username: str) -> str | None:
    for role, spec in ROLES.items():
        if spec[0] == username:
            return role
    return None


def _groups(role: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(groups the role is a plain member of, groups it owns)."""
    if role == ALICE:
        return tuple(f"g-{level}" for level in LEVELS), ()
    _, member, owned, _, _ = ROLES[role]
    return member, owned


def _level(group: str) -> str | None:
    name = group.removeprefix("g-")
    return name if name in LEVEL_TABLE else None


def _expect(role: str, owner: str, group: str, column: int, *, writes: bool) -> bool:
    """The issue's table for one right: ``column`` of :data:`LEVEL_TABLE` (see, annotate, change).

    Everyone but an anonymous caller (and, for ``writes``, a read-only token) may do it to
    what they own, in a group they own, or as an admin; a member, when the group's level
    grants it.
    """
    if role == "anonymous" or (writes and ROLES[role][4]):
        return False
    if ROLES[role][3] or role == owner:
        return True
    member, owned = _groups(role)
    if group in owned:
        return True
    level = _level(group)
    return group in member and level is not None and LEVEL_TABLE[level][column]


def expect_see(role: str, owner: str, group: str) -> bool:
    """The issue's table: may ``role`` see an image of ``owner`` in ``group``?"""
    return _expect(role, owner, group, 0, writes=False)


def expect_change(role: str, owner: str, group: str) -> bool:
    """The issue's table: may ``role`` change or delete it?"""
    return _expect(role, owner, group, 2, writes=True)


def expect_annotate(role: str, owner: str, group: str) -> bool:
    """The issue's table: may ``role`` annotate it (tags, key-value pairs, comments, ROIs)?"""
    return _expect(role, owner, group, 1, writes=True)


def _fill(path: str, image_id: str) -> str:
    path = path.replace("{image_id}", image_id)
    for name, value in PATH_VALUES.items():
        path = path.replace(f"{{{name}}}", value)
    return path


def _check(world: World, role: str, method: str, path: str, expected: set[int], **kw: Any) -> None:
    headers = {**world.headers(role), **kw.pop("headers", {})}
    world.client.cookies.clear()  # a login's cookie must not make a later "anonymous" someone
    answer = world.client.request(method.upper(), path, headers=headers, **kw)
    TALLY[f"{answer.status_code}"] += 1
    assert answer.status_code in expected, (role, method, path, answer.status_code, answer.text)
    if answer.status_code == 404 and "/api/images/" in path:
        # Not visible and not existing answer alike: nothing tells them apart.
        assert answer.json()["code"] == "image_not_found", answer.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from _world(tmp_path_factory, None)


def _world(factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[World]:
    import warnings

    from zstack_analyzer.service.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    tmp = factory.mktemp("lab")
    roots = tmp / "roots"
    (roots / "rw").mkdir(parents=True)
    (roots / "admin").mkdir()
    write_ome_tiff(roots / "rw" / "shared.ome.tif", (2, 3, 16, 20), seed=3)
    write_ome_tiff(roots / "admin" / "env.ome.tif", (2, 3, 16, 20), seed=4)
    settings = make_settings(
        tmp / "data",
        auth="users",
        database_url=database_url,
        import_roots=[roots / "admin"],
        accounts=AccountSettings(**FAST_PASSWORDS),
    )
    settings.render.thumbnail_on_upload = False
    tiff = write_ome_tiff(tmp / "stack.ome.tif", (2, 3, 16, 20))
    with TestClient(create_app(settings)) as client:
        built = build_world(client, tiff)
        from zstack_analyzer.service.auth import accounts

        with client.app.state.database.sessions() as session:
            accounts.add_import_root(session, "g-read-write", str(roots / "rw"))
        built.roots = roots  # type: ignore[attr-defined]
        yield built


def test_every_route_is_classified(world: World) -> None:
    """No /api operation may be missing from the matrix (nor may the matrix name a gone one)."""
    schema = world.client.app.openapi()
    operations = {
        (method, path)
        for path, item in schema["paths"].items()
        if path.startswith("/api/")
        for method in item
    }
    assert operations - set(CATEGORIES) == set(), "classify the new routes in CATEGORIES"
    assert set(CATEGORIES) - operations == set()


def _operations(world: World, category: str) -> list[tuple[str, str]]:
    schema = world.client.app.openapi()
    found = [
        (method, path)
        for path, item in schema["paths"].items()
        for method in item
        if CATEGORIES.get((method, path)) == category
    ]
    assert found, category
    return found


def test_image_view_routes(world: World) -> None:
    """Every picture, record, histogram, download, zarr key and tile: 200, 404 or 401 by the table."""
    _image_view(world, _operations(world, "image-view"))


def _image_view(world: World, operations: list[tuple[str, str]]) -> None:
    cases = 0
    for (method, path), role, ((owner, group), image_id) in itertools.product(
        operations, ALL_ROLES, world.images.items()
    ):
        if role == "anonymous":
            expected = {401}
        else:
            expected = {200} if expect_see(role, owner, group) else {404}
        _check(world, role, method, _fill(path, image_id), expected)
        cases += 1
    # An id that exists nowhere answers exactly like an invisible one.
    for role in ROLES:
        _check(world, role, "get", "/api/images/00000000-0000-4000-8000-000000000000", {404})
    print(f"image-view matrix: {cases} cases")


#: A request body for each image-annotate route (the last segment of its path).
ANNOTATE_BODIES: dict[str, dict[str, Any]] = {
    "tags": {"json": ["matrix"]},
    "key-values": {"json": [{"key": "matrix", "value": "1"}]},
    "comments": {"json": {"text": "matrix"}},
    "attachments": {"files": {"file": ("m.txt", b"matrix")}},
}


def test_image_annotate_routes(world: World) -> None:
    """Tags, pairs, comments, attachments of an image: 2xx/403/404/401 by the annotate column."""
    cases = 0
    for (method, path), role, ((owner, group), image_id) in itertools.product(
        _operations(world, "image-annotate"), ALL_ROLES, world.images.items()
    ):
        if role == "anonymous":
            expected = 401
        elif ROLES[role][4]:
            expected = 403  # a read-only token may not even try
        elif not expect_see(role, owner, group):
            expected = 404
        elif not expect_annotate(role, owner, group):
            expected = 403
        else:
            expected = 201 if method == "post" else 200
        body = ANNOTATE_BODIES[path.rsplit("/", 1)[1]]
        _check(world, role, method, _fill(path, image_id), {expected}, **body)
        cases += 1
    print(f"image-annotate matrix: {cases} cases")


def _fresh(world: World, owner: str, group: str) -> str:
    writer = f"{owner}/writer" if f"{owner}/writer" in world.tokens else owner
    answer = world.upload(writer, group)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_delete_and_move(world: World) -> None:
    """DELETE: 204/403/404 by the table; PATCH (move): also only the owner in both groups."""
    _delete_and_move(world)


def _delete_and_move(world: World) -> None:
    kinds = list(world.images)
    cases = 0
    for role, (owner, group) in itertools.product(ALL_ROLES, kinds):
        see = role != "anonymous" and expect_see(role, owner, group)
        change = role != "anonymous" and expect_change(role, owner, group)
        if role == "anonymous":
            expected = 401
        elif ROLES[role][4]:
            expected = 403  # a read-only token may not even try
        elif not see:
            expected = 404
        elif not change:
            expected = 403
        else:
            expected = 204
        image_id = _fresh(world, owner, group) if expected == 204 else world.images[(owner, group)]
        _check(world, role, "delete", f"/api/images/{image_id}", {expected})
        # Move to a group of the caller's own.
        target = default_group(role) if role != "anonymous" else "g-other"
        if expected == 204:
            member, owned = _groups(owner) if owner != role else _groups(role)
            in_both = role == owner and group in (*member, *owned, "default")
            move = 200 if ROLES[role][3] or in_both else 403
        else:
            move = expected
        image_id = _fresh(world, owner, group) if move == 200 else world.images[(owner, group)]
        _check(world, role, "patch", f"/api/images/{image_id}", {move}, json={"group": target})
        if move == 200:
            record = world.client.get(f"/api/images/{image_id}", headers=world.headers("admin"))
            assert record.json()["group_id"] is not None
        cases += 2
    print(f"delete/move matrix: {cases} cases")


def _visible(world: World, role: str) -> set[str]:
    return {
        image_id
        for (owner, group), image_id in world.images.items()
        if expect_see(role, owner, group)
    }


def test_list_search_lookup_filter_in_the_query(world: World) -> None:
    """Pages and totals hold exactly the visible images, for list, search and lookup."""
    _list_search_lookup(world)


def _list_search_lookup(world: World) -> None:
    sha = world.client.get(
        f"/api/images/{world.images[(ALICE, 'g-private')]}", headers=world.headers("admin")
    ).json()["sha256"]
    for role in ALL_ROLES:
        if role == "anonymous":
            for path in ("/api/images/", "/api/images/search", f"/api/images/lookup?sha256={sha}"):
                _check(world, role, "get", path, {401})
            continue
        # Images made by other tests of this module (fresh uploads) are excluded by id.
        expected = _visible(world, role)
        known = set(world.images.values())
        for path in ("/api/images/?limit=1000", "/api/images/search?limit=1000"):
            answer = world.client.get(path, headers=world.headers(role))
            assert answer.status_code == 200
            ids = {item["id"] for item in answer.json()["data"]}
            assert ids & known == expected, (role, path)
            assert answer.json()["count"] == len(ids)
        # The gallery's group filter: the visible images of that group, nothing of others.
        for level in LEVELS:
            group = f"g-{level}"
            in_group = {
                image_id
                for (owner, where), image_id in world.images.items()
                if where == group and image_id in expected
            }
            for path in (
                f"/api/images/?limit=1000&group={group}",
                f"/api/images/search?limit=1000&group={group}",
            ):
                answer = world.client.get(path, headers=world.headers(role))
                assert {item["id"] for item in answer.json()["data"]} & known == in_group, (
                    role,
                    path,
                )
                assert all(item["group"] == group for item in answer.json()["data"])
        nothing = world.client.get(
            "/api/images/?group=no-such%00group", headers=world.headers(role)
        )
        assert nothing.status_code == 200 and nothing.json()["count"] == 0
        # A page of one: the total still counts every visible image, not the page.
        answer = world.client.get("/api/images/?limit=1", headers=world.headers(role))
        assert answer.json()["count"] >= len(expected)
        answer = world.client.get(f"/api/images/lookup?sha256={sha}", headers=world.headers(role))
        assert {item["id"] for item in answer.json()["data"]} & known == expected, role
        TALLY["200"] += 4


def test_upload_goes_to_a_group_of_the_caller(world: World) -> None:
    """201 to one's default group or a group one is in; 403 to another; 401/403 anonymous/read-only."""
    for role in ALL_ROLES:
        if role == "anonymous":
            assert world.tiff is not None
            world.client.cookies.clear()
            with world.tiff.open("rb") as fh:
                answer = world.client.post("/api/images/upload", files={"file": ("a.tif", fh)})
            assert answer.status_code == 401
            continue
        read_only = ROLES[role][4]
        answer = world.upload(role)
        assert answer.status_code == (403 if read_only else 201), (role, answer.text)
        if not read_only:
            record = answer.json()["image_stack"]
            username = ROLES[role][0]
            me = world.client.get("/api/auth/me", headers=world.headers(role)).json()
            assert me["username"] == username
            groups = world.client.get("/api/admin/groups", headers=world.headers("admin")).json()
            by_id = {g["id"]: g["name"] for g in groups}
            assert by_id[record["group_id"]] == default_group(role)
        foreign = "g-private" if role == "outsider" else "g-other"
        answer = world.upload(role, foreign)
        allowed = ROLES[role][3] and not read_only
        assert answer.status_code == (201 if allowed else 403), (role, answer.text)
        TALLY["upload (201/403)"] += 2


def test_register_only_under_the_roots_of_ones_groups(world: World) -> None:
    """Group import roots: members (and owners) of g-read-write may register; others 403."""
    roots = world.roots  # type: ignore[attr-defined]
    shared = str(roots / "rw" / "shared.ome.tif")
    env = str(roots / "admin" / "env.ome.tif")
    for role in ALL_ROLES:
        if role == "anonymous":
            _check(world, role, "post", "/api/images/register", {401}, json={"path": shared})
            continue
        member, owned = _groups(role)
        may = (ROLES[role][3] or "g-read-write" in (*member, *owned)) and not ROLES[role][4]
        _check(
            world,
            role,
            "post",
            "/api/images/register",
            {200, 201} if may else {403},
            json={"path": shared},
        )
        # ZSTACK_IMPORT_ROOTS in users mode: admins only (into "default").
        _check(
            world,
            role,
            "post",
            "/api/images/register",
            {200, 201} if ROLES[role][3] else {403},
            json={"path": env},
        )


def test_open_self_and_login_routes(world: World) -> None:
    """Health/formats: anyone authenticated. me/tokens/logout/password: one's own. Login: open."""
    for role in ALL_ROLES:
        ok = role != "anonymous"
        for method, path in _operations(world, "open"):
            _check(world, role, method, path, {200} if ok else {401})
        read_only = ok and ROLES[role][4]
        _check(world, role, "get", "/api/auth/me", {200} if ok else {401})
        _check(world, role, "get", "/api/tokens", {200} if ok else {401})
        created = world.client.post("/api/tokens", json={"name": "m"}, headers=world.headers(role))
        assert created.status_code == (201 if ok and not read_only else 403 if ok else 401)
        if created.status_code == 201:
            token_id = created.json()["id"]
            _check(world, role, "delete", f"/api/tokens/{token_id}", {204})
        # Another user's token is not yours to revoke (404, not disclosed).
        with world.client.app.state.database.sessions() as session:
            from zstack_analyzer.service.auth.accounts import create_token

            alice_token = create_token(session, ALICE, name="x")[0].id
        _check(
            world,
            role,
            "delete",
            f"/api/tokens/{alice_token}",
            {404} if ok and not read_only else {403} if ok else {401},
        )
        _check(
            world,
            role,
            "post",
            "/api/auth/logout",
            {204} if ok and not read_only else {403} if ok else {401},
        )
        # One's own password: in a session only (tests/service/test_own_password.py); every
        # role here holds a token, which is refused (403), and nobody else gets in (401).
        _check(
            world,
            role,
            "post",
            "/api/auth/password",
            {403} if ok else {401},
            json={"current_password": PASSWORD, "new_password": "a new long password"},
        )
        username = ROLES[role][0] if ok else ALICE
        _check(
            world,
            "anonymous",
            "post",
            "/api/auth/login",
            {200},
            json={"username": username, "password": PASSWORD},
        )
    _check(
        world,
        "anonymous",
        "post",
        "/api/auth/login",
        {401},
        json={"username": ALICE, "password": "wrong"},
    )


def test_admin_routes(world: World) -> None:
    """Every /api/admin route: the admin 2xx, everyone else 403, anonymous 401."""
    roots = world.roots  # type: ignore[attr-defined]
    ops = set(_operations(world, "admin"))
    for number, role in enumerate(ALL_ROLES):
        admin = role != "anonymous" and ROLES[role][3] and not ROLES[role][4]
        denied = {401} if role == "anonymous" else {403}
        user, group, folder = f"new{number}", f"ng{number}", roots / f"extra{number}"
        folder.mkdir()

        def ok(*statuses: int, allowed: bool = admin, denied: set[int] = denied) -> set[int]:
            return set(statuses) if allowed else denied

        steps: list[tuple[str, str, set[int], dict[str, Any]]] = [
            ("get", "/api/admin/users", ok(200), {}),
            ("post", "/api/admin/users", ok(201), {"json": {"username": user}}),
            ("patch", f"/api/admin/users/{user}", ok(200), {"json": {"display_name": "N"}}),
            ("get", "/api/admin/groups", ok(200), {}),
            ("post", "/api/admin/groups", ok(201), {"json": {"name": group}}),
            (
                "patch",
                f"/api/admin/groups/{group}",
                ok(200),
                {"json": {"permissions": "read-only"}},
            ),
            ("put", f"/api/admin/groups/{group}/members/{user}", ok(200), {"json": {}}),
            ("delete", f"/api/admin/groups/{group}/members/{user}", ok(200), {}),
            ("get", "/api/admin/import-roots", ok(200), {}),
            (
                "post",
                "/api/admin/import-roots",
                ok(201),
                {"json": {"group": group, "path": str(folder)}},
            ),
            ("delete", "/api/admin/import-roots", ok(204), {"params": {"path": str(folder)}}),
            ("delete", f"/api/admin/groups/{group}", ok(204), {}),
            ("get", "/api/admin/quality/backfill", ok(200), {}),
            ("post", "/api/admin/quality/backfill", ok(202), {}),
            ("get", "/api/audit", ok(200), {"params": {"user": user}}),
        ]
        covered = set()
        for method, path, expected, kwargs in steps:
            _check(world, role, method, path, expected, **kwargs)
            template = path.replace(user, "{username}").replace(f"/{group}", "/{name}")
            covered.add((method, template))
        assert covered == ops


ROI_BODY = {"name": "m", "shapes": [{"type": "rectangle", "x": 1, "y": 2, "width": 5, "height": 4}]}


def _roi_on(world: World, image_id: str, role: str) -> int:
    """A fresh ROI on ``image_id``, drawn by ``role`` (who may annotate it)."""
    writer = f"{role}/writer" if f"{role}/writer" in world.tokens else role
    answer = world.client.post(
        f"/api/images/{image_id}/rois", json=ROI_BODY, headers=world.headers(writer)
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_roi_view_routes(world: World) -> None:
    """List, one ROI, its stats, CSV, GeoJSON: 200 to whoever sees the image, else 404 (401 anonymous)."""
    _roi_view(world, _operations(world, "roi-view"))


def _roi_view(world: World, operations: list[tuple[str, str]]) -> None:
    rois = {image_id: _roi_on(world, image_id, "admin") for image_id in world.images.values()}
    for (method, path), role, ((owner, group), image_id) in itertools.product(
        operations, ALL_ROLES, world.images.items()
    ):
        if owner != ALICE and path.endswith(("/stats", ".csv")):
            continue  # measuring reads the file: alice's four levels suffice for these two
        if role == "anonymous":
            expected = {401}
        else:
            expected = {200} if expect_see(role, owner, group) else {404}
        url = _fill(path, image_id).replace("{roi_id}", str(rois[image_id]))
        _check(world, role, method, url, expected)


def _annotate_status(role: str, owner: str, group: str) -> int:
    if role == "anonymous":
        return 401
    if ROLES[role][4]:
        return 403  # a read-only token may not even try
    if not expect_see(role, owner, group):
        return 404
    return 201 if expect_annotate(role, owner, group) else 403


def test_roi_create_and_import(world: World) -> None:
    """POST an ROI or an import: 201 where the group's level lets the caller annotate (read-annotate too)."""
    _roi_create(world)


def _roi_create(world: World) -> None:
    geojson = b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 4]}}'
    for role, ((owner, group), image_id) in itertools.product(ALL_ROLES, world.images.items()):
        expected = _annotate_status(role, owner, group)
        base = f"/api/images/{image_id}/rois"
        _check(world, role, "post", base, {expected}, json=ROI_BODY)
        _check(
            world, role, "post", f"{base}/import", {expected}, files={"file": ("a.json", geojson)}
        )


def test_roi_delete(world: World) -> None:
    """DELETE an ROI: its author always; someone else's by the change table; DELETE all keeps the rest."""
    _roi_delete(world)


def _roi_delete(world: World) -> None:
    for role, level in itertools.product(ALL_ROLES, LEVELS):
        group = f"g-{level}"
        image_id = world.images[(ALICE, group)]
        base = f"/api/images/{image_id}/rois"
        alices = _roi_on(world, image_id, ALICE)
        annotate = _annotate_status(role, ALICE, group)
        if annotate == 201:
            expected = 204 if expect_change(role, ALICE, group) else 403
        else:
            expected = annotate
        # Changing someone else's ROI follows the same rule as deleting it.
        edited = {200} if expected == 204 else {expected}
        _check(world, role, "put", f"{base}/{alices}", edited, json=ROI_BODY)
        _check(world, role, "delete", f"{base}/{alices}", {expected})
        if annotate != 201:
            _check(world, role, "delete", base, {annotate})
            continue
        # Members who may annotate delete their own ROI, and others' only by the change table.
        own = _roi_on(world, image_id, role)
        alices = _roi_on(world, image_id, ALICE)
        answer = world.client.delete(base, headers=world.headers(role))
        assert answer.status_code == 200, answer.text
        after = world.client.get(f"{base}/{own}", headers=world.headers("admin"))
        assert after.status_code == 404, (role, group)
        after = world.client.get(f"{base}/{alices}", headers=world.headers("admin"))
        assert after.status_code == (404 if expect_change(role, ALICE, group) else 200), (
            role,
            group,
        )


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory: pytest.TempPathFactory, postgres_admin: str) -> Iterator[World]:
    url = create_pg_database(postgres_admin)
    try:
        yield from _world(tmp_path_factory, url)
    finally:
        drop_pg_database(postgres_admin, url)


@pytest.mark.postgres
def test_matrix_subset_on_postgres(pg_world: World) -> None:
    """On PostgreSQL: record, a picture, download; list, search and lookup; delete and move."""
    subset = [
        ("get", "/api/images/{image_id}"),
        ("get", "/api/images/{image_id}/thumbnail"),
        ("get", "/api/images/{image_id}/download"),
    ]
    _image_view(pg_world, subset)
    _list_search_lookup(pg_world)
    _delete_and_move(pg_world)
    # ROIs: one route of each kind (creating is part of the delete cases).
    _roi_view(pg_world, [("get", "/api/images/{image_id}/rois/{roi_id}")])
    _roi_delete(pg_world)


def test_zz_matrix_size() -> None:
    """Print how many requests the matrix made in this process (for the closing note)."""
    print(f"permission matrix: {sum(TALLY.values())} checked requests, by status {dict(TALLY)}")
