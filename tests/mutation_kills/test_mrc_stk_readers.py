"""MRC and MetaMorph STK readers against their references (mutation kills, fifth round).

References: for the real files, the corpus' own records (``EXPECTED.json`` of
``../shared/testdata``: tifffile's sizes, calibration and plane hash;
``tests/realdata/expected_fields.json``: the tag each value was read from) and
``testdata-more/MANIFEST.md`` (Bio-Formats 7.3.1); for written files, what the
format's reference library parses from the same bytes (``mrcfile`` for MRC,
tifffile's ``stk_metadata`` for STK) and the documented conventions (MRC2014's
modes, machine stamp, volume stacks; MetaMorph's UIC tags).
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.synthetic_stk import (
    CALIBRATION_UNITS,
    CREATE_TIME,
    PLANE_PROPERTY,
    SPATIAL_CALIBRATION,
    X_CALIBRATION,
    Y_CALIBRATION,
    write_stk,
)
from zstack_analyzer import open_image
from zstack_analyzer.readers.stk import StkReader

if TYPE_CHECKING:
    from zstack_analyzer.metadata import ImageMetadata

FIELDS = json.loads(
    (Path(__file__).parents[1] / "realdata" / "expected_fields.json").read_text("utf-8")
)["files"]


def _expected(testdata: Path, relative: str) -> dict[str, Any]:
    document = json.loads((testdata / "EXPECTED.json").read_text("utf-8"))
    return next(entry for entry in document["files"] if entry["path"] == relative)


# ============================================================================ STK, real files
@pytest.mark.parametrize("relative", ["tiff/movie.stk", "tiff/MetamorphImage.tif"])
def test_real_stk_files_give_the_recorded_values(testdata: Path, relative: str) -> None:
    entry = _expected(testdata, relative)
    scene = entry["scenes"][0]
    values = {k: v["value"] for k, v in FIELDS[relative]["values"].items()}
    with open_image(testdata / relative) as image:
        assert image.format_name == "STK"
        md = image.metadata(0)
        plane = image.read_plane(0, 0, 0, 0)
    assert {"T": md.size_t, "C": md.size_c, "Z": md.size_z, "Y": md.size_y, "X": md.size_x} == (
        scene["sizes"]
    )
    assert md.dtype == scene["dtype"]
    voxel = scene["voxel_size_um"]
    assert md.physical_size.x_um == (pytest.approx(voxel["x"]) if voxel["x"] else None)
    assert md.physical_size.y_um == (pytest.approx(voxel["y"]) if voxel["y"] else None)
    assert md.physical_size.z_um is None
    assert [c.name for c in md.channels] == scene["channel_names"]
    digest = hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest()
    assert digest == entry["scene0_pixels"]["plane_t0_c0_z0_sha256"]
    assert [c.exposure_ms for c in md.channels] == values["channels.exposure_ms"]
    assert md.microscope is not None
    assert md.microscope.software == values["microscope.software"]
    assert md.microscope.software_version == values["microscope.software_version"]
    assert md.acquired_at_local == datetime.fromisoformat(values["acquired_at_local"])
    assert md.time_interval_s == (
        pytest.approx(values["time_interval_s"]) if "time_interval_s" in values else None
    )
    if "objective.name" in values:
        assert md.objective is not None
        assert md.objective.name == values["objective.name"]
        assert md.objective.numerical_aperture == pytest.approx(
            values["objective.numerical_aperture"]
        )
    else:  # movie.stk: _MagSetting_ and _MagNA_ are empty
        assert md.objective is None
    assert "acquisition time zone unknown: acquired_at_local holds the time as written" in (
        md.warnings
    )
    assert md.provenance["sizes"] == "tifffile STK series (UIC2 NumberPlanes)"


def test_movie_stk_without_a_unit_says_so(testdata: Path) -> None:
    """XCalibration 1.0 with CalibrationUnits '' (tifffile): no pixel size, and a warning."""
    with open_image(testdata / "tiff/movie.stk") as image:
        md = image.metadata(0)
        raw = image.raw_metadata()
    assert "STK XCalibration 1.0 with CalibrationUnits '': no unit, pixel size unknown" in (
        md.warnings
    )
    assert "physical_size.x_um" not in md.provenance
    assert md.provenance["acquired_at_local"] == "STK UIC3 DatetimeCreated of the first plane"
    assert md.provenance["time_interval_s"] == (
        "STK UIC3 DatetimeCreated per plane (mean step between T planes)"
    )
    assert md.provenance["microscope.software"] == (
        "TIFF Software tag (MetaMorph writes 'MetaMorph x.y')"
    )
    assert "objective" not in md.provenance
    assert raw["stk"]["Name"] == "Temporary Timelapse Image"
    assert md.vendor_metadata["stk"]["Name"] == "Temporary Timelapse Image"


def test_metamorph_tif_calibration_and_create_time(testdata: Path) -> None:
    with open_image(testdata / "tiff/MetamorphImage.tif") as image:
        md = image.metadata(0)
    assert md.provenance["physical_size.x_um"] == "STK UIC XCalibration + CalibrationUnits"
    assert md.provenance["physical_size.y_um"] == "STK UIC YCalibration + CalibrationUnits"
    assert md.provenance["acquired_at_local"] == "STK UIC CreateTime"
    assert md.provenance["objective"] == "STK UIC PlaneProperty _MagSetting_, _MagNA_"
    assert not any(w.startswith("STK XCalibration") for w in md.warnings)


# ============================================================================ STK, written files
def _planes(count: int) -> np.ndarray:
    return np.arange(count * 6 * 8, dtype="<u2").reshape(count, 6, 8)


def _calibrated(x: tuple[int, int], y: tuple[int, int], unit: str) -> list[tuple[int, Any]]:
    return [
        (SPATIAL_CALIBRATION, 1),
        (X_CALIBRATION, x),
        (Y_CALIBRATION, y),
        (CALIBRATION_UNITS, unit),
    ]


def _metadata(path: Path) -> tuple[ImageMetadata, dict[str, Any]]:
    with tifffile.TiffFile(path) as tif:
        stk = dict(tif.stk_metadata or {})
    with open_image(path) as image:
        assert image.format_name == "STK"
        return image.metadata(0), stk


@pytest.mark.parametrize(
    ("unit", "factor"), [("um", 1.0), ("nm", 1e-3), ("mm", 1e3), ("micron", 1.0)]
)
def test_calibration_is_x_and_y_in_their_unit(tmp_path: Path, unit: str, factor: float) -> None:
    path = write_stk(tmp_path / "c.stk", _planes(1), uic1=_calibrated((13, 20), (7, 10), unit))
    md, stk = _metadata(path)
    assert (stk["XCalibration"], stk["YCalibration"], stk["CalibrationUnits"]) == (0.65, 0.7, unit)
    assert md.physical_size.x_um == pytest.approx(0.65 * factor)
    assert md.physical_size.y_um == pytest.approx(0.7 * factor)
    assert md.physical_size.z_um is None
    assert not any(w.startswith("STK XCalibration") for w in md.warnings)


@pytest.mark.parametrize(
    "uic1",
    [
        [(SPATIAL_CALIBRATION, 0), (X_CALIBRATION, (13, 20)), (CALIBRATION_UNITS, "um")],
        [(SPATIAL_CALIBRATION, 1), (X_CALIBRATION, (13, 20)), (CALIBRATION_UNITS, "furlong")],
        [(SPATIAL_CALIBRATION, 1), (X_CALIBRATION, (13, 20))],
    ],
    ids=["calibration-off", "unknown-unit", "no-unit"],
)
def test_no_pixel_size_without_calibration_or_a_known_unit(
    tmp_path: Path, uic1: list[tuple[int, Any]]
) -> None:
    path = write_stk(tmp_path / "n.stk", _planes(3), z_um=[0, 0.5, 0.5], uic1=uic1)
    md, stk = _metadata(path)
    assert md.physical_size.model_dump() == {"x_um": None, "y_um": None, "z_um": None}
    unit = stk.get("CalibrationUnits")
    assert md.warnings[0] == (
        f"STK XCalibration 0.65 with CalibrationUnits {unit!r}: no unit, pixel size unknown"
    )


def test_zero_calibration_is_no_size_and_y_is_its_own(tmp_path: Path) -> None:
    path = write_stk(tmp_path / "z.stk", _planes(1), uic1=_calibrated((0, 1), (3, 4), "um"))
    md, _ = _metadata(path)
    assert md.physical_size.x_um is None
    assert md.physical_size.y_um == pytest.approx(0.75)


def test_z_step_is_the_mean_uic2_distance_after_the_first_plane(tmp_path: Path) -> None:
    """UIC2 ZDistance holds each plane's distance from the one before (plane 0's is 0)."""
    path = write_stk(
        tmp_path / "z.stk",
        _planes(4),
        z_um=[0.0, 0.25, 0.25, 0.25],
        uic1=_calibrated((1, 2), (1, 2), "nm"),
    )
    md, stk = _metadata(path)
    assert md.size_z == 4
    np.testing.assert_allclose(stk["ZDistance"], [0, 0.25, 0.25, 0.25])
    assert md.physical_size.z_um == pytest.approx(0.25e-3)
    assert md.provenance["physical_size.z_um"] == "STK UIC ZDistance"
    uneven = write_stk(
        tmp_path / "u.stk", _planes(3), z_um=[0.0, 0.2, 0.6], uic1=_calibrated((1, 2), (1, 2), "um")
    )
    md, _ = _metadata(uneven)
    assert md.physical_size.z_um == pytest.approx(0.4)


def test_two_planes_make_a_z_step_and_a_time_series_has_none(tmp_path: Path) -> None:
    two = write_stk(
        tmp_path / "two.stk", _planes(2), z_um=[0.0, 0.3], uic1=_calibrated((1, 2), (1, 2), "um")
    )
    md, _ = _metadata(two)
    assert md.size_z == 2
    assert md.physical_size.z_um == pytest.approx(0.3)
    # Plane times that differ and a Z distance of 0 for plane 0: tifffile makes the planes T.
    created = [(2459000, 0), (2459000, 500), (2459000, 1000)]
    series = write_stk(
        tmp_path / "t.stk",
        _planes(3),
        z_um=[0.0, 0.5, 0.5],
        created=created,
        uic1=_calibrated((1, 2), (1, 2), "um"),
    )
    with tifffile.TiffFile(series) as tif:
        assert tif.series[0].axes == "TYX"
    md, _ = _metadata(series)
    assert (md.size_t, md.size_z) == (3, 1)
    assert md.physical_size.x_um == pytest.approx(0.5)
    assert md.physical_size.z_um is None
    assert md.time_interval_s == pytest.approx(0.5)


def test_no_z_step_for_one_plane_or_zero_distances(tmp_path: Path) -> None:
    one = write_stk(tmp_path / "one.stk", _planes(1), uic1=_calibrated((1, 2), (1, 2), "um"))
    md, _ = _metadata(one)
    assert md.size_z == 1
    assert md.physical_size.z_um is None
    assert "physical_size.z_um" not in md.provenance
    flat = write_stk(
        tmp_path / "flat.stk", _planes(3), z_um=[0, 0, 0], uic1=_calibrated((1, 2), (1, 2), "um")
    )
    md, _ = _metadata(flat)
    assert md.size_z == 3
    assert md.physical_size.z_um is None
    assert "physical_size.z_um" not in md.provenance


def _property(name: str, value: Any) -> tuple[int, Any]:
    return PLANE_PROPERTY, {"name": name, "value": value}


def test_illumination_names_the_channel_and_the_objective_is_read(tmp_path: Path) -> None:
    uic1 = [
        (0, 1),
        _property("Camera Bit Depth", (12, 1)),
        _property("_IllumSetting_", "GFP"),
        _property("_MagSetting_", " 60x Plan Apo "),
        _property("_MagNA_", (14, 10)),
    ]
    md, stk = _metadata(write_stk(tmp_path / "o.stk", _planes(1), uic1=uic1))
    assert [p["value"] for p in stk["PlaneProperty"]][1:3] == ["GFP", " 60x Plan Apo "]
    assert [c.name for c in md.channels] == ["GFP"]
    assert md.objective is not None
    assert md.objective.name == "60x Plan Apo"
    assert md.objective.numerical_aperture == pytest.approx(1.4)
    assert md.provenance["objective"] == "STK UIC PlaneProperty _MagSetting_, _MagNA_"


@pytest.mark.parametrize(
    ("props", "name", "aperture"),
    [
        ([("_MagSetting_", "10x"), ("_MagNA_", (0, 1))], "10x", None),
        ([("_MagSetting_", ""), ("_MagNA_", (3, 10))], None, 0.3),
        ([("_MagSetting_", "20x"), ("_MagNA_", "n/a")], "20x", None),
    ],
    ids=["zero-aperture", "no-name", "aperture-not-a-number"],
)
def test_objective_parts_that_are_missing(
    tmp_path: Path, props: list[tuple[str, Any]], name: str | None, aperture: float | None
) -> None:
    uic1 = [(0, 1), *(_property(k, v) for k, v in props)]
    md, _ = _metadata(write_stk(tmp_path / "m.stk", _planes(1), uic1=uic1))
    assert md.objective is not None
    assert md.objective.name == name
    assert md.objective.numerical_aperture == (pytest.approx(aperture) if aperture else None)


def test_no_objective_and_no_name_when_the_properties_are_empty(tmp_path: Path) -> None:
    uic1 = [
        (0, 1),
        _property("_IllumSetting_", ""),
        _property("_MagSetting_", " "),
        _property("_MagNA_", (0, 1)),
    ]
    md, _ = _metadata(write_stk(tmp_path / "e.stk", _planes(1), uic1=uic1))
    assert md.objective is None
    assert [c.name for c in md.channels] == [None]
    assert "objective" not in md.provenance


@pytest.mark.parametrize(
    ("description", "exposure"),
    [
        ("Binning: 1 x 1\r\nExposure: 1.5 s\r\nGain: 2", 1500.0),
        ("Exposure: 20 ms\r\nBinning: 2 x 2", 20.0),
        ("Exposure: 20 msec", None),
        ("Binning: 2 x 2", None),
    ],
)
def test_exposure_from_the_first_plane_description(
    tmp_path: Path, description: str, exposure: float | None
) -> None:
    """MetaMorph writes 'Exposure: N ms' (or 'N s') in each plane's description."""
    text = f"{description}\x00Exposure: 99 ms\x00Exposure: 99 ms"
    md, stk = _metadata(write_stk(tmp_path / "x.stk", _planes(3), description=text))
    assert stk["PlaneDescriptions"][0] == description
    assert [c.exposure_ms for c in md.channels] == [exposure]


