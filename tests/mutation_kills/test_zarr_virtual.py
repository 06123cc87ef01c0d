"""The virtual OME-Zarr store (``zarr/virtual.py``) key by key, against the pixels written.

A tall tiled OME-TIFF (4100 x 300, 64 px tiles) gives levels of many chunks, so computed
levels are assembled from several chunks of the level above and edge chunks are partial;
a pyramid whose stored levels are 4x steps has a file level for only some of ours.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.omezarr.helpers import expected_level
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.budget import DecodeBudget, decode_scope
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.zarr.ngff import display_windows
from zstack_analyzer.zarr.virtual import VirtualOmeZarr

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from zstack_analyzer.readers._base import ImageReader

#: T, C, Z, Y, X of the tall file: levels 4100x300, 2050x150, 1025x75, 513x38, 257x19.
TALL = encoded_stack(1, 2, 2, 4100, 300)
LEVELS = [(4100, 300), (2050, 150), (1025, 75), (513, 38), (257, 19)]
NO_UNIT = [f"{axis}: the file states no voxel size; scale 1 with no unit" for axis in "zyx"]


@pytest.fixture(scope="module")
def tall_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tall") / "tall.ome.tif"
    return write_ome_tiff(path, [TALL], tile=(64, 64))


@pytest.fixture(scope="module")
def tall_levels() -> list[np.ndarray]:
    return [expected_level(TALL, level) for level in range(len(LEVELS))]


@pytest.fixture
def tall(tall_path: Path) -> Iterator[ImageReader]:
    with open_image(tall_path) as reader:
        yield reader


def _chunk(store: VirtualOmeZarr, key: str, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.frombuffer(store.get(key), dtype="<u2").reshape(shape)


def _missing(store: VirtualOmeZarr, key: str, **kwargs: object) -> None:
    with pytest.raises(KeyError):
        store.get(key, **kwargs)  # type: ignore[arg-type]


def test_layout_grid_and_zarray_of_every_level(tall: ImageReader) -> None:
    store = VirtualOmeZarr(tall, cache=None, identity="tall")
    assert store.layout(0).levels == LEVELS
    grids = [store.chunk_grid(0, level) for level in range(5)]
    assert grids == [
        (1, 2, 2, 65, 5),
        (1, 2, 2, 33, 3),
        (1, 2, 2, 17, 2),
        (1, 2, 2, 9, 1),
        (1, 2, 2, 5, 1),
    ]
    for level, (ny, nx) in enumerate(LEVELS):
        for key in (f"0/{level}/.zarray", f"/0/{level}/.zarray/"):
            assert json.loads(store.get(key)) == {
                "zarr_format": 2,
                "shape": [1, 2, 2, ny, nx],
                "chunks": [1, 1, 1, 64, min(64, nx)],  # capped at the level's width
                "dtype": "<u2",
                "compressor": None,
                "fill_value": 0,
                "order": "C",
                "filters": None,
                "dimension_separator": "/",
            }
        assert store.get(f"0/{level}/.zattrs") == b"{}"
    # The JSON is compact and sorted (its bytes are part of an ETag).
    assert store.get("0/0/.zarray").startswith(b'{"chunks":[1,1,1,64,64],"compressor":null,')


def test_level_zero_chunks_are_the_file_pixels_and_edges_are_padded(tall: ImageReader) -> None:
    store = VirtualOmeZarr(tall, cache=None, identity="tall")
    for t, c, z, cy, cx in [(0, 0, 0, 0, 0), (0, 1, 1, 3, 2), (0, 1, 0, 10, 1)]:
        got = _chunk(store, f"0/0/{t}/{c}/{z}/{cy}/{cx}")
        want = TALL[t, c, z, cy * 64 : cy * 64 + 64, cx * 64 : cx * 64 + 64]
        np.testing.assert_array_equal(got, want)
    # Last row of chunks: 4 rows of pixels, 60 of zeros; last column: 44 columns, 20 of zeros.
    corner = _chunk(store, "0/0/0/1/1/64/4")
    np.testing.assert_array_equal(corner[:4, :44], TALL[0, 1, 1, 4096:, 256:])
    assert not corner[4:].any()
    assert not corner[:, 44:].any()
    assert len(store.get("0/0/0/0/0/64/4")) == 64 * 64 * 2


def test_computed_levels_are_assembled_from_several_chunks(
    tall: ImageReader, tall_levels: list[np.ndarray], tmp_path: Path
) -> None:
    """Every reduced level equals the whole plane's 2x reductions, chunk by chunk."""
    store = VirtualOmeZarr(tall, cache=RenderCache(tmp_path / "cache"), identity="tall")
    for level in range(1, 5):
        nx = LEVELS[level][1]
        grid = store.chunk_grid(0, level)
        for t, c, z in [(0, 1, 1), (0, 0, 1)]:
            want = tall_levels[level][t, c, z]
            for cy in (0, 1, grid[3] - 1):
                for cx in range(grid[4]):
                    key = f"0/{level}/{t}/{c}/{z}/{cy}/{cx}"
                    got = _chunk(store, key, (64, min(64, nx)))
                    y0, x0 = cy * 64, cx * 64
                    part = want[y0 : y0 + 64, x0 : x0 + 64]
                    np.testing.assert_array_equal(got[: part.shape[0], : part.shape[1]], part)
                    assert not got[part.shape[0] :].any()
                    assert not got[:, part.shape[1] :].any()


