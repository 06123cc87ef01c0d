"""ROI shapes: footprints against a brute-force reference, checks, ImageJ and GeoJSON round trips."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tests.needs import unavailable
from zstack_analyzer.errors import InvalidRoiError
from zstack_analyzer.roi.geojson import feature_collection, rois_from_geojson
from zstack_analyzer.roi.shapes import (
    MAX_POINTS,
    MAX_SHAPES,
    PlaneSizes,
    Shape,
    parse_shape,
    parse_shapes,
)


def need_roifile() -> Any:
    """roifile (the ``roi`` extra): skipped locally without it, a failure under CI."""
    try:
        import roifile
    except ImportError:
        unavailable("roifile is not installed (pip install 'zstack-analyzer[roi]')")
    return roifile


SIZES = PlaneSizes(size_x=60, size_y=45, size_z=4, size_t=3, size_c=2)


def pnpoly(points: list[list[float]], x: float, y: float) -> bool:
    """W. R. Franklin's point-in-polygon test, one point at a time (the reference)."""
    inside = False
    j = len(points) - 1
    for i in range(len(points)):
        xi, yi = points[i]
        xj, yj = points[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def reference_mask(kind: str, shape: dict[str, float], ny: int, nx: int) -> np.ndarray:
    """Pixel-centre membership, pixel by pixel in plain Python."""
    out = np.zeros((ny, nx), dtype=bool)
    for r in range(ny):
        for c in range(nx):
            x, y = c + 0.5, r + 0.5
            if kind == "rectangle":
                hit = (
                    shape["x"] <= x < shape["x"] + shape["width"]
                    and shape["y"] <= y < shape["y"] + shape["height"]
                )
            elif kind == "ellipse":
                hit = ((x - shape["x"]) / shape["radius_x"]) ** 2 + (
                    (y - shape["y"]) / shape["radius_y"]
                ) ** 2 <= 1
            else:
                hit = pnpoly(shape["points"], x, y)  # type: ignore[arg-type]
            out[r, c] = hit
    return out


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("rectangle", {"x": 3.0, "y": 4.0, "width": 10.0, "height": 7.0}),
        ("rectangle", {"x": 2.7, "y": 0.5, "width": 9.6, "height": 3.01}),
        ("rectangle", {"x": -5.0, "y": 40.0, "width": 12.0, "height": 30.0}),
        ("ellipse", {"x": 20.0, "y": 15.0, "radius_x": 9.5, "radius_y": 4.25}),
        ("ellipse", {"x": 0.0, "y": 0.0, "radius_x": 6.0, "radius_y": 6.0}),
        ("polygon", {"points": [[3.2, 4.1], [30.7, 2.2], [55, 35.5], [20, 20], [5, 44]]}),
        # self-intersecting (even-odd) and with vertices on pixel centres
        ("polygon", {"points": [[10.5, 10.5], [40.5, 30.5], [40.5, 10.5], [10.5, 30.5]]}),
        ("polygon", {"points": [[-10, -10], [70, -10], [70, 60], [-10, 60]]}),
    ],
)
def test_area_footprints_equal_pixel_centre_membership(kind: str, fields: dict[str, float]) -> None:
    shape = parse_shape({"type": kind, **fields}, SIZES)
    expected = reference_mask(kind, fields, SIZES.size_y, SIZES.size_x)
    np.testing.assert_array_equal(shape.mask((0, SIZES.size_y), (0, SIZES.size_x)), expected)
    # Any window gives the same pixels as the whole plane (what banded reads rely on).
    np.testing.assert_array_equal(shape.mask((7, 19), (4, 33)), expected[7:19, 4:33])
    box = shape.pixel_box(SIZES)
    assert box is not None
    outside = expected.copy()
    outside[box[0] : box[1], box[2] : box[3]] = False
    assert not outside.any(), "every pixel of the footprint lies in its pixel box"


def test_line_samples_ceil_length_plus_one_points() -> None:
    shape = parse_shape({"type": "line", "x1": 1.0, "y1": 2.0, "x2": 11.0, "y2": 7.0}, SIZES)
    n = math.ceil(math.hypot(10, 5))
    expected = np.zeros((SIZES.size_y, SIZES.size_x), dtype=bool)
    for i in range(n + 1):
        expected[math.floor(2 + 5 * i / n), math.floor(1 + 10 * i / n)] = True
    np.testing.assert_array_equal(shape.mask((0, SIZES.size_y), (0, SIZES.size_x)), expected)
    assert shape.length_px() == pytest.approx(math.hypot(10, 5))
    assert shape.length_px(0.2, 0.5) == pytest.approx(math.hypot(2.0, 2.5))


def test_a_line_far_longer_than_the_plane_costs_only_its_part_on_the_plane() -> None:
    far = 2.0**30
    shape = parse_shape({"type": "line", "x1": -far, "y1": -far, "x2": far, "y2": far}, SIZES)
    mask = shape.mask((0, SIZES.size_y), (0, SIZES.size_x))
    # the diagonal through the plane: one pixel per row, on the diagonal
    rows, cols = np.nonzero(mask)
    assert len(rows) == SIZES.size_y
    assert (np.abs(rows - cols) <= 1).all()


