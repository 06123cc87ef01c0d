"""Pyramid levels in 2x XY steps, and the 2x reduction that makes each from the one above.

Why 2x XY only (Z, C, T kept): every NGFF viewer expects XY halving, and a
level that keeps Z lets each plane's pyramid be computed from that plane alone,
which is what bounds memory in the writer and in the virtual store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_TOP_LEVEL_PX", "chunk_shape_for", "downsample2x", "level_shapes"]

#: The smallest level is at most this many pixels along Y and X.
MAX_TOP_LEVEL_PX = 512
#: A plane up to this many pixels on a side is one chunk; a larger one is cut in tiles.
MAX_PLANE_CHUNK_PX = 4096
#: Tile side for large planes whose file has no tiles of its own.
DEFAULT_TILE_PX = 1024


def level_shapes(size_y: int, size_x: int, *, top: int = MAX_TOP_LEVEL_PX) -> list[tuple[int, int]]:
    """(Y, X) of every level: full size first, then halved (rounded up) until both fit ``top``.

    Examples
    --------
    >>> level_shapes(2048, 1500)
    [(2048, 1500), (1024, 750), (512, 375)]
    >>> level_shapes(300, 200)
    [(300, 200)]
    """
    shapes = [(max(1, int(size_y)), max(1, int(size_x)))]
    while max(shapes[-1]) > top:
        y, x = shapes[-1]
        shapes.append(((y + 1) // 2, (x + 1) // 2))
    return shapes


def chunk_shape_for(
    size_y: int, size_x: int, *, file_tile: tuple[int, int] | None = None
) -> tuple[int, int]:
    """(Y, X) chunk of level 0: the whole plane, or the file's tiles for a large plane.

    Why: a chunk that is the file's own plane or tile is decoded once and
    written (or served) as is; a huge plane as one chunk would defeat deep
    zoom and bounded memory.

    Examples
    --------
    >>> chunk_shape_for(2048, 2048)
    (2048, 2048)
    >>> chunk_shape_for(8192, 8192, file_tile=(512, 512))
    (512, 512)
    >>> chunk_shape_for(8192, 8192)
    (1024, 1024)
    """
    if max(size_y, size_x) <= MAX_PLANE_CHUNK_PX:
        return (max(1, size_y), max(1, size_x))
    if file_tile is not None and min(file_tile) >= 64:
        return (min(file_tile[0], size_y), min(file_tile[1], size_x))
    return (min(DEFAULT_TILE_PX, size_y), min(DEFAULT_TILE_PX, size_x))


def downsample2x(plane: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Halve a Y, X plane by 2x2 block means, rounding sizes up, in the input dtype.

    An odd last row or column is averaged with itself (edge replication), so
    the level's size is ``ceil(n / 2)`` as :func:`level_shapes` says and no
    edge pixel is lost.

    Examples
    --------
    >>> downsample2x(np.array([[0, 2, 4], [2, 4, 6]], dtype=np.uint8)).tolist()
    [[2, 5]]
    """
    from zstack_analyzer.render.projection import block_mean

    height, width = plane.shape[:2]
    if height % 2 or width % 2:
        plane = np.pad(plane, ((0, height % 2), (0, width % 2)), mode="edge")
    reduced = block_mean(plane, 2, 2)
    if np.issubdtype(plane.dtype, np.integer):
        np.rint(reduced, out=reduced)
        info = np.iinfo(plane.dtype)
        np.clip(reduced, info.min, info.max, out=reduced)
    return reduced.astype(plane.dtype, copy=False)
