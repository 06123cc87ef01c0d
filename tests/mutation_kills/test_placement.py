"""Where a new image goes and which roots a caller may register from (``service/auth/placement.py``).

Why direct calls on a migrated SQLite database: the placement (owner, group id, group
name), the roots and the refusals (403/409/422 and their messages) depend only on the
caller, the groups and the settings; each rule is checked exactly, in milliseconds.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import select

from tests.mutation_kills.service_db import _template, add_image, session
from tests.service.conftest import _testclient_class
from tests.service.live import make_settings
from zstack_analyzer.service.auth import accounts
from zstack_analyzer.service.auth.models import DEFAULT_GROUP, Group
from zstack_analyzer.service.auth.permissions import SINGLE_USER, Principal
from zstack_analyzer.service.auth.placement import (
    Placement,
    PlacementDep,
    RegisterScope,
    RegisterScopeDep,
    _register_scope,
    choose_group,
)
from zstack_analyzer.service.db.session import Database, make_engine

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

__all__ = ["session"]


def _principal(session: Session, username: str, *, read_only: bool = False) -> Principal:
    user = accounts.find_user(session, username)
    return accounts.principal_for_user(session, user, via="session", read_only=read_only)


@pytest.fixture
def lab(session: Session, tmp_path: Path) -> dict[str, Any]:
    """Groups lab (alice joined first), imaging (alice, then bob), root (an admin in no group)."""
    ids: dict[str, Any] = {"default": accounts.default_group_id(session)}
    ids["root"] = accounts.create_user(session, "root", admin=True).id
    # The first admin owns 'default' now; take them out of it to test "an admin in no group".
    accounts.set_membership(session, DEFAULT_GROUP, "root", remove=True)
    for name in ("lab", "imaging", "empty"):
        ids[name] = accounts.create_group(session, name, "read-write").id
    ids["alice"] = accounts.create_user(session, "alice").id
    ids["bob"] = accounts.create_user(session, "bob").id
    ids["nobody"] = accounts.create_user(session, "nobody").id
    ids["boss"] = accounts.create_user(session, "boss", admin=True).id
    accounts.set_membership(session, "imaging", "alice")
    accounts.set_membership(session, "lab", "alice")
    accounts.set_membership(session, "imaging", "bob")
    accounts.set_membership(session, "lab", "boss")
    for name in ("lab", "imaging"):
        (tmp_path / "roots" / name / "inner").mkdir(parents=True)
        accounts.add_import_root(session, name, str(tmp_path / "roots" / name))
    (tmp_path / "env").mkdir()
    ids["tmp"] = tmp_path
    return ids


def test_an_asked_group_of_a_member(session: Session, lab: dict[str, Any]) -> None:
    alice = _principal(session, "alice")
    assert choose_group(session, alice, "lab") == Placement(lab["alice"], lab["lab"], "lab")
    assert choose_group(session, alice, "imaging") == Placement(
        lab["alice"], lab["imaging"], "imaging"
    )
    # NUL cannot be in a name (PostgreSQL text cannot hold it): it is dropped, not refused.
    assert choose_group(session, alice, "l\x00ab") == Placement(lab["alice"], lab["lab"], "lab")


def test_an_asked_group_of_a_non_member_is_403_whether_it_exists_or_not(
    session: Session, lab: dict[str, Any]
) -> None:
    bob = _principal(session, "bob")
    for name in ("lab", "no-such-group"):
        with pytest.raises(HTTPException) as caught:
            choose_group(session, bob, name)
        assert (caught.value.status_code, caught.value.detail) == (
            403,
            f"you are not a member of a group {name!r}",
        )
    with pytest.raises(HTTPException) as caught:
        choose_group(session, bob, "g" * 200 + "\x00")
    assert caught.value.detail == f"you are not a member of a group {'g' * 150!r}"


def test_admins_and_the_single_user_may_pick_any_group(
    session: Session, lab: dict[str, Any]
) -> None:
    boss = _principal(session, "boss")  # an admin and a member of lab
    assert choose_group(session, boss, "imaging") == Placement(
        lab["boss"], lab["imaging"], "imaging"
    )
    assert choose_group(session, boss, "em\x00pty") == Placement(lab["boss"], lab["empty"], "empty")
    assert choose_group(session, SINGLE_USER, "lab") == Placement(None, lab["lab"], "lab")
    for who in (boss, SINGLE_USER):
        with pytest.raises(HTTPException) as caught:
            choose_group(session, who, "nope")
        assert (caught.value.status_code, caught.value.detail) == (422, "group: no group 'nope'")
    with pytest.raises(HTTPException) as caught:
        choose_group(session, SINGLE_USER, "n" * 200)
    assert caught.value.detail == f"group: no group {'n' * 150!r}"


def test_the_default_group_of_each_caller(session: Session, lab: dict[str, Any]) -> None:
    # A member: the group joined first.
    assert choose_group(session, _principal(session, "alice"), None) == Placement(
        lab["alice"], lab["imaging"], "imaging"
    )
    assert choose_group(session, _principal(session, "bob"), None) == Placement(
        lab["bob"], lab["imaging"], "imaging"
    )
    # An admin: 'default', even when in a group.
    expected = Placement(lab["boss"], lab["default"], DEFAULT_GROUP)
    assert choose_group(session, _principal(session, "boss"), None) == expected
    assert choose_group(session, _principal(session, "root"), None) == Placement(
        lab["root"], lab["default"], DEFAULT_GROUP
    )
    assert choose_group(session, SINGLE_USER, None) == Placement(
        None, lab["default"], DEFAULT_GROUP
    )
    with pytest.raises(HTTPException) as caught:
        choose_group(session, _principal(session, "nobody"), None)
    assert (caught.value.status_code, caught.value.detail) == (
        403,
        "you belong to no group; ask an admin to add you to one",
    )


def test_default_group_is_made_again_when_deleted(session: Session, lab: dict[str, Any]) -> None:
    session.delete(session.get(Group, lab["default"]))
    session.commit()
    placement = choose_group(session, SINGLE_USER, None)
    made = session.scalar(select(Group.id).where(Group.name == DEFAULT_GROUP))
    assert placement == Placement(None, made, DEFAULT_GROUP)


def _roots(scope: RegisterScope) -> list[tuple[str, Placement]]:
    return [(str(path), placement) for path, placement in scope.roots]


def test_users_mode_roots_are_those_of_ones_groups(session: Session, lab: dict[str, Any]) -> None:
    tmp = lab["tmp"]
    settings = make_settings(tmp / "data", auth="users", import_roots=[tmp / "env"])
    lab_root = (str(tmp / "roots" / "lab"), Placement(lab["alice"], lab["lab"], "lab"))
    imaging_root = (
        str(tmp / "roots" / "imaging"),
        Placement(lab["alice"], lab["imaging"], "imaging"),
    )
    alice = _principal(session, "alice")
    scope = _register_scope(session, alice, settings, None)
    assert scope.principal is alice
    assert _roots(scope) == [imaging_root, lab_root]
    assert scope.paths == [tmp / "roots" / "imaging", tmp / "roots" / "lab"]
    assert _roots(_register_scope(session, alice, settings, "lab")) == [lab_root]
    bob = _principal(session, "bob")
    assert _roots(_register_scope(session, bob, settings, None)) == [
        (str(tmp / "roots" / "imaging"), Placement(lab["bob"], lab["imaging"], "imaging"))
    ]
    with pytest.raises(HTTPException) as caught:
        _register_scope(session, bob, settings, "lab")
    assert caught.value.status_code == 403
    assert _roots(_register_scope(session, _principal(session, "nobody"), settings, None)) == []


def test_admins_get_every_root_and_the_servers_own(session: Session, lab: dict[str, Any]) -> None:
    tmp = lab["tmp"]
    settings = make_settings(tmp / "data", auth="users", import_roots=[tmp / "env"])
    root = _principal(session, "root")
    default = Placement(lab["root"], lab["default"], DEFAULT_GROUP)
    everything = [
        (str(tmp / "roots" / "imaging"), Placement(lab["root"], lab["imaging"], "imaging")),
        (str(tmp / "roots" / "lab"), Placement(lab["root"], lab["lab"], "lab")),
        (str(tmp / "env"), default),
    ]
    assert _roots(_register_scope(session, root, settings, None)) == everything
    assert _roots(_register_scope(session, root, settings, DEFAULT_GROUP)) == [everything[2]]
    assert _roots(_register_scope(session, root, settings, "lab")) == [everything[1]]
    assert _roots(_register_scope(session, root, settings, "empty")) == []


def test_other_modes_use_the_servers_roots(session: Session, lab: dict[str, Any]) -> None:
    tmp = lab["tmp"]
    for mode in ("none", "token"):
        settings = make_settings(
            tmp / "data",
            auth=mode,
            api_token="t" if mode == "token" else None,
            import_roots=[tmp / "env", tmp / "roots"],
        )
        default = Placement(None, lab["default"], DEFAULT_GROUP)
        scope = _register_scope(session, SINGLE_USER, settings, None)
        assert scope.principal is SINGLE_USER
        assert _roots(scope) == [(str(tmp / "env"), default), (str(tmp / "roots"), default)]
        in_lab = Placement(None, lab["lab"], "lab")
        assert _roots(_register_scope(session, SINGLE_USER, settings, "lab")) == [
            (str(tmp / "env"), in_lab),
            (str(tmp / "roots"), in_lab),
        ]


def test_the_innermost_root_decides(tmp_path: Path) -> None:
    outer, inner = Placement(1, 1, "outer"), Placement(1, 2, "inner")
    (tmp_path / "a" / "b").mkdir(parents=True)
    scope = RegisterScope(
        SINGLE_USER,
        [
            (tmp_path / "a", outer),
            (tmp_path / "a" / "x" / ".." / "b", inner),
            (tmp_path / "missing" / "root", Placement(1, 3, "missing")),
        ],
    )
    assert scope.placement_for(tmp_path / "a" / "b" / "f.tif") is inner
    assert scope.placement_for(tmp_path / "a" / "f.tif") is outer
    # Listed innermost first: still the innermost.
    reverse = RegisterScope(SINGLE_USER, list(reversed(scope.roots)))
    assert reverse.placement_for(tmp_path / "a" / "b" / "f.tif") is inner
    with pytest.raises(HTTPException) as caught:
        scope.placement_for(tmp_path / "elsewhere.tif")
    assert (caught.value.status_code, caught.value.detail) == (
        403,
        f"{tmp_path / 'elsewhere.tif'}: outside your import roots",
    )


def test_a_root_listed_twice_keeps_its_first_placement(
    session: Session, lab: dict[str, Any]
) -> None:
    # An admin whose ZSTACK_IMPORT_ROOTS names a group's root: its files go to that group.
    tmp = lab["tmp"]
    settings = make_settings(tmp / "data", auth="users", import_roots=[tmp / "roots" / "lab"])
    scope = _register_scope(session, _principal(session, "root"), settings, None)
    assert scope.placement_for(tmp / "roots" / "lab" / "inner" / "f.tif") == Placement(
        lab["root"], lab["lab"], "lab"
    )


def test_a_registered_path_is_answered_only_to_who_may_see_it(
    session: Session, lab: dict[str, Any]
) -> None:
    image_id = add_image(session, "x.tif", owner_id=lab["alice"], group_id=lab["lab"])
    image = session.get(accounts.Image, image_id)
    RegisterScope(_principal(session, "alice"), []).check_existing(image)
    RegisterScope(_principal(session, "alice"), []).check_existing(None)
    with pytest.raises(HTTPException) as caught:
        RegisterScope(_principal(session, "bob"), []).check_existing(image)
    assert (caught.value.status_code, caught.value.detail) == (
        409,
        "this path is registered already, in a group you are not in",
    )
    accounts.update_group(session, "lab", permissions="read-annotate")
    with pytest.raises(HTTPException) as caught:
        RegisterScope(_principal(session, "boss", read_only=True), []).check_existing(image)
    assert (caught.value.status_code, caught.value.detail) == (
        403,
        f"image {image_id} is registered from this path; you may not refresh it",
    )


def test_the_dependencies_over_http(tmp_path: Path) -> None:
    path = tmp_path / "zstack.db"
    shutil.copyfile(_template(), path)
    database = Database(make_engine(f"sqlite:///{path}"))
    with database.sessions() as db:
        accounts.create_group(db, "lab", "read-write")
        default_id = accounts.default_group_id(db)
    app = FastAPI()
    app.state.settings = make_settings(tmp_path / "data", import_roots=[tmp_path])
    app.state.database = database

    @app.post("/upload")
    async def upload(placement: PlacementDep) -> list[Any]:
        return [placement.owner_id, placement.group_id, placement.group]

    @app.post("/register")
    async def register(scope: RegisterScopeDep) -> list[Any]:
        return [[str(p), r.group] for p, r in scope.roots]

    try:
        with _testclient_class()(app) as client:
            assert client.post("/upload").json() == [None, default_id, DEFAULT_GROUP]
            assert client.post("/upload", params={"group": "lab"}).json()[2] == "lab"
            assert client.post("/upload", params={"group": "nope"}).status_code == 422
            assert client.post("/upload", params={"group": "g" * 151}).status_code == 422
            assert client.post("/register").json() == [[str(tmp_path), DEFAULT_GROUP]]
            assert client.post("/register", params={"group": "lab"}).json() == [
                [str(tmp_path), "lab"]
            ]
    finally:
        database.engine.dispose()
