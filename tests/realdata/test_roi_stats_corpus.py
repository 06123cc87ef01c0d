"""ROI statistics on real files equal numpy's on the same pixels, and read only the bounding box.

The reference reads whole planes (``read_plane``, not the region path the
stats use), selects pixels with a mask computed here independently (pixel
centres against the shape, an edge-by-edge even-odd test for polygons) and
lets numpy do the arithmetic. With one band per plane (every file here) the
figures are bitwise numpy's; a forced split into many bands stays within
float rounding and exact for counts, sums, minima and maxima.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.conftest import testdata_dir as corpus_dir
from zstack_analyzer import open_image
from zstack_analyzer.roi import stats as roi_stats
from zstack_analyzer.roi.shapes import PlaneSizes, parse_shapes
from zstack_analyzer.roi.stats import measure_roi

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata

#: One file per reader family, with RGB (hela-cells), float (CalibZAP) and a large plane (fei-sem).
FILES = [
    "czi/CD_s_1_t_3_c_2_z_5.czi",
    "nd2/cluster.nd2",
    "lif/PR2729_frameOrderCombinedScanTypes.lif",
    "ome-tiff/s_1_t_1_c_1_z_1.ome.tiff",
    "imagej/hela-cells.tif",
    "imagej/CalibZAPWfixed_000154_max-16.tif",
    "imagej/xyzc_16bit__spots.tif",
    "tiff/fei-sem-rbc.tif",
]


def _present() -> list[str]:
    root = corpus_dir()
    return [n for n in FILES if root is not None and (root / n).is_file()] or ["(corpus absent)"]


def _shapes(nx: int, ny: int, z: int, t: int) -> list[dict[str, Any]]:
    """One of each area kind and a line, placed by fractions of the plane (non-integer corners)."""
    return [
        {
            "type": "polygon",
            "points": [
                [0.11 * nx, 0.13 * ny],
                [0.62 * nx, 0.07 * ny],
                [0.48 * nx, 0.41 * ny],
                [0.83 * nx, 0.77 * ny],
                [0.21 * nx, 0.58 * ny],
            ],
            "z": z,
            "t": t,
        },
        {
            "type": "ellipse",
            "x": 0.6 * nx,
            "y": 0.55 * ny,
            "radius_x": 0.21 * nx,
            "radius_y": 0.13 * ny,
            "z": z,
            "t": t,
        },
        {
            "type": "rectangle",
            "x": 0.05 * nx + 0.3,
            "y": 0.71 * ny,
            "width": 0.33 * nx,
            "height": 0.2 * ny,
            "z": z,
            "t": t,
        },
        {
            "type": "line",
            "x1": 0.9 * nx,
            "y1": 0.05 * ny,
            "x2": 0.1 * nx,
            "y2": 0.95 * ny,
            "z": z,
            "t": t,
        },
    ]


def reference_mask(shape: dict[str, Any], ny: int, nx: int) -> np.ndarray:
    """Pixel-centre membership (lines: their samples), computed for the whole plane."""
    cy = np.arange(ny, dtype=np.float64)[:, None] + 0.5
    cx = np.arange(nx, dtype=np.float64)[None, :] + 0.5
    kind = shape["type"]
    if kind == "rectangle":
        return np.asarray(
            (cx >= shape["x"])
            & (cx < shape["x"] + shape["width"])
            & (cy >= shape["y"])
            & (cy < shape["y"] + shape["height"])
        )
    if kind == "ellipse":
        dx = (cx - shape["x"]) / shape["radius_x"]
        dy = (cy - shape["y"]) / shape["radius_y"]
        return np.asarray(dx * dx + dy * dy <= 1)
    if kind == "polygon":
        inside = np.zeros((ny, nx), dtype=bool)
        pts = shape["points"]
        for (xi, yi), (xj, yj) in zip(pts, pts[-1:] + pts[:-1], strict=True):
            if yi == yj:
                continue
            crossing = (yi > cy) != (yj > cy)
            x_at = (xj - xi) * (cy - yi) / (yj - yi) + xi
            inside ^= crossing & (cx < x_at)
        return inside
    out = np.zeros((ny, nx), dtype=bool)
    x1, y1, x2, y2 = shape["x1"], shape["y1"], shape["x2"], shape["y2"]
    n = math.ceil(math.hypot(x2 - x1, y2 - y1))
    for i in range(n + 1):
        x, y = math.floor(x1 + (x2 - x1) * i / n), math.floor(y1 + (y2 - y1) * i / n)
        if 0 <= x < nx and 0 <= y < ny:
            out[y, x] = True
    return out


def expected_stats(values: np.ndarray) -> dict[str, Any]:
    """numpy on the selected values (float data: NaN left out)."""
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    as_float = values.astype(np.float64)
    integer = values.dtype.kind in "iu"
    return {
        "pixel_count": int(values.size),
        "min": (int if integer else float)(values.min()),
        "max": (int if integer else float)(values.max()),
        "sum": int(values.astype(np.int64).sum()) if integer else float(as_float.sum()),
        "mean": float(as_float.mean()),
        "std": float(as_float.std()),
    }


def _check(name: str, testdata: Path, *, exact: bool) -> int:
    compared = 0
    with open_image(testdata / name) as reader:
        info = reader.scene_info(0)
        nx, ny = info.size_x, info.size_y
        z, t = info.size_z - 1, info.size_t - 1
        raw = _shapes(nx, ny, z, t)
        sizes = PlaneSizes(nx, ny, info.size_z, info.size_t, info.size_c)
        shapes = parse_shapes(raw, sizes)
        result = measure_roi(reader, shapes, scene=0)
        union = np.zeros((ny, nx), dtype=bool)
        for shape in raw:
            union |= reference_mask(shape, ny, nx)
        for entry in result["channels"]:
            plane = reader.read_plane(0, t, entry["channel"], z)
            values = plane[union] if plane.ndim == 2 else plane[union][:, entry.get("sample", 0)]
            expected = expected_stats(values)
            for key in ("pixel_count", "min", "max", "sum"):
                assert entry[key] == expected[key], (name, entry["channel"], key)
            if exact:
                assert entry["mean"] == expected["mean"], (name, entry["channel"])
                assert entry["std"] == expected["std"], (name, entry["channel"])
            else:
                assert entry["mean"] == pytest.approx(expected["mean"], rel=1e-12)
                assert entry["std"] == pytest.approx(expected["std"], rel=1e-11)
            compared += 1
        # Each shape alone (the per-shape table) against its own mask.
        for index, shape in enumerate(raw):
            mask = reference_mask(shape, ny, nx)
            for entry in result["shapes"][index]["channels"]:
                plane = reader.read_plane(0, t, entry["channel"], z)
                values = plane[mask] if plane.ndim == 2 else plane[mask][:, entry.get("sample", 0)]
                assert entry["pixel_count"] == values.size
                if values.size:
                    assert entry["sum"] == expected_stats(values)["sum"]
    return compared


@pytest.mark.parametrize("name", _present())
def test_roi_stats_equal_numpy_on_real_files(testdata: Path, name: str) -> None:
    assert _check(name, testdata, exact=True) > 0


def test_roi_stats_in_many_bands_equal_numpy(
    testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A band of a few rows: the accumulators combine bands exactly (counts, sums) or to rounding."""
    monkeypatch.setattr(roi_stats, "REGION_BYTES", 4096)
    for name in ("tiff/fei-sem-rbc.tif", "imagej/CalibZAPWfixed_000154_max-16.tif"):
        with open_image(testdata / name) as reader:
            assert reader.region_grid(0) is not None, name
        assert _check(name, testdata, exact=False) > 0


def test_only_the_bounding_box_is_read(testdata: Path) -> None:
    """Every window the stats ask of the reader lies inside the ROI's bounding box."""
    name = "tiff/fei-sem-rbc.tif"
    with open_image(testdata / name) as reader:
        info = reader.scene_info(0)
        windows: list[tuple[tuple[int, int], tuple[int, int]]] = []
        original = reader.read_region

        def spy(scene: int, t: int, c: int, z: int, rows: Any, cols: Any, **kw: Any) -> Any:
            windows.append((rows, cols))
            return original(scene, t, c, z, rows, cols, **kw)

        reader.read_region = spy  # type: ignore[method-assign]
        sizes = PlaneSizes(info.size_x, info.size_y)
        shapes = parse_shapes(
            [{"type": "ellipse", "x": 700.5, "y": 400.25, "radius_x": 40, "radius_y": 25}], sizes
        )
        result = measure_roi(reader, shapes)
    assert windows, "the stats read through the region path"
    for rows, cols in windows:
        assert 374 <= rows[0] < rows[1] <= 427, rows
        assert 659 <= cols[0] < cols[1] <= 742, cols
    assert result["channels"][0]["pixel_count"] > 3000
