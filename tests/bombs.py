"""Small files that decode to huge ones: the probes of issue #21 section 3.

Each is written without ever holding its decoded size in memory (the deflate
streams are built from zero blocks), so making them costs the test runner
seconds and a few MiB, while a careless reader would allocate hundreds of MiB
to GiBs decoding them.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "codec_bomb_zarr_zip",
    "deflate_zeros",
    "huge_chunk_zarr_zip",
    "huge_strip_tiff",
    "lying_zip",
]

MiB = 1024 * 1024
_BLOCK = bytes(MiB)


def deflate_zeros(size: int, *, wbits: int = zlib.MAX_WBITS) -> bytes:
    """A zlib (or raw deflate, ``wbits=-15``) stream of ``size`` zero bytes, made in 1 MiB steps."""
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = []
    left = size
    while left > 0:
        step = min(left, MiB)
        parts.append(comp.compress(_BLOCK[:step]))
        left -= step
    parts.append(comp.flush())
    return b"".join(parts)


def _ngff_group(size_y: int, size_x: int, chunk_y: int, chunk_x: int) -> dict[str, bytes]:
    """The metadata keys of a one-level 2-D NGFF 0.4 image (uint8, zlib chunks)."""
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "axes": [
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}],
                    }
                ],
            }
        ]
    }
    zarray = {
        "zarr_format": 2,
        "shape": [size_y, size_x],
        "chunks": [chunk_y, chunk_x],
        "dtype": "|u1",
        "compressor": {"id": "zlib", "level": 9},
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }
    return {
        ".zgroup": json.dumps({"zarr_format": 2}).encode(),
        ".zattrs": json.dumps(attrs).encode(),
        "0/.zarray": json.dumps(zarray).encode(),
    }


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def huge_chunk_zarr_zip(path: Path, side: int = 30000) -> Path:
    """A zipped OME-Zarr of one ``side`` x ``side`` uint8 zlib chunk (~0.9 GB decoded, ~1 MB on disk)."""
    members = _ngff_group(side, side, side, side)
    members["0/0/0"] = deflate_zeros(side * side)
    return _write_zip(path, members)


def codec_bomb_zarr_zip(path: Path, declared: int = 1024, inflates_to: int = 512 * MiB) -> Path:
    """A zipped OME-Zarr whose one chunk declares ``declared``² bytes but inflates to ``inflates_to``."""
    members = _ngff_group(declared, declared, declared, declared)
    members["0/0/0"] = deflate_zeros(inflates_to)
    return _write_zip(path, members)


def lying_zip(path: Path, declared: int = 4096, inflates_to: int = 1024 * MiB) -> Path:
    """A zipped OME-Zarr whose one chunk member inflates to ``inflates_to`` bytes while the
    zip's central directory (and local header) say ``declared``.

    The chunk is 64 x 64 uint8 (4096 bytes), so the declared size is honest
    for the array; only the zip lies.
    """
    members = _ngff_group(64, 64, 64, 64)
    members["0/.zarray"] = members["0/.zarray"].replace(b'{"id": "zlib", "level": 9}', b"null")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo("0/0/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        raw = deflate_zeros(inflates_to, wbits=-15)
        with archive.open(info, "w", force_zip64=False) as member:
            member.write(b"\0" * declared)  # placeholder: sizes and CRC of the declared bytes
    data = bytearray(path.read_bytes())
    # Rewrite: replace the member's 4096-byte deflate stream with the bomb, keep the headers'
    # claim (4096 bytes, CRC of 4096 zeros), and shift the central directory.
    local = data.rfind(b"PK\x03\x04")
    name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
    start = local + 30 + name_len + extra_len
    old_size = struct.unpack_from("<I", data, local + 18)[0]
    end = start + old_size
    central = data[end:]
    struct.pack_into("<I", data, local + 18, len(raw))  # compressed size (local header)
    shift = len(raw) - old_size
    cd = 0
    while True:  # each central directory entry; the chunk's gets the bomb's compressed size
        cd = central.find(b"PK\x01\x02", cd)
        if cd < 0:
            break
        name_len_c = struct.unpack_from("<H", central, cd + 28)[0]
        if bytes(central[cd + 46 : cd + 46 + name_len_c]) == b"0/0/0":
            struct.pack_into("<I", central, cd + 20, len(raw))  # compressed size
        cd += 46
    eocd = central.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", central, eocd + 16)[0]
    struct.pack_into("<I", central, eocd + 16, cd_offset + shift)
    path.write_bytes(bytes(data[:start]) + raw + bytes(central))
    return path


def huge_strip_tiff(path: Path, side: int = 30720, rows_per_strip: int = 8192) -> Path:
    """A zlib strip TIFF of ``side`` x ``side`` uint8 whose strips are ``rows_per_strip`` rows
    (240 MiB each at the defaults), ~1 MB on disk."""
    import numpy as np
    import tifffile

    strips = []
    for top in range(0, side, rows_per_strip):
        rows = min(rows_per_strip, side - top)
        strips.append(deflate_zeros(rows * side))
    tifffile.imwrite(
        path,
        iter(strips),
        shape=(side, side),
        dtype=np.uint8,
        compression="zlib",
        rowsperstrip=rows_per_strip,
        photometric="minisblack",
    )
    return path
