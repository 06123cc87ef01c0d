"""TIFF-family readers on synthetic files written by tifffile, pixels position-encoded."""

from __future__ import annotations

import json
import pickle
import struct
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import (
    write_bigtiff_tiled,
    write_imagej,
    write_ome_multifile,
    write_ome_pyramid,
    write_ome_tiff,
    write_plain_pages,
    write_rgb,
    write_tiff_pyramid,
)
from zstack_analyzer import CorruptFileError, MetadataError, SceneNotFoundError, open_image
from zstack_analyzer.readers.imagej_tiff import ImageJTiffReader
from zstack_analyzer.readers.ome_tiff import OmeTiffReader
from zstack_analyzer.readers.tiff import TiffReader
from zstack_analyzer.registry import detect_reader

if TYPE_CHECKING:
    from pathlib import Path


# --------------------------------------------------------------------------- OME-TIFF
def test_ome_tiff_5d_contract_and_metadata(tmp_path: Path) -> None:
    stack = encoded_stack(2, 3, 4, 16, 20)
    path = write_ome_tiff(
        tmp_path / "five.ome.tif",
        [stack],
        metadata=[
            {
                "Name": "first",
                "PhysicalSizeX": 250,
                "PhysicalSizeXUnit": "nm",
                "PhysicalSizeY": 0.25,
                "PhysicalSizeZ": 0.002,
                "PhysicalSizeZUnit": "mm",
                "TimeIncrement": 1500,
                "TimeIncrementUnit": "ms",
                "AcquisitionDate": "2024-05-01T10:00:00+02:00",
                "Channel": {
                    "Name": ["DAPI", "GFP", "RFP"],
                    "Color": [-16776961, 16711935, -65281],
                    "EmissionWavelength": [461, 510, 600],
                },
            }
        ],
    )
    assert_reader_contract(OmeTiffReader, path, stack)
    with open_image(path) as image:
        md = image.metadata(0)
    assert md.file_format == "OME-TIFF"
    assert md.scene_name == "first"
    assert md.physical_size.x_um == pytest.approx(0.25)
    assert md.physical_size.y_um == pytest.approx(0.25)
    assert md.physical_size.z_um == pytest.approx(2.0)
    assert md.provenance["physical_size.x_um"] == "OME-XML Pixels/@PhysicalSizeX"
    assert md.time_interval_s == pytest.approx(1.5)
    assert [c.name for c in md.channels] == ["DAPI", "GFP", "RFP"]
    assert [c.color for c in md.channels] == ["#FF0000", "#00FF00", "#FFFF00"]
    assert md.channels[1].emission_nm == pytest.approx(510)
    assert md.acquired_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert md.acquired_at_local is None
    assert "ome_xml" in md.vendor_metadata


