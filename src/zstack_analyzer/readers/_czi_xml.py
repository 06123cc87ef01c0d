"""CZI metadata XML -> the pieces of :class:`~zstack_analyzer.metadata.ImageMetadata`.

Why a module of its own: the mapping (units, which of several elements wins,
what is an ID rather than a name) is the part of the CZI reader most likely to
need fixes, and it can be checked without pixels.

Why fragments: a ZEN file's XML is mostly ``Experiment`` and
``HardwareSetting`` (hundreds of kB); the values we map live in
``Metadata/Information``, ``Metadata/Scaling`` and ``Metadata/DisplaySetting``,
a few percent of it. When we can tell those elements apart from their
namesakes nested elsewhere, we parse just those fragments, which is what
keeps opening a CZI faster than libCZI's own metadata dict; otherwise we
parse the whole document and look the elements up by path.

Which value wins where the document states two (provenance says which was used):

* channel colour: ``DisplaySetting/Channels/Channel/Color``, what ZEN displays,
  before ``Information/Image/Dimensions/Channels/Channel/Color``;
* acquisition time: ``Information/Image/AcquisitionDateAndTime``, else
  ``Dimensions/T/StartTime`` (with its zone, in UTC); ``0001-01-01`` is a placeholder;
* microscope: ``Microscope/@Name`` (ZEN blue's stand), else ``Manufacturer/Model``,
  else ``System`` (ZEN black and the SEM modules: "LSM 880, AxioObserver");
* objective: ``@Name``, else ``Manufacturer/Model``, never the ``Id``; a 0
  magnification or NA is "not set".
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from zstack_analyzer.errors import MetadataError

if TYPE_CHECKING:
    from pathlib import Path
    from xml.etree.ElementTree import Element

__all__ = ["CziXmlInfo", "parse_czi_xml"]

logger = logging.getLogger(__name__)

#: Longest string and most elements kept in ``vendor_metadata`` (a capped excerpt).
_VENDOR_MAX_TEXT = 512
_VENDOR_MAX_ITEMS = 64
#: Metres to micrometres: CZI Scaling/Items/Distance values are in metres.
_M_TO_UM = 1e6
#: CZI ExposureTime is in nanoseconds.
_NS_TO_MS = 1e-6


@dataclass(slots=True)
class CziXmlInfo:
    """What the XML says, independent of the scene (scene names are looked up per scene).

    The parts of the record are the fields of its models as dicts (``physical_size``
    holds :class:`~zstack_analyzer.metadata.PhysicalSize`'s, each channel
    :class:`~zstack_analyzer.metadata.ChannelInfo`'s, ...). Why not the models:
    the record validates them once, nested, when it is built; models made here
    too were built twice and copied per record, the largest cost of a first
    metadata read in a process after the parse itself (issue 22).
    """

    physical_size: dict[str, float | None] = field(default_factory=dict)
    channels: list[dict[str, Any]] = field(default_factory=list)
    objective: dict[str, Any] | None = None
    microscope: dict[str, Any] | None = None
    acquired_at: datetime | None = None
    acquired_at_local: datetime | None = None
    time_interval_s: float | None = None
    significant_bits: int | None = None
    scene_names: dict[int, str] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    vendor_metadata: dict[str, Any] = field(default_factory=dict)


def _parse(text: str, path: Path) -> Element:
    """Parse a whole document with defusedxml: DTDs and entities are refused."""
    import defusedxml.ElementTree as DefusedET
    from defusedxml import DefusedXmlException

    try:
        root: Element = DefusedET.fromstring(text)
    except DefusedXmlException as exc:
        msg = f"{path.name}: the CZI metadata XML declares entities or a DTD ({exc}); refused"
        raise MetadataError(msg, path=path, detail=str(exc)) from exc
    except Exception as exc:  # xml.etree.ElementTree.ParseError and friends
        msg = f"{path.name}: the CZI metadata XML is not well-formed: {exc}"
        raise MetadataError(msg, path=path, detail=str(exc)) from exc
    return root


def _parse_fragment(text: str) -> Element | None:
    """Parse one element cut out of the document with the C parser; None if it is not well-formed.

    Why the plain parser is safe here: a fragment starts at an element, so it
    cannot carry a DTD, and without a DTD no entity can be declared; a
    reference to an undeclared one is a parse error, after which the caller
    parses the whole document with defusedxml.
    """
    from xml.etree.ElementTree import ParseError, fromstring

    try:
        return fromstring(text)  # noqa: S314  (no DTD possible: see docstring)
    except ParseError:
        return None


def _fragment(xml: str, name: str) -> str | None:
    """The one ``<name>...</name>`` element of ``xml``, or None when that is not certain.

    ``find``/``rfind`` (C speed) rather than a regex or a count: together they
    pass over a ZEN XML of half a megabyte about once. The exact start tag
    ``<name>`` is required ("<Scaling" alone would match ``<ScalingComponent``
    in LLS7); a unique closing tag means there is one such element (a second
    one, nested or not, would close too).
    """
    opening, closing = f"<{name}>", f"</{name}>"
    begin = xml.find(opening)
    if begin < 0:
        return None
    end = xml.find(closing, begin)
    if end < 0 or end != xml.rfind(closing):
        return None
    return xml[begin : end + len(closing)]


#: A self-closing tag: "<", then up to "/>" no "<" and no ">" outside quoted attribute
#: values. ("/>" alone also occurs in text, e.g. escaped XML "&lt;UiName />" in ZEN's
#: HardwareSetting, and ">" in attribute values, e.g. Format="%N>".)
_SELF_CLOSING = re.compile(r"""<[^<>"']*(?:(?:"[^"]*"|'[^']*')[^<>"']*)*/>""")


#: "<" then no "<" or ">" up to "/>": a self-closing tag without ">" in its attributes (fast).
_PLAIN_SELF_CLOSING = re.compile(r"<[^<>]*/>")


def _depth(stretch: str) -> int:
    """Opening minus closing and self-closing tags in ``stretch`` (C-speed counts first).

    Every "/>" counted as a self-closing tag gives a lower bound (text holds
    some); only plain ones (no ">" in attributes) give an upper bound. When
    the bounds disagree, the quote-aware pattern decides.
    """
    tags = stretch.count("<") - 2 * stretch.count("</")
    lower = tags - stretch.count("/>")
    if lower > 0:
        return lower
    upper = tags - len(_PLAIN_SELF_CLOSING.findall(stretch))
    if upper == lower:
        return upper
    return tags - len(_SELF_CLOSING.findall(stretch))


def _metadata_child_fragment(xml: str, name: str, boundaries: tuple[int, ...] = ()) -> str | None:
    """The ``<name>`` element that is a direct child of the top ``<Metadata>``, or None if unsure.

    Why not :func:`_fragment`: ZEN also writes DisplaySetting blocks inside the
    Experiment (CD_s_1_t_3_c_2_z_5.czi has three), before or after the one that
    matters, and a HardwareSetting may hold a ``<Metadata>`` of its own. A
    candidate is the document's own when the tags between the first
    ``<Metadata>`` and it balance: every tag starts with "<", which XML never
    allows unescaped in text or attribute values, so opening tags minus closing
    and self-closing ones is its depth (C-speed counts). A self-closing tag the
    pattern misses makes the depth look larger, never zero: the worst case is
    "unsure", and the caller then parses the whole document. Comments, CDATA
    or processing instructions could hold a "<", so with any of them we are
    unsure too. ``boundaries`` are offsets known to lie between two children
    of Metadata (the ends of the Information and Scaling elements): counting
    from the nearest one keeps the stretch short.
    """
    opening, closing = f"<{name}>", f"</{name}>"
    top = xml.find("<Metadata>")
    if top < 0:
        return None
    top += len("<Metadata>")
    begin = xml.find(opening, top)
    while begin >= 0:
        start = max([top, *(b for b in boundaries if b <= begin)])
        stretch = xml[start:begin]
        if "<!" in stretch or "<?" in stretch:
            return None
        depth = _depth(stretch)
        end = xml.find(closing, begin)
        if end < 0:
            return None
        if depth == 0:
            inner = xml.find(opening, begin + len(opening))
            if 0 <= inner < end:
                return None  # nested in itself: not a shape we know
            return xml[begin : end + len(closing)]
        begin = xml.find(opening, end)
    return None


def _sections(xml: str, path: Path) -> tuple[Element | None, Element | None, Element | None]:
    """The Metadata/Information, Metadata/Scaling and Metadata/DisplaySetting elements.

    Each is None when absent. DisplaySetting is optional in the fast path: a
    document without one (RGB-8bit.czi has one, many exports do not) still
    takes the fragment route.
    """
    info_text = _fragment(xml, "Information")
    scaling_text = _fragment(xml, "Scaling")
    ends = tuple(
        xml.find(text) + len(text) for text in (info_text, scaling_text) if text is not None
    )
    display_text = _metadata_child_fragment(xml, "DisplaySetting", ends)
    display_ok = display_text is not None or "<DisplaySetting" not in xml
    if info_text is not None and scaling_text is not None and display_ok:
        # One parse of the fragments side by side under a wrapper: each parser set up
        # costs more than a small fragment's parse (a fresh process per open is common).
        parts = (
            (info_text, scaling_text)
            if display_text is None
            else (info_text, scaling_text, display_text)
        )
        wrapper = _parse_fragment("<_>" + "".join(parts) + "</_>")
        if wrapper is not None and len(wrapper) == len(parts):
            children = list(wrapper)
            return children[0], children[1], children[2] if display_text is not None else None
        logger.debug("%s: fragment parse failed; parsing the whole XML", path.name)
    root = _parse(xml, path)
    metadata = root.find("Metadata")
    if metadata is None:
        return None, None, None
    return (
        metadata.find("Information"),
        metadata.find("Scaling"),
        metadata.find("DisplaySetting"),
    )


def _find(element: Element, path: str) -> Element | None:
    """The first element at ``path`` ("A/B", plain tag names) below ``element``.

    Why one ``find`` per step: ``Element.find`` with a plain tag name is a C
    loop over the children, while a path with "/" goes through ElementPath,
    which compiles each path string on its first use in a process and costs
    more than the lookups themselves for a small document (a fresh process
    per request is the common case).
    """
    if "/" not in path:
        return element.find(path)
    node = element
    for part in path.split("/"):
        found = node.find(part)
        if found is None:
            return None
        node = found
    return node


def _findall(element: Element, path: str) -> list[Element]:
    """Every element at ``path`` ("A/B", plain tag names) below ``element``, in document order."""
    nodes = [element]
    for part in path.split("/"):
        nodes = [child for node in nodes for child in node.findall(part)]
    return nodes


def _text(element: Element | None, child: str) -> str | None:
    if element is None:
        return None
    value: str | None
    if "/" in child:
        found = _find(element, child)
        value = None if found is None else found.text
    else:
        # A C loop: the child's text, "" when it has none, None when there is no such child.
        value = element.findtext(child)
    if value is None:
        return None
    return value.strip() or None


def _float(element: Element | None, child: str) -> float | None:
    value = _text(element, child)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(element: Element | None, child: str) -> int | None:
    number = _float(element, child)
    return int(number) if number is not None and number.is_integer() else None


def _colour(value: str | None) -> str | None:
    """ZEN writes #AARRGGBB; the model wants #RRGGBB."""
    if value is None or not value.startswith("#"):
        return None
    digits = value[1:]
    if len(digits) == 8:
        digits = digits[2:]
    if len(digits) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
        return None
    return f"#{digits.upper()}"


