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
from zstack_analyzer import CorruptFileError, SceneNotFoundError, open_image
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
    assert caught.value.path == path


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


# --------------------------------------------------------------------------- RGB and multi-track
# Fifth round: RGB LSMs (three 8-bit channels on an RGB page, planar or interleaved) and
# sequential scans whose channels come from several tracks. The reference is tifffile's
# reading of the same file: its LSM series (pixels, axes, shape) and its parse of
# CZ_LSMINFO's ChannelColors and ScanInformation tree.


def _tifffile_tczyx(path: Path) -> np.ndarray:
    """tifffile's LSM series of ``path`` as a canonical T,C,Z,Y,X array."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = str(series.axes)
    for axis in "TCZYX":
        if axis not in axes:
            data = data[np.newaxis]
            axes = axis + axes
    assert sorted(axes) == sorted("TCZYX"), axes
    return np.transpose(data, [axes.index(a) for a in "TCZYX"])


def _tifffile_channels(path: Path) -> tuple[list[str], list[str], list[float]]:
    """Channel names, colours and laser lines as tifffile parses them, tracks in order."""
    with tifffile.TiffFile(path) as tif:
        lsm = tif.lsm_metadata or {}
    names = list(lsm["ChannelColors"]["ColorNames"])
    colours = ["#{:02X}{:02X}{:02X}".format(*rgba[:3]) for rgba in lsm["ChannelColors"]["Colors"]]
    lasers = [
        float(i["Wavelength"])
        for track in lsm["ScanInformation"]["Tracks"]
        for i in track["IlluminationChannels"]
    ]
    return names, colours, lasers


def _read_all(path: Path) -> np.ndarray:
    with open_image(path) as image:
        (info,) = image.scenes()
        out = np.zeros(info.shape, dtype=info.dtype)
        for t in range(info.size_t):
            for c in range(info.size_c):
                for z in range(info.size_z):
                    out[t, c, z] = image.read_plane(0, t, c, z)
    return out


@pytest.mark.parametrize("rgb", ["planar", "contig"])
def test_an_rgb_lsm_is_three_channels_as_tifffile_reads_it(tmp_path: Path, rgb: str) -> None:
    """Both RGB layouts: three channels of one sample each, every plane equal to tifffile's.

    The interleaved layout was refused as corrupt before this round ("4 image IFDs for
    12 planes"): its C axis was taken for a page index.
    """
    stack = encoded_stack(2, 3, 2, 10, 12, dtype="uint8")
    path = write_lsm(
        tmp_path / f"{rgb}.lsm",
        stack,
        rgb=rgb,
        names=["Red", "Green", "Blue"],
        colors=[(255, 0, 0), (0, 255, 0), (0, 0, 255)],
        timestamps=[0.0, 1.5],
    )
    reference = _tifffile_tczyx(path)
    np.testing.assert_array_equal(reference, stack)  # the writer wrote what it was given
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert int(page.photometric) == 2  # RGB
        assert int(page.planarconfig) == (2 if rgb == "planar" else 1)
        assert page.samplesperpixel == 3
    np.testing.assert_array_equal(_read_all(path), reference)
    with open_image(path) as image:
        (info,) = image.scenes()
        assert (info.size_c, info.samples_per_pixel, info.dtype) == (3, 1, "uint8")
        out = np.zeros((10, 12), dtype=np.uint8)
        image.read_plane_into(0, 1, 2, 1, out)
        np.testing.assert_array_equal(out, reference[1, 2, 1])
        region = image.read_region(0, 1, 1, 0, (2, 9), (3, 11))
        np.testing.assert_array_equal(region, reference[1, 1, 0, 2:9, 3:11])
        np.testing.assert_array_equal(image.to_dask(0).compute(), reference)
        md = image.metadata()
    names, colours, lasers = _tifffile_channels(path)
    assert (md.size_t, md.size_c, md.size_z, md.samples_per_pixel) == (2, 3, 2, 1)
    assert [c.name for c in md.channels] == names == ["Red", "Green", "Blue"]
    assert [c.color for c in md.channels] == colours == ["#FF0000", "#00FF00", "#0000FF"]
    assert [c.excitation_nm for c in md.channels] == lasers
    assert md.time_interval_s == pytest.approx(1.5)
    assert md.warnings == []


@pytest.mark.parametrize("rgb", ["planar", "contig"])
def test_the_layout_of_an_rgb_lsm_is_tifffile_series(tmp_path: Path, rgb: str) -> None:
    from zstack_analyzer.readers.lsm import _series_layout

    path = write_lsm(tmp_path / "layout.lsm", encoded_stack(1, 3, 4, 8, 6, dtype="uint8"), rgb=rgb)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        expected = (str(series.axes), tuple(int(n) for n in series.shape))
        assert _series_layout(tif.lsm_metadata or {}, tif.pages.first) == expected
    assert expected == (("ZCYX", (4, 3, 8, 6)) if rgb == "planar" else ("ZYXC", (4, 8, 6, 3)))


@pytest.mark.parametrize("rgb", ["planar", "contig"])
def test_an_rgb_line_scan_reads_each_line_of_each_channel(tmp_path: Path, rgb: str) -> None:
    stack = encoded_stack(1, 3, 5, 1, 14, dtype="uint8")
    path = write_lsm(tmp_path / "xz.lsm", stack, rgb=rgb, line_scan=True)
    reference = _tifffile_tczyx(path)
    np.testing.assert_array_equal(reference, stack)
    np.testing.assert_array_equal(_read_all(path), reference)
    with open_image(path) as image:
        md = image.metadata()
    assert (md.size_c, md.size_z, md.size_y, md.samples_per_pixel) == (3, 5, 1, 1)
    assert md.warnings == ["XZ line scan: Y=1, the scanned lines are Z"]


def test_interleaved_samples_of_one_declared_channel_are_rgb_pixels(tmp_path: Path) -> None:
    """CZ_LSMINFO says one channel over RGB pages: one channel of RGB pixels (S = 3).

    tifffile's series squeezes the channel away and cannot shape the pages (it warns and
    falls back), so the reference is each image page as tifffile decodes it.
    """
    stack = encoded_stack(1, 3, 3, 9, 11, dtype="uint8")
    path = write_lsm(tmp_path / "rgb1.lsm", stack, rgb="contig")
    _patch(path, "DimensionChannels", "<i", 1)
    with tifffile.TiffFile(path) as tif:
        pages = [tif.pages[2 * z].asarray() for z in range(3)]
    with open_image(path) as image:
        (info,) = image.scenes()
        assert info.shape == (1, 1, 3, 9, 11, 3)
        for z in range(3):
            plane = image.read_plane(0, 0, 0, z)
            assert plane.shape == (9, 11, 3)
            np.testing.assert_array_equal(plane, pages[z])
            np.testing.assert_array_equal(plane, np.moveaxis(stack[0, :, z], 0, -1))
        out = np.zeros((9, 11, 3), dtype=np.uint8)
        image.read_plane_into(0, 0, 0, 2, out)
        np.testing.assert_array_equal(out, pages[2])
        md = image.metadata()
    assert (md.size_c, md.samples_per_pixel) == (1, 3)
    assert len(md.channels) == 1
    assert md.channels[0].name is None  # three ChannelColors names for one channel
    assert md.channels[0].color is None


def test_channels_of_a_sequential_scan_come_from_every_track(tmp_path: Path) -> None:
    """Two tracks (1 + 2 channels), ChannelColors absent: names, colours, lasers of both tracks."""
    stack = encoded_stack(1, 3, 2, 8, 8)
    path = write_lsm(
        tmp_path / "tracks.lsm",
        stack,
        names=["Ch1-T1", "Ch2-T2", "ChS1-T2"],
        colors=[(0, 0, 255), (0, 255, 0), (255, 0, 255)],
        tracks=[1, 2],
        wavelengths=[405.0, 488.0, 561.0],
    )
    _patch(path, "OffsetChannelColors", "<I", 0)
    with tifffile.TiffFile(path) as tif:
        lsm = tif.lsm_metadata or {}
    assert "ChannelColors" not in lsm
    tracks = lsm["ScanInformation"]["Tracks"]
    assert [t["Name"] for t in tracks] == ["Track1", "Track2"]
    names = [d["Name"] for t in tracks for d in t["DataChannels"]]
    colours = [
        f"#{v & 0xFF:02X}{v >> 8 & 0xFF:02X}{v >> 16 & 0xFF:02X}"
        for t in tracks
        for v in (d["Color"] for d in t["DataChannels"])
    ]
    lasers = [i["Wavelength"] for t in tracks for i in t["IlluminationChannels"]]
    with open_image(path) as image:
        md = image.metadata()
        np.testing.assert_array_equal(image.read_plane(0, 0, 2, 1), stack[0, 2, 1])
    assert [c.name for c in md.channels] == names == ["Ch1-T1", "Ch2-T2", "ChS1-T2"]
    assert [c.color for c in md.channels] == colours == ["#0000FF", "#00FF00", "#FF00FF"]
    assert [c.excitation_nm for c in md.channels] == lasers == [405.0, 488.0, 561.0]
    assert md.provenance["channels.name"] == "LSM ScanInformation DataChannel/Name"


def test_a_sequential_scan_with_channel_colors_names_every_track(tmp_path: Path) -> None:
    """With ChannelColors present its names win; the lasers still come from both tracks."""
    path = write_lsm(
        tmp_path / "tracks2.lsm",
        encoded_stack(1, 2, 1, 8, 8),
        names=["DAPI", "GFP"],
        tracks=[1, 1],
        wavelengths=[405.0, 488.0],
    )
    names, colours, lasers = _tifffile_channels(path)
    with open_image(path) as image:
        md = image.metadata()
    assert [c.name for c in md.channels] == names == ["DAPI", "GFP"]
    assert [c.color for c in md.channels] == colours
    assert [c.excitation_nm for c in md.channels] == lasers == [405.0, 488.0]
    assert md.vendor_metadata["ScanInformation"] == {
        "Name": "synthetic",
        "Objective": "Plan-Apochromat 63x/1.40 Oil DIC M27",
    }


def test_a_track_without_lasers_leaves_every_excitation_unknown(tmp_path: Path) -> None:
    """Laser lines are matched to channels by count: two lines for three channels are none."""
    path = write_lsm(
        tmp_path / "lasers.lsm",
        encoded_stack(1, 3, 1, 8, 8),
        tracks=[2, 1],
        wavelengths=[405.0, 488.0, None],
    )
    with tifffile.TiffFile(path) as tif:
        tracks = (tif.lsm_metadata or {})["ScanInformation"]["Tracks"]
    assert [len(t["IlluminationChannels"]) for t in tracks] == [2, 0]
    with open_image(path) as image:
        md = image.metadata()
    assert [c.excitation_nm for c in md.channels] == [None, None, None]
    assert [c.name for c in md.channels] == ["Ch1-T1", "Ch2-T1", "Ch3-T1"]


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_region_of_every_channel_is_that_channel(tmp_path: Path, compression: str | None) -> None:
    """Regression: a region of channel c > 0 came back as channel 0's (TIFF strip path).

    Channels are samples of one page; the TIFF region path read the strips of the page's
    first sample, and an OME-Zarr chunk smaller than the plane (SceneSource) went that way.
    Now a page of several planes has no region grid and regions are cut from the plane.
    """
    from zstack_analyzer.zarr.source import SceneSource

    stack = encoded_stack(2, 3, 2, 12, 14)
    path = write_lsm(tmp_path / "regions.lsm", stack, compression=compression)
    reference = _tifffile_tczyx(path)
    np.testing.assert_array_equal(reference, stack)
    with open_image(path) as image:
        assert image.region_grid(0) is None
        source = SceneSource(image, 0)
        for t in range(2):
            for c in range(3):
                for z in range(2):
                    region = image.read_region(0, t, c, z, (3, 10), (2, 13))
                    np.testing.assert_array_equal(region, reference[t, c, z, 3:10, 2:13])
                    chunk = source.read_region(t, c, z, 0, 6, 7, 14)
                    np.testing.assert_array_equal(chunk, reference[t, c, z, 0:6, 7:14])
        clipped = image.read_region(0, 1, 2, 1, (-4, 5), (10, 40))
        np.testing.assert_array_equal(clipped, reference[1, 2, 1, 0:5, 10:14])
        whole = image.read_region(0, 0, 1, 0, (0, 12), (0, 14))
        np.testing.assert_array_equal(whole, reference[0, 1, 0])
        np.testing.assert_array_equal(
            image.read_region(0, 0, 1, 0, (0, 1), (0, 1)), reference[0, 1, 0, :1, :1]
        )
        above = image.read_region(0, 0, 1, 0, (-4, -1), (0, 14))
        left = image.read_region(0, 0, 1, 0, (0, 12), (-9, -2))
        assert image.region_grid() is None
        with pytest.raises(SceneNotFoundError, match=r"pyramid level 1 does not exist"):
            image.read_region(0, 0, 1, 0, (0, 4), (0, 4), level=1)
    # Clipping as the TIFF strip path clips (a one-channel page): the same shapes.
    one = write_lsm(tmp_path / "one.lsm", stack[:, :1], compression=compression)
    with open_image(one) as image:
        assert image.region_grid() is not None
        assert image.read_region(0, 0, 0, 0, (-4, -1), (0, 14)).shape == above.shape == (0, 14)
        assert image.read_region(0, 0, 0, 0, (0, 12), (-9, -2)).shape == left.shape == (12, 0)


def test_a_region_of_a_line_scan_is_that_line(tmp_path: Path) -> None:
    """Regression: a line scan's region read the page's first row whatever the Z line."""
    stack = encoded_stack(1, 2, 6, 1, 16)
    path = write_lsm(tmp_path / "xz.lsm", stack, line_scan=True)
    with open_image(path) as image:
        assert image.region_grid(0) is None
        for c in range(2):
            for z in range(6):
                region = image.read_region(0, 0, c, z, (0, 1), (2, 9))
                np.testing.assert_array_equal(region, stack[0, c, z, :, 2:9])


def test_a_single_channel_page_keeps_its_strip_grid(tmp_path: Path) -> None:
    """One channel, one plane per page: regions decode only the strips they touch."""
    stack = encoded_stack(1, 1, 2, 40, 24)
    path = write_lsm(tmp_path / "one.lsm", stack, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        rows = int(tif.pages.first.rowsperstrip)
    with open_image(path) as image:
        assert image.region_grid(0) == (min(rows, 40), 24)
        assert image.region_grid() == image.region_grid(0, 0)
        with pytest.raises(SceneNotFoundError, match=r"pyramid level 1 does not exist"):
            image.region_grid(0, 1)
        region = image.read_region(0, 0, 0, 1, (5, 33), (4, 20))
        with pytest.raises(SceneNotFoundError, match=r"pyramid level 1 does not exist"):
            image.read_region(0, 0, 0, 1, (5, 33), (4, 20), level=1)
    np.testing.assert_array_equal(region, stack[0, 0, 1, 5:33, 4:20])


def test_without_thumbnails_there_is_no_thumbnail_series(tmp_path: Path) -> None:
    """Two full-size image IFDs and CZ_LSMINFO stating one plane: no thumbnail series.

    tifffile's LSM series takes the even IFDs as planes and adds a second series only
    when IFD 1 is reduced (a thumbnail); the reader says the same in ``thumbnail_pages``.
    """
    stack = encoded_stack(1, 1, 2, 8, 8)
    path = write_lsm(tmp_path / "bare.lsm", stack, thumbnails=False)
    _patch(path, "DimensionZ", "<i", 1)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 2
        assert not tif.pages[1].is_reduced
        thumbnail_series = len(tif.series) - 1
        reference = tif.series[0].asarray()
    assert thumbnail_series == 0
    with open_image(path) as image:
        md = image.metadata()
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), reference)
    assert md.vendor_metadata["thumbnail_pages"] == thumbnail_series
    assert md.size_z == 1


def test_an_empty_lsminfo_record_is_corrupt(tmp_path: Path) -> None:
    """StructureSize 0: tifffile reads CZ_LSMINFO as no fields at all; the file is refused."""
    path = write_lsm(tmp_path / "empty.lsm", encoded_stack(1, 1, 2, 8, 8))
    _patch(path, "StructureSize", "<i", 0)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_lsm
        assert tif.lsm_metadata == {}
    with pytest.raises(CorruptFileError) as caught:
        open_image(path).metadata()
    assert str(caught.value) == "empty.lsm: invalid LSM structure: CZ_LSMINFO record unreadable"
    assert caught.value.path == path


@pytest.mark.parametrize("rgb", [None, "planar"])
def test_planar_pages_under_one_declared_channel_read_their_first_sample(
    tmp_path: Path, rgb: str | None
) -> None:
    """CZ_LSMINFO says one channel over planar three-sample pages: channel 0 is sample 0.

    tifffile's series squeezes the channel away (ZYX) and cannot shape the pages; the
    reference is each image page as tifffile decodes it, whose first sample is read.
    """
    stack = encoded_stack(1, 3, 2, 8, 10, dtype="uint8")
    path = write_lsm(tmp_path / "planar1.lsm", stack, rgb=rgb)
    _patch(path, "DimensionChannels", "<i", 1)
    with tifffile.TiffFile(path) as tif:
        assert str(tif.series[0].axes) == "ZYX"
        pages = [tif.pages[2 * z].asarray() for z in range(2)]
    with open_image(path) as image:
        (info,) = image.scenes()
        assert info.shape == (1, 1, 2, 8, 10)
        for z in range(2):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), pages[z][0])


def test_a_shorter_lsminfo_record_without_position_fields_opens(tmp_path: Path) -> None:
    """An older, shorter CZ_LSMINFO (StructureSize ends before DimensionP): no P or M axis.

    tifffile reads the fields the StructureSize covers and nothing after; its LSM series
    takes a missing DimensionP or DimensionM as 0, and so does the reader.
    """
    stack = encoded_stack(1, 2, 3, 8, 10)
    path = write_lsm(tmp_path / "short.lsm", stack, timestamps=None)
    end = np.dtype(tifffile.TIFF.CZ_LSMINFO).fields["DimensionP"][1]  # type: ignore[index]
    _patch(path, "StructureSize", "<i", end)
    with tifffile.TiffFile(path) as tif:
        lsm = tif.lsm_metadata or {}
        assert "DimensionP" not in lsm
        assert "DimensionM" not in lsm
        assert lsm["ScanType"] == 0
    reference = _tifffile_tczyx(path)
    np.testing.assert_array_equal(reference, stack)
    np.testing.assert_array_equal(_read_all(path), reference)
    with open_image(path) as image:
        md = image.metadata()
    assert md.extra_dims == {}
    assert "DimensionP" not in md.vendor_metadata


@pytest.mark.parametrize("axis", ["P", "M"])
def test_a_position_or_mosaic_axis_is_laid_out_as_tifffile_does(tmp_path: Path, axis: str) -> None:
    """Dimension{P,M} = 2 over six pages of Z = 3: the layout is tifffile's series, index 0 read."""
    from zstack_analyzer.readers.lsm import _series_layout

    stack = encoded_stack(1, 2, 6, 8, 10)
    path = write_lsm(tmp_path / f"{axis}.lsm", stack)
    _patch(path, "DimensionZ", "<i", 3)
    _patch(path, f"Dimension{axis}", "<i", 2)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        expected = (str(series.axes), tuple(int(n) for n in series.shape))
        assert _series_layout(tif.lsm_metadata or {}, tif.pages.first) == expected
        reference = series.asarray()
    assert expected == (f"{axis}ZCYX", (2, 3, 2, 8, 10))
    with open_image(path) as image:
        md = image.metadata()
        for c in range(2):
            for z in range(3):
                np.testing.assert_array_equal(image.read_plane(0, 0, c, z), reference[0, z, c])
    assert md.extra_dims == {axis: 2}
    assert md.vendor_metadata[f"Dimension{axis}"] == 2