def test_time_interval_from_the_plane_times(tmp_path: Path) -> None:
    created = [(2459000, 1000), (2459000, 1500), (2459000, 3000)]
    md, stk = _metadata(write_stk(tmp_path / "t.stk", _planes(3), z_um=[0, 0, 0], created=created))
    assert md.size_t == 3
    assert md.acquired_at_local == stk["DatetimeCreated"][0].astype("datetime64[us]").item()
    assert md.acquired_at_local == datetime(2020, 5, 31, 0, 0, 1)
    assert md.time_interval_s == pytest.approx(1.0)
    assert md.provenance["acquired_at_local"] == "STK UIC3 DatetimeCreated of the first plane"


def test_no_interval_when_time_goes_back_and_no_stamp_before_1900(tmp_path: Path) -> None:
    backwards = [(2459000, 3000), (2459000, 2000), (2459000, 1000)]
    md, _ = _metadata(write_stk(tmp_path / "b.stk", _planes(3), z_um=[0] * 3, created=backwards))
    assert md.size_t == 3
    assert md.time_interval_s is None
    assert "time_interval_s" not in md.provenance
    # Julian day 2400000 is 1858: no time recorded; UIC1 CreateTime is the acquisition time.
    old = [(2400000, 1000), (2400000, 2000)]
    uic1 = [(0, 1), (CREATE_TIME, (2455261, 43732203))]
    md, stk = _metadata(
        write_stk(tmp_path / "o.stk", _planes(2), z_um=[0, 0], created=old, uic1=uic1)
    )
    assert md.time_interval_s is None
    assert md.acquired_at_local == stk["CreateTime"] == datetime(2010, 3, 6, 12, 8, 52, 203000)
    assert md.provenance["acquired_at_local"] == "STK UIC CreateTime"


