"""The reader protocol every format implements, and the per-plane dask builder.

Why an ABC rather than duck typing: the registry, the loader, the renderers and
the contract test all rely on the same small surface (sniff, scenes, metadata,
to_dask, read_plane, close), and a missing method should fail at class
definition, not in a user's request.
"""

from __future__ import annotations

import abc
import itertools
import math
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError
from zstack_analyzer.limits import ReadLimits, check_declared_size
from zstack_analyzer.storage.remote import RemoteObject

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from contextlib import AbstractContextManager as ContextManager
    from types import TracebackType

    import dask.array as da

    from zstack_analyzer.filesets import FileSet
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo

__all__ = ["ImageReader", "owned", "plane_count", "planes_to_dask"]

_token_counter = itertools.count()


def owned(array: np.ndarray) -> np.ndarray:
    """``array`` when it is writable, else a writable copy of it.

    Why: a plane a reader returns is the caller's to change (``plane -= background``).
    ``np.frombuffer`` over the ``bytes`` a file or worker gave is a read-only view;
    copying only then keeps the common path (an array already made) free of a copy.
    """
    return array if array.flags.writeable else array.copy()


class _PlaneBlock:
    """Picklable ``map_blocks`` callback: the block at (t, c, z) is one plane."""

    def __init__(self, read: Callable[[int, int, int], np.ndarray]) -> None:
        self.read = read

    def __call__(self, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        assert block_id is not None  # noqa: S101  (dask always passes it)
        t, c, z = block_id[:3]
        return self.read(t, c, z)[np.newaxis, np.newaxis, np.newaxis]


def planes_to_dask(
    read: Callable[[int, int, int], np.ndarray],
    shape: Sequence[int],
    dtype: np.dtype[Any] | str,
    *,
    name: str,
) -> da.Array:
    """Build a lazy T,C,Z,Y,X(,S) dask array with one chunk per plane.

    Why ``map_blocks`` with no inputs: it makes a single blockwise graph layer
    whose keys are never enumerated, so building the array costs microseconds
    whatever the plane count (a dict of ten million (t, c, z) keys would take
    seconds and gigabytes), and slicing one plane computes only that plane.

    Parameters
    ----------
    read
        ``read(t, c, z)`` returns one plane, shape Y, X (, S), of ``dtype``.
    shape
        Canonical shape, 5-D or 6-D (with S).
    dtype
        Element type of every plane.
    name
        Prefix of the graph keys; made unique here.
    """
    from zstack_analyzer._dask_import import dask_array

    dask_array()  # the process's first import of dask.array, without xarray and scipy
    import dask.array as da

    shape = tuple(int(s) for s in shape)
    size_t, size_c, size_z = shape[:3]
    chunks = ((1,) * size_t, (1,) * size_c, (1,) * size_z, *((s,) for s in shape[3:]))
    dtype = np.dtype(dtype)
    return da.map_blocks(
        _PlaneBlock(read),
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * len(shape), dtype=dtype),
        name=f"{name}-{next(_token_counter)}-{id(read):x}",
    )


