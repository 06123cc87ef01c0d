"""The TIFF family's shared machinery on files written here: sniffing, IFD checks, axes,
calibration from resolution tags, contiguous and region reads (mutation kills, round 3)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_imagej, write_ome_tiff, write_plain_pages
from zstack_analyzer import CorruptFileError, SceneNotFoundError, open_image
from zstack_analyzer.readers._tiff_common import (
    TiffPeek,
    first_ifd_overruns,
    length_to_um,
    peek_tiff,
    resolution_um,
    series_plan,
)
from zstack_analyzer.readers.imagej_tiff import ImageJTiffReader

if TYPE_CHECKING:
    from pathlib import Path


# --------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        ("µm", 1.0),
        ("  MICRON ", 1.0),
        ("\\u00B5m", 1.0),  # ImageJ's escaped µ, upper-case hex
        ("\\u00b5m", 1.0),
        ("nm", 1e-3),
        ("Å", 1e-4),
        ("mm", 1e3),
        ("cm", 1e4),
        ("m", 1e6),
        ("inch", 25400.0),
        ("pixel", None),
        ("", None),
        (None, None),
    ],
)
def test_length_units_to_micrometres(unit: str | None, factor: float | None) -> None:
    assert length_to_um(unit) == factor


# --------------------------------------------------------------------------- sniffing
def test_peek_flags_from_the_description_head() -> None:
    assert TiffPeek(description_head=b'  \n<?xml version="1.0"?><OME xmlns="x">').is_ome
    assert TiffPeek(description_head=b"<ome:OME xmlns:ome='x'>").is_ome
    assert not TiffPeek(description_head=b"<html>no</html>").is_ome
    assert not TiffPeek(description_head=b"text <OME> later").is_ome
    assert not TiffPeek().is_ome
    assert TiffPeek(description_head=b"ImageJ=1.54f\nimages=3").is_imagej
    assert not TiffPeek(description_head=b" ImageJ=1.54f").is_imagej
    assert TiffPeek(tags=frozenset({256, 33628})).is_stk
    assert TiffPeek(tags=frozenset({33629})).is_stk
    assert not TiffPeek(tags=frozenset({256, 33630})).is_stk


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_peek_reads_tags_and_the_first_description(
    tmp_path: Path, bigtiff: bool, byteorder: str
) -> None:
    path = tmp_path / f"d{int(bigtiff)}{'le' if byteorder == '<' else 'be'}.tif"
    text = "first description " * 10
    with tifffile.TiffWriter(path, bigtiff=bigtiff, byteorder=byteorder) as tif:
        tif.write(
            np.zeros((4, 5), "uint8"),
            description=text,
            metadata=None,
            extratags=[(305, 2, 0, "some software", True)],
        )
        tif.write(np.zeros((4, 5), "uint8"), description="second", metadata=None)
    head = path.read_bytes()[:16]
    peek = peek_tiff(head, path)
    assert peek is not None
    assert peek.description_head.rstrip(b"\0") == text.encode()
    assert {256, 257, 270, 305} <= peek.tags
    assert not peek.is_ome and not peek.is_imagej and not peek.is_stk


@pytest.mark.parametrize("bigtiff", [False, True])
def test_peek_reads_a_short_description_stored_in_the_entry(tmp_path: Path, bigtiff: bool) -> None:
    path = tmp_path / "short.tif"
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(np.zeros((4, 5), "uint8"), description="ab", metadata=None)
    peek = peek_tiff(path.read_bytes()[:16], path)
    assert peek is not None
    assert peek.description_head.rstrip(b"\0") == b"ab"


def test_peek_of_ome_imagej_and_missing_files(tmp_path: Path) -> None:
    ome = write_ome_tiff(tmp_path / "a.ome.tif", [encoded_stack(1, 1, 1, 4, 4)])
    peek = peek_tiff(ome.read_bytes()[:16], ome)
    assert peek is not None and peek.is_ome
    ij = write_imagej(tmp_path / "ij.tif", encoded_stack(1, 1, 2, 4, 4))
    peek = peek_tiff(ij.read_bytes()[:16], ij)
    assert peek is not None and peek.is_imagej and not peek.is_ome
    assert peek_tiff(b"\x89PNG\r\n\x1a\n", ome) is None
    assert peek_tiff(b"II*\x00", tmp_path / "gone.tif") == TiffPeek()


def test_peek_of_an_ifd_with_no_or_absurdly_many_entries(tmp_path: Path) -> None:
    for count in (0, 4097):
        path = tmp_path / f"count{count}.tif"
        path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", count) + bytes(64))
        assert peek_tiff(path.read_bytes()[:4], path) == TiffPeek()
    path = tmp_path / "count4096.tif"
    entry = struct.pack("<HHI4s", 256, 3, 1, b"\x04\0\0\0")
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 4096) + entry * 4096)
    peek = peek_tiff(path.read_bytes()[:4], path)
    assert peek is not None and peek.tags == frozenset({256})


# --------------------------------------------------------------------------- first IFD
@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_tags_whose_values_lie_past_the_end(tmp_path: Path, bigtiff: bool, byteorder: str) -> None:
    path = tmp_path / "tail.tif"
    with tifffile.TiffWriter(path, bigtiff=bigtiff, byteorder=byteorder) as tif:
        tif.write(np.zeros((4, 5), "uint8"), description="x" * 300, metadata=None)
    data = path.read_bytes()
    inline = 8 if bigtiff else 4
    with tifffile.TiffFile(path) as tif:
        ends = {
            tag.code: tag.valueoffset + tag.valuebytecount
            for tag in tif.pages.first.tags.values()
            if tag.valuebytecount > inline
        }
    assert 270 in ends
    last = max(ends.values())
    with path.open("rb") as fh:
        assert first_ifd_overruns(fh, len(data)) == []
        assert first_ifd_overruns(fh, last) == []  # ends exactly at the end: whole
        assert first_ifd_overruns(fh, last - 1) == sorted(c for c, e in ends.items() if e == last)
        cut = ends[270]
        assert 270 in first_ifd_overruns(fh, cut - 1)
        assert 270 not in first_ifd_overruns(fh, cut)
    # a file whose IFD offset points past its end has nothing to say
    if not bigtiff:
        (tmp_path / "none.tif").write_bytes(data[:4] + struct.pack(byteorder + "I", len(data) + 9))
        with (tmp_path / "none.tif").open("rb") as fh:
            assert first_ifd_overruns(fh, 100) == []


def test_a_tag_cut_at_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, encoded_stack(1, 1, 1, 8, 6)[0, 0, 0], metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        ifd = tif.pages.first.offset
    (count,) = struct.unpack_from("<H", data, ifd)
    entries = [bytes(data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]) for i in range(count)]
    new_ifd = len(data)
    total = new_ifd + 2 + 12 * (count + 1) + 4

    def with_software_at(start: int) -> bytes:
        # a copy of the first IFD at the end, plus a 64-byte Software (305) value at ``start``
        more = [*entries, struct.pack("<HHII", 305, 2, 64, start)]
        more.sort(key=lambda e: struct.unpack_from("<H", e)[0])
        head = bytearray(data)
        head[4:8] = struct.pack("<I", new_ifd)
        return bytes(head) + struct.pack("<H", count + 1) + b"".join(more) + b"\0\0\0\0"

    path.write_bytes(with_software_at(total - 10))
    with pytest.raises(CorruptFileError, match=r"tags \[305\] of the first IFD lie past the end"):
        open_image(path)
    path.write_bytes(with_software_at(total - 64))  # ends exactly at the end: whole
    with open_image(path) as image:
        assert image.read_plane(0, 0, 0, 0).shape == (8, 6)


# --------------------------------------------------------------------------- axes
def test_series_plan_of_an_imagej_hyperstack(tmp_path: Path) -> None:
    stack = encoded_stack(2, 3, 4, 6, 5)
    path = write_imagej(tmp_path / "h.tif", stack)
    with tifffile.TiffFile(path) as tif:
        plan, extra = series_plan(tif.series[0], index=3, name="n")
        assert plan.page(0, 23) is not None
        assert plan.page(0, 24) is None
    info = plan.info
    assert (info.index, info.name) == (3, "n")
    assert (info.size_t, info.size_c, info.size_z, info.size_y, info.size_x) == (2, 3, 4, 6, 5)
    assert info.samples_per_pixel == 1 and info.dtype == "uint16" and extra == {}
    assert plan.planes_per_slot == 1
    assert plan.level_shapes == [(6, 5)]
    # ImageJ stores T, Z, C: (t, c, z) -> page t*12 + z*3 + c
    assert plan.locate(1, 2, 3) == (1 * 12 + 3 * 3 + 2, 0)
    assert plan.locate(0, 1, 0) == (1, 0)
    assert plan.contiguous_offset is not None


def test_series_plan_renames_and_keeps_other_axes_as_extra(tmp_path: Path) -> None:
    path = tmp_path / "q.tif"
    data = np.arange(3 * 2 * 4 * 5, dtype="uint16").reshape(3, 2, 4, 5)
    tifffile.imwrite(path, data, metadata={"axes": "QIYX"})
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        assert series.axes == "QIYX"
        plan, extra = series_plan(series, index=0, rename={"I": "Z"})
        assert extra == {"Q": 3}
        assert (plan.info.size_z, plan.info.size_t, plan.info.size_c) == (2, 1, 1)
        assert plan.info.extra_dims == {"Q": 3}
        assert plan.locate(0, 0, 1) == (1, 0)
        # a rename onto an axis the series already has is not taken
        plan, extra = series_plan(series, index=0, rename={"I": "Q"})
        assert extra == {"Q": 3, "I": 2}
        assert plan.info.size_z == 1
        # an axis of size 1 is no extra dimension
    path1 = tmp_path / "q1.tif"
    tifffile.imwrite(path1, data[:1], metadata={"axes": "QIYX"})
    with tifffile.TiffFile(path1) as tif:
        _, extra = series_plan(tif.series[0], index=0, rename={"I": "Z"})
        assert extra == {}


def test_series_plan_of_rgb_and_contiguous_pages(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((2, 6, 7, 3), "uint8"), photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        plan, _ = series_plan(tif.series[0], index=0, rename={"Q": "Z", "I": "Z"})
        assert plan.info.samples_per_pixel == 3
        assert (plan.info.size_y, plan.info.size_x) == (6, 7)
        assert plan.info.size_z == 2


def test_contiguous_planes_in_one_ifd_are_located_by_offset(tmp_path: Path) -> None:
    stack = encoded_stack(2, 2, 3, 16, 12)
    path = write_imagej(tmp_path / "c.tif", stack, unit="um", pixel_size=0.5, spacing=1.0)
    with tifffile.TiffFile(path) as tif:
        start = tif.pages.first.offset
    data = bytearray(path.read_bytes())
    (count,) = struct.unpack("<H", data[start : start + 2])
    data[start + 2 + count * 12 : start + 6 + count * 12] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    with ImageJTiffReader(path) as image:
        assert image.region_grid() == (1, 12)
        for t, c, z in [(0, 0, 0), (1, 1, 2), (0, 1, 2), (1, 0, 1)]:
            np.testing.assert_array_equal(image.read_plane(0, t, c, z), stack[t, c, z])
            np.testing.assert_array_equal(
                image.read_region(0, t, c, z, (3, 9), (2, 11)), stack[t, c, z, 3:9, 2:11]
            )
    # the whole stack is one slot: its last plane is checked at open, to the byte
    with tifffile.TiffFile(path) as tif:
        end = int(tif.pages.first.dataoffsets[0]) + stack.nbytes
    path.write_bytes(bytes(data[:end]))
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 1, 1, 2), stack[1, 1, 2])
    path.write_bytes(bytes(data[: end - 1]))
    with pytest.raises(CorruptFileError, match=r"c\.tif: .*truncated"):
        open_image(path)


# --------------------------------------------------------------------------- calibration
def _page_resolution(tmp_path: Path, **options: object) -> tuple[float | None, ...]:
    path = tmp_path / "r.tif"
    tifffile.imwrite(path, np.zeros((4, 4), "uint8"), metadata=None, **options)  # type: ignore[arg-type]
    with tifffile.TiffFile(path) as tif:
        return resolution_um(tif.pages.first)  # type: ignore[return-value]


def test_resolution_tags_to_micrometres(tmp_path: Path) -> None:
    x, y, warning = _page_resolution(
        tmp_path, resolution=((20000, 1), (10000, 1)), resolutionunit="CENTIMETER"
    )
    assert (x, y, warning) == (pytest.approx(0.5), pytest.approx(1.0), None)
    x, y, warning = _page_resolution(
        tmp_path, resolution=((254, 1), (127, 1)), resolutionunit="INCH"
    )
    assert (x, y, warning) == (pytest.approx(100.0), pytest.approx(200.0), None)
    x, y, warning = _page_resolution(tmp_path, resolution=((73, 1), (73, 1)), resolutionunit="INCH")
    assert x == pytest.approx(25400 / 73)
    x, y, warning = _page_resolution(
        tmp_path, resolution=((3, 2), (3, 2)), resolutionunit="CENTIMETER"
    )
    assert x == pytest.approx(10000 * 2 / 3)


def _patched(path: Path, xres: tuple[int, int], unit: str) -> Path:
    """A 4 x 4 TIFF whose XResolution and YResolution hold exactly ``xres`` (unreduced)."""
    tifffile.imwrite(
        path,
        np.zeros((4, 4), "uint8"),
        metadata=None,
        resolution=((7, 3), (7, 3)),
        resolutionunit=unit,
    )
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for name in ("XResolution", "YResolution"):
            struct.pack_into("<II", data, tif.pages.first.tags[name].valueoffset, *xres)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("resolution", "unit"),
    [
        ((72, 1), "INCH"),
        ((96, 1), "INCH"),
        ((1441, 20), "INCH"),  # 72.05 dpi rounds to 72
        ((5, 5), "CENTIMETER"),
        ((0, 1), "CENTIMETER"),
        ((10, 0), "CENTIMETER"),
        ((1000, 1), "NONE"),
    ],
)
def test_resolutions_that_are_no_calibration(
    tmp_path: Path, resolution: tuple[int, int], unit: str
) -> None:
    path = _patched(tmp_path / "r.tif", resolution, unit)
    with tifffile.TiffFile(path) as tif:
        x, y, warning = resolution_um(tif.pages.first)
    assert (x, y) == (None, None)
    code = {"INCH": 2, "CENTIMETER": 3, "NONE": 1}[unit]
    assert warning == (
        f"TIFF resolution {resolution[0]}/{resolution[1]} (unit {code}) is not a calibration: "
        "pixel size unknown"
    )


def test_an_unreduced_fraction_is_a_calibration(tmp_path: Path) -> None:
    path = _patched(tmp_path / "r.tif", (20000, 2), "CENTIMETER")
    with tifffile.TiffFile(path) as tif:
        assert resolution_um(tif.pages.first) == (pytest.approx(1.0), pytest.approx(1.0), None)
    path = _patched(tmp_path / "s.tif", (1, 3), "CENTIMETER")  # 3 cm a pixel
    with tifffile.TiffFile(path) as tif:
        assert resolution_um(tif.pages.first)[0] == pytest.approx(30000.0)


def test_no_resolution_tag_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "bare.tif"
    tifffile.imwrite(path, np.zeros((4, 4), "uint8"), metadata=None, resolution=((3, 1), (3, 1)))
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        ifd = tif.pages.first.offset
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] in (282, 283, 296):
            struct.pack_into("<H", data, at, 65000 + i)
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert resolution_um(tif.pages.first) == (None, None, None)
    with open_image(path) as image:
        assert image.metadata().physical_size.x_um is None


def test_inch_without_a_unit_tag_and_a_missing_y(tmp_path: Path) -> None:
    """No ResolutionUnit means inches (the TIFF default); a missing YResolution takes X's."""
    path = tmp_path / "nounit.tif"
    tifffile.imwrite(
        path, np.zeros((4, 4), "uint8"), metadata=None, resolution=((254, 1), (127, 1))
    )
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        ifd = tif.pages.first.offset
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] in (283, 296):  # YResolution, ResolutionUnit
            struct.pack_into("<H", data, at, 65000 + i)  # an unknown private tag instead
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert "ResolutionUnit" not in page.tags and "YResolution" not in page.tags
        x, y, warning = resolution_um(page)
    assert (x, y, warning) == (pytest.approx(100.0), pytest.approx(100.0), None)


