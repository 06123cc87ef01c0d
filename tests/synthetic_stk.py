"""A writer of MetaMorph STK stacks (many planes in one IFD), from the UIC tag layout.

An STK holds one IFD whose strip covers plane 0; planes 1..N-1 follow its data
back to back. Tag UIC2 (33629) is RATIONAL with a count of N planes but holds
6 longs per plane (Z distance as a rational, creation and modification dates
and times) - MetaMorph's own convention, which tifffile follows. tifffile
writes the TIFF part; the tag count is patched and the other planes appended.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import tifffile

if TYPE_CHECKING:
    from pathlib import Path


def write_stk(path: Path, planes: np.ndarray, *, z_step_um: float = 0.5) -> Path:
    """An STK of N,Y,X ``planes`` (uint16) in one IFD, Z step ``z_step_um`` in UIC2."""
    count = planes.shape[0]
    uic2 = np.zeros((count, 6), "<u4")
    uic2[:, 0] = np.round(np.arange(count) * z_step_um * 1000).astype("<u4")  # ZDistance numerator
    uic2[:, 1] = 1000
    uic2[:, 2] = uic2[:, 4] = 2459000  # creation and modification dates (Julian day)
    tifffile.imwrite(
        path,
        planes[0],
        photometric="minisblack",
        metadata=None,
        # UIC1: one (id, value) pair, AutoScale = 1, written as 2 longs then its count patched to 1
        extratags=[(33628, 4, 2, [0, 1], True), (33629, 5, 3 * count, uic2.ravel(), True)],
        contiguous=True,
    )
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        tag = page.tags[33629]
        uic1 = page.tags[33628]
        end = int(page.dataoffsets[0] + page.databytecounts[0])
    if end != len(data):
        raise RuntimeError("tifffile did not write the image data last")
    count_field = tag.offset + 4
    data[count_field : count_field + 4] = struct.pack("<I", count)
    data[uic1.offset + 4 : uic1.offset + 8] = struct.pack("<I", 1)
    data += np.ascontiguousarray(planes[1:], "<u2").tobytes()
    path.write_bytes(bytes(data))
    return path
