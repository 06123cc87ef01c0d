"""Zeiss LSM (LSM 510/710/780... confocals, ZEN black before CZI): a TIFF with CZ_LSMINFO.

Why its own reader: an LSM image IFD holds one (T, Z) plane with every
channel as a planar sample, every image IFD is followed by a reduced-size RGB
thumbnail IFD that is never data, and sizes, voxel sizes (in metres), channel
names and colours, time stamps and the objective live in the CZ_LSMINFO
record (tag 34412) and the blocks it points to, not in TIFF tags. The generic
TIFF path saw planar-sample pages under a T,Z,C series and refused the file.

Line scans (scan types without Y) follow DESIGN §3: the page rows are the
scanned axis (Z for an XZ scan, T for an XT scan) and Y is 1.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    ObjectiveInfo,
    PhysicalSize,
    SceneInfo,
)
from zstack_analyzer.readers._base import ImageReader
from zstack_analyzer.readers._tiff_common import ScenePlan, TiffFamilyReader, TiffPeek, vendor_safe

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LsmReader"]

CZ_LSMINFO_TAG = 34412
_OBJECTIVE = re.compile(r"(\d+(?:\.\d+)?)\s*x\s*/\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_IMMERSION = ("Oil", "Water", "Glycerol", "Glycerin", "Silicone", "Multi", "Air")


class LsmReader(TiffFamilyReader):
    """Zeiss LSM files: one scene, channels from planar samples, thumbnails skipped.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("cells.lsm") as image:  # doctest: +SKIP
    ...     image.metadata().physical_size.x_um
    """

    format_name: ClassVar[str] = "LSM"
    suffixes: ClassVar[tuple[str, ...]] = (".lsm",)

    @classmethod
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """A little-endian TIFF whose first IFD carries CZ_LSMINFO (tag 34412)."""
        return head[:2] == b"II" and CZ_LSMINFO_TAG in peek.tags

    def _build_plans(self) -> list[ScenePlan]:
        tif = self.tif
        # tifffile rebuilds lsm_metadata (and re-walks its blocks) on every access: keep one copy.
        lsm = self._lsm = dict(tif.lsm_metadata or {})
        if not lsm:
            msg = "CZ_LSMINFO record unreadable"
            raise ValueError(msg)
        axes, shape = _series_layout(lsm, tif.pages.first)
        sizes = dict(zip(axes, shape, strict=True))
        keyframe = tif.pages.first
        page_axes = str(keyframe.axes)
        spp = 1
        # The page's samples are the channels: planar (Zeiss's usual layout) or, in an RGB
        # LSM, interleaved per pixel, which tifffile's series puts on a C axis after X and
        # Bio-Formats splits into channels. Only interleaved samples the series has no C
        # axis for (CZ_LSMINFO states one channel) are the RGB samples of one channel.
        channels_in_page = "S" in page_axes and (int(keyframe.planarconfig) == 2 or "C" in axes)
        if "S" in page_axes and not channels_in_page:
            spp = int(dict(zip(page_axes, keyframe.shape, strict=True))["S"])  # RGB samples
        rows = int(keyframe.imagelength)
        columns = int(keyframe.imagewidth)
        line_axis = None if "Y" in axes else axes[axes.index("X") - 1]
        if line_axis is not None and sizes.get(line_axis) != rows:
            msg = f"line scan with {rows} rows per page but {line_axis}={sizes.get(line_axis)}"
            raise ValueError(msg)
        # Axes that index pages: the series axes before the page's own (C, Y, X or the line axis).
        own = {"X", "Y", "S"} | ({"C"} if channels_in_page or "C" not in axes else set())
        if line_axis is not None:
            own.add(line_axis)
        page_index_axes = [a for a in axes if a not in own]
        extra = {a: sizes[a] for a in page_index_axes if a not in "TCZ" and sizes[a] > 1}
        info = SceneInfo(
            index=0,
            name=str(lsm.get("Name", "") or "") or None,
            size_t=sizes.get("T", 1),
            size_c=sizes.get("C", 1),
            size_z=sizes.get("Z", 1),
            size_y=1 if line_axis else rows,
            size_x=columns,
            samples_per_pixel=spp,
            dtype=np.dtype(keyframe.dtype).newbyteorder("=").name,
            extra_dims=extra,
        )
        # Image IFDs are the even ones (each is followed by its thumbnail), as tifffile's
        # LSM series takes them. Counting the IFDs walks their chain (a few bytes each);
        # a page is parsed when a plane is read (tifffile's series parsed all of them at
        # open: most of the cost of opening an LSM, issue 22).
        pages = tif.pages
        image_ifds = (len(pages) + 1) // 2
        page_sizes = [sizes[a] for a in page_index_axes]
        if image_ifds < math.prod(page_sizes):
            msg = (
                f"{image_ifds} image IFDs for {math.prod(page_sizes)} planes declared in CZ_LSMINFO"
            )
            raise ValueError(msg)

        def locate(t: int, c: int, z: int) -> tuple[int, int]:
            position = {"T": t, "C": c, "Z": z}
            flat = 0
            for axis, size in zip(page_index_axes, page_sizes, strict=True):
                flat = flat * size + position.get(axis, 0)
            sub = 0
            if channels_in_page:
                sub = c
            if line_axis is not None:
                sub = sub * rows + position.get(line_axis, 0)
            return flat, sub

        def page(level: int, slot: int) -> Any:
            return pages[2 * slot]  # callers hold the reader's I/O lock

        plan = ScenePlan(
            info=info,
            dtype=np.dtype(info.dtype),
            level_shapes=[(info.size_y, info.size_x)],
            locate=locate,
            page=page,
            extra={"channels_in_page": channels_in_page, "line_axis": line_axis, "rows": rows},
        )
        self._check_ifd_chain()
        return [plan]

    def _read_level_plane(self, scene: int, level: int, t: int, c: int, z: int) -> np.ndarray:
        """Decode the (T, Z) page and take channel ``c`` (and the line row of a line scan)."""
        self.check_open()
        plan = self._plans[scene]
        slot, sub = plan.locate(t, c, z)
        with self._io_lock:
            page = plan.page(level, slot)
        data = np.asarray(self._decode_page(page, (t, c, z), maxworkers=self._workers))
        axes = str(page.axes)
        if plan.extra["channels_in_page"]:
            channel = sub // plan.extra["rows"] if plan.extra["line_axis"] else sub
            data = (
                data[channel]
                if axes.startswith("S")
                else np.take(data, channel, axis=axes.index("S"))
            )
        if plan.extra["line_axis"] is not None:
            row = sub % plan.extra["rows"]
            data = data[row : row + 1]
        info = plan.info
        out_shape = (
            (info.size_y, info.size_x, info.samples_per_pixel)
            if info.samples_per_pixel > 1
            else (info.size_y, info.size_x)
        )
        if data.shape != out_shape:
            msg = f"{self.path.name}: an LSM page holds {data.shape}, expected {out_shape}"
            raise CorruptFileError(msg, path=self.path)
        return np.ascontiguousarray(data.astype(plan.dtype, copy=False))

    def read_plane_into(self, scene: int, t: int, c: int, z: int, out: np.ndarray) -> None:
        """Planes are channels of a page: no direct decode into ``out``."""
        out[...] = self.read_plane(scene, t, c, z)

    def _planes_share_pages(self, scene: int) -> bool:
        """True when a page holds several planes: channels as samples, or a line scan's lines."""
        extra = self._plan(scene).extra
        return bool(extra["channels_in_page"]) or extra["line_axis"] is not None

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """``None`` when a page holds several planes: a region is cut from its whole plane.

        Why: the TIFF region path reads the strips of a page's first plane (the
        ``sub`` index of a channel or a line is not a strip of its own), so a
        region of channel 1 of a multi-channel LSM came back as channel 0's.
        """
        if self._planes_share_pages(scene):
            return None
        return super().region_grid(scene, level)

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
        """Strips of a one-plane page; otherwise the region of the decoded plane (see above)."""
        if self._planes_share_pages(scene):
            return ImageReader.read_region(self, scene, t, c, z, rows, cols, level=level)
        return super().read_region(scene, t, c, z, rows, cols, level=level)

    def _build_metadata(self, scene: int) -> ImageMetadata:
        plan = self._plans[scene]
        info = plan.info
        lsm = self._lsm
        warnings: list[str] = []
        provenance: dict[str, str] = {"sizes": "CZ_LSMINFO Dimension*"}
        voxel = {}
        for axis in ("X", "Y", "Z"):
            value = _metres_to_um(lsm.get(f"VoxelSize{axis}"))
            if axis == "Y" and info.size_y == 1 and plan.extra["line_axis"]:
                value = None  # a line scan has no Y step
            if axis == "Z" and info.size_z == 1:
                value = value if value else None
            voxel[axis] = value
            if value is not None:
                provenance[f"physical_size.{axis.lower()}_um"] = f"CZ_LSMINFO VoxelSize{axis} (m)"
        if plan.extra["line_axis"] == "Z":
            warnings.append("XZ line scan: Y=1, the scanned lines are Z")
        if info.extra_dims:
            warnings.append(f"axes {info.extra_dims} beyond TCZYX are read at index 0")
        channels = self._channels(lsm, info.size_c, provenance)
        interval = None
        stamps = np.asarray(lsm.get("TimeStamps", []), dtype=float).ravel()
        if info.size_t > 1 and stamps.size >= 2:
            steps = np.diff(stamps[: info.size_t])
            if steps.size and float(steps.mean()) > 0:
                interval = float(steps.mean())
                provenance["time_interval_s"] = "LSM TimeStamps (mean step)"
        if interval is None and float(lsm.get("TimeIntervall", 0) or 0) > 0 and info.size_t > 1:
            interval = float(lsm["TimeIntervall"])
            provenance["time_interval_s"] = "CZ_LSMINFO TimeIntervall"
        scan = lsm.get("ScanInformation") or {}
        objective = _objective(scan.get("Objective"))
        vendor: dict[str, Any] = {
            key: lsm.get(key)
            for key in (
                "ScanType",
                "SpectralScan",
                "TypeOfData",
                "DimensionP",
                "DimensionM",
                "OriginX",
                "OriginY",
                "OriginZ",
            )
            if key in lsm
        }
        vendor["TimeStamps"] = stamps.tolist()
        # The scan tree (hundreds of entries in real files) stays in raw_metadata(); the
        # vendor copy keeps its top-level values, which is what a person looks for.
        vendor["ScanInformation"] = {
            k: v for k, v in scan.items() if not isinstance(v, list | dict)
        }
        vendor["thumbnail_pages"] = self._thumbnail_series()
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=voxel["X"], y_um=voxel["Y"], z_um=voxel["Z"]),
            time_interval_s=interval,
            channels=channels,
            objective=objective,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor_safe(vendor),
        )

    def _channels(
        self, lsm: Mapping[str, Any], size_c: int, provenance: dict[str, str]
    ) -> list[ChannelInfo]:
        colours = lsm.get("ChannelColors") or {}
        names = list(colours.get("ColorNames") or [])
        rgba = list(colours.get("Colors") or [])
        data_channels = []
        illumination = []
        for track in (lsm.get("ScanInformation") or {}).get("Tracks", []) or []:
            data_channels += [d for d in track.get("DataChannels", []) or [] if isinstance(d, dict)]
            illumination += [
                d for d in track.get("IlluminationChannels", []) or [] if isinstance(d, dict)
            ]
        if len(names) == size_c:
            provenance["channels.name"] = "LSM ChannelColors names"
        elif len(data_channels) == size_c:
            names = [d.get("Name") for d in data_channels]
            provenance["channels.name"] = "LSM ScanInformation DataChannel/Name"
        else:
            names = [None] * size_c
        channels = []
        for c in range(size_c):
            colour = None
            if len(rgba) == size_c:
                r, g, b = (int(v) for v in rgba[c][:3])
                colour = f"#{r:02X}{g:02X}{b:02X}"
            elif len(data_channels) == size_c and isinstance(data_channels[c].get("Color"), int):
                value = int(data_channels[c]["Color"])
                colour = f"#{value & 0xFF:02X}{value >> 8 & 0xFF:02X}{value >> 16 & 0xFF:02X}"
            wavelength = illumination[c].get("Wavelength") if len(illumination) == size_c else None
            name = names[c]
            channels.append(
                ChannelInfo(
                    index=c,
                    name=str(name).strip() or None if name is not None else None,
                    color=colour,
                    excitation_nm=float(wavelength)
                    if isinstance(wavelength, int | float) and wavelength > 0
                    else None,
                )
            )
        return channels

    def _thumbnail_series(self) -> int:
        """1 when the odd IFDs are reduced-size thumbnails (tifffile's second LSM series), else 0."""
        pages = self.tif.pages
        if len(pages) < 2:
            return 0
        with self._io_lock:
            second = pages[1]
        return 1 if getattr(second, "is_reduced", False) else 0

    def raw_metadata(self) -> Mapping[str, Any]:
        """The first IFD's tags and tifffile's parsed CZ_LSMINFO with its blocks."""
        raw = dict(super().raw_metadata())
        raw["lsm"] = dict(self._lsm)
        return raw