# --------------------------------------------------------------------------- reading
def test_uncompressed_strips_read_by_rows(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 40, 30)
    path = write_plain_pages(tmp_path / "strips.tif", stack[0, 0], rowsperstrip=7)
    with open_image(path) as image:
        assert image.region_grid() == (1, 30)
        for z in range(2):
            for rows, cols in [((0, 40), (0, 30)), ((5, 23), (3, 29)), ((39, 40), (0, 1))]:
                np.testing.assert_array_equal(
                    image.read_region(0, 0, 0, z, rows, cols),
                    stack[0, 0, z, rows[0] : rows[1], cols[0] : cols[1]],
                )
        # out-of-range windows are clipped; an empty window is empty
        assert image.read_region(0, 0, 0, 0, (-5, 3), (28, 99)).shape == (3, 2)
        assert image.read_region(0, 0, 0, 0, (10, 10), (0, 30)).shape == (0, 30)
        with pytest.raises(
            SceneNotFoundError, match="pyramid level 1 does not exist; scene 0 has 1"
        ):
            image.level_shape(0, 1)
        with pytest.raises(SceneNotFoundError):
            image.level_shape(0, -1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64"])
def test_raw_rows_of_every_byte_width(tmp_path: Path, dtype: str) -> None:
    plane = (np.arange(24 * 10).reshape(24, 10) % 200).astype(dtype)
    path = tmp_path / "w.tif"
    tifffile.imwrite(path, plane, rowsperstrip=5, metadata=None, photometric="minisblack")
    with open_image(path) as image:
        assert image.region_grid() == (1, 10)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (3, 17), (1, 9)), plane[3:17, 1:9]
        )


