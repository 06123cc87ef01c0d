"""Corruptors: ways a file goes bad, as byte-level edits of a good file.

Why byte edits rather than writers: a hostile or damaged file is exactly a good
file with some bytes wrong or missing. Each corruptor returns the new bytes, or
``None`` when it does not apply to the file (no XML to replace, not a TIFF...).
:func:`variants` lists at least ten per file: truncations at several points,
header byte flips, lying sizes (zero and huge), structure loops, XML bombs and
external entities.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

Corruptor = Callable[[bytes], bytes | None]

#: Billion laughs: ten levels of ten-fold entity expansion (10^9 "lol"s).
_LAUGHS = '<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
    for i in range(1, 10)
)
#: An external entity that would read a local file.
_XXE = '<!ENTITY xxe SYSTEM "file:///etc/passwd">'


def xml_bomb(root: str, *, external: bool = False) -> bytes:
    """A small XML document with root ``root`` whose body expands to 3 GB (or reads a file)."""
    entity, use = (_XXE, "&xxe;") if external else (_LAUGHS, "&lol9;")
    return (
        f'<?xml version="1.0"?><!DOCTYPE {root.split()[0]} [{entity}]><{root}>{use}'
        f"</{root.split()[0]}>"
    ).encode()


class Variant(NamedTuple):
    """One corrupted version of a file: its kind (for the tally), name and corruptor."""

    kind: str
    name: str
    corrupt: Corruptor


# --------------------------------------------------------------------------- generic
def truncate(fraction: float) -> Corruptor:
    """Keep the first ``fraction`` of the file."""
    return lambda data: data[: int(len(data) * fraction)]


def keep_head(count: int) -> Corruptor:
    """Keep only the first ``count`` bytes (a header and nothing else)."""
    return lambda data: data[:count]


def drop_tail(count: int) -> Corruptor:
    """Cut the last ``count`` bytes."""
    return lambda data: data[:-count] if len(data) > count else None


def flip(start: int, stop: int) -> Corruptor:
    """Invert every bit of bytes ``start:stop`` (negative offsets count from the end)."""

    def run(data: bytes) -> bytes:
        out = bytearray(data)
        a, b = slice(start, stop).indices(len(out))[:2]
        out[a:b] = bytes(v ^ 0xFF for v in out[a:b])
        return bytes(out)

    return run


def scatter(seed: int, count: int, *, head: int | None = None) -> Corruptor:
    """Set ``count`` random bytes (within the first ``head`` bytes, else anywhere) to random values."""

    def run(data: bytes) -> bytes:
        rng = np.random.default_rng(seed)
        out = bytearray(data)
        limit = min(len(out), head) if head else len(out)
        for offset in rng.integers(0, limit, size=count):
            out[int(offset)] = int(rng.integers(0, 256))
        return bytes(out)

    return run


# --------------------------------------------------------------------------- TIFF
class _Entry(NamedTuple):
    tag: int
    dtype: int
    count: int
    value_at: int  # where the value (or its offset) is stored


def _tiff_ifd(data: bytes) -> tuple[str, bool, int, list[_Entry], int] | None:
    """Byte order, BigTIFF, first IFD offset, its entries, and where its next-IFD pointer is."""
    if data[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None
    bo = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        if big:
            (offset,) = struct.unpack_from(bo + "Q", data, 8)
            (count,) = struct.unpack_from(bo + "Q", data, offset)
            first, size, head = offset + 8, 20, "HHQ"
        else:
            (offset,) = struct.unpack_from(bo + "I", data, 4)
            (count,) = struct.unpack_from(bo + "H", data, offset)
            first, size, head = offset + 2, 12, "HHI"
        entries = []
        for i in range(min(count, 4096)):
            at = first + i * size
            tag, dtype, n = struct.unpack_from(bo + head, data, at)
            entries.append(_Entry(tag, dtype, n, at + struct.calcsize(bo + head)))
    except struct.error:
        return None
    return bo, big, offset, entries, first + count * size


def tiff_tag(tag: int, value: int) -> Corruptor:
    """Set the first IFD's numeric ``tag`` (ImageWidth 256, ImageLength 257...) to ``value``."""

    def run(data: bytes) -> bytes | None:
        parsed = _tiff_ifd(data)
        if parsed is None:
            return None
        bo, _, _, entries, _ = parsed
        for entry in entries:
            if entry.tag == tag and entry.count == 1 and entry.dtype in (3, 4, 16):
                out = bytearray(data)
                code = {3: "H", 4: "I", 16: "Q"}[entry.dtype]
                mask = (1 << (8 * struct.calcsize(code))) - 1
                struct.pack_into(bo + code, out, entry.value_at, value & mask)
                return bytes(out)
        return None

    return run


