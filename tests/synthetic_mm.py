"""Micro-Manager multipage TIFF datasets written from the format's description.

Why our own writer: no Micro-Manager file is in the shared corpus, and no
Python library writes Micro-Manager's header (tifffile reads it only). The
layout follows micro-manager.org "Micro-Manager File Formats" (and what
tifffile's ``read_micromanager_metadata`` reads): TIFF header; at byte 8 the
index map, display settings, comments and summary headers; the summary JSON
at byte 40; then one uncompressed IFD per plane with its ImageDescription
(OME-XML on the first page of a ``.ome.tif``) and tag 51123
(MicroManagerMetadata JSON); at the end the index map, display settings and
comments blocks.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

INDEX_MAP_HEADER = 54773648
INDEX_MAP_BLOCK = 3453623
DISPLAY_HEADER = 483765892
DISPLAY_BLOCK = 347834724
COMMENTS_HEADER = 99384722
COMMENTS_BLOCK = 84720485
SUMMARY_HEADER = 2355492
NDTIFF_MAGIC = 483729

_ASCII, _SHORT, _LONG = 2, 3, 4


def _ome_xml(size: tuple[int, int, int, int, int], dtype: str) -> str:
    t, c, z, y, x = size
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f'<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="{dtype}" '
        f'SizeX="{x}" SizeY="{y}" SizeZ="{z}" SizeC="{c}" SizeT="{t}">'
        + "".join(f'<Channel ID="Channel:0:{i}" SamplesPerPixel="1"/>' for i in range(c))
        + "<TiffData/></Pixels></Image></OME>"
    )


def write_mm_file(
    path: Path,
    planes: list[tuple[tuple[int, int, int, int], np.ndarray, dict[str, Any]]],
    summary: dict[str, Any],
    *,
    description: str | None = None,
    ndtiff: list[tuple[Any, int, int, int]] | None = None,
) -> Path:
    """Write one Micro-Manager file holding ``planes``: ((c, z, t, p), pixels, plane JSON) each.

    With ``ndtiff`` (a list to fill) the file is an NDTiff v3 stack instead: its
    header at byte 8 is NDTiff's (483729, major 3, minor 0, 2355492, summary
    length) and no index map is written; ``ndtiff`` receives, per plane, its
    indices, pixel offset, metadata offset and metadata length for NDTiff.index.
    """
    summary_bytes = json.dumps(summary).encode()
    out = bytearray(b"II*\x00" + b"\x00" * 4)
    if ndtiff is not None:
        out += struct.pack("<5I", NDTIFF_MAGIC, 3, 0, SUMMARY_HEADER, len(summary_bytes))
    else:
        out += b"\x00" * 32  # the Micro-Manager header, filled in at the end
    out += summary_bytes
    index_rows: list[tuple[int, int, int, int, int]] = []
    previous_next_at: int | None = None
    for k, (indices, pixels, plane_json) in enumerate(planes):
        if len(out) % 2:
            out += b"\x00"
        ifd_at = len(out)
        if previous_next_at is None:
            struct.pack_into("<I", out, 4, ifd_at)
        else:
            struct.pack_into("<I", out, previous_next_at, ifd_at)
        data = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
        bits = pixels.dtype.itemsize * 8
        texts: list[tuple[int, bytes]] = []
        if k == 0 and description:
            texts.append((270, description.encode() + b"\x00"))
        texts.append((51123, json.dumps(plane_json).encode() + b"\x00"))
        entries = [
            (256, _LONG, 1, pixels.shape[1]),
            (257, _LONG, 1, pixels.shape[0]),
            (258, _SHORT, 1, bits),
            (259, _SHORT, 1, 1),
            (262, _SHORT, 1, 1),
            (273, _LONG, 1, 0),  # strip offset, patched below
            (277, _SHORT, 1, 1),
            (278, _LONG, 1, pixels.shape[0]),
            (279, _LONG, 1, len(data)),
        ]
        if pixels.dtype.kind in "if":
            entries.append((339, _SHORT, 1, 2 if pixels.dtype.kind == "i" else 3))
        text_entries = [(tag, _ASCII, len(body), 0) for tag, body in texts]
        all_entries = sorted(entries + text_entries)
        ifd_size = 2 + 12 * len(all_entries) + 4
        values_at = ifd_at + ifd_size
        text_offsets = {}
        cursor = values_at
        for tag, body in texts:
            text_offsets[tag] = cursor
            cursor += len(body) + (len(body) % 2)
        data_at = cursor
        ifd = bytearray(struct.pack("<H", len(all_entries)))
        for tag, kind, count, value in all_entries:
            if kind == _ASCII:
                ifd += struct.pack("<HHII", tag, kind, count, text_offsets[tag])
            elif tag == 273:
                ifd += struct.pack("<HHII", tag, kind, count, data_at)
            elif kind == _SHORT:
                ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
            else:
                ifd += struct.pack("<HHII", tag, kind, count, value)
        previous_next_at = ifd_at + len(ifd)
        ifd += b"\x00\x00\x00\x00"
        out += ifd
        for _, body in texts:
            out += body + (b"\x00" if len(body) % 2 else b"")
        out += data
        c, z, t, p = indices
        index_rows.append((c, z, t, p, ifd_at))
        if ndtiff is not None:
            meta_at = text_offsets[51123]
            meta_len = len(texts[-1][1]) - 1
            ndtiff.append((indices, data_at, meta_at, meta_len))
    if ndtiff is not None:
        path.write_bytes(bytes(out))
        return path
    index_at = len(out)
    out += struct.pack("<2I", INDEX_MAP_BLOCK, len(index_rows))
    for row in index_rows:
        out += struct.pack("<5I", *row)
    display = json.dumps([{"Color": -1}]).encode()
    display_at = len(out)
    out += struct.pack("<2I", DISPLAY_BLOCK, len(display)) + display
    comments = json.dumps({"Summary": ""}).encode()
    comments_at = len(out)
    out += struct.pack("<2I", COMMENTS_BLOCK, len(comments)) + comments
    struct.pack_into(
        "<8I",
        out,
        8,
        INDEX_MAP_HEADER,
        index_at,
        DISPLAY_HEADER,
        display_at,
        COMMENTS_HEADER,
        comments_at,
        SUMMARY_HEADER,
        len(summary_bytes),
    )
    path.write_bytes(bytes(out))
    return path


def mm_pixels(c: int, z: int, t: int, p: int, shape: tuple[int, int], dtype: str) -> np.ndarray:
    """A plane whose values say where it belongs (so a misplaced plane is caught)."""
    y, x = shape
    base = np.add.outer(np.arange(y) * 3, np.arange(x)).astype(np.int64)
    return ((base + 1000 * p + 100 * t + 10 * c + z) % np.iinfo(np.uint16).max).astype(dtype)


def write_mm_dataset(
    folder: Path,
    *,
    prefix: str = "run",
    positions: int = 2,
    frames: int = 3,
    channels: int = 2,
    slices: int = 4,
    shape: tuple[int, int] = (24, 32),
    dtype: str = "uint16",
    planned_frames: int | None = None,
    split: int | None = None,
) -> list[Path]:
    """A dataset of one file per position (``split`` planes per file: continuation files).

    Returns the files written, position 0's first file first.
    """
    summary = {
        "Prefix": prefix,
        "MicroManagerVersion": "2.0.3 20240301",
        "Frames": planned_frames or frames,
        "Slices": slices,
        "Channels": channels,
        "Positions": positions,
        "Width": shape[1],
        "Height": shape[0],
        "PixelType": "GRAY16" if dtype == "uint16" else "GRAY8",
        "PixelSize_um": 0.65,
        "z-step_um": 1.5,
        "Interval_ms": 500.0,
        "ChNames": [f"Ch{c}" for c in ["DAPI", "GFP", "RFP"][:channels]],
        "ChColors": [-16776961, -16711936, -65536][:channels],
        "StartTime": "2024-03-01 12:30:05.123 +0100",
        "StagePositions": [{"Label": f"Pos{p}"} for p in range(positions)],
        "SlicesFirst": True,
        "TimeFirst": False,
    }
    written = []
    ome_type = "uint16" if dtype == "uint16" else "uint8"
    for p in range(positions):
        planes = []
        for t in range(frames):
            for c in range(channels):
                for z in range(slices):
                    plane_json = {
                        "ChannelIndex": c,
                        "SliceIndex": z,
                        "FrameIndex": t,
                        "PositionIndex": p,
                        "Exposure-ms": 10.0 * (c + 1),
                        "ElapsedTime-ms": 500.0 * t + 3.0 * c,
                        "PixelSizeUm": 0.65,
                    }
                    planes.append(((c, z, t, p), mm_pixels(c, z, t, p, shape, dtype), plane_json))
        chunks = (
            [planes]
            if split is None
            else [planes[i : i + split] for i in range(0, len(planes), split)]
        )
        for k, chunk in enumerate(chunks):
            suffix = "" if k == 0 else f"_{k}"
            name = f"{prefix}_MMStack_Pos{p}{suffix}.ome.tif"
            description = (
                _ome_xml((frames, channels, slices, *shape), ome_type)
                if p == 0 and k == 0
                else None
            )
            written.append(write_mm_file(folder / name, chunk, summary, description=description))
    return written


def write_ndtiff_dataset(
    folder: Path,
    *,
    prefix: str = "acq",
    positions: int = 1,
    frames: int = 2,
    channels: int = 2,
    slices: int = 3,
    shape: tuple[int, int] = (20, 28),
    split: int | None = None,
    z_offset: int = 0,
) -> list[Path]:
    """An NDTiff v3 dataset: ``<prefix>_NDTiffStack[_k].tif`` files and their ``NDTiff.index``.

    NDTiff.index (as tifffile's ``read_ndtiff_index`` reads it): per image, a
    uint32 length and the axes JSON (``{"time": t, "channel": name, "z": z,
    "position": p}``), a uint32 length and the file name, then eight int32
    fields: pixel offset, width, height, pixel type (1: 16-bit), compression
    (0), metadata offset, metadata length, metadata compression (0).
    """
    names = ["DAPI", "GFP", "RFP"][:channels]
    summary = {
        "Prefix": prefix,
        "PixelType": "GRAY16",
        "Width": shape[1],
        "Height": shape[0],
        "PixelSize_um": 0.325,
        "z-step_um": 0.8,
        "ChNames": names,
        "StartTime": "2024-05-06 07:08:09.010 +0000",
        "MicroManagerVersion": "2.0.3",
    }
    planes = []
    for p in range(positions):
        for t in range(frames):
            for c in range(channels):
                for z in range(slices):
                    plane_json = {"Exposure-ms": 5.0 * (c + 1), "ElapsedTime-ms": 1000.0 * t}
                    planes.append(
                        ((c, z, t, p), mm_pixels(c, z, t, p, shape, "uint16"), plane_json)
                    )
    chunks = (
        [planes] if split is None else [planes[i : i + split] for i in range(0, len(planes), split)]
    )
    index = bytearray()
    written = []
    for k, chunk in enumerate(chunks):
        name = f"{prefix}_NDTiffStack{'' if k == 0 else f'_{k}'}.tif"
        where: list[tuple[Any, int, int, int]] = []
        written.append(write_mm_file(folder / name, chunk, summary, ndtiff=where))
        for (c, z, t, p), data_at, meta_at, meta_len in where:
            axes = {"time": t, "channel": names[c], "z": z + z_offset}
            if positions > 1:
                axes["position"] = p
            text = json.dumps(axes).encode()
            index += struct.pack("<I", len(text)) + text
            index += struct.pack("<I", len(name.encode())) + name.encode()
            index += struct.pack(
                "<IiiiiIii", data_at, shape[1], shape[0], 1, 0, meta_at, meta_len, 0
            )
    (folder / "NDTiff.index").write_bytes(bytes(index))
    return written
