"""Truncated raw-pixel files: refuse them, since Bio-Formats fills the missing bytes with zeros.

Why: for formats that store uncompressed planes, Bio-Formats' ``readPlane``
reads with ``read`` rather than ``readFully``, so a file cut short gives
planes whose tail is zeros, served as if whole (the corruption suite found
it on DeltaVision, MRC, SPE, SIF and NIfTI files). Where the pixel data's
start is in a fixed header field, the file must reach the data's end; for
the other raw formats it must at least hold every pixel byte. Compressed
formats (gzip NIfTI/NRRD, Cellomics' zlib, HDF5) are left to their decoders,
which fail loudly on a cut stream.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import CorruptFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["check_extent"]


def _pixel_bytes(series: Sequence[dict[str, Any]], itemsize: Callable[[str], int]) -> int:
    return sum(
        math.prod((s["size_t"], s["size_c"], s["size_z"], s["size_y"], s["size_x"]))
        * max(1, s["samples"])
        * itemsize(s["dtype"])
        for s in series
    )


def _head(path: Path, count: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(count)


def _mrc_like_end(path: Path, itemsize: int) -> int | None:
    """DeltaVision and MRC: where the pixel data ends, from the header alone.

    A 1024-byte header, ``next`` bytes of extended header (word 23), then
    nx x ny x nz pixels (words 0-2; nz counts every section: Z x C x T).
    Why the header's sizes and not Bio-Formats': on a cut DeltaVision file
    Bio-Formats shrinks Z to the planes present and reads the rest as whole.
    """
    head = _head(path, 1024)
    if len(head) < 96:
        return None
    for order in "<>":
        nx, ny, nz = (int(v) for v in struct.unpack_from(f"{order}3i", head, 0))
        extended = int(struct.unpack_from(f"{order}i", head, 92)[0])
        if 0 < nx <= 1 << 20 and 0 < ny <= 1 << 20 and 0 < nz <= 1 << 24 and extended >= 0:
            return 1024 + extended + nx * ny * nz * itemsize
    return None


def _nifti_offset(path: Path) -> int | None:
    """NIfTI-1 ``.nii``: ``vox_offset`` (float at byte 108); the header says its byte order."""
    if path.name.lower().endswith(".gz"):
        return None
    head = _head(path, 112)
    if len(head) < 112:
        return None
    for order in "<>":
        if struct.unpack_from(f"{order}i", head, 0)[0] == 348:
            offset = struct.unpack_from(f"{order}f", head, 108)[0]
            return int(offset) if math.isfinite(offset) and offset >= 0 else None
    return None


#: Bio-Formats reader -> where its pixel data starts (fixed header fields).
_OFFSETS: dict[str, Callable[[Path], int | None]] = {
    "SPEReader": lambda _path: 4100,
    "NiftiReader": _nifti_offset,
}
#: Bio-Formats reader -> where its pixel data ends, from the header's own sizes.
_ENDS: dict[str, Callable[[Path, int], int | None]] = {
    "DeltavisionReader": _mrc_like_end,
    "MRCReader": _mrc_like_end,
}
#: Raw readers whose data start is not in a fixed field: the file must hold every pixel byte.
_AT_LEAST_PIXELS = frozenset({"SIFReader", "AnalyzeReader", "ICSReader", "GatanReader"})


def check_extent(
    reader: str,
    path: Path,
    used_files: Sequence[str],
    series: Sequence[dict[str, Any]],
    itemsize: Callable[[str], int],
) -> None:
    """Raise :class:`CorruptFileError` when a raw-pixel file ends before its pixel data does."""
    if reader in _ENDS:
        end = _ENDS[reader](path, itemsize(series[0]["dtype"]) * max(1, series[0]["samples"]))
        size = path.stat().st_size
        if end is not None and size < end:
            msg = (
                f"{path.name}: the file ends at byte {size:,}, before its pixel data does "
                f"({end:,} bytes, from its header's sizes); it is truncated"
            )
            raise CorruptFileError(msg, path=path)
        return
    if reader not in _OFFSETS and reader not in _AT_LEAST_PIXELS:
        return
    pixels = _pixel_bytes(series, itemsize)
    if reader == "ICSReader":
        # ICS v1 keeps the pixels in the .ids beside the .ics; v2 keeps them after the header.
        data = [Path(f) for f in used_files if f.lower().endswith(".ids")] or [path]
        if "compression\tuncompressed" not in _head(path, 65536).decode("latin-1"):
            return
    else:
        data = [path]
    size = sum(p.stat().st_size for p in data)
    offset = _OFFSETS[reader](path) if reader in _OFFSETS else 0
    if offset is None:  # compressed (.nii.gz) or a header we cannot place: the decoder's job
        return
    needed = offset + pixels
    if size < needed:
        msg = (
            f"{path.name}: the file ends at byte {size:,}, before its pixel data does "
            f"({needed:,} bytes); it is truncated"
        )
        raise CorruptFileError(msg, path=path)