def _datetime(value: str) -> tuple[datetime | None, datetime | None]:
    """(UTC-aware, naive local) from an ISO string; both None for ZEN's year-1 placeholder.

    Why the placeholder: ZEN writes ``0001-01-01T00:00:00`` (sometimes with a
    zone offset) where it has no time; that is "unknown", not a date.
    """
    text = value.strip()
    # ZEN writes 7 fractional digits; Python 3.11 accepts them, older forms may not: trim to 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    if text.startswith("0001-01-01"):
        return None, None
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        return None, stamp
    return stamp.astimezone(UTC), None


#: A plain decimal number: sign, integer digits, fraction digits, a short exponent.
_DECIMAL = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,3}))?")


def _micrometres(raw: str, metres: float) -> float:
    """``metres`` (finite, non-zero, parsed from ``raw``) in µm to 12 significant digits.

    The rounding takes away the float noise of 1e-6 * 1e6 (1.6E-06 m is 1.6 µm,
    not 1.5999999999999999). A value written with at most 12 significant digits
    is that decimal with its exponent moved by 6, read once: the product's error
    (a few units in the 16th digit) is far below half a 12th-digit step, so
    rounding it to 12 digits gives back the same decimal. Why not always format:
    the first float formatting in a process costs as much as the rest of the
    scaling (opening is timed in a fresh process, issue 22).
    """
    match = _DECIMAL.fullmatch(raw)
    if match is not None:
        sign, whole, fraction, exponent = match.groups(default="")
        digits = (whole + fraction).strip("0")
        shifted = int(exponent or 0) + 6
        if (whole or fraction) and len(digits) <= 12 and -200 < shifted < 200:
            return float(f"{sign}{whole or 0}.{fraction}e{shifted}")
    return float(f"{metres * _M_TO_UM:.12g}")


