"""Synthetic CZI files written with pylibCZIrw, with the canonical arrays they must read as.

Pixel values come from :mod:`tests.synthetic` (position-encoded), so a reader
that swaps axes, scenes or tiles fails an exact comparison.

Scaling: the CZI format stores ``Scaling/Items/Distance/Value`` in metres.
pylibCZIrw's ``write_metadata(scale_x=...)`` documents µm but writes the number
verbatim, so these factories pass metres (``0.5 µm -> 5e-7``), as ZEN writes.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import numpy as np

from tests.synthetic import encoded_stack

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

UM = 1e-6  # metres per micrometre


def _metres(value_um: float | None) -> float:
    return 0.0 if value_um is None else value_um * UM


def write_czi_stack(
    path: Path,
    *,
    t: int = 1,
    c: int = 1,
    z: int = 1,
    y: int = 24,
    x: int = 32,
    dtype: str = "uint16",
    voxel_um: tuple[float | None, float | None, float | None] = (None, None, None),
    channel_names: Sequence[str] | None = None,
    compression: str | None = None,
) -> np.ndarray:
    """One scene, T x C x Z planes of position-encoded pixels; returns the canonical array."""
    from pylibCZIrw import czi as pyczi

    expected = encoded_stack(t, c, z, y, x, dtype)
    with pyczi.create_czi(str(path), compression_options=compression) as writer:
        for ti in range(t):
            for ci in range(c):
                for zi in range(z):
                    writer.write(expected[ti, ci, zi], plane={"T": ti, "C": ci, "Z": zi})
        writer.write_metadata(
            channel_names=dict(enumerate(channel_names or [])),
            scale_x=_metres(voxel_um[0]),
            scale_y=_metres(voxel_um[1]),
            scale_z=_metres(voxel_um[2]),
        )
    return expected


def write_czi_scenes(
    path: Path,
    scenes: Sequence[tuple[int, int, tuple[int, int]]],
    *,
    t: int = 1,
    c: int = 1,
    z: int = 1,
    s_indices: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Several scenes of different sizes: each ``(height, width, (x, y) location)``.

    Scene ``s`` holds ``encoded_stack`` values plus ``s * 20`` (uint16), so a
    reader that mixes scenes up fails too. Returns one canonical array per scene.
    ``s_indices`` gives the S index of each scene (default 0, 1, 2...; gaps allowed).
    """
    from pylibCZIrw import czi as pyczi

    expected = []
    with pyczi.create_czi(str(path)) as writer:
        for s, (height, width, location) in enumerate(scenes):
            stack = encoded_stack(t, c, z, height, width) + np.uint16(s * 20)
            expected.append(stack)
            for ti in range(t):
                for ci in range(c):
                    for zi in range(z):
                        writer.write(
                            stack[ti, ci, zi],
                            plane={"T": ti, "C": ci, "Z": zi},
                            scene=s if s_indices is None else s_indices[s],
                            location=location,
                        )
        writer.write_metadata(scale_x=0.25 * UM, scale_y=0.25 * UM, scale_z=1.0 * UM)
    return expected


def write_czi_mosaic(
    path: Path,
    *,
    tile: tuple[int, int] = (20, 30),
    grid: tuple[int, int] = (2, 2),
    skip: Sequence[int] = (),
    with_scene: bool = True,
    c: int = 1,
) -> np.ndarray:
    """Tiles (M index) on a grid in one scene, stitched by libCZI; returns the stitched array.

    Tile ``k`` (row-major) holds the position-encoded values of the whole
    canvas at its place, plus ``k`` so neighbours differ. Tiles in ``skip`` are
    not written: their area must read as 0. ``with_scene=False`` writes no S
    index at all (through pylibCZIrw's native writer, as ZEN black's tiles.czi).
    """
    from pylibCZIrw import czi as pyczi

    rows, cols = grid
    height, width = tile
    canvas = encoded_stack(1, c, 1, rows * height, cols * width)
    expected = np.zeros_like(canvas)
    with pyczi.create_czi(str(path)) as writer:
        for k in range(rows * cols):
            if k in skip:
                continue
            row, col = divmod(k, cols)
            area = np.s_[row * height : (row + 1) * height, col * width : (col + 1) * width]
            for ci in range(c):
                data = canvas[0, ci, 0][area] + np.uint16(k)
                expected[0, ci, 0][area] = data
                if with_scene:
                    writer.write(data, plane={"C": ci}, location=(col * width, row * height))
                else:
                    image = pyczi.CziWriter._format_data(np.ascontiguousarray(data))
                    assert writer._czi_writer.AddTile(
                        f"T0 Z0 C{ci}", image, col * width, row * height, k, str(uuid.uuid4())
                    )
        writer.write_metadata(channel_names={0: "Tiles"})
    return expected


def write_czi_rgb(path: Path, *, y: int = 16, x: int = 20, dtype: str = "uint8") -> np.ndarray:
    """A Bgr24 (uint8) or Bgr48 (uint16) plane: stored B,G,R; canonical S is R,G,B (reversed)."""
    from pylibCZIrw import czi as pyczi

    yy, xx = np.mgrid[0:y, 0:x]
    stored_bgr = np.stack([(3 * yy + xx) % 256, (yy * 7) % 256, (xx * 11) % 256], axis=-1)
    scale = 257 if dtype == "uint16" else 1
    stored_bgr = (stored_bgr * scale).astype(dtype)
    with pyczi.create_czi(str(path)) as writer:
        writer.write(stored_bgr)
        writer.write_metadata(scale_x=1.5 * UM, scale_y=1.5 * UM)
    return stored_bgr[np.newaxis, np.newaxis, np.newaxis, :, :, ::-1]


