"""Micro-Manager NDTiff datasets: header, NDTiff.index, layout, reads and metadata (mutation kills).

References: NDTiff's layout as tifffile's ``read_ndtiff_index`` reads it (``tests/synthetic_mm.py``
writes it: header at byte 8, the index's per-image axes JSON, file name and eight int32 fields),
and the reader's documented rules (positions are scenes, other axes at their first value,
channel names in the order they first appear, calibration from the summary else the first
image). Datasets are written by ``write_ndtiff_dataset``; edited ones rewrite its index.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.needs import unavailable
from tests.synthetic_mm import mm_pixels, write_ndtiff_dataset
from zstack_analyzer import (
    CorruptFileError,
    LimitExceededError,
    SceneNotFoundError,
    UnsupportedFormatError,
)
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.ndtiff import (
    NDTIFF_MAGIC,
    SUMMARY_HEADER,
    NdTiffReader,
    _read_summary,
    _value_order,
    parse_index,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

SHAPE = (20, 28)
Entry = tuple[dict[str, Any], str, tuple[int, ...]]


def _index_bytes(entries: list[Entry]) -> bytes:
    out = bytearray()
    for axes, name, fields in entries:
        text = json.dumps(axes).encode()
        out += struct.pack("<I", len(text)) + text
        out += struct.pack("<I", len(name.encode())) + name.encode()
        out += struct.pack("<IiiiiIii", *fields)
    return bytes(out)


def _entries(folder: Path) -> list[Entry]:
    index = folder / "NDTiff.index"
    return parse_index(index.read_bytes(), where=index, max_entries=10**6)


def _rewrite(folder: Path, entries: list[Entry]) -> None:
    (folder / "NDTiff.index").write_bytes(_index_bytes(entries))


def _with_field(entries: list[Entry], k: int, value: int, only: int | None = None) -> list[Entry]:
    out = []
    for i, (axes, name, fields) in enumerate(entries):
        if only is None or i == only:
            fields = (*fields[:k], value, *fields[k + 1 :])
        out.append((axes, name, fields))
    return out


@contextlib.contextmanager
def _refused(kind: type[Exception], path: Path, match: str | None = None) -> Iterator[Any]:
    """``pytest.raises`` that also holds the error to the file it names (``path``)."""
    with pytest.raises(kind, match=match) as info:
        yield info
    assert getattr(info.value, "path", None) == path


def _open_fds() -> int:
    if not os.path.isdir("/proc/self/fd"):
        unavailable("/proc/self/fd (Linux) to count open files")
    return len(os.listdir("/proc/self/fd"))


# ----------------------------------------------------------------------------- header
def _stack(tmp_path: Path, header: bytes, summary: bytes, name: str = "s_NDTiffStack.tif") -> Path:
    path = tmp_path / name
    path.write_bytes(b"II*\x00" + b"\x00" * 4 + header + summary)
    return path


def test_sniff_needs_the_little_endian_tiff_and_the_magic_at_byte_8() -> None:
    head = b"II*\x00" + b"\x00" * 4 + struct.pack("<I", NDTIFF_MAGIC)
    assert NdTiffReader.sniff(head + b"\x00" * 4, None)  # type: ignore[arg-type]
    assert not NdTiffReader.sniff(head, None)  # 12 bytes: too short # type: ignore[arg-type]
    assert not NdTiffReader.sniff(head[:15], None)  # type: ignore[arg-type]
    assert not NdTiffReader.sniff(b"MM\x00*" + head[4:] + b"\x00" * 4, None)  # type: ignore[arg-type]
    other = b"II*\x00" + b"\x00" * 4 + struct.pack("<I", NDTIFF_MAGIC + 1) + b"\x00" * 4
    assert not NdTiffReader.sniff(other, None)  # type: ignore[arg-type]


def test_v2_and_v3_summaries_are_read(tmp_path: Path) -> None:
    text = b'{"Prefix": "a", "n": 1}'
    v2 = _stack(tmp_path, struct.pack("<4I", NDTIFF_MAGIC, 2, SUMMARY_HEADER, len(text)), text)
    assert _read_summary(v2, 1000) == ({"Prefix": "a", "n": 1}, 2)
    v3 = _stack(
        tmp_path, struct.pack("<5I", NDTIFF_MAGIC, 3, 1, SUMMARY_HEADER, len(text)), text, "b.tif"
    )
    assert _read_summary(v3, len(text)) == ({"Prefix": "a", "n": 1}, 3)  # exactly the limit
    with _refused(CorruptFileError, v3, match="more than the file or the metadata limit"):
        _read_summary(v3, len(text) - 1)
    # The summary running exactly to the end of the file is whole; one byte more is not.
    assert _read_summary(v2, 10**6)[0] == {"Prefix": "a", "n": 1}
    cut = _stack(
        tmp_path, struct.pack("<4I", NDTIFF_MAGIC, 2, SUMMARY_HEADER, len(text) + 1), text, "c.tif"
    )
    with _refused(CorruptFileError, cut, match=r"c\.tif: the NDTiff summary claims 24 bytes"):
        _read_summary(cut, 10**6)


def test_broken_headers_and_summaries_are_corrupt(tmp_path: Path) -> None:
    magic = struct.pack("<I", NDTIFF_MAGIC)
    short = _stack(tmp_path, magic + struct.pack("<2I", 3, 0), b"", "short.tif")  # 20 bytes
    with _refused(CorruptFileError, short, match=r"short\.tif: not an NDTiff stack"):
        _read_summary(short, 1000)
    exact = _stack(tmp_path, magic + struct.pack("<3I", 2, SUMMARY_HEADER, 2), b"{}", "exact.tif")
    assert _read_summary(exact, 1000) == ({}, 2)  # 24 + 2 bytes: a v2 header is enough
    plain = tmp_path / "plain.tif"
    plain.write_bytes(b"II*\x00" + b"\x00" * 30)
    with _refused(CorruptFileError, plain, match="no NDTiff header at byte 8"):
        _read_summary(plain, 1000)
    none = _stack(tmp_path, struct.pack("<5I", NDTIFF_MAGIC, 3, 0, 7, 2), b"{}", "none.tif")
    with _refused(CorruptFileError, none, match=r"none\.tif: the NDTiff header has no summary"):
        _read_summary(none, 1000)
    # A v3 header cut after the summary marker (24 bytes): no length to read.
    v3cut = _stack(tmp_path, struct.pack("<4I", NDTIFF_MAGIC, 3, 0, SUMMARY_HEADER), b"", "v3.tif")
    with _refused(CorruptFileError, v3cut, match="no summary block"):
        _read_summary(v3cut, 1000)
    for name, body in (("json.tif", b"{nope"), ("utf.tif", b"\xff\xfe"), ("list.tif", b"[1]")):
        path = _stack(
            tmp_path, struct.pack("<4I", NDTIFF_MAGIC, 2, SUMMARY_HEADER, len(body)), body, name
        )
        expected = "is not a JSON object" if name == "list.tif" else "is not valid JSON"
        with _refused(CorruptFileError, path, match=rf"{name}: the NDTiff summary {expected}"):
            _read_summary(path, 1000)


# ----------------------------------------------------------------------------- index
def test_the_index_parses_to_axes_names_and_signed_fields(tmp_path: Path) -> None:
    where = tmp_path / "NDTiff.index"
    entries: list[Entry] = [
        ({"time": 0, "channel": "DAPI"}, "a_NDTiffStack.tif", (2**31 + 5, 28, 20, 1, 0, 9, 12, 0)),
        ({"z": -3}, "é_NDTiffStack.tif", (7, -1, 2, 3, 4, 2**32 - 1, -5, 6)),
    ]
    data = _index_bytes(entries)
    assert parse_index(data, where=where, max_entries=2) == entries
    with _refused(LimitExceededError, where, match=r"NDTiff\.index lists over 1 images"):
        parse_index(data, where=where, max_entries=1)
    with _refused(CorruptFileError, where, match=r"NDTiff\.index lists no images"):
        parse_index(b"", where=where, max_entries=5)
    head, tail = _index_bytes(entries[:1]), _index_bytes(entries[1:])
    for cut in (1, 3, 5, 10, 20, 30, len(tail) - 32, len(tail) - 1):
        with _refused(CorruptFileError, where, match="entry 1 is cut short or unreadable"):
            parse_index(head + tail[:cut], where=where, max_entries=5)
    first = _index_bytes(entries[:1])
    with _refused(CorruptFileError, where, match=r"^NDTiff\.index: NDTiff\.index entry 0 is cut"):
        parse_index(first[:-1], where=where, max_entries=5)
    bad_utf = first.replace(b"a_NDTiffStack", b"\xff_NDTiffStack")
    with _refused(CorruptFileError, where, match="entry 0 is cut short or unreadable"):
        parse_index(bad_utf, where=where, max_entries=5)
    bad_json = first.replace(b'"time"', b"'time'")
    with _refused(CorruptFileError, where, match="entry 0 is cut short"):
        parse_index(bad_json, where=where, max_entries=5)


def test_index_entries_without_axes_or_with_a_path_are_corrupt(tmp_path: Path) -> None:
    where = tmp_path / "NDTiff.index"
    fields = (0, 28, 20, 1, 0, 0, 0, 0)
    good: Entry = ({"z": 0}, "a.tif", fields)
    listed = _index_bytes([good]) + _index_bytes([good]).replace(b'{"z": 0}', b"[1, 2]  ")
    with _refused(CorruptFileError, where, match="entry 1 has no axes object"):
        parse_index(listed, where=where, max_entries=5)
    for name in ("", "a/b.tif", "a\\b.tif", ".", ".."):
        data = _index_bytes([good, ({"z": 1}, name, fields)])
        with _refused(CorruptFileError, where, match="which is not a file beside it") as info:
            parse_index(data, where=where, max_entries=5)
        assert repr(name) in str(info.value)
    assert parse_index(_index_bytes([({}, "...", fields)]), where=where, max_entries=1)


def test_axis_values_order_numbers_by_value_and_names_by_appearance() -> None:
    assert _value_order([3, -1, 3, 0]) == {-1: 0, 0: 1, 3: 2}
    assert _value_order(["GFP", "DAPI", "GFP"]) == {"GFP": 0, "DAPI": 1}
    assert _value_order([True, False]) == {True: 0, False: 1}  # bools are not numbers here
    assert _value_order([2, "a", 1]) == {2: 0, "a": 1, 1: 2}


# ----------------------------------------------------------------------------- open
def test_pixel_types_give_their_dtype_and_significant_bits(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2)
    original = _entries(tmp_path)
    for code, bits in ((1, None), (3, 10), (4, 12), (5, 14), (6, 11)):
        _rewrite(tmp_path, _with_field(original, 3, code))
        with NdTiffReader(files[0]) as reader:
            md = reader.metadata()
            assert (md.dtype, md.significant_bits) == ("uint16", bits)
            np.testing.assert_array_equal(
                reader.read_plane(0, 0, 0, 1), mm_pixels(0, 1, 0, 0, SHAPE, "uint16")
            )
    _rewrite(tmp_path, _with_field(original, 3, 0))
    with NdTiffReader(files[0]) as reader:
        md = reader.metadata()
        assert (md.dtype, md.significant_bits) == ("uint8", None)
        at = original[1][2][0]
        expected = np.frombuffer(files[0].read_bytes()[at : at + 20 * 28], np.uint8)
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0, 1), expected.reshape(SHAPE))
    _rewrite(tmp_path, _with_field(original, 3, 2))
    with _refused(UnsupportedFormatError, files[0], match="8-bit RGB images are not supported"):
        NdTiffReader(files[0])
    _rewrite(tmp_path, _with_field(original, 3, 7))
    with _refused(CorruptFileError, files[0], match="NDTiff pixel type 7 is unknown"):
        NdTiffReader(files[0])
    _rewrite(tmp_path, _with_field(original, 4, 1))
    with _refused(UnsupportedFormatError, files[0], match="NDTiff compression 1 is not supported"):
        NdTiffReader(files[0])


def test_images_must_agree_in_size_type_and_compression(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2, split=1)
    original = _entries(tmp_path)
    for k, value in ((1, 27), (2, 19), (3, 3), (4, 1)):
        _rewrite(tmp_path, _with_field(original, k, value, only=1))
        with _refused(CorruptFileError, files[0], match=r"images of acq_NDTiffStack_1\.tif differ"):
            NdTiffReader(files[0])
    # The metadata fields (offset, length, compression) may differ.
    _rewrite(tmp_path, _with_field(original, 7, 3, only=1))
    with NdTiffReader(files[0]) as reader:
        assert reader.scenes()[0].size_z == 2


def test_empty_sizes_and_the_index_limit(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=4)
    original = _entries(tmp_path)
    for k in (1, 2):
        for value in (0, -3):
            _rewrite(tmp_path, _with_field(original, k, value))
            with _refused(CorruptFileError, files[0]):
                NdTiffReader(files[0])
    _rewrite(tmp_path, original)
    size = (tmp_path / "NDTiff.index").stat().st_size
    with NdTiffReader(files[0], limits=ReadLimits(max_metadata_bytes=size)) as reader:
        assert reader.scenes()[0].size_z == 4
    with _refused(LimitExceededError, files[0], match=r"NDTiff\.index is over the metadata limit"):
        NdTiffReader(files[0], limits=ReadLimits(max_metadata_bytes=size - 1))
    with _refused(LimitExceededError, tmp_path / "NDTiff.index", match="lists over 3 images"):
        NdTiffReader(files[0], limits=ReadLimits(max_planes=3))
    # The summary counts against the same limit.
    summary = _read_summary(files[0], 10**6)[0]
    small = len(json.dumps(summary)) - 1
    with _refused(CorruptFileError, files[0], match="summary claims"):
        NdTiffReader(files[0], limits=ReadLimits(max_metadata_bytes=small))


def test_plane_limits_count_positions_times_frames(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, positions=3, frames=2, channels=1, slices=1)
    # Five of the six images listed: six planes declared (3 positions x 2 frames).
    _rewrite(tmp_path, _entries(tmp_path)[:5])
    with NdTiffReader(files[0], limits=ReadLimits(max_planes=6)) as reader:
        assert len(reader.scenes()) == 3
        assert reader.read_plane(2, 1, 0, 0).max() == 0
    with _refused(LimitExceededError, files[0]):
        NdTiffReader(files[0], limits=ReadLimits(max_planes=5))
    plane = SHAPE[0] * SHAPE[1] * 2
    with NdTiffReader(files[0], limits=ReadLimits(max_plane_bytes=plane)) as reader:
        np.testing.assert_array_equal(
            reader.read_plane(1, 1, 0, 0), mm_pixels(0, 0, 1, 1, SHAPE, "uint16")
        )
    with _refused(LimitExceededError, files[0]):
        NdTiffReader(files[0], limits=ReadLimits(max_plane_bytes=plane - 1))


def test_extents_are_checked_against_each_file(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=3, split=1)
    original = _entries(tmp_path)
    plane = SHAPE[0] * SHAPE[1] * 2
    last = files[2].stat().st_size
    # The last image moved to end exactly at its file's end: fine; one byte later: truncated.
    _rewrite(tmp_path, _with_field(original, 0, last - plane, only=2))
    with NdTiffReader(files[0]) as reader:
        raw = files[2].read_bytes()[last - plane :]
        np.testing.assert_array_equal(
            reader.read_plane(0, 0, 0, 2), np.frombuffer(raw, "<u2").reshape(SHAPE)
        )
    _rewrite(tmp_path, _with_field(original, 0, last - plane + 1, only=2))
    with _refused(CorruptFileError, files[0]) as info:
        NdTiffReader(files[0])
    assert "image 2 of NDTiff.index lies past the end of acq_NDTiffStack_2.tif" in str(info.value)
    _rewrite(tmp_path, original)
    files[1].unlink()
    with pytest.raises(
        CorruptFileError,
        match=r"image 1 of NDTiff\.index lies past the end of acq_NDTiffStack_1\.tif \(or the file is missing\)",
    ):
        NdTiffReader(files[0])


def test_a_missing_plane_reads_as_zeros_with_a_warning(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=2, channels=2, slices=2)
    entries = _entries(tmp_path)
    kept = [
        e
        for e in entries
        if not (e[0]["time"] == 1 and e[0]["channel"] == "GFP" and e[0]["z"] == 1)
    ]
    _rewrite(tmp_path, kept)
    with NdTiffReader(files[0]) as reader:
        assert reader.read_plane(0, 1, 1, 1).tolist() == np.zeros(SHAPE, np.uint16).tolist()
        assert reader.read_plane(0, 1, 1, 1).dtype == np.uint16
        np.testing.assert_array_equal(
            reader.read_plane(0, 1, 1, 0), mm_pixels(1, 0, 1, 0, SHAPE, "uint16")
        )
        region = reader.read_region(0, 1, 1, 1, (2, 5), (3, 9))
        assert (region.shape, region.dtype, int(region.max())) == ((3, 6), np.uint16, 0)
        warnings = reader.metadata().warnings
        assert warnings == ["1 of 8 planes are not in NDTiff.index: they read as zeros"]
        plane = reader.metadata()
        assert plane.time_interval_s == pytest.approx(1.0)


def test_other_axes_are_read_at_their_first_value(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2)
    entries = _entries(tmp_path)
    plane = SHAPE[0] * SHAPE[1] * 2
    # Every image gets row 0; a copy of each as row 1 points at the other z's pixels.
    tiled: list[Entry] = []
    for axes, name, _ in entries:
        tiled.append(({**axes, "row": 1}, name, entries[1 - axes["z"]][2]))
    for axes, name, fields in entries:
        tiled.append(({**axes, "row": 0, "column": 0}, name, fields))
    _rewrite(tmp_path, tiled)
    with NdTiffReader(files[0]) as reader:
        info = reader.scenes()[0]
        assert info.extra_dims == {"row": 2}
        assert (info.size_t, info.size_c, info.size_z) == (1, 1, 2)
        for z in (0, 1):
            np.testing.assert_array_equal(
                reader.read_plane(0, 0, 0, z), mm_pixels(0, z, 0, 0, SHAPE, "uint16")
            )
        assert reader.metadata().warnings == [
            "axes {'row': 2} beyond TCZ and position are read at their first value"
        ]
        assert reader.raw_metadata()["axes"] == {
            "time": [0],
            "channel": ["DAPI"],
            "z": [0, 1],
            "row": [0, 1],
            "column": [0],
        }
    del plane


def test_positions_are_scenes_named_by_stage_labels(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, positions=3, frames=1, channels=1, slices=1)
    raw = bytearray(files[0].read_bytes())
    summary, _ = _read_summary(files[0], 10**6)
    labels = {"StagePositions": [{"Label": "Pos-A"}, "x", {"Label": ""}]}
    text = json.dumps({**summary, **labels}).encode()
    old = json.dumps(summary).encode()
    at = raw.index(old)
    # Same length: pad the new summary's JSON with spaces to the old one's length, or grow it.
    pad = len(old) - len(text)
    assert pad < 0
    raw[at : at + len(old)] = text
    struct.pack_into("<I", raw, 24, len(text))
    shift = len(text) - len(old)
    files[0].write_bytes(bytes(raw))
    entries = _entries(tmp_path)
    _rewrite(
        tmp_path, [(a, n, (f[0] + shift, *f[1:5], f[5] + shift, *f[6:])) for a, n, f in entries]
    )
    # Moving the pixels moves the IFD offsets too: the reader never reads IFDs.
    with NdTiffReader(files[0]) as reader:
        assert [s.name for s in reader.scenes()] == ["Pos-A", None, None]
        assert [s.index for s in reader.scenes()] == [0, 1, 2]
        for p in range(3):
            np.testing.assert_array_equal(
                reader.read_plane(p, 0, 0, 0), mm_pixels(0, 0, 0, p, SHAPE, "uint16")
            )
        assert reader.metadata(2).scene_index == 2


# ----------------------------------------------------------------------------- reads
def test_regions_are_clamped_and_cut_from_the_rows(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=2, slices=2, split=3)
    expected = mm_pixels(1, 1, 0, 0, SHAPE, "uint16")
    with NdTiffReader(files[0]) as reader:
        assert reader.region_grid(0) == (1, 28)
        assert reader.region_grid(0, 1) is None
        region = reader.read_region(0, 0, 1, 1, (-4, 7), (-2, 40))
        np.testing.assert_array_equal(region, expected[:7, :])
        assert region.flags.c_contiguous
        np.testing.assert_array_equal(
            reader.read_region(0, 0, 1, 1, (13, 20), (5, 6)), expected[13:, 5:6]
        )
        assert reader.read_region(0, 0, 1, 1, (6, 6), (2, 9)).shape == (0, 7)
        assert reader.read_region(0, 0, 1, 1, (8, 5), (2, 9)).shape == (0, 7)
        with _refused(
            SceneNotFoundError, files[0], match="pyramid level 1 does not exist; it has 1"
        ):
            reader.read_region(0, 0, 0, 0, (0, 1), (0, 1), level=1)
        with _refused(SceneNotFoundError, files[0], match="level 2 does not exist"):
            reader.to_dask(0, 2)
        with pytest.raises(SceneNotFoundError):
            reader.read_region(0, 0, 2, 0, (0, 1), (0, 1))
        lazy = reader.to_dask(0)
        assert lazy.shape == (1, 2, 2, 20, 28)
        np.testing.assert_array_equal(lazy[0, 1, 1].compute(), expected)
    with pytest.raises(ValueError, match="the reader is closed"):
        reader.read_region(0, 0, 1, 1, (0, 2), (0, 2))


def test_a_file_cut_after_open_is_a_typed_error(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2, split=1)
    with NdTiffReader(files[0]) as reader:
        files[1].write_bytes(files[1].read_bytes()[:-100])
        with _refused(
            CorruptFileError,
            files[0],
            match=r"plane t=0 c=0 z=1 is cut short in acq_NDTiffStack_1\.tif",
        ):
            reader.read_plane(0, 0, 0, 1)
        np.testing.assert_array_equal(
            reader.read_plane(0, 0, 0, 0), mm_pixels(0, 0, 0, 0, SHAPE, "uint16")
        )


def test_one_handle_per_stack_file_closed_with_the_reader(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=2, channels=2, slices=3, split=6)
    before = _open_fds()
    reader = NdTiffReader(files[0])
    for _ in range(3):
        for t in range(2):
            for c in range(2):
                for z in range(3):
                    reader.read_plane(0, t, c, z)
        reader.metadata()
    assert _open_fds() - before == 2  # two stack files, each opened once
    reader.close()
    assert _open_fds() == before


# ----------------------------------------------------------------------------- metadata
def test_metadata_from_the_summary_and_the_images(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=3, channels=3, slices=2, split=7, z_offset=4)
    with NdTiffReader(files[2]) as reader:
        md = reader.metadata()
        assert (md.filename, md.file_format) == ("acq_NDTiffStack_2.tif", "NDTiff")
        assert (md.size_t, md.size_c, md.size_z, md.size_y, md.size_x) == (3, 3, 2, 20, 28)
        assert (md.physical_size.x_um, md.physical_size.y_um) == (0.325, 0.325)
        assert md.physical_size.z_um == 0.8
        assert [c.name for c in md.channels] == ["DAPI", "GFP", "RFP"]
        assert [c.index for c in md.channels] == [0, 1, 2]
        assert [c.exposure_ms for c in md.channels] == [5.0, 10.0, 15.0]
        assert [c.color for c in md.channels] == [None, None, None]
        assert md.time_interval_s == pytest.approx(1.0)
        assert md.acquired_at == datetime.fromisoformat("2024-05-06T07:08:09.010+00:00")
        assert md.acquired_at_local is None
        assert (md.microscope.software, md.microscope.software_version) == (
            "Micro-Manager",
            "2.0.3",
        )
        assert md.significant_bits is None
        assert md.warnings == []
        assert md.provenance == {
            "sizes": "NDTiff.index axes (time, channel, z, position)",
            "physical_size.x_um": "NDTiff summary PixelSize_um (or image PixelSizeUm)",
            "physical_size.y_um": "NDTiff summary PixelSize_um (or image PixelSizeUm)",
            "physical_size.z_um": "NDTiff summary z-step_um",
            "channels[].name": "NDTiff.index channel axis values (else summary ChNames)",
            "channels[].exposure_ms": "NDTiff image metadata Exposure-ms",
            "time_interval_s": "NDTiff image metadata ElapsedTime-ms (first to last frame)",
            "acquired_at": "NDTiff summary StartTime (with its UTC offset)",
        }
        vendor = md.vendor_metadata
        assert vendor["ndtiff_major_version"] == 3
        assert vendor["files"] == [p.name for p in files]
        assert vendor["z_values"] == [4, 5]
        assert vendor["first_image"] == {"Exposure-ms": 5.0, "ElapsedTime-ms": 0.0}
        assert vendor["summary"]["Prefix"] == "acq"
        # A copy each time: changing one does not change the next.
        md.channels[0].name = "changed"
        assert reader.metadata().channels[0].name == "DAPI"
        raw = reader.raw_metadata()
        assert raw["files"] == [str(p) for p in files]
        assert raw["summary"]["PixelSize_um"] == 0.325
        assert raw["axes"] == {"time": [0, 1, 2], "channel": ["DAPI", "GFP", "RFP"], "z": [4, 5]}
        with pytest.raises(SceneNotFoundError):
            reader.metadata(1)


def _resummarise(path: Path, update: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
    """Rewrite a stack's summary in place (the new JSON padded with spaces to the old length)."""
    raw = bytearray(path.read_bytes())
    summary, _ = _read_summary(path, 10**6)
    old = json.dumps(summary).encode()
    summary = {k: v for k, v in {**summary, **update}.items() if k not in drop}
    new = json.dumps(summary).encode()
    assert len(new) <= len(old), "the new summary must fit in the old one's bytes"
    at = raw.index(old)
    raw[at : at + len(old)] = new + b" " * (len(old) - len(new))
    path.write_bytes(bytes(raw))


