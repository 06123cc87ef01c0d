"""Micro-Manager multipage TIFF datasets (``*_MMStack*.ome.tif``): several files, one image.

Why its own reader: Micro-Manager writes an acquisition as one or more TIFFs
(a file per stage position, and continuation files ``_1``, ``_2``... past 4 GB),
each starting with Micro-Manager's own header (``MicroManagerVersion`` in a
JSON summary at byte 40) and ending with an *index map*: one
``(channel, slice, frame, position, IFD offset)`` row per plane of that file.
The OME-XML of the first file is often stale (an acquisition stopped early
keeps the planned sizes), so the index maps decide where every plane is, and
the dataset opens whole from any of its files: positions become scenes.

Format (micro-manager.org "Micro-Manager File Formats", as tifffile and
Bio-Formats' MicromanagerReader read it), little- or big-endian:

- bytes 8-40: index map header 54773648 and offset, display settings header
  483765892 and offset, comments header 99384722 and offset, summary header
  2355492 and length; the summary JSON follows at byte 40;
- the index map: header 3453623, a count, then count rows of five uint32;
- each page's tag 51123 (MicroManagerMetadata) is that plane's JSON
  (exposure, elapsed time, pixel size...).

Sizes are the extent of the index maps (an aborted acquisition has fewer
frames than its summary planned: the record says so); planes the maps lack
read as zeros. Calibration from the summary's ``PixelSize_um`` and ``z-step_um``
(else the first plane's ``PixelSizeUm``); channel names and colours from
``ChNames``/``ChColors``; exposure from each channel's first plane.
NDTiff datasets (Micro-Manager 2's other format) are not read here.
"""

from __future__ import annotations

import json
import re
import struct
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, LimitExceededError, MetadataError
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._tiff_common import ScenePlan, TiffFamilyReader, TiffPeek, vendor_safe

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from zstack_analyzer.filesets import FileSet
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = ["MicroManagerReader", "read_mm_header"]

INDEX_MAP_HEADER = 54773648
INDEX_MAP_BLOCK = 3453623
SUMMARY_HEADER = 2355492
MM_METADATA_TAG = 51123
#: Most member files of one dataset looked at (positions x continuation files).
MAX_MEMBERS = 4096
#: Parsed IFDs kept per reader (one per plane read recently).
PAGE_CACHE = 1024
_MEMBER = re.compile(r"_MMStack(?:_[^.]*)?\.(?:ome\.)?tiff?$", re.IGNORECASE)


def _byteorder(head: bytes) -> str | None:
    return {b"II": "<", b"MM": ">"}.get(head[:2])


def is_mm_head(head: bytes) -> bool:
    """Micro-Manager's header in the first 40 bytes: index map and summary headers in place."""
    bo = _byteorder(head)
    if bo is None or len(head) < 40:
        return False
    (index_header,) = struct.unpack_from(bo + "I", head, 8)
    (summary_header,) = struct.unpack_from(bo + "I", head, 32)
    return bool(index_header == INDEX_MAP_HEADER and summary_header == SUMMARY_HEADER)


