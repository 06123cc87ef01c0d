"""LifReader on the real LIF corpus files: contract, axis mapping, stitching, bad input.

No LIF writer exists, so every check runs on the corpus (skipped when it is absent)
and compares against liffile's own arrays.
"""

from __future__ import annotations

import os
import pickle
import struct
from datetime import UTC
from typing import TYPE_CHECKING, Any

import dask
import liffile
import numpy as np
import pytest

from tests.contract import assert_reader_contract
from zstack_analyzer import CorruptFileError, open_image
from zstack_analyzer.axes import to_canonical
from zstack_analyzer.readers.lif import LifReader

if TYPE_CHECKING:
    from pathlib import Path

SWEEP = "lif/LeicaLASX_wavelength-sweep_example.lif"
XZ = "lif/testdata_2channel_xz.lif"
TILES = "lif/PR2729_frameOrderCombinedScanTypes.lif"


def _liffile_canonical(path: Path, scene: int) -> np.ndarray:
    """liffile's array of image ``scene`` reordered to T,C,Z,Y,X by the SOURCES.md rules."""
    with liffile.LifFile(path) as lif:
        image = [im for im in lif.images if "X" in im.sizes][scene]
        data = np.asarray(image.asarray())
        dims = "".join(image.dims)
    if "C" not in dims:
        for sweep in ("λ", "Λ"):
            if sweep in dims:
                dims = dims.replace(sweep, "C")
                break
    if "Y" not in dims:
        xi = dims.index("X")
        dims = dims[:xi] + "Y" + dims[xi:]
        data = np.expand_dims(data, xi)
    return to_canonical(data, dims)


@pytest.mark.parametrize("name", [SWEEP, XZ])
def test_contract_against_liffile(testdata: Path, name: str) -> None:
    path = testdata / name
    assert_reader_contract(LifReader, path, _liffile_canonical(path, 0))


def test_contract_tile_scan(testdata: Path) -> None:
    assert_reader_contract(LifReader, testdata / TILES)


@pytest.mark.parametrize("name", [SWEEP, XZ])
def test_every_scene_equals_liffile(testdata: Path, name: str) -> None:
    path = testdata / name
    with LifReader(path) as reader:
        for info in reader.scenes():
            expected = _liffile_canonical(path, info.index)
            np.testing.assert_array_equal(np.asarray(reader.to_dask(info.index)), expected)


def test_sniff_by_content(testdata: Path, tmp_path: Path) -> None:
    head = (testdata / TILES).read_bytes()[:4096]
    assert LifReader.sniff(head, tmp_path / "renamed.bin")
    assert not LifReader.sniff(b"II*\x00" + bytes(100), tmp_path / "x.lif")
    assert not LifReader.sniff(b"", tmp_path / "x.lif")
    assert not LifReader.sniff(os.urandom(64), tmp_path / "x.lif")


def test_lambda_sweeps_become_channels(testdata: Path) -> None:
    with LifReader(testdata / SWEEP) as reader:
        emission = reader.metadata(0)
        assert (emission.size_c, emission.extra_dims) == (20, {})
        waves = [ch.emission_nm for ch in emission.channels]
        assert waves[0] == pytest.approx(550.0)
        assert waves[-1] == pytest.approx(740.0)
        assert np.allclose(np.diff(np.asarray(waves, dtype=float)), 10.0)
        assert all(ch.name is None for ch in emission.channels)
        assert "λ" in emission.provenance["channels[].emission_nm"]

        excitation = reader.metadata(1)
        assert excitation.size_c == 15
        assert excitation.channels[0].excitation_nm == pytest.approx(490.0)
        assert excitation.channels[-1].excitation_nm == pytest.approx(560.0)

        volume = reader.metadata(2)
        assert (volume.size_t, volume.size_c, volume.size_z) == (2, 10, 11)
        assert volume.time_interval_s == pytest.approx(80.91)


