"""DeltaVision files written from the header layout (the one ``mrc`` and Bio-Formats read).

Why our own writer: ``mrc``'s writer (Priithon's) cannot set the image
sequence or the extended header, which are what the reader must get right.
The 1024-byte header: nx, ny, n_sections, mode at 0; dx, dy, dz at 40; the
extended header's length at 92; the DeltaVision id 0xC0A0 at 96; ints and
floats per section at 128; NumTimes and ImgSequence at 180; NumWaves and the
five wavelengths at 196; ten 80-character titles at 224. The extended header
holds per section ``n_ints`` ints then ``n_floats`` floats: photosensor reading,
time stamp (s), stage X, Y, Z, min, max, mean, exposure (s), ND filter,
excitation and emission wavelengths (nm), ...

Planes are given top row first (as every reader returns them) and stored
bottom row first, as DeltaVision stores them.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

_MODES = {"uint8": 0, "int16": 1, "float32": 2, "uint16": 6, "int32": 7}
_ORDERS = {0: "ZTW", 1: "WZT", 2: "ZWT"}


def section_order(t_n: int, c_n: int, z_n: int, sequence: int) -> list[tuple[int, int, int]]:
    """(t, c, z) of each stored section, in file order, for ImgSequence ``sequence``."""
    order = _ORDERS[sequence]
    out = []
    if order == "ZTW":
        out = [(t, c, z) for c in range(c_n) for t in range(t_n) for z in range(z_n)]
    elif order == "WZT":
        out = [(t, c, z) for t in range(t_n) for z in range(z_n) for c in range(c_n)]
    else:
        out = [(t, c, z) for t in range(t_n) for c in range(c_n) for z in range(z_n)]
    return out


def write_dv(
    path: Path,
    data: np.ndarray,
    *,
    sequence: int = 0,
    voxel_um: tuple[float, float, float] = (0.1, 0.1, 0.25),
    waves: tuple[int, ...] = (525, 615),
    extended: bool = True,
    byteorder: str = "<",
) -> Path:
    """Write canonical T,C,Z,Y,X ``data`` as a DeltaVision file."""
    t_n, c_n, z_n, ny, nx = data.shape
    sections = section_order(t_n, c_n, z_n, sequence)
    n_ints, n_floats = 8, 32
    ext = b""
    if extended:
        rows = []
        for t, c, z in sections:
            floats = [0.0] * n_floats
            floats[1] = 2.5 * t  # time stamp, s
            floats[4] = 0.25 * z  # stage Z
            floats[8] = 0.05 * (c + 1)  # exposure, s
            floats[10] = 488.0 + 100 * c  # excitation, nm
            floats[11] = float(waves[c] if c < len(waves) else 0)
            rows.append(struct.pack(byteorder + f"{n_ints}i{n_floats}f", *([0] * n_ints), *floats))
        ext = b"".join(rows)
    head = bytearray(1024)
    bo = byteorder
    struct.pack_into(bo + "4i", head, 0, nx, ny, len(sections), _MODES[str(data.dtype)])
    struct.pack_into(bo + "3i", head, 28, 1, 1, 1)
    struct.pack_into(bo + "3f", head, 40, *voxel_um)
    struct.pack_into(bo + "3f", head, 52, 90.0, 90.0, 90.0)
    struct.pack_into(bo + "3i", head, 64, 1, 2, 3)
    struct.pack_into(bo + "3f", head, 76, float(data.min()), float(data.max()), float(data.mean()))
    struct.pack_into(bo + "i", head, 92, len(ext))
    struct.pack_into(bo + "H", head, 96, 0xC0A0)
    struct.pack_into(bo + "2h", head, 128, n_ints if extended else 0, n_floats if extended else 0)
    struct.pack_into(bo + "2h", head, 180, t_n, sequence)
    wave_list = list(waves[:c_n]) + [0] * (5 - min(c_n, len(waves)))
    struct.pack_into(bo + "6h", head, 196, c_n, *wave_list[:5])
    struct.pack_into(bo + "i", head, 220, 1)
    head[224:304] = b"synthetic DeltaVision file".ljust(80)
    stored = np.dtype(data.dtype).newbyteorder(bo)
    body = b"".join(
        np.ascontiguousarray(data[t, c, z][::-1], dtype=stored).tobytes() for t, c, z in sections
    )
    path.write_bytes(bytes(head) + ext + body)
    return path
