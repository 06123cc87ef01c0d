"""ImageJ TIFF reads pinned on the eight real ImageJ files of the corpus, and a few written here.

Why these cases: the mutation run of ``readers/imagej_tiff.py`` (docs/mutation-scores.md,
fourth round). The corpus files give the canonical values (EXPECTED.json) and the
warnings, provenance, colours and intervals their own descriptions imply; files written
with tifffile cover the description fields no corpus file has (time units, a negative or
zero spacing, unknown and ``pixel`` units, a zero resolution, extra axes).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from zstack_analyzer import CorruptFileError, open_image
from zstack_analyzer.readers._tiff_common import TiffPeek
from zstack_analyzer.readers.imagej_tiff import ImageJTiffReader, _lut_colours, _per_pixel

if TYPE_CHECKING:
    from pathlib import Path

_FILES = [
    "imagej/5channel.tif",
    "imagej/xyzc_16bit__spots.tif",
    "imagej/xyt_8bit_polyp.tif",
    "imagej/mini-t1-head.tif",
    "imagej/CalibZAPWfixed_000154_max-16.tif",
    "imagej/Bead_Image1_crop.tif",
    "imagej/hela-cells.tif",
    "imagej/CH3_Fluorescence_8bit.tif",
]
_MICRO = "'\\\\u00B5m'"  # repr of the unit as ImageJ writes it (escaped, ASCII)


def _expected(testdata: Path, name: str) -> dict[str, Any]:
    entries = json.loads((testdata / "EXPECTED.json").read_text())["files"]
    return next(e for e in entries if e["path"] == name)


@pytest.mark.parametrize("name", _FILES)
def test_values_equal_expected_json(testdata: Path, name: str) -> None:
    expected = _expected(testdata, name)
    want = expected["scenes"][0]
    with open_image(testdata / name) as image:
        assert isinstance(image, ImageJTiffReader)
        assert [info.index for info in image.scenes()] == [0]
        md = image.metadata()
        sizes = want["sizes"]
        shape = (sizes["T"], sizes["C"], sizes["Z"], sizes["Y"], sizes["X"])
        assert md.shape[:5] == shape
        assert md.samples_per_pixel == sizes.get("S", 1)
        assert md.dtype == want["dtype"]
        for axis in ("x", "y", "z"):
            value = getattr(md.physical_size, f"{axis}_um")
            if want["voxel_size_um"][axis] is None:
                assert value is None, axis
            else:
                assert value == pytest.approx(want["voxel_size_um"][axis], rel=1e-8), axis
        plane = image.read_plane(0, 0, 0, 0)
        digest = hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest()
        assert digest == expected["scene0_pixels"]["plane_t0_c0_z0_sha256"]
        mip = np.stack([image.read_plane(0, 0, 0, z) for z in range(md.size_z)]).max(axis=0)
        total = mip.sum(dtype=np.float64 if mip.dtype.kind == "f" else np.int64)
        assert float(total) == pytest.approx(expected["scene0_pixels"]["zmip_t0_c0_sum"])
        assert float(mip.max()) == expected["scene0_pixels"]["zmip_t0_c0_max"]


@pytest.mark.parametrize(
    ("name", "warnings", "provenance", "interval", "colours", "version"),
    [
        ("imagej/5channel.tif", [], {}, None, [None] * 5, "1.40g"),
        (
            "imagej/xyzc_16bit__spots.tif",
            [],
            {
                "physical_size.x_um": f"ImageJ unit {_MICRO} + TIFF XResolution",
                "physical_size.y_um": f"ImageJ unit {_MICRO} + TIFF YResolution",
                "physical_size.z_um": "ImageJ description spacing",
            },
            None,
            ["#00FF00", "#0000FF"],
            "1.53f",
        ),
        (
            "imagej/CalibZAPWfixed_000154_max-16.tif",
            [],
            {
                "physical_size.x_um": f"ImageJ unit {_MICRO} + TIFF XResolution",
                "physical_size.y_um": f"ImageJ unit {_MICRO} + TIFF YResolution",
                "time_interval_s": "ImageJ description finterval",
            },
            30.0,  # finterval 0.5, tunit "minutes"
            [None],
            "1.53c",
        ),
        (
            "imagej/mini-t1-head.tif",
            [],
            {
                "physical_size.x_um": "ImageJ unit 'mm' + TIFF XResolution",
                "physical_size.y_um": "ImageJ unit 'mm' + TIFF YResolution",
                "physical_size.z_um": "ImageJ description spacing",
            },
            None,
            [None],
            "1.52r",
        ),
        (
            "imagej/Bead_Image1_crop.tif",
            ["palette image: values are the stored indices (colormap not applied)"],
            {
                "physical_size.x_um": f"ImageJ unit {_MICRO} + TIFF XResolution",
                "physical_size.y_um": f"ImageJ unit {_MICRO} + TIFF YResolution",
                "physical_size.z_um": "ImageJ description spacing",
            },
            None,
            [None],
            "1.53f",
        ),
        (
            "imagej/hela-cells.tif",
            [
                "ImageJ metadata says channels=3 but the TIFF stores 3 samples per pixel: "
                "kept as S=3, C=1"
            ],
            {
                "physical_size.x_um": f"ImageJ unit {_MICRO} + TIFF XResolution",
                "physical_size.y_um": f"ImageJ unit {_MICRO} + TIFF YResolution",
                "physical_size.z_um": "ImageJ description spacing",
            },
            None,
            [None],
            "1.53c",
        ),
        (
            "imagej/CH3_Fluorescence_8bit.tif",
            ["palette image: values are the stored indices (colormap not applied)"],
            {},
            None,
            ["#FF0000", "#00FF00", "#0000FF"],
            "1.53t",
        ),
        ("imagej/xyt_8bit_polyp.tif", [], {}, None, [None], "1.53f"),
    ],
)
def test_warnings_provenance_colours_and_version(
    testdata: Path,
    name: str,
    warnings: list[str],
    provenance: dict[str, str],
    interval: float | None,
    colours: list[str | None],
    version: str,
) -> None:
    with open_image(testdata / name) as image:
        md = image.metadata()
        raw = image.raw_metadata()
    assert md.warnings == warnings
    assert md.provenance == {
        "sizes": "TIFF layout + ImageJ description",
        **provenance,
        "microscope.software": "ImageJ description ImageJ=",
    }
    assert md.time_interval_s == interval
    assert [c.color for c in md.channels] == colours
    assert [c.index for c in md.channels] == list(range(md.size_c))
    assert md.microscope is not None
    assert (md.microscope.software, md.microscope.software_version) == ("ImageJ", version)
    assert md.vendor_metadata["imagej"]["ImageJ"] == version
    assert "LUTs" not in md.vendor_metadata["imagej"]
    assert "Ranges" not in md.vendor_metadata["imagej"]
    assert raw["imagej"]["ImageJ"] == version


def test_claims_imagej_descriptions_only() -> None:
    assert ImageJTiffReader.claims(b"II*\0", TiffPeek(description_head=b"ImageJ=1.53f\nimages=3"))
    assert not ImageJTiffReader.claims(b"II*\0", TiffPeek(description_head=b"<OME ImageJ="))
    assert not ImageJTiffReader.claims(b"II*\0", TiffPeek(description_head=b"imagej=1.5"))


# --------------------------------------------------------------------- written with tifffile
def _write(path: Path, data: np.ndarray, metadata: dict[str, Any], **kwargs: Any) -> Path:
    tifffile.imwrite(path, data, imagej=True, metadata=metadata, **kwargs)
    return path


@pytest.mark.parametrize(
    ("tunit", "factor"),
    [
        ("s", 1.0), ("sec", 1.0), ("ms", 1e-3), ("msec", 1e-3), ("min", 60.0), ("Minute", 60.0),
        ("h", 3600.0), ("hr", 3600.0), ("hours", 3600.0), ("fortnight", 1.0),
    ],
)  # fmt: skip
def test_frame_interval_units(tmp_path: Path, tunit: str, factor: float) -> None:
    data = np.zeros((3, 4, 5), np.uint8)
    path = _write(tmp_path / "t.tif", data, {"axes": "TYX", "finterval": 2.0, "tunit": tunit})
    with open_image(path) as image:
        assert image.metadata().time_interval_s == pytest.approx(2.0 * factor)


def test_a_frame_interval_without_unit_is_seconds(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), np.uint8)
    path = _write(tmp_path / "t.tif", data, {"axes": "TYX", "finterval": 1.5})
    with open_image(path) as image:
        assert image.metadata().time_interval_s == pytest.approx(1.5)


def test_a_negative_spacing_is_kept_with_a_warning(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), np.uint16)
    path = _write(
        tmp_path / "neg.tif", data, {"axes": "ZYX", "unit": "nm", "spacing": -200.0},
        resolution=(0.1, 0.1),
    )  # fmt: skip
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.z_um == pytest.approx(-0.2)
    assert md.physical_size.x_um == pytest.approx(0.01)
    assert md.warnings == ["ImageJ spacing is negative (-200.0): kept as found"]


def test_a_zero_spacing_warns(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), np.uint16)
    path = _write(
        tmp_path / "zero.tif", data, {"axes": "ZYX", "unit": "um", "spacing": 0.0},
        resolution=(2.0, 4.0),
    )  # fmt: skip
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.z_um is None
    assert (md.physical_size.x_um, md.physical_size.y_um) == (0.5, 0.25)
    assert md.warnings == ["ImageJ spacing is 0: Z step unknown"]
    assert "physical_size.z_um" not in md.provenance


def test_an_unknown_unit_and_the_pixel_unit(tmp_path: Path) -> None:
    data = np.zeros((2, 4, 5), np.uint8)
    path = _write(
        tmp_path / "furlong.tif", data, {"axes": "ZYX", "unit": "furlong"}, resolution=(2.0, 2.0)
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um is None
    assert md.warnings == ["ImageJ unit 'furlong' is not a known length unit: no calibration"]
    for unit in ("pixel", "Pixels"):
        path = _write(
            tmp_path / "px.tif", data, {"axes": "ZYX", "unit": unit}, resolution=(2.0, 2.0)
        )
        with open_image(path) as image:
            md = image.metadata()
        assert md.physical_size.x_um is None
        assert md.warnings == [f"ImageJ unit {unit!r}: the image is not calibrated"]


def test_no_unit_with_a_resolution_is_not_calibrated(tmp_path: Path) -> None:
    data = np.zeros((2, 4, 5), np.uint8)
    path = _write(tmp_path / "nounit.tif", data, {"axes": "ZYX"}, resolution=(2.0, 2.0))
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um is None
    assert md.warnings == ["ImageJ unit None: the image is not calibrated"]


def test_a_zero_resolution_is_no_pixel_size(tmp_path: Path) -> None:
    data = np.zeros((2, 4, 5), np.uint8)
    path = _write(
        tmp_path / "zero.tif", data, {"axes": "ZYX", "unit": "um", "spacing": 2.0},
        resolution=((0, 1), (0, 1)),
    )  # fmt: skip
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um is None
    assert md.physical_size.z_um == pytest.approx(2.0)
    assert md.warnings == ["TIFF resolution (0, 1) is 0: pixel size unknown"]
    assert "physical_size.x_um" not in md.provenance


def test_per_pixel() -> None:
    assert _per_pixel((4, 1), 1.0) == 0.25
    assert _per_pixel((1, 4), 1000.0) == 4000.0
    assert _per_pixel((0, 4), 1.0) is None
    assert _per_pixel((4, 0), 1.0) is None
    assert _per_pixel((-4, 1), 1.0) is None


def test_lut_colours() -> None:
    ramp = np.stack([np.arange(256), np.zeros(256), np.arange(256) // 2]).astype(np.uint8)
    assert _lut_colours([ramp], 1) == ["#FF007F"]
    assert _lut_colours([ramp, ramp], 1) == [None]
    assert _lut_colours(None, 2) == [None, None]
    assert _lut_colours([ramp[:2]], 1) == [None]  # not three rows
    assert _lut_colours([ramp[0]], 1) == [None]  # one dimension
    assert _lut_colours([ramp[:, :1]], 1) == ["#000000"]
    assert _lut_colours([np.zeros((3, 0), np.uint8)], 1) == [None]


def test_a_declared_image_count_over_the_pages_is_truncated(testdata: Path, tmp_path: Path) -> None:
    """A description claiming more images than the file holds (tifffile's fallback) is refused."""
    data = bytearray((testdata / "imagej/xyt_8bit_polyp.tif").read_bytes())
    at = data.index(b"images=3")
    data[at : at + 8] = b"images=9"
    at = data.index(b"frames=3")
    data[at : at + 8] = b"frames=9"
    path = tmp_path / "claims.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        open_image(path)
    assert str(caught.value) == (
        "claims.tif: the ImageJ description declares 9 images but the file holds 3 page(s) "
        "and too few bytes for the rest; the file is truncated or corrupt"
    )
    assert caught.value.path == path
