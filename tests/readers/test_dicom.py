"""DICOM reader on synthetic files written with pydicom, pixels position-encoded."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pydicom
import pytest

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_dicom import write_dicom_frames, write_dicom_pyramid, write_dicom_wsi
from zstack_analyzer import (
    CorruptFileError,
    ImageLoadError,
    LimitExceededError,
    SceneNotFoundError,
    open_image,
)
from zstack_analyzer.readers.dicom import DicomReader
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.render.thumbnails import render_reader

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)


def _stack(c: int = 2, z: int = 3, y: int = 40, x: int = 50) -> np.ndarray:
    """Canonical C,Z,Y,X uint16 (T = 1) with position-encoded values."""
    return encoded_stack(1, c, z, y, x)[0]


@pytest.mark.parametrize("compression", [None, "jpeg2k", "rle"])
def test_tiled_full_contract_every_tile_in_place(tmp_path: Path, compression: str | None) -> None:
    stack = _stack()
    path = write_dicom_wsi(tmp_path / "slide.dcm", stack, tile=(16, 16), compression=compression)
    assert_reader_contract(DicomReader, path, stack[np.newaxis])
    with open_image(path) as image:
        lazy = image.to_dask(0)
        # one chunk per tile: 40 = 16 + 16 + 8 rows, 50 = 16 * 3 + 2 columns
        assert lazy.chunks[3] == (16, 16, 8)
        assert lazy.chunks[4] == (16, 16, 16, 2)
        np.testing.assert_array_equal(
            np.asarray(lazy[0, 1, 2, 30:40, 45:50]), stack[1, 2, 30:40, 45:50]
        )


def test_tiled_sparse_positions_and_missing_tile(tmp_path: Path) -> None:
    stack = _stack(c=1, z=2, y=32, x=32)
    path = write_dicom_wsi(tmp_path / "sparse.dcm", stack, tile=(16, 16), sparse=True)
    assert_reader_contract(DicomReader, path, stack[np.newaxis])


def test_rgb_jpeg_tiles(tmp_path: Path) -> None:
    rgb = np.zeros((1, 1, 48, 64, 3), "uint8")
    rgb[0, 0, :, :, 0] = 200
    rgb[0, 0, 24:, :, 2] = 180
    path = write_dicom_wsi(tmp_path / "rgb.dcm", rgb, tile=(16, 16), compression="jpeg")
    with open_image(path) as image:
        md = image.metadata()
        assert md.samples_per_pixel == 3
        plane = image.read_plane(0, 0, 0, 0)
    assert plane.shape == (48, 64, 3)
    # lossy, but the colours are where they were written (YBR decoded to RGB)
    assert np.abs(plane.astype(int) - rgb[0, 0].astype(int)).mean() < 3
    assert plane[8, 8].tolist() == pytest.approx([200, 0, 0], abs=6)
    assert plane[40, 8].tolist() == pytest.approx([200, 0, 180], abs=6)


def test_metadata_from_the_standard_modules(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "md.dcm", _stack(), optical_paths=["DAPI", "FITC"])
    with open_image(path) as image:
        md = image.metadata()
    assert md.file_format == "DICOM"
    assert (md.size_c, md.size_z, md.size_y, md.size_x) == (2, 3, 40, 50)
    assert md.physical_size.x_um == pytest.approx(0.25)
    assert md.physical_size.y_um == pytest.approx(0.25)
    assert md.physical_size.z_um is None  # SliceThickness is not a step
    assert md.provenance["physical_size.x_um"].startswith("DICOM SharedFunctionalGroups")
    assert [c.name for c in md.channels] == ["DAPI", "FITC"]
    assert md.channels[1].excitation_nm == pytest.approx(588)
    assert md.objective is not None
    assert md.objective.magnification == 20
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Synthetic Scanner Co"
    assert md.acquired_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert md.vendor_metadata["dimension_organization"] == "TILED_FULL"
    assert not any("not microscopy" in w for w in md.warnings)


def test_pyramid_levels_from_one_series_and_label_is_associated(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 128, 96)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=3)
    for opened in (paths[0], paths[2]):  # any level opens the whole slide
        with open_image(opened) as image:
            assert len(image.scenes()) == 1
            assert image.level_count(0) == 3
            md = image.metadata()
            assert (md.size_y, md.size_x) == (128, 96)
            assert md.pyramid_levels == [(128, 96), (64, 48), (32, 24)]
            assert md.physical_size.x_um == pytest.approx(0.25)
            assert [a["type"] for a in md.vendor_metadata["associated_images"]] == ["LABEL"]
            np.testing.assert_array_equal(np.asarray(image.to_dask(0, 2)[0, 0, 0]), plane[::4, ::4])
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), plane)
            with pytest.raises(SceneNotFoundError):
                image.to_dask(0, 3)


def test_thumbnail_reads_the_closest_level_only(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 256, 256)[0, 0, 0]
    paths = write_dicom_pyramid(tmp_path, plane, levels=3)
    with open_image(paths[0]) as image:
        reads: list[int] = []
        for level in image._levels:
            original = level.frames.read

            def counting(index: int, _original=original, _level=level) -> np.ndarray:
                reads.append(image._levels.index(_level))
                return _original(index)

            level.frames.read = counting  # type: ignore[method-assign]
        picture = render_reader(image, RenderSpec(kind="thumbnail", width=64, height=64))
    assert picture.size[0] <= 64
    assert set(reads) == {2}  # 64x64 level, 2x2 tiles of 32


def test_plain_multiframe_is_z(tmp_path: Path) -> None:
    frames = encoded_stack(1, 1, 4, 12, 10)[0, 0]
    path = write_dicom_frames(tmp_path / "frames.dcm", frames, spacing_between=0.5)
    assert_reader_contract(DicomReader, path, frames[np.newaxis, np.newaxis])
    with open_image(path) as image:
        md = image.metadata()
    assert md.size_z == 4
    assert (md.physical_size.x_um, md.physical_size.y_um) == (
        pytest.approx(2.0),
        pytest.approx(1.0),
    )
    assert md.physical_size.z_um == pytest.approx(500.0)
    assert md.acquired_at_local == datetime(2020, 1, 2, 3, 4, 5)
    assert any("not microscopy" in w for w in md.warnings)


# --------------------------------------------------------------------------- bad input
def _everything(path: Path) -> None:
    with open_image(path) as image:
        for info in image.scenes():
            image.metadata(info.index)
            for c in range(info.size_c):
                for z in range(info.size_z):
                    image.read_plane(info.index, 0, c, z)


@pytest.mark.parametrize("compression", [None, "jpeg2k"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.97])
def test_truncated(tmp_path: Path, compression: str | None, fraction: float) -> None:
    data = write_dicom_wsi(tmp_path / "whole.dcm", _stack(), compression=compression).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptFileError, match=r"cut\.dcm"):
        _everything(path)


def test_number_of_frames_lies(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "lies.dcm", _stack(), frames_override=200)
    with pytest.raises(CorruptFileError, match=r"lies\.dcm.*Pixel Data holds"):
        open_image(path)
    path = write_dicom_wsi(
        tmp_path / "lies2.dcm", _stack(), compression="jpeg2k", frames_override=200
    )
    with pytest.raises(CorruptFileError, match=r"cannot be mapped"):
        open_image(path)


def test_tiled_full_with_too_few_frames(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "few.dcm", _stack(c=1, z=1))
    ds = pydicom.dcmread(path)
    ds.TotalPixelMatrixFocalPlanes = 4
    ds.save_as(path)
    with pytest.raises(CorruptFileError, match="TILED_FULL needs"):
        open_image(path)


@pytest.mark.parametrize("element", ["TotalPixelMatrixRows", "Rows", "NumberOfFrames"])
def test_huge_declared_matrix_is_refused_before_allocation(tmp_path: Path, element: str) -> None:
    path = write_dicom_wsi(tmp_path / "huge.dcm", _stack(c=1, z=1))
    ds = pydicom.dcmread(path)
    if element == "TotalPixelMatrixRows":
        ds.TotalPixelMatrixRows = ds.TotalPixelMatrixColumns = 10**7
    elif element == "Rows":
        ds.Rows = ds.Columns = 60000  # one frame of 7.2 GB
    else:
        ds.NumberOfFrames = 10**8  # more planes than any limit allows
    ds.save_as(path)
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError, match=r"huge\.dcm"):
            open_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024**2


@pytest.mark.parametrize("compression", ["jpeg2k", "jpeg"])
def test_frame_that_fails_to_decode(tmp_path: Path, compression: str) -> None:
    stack = _stack(c=1, z=1)
    if compression == "jpeg":
        stack = (stack % 256).astype("uint8")
    path = write_dicom_wsi(tmp_path / "bad.dcm", stack, compression=compression)
    data = bytearray(path.read_bytes())
    # break the first frame's start: the J2K SOC+SIZ markers, or the JPEG SOI marker
    marker = b"\xff\x4f\xff\x51" if compression == "jpeg2k" else b"\xff\xd8\xff"
    start = data.find(marker)
    data[start : start + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        with pytest.raises(CorruptFileError, match=r"bad\.dcm: cannot decode frame 0"):
            image.read_plane(0, 0, 0, 0)
        # the other tiles still read: one bad tile does not hide the rest
        assert np.asarray(image.to_dask(0)[0, 0, 0, 16:32, 16:32]).any()


def test_frame_of_the_wrong_size(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "size.dcm", _stack(c=1, z=1), compression="jpeg2k")
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 8  # the codestreams are 16x16 tiles
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = 8 * 3, 8 * 4
    ds.save_as(path)
    with open_image(path) as image, pytest.raises(CorruptFileError, match="decodes to"):
        image.read_plane(0, 0, 0, 0)


@pytest.mark.parametrize("seed", range(6))
def test_header_byte_flips(tmp_path: Path, seed: int) -> None:
    data = bytearray(write_dicom_wsi(tmp_path / "ok.dcm", _stack(c=1, z=1)).read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.integers(132, 900, size=8):
        data[int(position)] ^= 0xFF
    path = tmp_path / "flipped.dcm"
    path.write_bytes(bytes(data))
    try:
        _everything(path)
    except ImageLoadError as exc:
        assert "flipped.dcm" in str(exc)


# --------------------------------------------------------------------------- real files
@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative", ["dicom/sm_image.dcm", "dicom/sm_image_grayscale.dcm", "dicom/dicom_file90.dcm"]
)
def test_corpus_dicom_files_keep_the_contract(testdata: Path, relative: str) -> None:
    """The corpus DICOM files are read by this reader (EXPECTED.json's values are checked in realdata/)."""
    assert_reader_contract(DicomReader, testdata / relative)
    with open_image(testdata / relative) as image:
        md = image.metadata()
        assert md.file_format == "DICOM"
        assert image.raw_metadata()
    # the MR slice opens, saying it is not microscopy; the WSIs do not say so
    assert any("not microscopy" in w for w in md.warnings) == relative.endswith("file90.dcm")


def test_dicom_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    from zstack_analyzer.registry import detect_reader

    path = write_dicom_frames(tmp_path / "export.img", encoded_stack(1, 1, 2, 8, 8)[0, 0])
    assert detect_reader(path) is DicomReader


def test_illumination_in_the_ome_vocabulary(tmp_path: Path) -> None:
    """IlluminationTypeCodeSequence (CID 8123) becomes OME's IlluminationType and ContrastMethod.

    Issue 22: the reader gave the code meaning ("Brightfield illumination") where
    every other reader gives OME's enum ("Transmitted").
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = write_dicom_wsi(tmp_path / "paths.dcm", encoded_stack(1, 4, 1, 16, 16)[0])
    ds = pydicom.dcmread(path)
    codes = [
        ("111744", "DCM", "Brightfield illumination"),
        ("111743", "DCM", "Epifluorescence illumination"),
        ("X1", "99LOCAL", "Differential interference contrast"),  # known by its meaning
        ("X2", "99LOCAL", "Laser sheet"),
    ]
    for item, (value, scheme, meaning) in zip(ds.OpticalPathSequence, codes, strict=True):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
        item.IlluminationTypeCodeSequence = Sequence([code])
    ds.save_as(path)
    with open_image(path) as image:
        channels = image.metadata(0).channels
    assert [(c.illumination, c.contrast_method) for c in channels] == [
        ("Transmitted", "Brightfield"),
        ("Epifluorescence", "Fluorescence"),
        ("Transmitted", "DIC"),
        ("Other", None),
    ]
