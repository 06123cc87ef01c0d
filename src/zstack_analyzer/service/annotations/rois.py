"""ROIs of an image in the database: create, list, read, delete, export; the stats job.

Who may do what (service/auth/permissions.py, the one table):

- read an image's ROIs and their stats: whoever may view the image (the
  guard has checked it before any of this runs);
- create one: whoever may annotate the image (the route declares itself an
  annotation, so the guard lets read-annotate members through);
- change (replace its shapes) or delete one: its author, or whoever may change it as a record of the image's
  group (group owner, read-write member, admin), or whoever may change the image.

An ROI's owner is its author (``None`` without accounts) and its group the
image's, as for every annotation. The geometry and statistics themselves are
library code (``zstack_analyzer.roi``); this module only stores and fetches.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from zstack_analyzer.errors import InvalidRoiError
from zstack_analyzer.roi.geojson import feature_collection
from zstack_analyzer.roi.shapes import PlaneSizes, Shape
from zstack_analyzer.service.annotations.roi_models import Roi, RoiShape
from zstack_analyzer.service.auth.permissions import Action, allows, can_change
from zstack_analyzer.service.errors import RoiNotFoundError
from zstack_analyzer.service.images_service import parse_image_id, scene_sizes

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from pathlib import Path

    from sqlalchemy.orm import Session

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.service.auth.permissions import Principal
    from zstack_analyzer.service.db.models import Image
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = [
    "MAX_ROIS_PER_IMAGE",
    "create_roi",
    "delete_roi",
    "delete_rois",
    "get_roi",
    "image_rois_geojson",
    "import_rois",
    "list_rois",
    "may_delete",
    "owner_names",
    "parse_roi_file",
    "replace_roi",
    "roi_public",
    "roi_shapes",
    "roi_stats_job",
    "sizes_of",
    "stats_csv",
]

#: Most ROIs one image may hold (an import of a huge RoiManager set stops here).
MAX_ROIS_PER_IMAGE = 100_000


def sizes_of(image: Image, scene: int) -> PlaneSizes:
    """The sizes of ``scene`` of ``image`` that shapes are checked against."""
    sizes = scene_sizes(image, scene)
    if not sizes:
        count = max(1, len(image.scenes or []))
        msg = f"scene {scene} is out of range (0..{count - 1})"
        raise InvalidRoiError(msg)
    return PlaneSizes(
        size_x=int(sizes["size_x"]),
        size_y=int(sizes["size_y"]),
        size_z=int(sizes.get("size_z", 1)),
        size_t=int(sizes.get("size_t", 1)),
        size_c=int(sizes.get("size_c", 1)),
    )


def roi_shapes(roi: Roi) -> list[Shape]:
    """The stored shapes of ``roi`` as library shapes (in order)."""
    return [
        Shape(
            type=row.type,
            geometry=row.geometry,
            z=row.z,
            t=row.t,
            c=row.c,
            name=row.name,
            colour=row.colour,
        )
        for row in roi.shapes
    ]


def owner_names(session: Session, rois: Sequence[Roi]) -> dict[int, str]:
    """``user id -> username`` of the authors of ``rois`` (one query)."""
    from zstack_analyzer.service.auth.models import User

    ids = {r.owner_id for r in rois if r.owner_id is not None}
    if not ids:
        return {}
    query = select(User.id, User.username).where(User.id.in_(ids))
    return {user_id: name for user_id, name in session.execute(query)}  # noqa: C416


def roi_public(roi: Roi, owner: str | None = None) -> dict[str, Any]:
    """The JSON of one ROI (``id``, ``image_id``, ``scene``, ``name``, owner, group, ``created``, ``shapes``)."""
    return {
        "id": roi.id,
        "image_id": str(roi.image_id),
        "scene": roi.scene,
        "name": roi.name,
        "owner_id": roi.owner_id,
        "owner": owner,
        "group_id": roi.group_id,
        "created": _aware(roi.created_at).isoformat(),
        "shapes": [s.to_dict() for s in roi_shapes(roi)],
    }


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def create_roi(
    session: Session,
    image: Image,
    principal: Principal,
    *,
    name: str | None,
    scene: int,
    shapes: Sequence[Shape],
    commit: bool = True,
) -> Roi:
    """Store one ROI of checked shapes, owned by the caller, in the image's group."""
    count = session.scalar(select(func.count()).select_from(Roi).where(Roi.image_id == image.id))
    count = int(count or 0)
    if count >= MAX_ROIS_PER_IMAGE:
        msg = f"the image already has {count} ROIs; at most {MAX_ROIS_PER_IMAGE} are kept"
        raise InvalidRoiError(msg)
    roi = Roi(
        image_id=image.id,
        scene=scene,
        name=name,
        owner_id=principal.user_id,
        group_id=image.group_id,
        shapes=_shape_rows(shapes),
    )
    session.add(roi)
    if commit:
        session.commit()
    return roi


def parse_roi_file(data: bytes, sizes: PlaneSizes) -> list[tuple[str | None, list[Shape]]]:
    """The ROIs of an ImageJ ``.roi``/``.zip`` or a GeoJSON file, told apart by content."""
    if data[:4] == b"Iout" or data[:2] == b"PK":
        from zstack_analyzer.roi.imagej import rois_from_imagej

        parsed = rois_from_imagej(data, sizes)
    else:
        import json

        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            msg = "neither an ImageJ ROI (.roi, .zip) nor GeoJSON"
            raise InvalidRoiError(msg) from exc
        from zstack_analyzer.roi.geojson import rois_from_geojson

        parsed = rois_from_geojson(document, sizes)
    if not parsed:
        msg = "the file holds no ROIs"
        raise InvalidRoiError(msg)
    if len(parsed) > MAX_ROIS_PER_IMAGE:
        msg = f"{len(parsed)} ROIs in the file; at most {MAX_ROIS_PER_IMAGE} are kept"
        raise InvalidRoiError(msg)
    return parsed


