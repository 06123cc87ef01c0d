"""Image records: upload, list, get, metadata, download, delete."""

import contextlib
import functools
import logging
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse

from zstack_analyzer.cache import RenderCache
from zstack_analyzer.errors import ZstackError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.registry import known_suffixes
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.service.auth import events
from zstack_analyzer.service.auth.labels import labels_for
from zstack_analyzer.service.auth.permissions import visible_in_group
from zstack_analyzer.service.auth.placement import PlacementDep
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.cluster import ClusterRenders
from zstack_analyzer.service.db import crud
from zstack_analyzer.service.db.session import Database
from zstack_analyzer.service.deps import (
    CacheDep,
    ClusterDep,
    DatabaseDep,
    PoolDep,
    RecordsDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from zstack_analyzer.service.errors import ImageNotFoundError, problem_response
from zstack_analyzer.service.image_summaries import summaries_page
from zstack_analyzer.service.images_service import (
    build_image,
    full_metadata,
    in_place_original,
    inspect_file,
    missing_file_error,
    open_in_place,
    parse_image_id,
    readable_source,
    require_image,
    to_public,
)
from zstack_analyzer.service.ranged import stream_stored
from zstack_analyzer.service.routes import INDEX_MAX, problems
from zstack_analyzer.service.schemas import ImagePublic, ImagesPublic, UploadResponse
from zstack_analyzer.service.set_download import image_file_set, zip_chunks
from zstack_analyzer.service.storage import display_filename, stored_suffix
from zstack_analyzer.service.upload import UploadSlots, receive_upload
from zstack_analyzer.service.workers import WorkerPool
from zstack_analyzer.storage.base import StorageUnavailableError, UploadMirror
from zstack_analyzer.storage.remote import RemoteObject
from zstack_analyzer.vendor import json_safe

if TYPE_CHECKING:
    from collections.abc import Callable

    from zstack_analyzer.quality import SceneQuality
    from zstack_analyzer.render.thumbnails import RenderResult
    from zstack_analyzer.service.auth.permissions import Principal
    from zstack_analyzer.service.children import ChildProcesses
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.service.images_service import RecordMemo

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/images", tags=["images"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The image file; its format is detected from content",
                        }
                    },
                }
            }
        },
    }
}


def default_thumbnail_spec() -> RenderSpec:
    """The gallery thumbnail rendered after upload (256x256 Z maximum projection)."""
    return RenderSpec(kind="thumbnail", width=256, height=256)


def _known_suffixes() -> frozenset[str]:
    try:
        return known_suffixes()
    except ImportError:  # a reader module failed to import: keep only a plain suffix
        return frozenset()


