"""Permissions of projects, datasets, tags and annotations per group level (issue 24), SQLite and PostgreSQL.

The lab of ``authworld.py`` (users mode): alice, a member of every level
group, makes a dataset in each; every role then reads, annotates, changes,
links and deletes, and the expected status comes from the issue's table
(``expect_see``, ``expect_annotate``, ``expect_change`` of the permission
matrix, written there by hand). Lists, tag counts and search must hold
exactly what the role may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.service.authworld import ALICE, LEVELS, ROLES
from tests.service.test_permission_matrix import (
    ALL_ROLES,
    _world,
    expect_annotate,
    expect_change,
    expect_see,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.service.authworld import World


@pytest.fixture(scope="module")
def world(
    module_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from _world(tmp_path_factory, module_database_url)


def _as(world: World, role: str, method: str, path: str, **kw: Any) -> Any:
    world.client.cookies.clear()
    return world.client.request(method.upper(), path, headers=world.headers(role), **kw)


def _expected(role: str, group: str, *, allowed: bool, ok: int) -> int:
    """401 anonymous, 403 read-only token (any write), 404 unseen, 403 seen-not-allowed, else ok."""
    if role == "anonymous":
        return 401
    if ROLES[role][4]:
        return 403
    if not expect_see(role, ALICE, group):
        return 404
    return ok if allowed else 403


@pytest.fixture(scope="module")
def alice_datasets(world: World) -> dict[str, int]:
    """A dataset of alice's in each level group, holding her image of that group, tagged."""
    made = {}
    for level in LEVELS:
        group = f"g-{level}"
        answer = _as(
            world,
            ALICE,
            "post",
            "/api/datasets",
            params={"group": group},
            json={"name": f"ds {level}"},
        )
        assert answer.status_code == 201, answer.text
        dataset = answer.json()["id"]
        image = world.images[(ALICE, group)]
        linked = _as(
            world, ALICE, "post", f"/api/datasets/{dataset}/images", json={"image_ids": [image]}
        )
        assert linked.status_code == 200, linked.text
        tagged = _as(world, ALICE, "put", f"/api/images/{image}/tags", json=[f"alice-{level}"])
        assert tagged.status_code == 200, tagged.text
        made[group] = dataset
    return made


def test_containers_per_level(world: World, alice_datasets: dict[str, int]) -> None:
    for role in ALL_ROLES:
        listed = _as(world, role, "get", "/api/datasets", params={"limit": 1000})
        if role == "anonymous":
            assert listed.status_code == 401
        else:
            seen = {d["id"] for d in listed.json()["data"]}
        for group, dataset in alice_datasets.items():
            see = role != "anonymous" and expect_see(role, ALICE, group)
            if role != "anonymous":
                assert (dataset in seen) is see, (role, group)
            view = _as(world, role, "get", f"/api/datasets/{dataset}")
            assert view.status_code == (401 if role == "anonymous" else 200 if see else 404)
            images = _as(world, role, "get", f"/api/datasets/{dataset}/images")
            assert images.status_code == view.status_code
            if see:
                assert images.json()["count"] == 1
            tags = _as(world, role, "put", f"/api/datasets/{dataset}/tags", json=[f"by-{role}"])
            annotate = expect_annotate(role, ALICE, group)
            assert tags.status_code == _expected(role, group, allowed=annotate, ok=200), (
                role,
                group,
                tags.text,
            )
            comment = _as(
                world, role, "post", f"/api/datasets/{dataset}/comments", json={"text": "hi"}
            )
            assert comment.status_code == _expected(role, group, allowed=annotate, ok=201)
            change = expect_change(role, ALICE, group)
            patch = _as(
                world, role, "patch", f"/api/datasets/{dataset}", json={"description": role}
            )
            assert patch.status_code == _expected(role, group, allowed=change, ok=200), (
                role,
                group,
            )
            image = world.images[(ALICE, group)]
            unlink = _as(world, role, "delete", f"/api/datasets/{dataset}/images/{image}")
            assert unlink.status_code == _expected(role, group, allowed=change, ok=204), (
                role,
                group,
            )
            if unlink.status_code == 204:  # put it back for the next role
                back = _as(
                    world,
                    ALICE,
                    "post",
                    f"/api/datasets/{dataset}/images",
                    json={"image_ids": [image]},
                )
                assert back.status_code == 200


def test_filing_others_images_needs_annotate(world: World) -> None:
    """A member files a colleague's image into their own dataset only where they may annotate it."""
    for role in ROLES:
        if ROLES[role][4]:
            continue
        own = _as(world, role, "post", "/api/datasets", json={"name": f"mine {role}"})
        assert own.status_code == 201, own.text
        dataset = own.json()["id"]
        for level in LEVELS:
            group = f"g-{level}"
            answer = _as(
                world,
                role,
                "post",
                f"/api/datasets/{dataset}/images",
                json={"image_ids": [world.images[(ALICE, group)]]},
            )
            annotate = expect_annotate(role, ALICE, group)
            expected = _expected(role, group, allowed=annotate, ok=200)
            assert answer.status_code == expected, (role, group, answer.text)


