"""Whole-slide TIFF vendor facts (``readers/_wsi_tiff.py``), on files written here by tifffile.

Why these: the vendors' text is where magnification, pixel size, scanner and scan time of
a slide live, and each variant has its own corners: an SVS description with a field
missing, a four-digit year or a zone with minutes; NDPI tags absent or zero; a BIF whose
XMP sits on the level-0 IFD, is stored as ASCII or holds a byte that is not UTF-8; an SCN
collection with a barcode and a named label; a QPTIFF page without a channel name. Each
test writes such a file and checks what ``slide_facts`` (public) and the TIFF reader say,
sources included (the provenance a user sees).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from tests.synthetic import encoded_stack
from tests.synthetic_wsi import (
    APERIO_HEAD,
    SCN_TWO_REGIONS,
    write_bif,
    write_scn,
    write_scn_images,
    write_svs,
)
from zstack_analyzer import open_image
from zstack_analyzer.readers._wsi_tiff import (
    SlideFacts,
    _scn_overviews,
    associated_series,
    slide_facts,
    wsi_kind,
)

if TYPE_CHECKING:
    from pathlib import Path


def _facts(path: Path, kind: str) -> SlideFacts:
    with tifffile.TiffFile(path) as tif:
        assert wsi_kind(tif) == kind
        return slide_facts(tif, kind)


def _plane(size: int = 64) -> np.ndarray:
    return encoded_stack(1, 1, 1, size, size, dtype="uint8")[0, 0, 0]


# ------------------------------------------------------------------ Aperio SVS
def _svs(path: Path, fields: str) -> Path:
    rgb = np.repeat(_plane()[..., np.newaxis], 3, axis=2)
    description = f"{APERIO_HEAD}\r\n64x64 [0,0 64x64] (64x64) JPEG/RGB Q=30{fields}"
    tifffile.imwrite(
        path, rgb, tile=(64, 64), photometric="rgb", description=description, metadata=None
    )
    return path


def test_svs_facts_name_aperio_and_every_source(tmp_path: Path) -> None:
    path = write_svs(tmp_path / "slide.svs", np.zeros((128, 128, 3), "uint8"), levels=1)
    facts = _facts(path, "svs")
    assert facts.manufacturer == "Aperio"
    assert (facts.software, facts.software_version) == ("Aperio Image Library", "v12.0.15")
    assert facts.sources == {
        "software": "Aperio description, first line",
        "magnification": "Aperio SVS AppMag",
        "mpp": "Aperio SVS MPP",
        "acquired_at": "Aperio SVS Date/Time/Time Zone",
    }
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Aperio"
    assert md.provenance["acquired_at"] == "Aperio SVS Date/Time/Time Zone"


@pytest.mark.parametrize(
    ("fields", "magnification", "mpp"),
    [
        ("|AppMag = many|MPP = 0.5", None, 0.5),  # a bad AppMag does not hide the MPP
        ("|AppMag = 20", 20.0, None),  # no MPP field at all
        ("|MPP = 0.25", None, 0.25),  # no AppMag field at all
        ("|AppMag = 20|MPP = 0", 20.0, None),  # 0 µm is no calibration
    ],
)
def test_svs_fields_missing_or_unusable(
    tmp_path: Path, fields: str, magnification: float | None, mpp: float | None
) -> None:
    facts = _facts(_svs(tmp_path / "f.svs", fields), "svs")
    assert (facts.magnification, facts.mpp) == (magnification, mpp)
    assert ("magnification" in facts.sources) == (magnification is not None)
    assert ("mpp" in facts.sources) == (mpp is not None)


def test_svs_four_digit_year_and_missing_time_are_local_times(tmp_path: Path) -> None:
    four = _facts(_svs(tmp_path / "a.svs", "|Date = 12/29/2009|Time = 09:59:15"), "svs")
    assert four.acquired_at is None
    assert four.acquired_at_local == datetime(2009, 12, 29, 9, 59, 15)
    assert four.sources["acquired_at_local"] == "Aperio SVS Date/Time"
    midnight = _facts(_svs(tmp_path / "b.svs", "|Date = 01/02/21"), "svs")
    assert midnight.acquired_at_local == datetime(2021, 1, 2, 0, 0, 0)
    path = _svs(tmp_path / "c.svs", "|Date = 01/02/21|Time = 03:04:05")
    with open_image(path) as image:
        md = image.metadata()
    assert md.acquired_at_local == datetime(2021, 1, 2, 3, 4, 5)
    assert md.provenance["acquired_at_local"] == "Aperio SVS Date/Time"


@pytest.mark.parametrize(
    ("zone", "utc"),
    [
        ("GMT-0500", datetime(2009, 12, 29, 14, 59, 15, tzinfo=UTC)),
        ("GMT-05", datetime(2009, 12, 29, 14, 59, 15, tzinfo=UTC)),  # no minutes: 0
        ("GMT+1", datetime(2009, 12, 29, 8, 59, 15, tzinfo=UTC)),
        ("GMT+05:30", datetime(2009, 12, 29, 4, 29, 15, tzinfo=UTC)),
        ("GMT-03:30", datetime(2009, 12, 29, 13, 29, 15, tzinfo=UTC)),
    ],
)
def test_svs_time_zones(tmp_path: Path, zone: str, utc: datetime) -> None:
    fields = f"|Date = 12/29/09|Time = 09:59:15|Time Zone = {zone}"
    facts = _facts(_svs(tmp_path / "z.svs", fields), "svs")
    assert facts.acquired_at == utc
    assert facts.acquired_at_local is None


@pytest.mark.usefixtures("tokyo")
def test_svs_scan_time_is_utc_whatever_the_servers_zone(tmp_path: Path) -> None:
    fields = "|Date = 12/29/09|Time = 09:59:15|Time Zone = GMT+0100"
    facts = _facts(_svs(tmp_path / "z.svs", fields), "svs")
    assert facts.acquired_at is not None
    assert facts.acquired_at.utcoffset() == timedelta(0)
    assert facts.acquired_at.hour == 8


# ------------------------------------------------------------------ Hamamatsu NDPI
def _ndpi(path: Path, extratags: list[tuple[Any, ...]], **options: Any) -> Path:
    tifffile.imwrite(
        path,
        _plane(),
        photometric="minisblack",
        metadata=None,
        extratags=[(65420, "I", 1, 1, True), *extratags],
        **options,
    )
    return path


def test_ndpi_scanner_serial_software_and_time(tmp_path: Path) -> None:
    path = _ndpi(
        tmp_path / "scan.tif",
        [
            (65421, "f", 1, 20.0, True),
            (271, "s", 0, "Hamamatsu", True),
            (272, "s", 0, "C13210", True),
            (65442, "s", 0, "SN-0042", True),
            (306, "s", 0, "2021:03:04 05:06:07", True),
        ],
        software="NDP.scan 3.2.15",
    )
    facts = _facts(path, "ndpi")
    assert facts == SlideFacts(
        magnification=20.0,
        manufacturer="Hamamatsu",
        model="C13210",
        serial_number="SN-0042",
        software="NDP.scan 3.2.15",
        sources={
            "magnification": "NDPI tag 65421 (Magnification)",
            # no property map (tag 65449): the TIFF Model and tag 65442
            "microscope.model": "TIFF Model",
            "microscope.serial_number": "NDPI tag 65442",
        },
    )
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert (md.microscope.serial_number, md.microscope.software) == ("SN-0042", "NDP.scan 3.2.15")
    # the scan time is the TIFF DateTime, read as for every TIFF, and said to be the scan time:
    # NDP.scan writes it when it scans (Bio-Formats' NDPIReader takes it as the acquisition date),
    # not a converter's "file write time" as in any other TIFF
    assert md.acquired_at_local == datetime(2021, 3, 4, 5, 6, 7)
    assert (
        md.provenance["acquired_at_local"]
        == "NDPI TIFF DateTime (the scan time, as the scanner wrote it)"
    )
    assert md.acquired_at is None
    assert any(w.startswith("acquisition time zone unknown") for w in md.warnings)


def test_ndpi_model_and_serial_come_from_the_property_map(tmp_path: Path) -> None:
    """Regression: model and serial came from the TIFF Model tag and tag 65442; Bio-Formats'
    NDPIReader (and openslide's hamamatsu.Product, hamamatsu.NDP.S/N) read them from the
    scanner's property map, tag 65449, where Hamamatsu writes them (CR LF lines)."""
    properties = "Created=2016/01/01\r\nProduct=C13210-01\r\nNDP.S/N=000003\r\nUpdated=x\r\n"
    path = _ndpi(
        tmp_path / "map.tif",
        [
            (271, "s", 0, "Hamamatsu", True),
            (272, "s", 0, "C13210", True),
            (65442, "s", 0, "SN-0042", True),
            (65449, "s", 0, properties, True),
        ],
    )
    facts = _facts(path, "ndpi")
    assert (facts.model, facts.serial_number) == ("C13210-01", "000003")
    assert facts.sources["microscope.model"] == "NDPI tag 65449 Product"
    assert facts.sources["microscope.serial_number"] == "NDPI tag 65449 NDP.S/N"
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    # the map's model beats the TIFF Model tag the TIFF reader read first
    assert (md.microscope.model, md.microscope.serial_number) == ("C13210-01", "000003")
    assert md.provenance["microscope.model"] == "NDPI tag 65449 Product"
    # a map without them (bare CR lines, a line without "="): the tags, as before
    other = "Created=2016/01/01\rnot a property\r=orphan\rProduct=\r"
    path = _ndpi(
        tmp_path / "tags.tif",
        [(271, "s", 0, "Hamamatsu", True), (272, "s", 0, "C13210", True),
         (65442, "s", 0, "SN-0042", True), (65449, "s", 0, other, True)],
    )  # fmt: skip
    facts = _facts(path, "ndpi")
    assert (facts.model, facts.serial_number) == ("C13210", "SN-0042")
    assert facts.sources["microscope.serial_number"] == "NDPI tag 65442"


def test_ndpi_property_map_as_bytes_with_odd_lines(tmp_path: Path) -> None:
    """Tag 65449 stored as UNDEFINED bytes (a byte that is not UTF-8 replaced), a value with
    "=" in it, and a key on a line of its own before its real line."""
    raw = b"NDP.S/N\r\nProduct=C\xe9\r\nNDP.S/N=12=34\r\n"
    path = _ndpi(
        tmp_path / "bytes.tif",
        [(271, "s", 0, "Hamamatsu", True), (65449, 7, len(raw), raw, True)],
    )
    facts = _facts(path, "ndpi")
    assert (facts.model, facts.serial_number) == ("C\ufffd", "12=34")


def test_ndpi_without_model_software_or_serial_says_none(tmp_path: Path) -> None:
    path = _ndpi(tmp_path / "bare.tif", [(271, "s", 0, "", True)], software=False)
    facts = _facts(path, "ndpi")
    assert facts == SlideFacts()  # no magnification tag either: nothing said


@pytest.mark.parametrize(("stored", "magnification"), [(0.0, None), (-1.0, None), (1.0, 1.0)])
def test_ndpi_magnification_must_be_positive(
    tmp_path: Path, stored: float, magnification: float | None
) -> None:
    """Hamamatsu writes -1 on its macro image; 0 says nothing; a 1x lens is a magnification."""
    path = _ndpi(
        tmp_path / "m.tif", [(65421, "f", 1, stored, True), (271, "s", 0, "Hamamatsu", True)]
    )
    facts = _facts(path, "ndpi")
    assert facts.magnification == magnification
    assert ("magnification" in facts.sources) == (magnification is not None)


# ------------------------------------------------------------------ Ventana BIF
def _xmp(magnification: str = "40", scan_res: str = "0.25") -> bytes:
    return (
        f'<?xpacket?><x:xmpmeta><iScan Magnification="{magnification}" ScanRes="{scan_res}"'
        ' UnitNumber="BI123"/></x:xmpmeta>'
    ).encode()


def _bif(path: Path, xmps: list[tuple[Any, ...] | None], *, pages: int | None = None) -> Path:
    """A BIF-like BigTIFF: IFD k carries tag 700 ``xmps[k]`` (``None``: no tag 700)."""
    options: dict[str, Any] = {"metadata": None, "software": "ScanOutputManager 1.1.0.15854"}
    count = pages if pages is not None else len(xmps)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for index in range(count):
            tag = xmps[index] if index < len(xmps) else None
            description = "Label Image" if index == 0 else f"level={index - 1} mag=40 quality=90"
            tif.write(
                _plane(32),
                photometric="minisblack",
                description=description,
                extratags=[tag] if tag is not None else [],
                **options,
            )
    return path


def test_bif_facts_name_ventana_and_the_xmp_source(tmp_path: Path) -> None:
    path = write_bif(tmp_path / "slide.bif", _plane(128))
    facts = _facts(path, "bif")
    assert facts.manufacturer == "Ventana"
    assert facts.sources == {
        "magnification": "BIF XMP iScan/@Magnification",
        "mpp": "BIF XMP iScan/@ScanRes",
    }
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Ventana"
    assert md.provenance["objective.magnification"] == "BIF XMP iScan/@Magnification"


def test_bif_xmp_on_the_level_zero_ifd_past_one_without_it(tmp_path: Path) -> None:
    """The label's XMP has no iScan, the next IFD no XMP at all: the level-0 IFD's is used."""
    plain = b"<?xpacket?><x:xmpmeta/>"
    path = _bif(
        tmp_path / "l0.bif",
        [(700, 1, len(plain), plain, True), None, (700, 1, len(_xmp()), _xmp(), True)],
    )
    facts = _facts(path, "bif")
    assert (facts.magnification, facts.mpp) == (40.0, 0.25)


def test_bif_xmp_stored_as_ascii_text_is_read(tmp_path: Path) -> None:
    text = _xmp("20", "0.5").decode()
    facts = _facts(_bif(tmp_path / "a.bif", [(700, "s", 0, text, True)]), "bif")
    assert (facts.magnification, facts.mpp) == (20.0, 0.5)


def test_bif_xmp_with_a_byte_that_is_not_utf8_is_still_read(tmp_path: Path) -> None:
    raw = _xmp().replace(b'UnitNumber="BI123"', b'UnitNumber="BI123" Operator="J\xfcrgen"')
    assert b"\xfc" in raw
    facts = _facts(_bif(tmp_path / "u.bif", [(700, 1, len(raw), raw, True)]), "bif")
    assert (facts.magnification, facts.mpp) == (40.0, 0.25)


def test_bif_zero_or_garbled_values_are_no_facts(tmp_path: Path) -> None:
    raw = _xmp("0", "1.2.3")
    facts = _facts(_bif(tmp_path / "z.bif", [(700, 1, len(raw), raw, True)]), "bif")
    assert (facts.magnification, facts.mpp) == (None, None)
    assert facts.sources == {}


def test_bif_xmp_is_looked_for_in_the_first_eight_ifds_only(tmp_path: Path) -> None:
    """A bound: the search never walks a long IFD chain (the iScan XMP is on IFD 0 or level 0)."""
    plain = b"<?xpacket?><x:xmpmeta/>"
    tags: list[tuple[Any, ...] | None] = [(700, 1, len(plain), plain, True)] + [None] * 6
    seventh = _bif(tmp_path / "7.bif", [*tags, (700, 1, len(_xmp()), _xmp(), True)])
    assert _facts(seventh, "bif").magnification == 40.0  # IFD 7, the eighth: read
    ninth = _bif(tmp_path / "9.bif", [*tags, None, (700, 1, len(_xmp()), _xmp(), True)])
    assert _facts(ninth, "bif").magnification is None  # IFD 8, the ninth: not looked at


# ------------------------------------------------------------------ Leica SCN
def test_scn_facts_name_leica_and_the_objective_source(tmp_path: Path) -> None:
    path = write_scn(tmp_path / "slide.scn", _plane(128), objective=20)
    facts = _facts(path, "scn")
    assert facts.manufacturer == "Leica"
    assert facts.sources == {
        "magnification": "SCN scanSettings/objectiveSettings/objective",
        "microscope.model": "SCN image/device/@model",
        "microscope.software_version": "SCN image/device/@version",
        "pixel_size": "SCN image/view/@sizeX, @sizeY (nm) / pixels/dimension r=0",
    }
    with open_image(path) as image:
        md = image.metadata()
    assert md.microscope is not None
    assert md.microscope.manufacturer == "Leica"


_SCN = "http://www.leica-microsystems.com/scn/2010/10/01"


def _scn_image(name: str, size: int, ifd: int, view: int, *, device: bool = True) -> str:
    model = '<device model="Leica SCN400" version="1.5"/>' if device else ""
    return (
        f'<image name="{name}">{model}<pixels sizeX="{size}" sizeY="{size}">'
        f'<dimension sizeX="{size}" sizeY="{size}" r="0" ifd="{ifd}"/></pixels>'
        f'<view sizeX="{view}" sizeY="{view}" offsetX="0" offsetY="0"/>'
        "<scanSettings><objectiveSettings><objective>10</objective></objectiveSettings>"
        "</scanSettings></image>"
    )


def _scn(path: Path, images: list[tuple[str, int]], *, device: bool = True) -> Path:
    """An SCN whose collection (20000 nm square) starts with a barcode, then ``(name, view)`` images."""
    body = "".join(
        _scn_image(name, 32, k, view, device=device) for k, (name, view) in enumerate(images)
    )
    xml = (
        f'<?xml version="1.0"?><scn xmlns="{_SCN}">'
        '<collection name="slide" sizeX="20000" sizeY="20000">'
        f"<barcode>NC123</barcode>{body}</collection></scn>"
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for k in range(len(images)):
            tif.write(
                _plane(32),
                photometric="minisblack",
                description=xml if k == 0 else None,
                metadata=None,
            )
    return path


def test_scn_named_label_and_overview_are_both_associated(tmp_path: Path) -> None:
    path = _scn(tmp_path / "s.scn", [("", 20000), ("", 5000), ("label", 3000)])
    with tifffile.TiffFile(path) as tif:
        assert [s.name for s in tif.series] == ["", "", "label"]
        assert associated_series(tif, "scn") == {0, 2}
    with open_image(path) as image:
        assert len(image.scenes()) == 1


def test_scn_without_a_device_has_no_model(tmp_path: Path) -> None:
    facts = _facts(_scn(tmp_path / "d.scn", [("", 20000), ("", 5000)], device=False), "scn")
    assert facts.model is None
    assert facts.manufacturer == "Leica"
    assert facts.magnification == 10.0


def test_scn_overviews_count_only_images_with_pixels() -> None:
    """Images are numbered as tifffile makes series of them: those with a pixels dimension."""
    xml = (
        f'<scn xmlns="{_SCN}"><note>not a collection</note>'
        '<collection sizeX="20000" sizeY="60000"><barcode>X</barcode>'
        '<image><pixels><dimension ifd="0"/></pixels><view sizeX="5000" sizeY="5000"/></image>'
        '<image><view sizeX="20000" sizeY="60000"/></image>'  # no pixels: no series
        '<image><pixels sizeX="1" sizeY="1"></pixels><view sizeX="20000" sizeY="60000"/></image>'
        '<image><pixels><dimension ifd="1"/></pixels></image>'  # no view: not an overview
        '<image><pixels><dimension ifd="2"/></pixels><view sizeX="20000" sizeY="60000"/></image>'
        "</collection></scn>"
    )
    assert _scn_overviews(xml) == {2}
    assert _scn_overviews("<scn><collection") == set()  # not XML: no overview, no error


def _scn_layout(path: Path, images: list[tuple[str, int, str | None]]) -> Path:
    """An SCN of ``(name, view size, objective or None)`` images, laid out as Leica writes them.

    The order of a real slide (openslide's and Bio-Formats' samples): a label scanned
    without an objective element, the macro (view = the whole 20000 nm collection,
    its own objective of about 0.6x), then the main images, each with its objective.
    """
    body = ""
    for k, (name, view, objective) in enumerate(images):
        lens = (
            f"<objectiveSettings><objective>{objective}</objective></objectiveSettings>"
            if objective is not None
            else ""
        )
        body += (
            f'<image name="{name}"><creationDate>2012-05-02T14:00:29.07Z</creationDate>'
            '<device model="Leica SCN400;Leica SCN" version="1.5"/>'
            f'<pixels sizeX="32" sizeY="32"><dimension sizeX="32" sizeY="32" r="0" ifd="{k}"/>'
            f'</pixels><view sizeX="{view}" sizeY="{view}" offsetX="0" offsetY="0"/>'
            f"<scanSettings>{lens}<illuminationSettings><numericalAperture>0.4"
            "</numericalAperture><illuminationSource>brightfield</illuminationSource>"
            "</illuminationSettings></scanSettings></image>"
        )
    xml = (
        f'<?xml version="1.0"?><scn xmlns="{_SCN}">'
        f'<collection name="slide" sizeX="20000" sizeY="20000">{body}</collection></scn>'
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for k in range(len(images)):
            tif.write(
                _plane(32),
                photometric="minisblack",
                description=xml if k == 0 else None,
                metadata=None,
            )
    return path


def test_scn_a_label_without_objective_does_not_give_the_macro_s_lens_to_the_main_image(
    tmp_path: Path,
) -> None:
    """Regression: objectives were counted over the whole XML, overviews over images with
    pixels; a label without an objective shifted one against the other, so the main image
    was given the macro's 0.60833x."""
    path = _scn_layout(
        tmp_path / "slide.scn",
        [("label", 3000, None), ("", 20000, "0.60833"), ("", 5000, "20")],
    )
    assert _facts(path, "scn").magnification == 20.0
    with open_image(path) as image:
        assert len(image.scenes()) == 1  # label and macro are associated images
        md = image.metadata(0)
    assert md.objective is not None
    assert md.objective.magnification == 20.0
    # an image without an objective of its own is given none (not a neighbour's)
    unnamed = _scn_layout(
        tmp_path / "unnamed.scn", [("", 3000, None), ("", 20000, "0.6"), ("", 5000, "20")]
    )
    with open_image(unnamed) as image:
        lenses = [image.metadata(k).objective for k in range(len(image.scenes()))]
    # its own numerical aperture only
    assert lenses[0] is not None and lenses[0].magnification is None
    assert lenses[1] is not None and lenses[1].magnification == 20.0


def test_scn_each_main_image_has_its_own_objective(tmp_path: Path) -> None:
    """Two regions scanned with different lenses: not the first one's for both."""
    path = _scn_layout(
        tmp_path / "two.scn",
        [("", 20000, "0.60833"), ("", 5000, "20"), ("", 4000, "40")],
    )
    with open_image(path) as image:
        assert len(image.scenes()) == 2
        first, second = (image.metadata(k) for k in range(2))
    assert first.objective is not None and first.objective.magnification == 20.0
    assert second.objective is not None and second.objective.magnification == 40.0
    assert second.provenance["objective.magnification"] == (
        "SCN scanSettings/objectiveSettings/objective"
    )
    # the file's facts (no scene asked): scene 0's lens
    assert _facts(path, "scn").magnification == 20.0


def test_scn_each_image_has_its_own_date_device_aperture_and_illumination(tmp_path: Path) -> None:
    """Regression: an SCN had no acquisition time, no NA nor illumination, and every image the
    first ``<device>`` of the file. As Bio-Formats' LeicaSCNReader, each ``<image>`` says its
    own: creationDate (UTC), device model and version, numericalAperture, illuminationSource."""
    path = write_scn_images(tmp_path / "two.scn", SCN_TWO_REGIONS)
    with open_image(path) as image:
        assert len(image.scenes()) == 2  # the macro is an associated image
        first, second = (image.metadata(k) for k in range(2))
    assert first.acquired_at == datetime(2012, 5, 2, 14, 0, 29, 70000, tzinfo=UTC)
    assert second.acquired_at == datetime(2012, 5, 3, 14, 30, tzinfo=UTC)  # +02:00, in UTC
    assert first.acquired_at_local is None
    assert first.provenance["acquired_at"] == "SCN image/creationDate"
    assert not any(w.startswith("acquisition time zone") for w in first.warnings)
    assert first.objective is not None and second.objective is not None
    assert (first.objective.magnification, first.objective.numerical_aperture) == (20.0, 0.4)
    assert (second.objective.magnification, second.objective.numerical_aperture) == (40.0, 0.65)
    assert first.provenance["objective.numerical_aperture"] == (
        "SCN scanSettings/illuminationSettings/numericalAperture"
    )
    # brightfield: transmitted light, as Bio-Formats says; any other source: Other
    assert (first.channels[0].illumination, first.channels[0].contrast_method) == (
        "Transmitted",
        "Brightfield",
    )
    assert (second.channels[0].illumination, second.channels[0].contrast_method) == ("Other", None)
    assert first.provenance["channels[].illumination"] == (
        "SCN scanSettings/illuminationSettings/illuminationSource"
    )
    assert first.microscope is not None and second.microscope is not None
    assert (first.microscope.model, first.microscope.software_version) == (
        "Leica SCN400;Leica SCN",
        "1.4.0.9691 2011/03/30 10:30:59;1.4.0.9708",
    )
    assert (second.microscope.model, second.microscope.software_version) == (
        "Leica SCN400F;Leica SCN",
        "1.5",
    )
    assert second.provenance["microscope.model"] == "SCN image/device/@model"
    # pixel size: the view (5000 nm) over the full resolution's 32 pixels, as Bio-Formats
    assert (first.physical_size.x_um, first.physical_size.y_um) == (0.15625, 0.15625)
    assert first.provenance["physical_size.x_um"] == (
        "SCN image/view/@sizeX, @sizeY (nm) / pixels/dimension r=0"
    )
    # the file's facts (no scene asked): scene 0's
    facts = _facts(path, "scn")
    assert facts.acquired_at == first.acquired_at
    assert facts.sources["acquired_at"] == "SCN image/creationDate"


@pytest.mark.usefixtures("tokyo")
def test_scn_creation_date_is_utc_whatever_the_servers_zone(tmp_path: Path) -> None:
    path = write_scn_images(tmp_path / "z.scn", SCN_TWO_REGIONS)
    facts = _facts(path, "scn")
    assert facts.acquired_at is not None
    assert facts.acquired_at.utcoffset() == timedelta(0)
    assert facts.acquired_at.hour == 14


def test_scn_creation_date_without_zone_is_local_and_beats_the_file_write_time(
    tmp_path: Path,
) -> None:
    """A creationDate without a zone is a wall-clock time (acquired_at_local), and it is the
    scan's: the TIFF DateTime beside it is only when the file was written."""
    images = [
        {"view": "20000", "objective": "0.6"},
        {"created": "2013-01-02T03:04:05", "objective": "20"},
        {"objective": "10"},  # no creationDate: no time of its own
    ]
    path = write_scn_images(tmp_path / "local.scn", images, tiff_datetime="2020:01:01 00:00:00")
    with open_image(path) as image:
        dated, undated = (image.metadata(k) for k in range(2))
    assert dated.acquired_at is None
    assert dated.acquired_at_local == datetime(2013, 1, 2, 3, 4, 5)
    assert dated.provenance["acquired_at_local"] == "SCN image/creationDate"
    zone = [w for w in dated.warnings if w.startswith("acquisition time zone")]
    assert len(zone) == 1  # said once, not once per source
    assert dated.objective is not None and dated.objective.numerical_aperture is None
    assert dated.channels[0].illumination is None
    assert dated.microscope is not None and dated.microscope.model is None  # no <device>
    # not the neighbour's creationDate: the TIFF DateTime, said to be the file's write time
    assert undated.acquired_at_local == datetime(2020, 1, 1)
    assert undated.provenance["acquired_at_local"] == "TIFF DateTime (file write time)"


@pytest.mark.parametrize(
    "created", ["yesterday", "2012-05-02", "2012-13-45T25:00:00Z", " ", "", "x" * 70]
)
def test_scn_malformed_creation_date_is_a_warning_not_an_error(
    tmp_path: Path, created: str
) -> None:
    images = [{"view": "20000", "created": created}, {"created": created, "objective": "20"}]
    path = write_scn_images(tmp_path / "bad.scn", images)
    with open_image(path) as image:
        md = image.metadata(0)
    assert md.acquired_at is None
    assert md.acquired_at_local is None
    assert md.objective is not None and md.objective.magnification == 20.0
    said = [w for w in md.warnings if "creationDate" in w]
    if created.strip():
        assert said == [
            f"SCN image 1: creationDate {created[:64]!r} is not an ISO 8601 date and time: "
            "acquisition time not read"
        ]
    else:
        assert said == []  # blank: says nothing, nothing to warn of


def test_scn_facts_of_no_image_or_a_series_past_the_images(tmp_path: Path) -> None:
    """An SCN collection without images says only Leica; a series index past the XML's
    images says nothing of an image (no error either way)."""
    empty = tmp_path / "empty.scn"
    xml = f'<?xml version="1.0"?><scn xmlns="{_SCN}"><collection sizeX="1" sizeY="1"/></scn>'
    tifffile.imwrite(empty, _plane(32), photometric="minisblack", description=xml, metadata=None)
    assert _facts(empty, "scn") == SlideFacts(manufacturer="Leica")
    two = write_scn_images(tmp_path / "two.scn", SCN_TWO_REGIONS)
    with tifffile.TiffFile(two) as tif:
        assert slide_facts(tif, "scn", 2).magnification == 40.0
        assert slide_facts(tif, "scn", 3) == SlideFacts(manufacturer="Leica")


def test_scn_device_without_model_or_version_names_none() -> None:
    from zstack_analyzer.readers._wsi_tiff import _scn_images

    pixels = '<pixels><dimension sizeX="8" sizeY="8" r="0"/></pixels>'
    xml = (
        f'<scn xmlns="{_SCN}"><collection sizeX="20000" sizeY="20000">'
        f"<image><device/>{pixels}</image>"
        f'<image><device model=" " version=""/>{pixels}</image>'
        "</collection></scn>"
    )
    assert [(i.device_model, i.device_version) for i in _scn_images(xml)] == [(None, None)] * 2


def test_scn_pixel_size_is_the_view_over_the_full_resolution_dimension() -> None:
    """x and y each, from the dimension r=0 (z=0, c=0) wherever it is listed; none without a
    view, a full-resolution dimension or a positive size."""
    from zstack_analyzer.readers._wsi_tiff import _scn_images

    def image(dims: str, view: str = '<view sizeX="8000" sizeY="6000"/>') -> str:
        return f"<image><pixels>{dims}</pixels>{view}</image>"

    xml = (
        f'<scn xmlns="{_SCN}"><collection sizeX="20000" sizeY="20000">'
        + image(
            '<dimension sizeX="10" sizeY="10" r="1" ifd="1"/>'
            '<dimension sizeX="40" sizeY="20" r="0" c="1" ifd="2"/>'
            '<dimension sizeX="80" sizeY="30" ifd="0"/>'  # r, z, c absent: 0
        )
        + image('<dimension sizeX="80" sizeY="30" r="0"/>', view="")
        + image('<dimension sizeX="10" sizeY="10" r="1"/>')
        + image('<dimension sizeX="0" sizeY="30" r="0"/>')
        + image('<dimension sizeX="80" sizeY="30" z="0" r="0"/>', '<view sizeX="8000"/>')
        + image(
            '<dimension sizeX="10" sizeY="10" r="0" z="1"/>'  # another focal plane first
            '<dimension sizeX="80" sizeY="30" r="0" z="0"/>'
        )
        + image('<dimension sizeX="80" sizeY="30"/>', '<view sizeX="inf" sizeY="6000"/>')
        + "</collection></scn>"
    )
    sizes = [found.pixel_size_um for found in _scn_images(xml)]
    assert sizes == [(0.1, 0.2), None, None, None, None, (0.1, 0.2), None]
    # no namespace: the same names
    plain = xml.replace(f' xmlns="{_SCN}"', "")
    assert [found.pixel_size_um for found in _scn_images(plain)] == sizes


# ------------------------------------------------------------------ PerkinElmer QPTIFF
def _qptiff(path: Path, descriptions: list[str]) -> Path:
    with tifffile.TiffWriter(path) as tif:
        for description in descriptions:
            tif.write(
                _plane(),
                photometric="minisblack",
                metadata=None,
                software="PerkinElmer-QPI",
                description=description,
            )
    return path


def _qpi(inner: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><PerkinElmer-QPI-ImageDescription>'
        f"<DescriptionVersion>2</DescriptionVersion><ImageType>FullResolution</ImageType>{inner}"
        "</PerkinElmer-QPI-ImageDescription>"
    )


def test_qptiff_sources_of_objective_and_channel_names(tmp_path: Path) -> None:
    path = _qptiff(
        tmp_path / "q.qptiff",
        [_qpi("<Name>DAPI</Name><Objective>20x</Objective>"), _qpi("<Name>FITC</Name>")],
    )
    facts = _facts(path, "qpi")
    assert facts.channel_names == ["DAPI", "FITC"]
    assert facts.sources == {
        "magnification": "QPTIFF Objective",
        "channels.name": "QPTIFF ImageDescription/Name of each baseline page",
    }
    with open_image(path) as image:
        md = image.metadata()
    assert md.provenance["channels.name"] == "QPTIFF ImageDescription/Name of each baseline page"
    assert md.provenance["objective.magnification"] == "QPTIFF Objective"


def test_qptiff_without_instrument_or_some_names(tmp_path: Path) -> None:
    """Tag names in another case still give the objective; a page without Name has none."""
    path = _qptiff(
        tmp_path / "n.qptiff",
        [
            _qpi("<Name>DAPI</Name><OBJECTIVENAME>10X</OBJECTIVENAME>"),
            _qpi(""),
            _qpi("<Name> </Name>"),
        ],
    )
    facts = _facts(path, "qpi")
    assert facts.model is None
    assert facts.manufacturer == "PerkinElmer"
    assert facts.magnification == 10.0
    assert facts.channel_names == ["DAPI", None, None]
