"""DICOM: VL whole-slide microscopy (tiled), other microscopy and plain single/multi-frame images.

Why one reader for all modalities: a DICOM file is recognised by its ``DICM``
preamble whatever it holds, and refusing an MR slice as "unsupported" would be
wrong (it is a readable image); non-microscopy modalities open with a warning
that says so. Layout rules:

- a VL Whole Slide image (``TotalPixelMatrixRows/Columns``) is one plane per
  focal plane (Z) and optical path (C), assembled from its frames (tiles):
  TILED_FULL in the standard's order (columns, rows, focal planes, optical
  paths), TILED_SPARSE by each frame's Plane Position (Slide); tiles are read
  one by one, lazily, and pixels no tile covers are 0;
- other multi-frame images are Z (T when the frame increment is a time);
- the levels of one slide are the files beside it with the same Series
  Instance UID and image type VOLUME, largest first; LABEL, OVERVIEW and
  THUMBNAIL files of the series are associated images, not scenes;
- Pixel Spacing (mm, row then column) becomes µm; SliceThickness is not a Z
  step, SpacingBetweenSlices is (kept as stated even for one slice).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import abc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, ZstackError
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._base import ImageReader
from zstack_analyzer.readers._dicom_frames import DicomFrames, FrameGeometry, read_header
from zstack_analyzer.vendor import json_safe

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits

__all__ = ["DicomReader"]

logger = logging.getLogger(__name__)

_WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: Sibling files inspected for the other levels of a slide (headers only).
MAX_SIBLINGS = 256
_token_counter = itertools.count()
_TIME_POINTERS = {0x00181063, 0x00181065}  # FrameTime, FrameTimeVector


@dataclass
class _Level:
    """One resolution of the slide: its file's frames and how tiles map to them."""

    frames: DicomFrames
    size_y: int
    size_x: int
    tiles_y: int
    tiles_x: int
    frame_of: Any  # (t, c, z, row, col) -> frame index or None

    @property
    def tile(self) -> tuple[int, int]:
        """Rows and columns of one tile (a frame)."""
        return self.frames.geometry.rows, self.frames.geometry.columns


