"""Structure checks of the TIFF family on real and damaged files (mutation kills, round 5).

What decides whether a damaged or lying TIFF is refused or read: the values of the first
IFD past the end of the file (every field type, both byte orders, classic and BigTIFF,
with tifffile's own value offsets and byte counts as the reference), the IFD chain, the
extents of the first and last plane of every scene, the bytes a page's segments must hold.
Damaged files are copies of real files of the shared corpus (or of files tifffile writes
here) changed to the byte.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from zstack_analyzer import CorruptFileError, open_image
from zstack_analyzer.readers._tiff_common import TiffPeek, first_ifd_overruns, peek_tiff

if TYPE_CHECKING:
    from pathlib import Path

#: One private tag (>= 32768, as vendors' are) per TIFF field type, each with a value of
#: count values: (code, type, count, value). Counts are chosen so that every value is
#: stored out of line in a classic TIFF (more than 4 bytes), the byte types with 5 bytes:
#: one more than fits in the entry.
_CLASSIC_TAGS: list[tuple[int, int, int, Any]] = [
    (65000, 1, 5, b"abcde"),
    (65001, 2, 5, "abcd"),  # ASCII: 4 characters and the NUL
    (65002, 3, 3, (1, 2, 3)),
    (65003, 4, 2, (1, 2)),
    (65004, 5, 1, (1, 2)),
    (65005, 6, 5, (1, 2, 3, 4, 5)),
    (65006, 7, 5, b"abcde"),
    (65007, 8, 3, (1, 2, 3)),
    (65008, 9, 2, (1, 2)),
    (65009, 10, 1, (1, 2)),
    (65010, 11, 2, (1.0, 2.0)),
    (65011, 12, 1, (1.0,)),
    (65012, 13, 2, (1, 2)),
]

#: The same for a BigTIFF (values of more than 8 bytes out of line), with the 64-bit types.
_BIG_TAGS: list[tuple[int, int, int, Any]] = [
    (65000, 1, 9, b"abcdefghi"),
    (65001, 2, 9, "abcdefgh"),
    (65002, 3, 5, (1, 2, 3, 4, 5)),
    (65003, 4, 3, (1, 2, 3)),
    (65004, 5, 2, (1, 2, 3, 4)),
    (65005, 6, 9, tuple(range(9))),
    (65006, 7, 9, b"abcdefghi"),
    (65007, 8, 5, (1, 2, 3, 4, 5)),
    (65008, 9, 3, (1, 2, 3)),
    (65009, 10, 2, (1, 2, 3, 4)),
    (65010, 11, 3, (1.0, 2.0, 3.0)),
    (65011, 12, 2, (1.0, 2.0)),
    (65012, 13, 3, (1, 2, 3)),
    (65013, 16, 2, (1, 2)),
    (65014, 17, 2, (1, 2)),
    (65015, 18, 2, (1, 2)),
]


def _value_ends(path: Path) -> tuple[dict[int, int], dict[int, int]]:
    """tifffile's view of the first IFD: out-of-line value ends, and inline tags' values."""
    with tifffile.TiffFile(path) as tif:
        inline = 8 if tif.is_bigtiff else 4
        tags = list(tif.pages.first.tags.values())
        ends = {
            tag.code: tag.valueoffset + tag.valuebytecount
            for tag in tags
            if tag.valuebytecount > inline
        }
        inlined = {tag.code: tag.valuebytecount for tag in tags if tag.valuebytecount <= inline}
    return ends, inlined


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_every_field_type_is_measured_to_the_byte(
    tmp_path: Path, bigtiff: bool, byteorder: str
) -> None:
    """Each out-of-line value is whole when the file ends at its last byte, cut one byte
    before; tifffile's value offset and byte count are the reference."""
    path = tmp_path / "types.tif"
    tags = _BIG_TAGS if bigtiff else _CLASSIC_TAGS
    with tifffile.TiffWriter(path, bigtiff=bigtiff, byteorder=byteorder) as tif:
        tif.write(
            np.zeros((4, 5), "uint8"),
            metadata=None,
            extratags=[(code, dtype, count, value, False) for code, dtype, count, value in tags],
        )
    ends, inlined = _value_ends(path)
    assert {code for code, *_ in tags} <= set(ends)  # every private value is out of line
    peek = peek_tiff(path.read_bytes()[:16], path)  # the sniffer sees every tag tifffile sees
    assert peek is not None and peek.tags == frozenset(ends) | frozenset(inlined)
    assert 256 in inlined and 257 in inlined
    with path.open("rb") as fh:
        # nothing stored inline is ever past the end, however short the file
        assert set(first_ifd_overruns(fh, 0)) == set(ends)
        for code, end in ends.items():
            assert code in first_ifd_overruns(fh, end - 1), code
            assert code not in first_ifd_overruns(fh, end), code


