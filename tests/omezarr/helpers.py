"""Checks shared by the OME-Zarr tests: NGFF validation and comparison with our loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer import open_image

if TYPE_CHECKING:
    import zarr


def validate_image(group: zarr.Group, version: str) -> Any:
    """Validate ``group`` as an NGFF image with ome-zarr-models (raises on any violation)."""
    if version == "0.4":
        from ome_zarr_models.v04.image import Image

        return Image.from_zarr(group)
    from ome_zarr_models.v05.image import Image as Image05

    return Image05.from_zarr(group)


def ngff_planes_from_loader(path: Any, scene: int = 0) -> np.ndarray:
    """The scene as T, C, Z, Y, X with RGB samples as channels, read with our loader."""
    with open_image(path) as reader:
        data = np.asarray(reader.to_dask(scene).compute())
    if data.ndim == 6:
        t, c, z, y, x, s = data.shape
        data = np.moveaxis(data, 5, 2).reshape(t, c * s, z, y, x)
    return data


def expected_level(level0: np.ndarray, level: int) -> np.ndarray:
    """Level ``level`` of ``level0`` as our pyramid makes it (2x2 means, rounded up edges)."""
    from zstack_analyzer.zarr.pyramid import downsample2x

    out = level0
    for _ in range(level):
        t, c, z = out.shape[:3]
        planes = [downsample2x(out[i, j, k]) for i in range(t) for j in range(c) for k in range(z)]
        out = np.stack(planes).reshape(t, c, z, *planes[0].shape)
    return out


def first_multiscale(model: Any, version: str) -> Any:
    """The first ``multiscales`` entry of a validated image model of either version."""
    attrs = model.attributes if version == "0.4" else model.attributes.ome
    return attrs.multiscales[0]


def ome_zarr_writer() -> Any:
    """``ome_zarr.writer``, imported with its own import-time DeprecationWarning silenced.

    Why: ome-zarr 0.18 instantiates its deprecated ``Scaler`` in a default
    argument, which warns at import; our suite turns warnings into errors.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ome_zarr.writer

    return ome_zarr.writer


def dim_stack(c: int, z: int, y: int, x: int) -> np.ndarray:
    """A 16-bit T=1 stack whose values sit at about 76..330, as in a real dim CZI.

    A bright blob in the centre of every plane over a dim textured background,
    each channel with its own blob width: a whole-dtype window (0..65535)
    shows it black, a 1-99 % window shows the blob, and channels differ.
    """
    yy = (np.arange(y, dtype=np.float64)[:, None] - y / 2) / y
    xx = (np.arange(x, dtype=np.float64)[None, :] - x / 2) / x
    texture = (np.arange(y)[:, None] * 7 + np.arange(x)[None, :] * 3) % 17
    planes = []
    for channel in range(c):
        blob = np.exp(-(yy**2 + xx**2) / (2 * (0.12 + 0.05 * channel) ** 2))
        plane = 76 + 200 * blob + texture + 8 * channel
        depth = np.arange(z, dtype=np.float64).reshape(z, 1, 1)
        planes.append(plane[None] + 6 * depth)  # each plane its own: a window sees them all
    return np.stack(planes)[None].round().astype("uint16")
