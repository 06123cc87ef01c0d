"""Pictures of an image: thumbnail, MIP, slice, section, orthogonal views; histograms.

Every picture is named by a :class:`RenderSpec`; its cache key is the ETag, so
a conditional request is answered (304) without opening the file, and a
repeated one comes from the cache. Indices are checked against the stored
scene sizes first, so an out-of-range request costs no file access.
"""

import hashlib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import annotated_types
import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.types import DecoratedCallable

from zstack_analyzer.cache import RenderCache
from zstack_analyzer.errors import SceneNotFoundError, ZstackError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.db.models import Image
from zstack_analyzer.service.deps import (
    CacheDep,
    DatabaseDep,
    PoolDep,
    RecordsDep,
    SettingsDep,
    StorageDep,
)
from zstack_analyzer.service.errors import BadParameterError
from zstack_analyzer.service.images_service import (
    in_place_original,
    missing_file_error,
    readable_source,
    require_image,
    scene_sizes,
)
from zstack_analyzer.service.routes import IMAGE_MEDIA_TYPES, INDEX_MAX, problems
from zstack_analyzer.service.routes.images import etag_matches, name_image_in_message
from zstack_analyzer.service.schemas import HistogramPublic

if TYPE_CHECKING:
    from pathlib import Path as FilePath

    from zstack_analyzer.render.thumbnails import RenderResult
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = ["render_job", "router"]

router = APIRouter(prefix="/api/images", tags=["render"])

#: Cached pictures up to this size are read on the event loop (see Renderer._cached).
INLINE_CACHE_READ_BYTES = 512 * 1024
#: Most channels composited in one picture (the renderer's own cap).
MAX_COMPOSITE_CHANNELS = 7
_COLOR = re.compile(r"^#?[0-9a-fA-F]{6}$")
# The formats the OpenAPI document states for the list parameters (and FastAPI enforces);
# an empty value means "default". Order checks (low < high, one per channel) stay in code.
_INT = r"\s*-?\d{1,10}\s*"
CHANNELS_PATTERN = rf"^({_INT}(,{_INT})*)?$"
_HEX = r"\s*#?[0-9a-fA-F]{6}\s*"
COLORS_PATTERN = rf"^({_HEX}(,{_HEX})*)?$"
_NUM = r"\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*"
WINDOWS_PATTERN = rf"^({_NUM}:{_NUM}(,{_NUM}:{_NUM})*)?$"
#: Longest list parameter (characters).
MAX_LIST_CHARS = 2048

IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": IMAGE_MEDIA_TYPES, "description": "The picture (PNG unless format= says)"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    **problems(401, 404, 409, 410, 422, 500, 503),
}


def render_job(
    path: "FilePath | RemoteObject",
    spec: RenderSpec,
    limits: ReadLimits,
    cache: RenderCache,
    identity: str,
) -> "RenderResult":
    """Render (or fetch from the cache) in a worker thread."""
    from zstack_analyzer.render.thumbnails import render_file

    return render_file(path, spec, limits=limits, cache=cache, identity=identity)


def _histogram_job(
    path: "FilePath | RemoteObject", scene: int, t: int, z: int | None, limits: ReadLimits
) -> list[dict[str, Any]]:
    from zstack_analyzer.render.thumbnails import channel_histograms

    return channel_histograms(path, scene=scene, t=t, z=z, limits=limits)


#: An index parameter (scene, t, z, channel, section index): bounded so that no
#: value overflows a database or a C integer; range checks against the image follow.
Index = Annotated[int, annotated_types.Interval(ge=-INDEX_MAX, le=INDEX_MAX)]


