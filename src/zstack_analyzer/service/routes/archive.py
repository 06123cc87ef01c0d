"""The archive's routes: register a file in place, look records up by content hash.

Why in-place registration: a lab's archive already sits on a shared disk; copying
10^5 files of gigabytes into our storage doubles the disk and the time. The
server reads the original where it is, under ``ZSTACK_IMPORT_ROOTS`` only, and
checks it on every read (``in_place_original``): a changed or vanished original is
answered 409 or 410, never with stale pixels.
"""

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response, status

# Runtime imports, no ``from __future__ import annotations``: FastAPI reads these
# annotations (the dependencies) when the routes are declared.
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.errors import ZstackError
from zstack_analyzer.filesets import SetState
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.service.auth import events
from zstack_analyzer.service.auth.permissions import visible_images_filter
from zstack_analyzer.service.auth.placement import RegisterScopeDep
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.deps import (
    CacheDep,
    ClusterDep,
    DatabaseDep,
    PoolDep,
    RecordsDep,
    SessionDep,
    SettingsDep,
)
from zstack_analyzer.service.errors import ImportForbiddenError, unsafe_cause
from zstack_analyzer.service.images_service import (
    find_present,
    identity_of,
    in_place_record,
    regular_or_folder,
    resolve_import_path,
    save_in_place,
    to_public,
)
from zstack_analyzer.service.routes import problems
from zstack_analyzer.service.routes.images import schedule_default_thumbnail
from zstack_analyzer.service.schemas import ImagesPublic, RegisterRequest, UploadResponse

