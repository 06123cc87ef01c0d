"""The corruption suite over the native long-tail formats: DeltaVision, MRC, Imaris, Micro-Manager.

Real files where the corpus has them (``../shared/testdata-more``: toxo.dv,
HAADFscan.mrc), files written from the formats' layouts where it has none
(Imaris, Micro-Manager; plus a DeltaVision file with an extended header and an
MRC volume). Every corruption of :mod:`tests.corrupt` (truncations, flips,
lying sizes, an HDF5 dataset pointing into another file...) runs in the child
processes of the corpus suite and must end, within the 10-second watchdog and
1 GiB of peak RSS, in a typed error or a read; a truncated file must never
read as whole with other content.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import pytest

from tests.corrupt import variants
from tests.realdata.test_corruption_suite import MIN_VARIANTS, _run, assert_all_handled
from tests.realdata.test_native_vs_bioformats import NATIVE
from tests.synthetic import encoded_stack
from tests.synthetic_dv import write_dv
from tests.synthetic_ims import write_ims
from tests.synthetic_mm import write_mm_dataset
from tests.testdata_more import manifest_rows, require_testdata_more

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.timeout(600)]


def _files(tmp_path: Path) -> list[Path]:
    root = require_testdata_more()
    real = [root / row["file (local)"] for row in manifest_rows(root) if row["format"] in NATIVE]
    import mrcfile

    volume = tmp_path / "volume.mrc"
    with mrcfile.new(volume) as mrc:
        mrc.set_data(encoded_stack(1, 1, 4, 24, 32, dtype="int16")[0, 0])
        mrc.voxel_size = 3.0
    made = [
        write_dv(tmp_path / "extended.dv", encoded_stack(2, 2, 3, 24, 32)),
        volume,
        write_ims(tmp_path / "cells.ims", shape=(4, 24, 32), times=1, channels=2, levels=2),
        *write_mm_dataset(
            tmp_path / "mm", positions=1, frames=2, channels=1, slices=2, shape=(16, 24)
        ),
    ]
    return real + made


def test_every_corruption_of_the_native_formats_is_handled(tmp_path: Path) -> None:
    (tmp_path / "mm").mkdir()
    files = _files(tmp_path)
    kinds = collections.Counter(p.suffix.lower() for p in files)
    assert {".dv", ".mrc", ".ims", ".tif"} <= set(kinds)
    few = [p.name for p in files if len(variants(p.name, p.read_bytes()[:16])) < MIN_VARIANTS]
    assert not few, f"fewer than {MIN_VARIANTS} corruptions for {few}"
    results = _run(files)
    assert {r["case"].split("::")[0] for r in results} == {p.name for p in files}
    lying = collections.Counter(r["outcome"] for r in results if r["kind"] == "lying-size")
    assert lying["error"] > 20, lying  # the formats' own lies were tried and refused
    assert_all_handled(results)
