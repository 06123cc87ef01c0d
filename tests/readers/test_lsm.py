"""Zeiss LSM reader on LSM files built from the format's description (none in the corpus)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_lsm import LSM_MAGIC, write_lsm
from zstack_analyzer import CorruptFileError, ImageLoadError, open_image
from zstack_analyzer.readers.lsm import LsmReader

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def test_lsm_opens_instead_of_invalid_tiff(tmp_path: Path) -> None:
    """Regression: an LSM was refused as "invalid TIFF structure" (planar channels under T,Z)."""
    stack = encoded_stack(2, 3, 4, 20, 24)
    path = write_lsm(tmp_path / "cells.lsm", stack, timestamps=[10.0, 12.5])
    assert_reader_contract(LsmReader, path, stack)


def test_lsm_metadata_from_cz_lsminfo(tmp_path: Path) -> None:
    stack = encoded_stack(2, 2, 3, 16, 18)
    path = write_lsm(
        tmp_path / "md.lsm",
        stack,
        voxel_m=(0.1e-6, 0.12e-6, 0.5e-6),
        names=["Ch1-T1", "ChS1-T2"],
        colors=[(0, 255, 0), (255, 0, 255)],
        timestamps=[100.0, 103.0],
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.file_format == "LSM"
    assert (md.size_t, md.size_c, md.size_z, md.size_y, md.size_x) == (2, 2, 3, 16, 18)
    assert md.physical_size.x_um == pytest.approx(0.1)
    assert md.physical_size.y_um == pytest.approx(0.12)
    assert md.physical_size.z_um == pytest.approx(0.5)
    assert md.provenance["physical_size.x_um"] == "CZ_LSMINFO VoxelSizeX (m)"
    assert [c.name for c in md.channels] == ["Ch1-T1", "ChS1-T2"]
    assert [c.color for c in md.channels] == ["#00FF00", "#FF00FF"]
    assert md.channels[0].excitation_nm == pytest.approx(488)
    assert md.time_interval_s == pytest.approx(3.0)
    assert md.objective is not None
    assert (md.objective.magnification, md.objective.numerical_aperture) == (63, 1.4)
    assert md.objective.immersion == "Oil"
    assert md.vendor_metadata["TimeStamps"] == [100.0, 103.0]


def test_thumbnails_are_never_data(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 20, 20)
    path = write_lsm(tmp_path / "thumbs.lsm", stack)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 6  # image, thumbnail, image, thumbnail...
    with open_image(path) as image:
        assert image.metadata().size_z == 3
        np.testing.assert_array_equal(image.to_dask(0).compute(), stack)


def test_single_channel_compressed(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 32, 30)
    path = write_lsm(tmp_path / "one.lsm", stack, compression="zlib")
    assert_reader_contract(LsmReader, path, stack)


# --------------------------------------------------------------------------- bad input
def _everything(path: Path) -> None:
    with open_image(path) as image:
        info = image.scenes()[0]
        image.metadata()
        for t in range(info.size_t):
            for c in range(info.size_c):
                for z in range(info.size_z):
                    image.read_plane(0, t, c, z)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_lsm(tmp_path: Path, fraction: float) -> None:
    data = write_lsm(tmp_path / "whole.lsm", encoded_stack(2, 2, 3, 24, 24)).read_bytes()
    path = tmp_path / "cut.lsm"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageLoadError, match=r"cut\.lsm"):
        _everything(path)


def _patch_lsminfo(path: Path, field: str, fmt: str, value: float) -> None:
    data = bytearray(path.read_bytes())
    start = data.find(struct.pack("<I", LSM_MAGIC))
    offset = np.dtype(tifffile.TIFF.CZ_LSMINFO).fields[field][1]  # type: ignore[index]
    data[start + offset : start + offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


def test_lsminfo_claims_more_planes_than_pages(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "lies.lsm", encoded_stack(1, 1, 3, 16, 16))
    _patch_lsminfo(path, "DimensionZ", "<i", 10**6)
    with pytest.raises(CorruptFileError, match=r"lies\.lsm"):
        _everything(path)


def test_lsminfo_negative_voxel_size_is_no_calibration(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "neg.lsm", encoded_stack(1, 1, 2, 16, 16))
    _patch_lsminfo(path, "VoxelSizeX", "<d", -1.0)
    with open_image(path) as image:
        assert image.metadata().physical_size.x_um is None


def test_lsm_block_offset_past_end_is_ignored(tmp_path: Path) -> None:
    """A ChannelColors offset pointing past EOF loses names, never the image."""
    path = write_lsm(tmp_path / "far.lsm", encoded_stack(1, 2, 2, 16, 16))
    _patch_lsminfo(path, "OffsetChannelColors", "<I", 2**31)
    with open_image(path) as image:
        md = image.metadata()
        assert md.size_c == 2
        assert [c.name for c in md.channels] == ["Ch1-T1", "Ch2-T1"]  # from ScanInformation


@pytest.mark.parametrize("seed", range(5))
def test_header_byte_flips(tmp_path: Path, seed: int) -> None:
    data = bytearray(write_lsm(tmp_path / "ok.lsm", encoded_stack(1, 2, 2, 16, 16)).read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.integers(4, 600, size=8):
        data[int(position)] ^= 0xFF
    path = tmp_path / "flipped.lsm"
    path.write_bytes(bytes(data))
    try:
        _everything(path)
    except ImageLoadError as exc:
        assert "flipped.lsm" in str(exc)


def test_lsm_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    from zstack_analyzer.registry import detect_reader

    path = write_lsm(tmp_path / "renamed.tif", encoded_stack(1, 1, 2, 8, 8))
    assert detect_reader(path) is LsmReader


def test_xz_line_scan_is_y1_with_z_lines(tmp_path: Path) -> None:
    """DESIGN §3: an XZ line scan is Y=1 and Z=n lines, Y voxel size None."""
    stack = encoded_stack(1, 2, 12, 1, 30)
    path = write_lsm(tmp_path / "xz.lsm", stack, line_scan=True)
    assert_reader_contract(LsmReader, path, stack)
    with open_image(path) as image:
        md = image.metadata()
    assert (md.size_z, md.size_y, md.size_x) == (12, 1, 30)
    assert md.physical_size.y_um is None
    assert md.physical_size.x_um == pytest.approx(0.2)
    assert any("line scan" in w for w in md.warnings)


# --------------------------------------------------------------------------- open without series
@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((2, 3, 4, 20, 24), {}),
        ((1, 1, 2, 32, 30), {"compression": "zlib"}),
        ((1, 2, 12, 1, 30), {"line_scan": True}),
        ((3, 1, 1, 8, 8), {}),
    ],
)
def test_layout_agrees_with_tifffile_series(
    tmp_path: Path, shape: tuple[int, ...], options: dict[str, object]
) -> None:
    """Opening computes axes and shape from CZ_LSMINFO and page 0: the same as tifffile's series."""
    from zstack_analyzer.readers.lsm import _series_layout

    path = write_lsm(tmp_path / "layout.lsm", encoded_stack(*shape), **options)  # type: ignore[arg-type]
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        expected = (str(series.axes), tuple(int(n) for n in series.shape))
        thumbnails = len(tif.series) - 1
        assert _series_layout(tif.lsm_metadata or {}, tif.pages.first) == expected
    with open_image(path) as image:
        assert image.metadata().vendor_metadata["thumbnail_pages"] == thumbnails


def test_middle_plane_past_the_end_is_refused_when_read(tmp_path: Path) -> None:
    """Open checks the last plane only; a middle plane whose strip lies past EOF fails on read.

    The file is whole except that plane's StripOffsets, pointed past the end: the
    IFD chain and the last plane are fine, so only the per-plane check catches it.
    """
    stack = encoded_stack(1, 1, 4, 16, 16)
    path = write_lsm(tmp_path / "lying.lsm", stack)
    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[2]  # image IFD of plane z=1
        assert isinstance(page, tifffile.TiffPage)
        tag = page.tags["StripOffsets"]
        assert tag.count == 1
        where = tag.valueoffset
    data = bytearray(path.read_bytes())
    data[where : where + 4] = struct.pack("<I", size + 1000)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 3), stack[0, 0, 3])
        with pytest.raises(CorruptFileError, match=r"lying\.lsm"):
            image.read_plane(0, 0, 0, 1)