__all__ = ["read_original", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/images", tags=["archive"])


def read_original(path: Path, limits: ReadLimits) -> tuple[int, int, str, Any, Any, Any]:
    """``(size, mtime_ns, sha256, metadata, scenes, identity)`` of an original, read where it is.

    Typed reader errors propagate (400 unsupported, 422 corrupt or over limits).
    A file beneath it that leads outside the import roots, or is a FIFO, socket
    or device, refuses the whole registration (403): nothing is read from it.
    """
    from zstack_analyzer.batch.tasks import hash_file, hash_tree, inspect_path
    from zstack_analyzer.filesets import file_set, hash_set, set_state

    try:
        before = regular_or_folder(path, str(path))
        files = file_set(path, limits) if not path.is_dir() else None
        if files is not None and files.is_multi and files.main == path:
            # A multi-file image: the set's hash, total size and newest mtime.
            state = set_state(files)
            sha256 = hash_set(files, hash_file)
            metadata, scenes = inspect_path(path, limits)
            return state.size, state.mtime_ns, sha256, metadata, scenes, identity_of(before)
        sha256 = hash_tree(path) if path.is_dir() else hash_file(path)
        metadata, scenes = inspect_path(path, limits)
    except (ZstackError, OSError) as exc:
        unsafe = unsafe_cause(exc)  # readers wrap what they hit
        if unsafe is None:
            raise
        msg = f"{path}: refused: {unsafe.message}"
        raise ImportForbiddenError(msg) from None
    size = before.st_size if not path.is_dir() else 0
    return size, before.st_mtime_ns, sha256, metadata, scenes, identity_of(before)


def _set_state_confined(path: Path, roots: Sequence[Path]) -> SetState | None:
    """The set state of a multi-file image whose main file is ``path`` (``None``: one file).

    Every member must resolve inside the caller's import roots (403 otherwise),
    as the main file did: a companion that is a link out of the roots refuses
    the whole registration.
    """
    from zstack_analyzer.filesets import file_set, set_state

    files = file_set(path)
    if not files.is_multi or files.main != path:
        return None
    for member in files.paths():
        resolve_import_path(str(member), roots)
    return set_state(files)


def _evict_if_unused(database_call: Any, cache: RenderCache, sha256: str) -> None:
    if database_call(crud.count_sha256, sha256) == 0:
        cache.evict_identity(sha256)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResponse,
    summary="Register a file on the server in place (no copy)",
    responses={
        200: {
            "model": UploadResponse,
            "description": "Already registered and unchanged, or refreshed after a change",
        },
        201: {"description": "Registered"},
        **problems(400, 401, 403, 404, 422, 500),
    },
)
async def register_image(
    body: RegisterRequest,
    response: Response,
    settings: SettingsDep,
    database: DatabaseDep,
    pool: PoolDep,
    cache: CacheDep,
    records: RecordsDep,
    cluster: ClusterDep,
    scope: RegisterScopeDep,
    request: Request,
) -> UploadResponse:
    """Read the file's metadata where it is and record it; the original is never copied or deleted.

    201: a new record. 200: the path was registered before, and is unchanged
    (same size and mtime: nothing read) or was refreshed (new metadata, same id).
    """
    # The roots this caller may use (their groups' roots; ZSTACK_IMPORT_ROOTS without accounts).
    path = await anyio.to_thread.run_sync(resolve_import_path, body.path, scope.paths)
    placement = scope.placement_for(path)
    scope.check_existing(await database.run(in_place_record, str(path)))
    st = await anyio.to_thread.run_sync(os.stat, path)
    size = 0 if path.is_dir() else st.st_size
    mtime_ns = st.st_mtime_ns
    if not path.is_dir():
        state = await anyio.to_thread.run_sync(_set_state_confined, path, scope.paths)
        if state is not None:
            size, mtime_ns = state.size, state.mtime_ns
    present: Image | None = await database.run(
        functools.partial(
            find_present,
            path=str(path),
            size=size,
            mtime_ns=mtime_ns,
            in_place=True,
            identity=identity_of(st),
        )
    )
    if present is not None:
        response.status_code = status.HTTP_200_OK
        response.headers["Location"] = f"/api/images/{present.id}"
        return UploadResponse(
            message="Already registered", id=present.id, image_stack=to_public(present)
        )
    limits = settings.limits.read_limits()
    size, mtime_ns, sha256, metadata, scenes, identity = await pool.run(read_original, path, limits)
    image, created, previous = await database.run(
        functools.partial(
            save_in_place,
            path=str(path),
            size=size,
            mtime_ns=mtime_ns,
            sha256=sha256,
            metadata=metadata,
            scenes=scenes,
            identity=identity,
            owner_id=placement.owner_id,
            group_id=placement.group_id,
        )
    )
    records.forget(str(image.id))
    events.emit("register", scope.principal, request, image_id=str(image.id), path=str(path))
    if previous is not None and previous != sha256:
        await anyio.to_thread.run_sync(_evict_if_unused, database.call, cache, previous)
    logger.info("registered %s in place as %s (%s)", path, image.id, image.format)
    if settings.render.thumbnail_on_upload:
        schedule_default_thumbnail(
            pool, database, cache, limits, image.id, path, sha256, cluster=cluster
        )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"/api/images/{image.id}"
    message = "Registered in place" if created else "Refreshed (the original had changed)"
    return UploadResponse(message=message, id=image.id, image_stack=to_public(image))


@router.get(
    "/lookup",
    response_model=ImagesPublic,
    summary="Records with this content hash (what `zstack ingest --server` checks first)",
    responses=problems(401, 422),
)
def lookup_images(
    session: SessionDep,
    principal: PrincipalDep,
    sha256: Annotated[str, Query(pattern="^[0-9a-f]{64}$", description="SHA-256, lower-case hex")],
) -> ImagesPublic:
    """Every record with these bytes (oldest first); an empty list when there is none."""
    from sqlalchemy import select

    rows = session.scalars(
        select(Image)
        .where(Image.sha256 == sha256, visible_images_filter(principal))
        .order_by(Image.created_at, Image.id)
        .limit(100)
    ).all()
    return ImagesPublic(data=[to_public(row) for row in rows], count=len(rows))