def test_bilevel_pages_are_not_read_as_raw_rows(tmp_path: Path) -> None:
    plane = np.arange(16 * 24).reshape(16, 24) % 3 == 0
    path = tmp_path / "bits.tif"
    tifffile.imwrite(path, plane, rowsperstrip=4, metadata=None)
    with open_image(path) as image:
        assert image.region_grid() == (4, 24)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (2, 13), (5, 20)).astype(bool), plane[2:13, 5:20]
        )


def test_compressed_strips_and_tiles_grids(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 1, 50, 40)
    plane = stack[0, 0, 0]
    lzw = tmp_path / "lzw.tif"
    tifffile.imwrite(lzw, plane, rowsperstrip=8, compression="lzw", metadata=None)
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, plane, tile=(32, 16), compression="zlib", metadata=None)
    big_tile = tmp_path / "bigtile.tif"
    tifffile.imwrite(big_tile, plane[:20, :20], tile=(32, 32), metadata=None)
    with open_image(lzw) as image:
        assert image.region_grid() == (8, 40)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (7, 33), (2, 39)), plane[7:33, 2:39]
        )
    with open_image(tiled) as image:
        assert image.region_grid() == (32, 16)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (5, 45), (15, 33)), plane[5:45, 15:33]
        )
    with open_image(big_tile) as image:
        assert image.region_grid() == (20, 20)