def test_point_is_the_pixel_that_holds_it() -> None:
    shape = parse_shape({"type": "point", "x": 7.99, "y": 3.0}, SIZES)
    assert list(zip(*np.nonzero(shape.mask((0, 45), (0, 60))), strict=True)) == [(3, 7)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "point", "x": float("nan"), "y": 1}, "finite"),
        ({"type": "point", "x": float("inf"), "y": 1}, "finite"),
        ({"type": "point", "x": 10**400, "y": 1}, "finite"),
        ({"type": "point", "x": "1", "y": 1}, "number"),
        ({"type": "point", "x": True, "y": 1}, "number"),
        ({"type": "point", "x": 1}, "missing"),
        ({"type": "circle", "x": 1, "y": 1}, "type"),
        ({"type": "rectangle", "x": 1, "y": 1, "width": 0, "height": 1}, "positive"),
        ({"type": "ellipse", "x": 1, "y": 1, "radius_x": -2, "radius_y": 1}, "positive"),
        ({"type": "polygon", "points": [[1, 1], [2, 2]]}, "at least 3"),
        ({"type": "polygon", "points": [[1, 1], [2, 2], [3]]}, "pair"),
        ({"type": "polygon", "points": [[0, 0]] * (MAX_POINTS + 1)}, "at most"),
        ({"type": "point", "x": 1, "y": 1, "z": 4}, "z=4 is out of range"),
        ({"type": "point", "x": 1, "y": 1, "t": -1}, "out of range"),
        ({"type": "point", "x": 1, "y": 1, "c": 2}, "c=2"),
        ({"type": "point", "x": 1, "y": 1, "z": 1.5}, "integer"),
        ({"type": "point", "x": 60, "y": 1}, "outside"),
        ({"type": "rectangle", "x": -50, "y": -50, "width": 49, "height": 10}, "outside"),
        ({"type": "point", "x": 1, "y": 1, "colour": "red"}, "colour"),
        ({"type": "point", "x": 1, "y": 1, "name": "x" * 300}, "name"),
        ("rectangle", "object"),
    ],
)
def test_bad_shapes_are_refused_with_the_reason(data: object, message: str) -> None:
    with pytest.raises(InvalidRoiError, match=message):
        parse_shape(data, SIZES)


def test_shape_list_bounds() -> None:
    point = {"type": "point", "x": 1, "y": 1}
    with pytest.raises(InvalidRoiError, match="non-empty"):
        parse_shapes([], SIZES)
    with pytest.raises(InvalidRoiError, match="at most"):
        parse_shapes([point] * (MAX_SHAPES + 1), SIZES)
    many = {"type": "polyline", "points": [[1, 1]] * MAX_POINTS}
    with pytest.raises(InvalidRoiError, match="points in all"):
        parse_shapes([many] * 11, SIZES)


SHAPES = [
    {"type": "rectangle", "x": 2.0, "y": 3.0, "width": 5.5, "height": 4.0, "z": 1, "t": 2},
    {"type": "ellipse", "x": 20.5, "y": 10.0, "radius_x": 4.0, "radius_y": 2.25, "c": 1},
    {"type": "polygon", "points": [[1.5, 1.0], [9.25, 2.0], [5.0, 8.0]], "colour": "#ff8000"},
    {"type": "polyline", "points": [[1.0, 1.0], [9.0, 2.0], [5.0, 8.5]], "z": 3},
    {"type": "line", "x1": 0.5, "y1": 1.0, "x2": 30.0, "y2": 40.0, "name": "cut"},
    {"type": "point", "x": 12.0, "y": 13.5, "t": 1},
]


def _shapes() -> list[Shape]:
    return [parse_shape(s, SIZES) for s in SHAPES]


def test_imagej_round_trip_through_roifile_bytes() -> None:
    roifile = need_roifile()
    from zstack_analyzer.roi.imagej import imagej_zip, rois_from_imagej, to_imagej

    shapes = _shapes()
    archive = imagej_zip([(f"roi{i}", s) for i, s in enumerate(shapes)])
    back = rois_from_imagej(archive, SIZES)
    assert [name for name, _ in back] == [f"roi{i}" for i in range(len(shapes))]
    for original, (_, (again,)) in zip(shapes, back, strict=True):
        assert again.to_dict() | {"name": None} == original.to_dict() | {"name": None}
    # A single .roi file, read back by roifile itself (independently of our reader).
    one = to_imagej(shapes[2], "tri").tobytes()
    parsed = roifile.ImagejRoi.frombytes(one)
    assert parsed.roitype == roifile.ROI_TYPE.POLYGON
    np.testing.assert_allclose(parsed.coordinates(), [[1.5, 1.0], [9.25, 2.0], [5.0, 8.0]])
    assert rois_from_imagej(one, SIZES)[0][1][0].geometry == shapes[2].geometry


