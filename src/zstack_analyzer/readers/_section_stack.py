"""Formats whose planes are the sections of one raw (sections, Y, X) block: MRC and DeltaVision.

Why a shared base: an MRC file and its DeltaVision variant store every plane
uncompressed, back to back, after a fixed header (and an optional extended
header). Once the header is checked against the file size, a plane is a slice
of a read-only memory map and a region is a slice of that slice: nothing is
decoded, so reads cost what the bytes cost. The format modules only parse
their header, map (t, c, z) to a section and build the metadata.

Rows are turned over: MRC and DeltaVision put the origin at the lower left
(the first stored row is the bottom of the image, y pointing up, as IMOD and
softWoRx display it), while our planes, like every image array, start at the
top row. Bio-Formats' MRCReader and DeltavisionReader turn them the same way,
so plane checksums agree with theirs.

The size check is what keeps the memory map safe: the file must hold every
section the header declares before the map exists, otherwise a read of a
section past the end of a truncated file would be a SIGBUS, not an error.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.errors import CorruptFileError, SceneNotFoundError
from zstack_analyzer.readers._base import ImageReader, planes_to_dask

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import dask.array as da

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.metadata import ImageMetadata, SceneInfo

__all__ = [
    "HEADER_BYTES",
    "SectionStackReader",
    "check_data_extent",
    "data_block_offset",
    "read_fixed_header",
]

#: The fixed header both formats start with (DeltaVision is an MRC variant).
HEADER_BYTES = 1024


def read_fixed_header(path: Path, format_name: str) -> bytes:
    """The first :data:`HEADER_BYTES` bytes; a shorter file is corrupt, not a short read."""
    with path.open("rb") as fh:
        head = fh.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        msg = f"{path.name}: the {HEADER_BYTES}-byte {format_name} header is cut short ({len(head)} bytes)"
        raise CorruptFileError(msg, path=path)
    return head


def data_block_offset(
    path: Path, *, extended_bytes: int, data_bytes: int, limits: ReadLimits, format_name: str
) -> int:
    """Where the sections start, once the extended header and the data block are checked.

    The extended header's declared length must be non-negative and within the
    metadata limit (it is parsed into memory), and the file must hold all
    ``data_bytes`` after it (:func:`check_data_extent`) before anything is mapped.
    """
    if extended_bytes < 0 or extended_bytes > limits.max_metadata_bytes:
        msg = f"{path.name}: extended header of {extended_bytes:,} bytes is negative or over the metadata limit"
        raise CorruptFileError(msg, path=path)
    offset = HEADER_BYTES + extended_bytes
    check_data_extent(path, offset=offset, nbytes=data_bytes, what=f"the {format_name} header")
    return offset


def check_data_extent(path: Path, *, offset: int, nbytes: int, what: str) -> None:
    """Refuse a file shorter than ``offset + nbytes`` (its declared data block).

    Why before anything is mapped: a memory map over a cut file maps fine and
    crashes the process (SIGBUS) on the first read past the end.
    """
    size = path.stat().st_size
    if offset < 0 or nbytes < 0:
        msg = f"{path.name}: {what} declares a negative offset or size; the file is corrupt"
        raise CorruptFileError(msg, path=path)
    if offset + nbytes > size:
        msg = (
            f"{path.name}: {what} declares {nbytes:,} bytes of pixels from byte {offset:,}, "
            f"but the file has {size:,} bytes; the file is truncated or its header lies"
        )
        raise CorruptFileError(msg, path=path)


class SectionStackReader(ImageReader):
    """One scene whose planes are sections of a read-only ``(sections, Y, X)`` array.

    Subclasses set :attr:`_info`, :attr:`_sections` (the memory map, any byte
    order) and :attr:`_section_of` (``(t, c, z) -> section``) in ``__init__``,
    and implement :meth:`_build_metadata`.
    """

    _info: SceneInfo
    _sections: np.ndarray
    _section_of: Callable[[int, int, int], int]
    _metadata_cache: ImageMetadata | None = None

    def _build_metadata(self) -> ImageMetadata:
        raise NotImplementedError

    # ------------------------------------------------------------------ protocol
    def scenes(self) -> Sequence[SceneInfo]:
        """One scene: the file's stack."""
        return [self._info]

    def metadata(self, scene: int = 0) -> ImageMetadata:
        """Normalised metadata from the header (built once, copied per call)."""
        self.scene_info(scene)
        if self._metadata_cache is None:
            self._metadata_cache = self._build_metadata()
        return self._metadata_cache.model_copy(deep=True)

    def to_dask(self, scene: int = 0, level: int = 0) -> da.Array:
        """Lazy T,C,Z,Y,X array; one chunk per section."""
        self.scene_info(scene)
        if level != 0:
            msg = f"{self.path.name}: pyramid level {level} does not exist; it has 1"
            raise SceneNotFoundError(msg, path=self.path)
        info = self._info
        read = functools.partial(self._read, scene)
        return planes_to_dask(read, info.shape, info.dtype, name=type(self).__name__.lower())

    def read_plane(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        """One Y,X plane: a copy of its section of the memory map."""
        self.check_plane_index(scene, t, c, z)
        return self._read(scene, t, c, z)

    def read_plane_into(self, scene: int, t: int, c: int, z: int, out: np.ndarray) -> None:
        """Copy the section straight into ``out`` (converting byte order if needed)."""
        self.check_plane_index(scene, t, c, z)
        self.check_open()
        out[...] = self._sections[self._section_of(t, c, z)][::-1]

    def region_grid(self, scene: int = 0, level: int = 0) -> tuple[int, int] | None:
        """Any row is addressable: the data are uncompressed and memory-mapped."""
        self.scene_info(scene)
        if level != 0:
            return None
        return (1, self._info.size_x)

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
        """Rows and columns of one plane, sliced from the memory map (only those pages are read).

        Bounds clip as :meth:`ImageReader.read_region` clips them: a negative
        bound (start or end) is 0, not a count from the end as a slice would take it.
        """
        self.check_plane_index(scene, t, c, z)
        if level != 0:
            msg = f"{self.path.name}: pyramid level {level} does not exist; it has 1"
            raise SceneNotFoundError(msg, path=self.path)
        self.check_open()
        info = self._info
        y0, y1 = max(0, rows[0]), max(0, min(info.size_y, rows[1]))
        x0, x1 = max(0, cols[0]), max(0, min(info.size_x, cols[1]))
        section = self._sections[self._section_of(t, c, z)]
        ny = info.size_y
        # Display rows y0:y1 are stored rows ny-y1 .. ny-y0, bottom first: read those only.
        stored = section[ny - y1 : ny - y0, x0:x1] if y1 > y0 else section[0:0, x0:x1]
        return _native(stored[::-1], info.dtype)

    def _read(self, scene: int, t: int, c: int, z: int) -> np.ndarray:
        self.check_open()
        return _native(self._sections[self._section_of(t, c, z)][::-1], self._info.dtype)

    def raw_metadata(self) -> dict[str, Any]:
        """The header fields (format modules add their own blocks)."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop the memory map: numpy unmaps it when the last view goes (reads copy)."""
        super().close()
        self.__dict__.pop("_sections", None)


def _native(block: np.ndarray, dtype: str) -> np.ndarray:
    """A contiguous native-byte-order copy of a memory-mapped block."""
    return np.ascontiguousarray(block, dtype=np.dtype(dtype))