def tiff_ifd_loop(data: bytes) -> bytes | None:
    """Point the first IFD's next-IFD offset back at itself: an endless chain of pages."""
    parsed = _tiff_ifd(data)
    if parsed is None:
        return None
    bo, big, offset, _, next_at = parsed
    out = bytearray(data)
    try:
        struct.pack_into(bo + ("Q" if big else "I"), out, next_at, offset)
    except struct.error:
        return None
    return bytes(out)


def tiff_description(text: bytes) -> Corruptor:
    """Replace the first IFD's ImageDescription with ``text`` (appended, tag repointed)."""

    def run(data: bytes) -> bytes | None:
        parsed = _tiff_ifd(data)
        if parsed is None:
            return None
        bo, big, _, entries, _ = parsed
        for entry in entries:
            if entry.tag == 270:
                out = bytearray(data)
                where = len(out)
                body = text + b"\x00"
                out += body
                count_at = entry.value_at - (8 if big else 4)
                struct.pack_into(bo + ("Q" if big else "I"), out, count_at, len(body))
                struct.pack_into(bo + ("Q" if big else "I"), out, entry.value_at, where)
                return bytes(out)
        return None

    return run


# --------------------------------------------------------------------------- CZI
def _czi_first_entry(data: bytes) -> int | None:
    if not data.startswith(b"ZISRAWFILE"):
        return None
    try:
        (directory,) = struct.unpack_from("<q", data, 84)
        if not 0 < directory < len(data) - 200:
            return None
    except struct.error:
        return None
    return int(directory) + 160


def czi_dimension(axis: str, value: int, *, field: int = 1) -> Corruptor:
    """Set dimension ``axis`` of the first directory entry (field 0 start, 1 size, 3 stored size)."""

    def run(data: bytes) -> bytes | None:
        entry = _czi_first_entry(data)
        if entry is None:
            return None
        (count,) = struct.unpack_from("<i", data, entry + 28)
        for k in range(min(count, 64)):
            at = entry + 32 + 20 * k
            if data[at : at + 4].rstrip(b"\0") == axis.encode():
                out = bytearray(data)
                struct.pack_into("<i", out, at + 4 + 4 * field, value)
                return bytes(out)
        return None

    return run


def czi_loop(data: bytes) -> bytes | None:
    """Point the first subblock's file position at the directory segment itself."""
    entry = _czi_first_entry(data)
    if entry is None:
        return None
    out = bytearray(data)
    struct.pack_into("<q", out, entry + 6, entry - 160)
    return bytes(out)


def czi_xml(xml: bytes) -> Corruptor:
    """Replace the metadata XML in place (padded with spaces) when ``xml`` fits."""

    def run(data: bytes) -> bytes | None:
        if not data.startswith(b"ZISRAWFILE"):
            return None
        (metadata,) = struct.unpack_from("<q", data, 92)
        if not 0 < metadata < len(data) - 288:
            return None
        (size,) = struct.unpack_from("<i", data, metadata + 32)
        if size < len(xml):
            return None
        out = bytearray(data)
        start = metadata + 288
        out[start : start + size] = xml + b" " * (size - len(xml))
        return bytes(out)

    return run


# --------------------------------------------------------------------------- LIF
def _lif_xml(data: bytes) -> tuple[str, int] | None:
    """The LIF XML header and where the memory blocks start."""
    try:
        magic, _, mark, chars = struct.unpack_from("<iiBi", data, 0)
    except struct.error:
        return None
    if magic != 0x70 or mark != 0x2A or not 0 < chars < len(data):
        return None
    end = 13 + 2 * chars
    return data[13:end].decode("utf-16-le", "replace"), end


