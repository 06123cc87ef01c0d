"""The virtual store without HTTP: the file's own pyramid levels are served as they are."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from tests.omezarr.helpers import dim_stack, expected_level
from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_pyramid, write_ome_tiff
from zstack_analyzer import open_image
from zstack_analyzer.cache import RenderCache
from zstack_analyzer.zarr.virtual import VirtualOmeZarr

if TYPE_CHECKING:
    from pathlib import Path


def _chunk(store: VirtualOmeZarr, key: str, shape: tuple[int, int]) -> np.ndarray:
    return np.frombuffer(store.get(key), dtype="<u2").reshape(shape)


def test_file_pyramid_levels_are_served_not_recomputed(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 1500, 1100)
    path = write_ome_pyramid(tmp_path / "pyr.ome.tif", stack, levels=3)
    cache = RenderCache(tmp_path / "cache")
    with open_image(path) as reader:
        assert reader.level_count(0) == 3
        store = VirtualOmeZarr(reader, cache=cache, identity="pyr")
        shapes = [json.loads(store.get(f"0/{lv}/.zarray"))["shape"][3:] for lv in range(3)]
        assert shapes == [[1500, 1100], [750, 550], [375, 275]]
        np.testing.assert_array_equal(
            _chunk(store, "0/1/0/0/1/0/0", (750, 550)), stack[0, 0, 1, ::2, ::2]
        )
        np.testing.assert_array_equal(
            _chunk(store, "0/2/0/0/0/0/0", (375, 275)), stack[0, 0, 0, ::4, ::4]
        )
    assert not list((tmp_path / "cache").rglob("vz1-*"))  # nothing computed, nothing cached


def test_levels_without_a_file_pyramid_are_computed_once(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 1, 1100, 600)
    path = write_ome_tiff(tmp_path / "flat.ome.tif", [stack])
    cache = RenderCache(tmp_path / "cache")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=cache, identity="flat")
        top = _chunk(store, "0/2/0/0/0/0/0", (275, 150))
        np.testing.assert_array_equal(top, expected_level(stack, 2)[0, 0, 0])
        cached = sorted(p.name for p in (tmp_path / "cache").rglob("vz1-*"))
        assert cached == ["vz1-s0-l1-0-0-0-0-0", "vz1-s0-l2-0-0-0-0-0"]
        # A second store (another request) reads level 2 from the cache: same bytes.
        again = VirtualOmeZarr(reader, cache=cache, identity="flat")
        np.testing.assert_array_equal(_chunk(again, "0/2/0/0/0/0/0", (275, 150)), top)


def test_windows_are_those_convert_writes_per_channel(tmp_path: Path) -> None:
    """The served ``omero`` windows are convert's 1-99 % windows, not the dtype's range."""
    import zarr

    from zstack_analyzer.render.colour import percentile_window
    from zstack_analyzer.zarr.writer import convert

    stack = dim_stack(3, 4, 1100, 900)
    path = write_ome_tiff(tmp_path / "dim.ome.tif", [stack])
    convert(path, tmp_path / "dim.ome.zarr")
    written = zarr.open_group(str(tmp_path / "dim.ome.zarr"), mode="r").attrs["omero"]
    cache = RenderCache(tmp_path / "cache")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=cache, identity="dim")
        served = json.loads(store.get(".zattrs"))["omero"]
        again = json.loads(store.get("0/.zattrs"))["omero"]
    windows = [ch["window"] for ch in served["channels"]]
    assert windows == [ch["window"] for ch in written["channels"]]
    assert windows == [ch["window"] for ch in again["channels"]]
    # Each channel's own window, from the smallest level (here level 2, 275 x 225), all 4 planes.
    top = expected_level(stack, 2)[0]
    for channel, window in enumerate(windows):
        expected = percentile_window(top[channel])
        assert (window["start"], window["end"]) == expected
        assert 76 <= window["start"] < window["end"] <= 320
        assert (window["min"], window["max"]) == (0, 65535)
    assert len({(w["start"], w["end"]) for w in windows}) == 3
    assert [p.name for p in (tmp_path / "cache").rglob("vzw1-windows-*")] == ["vzw1-windows-s0"]


def test_windows_are_read_from_the_render_cache(tmp_path: Path) -> None:
    """Computed once: a new store (another process, after a restart) takes them from the cache."""
    path = write_ome_tiff(tmp_path / "dim.ome.tif", [dim_stack(2, 1, 300, 200)])
    cache = RenderCache(tmp_path / "cache")
    cache.put("dim", "vzw1-windows-s0", b"[[1, 2], [3, 4]]")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=cache, identity="dim")
        channels = json.loads(store.get("0/.zattrs"))["omero"]["channels"]
    assert [(ch["window"]["start"], ch["window"]["end"]) for ch in channels] == [(1, 2), (3, 4)]


def test_an_unnamed_scene_is_called_by_the_given_display_name(tmp_path: Path) -> None:
    """The stored file's name (a content hash in the service) never names the image."""
    import tifffile

    path = tmp_path / "cb5087fe8a9147c0bf3070ee29aae1ed.tif"
    tifffile.imwrite(path, dim_stack(1, 1, 64, 48)[0, 0, 0])
    with open_image(path) as reader:
        assert reader.metadata(0).scene_name is None
        store = VirtualOmeZarr(reader, cache=None, identity="plain")
        attrs = json.loads(store.get(".zattrs", name="my cells.tif"))
        xml = store.get("OME/METADATA.ome.xml", name="my cells.tif", collection=True).decode()
    assert attrs["multiscales"][0]["name"] == "my cells.tif"
    assert attrs["omero"]["name"] == "my cells.tif"
    assert 'Name="my cells.tif"' in xml
    assert "cb5087fe" not in json.dumps(attrs) + xml


