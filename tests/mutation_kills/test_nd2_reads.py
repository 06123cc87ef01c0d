"""ND2 reads pinned on the real corpus file: container checks, frames, regions, calibration.

Why these cases: the mutation run of ``readers/nd2.py`` (docs/mutation-scores.md, fourth
round) showed which checks of the reader no test observed. The file is
``nd2/cluster.nd2`` (NIS-Elements, modern chunk map, T=3 Z=10 C=2, 31x38 uint16); damaged
copies change the bytes the reader checks (chunk map, chunk headers, frame entries) and
nothing else, and the values are EXPECTED.json's and the nd2 package's own arrays.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from typing import TYPE_CHECKING, Any

import nd2
import numpy as np
import pytest

from tests.synthetic_nd2_legacy import write_legacy_nd2
from zstack_analyzer import CorruptFileError, LimitExceededError, SceneNotFoundError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.nd2 import (
    Nd2Reader,
    _check_chunk_header,
    _chunkmap_entries,
    _loop_axes,
)

if TYPE_CHECKING:
    from pathlib import Path

CLUSTER = "nd2/cluster.nd2"
_SIGNATURE = b"ND2 CHUNK MAP SIGNATURE 0000001!"


def _expected(testdata: Path) -> dict[str, Any]:
    entries = json.loads((testdata / "EXPECTED.json").read_text())["files"]
    return next(e for e in entries if e["path"] == CLUSTER)


def _native(testdata: Path) -> np.ndarray:
    with nd2.ND2File(testdata / CLUSTER) as f:
        return np.asarray(f.asarray())  # T, Z, C, Y, X


def _chunkmap_entry(data: bytes, name: bytes) -> int:
    """Position of ``name`` in the chunk map at the end of the file (not the chunk's own copy)."""
    location = int.from_bytes(data[-8:], "little")
    return data.index(name, location)


def _copy(testdata: Path, tmp_path: Path, edit: Any, name: str = "edited.nd2") -> Path:
    data = bytearray((testdata / CLUSTER).read_bytes())
    edit(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


# ----------------------------------------------------------------------------- values
def test_scene_values_equal_expected_json(testdata: Path) -> None:
    expected = _expected(testdata)
    want = expected["scenes"][0]
    with Nd2Reader(testdata / CLUSTER) as reader:
        (info,) = reader.scenes()
        sizes = want["sizes"]
        assert info.index == 0
        assert info.name is None
        assert info.shape == (sizes["T"], sizes["C"], sizes["Z"], sizes["Y"], sizes["X"])
        assert info.dtype == want["dtype"]
        assert info.samples_per_pixel == 1
        assert dict(info.extra_dims) == {}
        md = reader.metadata(0)
        for axis in ("x", "y", "z"):
            assert getattr(md.physical_size, f"{axis}_um") == pytest.approx(
                want["voxel_size_um"][axis], rel=1e-8
            )
            assert md.provenance[f"physical_size.{axis}_um"] == (
                "ND2 metadata.channels[0].volume.axesCalibration"
            )
        assert not any("calibration" in w or "Z loop step" in w for w in md.warnings)
        assert [c.name for c in md.channels] == want["channel_names"]
        pixels = expected["scene0_pixels"]
        plane = reader.read_plane(0, 0, 0, 0)
        assert plane.dtype == np.dtype("uint16")
        assert plane.flags["C_CONTIGUOUS"]
        assert hashlib.sha256(plane.tobytes()).hexdigest() == pixels["plane_t0_c0_z0_sha256"]
        mip = np.stack([reader.read_plane(0, 0, 0, z) for z in range(10)]).max(axis=0)
        assert int(mip.sum(dtype=np.int64)) == pixels["zmip_t0_c0_sum"]
        assert int(mip.max()) == pixels["zmip_t0_c0_max"]


def test_every_plane_equals_nd2(testdata: Path) -> None:
    native = _native(testdata)
    with Nd2Reader(testdata / CLUSTER) as reader:
        for t in range(3):
            for c in range(2):
                for z in range(10):
                    np.testing.assert_array_equal(reader.read_plane(0, t, c, z), native[t, z, c])
        stack = reader.to_dask(0).compute()
    np.testing.assert_array_equal(stack, native.transpose(0, 2, 1, 3, 4))


@pytest.mark.parametrize(
    ("rows", "cols"),
    [
        ((0, 31), (0, 38)),
        ((3, 9), (10, 37)),
        ((30, 31), (0, 1)),
        ((0, 1), (37, 38)),
        ((5, 5), (0, 38)),
    ],
)
def test_regions_are_plane_slices(
    testdata: Path, rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    native = _native(testdata)
    with Nd2Reader(testdata / CLUSTER) as reader:
        assert reader.region_grid(0) == (1, 38)
        for t, c, z in [(2, 1, 9), (0, 0, 3), (1, 1, 0)]:
            region = reader.read_region(0, t, c, z, rows, cols)
            np.testing.assert_array_equal(region, native[t, z, c][slice(*rows), slice(*cols)])
            assert region.flags["C_CONTIGUOUS"]


def test_levels_scenes_and_planes_out_of_range(testdata: Path) -> None:
    with Nd2Reader(testdata / CLUSTER) as reader:
        with pytest.raises(SceneNotFoundError, match="level 1 does not exist; ND2 images have 1"):
            reader.region_grid(0, 1)
        with pytest.raises(SceneNotFoundError, match="level 1 does not exist; ND2 images have 1"):
            reader.read_region(0, 0, 0, 0, (0, 1), (0, 1), level=1)
        with pytest.raises(SceneNotFoundError):
            reader.read_region(1, 0, 0, 0, (0, 1), (0, 1))
        with pytest.raises(SceneNotFoundError, match="level 2 does not exist"):
            reader.to_dask(0, 2)


def test_a_closed_reader_refuses_reads(testdata: Path) -> None:
    reader = Nd2Reader(testdata / CLUSTER)
    reader.close()
    with pytest.raises(Exception, match="closed"):
        reader.read_plane(0, 0, 0, 0)


# ---------------------------------------------------------------------------- the frames
def test_a_frame_missing_from_the_chunk_map_reads_as_zeros_with_a_warning(
    testdata: Path, tmp_path: Path
) -> None:
    def rename(data: bytearray) -> None:
        at = _chunkmap_entry(data, b"ImageDataSeq|29!")
        data[at : at + 16] = b"ImageDataSeq|99!"

    path = _copy(testdata, tmp_path, rename)
    native = _native(testdata)
    with Nd2Reader(path) as reader:
        md = reader.metadata(0)
        np.testing.assert_array_equal(reader.read_plane(0, 2, 1, 8), native[2, 8, 1])
        assert not reader.read_plane(0, 2, 1, 9).any()  # frame 29 = t 2, z 9
    assert "1 of 30 frames are missing; they read as zeros" in md.warnings


def test_a_chunk_map_without_any_frame_is_corrupt(testdata: Path, tmp_path: Path) -> None:
    def rename_all(data: bytearray) -> None:
        location = int.from_bytes(data[-8:], "little")
        data[location:] = data[location:].replace(b"ImageDataSeq|", b"ImageDataSeX|")

    path = _copy(testdata, tmp_path, rename_all)
    with pytest.raises(
        CorruptFileError, match=r"edited\.nd2: the ND2 chunk map lists none of its 30 frames"
    ):
        Nd2Reader(path)


def test_a_frame_entry_pointing_past_the_end_is_truncated(testdata: Path, tmp_path: Path) -> None:
    size = (testdata / CLUSTER).stat().st_size
    # An uncompressed frame is mapped 4096 bytes past its chunk: 4096 + 31 * 152 bytes.
    frame_bytes = 4096 + 31 * 152

    def move(offset: int) -> Any:
        def edit(data: bytearray) -> None:
            at = _chunkmap_entry(data, b"ImageDataSeq|7!") + len(b"ImageDataSeq|7!")
            data[at : at + 8] = struct.pack("<Q", offset)

        return edit

    path = _copy(testdata, tmp_path, move(size - frame_bytes + 1), "past.nd2")
    with pytest.raises(CorruptFileError) as caught:
        Nd2Reader(path)
    assert str(caught.value) == (
        f"past.nd2: frame 7 ({frame_bytes:,} bytes at {size - frame_bytes + 1:,}) ends past the "
        f"end of the file ({size:,} bytes); the file is truncated"
    )


def test_frame_entries_at_offset_0_and_ending_at_the_file_end_open(
    testdata: Path, tmp_path: Path
) -> None:
    """The frame check's bounds: offset 0 and an end exactly at the file's end are inside it.

    Its errors name the file (``path``), as every reader error does.
    """
    size = (testdata / CLUSTER).stat().st_size
    frame_bytes = 4096 + 31 * 152  # an uncompressed frame is mapped 4096 bytes past its chunk

    def move(offset: int) -> Any:
        def edit(data: bytearray) -> None:
            at = _chunkmap_entry(data, b"ImageDataSeq|7!") + len(b"ImageDataSeq|7!")
            data[at : at + 8] = struct.pack("<Q", offset)

        return edit

    for offset in (0, size - frame_bytes):
        path = _copy(testdata, tmp_path, move(offset), f"at{offset}.nd2")
        with Nd2Reader(path) as reader:
            assert reader.scenes()[0].size_t == 3
    path = _copy(testdata, tmp_path, move(size - frame_bytes + 1), "past.nd2")
    with pytest.raises(CorruptFileError, match="ends past the end of the file") as caught:
        Nd2Reader(path)
    assert caught.value.path == path

    def rename_all(data: bytearray) -> None:
        location = int.from_bytes(data[-8:], "little")
        data[location:] = data[location:].replace(b"ImageDataSeq|", b"ImageDataSeX|")

    path = _copy(testdata, tmp_path, rename_all, "none.nd2")
    with pytest.raises(CorruptFileError, match="lists none of its 30 frames") as caught:
        Nd2Reader(path)
    assert caught.value.path == path


def test_the_frames_of_the_file_fit_it_exactly_enough(testdata: Path) -> None:
    """Every frame entry of the real file lies inside it (the check passes on a whole file)."""
    with Nd2Reader(testdata / CLUSTER) as reader:
        assert reader.metadata(0).warnings == [
            w for w in reader.metadata(0).warnings if "frames" not in w
        ]


# ---------------------------------------------------------------------- container checks
def test_a_damaged_first_chunk_header_is_refused(testdata: Path, tmp_path: Path) -> None:
    def damage(data: bytearray) -> None:
        data[8:16] = struct.pack("<Q", len(data))  # the first chunk claims the whole file

    path = _copy(testdata, tmp_path, damage)
    with pytest.raises(
        CorruptFileError, match=r"edited\.nd2: ND2 chunk at 0 is damaged \(magic 0xabeceda"
    ):
        Nd2Reader(path)


def test_the_metadata_limit_bounds_every_chunk(testdata: Path) -> None:
    data = (testdata / CLUSTER).read_bytes()
    location = int.from_bytes(data[-8:], "little")
    _, name_length, data_length = struct.unpack_from("<IIQ", data, location)
    with pytest.raises(CorruptFileError, match=r"cluster\.nd2: ND2 chunk at"):
        Nd2Reader(testdata / CLUSTER, limits=ReadLimits(max_metadata_bytes=data_length - 1))
    # The largest non-image chunk is the limit that still opens the file.
    sizes = []
    for name, offset in _chunkmap_entries(data[location + 16 + name_length : len(data) - 40]):
        if not name.startswith(b"ImageDataSeq|"):
            sizes.append(struct.unpack_from("<IIQ", data, offset)[2])
    sizes.append(data_length)
    sizes.append(struct.unpack_from("<IIQ", data, 0)[2])
    with Nd2Reader(testdata / CLUSTER, limits=ReadLimits(max_metadata_bytes=max(sizes))) as reader:
        assert reader.scenes()[0].size_z == 10
    with pytest.raises(CorruptFileError):
        Nd2Reader(testdata / CLUSTER, limits=ReadLimits(max_metadata_bytes=max(sizes) - 1))


def test_a_missing_chunk_map_signature_is_refused(testdata: Path, tmp_path: Path) -> None:
    def damage(data: bytearray) -> None:
        data[-40:-8] = b"ND2 CHUNK MAP SIGNATURE 0000002!"

    path = _copy(testdata, tmp_path, damage)
    with pytest.raises(
        CorruptFileError,
        match=r"edited\.nd2: the ND2 chunk map signature is missing; the file is truncated or corrupt",
    ):
        Nd2Reader(path)


def test_a_chunk_map_location_past_the_end_is_refused(testdata: Path, tmp_path: Path) -> None:
    size = (testdata / CLUSTER).stat().st_size

    def damage(data: bytearray) -> None:
        data[-8:] = struct.pack("<Q", size - 15)

    path = _copy(testdata, tmp_path, damage)
    with pytest.raises(
        CorruptFileError,
        match=rf"edited\.nd2: ND2 chunk at {size - 15:,} lies past the end of the file; truncated",
    ):
        Nd2Reader(path)


def test_a_metadata_chunk_entry_past_the_end_is_refused(testdata: Path, tmp_path: Path) -> None:
    size = (testdata / CLUSTER).stat().st_size

    def damage(data: bytearray) -> None:
        at = _chunkmap_entry(data, b"ImageAttributesLV!") + len(b"ImageAttributesLV!")
        data[at : at + 8] = struct.pack("<Q", size)

    path = _copy(testdata, tmp_path, damage)
    with pytest.raises(CorruptFileError, match=rf"ND2 chunk at {size:,} lies past the end"):
        Nd2Reader(path)


def test_a_damaged_frame_chunk_header_is_left_to_the_frame_check(
    testdata: Path, tmp_path: Path
) -> None:
    """Frame chunks are not walked at open (nd2 maps them): a damaged frame header opens."""

    def damage(data: bytearray) -> None:
        location = int.from_bytes(data[-8:], "little")
        at = data.index(b"ImageDataSeq|3!", location) + len(b"ImageDataSeq|3!")
        (offset,) = struct.unpack_from("<Q", data, at)
        data[offset : offset + 4] = b"\0\0\0\0"  # magic of frame 3's chunk

    path = _copy(testdata, tmp_path, damage)
    with Nd2Reader(path) as reader:
        assert reader.scenes()[0].shape == (3, 2, 10, 31, 38)


def test_a_file_shorter_than_the_tail_is_truncated(tmp_path: Path) -> None:
    header = struct.pack("<IIQ", 0x0ABECEDA, 4, 0) + b"abc!"
    path = tmp_path / "tiny.nd2"
    path.write_bytes(header)
    with pytest.raises(CorruptFileError, match=r"tiny\.nd2: ND2 file is truncated \(20 bytes\)"):
        Nd2Reader(path)


def test_check_chunk_header_bounds() -> None:
    import io
    from pathlib import Path as P

    chunk = struct.pack("<IIQ", 0x0ABECEDA, 4, 8) + b"abc!" + bytes(8)
    fh = io.BytesIO(chunk)
    assert _check_chunk_header(fh, 0, 8, P("x.nd2"), len(chunk)) == 20
    with pytest.raises(CorruptFileError, match="damaged"):
        _check_chunk_header(fh, 0, 7, P("x.nd2"), len(chunk))  # over the data limit
    with pytest.raises(CorruptFileError, match="damaged"):
        _check_chunk_header(fh, 0, 8, P("x.nd2"), len(chunk) - 1)  # ends past the file
    with pytest.raises(CorruptFileError, match="lies past the end"):
        _check_chunk_header(fh, -1, 8, P("x.nd2"), len(chunk))
    with pytest.raises(CorruptFileError, match="lies past the end"):
        _check_chunk_header(fh, len(chunk) - 15, 8, P("x.nd2"), len(chunk))
    bad = io.BytesIO(struct.pack("<IIQ", 0x0ABECEDB, 4, 8) + b"abc!" + bytes(8))
    with pytest.raises(
        CorruptFileError,
        match=r"x\.nd2: ND2 chunk at 0 is damaged \(magic 0xabecedb, 8 data bytes, file 28 bytes\)",
    ):
        _check_chunk_header(bad, 0, 8, P("x.nd2"), len(chunk))


def test_chunk_header_errors_name_the_file_and_a_header_at_the_last_16_bytes_is_read(
    tmp_path: Path,
) -> None:
    import io

    chunk = struct.pack("<IIQ", 0x0ABECEDA, 4, 8) + b"abc!" + bytes(8)
    path = tmp_path / "x.nd2"
    fh = io.BytesIO(chunk)
    # The last 16 bytes are read as a header (here not one: damaged, not past the end).
    with pytest.raises(CorruptFileError, match="is damaged") as caught:
        _check_chunk_header(fh, len(chunk) - 16, 8, path, len(chunk))
    assert caught.value.path == path
    with pytest.raises(CorruptFileError, match="lies past the end") as caught:
        _check_chunk_header(fh, len(chunk) - 15, 8, path, len(chunk))
    assert caught.value.path == path


def test_container_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.nd2"
    path.write_bytes(struct.pack("<IIQ", 0x0ABECEDA, 4, 0) + b"abc!")
    with pytest.raises(CorruptFileError, match="truncated") as caught:
        Nd2Reader(path)
    assert caught.value.path == path


def test_chunkmap_entries() -> None:
    def entry(name: bytes, offset: int, size: int = 0) -> bytes:
        return name + struct.pack("<QQ", offset, size)

    data = entry(b"A!", 5) + entry(b"ImageDataSeq|0!", 4096, 99) + entry(b"B|c!", 2**40)
    assert _chunkmap_entries(data) == [(b"A!", 5), (b"ImageDataSeq|0!", 4096), (b"B|c!", 2**40)]
    assert _chunkmap_entries(data + _SIGNATURE + struct.pack("<Q", 1)) == _chunkmap_entries(data)
    assert _chunkmap_entries(data[:-1]) == [(b"A!", 5), (b"ImageDataSeq|0!", 4096)]
    assert _chunkmap_entries(entry(b"A!", 5)[:17]) == []
    assert _chunkmap_entries(entry(b"A!", 5)[:18]) == [(b"A!", 5)]
    assert _chunkmap_entries(b"") == []
    assert _chunkmap_entries(b"no name at all") == []


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (struct.pack(">I4s", 4, b"jp2h") + bytes(20), "claims 4 bytes"),  # shorter than a box
        (struct.pack(">I4s", 200, b"jp2c") + bytes(20), "claims 200 bytes"),
        (struct.pack(">I4sQ", 1, b"jp2c", 400) + bytes(20), "claims 400 bytes"),
    ],
)
def test_legacy_boxes_that_overrun_are_refused(tmp_path: Path, boxes: bytes, message: str) -> None:
    signature = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    path = tmp_path / "legacy.nd2"
    path.write_bytes(signature + boxes)
    with pytest.raises(CorruptFileError) as caught:
        Nd2Reader(path)
    text = str(caught.value)
    assert text.startswith("legacy.nd2: JPEG 2000 box at 12 ")
    assert message in text
    assert text.endswith(
        f"past the end of the file ({12 + len(boxes):,}); the file is truncated or corrupt"
    )


@pytest.mark.parametrize(
    "boxes",
    [
        struct.pack(">I4s", 0, b"jp2c") + bytes(20),  # the last box runs to the end
        struct.pack(">I4s", 12, b"free") + bytes(4) + struct.pack(">I4s", 0, b"jp2c"),
        struct.pack(">I4sQ", 1, b"free", 24) + bytes(8) + b"\0\0\0",  # a short tail
        struct.pack(">I4s", 28, b"free") + bytes(20),  # exactly to the end
    ],
)
def test_legacy_boxes_that_fit_pass_the_walk(tmp_path: Path, boxes: bytes) -> None:
    from zstack_analyzer.readers.nd2 import _check_structure

    signature = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    path = tmp_path / "fits.nd2"
    path.write_bytes(signature + boxes)
    _check_structure(path, path.stat().st_size, 2**20)


# ------------------------------------------------------------------------------ loops
def test_loop_axes_name_repeats_and_custom_loops() -> None:
    loops, extra = _loop_axes(
        [("ZStackLoop", 2), ("ZStackLoop", 3), ("ZStackLoop", 4), ("Unknown", 2), ("Other", 5)]
    )
    assert loops == [("Z", 2), ("Z1", 3), ("Z2", 4), ("U", 2), ("U2", 5)]
    assert extra == {"Z1": 3, "Z2": 4, "U": 2, "U2": 5}
    assert _loop_axes([("XYPosLoop", 1), ("TimeLoop", 0)]) == ([], {})
    assert _loop_axes([("XYPosLoop", 2), ("NETimeLoop", 2)]) == ([("P", 2), ("T", 2)], {})


def test_sniff_the_real_head(testdata: Path, tmp_path: Path) -> None:
    head = (testdata / CLUSTER).read_bytes()[:64]
    assert Nd2Reader.sniff(head, tmp_path / "renamed.bin")
    assert Nd2Reader.sniff(head[:4], tmp_path / "renamed.bin")


def test_sniff_suffix_is_case_blind(tmp_path: Path) -> None:
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(4)
    assert Nd2Reader.sniff(jp2, tmp_path / "OLD.ND2")
    assert not Nd2Reader.sniff(jp2[:-5] + b"\x00" + jp2[-4:], tmp_path / "old.nd2")
    assert not Nd2Reader.sniff(b"\xda\xce\xbe\x0b", tmp_path / "a.nd2")


def test_axes_the_file_marks_uncalibrated_have_no_size(testdata: Path, tmp_path: Path) -> None:
    """bCalibrated = 0 (ImageCalibrationLV): nd2 reports X and Y uncalibrated; Z keeps its step."""
    name = "bCalibrated".encode("utf-16-le") + b"\x00\x00"

    def uncalibrate(data: bytearray) -> None:
        at = data.index(name) + len(name)
        assert data[at] == 1
        data[at] = 0

    path = _copy(testdata, tmp_path, uncalibrate)
    with Nd2Reader(path) as reader:
        md = reader.metadata(0)
    assert (md.physical_size.x_um, md.physical_size.y_um) == (None, None)
    assert md.physical_size.z_um == pytest.approx(0.5)
    assert "physical_size.x_um" not in md.provenance
    assert md.provenance["physical_size.z_um"] == "ND2 metadata.channels[0].volume.axesCalibration"


def test_a_calibration_of_exactly_one_micrometre_is_kept(testdata: Path, tmp_path: Path) -> None:
    """dCalibration = 1.0 in both metadata chunks: a real 1 µm pixel, not a default."""
    name = "dCalibration".encode("utf-16-le") + b"\x00\x00"

    def one_micrometre(data: bytearray) -> None:
        start = 0
        while (at := data.find(name, start)) >= 0:
            struct.pack_into("<d", data, at + len(name), 1.0)
            start = at + 1

    path = _copy(testdata, tmp_path, one_micrometre)
    with Nd2Reader(path) as reader:
        md = reader.metadata(0)
    assert (md.physical_size.x_um, md.physical_size.y_um) == (1.0, 1.0)
    assert md.physical_size.z_um == pytest.approx(0.5)
    assert not any("calibration" in w for w in md.warnings)


# ------------------------------------------------------- Z loops of one and two slices
def _z_count(count: int) -> Any:
    """Set the Z loop's uiCount (10 in the file, ImageMetadataLV) to ``count``."""
    name = "uiCount".encode("utf-16-le") + b"\x00\x00"

    def edit(data: bytearray) -> None:
        ends = [m.end() for m in re.finditer(re.escape(name), data)]
        (at,) = [e for e in ends if struct.unpack_from("<I", data, e)[0] == 10]  # T is 3
        struct.pack_into("<I", data, at, count)

    return edit


def test_the_whole_files_metadata_has_no_warnings(testdata: Path) -> None:
    """cluster.nd2 is whole and consistent: its Z step is positive and matches its loop."""
    with Nd2Reader(testdata / CLUSTER) as reader:
        assert reader.metadata(0).warnings == []


@pytest.mark.parametrize("count", [1, 2])
def test_a_z_loop_of_one_or_two_slices(testdata: Path, tmp_path: Path, count: int) -> None:
    """One slice: no Z step (nd2 still reports 0.5 µm); two slices: the step is kept."""
    path = _copy(testdata, tmp_path, _z_count(count), f"z{count}.nd2")
    with nd2.ND2File(path) as f:
        assert f.metadata.channels[0].volume.axesCalibration[2] == 0.5
        native = np.asarray(f.asarray())
        if count == 1:
            native = native[:, np.newaxis]  # nd2 drops Z; T, Z, C, Y, X here
    with Nd2Reader(path) as reader:
        (info,) = reader.scenes()
        assert info.shape == (3, 2, count, 31, 38)
        md = reader.metadata(0)
        for t in range(3):
            for c in range(2):
                for z in range(count):
                    np.testing.assert_array_equal(reader.read_plane(0, t, c, z), native[t, z, c])
    frames = 3 * count
    assert md.warnings == [f"the experiment loops give {frames} frames but the file declares 30"]
    assert md.physical_size.x_um == pytest.approx(0.167808983)
    if count == 1:
        assert md.physical_size.z_um is None
        assert "physical_size.z_um" not in md.provenance
    else:
        assert md.physical_size.z_um == 0.5
        assert md.provenance["physical_size.z_um"] == (
            "ND2 metadata.channels[0].volume.axesCalibration"
        )


# ------------------------------------------------------------- lossless-compressed frames
def _compress_frames(data: bytearray) -> None:
    """Rewrite cluster.nd2 as NIS-Elements' lossless ND2: eCompression 0, zlib frame chunks.

    Each frame chunk keeps its place and its 8-byte timestamp; the pixels after it are
    zlib-compressed and the chunk's data length shrinks to match (nd2 decompresses
    ``chunk[8:]`` when ImageAttributesLV says "lossless").
    """
    location = int.from_bytes(data[-8:], "little")
    _, name_length, _ = struct.unpack_from("<IIQ", data, location)
    entries = _chunkmap_entries(bytes(data[location + 16 + name_length : len(data) - 40]))
    for name, offset in entries:
        if not name.startswith(b"ImageDataSeq|"):
            continue
        _, chunk_name, size = struct.unpack_from("<IIQ", data, offset)
        start = offset + 16 + chunk_name
        packed = bytes(data[start : start + 8]) + zlib.compress(
            bytes(data[start + 8 : start + size])
        )
        data[start : start + size] = packed + bytes(size - len(packed))
        struct.pack_into("<Q", data, offset + 8, len(packed))
    name = "eCompression".encode("utf-16-le") + b"\x00\x00"
    at = data.index(name) + len(name)
    assert struct.unpack_from("<I", data, at)[0] == 2  # none
    struct.pack_into("<I", data, at, 0)  # lossless


def test_lossless_compressed_frames_read_like_the_original(testdata: Path, tmp_path: Path) -> None:
    native = _native(testdata)
    path = _copy(testdata, tmp_path, _compress_frames, "lossless.nd2")
    with nd2.ND2File(path) as f:
        assert f.attributes.compressionType == "lossless"
        np.testing.assert_array_equal(f.asarray(), native)
    with Nd2Reader(path) as reader:
        assert reader.region_grid(0) is None  # a compressed frame has no row to map
        md = reader.metadata(0)
        assert md.warnings == []
        decompressed: list[int] = []
        read_frame = reader._nd2.read_frame

        def counted(index: int) -> np.ndarray:
            decompressed.append(index)
            return read_frame(index)

        reader._nd2.read_frame = counted  # type: ignore[method-assign]
        for t in range(3):
            for z in range(10):
                for c in range(2):
                    plane = reader.read_plane(0, t, c, z)
                    np.testing.assert_array_equal(plane, native[t, z, c])
                    assert plane.flags["C_CONTIGUOUS"]
                    assert plane.flags["WRITEABLE"]
        # Both channels of a frame come from one decompression (the frame is kept).
        assert decompressed == list(range(30))
        region = reader.read_region(0, 1, 1, 4, (3, 9), (10, 37))
        np.testing.assert_array_equal(region, native[1, 4, 1][3:9, 10:37])
        np.testing.assert_array_equal(
            reader.to_dask(0).compute(scheduler="sync"), native.transpose(0, 2, 1, 3, 4)
        )


def test_a_compressed_frame_whose_chunk_overruns_the_file_is_refused(
    testdata: Path, tmp_path: Path
) -> None:
    """The frame chunk's own header is checked before nd2 reads that many bytes."""
    size = (testdata / CLUSTER).stat().st_size
    where: list[int] = []

    def damage(data: bytearray) -> None:
        _compress_frames(data)
        at = _chunkmap_entry(data, b"ImageDataSeq|5!") + len(b"ImageDataSeq|5!")
        (offset,) = struct.unpack_from("<Q", data, at)
        struct.pack_into("<Q", data, offset + 8, size)  # frame 5 claims the whole file
        where.append(offset)

    path = _copy(testdata, tmp_path, damage, "overrun.nd2")
    native = _native(testdata)
    with Nd2Reader(path) as reader:  # frame chunks are not walked at open
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1, 4), native[0, 4, 1])
        with pytest.raises(CorruptFileError) as caught:
            reader.read_plane(0, 0, 1, 5)
    cause = caught.value.__cause__
    assert isinstance(cause, CorruptFileError)
    assert caught.value.path == path
    assert caught.value.detail == repr(cause)
    assert str(caught.value) == (
        f"overrun.nd2: frame 5 cannot be read (overrun.nd2: ND2 chunk at {where[0]:,} is "
        f"damaged (magic 0xabeceda, {size:,} data bytes, file {size:,} bytes))"
    )


