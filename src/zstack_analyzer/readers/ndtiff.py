"""Micro-Manager 2 NDTiff datasets: ``*_NDTiffStack*.tif`` files and their ``NDTiff.index``.

Why its own reader: an NDTiff dataset (Micro-Manager 2's acquisition engine,
pycro-manager) is a folder of TIFF stacks whose planes are located by one
binary ``NDTiff.index`` beside them, not by the TIFFs' IFD chains: per image,
its axes as JSON (``{"time": 0, "channel": "DAPI", "z": -3, "position": 1}``),
the file holding it, the offset of its uncompressed pixels, width, height,
pixel type and the offset of its JSON metadata (the layout tifffile's
``read_ndtiff_index`` reads). Opened from any of its TIFFs, the dataset is
one image: ``position`` values are scenes, ``time``/``channel``/``z`` the axes
(ordered by value; channel names in the order they first appear), other axes
(tiles ``row``/``column``...) are read at their first value.

Each stack file starts with NDTiff's header at byte 8: 483729, the major
version (2 or 3), for v3 the minor version, 2355492 and the summary length,
then the summary JSON. Pixels are uncompressed, so a plane or a region is a
read at a known offset; every entry's extent is checked against its file's
size at open, and file names in the index may not leave the folder.
"""

from __future__ import annotations

import functools
import json
import struct
import threading
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import (
    CorruptFileError,
    LimitExceededError,
    SceneNotFoundError,
    UnsupportedFormatError,
    ZstackError,
)
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._base import ImageReader, planes_to_dask
from zstack_analyzer.readers._tiff_common import vendor_safe
from zstack_analyzer.readers.micromanager import (
    _argb,
    _list,
    _number,
    _positive,
    _start_time,
)

if TYPE_CHECKING:
    import io
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import dask.array as da

    from zstack_analyzer.filesets import FileSet
    from zstack_analyzer.limits import ReadLimits

__all__ = ["NdTiffReader"]

NDTIFF_MAGIC = 483729
SUMMARY_HEADER = 2355492
INDEX_NAME = "NDTiff.index"
#: NDTiff pixel types read here (8-bit RGB, type 2, is not).
_PIXEL_TYPES = {
    0: ("uint8", 8),
    1: ("uint16", 16),
    3: ("uint16", 10),
    4: ("uint16", 12),
    5: ("uint16", 14),
    6: ("uint16", 11),
}
_AXES = {"time": "T", "channel": "C", "z": "Z", "position": "P"}
#: Largest per-image JSON metadata block read.
MAX_PLANE_METADATA = 1 << 20


def _is_ndtiff_head(head: bytes) -> bool:
    if head[:4] != b"II*\x00" or len(head) < 16:
        return False
    (magic,) = struct.unpack_from("<I", head, 8)
    return bool(magic == NDTIFF_MAGIC)