def test_computed_chunks_are_cached_under_their_own_keys(
    tall: ImageReader, tall_levels: list[np.ndarray], tmp_path: Path
) -> None:
    cache = RenderCache(tmp_path / "cache")
    store = VirtualOmeZarr(tall, cache=cache, identity="tall")
    store.get("0/1/0/1/1/2/1")
    names = sorted(p.name for p in (tmp_path / "cache").rglob("vz1-*"))
    assert names == ["vz1-s0-l1-0-1-1-2-1"]
    stored = cache.get("tall", "vz1-s0-l1-0-1-1-2-1")
    assert stored == np.ascontiguousarray(tall_levels[1][0, 1, 1, 128:192, 64:128]).tobytes()
    # The last chunk of level 1 is 2 x 22 pixels: only those are cached (no padding).
    store.get("0/1/0/0/0/32/2")
    last = cache.get("tall", "vz1-s0-l1-0-0-0-32-2")
    assert last is not None and len(last) == 2 * 22 * 2


def test_a_cached_chunk_is_served_and_a_damaged_one_recomputed(
    tall: ImageReader, tall_levels: list[np.ndarray], tmp_path: Path
) -> None:
    cache = RenderCache(tmp_path / "cache")
    planted = np.arange(64 * 64, dtype="<u2").reshape(64, 64)
    cache.put("tall", "vz1-s0-l1-0-0-0-0-0", planted.tobytes())
    cache.put("tall", "vz1-s0-l1-0-0-0-2-1", planted[::-1].tobytes())  # not at the origin
    cache.put("tall", "vz1-s0-l1-0-0-0-1-0", b"\x01\x02\x03")  # wrong length: damaged
    store = VirtualOmeZarr(tall, cache=cache, identity="tall")
    np.testing.assert_array_equal(_chunk(store, "0/1/0/0/0/0/0"), planted)
    np.testing.assert_array_equal(_chunk(store, "0/1/0/0/0/2/1"), planted[::-1])
    np.testing.assert_array_equal(
        _chunk(store, "0/1/0/0/0/1/0"), tall_levels[1][0, 0, 0, 64:128, 0:64]
    )
    # The entry of another identity is not this file's.
    other = VirtualOmeZarr(tall, cache=cache, identity="other")
    np.testing.assert_array_equal(_chunk(other, "0/1/0/0/0/0/0"), tall_levels[1][0, 0, 0, :64, :64])