def import_rois(
    session: Session, image: Image, principal: Principal, data: bytes, *, scene: int = 0
) -> list[int]:
    """Store every ROI of an ImageJ or GeoJSON file on ``image`` (all or none); their ids."""
    parsed = parse_roi_file(data, sizes_of(image, scene))
    rois = [
        create_roi(session, image, principal, name=name, scene=scene, shapes=shapes, commit=False)
        for name, shapes in parsed
    ]
    session.commit()
    return [roi.id for roi in rois]


def _geometry_json(shape: Shape) -> dict[str, Any]:
    return {
        key: ([list(p) for p in value] if key == "points" else value)
        for key, value in shape.geometry.items()
    }


def list_rois(session: Session, image: Image) -> list[Roi]:
    """Every ROI of ``image``, oldest first (the caller may see them all: it sees the image)."""
    query = select(Roi).where(Roi.image_id == image.id).order_by(Roi.id)
    return list(session.scalars(query))


def get_roi(session: Session, image: Image, roi_id: int) -> Roi:
    """ROI ``roi_id`` of ``image``, or :class:`RoiNotFoundError` (404)."""
    roi = session.get(Roi, roi_id)
    if roi is None or roi.image_id != image.id:
        msg = f"no ROI {roi_id} on image {image.id}"
        raise RoiNotFoundError(msg)
    return roi


def may_delete(principal: Principal, image: Image, roi: Roi) -> bool:
    """Its author, whoever may change records of its group, or whoever may change the image."""
    return allows(principal, roi, Action.CHANGE) or can_change(principal, image)


def replace_roi(session: Session, roi: Roi, *, name: str | None, shapes: Sequence[Shape]) -> Roi:
    """Give ``roi`` a new name and shapes (an edit in the viewer); id, author and group stay."""
    roi.name = name
    roi.shapes = _shape_rows(shapes)
    session.commit()
    return roi


def _shape_rows(shapes: Sequence[Shape]) -> list[RoiShape]:
    return [
        RoiShape(
            position=i,
            type=s.type,
            z=s.z,
            t=s.t,
            c=s.c,
            name=s.name,
            colour=s.colour,
            geometry=_geometry_json(s),
        )
        for i, s in enumerate(shapes)
    ]


def delete_roi(session: Session, roi: Roi) -> None:
    """Delete ``roi`` and its shapes."""
    session.delete(roi)
    session.commit()


def delete_rois(session: Session, principal: Principal, image: Image) -> tuple[int, int]:
    """Delete every ROI of ``image`` the caller may delete: ``(deleted, kept)``."""
    deleted = kept = 0
    for roi in list_rois(session, image):
        if may_delete(principal, image, roi):
            session.delete(roi)
            deleted += 1
        else:
            kept += 1
    session.commit()
    return deleted, kept


def image_rois_geojson(session: Session, image_id: uuid.UUID | str) -> dict[str, Any]:
    """Every ROI of an image as a GeoJSON FeatureCollection (QuPath's shape of it).

    The dataset export calls this for each image it writes; the caller has
    already decided that the image may be seen.
    """
    key = parse_image_id(image_id) if isinstance(image_id, str) else image_id
    rows = session.scalars(select(Roi).where(Roi.image_id == key).order_by(Roi.id))
    collection = feature_collection((roi.id, roi.name, roi_shapes(roi)) for roi in rows)
    collection["image_id"] = str(key)
    return collection


def roi_stats_job(
    path: Path | RemoteObject,
    rois: Sequence[tuple[int, Sequence[Shape]]],
    all_z: bool,
    limits: ReadLimits,
) -> list[dict[str, Any]]:
    """The statistics of each ``(scene, shapes)`` (:func:`zstack_analyzer.roi.measure_roi`).

    Runs in a worker thread; the file is opened once for all of them.
    """
    from zstack_analyzer.loader import open_image
    from zstack_analyzer.roi.stats import measure_roi

    with open_image(path, limits=limits) as reader:
        return [measure_roi(reader, shapes, scene=scene, all_z=all_z) for scene, shapes in rois]


#: Columns of the stats CSV, in order.
CSV_COLUMNS = (
    "roi_id",
    "roi_name",
    "z",
    "channel",
    "channel_name",
    "sample",
    "pixel_count",
    "min",
    "max",
    "mean",
    "sum",
    "std",
    "area",
    "area_unit",
    "area_um2",
    "length",
    "length_unit",
    "length_um",
    "nan_count",
)


def stats_csv(rows: Sequence[tuple[int, str | None, dict[str, Any]]]) -> str:
    """CSV of ``(roi_id, roi_name, stats)``: one line per ROI and channel (and plane with ``planes``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for roi_id, roi_name, stats in rows:
        planes = stats.get("planes") or [{"z": None, "channels": stats["channels"]}]
        for plane in planes:
            for entry in plane["channels"]:
                values = {
                    **entry,
                    "roi_id": roi_id,
                    "roi_name": _safe_cell(roi_name),
                    "z": plane["z"] if plane["z"] is not None else "",
                    "channel_name": _safe_cell(entry.get("name")),
                }
                writer.writerow(
                    ["" if values.get(c) is None else values.get(c) for c in CSV_COLUMNS]
                )
    return buffer.getvalue()


def _safe_cell(value: str | None) -> str | None:
    """A name as a CSV cell a spreadsheet will not run as a formula (``=``, ``+``, ``-``, ``@``)."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value
