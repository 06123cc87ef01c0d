"""The CZI metadata XML mapping, rule by rule, on small XML strings (no file, no pixels).

Why: the reader tests check whole ZEN-like documents; these pin each rule of
``readers/_czi_xml.py`` where it decides (which element wins, what is a placeholder,
units, caps of the vendor excerpt, the fragment route against the whole-document
parse, the messages users read).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from zstack_analyzer import MetadataError
from zstack_analyzer.readers._czi_xml import (
    _colour,
    _datetime,
    _depth,
    _fragment,
    _metadata_child_fragment,
    _micrometres,
    _sections,
    parse_czi_xml,
)

PATH = Path("doc.czi")
SCALING = (
    "<Scaling><Items><Distance Id='X'><Value>2E-07</Value></Distance>"
    "<Distance Id='Y'><Value>3E-07</Value></Distance>"
    "<Distance Id='Z'><Value>1E-06</Value></Distance></Items></Scaling>"
)


def _doc(information: str = "", scaling: str = SCALING, extra: str = "") -> str:
    return (
        f"<ImageDocument><Metadata><Information>{information}</Information>{scaling}{extra}"
        "</Metadata></ImageDocument>"
    )


def _image(inner: str) -> str:
    return f"<Image>{inner}</Image>"


def _channels(inner: str) -> str:
    return _image(f"<Dimensions><Channels>{inner}</Channels></Dimensions>")


# ------------------------------------------------------------------------ errors


def test_entities_are_refused_with_the_files_name() -> None:
    xml = '<!DOCTYPE d [<!ENTITY e "x">]><ImageDocument>&e;</ImageDocument>'
    with pytest.raises(MetadataError) as caught:
        parse_czi_xml(xml, path=PATH)
    error = caught.value
    assert str(error).startswith("doc.czi: the CZI metadata XML declares entities or a DTD (")
    assert str(error).endswith("); refused")
    assert error.path == PATH
    assert error.detail == "EntitiesForbidden(name='e', system_id=None, public_id=None)"


def test_malformed_xml_is_refused_with_the_parsers_words() -> None:
    with pytest.raises(MetadataError) as caught:
        parse_czi_xml("<ImageDocument><Metadata></ImageDocument>", path=PATH)
    error = caught.value
    assert str(error).startswith("doc.czi: the CZI metadata XML is not well-formed: mismatched")
    assert error.path == PATH
    assert error.detail is not None and "mismatched tag" in error.detail


@pytest.mark.parametrize("xml", ["", "  \n\t "])
def test_no_xml_is_a_warning(xml: str) -> None:
    info = parse_czi_xml(xml, path=PATH)
    assert info.warnings == ["the CZI has no metadata XML: calibration and channels unknown"]
    assert info.physical_size == {} and info.channels == []


def test_no_information_still_reads_the_scaling() -> None:
    xml = f"<ImageDocument><Metadata>{SCALING}</Metadata></ImageDocument>"
    info = parse_czi_xml(xml, path=PATH)
    assert info.physical_size == {"x_um": 0.2, "y_um": 0.3, "z_um": 1.0}
    assert info.warnings == ["no Metadata/Information in the CZI XML"]
    assert info.vendor_metadata == {}
    assert info.microscope is None


def test_no_metadata_element_at_all() -> None:
    info = parse_czi_xml("<ImageDocument><Other/></ImageDocument>", path=PATH)
    assert info.warnings == [
        "no Metadata/Scaling in the CZI XML: voxel size unknown",
        "no Metadata/Information in the CZI XML",
    ]


# ------------------------------------------------------------------- fragments


def test_fragment_is_the_one_element_or_nothing() -> None:
    xml = "<a><Information><b/></Information><ScalingComponent/></a>"
    assert _fragment(xml, "Information") == "<Information><b/></Information>"
    assert _fragment(xml, "Scaling") is None  # <ScalingComponent> is not <Scaling>
    assert _fragment("<a><Information>", "Information") is None
    two = "<Information>1</Information><Information>2</Information>"
    assert _fragment(two, "Information") is None
    # A stray closing tag before the element: the element is the one after its opening tag.
    before = "<x>&lt;/Information&gt;</x></Information><Information>2</Information>"
    assert _fragment(before, "Information") == "<Information>2</Information>"
    late = "<c></Scaling2><Scaling>s</Scaling>"
    assert _fragment(late, "Scaling") == "<Scaling>s</Scaling>"
    assert _fragment("<Scaling>x</Scaling>", "Scaling") == "<Scaling>x</Scaling>"


def test_fragment_closing_before_the_opening() -> None:
    xml = "</Information><Information>x</Information>"
    assert _fragment(xml, "Information") == "<Information>x</Information>"
    assert _fragment("<Scaling>1</Scaling></Scaling>", "Scaling") is None  # closed twice


@pytest.mark.parametrize(
    ("stretch", "depth"),
    [
        ("", 0),
        ("<a>", 1),
        ("<a><b>", 2),
        ("<a></a>", 0),
        ("<a/>", 0),
        ("<a><b/>", 1),
        ("<a>x/></a>", 0),  # "/>" in text is not a tag
        ("<a f='x>y'/>", 0),  # ">" in a quoted attribute
        ('<a f="x>y"/><b>', 1),
        ("<a>t/>", 1),
        ("<a><b>t/></b>", 1),
        ("</a>", -1),
        # Bounds that agree are the answer: every "/>" ends a plain tag (here a stray quote
        # would make the quote-aware pattern see one tag fewer).
        ('<x a="1/><y/>', 0),
    ],
)
def test_depth_counts_open_elements(stretch: str, depth: int) -> None:
    assert _depth(stretch) == depth


def test_metadata_child_fragment_finds_the_documents_own() -> None:
    own = "<DisplaySetting><Channels/></DisplaySetting>"
    nested = "<DisplaySetting><Nested/></DisplaySetting>"
    xml = f"<D><Metadata><Experiment>{nested}</Experiment>{own}</Metadata></D>"
    assert _metadata_child_fragment(xml, "DisplaySetting") == own
    assert _metadata_child_fragment(xml.replace(own, ""), "DisplaySetting") is None
    assert _metadata_child_fragment(f"<D>{own}</D>", "DisplaySetting") is None  # no <Metadata>
    assert _metadata_child_fragment(f"<D><Metadata>{own}</Metadata></D>", "DisplaySetting") == own
    # A comment or processing instruction before it: not sure (even one that counts as 0).
    for odd in ("<!-- c -->", "<?pi x?>", "<!-- a/> -->", "<?pi a/>?>"):
        assert (
            _metadata_child_fragment(f"<D><Metadata>{odd}{own}</Metadata></D>", "DisplaySetting")
            is None
        )
    # Nested in itself: not a shape we know.
    inner = "<DisplaySetting><DisplaySetting></DisplaySetting></DisplaySetting>"
    assert (
        _metadata_child_fragment(f"<D><Metadata>{inner}</Metadata></D>", "DisplaySetting") is None
    )
    # Never closed.
    assert _metadata_child_fragment("<D><Metadata><DisplaySetting>", "DisplaySetting") is None
    # A <Metadata> nested in a HardwareSetting: the count starts at the document's own.
    hardware = f"<D><Metadata><HW><Metadata></Metadata></HW>{own}</Metadata></D>"
    assert _metadata_child_fragment(hardware, "DisplaySetting") == own
    assert _metadata_child_fragment(f"<Metadata>{own}</Metadata>", "DisplaySetting") == own
    # The document's own first, a nested one after it; nested ones on both sides.
    after = f"<D><Metadata>{own}<Experiment>{nested}</Experiment></Metadata></D>"
    assert _metadata_child_fragment(after, "DisplaySetting") == own
    sides = f"<D><Metadata><E>{nested}</E>{own}<F>{nested}</F></Metadata></D>"
    assert _metadata_child_fragment(sides, "DisplaySetting") == own
    # Nested in itself, with a namesake later in the document: still not a shape we know.
    selfish = (
        "<D><Metadata><DisplaySetting><DisplaySetting></DisplaySetting></DisplaySetting>"
        f"<X>{nested}</X></Metadata></D>"
    )
    assert _metadata_child_fragment(selfish, "DisplaySetting") is None
    # The element before <Metadata> does not count.
    early = f"<D>{own}<Metadata><X/></Metadata></D>"
    assert _metadata_child_fragment(early, "DisplaySetting") is None


def test_metadata_child_fragment_counts_from_the_nearest_boundary() -> None:
    own = "<DisplaySetting><C/></DisplaySetting>"
    info = "<Information><a><b/></a></Information>"
    xml = f"<D><Metadata>{info}{own}</Metadata></D>"
    boundary = xml.find(info) + len(info)
    assert _metadata_child_fragment(xml, "DisplaySetting", (boundary,)) == own
    # A boundary exactly at the candidate: nothing lies between (a comment before it is past).
    commented = f"<D><Metadata><!-- c -->{info}{own}</Metadata></D>"
    at = commented.find(own)
    assert _metadata_child_fragment(commented, "DisplaySetting", (at,)) == own
    assert _metadata_child_fragment(commented, "DisplaySetting", (at + 1,)) is None
    # A boundary after the candidate is not used; one before <Metadata> neither.
    assert _metadata_child_fragment(xml, "DisplaySetting", (len(xml), 0)) == own
    # A boundary inside an open element would make the count wrong: it is only a hint
    # when it lies between children, as the caller guarantees.
    opened = f"<D><Metadata><Wrap>{own}</Wrap></Metadata></D>"
    assert _metadata_child_fragment(opened, "DisplaySetting") is None
    assert _metadata_child_fragment(opened, "DisplaySetting", (opened.find(own),)) == own


def test_sections_by_fragments_and_by_the_whole_document() -> None:
    display = "<DisplaySetting><Channels><Channel Id='Channel:0'><Color>#FF112233</Color></Channel></Channels></DisplaySetting>"
    fast = _doc(_channels("<Channel Id='Channel:0' Name='A'/>"), extra=display)
    information, scaling, shown = _sections(fast, PATH)
    assert information is not None and information.tag == "Information"
    assert scaling is not None and scaling.tag == "Scaling"
    assert shown is not None and shown.tag == "DisplaySetting"
    # A second <Scaling> elsewhere: the whole document is parsed, the same three found.
    slow = fast.replace("<Metadata>", "<Metadata><Experiment><Scaling/></Experiment>")
    information, scaling, shown = _sections(slow, PATH)
    assert information is not None and information.tag == "Information"
    assert scaling is not None and len(scaling) == 1
    assert shown is not None and shown.tag == "DisplaySetting"
    assert parse_czi_xml(slow, path=PATH) == parse_czi_xml(fast, path=PATH)
    assert parse_czi_xml(fast, path=PATH).channels[0]["color"] == "#112233"
    # No DisplaySetting at all: fragments, the third is None.
    information, scaling, shown = _sections(_doc(), PATH)
    assert (information is not None, scaling is not None, shown) == (True, True, None)
    # A DisplaySetting that is not the document's own: whole parse, and none found.
    nested = _doc(extra=f"<Experiment>{display}</Experiment>")
    assert _sections(nested, PATH)[2] is None
    info = parse_czi_xml(
        _doc(_channels("<Channel Id='Channel:0'/>"), extra=f"<Experiment>{display}</Experiment>"),
        path=PATH,
    )
    assert info.channels[0]["color"] is None


def test_fragments_that_do_not_parse_fall_back_to_the_document() -> None:
    """An entity reference inside Information: the fragment parse fails, the document decides."""
    xml = _doc(_image("<T>&amp;</T>"))
    assert parse_czi_xml(xml, path=PATH).vendor_metadata["Image"] == {"T": "&"}
    broken = _doc(_image("<T>&bogus;</T>"))
    with pytest.raises(MetadataError, match="not well-formed"):
        parse_czi_xml(broken, path=PATH)


def test_damage_outside_the_fragments_does_not_matter() -> None:
    """Information and Scaling are read as fragments: a broken Experiment does not fail them.

    Why pinned: ZEN's Experiment and HardwareSetting blocks are most of a document, and a
    document whose mapped parts are whole keeps its calibration.
    """
    xml = _doc(
        _image("<ComponentBitCount>10</ComponentBitCount>"),
        extra="<Experiment><a></b></Experiment>",
    )
    info = parse_czi_xml(xml, path=PATH)
    assert info.physical_size == {"x_um": 0.2, "y_um": 0.3, "z_um": 1.0}
    assert info.significant_bits == 10
    # Without the Information fragment the whole document is parsed, and refused.
    whole = xml.replace("<Information>", "<Information >")
    with pytest.raises(MetadataError, match="not well-formed"):
        parse_czi_xml(whole, path=PATH)


def test_display_setting_as_a_fragment_beside_a_broken_experiment() -> None:
    """Information, Scaling and DisplaySetting as fragments: the Experiment is never parsed.

    The comment inside Scaling is skipped by counting from the end of Scaling (a
    boundary), not from the top of Metadata.
    """
    display = (
        "<DisplaySetting><Channels><Channel Id='Channel:0'><Color>#FF0A0B0C</Color></Channel>"
        "</Channels></DisplaySetting>"
    )
    scaling = SCALING.replace("<Items>", "<!-- µm --><Items>")
    channels = _channels("<Channel Id='Channel:0'/>")
    xml = (
        "<ImageDocument><Metadata><Experiment><a></b></Experiment>"
        f"<Information>{channels}</Information>"
        f"{scaling}{display}</Metadata></ImageDocument>"
    )
    info = parse_czi_xml(xml, path=PATH)
    assert info.channels[0]["color"] == "#0A0B0C"
    assert info.physical_size == {"x_um": 0.2, "y_um": 0.3, "z_um": 1.0}


def test_a_failed_fragment_parse_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    broken = _doc(_image("<T>&bogus;</T>"))
    with (
        caplog.at_level(logging.DEBUG, logger="zstack_analyzer.readers._czi_xml"),
        pytest.raises(MetadataError),
    ):
        parse_czi_xml(broken, path=PATH)
    assert [r.getMessage() for r in caplog.records] == [
        "doc.czi: fragment parse failed; parsing the whole XML"
    ]


def test_no_metadata_in_a_whole_parse() -> None:
    xml = "<ImageDocument><Scaling/><Information/><Scaling/></ImageDocument>"
    info = parse_czi_xml(xml, path=PATH)
    assert "no Metadata/Information in the CZI XML" in info.warnings


def test_the_first_of_duplicated_sections_in_the_whole_parse() -> None:
    second = SCALING.replace("2E-07", "9E-07")
    xml = _doc(extra=second)  # two Scaling children of Metadata: the first is the document's
    assert parse_czi_xml(xml, path=PATH).physical_size["x_um"] == 0.2


# --------------------------------------------------------------------- scaling


def test_scaling_rules_and_warnings() -> None:
    scaling = (
        "<Scaling><Items>"
        "<Distance Id='X'><Value>-2E-07</Value></Distance>"
        "<Distance Id='X'><Value>4E-07</Value></Distance>"
        "<Distance Id='Y'><Value>abc</Value></Distance>"
        "<Distance Id='Y'><Value>5E-07</Value></Distance>"
        "<Distance Id='Y'><Value>6E-07</Value></Distance>"
        "<Distance Id='Z'><Value>-1E-06</Value></Distance>"
        "<Distance Id='Z'><Value>3E-06</Value></Distance>"
        "<Distance Id='W'><Value>1E-06</Value></Distance>"
        "<Distance><Value>1E-06</Value></Distance>"
        "</Items></Scaling>"
    )
    info = parse_czi_xml(_doc(scaling=scaling), path=PATH)
    assert info.physical_size == {"x_um": 0.4, "y_um": 0.5, "z_um": -1.0}
    assert info.warnings == [
        "CZI Scaling X is negative (-2E-07): ignored",
        "CZI Scaling Y value 'abc' is not a number: ignored",
        "CZI Scaling Z is negative (-1E-06): kept as found",
    ]
    assert info.provenance["physical_size.x_um"] == "CZI Scaling/Items/Distance[X]"
    assert info.provenance["physical_size.y_um"] == "CZI Scaling/Items/Distance[Y]"
    assert info.provenance["physical_size.z_um"] == "CZI Scaling/Items/Distance[Z]"
    assert info.vendor_metadata["Scaling (m)"] == {
        "X": "4E-07",
        "Y": "6E-07",
        "Z": "3E-06",
        "W": "1E-06",
        "?": "1E-06",
    }


@pytest.mark.parametrize("value", ["0", "inf", "nan", "-0.0"])
def test_scaling_that_is_no_calibration(value: str) -> None:
    scaling = (
        f"<Scaling><Items><Distance Id='Y'><Value>{value}</Value></Distance></Items></Scaling>"
    )
    info = parse_czi_xml(_doc(scaling=scaling), path=PATH)
    assert info.physical_size == {"x_um": None, "y_um": None, "z_um": None}
    assert info.warnings == [f"CZI Scaling Y is {value}: no calibration"]
    assert "physical_size.y_um" not in info.provenance


def test_scaling_without_a_value_is_unknown() -> None:
    scaling = "<Scaling><Items><Distance Id='X'/><Distance Id='X'><Value> </Value></Distance></Items></Scaling>"
    info = parse_czi_xml(_doc(scaling=scaling), path=PATH)
    assert info.physical_size == {"x_um": None, "y_um": None, "z_um": None}
    assert info.warnings == []
    assert info.vendor_metadata["Scaling (m)"] == {"X": None}


@pytest.mark.parametrize(
    ("raw", "um"),
    [
        ("1E-06", 1.0),
        ("1.6E-06", 1.6),
        ("-2.5e-7", -0.25),
        ("+3e-6", 3.0),
        ("0.000001", 1.0),
        ("123456789012e-18", 0.123456789012),
        ("1234567890123e-18", 1.23456789012),
        ("7", 7e6),
        ("1e-190", 1e-184),
        ("1e-220", 1e-214),
        ("1e195", 1e201),
        ("2.5e-6", 2.5),
        ("3.", 3e6),
        (".25e-6", 0.25),
    ],
)
def test_micrometres(raw: str, um: float) -> None:
    value = _micrometres(raw, float(raw))
    assert value == float(f"{um:.12g}")
    assert value == float(f"{float(raw) * 1e6:.12g}")


# -------------------------------------------------------------------- channels


def test_channel_fields_and_names() -> None:
    channels = (
        "<Channel Id='Channel:0' Name='DAPI'><ExcitationWavelength>353</ExcitationWavelength>"
        "<EmissionWavelength> 465.5 </EmissionWavelength><Color>#FF00A1FF</Color>"
        "<Fluor>DAPI dye</Fluor><ExposureTime>2500000</ExposureTime>"
        "<IlluminationType>Epifluorescence</IlluminationType>"
        "<ContrastMethod>Fluorescence</ContrastMethod></Channel>"
        "<Channel Id='Channel:1' Name='Channel:1'/>"
        "<Channel Id='X7' Name='X7'/>"
        "<Channel Id='Channel:3' Name='C:12'/>"
        "<Channel Id='Channel:4' Name='  '/>"
        "<Channel Id='Channel:5' Name='Channel:5b'><ExposureTime>abc</ExposureTime>"
        "<ExcitationWavelength>inf</ExcitationWavelength><Fluor> </Fluor></Channel>"
        "<Channel Id='Channel:6'/>"
    )
    info = parse_czi_xml(_doc(_channels(channels)), path=PATH)
    first, *rest = info.channels
    assert first == {
        "index": 0,
        "name": "DAPI",
        "excitation_nm": 353.0,
        "emission_nm": 465.5,
        "color": "#00A1FF",
        "fluorophore": "DAPI dye",
        "exposure_ms": 2.5,
        "illumination": "Epifluorescence",
        "contrast_method": "Fluorescence",
    }
    assert [c["index"] for c in info.channels] == list(range(7))
    assert [c["name"] for c in rest] == [None, None, None, None, "Channel:5b", None]
    assert rest[4]["exposure_ms"] is None
    assert rest[4]["excitation_nm"] is None
    assert rest[4]["fluorophore"] is None
    assert info.provenance["channels[].color"] == (
        "CZI Information/Image/Dimensions/Channels/Channel/Color"
    )


@pytest.mark.parametrize(
    ("value", "colour"),
    [
        ("#FF00A1FF", "#00A1FF"),
        ("#00a1ff", "#00A1FF"),
        ("#aBcDeF", "#ABCDEF"),
        ("00A1FF", None),
        ("#GG0000", None),
        ("#12345", None),
        ("#1234567", None),
        ("#AABBCCDDEE", None),
        (None, None),
        ("#", None),
    ],
)
def test_colours(value: str | None, colour: str | None) -> None:
    assert _colour(value) == colour


def test_display_colours_by_id_and_by_position() -> None:
    channels = "<Channel Id='Channel:0'><Color>#FF010101</Color></Channel><Channel Id='Channel:1'/>"
    by_id = (
        "<DisplaySetting><Channels>"
        "<Channel Id='Channel:1'><Color>#FF020202</Color></Channel>"
        "<Channel Id='Channel:0'><Color>bad</Color></Channel>"
        "</Channels></DisplaySetting>"
    )
    info = parse_czi_xml(_doc(_channels(channels), extra=by_id), path=PATH)
    assert [c["color"] for c in info.channels] == ["#010101", "#020202"]
    assert info.provenance["channels[].color"] == (
        "CZI DisplaySetting/Channels/Channel/Color (what ZEN displays) + "
        "CZI Information/Image/Dimensions/Channels/Channel/Color"
    )
    positional = (
        "<DisplaySetting><Channels><Channel><Color>#FF030303</Color></Channel>"
        "<Channel><Color>#FF040404</Color></Channel></Channels></DisplaySetting>"
    )
    info = parse_czi_xml(_doc(_channels(channels), extra=positional), path=PATH)
    assert [c["color"] for c in info.channels] == ["#030303", "#040404"]
    assert info.provenance["channels[].color"] == (
        "CZI DisplaySetting/Channels/Channel/Color (what ZEN displays)"
    )
    # Another count and no Id match: no display colour is guessed.
    one = "<DisplaySetting><Channels><Channel><Color>#FF050505</Color></Channel></Channels></DisplaySetting>"
    info = parse_czi_xml(_doc(_channels(channels), extra=one), path=PATH)
    assert [c["color"] for c in info.channels] == ["#010101", None]
    # An Id that matches nothing among two of two: the position decides.
    other = positional.replace("<Channel>", "<Channel Id='Other'>", 1)
    info = parse_czi_xml(_doc(_channels(channels), extra=other), path=PATH)
    assert [c["color"] for c in info.channels] == ["#030303", "#040404"]
    # No colour anywhere: no provenance.
    bare = parse_czi_xml(_doc(_channels("<Channel Id='Channel:0'/>")), path=PATH)
    assert "channels[].color" not in bare.provenance


# ---------------------------------------------------------- bits, times, scenes


@pytest.mark.parametrize(
    ("image", "bits"),
    [
        ("<ComponentBitCount>12</ComponentBitCount>", 12),
        ("<ComponentBitCount>0</ComponentBitCount>", None),
        ("<ComponentBitCount>-4</ComponentBitCount>", None),
        ("<ComponentBitCount>12.5</ComponentBitCount>", None),
        ("<ComponentBitCount>1</ComponentBitCount>", 1),
        (
            "<Dimensions><Channels><Channel><ComponentBitCount>14</ComponentBitCount></Channel>"
            "<Channel><ComponentBitCount>10</ComponentBitCount></Channel></Channels></Dimensions>",
            14,
        ),
        (
            "<ComponentBitCount>8</ComponentBitCount><Dimensions><Channels><Channel>"
            "<ComponentBitCount>14</ComponentBitCount></Channel></Channels></Dimensions>",
            8,
        ),
    ],
)
def test_significant_bits(image: str, bits: int | None) -> None:
    info = parse_czi_xml(_doc(_image(image)), path=PATH)
    assert info.significant_bits == bits
    if bits is None:
        assert "significant_bits" not in info.provenance
    else:
        assert info.provenance["significant_bits"] == "CZI Information/Image/ComponentBitCount"


def test_datetimes() -> None:
    aware, naive = _datetime(" 2021-06-15T08:09:43.0304818+02:00 ")
    assert (aware, naive) == (datetime(2021, 6, 15, 6, 9, 43, 30481, tzinfo=UTC), None)
    assert aware is not None and aware.utcoffset() == timedelta(0)
    assert _datetime("2020-12-15T10:24:08.1234567") == (
        None,
        datetime(2020, 12, 15, 10, 24, 8, 123456),
    )
    assert _datetime("0001-01-01T00:00:00+01:00") == (None, None)
    assert _datetime("2020-12-15T10:24:08Z")[0] == datetime(2020, 12, 15, 10, 24, 8, tzinfo=UTC)
    with pytest.raises(ValueError):
        _datetime("yesterday")


def test_acquisition_time_fallbacks_and_messages() -> None:
    image = (
        "<AcquisitionDateAndTime>not a date</AcquisitionDateAndTime>"
        "<Dimensions><T><StartTime>2021-01-02T03:04:05</StartTime></T></Dimensions>"
    )
    info = parse_czi_xml(_doc(_image(image)), path=PATH)
    assert info.acquired_at is None
    assert info.acquired_at_local == datetime(2021, 1, 2, 3, 4, 5)
    assert info.warnings == [
        "CZI AcquisitionDateAndTime 'not a date' is not an ISO date: ignored",
        "CZI StartTime has no time zone: kept as local time (acquired_at_local)",
    ]
    assert info.provenance["acquired_at_local"] == "CZI Information/Image/Dimensions/T/StartTime"
    first = parse_czi_xml(
        _doc(
            _image(
                "<AcquisitionDateAndTime>2021-01-02T03:04:05+01:00</AcquisitionDateAndTime>"
                "<Dimensions><T><StartTime>2022-01-01T00:00:00Z</StartTime></T></Dimensions>"
            )
        ),
        path=PATH,
    )
    assert first.acquired_at == datetime(2021, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert first.acquired_at_local is None
    assert first.provenance["acquired_at"] == (
        "CZI Information/Image/AcquisitionDateAndTime (converted to UTC)"
    )
    assert first.warnings == []
    local = parse_czi_xml(
        _doc(_image("<AcquisitionDateAndTime>2021-01-02T03:04:05</AcquisitionDateAndTime>")),
        path=PATH,
    )
    assert local.warnings == [
        "CZI AcquisitionDateAndTime has no time zone: kept as local time (acquired_at_local)"
    ]
    assert local.provenance["acquired_at_local"] == "CZI Information/Image/AcquisitionDateAndTime"
    placeholder = parse_czi_xml(
        _doc(
            _image(
                "<AcquisitionDateAndTime>0001-01-01T00:00:00</AcquisitionDateAndTime>"
                "<Dimensions><T><StartTime>2021-01-02T03:04:05-05:00</StartTime></T></Dimensions>"
            )
        ),
        path=PATH,
    )
    assert placeholder.acquired_at == datetime(2021, 1, 2, 8, 4, 5, tzinfo=UTC)
    assert placeholder.acquired_at == datetime(
        2021, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=5))
    )


@pytest.mark.parametrize(
    ("positions", "interval", "source"),
    [
        ("<Interval><Increment>2.5</Increment></Interval>", 2.5, "Interval/Increment"),
        (
            "<Interval><Increment>0</Increment></Interval><List><Offsets>0 4 10</Offsets></List>",
            5.0,
            "List/Offsets (mean step)",
        ),
        ("<List><Offsets>1 3</Offsets></List>", 2.0, "List/Offsets (mean step)"),
        ("<List><Offsets>3</Offsets></List>", None, None),
        ("<List><Offsets>5 5</Offsets></List>", None, None),
        ("<List><Offsets>9 1</Offsets></List>", None, None),
        ("<List><Offsets>0 x</Offsets></List>", None, None),
        ("<Interval><Increment>-1</Increment></Interval>", None, None),
    ],
)
def test_time_interval(positions: str, interval: float | None, source: str | None) -> None:
    image = _image(f"<Dimensions><T><Positions>{positions}</Positions></T></Dimensions>")
    info = parse_czi_xml(_doc(image), path=PATH)
    assert info.time_interval_s == interval
    if source is None:
        assert "time_interval_s" not in info.provenance
    else:
        assert info.provenance["time_interval_s"] == f"CZI Dimensions/T/Positions/{source}"


def test_scene_names() -> None:
    scenes = (
        "<Scene Index='3' Name='Three'/><Scene Name='Second'/><Scene Index='x' Name='Third'/>"
        "<Scene Index='7' Name=''/><Scene Index=' 9 ' Name='Nine'/><Scene Index='-1' Name='Neg'/>"
    )
    image = _image(f"<Dimensions><S><Scenes>{scenes}</Scenes></S></Dimensions>")
    info = parse_czi_xml(_doc(image), path=PATH)
    assert info.scene_names == {3: "Three", 1: "Second", 2: "Third", 9: "Nine", 5: "Neg"}


# ------------------------------------------------------------------ instrument


INSTRUMENT = (
    "<Instrument><Objectives>"
    "<Objective Id='Objective:0'/>"
    "<Objective Id='Objective:1' Name=' '><Manufacturer><Model>EC Plan 10x</Model></Manufacturer>"
    "<LensNA>0.3</LensNA><NominalMagnification>10</NominalMagnification><Immersion>Air</Immersion></Objective>"
    "<Objective Id='Objective:2' Name='Fluar 40x'><LensNA>-1</LensNA></Objective>"
    "</Objectives><Microscopes>"
    "<Microscope Id='Microscope:0'/>"
    "<Microscope Id='Microscope:1'><Manufacturer><Model>Axio Imager</Model>"
    "<Manufacturer>Zeiss</Manufacturer><SerialNumber>7</SerialNumber></Manufacturer>"
    "<System>LSM 880</System></Microscope>"
    "<Microscope Id='Microscope:2' Name=''><System>Crossbeam 550</System></Microscope>"
    "</Microscopes></Instrument>"
)


def test_objective_by_reference_and_its_fallbacks() -> None:
    image = _image("<ObjectiveSettings><ObjectiveRef Id='Objective:1'/></ObjectiveSettings>")
    info = parse_czi_xml(_doc(image + INSTRUMENT), path=PATH)
    assert info.objective == {
        "name": "EC Plan 10x",
        "magnification": 10.0,
        "numerical_aperture": 0.3,
        "immersion": "Air",
    }
    assert info.provenance["objective"] == "CZI Information/Instrument/Objectives/Objective"
    by_name = parse_czi_xml(
        _doc(image.replace("Objective:1", "Objective:2") + INSTRUMENT), path=PATH
    )
    assert by_name.objective == {
        "name": "Fluar 40x",
        "magnification": None,
        "numerical_aperture": None,
        "immersion": None,
    }
    # No reference: the first objective that says anything (not the empty Objective:0).
    unref = parse_czi_xml(_doc(_image("") + INSTRUMENT), path=PATH)
    assert unref.objective is not None and unref.objective["name"] == "EC Plan 10x"
    no_image = parse_czi_xml(_doc(INSTRUMENT), path=PATH)
    assert no_image.objective is not None and no_image.objective["name"] == "EC Plan 10x"
    # A reference to the empty one: it is no candidate, the first one with content wins.
    empty_ref = parse_czi_xml(
        _doc(image.replace("Objective:1", "Objective:0") + INSTRUMENT), path=PATH
    )
    assert empty_ref.objective is not None and empty_ref.objective["name"] == "EC Plan 10x"


def test_objective_that_states_nothing_is_none() -> None:
    instrument = (
        "<Instrument><Objectives><Objective Id='O'><NominalMagnification>0</NominalMagnification>"
        "<LensNA>0</LensNA></Objective></Objectives></Instrument>"
    )
    info = parse_czi_xml(_doc(instrument), path=PATH)
    assert info.objective is None
    assert "objective" not in info.provenance
    assert info.microscope is None


def test_microscope_model_sources() -> None:
    def microscope(ref: str) -> tuple[dict[str, object] | None, str | None]:
        image = _image(f"<MicroscopeRef Id='{ref}'/>")
        info = parse_czi_xml(_doc(image + INSTRUMENT), path=PATH)
        return info.microscope, info.provenance.get("microscope.model")

    found, source = microscope("Microscope:1")
    assert found == {
        "manufacturer": "Zeiss",
        "model": "Axio Imager",
        "serial_number": "7",
        "software": None,
        "software_version": None,
    }
    assert source == "CZI Information/Instrument/Microscopes/Microscope/Manufacturer/Model"
    found, source = microscope("Microscope:2")
    assert found is not None and found["model"] == "Crossbeam 550"
    assert source == "CZI Information/Instrument/Microscopes/Microscope/System"
    system_only = INSTRUMENT.replace("<Model>Axio Imager</Model>", "")
    info = parse_czi_xml(
        _doc(_image("<MicroscopeRef Id='Microscope:1'/>") + system_only), path=PATH
    )
    assert info.microscope is not None and info.microscope["model"] == "LSM 880"
    named = INSTRUMENT.replace(
        "<Microscope Id='Microscope:1'>", "<Microscope Id='Microscope:1' Name=' Stand '>"
    )
    info = parse_czi_xml(_doc(_image("<MicroscopeRef Id='Microscope:1'/>") + named), path=PATH)
    assert info.microscope is not None and info.microscope["model"] == "Stand"
    assert info.provenance["microscope.model"] == (
        "CZI Information/Instrument/Microscopes/Microscope/@Name"
    )
    assert "microscope.software" not in info.provenance


def test_software_without_a_microscope() -> None:
    application = "<Application><Name>ZEN</Name><Version> 3.1 </Version></Application>"
    info = parse_czi_xml(_doc(application), path=PATH)
    assert info.microscope == {
        "manufacturer": None,
        "model": None,
        "serial_number": None,
        "software": "ZEN",
        "software_version": "3.1",
    }
    assert info.provenance["microscope.software"] == "CZI Information/Application/Name, Version"
    assert "microscope.model" not in info.provenance
    version_only = parse_czi_xml(_doc("<Application><Version>2</Version></Application>"), path=PATH)
    assert version_only.microscope is not None
    assert version_only.microscope["software_version"] == "2"
    assert "microscope.software" in version_only.provenance
    empty = parse_czi_xml(_doc("<Application><Name> </Name></Application>"), path=PATH)
    assert empty.microscope is None


# ---------------------------------------------------------------- vendor excerpt


def test_vendor_excerpt_and_its_caps() -> None:
    leaves = "".join(f"<K{i}>v{i}</K{i}>" for i in range(70))
    image = (
        f"<Image Kind='{'a' * 600}'><Long>{'b' * 600}</Long><Dup>1</Dup><Dup>2</Dup>"
        "<Empty>  </Empty><Nested><X>1</X></Nested><Blank/>"
        "<Dimensions><Channels><Channel Id='Channel:0' Name='A'><Fluor> GFP </Fluor></Channel>"
        "</Channels></Dimensions></Image>"
    )
    information = f"<Application Name='ZEN'>{leaves}</Application>{image}<Document><Title>T</Title></Document>"
    info = parse_czi_xml(_doc(information), path=PATH)
    vendor = info.vendor_metadata
    application = vendor["Application"]
    assert application["@Name"] == "ZEN"
    assert len(application) == 65
    assert application["..."] == "truncated"
    assert application["K62"] == "v62" and "K63" not in application
    assert vendor["Image"] == {"@Kind": "a" * 512, "Long": "b" * 512, "Dup": "1"}
    assert vendor["Document"] == {"Title": "T"}
    assert vendor["Channels"] == [{"@Id": "Channel:0", "@Name": "A", "Fluor": "GFP"}]
    assert vendor["Scaling (m)"] == {"X": "2E-07", "Y": "3E-07", "Z": "1E-06"}


def test_vendor_excerpt_caps_the_channel_list() -> None:
    channels = "".join(f"<Channel Id='Channel:{i}'/>" for i in range(66))
    info = parse_czi_xml(_doc(_channels(channels)), path=PATH)
    assert len(info.channels) == 66
    assert len(info.vendor_metadata["Channels"]) == 64
    assert info.vendor_metadata["Channels"][63] == {"@Id": "Channel:63"}
    empty = parse_czi_xml(_doc("<Application/><Document></Document>"), path=PATH)
    assert set(empty.vendor_metadata) == {"Scaling (m)"}
    assert parse_czi_xml(_doc(scaling="<Scaling/>"), path=PATH).vendor_metadata == {}


# ------------------------------------------------------------ more of the same rules


def test_start_time_alone_is_the_acquisition_time() -> None:
    image = _image("<Dimensions><T><StartTime>2021-01-02T03:04:05Z</StartTime></T></Dimensions>")
    info = parse_czi_xml(_doc(image), path=PATH)
    assert info.acquired_at == datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.provenance["acquired_at"] == (
        "CZI Information/Image/Dimensions/T/StartTime (converted to UTC)"
    )


@pytest.mark.usefixtures("tokyo")
def test_acquisition_time_is_utc_whatever_the_local_zone() -> None:
    aware, _ = _datetime("2021-06-15T08:09:43+02:00")
    assert aware is not None
    assert aware.tzinfo is UTC
    assert aware.isoformat() == "2021-06-15T06:09:43+00:00"


@pytest.mark.parametrize(
    ("positions", "interval"),
    [
        ("<Interval><Increment>0.5</Increment></Interval>", 0.5),
        ("<List><Offsets>0 5 0</Offsets></List>", None),
        ("<List><Offsets>0 5 -3</Offsets></List>", None),
    ],
)
def test_time_interval_edges(positions: str, interval: float | None) -> None:
    image = _image(f"<Dimensions><T><Positions>{positions}</Positions></T></Dimensions>")
    assert parse_czi_xml(_doc(image), path=PATH).time_interval_s == interval


def test_an_objective_with_only_a_name_is_a_candidate() -> None:
    instrument = (
        "<Instrument><Objectives><Objective Id='O:0'/><Objective Id='O:1' Name='Named 20x'/>"
        "</Objectives></Instrument>"
    )
    info = parse_czi_xml(_doc(instrument), path=PATH)
    assert info.objective is not None and info.objective["name"] == "Named 20x"
    empty = "<Instrument><Objectives><Objective Id='O:0'/></Objectives><Microscopes/></Instrument>"
    bare = parse_czi_xml(_doc(empty), path=PATH)
    assert bare.objective is None
    assert bare.microscope is None


def test_the_first_element_of_a_path_is_taken_step_by_step() -> None:
    """ "A/B" is the first A's B: a second A is not searched (ZEN writes one of each)."""
    image = _image(
        "<ObjectiveSettings/><ObjectiveSettings><ObjectiveRef Id='Objective:2'/></ObjectiveSettings>"
    )
    info = parse_czi_xml(_doc(image + INSTRUMENT), path=PATH)
    assert info.objective is not None and info.objective["name"] == "EC Plan 10x"
    two = INSTRUMENT.replace(
        "<Microscope Id='Microscope:2' Name=''>",
        "<Microscope Id='Microscope:2' Name=''><Manufacturer/><Manufacturer><Model>M</Model>"
        "</Manufacturer>",
    )
    info = parse_czi_xml(_doc(_image("<MicroscopeRef Id='Microscope:2'/>") + two), path=PATH)
    assert info.microscope is not None and info.microscope["model"] == "Crossbeam 550"


