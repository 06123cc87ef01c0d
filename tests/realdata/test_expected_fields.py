"""Metadata beyond sizes (objective, colours, wavelengths, exposure, microscope, times, scenes).

Expected values live in ``expected_fields.json`` beside this file, each with the
XML path or tag it was read from. Two kinds of checks:

* the reader reports exactly those values for every scene of every listed file
  (null where the file states nothing: nothing is invented);
* the values themselves are re-read here from the raw bytes (CZI metadata
  segment, OME-XML, TIFF tags) with plain ElementTree/struct code, so the
  expectations do not rest on the reader or on the library it wraps.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import tifffile

from zstack_analyzer import open_image

pytestmark = pytest.mark.realdata

HERE = Path(__file__).resolve().parent
DOCUMENT = json.loads((HERE / "expected_fields.json").read_text(encoding="utf-8"))
FILES = sorted(DOCUMENT["files"])


def _fidelity() -> Any:
    spec = importlib.util.spec_from_file_location(
        "metadata_fidelity", HERE.parents[1] / "scripts" / "metadata_fidelity.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIDELITY = _fidelity()


@pytest.mark.parametrize("name", FILES)
def test_reader_reports_the_stated_values(name: str, testdata: Path) -> None:
    entry = DOCUMENT["files"][name]
    problems = []
    with open_image(testdata / name) as image:
        for scene in range(len(image.scenes())):
            md = image.metadata(scene)
            for field in DOCUMENT["fields"]:
                expected = FIDELITY.expected_for(entry, scene, field)
                actual = FIDELITY.actual_value(md, field)
                if field.startswith("channels."):
                    wanted = expected if expected is not None else [None] * len(actual)
                    assert len(wanted) == len(actual), (scene, field)
                    pairs = list(zip(wanted, actual, strict=True))
                else:
                    pairs = [(expected, actual)]
                for want, got in pairs:
                    if FIDELITY.classify(want, got, field) != "right":
                        problems.append((scene, field, want, got))
    assert problems == []


def test_every_listed_value_names_its_source() -> None:
    for name, entry in DOCUMENT["files"].items():
        blocks = [entry.get("values", {}), *entry.get("scenes", {}).values()]
        for block in blocks:
            for field, item in block.items():
                assert field in DOCUMENT["fields"], (name, field)
                assert item["source"].strip(), (name, field)


# ----------------------------------------------------------------- raw-byte oracles
def _czi_xml(path: Path) -> ET.Element:
    """The CZI metadata segment's XML, located through the file header (no CZI library)."""
    data = path.read_bytes()
    (metadata_position,) = struct.unpack_from("<q", data, 32 + 60)
    (xml_size,) = struct.unpack_from("<i", data, metadata_position + 32)
    start = metadata_position + 32 + 256
    return ET.fromstring(data[start : start + xml_size].decode("utf-8"))  # noqa: S314  (corpus file)


def _rgb(text: str) -> str:
    digits = text.strip().lstrip("#")
    return f"#{digits[-6:].upper()}"


CZI_FILES = [n for n in FILES if n.startswith("czi/")]