@router.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResponse,
    summary="Upload an image (multipart field 'file')",
    responses={
        201: {
            "description": "Stored. Header X-Duplicate-Of names an earlier image with the same bytes.",
        },
        **problems(400, 401, 403, 408, 413, 422, 429, 500, 503),
    },
    openapi_extra=UPLOAD_BODY,
)
async def upload_image(
    request: Request,
    response: Response,
    after_response: BackgroundTasks,
    settings: SettingsDep,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    cache: CacheDep,
    cluster: ClusterDep,
    placement: PlacementDep,
    principal: PrincipalDep,
) -> UploadResponse:
    """Stream the upload to disk, read its metadata, then store file and row atomically.

    The same bytes uploaded twice give two independent records; the second
    response carries ``X-Duplicate-Of: <first id>``.
    """
    slots: UploadSlots = request.app.state.upload_slots
    client = request.client.host if request.client else "unknown"
    known = _known_suffixes()
    names: list[str] = []

    def open_mirror(raw_filename: str | None) -> UploadMirror | None:
        # Object storage: stream to the final key while the body arrives (before the
        # format is known); the key's suffix is the client's only when a reader claims it.
        names.append(storage.new_stored_name(_hint_suffix(raw_filename, known)))
        return storage.open_mirror(names[0])

    with slots.hold(client):
        staging = storage.temp_path(f"{uuid.uuid4().hex}.upload")
        received = await receive_upload(
            request,
            staging,
            max_bytes=settings.limits.max_upload_bytes,
            settings=settings.uploads,
            open_mirror=None if storage.is_local else open_mirror,
        )
        filename = display_filename(received.filename)
        # The client's extension is only a tie-break hint for detection, and only when
        # some reader claims it; the stored file gets the detected format's suffix.
        hint = _hint_suffix(received.filename, known)
        temp = storage.temp_path(f"{uuid.uuid4().hex}{hint}")
        stored_name = names[0] if names else ""
        try:
            await anyio.to_thread.run_sync(staging.rename, temp)
            try:
                metadata, scenes = await pool.run(inspect_file, temp, settings.limits.read_limits())
            except ZstackError as exc:
                name_in_message(exc, {str(temp): filename, temp.name: filename})
                raise
            if not received.mirrored:
                stored_name = storage.new_stored_name(format_suffix(metadata.file_format, hint))
            stored_path = await anyio.to_thread.run_sync(
                functools.partial(storage.commit, temp, stored_name, mirrored=received.mirrored)
            )
        except BaseException:
            staging.unlink(missing_ok=True)
            temp.unlink(missing_ok=True)
            if received.mirrored:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(storage.remove, stored_name)
            raise
    image = build_image(
        image_id=uuid.uuid4(),
        filename=filename,
        stored_name=stored_name,
        size_bytes=received.size_bytes,
        sha256=received.sha256,
        metadata=metadata,
        scenes=scenes,
    )
    image.owner_id, image.group_id = placement.owner_id, placement.group_id
    try:
        duplicate = await database.run(crud.find_duplicate, received.sha256)
        await database.run(crud.add_image, image)
    except BaseException:
        await anyio.to_thread.run_sync(storage.remove, stored_name)
        raise
    if duplicate is not None:
        response.headers["X-Duplicate-Of"] = str(duplicate.id)
    response.headers["Location"] = f"/api/images/{image.id}"
    events.emit("upload", principal, request, image_id=str(image.id), group=placement.group)
    logger.info(
        "stored %s as %s (%s, %d bytes)", filename, image.id, image.format, image.size_bytes
    )
    if settings.render.thumbnail_on_upload:
        # After the 201 is sent (Starlette runs background tasks then): the render's
        # reads and buffers never hold up the answer or share the request's memory peak.
        # An async task, so it is scheduled on the event loop like any other job.
        async def render_after_response() -> None:
            schedule_default_thumbnail(
                pool,
                database,
                cache,
                settings.limits.read_limits(),
                image.id,
                stored_path,
                image.sha256,
                cluster=cluster,
                stays_put=storage.is_local,
            )

        after_response.add_task(render_after_response)
    return UploadResponse(
        message="File uploaded successfully", id=image.id, image_stack=to_public(image)
    )


def _hint_suffix(raw_filename: str | None, known: frozenset[str]) -> str:
    """The client's extension when some reader claims it (a detection tie-break), else ""."""
    hint = stored_suffix(display_filename(raw_filename), known)
    return hint if hint in known else ""


def format_suffix(file_format: str, hint: str) -> str:
    """Our suffix for a detected format: the client's ``hint`` if that format claims it.

    Why: the stored name must never carry what a client chose (``.php``,
    ``.exe``); a web server or a user's file manager may act on it.

    Examples
    --------
    >>> format_suffix("CZI", ".php"), format_suffix("OME-TIFF", ".ome.tiff")
    ('.czi', '.ome.tiff')
    """
    from zstack_analyzer.registry import supported_formats

    try:
        table = {info.name: info.suffixes for info in supported_formats()}
    except ImportError:
        return ""
    suffixes = table.get(file_format, ())
    if hint in suffixes:
        return hint
    return suffixes[0] if suffixes else ""


def name_in_message(exc: ZstackError, replacements: dict[str, str]) -> None:
    """Make an error name the user's file, never our storage path or name (longest first)."""
    message = exc.message
    for internal in sorted(replacements, key=len, reverse=True):
        message = message.replace(internal, replacements[internal])
    exc.message = message
    exc.args = (message,)