def test_rgb_regions_chunky_and_planar(tmp_path: Path) -> None:
    rgb = np.stack(
        [encoded_stack(1, 1, 1, 20, 30, dtype="uint8")[0, 0, 0] + k for k in range(3)], -1
    )
    chunky = tmp_path / "chunky.tif"
    tifffile.imwrite(chunky, rgb, photometric="rgb", rowsperstrip=6, metadata=None)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(
        planar,
        np.moveaxis(rgb, -1, 0),
        photometric="rgb",
        planarconfig="separate",
        rowsperstrip=6,
        compression="lzw",
        metadata=None,
    )
    planar_raw = tmp_path / "planar_raw.tif"
    tifffile.imwrite(
        planar_raw,
        np.moveaxis(rgb, -1, 0),
        photometric="rgb",
        planarconfig="separate",
        rowsperstrip=6,
        metadata=None,
    )
    for path in (chunky, planar, planar_raw):
        with open_image(path) as image:
            assert image.level_shape(0, 0) == (1, 1, 1, 20, 30, 3)
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), rgb)
            np.testing.assert_array_equal(
                image.read_region(0, 0, 0, 0, (4, 17), (3, 25)), rgb[4:17, 3:25], err_msg=path.name
            )
    with open_image(chunky) as image:
        assert image.region_grid() == (1, 30)
    with open_image(planar_raw) as image:
        assert image.region_grid() == (6, 30)


