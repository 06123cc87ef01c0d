"""Plain TIFF and BigTIFF, the generic fallback (always last in the registry).

Why last: every format above may be a TIFF underneath; only when none claims
the file do we read it as pages. Calibration comes from the most specific
source present: FEI/Thermo SEM ``Scan/PixelWidth``, Aperio SVS ``MPP``, else
the resolution tags (refused when they are a screen default or a stand-in).
A stack of same-shaped pages is read as Z.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, MicroscopeInfo, PhysicalSize
from zstack_analyzer.readers._tiff_common import (
    ScenePlan,
    TiffFamilyReader,
    peek_tiff,
    resolution_um,
    series_plan,
    vendor_safe,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["TiffReader"]

_SVS_MPP = re.compile(r"MPP\s*=\s*([0-9.]+)")


class TiffReader(TiffFamilyReader):
    """Any TIFF or BigTIFF: one scene per tifffile series, pyramids as levels.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("sem.tif") as image:  # doctest: +SKIP
    ...     image.metadata().physical_size.x_um
    """

    format_name: ClassVar[str] = "TIFF"
    suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff", ".btf", ".tf8", ".svs")

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Any TIFF or BigTIFF magic number."""
        return peek_tiff(head, path) is not None

    def _build_plans(self) -> list[ScenePlan]:
        plans = []
        for index, series in enumerate(self.tif.series):
            plan, _ = series_plan(
                series, index=index, name=series.name or None, rename={"I": "Z", "Q": "Z"}
            )
            plans.append(plan)
        if not plans:
            msg = "no image series"
            raise ValueError(msg)
        self._check_ifd_chain()
        return plans

    def _calibration(
        self, page: Any, provenance: dict[str, str], warnings: list[str]
    ) -> PhysicalSize:
        tif = self.tif
        if tif.is_fei:
            scan = (tif.fei_metadata or {}).get("Scan", {})
            x = _metres_to_um(scan.get("PixelWidth"))
            y = _metres_to_um(scan.get("PixelHeight"))
            if x is not None:
                provenance["physical_size.x_um"] = "FEI Scan/PixelWidth"
                provenance["physical_size.y_um"] = "FEI Scan/PixelHeight"
                return PhysicalSize(x_um=x, y_um=y if y is not None else x)
            warnings.append("FEI metadata without Scan/PixelWidth: pixel size unknown")
            return PhysicalSize()
        if tif.is_svs:
            match = _SVS_MPP.search(page.description or "")
            if match and float(match.group(1)) > 0:
                provenance["physical_size.x_um"] = "Aperio SVS MPP"
                provenance["physical_size.y_um"] = "Aperio SVS MPP"
                mpp = float(match.group(1))
                return PhysicalSize(x_um=mpp, y_um=mpp)
        x_um, y_um, warning = resolution_um(page)
        if warning:
            warnings.append(warning)
        if x_um is not None:
            provenance["physical_size.x_um"] = "TIFF XResolution/ResolutionUnit"
            provenance["physical_size.y_um"] = "TIFF YResolution/ResolutionUnit"
        return PhysicalSize(x_um=x_um, y_um=y_um)

    def _build_metadata(self, scene: int) -> ImageMetadata:
        plan = self._plans[scene]
        info = plan.info
        series = self.tif.series[scene]
        page = series.keyframe
        warnings: list[str] = []
        provenance: dict[str, str] = {"sizes": f"tifffile {series.kind} series"}
        physical = self._calibration(page, provenance, warnings)
        if int(page.photometric) == 3:
            warnings.append("palette image: values are the stored indices (colormap not applied)")
        if info.extra_dims:
            warnings.append(f"axes {info.extra_dims} beyond TCZYX are read at index 0")
        tags = page.tags
        make, model, software = (
            str(tags[k].value) if k in tags else None for k in ("Make", "Model", "Software")
        )
        microscope = (
            MicroscopeInfo(manufacturer=make, model=model, software=software)
            if make or model or software
            else None
        )
        acquired_local = None
        if "DateTime" in tags:
            try:
                acquired_local = datetime.strptime(str(tags["DateTime"].value), "%Y:%m:%d %H:%M:%S")
                provenance["acquired_at_local"] = "TIFF DateTime"
                warnings.append(
                    "acquisition time zone unknown: acquired_at_local holds the time as written"
                )
            except ValueError:
                acquired_local = None
        vendor: dict[str, Any] = {"series_kind": series.kind}
        if self.tif.is_fei:
            vendor["fei"] = vendor_safe(self.tif.fei_metadata)
        if page.description:
            vendor["description"] = vendor_safe(page.description)
        levels = plan.level_shapes
        return self.scene_metadata(
            info,
            physical_size=physical,
            channels=[ChannelInfo(index=c) for c in range(info.size_c)],
            microscope=microscope,
            acquired_at_local=acquired_local,
            pyramid_levels=levels if len(levels) > 1 else [],
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor,
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The first IFD's tags and any vendor block tifffile parsed (FEI, SVS)."""
        raw = dict(super().raw_metadata())
        if self.tif.is_fei:
            raw["fei"] = self.tif.fei_metadata
        return raw


def _metres_to_um(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number * 1e6 if number > 0 else None