def name_image_in_message(exc: ZstackError, image: "Image", path: object) -> None:
    """:func:`name_in_message` for an error reading a stored image from ``path``.

    ``path`` is where it was read (a local path or a remote object); its ``str`` and the
    stored name are what a reader's message may show. ``None``: the error came before a
    path was known (finding the original), so only the stored name is replaced, never
    the word "None" in the message.
    """
    replacements = {image.stored_name: image.filename}
    if path is not None:
        replacements[str(path)] = image.filename
    name_in_message(exc, replacements)


def schedule_default_thumbnail(
    pool: WorkerPool,
    database: Database,
    cache: RenderCache,
    limits: ReadLimits,
    image_id: uuid.UUID,
    path: Path,
    identity: str,
    *,
    cluster: ClusterRenders | None = None,
    measure_quality: bool = True,
    stays_put: bool = True,
) -> None:
    """Render the gallery thumbnail in the background; a failure only logs.

    ``stays_put``: ``path`` lasts as long as the record (local storage, an
    in-place original), so a child process started seconds later still finds
    it. An object storage's local copy may be evicted by then: that job stays
    in the server's threads, which start at once.

    With ``measure_quality`` (the default) the same job measures the image's
    quality from the same planes and stores it (``image_quality``).

    With a dask cluster (``ZSTACK_DASK_SCHEDULER``) a worker renders it into the
    shared cache (and measures the quality, which comes back here to be stored).
    Otherwise it runs as a worker-thread job under the same key a thumbnail
    request with default parameters uses, so such a request arriving meanwhile
    waits for this render. With the pool's child processes
    (``render.background_processes``, the default) that job hands the render
    and the measures to a child, which writes the picture into the render
    cache, and reads it back from there: the server never loads numba and the
    quality kernels, nor holds the render's buffers.
    """
    from zstack_analyzer.batch.tasks import render_with_quality
    from zstack_analyzer.service.db.quality import store_quality, store_quality_error
    from zstack_analyzer.service.routes.render import render_job

    spec = default_thumbnail_spec()

    def _mark_ready(_result: object = None) -> None:
        database.call(crud.mark_thumbnail_ready, image_id)

    def _store_quality(quality: "list[SceneQuality] | str") -> None:
        if isinstance(quality, str):
            database.call(store_quality_error, image_id, quality)
        else:
            database.call(store_quality, image_id, quality)

    def _after_cluster(result: "list[SceneQuality] | str | int") -> None:
        _mark_ready()
        if measure_quality and not isinstance(result, int):
            _store_quality(result)

    if cluster is not None:
        cluster.spawn(
            path,
            spec,
            limits,
            identity,
            on_success=_after_cluster,
            measure_quality=measure_quality,
        )
        return

    measured: list[list[SceneQuality] | str] = []

    def job(
        path: Path, spec: RenderSpec, limits: ReadLimits, cache: RenderCache, identity: str
    ) -> "RenderResult":
        # One open, one pass: the thumbnail's planes feed the quality measures.
        result, quality = render_with_quality(path, spec, limits, cache, identity)
        measured.append(quality)
        return result

    def _store(_result: object = None) -> None:
        _mark_ready()
        if measured:  # else a thumbnail request's render ran instead: `zstack quality --missing`
            _store_quality(measured[0])

    work: Callable[..., RenderResult] = render_job
    if measure_quality:
        work = job
        # A local file only: the child opens a path. An object read in place from the
        # bucket (``readable_source``'s RemoteObject) is measured here, as before.
        if pool.processes is not None and stays_put and isinstance(path, Path):
            work = functools.partial(render_and_measure_in_child, pool.processes, measured)
    pool.spawn(
        spec.cache_key(identity),
        identity,
        work,
        path,
        spec,
        limits,
        cache,
        identity,
        on_success=_store,
    )