class RenderParams:
    """Query parameters common to every picture route."""

    def __init__(
        self,
        scene: Annotated[Index, Query(description="Scene index")] = 0,
        t: Annotated[Index, Query(description="Timepoint")] = 0,
        channels: Annotated[
            str | None,
            Query(
                description='C indices to composite, e.g. "0,2"; default: all (up to 7)',
                pattern=CHANNELS_PATTERN,
                max_length=MAX_LIST_CHARS,
            ),
        ] = None,
        colors: Annotated[
            str | None,
            Query(
                description='One RRGGBB per listed channel, e.g. "00ff00,ff00ff"',
                pattern=COLORS_PATTERN,
                max_length=MAX_LIST_CHARS,
            ),
        ] = None,
        windows: Annotated[
            str | None,
            Query(
                description='One low:high per listed channel in raw values, low < high, e.g. "100:4000"',
                pattern=WINDOWS_PATTERN,
                max_length=MAX_LIST_CHARS,
            ),
        ] = None,
        gamma: Annotated[float, Query(ge=0.1, le=10.0)] = 1.0,
        format: Annotated[  # the query's name; no alias (see routes/_path_id.py for why)
            Literal["png", "jpeg", "webp"], Query(description="Encoding")
        ] = "png",
    ) -> None:
        self.scene = scene
        self.t = t
        self.channels = _parse_ints(channels, "channels")
        self.colors = _parse_colors(colors)
        self.windows = _parse_windows(windows)
        self.gamma = float(gamma)
        self.image_format = format


Params = Annotated[RenderParams, Depends()]
Width = Annotated[int, Query(ge=1, le=4096, description="Output width bound, pixels")]
Height = Annotated[int, Query(ge=1, le=4096, description="Output height bound, pixels")]


def _parse_ints(text: str | None, name: str) -> tuple[int, ...] | None:
    if text is None or not text.strip():
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        msg = f"{name}: expected comma-separated integers, got {text[:64]!r}"
        raise BadParameterError(msg) from None


def _parse_colors(text: str | None) -> tuple[str, ...] | None:
    if text is None or not text.strip():
        return None
    parts = tuple(part.strip().lstrip("#").lower() for part in text.split(","))
    if not all(_COLOR.match(part) for part in parts):
        msg = f"colors: expected RRGGBB hex colours separated by commas, got {text[:64]!r}"
        raise BadParameterError(msg)
    return parts


def _parse_windows(text: str | None) -> tuple[tuple[float, float], ...] | None:
    if text is None or not text.strip():
        return None
    windows = []
    for part in text.split(","):
        low, sep, high = part.partition(":")
        try:
            window = (float(low), float(high))
        except ValueError:
            window = None
        if not sep or window is None or not window[0] < window[1]:
            msg = f"windows: expected low:high pairs with low < high, got {part[:32]!r}"
            raise BadParameterError(msg)
        windows.append(window)
    return tuple(windows)


def _out_of_range(image: Image, what: str, value: int, size: int) -> SceneNotFoundError:
    msg = f"{image.filename}: {what} {value} is out of range (0..{size - 1})"
    return SceneNotFoundError(msg)


def _check(image: Image, params: RenderParams, **indices: int | None) -> None:
    """Refuse out-of-range indices from the stored sizes (422 out_of_range)."""
    sizes = scene_sizes(image, params.scene)
    if not sizes:
        raise _out_of_range(image, "scene", params.scene, max(len(image.scenes), 1))
    bounds = {
        "t": int(sizes.get("size_t", 1)),
        "z": int(sizes.get("size_z", 1)),
        "y": int(sizes.get("size_y", 1)),
        "x": int(sizes.get("size_x", 1)),
    }
    if not 0 <= params.t < bounds["t"]:
        raise _out_of_range(image, "timepoint t", params.t, bounds["t"])
    for name, value in indices.items():
        if value is not None and not 0 <= value < bounds[name]:
            raise _out_of_range(image, name, value, bounds[name])
    size_c = int(sizes.get("size_c", 1))
    for channel in params.channels or ():
        if not 0 <= channel < size_c:
            raise _out_of_range(image, "channel", channel, size_c)
    listed = len(params.channels) if params.channels else min(size_c, MAX_COMPOSITE_CHANNELS)
    for name, values in (("colors", params.colors), ("windows", params.windows)):
        if values is not None and len(values) != listed:
            msg = f"{name}: {len(values)} given for {listed} channel(s); give one per channel"
            raise BadParameterError(msg)


