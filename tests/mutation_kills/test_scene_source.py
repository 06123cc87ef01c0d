"""Regions of planes as NGFF sees them (``zarr/source.py``), against the pixels written.

Tiled TIFFs decode only the tiles under a region (and charge the rest of those tiles to
the request); striped and other files go through the reader; reduced levels of a pyramid;
RGB samples as channels; planes out of range refused by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.synthetic_tiff import write_ome_pyramid, write_ome_tiff, write_rgb
from zstack_analyzer import open_image
from zstack_analyzer.budget import DecodeBudget, decode_scope
from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError
from zstack_analyzer.zarr.source import SceneSource

if TYPE_CHECKING:
    from pathlib import Path

#: T, C, Z, Y, X: planes of 50 x 70, tiles of 16 x 16 (partial tiles on both edges).
STACK = (
    (np.arange(2 * 2 * 3 * 50 * 70, dtype=np.uint32) % 65521)
    .astype(np.uint16)
    .reshape(2, 2, 3, 50, 70)
)
REGIONS = [
    (0, 50, 0, 70),  # the whole plane
    (0, 16, 0, 16),  # one tile
    (5, 20, 10, 40),  # across tiles
    (17, 50, 33, 70),  # to the edges (partial tiles)
    (-5, 3, 60, 100),  # clipped to the plane
    (48, 49, 69, 70),  # one pixel in the last, partial tile
    (25, 50, 0, 70),  # the lower half: (y1 + y0) x width would be over the plane's area
    (0, 50, 35, 70),  # the right half
]


def _clip(y0: int, y1: int, x0: int, x1: int) -> tuple[slice, slice]:
    return slice(max(0, y0), min(50, y1)), slice(max(0, x0), min(70, x1))


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiled_regions_decode_the_tiles_under_them(tmp_path: Path, compression: str | None) -> None:
    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK], tile=(16, 16), compression=compression)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert source.file_tile() == (16, 16)
        assert source.file_level_shapes() == [(50, 70)]
        tile_bytes = 16 * 16 * 2
        for t, c, z in [(0, 0, 0), (1, 1, 2), (0, 1, 1)]:
            for y0, y1, x0, x1 in REGIONS:
                budget = DecodeBudget()
                with decode_scope(budget) as scope:
                    region = source.read_region(t, c, z, y0, y1, x0, x1)
                ys, xs = _clip(y0, y1, x0, x1)
                np.testing.assert_array_equal(region, STACK[t, c, z][ys, xs])
                assert region.flags.c_contiguous
                rows = range(ys.start // 16, (ys.stop - 1) // 16 + 1)
                cols = range(xs.start // 16, (xs.stop - 1) // 16 + 1)
                if (ys.stop - ys.start) * (xs.stop - xs.start) < 50 * 70:
                    tiles = len(rows) * len(cols)
                    assert scope.spent == tiles * tile_bytes - region.nbytes
                    assert budget.peak == tile_bytes  # one tile reserved at a time
                else:
                    assert scope.spent == 0


def test_a_corrupt_tile_is_named(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK], tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[4]  # t=0, c=1, z=1: page (t * 2 + c) * 3 + z
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * count)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        np.testing.assert_array_equal(
            source.read_region(0, 1, 1, 0, 16, 0, 16), STACK[0, 1, 1, :16, :16]
        )
        with pytest.raises(CorruptFileError) as info:
            source.read_region(0, 1, 1, 16, 20, 0, 4)  # tile 5: row 1, column 0 (5 a row)
    assert str(info.value).startswith("t.ome.tif: cannot decode tile 5 of plane t=0 c=1 z=1: ")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_striped_regions_equal_the_pixels(tmp_path: Path, compression: str | None) -> None:
    path = write_ome_tiff(tmp_path / "s.ome.tif", [STACK], compression=compression)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert source.file_tile() is None
        for y0, y1, x0, x1 in REGIONS:
            region = source.read_region(1, 0, 2, y0, y1, x0, x1)
            ys, xs = _clip(y0, y1, x0, x1)
            np.testing.assert_array_equal(region, STACK[1, 0, 2][ys, xs])


def test_rgb_samples_are_channels(tmp_path: Path) -> None:
    rgb = (np.arange(50 * 70 * 3, dtype=np.uint32) % 251).astype(np.uint8).reshape(50, 70, 3)
    for tile in (None, (16, 16)):
        path = write_rgb(tmp_path / f"rgb{tile is None}.tif", rgb, tile=tile)
        with open_image(path) as reader:
            source = SceneSource(reader, 0)
            assert source.spp == 3
            for c in range(3):
                for y0, y1, x0, x1 in REGIONS:
                    ys, xs = _clip(y0, y1, x0, x1)
                    np.testing.assert_array_equal(
                        source.read_region(0, c, 0, y0, y1, x0, x1), rgb[ys, xs, c]
                    )
            with pytest.raises(SceneNotFoundError, match=r"c=3 is out of range \(0\.\.2\)"):
                source.read_region(0, 3, 0, 0, 1, 0, 1)


def test_planes_out_of_range_are_refused_by_name(tmp_path: Path) -> None:
    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK])
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        source.check(1, 1, 2)
        for (t, c, z), text in [
            ((2, 0, 0), "t=2 is out of range (0..1)"),
            ((-1, 0, 0), "t=-1 is out of range (0..1)"),
            ((0, 2, 0), "c=2 is out of range (0..1)"),
            ((0, -1, 0), "c=-1 is out of range (0..1)"),
            ((0, 0, 3), "z=3 is out of range (0..2)"),
            ((0, 0, -1), "z=-1 is out of range (0..2)"),
        ]:
            with pytest.raises(SceneNotFoundError) as info:
                source.read_region(t, c, z, 0, 1, 0, 1)
            assert str(info.value) == f"t.ome.tif: {text}"
            assert info.value.path == reader.path


def test_pyramid_levels_of_the_file(tmp_path: Path) -> None:
    stack = (np.arange(1 * 2 * 1 * 96 * 80, dtype=np.uint32) % 4093).astype(np.uint16)
    stack = stack.reshape(1, 2, 1, 96, 80)
    path = write_ome_pyramid(tmp_path / "p.ome.tif", stack, levels=3)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert source.file_level_shapes() == [(96, 80), (48, 40), (24, 20)]
        assert source.file_tile() == (32, 32)
        for level in (0, 1, 2):
            data = stack[0, 1, 0, :: 2**level, :: 2**level]
            ny, nx = data.shape
            for y0, y1, x0, x1 in [(0, ny, 0, nx), (3, 20, 5, 33), (0, 1, nx - 1, nx + 9)]:
                region = source.read_region(0, 1, 0, y0, y1, x0, x1, level=level)
                np.testing.assert_array_equal(region, data[max(0, y0) : y1, x0:x1])


def test_plain_planes_charge_what_a_region_drops(tmp_path: Path) -> None:
    """A file the reader decodes only whole (an uncompressed single strip here)."""
    plane = (np.arange(50 * 70, dtype=np.uint32) % 60000).astype(np.uint16).reshape(50, 70)
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, plane, rowsperstrip=50, compression="zlib", metadata=None)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        plain = reader.region_grid(0, 0) is None
        budget = DecodeBudget()
        with decode_scope(budget) as scope:
            region = source.read_region(0, 0, 0, 10, 20, 5, 25)
        np.testing.assert_array_equal(region, plane[10:20, 5:25])
        if plain:
            assert scope.spent == (50 * 70 - 10 * 20) * 2
        samples = source.read_plane_samples(0, 0, 0)
        assert samples.shape == (50, 70, 1)
        np.testing.assert_array_equal(samples[:, :, 0], plane)


def test_planes_read_whole_charge_what_a_region_drops(tmp_path: Path) -> None:
    """An OIF: its reader decodes planes whole (no region grid), so a region drops the rest."""
    from tests.synthetic_oif import write_oif

    stack = (np.arange(1 * 2 * 3 * 9 * 11, dtype=np.uint16) * 7 + 1).reshape(1, 2, 3, 9, 11)
    path = write_oif(tmp_path, stack)
    with open_image(path) as reader:
        assert reader.region_grid(0, 0) is None
        source = SceneSource(reader, 0)
        for c, z, (y0, y1, x0, x1) in [(1, 2, (2, 7, 3, 10)), (0, 1, (-3, 4, 8, 40))]:
            budget = DecodeBudget()
            with decode_scope(budget) as scope:
                region = source.read_region(0, c, z, y0, y1, x0, x1)
            ys, xs = slice(max(0, y0), min(9, y1)), slice(max(0, x0), min(11, x1))
            np.testing.assert_array_equal(region, stack[0, c, z][ys, xs])
            kept = (ys.stop - ys.start) * (xs.stop - xs.start)
            assert scope.spent == (9 * 11 - kept) * 2
            assert budget.peak == 9 * 11 * 2  # the whole plane reserved while it is read
        with decode_scope(DecodeBudget()) as scope:
            whole = source.read_region(0, 1, 0, 0, 9, 0, 11)
        np.testing.assert_array_equal(whole, stack[0, 1, 0])
        assert scope.spent == 0
        with decode_scope(DecodeBudget(request_bytes=10)), pytest.raises(Exception) as info:
            source.read_region(0, 1, 0, 0, 2, 0, 2)
        assert "cells.oif: plane t=0 z=0" in str(info.value)
        assert info.value.path == reader.path  # type: ignore[attr-defined]


def test_planar_rgb_tiles_are_read_through_the_reader(tmp_path: Path) -> None:
    """Tiles of separate colour planes are not one tile of samples: read as the reader does."""
    rgb = (np.arange(50 * 70 * 3, dtype=np.uint32) % 241).astype(np.uint8).reshape(50, 70, 3)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(
        path,
        np.moveaxis(rgb, 2, 0),
        photometric="rgb",
        planarconfig="separate",
        tile=(16, 16),
        metadata=None,
    )
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert source.spp == 3
        assert source.file_tile() is None
        for c in range(3):
            for y0, y1, x0, x1 in REGIONS:
                ys, xs = _clip(y0, y1, x0, x1)
                np.testing.assert_array_equal(
                    source.read_region(0, c, 0, y0, y1, x0, x1), rgb[ys, xs, c]
                )


def test_a_missing_member_of_a_tiled_set_reads_zeros(tmp_path: Path) -> None:
    """A member file gone: its plane is zeros of the region's shape and the file's type."""
    from tests.synthetic_tiff import write_ome_multifile

    stack = (np.arange(3 * 40 * 36, dtype=np.uint32) % 251 + 1).astype(np.uint8)
    stack = stack.reshape(1, 1, 3, 40, 36)
    members, _ = write_ome_multifile(tmp_path, stack, tile=(16, 16))
    members[1].unlink()  # z=1: the first plane's page is what decides "tiled"
    with open_image(members[0]) as reader:
        source = SceneSource(reader, 0)
        assert source.file_tile() == (16, 16)
        np.testing.assert_array_equal(
            source.read_region(0, 0, 2, 5, 30, 7, 20), stack[0, 0, 2, 5:30, 7:20]
        )
        gone = source.read_region(0, 0, 1, 5, 30, 7, 20)
        assert gone.shape == (25, 13)
        assert gone.dtype == np.uint8
        assert not gone.any()


def test_tiled_rgb_charges_and_reserves_whole_pixels(tmp_path: Path) -> None:
    rgb = (np.arange(50 * 70 * 3, dtype=np.uint32) % 251).astype(np.uint8).reshape(50, 70, 3)
    path = write_rgb(tmp_path / "rgb.tif", rgb, tile=(16, 16))
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert source.file_tile() == (16, 16)
        budget = DecodeBudget()
        with decode_scope(budget) as scope:
            region = source.read_region(0, 1, 0, 5, 20, 10, 40)  # 2 x 3 tiles
        np.testing.assert_array_equal(region, rgb[5:20, 10:40, 1])
        assert scope.spent == 6 * 16 * 16 * 3 - 15 * 30 * 3
        assert budget.peak == 16 * 16 * 3


def test_a_tile_over_the_request_budget_is_named(tmp_path: Path) -> None:
    from zstack_analyzer.errors import LimitExceededError

    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK], tile=(16, 16))
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        with (
            decode_scope(DecodeBudget(request_bytes=100)),
            pytest.raises(LimitExceededError) as info,
        ):
            source.read_region(1, 1, 2, 0, 4, 0, 4)  # the rest of the tile is charged first
        assert "t.ome.tif: a 16 x 16 tile of plane t=1 c=1 z=2" in str(info.value)
        assert info.value.path == reader.path
        with decode_scope(DecodeBudget(block_bytes=100)), pytest.raises(LimitExceededError) as info:
            source.read_region(0, 1, 0, 0, 4, 0, 4)  # one tile's decode over the block cap
        assert "t.ome.tif: a 16 x 16 tile of plane t=0 c=1 z=0" in str(info.value)
        assert info.value.path == reader.path


def test_tiles_are_counted_to_the_last_column_and_row(tmp_path: Path) -> None:
    """A region ending one pixel into a tile charges that tile; one ending before it does not."""
    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK], tile=(16, 16))
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        for (y0, y1, x0, x1), tiles in [
            ((3, 17, 1, 17), 4),
            ((3, 16, 1, 17), 2),
            ((3, 17, 1, 16), 2),
            ((0, 15, 0, 15), 1),
        ]:
            with decode_scope(DecodeBudget()) as scope:
                region = source.read_region(0, 0, 0, y0, y1, x0, x1)
            np.testing.assert_array_equal(region, STACK[0, 0, 0, y0:y1, x0:x1])
            assert scope.spent == tiles * 16 * 16 * 2 - region.nbytes, (y0, y1, x0, x1)


def test_only_the_tiles_under_a_region_are_decoded(tmp_path: Path) -> None:
    """A corrupt tile just right of (or below) a region is never read for it."""
    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK], tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        spans = [(page.dataoffsets[i], page.databytecounts[i]) for i in (1, 5)]
    with path.open("r+b") as fh:
        for offset, count in spans:  # tile 1: row 0, column 1; tile 5: row 1, column 0
            fh.seek(offset)
            fh.write(b"\xff" * count)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        np.testing.assert_array_equal(
            source.read_region(0, 0, 0, 0, 15, 0, 15), STACK[0, 0, 0, :15, :15]
        )
        np.testing.assert_array_equal(
            source.read_region(0, 0, 0, 0, 16, 0, 16), STACK[0, 0, 0, :16, :16]
        )
        with pytest.raises(CorruptFileError) as info:
            source.read_region(0, 0, 0, 0, 4, 0, 17)
        assert str(info.value).startswith("t.ome.tif: cannot decode tile 1 of plane t=0 c=0 z=0: ")
        assert info.value.path == reader.path


def test_sparse_tiles_read_as_zeros(tmp_path: Path) -> None:
    """A tile with byte count 0 (never written, as sparse TIFF writers leave them) is zeros."""
    path = write_ome_tiff(tmp_path / "t.ome.tif", [STACK], tile=(16, 16))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]  # t=0, c=0, z=0
        tag = page.tags["TileByteCounts"]
        at, kind = tag.valueoffset, tag.dtype
    width = np.dtype(tifffile.TIFF.DATA_FORMATS[kind]).itemsize
    with path.open("r+b") as fh:
        for index in (6, 7):  # row 1, columns 1 and 2 (5 tiles a row)
            fh.seek(at + index * width)
            fh.write(b"\0" * width)
    expected = STACK[0, 0, 0].copy()
    expected[16:32, 16:48] = 0
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        for y0, y1, x0, x1 in [(0, 50, 0, 69), (10, 40, 10, 60), (17, 20, 20, 70)]:
            np.testing.assert_array_equal(
                source.read_region(0, 0, 0, y0, y1, x0, x1), expected[y0:y1, x0:x1]
            )


def test_a_reduced_level_without_blocks_charges_what_a_region_drops(tmp_path: Path) -> None:
    """DICOM levels decode only whole (no region grid): a region of level 1 drops the rest."""
    from tests.synthetic_dicom import write_dicom_pyramid

    plane = (np.arange(128 * 96, dtype=np.uint32) % 251).astype(np.uint8).reshape(128, 96)
    paths = write_dicom_pyramid(tmp_path, plane, levels=2)
    with open_image(paths[0]) as reader:
        assert reader.region_grid(0, 1) is None
        source = SceneSource(reader, 0)
        assert source.file_level_shapes() == [(128, 96), (64, 48)]
        level = plane[::2, ::2]
        with decode_scope(DecodeBudget()) as scope:
            region = source.read_region(0, 0, 0, 10, 30, 5, 25, level=1)
        np.testing.assert_array_equal(region, level[10:30, 5:25])
        assert scope.spent == (64 * 48 - 20 * 20) * source.spp
        with decode_scope(DecodeBudget()) as scope:
            whole = source.read_region(0, 0, 0, 0, 64, 0, 48, level=1)
        np.testing.assert_array_equal(whole, level)
        assert scope.spent == 0
        with decode_scope(DecodeBudget(request_bytes=10)), pytest.raises(Exception) as info:
            source.read_region(0, 0, 0, 0, 2, 0, 2, level=1)
        assert f"{reader.path.name}: plane t=0 z=0" in str(info.value)
        assert info.value.path == reader.path  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["rgb8", "grey16"])
def test_dicom_levels_charge_and_reserve_their_own_plane(tmp_path: Path, kind: str) -> None:
    """Whole-plane levels (DICOM) of RGB and 16-bit data: samples and bytes in every figure."""
    from tests.synthetic_dicom import write_dicom_wsi

    if kind == "rgb8":
        plane = (np.arange(128 * 96 * 3, dtype=np.uint32) % 251).astype(np.uint8)
        plane = plane.reshape(128, 96, 3)
        stack = plane[np.newaxis, np.newaxis]
    else:
        plane = (np.arange(128 * 96, dtype=np.uint32) * 37 % 60000).astype(np.uint16)
        plane = plane.reshape(128, 96)
        stack = plane[np.newaxis, np.newaxis]
    uid = "1.2.826.0.1.3680043.8.498.77"
    for level in (0, 1):
        step = 2**level
        write_dicom_wsi(
            tmp_path / f"level{level}.dcm",
            stack[:, :, ::step, ::step],
            tile=(32, 32),
            series_uid=uid,
            pixel_spacing_mm=0.00025 * step,
        )
    pixel = plane.itemsize * (3 if kind == "rgb8" else 1)
    with open_image(tmp_path / "level0.dcm") as reader:
        source = SceneSource(reader, 0)
        assert source.file_level_shapes() == [(128, 96), (64, 48)]
        for level, (ny, nx) in ((1, (64, 48)), (0, (128, 96))):
            step = 2**level
            expected = plane[::step, ::step]
            for c in range(source.spp):
                budget = DecodeBudget()
                with decode_scope(budget) as scope:
                    region = source.read_region(0, c, 0, 10, 30, 5, 25, level=level)
                want = expected[10:30, 5:25, c] if expected.ndim == 3 else expected[10:30, 5:25]
                np.testing.assert_array_equal(region, want)
                assert scope.spent == (ny * nx - 20 * 20) * pixel
                assert budget.peak == ny * nx * pixel  # this level's plane, reserved once


def _jpeg_segments(data: bytes) -> list[tuple[bytes, bytes]]:
    """(marker, segment) of a JPEG stream up to its scan; the scan and the rest as one piece."""
    import struct

    out, at = [], 2
    while data[at : at + 2] != b"\xff\xda":
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        out.append((data[at : at + 2], data[at : at + 2 + length]))
        at += 2 + length
    out.append((b"\xff\xda", data[at:]))
    return out


def test_jpeg_tiles_with_shared_tables(tmp_path: Path) -> None:
    """Tiles whose quantisation and Huffman tables are in the page's JPEGTables (as in slides)."""
    import imagecodecs

    plane = ((np.indices((64, 48)).sum(0) * 3) % 200 + 20).astype(np.uint8)
    shared = {b"\xff\xdb", b"\xff\xc4"}  # DQT, DHT
    tiles, tables = [], None
    for y in range(0, 64, 16):
        for x in range(0, 48, 16):
            parts = _jpeg_segments(
                imagecodecs.jpeg8_encode(plane[y : y + 16, x : x + 16], level=90)
            )
            these = b"".join(seg for marker, seg in parts if marker in shared)
            assert tables in (None, these)  # the same tables in every tile
            tables = these
            kept = (seg for marker, seg in parts if marker not in {*shared, b"\xff\xe0"})
            tiles.append(b"\xff\xd8" + b"".join(kept))
    jpegtables = b"\xff\xd8" + (tables or b"") + b"\xff\xd9"
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            iter(tiles),
            shape=(64, 48),
            dtype="uint8",
            tile=(16, 16),
            compression="jpeg",
            photometric="minisblack",
            extratags=[(347, 7, len(jpegtables), jpegtables, True)],
            metadata=None,
        )
    with tifffile.TiffFile(path) as tif:
        expected = tif.pages[0].asarray()
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert source.file_tile() == (16, 16)
        for y0, y1, x0, x1 in [(0, 16, 0, 16), (5, 40, 7, 45), (50, 64, 0, 48)]:
            np.testing.assert_array_equal(
                source.read_region(0, 0, 0, y0, y1, x0, x1), expected[y0:y1, x0:x1]
            )