def test_xz_scan_is_y1_with_lines_along_z(testdata: Path) -> None:
    with liffile.LifFile(testdata / XZ) as lif:
        native = np.asarray(lif.images[0].asarray())  # T, C, Z, X
    with LifReader(testdata / XZ) as reader:
        md = reader.metadata(0)
        assert md.shape == (20, 2, 128, 1, 128)
        assert md.physical_size.y_um is None
        assert md.physical_size.z_um == pytest.approx(0.14027874)
        assert any("XZ scan" in w for w in md.warnings)
        plane = reader.read_plane(0, 7, 1, 33)
        assert plane.shape == (1, 128)
        np.testing.assert_array_equal(plane[0], native[7, 1, 33])


def test_xzy_is_an_ordinary_volume(testdata: Path) -> None:
    with liffile.LifFile(testdata / XZ) as lif:
        native = np.asarray(lif.images[1].asarray())  # Y, C, Z, X
    with LifReader(testdata / XZ) as reader:
        md = reader.metadata(1)
        assert md.shape == (1, 2, 128, 23, 128)
        assert md.physical_size.y_um == pytest.approx(0.229061545)
        plane = reader.read_plane(1, 0, 1, 100)
        np.testing.assert_array_equal(plane, native[:, 1, 100, :])


def test_tile_scan_is_stitched_by_stage_position(testdata: Path) -> None:
    path = testdata / TILES
    with liffile.LifFile(path) as lif:
        image = lif.images[0]
        raw = np.asarray(image.asarray())  # T, M, Z, C, Y, X
        tiles = image.tilescan.tiles
        step_x = float(np.diff(image.coords["X"][:2])[0])
        step_y = float(np.diff(image.coords["Y"][:2])[0])
    off_x = np.rint((tiles["pos_x"] - tiles["pos_x"].min()) / step_x).astype(int)
    off_y = np.rint((tiles["pos_y"] - tiles["pos_y"].min()) / step_y).astype(int)
    assert sorted(set(off_x.tolist())) == [0, 33]
    with LifReader(path) as reader:
        md = reader.metadata(0)
        assert md.shape == (2, 2, 3, 97, 97)
        assert md.extra_dims == {}
        t, c, z = 1, 1, 2
        canvas = reader.read_plane(0, t, c, z)
        assert canvas.shape == (97, 97)
        # the last tile is on top, whole
        y0, x0 = off_y[-1], off_x[-1]
        np.testing.assert_array_equal(canvas[y0 : y0 + 64, x0 : x0 + 64], raw[t, 3, z, c])
        # every tile shows where no later tile covers it
        covered = np.zeros((97, 97), dtype=bool)
        for m in range(3, -1, -1):
            ys, xs = slice(off_y[m], off_y[m] + 64), slice(off_x[m], off_x[m] + 64)
            mask = ~covered[ys, xs]
            np.testing.assert_array_equal(canvas[ys, xs][mask], raw[t, m, z, c][mask])
            covered[ys, xs] = True
        assert covered.all()


def test_negative_z_step_is_kept_with_a_warning(testdata: Path) -> None:
    with LifReader(testdata / TILES) as reader:
        md = reader.metadata(0)
    assert md.physical_size.z_um == pytest.approx(-6.227615)
    assert any("negative Z step" in w for w in md.warnings)
    assert md.provenance["physical_size.z_um"].startswith("LIF DimensionDescription")


def test_metadata_fields(testdata: Path) -> None:
    with LifReader(testdata / SWEEP) as reader:
        md = reader.metadata(0)
        raw = reader.raw_metadata()
    assert md.file_format == "LIF"
    assert md.scene_name == "x_y_lambdaEmi"
    assert md.objective is not None
    assert md.objective.magnification == 63.0
    assert md.objective.numerical_aperture == 1.3
    assert md.objective.immersion == "Glycerol"
    assert md.objective.name == "HC PL APO CS2 63x/1.30 GLYC"
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Leica"
    assert md.microscope.software == "LAS X"
    assert md.microscope.software_version == "3.5.7.23225"
    assert md.microscope.serial_number == "8100000201"
    assert md.acquired_at is not None
    assert md.acquired_at.tzinfo is UTC
    assert md.acquired_at.isoformat().startswith("2021-01-29T14:33:36.935")
    assert md.channels[0].color == "#00FF00"
    assert md.channels[0].excitation_nm == 543.0  # the one active laser line
    assert md.bit_depth == 8
    assert md.vendor_metadata["native_dims"] == "λYX"
    assert raw["xml_header"].startswith("<LMSDataContainerHeader")