@pytest.mark.parametrize("uic1", [[(0, 1)], [(0, 1), (CREATE_TIME, 0)]], ids=["none", "bad"])
def test_no_time_at_all(tmp_path: Path, uic1: list[tuple[int, Any]]) -> None:
    """No plane time and no CreateTime, or one whose offset is invalid (tifffile gives 0)."""
    path = write_stk(tmp_path / "n.stk", _planes(2), created=[(0, 0), (0, 0)], uic1=uic1)
    md, stk = _metadata(path)
    assert stk.get("CreateTime") in (None, 0)
    assert md.acquired_at_local is None
    assert "acquired_at_local" not in md.provenance
    assert not any("time zone" in w for w in md.warnings)


@pytest.mark.parametrize(
    ("software", "name", "version"),
    [
        ("MetaMorph 7.8.0.0", "MetaMorph", "7.8.0.0"),
        ("  MetaMorph 6.1r3 beta", "MetaMorph", "6.1r3"),
        ("MetaFluor", "MetaFluor", None),
    ],
)
def test_software_tag(tmp_path: Path, software: str, name: str, version: str | None) -> None:
    md, _ = _metadata(write_stk(tmp_path / "s.stk", _planes(1), software=software))
    assert md.microscope is not None
    assert (md.microscope.software, md.microscope.software_version) == (name, version)


