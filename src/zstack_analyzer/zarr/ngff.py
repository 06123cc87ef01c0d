"""The NGFF layout of one scene: axes, levels, scales, the ``omero`` block.

Why one module: the writer (:mod:`.writer`) and the virtual store
(:mod:`.virtual`) describe a scene the same way, so a converted file and the
served one open identically in napari or vizarr.

Calibration rule (DESIGN 4): a size the file does not state is never invented.
Such an axis gets scale 1 and no unit, and :func:`scene_layout` reports it in
its warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.zarr.pyramid import chunk_shape_for, level_shapes

if TYPE_CHECKING:
    from collections.abc import Callable

    from zstack_analyzer.metadata import ImageMetadata

__all__ = [
    "AXES",
    "WINDOW_SAMPLE_PLANES",
    "SceneLayout",
    "display_windows",
    "multiscales_attrs",
    "omero_attrs",
    "scene_layout",
    "scene_title",
    "window_planes",
]

#: Planes sampled (evenly along Z, at T = 0) for each channel's display window.
WINDOW_SAMPLE_PLANES = 16

#: Axis order of every array we write or serve.
AXES = ("t", "c", "z", "y", "x")
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


@dataclass(frozen=True)
class SceneLayout:
    """Shapes, chunks and scales of one scene as an NGFF multiscale image.

    ``shape`` is T, C, Z, Y, X of level 0, where C counts RGB samples as
    channels (NGFF has no sample axis). ``scale`` is level 0's scale per axis
    and ``units`` the unit per axis (``None``: unknown, scale 1).
    """

    shape: tuple[int, int, int, int, int]
    dtype: np.dtype[Any]
    samples_per_pixel: int
    levels: list[tuple[int, int]]
    chunk_yx: tuple[int, int]
    scale: tuple[float, float, float, float, float]
    units: tuple[str | None, str | None, str | None, str | None, str | None]
    warnings: list[str] = field(default_factory=list)

    def level_shape(self, level: int) -> tuple[int, int, int, int, int]:
        """T, C, Z, Y, X of ``level``."""
        y, x = self.levels[level]
        t, c, z = self.shape[:3]
        return (t, c, z, y, x)

    def level_chunks(self, level: int) -> tuple[int, int, int, int, int]:
        """Chunk shape of ``level``: one plane deep, the level-0 chunk's Y, X (capped)."""
        y, x = self.levels[level]
        return (1, 1, 1, min(self.chunk_yx[0], y), min(self.chunk_yx[1], x))

    def level_scale(self, level: int) -> list[float]:
        """Scale of ``level``: level 0's, with Y and X times the level's reduction."""
        y0, x0 = self.levels[0]
        y, x = self.levels[level]
        t, c, z, sy, sx = self.scale
        return [t, c, z, sy * (y0 / y), sx * (x0 / x)]


def scene_layout(
    metadata: ImageMetadata, *, file_tile: tuple[int, int] | None = None
) -> SceneLayout:
    """The NGFF layout of the scene ``metadata`` describes.

    Examples
    --------
    >>> from zstack_analyzer.metadata import ImageMetadata, PhysicalSize
    >>> md = ImageMetadata(filename="a.tif", file_format="TIFF", size_x=1024, size_y=1024,
    ...                    dtype="uint16", bit_depth=16, physical_size=PhysicalSize(x_um=0.2, y_um=0.2))
    >>> layout = scene_layout(md)
    >>> layout.levels, layout.units
    ([(1024, 1024), (512, 512)], (None, None, None, 'micrometer', 'micrometer'))
    >>> layout.warnings
    ['z: the file states no voxel size; scale 1 with no unit']
    """
    spp = max(1, metadata.samples_per_pixel)
    shape = (
        metadata.size_t,
        metadata.size_c * spp,
        metadata.size_z,
        metadata.size_y,
        metadata.size_x,
    )
    physical = metadata.physical_size
    warnings: list[str] = []
    scale: list[float] = [1.0, 1.0, 1.0, 1.0, 1.0]
    units: list[str | None] = [None, None, None, None, None]
    for index, name, value, unit, needed in (
        (0, "t", metadata.time_interval_s, "second", metadata.size_t > 1),
        (2, "z", physical.z_um, "micrometer", metadata.size_z > 1),
        (3, "y", physical.y_um, "micrometer", True),
        (4, "x", physical.x_um, "micrometer", True),
    ):
        if value is not None and value != 0 and np.isfinite(value):
            scale[index] = abs(float(value))
            units[index] = unit
        elif needed or name == "z":
            what = "time interval" if name == "t" else "voxel size"
            warnings.append(f"{name}: the file states no {what}; scale 1 with no unit")
    return SceneLayout(
        shape=shape,
        dtype=np.dtype(metadata.dtype),
        samples_per_pixel=spp,
        levels=level_shapes(metadata.size_y, metadata.size_x),
        chunk_yx=chunk_shape_for(metadata.size_y, metadata.size_x, file_tile=file_tile),
        scale=(scale[0], scale[1], scale[2], scale[3], scale[4]),
        units=(units[0], units[1], units[2], units[3], units[4]),
        warnings=warnings,
    )


def scene_title(metadata: ImageMetadata, *, name: str | None = None, scenes: int = 1) -> str:
    """The name of a scene in the OME-Zarr: the file's own, else ``name`` (``#n`` of several).

    ``name`` is the name the user knows the file by (in the service, the one it
    was uploaded or registered under: the stored file is named by a hash);
    ``None`` takes the file's name. ``#n`` is 1-based, as Bio-Formats names
    the unnamed series of a file.

    Examples
    --------
    >>> from zstack_analyzer.metadata import ImageMetadata
    >>> md = ImageMetadata(filename="ab12.czi", file_format="CZI", size_x=8, size_y=8,
    ...                    dtype="uint16", bit_depth=16, scene_index=1)
    >>> scene_title(md, name="cells.czi", scenes=3), scene_title(md)
    ('cells.czi #2', 'ab12.czi')
    """
    if metadata.scene_name:
        return metadata.scene_name
    base = name or metadata.filename
    return f"{base} #{metadata.scene_index + 1}" if scenes > 1 else base


