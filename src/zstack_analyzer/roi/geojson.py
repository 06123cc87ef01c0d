"""ROIs to and from GeoJSON, as QuPath writes and reads it (pixel coordinates, y down).

Export: one Feature per shape. Rectangles and ellipses become Polygons (an
ellipse as :data:`ELLIPSE_VERTICES` points on its outline), lines and
polylines LineStrings, points Points; ``properties`` carry the ROI's id and
name, the shape's name, colour (``color`` as QuPath's ``[r, g, b]``), plane
(``plane``: z, t, c) and the exact shape (``shape``), so our own export
imports back unchanged.

Import: a FeatureCollection, a Feature, a list of Features or a bare
geometry. A feature with a valid ``properties.shape`` is taken as it is;
otherwise its geometry: Polygon (outer ring; holes are not part of the OME
model and are dropped) and MultiPolygon to polygons, LineString to a line
(two points) or a polyline, Point and MultiPoint to points. Features that
carry the same ``roi_id`` form one ROI; any other feature is an ROI of its own.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import InvalidRoiError
from zstack_analyzer.roi.shapes import MAX_SHAPES, PlaneSizes, Shape, parse_shape

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["ELLIPSE_VERTICES", "MAX_FEATURES", "feature_collection", "rois_from_geojson"]

#: Points on the outline of an exported ellipse.
ELLIPSE_VERTICES = 64
#: Most features one import reads.
MAX_FEATURES = 10_000


def _hex_rgb(colour: str | None) -> list[int] | None:
    if not colour:
        return None
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)]


def _geometry(shape: Shape) -> dict[str, Any]:
    g = shape.geometry
    if shape.type == "point":
        return {"type": "Point", "coordinates": [g["x"], g["y"]]}
    if shape.type in ("line", "polyline"):
        return {"type": "LineString", "coordinates": [list(p) for p in shape.vertices()]}
    if shape.type == "ellipse":
        ring = [
            [
                g["x"] + g["radius_x"] * math.cos(2 * math.pi * i / ELLIPSE_VERTICES),
                g["y"] + g["radius_y"] * math.sin(2 * math.pi * i / ELLIPSE_VERTICES),
            ]
            for i in range(ELLIPSE_VERTICES)
        ]
    else:
        ring = [list(p) for p in shape.vertices()]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def feature_collection(
    rois: Iterable[tuple[int | None, str | None, Sequence[Shape]]],
) -> dict[str, Any]:
    """A FeatureCollection of ``(roi_id, roi_name, shapes)``, one Feature per shape."""
    features: list[dict[str, Any]] = []
    for roi_id, roi_name, shapes in rois:
        for shape in shapes:
            properties: dict[str, Any] = {
                "objectType": "annotation",
                "roi_id": roi_id,
                "roi_name": roi_name,
                "name": shape.name if shape.name is not None else roi_name,
                "plane": {"z": shape.z, "t": shape.t, "c": shape.c},
                "shape": shape.to_dict(),
            }
            rgb = _hex_rgb(shape.colour)
            if rgb is not None:
                properties["color"] = rgb
            features.append(
                {"type": "Feature", "geometry": _geometry(shape), "properties": properties}
            )
    return {"type": "FeatureCollection", "features": features}


def _features(data: Any) -> list[dict[str, Any]]:
    items: Any
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        items = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        items = [data]
    elif isinstance(data, dict) and "coordinates" in data:
        items = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        msg = "not GeoJSON: expected a FeatureCollection, a Feature or a geometry"
        raise InvalidRoiError(msg)
    if not isinstance(items, list):
        msg = "GeoJSON 'features' must be a list"
        raise InvalidRoiError(msg)
    if len(items) > MAX_FEATURES:
        msg = f"{len(items)} features; at most {MAX_FEATURES} are accepted"
        raise InvalidRoiError(msg)
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            msg = f"feature {number}: must be a JSON object"
            raise InvalidRoiError(msg)
    return items


def _plane(feature: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    plane = properties.get("plane", feature.get("plane"))
    if not isinstance(plane, dict):
        return {}
    fields = {key: plane.get(key) for key in ("z", "t", "c")}
    if isinstance(fields["c"], int) and fields["c"] < 0:  # QuPath: c = -1 means every channel
        fields["c"] = None
    return fields


def _colour(properties: dict[str, Any]) -> str | None:
    rgb = properties.get("color")
    classification = properties.get("classification")
    if rgb is None and isinstance(classification, dict):
        rgb = classification.get("color")
    if (
        isinstance(rgb, list)
        and len(rgb) == 3
        and all(isinstance(v, int) and 0 <= v <= 255 for v in rgb)
    ):
        return "#{:02x}{:02x}{:02x}".format(*rgb)
    return None


def _shapes_of_geometry(geometry: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(geometry, dict):
        msg = f"{where}: 'geometry' must be a GeoJSON geometry"
        raise InvalidRoiError(msg)
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list):
        msg = f"{where}: 'coordinates' must be a list"
        raise InvalidRoiError(msg)

    def ring(points: Any) -> dict[str, Any]:
        if not isinstance(points, list) or not points:
            msg = f"{where}: a polygon needs a ring of points"
            raise InvalidRoiError(msg)
        outer = points[:-1] if len(points) > 1 and points[0] == points[-1] else points
        return {"type": "polygon", "points": outer}

    if kind == "Polygon":
        return [ring(coords[0] if coords else None)]
    if kind == "MultiPolygon":
        return [ring(part[0] if isinstance(part, list) and part else None) for part in coords]
    if kind == "LineString":
        if len(coords) == 2 and all(isinstance(p, list) and len(p) == 2 for p in coords):
            (x1, y1), (x2, y2) = coords
            return [{"type": "line", "x1": x1, "y1": y1, "x2": x2, "y2": y2}]
        return [{"type": "polyline", "points": coords}]
    if kind == "Point":
        return [_point(coords, where)]
    if kind == "MultiPoint":
        return [_point(p, where) for p in coords]
    msg = f"{where}: geometry type {kind!r} is not supported"
    raise InvalidRoiError(msg)


def _point(coords: Any, where: str) -> dict[str, Any]:
    if not isinstance(coords, list) or len(coords) < 2:
        msg = f"{where}: a point needs [x, y]"
        raise InvalidRoiError(msg)
    return {"type": "point", "x": coords[0], "y": coords[1]}


def rois_from_geojson(data: Any, sizes: PlaneSizes) -> list[tuple[str | None, list[Shape]]]:
    """``(name, shapes)`` of each ROI in a GeoJSON document, checked against ``sizes``.

    Raises
    ------
    InvalidRoiError
        Not GeoJSON, an unsupported geometry, too many features or shapes, or a
        shape that :func:`~zstack_analyzer.roi.shapes.parse_shape` refuses.
    """
    grouped: dict[Any, tuple[str | None, list[Shape]]] = {}
    for number, feature in enumerate(_features(data)):
        where = f"feature {number}"
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            msg = f"{where}: 'properties' must be an object"
            raise InvalidRoiError(msg)
        exact = properties.get("shape")
        if isinstance(exact, dict) and exact.get("type"):
            raw = [exact]
        else:
            extra = {
                "name": properties.get("name") if isinstance(properties.get("name"), str) else None,
                "colour": _colour(properties),
                **_plane(feature, properties),
            }
            raw = [{**s, **extra} for s in _shapes_of_geometry(feature.get("geometry"), where)]
        shapes = [parse_shape(item, sizes, where=where) for item in raw]
        roi_id = properties.get("roi_id")
        key = (
            ("roi", roi_id)
            if isinstance(roi_id, int | str) and roi_id != ""
            else ("feature", number)
        )
        name = properties.get("roi_name") if key[0] == "roi" else properties.get("name")
        entry = grouped.setdefault(key, (name if isinstance(name, str) else None, []))
        entry[1].extend(shapes)
        if len(entry[1]) > MAX_SHAPES:
            msg = f"{where}: more than {MAX_SHAPES} shapes in one ROI"
            raise InvalidRoiError(msg)
    return list(grouped.values())