def lif_xml(transform: Callable[[str], str | bytes]) -> Corruptor:
    """Rewrite the LIF XML header (``transform`` gets the XML, returns the new one)."""

    def run(data: bytes) -> bytes | None:
        parsed = _lif_xml(data)
        if parsed is None:
            return None
        xml, end = parsed
        new = transform(xml)
        text = new.decode() if isinstance(new, bytes) else new
        if text == xml:
            return None
        body = text.encode("utf-16-le")
        chars = len(body) // 2
        header = struct.pack("<iiBi", 0x70, 1 + 4 + len(body), 0x2A, chars)
        return header + body + data[end:]

    return run


def lif_elements(value: str, *, count: int = 0) -> Corruptor:
    """Set the first ``count`` (0: every) ``NumberOfElements`` (dimension sizes) of the LIF XML."""
    return lif_xml(
        lambda xml: re.sub(
            r'NumberOfElements="\d+"', f'NumberOfElements="{value}"', xml, count=count
        )
    )


# --------------------------------------------------------------------------- ND2
def nd2_attribute(name: str, value: int) -> Corruptor:
    """Set the uint32 image attribute ``name`` (uiWidth, uiHeight...) of an ND2 file."""
    key = name.encode("utf-16-le") + b"\x00\x00"

    def run(data: bytes) -> bytes | None:
        at = data.find(key)
        if at < 0:
            return None
        out = bytearray(data)
        struct.pack_into("<I", out, at + len(key), value & 0xFFFFFFFF)
        return bytes(out)

    return run


def nd2_chunkmap_loop(data: bytes) -> bytes | None:
    """Point the chunk map's own location (the last 8 bytes) at the file header."""
    if len(data) < 40 or not data.startswith(b"\xda\xce\xbe\x0a"):
        return None
    return data[:-8] + struct.pack("<q", 0)


def inline_xml(xml: bytes) -> Corruptor:
    """Overwrite the first ``<?xml`` document found in the file, in place, when ``xml`` fits."""

    def run(data: bytes) -> bytes | None:
        start = data.find(b"<?xml")
        if start < 0:
            return None
        end = data.find(b">", data.rfind(b"</", start, start + 10_000_000))
        room = end + 1 - start if end > start else 0
        if room < len(xml):
            return None
        out = bytearray(data)
        out[start : start + room] = xml + b" " * (room - len(xml))
        return bytes(out)

    return run


# --------------------------------------------------------------------------- MRC / DeltaVision
def header_int(offset: int, value: int, fmt: str = "<i") -> Corruptor:
    """Set the little-endian integer at ``offset`` of a fixed header (MRC, DeltaVision, MM)."""

    def run(data: bytes) -> bytes | None:
        if len(data) < offset + struct.calcsize(fmt):
            return None
        out = bytearray(data)
        struct.pack_into(fmt, out, offset, value)
        return bytes(out)

    return run


def _mrc_family(name: str) -> bool:
    return name.lower().endswith((".dv", ".r3d", ".mrc", ".st", ".map", ".rec", ".mrcs"))


def mrc_family_variants() -> list[Variant]:
    """Lying sizes of the 1024-byte MRC/DeltaVision header (shared layout, bytes 0-16 and 92)."""
    return [
        Variant("lying-size", "nx-0", header_int(0, 0)),
        Variant("lying-size", "nx-huge", header_int(0, 2**31 - 1)),
        Variant("lying-size", "ny-negative", header_int(4, -3)),
        Variant("lying-size", "sections-huge", header_int(8, 2**30)),
        Variant(
            "lying-size",
            "sections-plus-one",
            lambda d: header_int(8, struct.unpack_from("<i", d, 8)[0] + 1)(d),
        ),
        Variant("lying-size", "mode-complex", header_int(12, 3)),
        Variant("lying-size", "mode-unknown", header_int(12, 77)),
        Variant("lying-size", "extended-header-huge", header_int(92, 2**31 - 1)),
        Variant("lying-size", "extended-header-past-end", lambda d: header_int(92, len(d))(d)),
    ]


def dv_variants() -> list[Variant]:
    """DeltaVision's own fields: times and waves that do not divide the sections, a bad sequence."""
    return [
        Variant("lying-size", "times-huge", header_int(180, 32767, "<h")),
        Variant("lying-size", "waves-negative", header_int(196, -2, "<h")),
        Variant("lying-size", "sequence-unknown", header_int(182, 9, "<h")),
    ]


