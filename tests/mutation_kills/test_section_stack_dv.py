"""MRC and DeltaVision section stacks and the DeltaVision header (mutation kills, sixth round).

References: the written stacks themselves (:func:`tests.synthetic.encoded_stack`,
written by :func:`tests.synthetic_dv.write_dv` from the DeltaVision header layout
and by ``mrcfile`` for MRC), and :meth:`ImageReader.read_region`'s documented
clipping (a negative bound is 0, not a count from the end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.synthetic import encoded_stack
from tests.synthetic_dv import write_dv
from zstack_analyzer import CorruptFileError, SceneNotFoundError, open_image
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.readers._base import ImageReader
from zstack_analyzer.readers._section_stack import (
    HEADER_BYTES,
    check_data_extent,
    data_block_offset,
    read_fixed_header,
)

if TYPE_CHECKING:
    from pathlib import Path

STACK = encoded_stack(1, 1, 2, 12, 16)


@pytest.fixture(scope="module", params=["dv", "mrc"])
def section_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-section 12 x 16 stack as DeltaVision and as MRC."""
    folder = tmp_path_factory.mktemp("sections")
    if request.param == "dv":
        return write_dv(folder / "stack.dv", STACK)
    import mrcfile

    path = folder / "stack.mrc"
    with mrcfile.new(path) as mrc:
        # MRC stores the bottom row first, like DeltaVision: flip so the reader's planes are STACK's.
        mrc.set_data(np.ascontiguousarray(STACK[0, 0, :, ::-1]))
    return path