def _rejson(path: Path, entries: list[Entry], i: int, value: bytes) -> None:
    """Overwrite image ``i``'s JSON metadata (the new bytes padded with spaces)."""
    raw = bytearray(path.read_bytes())
    at, length = entries[i][2][5], entries[i][2][6]
    assert len(value) <= length
    raw[at : at + length] = value + b" " * (length - len(value))
    path.write_bytes(bytes(raw))


def test_metadata_fallbacks_when_the_summary_says_less(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=2, channels=2, slices=1)
    entries = _entries(tmp_path)
    _resummarise(
        files[0],
        {"ChColors": [-16776961, "x"], "StartTime": "2024-05-06 07:08:09.010"},
        drop=("PixelSize_um", "MicroManagerVersion"),
    )
    # Channels by number: names come from ChNames; image 0 states PixelSizeUm.
    _rewrite(
        tmp_path,
        [({**a, "channel": ["DAPI", "GFP"].index(a["channel"]) + 7}, n, f) for a, n, f in entries],
    )
    _rejson(files[0], entries, 0, b'{"PixelSizeUm": 0.5, "ElapsedTime-ms": 10}')
    _rejson(files[0], entries, 1, b'{"Exposure-ms": 0}')  # t=0 c=1
    _rejson(files[0], entries, 2, b'{"ElapsedTime-ms": 510}')  # t=1 c=0
    with NdTiffReader(files[0]) as reader:
        md = reader.metadata()
        assert (md.physical_size.x_um, md.physical_size.y_um) == (0.5, 0.5)
        assert md.physical_size.z_um is None  # one slice: no z step even though stated
        assert "physical_size.z_um" not in md.provenance
        assert [c.name for c in md.channels] == ["DAPI", "GFP"]
        assert [c.color for c in md.channels] == ["#0000FF", None]
        assert [c.exposure_ms for c in md.channels] == [None, None]
        assert md.time_interval_s == pytest.approx(0.5)
        assert md.acquired_at is None
        assert md.acquired_at_local == datetime.fromisoformat("2024-05-06T07:08:09.010")
        assert md.microscope.software_version is None
        assert (
            md.provenance["physical_size.x_um"]
            == "NDTiff summary PixelSize_um (or image PixelSizeUm)"
        )
        assert any("no UTC offset" in w or "local" in w for w in md.warnings)
        assert reader.raw_metadata()["axes"]["channel"] == [7, 8]


