"""ROI shapes as in the OME model, checked on the way in, and which pixels each one covers.

Coordinates are those of the full-resolution plane: the top-left corner of
the image is (0, 0), pixel ``(col, row)`` spans ``[col, col + 1) x [row, row + 1)``
and its centre is ``(col + 0.5, row + 0.5)``.

Which pixels a shape covers (its *footprint*), one rule per kind:

- **rectangle, ellipse, polygon** (area shapes): the pixels whose centre lies
  inside. A rectangle is half-open, ``x <= cx < x + width``; an ellipse is
  closed, ``((cx - x) / rx)^2 + ((cy - y) / ry)^2 <= 1``; a polygon uses the
  even-odd rule with the crossing test of ``pnpoly`` (an edge counts when
  ``(y0 > cy) != (y1 > cy)``, and the centre is inside when an odd number of
  crossings lie strictly to its right), so a polygon that tiles the plane
  with its neighbours gives every pixel to exactly one of them;
- **line, polyline**: the pixels sampled along it, each segment at
  ``ceil(length) + 1`` equally spaced points (a point ``(x, y)`` lies in
  pixel ``(floor(x), floor(y))``), as a line profile samples it;
- **point**: the one pixel that contains it.

Why bounds on points and shapes: a shape list arrives over HTTP, and the
footprint costs rows x edges; :data:`MAX_POINTS` and :data:`MAX_SHAPES` keep
one request's work and memory bounded. Every failure is an
:class:`~zstack_analyzer.errors.InvalidRoiError` naming the shape and field.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import InvalidRoiError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "AREA_TYPES",
    "MAX_COORDINATE",
    "MAX_POINTS",
    "MAX_SHAPES",
    "MAX_TOTAL_POINTS",
    "SHAPE_TYPES",
    "PlaneSizes",
    "Shape",
    "line_samples",
    "parse_shape",
    "parse_shapes",
]

#: The kinds of shape, as the OME model names them.
SHAPE_TYPES = ("rectangle", "ellipse", "polygon", "polyline", "line", "point")
#: The kinds whose footprint is an area (pixels whose centre is inside).
AREA_TYPES = frozenset({"rectangle", "ellipse", "polygon"})
#: Most vertices of one polygon or polyline.
MAX_POINTS = 10_000
#: Most shapes in one ROI.
MAX_SHAPES = 1_000
#: Most vertices of all the shapes of one ROI together.
MAX_TOTAL_POINTS = 100_000
#: Largest absolute coordinate (pixels); far beyond any plane, small enough for exact floats.
MAX_COORDINATE = float(2**31)
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")
_NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class PlaneSizes:
    """The sizes a shape is checked against (one scene of an image)."""

    size_x: int
    size_y: int
    size_z: int = 1
    size_t: int = 1
    size_c: int = 1


@dataclass(frozen=True, slots=True)
class Shape:
    """One shape on one plane; ``geometry`` holds the kind's own fields (see :data:`FIELDS`)."""

    type: str
    geometry: Mapping[str, Any]
    z: int = 0
    t: int = 0
    c: int | None = None
    name: str | None = None
    colour: str | None = None
    #: Fields of each kind, besides z, t, c, name and colour.
    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "rectangle": ("x", "y", "width", "height"),
        "ellipse": ("x", "y", "radius_x", "radius_y"),
        "polygon": ("points",),
        "polyline": ("points",),
        "line": ("x1", "y1", "x2", "y2"),
        "point": ("x", "y"),
    }

    @property
    def is_area(self) -> bool:
        """Whether the footprint is an area (pixels whose centre is inside)."""
        return self.type in AREA_TYPES

    def vertices(self) -> list[tuple[float, float]]:
        """The shape's defining points (corners of a rectangle, extreme points of an ellipse)."""
        g = self.geometry
        if self.type in ("polygon", "polyline"):
            return [(float(x), float(y)) for x, y in g["points"]]
        if self.type == "rectangle":
            x, y, w, h = g["x"], g["y"], g["width"], g["height"]
            return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        if self.type == "ellipse":
            x, y, rx, ry = g["x"], g["y"], g["radius_x"], g["radius_y"]
            return [(x - rx, y - ry), (x + rx, y + ry)]
        if self.type == "line":
            return [(g["x1"], g["y1"]), (g["x2"], g["y2"])]
        return [(g["x"], g["y"])]

    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the shape, in pixel coordinates."""
        xs, ys = zip(*self.vertices(), strict=True)
        return min(xs), min(ys), max(xs), max(ys)

    def pixel_box(self, sizes: PlaneSizes) -> tuple[int, int, int, int] | None:
        """``(row0, row1, col0, col1)``, half-open, holding every pixel of the footprint; ``None`` if empty."""
        xmin, ymin, xmax, ymax = self.extent()
        r0 = max(0, math.floor(ymin) - 1)
        r1 = min(sizes.size_y, math.floor(ymax) + 2)
        c0 = max(0, math.floor(xmin) - 1)
        c1 = min(sizes.size_x, math.floor(xmax) + 2)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1

    def length_px(self, scale_x: float = 1.0, scale_y: float = 1.0) -> float | None:
        """Length of a line or polyline (pixels, or µm with the pixel size as scales); else ``None``."""
        if self.type not in ("line", "polyline"):
            return None
        pts = np.asarray(self.vertices(), dtype=np.float64)
        steps = np.diff(pts, axis=0) * np.array([scale_x, scale_y])
        return float(np.sqrt((steps**2).sum(axis=1)).sum())

    def mask(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """The footprint within ``rows`` x ``cols`` (half-open pixel ranges), as a bool array."""
        r0, r1 = rows
        c0, c1 = cols
        out = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        if out.size == 0:
            return out
        cy = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
        cx = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
        g = self.geometry
        if self.type == "rectangle":
            inside_x = (cx >= g["x"]) & (cx < g["x"] + g["width"])
            inside_y = (cy >= g["y"]) & (cy < g["y"] + g["height"])
            return np.asarray(inside_x & inside_y)
        if self.type == "ellipse":
            # A radius near the smallest float overflows the quotient to inf: outside, as it
            # should be (a NumPy warning here was a 500 wherever warnings are errors).
            with np.errstate(over="ignore"):
                dx = (cx - g["x"]) / g["radius_x"]
                dy = (cy - g["y"]) / g["radius_y"]
                return np.asarray(dx * dx + dy * dy <= 1.0)
        if self.type == "polygon":
            return _polygon_mask(self.vertices(), cy[:, 0], cx[0])
        # line, polyline, point: the sampled pixels
        cols_idx, rows_idx = line_samples(self.vertices(), (r0, r1), (c0, c1))
        out[rows_idx - r0, cols_idx - c0] = True
        return out

    def to_dict(self) -> dict[str, Any]:
        """The shape as the API writes it (``type``, the kind's fields, z, t, c, name, colour)."""
        data: dict[str, Any] = {"type": self.type}
        for key in self.FIELDS[self.type]:
            value = self.geometry[key]
            data[key] = [list(p) for p in value] if key == "points" else value
        data.update(z=self.z, t=self.t, c=self.c, name=self.name, colour=self.colour)
        return data


def _polygon_mask(
    points: Sequence[tuple[float, float]], cy: np.ndarray, cx: np.ndarray
) -> np.ndarray:
    """Even-odd rule at the centres ``cy`` (rows) x ``cx`` (columns), pnpoly's crossing test."""
    pts = np.asarray(points, dtype=np.float64)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    out = np.zeros((cy.size, cx.size), dtype=bool)
    # Rows in blocks so rows x edges stays small (MAX_POINTS edges at most).
    block = max(1, (1 << 20) // max(1, len(pts)))
    for start in range(0, cy.size, block):
        y = cy[start : start + block, None]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        for i in range(y.shape[0]):
            xs = np.sort(xc[i][crosses[i]])
            # crossings strictly right of the centre: len - (number <= centre)
            right = xs.size - np.searchsorted(xs, cx, side="right")
            out[start + i] = (right & 1).astype(bool)
    return out


def line_samples(
    points: Sequence[tuple[float, float]], rows: tuple[int, int], cols: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows of the pixels sampled along a polyline (one point: its pixel), within a window.

    Each segment is sampled at ``ceil(length) + 1`` equally spaced points
    (``t = i / n``); only the samples that can fall inside the window are
    computed, so a segment far longer than the plane costs no more than the
    plane's diagonal.
    """
    r0, r1 = rows
    c0, c1 = cols
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 1:
        xs, ys = np.floor(pts[:, 0]), np.floor(pts[:, 1])
    else:
        col_parts: list[np.ndarray] = []
        row_parts: list[np.ndarray] = []
        for (xa, ya), (xb, yb) in itertools.pairwise(pts):
            n = max(1, math.ceil(math.hypot(xb - xa, yb - ya)))
            span = _clip_segment(xa, ya, xb, yb, (c0 - 1.0, c1 + 1.0), (r0 - 1.0, r1 + 1.0))
            if span is None:
                continue
            i0 = max(0, math.floor(span[0] * n))
            i1 = min(n, math.ceil(span[1] * n))
            i = np.arange(i0, i1 + 1, dtype=np.float64)
            col_parts.append(np.floor(xa + (xb - xa) * (i / n)))
            row_parts.append(np.floor(ya + (yb - ya) * (i / n)))
        if not col_parts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        xs, ys = np.concatenate(col_parts), np.concatenate(row_parts)
    keep = (xs >= c0) & (xs < c1) & (ys >= r0) & (ys < r1)
    return xs[keep].astype(np.int64), ys[keep].astype(np.int64)


def _clip_segment(
    xa: float, ya: float, xb: float, yb: float, xr: tuple[float, float], yr: tuple[float, float]
) -> tuple[float, float] | None:
    """Liang-Barsky: the parameter range ``[t0, t1]`` of the segment inside the box, or ``None``."""
    t0, t1 = 0.0, 1.0
    for p, q in (
        (-(xb - xa), xa - xr[0]),
        (xb - xa, xr[1] - xa),
        (-(yb - ya), ya - yr[0]),
        (yb - ya, yr[1] - ya),
    ):
        if p == 0:
            if q < 0:
                return None
            continue
        r = q / p
        if p < 0:
            t0 = max(t0, r)
        else:
            t1 = min(t1, r)
        if t0 > t1:
            return None
    return t0, t1


# ---------------------------------------------------------------------------- parsing
def _fail(where: str, message: str) -> InvalidRoiError:
    return InvalidRoiError(f"{where}: {message}")


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    if key not in data:
        raise _fail(where, f"'{key}' is missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"'{key}' must be a number, not {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result) or abs(result) > MAX_COORDINATE:
        raise _fail(where, f"'{key}' must be a finite number within ±2^31, not {value!r}")
    return result


def _index(
    data: Mapping[str, Any], key: str, size: int, where: str, *, optional: bool
) -> int | None:
    value = data.get(key)
    if value is None:
        if optional:
            return None
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _fail(where, f"'{key}' must be an integer, not {value!r}")
    if not 0 <= value < size:
        raise _fail(where, f"{key}={value} is out of range (0..{size - 1})")
    return int(value)


def _text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _NAME_MAX or "\x00" in value:
        raise _fail(where, f"'{key}' must be text of at most {_NAME_MAX} characters")
    return value


def _points(data: Mapping[str, Any], where: str, minimum: int) -> list[tuple[float, float]]:
    raw = data.get("points")
    if not isinstance(raw, list):
        raise _fail(where, "'points' must be a list of [x, y] pairs")
    if len(raw) > MAX_POINTS:
        raise _fail(where, f"{len(raw)} points; at most {MAX_POINTS} are accepted")
    if len(raw) < minimum:
        raise _fail(where, f"{len(raw)} points; at least {minimum} are needed")
    points: list[tuple[float, float]] = []
    for number, pair in enumerate(raw):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _fail(where, f"point {number} must be an [x, y] pair")
        points.append(
            (
                _number({"x": pair[0]}, "x", f"{where} point {number}"),
                _number({"y": pair[1]}, "y", f"{where} point {number}"),
            )
        )
    return points


def parse_shape(data: Any, sizes: PlaneSizes, *, where: str = "shape") -> Shape:
    """One shape from its JSON form, checked against the image's sizes.

    Raises
    ------
    InvalidRoiError
        Unknown type, a missing or non-finite coordinate, a non-positive size,
        too many points, z/t/c out of range, or a shape wholly outside the plane.

    Examples
    --------
    >>> s = parse_shape({"type": "rectangle", "x": 1, "y": 2, "width": 3, "height": 4},
    ...                 PlaneSizes(size_x=10, size_y=10))
    >>> int(s.mask((0, 10), (0, 10)).sum())
    12
    """
    if not isinstance(data, dict):
        raise _fail(where, "a shape must be a JSON object")
    kind = data.get("type")
    if kind not in SHAPE_TYPES:
        raise _fail(where, f"'type' must be one of {', '.join(SHAPE_TYPES)}, not {kind!r}")
    geometry: dict[str, Any] = {}
    if kind in ("polygon", "polyline"):
        geometry["points"] = _points(data, where, 3 if kind == "polygon" else 2)
    else:
        for key in Shape.FIELDS[kind]:
            geometry[key] = _number(data, key, where)
    for key in ("width", "height", "radius_x", "radius_y"):
        if key in geometry and geometry[key] <= 0:
            raise _fail(where, f"'{key}' must be positive, not {geometry[key]!r}")
    colour = _text(data, "colour", where)
    if colour is None:
        colour = _text(data, "color", where)
    if colour is not None and not _COLOUR.match(colour):
        raise _fail(where, f"'colour' must be #RRGGBB or #RRGGBBAA, not {colour!r}")
    shape = Shape(
        type=str(kind),
        geometry=geometry,
        z=_index(data, "z", sizes.size_z, where, optional=False) or 0,
        t=_index(data, "t", sizes.size_t, where, optional=False) or 0,
        c=_index(data, "c", sizes.size_c, where, optional=True),
        name=_text(data, "name", where),
        colour=colour,
    )
    xmin, ymin, xmax, ymax = shape.extent()
    if xmax < 0 or ymax < 0 or xmin >= sizes.size_x or ymin >= sizes.size_y:
        raise _fail(
            where, f"the {kind} lies wholly outside the {sizes.size_x} x {sizes.size_y} plane"
        )
    return shape


def parse_shapes(items: Any, sizes: PlaneSizes) -> list[Shape]:
    """The shapes of one ROI (at least one, at most :data:`MAX_SHAPES` and :data:`MAX_TOTAL_POINTS`)."""
    if not isinstance(items, list) or not items:
        msg = "'shapes' must be a non-empty list"
        raise InvalidRoiError(msg)
    if len(items) > MAX_SHAPES:
        msg = f"{len(items)} shapes; at most {MAX_SHAPES} are accepted"
        raise InvalidRoiError(msg)
    shapes = [parse_shape(item, sizes, where=f"shape {i}") for i, item in enumerate(items)]
    total = sum(len(s.geometry.get("points", ())) for s in shapes)
    if total > MAX_TOTAL_POINTS:
        msg = f"{total} points in all; at most {MAX_TOTAL_POINTS} are accepted"
        raise InvalidRoiError(msg)
    return shapes
