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
    peek_tiff,
    resolution_um,
    series_plan,
    vendor_safe,
)
from zstack_analyzer.readers._wsi_tiff import associated_series, slide_facts, wsi_kind

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

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
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Any TIFF or BigTIFF magic number."""
        return peek_tiff(head, path) is not None

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
        objective = None
        acquired_at = None
        kind = wsi_kind(self.tif)
        names: list[str | None] = [None] * info.size_c
        if kind is not None:
            microscope, objective, acquired_at, acquired_local, slide_names = self._slide_metadata(
                kind, microscope, acquired_local, provenance, warnings, vendor
            )
            if len(slide_names) == info.size_c and scene == 0:
                names = slide_names
        return self.scene_metadata(
            info,
            physical_size=physical,
            channels=[ChannelInfo(index=c, name=names[c]) for c in range(info.size_c)],
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
        list[str | None],
    ]:
        """Scanner, objective, acquisition time and associated images of a whole-slide TIFF."""
        facts = slide_facts(self.tif, kind)
        vendor["slide_format"] = kind
        vendor["associated_images"] = [
            {"name": s.name, "shape": [int(v) for v in s.shape], "axes": str(s.axes)}
            for number, s in enumerate(self.tif.series)
            if number in self._associated
        ]
        if facts.fields:
            vendor["aperio"] = vendor_safe(facts.fields)
        objective = None
        if facts.magnification is not None:
            objective = ObjectiveInfo(magnification=facts.magnification)
            provenance["objective.magnification"] = facts.sources["magnification"]
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
                # the vendor's own software line beats a converter's Software tag
                if v is not None and (getattr(base, k) is None or k.startswith("software"))
            }
        )
        acquired_at = facts.acquired_at
        if acquired_at is not None:
            provenance["acquired_at"] = facts.sources["acquired_at"]
            acquired_local = None
            provenance.pop("acquired_at_local", None)
            warnings[:] = [w for w in warnings if not w.startswith("acquisition time zone")]
        elif facts.acquired_at_local is not None and acquired_local is None:
            acquired_local = facts.acquired_at_local
            provenance["acquired_at_local"] = facts.sources["acquired_at_local"]
            warnings.append(
                "acquisition time zone unknown: acquired_at_local holds the time as written"
            )
        if "channels.name" in facts.sources:
            provenance["channels.name"] = facts.sources["channels.name"]
        return microscope, objective, acquired_at, acquired_local, facts.channel_names

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
