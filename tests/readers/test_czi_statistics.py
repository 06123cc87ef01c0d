"""The CZI reader's own directory statistics equal libCZI's, and opening needs no libCZI.

Why: since issue 22 the reader takes sizes, bounding boxes and pixel types from
the directory it parses itself, and opens libCZI only for pixels. A wrong box
would silently crop or pad a mosaic, so every CZI of the corpus and every
synthetic layout (scenes with gaps, mosaics without S, RGB, extra dimensions)
is compared with what pylibCZIrw reports for the same file.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.needs import unavailable
from tests.synthetic_czi import (
    write_czi_extra_dim,
    write_czi_mosaic,
    write_czi_rgb,
    write_czi_scenes,
    write_czi_stack,
)
from zstack_analyzer import open_image
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers.czi import CziReader, _check_structure

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@pytest.fixture(autouse=True)
def _pylibczirw() -> None:
    if importlib.util.find_spec("pylibCZIrw") is None:
        unavailable("pylibCZIrw is not installed (pip install -e '.[czi]')")


def _libczi(path: Path) -> dict[str, Any]:
    """What pylibCZIrw says of ``path``: dimension sizes, rectangles and pixel types."""
    from pylibCZIrw import czi as pyczi

    with pyczi.open_czi(str(path)) as doc:
        box = doc.total_bounding_box
        total = doc.total_bounding_rectangle
        stats = doc._czi_reader.GetSubBlockStats()
        scenes = {
            int(k): (v.boundingBox.x, v.boundingBox.y, v.boundingBox.w, v.boundingBox.h)
            for k, v in stats.sceneBoundingBoxes.items()
        }
        channels = box["C"][1] - box["C"][0]
        pixel_types = [doc.get_channel_pixel_type(c) for c in range(min(max(channels, 1), 16))]
    dims = {k: v[1] - v[0] for k, v in box.items() if k not in ("X", "Y")}
    return {
        "dims": dims,
        "box": (total.x, total.y, total.w, total.h),
        "scenes": scenes,
        "pixel_types": pixel_types,
    }


def _ours(path: Path) -> dict[str, Any]:
    stats = _check_structure(path, ReadLimits()).directory.statistics
    dims = {"T": 1, "Z": 1, "C": 1} | {k: size for k, (_, size) in stats.bounds.items()}
    dims.pop("S", None)  # pylibCZIrw's total_bounding_box leaves S out
    channels = dims["C"]
    return {
        "dims": dims,
        "box": stats.box,
        "scenes": stats.scenes,
        "pixel_types": [stats.pixel_type(c) for c in range(min(max(channels, 1), 16))],
    }


def _corpus() -> list[Path]:
    from tests.conftest import testdata_dir

    root = testdata_dir()
    return sorted((root / "czi").glob("*.czi")) if root is not None else []


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_statistics_equal_libczi_on_the_corpus(path: Path) -> None:
    assert _ours(path) == _libczi(path)


def test_the_corpus_is_there(testdata: Path) -> None:
    """The parametrised test above must not pass by having no files."""
    assert len(sorted((testdata / "czi").glob("*.czi"))) >= 5


SYNTHETIC: dict[str, Callable[[Path], object]] = {
    "stack": lambda p: write_czi_stack(p, t=2, c=3, z=4, y=8, x=10),
    "scenes with a gap": lambda p: write_czi_scenes(
        p, [(8, 10, (0, 0)), (6, 12, (40, -20)), (5, 5, (-7, 9))], c=2, s_indices=[1, 3, 4]
    ),
    "mosaic without S, a tile missing": lambda p: write_czi_mosaic(
        p, tile=(8, 12), grid=(2, 3), skip=(4,), with_scene=False, c=2
    ),
    "mosaic with S": lambda p: write_czi_mosaic(p, tile=(8, 12), grid=(2, 2)),
    "rgb48": lambda p: write_czi_rgb(p, dtype="uint16"),
    "extra dimension H": lambda p: write_czi_extra_dim(p, axis="H", size=3),
}


@pytest.mark.parametrize("kind", list(SYNTHETIC))
def test_statistics_equal_libczi_on_synthetic_layouts(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "file.czi"
    SYNTHETIC[kind](path)
    assert _ours(path) == _libczi(path)


def test_metadata_needs_no_libczi_reader_and_pixels_open_one(tmp_path: Path) -> None:
    """Opening and metadata read the file ourselves; the first pixel read opens libCZI."""
    path = tmp_path / "stack.czi"
    expected = write_czi_stack(path, c=2, z=3, y=8, x=10)
    opened: list[str] = []
    from pylibCZIrw import czi as pyczi

    original = pyczi.CziReader.__init__

    def counting(self: Any, filepath: str, *args: Any, **kwargs: Any) -> None:
        opened.append(filepath)
        original(self, filepath, *args, **kwargs)

    module = sys.modules["pylibCZIrw.czi"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module.CziReader, "__init__", counting)
        with open_image(path) as image:
            assert isinstance(image, CziReader)
            md = image.metadata(0)
            assert (md.size_c, md.size_z, md.size_y, md.size_x) == (2, 3, 8, 10)
            assert "<ImageDocument" in image.raw_metadata()["xml"]
            assert opened == []
            np.testing.assert_array_equal(image.read_plane(0, 0, 1, 2), expected[0, 1, 2])
            assert opened == [str(path)]


def _both_parses(path: Path) -> tuple[Any, Any]:
    """The directory of ``path`` parsed by the one-struct path and by the entry-by-entry walk."""
    import os
    import struct

    from zstack_analyzer.readers.czi import _parse_uniform, _parse_walk

    data = path.read_bytes()
    (dir_pos,) = struct.unpack_from("<q", data, 84)
    (entries,) = struct.unpack_from("<i", data, dir_pos + 32)
    raw = data[dir_pos + 160 :]
    size = os.path.getsize(path)
    return _parse_uniform(path, raw, size, entries), _parse_walk(path, raw, size, entries)


def _facts(directory: Any) -> dict[str, Any]:
    stats = directory.statistics
    return {
        "positions": list(directory.positions),
        "header_sizes": list(directory.header_sizes),
        "coords": directory.coords,
        "block": directory.block,
        "bounds": stats.bounds,
        "box": stats.box,
        "scenes": stats.scenes,
        "pixel_types": [stats.pixel_type(c) for c in range(4)],
    }


@pytest.mark.parametrize("kind", list(SYNTHETIC))
def test_uniform_parse_equals_the_walk(tmp_path: Path, kind: str) -> None:
    """The fast path unpacks only some fields (the rest are pad bytes): it must see what the walk sees.

    Why: a pad count off by one shifts every later field, and a column read at the
    wrong offset would still hold plausible numbers.
    """
    path = tmp_path / "file.czi"
    SYNTHETIC[kind](path)
    uniform, walk = _both_parses(path)
    assert uniform is not None  # these writers give every entry one layout
    assert _facts(uniform) == _facts(walk)


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_uniform_parse_equals_the_walk_on_the_corpus(path: Path) -> None:
    uniform, walk = _both_parses(path)
    if uniform is not None:  # a multi-part or mixed directory takes the walk only
        assert _facts(uniform) == _facts(walk)