def _scaling(scaling: Element | None, info: CziXmlInfo) -> list[tuple[str | None, str | None]]:
    """The voxel size from ``Scaling/Items/Distance``; returns every (Id, Value) for the excerpt."""
    if scaling is None:
        info.warnings.append("no Metadata/Scaling in the CZI XML: voxel size unknown")
        return []
    stated = [(d.get("Id"), _text(d, "Value")) for d in _findall(scaling, "Items/Distance")]
    values: dict[str, float | None] = {"X": None, "Y": None, "Z": None}
    for axis, raw in stated:
        if axis not in values or values[axis] is not None:
            continue
        if raw is None:
            continue
        try:
            metres = float(raw)
        except ValueError:
            info.warnings.append(f"CZI Scaling {axis} value {raw!r} is not a number: ignored")
            continue
        if not math.isfinite(metres) or metres == 0:
            info.warnings.append(f"CZI Scaling {axis} is {raw}: no calibration")
            continue
        if metres < 0:
            if axis != "Z":
                info.warnings.append(f"CZI Scaling {axis} is negative ({raw}): ignored")
                continue
            info.warnings.append(f"CZI Scaling Z is negative ({raw}): kept as found")
        values[axis] = _micrometres(raw, metres)
        info.provenance[f"physical_size.{axis.lower()}_um"] = f"CZI Scaling/Items/Distance[{axis}]"
    info.physical_size = {"x_um": values["X"], "y_um": values["Y"], "z_um": values["Z"]}
    return stated


