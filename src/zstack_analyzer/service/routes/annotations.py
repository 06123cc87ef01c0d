"""Annotations over HTTP: tags, key-value pairs, comments and attachments of images, datasets, projects.

For each kind of target (``/api/images/{image_id}``, ``/api/datasets/{dataset_id}``,
``/api/projects/{project_id}``) the same routes: ``GET/PUT .../tags``,
``GET/PUT .../key-values``, ``GET/POST .../comments``, ``GET/POST .../attachments``.
Reading needs the right to see the target, writing the right to annotate it
(``auth.permissions``; the image routes are marked with ``annotates`` so the
router's guard asks for exactly that). Plus ``/api/tags`` (list with counts,
rename, merge), ``/api/comments/{id}``, ``/api/attachments/{id}``,
``/api/annotations/templates`` and ``/api/annotations/bulk``.
"""

import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import Field

from zstack_analyzer.service.annotations import attachments, comments, keyvalues, tags
from zstack_analyzer.service.annotations.access import KINDS, Kind, load_target
from zstack_analyzer.service.annotations.bulk import apply_table
from zstack_analyzer.service.annotations.schemas import (
    MAX_NAME,
    AttachmentPublic,
    BulkRequest,
    BulkResult,
    CommentCreate,
    CommentPublic,
    KeyValueItem,
    TagMerge,
    TagPublic,
    TagRef,
    TagsPublic,
    TagUpdate,
    TemplatePublic,
)
from zstack_analyzer.service.annotations.templates import load_templates
from zstack_analyzer.service.auth.guard import annotates
from zstack_analyzer.service.auth.permissions import Action
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.deps import DatabaseDep, SessionDep, SettingsDep, StorageDep
from zstack_analyzer.service.routes import INDEX_MAX, problems
from zstack_analyzer.service.routes._path_id import named_path_id

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["annotations"])

TagId = Annotated[int, Path(ge=1, le=INDEX_MAX)]
TagNames = Annotated[
    list[Annotated[str, Field(max_length=MAX_NAME)]],
    Body(max_length=tags.MAX_TAGS, description="Tag names; they replace the target's tags"),
]
KeyValues = Annotated[
    list[KeyValueItem],
    Body(
        max_length=keyvalues.MAX_PAIRS, description="The pairs, in order; they replace the target's"
    ),
]


F = TypeVar("F", bound=Callable[..., Any])


def _unmarked(endpoint: F) -> F:
    """No mark: a container's routes are checked inside (the guard checks images only)."""
    return endpoint


