"""``/api/images/{id}/zarr/...``: every stored image as a virtual OME-Zarr (NGFF 0.4).

Why here and not a conversion: napari, vizarr and zarr itself open the URL and
read only the chunks they show; the chunks are made from the original file
on request (:mod:`zstack_analyzer.zarr.virtual`), lower levels once, into the
render cache.

``/zarr/`` is scene 0, ``/zarr/{scene}/`` any scene. ``/api/images/{id}.ome.zarr/``
is the same store as a bioformats2raw collection (every scene, listed in
``OME/METADATA.ome.xml``), under a path that ends in ``.zarr`` because
napari-ome-zarr takes no other. A key the store lacks is
a 404 (zarr clients probe for optional keys), with code ``no_such_key`` so it
is told apart from an unknown image (``image_not_found``). Auth, ETags and
CORS are those of the rest of the API.
"""

import hashlib
import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request, Response

from zstack_analyzer.errors import ZstackError
from zstack_analyzer.service.deps import (
    CacheDep,
    DatabaseDep,
    PoolDep,
    RecordsDep,
    SettingsDep,
    StorageDep,
)
from zstack_analyzer.service.errors import problem_response
from zstack_analyzer.service.images_service import in_place_original, readable_source
from zstack_analyzer.service.routes import IMAGE_MEDIA_TYPES, problems
from zstack_analyzer.service.routes.images import etag_matches, name_image_in_message
from zstack_analyzer.service.routes.render import Params, _check
from zstack_analyzer.zarr.virtual import STORE_VERSION

if TYPE_CHECKING:
    from pathlib import Path as FilePath

    from zstack_analyzer.cache import RenderCache
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.storage.remote import RemoteObject
    from zstack_analyzer.zarr.virtual import VirtualOmeZarr

__all__ = ["OpenStores", "router"]

router = APIRouter(prefix="/api/images", tags=["ome-zarr"])

#: Open files kept per server process (a zarr client asks for many keys in a row).
OPEN_STORES = 8
_JSON_NAMES = (".zgroup", ".zattrs", ".zarray", ".zmetadata")
_XML_NAMES = ("METADATA.ome.xml",)


class OpenStores:
    """A small LRU of open virtual stores, keyed by the image's content hash.

    Why: opening an OME-TIFF parses its XML and IFDs; a viewer asks for tens
    of keys per second, each must not reopen the file. Readers are
    thread-safe, so one open store serves concurrent requests.
    """

    def __init__(self, *, size: int = OPEN_STORES) -> None:
        self.size = size
        self._stores: OrderedDict[str, VirtualOmeZarr] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        path: "FilePath | RemoteObject",
        identity: str,
        cache: "RenderCache",
        limits: "ReadLimits",
    ) -> "VirtualOmeZarr":
        """The store of the file at ``path``, or of the object in a bucket (opened on first use)."""
        from zstack_analyzer.loader import open_image
        from zstack_analyzer.zarr.virtual import VirtualOmeZarr

        with self._lock:
            store = self._stores.get(identity)
            if store is not None:
                self._stores.move_to_end(identity)
                return store
        reader = open_image(path, limits=limits)
        store = VirtualOmeZarr(reader, cache=cache, identity=identity)
        with self._lock:
            existing = self._stores.get(identity)
            if existing is not None:
                reader.close()
                return existing
            self._stores[identity] = store
            while len(self._stores) > self.size:
                _, old = self._stores.popitem(last=False)
                old.reader.close()
        return store

    def close(self) -> None:
        """Close every open file."""
        with self._lock:
            for store in self._stores.values():
                store.reader.close()
            self._stores.clear()


def open_stores(request: Request) -> OpenStores:
    """The app's :class:`OpenStores` (made on first use)."""
    state = request.app.state
    stores: OpenStores | None = getattr(state, "zarr_stores", None)
    if stores is None:
        stores = OpenStores()
        state.zarr_stores = stores
    return stores


def _key_bytes(
    stores: OpenStores,
    path: "FilePath | RemoteObject",
    identity: str,
    cache: "RenderCache",
    limits: "ReadLimits",
    key: str,
    name: str | None = None,
    collection: bool = False,
) -> bytes | None:
    store = stores.get(path, identity, cache, limits)
    try:
        return store.get(key, name=name, collection=collection)
    except KeyError:
        return None


_ZARR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "A metadata document (JSON) or a chunk (raw little-endian bytes)",
    },
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    **problems(401, 404, 422, 500, 503),
}


async def _serve(
    request: Request,
    image_id: str,
    key: str,
    *,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    cache: CacheDep,
    settings: SettingsDep,
    records: RecordsDep,
    collection: bool = False,
) -> Response:
    image = await records.require(database, image_id)
    key = key.strip("/")
    view = "b2r:" if collection else ""
    etag = hashlib.sha256(f"{STORE_VERSION}:{image.sha256}:{view}{key}".encode()).hexdigest()[:32]
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": f"private, max-age={settings.render.max_age_seconds}",
    }
    if image.stored_in_place:
        # Before any ETag answer: a changed original must never get old pixels (409/410).
        await anyio.to_thread.run_sync(in_place_original, image)
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    path = await anyio.to_thread.run_sync(readable_source, image, storage)
    try:
        data = await pool.run_while_connected(
            request.is_disconnected,
            _key_bytes,
            open_stores(request),
            path,
            image.sha256,
            cache,
            settings.limits.read_limits(),
            key,
            image.filename,
            collection,
        )
    except ZstackError as exc:
        name_image_in_message(exc, image, path)
        raise
    if data is None:
        return problem_response(
            404, code="no_such_key", detail=f"{image.filename}: the OME-Zarr has no key {key!r}"
        )
    name = key.rsplit("/", 1)[-1]
    media_type = "application/json" if name in _JSON_NAMES else "application/octet-stream"
    if name in _XML_NAMES:
        media_type = "application/xml"
    return Response(content=data, media_type=media_type, headers=headers)