def write_czi_extra_dim(path: Path, *, axis: str = "H", size: int = 3, z: int = 2) -> np.ndarray:
    """Planes along a vendor axis (H, I, R, V, B) beside Z; returns the index-0 canonical array.

    pylibCZIrw's ``write`` only takes T, C, Z, S, so this goes through its native writer.
    """
    from pylibCZIrw import czi as pyczi

    stacks = [encoded_stack(1, 1, z, 10, 12) + np.uint16(100 * k) for k in range(size)]
    with pyczi.create_czi(str(path)) as writer:
        for k, stack in enumerate(stacks):
            for zi in range(z):
                image = pyczi.CziWriter._format_data(np.ascontiguousarray(stack[0, 0, zi]))
                assert writer._czi_writer.AddTile(
                    f"T0 Z{zi} C0 {axis}{k} S0", image, 0, 0, 0, str(uuid.uuid4())
                )
        writer.write_metadata()
    return stacks[0]


def replace_czi_xml(path: Path, xml: str) -> None:
    """Replace a CZI's metadata XML (pylibCZIrw's editor), to test the XML mapping."""
    from pylibCZIrw import czi as pyczi

    with pyczi.edit_czi(str(path)) as editor, editor.edit_session() as builder:
        builder.set_xml(xml)


def rich_czi_xml(
    *,
    size_c: int = 2,
    scene_names: Sequence[str] = ("First", "Second"),
    decoy_scaling: bool = True,
    acquired: str = "2021-06-15T08:09:43.0304818+02:00",
) -> str:
    """A ZEN-like XML with every element the reader maps, plus decoys it must ignore.

    ``decoy_scaling`` adds a second ``<Scaling>`` (inside Experiment, 9 µm), which
    sends the reader down its whole-document parse; without it the reader parses
    just the Information and Scaling fragments.
    """
    decoy = (
        '<Experiment><Scaling><Items><Distance Id="X"><Value>9E-06</Value></Distance>'
        "</Items></Scaling></Experiment>"
        if decoy_scaling
        else "<Experiment><RunMode>Normal</RunMode></Experiment>"
    )
    channels = "".join(
        f"""<Channel Id="Channel:{i}" Name="{name}">
              <ExcitationWavelength>{ex}</ExcitationWavelength>
              <EmissionWavelength>{em}</EmissionWavelength>
              <Color>{colour}</Color>
              <Fluor>{fluor}</Fluor>
              <ExposureTime>{exposure}</ExposureTime>
              <IlluminationType>Epifluorescence</IlluminationType>
              <ContrastMethod>Fluorescence</ContrastMethod>
              <ComponentBitCount>12</ComponentBitCount>
            </Channel>"""
        for i, (name, ex, em, colour, fluor, exposure) in enumerate(
            [
                ("DAPI", 353, 465, "#FF00A1FF", "DAPI", 2_000_000),
                ("GFP", 493, 517, "#FF00FF33", "Alexa Fluor 488", 150_000_000),
            ][:size_c]
        )
    )
    scenes = "".join(
        f'<Scene Index="{i}" Name="{name}"><CenterPosition>0,0</CenterPosition></Scene>'
        for i, name in enumerate(scene_names)
    )
    return f"""<?xml version="1.0"?>
<ImageDocument>
 <Metadata>
  {decoy}
  <Information>
   <Application><Name>ZEN (blue edition)</Name><Version>3.7.97.00000</Version></Application>
   <Image>
    <AcquisitionDateAndTime>{acquired}</AcquisitionDateAndTime>
    <ComponentBitCount>12</ComponentBitCount>
    <ObjectiveSettings><ObjectiveRef Id="Objective:1" /></ObjectiveSettings>
    <MicroscopeRef Id="Microscope:1" />
    <Dimensions>
     <Channels>{channels}</Channels>
     <S><Scenes>{scenes}</Scenes></S>
     <T><Positions><List><Offsets>0 30 60</Offsets></List></Positions></T>
    </Dimensions>
   </Image>
   <Instrument>
    <Microscopes>
     <Microscope Id="Microscope:1" Name="Axio Observer.Z1 / 7">
      <Manufacturer><Manufacturer>Carl Zeiss</Manufacturer><SerialNumber>SN-42</SerialNumber></Manufacturer>
     </Microscope>
    </Microscopes>
    <Objectives>
     <Objective Id="Objective:0" Name="Decoy 5x/0.1"><NominalMagnification>5</NominalMagnification></Objective>
     <Objective Id="Objective:1" Name="Plan-Apochromat 63x/1.40 Oil">
      <LensNA>1.4</LensNA>
      <NominalMagnification>63</NominalMagnification>
      <Immersion>Oil</Immersion>
     </Objective>
    </Objectives>
   </Instrument>
   <Processing><PSF><OriginalScaling><Items><Distance Id="Z"><Value>2E-07</Value></Distance></Items></OriginalScaling></PSF></Processing>
  </Information>
  <Scaling>
   <Items>
    <Distance Id="X"><Value>1.6E-07</Value><DefaultUnitFormat>µm</DefaultUnitFormat></Distance>
    <Distance Id="Y"><Value>1.6E-07</Value><DefaultUnitFormat>µm</DefaultUnitFormat></Distance>
    <Distance Id="Z"><Value>5E-07</Value><DefaultUnitFormat>µm</DefaultUnitFormat></Distance>
   </Items>
  </Scaling>
 </Metadata>
</ImageDocument>
"""