def _with_entries(source: Path, target: Path, extra: list[tuple[int, int, int, int]]) -> Path:
    """A copy of ``source`` whose first IFD is rewritten at the end of the file with the
    entries ``extra`` (code, type, count, raw value field) added, in code order.

    Every other byte stays where it was (the first IFD's own values, the pixels, the rest of
    the chain), so the copy reads as the original plus the added tags.
    """
    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        bo, big, ifd = tif.byteorder, tif.is_bigtiff, tif.pages.first.offset
    count_fmt, entry_size, entry_fmt, pointer = (
        ("Q", 20, "HHQQ", "Q") if big else ("H", 12, "HHII", "I")
    )
    (count,) = struct.unpack_from(bo + count_fmt, data, ifd)
    first = ifd + struct.calcsize(count_fmt)
    entries = [
        bytes(data[first + entry_size * i : first + entry_size * (i + 1)]) for i in range(count)
    ]
    entries += [struct.pack(bo + entry_fmt, *entry) for entry in extra]
    entries.sort(key=lambda e: struct.unpack_from(bo + "H", e)[0])
    (next_ifd,) = struct.unpack_from(bo + pointer, data, first + entry_size * count)
    new_ifd = len(data) + len(data) % 2
    data += bytes(new_ifd - len(data))
    struct.pack_into(bo + pointer, data, 8 if big else 4, new_ifd)
    data += struct.pack(bo + count_fmt, len(entries)) + b"".join(entries)
    data += struct.pack(bo + pointer, next_ifd)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    "name", ["tiff/fei-sem-rbc.tif", "imagej/hela-cells.tif", "ome-tiff/largeimg.ome.tiff"]
)
def test_large_inline_values_and_unknown_types_are_no_overrun(
    testdata: Path, tmp_path: Path, name: str
) -> None:
    """A private LONG holding a number larger than the file, and a tag of a type TIFF does not
    define (tifffile skips it), are stored in the entry: the file opens and reads as before."""
    source = testdata / name
    with open_image(source) as image:
        expected = image.read_plane(0, 0, 0, 0)
    big = 0xF000_0000
    with tifffile.TiffFile(source) as tif:
        wide = 16 if tif.is_bigtiff else 4  # LONG8 fills a BigTIFF entry, LONG a classic one
    path = _with_entries(
        source, tmp_path / source.name, [(65100, wide, 1, big), (65101, 19, 3, big)]
    )
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        assert tags[65100].value == big and 65101 not in tags  # tifffile: kept, and skipped
    with path.open("rb") as fh:
        assert first_ifd_overruns(fh, path.stat().st_size) == []
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), expected)


@pytest.mark.parametrize("name", ["tiff/fei-sem-rbc.tif", "imagej/hela-cells.tif"])
def test_a_value_at_an_offset_beyond_2_gib_is_past_the_end(
    testdata: Path, tmp_path: Path, name: str
) -> None:
    """An out-of-line value whose offset has its top bit set (an unsigned offset, far past
    this file's end) is refused at open, with its tag number as TIFF counts it."""
    source = testdata / name
    path = _with_entries(source, tmp_path / source.name, [(65100, 2, 16, 0x9000_0000)])
    with pytest.raises(CorruptFileError, match=r"tags \[65100\] of the first IFD lie past the end"):
        open_image(path)


