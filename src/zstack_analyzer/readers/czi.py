"""Zeiss CZI files, read with pylibCZIrw (Zeiss's libCZI).

Why pylibCZIrw: it is Zeiss's own reader, it stitches mosaics the way ZEN
does, and it decodes JPEG-XR and zstd subblocks. What we add around it:

* **A header check of our own** before libCZI sees the file: the file header,
  the subblock directory and the metadata segment must lie inside the file and
  claim no more entries or XML than the file (and the limits) can hold; then no
  axis may span more indices than there are subblocks, and every scene passes
  ``check_declared_size``. libCZI raises on most damage, but it trusts claimed
  sizes enough to allocate them first (a 10^9 x 10^9 subblock ends in
  ``std::bad_alloc``, a flipped C coordinate makes it loop over 10^9 channels).
  Opening checks the extent of the subblock that lies last in the file (where a
  cut falls); every plane's own subblocks are checked when it is first read.
* **Opening without libCZI:** the sizes, bounding boxes and pixel type come
  from the directory we parse anyway (the statistics libCZI derives from the
  same entries) and the XML from the metadata segment, read as stored; libCZI
  opens the file on the first pixel read. Opening and reading the metadata
  then cost no more than libCZI's own open (issue 22: it cost 2.5x).
* **Scenes as stitched bounding boxes** (SOURCES.md "CZI mosaics"): scene ``s``
  is ``read(plane={T,C,Z}, roi=scenes_bounding_rectangle[s], scene=s)`` at
  zoom 1, the whole-document rectangle when the file has no S index, with
  uncovered pixels 0.
* **Canonical pixels:** Bgr24/Bgr48 planes come out B,G,R and are reversed to
  R,G,B; grey planes lose libCZI's trailing sample axis.
* **Thread safety:** a pylibCZIrw reader object is never used by two threads
  at once. A small pool of native readers on the same file lets dask decode
  planes in parallel (libCZI releases the GIL while decoding).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import operator
import os
import struct
import sys
import threading
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import (
    CorruptFileError,
    LimitExceededError,
    MetadataError,
    SceneNotFoundError,
    UnsupportedFormatError,
    ZstackError,
)
from zstack_analyzer.limits import itemsize
from zstack_analyzer.metadata import ImageMetadata, SceneInfo
from zstack_analyzer.readers._base import ImageReader, planes_to_dask

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.readers._czi_xml import CziXmlInfo

__all__ = ["CziReader", "ReaderClosedError"]

logger = logging.getLogger(__name__)

CZI_MAGIC = b"ZISRAWFILE"

#: libCZI pixel type -> (numpy dtype, samples per pixel).
_PIXEL_TYPES: dict[str, tuple[str, int]] = {
    "Gray8": ("uint8", 1),
    "Gray16": ("uint16", 1),
    "Gray32Float": ("float32", 1),
    "Bgr24": ("uint8", 3),
    "Bgr48": ("uint16", 3),
    "Bgr96Float": ("float32", 3),
}

#: Dimensions libCZI reports beyond T, C, Z (S is scenes and M is stitched, so neither is here).
_VENDOR_DIMS = ("R", "I", "H", "V", "B")

# Segment layout (CZI file format specification 1.0).
_SEGMENT_HEADER = 32
_FILE_HEADER = struct.Struct("<16sqqii8x16s16siqqiq")  # 112 bytes
_DIRECTORY_HEADER = 160  # segment header + EntryCount + 124 reserved bytes
_MIN_DIRECTORY_ENTRY = 32  # an entry with no dimension entries
_METADATA_HEADER = 288  # segment header + XmlSize + AttachmentSize + 248 reserved bytes
#: XML bytes read with the metadata segment's header: a small document needs no second read.
_XML_IN_HEADER_READ = 4096

#: Native readers opened on one file at most (each holds libCZI's directory in memory).
_MAX_NATIVE_READERS = min(4, os.cpu_count() or 1)


class ReaderClosedError(ValueError):
    """A read was asked of a closed reader (a caller's mistake, not a corrupt file)."""


class _CziLayout:
    """What the file header and libCZI's subblock statistics say, computed once at open."""

    def __init__(
        self,
        *,
        xml_size: int | None,
        pixel_type: str,
        dtype: str,
        samples: int,
        sizes: dict[str, int],
        origin: tuple[int, int, int],
        extra_dims: dict[str, int],
        scene_keys: list[int | None],
        rectangles: list[tuple[int, int, int, int]],
        warnings: list[str],
    ) -> None:
        self.xml_size = xml_size
        self.pixel_type = pixel_type
        self.dtype = dtype
        self.samples = samples
        self.sizes = sizes
        #: The stored T, C, Z index of canonical plane (0, 0, 0): libCZI keeps a file's own
        #: start indices (a Z from 3 is read as Z=3), the canonical axes count from 0.
        self.origin = origin
        self.extra_dims = extra_dims
        self.scene_keys = scene_keys
        self.rectangles = rectangles
        self.warnings = warnings


class _NativePool:
    """pylibCZIrw readers on one file, each lent to one thread at a time.

    Why not one reader and a lock: libCZI decodes with the GIL released, so
    parallel dask reads of zstd or JPEG-XR planes scale with the cores; but
    nothing documents a pylibCZIrw reader object as safe to share, so none is.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._condition = threading.Condition()
        self._idle: list[Any] = []  # the first reader is opened by the first borrow
        self._count = 0
        self._closed = False

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Any]:
        native = self._take()
        try:
            yield native
        finally:
            self._give_back(native)

    def _take(self) -> Any:
        with self._condition:
            while True:
                if self._closed:
                    msg = f"{self._path.name}: the CZI reader is closed"
                    raise ReaderClosedError(msg)
                if self._idle:
                    return self._idle.pop()
                if self._count < _MAX_NATIVE_READERS:
                    self._count += 1
                    break
                self._condition.wait()
        try:
            return _open_native(self._path)
        except BaseException:
            with self._condition:
                self._count -= 1
                self._condition.notify()
            raise

    def _give_back(self, native: Any) -> None:
        with self._condition:
            if self._closed:
                native.close()
            else:
                self._idle.append(native)
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            self._condition.notify_all()
        for native in idle:
            native.close()


def _open_native(path: Path) -> Any:
    from pylibCZIrw import czi as pyczi

    try:
        return pyczi.CziReader(str(path))
    except Exception as exc:  # libCZI raises RuntimeError; wrap whatever it is
        msg = f"{path.name}: libCZI cannot open the file: {exc}"
        raise CorruptFileError(msg, path=path, detail=str(exc)) from exc


#: libCZI's pixel type codes, as directory entries store them -> libCZI's names.
_PIXEL_TYPE_NAMES = {
    0: "Gray8",
    1: "Gray16",
    2: "Gray32Float",
    3: "Bgr24",
    4: "Bgr48",
    8: "Bgr96Float",
    9: "Bgra32",
    10: "Gray64ComplexFloat",
    11: "Bgr192ComplexFloat",
    12: "Gray32",
    13: "Gray64Float",
}
#: Directory dimensions libCZI keeps bounds of (X, Y are the rectangle, M the tile index).
_LIBCZI_DIMS = frozenset("ZCTRIHVBS")

Rect = tuple[int, int, int, int]
#: An S or C column's value for an entry without that dimension (no int32 index is this).
_ABSENT = -(2**40)


def _same(column: Sequence[int]) -> bool:
    """Whether every value of the (non-empty) ``column`` is its first.

    Why: most directory columns hold one value (T, S, tile sizes), and ``count``
    (a C loop that first compares identity) costs less than ``min`` and ``max``.
    """
    return column.count(column[0]) == len(column)


def _low_high(column: Sequence[int]) -> tuple[int, int]:
    """``min`` and ``max`` of a non-empty column."""
    if _same(column):
        return column[0], column[0]
    return min(column), max(column)


def _union(xs: Sequence[int], ys: Sequence[int], ws: Sequence[int], hs: Sequence[int]) -> Rect:
    """The rectangle (x, y, w, h) that holds every (xs[i], ys[i], ws[i], hs[i]) (C-speed min/max)."""
    if _same(xs) and _same(ys) and _same(ws) and _same(hs):
        return xs[0], ys[0], ws[0], hs[0]  # every rectangle is the same one (a plain stack)
    x0, y0 = min(xs), min(ys)
    x1, y1 = max(map(operator.add, xs, ws)), max(map(operator.add, ys, hs))
    return x0, y0, x1 - x0, y1 - y0


class _Statistics:
    """What libCZI's subblock statistics hold, derived from the directory we parse anyway.

    Why not ask libCZI: opening its reader, then its bounding boxes and pixel
    types, cost more than everything else of an open (issue 22); the same
    figures follow from the entries: per dimension the interval of the
    subblocks' start indices (libCZI's ``dimBounds``), the union of every
    subblock's rectangle (``boundingBox``), that union per S index
    (``sceneBoundingBoxes``), and a channel's pixel type from its first
    subblock in directory order (``GetChannelPixelType``).
    ``tests/readers/test_czi_statistics.py`` holds them equal to libCZI's on
    every CZI of the corpus.
    """

    def __init__(
        self,
        bounds: dict[str, tuple[int, int]],
        box: Rect,
        scenes: dict[int, Rect],
        channel_of: Sequence[int] | None,
        pixel_codes: Sequence[int],
    ) -> None:
        #: Dimension -> (first index, number of indices), like libCZI's ``dimBounds``.
        self.bounds = bounds
        #: The rectangle of every subblock (libCZI's ``total_bounding_rectangle``).
        self.box = box
        #: S index -> its rectangle; empty without an S dimension.
        self.scenes = scenes
        self._channel_of = channel_of
        self._pixel_codes = pixel_codes

    def pixel_type(self, channel: int) -> str:
        """The pixel type of the first subblock of ``channel`` ("Invalid" when it has none)."""
        if self._channel_of is None or "C" not in self.bounds:
            code = self._pixel_codes[0] if self._pixel_codes else 0xFF
        else:
            try:
                code = self._pixel_codes[self._channel_of.index(channel)]
            except ValueError:
                code = 0xFF
        if code == 0xFF:
            return "Invalid"
        return _PIXEL_TYPE_NAMES.get(code, f"code {code}")


def _statistics(
    xs: Sequence[int],
    ys: Sequence[int],
    ws: Sequence[int],
    hs: Sequence[int],
    starts: Mapping[str, Sequence[int]],
    pixel_codes: Sequence[int],
) -> _Statistics:
    """:class:`_Statistics` from the directory's columns (``starts``: a dimension's start indices).

    In the entry-by-entry walk a column may be shorter than the directory
    (entries without that dimension), except S and C: they have one value per
    entry, :data:`_ABSENT` where the entry has none.
    """
    bounds: dict[str, tuple[int, int]] = {}
    for axis, column in starts.items():
        present = [v for v in column if v != _ABSENT] if _ABSENT in column else column
        if present:
            low, high = _low_high(present)
            bounds[axis] = (low, high - low + 1)
    box = _union(xs, ys, ws, hs)
    scenes: dict[int, Rect] = {}
    if "S" in bounds:
        s_of = starts["S"]
        low, count = bounds["S"]
        if count == 1 and _same(s_of):  # one S index and no entry without one
            scenes[low] = box
        else:
            members: dict[int, list[int]] = {}
            for i, s in enumerate(s_of):
                if s != _ABSENT:
                    members.setdefault(s, []).append(i)
            for s, idx in members.items():
                scenes[s] = _union(
                    [xs[i] for i in idx],
                    [ys[i] for i in idx],
                    [ws[i] for i in idx],
                    [hs[i] for i in idx],
                )
    return _Statistics(bounds, box, scenes, starts.get("C"), pixel_codes)


class _Directory:
    """The subblock directory, parsed once at open: where each subblock is and what it holds.

    Why keep it: opening checks only what costs the same for any file (the
    directory's own bounds, every entry's X/Y extent, the extent of the
    subblock that lies last in the file); each plane's own subblocks are
    checked against the file size when the plane is first read
    (:meth:`check_plane`), so a CZI cut short still ends in
    :class:`CorruptFileError` for every plane it lost.
    """

    def __init__(
        self,
        path: Path,
        file_size: int,
        entries: int,
        positions: list[int],
        coords: Callable[[], list[dict[str, int]]],
        header_sizes: list[int],
        block: Callable[[], tuple[int, int]],
        statistics: _Statistics,
    ) -> None:
        self.path = path
        self.file_size = file_size
        self.entries = entries
        self.positions = positions
        self._coords = coords
        self.header_sizes = header_sizes
        self._block = block
        #: libCZI's statistics of the subblocks, from the same entries.
        self.statistics = statistics
        self._checked: set[int] = set()
        self._by_plane: dict[tuple[int, int, int], list[int]] | None = None
        self._lock = threading.Lock()

    @functools.cached_property
    def coords(self) -> list[dict[str, int]]:
        """Each subblock's dimension starts (built on first use: opening does not need them)."""
        return self._coords()

    @functools.cached_property
    def block(self) -> tuple[int, int]:
        """The largest stored full-resolution subblock (rows, columns): a region read decodes it whole."""
        return self._block()

    def _where(self, index: int) -> str:
        dims = self.coords[index]
        where = " ".join(
            f"{axis}={dims[axis]}" for axis in ("S", "T", "C", "Z", "M") if axis in dims
        )
        return f"subblock {index} ({where})" if where else f"subblock {index}"

    def subblock_end(self, fd: int, index: int) -> int | None:
        """Where subblock ``index`` ends (``None`` when its sizes are unreadable or negative)."""
        position = self.positions[index]
        end = position + _SEGMENT_HEADER + self.header_sizes[index]
        if position <= 0 or end > self.file_size:
            return None
        raw = os.pread(fd, _SUBBLOCK_SIZES.size, position + _SEGMENT_HEADER)
        if len(raw) < _SUBBLOCK_SIZES.size:
            return None
        meta, attach, data = _SUBBLOCK_SIZES.unpack(raw)
        if meta < 0 or attach < 0 or data < 0:
            return None
        return int(end + meta + attach + data)

    def check_last(self, fd: int) -> None:
        """Refuse a file whose last subblock (by position) ends past its end: the cut of a truncation."""
        if not self.positions:
            return
        last = max(range(len(self.positions)), key=self.positions.__getitem__)
        end = self.subblock_end(fd, last)
        if end is None or end > self.file_size:
            msg = (
                f"{self.path.name}: {self._where(last)}, the last in the file, ends past the end "
                f"of the file ({self.file_size:,} bytes); the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)
        self._checked.add(last)

    def check_plane(
        self, t: int, c: int, z: int, scene: int | None, *, origin: tuple[int, int, int] = (0, 0, 0)
    ) -> None:
        """Refuse a read of plane (t, c, z) of S index ``scene`` if one of its subblocks lies past EOF.

        ``origin`` is the stored (T, C, Z) index of plane (0, 0, 0); messages name the plane
        as asked.
        """
        with self._lock:
            if self._by_plane is None:
                by_plane: dict[tuple[int, int, int], list[int]] = {}
                for i, dims in enumerate(self.coords):
                    key = (dims.get("T", 0), dims.get("C", 0), dims.get("Z", 0))
                    by_plane.setdefault(key, []).append(i)
                self._by_plane = by_plane
            wanted = [
                i
                for i in self._by_plane.get((origin[0] + t, origin[1] + c, origin[2] + z), ())
                if i not in self._checked
                and (scene is None or self.coords[i].get("S", scene) == scene)
            ]
        if not wanted:
            return
        missing: list[int] = []
        with self._lock:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for index in wanted:
                    end = self.subblock_end(fd, index)
                    if end is None or end > self.file_size:
                        missing.append(index)
                    else:
                        self._checked.add(index)
            finally:
                os.close(fd)
        if missing:
            listed = ", ".join(self._where(i) for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            msg = (
                f"{self.path.name}: plane t={t} c={c} z={z}: {len(missing)} subblock(s) end past "
                f"the end of the file ({self.file_size:,} bytes): {listed}{more}; the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)


class _Structure:
    """What opening reads of a CZI: the parsed directory and where the metadata XML lies."""

    def __init__(
        self, directory: _Directory, xml_at: int, xml_size: int | None, xml: bytes | None = None
    ) -> None:
        self.directory = directory
        #: File offset of the XML (after the metadata segment's header).
        self.xml_at = xml_at
        #: Its size in bytes; ``None`` without a metadata segment.
        self.xml_size = xml_size
        #: The XML as stored, read with the header on the same descriptor (``None``: read later).
        self.xml = xml


def _check_structure(path: Path, limits: ReadLimits) -> _Structure:
    """Validate the CZI header, the directory (its bounds, every entry) and the metadata segment.

    Returns the parsed subblock directory and where the XML lies.

    Why ourselves: these reads (the header, the directory in one read, one
    subblock header, the metadata header) make every offset and count libCZI
    will trust agree with the file's real size, so a truncated or hostile
    file fails here with a clear message instead of deep inside libCZI. The
    cost does not grow with the pixel data: subblocks other than the last are
    checked when their plane is read. ``os.pread`` on one descriptor: each
    read is one system call, no buffer to fill and no seek.
    """
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        msg = f"{name}: cannot read the CZI header: {exc}"
        raise CorruptFileError(msg, path=path) from exc
    try:
        file_size = os.fstat(fd).st_size
        head = os.pread(fd, _FILE_HEADER.size, 0)
        if len(head) < _FILE_HEADER.size:
            msg = f"{name}: {file_size} bytes is too short for a CZI file header"
            raise CorruptFileError(msg, path=path)
        (
            magic,
            _alloc,
            _used,
            major,
            _minor,
            _guid1,
            _guid2,
            _part,
            dir_pos,
            md_pos,
            _pending,
            _att,
        ) = _FILE_HEADER.unpack(head)
        if not magic.startswith(CZI_MAGIC):
            msg = f"{name}: not a CZI file (no ZISRAWFILE segment at offset 0)"
            raise CorruptFileError(msg, path=path)
        if major != 1:
            logger.debug("%s: CZI major version %d (expected 1)", name, major)
        if not 0 < dir_pos <= file_size - _DIRECTORY_HEADER:
            msg = (
                f"{name}: the subblock directory at offset {dir_pos} lies outside the file "
                f"({file_size} bytes); the file is truncated or corrupt"
            )
            raise CorruptFileError(msg, path=path)
        # The directory's header and its first entry in one read (each read is a system call).
        directory = os.pread(fd, _DIRECTORY_HEADER + _DIRECTORY_ENTRY.size, dir_pos)
        if not directory.startswith(b"ZISRAWDIRECTORY"):
            msg = f"{name}: no subblock directory segment at offset {dir_pos}; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        (entries,) = _INT32.unpack_from(directory, _SEGMENT_HEADER)
        room = (file_size - dir_pos - _DIRECTORY_HEADER) // _MIN_DIRECTORY_ENTRY
        if entries <= 0 or entries > room:
            msg = (
                f"{name}: the subblock directory claims {entries} subblocks; the file has room "
                f"for at most {room}: it is truncated or corrupt"
            )
            raise CorruptFileError(msg, path=path)
        if entries > limits.max_planes:
            msg = f"{name}: declares {entries:,} subblocks, over the limit of {limits.max_planes:,}"
            raise LimitExceededError(msg, path=path)
        start = dir_pos + _DIRECTORY_HEADER
        # Entries of one layout (the usual case) are read exactly, their size known from the
        # first entry's dimension count: a read of what 64 dimensions each could take cost
        # more in fresh pages than the parse. Any other directory is read up to that bound.
        first = directory[_DIRECTORY_HEADER:]
        count = _INT32.unpack_from(first, 28)[0] if len(first) == _DIRECTORY_ENTRY.size else 0
        exact = int(entries) * (_DIRECTORY_ENTRY.size + 20 * min(max(count, 0), 64))
        raw = os.pread(fd, min(file_size - start, exact), start)
        parsed = _parse_uniform(path, raw, file_size, int(entries))
        if parsed is None:
            bound = int(entries) * (_DIRECTORY_ENTRY.size + 20 * 64)
            raw = os.pread(fd, min(file_size - start, bound), start)
            parsed = _parse_walk(path, raw, file_size, int(entries))
        parsed.check_last(fd)
        if md_pos == 0:
            return _Structure(parsed, 0, None)
        if not 0 < md_pos <= file_size - _METADATA_HEADER:
            msg = f"{name}: the metadata segment at offset {md_pos} lies outside the file ({file_size} bytes)"
            raise CorruptFileError(msg, path=path)
        # The segment's header and, in the same read, a small XML (each read is a system call).
        metadata = os.pread(fd, _METADATA_HEADER + _XML_IN_HEADER_READ, md_pos)
        if not metadata.startswith(b"ZISRAWMETADATA"):
            msg = f"{name}: no metadata segment at offset {md_pos}; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        (xml_size,) = _INT32.unpack_from(metadata, _SEGMENT_HEADER)
        if xml_size < 0 or md_pos + _METADATA_HEADER + xml_size > file_size:
            msg = (
                f"{name}: the metadata XML claims {xml_size} bytes, past the end of the file "
                f"({file_size} bytes); the file is truncated or corrupt"
            )
            raise CorruptFileError(msg, path=path)
        if xml_size > limits.max_metadata_bytes:
            msg = (
                f"{name}: the metadata XML is {xml_size:,} bytes, over the limit of "
                f"{limits.max_metadata_bytes:,}"
            )
            raise LimitExceededError(msg, path=path)
    except OSError as exc:
        msg = f"{name}: cannot read the CZI header: {exc}"
        raise CorruptFileError(msg, path=path) from exc
    else:
        # Opening through the registry reads the XML at once (scene names): read it here on
        # this descriptor. A failed or short read leaves it to CziReader._get_xml, as before.
        xml: bytes | None = metadata[_METADATA_HEADER : _METADATA_HEADER + xml_size]
        if len(metadata) < _METADATA_HEADER + xml_size:
            try:
                xml = os.pread(fd, int(xml_size), md_pos + _METADATA_HEADER)
            except OSError:
                xml = None
    finally:
        os.close(fd)
    if xml is not None and len(xml) < xml_size:
        xml = None
    return _Structure(parsed, md_pos + _METADATA_HEADER, int(xml_size), xml)


_DIRECTORY_ENTRY = struct.Struct("<2siqiiB5xi")  # 32 bytes, then 20 per dimension
_DIMENSION_ENTRY = struct.Struct("<4siifi")
_SUBBLOCK_SIZES = struct.Struct("<iiq")  # MetadataSize, AttachmentSize, DataSize
#: One little-endian int32 (counts and sizes in segment headers), compiled at import.
_INT32 = struct.Struct("<i")


def _parse_directory(path: Path, raw: bytes, file_size: int, entries: int) -> _Directory:
    """Parse every directory entry of ``raw`` (the bytes after the directory header).

    (Opening calls the two paths itself, reading only what the first needs.)
    Refuses a directory that ends past the end of the file or holds a
    malformed entry, and an entry with an empty, negative or missing X or Y
    extent (libCZI would read it by its other size and the mosaic would
    silently change shape). Also finds the largest stored full-resolution
    subblock, the block a region read may have to decode whole, and libCZI's
    statistics (:class:`_Statistics`).

    Why two paths: writers give every entry the same dimensions in the same
    order, and then one struct call unpacks many entries at once (a Python
    loop over a 48-entry directory cost more than libCZI's whole open); any
    other directory is walked entry by entry.
    """
    uniform = _parse_uniform(path, raw, file_size, entries)
    return uniform if uniform is not None else _parse_walk(path, raw, file_size, entries)


def _dimension_error(path: Path, index: int, axis: str, size: int, stored: int) -> CorruptFileError:
    msg = (
        f"{path.name}: subblock {index} declares an empty or negative {axis} extent "
        f"(size {size}, stored {stored}); the file is corrupt"
    )
    return CorruptFileError(msg, path=path)


def _no_extent_error(path: Path, index: int) -> CorruptFileError:
    msg = f"{path.name}: subblock {index} has no X or no Y extent; the file is corrupt"
    return CorruptFileError(msg, path=path)


#: A directory entry's SchemaType "DV" as the little-endian uint16 it is stored as.
_DV = int.from_bytes(b"DV", "little")
#: Whether a ``memoryview.cast`` (native order) reads the file's little-endian integers.
_LITTLE_ENDIAN = sys.byteorder == "little"


def _parse_uniform(path: Path, raw: bytes, file_size: int, entries: int) -> _Directory | None:
    """The directory read column by column, or ``None`` unless all entries share one layout.

    An entry of one layout is ``stride`` bytes, so a field is every ``stride``-th
    word of the directory: ``memoryview.cast`` and a stepped slice give that
    column, ``tolist`` its values (C loops, no per-entry Python at open), and
    ``count``/``min``/``max`` check it. Only the columns opening needs become
    Python ints; what only reads need (coordinates, the largest block) is
    derived on first use. Why not ``struct.iter_unpack``: its rows and their
    transposition made more objects than the parse needs, which cost most of
    a first open in a fresh process (issue 22).
    The layout (which dimension is X or Y) comes from the first entry; every
    entry must carry the same labels, checked column by column.

    Fields at their byte offsets: SchemaType 0 (2 bytes), PixelType 2,
    FilePosition 6 (8 bytes), FilePart 14, DimensionCount 28; per dimension,
    at 32 + 20 k: label, start, size, start coordinate (float), stored size.
    """
    if len(raw) < _DIRECTORY_ENTRY.size or not _LITTLE_ENDIAN:
        return None
    (count,) = _INT32.unpack_from(raw, 28)
    stride = _DIRECTORY_ENTRY.size + 20 * count
    size = entries * stride
    if not 0 <= count <= 64 or size > len(raw):
        return None
    view = memoryview(raw)[:size]
    words = view.cast("i")  # 4-byte fields at offsets 4 k: DimensionCount, dimensions
    step = stride // 4
    # 4-byte fields at offsets 2 + 4 k: PixelType, FilePosition's low and high halves, FilePart.
    shifted = view[2 : size - 2].cast("i")
    if (
        words[7::step].tolist().count(count) != entries
        or view.cast("H")[:: stride // 2].tolist().count(_DV) != entries
    ):
        return None  # another layout or a malformed entry: the walk names it
    if shifted[3::step].tolist().count(0) != entries:
        return None  # a multi-part document: the walk skips the other parts' entries
    high = shifted[2::step].tolist()
    if high.count(0) != entries:
        return None  # a file over 4 GB: the walk reads the 64-bit positions
    raw_labels = [raw[32 + 20 * k : 36 + 20 * k] for k in range(count)]
    stripped = [label.rstrip(b"\0") for label in raw_labels]
    names = [label.decode("ascii", "replace") for label in stripped]
    for k in range(count):
        label = int.from_bytes(raw_labels[k], "little", signed=True)
        if words[8 + 5 * k :: step].tolist().count(label) != entries:
            return None  # dimensions in another order
    if "X" not in names or "Y" not in names:
        raise _no_extent_error(path, 0)

    def column(axis: str, offset: int) -> list[int]:
        """Dimension ``axis``'s column ``offset`` after its label (1 start, 2 size, 4 stored)."""
        return words[8 + 5 * names.index(axis) + offset :: step].tolist()

    for axis in ("X", "Y"):
        sizes, stored = column(axis, 2), column(axis, 4)
        if min(sizes) < 1 or min(stored) < 1:
            i = next(i for i in range(entries) if sizes[i] < 1 or stored[i] < 1)
            raise _dimension_error(path, i, axis, sizes[i], stored[i])
    positions = view[2 : size - 2].cast("I")[1::step].tolist()

    def coords() -> list[dict[str, int]]:
        columns = [words[8 + 5 * k + 1 :: step].tolist() for k in range(count)]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def block() -> tuple[int, int]:
        xs, xst = column("X", 2), column("X", 4)
        ys, yst = column("Y", 2), column("Y", 4)
        full = [i for i in range(len(xs)) if xs[i] == xst[i] and ys[i] == yst[i]]
        out = [max((yst[i] for i in full), default=1), max((xst[i] for i in full), default=1)]
        return out[0], out[1]

    statistics = _statistics(
        column("X", 1),
        column("Y", 1),
        column("X", 2),
        column("Y", 2),
        {axis: column(axis, 1) for axis in dict.fromkeys(names) if axis in _LIBCZI_DIMS},
        shifted[::step].tolist(),
    )
    header = max(256, 16 + stride)
    return _Directory(
        path, file_size, entries, positions, coords, [header] * entries, block, statistics
    )


def _parse_walk(path: Path, raw: bytes, file_size: int, entries: int) -> _Directory:
    """The directory entry by entry (entries of different dimensions, or a malformed one)."""
    name = path.name
    entry_unpack = _DIRECTORY_ENTRY.unpack_from
    dim_unpack = _DIMENSION_ENTRY.unpack_from
    positions: list[int] = []
    coords: list[dict[str, int]] = []
    header_sizes: list[int] = []
    # libCZI's statistics count every entry, the other parts' of a multi-part document too.
    rect_x: list[int] = []
    rect_y: list[int] = []
    rect_w: list[int] = []
    rect_h: list[int] = []
    codes: list[int] = []
    starts: dict[str, list[int]] = {"S": [], "C": []}
    block_rows = block_cols = 1
    offset = 0
    end = len(raw)
    for index in range(entries):
        if offset + _DIRECTORY_ENTRY.size > end:
            msg = f"{name}: the subblock directory ends past the end of the file; the file is truncated"
            raise CorruptFileError(msg, path=path)
        schema, ptype, position, part, _comp, _pyramid, count = entry_unpack(raw, offset)
        entry_size = _DIRECTORY_ENTRY.size + 20 * count
        if schema != b"DV" or not 0 <= count <= 64 or offset + entry_size > end:
            msg = f"{name}: subblock directory entry {index} is malformed; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        entry_starts: dict[str, int] = {}
        x = y = None
        for k in range(offset + _DIRECTORY_ENTRY.size, offset + entry_size, 20):
            label, start, size, _coord, stored = dim_unpack(raw, k)
            axis = label.rstrip(b"\0").decode("ascii", "replace")
            entry_starts[axis] = start
            if axis in ("X", "Y"):
                if size < 1 or stored < 1:
                    raise _dimension_error(path, index, axis, size, stored)
                if axis == "X":
                    x = (start, size, stored)
                else:
                    y = (start, size, stored)
        if x is None or y is None:
            raise _no_extent_error(path, index)
        offset += entry_size
        rect_x.append(x[0])
        rect_y.append(y[0])
        rect_w.append(x[1])
        rect_h.append(y[1])
        codes.append(ptype)
        for axis, start in entry_starts.items():
            if axis in _LIBCZI_DIMS and axis not in ("S", "C"):
                starts.setdefault(axis, []).append(start)
        starts["S"].append(entry_starts.get("S", _ABSENT))
        starts["C"].append(entry_starts.get("C", _ABSENT))
        if part != 0:  # a multi-part document's other files are not checked here
            continue
        positions.append(position)
        coords.append(entry_starts)
        header_sizes.append(max(256, 16 + entry_size))
        if x[1] == x[2] and y[1] == y[2]:  # full resolution (not a pyramid subblock)
            block_rows, block_cols = max(block_rows, y[2]), max(block_cols, x[2])
    for axis in ("S", "C"):
        if max(starts[axis], default=_ABSENT) == _ABSENT:
            del starts[axis]
    statistics = _statistics(rect_x, rect_y, rect_w, rect_h, starts, codes)
    return _Directory(
        path,
        file_size,
        entries,
        positions,
        lambda: coords,
        header_sizes,
        lambda: (block_rows, block_cols),
        statistics,
    )


class CziReader(ImageReader):
    """Zeiss CZI: scenes (stitched mosaics), T, C, Z, RGB; metadata from the XML.

    Examples
    --------
    >>> from pathlib import Path
    >>> CziReader.sniff(b"ZISRAWFILE" + bytes(6), Path("cells.czi"))
    True
    """

    format_name: ClassVar[str] = "CZI"
    suffixes: ClassVar[tuple[str, ...]] = (".czi",)
    required_packages: ClassVar[tuple[str, ...]] = ("pylibCZIrw",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Whether ``head`` starts with the CZI file-header segment id; never raises."""
        try:
            return bytes(head[: len(CZI_MAGIC)]) == CZI_MAGIC
        except Exception:  # sniff must never raise
            return False

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        structure = _check_structure(self.path, self.limits)
        self._directory = structure.directory
        self._xml_at = structure.xml_at
        self._xml_stored = structure.xml
        # libCZI's readers (and their pool) are made by the first pixel read or XML fallback.
        self._pool_made: _NativePool | None = None
        self._xml: str | None = None
        self._xml_info: CziXmlInfo | None = None
        self._xml_error: MetadataError | None = None
        self._layout = self._read_layout(structure.directory, structure.xml_size)
        self._scenes = [self._scene_info(i) for i in range(len(self._layout.scene_keys))]

    def _pool(self) -> _NativePool:
        """The pool of libCZI readers, made on first use.

        Why not at open: opening and reading metadata need no libCZI reader, and
        the pool's condition variable and close hook cost as much as the rest of
        the open's bookkeeping (issue 22: opening is timed in a fresh process).
        """
        pool = self._pool_made
        if pool is None:
            with self._lock:
                pool = self._pool_made
                if pool is None:
                    if self.closed:
                        msg = f"{self.path.name}: the CZI reader is closed"
                        raise ReaderClosedError(msg)
                    pool = _NativePool(self.path)
                    self.close_on_release(pool.close)
                    self._pool_made = pool
                    if self.closed:  # closed while the pool was made: it lends nothing
                        pool.close()
        return pool

    # ------------------------------------------------------------------ layout
    def _wrap(self, exc: Exception, action: str) -> ZstackError:
        """Our typed error for a pylibCZIrw/libCZI exception, naming the file and the action."""
        if isinstance(exc, MemoryError):
            msg = f"{self.path.name}: not enough memory {action}"
            return LimitExceededError(msg, path=self.path)
        msg = f"{self.path.name}: libCZI failed {action}: {exc}"
        return CorruptFileError(msg, path=self.path, detail=str(exc))

    def _read_layout(self, directory: _Directory, xml_size: int | None) -> _CziLayout:
        name = self.path.name
        stats = directory.statistics
        subblocks = directory.entries
        # Like pylibCZIrw's total_bounding_box: T, C, Z count 1 where the file has none.
        sizes = {axis: stats.bounds.get(axis, (0, 1))[1] for axis in ("T", "C", "Z")}
        t0, c0, z0 = (stats.bounds.get(axis, (0, 1))[0] for axis in ("T", "C", "Z"))
        extra = {
            axis: stats.bounds[axis][1]
            for axis in _VENDOR_DIMS
            if axis in stats.bounds and stats.bounds[axis][1] > 1
        }
        keys: list[int | None]
        if stats.scenes:
            keys = [*sorted(stats.scenes)]
            rectangles = [stats.scenes[k] for k in keys if k is not None]
        else:
            keys = [None]
            rectangles = [stats.box]
        # Sizes pass sanity and the limits before anything loops over them or allocates.
        # Every index of an axis has at least one subblock, so no axis spans more
        # indices than there are subblocks (a flipped coordinate claims millions).
        for axis, size in {**sizes, **extra}.items():
            if size > subblocks:
                msg = (
                    f"{name}: dimension {axis} spans {size:,} indices but the file holds only "
                    f"{subblocks:,} subblocks; the subblock directory is corrupt"
                )
                raise CorruptFileError(msg, path=self.path)
        for _, _, width, height in rectangles:
            if width <= 0 or height <= 0:
                msg = f"{name}: a scene has an empty bounding box ({width} x {height} pixels)"
                raise CorruptFileError(msg, path=self.path)
        # libCZI looks each channel up among the subblocks: a few suffice for the warning.
        pixel_types = [stats.pixel_type(c0 + c) for c in range(min(max(sizes["C"], 1), 16))]
        warnings: list[str] = []
        pixel_type = pixel_types[0]
        if pixel_type == "Invalid":
            msg = f"{name}: the subblock directory holds an invalid pixel type; the file is corrupt"
            raise CorruptFileError(msg, path=self.path)
        if pixel_type not in _PIXEL_TYPES:
            msg = f"{name}: CZI pixel type {pixel_type} is not supported (supported: {', '.join(_PIXEL_TYPES)})"
            raise UnsupportedFormatError(msg, path=self.path)
        if any(p != pixel_type for p in pixel_types):
            warnings.append(
                f"channels have different pixel types {pixel_types}: all read as {pixel_type}"
            )
        dtype, samples = _PIXEL_TYPES[pixel_type]
        for _, _, width, height in rectangles:
            shape: tuple[int, ...] = (sizes["T"], sizes["C"], sizes["Z"], height, width)
            self.check_shape((*shape, samples) if samples > 1 else shape, dtype)
        return _CziLayout(
            xml_size=xml_size,
            pixel_type=pixel_type,
            dtype=dtype,
            samples=samples,
            sizes=sizes,
            origin=(t0, c0, z0),
            extra_dims=extra,
            scene_keys=keys,
            rectangles=rectangles,
            warnings=warnings,
        )

    def _scene_info(self, index: int) -> SceneInfo:
        layout = self._layout
        _, _, width, height = layout.rectangles[index]
        return SceneInfo(
            index=index,
            name=None,
            size_t=layout.sizes["T"],
            size_c=layout.sizes["C"],
            size_z=layout.sizes["Z"],
            size_y=height,
            size_x=width,
            samples_per_pixel=layout.samples,
            dtype=layout.dtype,
            extra_dims=dict(layout.extra_dims),
        )

    # ---------------------------------------------------------------- metadata
    def _get_xml(self) -> str:
        """The metadata XML as the file stores it (UTF-8); libCZI's copy if it is not UTF-8.

        Why not libCZI's ``GetXmlMetadata`` first: it parses the whole document
        (pugixml) and writes it out again, which costs more than our parse of
        the parts we map; the stored text is what ZEN wrote.
        """
        if self._xml is None:
            size = self._layout.xml_size
            if size is None:
                self._xml = ""
            else:
                raw, self._xml_stored = self._xml_stored, None  # read at open, used once
                try:
                    if raw is None:
                        fd = os.open(self.path, os.O_RDONLY)
                        try:
                            raw = os.pread(fd, size, self._xml_at)
                        finally:
                            os.close(fd)
                except OSError as exc:
                    msg = f"{self.path.name}: cannot read the metadata XML: {exc}"
                    raise CorruptFileError(msg, path=self.path) from exc
                if len(raw) < size:
                    msg = f"{self.path.name}: the metadata XML ends past the end of the file"
                    raise CorruptFileError(msg, path=self.path)
                # No "utf-8-sig" codec: its lookup imports a module on first use (~0.3 ms).
                raw = raw.rstrip(b"\0")
                try:
                    self._xml = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
                except UnicodeDecodeError:
                    self._xml = self._libczi_xml()
        return self._xml

    def _libczi_xml(self) -> str:
        """The XML as libCZI gives it: parsed (pugixml: no DTD, any encoding), written as UTF-8."""
        try:
            with self._pool().borrow() as native:
                return str(native.raw_metadata)
        except (ZstackError, ReaderClosedError):
            raise
        except Exception as exc:  # libCZI parses the XML itself (pugixml) and may refuse it
            msg = f"{self.path.name}: libCZI cannot read the metadata XML: {exc}"
            raise MetadataError(msg, path=self.path, detail=str(exc)) from exc

    def _get_xml_info(self) -> CziXmlInfo:
        with self._lock:
            if self._xml_error is not None:
                raise self._xml_error
            if self._xml_info is None:
                from zstack_analyzer.readers._czi_xml import parse_czi_xml

                try:
                    self._xml_info = parse_czi_xml(self._get_xml(), path=self.path)
                except MetadataError as exc:
                    # A DTD (refused by our parser) or another quirk libCZI's copy does not
                    # have: that copy is what this reader read before it read the file's own.
                    try:
                        self._xml_info = parse_czi_xml(self._libczi_xml(), path=self.path)
                    except ZstackError:
                        self._xml_error = exc  # parse once, fail the same way every time
                        raise exc from None
                # Scene names live in the XML; SceneInfo carries them for every consumer.
                names = self._xml_info.scene_names
                # A scene the XML names nothing keeps its SceneInfo (name None, as made).
                self._scenes = [
                    info.model_copy(update={"name": names[key]})
                    if key is not None and names.get(key) is not None
                    else info
                    for info, key in zip(self._scenes, self._layout.scene_keys, strict=True)
                ]
            return self._xml_info

    def scenes(self) -> Sequence[SceneInfo]:
        """Every scene (S index) in file order; a file without an S index has one scene."""
        try:
            self._get_xml_info()
        except MetadataError:
            # Pixels stay readable without the XML; metadata() reports the error itself.
            logger.debug("%s: scene names unavailable (unreadable XML)", self.path.name)
        return list(self._scenes)

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata of ``scene``: sizes from libCZI, the rest from the XML."""
        xml = self._get_xml_info()
        info = self.scene_info(scene)
        layout = self._layout
        size_c = info.size_c
        warnings = [*layout.warnings, *xml.warnings]
        # The parsed fields as dicts: validating the record builds its models from them in
        # one pass (pydantic-core), and no record shares a model with the parse or another.
        channels = [
            xml.channels[i] if i < len(xml.channels) else {"index": i} for i in range(size_c)
        ]
        if xml.channels and len(xml.channels) != size_c:
            warnings.append(
                f"the XML describes {len(xml.channels)} channels; the subblocks hold {size_c}"
            )
        bit_depth = itemsize(layout.dtype) * 8
        significant = xml.significant_bits
        if significant is not None and significant > bit_depth:
            significant = None
        provenance = {
            "sizes": "CZI subblock directory (libCZI bounding boxes)",
            "channels.name": "CZI Information/Image/Dimensions/Channels/Channel/@Name",
            **xml.provenance,
        }
        if info.name is not None:
            provenance["scene_name"] = "CZI Information/Image/Dimensions/S/Scenes/Scene/@Name"
        for axis, size in layout.extra_dims.items():
            warnings.append(f"CZI dimension {axis} has {size} entries: index 0 is shown")
        return self.scene_metadata(
            info,
            bit_depth=bit_depth,
            significant_bits=significant,
            physical_size=xml.physical_size,
            time_interval_s=xml.time_interval_s,
            channels=channels,
            objective=xml.objective,
            microscope=xml.microscope,
            acquired_at=xml.acquired_at,
            acquired_at_local=xml.acquired_at_local,
            pyramid_levels=[(info.size_y, info.size_x)],
            provenance=provenance,
            warnings=warnings,
            vendor_metadata={
                "pixel_type": layout.pixel_type,
                "scene_s_index": layout.scene_keys[scene],
                "bounding_rectangle": list(layout.rectangles[scene]),
                **xml.vendor_metadata,
            },
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The document's metadata XML, in full, as ``{"xml": str}``."""
        return {"xml": self._get_xml()}

    # ------------------------------------------------------------------ pixels
    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X(,S) array of ``scene``: one chunk per stitched (t, c, z) plane."""
        info = self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; CZI scenes are read at level 0"
            raise SceneNotFoundError(msg, path=self.path)
        read = functools.partial(self._read, scene)
        return planes_to_dask(read, info.shape, info.dtype, name="czi")

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One stitched Y,X(,S) plane, read directly (no dask graph)."""
        self.check_plane_index(scene, t, c, z)
        return self._read(scene, t, c, z)

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """The largest stored subblock (rows, columns): libCZI decodes whole subblocks."""
        info = self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; CZI scenes are read at level 0"
            raise SceneNotFoundError(msg, path=self.path)
        block = self._directory.block
        return (min(block[0], info.size_y), min(block[1], info.size_x))

    def read_region(
        self,
        scene: int,
        t: int,
        c: int,
        z: int,
        rows: tuple[int, int],
        cols: tuple[int, int],
        *,
        level: int = 0,
    ) -> np.ndarray:
        """A region of one stitched plane; libCZI decodes only the subblocks it touches."""
        info = self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; CZI scenes are read at level 0"
            raise SceneNotFoundError(msg, path=self.path)
        self.check_plane_index(scene, t, c, z)
        y0, y1 = max(0, rows[0]), min(info.size_y, rows[1])
        x0, x1 = max(0, cols[0]), min(info.size_x, cols[1])
        if y1 <= y0 or x1 <= x0:
            tail = (info.samples_per_pixel,) if info.samples_per_pixel > 1 else ()
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), *tail), dtype=info.dtype)
        return self._read(scene, t, c, z, window=(x0, y0, x1 - x0, y1 - y0))

    def _read(
        self,
        scene: int,
        t: int,
        c: int,
        z: int,
        *,
        window: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        layout = self._layout
        x, y, width, height = layout.rectangles[scene]
        if window is not None:  # (x, y, w, h) within the scene
            x, y, width, height = x + window[0], y + window[1], window[2], window[3]
        key = layout.scene_keys[scene]
        t0, c0, z0 = layout.origin
        self._directory.check_plane(t, c, z, key, origin=layout.origin)
        try:
            with self._pool().borrow() as native:
                # Background 0 (SOURCES.md: pixels no tile covers are 0), said explicitly.
                data = native.read(
                    roi=(x, y, width, height),
                    plane={"T": t0 + t, "C": c0 + c, "Z": z0 + z},
                    scene=key,
                    zoom=1.0,
                    pixel_type=layout.pixel_type,
                    background_pixel=(0.0, 0.0, 0.0),
                )
        except (ZstackError, ReaderClosedError):
            raise
        except Exception as exc:  # libCZI RuntimeError / MemoryError, pylibCZIrw ValueError
            raise self._wrap(exc, f"reading plane t={t} c={c} z={z}") from exc
        array = np.asarray(data)
        if array.shape[:2] != (height, width):
            msg = (
                f"{self.path.name}: libCZI returned a {array.shape} plane for a "
                f"{height} x {width} scene"
            )
            raise CorruptFileError(msg, path=self.path)
        if layout.samples == 1:
            return np.ascontiguousarray(array.reshape(height, width))
        # libCZI's Bgr24/Bgr48 memory order is B, G, R; canonical S is R, G, B.
        return np.ascontiguousarray(array[:, :, 2::-1])