def test_a_plane_short_of_its_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, encoded_stack(1, 1, 1, 16, 16)[0, 0, 0], metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["StripByteCounts"]
        where, count = tag.valueoffset, int(tag.value[0])
    struct.pack_into("<I", data, where, count - 1)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="IFD 0 holds fewer bytes than its image needs"):
        open_image(path)
    struct.pack_into("<I", data, where, count)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.read_plane(0, 0, 0, 0).shape == (16, 16)


def test_segments_ending_exactly_at_the_end_of_the_file_are_whole(tmp_path: Path) -> None:
    path = tmp_path / "end.tif"
    plane = encoded_stack(1, 1, 1, 16, 16)[0, 0, 0]
    with tifffile.TiffWriter(path) as tif:
        tif.write(plane, metadata=None, description=None)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        end = int(page.dataoffsets[-1] + page.databytecounts[-1])
    # tifffile writes the IFD before the data, so the pixels are the file's last bytes
    # (the case this test is about); if a tifffile ever changes that, the test must say so.
    assert end == len(data), "tifffile wrote something after the pixels: rebuild this case"
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), plane)
    path.write_bytes(data[:-1])
    with pytest.raises(CorruptFileError, match="ends past the end of the file"):
        open_image(path)


def test_an_ifd_chain_pointing_past_the_end_is_refused(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 8, 8)[0, 0]
    path = write_plain_pages(tmp_path / "chain.tif", stack)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        count = len(page.tags)
        next_at = page.offset + 2 + 12 * count
    data = bytearray(path.read_bytes())
    for target, refused in [(len(data), True), (len(data) + 100, True), (0, False)]:
        struct.pack_into("<I", data, next_at, target)
        path.write_bytes(bytes(data))
        if refused:
            with pytest.raises(CorruptFileError, match="the IFD after page 1 lies past the end"):
                open_image(path)
        else:
            with open_image(path) as image:
                assert image.scenes()[0].size_z == 2


