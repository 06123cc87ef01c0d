"""MetaMorph STK with many planes in one IFD: lazy, one plane per read, truncation typed."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import numpy as np
import pytest

from tests.contract import assert_reader_contract
from tests.synthetic import encoded_stack
from tests.synthetic_stk import write_stk
from zstack_analyzer import CorruptFileError, open_image
from zstack_analyzer.readers.stk import StkReader

if TYPE_CHECKING:
    from pathlib import Path


def test_many_planes_in_one_ifd(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 300, 64, 48)[0, 0]
    path = write_stk(tmp_path / "many.stk", planes)
    assert_reader_contract(StkReader, path, planes[np.newaxis, np.newaxis])
    with open_image(path) as image:
        assert image.metadata().size_z == 300
        assert image.to_dask(0).chunks[2] == (1,) * 300


def test_one_plane_read_touches_one_plane(tmp_path: Path) -> None:
    planes = encoded_stack(1, 1, 400, 128, 128)[0, 0]  # 12.5 MiB of planes, 32 KiB each
    path = write_stk(tmp_path / "big.stk", planes)
    with open_image(path) as image:
        tracemalloc.start()
        try:
            plane = image.read_plane(0, 0, 0, 399)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    np.testing.assert_array_equal(plane, planes[399])
    assert peak < 1024**2  # a few planes' worth, never the stack


def test_truncated_stack_is_refused_at_open(tmp_path: Path) -> None:
    """A cut stack is refused whole at open (README: no partial recovery), naming the fault."""
    planes = encoded_stack(1, 1, 50, 32, 32)[0, 0]
    data = write_stk(tmp_path / "whole.stk", planes).read_bytes()
    path = tmp_path / "cut.stk"
    path.write_bytes(data[: len(data) - 20 * 32 * 32 * 2])  # the last 20 planes are gone
    with pytest.raises(CorruptFileError, match=r"cut\.stk.*truncated"):
        open_image(path)
