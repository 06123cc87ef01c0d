"""Metadata classes the corpus does not hold: placeholders, writer conventions, conflicts.

Each case is a small XML or text written here, parsed by the reader's own
mapping code; the expected value is what the fragment states.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.metadata import SceneInfo
from zstack_analyzer.readers._czi_xml import parse_czi_xml
from zstack_analyzer.readers._ome import image_metadata, parse_ome_xml
from zstack_analyzer.readers.lif import _exposure_ms, _widefield_channels
from zstack_analyzer.readers.nd2 import _plane_exposures, _plane_lasers

NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _ome(body: str, *, creator: str | None = None, software: str | None = None) -> object:
    creator_attr = f' Creator="{creator}"' if creator else ""
    xml = f'<OME xmlns="{NS}"{creator_attr}>{body}</OME>'
    doc = parse_ome_xml(xml, path=Path("a.ome.tif"), limits=ReadLimits())
    image = doc.images[0]
    info = SceneInfo(index=0, size_c=image.size_c, size_y=2, size_x=2, dtype="uint8")
    return image_metadata(
        doc,
        image,
        info,
        filename="a.ome.tif",
        file_format="OME-TIFF",
        scenes=[info],
        software=software,
    )


PIXELS = (
    '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="2" SizeY="2" SizeZ="1" '
    'SizeT="1" SizeC="{c}">{channels}</Pixels>'
)


def test_ome_objective_id_and_zero_magnification_are_not_values() -> None:
    body = (
        '<Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="0.0"/>'
        '</Instrument><Image ID="Image:0"><InstrumentRef ID="Instrument:0"/>'
        '<ObjectiveSettings ID="Objective:0"/>'
        + PIXELS.format(c=1, channels='<Channel ID="Channel:0:0"/>')
        + "</Image>"
    )
    md = _ome(body)
    assert md.objective is None  # no "Objective:0" lens of magnification 0


def test_ome_objective_with_a_model_keeps_only_stated_values() -> None:
    body = (
        '<Instrument ID="I"><Objective ID="Objective:1" Model="Plan Apo 20x" '
        'NominalMagnification="0" LensNA="0.75"/></Instrument><Image ID="Image:0">'
        + PIXELS.format(c=1, channels='<Channel ID="Channel:0:0"/>')
        + "</Image>"
    )
    md = _ome(body)
    assert md.objective is not None
    assert (md.objective.name, md.objective.magnification) == ("Plan Apo 20x", None)
    assert md.objective.numerical_aperture == 0.75


def test_ome_time_without_zone_is_utc_only_for_a_writer_that_writes_utc() -> None:
    body = (
        '<Image ID="Image:0"><AcquisitionDate>2019-06-27T18:33:40.619</AcquisitionDate>'
        + PIXELS.format(c=1, channels='<Channel ID="Channel:0:0"/>')
        + "</Image>"
    )
    bio = _ome(body, creator="OME Bio-Formats 6.0.0-SNAPSHOT")
    assert bio.acquired_at == datetime(2019, 6, 27, 18, 33, 40, 619000, tzinfo=UTC)
    assert bio.acquired_at_local is None
    assert "UTC" in bio.provenance["acquired_at"]
    unknown = _ome(body, software="SomeTool 1.0")
    assert unknown.acquired_at is None
    assert unknown.acquired_at_local == datetime(2019, 6, 27, 18, 33, 40, 619000)
    assert any("zone unknown" in w for w in unknown.warnings)
    old = _ome(body, software="LOCI Bio-Formats")  # 4.x: before the UTC Timestamp
    assert old.acquired_at is None


def test_ome_2010_acquired_date() -> None:
    body = (
        '<Image ID="Image:0"><AcquiredDate>2010-03-02T10:01:15</AcquiredDate>'
        + PIXELS.format(c=1, channels='<Channel ID="Channel:0:0"/>')
        + "</Image>"
    )
    md = _ome(body, software="LOCI Bio-Formats")
    assert md.acquired_at_local == datetime(2010, 3, 2, 10, 1, 15)
    assert md.provenance["acquired_at_local"] == "OME-XML Image/AcquiredDate"
    assert md.microscope is not None
    assert md.microscope.software == "LOCI Bio-Formats"


def test_ome_colours_written_by_zen_as_0x00rrggbb() -> None:
    # EGFP (509 nm) green 0x00FF00 and mCherry (610 nm) red 0xFF0000, written by ZEN as
    # 0x00RRGGBB: 65280 and 16711680. Read as RGBA they would be blue and green.
    channels = (
        '<Channel ID="Channel:0:0" Name="EGFP" Color="65280" EmissionWavelength="509"/>'
        '<Channel ID="Channel:0:1" Name="mCherry" Color="16711680" EmissionWavelength="610"/>'
        '<Channel ID="Channel:0:2" Name="none" Color="16711680"/>'
    )
    body = '<Image ID="Image:0">' + PIXELS.format(c=3, channels=channels) + "</Image>"
    zen = _ome(body, creator="ZEN 3.4 (blue edition)")
    assert [c.color for c in zen.channels] == ["#00FF00", "#FF0000", "#00FF00"]
    assert sum("0x00RRGGBB" in w for w in zen.warnings) == 2
    other = _ome(body, creator="OME Bio-Formats 6.0.0")
    assert [c.color for c in other.channels] == ["#0000FF", "#00FF00", "#00FF00"]
    assert not any("0x00RRGGBB" in w for w in other.warnings)


CZI = (
    "<ImageDocument><Metadata><Information>{info}</Information>"
    "<Scaling><Items><Distance Id='X'><Value>1E-06</Value></Distance></Items></Scaling>"
    "{display}</Metadata></ImageDocument>"
)


@pytest.mark.parametrize(
    "metres",
    [
        "1.6E-06",  # 1.6 µm, not 1.5999999999999999
        "1.625e-07",
        "6.4999999999999994E-08",  # ZEN's 17 digits: rounded to 12
        "1.2345678901234e-7",  # 14 digits
        "999999999999e-18",
        "0.0000001625",
        ".5e-6",
        "5.e-7",
        "+2.0000000000000000E-06",
        "-5e-07",  # a negative Z step is kept
        "1E+0",
        "1_000e-9",  # Python's float() reads underscores; not a plain decimal
    ],
)
def test_czi_scaling_is_micrometres_to_12_significant_digits(metres: str) -> None:
    """The micrometres are the metres x 1e6 rounded to 12 significant digits, however written.

    Why: values of at most 12 digits are read by moving the exponent (no float
    formatting), longer ones are formatted; both ways must give this one value.
    """
    xml = CZI.format(info="", display="").replace("Id='X'", "Id='Z'").replace("1E-06", metres)
    info = parse_czi_xml(xml, path=Path("a.czi"))
    assert info.physical_size["z_um"] == float(f"{float(metres) * 1e6:.12g}")


def test_czi_start_time_is_the_fallback_and_year_1_is_a_placeholder() -> None:
    image = (
        "<Image><Dimensions><T><StartTime>2021-06-15T08:09:43.03+02:00</StartTime></T>"
        "</Dimensions></Image>"
    )
    info = parse_czi_xml(CZI.format(info=image, display=""), path=Path("a.czi"))
    assert info.acquired_at == datetime(2021, 6, 15, 6, 9, 43, 30000, tzinfo=UTC)
    assert "StartTime" in info.provenance["acquired_at"]
    placeholder = image.replace("2021-06-15T08:09:43.03+02:00", "0001-01-01T00:00:00+01:00")
    info = parse_czi_xml(CZI.format(info=placeholder, display=""), path=Path("a.czi"))
    assert (info.acquired_at, info.acquired_at_local) == (None, None)


def test_czi_display_colour_wins_and_objective_placeholders_are_null() -> None:
    image = (
        "<Image><Dimensions><Channels><Channel Id='Channel:0' Name='A'><Color>#FF00FFFF</Color>"
        "</Channel><Channel Id='Channel:1' Name='B'><Color>#FFFF0000</Color></Channel>"
        "</Channels></Dimensions><ObjectiveSettings><ObjectiveRef Id='Objective:0'/>"
        "</ObjectiveSettings></Image><Instrument><Objectives><Objective Id='Objective:0'>"
        "<NominalMagnification>0</NominalMagnification></Objective></Objectives>"
        "<Microscopes><Microscope Id='1'><System>Crossbeam 550</System></Microscope>"
        "</Microscopes></Instrument>"
    )
    display = (
        "<DisplaySetting><Channels><Channel Id='Channel:0'><Color>#FF00FF00</Color></Channel>"
        "<Channel Id='Channel:1'/></Channels></DisplaySetting>"
    )
    info = parse_czi_xml(CZI.format(info=image, display=display), path=Path("a.czi"))
    assert [c["color"] for c in info.channels] == ["#00FF00", "#FF0000"]
    assert "DisplaySetting" in info.provenance["channels[].color"]
    assert info.objective is None
    assert info.microscope is not None
    assert info.microscope["model"] == "Crossbeam 550"


def test_nd2_single_channel_exposure_and_stated_lasers() -> None:
    single = "Camera Name: Andor Zyla\r\nExposure: 500 ms\r\nBinning: 1x1\r\n"
    assert _plane_exposures(single, 1) == [500.0]
    assert _plane_exposures(single, 2) == []  # which channel? not stated
    description = (
        "Plane #1:\r\n Name: FITC\r\n  CH2\t{Laser Wavelength}: 488.0\t{Laser Power}: 5.0\r\n"
        "  CH4\t{Laser Wavelength}: 561.0\t{Laser Power}: 0.0\r\n"
        "Plane #2:\r\n Name: TRITC\r\n  CH2\t{Laser Wavelength}: 488.0\t{Laser Power}: 2.0\r\n"
        "  CH4\t{Laser Wavelength}: 561.0\t{Laser Power}: 9.0\r\n"
    )
    assert _plane_lasers(description) == [[488.0], [488.0, 561.0]]


def test_lif_widefield_exposure_in_seconds() -> None:
    element = ET.fromstring(  # noqa: S314  (a literal written here)
        "<Element><Data><Image><Attachment Name='WideFieldChannelConfigurator'>"
        "<WideFieldChannelInfo ExposureTime='0.05'/><WideFieldChannelInfo ExposureTime='120 ms'/>"
        "</Attachment></Image></Data></Element>"
    )
    found = _widefield_channels(element, 2)
    assert found is not None
    assert [_exposure_ms(info) for info in found[0]] == [50.0, 120.0]


def test_czi_display_setting_is_the_documents_own_not_the_experiments() -> None:
    from zstack_analyzer.readers._czi_xml import _metadata_child_fragment

    nested = (
        "<DisplaySetting><Channels><Channel Id='Channel:0'><Color>#FFFF0000</Color></Channel>"
        "</Channels></DisplaySetting>"
    )
    own = nested.replace("#FFFF0000", "#FF00FF00")
    xml = (
        '<ImageDocument><Metadata><Experiment><Block Format="a>b"/><Text>&lt;UiName /></Text>'
        f"{nested}</Experiment><Information><Image/></Information>{own}"
        "<Scaling><Items/></Scaling></Metadata></ImageDocument>"
    )
    assert _metadata_child_fragment(xml, "DisplaySetting") == own
    # the ">" inside an attribute and the "/>" in text do not fool the depth count
    assert _metadata_child_fragment(xml.replace(own, ""), "DisplaySetting") is None
    image = "<Image><Dimensions><Channels><Channel Id='Channel:0' Name='A'/></Channels></Dimensions></Image>"
    info = parse_czi_xml(xml.replace("<Image/>", image), path=Path("a.czi"))
    assert [c["color"] for c in info.channels] == ["#00FF00"]


def test_empty_scene_names_are_null() -> None:
    body = '<Image ID="Image:0" Name="">' + PIXELS.format(c=1, channels='<Channel ID="C:0"/>')
    md = _ome(body + "</Image>")
    assert md.scene_name is None
    assert md.scenes[0].name is None
    assert SceneInfo(index=0, name="  ", dtype="uint8").name is None
    assert SceneInfo(index=0, name="pos 1", dtype="uint8").name == "pos 1"


def test_nd2_excitation_must_be_a_stated_laser() -> None:
    from zstack_analyzer.readers.nd2 import _stated_excitation

    warnings: list[str] = []
    assert _stated_excitation(488.0, [488.0, 561.0], "FITC", warnings) == 488.0
    assert _stated_excitation(405.0, [], "FITC", warnings) == 405.0  # nothing stated
    assert warnings == []
    assert _stated_excitation(405.0, [488.0], "FITC", warnings) == 488.0
    assert _stated_excitation(405.0, [488.0, 561.0], "TRITC", warnings) is None
    assert len(warnings) == 2
    assert "405.0 nm" in warnings[1]
    assert "488, 561 nm" in warnings[1]