def test_tile_scan_detection_band_emission(testdata: Path) -> None:
    with LifReader(testdata / TILES) as reader:
        md = reader.metadata(0)
    assert [ch.emission_nm for ch in md.channels] == [537.5, 642.5]
    assert [ch.color for ch in md.channels] == ["#00FF00", "#FF0000"]


def test_pickle_and_threaded_dask(testdata: Path) -> None:
    with open_image(testdata / XZ) as reader:
        lazy = reader.to_dask(1)
        sequential = np.asarray(lazy.compute(scheduler="sync"))
        with dask.config.set(num_workers=4):
            threaded = np.asarray(lazy.compute(scheduler="threads"))
        np.testing.assert_array_equal(threaded, sequential)
        clone = pickle.loads(pickle.dumps(lazy))
        np.testing.assert_array_equal(np.asarray(clone.compute(scheduler="sync")), sequential)
        del clone


@pytest.mark.parametrize("name", [SWEEP, XZ, TILES])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_copies_raise_corrupt(
    testdata: Path, tmp_path: Path, name: str, fraction: float
) -> None:
    data = (testdata / name).read_bytes()
    path = tmp_path / "truncated.lif"
    path.write_bytes(data[: int(len(data) * fraction)])
    # refused at open: every image's data block must lie inside the file
    with pytest.raises(CorruptFileError, match=r"truncated\.lif.*truncated"):
        open_image(path)


def test_magic_plus_random_bytes_raise_corrupt(testdata: Path, tmp_path: Path) -> None:
    data = (testdata / TILES).read_bytes()
    path = tmp_path / "random.lif"
    path.write_bytes(data[:15] + np.random.default_rng(7).bytes(len(data) - 15))
    with pytest.raises(CorruptFileError, match=r"random\.lif"):
        open_image(path)


def test_huge_xml_length_is_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge.lif"
    path.write_bytes(struct.pack("<IIBI", 0x70, 0, 0x2A, 0x7FFFFFFF) + "<LMS".encode("utf-16-le"))
    with pytest.raises(CorruptFileError, match=r"huge\.lif"):
        open_image(path)


def test_xml_entities_are_refused(tmp_path: Path) -> None:
    xml = '<!DOCTYPE x [<!ENTITY a "aaaa">]><LMSDataContainerHeader Version="2">&a;</LMSDataContainerHeader>'
    body = xml.encode("utf-16-le")
    path = tmp_path / "entities.lif"
    path.write_bytes(struct.pack("<IIBI", 0x70, len(body) + 5, 0x2A, len(xml)) + body)
    # the DOCTYPE comes first, so the sniff (XML starts with "<") still claims it
    with pytest.raises(CorruptFileError, match="DTD"):
        open_image(path)


# ---------------------------------------------------------------- synthetic LIF files
_DIM_IDS = {"X": 1, "Y": 2, "Z": 3, "T": 4, "λ": 5, "M": 10}