def window_planes(size_z: int, samples: int = WINDOW_SAMPLE_PLANES) -> list[int]:
    """The Z planes a display window is computed from: at most ``samples``, evenly spread.

    Examples
    --------
    >>> window_planes(3), window_planes(10, 4), window_planes(100, 4)
    ([0, 1, 2], [0, 3, 6, 9], [0, 33, 66, 99])
    """
    count = min(size_z, samples)
    return sorted({round(i * (size_z - 1) / max(1, count - 1)) for i in range(count)})


def display_windows(
    layout: SceneLayout, read_plane: Callable[[int, int], np.ndarray]
) -> list[tuple[float, float]]:
    """The 1-99 percentile display window of each channel, as the ``omero`` block gives it.

    ``read_plane(c, z)`` returns plane ``(t=0, c, z)`` of the smallest level.
    Why one function: ``zstack convert`` and the virtual store must give the
    same windows, so a converted file and the served one look the same; and
    why the smallest level: it is at most 512 px a side, so memory stays a few
    planes whatever the file's size.
    """
    from zstack_analyzer.render.colour import percentile_window

    zs = window_planes(layout.shape[2])
    windows = []
    for c in range(layout.shape[1]):
        data = np.stack([np.asarray(read_plane(c, z)) for z in zs])
        windows.append(percentile_window(data))
    return windows


def multiscales_attrs(layout: SceneLayout, *, name: str, version: str) -> dict[str, Any]:
    """The ``multiscales`` entry (one image, its levels named "0", "1", ...).

    ``version`` is written into the entry only for NGFF 0.4 (0.5 puts it in
    the enclosing ``ome`` object).
    """
    axes = []
    for axis, unit in zip(AXES, layout.units, strict=True):
        entry: dict[str, Any] = {"name": axis, "type": _AXIS_TYPES[axis]}
        if unit is not None:
            entry["unit"] = unit
        axes.append(entry)
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [{"type": "scale", "scale": layout.level_scale(level)}],
        }
        for level in range(len(layout.levels))
    ]
    multiscale: dict[str, Any] = {
        "name": name,
        "axes": axes,
        "datasets": datasets,
        "type": "mean",
        "metadata": {"method": "2x2 block mean, rounded up at odd edges"},
    }
    if version == "0.4":
        multiscale = {"version": "0.4", **multiscale}
    return {"multiscales": [multiscale]}


def omero_attrs(
    metadata: ImageMetadata,
    layout: SceneLayout,
    *,
    windows: list[tuple[float, float]] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The ``omero`` rendering block: one entry per (sample) channel, label, colour, window.

    ``windows`` (start, end) per channel default to the full value range the
    data can take (the dtype, or the significant bits the file states);
    ``name`` defaults to :func:`scene_title` of a lone scene.
    """
    from zstack_analyzer.render.colour import channel_colors

    spp = layout.samples_per_pixel
    size_c = layout.shape[1]
    dtype = layout.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        low, high = float(info.min), float(info.max)
        bits = metadata.significant_bits
        if bits and 0 < bits < dtype.itemsize * 8 and info.min == 0:
            high = float(2**bits - 1)
    else:
        low, high = 0.0, 1.0
    names = {ch.index: ch.name for ch in metadata.channels}
    if spp > 1:
        rgb = ("FF0000", "00FF00", "0000FF", "FFFFFF")
        colours = [rgb[i % spp] if spp <= 4 else "FFFFFF" for i in range(size_c)]
        labels = [
            f"{names.get(i // spp) or f'C{i // spp}'} {'RGBA'[i % spp] if spp <= 4 else i % spp}"
            for i in range(size_c)
        ]
    else:
        rgb_floats = channel_colors(list(range(size_c)), metadata=metadata, total=size_c)
        colours = [
            f"{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}"
            for r, g, b in rgb_floats
        ]
        first = metadata.channels[0] if metadata.channels else None
        if size_c == 1 and (first is None or not (first.color or first.emission_nm)):
            colours = ["FFFFFF"]  # one channel and nothing said about it: grey, as napari shows it
        labels = [names.get(i) or f"C{i}" for i in range(size_c)]
    channels = []
    for i in range(size_c):
        start, end = windows[i] if windows is not None and i < len(windows) else (low, high)
        channels.append(
            {
                "label": labels[i],
                "color": colours[i],
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": low, "max": high, "start": float(start), "end": float(end)},
            }
        )
    return {
        "omero": {
            "name": name or scene_title(metadata),
            "version": "0.4",
            "channels": channels,
            "rdefs": {
                "model": "color" if size_c > 1 else "greyscale",
                "defaultT": 0,
                "defaultZ": layout.shape[2] // 2,
            },
        }
    }


def zstack_attrs(metadata: ImageMetadata) -> dict[str, Any]:
    """Our own metadata, with provenance and warnings, under the ``zstack`` key.

    Why beside the NGFF blocks: NGFF keeps only axes, scales and display;
    objective, channels' wavelengths, acquisition time and where each value
    came from would otherwise be lost in the conversion.
    """
    from zstack_analyzer.vendor import json_safe

    dumped = metadata.model_dump(mode="json")
    return {"zstack": {"version": 1, "metadata": json_safe(dumped)}}
