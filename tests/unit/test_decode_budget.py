"""The decode budget (issue #21 section 3) at the library level: what is refused, and why.

The memory bounds themselves are measured on a live server
(``tests/service/test_decode_budget_live.py``); here each guard is shown to
refuse the right thing with the right error, and the streamed strip reader to
give exactly tifffile's pixels.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from tests.bombs import codec_bomb_zarr_zip, huge_chunk_zarr_zip, lying_zip
from zstack_analyzer import budget, open_image
from zstack_analyzer.errors import (
    CorruptFileError,
    DecodeBusyError,
    DecodeCancelledError,
    LimitExceededError,
)

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1024 * 1024


@pytest.fixture
def service_budget() -> budget.DecodeBudget:
    """The service's defaults, installed for the test and removed after it."""
    installed = budget.DecodeBudget(
        total_bytes=320 * MiB, block_bytes=256 * MiB, request_bytes=4096 * MiB, wait_seconds=0.5
    )
    previous = budget.configure(installed)
    yield installed
    budget.configure(previous)


def test_one_block_over_the_cap_is_refused_before_it_is_reserved(
    service_budget: budget.DecodeBudget,
) -> None:
    with (
        pytest.raises(LimitExceededError, match="decode limit"),
        budget.decode_scope(),
        budget.reserve(300 * MiB, what="a strip"),
    ):
        pass
    assert service_budget.in_use == 0


def test_a_request_over_its_waste_is_refused() -> None:
    """Decoded bytes a request throws away add up; those it uses do not count."""
    small = budget.DecodeBudget(total_bytes=8 * MiB, block_bytes=8 * MiB, request_bytes=20 * MiB)
    with budget.decode_scope(small):
        for _ in range(50):  # a long projection: every byte used
            with budget.reserve(4 * MiB, what="a plane"):
                pass
        for _ in range(5):
            budget.charge(4 * MiB, what="a strip's rows before the region")
        with pytest.raises(LimitExceededError, match="per-request"):
            budget.charge(4 * MiB, what="one more")
    with budget.decode_scope(small):
        budget.charge(4 * MiB, what="a new request")  # the total is per request


def test_concurrent_decodes_share_the_server_budget() -> None:
    shared = budget.DecodeBudget(total_bytes=10 * MiB, block_bytes=8 * MiB, wait_seconds=0.3)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with budget.decode_scope(shared), budget.reserve(8 * MiB, what="first"):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with (
            pytest.raises(DecodeBusyError),
            budget.decode_scope(shared),
            budget.reserve(4 * MiB, what="second"),
        ):
            pass
    finally:
        release.set()
        thread.join()
    with budget.decode_scope(shared), budget.reserve(4 * MiB, what="after"):
        assert shared.in_use == 4 * MiB


def test_a_cancelled_scope_stops_at_its_next_decode() -> None:
    cancel = threading.Event()
    with budget.decode_scope(cancel=cancel):
        with budget.reserve(MiB, what="before"):
            pass
        cancel.set()
        with pytest.raises(DecodeCancelledError), budget.reserve(MiB, what="after"):
            pass


def test_zarr_bombs_are_refused(tmp_path: Path, service_budget: budget.DecodeBudget) -> None:
    huge = huge_chunk_zarr_zip(tmp_path / "huge.ome.zarr.zip", side=20000)
    with open_image(huge) as reader, pytest.raises(LimitExceededError, match="20000 x 20000"):
        reader.read_plane(0, 0, 0, 0)
    codec = codec_bomb_zarr_zip(tmp_path / "codec.ome.zarr.zip", declared=256, inflates_to=64 * MiB)
    with open_image(codec) as reader, pytest.raises(LimitExceededError, match="declares"):
        reader.read_plane(0, 0, 0, 0)
    lying = lying_zip(tmp_path / "lying.ome.zarr.zip", inflates_to=64 * MiB)
    with open_image(lying) as reader, pytest.raises(CorruptFileError, match="declares"):
        reader.read_plane(0, 0, 0, 0)
    assert service_budget.in_use == 0


@pytest.mark.parametrize(
    ("dtype", "samples", "predictor"),
    [("uint8", 1, None), ("uint16", 1, "horizontal"), ("uint8", 3, "horizontal")],
)
def test_streamed_strips_give_tifffiles_pixels(
    tmp_path: Path, dtype: str, samples: int, predictor: str | None
) -> None:
    """Regions of deflate strips read row by row equal the same regions decoded by tifffile."""
    rng = np.random.default_rng(7)
    shape = (300, 220, samples) if samples > 1 else (300, 220)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    path = tmp_path / "strips.tif"
    tifffile.imwrite(
        path,
        data,
        compression="zlib",
        predictor=predictor,
        rowsperstrip=64,
        photometric="rgb" if samples > 1 else "minisblack",
    )
    with open_image(path) as reader:
        assert reader.region_grid(0)[1] == 220
        for rows, cols in (
            ((0, 300), (0, 220)),
            ((10, 70), (5, 17)),
            ((63, 65), (0, 220)),
            ((250, 300), (219, 220)),
        ):
            region = reader.read_region(0, 0, 0, 0, rows, cols)
            np.testing.assert_array_equal(region, data[rows[0] : rows[1], cols[0] : cols[1]])
        # Bands top to bottom (a render's order) and then back up again.
        for top in (0, 40, 80, 120, 20):
            region = reader.read_region(0, 0, 0, 0, (top, top + 40), (0, 220))
            np.testing.assert_array_equal(region, data[top : top + 40])