def _write_lif(
    path: Path,
    data: np.ndarray,
    dims: str,
    *,
    luts: list[str],
    tags: list[int] | None = None,
    attachments: str = "",
) -> None:
    """Write ``data`` (C-ordered, axes ``dims``; "C" and "S" are stored channels) as a LIF.

    Why a writer here: the corpus has no λ sweep beside a C axis, no RGB image and
    no tile scan without positions; these layouts follow the XML rules liffile reads.
    """
    itemsize = data.dtype.itemsize
    strides = dict(zip(dims, data.strides, strict=True))
    shape = dict(zip(dims, data.shape, strict=True))
    n_channels = shape.get("C", 1) * shape.get("S", 1)
    channel_offsets = [
        c * strides.get("C", 0) + s * strides.get("S", 0)
        for c in range(shape.get("C", 1))
        for s in range(shape.get("S", 1))
    ]
    tags = tags or [0] * n_channels
    channels = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="{tags[i]}" Resolution="{itemsize * 8}" '
        f'NameOfMeasuredQuantity="" Min="0" Max="255" Unit="" LUTName="{luts[i % len(luts)]}" '
        f'IsLUTInverted="0" BytesInc="{channel_offsets[i]}" BitInc="0"/>'
        for i in range(n_channels)
    )
    units = {"X": "m", "Y": "m", "Z": "m", "T": "s", "λ": "m", "M": ""}
    lengths = {"X": 1e-6, "Y": 2e-6, "Z": 3e-6, "T": 4.0, "λ": 2e-8, "M": 0.0}
    origins = {"λ": 5e-7}
    dimensions = "".join(
        f'<DimensionDescription DimID="{_DIM_IDS[d]}" NumberOfElements="{shape[d]}" '
        f'Origin="{origins.get(d, 0.0)}" Length="{lengths[d] * (shape[d] - 1)}" Unit="{units[d]}" '
        f'BitInc="0" BytesInc="{strides[d]}"/>'
        for d in dims
        if d not in "CS"
    )
    body = data.tobytes()
    xml = (
        '<LMSDataContainerHeader Version="2"><Element Name="synthetic" UniqueID="1"><Data>'
        '<Experiment/></Data><Memory Size="0" MemoryBlockID="MemBlock_0"/><Children>'
        '<Element Name="image" UniqueID="2"><Data><Image><ImageDescription>'
        f"<Channels>{channels}</Channels><Dimensions>{dimensions}</Dimensions>"
        f"</ImageDescription>{attachments}</Image></Data>"
        f'<Memory Size="{len(body)}" MemoryBlockID="MemBlock_1"/><Children/></Element>'
        "</Children></Element></LMSDataContainerHeader>"
    )
    xml_bytes = xml.encode("utf-16-le")
    out = struct.pack("<IIBI", 0x70, len(xml_bytes) + 5, 0x2A, len(xml)) + xml_bytes
    for block_id, block in (("MemBlock_0", b""), ("MemBlock_1", body)):
        ident = block_id.encode("utf-16-le")
        out += struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(block), 0x2A, len(block_id)) + ident
        out += block
    path.write_bytes(out)


def test_synthetic_lambda_beside_channels_takes_index_0(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 2 * 4 * 5 * 6, dtype=np.uint16).reshape(2, 3, 2, 4, 5, 6)
    path = tmp_path / "lambda_c.lif"
    _write_lif(path, data, "TλCZYX", luts=["Red", "Green"])
    expected = data[:, 0]  # T, C, Z, Y, X with λ at index 0
    assert_reader_contract(LifReader, path, expected)
    with LifReader(path) as reader:
        md = reader.metadata(0)
        assert md.shape == (2, 2, 4, 5, 6)
        assert md.extra_dims == {"λ": 3}
        assert [ch.color for ch in md.channels] == ["#FF0000", "#00FF00"]
        assert all(ch.emission_nm is None for ch in md.channels)
        assert md.physical_size.x_um == pytest.approx(1.0)
        assert md.physical_size.y_um == pytest.approx(2.0)
        assert md.physical_size.z_um == pytest.approx(3.0)
        assert md.time_interval_s == pytest.approx(4.0)
        assert any("λ=3" in w for w in md.warnings)