@router.get(
    "/{image_id}/zarr/{key:path}",
    response_class=Response,
    summary="The image as an OME-Zarr (NGFF 0.4, zarr v2): scene 0 at zarr/, scene n at zarr/{n}/",
    responses=_ZARR_RESPONSES,
)
async def zarr_key(
    request: Request,
    image_id: str,
    key: Annotated[
        str, Path(description='A zarr key, e.g. ".zattrs", "0/0/.zarray", "1/0/0/0/0/0/0"')
    ],
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    cache: CacheDep,
    settings: SettingsDep,
    records: RecordsDep,
) -> Response:
    """One key of the virtual OME-Zarr, made from the original file on request."""
    return await _serve(
        request,
        image_id,
        key,
        database=database,
        storage=storage,
        pool=pool,
        cache=cache,
        settings=settings,
        records=records,
    )


_COLLECTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ZARR_RESPONSES,
    200: {
        "content": {
            **_ZARR_RESPONSES[200]["content"],
            "application/xml": {"schema": {"type": "string"}},
        },
        "description": "A metadata document (JSON, or OME-XML for OME/METADATA.ome.xml) or a chunk",
    },
}


@router.get(
    "/{image_id}.ome.zarr/{key:path}",
    response_class=Response,
    summary="The image as a bioformats2raw OME-Zarr collection: every scene, at {id}.ome.zarr/{n}/",
    responses=_COLLECTION_RESPONSES,
)
async def zarr_collection_key(
    request: Request,
    image_id: str,
    key: Annotated[
        str,
        Path(description='A zarr key, e.g. ".zattrs", "OME/METADATA.ome.xml", "1/0/.zarray"'),
    ],
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    cache: CacheDep,
    settings: SettingsDep,
    records: RecordsDep,
) -> Response:
    """One key of the image as a collection (the URL napari-ome-zarr opens: it ends in .zarr)."""
    return await _serve(
        request,
        image_id,
        key,
        database=database,
        storage=storage,
        pool=pool,
        cache=cache,
        settings=settings,
        records=records,
        collection=True,
    )


def _tile_bytes(
    stores: OpenStores,
    path: "FilePath | RemoteObject",
    identity: str,
    cache: "RenderCache",
    limits: "ReadLimits",
    key: str,
    tile: dict[str, Any],
) -> bytes:
    from zstack_analyzer.zarr.tiles import render_tile

    cached = cache.get(identity, key)
    if cached is not None:
        return cached
    store = stores.get(path, identity, cache, limits)
    data = render_tile(store, **tile)
    cache.put(identity, key, data)
    return data


@router.get(
    "/{image_id}/tile/{level}/{row}/{column}",
    response_class=Response,
    summary="Deep-zoom tile: 256 x 256 pixels of pyramid level `level` of plane z",
    responses={
        200: {"content": IMAGE_MEDIA_TYPES, "description": "The tile (PNG unless format= says)"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **problems(401, 404, 422, 500, 503),
    },
)
async def tile(
    request: Request,
    image_id: str,
    level: int,
    row: int,
    column: int,
    params: Params,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    cache: CacheDep,
    settings: SettingsDep,
    records: RecordsDep,
    z: Annotated[int, Query(description="Z plane")] = 0,
) -> Response:
    """One tile of the viewer's deep zoom, from the virtual OME-Zarr's pyramid.

    Level 0 is full resolution; level n is halved n times (rounded up), down to
    <= 512 px. Tiles are 256 px of their level (smaller at the right and bottom edges).
    """
    image = await records.require(database, image_id)
    _check(image, params, z=z)
    fields = {
        "scene": params.scene,
        "level": level,
        "row": row,
        "column": column,
        "t": params.t,
        "z": z,
        "channels": params.channels,
        "colors": params.colors,
        "windows": params.windows,
        "gamma": params.gamma,
        "image_format": params.image_format,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    etag = hashlib.sha256(f"tile-{STORE_VERSION}:{image.sha256}:{canonical}".encode()).hexdigest()[
        :32
    ]
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": f"private, max-age={settings.render.max_age_seconds}",
    }
    if image.stored_in_place:
        # Before any ETag answer: a changed original must never get old pixels (409/410).
        await anyio.to_thread.run_sync(in_place_original, image)
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    path = await anyio.to_thread.run_sync(readable_source, image, storage)
    tile_fields = dict(fields)
    try:
        data = await pool.run_while_connected(
            request.is_disconnected,
            _tile_bytes,
            open_stores(request),
            path,
            image.sha256,
            cache,
            settings.limits.read_limits(),
            f"tile-{etag}",
            tile_fields,
        )
    except ZstackError as exc:
        name_image_in_message(exc, image, path)
        raise
    return Response(content=data, media_type=f"image/{params.image_format}", headers=headers)
