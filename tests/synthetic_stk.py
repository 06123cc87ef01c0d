"""A writer of MetaMorph STK stacks (many planes in one IFD), from the UIC tag layout.

An STK holds one IFD whose strip covers plane 0; planes 1..N-1 follow its data
back to back. Tag UIC2 (33629) is RATIONAL with a count of N planes but holds
6 longs per plane (Z distance as a rational, creation and modification dates
and times) - MetaMorph's own convention, which tifffile follows. tifffile
writes the TIFF part; the tag count is patched and the other planes appended.

UIC1 (33628) holds (id, value) pairs of longs; for a rational, a date, a string
or a plane property the value is the file offset of its data (tifffile's
``read_uic_tag``): those data are appended after the planes and their offsets
patched in, so tests can write the calibration, units, names and properties
MetaMorph writes and check them against what tifffile parses.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

#: UIC1 ids of the values used here (tifffile.TIFF.UIC_TAGS).
SPATIAL_CALIBRATION = 3
X_CALIBRATION = 4
Y_CALIBRATION = 5
CALIBRATION_UNITS = 6
CREATE_TIME = 16
PLANE_PROPERTY = 49


def _uic1_data(value: Any) -> bytes:
    """The out-of-line data of one UIC1 value (its offset goes in the pair)."""
    if isinstance(value, tuple):  # a rational, or a (Julian day, milliseconds) date
        return struct.pack("<2I", *value)
    if isinstance(value, str):  # a Pascal string; tifffile drops its last byte
        raw = value.encode("latin-1") + b"\x00"
        return struct.pack("<I", len(raw)) + raw
    if isinstance(value, dict):  # a PlaneProperty, read 4 bytes past its offset
        name = value["name"].encode("latin-1")
        out = b"\x00" * 4 + struct.pack("B", len(name)) + name + struct.pack("<I", 2)
        prop = value["value"]
        if isinstance(prop, tuple):
            return out + struct.pack("<B2I", 1, *prop)
        text = str(prop).encode("latin-1")
        return out + struct.pack("<2B", 2, len(text)) + text
    msg = f"no UIC1 encoding for {value!r}"
    raise TypeError(msg)


def write_stk(
    path: Path,
    planes: np.ndarray,
    *,
    z_step_um: float = 0.5,
    uic1: Sequence[tuple[int, Any]] = ((0, 1),),
    z_um: Sequence[float] | None = None,
    created: Sequence[tuple[int, int]] | None = None,
    description: str | None = None,
    software: str | bool | None = None,
) -> Path:
    """An STK of N,Y,X ``planes`` (uint16) in one IFD, Z step ``z_step_um`` in UIC2.

    ``uic1``: (id, value) pairs, an int kept inline, a tuple (rational or date), a str or a
    plane property ``{"name": ..., "value": str or (num, den)}`` written out of line.
    ``z_um``: the UIC2 Z distance of each plane (else ``i * z_step_um``); ``created``: the
    UIC2 (Julian day, milliseconds) of each plane (else day 2459000 at 0 ms);
    ``description``: the ImageDescription (MetaMorph's plane descriptions, NUL-separated);
    ``software``: the Software tag (tifffile's own name when ``None``, none when ``False``).
    """
    count = planes.shape[0]
    uic2 = np.zeros((count, 6), "<u4")
    distances = np.arange(count) * z_step_um if z_um is None else np.asarray(z_um, float)
    uic2[:, 0] = np.round(distances * 1000).astype("<u4")  # ZDistance numerator
    uic2[:, 1] = 1000
    uic2[:, 2] = uic2[:, 4] = 2459000  # creation and modification dates (Julian day)
    if created is not None:
        uic2[:, 2] = [day for day, _ in created]
        uic2[:, 3] = [ms for _, ms in created]
    pairs = [(tag, value if isinstance(value, int) else 0) for tag, value in uic1]
    tifffile.imwrite(
        path,
        planes[0],
        photometric="minisblack",
        metadata=None,
        description=description,
        software=software,
        # UIC1: (id, value) pairs as 2 longs each, then its count patched to the pairs
        extratags=[
            (33628, 4, 2 * len(pairs), np.asarray(pairs, "<u4").ravel(), True),
            (33629, 5, 3 * count, uic2.ravel(), True),
        ],
        contiguous=True,
    )
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        tag = page.tags[33629]
        uic1_tag = page.tags[33628]
        end = int(page.dataoffsets[0] + page.databytecounts[0])
    if end != len(data):
        raise RuntimeError("tifffile did not write the image data last")
    count_field = tag.offset + 4
    data[count_field : count_field + 4] = struct.pack("<I", count)
    data[uic1_tag.offset + 4 : uic1_tag.offset + 8] = struct.pack("<I", len(pairs))
    data += np.ascontiguousarray(planes[1:], "<u2").tobytes()
    for index, (_, value) in enumerate(uic1):
        if isinstance(value, int):
            continue
        at = uic1_tag.valueoffset + 8 * index + 4
        data[at : at + 4] = struct.pack("<I", len(data))
        data += _uic1_data(value)
    path.write_bytes(bytes(data))
    return path
