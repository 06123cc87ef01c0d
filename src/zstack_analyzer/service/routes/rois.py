"""ROIs of an image and their measurements: ``/api/images/{image_id}/rois...``.

Thin: the body is validated here (types, finiteness, counts), then the
library checks the shapes against the image's sizes
(``zstack_analyzer.roi.shapes``), ``service/annotations/rois.py`` stores them
and the stats are measured in a worker thread under the decode budget. The
guard (service/auth/guard.py) has already checked that the caller may see the
image, and for the writing routes (marked :func:`annotates`) that they may
annotate it; deleting an ROI is checked here (its author, or who may change it).
"""

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, File, HTTPException, Path, Query, Request, Response, UploadFile

from zstack_analyzer.errors import InvalidRoiError, ZstackError
from zstack_analyzer.roi.shapes import parse_shapes
from zstack_analyzer.service.annotations import rois as service
from zstack_analyzer.service.annotations.roi_schemas import (
    PlaneIndex,
    RoiCreate,
    RoiCreated,
    RoiPublic,
    RoisDeleted,
    RoisImported,
    RoisPublic,
    RoiStatsPublic,
)
from zstack_analyzer.service.auth.guard import annotates
from zstack_analyzer.service.auth.principal import PrincipalDep
from zstack_analyzer.service.deps import DatabaseDep, PoolDep, SettingsDep, StorageDep
from zstack_analyzer.service.images_service import (
    missing_file_error,
    readable_source,
    require_image,
)
from zstack_analyzer.service.routes import INDEX_MAX, problems
from zstack_analyzer.service.routes.images import name_image_in_message

__all__ = ["router"]

router = APIRouter(prefix="/api/images", tags=["rois"])

#: Largest ROI file accepted by the import (bytes).
MAX_IMPORT_BYTES = 16 * 1024 * 1024
#: Most ROIs measured for one stats CSV of an image.
MAX_CSV_ROIS = 1_000

RoiId = Annotated[int, Path(ge=1, le=INDEX_MAX, description="The ROI's id")]


def _public(session: Any, roi: Any) -> RoiPublic:
    owner = service.owner_names(session, [roi]).get(roi.owner_id) if roi.owner_id else None
    return RoiPublic.model_validate(service.roi_public(roi, owner))


def _create(session: Any, image_id: str, principal: Any, body: RoiCreate) -> RoiPublic:
    image = require_image(session, image_id)
    sizes = service.sizes_of(image, body.scene)
    raw = [s.model_dump(exclude_none=False) for s in body.shapes]
    shapes = parse_shapes(raw, sizes)
    roi = service.create_roi(
        session, image, principal, name=body.name, scene=body.scene, shapes=shapes
    )
    return _public(session, roi)


@router.post(
    "/{image_id}/rois",
    status_code=201,
    response_model=RoiCreated,
    summary="Create an ROI of one or more shapes",
    responses=problems(401, 403, 404, 422),
)
@annotates
async def create_roi(
    image_id: str, body: RoiCreate, database: DatabaseDep, principal: PrincipalDep
) -> RoiPublic:
    """Checks each shape against the image (finite coordinates, z/t/c in range, on the plane)."""
    return await database.run(_create, image_id, principal, body)


def _list(session: Any, image_id: str) -> RoisPublic:
    image = require_image(session, image_id)
    rois = service.list_rois(session, image)
    names = service.owner_names(session, rois)
    data = [
        RoiPublic.model_validate(
            service.roi_public(r, names.get(r.owner_id) if r.owner_id is not None else None)
        )
        for r in rois
    ]
    return RoisPublic(data=data, count=len(data))


@router.get(
    "/{image_id}/rois",
    response_model=RoisPublic,
    summary="Every ROI of an image",
    responses=problems(401, 404, 422),
)
async def list_rois(image_id: str, database: DatabaseDep) -> RoisPublic:
    """Oldest first, with their shapes."""
    return await database.run(_list, image_id)


def _delete_all(session: Any, image_id: str, principal: Any) -> RoisDeleted:
    image = require_image(session, image_id)
    deleted, kept = service.delete_rois(session, principal, image)
    return RoisDeleted(deleted=deleted, kept=kept)