# --------------------------------------------------------------------------- series shapes
def test_volumetric_tiles_are_refused_with_their_axes(tmp_path: Path) -> None:
    path = tmp_path / "vol.tif"
    volume = np.arange(8 * 16 * 16, dtype="uint8").reshape(8, 16, 16)
    tifffile.imwrite(
        path, volume, volumetric=True, tile=(4, 16, 16), photometric="minisblack", metadata=None
    )
    with pytest.raises(
        CorruptFileError,
        match=r"vol\.tif: invalid TIFF structure: pages with axes 'ZYX' \(volumetric tiles\) "
        "are not supported",
    ):
        open_image(path)


# --------------------------------------------------------------------------- planes in one IFD
def test_stk_reads_hold_the_bytes_they_read_and_name_the_plane(
    testdata: Path, tmp_path: Path
) -> None:
    """MetaMorph's movie.stk (2 planes of 20 x 20 uint16 in one IFD): a plane holds its 800
    bytes of decode budget, a band of rows twice its bytes (read, then converted); over the
    block cap the error names the file and the plane."""
    from zstack_analyzer.budget import DecodeBudget, decode_scope
    from zstack_analyzer.errors import LimitExceededError

    path = testdata / "tiff" / "movie.stk"
    with tifffile.TiffFile(path) as tif:
        reference = tif.series[0].asarray()
    assert reference.shape == (2, 20, 20)
    with open_image(path) as image:
        budget = DecodeBudget()
        with decode_scope(budget):
            plane = image.read_plane(0, 1, 0, 0)
        assert plane.dtype == np.uint16 and budget.peak == 800
        np.testing.assert_array_equal(plane, reference[1])
        budget = DecodeBudget()
        with decode_scope(budget):
            band = image.read_region(0, 1, 0, 0, (3, 11), (2, 9))
        assert band.dtype == np.uint16 and budget.peak == 2 * 8 * 40
        np.testing.assert_array_equal(band, reference[1, 3:11, 2:9])
        with decode_scope(DecodeBudget(block_bytes=2 * 8 * 40)):
            image.read_region(0, 1, 0, 0, (3, 11), (2, 9))  # exactly at the cap
        with (
            decode_scope(DecodeBudget(block_bytes=2 * 8 * 40 - 1)),
            pytest.raises(LimitExceededError, match=r"^movie\.stk: plane 1 of IFD 0: ") as info,
        ):
            image.read_region(0, 1, 0, 0, (3, 11), (2, 9))
        assert info.value.path == path
        with (
            decode_scope(DecodeBudget(block_bytes=799)),
            pytest.raises(LimitExceededError, match=r"^movie\.stk: plane 1 of IFD 0: ") as info,
        ):
            image.read_plane(0, 1, 0, 0)
        assert info.value.path == path


def test_planes_in_one_compressed_ifd_are_refused_when_read(testdata: Path, tmp_path: Path) -> None:
    """movie.stk with its Compression tag set to deflate: tifffile gives its series no data
    offset, so the second plane cannot be found by offset; every read is refused."""
    source = testdata / "tiff" / "movie.stk"
    with tifffile.TiffFile(source) as tif:
        where = tif.pages.first.tags["Compression"].valueoffset
    data = bytearray(source.read_bytes())
    struct.pack_into("<H", data, where, 8)
    path = tmp_path / "deflated.stk"
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].dataoffset is None
    with open_image(path) as image:
        for read in (
            lambda: image.read_plane(0, 1, 0, 0),
            lambda: image.read_region(0, 0, 0, 0, (2, 5), (0, 4)),
        ):
            with pytest.raises(
                CorruptFileError,
                match=r"^deflated\.stk: several planes in one compressed IFD are not supported$",
            ) as info:
                read()
            assert info.value.path == path


