"""The bioio reader plugin: our readers behind bioio's ``BioImage``.

Why: analysts open files with ``bioio.BioImage`` in notebooks; with this plugin
they get our readers' results (stitched CZI scenes, LIF XZ scans, LIF files
whose first element is not an image, OME companions...) without leaving bioio.
Usage, explicitly::

    from bioio import BioImage
    import zstack_analyzer.bioio

    img = BioImage("cells.czi", reader=zstack_analyzer.bioio.Reader)

or through bioio's plugin discovery: the distribution registers this module in
the ``bioio.readers`` entry-point group (bioio loads the entry point and takes
its ``ReaderMetadata``). bioio names the distribution after the entry point and
checks its ``bioio-base`` requirement, so the entry point is called
``zstack-analyzer``. Among several plugins for one extension bioio tries the
most specific first; ours claims many extensions, so an installed bioio-czi
still wins for ``.czi`` unless ``reader=`` names ours.

Mapping to bioio's conventions
------------------------------
- Dimensions: our canonical T, C, Z, Y, X (+S for RGB samples) *is* bioio's
  ``TCZYX`` / ``TCZYXS``; no reordering. Mosaics are already stitched (no M).
- Scenes: one per scene of our reader, in file order; the id is the scene's
  name when every scene has a distinct one, else ``Image:<index>``.
- Resolution levels: the pyramid levels of the scene; physical sizes of a lower
  level are scaled by the level's downsampling.
- ``metadata`` is our :class:`~zstack_analyzer.metadata.ImageMetadata` of the
  current scene; ``ome_metadata`` an ``ome_types.OME`` built from those records.
- ``channel_names``: the file's names; a channel without one gets bioio's OME
  channel id ``Channel:<scene>:<c>`` (bioio's own convention), while our record
  keeps ``None``.
- ``physical_pixel_sizes`` are in µm, ``None`` where the file does not say; a
  negative Z step (a stack taken downwards) keeps its sign there.

This module imports bioio-base at import time: install the ``bioio`` extra.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import xarray as xr
from bioio_base import constants, exceptions
from bioio_base.dimensions import DEFAULT_DIMENSION_ORDER, DimensionNames
from bioio_base.io import pathlike_to_fs
from bioio_base.reader import Reader as BaseReader
from bioio_base.reader_metadata import ReaderMetadata as BaseReaderMetadata
from bioio_base.types import PhysicalPixelSizes, TimeInterval
from fsspec.implementations.local import LocalFileSystem

from zstack_analyzer.errors import LimitExceededError, UnsupportedFormatError
from zstack_analyzer.registry import detect_reader, known_suffixes, open_reader

if TYPE_CHECKING:
    import dask.array as da
    from bioio_base.standard_metadata import StandardMetadata
    from fsspec.spec import AbstractFileSystem
    from ome_types import OME

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._base import ImageReader

__all__ = ["Reader", "ReaderMetadata"]

_SAMPLES_ORDER = DEFAULT_DIMENSION_ORDER + DimensionNames.Samples
#: The plugin's name: bioio's reader NAME, and the distribution named by the entry point.
_NAME = "zstack-analyzer"
_ONLY_PATHS = "this reader reads file paths only"
_ONLY_LOCAL = "this reader reads local files only"


def _local_path(fs: Any, path: str) -> Path | None:
    """``path`` as a local file when ``fs`` is the local filesystem; ``None`` otherwise."""
    if isinstance(fs, LocalFileSystem):
        return Path(path)
    return None


class Reader(BaseReader):
    """bioio ``Reader`` over zstack-analyzer's readers (every format the library reads).

    Parameters
    ----------
    image
        A local file path (str or :class:`~pathlib.Path`). Remote fsspec URLs
        are not read by this plugin (our readers take local files).
    fs_kwargs
        Passed to fsspec by bioio's conventions; only the local filesystem is used.
    limits
        Our read limits (declared sizes, eager loads); the defaults apply otherwise.

    Raises
    ------
    bioio_base.exceptions.UnsupportedFileFormatError
        When no reader of ours claims the file (bioio then tries another plugin).
    zstack_analyzer.errors.ImageLoadError
        When the file is ours but corrupt, over a limit, or needs a missing package.

    Examples
    --------
    >>> from bioio import BioImage  # doctest: +SKIP
    >>> img = BioImage("cells.czi", reader=Reader)  # doctest: +SKIP
    >>> img.dims, img.physical_pixel_sizes, img.channel_names  # doctest: +SKIP
    """

    NAME: ClassVar[str | None] = _NAME

    @staticmethod
    def _is_supported_image(fs: AbstractFileSystem, path: str, **kwargs: Any) -> bool:
        """Whether one of our readers claims the file by its content (headers only)."""
        local = _local_path(fs, path)
        if local is None:
            return False
        try:
            detect_reader(local)
        except (UnsupportedFormatError, OSError):
            return False
        except ValueError:  # e.g. an empty file: ours to refuse, not to claim
            return False
        return True

    def __init__(
        self,
        image: Any,
        fs_kwargs: dict[str, Any] | None = None,
        *,
        limits: ReadLimits | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(image, str | Path):
            raise exceptions.UnsupportedFileFormatError(_NAME, str(type(image)), _ONLY_PATHS)
        self._fs, self._path = pathlike_to_fs(image, enforce_exists=True, fs_kwargs=fs_kwargs or {})
        local = _local_path(self._fs, self._path)
        if local is None:
            raise exceptions.UnsupportedFileFormatError(_NAME, str(image), _ONLY_LOCAL)
        try:
            self._reader: ImageReader = open_reader(local, limits=limits)
        except UnsupportedFormatError as exc:
            raise exceptions.UnsupportedFileFormatError(_NAME, str(image), str(exc)) from exc
        self._records: dict[int, ImageMetadata] = {}

    # ------------------------------------------------------------------ scenes
    @property
    def scenes(self) -> tuple[str, ...]:
        """Scene ids in file order: the scene names when all are present and distinct."""
        if self._scenes is None:
            infos = self._reader.scenes()
            names = [info.name for info in infos]
            if all(names) and len(set(names)) == len(names):
                self._scenes = tuple(str(n) for n in names)
            else:
                self._scenes = tuple(f"Image:{info.index}" for info in infos)
        return self._scenes

    @property
    def resolution_levels(self) -> tuple[int, ...]:
        """Pyramid levels of the current scene, full resolution first."""
        return tuple(range(self._reader.level_count(self.current_scene_index)))

    def record(self, scene: int | None = None) -> ImageMetadata:
        """Our metadata record of ``scene`` (the current scene by default), read once."""
        index = self.current_scene_index if scene is None else scene
        if index not in self._records:
            self._records[index] = self._reader.metadata(index)
        return self._records[index]

    # -------------------------------------------------------------------- data
    def _dims_order(self) -> list[str]:
        info = self._reader.scene_info(self.current_scene_index)
        return list(_SAMPLES_ORDER if info.samples_per_pixel > 1 else DEFAULT_DIMENSION_ORDER)

    def _coords(self, shape: tuple[int, ...]) -> dict[str, Any]:
        coords: dict[str, Any] = {DimensionNames.Channel: self._channel_ids()}
        sizes = self.physical_pixel_sizes
        for axis, step, n in (
            (DimensionNames.SpatialZ, sizes.Z, shape[2]),
            (DimensionNames.SpatialY, sizes.Y, shape[3]),
            (DimensionNames.SpatialX, sizes.X, shape[4]),
        ):
            if step is not None:
                coords[axis] = self._generate_coord_array(0, n, step)
        interval = self.time_interval
        if interval is not None:
            coords[DimensionNames.Time] = self._generate_coord_array(
                0, shape[0], interval.total_seconds()
            )
        return coords

    def _wrap(self, data: da.Array | np.ndarray) -> xr.DataArray:
        return xr.DataArray(
            data,
            dims=self._dims_order(),
            coords=self._coords(tuple(data.shape)),
            attrs={
                constants.METADATA_PROCESSED: self.record(),
                constants.METADATA_UNPROCESSED: self._reader.raw_metadata(),
            },
        )

    def _level_array(self) -> da.Array:
        return self._reader.to_dask(self.current_scene_index, self.current_resolution_level)

    def _read_delayed(self) -> xr.DataArray:
        """Lazy array of the current scene and level: one dask chunk per plane."""
        return self._wrap(self._level_array())

    def _read_immediate(self) -> xr.DataArray:
        """The whole scene in memory, each plane decoded straight into its slot.

        Why not ``dask_data.compute()``: that holds every chunk and then copies
        them into one array, doubling peak memory. Refused over the eager limit.
        """
        lazy = self._level_array()
        shape = tuple(int(s) for s in lazy.shape)
        nbytes = math.prod(shape) * lazy.dtype.itemsize
        limit = self._reader.limits.max_eager_bytes
        if nbytes > limit:
            msg = (
                f"{self._reader.path.name}: loading {nbytes / 1024**3:.1f} GiB into memory is "
                f"over the limit of {limit / 1024**3:.1f} GiB; use dask_data"
            )
            raise LimitExceededError(msg, path=self._reader.path)
        out = np.empty(shape, dtype=lazy.dtype)
        scene, level = self.current_scene_index, self.current_resolution_level

        def fill(index: tuple[int, int, int]) -> None:
            t, c, z = index
            if level == 0:
                self._reader.read_plane_into(scene, t, c, z, out[t, c, z])
            else:
                out[t, c, z] = lazy[t, c, z].compute(scheduler="sync")

        planes = itertools.product(*(range(n) for n in shape[:3]))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for _ in pool.map(fill, planes):
                pass
        return self._wrap(out)

    def _read_indexed(self, given_dims: str, dim_specs: list[Any]) -> np.ndarray:
        """Read only what ``dim_specs`` select (bioio's default reads the whole scene).

        Why: ``get_image_data("YX", T=0, C=0, Z=0)`` should decode one plane.
        Each axis is indexed in turn, since dask takes one list index at a time.
        """
        if self._xarray_data is not None:
            return np.asarray(self._xarray_data.data[tuple(dim_specs)])
        array = self.dask_data
        axis = 0
        for spec in dim_specs:
            array = array[(slice(None),) * axis + (spec,)]
            if not isinstance(spec, int | np.integer):
                axis += 1
        return np.asarray(array.compute())

    # ---------------------------------------------------------------- metadata
    @property
    def metadata(self) -> ImageMetadata:
        """Our :class:`~zstack_analyzer.metadata.ImageMetadata` record of the current scene."""
        return self.record()

    @property
    def ome_metadata(self) -> OME:
        """Every scene of the file as OME (``ome_types.OME``), built from our records."""
        from zstack_analyzer.ome_record import records_to_ome

        return records_to_ome([self.record(i) for i in range(len(self.scenes))])

    def _channel_ids(self) -> list[str]:
        record = self.record()
        names: list[str | None] = [None] * record.size_c
        for channel in record.channels:
            if 0 <= channel.index < record.size_c:
                names[channel.index] = channel.name
        return [
            name if name is not None else f"Channel:{self.current_scene_index}:{c}"
            for c, name in enumerate(names)
        ]

    @property
    def channel_names(self) -> list[str]:
        """One name per C: the file's, else bioio's OME id ``Channel:<scene>:<c>``."""
        return self._channel_ids()

    @property
    def physical_pixel_sizes(self) -> PhysicalPixelSizes:
        """Z, Y, X voxel size in µm of the current level; ``None`` where the file is silent."""
        size = self.record().physical_size
        y, x = size.y_um, size.x_um
        level = self.current_resolution_level
        if level:
            record = self.record()
            shape = self._level_array().shape
            if y is not None:
                y *= record.size_y / int(shape[3])
            if x is not None:
                x *= record.size_x / int(shape[4])
        return PhysicalPixelSizes(size.z_um, y, x)

    @property
    def time_interval(self) -> TimeInterval:
        """Time between T points, where the file states it."""
        seconds = self.record().time_interval_s
        return None if seconds is None else timedelta(seconds=seconds)

    @property
    def standard_metadata(self) -> StandardMetadata:
        """The summary bioio builds, with the T interval from our record where OME planes give none.

        Why: bioio derives the interval from per-plane ``DeltaT``, which we do not
        invent; the file's stated interval is the better answer than ``None``.
        """
        summary = super().standard_metadata
        if summary.timelapse_interval is None and self.record().size_t > 1:
            summary.timelapse_interval = self.time_interval
        return summary

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Close the underlying file; safe to call twice."""
        self._reader.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReaderMetadata(BaseReaderMetadata):
    """What bioio's plugin discovery reads from the ``bioio.readers`` entry point."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        """Every extension one of our readers claims (content still decides)."""
        return sorted(s.lstrip(".") for s in known_suffixes())

    @staticmethod
    def get_reader() -> type[Reader]:  # type: ignore[override]  # bioio-base annotates an instance
        """The reader class."""
        return Reader
