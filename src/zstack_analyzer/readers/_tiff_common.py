"""Shared machinery of the TIFF-family readers (OME-TIFF, ImageJ, STK, plain TIFF).

Why one module: the four readers differ in where their metadata lives, not in
how pixels are stored. Sniffing the first IFD, opening tifffile with errors
wrapped, mapping (t, c, z) to a page, checking segments against the file size,
decoding under a lock and normalising a page to Y, X (, S) are written once
here; each format module only builds its scene plans and metadata.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from zstack_analyzer.budget import charge, check_block, reserve
from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, ZstackError
from zstack_analyzer.readers._base import ImageReader, planes_to_dask
from zstack_analyzer.readers._strip_stream import STREAM_STEP, StripCursors, streamable
from zstack_analyzer.storage.remote import RangedFile, RemoteObject, RemoteReadError
from zstack_analyzer.vendor import json_safe

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo

__all__ = [
    "UNIT_TO_UM",
    "ScenePlan",
    "TiffFamilyReader",
    "TiffPeek",
    "length_to_um",
    "peek_tiff",
    "series_plan",
    "vendor_safe",
]

logger = logging.getLogger(__name__)

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Length units as vendors spell them -> factor to µm. ImageJ writes µ escaped ("\\u00B5m").
UNIT_TO_UM: dict[str, float] = {
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "dm": 1e5,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "in": 25400.0,
    "inch": 25400.0,
    "ft": 304800.0,
}

#: Cap on the JSON-safe vendor metadata copy (characters of a string, items of a list).
VENDOR_STRING_CAP = 65536
VENDOR_LIST_CAP = 256
VENDOR_MAX_DEPTH = 8


def length_to_um(unit: str | None) -> float | None:
    """Factor from ``unit`` to µm, or ``None`` for unknown units ("pixel", "")."""
    if unit is None:
        return None
    return UNIT_TO_UM.get(unit.strip().lower().replace("\\u00B5", "\\u00b5"))


def vendor_safe(value: Any) -> Any:
    """``json_safe`` with the TIFF family's caps (long ImageJ/STK strings and arrays)."""
    return json_safe(
        value, max_string=VENDOR_STRING_CAP, max_items=VENDOR_LIST_CAP, max_depth=VENDOR_MAX_DEPTH
    )


# --------------------------------------------------------------------------- sniffing
@dataclass(frozen=True, slots=True)
class TiffPeek:
    """What the first IFD of a TIFF says, read without tifffile (sniffing must be cheap)."""

    tags: frozenset[int] = frozenset()
    description_head: bytes = b""

    @property
    def is_ome(self) -> bool:
        """First ImageDescription is OME-XML (as tifffile decides: ends with ``OME>``)."""
        # The head decides, not the tail: a truncated OME-XML is a corrupt OME-TIFF,
        # not a plain TIFF with a strange description.
        head = self.description_head.lstrip()
        return head.startswith(b"<") and (b"<OME" in head or b":OME" in head)

    @property
    def is_imagej(self) -> bool:
        """First ImageDescription is an ImageJ header."""
        return self.description_head.startswith(b"ImageJ=")

    @property
    def is_stk(self) -> bool:
        """The first IFD carries MetaMorph UIC tags."""
        return bool(self.tags & {33628, 33629})


#: What tifffile (and numpy under it) raise for a damaged file: a ZeroDivisionError from a
#: zero rows-per-strip, an AssertionError from an inconsistent series (found by fuzzing).
_BROKEN_FILE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OSError,
    RuntimeError,
    ArithmeticError,
    AssertionError,
    NotImplementedError,
    struct.error,
)

_PEEK_DESCRIPTION_HEAD = 65536


class BinaryReadable(Protocol):
    """What the IFD parsers here need of a file: an open file, a RangedFile, tifffile's handle."""

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Move the position."""
        ...

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        ...


def _first_ifd_offset(fh: BinaryReadable) -> tuple[str, bool, int]:
    """Byte order (struct prefix), whether BigTIFF, and the first IFD's offset, from the header."""
    fh.seek(0)
    header = fh.read(16)
    bo = "<" if header[:2] == b"II" else ">"
    bigtiff = header[2:4] in (b"+\x00", b"\x00+")
    if bigtiff:
        (offset,) = struct.unpack(bo + "Q", header[8:16])
    else:
        (offset,) = struct.unpack(bo + "I", header[4:8])
    return bo, bigtiff, int(offset)


def _peek_file(fh: BinaryReadable) -> TiffPeek:
    bo, bigtiff, offset = _first_ifd_offset(fh)
    if bigtiff:
        count_fmt, entry_size, entry_fmt = "Q", 20, "HHQ8s"
    else:
        count_fmt, entry_size, entry_fmt = "H", 12, "HHI4s"
    fh.seek(offset)
    raw = fh.read(struct.calcsize(count_fmt))
    (count,) = struct.unpack(bo + count_fmt, raw)
    if not 0 < count <= 4096:
        return TiffPeek()
    entries = fh.read(count * entry_size)
    tags: set[int] = set()
    head = b""
    for i in range(len(entries) // entry_size):
        tag, dtype, n, value = struct.unpack(
            bo + entry_fmt, entries[i * entry_size : (i + 1) * entry_size]
        )
        tags.add(tag)
        if tag == 270 and dtype in (1, 2, 7) and not head:
            if n <= len(value):
                head = value[:n]
                continue
            (data_offset,) = struct.unpack(bo + ("Q" if bigtiff else "I"), value)
            fh.seek(data_offset)
            head = fh.read(min(n, _PEEK_DESCRIPTION_HEAD))
    return TiffPeek(frozenset(tags), head)


#: Bytes per value of each TIFF field type (1 BYTE ... 18 IFD8).
_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}