def test_ome_tiff_naive_date_and_default_unit(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 8, 8)
    path = write_ome_tiff(
        tmp_path / "naive.ome.tif",
        [stack],
        metadata=[{"PhysicalSizeX": 0.5, "AcquisitionDate": "2020-01-02T03:04:05"}],
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um == 0.5  # no unit attribute: µm
    assert md.acquired_at is None
    assert md.acquired_at_local == datetime(2020, 1, 2, 3, 4, 5)
    assert any("time zone unknown" in w for w in md.warnings)


def test_ome_tiff_several_series_are_scenes(tmp_path: Path) -> None:
    first = encoded_stack(1, 2, 3, 16, 12)
    second = encoded_stack(2, 1, 1, 10, 24)
    path = write_ome_tiff(
        tmp_path / "series.ome.tif",
        [first, second],
        metadata=[{"Name": "a"}, {"Name": "b", "PhysicalSizeX": 2.0}],
    )
    assert_reader_contract(OmeTiffReader, path, first)
    with open_image(path) as image:
        scenes = image.scenes()
        assert [s.shape for s in scenes] == [first.shape, second.shape]
        assert image.metadata(1).scene_name == "b"
        assert image.metadata(1).physical_size.x_um == 2.0
        np.testing.assert_array_equal(image.to_dask(1).compute(), second)
        np.testing.assert_array_equal(image.read_plane(1, 1, 0, 0), second[1, 0, 0])
        with pytest.raises(SceneNotFoundError):
            image.to_dask(2)


def test_ome_tiff_subifd_pyramid_levels(tmp_path: Path) -> None:
    stack = encoded_stack(1, 2, 1, 128, 96)
    path = write_ome_pyramid(tmp_path / "pyramid.ome.tif", stack, levels=3)
    assert_reader_contract(OmeTiffReader, path, stack)
    with open_image(path) as image:
        assert image.level_count(0) == 3
        md = image.metadata(0)
        assert md.pyramid_levels == [(128, 96), (64, 48), (32, 24)]
        for level in (1, 2):
            step = 2**level
            lazy = image.to_dask(0, level=level)
            assert lazy.shape == (1, 2, 1, 128 // step, 96 // step)
            np.testing.assert_array_equal(lazy.compute(), stack[..., ::step, ::step])
        with pytest.raises(SceneNotFoundError):
            image.to_dask(0, level=3)


def test_ome_tiff_tiled_bigtiff_threads(tmp_path: Path) -> None:
    stack = encoded_stack(1, 2, 6, 100, 70)
    path = write_ome_tiff(
        tmp_path / "tiled.ome.tif", [stack], bigtiff=True, tile=(32, 32), compression="zlib"
    )
    assert_reader_contract(OmeTiffReader, path, stack)
    with open_image(path) as image:
        lazy = image.to_dask(0)
        out = lazy.compute(scheduler="threads", num_workers=4)
        np.testing.assert_array_equal(out, stack)


def test_ome_rgb_is_samples(tmp_path: Path) -> None:
    rgb = np.stack(
        [encoded_stack(1, 1, 1, 20, 30, dtype="uint8")[0, 0, 0] + k for k in range(3)], -1
    )
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", metadata={"axes": "YXS"})
    assert_reader_contract(OmeTiffReader, path, rgb[np.newaxis, np.newaxis, np.newaxis])
    with open_image(path) as image:
        md = image.metadata()
    assert (md.size_c, md.samples_per_pixel) == (1, 3)


def test_read_after_close_is_refused(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "closed.ome.tif", [encoded_stack(1, 1, 1, 8, 8)])
    image = open_image(path)
    image.close()
    with pytest.raises(ValueError, match="closed"):
        image.read_plane(0, 0, 0, 0)


def test_ome_xml_with_entities_is_refused(tmp_path: Path) -> None:
    xml = (
        '<?xml version="1.0"?><!DOCTYPE OME [<!ENTITY a "aaaaaaaaaa">]>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0" Name="&a;">'
        '<Pixels DimensionOrder="XYZCT" ID="Pixels:0" Type="uint8" SizeC="1" SizeT="1" SizeX="4" '
        'SizeY="4" SizeZ="1"><TiffData/></Pixels></Image></OME>'
    )
    path = tmp_path / "entity.ome.tif"
    tifffile.imwrite(path, np.zeros((4, 4), "uint8"), description=xml, metadata=None)
    with pytest.raises(MetadataError, match=r"entity\.ome\.tif"):
        open_image(path)


def test_multifile_set_opens_whole_from_any_member(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 4, 12, 10, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack)
    for member in (members[0], members[2]):
        assert_reader_contract(OmeTiffReader, member, stack)
        with open_image(member) as image:
            md = image.metadata()
            assert (md.size_z, md.physical_size.z_um) == (4, 2.0)
            assert [c.name for c in md.channels] == ["only"]
            assert "companion" in md.provenance["sizes"]


def test_multifile_member_alone_gives_its_plane_and_a_warning(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 12, 10, dtype="uint8")
    members, companion = write_ome_multifile(tmp_path, stack, companion=False)
    assert not companion.exists()
    assert_reader_contract(OmeTiffReader, members[1], stack[:, :, 1:2])
    with open_image(members[1]) as image:
        md = image.metadata()
    assert md.size_z == 1
    assert any(companion.name in w for w in md.warnings)


def test_multifile_missing_member_reads_zeros_with_warning(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 12, 10, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack)
    members[2].unlink()
    with open_image(members[0]) as image:
        md = image.metadata()
        assert any(members[2].name in w for w in md.warnings)
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 1), stack[0, 0, 1])
        assert not image.read_plane(0, 0, 0, 2).any()


