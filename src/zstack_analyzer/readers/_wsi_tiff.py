"""Whole-slide TIFF variants (Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, PerkinElmer QPTIFF).

Why a module of its own: these are plain TIFFs to the registry (tifffile reads
their pyramids), but two things differ from a generic TIFF. The thumbnail,
label, macro and map pages that tifffile returns as extra series are
*associated images* of the slide, not scenes; and magnification, pixel size,
scanner and acquisition time sit in vendor text (the SVS description, the NDPI
private tags, SCN/QPTIFF XML, the BIF XMP). The TIFF reader asks here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "ASSOCIATED_NAMES",
    "SlideFacts",
    "associated_series",
    "is_associated",
    "slide_facts",
    "wsi_kind",
]

#: tifffile series names of associated images (lower case).
ASSOCIATED_NAMES = frozenset({"thumbnail", "label", "macro", "map", "overview", "probability"})

_SVS_FIELD = re.compile(r"\|\s*([^=|]+?)\s*=\s*([^|]*)")
_SVS_SOFTWARE = re.compile(r"^(Aperio [A-Za-z ]+?)\s+(v[\w.\-]+)")
_SVS_ZONE = re.compile(r"GMT\s*([+-])(\d{1,2}):?(\d{2})?")


def wsi_kind(tif: Any) -> str | None:
    """``"svs"``, ``"ndpi"``, ``"scn"``, ``"bif"``, ``"qpi"`` or ``None`` for other TIFFs."""
    for kind in ("svs", "ndpi", "scn", "bif", "qpi"):
        if getattr(tif, f"is_{kind}", False):
            return kind
    return None


def is_associated(series: Any) -> bool:
    """Whether a tifffile series is a thumbnail/label/macro/map image of a slide."""
    return str(series.name or "").strip().lower() in ASSOCIATED_NAMES


def associated_series(tif: Any, kind: str | None) -> set[int]:
    """Indices of tifffile series that are associated images of a slide (empty for other TIFFs).

    By name (thumbnail, label, macro, map...), and for Leica SCN the overview
    image: the one whose view covers the whole collection (as openslide and
    Bio-Formats decide; SCN images usually have no name).
    """
    if kind is None:
        return set()
    found = {k for k, series in enumerate(tif.series) if is_associated(series)}
    if kind == "scn":
        found |= _scn_overviews(str(tif.pages.first.description or ""))
    if len(found) == len(tif.series):
        return set()  # nothing would be left to show: keep them all as scenes
    return found


def _scn_overviews(xml: str) -> set[int]:
    return {k for k, image in enumerate(_scn_images(xml)) if image.overview}


@dataclass(frozen=True, slots=True)
class _ScnImage:
    """One SCN ``<image>`` as tifffile makes a series of it: overview or not, its own lens."""

    overview: bool
    objective: float | None


def _scn_images(xml: str) -> list[_ScnImage]:
    """The SCN images tifffile makes series of (those with a pixels dimension), in its order.

    Why one list: an image's objective and whether it is the overview are read from
    the same ``<image>`` element, so they cannot be paired with another image's (a
    label without an ``<objective>`` once shifted the macro's 0.6x onto the main
    image). Bio-Formats' LeicaSCNReader pairs them the same way, image by image.
    """
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(xml)
    except Exception:  # defusedxml raises ParseError, EntitiesForbidden...
        return []
    found: list[_ScnImage] = []
    for collection in root:
        if not collection.tag.endswith("collection"):
            continue
        size = (collection.get("sizeX"), collection.get("sizeY"))
        for image in collection:
            if not image.tag.endswith("image"):
                continue
            has_pixels = any(
                p.tag.endswith("pixels") and any(d.tag.endswith("dimension") for d in p)
                for p in image
            )
            if not has_pixels:
                continue
            view = next((v for v in image if v.tag.endswith("view")), None)
            lens = next(
                (e.text for e in image.iter() if e.tag.rsplit("}", 1)[-1] == "objective"), None
            )
            try:
                objective: float | None = float(str(lens).strip())
            except ValueError:
                objective = None
            found.append(
                _ScnImage(
                    overview=view is not None and (view.get("sizeX"), view.get("sizeY")) == size,
                    objective=objective
                    if objective is not None and 0 < objective < math.inf
                    else None,
                )
            )
    return found


@dataclass
class SlideFacts:
    """What the vendor text says about a slide; ``None`` where it says nothing."""

    magnification: float | None = None
    mpp: float | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    software: str | None = None
    software_version: str | None = None
    acquired_at: datetime | None = None
    acquired_at_local: datetime | None = None
    channel_names: list[str | None] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


def slide_facts(tif: Any, kind: str, series: int | None = None) -> SlideFacts:
    """Magnification, MPP, scanner, software and acquisition time of a whole-slide TIFF.

    ``series`` (a tifffile series index): the facts of that image where a slide
    says them per image (an SCN's objective); ``None``: those of the first scene.
    """
    page = tif.pages.first
    if kind == "svs":
        return _svs(str(page.description or ""))
    if kind == "ndpi":
        return _ndpi(page)
    facts = SlideFacts()
    text = str(page.description or "")
    if kind == "bif":
        text = _bif_xmp(tif)
        facts.manufacturer = "Ventana"
        _float_into(
            facts,
            "magnification",
            re.search(r'Magnification="([0-9.]+)"', text),
            "BIF XMP iScan/@Magnification",
        )
        _float_into(facts, "mpp", re.search(r'ScanRes="([0-9.]+)"', text), "BIF XMP iScan/@ScanRes")
    elif kind == "scn":
        facts.manufacturer = "Leica"
        model = re.search(r'<device[^>]*model="([^"]+)"', text)
        facts.model = model.group(1) if model else None
        # each image has its own objective: that of the image asked for (else scene 0's)
        images = _scn_images(text)
        if series is None:
            associated = associated_series(tif, kind)
            series = next((k for k in range(len(images)) if k not in associated), None)
        if series is not None and 0 <= series < len(images):
            lens = images[series].objective
            if lens is not None:
                facts.magnification = lens
                facts.sources["magnification"] = "SCN scanSettings/objectiveSettings/objective"
    elif kind == "qpi":
        facts.manufacturer = "PerkinElmer"
        _float_into(
            facts,
            "magnification",
            re.search(r"<Objective(?:Name)?>\s*([0-9.]+)\s*x?", text, re.IGNORECASE),
            "QPTIFF Objective",
        )
        model = re.search(r"<InstrumentType>([^<]+)</InstrumentType>", text)
        facts.model = model.group(1).strip() if model else None
        # one baseline page per channel, each naming its channel (fluorophore or filter)
        for channel_page in tif.series[0].pages:
            name = re.search(
                r"<Name>([^<]*)</Name>", str(getattr(channel_page, "description", "") or "")
            )
            facts.channel_names.append(name.group(1).strip() or None if name else None)
        if any(facts.channel_names):
            facts.sources["channels.name"] = "QPTIFF ImageDescription/Name of each baseline page"
    return facts


def _bif_xmp(tif: Any) -> str:
    """The XMP packet holding ``<iScan ...>``: on the label or the level-0 IFD, so look at the first few."""
    for index in range(min(len(tif.pages), 8)):
        page = tif.pages[index]
        if 700 not in page.tags:
            continue
        raw = page.tags[700].value
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if "<iScan" in text:
            return text
    return ""


def _float_into(facts: SlideFacts, name: str, match: re.Match[str] | None, source: str) -> None:
    if match is None:
        return
    try:
        value = float(match.group(1))
    except ValueError:
        return
    if value > 0:
        setattr(facts, name, value)
        facts.sources[name] = source


def _svs(description: str) -> SlideFacts:
    """Aperio: ``Aperio Image Library vX``, a geometry line, then ``|Key = Value|...``."""
    facts = SlideFacts(manufacturer="Aperio")
    fields = {k.strip(): v.strip() for k, v in _SVS_FIELD.findall(description)}
    facts.fields = fields
    software = _SVS_SOFTWARE.match(description)
    if software:
        facts.software, facts.software_version = software.group(1), software.group(2)
        facts.sources["software"] = "Aperio description, first line"
    for key, name in (("AppMag", "magnification"), ("MPP", "mpp")):
        try:
            value = float(fields.get(key, ""))
        except ValueError:
            continue
        if value > 0:
            setattr(facts, name, value)
            facts.sources[name] = f"Aperio SVS {key}"
    facts.serial_number = fields.get("ScanScope ID") or None
    date, time = fields.get("Date"), fields.get("Time")
    if date:
        for pattern in ("%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S"):
            try:
                naive = datetime.strptime(f"{date} {time or '00:00:00'}", pattern)
            except ValueError:
                continue
            zone = _SVS_ZONE.search(fields.get("Time Zone", ""))
            if zone:
                sign = 1 if zone.group(1) == "+" else -1
                offset = timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3) or 0)) * sign
                facts.acquired_at = naive.replace(tzinfo=timezone(offset)).astimezone(UTC)
                facts.sources["acquired_at"] = "Aperio SVS Date/Time/Time Zone"
            else:
                facts.acquired_at_local = naive
                facts.sources["acquired_at_local"] = "Aperio SVS Date/Time"
            break
    return facts


def _ndpi(page: Any) -> SlideFacts:
    """Hamamatsu: private tags (65421 magnification, 65442 serial) beside Make/Model/Software."""
    facts = SlideFacts()
    tags = getattr(page, "ndpi_tags", None) or {}
    magnification = tags.get("Magnification")
    if isinstance(magnification, int | float) and magnification > 0:
        facts.magnification = float(magnification)
        facts.sources["magnification"] = "NDPI tag 65421 (Magnification)"
    facts.manufacturer = str(tags.get("Make") or "") or None
    facts.model = str(tags.get("Model") or "") or None
    facts.serial_number = str(tags.get("ScannerSerialNumber") or "") or None
    facts.software = str(tags.get("Software") or "") or None
    # No scan time here: tifffile's ndpi_tags hold Make, Model, Software and the private
    # tags only, and the scan time is the TIFF DateTime, which the TIFF reader reads as
    # for every TIFF and labels as the NDPI scan time.
    return facts