def _etag_headers(etag: str, settings: Settings) -> dict[str, str]:
    return {
        "ETag": f'"{etag}"',
        "Cache-Control": f"private, max-age={settings.render.max_age_seconds}",
    }


class Renderer:
    """What every picture route shares: its common query parameters and the app's services.

    Why one dependency: the routes differ only in the picture they name (the
    ``RenderSpec`` fields) and the indices to check; finding the image, the
    ETag, the cache and the worker pool are the same for all of them.
    """

    def __init__(
        self,
        request: Request,
        params: Params,
        database: DatabaseDep,
        storage: StorageDep,
        pool: PoolDep,
        cache: CacheDep,
        settings: SettingsDep,
        records: RecordsDep,
    ) -> None:
        self.request = request
        self.records = records
        self.params = params
        self.database = database
        self.storage = storage
        self.pool = pool
        self.cache = cache
        self.settings = settings

    async def respond(
        self, image_id: str, spec_fields: dict[str, Any], indices: dict[str, int | None]
    ) -> Response:
        """The picture ``spec_fields`` name: 304, from the cache, or rendered in the pool."""
        params = self.params
        image = await self.records.require(self.database, image_id)
        if image.stored_in_place:
            # Before any ETag or cache answer: a changed original must never get old pixels.
            await anyio.to_thread.run_sync(in_place_original, image)
        _check(image, params, **indices)
        spec = RenderSpec(
            scene=params.scene,
            t=params.t,
            channels=params.channels,
            colors=params.colors,
            windows=params.windows,
            gamma=params.gamma,
            image_format=params.image_format,
            **spec_fields,
        )
        etag = spec.cache_key(image.sha256)
        headers = _etag_headers(etag, self.settings)
        if etag_matches(self.request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        cached = await self._cached(image.sha256, etag)
        if cached is not None:
            return Response(content=cached, media_type=spec.media_type, headers=headers)
        # A render is costly anyway: confirm the row against the database, so a memo
        # entry that another process deleted meanwhile answers 404, not a missing file.
        image = await self.database.run(require_image, image_id)
        limits = self.settings.limits.read_limits()
        path = None
        try:
            path = await anyio.to_thread.run_sync(readable_source, image, self.storage)
            result = await self.pool.shared(
                etag,
                image.sha256,
                render_job,
                path,
                spec,
                limits,
                self.cache,
                image.sha256,
                is_disconnected=self.request.is_disconnected,
            )
        except ZstackError as exc:
            name_image_in_message(exc, image, path)
            raise
        except OSError as exc:
            raise await missing_file_error(self.database, image_id, exc) from exc
        return Response(content=result.data, media_type=result.media_type, headers=headers)

    async def _cached(self, identity: str, key: str) -> bytes | None:
        """The cached picture, read inline when small.

        Why inline: a thumbnail is tens of KiB already in the page cache; a hop
        to a worker thread costs more than the read. Large pictures still go to
        a thread so the event loop never waits on a big read.
        """
        try:
            size = self.cache.path_for(identity, key).stat().st_size
        except OSError:
            return None
        if size <= INLINE_CACHE_READ_BYTES:
            return self.cache.get(identity, key)
        return await anyio.to_thread.run_sync(self.cache.get, identity, key)


RendererDep = Annotated[Renderer, Depends()]


def _picture_route(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A GET route answering with a picture (PNG, JPEG or WebP), documented as such."""
    return router.get(path, response_class=Response, summary=summary, responses=IMAGE_RESPONSES)


@_picture_route("/{image_id}/thumbnail", "Thumbnail: plane z_slice, or the Z maximum projection")
async def thumbnail(
    image_id: str,
    renderer: RendererDep,
    width: Width = 256,
    height: Height = 256,
    z_slice: Annotated[Index | None, Query(description="Z plane; omitted: Z MIP")] = None,
) -> Response:
    """The gallery picture; the default one is pre-rendered after upload."""
    fields = {"kind": "thumbnail", "z": z_slice, "width": width, "height": height}
    return await renderer.respond(image_id, fields, {"z": z_slice})


@_picture_route("/{image_id}/mip", "Maximum intensity projection along axis 0=Z, 1=Y, 2=X")
async def mip(
    image_id: str,
    renderer: RendererDep,
    width: Width = 512,
    height: Height = 512,
    axis: Annotated[int, Query(ge=0, le=2, description="0=Z, 1=Y, 2=X")] = 0,
) -> Response:
    """A projection through the whole stack, streamed plane by plane."""
    fields = {"kind": "mip", "axis": axis, "width": width, "height": height}
    return await renderer.respond(image_id, fields, {})


@_picture_route("/{image_id}/slice/{z}", "The XY plane z")
async def slice_plane(
    image_id: str,
    z: Annotated[Index, Path(description="Z plane")],
    renderer: RendererDep,
    width: Width = 1024,
    height: Height = 1024,
    channel: Annotated[Index | None, Query(description="One channel (seed API)")] = None,
) -> Response:
    """One plane; reads only that plane from the file."""
    if channel is not None and renderer.params.channels is None:
        renderer.params.channels = (channel,)
    fields = {"kind": "slice", "z": z, "width": width, "height": height}
    return await renderer.respond(image_id, fields, {"z": z})


@_picture_route(
    "/{image_id}/section/{plane}/{index}",
    "XZ plane at Y=index or YZ plane at X=index, at physical aspect",
)
async def section(
    image_id: str,
    plane: Literal["xz", "yz"],
    index: Annotated[Index, Path(description="Y (xz) or X (yz) position")],
    renderer: RendererDep,
    width: Width = 512,
    height: Height = 512,
) -> Response:
    """A side view through the stack (rows = Z for xz; columns = Z for yz)."""
    indices: dict[str, int | None] = {"y": index} if plane == "xz" else {"x": index}
    fields = {"kind": "section", "plane": plane, "index": index, "width": width, "height": height}
    return await renderer.respond(image_id, fields, indices)


@_picture_route("/{image_id}/orthogonal", "XY, XZ and YZ maximum projections side by side")
async def orthogonal(
    image_id: str,
    renderer: RendererDep,
    width: Width = 768,
    height: Height = 256,
) -> Response:
    """Three projections from one pass over Z."""
    fields = {"kind": "orthogonal", "width": width, "height": height}
    return await renderer.respond(image_id, fields, {})


@router.get(
    "/{image_id}/histogram",
    response_model=HistogramPublic,
    summary="Per-channel histograms and 1/99 percentile windows",
    responses={304: {"description": "Not modified"}, **problems(401, 404, 409, 410, 422, 500, 503)},
)
async def histogram(
    image_id: str,
    request: Request,
    response: Response,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    settings: SettingsDep,
    scene: Annotated[Index, Query(description="Scene index")] = 0,
    t: Annotated[Index, Query(description="Timepoint")] = 0,
    z: Annotated[Index | None, Query(description="Z plane; omitted: a sample of the stack")] = None,
) -> Any:
    """What the viewer's auto-contrast and window sliders need."""
    image: Image = await database.run(require_image, image_id)
    if image.stored_in_place:
        # Before any ETag answer: a changed original must never get old figures (409/410).
        await anyio.to_thread.run_sync(in_place_original, image)
    params = RenderParams(scene=scene, t=t)
    _check(image, params, z=z)
    key_source = json.dumps({"h": 1, "id": image.sha256, "scene": scene, "t": t, "z": z})
    etag = hashlib.sha256(key_source.encode()).hexdigest()[:32]
    headers = _etag_headers(etag, settings)
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    path = None
    try:
        path = await anyio.to_thread.run_sync(readable_source, image, storage)
        channels = await pool.shared(
            f"histogram:{etag}",
            image.sha256,
            _histogram_job,
            path,
            scene,
            t,
            z,
            settings.limits.read_limits(),
            is_disconnected=request.is_disconnected,
        )
    except ZstackError as exc:
        # As the picture routes do: the message names the user's file, never our storage name.
        name_image_in_message(exc, image, path)
        raise
    except OSError as exc:
        raise await missing_file_error(database, image_id, exc) from exc
    response.headers.update(headers)
    return HistogramPublic.model_validate({"channels": channels})
