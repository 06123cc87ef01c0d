r"""ImageJ hyperstacks: a TIFF whose first ImageDescription starts with ``ImageJ=``.

Why its own reader: ImageJ keeps T/Z/C counts, the Z step (``spacing``), the
length unit and the frame interval in that description, and its pixel size in
the resolution tags *in that unit* (mm and nm are common, µ is often written
escaped as ``\\u00B5m``). The TIFF layout still decides samples versus
channels: an RGB page is S=3 even when the description says ``channels=3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.errors import CorruptFileError
from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, MicroscopeInfo, PhysicalSize
from zstack_analyzer.readers._tiff_common import (
    ScenePlan,
    TiffFamilyReader,
    TiffPeek,
    length_to_um,
    series_plan,
    vendor_safe,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ImageJTiffReader"]

_TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


class ImageJTiffReader(TiffFamilyReader):
    """ImageJ TIFF stacks and hyperstacks (including >4 GiB contiguous ones).

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("stack.tif") as image:  # doctest: +SKIP
    ...     image.metadata().physical_size.z_um
    """

    format_name: ClassVar[str] = "ImageJ TIFF"
    suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff")

    @classmethod
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """A TIFF whose first ImageDescription is an ImageJ header (and not OME-XML)."""
        return peek.is_imagej and not peek.is_ome

    def _build_plans(self) -> list[ScenePlan]:
        series = self.tif.series[0]
        plan, _ = series_plan(series, index=0, rename={"I": "Z", "Q": "Z"})
        self._fallback = series.kind != "imagej"
        if self._fallback:
            # tifffile found the description inconsistent with the pages (a truncated
            # file, or counts that lie) and walked every IFD; refuse a broken chain.
            self._check_ifd_chain()
            declared = int((self.tif.imagej_metadata or {}).get("images", 1) or 1)
            present = len(self.tif.pages)
            if declared > present:
                msg = (
                    f"{self.path.name}: the ImageJ description declares {declared:,} images but "
                    f"the file holds {present:,} page(s) and too few bytes for the rest; the "
                    "file is truncated or corrupt"
                )
                raise CorruptFileError(msg, path=self.path)
        else:
            self._check_contiguous_extent(series)
        # Otherwise no IFD-chain walk here (tifffile's ImageJ series does not walk it either, so
        # opening stays constant-time): a truncated stack fails when its missing IFD or
        # plane is read, and contiguous planes are bounds-checked one by one.
        return [plan]

    def _check_contiguous_extent(self, series: Any) -> None:
        """Refuse a contiguous ImageJ stack whose pixel block runs past the end of the file.

        Why: ImageJ writes every plane in one block after the first IFD, so one
        comparison at open catches a truncated upload that would otherwise be
        accepted and fail only when its last planes are read.
        """
        offset = series.dataoffset
        if offset is None:
            return
        end = int(offset) + int(series.nbytes)
        size = int(self.tif.filehandle.size)
        if end > size:
            msg = (
                f"{self.path.name}: the ImageJ pixel data needs {end:,} bytes but the file holds "
                f"{size:,}; the file is truncated"
            )
            raise CorruptFileError(msg, path=self.path)

    def _build_metadata(self, scene: int) -> ImageMetadata:
        plan = self._plans[scene]
        info = plan.info
        page = self.tif.pages.first
        ij: dict[str, Any] = dict(self.tif.imagej_metadata or {})
        warnings: list[str] = []
        provenance: dict[str, str] = {"sizes": "TIFF layout + ImageJ description"}
        x_um = y_um = z_um = None
        unit = ij.get("unit")
        factor = length_to_um(str(unit)) if unit else None
        xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
        if factor is not None and xres is not None:
            x_um = _per_pixel(xres.value, factor)
            y_um = _per_pixel((yres or xres).value, factor)
            if x_um is not None:
                provenance["physical_size.x_um"] = f"ImageJ unit {unit!r} + TIFF XResolution"
                provenance["physical_size.y_um"] = f"ImageJ unit {unit!r} + TIFF YResolution"
            else:
                warnings.append(f"TIFF resolution {xres.value} is 0: pixel size unknown")
            spacing = ij.get("spacing")
            if spacing is not None:
                spacing = float(spacing)
                if spacing == 0:
                    warnings.append("ImageJ spacing is 0: Z step unknown")
                else:
                    z_um = spacing * factor
                    provenance["physical_size.z_um"] = "ImageJ description spacing"
                    if spacing < 0:
                        warnings.append(f"ImageJ spacing is negative ({spacing}): kept as found")
        elif unit and factor is None and str(unit).lower() not in ("pixel", "pixels"):
            warnings.append(f"ImageJ unit {unit!r} is not a known length unit: no calibration")
        elif xres is not None:
            warnings.append(f"ImageJ unit {unit!r}: the image is not calibrated")
        interval = None
        if ij.get("finterval"):
            tunit = str(ij.get("tunit", "s")).lower()
            interval = float(ij["finterval"]) * _TIME_UNITS.get(tunit, 1.0)
            provenance["time_interval_s"] = "ImageJ description finterval"
        channels_declared = ij.get("channels")
        if (
            info.samples_per_pixel > 1
            and channels_declared
            and int(channels_declared) != info.size_c
        ):
            warnings.append(
                f"ImageJ metadata says channels={channels_declared} but the TIFF stores "
                f"{info.samples_per_pixel} samples per pixel: kept as S={info.samples_per_pixel}, "
                f"C={info.size_c}"
            )
        if self._fallback:
            warnings.append(
                "the ImageJ description does not match the pages in the file: read as plain "
                "pages (sizes from the TIFF layout)"
            )
        if int(page.photometric) == 3:
            warnings.append("palette image: values are the stored indices (colormap not applied)")
        colours = _lut_colours(ij.get("LUTs"), info.size_c)
        channels = [ChannelInfo(index=c, color=colours[c]) for c in range(info.size_c)]
        if info.extra_dims:
            warnings.append(f"axes {info.extra_dims} beyond TCZYX are read at index 0")
        vendor = {k: v for k, v in ij.items() if k not in ("LUTs", "Ranges")}
        microscope = None
        version = str(ij.get("ImageJ") or "").strip()
        if version:
            # "ImageJ=1.53f" opens every ImageJ description: the writing software and its version.
            microscope = MicroscopeInfo(software="ImageJ", software_version=version)
            provenance["microscope.software"] = "ImageJ description ImageJ="
        return self.scene_metadata(
            info,
            microscope=microscope,
            physical_size=PhysicalSize(x_um=x_um, y_um=y_um, z_um=z_um),
            time_interval_s=interval,
            channels=channels,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata={"imagej": vendor_safe(vendor)},
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The first IFD's tags and tifffile's parsed ImageJ metadata."""
        raw = dict(super().raw_metadata())
        raw["imagej"] = dict(self.tif.imagej_metadata or {})
        return raw


def _per_pixel(value: tuple[int, int], factor: float) -> float | None:
    num, den = (float(v) for v in value)
    if num <= 0 or den <= 0:
        return None
    return den / num * factor


def _lut_colours(luts: Any, size_c: int) -> list[str | None]:
    """The brightest entry of each ImageJ channel LUT as ``#RRGGBB`` (cheap: already parsed)."""
    colours: list[str | None] = [None] * size_c
    if not isinstance(luts, list) or len(luts) != size_c:
        return colours
    for c, lut in enumerate(luts):
        array = np.asarray(lut)
        if array.ndim == 2 and array.shape[0] == 3 and array.shape[1] >= 1:
            r, g, b = (int(v) for v in array[:, -1])
            colours[c] = f"#{r:02X}{g:02X}{b:02X}"
    return colours