# --------------------------------------------------------------------------- Imaris (HDF5)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def ims_edit(edit: Callable[[object], None]) -> Corruptor:
    """Apply ``edit(h5py.File)`` to an in-memory copy of an HDF5 file: an internally consistent lie."""

    def run(data: bytes) -> bytes | None:
        import io

        import h5py

        if not data.startswith(HDF5_MAGIC):
            return None
        buffer = io.BytesIO(data)
        try:
            with h5py.File(buffer, "r+") as f:
                edit(f)
        except (OSError, KeyError, ValueError):
            return None
        return buffer.getvalue()

    return run


def _chars(value: object) -> np.ndarray:
    return np.array([c.encode() for c in str(value)], dtype="S1")


def _set_attr(group: str, name: str, value: object) -> Callable[[object], None]:
    def edit(f: object) -> None:
        f[group].attrs[name] = _chars(value)  # type: ignore[index]

    return edit


def _external_data(f: object) -> None:
    group = f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"]  # type: ignore[index]
    shape, dtype = group["Data"].shape, group["Data"].dtype
    del group["Data"]
    group.create_dataset("Data", shape=shape, dtype=dtype, external=[("/etc/passwd", 0, 10**6)])


def _drop_channel(f: object) -> None:
    del f["DataSet/ResolutionLevel 0/TimePoint 0/Channel 0/Data"]  # type: ignore[index]


def ims_variants() -> list[Variant]:
    """Lies an Imaris file can tell in its own structure, written through HDF5."""
    image = "DataSetInfo/Image"
    channel = "DataSet/ResolutionLevel 0/TimePoint 0/Channel 0"
    return [
        Variant("lying-size", "x-huge", ims_edit(_set_attr(image, "X", 10**9))),
        Variant("lying-size", "x-0", ims_edit(_set_attr(image, "X", 0))),
        Variant("lying-size", "z-larger-than-data", ims_edit(_set_attr(image, "Z", 4096))),
        Variant(
            "lying-size",
            "imagesize-not-a-number",
            ims_edit(_set_attr(channel, "ImageSizeY", "many")),
        ),
        Variant("loop", "data-in-another-file", ims_edit(_external_data)),
        Variant("lying-size", "data-missing", ims_edit(_drop_channel)),
    ]


# --------------------------------------------------------------------------- Micro-Manager
def _mm_index_at(data: bytes) -> int | None:
    if len(data) < 40 or struct.unpack_from("<I", data, 8)[0] != 54773648:
        return None
    return int(struct.unpack_from("<I", data, 12)[0])


def mm_index(field: int, value: int) -> Corruptor:
    """Set word ``field`` of the index map (0 block header, 1 count, 2.. the rows' words)."""

    def run(data: bytes) -> bytes | None:
        at = _mm_index_at(data)
        if at is None or at + 4 * field + 4 > len(data):
            return None
        out = bytearray(data)
        struct.pack_into("<I", out, at + 4 * field, value & 0xFFFFFFFF)
        return bytes(out)

    return run


def mm_variants() -> list[Variant]:
    """Micro-Manager's header and index map telling lies (the TIFF's own lies are above)."""
    return [
        Variant("lying-size", "mm-summary-huge", header_int(36, 2**31 - 1, "<I")),
        Variant("lying-size", "mm-index-offset-past-end", header_int(12, 2**32 - 16, "<I")),
        Variant("lying-size", "mm-index-never-written", header_int(12, 0, "<I")),
        Variant("lying-size", "mm-index-count-huge", mm_index(1, 10**8)),
        Variant("lying-size", "mm-index-frame-huge", mm_index(4, 4_000_000_000)),
        Variant("loop", "mm-index-ifd-at-header", mm_index(6, 8)),
        Variant("lying-size", "mm-index-ifd-past-end", mm_index(6, 2**31)),
    ]


# --------------------------------------------------------------------------- catalogue
_OME_ROOT = 'OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"'


