"""Projects and datasets: create, list, change, delete, and link images and datasets into them.

Rules (OMERO's, on our permission table):

- a container is seen, changed and deleted like an image of its owner and group;
- linking an image into a dataset (or a dataset into a project) changes the
  container and annotates the child: the caller must be allowed to *change*
  the container and to *annotate* the child (so read-only groups cannot file
  others' images, read-annotate groups can);
- deleting a container removes the container and its links, never the
  children, unless the route is asked to (``?with_images=true``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from fastapi import HTTPException
from sqlalchemy import and_, delete, func, select

from zstack_analyzer.service.annotations.access import (
    Kind,
    aware,
    load_container,
    names_for,
)
from zstack_analyzer.service.annotations.models import (
    Dataset,
    DatasetImage,
    Project,
    ProjectDataset,
)
from zstack_analyzer.service.annotations.schemas import (
    ContainerPublic,
    ContainersPublic,
    DatasetLinkResult,
    LinkResult,
)
from zstack_analyzer.service.auth.permissions import (
    Action,
    Principal,
    allows,
    visible_filter,
    visible_images_filter,
)
from zstack_analyzer.service.db.models import Image, utcnow
from zstack_analyzer.service.errors import BadParameterError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

    from zstack_analyzer.service.auth.placement import Placement

__all__ = [
    "container_public",
    "create_container",
    "dataset_image_conditions",
    "delete_container",
    "find_or_create",
    "image_datasets",
    "image_ids_of",
    "link_dataset",
    "link_datasets",
    "link_images",
    "list_containers",
    "unlink_dataset",
    "unlink_image",
    "update_container",
    "visible_containers",
]


def _model(kind: Kind) -> type[Project] | type[Dataset]:
    return Project if kind == "project" else Dataset


def visible_containers(principal: Principal, kind: Kind) -> ColumnElement[bool]:
    """The WHERE clause selecting the projects (or datasets) ``principal`` may see."""
    model = _model(kind)
    return visible_filter(principal, model.owner_id, model.group_id)


def _child_counts(
    session: Session, principal: Principal, kind: Kind, ids: list[int]
) -> dict[int, int]:
    if not ids:
        return {}
    if kind == "project":
        query = (
            select(ProjectDataset.project_id, func.count())
            .join(Dataset, Dataset.id == ProjectDataset.dataset_id)
            .where(ProjectDataset.project_id.in_(ids), visible_containers(principal, "dataset"))
            .group_by(ProjectDataset.project_id)
        )
    else:
        query = (
            select(DatasetImage.dataset_id, func.count())
            .join(Image, Image.id == DatasetImage.image_id)
            .where(DatasetImage.dataset_id.in_(ids), visible_images_filter(principal))
            .group_by(DatasetImage.dataset_id)
        )
    return {int(key): int(count) for key, count in session.execute(query)}


def _projects_of(session: Session, principal: Principal, ids: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    if not ids:
        return found
    query = (
        select(ProjectDataset.dataset_id, ProjectDataset.project_id)
        .join(Project, Project.id == ProjectDataset.project_id)
        .where(ProjectDataset.dataset_id.in_(ids), visible_containers(principal, "project"))
        .order_by(ProjectDataset.project_id)
    )
    for dataset_id, project_id in session.execute(query):
        found.setdefault(int(dataset_id), []).append(int(project_id))
    return found


def _owned_by(principal: Principal, row: Project | Dataset) -> bool:
    """Whether ``principal`` owns ``row`` (the single user of none/token mode owns the ownerless)."""
    return row.owner_id == principal.user_id


def container_public(
    session: Session, principal: Principal, kind: Kind, rows: Sequence[Project | Dataset]
) -> list[ContainerPublic]:
    """The API view of some containers (names, counts, projects: a query each, not per row)."""
    ids = [row.id for row in rows]
    names = names_for(session, rows)
    counts = _child_counts(session, principal, kind, ids)
    projects = _projects_of(session, principal, ids) if kind == "dataset" else {}
    return [
        ContainerPublic(
            id=row.id,
            kind=kind,
            name=row.name,
            description=row.description,
            owner_id=row.owner_id,
            group_id=row.group_id,
            owner=names.user(row.owner_id),
            group=names.group(row.group_id),
            created_at=aware(row.created_at),
            updated_at=aware(row.updated_at),
            child_count=counts.get(row.id, 0),
            project_ids=projects.get(row.id, []),
            can_change=allows(principal, row, Action.CHANGE),
            owned_by_you=_owned_by(principal, row),
        )
        for row in rows
    ]


def create_container(
    session: Session,
    principal: Principal,
    kind: Kind,
    placement: Placement,
    *,
    name: str,
    description: str = "",
    project_id: int | None = None,
) -> Project | Dataset:
    """A new project or dataset, owned by the caller, in ``placement``'s group.

    A dataset created with ``project_id`` is linked into that project (the
    caller must be allowed to change the project: 404/403 otherwise).
    """
    project = None
    if project_id is not None:
        project = load_container(session, principal, "project", project_id, Action.CHANGE)
    model = _model(kind)
    row = model(
        name=name,
        description=description,
        owner_id=placement.owner_id,
        group_id=placement.group_id,
    )
    session.add(row)
    session.flush()
    if project is not None:
        session.add(
            ProjectDataset(project_id=project.id, dataset_id=row.id, owner_id=principal.user_id)
        )
    session.commit()
    return row


def list_containers(
    session: Session,
    principal: Principal,
    kind: Kind,
    *,
    skip: int = 0,
    limit: int = 100,
    name: str | None = None,
    project_id: int | None = None,
) -> ContainersPublic:
    """One page of visible projects or datasets (name order), with the total count.

    ``project_id`` (datasets): only those in that project (which must be visible).
    """
    model = _model(kind)
    conditions: list[ColumnElement[bool]] = [visible_containers(principal, kind)]
    if name is not None:
        conditions.append(func.lower(model.name) == name.replace("\x00", "").strip().lower())
    if project_id is not None:
        load_container(session, principal, "project", project_id, Action.VIEW)
        conditions.append(
            model.id.in_(
                select(ProjectDataset.dataset_id).where(ProjectDataset.project_id == project_id)
            )
        )
    rows: list[Project | Dataset] = list(
        session.scalars(
            select(model)
            .where(*conditions)
            .order_by(model.name, model.id)
            .offset(skip)
            .limit(limit)
        )
    )
    total = session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
    return ContainersPublic(data=container_public(session, principal, kind, rows), count=int(total))


def update_container(
    session: Session,
    principal: Principal,
    kind: Kind,
    raw_id: object,
    *,
    name: str | None,
    description: str | None,
) -> Project | Dataset:
    """Rename or redescribe a container the caller may change."""
    row = load_container(session, principal, kind, raw_id, Action.CHANGE)
    if name is not None:
        row.name = name
    if description is not None:
        row.description = description
    row.updated_at = utcnow()
    session.commit()
    return row


def image_ids_of(session: Session, kind: Kind, container_id: int) -> list[uuid.UUID]:
    """Every image linked into a dataset, or into any dataset of a project."""
    if kind == "dataset":
        query = select(DatasetImage.image_id).where(DatasetImage.dataset_id == container_id)
    else:
        query = (
            select(DatasetImage.image_id)
            .join(ProjectDataset, ProjectDataset.dataset_id == DatasetImage.dataset_id)
            .where(ProjectDataset.project_id == container_id)
            .distinct()
        )
    return list(session.scalars(query))


def delete_container(
    session: Session, principal: Principal, kind: Kind, raw_id: object
) -> tuple[int, list[uuid.UUID]]:
    """Delete a container the caller may change; its id and the images that were in it.

    The images are returned (not deleted): the route deletes those the caller
    may delete when asked to, through the image delete path (files, caches).
    """
    row = load_container(session, principal, kind, raw_id, Action.CHANGE)
    container_id = row.id
    inside = image_ids_of(session, kind, container_id)
    session.execute(delete(_model(kind)).where(_model(kind).id == container_id))
    session.commit()
    return container_id, inside


def _parse_image_ids(raw_ids: list[str]) -> list[uuid.UUID]:
    parsed: list[uuid.UUID] = []
    seen: set[uuid.UUID] = set()
    for raw in raw_ids:
        try:
            value = uuid.UUID(str(raw))
        except ValueError:
            msg = f"image_ids: {str(raw)[:64]!r} is not an image id"
            raise BadParameterError(msg) from None
        if value not in seen:
            seen.add(value)
            parsed.append(value)
    return parsed


def link_images(
    session: Session, principal: Principal, raw_id: object, raw_image_ids: list[str]
) -> LinkResult:
    """Link images into a dataset (the caller changes the dataset and annotates each image).

    All or nothing: one unknown or invisible image answers 404, one the caller
    may see but not annotate 403, and nothing is linked.
    """
    dataset = load_container(session, principal, "dataset", raw_id, Action.CHANGE)
    wanted = _parse_image_ids(raw_image_ids)
    rows: dict[uuid.UUID, Image] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows.update(
            (image.id, image) for image in session.scalars(select(Image).where(Image.id.in_(chunk)))
        )
    for image_id in wanted:
        image = rows.get(image_id)
        if image is None or not allows(principal, image, Action.VIEW):
            raise HTTPException(404, f"image_ids: no image with id {str(image_id)!r}")
        if not allows(principal, image, Action.ANNOTATE):
            raise HTTPException(403, f"you may see image {image_id} but not file it in a dataset")
    present: set[uuid.UUID] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        present.update(
            session.scalars(
                select(DatasetImage.image_id).where(
                    and_(DatasetImage.dataset_id == dataset.id, DatasetImage.image_id.in_(chunk))
                )
            )
        )
    new = [image_id for image_id in wanted if image_id not in present]
    if new:
        now = utcnow()
        session.add_all(
            DatasetImage(
                dataset_id=dataset.id, image_id=image_id, owner_id=principal.user_id, created_at=now
            )
            for image_id in new
        )
    dataset.updated_at = utcnow()
    session.commit()
    return LinkResult(
        dataset_id=dataset.id,
        linked=[str(i) for i in new],
        already=[str(i) for i in wanted if i in present],
    )


def unlink_image(session: Session, principal: Principal, raw_id: object, image_id: str) -> None:
    """Take an image out of a dataset the caller may change (404 when it was not in it)."""
    dataset = load_container(session, principal, "dataset", raw_id, Action.CHANGE)
    try:
        key = uuid.UUID(image_id)
    except ValueError:
        raise HTTPException(
            404, f"image {image_id[:64]!r} is not in dataset {dataset.id}"
        ) from None
    removed = session.execute(
        delete(DatasetImage).where(
            and_(DatasetImage.dataset_id == dataset.id, DatasetImage.image_id == key)
        )
    )
    if not getattr(removed, "rowcount", 0):
        session.rollback()
        raise HTTPException(404, f"image {image_id[:64]!r} is not in dataset {dataset.id}")
    session.commit()


def link_dataset(session: Session, principal: Principal, project_id: int, dataset_id: int) -> bool:
    """Link a dataset into a project; ``False`` when it was already there."""
    project = load_container(session, principal, "project", project_id, Action.CHANGE)
    dataset = load_container(session, principal, "dataset", dataset_id, Action.ANNOTATE)
    exists = session.get(ProjectDataset, (project.id, dataset.id))
    if exists is not None:
        return False
    session.add(
        ProjectDataset(project_id=project.id, dataset_id=dataset.id, owner_id=principal.user_id)
    )
    session.commit()
    return True


def link_datasets(
    session: Session, principal: Principal, raw_id: object, dataset_ids: list[int]
) -> DatasetLinkResult:
    """Link datasets into a project (the caller changes the project and annotates each dataset).

    The rule of :func:`link_images`, all or nothing: one unknown or invisible
    dataset answers 404, one the caller may see but not annotate 403, and
    nothing is linked.
    """
    project = load_container(session, principal, "project", raw_id, Action.CHANGE)
    wanted = list(dict.fromkeys(dataset_ids))
    for dataset_id in wanted:
        load_container(session, principal, "dataset", dataset_id, Action.ANNOTATE)
    present: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        present.update(
            session.scalars(
                select(ProjectDataset.dataset_id).where(
                    ProjectDataset.project_id == project.id, ProjectDataset.dataset_id.in_(chunk)
                )
            )
        )
    new = [dataset_id for dataset_id in wanted if dataset_id not in present]
    session.add_all(
        ProjectDataset(project_id=project.id, dataset_id=dataset_id, owner_id=principal.user_id)
        for dataset_id in new
    )
    project.updated_at = utcnow()
    session.commit()
    return DatasetLinkResult(
        project_id=project.id, linked=new, already=[i for i in wanted if i in present]
    )


def unlink_dataset(
    session: Session, principal: Principal, raw_id: object, dataset_raw_id: str
) -> None:
    """Take a dataset out of a project the caller may change (404 when it was not in it).

    Like unlinking an image: the dataset itself stays, and it must be visible.
    """
    project = load_container(session, principal, "project", raw_id, Action.CHANGE)
    dataset = load_container(session, principal, "dataset", dataset_raw_id, Action.VIEW)
    removed = session.execute(
        delete(ProjectDataset).where(
            and_(ProjectDataset.project_id == project.id, ProjectDataset.dataset_id == dataset.id)
        )
    )
    if not getattr(removed, "rowcount", 0):
        session.rollback()
        raise HTTPException(404, f"dataset {dataset.id} is not in project {project.id}")
    project.updated_at = utcnow()
    session.commit()


def image_datasets(session: Session, principal: Principal, image: Image) -> ContainersPublic:
    """The datasets ``image`` is in that the caller may see, by name (all of them: no paging).

    The image itself is checked by the router's guard; datasets of other
    groups the caller cannot see are left out, as in every list.
    """
    rows: list[Project | Dataset] = list(
        session.scalars(
            select(Dataset)
            .where(
                Dataset.id.in_(
                    select(DatasetImage.dataset_id).where(DatasetImage.image_id == image.id)
                ),
                visible_containers(principal, "dataset"),
            )
            .order_by(Dataset.name, Dataset.id)
        )
    )
    data = container_public(session, principal, "dataset", rows)
    return ContainersPublic(data=data, count=len(data))


def dataset_image_conditions(
    session: Session, principal: Principal, raw_id: object
) -> list[ColumnElement[bool]]:
    """The conditions of a dataset's image list: in the dataset, and visible to the caller.

    The dataset itself must be visible (else 404), as for every container route.
    """
    dataset = load_container(session, principal, "dataset", raw_id, Action.VIEW)
    return [
        Image.id.in_(select(DatasetImage.image_id).where(DatasetImage.dataset_id == dataset.id)),
        visible_images_filter(principal),
    ]


def find_or_create(
    session: Session,
    principal: Principal,
    kind: Kind,
    name: str,
    placement: Placement,
    *,
    project_id: int | None = None,
) -> Project | Dataset:
    """The container called ``name`` that the caller may change, or a new one.

    Used by ingest (``--project``, ``--dataset``, ``--dataset-from-folder``): a
    dataset is looked up within ``project_id`` when given. The caller's own come
    first, then others' the caller may change (a read-write group's); one the
    caller may only see (another's in a read-only or read-annotate group) is never
    taken, as every link into it would be refused. Several matches: the oldest
    (lowest id). The HTTP filer (``batch/filing.py``) chooses the same way from
    ``can_change`` and ``owned_by_you``.
    """
    model = _model(kind)
    conditions: list[ColumnElement[bool]] = [
        visible_containers(principal, kind),
        model.name == name,
    ]
    if project_id is not None:
        conditions.append(
            model.id.in_(
                select(ProjectDataset.dataset_id).where(ProjectDataset.project_id == project_id)
            )
        )
    rows: list[Project | Dataset] = list(
        session.scalars(select(model).where(*conditions).order_by(model.id))
    )
    usable = [row for row in rows if allows(principal, row, Action.CHANGE)]
    usable.sort(key=lambda row: not _owned_by(principal, row))  # stable: oldest first in each
    if usable:
        return usable[0]
    return create_container(session, principal, kind, placement, name=name, project_id=project_id)
