"""DeltaVision, MRC, Imaris and Micro-Manager readers on files written from their layouts.

The real DeltaVision and MRC files of ``../shared/testdata-more`` are checked
against Bio-Formats in tests/realdata/test_native_vs_bioformats.py; these
files cover what the real ones do not: every DeltaVision section order, an
extended header, MRC volume stacks and byte orders, Imaris pyramids (no real
Imaris or Micro-Manager file is in the corpus), multi-file Micro-Manager
datasets, and files that lie about their sizes.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_dv import write_dv
from tests.synthetic_ims import ims_pixels, write_ims
from tests.synthetic_mm import mm_pixels, write_mm_dataset, write_ndtiff_dataset
from zstack_analyzer import CorruptFileError, LimitExceededError, UnsupportedFormatError, open_image
from zstack_analyzer.readers.dv import DeltaVisionReader
from zstack_analyzer.readers.ims import ImarisReader
from zstack_analyzer.readers.micromanager import MicroManagerReader
from zstack_analyzer.readers.mrc import MrcReader
from zstack_analyzer.readers.ndtiff import NdTiffReader

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- DeltaVision
@pytest.mark.parametrize("sequence", [0, 1, 2])
def test_dv_every_section_order_gives_the_written_planes(tmp_path: Path, sequence: int) -> None:
    stack = encoded_stack(2, 3, 4, 20, 24)
    path = write_dv(tmp_path / f"seq{sequence}.dv", stack, sequence=sequence, waves=(450, 525, 615))
    assert_reader_contract(DeltaVisionReader, path, stack)


def test_dv_metadata_from_header_and_extended_header(tmp_path: Path) -> None:
    stack = encoded_stack(3, 2, 5, 16, 16)
    path = write_dv(tmp_path / "cells.dv", stack, voxel_um=(0.0645, 0.0645, 0.2), waves=(525, 615))
    with open_image(path) as image:
        md = image.metadata()
    assert md.file_format == "DeltaVision"
    assert (md.physical_size.x_um, md.physical_size.z_um) == (0.0645, 0.2)  # float32 as written
    assert [c.emission_nm for c in md.channels] == [525.0, 615.0]
    assert [c.excitation_nm for c in md.channels] == [488.0, 588.0]
    assert [c.exposure_ms for c in md.channels] == pytest.approx([50.0, 100.0])
    assert md.time_interval_s == pytest.approx(2.5)
    assert md.provenance["physical_size.x_um"].startswith("DeltaVision header")
    assert md.vendor_metadata["header"]["title"] == ["synthetic DeltaVision file"]


def test_dv_big_endian_and_regions(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 30, 40)
    path = write_dv(tmp_path / "be.dv", stack, byteorder=">", extended=False, waves=(520,))
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), stack[0, 0, 2])
        assert image.region_grid(0) == (1, 40)
        region = image.read_region(0, 0, 0, 1, (7, 19), (3, 31))
        np.testing.assert_array_equal(region, stack[0, 0, 1, 7:19, 3:31])
        out = np.empty((30, 40), "uint16")
        image.read_plane_into(0, 0, 0, 1, out)
        np.testing.assert_array_equal(out, stack[0, 0, 1])


def _patched(path: Path, offset: int, fmt: str, *values: int) -> Path:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        ((0, "<i", 1 << 19), CorruptFileError, "truncated or its header lies"),  # width x 16k
        ((0, "<i", 1 << 30), LimitExceededError, "over the limit"),
        ((8, "<i", 0), CorruptFileError, "corrupt"),
        ((8, "<i", 7), CorruptFileError, "do not divide"),
        ((12, "<i", 3), UnsupportedFormatError, "complex"),
        ((12, "<i", 99), CorruptFileError, "pixel type 99"),
        ((92, "<i", 1 << 30), CorruptFileError, "over the metadata limit"),
        ((92, "<i", 40_000), CorruptFileError, "truncated"),
        ((182, "<h", 9), CorruptFileError, "image sequence 9"),
    ],
)
def test_dv_lying_headers_are_typed_errors(
    tmp_path: Path, edit: tuple[int, str, int], error: type[Exception], words: str
) -> None:
    path = write_dv(tmp_path / "lie.dv", encoded_stack(1, 2, 3, 16, 16), extended=False)
    _patched(path, edit[0], edit[1], edit[2])
    with pytest.raises(error, match=words):
        open_image(path)


def test_dv_truncated_file_is_refused_at_open(tmp_path: Path) -> None:
    path = write_dv(tmp_path / "cut.dv", encoded_stack(1, 2, 3, 16, 16))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptFileError, match="truncated"):
        open_image(path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CorruptFileError, match="cut short"):
        open_image(path)


# ----------------------------------------------------------------------------- MRC
def _write_mrc(
    path: Path, data: np.ndarray, *, voxel: float = 2.5, ispg: int | None = None
) -> Path:
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
        if ispg is not None:
            mrc.header.ispg = ispg
            mrc.header.mz = data.shape[1]
        mrc.update_header_stats()
    return path


def test_mrc_volume_through_mrcfiles_writer(tmp_path: Path) -> None:
    volume = encoded_stack(1, 1, 5, 12, 20, dtype="int16")[0, 0]
    path = _write_mrc(tmp_path / "map.mrc", volume, voxel=2.5)
    # mrcfile writes rows bottom first (y up): the canonical plane is the rows turned over.
    expected = volume[:, ::-1][None, None]
    assert_reader_contract(MrcReader, path, expected)
    with open_image(path) as image:
        md = image.metadata()
        assert md.physical_size.x_um == pytest.approx(2.5e-4)  # 2.5 Å
        assert md.physical_size.z_um == pytest.approx(2.5e-4)
        region = image.read_region(0, 0, 0, 3, (2, 9), (4, 15))
        np.testing.assert_array_equal(region, expected[0, 0, 3, 2:9, 4:15])


def test_mrc_volume_stack_is_t_volumes_of_mz(tmp_path: Path) -> None:
    stack = np.arange(3 * 4 * 6 * 8, dtype=np.float32).reshape(3, 4, 6, 8)
    path = _write_mrc(tmp_path / "vols.mrc", stack, ispg=401)
    with open_image(path) as image:
        info = image.scenes()[0]
        assert (info.size_t, info.size_z) == (3, 4)
        np.testing.assert_array_equal(image.read_plane(0, 2, 0, 1), stack[2, 1][::-1])


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        ((12, "<i", 3), UnsupportedFormatError, "complex int16"),
        ((12, "<i", 42), CorruptFileError, "mode 42"),
        ((0, "<i", -4), CorruptFileError, "corrupt"),
        ((8, "<i", 1 << 21), LimitExceededError, "over the limit"),
        ((8, "<i", 1000), CorruptFileError, "truncated"),
        ((92, "<i", 1 << 29), CorruptFileError, "over the metadata limit"),
    ],
)
def test_mrc_lying_headers_are_typed_errors(
    tmp_path: Path, edit: tuple[int, str, int], error: type[Exception], words: str
) -> None:
    path = _write_mrc(tmp_path / "lie.mrc", np.zeros((2, 8, 8), np.int16))
    _patched(path, edit[0], edit[1], edit[2])
    with pytest.raises(error, match=words):
        open_image(path)


# ----------------------------------------------------------------------------- Imaris
def test_ims_contract_and_metadata(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "cells.ims", shape=(6, 40, 52), times=2, channels=2)
    expected = np.stack(
        [np.stack([ims_pixels(t, c, (6, 40, 52), "uint16") for c in range(2)]) for t in range(2)]
    )
    assert_reader_contract(ImarisReader, path, expected)
    with open_image(path) as image:
        md = image.metadata()
        assert (md.physical_size.x_um, md.physical_size.z_um) == pytest.approx((0.2, 1.0))
        assert [c.name for c in md.channels] == ["DAPI", "GFP"]
        assert [c.color for c in md.channels] == ["#0000FF", "#00FF00"]
        assert [c.emission_nm for c in md.channels] == [450.0, 520.0]
        assert md.time_interval_s == pytest.approx(60.0)
        assert md.scene_name == "synthetic cells"
        assert md.pyramid_levels == [(40, 52), (20, 26)]


def test_ims_pyramid_levels_and_regions_read_the_stored_chunks(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "p.ims", shape=(8, 64, 80), times=1, channels=1, levels=3)
    full = ims_pixels(0, 0, (8, 64, 80), "uint16")
    with open_image(path) as image:
        assert image.level_count() == 3
        assert image.region_grid(0) == (16, 16)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 5, (3, 40), (7, 61)), full[5, 3:40, 7:61]
        )
        level = image.to_dask(0, 2)
        assert level.shape == (1, 1, 8, 16, 20)  # Z as at full resolution
        # level 2 stores Z=2 planes (every 4th): z=5 is served by its plane 1 (= full z 4)
        np.testing.assert_array_equal(np.asarray(level[0, 0, 5]), full[4, ::4, ::4])
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 5, (2, 9), (3, 11), level=1), full[4, ::2, ::2][2:9, 3:11]
        )


def test_ims_refuses_external_storage_and_short_data(tmp_path: Path) -> None:
    import h5py

    path = write_ims(tmp_path / "ext.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)
    (tmp_path / "secret.bin").write_bytes(b"\x01" * 256)
    with h5py.File(path, "a") as f:
        group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]
        del group["Data"]
        group.create_dataset(
            "Data", shape=(2, 8, 8), dtype="u2", external=[(str(tmp_path / "secret.bin"), 0, 256)]
        )
    with pytest.raises(CorruptFileError, match="external or virtual"):
        open_image(path)
    short = write_ims(tmp_path / "short.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)
    with h5py.File(short, "a") as f:
        f["DataSetInfo/Image"].attrs["X"] = np.array([b"9", b"0", b"0"], "S1")
    with pytest.raises(CorruptFileError, match="smaller than the declared"):
        open_image(short)


def test_ims_truncated_is_corrupt(tmp_path: Path) -> None:
    path = write_ims(tmp_path / "cut.ims", shape=(2, 8, 8), times=1, channels=1, levels=1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptFileError):
        open_image(path)


# ----------------------------------------------------------------------------- Micro-Manager
def test_mm_dataset_opens_whole_from_any_file(tmp_path: Path) -> None:
    files = write_mm_dataset(tmp_path, positions=2, frames=3, channels=2, slices=4, split=10)
    assert len(files) == 6  # two positions, each in three files (continuation _1, _2)
    for opened in (files[0], files[4]):
        with open_image(opened) as image:
            assert isinstance(image, MicroManagerReader)
            assert [(s.name, s.shape) for s in image.scenes()] == [
                ("Pos0", (3, 2, 4, 24, 32)),
                ("Pos1", (3, 2, 4, 24, 32)),
            ]
            for p, t, c, z in [(0, 0, 0, 0), (1, 2, 1, 3), (0, 1, 1, 2), (1, 0, 0, 1)]:
                np.testing.assert_array_equal(
                    image.read_plane(p, t, c, z), mm_pixels(c, z, t, p, (24, 32), "uint16")
                )


def test_mm_contract_and_metadata(tmp_path: Path) -> None:
    files = write_mm_dataset(tmp_path, positions=1, frames=2, channels=2, slices=3)
    expected = np.stack(
        [
            np.stack(
                [
                    np.stack([mm_pixels(c, z, t, 0, (24, 32), "uint16") for z in range(3)])
                    for c in range(2)
                ]
            )
            for t in range(2)
        ]
    )
    assert_reader_contract(MicroManagerReader, files[0], expected)
    with open_image(files[0]) as image:
        md = image.metadata()
    assert md.file_format == "Micro-Manager"
    assert (md.physical_size.x_um, md.physical_size.z_um) == (0.65, 1.5)
    assert [c.name for c in md.channels] == ["ChDAPI", "ChGFP"]
    assert [c.exposure_ms for c in md.channels] == [10.0, 20.0]
    assert [c.color for c in md.channels] == ["#0000FF", "#00FF00"]
    assert md.time_interval_s == pytest.approx(0.5)
    assert (
        md.acquired_at is not None
        and md.acquired_at.isoformat() == "2024-03-01T11:30:05.123000+00:00"
    )
    assert md.microscope is not None and md.microscope.software_version == "2.0.3 20240301"


def test_mm_aborted_acquisition_and_missing_file(tmp_path: Path) -> None:
    files = write_mm_dataset(
        tmp_path, positions=1, frames=2, channels=1, slices=2, planned_frames=10, split=2
    )
    files[1].unlink()  # frame 1 lost
    with open_image(files[0]) as image:
        assert image.scenes()[0].size_t == 1  # the frames written, not the 10 planned
        md = image.metadata()
    assert any("planned Frames=10" in w for w in md.warnings)


def test_mm_index_map_lies_are_typed_errors(tmp_path: Path) -> None:
    (path,) = write_mm_dataset(tmp_path, positions=1, frames=1, channels=1, slices=2)
    data = bytearray(path.read_bytes())
    (index_at,) = struct.unpack_from("<I", data, 12)
    original = bytes(data)
    struct.pack_into("<I", data, index_at + 4, 10**8)  # count: more rows than the file holds
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="more than the file holds"):
        open_image(path)
    data = bytearray(original)
    struct.pack_into("<I", data, index_at + 8 + 8, 4_000_000)  # first row's frame index
    path.write_bytes(bytes(data))
    with pytest.raises(LimitExceededError):
        open_image(path)
    data = bytearray(original)
    struct.pack_into("<I", data, index_at + 8 + 16, len(data) + 5)  # IFD offset past the end
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="truncated"):
        open_image(path)
    data = bytearray(original)
    struct.pack_into("<I", data, 36, 10**9)  # summary length
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="summary claims"):
        open_image(path)


# ----------------------------------------------------------------------------- NDTiff
def _ndtiff_expected(positions: int, frames: int, channels: int, slices: int) -> np.ndarray:
    return np.stack(
        [
            np.stack(
                [
                    np.stack([mm_pixels(c, z, t, 0, (20, 28), "uint16") for z in range(slices)])
                    for c in range(channels)
                ]
            )
            for t in range(frames)
        ]
    )


def test_ndtiff_contract_agrees_with_tifffile(tmp_path: Path) -> None:
    import tifffile

    files = write_ndtiff_dataset(tmp_path, frames=2, channels=2, slices=3, split=5, z_offset=-2)
    expected = _ndtiff_expected(1, 2, 2, 3)
    assert_reader_contract(NdTiffReader, files[1], expected)
    with tifffile.TiffFile(files[0]) as tif:  # tifffile's own NDTiff series: the same pixels
        np.testing.assert_array_equal(tif.series[0].asarray(), expected)
    with open_image(files[0]) as image:
        md = image.metadata()
        assert md.file_format == "NDTiff"
        assert [c.name for c in md.channels] == ["DAPI", "GFP"]
        assert [c.exposure_ms for c in md.channels] == [5.0, 10.0]
        assert (md.physical_size.x_um, md.physical_size.z_um) == (0.325, 0.8)
        assert md.time_interval_s == pytest.approx(1.0)
        region = image.read_region(0, 1, 1, 2, (4, 15), (3, 22))
        np.testing.assert_array_equal(region, expected[1, 1, 2, 4:15, 3:22])


def test_ndtiff_positions_are_scenes(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, positions=3, frames=1, channels=1, slices=2)
    with open_image(files[0]) as image:
        assert len(image.scenes()) == 3
        np.testing.assert_array_equal(
            image.read_plane(2, 0, 0, 1), mm_pixels(0, 1, 0, 2, (20, 28), "uint16")
        )


def test_ndtiff_broken_datasets_are_typed_errors(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2, split=1)
    index = tmp_path / "NDTiff.index"
    original = index.read_bytes()
    files[1].write_bytes(files[1].read_bytes()[:300])  # the second stack cut short
    with pytest.raises(CorruptFileError, match="past the end"):
        open_image(files[0])
    index.write_bytes(original[:-10])
    with pytest.raises(CorruptFileError, match="cut short"):
        open_image(files[0])
    index.write_bytes(original.replace(b"acq_NDTiffStack.tif", b"../aNDTiffStack.tif", 1))
    with pytest.raises(CorruptFileError, match="not a file beside it"):
        open_image(files[0])
    index.unlink()
    with pytest.raises(CorruptFileError, match=r"NDTiff\.index is not beside it"):
        open_image(files[0])


def test_mm_file_never_closed_is_read_from_its_pages(tmp_path: Path) -> None:
    (path,) = write_mm_dataset(tmp_path, positions=1, frames=2, channels=2, slices=2)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 12, 0)  # the index map offset Micro-Manager writes at close
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.scenes()[0].shape == (2, 2, 2, 24, 32)
        np.testing.assert_array_equal(
            image.read_plane(0, 1, 1, 0), mm_pixels(1, 0, 1, 0, (24, 32), "uint16")
        )
        assert any("no index map" in w for w in image.metadata().warnings)


@pytest.mark.parametrize(
    ("stamp", "flags", "dtype"),
    [(0, 0, "int8"), (1146047817, 1, "int8"), (1146047817, 0, "uint8")],
    ids=["mrc2014", "imod-signed", "imod-unsigned"],
)
def test_mrc_mode_0_sign_follows_imods_flag(
    tmp_path: Path, stamp: int, flags: int, dtype: str
) -> None:
    raw = (np.arange(2 * 6 * 8) * 5 % 256).astype(np.uint8).reshape(2, 6, 8)
    path = _write_mrc(tmp_path / "bytes.mrc", raw.view(np.int8))
    _patched(path, 152, "<2i", stamp, flags)
    with open_image(path) as image:
        assert image.metadata().dtype == dtype
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), raw[1][::-1].view(dtype))