def test_synthetic_bgr_samples_come_out_rgb(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = tmp_path / "bgr.lif"
    _write_lif(path, data, "YXS", luts=["Blue", "Green", "Red"], tags=[3, 2, 1])
    with liffile.LifFile(path) as lif:
        reference = np.asarray(lif.images[0].asarray())  # liffile reverses BGR too
    expected = data[..., ::-1][np.newaxis, np.newaxis, np.newaxis]
    np.testing.assert_array_equal(reference, data[..., ::-1])
    assert_reader_contract(LifReader, path, expected)
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert (md.samples_per_pixel, md.size_c) == (3, 1)


def test_synthetic_tiles_without_positions_stay_an_extra_axis(tmp_path: Path) -> None:
    data = np.arange(3 * 2 * 4 * 5, dtype=np.uint16).reshape(3, 2, 4, 5)
    path = tmp_path / "mosaic.lif"
    _write_lif(path, data, "MZYX", luts=["Gray"])
    assert_reader_contract(LifReader, path, data[0][np.newaxis, np.newaxis])
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert md.extra_dims == {"M": 3}
    assert any("TileScanInfo" in w for w in md.warnings)


def test_synthetic_tiles_overlap_later_on_top(tmp_path: Path) -> None:
    data = np.stack([np.full((4, 5), 10 + m, dtype=np.uint8) for m in range(3)])
    tiles = "".join(
        f'<Tile FieldX="{m}" FieldY="0" PosX="{x}" PosY="{y}" PosZ="0"/>'
        for m, (x, y) in enumerate([(0.0, 0.0), (3e-6, 0.0), (0.0, 2e-6)])
    )
    attachment = (
        '<Attachment Name="TileScanInfo" Application="LAS AF" FlipX="0" FlipY="0" SwapXY="0">'
        f"{tiles}</Attachment>"
    )
    path = tmp_path / "tiles.lif"
    _write_lif(path, data, "MYX", luts=["Gray"], attachments=attachment)
    with LifReader(path) as reader:
        md = reader.metadata(0)
        plane = reader.read_plane(0, 0, 0, 0)
    # offsets: tile 1 at x = 3 µm / 1 µm = 3 px; tile 2 at y = 2 µm / 2 µm = 1 px
    expected = np.zeros((1 + 4, 3 + 5), dtype=np.uint8)
    expected[0:4, 0:5] = 10
    expected[0:4, 3:8] = 11
    expected[1:5, 0:5] = 12
    assert md.shape == (1, 1, 1, 5, 8)
    np.testing.assert_array_equal(plane, expected)


# ------------------------------------------------------------------ independent oracles
def _raw_lif_xml(path: Path) -> str:
    """The LIF XML header, read from the file's own bytes (no LIF library).

    Layout: int32 magic 0x70, int32 size, byte 0x2A, uint32 UTF-16 character count, XML.
    """
    data = path.read_bytes()
    (chars,) = struct.unpack_from("<I", data, 9)
    return data[13 : 13 + 2 * chars].decode("utf-16-le")


def _image_element(xml: str, name: str) -> Any:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)  # noqa: S314  (corpus file)
    for element in root.iter("Element"):
        if element.get("Name") == name and element.find("Data/Image") is not None:
            return element
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "scene", "image"), [(SWEEP, 0, "x_y_lambdaEmi"), (XZ, 0, "xzt")])
def test_metadata_fields_against_the_raw_xml(
    testdata: Path, name: str, scene: int, image: str
) -> None:
    """Objective, microscope, software, laser and LUT colour, each re-read from the raw XML."""
    element = _image_element(_raw_lif_xml(testdata / name), image)
    hardware = element.find("Data/Image/Attachment[@Name='HardwareSetting']")
    setting = next(hardware.iter("ATLConfocalSettingDefinition"))
    with LifReader(testdata / name) as reader:
        md = reader.metadata(scene)
    assert md.scene_name == element.get("Name")
    assert md.objective is not None
    assert md.objective.name == " ".join(setting.get("ObjectiveName").split())
    assert md.objective.magnification == float(setting.get("Magnification"))
    assert md.objective.numerical_aperture == float(setting.get("NumericalAperture"))
    assert setting.get("Immersion") == "GLYC"
    assert md.objective.immersion == "Glycerol"
    assert md.microscope is not None
    software = hardware.get("Software")  # "LAS X 3.5.7.23225"
    assert f"{md.microscope.software} {md.microscope.software_version}" == software
    assert (
        md.microscope.model
        == f"{hardware.get('SystemTypeName')} ({setting.get('MicroscopeModel')})"
    )
    assert md.microscope.serial_number == setting.get("SystemSerialNumber")
    lines = sorted(
        float(laser.get("LaserLine"))
        for laser in hardware.iter("LaserLineSetting")
        if float(laser.get("IntensityDev", "0")) > 0
    )
    if len(lines) == 1:
        assert {ch.excitation_nm for ch in md.channels} == {lines[0]}
    else:  # several lines on: which excites which channel is not stated
        assert {ch.excitation_nm for ch in md.channels} == {None}
    luts = [
        c.get("LUTName").lower()
        for c in element.findall("Data/Image/ImageDescription/Channels/ChannelDescription")
    ]
    named = {"green": "#00FF00", "red": "#FF0000", "blue": "#0000FF", "gray": "#FFFFFF"}
    assert [ch.color for ch in md.channels][: len(luts)] == [named.get(lut) for lut in luts][
        : md.size_c
    ]
    assert all(ch.exposure_ms is None for ch in md.channels)  # a confocal: none stated


