"""A writer of legacy (JPEG 2000) ND2 files, as the nd2 package reads them (none in the corpus).

A legacy ND2 is a JP2 container: the signature box, ``ftyp``, ``jp2h`` (whose ``ihdr``
gives height, width and bits per component), then NIS-Elements' own boxes, each named
by a four-letter LIM type: ``VIMD`` (frame metadata: calibration, picture planes), ``AIM1``
(the experiment loops), ``VCAL`` (one per frame), ``LUNK`` (one JPEG 2000 codestream per
frame and channel). A box map at the end (``LABORATORY IMAGING ND BOX MAP 00`` and the
distance from the end to it) lists every box by (box type, LIM type, offset, length). Metadata
boxes hold NIS-Elements' variant XML: an element per field, typed by ``runtype``, named
with a lowercase type prefix (``dCalibration``, ``uiCount``) that readers strip.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import imagecodecs

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_MAP_SIGNATURE = b"LABORATORY IMAGING ND BOX MAP 00"


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _value(name: str, runtype: str, value: object) -> str:
    return f'<{name} runtype="{runtype}" value="{value}"/>'


def _variant(body: str) -> bytes:
    text = f'<?xml version="1.0" encoding="UTF-8"?><variant version="1.0">{body}</variant>'
    return text.encode()


def write_legacy_nd2(
    path: Path,
    planes: np.ndarray,
    *,
    calibration_um: float | None,
    z_step_um: float,
    channel_names: list[str],
) -> None:
    """Write ``planes`` (Z, C, Y, X[, S]) as a legacy ND2 with one Z loop.

    With S (3: RGB) each channel's codestream holds its samples as components.
    ``calibration_um`` None leaves ``dCalibration`` out (nd2 then reports 1.0).
    """
    size_z, size_c, height, width = planes.shape[:4]
    samples = planes.shape[4] if planes.ndim == 5 else 1
    bits = planes.dtype.itemsize * 8
    boxes: list[tuple[bytes, bytes, bytes]] = []  # (box type, LIM type, box bytes)
    boxes.append((b"ftyp", b"ftyp", _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")))
    ihdr = _box(b"ihdr", struct.pack(">iihBBBB", height, width, samples, bits - 1, 7, 0, 0))
    boxes.append((b"jp2h", b"jp2h", _box(b"jp2h", ihdr)))
    plane_xml = "".join(
        f'<a{i} runtype="CLxListVariant">'
        + _value("sOpticalConfigName", "CLxStringW", name)
        + _value("uiColor", "lx_uint32", 0xFF)
        + _value("uiCompCount", "lx_uint32", samples)
        + f"</a{i}>"
        for i, name in enumerate(channel_names)
    )
    frame_md = (
        '<no_name runtype="CLxListVariant">'
        + (_value("dCalibration", "double", calibration_um) if calibration_um else "")
        + _value("bCalibrated", "bool", "true" if calibration_um else "")
        + '<PicturePlanes runtype="CLxListVariant">'
        + _value("uiCount", "lx_uint32", size_c)
        + _value("uiCompCount", "lx_uint32", size_c * samples)
        + f'<Plane runtype="CLxListVariant">{plane_xml}</Plane>'
        + "</PicturePlanes></no_name>"
    )
    boxes.append((b"LIMD", b"VIMD", _box(b"LIMD", _variant(frame_md))))
    loop = (
        '<AIM1_V1 runtype="CLxListVariant">'
        + _value("eType", "lx_int32", 4)
        + '<LoopPars runtype="CLxListVariant">'
        + _value("uiCount", "lx_uint32", size_z)
        + _value("dZLow", "double", 0.0)
        + _value("dZHigh", "double", z_step_um * (size_z - 1))
        + _value("dZHome", "double", 0.0)
        + _value("dZStep", "double", z_step_um)
        + "</LoopPars></AIM1_V1>"
    )
    boxes.append((b"LIMD", b"AIM1", _box(b"LIMD", _variant(loop))))
    for z in range(size_z):
        boxes.append((b"LIMD", b"VCAL", _box(b"LIMD", _variant(""))))
        for c in range(size_c):
            stream = imagecodecs.jpeg2k_encode(planes[z, c], level=0, codecformat="J2K")
            boxes.append((b"LIMD", b"LUNK", _box(b"LIMD", bytes(stream))))
    body = bytearray(SIGNATURE)
    entries = []
    for kind, lim, raw in boxes:
        entries.append(struct.pack("<4s4sII", kind, lim, len(body), len(raw)))
        body += raw
    table = struct.pack(">I", len(entries)) + b"".join(entries)
    # The map is the last box, of length 0 (it runs to the end of the file).
    tail = table + _MAP_SIGNATURE + struct.pack("<Q", len(table) + 40)
    body += struct.pack(">I4s", 0, b"LIMM") + tail
    path.write_bytes(bytes(body))