# --------------------------------------------------------------------------- STK (one IFD)
def test_stk_planes_by_offset_and_cut_to_the_byte(tmp_path: Path) -> None:
    from tests.synthetic_stk import write_stk

    planes = encoded_stack(1, 1, 5, 12, 10)[0, 0]
    path = write_stk(tmp_path / "s.stk", planes)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        start = int(tif.pages.first.dataoffsets[0])
    end = start + planes.nbytes
    with open_image(path) as image:
        assert image.format_name == "STK"
        assert image.region_grid() == (1, 10)
        for z in (0, 2, 4):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), planes[z])
            np.testing.assert_array_equal(
                image.read_region(0, 0, 0, z, (3, 11), (1, 8)), planes[z, 3:11, 1:8]
            )
        np.testing.assert_array_equal(image.to_dask(0).compute()[0, 0], planes)
    if end == len(data):  # the pixels are the file's last bytes: cut them by one
        path.write_bytes(data[: end - 1])
        with pytest.raises(
            CorruptFileError,
            match=rf"s\.stk: the planes of scene 0 end at byte {end:,}, past the end of the file "
            rf"\({end - 1:,} bytes\); the file is truncated",
        ):
            open_image(path)


def _cut_after_first_ifd(path: Path) -> None:
    """End the IFD chain after the first page: its planes then follow it back to back."""
    with tifffile.TiffFile(path) as tif:
        start, byteorder = tif.pages.first.offset, tif.byteorder
    data = bytearray(path.read_bytes())
    (count,) = struct.unpack(byteorder + "H", data[start : start + 2])
    data[start + 2 + count * 12 : start + 6 + count * 12] = b"\0\0\0\0"
    path.write_bytes(bytes(data))


def test_planar_rgb_planes_in_one_ifd(tmp_path: Path) -> None:
    stack = (np.arange(2 * 3 * 8 * 10).reshape(2, 3, 8, 10) % 251).astype("uint8")
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, stack, photometric="rgb", planarconfig="separate", contiguous=True)
    _cut_after_first_ifd(path)
    with open_image(path) as image:
        assert image.scenes()[0].size_z == 2
        assert image.region_grid() is None  # the rows of each sample lie apart
        for z in range(2):
            rgb = np.moveaxis(stack[z], 0, -1)
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), rgb)
            np.testing.assert_array_equal(
                image.read_region(0, 0, 0, z, (2, 7), (1, 9)), rgb[2:7, 1:9]
            )


def test_chunky_rgb_planes_in_one_ifd(tmp_path: Path) -> None:
    stack = (np.arange(3 * 8 * 10 * 3).reshape(3, 8, 10, 3) % 251).astype("uint8")
    path = tmp_path / "chunky.tif"
    tifffile.imwrite(path, stack, photometric="rgb", contiguous=True)
    _cut_after_first_ifd(path)
    with open_image(path) as image:
        assert image.region_grid() == (1, 10)
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), stack[z])
            np.testing.assert_array_equal(
                image.read_region(0, 0, 0, z, (2, 7), (1, 9)), stack[z, 2:7, 1:9]
            )