@router.delete(
    "/{image_id}/rois",
    response_model=RoisDeleted,
    summary="Delete the image's ROIs that the caller may delete",
    responses=problems(401, 403, 404, 422),
)
@annotates
async def delete_rois(image_id: str, database: DatabaseDep, principal: PrincipalDep) -> RoisDeleted:
    """One's own ROIs, and others' where one may change them; the rest stay (counted in ``kept``)."""
    return await database.run(_delete_all, image_id, principal)


def _get(session: Any, image_id: str, roi_id: int) -> RoiPublic:
    image = require_image(session, image_id)
    return _public(session, service.get_roi(session, image, roi_id))


@router.get(
    "/{image_id}/rois/{roi_id}",
    response_model=RoiPublic,
    summary="One ROI",
    responses=problems(401, 404, 422),
)
async def get_roi(image_id: str, roi_id: RoiId, database: DatabaseDep) -> RoiPublic:
    """404 (``roi_not_found``) when the image has no such ROI."""
    return await database.run(_get, image_id, roi_id)


def _replace(
    session: Any, image_id: str, roi_id: int, principal: Any, body: RoiCreate
) -> RoiPublic | None:
    image = require_image(session, image_id)
    roi = service.get_roi(session, image, roi_id)
    if not service.may_delete(principal, image, roi):
        return None
    if body.scene != roi.scene:
        msg = f"an ROI stays on its scene ({roi.scene}); create a new one for scene {body.scene}"
        raise InvalidRoiError(msg)
    shapes = parse_shapes([s.model_dump() for s in body.shapes], service.sizes_of(image, roi.scene))
    return _public(session, service.replace_roi(session, roi, name=body.name, shapes=shapes))


@router.put(
    "/{image_id}/rois/{roi_id}",
    response_model=RoiPublic,
    summary="Replace an ROI's name and shapes (an edit)",
    responses=problems(401, 403, 404, 422),
)
@annotates
async def replace_roi(
    image_id: str, roi_id: RoiId, body: RoiCreate, database: DatabaseDep, principal: PrincipalDep
) -> RoiPublic:
    """The same body as a new ROI; who may delete the ROI may change it. Id and author stay."""
    replaced = await database.run(_replace, image_id, roi_id, principal, body)
    if replaced is None:
        raise HTTPException(403, f"you may not change ROI {roi_id}: it is someone else's")
    return replaced


def _delete_one(session: Any, image_id: str, roi_id: int, principal: Any) -> bool:
    image = require_image(session, image_id)
    roi = service.get_roi(session, image, roi_id)
    if not service.may_delete(principal, image, roi):
        return False
    service.delete_roi(session, roi)
    return True


@router.delete(
    "/{image_id}/rois/{roi_id}",
    status_code=204,
    summary="Delete one ROI",
    responses=problems(401, 403, 404, 422),
)
@annotates
async def delete_roi(
    image_id: str, roi_id: RoiId, database: DatabaseDep, principal: PrincipalDep
) -> Response:
    """Its author, a group owner, a read-write member, the image's owner or an admin."""
    if not await database.run(_delete_one, image_id, roi_id, principal):
        raise HTTPException(403, f"you may not delete ROI {roi_id}: it is someone else's")
    return Response(status_code=204)


def _stats_input(session: Any, image_id: str, roi_id: int) -> tuple[Any, Any]:
    image = require_image(session, image_id)
    roi = service.get_roi(session, image, roi_id)
    return image, roi


async def _measure(
    image: Any,
    rois: list[Any],
    *,
    all_z: bool,
    request: Request,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    settings: SettingsDep,
) -> list[dict[str, Any]]:
    limits = settings.limits.read_limits()
    path = None
    try:
        path = await anyio.to_thread.run_sync(readable_source, image, storage)
        work = [(roi.scene, service.roi_shapes(roi)) for roi in rois]
        results: list[dict[str, Any]] = await pool.run_while_connected(
            request.is_disconnected, service.roi_stats_job, path, work, all_z, limits
        )
    except ZstackError as exc:
        # As the picture routes do: the message names the user's file, never our storage name.
        name_image_in_message(exc, image, path)
        raise
    except OSError as exc:
        raise await missing_file_error(database, str(image.id), exc) from exc
    return results


