"""Read limits: refuse a size a header declares before any buffer of that size exists.

Why: a corrupt or hostile file can claim 10^6 x 10^6 pixels; allocating from that
claim takes the process (or the server) down. Every reader passes declared
shapes through :func:`check_declared_size` first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from zstack_analyzer.errors import LimitExceededError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from numpy.typing import DTypeLike

__all__ = ["ReadLimits", "check_declared_size", "itemsize"]

GiB = 1024**3

#: Bytes per element of the dtype names readers declare (numpy's own names).
_ITEMSIZES = {
    "uint8": 1,
    "int8": 1,
    "uint16": 2,
    "int16": 2,
    "uint32": 4,
    "int32": 4,
    "float32": 4,
    "uint64": 8,
    "int64": 8,
    "float64": 8,
}


def itemsize(dtype: DTypeLike) -> int:
    """Bytes per element of ``dtype``: a dict lookup for the usual names, numpy for the rest.

    Why: the first ``np.dtype("uint16")`` in a process costs as much as the rest
    of a small file's size checks (opening is timed in a fresh process, issue 22).

    Examples
    --------
    >>> itemsize("uint16"), itemsize(">u2"), itemsize(float)
    (2, 2, 8)
    """
    size = _ITEMSIZES.get(dtype) if isinstance(dtype, str) else None
    return size if size is not None else int(np.dtype(dtype).itemsize)


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds on what a file may declare and what a caller may load eagerly.

    Parameters
    ----------
    max_plane_bytes
        Largest single plane (Y x X x S x itemsize) a reader will decode at once.
    max_dimension
        Largest extent of any one axis.
    max_planes
        Largest number of planes (T x C x Z x scenes/tiles) in one image.
    max_eager_bytes
        Largest array ``load_image(lazy=False)`` materialises.
    max_metadata_bytes
        Largest XML/metadata block parsed.
    max_render_plane_bytes
        Largest plane a render decodes whole. A larger plane is read region by
        region (stored tiles or strips) and reduced while it is read, so a
        render's memory stays bounded whatever the plane size; a larger plane
        that cannot be read so (one huge strip or tile, or a reader that only
        decodes whole planes) is refused with :class:`LimitExceededError`.

    Examples
    --------
    >>> ReadLimits(max_eager_bytes=2 * 1024**3).max_eager_bytes
    2147483648
    """

    max_plane_bytes: int = 4 * GiB
    max_dimension: int = 1 << 20
    max_planes: int = 10_000_000
    max_eager_bytes: int = 16 * GiB
    max_metadata_bytes: int = 256 * 1024**2
    max_render_plane_bytes: int = 256 * 1024**2


def check_declared_size(
    shape: Sequence[int],
    dtype: DTypeLike,
    *,
    limits: ReadLimits,
    path: Path | str | None = None,
    plane_axes: int = 2,
) -> int:
    """Validate a declared shape against ``limits`` and return its size in bytes.

    Parameters
    ----------
    shape
        Declared shape; the last ``plane_axes`` entries form one plane (add one
        for RGB samples).
    dtype
        Declared element type.
    limits
        Limits in force.
    path
        File named in the error message.
    plane_axes
        How many trailing axes make up one decoded plane.

    Raises
    ------
    LimitExceededError
        When an extent is negative or over ``max_dimension``, a plane is over
        ``max_plane_bytes``, or there are more than ``max_planes`` planes.
    """
    name = getattr(path, "name", path) or "image"
    dims = [int(s) for s in shape]
    if min(dims, default=0) < 0:
        msg = f"{name}: declares a negative size {tuple(dims)}"
        raise LimitExceededError(msg, path=path)
    if max(dims, default=0) > limits.max_dimension:
        msg = (
            f"{name}: declares an axis of {max(dims):,} pixels, over the limit of "
            f"{limits.max_dimension:,}; the file is probably corrupt"
        )
        raise LimitExceededError(msg, path=path)
    size = itemsize(dtype)
    plane_bytes = math.prod(dims[-plane_axes:]) * size if plane_axes else size
    if plane_bytes > limits.max_plane_bytes:
        msg = (
            f"{name}: one plane of {tuple(dims[-plane_axes:])} {np.dtype(dtype).name} needs "
            f"{plane_bytes / GiB:,.1f} GiB, over the limit of "
            f"{limits.max_plane_bytes / GiB:,.1f} GiB"
        )
        raise LimitExceededError(msg, path=path)
    planes = math.prod(dims[:-plane_axes]) if plane_axes else math.prod(dims)
    if planes > limits.max_planes:
        msg = f"{name}: declares {planes:,} planes, over the limit of {limits.max_planes:,}"
        raise LimitExceededError(msg, path=path)
    return planes * plane_bytes
