"""ROI shapes and statistics (roi/shapes.py, roi/stats.py): exact messages, bounds and figures.

Found by mutation testing: the unit tests match refusals by a word of their message
and compare footprints with a reference on one plane size; the exact bounds (2^31,
0 and the plane's edges, the caps of points and shapes), the pixel box's margins, the
polygon's row blocks, the line's window, and statistics over several bands, planes,
channels and chunks against numpy on real files of /work/shared/testdata were not
pinned one by one.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zstack_analyzer import open_image
from zstack_analyzer.errors import InvalidRoiError, LimitExceededError
from zstack_analyzer.roi import shapes as shapes_module
from zstack_analyzer.roi import stats as roi_stats
from zstack_analyzer.roi.shapes import (
    MAX_POINTS,
    MAX_SHAPES,
    MAX_TOTAL_POINTS,
    PlaneSizes,
    Shape,
    line_samples,
    parse_shape,
    parse_shapes,
)
from zstack_analyzer.roi.stats import Accumulator, measure_roi

SIZES = PlaneSizes(size_x=60, size_y=45, size_z=4, size_t=3, size_c=2)
TESTDATA = Path("/work/shared/testdata")
SPOTS = TESTDATA / "imagej" / "xyzc_16bit__spots.tif"  # Z, C, Y, X = 17, 2, 88, 89, calibrated
FIVE = TESTDATA / "imagej" / "5channel.tif"  # 5 channels of 64 x 64 uint8, no calibration
HELA = TESTDATA / "imagej" / "hela-cells.tif"  # RGB uint16, 672 x 512


def _refused(data: Any, sizes: PlaneSizes = SIZES) -> str:
    with pytest.raises(InvalidRoiError) as caught:
        parse_shape(data, sizes)
    return str(caught.value)


# ---------------------------------------------------------------------------- parsing


def test_refusals_in_full() -> None:
    point = {"type": "point", "x": 1, "y": 1}
    assert _refused("x") == "shape: a shape must be a JSON object"
    assert _refused({"type": "circle"}) == (
        "shape: 'type' must be one of rectangle, ellipse, polygon, polyline, line, point, "
        "not 'circle'"
    )
    assert _refused({"type": "point", "y": 1}) == "shape: 'x' is missing"
    assert _refused({"type": "point", "x": "1", "y": 1}) == "shape: 'x' must be a number, not str"
    assert _refused({"type": "point", "x": False, "y": 1}) == (
        "shape: 'x' must be a number, not bool"
    )
    assert _refused({"type": "point", "x": 1, "y": -(2.0**31) - 1}) == (
        f"shape: 'y' must be a finite number within ±2^31, not {-(2.0**31) - 1!r}"
    )
    assert _refused({"type": "point", "x": 10**400, "y": 1}).endswith(f"not {10**400!r}")
    assert _refused({"type": "point", "x": math.nan, "y": 1}).endswith("not nan")
    # 2^31 itself is accepted (a line reaching far beyond the plane).
    far = parse_shape({"type": "line", "x1": 0, "y1": 0, "x2": 2**31, "y2": -(2**31)}, SIZES)
    assert far.geometry == {"x1": 0.0, "y1": 0.0, "x2": 2.0**31, "y2": -(2.0**31)}
    assert _refused({**point, "z": 4}) == "shape: z=4 is out of range (0..3)"
    assert _refused({**point, "t": 3}) == "shape: t=3 is out of range (0..2)"
    assert _refused({**point, "c": -1}) == "shape: c=-1 is out of range (0..1)"
    assert _refused({**point, "z": True}) == "shape: 'z' must be an integer, not True"
    assert _refused({**point, "t": "1"}) == "shape: 't' must be an integer, not '1'"
    assert _refused({**point, "c": 0.5}) == "shape: 'c' must be an integer, not 0.5"
    assert _refused({**point, "name": "n" * 256}) == (
        "shape: 'name' must be text of at most 255 characters"
    )
    assert _refused({**point, "name": "a\x00b"}).endswith("at most 255 characters")
    assert _refused({**point, "name": 5}).endswith("at most 255 characters")
    assert _refused({**point, "colour": "#12345"}) == (
        "shape: 'colour' must be #RRGGBB or #RRGGBBAA, not '#12345'"
    )
    assert _refused({**point, "color": "#1234567"}).endswith("not '#1234567'")
    assert _refused({**point, "colour": "#123456 "}).endswith("not '#123456 '")
    for kind, key in (("rectangle", "width"), ("ellipse", "radius_y")):
        fields = dict.fromkeys(Shape.FIELDS[kind], 2.0)
        assert (
            _refused({"type": kind, **fields, key: 0})
            == f"shape: '{key}' must be positive, not 0.0"
        )
    assert _refused({"type": "polygon", "points": "1,2"}) == (
        "shape: 'points' must be a list of [x, y] pairs"
    )
    assert _refused({"type": "polyline", "points": [[1, 1]]}) == (
        "shape: 1 points; at least 2 are needed"
    )
    assert _refused({"type": "polygon", "points": [[1, 1], [2, 2]]}) == (
        "shape: 2 points; at least 3 are needed"
    )
    assert _refused({"type": "polygon", "points": [[1, 1]] * (MAX_POINTS + 1)}) == (
        f"shape: {MAX_POINTS + 1} points; at most {MAX_POINTS} are accepted"
    )
    assert _refused({"type": "polyline", "points": [[1, 1], [1, 2, 3]]}) == (
        "shape: point 1 must be an [x, y] pair"
    )
    assert _refused({"type": "polyline", "points": [[1, 1], {"x": 1}]}) == (
        "shape: point 1 must be an [x, y] pair"
    )
    assert _refused({"type": "polyline", "points": [[1, 1], [2, "y"]]}) == (
        "shape point 1: 'y' must be a number, not str"
    )
    assert _refused({"type": "polyline", "points": [["x", 1], [2, 2]]}) == (
        "shape point 0: 'x' must be a number, not str"
    )


def test_defaults_and_accepted_forms() -> None:
    shape = parse_shape({"type": "point", "x": 1, "y": 2, "z": 3.0, "c": 1.0}, SIZES)
    assert (shape.z, shape.t, shape.c, shape.name, shape.colour) == (3, 0, 1, None, None)
    assert type(shape.z) is int and type(shape.c) is int
    plain = parse_shape({"type": "point", "x": 1, "y": 2, "z": None, "c": None}, SIZES)
    assert (plain.z, plain.t, plain.c) == (0, 0, None)
    edge = parse_shape({"type": "point", "x": 1, "y": 2, "z": 3, "t": 2, "c": 1}, SIZES)
    assert (edge.z, edge.t, edge.c) == (3, 2, 1)
    coloured = parse_shape({"type": "point", "x": 1, "y": 2, "color": "#AbCdEf80"}, SIZES)
    assert coloured.colour == "#AbCdEf80"
    both = parse_shape(
        {"type": "point", "x": 1, "y": 2, "colour": "#000000", "color": "#ffffff"}, SIZES
    )
    assert both.colour == "#000000"
    named = parse_shape({"type": "point", "x": 1, "y": 2, "name": "n" * 255}, SIZES)
    assert named.name == "n" * 255
    two = parse_shape({"type": "polyline", "points": [(1, 2), [3, 4]]}, SIZES)
    assert two.geometry == {"points": [(1.0, 2.0), (3.0, 4.0)]}
    assert (
        parse_shape({"type": "polygon", "points": [[1, 1]] * MAX_POINTS}, SIZES).type == "polygon"
    )


@pytest.mark.parametrize(
    ("fields", "inside"),
    [
        ({"type": "point", "x": 0, "y": 0}, True),
        ({"type": "point", "x": -0.001, "y": 3}, False),
        ({"type": "point", "x": 3, "y": -0.001}, False),
        ({"type": "point", "x": 59.999, "y": 44.999}, True),
        ({"type": "point", "x": 60, "y": 3}, False),
        ({"type": "point", "x": 3, "y": 45}, False),
        ({"type": "rectangle", "x": -10, "y": -10, "width": 10, "height": 10}, True),
        ({"type": "rectangle", "x": -10, "y": -10, "width": 9.5, "height": 20}, False),
    ],
)
def test_a_shape_must_touch_the_plane(fields: dict[str, Any], inside: bool) -> None:
    if inside:
        assert parse_shape(fields, SIZES).type == fields["type"]
    else:
        assert _refused(fields) == (
            f"shape: the {fields['type']} lies wholly outside the 60 x 45 plane"
        )


def test_shape_lists_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    point = {"type": "point", "x": 1, "y": 1}
    for items in ([], {}, point, None):
        with pytest.raises(InvalidRoiError) as caught:
            parse_shapes(items, SIZES)
        assert str(caught.value) == "'shapes' must be a non-empty list"
    monkeypatch.setattr(shapes_module, "MAX_SHAPES", 3)
    assert len(parse_shapes([point] * 3, SIZES)) == 3
    with pytest.raises(InvalidRoiError) as caught:
        parse_shapes([point] * 4, SIZES)
    assert str(caught.value) == "4 shapes; at most 3 are accepted"
    with pytest.raises(InvalidRoiError) as caught:
        parse_shapes([point, {"type": "point", "x": 1}], SIZES)
    assert str(caught.value) == "shape 1: 'y' is missing"
    monkeypatch.setattr(shapes_module, "MAX_TOTAL_POINTS", 5)
    line = {"type": "polyline", "points": [[1, 1], [2, 2]]}
    tri = {"type": "polygon", "points": [[1, 1], [2, 2], [1, 3]]}
    assert len(parse_shapes([line, tri, point], SIZES)) == 3
    with pytest.raises(InvalidRoiError) as caught:
        parse_shapes([line, tri, line], SIZES)
    assert str(caught.value) == "7 points in all; at most 5 are accepted"
    assert (MAX_SHAPES, MAX_TOTAL_POINTS) == (1_000, 100_000)


# ---------------------------------------------------------------------------- geometry


def test_vertices_extent_and_box() -> None:
    rect = Shape("rectangle", {"x": 2.5, "y": 3.0, "width": 4.0, "height": 5.5})
    assert rect.vertices() == [(2.5, 3.0), (6.5, 3.0), (6.5, 8.5), (2.5, 8.5)]
    assert rect.extent() == (2.5, 3.0, 6.5, 8.5)
    assert rect.pixel_box(SIZES) == (2, 10, 1, 8)
    ellipse = Shape("ellipse", {"x": 10.0, "y": 20.0, "radius_x": 3.0, "radius_y": 4.5})
    assert ellipse.vertices() == [(7.0, 15.5), (13.0, 24.5)]
    line = Shape("line", {"x1": 5.0, "y1": 1.0, "x2": 2.0, "y2": 9.0})
    assert line.vertices() == [(5.0, 1.0), (2.0, 9.0)] and line.extent() == (2.0, 1.0, 5.0, 9.0)
    point = Shape("point", {"x": 0.2, "y": 0.7})
    assert point.vertices() == [(0.2, 0.7)]
    assert point.pixel_box(SIZES) == (0, 2, 0, 2)
    corner = Shape("point", {"x": 59.5, "y": 44.5})
    assert corner.pixel_box(SIZES) == (43, 45, 58, 60)
    poly = Shape("polygon", {"points": [[1, 2], [30, 4], [7, 40]]})
    assert poly.vertices() == [(1.0, 2.0), (30.0, 4.0), (7.0, 40.0)]
    assert poly.extent() == (1.0, 2.0, 30.0, 40.0)
    # Outside the plane: no box (each side).
    for x, y in ((-5.0, 10.0), (70.0, 10.0), (10.0, -5.0), (10.0, 50.0)):
        assert Shape("point", {"x": x, "y": y}).pixel_box(SIZES) is None, (x, y)
    assert Shape("point", {"x": -1.5, "y": 10.0}).pixel_box(SIZES) is None
    assert Shape("point", {"x": -0.5, "y": 10.0}).pixel_box(SIZES) == (9, 12, 0, 1)


def test_lengths() -> None:
    rect = Shape("rectangle", {"x": 0.0, "y": 0.0, "width": 3.0, "height": 4.0})
    assert rect.length_px() is None
    assert Shape("point", {"x": 1.0, "y": 1.0}).length_px() is None
    polyline = Shape("polyline", {"points": [[0, 0], [3, 4], [3, 10]]})
    assert polyline.length_px() == 11.0
    assert polyline.length_px(2.0, 0.5) == pytest.approx(math.hypot(6, 2) + 3.0)
    line = Shape("line", {"x1": 1.0, "y1": 1.0, "x2": 4.0, "y2": 5.0})
    assert line.length_px() == 5.0 and line.length_px(1.0, 2.0) == pytest.approx(math.hypot(3, 8))


def test_mask_edges_and_empty_windows() -> None:
    rect = Shape("rectangle", {"x": 1.5, "y": 2.5, "width": 2.0, "height": 1.0})
    mask = rect.mask((0, 5), (0, 5))
    assert [tuple(p) for p in np.argwhere(mask)] == [(2, 1), (2, 2)]
    assert rect.mask((3, 3), (0, 5)).shape == (0, 5)
    assert rect.mask((0, 5), (4, 4)).shape == (5, 0)
    # The ellipse is closed: a centre exactly on it counts.
    ellipse = Shape("ellipse", {"x": 2.5, "y": 2.5, "radius_x": 1.0, "radius_y": 2.0})
    on = ellipse.mask((0, 5), (0, 5))
    assert on[2, 1] and on[2, 3] and on[0, 2] and on[4, 2]
    assert not on[0, 1] and int(on.sum()) == 7
    # A window that does not start at 0 (rows and columns offset).
    assert np.array_equal(ellipse.mask((1, 4), (2, 4)), on[1:4, 2:4])
    pt = Shape("point", {"x": 3.2, "y": 1.9})
    window = pt.mask((1, 3), (2, 5))
    assert [tuple(p) for p in np.argwhere(window)] == [(0, 1)]
    assert not pt.mask((2, 4), (0, 5)).any()


def _rectangle_polygon(x0: float, y0: float, x1: float, y1: float, n: int) -> list[list[float]]:
    """The rectangle's outline through ``n`` points (many collinear ones)."""
    side = n // 4
    top = [[x0 + (x1 - x0) * i / side, y0] for i in range(side)]
    right = [[x1, y0 + (y1 - y0) * i / side] for i in range(side)]
    bottom = [[x1 - (x1 - x0) * i / side, y1] for i in range(side)]
    left = [[x0, y1 - (y1 - y0) * i / side] for i in range(side)]
    return top + right + bottom + left