def read_mm_header(
    path: Path, *, max_metadata_bytes: int
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The summary and the index map of one Micro-Manager file, every size checked first.

    Returns the summary dict and an ``(n, 5)`` uint64 array of
    ``(channel, slice, frame, position, IFD offset)``; ``None`` for the index
    map of a file whose acquisition never closed it (offset 0: Micro-Manager
    writes the map when the file is finished).
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(40)
        if not is_mm_head(head):
            msg = f"{path.name}: not a Micro-Manager file (no Micro-Manager header at byte 8)"
            raise CorruptFileError(msg, path=path)
        bo = _byteorder(head) or "<"
        _, index_offset, _, _, _, _, _, summary_length = struct.unpack_from(bo + "8I", head, 8)
        if summary_length > min(max_metadata_bytes, size - 40):
            msg = f"{path.name}: the Micro-Manager summary claims {summary_length:,} bytes, more than the file or the metadata limit allows"
            raise CorruptFileError(msg, path=path)
        raw = fh.read(summary_length)
        try:
            summary = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            msg = f"{path.name}: the Micro-Manager summary is not valid JSON: {exc}"
            raise CorruptFileError(msg, path=path) from exc
        if isinstance(summary, dict) and isinstance(summary.get("Summary"), dict):
            summary = summary["Summary"]
        if not isinstance(summary, dict):
            msg = f"{path.name}: the Micro-Manager summary is not a JSON object"
            raise CorruptFileError(msg, path=path)
        if index_offset == 0:
            return summary, None
        if not 40 <= index_offset <= size - 8:
            msg = f"{path.name}: the index map offset {index_offset:,} lies outside the file ({size:,} bytes); the file is truncated or was not closed"
            raise CorruptFileError(msg, path=path)
        fh.seek(index_offset)
        block, count = struct.unpack(bo + "2I", fh.read(8))
        if block != INDEX_MAP_BLOCK:
            msg = f"{path.name}: no index map at byte {index_offset:,}; the file is corrupt"
            raise CorruptFileError(msg, path=path)
        if count * 20 > size - index_offset - 8:
            msg = f"{path.name}: the index map lists {count:,} planes, more than the file holds; the file is truncated"
            raise CorruptFileError(msg, path=path)
        rows = np.frombuffer(fh.read(count * 20), dtype=bo + "u4").reshape(count, 5)
    return summary, rows.astype(np.uint64)


class MicroManagerReader(TiffFamilyReader):
    """Micro-Manager multipage TIFF datasets, opened whole from any member; positions are scenes.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("run_MMStack_Pos0.ome.tif") as image:  # doctest: +SKIP
    ...     len(image.scenes())
    """

    format_name: ClassVar[str] = "Micro-Manager"
    suffixes: ClassVar[tuple[str, ...]] = (".ome.tif", ".tif")
    reads_remote = False

    @classmethod
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """A TIFF with Micro-Manager's header (index map and summary headers at bytes 8 and 32)."""
        return is_mm_head(head)

    @classmethod
    def sniff_remote(cls, head: bytes, source: RemoteObject) -> bool:
        """A dataset spans files beside each other: read from a local folder only."""
        return False

    @classmethod
    def file_set(cls, path: Path, limits: ReadLimits) -> FileSet | None:
        """Every ``<prefix>_MMStack*`` file beside ``path``; the main file is the first by name.

        Position 0's first file sorts first (``run_MMStack_Pos0.ome.tif`` before
        its continuation ``..._Pos0_1.ome.tif``), and it is the one Micro-Manager
        writes first, so the main file stays the same while a run grows.
        """
        from zstack_analyzer.filesets import FileSet

        name = path.name
        if not _MEMBER.search(name):
            return None
        prefix = name[: name.lower().index("_mmstack")]
        found = []
        for p in path.parent.glob(f"{glob_escape(prefix)}_MMStack*"):
            if p.name[: len(prefix)] == prefix and _MEMBER.search(p.name) and p.is_file():
                found.append(p)
                if len(found) > MAX_MEMBERS:
                    msg = f"{name}: over {MAX_MEMBERS:,} files in the dataset"
                    raise LimitExceededError(msg, path=path)
        if path not in found:
            found.append(path)
        found.sort(key=lambda p: p.name)
        return FileSet.of(found[0], found)

    # ------------------------------------------------------------ plans
    def _members(self, summary: Mapping[str, Any]) -> list[Path]:
        """The file opened and the dataset's other files beside it (same prefix, ``_MMStack``)."""
        name = self.path.name
        if not _MEMBER.search(name):
            return [self.path]
        prefix = name[: name.lower().index("_mmstack")]
        stated = summary.get("Prefix")
        if isinstance(stated, str) and stated and not name.startswith(stated):
            return [self.path]
        found = sorted(
            p
            for p in self.path.parent.glob(f"{glob_escape(prefix)}_MMStack*")
            if p.is_file() and _MEMBER.search(p.name) and p.name[: len(prefix)] == prefix
        )
        if len(found) > MAX_MEMBERS:
            msg = f"{name}: {len(found):,} files in the dataset, over {MAX_MEMBERS:,}"
            raise LimitExceededError(msg, path=self.path)
        if self.path not in found:  # a name whose case differs from the glob's
            found = sorted([*found, self.path])
        return found

    def _build_plans(self) -> list[ScenePlan]:
        limit = self.limits.max_metadata_bytes
        self._summary, own_rows = read_mm_header(self.path, max_metadata_bytes=limit)
        self._warnings: list[str] = []
        if own_rows is None:
            own_rows = self._rows_from_pages()
        members: list[tuple[Path, np.ndarray]] = []
        for member in self._members(self._summary):
            if member == self.path:
                members.append((member, own_rows))
                continue
            try:
                other, rows = read_mm_header(member, max_metadata_bytes=limit)
            except CorruptFileError as exc:
                self._warnings.append(f"dataset file {member.name} skipped: {exc}")
                continue
            if rows is None:
                self._warnings.append(
                    f"dataset file {member.name} skipped: its index map was never written"
                )
                continue
            if other.get("Prefix", self._summary.get("Prefix")) != self._summary.get("Prefix"):
                continue
            members.append((member, rows))
        self._member_paths = [path for path, _ in members]
        self._member_files: dict[int, Any] = {}
        own = self._member_paths.index(self.path)
        self._member_files[own] = self.tif
        rows = np.concatenate(
            [
                np.column_stack([r, np.full(len(r), i, np.uint64)])
                for i, (_, r) in enumerate(members)
            ]
        )
        if rows.shape[0] == 0:
            msg = f"{self.path.name}: the index map lists no planes"
            raise CorruptFileError(msg, path=self.path)
        extent = rows[:, :4].max(axis=0).astype(np.int64) + 1
        size_c, size_z, size_t, size_p = (int(v) for v in extent)
        # A lying index (a row with frame 4e9) is refused before any table is made.
        self.check_shape((size_p * size_t, size_c, size_z, 1, 1), "u1")
        planned = {
            "Frames": size_t,
            "Slices": size_z,
            "Channels": size_c,
            "Positions": size_p,
        }
        short = {k: _int(self._summary.get(k)) for k in planned}
        short = {k: v for k, v in short.items() if v is not None and v > planned[k]}
        if short:
            self._warnings.append(
                "the acquisition planned "
                + ", ".join(f"{k}={v}" for k, v in short.items())
                + f" but the files hold {', '.join(f'{k}={planned[k]}' for k in short)}: sizes are what was written"
            )
        table = np.full((size_p, size_t, size_c, size_z), -1, dtype=np.int64)
        c, z, t, p = (rows[:, i].astype(np.int64) for i in range(4))
        table[p, t, c, z] = np.arange(rows.shape[0])
        self._rows = rows
        self._table = table
        self._pages: OrderedDict[tuple[int, int], Any] = OrderedDict()
        keyframe = self._page_at(int(rows[0, 5]), int(rows[0, 4]))
        page_axes = str(keyframe.axes)
        if set(page_axes) - set("YXS"):
            msg = f"{self.path.name}: pages with axes {page_axes!r} are not Micro-Manager planes"
            raise CorruptFileError(msg, path=self.path)
        shape = dict(zip(page_axes, keyframe.shape, strict=True))
        spp = int(shape.get("S", 1))
        width, height = _int(self._summary.get("Width")), _int(self._summary.get("Height"))
        if (width, height) != (None, None) and (width, height) != (shape["X"], shape["Y"]):
            msg = (
                f"{self.path.name}: the summary says {width} x {height} pixels, the planes hold "
                f"{shape['X']} x {shape['Y']}"
            )
            raise MetadataError(msg, path=self.path)
        dtype = np.dtype(keyframe.dtype).newbyteorder("=")
        labels = _position_labels(self._summary, size_p)
        plans = []
        for position in range(size_p):
            info = SceneInfo(
                index=position,
                name=labels[position],
                size_t=size_t,
                size_c=size_c,
                size_z=size_z,
                size_y=int(shape["Y"]),
                size_x=int(shape["X"]),
                samples_per_pixel=spp,
                dtype=dtype.name,
            )
            plans.append(self._plan_for(position, info, dtype))
        absent = int((table < 0).sum())
        if absent:
            self._warnings.append(
                f"{absent} of {table.size} planes are in no index map (files missing or "
                "acquisition stopped): they read as zeros"
            )
        return plans

    def _rows_from_pages(self) -> np.ndarray:
        """The index map rebuilt from each page's MicroManagerMetadata, for a file never closed.

        Why: Micro-Manager writes the index map when it closes a file; after a
        crash the planes are there but the map is not. Every IFD is parsed
        (at most ``max_planes``), its indices read from tag 51123 (ChannelIndex,
        SliceIndex, FrameIndex, PositionIndex), as Bio-Formats does.
        """
        tif = self.tif
        rows: list[list[int]] = []
        # An IFD takes at least 2 + 12 + 4 bytes: more pages than that would be a loop.
        most = min(self.limits.max_planes, int(tif.filehandle.size) // 18)
        for page in tif.pages:
            if len(rows) >= most:
                msg = f"{self.path.name}: over {most:,} pages without an index map; the IFD chain loops or the file is too large"
                raise CorruptFileError(msg, path=self.path)
            tag = page.tags.get(MM_METADATA_TAG)
            value = tag.value if tag is not None else None
            if isinstance(value, str | bytes):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            if not isinstance(value, dict):
                msg = f"{self.path.name}: page {page.index} has no readable MicroManagerMetadata and the file has no index map"
                raise CorruptFileError(msg, path=self.path)
            keys = ("ChannelIndex", "SliceIndex", "FrameIndex", "PositionIndex")
            found = [_int(value.get(key, 0)) for key in keys]
            indices = [i for i in found if i is not None and i >= 0]
            if len(indices) != len(keys):
                msg = f"{self.path.name}: page {page.index} has no valid plane indices"
                raise CorruptFileError(msg, path=self.path)
            rows.append([*indices, int(page.offset)])
        if not rows:
            msg = f"{self.path.name}: no planes and no index map"
            raise CorruptFileError(msg, path=self.path)
        self._warnings.append(
            f"{self.path.name} has no index map (the acquisition did not close it): "
            "planes located from each page's MicroManagerMetadata"
        )
        return np.asarray(rows, dtype=np.uint64)

    def _plan_for(self, position: int, info: SceneInfo, dtype: np.dtype[Any]) -> ScenePlan:
        table = self._table[position]
        size_c, size_z = info.size_c, info.size_z

        def locate(t: int, c: int, z: int) -> tuple[int, int]:
            return (t * size_c + c) * size_z + z, 0

        def page(level: int, slot: int) -> Any:
            entry = int(table.reshape(-1)[slot])
            if entry < 0 or level != 0:
                return None
            row = self._rows[entry]
            return self._page_at(int(row[5]), int(row[4]))

        return ScenePlan(
            info=info,
            dtype=dtype,
            level_shapes=[(info.size_y, info.size_x)],
            locate=locate,
            page=page,
        )

    def _member_tif(self, member: int) -> Any:
        if member not in self._member_files:
            self._member_files[member] = self._open_tifffile(self._member_paths[member])
        return self._member_files[member]

    def _page_at(self, member: int, offset: int) -> Any:
        """The IFD at ``offset`` of member file ``member``, parsed once and kept (bounded)."""
        from tifffile import TiffPage

        key = (member, offset)
        with self._io_lock:
            cached = self._pages.get(key)
            if cached is not None:
                self._pages.move_to_end(key)
                return cached
            tif = self._member_tif(member)
            size = int(tif.filehandle.size)
            if not 8 <= offset < size:
                msg = (
                    f"{self.path.name}: the index map points to byte {offset:,} of "
                    f"{self._member_paths[member].name}, which has {size:,}; the file is truncated"
                )
                raise CorruptFileError(msg, path=self.path)
            tif.filehandle.seek(offset)
            try:
                page = TiffPage(tif, index=len(self._pages))
            except Exception as exc:
                msg = f"{self.path.name}: unreadable IFD at byte {offset:,} of {self._member_paths[member].name}: {exc}"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
            self._pages[key] = page
            if len(self._pages) > PAGE_CACHE:
                self._pages.popitem(last=False)
            return page

    # ------------------------------------------------------------ metadata
    def _plane_json(self, position: int, t: int, c: int, z: int) -> dict[str, Any]:
        """The MicroManagerMetadata JSON (tag 51123) of one plane, ``{}`` when absent or unreadable."""
        entry = int(self._table[position, t, c, z])
        if entry < 0:
            return {}
        row = self._rows[entry]
        page = self._page_at(int(row[5]), int(row[4]))
        tag = page.tags.get(MM_METADATA_TAG)
        value = tag.value if tag is not None else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return {}
        return value if isinstance(value, dict) else {}

    def _build_metadata(self, scene: int) -> ImageMetadata:
        plan = self._plans[scene]
        info = plan.info
        summary = self._summary
        provenance: dict[str, str] = {
            "sizes": "Micro-Manager index maps of the dataset's files (extent of the planes written)"
        }
        warnings = list(self._warnings)
        first = self._plane_json(scene, 0, 0, 0)
        xy = _positive(summary.get("PixelSize_um"))
        source = "Micro-Manager summary PixelSize_um"
        if xy is None:
            xy = _positive(first.get("PixelSizeUm"))
            source = "Micro-Manager plane metadata PixelSizeUm"
        if xy is not None:
            provenance["physical_size.x_um"] = provenance["physical_size.y_um"] = source
        z_um = _number(summary.get("z-step_um")) if info.size_z > 1 else None
        if z_um == 0:
            z_um = None
        if z_um is not None:
            provenance["physical_size.z_um"] = "Micro-Manager summary z-step_um"
        names = _list(summary.get("ChNames"))
        colours = _list(summary.get("ChColors"))
        channels = []
        for c in range(info.size_c):
            plane = self._plane_json(scene, 0, c, 0) if c else first
            name = names[c] if c < len(names) and isinstance(names[c], str) else None
            channels.append(
                ChannelInfo(
                    index=c,
                    name=name.strip() or None if name else None,
                    color=_argb(colours[c]) if c < len(colours) else None,
                    exposure_ms=_positive(plane.get("Exposure-ms")),
                )
            )
        if any(ch.name for ch in channels):
            provenance["channels[].name"] = "Micro-Manager summary ChNames"
        if any(ch.color for ch in channels):
            provenance["channels[].color"] = "Micro-Manager summary ChColors"
        if any(ch.exposure_ms for ch in channels):
            provenance["channels[].exposure_ms"] = "Micro-Manager plane metadata Exposure-ms"
        interval = None
        if info.size_t > 1:
            later = self._plane_json(scene, info.size_t - 1, 0, 0)
            start, end = _number(first.get("ElapsedTime-ms")), _number(later.get("ElapsedTime-ms"))
            if start is not None and end is not None and end > start:
                interval = (end - start) / (info.size_t - 1) / 1000.0
                provenance["time_interval_s"] = (
                    "Micro-Manager plane metadata ElapsedTime-ms (first to last frame)"
                )
            elif _positive(summary.get("Interval_ms")) is not None:
                interval = float(summary["Interval_ms"]) / 1000.0
                provenance["time_interval_s"] = "Micro-Manager summary Interval_ms (as planned)"
        acquired, acquired_local = _start_time(
            summary.get("StartTime") or summary.get("Time"),
            "Micro-Manager summary StartTime",
            provenance,
            warnings,
        )
        version = summary.get("MicroManagerVersion")
        microscope = MicroscopeInfo(
            software="Micro-Manager", software_version=str(version) if version else None
        )
        provenance["microscope.software"] = "Micro-Manager summary MicroManagerVersion"
        vendor = {
            "summary": summary,
            "files": [p.name for p in self._member_paths],
            "first_plane": first,
        }
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=xy, y_um=xy, z_um=z_um),
            time_interval_s=interval,
            channels=channels,
            microscope=microscope,
            acquired_at=acquired,
            acquired_at_local=acquired_local,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor_safe(vendor),
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The first IFD's tags, the summary and the dataset's files."""
        raw = dict(super().raw_metadata())
        raw["micromanager_summary"] = dict(self._summary)
        raw["files"] = [str(p) for p in self._member_paths]
        return raw


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters escaped (a prefix may contain ``[``)."""
    import glob

    return glob.escape(text)


def _position_labels(summary: Mapping[str, Any], count: int) -> list[str | None]:
    positions = summary.get("StagePositions") or summary.get("InitialPositionList") or []
    labels: list[str | None] = [None] * count
    if isinstance(positions, list):
        for i, entry in enumerate(positions[:count]):
            if isinstance(entry, dict):
                label = entry.get("Label") or entry.get("label")
                labels[i] = str(label) if label else None
    return labels


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _argb(value: Any) -> str | None:
    """Micro-Manager's channel colour, a Java ARGB int (-1 is white), as #RRGGBB."""
    number = _int(value)
    if number is None:
        return None
    number &= 0xFFFFFF
    return f"#{number >> 16 & 0xFF:02X}{number >> 8 & 0xFF:02X}{number & 0xFF:02X}"


def _start_time(
    value: Any, source: str, provenance: dict[str, str], warnings: list[str]
) -> tuple[datetime | None, datetime | None]:
    """``(acquired_at, acquired_at_local)`` from a summary's start time, with its provenance.

    Why one helper: Micro-Manager and NDTiff (its successor) write the same StartTime; one
    with a UTC offset is an instant, one without is local time and says so in a warning.
    """
    started = _timestamp(value)
    if started is None:
        return None, None
    if started.tzinfo is not None:
        provenance["acquired_at"] = f"{source} (with its UTC offset)"
        return started.astimezone(UTC), None
    provenance["acquired_at_local"] = source
    warnings.append("acquisition time zone unknown: acquired_at_local holds the time as written")
    return None, started


def _timestamp(value: Any) -> datetime | None:
    """Micro-Manager's "2024-03-01 12:30:05.123 +0100" (aware), or the same without an offset (naive)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for pattern in (
        "%Y-%m-%d %H:%M:%S.%f %z",
        "%Y-%m-%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S.%f",
        "%Y-%m-%d %H:%M:%S",
    ):
        try:
            moment = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return moment
    return None
