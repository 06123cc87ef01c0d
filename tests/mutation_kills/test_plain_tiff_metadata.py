"""Plain TIFF metadata on files written here (mutation kills, round 3): series as scenes,
calibration (FEI, SVS, resolution tags), Make/Model/Software, EXIF and TIFF times,
exposure, palette and extra axes, the FEI block's instrument and time."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.synthetic import encoded_stack
from zstack_analyzer import CorruptFileError, open_image
from zstack_analyzer.readers.tiff import TiffReader

if TYPE_CHECKING:
    from pathlib import Path

ZONE_WARNING = "acquisition time zone unknown: acquired_at_local holds the time as written"


def _fei(path: Path, sections: dict[str, dict[str, str]], **options: Any) -> Path:
    ini = "".join(
        f"[{name}]\r\n" + "".join(f"{k}={v}\r\n" for k, v in fields.items())
        for name, fields in sections.items()
    )
    tifffile.imwrite(
        path,
        np.zeros((4, 6), "uint8"),
        metadata=None,
        software=False,
        extratags=[(34682, "s", 0, ini, True)],
        **options,
    )
    return path


def test_fei_pixel_size_instrument_and_time(tmp_path: Path) -> None:
    path = _fei(
        tmp_path / "fei.tif",
        {
            "User": {"Date": "12/31/2020", "Time": "01:02:03 PM"},
            "System": {"SystemType": " Teneo ", "Software": "16.1"},
            "Scan": {"PixelWidth": "2.5e-09", "PixelHeight": "3e-09"},
        },
        resolution=((1, 1), (1, 1)),
    )
    with open_image(path) as image:
        assert image.format_name == "TIFF"
        md = image.metadata()
        raw = image.raw_metadata()
    assert md.physical_size.x_um == pytest.approx(0.0025)
    assert md.physical_size.y_um == pytest.approx(0.003)
    assert md.provenance["physical_size.x_um"] == "FEI Scan/PixelWidth"
    assert md.provenance["physical_size.y_um"] == "FEI Scan/PixelHeight"
    assert md.microscope is not None
    assert (md.microscope.manufacturer, md.microscope.model, md.microscope.software_version) == (
        "FEI",
        "Teneo",
        "16.1",
    )
    assert md.provenance["microscope"].startswith("FEI metadata [System] SystemType, Software")
    assert md.acquired_at_local == datetime(2020, 12, 31, 13, 2, 3)
    assert md.provenance["acquired_at_local"] == "FEI metadata [User] Date + Time"
    assert ZONE_WARNING in md.warnings
    assert md.vendor_metadata["fei"]["System"]["SystemType"] == "Teneo"
    assert raw["fei"]["Scan"]["PixelWidth"] == pytest.approx(2.5e-9)


def test_fei_without_pixel_height_is_square_and_other_times(tmp_path: Path) -> None:
    path = _fei(
        tmp_path / "fei.tif",
        {"User": {"Date": "02/03/2021", "Time": "14:05:06"}, "Scan": {"PixelWidth": "1e-06"}},
    )
    with open_image(path) as image:
        md = image.metadata()
    assert (md.physical_size.x_um, md.physical_size.y_um) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
    )
    assert md.acquired_at_local == datetime(2021, 2, 3, 14, 5, 6)
    assert md.microscope is None
    path = _fei(
        tmp_path / "date.tif", {"User": {"Date": "02/03/2021"}, "Scan": {"PixelWidth": "1e-06"}}
    )
    with open_image(path) as image:
        assert image.metadata().acquired_at_local == datetime(2021, 2, 3)


def test_fei_without_a_pixel_width_or_a_readable_date(tmp_path: Path) -> None:
    path = _fei(
        tmp_path / "fei.tif",
        {"User": {"Date": "31.12.2020", "Time": "noon"}, "Scan": {"PixelWidth": "0"}},
        resolution=((10000, 1), (10000, 1)),
        resolutionunit="CENTIMETER",
    )
    with open_image(path) as image:
        md = image.metadata()
    # the FEI block decides: the resolution tags are not used for an FEI file
    assert md.physical_size.x_um is None and md.physical_size.y_um is None
    assert "FEI metadata without Scan/PixelWidth: pixel size unknown" in md.warnings
    assert "FEI [User] Date/Time '31.12.2020' 'noon' not understood: ignored" in md.warnings
    assert md.acquired_at_local is None
    assert ZONE_WARNING not in md.warnings


def test_fei_model_keeps_make_tag_and_software(tmp_path: Path) -> None:
    path = tmp_path / "fei.tif"
    ini = "[System]\r\nSoftware=7.2\r\n[Scan]\r\nPixelWidth=1e-06\r\n"
    tifffile.imwrite(
        path,
        np.zeros((4, 6), "uint8"),
        metadata=None,
        software="xT",
        extratags=[
            (34682, "s", 0, ini, True),
            (271, "s", 0, "Thermo", True),
            (272, "s", 0, "Scios", True),
        ],
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Thermo"
    assert md.microscope.model == "Scios"
    assert md.microscope.software == "xT"
    assert md.microscope.software_version == "7.2"


def test_make_model_software_and_datetime_tags(tmp_path: Path) -> None:
    path = tmp_path / "cam.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 6), "uint16"),
        metadata=None,
        software=" Cam 2 ",
        datetime="2019:05:06 07:08:09",
        extratags=[(271, "s", 0, "Nikon", True), (272, "s", 0, "  ", True)],
        resolution=((20000, 1), (10000, 1)),
        resolutionunit="CENTIMETER",
        description="hello",
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert (md.microscope.manufacturer, md.microscope.model, md.microscope.software) == (
        "Nikon",
        None,
        "Cam 2",
    )
    assert md.provenance["microscope"] == "TIFF Make, Model, Software tags"
    assert md.acquired_at_local == datetime(2019, 5, 6, 7, 8, 9)
    assert md.provenance["acquired_at_local"] == "TIFF DateTime (file write time)"
    assert ZONE_WARNING in md.warnings
    assert md.physical_size.x_um == pytest.approx(0.5)
    assert md.physical_size.y_um == pytest.approx(1.0)
    assert md.provenance["physical_size.x_um"] == "TIFF XResolution/ResolutionUnit"
    assert md.provenance["physical_size.y_um"] == "TIFF YResolution/ResolutionUnit"
    assert md.provenance["sizes"].startswith("tifffile ") and md.provenance["sizes"].endswith(
        " series"
    )
    assert md.vendor_metadata["description"] == "hello"
    assert "series_kind" in md.vendor_metadata
    assert md.pyramid_levels == []
    assert [c.exposure_ms for c in md.channels] == [None]


def test_no_make_model_or_software_is_no_microscope(tmp_path: Path) -> None:
    path = tmp_path / "bare.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 6), "uint8"),
        metadata=None,
        software=False,
        extratags=[(306, "s", 0, "not a date", True)],
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is None
    assert "microscope" not in md.provenance
    assert md.acquired_at_local is None
    assert ZONE_WARNING not in md.warnings


def test_a_refused_resolution_warns(tmp_path: Path) -> None:
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 6), "uint8"),
        metadata=None,
        resolution=((72, 1), (72, 1)),
        resolutionunit="INCH",
    )
    with open_image(path) as image:
        md = image.metadata()
    assert "TIFF resolution 72/1 (unit 2) is not a calibration: pixel size unknown" in md.warnings
    assert "physical_size.x_um" not in md.provenance


def test_exif_exposure() -> None:
    from zstack_analyzer.readers import tiff

    exif_cases = [
        ({"ExposureTime": (1, 50)}, 20.0),
        ({"ExposureTime": 0.5}, 500.0),
        ({"ExposureTime": (0, 50)}, None),
        ({"ExposureTime": (1, 0)}, None),
        ({"ExposureTime": "fast"}, None),
        ({"ExposureTime": -1.0}, None),
        ({}, None),
    ]
    for exif, expected in exif_cases:
        value = tiff._exif_exposure_ms(exif)
        assert value == (pytest.approx(expected) if expected is not None else None), exif


def test_exif_datetime_original_wins(tmp_path: Path) -> None:
    from zstack_analyzer.readers.tiff import _tiff_datetime

    tags_path = tmp_path / "t.tif"
    tifffile.imwrite(
        tags_path, np.zeros((2, 2), "uint8"), metadata=None, datetime="2001:01:01 00:00:00"
    )
    with tifffile.TiffFile(tags_path) as tif:
        tags = tif.pages.first.tags
        provenance: dict[str, str] = {}
        assert _tiff_datetime(
            {"DateTimeOriginal": " 2010:02:03 04:05:06 "}, tags, provenance
        ) == datetime(2010, 2, 3, 4, 5, 6)
        assert provenance["acquired_at_local"] == "EXIF DateTimeOriginal"
        provenance = {}
        assert _tiff_datetime({"DateTimeOriginal": "garbage"}, tags, provenance) == datetime(
            2001, 1, 1
        )
        assert provenance["acquired_at_local"] == "TIFF DateTime (file write time)"
        provenance = {}
        assert _tiff_datetime({"DateTimeOriginal": ""}, tags, provenance) == datetime(2001, 1, 1)
    bare = tmp_path / "b.tif"
    tifffile.imwrite(bare, np.zeros((2, 2), "uint8"), metadata=None, datetime=False)
    orig = tmp_path / "o.tif"
    tifffile.imwrite(
        orig,
        np.zeros((2, 2), "uint8"),
        metadata=None,
        datetime="2001:01:01 00:00:00",
        extratags=[(36867, "s", 0, "2015:06:07 08:09:10", True)],
    )
    with tifffile.TiffFile(bare) as tif:
        provenance = {}
        assert _tiff_datetime({}, tif.pages.first.tags, provenance) is None
        assert provenance == {}
    with tifffile.TiffFile(orig) as tif:
        provenance = {}
        assert _tiff_datetime({}, tif.pages.first.tags, provenance) == datetime(
            2015, 6, 7, 8, 9, 10
        )
        assert provenance["acquired_at_local"] == "EXIF DateTimeOriginal"


def test_palette_and_extra_axes_warn(tmp_path: Path) -> None:
    indices = (np.arange(8 * 6).reshape(8, 6) % 256).astype("uint8")
    colormap = np.zeros((3, 256), "uint16")
    path = tmp_path / "pal.tif"
    tifffile.imwrite(path, indices, photometric="palette", colormap=colormap, metadata=None)
    with open_image(path) as image:
        md = image.metadata()
    assert "palette image: values are the stored indices (colormap not applied)" in md.warnings
    shaped = tmp_path / "q.tif"
    tifffile.imwrite(shaped, np.zeros((3, 2, 4, 5), "uint16"), metadata={"axes": "QIYX"})
    with open_image(shaped) as image:
        md = image.metadata()
        # Q and I both mean Z here: the first takes it, the other stays an extra axis
        assert (md.size_z, md.extra_dims) == (3, {"I": 2})
    assert "axes {'I': 2} beyond TCZYX are read at index 0" in md.warnings
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(
        plain,
        np.zeros((4, 5), "uint16"),
        metadata=None,
        resolution=((2, 1), (2, 1)),
        resolutionunit="CENTIMETER",
    )
    with open_image(plain) as image:
        assert image.metadata().warnings == []


def test_each_series_is_a_scene_named_by_its_series(tmp_path: Path) -> None:
    a = encoded_stack(1, 1, 1, 6, 5)[0, 0, 0]
    b = encoded_stack(1, 1, 1, 8, 3)[0, 0, 0]
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(a, metadata={"Name": "first"})
        tif.write(b, metadata={"Name": "second"})
    with TiffReader(path) as image:
        scenes = image.scenes()
        assert [(s.index, s.size_y, s.size_x) for s in scenes] == [(0, 6, 5), (1, 8, 3)]
        np.testing.assert_array_equal(image.read_plane(1, 0, 0, 0), b)
        md = image.metadata(1)
        assert md.scene_index == 1 and md.size_y == 8


def test_a_multipage_stack_is_z_and_a_cut_chain_is_refused(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 6, 5)
    path = tmp_path / "z.tif"
    with tifffile.TiffWriter(path) as tif:
        for plane in stack[0, 0]:
            tif.write(plane, metadata=None, contiguous=False)
    with open_image(path) as image:
        assert image.scenes()[0].size_z == 3
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        next_at = page.offset + 2 + 12 * len(page.tags)
    data[next_at : next_at + 4] = (len(data) + 50).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="the IFD after page 0 lies past the end"):
        open_image(path)


@pytest.mark.realdata
def test_exif_exposure_and_capture_time_of_a_nikon_tiff(testdata: Path) -> None:
    with open_image(testdata / "tiff" / "NikonTIF.tif") as image:
        assert image.format_name == "TIFF"
        md = image.metadata()
    assert [c.exposure_ms for c in md.channels] == [pytest.approx(500.0)] * md.size_c
    assert md.provenance["channels[].exposure_ms"] == "EXIF ExposureTime"
    assert md.acquired_at_local == datetime(2010, 4, 8, 9, 18, 2)
    assert md.provenance["acquired_at_local"] == "EXIF DateTimeOriginal"


def test_a_model_alone_is_a_microscope(tmp_path: Path) -> None:
    path = tmp_path / "model.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 6), "uint8"),
        metadata=None,
        software=False,
        extratags=[(272, "s", 0, "Scope 9", True)],
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert (md.microscope.manufacturer, md.microscope.model, md.microscope.software) == (
        None,
        "Scope 9",
        None,
    )
    assert [c.exposure_ms for c in md.channels] == [None]
    assert "channels[].exposure_ms" not in md.provenance


def test_fei_without_a_scan_section(tmp_path: Path) -> None:
    path = _fei(tmp_path / "noscan.tif", {"System": {"SystemType": "Quanta"}})
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um is None
    assert "FEI metadata without Scan/PixelWidth: pixel size unknown" in md.warnings
    assert md.microscope is not None and md.microscope.model == "Quanta"