def test_a_custom_loop_is_an_extra_axis_read_at_index_0(testdata: Path, tmp_path: Path) -> None:
    """The Z loop's eType set to 7 (CustomLoop): nd2 calls it U; here it is an extra axis."""
    name = "eType".encode("utf-16-le") + b"\x00\x00"

    def customise(data: bytearray) -> None:
        ends = [m.end() for m in re.finditer(re.escape(name), data)]
        at = next(e for e in ends if struct.unpack_from("<I", data, e)[0] == 4)  # ZStackLoop
        struct.pack_into("<I", data, at, 7)

    path = _copy(testdata, tmp_path, customise, "custom.nd2")
    with nd2.ND2File(path) as f:
        assert dict(f.sizes) == {"T": 3, "U": 10, "C": 2, "Y": 31, "X": 38}
        native = np.asarray(f.asarray())  # T, U, C, Y, X
    with Nd2Reader(path) as reader:
        (info,) = reader.scenes()
        assert info.shape == (3, 2, 1, 31, 38)
        assert dict(info.extra_dims) == {"U": 10}
        md = reader.metadata(0)
        for t in range(3):
            for c in range(2):
                np.testing.assert_array_equal(reader.read_plane(0, t, c, 0), native[t, 0, c])
    assert md.extra_dims == {"U": 10}
    assert md.physical_size.z_um is None  # no Z loop: no step
    assert md.physical_size.x_um == pytest.approx(0.167808983)
    assert md.warnings == []


