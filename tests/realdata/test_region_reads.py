"""Region reads (what renders of huge planes use) equal slices of the whole plane, on real files.

Every scene of every corpus file whose reader reads regions (TIFF family, CZI,
LIF including stitched tile scans, uncompressed ND2) is checked on windows that
cross tile and strip boundaries and touch the edges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.conftest import expected_entries
from tests.conftest import testdata_dir as corpus_dir
from zstack_analyzer import open_image

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.realdata


def _files() -> list[str]:
    root = corpus_dir()
    names = sorted({str(e["path"]) for e in expected_entries() if e.get("expect") == "ok"})
    return [n for n in names if root is not None and (root / n).is_file()]


@pytest.mark.parametrize("name", _files() or ["(corpus absent)"])
def test_regions_equal_plane_slices(testdata: Path, name: str) -> None:
    with open_image(testdata / name) as reader:
        checked = 0
        for info in reader.scenes()[:4]:
            if reader.region_grid(info.index) is None:
                continue
            last = (info.size_t - 1, info.size_c - 1, info.size_z - 1)
            for t, c, z in {(0, 0, 0), last}:
                plane = reader.read_plane(info.index, t, c, z)
                ny, nx = plane.shape[:2]
                for rows, cols in (
                    ((0, ny), (0, nx)),
                    ((ny // 3, ny - 1), (nx // 5, nx // 2 + 7)),
                    ((ny - 1, ny), (0, nx)),
                    ((0, max(1, ny // 2)), (nx - 1, nx)),
                ):
                    region = reader.read_region(info.index, t, c, z, rows, cols)
                    np.testing.assert_array_equal(
                        region,
                        plane[rows[0] : rows[1], cols[0] : cols[1]],
                        err_msg=f"{rows} {cols}",
                    )
                    checked += 1
        assert checked or all(reader.region_grid(i.index) is None for i in reader.scenes()[:4])