_ID_LIKE = re.compile(r"^(?:Channel|C):\d+$")


def _channel(index: int, element: Element | None) -> dict[str, Any]:
    """The fields of channel ``index``'s :class:`~zstack_analyzer.metadata.ChannelInfo`."""
    if element is None:
        return {"index": index}
    name = element.get("Name")
    # An ID ("Channel:0", pylibCZIrw's "C:0") is not a name a person gave the channel.
    if name is not None and (not name.strip() or name == element.get("Id") or _ID_LIKE.match(name)):
        name = None
    exposure_ns = _float(element, "ExposureTime")
    return {
        "index": index,
        "name": name,
        "excitation_nm": _float(element, "ExcitationWavelength"),
        "emission_nm": _float(element, "EmissionWavelength"),
        "color": _colour(_text(element, "Color")),
        "fluorophore": _text(element, "Fluor"),
        "exposure_ms": None if exposure_ns is None else exposure_ns * _NS_TO_MS,
        "illumination": _text(element, "IlluminationType"),
        "contrast_method": _text(element, "ContrastMethod"),
    }


def _display_colours(
    display: Element | None, channel_elements: list[Element], info: CziXmlInfo
) -> None:
    """Channel colours as ZEN shows them: DisplaySetting first, the acquisition colour after.

    Why this order: ZEN draws a channel with ``DisplaySetting/Channels/Channel/Color``
    (the user's display choice, saved with the document); ``Dimensions/Channels/
    Channel/Color`` is the colour the acquisition assigned, which ZEN black (AIM)
    does not even write. The display channel is matched by Id (the acquisition
    channel's Id), else by position when both lists have the same length.
    """
    shown: dict[int, str] = {}
    if display is not None:
        entries = _findall(display, "Channels/Channel")
        by_id = {e.get("Id"): e for e in entries if e.get("Id")}
        for index, element in enumerate(channel_elements):
            entry = by_id.get(element.get("Id"))
            if entry is None and len(entries) == len(channel_elements):
                entry = entries[index]
            colour = _colour(_text(entry, "Color")) if entry is not None else None
            if colour is not None:
                shown[index] = colour
    sources = set()
    for index, channel in enumerate(info.channels):
        if index in shown:
            channel["color"] = shown[index]
            sources.add("CZI DisplaySetting/Channels/Channel/Color (what ZEN displays)")
        elif channel.get("color") is not None:
            sources.add("CZI Information/Image/Dimensions/Channels/Channel/Color")
    if sources:
        info.provenance["channels[].color"] = " + ".join(sorted(sources))