@pytest.mark.parametrize("samples", [2, 3])
def test_a_planar_page_as_square_as_its_samples_is_not_read_as_tiles(
    tmp_path: Path, samples: int
) -> None:
    """n x n pixels of n separate samples: the page's shape (n, n, n) starts like the plane's."""
    data = (np.arange(samples**3, dtype=np.uint8) * 7 + 1).reshape(samples, samples, samples)
    path = tmp_path / "tiny.tif"
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        planarconfig="separate",
        tile=(16, 16),
        metadata=None,
    )
    with open_image(path) as reader:
        source = SceneSource(reader)  # scene 0 by default
        assert source.scene == 0
        assert source.spp == samples
        assert source.file_tile() is None
        for c in range(samples):
            np.testing.assert_array_equal(source.read_region(0, c, 0, 0, 2, 0, 2), data[c, :2, :2])


def test_reduced_levels_in_blocks_are_read_by_region_at_their_level(tmp_path: Path) -> None:
    """An Imaris file: chunked levels (not TIFF tiles), so a region goes to the reader's own."""
    from tests.synthetic_ims import write_ims

    path = write_ims(tmp_path / "s.ims", levels=2)
    with open_image(path) as reader:
        source = SceneSource(reader, 0)
        assert reader.region_grid(0, 1) is not None
        (ny, nx) = source.file_level_shapes()[1]
        level = np.asarray(reader.to_dask(0, 1)[1, 1, 2].compute(scheduler="sync"))
        assert level.shape == (ny, nx)
        np.testing.assert_array_equal(
            source.read_region(1, 1, 2, 3, 15, 2, nx - 1, level=1), level[3:15, 2 : nx - 1]
        )
