"""OME-XML -> :class:`~zstack_analyzer.metadata.ImageMetadata`, shared by every OME source.

Why separate from the TIFF reader: OME-XML is a schema, not a storage layout.
OME-TIFF, a companion ``.ome`` file and (later) OME-Zarr all describe images
with the same ``Image/Pixels/Channel/TiffData`` elements; parsing them once,
with entities refused (``defusedxml``), keeps units, colours and dates
consistent across sources.
"""

from __future__ import annotations

import colorsys
import itertools
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import LimitExceededError, MetadataError
from zstack_analyzer.metadata import (
    ChannelInfo,
    ImageMetadata,
    MicroscopeInfo,
    ObjectiveInfo,
    PhysicalSize,
)
from zstack_analyzer.readers._tiff_common import length_to_um

if TYPE_CHECKING:
    from pathlib import Path
    from xml.etree.ElementTree import Element

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import SceneInfo

__all__ = [
    "OME_PIXEL_TYPES",
    "OmeDocument",
    "OmeImage",
    "TiffDataRef",
    "image_metadata",
    "parse_ome_xml",
]

logger = logging.getLogger(__name__)

#: OME Pixels@Type -> numpy dtype name.
OME_PIXEL_TYPES: dict[str, str] = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "float": "float32",
    "double": "float64",
    "bit": "bool",
    "complex": "complex64",
    "double-complex": "complex128",
}

_TIME_TO_S = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}

