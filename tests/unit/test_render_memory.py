"""A projection of a stack several times larger than its memory budget stays within it.

The child process opens a ~600 MB OME-TIFF (written plane by plane, never held
whole), renders its Z maximum projection and an orthogonal view, checks the
projection against values known by construction, and reports its peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

if TYPE_CHECKING:
    from pathlib import Path

Z, Y, X = 72, 2048, 2048  # 72 x 8 MiB = 576 MiB of uint16
BUDGET_MIB = 256

CHILD = r"""
import json, sys
import numpy as np
from zstack_analyzer import open_image
from zstack_analyzer.render.projection import ReaderSource, project
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_file

path = sys.argv[1]
mip = render_file(path, RenderSpec(kind="mip", width=512, height=512))
ortho = render_file(path, RenderSpec(kind="orthogonal", width=768, height=256))
with open_image(path) as reader:
    views = project(ReaderSource(reader), [0], ["xy", "xz"])
xy, xz = views["xy"][0], views["xz"][0]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so the child would
# report the (large) pytest worker's peak instead of its own.
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({
    "peak_mib": peak_kib / 1024,
    "rows": [int(xy[(z * 29) % 2048, 5]) for z in range(72)],
    "base": int(xy[1, 5]),
    "xz_row_max": [int(xz[z].max()) for z in range(72)],
    "sizes": [len(mip.data), len(ortho.data)],
}))
"""


def _planes(base: np.ndarray):  # type: ignore[no-untyped-def]
    for z in range(Z):
        plane = base.copy()
        plane[(z * 29) % Y] = 1000 + z  # one bright row per plane, at a known place
        yield plane


@pytest.mark.slow
def test_mip_peak_rss_stays_under_budget(tmp_path: Path) -> None:
    base = (np.arange(X, dtype=np.uint16) % 500)[None, :].repeat(Y, axis=0)
    path = tmp_path / "big.ome.tif"
    tifffile.imwrite(
        path, _planes(base), shape=(Z, Y, X), dtype="uint16", ome=True, metadata={"axes": "ZYX"}
    )
    size_mib = path.stat().st_size / 1024**2
    assert size_mib > 2 * BUDGET_MIB
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # Bright rows: the projection kept every plane's row (a later row can overwrite an
    # earlier one at the same place only if it is brighter, which it is).
    expected_rows = [
        1000 + max(k for k in range(Z) if (k * 29) % Y == (z * 29) % Y) for z in range(Z)
    ]
    assert report["rows"] == expected_rows
    assert report["base"] == 5
    assert report["xz_row_max"] == [1000 + z for z in range(Z)]
    assert all(size > 0 for size in report["sizes"])
    assert report["peak_mib"] < BUDGET_MIB, (
        f"peak RSS {report['peak_mib']:.0f} MiB for a {size_mib:.0f} MiB stack"
    )
