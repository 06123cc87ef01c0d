"""``OME/METADATA.ome.xml`` of a bioformats2raw collection: one ``Image`` per series.

Why we write it even for files that have no OME-XML of their own: clients of
the bioformats2raw layout find the series through it (napari-ome-zarr lists
the ``Image`` elements and opens group ``N`` for ``ID="Image:N"``), so a
collection without it shows nothing there. It describes what the collection
serves (samples as channels, as in the NGFF arrays), not the original file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # writing only; parsing goes through defusedxml
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from zstack_analyzer.zarr.ngff import SceneLayout

__all__ = ["OME_NAMESPACE", "SeriesInfo", "collection_ome_xml"]

OME_NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_PIXEL_TYPES = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
    "bool": "bit",
}

#: One series: its name, its layout, and the label of each of its channels.
SeriesInfo = tuple[str, "SceneLayout", "Sequence[str]"]


def collection_ome_xml(series: Sequence[SeriesInfo]) -> str:
    """The OME-XML listing ``series`` (index ``i`` is ``Image:i``, the group ``i``).

    Examples
    --------
    >>> from zstack_analyzer.metadata import ImageMetadata
    >>> from zstack_analyzer.zarr.ngff import scene_layout
    >>> md = ImageMetadata(filename="a.tif", file_format="TIFF", size_x=64, size_y=32,
    ...                    dtype="uint16", bit_depth=16)
    >>> xml = collection_ome_xml([("cells", scene_layout(md), ["DAPI"])])
    >>> 'ID="Image:0" Name="cells"' in xml, 'Type="uint16"' in xml
    (True, True)
    """
    ET.register_namespace("", OME_NAMESPACE)
    ns = f"{{{OME_NAMESPACE}}}"
    root = ET.Element(f"{ns}OME", {"Creator": "zstack-analyzer"})
    for index, (name, layout, labels) in enumerate(series):
        image = ET.SubElement(root, f"{ns}Image", {"ID": f"Image:{index}", "Name": name})
        t, c, z, y, x = layout.shape
        dtype = layout.dtype.name
        attributes = {
            "ID": f"Pixels:{index}",
            "DimensionOrder": "XYZCT",
            "Type": _PIXEL_TYPES.get(dtype, dtype),
            "SizeX": str(x),
            "SizeY": str(y),
            "SizeZ": str(z),
            "SizeC": str(c),
            "SizeT": str(t),
            "BigEndian": "false",
        }
        for axis, attribute in ((4, "PhysicalSizeX"), (3, "PhysicalSizeY"), (2, "PhysicalSizeZ")):
            if layout.units[axis] == "micrometer":
                attributes[attribute] = repr(layout.scale[axis])
                attributes[f"{attribute}Unit"] = "µm"
        if layout.units[0] == "second":
            attributes["TimeIncrement"] = repr(layout.scale[0])
            attributes["TimeIncrementUnit"] = "s"
        pixels = ET.SubElement(image, f"{ns}Pixels", attributes)
        for channel in range(c):
            label = labels[channel] if channel < len(labels) else f"C{channel}"
            ET.SubElement(
                pixels,
                f"{ns}Channel",
                {"ID": f"Channel:{index}:{channel}", "Name": label, "SamplesPerPixel": "1"},
            )
        ET.SubElement(pixels, f"{ns}MetadataOnly")
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