def render_and_measure_in_child(
    processes: "ChildProcesses",
    measured: "list[list[SceneQuality] | str]",
    path: Path,
    spec: RenderSpec,
    limits: ReadLimits,
    cache: RenderCache,
    identity: str,
) -> "RenderResult":
    """The upload's render and quality job in a child process (a worker thread waits for it).

    The child writes the picture into the render cache and returns the
    measures (appended to ``measured``); the picture is read back from the
    cache for whoever waits on the same job. Not kept there (a cache of 0
    bytes, a full disk): it is rendered here, which needs no numba.
    """
    from zstack_analyzer.batch.tasks import render_and_measure_to_cache
    from zstack_analyzer.confine import confined_roots
    from zstack_analyzer.render.encode import MEDIA_TYPES
    from zstack_analyzer.render.thumbnails import RenderResult
    from zstack_analyzer.service.routes.render import render_job

    quality = processes.call(
        render_and_measure_to_cache,
        str(path),
        spec,
        limits,
        str(cache.directory),
        cache.max_bytes,
        identity,
        confined_roots(),
    )
    measured.append(quality)
    etag = spec.cache_key(identity)
    data = cache.get(identity, etag)
    if data is None:
        return render_job(path, spec, limits, cache, identity)
    return RenderResult(data, MEDIA_TYPES[spec.image_format], etag, from_cache=False)


@router.get(
    "", response_model=ImagesPublic, include_in_schema=False
)  # no redirect: "/" is the viewer
@router.get(
    "/",
    response_model=ImagesPublic,
    summary="List images, newest first",
    responses=problems(401, 422),
)
def list_images(
    session: SessionDep,
    principal: PrincipalDep,
    skip: Annotated[int, Query(ge=0, le=INDEX_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    q: Annotated[
        str | None,
        Query(
            max_length=255,
            description="Case-insensitive filename substring, matched literally "
            "(% and _ are not wildcards; NUL characters are ignored)",
        ),
    ] = None,
    group: Annotated[
        str | None, Query(max_length=150, description="Only images of this group (by name)")
    ] = None,
) -> ImagesPublic:
    """One page of image summaries and the total count (full records at ``GET /{id}``)."""
    conditions = crud.image_list_conditions(q, visible_in_group(principal, group))
    summaries, count = summaries_page(session, conditions, skip=skip, limit=limit)
    return ImagesPublic(data=summaries, count=count)


@router.get(
    "/{image_id}",
    response_model=ImagePublic,
    summary="One image's record",
    responses=problems(401, 404),
)
def get_image(image_id: str, session: SessionDep) -> ImagePublic:
    """The stored record of one image."""
    image = require_image(session, image_id)
    return to_public(image, labels_for(session, [image]))


@router.get(
    "/{image_id}/metadata",
    response_model=dict[str, Any],
    summary="Full ImageMetadata of one scene",
    responses=problems(401, 404, 409, 410, 422, 500),
)
async def get_metadata(
    image_id: str,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    settings: SettingsDep,
    scene: Annotated[int, Query(ge=-INDEX_MAX, le=INDEX_MAX, description="Scene index")] = 0,
) -> dict[str, Any]:
    """Scene 0 from the database; other scenes are read from the file."""
    from zstack_analyzer.errors import SceneNotFoundError

    image = await database.run(require_image, image_id)
    if scene == 0:
        return full_metadata(image)
    if not 0 <= scene < len(image.scenes):
        msg = f"{image.filename}: scene {scene} is out of range (0..{len(image.scenes) - 1})"
        raise SceneNotFoundError(msg)
    path = await anyio.to_thread.run_sync(readable_source, image, storage)
    limits = settings.limits.read_limits()
    try:
        metadata = await pool.run(_scene_metadata, path, scene, limits)
    except ZstackError as exc:
        # As the picture routes do: the message names the user's file, never our storage name.
        name_image_in_message(exc, image, path)
        raise
    except OSError as exc:
        raise await missing_file_error(database, image_id, exc) from exc
    return {**json_safe(metadata), "filename": image.filename}


def _scene_metadata(path: Path | RemoteObject, scene: int, limits: ReadLimits) -> dict[str, Any]:
    from zstack_analyzer import open_image

    with open_image(path, limits=limits) as reader:
        return reader.metadata(scene).model_dump(mode="json")


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name as RFC 5987 ``filename*``."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    "/{image_id}/download",
    response_class=FileResponse,
    summary="The original file (supports HTTP Range)",
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "The original bytes; a multi-file image's files as one zip",
        },
        206: {"description": "Partial content (Range)"},
        304: {"description": "Not modified (If-None-Match)"},
        **problems(401, 404, 409, 410, 416),
    },
)
def download_image(
    image_id: str,
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    principal: PrincipalDep,
) -> Response:
    """Stream the stored original with its display name."""
    image = require_image(session, image_id)
    events.emit("download", principal, request, image_id=str(image.id))
    # An in-place original is checked (409/410) and sent from where it is; a stored copy
    # is sized and streamed by the storage backend without fetching it whole.
    original = in_place_original(image) if image.stored_in_place else None
    etag = f'"{image.sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, max-age=3600",
        "Content-Disposition": content_disposition(image.filename),
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    files = image_file_set(image, storage, original)
    if files is not None:
        # A multi-file image: its files in one zip, names kept (whole, no ranges).
        headers["Content-Disposition"] = content_disposition(f"{image.filename}.zip")
        return StreamingResponse(zip_chunks(files), media_type="application/zip", headers=headers)
    opened: tuple[int, os.stat_result] | None = None
    if original is not None:
        if original.is_dir():  # a folder image (OME-Zarr): nothing to send as one file
            msg = f"{image.filename}: is a folder; it cannot be downloaded as one file"
            raise ImageNotFoundError(msg)
        # The bytes come from a descriptor checked to be the registered file itself:
        # a swap for a symlink (or another file) since the check above is refused.
        opened = open_in_place(image)
        size: int | None = opened[1].st_size
    else:
        size = storage.size(image.stored_name)
    if size is None:
        msg = f"{image.filename}: the stored file is missing"
        raise ImageNotFoundError(msg)
    ranges = parse_range(request.headers.get("range"), size)
    if ranges == [] and opened is not None:
        os.close(opened[0])
    if ranges == []:
        return problem_response(
            416,
            code="range_not_satisfiable",
            detail=f"{image.filename} has {size:,} bytes; no requested range starts inside it",
            headers={"Content-Range": f"bytes */{size}"},
        )
    # One media type for every format, as the OpenAPI document says: the bytes are
    # the original file, whatever a browser would guess from the display name.
    media_type = "application/octet-stream"
    if original is None and not storage.is_local:
        # Object storage streams the bytes from the bucket (one range, or the whole file).
        range_header = (
            f"bytes={ranges[0][0]}-{ranges[0][1]}" if ranges and len(ranges) == 1 else None
        )
        return stream_stored(storage, image.stored_name, size, range_header, media_type, headers)
    if opened is not None:
        fd, st = opened
        return _RangedFileResponse(
            Path(f"/proc/self/fd/{fd}"),
            ranges,
            media_type=media_type,
            headers=headers,
            stat_result=st,
            close_fd=fd,
        )
    return _RangedFileResponse(
        storage.path(image.stored_name), ranges, media_type=media_type, headers=headers
    )