# --------------------------------------------------------------------------- ImageJ
@pytest.mark.parametrize(
    ("unit", "factor"),
    [("\\u00B5m", 1.0), ("micron", 1.0), ("um", 1.0), ("mm", 1000.0), ("nm", 0.001), ("cm", 1e4)],
)
def test_imagej_hyperstack_calibration(tmp_path: Path, unit: str, factor: float) -> None:
    stack = encoded_stack(2, 3, 4, 16, 20)
    path = write_imagej(
        tmp_path / "hyper.tif", stack, unit=unit, pixel_size=0.25, spacing=0.5, finterval=2.5
    )
    assert_reader_contract(ImageJTiffReader, path, stack)
    with open_image(path) as image:
        md = image.metadata()
    assert md.file_format == "ImageJ TIFF"
    assert md.physical_size.x_um == pytest.approx(0.25 * factor, rel=1e-6)
    assert md.physical_size.y_um == pytest.approx(0.25 * factor, rel=1e-6)
    assert md.physical_size.z_um == pytest.approx(0.5 * factor)
    assert md.provenance["physical_size.z_um"] == "ImageJ description spacing"
    assert md.time_interval_s == pytest.approx(2.5)
    assert [c.name for c in md.channels] == [None, None, None]


def test_imagej_without_unit_is_uncalibrated(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 8, 8)
    path = write_imagej(tmp_path / "plain.tif", stack, pixel_size=0.25, spacing=2.0)
    with open_image(path) as image:
        md = image.metadata()
    assert md.get_voxel_size_micrometers() == (None, None, None)


def test_imagej_zero_spacing_is_no_calibration(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 8, 8)
    path = write_imagej(tmp_path / "zero.tif", stack, unit="um", pixel_size=0.5, spacing=0.0)
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.z_um is None
    assert md.physical_size.x_um == pytest.approx(0.5)


def _imagej_single_ifd(path: Path, stack: np.ndarray) -> Path:
    """An ImageJ stack whose planes follow one IFD back to back, as ImageJ writes > 4 GiB."""
    write_imagej(path, stack, unit="um", pixel_size=0.5, spacing=1.0)
    with tifffile.TiffFile(path) as tif:
        start = tif.pages.first.offset
        byteorder = tif.byteorder
    data = bytearray(path.read_bytes())
    (count,) = struct.unpack(byteorder + "H", data[start : start + 2])
    next_ifd = start + 2 + count * 12
    data[next_ifd : next_ifd + 4] = b"\0\0\0\0"  # cut the IFD chain after the first page
    path.write_bytes(bytes(data))
    return path


def test_imagej_contiguous_single_ifd(tmp_path: Path) -> None:
    stack = encoded_stack(2, 2, 3, 16, 12)
    path = _imagej_single_ifd(tmp_path / "contiguous.tif", stack)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
    assert_reader_contract(ImageJTiffReader, path, stack)


def test_imagej_contiguous_truncated_is_corrupt(tmp_path: Path) -> None:
    stack = encoded_stack(2, 2, 3, 16, 12)
    path = _imagej_single_ifd(tmp_path / "cut.tif", stack)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.tif"):
        open_image(path)


# --------------------------------------------------------------------------- plain TIFF
def test_bigtiff_tiled_pages_are_z(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 5, 100, 90)
    path = write_bigtiff_tiled(tmp_path / "tiled.tif", stack[0, 0])
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        assert tif.pages.first.is_tiled
    assert_reader_contract(TiffReader, path, stack)


def test_plain_multipage_uncompressed(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 4, 30, 20)
    path = write_plain_pages(tmp_path / "pages.tif", stack[0, 0])
    assert_reader_contract(TiffReader, path, stack)


