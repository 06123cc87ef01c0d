"""Writers of whole-slide TIFF variants (tifffile) with their vendors' descriptions and tags.

No SVS/NDPI file is in the corpus; these follow the published layouts: an
Aperio SVS is a tiled baseline whose description starts "Aperio Image
Library", then a strip thumbnail, tiled reduced levels, a label (NewSubfileType
1) and a macro (NewSubfileType 9); a Hamamatsu NDPI carries tags 65420
(format flag) and 65421 (objective magnification) beside Make/Model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from tests.synthetic import encoded_stack

if TYPE_CHECKING:
    from pathlib import Path

APERIO_HEAD = "Aperio Image Library v12.0.15"


def write_svs(
    path: Path, rgb: np.ndarray, *, levels: int = 2, mpp: float = 0.499, app_mag: int = 20
) -> Path:
    """An Aperio SVS pyramid of a Y,X,3 uint8 image with thumbnail, label and macro pages."""
    height, width = rgb.shape[:2]
    tail = (
        f"|AppMag = {app_mag}|StripeWidth = 2040|ScanScope ID = SS1234|Filename = synth|"
        f"Date = 12/29/09|Time = 09:59:15|Time Zone = GMT+0100|User = x|MPP = {mpp}|Left = 25.6|Top = 23.4"
    )
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            rgb,
            tile=(64, 64),
            photometric="rgb",
            compression="jpeg",
            description=f"{APERIO_HEAD}\r\n{width}x{height} [0,0 {width}x{height}] (64x64) JPEG/RGB Q=90{tail}",
            metadata=None,
        )
        thumb = rgb[::8, ::8]
        tif.write(
            thumb,
            photometric="rgb",
            description=f"{APERIO_HEAD}\r\n{width}x{height} -> {thumb.shape[1]}x{thumb.shape[0]} - |AppMag = {app_mag}|MPP = {mpp}",
            metadata=None,
        )
        for level in range(1, levels):
            step = 2**level
            small = np.ascontiguousarray(rgb[::step, ::step])
            tif.write(
                small,
                tile=(64, 64),
                photometric="rgb",
                compression="jpeg",
                description=f"{APERIO_HEAD}\r\n{width}x{height} [0,0 {width}x{height}] (64x64) -> {small.shape[1]}x{small.shape[0]} JPEG/RGB Q=90",
                metadata=None,
            )
        label = np.full((40, 30, 3), 200, "uint8")
        tif.write(
            label,
            photometric="rgb",
            subfiletype=1,
            description=f"{APERIO_HEAD}\r\nlabel 30x40",
            metadata=None,
        )
        macro = np.full((30, 90, 3), 100, "uint8")
        tif.write(
            macro,
            photometric="rgb",
            subfiletype=9,
            description=f"{APERIO_HEAD}\r\nmacro 90x30",
            metadata=None,
        )
    return path


def write_ndpi_like(path: Path, plane: np.ndarray, *, magnification: float = 40.0) -> Path:
    """A Hamamatsu-style TIFF: NDPI tags 65420/65421, Make/Model, resolution in cm, reduced levels."""
    extratags = [(65420, "I", 1, 1, True), (65421, "f", 1, magnification, True)]
    resolution = (1e4 / 0.23, 1e4 / 0.23)  # 0.23 µm per pixel, in pixels per cm
    with tifffile.TiffWriter(path) as tif:
        for level in range(2):
            step = 2**level
            tif.write(
                np.ascontiguousarray(plane[::step, ::step]),
                photometric="minisblack",
                metadata=None,
                resolution=(resolution[0] / step, resolution[1] / step),
                resolutionunit="CENTIMETER",
                extratags=[
                    *extratags,
                    (271, "s", 0, "Hamamatsu", True),
                    (272, "s", 0, "C13210", True),
                ],
                subfiletype=0 if level == 0 else 1,
            )
    return path


def _qpi_description(image_type: str, name: str, objective: str = "20x") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><PerkinElmer-QPI-ImageDescription>'
        f"<DescriptionVersion>2</DescriptionVersion><ImageType>{image_type}</ImageType>"
        f"<Name>{name}</Name><Objective>{objective}</Objective>"
        "<InstrumentType>Vectra Polaris</InstrumentType></PerkinElmer-QPI-ImageDescription>"
    )


def write_qptiff(path: Path, stack: np.ndarray, names: list[str], *, levels: int = 2) -> Path:
    """A PerkinElmer QPTIFF: one tiled page per channel, a thumbnail, reduced levels, a label."""
    options: dict[str, Any] = {
        "photometric": "minisblack",
        "metadata": None,
        "software": "PerkinElmer-QPI",
    }
    with tifffile.TiffWriter(path) as tif:
        for c, plane in enumerate(stack):
            tif.write(
                plane,
                tile=(64, 64),
                description=_qpi_description("FullResolution", names[c]),
                **options,
            )
        thumb = np.zeros((32, 32, 3), "uint8")
        tif.write(
            thumb,
            description=_qpi_description("Thumbnail", ""),
            **{**options, "photometric": "rgb"},
        )
        for level in range(1, levels):
            step = 2**level
            for c, plane in enumerate(stack):
                tif.write(
                    np.ascontiguousarray(plane[::step, ::step]),
                    tile=(64, 64),
                    subfiletype=1,
                    description=_qpi_description("ReducedResolution", names[c]),
                    **options,
                )
        label = np.full((24, 40, 3), 50, "uint8")
        tif.write(
            label,
            subfiletype=1,
            description=_qpi_description("Label", ""),
            **{**options, "photometric": "rgb"},
        )
    return path


def write_bif(
    path: Path, plane: np.ndarray, *, magnification: float = 40.0, scan_res: float = 0.25
) -> Path:
    """A Ventana BIF: label and thumbnail IFDs first, then ``level=N`` IFDs; XMP ``<iScan>`` on the label."""
    xmp = f'<?xpacket?><x:xmpmeta><iScan Magnification="{magnification}" ScanRes="{scan_res}" UnitNumber="BI123"/></x:xmpmeta>'.encode()
    options: dict[str, Any] = {"metadata": None, "software": "ScanOutputManager 1.1.0.15854"}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        label = np.full((30, 40, 3), 90, "uint8")
        tif.write(
            label,
            photometric="rgb",
            description="Label Image",
            extratags=[(700, 1, len(xmp), xmp, True)],
            **options,
        )
        tif.write(
            np.zeros((32, 32, 3), "uint8"), photometric="rgb", description="Thumbnail", **options
        )
        for level in range(2):
            step = 2**level
            tif.write(
                np.ascontiguousarray(plane[::step, ::step]),
                photometric="minisblack",
                tile=(64, 64),
                description=f"level={level} mag={magnification / step:g} quality=90",
                **options,
            )
    return path


def write_scn(path: Path, plane: np.ndarray, *, objective: int = 20) -> Path:
    """A Leica SCN: XML collection with an overview (view = whole slide) and a 2-level main image."""
    height, width = plane.shape
    macro = np.ascontiguousarray(plane[::4, ::4])
    xml = (
        '<?xml version="1.0"?><scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01">'
        '<collection name="slide" uuid="c1" sizeX="20000" sizeY="60000">'
        '<image name="" uuid="i0"><device model="Leica SCN400;Leica SCN" version="1.5"/>'
        f'<pixels sizeX="{macro.shape[1]}" sizeY="{macro.shape[0]}">'
        f'<dimension sizeX="{macro.shape[1]}" sizeY="{macro.shape[0]}" r="0" ifd="0"/></pixels>'
        '<view sizeX="20000" sizeY="60000" offsetX="0" offsetY="0"/>'
        "<scanSettings><objectiveSettings><objective>1.25</objective></objectiveSettings></scanSettings></image>"
        '<image name="" uuid="i1"><device model="Leica SCN400;Leica SCN" version="1.5"/>'
        f'<pixels sizeX="{width}" sizeY="{height}">'
        f'<dimension sizeX="{width}" sizeY="{height}" r="0" ifd="1"/>'
        f'<dimension sizeX="{width // 2}" sizeY="{height // 2}" r="1" ifd="2"/></pixels>'
        '<view sizeX="5000" sizeY="5000" offsetX="100" offsetY="200"/>'
        f"<scanSettings><objectiveSettings><objective>{objective}</objective></objectiveSettings></scanSettings>"
        "</image></collection></scn>"
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(macro, photometric="minisblack", tile=(32, 32), description=xml, metadata=None)
        tif.write(plane, photometric="minisblack", tile=(64, 64), metadata=None)
        tif.write(
            np.ascontiguousarray(plane[::2, ::2]),
            photometric="minisblack",
            tile=(64, 64),
            subfiletype=1,
            metadata=None,
        )
    return path


#: The namespace of Leica SCN's collection XML.
SCN_NAMESPACE = "http://www.leica-microsystems.com/scn/2010/10/01"


def write_scn_images(path: Path, images: list[dict[str, str]], *, tiff_datetime: str = "") -> Path:
    """An SCN of 32-pixel images, each ``<image>`` holding only what its dict says.

    Keys: ``view`` (nm; 20000 is the whole collection, the macro), ``created``
    (creationDate), ``model``/``version`` (device), ``objective``, ``na``
    (illuminationSettings/numericalAperture), ``source`` (illuminationSource), laid out
    as Leica writes them (creationDate, device, pixels, view, scanSettings).
    """
    body = ""
    for k, image in enumerate(images):
        created = f"<creationDate>{image['created']}</creationDate>" if "created" in image else ""
        device = (
            f'<device model="{image["model"]}" version="{image.get("version", "")}"/>'
            if "model" in image
            else ""
        )
        lens = (
            f"<objectiveSettings><objective>{image['objective']}</objective></objectiveSettings>"
            if "objective" in image
            else ""
        )
        light = "".join(
            f"<{tag}>{image[key]}</{tag}>"
            for key, tag in (("na", "numericalAperture"), ("source", "illuminationSource"))
            if key in image
        )
        view = image.get("view", "5000")
        body += (
            f'<image name="" uuid="urn:uuid:{k}">{created}{device}'
            f'<pixels sizeX="32" sizeY="32"><dimension sizeX="32" sizeY="32" r="0" ifd="{k}"/>'
            f'</pixels><view sizeX="{view}" sizeY="{view}" offsetX="0" offsetY="0"/>'
            f"<scanSettings>{lens}<illuminationSettings>{light}</illuminationSettings>"
            "</scanSettings></image>"
        )
    xml = (
        f'<?xml version="1.0"?><scn xmlns="{SCN_NAMESPACE}">'
        f'<collection name="slide" sizeX="20000" sizeY="20000">{body}</collection></scn>'
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for k in range(len(images)):
            tif.write(
                encoded_stack(1, 1, 1, 32, 32, dtype="uint8")[0, 0, 0],
                photometric="minisblack",
                description=xml if k == 0 else None,
                datetime=tiff_datetime or None,
                metadata=None,
            )
    return path


#: A macro and two regions scanned at different times, by two devices, lenses and lights.
SCN_TWO_REGIONS = [
    {"view": "20000", "created": "2012-05-02T13:59:00Z", "model": "Leica SCN400;Leica SCN",
     "version": "1.4.0.9691 2011/03/30 10:30:59;1.4.0.9708", "objective": "0.60833", "na": "0.02",
     "source": "brightfield"},
    {"created": "2012-05-02T14:00:29.07Z", "model": "Leica SCN400;Leica SCN",
     "version": "1.4.0.9691 2011/03/30 10:30:59;1.4.0.9708", "objective": "20", "na": "0.4",
     "source": "brightfield"},
    {"created": "2012-05-03T16:30:00+02:00", "model": "Leica SCN400F;Leica SCN",
     "version": "1.5", "objective": "40", "na": "0.65", "source": "fluorescence"},
]  # fmt: skip
