"""Every file of testdata-more opens with Bio-Formats' sizes, dtype and plane checksum.

The reference is ``MANIFEST.md`` (Bio-Formats 7.3.1's own values). Each file is
read twice where that differs: by the fallback reader directly (so a format a
native reader claims, DeltaVision and MRC once theirs are registered, and the
FEI SEM TIFF the TIFF reader claims, is still checked through Bio-Formats), and
through ``open_image`` (whichever reader the registry picks; when that is the
fallback, the same values). Physical sizes are compared in µm where the
MANIFEST gives them. Documented differences: none in sizes or pixels; the
MANIFEST's doubts (DM units, ICS without calibration) are Bio-Formats' own
values and are what the fallback reports.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.bioformats.conftest import sizes
from tests.testdata_more import length_um, manifest_rows
from zstack_analyzer import open_image
from zstack_analyzer.readers.bioformats.reader import BioformatsReader

if TYPE_CHECKING:
    from pathlib import Path

    from zstack_analyzer.readers.bioformats.pool import WorkerPool

pytestmark = [pytest.mark.realdata, pytest.mark.xdist_group("bioformats")]

ROWS = manifest_rows()
_DTYPES = {"float": "float32", "double": "float64"}


def _checksum(plane: np.ndarray) -> tuple[float, float]:
    if np.issubdtype(plane.dtype, np.floating):
        return float(plane.astype(np.float64).sum()), float(plane.max())
    return float(plane.astype(np.int64).sum()), float(plane.max())


def _check(reader: Any, row: dict[str, str]) -> None:
    expected = tuple(int(row[k]) for k in ("T", "C", "Z", "Y", "X"))
    assert sizes(reader) == expected
    assert len(reader.scenes()) == int(row["series"])
    assert reader.scene_info(0).dtype == _DTYPES.get(row["pixel type"], row["pixel type"])
    total, peak = _checksum(reader.read_plane(0, 0, 0, 0))
    assert math.isclose(total, float(row["plane(0,0,0) sum"]), rel_tol=1e-6)
    assert math.isclose(peak, float(row["plane max"]), rel_tol=1e-6)
    metadata = reader.metadata(0)
    for axis, column in (("x_um", "PhysSizeX"), ("y_um", "PhysSizeY"), ("z_um", "PhysSizeZ")):
        want = length_um(row[column])
        got = getattr(metadata.physical_size, axis)
        if want is None:
            assert got is None, (axis, got)
        else:
            assert got is not None and math.isclose(got, want, rel_tol=1e-4), (axis, got, want)


@pytest.mark.parametrize("row", ROWS, ids=[r["file (local)"] for r in ROWS])
def test_fallback_reads_it_as_bioformats_does(
    row: dict[str, str], testdata_more: Path, bf_pool: WorkerPool
) -> None:
    path = testdata_more / row["file (local)"]
    with BioformatsReader(path) as reader:
        _check(reader, row)
        assert reader.reader_name == row["BF reader"]
        metadata = reader.metadata(0)
        assert metadata.provenance["file_format"] == f"Bio-Formats {row['BF reader']}"
        # No file here gets channel names from Bio-Formats (MANIFEST).
        assert all(channel.name is None for channel in metadata.channels)
        # The lazy array reads plane by plane and agrees with read_plane.
        info = reader.scene_info(0)
        lazy = reader.to_dask(0)
        last = (info.size_t - 1, info.size_c - 1, info.size_z - 1)
        np.testing.assert_array_equal(lazy[last].compute(), reader.read_plane(0, *last))


@pytest.mark.parametrize("row", ROWS, ids=[r["file (local)"] for r in ROWS])
def test_open_image_reads_it(row: dict[str, str], testdata_more: Path, bf_pool: WorkerPool) -> None:
    path = testdata_more / row["file (local)"]
    with open_image(path) as reader:
        if not isinstance(reader, BioformatsReader):
            # A native reader claims it (FEI SEM TIFF: the TIFF reader); it must still agree
            # on sizes and pixels.
            assert sizes(reader)[3:] == (int(row["Y"]), int(row["X"]))
            total, _ = _checksum(reader.read_plane(0, 0, 0, 0))
            assert math.isclose(total, float(row["plane(0,0,0) sum"]), rel_tol=1e-6)
            return
        _check(reader, row)
        assert reader.metadata(0).file_format.endswith("(Bio-Formats)")