def _series_layout(lsm: Mapping[str, Any], page0: Any) -> tuple[str, tuple[int, ...]]:
    """Axes and shape of the image series, as tifffile's LSM series states them (squeezed).

    Why not ``TiffFile.series``: it parses every IFD (image and thumbnail) to
    build its page list; the axes and shape follow from CZ_LSMINFO and the
    first page alone (tifffile's ``_series_lsm``, then ``squeeze_axes``).
    ``tests/readers/test_lsm.py`` holds them equal to tifffile's series.
    """
    from tifffile.tifffile import TIFF, squeeze_axes

    scan_type = lsm.get("ScanType")
    try:
        axes = str(TIFF.CZ_LSMINFO_SCANTYPE[int(scan_type)])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        msg = f"CZ_LSMINFO ScanType {scan_type!r} is not a known scan type"
        raise ValueError(msg) from None
    if page0.planarconfig == 1:
        axes = axes.replace("C", "").replace("X", "XC")
    elif page0.planarconfig != 2 and page0.samplesperpixel == 1:
        axes = axes.replace("C", "")
    if lsm.get("DimensionP", 0) > 0:
        axes = "P" + axes
    if lsm.get("DimensionM", 0) > 0:
        axes = "M" + axes
    full = tuple(int(lsm[TIFF.CZ_LSMINFO_DIMENSIONS[a]]) for a in axes)
    shape, squeezed, _ = squeeze_axes(full, axes)
    return str(squeezed), tuple(int(n) for n in shape)


def _metres_to_um(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number * 1e6 if math.isfinite(number) and number > 0 else None


def _objective(text: Any) -> ObjectiveInfo | None:
    if not text or not isinstance(text, str):
        return None
    match = _OBJECTIVE.search(text)
    immersion = next((word for word in _IMMERSION if word.lower() in text.lower()), None)
    return ObjectiveInfo(
        name=text.strip(),
        magnification=float(match.group(1)) if match else None,
        numerical_aperture=float(match.group(2)) if match else None,
        immersion=immersion,
    )