def test_no_software_tag_is_no_microscope(tmp_path: Path) -> None:
    md, _ = _metadata(write_stk(tmp_path / "s.stk", _planes(1), software=False))
    assert md.microscope is None
    assert "microscope.software" not in md.provenance


def test_stk_claims_uic_tiffs_but_not_ome_or_imagej(tmp_path: Path) -> None:
    from zstack_analyzer.readers._tiff_common import TiffPeek

    assert StkReader.claims(b"", TiffPeek(tags=frozenset({33628})))
    assert not StkReader.claims(
        b"", TiffPeek(tags=frozenset({33628}), description_head=b"ImageJ=1.53t\n")
    )
    path = write_stk(tmp_path / "plain.tif", _planes(2))
    with open_image(path) as image:
        assert image.format_name == "STK"
        raw = image.raw_metadata()
    assert raw["stk"]["NumberPlanes"] == 2


# ============================================================================ MRC
def _more() -> Path:
    from tests.testdata_more import require_testdata_more

    return require_testdata_more()


def _mrc(
    path: Path,
    data: np.ndarray,
    *,
    voxel: tuple[float, float, float] | float = 2.5,
    header: dict[str, Any] | None = None,
    labels: list[str] | None = None,
) -> Path:
    """An MRC written by mrcfile (the format's reference library), header fields set after."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
        for name, value in (header or {}).items():
            mrc.header[name] = value
        for text in labels or []:
            mrc.add_label(text)
        mrc.update_header_stats()
    return path


def _poke(path: Path, offset: int, fmt: str, *values: Any) -> Path:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))
    return path


def test_real_mrc_gives_bioformats_sizes_calibration_and_plane(tmp_path: Path) -> None:
    """HAADFscan.mrc (Direct Electron): MANIFEST's Bio-Formats values, mrcfile's header."""
    import mrcfile

    path = _more() / "mrc" / "HAADFscan.mrc"
    with open_image(path) as image:
        assert image.format_name == "MRC"
        md = image.metadata(0)
        raw = image.raw_metadata()
        plane = np.asarray(image.read_plane(0, 0, 0, 0))
    assert (md.size_t, md.size_c, md.size_z, md.size_y, md.size_x) == (1, 1, 1, 16, 16)
    assert md.dtype == "uint16"
    assert (int(plane.astype(np.int64).sum()), int(plane.max())) == (1552947, 9399)
    # Bio-Formats: 56.7913 Å; the header: cella 908.661 Å over mx = 16 samples.
    assert md.physical_size.x_um == pytest.approx(908.661 / 16 * 1e-4, rel=1e-12)
    assert md.physical_size.y_um == pytest.approx(56.7913e-4, rel=1e-6)
    assert md.physical_size.z_um is None  # one section: no Z spacing
    assert md.provenance["physical_size.x_um"] == "MRC header cella.x / mx (Å)"
    assert md.provenance["physical_size.y_um"] == "MRC header cella.y / my (Å)"
    assert "physical_size.z_um" not in md.provenance
    assert md.provenance["sizes"] == "MRC header nx, ny, nz (mz per volume in a volume stack)"
    assert [c.index for c in md.channels] == [0]
    with mrcfile.open(path, permissive=True, header_only=True) as mrc:
        header = mrc.header
        assert set(raw) == {
            *header.dtype.names,
            "extended_header_bytes",
            "voxel_size_angstrom",
            "labels",
        } - {"label"}
        assert raw["extended_header_bytes"] == mrc.extended_header.nbytes == 909312
        assert raw["voxel_size_angstrom"] == pytest.approx(mrc.voxel_size.tolist())
        assert raw["exttyp"] == header.exttyp.item().decode() == "FEI2"
        assert raw["map"] == "MAP "
        # void fields as text up to their first NUL: all zeros in this file, so empty
        assert bytes(header.extra1.item()) == bytes(8)
        assert (raw["extra1"], raw["extra2"]) == ("", "")
        assert raw["machst"] == [68, 68, 0, 0]
    assert md.vendor_metadata == {
        "mode": 6,
        "ispg": 0,
        "exttyp": "FEI2",
        "nversion": 20140,
        "origin": [0.0, 0.0, 0.0],
        "dmin": 3.0,
        "dmax": 2.0,
        "dmean": 1.0,
        "labels": [],
        "extended_header_bytes": 909312,
    }


def test_raw_metadata_is_a_copy(tmp_path: Path) -> None:
    path = _mrc(tmp_path / "a.mrc", np.zeros((2, 4, 6), np.int16))
    with open_image(path) as image:
        first = image.raw_metadata()
        first["nx"] = -1
        assert image.raw_metadata()["nx"] == 6


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [("int8", 0), ("int16", 1), ("float32", 2), ("complex64", 4), ("uint16", 6), ("float16", 12)],
)
@pytest.mark.parametrize("order", ["<", ">"])
def test_every_mode_in_both_byte_orders_reads_as_mrcfile(
    tmp_path: Path, dtype: str, mode: int, order: str
) -> None:
    import mrcfile

    values = (np.arange(3 * 5 * 7) % 100 - 20).reshape(3, 5, 7)
    data = values.astype(np.dtype(dtype).newbyteorder(order))
    path = _mrc(tmp_path / "m.mrc", data)
    with mrcfile.open(path) as mrc:
        reference = np.asarray(mrc.data)
        assert int(mrc.header.mode) == mode
    with open_image(path) as image:
        md = image.metadata()
        assert md.dtype == np.dtype(dtype).name
        assert md.vendor_metadata["mode"] == mode
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), reference[z][::-1])


@pytest.mark.parametrize("order", ["<", ">"])
def test_without_a_machine_stamp_the_mode_decides_the_byte_order(
    tmp_path: Path, order: str
) -> None:
    data = (np.arange(2 * 4 * 6) * 300).astype(np.dtype("int16").newbyteorder(order))
    path = _mrc(tmp_path / "s.mrc", data.reshape(2, 4, 6))
    _poke(path, 212, "4B", 0, 0, 0, 0)
    with open_image(path) as image:
        md = image.metadata()
        assert (md.size_z, md.size_y, md.size_x) == (2, 4, 6)
        np.testing.assert_array_equal(
            image.read_plane(0, 0, 0, 1), data.reshape(2, 4, 6)[1][::-1].astype("int16")
        )
        assert any(w.startswith("mrcfile: ") for w in md.warnings)


@pytest.mark.parametrize(("mode", "kind"), [(3, "complex int16"), (101, "packed 4-bit")])
def test_unsupported_modes_are_named(tmp_path: Path, mode: int, kind: str) -> None:
    from zstack_analyzer import UnsupportedFormatError

    path = _poke(_mrc(tmp_path / "u.mrc", np.zeros((1, 4, 4), np.int16)), 12, "<i", mode)
    with pytest.raises(UnsupportedFormatError) as caught:
        open_image(path)
    assert str(caught.value).startswith(f"u.mrc: MRC mode {mode} ({kind}) is not supported")
    # Big-endian without a stamp: the mode read little-endian is not plausible, so big it is.
    big = _mrc(tmp_path / "b.mrc", np.zeros((1, 4, 4), ">i2"))
    _poke(big, 212, "4B", 0, 0, 0, 0)
    _poke(big, 12, ">i", mode)
    with pytest.raises(UnsupportedFormatError, match=rf"MRC mode {mode} \({kind}\)"):
        open_image(big)


@pytest.mark.parametrize(
    ("offset", "value", "words"),
    [
        (12, 5, "u.mrc: MRC mode 5 is not one the format defines; the header is corrupt"),
        (0, 0, "u.mrc: the header declares 0 x 4 x 2 voxels; the file is corrupt"),
        (4, -1, "u.mrc: the header declares 4 x -1 x 2 voxels; the file is corrupt"),
        (8, 0, "u.mrc: the header declares 4 x 4 x 0 voxels; the file is corrupt"),
    ],
)
def test_lying_headers_are_corrupt_with_their_values(
    tmp_path: Path, offset: int, value: int, words: str
) -> None:
    from zstack_analyzer import CorruptFileError

    path = _poke(_mrc(tmp_path / "u.mrc", np.zeros((2, 4, 4), np.int16)), offset, "<i", value)
    with pytest.raises(CorruptFileError) as caught:
        open_image(path)
    assert str(caught.value).startswith(words)


@pytest.mark.parametrize(
    ("ispg", "mz", "tz"),
    [
        (401, 2, (3, 2)),
        (630, 3, (2, 3)),
        (400, 2, (1, 6)),
        (631, 2, (1, 6)),
        (401, 6, (1, 6)),
        (401, 4, (1, 6)),
        (401, 0, (1, 6)),
        (1, 2, (1, 6)),
    ],
)
def test_volume_stacks_by_space_group_and_mz(
    tmp_path: Path, ispg: int, mz: int, tz: tuple[int, int]
) -> None:
    """MRC2014: space group 401-630 marks a volume stack of nz / mz volumes of mz sections."""
    data = np.arange(6 * 3 * 4, dtype=np.float32).reshape(6, 3, 4)
    path = _mrc(tmp_path / "v.mrc", data)
    _poke(path, 88, "<i", ispg)
    _poke(path, 36, "<i", mz)
    with open_image(path) as image:
        info = image.scenes()[0]
        assert (info.size_t, info.size_z) == tz
        t, z = tz
        np.testing.assert_array_equal(image.read_plane(0, t - 1, 0, z - 1), data[-1][::-1])
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, z - 1), data[z - 1][::-1])


def test_voxel_size_per_axis_is_cella_over_the_sampling(tmp_path: Path) -> None:
    import mrcfile

    path = _mrc(tmp_path / "v.mrc", np.zeros((4, 3, 5), np.int16), voxel=(1.5, 2.25, 3.75))
    with mrcfile.open(path) as mrc:
        reference = mrc.voxel_size
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um == pytest.approx(float(reference.x) * 1e-4)
    assert md.physical_size.y_um == pytest.approx(float(reference.y) * 1e-4)
    assert md.physical_size.z_um == pytest.approx(float(reference.z) * 1e-4)
    assert md.physical_size.x_um == pytest.approx(1.5e-4)
    assert md.physical_size.z_um == pytest.approx(3.75e-4)
    assert md.provenance["physical_size.z_um"] == "MRC header cella.z / mz (Å)"
    assert md.vendor_metadata["extended_header_bytes"] == 0


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "gone"),
    [
        (28, "<i", 0, "x"),  # mx = 0: no sampling, no size
        (32, "<i", -3, "y"),  # my negative
        (40, "<f", 0.0, "x"),  # cella.x = 0
        (44, "<f", float("nan"), "y"),  # cella.y not a number
        (48, "<f", float("inf"), "z"),  # cella.z infinite
        (48, "<f", -7.5, "z"),  # cella.z negative
    ],
)
def test_no_size_where_sampling_or_cell_is_unusable(
    tmp_path: Path, offset: int, fmt: str, value: float, gone: str
) -> None:
    path = _mrc(tmp_path / "c.mrc", np.zeros((4, 3, 5), np.int16), voxel=(1.5, 2.25, 3.75))
    _poke(path, offset, fmt, value)
    with open_image(path) as image:
        md = image.metadata()
    sizes = md.physical_size.model_dump()
    assert sizes[f"{gone}_um"] is None
    assert f"physical_size.{gone}_um" not in md.provenance
    kept = {"x": 1.5e-4, "y": 2.25e-4, "z": 3.75e-4}
    for axis, value_um in kept.items():
        if axis != gone:
            assert sizes[f"{axis}_um"] == pytest.approx(value_um)


def test_labels_as_many_as_nlabl_says(tmp_path: Path) -> None:
    import mrcfile

    path = _mrc(
        tmp_path / "l.mrc",
        np.zeros((1, 4, 4), np.uint16),
        labels=["a test label  ", "second label", "third"],
    )
    with mrcfile.open(path) as mrc:
        written = [bytes(v).decode().strip() for v in mrc.header.label[: int(mrc.header.nlabl)]]
    assert len(written) == 4  # mrcfile's own "Created by mrcfile.py" first
    assert written[1:] == ["a test label", "second label", "third"]
    with open_image(path) as image:
        md = image.metadata()
        raw = image.raw_metadata()
    assert md.vendor_metadata["labels"] == written
    assert raw["nlabl"] == 4
    assert "label" not in raw
    _poke(path, 220, "<i", 2)  # nlabl: only the first two count
    with open_image(path) as image:
        assert image.metadata().vendor_metadata["labels"] == written[:2]
    _poke(path, 220, "<i", 12)  # more than the ten the header holds
    with open_image(path) as image:
        labels = image.metadata().vendor_metadata["labels"]
    assert labels == [*written, *[""] * 6]


def test_mrcfile_warnings_are_the_records_warnings(tmp_path: Path) -> None:
    import warnings

    import mrcfile

    path = _mrc(tmp_path / "w.mrc", np.zeros((2, 4, 4), np.int16))
    _poke(path, 208, "4s", b"JUNK")  # no MAP: mrcfile (permissive) warns, the data are fine
    _poke(path, 212, "4B", 0x44, 0x44, 0, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mrcfile.open(path, permissive=True, header_only=True):
            pass
    expected = [f"mrcfile: {w.message}" for w in caught]
    assert expected
    with open_image(path) as image:
        md = image.metadata()
    assert [w for w in md.warnings if w.startswith("mrcfile: ")] == expected


def test_imod_unsigned_bytes_are_noted(tmp_path: Path) -> None:
    path = _mrc(tmp_path / "i.mrc", np.zeros((1, 4, 4), np.int8))
    _poke(path, 152, "<2i", 1146047817, 0)
    with open_image(path) as image:
        md = image.metadata()
    assert md.dtype == "uint8"
    assert "IMOD file without the signed-bytes flag: mode 0 read as uint8" in md.warnings
    _poke(path, 152, "<2i", 1146047817, 3)  # bit 0 set: signed
    with open_image(path) as image:
        md = image.metadata()
    assert md.dtype == "int8"
    assert not any("IMOD" in w for w in md.warnings)
    _poke(path, 152, "<2i", 1146047818, 0)  # another stamp: MRC2014's int8
    with open_image(path) as image:
        assert image.metadata().dtype == "int8"


def test_imod_stamp_in_a_big_endian_file(tmp_path: Path) -> None:
    """A big-endian header (stamp 0x11) with mode 0 and IMOD's stamp read big-endian."""
    path = _mrc(tmp_path / "i.mrc", np.zeros((1, 4, 8), ">i2"))
    _poke(path, 12, ">i", 0)
    _poke(path, 0, ">i", 16)  # 16 one-byte columns: the same 128 data bytes
    _poke(path, 152, ">2i", 1146047817, 0)
    with open_image(path) as image:
        md = image.metadata()
    assert (md.size_x, md.dtype) == (16, "uint8")


