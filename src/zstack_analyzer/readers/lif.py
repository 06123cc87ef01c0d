"""Leica LIF files (LAS AF / LAS X) through liffile.

Why our own plane reads on top of liffile: liffile parses the XML header and the
memory-block table well, but its frame interface reads the two innermost stored
dimensions, which for XZ scans and ``xzy`` stacks are Z,X rather than the Y,X
plane our canonical array is made of. The XML states every dimension's byte
increment, so one canonical plane is a strided read we compute here, bounded by
one plane (one stitched canvas for a tile scan). Quirks of the format stay in
this module:

* an emission (λ) or excitation (Λ) sweep is the channel axis when the image
  has no C axis, else it takes index 0 and is listed in ``extra_dims``;
* an XZ scan (no Y dimension) is Y=1, Z=lines, Y voxel size unknown;
* a tile scan (M) is stitched by the tiles' recorded stage positions
  (SOURCES.md convention ``lif_tilescan``); later tiles are drawn on top;
* LIF stores no channel names, so every channel name is ``None``.
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import (
    CorruptFileError,
    LimitExceededError,
    MetadataError,
    MissingDependencyError,
    SceneNotFoundError,
)
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._base import ImageReader, planes_to_dask
from zstack_analyzer.vendor import capped_vendor

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from xml.etree.ElementTree import Element

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits

__all__ = ["LifReader"]

logger = logging.getLogger(__name__)

#: LIF header: uint32 0x70, uint32 size, byte 0x2A, uint32 XML length (UTF-16 code units).
_HEADER = struct.Struct("<IIBI")
_MAGIC = 0x70
_MARK = 0x2A

#: DimensionDescription DimID -> label, as liffile names them.
_DIMENSION_ID = {
    1: "X",
    2: "Y",
    3: "Z",
    4: "T",
    5: "λ",
    6: "A",
    7: "N",
    8: "Q",
    9: "Λ",
    10: "M",
    11: "L",
}

#: LAS LUT names -> display colour.
_LUT_COLOURS = {
    "red": "#FF0000",
    "green": "#00FF00",
    "blue": "#0000FF",
    "cyan": "#00FFFF",
    "magenta": "#FF00FF",
    "yellow": "#FFFF00",
    "gray": "#FFFFFF",
    "grey": "#FFFFFF",
    "white": "#FFFFFF",
}

#: LAS immersion codes -> OME immersion names.
_IMMERSION = {
    "OIL": "Oil",
    "WATER": "Water",
    "GLYC": "Glycerol",
    "GLYCEROL": "Glycerol",
    "DRY": "Air",
    "AIR": "Air",
    "MULTI": "Multi",
    "SIL": "Silicone",
    "SILICONE": "Silicone",
}

#: Windows FILETIME epoch (100 ns ticks since 1601-01-01 UTC).
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

#: Exceptions liffile (and the XML/struct layers under it) raise for broken files.
_PARSE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    SyntaxError,
    struct.error,
    OverflowError,
    ZeroDivisionError,
    NotImplementedError,
    # liffile checks some XML invariants with assert (a channel count that does not
    # divide, found by the corruption suite): a broken file, not a bug of ours.
    AssertionError,
)


@dataclass(slots=True)
class _Scene:
    """Everything needed to read one LIF image as a canonical T,C,Z,Y,X(,S) array."""

    info: SceneInfo
    image_index: int
    name: str
    dims: tuple[str, ...]
    sizes: dict[str, int]
    dtype: np.dtype[Any]
    channel_axis: str | None  # native label that is canonical C ("C", "λ", "Λ") or None
    strides: dict[str, int]  # native label -> byte increment (not C, not S)
    channel_offsets: tuple[int, ...]  # byte offset of each stored channel (sample)
    samples: int
    bgr: bool
    block_offset: int
    tile_offsets: tuple[tuple[int, int], ...] | None
    extra_dims: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class LifReader(ImageReader):
    """Leica LIF container: each image with an X axis is a scene, in file order.

    Examples
    --------
    >>> from zstack_analyzer import open_image
    >>> with open_image("sample.lif") as image:  # doctest: +SKIP
    ...     image.metadata(0).size_c
    """

    format_name: ClassVar[str] = "LIF"
    suffixes: ClassVar[tuple[str, ...]] = (".lif",)
    required_packages: ClassVar[tuple[str, ...]] = ("liffile",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Whether ``head`` starts with a LIF header: 0x70 magic, 0x2A mark and an XML text."""
        if len(head) < _HEADER.size + 2:
            return False
        magic, _size, mark, xml_chars = _HEADER.unpack_from(head)
        return (
            magic == _MAGIC
            and mark == _MARK
            and xml_chars > 0
            and head[_HEADER.size : _HEADER.size + 2] == b"<\x00"
        )

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        try:
            import liffile
        except ImportError as exc:  # pragma: no cover - the dev extra installs it
            msg = f"{self.path.name}: reading LIF needs the package 'liffile': pip install liffile"
            raise MissingDependencyError(msg, package="liffile", path=self.path) from exc
        self._file_size = self.path.stat().st_size
        self._xml = self._read_xml_header()
        try:
            lif = liffile.LifFile(self.path)
        except FileNotFoundError:
            raise
        except (*_PARSE_ERRORS, OSError, liffile.LifFileError) as exc:
            msg = f"{self.path.name}: not a readable LIF file ({exc})"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        self._lif = lif
        self.close_on_release(lif.close)
        self._metadata_cache: dict[int, ImageMetadata] = {}
        try:
            self._scenes = self._build_scenes()
        except (CorruptFileError, MetadataError, LimitExceededError):
            # Our own refusals pass as they are: LimitExceededError is also a ValueError,
            # which the next clause would report as an inconsistent header.
            self.close()
            raise
        except _PARSE_ERRORS as exc:
            self.close()
            msg = f"{self.path.name}: the LIF XML header is inconsistent ({exc})"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        except BaseException:
            self.close()
            raise
        if not self._scenes:
            self.close()
            msg = f"{self.path.name}: the LIF file holds no image with an X axis"
            raise CorruptFileError(msg, path=self.path)

    # ------------------------------------------------------------------ opening
    def _read_xml_header(self) -> str:
        """Read and check the XML header before liffile parses it.

        Why: liffile reads as many bytes as the header claims and parses them with
        ElementTree; a bounded read and a refusal of DTDs keep a hostile header from
        costing memory or expanding entities.
        """
        with self.path.open("rb") as fh:
            head = fh.read(_HEADER.size)
            if len(head) < _HEADER.size:
                msg = f"{self.path.name}: LIF header is truncated ({len(head)} bytes)"
                raise CorruptFileError(msg, path=self.path)
            magic, _size, mark, xml_chars = _HEADER.unpack(head)
            if magic != _MAGIC or mark != _MARK:
                msg = f"{self.path.name}: not a LIF file (bad header magic)"
                raise CorruptFileError(msg, path=self.path)
            nbytes = 2 * xml_chars
            if nbytes > self.limits.max_metadata_bytes:
                msg = (
                    f"{self.path.name}: LIF XML header declares {nbytes:,} bytes, over the "
                    f"metadata limit of {self.limits.max_metadata_bytes:,}"
                )
                raise CorruptFileError(msg, path=self.path)
            if _HEADER.size + nbytes > self._file_size:
                msg = (
                    f"{self.path.name}: LIF XML header ({nbytes:,} bytes) ends past the end "
                    f"of the file ({self._file_size:,} bytes); the file is truncated"
                )
                raise CorruptFileError(msg, path=self.path)
            raw = fh.read(nbytes)
        try:
            xml = raw.decode("utf-16-le")
        except UnicodeDecodeError as exc:
            msg = f"{self.path.name}: LIF XML header is not valid UTF-16 ({exc.reason})"
            raise CorruptFileError(msg, path=self.path) from exc
        if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
            msg = f"{self.path.name}: LIF XML header declares a DTD or entities; refused"
            raise CorruptFileError(msg, path=self.path)
        return xml

    def _build_scenes(self) -> list[_Scene]:
        scenes: list[_Scene] = []
        skipped_flim = 0
        for image_index, image in enumerate(self._lif.images):
            if image.is_flim:
                skipped_flim += 1
                continue
            if "X" not in image.sizes:
                continue
            scenes.append(self._build_scene(len(scenes), image_index, image))
        if skipped_flim:
            logger.info("%s: %d FLIM image(s) skipped", self.path.name, skipped_flim)
        self._skipped_flim = skipped_flim
        return scenes

    def _build_scene(self, index: int, image_index: int, image: Any) -> _Scene:
        name = str(image.name)
        label = f"{self.path.name}: image {name!r}"
        sizes = {str(k): int(v) for k, v in image.sizes.items()}
        dims = tuple(sizes)
        try:
            dtype = np.dtype(image.dtype)
        except ValueError as exc:  # e.g. channels of different data types
            msg = f"{label}: unsupported pixel layout ({exc})"
            raise MetadataError(msg, path=self.path) from exc
        warnings: list[str] = []

        xml_dims, channels = _parse_descriptions(image.xml_element)
        strides: dict[str, int] = {}
        for dim in dims:
            if dim in {"C", "S"}:
                continue
            if dim not in xml_dims:
                msg = f"{label}: unsupported dimension layout {''.join(dims)}"
                raise MetadataError(msg, path=self.path)
            strides[dim] = xml_dims[dim]["bytes_inc"]
        if not channels:
            msg = f"{label}: no ChannelDescription in the XML"
            raise CorruptFileError(msg, path=self.path)
        channel_offsets = tuple(ch["bytes_inc"] for ch in channels)
        samples = sizes.get("S", 1)
        n_channel_slots = sizes.get("C", 1) * samples
        if len(channel_offsets) < n_channel_slots:
            msg = f"{label}: {len(channel_offsets)} channel descriptions for {n_channel_slots} channels"
            raise CorruptFileError(msg, path=self.path)
        bgr = (
            samples == 3
            and len(channels) >= 2
            and channels[0]["tag"] == 3  # blue first
            and channels[1]["tag"] == 2
        )

        channel_axis: str | None = "C" if "C" in dims else None
        if channel_axis is None:
            for sweep in ("λ", "Λ"):
                if sweep in dims:
                    channel_axis = sweep
                    break

        try:
            block = image.memory_block
        except (KeyError, IndexError) as exc:
            msg = f"{label}: its data block {exc} is missing; the file is truncated or corrupt"
            raise CorruptFileError(msg, path=self.path) from exc
        if block.offset < 0 or block.offset + block.size > self._file_size:
            msg = (
                f"{label}: its data block ({block.size:,} bytes at {block.offset:,}) ends past "
                f"the end of the file ({self._file_size:,} bytes); the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)
        # liffile keeps only dimensions of two or more elements: a byte increment of 0 would
        # read the same plane at every index of one, a negative one reads before the block.
        if any(s <= 0 for s in strides.values()):
            msg = f"{label}: byte increments {strides} are not all positive; the file is corrupt"
            raise CorruptFileError(msg, path=self.path)
        itemsize = dtype.itemsize
        last_byte = sum((sizes[d] - 1) * s for d, s in strides.items())
        last_byte += max(channel_offsets[:n_channel_slots]) + itemsize
        if last_byte > block.size:
            msg = (
                f"{label}: its dimensions need {last_byte:,} bytes but its data block holds "
                f"{block.size:,}; the file is corrupt"
            )
            raise CorruptFileError(msg, path=self.path)

        tile_offsets: tuple[tuple[int, int], ...] | None = None
        extra: dict[str, int] = {}
        size_y = sizes.get("Y", 1)
        size_x = sizes["X"]
        for dim in dims:
            if dim in {"T", "C", "Z", "Y", "X", "S"} or dim == channel_axis:
                continue
            if dim == "M":
                tile_offsets = self._tile_offsets(image, sizes, warnings, label)
                if tile_offsets is not None:
                    size_y = max(oy for oy, _ in tile_offsets) + sizes.get("Y", 1)
                    size_x = max(ox for _, ox in tile_offsets) + sizes["X"]
                    continue
            extra[dim] = sizes[dim]
            warnings.append(f"dimension {dim}={sizes[dim]} is read at index 0")
        if "Y" not in dims:
            warnings.append("XZ scan (no Y dimension): Y=1, Z=lines, Y voxel size unknown")

        info = SceneInfo(
            index=index,
            name=name,
            size_t=sizes.get("T", 1),
            size_c=sizes.get(channel_axis, 1) if channel_axis else 1,
            size_z=sizes.get("Z", 1),
            size_y=size_y,
            size_x=size_x,
            samples_per_pixel=samples,
            dtype=dtype.newbyteorder("=").name,
            extra_dims=extra,
        )
        self.check_shape(info.shape, dtype)
        return _Scene(
            info=info,
            image_index=image_index,
            name=name,
            dims=dims,
            sizes=sizes,
            dtype=dtype,
            channel_axis=channel_axis,
            strides=strides,
            channel_offsets=channel_offsets,
            samples=samples,
            bgr=bgr,
            block_offset=int(block.offset),
            tile_offsets=tile_offsets,
            extra_dims=extra,
            warnings=warnings,
        )

    def _tile_offsets(
        self, image: Any, sizes: dict[str, int], warnings: list[str], label: str
    ) -> tuple[tuple[int, int], ...] | None:
        """Pixel offsets (y, x) of each tile from its stage position, or None (M kept as an axis)."""
        scan = image.tilescan
        if scan is None or len(scan) != sizes["M"]:
            warnings.append("tile scan without usable TileScanInfo: tiles read at index 0")
            return None
        steps = {}
        for axis in ("X", "Y"):
            coords = image.coords.get(axis)
            if coords is None or len(coords) < 2:
                warnings.append(f"tile scan without a {axis} pixel size: tiles read at index 0")
                return None
            cc = np.asarray(coords, dtype=np.float64)
            steps[axis] = abs(float((cc[-1] - cc[0]) / (len(cc) - 1)))
            if steps[axis] == 0:
                return None
        pos_x = np.asarray(scan.tiles["pos_x"], dtype=np.float64)
        pos_y = np.asarray(scan.tiles["pos_y"], dtype=np.float64)
        if scan.swap_xy:
            pos_x, pos_y = pos_y, pos_x
        if scan.flip_x:
            pos_x = -pos_x
        if scan.flip_y:
            pos_y = -pos_y
        if scan.swap_xy or scan.flip_x or scan.flip_y:
            warnings.append(
                "tile scan with FlipX/FlipY/SwapXY: placement follows the flags, "
                "not verified against LAS X"
            )
        off_x = np.rint((pos_x - pos_x.min()) / steps["X"]).astype(np.int64)
        off_y = np.rint((pos_y - pos_y.min()) / steps["Y"]).astype(np.int64)
        limit = self.limits.max_dimension
        if off_x.max() >= limit or off_y.max() >= limit:
            msg = f"{label}: tile stage positions span more than {limit:,} pixels"
            raise CorruptFileError(msg, path=self.path)
        offsets = tuple((int(y), int(x)) for y, x in zip(off_y, off_x, strict=True))
        warnings.append(
            f"tile scan of {len(offsets)} tiles stitched by stage position "
            f"(offsets y,x px {list(offsets)})"
        )
        return offsets

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """Every image with an X axis, in file order."""
        return [s.info for s in self._scenes]

    def _scene(self, scene: int) -> _Scene:
        if not 0 <= scene < len(self._scenes):
            msg = f"{self.path.name}: scene {scene} does not exist; it has {len(self._scenes)}"
            raise SceneNotFoundError(msg, path=self.path)
        return self._scenes[scene]

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata of one LIF image, from its XML description."""
        entry = self._scene(scene)
        with self._lock:
            cached = self._metadata_cache.get(scene)
            if cached is None:
                image = self._lif.images[entry.image_index]
                try:
                    cached = self._build_metadata(entry, image)
                except _PARSE_ERRORS as exc:
                    msg = f"{self.path.name}: image {entry.name!r} has unreadable metadata ({exc})"
                    raise MetadataError(msg, path=self.path, detail=repr(exc)) from exc
                self._metadata_cache[scene] = cached
        return cached.model_copy(deep=True)

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy canonical array, one chunk per (stitched) plane."""
        entry = self._scene(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; LIF images have 1"
            raise SceneNotFoundError(msg, path=self.path)
        read = functools.partial(self._read_canonical_plane, scene)
        return planes_to_dask(read, entry.info.shape, entry.info.dtype, name=f"lif-{scene}")

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X(,S) plane, read directly (no dask graph)."""
        self.check_plane_index(scene, t, c, z)
        return self._read_canonical_plane(scene, t, c, z)

    def raw_metadata(self) -> Mapping[str, Any]:
        """The LIF XML header in full, with liffile's view of each image."""
        images = [
            {
                "name": s.name,
                "dims": "".join(s.dims),
                "shape": [s.sizes[d] for d in s.dims],
                "dtype": s.dtype.name,
            }
            for s in self._scenes
        ]
        return {"xml_header": self._xml, "images": images}

    def close(self) -> None:
        """Close the file; waits for a read in progress."""
        with self._lock:
            super().close()

    # ------------------------------------------------------------------ pixels
    def _read_canonical_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        entry = self._scene(scene)
        if entry.tile_offsets is None:
            return self._read_stored_plane(entry, t, c, z, 0)
        info = entry.info
        canvas_shape: tuple[int, ...] = (info.size_y, info.size_x)
        if entry.samples > 1:
            canvas_shape = (*canvas_shape, entry.samples)
        canvas = np.zeros(canvas_shape, dtype=info.dtype)
        tile_y = entry.sizes.get("Y", 1)
        tile_x = entry.sizes["X"]
        # Tiles in file order, a later tile on top (convention lif_tilescan).
        for m, (oy, ox) in enumerate(entry.tile_offsets):
            canvas[oy : oy + tile_y, ox : ox + tile_x] = self._read_stored_plane(entry, t, c, z, m)
        return canvas

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """Any row: LIF memory blocks are uncompressed, so regions are read by offset."""
        entry = self._scene(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; LIF images have 1"
            raise SceneNotFoundError(msg, path=self.path)
        return (1, entry.info.size_x)

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
        """A region of one (stitched) plane, read from the stored rows it covers only."""
        self.region_grid(scene, level)
        self.check_plane_index(scene, t, c, z)
        entry = self._scene(scene)
        info = entry.info
        y0, y1 = max(0, rows[0]), min(info.size_y, rows[1])
        x0, x1 = max(0, cols[0]), min(info.size_x, cols[1])
        tail = (entry.samples,) if entry.samples > 1 else ()
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0), *tail), dtype=info.dtype)
        if out.size == 0:
            return out
        if entry.tile_offsets is None:
            out[...] = self._read_stored_plane(entry, t, c, z, 0, window=(y0, y1, x0, x1))
            return out
        tile_y = entry.sizes.get("Y", 1)
        tile_x = entry.sizes["X"]
        for m, (oy, ox) in enumerate(entry.tile_offsets):  # file order: a later tile on top
            top, bottom = max(y0, oy), min(y1, oy + tile_y)
            left, right = max(x0, ox), min(x1, ox + tile_x)
            if bottom <= top or right <= left:
                continue
            window = (top - oy, bottom - oy, left - ox, right - ox)
            part = self._read_stored_plane(entry, t, c, z, m, window=window)
            out[top - y0 : bottom - y0, left - x0 : right - x0] = part
        return out

    def _read_stored_plane(
        self,
        entry: _Scene,
        t: int,
        c: int,
        z: int,
        m: int,
        *,
        window: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Read one stored Y,X(,S) plane (or its rows y0:y1, columns x0:x1 given as ``window``)."""
        offset = entry.block_offset
        for dim, stride in entry.strides.items():
            if dim in {"Y", "X"}:
                continue
            if dim == "T":
                i = t
            elif dim == "Z":
                i = z
            elif dim == entry.channel_axis:
                i = c
            elif dim == "M" and entry.tile_offsets is not None:
                i = m
            else:
                i = 0
            offset += i * stride
        channel = (c if entry.channel_axis == "C" else 0) * entry.samples
        offset += entry.channel_offsets[channel]
        samples = entry.samples
        sample_stride = (
            entry.channel_offsets[channel + 1] - entry.channel_offsets[channel]
            if samples > 1
            else entry.dtype.itemsize
        )
        ny = entry.sizes.get("Y", 1)
        sy = entry.strides.get("Y", 0)
        nx = entry.sizes["X"]
        sx = entry.strides["X"]
        if window is not None:
            y0, y1, x0, x1 = window
            offset += y0 * sy + x0 * sx
            ny, nx = y1 - y0, x1 - x0
        plane = self._read_strided(offset, (ny, nx, samples), (sy, sx, sample_stride), entry.dtype)
        if entry.bgr:
            plane = plane[..., ::-1]
        if samples == 1:
            plane = plane[..., 0]
        native = entry.dtype.newbyteorder("=")
        return np.ascontiguousarray(plane, dtype=native)

    def _read_strided(
        self,
        offset: int,
        shape: tuple[int, int, int],
        strides: tuple[int, int, int],
        dtype: np.dtype[Any],
    ) -> np.ndarray:
        """Read an (ny, nx, ns) array whose elements sit at the given byte strides.

        One read when the rows lie close together (a normal XY plane), otherwise one
        read per row (an ``xzy`` plane gathers rows from Y frames): memory stays
        within a few planes either way.
        """
        ny, nx, ns = shape
        sy, sx, ss = strides
        itemsize = dtype.itemsize
        row_span = (nx - 1) * sx + (ns - 1) * ss + itemsize
        plane_bytes = ny * nx * ns * itemsize
        total_span = (ny - 1) * sy + row_span
        with self._lock:
            self.check_open()
            fh = self._lif.filehandle
            if total_span <= 4 * plane_bytes + 4096:
                fh.seek(offset)
                buffer = fh.read(total_span)
                self._check_read(buffer, total_span, offset)
                return np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides).copy()
            out = np.empty(shape, dtype=dtype)
            for y in range(ny):
                fh.seek(offset + y * sy)
                row = fh.read(row_span)
                self._check_read(row, row_span, offset + y * sy)
                out[y] = np.ndarray((nx, ns), dtype=dtype, buffer=row, strides=(sx, ss))
            return out

    def _check_read(self, buffer: bytes, expected: int, offset: int) -> None:
        if len(buffer) != expected:
            msg = (
                f"{self.path.name}: read {len(buffer):,} of {expected:,} bytes at offset "
                f"{offset:,}; the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)

    # ------------------------------------------------------------------ metadata
    def _build_metadata(self, entry: _Scene, image: Any) -> ImageMetadata:
        info = entry.info
        warnings = list(entry.warnings)
        provenance: dict[str, str] = {}
        coords = {str(k): np.asarray(v) for k, v in image.coords.items()}
        xml_dims, channels_xml = _parse_descriptions(image.xml_element)

        physical = PhysicalSize()
        for axis in ("X", "Y", "Z"):
            step = _step(coords, xml_dims, axis, "m")
            if step is None:
                if axis in entry.dims and xml_dims.get(axis, {}).get("unit") not in (None, "m"):
                    warnings.append(
                        f"{axis} dimension unit {xml_dims[axis]['unit']!r} is not metres"
                    )
                continue
            value = step * 1e6
            if value == 0:
                warnings.append(f"{axis} step is 0: no calibration")
                continue
            if axis == "Z" and value < 0:
                warnings.append(f"negative Z step {value:.9g} µm kept as found")
            setattr(physical, f"{axis.lower()}_um", value)
            provenance[f"physical_size.{axis.lower()}_um"] = (
                "LIF DimensionDescription Length/(NumberOfElements-1)"
            )

        time_interval = None
        step_t = _step(coords, xml_dims, "T", "s")
        if step_t is not None and step_t > 0:
            time_interval = step_t
            provenance["time_interval_s"] = "LIF DimensionDescription T Length/(NumberOfElements-1)"

        setting = _hardware_setting(image.xml_element)
        channels = self._channels(
            entry, coords, channels_xml, image.xml_element, setting, provenance
        )

        objective = None
        microscope = None
        if setting is not None:
            objective = _objective(setting)
            if objective is not None:
                provenance["objective"] = "LIF HardwareSetting ATL*SettingDefinition"
        hardware = image.xml_element.find("./Data/Image/Attachment[@Name='HardwareSetting']")
        if hardware is None:
            # No hardware record: any attachment still names the writing application.
            hardware = image.xml_element.find("./Data/Image/Attachment[@Application]")
        microscope = _microscope(hardware, setting)
        if microscope is not None:
            provenance["microscope"] = "LIF HardwareSetting attachment"

        acquired_at = None
        stamps = image.timestamps
        if stamps is not None and len(stamps):
            first = np.datetime64(stamps[0], "ms").astype(np.int64)
            acquired_at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(first))
            provenance["acquired_at"] = "LIF TimeStampList, first frame (Windows FILETIME, UTC)"
        else:
            experiment = self._lif.datetime
            if experiment is not None:
                acquired_at = experiment
                provenance["acquired_at"] = "LIF Experiment TimeStamp (Windows FILETIME, UTC)"
        if self._skipped_flim:
            warnings.append(f"{self._skipped_flim} FLIM image(s) in this file are not read")

        provenance.setdefault("channels[].name", "LIF stores no channel names")
        vendor = {
            "image_path": str(image.path),
            "native_dims": "".join(entry.dims),
            "native_shape": [entry.sizes[d] for d in entry.dims],
            "channel_axis": entry.channel_axis,
            "dimensions": dict(xml_dims),
            "lut_names": [ch["lut"] for ch in channels_xml],
            "filter_cubes": _filter_cubes(image.xml_element, info.size_c),
            "tile_offsets_yx": [list(o) for o in entry.tile_offsets]
            if entry.tile_offsets
            else None,
            "scan_mode": setting.get("ScanMode") if setting is not None else None,
            "file_version": int(self._lif.version),
        }
        return self.scene_metadata(
            info,
            significant_bits=_significant_bits(channels_xml, entry.dtype),
            physical_size=physical,
            time_interval_s=time_interval,
            channels=channels,
            objective=objective,
            microscope=microscope,
            acquired_at=acquired_at,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=capped_vendor(vendor, drop_first=("dimensions",), max_string=2000),
        )

    def _channels(
        self,
        entry: _Scene,
        coords: dict[str, np.ndarray],
        channels_xml: list[dict[str, Any]],
        element: Element,
        setting: dict[str, str] | None,
        provenance: dict[str, str],
    ) -> list[ChannelInfo]:
        size_c = entry.info.size_c
        emission: list[float | None] = [None] * size_c
        excitation: list[float | None] = [None] * size_c
        colours: list[str | None] = [None] * size_c
        axis = entry.channel_axis
        if axis in {"λ", "Λ"}:
            waves = np.asarray(coords.get(axis, []), dtype=np.float64) * 1e9
            if len(waves) == size_c:
                target = emission if axis == "λ" else excitation
                for i, w in enumerate(waves):
                    target[i] = round(float(w), 6)
                key = "emission_nm" if axis == "λ" else "excitation_nm"
                provenance[f"channels[].{key}"] = f"LIF {axis} sweep coordinates"
            colour = _lut_colour(channels_xml[0]["lut"]) if channels_xml else None
            colours = [colour] * size_c
        else:
            for i in range(size_c):
                slot = i * entry.samples
                if slot < len(channels_xml) and entry.samples == 1:
                    colours[i] = _lut_colour(channels_xml[slot]["lut"])
            bands = _detection_bands(element)
            if len(bands) == size_c:
                for i, (low, high) in enumerate(bands):
                    emission[i] = round((low + high) / 2 * 1e9, 3)
                provenance["channels[].emission_nm"] = (
                    "LIF ChannelAttachment Band: centre of the detector band (derived from "
                    "the detection range, not a stated emission peak)"
                )
        if axis != "Λ" and setting is not None:
            lines = setting.get("_active_laser_lines")
            if lines and len(lines.split(",")) == 1:
                excitation = [float(lines)] * size_c
                provenance["channels[].excitation_nm"] = (
                    "LIF LaserLineSetting (the only active laser line)"
                )
        if any(colours):
            provenance["channels[].color"] = "LIF ChannelDescription LUTName"
        dyes = _detector_dyes(element, size_c) if axis not in {"λ", "Λ"} else None
        if dyes is not None:
            provenance["channels[].fluorophore"] = (
                "LIF ATLConfocalSettingDefinition Spectro/MultiBand/@DyeName of each active detector"
            )
        widefield = _widefield_channels(element, size_c)
        exposures: list[float | None] = [None] * size_c
        illumination: list[str | None] = [None] * size_c
        contrast: list[str | None] = [None] * size_c
        if widefield is not None:
            infos, source = widefield
            exposures = [_exposure_ms(info) for info in infos]
            methods = [(info.attrib.get("ContrastingMethodName") or "").strip() for info in infos]
            illumination = [_ILLUMINATION.get(m.upper()) for m in methods]
            contrast = [_CONTRAST.get(m.upper()) for m in methods]
            if any(e is not None for e in exposures):
                provenance["channels[].exposure_ms"] = f"{source}/@ExposureTime"
            if any(illumination):
                provenance["channels[].illumination"] = f"{source}/@ContrastingMethodName"
                provenance["channels[].contrast_method"] = f"{source}/@ContrastingMethodName"
        return [
            ChannelInfo(
                index=i,
                name=None,
                emission_nm=emission[i],
                excitation_nm=excitation[i],
                color=colours[i],
                exposure_ms=exposures[i],
                illumination=illumination[i],
                contrast_method=contrast[i],
                fluorophore=dyes[i] if dyes is not None else None,
            )
            for i in range(size_c)
        ]


# ---------------------------------------------------------------------- helpers
def _parse_descriptions(element: Element) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """DimensionDescription (label -> attributes) and ChannelDescription list, liffile's way."""
    dims: dict[str, dict[str, Any]] = {}
    for i, dim in enumerate(
        element.findall("./Data/Image/ImageDescription/Dimensions/DimensionDescription")
    ):
        label = _DIMENSION_ID.get(int(dim.attrib["DimID"]), "?")
        if label in dims:
            label = f"{label}{i}"  # duplicate labels are renamed like liffile does
        dims[label] = {
            "dim_id": int(dim.attrib["DimID"]),
            "number_elements": int(dim.attrib["NumberOfElements"]),
            "origin": float(dim.attrib.get("Origin", "0")),
            "length": float(dim.attrib.get("Length", "0")),
            "unit": dim.attrib.get("Unit", ""),
            "bytes_inc": int(dim.attrib["BytesInc"]),
        }
    channels: list[dict[str, Any]] = [
        {
            "bytes_inc": int(ch.attrib["BytesInc"]),
            "tag": int(ch.attrib.get("ChannelTag", "0")),
            "resolution": int(ch.attrib.get("Resolution", "0")),
            "lut": ch.attrib.get("LUTName", ""),
        }
        for ch in element.findall("./Data/Image/ImageDescription/Channels/ChannelDescription")
    ]
    channels.sort(key=lambda ch: ch["bytes_inc"])
    return dims, channels


def _step(
    coords: dict[str, np.ndarray], xml_dims: dict[str, dict[str, Any]], axis: str, unit: str
) -> float | None:
    """Coordinate step of ``axis`` in ``unit`` from liffile's coordinates, or None."""
    cc = coords.get(axis)
    if cc is None or len(cc) < 2 or xml_dims.get(axis, {}).get("unit") != unit:
        return None
    cc = np.asarray(cc, dtype=np.float64)
    step = float((cc[-1] - cc[0]) / (len(cc) - 1))
    return step if math.isfinite(step) else None


def _significant_bits(channels: list[dict[str, Any]], dtype: np.dtype[Any]) -> int | None:
    bits = {ch["resolution"] for ch in channels if ch["resolution"]}
    if len(bits) == 1:
        value = bits.pop()
        return int(value) if 0 < value <= dtype.itemsize * 8 else None
    return None


def _lut_colour(name: str) -> str | None:
    return _LUT_COLOURS.get(name.strip().lower())


def _hardware_setting(element: Element) -> dict[str, str] | None:
    """Attributes of the image's first confocal or camera setting, plus its active laser lines."""
    hardware = element.find("./Data/Image/Attachment[@Name='HardwareSetting']")
    if hardware is None:
        return None
    setting = None
    for tag in ("ATLConfocalSettingDefinition", "ATLCameraSettingDefinition"):
        setting = next(hardware.iter(tag), None)
        if setting is not None:
            break
    if setting is None:
        return None
    attrs = dict(setting.attrib)
    lines = set()
    for laser in hardware.iter("LaserLineSetting"):
        try:
            intensity = float(laser.attrib.get("IntensityDev", "0"))
            wavelength = float(laser.attrib.get("LaserLine", "0"))
        except ValueError:
            continue
        if intensity > 0 and wavelength > 0:
            lines.add(wavelength)
    if lines:
        attrs["_active_laser_lines"] = ",".join(f"{w:g}" for w in sorted(lines))
    return attrs


def _float(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) and result > 0 else None


def _objective(setting: dict[str, str]) -> ObjectiveInfo | None:
    name = (setting.get("ObjectiveName") or "").strip() or None
    magnification = _float(setting.get("Magnification"))
    aperture = _float(setting.get("NumericalAperture"))
    code = (setting.get("Immersion") or "").strip()
    immersion = _IMMERSION.get(code.upper(), code or None)
    if name is None and magnification is None and aperture is None:
        return None
    return ObjectiveInfo(
        name=" ".join(name.split()) if name else None,
        magnification=magnification,
        numerical_aperture=aperture,
        immersion=immersion,
    )


def _microscope(hardware: Element | None, setting: dict[str, str] | None) -> MicroscopeInfo | None:
    if hardware is None:
        return None
    # "LAS X 3.5.7.23225" names the acquiring version; older files and some attachments
    # carry only the application family ("LAS AF"), which is still the writing software.
    software_text = (
        hardware.attrib.get("Software") or hardware.attrib.get("Application") or ""
    ).strip()
    software = version = None
    if software_text:
        parts = software_text.rsplit(" ", 1)
        if len(parts) == 2 and parts[1][:1].isdigit():
            software, version = parts[0].strip() or None, parts[1]
        else:
            software = software_text
    model = (hardware.attrib.get("SystemTypeName") or "").strip() or None
    serial = None
    if setting is not None:
        stand = (setting.get("MicroscopeModel") or "").strip()
        if stand:
            model = f"{model} ({stand})" if model else stand
        serial = (setting.get("SystemSerialNumber") or "").strip() or None
    return MicroscopeInfo(
        manufacturer="Leica",
        model=model,
        serial_number=serial,
        software=software,
        software_version=version,
    )


def _detection_bands(element: Element) -> list[tuple[float, float]]:
    """(low, high) detection band in metres per channel, from the ChannelAttachment."""
    bands = []
    attachment = element.find("./Data/Image/Attachment[@Name='ChannelAttachment']")
    if attachment is None:
        return []
    for band in attachment.findall("./Band"):
        metres = []
        for quantity in band.findall("./Quantity"):
            if quantity.attrib.get("Unit") == "m":
                value = _float(quantity.attrib.get("Value"))
                if value is not None:
                    metres.append(value)
        if len(metres) < 2:
            return []
        bands.append((metres[0], metres[1]))
    return bands


_TIME_UNITS_S = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def _detector_dyes(element: Element, size_c: int) -> list[str | None] | None:
    """Per channel, the dye the active detector's spectral band was set for (``DyeName``).

    Why this way: a confocal image's channels are its active detectors, in order (each
    sequential setting's, else the HardwareSetting's own confocal setting's); a
    detector's band is the ``Spectro/MultiBand`` with its ``Channel`` number, whose
    ``DyeName`` ("Leica/FITC") names the dye the band was chosen for. Bio-Formats
    reads the same attribute (as the channel name; here it is the fluorophore, since
    LIF channels have no names of their own). None when the active detectors do not
    match the channels one to one, or no band names a dye.
    """
    hardware = element.find("./Data/Image/Attachment[@Name='HardwareSetting']")
    if hardware is None:
        return None
    settings = list(hardware.iterfind(".//LDM_Block_Sequential_List/ATLConfocalSettingDefinition"))
    if not settings:
        settings = hardware.findall("./ATLConfocalSettingDefinition")[:1]
    dyes: list[str | None] = []
    for setting in settings:
        bands = {
            band.attrib.get("Channel"): (band.attrib.get("DyeName") or "").strip() or None
            for band in setting.iter("MultiBand")
        }
        for detector in setting.iter("Detector"):
            if detector.attrib.get("IsActive") == "1":
                dyes.append(bands.get(detector.attrib.get("Channel")))
    if len(dyes) != size_c or not any(dyes):
        return None
    return dyes


#: LAS X ContrastingMethodName -> OME IlluminationType / ContrastMethod.
_ILLUMINATION = {
    "FLUO": "Epifluorescence",
    "BF": "Transmitted",
    "PH": "Transmitted",
    "DIC": "Transmitted",
    "POL": "Transmitted",
    "DF": "Transmitted",
}
_CONTRAST = {
    "FLUO": "Fluorescence",
    "BF": "Brightfield",
    "PH": "Phase",
    "DIC": "DIC",
    "POL": "PolarizedLight",
    "DF": "Darkfield",
}


def _is_autofocus(node: Element) -> bool:
    text = f"{node.tag} {node.attrib.get('Name', '')}".lower()
    return "autofocus" in text or "auto focus" in text


def _widefield_channels(element: Element, size_c: int) -> tuple[list[Element], str] | None:
    """The image's own ``WideFieldChannelInfo``, one per channel, and where they were found.

    Why not every ``WideFieldChannelInfo`` of the image: LAS X also records the
    autofocus camera setting, and a sequential acquisition records both a main
    setting and one setting per channel. As Bio-Formats does, the per-channel
    settings of ``LDM_Block_Sequential_List`` come first (the first info of each),
    else the infos of the HardwareSetting's own camera setting; only without a
    HardwareSetting camera setting are the remaining infos taken, never those under
    an autofocus element. A count that still differs from the channels gives none.
    """
    hardware = element.find("./Data/Image/Attachment[@Name='HardwareSetting']")
    candidates: list[tuple[list[Element], str]] = []
    if hardware is not None:
        sequential = [
            info
            for setting in hardware.iterfind(
                ".//LDM_Block_Sequential_List/ATLCameraSettingDefinition"
            )
            if (info := next(setting.iter("WideFieldChannelInfo"), None)) is not None
        ]
        candidates.append(
            (sequential, "LIF HardwareSetting LDM_Block_Sequential_List WideFieldChannelInfo")
        )
        main = hardware.find("./ATLCameraSettingDefinition")
        if main is not None:
            infos = [
                info
                for configurator in main.findall("./WideFieldChannelConfigurator")
                for info in configurator.iter("WideFieldChannelInfo")
            ]
            candidates.append((infos, "LIF HardwareSetting WideFieldChannelInfo"))
    if not any(infos for infos, _ in candidates):
        loose: list[Element] = []
        _collect_infos(element, loose)
        candidates.append((loose, "LIF WideFieldChannelInfo"))
    for infos, source in candidates:
        if infos:
            return (infos, source) if len(infos) == size_c else None
    return None


def _collect_infos(node: Element, out: list[Element]) -> None:
    """Every ``WideFieldChannelInfo`` below ``node`` outside autofocus elements, in order."""
    for child in node:
        if _is_autofocus(child):
            continue
        if child.tag == "WideFieldChannelInfo":
            out.append(child)
        _collect_infos(child, out)


def _exposure_ms(info: Element) -> float | None:
    """``ExposureTime`` of one ``WideFieldChannelInfo`` in ms.

    LAS X writes it in seconds ("0.05"), sometimes with a unit ("50 ms").
    """
    parts = (info.attrib.get("ExposureTime") or "").strip().split()
    factor = _TIME_UNITS_S.get(parts[1] if len(parts) > 1 else "")
    number = _float(parts[0]) if parts else None
    return None if number is None or factor is None else number * factor * 1000.0


def _filter_cubes(element: Element, size_c: int) -> list[str | None] | None:
    """Per channel filter cube (``FluoCubeName``, or ``FilterCubeName``), None when not stated."""
    widefield = _widefield_channels(element, size_c)
    if widefield is None:
        return None
    cubes = [
        (info.attrib.get("FluoCubeName") or info.attrib.get("FilterCubeName") or "").strip() or None
        for info in widefield[0]
    ]
    return cubes if any(cubes) else None
