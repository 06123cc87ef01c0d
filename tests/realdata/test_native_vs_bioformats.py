"""The native long-tail readers agree with Bio-Formats 7.3.1 on every real file of their formats.

``../shared/testdata-more`` (or ``$ZSTACK_TESTDATA_MORE``) holds real files of
formats Bio-Formats reads, with Bio-Formats' sizes, pixel type, voxel size and
plane (0, 0, 0) checksum in its MANIFEST.md. Each file of a format a native
reader handles (DeltaVision, MRC) must open with that reader and give those
values; and, through Bio-Formats itself (scripts/bioformats_planes.py, one
JVM), the same sizes, voxel size and **every** plane byte for byte, which the
MANIFEST's plane 0 alone cannot show (a wrong section order keeps it right).
Imaris and Micro-Manager have no real file here: tests/readers/test_native_formats.py.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.needs import unavailable
from tests.testdata_more import (
    length_um,
    manifest_rows,
    require_testdata_more,
)
from zstack_analyzer import open_image

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.realdata, pytest.mark.timeout(300)]

SCRIPTS = REPO_ROOT / "scripts"
#: MANIFEST "format" column -> the native reader that must open the file.
NATIVE = {"dv": "DeltaVision", "mrc": "MRC"}
_TYPES = {"float": "float32", "double": "float64"}
#: Bio-Formats writes voxel sizes as float32 (and MANIFEST rounds to 6 digits).
REL = 1e-5


@pytest.fixture(scope="module")
def more() -> Path:
    return require_testdata_more()


@pytest.fixture(scope="module")
def native_rows(more: Path) -> list[dict[str, str]]:
    rows = [row for row in manifest_rows(more) if row["format"] in NATIVE]
    # Every native format has its real file(s): the test cannot pass on an empty list.
    assert {row["format"] for row in rows} == set(NATIVE)
    return rows


def _ours(path: Path) -> dict[str, Any]:
    with open_image(path) as image:
        md = image.metadata()
        info = image.scenes()[0]
        planes = {
            (t, c, z): image.read_plane(0, t, c, z)
            for t in range(info.size_t)
            for c in range(info.size_c)
            for z in range(info.size_z)
        }
        return {
            "format": md.file_format,
            "scenes": len(image.scenes()),
            "sizes": {
                "T": md.size_t,
                "C": md.size_c,
                "Z": md.size_z,
                "Y": md.size_y,
                "X": md.size_x,
            },
            "dtype": md.dtype,
            "physical_um": [md.physical_size.x_um, md.physical_size.y_um, md.physical_size.z_um],
            "planes": planes,
        }


def _same_length(ours: float | None, theirs: float | None) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    return bool(np.isclose(ours, theirs, rtol=REL, atol=0))


def test_native_readers_give_the_manifest_values(
    more: Path, native_rows: list[dict[str, str]]
) -> None:
    for row in native_rows:
        path = more / row["file (local)"]
        ours = _ours(path)
        assert ours["format"] == NATIVE[row["format"]], path.name
        assert ours["scenes"] == int(row["series"]), path.name
        assert ours["sizes"] == {axis: int(row[axis]) for axis in "TCZYX"}, path.name
        assert ours["dtype"] == _TYPES.get(row["pixel type"], row["pixel type"]), path.name
        for ours_um, column in zip(
            ours["physical_um"], ("PhysSizeX", "PhysSizeY", "PhysSizeZ"), strict=True
        ):
            assert _same_length(ours_um, length_um(row[column])), f"{path.name} {column}: {ours_um}"
        plane = ours["planes"][(0, 0, 0)]
        wide = plane.astype(np.float64 if plane.dtype.kind == "f" else np.int64)
        assert float(wide.sum()) == float(row["plane(0,0,0) sum"]), path.name
        assert float(plane.max()) == float(row["plane max"]), path.name


def test_native_readers_agree_with_bioformats_on_every_plane(
    more: Path, native_rows: list[dict[str, str]]
) -> None:
    if importlib.util.find_spec("jpype") is None:
        unavailable("jpype1 (the dev extra) is not installed: Bio-Formats runs through it")
    sys.path.insert(0, str(SCRIPTS))
    import bioformats_planes  # type: ignore[import-not-found]
    import bioformats_ref  # type: ignore[import-not-found]

    try:
        jar = bioformats_ref.jar_path()
    except bioformats_ref.BioFormatsUnavailable as exc:
        unavailable(f"Bio-Formats: {exc}")
    files = [more / row["file (local)"] for row in native_rows]
    reference = bioformats_planes.planes(files, jar)
    for path in files:
        theirs = reference[str(path)]
        assert "error" not in theirs, f"Bio-Formats cannot read {path.name}: {theirs}"
        ours = _ours(path)
        assert ours["sizes"] == theirs["sizes"], path.name
        assert ours["dtype"] == theirs["dtype"], path.name
        for axis, (a, b) in enumerate(zip(ours["physical_um"], theirs["physical_um"], strict=True)):
            assert _same_length(a, b), f"{path.name} axis {'XYZ'[axis]}: ours {a}, Bio-Formats {b}"
        assert len(theirs["planes"]) == len(ours["planes"]), path.name
        for key, digest in theirs["planes"].items():
            t, c, z = (int(v) for v in key.split(","))
            assert bioformats_planes.plane_digest(ours["planes"][(t, c, z)]) == digest, (
                f"{path.name} plane t={t} c={c} z={z} differs from Bio-Formats'"
            )


def test_manifest_parser_reads_units() -> None:
    assert length_um("56.7913 Å") == pytest.approx(0.00567913)
    assert length_um("7.70833e-06 mm") == pytest.approx(0.00770833)
    assert length_um("-") is None


def test_synthetic_files_agree_with_bioformats_except_the_documented(tmp_path: Path) -> None:
    """The DeltaVision cases the real file lacks, and an Imaris file, agree with Bio-Formats plane
    for plane; the MRC cases where we part (docs/bioformats-comparison.md) still part the
    documented way."""
    if importlib.util.find_spec("jpype") is None:
        unavailable("jpype1 (the dev extra) is not installed: Bio-Formats runs through it")
    import mrcfile

    from tests.synthetic import encoded_stack
    from tests.synthetic_dv import write_dv

    sys.path.insert(0, str(SCRIPTS))
    import bioformats_planes
    import bioformats_ref

    try:
        jar = bioformats_ref.jar_path()
    except bioformats_ref.BioFormatsUnavailable as exc:
        unavailable(f"Bio-Formats: {exc}")
    agreeing = [
        write_dv(
            tmp_path / f"seq{s}.dv",
            encoded_stack(2, 3, 4, 20, 24),
            sequence=s,
            waves=(450, 525, 615),
        )
        for s in (0, 1, 2)
    ]
    agreeing.append(
        write_dv(tmp_path / "be.dv", encoded_stack(1, 2, 3, 20, 24), byteorder=">", extended=False)
    )
    int8 = tmp_path / "int8.mrc"
    with mrcfile.new(int8) as mrc:
        mrc.set_data((np.arange(2 * 10 * 12) % 256 - 128).astype(np.int8).reshape(2, 10, 12))
    vols = tmp_path / "vols.mrc"
    with mrcfile.new(vols) as mrc:
        mrc.set_data(np.arange(3 * 4 * 6 * 8, dtype=np.float32).reshape(3, 4, 6, 8))
        mrc.header.ispg = 401
        mrc.header.mz = 4
    reference = bioformats_planes.planes([*agreeing, int8, vols], jar)
    for path in agreeing:
        theirs = reference[str(path)]
        ours = _ours(path)
        assert ours["sizes"] == theirs["sizes"], path.name
        for a, b in zip(ours["physical_um"], theirs["physical_um"], strict=True):
            assert _same_length(a, b), path.name
        for key, digest in theirs["planes"].items():
            t, c, z = (int(v) for v in key.split(","))
            assert bioformats_planes.plane_digest(ours["planes"][(t, c, z)]) == digest, (
                path.name,
                key,
            )
    # mode 0: the same bytes, signed here (MRC2014), unsigned in Bio-Formats
    assert (_ours(int8)["dtype"], reference[str(int8)]["dtype"]) == ("int8", "uint8")
    ours_int8 = _ours(int8)["planes"]
    for key, digest in reference[str(int8)]["planes"].items():
        t, c, z = (int(v) for v in key.split(","))
        unsigned = ours_int8[(t, c, z)].view(np.uint8)
        assert bioformats_planes.plane_digest(unsigned) == digest, key
    # a volume stack: T x Z here, all sections as Z in Bio-Formats, the same bytes in order
    ours_vols = _ours(vols)
    assert (ours_vols["sizes"]["T"], ours_vols["sizes"]["Z"]) == (3, 4)
    assert (reference[str(vols)]["sizes"]["T"], reference[str(vols)]["sizes"]["Z"]) == (1, 12)
    for key, digest in reference[str(vols)]["planes"].items():
        z = int(key.split(",")[2])
        assert bioformats_planes.plane_digest(ours_vols["planes"][(z // 4, 0, z % 4)]) == digest