def test_detector_band_emission_against_the_raw_xml(testdata: Path) -> None:
    element = _image_element(_raw_lif_xml(testdata / TILES), "TileScan_001")
    bands = [
        [float(q.get("Value")) for q in band.findall("Quantity") if q.get("Unit") == "m"]
        for band in element.findall("Data/Image/Attachment[@Name='ChannelAttachment']/Band")
    ]
    with LifReader(testdata / TILES) as reader:
        md = reader.metadata(0)
    assert [ch.emission_nm for ch in md.channels] == [
        round((low + high) / 2 * 1e9, 3) for low, high in bands
    ]
    assert "detector band" in md.provenance["channels[].emission_nm"]


def test_synthetic_widefield_exposure_and_application(tmp_path: Path) -> None:
    """A widefield LIF: exposure per channel (seconds in the XML); software from @Application.

    No HardwareSetting attachment names the software, so the attachments' own
    ``Application`` ("LAS AF") is the writing software.
    """
    data = np.zeros((2, 4, 5), dtype=np.uint8)
    path = tmp_path / "widefield.lif"
    attachments = (
        '<Attachment Name="WideFieldChannelConfigurator" Application="LAS AF">'
        '<WideFieldChannelInfo ExposureTime="0.05"/><WideFieldChannelInfo ExposureTime="0.2"/>'
        "</Attachment>"
    )
    _write_lif(path, data, "CYX", luts=["Green", "Red"], attachments=attachments)
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert [ch.exposure_ms for ch in md.channels] == [50.0, 200.0]
    assert md.provenance["channels[].exposure_ms"] == "LIF WideFieldChannelInfo/@ExposureTime"
    assert md.microscope is not None
    assert (md.microscope.software, md.microscope.software_version) == ("LAS AF", None)


def _widefield_info(exposure: str, cube: str, method: str = "FLUO", **extra: str) -> str:
    attributes = " ".join(f'{k}="{v}"' for k, v in extra.items())
    return (
        f'<WideFieldChannelInfo ExposureTime="{exposure}" FluoCubeName="{cube}" '
        f'ContrastingMethodName="{method}" {attributes}/>'
    )


def test_widefield_channels_are_the_images_own_never_the_autofocus_channel(
    tmp_path: Path,
) -> None:
    """LAS X widefield layout: the HardwareSetting's camera setting lists the image's channels.

    The autofocus has its own camera setting (here its own attachment) with its own
    WideFieldChannelInfo; taking every WideFieldChannelInfo of the image counted three
    for two channels and so read no exposure at all, or would give channel 0 the
    autofocus exposure. Exposure is in seconds; the filter cube and contrast method
    are read per channel (Bio-Formats reads the same elements).
    """
    data = np.zeros((2, 4, 5), dtype=np.uint16)
    path = tmp_path / "widefield.lif"
    attachments = (
        '<Attachment Name="AutoFocus" Application="LAS X">'
        '<ATLCameraSettingDefinition><WideFieldChannelConfigurator CameraName="DFC9000">'
        + _widefield_info("0.003", "BF", "BF", UserDefName="AF")
        + "</WideFieldChannelConfigurator></ATLCameraSettingDefinition></Attachment>"
        '<Attachment Name="HardwareSetting" Application="LAS X" DataSourceTypeName="Camera">'
        '<ATLCameraSettingDefinition ObjectiveName="HC PL APO 63x/1.40 OIL" Magnification="63">'
        '<WideFieldChannelConfigurator CameraName="DFC9000">'
        + _widefield_info("0.05", "DAPI")
        + _widefield_info("0.2", "BF", "BF")
        + "</WideFieldChannelConfigurator></ATLCameraSettingDefinition></Attachment>"
    )
    _write_lif(path, data, "CYX", luts=["Blue", "Gray"], attachments=attachments)
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert [ch.exposure_ms for ch in md.channels] == [50.0, 200.0]
    assert [ch.illumination for ch in md.channels] == ["Epifluorescence", "Transmitted"]
    assert [ch.contrast_method for ch in md.channels] == ["Fluorescence", "Brightfield"]
    assert md.vendor_metadata["filter_cubes"] == ["DAPI", "BF"]
    assert "HardwareSetting" in md.provenance["channels[].exposure_ms"]