def test_metadata_with_nothing_to_say(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=2, channels=2, slices=2)
    entries = _entries(tmp_path)
    _resummarise(
        files[0],
        {"ChNames": "DAPI", "z-step_um": -1},
        drop=("PixelSize_um", "StartTime", "MicroManagerVersion"),
    )
    _rewrite(
        tmp_path,
        [({**a, "channel": 0 if a["channel"] == "DAPI" else 1}, n, f) for a, n, f in entries],
    )
    for i, (axes, _, _) in enumerate(entries):
        _rejson(files[0], entries, i, b"[1, 2]" if axes["time"] else b"\xff{")
    with NdTiffReader(files[0]) as reader:
        md = reader.metadata()
        assert (md.physical_size.x_um, md.physical_size.y_um, md.physical_size.z_um) == (
            None,
            None,
            None,
        )
        assert [c.name for c in md.channels] == [None, None]
        assert [c.exposure_ms for c in md.channels] == [None, None]
        assert md.time_interval_s is None
        assert (md.acquired_at, md.acquired_at_local) == (None, None)
        assert md.provenance == {"sizes": "NDTiff.index axes (time, channel, z, position)"}
        assert md.vendor_metadata["first_image"] == {}
    # Image metadata lengths of 0 and over 1 MiB are not read; the time runs backwards.
    _rewrite(
        tmp_path,
        [(a, n, (*f[:6], 0 if i == 0 else 2**20 + 1, f[7])) for i, (a, n, f) in enumerate(entries)],
    )
    with NdTiffReader(files[0]) as reader:
        assert reader.metadata().vendor_metadata["first_image"] == {}
    _rewrite(tmp_path, entries)
    _rejson(files[0], entries, 0, b'{"ElapsedTime-ms": 900, "Exposure-ms": 2}')
    _rejson(files[0], entries, 4, b'{"ElapsedTime-ms": 900}')  # t=1 c=0 z=0
    with NdTiffReader(files[0]) as reader:
        md = reader.metadata()
        assert md.time_interval_s is None
        assert [c.exposure_ms for c in md.channels] == [2.0, None]