def test_tags_counts_and_search_are_filtered(world: World, alice_datasets: dict[str, int]) -> None:
    del alice_datasets
    for role in ALL_ROLES:
        tags = _as(world, role, "get", "/api/tags", params={"q": "alice-", "limit": 1000})
        if role == "anonymous":
            assert tags.status_code == 401
            continue
        for level in LEVELS:
            group = f"g-{level}"
            see = expect_see(role, ALICE, group)
            found = _as(world, role, "get", "/api/images/search", params={"tag": f"alice-{level}"})
            ids = {item["id"] for item in found.json()["data"]}
            assert (world.images[(ALICE, group)] in ids) is see, (role, level)
            counts = {t["name"]: t["count"] for t in tags.json()["data"]}
            # Tags are seen like images: alice's tag in g-LEVEL exactly where her image is.
            assert (f"alice-{level}" in counts) is see, (role, level)
            if see:
                assert counts[f"alice-{level}"] == 1, (role, level)
            by_dataset = _as(
                world, role, "get", "/api/images/search", params={"dataset": f"ds {level}"}
            )
            assert (by_dataset.json()["count"] > 0) is see, (role, level)


def test_tag_rename_by_owner_or_group_owner(world: World, alice_datasets: dict[str, int]) -> None:
    del alice_datasets
    admin_tags = _as(world, "admin", "get", "/api/tags", params={"q": "alice-read-annotate"}).json()
    tag = admin_tags["data"][0]
    assert tag["owner"] == ALICE
    for role, expected in (
        ("outsider", 404),
        ("member-read-annotate", 403),
        ("member-read-write", 404),
        ("read-only-token", 403),
        ("anonymous", 401),
    ):
        answer = _as(world, role, "patch", f"/api/tags/{tag['id']}", json={"name": "renamed"})
        assert answer.status_code == expected, (role, answer.text)
    renamed = _as(world, "group-owner", "patch", f"/api/tags/{tag['id']}", json={"name": "ra-tag"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "ra-tag"
    back = _as(world, ALICE, "patch", f"/api/tags/{tag['id']}", json={"name": tag["name"]})
    assert back.status_code == 200


def test_comments_and_attachments_belong_to_their_author(world: World) -> None:
    image = world.images[(ALICE, "g-read-annotate")]
    comment = _as(
        world,
        "member-read-annotate",
        "post",
        f"/api/images/{image}/comments",
        json={"text": "mine"},
    )
    assert (
        comment.status_code == 201 and comment.json()["owner"] == ROLES["member-read-annotate"][0]
    )
    cid = comment.json()["id"]
    assert _as(world, "member-read-only", "delete", f"/api/comments/{cid}").status_code == 404
    assert _as(world, "outsider", "delete", f"/api/comments/{cid}").status_code == 404
    assert _as(world, "member-read-annotate", "delete", f"/api/comments/{cid}").status_code == 204
    attached = _as(
        world,
        "member-read-annotate",
        "post",
        f"/api/images/{image}/attachments",
        files={"file": ("n.txt", b"notes")},
    )
    assert attached.status_code == 201, attached.text
    aid = attached.json()["id"]
    assert _as(world, "member-read-only", "get", f"/api/attachments/{aid}").status_code == 404
    assert _as(world, "group-owner", "get", f"/api/attachments/{aid}").content == b"notes"
    assert (
        _as(world, ALICE, "delete", f"/api/attachments/{aid}").status_code == 204
    )  # the image's owner


def test_bulk_obeys_the_table(world: World) -> None:
    for level in LEVELS:
        group = f"g-{level}"
        image = world.images[(ALICE, group)]
        table = f"id,tag,stage\n{image},bulk-{level},S1\n"
        for role in ("member-read-annotate", "member-read-only", "outsider"):
            answer = _as(world, role, "post", "/api/annotations/bulk", json={"csv": table})
            if expect_annotate(role, ALICE, group):
                assert answer.status_code == 200, (role, level, answer.text)
            else:
                assert answer.status_code == 422, (role, level)
                assert answer.json()["errors"][0]["row"] == 2
    templates = _as(world, "outsider", "get", "/api/annotations/templates")
    assert templates.status_code == 200
    assert _as(world, "anonymous", "get", "/api/annotations/templates").status_code == 401


def test_delete_with_images_only_deletes_what_the_caller_may(world: World) -> None:
    """A read-write member deletes their dataset with images: alice's (read-annotate) stays."""
    role = "member-read-write"
    upload = world.upload(role, "g-read-write")
    assert upload.status_code == 201
    own_image = upload.json()["id"]
    made = _as(world, role, "post", "/api/datasets", json={"name": "to delete"})
    dataset = made.json()["id"]
    others = world.images[(ALICE, "g-read-only")]
    linked = _as(
        world,
        "admin",
        "post",
        f"/api/datasets/{dataset}/images",
        json={"image_ids": [own_image, others]},
    )
    assert linked.status_code == 200, linked.text
    gone = _as(world, role, "delete", f"/api/datasets/{dataset}", params={"with_images": "true"})
    assert gone.status_code == 200, gone.text
    assert gone.json()["images_deleted"] == [own_image]
    assert _as(world, "admin", "get", f"/api/images/{others}").status_code == 200
    assert _as(world, "admin", "get", f"/api/images/{own_image}").status_code == 404


def test_an_images_datasets_are_only_those_the_caller_sees(
    world: World, alice_datasets: dict[str, int]
) -> None:
    """Alice files her read-annotate image in a private dataset too: only some roles see that one."""
    image = world.images[(ALICE, "g-read-annotate")]
    made = _as(
        world, ALICE, "post", "/api/datasets", params={"group": "g-private"}, json={"name": "hid"}
    )
    hidden = made.json()["id"]
    linked = _as(
        world, ALICE, "post", f"/api/datasets/{hidden}/images", json={"image_ids": [image]}
    )
    assert linked.status_code == 200, linked.text
    for role in ALL_ROLES:
        answer = _as(world, role, "get", f"/api/images/{image}/datasets")
        if role == "anonymous":
            assert answer.status_code == 401
            continue
        if not expect_see(role, ALICE, "g-read-annotate"):
            assert answer.status_code == 404, role
            continue
        assert answer.status_code == 200, (role, answer.text)
        shown = {d["id"] for d in answer.json()["data"]}
        assert answer.json()["count"] == len(shown)
        visible = {
            d["id"]
            for d in _as(world, role, "get", "/api/datasets", params={"limit": 1000}).json()["data"]
        }
        assert shown <= visible, role
        assert alice_datasets["g-read-annotate"] in shown, role
        assert (hidden in shown) is expect_see(role, ALICE, "g-private"), role
    unknown = _as(world, ALICE, "get", "/api/images/00000000-0000-0000-0000-000000000000/datasets")
    assert unknown.status_code == 404


def test_linking_datasets_into_projects(world: World, alice_datasets: dict[str, int]) -> None:
    """Linking needs change on the project and annotate on the dataset, as filing images."""
    projects = {}
    for level in LEVELS:
        group = f"g-{level}"
        made = _as(
            world, ALICE, "post", "/api/projects", params={"group": group}, json={"name": level}
        )
        assert made.status_code == 201, made.text
        projects[group] = made.json()["id"]
    for role in ALL_ROLES:
        for group, project in projects.items():
            dataset = alice_datasets[group]
            path = f"/api/projects/{project}/datasets"
            link = _as(world, role, "post", path, json={"dataset_ids": [dataset]})
            expected = _expected(role, group, allowed=expect_change(role, ALICE, group), ok=200)
            assert link.status_code == expected, (role, group, link.text)
            if expected != 200:
                continue
            assert link.json() == {"project_id": project, "linked": [dataset], "already": []}
            again = _as(world, role, "post", path, json={"dataset_ids": [dataset, dataset]})
            assert again.json()["already"] == [dataset]
            inside = _as(world, role, "get", "/api/datasets", params={"project_id": project})
            assert [d["id"] for d in inside.json()["data"]] == [dataset]
            assert _as(world, role, "delete", f"{path}/{dataset}").status_code == 204
            assert _as(world, role, "delete", f"{path}/{dataset}").status_code == 404
    # Into one's own project: the colleague's dataset must be one's to annotate.
    for role in ROLES:
        if ROLES[role][4]:
            continue
        own = _as(world, role, "post", "/api/projects", json={"name": f"mine {role}"}).json()["id"]
        for group, dataset in alice_datasets.items():
            link = _as(
                world,
                role,
                "post",
                f"/api/projects/{own}/datasets",
                json={"dataset_ids": [dataset]},
            )
            allowed = expect_annotate(role, ALICE, group)
            assert link.status_code == _expected(role, group, allowed=allowed, ok=200), (
                role,
                group,
            )
    bad = _as(world, ALICE, "post", f"/api/projects/{own}/datasets", json={"dataset_ids": []})
    assert bad.status_code == 422
    absent = _as(
        world, "admin", "post", f"/api/projects/{own}/datasets", json={"dataset_ids": [9999]}
    )
    assert absent.status_code == 404
