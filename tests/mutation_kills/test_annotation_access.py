"""What an annotation is about and who may see, annotate or change it (``annotations/access.py``).

Why direct calls on a migrated SQLite database: the answers (the row, 404 that does not
disclose, 403 with its message, the names of owners and groups) depend only on the rows
and the caller's groups, so each rule is checked exactly without starting the service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from fastapi import HTTPException

from tests.mutation_kills.service_db import add_group, add_image, add_user, principal_of, session
from zstack_analyzer.service.annotations.access import (
    KINDS,
    MAX_ID,
    Names,
    Target,
    aware,
    forbid,
    load_container,
    load_target,
    names_for,
    not_found,
    parse_container_id,
)
from zstack_analyzer.service.annotations.models import Dataset, DatasetImage, Project
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import Action, Principal
from zstack_analyzer.service.errors import ImageNotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["session"]

LONG = "x" * 100


def test_kinds_and_bounds() -> None:
    assert KINDS == ("image", "dataset", "project")
    assert MAX_ID == 2_147_483_647


def test_aware_adds_utc_only_when_naive() -> None:
    naive = datetime(2024, 5, 6, 7, 8, 9)  # naive: what SQLite hands back
    assert aware(naive) == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert aware(naive).tzinfo is UTC
    plus_two = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert aware(plus_two) is plus_two


def test_not_found_and_forbid_messages() -> None:
    error = not_found("image", "abc")
    assert isinstance(error, ImageNotFoundError)
    assert str(error) == "no image with id 'abc'"
    assert str(not_found("image", LONG)) == f"no image with id {'x' * 64!r}"
    for kind in ("dataset", "project"):
        error = not_found(kind, 12)
        assert isinstance(error, HTTPException)
        assert not isinstance(error, ImageNotFoundError)
        assert (error.status_code, error.detail) == (404, f"no {kind} with id '12'")
        assert not_found(kind, LONG).detail == f"no {kind} with id {'x' * 64!r}"
    denied = forbid("dataset", 7, Action.ANNOTATE)
    assert (denied.status_code, denied.detail) == (403, "you may see dataset 7 but not annotate it")
    assert forbid("image", LONG, Action.CHANGE).detail == (
        f"you may see image {'x' * 64} but not change it"
    )


def test_parse_container_id() -> None:
    assert parse_container_id("dataset", "7") == 7
    assert parse_container_id("dataset", 8) == 8
    assert parse_container_id("project", "1") == 1
    assert parse_container_id("project", str(MAX_ID)) == MAX_ID
    for bad in ("0", "-3", str(MAX_ID + 1), "abc", "1.5", "", None):
        with pytest.raises(HTTPException) as caught:
            parse_container_id("project", bad)
        assert caught.value.status_code == 404
        assert caught.value.detail == f"no project with id {str(bad)!r}"
        assert caught.value.__cause__ is None
    with pytest.raises(HTTPException) as caught:
        parse_container_id("dataset", "abc")
    assert caught.value.__suppress_context__  # "from None": no ValueError chained


@pytest.fixture
def world(session: Session) -> dict[str, object]:
    """Groups at each level, alice (member of all), bob (no groups), carol (owner of private)."""
    ids: dict[str, object] = {}
    for level in Permission:
        ids[level.value] = add_group(session, f"g-{level.value}", level)
    alice = add_user(session, "alice", {ids[p.value]: False for p in Permission})  # type: ignore[misc]
    bob = add_user(session, "bob", {})
    carol = add_user(session, "carol", {ids["private"]: True})  # type: ignore[dict-item]
    ids.update(alice=alice, bob=bob, carol=carol)
    for level in Permission:
        project = Project(name=f"p-{level.value}", owner_id=carol, group_id=ids[level.value])
        dataset = Dataset(name=f"d-{level.value}", owner_id=carol, group_id=ids[level.value])
        session.add_all([project, dataset])
        session.flush()
        ids[f"project-{level.value}"] = project.id
        ids[f"dataset-{level.value}"] = dataset.id
        ids[f"image-{level.value}"] = add_image(
            session, f"{level.value}.tif", owner_id=carol, group_id=ids[level.value]
        )
    session.commit()
    return ids


def _code(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except ImageNotFoundError:
        return 404
    except HTTPException as error:
        return error.status_code
    return 200


EXPECTED = {  # level -> (view, annotate, change) for a plain member
    "private": (404, 404, 404),
    "read-only": (200, 403, 403),
    "read-annotate": (200, 200, 403),
    "read-write": (200, 200, 200),
}
ACTIONS = (Action.VIEW, Action.ANNOTATE, Action.CHANGE)


@pytest.mark.parametrize("kind", KINDS)
def test_levels_decide_for_every_kind(
    session: Session, world: dict[str, object], kind: str
) -> None:
    alice = principal_of(session, world["alice"])  # type: ignore[arg-type]
    carol = principal_of(session, world["carol"])  # type: ignore[arg-type]
    bob = principal_of(session, world["bob"])  # type: ignore[arg-type]
    for level, codes in EXPECTED.items():
        raw = str(world[f"{kind}-{level}"])
        got = tuple(
            _code(lambda a=action, r=raw: load_target(session, alice, kind, r, a))  # type: ignore[misc]
            for action in ACTIONS
        )
        assert got == codes, (kind, level)
        for action in ACTIONS:
            target = load_target(session, carol, kind, raw, action)  # the owner may do all
            assert target.kind == kind
            assert str(target.key) == raw
            assert _code(lambda a=action, r=raw: load_target(session, bob, kind, r, a)) == 404  # type: ignore[misc]
    # The messages: not disclosed, or seen but not allowed.
    raw = str(world[f"{kind}-read-only"])
    with pytest.raises((HTTPException, ImageNotFoundError)) as caught:
        load_target(session, bob, kind, raw, Action.VIEW)
    error = caught.value
    message = error.detail if isinstance(error, HTTPException) else str(error)
    assert message == f"no {kind} with id {raw!r}"
    with pytest.raises(HTTPException) as denied:
        load_target(session, alice, kind, raw, Action.ANNOTATE)
    assert denied.value.detail == f"you may see {kind} {raw} but not annotate it"
    assert denied.value.status_code == 403


def test_admin_and_read_only_principals(session: Session, world: dict[str, object]) -> None:
    admin = Principal(user_id=999, username="root", is_admin=True)
    for kind in KINDS:
        raw = str(world[f"{kind}-private"])
        assert load_target(session, admin, kind, raw, Action.CHANGE).kind == kind
    carol = principal_of(session, world["carol"])  # type: ignore[arg-type]
    read_only = Principal(
        user_id=carol.user_id, username="carol", groups=carol.groups, read_only=True
    )
    for kind in KINDS:
        raw = str(world[f"{kind}-private"])
        assert load_target(session, read_only, kind, raw, Action.VIEW).kind == kind
        with pytest.raises(HTTPException) as denied:
            load_target(session, read_only, kind, raw, Action.ANNOTATE)
        assert denied.value.status_code == 403


def test_unknown_targets_are_404(session: Session, world: dict[str, object]) -> None:
    admin = Principal(user_id=999, username="root", is_admin=True)
    with pytest.raises(ImageNotFoundError):
        load_target(session, admin, "image", "00000000-0000-0000-0000-000000000000", Action.VIEW)
    for kind in ("dataset", "project"):
        with pytest.raises(HTTPException) as caught:
            load_target(session, admin, kind, "9999", Action.VIEW)
        assert (caught.value.status_code, caught.value.detail) == (
            404,
            f"no {kind} with id '9999'",
        )
        with pytest.raises(HTTPException) as caught:
            load_container(session, admin, kind, "nine", Action.VIEW)
        assert (caught.value.status_code, caught.value.detail) == (
            404,
            f"no {kind} with id 'nine'",
        )


def test_container_kind_picks_its_table(session: Session, world: dict[str, object]) -> None:
    # Project and dataset ids overlap (each table counts from 1): the kind decides the table.
    admin = Principal(user_id=999, username="root", is_admin=True)
    project_id = world["project-read-only"]
    project = load_container(session, admin, "project", project_id, Action.VIEW)
    dataset = load_container(session, admin, "dataset", project_id, Action.VIEW)
    assert isinstance(project, Project)
    assert isinstance(dataset, Dataset)
    assert project.name == "p-read-only"
    assert dataset.id == project_id


def test_target_columns_and_values(session: Session, world: dict[str, object]) -> None:
    admin = Principal(user_id=999, username="root", is_admin=True)
    image = load_target(session, admin, "image", str(world["image-read-write"]), Action.VIEW)
    assert image.column == "image_id"
    assert image.key == world["image-read-write"]
    assert image.group_id == world["read-write"]
    assert image.values() == {"image_id": world["image-read-write"]}
    condition = image.where(DatasetImage)
    compiled = condition.compile()
    assert str(condition) == str(DatasetImage.image_id == image.key)
    assert list(compiled.params.values()) == [image.key]
    dataset = load_target(session, admin, "dataset", world["dataset-private"], Action.VIEW)
    assert (dataset.column, dataset.key, dataset.group_id) == (
        "dataset_id",
        world["dataset-private"],
        world["private"],
    )
    assert dataset.values() == {"dataset_id": world["dataset-private"]}
    assert str(dataset.where(DatasetImage)) == str(DatasetImage.dataset_id == dataset.key)
    project = Target("project", session.get(Project, world["project-private"]))  # type: ignore[arg-type]
    assert project.column == "project_id"


def test_names_for_rows(session: Session, world: dict[str, object]) -> None:
    rows = [
        SimpleNamespace(owner_id=world["alice"], group_id=world["private"]),
        SimpleNamespace(owner_id=None, group_id=None),
        SimpleNamespace(owner_id=world["bob"], group_id=world["read-only"]),
        SimpleNamespace(),
    ]
    names = names_for(session, iter(rows))
    assert names.users == {world["alice"]: "alice", world["bob"]: "bob"}
    assert names.groups == {world["private"]: "g-private", world["read-only"]: "g-read-only"}
    assert all(type(k) is int and type(v) is str for k, v in names.users.items())
    assert names.user(world["alice"]) == "alice"  # type: ignore[arg-type]
    assert names.user(None) is None
    assert names.user(12345) is None
    assert names.group(world["read-only"]) == "g-read-only"  # type: ignore[arg-type]
    assert names.group(None) is None
    assert names.group(12345) is None
    empty = names_for(session, [SimpleNamespace(owner_id=None, group_id=None)])
    assert empty == Names({}, {})
    none_stored = Names({0: "zero"}, {0: "zero"})
    assert none_stored.user(None) is None
    assert none_stored.group(None) is None
    assert none_stored.user(0) == "zero"
    assert none_stored.group(0) == "zero"
    # No owner or group is no name, whatever the mapping holds.
    odd = Names({None: "u"}, {None: "g"})  # type: ignore[dict-item]
    assert odd.user(None) is None
    assert odd.group(None) is None