#: Most ranges honoured in one request; more and the Range header is ignored (full body).
MAX_RANGES = 16
_RANGE_SPEC = re.compile(r"^\s*(?:(\d{1,19})\s*-\s*(\d{0,19})|-\s*(\d{1,19}))\s*$")


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The satisfiable byte ranges of a ``Range`` header, as inclusive (first, last) pairs.

    RFC 9110 section 14.2: a header that is absent, malformed, not in bytes, or
    has more than :data:`MAX_RANGES` parts is ignored (``None``: send the whole
    file); a valid one none of whose ranges overlaps the file gives ``[]`` (416).

    Examples
    --------
    >>> parse_range("bytes=0-9, -5", 100)
    [(0, 9), (95, 99)]
    >>> parse_range("bytes=200-", 100)
    []
    >>> parse_range("bytes=9-3", 100) is None, parse_range("items=0-1", 100) is None
    (True, True)
    """
    if header is None:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for part in parts:
        if not part.strip():
            continue  # empty list elements are allowed (RFC 9110 section 5.6.1)
        match = _RANGE_SPEC.match(part)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            length = int(suffix)
            if length > 0 and size > 0:
                ranges.append((max(size - length, 0), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None  # an invalid range-spec makes the whole header invalid
        if start < size:
            ranges.append((start, min(end, size - 1)))
    if not ranges and not any(p.strip() for p in parts):
        return None
    return ranges


class _RangedFileResponse(FileResponse):
    """A file response that serves exactly the ranges :func:`parse_range` accepted.

    Why: Starlette answers a malformed Range with a text/plain 400 and a partly
    unsatisfiable list with 416; here it only ever sees a normalised header of
    satisfiable ranges (or none, for the whole file).
    """

    def __init__(
        self,
        path: Path,
        ranges: list[tuple[int, int]] | None,
        *,
        close_fd: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        #: A descriptor to close once the response is sent (``path`` reopens it).
        self._close_fd = close_fd
        self._range = (
            "bytes=" + ",".join(f"{first}-{last}" for first, last in ranges) if ranges else None
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"range"]
        if self._range is not None:
            headers.append((b"range", self._range.encode("latin-1")))
        try:
            await super().__call__({**scope, "headers": headers}, receive, send)
        finally:
            if self._close_fd is not None:
                os.close(self._close_fd)
                self._close_fd = None


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header matches ``etag`` (weak comparison, lists, ``*``)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.strip('"')
    return any(part.strip().removeprefix("W/").strip('"') == bare for part in header.split(","))


@router.delete(
    "/{image_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an image, its file and its cached renderings",
    responses={204: {"description": "Deleted"}, **problems(401, 403, 404)},
)
async def delete_image(
    image_id: str,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    cache: CacheDep,
    records: RecordsDep,
    request: Request,
    principal: PrincipalDep,
) -> Response:
    """Row first (so no one finds a half-deleted image), then the file, then the cache.

    In-place records: the record and its renders go, the original stays.
    """
    image = await database.run(require_image, image_id)
    await remove_image(image, database, storage, pool, cache, records, request, principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def remove_image(
    image: "Image",
    database: Database,
    storage: StorageDep,
    pool: WorkerPool,
    cache: RenderCache,
    records: "RecordMemo",
    request: Request,
    principal: "Principal",
) -> None:
    """Delete one image the caller may delete: record, then file, then renders.

    Also the path of ``DELETE /api/datasets/{id}?with_images=true`` (the
    caller's right to delete each image is checked there).
    """
    image_id = str(image.id)
    records.forget(image_id)
    # The tombstone first: other server processes' memos stop serving the id at once.
    await anyio.to_thread.run_sync(records.tombstone, image.id)
    if not await database.run(crud.delete_image, parse_image_id(image_id)):
        msg = f"no image with id {image_id!r}"
        raise ImageNotFoundError(msg)
    others = await database.run(crud.count_sha256, image.sha256)
    if others:
        # Jobs are shared by content: the render (and quality) job of an identical
        # upload may be reading *this* file, and in a child process it opens the file
        # only once the child has started. Removed under it, the job would fail for
        # the record that stays (its thumbnail and quality never made).
        await pool.settle(image.sha256)
    if not image.stored_in_place:  # an in-place original is never ours to delete
        try:
            await anyio.to_thread.run_sync(storage.remove, image.stored_name)
        except StorageUnavailableError as exc:
            # The record is gone, so the delete is done for every client; the object
            # without a record is what the start-up sweep removes.
            logger.warning(
                "deleted image %s, but its object stays for the sweep: %s", image.id, exc
            )
    if not others:
        await pool.settle(image.sha256)
        await anyio.to_thread.run_sync(_evict, cache, image.sha256)
    events.emit("delete", principal, request, image_id=str(image.id))
    logger.info("deleted image %s (%s)", image.id, image.filename)


def _evict(cache: RenderCache, identity: str) -> None:
    """Drop every render of ``identity`` and its now-empty fan-out folder."""
    cache.evict_identity(identity)
    fan_out = cache.path_for(identity, "x").parent.parent
    with contextlib.suppress(OSError):
        fan_out.rmdir()  # only when empty: other identities may share the prefix
