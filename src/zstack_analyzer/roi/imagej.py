"""ImageJ ``.roi`` files and ``.zip`` ROI sets (RoiManager), through ``roifile``.

Import maps ImageJ's kinds onto the OME ones: rectangle to rectangle, oval to
ellipse (its bounding box), polygon, freehand and traced to polygon,
polyline, freeline and angle to polyline, line to line, a (multi-)point to
one point shape per point, a composite (shape) ROI to one polygon per closed
path. Rectangles and ovals keep their sub-pixel bounds when the file has
them. The plane comes from the ROI's C/Z/T positions (1-based, 0 = unset),
or from its single stack position (ImageJ's C-fastest, then Z, then T order).

Export writes the same kinds back (a rectangle or ellipse with sub-pixel
bounds, polygons and polylines with float coordinates), so shapes whose
coordinates are float32-exact survive a round trip unchanged.

Why the caps on a zip: it arrives over HTTP; members and their declared
sizes are checked before anything is inflated.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.errors import InvalidRoiError, MissingDependencyError
from zstack_analyzer.roi.shapes import MAX_SHAPES, PlaneSizes, Shape, parse_shape

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MAX_MEMBERS", "MAX_MEMBER_BYTES", "imagej_zip", "rois_from_imagej", "to_imagej"]

#: Most members of a zip ROI set.
MAX_MEMBERS = 10_000
#: Largest member of a zip ROI set (bytes, as declared and as read).
MAX_MEMBER_BYTES = 4 * 1024 * 1024
#: Most bytes inflated from one zip in all.
MAX_ZIP_BYTES = 64 * 1024 * 1024


def _roifile() -> Any:
    try:
        import roifile
    except ImportError as exc:  # pragma: no cover - the roi extra is part of `all`
        msg = "reading ImageJ ROIs needs roifile"
        raise MissingDependencyError(msg, package="roifile") from exc
    return roifile


def _members(data: bytes) -> list[bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        msg = f"not a readable zip of ImageJ ROIs: {exc}"
        raise InvalidRoiError(msg) from exc
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            msg = f"{len(infos)} files in the zip; at most {MAX_MEMBERS} are accepted"
            raise InvalidRoiError(msg)
        total = 0
        out: list[bytes] = []
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES:
                msg = f"{info.filename[:100]}: {info.file_size} bytes; at most {MAX_MEMBER_BYTES}"
                raise InvalidRoiError(msg)
            try:
                with archive.open(info) as fh:
                    member = fh.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                msg = f"{info.filename[:100]}: unreadable zip member: {exc}"
                raise InvalidRoiError(msg) from exc
            total += len(member)
            if len(member) > MAX_MEMBER_BYTES or total > MAX_ZIP_BYTES:
                msg = "the zip inflates to more than its members declare, or over the cap"
                raise InvalidRoiError(msg)
            out.append(member)
    return out


def _plane(roi: Any, sizes: PlaneSizes) -> dict[str, int | None]:
    c, z, t = roi.c_position, roi.z_position, roi.t_position
    if not (c or z or t) and roi.position > 0:
        index = roi.position - 1
        c = index % sizes.size_c + 1 if sizes.size_c > 1 else 0
        index //= max(1, sizes.size_c)
        z = index % sizes.size_z + 1
        t = index // sizes.size_z + 1
    return {
        "c": c - 1 if c > 0 else None,
        "z": z - 1 if z > 0 else 0,
        "t": t - 1 if t > 0 else 0,
    }


def _bounds(roi: Any) -> tuple[float, float, float, float]:
    """x, y, width, height of a rectangle or oval (sub-pixel when stored so)."""
    if roi.subpixelrect:
        return float(roi.xd), float(roi.yd), float(roi.widthd), float(roi.heightd)
    return (
        float(roi.left),
        float(roi.top),
        float(roi.right - roi.left),
        float(roi.bottom - roi.top),
    )


def _points(coords: Any) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in np.asarray(coords, dtype=np.float64)]


def _raw_shapes(roi: Any, rf: Any) -> list[dict[str, Any]]:
    kind = rf.ROI_TYPE
    if roi.roitype == kind.RECT and not roi.composite:
        x, y, w, h = _bounds(roi)
        return [{"type": "rectangle", "x": x, "y": y, "width": w, "height": h}]
    if roi.roitype == kind.OVAL and not roi.composite:
        x, y, w, h = _bounds(roi)
        return [
            {
                "type": "ellipse",
                "x": x + w / 2,
                "y": y + h / 2,
                "radius_x": w / 2,
                "radius_y": h / 2,
            }
        ]
    if roi.roitype == kind.LINE:
        return [{"type": "line", "x1": roi.x1, "y1": roi.y1, "x2": roi.x2, "y2": roi.y2}]
    if roi.composite:
        return [{"type": "polygon", "points": _points(p)} for p in roi.coordinates(multi=True)]
    if roi.roitype in (kind.POLYGON, kind.FREEHAND, kind.TRACED):
        return [{"type": "polygon", "points": _points(roi.coordinates())}]
    if roi.roitype in (kind.POLYLINE, kind.FREELINE, kind.ANGLE):
        return [{"type": "polyline", "points": _points(roi.coordinates())}]
    if roi.roitype == kind.POINT:
        return [{"type": "point", "x": x, "y": y} for x, y in _points(roi.coordinates())]
    msg = f"ImageJ ROI type {roi.roitype!r} is not supported"
    raise InvalidRoiError(msg)


def rois_from_imagej(data: bytes, sizes: PlaneSizes) -> list[tuple[str | None, list[Shape]]]:
    """``(name, shapes)`` of each ROI in an ImageJ ``.roi`` file or ``.zip`` set.

    Raises
    ------
    InvalidRoiError
        Neither a ``.roi`` nor a zip of them, an unsupported ROI kind, over the
        caps, or a shape that :func:`~zstack_analyzer.roi.shapes.parse_shape` refuses.
    """
    rf = _roifile()
    blobs = _members(data) if data[:2] == b"PK" else [data]
    result: list[tuple[str | None, list[Shape]]] = []
    for number, blob in enumerate(blobs):
        where = f"ImageJ ROI {number}"
        try:
            roi = rf.ImagejRoi.frombytes(blob)
            raw = _raw_shapes(roi, rf)
        except InvalidRoiError:
            raise
        except Exception as exc:  # roifile raises ValueError, struct.error, IndexError...
            msg = f"{where}: not a readable ImageJ ROI ({type(exc).__name__}: {exc})"
            raise InvalidRoiError(msg) from exc
        if len(raw) > MAX_SHAPES:
            msg = f"{where}: {len(raw)} shapes; at most {MAX_SHAPES} are accepted"
            raise InvalidRoiError(msg)
        colour = roi.hexcolor(roi.stroke_color)
        extra = {"colour": colour, **_plane(roi, sizes)}
        shapes = [parse_shape({**item, **extra}, sizes, where=where) for item in raw]
        result.append((roi.name or None, shapes))
    return result


def _colour_bytes(colour: str | None) -> bytes | None:
    if not colour:
        return None
    return bytes([255, int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)])


def to_imagej(shape: Shape, name: str | None = None) -> Any:
    """One shape as a ``roifile.ImagejRoi`` (write it with ``tobytes()``)."""
    rf = _roifile()
    g = shape.geometry
    if shape.type in ("rectangle", "ellipse"):
        if shape.type == "rectangle":
            x, y, w, h = g["x"], g["y"], g["width"], g["height"]
        else:
            x, y = g["x"] - g["radius_x"], g["y"] - g["radius_y"]
            w, h = 2 * g["radius_x"], 2 * g["radius_y"]
        roi = rf.ImagejRoi()
        roi.roitype = rf.ROI_TYPE.RECT if shape.type == "rectangle" else rf.ROI_TYPE.OVAL
        roi.options = rf.ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        roi.left, roi.top = math.floor(x), math.floor(y)
        roi.right, roi.bottom = math.ceil(x + w), math.ceil(y + h)
        roi.xd, roi.yd, roi.widthd, roi.heightd = x, y, w, h
    elif shape.type == "line":
        roi = rf.ImagejRoi()
        roi.roitype = rf.ROI_TYPE.LINE
        roi.options = rf.ROI_OPTIONS.SUB_PIXEL_RESOLUTION
        roi.x1, roi.y1, roi.x2, roi.y2 = g["x1"], g["y1"], g["x2"], g["y2"]
        roi.left, roi.top = math.floor(min(g["x1"], g["x2"])), math.floor(min(g["y1"], g["y2"]))
        roi.right = math.ceil(max(g["x1"], g["x2"]))
        roi.bottom = math.ceil(max(g["y1"], g["y2"]))
    else:
        points = np.asarray(shape.vertices(), dtype=np.float64)
        roi = rf.ImagejRoi.frompoints(points)
        roi.roitype = {
            "polygon": rf.ROI_TYPE.POLYGON,
            "polyline": rf.ROI_TYPE.POLYLINE,
            "point": rf.ROI_TYPE.POINT,
        }[shape.type]
    roi.name = name or shape.name or ""
    roi.c_position = shape.c + 1 if shape.c is not None else 0
    roi.z_position = shape.z + 1
    roi.t_position = shape.t + 1
    colour = _colour_bytes(shape.colour)
    if colour is not None:
        roi.stroke_color = colour
    return roi


def imagej_zip(shapes: Sequence[tuple[str | None, Shape]]) -> bytes:
    """A RoiManager zip of ``(name, shape)`` pairs, one ``.roi`` member each."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, (name, shape) in enumerate(shapes):
            roi = to_imagej(shape, name)
            label = re.sub(r"[^\w.-]", "_", (name or shape.type)[:60])
            archive.writestr(f"{number:04d}-{label}.roi", roi.tobytes())
    return buffer.getvalue()