def test_planes_and_regions_are_copies_not_views_of_the_file(testdata: Path) -> None:
    """nd2 maps uncompressed frames from the file; what the reader returns owns its memory.

    A one-pixel or one-row region of a frame is contiguous even as a view: it must still
    be copied (the memory map is read-only and closes with the file).
    """
    native = _native(testdata)
    with Nd2Reader(testdata / CLUSTER) as reader:
        pieces = [
            reader.read_region(0, 2, 1, 9, (30, 31), (0, 1)),
            reader.read_region(0, 0, 0, 3, (4, 5), (0, 38)),
            reader.read_plane(0, 1, 1, 0),
        ]
        for piece in pieces:  # checked while open: a view would crash once the map closes
            assert piece.flags["OWNDATA"]
            assert piece.flags["WRITEABLE"]
    np.testing.assert_array_equal(pieces[0], native[2, 9, 1][30:31, 0:1])
    np.testing.assert_array_equal(pieces[1], native[0, 3, 0][4:5])
    np.testing.assert_array_equal(pieces[2], native[1, 0, 1])
    for piece in pieces:
        piece[0, 0] = 7  # usable after the file is closed


# -------------------------------------------------------------- legacy (JPEG 2000) files
def _legacy(tmp_path: Path, calibration_um: float | None, z_step_um: float) -> tuple[Path, Any]:
    planes = np.random.default_rng(7).integers(0, 4096, (3, 2, 20, 24), dtype=np.uint16)
    path = tmp_path / "legacy.nd2"
    write_legacy_nd2(
        path,
        planes,
        calibration_um=calibration_um,
        z_step_um=z_step_um,
        channel_names=["DAPI", "GFP"],
    )
    return path, planes