def _problems(
    *statuses: int, missing: str, conflict: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """:func:`problems`, with the 404 naming what is missing and the 409 saying what clashed.

    Why: the shared descriptions are the image routes'; a dataset's, a tag's or a
    comment's route documented "No image with this id" for its 404, and the tag
    routes their 409 as an in-place original that changed.
    """
    responses = problems(*statuses, missing=missing)
    if conflict is not None:
        responses[409] = {**responses[409], "description": conflict}
    return responses


def _register(kind: Kind) -> None:
    """The tag, key-value, comment and attachment routes of one kind of target."""
    plural = f"{kind}s"
    base = f"/{plural}/{{{kind}_id}}"
    TargetId = Annotated[str, Path(max_length=64)]
    mark = annotates if kind == "image" else _unmarked
    named = named_path_id(f"{kind}_id")
    absent = 404
    # "an image", "a dataset", "a project": the summaries are read by people.
    a_kind = f"an {kind}" if kind == "image" else f"a {kind}"

    @router.get(
        f"{base}/tags",
        response_model=list[TagRef],
        summary=f"The tags of {a_kind}",
        responses=_problems(401, absent, missing=kind),
        name=f"{kind}_tags",
    )
    @named
    def get_tags(session: SessionDep, principal: PrincipalDep, raw_id: TargetId) -> list[TagRef]:
        return tags.target_tags(session, load_target(session, principal, kind, raw_id, Action.VIEW))

    @router.put(
        f"{base}/tags",
        response_model=list[TagRef],
        summary=f"Replace the tags of {a_kind} (names made on first use in its group)",
        responses=_problems(401, 403, absent, 422, missing=kind),
        name=f"put_{kind}_tags",
    )
    @mark
    @named
    def put_tags(
        names: TagNames, session: SessionDep, principal: PrincipalDep, raw_id: TargetId
    ) -> list[TagRef]:
        target = load_target(session, principal, kind, raw_id, Action.ANNOTATE)
        return tags.replace_tags(session, principal, target, names)

    @router.get(
        f"{base}/key-values",
        response_model=list[KeyValueItem],
        summary=f"The key-value pairs of {a_kind}, in order",
        responses=_problems(401, absent, missing=kind),
        name=f"{kind}_key_values",
    )
    @named
    def get_key_values(
        session: SessionDep, principal: PrincipalDep, raw_id: TargetId
    ) -> list[KeyValueItem]:
        target = load_target(session, principal, kind, raw_id, Action.VIEW)
        return keyvalues.target_key_values(session, target)

    @router.put(
        f"{base}/key-values",
        response_model=list[KeyValueItem],
        summary=f"Replace the key-value pairs of {a_kind}",
        responses=_problems(401, 403, absent, 422, missing=kind),
        name=f"put_{kind}_key_values",
    )
    @mark
    @named
    def put_key_values(
        items: KeyValues, session: SessionDep, principal: PrincipalDep, raw_id: TargetId
    ) -> list[KeyValueItem]:
        target = load_target(session, principal, kind, raw_id, Action.ANNOTATE)
        return keyvalues.replace_key_values(session, principal, target, items)

    @router.get(
        f"{base}/comments",
        response_model=list[CommentPublic],
        summary=f"The comments on {a_kind}, oldest first",
        responses=_problems(401, absent, missing=kind),
        name=f"{kind}_comments",
    )
    @named
    def get_comments(
        session: SessionDep, principal: PrincipalDep, raw_id: TargetId
    ) -> list[CommentPublic]:
        target = load_target(session, principal, kind, raw_id, Action.VIEW)
        return comments.target_comments(session, target)

    @router.post(
        f"{base}/comments",
        status_code=201,
        response_model=CommentPublic,
        summary=f"Comment on {a_kind}",
        responses=_problems(401, 403, absent, 422, missing=kind),
        name=f"post_{kind}_comment",
    )
    @mark
    @named
    def post_comment(
        body: CommentCreate, session: SessionDep, principal: PrincipalDep, raw_id: TargetId
    ) -> CommentPublic:
        target = load_target(session, principal, kind, raw_id, Action.ANNOTATE)
        return comments.add_comment(session, principal, target, body.text)

    @router.get(
        f"{base}/attachments",
        response_model=list[AttachmentPublic],
        summary=f"The files attached to {a_kind}",
        responses=_problems(401, absent, missing=kind),
        name=f"{kind}_attachments",
    )
    @named
    def get_attachments(
        session: SessionDep, principal: PrincipalDep, raw_id: TargetId
    ) -> list[AttachmentPublic]:
        target = load_target(session, principal, kind, raw_id, Action.VIEW)
        return attachments.target_attachments(session, target)

    @router.post(
        f"{base}/attachments",
        status_code=201,
        response_model=AttachmentPublic,
        summary=f"Attach a small file to {a_kind} (multipart field 'file', size-capped)",
        responses=_problems(400, 401, 403, absent, 413, 422, missing=kind),
        name=f"post_{kind}_attachment",
        openapi_extra=_ATTACHMENT_BODY,
    )
    @mark
    @named
    async def post_attachment(
        request: Request,
        database: DatabaseDep,
        storage: StorageDep,
        settings: SettingsDep,
        principal: PrincipalDep,
        raw_id: TargetId,
    ) -> AttachmentPublic:
        # The right to annotate is checked before a byte of the body is read.
        await database.run(load_target, principal, kind, raw_id, Action.ANNOTATE)
        return await _receive_attachment(
            request, database, storage, settings, principal, kind, raw_id
        )


_ATTACHMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


async def _receive_attachment(
    request: Request,
    database: Any,
    storage: Any,
    settings: Any,
    principal: Any,
    kind: Kind,
    raw_id: str,
) -> AttachmentPublic:
    """Stream the file to a temp file (capped), commit it to storage, then add the row."""
    from zstack_analyzer.service.storage import display_filename, stored_suffix
    from zstack_analyzer.service.upload import receive_upload

    staging = storage.temp_path(f"{uuid.uuid4().hex}.attachment")
    try:
        received = await receive_upload(
            request,
            staging,
            max_bytes=settings.annotations.max_attachment_bytes,
            settings=settings.uploads,
        )
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    filename = display_filename(received.filename)
    stored_name = storage.new_stored_name(stored_suffix(filename))
    try:
        await anyio.to_thread.run_sync(storage.commit, staging, stored_name)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise

    def add(session: Any) -> AttachmentPublic:
        target = load_target(session, principal, kind, raw_id, Action.ANNOTATE)
        return attachments.add_attachment(
            session,
            principal,
            target,
            filename=filename,
            stored_name=stored_name,
            size_bytes=received.size_bytes,
            sha256=received.sha256,
        )

    try:
        public: AttachmentPublic = await database.run(add)
    except BaseException:
        await anyio.to_thread.run_sync(storage.remove, stored_name)
        raise
    return public


for _kind in KINDS:
    _register(_kind)


@router.get(
    "/tags",
    response_model=TagsPublic,
    summary="Tags you can see, with how many images, datasets and projects carry each",
    responses=problems(401, 422),
)
def list_tags(
    session: SessionDep,
    principal: PrincipalDep,
    q: Annotated[str | None, Query(max_length=MAX_NAME, description="Name prefix")] = None,
    group: Annotated[str | None, Query(max_length=150, description="Only this group's")] = None,
    skip: Annotated[int, Query(ge=0, le=INDEX_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TagsPublic:
    """Visible tags by name, with counts of visible things carrying them."""
    return tags.list_tags(
        session,
        principal,
        q=q,
        group=group.replace("\x00", "") if group else None,
        skip=skip,
        limit=limit,
    )


@router.patch(
    "/tags/{tag_id}",
    response_model=TagPublic,
    summary="Rename a tag (its owner or a group owner); 409 if the name is taken: merge",
    responses=_problems(
        401, 403, 404, 409, 422, missing="tag", conflict="Its group has a tag of that name"
    ),
)
def update_tag(
    tag_id: TagId, body: TagUpdate, session: SessionDep, principal: PrincipalDep
) -> TagPublic:
    """The renamed tag."""
    return tags.update_tag(session, principal, tag_id, name=body.name, description=body.description)


@router.post(
    "/tags/{tag_id}/merge",
    response_model=TagPublic,
    summary="Merge a tag into another of its group (its links move; it is deleted)",
    responses=_problems(
        401, 403, 404, 409, 422, missing="tag", conflict="The two tags are of different groups"
    ),
)
def merge_tag(
    tag_id: TagId, body: TagMerge, session: SessionDep, principal: PrincipalDep
) -> TagPublic:
    """The tag merged into, with its new counts."""
    return tags.merge_tag(session, principal, tag_id, body.into)


@router.delete(
    "/comments/{comment_id}",
    status_code=204,
    summary="Delete a comment (its author, or whoever may change the target)",
    responses={204: {"description": "Deleted"}, **_problems(401, 403, 404, missing="comment")},
)
def delete_comment(
    comment_id: Annotated[int, Path(ge=1, le=INDEX_MAX)],
    session: SessionDep,
    principal: PrincipalDep,
) -> None:
    """Gone."""
    comments.delete_comment(session, principal, comment_id)


@router.get(
    "/attachments/{attachment_id}",
    response_class=FileResponse,
    summary="Download an attached file",
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "The file's bytes",
        },
        **_problems(401, 404, missing="attachment"),
    },
)
def download_attachment(
    attachment_id: Annotated[int, Path(ge=1, le=INDEX_MAX)],
    session: SessionDep,
    principal: PrincipalDep,
    storage: StorageDep,
) -> Response:
    """The bytes, as an attachment (never rendered inline by the browser)."""
    from zstack_analyzer.service.ranged import stream_stored
    from zstack_analyzer.service.routes.images import content_disposition

    row = attachments.readable_attachment(session, principal, attachment_id)
    headers = {
        "Content-Disposition": content_disposition(row.filename),
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{row.sha256}"',
    }
    # One media type, as documented (the file's own is in the listing): a download, not a page.
    media_type = "application/octet-stream"
    if storage.is_local:
        return FileResponse(storage.path(row.stored_name), media_type=media_type, headers=headers)
    return stream_stored(storage, row.stored_name, row.size_bytes, None, media_type, headers)


@router.delete(
    "/attachments/{attachment_id}",
    status_code=204,
    summary="Delete an attached file (its author, or whoever may change the target)",
    responses={204: {"description": "Deleted"}, **_problems(401, 403, 404, missing="attachment")},
)
async def delete_attachment(
    attachment_id: Annotated[int, Path(ge=1, le=INDEX_MAX)],
    database: DatabaseDep,
    storage: StorageDep,
    principal: PrincipalDep,
) -> None:
    """Row first, then the file (a crash between leaves a file the sweep removes)."""
    stored_name = await database.run(attachments.removable_attachment, principal, attachment_id)
    await anyio.to_thread.run_sync(storage.remove, stored_name)


@router.get(
    "/annotations/templates",
    response_model=list[TemplatePublic],
    summary="Key-value templates (REMBI and the server's own) for the viewer's forms",
    responses=problems(401),
)
def list_templates(settings: SettingsDep) -> list[TemplatePublic]:
    """Every template, by name."""
    found = load_templates(settings.annotations.templates_dir)
    return [found[name] for name in sorted(found)]


@router.post(
    "/annotations/bulk",
    response_model=BulkResult,
    summary="Annotate many images from a CSV table (first column names the images)",
    responses=problems(401, 403, 404, 422),
)
def bulk_annotate(body: BulkRequest, session: SessionDep, principal: PrincipalDep) -> Any:
    """Tags and key-value pairs from a table, all rows or none.

    A table with faulty rows answers 422 (problem+json) whose ``errors`` name
    each row and what is wrong; nothing is applied.
    """
    from zstack_analyzer.service.errors import problem_response

    result = apply_table(
        session,
        principal,
        body.csv,
        dry_run=body.dry_run,
        dataset=body.dataset,
        namespace=body.namespace,
    )
    if result.errors:
        shown = "; ".join(f"row {e.row}: {e.message}" for e in result.errors[:5])
        more = f" (and {len(result.errors) - 5} more)" if len(result.errors) > 5 else ""
        return problem_response(
            422,
            code="bulk_rows_invalid",
            detail=f"{len(result.errors)} row(s) cannot be applied, nothing was: {shown}{more}",
            errors=[e.model_dump() for e in result.errors],
        )
    return result