def _referenced(parent: Element | None, tag: str, ref: Element | None) -> Element | None:
    """The ``tag`` child of ``parent`` whose Id matches ``ref``'s, else the first non-empty one."""
    if parent is None:
        return None
    candidates = [e for e in _findall(parent, tag) if len(e) or e.get("Name")]
    ref_id = None if ref is None else ref.get("Id")
    for candidate in candidates:
        if ref_id is not None and candidate.get("Id") == ref_id:
            return candidate
    return candidates[0] if candidates else None


def _positive(element: Element | None, child: str) -> float | None:
    """A value that must be > 0 to mean anything: 0 (ZEN's "not set") is unknown."""
    number = _float(element, child)
    return number if number is not None and number > 0 else None


def _instrument(information: Element, image: Element | None, info: CziXmlInfo) -> None:
    instrument = _find(information, "Instrument")
    # Without an Instrument there is nothing to reference: no lookups (opening is timed).
    objective = (
        None
        if instrument is None
        else _referenced(
            _find(instrument, "Objectives"),
            "Objective",
            None if image is None else _find(image, "ObjectiveSettings/ObjectiveRef"),
        )
    )
    if objective is not None:
        # Never the Id ("Objective:0"): a reference is not a name. A 0 magnification or
        # NA is ZEN's placeholder for "not set", i.e. unknown.
        found = {
            "name": (objective.get("Name") or "").strip() or _text(objective, "Manufacturer/Model"),
            "magnification": _positive(objective, "NominalMagnification"),
            "numerical_aperture": _positive(objective, "LensNA"),
            "immersion": _text(objective, "Immersion"),
        }
        if any(v is not None for v in found.values()):
            info.objective = found
            info.provenance["objective"] = "CZI Information/Instrument/Objectives/Objective"
    microscope = (
        None
        if instrument is None
        else _referenced(
            _find(instrument, "Microscopes"),
            "Microscope",
            None if image is None else _find(image, "MicroscopeRef"),
        )
    )
    application = _find(information, "Application")
    software = _text(application, "Name")
    version = _text(application, "Version")
    # ZEN blue names the stand (@Name, e.g. "Axio Observer.Z1 / 7"); ZEN black (AIM) and
    # the SEM modules write the whole system instead ("LSM 880, AxioObserver", "Crossbeam 550").
    model = None if microscope is None else (microscope.get("Name") or "").strip() or None
    model_source = "@Name"
    if model is None:
        model, model_source = _text(microscope, "Manufacturer/Model"), "Manufacturer/Model"
    if model is None:
        model, model_source = _text(microscope, "System"), "System"
    if microscope is not None or software or version:
        info.microscope = {
            "manufacturer": _text(microscope, "Manufacturer/Manufacturer"),
            "model": model,
            "serial_number": _text(microscope, "Manufacturer/SerialNumber"),
            "software": software,
            "software_version": version,
        }
        if model is not None:
            info.provenance["microscope.model"] = (
                f"CZI Information/Instrument/Microscopes/Microscope/{model_source}"
            )
        if software or version:
            info.provenance["microscope.software"] = "CZI Information/Application/Name, Version"


def _time_interval(image: Element, info: CziXmlInfo) -> None:
    t_axis = _find(image, "Dimensions/T")
    if t_axis is None:
        return
    increment = _float(t_axis, "Positions/Interval/Increment")
    if increment is not None and increment > 0:
        info.time_interval_s = increment
        info.provenance["time_interval_s"] = "CZI Dimensions/T/Positions/Interval/Increment"
        return
    offsets_text = _text(t_axis, "Positions/List/Offsets")
    if offsets_text is None:
        return
    try:
        offsets = [float(v) for v in offsets_text.split()]
    except ValueError:
        return
    if len(offsets) >= 2 and offsets[-1] > offsets[0]:
        info.time_interval_s = (offsets[-1] - offsets[0]) / (len(offsets) - 1)
        info.provenance["time_interval_s"] = "CZI Dimensions/T/Positions/List/Offsets (mean step)"


def _scenes(image: Element, info: CziXmlInfo) -> None:
    for position, scene in enumerate(_findall(image, "Dimensions/S/Scenes/Scene")):
        name = scene.get("Name") or None
        index_text = scene.get("Index")
        index = int(index_text) if index_text and index_text.strip().isdigit() else position
        if name is not None:
            info.scene_names[index] = name


