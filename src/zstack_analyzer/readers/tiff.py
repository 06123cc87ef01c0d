"""Plain TIFF and BigTIFF, the generic fallback (always last in the registry).

Why last: every format above may be a TIFF underneath; only when none claims
the file do we read it as pages. Calibration comes from the most specific
source present: FEI/Thermo SEM ``Scan/PixelWidth``, Aperio SVS ``MPP``, else
the resolution tags (refused when they are a screen default or a stand-in).
A stack of same-shaped pages is read as Z.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

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
    resolution_um,
    series_plan,
    vendor_safe,
)
from zstack_analyzer.readers._wsi_tiff import (
    SlideFacts,
    associated_series,
    slide_facts,
    wsi_kind,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TiffReader"]


class TiffReader(TiffFamilyReader):
    """Any TIFF or BigTIFF: one scene per tifffile series, pyramids as levels.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("sem.tif") as image:  # doctest: +SKIP
    ...     image.metadata().physical_size.x_um
    """

    format_name: ClassVar[str] = "TIFF"
    suffixes: ClassVar[tuple[str, ...]] = (
        ".tif",
        ".tiff",
        ".btf",
        ".tf8",
        ".svs",
        ".ndpi",
        ".scn",
        ".bif",
        ".qptiff",
    )

    @classmethod
    def claims(cls, head: bytes, peek: TiffPeek) -> bool:
        """Any TIFF or BigTIFF (the last reader tried: every TIFF is one)."""
        return True

    def _build_plans(self) -> list[ScenePlan]:
        plans: list[ScenePlan] = []
        # Whole-slide TIFFs: thumbnail/label/macro series are associated images, not scenes.
        self._series_of_scene: list[int] = []
        self._associated = associated_series(self.tif, wsi_kind(self.tif))
        for number, series in enumerate(self.tif.series):
            if number in self._associated:
                continue
            plan, _ = series_plan(
                series,
                index=len(plans),
                name=series.name or None,
                rename={"I": "Z", "Q": "Z"},
            )
            plans.append(plan)
            self._series_of_scene.append(number)
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
        if tif.is_svs or tif.is_bif:
            facts = slide_facts(tif, "svs" if tif.is_svs else "bif")
            if facts.mpp is not None:
                source = facts.sources["mpp"]
                provenance["physical_size.x_um"] = source
                provenance["physical_size.y_um"] = source
                return PhysicalSize(x_um=facts.mpp, y_um=facts.mpp)
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
        series = self.tif.series[self._series_of_scene[scene]]
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
            str(tags[k].value).strip() or None if k in tags else None
            for k in ("Make", "Model", "Software")
        )
        microscope = (
            MicroscopeInfo(manufacturer=make, model=model, software=software)
            if make or model or software
            else None
        )
        if microscope is not None:
            provenance["microscope"] = "TIFF Make, Model, Software tags"
        exif = self._exif(page)
        acquired_local = None
        if self.tif.is_fei:
            microscope, acquired_local = _fei_instrument(
                self.tif.fei_metadata or {}, microscope, provenance, warnings
            )
        kind = wsi_kind(self.tif)
        if acquired_local is None:
            acquired_local = _tiff_datetime(
                exif, tags, provenance, _NDPI_DATETIME if kind == "ndpi" else _FILE_DATETIME
            )
        if acquired_local is not None:
            warnings.append(
                "acquisition time zone unknown: acquired_at_local holds the time as written"
            )
        exposure_ms = _exif_exposure_ms(exif)
        if exposure_ms is not None:
            provenance["channels[].exposure_ms"] = "EXIF ExposureTime"
        vendor: dict[str, Any] = {"series_kind": series.kind}
        if self.tif.is_fei:
            vendor["fei"] = vendor_safe(self.tif.fei_metadata)
        if page.description:
            vendor["description"] = vendor_safe(page.description)
        levels = plan.level_shapes
        objective = None
        acquired_at = None
        names: list[str | None] = [None] * info.size_c
        lighting: tuple[str | None, str | None] = (None, None)
        if kind is not None:
            microscope, objective, acquired_at, acquired_local, facts = self._slide_metadata(
                kind,
                self._series_of_scene[scene],
                microscope,
                acquired_local,
                provenance,
                warnings,
                vendor,
            )
            if len(facts.channel_names) == info.size_c and scene == 0:
                names = facts.channel_names
            lighting = (facts.illumination, facts.contrast_method)
            if facts.pixel_size_um is not None:
                # the slide's own geometry beats the TIFF resolution tags, as in Bio-Formats
                x_um, y_um = facts.pixel_size_um
                physical = physical.model_copy(update={"x_um": x_um, "y_um": y_um})
                provenance["physical_size.x_um"] = facts.sources["pixel_size"]
                provenance["physical_size.y_um"] = facts.sources["pixel_size"]
        return self.scene_metadata(
            info,
            physical_size=physical,
            channels=[
                ChannelInfo(
                    index=c,
                    name=names[c],
                    exposure_ms=exposure_ms,
                    illumination=lighting[0],
                    contrast_method=lighting[1],
                )
                for c in range(info.size_c)
            ],
            microscope=microscope,
            objective=objective,
            acquired_at=acquired_at,
            acquired_at_local=acquired_local,
            pyramid_levels=levels if len(levels) > 1 else [],
            provenance=provenance,
            warnings=warnings,
            vendor_metadata=vendor,
        )

    def _slide_metadata(
        self,
        kind: str,
        series: int,
        microscope: MicroscopeInfo | None,
        acquired_local: datetime | None,
        provenance: dict[str, str],
        warnings: list[str],
        vendor: dict[str, Any],
    ) -> tuple[
        MicroscopeInfo | None,
        ObjectiveInfo | None,
        datetime | None,
        datetime | None,
        SlideFacts,
    ]:
        """Scanner, objective, acquisition time and associated images of a whole-slide TIFF.

        ``series``: the tifffile series of the scene (an SCN says each image's objective).
        """
        facts = slide_facts(self.tif, kind, series)
        vendor["slide_format"] = kind
        vendor["associated_images"] = [
            {"name": s.name, "shape": [int(v) for v in s.shape], "axes": str(s.axes)}
            for number, s in enumerate(self.tif.series)
            if number in self._associated
        ]
        if facts.fields:
            vendor["aperio"] = vendor_safe(facts.fields)
        objective = None
        if facts.magnification is not None or facts.numerical_aperture is not None:
            objective = ObjectiveInfo(
                magnification=facts.magnification, numerical_aperture=facts.numerical_aperture
            )
        for name in ("magnification", "numerical_aperture"):
            if name in facts.sources:
                provenance[f"objective.{name}"] = facts.sources[name]
        for name, source in facts.sources.items():
            if name.startswith("microscope"):
                provenance[name] = source
        if "illumination" in facts.sources:
            provenance["channels[].illumination"] = facts.sources["illumination"]
        warnings.extend(facts.warnings)
        base = microscope or MicroscopeInfo()
        microscope = base.model_copy(
            update={
                k: v
                for k, v in {
                    "manufacturer": facts.manufacturer,
                    "model": facts.model,
                    "serial_number": facts.serial_number,
                    "software": facts.software,
                    "software_version": facts.software_version,
                }.items()
                # the vendor's own software line beats a converter's Software tag, and
                # a model or serial from the vendor's text the TIFF Model tag
                if v is not None
                and (
                    getattr(base, k) is None
                    or k.startswith("software")
                    or f"microscope.{k}" in facts.sources
                )
            }
        )
        acquired_at = facts.acquired_at
        if acquired_at is not None:
            provenance["acquired_at"] = facts.sources["acquired_at"]
            acquired_local = None
            provenance.pop("acquired_at_local", None)
            warnings[:] = [w for w in warnings if not w.startswith("acquisition time zone")]
        elif facts.acquired_at_local is not None and (
            # the slide's own time beats a TIFF DateTime, the time the file was written
            acquired_local is None or provenance.get("acquired_at_local") == _FILE_DATETIME
        ):
            acquired_local = facts.acquired_at_local
            provenance["acquired_at_local"] = facts.sources["acquired_at_local"]
            zone = "acquisition time zone unknown: acquired_at_local holds the time as written"
            if zone not in warnings:
                warnings.append(zone)
        if "channels.name" in facts.sources:
            provenance["channels.name"] = facts.sources["channels.name"]
        return microscope, objective, acquired_at, acquired_local, facts

    def _exif(self, page: Any) -> dict[str, Any]:
        """The page's EXIF IFD as tifffile parsed it ({} when absent or unreadable)."""
        tag = page.tags.get("ExifTag")
        value = tag.value if tag is not None else None
        return dict(value) if isinstance(value, dict) else {}

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


_EXIF_TIME = "%Y:%m:%d %H:%M:%S"


#: What a TIFF DateTime is, as its provenance says: for most TIFFs the time the file was written.
_FILE_DATETIME = "TIFF DateTime (file write time)"
#: An NDPI is written by the scanner as it scans (no converter makes one): its DateTime is the
#: scan time, which Bio-Formats' NDPIReader reports as the acquisition date too.
_NDPI_DATETIME = "NDPI TIFF DateTime (the scan time, as the scanner wrote it)"


def _tiff_datetime(
    exif: Mapping[str, Any], tags: Any, provenance: dict[str, str], label: str = _FILE_DATETIME
) -> datetime | None:
    """When the picture was taken: EXIF DateTimeOriginal, else the TIFF DateTime (``label``).

    Why this order: TIFF DateTime is when the file was last written (a
    conversion, an edit); DateTimeOriginal is when the image was captured. Both
    are local wall-clock times without a zone.
    """
    candidates = [
        (exif.get("DateTimeOriginal"), "EXIF DateTimeOriginal"),
        (
            tags["DateTimeOriginal"].value if "DateTimeOriginal" in tags else None,
            "EXIF DateTimeOriginal",
        ),
        (tags["DateTime"].value if "DateTime" in tags else None, label),
    ]
    for value, source in candidates:
        if not value:
            continue
        try:
            stamp = datetime.strptime(str(value).strip(), _EXIF_TIME)
        except ValueError:
            continue
        provenance["acquired_at_local"] = source
        return stamp
    return None


def _exif_exposure_ms(exif: Mapping[str, Any]) -> float | None:
    """EXIF ExposureTime (a rational in seconds) in ms; None when absent or not positive."""
    value: Any = exif.get("ExposureTime")
    try:
        if isinstance(value, tuple | list) and len(value) == 2:
            seconds = float(value[0]) / float(value[1])
        elif value is not None:
            seconds = float(value)
        else:
            return None
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return seconds * 1000.0 if seconds > 0 else None


def _fei_instrument(
    fei: Mapping[str, Any],
    microscope: MicroscopeInfo | None,
    provenance: dict[str, str],
    warnings: list[str],
) -> tuple[MicroscopeInfo | None, datetime | None]:
    """System, software version and acquisition time from an FEI/Thermo metadata block.

    ``[System] SystemType`` is the instrument ("Teneo", "Helios"), ``Software``
    the version of the microscope software (its name is not written), and
    ``[User] Date`` + ``Time`` the local acquisition time (US order, 12 h clock).
    The block is FEI's private TIFF tag, so its writer is FEI's software.
    """
    raw_system, raw_user = fei.get("System"), fei.get("User")
    system: Mapping[str, Any] = raw_system if isinstance(raw_system, dict) else {}
    user: Mapping[str, Any] = raw_user if isinstance(raw_user, dict) else {}
    model = str(system.get("SystemType") or "").strip() or None
    version = str(system.get("Software") or "").strip() or None
    if model or version:
        base = microscope or MicroscopeInfo()
        microscope = base.model_copy(
            update={
                "manufacturer": base.manufacturer or "FEI",
                "model": model or base.model,
                "software_version": version or base.software_version,
            }
        )
        provenance["microscope"] = (
            "FEI metadata [System] SystemType, Software (manufacturer: FEI's private TIFF tag)"
        )
    date, time = str(user.get("Date") or "").strip(), str(user.get("Time") or "").strip()
    if not date:
        return microscope, None
    for fmt in ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y"):
        try:
            stamp = datetime.strptime(f"{date} {time}".strip(), fmt)
        except ValueError:
            continue
        provenance["acquired_at_local"] = "FEI metadata [User] Date + Time"
        return microscope, stamp
    warnings.append(f"FEI [User] Date/Time {date!r} {time!r} not understood: ignored")
    return microscope, None
