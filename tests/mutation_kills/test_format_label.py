"""The whole-slide variant a record and a page row show, from real files' metadata.

The readers' own metadata of the file is the input (``vendor_metadata.slide_format``
of the TIFF reader, ``sop_class`` of the DICOM reader) and the reference is what the
vendor libraries say the file is: tifffile's format flags for the whole-slide TIFFs
(no SVS, NDPI, SCN, BIF or QPTIFF is in the corpus, so ``tests/synthetic_wsi.py``
writes them from their published layouts) and pydicom's SOP Class UID for the
DICOM files of the corpus (two highdicom VL Whole Slide Microscopy images and an MR
image).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
import pytest
import tifffile

from tests.service.conftest import upload
from tests.synthetic import encoded_stack
from tests.synthetic_dicom import write_dicom_wsi
from tests.synthetic_wsi import write_bif, write_ndpi_like, write_qptiff, write_scn, write_svs
from zstack_analyzer import open_image
from zstack_analyzer.service.format_label import VARIANT_KEYS, format_variant, variant_of

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

#: The DICOM standard's SOP Class UID of a VL Whole Slide Microscopy Image (PS3.4 B.5).
WSI_UID = pydicom.uid.VLWholeSlideMicroscopyImageStorage
#: tifffile's flag of each whole-slide TIFF -> the label users know it by.
TIFF_FLAGS = {
    "is_svs": "SVS",
    "is_ndpi": "NDPI",
    "is_scn": "SCN",
    "is_bif": "BIF",
    "is_qpi": "QPTIFF",
}


def _slides(folder: Path) -> dict[str, Path]:
    rgb = np.random.default_rng(1).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    plane = encoded_stack(1, 1, 1, 128, 128)[0, 0, 0]
    channels = encoded_stack(1, 2, 1, 128, 96)[0, :, 0]
    return {
        "SVS": write_svs(folder / "slide.svs", rgb),
        "NDPI": write_ndpi_like(folder / "hamamatsu.tif", plane),
        "SCN": write_scn(folder / "slide.scn", plane),
        "BIF": write_bif(folder / "slide.bif", plane),
        "QPTIFF": write_qptiff(folder / "slide.qptiff", channels, ["DAPI", "FITC"]),
    }


def _record(path: Path) -> tuple[str, dict[str, Any]]:
    """(format, metadata document) as the archive stores them for ``path``."""
    with open_image(path) as image:
        md = image.metadata()
    return md.file_format, md.model_dump(mode="json")


def _tifffile_label(path: Path) -> str | None:
    with tifffile.TiffFile(path) as tif:
        labels = [label for flag, label in TIFF_FLAGS.items() if getattr(tif, flag)]
    assert len(labels) <= 1, labels
    return labels[0] if labels else None


def test_every_whole_slide_tiff_is_named_as_tifffile_knows_it(tmp_path: Path) -> None:
    for label, path in _slides(tmp_path).items():
        assert _tifffile_label(path) == label
        file_format, document = _record(path)
        assert file_format == "TIFF", label
        assert format_variant(file_format, document) == label
        # A page row reads only the value of the format's key (in SQL): the same label.
        value = document["vendor_metadata"][VARIANT_KEYS[file_format]]
        assert variant_of(file_format, value) == label


def test_plain_tiffs_of_the_corpus_have_no_variant(testdata: Path) -> None:
    for name in ("tiff/NikonTIF.tif", "tiff/fei-sem-rbc.tif"):
        path = testdata / name
        assert _tifffile_label(path) is None
        file_format, document = _record(path)
        assert file_format == "TIFF"
        assert "slide_format" not in (document["vendor_metadata"] or {})
        assert format_variant(file_format, document) is None
        assert variant_of(file_format, None) is None


@pytest.mark.parametrize(
    ("name", "whole_slide"),
    [
        ("dicom/sm_image.dcm", True),
        ("dicom/sm_image_grayscale.dcm", True),
        ("dicom/dicom_file90.dcm", False),
    ],
)
def test_corpus_dicom_is_a_whole_slide_by_its_sop_class(
    testdata: Path, name: str, whole_slide: bool
) -> None:
    path = testdata / name
    uid = pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID
    assert (uid == WSI_UID) is whole_slide
    file_format, document = _record(path)
    assert file_format == "DICOM"
    stored = document["vendor_metadata"]["sop_class"]
    assert stored == uid.name  # "VL Whole Slide Microscopy Image Storage", "MR Image Storage"
    expected = "DICOM WSI" if whole_slide else None
    assert format_variant(file_format, document) == expected
    assert variant_of(file_format, stored) == expected
    # A record written when the reader kept the bare UID (a class pydicom cannot name).
    assert variant_of(file_format, str(uid)) == expected
    assert format_variant(file_format, {"vendor_metadata": {"sop_class": str(uid)}}) == expected


def test_a_written_dicom_slide_is_a_whole_slide(tmp_path: Path) -> None:
    path = write_dicom_wsi(tmp_path / "slide.dcm", encoded_stack(1, 1, 1, 32, 32)[0])
    assert pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID == WSI_UID
    assert format_variant(*_record(path)) == "DICOM WSI"


def test_other_microscopy_sop_classes_are_not_whole_slides() -> None:
    """VL microscopic images (slide coordinates or not) are not whole-slide images."""
    for uid in (
        pydicom.uid.VLMicroscopicImageStorage,
        pydicom.uid.VLSlideCoordinatesMicroscopicImageStorage,
        pydicom.uid.CTImageStorage,
    ):
        assert variant_of("DICOM", str(uid)) is None
        assert variant_of("DICOM", uid.name) is None, uid.name
    assert variant_of("DICOM", WSI_UID.name.upper()) == "DICOM WSI"
    assert variant_of("DICOM", WSI_UID.name.lower()) == "DICOM WSI"


def test_only_tiff_and_dicom_have_variants(tmp_path: Path, testdata: Path) -> None:
    """The same vendor value under another format names nothing; a DICOM key on a TIFF neither."""
    file_format, document = _record(_slides(tmp_path)["SVS"])
    dicom_format, dicom_document = _record(testdata / "dicom/sm_image.dcm")
    assert format_variant(file_format, document) == "SVS"
    for other in ("CZI", "OME-TIFF", "ImageJ TIFF", "LSM", "tiff", ""):
        assert format_variant(other, document) is None, other
        assert format_variant(other, dicom_document) is None, other
        assert variant_of(other, "svs") is None
        assert variant_of(other, WSI_UID.name) is None
    assert format_variant(dicom_format, document) is None  # no sop_class in a TIFF's block
    assert format_variant(file_format, dicom_document) is None  # no slide_format in a DICOM's
    assert variant_of("TIFF", WSI_UID.name) is None
    assert variant_of("DICOM", "svs") is None


def test_stored_values_in_any_case_name_the_variant(tmp_path: Path) -> None:
    for label in TIFF_FLAGS.values():
        kind = {"QPTIFF": "qpi"}.get(label, label.lower())
        for value in (kind, kind.upper(), kind.capitalize()):
            assert variant_of("TIFF", value) == label, value
    assert variant_of("TIFF", "svs ") is None  # the reader's kinds exactly, nothing near them
    assert variant_of("TIFF", 7) is None  # a value that is not text


def test_a_document_without_a_usable_vendor_block_has_no_variant(testdata: Path) -> None:
    file_format, document = _record(testdata / "dicom/sm_image.dcm")
    assert format_variant(file_format, document) == "DICOM WSI"
    for broken in (
        None,
        {},
        {**document, "vendor_metadata": None},
        {**document, "vendor_metadata": {}},
        {**document, "vendor_metadata": [document["vendor_metadata"]]},
        {**document, "vendor_metadata": "sop_class"},
        {k: v for k, v in document.items() if k != "vendor_metadata"},
    ):
        assert format_variant(file_format, broken) is None


def test_record_and_list_show_the_variant(
    sqlite_client: TestClient, tmp_path: Path, testdata: Path
) -> None:
    """Through the service: the uploaded record and the list's page row (the SQL path)."""
    files = {
        "SVS": _slides(tmp_path)["SVS"],
        "DICOM WSI": testdata / "dicom/sm_image.dcm",
        None: testdata / "dicom/dicom_file90.dcm",
    }
    for label, path in files.items():
        answer = upload(sqlite_client, path)
        assert answer.status_code == 201, answer.text
        assert answer.json()["image_stack"]["format_variant"] == label
    listed = sqlite_client.get("/api/images/?limit=50").json()["data"]
    assert {i["filename"]: i["format_variant"] for i in listed} == {
        path.name: label for label, path in files.items()
    }
