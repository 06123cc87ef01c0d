"""The variant a list shows for a file whose format name says too little.

Why: every whole-slide TIFF (Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF,
PerkinElmer QPTIFF) is format "TIFF" and a DICOM slide is "DICOM", but a user
looking for their slides knows them by the variant. ``format`` keeps the reader's
name (filters and the seed API rely on it); ``format_variant`` says which kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["VARIANT_KEYS", "format_variant", "variant_of"]

#: ``vendor_metadata.slide_format`` of the TIFF reader -> the name users know.
_SLIDE_TIFFS = {"svs": "SVS", "ndpi": "NDPI", "scn": "SCN", "bif": "BIF", "qpi": "QPTIFF"}
_DICOM_WSI_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"


#: The one ``vendor_metadata`` key that names each variant-bearing format's kind.
VARIANT_KEYS = {"TIFF": "slide_format", "DICOM": "sop_class"}


def format_variant(file_format: str, metadata: Mapping[str, Any] | None) -> str | None:
    """``"SVS"``, ``"NDPI"``, ``"SCN"``, ``"BIF"``, ``"QPTIFF"``, ``"DICOM WSI"`` or None.

    Examples
    --------
    >>> format_variant("TIFF", {"vendor_metadata": {"slide_format": "svs"}})
    'SVS'
    >>> format_variant("DICOM", {"vendor_metadata": {"sop_class": _DICOM_WSI_UID}})
    'DICOM WSI'
    >>> format_variant("CZI", {}) is None
    True
    """
    vendor = (metadata or {}).get("vendor_metadata") or {}
    key = VARIANT_KEYS.get(file_format)
    if key is None or not isinstance(vendor, dict):
        return None
    return variant_of(file_format, vendor.get(key))


def variant_of(file_format: str, value: Any) -> str | None:
    """The variant from the value of the format's :data:`VARIANT_KEYS` key alone.

    Why apart from :func:`format_variant`: a page of summaries reads that one
    value in SQL instead of loading every row's whole metadata document.

    Examples
    --------
    >>> variant_of("TIFF", "NDPI"), variant_of("DICOM", "VL Whole Slide Microscopy Image")
    ('NDPI', 'DICOM WSI')
    >>> variant_of("TIFF", None) is None
    True
    """
    text = str(value or "")
    if file_format == "TIFF":
        return _SLIDE_TIFFS.get(text.lower())
    if file_format == "DICOM" and (text == _DICOM_WSI_UID or "whole slide" in text.lower()):
        return "DICOM WSI"
    return None