def test_a_polygon_of_many_points_in_row_blocks() -> None:
    # 10,000 edges: the mask is computed in blocks of 104 rows; 300 rows need three.
    points = _rectangle_polygon(2.3, 1.7, 37.6, 290.2, MAX_POINTS)
    assert len(points) == MAX_POINTS
    poly = Shape("polygon", {"points": points})
    mask = poly.mask((0, 300), (0, 40))
    expected = Shape("rectangle", {"x": 2.3, "y": 1.7, "width": 35.3, "height": 288.5})
    assert np.array_equal(mask, expected.mask((0, 300), (0, 40)))
    assert int(mask.sum()) == 36 * 288  # centres 2.5 .. 37.5 by 2.5 .. 289.5


def test_line_samples_in_a_window() -> None:
    pts = [(0.5, 0.5), (10.5, 0.5)]
    cols, rows = line_samples(pts, (0, 3), (0, 20))
    assert cols.tolist() == list(range(11)) and rows.tolist() == [0] * 11
    assert cols.dtype == np.int64 and rows.dtype == np.int64
    # A window in the middle of the segment: only the samples that fall in it.
    cols, rows = line_samples(pts, (0, 1), (4, 7))
    assert cols.tolist() == [4, 5, 6] and rows.tolist() == [0, 0, 0]
    # A window the segment misses: empty, of int64.
    cols, rows = line_samples(pts, (5, 9), (0, 20))
    assert cols.size == 0 and rows.size == 0 and cols.dtype == np.int64
    # One point: its pixel; a point out of the window: nothing.
    assert [a.tolist() for a in line_samples([(3.7, 2.2)], (0, 5), (0, 5))] == [[3], [2]]
    assert [a.tolist() for a in line_samples([(3.7, 2.2)], (0, 2), (0, 5))] == [[], []]
    # A vertical segment, upwards, and a polyline with a segment outside the window.
    cols, rows = line_samples([(2.5, 6.5), (2.5, 0.5)], (0, 10), (0, 5))
    assert rows.tolist() == [6, 5, 4, 3, 2, 1, 0] and set(cols.tolist()) == {2}
    cols, rows = line_samples([(0.5, 50.5), (9.5, 50.5), (9.5, 0.5)], (0, 4), (0, 12))
    assert cols.tolist() == [9, 9, 9, 9] and rows.tolist() == [3, 2, 1, 0]
    # A segment of length below 1 still gives both of its ends.
    cols, rows = line_samples([(1.2, 1.2), (1.9, 1.9)], (0, 5), (0, 5))
    assert cols.tolist() == [1, 1] and rows.tolist() == [1, 1]
    # Ends exactly on the window's last row and column.
    cols, rows = line_samples([(0.5, 4.0), (4.0, 4.0)], (0, 5), (0, 5))
    assert cols.tolist() == [0, 1, 2, 3, 4] and rows.tolist() == [4] * 5