def test_rgb_is_samples_not_channels(tmp_path: Path) -> None:
    rgb = np.stack(
        [encoded_stack(1, 1, 1, 20, 30, dtype="uint8")[0, 0, 0] + k for k in range(3)], -1
    )
    path = write_rgb(tmp_path / "rgb.tif", rgb)
    assert_reader_contract(TiffReader, path, rgb[np.newaxis, np.newaxis, np.newaxis])
    with open_image(path) as image:
        md = image.metadata()
    assert (md.size_c, md.samples_per_pixel) == (1, 3)
    assert md.shape == (1, 1, 1, 20, 30, 3)


def test_rgb_planar_separate(tmp_path: Path) -> None:
    rgb = np.stack(
        [encoded_stack(1, 1, 1, 20, 30, dtype="uint8")[0, 0, 0] + k for k in range(3)], -1
    )
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    assert_reader_contract(TiffReader, path, rgb[np.newaxis, np.newaxis, np.newaxis])


def test_tiff_subifd_pyramid(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 128, 128)[0, 0, 0]
    path = write_tiff_pyramid(tmp_path / "pyr.tif", plane, levels=3)
    assert_reader_contract(TiffReader, path, plane[np.newaxis, np.newaxis, np.newaxis])
    with open_image(path) as image:
        assert image.level_count() == 3
        np.testing.assert_array_equal(image.to_dask(0, level=2).compute()[0, 0, 0], plane[::4, ::4])


def test_palette_pages_are_stored_indices(tmp_path: Path) -> None:
    indices = (np.arange(64 * 48).reshape(48, 64) % 256).astype("uint8")
    colormap = np.zeros((3, 256), "uint16")
    colormap[1] = np.arange(256) * 256
    path = tmp_path / "palette.tif"
    tifffile.imwrite(path, indices, photometric="palette", colormap=colormap)
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), indices)
        assert any("palette" in w for w in image.metadata().warnings)


@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        ((72, 72), "INCH", None),
        ((96, 96), "INCH", None),
        ((1, 1), "CENTIMETER", None),
        ((0, 1), "CENTIMETER", None),
        ((10000, 10000), "CENTIMETER", 1.0),
        ((2540, 2540), "INCH", 10.0),
        ((1000, 1000), "NONE", None),
    ],
)
def test_tiff_resolution_rules(
    tmp_path: Path, resolution: tuple[int, int], unit: str, expected: float | None
) -> None:
    path = tmp_path / "res.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 4), "uint8"),
        resolution=(resolution[0], resolution[1]) if resolution[0] else ((0, 1), (0, 1)),
        resolutionunit=unit,
        metadata=None,
    )
    with open_image(path) as image:
        md = image.metadata()
    if expected is None:
        assert md.physical_size.x_um is None
    else:
        assert md.physical_size.x_um == pytest.approx(expected)
        assert md.physical_size.y_um == pytest.approx(expected)


