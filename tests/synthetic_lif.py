"""A minimal Leica LIF writer with several elements, for layouts the corpus lacks.

Why: LAS X files can start with an element that is not an image (an environment
log: temperature and CO2 over time, with a T axis and no X); readers that take
the first element as scene 0 get it wrong. The XML follows the rules liffile reads
(the same layout as the single-image writer in tests/readers/test_lif.py).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

_DIM_IDS = {"X": 1, "Y": 2, "Z": 3, "T": 4}
_UNITS = {"X": "m", "Y": "m", "Z": "m", "T": "s"}
_STEPS = {"X": 0.5e-6, "Y": 0.5e-6, "Z": 2e-6, "T": 60.0}

#: One element: its name, its C-ordered data and its axes ("C" = stored channels).
LifElement = tuple[str, "np.ndarray", str]


def _image_xml(name: str, data: np.ndarray, dims: str, unique_id: int, block: str) -> str:
    strides = dict(zip(dims, data.strides, strict=True))
    shape = dict(zip(dims, data.shape, strict=True))
    channels = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="0" Resolution="{data.dtype.itemsize * 8}" '
        'NameOfMeasuredQuantity="" Min="0" Max="255" Unit="" LUTName="Gray" '
        f'IsLUTInverted="0" BytesInc="{c * strides.get("C", 0)}" BitInc="0"/>'
        for c in range(shape.get("C", 1))
    )
    dimensions = "".join(
        f'<DimensionDescription DimID="{_DIM_IDS[d]}" NumberOfElements="{shape[d]}" '
        f'Origin="0" Length="{_STEPS[d] * (shape[d] - 1)}" Unit="{_UNITS[d]}" '
        f'BitInc="0" BytesInc="{strides[d]}"/>'
        for d in dims
        if d != "C"
    )
    return (
        f'<Element Name="{name}" UniqueID="{unique_id}"><Data><Image><ImageDescription>'
        f"<Channels>{channels}</Channels><Dimensions>{dimensions}</Dimensions>"
        "</ImageDescription></Image></Data>"
        f'<Memory Size="{data.nbytes}" MemoryBlockID="{block}"/><Children/></Element>'
    )


def write_lif_elements(path: Path, elements: list[LifElement]) -> Path:
    """Write ``elements`` (in this order) as the children of one LIF project."""
    children = "".join(
        _image_xml(name, data, dims, index + 2, f"MemBlock_{index + 1}")
        for index, (name, data, dims) in enumerate(elements)
    )
    xml = (
        '<LMSDataContainerHeader Version="2"><Element Name="synthetic" UniqueID="1"><Data>'
        '<Experiment/></Data><Memory Size="0" MemoryBlockID="MemBlock_0"/>'
        f"<Children>{children}</Children></Element></LMSDataContainerHeader>"
    )
    xml_bytes = xml.encode("utf-16-le")
    out = struct.pack("<IIBI", 0x70, len(xml_bytes) + 5, 0x2A, len(xml)) + xml_bytes
    blocks = [("MemBlock_0", b"")] + [
        (f"MemBlock_{i + 1}", data.tobytes()) for i, (_, data, _) in enumerate(elements)
    ]
    for block_id, body in blocks:
        ident = block_id.encode("utf-16-le")
        out += struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(body), 0x2A, len(block_id)) + ident
        out += body
    path.write_bytes(out)
    return path