def test_big_endian_planes_in_one_ifd(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 8, 6)[0, 0]
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, stack, byteorder=">", contiguous=True, photometric="minisblack")
    _cut_after_first_ifd(path)
    with open_image(path) as image:
        assert image.scenes()[0].dtype == "uint16"
        for z in range(3):
            np.testing.assert_array_equal(image.read_plane(0, 0, 0, z), stack[z])
            np.testing.assert_array_equal(
                image.read_region(0, 0, 0, z, (1, 5), (0, 6)), stack[z, 1:5]
            )


def test_strips_apart_are_decoded_not_read_as_raw_rows(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 12, 8)[0, 0, 0]
    path = tmp_path / "gap.tif"
    tifffile.imwrite(path, plane, rowsperstrip=4, metadata=None, photometric="minisblack")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["StripOffsets"]
        where, offsets = tag.valueoffset, list(tif.pages.first.dataoffsets)
        nbytes = int(tif.pages.first.databytecounts[1])
    moved = len(data)
    data += data[offsets[1] : offsets[1] + nbytes]  # strip 1 moved to the end ...
    data[offsets[1] : offsets[1] + nbytes] = bytes(nbytes)  # ... and zeros where it was
    struct.pack_into("<I", data, where + 4, moved)
    path.write_bytes(bytes(data))
    with open_image(path) as image:
        assert image.region_grid() == (4, 8)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (2, 11), (1, 7)), plane[2:11, 1:7]
        )


def test_one_sample_with_planar_configuration_2_is_still_raw_rows(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 12, 8)[0, 0, 0]
    path = tmp_path / "pc2.tif"
    tifffile.imwrite(path, plane, rowsperstrip=4, metadata=None, photometric="minisblack")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        ifd = tif.pages.first.offset
    (count,) = struct.unpack_from("<H", data, ifd)
    codes = [struct.unpack_from("<H", data, ifd + 2 + 12 * i)[0] for i in range(count)]
    at = ifd + 2 + 12 * codes.index(296)  # ResolutionUnit (SHORT) becomes PlanarConfiguration 2
    struct.pack_into("<HHIH", data, at, 284, 3, 1, 2)
    path.write_bytes(bytes(data))
    with tifffile.TiffFile(path) as tif:
        assert int(tif.pages.first.tags["PlanarConfiguration"].value) == 2
    with open_image(path) as image:
        assert image.region_grid() == (1, 8)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (2, 11), (1, 7)), plane[2:11, 1:7]
        )


# --------------------------------------------------------------------------- checks at open
def _strip_offset_past_the_end(path: Path, page_index: int) -> None:
    """Point the (single) strip of page ``page_index`` past the end of the file."""
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[page_index].tags["StripOffsets"]
        assert tag.count == 1
        where, width = tag.valueoffset, 8 if tif.is_bigtiff else 4
        order = "little" if tif.byteorder == "<" else "big"
    data[where : where + width] = (len(data) + 4096).to_bytes(width, order)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damaged", ["first", "last"])
def test_the_first_and_last_plane_of_every_scene_are_checked_at_open(
    tmp_path: Path, damaged: str
) -> None:
    """Scene 1 of an OME-TIFF (2 x 2 x 2 planes, pages 1-8): its first or its last plane past
    the end of the file is refused at open, with the file's path."""
    path = tmp_path / "two.ome.tif"
    write_ome_tiff(path, [encoded_stack(1, 1, 1, 8, 6), encoded_stack(2, 2, 2, 8, 6)], bigtiff=True)
    _strip_offset_past_the_end(path, 1 if damaged == "first" else 8)
    with pytest.raises(
        CorruptFileError, match=f"IFD {1 if damaged == 'first' else 8} ends past"
    ) as info:
        open_image(path)
    assert info.value.path == path


def test_a_middle_plane_is_not_checked_at_open(tmp_path: Path) -> None:
    path = tmp_path / "mid.ome.tif"
    stack = encoded_stack(2, 2, 2, 8, 6)
    write_ome_tiff(path, [stack], bigtiff=True)
    _strip_offset_past_the_end(path, 3)
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read_plane(0, 1, 1, 1), stack[1, 1, 1])
        with pytest.raises(CorruptFileError, match="IFD 3 ends past"):
            image.read_plane(0, 0, 1, 1)


