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
from zstack_analyzer import open_image
from zstack_analyzer.readers._base import ImageReader

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
