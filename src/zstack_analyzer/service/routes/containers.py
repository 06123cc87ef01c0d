"""Projects and datasets over HTTP: ``/api/projects``, ``/api/datasets`` and their image links.

Thin: every rule is in ``service/annotations/containers.py``; a route parses,
calls it in a worker thread (plain ``def``), and answers. Deleting with
``?with_images=true`` deletes, through the image delete path (record, file,
renders), only the images the caller may delete; the others are listed as kept.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from zstack_analyzer.service.annotations import containers
from zstack_analyzer.service.annotations.access import Kind
from zstack_analyzer.service.annotations.schemas import (
    ContainerCreate,
    ContainerPublic,
    ContainersPublic,
    ContainerUpdate,
    DatasetCreate,
    DatasetLinkResult,
    DeleteResult,
    LinkDatasets,
    LinkImages,
    LinkResult,
)
from zstack_analyzer.service.auth import events
from zstack_analyzer.service.auth.guard import image_action
from zstack_analyzer.service.auth.permissions import Action
from zstack_analyzer.service.auth.placement import PlacementDep
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.deps import (
    CacheDep,
    DatabaseDep,
    PoolDep,
    RecordsDep,
    SessionDep,
    StorageDep,
)
from zstack_analyzer.service.image_summaries import summaries_page
from zstack_analyzer.service.routes import INDEX_MAX, problems
from zstack_analyzer.service.routes._path_id import named_path_id
from zstack_analyzer.service.schemas import ImagesPublic

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["containers"])

Skip = Annotated[int, Query(ge=0, le=INDEX_MAX)]
Limit = Annotated[int, Query(ge=1, le=1000)]
NameFilter = Annotated[
    str | None, Query(max_length=255, description="Only those with this name (case-insensitive)")
]
ContainerId = Annotated[str, Path(max_length=32)]


def _one(session: SessionDep, principal: PrincipalDep, kind: Kind, raw_id: str) -> ContainerPublic:
    from zstack_analyzer.service.annotations.access import load_container

    row = load_container(session, principal, kind, raw_id, Action.VIEW)
    return containers.container_public(session, principal, kind, [row])[0]


@router.post(
    "/projects",
    status_code=201,
    response_model=ContainerPublic,
    summary="Create a project (in ?group= or your default group)",
    responses=problems(401, 403, 422),
)
def create_project(
    body: ContainerCreate, session: SessionDep, principal: PrincipalDep, placement: PlacementDep
) -> ContainerPublic:
    """A new, empty project owned by the caller."""
    row = containers.create_container(
        session, principal, "project", placement, name=body.name, description=body.description
    )
    return containers.container_public(session, principal, "project", [row])[0]


@router.get(
    "/projects",
    response_model=ContainersPublic,
    summary="List the projects you can see, by name",
    responses=problems(401, 422),
)
def list_projects(
    session: SessionDep,
    principal: PrincipalDep,
    skip: Skip = 0,
    limit: Limit = 100,
    name: NameFilter = None,
) -> ContainersPublic:
    """One page of visible projects and their total."""
    return containers.list_containers(
        session, principal, "project", skip=skip, limit=limit, name=name
    )


@router.post(
    "/datasets",
    status_code=201,
    response_model=ContainerPublic,
    summary="Create a dataset, optionally in a project (project_id)",
    responses=problems(401, 403, 404, 422, missing="project"),
)
def create_dataset(
    body: DatasetCreate, session: SessionDep, principal: PrincipalDep, placement: PlacementDep
) -> ContainerPublic:
    """A new, empty dataset owned by the caller (linked into ``project_id`` when given)."""
    row = containers.create_container(
        session,
        principal,
        "dataset",
        placement,
        name=body.name,
        description=body.description,
        project_id=body.project_id,
    )
    return containers.container_public(session, principal, "dataset", [row])[0]


@router.get(
    "/datasets",
    response_model=ContainersPublic,
    summary="List the datasets you can see (of one project with project_id)",
    responses=problems(401, 404, 422, missing="project"),
)
def list_datasets(
    session: SessionDep,
    principal: PrincipalDep,
    skip: Skip = 0,
    limit: Limit = 100,
    name: NameFilter = None,
    project_id: Annotated[int | None, Query(ge=1, le=INDEX_MAX)] = None,
) -> ContainersPublic:
    """One page of visible datasets and their total."""
    return containers.list_containers(
        session, principal, "dataset", skip=skip, limit=limit, name=name, project_id=project_id
    )


def _register_one(kind: Kind) -> None:
    plural = f"{kind}s"
    named = named_path_id(f"{kind}_id")

    @router.get(
        f"/{plural}/{{{kind}_id}}",
        response_model=ContainerPublic,
        summary=f"One {kind}",
        responses=problems(401, 404, missing=kind),
        name=f"get_{kind}",
    )
    @named
    def get_one(
        session: SessionDep,
        principal: PrincipalDep,
        raw_id: ContainerId,
    ) -> ContainerPublic:
        return _one(session, principal, kind, raw_id)

    @router.patch(
        f"/{plural}/{{{kind}_id}}",
        response_model=ContainerPublic,
        summary=f"Rename or redescribe a {kind}",
        responses=problems(401, 403, 404, 422, missing=kind),
        name=f"update_{kind}",
    )
    @named
    def update_one(
        body: ContainerUpdate,
        session: SessionDep,
        principal: PrincipalDep,
        raw_id: ContainerId,
    ) -> ContainerPublic:
        row = containers.update_container(
            session, principal, kind, raw_id, name=body.name, description=body.description
        )
        return containers.container_public(session, principal, kind, [row])[0]

    @router.delete(
        f"/{plural}/{{{kind}_id}}",
        response_model=DeleteResult,
        summary=f"Delete a {kind} (its images too only with ?with_images=true)",
        responses=problems(401, 403, 404, 422, missing=kind),
        name=f"delete_{kind}",
    )
    @named
    async def delete_one(
        request: Request,
        database: DatabaseDep,
        storage: StorageDep,
        pool: PoolDep,
        cache: CacheDep,
        records: RecordsDep,
        principal: PrincipalDep,
        raw_id: ContainerId,
        with_images: Annotated[
            bool,
            Query(description="Also delete the images inside that you may delete"),
        ] = False,
    ) -> DeleteResult:
        container_id, inside = await database.run(
            containers.delete_container, principal, kind, raw_id
        )
        result = DeleteResult(deleted=kind, id=container_id)
        events.emit(
            "container_delete",
            principal,
            request,
            container=f"{kind} {container_id}",
            with_images=with_images,
        )
        if not with_images:
            return result
        from zstack_analyzer.service.auth.permissions import allows
        from zstack_analyzer.service.db import crud
        from zstack_analyzer.service.routes.images import remove_image

        for image_id in inside:
            image = await database.run(crud.get_image, image_id)
            if image is None:
                continue
            if not allows(principal, image, Action.CHANGE):
                if allows(principal, image, Action.VIEW):
                    result.images_kept.append(str(image_id))
                continue
            await remove_image(image, database, storage, pool, cache, records, request, principal)
            result.images_deleted.append(str(image_id))
        return result


_CONTAINER_KINDS: tuple[Kind, ...] = ("project", "dataset")
for _kind in _CONTAINER_KINDS:
    _register_one(_kind)


@router.post(
    "/datasets/{dataset_id}/images",
    response_model=LinkResult,
    summary="Link images into a dataset (JSON {'image_ids': [...]})",
    responses=problems(401, 403, 404, 422, missing="dataset or image"),
)
def link_images(
    dataset_id: ContainerId, body: LinkImages, session: SessionDep, principal: PrincipalDep
) -> LinkResult:
    """All or nothing: every image must be yours to annotate; already linked ones are listed."""
    return containers.link_images(session, principal, dataset_id, body.image_ids)


@router.delete(
    "/datasets/{dataset_id}/images/{image_id}",
    status_code=204,
    summary="Unlink an image from a dataset (the image stays)",
    responses={
        204: {"description": "Unlinked"},
        **problems(401, 403, 404, missing="dataset or image"),
    },
)
@image_action(Action.VIEW)  # the dataset changes (checked inside); the image is only seen
def unlink_image(
    dataset_id: ContainerId,
    image_id: Annotated[str, Path(max_length=64)],
    session: SessionDep,
    principal: PrincipalDep,
) -> None:
    """Take the image out of the dataset."""
    containers.unlink_image(session, principal, dataset_id, image_id)


@router.get(
    "/datasets/{dataset_id}/images",
    response_model=ImagesPublic,
    summary="The images of a dataset, newest first (paged like the image list)",
    responses=problems(401, 404, 422, missing="dataset"),
)
def dataset_images(
    dataset_id: ContainerId,
    session: SessionDep,
    principal: PrincipalDep,
    skip: Skip = 0,
    limit: Limit = 100,
) -> ImagesPublic:
    """One page of the dataset's visible images and their total."""
    conditions = containers.dataset_image_conditions(session, principal, dataset_id)
    summaries, total = summaries_page(session, conditions, skip=skip, limit=limit)
    return ImagesPublic(data=summaries, count=total)