def _head(**fields: Any) -> bytes:
    head = bytearray(1024)
    struct.pack_into("<4i", head, 0, *fields.get("nxyz_mode", (8, 8, 2, 1)))
    if fields.get("map"):
        head[208:212] = b"MAP "
    return bytes(head)


@pytest.mark.parametrize(
    ("head", "name", "claimed"),
    [
        (_head(map=True), "anything.bin", True),
        (_head(map=True)[:223], "a.mrc", False),
        (_head(map=True)[:224], "a.bin", True),
        (_head(), "old.mrc", True),
        (_head(), "old.MRCS", True),
        (_head(), "old.ali", True),
        (_head(), "old.bin", False),
        (_head(nxyz_mode=(8, 8, 2, 3)), "old.mrc", False),
        (_head(nxyz_mode=(0, 8, 2, 1)), "old.st", False),
        (_head(nxyz_mode=(8, 8, 1 << 20, 2)), "old.map", True),
        (_head(nxyz_mode=(8, (1 << 20) + 1, 1, 2)), "old.rec", False),
        (struct.pack(">4i", 8, 8, 2, 6) + bytes(1008), "big.mrc", True),
    ],
)
def test_sniff_by_map_or_by_a_plausible_old_header(head: bytes, name: str, claimed: bool) -> None:
    from zstack_analyzer.readers.mrc import MrcReader

    assert MrcReader.sniff(head, Path(name)) is claimed