def test_widefield_sequential_settings_give_one_channel_each(tmp_path: Path) -> None:
    """Sequential widefield acquisition: one camera setting per channel, in channel order."""
    data = np.zeros((2, 4, 5), dtype=np.uint8)
    path = tmp_path / "sequential.lif"

    def setting(exposure: str, cube: str) -> str:
        return (
            "<ATLCameraSettingDefinition><WideFieldChannelConfigurator>"
            + _widefield_info(exposure, cube)
            + "</WideFieldChannelConfigurator></ATLCameraSettingDefinition>"
        )

    attachments = (
        '<Attachment Name="HardwareSetting" Application="LAS X">'
        + setting("0.5", "QUAD-S")  # the main setting: the last channel's state
        + "<LDM_Block_Widefield_Sequential><LDM_Block_Sequential_List>"
        + setting("0.01", "GFP")
        + setting("0.5", "TXR")
        + "</LDM_Block_Sequential_List></LDM_Block_Widefield_Sequential></Attachment>"
    )
    _write_lif(path, data, "CYX", luts=["Green", "Red"], attachments=attachments)
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert [ch.exposure_ms for ch in md.channels] == [10.0, 500.0]
    assert md.vendor_metadata["filter_cubes"] == ["GFP", "TXR"]


def test_confocal_fluorophores_are_the_active_detectors_band_dyes(testdata: Path) -> None:
    """SP8 xz scans: HyD 1 and HyD 3 are active; their bands were set for FITC and TRITC.

    Bio-Formats reads the same MultiBand DyeName (it names the channel with it).
    """
    xml = _raw_lif_xml(testdata / XZ)
    with LifReader(testdata / XZ) as reader:
        for scene in reader.scenes():
            md = reader.metadata(scene.index)
            element = _image_element(xml, scene.name)
            setting = element.find(
                "Data/Image/Attachment[@Name='HardwareSetting']/ATLConfocalSettingDefinition"
            )
            dyes = {b.get("Channel"): b.get("DyeName") for b in setting.iter("MultiBand")}
            active = [
                d.get("Channel") for d in setting.iter("Detector") if d.get("IsActive") == "1"
            ]
            assert [ch.fluorophore for ch in md.channels] == [dyes[c] for c in active]
            assert [ch.fluorophore for ch in md.channels] == ["Leica/FITC", "Leica/TRITC"]
            assert [ch.name for ch in md.channels] == [None, None]


def test_sequential_confocal_settings_give_one_dye_per_channel(tmp_path: Path) -> None:
    """One sequential setting per channel: each setting's active detector and its band's dye."""
    data = np.zeros((2, 4, 5), dtype=np.uint8)
    path = tmp_path / "sequential.lif"

    def setting(channel: int, dye: str) -> str:
        bands = "".join(
            f'<MultiBand Channel="{k}" DyeName="{dye if k == channel else "Other"}"/>'
            for k in (1, 2, 3)
        )
        detectors = "".join(
            f'<Detector Name="HyD {k}" Channel="{k}" IsActive="{int(k == channel)}"/>'
            for k in (1, 2, 3)
        )
        return (
            f"<ATLConfocalSettingDefinition><DetectorList>{detectors}</DetectorList>"
            f"<Spectro>{bands}</Spectro></ATLConfocalSettingDefinition>"
        )

    attachments = (
        '<Attachment Name="HardwareSetting" Application="LAS X">'
        + setting(2, "Alexa 488")  # the main setting: the last sequence's state
        + "<LDM_Block_Sequence><LDM_Block_Sequential_List>"
        + setting(1, "DAPI")
        + setting(3, "Alexa 594")
        + "</LDM_Block_Sequential_List></LDM_Block_Sequence></Attachment>"
    )
    _write_lif(path, data, "CYX", luts=["Blue", "Red"], attachments=attachments)
    with LifReader(path) as reader:
        md = reader.metadata(0)
    assert [ch.fluorophore for ch in md.channels] == ["DAPI", "Alexa 594"]
    assert "MultiBand" in md.provenance["channels[].fluorophore"]