def test_stk_planes_moved_past_the_end_are_refused_at_open(testdata: Path, tmp_path: Path) -> None:
    """movie.stk's strip offset moved so that its second plane ends one byte past the end of
    the file: refused at open with the file's path; one byte earlier it opens."""
    source = testdata / "tiff" / "movie.stk"
    with tifffile.TiffFile(source) as tif:
        where = tif.pages.first.tags["StripOffsets"].valueoffset
    data = bytearray(source.read_bytes())
    size = len(data)
    path = tmp_path / "moved.stk"
    struct.pack_into("<I", data, where, size - 1600)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.scenes()[0].size_t == 2
    struct.pack_into("<I", data, where, size - 1599)
    path.write_bytes(bytes(data))
    with pytest.raises(
        CorruptFileError,
        match=rf"^moved\.stk: the planes of scene 0 end at byte {size + 1:,}, past the end of "
        rf"the file \({size:,} bytes\); the file is truncated$",
    ) as info:
        open_image(path)
    assert info.value.path == path


# --------------------------------------------------------------------------- sniffing
@pytest.mark.parametrize("bigtiff", [False, True])
def test_a_description_filling_the_entry_is_read_inline(tmp_path: Path, bigtiff: bool) -> None:
    """A description of exactly 4 bytes (8 in a BigTIFF), its NUL included, sits in the entry
    itself; the tags after it are still seen."""
    text = "abcdefg" if bigtiff else "abc"
    path = tmp_path / "inline.tif"
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(
            np.zeros((4, 5), "uint8"),
            description=text,
            metadata=None,
            extratags=[(305, 2, 0, "soft", True), (65000, 3, 1, 7, True)],
        )
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["ImageDescription"]
        assert tag.valuebytecount == (8 if bigtiff else 4) and tag.value == text
        codes = set(tif.pages.first.tags.keys())
    peek = peek_tiff(path.read_bytes()[:16], path)
    assert peek is not None
    assert peek.description_head == text.encode() + b"\0"
    assert peek.tags == codes and {305, 65000} <= peek.tags


@pytest.mark.parametrize("dtype", [1, 7])
def test_an_imagej_description_stored_as_bytes_is_sniffed(
    testdata: Path, tmp_path: Path, dtype: int
) -> None:
    """hela-cells.tif with its ImageDescription typed BYTE or UNDEFINED instead of ASCII: the
    header is the same bytes, still an ImageJ header."""
    source = testdata / "imagej" / "hela-cells.tif"
    with tifffile.TiffFile(source) as tif:
        ifd, bo = tif.pages.first.offset, tif.byteorder
    data = bytearray(source.read_bytes())
    (count,) = struct.unpack_from(bo + "H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack_from(bo + "H", data, at)[0] == 270:
            struct.pack_into(bo + "H", data, at + 2, dtype)
    path = tmp_path / f"bytes{dtype}.tif"
    path.write_bytes(bytes(data))
    peek = peek_tiff(bytes(data[:16]), path)
    assert peek is not None and peek.is_imagej
    assert peek.description_head.startswith(b"ImageJ=1.")


def test_a_first_ifd_past_2_gib_is_sniffed_and_read(testdata: Path, tmp_path: Path) -> None:
    """ImageJ writes its IFDs after the pixels, so a classic TIFF over 2 GiB has its first IFD
    (and its description) past offset 2**31: offsets are unsigned. A sparse copy of
    5channel.tif with its first IFD and description moved there is still sniffed as ImageJ,
    opens, and reads as the original."""
    source = testdata / "imagej" / "5channel.tif"
    with open_image(source) as image:
        expected = [image.read_plane(0, 0, c, 0) for c in range(5)]
    with tifffile.TiffFile(source) as tif:
        bo, ifd = tif.byteorder, tif.pages.first.offset
        description = tif.pages.first.tags["ImageDescription"]
        text_at, text_len = description.valueoffset, description.valuebytecount
    data = source.read_bytes()
    (count,) = struct.unpack_from(bo + "H", data, ifd)
    block = bytearray(data[ifd : ifd + 2 + 12 * count + 4])
    new_ifd = 0x8000_0000 + 16
    new_text = new_ifd + len(block)
    for i in range(count):
        if struct.unpack_from(bo + "H", block, 2 + 12 * i)[0] == 270:
            struct.pack_into(bo + "I", block, 2 + 12 * i + 8, new_text)
    head = bytearray(data)
    struct.pack_into(bo + "I", head, 4, new_ifd)
    path = tmp_path / "past2gib.tif"
    with path.open("wb") as fh:  # sparse: the gap takes no disk
        fh.write(head)
        fh.seek(new_ifd)
        fh.write(bytes(block) + data[text_at : text_at + text_len])
    peek = peek_tiff(bytes(head[:16]), path)
    assert peek is not None and peek.is_imagej
    with path.open("rb") as fh:
        assert first_ifd_overruns(fh, path.stat().st_size) == []
    with open_image(path) as image:
        assert image.format_name == "ImageJ TIFF"
        for c in range(5):
            np.testing.assert_array_equal(image.read_plane(0, 0, c, 0), expected[c])


# --------------------------------------------------------------------------- calibration, axes, grids
def test_72_pixels_per_centimetre_is_a_calibration(tmp_path: Path) -> None:
    """Only an inch resolution of 72 or 96 is a screen default; 72 pixels a centimetre is
    138.9 µm a pixel (tifffile's XResolution and unit as the reference)."""
    from zstack_analyzer.readers._tiff_common import resolution_um

    path = tmp_path / "cm72.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 4), "uint8"),
        metadata=None,
        resolution=((72, 1), (96, 1)),
        resolutionunit="CENTIMETER",
    )
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.tags["XResolution"].value == (72, 1) and page.tags["ResolutionUnit"].value == 3
        assert resolution_um(page) == (pytest.approx(1e4 / 72), pytest.approx(1e4 / 96), None)


