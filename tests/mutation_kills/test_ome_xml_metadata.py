"""OME-XML to metadata (``readers/_ome.py``), field by field, on hand-written documents.

Every OME-TIFF (and the OME-XML companion files) goes through here: sizes and the plane
order, TiffData references, calibration with its units and provenance, time increments,
acquisition time and its zone, instrument and objective, channels (names, wavelengths,
colours in RGBA or ZEN's 0x00RRGGBB, exposure from Plane elements), modulo annotations, and
the refusals (entities, malformed XML, other roots, unusable images, oversize XML).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from zstack_analyzer.errors import LimitExceededError, MetadataError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.metadata import SceneInfo
from zstack_analyzer.readers._ome import (
    OmeDocument,
    OmeImage,
    image_metadata,
    parse_ome_xml,
)

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
PATH = Path("cells.ome.tif")


def _doc(body: str, *, creator: str | None = "OME Bio-Formats 6.1.0", extra: str = "") -> str:
    made = f' Creator="{creator}"' if creator is not None else ""
    return f'<?xml version="1.0"?><OME xmlns="{NS}" UUID="urn:uuid:1234"{made}>{body}{extra}</OME>'


def _pixels(attrs: str = "", inner: str = "", *, order: str = "XYZCT") -> str:
    return (
        f'<Pixels ID="Pixels:0" DimensionOrder="{order}" Type="uint16" SizeX="64" SizeY="32" '
        f'SizeZ="5" SizeC="3" SizeT="2" {attrs}>{inner}</Pixels>'
    )


def _image(pixels: str, *, name: str = "cells", inner: str = "") -> str:
    return f'<Image ID="Image:0" Name="{name}">{inner}{pixels}</Image>'


def _parse(xml: str) -> OmeDocument:
    return parse_ome_xml(xml, path=PATH, limits=ReadLimits())


def _md(xml: str, **kw: Any) -> Any:
    doc = _parse(xml)
    image = doc.images[0]
    info = SceneInfo(
        index=0,
        size_t=image.size_t,
        size_c=image.size_c,
        size_z=image.size_z,
        size_y=image.size_y,
        size_x=image.size_x,
        samples_per_pixel=image.samples_per_pixel,
        dtype=image.dtype,
    )
    return image_metadata(
        doc, image, info, filename=PATH.name, file_format="OME-TIFF", scenes=[info], **kw
    )


# ------------------------------------------------------------------------------ parsing


def test_a_document_and_its_image() -> None:
    doc = _parse(_doc(_image(_pixels()), extra='<BinaryOnly MetadataFile="x.companion.ome"/>'))
    assert doc.uuid == "urn:uuid:1234"
    assert doc.creator == "OME Bio-Formats 6.1.0"
    assert doc.binary_only_file == "x.companion.ome"
    assert doc.xml.startswith("<?xml")
    [image] = doc.images
    assert (image.size_t, image.size_c, image.size_z, image.size_y, image.size_x) == (
        2,
        3,
        5,
        32,
        64,
    )
    assert image.name == "cells"
    assert image.dtype == "uint16"
    assert image.samples_per_pixel == 1
    assert image.dimension_order == "XYZCT"
    assert image.plane_order == "ZCT"
    assert image.plane_count == 30
    assert image.tiff_data == []
    assert _parse(_doc("")).images == []
    assert _parse(_doc("")).binary_only_file is None
    assert _parse(b'<OME xmlns="' + NS.encode() + b'"/>').creator is None


@pytest.mark.parametrize(
    ("order", "plane_order", "index"),
    [
        ("XYZCT", "ZCT", 1 + 2 * 5 + 1 * 15),
        ("XYCZT", "CZT", 2 + 1 * 3 + 1 * 15),
        ("XYTZC", "TZC", 1 + 1 * 2 + 2 * 10),
        ("XYZTC", "ZTC", 1 + 1 * 5 + 2 * 10),
        ("xyczt", "CZT", 2 + 1 * 3 + 1 * 15),
        ("XYZZT", "ZCT", 1 + 2 * 5 + 1 * 15),  # not a permutation: the default
    ],
)
def test_plane_order_and_index(order: str, plane_order: str, index: int) -> None:
    image = _parse(_doc(_image(_pixels(order=order)))).images[0]
    assert image.plane_order == plane_order
    assert image.plane_index(t=1, c=2, z=1) == index
    assert image.plane_index(0, 0, 0) == 0


def test_rgb_samples_fold_into_channels() -> None:
    channel = '<Channel ID="Channel:0:0" SamplesPerPixel="3"/>'
    pixels = _pixels(inner=channel).replace('SizeC="3"', 'SizeC="6"')
    image = _parse(_doc(_image(pixels))).images[0]
    assert (image.size_c, image.samples_per_pixel) == (2, 3)
    odd = _pixels(inner=channel).replace('SizeC="3"', 'SizeC="4"')  # not a multiple: plain
    image = _parse(_doc(_image(odd))).images[0]
    assert (image.size_c, image.samples_per_pixel) == (4, 1)
    zero = _pixels(inner='<Channel ID="Channel:0:0" SamplesPerPixel="0"/>')
    image = _parse(_doc(_image(zero))).images[0]
    assert (image.size_c, image.samples_per_pixel) == (3, 1)


def test_tiff_data_references() -> None:
    inner = (
        '<TiffData IFD="4" FirstT="1" FirstC="2" FirstZ="3" PlaneCount="6">'
        '<UUID FileName="other.ome.tif"> urn:uuid:abc </UUID></TiffData>'
        '<TiffData IFD="7"/>'
        '<TiffData NumPlanes="2"/>'
        "<TiffData/>"
        '<TiffData IFD="1"><UUID>  </UUID></TiffData>'
    )
    refs = _parse(_doc(_image(_pixels(inner=inner)))).images[0].tiff_data
    assert refs[0].first == {"T": 1, "C": 2, "Z": 3}
    assert refs[0].ifd == 4
    assert refs[0].plane_count == 6
    assert refs[0].uuid == "urn:uuid:abc"
    assert refs[0].filename == "other.ome.tif"
    assert (refs[1].ifd, refs[1].plane_count, refs[1].uuid, refs[1].filename) == (7, 1, None, None)
    assert (refs[2].ifd, refs[2].plane_count) == (0, 2)
    assert refs[2].first == {"T": 0, "C": 0, "Z": 0}
    assert (refs[3].ifd, refs[3].plane_count) == (0, None)
    assert refs[4].uuid is None
    assert refs[4].filename is None


@pytest.mark.parametrize(
    ("ome_type", "dtype"),
    [("float", "float32"), ("double", "float64"), ("bit", "bool"), ("int8", "int8")],
)
def test_pixel_types(ome_type: str, dtype: str) -> None:
    pixels = _pixels().replace('Type="uint16"', f'Type="{ome_type}"')
    assert _parse(_doc(_image(pixels))).images[0].dtype == dtype


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('<Image ID="Image:7"/>', "OME Image 'Image:7' is unusable: no Pixels element"),
        (_image(_pixels().replace('Type="uint16"', 'Type="uint12"')), "unknown pixel type"),
        (_image(_pixels().replace('SizeZ="5"', 'SizeZ="0"')), "non-positive size"),
        (_image(_pixels().replace('SizeC="3"', 'SizeC="0"')), "non-positive size"),
        (_image(_pixels().replace('SizeX="64"', "")), "unusable"),
        (_image(_pixels().replace('SizeZ="5"', 'SizeZ="five"')), "unusable"),
    ],
)
def test_unusable_images(body: str, match: str) -> None:
    with pytest.raises(MetadataError, match=match) as info:
        _parse(_doc(body))
    assert str(info.value).startswith("cells.ome.tif: ")


def test_refused_documents() -> None:
    with pytest.raises(MetadataError, match="declares entities"):
        _parse('<!DOCTYPE OME [<!ENTITY x "y">]><OME>&x;</OME>')
    with pytest.raises(MetadataError, match=r"cells\.ome\.tif: OME-XML is malformed"):
        _parse("<OME><Image></OME>")
    with pytest.raises(MetadataError, match="XML root is 'Other', not OME"):
        _parse(f'<Other xmlns="{NS}"/>')
    xml = _doc(_image(_pixels()))
    limits = ReadLimits(max_metadata_bytes=len(xml))
    assert parse_ome_xml(xml, path=PATH, limits=limits).images
    with pytest.raises(LimitExceededError, match="over the metadata limit"):
        parse_ome_xml(xml + " ", path=PATH, limits=limits)
    # Bytes that are not UTF-8 are replaced, not refused.
    raw = _doc(_image(_pixels(), name="caf\xe9")).encode("latin-1")
    assert _parse(raw.decode("latin-1")).images[0].name == "caf\xe9"
    assert parse_ome_xml(raw, path=PATH, limits=ReadLimits()).images[0].name == "caf\ufffd"


# ------------------------------------------------------------------------------ metadata


def test_calibration_units_and_provenance() -> None:
    attrs = (
        'PhysicalSizeX="0.5" PhysicalSizeY="250" PhysicalSizeYUnit="nm" '
        'PhysicalSizeZ="0.002" PhysicalSizeZUnit="mm" TimeIncrement="250" '
        'TimeIncrementUnit="ms" SignificantBits="12"'
    )
    md = _md(_doc(_image(_pixels(attrs))))
    assert md.physical_size.x_um == pytest.approx(0.5)
    assert md.physical_size.y_um == pytest.approx(0.25)
    assert md.physical_size.z_um == pytest.approx(2.0)
    assert md.time_interval_s == pytest.approx(0.25)
    assert md.significant_bits == 12
    assert md.provenance["physical_size.x_um"] == (
        "OME-XML Pixels/@PhysicalSizeX (no unit: µm, the schema default)"
    )
    assert md.provenance["physical_size.y_um"] == "OME-XML Pixels/@PhysicalSizeY"
    assert md.provenance["time_interval_s"] == "OME-XML Pixels/@TimeIncrement"
    assert md.provenance["sizes"] == "OME-XML Pixels/@Size*"
    assert md.filename == "cells.ome.tif"
    assert md.file_format == "OME-TIFF"
    assert (md.size_x, md.size_y, md.size_z, md.size_c, md.size_t) == (64, 32, 5, 3, 2)


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [("s", 2.0), ("min", 120.0), ("h", 7200.0), ("µs", 2e-6), ("us", 2e-6), ("ns", 2e-9)],
)
def test_time_units(unit: str, seconds: float) -> None:
    md = _md(_doc(_image(_pixels(f'TimeIncrement="2" TimeIncrementUnit="{unit}"'))))
    assert md.time_interval_s == pytest.approx(seconds)


def test_unknown_time_unit_is_seconds_and_zero_is_none() -> None:
    md = _md(_doc(_image(_pixels('TimeIncrement="3" TimeIncrementUnit="fortnight"'))))
    assert md.time_interval_s == pytest.approx(3.0)
    md = _md(_doc(_image(_pixels('TimeIncrement="0"'))))
    assert md.time_interval_s is None
    md = _md(_doc(_image(_pixels('TimeIncrement=""'))))
    assert md.time_interval_s is None
    assert "time_interval_s" not in md.provenance


def test_calibration_problems_are_warned() -> None:
    attrs = (
        'PhysicalSizeX="0" PhysicalSizeY="-0.3" PhysicalSizeZ="2" PhysicalSizeZUnit="pixel" '
        'SignificantBits="0"'
    )
    md = _md(_doc(_image(_pixels(attrs))), warnings=["earlier"])
    assert md.physical_size.x_um is None
    assert md.physical_size.y_um == pytest.approx(-0.3)
    assert md.physical_size.z_um is None
    assert md.significant_bits is None
    assert md.warnings[0] == "earlier"
    assert "PhysicalSizeX is 0: no calibration" in md.warnings
    assert "PhysicalSizeY is negative (-0.3): kept as found" in md.warnings
    assert "PhysicalSizeZ 2.0 in unit 'pixel' is not a length: unknown" in md.warnings
    assert "physical_size.x_um" not in md.provenance
    assert "physical_size.z_um" not in md.provenance
    bad = _md(_doc(_image(_pixels('PhysicalSizeX="wide" PhysicalSizeY=" "'))))
    assert bad.physical_size.x_um is None
    assert bad.physical_size.y_um is None


def test_acquisition_time_zones() -> None:
    def at(text: str, creator: str | None, tag: str = "AcquisitionDate") -> Any:
        inner = f"<{tag}>{text}</{tag}>"
        return _md(_doc(_image(_pixels(), inner=inner), creator=creator))

    utc = at("2020-05-01T10:20:30", "OME Bio-Formats 6.1.0")
    assert utc.acquired_at == datetime(2020, 5, 1, 10, 20, 30, tzinfo=UTC)
    assert utc.acquired_at_local is None
    assert "stores UTC" in utc.provenance["acquired_at"]
    five = at("2020-05-01T10:20:30", "OME Bio-Formats 5.9")
    assert five.acquired_at == datetime(2020, 5, 1, 10, 20, 30, tzinfo=UTC)
    old = at("2020-05-01T10:20:30", "OME Bio-Formats 4.4")
    assert old.acquired_at is None
    assert old.acquired_at_local == datetime(2020, 5, 1, 10, 20, 30)
    assert old.provenance["acquired_at_local"] == "OME-XML Image/AcquisitionDate"
    assert any(
        "acquisition time zone unknown (writer OME Bio-Formats 4.4)" in w for w in old.warnings
    )
    nobody = at("2020-05-01T10:20:30", None)
    assert any("(writer not named)" in w for w in nobody.warnings)
    zoned = at("2020-05-01T12:20:30+02:00", None)
    assert zoned.acquired_at == datetime(2020, 5, 1, 10, 20, 30, tzinfo=UTC)
    assert zoned.provenance["acquired_at"] == "OME-XML Image/AcquisitionDate"
    legacy = at("2019-01-02T03:04:05Z", "x", tag="AcquiredDate")
    assert legacy.acquired_at == datetime(2019, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert legacy.provenance["acquired_at"] == "OME-XML Image/AcquiredDate"
    junk = at("yesterday", "x")
    assert junk.acquired_at is None
    assert "AcquisitionDate 'yesterday' is not ISO 8601: ignored" in junk.warnings
    empty = at("  ", "x")
    assert empty.acquired_at is None
    assert empty.acquired_at_local is None
    assert not any("ISO" in w for w in empty.warnings)
    not_bf = at("2020-05-01T10:20:30", "Bio-Formats 6")
    assert not_bf.acquired_at is None


INSTRUMENT = (
    '<Instrument ID="Instrument:0">'
    '<Microscope Manufacturer="Zeiss" Model="LSM 980" SerialNumber="42"/>'
    '<Objective ID="Objective:0" Model=" Plan-Apo 63x " NominalMagnification="63" '
    'LensNA="1.4" Immersion="Oil"/>'
    '<Objective ID="Objective:1" Model="EC 10x" NominalMagnification="0" LensNA="0"/>'
    "</Instrument>"
)


def test_instrument_and_objective() -> None:
    inner = '<InstrumentRef ID="Instrument:0"/><ObjectiveSettings ID="Objective:0"/>'
    md = _md(_doc(INSTRUMENT + _image(_pixels(), inner=inner)))
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Zeiss"
    assert md.microscope.model == "LSM 980"
    assert md.microscope.serial_number == "42"
    assert md.microscope.software == "OME Bio-Formats 6.1.0"
    assert md.provenance["microscope.software"] == "OME-XML OME/@Creator"
    assert md.objective is not None
    assert md.objective.name == "Plan-Apo 63x"
    assert md.objective.magnification == 63
    assert md.objective.numerical_aperture == 1.4
    assert md.objective.immersion == "Oil"
    assert md.provenance["objective"] == "OME-XML Instrument/Objective"
    other = _md(_doc(INSTRUMENT + _image(_pixels(), inner='<ObjectiveSettings ID="Objective:1"/>')))
    assert other.objective is not None
    assert other.objective.name == "EC 10x"
    assert other.objective.magnification is None  # 0 is "not set"
    assert other.objective.numerical_aperture is None
    assert other.objective.immersion is None


def test_a_lone_instrument_and_objective_are_taken_without_refs() -> None:
    lone = (
        '<Instrument ID="Instrument:0"><Microscope Model="Scope"/>'
        '<Objective ID="Objective:0" NominalMagnification="20"/></Instrument>'
    )
    md = _md(_doc(lone + _image(_pixels()), creator=None), software="ZEN 3.1 (TIFF tag)")
    assert md.microscope is not None
    assert md.microscope.model == "Scope"
    assert md.microscope.manufacturer is None
    assert md.microscope.software == "ZEN 3.1 (TIFF tag)"
    assert md.provenance["microscope.software"] == "TIFF Software tag"
    assert md.objective is not None
    assert md.objective.magnification == 20
    two = INSTRUMENT + INSTRUMENT.replace("Instrument:0", "Instrument:1")
    md = _md(_doc(two + _image(_pixels()), creator=None))
    assert md.microscope is None  # two instruments, no reference, no writer
    assert md.objective is None
    # One instrument with two objectives and no settings: which one is unknown.
    md = _md(_doc(INSTRUMENT + _image(_pixels())))
    assert md.objective is None
    assert md.microscope is not None
    # An objective that says nothing is no objective.
    blank = '<Instrument ID="I"><Objective ID="O" NominalMagnification="0"/></Instrument>'
    assert _md(_doc(blank + _image(_pixels()))).objective is None


def test_no_instrument_and_no_writer_is_no_microscope() -> None:
    md = _md(_doc(_image(_pixels()), creator=None))
    assert md.microscope is None
    assert "microscope.software" not in md.provenance
    md = _md(_doc(_image(_pixels()), creator=""))
    assert md.microscope is None


def _channels(inner: str, *, creator: str = "OME Bio-Formats 6.1.0") -> Any:
    return _md(_doc(_image(_pixels(inner=inner)), creator=creator))


def test_channels_from_their_elements() -> None:
    inner = (
        '<Channel ID="Channel:0:0" Name="DAPI" Color="65535" ExcitationWavelength="405" '
        'EmissionWavelength="461" Fluor="Hoechst" IlluminationType="Epifluorescence" '
        'ContrastMethod="Fluorescence"/>'
        '<Channel ID="Channel:0:1" Name="" Color="-16776961" EmissionWavelength="0.52" '
        'EmissionWavelengthUnit="µm" ExcitationWavelength="-1"/>'
        '<Channel ID="Channel:0:2" Color="blue" EmissionWavelength="600" '
        'EmissionWavelengthUnit="parsec"/>'
        '<Plane TheC="0" TheZ="0" TheT="0" ExposureTime="0.25"/>'
        '<Plane TheC="0" TheZ="1" TheT="0" ExposureTime="99"/>'
        '<Plane TheC="1" ExposureTime="40" ExposureTimeUnit="ms"/>'
        '<Plane TheC="2" ExposureTime="" />'
        '<Plane ExposureTime="5" ExposureTimeUnit="weird"/>'
    )
    md = _channels(inner)
    first, second, third = md.channels
    assert first.index == 0
    assert first.name == "DAPI"
    assert first.color == "#0000FF"
    assert first.excitation_nm == pytest.approx(405)
    assert first.emission_nm == pytest.approx(461)
    assert first.fluorophore == "Hoechst"
    assert first.illumination == "Epifluorescence"
    assert first.contrast_method == "Fluorescence"
    assert first.exposure_ms == pytest.approx(250.0)  # the first plane of the channel
    assert second.name is None
    assert second.color == "#FF0000"
    assert second.emission_nm == pytest.approx(520.0)
    assert second.excitation_nm is None
    assert second.exposure_ms == pytest.approx(40.0)
    assert third.color is None
    assert third.emission_nm is None
    assert third.exposure_ms is None
    assert third.fluorophore is None
    assert not any("OME Channel elements" in w for w in md.warnings)


def test_missing_channel_elements_are_unnamed_with_a_warning() -> None:
    inner = (
        '<Channel ID="Channel:0:0" Name="only"/>'
        '<Plane TheC="2" ExposureTime="7" ExposureTimeUnit="s"/>'
    )
    md = _channels(inner)
    assert [c.name for c in md.channels] == ["only", None, None]
    assert [c.index for c in md.channels] == [0, 1, 2]
    assert md.channels[2].exposure_ms == pytest.approx(7000.0)
    assert "1 OME Channel elements for SizeC 3: the rest are unnamed" in md.warnings
    none = _channels("")
    assert [c.name for c in none.channels] == [None, None, None]
    assert not any("OME Channel elements" in w for w in none.warnings)


def test_zen_colours_are_read_as_0x00rrggbb_when_the_emission_says_so() -> None:
    # 0x0000FF00 is green in ZEN's reading and blue-ish/transparent as RGBA.
    green = str(0x0000FF00)
    inner = (
        f'<Channel ID="Channel:0:0" Name="EGFP" Color="{green}" EmissionWavelength="509"/>'
        f'<Channel ID="Channel:0:1" Name="DAPI" Color="{0x0000FFFF}" EmissionWavelength="450"/>'
        f'<Channel ID="Channel:0:2" Name="far red" Color="{green}" EmissionWavelength="800"/>'
    )
    md = _channels(inner, creator="ZEN 3.4 (blue edition)")
    egfp, dapi, far = md.channels
    assert egfp.color == "#00FF00"
    assert md.provenance["channels[].color"] == "OME-XML Channel/@Color as ZEN's 0x00RRGGBB"
    assert any(
        "channel 'Channel:0:0': Color 65280 read as RGBA (#0000FF) contradicts its emission "
        "at 509 nm"
        in w
        and "#00FF00 is used" in w
        for w in md.warnings
    )
    assert dapi.color == "#0000FF"  # RGBA reading (0x0000FFFF -> #0000FF) fits 450 nm
    assert far.color == "#0000FF"  # 800 nm: no hue to compare, RGBA kept
    # Any other writer: the schema's RGBA, whatever the emission.
    other = _channels(inner, creator="OME Bio-Formats 6.1.0")
    assert other.channels[0].color == "#0000FF"
    assert "channels[].color" not in other.provenance
    zeiss = _channels(inner, creator="Carl Zeiss software")
    assert zeiss.channels[0].color == "#00FF00"
    word = _channels(inner, creator="ZENITH")
    assert word.channels[0].color == "#0000FF"


@pytest.mark.parametrize(
    ("rgb", "nm", "zen"),
    [
        (0x00FF0000, 620, "#FF0000"),  # red at 620 nm
        (0x00FF0000, 700, "#FF0000"),  # past the last anchor: red
        (0x00FF8000, 590, "#FF8000"),  # orange
        (0x008000FF, 395, "#8000FF"),  # below 400 nm: violet
    ],
)
def test_zen_colours_across_the_spectrum(rgb: int, nm: float, zen: str) -> None:
    inner = f'<Channel ID="C" Color="{rgb}" EmissionWavelength="{nm}"/>'
    md = _channels(inner, creator="ZEN")
    assert md.channels[0].color == zen


def test_zen_grey_and_dark_colours_are_not_reinterpreted() -> None:
    for value in (0x00808080, 0x00030000, 0x00FFFFFF):
        inner = f'<Channel ID="C" Color="{value}" EmissionWavelength="520"/>'
        rgba = _channels(inner, creator="OME Bio-Formats 6").channels[0].color
        assert _channels(inner, creator="ZEN").channels[0].color == rgba


def test_modulo_annotations_and_vendor_metadata() -> None:
    annotations = (
        '<StructuredAnnotations><XMLAnnotation ID="Annotation:0"><Value><Modulo>'
        '<ModuloAlongT Type="lifetime" Start="0" Step="1" End="7"/>'
        '<ModuloAlongX Type="x"/>'
        "</Modulo></Value></XMLAnnotation>"
        '<XMLAnnotation ID="Annotation:1"><Value><Modulo><ModuloAlongC Type="other"/>'
        "</Modulo></Value></XMLAnnotation></StructuredAnnotations>"
    )
    inner = '<AnnotationRef ID="Annotation:0"/>'
    md = _md(_doc(_image(_pixels(), inner=inner), extra=annotations))
    modulo = md.vendor_metadata["modulo"]
    assert modulo == {
        "ModuloAlongT": {"Type": "lifetime", "Start": "0", "Step": "1", "End": "7"},
        "ModuloAlongX": {"Type": "x"},
    }
    assert md.vendor_metadata["dimension_order"] == "XYZCT"
    assert md.vendor_metadata["ome_xml"].startswith("<?xml")
    plain = _md(_doc(_image(_pixels()), extra=annotations))
    assert "modulo" not in plain.vendor_metadata
    no_annotations = _md(_doc(_image(_pixels(), inner=inner)))
    assert "modulo" not in no_annotations.vendor_metadata


def test_long_xml_is_cut_in_vendor_metadata() -> None:
    padding = "<!--" + "x" * 40000 + "-->"
    md = _md(_doc(_image(_pixels()), extra=padding))
    kept = md.vendor_metadata["ome_xml"]
    assert kept.endswith("[truncated]")
    assert len(kept) < 40000


def test_pyramid_levels_and_scenes_pass_through() -> None:
    md = _md(_doc(_image(_pixels())), pyramid_levels=[(32, 64), (16, 32)])
    assert md.pyramid_levels == [(32, 64), (16, 32)]
    assert _md(_doc(_image(_pixels()))).pyramid_levels == []
    assert len(md.scenes) == 1


def test_ome_image_is_a_plain_record() -> None:
    image = _parse(_doc(_image(_pixels()))).images[0]
    assert isinstance(image, OmeImage)
    assert image.element.get("ID") == "Image:0"
    assert image.pixels.get("ID") == "Pixels:0"
