"""Planes too large to hold, read region by region and reduced while they are read.

Why: a 1 MB zlib-tiled TIFF can declare a 30720 x 30720 plane (900 MiB
decoded). Rendering a 65 px thumbnail of it must not decode that plane at once.
:class:`ReducedSource` wraps a reader's plane source: it reads each plane in
regions aligned to the file's stored tiles or strips (``reader.region_grid`` /
``reader.read_region``) and folds each region into a small accumulator, by
block mean (slices, sections) or block maximum (projections: the maximum of
block maxima over Z is exactly the block maximum of the projection). Memory is
one region plus the reduced plane, whatever the plane size. A plane over
``ReadLimits.max_render_plane_bytes`` that cannot be read so is refused with
:class:`~zstack_analyzer.errors.LimitExceededError`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from zstack_analyzer.errors import LimitExceededError
from zstack_analyzer.render.projection import PlaneSource, ReaderSource

if TYPE_CHECKING:
    from zstack_analyzer.limits import ReadLimits

__all__ = [
    "REGION_BYTES",
    "WHOLE_PLANE_BYTES",
    "ReducedSource",
    "bounded_source",
    "plane_bytes",
]

#: Planes up to this size are read whole (the fast path of every reader).
WHOLE_PLANE_BYTES = 64 * 1024**2
#: Target size of one region read while reducing a larger plane.
REGION_BYTES = 16 * 1024**2

Mode = Literal["mean", "max"]


def plane_bytes(source: PlaneSource) -> int:
    """Decoded size of one plane of ``source``."""
    return source.size_y * source.size_x * max(1, source.samples) * source.dtype.itemsize


def _groups(start: int, stop: int, factor: int) -> tuple[np.ndarray, int]:
    """Offsets (relative to ``start``) where reduction groups begin, and the first group."""
    first = -(-start // factor) * factor
    bounds = np.arange(first, stop, factor, dtype=np.intp)
    if bounds.size == 0 or bounds[0] != start:
        bounds = np.concatenate((np.array([start], dtype=np.intp), bounds))
    return bounds - start, start // factor


class ReducedSource(PlaneSource):
    """A reader's stack with each plane reduced by ``factor_y`` x ``factor_x``, in bounded memory.

    Parameters
    ----------
    base
        The full-resolution source (one scene, timepoint and pyramid level).
    factor_y, factor_x
        Reduction factors; edge groups that do not fill a block are kept.
    mode
        ``"mean"`` (block average, for slices) or ``"max"`` (block maximum, for
        projections).
    limits
        ``max_render_plane_bytes`` caps one stored block (tile or strip).
    region_bytes
        Target size of one region read.

    Raises
    ------
    LimitExceededError
        When the reader cannot read regions, or one stored block is over the limit.
    """

    def __init__(
        self,
        base: ReaderSource,
        factor_y: int,
        factor_x: int,
        *,
        mode: Mode,
        limits: ReadLimits,
        region_bytes: int = REGION_BYTES,
    ) -> None:
        reader = base.reader
        self.base = base
        self.name = base.name
        self.size_c, self.size_z = base.size_c, base.size_z
        self.full_y, self.full_x = base.size_y, base.size_x
        self.samples = base.samples
        self.dtype = base.dtype
        self.mode: Mode = mode
        self.factor_y = max(1, min(int(factor_y), self.full_y))
        self.factor_x = max(1, min(int(factor_x), self.full_x))
        self.size_y = -(-self.full_y // self.factor_y)
        self.size_x = -(-self.full_x // self.factor_x)
        self.scale_y = float(self.factor_y)
        self.scale_x = float(self.factor_x)
        grid = reader.region_grid(base.scene, base.level)
        whole = plane_bytes(base)
        if grid is None:
            msg = (
                f"{self.name}: one plane of {self.full_y:,} x {self.full_x:,} pixels needs "
                f"{whole / 1024**2:,.0f} MiB and this file can only be decoded a whole plane at "
                f"a time; the render limit is {limits.max_render_plane_bytes / 1024**2:,.0f} MiB"
            )
            raise LimitExceededError(msg, path=reader.path)
        block_h, block_w = max(1, grid[0]), max(1, grid[1])
        pixel = max(1, self.samples) * self.dtype.itemsize
        block = block_h * block_w * pixel
        if block > limits.max_render_plane_bytes:
            msg = (
                f"{self.name}: one stored block of {block_h:,} x {block_w:,} pixels needs "
                f"{block / 1024**2:,.0f} MiB to decode, over the render limit of "
                f"{limits.max_render_plane_bytes / 1024**2:,.0f} MiB"
            )
            raise LimitExceededError(msg, path=reader.path)
        row_bytes = self.full_x * pixel
        if block_h * row_bytes <= region_bytes:
            self._band_rows = block_h * max(1, region_bytes // (block_h * row_bytes))
            self._band_cols = self.full_x
        else:
            self._band_rows = block_h
            self._band_cols = min(self.full_x, block_w * max(1, region_bytes // block))
        self._grid = (block_h, block_w)

    # ------------------------------------------------------------- reading
    def _regions(
        self, rows: tuple[int, int], cols: tuple[int, int]
    ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Regions covering ``rows`` x ``cols``, aligned to the stored blocks."""
        block_h, block_w = self._grid
        band_h = self._band_rows
        band_w = self._band_cols if cols == (0, self.full_x) else max(block_w, self._band_cols)
        out = []
        y = (rows[0] // block_h) * block_h
        while y < rows[1]:
            y_end = min(rows[1], y + band_h)
            x = (cols[0] // block_w) * block_w
            while x < cols[1]:
                x_end = min(cols[1], x + band_w)
                out.append(((max(y, rows[0]), y_end), (max(x, cols[0]), x_end)))
                x = x_end
            y = y_end
        return out

    def _read(self, c: int, z: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        base = self.base
        return base.reader.read_region(base.scene, base.t, c, z, rows, cols, level=base.level)

    def _accumulator(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.mode == "max":
            if self.dtype.kind == "f":
                return np.full(shape, -np.inf, dtype=self.dtype)
            if self.dtype.kind == "b":
                return np.zeros(shape, dtype=self.dtype)
            return np.full(shape, np.iinfo(self.dtype).min, dtype=self.dtype)
        return np.zeros(shape, dtype=self._sum_dtype())

    def _sum_dtype(self) -> type[np.floating[Any]]:
        # float32 sums are exact below 2**24: enough for 16-bit data over 256-pixel blocks.
        peak = 2**16 if self.dtype.itemsize <= 2 and self.dtype.kind in "uib" else 2**53
        return np.float32 if self.factor_y * self.factor_x * peak < 2**24 else np.float64

    @staticmethod
    def _fold(
        acc: np.ndarray,
        data: np.ndarray,
        origin: tuple[int, int],
        factors: tuple[int, int],
        mode: Mode,
    ) -> None:
        """Reduce ``data`` (placed at ``origin`` of the full plane) into ``acc``."""
        ys, gy = _groups(origin[0], origin[0] + data.shape[0], factors[0])
        xs, gx = _groups(origin[1], origin[1] + data.shape[1], factors[1])
        if mode == "max":
            part = np.maximum.reduceat(np.maximum.reduceat(data, ys, axis=0), xs, axis=1)
            view = acc[gy : gy + part.shape[0], gx : gx + part.shape[1]]
            np.maximum(view, part, out=view)
        else:
            total = acc.dtype
            part = np.add.reduceat(np.add.reduceat(data, ys, axis=0, dtype=total), xs, axis=1)
            acc[gy : gy + part.shape[0], gx : gx + part.shape[1]] += part

    def _finish(
        self, acc: np.ndarray, full: tuple[int, int], factors: tuple[int, int], mode: Mode
    ) -> np.ndarray:
        if mode == "mean":
            counts_y = np.minimum(factors[0], full[0] - np.arange(acc.shape[0]) * factors[0])
            counts_x = np.minimum(factors[1], full[1] - np.arange(acc.shape[1]) * factors[1])
            counts = np.outer(counts_y, counts_x).astype(acc.dtype)
            acc /= counts[..., np.newaxis] if acc.ndim == 3 else counts
            if self.dtype.kind in "uib":
                np.rint(acc, out=acc)
        return acc.astype(self.dtype, copy=False)

    def reduce_plane(self, c: int, z: int) -> np.ndarray:
        """Plane ``z`` of channel ``c``, reduced; reads one region at a time."""
        tail = (self.samples,) if self.samples else ()
        acc = self._accumulator((self.size_y, self.size_x, *tail))
        factors = (self.factor_y, self.factor_x)
        for rows, cols in self._regions((0, self.full_y), (0, self.full_x)):
            self._fold(acc, self._read(c, z, rows, cols), (rows[0], cols[0]), factors, self.mode)
        return self._finish(acc, (self.full_y, self.full_x), factors, self.mode)

    def read_block(self, c: int, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` of channel ``c``, each reduced."""
        return np.stack([self.reduce_plane(c, z) for z in range(z0, z1)])

    # ------------------------------------------------------------- sections
    def section_extent(self, plane: Literal["xz", "yz"]) -> int:
        """Sections are addressed in full-resolution pixels."""
        return self.full_y if plane == "xz" else self.full_x

    def read_section_lines(
        self, c: int, z0: int, z1: int, plane: Literal["xz", "yz"], index: int
    ) -> np.ndarray:
        """Row Y=``index`` (xz) or column X=``index`` (yz) of planes ``z0:z1``, block-averaged.

        Only the stored blocks holding that row or column are read, so a section
        of a huge plane costs one band of blocks per plane.
        """
        lines = []
        tail = (self.samples,) if self.samples else ()
        for z in range(z0, z1):
            if plane == "xz":
                acc = np.zeros((1, self.size_x, *tail), dtype=self._sum_dtype())
                factors = (1, self.factor_x)
                for rows, cols in self._regions((index, index + 1), (0, self.full_x)):
                    self._fold(acc, self._read(c, z, rows, cols), (0, cols[0]), factors, "mean")
                line = self._finish(acc, (1, self.full_x), factors, "mean")[0]
            else:
                acc = np.zeros((self.size_y, 1, *tail), dtype=self._sum_dtype())
                factors = (self.factor_y, 1)
                for rows, cols in self._regions((0, self.full_y), (index, index + 1)):
                    self._fold(acc, self._read(c, z, rows, cols), (rows[0], 0), factors, "mean")
                line = self._finish(acc, (self.full_y, 1), factors, "mean")[:, 0]
            lines.append(line)
        return np.stack(lines)


def bounded_source(
    source: ReaderSource,
    factors: tuple[int, int],
    *,
    mode: Mode,
    limits: ReadLimits,
) -> PlaneSource:
    """``source`` itself when its planes are small, else a :class:`ReducedSource`.

    Planes up to :data:`WHOLE_PLANE_BYTES` (and ``limits.max_render_plane_bytes``)
    are read whole (every reader's fast path). Larger planes are read by region when the reader can, reduced by
    ``factors``; a reader that cannot still reads planes whole up to
    ``limits.max_render_plane_bytes`` and is refused above it.
    """
    size = plane_bytes(source)
    if size <= min(WHOLE_PLANE_BYTES, limits.max_render_plane_bytes):
        return source
    reader = source.reader
    if reader.region_grid(source.scene, source.level) is None and (
        size <= limits.max_render_plane_bytes
    ):
        return source
    factor_y, factor_x = (max(1, int(f)) for f in factors)
    if math.prod((factor_y, factor_x)) == 1 and size <= limits.max_render_plane_bytes:
        return source
    return ReducedSource(source, factor_y, factor_x, mode=mode, limits=limits)