def variants(name: str, head: bytes) -> list[Variant]:
    """Every corruption tried on a file called ``name`` that starts with ``head``."""
    out = [
        Variant("truncation", "cut-16-bytes", keep_head(16)),
        Variant("truncation", "cut-1/3", truncate(1 / 3)),
        Variant("truncation", "cut-1/2", truncate(1 / 2)),
        Variant("truncation", "cut-9/10", truncate(0.9)),
        Variant("truncation", "cut-last-byte", drop_tail(1)),
        Variant("header-flip", "flip-bytes-4-16", flip(4, 16)),
        Variant("header-flip", "scatter-head", scatter(1, 12, head=4096)),
        Variant("body-flip", "scatter-body", scatter(2, 64)),
        Variant("body-flip", "flip-tail-64", flip(-64, None)),
    ]
    is_tiff = head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    if is_tiff and len(head) >= 16 and head[8:12] == struct.pack("<I", 54773648):
        out += mm_variants()  # Micro-Manager: a TIFF, with the TIFF lies below too
    if _mrc_family(name):
        out += mrc_family_variants()
        if name.lower().endswith((".dv", ".r3d")):
            out += dv_variants()
    elif head.startswith(HDF5_MAGIC):
        out += ims_variants()
    elif is_tiff:
        out += [
            Variant("lying-size", "width-0", tiff_tag(256, 0)),
            Variant("lying-size", "width-huge", tiff_tag(256, 0xFFFFFFFF)),
            Variant("lying-size", "height-1e6", tiff_tag(257, 1_000_000)),
            Variant("lying-size", "samples-0", tiff_tag(277, 0)),
            Variant("loop", "ifd-loop", tiff_ifd_loop),
            Variant("xml-bomb", "description-bomb", tiff_description(xml_bomb(_OME_ROOT))),
            Variant(
                "xml-external-entity",
                "description-xxe",
                tiff_description(xml_bomb(_OME_ROOT, external=True)),
            ),
        ]
    elif head.startswith(b"ZISRAWFILE"):
        out += [
            Variant("lying-size", "x-size-0", czi_dimension("X", 0)),
            Variant("lying-size", "x-size-huge", czi_dimension("X", 2**31 - 1)),
            Variant("lying-size", "c-start-huge", czi_dimension("C", 10**9, field=0)),
            Variant("lying-size", "y-stored-negative", czi_dimension("Y", -5, field=3)),
            Variant("loop", "subblock-at-directory", czi_loop),
            Variant("xml-bomb", "metadata-bomb", czi_xml(xml_bomb("ImageDocument"))),
            Variant(
                "xml-external-entity",
                "metadata-xxe",
                czi_xml(xml_bomb("ImageDocument", external=True)),
            ),
        ]
    elif head[:4] == b"\x70\x00\x00\x00":
        root = 'LMSDataContainerHeader Version="2"'
        out += [
            Variant("lying-size", "elements-0", lif_elements("0")),
            Variant("lying-size", "first-elements-0", lif_elements("0", count=1)),
            Variant("lying-size", "elements-huge", lif_elements("4000000000")),
            Variant("lying-size", "elements-negative", lif_elements("-7")),
            Variant(
                "loop",
                "memory-size-huge",
                lif_xml(lambda x: re.sub(r'Size="\d+"', 'Size="99999999999999"', x)),
            ),
            Variant("xml-bomb", "header-bomb", lif_xml(lambda _: xml_bomb(root))),
            Variant(
                "xml-external-entity",
                "header-xxe",
                lif_xml(lambda _: xml_bomb(root, external=True)),
            ),
        ]
    elif head.startswith(b"\xda\xce\xbe\x0a") or name.lower().endswith(".nd2"):
        out += [
            Variant("lying-size", "width-0", nd2_attribute("uiWidth", 0)),
            Variant("lying-size", "width-huge", nd2_attribute("uiWidth", 0xFFFFFFFF)),
            Variant("lying-size", "sequence-huge", nd2_attribute("uiSequenceCount", 10**9)),
            Variant("lying-size", "bits-0", nd2_attribute("uiBpcInMemory", 0)),
            Variant("loop", "chunkmap-at-header", nd2_chunkmap_loop),
            Variant("xml-bomb", "inline-bomb", inline_xml(xml_bomb("variant"))),
            Variant(
                "xml-external-entity", "inline-xxe", inline_xml(xml_bomb("variant", external=True))
            ),
        ]
    else:  # other formats (companion XML, DICOM, unknown): generic damage plus XML if any
        out += [
            Variant("xml-bomb", "inline-bomb", inline_xml(xml_bomb(_OME_ROOT))),
            Variant(
                "xml-external-entity", "inline-xxe", inline_xml(xml_bomb(_OME_ROOT, external=True))
            ),
            Variant("header-flip", "flip-bytes-0-4", flip(0, 4)),
        ]
    return out