ZQuery = Annotated[
    Literal["all"] | None,
    Query(description="all: also measure the ROI's footprint on every Z plane (planes)"),
]


@router.get(
    "/{image_id}/rois/{roi_id}/stats",
    response_model=RoiStatsPublic,
    summary="Per-channel statistics of an ROI at full resolution",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **problems(401, 404, 409, 410, 422, 500, 503),
    },
)
async def roi_stats(
    image_id: str,
    roi_id: RoiId,
    request: Request,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    settings: SettingsDep,
    z: ZQuery = None,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> Any:
    """Pixel count, min, max, mean, sum, std, area (µm², or px² uncalibrated), line length."""
    image, roi = await database.run(_stats_input, image_id, roi_id)
    (stats,) = await _measure(
        image,
        [roi],
        all_z=z == "all",
        request=request,
        database=database,
        storage=storage,
        pool=pool,
        settings=settings,
    )
    if format == "csv":
        return Response(service.stats_csv([(roi.id, roi.name, stats)]), media_type="text/csv")
    return RoiStatsPublic(roi_id=roi.id, image_id=str(image.id), **stats)


def _all_rois(session: Any, image_id: str) -> tuple[Any, list[Any]]:
    image = require_image(session, image_id)
    rois = service.list_rois(session, image)
    if len(rois) > MAX_CSV_ROIS:
        msg = f"{len(rois)} ROIs; a stats table measures at most {MAX_CSV_ROIS} (ask per ROI)"
        raise InvalidRoiError(msg)
    return image, rois


@router.get(
    "/{image_id}/rois.csv",
    summary="Statistics of every ROI of an image, as CSV",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **problems(401, 404, 409, 410, 422, 500, 503),
    },
)
async def rois_csv(
    image_id: str,
    request: Request,
    database: DatabaseDep,
    storage: StorageDep,
    pool: PoolDep,
    settings: SettingsDep,
    z: ZQuery = None,
) -> Response:
    """One line per ROI and channel (and Z plane with ``z=all``)."""
    image, rois = await database.run(_all_rois, image_id)
    results = await _measure(
        image,
        rois,
        all_z=z == "all",
        request=request,
        database=database,
        storage=storage,
        pool=pool,
        settings=settings,
    )
    rows = [(roi.id, roi.name, stats) for roi, stats in zip(rois, results, strict=True)]
    return Response(service.stats_csv(rows), media_type="text/csv")


def _geojson(session: Any, image_id: str) -> dict[str, Any]:
    image = require_image(session, image_id)
    return service.image_rois_geojson(session, image.id)


@router.get(
    "/{image_id}/rois.geojson",
    summary="Every ROI of an image as GeoJSON (QuPath's FeatureCollection)",
    response_class=Response,
    responses={
        200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}},
        **problems(401, 404, 422),
    },
)
async def rois_geojson(image_id: str, database: DatabaseDep) -> Response:
    """Pixel coordinates, y down; each feature's ``properties.shape`` is the exact shape."""
    import json

    collection = await database.run(_geojson, image_id)
    return Response(json.dumps(collection), media_type="application/geo+json")


def _import(session: Any, image_id: str, principal: Any, data: bytes, scene: int) -> RoisImported:
    image = require_image(session, image_id)
    ids = service.import_rois(session, image, principal, data, scene=scene)
    return RoisImported(ids=ids, count=len(ids))


@router.post(
    "/{image_id}/rois/import",
    status_code=201,
    response_model=RoisImported,
    summary="Import ROIs: ImageJ .roi / RoiManager .zip, or QuPath / GeoJSON",
    responses=problems(401, 403, 404, 413, 422),
)
@annotates
async def import_rois(
    image_id: str,
    database: DatabaseDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="A .roi, .zip, .geojson or .json file")],
    scene: Annotated[PlaneIndex, Query(description="Scene the ROIs belong to")] = 0,
) -> RoisImported:
    """The format is told by content (``Iout``, a zip, else JSON), not by the name."""
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        from zstack_analyzer.service.errors import UploadTooLargeError

        msg = f"an ROI file may be at most {MAX_IMPORT_BYTES} bytes"
        raise UploadTooLargeError(msg)
    return await database.run(_import, image_id, principal, data, scene)