def test_metadata_json_of_exactly_the_largest_size_is_read(tmp_path: Path) -> None:
    from zstack_analyzer.readers import ndtiff

    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=1)
    entries = _entries(tmp_path)
    length = entries[0][2][6]
    assert length < ndtiff.MAX_PLANE_METADATA
    with NdTiffReader(files[0]) as reader:
        assert reader.metadata().channels[0].exposure_ms == 5.0


# ----------------------------------------------------------------------------- file sets
def test_the_dataset_is_every_stack_and_the_index(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=3, split=1)
    (tmp_path / "other.tif").write_bytes(b"II*\x00")
    (tmp_path / "x_NDTiffStack_9.tif").mkdir()  # a folder is not a member
    found = NdTiffReader.file_set(files[2], ReadLimits())
    assert found is not None
    assert found.main == files[0]
    assert found.names == ("NDTiff.index", *(p.name for p in files))
    assert NdTiffReader.main_for_member(tmp_path / "NDTiff.index") == files[0]
    assert NdTiffReader.main_for_member(files[1]) is None
    odd = tmp_path / "a_stack.tif"  # opened although its name does not match the pattern
    odd.write_bytes(files[0].read_bytes())
    found = NdTiffReader.file_set(odd, ReadLimits())
    assert found is not None
    assert (found.main, "a_stack.tif" in found.names) == (odd, True)
    (tmp_path / "NDTiff.index").unlink()
    found = NdTiffReader.file_set(files[1], ReadLimits())
    assert found is not None
    assert found.names == tuple(p.name for p in files)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "NDTiff.index").write_bytes(b"")
    assert NdTiffReader.main_for_member(empty / "NDTiff.index") is None


