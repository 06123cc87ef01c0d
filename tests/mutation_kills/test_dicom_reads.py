"""DICOM frames: header, transfer syntaxes, pixel types and missing pieces (mutation kills, sixth round).

References: the frames written (position-encoded values, so a wrong offset,
byte order or sign shows), pydicom's own parse of the same file, and PS3.5's
rules (transfer syntaxes, Pixel Data, BitsAllocated, PixelRepresentation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from zstack_analyzer import CorruptFileError, UnsupportedFormatError, open_image
from zstack_analyzer.readers._dicom_frames import PIXEL_DATA, DicomFrames, read_header

if TYPE_CHECKING:
    from pathlib import Path

SYNTAXES = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
}


def _frames(count: int, rows: int, columns: int, dtype: str) -> np.ndarray:
    """Position-encoded frames that use the sign and the high bytes of ``dtype``."""
    values = np.arange(count * rows * columns, dtype=np.int64).reshape(count, rows, columns)
    kind = np.dtype(dtype)
    if kind.kind == "i":
        values = values * (-1) ** values  # negative values too
    return (values * (257 if kind.itemsize > 1 else 1)).astype(dtype)


def _write(
    path: Path,
    frames: np.ndarray | None,
    *,
    syntax: str = "explicit",
    extra: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> Path:
    """A plain multi-frame DICOM of F,Y,X ``frames`` (or none: no Pixel Data element)."""
    uid = SYNTAXES[syntax]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SM"
    shape = frames.shape if frames is not None else (2, 4, 6)
    dtype = frames.dtype if frames is not None else np.dtype("u2")
    ds.Rows, ds.Columns = shape[1:3]
    ds.NumberOfFrames = shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if dtype.kind == "i" else 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    for key in drop:
        delattr(ds, key)
    if frames is not None:
        order = ">" if syntax == "big" else "<"
        ds.PixelData = np.ascontiguousarray(frames, dtype=dtype.newbyteorder(order)).tobytes()
        ds["PixelData"].VR = "OB" if dtype.itemsize == 1 else "OW"
    little = syntax != "big"
    ds.save_as(
        path, implicit_vr=syntax == "implicit", little_endian=little, enforce_file_format=True
    )
    return path


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("dtype", ["u1", "i2", "u2", "i4", "u4"])
def test_native_frames_in_every_syntax_and_pixel_type(
    tmp_path: Path, syntax: str, dtype: str
) -> None:
    frames = _frames(3, 5, 7, dtype)
    path = _write(tmp_path / "f.dcm", frames, syntax=syntax)
    reader = DicomFrames(path)
    try:
        assert reader.geometry.dtype == np.dtype(dtype)
        assert reader.geometry.dtype.isnative
        assert (reader.geometry.count, reader.geometry.shape) == (3, (5, 7))
        assert reader.endian == (">" if syntax == "big" else "<")
        for index in range(3):
            frame = reader.read(index)
            assert frame.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(frame, frames[index])
    finally:
        reader.close()
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 2), frames[2])


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_header_offset_points_at_pixel_data(tmp_path: Path, syntax: str) -> None:
    path = _write(tmp_path / "o.dcm", _frames(1, 2, 2, "u2"), syntax=syntax)
    ds, offset = read_header(path)
    raw = path.read_bytes()[offset : offset + 4]
    order = "big" if syntax == "big" else "little"
    tag = int.from_bytes(raw[:2], order) << 16 | int.from_bytes(raw[2:4], order)
    assert tag == PIXEL_DATA
    assert "PixelData" not in ds
    assert int(ds.Rows) == 2
    no_pixels = _write(tmp_path / "none.dcm", None, syntax=syntax)
    assert read_header(no_pixels)[1] == -1


def test_unreadable_header_is_corrupt_with_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    # (0002,0000) UL of length 4 with one byte left: pydicom cannot parse it
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\x10")
    with pytest.raises(CorruptFileError) as caught:
        read_header(path)
    assert caught.value.path == path
    assert str(caught.value).startswith("junk.dcm: unreadable DICOM header: ")
    assert caught.value.detail is not None
    assert caught.value.detail == repr(caught.value.__cause__)
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "missing.dcm")


@pytest.mark.parametrize(
    ("drop", "error", "message"),
    [
        ((), CorruptFileError, "DICOM image header without Pixel Data; the file is truncated"),
        (
            ("Rows",),
            CorruptFileError,
            "DICOM image header without Pixel Data; the file is truncated",
        ),
        (
            ("NumberOfFrames",),
            CorruptFileError,
            "DICOM image header without Pixel Data; the file is truncated",
        ),
        (
            ("Rows", "NumberOfFrames"),
            UnsupportedFormatError,
            "DICOM file without Pixel Data (7FE0,0010): no image to read",
        ),
    ],
)
def test_missing_pixel_data(
    tmp_path: Path, drop: tuple[str, ...], error: type[Exception], message: str
) -> None:
    path = _write(tmp_path / "np.dcm", None, drop=drop)
    with pytest.raises(error) as caught:
        DicomFrames(path)
    assert type(caught.value) is error
    assert str(caught.value) == f"np.dcm: {message}"
    assert caught.value.path == path  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"BitsAllocated": 12}, "BitsAllocated 12 is not supported (8, 16 or 32 bits only)"),
        ({"BitsAllocated": 64}, "BitsAllocated 64 is not supported (8, 16 or 32 bits only)"),
    ],
)
def test_unsupported_bits(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    path = _write(tmp_path / "b.dcm", _frames(1, 4, 4, "u2"), extra=extra)
    with pytest.raises(UnsupportedFormatError) as caught:
        DicomFrames(path)
    assert str(caught.value) == f"b.dcm: {message}"
    assert caught.value.path == path


def test_defaults_when_elements_are_absent(tmp_path: Path) -> None:
    """No SamplesPerPixel, NumberOfFrames or PixelRepresentation: one grey unsigned frame."""
    frames = _frames(1, 3, 4, "u2")
    path = _write(
        tmp_path / "d.dcm",
        frames,
        drop=("SamplesPerPixel", "NumberOfFrames", "PixelRepresentation"),
    )
    reader = DicomFrames(path)
    try:
        assert (reader.geometry.count, reader.geometry.samples) == (1, 1)
        assert reader.geometry.dtype == np.dtype("u2")
        np.testing.assert_array_equal(reader.read(0), frames[0])
        with pytest.raises(CorruptFileError) as caught:
            reader.read(1)
        assert str(caught.value) == "d.dcm: frame 1 does not exist (1 frames)"
        with pytest.raises(CorruptFileError):
            reader.read(-1)
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Rows": 0}, "DICOM declares 2 frame(s) of 0x6x1"),
        ({"Columns": 0}, "DICOM declares 2 frame(s) of 4x0x1"),
        ({"NumberOfFrames": -1}, "DICOM declares -1 frame(s) of 4x6x1"),
        ({"SamplesPerPixel": 2}, "DICOM declares 2 frame(s) of 4x6x2"),
        ({"SamplesPerPixel": 4}, "DICOM declares 2 frame(s) of 4x6x4"),
    ],
)
def test_impossible_geometry(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    path = _write(tmp_path / "g.dcm", _frames(2, 4, 6, "u2"), extra=extra)
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value) == f"g.dcm: {message}"
    assert caught.value.path == path


def test_invalid_rows_is_corrupt_with_the_cause(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.dcm", _frames(1, 4, 6, "u2"), drop=("Columns",))
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value).startswith(
        "r.dcm: DICOM Rows/Columns/NumberOfFrames missing or invalid: "
    )
    assert caught.value.path == path
    assert caught.value.detail == repr(caught.value.__cause__)
    assert isinstance(caught.value.__cause__, AttributeError)


# ============================================================================ encapsulated
def _encapsulated(
    path: Path,
    frames: list[np.ndarray],
    *,
    syntax: str,
    codestreams: list[bytes],
    fragments_per_frame: int = 1,
    has_bot: bool = True,
    photometric: str = "MONOCHROME2",
) -> Path:
    from pydicom.encaps import encapsulate

    first = frames[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SM"
    ds.Rows, ds.Columns = first.shape[:2]
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = first.shape[2] if first.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = first.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if first.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PixelData = encapsulate(
        codestreams, fragments_per_frame=fragments_per_frame, has_bot=has_bot
    )
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


def _j2k(frames: list[np.ndarray]) -> list[bytes]:
    import imagecodecs

    return [imagecodecs.jpeg2k_encode(f, level=0, codecformat="j2k") for f in frames]


@pytest.mark.parametrize(("fragments", "bot"), [(1, True), (2, True), (3, True)])
def test_frames_of_several_fragments_through_the_offset_table(
    tmp_path: Path, fragments: int, bot: bool
) -> None:
    frames = list(_frames(3, 12, 10, "u2"))
    streams = _j2k(frames)
    # encapsulate splits each stream into `fragments` pieces; the offset table finds frame starts
    path = _encapsulated(
        tmp_path / "frag.dcm",
        frames,
        syntax="1.2.840.10008.1.2.4.90",
        codestreams=streams,
        fragments_per_frame=fragments,
        has_bot=bot,
    )
    reader = DicomFrames(path)
    try:
        assert reader.codec == "jpeg2k"
        for index in (2, 0, 1):
            np.testing.assert_array_equal(reader.read(index), frames[index])
    finally:
        reader.close()


def test_one_frame_of_many_fragments_without_an_offset_table(tmp_path: Path) -> None:
    frames = list(_frames(1, 12, 10, "u2"))
    path = _encapsulated(
        tmp_path / "one.dcm",
        frames,
        syntax="1.2.840.10008.1.2.4.90",
        codestreams=_j2k(frames),
        fragments_per_frame=3,
        has_bot=False,
    )
    reader = DicomFrames(path)
    try:
        np.testing.assert_array_equal(reader.read(0), frames[0])
    finally:
        reader.close()


def test_several_fragments_a_frame_without_an_offset_table_cannot_be_mapped(
    tmp_path: Path,
) -> None:
    frames = list(_frames(2, 12, 10, "u2"))
    path = _encapsulated(
        tmp_path / "nobot.dcm",
        frames,
        syntax="1.2.840.10008.1.2.4.90",
        codestreams=_j2k(frames),
        fragments_per_frame=2,
        has_bot=False,
    )
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value) == (
        "nobot.dcm: 4 compressed fragment(s) cannot be mapped to 2 frame(s) "
        "(NumberOfFrames lies or the offset table is missing)"
    )
    assert caught.value.path == path


@pytest.mark.parametrize("codec", ["jpegls", "jpeg"])
def test_jpeg_family_frames(tmp_path: Path, codec: str) -> None:
    import imagecodecs

    if codec == "jpegls":
        frames = list(_frames(2, 9, 11, "u2"))
        streams = [imagecodecs.jpegls_encode(f, level=0) for f in frames]
        syntax = "1.2.840.10008.1.2.4.80"
    else:
        frames = list(_frames(2, 8, 8, "u1"))
        streams = [imagecodecs.jpeg8_encode(f, lossless=True) for f in frames]
        syntax = "1.2.840.10008.1.2.4.70"
    path = _encapsulated(tmp_path / "j.dcm", frames, syntax=syntax, codestreams=streams)
    reader = DicomFrames(path)
    try:
        assert reader.codec == codec
        for index in (1, 0):
            frame = reader.read(index)
            assert frame.dtype == frames[index].dtype
            np.testing.assert_array_equal(frame, frames[index])
    finally:
        reader.close()


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    frames = list(_frames(1, 4, 4, "u2"))
    path = _encapsulated(
        tmp_path / "mpeg.dcm", frames, syntax="1.2.840.10008.1.2.4.100", codestreams=[b"\0" * 8]
    )
    with pytest.raises(UnsupportedFormatError) as caught:
        DicomFrames(path)
    assert str(caught.value) == (
        "mpeg.dcm: DICOM transfer syntax 1.2.840.10008.1.2.4.100 is not supported"
    )
    assert caught.value.path == path


def test_native_pixel_data_lies(tmp_path: Path) -> None:
    frames = _frames(3, 5, 7, "u2")
    path = _write(tmp_path / "few.dcm", frames, extra={"NumberOfFrames": 4})
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value) == (
        "few.dcm: Pixel Data holds 210 bytes, but 4 frame(s) of (5, 7) need 280"
    )
    assert caught.value.path == path
    cut = _write(tmp_path / "cut.dcm", frames)
    cut.write_bytes(cut.read_bytes()[:-2])
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(cut)
    size = cut.stat().st_size
    assert str(caught.value) == (
        f"cut.dcm: Pixel Data ends past the end of the file ({size:,} bytes); the file is truncated"
    )
    assert caught.value.path == cut
    # exactly the frames the header declares: reads
    whole = _write(tmp_path / "whole.dcm", frames)
    reader = DicomFrames(whole)
    try:
        np.testing.assert_array_equal(reader.read(2), frames[2])
    finally:
        reader.close()


def test_planar_rgb_and_ybr_full_native(tmp_path: Path) -> None:
    from pydicom.pixels.processing import convert_color_space

    rgb = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 7 % 256).astype("u1")
    planar = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))  # R plane, G plane, B plane
    extra = {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 1}
    path = _write(tmp_path / "planar.dcm", planar.reshape(1, 4, 15)[:, :, :], extra=extra)
    # _write took the frame as 4 x 15 bytes: fix Rows/Columns to the 4 x 5 x 3 image
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 4, 5
    ds.save_as(path)
    reader = DicomFrames(path)
    try:
        assert reader.planar
        assert reader.geometry.shape == (4, 5, 3)
        np.testing.assert_array_equal(reader.read(0), rgb)
    finally:
        reader.close()
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)
    reader = DicomFrames(path)
    try:
        assert not reader.planar
        assert reader.photometric == "YBR_FULL"
        expected = convert_color_space(rgb, "YBR_FULL", "RGB")
        np.testing.assert_array_equal(reader.read(0), expected)
    finally:
        reader.close()


def test_rle_segments_must_match_the_pixel_layout(tmp_path: Path) -> None:
    from tests.synthetic_dicom import _rle_frame

    frames = list(_frames(1, 6, 6, "u2"))
    good = _rle_frame(frames[0])
    path = _encapsulated(
        tmp_path / "rle.dcm", frames, syntax="1.2.840.10008.1.2.5", codestreams=[good]
    )
    reader = DicomFrames(path)
    try:
        np.testing.assert_array_equal(reader.read(0), frames[0])
    finally:
        reader.close()
    one_segment = _rle_frame(frames[0].astype("u1"))
    path = _encapsulated(
        tmp_path / "seg.dcm", frames, syntax="1.2.840.10008.1.2.5", codestreams=[one_segment]
    )
    reader = DicomFrames(path)
    try:
        with pytest.raises(CorruptFileError) as caught:
            reader.read(0)
        assert str(caught.value) == "seg.dcm: RLE frame has 1 segments, expected 2"
        assert caught.value.path == path
    finally:
        reader.close()
    short = _rle_frame(np.zeros((6, 5), "u2"))
    path = _encapsulated(
        tmp_path / "short.dcm", frames, syntax="1.2.840.10008.1.2.5", codestreams=[short]
    )
    reader = DicomFrames(path)
    try:
        with pytest.raises(CorruptFileError) as caught:
            reader.read(0)
        assert str(caught.value) == "short.dcm: RLE segment 0 decodes to 30 of 36 bytes"
    finally:
        reader.close()


def test_file_meta_without_a_transfer_syntax(tmp_path: Path) -> None:
    path = _write(tmp_path / "nots.dcm", _frames(1, 4, 4, "u2"))
    ds = pydicom.dcmread(path)
    del ds.file_meta.TransferSyntaxUID
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=False)
    with pytest.raises(UnsupportedFormatError) as caught:
        DicomFrames(path)
    assert str(caught.value) == "nots.dcm: DICOM transfer syntax  is not supported"


@pytest.mark.parametrize("element", ["SamplesPerPixel", "NumberOfFrames"])
def test_zero_samples_or_frames_mean_one(tmp_path: Path, element: str) -> None:
    frames = _frames(1, 3, 4, "u2")
    path = _write(tmp_path / "z.dcm", frames, extra={element: 0})
    reader = DicomFrames(path)
    try:
        assert (reader.geometry.count, reader.geometry.samples) == (1, 1)
        np.testing.assert_array_equal(reader.read(0), frames[0])
    finally:
        reader.close()


def test_missing_bits_allocated_is_zero_bits(tmp_path: Path) -> None:
    path = _write(tmp_path / "nb.dcm", _frames(1, 3, 4, "u2"), drop=("BitsAllocated",))
    with pytest.raises(UnsupportedFormatError) as caught:
        DicomFrames(path)
    assert str(caught.value) == "nb.dcm: BitsAllocated 0 is not supported (8, 16 or 32 bits only)"


def test_single_row_or_column_frames(tmp_path: Path) -> None:
    for shape in ((2, 1, 5), (2, 5, 1)):
        frames = _frames(*shape, "u2")
        path = _write(tmp_path / "thin.dcm", frames)
        reader = DicomFrames(path)
        try:
            np.testing.assert_array_equal(reader.read(1), frames[1])
        finally:
            reader.close()


def test_absent_photometric_and_planar_configuration(tmp_path: Path) -> None:
    rgb = (np.arange(3 * 4 * 3).reshape(3, 4, 3) * 11 % 256).astype("u1")
    path = _write(tmp_path / "rgb.dcm", rgb.reshape(1, 3, 12), extra={"SamplesPerPixel": 3})
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 3, 4
    del ds.PhotometricInterpretation
    ds.save_as(path)
    reader = DicomFrames(path)
    try:
        assert reader.photometric == "MONOCHROME2"
        assert not reader.planar  # no PlanarConfiguration: samples interleaved
        np.testing.assert_array_equal(reader.read(0), rgb)
    finally:
        reader.close()


def test_big_endian_pixel_data_length_is_read_big_endian(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "be.dcm", _frames(3, 5, 7, "u2"), syntax="big", extra={"NumberOfFrames": 4}
    )
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert (
        str(caught.value) == "be.dcm: Pixel Data holds 210 bytes, but 4 frame(s) of (5, 7) need 280"
    )


def test_pixel_data_element_cut_after_its_header(tmp_path: Path) -> None:
    """An implicit-VR Pixel Data header (8 bytes) that ends the file: the data are missing."""
    path = _write(tmp_path / "cut8.dcm", _frames(1, 4, 4, "u2"), syntax="implicit")
    _, offset = read_header(path)
    path.write_bytes(path.read_bytes()[: offset + 8])
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    size = offset + 8
    assert str(caught.value) == (
        f"cut8.dcm: Pixel Data ends past the end of the file ({size:,} bytes); the file is truncated"
    )
    assert caught.value.path == path


def test_pixel_data_with_a_short_value_representation(tmp_path: Path) -> None:
    """Explicit VR 'US' (2-byte length) on Pixel Data: its length is the 2 bytes after the VR."""
    path = _write(tmp_path / "us.dcm", _frames(1, 4, 4, "u2"))
    _, offset = read_header(path)
    data = bytearray(path.read_bytes())
    assert data[offset + 4 : offset + 6] == b"OW"
    data[offset + 4 : offset + 6] = b"US"
    data[offset + 6 : offset + 8] = (20).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert (
        str(caught.value) == "us.dcm: Pixel Data holds 20 bytes, but 1 frame(s) of (4, 4) need 32"
    )


def test_opening_does_not_read_the_pixel_data(tmp_path: Path) -> None:
    import tracemalloc

    path = _write(tmp_path / "big.dcm", np.zeros((4, 512, 1024), "u2"))  # 4 MiB of pixels
    tracemalloc.start()
    try:
        reader = DicomFrames(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reader.close()
    assert peak < 2 * 1024**2


def test_pixel_data_with_a_short_value_representation_reads_its_frames(tmp_path: Path) -> None:
    """Explicit VR 'US' with its 2-byte length (unsigned: 32,768 here), the value right after it."""
    frames = _frames(1, 128, 128, "u2")  # 32,768 bytes: the high bit of the 2-byte length set
    path = _write(tmp_path / "us.dcm", frames)
    _, offset = read_header(path)
    data = bytearray(path.read_bytes())
    assert data[offset + 4 : offset + 6] == b"OW"
    data[offset + 4 : offset + 12] = b"US" + (32768).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    reader = DicomFrames(path)
    try:
        np.testing.assert_array_equal(reader.read(0), frames[0])
    finally:
        reader.close()


# ============================================================================ seventh round
def _one_j2k(tmp_path: Path, name: str, *, fragments: int = 1, bot: bool = False) -> Path:
    frames = list(_frames(1, 12, 10, "u2"))
    return _encapsulated(
        tmp_path / name,
        frames,
        syntax="1.2.840.10008.1.2.4.90",
        codestreams=_j2k(frames),
        fragments_per_frame=fragments,
        has_bot=bot,
    )


def test_one_frame_in_exactly_two_fragments_without_an_offset_table(tmp_path: Path) -> None:
    path = _one_j2k(tmp_path, "two.dcm", fragments=2)
    reader = DicomFrames(path)
    try:
        np.testing.assert_array_equal(reader.read(0), _frames(1, 12, 10, "u2")[0])
    finally:
        reader.close()


@pytest.mark.parametrize(("syntax", "at"), [("explicit", 8), ("implicit", 4)])
def test_native_pixel_data_of_undefined_length(tmp_path: Path, syntax: str, at: int) -> None:
    path = _write(tmp_path / "u.dcm", _frames(1, 4, 4, "u2"), syntax=syntax)
    _, offset = read_header(path)
    data = bytearray(path.read_bytes())
    data[offset + at : offset + at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value) == "u.dcm: native Pixel Data with undefined length"
    assert caught.value.path == path


def test_encapsulated_pixel_data_of_defined_length(tmp_path: Path) -> None:
    path = _one_j2k(tmp_path, "d.dcm")
    _, offset = read_header(path)
    data = bytearray(path.read_bytes())
    assert data[offset + 8 : offset + 12] == b"\xff\xff\xff\xff"
    data[offset + 8 : offset + 12] = (len(data) - offset - 12).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value) == "d.dcm: encapsulated Pixel Data must have undefined length"
    assert caught.value.path == path


def test_a_broken_fragment_sequence_is_corrupt_with_the_cause(tmp_path: Path) -> None:
    path = _one_j2k(tmp_path, "b.dcm")
    _, offset = read_header(path)
    data = bytearray(path.read_bytes())
    table = offset + 12  # the basic offset table item: (FFFE,E000), length 0
    assert data[table : table + 4] == b"\xfe\xff\x00\xe0"
    data[table + 8 : table + 12] = b"\x00\x00\x00\x00"  # the first fragment's tag wiped
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value).startswith("b.dcm: encapsulated Pixel Data is corrupt: ")
    assert caught.value.path == path
    assert caught.value.detail == repr(caught.value.__cause__)


@pytest.mark.parametrize("size", [0x80000000, 0xFFFFFFF0])
def test_a_fragment_longer_than_the_file(tmp_path: Path, size: int) -> None:
    path = _one_j2k(tmp_path, "l.dcm")
    _, offset = read_header(path)
    data = bytearray(path.read_bytes())
    item = offset + 12 + 8  # after the empty offset table: the fragment's item header
    assert data[item : item + 4] == b"\xfe\xff\x00\xe0"
    data[item + 4 : item + 8] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        DicomFrames(path)
    assert str(caught.value).startswith("l.dcm: a compressed frame ends past the end of the file (")
    assert caught.value.path == path


def test_a_fragment_ending_at_the_end_of_the_file_is_read(tmp_path: Path) -> None:
    """No sequence delimiter after the last fragment: its data still all lie in the file."""
    path = _one_j2k(tmp_path, "e.dcm")
    data = path.read_bytes()
    assert data[-8:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    path.write_bytes(data[:-8])
    reader = DicomFrames(path)
    try:
        np.testing.assert_array_equal(reader.read(0), _frames(1, 12, 10, "u2")[0])
    finally:
        reader.close()


def test_a_file_cut_after_opening_is_reported_at_the_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.dcm", _frames(2, 4, 4, "u2"))
    reader = DicomFrames(path)
    try:
        path.write_bytes(path.read_bytes()[:-10])
        with pytest.raises(CorruptFileError) as caught:
            reader.read(1)
        assert str(caught.value).startswith("c.dcm: frame data at ")
        assert str(caught.value).endswith(" is cut short (file changed?)")
        assert caught.value.path == path
    finally:
        reader.close()
