"""GET one project or dataset (service/routes/containers.py ``_one``), called directly.

Found by mutation testing: the route test reads one project in single-user mode
where project 1 and dataset 1 both exist, so loading the other kind's row, or
checking another action than viewing, went unseen. Here a project and a dataset
share an id, and a read-only member views them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from fastapi import HTTPException

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import add_group, add_user, principal_of
from zstack_analyzer.service.annotations import containers
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.placement import Placement
from zstack_analyzer.service.routes.containers import _one

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def test_one_container_of_its_kind_for_a_read_only_member(session: Session) -> None:
    group = add_group(session, "lab", Permission.READ_ONLY)
    alice = add_user(session, "alice", {group: True})
    bob = add_user(session, "bob", {group: False})
    as_alice, as_bob = principal_of(session, alice), principal_of(session, bob)
    placement = Placement(owner_id=alice, group_id=group, group="lab")
    project = containers.create_container(session, as_alice, "project", placement, name="P")
    dataset = containers.create_container(session, as_alice, "dataset", placement, name="D")
    assert project.id == dataset.id  # one id, two kinds
    lone = containers.create_container(session, as_alice, "project", placement, name="lone")

    seen = _one(session, as_bob, "project", str(project.id))
    assert (seen.id, seen.kind, seen.name, seen.owner, seen.group) == (
        project.id,
        "project",
        "P",
        "alice",
        "lab",
    )
    seen = _one(session, as_bob, "dataset", str(dataset.id))
    assert (seen.kind, seen.name) == ("dataset", "D")
    assert _one(session, as_bob, "project", str(lone.id)).name == "lone"
    outsider = principal_of(session, add_user(session, "eve", {}))
    with pytest.raises(HTTPException) as caught:
        _one(session, outsider, "project", str(project.id))
    assert (caught.value.status_code, caught.value.detail) == (
        404,
        f"no project with id {str(project.id)!r}",
    )
