"""Zeiss LSM reads pinned: claims, page layout, extra axes, channels, calibration, time.

The corpus holds no LSM file (SOURCES.md: none under 4 MiB was found in a public
repository), so these files are written by ``tests/synthetic_lsm.py`` from the format's
published structure (tifffile's ``TIFF.CZ_LSMINFO``) and read back through the real
reader and tifffile; each case names the survivor of the mutation run it pins.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.synthetic import encoded_stack
from tests.synthetic_lsm import LSM_MAGIC, write_lsm
from zstack_analyzer import CorruptFileError, open_image
from zstack_analyzer.readers._tiff_common import TiffPeek
from zstack_analyzer.readers.lsm import LsmReader, _metres_to_um, _objective

if TYPE_CHECKING:
    from pathlib import Path


def _patch(path: Path, field: str, fmt: str, value: float) -> None:
    data = bytearray(path.read_bytes())
    start = data.find(struct.pack("<I", LSM_MAGIC))
    offset = np.dtype(tifffile.TIFF.CZ_LSMINFO).fields[field][1]  # type: ignore[index]
    data[start + offset : start + offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


def test_claims_only_little_endian_tiffs_with_the_lsminfo_tag() -> None:
    assert LsmReader.claims(b"II*\0", TiffPeek(tags=frozenset({256, 34412})))
    assert not LsmReader.claims(b"MM\0*", TiffPeek(tags=frozenset({256, 34412})))
    assert not LsmReader.claims(b"II*\0", TiffPeek(tags=frozenset({256, 34411})))


def test_every_plane_and_the_metadata_of_a_time_series(tmp_path: Path) -> None:
    stack = encoded_stack(2, 3, 2, 12, 14)
    path = write_lsm(
        tmp_path / "ts.lsm",
        stack,
        voxel_m=(0.25e-6, 0.3e-6, 0.75e-6),
        names=["  DAPI ", "GFP", "mCherry"],
        colors=[(0, 0, 255), (10, 20, 30), (255, 128, 0)],
        timestamps=[10.0, 14.0, 99.0],  # a stamp past size_t is not an interval
    )
    with open_image(path) as image:
        assert image.format_name == "LSM"
        for t in range(2):
            for c in range(3):
                for z in range(2):
                    plane = image.read_plane(0, t, c, z)
                    assert plane.dtype == stack.dtype
                    np.testing.assert_array_equal(plane, stack[t, c, z])
        out = np.zeros((12, 14), dtype=stack.dtype)
        image.read_plane_into(0, 1, 2, 1, out)
        np.testing.assert_array_equal(out, stack[1, 2, 1])
        md = image.metadata()
        raw = image.raw_metadata()
    assert md.scene_name is None
    assert (md.size_t, md.size_c, md.size_z, md.size_y, md.size_x) == (2, 3, 2, 12, 14)
    assert md.physical_size.x_um == pytest.approx(0.25)
    assert md.physical_size.y_um == pytest.approx(0.3)
    assert md.physical_size.z_um == pytest.approx(0.75)
    assert [c.name for c in md.channels] == ["DAPI", "GFP", "mCherry"]
    assert [c.color for c in md.channels] == ["#0000FF", "#0A141E", "#FF8000"]
    assert [c.excitation_nm for c in md.channels] == [488.0, 588.0, 688.0]
    assert md.time_interval_s == pytest.approx(4.0)
    assert md.provenance["time_interval_s"] == "LSM TimeStamps (mean step)"
    assert md.provenance["sizes"] == "CZ_LSMINFO Dimension*"
    assert md.provenance["channels.name"] == "LSM ChannelColors names"
    assert md.provenance["physical_size.z_um"] == "CZ_LSMINFO VoxelSizeZ (m)"
    assert md.warnings == []
    assert md.vendor_metadata["ScanType"] == 6
    for key in ("SpectralScan", "TypeOfData", "DimensionP", "DimensionM"):
        assert md.vendor_metadata[key] == 0, key
    for key in ("OriginX", "OriginY", "OriginZ"):
        assert md.vendor_metadata[key] == 0.0, key
    assert md.objective is not None
    assert md.objective.name == "Plan-Apochromat 63x/1.40 Oil DIC M27"
    assert (md.objective.magnification, md.objective.numerical_aperture) == (63.0, 1.4)
    assert md.objective.immersion == "Oil"
    assert md.vendor_metadata["TimeStamps"] == [10.0, 14.0, 99.0]
    assert md.vendor_metadata["ScanInformation"] == {
        "Name": "synthetic",
        "Objective": "Plan-Apochromat 63x/1.40 Oil DIC M27",
    }
    assert md.vendor_metadata["thumbnail_pages"] == 1
    assert raw["lsm"]["DimensionChannels"] == 3
    assert raw["lsm"]["ScanInformation"]["Tracks"][0]["DataChannels"][0]["Name"] == "  DAPI "


def test_without_channel_colors_the_data_channels_name_and_colour(tmp_path: Path) -> None:
    path = write_lsm(
        tmp_path / "nocolors.lsm",
        encoded_stack(1, 2, 1, 8, 8),
        names=["Ch1-T1", "ChS2-T1"],
        colors=[(0, 0, 255), (10, 20, 30)],
    )
    _patch(path, "OffsetChannelColors", "<I", 0)
    with open_image(path) as image:
        md = image.metadata()
    assert [c.name for c in md.channels] == ["Ch1-T1", "ChS2-T1"]
    assert md.provenance["channels.name"] == "LSM ScanInformation DataChannel/Name"
    assert [c.color for c in md.channels] == ["#0000FF", "#0A141E"]


def test_without_scan_information_nothing_but_the_colours(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "noscan.lsm", encoded_stack(1, 2, 1, 8, 8))
    _patch(path, "OffsetScanInformation", "<I", 0)
    with open_image(path) as image:
        md = image.metadata()
    assert [c.name for c in md.channels] == ["Ch1-T1", "Ch2-T1"]  # ChannelColors names
    assert [c.color for c in md.channels] == ["#FF0000", "#00FF00"]
    assert [c.excitation_nm for c in md.channels] == [None, None]
    assert md.objective is None
    assert md.vendor_metadata["ScanInformation"] == {}


def test_without_any_channel_record_channels_are_unnamed(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "bare.lsm", encoded_stack(1, 2, 1, 8, 8))
    _patch(path, "OffsetScanInformation", "<I", 0)
    _patch(path, "OffsetChannelColors", "<I", 0)
    with open_image(path) as image:
        md = image.metadata()
    assert [c.name for c in md.channels] == [None, None]
    assert [c.color for c in md.channels] == [None, None]
    assert "channels.name" not in md.provenance


def test_the_time_intervall_field_when_there_are_no_stamps(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "interval.lsm", encoded_stack(3, 1, 1, 8, 8))
    _patch(path, "TimeIntervall", "<d", 2.5)
    with open_image(path) as image:
        md = image.metadata()
    assert md.time_interval_s == pytest.approx(2.5)
    assert md.provenance["time_interval_s"] == "CZ_LSMINFO TimeIntervall"
    assert md.vendor_metadata["TimeStamps"] == []
    one = write_lsm(tmp_path / "one.lsm", encoded_stack(1, 1, 2, 8, 8), timestamps=[1.0, 2.0])
    _patch(one, "TimeIntervall", "<d", 2.5)
    with open_image(one) as image:
        md = image.metadata()
    assert md.time_interval_s is None  # one time point has no interval
    assert "time_interval_s" not in md.provenance


def test_stamps_that_do_not_advance_fall_back_to_the_field(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "flat.lsm", encoded_stack(2, 1, 1, 8, 8), timestamps=[5.0, 5.0])
    with open_image(path) as image:
        assert image.metadata().time_interval_s is None
    _patch(path, "TimeIntervall", "<d", 0.5)
    with open_image(path) as image:
        md = image.metadata()
    assert md.time_interval_s == pytest.approx(0.5)
    assert md.provenance["time_interval_s"] == "CZ_LSMINFO TimeIntervall"


def test_a_position_axis_is_read_at_index_0(tmp_path: Path) -> None:
    """DimensionP = 2 over six pages of Z = 3: P is an extra axis, each plane from P = 0."""
    stack = encoded_stack(1, 2, 6, 8, 10)
    path = write_lsm(tmp_path / "positions.lsm", stack)
    _patch(path, "DimensionZ", "<i", 3)
    _patch(path, "DimensionP", "<i", 2)
    with open_image(path) as image:
        md = image.metadata()
        assert (md.size_t, md.size_c, md.size_z) == (1, 2, 3)
        assert md.extra_dims == {"P": 2}
        for c in range(2):
            for z in range(3):
                np.testing.assert_array_equal(image.read_plane(0, 0, c, z), stack[0, c, z])
    assert md.warnings == ["axes {'P': 2} beyond TCZYX are read at index 0"]
    assert md.vendor_metadata["DimensionP"] == 2


def test_a_line_scan_reads_each_line_of_each_channel(tmp_path: Path) -> None:
    stack = encoded_stack(1, 3, 7, 1, 20)
    path = write_lsm(tmp_path / "xz.lsm", stack, line_scan=True, voxel_m=(0.1e-6, 0.2e-6, 0.3e-6))
    with open_image(path) as image:
        for c in range(3):
            for z in (0, 3, 6):
                plane = image.read_plane(0, 0, c, z)
                assert plane.shape == (1, 20)
                assert plane.dtype == stack.dtype
                np.testing.assert_array_equal(plane, stack[0, c, z])
        md = image.metadata()
    assert md.physical_size.y_um is None
    assert md.physical_size.z_um == pytest.approx(0.3)
    assert "physical_size.y_um" not in md.provenance
    assert md.warnings == ["XZ line scan: Y=1, the scanned lines are Z"]


def test_a_single_channel_line_scan(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 5, 1, 16)
    path = write_lsm(tmp_path / "xz1.lsm", stack, line_scan=True)
    with open_image(path) as image:
        for z in range(5):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), stack[0, 0, z])


def test_a_line_scan_whose_rows_disagree_with_lsminfo_is_corrupt(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "rows.lsm", encoded_stack(1, 2, 6, 1, 16), line_scan=True)
    _patch(path, "DimensionZ", "<i", 5)
    with pytest.raises(CorruptFileError, match=r"line scan with 6 rows per page but Z=5"):
        open_image(path).metadata()


def test_plane_count_check_names_both_numbers(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "lies.lsm", encoded_stack(1, 1, 3, 8, 8))
    _patch(path, "DimensionZ", "<i", 4)
    with pytest.raises(CorruptFileError, match=r"3 image IFDs for 4 planes declared in CZ_LSMINFO"):
        open_image(path).metadata()


def test_an_unknown_scan_type_is_corrupt(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "scan.lsm", encoded_stack(1, 1, 2, 8, 8))
    _patch(path, "ScanType", "<h", 99)
    with pytest.raises(CorruptFileError, match=r"CZ_LSMINFO ScanType 99 is not a known scan type"):
        open_image(path).metadata()


def test_a_z_voxel_of_a_single_slice_is_kept_when_stated(tmp_path: Path) -> None:
    path = write_lsm(
        tmp_path / "flat.lsm", encoded_stack(1, 1, 1, 8, 8), voxel_m=(1e-7, 1e-7, 2e-6)
    )
    with open_image(path) as image:
        assert image.metadata().physical_size.z_um == pytest.approx(2.0)
    _patch(path, "VoxelSizeZ", "<d", 0.0)
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.z_um is None
    assert "physical_size.z_um" not in md.provenance


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2e-7, 0.2),
        ("3e-6", 3.0),
        (0.0, None),
        (-1e-6, None),
        (math.nan, None),
        (math.inf, None),
        (None, None),
        ("wide", None),
    ],
)
def test_metres_to_um(value: object, expected: float | None) -> None:
    result = _metres_to_um(value)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "name", "magnification", "aperture", "immersion"),
    [
        (
            "Plan-Apochromat 63x/1.40 Oil DIC M27",
            "Plan-Apochromat 63x/1.40 Oil DIC M27",
            63.0,
            1.4,
            "Oil",
        ),
        ("  C-Apochromat 40X / 1.2 W Korr  ", "C-Apochromat 40X / 1.2 W Korr", 40.0, 1.2, None),
        ("LD C-Apochromat 40x/1.1 water", "LD C-Apochromat 40x/1.1 water", 40.0, 1.1, "Water"),
        (
            "LCI Plan-Neofluar 25x/0.8 Imm Glycerin",
            "LCI Plan-Neofluar 25x/0.8 Imm Glycerin",
            25.0,
            0.8,
            "Glycerin",
        ),
        ("Plan 10x/0.3 glycerol", "Plan 10x/0.3 glycerol", 10.0, 0.3, "Glycerol"),
        ("silicone 30x/1.05", "silicone 30x/1.05", 30.0, 1.05, "Silicone"),
        ("EC Epiplan multi immersion", "EC Epiplan multi immersion", None, None, "Multi"),
        ("Air objective 5x", "Air objective 5x", None, None, "Air"),
        ("Oil and water 20x/0.8", "Oil and water 20x/0.8", 20.0, 0.8, "Oil"),
    ],
)
def test_objective_text(
    text: str, name: str, magnification: float | None, aperture: float | None, immersion: str | None
) -> None:
    objective = _objective(text)
    assert objective is not None
    assert objective.name == name
    assert objective.magnification == magnification
    assert objective.numerical_aperture == aperture
    assert objective.immersion == immersion


@pytest.mark.parametrize("text", [None, "", 63, b"63x/1.4"])
def test_no_objective_text(text: object) -> None:
    assert _objective(text) is None


def test_a_page_of_another_size_is_corrupt_when_read(tmp_path: Path) -> None:
    """The second image IFD says 8 rows where CZ_LSMINFO and the first page say 16."""
    stack = encoded_stack(1, 1, 3, 16, 16)
    path = write_lsm(tmp_path / "short.lsm", stack)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[2].tags["ImageLength"]
        where = tag.valueoffset
    data = bytearray(path.read_bytes())
    data[where : where + 2] = struct.pack("<H", 8)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0, 0])
        with pytest.raises(CorruptFileError) as caught:
            image.read_plane(0, 0, 0, 1)
    assert str(caught.value) == "short.lsm: an LSM page holds (8, 16), expected (16, 16)"


@pytest.mark.parametrize(
    ("stamps", "interval"), [([100.0, 103.0], 3.0), ([7.0, 7.5], 0.5), ([1.0, 2.0, 4.0], 1.0)]
)
def test_two_time_points_take_the_mean_step_of_their_stamps(
    tmp_path: Path, stamps: list[float], interval: float
) -> None:
    path = write_lsm(tmp_path / "two.lsm", encoded_stack(2, 1, 1, 8, 8), timestamps=stamps)
    with open_image(path) as image:
        md = image.metadata()
    assert md.time_interval_s == pytest.approx(interval)
    assert md.provenance["time_interval_s"] == "LSM TimeStamps (mean step)"


def test_one_plane_and_its_thumbnail_is_a_thumbnail_series(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 1, 8, 8)
    path = write_lsm(tmp_path / "one.lsm", stack)
    with open_image(path) as image:
        md = image.metadata()
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), stack[0, 0, 0])
    assert md.vendor_metadata["thumbnail_pages"] == 1


def test_a_laser_line_of_zero_is_no_excitation(tmp_path: Path) -> None:
    path = write_lsm(tmp_path / "laser.lsm", encoded_stack(1, 2, 1, 8, 8))
    data = bytearray(path.read_bytes())
    line = struct.pack("<IIId", 0x90000003, 5, 8, 488.0)
    assert data.count(line) == 1
    at = data.index(line)
    data[at : at + len(line)] = struct.pack("<IIId", 0x90000003, 5, 8, 0.0)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        md = image.metadata()
    assert [c.excitation_nm for c in md.channels] == [None, 588.0]


def test_one_channel_is_one_scene_of_one_channel_with_regions(tmp_path: Path) -> None:
    stack = encoded_stack(2, 1, 3, 12, 10)
    path = write_lsm(tmp_path / "mono.lsm", stack, timestamps=[0.0, 1.0])
    with open_image(path) as image:
        (info,) = image.scenes()
        assert (info.index, info.name) == (0, None)
        assert info.shape == (2, 1, 3, 12, 10)
        assert image.region_grid(0) is not None
        for t, z in [(0, 0), (1, 2)]:
            plane = image.read_plane(0, t, 0, z)
            np.testing.assert_array_equal(plane, stack[t, 0, z])
            region = image.read_region(0, t, 0, z, (2, 9), (1, 7))
            np.testing.assert_array_equal(region, stack[t, 0, z, 2:9, 1:7])
        md = image.metadata()
    assert (md.size_t, md.size_c, md.size_z) == (2, 1, 3)
    assert len(md.channels) == 1