def test_a_legacy_file_reads_its_planes_and_calibration(tmp_path: Path) -> None:
    path, planes = _legacy(tmp_path, 0.25, 0.5)
    with nd2.ND2File(path) as f:
        assert f.is_legacy
        assert tuple(f.voxel_size()) == (0.25, 0.25, 0.5)
        np.testing.assert_array_equal(f.asarray(), planes)  # Z, C, Y, X
    with Nd2Reader(path) as reader:
        (info,) = reader.scenes()
        assert info.shape == (1, 2, 3, 20, 24)
        md = reader.metadata(0)
        for z in range(3):
            for c in range(2):
                np.testing.assert_array_equal(reader.read_plane(0, 0, c, z), planes[z, c])
    assert (md.physical_size.x_um, md.physical_size.y_um, md.physical_size.z_um) == (
        0.25,
        0.25,
        0.5,
    )
    for axis in "xyz":
        assert md.provenance[f"physical_size.{axis}_um"] == "nd2 voxel_size() (legacy ND2)"
    assert md.warnings == []


def test_a_legacy_file_without_calibration_has_no_sizes(tmp_path: Path) -> None:
    """No dCalibration and a Z step of 1 µm: nd2 answers 1.0 for each, its default."""
    path, _ = _legacy(tmp_path, None, 1.0)
    with nd2.ND2File(path) as f:
        assert tuple(f.voxel_size()) == (1.0, 1.0, 1.0)
    with Nd2Reader(path) as reader:
        md = reader.metadata(0)
    assert (md.physical_size.x_um, md.physical_size.y_um, md.physical_size.z_um) == (
        None,
        None,
        None,
    )
    assert not any(key.startswith("physical_size") for key in md.provenance)
    assert md.warnings == [
        f"legacy ND2: {axis} calibration 1.0 is nd2's default; treated as unknown" for axis in "xyz"
    ]