def _acquisition(image: Element, info: CziXmlInfo) -> None:
    """AcquisitionDateAndTime, else the T axis' StartTime (which carries a zone offset)."""
    for child, source in (
        ("AcquisitionDateAndTime", "CZI Information/Image/AcquisitionDateAndTime"),
        ("Dimensions/T/StartTime", "CZI Information/Image/Dimensions/T/StartTime"),
    ):
        stamp = _text(image, child)
        if stamp is None:
            continue
        try:
            aware, naive = _datetime(stamp)
        except ValueError:
            info.warnings.append(f"CZI {child} {stamp!r} is not an ISO date: ignored")
            continue
        if aware is None and naive is None:
            continue  # ZEN's year-1 placeholder: no time stated here
        info.acquired_at, info.acquired_at_local = aware, naive
        if naive is not None:
            info.warnings.append(
                f"CZI {child.rsplit('/', 1)[-1]} has no time zone: kept as local time "
                "(acquired_at_local)"
            )
            info.provenance["acquired_at_local"] = source
        else:
            info.provenance["acquired_at"] = f"{source} (converted to UTC)"
        return


def _leaves(element: Element | None) -> dict[str, Any]:
    """Attributes and childless children of ``element`` as strings (capped): a cheap excerpt."""
    if element is None:
        return {}
    # items(), not attrib: the C element makes (and keeps) an attribute dict on first access.
    out: dict[str, Any] = {f"@{k}": v[:_VENDOR_MAX_TEXT] for k, v in element.items()}
    for child in element:
        if len(out) >= _VENDOR_MAX_ITEMS:
            out["..."] = "truncated"
            break
        text = child.text
        if text and len(child) == 0:
            text = text.strip()
            if text:
                out.setdefault(str(child.tag), text[:_VENDOR_MAX_TEXT])
    return out


def _vendor(
    information: Element | None, distances: list[tuple[str | None, str | None]]
) -> dict[str, Any]:
    """A JSON-safe excerpt: the plain values of Application, Document, Image, channels, scaling."""
    out: dict[str, Any] = {}
    if information is not None:
        for tag in ("Application", "Document", "Image"):
            values = _leaves(_find(information, tag))
            if values:
                out[tag] = values
        channels = _findall(information, "Image/Dimensions/Channels/Channel")
        if channels:
            out["Channels"] = [_leaves(c) for c in channels[:_VENDOR_MAX_ITEMS]]
    if distances:  # every Scaling/Items/Distance, as _scaling found them
        out["Scaling (m)"] = {"?" if axis is None else axis: raw for axis, raw in distances}
    return out


def parse_czi_xml(xml: str, *, path: Path) -> CziXmlInfo:
    """Map a CZI metadata XML string to scene-independent metadata.

    Parameters
    ----------
    xml
        The document's XML (libCZI's ``GetXmlMetadata``); may be empty.
    path
        The file, for messages.

    Raises
    ------
    MetadataError
        When the XML is not well-formed or declares entities.

    Examples
    --------
    >>> from pathlib import Path
    >>> xml = ("<ImageDocument><Metadata><Information/><Scaling><Items>"
    ...        "<Distance Id='X'><Value>1.6E-06</Value></Distance>"
    ...        "</Items></Scaling></Metadata></ImageDocument>")
    >>> parse_czi_xml(xml, path=Path("a.czi")).physical_size["x_um"]
    1.6
    """
    info = CziXmlInfo()
    if not xml or xml.isspace():  # not strip(): that copies a ZEN document of 500 kB
        info.warnings.append("the CZI has no metadata XML: calibration and channels unknown")
        return info
    information, scaling, display = _sections(xml, path)
    distances = _scaling(scaling, info)
    if information is None:
        info.warnings.append("no Metadata/Information in the CZI XML")
        return info
    image = _find(information, "Image")
    if image is not None:
        channel_elements = _findall(image, "Dimensions/Channels/Channel")
        info.channels = [_channel(i, e) for i, e in enumerate(channel_elements)]
        _display_colours(display, channel_elements, info)
        bits = _int(image, "ComponentBitCount")
        if bits is None and channel_elements:
            bits = _int(channel_elements[0], "ComponentBitCount")
        if bits is not None and bits > 0:
            info.significant_bits = bits
            info.provenance["significant_bits"] = "CZI Information/Image/ComponentBitCount"
        _acquisition(image, info)
        _time_interval(image, info)
        _scenes(image, info)
    _instrument(information, image, info)
    info.vendor_metadata = _vendor(information, distances)
    return info