def test_scaling_goes_on_after_an_axis_it_skips() -> None:
    scaling = (
        "<Scaling><Items><Distance Id='X'/><Distance Id='Y'><Value>0</Value></Distance>"
        "<Distance Id='Z'><Value>2E-06</Value></Distance>"
        "<Distance Id='X'><Value>1.2345678901234e-7</Value></Distance>"
        "<Distance Id='Y'><Value>1_000e-9</Value></Distance></Items></Scaling>"
    )
    info = parse_czi_xml(_doc(scaling=scaling), path=PATH)
    assert info.physical_size == {"x_um": 0.123456789012, "y_um": 1.0, "z_um": 2.0}
    assert info.warnings == ["CZI Scaling Y is 0: no calibration"]


def test_colour_digits_must_be_hexadecimal() -> None:
    assert _colour("#XX0000") is None
    assert _colour("#FFXX0000") is None


def test_a_display_setting_that_cannot_be_told_apart_is_read_from_the_whole_document() -> None:
    """A comment before the document's own DisplaySetting: unsure, so the whole XML is parsed."""
    display = (
        "<DisplaySetting><Channels><Channel Id='Channel:0'><Color>#FF0A0B0C</Color></Channel>"
        "</Channels></DisplaySetting>"
    )
    channels = _channels("<Channel Id='Channel:0'><Color>#FF010203</Color></Channel>")
    xml = _doc(channels, extra=f"<!-- shown -->{display}")
    info = parse_czi_xml(xml, path=PATH)
    assert info.channels[0]["color"] == "#0A0B0C"
