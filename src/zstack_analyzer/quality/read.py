"""Measure the quality of a file's scenes, plane by plane, in bounded memory.

Why through :class:`~zstack_analyzer.render.projection.ReaderSource`: the same
plane reads (and prefetching decode threads) as the projection thumbnail, so
the thumbnail pass can feed the measures (:func:`thumbnail_with_quality`) and
this module reads only the planes it did not see. Planes over
:data:`~zstack_analyzer.render.reduce.WHOLE_PLANE_BYTES` are read in row bands
through the reader's region reads, so memory is one band, whatever the plane.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import numpy as np

from zstack_analyzer.quality.plane import PlaneAccumulator, PlaneQuality, measure_plane
from zstack_analyzer.quality.stack import QualityBuilder, SceneQuality

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from PIL import Image

    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.readers._base import ImageReader
    from zstack_analyzer.render.spec import RenderSpec

__all__ = ["builder_for", "measure_file", "measure_reader", "thumbnail_with_quality"]

#: Target size of one row band of a large plane. Small, because the measures widen a band
#: to int64/float64 temporaries (8x an 8-bit band, several at once): at 16 MiB the upload
#: thumbnail of a 30720 x 30720 plane took the server to 555 MiB, past the 512 MiB bound.
BAND_BYTES = 4 * 1024**2

#: Planes from this size on are read and measured on threads, several planes at once. Why
#: not smaller ones: a thread hand-off costs tens of microseconds, as much as measuring a
#: small plane (the ingest batch's stacks); a 2048 x 2048 16-bit plane takes 3 ms.
THREAD_PLANE_BYTES = 1024**2


def builder_for(reader: ImageReader, scene: int = 0) -> QualityBuilder:
    """An empty :class:`QualityBuilder` sized for ``scene`` of ``reader``."""
    metadata = reader.metadata(scene)
    info = reader.scene_info(scene)
    names = [ch.name for ch in metadata.channels]
    return QualityBuilder(
        scene=scene,
        size_t=info.size_t,
        size_c=info.size_c,
        size_z=info.size_z,
        channel_names=names + [None] * (info.size_c - len(names)),
        time_interval_s=metadata.time_interval_s,
        significant_bits=metadata.significant_bits,
    )


def plane_observer(
    builder: QualityBuilder, t: int, significant_bits: int | None
) -> Callable[[int, int, np.ndarray], None]:
    """A callback for :func:`~zstack_analyzer.render.projection.project` feeding ``builder``."""

    def observe(c: int, z0: int, block: np.ndarray) -> None:
        for i in range(block.shape[0]):
            builder.add(t, c, z0 + i, measure_plane(block[i], significant_bits=significant_bits))

    return observe


def measure_reader(
    reader: ImageReader,
    scene: int = 0,
    *,
    builder: QualityBuilder | None = None,
    workers: int | None = None,
) -> SceneQuality:
    """Measure every plane of ``scene`` not yet in ``builder`` and summarise.

    Examples
    --------
    >>> from zstack_analyzer import open_image
    >>> with open_image("stack.ome.tif") as reader:  # doctest: +SKIP
    ...     quality = measure_reader(reader)
    >>> quality.channels[0].best_focus_z  # doctest: +SKIP
    12
    """
    from zstack_analyzer.render.projection import ReaderSource, _default_workers, iter_blocks
    from zstack_analyzer.render.reduce import WHOLE_PLANE_BYTES, plane_bytes

    builder = builder if builder is not None else builder_for(reader, scene)
    bits = builder.significant_bits
    missing = builder.missing()
    for t in sorted({t for t, _, _ in missing}):
        source = ReaderSource(reader, scene, t)
        wanted = {(c, z) for tt, c, z in missing if tt == t}
        banded = plane_bytes(source) > WHOLE_PLANE_BYTES and (
            reader.region_grid(scene, 0) is not None
        )
        if banded:
            for c, z in sorted(wanted):
                builder.add(t, c, z, _measure_banded(reader, scene, t, c, z, source, bits))
            continue
        threads = _default_workers() if workers is None else max(1, workers)
        threaded = threads > 1 and len(wanted) > 1 and plane_bytes(source) >= THREAD_PLANE_BYTES
        # Each pooled thread decodes its own plane on one core: with fewer planes than
        # twice the threads, iter_blocks' reads (every core on the tiles of one plane) keep
        # more cores busy.
        if threaded and len(wanted) >= 2 * threads and _reads_into(reader):
            _measure_pooled(builder, source, sorted(wanted), bits, threads)
            continue
        channels = sorted({c for c, _ in wanted})
        planes = (
            (c, z0 + i, block[i])
            for c, z0, block in iter_blocks(source, channels, workers=workers)
            for i in range(block.shape[0])
            if (c, z0 + i) in wanted
        )
        if threaded:
            _measure_threaded(builder, t, planes, bits, threads)
        else:
            for c, z, plane in planes:
                builder.add(t, c, z, measure_plane(plane, significant_bits=bits))
    return builder.finish()


def _reads_into(reader: ImageReader) -> bool:
    """Whether ``reader`` decodes a plane straight into a given array (no copy of its own)."""
    from zstack_analyzer.readers._base import ImageReader

    return type(reader).read_plane_into is not ImageReader.read_plane_into


def _measure_pooled(
    builder: QualityBuilder,
    source: Any,
    wanted: list[tuple[int, int]],
    bits: int | None,
    threads: int,
) -> None:
    """Read and measure the ``wanted`` (c, z) planes of ``source`` on ``threads`` threads.

    Why not :func:`~zstack_analyzer.render.projection.iter_blocks` and a new
    array a plane: every thread reads its plane into one of ``threads`` arrays
    made once (:meth:`~zstack_analyzer.readers._base.ImageReader.read_plane_into`)
    and measures it while the other threads read or measure theirs. A new 8 MiB
    array a plane came back from the allocator as fresh pages (glibc gives the
    top of its heap back to the kernel when several planes are freed together):
    a page fault and a zeroed page every 4 KiB, a third of the CPU time of
    ``quality`` over a 2 GB stack. Reads and measures of different planes run on
    both cores; decoding (compressed planes) runs on every thread as before.
    Memory is ``threads`` planes, whatever the stack.
    """
    from zstack_analyzer.readers._base import reserve_plane

    reader, scene, t = source.reader, source.scene, source.t
    shape = (source.size_y, source.size_x, *((source.samples,) if source.samples else ()))
    spare: SimpleQueue[np.ndarray] = SimpleQueue()
    for _ in range(threads):  # at most ``threads`` tasks run at once: get() never waits
        spare.put(np.empty(shape, source.dtype))

    def read_and_measure(c: int, z: int) -> PlaneQuality:
        plane = spare.get()
        try:
            with reserve_plane(reader, scene):
                reader.read_plane_into(scene, t, c, z, plane)
            return measure_plane(plane, significant_bits=bits)
        finally:
            spare.put(plane)

    pending: deque[tuple[int, int, Future[PlaneQuality]]] = deque()
    todo = iter(wanted)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zstack-quality") as pool:
        try:
            for c, z in todo:
                # Each task runs in a copy of this context: its decodes count in this
                # request's decode scope (zstack_analyzer.budget), as iter_blocks' reads do.
                pending.append((c, z, pool.submit(copy_context().run, read_and_measure, c, z)))
                if len(pending) >= 2 * threads:
                    break
            while pending:
                c_done, z_done, future = pending.popleft()
                builder.add(t, c_done, z_done, future.result())
                for c, z in todo:
                    pending.append((c, z, pool.submit(copy_context().run, read_and_measure, c, z)))
                    break
        finally:
            for _, _, future in pending:
                future.cancel()


def _measure_threaded(
    builder: QualityBuilder,
    t: int,
    planes: Iterable[tuple[int, int, np.ndarray]],
    bits: int | None,
    threads: int,
) -> None:
    """Measure ``planes`` on ``threads`` threads while this thread reads the next ones.

    Why: uncompressed planes from the page cache are read in line (no decode
    threads), so read and measure ran one after the other on one core; the
    compiled scan holds no GIL, so the measures of planes k, k - 1, ... overlap
    the read of plane k + 1. At most ``threads + 1`` planes wait or are being
    measured, which bounds memory to a few planes.
    """
    pending: deque[tuple[int, int, Future[PlaneQuality]]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zstack-quality") as pool:
        try:
            for c, z, plane in planes:
                pending.append((c, z, pool.submit(measure_plane, plane, significant_bits=bits)))
                del plane
                while len(pending) > threads:
                    c_done, z_done, future = pending.popleft()
                    builder.add(t, c_done, z_done, future.result())
            while pending:
                c_done, z_done, future = pending.popleft()
                builder.add(t, c_done, z_done, future.result())
        finally:
            for _, _, future in pending:
                future.cancel()


def _measure_banded(
    reader: ImageReader, scene: int, t: int, c: int, z: int, source: Any, bits: int | None
) -> Any:
    """One large plane, read in row bands aligned to the file's stored blocks."""
    from zstack_analyzer.readers._base import reserve_plane

    grid = reader.region_grid(scene, 0) or (1, source.size_x)
    row_bytes = source.size_x * max(1, source.samples) * source.dtype.itemsize
    rows = max(1, BAND_BYTES // max(1, row_bytes))
    rows = max(grid[0], rows // max(1, grid[0]) * grid[0])
    acc = PlaneAccumulator(source.dtype, bits)
    for top in range(0, source.size_y, rows):
        bottom = min(source.size_y, top + rows)
        with reserve_plane(reader, scene):
            band = reader.read_region(scene, t, c, z, (top, bottom), (0, source.size_x))
        acc.add_rows(np.asarray(band))
    return acc.finish()


def thumbnail_with_quality(
    reader: ImageReader, spec: RenderSpec, *, workers: int | None = None
) -> tuple[Image.Image, SceneQuality]:
    """Render ``spec`` and measure the quality of its scene, each plane read once.

    The projection thumbnail streams the T=``spec.t`` planes of its channels
    through the measures as it maxes them (when it reads them at full
    resolution: not from a lower pyramid level or reduced regions); the planes
    it did not read (other time points and channels, or all of them for a
    reduced render) are read afterwards by :func:`measure_reader`.
    """
    from zstack_analyzer.render.thumbnails import render_reader

    builder = builder_for(reader, spec.scene)
    observe = plane_observer(builder, spec.t, builder.significant_bits)
    image = render_reader(reader, spec, workers=workers, observe=observe)
    quality = measure_reader(reader, spec.scene, builder=builder, workers=workers)
    return image, quality


def measure_file(
    path: Path | str,
    *,
    scenes: list[int] | None = None,
    limits: ReadLimits | None = None,
    workers: int | None = None,
) -> list[SceneQuality]:
    """Quality of ``scenes`` (default: every scene) of the file at ``path``."""
    from zstack_analyzer.limits import ReadLimits
    from zstack_analyzer.loader import open_image

    with open_image(path, limits=limits or ReadLimits()) as reader:
        wanted = scenes if scenes is not None else list(range(len(reader.scenes())))
        return [measure_reader(reader, s, workers=workers) for s in wanted]
