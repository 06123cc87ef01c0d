"""One scene of an open reader as napari layer data: lazy, multiscale, one layer per channel.

Why plain ``(data, kwargs, "image")`` tuples and no napari import: napari's
reader protocol takes exactly these, and building them needs only the
library, so the same function serves the npe2 reader and scripts.

Rules (issue 26, DESIGN 4):

- data are the reader's own lazy arrays, ``to_dask(scene, level)`` for every
  pyramid level the file stores (a list of levels when there are several), so
  napari reads only the planes and levels it shows;
- ``channel_axis`` splits C into one layer per channel, named after the
  file's channel (``C0``... when it names none), coloured by
  :func:`~zstack_analyzer.render.colour.channel_colors` (the file's colour, its
  emission wavelength, else defaults), with a 1-99 % contrast window computed
  like the OME-Zarr's ``omero`` block, from a reduced plane (bounded memory);
- ``scale`` T, Z, Y, X from the metadata in s and µm; an axis the file does not
  calibrate gets 1 and unit ``pixel`` (never an invented size);
- RGB(A) 8-bit samples stay one ``rgb`` layer; other sample counts become
  channels, as in the OME-Zarr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.zarr.ngff import scene_layout, scene_title, window_planes

if TYPE_CHECKING:
    import dask.array as da

    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._base import ImageReader
    from zstack_analyzer.zarr.ngff import SceneLayout

__all__ = [
    "WINDOW_MAX_SIDE",
    "LayerData",
    "channel_labels",
    "colormap_of",
    "hex_colors",
    "scene_layers",
    "scene_windows",
]

#: napari's LayerData: (data, layer keyword arguments, layer type).
LayerData = tuple[Any, dict[str, Any], str]

#: Planes a window is computed from are reduced to at most this many pixels a side.
WINDOW_MAX_SIDE = 512


def _is_rgb(metadata: ImageMetadata) -> bool:
    """8-bit RGB or RGBA samples: shown as colour by napari itself (no window, no colormap)."""
    return metadata.samples_per_pixel in (3, 4) and np.dtype(metadata.dtype) == np.uint8


def _levels(reader: ImageReader, scene: int) -> list[da.Array]:
    """Every pyramid level the file stores, level 0 first (T, C, Z, Y, X(, S))."""
    return [reader.to_dask(scene, level) for level in range(reader.level_count(scene))]


def _samples_as_channels(array: da.Array) -> da.Array:
    """T, C, Z, Y, X, S to T, C*S, Z, Y, X (channel ``c`` is sample ``c % S`` of ``c // S``)."""
    import dask.array as da

    t, c, z, y, x, s = array.shape
    moved = da.moveaxis(array, 5, 2)  # T, C, S, Z, Y, X
    return moved.reshape((t, c * s, z, y, x))


def channel_labels(metadata: ImageMetadata, layout: SceneLayout) -> list[str]:
    """Layer names per (sample) channel, as the OME-Zarr's ``omero`` labels."""
    names = {ch.index: ch.name for ch in metadata.channels}
    spp = layout.samples_per_pixel
    size_c = layout.shape[1]
    if spp > 1:
        return [
            f"{names.get(i // spp) or f'C{i // spp}'} {'RGBA'[i % spp] if spp <= 4 else i % spp}"
            for i in range(size_c)
        ]
    return [names.get(i) or f"C{i}" for i in range(size_c)]


def hex_colors(metadata: ImageMetadata, layout: SceneLayout) -> list[str]:
    """``#RRGGBB`` per (sample) channel: the ``omero`` colours of the same scene."""
    from zstack_analyzer.zarr.ngff import omero_attrs

    omero = omero_attrs(metadata, layout)["omero"]
    return [f"#{channel['color']}" for channel in omero["channels"]]


def _reduced_plane_reader(
    reader: ImageReader, scene: int, metadata: ImageMetadata, levels: list[da.Array]
) -> Any:
    """``read(c, z)``: plane (t=0, c, z) at most about :data:`WINDOW_MAX_SIDE` px a side.

    From the smallest stored level when the file has a pyramid; otherwise the
    full plane, read region by region and block-averaged when it is too large to
    read whole (:func:`~zstack_analyzer.render.reduce.bounded_source`), so memory
    stays bounded whatever the file.
    """
    spp = max(1, metadata.samples_per_pixel)
    if len(levels) > 1:
        top = levels[-1]

        def read_level(c: int, z: int) -> np.ndarray:
            plane = np.asarray(top[0, c // spp, z].compute(scheduler="sync"))
            return plane[..., c % spp] if spp > 1 else plane

        return read_level
    from zstack_analyzer.render.projection import ReaderSource
    from zstack_analyzer.render.reduce import bounded_source

    full = ReaderSource(reader, scene, 0)
    side = max(metadata.size_y, metadata.size_x)
    step = max(1, -(-side // WINDOW_MAX_SIDE))
    source = bounded_source(full, (step, step), mode="mean", limits=reader.limits)

    def read_source(c: int, z: int) -> np.ndarray:
        plane = np.asarray(source.read_block(c // spp, z, z + 1)[0])
        plane = plane[..., c % spp] if spp > 1 else plane
        ys = max(1, plane.shape[0] // WINDOW_MAX_SIDE)
        xs = max(1, plane.shape[1] // WINDOW_MAX_SIDE)
        return plane[::ys, ::xs]

    return read_source


def scene_windows(
    reader: ImageReader, scene: int = 0, *, levels: list[da.Array] | None = None
) -> list[tuple[float, float]]:
    """The 1-99 % window of each (sample) channel of ``scene``, from reduced planes.

    The planes are those of the OME-Zarr's windows
    (:func:`~zstack_analyzer.zarr.ngff.window_planes`: at most 16 Z planes at
    T = 0), so a file looks the same in napari as its served OME-Zarr.
    """
    from zstack_analyzer.render.colour import percentile_window

    metadata = reader.metadata(scene)
    layout = scene_layout(metadata)
    read = _reduced_plane_reader(reader, scene, metadata, levels or _levels(reader, scene))
    zs = window_planes(layout.shape[2])
    windows = []
    for c in range(layout.shape[1]):
        data = np.stack([read(c, z) for z in zs])
        windows.append(percentile_window(data))
    return windows


def scene_layers(
    reader: ImageReader,
    scene: int = 0,
    *,
    prefix: str | None = None,
    visible: bool = True,
) -> list[LayerData]:
    """The layer data of ``scene``: one image layer per channel (napari splits ``channel_axis``).

    ``prefix`` starts every layer name (``"scene: channel"``), so the scenes of
    one file can sit side by side; ``visible`` is the layers' initial visibility.
    """
    metadata = reader.metadata(scene)
    layout = scene_layout(metadata)
    levels = _levels(reader, scene)
    scale = [layout.scale[0], layout.scale[2], layout.scale[3], layout.scale[4]]
    units = [u or "pixel" for u in (layout.units[0], *layout.units[2:])]
    title = scene_title(metadata, scenes=len(reader.scenes()))
    meta: dict[str, Any] = {
        "path": str(reader.path),
        "format": metadata.file_format,
        "scene": scene,
        "scene_name": title,
        "warnings": [*layout.warnings, *metadata.warnings],
    }
    common: dict[str, Any] = {
        "scale": scale,
        "units": units,
        "axis_labels": ["t", "z", "y", "x"],
        "metadata": meta,
        "visible": visible,
        "multiscale": len(levels) > 1,
    }
    data: Any = levels if len(levels) > 1 else levels[0]
    if _is_rgb(metadata):
        names = [f"{prefix}: {n}" if prefix else n for n in _rgb_names(metadata)]
        kwargs = {**common, "rgb": True, "channel_axis": 1, "name": names}
        return [(data, kwargs, "image")]
    # The windows read the file's own levels (samples last), before samples become channels.
    windows = scene_windows(reader, scene, levels=levels)
    if metadata.samples_per_pixel > 1:
        levels = [_samples_as_channels(level) for level in levels]
        data = levels if len(levels) > 1 else levels[0]
    labels = channel_labels(metadata, layout)
    names = [f"{prefix}: {label}" if prefix else label for label in labels]
    colours = hex_colors(metadata, layout)
    kwargs = {
        **common,
        "channel_axis": 1,
        "name": names,
        "colormap": [colormap_of(colour) for colour in colours],
        "contrast_limits": [list(window) for window in windows],
        "blending": "additive" if len(names) > 1 else "translucent",
    }
    return [(data, kwargs, "image")]


def _rgb_names(metadata: ImageMetadata) -> list[str]:
    names = {ch.index: ch.name for ch in metadata.channels}
    return [names.get(i) or f"C{i}" for i in range(metadata.size_c)]


def colormap_of(colour: str) -> dict[str, Any]:
    """A black-to-``colour`` linear colormap as napari's ``ensure_colormap`` takes a dict.

    Named after the colour, so that napari reuses one colormap per colour.
    """
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return {
        "name": f"zstack-{colour[1:].lower()}",
        "colors": [[0.0, 0.0, 0.0, 1.0], [r, g, b, 1.0]],
    }