def test_a_generic_and_a_shaped_axis_both_named_z(tmp_path: Path) -> None:
    """A series with axes Q and I (both renamed to Z by the ImageJ/OME/STK readers): the first
    becomes Z, the second stays an extra dimension (two Z axes would overwrite each other)."""
    from zstack_analyzer.readers._tiff_common import series_plan

    path = tmp_path / "qi.tif"
    data = np.arange(3 * 2 * 4 * 5, dtype="uint16").reshape(3, 2, 4, 5)
    tifffile.imwrite(path, data, metadata={"axes": "QIYX"})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "QIYX"
        plan, extra = series_plan(tif.series[0], index=0, rename={"I": "Z", "Q": "Z"})
    assert (plan.info.size_z, extra) == (3, {"I": 2})
    assert plan.locate(0, 0, 2) == (4, 0)  # z = 2, I = 0: page 2 * 2


def test_two_samples_are_the_last_axis_of_the_shape(tmp_path: Path) -> None:
    samples = (np.arange(2 * 8 * 10).reshape(2, 8, 10) % 251).astype("uint8")
    path = tmp_path / "two.tif"
    tifffile.imwrite(
        path,
        samples,
        photometric="minisblack",
        planarconfig="separate",
        extrasamples=["unspecified"],
        rowsperstrip=3,
        metadata=None,
    )
    with open_image(path) as image:
        assert image.level_shape(0, 0) == (1, 1, 1, 8, 10, 2)
        # the rows of each sample lie apart: a band costs its strips, not one row
        assert image.region_grid() == (3, 10)
        assert image.to_dask(0).shape == (1, 1, 1, 8, 10, 2)
        np.testing.assert_array_equal(
            image.to_dask(0)[0, 0, 0].compute(), np.moveaxis(samples, 0, -1)
        )


def test_raw_rows_of_64_bit_integers_keep_every_bit(tmp_path: Path) -> None:
    """Uncompressed uint64 strips are read as raw rows: values above 2**53 (which a float
    would round) come back exactly, as tifffile reads them."""
    plane = np.arange(12 * 6, dtype=np.uint64).reshape(12, 6) + np.uint64(2**63 + 1)
    path = tmp_path / "u64.tif"
    tifffile.imwrite(path, plane, rowsperstrip=4, metadata=None, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        reference = tif.pages.first.asarray()
    with open_image(path) as image:
        assert image.region_grid() == (1, 6)
        region = image.read_region(0, 0, 0, 0, (3, 10), (1, 5))
    assert region.dtype == np.uint64
    assert (region == reference[3:10, 1:5]).all()


def test_the_grid_of_a_set_missing_its_second_member_is_its_first_planes(tmp_path: Path) -> None:
    """A multi-file OME-TIFF set whose Z2 member is gone: the scene's grid is its first
    plane's (raw rows), and the missing plane reads as zeros."""
    from tests.synthetic import encoded_stack
    from tests.synthetic_tiff import write_ome_multifile

    stack = encoded_stack(1, 1, 3, 8, 6, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack, rowsperstrip=2)
    members[1].unlink()
    with open_image(members[0]) as image:
        assert image.scenes()[0].size_z == 3
        assert image.region_grid() == (1, 6)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (1, 7), (0, 6)), stack[0, 0, 0, 1:7]
        )
        assert not image.read_plane(0, 0, 0, 1).any()