def test_too_many_stack_files_are_a_limit(tmp_path: Path) -> None:
    from zstack_analyzer.filesets import MAX_SET_FILES

    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=1)
    (tmp_path / "NDTiff.index").unlink()
    for k in range(1, MAX_SET_FILES):
        (tmp_path / f"acq_NDTiffStack_{k}.tif").touch()
    found = NdTiffReader.file_set(files[0], ReadLimits())
    assert found is not None
    assert len(found.names) == MAX_SET_FILES
    (tmp_path / f"acq_NDTiffStack_{MAX_SET_FILES}.tif").touch()
    with _refused(
        LimitExceededError, tmp_path, match=f"{tmp_path.name}: over 4,096 NDTiff stack files"
    ):
        NdTiffReader.file_set(files[0], ReadLimits())


def test_a_v2_dataset_opens_with_its_summary(tmp_path: Path) -> None:
    """NDTiff v2 (no minor version): the summary header at 16, its length at 20, the JSON at 24.

    The reader took the JSON from byte 20 (the length's bytes), so no v2 dataset opened.
    """
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=2, slices=2)
    raw = bytearray(files[0].read_bytes())
    struct.pack_into("<I", raw, 12, 2)
    files[0].write_bytes(bytes(raw[:16] + raw[20:]))  # the minor version dropped: 4 bytes less
    _rewrite(
        tmp_path, [(a, n, (f[0] - 4, *f[1:5], f[5] - 4, *f[6:])) for a, n, f in _entries(tmp_path)]
    )
    with NdTiffReader(files[0]) as reader:
        md = reader.metadata()
        assert md.vendor_metadata["ndtiff_major_version"] == 2
        assert md.vendor_metadata["summary"]["Prefix"] == "acq"
        assert (md.physical_size.x_um, [c.exposure_ms for c in md.channels]) == (0.325, [5.0, 10.0])
        np.testing.assert_array_equal(
            reader.read_plane(0, 0, 1, 1), mm_pixels(1, 1, 0, 0, SHAPE, "uint16")
        )