def test_the_collection_root_lists_every_scene(tmp_path: Path) -> None:
    """As a collection the root is no image: bioformats2raw.layout 3 and an OME group."""
    path = write_ome_tiff(
        tmp_path / "two.ome.tif", [encoded_stack(1, 2, 1, 40, 30), encoded_stack(1, 1, 1, 20, 10)]
    )
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=None, identity="two")
        assert json.loads(store.get(".zattrs", collection=True)) == {"bioformats2raw.layout": 3}
        assert json.loads(store.get("OME/.zattrs", collection=True)) == {"series": ["0", "1"]}
        assert json.loads(store.get("OME/.zgroup", collection=True)) == {"zarr_format": 2}
        # The single-scene view keeps scene 0 at its root and has no OME group.
        assert "multiscales" in json.loads(store.get(".zattrs"))
        for missing in ("OME/.zattrs", "OME/METADATA.ome.xml"):
            try:
                store.get(missing)
            except KeyError:
                continue
            raise AssertionError(missing)


def test_windows_of_a_pyramidal_file_come_from_its_own_smallest_level(tmp_path: Path) -> None:
    """Bounded work: a slide-like file's windows read its stored reduced level, not level 0."""
    from zstack_analyzer.render.colour import percentile_window

    stack = dim_stack(2, 1, 1500, 1100)
    path = write_ome_pyramid(tmp_path / "pyr.ome.tif", stack, levels=3)
    cache = RenderCache(tmp_path / "cache")
    with open_image(path) as reader:
        store = VirtualOmeZarr(reader, cache=cache, identity="pyr")
        channels = json.loads(store.get(".zattrs"))["omero"]["channels"]
    for channel, entry in enumerate(channels):
        # The file's level 2 is every 4th pixel (our own reduction would be 4x4 means).
        expected = percentile_window(stack[0, channel, :, ::4, ::4])
        assert (entry["window"]["start"], entry["window"]["end"]) == expected
    assert not list((tmp_path / "cache").rglob("vz1-*"))  # no level computed from level 0