def test_a_legacy_rgb_file_has_samples(tmp_path: Path) -> None:
    """One channel of three components (RGB): samples of a plane, not channels."""
    planes = np.random.default_rng(8).integers(0, 256, (2, 1, 20, 24, 3), dtype=np.uint8)
    path = tmp_path / "rgb.nd2"
    write_legacy_nd2(path, planes, calibration_um=0.25, z_step_um=0.5, channel_names=["RGB"])
    with nd2.ND2File(path) as f:
        assert f.is_rgb
        np.testing.assert_array_equal(f.asarray(), planes[:, 0])  # Z, Y, X, S
    with Nd2Reader(path) as reader:
        (info,) = reader.scenes()
        assert info.shape == (1, 1, 2, 20, 24, 3)
        assert (info.samples_per_pixel, info.dtype) == (3, "uint8")
        for z in range(2):
            np.testing.assert_array_equal(reader.read_plane(0, 0, 0, z), planes[z, 0])
        region = reader.read_region(0, 0, 0, 1, (2, 5), (3, 9))
        np.testing.assert_array_equal(region, planes[1, 0, 2:5, 3:9])
        assert region.flags["OWNDATA"]
        np.testing.assert_array_equal(
            reader.to_dask(0).compute(scheduler="sync")[0, 0], planes[:, 0]
        )