def first_ifd_overruns(fh: BinaryReadable, size: int) -> list[int]:
    """Tags of the first IFD whose values lie (partly) past ``size``, the end of the file.

    Why: tifffile logs such a tag and drops it, so a TIFF cut short in its
    trailing metadata (FEI and EXIF blocks often sit at the very end) would
    open as a valid file that silently lost its calibration. ``fh`` is any
    seekable binary file (the reader passes tifffile's own handle, so a
    remote object is not opened a second time).
    """
    bo, bigtiff, offset = _first_ifd_offset(fh)
    if bigtiff:
        count_fmt, entry_size, entry_fmt, inline = "Q", 20, "HHQQ", 8
    else:
        count_fmt, entry_size, entry_fmt, inline = "H", 12, "HHII", 4
    fh.seek(offset)
    raw = fh.read(struct.calcsize(count_fmt))
    if len(raw) < struct.calcsize(count_fmt):
        return []
    (count,) = struct.unpack(bo + count_fmt, raw)
    entries = fh.read(min(count, 65535) * entry_size)
    overruns = []
    for i in range(len(entries) // entry_size):
        tag, dtype, n, value = struct.unpack_from(bo + entry_fmt, entries, i * entry_size)
        nbytes = n * _TYPE_SIZES.get(dtype, 1)
        if nbytes > inline and value + nbytes > size:
            overruns.append(int(tag))
    return overruns


@functools.lru_cache(maxsize=16)
def _peek_cached(path: Path, _size: int, _mtime_ns: int) -> TiffPeek:
    try:
        with path.open("rb") as fh:
            return _peek_file(fh)
    except (OSError, struct.error, ValueError):
        return TiffPeek()


#: Peeks of remote objects (a stored object never changes under its name), newest last.
_REMOTE_PEEKS: OrderedDict[RemoteObject, TiffPeek] = OrderedDict()
_REMOTE_PEEKS_LOCK = threading.Lock()
_REMOTE_PEEKS_MAX = 64


def _peek_remote(source: RemoteObject) -> TiffPeek:
    """The first IFD of a remote object, by ranged GETs; a failed fetch is not remembered."""
    with _REMOTE_PEEKS_LOCK:
        peek = _REMOTE_PEEKS.get(source)
        if peek is not None:
            _REMOTE_PEEKS.move_to_end(source)
            return peek
    try:
        with source.open() as fh:
            peek = _peek_file(fh)
    except (struct.error, ValueError):
        peek = TiffPeek()
    except OSError:
        return TiffPeek()
    with _REMOTE_PEEKS_LOCK:
        _REMOTE_PEEKS[source] = peek
        while len(_REMOTE_PEEKS) > _REMOTE_PEEKS_MAX:
            _REMOTE_PEEKS.popitem(last=False)
    return peek


def peek_tiff(head: bytes, source: Path | RemoteObject) -> TiffPeek | None:
    """Parse the first IFD of ``source`` if ``head`` starts like a TIFF; never raises.

    Cached on (path, size, mtime), or on the remote object, because four
    readers sniff the same file in a row.
    """
    if head[:4] not in TIFF_MAGICS:
        return None
    if isinstance(source, RemoteObject):
        return _peek_remote(source)
    try:
        stat = source.stat()
    except OSError:
        return TiffPeek()
    return _peek_cached(source, stat.st_size, stat.st_mtime_ns)


# --------------------------------------------------------------------------- plans
@dataclass
class ScenePlan:
    """Where the planes of one scene live and how big they are.

    ``locate(t, c, z)`` gives ``(slot, sub)``: the page slot of the scene and,
    for pages holding several planes (STK, contiguous ImageJ), the plane within
    it. ``page(level, slot)`` returns the tifffile page (or frame) or ``None``
    for a plane the file lacks (read as zeros).
    """

    info: SceneInfo
    dtype: np.dtype[Any]
    level_shapes: list[tuple[int, int]]
    locate: Callable[[int, int, int], tuple[int, int]]
    page: Callable[[int, int], Any]
    planes_per_slot: int = 1
    contiguous_offset: Callable[[int], int | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _rename_axes(axes: str, rename: Mapping[str, str]) -> str:
    out = []
    for a in axes:
        b = rename.get(a, a)
        out.append(b if b not in out and b not in axes.replace(a, "") else a)
    return "".join(out)


def series_plan(
    series: Any,
    *,
    index: int,
    name: str | None = None,
    rename: Mapping[str, str] | None = None,
) -> tuple[ScenePlan, dict[str, int]]:
    """A :class:`ScenePlan` for a tifffile series (ImageJ, STK, generic TIFF).

    The series' leading axes (those before the page's own Y, X, S) become T, C,
    Z where they are named so (``rename`` maps vendor letters, e.g. the generic
    page axis ``I`` to Z); other axes take index 0 and are returned as extra
    dimensions.
    """
    from zstack_analyzer.metadata import SceneInfo

    keyframe = series.keyframe
    page_axes = str(keyframe.axes)
    series_axes = str(series.axes)
    shape = tuple(int(s) for s in series.shape)
    if not series_axes.endswith(page_axes):
        msg = f"series axes {series_axes!r} do not end with the page axes {page_axes!r}"
        raise ValueError(msg)
    leading_axes = series_axes[: len(series_axes) - len(page_axes)]
    leading_shape = shape[: len(leading_axes)]
    names = _rename_axes(leading_axes, rename or {})
    sizes: dict[str, int] = {}
    extra: dict[str, int] = {}
    for letter, size in zip(names, leading_shape, strict=True):
        if letter in "TCZ":
            sizes[letter] = size
        elif size > 1:
            extra[letter] = size
    page_sizes = dict(zip(page_axes, keyframe.shape, strict=True))
    if set(page_axes) - set("YXS"):
        msg = f"pages with axes {page_axes!r} (volumetric tiles) are not supported"
        raise ValueError(msg)
    spp = int(page_sizes.get("S", 1))
    info = SceneInfo(
        index=index,
        name=name,
        size_t=sizes.get("T", 1),
        size_c=sizes.get("C", 1),
        size_z=sizes.get("Z", 1),
        size_y=int(page_sizes["Y"]),
        size_x=int(page_sizes["X"]),
        samples_per_pixel=spp,
        dtype=np.dtype(series.dtype).newbyteorder("=").name,
        extra_dims=extra,
    )
    n_planes = math.prod(leading_shape)
    n_pages = len(series.pages)
    planes_per_slot = 1 if n_pages >= n_planes else max(n_planes // max(n_pages, 1), 1)
    if n_pages < n_planes and n_pages != 1:
        planes_per_slot = n_planes  # all in slot 0, read contiguously

    def locate(t: int, c: int, z: int) -> tuple[int, int]:
        pos = {"T": t, "C": c, "Z": z}
        flat = 0
        for letter, size in zip(names, leading_shape, strict=True):
            flat = flat * size + pos.get(letter, 0)
        if planes_per_slot == 1:
            return flat, 0
        return flat // planes_per_slot, flat % planes_per_slot

    levels = list(series.levels)

    def page(level: int, slot: int) -> Any:
        pages = levels[level].pages
        return pages[slot] if slot < len(pages) else None

    def contiguous_offset(level: int) -> int | None:
        offset = levels[level].dataoffset
        return None if offset is None else int(offset)

    level_shapes = []
    for level in levels:
        level_sizes = dict(zip(level.keyframe.axes, level.keyframe.shape, strict=True))
        level_shapes.append((int(level_sizes["Y"]), int(level_sizes["X"])))
    plan = ScenePlan(
        info=info,
        dtype=np.dtype(info.dtype),
        level_shapes=level_shapes,
        locate=locate,
        page=page,
        planes_per_slot=planes_per_slot,
        contiguous_offset=contiguous_offset,
    )
    return plan, extra


def decode_workers() -> int:
    """Threads tifffile may use to decode the tiles of one page (its default on 2 cores is 1)."""
    return max(os.cpu_count() or 1, 1)


# --------------------------------------------------------------------------- reader base
class TiffFamilyReader(ImageReader):
    """Base of the tifffile-backed readers: open, plan, read planes, close.

    Subclasses implement :meth:`_build_plans` (called once, at open) and
    :meth:`_build_metadata` (called lazily per scene, then cached).
    """

    required_packages = ("tifffile", "imagecodecs")
    reads_remote = True
    reserves_decodes = True

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Whether the first IFD of ``path`` is this format's (see :meth:`claims`)."""
        peek = peek_tiff(head, path)
        return peek is not None and cls.claims(head, peek)

    @classmethod
    def sniff_remote(cls, head: bytes, source: RemoteObject) -> bool:
        """:meth:`sniff` for an object in a bucket (its first IFD read by ranged GETs)."""
        peek = peek_tiff(head, source)
        return peek is not None and cls.claims(head, peek)

    @classmethod
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """Whether a TIFF starting with ``head`` whose first IFD is ``peek`` is this format."""
        raise NotImplementedError

    def __init__(
        self, path: Path | str | RemoteObject, /, *, limits: ReadLimits | None = None
    ) -> None:
        super().__init__(path, limits=limits)
        self._io_lock = threading.RLock()
        self._workers = decode_workers()
        #: Where the last streamed reads of deflate strips stopped (see _strip_stream).
        self._strip_cursors = StripCursors()
        self._metadata_cache: dict[int, ImageMetadata] = {}
        #: The ranged file of a remote object (``None`` for a local file): told what to prefetch.
        self._ranged: RangedFile | None = None
        self.tif = self._open_tifffile(self.source)
        try:
            self._plans: list[ScenePlan] = self._build_plans()
            for plan in self._plans:
                self.check_shape(plan.info.shape, plan.dtype)
            # The first IFD is parsed already: a single image cut short fails at open.
            self._check_segments(self.tif.pages.first)
            self._check_plane_extents()
            with self._io_lock:
                overruns = first_ifd_overruns(self.tif.filehandle, int(self.tif.filehandle.size))
            if overruns:
                msg = (
                    f"{self.path.name}: the values of tags {overruns} of the first IFD lie past the "
                    f"end of the file; the file is truncated"
                )
                raise CorruptFileError(msg, path=self.path)
        except (ZstackError, RemoteReadError):
            self.close()
            raise
        except _BROKEN_FILE_ERRORS as exc:
            self.close()
            msg = f"{self.path.name}: invalid {self.format_name} structure: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ to implement
    def _build_plans(self) -> list[ScenePlan]:
        raise NotImplementedError

    def _build_metadata(self, scene: int) -> ImageMetadata:
        raise NotImplementedError

    # ------------------------------------------------------------ helpers
    def _open_tifffile(self, source: Path | RemoteObject) -> Any:
        """Open ``source`` with tifffile (first IFD only), errors wrapped, closed on release.

        A remote object is read through a :class:`RangedFile` (tifffile takes
        file objects): only the IFDs and segments read are fetched.
        """
        import tifffile

        name = source.path.name if isinstance(source, RemoteObject) else source.name
        ranged = source.open() if isinstance(source, RemoteObject) else None
        try:
            if ranged is not None:
                # A remote object has no folder: tifffile must not look for OME set
                # members beside it (it would look in the working directory).
                stream = cast("IO[bytes]", ranged)
                tif = tifffile.TiffFile(stream, name=name, _multifile=False)
            else:
                tif = tifffile.TiffFile(cast("Path", source))
        except (FileNotFoundError, RemoteReadError):
            if ranged is not None:
                ranged.close()
            raise
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
            if ranged is not None:
                ranged.close()
            msg = f"{name}: not a readable TIFF file: {exc}"
            raise CorruptFileError(msg, path=Path(name), detail=repr(exc)) from exc
        if ranged is not None:
            self.close_on_release(ranged.close)  # closers run last first: after tif.close
            if self._ranged is None:
                self._ranged = ranged
        self.close_on_release(tif.close)
        return tif

    def _prefetch(self, page: Any, indices: Sequence[int] | None = None) -> None:
        """Fetch the segments ``indices`` of ``page`` (all by default) at once, if remote.

        Why: tifffile and :meth:`read_region` read segments one at a time; from a
        bucket that is one GET per tile or strip. One call fetches them together
        (merged when close, concurrently otherwise). A no-op for local files.
        """
        ranged = self._ranged
        if ranged is None or page.parent is not self.tif:
            return
        offsets = page.dataoffsets
        counts = page.databytecounts
        chosen = range(len(offsets)) if indices is None else indices
        ranges = [
            (int(offsets[i]), int(offsets[i]) + int(counts[i]))
            for i in chosen
            if i < len(offsets) and int(counts[i]) > 0
        ]
        if len(ranges) > 1:
            with self._io_lock:
                ranged.prefetch(ranges)

    def _check_ifd_chain(self) -> None:
        """Refuse a file whose chain of IFDs leads past its end or to an IFD tifffile cannot read.

        A chain past the end is a truncated multi-page TIFF; an unreadable IFD a damaged one.

        Why: tifffile stops at the first bad IFD offset and logs it, which would
        silently turn a truncated 100-page stack into a valid 50-page one.
        """
        tif = self.tif
        position = tif.pages.next_page_offset
        if position is None:
            return
        size = int(tif.filehandle.size)
        width = int(tif.tiff.offsetsize)
        with self._io_lock:
            tif.filehandle.seek(position)
            raw = tif.filehandle.read(width)
        if len(raw) < width:
            offset = size
        else:
            offset = int.from_bytes(raw, "little" if tif.byteorder == "<" else "big")
        if offset >= size:
            msg = (
                f"{self.path.name}: the IFD after page {len(tif.pages) - 1} lies past the end of "
                f"the file ({size:,} bytes); the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)
        if offset:
            # tifffile also stops, and keeps the pages before it, at an IFD whose tag count
            # it cannot read or finds over 4096: the rest of the stack would be lost silently.
            count_size = int(tif.tiff.tagnosize)
            with self._io_lock:
                tif.filehandle.seek(offset)
                raw = tif.filehandle.read(count_size)
            count = int.from_bytes(raw, "little" if tif.byteorder == "<" else "big")
            if len(raw) < count_size or count > 4096:
                msg = (
                    f"{self.path.name}: the IFD after page {len(tif.pages) - 1} (at byte "
                    f"{offset:,}) is unreadable; the file is corrupt"
                )
                raise CorruptFileError(msg, path=self.path)

    def _check_plane_extents(self) -> None:
        """Refuse, at open, a file whose first or last plane of a scene lies past its end.

        Why only those: a truncated file loses its tail, and writers store a
        scene's planes in order, so the last plane is the one a cut reaches
        first (an IFD lost with it makes its page unreadable, also refused here).
        Checking every plane would parse every IFD, which made opening a
        256-page BigTIFF cost 15 times tifffile's own open. Every other plane is
        checked when it is read (:meth:`_check_segments` in :meth:`_decode_page`,
        :meth:`read_region` and the contiguous reads), so a plane past the end
        is always a :class:`CorruptFileError`, never zeros or a short read; see
        the README ("Truncated files").
        """
        for scene, plan in enumerate(self._plans):
            info = plan.info
            last = (info.size_t - 1, info.size_c - 1, info.size_z - 1)
            planes = [last] if plan.planes_per_slot > 1 else [(0, 0, 0), last]
            seen: set[int] = set()
            for t, c, z in planes:
                slot, sub = plan.locate(t, c, z)
                if slot in seen:
                    continue
                seen.add(slot)
                with self._io_lock:
                    page = plan.page(0, slot)
                if page is None:
                    continue
                if plan.planes_per_slot > 1:
                    offset = plan.contiguous_offset(0) if plan.contiguous_offset else None
                    self._check_contiguous(page, offset, sub, plan, scene)
                else:
                    self._check_segments(page)

    def _check_contiguous(
        self, page: Any, offset: int | None, sub: int, plan: ScenePlan, scene: int
    ) -> None:
        if offset is None:
            return
        info = plan.info
        nbytes = info.size_y * info.size_x * info.samples_per_pixel * plan.dtype.itemsize
        end = offset + (sub + 1) * nbytes
        size = int(page.parent.filehandle.size)
        if end > size:
            msg = (
                f"{self.path.name}: the planes of scene {scene} end at byte {end:,}, past the end "
                f"of the file ({size:,} bytes); the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)

    def _plan(self, scene: int) -> ScenePlan:
        self.scene_info(scene)
        return self._plans[scene]

    # ------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """Every scene in file order, each with its own canonical sizes."""
        return [plan.info for plan in self._plans]

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata of ``scene``; headers and XML only, never pixel data."""
        self.scene_info(scene)
        if scene not in self._metadata_cache:
            try:
                self._metadata_cache[scene] = self._build_metadata(scene)
            except ZstackError:
                raise
            except (*_BROKEN_FILE_ERRORS, AttributeError) as exc:
                msg = f"{self.path.name}: unreadable {self.format_name} metadata: {exc}"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        return self._metadata_cache[scene].model_copy(deep=True)

    def level_count(self, scene: int = 0) -> int:
        """Number of pyramid levels of ``scene`` (SubIFDs, SVS levels)."""
        return len(self._plan(scene).level_shapes)

    def level_shape(self, scene: int, level: int) -> tuple[int, ...]:
        """Canonical shape of ``scene`` at pyramid ``level``."""
        plan = self._plan(scene)
        if not 0 <= level < len(plan.level_shapes):
            msg = f"{self.path.name}: pyramid level {level} does not exist; scene {scene} has {len(plan.level_shapes)}"
            raise SceneNotFoundError(msg, path=self.path)
        ny, nx = plan.level_shapes[level]
        info = plan.info
        base = (info.size_t, info.size_c, info.size_z, ny, nx)
        return (*base, info.samples_per_pixel) if info.samples_per_pixel > 1 else base

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy canonical T,C,Z,Y,X(,S) array, one chunk per stored plane."""
        shape = self.level_shape(scene, level)
        plan = self._plan(scene)
        self.check_shape(shape, plan.dtype)
        read = functools.partial(self._read_level_plane, scene, level)
        return planes_to_dask(read, shape, plan.dtype, name=f"{type(self).__name__.lower()}")

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X(,S) plane, decoded directly from its page (no dask)."""
        self.check_plane_index(scene, t, c, z)
        return self._read_level_plane(scene, 0, t, c, z)

    # ------------------------------------------------------------ reading
    def read_plane_into(self, scene: int, t: int, c: int, z: int, out: np.ndarray) -> None:
        """Decode a one-page plane straight into ``out`` with one thread (the caller parallelises).

        Why: a full load decodes pages on all cores already, one page per
        thread; tifffile's per-page pool on top would oversubscribe the cores,
        and decoding into the final buffer saves a copy of the whole image.
        """
        self.check_plane_index(scene, t, c, z)
        plan = self._plans[scene]
        slot, _ = plan.locate(t, c, z)
        with self._io_lock:
            page = plan.page(0, slot) if plan.planes_per_slot == 1 else None
        if page is None or not (
            tuple(page.shape) == out.shape
            and np.dtype(page.dtype) == out.dtype
            and out.flags.c_contiguous
        ):
            out[...] = self.read_plane(scene, t, c, z)
            return
        self._decode_page(page, (t, c, z), out=out, maxworkers=1)

    def _read_level_plane(self, scene: int, level: int, t: int, c: int, z: int) -> np.ndarray:
        self.check_open()
        plan = self._plans[scene]
        ny, nx = plan.level_shapes[level]
        spp = plan.info.samples_per_pixel
        out_shape = (ny, nx, spp) if spp > 1 else (ny, nx)
        slot, sub = plan.locate(t, c, z)
        try:
            with self._io_lock:
                page = plan.page(level, slot)
        except ZstackError:
            raise
        except Exception as exc:
            msg = f"{self.path.name}: cannot read the IFD of plane t={t} c={c} z={z}: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        if page is None:
            return np.zeros(out_shape, dtype=plan.dtype)
        if plan.planes_per_slot > 1:
            offset = plan.contiguous_offset(level) if plan.contiguous_offset else None
            return self._read_contiguous(page, offset, sub, out_shape, plan.dtype)
        data = self._decode_page(page, (t, c, z), maxworkers=self._workers)
        return self._normalise(np.asarray(data), str(page.axes), out_shape, plan.dtype)

    def _decode_page(
        self,
        page: Any,
        tcz: tuple[int, int, int],
        *,
        maxworkers: int,
        out: np.ndarray | None = None,
    ) -> Any:
        """Bounds-check ``page`` and decode it (into ``out`` when given), errors wrapped.

        The whole page's decoded size is held from the decode budget while it decodes.
        """
        self._check_segments(page)
        self._prefetch(page)
        t, c, z = tcz
        try:
            with reserve(
                _page_nbytes(page),
                what=f"{self.path.name}: plane t={t} c={c} z={z}",
                path=self.path,
            ):
                return page.asarray(out=out, lock=self._io_lock, maxworkers=maxworkers)
        except (RemoteReadError, ZstackError):
            raise
        except Exception as exc:
            msg = f"{self.path.name}: cannot decode plane t={t} c={c} z={z}: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def _normalise(
        self, data: np.ndarray, axes: str, out_shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> np.ndarray:
        if "S" in axes and axes.index("S") != len(axes) - 1:
            data = np.moveaxis(data, axes.index("S"), -1)
        if data.shape != out_shape:
            data = data.reshape(out_shape) if data.size == math.prod(out_shape) else data
        if data.shape != out_shape:
            msg = f"{self.path.name}: a page holds {data.shape}, expected {out_shape}"
            raise CorruptFileError(msg, path=self.path)
        if data.dtype != dtype:
            data = data.astype(dtype)
        return np.ascontiguousarray(data)

    def _check_segments(self, page: Any) -> None:
        """Refuse a page whose strips or tiles lie past the end of its file."""
        size = int(page.parent.filehandle.size)
        offsets = np.asarray(page.dataoffsets, dtype=np.uint64)
        counts = np.asarray(page.databytecounts, dtype=np.uint64)
        if offsets.size and int((offsets + counts).max()) > size:
            msg = (
                f"{self.path.name}: image data of IFD {page.index} ends past the end of the "
                f"file ({size:,} bytes); the file is truncated or corrupt"
            )
            raise CorruptFileError(msg, path=self.path)
        keyframe = page.keyframe  # a TiffFrame keeps its image structure on its keyframe
        if int(keyframe.compression) == 1 and offsets.size:
            needed = (
                keyframe.imagelength
                * keyframe.imagewidth
                * keyframe.imagedepth
                * keyframe.samplesperpixel
                * keyframe.bitspersample
                // 8
            )
            if int(counts.sum()) < needed:
                msg = f"{self.path.name}: IFD {page.index} holds fewer bytes than its image needs"
                raise CorruptFileError(msg, path=self.path)

    def _read_contiguous(
        self,
        page: Any,
        offset: int | None,
        sub: int,
        out_shape: tuple[int, ...],
        dtype: np.dtype[Any],
        *,
        rows: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Plane ``sub`` of a page holding several planes back to back (STK, big ImageJ).

        With ``rows`` only those rows are read (chunky samples only).
        """
        if offset is None or int(page.keyframe.compression) != 1:
            msg = f"{self.path.name}: several planes in one compressed IFD are not supported"
            raise CorruptFileError(msg, path=self.path)
        fh = page.parent.filehandle
        stored = np.dtype(dtype).newbyteorder(page.parent.byteorder)
        nbytes = math.prod(out_shape) * stored.itemsize
        start = offset + sub * nbytes
        if start + nbytes > int(fh.size):
            msg = (
                f"{self.path.name}: plane {sub} of IFD {page.index} ends past the end of the "
                f"file ({int(fh.size):,} bytes); the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)
        planar = "S" in str(page.axes) and str(page.axes).index("S") == 0
        what = f"{self.path.name}: plane {sub} of IFD {page.index}"
        if rows is not None and not planar:
            row_bytes = nbytes // out_shape[0]
            with reserve(2 * (rows[1] - rows[0]) * row_bytes, what=what, path=self.path):
                with self._io_lock:
                    fh.seek(start + rows[0] * row_bytes)
                    raw = fh.read((rows[1] - rows[0]) * row_bytes)
                band = np.frombuffer(raw, dtype=stored).reshape(rows[1] - rows[0], *out_shape[1:])
                return np.ascontiguousarray(band.astype(dtype))
        with reserve(nbytes, what=what, path=self.path), self._io_lock:
            fh.seek(start)
            raw = fh.read(nbytes)
        data = np.frombuffer(raw, dtype=stored)
        if planar and len(out_shape) == 3:
            data = data.reshape(out_shape[2], out_shape[0], out_shape[1])
            data = np.moveaxis(data, 0, -1)
        data = data.reshape(out_shape)
        if rows is not None:  # planar samples: the rows of each sample are apart
            data = data[rows[0] : rows[1]]
        return np.ascontiguousarray(data.astype(dtype))

    # ------------------------------------------------------------ regions
    def _region_page(self, scene: int, level: int, t: int, c: int, z: int) -> tuple[Any, int]:
        plan = self._plan(scene)
        if not 0 <= level < len(plan.level_shapes):
            msg = f"{self.path.name}: pyramid level {level} does not exist; scene {scene} has {len(plan.level_shapes)}"
            raise SceneNotFoundError(msg, path=self.path)
        slot, sub = plan.locate(t, c, z)
        try:
            with self._io_lock:
                page = plan.page(level, slot)
        except ZstackError:
            raise
        except Exception as exc:
            msg = f"{self.path.name}: cannot read the IFD of plane t={t} c={c} z={z}: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        return page, sub

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """The page's tile (rows, columns), or (rows per strip, width); ``None`` when not segmented.

        Several planes in one page (STK, big ImageJ) are uncompressed and
        addressed by byte offset, so any row is a block there.
        """
        plan = self._plan(scene)
        ny, nx = self.level_shape(scene, level)[3:5]
        page, _ = self._region_page(scene, level, 0, 0, 0)
        if page is None:
            return None
        if plan.planes_per_slot > 1:
            planar = "S" in str(page.axes) and str(page.axes).index("S") == 0
            return None if planar else (1, nx)
        key = page.keyframe
        if int(key.imagedepth) != 1:
            return None
        if _raw_offset(page) is not None:
            return (1, nx)
        if key.is_tiled:
            if int(key.tiledepth) != 1:
                return None
            return (min(int(key.tilelength), ny), min(int(key.tilewidth), nx))
        rows = int(key.rowsperstrip) or ny
        if streamable(key):  # rows are read a few MiB at a time, whatever the strip size
            row_bytes = nx * max(1, int(key.samplesperpixel)) * plan.dtype.itemsize
            rows = min(rows, max(1, STREAM_STEP // max(1, row_bytes)))
        return (min(rows, ny), nx)

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
        """Decode only the strips or tiles that ``rows`` x ``cols`` of one plane touch.

        Why: a 30720 x 30720 zlib page is 900 MiB decoded from 1 MB on disk; a
        render reads it a band at a time and keeps only the reduced result.
        """
        self.check_open()
        self.check_plane_index(scene, t, c, z)
        plan = self._plan(scene)
        ny, nx = self.level_shape(scene, level)[3:5]
        y0, y1 = max(0, rows[0]), min(ny, rows[1])
        x0, x1 = max(0, cols[0]), min(nx, cols[1])
        spp = plan.info.samples_per_pixel
        tail = (spp,) if spp > 1 else ()
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0), *tail), dtype=plan.dtype)
        if out.size == 0:
            return out
        page, sub = self._region_page(scene, level, t, c, z)
        if page is None:
            return out
        if plan.planes_per_slot > 1:
            offset = plan.contiguous_offset(level) if plan.contiguous_offset else None
            band = self._read_contiguous(
                page, offset, sub, (ny, nx, *tail), plan.dtype, rows=(y0, y1)
            )
            out[...] = band[:, x0:x1]
            return out
        self._check_segments(page)
        raw = _raw_offset(page)
        if raw is not None:  # uncompressed, in order: read the rows by offset, decode nothing
            band = self._read_contiguous(page, raw, 0, (ny, nx, *tail), plan.dtype, rows=(y0, y1))
            out[...] = band[:, x0:x1]
            return out
        key = page.keyframe
        if streamable(key):
            self._stream_region(page, (y0, y1), (x0, x1), out, plan.dtype)
            return out
        offsets = page.dataoffsets
        counts = page.databytecounts
        separate = spp > 1 and int(key.planarconfig) == 2
        planes = spp if separate else 1
        if key.is_tiled:
            th, tw = int(key.tilelength), int(key.tilewidth)
        else:
            th, tw = int(key.rowsperstrip) or ny, nx
        across = -(-nx // tw)
        down = -(-ny // th)
        wanted = [
            (s * down + ty) * across + tx
            for s in range(planes)
            for ty in range(y0 // th, (y1 - 1) // th + 1)
            for tx in range(x0 // tw, (x1 - 1) // tw + 1)
        ]
        if wanted and max(wanted) >= len(offsets):
            msg = f"{self.path.name}: IFD {page.index} lists {len(offsets)} segments, fewer than its size needs"
            raise CorruptFileError(msg, path=self.path)
        fh = page.parent.filehandle
        decode = key.decode
        segment_bytes = th * tw * (1 if separate else max(1, spp)) * plan.dtype.itemsize
        what = f"{self.path.name}: a {th:,} x {tw:,} segment of plane t={t} c={c} z={z}"
        check_block(segment_bytes, what=what, path=self.path)  # before anything is read
        charge(max(0, segment_bytes * len(wanted) - out.nbytes), what=what, path=self.path)
        self._prefetch(page, wanted)

        def one(index: int) -> None:
            with self._io_lock:
                fh.seek(int(offsets[index]))
                data = fh.read(int(counts[index]))
            try:
                segment, position, shape = decode(data or None, index, jpegtables=key.jpegtables)
            except Exception as exc:
                msg = f"{self.path.name}: cannot decode segment {index} of plane t={t} c={c} z={z}: {exc}"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
            if segment is None:
                return
            s_index, _, sy, sx, _ = (int(v) for v in position)
            block = np.asarray(segment)[0]  # length, width, samples
            top, left = max(y0, sy), max(x0, sx)
            bottom = min(y1, sy + int(shape[1]), sy + block.shape[0])
            right = min(x1, sx + int(shape[2]), sx + block.shape[1])
            if bottom <= top or right <= left:
                return
            piece = block[top - sy : bottom - sy, left - sx : right - sx]
            target = out[top - y0 : bottom - y0, left - x0 : right - x0]
            if separate:
                target[..., s_index] = piece[..., 0]
            elif tail:
                target[...] = piece
            else:
                target[...] = piece[..., 0]

        workers = min(self._workers, len(wanted))
        if workers > 1:
            # The budget is held here, in the caller's thread (its decode scope), for the
            # segments decoding at once; each batch waits for room like any decode.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="zstack-tile") as pool:
                for first in range(0, len(wanted), workers):
                    batch = wanted[first : first + workers]
                    nbytes = segment_bytes * len(batch)
                    with reserve(nbytes, block=segment_bytes, what=what, path=self.path):
                        for _ in pool.map(one, batch):
                            pass
        else:
            for index in wanted:
                with reserve(segment_bytes, what=what, path=self.path):
                    one(index)
        return out

    def _stream_region(
        self,
        page: Any,
        rows: tuple[int, int],
        cols: tuple[int, int],
        out: np.ndarray,
        dtype: np.dtype[Any],
    ) -> None:
        """Rows ``rows``, columns ``cols`` of a deflate strip page, inflated as a stream.

        Why not tifffile's strip decode: it inflates a whole strip at once, and
        one strip may be hundreds of MiB (see :mod:`._strip_stream`).
        """
        key = page.keyframe
        th = int(key.rowsperstrip) or int(key.imagelength)
        if (int(key.imagelength) - 1) // th >= len(page.dataoffsets):
            msg = f"{self.path.name}: IFD {page.index} lists {len(page.dataoffsets)} strips, fewer than its size needs"
            raise CorruptFileError(msg, path=self.path)
        for strip in range(rows[0] // th, (rows[1] - 1) // th + 1):
            top = strip * th
            self._strip_cursors.read_rows(
                page=page,
                strip=strip,
                strip_top=top,
                rows=(max(rows[0], top), min(rows[1], top + th)),
                cols=cols,
                out=out,
                out_top=rows[0],
                dtype=dtype,
                io_lock=self._io_lock,
                path=self.path,
            )

    def raw_metadata(self) -> Mapping[str, Any]:
        """Every tag of the first IFD plus the format's own metadata blocks."""
        first = self.tif.pages.first
        return {
            "tags": {tag.name: tag.value for tag in first.tags.values()},
            "byteorder": self.tif.byteorder,
            "is_bigtiff": bool(self.tif.is_bigtiff),
        }


def _page_nbytes(page: Any) -> int:
    """Decoded size of a page (its keyframe holds the structure of a TiffFrame)."""
    key = page.keyframe
    return int(math.prod(int(s) for s in key.shaped)) * int(np.dtype(key.dtype).itemsize)


def _raw_offset(page: Any) -> int | None:
    """Offset of an uncompressed, chunky, untiled page whose strips lie back to back, else None.

    Why: such a page can be read row by row at known offsets, so even one
    900 MiB strip is rendered a band at a time.
    """
    key = page.keyframe
    if key.is_tiled or int(key.compression) != 1 or int(key.fillorder) != 1:
        return None
    if int(key.samplesperpixel) > 1 and int(key.planarconfig) != 1:
        return None
    if int(key.bitspersample) not in (8, 16, 32, 64):
        return None
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    if offsets.size == 0 or not np.array_equal(offsets[1:], offsets[:-1] + counts[:-1]):
        return None
    return int(offsets[0])


def resolution_um(page: Any) -> tuple[float | None, float | None, str | None]:
    """Pixel size (x, y) in µm from the TIFF resolution tags, and a warning when refused.

    Per DESIGN 4: no unit, a resolution of 0 or of 1 pixel per unit, or an inch
    resolution of 72/96 dpi (a screen default) is no calibration.
    """
    tags = page.tags
    xr, yr, ru = (tags.get(k) for k in ("XResolution", "YResolution", "ResolutionUnit"))
    if xr is None:
        return None, None, None
    unit = int(ru.value) if ru is not None else 2
    factor = {2: 25400.0, 3: 10000.0}.get(unit)

    def one(tag: Any) -> float | None:
        if tag is None:
            return None
        num, den = (float(v) for v in tag.value)
        if num <= 0 or den <= 0 or num == den or factor is None:
            return None
        if unit == 2 and round(num / den) in (72, 96):
            return None
        return den / num * factor

    x_um, y_um = one(xr), one(yr if yr is not None else xr)
    if x_um is None:
        num, den = xr.value
        return (
            None,
            None,
            (f"TIFF resolution {num}/{den} (unit {unit}) is not a calibration: pixel size unknown"),
        )
    return x_um, y_um, None