def test_chunk_keys_out_of_range_or_malformed_are_missing(tall: ImageReader) -> None:
    store = VirtualOmeZarr(tall, cache=None, identity="tall")
    for key in [
        "0/0/1/0/0/0/0",  # t
        "0/0/0/2/0/0/0",  # c
        "0/0/0/0/2/0/0",  # z
        "0/0/0/0/0/65/0",  # cy
        "0/0/0/0/0/0/5",  # cx
        "0/4/0/0/0/5/0",
        "0/5/.zarray",  # level
        "0/5/0/0/0/0/0",
        "1/.zattrs",  # scene
        "1/.zgroup",
        "1/0/.zarray",
        "0/0/0/0/0/0",  # too few indices
        "0/0/0/0/0/0/0/0",  # too many
        "0/0/0/0/x/0/0",
        "0/x/.zarray",
        "x/0/.zarray",
        "0/0",
        "0",
        "0/0/.zgroup",
        "0/.zarray",
        "OME/.zattrs",
        "",
        "0/0/.zarrayX",  # only slashes are stripped from a key's ends
        "X0/.zattrs",
    ]:
        _missing(store, key)
    with pytest.raises(KeyError):
        store.chunk(0, 0, 0, 0, 0, -1, 0)
    with pytest.raises(KeyError):
        store.chunk(0, 0, -1, 0, 0, 0, 0)
    with pytest.raises(KeyError):
        store.source(-1)
    with pytest.raises(KeyError):
        store.source(1)


def test_group_keys_of_scene_zero_at_the_root_and_under_its_index(tall: ImageReader) -> None:
    store = VirtualOmeZarr(tall, cache=None, identity="tall")
    assert json.loads(store.get(".zgroup")) == {"zarr_format": 2}
    assert json.loads(store.get("0/.zgroup")) == {"zarr_format": 2}
    root = json.loads(store.get(".zattrs", name="tall cells"))
    inner = json.loads(store.get("0/.zattrs", name="tall cells"))
    paths = [d["path"] for d in root["multiscales"][0]["datasets"]]
    assert paths == ["0/0", "0/1", "0/2", "0/3", "0/4"]
    assert [d["path"] for d in inner["multiscales"][0]["datasets"]] == ["0", "1", "2", "3", "4"]
    assert root["zstack"] == {"scenes": 1, "scene": 0, "warnings": NO_UNIT}
    assert inner["zstack"] == root["zstack"]
    assert root["multiscales"][0]["version"] == "0.4"
    assert root["omero"] == inner["omero"]
    # The leading or trailing slashes of a key do not matter.
    assert store.get("/0/.zattrs/", name="tall cells") == store.get("0/.zattrs", name="tall cells")


def test_windows_come_from_the_smallest_level_assembled_from_its_chunks(
    tall: ImageReader, tall_levels: list[np.ndarray], tmp_path: Path
) -> None:
    cache = RenderCache(tmp_path / "cache")
    store = VirtualOmeZarr(tall, cache=cache, identity="tall")
    top = tall_levels[4][0]
    want = display_windows(store.layout(0), lambda c, z: top[c, z])
    assert store.windows(0) == want
    assert store.windows(0) is store.windows(0)  # kept
    channels = json.loads(store.get(".zattrs"))["omero"]["channels"]
    assert [(ch["window"]["start"], ch["window"]["end"]) for ch in channels] == want
    saved = cache.get("tall", "vzw1-windows-s0")
    assert saved is not None and json.loads(saved) == [list(w) for w in want]


def test_cached_windows_are_served_as_they_are(tall: ImageReader, tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "cache")
    cache.put("tall", "vzw1-windows-s0", b"[[1, 2], [3, 4.5]]")
    store = VirtualOmeZarr(tall, cache=cache, identity="tall")
    assert store.windows(0) == [(1.0, 2.0), (3.0, 4.5)]


def test_windows_see_the_first_row_and_column(tmp_path: Path) -> None:
    """One-level planes whose only bright pixels are in row 0, or in column 0."""
    import tifffile

    for edge in ("row", "column"):
        plane = np.zeros((10, 10), dtype=np.uint16)
        if edge == "row":
            plane[0, :] = 700
        else:
            plane[:, 0] = 700
        tifffile.imwrite(tmp_path / f"{edge}.tif", plane)
        with open_image(tmp_path / f"{edge}.tif") as reader:
            store = VirtualOmeZarr(reader, cache=None, identity=edge)
            windows = store.windows(0)
            layout = store.layout(0)
        assert windows == display_windows(layout, lambda c, z, p=plane: p)
        inner = plane[1:] if edge == "row" else plane[:, 1:]
        assert windows != display_windows(layout, lambda c, z, p=inner: p)


