"""Projects and datasets (``annotations/containers.py``) on a migrated SQLite database, called directly.

Found by mutation testing: the service tests (one lab over HTTP) did not check the
default page size and offset, the name filter's trimming and case, the name/id order,
counts that leave out what the caller cannot see, the owner and time of a link, the
messages of 404 and 403 answers, all-or-nothing linking, work split into chunks of 500
ids, which container ``find_or_create`` picks, or that ``updated_at`` moves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from fastapi import HTTPException
from sqlalchemy import func, select

from tests.mutation_kills import service_db
from tests.mutation_kills.service_db import (
    add_group,
    add_image,
    add_user,
    image_row,
    principal_of,
)
from zstack_analyzer.service.annotations import containers
from zstack_analyzer.service.annotations.models import (
    Dataset,
    DatasetImage,
    Project,
    ProjectDataset,
)
from zstack_analyzer.service.auth.models import Permission
from zstack_analyzer.service.auth.permissions import SINGLE_USER, Principal
from zstack_analyzer.service.auth.placement import Placement
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.errors import BadParameterError

#: A session on a migrated SQLite copy (the fixture of service_db.py, used here by name).
session = service_db.session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class Lab:
    """Two groups (read-annotate, private), alice (owner of her images), bob, an outsider."""

    ra: int
    private: int
    alice: Principal
    bob: Principal
    outsider: Principal
    alice_id: int
    bob_id: int

    def at(self, owner: int | None, group: int) -> Placement:
        return Placement(owner, group, "g")


@pytest.fixture
def lab(session: Session) -> Lab:
    ra = add_group(session, "g-ra", Permission.READ_ANNOTATE)
    private = add_group(session, "g-private", Permission.PRIVATE)
    alice = add_user(session, "alice", {ra: False, private: False})
    bob = add_user(session, "bob", {ra: False, private: False})
    outsider = add_user(session, "outsider", {})
    return Lab(
        ra,
        private,
        principal_of(session, alice),
        principal_of(session, bob),
        principal_of(session, outsider),
        alice,
        bob,
    )


def _status(error: pytest.ExceptionInfo[HTTPException]) -> tuple[int, str]:
    return error.value.status_code, str(error.value.detail)


def _new(session: Session, lab: Lab, kind: str, name: str, owner: Principal, group: int) -> int:
    row = containers.create_container(
        session,
        owner,
        kind,  # type: ignore[arg-type]
        lab.at(owner.user_id, group),
        name=name,
    )
    return row.id


def _links(session: Session) -> list[tuple[int, uuid.UUID, int | None]]:
    query = select(DatasetImage.dataset_id, DatasetImage.image_id, DatasetImage.owner_id)
    return sorted(tuple(r) for r in session.execute(query))  # type: ignore[misc]


def _project_links(session: Session) -> list[tuple[int, int, int | None]]:
    query = select(ProjectDataset.project_id, ProjectDataset.dataset_id, ProjectDataset.owner_id)
    return sorted(tuple(r) for r in session.execute(query))  # type: ignore[misc]


# ---------------------------------------------------------------------------- create/show


def test_create_and_show_a_project_and_a_dataset_in_it(session: Session, lab: Lab) -> None:
    project = containers.create_container(
        session, lab.alice, "project", lab.at(lab.alice_id, lab.ra), name="P", description="d"
    )
    assert isinstance(project, Project)
    assert (project.name, project.description, project.owner_id, project.group_id) == (
        "P",
        "d",
        lab.alice_id,
        lab.ra,
    )
    dataset = containers.create_container(
        session, lab.alice, "dataset", lab.at(lab.alice_id, lab.ra), name="D", project_id=project.id
    )
    assert isinstance(dataset, Dataset) and dataset.description == ""
    assert _project_links(session) == [(project.id, dataset.id, lab.alice_id)]
    [shown] = containers.container_public(session, lab.bob, "dataset", [dataset])
    assert shown.id == dataset.id and shown.kind == "dataset" and shown.name == "D"
    assert (shown.owner_id, shown.group_id, shown.owner, shown.group) == (
        lab.alice_id,
        lab.ra,
        "alice",
        "g-ra",
    )
    assert shown.description == "" and shown.project_ids == [project.id]
    assert shown.created_at.tzinfo is not None and shown.updated_at.tzinfo is not None
    assert abs(shown.created_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert abs(shown.updated_at - datetime.now(UTC)) < timedelta(minutes=5)
    [shown_project] = containers.container_public(session, lab.bob, "project", [project])
    assert shown_project.kind == "project" and shown_project.child_count == 1
    assert shown_project.project_ids == [] and shown_project.description == "d"
    assert containers.container_public(session, lab.bob, "project", []) == []


def test_a_dataset_in_a_project_the_caller_cannot_change_is_not_made(
    session: Session, lab: Lab
) -> None:
    mine = _new(session, lab, "project", "P", lab.alice, lab.ra)
    hidden = _new(session, lab, "project", "H", lab.alice, lab.private)
    with pytest.raises(HTTPException) as error:
        containers.create_container(
            session, lab.bob, "dataset", lab.at(lab.bob_id, lab.ra), name="D", project_id=mine
        )
    assert _status(error) == (403, f"you may see project {mine} but not change it")
    with pytest.raises(HTTPException) as error:
        containers.create_container(
            session, lab.bob, "dataset", lab.at(lab.bob_id, lab.ra), name="D", project_id=hidden
        )
    assert _status(error) == (404, f"no project with id '{hidden}'")
    assert session.scalar(select(func.count()).select_from(Dataset)) == 0


def test_counts_and_projects_leave_out_what_the_caller_cannot_see(
    session: Session, lab: Lab
) -> None:
    shared = _new(session, lab, "project", "shared", lab.alice, lab.ra)
    hidden_project = _new(session, lab, "project", "hidden", lab.alice, lab.private)
    later = _new(session, lab, "project", "later", lab.alice, lab.ra)
    seen = _new(session, lab, "dataset", "seen", lab.alice, lab.ra)
    unseen = _new(session, lab, "dataset", "unseen", lab.alice, lab.private)
    for project in (later, hidden_project, shared):
        for dataset in (seen, unseen):
            containers.link_dataset(session, lab.alice, project, dataset)
    seen_image = add_image(session, "a.tif", owner_id=lab.alice_id, group_id=lab.ra)
    unseen_image = add_image(session, "b.tif", owner_id=lab.alice_id, group_id=lab.private)
    containers.link_images(session, lab.alice, seen, [str(seen_image), str(unseen_image)])
    rows = [session.get(Dataset, seen), session.get(Dataset, unseen)]
    by_bob = containers.container_public(session, lab.bob, "dataset", rows)  # type: ignore[arg-type]
    assert [(d.child_count, d.project_ids) for d in by_bob] == [
        (1, sorted([shared, later])),
        (0, sorted([shared, later])),
    ]
    by_alice = containers.container_public(session, lab.alice, "dataset", rows)  # type: ignore[arg-type]
    assert by_alice[0].child_count == 2
    assert by_alice[0].project_ids == sorted([shared, later, hidden_project])
    projects = [session.get(Project, shared), session.get(Project, hidden_project)]
    assert [
        p.child_count
        for p in containers.container_public(session, lab.bob, "project", projects)  # type: ignore[arg-type]
    ] == [1, 1]
    assert [
        p.child_count
        for p in containers.container_public(session, lab.alice, "project", projects)  # type: ignore[arg-type]
    ] == [2, 2]


# ---------------------------------------------------------------------------- list


def test_list_pages_in_name_order_with_the_total(session: Session, lab: Lab) -> None:
    session.add_all(
        Dataset(name=f"d{n:03}", description="", owner_id=lab.alice_id, group_id=lab.ra)
        for n in reversed(range(102))
    )
    session.add(Dataset(name="d000", description="twin", owner_id=lab.alice_id, group_id=lab.ra))
    session.add(Dataset(name="zz", description="", owner_id=lab.alice_id, group_id=lab.private))
    session.commit()
    page = containers.list_containers(session, lab.bob, "dataset")
    assert page.count == 103 and len(page.data) == 100
    assert [d.name for d in page.data[:3]] == ["d000", "d000", "d001"]
    assert page.data[0].id < page.data[1].id and page.data[1].description == "twin"
    assert page.data[-1].name == "d098"
    second = containers.list_containers(session, lab.bob, "dataset", skip=101, limit=5)
    assert [d.name for d in second.data] == ["d100", "d101"] and second.count == 103
    assert containers.list_containers(session, lab.alice, "dataset", skip=102).data[-1].name == "zz"
    assert containers.list_containers(session, lab.outsider, "dataset").count == 0
    assert containers.list_containers(session, lab.alice, "project").count == 0


def test_list_by_name_and_by_project(session: Session, lab: Lab) -> None:
    project = _new(session, lab, "project", "P", lab.alice, lab.ra)
    hidden = _new(session, lab, "project", "H", lab.alice, lab.private)
    inside = _new(session, lab, "dataset", "Plate One", lab.alice, lab.ra)
    _new(session, lab, "dataset", "Plate Two", lab.alice, lab.ra)
    containers.link_dataset(session, lab.alice, project, inside)
    found = containers.list_containers(session, lab.bob, "dataset", name=" plate\x00 one ")
    assert [d.id for d in found.data] == [inside] and found.count == 1
    assert containers.list_containers(session, lab.bob, "dataset", name="plate").count == 0
    listed = containers.list_containers(session, lab.bob, "dataset", project_id=project)
    assert [d.id for d in listed.data] == [inside] and listed.count == 1
    with pytest.raises(HTTPException) as error:
        containers.list_containers(session, lab.bob, "dataset", project_id=hidden)
    assert _status(error) == (404, f"no project with id '{hidden}'")
    mine = containers.list_containers(session, lab.alice, "dataset", project_id=hidden)
    assert mine.count == 0


# ---------------------------------------------------------------------------- change/delete


def test_update_changes_what_is_given_and_the_time(session: Session, lab: Lab) -> None:
    dataset = containers.create_container(
        session, lab.alice, "dataset", lab.at(lab.alice_id, lab.ra), name="D", description="x"
    )
    old = datetime(2000, 1, 1, tzinfo=UTC)
    dataset.updated_at = old
    session.commit()
    renamed = containers.update_container(
        session, lab.alice, "dataset", dataset.id, name="E", description=None
    )
    assert (renamed.name, renamed.description) == ("E", "x")
    assert renamed.updated_at.replace(tzinfo=UTC) > old
    described = containers.update_container(
        session, lab.alice, "dataset", str(dataset.id), name=None, description="y"
    )
    assert (described.name, described.description) == ("E", "y")
    with pytest.raises(HTTPException) as error:
        containers.update_container(
            session, lab.bob, "dataset", dataset.id, name="F", description=None
        )
    assert _status(error) == (403, f"you may see dataset {dataset.id} but not change it")
    session.rollback()
    assert session.get(Dataset, dataset.id).name == "E"  # type: ignore[union-attr]


def test_delete_returns_the_images_and_keeps_them(session: Session, lab: Lab) -> None:
    project = _new(session, lab, "project", "P", lab.alice, lab.ra)
    first = _new(session, lab, "dataset", "A", lab.alice, lab.ra)
    second = _new(session, lab, "dataset", "B", lab.alice, lab.ra)
    other = _new(session, lab, "dataset", "C", lab.alice, lab.ra)
    images = [add_image(session, f"{n}.tif", owner_id=lab.alice_id, group_id=lab.ra) for n in "xyz"]
    containers.link_datasets(session, lab.alice, project, [first, second])
    containers.link_images(session, lab.alice, first, [str(images[0]), str(images[1])])
    containers.link_images(session, lab.alice, second, [str(images[1])])
    containers.link_images(session, lab.alice, other, [str(images[2])])
    assert sorted(containers.image_ids_of(session, "project", project)) == sorted(images[:2])
    assert containers.image_ids_of(session, "dataset", other) == [images[2]]
    with pytest.raises(HTTPException) as error:
        containers.delete_container(session, lab.bob, "project", project)
    assert _status(error) == (403, f"you may see project {project} but not change it")
    deleted, inside = containers.delete_container(session, lab.alice, "project", str(project))
    assert deleted == project and sorted(inside) == sorted(images[:2])
    assert session.get(Project, project) is None
    assert session.get(Dataset, first) is not None and _project_links(session) == []
    deleted, inside = containers.delete_container(session, lab.alice, "dataset", first)
    assert deleted == first and sorted(inside) == sorted(images[:2])
    assert session.get(Dataset, first) is None and session.get(Dataset, second) is not None
    assert session.get(Image, images[0]) is not None
    assert [link[:2] for link in _links(session)] == sorted(
        [(second, images[1]), (other, images[2])]
    )


# ---------------------------------------------------------------------------- images


def test_link_images_new_and_already_with_owner_and_time(session: Session, lab: Lab) -> None:
    dataset = containers.create_container(
        session, lab.bob, "dataset", lab.at(lab.bob_id, lab.ra), name="D"
    )
    dataset.updated_at = datetime(2000, 1, 1, tzinfo=UTC)
    session.commit()
    a, b, c = (
        add_image(session, f"{n}.tif", owner_id=lab.alice_id, group_id=lab.ra) for n in "abc"
    )
    first = containers.link_images(session, lab.bob, dataset.id, [str(a), str(a).upper(), str(b)])
    assert first.dataset_id == dataset.id
    assert (first.linked, first.already) == ([str(a), str(b)], [])
    assert session.get(Dataset, dataset.id).updated_at.year > 2000  # type: ignore[union-attr]
    again = containers.link_images(session, lab.bob, dataset.id, [str(c), str(b), str(a)])
    assert (again.linked, again.already) == ([str(c)], [str(b), str(a)])
    assert _links(session) == sorted((dataset.id, i, lab.bob_id) for i in (a, b, c))
    created = session.scalars(select(DatasetImage.created_at)).all()
    assert all(
        abs(t.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5) for t in created
    )
    nothing = containers.link_images(session, lab.bob, dataset.id, [str(a)])
    assert (nothing.linked, nothing.already) == ([], [str(a)])


def test_link_images_is_all_or_nothing(session: Session, lab: Lab) -> None:
    dataset = _new(session, lab, "dataset", "D", lab.bob, lab.ra)
    mine = add_image(session, "m.tif", owner_id=lab.bob_id, group_id=lab.ra)
    hidden = add_image(session, "h.tif", owner_id=lab.alice_id, group_id=lab.private)
    missing = uuid.uuid4()
    with pytest.raises(HTTPException) as error:
        containers.link_images(session, lab.bob, dataset, [str(mine), str(hidden)])
    assert _status(error) == (404, f"image_ids: no image with id '{hidden}'")
    with pytest.raises(HTTPException) as error:
        containers.link_images(session, lab.bob, dataset, [str(missing)])
    assert _status(error) == (404, f"image_ids: no image with id '{missing}'")
    session.rollback()
    # A read-only principal may see the image, not file it.
    frozen = Principal(
        user_id=lab.bob_id, username="bob", groups=lab.bob.groups, via="api-token", read_only=True
    )
    with pytest.raises(HTTPException) as error:
        containers.link_images(session, frozen, dataset, [str(mine)])
    assert error.value.status_code == 403
    with pytest.raises(HTTPException) as error:
        containers.link_images(session, lab.alice, dataset, [str(mine)])
    assert _status(error) == (403, f"you may see dataset {dataset} but not change it")
    with pytest.raises(HTTPException) as error:
        containers.link_images(session, lab.bob, 999, [str(mine)])
    assert _status(error) == (404, "no dataset with id '999'")
    with pytest.raises(BadParameterError) as bad:
        containers.link_images(session, lab.bob, dataset, [str(mine), "x" * 70])
    assert str(bad.value) == f"image_ids: {'x' * 64!r} is not an image id"
    session.rollback()
    assert _links(session) == []


def test_link_images_the_caller_may_see_but_not_annotate(session: Session) -> None:
    ro = add_group(session, "g-ro", Permission.READ_ONLY)
    owner = add_user(session, "owner", {ro: False})
    reader = add_user(session, "reader", {ro: False})
    image = add_image(session, "i.tif", owner_id=owner, group_id=ro)
    dataset = Dataset(name="D", description="", owner_id=reader, group_id=ro)
    session.add(dataset)
    session.commit()
    with pytest.raises(HTTPException) as error:
        containers.link_images(session, principal_of(session, reader), dataset.id, [str(image)])
    assert _status(error) == (403, f"you may see image {image} but not file it in a dataset")
    session.rollback()
    assert _links(session) == []


def test_link_images_in_chunks_of_500(session: Session, lab: Lab) -> None:
    dataset = _new(session, lab, "dataset", "D", lab.alice, lab.ra)
    ids = [uuid.uuid4() for _ in range(1001)]
    session.add_all(
        image_row("f", id=i, stored_name=i.hex, owner_id=lab.alice_id, group_id=lab.ra) for i in ids
    )
    session.commit()
    # Already linked: the first and the last of the 1001 (two chunks of 500 and one of 1).
    containers.link_images(session, lab.alice, dataset, [str(ids[0]), str(ids[1000])])
    result = containers.link_images(session, lab.alice, dataset, [str(i) for i in ids])
    assert result.already == [str(ids[0]), str(ids[1000])]
    assert result.linked == [str(i) for i in ids[1:1000]]
    assert len(_links(session)) == 1001


def test_unlink_image(session: Session, lab: Lab) -> None:
    first = _new(session, lab, "dataset", "A", lab.alice, lab.ra)
    second = _new(session, lab, "dataset", "B", lab.alice, lab.ra)
    a, b = (add_image(session, f"{n}.tif", owner_id=lab.alice_id, group_id=lab.ra) for n in "ab")
    containers.link_images(session, lab.alice, first, [str(a), str(b)])
    containers.link_images(session, lab.alice, second, [str(a)])
    containers.unlink_image(session, lab.alice, first, str(a))
    assert [link[:2] for link in _links(session)] == sorted([(first, b), (second, a)])
    with pytest.raises(HTTPException) as error:
        containers.unlink_image(session, lab.alice, first, str(a))
    assert _status(error) == (404, f"image '{a}' is not in dataset {first}")
    with pytest.raises(HTTPException) as error:
        containers.unlink_image(session, lab.alice, first, "y" * 80)
    assert _status(error) == (404, f"image {'y' * 64!r} is not in dataset {first}")
    with pytest.raises(HTTPException) as error:
        containers.unlink_image(session, lab.bob, first, str(b))
    assert _status(error) == (403, f"you may see dataset {first} but not change it")
    with pytest.raises(HTTPException) as error:
        containers.unlink_image(session, lab.alice, 999, str(b))
    assert _status(error) == (404, "no dataset with id '999'")
    # A valid id may be long (hyphens are ignored): the message keeps its first 64 characters.
    padded = "-" * 40 + str(uuid.uuid4())
    with pytest.raises(HTTPException) as error:
        containers.unlink_image(session, lab.alice, first, padded)
    assert _status(error) == (404, f"image {padded[:64]!r} is not in dataset {first}")
    assert len(_links(session)) == 2


# ---------------------------------------------------------------------------- datasets


def test_link_dataset_once(session: Session, lab: Lab) -> None:
    project = _new(session, lab, "project", "P", lab.bob, lab.ra)
    dataset = _new(session, lab, "dataset", "D", lab.alice, lab.ra)
    hidden = _new(session, lab, "dataset", "H", lab.alice, lab.private)
    assert containers.link_dataset(session, lab.bob, project, dataset) is True
    assert containers.link_dataset(session, lab.bob, project, dataset) is False
    assert _project_links(session) == [(project, dataset, lab.bob_id)]
    with pytest.raises(HTTPException) as error:
        containers.link_dataset(session, lab.bob, project, hidden)
    assert _status(error) == (404, f"no dataset with id '{hidden}'")
    with pytest.raises(HTTPException) as error:
        containers.link_dataset(session, lab.alice, project, dataset)
    assert _status(error) == (403, f"you may see project {project} but not change it")


def test_link_datasets_new_already_and_all_or_nothing(session: Session, lab: Lab) -> None:
    project = containers.create_container(
        session, lab.bob, "project", lab.at(lab.bob_id, lab.ra), name="P"
    )
    project.updated_at = datetime(2000, 1, 1, tzinfo=UTC)
    session.commit()
    a, b, c = (_new(session, lab, "dataset", n, lab.alice, lab.ra) for n in "abc")
    hidden = _new(session, lab, "dataset", "h", lab.alice, lab.private)
    first = containers.link_datasets(session, lab.bob, project.id, [b, a, b])
    assert (first.project_id, first.linked, first.already) == (project.id, [b, a], [])
    assert session.get(Project, project.id).updated_at.year > 2000  # type: ignore[union-attr]
    again = containers.link_datasets(session, lab.bob, project.id, [c, a])
    assert (again.linked, again.already) == ([c], [a])
    with pytest.raises(HTTPException) as error:
        containers.link_datasets(session, lab.bob, project.id, [hidden, c])
    assert _status(error) == (404, f"no dataset with id '{hidden}'")
    with pytest.raises(HTTPException) as error:
        containers.link_datasets(session, lab.alice, project.id, [c])
    assert _status(error) == (403, f"you may see project {project.id} but not change it")
    assert _project_links(session) == sorted((project.id, d, lab.bob_id) for d in (a, b, c))


def test_link_datasets_in_chunks_of_500(session: Session, lab: Lab) -> None:
    project = _new(session, lab, "project", "P", lab.alice, lab.ra)
    rows = [
        Dataset(name=f"d{n}", description="", owner_id=lab.alice_id, group_id=lab.ra)
        for n in range(501)
    ]
    session.add_all(rows)
    session.commit()
    ids = [row.id for row in rows]
    containers.link_datasets(session, lab.alice, project, [ids[0], ids[500]])
    result = containers.link_datasets(session, lab.alice, project, ids)
    assert result.already == [ids[0], ids[500]] and result.linked == ids[1:500]
    assert len(_project_links(session)) == 501


def test_unlink_dataset(session: Session, lab: Lab) -> None:
    project = containers.create_container(
        session, lab.alice, "project", lab.at(lab.alice_id, lab.ra), name="P"
    )
    other = _new(session, lab, "project", "Q", lab.alice, lab.ra)
    a, b = (_new(session, lab, "dataset", n, lab.alice, lab.ra) for n in "ab")
    hidden = _new(session, lab, "dataset", "h", lab.bob, lab.private)
    containers.link_datasets(session, lab.alice, project.id, [a, b])
    containers.link_datasets(session, lab.alice, other, [a])
    project.updated_at = datetime(2000, 1, 1, tzinfo=UTC)
    session.commit()
    containers.unlink_dataset(session, lab.alice, project.id, str(a))
    assert session.get(Project, project.id).updated_at.year > 2000  # type: ignore[union-attr]
    assert _project_links(session) == sorted(
        [(project.id, b, lab.alice_id), (other, a, lab.alice_id)]
    )
    with pytest.raises(HTTPException) as error:
        containers.unlink_dataset(session, lab.alice, project.id, str(a))
    assert _status(error) == (404, f"dataset {a} is not in project {project.id}")
    with pytest.raises(HTTPException) as error:
        containers.unlink_dataset(session, lab.alice, project.id, str(hidden))
    assert _status(error) == (404, f"no dataset with id '{hidden}'")
    with pytest.raises(HTTPException) as error:
        containers.unlink_dataset(session, lab.bob, project.id, str(b))
    assert error.value.status_code == 403
    assert len(_project_links(session)) == 2
    # bob's own project may lose alice's dataset (which he sees but may not change).
    bobs = _new(session, lab, "project", "B", lab.bob, lab.ra)
    containers.link_dataset(session, lab.bob, bobs, b)
    containers.unlink_dataset(session, lab.bob, bobs, str(b))
    assert len(_project_links(session)) == 2


# ---------------------------------------------------------------------------- an image's


def test_image_datasets_and_dataset_image_conditions(session: Session, lab: Lab) -> None:
    image = add_image(session, "i.tif", owner_id=lab.alice_id, group_id=lab.ra)
    hidden_image = add_image(session, "h.tif", owner_id=lab.alice_id, group_id=lab.private)
    beta = _new(session, lab, "dataset", "beta", lab.alice, lab.ra)
    alpha = _new(session, lab, "dataset", "alpha", lab.alice, lab.ra)
    alpha2 = _new(session, lab, "dataset", "alpha", lab.alice, lab.ra)
    hidden = _new(session, lab, "dataset", "aaa", lab.alice, lab.private)
    elsewhere = _new(session, lab, "dataset", "elsewhere", lab.alice, lab.ra)
    for dataset in (beta, alpha2, alpha, hidden):
        containers.link_images(session, lab.alice, dataset, [str(image), str(hidden_image)])
    stray = add_image(session, "s.tif", owner_id=lab.alice_id, group_id=lab.ra)
    containers.link_images(session, lab.alice, elsewhere, [str(stray)])
    row = session.get(Image, image)
    assert row is not None
    listed = containers.image_datasets(session, lab.bob, row)
    assert [d.id for d in listed.data] == [alpha, alpha2, beta] and listed.count == 3
    assert [d.child_count for d in listed.data] == [1, 1, 1]
    assert {d.kind for d in listed.data} == {"dataset"}
    project = _new(session, lab, "project", "P", lab.alice, lab.ra)
    containers.link_dataset(session, lab.alice, project, alpha)
    assert containers.image_datasets(session, lab.bob, row).data[0].project_ids == [project]
    assert containers.image_datasets(session, lab.alice, row).count == 4
    conditions = containers.dataset_image_conditions(session, lab.bob, str(beta))
    assert list(session.scalars(select(Image.id).where(*conditions))) == [image]
    mine = containers.dataset_image_conditions(session, lab.alice, beta)
    assert sorted(session.scalars(select(Image.id).where(*mine))) == sorted([image, hidden_image])
    with pytest.raises(HTTPException) as error:
        containers.dataset_image_conditions(session, lab.bob, hidden)
    assert _status(error) == (404, f"no dataset with id '{hidden}'")


# ---------------------------------------------------------------------------- ingest


def test_find_or_create(session: Session, lab: Lab) -> None:
    placement = lab.at(lab.bob_id, lab.ra)
    theirs = _new(session, lab, "dataset", "D", lab.alice, lab.ra)
    mine = _new(session, lab, "dataset", "D", lab.bob, lab.ra)
    _new(session, lab, "dataset", "D", lab.bob, lab.ra)
    # alice's is older but bob may not change it: his oldest.
    assert containers.find_or_create(session, lab.bob, "dataset", "D", placement).id == mine
    assert containers.find_or_create(session, SINGLE_USER, "dataset", "D", placement).id == theirs
    made = containers.find_or_create(session, lab.bob, "dataset", "d", placement)
    assert made.id not in {theirs, mine} and made.name == "d"
    assert (made.owner_id, made.group_id) == (lab.bob_id, lab.ra)
    project = containers.find_or_create(session, lab.bob, "project", "D", placement)
    assert isinstance(project, Project) and project.name == "D"
    assert containers.find_or_create(session, lab.bob, "project", "D", placement).id == project.id
    inside = containers.find_or_create(
        session, lab.bob, "dataset", "D", placement, project_id=project.id
    )
    assert inside.id not in {theirs, mine} and _project_links(session) == [
        (project.id, inside.id, lab.bob_id)
    ]
    again = containers.find_or_create(
        session, lab.bob, "dataset", "D", placement, project_id=project.id
    )
    assert again.id == inside.id