def test_a_legacy_channel_of_two_components_is_two_channels(tmp_path: Path) -> None:
    """Two components in one picture plane: nd2 counts two channels; so does the reader.

    The reference is nd2's ``read_frame`` (Y, X, components); its ``asarray`` reads such a
    frame's interleaved components as if they were planar.
    """
    planes = np.random.default_rng(9).integers(0, 256, (2, 1, 20, 24, 2), dtype=np.uint8)
    path = tmp_path / "two.nd2"
    write_legacy_nd2(path, planes, calibration_um=0.25, z_step_um=0.5, channel_names=["A"])
    with nd2.ND2File(path) as f:
        assert dict(f.sizes) == {"Z": 2, "C": 2, "Y": 20, "X": 24}
        native = np.stack([f.read_frame(z) for z in range(2)])  # Z, Y, X, C
    with Nd2Reader(path) as reader:
        (info,) = reader.scenes()
        assert info.shape == (1, 2, 2, 20, 24)
        assert info.samples_per_pixel == 1
        for z in range(2):
            for c in range(2):
                plane = reader.read_plane(0, 0, c, z)
                np.testing.assert_array_equal(plane, native[z, :, :, c])
                np.testing.assert_array_equal(plane, planes[z, 0, :, :, c])


# ------------------------------------------------------------------------ read limits
def test_the_plane_limits_count_planes_of_y_x(testdata: Path) -> None:
    """max_plane_bytes bounds one Y,X plane and max_planes counts every T, C, Z plane.

    cluster.nd2: 60 planes (T 3, C 2, Z 10) of 31 x 38 uint16 = 2,356 bytes each.
    """
    exact = ReadLimits(max_plane_bytes=31 * 38 * 2, max_planes=60)
    with Nd2Reader(testdata / CLUSTER, limits=exact) as reader:
        assert reader.read_plane(0, 2, 1, 9).shape == (31, 38)
    with pytest.raises(LimitExceededError, match=r"one plane of \(31, 38\) uint16 needs"):
        Nd2Reader(testdata / CLUSTER, limits=ReadLimits(max_plane_bytes=31 * 38 * 2 - 1))
    with pytest.raises(LimitExceededError, match="declares 60 planes, over the limit of 59"):
        Nd2Reader(testdata / CLUSTER, limits=ReadLimits(max_planes=59))


