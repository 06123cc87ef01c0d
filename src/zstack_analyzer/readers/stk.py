"""MetaMorph STK: a TIFF with UIC tags, several planes often packed in one IFD.

Why its own reader: MetaMorph stores the pixel size in UIC1 ``XCalibration``
with ``CalibrationUnits`` (not in the resolution tags, which hold a 72 dpi
default), the illumination setting per plane in ``PlaneProperty``, and a whole
time-lapse in the strips of a single IFD. A ``.tif`` with UIC tags is STK too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    PhysicalSize,
)
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
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """A TIFF whose first IFD carries MetaMorph UIC tags, whatever its extension."""
        return peek.is_stk and not peek.is_ome and not peek.is_imagej

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
        stamps = _plane_times(stk.get("DatetimeCreated"))
        acquired_local = stamps[0] if stamps else None
        if acquired_local is not None:
            provenance["acquired_at_local"] = "STK UIC3 DatetimeCreated of the first plane"
        else:
            created = stk.get("CreateTime")
            acquired_local = created if hasattr(created, "isoformat") else None
            if acquired_local is not None:
                provenance["acquired_at_local"] = "STK UIC CreateTime"
        if acquired_local is not None:
            warnings.append(
                "acquisition time zone unknown: acquired_at_local holds the time as written"
            )
        interval = None
        if info.size_t > 1 and len(stamps) >= info.size_t:
            span = (stamps[info.size_t - 1] - stamps[0]).total_seconds()
            if span > 0:
                interval = span / (info.size_t - 1)
                provenance["time_interval_s"] = (
                    "STK UIC3 DatetimeCreated per plane (mean step between T planes)"
                )
        microscope = _software(self.tif.pages.first.tags.get("Software"))
        if microscope is not None:
            provenance["microscope.software"] = (
                "TIFF Software tag (MetaMorph writes 'MetaMorph x.y')"
            )
        objective = _objective(stk)
        if objective is not None:
            provenance["objective"] = "STK UIC PlaneProperty _MagSetting_, _MagNA_"
        return self.scene_metadata(
            info,
            physical_size=PhysicalSize(x_um=x_um, y_um=y_um, z_um=z_um),
            time_interval_s=interval,
            channels=channels,
            objective=objective,
            microscope=microscope,
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


def _plane_times(value: Any) -> list[datetime]:
    """Per-plane creation times (UIC3 DatetimeCreated, numpy datetime64) as naive datetimes.

    Why not UIC1 CreateTime: MetaMorph updates it as planes are added, so in a
    time-lapse it is the last plane's time (movie.stk: 13:49:35.392, its first
    plane 13:49:34.528); the start of the acquisition is the first plane's.
    """
    if value is None:
        return []
    try:
        stamps = np.asarray(value).astype("datetime64[us]").ravel()
    except (TypeError, ValueError):
        return []
    out = []
    for stamp in stamps:
        if np.isnat(stamp):
            return []
        moment = stamp.astype(datetime)
        if not isinstance(moment, datetime) or moment.year < 1900:
            return []  # a zero Julian day: no time recorded
        out.append(moment)
    return out


_SOFTWARE = re.compile(r"^\s*(MetaMorph)\s+(\S+)")


def _software(tag: Any) -> MicroscopeInfo | None:
    """MetaMorph's "MetaMorph 6.1" Software tag as name and version."""
    text = str(tag.value).strip() if tag is not None else ""
    if not text:
        return None
    found = _SOFTWARE.match(text)
    if found:
        return MicroscopeInfo(software=found.group(1), software_version=found.group(2))
    return MicroscopeInfo(software=text)


def _objective(stk: dict[str, Any]) -> ObjectiveInfo | None:
    """The objective MetaMorph names in PlaneProperty (_MagSetting_ name, _MagNA_ aperture)."""
    props = {
        p.get("name"): p.get("value") for p in stk.get("PlaneProperty") or [] if isinstance(p, dict)
    }
    name = str(props.get("_MagSetting_") or "").strip() or None
    try:
        aperture = float(props.get("_MagNA_") or 0) or None
    except (TypeError, ValueError):
        aperture = None
    if aperture is not None and aperture <= 0:
        aperture = None
    if name is None and aperture is None:
        return None
    return ObjectiveInfo(name=name, numerical_aperture=aperture)
