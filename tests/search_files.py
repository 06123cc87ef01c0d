"""Small OME-TIFFs carrying the metadata people search by (channels, objective, date).

Written with tifffile and a hand-made OME-XML description, so the real OME-TIFF
reader extracts them on upload exactly as it would from a microscope's file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["write_searchable_ome_tiff"]


def write_searchable_ome_tiff(
    path: Path,
    *,
    channels: tuple[str, ...],
    objective: str,
    magnification: float,
    immersion: str,
    acquired: str,
    size_z: int = 2,
) -> Path:
    """A C,Z,16,16 uint16 OME-TIFF whose OME-XML names channels, objective and date."""
    import tifffile

    size_c = len(channels)
    channel_xml = "".join(
        f'<Channel ID="Channel:0:{i}" Name={quoteattr(name)} Fluor={quoteattr(name)}'
        ' SamplesPerPixel="1"/>'
        for i, name in enumerate(channels)
    )
    planes = "".join(
        f'<TiffData IFD="{c * size_z + z}" FirstC="{c}" FirstZ="{z}" FirstT="0" PlaneCount="1"/>'
        for c in range(size_c)
        for z in range(size_z)
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" Creator="zstack tests">'
        '<Instrument ID="Instrument:0"><Microscope Manufacturer="Zeiss" Model="LSM 980"/>'
        f'<Objective ID="Objective:0" Model={quoteattr(objective)}'
        f' NominalMagnification="{magnification}" Immersion={quoteattr(immersion)}/>'
        "</Instrument>"
        f'<Image ID="Image:0" Name={quoteattr(path.name)}>'
        f"<AcquisitionDate>{acquired}</AcquisitionDate>"
        '<InstrumentRef ID="Instrument:0"/><ObjectiveSettings ID="Objective:0"/>'
        f'<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="16" SizeY="16"'
        f' SizeZ="{size_z}" SizeC="{size_c}" SizeT="1" PhysicalSizeX="0.1" PhysicalSizeY="0.1">'
        f"{channel_xml}{planes}</Pixels></Image></OME>"
    )
    data = (np.arange(size_c * size_z * 256, dtype=np.uint16) % 4000).reshape(
        size_c * size_z, 16, 16
    )
    with tifffile.TiffWriter(path) as tif:
        for index, plane in enumerate(data):
            tif.write(
                plane,
                description=xml if index == 0 else None,
                metadata=None,
                contiguous=False,
            )
    return path
