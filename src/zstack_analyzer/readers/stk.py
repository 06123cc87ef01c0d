"""MetaMorph STK: a TIFF with UIC tags, several planes often packed in one IFD.

Why its own reader: MetaMorph stores the pixel size in UIC1 ``XCalibration``
with ``CalibrationUnits`` (not in the resolution tags, which hold a 72 dpi
default), the illumination setting per plane in ``PlaneProperty``, and a whole
time-lapse in the strips of a single IFD. A ``.tif`` with UIC tags is STK too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.metadata import ChannelInfo, ImageMetadata, PhysicalSize
from zstack_analyzer.readers._tiff_common import (
    ScenePlan,
    TiffFamilyReader,
    length_to_um,
    peek_tiff,
    series_plan,
    vendor_safe,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["StkReader"]

_EXPOSURE = re.compile(r"Exposure:\s*([0-9.]+)\s*(ms|s)\b")


class StkReader(TiffFamilyReader):
    """MetaMorph STK stacks and MetaMorph TIFFs with UIC tags.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("movie.stk") as image:  # doctest: +SKIP
    ...     image.metadata().size_t
    """

    format_name: ClassVar[str] = "STK"
    suffixes: ClassVar[tuple[str, ...]] = (".stk",)

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """A TIFF whose first IFD carries MetaMorph UIC tags, whatever its extension."""
        peek = peek_tiff(head, path)
        return peek is not None and peek.is_stk and not peek.is_ome and not peek.is_imagej

    def _build_plans(self) -> list[ScenePlan]:
        plan, _ = series_plan(self.tif.series[0], index=0, rename={"I": "Z", "Q": "Z"})
        self._check_ifd_chain()
        return [plan]

    def _build_metadata(self, scene: int) -> ImageMetadata:
        plan = self._plans[scene]
        info = plan.info
        stk: dict[str, Any] = dict(self.tif.stk_metadata or {})
        warnings: list[str] = []
        provenance: dict[str, str] = {"sizes": "tifffile STK series (UIC2 NumberPlanes)"}
        unit = stk.get("CalibrationUnits")
        factor = length_to_um(str(unit)) if unit else None
        x_um = y_um = z_um = None
        if factor is not None and stk.get("SpatialCalibration"):
            x_um = _positive(stk.get("XCalibration"), factor)
            y_um = _positive(stk.get("YCalibration"), factor)
            provenance["physical_size.x_um"] = "STK UIC XCalibration + CalibrationUnits"
            provenance["physical_size.y_um"] = "STK UIC YCalibration + CalibrationUnits"
            distances = np.asarray(stk.get("ZDistance", []), dtype=float).ravel()
            if info.size_z > 1 and distances.size > 1:
                z_um = _positive(float(distances[1:].mean()), factor)
                if z_um is not None:
                    provenance["physical_size.z_um"] = "STK UIC ZDistance"
        else:
            warnings.append(
                f"STK XCalibration {stk.get('XCalibration')} with CalibrationUnits {unit!r}: "
                "no unit, pixel size unknown"
            )
        names: list[str | None] = [None] * info.size_c
        illum = [
            p.get("value")
            for p in stk.get("PlaneProperty") or []
            if isinstance(p, dict) and p.get("name") == "_IllumSetting_"
        ]
        if info.size_c == 1 and illum:
            names[0] = str(illum[0]) or None
        exposure = None
        descriptions = stk.get("PlaneDescriptions") or []
        if descriptions:
            match = _EXPOSURE.search(str(descriptions[0]))
            if match:
                exposure = float(match.group(1)) * (1.0 if match.group(2) == "ms" else 1000.0)
        channels = [
            ChannelInfo(index=c, name=names[c], exposure_ms=exposure) for c in range(info.size_c)
        ]
        created = stk.get("CreateTime")
        acquired_local = created if hasattr(created, "isoformat") else None
        if acquired_local is not None:
            provenance["acquired_at_local"] = "STK UIC CreateTime"
            warnings.append(
                "acquisition time zone unknown: acquired_at_local holds the time as written"
            )
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=x_um, y_um=y_um, z_um=z_um),
            channels=channels,
            acquired_at_local=acquired_local,
            provenance=provenance,
            warnings=warnings,
            vendor_metadata={"stk": vendor_safe(stk)},
        )

    def raw_metadata(self) -> Mapping[str, Any]:
        """The first IFD's tags and tifffile's parsed UIC metadata."""
        raw = dict(super().raw_metadata())
        raw["stk"] = dict(self.tif.stk_metadata or {})
        return raw


def _positive(value: Any, factor: float) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number * factor if number > 0 else None