def _clipped(plane: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The documented region: each bound clipped to 0 below, the plane's size above."""
    return plane[max(0, rows[0]) : max(0, rows[1]), max(0, cols[0]) : max(0, cols[1])]


BOUNDS = [
    ((0, 12), (0, -3)),  # a negative end column: no columns, not "all but the last 3"
    ((0, -3), (0, 16)),  # a negative end row
    ((-5, -3), (-4, -1)),
    ((-2, 5), (-7, 9)),  # negative starts are 0
    ((2, 30), (3, 40)),  # ends past the plane stop at it
    ((5, 2), (6, 1)),  # empty: start after end
    ((11, 12), (15, 16)),  # the last pixel
    ((12, 20), (0, 16)),  # starting at the edge: nothing
    ((20, 30), (0, 16)),  # starting past the edge: nothing, not rows counted from the end
    ((4, 4), (3, 9)),  # no rows
]


@pytest.mark.parametrize(("rows", "cols"), BOUNDS)
def test_region_bounds_clip_like_the_default(
    section_file: Path, rows: tuple[int, int], cols: tuple[int, int]
) -> None:
    """MRC and DeltaVision regions clip their bounds as ImageReader.read_region does.

    Before the fix a negative end bound was a count from the end of the plane
    (``cols (0, -3)`` gave 13 columns where the default gives none).
    """
    with open_image(section_file) as image:
        region = image.read_region(0, 0, 0, 1, rows, cols)
        default = ImageReader.read_region(image, 0, 0, 0, 1, rows, cols)
    expected = _clipped(STACK[0, 0, 1], rows, cols)
    assert region.shape == expected.shape == default.shape
    np.testing.assert_array_equal(region, expected)
    assert region.dtype == STACK.dtype
    assert region.flags.c_contiguous


# ============================================================================ shared helpers
def test_fixed_header_is_the_first_1024_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long.bin"
    path.write_bytes(bytes(range(256)) * 8)
    head = read_fixed_header(path, "MRC")
    assert head == (bytes(range(256)) * 4)
    assert len(head) == HEADER_BYTES
    path.write_bytes(b"x" * 1023)
    with pytest.raises(CorruptFileError) as caught:
        read_fixed_header(path, "MRC")
    assert caught.value.path == path
    assert "long.bin: the 1024-byte MRC header is cut short (1023 bytes)" in str(caught.value)


def test_data_block_offset_checks_the_extended_header_and_the_data(tmp_path: Path) -> None:
    path = tmp_path / "block.dv"
    path.write_bytes(bytes(1024 + 100 + 50))
    limits = ReadLimits(max_metadata_bytes=100)
    # An extended header exactly at the metadata limit is allowed.
    assert (
        data_block_offset(path, extended_bytes=100, data_bytes=50, limits=limits, format_name="X")
        == 1124
    )
    assert data_block_offset(path, extended_bytes=0, data_bytes=0, limits=limits, format_name="X")
    for extended in (101, -1):
        with pytest.raises(CorruptFileError) as caught:
            data_block_offset(
                path, extended_bytes=extended, data_bytes=0, limits=limits, format_name="X"
            )
        assert caught.value.path == path
        assert f"extended header of {extended:,} bytes is negative or over the metadata limit" in (
            str(caught.value)
        )
    with pytest.raises(CorruptFileError) as caught:
        data_block_offset(
            path, extended_bytes=100, data_bytes=51, limits=limits, format_name="DeltaVision"
        )
    assert caught.value.path == path
    assert str(caught.value).startswith(
        "block.dv: the DeltaVision header declares 51 bytes of pixels from byte 1,124, "
        "but the file has 1,174 bytes; the file is truncated or its header lies"
    )


def test_data_extent_refuses_negative_offsets_and_sizes_only(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(10))
    check_data_extent(path, offset=0, nbytes=10, what="w")  # the whole file, from byte 0
    check_data_extent(path, offset=10, nbytes=0, what="w")  # nothing, at the end
    check_data_extent(path, offset=3, nbytes=0, what="w")
    for offset, nbytes in ((-1, 5), (2, -1), (-4, -4)):
        with pytest.raises(CorruptFileError) as caught:
            check_data_extent(path, offset=offset, nbytes=nbytes, what="the test header")
        assert caught.value.path == path
        assert str(caught.value).startswith(
            "data.bin: the test header declares a negative offset or size; the file is corrupt"
        )
    with pytest.raises(CorruptFileError) as caught:
        check_data_extent(path, offset=1, nbytes=10, what="w")
    assert caught.value.path == path


# ============================================================================ reader protocol
def test_defaults_levels_and_errors(section_file: Path) -> None:
    with open_image(section_file) as image:
        assert image.region_grid() == (1, 16)
        assert image.region_grid(0, 1) is None
        lazy = image.to_dask()
        assert lazy.shape == (1, 1, 2, 12, 16)
        assert lazy.name.startswith(f"{type(image).__name__.lower()}-")
        np.testing.assert_array_equal(lazy.compute(scheduler="sync"), STACK)
        for call in (
            lambda: image.to_dask(0, 1),
            lambda: image.read_region(0, 0, 0, 0, (0, 2), (0, 2), level=1),
        ):
            with pytest.raises(SceneNotFoundError) as caught:
                call()
            assert caught.value.path == section_file
            assert str(caught.value).startswith(
                f"{section_file.name}: pyramid level 1 does not exist; it has 1"
            )


def test_metadata_is_a_copy(section_file: Path) -> None:
    with open_image(section_file) as image:
        first = image.metadata()
        first.channels[0].name = "changed"
        first.provenance["sizes"] = "changed"
        again = image.metadata()
    assert again.channels[0].name is None
    assert again.provenance["sizes"] != "changed"


def test_close_drops_the_memory_map(section_file: Path) -> None:
    import gc
    import weakref

    image = open_image(section_file)
    mapped = weakref.ref(image._sections)  # type: ignore[attr-defined]
    image.close()
    gc.collect()
    assert mapped() is None
    with pytest.raises(ValueError, match="the reader is closed"):
        image.read_plane(0, 0, 0, 0)


def test_big_endian_reads_are_native_writable_copies(tmp_path: Path) -> None:
    stack = encoded_stack(1, 1, 2, 6, 5)
    path = write_dv(tmp_path / "be.dv", stack, byteorder=">", extended=False)
    with open_image(path) as image:
        plane = image.read_plane(0, 0, 0, 1)
        region = image.read_region(0, 0, 0, 1, (1, 4), (0, 5))
        whole = image.read_region(0, 0, 0, 0, (0, 6), (0, 5))
    for got, want in (
        (plane, stack[0, 0, 1]),
        (region, stack[0, 0, 1, 1:4]),
        (whole, stack[0, 0, 0]),
    ):
        assert got.dtype == np.dtype("uint16")
        assert got.dtype.isnative
        assert got.flags.writeable
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
