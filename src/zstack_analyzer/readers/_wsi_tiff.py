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
    """One SCN ``<image>`` as tifffile makes a series of it: overview or not, its own facts.

    Each is what that ``<image>`` element says (``None`` where it says nothing), as
    Bio-Formats' LeicaSCNReader takes them image by image: ``creationDate`` (its
    AcquisitionDate), ``device/@model`` and ``@version``, the objective,
    ``illuminationSettings/numericalAperture`` (its objective's LensNA) and
    ``illuminationSource`` (its channel's IlluminationType).
    """

    overview: bool
    objective: float | None
    created: str | None = None
    device_model: str | None = None
    device_version: str | None = None
    numerical_aperture: float | None = None
    illumination_source: str | None = None
    #: µm per pixel (x, y) of its full resolution: view size (nm) over that dimension's pixels
    pixel_size_um: tuple[float, float] | None = None


def _local_name(element: Any) -> str:
    return str(element.tag).rsplit("}", 1)[-1]


def _text_of(image: Any, name: str) -> str | None:
    """Stripped text of the first element called ``name`` under ``image`` (``None``: none or blank)."""
    found = next((e for e in image.iter() if _local_name(e) == name), None)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _positive(text: str | None) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if 0 < value < math.inf else None


def _scn_pixel_size(image: Any, view: Any) -> tuple[float, float] | None:
    """The view's size (nm) over the pixels of the full-resolution dimension (r, z, c = 0), in µm.

    As Bio-Formats' LeicaSCNReader computes an image's PhysicalSizeX/Y; ``None`` where
    the view or that dimension is missing or a size is not a positive number.
    """
    if view is None:
        return None
    pixels = next((p for p in image if _local_name(p) == "pixels"), None)
    first = next(
        (
            d
            for d in (pixels if pixels is not None else [])
            if _local_name(d) == "dimension"
            and all(d.get(axis, "0").strip() == "0" for axis in ("r", "z", "c"))
        ),
        None,
    )
    if first is None:
        return None
    x_nm, y_nm = _positive(view.get("sizeX")), _positive(view.get("sizeY"))
    x_px, y_px = _positive(first.get("sizeX")), _positive(first.get("sizeY"))
    if x_nm is None or y_nm is None or x_px is None or y_px is None:
        return None
    return (x_nm / 1000 / x_px, y_nm / 1000 / y_px)