@pytest.mark.parametrize("name", CZI_FILES)
def test_czi_values_are_in_the_raw_xml(name: str, testdata: Path) -> None:
    root = _czi_xml(testdata / name)
    entry = DOCUMENT["files"][name]
    info = root.find("Metadata/Information")
    assert info is not None
    expected = {f: FIDELITY.expected_for(entry, 0, f) for f in DOCUMENT["fields"]}
    # Colours: what ZEN displays (DisplaySetting), else the acquisition colour.
    acquisition = info.findall("Image/Dimensions/Channels/Channel")
    display = {c.get("Id"): c for c in root.findall("Metadata/DisplaySetting/Channels/Channel")}
    wanted_colours = []
    for channel in acquisition:
        shown = display.get(channel.get("Id"))
        text = shown.findtext("Color") if shown is not None else None
        text = text or channel.findtext("Color")
        wanted_colours.append(_rgb(text) if text else None)
    if acquisition:
        assert expected["channels.color"] in (wanted_colours, None)
        if any(wanted_colours):
            assert expected["channels.color"] == wanted_colours
    # Microscope: @Name, else System.
    scopes = info.findall("Instrument/Microscopes/Microscope")
    models = {s.get("Name") or s.findtext("System") for s in scopes} - {None}
    assert expected["microscope.model"] in (models or {None})
    assert expected["microscope.software"] == info.findtext("Application/Name")
    # Time: AcquisitionDateAndTime, else T/StartTime, never ZEN's year-1 placeholder.
    stamps = [
        info.findtext("Image/AcquisitionDateAndTime"),
        info.findtext("Image/Dimensions/T/StartTime"),
    ]
    stated = [s for s in stamps if s and not s.startswith("0001-01-01")]
    when = expected["acquired_at"] or expected["acquired_at_local"]
    if not stated:
        assert when is None
    else:
        assert when is not None and when[:19] == stated[0][:19]


def _tiff_tag(path: Path, name: str) -> Any:
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags.get(name)
        return None if tag is None else tag.value


def test_tiff_family_values_are_in_the_raw_tags(testdata: Path) -> None:
    files = DOCUMENT["files"]
    nikon = testdata / "tiff/NikonTIF.tif"
    exif = _tiff_tag(nikon, "ExifTag")
    assert exif["DateTimeOriginal"] == "2010:04:08 09:18:02"
    assert _tiff_tag(nikon, "DateTime") == "2010:04:08 10:12:30"  # the write time, not used
    assert files["tiff/NikonTIF.tif"]["values"]["acquired_at_local"]["value"].startswith(
        "2010-04-08T09:18:02"
    )
    assert exif["ExposureTime"] == (5, 10)
    assert files["tiff/NikonTIF.tif"]["values"]["channels.exposure_ms"]["value"] == [500.0]
    assert _tiff_tag(testdata / "tiff/movie.stk", "Software") == "MetaMorph 6.1"
    fei = (testdata / "tiff/fei-sem-rbc.tif").read_bytes()
    assert b"Date=10/27/2016" in fei
    assert b"Time=01:16:51 PM" in fei
    assert b"Software=7.6.1.4139" in fei
    assert b"SystemType=Teneo" in fei
    for name in (n for n in FILES if n.startswith("imagej/")):
        description = _tiff_tag(testdata / name, "ImageDescription")
        version = description.splitlines()[0].removeprefix("ImageJ=")
        assert files[name]["values"]["microscope.software_version"]["value"] == version


def test_ome_values_are_in_the_raw_xml(testdata: Path) -> None:
    with tifffile.TiffFile(testdata / "ome-tiff/18x24y5z5t2c8b-text.ome.tiff") as tif:
        root = ET.fromstring(tif.ome_metadata)  # noqa: S314  (corpus file)
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2010-06"}
    assert root.findtext("ome:Image/ome:AcquiredDate", namespaces=ns) == "2010-03-02T10:01:15"
    entry = DOCUMENT["files"]["ome-tiff/18x24y5z5t2c8b-text.ome.tiff"]["values"]
    assert entry["acquired_at_local"]["value"] == "2010-03-02T10:01:15"
    with tifffile.TiffFile(testdata / "ome-tiff/s_1_t_1_c_1_z_1.ome.tiff") as tif:
        xml = tif.ome_metadata
    root = ET.fromstring(xml)  # noqa: S314  (corpus file)
    assert root.get("Creator") == "OME Bio-Formats 6.0.0-SNAPSHOT"
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
    assert (
        root.findtext("ome:Image/ome:AcquisitionDate", namespaces=ns) == "2019-06-27T18:33:40.619"
    )
    # The embedded original CZI XML states the same instant with its zone: Bio-Formats wrote UTC.
    assert "<AcquisitionDateAndTime>2019-06-27T18:33:40.6193715Z<" in xml