# --------------------------------------------------------------------------- behaviour
def test_reader_pickles_and_reads_concurrently(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 8, 64, 64)
    path = write_bigtiff_tiled(tmp_path / "many.tif", stack[0, 0])
    with open_image(path) as image:
        clone = pickle.loads(pickle.dumps(image))
        try:
            results: dict[int, np.ndarray] = {}

            def read(z: int) -> None:
                results[z] = clone.read_plane(0, 0, 0, z)

            threads = [threading.Thread(target=read, args=(z,)) for z in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for z in range(8):
                np.testing.assert_array_equal(results[z], stack[0, 0, z])
        finally:
            clone.close()


def test_lazy_array_survives_reader_and_closes_quietly(tmp_path: Path) -> None:
    stack = encoded_stack(1, 2, 3, 16, 16)
    path = write_ome_tiff(tmp_path / "lazy.ome.tif", [stack])
    lazy = open_image(path).to_dask(0)
    np.testing.assert_array_equal(lazy.compute(), stack)
    del lazy  # the reader is released with its graph; no ResourceWarning may follow


def test_svs_mpp_is_the_calibration(tmp_path: Path) -> None:
    path = tmp_path / "slide.svs"
    description = (
        "Aperio Image Library v10.0.51\r\n256x256 [0,0 256x256] (64x64) JPEG/RGB Q=30"
        "|AppMag = 20|MPP = 0.4990"
    )
    rgb = np.zeros((256, 256, 3), "uint8")
    rgb[..., 1] = encoded_stack(1, 1, 1, 256, 256, dtype="uint8")[0, 0, 0]
    tifffile.imwrite(
        path, rgb, tile=(64, 64), photometric="rgb", description=description, metadata=None
    )
    assert_reader_contract(TiffReader, path, rgb[np.newaxis, np.newaxis, np.newaxis])
    with open_image(path) as image:
        md = image.metadata()
    assert md.physical_size.x_um == pytest.approx(0.499)
    assert md.provenance["physical_size.x_um"] == "Aperio SVS MPP"


def test_fei_style_tiff_is_plain_tiff(tmp_path: Path) -> None:
    """A TIFF without OME/ImageJ/UIC markers is TIFF whatever its description says."""
    path = tmp_path / "camera.tif"
    tifffile.imwrite(path, np.zeros((8, 8), "uint8"), description="Nikon camera", metadata=None)
    with open_image(path) as image:
        assert image.format_name == "TIFF"


# --------------------------------------------------------------------------- real files
CORPUS_CONTRACT = [
    ("tiff/movie.stk", "STK"),
    ("tiff/MetamorphImage.tif", "STK"),
    ("tiff/fei-sem-rbc.tif", "TIFF"),
    ("imagej/hela-cells.tif", "ImageJ TIFF"),
    ("imagej/xyzc_16bit__spots.tif", "ImageJ TIFF"),
    ("ome-tiff/FLIM-modulo-sample.ome.tif", "OME-TIFF"),
    ("ome-tiff/6x4y1z1t1c8b-swatch-1s1p4w2ws.ome.tiff", "OME-TIFF"),
    ("ome-tiff/largeimg.ome.tiff", "OME-TIFF"),
    ("ome-tiff/multifile/multifile-Z3.ome.tiff", "OME-TIFF"),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("relative", "format_name"), CORPUS_CONTRACT)
def test_corpus_files_keep_the_contract(testdata: Path, relative: str, format_name: str) -> None:
    from zstack_analyzer.registry import detect_reader

    path = testdata / relative
    cls = detect_reader(path)
    assert cls.format_name == format_name
    assert_reader_contract(cls, path)
    with open_image(path) as image:
        for info in image.scenes():
            md = image.metadata(info.index)
            json.loads(md.model_dump_json())  # vendor_metadata is JSON-safe
        assert image.raw_metadata()


@pytest.mark.realdata
def test_corpus_largeimg_levels(testdata: Path) -> None:
    with open_image(testdata / "ome-tiff/largeimg.ome.tiff") as image:
        assert image.level_count(0) == 2
        small = image.to_dask(0, level=1)
        assert small.shape[:3] == (1, 2, 1)
        assert small.shape[3] < 512
        assert np.asarray(small[0, 1, 0]).any()


def test_the_companion_file_opens_the_set_it_describes(tmp_path: Path) -> None:
    """Issue 22: ``set.companion.ome`` opens as the whole set (Bio-Formats opens it too)."""
    stack = encoded_stack(1, 1, 4, 12, 10, dtype="uint8")
    _, companion = write_ome_multifile(tmp_path, stack)
    assert detect_reader(companion) is OmeTiffReader
    assert_reader_contract(OmeTiffReader, companion, stack)
    with open_image(companion) as image:
        md = image.metadata()
        assert (md.size_z, md.physical_size.z_um) == (4, 2.0)
        assert [c.name for c in md.channels] == ["only"]


def test_a_companion_reads_only_beside_itself(tmp_path: Path) -> None:
    """Member names are names, not paths: ``../`` in a FileName cannot leave the folder."""
    stack = encoded_stack(1, 1, 2, 12, 10, dtype="uint8")
    folder = tmp_path / "set"
    folder.mkdir()
    members, companion = write_ome_multifile(folder, stack)
    xml = companion.read_text(encoding="utf-8")
    for member in members:
        xml = xml.replace(f'FileName="{member.name}"', f'FileName="../{member.name}"')
        member.rename(tmp_path / member.name)  # only reachable through "../"
    companion.write_text(xml, encoding="utf-8")
    with pytest.raises(MetadataError, match="beside it"):
        open_image(companion)
