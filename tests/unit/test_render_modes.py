"""Which reduction a render of a huge plane uses: maxima for projections, means for slices.

A one-pixel bright spot must survive a reduced MIP (block maximum keeps it at full
brightness) and be averaged in a reduced slice (block mean dims it). The render
limit is set tiny so that a small tiled file takes the region-by-region path.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from PIL import Image

from zstack_analyzer import ReadLimits
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_file

if TYPE_CHECKING:
    from pathlib import Path

SMALL = ReadLimits(max_render_plane_bytes=8192)  # 32 x 32 uint16 tiles (2 KiB) still pass
FULL = ((0.0, 1000.0),)  # a fixed window: the spot is white, the background black


def _brightest(path: Path, spec: RenderSpec) -> int:
    result = render_file(path, spec, limits=SMALL)
    with Image.open(BytesIO(result.data)) as picture:
        return int(np.asarray(picture.convert("L")).max())


def test_projection_keeps_a_one_pixel_spot_and_a_slice_averages_it(tmp_path: Path) -> None:
    stack = np.zeros((3, 240, 320), np.uint16)
    stack[1, 101, 203] = 1000  # one pixel, in one plane
    path = tmp_path / "spot.tif"
    tifffile.imwrite(path, stack, tile=(32, 32), compression="zlib", photometric="minisblack")
    size = {"width": 40, "height": 30, "windows": FULL}  # 8 x 8 blocks
    assert _brightest(path, RenderSpec(kind="mip", **size)) == 255
    assert (
        _brightest(path, RenderSpec(kind="orthogonal", width=120, height=30, windows=FULL)) == 255
    )
    dimmed = _brightest(path, RenderSpec(kind="slice", z=1, **size))
    assert 0 < dimmed < 64  # 1000 / 64 pixels of the block, about 4 / 255


def test_reduced_render_keeps_the_physical_aspect(tmp_path: Path) -> None:
    """Anisotropic pixels and unequal Y/X reduction factors: the picture keeps its shape."""
    from tests.synthetic_tiff import write_ome_tiff

    path = tmp_path / "aniso.ome.tif"
    stack = np.arange(2 * 200 * 330, dtype=np.uint16).reshape(1, 1, 2, 200, 330)
    write_ome_tiff(
        path,
        [stack],
        metadata=[{"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.75}],
        tile=(32, 32),
        compression="zlib",
    )
    for spec in (
        RenderSpec(kind="thumbnail", width=64, height=64),
        RenderSpec(kind="slice", z=1, width=64, height=64),
        RenderSpec(kind="orthogonal", width=192, height=64),
    ):
        whole = render_file(path, spec)
        reduced = render_file(path, spec, limits=SMALL)
        with Image.open(BytesIO(whole.data)) as a, Image.open(BytesIO(reduced.data)) as b:
            assert a.size == b.size, spec.kind