def _scn_images(xml: str) -> list[_ScnImage]:
    """The SCN images tifffile makes series of (those with a pixels dimension), in its order.

    Why one list: an image's objective and whether it is the overview are read from
    the same ``<image>`` element, so they cannot be paired with another image's (a
    label without an ``<objective>`` once shifted the macro's 0.6x onto the main
    image). Bio-Formats' LeicaSCNReader pairs them the same way, image by image, and
    so its creation date, device, numerical aperture and illumination source.
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
            device = next((d for d in image if _local_name(d) == "device"), None)
            found.append(
                _ScnImage(
                    overview=view is not None and (view.get("sizeX"), view.get("sizeY")) == size,
                    objective=_positive(_text_of(image, "objective")),
                    created=_text_of(image, "creationDate"),
                    device_model=(device.get("model") or "").strip() or None
                    if device is not None
                    else None,
                    device_version=(device.get("version") or "").strip() or None
                    if device is not None
                    else None,
                    numerical_aperture=_positive(_text_of(image, "numericalAperture")),
                    illumination_source=_text_of(image, "illuminationSource"),
                    pixel_size_um=_scn_pixel_size(image, view),
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
    numerical_aperture: float | None = None
    #: µm per pixel (x, y), where the slide says it per image (an SCN's view over its pixels).
    pixel_size_um: tuple[float, float] | None = None
    #: OME IlluminationType and contrast method of every channel (an SCN image's source).
    illumination: str | None = None
    contrast_method: str | None = None
    channel_names: list[str | None] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    #: What could not be read and was left out (a malformed date...), for the metadata's warnings.
    warnings: list[str] = field(default_factory=list)


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
        # each image says its own facts: those of the image asked for (else scene 0's)
        images = _scn_images(text)
        if series is None:
            associated = associated_series(tif, kind)
            series = next((k for k in range(len(images)) if k not in associated), None)
        if series is not None and 0 <= series < len(images):
            _scn_facts(facts, images[series], series)
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


#: An SCN image's illuminationSource as OME IlluminationType and contrast method: Bio-Formats'
#: LeicaSCNReader says Transmitted for "brightfield" (the only source Leica is known to
#: write) and Other for any other source.
_SCN_ILLUMINATION = {"brightfield": ("Transmitted", "Brightfield")}


def _scn_facts(facts: SlideFacts, image: _ScnImage, series: int) -> None:
    """What one SCN ``<image>`` says, into ``facts``, each with its source."""
    if image.objective is not None:
        facts.magnification = image.objective
        facts.sources["magnification"] = "SCN scanSettings/objectiveSettings/objective"
    if image.pixel_size_um is not None:
        facts.pixel_size_um = image.pixel_size_um
        facts.sources["pixel_size"] = "SCN image/view/@sizeX, @sizeY (nm) / pixels/dimension r=0"
    if image.numerical_aperture is not None:
        facts.numerical_aperture = image.numerical_aperture
        facts.sources["numerical_aperture"] = (
            "SCN scanSettings/illuminationSettings/numericalAperture"
        )
    if image.illumination_source is not None:
        facts.illumination, facts.contrast_method = _SCN_ILLUMINATION.get(
            image.illumination_source.lower(), ("Other", None)
        )
        facts.sources["illumination"] = "SCN scanSettings/illuminationSettings/illuminationSource"
    # as written: "Leica SCN400;Leica SCN" with "<scanner build>;<SCN software build>"
    facts.model = image.device_model
    facts.software_version = image.device_version
    if image.device_model is not None:
        facts.sources["microscope.model"] = "SCN image/device/@model"
    if image.device_version is not None:
        facts.sources["microscope.software_version"] = "SCN image/device/@version"
    if image.created is None:
        return
    try:
        if "T" not in image.created:
            raise ValueError(image.created)  # a date alone is no time of day
        stamp = datetime.fromisoformat(image.created)
    except ValueError:
        facts.warnings.append(
            f"SCN image {series}: creationDate {image.created[:64]!r} is not an ISO 8601 "
            "date and time: acquisition time not read"
        )
        return
    if stamp.tzinfo is not None:
        facts.acquired_at = stamp.astimezone(UTC)
        facts.sources["acquired_at"] = "SCN image/creationDate"
    else:
        facts.acquired_at_local = stamp
        facts.sources["acquired_at_local"] = "SCN image/creationDate"


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


def _ndpi_properties(tags: dict[str, Any]) -> dict[str, str]:
    """Tag 65449, the scanner's ``key=value`` property map (lines end in CR LF or CR), as a dict."""
    raw = tags.get("Comments")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        return {}
    found: dict[str, str] = {}
    for line in re.split(r"[\r\n]+", raw):
        key, sep, value = line.partition("=")
        if sep and key.strip():
            found.setdefault(key.strip(), value.strip())
    return found


def _ndpi(page: Any) -> SlideFacts:
    """Hamamatsu: private tags (65421 magnification, 65449 property map) beside Make/Model/Software.

    Model and serial number come from the property map (tag 65449: ``Product``,
    ``NDP.S/N``), as Bio-Formats' NDPIReader takes them (its Microscope Model and, for
    the slide image, its Image Description) and as openslide shows them
    (``hamamatsu.Product``, ``hamamatsu.NDP.S/N``); the TIFF Model tag and the
    undocumented tag 65442 (tifffile's guess "ScannerSerialNumber") only where the map
    says nothing.
    """
    facts = SlideFacts()
    tags = getattr(page, "ndpi_tags", None) or {}
    magnification = tags.get("Magnification")
    if isinstance(magnification, int | float) and magnification > 0:
        facts.magnification = float(magnification)
        facts.sources["magnification"] = "NDPI tag 65421 (Magnification)"
    properties = _ndpi_properties(tags)
    facts.manufacturer = str(tags.get("Make") or "") or None
    for name, key, tag, fallback in (
        ("model", "Product", "Model", "TIFF Model"),
        ("serial_number", "NDP.S/N", "ScannerSerialNumber", "NDPI tag 65442"),
    ):
        if properties.get(key):
            setattr(facts, name, properties[key])
            facts.sources[f"microscope.{name}"] = f"NDPI tag 65449 {key}"
        elif str(tags.get(tag) or ""):
            setattr(facts, name, str(tags[tag]))
            facts.sources[f"microscope.{name}"] = fallback
    facts.software = str(tags.get("Software") or "") or None
    # No scan time here: tifffile's ndpi_tags hold Make, Model, Software and the private
    # tags only, and the scan time is the TIFF DateTime, which the TIFF reader reads as
    # for every TIFF and labels as the NDPI scan time.
    return facts