# --------------------------------------------------------------------------- IFD chain
def test_a_file_cut_inside_a_next_ifd_pointer_is_truncated(tmp_path: Path) -> None:
    """A 3-page TIFF cut two bytes into page 1's next-IFD pointer: tifffile reads 2 pages and
    stops; the reader refuses the file as truncated, naming the page and the file's size."""
    from tests.synthetic import encoded_stack
    from tests.synthetic_tiff import write_plain_pages

    path = write_plain_pages(tmp_path / "cut.tif", encoded_stack(1, 1, 3, 8, 8)[0, 0])
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        next_at = page.offset + 2 + 12 * len(page.tags)
    path.write_bytes(path.read_bytes()[: next_at + 2])
    with pytest.raises(
        CorruptFileError,
        match=rf"^cut\.tif: the IFD after page 1 lies past the end of the file "
        rf"\({next_at + 2:,} bytes\); the file is truncated$",
    ) as info:
        open_image(path)
    assert info.value.path == path


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_a_chain_leading_to_an_unreadable_ifd_is_corrupt(tmp_path: Path, byteorder: str) -> None:
    """A 3-page TIFF whose page 1 points to an IFD claiming 4097 tags (tifffile refuses more
    than 4096, logs it and keeps 2 pages): refused as corrupt, not opened as 2 planes. The
    count is read in the file's byte order (read in the other it is 272)."""
    from tests.synthetic import encoded_stack

    path = tmp_path / "bad.tif"
    with tifffile.TiffWriter(path, byteorder=byteorder) as tif:
        for plane in encoded_stack(1, 1, 3, 8, 8)[0, 0]:
            tif.write(plane, metadata=None, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        next_at = page.offset + 2 + 12 * len(page.tags)
        bad, third = int(tif.pages[2].dataoffsets[0]), tif.pages[2].offset
    data = bytearray(path.read_bytes())
    struct.pack_into(byteorder + "I", data, next_at, bad)
    # 4097 tags in the file's byte order (one over tifffile's limit), 272 in the other
    data[bad : bad + 2] = (4097).to_bytes(2, "little" if byteorder == "<" else "big")
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 2  # what tifffile alone would give
    with pytest.raises(
        CorruptFileError,
        match=rf"^bad\.tif: the IFD after page 1 \(at byte {bad:,}\) is unreadable; the file is "
        "corrupt$",
    ) as info:
        open_image(path)
    assert info.value.path == path
    # pointing back at page 2's own IFD, the file opens whole
    struct.pack_into(byteorder + "I", data, next_at, third)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.scenes()[0].size_z == 3


# --------------------------------------------------------------------------- pages unlike their series
def _with_page_size(source: Path, target: Path, page: int, width: int, length: int) -> Path:
    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        tags = tif.pages[page].tags
        for name, value in (("ImageWidth", width), ("ImageLength", length)):
            tag = tags[name]
            struct.pack_into("<H" if tag.dtype == 3 else "<I", data, tag.valueoffset, value)
    target.write_bytes(bytes(data))
    return target


def test_a_page_whose_size_tags_lie_is_read_or_refused_by_its_bytes(
    testdata: Path, tmp_path: Path
) -> None:
    """18x24y5z5t2c8b-text.ome.tiff (50 pages of 24 x 18) with page 7's size tags changed:
    to 36 x 12 (the same 432 bytes) the plane is its bytes in the series' shape, equal to the
    original; to 12 x 18 (half the bytes) reading it is refused with both shapes."""
    source = testdata / "ome-tiff" / "18x24y5z5t2c8b-text.ome.tiff"
    with open_image(source) as image:
        t_, c_, z_ = image.scenes()[0].shape[:3]
        planes = [(t, c, z) for t in range(t_) for c in range(c_) for z in range(z_)]
        original = {p: image.read_plane(0, *p) for p in planes}
    same = _with_page_size(source, tmp_path / "same.ome.tiff", 7, 12, 36)
    with open_image(same) as image:
        for p in planes:
            np.testing.assert_array_equal(image.read_plane(0, *p), original[p], err_msg=str(p))
    half = _with_page_size(source, tmp_path / "half.ome.tiff", 7, 18, 12)
    refused = []
    with open_image(half) as image:
        for p in planes:
            try:
                np.testing.assert_array_equal(image.read_plane(0, *p), original[p])
            except CorruptFileError as exc:
                assert str(exc) == "half.ome.tiff: a page holds (12, 18), expected (24, 18)"
                assert exc.path == half
                refused.append(p)
    assert len(refused) == 1


def test_a_page_stored_unsigned_in_a_signed_series_reads_in_the_series_type(
    testdata: Path, tmp_path: Path
) -> None:
    """FLIM-modulo-sample.ome.tif (int8) with page 5's SampleFormat changed to unsigned: the
    same bytes, read in the scene's type (int8) and equal to the original plane."""
    source = testdata / "ome-tiff" / "FLIM-modulo-sample.ome.tif"
    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        tag = tif.pages[5].tags["SampleFormat"]
        struct.pack_into(tif.byteorder + "H", data, tag.valueoffset, 1)
    path = tmp_path / "unsigned.ome.tif"
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[5].dtype == np.uint8
    with open_image(source) as image:
        t_, c_, z_ = image.scenes()[0].shape[:3]
        planes = [(t, c, z) for t in range(t_) for c in range(c_) for z in range(z_)]
        original = {p: image.read_plane(0, *p) for p in planes}
    with open_image(path) as image:
        assert image.scenes()[0].dtype == "int8"
        for p in planes:
            plane = image.read_plane(0, *p)
            assert plane.dtype == np.int8
            np.testing.assert_array_equal(plane, original[p], err_msg=str(p))


def test_an_rgb_page_one_byte_short_is_refused_at_open(testdata: Path, tmp_path: Path) -> None:
    """hela-cells.tif (512 x 672 x 3 uint16, uncompressed): its StripByteCounts one byte short
    of its 3 samples is refused at open with the file's path."""
    source = testdata / "imagej" / "hela-cells.tif"
    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        page, bo = tif.pages.first, tif.byteorder
        tag = page.tags["StripByteCounts"]
        counts = [int(c) for c in page.databytecounts]
    assert sum(counts) == 512 * 672 * 3 * 2
    width = 2 if tag.dtype == 3 else 4
    where = tag.valueoffset + width * (len(counts) - 1)
    struct.pack_into(bo + ("H" if width == 2 else "I"), data, where, counts[-1] - 1)
    path = tmp_path / "short.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(
        CorruptFileError, match=r"^short\.tif: IFD 0 holds fewer bytes than its image needs$"
    ) as info:
        open_image(path)
    assert info.value.path == path


def test_no_description_gives_an_empty_head(tmp_path: Path) -> None:
    """A TIFF without ImageDescription (but with Software, ASCII): the head is empty, not
    another tag's value; a first IFD of one entry is still read."""
    path = tmp_path / "nodesc.tif"
    tifffile.imwrite(path, np.zeros((4, 5), "uint8"), metadata=None, software="writer")
    with tifffile.TiffFile(path) as tif:
        codes = set(tif.pages.first.tags.keys())
    assert 270 not in codes and 305 in codes
    peek = peek_tiff(path.read_bytes()[:16], path)
    assert peek is not None and peek.description_head == b"" and peek.tags == codes
    one = tmp_path / "one.tif"
    one.write_bytes(
        b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 256, 4, 1, 5) + bytes(4)
    )
    peek = peek_tiff(one.read_bytes()[:16], one)
    assert peek == TiffPeek(frozenset({256}), b"")