@pytest.mark.parametrize("damaged", [b"not json", b'[["a", 1]]', b"[1, 2]", b"[[1]]"])
def test_a_damaged_cached_window_is_computed_again(
    tall: ImageReader, tall_levels: list[np.ndarray], tmp_path: Path, damaged: bytes
) -> None:
    cache = RenderCache(tmp_path / "cache")
    cache.put("tall", "vzw1-windows-s0", damaged)
    store = VirtualOmeZarr(tall, cache=cache, identity="tall")
    top = tall_levels[4][0]
    assert store.windows(0) == display_windows(store.layout(0), lambda c, z: top[c, z])


def test_windows_over_the_decode_limits_are_the_full_range_and_not_kept(tall: ImageReader) -> None:
    store = VirtualOmeZarr(tall, cache=None, identity="tall")
    with decode_scope(DecodeBudget(request_bytes=10_000)):
        attrs = json.loads(store.get(".zattrs"))
    windows = [ch["window"] for ch in attrs["omero"]["channels"]]
    assert windows == [{"start": 0.0, "end": 65535.0, "min": 0.0, "max": 65535.0}] * 2
    assert attrs["zstack"]["scenes"] == 1
    # Not kept: a request under the normal budget computes them.
    later = json.loads(store.get(".zattrs"))["omero"]["channels"]
    assert all(ch["window"]["end"] < 65535 for ch in later)


def test_windows_of_one_store_are_computed_once_even_without_a_cache(tall: ImageReader) -> None:
    store = VirtualOmeZarr(tall, cache=None, identity="tall")
    first = store.windows(0)
    # A budget of nothing would refuse any read: the kept windows need none.
    with decode_scope(DecodeBudget(request_bytes=1)):
        assert store.windows(0) == first


def test_file_levels_map_to_ours_only_where_the_shapes_match(tmp_path: Path) -> None:
    """A file pyramid of 4x steps: our level 2 is its level 1; our level 1 is computed."""
    import tifffile

    stack = encoded_stack(1, 1, 1, 1400, 1000)
    path = tmp_path / "steps4.ome.tif"
    options = {"tile": (32, 32), "photometric": "minisblack"}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(stack, subifds=1, metadata={"axes": "TCZYX"}, **options)
        tif.write(stack[..., ::4, ::4], subfiletype=1, metadata=None, **options)
    cache = RenderCache(tmp_path / "cache")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=cache, identity="steps4")
        assert store.layout(0).levels == [(1400, 1000), (700, 500), (350, 250)]
        assert [store.file_level(0, level) for level in range(3)] == [None, None, 1]
        np.testing.assert_array_equal(
            _chunk(store, "0/2/0/0/0/0/0", (350, 250)), stack[0, 0, 0, ::4, ::4]
        )
        np.testing.assert_array_equal(
            _chunk(store, "0/1/0/0/0/0/0", (700, 500)), expected_level(stack, 1)[0, 0, 0]
        )
        # The windows read the file's level 2 (every 4th pixel), not 4x4 means of level 0.
        file_top = stack[0, :, :, ::4, ::4]
        assert store.windows(0) == display_windows(store.layout(0), lambda c, z: file_top[c, z])
    assert sorted(p.name for p in (tmp_path / "cache").rglob("vz1-*")) == ["vz1-s0-l1-0-0-0-0-0"]


def test_a_big_endian_file_is_served_little_endian(tmp_path: Path) -> None:
    import tifffile

    plane = encoded_stack(1, 1, 1, 70, 90)[0, 0, 0]
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, plane, byteorder=">")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=None, identity="be")
        assert json.loads(store.get("0/0/.zarray"))["dtype"] == "<u2"
        np.testing.assert_array_equal(_chunk(store, "0/0/0/0/0/0/0", (70, 90)), plane)


