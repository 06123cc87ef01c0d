"""``load_image(lazy=True)`` reads headers only; pixels are read when, and only where, asked.

Measured with the kernel's count of bytes this process read (``rchar`` in
``/proc/self/io``): a lazy load of a 3 MiB stack must read a small fraction of
it, computing one plane must read about one plane, and an eager load must read
it all (which shows the measurement sees the reads).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.synthetic import encoded_stack
from tests.synthetic_tiff import write_ome_tiff
from zstack_analyzer import ImageLoader

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

C, Z, Y, X = 2, 12, 256, 256  # 24 planes of 128 KiB


def _rchar() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def _read_during(action: Callable[[], Any]) -> tuple[int, Any]:
    before = _rchar()
    result = action()
    return _rchar() - before, result


def _write(path: Path, fmt: str) -> tuple[Path, np.ndarray]:
    stack = encoded_stack(1, C, Z, Y, X)
    if fmt == "czi":
        from tests.synthetic_czi import write_czi_stack

        stack = write_czi_stack(path.with_suffix(".czi"), c=C, z=Z, y=Y, x=X)
        return path.with_suffix(".czi"), stack
    write_ome_tiff(path.with_suffix(".ome.tif"), [stack])
    return path.with_suffix(".ome.tif"), stack


@pytest.mark.parametrize("fmt", ["ome-tiff", "czi"])
def test_lazy_load_reads_no_pixels_until_asked(tmp_path: Path, fmt: str) -> None:
    path, stack = _write(tmp_path / "stack", fmt)
    size = path.stat().st_size
    plane = Y * X * 2
    loader = ImageLoader()
    # First use imports modules (opening, and decoding a plane): not the file's reads.
    warm, _ = _write(tmp_path / "warm", fmt)
    warm_data, _ = asyncio.run(loader.load_image(warm, lazy=True))
    np.asarray(warm_data[0, 0].compute())
    spent, (data, _) = _read_during(lambda: asyncio.run(loader.load_image(path, lazy=True)))
    assert not isinstance(data, np.ndarray)
    assert data.shape == (C, Z, Y, X)
    assert spent < size // 8, f"a lazy load read {spent:,} of {size:,} bytes"
    spent, one = _read_during(lambda array=data: np.asarray(array[1, 7].compute()))
    np.testing.assert_array_equal(one, stack[0, 1, 7])
    assert spent < 3 * plane, f"one plane ({plane:,} bytes) took {spent:,} bytes of reads"
    del data
    spent, (eager, _) = _read_during(lambda: asyncio.run(loader.load_image(path, lazy=False)))
    np.testing.assert_array_equal(eager, stack[0])
    assert spent >= C * Z * plane  # the counter does see pixel reads
