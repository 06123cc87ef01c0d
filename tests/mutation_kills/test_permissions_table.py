"""The permission table (``service/auth/permissions.py``), cell by cell, and its SQL twin.

Every (caller, image, action) of the module's table is checked against the table written out
here by hand; then the WHERE clause the list and search queries use is run on a real SQLite
database and must select exactly the images ``can_view`` allows, for every caller.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.orm import Session

from zstack_analyzer.service.auth.models import Group, Permission
from zstack_analyzer.service.auth.permissions import (
    ANONYMOUS,
    SINGLE_USER,
    Action,
    GroupRole,
    Principal,
    allows,
    can_annotate,
    can_change,
    can_view,
    visible_images_filter,
    visible_in_group,
)
from zstack_analyzer.service.db.models import Base, Image

#: What a member may do to another member's image, per group level (the module's table).
TABLE = {
    Permission.PRIVATE: set(),
    Permission.READ_ONLY: {Action.VIEW},
    Permission.READ_ANNOTATE: {Action.VIEW, Action.ANNOTATE},
    Permission.READ_WRITE: {Action.VIEW, Action.ANNOTATE, Action.CHANGE},
}
#: Group id per level (group 5 is one the callers below are not in).
GROUPS = {
    1: Permission.PRIVATE,
    2: Permission.READ_ONLY,
    3: Permission.READ_ANNOTATE,
    4: Permission.READ_WRITE,
    5: Permission.READ_WRITE,
}
ME = 10
OTHER = 11


@dataclass(frozen=True)
class Img:
    owner_id: int | None
    group_id: int | None


IMAGES = [Img(owner, group) for owner in (None, ME, OTHER) for group in (None, 1, 2, 3, 4, 5)]


def _member(*, owner_of: set[int] | None = None, read_only: bool = False) -> Principal:
    owner_of = owner_of or set()
    groups = {
        gid: GroupRole(gid, f"g{gid}", level, is_owner=gid in owner_of)
        for gid, level in GROUPS.items()
        if gid != 5
    }
    return Principal(user_id=ME, username="me", groups=groups, read_only=read_only, via="session")


def _expected(principal: Principal, image: Img, action: Action) -> bool:
    if principal.read_only and action is not Action.VIEW:
        return False
    if principal.is_admin:
        return True
    if principal.user_id is None:
        return False
    if image.owner_id == principal.user_id:
        return True
    role = principal.groups.get(image.group_id) if image.group_id is not None else None
    if role is None:
        return False
    return role.is_owner or action in TABLE[role.level]


PRINCIPALS = {
    "member": _member(),
    "leader of private 1 and read-only 2": _member(owner_of={1, 2}),
    "read-only token": _member(read_only=True),
    "read-only token of a leader": _member(owner_of={1}, read_only=True),
    "admin": Principal(user_id=ME, username="root", is_admin=True, via="session"),
    "read-only admin": Principal(user_id=ME, username="root", is_admin=True, read_only=True),
    "single user": SINGLE_USER,
    "anonymous": ANONYMOUS,
    "no groups": Principal(user_id=ME, username="lonely", via="session"),
    "no id, a group": Principal(
        user_id=None, username="x", groups={4: GroupRole(4, "g4", Permission.READ_WRITE)}
    ),
}


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_every_cell_of_the_table(who: str) -> None:
    principal = PRINCIPALS[who]
    for image, action in itertools.product(IMAGES, Action):
        assert allows(principal, image, action) is _expected(principal, image, action), (
            who,
            image,
            action,
        )
        checks = {Action.VIEW: can_view, Action.ANNOTATE: can_annotate, Action.CHANGE: can_change}
        assert checks[action](principal, image) is _expected(principal, image, action)


def test_spot_checks_of_the_table() -> None:
    """A few cells spelled out, so the table above is not only compared with itself."""
    member = PRINCIPALS["member"]
    assert can_view(member, Img(OTHER, 2))
    assert not can_annotate(member, Img(OTHER, 2))
    assert can_annotate(member, Img(OTHER, 3))
    assert not can_change(member, Img(OTHER, 3))
    assert can_change(member, Img(OTHER, 4))
    assert not can_view(member, Img(OTHER, 1))
    assert not can_view(member, Img(OTHER, 5))
    assert not can_view(member, Img(OTHER, None))
    assert not can_view(member, Img(None, None))
    assert can_change(member, Img(ME, 1))
    assert can_change(member, Img(ME, None))
    leader = PRINCIPALS["leader of private 1 and read-only 2"]
    assert can_change(leader, Img(OTHER, 1))
    assert can_change(leader, Img(OTHER, 2))
    token = PRINCIPALS["read-only token"]
    assert can_view(token, Img(ME, 1))
    assert not can_annotate(token, Img(ME, 1))
    assert not can_change(PRINCIPALS["read-only admin"], Img(None, None))
    assert can_change(SINGLE_USER, Img(OTHER, 5))
    assert not can_view(ANONYMOUS, Img(None, None))


def test_principal_properties() -> None:
    assert SINGLE_USER.is_admin
    assert SINGLE_USER.user_id is None
    assert SINGLE_USER.username == "local"
    assert SINGLE_USER.via == "none"
    assert SINGLE_USER.is_authenticated
    assert not ANONYMOUS.is_authenticated
    assert not ANONYMOUS.is_admin
    assert ANONYMOUS.via == "anonymous"
    member = PRINCIPALS["member"]
    assert member.is_authenticated
    assert member.member_of(None) is None
    assert member.member_of(5) is None
    role = member.member_of(3)
    assert role is not None
    assert role.level is Permission.READ_ANNOTATE
    assert role.role == "member"
    assert GroupRole(1, "g", Permission.PRIVATE, is_owner=True).role == "owner"
    assert GroupRole(1, "g", Permission.PRIVATE).is_owner is False


# ------------------------------------------------------------------------- SQL filter


@pytest.fixture
def db() -> Session:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[Group.__table__, Image.__table__])
    session = Session(engine)
    names = {1: "private", 2: "read-only", 3: "annotate", 4: "write", 5: "theirs"}
    for gid, level in GROUPS.items():
        session.execute(insert(Group), [{"id": gid, "name": names[gid], "permissions": level}])
    rows = []
    for n, image in enumerate(IMAGES):
        rows.append(
            {
                "id": uuid.UUID(int=n + 1),
                "filename": f"{n}.tif",
                "stored_name": f"{n}.tif",
                "format": "TIFF",
                "size_bytes": 1,
                "sha256": "0" * 64,
                "width": 1,
                "height": 1,
                "depth": 1,
                "channels": 1,
                "timepoints": 1,
                "samples_per_pixel": 1,
                "bit_depth": 8,
                "dtype": "uint8",
                "scenes": [],
                "owner_id": image.owner_id,
                "group_id": image.group_id,
            }
        )
    session.execute(insert(Image), rows)
    session.commit()
    return session


def _visible(db: Session, clause: object) -> set[int]:
    ids = db.execute(select(Image.id).where(clause)).scalars()  # type: ignore[arg-type]
    return {i.int - 1 for i in ids}


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_the_sql_filter_selects_what_can_view_allows(db: Session, who: str) -> None:
    principal = PRINCIPALS[who]
    expected = {n for n, image in enumerate(IMAGES) if can_view(principal, image)}
    assert _visible(db, visible_images_filter(principal)) == expected


@pytest.mark.parametrize("who", ["member", "admin", "leader of private 1 and read-only 2"])
def test_the_group_filter_narrows_to_one_group_by_name(db: Session, who: str) -> None:
    principal = PRINCIPALS[who]
    assert _visible(db, visible_in_group(principal, None)) == _visible(
        db, visible_images_filter(principal)
    )
    for gid, name in ((2, "read-only"), (4, "write"), (1, "private")):
        expected = {
            n
            for n, image in enumerate(IMAGES)
            if image.group_id == gid and can_view(principal, image)
        }
        assert _visible(db, visible_in_group(principal, name)) == expected, name
    assert _visible(db, visible_in_group(principal, "no such group")) == set()
    assert _visible(db, visible_in_group(principal, "wr\x00ite")) == _visible(
        db, visible_in_group(principal, "write")
    )
