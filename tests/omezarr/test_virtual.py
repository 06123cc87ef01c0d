"""The virtual store without HTTP: the file's own pyramid levels are served as they are."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from tests.omezarr.helpers import expected_level
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
