"""The few function bodies of the model and schema modules (issue #22, seventh round).

``index_key`` is the indexed copy of a tag name, key or value that search compares
with; ``_owner``/``_group`` are the owner and group columns every annotation table
declares; ``_default_group_on_insert`` puts an image stored without a group into
``default``; ``_aware`` gives SQLite's naive datetimes their zone (UTC) in the answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Integer, delete, select

from tests.mutation_kills.service_db import add_group, add_image, session
from zstack_analyzer.service.annotations import models as annotation_models
from zstack_analyzer.service.annotations.models import KEY_INDEX_CHARS, index_key
from zstack_analyzer.service.auth import schemas
from zstack_analyzer.service.auth.models import DEFAULT_GROUP, Group, Permission
from zstack_analyzer.service.db.models import Image

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["session"]  # the fixture, used by name


def test_index_key_is_lower_case_without_nul_and_capped() -> None:
    assert index_key("  DAPI ") == "dapi"
    assert index_key("Cell\x00Type\x00") == "celltype"  # NUL dropped, nothing put in its place
    assert index_key("\x00 Ab \x00") == "ab"  # stripped after the NULs go
    long = "X" * (KEY_INDEX_CHARS + 50)
    assert index_key(long) == "x" * KEY_INDEX_CHARS


@pytest.mark.parametrize(("make", "target"), [("_owner", "users.id"), ("_group", "groups.id")])
def test_owner_and_group_columns_are_indexed_integer_foreign_keys(make: str, target: str) -> None:
    column = getattr(annotation_models, make)().column
    assert isinstance(column.type, Integer)
    assert [fk.target_fullname for fk in column.foreign_keys] == [target]
    assert column.index is True
    assert column.nullable is not False  # "int | None": an annotation may have no owner


def test_the_declared_tables_carry_those_columns() -> None:
    """What the functions return is what the tables are made of (checked on two of them)."""
    project = annotation_models.Project.__table__
    for name, target in (("owner_id", "users.id"), ("group_id", "groups.id")):
        column = project.c[name]
        assert [fk.target_fullname for fk in column.foreign_keys] == [target]
        assert column.index is True
        assert isinstance(column.type, Integer)


def _default_group(db: Session) -> Group | None:
    return db.scalar(select(Group).where(Group.name == DEFAULT_GROUP))


def test_an_image_without_a_group_goes_to_default_and_one_with_a_group_stays(
    session: Session,
) -> None:
    default = _default_group(session)
    assert default is not None  # made by the migrations
    lab = add_group(session, "lab", Permission.READ_ANNOTATE)
    grouped = add_image(session, "a.ome.tif", group_id=lab)
    loose = add_image(session, "b.ome.tif")
    session.expire_all()
    assert session.get(Image, grouped).group_id == lab  # type: ignore[union-attr]
    assert session.get(Image, loose).group_id == default.id  # type: ignore[union-attr]


def test_without_a_default_group_the_first_loose_image_makes_it_read_only(
    session: Session,
) -> None:
    session.execute(delete(Group).where(Group.name == DEFAULT_GROUP))
    add_group(session, "first", Permission.READ_WRITE)  # the new group's id is not 1
    session.commit()
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = add_image(session, "a.ome.tif")
    second = add_image(session, "b.ome.tif")
    session.expire_all()
    made = _default_group(session)
    assert made is not None
    assert made.permissions == Permission.READ_ONLY.value
    created = made.created_at if made.created_at.tzinfo else made.created_at.replace(tzinfo=UTC)
    assert created >= before
    assert session.get(Image, first).group_id == made.id  # type: ignore[union-attr]
    assert session.get(Image, second).group_id == made.id  # type: ignore[union-attr]
    assert session.scalar(select(Group.id).where(Group.name == DEFAULT_GROUP)) == made.id
    assert len(session.scalars(select(Group).where(Group.name == DEFAULT_GROUP)).all()) == 1


def test_naive_datetimes_are_answered_in_utc_and_aware_ones_unchanged() -> None:
    naive = datetime(2026, 3, 4, 5, 6, 7)
    assert schemas._aware(naive) == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert schemas._aware(naive).tzinfo is UTC
    plus_two = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert schemas._aware(plus_two) is plus_two
    token = schemas.TokenPublic.model_validate(
        {
            "id": 1,
            "name": "ci",
            "read_only": False,
            "created_at": naive,
            "expires_at": None,
            "last_used_at": None,
            "revoked_at": None,
        }
    )
    assert token.created_at.tzinfo is UTC
    assert token.model_dump(mode="json")["created_at"].endswith("Z")
