"""Deflate strips inflated as a stream (``readers/_strip_stream.py``): pixels, budget and cursors.

A strip here is larger than one inflate step (4 MiB), so regions cross steps; every region must
equal tifffile's decode (little- and big-endian, predictor or not, one sample or three), what a
read inflates only to drop must be charged to the request exactly, the reservation must be the
step's, and a strip read top to bottom must be inflated once.
"""

from __future__ import annotations

import zlib
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from zstack_analyzer import open_image
from zstack_analyzer.budget import DecodeBudget, decode_scope
from zstack_analyzer.errors import CorruptFileError, LimitExceededError
from zstack_analyzer.readers._strip_stream import STREAM_STEP, StripCursors, streamable

if TYPE_CHECKING:
    from pathlib import Path

_READ_STEP = 1 << 20


def _pattern(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    grid = np.indices(shape[:2])
    values = grid[0] * 7 + grid[1] * 13 + (grid[0] * grid[1]) % 17
    if len(shape) == 3:
        values = values[..., None] + np.arange(shape[2]) * 101
    return (values % min(np.iinfo(dtype).max, 65521)).astype(dtype)


def _write(path: Path, data: np.ndarray, **kw: Any) -> Path:
    options: dict[str, Any] = {"compression": "zlib", "rowsperstrip": data.shape[0]}
    options.update(kw)
    tifffile.imwrite(path, data, **options)
    return path


CASES = [
    # (shape, dtype, predictor, byteorder): one strip of 6,000,000+ bytes (over one step)
    ((2100, 3000), "uint8", None, "<"),
    ((1100, 2000), "uint16", "horizontal", ">"),
    ((1100, 2000), "uint16", None, ">"),
    ((600, 1200, 3), "uint8", "horizontal", "<"),
]


@pytest.mark.parametrize(("shape", "dtype", "predictor", "byteorder"), CASES)
def test_regions_of_a_strip_larger_than_a_step(
    tmp_path: Path, shape: tuple[int, ...], dtype: str, predictor: str | None, byteorder: str
) -> None:
    data = _pattern(shape, dtype)
    path = _write(
        tmp_path / "big.tif",
        data,
        predictor=predictor,
        byteorder=byteorder,
        photometric="rgb" if len(shape) == 3 else "minisblack",
    )
    ny, nx = shape[:2]
    with open_image(path) as reader:
        # Bands top to bottom (one cursor), then a band above (a fresh inflation), then regions.
        for rows, cols in (
            ((0, 3), (0, nx)),
            ((3, ny // 2), (5, 77)),
            ((ny // 2, ny), (nx - 9, nx)),
            ((1, 2), (0, 1)),
            ((ny - 1, ny), (0, nx)),
            ((ny // 3, ny // 3 + 50), (100, 300)),
        ):
            region = reader.read_region(0, 0, 0, 0, rows, cols)
            np.testing.assert_array_equal(
                region, data[rows[0] : rows[1], cols[0] : cols[1]], err_msg=str((rows, cols))
            )


def test_dropped_bytes_are_charged_and_the_step_is_reserved(tmp_path: Path) -> None:
    """Rows 100-120, columns 10-30 of a 300 x 220 strip inflate 120 rows and keep 20 x 20."""
    data = _pattern((300, 220), "uint8")
    path = _write(tmp_path / "s.tif", data)
    step = (STREAM_STEP // 220) * 220
    with open_image(path) as reader:
        budget = DecodeBudget()
        with decode_scope(budget) as scope:
            region = reader.read_region(0, 0, 0, 0, (100, 120), (10, 30))
            np.testing.assert_array_equal(region, data[100:120, 10:30])
            assert scope.spent == 120 * 220 - 20 * 20
            assert budget.peak == 2 * step + _READ_STEP
            assert budget.in_use == 0
            # The next band continues the cursor: nothing more is dropped.
            region = reader.read_region(0, 0, 0, 0, (120, 160), (0, 220))
            np.testing.assert_array_equal(region, data[120:160])
            assert scope.spent == 120 * 220 - 20 * 20
            # A band above starts again from the strip's top: rows 0-5 inflated, all kept.
            reader.read_region(0, 0, 0, 0, (5, 10), (0, 220))
            assert scope.spent == 120 * 220 - 20 * 20 + 5 * 220


def test_rows_wider_than_a_step_are_inflated_a_row_at_a_time(tmp_path: Path) -> None:
    """A row of 8 MB is more than a step: a step is then one whole row (never zero rows)."""
    data = _pattern((2, 1_000_000), "uint64")
    path = _write(tmp_path / "wide.tif", data)
    row_bytes = data.shape[1] * 8
    assert row_bytes > STREAM_STEP
    with open_image(path) as reader:
        budget = DecodeBudget()
        with decode_scope(budget) as scope:
            region = reader.read_region(0, 0, 0, 0, (1, 2), (0, 10))
            np.testing.assert_array_equal(region, data[1:2, 0:10])
            assert budget.peak == 2 * row_bytes + _READ_STEP
            assert scope.spent == 2 * row_bytes - 10 * 8


def test_several_strips_and_their_cursors(tmp_path: Path) -> None:
    data = _pattern((700, 300), "uint16")
    path = _write(tmp_path / "strips.tif", data, rowsperstrip=64, predictor="horizontal")
    with open_image(path) as reader:
        for top in range(0, 700, 50):
            band = reader.read_region(0, 0, 0, 0, (top, top + 50), (0, 300))
            np.testing.assert_array_equal(band, data[top : top + 50])
        for top in (650, 10, 300):
            band = reader.read_region(0, 0, 0, 0, (top, top + 70), (33, 34))
            np.testing.assert_array_equal(band, data[top : top + 70, 33:34])


def _strip_offset(path: Path) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return int(page.dataoffsets[0]), int(page.databytecounts[0])


def test_corrupt_deflate_data_is_a_typed_error(tmp_path: Path) -> None:
    data = _pattern((300, 220), "uint8")
    path = _write(tmp_path / "bad.tif", data)
    offset, _ = _strip_offset(path)
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 2] = b"\xff\xff"  # not a zlib header
    path.write_bytes(bytes(raw))
    with open_image(path) as reader, pytest.raises(CorruptFileError) as info:
        reader.read_region(0, 0, 0, 0, (0, 10), (0, 220))
    assert "strip 0 of IFD 0: corrupt deflate data" in str(info.value)
    assert str(info.value.path) == str(path)


def test_a_stream_that_ends_early_leaves_the_rest_zero(tmp_path: Path) -> None:
    """A strip whose deflate stream stops half way: the rows it has, then zeros (as tifffile)."""
    data = _pattern((300, 220), "uint8") | 1
    path = tmp_path / "short.tif"
    half = zlib.compress(data[:150].tobytes())
    _write(path, data)
    offset, count = _strip_offset(path)
    assert len(half) < count
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(half)] = half
    path.write_bytes(bytes(raw))
    with open_image(path) as reader:
        for _ in range(2):  # the second read starts afresh and gives the same answer
            region = reader.read_region(0, 0, 0, 0, (140, 160), (0, 220))
            np.testing.assert_array_equal(region[:10], data[140:150])
            assert not region[10:].any()


# ------------------------------------------------------------------------- the pieces


def test_cursors_are_kept_for_the_last_strips_and_restart_above() -> None:
    cursors = StripCursors(size=2)
    first = cursors._take((0, 0), 0)
    first.row = 10
    cursors._put((0, 0), first)
    assert cursors._take((0, 0), 10) is first  # continues from row 10
    cursors._put((0, 0), first)
    assert cursors._take((0, 0), 12) is first
    cursors._put((0, 0), first)
    assert cursors._take((0, 0), 9) is not first  # a row above: a fresh inflater
    for key in ((0, 0), (0, 1), (0, 2)):
        cursor = cursors._take(key, 0)
        cursor.row = 5
        cursors._put(key, cursor)
    assert len(cursors._cursors) == 2
    assert cursors._take((0, 0), 5).row == 0  # the oldest was dropped
    assert cursors._take((0, 2), 5).row == 5
    assert StripCursors().size == 8


def _key(**kw: Any) -> SimpleNamespace:
    base = {
        "is_tiled": False,
        "compression": 8,
        "fillorder": 1,
        "imagedepth": 1,
        "bitspersample": 16,
        "samplesperpixel": 1,
        "planarconfig": 1,
        "predictor": 1,
        "dtype": np.dtype("uint16"),
    }
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"compression": 32946},
        {"bitspersample": 8, "dtype": np.dtype("uint8")},
        {"bitspersample": 32},
        {"bitspersample": 64},
        {"samplesperpixel": 3},
        {"samplesperpixel": 3, "planarconfig": 1},
        {"samplesperpixel": 1, "planarconfig": 2},
        {"predictor": 2},
        {"predictor": 2, "dtype": np.dtype("int16")},
    ],
)
def test_streamable_layouts(changes: dict[str, Any]) -> None:
    assert streamable(_key(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"is_tiled": True},
        {"compression": 1},
        {"compression": 5},
        {"compression": 50000},
        {"fillorder": 2},
        {"imagedepth": 2},
        {"bitspersample": 12},
        {"bitspersample": 1},
        {"samplesperpixel": 3, "planarconfig": 2},
        {"predictor": 3},
        {"predictor": 2, "dtype": np.dtype("float32"), "bitspersample": 32},
        {"compression": None},
        {"predictor": "x"},
    ],
)
def test_layouts_not_streamed(changes: dict[str, Any]) -> None:
    assert not streamable(_key(**changes))


def test_a_key_without_the_tags_is_not_streamed() -> None:
    assert not streamable(object())


def test_budget_refusals_name_the_strip_and_the_file(tmp_path: Path) -> None:
    data = _pattern((300, 220), "uint8")
    path = _write(tmp_path / "s.tif", data)
    with open_image(path) as reader:
        for budget in (DecodeBudget(request_bytes=1000), DecodeBudget(block_bytes=1000)):
            with decode_scope(budget), pytest.raises(LimitExceededError) as info:
                reader.read_region(0, 0, 0, 0, (200, 210), (0, 10))
            assert str(info.value).startswith("s.tif: strip 0 of IFD 0"), str(info.value)
            assert str(info.value.path) == str(path)


def test_the_waste_of_rgb_rows_counts_every_sample(tmp_path: Path) -> None:
    data = _pattern((300, 220, 3), "uint8")
    path = _write(tmp_path / "rgb.tif", data, photometric="rgb")
    with open_image(path) as reader, decode_scope(DecodeBudget()) as scope:
        region = reader.read_region(0, 0, 0, 0, (100, 120), (10, 30))
        np.testing.assert_array_equal(region, data[100:120, 10:30])
        assert scope.spent == 120 * 220 * 3 - 20 * 20 * 3