def test_collection_keys_name_every_scene(tmp_path: Path) -> None:
    two = [encoded_stack(1, 2, 1, 40, 30), encoded_stack(1, 1, 3, 20, 10)]
    path = write_ome_tiff(tmp_path / "two.ome.tif", two)
    cache = RenderCache(tmp_path / "cache")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=cache, identity="two")
        assert json.loads(store.get(".zgroup", collection=True)) == {"zarr_format": 2}
        assert json.loads(store.get("/OME/.zgroup", collection=True)) == {"zarr_format": 2}
        assert store.get(".zattrs", collection=True) == b'{"bioformats2raw.layout":3}'
        assert store.get("OME/.zattrs", collection=True) == b'{"series":["0","1"]}'
        for key in ("OME", "OME/x", "OME/METADATA.ome.xml/x", "OME/0/.zattrs"):
            _missing(store, key, collection=True)
        xml = store.get("OME/METADATA.ome.xml", collection=True, name="pair").decode()
        assert xml.count("<Image ") == 2
        assert 'ID="Image:0"' in xml and 'ID="Image:1"' in xml
        assert 'SizeC="2"' in xml and 'SizeZ="3"' in xml
        assert store.ome_xml(name="pair") is store.ome_xml(name="pair")  # kept per name
        # Scene 1 in the collection: its own group, levels, chunks and windows.
        attrs = json.loads(store.get("1/.zattrs", collection=True))
        assert attrs["zstack"] == {"scenes": 2, "scene": 1, "warnings": NO_UNIT}
        assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0"]
        assert json.loads(store.get("1/0/.zarray"))["shape"] == [1, 1, 3, 20, 10]
        np.testing.assert_array_equal(_chunk(store, "1/0/0/0/2/0/0", (20, 10)), two[1][0, 0, 2])
        assert store.scene_name(1, "pair") == store.scene_name(1, "pair")
        assert attrs["multiscales"][0]["name"] == store.scene_name(1)
        # The root without collection is scene 0, whatever the collection says.
        assert json.loads(store.get(".zattrs"))["zstack"]["scene"] == 0
    names = sorted(p.name for p in (tmp_path / "cache").rglob("vzw1-*"))
    assert names == ["vzw1-windows-s0", "vzw1-windows-s1"]


def test_scene_names_of_a_file_of_several_unnamed_scenes(tmp_path: Path) -> None:
    """Two plain TIFF series (no names): the given name with ``#n``, per name asked."""
    import tifffile

    path = tmp_path / "0123abcd.tif"
    tifffile.imwrite(path, encoded_stack(1, 1, 1, 20, 10)[0, 0, 0], metadata=None)
    tifffile.imwrite(path, encoded_stack(1, 1, 1, 30, 10)[0, 0, 0], append=True, metadata=None)
    with open_image(path) as reader:
        assert [reader.metadata(i).scene_name for i in range(2)] == [None, None]
        store = VirtualOmeZarr(reader, cache=None, identity="h")
        assert [store.scene_name(i, "cells.tif") for i in range(2)] == [
            "cells.tif #1",
            "cells.tif #2",
        ]
        root = json.loads(store.get(".zattrs", name="cells.tif"))
        assert root["multiscales"][0]["name"] == "cells.tif #1"
        attrs = json.loads(store.get("1/.zattrs", name="cells.tif"))
        assert attrs["multiscales"][0]["name"] == "cells.tif #2"
        assert attrs["omero"]["name"] == "cells.tif #2"
        cells = store.get("OME/METADATA.ome.xml", name="cells.tif", collection=True).decode()
        other = store.get("OME/METADATA.ome.xml", name="other.tif", collection=True).decode()
        assert 'Name="cells.tif #2"' in cells and "other.tif" not in cells
        assert 'Name="other.tif #1"' in other and "cells.tif" not in other


def test_reduced_levels_round_their_means_at_every_level(tmp_path: Path) -> None:
    """Noise, whose 2x2 means fall on halves: every computed level rounds as the pyramid does."""
    noise = np.random.default_rng(7).integers(0, 60000, size=(1, 1, 1, 4100, 130), dtype=np.uint16)
    path = write_ome_tiff(tmp_path / "noise.ome.tif", [noise], tile=(64, 64))
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=None, identity="noise")
        for level in (2, 3):
            want = expected_level(noise, level)[0, 0, 0]
            nx = want.shape[1]
            got = _chunk(store, f"0/{level}/0/0/0/1/0", (64, min(64, nx)))
            np.testing.assert_array_equal(got, want[64:128, :64])
