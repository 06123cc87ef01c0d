"""Imaris ``.ims`` (Imaris 5.5 file format): HDF5 with a multi-resolution pyramid.

Why natively: an ``.ims`` file is plain HDF5, which h5py reads chunk by chunk,
so a plane or a region costs the chunks it touches and the pyramid Imaris
stores is used for overviews. Layout (Imaris 5.5, as Bio-Formats'
ImarisHDFReader reads it):

- ``/DataSet/ResolutionLevel r/TimePoint t/Channel c/Data``: a (Z, Y, X)
  dataset, chunked, padded up to whole chunks; the true extent is the
  channel group's ``ImageSizeX/Y/Z`` attributes;
- ``/DataSetInfo/Image``: ``X``, ``Y``, ``Z`` (sizes at full resolution),
  ``ExtMin0..2`` and ``ExtMax0..2`` (the extent, in ``Unit``), so the voxel size
  is ``(ExtMax - ExtMin) / size``; ``Name``, ``RecordingDate``;
- ``/DataSetInfo/Channel c``: ``Name``, ``Color`` ("r g b" in 0..1),
  ``LSMExcitationWavelength``, ``LSMEmissionWavelength``;
- ``/DataSetInfo/TimeInfo``: ``TimePoint1``... as "YYYY-MM-DD HH:MM:SS.fff";
- every attribute is an array of single characters (``|S1``), numbers included.

Pyramid levels halve X and Y, and Z when the stack is deep; a level with
fewer Z planes than the full resolution serves plane z from its plane
``z * Z_level // Z`` (noted in the record's warnings).

Safety: datasets with external storage or virtual layouts, and external links
to another file's dataset, are refused (they would read other files), as are
datasets smaller than the declared sizes or chunks over the plane limit; a
truncated HDF5 file fails in h5py at open.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, ZstackError
from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, PhysicalSize, SceneInfo
from zstack_analyzer.readers._base import ImageReader, planes_to_dask
from zstack_analyzer.readers._tiff_common import length_to_um, vendor_safe

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits

__all__ = ["ImarisReader"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LEVEL = re.compile(r"^ResolutionLevel (\d+)$")
_TIMEPOINT = re.compile(r"^TimePoint (\d+)$")
_CHANNEL = re.compile(r"^Channel (\d+)$")
#: Most groups listed under one parent (levels, time points, channels) before the file is refused.
MAX_GROUPS = 100_000


class ImarisReader(ImageReader):
    """Imaris 5.5 ``.ims`` files: one scene, T and C from the groups, pyramid levels from the file.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("cells.ims") as image:  # doctest: +SKIP
    ...     image.level_count()
    """

    format_name: ClassVar[str] = "Imaris"
    suffixes: ClassVar[tuple[str, ...]] = (".ims",)
    required_packages: ClassVar[tuple[str, ...]] = ("h5py",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """HDF5 whose name is ``.ims`` or whose root names Imaris' groups."""
        if not head.startswith(HDF5_MAGIC):
            return False
        return path.suffix.lower() == ".ims" or b"ImarisDataSet" in head

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        self._io_lock = threading.RLock()
        self._metadata_cache: ImageMetadata | None = None
        try:
            import h5py

            self._h5 = h5py.File(self.path, "r")
            self.close_on_release(self._h5.close)
            self._layout()
        except ZstackError:
            self.close()
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            self.close()
            msg = f"{self.path.name}: invalid Imaris (HDF5) structure: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    # ------------------------------------------------------------------ layout
    def _group(self, where: str) -> Any:
        import h5py

        node = self._h5.get(where)
        if not isinstance(node, h5py.Group):
            msg = f"{self.path.name}: the Imaris group {where!r} is missing"
            raise CorruptFileError(msg, path=self.path)
        return node

    def _indices(self, group: Any, pattern: re.Pattern[str], what: str) -> list[int]:
        names = list(group.keys())
        if len(names) > MAX_GROUPS:
            msg = f"{self.path.name}: {len(names):,} groups under {group.name}, over {MAX_GROUPS:,}"
            raise CorruptFileError(msg, path=self.path)
        found = sorted(int(m.group(1)) for m in map(pattern.match, names) if m)
        if not found or found[0] != 0:
            msg = f"{self.path.name}: no {what} 0 under {group.name}"
            raise CorruptFileError(msg, path=self.path)
        return found

    def _layout(self) -> None:
        root = self._h5
        info_attrs = (
            dict(self._group("DataSetInfo/Image").attrs) if "DataSetInfo/Image" in root else {}
        )
        self._image_attrs = {k: _text(v) for k, v in info_attrs.items()}
        dataset = self._group("DataSet")
        levels = self._indices(dataset, _LEVEL, "ResolutionLevel")
        if levels != list(range(len(levels))):
            msg = f"{self.path.name}: resolution levels {levels} are not numbered 0..{len(levels) - 1}"
            raise CorruptFileError(msg, path=self.path)
        level0 = self._group("DataSet/ResolutionLevel 0")
        times = self._indices(level0, _TIMEPOINT, "TimePoint")
        channels = self._indices(
            self._group("DataSet/ResolutionLevel 0/TimePoint 0"), _CHANNEL, "Channel"
        )
        size_t, size_c = times[-1] + 1, channels[-1] + 1
        first = self._channel_group(0, 0, 0)
        sizes = [_int(first.attrs.get(f"ImageSize{a}")) for a in "ZYX"]
        declared = [_int(self._image_attrs.get(a)) for a in "ZYX"]
        size_z, size_y, size_x = (
            d if d is not None and d > 0 else s for d, s in zip(declared, sizes, strict=True)
        )
        if any(v is None or v <= 0 for v in (size_z, size_y, size_x)):
            msg = f"{self.path.name}: the image size (X, Y, Z) is missing or not positive"
            raise CorruptFileError(msg, path=self.path)
        data = self._dataset(0, 0, 0, check=False)
        assert size_z is not None and size_y is not None and size_x is not None  # noqa: S101
        info = SceneInfo(
            index=0,
            name=self._image_attrs.get("Name") or None,
            size_t=size_t,
            size_c=size_c,
            size_z=size_z,
            size_y=size_y,
            size_x=size_x,
            dtype=np.dtype(data.dtype).newbyteorder("=").name,
        )
        self.check_shape(info.shape, info.dtype)
        self._info = info
        # Level extents: the channel group's ImageSize, else the full size halved per level.
        self._levels: list[tuple[int, int, int]] = []
        for level in levels:
            group = self._channel_group(level, 0, 0)
            extent = tuple(_int(group.attrs.get(f"ImageSize{a}")) for a in "ZYX")
            if any(v is None or v <= 0 for v in extent):
                shape = self._dataset(level, 0, 0, check=False).shape
                extent = tuple(int(v) for v in shape[:3])
            self._levels.append(extent)  # type: ignore[arg-type]
        self._levels[0] = (size_z, size_y, size_x)
        for level in levels:
            self._dataset(level, 0, 0)  # shape, dtype, layout and chunks of the first ...
            self._dataset(level, size_t - 1, size_c - 1)  # ... and of the last planes

    def _channel_group(self, level: int, t: int, c: int) -> Any:
        return self._group(f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}")

    def _dataset(self, level: int, t: int, c: int, *, check: bool = True) -> Any:
        """The Data dataset of (level, t, c), checked; ``None`` when the file lacks it."""
        import h5py

        where = f"DataSet/ResolutionLevel {level}/TimePoint {t}/Channel {c}/Data"
        node = self._h5.get(where)
        if node is None and check:
            return None
        if not isinstance(node, h5py.Dataset):
            msg = f"{self.path.name}: {where} is missing or not a dataset"
            raise CorruptFileError(msg, path=self.path)
        if node.ndim != 3:
            msg = f"{self.path.name}: {where} has {node.ndim} dimensions, not Z, Y, X"
            raise CorruptFileError(msg, path=self.path)
        if node.is_virtual or node.external:
            msg = f"{self.path.name}: {where} stores its data in other files (external or virtual); refused"
            raise CorruptFileError(msg, path=self.path)
        if node.file.filename != self._h5.filename:  # an HDF5 external link: another file's data
            msg = f"{self.path.name}: {where} links into another file; refused"
            raise CorruptFileError(msg, path=self.path)
        if not check:
            return node
        dtype = np.dtype(node.dtype)
        if dtype.kind not in "uif" or dtype.newbyteorder("=").name != self._info.dtype:
            msg = f"{self.path.name}: {where} holds {dtype}, the image is {self._info.dtype}"
            raise CorruptFileError(msg, path=self.path)
        nz, ny, nx = self._levels[level]
        if tuple(int(v) for v in node.shape) < (nz, ny, nx) or any(
            int(s) < e for s, e in zip(node.shape, (nz, ny, nx), strict=True)
        ):
            msg = f"{self.path.name}: {where} is {tuple(node.shape)}, smaller than the declared {(nz, ny, nx)}"
            raise CorruptFileError(msg, path=self.path)
        chunks = node.chunks or node.shape
        chunk_bytes = math.prod(int(v) for v in chunks) * dtype.itemsize
        if chunk_bytes > self.limits.max_plane_bytes:
            msg = f"{self.path.name}: {where} has chunks of {chunk_bytes:,} bytes, over the plane limit"
            raise CorruptFileError(msg, path=self.path)
        return node

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene: the data set."""
        return [self._info]

    def level_count(self, scene: int = 0) -> int:
        """The resolution levels Imaris stored."""
        self.scene_info(scene)
        return len(self._levels)

    def _check_level(self, scene: int, level: int) -> tuple[int, int, int]:
        self.scene_info(scene)
        if not 0 <= level < len(self._levels):
            msg = f"{self.path.name}: pyramid level {level} does not exist; it has {len(self._levels)}"
            raise SceneNotFoundError(msg, path=self.path)
        return self._levels[level]

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X array at ``level``; one chunk per plane (Z as at full resolution)."""
        _, ny, nx = self._check_level(scene, level)
        info = self._info
        shape = (info.size_t, info.size_c, info.size_z, ny, nx)
        read = functools.partial(self._read, level, None)
        return planes_to_dask(read, shape, info.dtype, name="imarisreader")

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X plane of the full resolution, read from the chunks it crosses."""
        self.check_plane_index(scene, t, c, z)
        return self._read(0, None, t, c, z)

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """The dataset's chunk (rows, columns): a region decodes only the chunks it touches."""
        _, ny, nx = self._check_level(scene, level)
        self.check_open()  # a closed h5py file answers None for every node: not "no chunks"
        try:
            with self._io_lock:
                node = self._dataset(level, 0, 0)
                chunks = (node.chunks if node is not None else None) or (1, ny, nx)
        except ZstackError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            msg = f"{self.path.name}: unreadable Imaris dataset layout: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        return (min(int(chunks[1]), ny), min(int(chunks[2]), nx))

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
        """Rows and columns of one plane at ``level``, sliced from the HDF5 dataset."""
        self.check_plane_index(scene, t, c, z)
        _, ny, nx = self._check_level(scene, level)
        window = (max(0, rows[0]), min(ny, rows[1]), max(0, cols[0]), min(nx, cols[1]))
        return self._read(level, window, t, c, z)

    def _read(
        self, level: int, window: tuple[int, int, int, int] | None, t: int, c: int, z: int
    ) -> np.ndarray:
        self.check_open()
        nz_level, ny, nx = self._levels[level]
        y0, y1, x0, x1 = window if window is not None else (0, ny, 0, nx)
        out_shape = (max(0, y1 - y0), max(0, x1 - x0))
        zl = min(z * nz_level // self._info.size_z, nz_level - 1)
        try:
            with self._io_lock:
                node = self._dataset(level, t, c)
                if node is None:
                    return np.zeros(out_shape, dtype=self._info.dtype)
                data = node[zl, y0:y1, x0:x1]
        except ZstackError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            msg = f"{self.path.name}: cannot read plane t={t} c={c} z={z} (level {level}): {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        data = np.asarray(data)
        if data.shape != out_shape:
            msg = f"{self.path.name}: plane t={t} c={c} z={z} read as {data.shape}, expected {out_shape}"
            raise CorruptFileError(msg, path=self.path)
        return np.ascontiguousarray(data, dtype=np.dtype(self._info.dtype))

    # ------------------------------------------------------------------ metadata
    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata from ``DataSetInfo`` (built once, copied per call)."""
        self.scene_info(scene)
        if self._metadata_cache is None:
            self.check_open()  # reading a closed file is the caller's error, not a corrupt file
            try:
                self._metadata_cache = self._build_metadata()
            except ZstackError:
                raise
            except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
                msg = f"{self.path.name}: unreadable Imaris metadata: {exc}"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        return self._metadata_cache.model_copy(deep=True)

    def _attrs(self, where: str) -> dict[str, str]:
        node = self._h5.get(where)
        if node is None:
            return {}
        return {str(k): _text(v) for k, v in node.attrs.items()}

    def _build_metadata(self) -> ImageMetadata:
        info = self._info
        image = self._image_attrs
        provenance: dict[str, str] = {
            "sizes": "Imaris DataSetInfo/Image X, Y, Z; TimePoint and Channel groups of level 0"
        }
        warnings: list[str] = []
        unit = image.get("Unit") or "um"
        factor = length_to_um(unit)
        if factor is None:
            warnings.append(f"Imaris extent unit {unit!r} is unknown: pixel size unknown")
        voxel: dict[str, float | None] = {}
        for i, (axis, size) in enumerate(
            zip("xyz", (info.size_x, info.size_y, info.size_z), strict=True)
        ):
            low, high = _float(image.get(f"ExtMin{i}")), _float(image.get(f"ExtMax{i}"))
            value = None
            if factor is not None and low is not None and high is not None and high > low:
                value = (high - low) / size * factor
            if axis == "z" and info.size_z == 1:
                value = None
            voxel[axis] = value
            if value is not None:
                provenance[f"physical_size.{axis}_um"] = (
                    f"Imaris DataSetInfo/Image (ExtMax{i} - ExtMin{i}) / {axis.upper()} ({unit})"
                )
        channels = []
        for c in range(info.size_c):
            attrs = self._attrs(f"DataSetInfo/Channel {c}")
            channels.append(
                ChannelInfo(
                    index=c,
                    name=attrs.get("Name") or None,
                    color=_colour(attrs.get("Color")),
                    excitation_nm=_positive(attrs.get("LSMExcitationWavelength")),
                    emission_nm=_positive(attrs.get("LSMEmissionWavelength")),
                )
            )
        if any(ch.name for ch in channels):
            provenance["channels[].name"] = "Imaris DataSetInfo/Channel c Name"
        if any(ch.color for ch in channels):
            provenance["channels[].color"] = "Imaris DataSetInfo/Channel c Color (r g b in 0..1)"
        times = self._attrs("DataSetInfo/TimeInfo")
        stamps = [_timestamp(times.get(f"TimePoint{t + 1}")) for t in range(min(info.size_t, 1000))]
        acquired_local = stamps[0] if stamps else None
        if acquired_local is None:
            acquired_local = _timestamp(image.get("RecordingDate"))
        if acquired_local is not None:
            provenance["acquired_at_local"] = "Imaris TimeInfo TimePoint1 (or Image RecordingDate)"
            warnings.append(
                "acquisition time zone unknown: acquired_at_local holds the time as written"
            )
        interval = None
        if info.size_t > 1 and len(stamps) >= 2 and all(s is not None for s in stamps):
            span = (stamps[-1] - stamps[0]).total_seconds()  # type: ignore[operator]
            if span > 0:
                interval = span / (len(stamps) - 1)
                provenance["time_interval_s"] = "Imaris TimeInfo TimePoint n (mean step)"
        pyramid = [(ny, nx) for _, ny, nx in self._levels]
        if any(nz != info.size_z for nz, _, _ in self._levels):
            warnings.append(
                "pyramid levels with fewer Z planes serve plane z from their plane z * Z_level // Z"
            )
        vendor = {
            "image": image,
            "root": {str(k): _text(v) for k, v in self._h5.attrs.items()},
            "levels": [list(level) for level in self._levels],
        }
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=voxel["x"], y_um=voxel["y"], z_um=voxel["z"]),
            time_interval_s=interval,
            channels=channels,
            acquired_at_local=acquired_local,
            pyramid_levels=pyramid if len(pyramid) > 1 else [],
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor_safe(vendor),
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """Every ``DataSetInfo`` group's attributes, decoded to text, and the root's."""
        self.check_open()
        out: dict[str, Any] = {"root": {str(k): _text(v) for k, v in self._h5.attrs.items()}}
        info = self._h5.get("DataSetInfo")
        if info is not None:
            for name in list(info.keys())[:1000]:
                out[name] = self._attrs(f"DataSetInfo/{name}")
        return out


def _text(value: Any) -> str:
    """An Imaris attribute (an array of single bytes, or a plain string/number) as text."""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    array = np.asarray(value)
    if array.dtype.kind == "S":
        return b"".join(bytes(v) for v in array.ravel()).decode("latin-1").rstrip("\x00")
    if array.ndim == 0:
        return str(array.item())
    return " ".join(str(v) for v in array.ravel().tolist())


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(float(_text(value).strip()))
    except (ValueError, OverflowError):
        return None


def _float(value: Any) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _float(value)
    return number if number is not None and number > 0 else None


def _colour(value: str | None) -> str | None:
    """Imaris' "r g b" (0..1 each) as #RRGGBB."""
    if not value:
        return None
    parts = value.split()
    if len(parts) < 3:
        return None
    try:
        rgb = [min(max(float(v), 0.0), 1.0) for v in parts[:3]]
    except ValueError:
        return None
    return "#" + "".join(f"{round(v * 255):02X}" for v in rgb)


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            moment = datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
        return moment if moment.year >= 1900 else None
    return None
