"""Canonical axis names and the one place where native axis orders are transposed.

Why one place: every reader gets arrays in its vendor's order (tifffile "ZCYX",
liffile "TMZCYX", nd2 "TZCYX"); if each transposed on its own, a wrong order
would hide in one reader. Here unknown vendor axes are reduced to index 0 and
missing canonical axes inserted with size 1, so every consumer sees T, C, Z, Y,
X (+S for RGB samples).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping

    import dask.array as da
    import numpy as np

__all__ = ["CANONICAL", "CANONICAL_RGB", "Axis", "canonical_shape", "to_canonical"]


class Axis(StrEnum):
    """The axes of a canonical array; S only for RGB(A) samples and always last."""

    T = "T"
    C = "C"
    Z = "Z"
    Y = "Y"
    X = "X"
    S = "S"


CANONICAL = "TCZYX"
CANONICAL_RGB = "TCZYXS"

ArrayT = TypeVar("ArrayT", "np.ndarray", "da.Array")


def to_canonical(array: ArrayT, dims: str, *, rename: Mapping[str, str] | None = None) -> ArrayT:
    """Return ``array`` (numpy or dask) with axes ``dims`` rearranged to T,C,Z,Y,X(,S).

    Parameters
    ----------
    array
        Array whose axes are named, in order, by the characters of ``dims``.
    dims
        One character per axis, e.g. ``"ZCYX"``. Characters outside TCZYXS are
        vendor axes (CZI ``M``, a LIF λ sweep) and are reduced to index 0.
    rename
        Optional mapping applied to ``dims`` first, e.g. ``{"I": "T"}``.

    Returns
    -------
    The same kind of array, 5-D, or 6-D when ``dims`` contains ``S``.

    Examples
    --------
    >>> import numpy as np
    >>> to_canonical(np.zeros((3, 2, 4, 5)), "ZCYX").shape
    (1, 2, 3, 4, 5)
    """
    names = [rename.get(d, d) if rename else d for d in dims]
    if len(names) != array.ndim:
        msg = f"dims {dims!r} do not match an array of {array.ndim} dimensions"
        raise ValueError(msg)
    if len(set(names)) != len(names):
        msg = f"dims {dims!r} name an axis twice"
        raise ValueError(msg)
    # Vendor axes beyond TCZYXS take index 0 (DESIGN 3: "take index 0 ... listed in metadata").
    index = tuple(0 if n not in CANONICAL_RGB else slice(None) for n in names)
    if any(i == 0 for i in index):
        array = array[index]
        names = [n for n in names if n in CANONICAL_RGB]
    target = CANONICAL_RGB if "S" in names else CANONICAL
    for axis in target:
        if axis not in names:
            array = array[..., None]
            names.append(axis)
    order = [names.index(a) for a in target]
    if order != list(range(len(order))):
        array = array.transpose(order)
    return array


def canonical_shape(sizes: Mapping[str, int]) -> tuple[int, ...]:
    """Shape T,C,Z,Y,X(,S) from a mapping of axis sizes; absent axes are 1.

    Examples
    --------
    >>> canonical_shape({"Z": 5, "Y": 4, "X": 3})
    (1, 1, 5, 4, 3)
    """
    target = CANONICAL_RGB if sizes.get("S", 1) > 1 else CANONICAL
    return tuple(int(sizes.get(a, 1)) for a in target)
