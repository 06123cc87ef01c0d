"""Level-0 pixels of one scene as NGFF sees them: T, C (samples counted as channels), Z, Y, X.

Why a class of its own: the writer and the virtual store both need "the
region y0:y1, x0:x1 of plane (t, c, z)"; for a tiled TIFF only the tiles
under the region are decoded (a deep-zoom tile of a slide must not decode the
whole slide), for every other file the plane is read through the reader.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.budget import charge, reserve
from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError, ZstackError
from zstack_analyzer.readers._base import reserve_plane

if TYPE_CHECKING:
    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._base import ImageReader

__all__ = ["SceneSource"]

logger = logging.getLogger(__name__)


class SceneSource:
    """Regions of the planes of ``scene`` of an open reader, as 2-D Y, X arrays.

    NGFF channel ``c`` of an RGB file is sample ``c % spp`` of the file's
    channel ``c // spp``.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("slide.ome.tif") as reader:  # doctest: +SKIP
    ...     tile = SceneSource(reader, 0).read_region(0, 0, 0, 0, 512, 0, 512)
    """

    def __init__(self, reader: ImageReader, scene: int = 0) -> None:
        self.reader = reader
        self.scene = scene
        self.metadata: ImageMetadata = reader.metadata(scene)
        self.spp = max(1, self.metadata.samples_per_pixel)
        self.dtype = np.dtype(self.metadata.dtype)
        self._tiled: dict[int, Any] = {}
        self._level_shapes: list[tuple[int, int]] | None = None

    # ------------------------------------------------------------------ levels
    def file_level_shapes(self) -> list[tuple[int, int]]:
        """(Y, X) of each resolution level the file itself stores (level 0 first)."""
        if self._level_shapes is None:
            shapes = []
            for level in range(self.reader.level_count(self.scene)):
                shape = self.reader.to_dask(self.scene, level).shape
                shapes.append((int(shape[3]), int(shape[4])))
            self._level_shapes = shapes
        return self._level_shapes

    # ------------------------------------------------------------------ tiles
    def _tiled_plan(self, level: int) -> Any:
        """The TIFF plan when the pages of file ``level`` are tiled and decodable one by one."""
        if level in self._tiled:
            return self._tiled[level]
        self._tiled[level] = None
        plans = getattr(self.reader, "_plans", None)
        if plans is None or getattr(plans[self.scene], "planes_per_slot", 1) != 1:
            return None
        plan = plans[self.scene]
        try:
            page = plan.page(level, plan.locate(0, 0, 0)[0])
        except Exception:  # a broken first page: the plain path reports it
            return None
        if page is None or not getattr(page, "is_tiled", False):
            return None
        keyframe = page.keyframe
        if int(keyframe.imagedepth) != 1 or (self.spp > 1 and int(keyframe.planarconfig) != 1):
            return None
        if tuple(page.shape[:2]) != self.file_level_shapes()[level]:
            return None
        self._tiled[level] = plan
        return plan

    def file_tile(self) -> tuple[int, int] | None:
        """(Y, X) of the file's own tiles, when its level-0 planes are tiled."""
        plan = self._tiled_plan(0)
        if plan is None:
            return None
        keyframe = plan.page(0, plan.locate(0, 0, 0)[0]).keyframe
        return (int(keyframe.tilelength), int(keyframe.tilewidth))

    def _read_tiles(
        self, level: int, t: int, c: int, z: int, y0: int, y1: int, x0: int, x1: int
    ) -> np.ndarray:
        plan = self._tiled_plan(level)
        reader: Any = self.reader
        slot, _ = plan.locate(t, c, z)
        with reader._io_lock:
            page = plan.page(level, slot)
        if page is None:
            return np.zeros((y1 - y0, x1 - x0, self.spp), dtype=self.dtype)
        reader._check_segments(page)
        keyframe = page.keyframe
        tl, tw = int(keyframe.tilelength), int(keyframe.tilewidth)
        columns = math.ceil(int(keyframe.imagewidth) / tw)
        out = np.zeros((y1 - y0, x1 - x0, self.spp), dtype=self.dtype)
        fh = page.parent.filehandle
        tile_bytes = tl * tw * self.spp * self.dtype.itemsize
        what = f"{self.reader.path.name}: a {tl:,} x {tw:,} tile of plane t={t} c={c} z={z}"
        tiles = ((y1 - 1) // tl - y0 // tl + 1) * ((x1 - 1) // tw - x0 // tw + 1)
        charge(max(0, tiles * tile_bytes - out.nbytes), what=what, path=self.reader.path)
        for row in range(y0 // tl, (y1 - 1) // tl + 1):
            for col in range(x0 // tw, (x1 - 1) // tw + 1):
                index = row * columns + col
                offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
                if count == 0:
                    continue
                try:
                    with reserve(tile_bytes, what=what, path=self.reader.path):
                        with reader._io_lock:
                            fh.seek(offset)
                            raw = fh.read(count)
                        tile, _, _ = page.decode(raw, index, jpegtables=keyframe.jpegtables)
                except ZstackError:
                    raise
                except Exception as exc:
                    msg = f"{self.reader.path.name}: cannot decode tile {index} of plane t={t} c={c} z={z}: {exc}"
                    raise CorruptFileError(msg, path=self.reader.path) from exc
                tile = np.asarray(tile).reshape(tl, tw, -1)
                ty, tx = row * tl, col * tw
                sy0, sy1 = max(y0, ty), min(y1, ty + tl)
                sx0, sx1 = max(x0, tx), min(x1, tx + tw)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[
                    sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx
                ]
        return out

    # ------------------------------------------------------------------ API
    def check(self, t: int, c: int, z: int) -> None:
        """Raise :class:`SceneNotFoundError` unless NGFF plane (t, c, z) exists."""
        md = self.metadata
        for axis, value, size in (
            ("t", t, md.size_t),
            ("c", c, md.size_c * self.spp),
            ("z", z, md.size_z),
        ):
            if not 0 <= value < size:
                msg = f"{self.reader.path.name}: {axis}={value} is out of range (0..{size - 1})"
                raise SceneNotFoundError(msg, path=self.reader.path)

    def read_plane_samples(self, t: int, c_file: int, z: int) -> np.ndarray:
        """The file's plane (t, c_file, z) as Y, X, S (S = 1 for grey)."""
        with reserve_plane(self.reader, self.scene):
            plane = self.reader.read_plane(self.scene, t, c_file, z)
        return plane if plane.ndim == 3 else plane[:, :, np.newaxis]

    def read_region(
        self, t: int, c: int, z: int, y0: int, y1: int, x0: int, x1: int, *, level: int = 0
    ) -> np.ndarray:
        """NGFF channel ``c`` of plane (t, z), rows y0:y1 and columns x0:x1, as Y, X.

        ``level`` is one of the file's own resolution levels (0: full size).
        """
        self.check(t, c, z)
        c_file, sample = divmod(c, self.spp)
        ny, nx = (
            self.file_level_shapes()[level]
            if level
            else (self.metadata.size_y, self.metadata.size_x)
        )
        y0, x0 = max(0, y0), max(0, x0)
        y1, x1 = min(ny, y1), min(nx, x1)
        partial = (y1 - y0) * (x1 - x0) < ny * nx
        if self._tiled_plan(level) is not None and partial:
            data = self._read_tiles(level, t, c_file, z, y0, y1, x0, x1)
        elif partial and self.reader.region_grid(self.scene, level) is not None:
            # Strips (or another reader's blocks): decode only what the region touches.
            region = self.reader.read_region(
                self.scene, t, c_file, z, (y0, y1), (x0, x1), level=level
            )
            data = region if region.ndim == 3 else region[:, :, np.newaxis]
        elif level:
            if partial:
                plane_bytes = ny * nx * self.spp * self.dtype.itemsize
                waste = plane_bytes - (y1 - y0) * (x1 - x0) * self.spp * self.dtype.itemsize
                charge(
                    waste, what=f"{self.reader.path.name}: plane t={t} z={z}", path=self.reader.path
                )
            with reserve_plane(self.reader, self.scene, level):
                plane = np.asarray(
                    self.reader.to_dask(self.scene, level)[t, c_file, z].compute(scheduler="sync")
                )
            data = (plane if plane.ndim == 3 else plane[:, :, np.newaxis])[y0:y1, x0:x1]
        else:
            if partial:  # the rest of the plane is decoded for nothing
                plane_bytes = ny * nx * self.spp * self.dtype.itemsize
                waste = plane_bytes - (y1 - y0) * (x1 - x0) * self.spp * self.dtype.itemsize
                charge(
                    waste, what=f"{self.reader.path.name}: plane t={t} z={z}", path=self.reader.path
                )
            data = self.read_plane_samples(t, c_file, z)[y0:y1, x0:x1]
        return np.ascontiguousarray(data[:, :, sample])