def test_index_records_past_the_end_say_which_part(tmp_path: Path) -> None:
    where = tmp_path / "NDTiff.index"
    entry = _index_bytes([({"z": 0}, "a.tif", (0, 28, 20, 1, 0, 0, 0, 0))])
    k = len(b'{"z": 0}')
    for data in (
        entry[: 4 + k - 3],  # the axes JSON cut short
        struct.pack("<I", 2**32 - 1) + entry[4:],  # a length no file holds (unsigned)
    ):
        with _refused(CorruptFileError, where, match=r"\(axes record past the end\)"):
            parse_index(data, where=where, max_entries=5)
    # The data ending right after the axes JSON: the name's length is what is missing.
    with _refused(CorruptFileError, where, match=r"entry 0 is cut short or unreadable \(unpack"):
        parse_index(entry[: 4 + k], where=where, max_entries=5)
    for data in (
        entry[:-1],  # the last field cut
        entry[:-32],  # no fields
        entry[: 4 + k] + struct.pack("<I", 2**32 - 1) + entry[8 + k :],  # a huge name length
        entry[: 4 + k + 4 + 2],  # the name cut
    ):
        with _refused(CorruptFileError, where, match=r"\(file name or fields past the end\)"):
            parse_index(data, where=where, max_entries=5)