def test_imagej_files_made_by_roifile_import() -> None:
    """ROIs written by roifile's own constructors (integer ImageJ coordinates, stack position)."""
    roifile = need_roifile()
    from zstack_analyzer.roi.imagej import rois_from_imagej

    poly = roifile.ImagejRoi.frompoints([[5, 5], [25, 6], [15, 30]], name="p", z=2, t=1)
    poly.roitype = roifile.ROI_TYPE.POLYGON
    rect = roifile.ImagejRoi()
    rect.roitype = roifile.ROI_TYPE.RECT
    rect.left, rect.top, rect.right, rect.bottom = 4, 6, 14, 9
    rect.position = 2 * 6 + 3  # C-fastest over 2 channels and 4 planes: c=0, z=3, t=1 (1-based 15)
    [(_, [polygon]), (_, [rectangle])] = rois_from_imagej(poly.tobytes(), SIZES) + rois_from_imagej(
        rect.tobytes(), SIZES
    )
    assert polygon.type == "polygon" and polygon.z == 2 and polygon.t == 1
    assert polygon.geometry["points"] == [(5.0, 5.0), (25.0, 6.0), (15.0, 30.0)]
    assert rectangle.geometry == {"x": 4.0, "y": 6.0, "width": 10.0, "height": 3.0}
    assert (rectangle.c, rectangle.z, rectangle.t) == (0, 3, 1)


@pytest.mark.parametrize(
    "blob",
    [
        b"Iout" + b"\x00" * 10,
        b"PK\x03\x04 not really a zip",
        b"Iout" + b"\xff" * 200,
    ],
)
def test_broken_imagej_input_is_refused(blob: bytes) -> None:
    need_roifile()
    from zstack_analyzer.roi.imagej import rois_from_imagej

    with pytest.raises(InvalidRoiError):
        rois_from_imagej(blob, SIZES)


def test_zip_member_declaring_more_than_the_cap_is_refused_before_inflating() -> None:
    import io
    import zipfile

    need_roifile()
    from zstack_analyzer.roi.imagej import MAX_MEMBER_BYTES, rois_from_imagej

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.roi", b"\x00" * (MAX_MEMBER_BYTES + 1))
    with pytest.raises(InvalidRoiError, match="at most"):
        rois_from_imagej(buffer.getvalue(), SIZES)


def test_geojson_round_trip_and_grouping() -> None:
    shapes = _shapes()
    document = feature_collection([(7, "first", shapes[:3]), (8, "second", shapes[3:])])
    assert [f["geometry"]["type"] for f in document["features"]] == [
        "Polygon",
        "Polygon",
        "Polygon",
        "LineString",
        "LineString",
        "Point",
    ]
    back = rois_from_geojson(document, SIZES)
    assert [name for name, _ in back] == ["first", "second"]
    assert [s.to_dict() for _, group in back for s in group] == [s.to_dict() for s in shapes]


def test_qupath_geojson_without_our_properties() -> None:
    """Features as QuPath exports them: geometry, name, classification colour, plane (c=-1: all)."""
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "0f6c",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[1, 1], [20, 1], [20, 9], [1, 9], [1, 1]],
                        [[2, 2], [3, 2], [3, 3]],
                    ],
                },
                "properties": {
                    "objectType": "annotation",
                    "name": "tumour",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                },
                "plane": {"c": -1, "z": 2, "t": 1},
            },
            {
                "type": "Feature",
                "geometry": {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]},
            },
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]},
            },
        ],
    }
    (name, [polygon]), (_, points), (_, [line]) = rois_from_geojson(document, SIZES)
    assert name == "tumour"
    assert polygon.geometry["points"] == [(1, 1), (20, 1), (20, 9), (1, 9)]
    assert (polygon.z, polygon.t, polygon.c, polygon.colour) == (2, 1, None, "#c80000")
    assert [p.type for p in points] == ["point", "point"]
    assert line.type == "line"


@pytest.mark.parametrize(
    "document",
    [
        {"type": "Topology"},
        {"type": "FeatureCollection", "features": "x"},
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, float("nan")], [2, 0]]]},
        },
        {"type": "Feature", "geometry": {"type": "GeometryCollection", "coordinates": []}},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]},
    ],
)
def test_bad_geojson_is_refused(document: object) -> None:
    with pytest.raises(InvalidRoiError):
        rois_from_geojson(document, SIZES)


def test_an_ellipse_with_a_subnormal_radius_covers_only_its_centre_pixel() -> None:
    """Found by schemathesis: radius 1e-308 overflowed the quotient (a warning, then a 500)."""
    shape = parse_shape(
        {"type": "ellipse", "x": 3.5, "y": 2.5, "radius_x": 1e-308, "radius_y": 1e-308}, SIZES
    )
    mask = shape.mask((0, 6), (0, 8))
    assert mask.sum() == 1 and mask[2, 3]