@router.post(
    "/projects/{project_id}/datasets",
    response_model=DatasetLinkResult,
    summary="Link existing datasets into a project (JSON {'dataset_ids': [...]})",
    responses=problems(401, 403, 404, 422, missing="project or dataset"),
)
def link_datasets(
    project_id: ContainerId, body: LinkDatasets, session: SessionDep, principal: PrincipalDep
) -> DatasetLinkResult:
    """All or nothing: every dataset must be yours to annotate; already linked ones are listed."""
    return containers.link_datasets(session, principal, project_id, body.dataset_ids)


@router.delete(
    "/projects/{project_id}/datasets/{dataset_id}",
    status_code=204,
    summary="Unlink a dataset from a project (the dataset stays)",
    responses={
        204: {"description": "Unlinked"},
        **problems(401, 403, 404, missing="project or dataset"),
    },
)
def unlink_dataset(
    project_id: ContainerId, dataset_id: ContainerId, session: SessionDep, principal: PrincipalDep
) -> None:
    """Take the dataset out of the project."""
    containers.unlink_dataset(session, principal, project_id, dataset_id)


@router.get(
    "/images/{image_id}/datasets",
    response_model=ContainersPublic,
    summary="The datasets an image is in (those you can see), by name",
    responses=problems(401, 404),
)
def image_datasets(
    image_id: Annotated[str, Path(max_length=64)], session: SessionDep, principal: PrincipalDep
) -> ContainersPublic:
    """Every visible dataset holding the image (the guard has checked the image)."""
    from zstack_analyzer.service.images_service import require_image

    return containers.image_datasets(session, principal, require_image(session, image_id))