class DicomReader(ImageReader):
    """DICOM Part 10 files: whole-slide pyramids, multi-frame and single images.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("slide.dcm") as image:  # doctest: +SKIP
    ...     image.level_count(0), image.metadata().physical_size.x_um
    """

    format_name: ClassVar[str] = "DICOM"
    suffixes: ClassVar[tuple[str, ...]] = (".dcm", ".dicom")
    required_packages: ClassVar[tuple[str, ...]] = ("pydicom", "imagecodecs")

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """A DICOM Part 10 file: 128-byte preamble, then ``DICM``."""
        return len(head) >= 132 and head[128:132] == b"DICM"

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        self._metadata_cache: ImageMetadata | None = None
        self._levels: list[_Level] = []
        try:
            first = DicomFrames(self.path, check=self._check_frame)
            self.close_on_release(first.close)
            self.ds = first.ds
            self._warnings: list[str] = []
            self._associated: list[dict[str, Any]] = []
            self._info, base = self._plan(first)
            self._levels = self._pyramid(base)
            self.check_shape(self._info.shape, self._levels[0].frames.geometry.dtype)
        except ZstackError:
            self.close()
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, OSError) as exc:
            self.close()
            msg = f"{self.path.name}: invalid DICOM structure: {exc}"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc

    def _check_frame(self, geometry: FrameGeometry) -> None:
        # frames as a canonical T,C,Z,Y,X(,S) stack: each frame a plane, the count as planes
        self.check_shape((1, 1, geometry.count, *geometry.shape), geometry.dtype)

    # ------------------------------------------------------------------ layout
    def _plan(self, frames: DicomFrames) -> tuple[SceneInfo, _Level]:
        ds = frames.ds
        g = frames.geometry
        spp = g.samples
        if "TotalPixelMatrixRows" in ds and "TotalPixelMatrixColumns" in ds:
            level = self._tiled_level(frames)
            size_c = int(ds.get("NumberOfOpticalPaths", 1) or 1)
            size_z = int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1)
            size_t = 1
        else:
            size_t = size_z = 1
            # One tag or several: pydicom gives several as a MultiValue, not a list.
            pointer = ds.get("FrameIncrementPointer")
            several = isinstance(pointer, abc.Sequence) and not isinstance(pointer, str)
            pointers = (
                {int(p) for p in (pointer if several else [pointer])}
                if pointer is not None
                else set()
            )
            if g.count > 1 and pointers & _TIME_POINTERS:
                size_t = g.count
            else:
                size_z = g.count
            size_c = 1

            def frame_of(t: int, c: int, z: int, row: int, col: int) -> int:
                return t + z

            level = _Level(frames, g.rows, g.columns, 1, 1, frame_of)
        info = SceneInfo(
            index=0,
            name=_text(ds.get("SeriesDescription")) or None,
            size_t=size_t,
            size_c=size_c,
            size_z=size_z,
            size_y=level.size_y,
            size_x=level.size_x,
            samples_per_pixel=spp,
            dtype=g.dtype.name,
        )
        return info, level

    def _tiled_level(self, frames: DicomFrames) -> _Level:
        # Messages name frames.path: a sibling level's faults are its own, not the opened file's.
        ds = frames.ds
        g = frames.geometry
        size_y, size_x = int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns)
        size_c = int(ds.get("NumberOfOpticalPaths", 1) or 1)
        size_z = int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1)
        self.check_shape((1, size_c, size_z, size_y, size_x, g.samples), g.dtype)
        tiles_y, tiles_x = -(-size_y // g.rows), -(-size_x // g.columns)
        organisation = str(ds.get("DimensionOrganizationType", "") or "").upper()
        if organisation == "TILED_FULL":
            expected = tiles_x * tiles_y * size_z * size_c
            if g.count < expected:
                msg = (
                    f"{frames.path.name}: TILED_FULL needs {expected} frames "
                    f"({tiles_x}x{tiles_y} tiles x {size_z} focal planes x {size_c} optical paths), "
                    f"the file has {g.count}"
                )
                raise CorruptFileError(msg, path=frames.path)

            def frame_of(t: int, c: int, z: int, row: int, col: int) -> int:
                return ((c * size_z + z) * tiles_y + row) * tiles_x + col

            return _Level(frames, size_y, size_x, tiles_y, tiles_x, frame_of)
        table = self._sparse_table(frames, size_c, size_z, tiles_y, tiles_x)
        return _Level(
            frames,
            size_y,
            size_x,
            tiles_y,
            tiles_x,
            lambda t, c, z, row, col: table.get((c, z, row, col)),
        )

    def _sparse_table(
        self, frames: DicomFrames, size_c: int, size_z: int, tiles_y: int, tiles_x: int
    ) -> dict[tuple[int, int, int, int], int]:
        """TILED_SPARSE: each frame's tile from its Plane Position (Slide) (1-based pixels)."""
        ds = frames.ds
        g = frames.geometry
        groups = ds.get("PerFrameFunctionalGroupsSequence")
        if groups is None or len(groups) != g.count:
            msg = f"{frames.path.name}: tiled DICOM without TILED_FULL nor a position for each of its {g.count} frames"
            raise CorruptFileError(msg, path=frames.path)
        z_values: list[float] = []
        paths: list[str] = []
        positions = []
        for item in groups:
            plane = item.PlanePositionSlideSequence[0]
            column = int(plane.ColumnPositionInTotalImagePixelMatrix) - 1
            row = int(plane.RowPositionInTotalImagePixelMatrix) - 1
            z = float(plane.get("ZOffsetInSlideCoordinateSystem", 0) or 0)
            ident = item.get("OpticalPathIdentificationSequence")
            path_id = str(ident[0].OpticalPathIdentifier) if ident else ""
            positions.append((path_id, z, row, column))
            if z not in z_values:
                z_values.append(z)
            if path_id not in paths:
                paths.append(path_id)
        z_values.sort()
        if len(z_values) > size_z or len(paths) > size_c:
            msg = f"{frames.path.name}: frames lie in {len(z_values)} focal planes and {len(paths)} optical paths, more than declared"
            raise CorruptFileError(msg, path=frames.path)
        table = {}
        for index, (path_id, z, row, column) in enumerate(positions):
            if row % g.rows or column % g.columns or row < 0 or column < 0:
                msg = f"{frames.path.name}: frame {index} at ({row + 1}, {column + 1}) is off the tile grid"
                raise CorruptFileError(msg, path=frames.path)
            key = (paths.index(path_id), z_values.index(z), row // g.rows, column // g.columns)
            if key[2] >= tiles_y or key[3] >= tiles_x:
                msg = f"{frames.path.name}: frame {index} lies outside the total pixel matrix"
                raise CorruptFileError(msg, path=frames.path)
            table[key] = index
        if len(table) < tiles_x * tiles_y * size_z * size_c:
            self._warnings.append("TILED_SPARSE: some tiles are absent; their pixels read as 0")
        return table

    def _pyramid(self, base: _Level) -> list[_Level]:
        """The opened file plus the other VOLUME files of its series, largest first."""
        ds = base.frames.ds
        image_type = [str(v).upper() for v in ds.get("ImageType", [])]
        series = str(ds.get("SeriesInstanceUID", "") or "")
        if "TotalPixelMatrixRows" not in ds or not series or "VOLUME" not in image_type:
            return [base]
        levels = [base]
        siblings = sorted(
            p
            for p in self.path.parent.iterdir()
            if p.suffix.lower() in self.suffixes and p != self.path
        )
        if len(siblings) > MAX_SIBLINGS:
            self._warnings.append(
                f"more than {MAX_SIBLINGS} DICOM files beside this one: other pyramid levels not searched"
            )
            return levels
        marker = series.encode("ascii", "replace")
        for sibling in siblings:
            if not _mentions(sibling, marker):
                continue  # cheap filter: a file of another series never names this UID
            try:
                header, _ = read_header(sibling)
            except (CorruptFileError, OSError):
                continue
            if str(header.get("SeriesInstanceUID", "") or "") != series:
                continue
            kind = [str(v).upper() for v in header.get("ImageType", [])]
            if "VOLUME" not in kind or "TotalPixelMatrixRows" not in header:
                self._associated.append(
                    {
                        "file": sibling.name,
                        "type": kind[2] if len(kind) > 2 else None,
                        "size_y": int(
                            header.get("TotalPixelMatrixRows", header.get("Rows", 0)) or 0
                        ),
                        "size_x": int(
                            header.get("TotalPixelMatrixColumns", header.get("Columns", 0)) or 0
                        ),
                    }
                )
                continue
            same = (
                int(header.get("NumberOfOpticalPaths", 1) or 1) == self._info.size_c
                and int(header.get("TotalPixelMatrixFocalPlanes", 1) or 1) == self._info.size_z
                and int(header.get("SamplesPerPixel", 1) or 1) == self._info.samples_per_pixel
            )
            if not same:
                continue
            try:
                frames = DicomFrames(sibling, check=self._check_frame)
                self.close_on_release(frames.close)
                level = self._tiled_level(frames)
            except (ZstackError, ValueError, KeyError, AttributeError, TypeError) as exc:
                self._warnings.append(f"pyramid level {sibling.name} skipped: {exc}")
                continue
            if level.frames.geometry.dtype != base.frames.geometry.dtype:
                continue
            levels.append(level)
        levels.sort(key=lambda lv: (-lv.size_x * lv.size_y, lv.frames.path.name))
        unique = [levels[0]]
        for level in levels[1:]:
            if (level.size_y, level.size_x) != (unique[-1].size_y, unique[-1].size_x):
                unique.append(level)
        if unique[0] is not base:
            top = unique[0]
            self._info = self._info.model_copy(update={"size_y": top.size_y, "size_x": top.size_x})
            self._warnings.append(
                f"opened {self.path.name} (a {base.size_x}x{base.size_y} level); the slide's full "
                f"resolution is {top.frames.path.name} ({top.size_x}x{top.size_y})"
            )
        return unique

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene: the slide (or image); levels and associated images are not scenes."""
        return [self._info]

    def level_count(self, scene: int = 0) -> int:
        """Number of resolutions of the slide found in its series."""
        self.scene_info(scene)
        return len(self._levels)

    def _level(self, scene: int, level: int) -> _Level:
        self.scene_info(scene)
        if not 0 <= level < len(self._levels):
            msg = f"{self.path.name}: pyramid level {level} does not exist; it has {len(self._levels)}"
            raise SceneNotFoundError(msg, path=self.path)
        return self._levels[level]

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X(,S) array; one chunk per tile (frame) of the level."""
        from zstack_analyzer._dask_import import dask_array

        dask_array()  # the process's first import of dask.array, without xarray and scipy
        import dask.array as da

        lv = self._level(scene, level)
        info = self._info
        g = lv.frames.geometry
        shape: tuple[int, ...] = (info.size_t, info.size_c, info.size_z, lv.size_y, lv.size_x)
        if g.samples > 1:
            shape = (*shape, g.samples)
        self.check_shape(shape, g.dtype)
        tile_y, tile_x = lv.tile
        chunks_y = tuple(min(tile_y, lv.size_y - r * tile_y) for r in range(lv.tiles_y))
        chunks_x = tuple(min(tile_x, lv.size_x - c * tile_x) for c in range(lv.tiles_x))
        chunks: tuple[tuple[int, ...], ...] = (
            (1,) * shape[0],
            (1,) * shape[1],
            (1,) * shape[2],
            chunks_y,
            chunks_x,
        )
        if g.samples > 1:
            chunks = (*chunks, (g.samples,))
        return da.map_blocks(
            _TileBlock(self, level),
            chunks=chunks,
            dtype=g.dtype,
            meta=np.empty((0,) * len(shape), dtype=g.dtype),
            name=f"dicom-{next(_token_counter)}-{id(self):x}-{level}",
        )

    def read_tile(
        self, scene: int, level: int, t: int, c: int, z: int, row: int, col: int
    ) -> np.ndarray:
        """Tile (row, col) of plane (t, c, z) at ``level``, cropped to the image edge."""
        self.check_open()
        lv = self._level(scene, level)
        g = lv.frames.geometry
        tile_y, tile_x = lv.tile
        height = min(tile_y, lv.size_y - row * tile_y)
        width = min(tile_x, lv.size_x - col * tile_x)
        index = lv.frame_of(t, c, z, row, col)
        if index is None:
            shape = (height, width, g.samples) if g.samples > 1 else (height, width)
            return np.zeros(shape, g.dtype)
        return lv.frames.read(index)[:height, :width]

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X(,S) plane at full resolution, assembled tile by tile."""
        self.check_plane_index(scene, t, c, z)
        return self._read_level_plane(scene, 0, t, c, z)

    def _read_level_plane(self, scene: int, level: int, t: int, c: int, z: int) -> np.ndarray:
        lv = self._level(scene, level)
        g = lv.frames.geometry
        shape = (lv.size_y, lv.size_x, g.samples) if g.samples > 1 else (lv.size_y, lv.size_x)
        # RGB: a 6-D shape, so that check_shape takes Y, X and S as the plane (not X, S)
        self.check_shape(shape if g.samples == 1 else (1, 1, 1, *shape), g.dtype)
        if lv.tiles_y == lv.tiles_x == 1:
            return self.read_tile(scene, level, t, c, z, 0, 0)
        out = np.zeros(shape, g.dtype)
        tile_y, tile_x = lv.tile
        for row in range(lv.tiles_y):
            for col in range(lv.tiles_x):
                tile = self.read_tile(scene, level, t, c, z, row, col)
                out[
                    row * tile_y : row * tile_y + tile.shape[0],
                    col * tile_x : col * tile_x + tile.shape[1],
                ] = tile
        return out

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata from the header of the full-resolution file."""
        info = self.scene_info(scene)
        if self._metadata_cache is None:
            try:
                self._metadata_cache = self._build_metadata(info)
            except ZstackError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                msg = f"{self.path.name}: unreadable DICOM metadata: {exc}"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        return self._metadata_cache.model_copy(deep=True)

    def _build_metadata(self, info: SceneInfo) -> ImageMetadata:
        top = self._levels[0].frames
        ds = top.ds
        warnings = list(self._warnings)
        provenance: dict[str, str] = {"sizes": "DICOM header"}
        modality = str(ds.get("Modality", "") or "")
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if (
            modality not in ("SM", "GM") and sop_class != _WSI_SOP_CLASS
        ):  # slide / general microscopy
            warnings.append(
                f"DICOM modality {modality or 'unknown'} is not microscopy: read as a plain image"
            )
        if top.photometric == "MONOCHROME1":
            warnings.append("MONOCHROME1: values are as stored (0 is white)")
        if top.photometric == "PALETTE COLOR":
            warnings.append("palette image: values are the stored indices (palette not applied)")
        physical = self._calibration(ds, provenance)
        channels = self._channels(ds, info.size_c)
        objective = self._objective(ds)
        device = MicroscopeInfo(
            manufacturer=_text(ds.get("Manufacturer")),
            model=_text(ds.get("ManufacturerModelName")),
            serial_number=_text(ds.get("DeviceSerialNumber")),
            software=_text(_first(ds.get("SoftwareVersions"))),
        )
        microscope = device if any(device.model_dump().values()) else None
        acquired, acquired_local, source = _acquisition_time(ds)
        if source:
            provenance["acquired_at" if acquired else "acquired_at_local"] = source
            if acquired is None:
                warnings.append(
                    "acquisition time zone unknown: acquired_at_local holds the time as written"
                )
        levels = [(lv.size_y, lv.size_x) for lv in self._levels]
        vendor: dict[str, Any] = {
            "modality": modality or None,
            "sop_class": getattr(ds.SOPClassUID, "name", sop_class)
            if "SOPClassUID" in ds
            else None,
            "transfer_syntax": top.transfer_syntax,
            "photometric": top.photometric,
            "image_type": [str(v) for v in ds.get("ImageType", [])],
            "dimension_organization": _text(ds.get("DimensionOrganizationType")),
            "frames": top.geometry.count,
            "tile": [top.geometry.rows, top.geometry.columns],
            "level_files": [lv.frames.path.name for lv in self._levels],
            "associated_images": self._associated,
        }
        return self.scene_metadata(
            info,
            physical_size=physical,
            channels=channels,
            objective=objective,
            microscope=microscope,
            acquired_at=acquired,
            acquired_at_local=acquired_local,
            pyramid_levels=levels if len(levels) > 1 else [],
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=json_safe(vendor, max_string=4096, max_items=256, max_depth=6),
        )

    def _calibration(self, ds: Any, provenance: dict[str, str]) -> PhysicalSize:
        measures, source = None, ""
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared and "PixelMeasuresSequence" in shared[0]:
            measures, source = (
                shared[0].PixelMeasuresSequence[0],
                "DICOM SharedFunctionalGroups PixelMeasures",
            )
        elif "PixelSpacing" in ds:
            measures, source = ds, "DICOM PixelSpacing"
        x_um = y_um = z_um = None
        if measures is not None and "PixelSpacing" in measures:
            spacing = list(measures.PixelSpacing)
            if len(spacing) == 2:
                y_um, x_um = _mm_to_um(spacing[0]), _mm_to_um(spacing[1])
                if x_um is not None:
                    provenance["physical_size.x_um"] = f"{source}/PixelSpacing[1] (mm)"
                if y_um is not None:
                    provenance["physical_size.y_um"] = f"{source}/PixelSpacing[0] (mm)"
        holder = measures if measures is not None and "SpacingBetweenSlices" in measures else ds
        if "SpacingBetweenSlices" in holder:
            z_um = _mm_to_um(holder.SpacingBetweenSlices, allow_negative=True)
            if z_um is not None:
                provenance["physical_size.z_um"] = "DICOM SpacingBetweenSlices (mm)"
        return PhysicalSize(x_um=x_um, y_um=y_um, z_um=z_um)

    def _channels(self, ds: Any, size_c: int) -> list[ChannelInfo]:
        paths = ds.get("OpticalPathSequence") or []
        if len(paths) != size_c:
            return [ChannelInfo(index=c) for c in range(size_c)]
        channels = []
        for c, item in enumerate(paths):
            wavelength = item.get("IlluminationWaveLength")
            channels.append(
                ChannelInfo(
                    index=c,
                    name=_text(item.get("OpticalPathDescription")),
                    excitation_nm=float(wavelength) if wavelength else None,
                    **_illumination(item.get("IlluminationTypeCodeSequence")),
                )
            )
        return channels

    def _objective(self, ds: Any) -> ObjectiveInfo | None:
        for item in ds.get("OpticalPathSequence") or []:
            power = item.get("ObjectiveLensPower")
            aperture = item.get("ObjectiveLensNumericalAperture")
            if power or aperture:
                return ObjectiveInfo(
                    magnification=float(power) if power else None,
                    numerical_aperture=float(aperture) if aperture else None,
                )
        return None

    def raw_metadata(self) -> Mapping[str, Any]:
        """The header of the opened file as pydicom's JSON model (pixels excluded)."""
        return dict(
            self.ds.to_json_dict(bulk_data_threshold=4096, bulk_data_element_handler=lambda _: "")
        )


class _TileBlock:
    """Picklable ``map_blocks`` callback: block (t, c, z, row, col) is one tile."""

    def __init__(self, reader: DicomReader, level: int) -> None:
        self.reader = reader
        self.level = level

    def __call__(self, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        assert block_id is not None  # noqa: S101  (dask always passes it)
        t, c, z, row, col = block_id[:5]
        tile = self.reader.read_tile(0, self.level, t, c, z, row, col)
        return tile[np.newaxis, np.newaxis, np.newaxis]


# ---------------------------------------------------------------------- helpers
#: Bytes of a sibling's header searched for the Series Instance UID before parsing it.
_SIBLING_HEAD = 1 << 16


def _mentions(path: Path, marker: bytes) -> bool:
    try:
        with path.open("rb") as fh:
            return marker in fh.read(_SIBLING_HEAD)
    except OSError:
        return False


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


#: DICOM CID 8123 "Microscopy Illumination Method" (scheme DCM) -> OME IlluminationType and
#: ContrastMethod, the vocabulary the CZI, OME, LIF and OIF readers report (issue 22).
_ILLUMINATION_CODES: dict[str, tuple[str, str | None]] = {
    "111741": ("Transmitted", None),  # Transmission illumination
    "111742": ("Other", None),  # Reflection illumination (OME has no reflected light)
    "111743": ("Epifluorescence", "Fluorescence"),  # Epifluorescence illumination
    "111744": ("Transmitted", "Brightfield"),  # Brightfield illumination
    "111745": ("Transmitted", "Darkfield"),  # Darkfield illumination
    "111746": ("Oblique", "ObliqueIllumination"),  # Oblique illumination
    "111747": ("Transmitted", "Phase"),  # Phase contrast illumination
    "111748": ("Transmitted", "DIC"),  # Differential interference contrast
    "111749": ("Epifluorescence", "Fluorescence"),  # Total internal reflection fluorescence
}
#: The same by code meaning (lower case), for files that give a meaning without the DCM code.
_ILLUMINATION_MEANINGS = {
    "transmission illumination": "111741",
    "reflection illumination": "111742",
    "epifluorescence illumination": "111743",
    "brightfield illumination": "111744",
    "darkfield illumination": "111745",
    "oblique illumination": "111746",
    "phase contrast illumination": "111747",
    "differential interference contrast": "111748",
    "total internal reflection fluorescence": "111749",
}


def _illumination(sequence: Any) -> dict[str, str | None]:
    """``illumination`` and ``contrast_method`` of a channel from its IlluminationTypeCodeSequence.

    Why not the code meaning as found: every other reader reports OME's
    IlluminationType ("Transmitted", "Epifluorescence", ...), and a search or a
    comparison across formats needs one vocabulary. A code we do not know is
    "Other" (the file does state one).
    """
    if not sequence:
        return {}
    item = sequence[0]
    code = _text(item.get("CodeValue"))
    if code not in _ILLUMINATION_CODES or _text(item.get("CodingSchemeDesignator")) not in (
        "DCM",
        None,
    ):
        meaning = (_code_meaning(sequence) or "").lower()
        code = _ILLUMINATION_MEANINGS.get(meaning)
    if code is None:
        return {"illumination": "Other"} if _code_meaning(sequence) or item.get("CodeValue") else {}
    illumination, contrast = _ILLUMINATION_CODES[code]
    return {"illumination": illumination, "contrast_method": contrast}


def _code_meaning(sequence: Any) -> str | None:
    if not sequence:
        return None
    return _text(sequence[0].get("CodeMeaning"))


def _mm_to_um(value: Any, *, allow_negative: bool = False) -> float | None:
    try:
        number = float(value) * 1000.0
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number == 0 or (number < 0 and not allow_negative):
        return None
    return number


_DT = re.compile(r"^(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def _acquisition_time(ds: Any) -> tuple[datetime | None, datetime | None, str]:
    """(acquired_at UTC, acquired_at_local naive, source) from the DICOM date/time elements."""
    candidates = [
        (_text(ds.get("AcquisitionDateTime")), "DICOM AcquisitionDateTime"),
        (_join(ds.get("AcquisitionDate"), ds.get("AcquisitionTime")), "DICOM AcquisitionDate/Time"),
        (_join(ds.get("ContentDate"), ds.get("ContentTime")), "DICOM ContentDate/Time"),
    ]
    for text, source in candidates:
        if not text:
            continue
        match = _DT.match(text.replace(":", ""))
        if not match:
            continue
        day, hour, minute, second, fraction, zone = match.groups()
        try:
            naive = datetime.strptime(day, "%Y%m%d").replace(
                hour=int(hour or 0),
                minute=int(minute or 0),
                second=int(second or 0),
                microsecond=int((fraction or "0").ljust(6, "0")),
            )
        except ValueError:
            continue
        zone = zone or _text(ds.get("TimezoneOffsetFromUTC"))
        if zone and re.fullmatch(r"[+-]\d{4}", zone):
            sign = 1 if zone[0] == "+" else -1
            offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
            return naive.replace(tzinfo=timezone(offset)).astimezone(UTC), None, source
        return None, naive, source
    return None, None, ""


def _join(date: Any, time: Any) -> str | None:
    day = _text(date)
    if not day:
        return None
    return day + (_text(time) or "")