def test_a_missing_first_member_does_not_stop_the_last_plane_check(tmp_path: Path) -> None:
    from tests.synthetic_tiff import write_ome_multifile

    stack = encoded_stack(1, 1, 3, 8, 6, dtype="uint8")
    members, _ = write_ome_multifile(tmp_path, stack)
    members[0].unlink()
    _strip_offset_past_the_end(members[2], 0)
    with pytest.raises(CorruptFileError, match="ends past the end of the file"):
        open_image(members[1])


def test_an_ifd_chain_cut_inside_its_pointer_or_past_the_end_big_endian(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 3, 8, 8)[0, 0]
    path = tmp_path / "be.tif"
    with tifffile.TiffWriter(path, byteorder=">") as tif:
        for plane in stack:
            tif.write(plane, metadata=None, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        next_at = page.offset + 2 + 12 * len(page.tags)
    data = bytearray(path.read_bytes())
    # 16 MiB big-endian (01 00 00 00) is past this file's end; read little-endian it is 1
    data[next_at : next_at + 4] = (1 << 24).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="the IFD after page 1 lies past the end") as info:
        open_image(path)
    assert info.value.path == path
    # a valid big-endian chain opens whole
    path.write_bytes(bytes(data[:next_at]) + (0).to_bytes(4, "big") + bytes(data[next_at + 4 :]))
    with open_image(path) as image:
        assert image.scenes()[0].size_z == 2


# --------------------------------------------------------------------------- shapes and grids
def test_level_shapes_of_grey_and_rgb(tmp_path: Path) -> None:
    grey = write_plain_pages(tmp_path / "g.tif", encoded_stack(1, 1, 2, 6, 5)[0, 0])
    with open_image(grey) as image:
        assert image.level_shape(0, 0) == (1, 1, 2, 6, 5)
        assert image.to_dask(0).shape == (1, 1, 2, 6, 5)
        with pytest.raises(SceneNotFoundError) as info:
            image.level_shape(0, 3)
        assert info.value.path == grey


def test_deflate_strips_are_read_a_few_mib_of_rows_at_a_time(tmp_path: Path) -> None:
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(
        grey, np.zeros((600, 4096), "uint16"), rowsperstrip=600, compression="zlib", metadata=None
    )
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(
        rgb,
        np.zeros((1000, 2048, 3), "uint16"),
        rowsperstrip=1000,
        compression="zlib",
        photometric="rgb",
        metadata=None,
    )
    wide = tmp_path / "wide.tif"
    tifffile.imwrite(
        wide,
        np.zeros((2, 1_000_000, 3), "uint16"),
        rowsperstrip=2,
        compression="zlib",
        photometric="rgb",
        metadata=None,
    )
    small = tmp_path / "small.tif"
    tifffile.imwrite(
        small, np.zeros((40, 30), "uint8"), rowsperstrip=16, compression="zlib", metadata=None
    )
    with open_image(grey) as image:
        assert image.region_grid() == (512, 4096)  # 4 MiB of 8 KiB rows
    with open_image(rgb) as image:
        assert image.region_grid() == (341, 2048)  # 4 MiB // 12 KiB rows
    with open_image(wide) as image:
        assert image.region_grid() == (1, 1_000_000)  # at least one row
    with open_image(small) as image:
        assert image.region_grid() == (16, 30)


def test_one_uncompressed_strip_is_read_by_rows(tmp_path: Path) -> None:
    plane = encoded_stack(1, 1, 1, 12, 8)[0, 0, 0]
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, plane, rowsperstrip=12, metadata=None, photometric="minisblack")
    with open_image(path) as image:
        assert image.region_grid() == (1, 8)
        np.testing.assert_array_equal(
            image.read_region(0, 0, 0, 0, (3, 9), (2, 7)), plane[3:9, 2:7]
        )


def test_two_separate_samples_are_not_read_as_raw_rows(tmp_path: Path) -> None:
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
        assert image.scenes()[0].samples_per_pixel == 2
        yxs = np.moveaxis(samples, 0, -1)
        np.testing.assert_array_equal(image.read_plane(0, 0, 0, 0), yxs)
        np.testing.assert_array_equal(image.read_region(0, 0, 0, 0, (1, 7), (2, 9)), yxs[1:7, 2:9])
