"""Deep-zoom tiles: a window of one pyramid level of one plane, coloured, as a picture.

Why on top of the virtual store: the viewer needs, at any zoom, only the
pixels on screen at screen resolution. The store already has every level
(level 0 from the file's own planes or tiles, lower levels computed once and
cached), so a tile is a region of one level, windowed and composited with the
same colour code as every other picture.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from zstack_analyzer.errors import SceneNotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from zstack_analyzer.zarr.virtual import VirtualOmeZarr

__all__ = ["TILE_PX", "render_tile", "tile_grid"]

#: Side of a deep-zoom tile, in pixels of its level.
TILE_PX = 256


def tile_grid(store: VirtualOmeZarr, scene: int, level: int) -> tuple[int, int]:
    """(rows, columns) of tiles of ``level``."""
    ny, nx = store.layout(scene).levels[level]
    return (math.ceil(ny / TILE_PX), math.ceil(nx / TILE_PX))


def _plane_windows(
    store: VirtualOmeZarr, scene: int, t: int, z: int, channels: Sequence[int]
) -> list[tuple[float, float]]:
    """1-99 percentile window of each NGFF channel on the smallest level (same for every tile)."""
    from zstack_analyzer.render.colour import percentile_window

    layout = store.layout(scene)
    top = len(layout.levels) - 1
    ny, nx = layout.levels[top]
    return [percentile_window(store._region(scene, top, t, c, z, 0, ny, 0, nx)) for c in channels]


def render_tile(
    store: VirtualOmeZarr,
    scene: int,
    level: int,
    row: int,
    column: int,
    *,
    t: int = 0,
    z: int = 0,
    channels: Sequence[int] | None = None,
    colors: Sequence[str] | None = None,
    windows: Sequence[tuple[float, float]] | None = None,
    gamma: float = 1.0,
    image_format: str = "png",
) -> bytes:
    """Encoded picture of tile (``row``, ``column``) of ``level`` of plane (t, z).

    ``channels`` are the file's channels (an RGB file's samples follow their
    channel); ``windows`` default to the plane's percentiles, computed on the
    smallest level so neighbouring tiles match.

    Raises
    ------
    SceneNotFoundError
        For a level, tile, plane or channel that does not exist.
    """
    from PIL import Image

    from zstack_analyzer.render.colour import channel_colors, composite, dtype_window
    from zstack_analyzer.render.encode import encode_image

    try:
        layout = store.layout(scene)
    except KeyError:
        msg = f"{store.reader.path.name}: scene {scene} does not exist"
        raise SceneNotFoundError(msg) from None
    source = store.source(scene)
    metadata = source.metadata
    rows, columns = (
        (0, 0) if not 0 <= level < len(layout.levels) else tile_grid(store, scene, level)
    )
    if not (0 <= row < rows and 0 <= column < columns):
        msg = f"{metadata.filename}: tile {row}/{column} of level {level} does not exist"
        raise SceneNotFoundError(msg)
    source.check(t, 0, z)
    spp = source.spp
    chosen = list(channels) if channels else list(range(min(metadata.size_c, 7)))
    for c in chosen:
        if not 0 <= c < metadata.size_c:
            msg = f"{metadata.filename}: channel {c} is out of range (0..{metadata.size_c - 1})"
            raise SceneNotFoundError(msg)
    ny, nx = layout.levels[level]
    y0, x0 = row * TILE_PX, column * TILE_PX
    y1, x1 = min(ny, y0 + TILE_PX), min(nx, x0 + TILE_PX)
    if spp > 1:
        planes = [
            store._region(scene, level, t, c * spp + s, z, y0, y1, x0, x1)
            for c in chosen[:1]
            for s in range(min(spp, 3))
        ]
        tints = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)][: len(planes)]
        dtype = np.dtype(metadata.dtype)
        window = windows[0] if windows else dtype_window(dtype)
        tile_windows = [window] * len(planes)
    else:
        planes = [store._region(scene, level, t, c, z, y0, y1, x0, x1) for c in chosen]
        tints = channel_colors(chosen, metadata=metadata, colors=colors, total=metadata.size_c)
        tile_windows = list(windows) if windows else _plane_windows(store, scene, t, z, chosen)
    rgb = composite(planes, tints, tile_windows, gamma=gamma)
    return encode_image(Image.fromarray(rgb, mode="RGB"), image_format)
