"""``convert``: any file we read -> OME-Zarr (NGFF 0.4 on zarr v2, or 0.5 on zarr v3).

Why plane by plane: with XY-only pyramid steps, every level of a plane comes
from that plane alone, so one task reads a plane once, writes it, halves it,
writes that, and so on down to <= 512 px. Memory is a few planes per worker
whatever the file size, the source is read exactly once, and the tasks are
independent, so dask runs them in parallel (threads, or a dask.distributed
cluster given by its scheduler address).

A large tiled plane (a slide) is the exception: a plane may not fit in
memory, so it goes chunk by chunk (the file's tiles), one level after the
other, each chunk of level n made from the four chunks of level n-1 under it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from zstack_analyzer.errors import SceneNotFoundError
from zstack_analyzer.zarr.ngff import (
    AXES,
    SceneLayout,
    display_windows,
    multiscales_attrs,
    omero_attrs,
    scene_layout,
    scene_title,
    zstack_attrs,
)
from zstack_analyzer.zarr.ome_xml import collection_ome_xml
from zstack_analyzer.zarr.pyramid import downsample2x
from zstack_analyzer.zarr.source import SceneSource

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.readers._base import ImageReader

__all__ = ["ConvertResult", "NgffVersion", "convert"]

logger = logging.getLogger(__name__)

NgffVersion = Literal["0.4", "0.5"]


@dataclass
class ConvertResult:
    """What :func:`convert` wrote.

    Examples
    --------
    >>> ConvertResult(Path("out.ome.zarr"), "0.4", [0], [[(1024, 1024), (512, 512)]]).scenes
    [0]
    """

    path: Path
    ngff: str
    scenes: list[int]
    levels: list[list[tuple[int, int]]]
    warnings: list[str] = field(default_factory=list)


def _compressor(zarr_format: int) -> Any:
    """Blosc LZ4 with byte shuffle: fast to write and to read, about as small as zlib on images."""
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _create_levels(group: Any, layout: SceneLayout, zarr_format: int) -> list[Any]:
    arrays = []
    for level in range(len(layout.levels)):
        kwargs: dict[str, Any] = {
            "name": str(level),
            "shape": layout.level_shape(level),
            "chunks": layout.level_chunks(level),
            "dtype": layout.dtype,
            "compressors": _compressor(zarr_format),
            "fill_value": 0,
        }
        if zarr_format == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = AXES
        arrays.append(group.create_array(**kwargs))
    return arrays


class _PlaneWriter:
    """The task of one file plane: read it once, write every level of every sample of it."""

    def __init__(self, reader: ImageReader, scene: int, arrays: list[Any]) -> None:
        self.reader = reader
        self.scene = scene
        self.arrays = arrays

    def __call__(self, t: int, c_file: int, z: int) -> int:
        source = SceneSource(self.reader, self.scene)
        samples = source.read_plane_samples(t, c_file, z)
        for s in range(samples.shape[2]):
            plane = np.ascontiguousarray(samples[:, :, s])
            c = c_file * source.spp + s
            for level, array in enumerate(self.arrays):
                if level:
                    plane = downsample2x(plane)
                array[t, c, z] = plane
        return 1


class _ChunkWriter:
    """The task of one chunk of a tiled large plane, level by level (memory: a few chunks).

    Level 0 comes from the file's own tiles; level n from the 2x2 chunks of
    level n-1 already written, so no task ever holds a whole slide-sized plane.
    """

    def __init__(
        self, reader: ImageReader, scene: int, arrays: list[Any], layout: SceneLayout
    ) -> None:
        self.reader = reader
        self.scene = scene
        self.arrays = arrays
        self.layout = layout

    def __call__(self, level: int, t: int, c: int, z: int, cy: int, cx: int) -> int:
        ch, cw = self.layout.level_chunks(level)[3:]
        ny, nx = self.layout.levels[level]
        y0, x0 = cy * ch, cx * cw
        y1, x1 = min(ny, y0 + ch), min(nx, x0 + cw)
        if level == 0:
            data = SceneSource(self.reader, self.scene).read_region(t, c, z, y0, y1, x0, x1)
        else:
            py, px = self.layout.levels[level - 1]
            above = np.asarray(
                self.arrays[level - 1][t, c, z, 2 * y0 : min(py, 2 * y1), 2 * x0 : min(px, 2 * x1)]
            )
            data = downsample2x(above)[: y1 - y0, : x1 - x0]
        self.arrays[level][t, c, z, y0:y1, x0:x1] = data
        return 1


def _chunk_tasks(writer: _ChunkWriter, layout: SceneLayout, level: int) -> list[Any]:
    import dask

    task = dask.delayed(writer, pure=False)
    t_size, c_size, z_size = layout.shape[:3]
    ny, nx = layout.levels[level]
    ch, cw = layout.level_chunks(level)[3:]
    return [
        task(level, t, c, z, cy, cx)
        for t in range(t_size)
        for c in range(c_size)
        for z in range(z_size)
        for cy in range(-(-ny // ch))
        for cx in range(-(-nx // cw))
    ]


def _run(tasks: list[Any], scheduler: str | None, workers: int | None) -> None:
    """Compute ``tasks`` (dask delayed) on threads, or on the cluster at ``scheduler``."""
    import dask

    if scheduler:
        from distributed import Client

        with Client(scheduler) as client:
            futures = client.compute(tasks)
            client.gather(futures)
        return
    dask.compute(*tasks, scheduler="threads", num_workers=workers or os.cpu_count() or 1)


def _windows(arrays: list[Any], layout: SceneLayout) -> list[tuple[float, float]]:
    """1-99 percentile display window per channel, from the smallest level (a few planes)."""
    top = arrays[-1]
    return display_windows(layout, lambda c, z: np.asarray(top[0, c, z]))


def _write_scene(
    reader: ImageReader,
    scene: int,
    group: Any,
    *,
    version: NgffVersion,
    scheduler: str | None,
    workers: int | None,
    progress: Callable[[str], None] | None,
) -> SceneLayout:
    import dask

    source = SceneSource(reader, scene)
    metadata = source.metadata
    layout = scene_layout(metadata, file_tile=source.file_tile())
    zarr_format = 2 if version == "0.4" else 3
    arrays = _create_levels(group, layout, zarr_format)
    t_size, _, z_size = layout.shape[:3]
    if source.file_tile() is not None and layout.chunk_yx != layout.levels[0]:
        # A large tiled plane (a slide): chunk by chunk, level after level.
        chunk_writer = _ChunkWriter(reader, scene, arrays, layout)
        if progress is not None:
            progress(f"scene {scene}: tiled plane, {len(layout.levels)} levels, chunk by chunk")
        for level in range(len(layout.levels)):
            _run(_chunk_tasks(chunk_writer, layout, level), scheduler, workers)
    else:
        writer = _PlaneWriter(reader, scene, arrays)
        task = dask.delayed(writer, pure=False)
        tasks = [
            task(t, c, z)
            for t in range(t_size)
            for c in range(metadata.size_c)
            for z in range(z_size)
        ]
        if progress is not None:
            progress(f"scene {scene}: {len(tasks)} planes, {len(layout.levels)} levels")
        _run(tasks, scheduler, workers)
    name = scene_title(metadata, scenes=len(reader.scenes()))
    multiscales = multiscales_attrs(layout, name=name, version=version)
    omero = omero_attrs(metadata, layout, windows=_windows(arrays, layout), name=name)
    metadata.warnings.extend(f"OME-Zarr: {w}" for w in layout.warnings)
    ours = zstack_attrs(metadata)
    if version == "0.4":
        group.attrs.update({**multiscales, **omero, **ours})
    else:
        group.attrs.update({"ome": {"version": "0.5", **multiscales, **omero}, **ours})
    for warning in layout.warnings:
        logger.warning("%s scene %d: %s", reader.path.name, scene, warning)
    return layout


def convert(
    path: Path | str,
    out: Path | str,
    /,
    *,
    ngff: NgffVersion = "0.4",
    scene: int = 0,
    all_scenes: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    limits: ReadLimits | None = None,
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Write ``path`` as an OME-Zarr at ``out`` (which must not exist).

    Parameters
    ----------
    path
        Any file :func:`~zstack_analyzer.open_image` reads.
    out
        The new ``.ome.zarr`` directory.
    ngff
        "0.4" (zarr v2, what most tools read today) or "0.5" (zarr v3).
    scene
        The scene to write as one image (ignored with ``all_scenes``).
    all_scenes
        Write every scene as a bioformats2raw-style collection: groups "0",
        "1", ... and an "OME" group listing them.
    scheduler
        Address of a dask.distributed scheduler; ``None`` runs on local threads.
    workers
        Threads when running locally (default: the cores).
    progress
        Called with a line of text per scene.

    Examples
    --------
    >>> convert("cells.czi", "cells.ome.zarr")  # doctest: +SKIP
    ConvertResult(path=PosixPath('cells.ome.zarr'), ngff='0.4', scenes=[0], ...)
    """
    import zarr

    from zstack_analyzer.loader import open_image

    out = Path(out)
    if out.exists():
        msg = f"{out}: already exists; choose a new output path"
        raise FileExistsError(msg)
    zarr_format: Literal[2, 3] = 2 if ngff == "0.4" else 3
    with open_image(path, limits=limits) as reader:
        n_scenes = len(reader.scenes())
        if not all_scenes and not 0 <= scene < n_scenes:
            msg = f"{reader.path.name}: scene {scene} does not exist; it has {n_scenes}"
            raise SceneNotFoundError(msg, path=reader.path)
        scenes: Sequence[int] = range(n_scenes) if all_scenes else [scene]
        root = zarr.open_group(str(out), mode="w-", zarr_format=zarr_format)
        result = ConvertResult(path=out, ngff=ngff, scenes=list(scenes), levels=[])
        kwargs: dict[str, Any] = {
            "version": ngff,
            "scheduler": scheduler,
            "workers": workers,
            "progress": progress,
        }
        if all_scenes:
            _write_collection(reader, root, scenes, result, ngff, kwargs)
        else:
            layout = _write_scene(reader, scene, root, **kwargs)
            result.levels.append(layout.levels)
            result.warnings.extend(layout.warnings)
    return result