def _read_summary(path: Path, max_bytes: int) -> tuple[dict[str, Any], int]:
    """The summary JSON and major version from an NDTiff stack's header (v2 and v3)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(28)
        if len(head) < 24 or not _is_ndtiff_head(head):
            msg = f"{path.name}: not an NDTiff stack (no NDTiff header at byte 8)"
            raise CorruptFileError(msg, path=path)
        major, word, third = struct.unpack_from("<3I", head, 12)
        if word == SUMMARY_HEADER:  # v2: summary header, its length, the summary at 24
            length, start = third, 24
        elif third == SUMMARY_HEADER and len(head) >= 28:  # v3: minor version first
            (length,) = struct.unpack_from("<I", head, 24)
            start = 28
        else:
            msg = f"{path.name}: the NDTiff header has no summary block"
            raise CorruptFileError(msg, path=path)
        if length > min(max_bytes, size - start):
            msg = f"{path.name}: the NDTiff summary claims {length:,} bytes, more than the file or the metadata limit allows"
            raise CorruptFileError(msg, path=path)
        fh.seek(start)
        raw = fh.read(length)
    try:
        summary = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        msg = f"{path.name}: the NDTiff summary is not valid JSON: {exc}"
        raise CorruptFileError(msg, path=path) from exc
    if not isinstance(summary, dict):
        msg = f"{path.name}: the NDTiff summary is not a JSON object"
        raise CorruptFileError(msg, path=path)
    return summary, int(major)


def parse_index(
    data: bytes, *, where: Path, max_entries: int
) -> list[tuple[dict[str, Any], str, tuple[int, ...]]]:
    """Every entry of an NDTiff.index: (axes, file name, the eight int fields), each length checked."""
    entries: list[tuple[dict[str, Any], str, tuple[int, ...]]] = []
    at, end = 0, len(data)
    while at < end:
        if len(entries) >= max_entries:
            msg = f"{where.name}: NDTiff.index lists over {max_entries:,} images"
            raise LimitExceededError(msg, path=where)
        try:
            (k,) = struct.unpack_from("<I", data, at)
            if at + 4 + k > end:
                msg_0 = "axes record past the end"
                raise ValueError(msg_0)
            axes = json.loads(data[at + 4 : at + 4 + k].decode("utf-8"))
            at += 4 + k
            (n,) = struct.unpack_from("<I", data, at)
            if at + 4 + n + 32 > end:
                msg_0 = "file name or fields past the end"
                raise ValueError(msg_0)
            name = data[at + 4 : at + 4 + n].decode("utf-8")
            at += 4 + n
            fields = struct.unpack_from("<IiiiiIii", data, at)
            at += 32
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            msg = f"{where.name}: NDTiff.index entry {len(entries)} is cut short or unreadable ({exc}); the index is truncated or corrupt"
            raise CorruptFileError(msg, path=where) from exc
        if not isinstance(axes, dict):
            msg = f"{where.name}: NDTiff.index entry {len(entries)} has no axes object"
            raise CorruptFileError(msg, path=where)
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            msg = (
                f"{where.name}: NDTiff.index names the file {name!r}, which is not a file beside it"
            )
            raise CorruptFileError(msg, path=where)
        entries.append((axes, name, tuple(int(v) for v in fields)))
    if not entries:
        msg = f"{where.name}: NDTiff.index lists no images"
        raise CorruptFileError(msg, path=where)
    return entries


def _value_order(values: list[Any]) -> dict[Any, int]:
    """Axis values to indices: numbers by value, names in the order they first appear."""
    unique = list(dict.fromkeys(values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in unique):
        unique = sorted(unique)
    return {v: i for i, v in enumerate(unique)}


class NdTiffReader(ImageReader):
    """NDTiff datasets opened whole from any stack file; positions are scenes.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("acq_NDTiffStack.tif") as image:  # doctest: +SKIP
    ...     image.metadata().size_c
    """

    format_name: ClassVar[str] = "NDTiff"
    suffixes: ClassVar[tuple[str, ...]] = (".tif",)
    required_packages: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """A little-endian TIFF with NDTiff's header (483729) at byte 8."""
        return _is_ndtiff_head(head)

    @classmethod
    def file_set(cls, path: Path, limits: ReadLimits) -> FileSet | None:
        """``NDTiff.index`` and every ``*_NDTiffStack*.tif`` beside it; main: the first by name."""
        return _ndtiff_set(path.parent, path)

    @classmethod
    def main_for_member(cls, path: Path) -> Path | None:
        """``NDTiff.index`` (which no reader claims) belongs to the stacks beside it."""
        if path.name != INDEX_NAME:
            return None
        found = _ndtiff_set(path.parent, None)
        return found.main if found is not None else None

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        self._io_lock = threading.RLock()
        self._handles: dict[int, io.BufferedReader] = {}
        self._metadata_cache: dict[int, ImageMetadata] = {}
        try:
            self._open()
        except ZstackError:
            self.close()
            raise
        except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            self.close()
            msg = f"{self.path.name}: invalid NDTiff dataset: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def _open(self) -> None:
        folder = self.path.parent
        self._summary, self._major = _read_summary(self.path, self.limits.max_metadata_bytes)
        index_path = folder / INDEX_NAME
        if not index_path.is_file():
            msg = f"{self.path.name}: {INDEX_NAME} is not beside it; an NDTiff dataset is read through its index"
            raise CorruptFileError(msg, path=self.path)
        if index_path.stat().st_size > self.limits.max_metadata_bytes:
            msg = f"{self.path.name}: {INDEX_NAME} is over the metadata limit"
            raise LimitExceededError(msg, path=self.path)
        entries = parse_index(
            index_path.read_bytes(), where=index_path, max_entries=self.limits.max_planes
        )
        first = entries[0][2]
        width, height, pixel_type, compression = first[1], first[2], first[3], first[4]
        if pixel_type == 2:
            msg = f"{self.path.name}: NDTiff 8-bit RGB images are not supported"
            raise UnsupportedFormatError(msg, path=self.path)
        if pixel_type not in _PIXEL_TYPES:
            msg = f"{self.path.name}: NDTiff pixel type {pixel_type} is unknown"
            raise CorruptFileError(msg, path=self.path)
        for _, name, fields in entries:
            if fields[1:5] != (width, height, pixel_type, compression):
                msg = f"{self.path.name}: images of {name} differ in size or pixel type from the first; not one image"
                raise CorruptFileError(msg, path=self.path)
        if compression != 0:
            msg = f"{self.path.name}: NDTiff compression {compression} is not supported"
            raise UnsupportedFormatError(msg, path=self.path)
        dtype = np.dtype(_PIXEL_TYPES[pixel_type][0])
        self._bits = _PIXEL_TYPES[pixel_type][1]
        names = list(dict.fromkeys(name for _, name, _ in entries))
        self._files = [folder / name for name in names]
        file_of = {name: i for i, name in enumerate(names)}
        axis_values: dict[str, list[Any]] = {}
        for axes, _, _ in entries:
            for key, value in axes.items():
                axis_values.setdefault(str(key), []).append(value)
        orders = {key: _value_order(values) for key, values in axis_values.items()}
        extra = {
            _AXES.get(k, k): len(v) for k, v in orders.items() if k not in _AXES and len(v) > 1
        }
        self._orders = orders
        sizes = {letter: len(orders.get(key, {0: 0})) for key, letter in _AXES.items()}
        size_p = sizes["P"]
        info0 = SceneInfo(
            index=0,
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=height,
            size_x=width,
            dtype=dtype.name,
            extra_dims=extra,
        )
        self.check_shape((size_p * info0.size_t, info0.size_c, info0.size_z, height, width), dtype)
        if min(width, height) <= 0:
            msg = f"{self.path.name}: NDTiff.index declares {width} x {height} pixels"
            raise CorruptFileError(msg, path=self.path)
        plane_bytes = width * height * dtype.itemsize
        table = np.full((size_p, info0.size_t, info0.size_c, info0.size_z), -1, dtype=np.int64)
        offsets = np.empty(len(entries), dtype=np.int64)
        files = np.empty(len(entries), dtype=np.int64)
        self._meta = np.empty((len(entries), 2), dtype=np.int64)
        ignored = 0
        for i, (axes, name, fields) in enumerate(entries):
            if any(k not in _AXES and orders[k][v] != 0 for k, v in axes.items()):
                ignored += 1
                continue  # beyond T C Z and position: the first value only
            p, t, c, z = (
                orders[key][axes[key]] if key in axes else 0
                for key in ("position", "time", "channel", "z")
            )
            table[p, t, c, z] = i
            offsets[i], files[i] = fields[0], file_of[name]
            self._meta[i] = (fields[5], fields[6])
        sizes_on_disk = [p.stat().st_size if p.is_file() else -1 for p in self._files]
        used = table[table >= 0]
        ends = offsets[used] + plane_bytes
        limits = np.asarray(sizes_on_disk, dtype=np.int64)[files[used]]
        if used.size and bool((ends > limits).any()):
            bad = int(used[np.argmax(ends > limits)])
            msg = (
                f"{self.path.name}: image {bad} of {INDEX_NAME} lies past the end of "
                f"{self._files[int(files[bad])].name} (or the file is missing); the dataset is truncated"
            )
            raise CorruptFileError(msg, path=self.path)
        self._table, self._offsets, self._file_index = table, offsets, files
        self._dtype, self._plane_bytes = dtype, plane_bytes
        labels = _list(self._summary.get("StagePositions"))
        self._infos = [
            info0.model_copy(
                update={
                    "index": p,
                    "name": str(labels[p].get("Label"))
                    if p < len(labels) and isinstance(labels[p], dict) and labels[p].get("Label")
                    else None,
                }
            )
            for p in range(size_p)
        ]
        self._warnings: list[str] = []
        absent = int((table < 0).sum())
        if absent:
            self._warnings.append(
                f"{absent} of {table.size} planes are not in {INDEX_NAME}: they read as zeros"
            )
        if extra:
            self._warnings.append(
                f"axes {extra} beyond TCZ and position are read at their first value"
            )
        del ignored

    # ------------------------------------------------------------------ reading
    def _handle(self, member: int) -> io.BufferedReader:
        handle = self._handles.get(member)
        if handle is None:
            handle = self._files[member].open("rb")
            self._handles[member] = handle
            self.close_on_release(handle.close)
        return handle

    def _read(
        self, scene: int, window: tuple[int, int, int, int] | None, t: int, c: int, z: int
    ) -> np.ndarray:
        self.check_open()
        info = self._infos[scene]
        y0, y1, x0, x1 = window if window is not None else (0, info.size_y, 0, info.size_x)
        rows = max(0, y1 - y0)
        entry = int(self._table[scene, t, c, z])
        if entry < 0 or rows == 0:
            return np.zeros((rows, max(0, x1 - x0)), dtype=self._dtype)
        row_bytes = info.size_x * self._dtype.itemsize
        start = int(self._offsets[entry]) + y0 * row_bytes
        # Read into a bytearray, not bytes: the plane is then the caller's to change
        # (`plane -= background`) without a copy, as from every other reader.
        raw = bytearray(rows * row_bytes)
        with self._io_lock:
            handle = self._handle(int(self._file_index[entry]))
            handle.seek(start)
            got = handle.readinto(raw)
        if got != rows * row_bytes:
            msg = f"{self.path.name}: plane t={t} c={c} z={z} is cut short in {self._files[int(self._file_index[entry])].name}"
            raise CorruptFileError(msg, path=self.path)
        band = np.frombuffer(raw, dtype=self._dtype.newbyteorder("<")).reshape(rows, info.size_x)
        return np.ascontiguousarray(band[:, x0:x1], dtype=self._dtype)

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene per stage position."""
        return list(self._infos)

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X array; one chunk per image."""
        info = self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: pyramid level {level} does not exist; it has 1"
            raise SceneNotFoundError(msg, path=self.path)
        read = functools.partial(self._read, scene, None)
        return planes_to_dask(read, info.shape, info.dtype, name="ndtiffreader")

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X plane, read at its offset."""
        self.check_plane_index(scene, t, c, z)
        return self._read(scene, None, t, c, z)

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """Any row: the pixels are uncompressed at a known offset."""
        info = self.scene_info(scene)
        return (1, info.size_x) if level == 0 else None

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
        """Only the rows asked for are read; columns are cut from them."""
        self.check_plane_index(scene, t, c, z)
        if level != 0:
            msg = f"{self.path.name}: pyramid level {level} does not exist; it has 1"
            raise SceneNotFoundError(msg, path=self.path)
        info = self._infos[scene]
        window = (
            max(0, rows[0]),
            min(info.size_y, rows[1]),
            max(0, cols[0]),
            min(info.size_x, cols[1]),
        )
        return self._read(scene, window, t, c, z)

    # ------------------------------------------------------------------ metadata
    def _plane_json(self, scene: int, t: int, c: int, z: int) -> dict[str, Any]:
        entry = int(self._table[scene, t, c, z])
        if entry < 0:
            return {}
        offset, length = (int(v) for v in self._meta[entry])
        if not 0 < length <= MAX_PLANE_METADATA:
            return {}
        with self._io_lock:
            handle = self._handle(int(self._file_index[entry]))
            handle.seek(offset)
            raw = handle.read(length)
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata from the summary and the first images' JSON."""
        self.scene_info(scene)
        if scene not in self._metadata_cache:
            self._metadata_cache[scene] = self._build_metadata(scene)
        return self._metadata_cache[scene].model_copy(deep=True)

    def _build_metadata(self, scene: int) -> ImageMetadata:
        info = self._infos[scene]
        summary = self._summary
        provenance = {"sizes": f"{INDEX_NAME} axes (time, channel, z, position)"}
        warnings = list(self._warnings)
        first = self._plane_json(scene, 0, 0, 0)
        xy = _positive(summary.get("PixelSize_um")) or _positive(first.get("PixelSizeUm"))
        if xy is not None:
            provenance["physical_size.x_um"] = provenance["physical_size.y_um"] = (
                "NDTiff summary PixelSize_um (or image PixelSizeUm)"
            )
        z_values = sorted(self._orders.get("z", {}))
        z_um = None
        if info.size_z > 1:
            z_um = _positive(summary.get("z-step_um"))
            if z_um is not None:
                provenance["physical_size.z_um"] = "NDTiff summary z-step_um"
        channel_names = list(self._orders.get("channel", {}))
        stated = _list(summary.get("ChNames"))
        colours = _list(summary.get("ChColors"))
        channels = []
        for c in range(info.size_c):
            name = (
                channel_names[c]
                if c < len(channel_names) and isinstance(channel_names[c], str)
                else None
            )
            if name is None and c < len(stated) and isinstance(stated[c], str):
                name = stated[c]
            plane = self._plane_json(scene, 0, c, 0) if c else first
            channels.append(
                ChannelInfo(
                    index=c,
                    name=name or None,
                    color=_argb(colours[c]) if c < len(colours) else None,
                    exposure_ms=_positive(plane.get("Exposure-ms")),
                )
            )
        if any(ch.name for ch in channels):
            provenance["channels[].name"] = (
                f"{INDEX_NAME} channel axis values (else summary ChNames)"
            )
        if any(ch.exposure_ms for ch in channels):
            provenance["channels[].exposure_ms"] = "NDTiff image metadata Exposure-ms"
        interval = None
        if info.size_t > 1:
            last = self._plane_json(scene, info.size_t - 1, 0, 0)
            start, end = _number(first.get("ElapsedTime-ms")), _number(last.get("ElapsedTime-ms"))
            if start is not None and end is not None and end > start:
                interval = (end - start) / (info.size_t - 1) / 1000.0
                provenance["time_interval_s"] = (
                    "NDTiff image metadata ElapsedTime-ms (first to last frame)"
                )
        acquired, acquired_local = _start_time(
            summary.get("StartTime"), "NDTiff summary StartTime", provenance, warnings
        )
        version = summary.get("MicroManagerVersion")
        vendor = {
            "summary": summary,
            "ndtiff_major_version": self._major,
            "files": [p.name for p in self._files],
            "z_values": z_values[:256],
            "first_image": first,
        }
        return self.scene_metadata(
            info,
            significant_bits=self._bits if self._bits < self._dtype.itemsize * 8 else None,
            physical_size=PhysicalSize(x_um=xy, y_um=xy, z_um=z_um),
            time_interval_s=interval,
            channels=channels,
            microscope=MicroscopeInfo(
                software="Micro-Manager", software_version=str(version) if version else None
            ),
            acquired_at=acquired,
            acquired_at_local=acquired_local,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor_safe(vendor),
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The summary, the files and the axis values of the index."""
        return {
            "summary": dict(self._summary),
            "files": [str(p) for p in self._files],
            "axes": {k: list(v) for k, v in self._orders.items()},
        }


def _ndtiff_set(folder: Path, opened: Path | None) -> FileSet | None:
    """The NDTiff dataset in ``folder`` (names only), or ``None`` when it holds no stack file."""
    from zstack_analyzer.filesets import MAX_SET_FILES, FileSet

    stacks = []
    for p in folder.glob("*_NDTiffStack*.tif"):
        if p.is_file():
            stacks.append(p)
            if len(stacks) > MAX_SET_FILES:
                msg = f"{folder.name}: over {MAX_SET_FILES:,} NDTiff stack files"
                raise LimitExceededError(msg, path=folder)
    if opened is not None and opened not in stacks:
        stacks.append(opened)
    if not stacks:
        return None
    stacks.sort(key=lambda p: p.name)
    index = folder / INDEX_NAME
    members = [*stacks, index] if index.is_file() else stacks
    return FileSet.of(stacks[0], members)
