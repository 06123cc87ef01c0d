"""Views built on regions work on Bio-Formats files: the virtual OME-Zarr and deep-zoom tiles.

The virtual OME-Zarr's level 0 is the file's planes read region by region
(``openBytes`` with a rectangle, on Bio-Formats' optimal tile grid); deep-zoom
tiles are rendered from its levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from zstack_analyzer.readers.bioformats.reader import BioformatsReader
from zstack_analyzer.zarr.tiles import render_tile
from zstack_analyzer.zarr.virtual import VirtualOmeZarr

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.readers.bioformats.pool import WorkerPool

pytestmark = [pytest.mark.realdata, pytest.mark.xdist_group("bioformats")]


def test_virtual_ome_zarr_and_tiles_of_a_bioformats_file(
    bf_pool: WorkerPool, testdata_more: Path
) -> None:
    path = testdata_more / "cellomics" / "iamac01file.c01"
    with BioformatsReader(path) as reader:
        plane = reader.read_plane(0, 0, 0, 0)
        store = VirtualOmeZarr(reader, cache=None, identity="c01")
        zarray = store.zarray(0, 0)
        assert zarray["shape"] == [1, 1, 1, 512, 512]
        ch, cw = zarray["chunks"][3:]
        grid = store.chunk_grid(0, 0)
        cy, cx = grid[3] - 1, grid[4] - 1  # the last (edge) chunk
        chunk = np.frombuffer(store.chunk(0, 0, 0, 0, 0, cy, cx), dtype="<u2").reshape(ch, cw)
        expected = plane[cy * ch : (cy + 1) * ch, cx * cw : (cx + 1) * cw]
        np.testing.assert_array_equal(chunk[: expected.shape[0], : expected.shape[1]], expected)
        assert chunk.any()
        png = render_tile(store, 0, len(store.layout(0).levels) - 1, 0, 0)
        assert png.startswith(b"\x89PNG")
