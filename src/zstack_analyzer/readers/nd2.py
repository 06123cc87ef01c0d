"""Nikon ND2 files (NIS-Elements) through the ``nd2`` package.

Why per-frame reads rather than ``ND2File.to_dask``: nd2's dask array mixes XY
positions into the axes and holds the file open through a wrapper; our scenes
are positions and our chunks are canonical planes. An ND2 "frame" is one
acquisition step of the experiment loops (T, P, Z, ...), with every channel
stored inside it as a component, so a plane (t, c, z) of position p is frame
``ravel(loop indices)`` sliced at channel c. Quirks stay here:

* nd2 returns zeros for frames whose chunks are missing or lie past the end of
  the file; we check the chunk map at open so a truncated file is an error;
* the acquisition start is a Julian day number (UTC) in the frame metadata; the
  text date beside it is local wall-clock time in the writer's locale;
* legacy (JPEG 2000) files carry far less metadata and nd2 reports 1.0 where they
  state no calibration.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import struct
import warnings
import zlib
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

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits

__all__ = ["Nd2Reader"]

logger = logging.getLogger(__name__)

#: Modern ND2 chunk magic 0x0ABECEDA, little-endian.
_MODERN_MAGIC = b"\xda\xce\xbe\x0a"
#: JPEG 2000 signature box: legacy ND2 files are JP2 containers.
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"

#: nd2 experiment loop types -> our axis letters (U: a custom loop, read at index 0).
_LOOP_AXIS = {
    "TimeLoop": "T",
    "NETimeLoop": "T",
    "ZStackLoop": "Z",
    "XYPosLoop": "P",
}

#: Julian day number of 1970-01-01T00:00:00 UTC.
_JDN_UNIX_EPOCH = 2440587.5

#: NIS-Elements writes the text date in the acquiring PC's locale.
_DATE_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%d/%m/%Y %I:%M:%S %p",
    "%d.%m.%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%d-%b-%y %I:%M:%S %p",
)

_PARSE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    OverflowError,
    ZeroDivisionError,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
    struct.error,
    zlib.error,
    SyntaxError,  # xml.etree ParseError from damaged XML chunks
    NameError,  # nd2 0.12 raises UnboundLocalError on some damaged metadata
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """How canonical (p, t, c, z) indices map to nd2 frames and components."""

    loops: tuple[tuple[str, int], ...]  # (axis, count) in experiment order, counts > 1
    size_t: int
    size_z: int
    size_p: int
    size_c: int
    samples: int
    channels_in_frame: int  # nd2 channelCount
    components: int  # components per channel (3 for RGB)
    height: int
    width: int
    extra: dict[str, int]

    def frame_index(self, p: int, t: int, z: int) -> int:
        """Sequence index of the frame holding position p, time t, slice z."""
        index = 0
        for axis, count in self.loops:
            i = {"T": t, "Z": z, "P": p}.get(axis, 0)
            index = index * count + i
        return index


class Nd2Reader(ImageReader):
    """Nikon ND2: XY positions are scenes (scene 0 the first position), T, C, Z per scene.

    Examples
    --------
    >>> from zstack_analyzer import open_image
    >>> with open_image("cells.nd2") as image:  # doctest: +SKIP
    ...     image.metadata(0).channels[0].name
    """

    format_name: ClassVar[str] = "ND2"
    suffixes: ClassVar[tuple[str, ...]] = (".nd2",)
    required_packages: ClassVar[tuple[str, ...]] = ("nd2",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Modern chunk magic, or a JPEG 2000 signature in a file named ``.nd2``.

        Why the name for legacy files: a legacy ND2 is a JP2 container; without
        the suffix a plain ``.jp2`` picture would be claimed and then fail here.
        """
        if head[:4] == _MODERN_MAGIC:
            return True
        return head[: len(_JP2_SIGNATURE)] == _JP2_SIGNATURE and path.suffix.lower() == ".nd2"

    def __init__(self, path: Path | str, /, *, limits: ReadLimits | None = None) -> None:
        super().__init__(path, limits=limits)
        try:
            import nd2
        except ImportError as exc:  # pragma: no cover - the dev extra installs it
            msg = f"{self.path.name}: reading ND2 needs the package 'nd2': pip install nd2"
            raise MissingDependencyError(msg, package="nd2", path=self.path) from exc
        self._file_size = self.path.stat().st_size
        self._cached_frame: tuple[int, np.ndarray] | None = None
        self._metadata_cache: dict[int, ImageMetadata] = {}
        self._compressed = False
        _check_structure(self.path, self._file_size, self.limits.max_metadata_bytes)
        try:
            handle = nd2.ND2File(self.path)
        except FileNotFoundError:
            raise
        except (*_PARSE_ERRORS, OSError) as exc:
            msg = f"{self.path.name}: not a readable ND2 file ({exc})"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        self._nd2 = handle
        self.close_on_release(handle.close)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._layout = self._build_layout()
                self._open_warnings = self._check_frames()
                self._scenes = self._build_scenes()
            self._open_warnings.extend(f"nd2: {w.message}" for w in caught)
        except (CorruptFileError, MetadataError, LimitExceededError):
            self.close()
            raise
        except (*_PARSE_ERRORS, OSError) as exc:
            self.close()
            msg = f"{self.path.name}: the ND2 file is corrupt or truncated ({exc})"
            raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    def _build_layout(self) -> _Layout:
        f = self._nd2
        attrs = f.attributes  # parses the chunk map: a truncated file fails here
        loops, extra = _loop_axes([(str(loop.type), int(loop.count)) for loop in f.experiment])
        sizes = dict(loops)
        channels_in_frame = int(attrs.channelCount or 1)
        component_count = int(attrs.componentCount or 1)
        components = max(1, component_count // channels_in_frame)
        if components == 3:
            size_c, samples = channels_in_frame, 3
        else:
            size_c, samples = component_count, 1
        height = int(attrs.heightPx or 0)
        width = int(attrs.widthPx or 0)
        if height <= 0 or width <= 0:
            msg = f"{self.path.name}: ND2 attributes declare a {width}x{height} frame"
            raise CorruptFileError(msg, path=self.path)
        layout = _Layout(
            loops=tuple(loops),
            size_t=sizes.get("T", 1),
            size_z=sizes.get("Z", 1),
            size_p=sizes.get("P", 1),
            size_c=size_c,
            samples=samples,
            channels_in_frame=channels_in_frame,
            components=components,
            height=height,
            width=width,
            extra=extra,
        )
        # Canonical (T, C, Z, Y, X[, S]) with the positions folded into T: the limits count
        # every plane of the file and bound one Y, X(, S) plane.
        shape = [layout.size_p * layout.size_t, size_c, layout.size_z, height, width]
        if samples > 1:
            shape.append(samples)
        self.check_shape(shape, f.dtype)
        return layout

    def _check_frames(self) -> list[str]:
        """Refuse frames that lie past the end of the file; note frames that are missing.

        Why: nd2 quietly returns zeros for both, which would turn a truncated file
        into a plausible black image.
        """
        notes: list[str] = []
        layout = self._layout
        self._compressed = bool(self._nd2.attributes.compressionType)
        n_frames = math.prod(count for _, count in layout.loops)
        declared = getattr(self._nd2.attributes, "sequenceCount", None)
        if declared is not None and int(declared) != n_frames:
            notes.append(
                f"the experiment loops give {n_frames} frames but the file declares {declared}"
            )
        reader = getattr(self._nd2, "_rdr", None)
        chunkmap = getattr(reader, "chunkmap", None) if not self._nd2.is_legacy else None
        if not isinstance(chunkmap, dict):
            return notes
        attrs = self._nd2.attributes
        row_bytes = int(attrs.widthBytes or 0) or (
            layout.width * int(attrs.componentCount or 1) * np.dtype(self._nd2.dtype).itemsize
        )
        frame_bytes = layout.height * row_bytes
        missing = 0
        for index in range(n_frames):
            entry = chunkmap.get(f"ImageDataSeq|{index}!".encode())
            if entry is None:
                missing += 1
                continue
            offset, size = int(entry[0]), int(entry[1])
            if not self._compressed:
                # nd2 maps an uncompressed frame at a fixed 4096 bytes past its chunk
                size = max(size, 4096 + frame_bytes)
            if offset < 0 or offset + size > self._file_size:
                msg = (
                    f"{self.path.name}: frame {index} ({size:,} bytes at {offset:,}) ends past "
                    f"the end of the file ({self._file_size:,} bytes); the file is truncated"
                )
                raise CorruptFileError(msg, path=self.path)
        if missing == n_frames:
            msg = f"{self.path.name}: the ND2 chunk map lists none of its {n_frames} frames"
            raise CorruptFileError(msg, path=self.path)
        if missing:
            notes.append(f"{missing} of {n_frames} frames are missing; they read as zeros")
        return notes

    def _build_scenes(self) -> list[SceneInfo]:
        layout = self._layout
        names = self._position_names()
        dtype = np.dtype(self._nd2.dtype).newbyteorder("=").name
        return [
            SceneInfo(
                index=p,
                name=names[p] if p < len(names) else None,
                size_t=layout.size_t,
                size_c=layout.size_c,
                size_z=layout.size_z,
                size_y=layout.height,
                size_x=layout.width,
                samples_per_pixel=layout.samples,
                dtype=dtype,
                extra_dims=dict(layout.extra),
            )
            for p in range(layout.size_p)
        ]

    def _position_names(self) -> list[str | None]:
        for loop in self._nd2.experiment:
            if loop.type == "XYPosLoop":
                points = getattr(loop.parameters, "points", None) or []
                return [(getattr(pt, "name", None) or None) for pt in points]
        return []

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene per XY position, in acquisition order."""
        return list(self._scenes)

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata of one position."""
        info = self.scene_info(scene)
        with self._lock:
            cached = self._metadata_cache.get(scene)
            if cached is None:
                try:
                    # nd2 reports damaged optional chunks as Python warnings; they are
                    # data here (metadata warnings), not exceptions under -W error.
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        cached = self._build_metadata(info)
                except (*_PARSE_ERRORS, OSError) as exc:
                    msg = f"{self.path.name}: unreadable ND2 metadata ({exc})"
                    raise MetadataError(msg, path=self.path, detail=repr(exc)) from exc
                cached.warnings.extend(f"nd2: {w.message}" for w in caught)
                self._metadata_cache[scene] = cached
        return cached.model_copy(deep=True)

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy canonical array of one position, one chunk per (t, c, z) plane."""
        info = self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; ND2 images have 1"
            raise SceneNotFoundError(msg, path=self.path)
        return planes_to_dask(
            _PlaneReader(self, scene), info.shape, info.dtype, name=f"nd2-{scene}"
        )

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X(,S) plane straight from its frame."""
        self.check_plane_index(scene, t, c, z)
        return self._read(scene, t, c, z)

    def raw_metadata(self) -> Mapping[str, Any]:
        """nd2's attributes, experiment, metadata, text info and custom data."""
        f = self._nd2
        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw: dict[str, Any] = {
                "version": f.version,
                "is_legacy": f.is_legacy,
                "sizes": dict(f.sizes),
                "attributes": _as_plain(f.attributes),
                "experiment": _as_plain(f.experiment),
                "metadata": _as_plain(f.metadata),
                "text_info": _as_plain(f.text_info),
            }
            if not f.is_legacy:
                try:
                    raw["custom_data"] = f.custom_data
                except _PARSE_ERRORS as exc:
                    raw["custom_data_error"] = repr(exc)
        return raw

    def close(self) -> None:
        """Close the file; waits for a read in progress."""
        with self._lock:
            self._cached_frame = None
            super().close()

    # ------------------------------------------------------------------ pixels
    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """Any row of an uncompressed frame (nd2 maps it); ``None`` for compressed frames."""
        info = self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: level {level} does not exist; ND2 images have 1"
            raise SceneNotFoundError(msg, path=self.path)
        return None if self._compressed else (1, info.size_x)

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
        """A region of one plane; an uncompressed frame is copied only there."""
        self.region_grid(scene, level)
        self.check_plane_index(scene, t, c, z)
        return self._read(scene, t, c, z, window=(slice(*rows), slice(*cols)))

    def _read(
        self,
        scene: int,
        t: int,
        c: int,
        z: int,
        *,
        window: tuple[slice, slice] = (slice(None), slice(None)),
    ) -> np.ndarray:
        layout = self._layout
        index = layout.frame_index(scene, t, z)
        rows, cols = window
        with self._lock:
            self.check_open()
            try:
                frame = self._frame(index)
            except (*_PARSE_ERRORS, OSError) as exc:
                msg = f"{self.path.name}: frame {index} cannot be read ({exc})"
                raise CorruptFileError(msg, path=self.path, detail=repr(exc)) from exc
            # frame: (channels, Y, X, components) view; copy only the plane we need,
            # so no view into nd2's memory map outlives the lock.
            if layout.components == 3:
                plane = frame[c, rows, cols]
            elif layout.components == 1:
                plane = frame[c, rows, cols, 0]
            else:
                plane = frame[c // layout.components, rows, cols, c % layout.components]
            result = np.array(plane, dtype=plane.dtype.newbyteorder("="), order="C", copy=True)
            del frame, plane  # release any view into nd2's memory map before the lock
        return result

    def _check_compressed_chunk(self, index: int) -> None:
        """Refuse a compressed frame whose chunk header claims more than the file holds.

        Why: nd2 reads ``data_length`` bytes as the header says; a damaged header
        would make it allocate that much before failing.
        """
        chunkmap = getattr(getattr(self._nd2, "_rdr", None), "chunkmap", None)
        entry = (
            chunkmap.get(f"ImageDataSeq|{index}!".encode()) if isinstance(chunkmap, dict) else None
        )
        if entry is None:
            return
        with self.path.open("rb") as fh:
            _check_chunk_header(fh, int(entry[0]), self._file_size, self.path, self._file_size)

    def _frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as (channels, Y, X, components); caller holds the lock."""
        layout = self._layout
        cached = self._cached_frame
        if cached is not None and cached[0] == index:
            return cached[1]
        if self._compressed:
            self._check_compressed_chunk(index)
        data = self._nd2.read_frame(index)
        frame = np.reshape(
            data, (layout.channels_in_frame, layout.height, layout.width, layout.components)
        )
        if self._compressed:
            # Decompressing is the cost; keep one frame so its other channels are free.
            frame = np.array(frame, copy=True)
            self._cached_frame = (index, frame)
        return frame

    # ------------------------------------------------------------------ metadata
    def _build_metadata(self, info: SceneInfo) -> ImageMetadata:
        f = self._nd2
        warnings = list(self._open_warnings)
        provenance: dict[str, str] = {}
        legacy = bool(f.is_legacy)
        md = f.metadata
        channels_md = list(getattr(md, "channels", None) or []) if not legacy else []

        physical = self._physical_size(channels_md, warnings, provenance, legacy)
        channels = self._channels(channels_md, info, provenance, warnings)
        objective = self._objective(channels_md, provenance)
        microscope = self._microscope(provenance)
        time_interval = self._time_interval(provenance)
        acquired_at, acquired_local = self._acquisition_time(warnings, provenance)

        attrs = f.attributes
        significant = getattr(attrs, "bitsPerComponentSignificant", None)
        dtype = np.dtype(info.dtype)
        if significant is not None and not 0 < int(significant) <= dtype.itemsize * 8:
            significant = None
        vendor: dict[str, Any] = {
            "file_version": ".".join(str(v) for v in f.version),
            "is_legacy": legacy,
            "nd2_sizes": dict(f.sizes),
            "loops": [{"type": str(loop.type), "count": int(loop.count)} for loop in f.experiment],
            "text_info": _as_plain(f.text_info),
            "position": self._stage_position(info.index),
        }
        return self.scene_metadata(
            info,
            significant_bits=int(significant) if significant else None,
            physical_size=physical,
            time_interval_s=time_interval,
            channels=channels,
            objective=objective,
            microscope=microscope,
            acquired_at=acquired_at,
            acquired_at_local=acquired_local,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=capped_vendor(vendor, drop_first=("text_info",), max_string=4000),
        )

    def _physical_size(
        self,
        channels_md: list[Any],
        warnings: list[str],
        provenance: dict[str, str],
        legacy: bool,
    ) -> PhysicalSize:
        values: list[float | None] = [None, None, None]
        if channels_md:
            volume = channels_md[0].volume
            calibrated = list(volume.axesCalibrated or (False, False, False))
            calibration = list(volume.axesCalibration or (0.0, 0.0, 0.0))
            for i in range(3):
                if i < len(calibrated) and calibrated[i] and i < len(calibration):
                    values[i] = float(calibration[i])
            source = "ND2 metadata.channels[0].volume.axesCalibration"
        else:
            # Legacy files: nd2 answers 1.0 where the file states nothing.
            values = [float(v) for v in self._nd2.voxel_size()]
            for i, axis in enumerate("xyz"):
                if values[i] == 1.0:
                    values[i] = None
                    warnings.append(
                        f"legacy ND2: {axis} calibration 1.0 is nd2's default; treated as unknown"
                    )
            source = "nd2 voxel_size() (legacy ND2)"
        if self._layout.size_z <= 1:
            values[2] = None  # a Z calibration without a Z loop is a default, not a step
        result = PhysicalSize()
        for i, axis in enumerate("xyz"):
            value = values[i]
            if value is None:
                continue
            if not math.isfinite(value) or value == 0:
                warnings.append(f"{axis} calibration {value} is no calibration")
                continue
            if axis == "z" and value < 0:
                warnings.append(f"negative Z step {value:.9g} µm kept as found")
            setattr(result, f"{axis}_um", value)
            provenance[f"physical_size.{axis}_um"] = source
        step = self._z_loop_step()
        if (
            step is not None
            and result.z_um is not None
            and not math.isclose(abs(step), abs(result.z_um), rel_tol=1e-3)
        ):
            warnings.append(
                f"Z loop step {step} µm differs from the Z calibration {result.z_um} µm"
            )
        return result

    def _z_loop_step(self) -> float | None:
        for loop in self._nd2.experiment:
            if loop.type == "ZStackLoop":
                step = getattr(loop.parameters, "stepUm", None)
                return float(step) if step is not None else None
        return None

    def _channels(
        self,
        channels_md: list[Any],
        info: SceneInfo,
        provenance: dict[str, str],
        warnings: list[str],
    ) -> list[ChannelInfo]:
        description = self._text("description")
        exposures = _plane_exposures(description, info.size_c)
        lasers = _plane_lasers(description)
        result = []
        use_md = len(channels_md) == info.size_c
        stated_excitation = False
        for i in range(info.size_c):
            name = colour = None
            emission = excitation = None
            if use_md:
                meta = channels_md[i].channel
                name = (meta.name or "").strip() or None
                color = getattr(meta, "color", None)
                if color is not None:
                    colour = f"#{int(color.r):02X}{int(color.g):02X}{int(color.b):02X}"
                emission = _positive(getattr(meta, "emissionLambdaNm", None))
                excitation = _positive(getattr(meta, "excitationLambdaNm", None))
            on = lasers[i] if len(lasers) == info.size_c else []
            checked = _stated_excitation(excitation, on, name or f"channel {i}", warnings)
            stated_excitation = stated_excitation or (checked is not None and checked != excitation)
            excitation = checked
            exposure = exposures[i] if len(exposures) == info.size_c else None
            result.append(
                ChannelInfo(
                    index=i,
                    name=name,
                    emission_nm=emission,
                    excitation_nm=excitation,
                    color=colour,
                    exposure_ms=exposure,
                )
            )
        if use_md:
            provenance["channels[].name"] = "ND2 metadata.channels[].channel.name"
            provenance["channels[].color"] = "ND2 metadata.channels[].channel.color"
            provenance["channels[].emission_nm"] = (
                "ND2 metadata.channels[].channel.emissionLambdaNm"
            )
            provenance["channels[].excitation_nm"] = (
                "ND2 metadata.channels[].channel.excitationLambdaNm"
                + (", checked against the lasers on in the text description" if lasers else "")
                + ("; stated laser used where they conflict" if stated_excitation else "")
            )
        if any(ch.exposure_ms is not None for ch in result):
            provenance["channels[].exposure_ms"] = (
                "ND2 text_info description, Plane #k Exposure"
                if "Plane #" in (description or "")
                else "ND2 text_info description, Exposure (single-channel file)"
            )
        return result

    def _objective(
        self, channels_md: list[Any], provenance: dict[str, str]
    ) -> ObjectiveInfo | None:
        scope = channels_md[0].microscope if channels_md else None
        name = magnification = aperture = immersion = None
        if scope is not None:
            name = (scope.objectiveName or "").strip() or None
            magnification = _positive(scope.objectiveMagnification)
            aperture = _positive(scope.objectiveNumericalAperture)
            index = _positive(scope.immersionRefractiveIndex)
            immersion = _immersion(index)
            if immersion is not None:
                provenance["objective.immersion"] = (
                    f"ND2 immersionRefractiveIndex {index:g} (mapped to a medium)"
                )
        if name is None:
            name = self._text("optics")
        if name is None and magnification is None and aperture is None:
            return None
        provenance["objective"] = "ND2 metadata.channels[0].microscope"
        return ObjectiveInfo(
            name=name, magnification=magnification, numerical_aperture=aperture, immersion=immersion
        )

    def _microscope(self, provenance: dict[str, str]) -> MicroscopeInfo:
        software = version = None
        if not self._nd2.is_legacy:
            try:
                app = self._nd2.custom_data.get("AppInfo_V1_0") or {}
            except _PARSE_ERRORS:
                app = {}
            if isinstance(app, dict):
                software = str(app.get("SWNameString") or "").strip() or None
                version = str(app.get("VersionString") or "").strip() or None
        description = self._text("description") or ""
        found = re.search(r"Microscope:\s*([^\r\n]+)", description)
        model = found.group(1).strip() if found else None
        if model is None:
            capturing = self._text("capturing") or ""
            model = capturing.strip().splitlines()[0].strip() if capturing.strip() else None
        provenance["microscope"] = "ND2 text_info and AppInfo"
        return MicroscopeInfo(
            manufacturer="Nikon", model=model, software=software, software_version=version
        )

    def _time_interval(self, provenance: dict[str, str]) -> float | None:
        if self._layout.size_t <= 1:
            return None
        for loop in self._nd2.experiment:
            if loop.type == "TimeLoop":
                params = loop.parameters
                measured = getattr(getattr(params, "periodDiff", None), "avg", None)
                if measured:
                    provenance["time_interval_s"] = "ND2 TimeLoop periodDiff.avg (measured)"
                    return float(measured) / 1000
                if params.periodMs:
                    provenance["time_interval_s"] = "ND2 TimeLoop periodMs (planned)"
                    return float(params.periodMs) / 1000
                return self._measured_interval(provenance)
            if loop.type == "NETimeLoop":
                periods = getattr(loop.parameters, "periods", None) or []
                if len(periods) == 1:
                    period = periods[0]
                    measured = getattr(getattr(period, "periodDiff", None), "avg", None)
                    value = measured or period.periodMs
                    if value:
                        provenance["time_interval_s"] = "ND2 NETimeLoop period"
                        return float(value) / 1000
                return None
        return None

    def _measured_interval(self, provenance: dict[str, str]) -> float | None:
        """Mean interval between time points from the recorded frame times (no delay set)."""
        try:
            events = self._nd2.events(orient="list")
        except (*_PARSE_ERRORS, OSError):
            return None
        times = events.get("Time [s]")
        t_index = events.get("T Index")
        if times is None or t_index is None or len(times) != len(t_index):
            return None
        starts: dict[int, float] = {}
        for t, when in zip(t_index, times, strict=True):
            try:
                key, value = int(t), float(when)
            except (TypeError, ValueError):
                return None
            if math.isfinite(value):
                starts.setdefault(key, value)
        if len(starts) < 2:
            return None
        ordered = [starts[k] for k in sorted(starts)]
        interval = (ordered[-1] - ordered[0]) / (len(ordered) - 1)
        if not interval > 0:
            return None
        provenance["time_interval_s"] = "ND2 recorded frame times (mean interval between T starts)"
        return interval

    def _acquisition_time(
        self, warnings: list[str], provenance: dict[str, str]
    ) -> tuple[datetime | None, datetime | None]:
        """UTC start from the Julian day number, else the text date as local wall-clock time.

        The Julian day is absolute (UTC). The text date carries no zone and is in
        the writer's locale (day/month order unknown): it becomes
        ``acquired_at_local`` only when there is no Julian day, and only when it
        reads one way; with a Julian day it is just checked against it.
        """
        utc = None
        if not self._nd2.is_legacy:
            try:
                frame: Any = self._nd2.frame_metadata(0)
                stamp = frame.channels[0].time
                jdn = float(stamp.absoluteJulianDayNumber)
                relative = float(stamp.relativeTimeMs or 0.0)
            except (*_PARSE_ERRORS, OSError):
                jdn = 0.0
                relative = 0.0
            if jdn >= 1 and math.isfinite(jdn):
                seconds = (jdn - _JDN_UNIX_EPOCH) * 86400 - relative / 1000
                if 0 < seconds < 2**33:
                    utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
                    utc = utc.replace(microsecond=(utc.microsecond // 1000) * 1000)
                    provenance["acquired_at"] = (
                        "ND2 frame 0 absoluteJulianDayNumber - relativeTimeMs (UTC)"
                    )
        text = self._text("date")
        local = None
        if text:
            candidates = _parse_local_dates(text)
            if utc is not None:
                # The zone is known from the Julian day: the text date is only checked.
                naive_utc = utc.replace(tzinfo=None)
                if candidates and not any(
                    abs(d - naive_utc) <= timedelta(hours=14) for d in candidates
                ):
                    warnings.append(
                        f"ND2 text date {text!r} is more than 14 h from the Julian date "
                        f"({utc.isoformat()}); the Julian date is used"
                    )
            elif len(candidates) == 1:
                local = candidates[0]
                provenance["acquired_at_local"] = "ND2 text_info date (local time, zone not stated)"
                warnings.append("acquisition time zone unknown: only the local time is given")
            elif candidates:
                warnings.append(f"ND2 text date {text!r} is ambiguous (day/month order)")
            else:
                warnings.append(f"ND2 text date {text!r} not understood")
        return utc, local

    def _stage_position(self, scene: int) -> list[float] | None:
        for loop in self._nd2.experiment:
            if loop.type == "XYPosLoop":
                points = getattr(loop.parameters, "points", None) or []
                if scene < len(points):
                    pos = getattr(points[scene], "stagePositionUm", None)
                    if pos is not None:
                        return [float(v) for v in pos]
        return None

    def _text(self, key: str) -> str | None:
        info = self._nd2.text_info
        value = info.get(key) if isinstance(info, dict) else getattr(info, key, None)
        if not isinstance(value, str):
            return None
        return value.strip() or None


class _PlaneReader:
    """The ``read(t, c, z)`` callable of one scene's dask graph; pickles with its reader."""

    __slots__ = ("reader", "scene")

    def __init__(self, reader: Nd2Reader, scene: int) -> None:
        self.reader = reader
        self.scene = scene

    def __call__(self, t: int, c: int, z: int) -> np.ndarray:
        return self.reader._read(self.scene, t, c, z)


# ---------------------------------------------------------------------- helpers
def _loop_axes(loops: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Name the experiment loops (type, count), outermost first; loops of count 1 drop out.

    T, Z and P take the first loop of their kind; a custom loop (U, U1, ...) or a
    second loop on a taken axis (T1, ...) is read at index 0 and listed as extra.
    """
    named: list[tuple[str, int]] = []
    extra: dict[str, int] = {}
    seen: set[str] = set()
    for kind, count in loops:
        if count <= 1:
            continue
        axis = _LOOP_AXIS.get(kind, "U")
        if axis in seen or axis == "U":
            name = axis if axis == "U" else f"{axis}1"
            suffix = 1
            while name in seen:
                suffix += 1
                name = f"{axis}{suffix}"
            extra[name] = count
            axis = name
        seen.add(axis)
        named.append((axis, count))
    return named, extra


_CHUNK_HEADER = struct.Struct("<IIQ")
_CHUNK_MAGIC = 0x0ABECEDA
_CHUNKMAP_SIGNATURE = b"ND2 CHUNK MAP SIGNATURE 0000001!"
_JP2_BOX = struct.Struct(">I4s")


def _check_structure(path: Path, file_size: int, max_metadata: int) -> None:
    """Walk the container's own length fields before nd2 trusts them.

    Why: nd2 reads as many bytes as a chunk (or JP2 box) header claims; a damaged
    length would make it allocate that much. Modern files: the chunk map at the
    end and every non-image chunk it lists must lie inside the file. Legacy
    files: every top-level JP2 box must.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
        if head == _MODERN_MAGIC:
            _check_chunk_header(fh, 0, max_metadata, path, file_size)
            if file_size < 40:
                msg = f"{path.name}: ND2 file is truncated ({file_size} bytes)"
                raise CorruptFileError(msg, path=path)
            fh.seek(file_size - 40)
            tail = fh.read(40)
            signature, location = tail[:32], int.from_bytes(tail[32:], "little")
            if signature != _CHUNKMAP_SIGNATURE:
                msg = f"{path.name}: the ND2 chunk map signature is missing; the file is truncated or corrupt"
                raise CorruptFileError(msg, path=path)
            data = _check_chunk_header(fh, location, max_metadata, path, file_size)
            fh.seek(data)
            chunkmap = fh.read(file_size - 40 - data)
            for name, offset in _chunkmap_entries(chunkmap):
                if name.startswith(b"ImageDataSeq|"):
                    continue  # frame chunks: checked against the file size after parsing
                _check_chunk_header(fh, offset, max_metadata, path, file_size)
        else:
            offset = 0
            while offset < file_size:
                fh.seek(offset)
                box = fh.read(16)
                if len(box) < 8:
                    break
                length, _kind = _JP2_BOX.unpack_from(box)
                if length == 1 and len(box) == 16:
                    length = int.from_bytes(box[8:16], "big")
                elif length == 0:
                    break  # the last box runs to the end of the file
                if length < 8 or offset + length > file_size:
                    msg = (
                        f"{path.name}: JPEG 2000 box at {offset:,} claims {length:,} bytes, past the "
                        f"end of the file ({file_size:,}); the file is truncated or corrupt"
                    )
                    raise CorruptFileError(msg, path=path)
                offset += length


def _check_chunk_header(fh: Any, offset: int, max_data: int, path: Path, file_size: int) -> int:
    """Check the chunk header at ``offset``; return where its data starts."""
    raw = b""
    if 0 <= offset <= file_size - _CHUNK_HEADER.size:
        fh.seek(offset)
        raw = fh.read(_CHUNK_HEADER.size)
    if len(raw) < _CHUNK_HEADER.size:
        msg = f"{path.name}: ND2 chunk at {offset:,} lies past the end of the file; truncated"
        raise CorruptFileError(msg, path=path)
    magic, name_length, data_length = _CHUNK_HEADER.unpack(raw)
    end = offset + _CHUNK_HEADER.size + name_length + data_length
    if magic != _CHUNK_MAGIC or end > file_size or data_length > max_data:
        msg = (
            f"{path.name}: ND2 chunk at {offset:,} is damaged (magic {magic:#x}, "
            f"{data_length:,} data bytes, file {file_size:,} bytes)"
        )
        raise CorruptFileError(msg, path=path)
    return offset + _CHUNK_HEADER.size + int(name_length)


def _chunkmap_entries(data: bytes) -> list[tuple[bytes, int]]:
    """(name, offset) pairs of an ND2 chunk map, as nd2 parses it."""
    entries = []
    position = 0
    while True:
        end = data.find(b"!", position)
        if end < 0:
            break
        name = data[position : end + 1]
        if name == _CHUNKMAP_SIGNATURE or end + 17 > len(data):
            break
        offset = int.from_bytes(data[end + 1 : end + 9], "little")
        entries.append((name, offset))
        position = end + 17
    return entries


def _positive(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) and result > 0 else None


def _immersion(index: float | None) -> str | None:
    """Immersion medium from its refractive index, as NIS-Elements records it."""
    if index is None:
        return None
    for low, high, medium in (
        (0.99, 1.01, "Air"),
        (1.32, 1.34, "Water"),
        (1.39, 1.41, "Silicone"),
        (1.45, 1.48, "Glycerol"),
        (1.50, 1.53, "Oil"),
    ):
        if low <= index <= high:
            return medium
    return None


_EXPOSURE = re.compile(r"Exposure:\s*([\d.]+)\s*(ms|s|us|µs)\b")
_EXPOSURE_FACTOR = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}


def _plane_exposures(description: str | None, size_c: int = 0) -> list[float | None]:
    """Per-plane exposure (ms) from the text description.

    Multi-channel files describe each channel in a "Plane #k" section; a
    single-channel file has no sections and states "Exposure: 500 ms" once,
    which is then the one channel's exposure.
    """
    if not description:
        return []
    sections = re.split(r"Plane #\d+:", description)[1:]
    if not sections:
        if size_c != 1:
            return []
        sections = [description]
    exposures: list[float | None] = []
    for section in sections:
        found = _EXPOSURE.search(section)
        if not found:
            exposures.append(None)
            continue
        exposures.append(float(found.group(1)) * _EXPOSURE_FACTOR[found.group(2)])
    return exposures


_LASER = re.compile(r"\{Laser Wavelength\}:\s*([\d.]+)(?:\s*\{Laser Power\}:\s*([\d.]+))?")


def _plane_lasers(description: str | None) -> list[list[float]]:
    """Per plane, the laser lines the description states were on (power > 0 when given)."""
    if not description:
        return []
    sections = re.split(r"Plane #\d+:", description)[1:]
    lasers = []
    for section in sections:
        on = []
        for found in _LASER.finditer(section):
            power = found.group(2)
            if power is not None and float(power) <= 0:
                continue
            wavelength = float(found.group(1))
            if wavelength > 0 and wavelength not in on:
                on.append(wavelength)
        lasers.append(on)
    return lasers if any(lasers) else []


def _stated_excitation(
    excitation: float | None, lasers_on: list[float], label: str, warnings: list[str]
) -> float | None:
    """The channel's excitation, checked against the lasers its plane states were on.

    Why: nd2's ``excitationLambdaNm`` can name a line that was off (405 nm for
    FITC/TRITC/GFP channels acquired with 488 and 561 nm). A value among the
    stated lasers stands; otherwise one stated laser replaces it, and with
    several the channel's excitation is unknown. Both conflicts are warnings.
    """
    if not lasers_on or excitation in lasers_on:
        return excitation
    stated = ", ".join(f"{w:g}" for w in lasers_on)
    if len(lasers_on) == 1:
        warnings.append(
            f"ND2 {label}: excitation {excitation} nm in the channel metadata, but the "
            f"description states the laser on was {stated} nm; the laser is used"
        )
        return lasers_on[0]
    warnings.append(
        f"ND2 {label}: excitation {excitation} nm in the channel metadata is none of the "
        f"lasers the description states were on ({stated} nm): unknown"
    )
    return None


def _parse_local_dates(text: str) -> list[datetime]:
    cleaned = " ".join(text.split())
    found = []
    for fmt in _DATE_FORMATS:
        try:
            found.append(datetime.strptime(cleaned, fmt))  # local time, zone unknown
        except ValueError:
            continue
    return list(dict.fromkeys(found))


def _as_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # NamedTuple (Attributes)
        return {k: _as_plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_as_plain(v) for v in value]
    return value