def test_header_numbers_are_unsigned(tmp_path: Path) -> None:
    text = b"{}"
    big = 2**32 - 1
    v2 = _stack(tmp_path, struct.pack("<4I", NDTIFF_MAGIC, 2, SUMMARY_HEADER, big), text)
    with _refused(CorruptFileError, v2, match="the NDTiff summary claims 4,294,967,295 bytes"):
        _read_summary(v2, 10**6)
    v3 = _stack(
        tmp_path, struct.pack("<5I", NDTIFF_MAGIC, 3, 0, SUMMARY_HEADER, big), text, "3.tif"
    )
    with _refused(CorruptFileError, v3, match="the NDTiff summary claims 4,294,967,295 bytes"):
        _read_summary(v3, 10**6)
    odd = _stack(tmp_path, struct.pack("<4I", NDTIFF_MAGIC, big, SUMMARY_HEADER, 2), text, "o.tif")
    assert _read_summary(odd, 10**6) == ({}, big)


def test_an_index_that_breaks_the_layout_is_a_typed_error(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2)
    entries = _entries(tmp_path)
    _rewrite(tmp_path, [({**a, "z": [a["z"]]}, n, f) for a, n, f in entries])  # unhashable
    with _refused(CorruptFileError, files[0]) as info:
        NdTiffReader(files[0])
    assert str(info.value).startswith("acq_NDTiffStack.tif: invalid NDTiff dataset: unhashable")
    assert info.value.detail is not None
    assert info.value.detail.startswith("TypeError(")


