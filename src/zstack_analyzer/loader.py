"""Opening files: :func:`open_image` (synchronous) and :class:`ImageLoader` (async facade).

Why two faces: scripts and notebooks want a context manager that closes the
file; the web service wants coroutines that never block its event loop. Both
go through the registry and the same readers, so there is one way to read.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np

from zstack_analyzer._concurrency import LoopLimiters
from zstack_analyzer.errors import LimitExceededError, SceneNotFoundError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.registry import open_reader

if TYPE_CHECKING:
    from pathlib import Path

    import dask.array as da

    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._base import ImageReader
    from zstack_analyzer.storage.remote import RemoteObject

__all__ = ["ImageLoader", "open_image"]


def open_image(
    path: Path | str | RemoteObject, /, *, limits: ReadLimits | None = None
) -> ImageReader:
    """Open a microscopy file; use it as a context manager so the file is closed.

    Parameters
    ----------
    path
        The file. Its format is detected from its content. A
        :class:`~zstack_analyzer.storage.remote.RemoteObject` (an object in an
        S3 bucket) is read in place by ranged GETs when its format allows
        (the TIFF family, zipped OME-Zarr).
    limits
        Read limits; the defaults refuse absurd declared sizes.

    Returns
    -------
    The format's :class:`~zstack_analyzer.readers._base.ImageReader`: ``scenes()``,
    ``metadata(scene)``, ``to_dask(scene)`` (T,C,Z,Y,X(,S)) and ``read_plane(scene, t, c, z)``.

    Examples
    --------
    >>> with open_image("cells.czi") as image:  # doctest: +SKIP
    ...     print(len(image.scenes()), image.metadata(0).physical_size)
    ...     plane = image.read_plane(0, t=0, c=1, z=10)
    """
    return open_reader(path, limits=limits)


def _load_sync(
    path: Path | str, lazy: bool | None, position: int, timepoint: int, limits: ReadLimits
) -> tuple[np.ndarray | da.Array, ImageMetadata]:
    reader = open_reader(path, limits=limits)
    try:
        metadata = reader.metadata(position)
        if not 0 <= timepoint < metadata.size_t:
            msg = f"{reader.path.name}: timepoint {timepoint} is out of range (0..{metadata.size_t - 1})"
            raise SceneNotFoundError(msg, path=reader.path)
        array = reader.to_dask(position)[timepoint]
        if lazy is None:
            lazy = metadata.should_use_lazy_loading()
        if lazy:
            # The graph holds the reader; it closes itself when the array is dropped.
            return array, metadata
        nbytes = math.prod(array.shape) * array.dtype.itemsize
        if nbytes > limits.max_eager_bytes:
            msg = (
                f"{reader.path.name}: loading {nbytes / 1024**3:.1f} GiB into memory is over the "
                f"limit of {limits.max_eager_bytes / 1024**3:.1f} GiB; use lazy=True"
            )
            raise LimitExceededError(msg, path=reader.path)
        data = _materialise(reader, position, timepoint, tuple(array.shape), array.dtype)
    except BaseException:
        reader.close()
        raise
    reader.close()
    return data, metadata


def _materialise(
    reader: ImageReader, scene: int, timepoint: int, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> np.ndarray:
    """Decode every plane of one timepoint into one preallocated C,Z,Y,X(,S) buffer.

    Why not ``to_dask(...).compute()``: that holds every decoded chunk and then
    concatenates them, doubling peak memory and adding a full copy. Here each
    plane is decoded straight into its slot, one plane per core at a time.
    """
    out = np.empty(shape, dtype=dtype)
    slots = list(itertools.product(range(shape[0]), range(shape[1])))

    def fill(slot: tuple[int, int]) -> None:
        c, z = slot
        reader.read_plane_into(scene, timepoint, c, z, out[c, z])

    with ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1, thread_name_prefix="zstack-load"
    ) as pool:
        for _ in pool.map(fill, slots):
            pass
    return out


def _metadata_sync(path: Path | str, scene: int, limits: ReadLimits) -> ImageMetadata:
    with open_reader(path, limits=limits) as reader:
        return reader.metadata(scene)


class ImageLoader:
    """Async facade over the readers: metadata and arrays without blocking the event loop.

    It holds no event-loop state, so one instance serves ``asyncio.run`` after
    ``asyncio.run`` and several loops at once. Blocking work runs in worker
    threads under a capacity limit.

    Parameters
    ----------
    limits
        Read limits applied to every file.
    max_concurrency
        How many files may be read at once in worker threads.

    Examples
    --------
    >>> loader = ImageLoader()
    >>> md = await loader.get_metadata("sample.tif")  # doctest: +SKIP
    >>> data, md = await loader.load_image("sample.tif", lazy=True)  # doctest: +SKIP
    """

    def __init__(self, *, limits: ReadLimits | None = None, max_concurrency: int = 4) -> None:
        self.limits = limits or ReadLimits()
        self.max_concurrency = max_concurrency
        self._limiters = LoopLimiters(max_concurrency)

    def _limiter(self) -> anyio.CapacityLimiter:
        # One limiter per running loop: shared by every call in that loop, so the cap holds.
        return self._limiters.get()

    async def get_metadata(self, file_path: Path | str, scene: int = 0) -> ImageMetadata:
        """Metadata of ``scene`` of ``file_path`` without reading pixel data."""
        return await anyio.to_thread.run_sync(
            _metadata_sync, file_path, scene, self.limits, limiter=self._limiter()
        )

    async def load_image(
        self,
        file_path: Path | str,
        lazy: bool | None = None,
        position: int = 0,
        timepoint: int = 0,
    ) -> tuple[np.ndarray | da.Array, ImageMetadata]:
        """Return ``(array, metadata)`` for scene ``position`` at ``timepoint``.

        The array's axes are C, Z, Y, X (+S for RGB samples). ``lazy=None``
        returns a dask array above 1 GiB and numpy below; ``True``/``False``
        force one or the other (an eager load over ``limits.max_eager_bytes``
        raises :class:`~zstack_analyzer.errors.LimitExceededError`).
        """
        return await anyio.to_thread.run_sync(
            _load_sync, file_path, lazy, position, timepoint, self.limits, limiter=self._limiter()
        )

    def __repr__(self) -> str:
        return f"ImageLoader(limits={self.limits!r})"
