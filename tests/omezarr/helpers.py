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
