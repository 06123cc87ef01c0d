"""Factories for synthetic files whose pixel values encode their position.

Value of pixel (t, c, z, y, x): high byte = plane index ``(t * C + c) * Z + z``,
low byte = ``(3 * y + x) % 256`` (uint16). A reader that swaps any two axes
therefore fails an exact comparison.
"""

from __future__ import annotations

import numpy as np


def encoded_stack(t: int, c: int, z: int, y: int, x: int, dtype: str = "uint16") -> np.ndarray:
    """Canonical T,C,Z,Y,X array with position-encoded values."""
    plane_index = np.arange(t * c * z, dtype=np.int64).reshape(t, c, z, 1, 1)
    yy = np.arange(y, dtype=np.int64).reshape(1, 1, 1, y, 1)
    xx = np.arange(x, dtype=np.int64).reshape(1, 1, 1, 1, x)
    low = (3 * yy + xx) % 256
    if np.dtype(dtype).itemsize == 1:
        return ((plane_index * 37 + low) % 256).astype(dtype)
    return ((plane_index << 8) + low).astype(dtype)


def encoded_plane(t: int, c: int, z: int, *, sizes: tuple[int, int, int, int, int]) -> np.ndarray:
    """The Y,X plane (t, c, z) of :func:`encoded_stack` with canonical ``sizes``."""
    _, size_c, size_z, y, x = sizes
    index = (t * size_c + c) * size_z + z
    yy = np.arange(y, dtype=np.int64)[:, None]
    xx = np.arange(x, dtype=np.int64)[None, :]
    return ((index << 8) + (3 * yy + xx) % 256).astype("uint16")
