"""Writers of Olympus FluoView OIF and OIB files (none in the corpus), from their known layout.

OIF: a UTF-16 (BOM) settings file ``<name>.oif`` of ``[Section]`` / ``Key=Value``
lines, and a folder ``<name>.oif.files`` with one single-page TIFF per plane,
named ``s_C001Z001T001.tif``. OIB: the same files as streams of an OLE compound
file (version 3, 512-byte sectors) plus ``OibInfo.txt`` mapping stream names
to file names. Streams are padded to the 4096-byte mini-stream cutoff so this
writer needs no mini stream (a reader finds them by size either way).
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING, Any

import tifffile

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


def oif_settings(
    stack: np.ndarray,
    *,
    dyes: list[str] | None = None,
    channel_names: list[str] | None = None,
    pixel_um: tuple[float, float] = (0.207, 0.207),
    z_step_nm: float = 1000.0,
) -> str:
    """The main settings text of a T,C,Z,Y,X stack (FluoView 4 layout).

    ``channel_names`` go to ``CH Name`` (FluoView's ``CH1``, ``TD1``...), ``dyes`` to
    ``DyeName`` (``None`` is what FluoView writes for a channel without a dye);
    ``pixel_um`` is (width, height) of a pixel.
    """
    size_t, size_c, size_z, size_y, size_x = stack.shape
    dyes = dyes or [f"Dye{c + 1}" for c in range(size_c)]
    channel_names = channel_names or [f"Ch{c + 1}" for c in range(size_c)]
    axes = [("X", size_x, 0, 0, "um"), ("Y", size_y, 0, 0, "um"), ("C", size_c, 0, 0, ""),
            ("Z", size_z if size_z > 1 else 0, 0, z_step_nm * (size_z - 1), "nm"),
            ("T", size_t if size_t > 1 else 0, 0, 2000.0 * (size_t - 1), "ms"),
            ("A", 0, 0, 0, ""), ("L", 0, 0, 0, ""), ("P", 0, 0, 0, "")]  # fmt: skip
    lines = [
        "[Acquisition Parameters Common]",
        "ImageCaputreDate='2012-05-03 14:22:10'",
        "Magnification=60.0",
        "ObjectiveLens NAValue=1.42",
        'ObjectiveLens Name="PLAPON 60X O  NA:1.42"',
    ]
    for n, (code, size, start, end, unit) in enumerate(axes):
        lines += [
            f"[Axis {n} Parameters Common]",
            f'AxisCode="{code}"',
            f"MaxSize={size}",
            f"StartPosition={start}",
            f"EndPosition={end}",
            f'UnitName="{unit}"',
        ]
    lines += ["[Axis Parameter Common]", 'AxisOrder="XYCZT"']
    for c in range(size_c):
        lines += [
            f"[Channel {c + 1} Parameters]",
            f'CH Name="{channel_names[c]}"',
            f'DyeName="{dyes[c]}"',
            f"EmissionWavelength={520 + 100 * c}",
            f"ExcitationWavelength={488 + 100 * c}",
        ]
    lines += [
        "[ProfileSaveInfo]",
        'Name="synthetic"',
        'Version="2.0.0.0"',
        "[Reference Image Parameter]",
        f"ValidBitCounts={12 if stack.dtype.itemsize > 1 else 8}",
        f"WidthConvertValue={pixel_um[0]}",
        f"HeightConvertValue={pixel_um[1]}",
        'WidthUnit="um"',
        'HeightUnit="um"',
    ]
    return "\r\n".join(lines) + "\r\n"


def _utf16(text: str) -> bytes:
    return b"\xff\xfe" + text.encode("utf-16-le")


def plane_files(stack: np.ndarray) -> dict[str, bytes]:
    """``s_C001Z001T001.tif`` -> TIFF bytes, one per plane."""
    size_t, size_c, size_z = stack.shape[:3]
    files = {}
    for t in range(size_t):
        for c in range(size_c):
            for z in range(size_z):
                buffer = io.BytesIO()
                tifffile.imwrite(buffer, stack[t, c, z], photometric="minisblack", metadata=None)
                files[f"s_C{c + 1:03d}Z{z + 1:03d}T{t + 1:03d}.tif"] = buffer.getvalue()
    return files


def write_oif(
    folder: Path,
    stack: np.ndarray,
    *,
    name: str = "cells",
    dyes: list[str] | None = None,
    **settings: Any,
) -> Path:
    """``folder/<name>.oif`` and ``folder/<name>.oif.files/`` for a T,C,Z,Y,X stack.

    ``settings`` go to :func:`oif_settings` (channel names, pixel size).
    """
    main = folder / f"{name}.oif"
    main.write_bytes(_utf16(oif_settings(stack, dyes=dyes, **settings)))
    storage = folder / f"{name}.oif.files"
    storage.mkdir()
    for file_name, data in plane_files(stack).items():
        (storage / file_name).write_bytes(data)
    return main


# ----------------------------------------------------------------------- OLE writer
_SECTOR = 512
_FREE, _END, _FATSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
_CUTOFF = 4096


def _dir_entry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
    raw = name.encode("utf-16-le") + b"\0\0" if name else b""
    return struct.pack(
        "<64sHBBIII16sIQQIQ",
        raw.ljust(64, b"\0"),
        len(raw),
        kind,
        1,  # black
        _FREE,  # left sibling
        right,
        child,
        b"\0" * 16,
        0,
        0,
        0,
        start,
        size,
    )


def _pad(data: bytes) -> bytes:
    """Reach the mini-stream cutoff: UTF-16 text with blank lines, anything else with zeros."""
    if len(data) >= _CUTOFF:
        return data
    filler = "\r\n".encode("utf-16-le") if data.startswith(b"\xff\xfe") else b"\0"
    return data + filler * (-(-(_CUTOFF - len(data)) // len(filler)))


def compound_file(streams: dict[str, bytes]) -> bytes:
    """A version-3 OLE compound file holding ``streams`` at its root (each padded to the cutoff)."""
    names = sorted(streams, key=lambda n: (len(n), n.upper()))  # the order siblings must follow
    payloads = [_pad(streams[n]) for n in names]
    data_sectors = [-(-len(p) // _SECTOR) for p in payloads]
    n_entries = 1 + len(names)
    dir_sectors = -(-n_entries * 128 // _SECTOR)
    body = sum(data_sectors) + dir_sectors
    fat_sectors = 1
    while (body + fat_sectors) > fat_sectors * (_SECTOR // 4):
        fat_sectors += 1
    fat = [_FATSECT] * fat_sectors
    starts = []
    for count in data_sectors:
        starts.append(len(fat))
        fat += [len(fat) + k + 1 for k in range(count - 1)] + [_END]
    dir_start = len(fat)
    fat += [len(fat) + k + 1 for k in range(dir_sectors - 1)] + [_END]
    fat += [_FREE] * (fat_sectors * (_SECTOR // 4) - len(fat))
    entries = [_dir_entry("Root Entry", 5, 1 if names else _FREE, _FREE, _END, 0)]
    for k, name in enumerate(names):
        right = k + 2 if k + 1 < len(names) else _FREE
        entries.append(_dir_entry(name, 2, _FREE, right, starts[k], len(payloads[k])))
    directory = b"".join(entries).ljust(dir_sectors * _SECTOR, b"\0")
    # empty directory slots must say "unused" with no siblings
    difat = list(range(fat_sectors)) + [_FREE] * (109 - fat_sectors)
    header = struct.pack(
        "<8s16sHHHHHHIIIIIIIIII",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\0" * 16,
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        0,
        0,
        0,
        fat_sectors,
        dir_start,
        0,
        _CUTOFF,
        _END,
        0,
        _END,
        0,
    ) + struct.pack("<109I", *difat)
    out = bytearray(header)
    out += struct.pack(f"<{len(fat)}I", *fat)
    for payload, count in zip(payloads, data_sectors, strict=True):
        out += payload.ljust(count * _SECTOR, b"\0")
    out += directory
    return bytes(out)


def write_oib(
    path: Path,
    stack: np.ndarray,
    *,
    name: str = "cells",
    dyes: list[str] | None = None,
    **settings: Any,
) -> Path:
    """An OIB holding the OIF of ``stack``: main settings, plane TIFFs and ``OibInfo.txt``."""
    files = {f"{name}.oif": _utf16(oif_settings(stack, dyes=dyes, **settings))}
    files.update({f"{name}.oif.files/{k}": v for k, v in plane_files(stack).items()})
    streams = {}
    info = ["[OibSaveInfo]", "MainFileName=Stream00000", f"Storage00001={name}.oif.files"]
    for k, (file_name, data) in enumerate(files.items()):
        stream = f"Stream{k:05d}"
        streams[stream] = data
        info.append(f"{stream}={file_name}")
    info += ['Name="synthetic"', 'Version="2.0.0.0"', "Compression=0"]
    streams["OibInfo.txt"] = _utf16("\r\n".join(info) + "\r\n")
    path.write_bytes(compound_file(streams))
    return path