#: Characters of the OME-XML kept in ``vendor_metadata``.
_XML_CAP = 32768


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _float(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TiffDataRef:
    """One ``TiffData`` element: planes from ``first`` on live in IFDs from ``ifd`` on."""

    first: dict[str, int]
    ifd: int
    plane_count: int | None
    uuid: str | None
    filename: str | None


@dataclass
class OmeImage:
    """One OME ``Image`` with the derived canonical sizes of its ``Pixels``."""

    element: Element
    pixels: Element
    name: str | None
    dimension_order: str
    size_t: int
    size_c: int
    size_z: int
    size_y: int
    size_x: int
    samples_per_pixel: int
    dtype: str
    tiff_data: list[TiffDataRef] = field(default_factory=list)

    @property
    def plane_order(self) -> str:
        """Non-spatial axes from fastest to slowest varying, e.g. ``"ZCT"``."""
        order = self.dimension_order.upper()[2:]
        return order if sorted(order) == ["C", "T", "Z"] else "ZCT"

    @property
    def plane_count(self) -> int:
        """Number of T x C x Z planes (C counted without RGB samples)."""
        return self.size_t * self.size_c * self.size_z

    def plane_index(self, t: int, c: int, z: int) -> int:
        """The OME plane index of (t, c, z): the ravel in ``DimensionOrder``."""
        pos = {"T": t, "C": c, "Z": z}
        size = {"T": self.size_t, "C": self.size_c, "Z": self.size_z}
        index, mult = 0, 1
        for axis in self.plane_order:
            index += pos[axis] * mult
            mult *= size[axis]
        return index


@dataclass
class OmeDocument:
    """A parsed OME-XML block."""

    root: Element
    xml: str
    uuid: str | None
    creator: str | None
    images: list[OmeImage]
    binary_only_file: str | None


def parse_ome_xml(xml: str | bytes, *, path: Path, limits: ReadLimits) -> OmeDocument:
    """Parse OME-XML with entities and external references refused.

    Raises
    ------
    LimitExceededError
        When the XML is larger than ``limits.max_metadata_bytes``.
    MetadataError
        When the XML is malformed, declares entities, or an Image is unusable.
    """
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    if len(xml) > limits.max_metadata_bytes:
        msg = f"{path.name}: OME-XML of {len(xml):,} bytes is over the metadata limit"
        raise LimitExceededError(msg, path=path)
    text = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else xml
    try:
        root = SafeET.fromstring(text.encode("utf-8"))
    except DefusedXmlException as exc:
        msg = f"{path.name}: OME-XML declares entities or external references, refused: {exc}"
        raise MetadataError(msg, path=path, detail=repr(exc)) from exc
    except Exception as exc:  # ParseError and friends
        msg = f"{path.name}: OME-XML is malformed: {exc}"
        raise MetadataError(msg, path=path, detail=repr(exc)) from exc
    if _local(root.tag) != "OME":
        msg = f"{path.name}: XML root is {_local(root.tag)!r}, not OME"
        raise MetadataError(msg, path=path)
    binary_only = _child(root, "BinaryOnly")
    images = []
    for element in _children(root, "Image"):
        try:
            images.append(_parse_image(element))
        except (KeyError, ValueError) as exc:
            msg = f"{path.name}: OME Image {element.get('ID')!r} is unusable: {exc}"
            raise MetadataError(msg, path=path, detail=repr(exc)) from exc
    return OmeDocument(
        root=root,
        xml=text,
        uuid=root.get("UUID"),
        creator=root.get("Creator"),
        images=images,
        binary_only_file=binary_only.get("MetadataFile") if binary_only is not None else None,
    )


def _parse_image(element: Element) -> OmeImage:
    pixels = _child(element, "Pixels")
    if pixels is None:
        msg = "no Pixels element"
        raise ValueError(msg)
    channels = _children(pixels, "Channel")
    spp = int(channels[0].get("SamplesPerPixel", "1")) if channels else 1
    spp = max(spp, 1)
    size_c = int(pixels.attrib["SizeC"])
    if spp > 1 and size_c % spp == 0:
        size_c //= spp
    else:
        spp = 1
    pixel_type = pixels.attrib["Type"]
    if pixel_type not in OME_PIXEL_TYPES:
        msg = f"unknown pixel type {pixel_type!r}"
        raise ValueError(msg)
    refs = []
    for td in _children(pixels, "TiffData"):
        uuid = _child(td, "UUID")
        count = td.get("PlaneCount", td.get("NumPlanes"))
        refs.append(
            TiffDataRef(
                first={a: int(td.get(f"First{a}", "0")) for a in "TCZ"},
                ifd=int(td.get("IFD", "0")),
                plane_count=int(count)
                if count is not None
                else (1 if "IFD" in td.attrib else None),
                uuid=(uuid.text or "").strip() or None if uuid is not None else None,
                filename=uuid.get("FileName") if uuid is not None else None,
            )
        )
    sizes = [int(pixels.attrib[f"Size{a}"]) for a in "TZYX"]
    if min([*sizes, size_c]) < 1:
        msg = f"non-positive size in {sizes}"
        raise ValueError(msg)
    return OmeImage(
        element=element,
        pixels=pixels,
        name=element.get("Name"),
        dimension_order=pixels.get("DimensionOrder", "XYZCT"),
        size_t=sizes[0],
        size_c=size_c,
        size_z=sizes[1],
        size_y=sizes[2],
        size_x=sizes[3],
        samples_per_pixel=spp,
        dtype=OME_PIXEL_TYPES[pixel_type],
        tiff_data=refs,
    )


# --------------------------------------------------------------------------- metadata
def _ome_colour(value: str | None) -> str | None:
    """OME Color is a signed 32-bit RGBA integer; return ``#RRGGBB``."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"#{(rgba >> 24) & 255:02X}{(rgba >> 16) & 255:02X}{(rgba >> 8) & 255:02X}"


def _length(
    element: Element, attribute: str, *, field_name: str, md: dict[str, Any]
) -> float | None:
    value = _float(element.get(attribute))
    if value is None:
        return None
    unit = element.get(f"{attribute}Unit", "µm")
    factor = length_to_um(unit)
    if factor is None:
        md["warnings"].append(f"{attribute} {value} in unit {unit!r} is not a length: unknown")
        return None
    if value == 0:
        md["warnings"].append(f"{attribute} is 0: no calibration")
        return None
    if value < 0:
        md["warnings"].append(f"{attribute} is negative ({value}): kept as found")
    source = f"OME-XML Pixels/@{attribute}"
    if f"{attribute}Unit" not in element.attrib:
        source += " (no unit: µm, the schema default)"
    md["provenance"][field_name] = source
    return value * factor


def _wavelength_nm(element: Element, attribute: str) -> float | None:
    value = _float(element.get(attribute))
    if value is None or value <= 0:
        return None
    factor = length_to_um(element.get(f"{attribute}Unit", "nm"))
    return None if factor is None else value * factor * 1000.0


#: Writers known to store OME timestamps in UTC without saying so: ome-xml's Timestamp
#: (Bio-Formats 5.0 and later, Joda-Time) parses and prints every time as a UTC instant.
_UTC_WRITER = re.compile(r"^OME Bio-Formats (\d+)\.")


def _writes_utc(writer: str | None) -> bool:
    found = _UTC_WRITER.match(writer or "")
    return found is not None and int(found.group(1)) >= 5


def _acquisition(image: Element, md: dict[str, Any], writer: str | None) -> None:
    """AcquisitionDate (2011-06 on), or AcquiredDate (the 2010-06 schema's name for it).

    A time without a zone is UTC when the writer is known to write UTC
    (Bio-Formats >= 5); otherwise it stays local (``acquired_at_local``).
    """
    node = _child(image, "AcquisitionDate")
    name = "AcquisitionDate"
    if node is None:
        node, name = _child(image, "AcquiredDate"), "AcquiredDate"
    text = (node.text or "").strip() if node is not None else ""
    if not text:
        return
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        md["warnings"].append(f"{name} {text!r} is not ISO 8601: ignored")
        return
    source = f"OME-XML Image/{name}"
    if stamp.tzinfo is None and _writes_utc(writer):
        md["acquired_at"] = stamp.replace(tzinfo=UTC)
        md["provenance"]["acquired_at"] = (
            f"{source} (no zone written; the writer {writer!r} stores UTC: ome-xml Timestamp)"
        )
    elif stamp.tzinfo is None:
        md["acquired_at_local"] = stamp
        md["provenance"]["acquired_at_local"] = source
        md["warnings"].append(
            f"acquisition time zone unknown (writer {writer or 'not named'}): "
            "acquired_at_local holds the time as written"
        )
    else:
        md["acquired_at"] = stamp.astimezone(UTC)
        md["provenance"]["acquired_at"] = source


def _positive(value: str | None) -> float | None:
    number = _float(value)
    return number if number is not None and number > 0 else None


def _instrument(doc: OmeDocument, image: Element, md: dict[str, Any], writer: str | None) -> None:
    instruments = {i.get("ID"): i for i in _children(doc.root, "Instrument")}
    ref = _child(image, "InstrumentRef")
    instrument = instruments.get(ref.get("ID")) if ref is not None else None
    if instrument is None and len(instruments) == 1:
        instrument = next(iter(instruments.values()))
    scope = _child(instrument, "Microscope") if instrument is not None else None
    manufacturer = scope.get("Manufacturer") if scope is not None else None
    model = scope.get("Model") if scope is not None else None
    serial = scope.get("SerialNumber") if scope is not None else None
    if manufacturer or model or serial or writer:
        md["microscope"] = MicroscopeInfo(
            manufacturer=manufacturer or None,
            model=model or None,
            serial_number=serial or None,
            software=writer,
        )
        if writer:
            md["provenance"]["microscope.software"] = (
                "OME-XML OME/@Creator" if writer == doc.creator else "TIFF Software tag"
            )
    if instrument is None:
        return
    settings = _child(image, "ObjectiveSettings")
    objectives = {o.get("ID"): o for o in _children(instrument, "Objective")}
    objective = objectives.get(settings.get("ID")) if settings is not None else None
    if objective is None and len(objectives) == 1:
        objective = next(iter(objectives.values()))
    if objective is None:
        return
    # The ID is a reference, never a name; NominalMagnification 0 or LensNA 0 is a
    # writer's placeholder for "not set", i.e. unknown.
    found = ObjectiveInfo(
        name=(objective.get("Model") or "").strip() or None,
        magnification=_positive(objective.get("NominalMagnification")),
        numerical_aperture=_positive(objective.get("LensNA")),
        immersion=objective.get("Immersion") or None,
    )
    if any(v is not None for v in found.model_dump().values()):
        md["objective"] = found
        md["provenance"]["objective"] = "OME-XML Instrument/Objective"


#: (nm, hue in degrees) anchors of visible light, for "does this colour fit the emission?".
_SPECTRUM = (
    (400.0, 270.0),
    (440.0, 240.0),
    (490.0, 180.0),
    (510.0, 120.0),
    (580.0, 60.0),
    (620.0, 0.0),
)
#: How far (degrees of hue) a display colour may lie from its emission's hue and still fit.
_HUE_TOLERANCE = 60.0


def _wavelength_hue(nm: float) -> float | None:
    """Approximate hue of monochromatic light of ``nm`` nanometres (None outside 380-750)."""
    if not 380.0 <= nm <= 750.0:
        return None
    if nm <= _SPECTRUM[0][0]:
        return _SPECTRUM[0][1]
    for (n0, h0), (n1, h1) in itertools.pairwise(_SPECTRUM):
        if nm <= n1:
            return h0 + (h1 - h0) * (nm - n0) / (n1 - n0)
    return 0.0


def _fits_wavelength(colour: str, nm: float) -> bool | None:
    """Whether ``#RRGGBB`` is the hue of light at ``nm``; None when it cannot say (grey, IR)."""
    expected = _wavelength_hue(nm)
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, _, saturation = colorsys.rgb_to_hls(r, g, b)
    if expected is None or saturation < 0.25 or max(r, g, b) < 0.1:
        return None
    distance = abs(hue * 360.0 - expected) % 360.0
    return min(distance, 360.0 - distance) <= _HUE_TOLERANCE


def _zen_colour(value: str | None) -> str | None:
    """OME Color as ZEN writes it, 0x00RRGGBB (not the schema's RGBA): ``#RRGGBB``."""
    if value is None:
        return None
    try:
        argb = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"#{(argb >> 16) & 255:02X}{(argb >> 8) & 255:02X}{argb & 255:02X}"


def _channel_colour(
    element: Element, emission: float | None, writer: str | None, md: dict[str, Any]
) -> str | None:
    """The channel's ``#RRGGBB``: RGBA per the schema, or ZEN's 0x00RRGGBB when that is what fits.

    Why: ZEN writes Color as 0x00RRGGBB, so read as RGBA an EGFP channel shows
    blue and an mCherry channel green. Only when the writer is ZEN and the
    emission wavelength contradicts the RGBA reading while agreeing with the
    0x00RRGGBB one do we take the latter, with a warning.
    """
    raw = element.get("Color")
    colour = _ome_colour(raw)
    if colour is None or emission is None or not re.search(r"\bZEN\b|Zeiss", writer or "", re.I):
        return colour
    alternative = _zen_colour(raw)
    if (
        alternative is not None
        and _fits_wavelength(colour, emission) is False
        and _fits_wavelength(alternative, emission)
    ):
        md["warnings"].append(
            f"channel {element.get('ID')!r}: Color {raw} read as RGBA ({colour}) contradicts its "
            f"emission at {emission:g} nm; the writer {writer!r} stores 0x00RRGGBB, so "
            f"{alternative} is used"
        )
        md["provenance"]["channels[].color"] = "OME-XML Channel/@Color as ZEN's 0x00RRGGBB"
        return alternative
    return colour


def _channels(image: OmeImage, md: dict[str, Any], writer: str | None) -> list[ChannelInfo]:
    elements = _children(image.pixels, "Channel")
    exposures: dict[int, float] = {}
    for plane in _children(image.pixels, "Plane"):
        the_c = int(plane.get("TheC", "0"))
        exposure = _float(plane.get("ExposureTime"))
        if exposure is not None and the_c not in exposures:
            factor = _TIME_TO_S.get(plane.get("ExposureTimeUnit", "s"), 1.0)
            exposures[the_c] = exposure * factor * 1000.0
    if elements and len(elements) != image.size_c:
        md["warnings"].append(
            f"{len(elements)} OME Channel elements for SizeC {image.size_c}: the rest are unnamed"
        )
    channels = []
    for index in range(image.size_c):
        element = elements[index] if index < len(elements) else None
        if element is None:
            channels.append(ChannelInfo(index=index, exposure_ms=exposures.get(index)))
            continue
        emission = _wavelength_nm(element, "EmissionWavelength")
        channels.append(
            ChannelInfo(
                index=index,
                name=element.get("Name") or None,
                excitation_nm=_wavelength_nm(element, "ExcitationWavelength"),
                emission_nm=emission,
                color=_channel_colour(element, emission, writer, md),
                fluorophore=element.get("Fluor"),
                exposure_ms=exposures.get(index),
                illumination=element.get("IlluminationType"),
                contrast_method=element.get("ContrastMethod"),
            )
        )
    return channels


def _modulo_dims(doc: OmeDocument, image: Element) -> dict[str, Any]:
    """ModuloAlong{C,Z,T} annotations of ``image`` (kept folded; reported in vendor metadata)."""
    refs = {r.get("ID") for r in image if _local(r.tag) == "AnnotationRef"}
    found: dict[str, Any] = {}
    annotations = _child(doc.root, "StructuredAnnotations")
    if annotations is None or not refs:
        return found
    for annotation in annotations:
        if annotation.get("ID") not in refs:
            continue
        for node in annotation.iter():
            name = _local(node.tag)
            if name.startswith("ModuloAlong") and len(name) == 12:
                found[name] = dict(node.attrib)
    return found


def image_metadata(
    doc: OmeDocument,
    image: OmeImage,
    info: SceneInfo,
    *,
    filename: str,
    file_format: str,
    scenes: list[SceneInfo],
    pyramid_levels: list[tuple[int, int]] | None = None,
    warnings: list[str] | None = None,
    software: str | None = None,
) -> ImageMetadata:
    """Normalised metadata of one OME Image (calibration from Pixels only, never TIFF tags).

    ``software`` is the container's own note of the writer (the TIFF Software
    tag), used when the OME element names no ``Creator``.
    """
    md: dict[str, Any] = {"warnings": list(warnings or []), "provenance": {}}
    pixels = image.pixels
    physical = PhysicalSize(
        x_um=_length(pixels, "PhysicalSizeX", field_name="physical_size.x_um", md=md),
        y_um=_length(pixels, "PhysicalSizeY", field_name="physical_size.y_um", md=md),
        z_um=_length(pixels, "PhysicalSizeZ", field_name="physical_size.z_um", md=md),
    )
    time_interval = _float(pixels.get("TimeIncrement"))
    if time_interval is not None:
        time_interval *= _TIME_TO_S.get(pixels.get("TimeIncrementUnit", "s"), 1.0)
        md["provenance"]["time_interval_s"] = "OME-XML Pixels/@TimeIncrement"
    writer = doc.creator or software
    _acquisition(image.element, md, writer)
    _instrument(doc, image.element, md, writer)
    significant = _float(pixels.get("SignificantBits"))
    modulo = _modulo_dims(doc, image.element)
    xml = doc.xml if len(doc.xml) <= _XML_CAP else doc.xml[:_XML_CAP] + "…[truncated]"
    vendor: dict[str, Any] = {"ome_xml": xml, "dimension_order": image.dimension_order}
    if modulo:
        vendor["modulo"] = modulo
    md["provenance"].setdefault("sizes", "OME-XML Pixels/@Size*")
    return ImageMetadata.for_scene(
        info,
        filename=filename,
        file_format=file_format,
        scenes=scenes,
        significant_bits=int(significant) if significant else None,
        physical_size=physical,
        time_interval_s=time_interval if time_interval else None,
        channels=_channels(image, md, writer),
        objective=md.get("objective"),
        microscope=md.get("microscope"),
        acquired_at=md.get("acquired_at"),
        acquired_at_local=md.get("acquired_at_local"),
        pyramid_levels=pyramid_levels or [],
        provenance=md["provenance"],
        warnings=md["warnings"],
        vendor_metadata=vendor,
    )
