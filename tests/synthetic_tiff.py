"""Writers of synthetic TIFF-family files (tifffile), pixels position-encoded.

Every writer takes canonical T,C,Z,Y,X arrays (see ``tests/synthetic.py``) and
returns the path written, so a test compares what a reader gives with exactly
what was stored.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

if TYPE_CHECKING:
    from pathlib import Path


def write_ome_tiff(
    path: Path,
    stacks: list[np.ndarray],
    *,
    metadata: list[dict[str, Any]] | None = None,
    bigtiff: bool = False,
    tile: tuple[int, int] | None = None,
    compression: str | None = None,
) -> Path:
    """An OME-TIFF with one Image (series) per canonical T,C,Z,Y,X stack in ``stacks``."""
    metadata = metadata or [{} for _ in stacks]
    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=True) as tif:
        for stack, extra in zip(stacks, metadata, strict=True):
            tif.write(
                stack,
                metadata={"axes": "TCZYX", **extra},
                tile=tile,
                compression=compression,
                photometric="minisblack",
            )
    return path


def write_ome_pyramid(path: Path, stack: np.ndarray, *, levels: int = 3) -> Path:
    """A tiled BigTIFF OME-TIFF whose reduced resolutions live in SubIFDs."""
    options: dict[str, Any] = {"tile": (32, 32), "compression": "zlib", "photometric": "minisblack"}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(stack, subifds=levels - 1, metadata={"axes": "TCZYX"}, **options)
        for level in range(1, levels):
            step = 2**level
            tif.write(stack[..., ::step, ::step], subfiletype=1, metadata=None, **options)
    return path


def write_tiff_pyramid(path: Path, plane: np.ndarray, *, levels: int = 3) -> Path:
    """A plain (non-OME) tiled TIFF: one Y,X plane with SubIFD reduced resolutions."""
    options: dict[str, Any] = {"tile": (32, 32), "compression": "zlib", "photometric": "minisblack"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(plane, subifds=levels - 1, metadata=None, **options)
        for level in range(1, levels):
            step = 2**level
            tif.write(plane[::step, ::step], subfiletype=1, metadata=None, **options)
    return path


def write_imagej(
    path: Path,
    stack: np.ndarray,
    *,
    unit: str | None = None,
    pixel_size: float | None = None,
    spacing: float | None = None,
    finterval: float | None = None,
) -> Path:
    """An ImageJ hyperstack from a canonical T,C,Z,Y,X stack (stored T,Z,C,Y,X as ImageJ does).

    ``unit`` is written as ImageJ writes it (``"\\\\u00B5m"`` for µm: the
    description is ASCII).
    """
    md: dict[str, Any] = {"axes": "TZCYX"}
    if unit is not None:
        md["unit"] = unit
    if spacing is not None:
        md["spacing"] = spacing
    if finterval is not None:
        md["finterval"] = finterval
    resolution = (1 / pixel_size, 1 / pixel_size) if pixel_size else None
    tifffile.imwrite(
        path,
        np.ascontiguousarray(stack.transpose(0, 2, 1, 3, 4)),
        imagej=True,
        resolution=resolution,
        metadata=md,
    )
    return path


def write_bigtiff_tiled(
    path: Path, stack: np.ndarray, *, tile: tuple[int, int] = (32, 32), compression: str = "zlib"
) -> Path:
    """A plain tiled, compressed BigTIFF with one page per Z plane of a Z,Y,X stack."""
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for plane in stack:
            tif.write(
                plane, tile=tile, compression=compression, photometric="minisblack", metadata=None
            )
    return path


def write_plain_pages(path: Path, stack: np.ndarray, **options: Any) -> Path:
    """A plain TIFF, one page per Z plane of a Z,Y,X(,S) stack, no shape metadata."""
    with tifffile.TiffWriter(path) as tif:
        for plane in stack:
            tif.write(plane, metadata=None, **options)
    return path


def write_rgb(path: Path, rgb: np.ndarray, **options: Any) -> Path:
    """A plain RGB TIFF from a Y,X,3 array."""
    tifffile.imwrite(path, rgb, photometric="rgb", metadata=None, **options)
    return path


_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def write_ome_multifile(
    folder: Path,
    stack: np.ndarray,
    *,
    prefix: str = "set",
    companion: bool = True,
    **options: Any,
) -> tuple[list[Path], Path]:
    """A BinaryOnly multi-file OME-TIFF set: one file per Z plane plus a companion ``.ome``.

    ``stack`` is canonical T,C,Z,Y,X with T = C = 1. Returns the member paths
    and the companion path (written only when ``companion``). ``options`` go to
    ``tifffile.imwrite`` (``tile=`` for tiled members).
    """
    size_t, size_c, size_z, size_y, size_x = stack.shape
    assert size_t == size_c == 1
    companion_name = f"{prefix}.companion.ome"
    members = []
    uuids = []
    for z in range(size_z):
        file_uuid = f"urn:uuid:{uuid.uuid4()}"
        name = f"{prefix}-Z{z + 1}.ome.tiff"
        description = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<OME xmlns="{_OME_NS}" UUID="{file_uuid}">'
            f'<BinaryOnly MetadataFile="{companion_name}" UUID="urn:uuid:{uuid.uuid4()}"/>'
            "</OME>"
        )
        path = folder / name
        tifffile.imwrite(
            path,
            stack[0, 0, z],
            description=description,
            metadata=None,
            photometric="minisblack",
            **options,
        )
        members.append(path)
        uuids.append(file_uuid)
    tiff_data = "".join(
        f'<TiffData FirstC="0" FirstT="0" FirstZ="{z}" IFD="0" PlaneCount="1">'
        f'<UUID FileName="{m.name}">{u}</UUID></TiffData>'
        for z, (m, u) in enumerate(zip(members, uuids, strict=True))
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{_OME_NS}"><Image ID="Image:0" Name="{prefix}">'
        f'<Pixels DimensionOrder="XYCTZ" ID="Pixels:0" Type="{stack.dtype.name}" SizeC="1" '
        f'SizeT="1" SizeX="{size_x}" SizeY="{size_y}" SizeZ="{size_z}" PhysicalSizeX="0.5" '
        f'PhysicalSizeY="0.5" PhysicalSizeZ="2">'
        f'<Channel ID="Channel:0" Name="only" SamplesPerPixel="1"/>{tiff_data}</Pixels></Image></OME>'
    )
    companion_path = folder / companion_name
    if companion:
        companion_path.write_text(xml, encoding="utf-8")
    return members, companion_path


def write_tiled_noise_ome_tiff(
    path: Path, shape: tuple[int, int, int, int] = (2, 8, 512, 480), *, seed: int = 7
) -> np.ndarray:
    """A tiled (128 px), zlib-compressed C,Z,Y,X uint16 OME-TIFF of noise; returns the pixels.

    Noise, so that it does not compress away: byte counts of ranged reads then
    say how much of a plane was fetched.
    """
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 4000, size=shape, dtype=np.uint16)
    tifffile.imwrite(
        path,
        data,
        ome=True,
        tile=(128, 128),
        compression="zlib",
        metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    return data