def test_to_dict() -> None:
    shape = Shape(
        "polygon", {"points": [(1.0, 2.0), (3.0, 4.0), (5.0, 0.0)]}, 1, 2, 0, "n", "#000000"
    )
    assert shape.to_dict() == {
        "type": "polygon",
        "points": [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]],
        "z": 1,
        "t": 2,
        "c": 0,
        "name": "n",
        "colour": "#000000",
    }
    assert Shape("point", {"x": 1.0, "y": 2.0}).to_dict() == {
        "type": "point",
        "x": 1.0,
        "y": 2.0,
        "z": 0,
        "t": 0,
        "c": None,
        "name": None,
        "colour": None,
    }
    assert Shape("ellipse", {"x": 1, "y": 1, "radius_x": 2, "radius_y": 3}).is_area
    assert not Shape("line", {"x1": 1, "y1": 1, "x2": 2, "y2": 3}).is_area


# ---------------------------------------------------------------------------- statistics


def _rect(x: float, y: float, w: float, h: float, **plane: int) -> Shape:
    return Shape("rectangle", {"x": x, "y": y, "width": w, "height": h}, **plane)


def test_stats_of_several_planes_and_channels_equal_numpy() -> None:
    import tifffile

    data = tifffile.imread(SPOTS).astype(np.int64)  # Z, C, Y, X
    box = _rect(10.0, 20.0, 30.0, 15.0, z=4)
    other = _rect(50.0, 5.0, 20.0, 10.0, z=9)
    only_c1 = _rect(0.0, 60.0, 10.0, 8.0, z=4, c=1)
    with open_image(SPOTS) as reader:
        result = measure_roi(reader, [box, other, only_c1])
    assert result["calibrated"] is True
    px = result["pixel_size_um"]["x"]
    assert result["pixel_size_um"] == {"x": px, "y": px} and px == pytest.approx(0.0941344539)
    for c in range(2):
        parts = [data[4, c, 20:35, 10:40].ravel(), data[9, c, 5:15, 50:70].ravel()]
        if c == 1:
            parts.append(data[4, 1, 60:68, 0:10].ravel())
        values = np.concatenate(parts)
        entry = result["channels"][c]
        assert entry["channel"] == c and entry["name"] is None and "sample" not in entry
        assert entry["pixel_count"] == values.size
        assert entry["sum"] == int(values.sum())
        assert (entry["min"], entry["max"]) == (int(values.min()), int(values.max()))
        assert entry["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert entry["std"] == pytest.approx(values.std(), rel=1e-9)
        assert entry["nan_count"] == 0
        # Integer data: the sum, min and max are exact integers, the mean the exact quotient.
        assert type(entry["sum"]) is int and type(entry["min"]) is int
        assert type(entry["max"]) is int and entry["mean"] == int(values.sum()) / values.size
        assert entry["area_unit"] == "um2" and entry["area_px2"] == float(values.size)
        assert entry["area"] == pytest.approx(values.size * px * px)
        assert entry["area_um2"] == entry["area"]
    # Per shape: each alone.
    table = result["shapes"]
    assert [(s["index"], s["type"], s["z"], s["t"], s["c"]) for s in table] == [
        (0, "rectangle", 4, 0, None),
        (1, "rectangle", 9, 0, None),
        (2, "rectangle", 4, 0, 1),
    ]
    assert table[1]["channels"][0]["sum"] == int(data[9, 0, 5:15, 50:70].sum())
    assert table[2]["channels"][0]["pixel_count"] == 0
    assert table[2]["channels"][0]["mean"] is None and table[2]["channels"][0]["sum"] == 0
    assert table[2]["channels"][1]["sum"] == int(data[4, 1, 60:68, 0:10].sum())
    assert "planes" not in result


def test_stats_through_the_stack_and_lines() -> None:
    import tifffile

    data = tifffile.imread(SPOTS).astype(np.int64)
    line = Shape("line", {"x1": 3.5, "y1": 3.5, "x2": 40.5, "y2": 3.5}, z=2)
    box = _rect(5.0, 5.0, 4.0, 3.0, z=7)
    with open_image(SPOTS) as reader:
        result = measure_roi(reader, [line, box], all_z=True, per_shape=False)
        alone = measure_roi(reader, [line])
    assert "shapes" not in result
    planes = result["planes"]
    assert [p["z"] for p in planes] == list(range(17))
    for z in (0, 7, 16):
        values = np.concatenate([data[z, 0, 3, 3:41], data[z, 0, 5:8, 5:9].ravel()])
        entry = planes[z]["channels"][0]
        assert entry["sum"] == int(values.sum()) and entry["pixel_count"] == 38 + 12
    entry = alone["channels"][1]
    assert entry["sum"] == int(data[2, 1, 3, 3:41].sum()) and entry["pixel_count"] == 38
    assert entry["length_px"] == 37.0 and entry["length_unit"] == "um"
    assert entry["length"] == entry["length_um"] == pytest.approx(37.0 * 0.0941344539)
    assert "area" not in entry and "area" not in result["channels"][0]
    assert alone["shapes"][0]["channels"] is alone["channels"]
    mixed = result["channels"][0]
    assert mixed["length_px"] == 37.0


def test_stats_without_calibration_and_many_channels() -> None:
    import tifffile

    data = tifffile.imread(FIVE).astype(np.int64)
    assert data.shape == (5, 64, 64)
    line = Shape("polyline", {"points": [[1.5, 1.5], [10.5, 1.5], [10.5, 5.5]]})
    box = _rect(3.0, 4.0, 10.0, 6.0)
    with open_image(FIVE) as reader:
        result = measure_roi(reader, [box])
        lined = measure_roi(reader, [line])
    assert result["calibrated"] is False and result["pixel_size_um"] is None
    assert [e["channel"] for e in result["channels"]] == [0, 1, 2, 3, 4]
    for c, entry in enumerate(result["channels"]):
        values = data[c, 4:10, 3:13]
        assert entry["sum"] == int(values.sum()) and entry["pixel_count"] == 60
        assert entry["area"] == 60.0 and entry["area_unit"] == "px2" and entry["area_um2"] is None
    entry = lined["channels"][0]
    assert entry["length"] == entry["length_px"] == 13.0
    assert entry["length_unit"] == "px" and entry["length_um"] is None


def test_rgb_samples_in_many_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    data = tifffile.imread(HELA).astype(np.int64)  # Y, X, S
    monkeypatch.setattr(roi_stats, "REGION_BYTES", 2 * 6 * 50)  # a few rows a band
    box = _rect(100.0, 200.0, 50.0, 37.0)
    with open_image(HELA) as reader:
        result = measure_roi(reader, [box])
    entries = result["channels"]
    assert [(e["channel"], e["sample"]) for e in entries] == [(0, 0), (0, 1), (0, 2)]
    for s, entry in enumerate(entries):
        values = data[200:237, 100:150, s]
        assert entry["sum"] == int(values.sum()) and entry["pixel_count"] == 50 * 37
        assert (entry["min"], entry["max"]) == (int(values.min()), int(values.max()))
        assert entry["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert entry["std"] == pytest.approx(values.std(), rel=1e-9)


def test_bands_follow_the_stored_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    with open_image(HELA) as reader:
        grid = reader.region_grid(0)
        assert grid is not None
        block = grid[0]
        monkeypatch.setattr(roi_stats, "REGION_BYTES", 10 * 100)
        bands = list(roi_stats._bands(reader, 0, (3, 40, 0, 50), 100))
    assert bands[0][0] == 3 and bands[-1][1] == 40
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
    per_band = max(block, (1000 // (100 * block)) * block)
    assert all((stop % block == 0 or stop == 40) for _, stop in bands)
    assert all(stop - start <= per_band for start, stop in bands)


def test_whole_plane_formats_over_the_limit_are_refused() -> None:
    from zstack_analyzer.limits import ReadLimits

    path = TESTDATA / "dicom" / "dicom_file90.dcm"  # read as whole planes
    with open_image(path) as reader:
        assert reader.region_grid(0) is None
        info = reader.scene_info(0)
        plane = info.size_x * info.size_y * np.dtype(info.dtype).itemsize
        box = _rect(1.0, 1.0, 5.0, 5.0)
        whole = measure_roi(reader, [box])
        assert whole["channels"][0]["pixel_count"] == 25
    small = ReadLimits(max_render_plane_bytes=plane - 1)
    with open_image(path, limits=small) as reader, pytest.raises(LimitExceededError) as caught:
        measure_roi(reader, [box])
    assert str(caught.value).startswith(
        f"{path.name}: a plane of {info.size_x} x {info.size_y} is over the render limit"
    )
    exact = ReadLimits(max_render_plane_bytes=plane)
    with open_image(path, limits=exact) as reader:
        assert measure_roi(reader, [box])["channels"][0]["pixel_count"] == 25


def test_accumulators_fold_chunks_and_nans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roi_stats, "CHUNK", 7)
    rng = np.random.default_rng(5)
    ints = rng.integers(0, 2**16, size=50).astype(np.uint16)
    acc = Accumulator(integer=True)
    acc.add(ints[:30])
    acc.add(ints[30:])
    result = acc.result()
    assert result["pixel_count"] == 50 and result["sum"] == int(ints.astype(np.int64).sum())
    assert (result["min"], result["max"]) == (int(ints.min()), int(ints.max()))
    assert result["mean"] == int(ints.astype(np.int64).sum()) / 50
    assert result["std"] == pytest.approx(ints.astype(np.float64).std(), rel=1e-12)
    assert type(result["sum"]) is int and type(result["min"]) is int
    big = np.array([2**62, 2**62, 2**62], dtype=np.int64)
    wide = Accumulator(integer=True)
    wide.add(big)
    assert wide.result()["sum"] == 3 * 2**62
    floats = np.array([1.5, np.nan, -2.0, np.nan, 4.0], dtype=np.float32)
    facc = Accumulator(integer=False)
    facc.add(floats)
    fres = facc.result()
    assert fres["nan_count"] == 2 and fres["pixel_count"] == 3
    assert fres["sum"] == 3.5 and (fres["min"], fres["max"]) == (-2.0, 4.0)
    finite = Accumulator(integer=False)
    finite.add(np.array([1.5, -2.0, 4.0, np.nan], dtype=np.float64))
    other = Accumulator(integer=False)
    other.add(np.array([np.nan, 10.0], dtype=np.float64))
    finite.merge(other)
    empty = Accumulator(integer=False)
    empty.add(np.array([np.nan]))
    finite.merge(empty)
    res = finite.result()
    assert res["nan_count"] == 3 and res["pixel_count"] == 4
    assert res["sum"] == 13.5 and res["mean"] == pytest.approx(13.5 / 4)
    assert res["std"] == pytest.approx(np.std([1.5, -2.0, 4.0, 10.0]), rel=1e-12)
    assert (res["min"], res["max"]) == (-2.0, 10.0)
    nothing = Accumulator(integer=True).result()
    assert nothing == {
        "pixel_count": 0,
        "min": None,
        "max": None,
        "mean": None,
        "sum": 0,
        "std": None,
        "nan_count": 0,
    }
    into_empty = Accumulator(integer=True)
    into_empty.merge(acc)
    assert into_empty.result() == acc.result()


def test_float_data_holding_infinity_is_measured_without_a_warning(tmp_path: Path) -> None:
    """A float plane with +inf (a division by zero upstream): figures that are not finite are null.

    Defect found here: the two-pass deviation subtracted an infinite mean from infinite
    values, and NumPy's "invalid value encountered in subtract" warning became an error
    wherever warnings are errors (this suite; a 500 in a server run so).
    """
    import tifffile

    plane = np.arange(12 * 16, dtype=np.float32).reshape(12, 16)
    plane[3, 4] = np.inf
    plane[5, 6] = np.nan
    path = tmp_path / "inf.tif"
    tifffile.imwrite(path, plane)
    with open_image(path) as reader:
        result = measure_roi(reader, [_rect(2.0, 2.0, 8.0, 6.0)])
    entry = result["channels"][0]
    assert entry["pixel_count"] == 47 and entry["nan_count"] == 1
    assert entry["min"] == float(plane[2, 2]) and entry["max"] is None
    assert entry["sum"] is None and entry["mean"] is None and entry["std"] is None
    with open_image(path) as reader:
        finite = measure_roi(reader, [_rect(10.0, 6.0, 4.0, 4.0)])["channels"][0]
    values = plane[6:10, 10:14].astype(np.float64)
    assert finite["sum"] == float(values.sum()) and finite["mean"] == values.mean()