class ImageReader(abc.ABC):
    """One open microscopy file: its scenes, their metadata and lazy pixels.

    Scenes are arguments, never state, so one reader can serve many requests.
    Readers are thread-safe for reads (dask calls ``read_plane`` from its pool)
    and pickle by path: unpickling reopens the file.

    Examples
    --------
    >>> from zstack_analyzer import open_image  # doctest: +SKIP
    >>> with open_image("cells.czi") as reader:  # doctest: +SKIP
    ...     plane = reader.read_plane(0, 0, 0, 0)
    """

    format_name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    required_packages: ClassVar[tuple[str, ...]] = ()
    #: Whether the reader reads a :class:`RemoteObject` in place (by ranged GETs).
    reads_remote: ClassVar[bool] = False
    #: Whether the reader reserves its own decodes (per strip, tile or chunk) from the
    #: decode budget (:mod:`zstack_analyzer.budget`); if not, callers reserve whole planes.
    reserves_decodes: ClassVar[bool] = False

    def __init__(
        self, path: Path | str | RemoteObject, /, *, limits: ReadLimits | None = None
    ) -> None:
        #: What the reader reads: a local path, or an object read by ranges.
        self.source: Path | RemoteObject
        if isinstance(path, RemoteObject):
            self.source = path
            #: The file's name for messages (a remote object's display name, no folder).
            self.path = path.path
        else:
            self.path = path if isinstance(path, Path) else Path(path)
            self.source = self.path
        self.limits = limits or ReadLimits()
        self._lock = threading.RLock()
        self._closers: list[weakref.finalize[Any, Any]] = []
        self._closed = False

    # ----------------------------------------------------------------- protocol
    @classmethod
    @abc.abstractmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        """Whether the file is this reader's format; reads headers only and never raises."""

    @classmethod
    def sniff_remote(cls, head: bytes, source: RemoteObject) -> bool:
        """:meth:`sniff` for an object read by ranges (readers with :attr:`reads_remote`)."""
        return cls.sniff(head, source.path)

    @classmethod
    def file_set(cls, path: Path, limits: ReadLimits) -> FileSet | None:
        """The files that make one image with ``path`` (which this reader claims), or ``None``.

        Why a hook on the reader: only the format knows which neighbours belong
        to an image (an index map, OME-XML file names, a ``.files`` folder),
        and the batch code must group them without knowing any format. It must
        be cheap (names and headers only, bounded by ``limits``) and name only
        files beside ``path`` or below its folder (:mod:`zstack_analyzer.filesets`
        checks that). ``None``: a single-file image (the default).
        """
        return None

    @classmethod
    def main_for_member(cls, path: Path) -> Path | None:
        """The main file of the image ``path`` is a member of, from its name alone, or ``None``.

        For members the format's reader does not claim itself (a plane TIFF in
        an OIF's ``.oif.files`` folder). Names only: no file is opened.
        """
        return None

    @abc.abstractmethod
    def scenes(self) -> Sequence[SceneInfo]:
        """Every scene in file order, each with its own canonical sizes."""

    @abc.abstractmethod
    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata of ``scene``; never reads pixel data."""

    @abc.abstractmethod
    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy canonical T,C,Z,Y,X(,S) array of ``scene`` at pyramid ``level``."""

    @abc.abstractmethod
    def raw_metadata(self) -> Mapping[str, Any]:
        """The vendor-native metadata, in full."""

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X(,S) plane; slices :meth:`to_dask` unless a reader has a faster path."""
        self.check_plane_index(scene, t, c, z)
        return np.asarray(self.to_dask(scene)[t, c, z].compute(scheduler="sync"))

    def quality(self, scene: int = 0) -> dict[str, Any]:
        """Focus, exposure and signal of ``scene`` per channel, read now (every plane once).

        The same structure as the service's ``GET /api/images/{id}/quality``
        (:meth:`zstack_analyzer.quality.SceneQuality.public`), so a notebook
        reads a local file and a served image alike.

        Examples
        --------
        >>> with open_image("stack.ome.tif") as image:  # doctest: +SKIP
        ...     image.quality(0)["channels"][0]["best_focus_z"]
        12
        """
        from zstack_analyzer.quality.read import measure_reader

        self.scene_info(scene)  # a typed SceneNotFoundError for a scene out of range
        return measure_reader(self, scene).public()

    def read_plane_into(self, scene: int, t: int, c: int, z: int, out: np.ndarray) -> None:
        """Decode one plane into ``out`` (shape Y,X(,S)); readers may avoid the copy.

        Why: a full load writes every plane into one preallocated array; a reader
        that can decode straight into that slot saves a copy of the whole image.
        """
        out[...] = self.read_plane(scene, t, c, z)

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """Rows and columns of the file's smallest independently decodable block, or ``None``.

        Why: a render of a plane too large to hold reads it region by region
        (:meth:`read_region`) and reduces as it reads. Regions aligned to this
        grid decode each stored tile or strip once; ``None`` means the reader
        can only decode whole planes, so such a plane cannot be rendered in
        bounded memory and is refused.
        """
        self.scene_info(scene)
        return None

    def read_region(
        self,
        scene: int,
        t: int,
        c: int,
        z: int,
        rows: tuple[int, int],
        cols: tuple[int, int],
        *,
        level: int = 0,
    ) -> np.ndarray:
        """Rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of one plane at ``level``.

        The default decodes the whole plane; readers with a :meth:`region_grid`
        decode only the stored blocks the region touches. Bounds are clipped to
        the plane as the TIFF region path clips them: a negative bound is 0, not
        a count from the end as a slice would take it.
        """
        self.check_plane_index(scene, t, c, z)
        with reserve_plane(self, scene, level):
            if level == 0:
                plane = self.read_plane(scene, t, c, z)
            else:
                plane = np.asarray(self.to_dask(scene, level)[t, c, z].compute(scheduler="sync"))
        top, bottom = max(0, rows[0]), max(0, rows[1])
        left, right = max(0, cols[0]), max(0, cols[1])
        return np.ascontiguousarray(plane[top:bottom, left:right])

    def level_count(self, scene: int = 0) -> int:
        """Number of pyramid levels of ``scene`` (1 without a pyramid)."""
        self.scene_info(scene)
        return 1

    # ----------------------------------------------------------------- helpers
    def scene_info(self, scene: int) -> SceneInfo:
        """The :class:`SceneInfo` of ``scene``, or :class:`SceneNotFoundError`."""
        all_scenes = self.scenes()
        if not 0 <= scene < len(all_scenes):
            msg = f"{self.path.name}: scene {scene} does not exist; it has {len(all_scenes)}"
            raise SceneNotFoundError(msg, path=self.path)
        return all_scenes[scene]

    def scene_metadata(self, info: SceneInfo, **fields: Any) -> ImageMetadata:
        """:meth:`ImageMetadata.for_scene` with this file's name, format and scene list.

        Why: every reader's :meth:`metadata` starts from the same four facts;
        ``fields`` carries what the format itself knows (calibration, channels...).
        """
        from zstack_analyzer.metadata import ImageMetadata

        return ImageMetadata.for_scene(
            info,
            filename=self.path.name,
            file_format=self.format_name,
            scenes=list(self.scenes()),
            **fields,
        )

    def check_plane_index(self, scene: int, t: int, c: int, z: int) -> None:
        """Raise :class:`SceneNotFoundError` unless (t, c, z) exists in ``scene``."""
        info = self.scene_info(scene)
        for axis, value, size in (
            ("t", t, info.size_t),
            ("c", c, info.size_c),
            ("z", z, info.size_z),
        ):
            if not 0 <= value < size:
                msg = f"{self.path.name}: {axis}={value} is out of range (0..{size - 1})"
                raise SceneNotFoundError(msg, path=self.path)

    def check_shape(self, shape: Sequence[int], dtype: np.dtype[Any] | str) -> None:
        """Refuse a declared canonical shape over the limits, before anything is allocated.

        A zero or negative extent is a corrupt header (a flipped byte), not a size
        limit: it raises :class:`CorruptFileError`.
        """
        dims = [int(s) for s in shape]
        if min(dims, default=1) <= 0:
            msg = f"{self.path.name}: declares an empty or negative size {tuple(dims)}; the file is corrupt"
            raise CorruptFileError(msg, path=self.path)
        plane_axes = 3 if len(shape) == 6 else 2
        check_declared_size(shape, dtype, limits=self.limits, path=self.path, plane_axes=plane_axes)

    def close_on_release(self, closer: Callable[[], object]) -> None:
        """Register ``closer`` to run on :meth:`close` or when the reader is garbage-collected.

        Why: a lazy array returned to a caller keeps the reader alive through its
        graph; once the array is dropped the handle must still be closed, and
        closed quietly (pytest runs with ResourceWarning as an error).
        """
        self._closers.append(weakref.finalize(self, closer))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def check_open(self) -> None:
        """Raise ``ValueError`` when the reader is closed (as reading a closed file does)."""
        if self._closed:
            msg = f"{self.path.name}: the reader is closed"
            raise ValueError(msg)

    def close(self) -> None:
        """Close every file handle; safe to call twice."""
        self._closed = True
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Pickle by what was opened: dask may ship the graph (and so the reader) to other
    # processes; a remote object is reopened from its descriptor, a file from its path.
    def __reduce__(self) -> tuple[Any, ...]:
        source = self.source if isinstance(self.source, RemoteObject) else str(self.path)
        return (_reopen, (type(self), source, self.limits))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def reserve_plane(reader: ImageReader, scene: int, level: int = 0) -> ContextManager[None]:
    """Hold the decode budget of one whole plane of ``reader``.

    Nothing for readers that reserve their own decodes, so nothing is counted twice.
    """
    import contextlib

    from zstack_analyzer.budget import reserve

    if reader.reserves_decodes:
        return contextlib.nullcontext()
    shape = reader.to_dask(scene, level).shape if level else None
    info = reader.scene_info(scene)
    ny, nx = (int(shape[3]), int(shape[4])) if shape is not None else (info.size_y, info.size_x)
    nbytes = ny * nx * max(1, info.samples_per_pixel) * np.dtype(info.dtype).itemsize
    return reserve(nbytes, what=f"{reader.path.name}: one plane", path=reader.path)


def _reopen(cls: type[ImageReader], path: str | RemoteObject, limits: ReadLimits) -> ImageReader:
    return cls(path, limits=limits)


def plane_count(info: SceneInfo) -> int:
    """Number of T x C x Z planes of a scene."""
    return math.prod((info.size_t, info.size_c, info.size_z))