def test_a_one_pixel_wide_dataset_opens(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2, shape=(3, 1))
    with NdTiffReader(files[0]) as reader:
        assert reader.scenes()[0].shape[-2:] == (3, 1)
        np.testing.assert_array_equal(
            reader.read_plane(0, 0, 0, 1), mm_pixels(0, 1, 0, 0, (3, 1), "uint16")
        )


def test_the_first_image_is_checked_against_its_file_too(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2, split=1)
    entries = _entries(tmp_path)
    size = files[0].stat().st_size
    _rewrite(tmp_path, _with_field(entries, 0, size - SHAPE[0] * SHAPE[1] * 2 + 2, only=0))
    with _refused(CorruptFileError, files[0], match="image 0 of NDTiff.index lies past the end"):
        NdTiffReader(files[0])
    # A one-byte image at offset 0 of a file that is gone is still refused.
    tiny = [(a, n, (0, 1, 1, 0, 0, 0, 0, 0)) for a, n, _ in entries]
    tiny[1] = (tiny[1][0], "gone_NDTiffStack.tif", tiny[1][2])
    _rewrite(tmp_path, tiny)
    with _refused(CorruptFileError, files[0], match="image 1 of NDTiff.index lies past the end"):
        NdTiffReader(files[0])


def test_one_row_and_no_column_regions(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=1)
    expected = mm_pixels(0, 0, 0, 0, SHAPE, "uint16")
    with NdTiffReader(files[0]) as reader:
        np.testing.assert_array_equal(
            reader.read_region(0, 0, 0, 0, (5, 6), (2, 9)), expected[5:6, 2:9]
        )
        assert reader.read_region(0, 0, 0, 0, (5, 5), (2, 2)).shape == (0, 0)
        assert reader.read_region(0, 0, 0, 0, (5, 6), (2, 2)).shape == (1, 0)


def test_defaults_are_the_first_scene_and_dask_names_the_reader(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=2)
    with NdTiffReader(files[0]) as reader:
        assert reader.region_grid() == (1, 28)
        lazy = reader.to_dask()
        assert lazy.name.startswith("ndtiffreader-")
        np.testing.assert_array_equal(
            lazy[0, 0, 1].compute(), mm_pixels(0, 1, 0, 0, SHAPE, "uint16")
        )


def test_image_metadata_of_exactly_one_mebibyte_is_read(tmp_path: Path) -> None:
    from zstack_analyzer.readers.ndtiff import MAX_PLANE_METADATA

    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=1)
    entries = _entries(tmp_path)
    at = files[0].stat().st_size
    text = b'{"Exposure-ms": 7.5}'
    with files[0].open("ab") as fh:
        fh.write(text + b" " * (MAX_PLANE_METADATA - len(text)) + b" ")
    for length, exposure in ((MAX_PLANE_METADATA, 7.5), (MAX_PLANE_METADATA + 1, None)):
        _rewrite(tmp_path, [(a, n, (*f[:5], at, length, f[7])) for a, n, f in entries])
        with NdTiffReader(files[0]) as reader:
            assert reader.metadata().channels[0].exposure_ms == exposure


def test_channel_names_come_from_the_index_before_the_summary(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=2, slices=1)
    _resummarise(files[0], {"ChNames": ["x", "y"]})
    with NdTiffReader(files[0]) as reader:
        assert [c.name for c in reader.metadata().channels] == ["DAPI", "GFP"]


def test_a_dataset_without_channel_and_z_axes(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=2, channels=1, slices=1)
    _rewrite(tmp_path, [({"time": a["time"]}, n, f) for a, n, f in _entries(tmp_path)])
    with NdTiffReader(files[0]) as reader:
        md = reader.metadata()
        assert (md.size_t, md.size_c, md.size_z) == (2, 1, 1)
        assert [c.name for c in md.channels] == ["DAPI"]  # from the summary's ChNames
        assert md.vendor_metadata["z_values"] == []
        np.testing.assert_array_equal(
            reader.read_plane(0, 1, 0, 0), mm_pixels(0, 0, 1, 0, SHAPE, "uint16")
        )


def test_a_stack_without_its_index_names_the_stack(tmp_path: Path) -> None:
    files = write_ndtiff_dataset(tmp_path, frames=1, channels=1, slices=1)
    (tmp_path / "NDTiff.index").unlink()
    with _refused(CorruptFileError, files[0], match=r"NDTiff\.index is not beside it"):
        NdTiffReader(files[0])
