"""ROI stats of a whole large plane hold one band at a time, not the plane (tracemalloc)."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from zstack_analyzer import open_image
from zstack_analyzer.roi import stats as roi_stats
from zstack_analyzer.roi.shapes import PlaneSizes, parse_shapes
from zstack_analyzer.roi.stats import measure_roi

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

SIDE = 4096  # a 32 MiB uint16 plane, in 128 x 128 tiles


def test_a_whole_plane_roi_is_measured_band_by_band(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = (
        np.arange(SIDE * SIDE, dtype=np.uint32).reshape(SIDE, SIDE) * 2654435761 % 65521
    ).astype(np.uint16)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, plane, tile=(128, 128))
    expected_sum = int(plane.sum(dtype=np.int64))
    expected_mean = float(plane.astype(np.float64).mean())
    expected_std = float(plane.astype(np.float64).std())
    expected_min, expected_max = int(plane.min()), int(plane.max())
    del plane
    monkeypatch.setattr(roi_stats, "REGION_BYTES", 512 * 1024)
    shapes = parse_shapes(
        [
            {
                "type": "polygon",
                "points": [[-1, -1], [SIDE + 1, -1], [SIDE + 1, SIDE + 1], [-1, SIDE + 1]],
            }
        ],
        PlaneSizes(SIDE, SIDE),
    )
    with open_image(path) as reader:
        tracemalloc.start()
        try:
            result = measure_roi(reader, shapes)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    entry = result["channels"][0]
    assert entry["pixel_count"] == SIDE * SIDE
    assert entry["sum"] == expected_sum
    assert (entry["min"], entry["max"]) == (expected_min, expected_max)
    assert entry["mean"] == expected_sum / SIDE**2 == expected_mean
    assert abs(entry["std"] - expected_std) <= 1e-9 * expected_std
    plane_bytes = SIDE * SIDE * 2
    assert peak < plane_bytes // 4, (
        f"peak {peak / 2**20:.1f} MiB for a {plane_bytes / 2**20:.0f} MiB plane"
    )
