"""Streaming projections and sections of a Z stack in bounded memory.

Why streaming: a stack can be many times larger than the memory a render may
use. A maximum projection therefore reads the stack plane by plane (or chunk by
chunk) into preallocated accumulators with ``np.maximum(acc, plane, out=acc)``;
one pass over Z fills the XY, XZ and YZ projections at once; planes are decoded
ahead on a small thread pool (the decoders release the GIL) while the previous
plane is being maxed. Nothing here ever materialises the whole stack.

Orientation of the views (shared by the service and the viewer): ``xy`` is
rows Y, columns X; ``xz`` is rows Z, columns X; ``yz`` is rows Y, columns Z.
"""

from __future__ import annotations

import abc
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from zstack_analyzer.errors import SceneNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from concurrent.futures import Future

    from zstack_analyzer.readers._base import ImageReader

__all__ = [
    "ArraySource",
    "PlaneSource",
    "ReaderSource",
    "View",
    "block_mean",
    "fit_size",
    "project",
    "read_section",
    "read_slice",
]

View = Literal["xy", "xz", "yz"]


class PlaneSource(abc.ABC):
    """A C, Z, Y, X (+S) stack of one scene and timepoint that can be read block by block.

    Why an abstraction: the library renders arrays handed to it (numpy or dask)
    and the service renders files through a reader's ``read_plane``; both go
    through the same streaming code.
    """

    name: str
    size_c: int
    size_z: int
    size_y: int
    size_x: int
    samples: int  # 0 without an S axis
    dtype: np.dtype[Any]
    #: Whether reading a block costs I/O or decoding worth doing on a thread pool.
    parallel: bool = True
    #: Full-resolution pixels per pixel of this source along Y and X (reduced sources > 1).
    scale_y: float = 1.0
    scale_x: float = 1.0

    @abc.abstractmethod
    def read_block(self, c: int, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` of channel ``c`` as an (n, Y, X(, S)) array."""

    def z_blocks(self) -> list[tuple[int, int]]:
        """How Z is cut into blocks read at once (one plane each unless chunked)."""
        return [(z, z + 1) for z in range(self.size_z)]

    def section_extent(self, plane: Literal["xz", "yz"]) -> int:
        """How many sections ``plane`` has: the rows (xz) or columns (yz) of a plane."""
        return self.size_y if plane == "xz" else self.size_x

    def read_section_lines(
        self, c: int, z0: int, z1: int, plane: Literal["xz", "yz"], index: int
    ) -> np.ndarray:
        """Row Y=``index`` (xz) or column X=``index`` (yz) of planes ``z0:z1``: (n, X|Y(, S))."""
        block = self.read_block(c, z0, z1)
        return block[:, index] if plane == "xz" else block[:, :, index]

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """Shape of one Y, X (, S) plane."""
        base = (self.size_y, self.size_x)
        return (*base, self.samples) if self.samples else base

    def check_channel(self, c: int) -> None:
        """Raise :class:`SceneNotFoundError` unless channel ``c`` exists."""
        if not 0 <= c < self.size_c:
            msg = f"{self.name}: channel {c} is out of range (0..{self.size_c - 1})"
            raise SceneNotFoundError(msg, path=None)

    def check_z(self, z: int) -> None:
        """Raise :class:`SceneNotFoundError` unless plane ``z`` exists."""
        if not 0 <= z < self.size_z:
            msg = f"{self.name}: z={z} is out of range (0..{self.size_z - 1})"
            raise SceneNotFoundError(msg, path=None)


class ArraySource(PlaneSource):
    """A numpy or dask array with axes C, Z, Y, X (+S) (what ``ImageLoader.load_image`` returns).

    Numpy arrays are already in memory and are reduced in one block; dask
    arrays are read one Z chunk at a time; other array-likes (zarr, h5py) one
    plane at a time.

    Examples
    --------
    >>> import numpy as np
    >>> ArraySource(np.zeros((2, 3, 4, 5), np.uint8)).plane_shape
    (4, 5)
    """

    def __init__(self, array: Any, *, name: str = "image", samples: int | None = None) -> None:
        ndim = len(array.shape)
        if ndim not in (4, 5):
            msg = f"{name}: expected axes C, Z, Y, X (+S), got shape {tuple(array.shape)}"
            raise ValueError(msg)
        self.array = array
        self.name = name
        self.size_c, self.size_z, self.size_y, self.size_x = (int(s) for s in array.shape[:4])
        self.samples = int(array.shape[4]) if ndim == 5 else 0
        if samples is not None and samples > 1 and ndim != 5:
            msg = f"{name}: {samples} samples per pixel but no S axis in shape {tuple(array.shape)}"
            raise ValueError(msg)
        self.dtype = np.dtype(array.dtype)
        self.is_numpy = isinstance(array, np.ndarray)
        self.is_dask = hasattr(array, "dask") and hasattr(array, "chunks")
        self.parallel = not self.is_numpy

    def z_blocks(self) -> list[tuple[int, int]]:
        """One block for numpy; the Z chunks for dask."""
        if self.is_numpy:
            return [(0, self.size_z)] if self.size_z else []
        if not self.is_dask:  # zarr, h5py and other lazy arrays: plane by plane
            return super().z_blocks()
        blocks: list[tuple[int, int]] = []
        start = 0
        for size in self.array.chunks[1]:
            blocks.append((start, start + int(size)))
            start += int(size)
        return blocks

    def read_block(self, c: int, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` of channel ``c``; a view for numpy."""
        block = self.array[c, z0:z1]
        if self.is_dask:
            return np.asarray(block.compute(scheduler="sync"))
        return np.asarray(block)


class ReaderSource(PlaneSource):
    """One scene and timepoint of an open reader, read through ``read_plane``.

    Why ``read_plane`` rather than ``to_dask``: a reader's plane fast path skips
    graph construction and scheduling, which matters per plane.

    Parameters
    ----------
    reader
        An open :class:`~zstack_analyzer.readers._base.ImageReader`.
    scene, t
        Which scene and timepoint; validated here.
    level
        Pyramid level (0 = full resolution); other levels are read via ``to_dask``.
    """

    def __init__(self, reader: ImageReader, scene: int = 0, t: int = 0, *, level: int = 0) -> None:
        info = reader.scene_info(scene)
        if not 0 <= t < info.size_t:
            msg = f"{reader.path.name}: t={t} is out of range (0..{info.size_t - 1})"
            raise SceneNotFoundError(msg, path=reader.path)
        self.reader = reader
        self.scene = scene
        self.t = t
        self.level = level
        self.name = reader.path.name
        self.size_c, self.size_z = info.size_c, info.size_z
        self.size_y, self.size_x = info.size_y, info.size_x
        self.samples = info.samples_per_pixel if info.samples_per_pixel > 1 else 0
        self.dtype = np.dtype(info.dtype)
        self._level_array: Any = None
        if level:
            levels = reader.level_count(scene)
            if not 0 <= level < levels:
                msg = f"{reader.path.name}: pyramid level {level} does not exist; it has {levels}"
                raise SceneNotFoundError(msg, path=reader.path)
            self._level_array = reader.to_dask(scene, level)
            self.size_y, self.size_x = (int(s) for s in self._level_array.shape[3:5])

    def read_block(self, c: int, z0: int, z1: int) -> np.ndarray:
        """Planes ``z0:z1`` of channel ``c`` (one plane per call in practice)."""
        from zstack_analyzer.readers._base import reserve_plane

        if self._level_array is not None:
            with reserve_plane(self.reader, self.scene, self.level):
                return np.asarray(
                    self._level_array[self.t, c, z0:z1].compute(scheduler="sync"),
                )
        planes = []
        for z in range(z0, z1):
            with reserve_plane(self.reader, self.scene):
                planes.append(self.reader.read_plane(self.scene, self.t, c, z))
        if len(planes) == 1:
            return planes[0][np.newaxis]
        return np.stack(planes)

    def check_channel(self, c: int) -> None:
        """Raise :class:`SceneNotFoundError` (naming the file) unless channel ``c`` exists."""
        if not 0 <= c < self.size_c:
            msg = f"{self.name}: channel {c} is out of range (0..{self.size_c - 1})"
            raise SceneNotFoundError(msg, path=self.reader.path)

    def check_z(self, z: int) -> None:
        """Raise :class:`SceneNotFoundError` (naming the file) unless plane ``z`` exists."""
        if not 0 <= z < self.size_z:
            msg = f"{self.name}: z={z} is out of range (0..{self.size_z - 1})"
            raise SceneNotFoundError(msg, path=self.reader.path)


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


#: A block read faster than this is memory-bound (uncompressed, cached): threads add nothing.
PREFETCH_THRESHOLD_S = 0.004


def iter_blocks(
    source: PlaneSource,
    channels: Sequence[int],
    *,
    workers: int | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(channel, z0, block)`` for every Z block of every channel, in order.

    The first block is read in the caller's thread and timed. If it was slow
    (decoding, not copying), the rest are read ahead on a pool of ``workers``
    threads (default: the cores) so decoding block k+1 overlaps the caller's
    work on block k; at most ``workers + 1`` blocks are in flight, which bounds
    memory. Uncompressed planes from the page cache are read in line: there
    threads only add overhead.
    """
    jobs = [(c, z0, z1) for c in channels for z0, z1 in source.z_blocks()]
    if not jobs:
        return
    workers = _default_workers() if workers is None else max(1, workers)
    c, z0, z1 = jobs[0]
    started = time.perf_counter()
    first = source.read_block(c, z0, z1)
    elapsed = time.perf_counter() - started
    yield c, z0, first
    del first
    rest = jobs[1:]
    if not source.parallel or workers == 1 or len(rest) <= 1 or elapsed < PREFETCH_THRESHOLD_S:
        for c, z0, z1 in rest:
            yield c, z0, source.read_block(c, z0, z1)
        return
    depth = workers + 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zstack-read") as pool:
        pending: deque[tuple[int, int, Future[np.ndarray]]] = deque()
        todo = iter(rest)
        try:
            for c, z0, z1 in todo:
                # Each read runs in a copy of this context: its decodes count in this
                # request's decode scope (zstack_analyzer.budget), and stop when it is cancelled.
                pending.append(
                    (c, z0, pool.submit(copy_context().run, source.read_block, c, z0, z1))
                )
                if len(pending) >= depth:
                    break
            while pending:
                c, z0, future = pending.popleft()
                block = future.result()
                for c_next, z0_next, z1_next in todo:
                    read = source.read_block
                    pending.append(
                        (
                            c_next,
                            z0_next,
                            pool.submit(copy_context().run, read, c_next, z0_next, z1_next),
                        )
                    )
                    break
                yield c, z0, block
                del block
        finally:
            for _, _, future in pending:
                future.cancel()


def project(
    source: PlaneSource,
    channels: Sequence[int],
    views: Sequence[View] = ("xy",),
    *,
    workers: int | None = None,
    observe: Callable[[int, int, np.ndarray], None] | None = None,
) -> dict[View, list[np.ndarray]]:
    """Maximum projections of ``channels`` onto each of ``views``, in one pass over Z.

    Returns, per view, one array per channel (in the order of ``channels``):
    ``xy`` (Y, X), the projection along Z; ``xz`` (Z, X), along Y; ``yz``
    (Y, Z), along X; each with a trailing S axis for RGB data. The values are
    exactly those of ``stack.max(axis=...)``. ``observe(c, z0, block)``, when
    given, sees every block read (the quality measures ride on this pass, so
    no plane is read twice).

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)
    >>> project(ArraySource(stack), [0], ["xz"])["xz"][0].tolist()
    [[8, 9, 10, 11], [20, 21, 22, 23]]
    """
    for c in channels:
        source.check_channel(c)
    if source.size_z == 0:
        msg = f"{source.name}: the stack has no Z planes"
        raise SceneNotFoundError(msg, path=None)
    tail = (source.samples,) if source.samples else ()
    wanted = set(views)
    xy: dict[int, np.ndarray] = {}
    xz = {
        c: np.empty((source.size_z, source.size_x, *tail), source.dtype)
        for c in channels
        if "xz" in wanted
    }
    yz = {
        c: np.empty((source.size_y, source.size_z, *tail), source.dtype)
        for c in channels
        if "yz" in wanted
    }
    unique = list(dict.fromkeys(channels))
    for c, z0, block in iter_blocks(source, unique, workers=workers):
        n = block.shape[0]
        if observe is not None:
            observe(c, z0, block)
        if "xy" in wanted:
            acc = xy.get(c)
            if n == 1:
                if acc is None:
                    xy[c] = np.array(block[0], copy=True)
                else:
                    np.maximum(acc, block[0], out=acc)
            else:
                top = block.max(axis=0)
                if acc is None:
                    xy[c] = top
                else:
                    np.maximum(acc, top, out=acc)
        if "xz" in wanted:
            xz[c][z0 : z0 + n] = block.max(axis=1)
        if "yz" in wanted:
            yz[c][:, z0 : z0 + n] = np.swapaxes(block.max(axis=2), 0, 1)
    result: dict[View, list[np.ndarray]] = {}
    if "xy" in wanted:
        result["xy"] = [xy[c] for c in channels]
    if "xz" in wanted:
        result["xz"] = [xz[c] for c in channels]
    if "yz" in wanted:
        result["yz"] = [yz[c] for c in channels]
    return result


def read_slice(source: PlaneSource, channels: Sequence[int], z: int) -> list[np.ndarray]:
    """The XY plane ``z`` of each of ``channels``; reads only those planes."""
    source.check_z(z)
    for c in channels:
        source.check_channel(c)
    # The first plane is read in line and timed; the others go to threads only when
    # decoding (not copying) dominates, as for compressed planes.
    started = time.perf_counter()
    blocks = [source.read_block(channels[0], z, z + 1)]
    slow = time.perf_counter() - started >= PREFETCH_THRESHOLD_S
    rest = list(channels[1:])
    if len(rest) > 1 and source.parallel and slow:
        workers = min(len(rest), _default_workers())
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zstack-read") as pool:
            blocks += list(pool.map(lambda c: source.read_block(c, z, z + 1), rest))
    else:
        blocks += [source.read_block(c, z, z + 1) for c in rest]
    return [block[0] for block in blocks]


def read_section(
    source: PlaneSource,
    channels: Sequence[int],
    plane: Literal["xz", "yz"],
    index: int,
    *,
    workers: int | None = None,
) -> list[np.ndarray]:
    """The XZ section at Y=``index`` (rows Z, columns X) or YZ at X=``index`` (rows Y, columns Z)."""
    if plane not in ("xz", "yz"):
        msg = f"{source.name}: section plane {plane!r} is not 'xz' or 'yz'"
        raise ValueError(msg)
    limit = source.section_extent(plane)
    if not 0 <= index < limit:
        axis = "y" if plane == "xz" else "x"
        msg = f"{source.name}: section {plane} at {axis}={index} is out of range (0..{limit - 1})"
        raise SceneNotFoundError(msg, path=None)
    for c in channels:
        source.check_channel(c)
    tail = (source.samples,) if source.samples else ()
    shape = (
        (source.size_z, source.size_x, *tail)
        if plane == "xz"
        else (source.size_y, source.size_z, *tail)
    )
    out = {c: np.empty(shape, source.dtype) for c in channels}
    lines = _SectionLines(source, plane, index)
    for c, z0, block in iter_blocks(lines, list(out), workers=workers):
        n = block.shape[0]
        if plane == "xz":
            out[c][z0 : z0 + n] = block
        else:
            out[c][:, z0 : z0 + n] = np.swapaxes(block, 0, 1)
    return [out[c] for c in channels]


class _SectionLines(PlaneSource):
    """The one row (or column) of each plane a section needs, as blocks for :func:`iter_blocks`."""

    def __init__(self, source: PlaneSource, plane: Literal["xz", "yz"], index: int) -> None:
        self.source = source
        self.plane: Literal["xz", "yz"] = plane
        self.index = index
        self.name = source.name
        self.size_c, self.size_z = source.size_c, source.size_z
        self.size_y, self.size_x = source.size_y, source.size_x
        self.samples = source.samples
        self.dtype = source.dtype
        self.parallel = source.parallel

    def z_blocks(self) -> list[tuple[int, int]]:
        """The source's own Z blocks."""
        return self.source.z_blocks()

    def read_block(self, c: int, z0: int, z1: int) -> np.ndarray:
        """The section line of planes ``z0:z1``."""
        return self.source.read_section_lines(c, z0, z1, self.plane, self.index)


def block_mean(data: np.ndarray, factor_y: int, factor_x: int) -> np.ndarray:
    """Downsample a Y, X (, S) array by integer factors, averaging each block, as float32.

    Why block-mean: it is cheap, antialiases, and averages a hot pixel away
    before the percentile window sees it. Edge rows/columns that do not fill a
    whole block are dropped.

    Examples
    --------
    >>> import numpy as np
    >>> block_mean(np.arange(16, dtype=np.uint8).reshape(4, 4), 2, 2).tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    factor_y, factor_x = max(1, int(factor_y)), max(1, int(factor_x))
    if factor_y == 1 and factor_x == 1:
        return np.asarray(data, dtype=np.float32)
    height, width = data.shape[0] // factor_y, data.shape[1] // factor_x
    height, width = max(1, height), max(1, width)
    factor_y, factor_x = min(factor_y, data.shape[0]), min(factor_x, data.shape[1])
    cropped = data[: height * factor_y, : width * factor_x]
    tail = data.shape[2:]
    # Add whole rows first (contiguous, vectorised), then the columns of the small result;
    # explicit slice additions beat a reduction over a strided axis several times over.
    # Small integers sum exactly (and faster) in 32-bit integers.
    acc_dtype: type[np.generic] = np.float32
    if data.dtype.kind in "ub" and data.dtype.itemsize <= 2 and factor_y * factor_x <= 65536:
        acc_dtype = np.uint32
    elif data.dtype.kind == "i" and data.dtype.itemsize <= 2 and factor_y * factor_x <= 65536:
        acc_dtype = np.int32
    rows = cropped.reshape(height, factor_y, width * factor_x, *tail)
    acc = rows[:, 0].astype(acc_dtype)
    for i in range(1, factor_y):
        acc += rows[:, i]
    cols = acc.reshape(height, width, factor_x, *tail)
    out = cols[:, :, 0].copy()
    for j in range(1, factor_x):
        out += cols[:, :, j]
    result = out.astype(np.float32)
    result *= np.float32(1.0 / (factor_y * factor_x))
    return result


def fit_size(
    height: int,
    width: int,
    box: tuple[int, int],
    *,
    pixel_height: float = 1.0,
    pixel_width: float = 1.0,
) -> tuple[int, int]:
    """Output ``(width, height)`` of a ``height`` x ``width`` image fitted into ``box`` (w, h).

    The physical aspect ratio (``pixel_height`` / ``pixel_width``, the size of
    one pixel along each axis) is kept; the result touches the box on one side.

    Examples
    --------
    >>> fit_size(10, 100, (256, 256), pixel_height=2.0)
    (256, 51)
    """
    box_w, box_h = max(1, int(box[0])), max(1, int(box[1]))
    phys_h = max(1, height) * pixel_height
    phys_w = max(1, width) * pixel_width
    scale = min(box_w / phys_w, box_h / phys_h)
    out_w = min(box_w, max(1, round(phys_w * scale)))
    out_h = min(box_h, max(1, round(phys_h * scale)))
    return out_w, out_h