def test_the_plane_limits_of_an_rgb_file_count_its_samples(tmp_path: Path) -> None:
    planes = np.zeros((2, 1, 20, 24, 3), dtype=np.uint8)
    path = tmp_path / "rgb.nd2"
    write_legacy_nd2(path, planes, calibration_um=0.25, z_step_um=0.5, channel_names=["RGB"])
    with Nd2Reader(path, limits=ReadLimits(max_plane_bytes=20 * 24 * 3, max_planes=2)) as reader:
        assert reader.read_plane(0, 0, 0, 1).shape == (20, 24, 3)
    with pytest.raises(LimitExceededError, match=r"one plane of \(20, 24, 3\) uint8 needs"):
        Nd2Reader(path, limits=ReadLimits(max_plane_bytes=20 * 24 * 3 - 1))
    with pytest.raises(LimitExceededError, match="declares 2 planes, over the limit of 1"):
        Nd2Reader(path, limits=ReadLimits(max_planes=1))


@pytest.mark.parametrize(("height", "width"), [(0, 24), (20, 0)])
def test_a_frame_of_no_rows_or_columns_is_corrupt(tmp_path: Path, height: int, width: int) -> None:
    """The ihdr box of a legacy file declares the frame: a zero extent is a damaged header."""
    path = tmp_path / "empty.nd2"
    planes = np.zeros((2, 1, 20, 24), dtype=np.uint8)
    write_legacy_nd2(path, planes, calibration_um=0.25, z_step_um=0.5, channel_names=["A"])
    data = bytearray(path.read_bytes())
    at = data.index(b"ihdr") + 4
    struct.pack_into(">ii", data, at, height, width)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as caught:
        Nd2Reader(path)
    assert str(caught.value) == f"empty.nd2: ND2 attributes declare a {width}x{height} frame"
    assert caught.value.path == path


def test_a_one_pixel_frame_opens(tmp_path: Path) -> None:
    path = tmp_path / "pixel.nd2"
    planes = np.full((2, 1, 1, 1), 9, dtype=np.uint8)
    write_legacy_nd2(path, planes, calibration_um=0.25, z_step_um=0.5, channel_names=["A"])
    with Nd2Reader(path) as reader:
        assert reader.scenes()[0].shape == (1, 1, 2, 1, 1)
        assert reader.read_plane(0, 0, 0, 1).tolist() == [[9]]