def test_an_old_header_without_map_opens_by_name(tmp_path: Path) -> None:
    data = np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4)
    path = _mrc(tmp_path / "old.st", data)
    _poke(path, 208, "4s", b"\0\0\0\0")
    with open_image(path) as image:
        assert image.format_name == "MRC"
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), data[1][::-1])


def test_one_sample_and_sub_angstrom_cells_are_sizes_as_mrcfile_says(tmp_path: Path) -> None:
    """mz = 1 (the cell's Z length is one section) and a cell under 1 Å still calibrate."""
    import mrcfile

    path = _mrc(tmp_path / "s.mrc", np.zeros((3, 4, 5), np.int16), voxel=(0.05, 0.07, 2.5))
    _poke(path, 36, "<i", 1)  # mz = 1
    _poke(path, 48, "<f", 2.5)  # cella.z = 2.5 Å for that one sample
    with mrcfile.open(path, permissive=True) as mrc:
        reference = mrc.voxel_size
        assert float(mrc.header.cella.x) < 1.0
    with open_image(path) as image:
        md = image.metadata()
    assert md.size_z == 3
    assert md.physical_size.x_um == pytest.approx(float(reference.x) * 1e-4, rel=1e-6)
    assert md.physical_size.y_um == pytest.approx(float(reference.y) * 1e-4, rel=1e-6)
    assert md.physical_size.z_um == pytest.approx(float(reference.z) * 1e-4, rel=1e-6)
    assert md.physical_size.z_um == pytest.approx(2.5e-4)