def _write_collection(
    reader: ImageReader,
    root: Any,
    scenes: Sequence[int],
    result: ConvertResult,
    ngff: NgffVersion,
    kwargs: dict[str, Any],
) -> None:
    """The bioformats2raw layout: one image group per scene, plus ``OME`` listing them."""
    for index in scenes:
        layout = _write_scene(reader, index, root.create_group(str(index)), **kwargs)
        result.levels.append(layout.levels)
        result.warnings.extend(f"scene {index}: {w}" for w in layout.warnings)
    series = [str(i) for i in scenes]
    ome = root.create_group("OME")
    if ngff == "0.4":
        root.attrs.update({"bioformats2raw.layout": 3})
        ome.attrs.update({"series": series})
    else:
        root.attrs.update({"ome": {"version": "0.5", "bioformats2raw.layout": 3}})
        ome.attrs.update({"ome": {"version": "0.5", "series": series}})
    xml = _ome_xml(reader) or _our_ome_xml(reader, scenes)
    (Path(result.path) / "OME" / "METADATA.ome.xml").write_text(xml, encoding="utf-8")


def _ome_xml(reader: ImageReader) -> str | None:
    """The file's own OME-XML when it has one (OME-TIFF), for ``OME/METADATA.ome.xml``."""
    tif = getattr(reader, "tif", None)
    xml = getattr(tif, "ome_metadata", None) if tif is not None else None
    return xml if isinstance(xml, str) and xml.strip() else None


def _our_ome_xml(reader: ImageReader, scenes: Sequence[int]) -> str:
    """OME-XML listing ``scenes`` for a file without its own (napari-ome-zarr needs one)."""
    series = []
    for index in scenes:
        source = SceneSource(reader, index)
        metadata = source.metadata
        layout = scene_layout(metadata, file_tile=source.file_tile())
        labels = [ch["label"] for ch in omero_attrs(metadata, layout)["omero"]["channels"]]
        series.append((scene_title(metadata, scenes=len(reader.scenes())), layout, labels))
    return collection_ome_xml(series)
