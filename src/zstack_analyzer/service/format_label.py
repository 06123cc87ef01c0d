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

__all__ = ["format_variant"]

#: ``vendor_metadata.slide_format`` of the TIFF reader -> the name users know.
_SLIDE_TIFFS = {"svs": "SVS", "ndpi": "NDPI", "scn": "SCN", "bif": "BIF", "qpi": "QPTIFF"}
_DICOM_WSI_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"


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
    if not isinstance(vendor, dict):
        return None
    if file_format == "TIFF":
        return _SLIDE_TIFFS.get(str(vendor.get("slide_format") or "").lower())
    if file_format == "DICOM":
        sop_class = str(vendor.get("sop_class") or "")
        if sop_class == _DICOM_WSI_UID or "whole slide" in sop_class.lower():
            return "DICOM WSI"
    return None