def test_a_single_section_has_no_z_spacing(tmp_path: Path) -> None:
    """mrcfile writes cella.z = voxel for a 2-D image; one section has no Z step (Bio-Formats: -)."""
    import mrcfile

    path = _mrc(tmp_path / "one.mrc", np.zeros((4, 5), np.int16), voxel=2.5)
    with mrcfile.open(path) as mrc:
        assert float(mrc.voxel_size.z) == pytest.approx(2.5)
    with open_image(path) as image:
        md = image.metadata()
    assert md.size_z == 1
    assert md.physical_size.x_um == pytest.approx(2.5e-4)
    assert md.physical_size.z_um is None
    assert "physical_size.z_um" not in md.provenance
    two = _mrc(tmp_path / "two.mrc", np.zeros((2, 4, 5), np.int16), voxel=2.5)
    with open_image(two) as image:
        assert image.metadata().physical_size.z_um == pytest.approx(2.5e-4)


def test_the_callers_limits_are_the_readers(tmp_path: Path) -> None:
    """HAADFscan.mrc's 909,312-byte extended header is over a 100 kB metadata limit."""
    from zstack_analyzer import CorruptFileError
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.readers.mrc import MrcReader

    path = _more() / "mrc" / "HAADFscan.mrc"
    with pytest.raises(CorruptFileError, match="909,312 bytes is negative or over the metadata"):
        MrcReader(path, limits=ReadLimits(max_metadata_bytes=100_000))
    with MrcReader(path, limits=ReadLimits(max_metadata_bytes=1_000_000)) as reader:
        assert reader.metadata().size_x == 16


