"""A writer of Zeiss LSM files from the format's description (no LSM in the corpus).

An LSM is a little-endian TIFF whose first IFD carries tag 34412 (CZ_LSMINFO):
a fixed record of dimensions, voxel sizes in metres, scan type and absolute
file offsets of further blocks (ChannelColors, TimeStamps, ScanInformation).
Each image IFD holds one (T, Z) plane with the channels as planar samples and
is followed by a reduced-resolution thumbnail IFD (NewSubfileType 1). tifffile
writes the TIFF part; the blocks are appended and their offsets patched in.
The record layout is tifffile's ``TIFF.CZ_LSMINFO`` (the published structure).

Two layouts beyond the planar grey pages: RGB pages (PhotometricInterpretation 2)
with the channels as planar samples, as Zeiss writes three-channel 8-bit scans,
or as contiguous samples (PlanarConfiguration 1; tifffile's LSM series puts them
on a C axis after X, Bio-Formats splits them into channels); and sequential
scans whose channels come from several tracks of the ScanInformation tree
(Recording > Tracks > Track > DataChannels / IlluminationChannels).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import tifffile

if TYPE_CHECKING:
    from pathlib import Path

LSM_MAGIC = 0x0400494C


def _channel_colors(names: list[str], colors: list[tuple[int, int, int]]) -> bytes:
    header = 24
    colour_bytes = b"".join(bytes((*rgb, 0)) for rgb in colors)
    name_bytes = b"".join(struct.pack("<I", len(n) + 1) + n.encode() + b"\0" for n in names)
    size = header + len(colour_bytes) + len(name_bytes)
    return (
        struct.pack("<IIIIII", size, len(colors), len(names), header, header + len(colour_bytes), 0)
        + colour_bytes
        + name_bytes
    )


def _entry(entry: int, value: str | int | float | None = None) -> bytes:
    if value is None:
        return struct.pack("<III", entry, 0, 0)
    if isinstance(value, str):
        raw = value.encode() + b"\0"
        return struct.pack("<III", entry, 2, len(raw)) + raw
    if isinstance(value, float):
        return struct.pack("<IIId", entry, 5, 8, value)
    return struct.pack("<IIIi", entry, 4, 4, value)


_END = 0xFFFFFFFF


def _scan_info(
    objective: str,
    names: list[str],
    colors: list[tuple[int, int, int]],
    wavelengths: list[float | None],
    tracks: list[int],
) -> bytes:
    """Recording > Tracks > one Track per entry of ``tracks`` (its channel count), in order.

    Each track lists its own DataChannels (name, colour as 0x00BBGGRR) and
    IlluminationChannels (laser line); a sequential scan's channels are the
    tracks' data channels one after the other.
    """
    parts = [_entry(0x10000000), _entry(0x10000001, "synthetic"), _entry(0x10000004, objective)]
    parts += [_entry(0x20000000)]
    first = 0
    for number, count in enumerate(tracks):
        channels = range(first, first + count)
        first += count
        parts += [
            _entry(0x40000000),
            _entry(0x4000000C, f"Track{number + 1}"),
            _entry(0x40000006, 1),
            _entry(0xC0000000),
        ]
        for c in channels:
            r, g, b = colors[c]
            parts += [
                _entry(0xD0000000),
                _entry(0xD0000001, names[c]),
                _entry(0xD0000004, r | g << 8 | b << 16),
                _entry(_END),
            ]
        parts += [_entry(_END), _entry(0x80000000)]
        for c in channels:
            if wavelengths[c] is None:  # no illumination channel listed for this one
                continue
            parts += [
                _entry(0x90000000),
                _entry(0x90000003, wavelengths[c]),
                _entry(0x90000004, 1),
                _entry(_END),
            ]
        parts += [_entry(_END), _entry(_END)]  # IlluminationChannels, Track
    parts += [_entry(_END), _entry(_END)]  # Tracks, Recording
    return b"".join(parts)


def _page(plane: np.ndarray, rgb: str | None) -> tuple[np.ndarray, dict[str, str | None]]:
    """A C,rows,X page and how tifffile writes it: planar grey, planar RGB or contiguous RGB."""
    size_c = plane.shape[0]
    if rgb == "contig":
        return np.moveaxis(plane, 0, -1), {"photometric": "rgb", "planarconfig": "contig"}
    photometric = "rgb" if rgb == "planar" else "minisblack"
    if size_c == 1:
        return plane[0], {"photometric": photometric, "planarconfig": None}
    return plane, {"photometric": photometric, "planarconfig": "separate"}


def write_lsm(
    path: Path,
    stack: np.ndarray,
    *,
    voxel_m: tuple[float, float, float] = (0.2e-6, 0.2e-6, 1.0e-6),
    names: list[str] | None = None,
    colors: list[tuple[int, int, int]] | None = None,
    timestamps: list[float] | None = None,
    objective: str = "Plan-Apochromat 63x/1.40 Oil DIC M27",
    thumbnails: bool = True,
    compression: str | None = None,
    line_scan: bool = False,
    rgb: str | None = None,
    tracks: list[int] | None = None,
    wavelengths: list[float | None] | None = None,
) -> Path:
    """An LSM of canonical T,C,Z,Y,X ``stack``: scan type 0/6 (XYZ(T)), or 1 (XZ line scan, Y = 1).

    An XZ line scan is stored as one page per channel set whose rows are the Z lines.
    ``rgb``: None (grey pages, channels as planar samples), ``"planar"`` (the same
    samples marked RGB, three channels) or ``"contig"`` (RGB samples interleaved per
    pixel). ``tracks``: the channel count of each track of the scan information
    (default one track of every channel); ``wavelengths``: each channel's laser line
    (None: the track lists no illumination channel for it).
    """
    size_t, size_c, size_z, size_y, size_x = stack.shape
    tracks = tracks or [size_c]
    assert sum(tracks) == size_c
    if rgb is not None:
        assert size_c == 3 and stack.dtype == np.uint8
    names = names or [f"Ch{c + 1}-T1" for c in range(size_c)]
    colors = colors or [((255, 0, 0), (0, 255, 0), (0, 0, 255))[c % 3] for c in range(size_c)]
    record = np.zeros((), dtype=np.dtype(tifffile.TIFF.CZ_LSMINFO).newbyteorder("<"))
    record["MagicNumber"] = LSM_MAGIC
    record["StructureSize"] = record.dtype.itemsize
    record["DimensionX"], record["DimensionY"] = size_x, size_y
    record["DimensionZ"], record["DimensionChannels"], record["DimensionTime"] = (
        size_z,
        size_c,
        size_t,
    )
    record["DataType"] = {1: 1, 2: 2}.get(stack.dtype.itemsize, 5)
    record["ThumbnailX"] = record["ThumbnailY"] = 16
    record["VoxelSizeX"], record["VoxelSizeY"], record["VoxelSizeZ"] = voxel_m
    record["ScanType"] = 0 if size_t == 1 else 6
    if line_scan:
        assert size_t == 1 and size_y == 1
        record["ScanType"] = 1  # CZX
    record["TimeIntervall"] = 0.0
    with tifffile.TiffWriter(path, byteorder="<") as tif:
        if line_scan:
            lines, layout = _page(stack[0, :, :, 0, :], rgb)  # C, Z, X
            tif.write(
                lines,
                **layout,  # type: ignore[arg-type]
                metadata=None,
                extratags=[(34412, 1, record.dtype.itemsize, record.tobytes(), True)],
            )
            if thumbnails:
                tif.write(
                    np.zeros((16, 16, 3), "uint8"), photometric="rgb", subfiletype=1, metadata=None
                )
        for t in range(size_t if not line_scan else 0):
            for z in range(size_z):
                first = t == 0 and z == 0
                page, layout = _page(stack[t, :, z], rgb)
                tif.write(
                    page,
                    **layout,  # type: ignore[arg-type]
                    compression=compression,
                    metadata=None,
                    extratags=[(34412, 1, record.dtype.itemsize, record.tobytes(), True)]
                    if first
                    else None,
                )
                if thumbnails:
                    thumb = np.zeros((16, 16, 3), "uint8")
                    thumb[..., 0] = 7  # a thumbnail that must never be read as data
                    tif.write(thumb, photometric="rgb", subfiletype=1, metadata=None)
    data = bytearray(path.read_bytes())
    start = data.find(struct.pack("<I", LSM_MAGIC) + struct.pack("<i", record.dtype.itemsize))
    blocks = {
        "OffsetChannelColors": _channel_colors(names, colors),
        "OffsetScanInformation": _scan_info(
            objective,
            names,
            colors,
            wavelengths or [488.0 + 100 * c for c in range(size_c)],
            tracks,
        ),
    }
    if timestamps is not None:
        blocks["OffsetTimeStamps"] = struct.pack(
            "<ii", 8 + 8 * len(timestamps), len(timestamps)
        ) + struct.pack(f"<{len(timestamps)}d", *timestamps)
    for field, block in blocks.items():
        if len(data) % 2:
            data += b"\0"
        offset = len(data)
        data += block
        position = start + record.dtype.fields[field][1]  # type: ignore[index]
        data[position : position + 4] = struct.pack("<I", offset)
    _bitspersample_out_of_line(data)
    path.write_bytes(bytes(data))
    return path


def _bitspersample_out_of_line(data: bytearray) -> None:
    """Store a two-value BitsPerSample out of line, as Zeiss's writer does (tifffile expects it)."""
    (ifd,) = struct.unpack("<I", data[4:8])
    while ifd:
        (count,) = struct.unpack("<H", data[ifd : ifd + 2])
        for k in range(count):
            entry = ifd + 2 + 12 * k
            code, _, n = struct.unpack("<HHI", data[entry : entry + 8])
            if code == 258 and n == 2:
                value = bytes(data[entry + 8 : entry + 12])
                if len(data) % 2:
                    data += b"\0"
                data[entry + 8 : entry + 12] = struct.pack("<I", len(data))
                data += value
        (ifd,) = struct.unpack("<I", data[ifd + 2 + 12 * count : ifd + 6 + 12 * count])