def test_imods_da_stamp_is_little_endian_and_a_bad_mode_is_named_as_written(
    tmp_path: Path,
) -> None:
    """MRC2014 allows 0x44 0x41 ("DA", IMOD) for little-endian: the mode is read that way."""
    from zstack_analyzer import CorruptFileError

    path = _mrc(tmp_path / "da.mrc", np.zeros((1, 4, 4), np.int16))
    _poke(path, 212, "4B", 0x44, 0x41, 0, 0)
    _poke(path, 12, "<i", 42)
    with pytest.raises(CorruptFileError, match=r"MRC mode 42 is not one the format defines"):
        open_image(path)


@pytest.mark.parametrize(("mode", "kind"), [(3, "complex int16"), (101, "packed 4-bit")])
def test_unsupported_modes_without_a_stamp_are_little_endian(
    tmp_path: Path, mode: int, kind: str
) -> None:
    from zstack_analyzer import UnsupportedFormatError

    path = _mrc(tmp_path / "u.mrc", np.zeros((1, 4, 4), np.int16))
    _poke(path, 212, "4B", 0, 0, 0, 0)
    _poke(path, 12, "<i", mode)
    with pytest.raises(UnsupportedFormatError, match=rf"MRC mode {mode} \({kind}\)"):
        open_image(path)


def test_a_cut_header_and_a_negative_extended_header_are_named(tmp_path: Path) -> None:
    from zstack_analyzer import CorruptFileError

    path = _mrc(tmp_path / "c.mrc", np.zeros((1, 4, 4), np.int16))
    whole = path.read_bytes()
    path.write_bytes(whole[:500])
    with pytest.raises(CorruptFileError, match=r"the 1024-byte MRC header is cut short \(500"):
        open_image(path)
    path.write_bytes(whole)
    _poke(path, 92, "<i", -8)  # nsymbt
    with pytest.raises(CorruptFileError, match=r"extended header of -8 bytes is negative"):
        open_image(path)


def test_a_label_is_its_text_up_to_the_first_nul(tmp_path: Path) -> None:
    path = _mrc(tmp_path / "l.mrc", np.zeros((1, 4, 4), np.uint16), labels=["x"])
    _poke(path, 224 + 80, "80s", b"before\x00after")  # label 2 (nlabl is 2)
    with open_image(path) as image:
        assert image.metadata().vendor_metadata["labels"][1] == "before"
