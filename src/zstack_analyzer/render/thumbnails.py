"""Thumbnails, projections, slices and orthogonal views: arrays or files to pictures.

Why one pipeline for two callers: :class:`ThumbnailGenerator` (the published,
async API) renders arrays a caller already holds; :func:`render_file` (the
service's entry point, synchronous, run in its worker threads) renders a file
by path without ever holding the stack, and caches the result. Both describe
the picture with a :class:`~zstack_analyzer.render.spec.RenderSpec` and go
through :func:`render_source`: read only what the view needs (one plane, or a
streamed projection), downsample early, then window, colour and composite.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import numpy as np

from zstack_analyzer._concurrency import LoopLimiters
from zstack_analyzer.cache import RenderCache, file_identity
from zstack_analyzer.errors import LimitExceededError, SceneNotFoundError
from zstack_analyzer.limits import ReadLimits
from zstack_analyzer.render import colour
from zstack_analyzer.render.encode import (
    MEDIA_TYPES,
    encode_image,
    format_for_path,
    write_atomic,
)
from zstack_analyzer.render.histogram import channel_histograms
from zstack_analyzer.render.projection import (
    ArraySource,
    PlaneSource,
    ReaderSource,
    View,
    block_mean,
    fit_size,
    project,
    read_section,
    read_slice,
)
from zstack_analyzer.render.reduce import Mode, bounded_source
from zstack_analyzer.render.spec import RenderSpec
from zstack_analyzer.storage.remote import RemoteObject

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from PIL import Image

    from zstack_analyzer.metadata import ImageMetadata
    from zstack_analyzer.readers._base import ImageReader

__all__ = [
    "MAX_OUTPUT_SIDE",
    "RenderResult",
    "ThumbnailGenerator",
    "channel_histograms",
    "orthogonal_layout",
    "render_file",
    "render_reader",
    "render_source",
]

logger = logging.getLogger(__name__)

#: Largest output side the renderer accepts (the service caps requests at 4096).
MAX_OUTPUT_SIDE = 16384
#: Channels composited when none are asked for.
MAX_DEFAULT_CHANNELS = 7
#: Gap between the panels of an orthogonal view, in output pixels.
PANEL_GAP = 2
#: Background where the orthogonal panels leave the canvas empty.
PANEL_BACKGROUND = (24, 24, 24)


@dataclass(frozen=True, slots=True)
class RenderResult:
    """An encoded picture with what HTTP needs to serve it.

    Attributes
    ----------
    data
        The encoded bytes.
    media_type
        ``image/png``, ``image/jpeg`` or ``image/webp``.
    etag
        ``spec.cache_key(identity)``: also the cache key.
    from_cache
        Whether the bytes came from the render cache.
    """

    data: bytes
    media_type: str
    etag: str
    from_cache: bool


# --------------------------------------------------------------------------- helpers
def _pixel_sizes(metadata: ImageMetadata | None) -> tuple[float, float, float]:
    """Physical (x, y, z) pixel sizes for aspect ratios; unknown ones are isotropic with X."""
    if metadata is None:
        return (1.0, 1.0, 1.0)
    x, y, z = metadata.get_voxel_size_micrometers()
    x = abs(x) if x else None
    y = abs(y) if y else None
    z = abs(z) if z else None
    base = x or y or 1.0
    xs = x or base
    ys = y or xs
    zs = z or xs
    if not all(math.isfinite(v) and v > 0 for v in (xs, ys, zs)):
        return (1.0, 1.0, 1.0)
    return (xs, ys, zs)


def _check_size(width: int, height: int) -> None:
    for label, value in (("width", width), ("height", height)):
        if not 1 <= value <= MAX_OUTPUT_SIDE:
            msg = f"output {label} {value} is out of range (1..{MAX_OUTPUT_SIDE})"
            raise LimitExceededError(msg)


def _select_channels(source: PlaneSource, channels: Sequence[int] | None) -> list[int]:
    if channels is None:
        return list(range(min(source.size_c, MAX_DEFAULT_CHANNELS)))
    chosen = [int(c) for c in channels]
    if not chosen:
        msg = f"{source.name}: no channel selected"
        raise SceneNotFoundError(msg)
    for c in chosen:
        source.check_channel(c)
    return chosen


def _windows_for(
    small: np.ndarray,
    *,
    dtype: np.dtype[Any],
    spec: RenderSpec,
    position: int,
    is_rgb: bool,
) -> list[colour.Window]:
    """Display window of each sample (one for grey, three for RGB) of one channel."""
    samples = small.shape[2] if small.ndim == 3 else 1
    if spec.windows is not None and position < len(spec.windows):
        lo, hi = spec.windows[position]
        return [(float(lo), float(hi))] * samples
    if not spec.normalize or (is_rgb and dtype == np.uint8):
        window = colour.dtype_window(dtype, small)
        return [window] * samples
    if small.ndim == 3:
        return [
            colour.percentile_window(small[..., s], spec.low_percentile, spec.high_percentile)
            for s in range(samples)
        ]
    return [colour.percentile_window(small, spec.low_percentile, spec.high_percentile)]


def render_panel(
    planes: Sequence[np.ndarray],
    out_size: tuple[int, int],
    *,
    spec: RenderSpec,
    channels: Sequence[int],
    dtype: np.dtype[Any],
    metadata: ImageMetadata | None = None,
    total: int | None = None,
) -> Image.Image:
    """Window, colour and composite 2-D channel planes into an RGB picture of ``out_size``.

    Each plane (Y, X or Y, X, S) is first block-averaged to just above the
    output size, so windows are computed on the small image and the colour
    work is proportional to the output, not the input.
    """
    from PIL import Image

    out_w, out_h = out_size
    height, width = planes[0].shape[:2]
    factor_y = max(1, height // out_h)
    factor_x = max(1, width // out_w)
    is_rgb = planes[0].ndim == 3
    tints = colour.channel_colors(channels, metadata=metadata, colors=spec.colors, total=total)
    layers: list[np.ndarray] = []
    layer_colours: list[tuple[float, float, float]] = []
    layer_windows: list[colour.Window] = []
    rgb_tints = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    for position, plane in enumerate(planes):
        small = block_mean(plane, factor_y, factor_x)
        windows = _windows_for(small, dtype=dtype, spec=spec, position=position, is_rgb=is_rgb)
        if small.ndim == 3:
            samples = small.shape[2]
            if samples >= 3:
                for s in range(3):
                    layers.append(small[..., s])
                    layer_colours.append(rgb_tints[s])
                    layer_windows.append(windows[s])
            else:  # grey + alpha, or two samples: show the first as this channel's colour
                layers.append(small[..., 0])
                layer_colours.append(tints[position])
                layer_windows.append(windows[0])
        else:
            layers.append(small)
            layer_colours.append(tints[position])
            layer_windows.append(windows[0])
    rgb = colour.composite(layers, layer_colours, layer_windows, gamma=spec.gamma)
    image = Image.fromarray(rgb, mode="RGB")
    if image.size != (out_w, out_h):
        shrinking = out_w <= image.width and out_h <= image.height
        method = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BILINEAR
        image = image.resize((out_w, out_h), method)
    return image


def _orthogonal_layout(
    sizes: tuple[int, int, int],
    box: tuple[int, int],
    pixel: tuple[float, float, float],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Output (w, h) of the XY, XZ and YZ panels, on one physical scale, fitting ``box``."""
    size_z, size_y, size_x = (max(1, s) for s in sizes)
    px, py, pz = pixel
    phys_x, phys_y, phys_z = size_x * px, size_y * py, size_z * pz
    total_w = 2 * phys_x + phys_z
    total_h = max(phys_y, phys_z)
    avail_w = max(3, box[0] - 2 * PANEL_GAP)
    scale = min(avail_w / total_w, box[1] / total_h)

    def side(value: float, limit: int) -> int:
        # Floor, not round: three rounded-up panels plus gaps could overflow the box.
        return min(limit, max(1, math.floor(value * scale + 1e-6)))

    xy = (side(phys_x, avail_w), side(phys_y, box[1]))
    xz = (side(phys_x, avail_w), side(phys_z, box[1]))
    yz = (side(phys_z, avail_w), side(phys_y, box[1]))
    return xy, xz, yz


def orthogonal_layout(
    sizes: tuple[int, int, int],
    box: tuple[int, int],
    metadata: ImageMetadata | None = None,
) -> dict[str, tuple[int, int, int, int]]:
    """Where each panel of the orthogonal view sits: ``{view: (left, top, width, height)}``.

    The three panels share one physical scale, so the X extent of XY equals
    that of XZ and the Y extent of XY that of YZ; Z is stretched by the voxel
    aspect (z / x) when the metadata states it.

    Examples
    --------
    >>> orthogonal_layout((10, 100, 100), (768, 256))["xz"]
    (258, 0, 256, 25)
    """
    return _layout_dict(*_orthogonal_layout(sizes, box, _pixel_sizes(metadata)))


def _layout_dict(
    xy: tuple[int, int], xz: tuple[int, int], yz: tuple[int, int]
) -> dict[str, tuple[int, int, int, int]]:
    return {
        "xy": (0, 0, *xy),
        "xz": (xy[0] + PANEL_GAP, 0, *xz),
        "yz": (xy[0] + PANEL_GAP + xz[0] + PANEL_GAP, 0, *yz),
    }


# --------------------------------------------------------------------------- pipeline
def render_source(
    source: PlaneSource,
    spec: RenderSpec,
    *,
    metadata: ImageMetadata | None = None,
    workers: int | None = None,
    observe: Callable[[int, int, np.ndarray], None] | None = None,
) -> Image.Image:
    """Render ``spec`` (its scene and timepoint already chosen by ``source``) as an RGB picture.

    Parameters
    ----------
    source
        The stack of one scene and timepoint.
    spec
        What to draw; its ``scene`` and ``t`` are ignored here.
    metadata
        For channel colours and the physical voxel aspect.
    workers
        Decoding threads (default: the cores).
    observe
        Sees every block a default (Z projection) thumbnail reads: see
        :func:`~zstack_analyzer.render.projection.project`.

    Raises
    ------
    SceneNotFoundError
        When z, a channel, the axis or the section index is out of range.
    """
    from PIL import Image

    _check_size(spec.width, spec.height)
    box = (spec.width, spec.height)
    channels = _select_channels(source, spec.channels)
    px, py, pz = _pixel_sizes(metadata)
    # A reduced source's pixel covers scale_y x scale_x pixels of the file.
    px, py = px * source.scale_x, py * source.scale_y

    def draw(
        planes: Sequence[np.ndarray], out: tuple[int, int], spec: RenderSpec = spec
    ) -> Image.Image:
        return render_panel(
            planes,
            out,
            spec=spec,
            channels=channels,
            dtype=source.dtype,
            metadata=metadata,
            total=source.size_c,
        )

    kind = spec.kind

    if kind in ("thumbnail", "slice") and (spec.z is not None or kind == "slice"):
        z = 0 if spec.z is None else spec.z
        planes = read_slice(source, channels, z)
        out = fit_size(source.size_y, source.size_x, box, pixel_height=py, pixel_width=px)
        return draw(planes, out)

    if kind == "thumbnail":
        # The seed's default: the Z projection; a Y=1 line scan shows its XZ view instead.
        if source.size_y == 1 and source.size_z > 1:
            planes = project(source, channels, ["xz"], workers=workers, observe=observe)["xz"]
            out = fit_size(source.size_z, source.size_x, box, pixel_height=pz, pixel_width=px)
        else:
            planes = project(source, channels, ["xy"], workers=workers, observe=observe)["xy"]
            out = fit_size(source.size_y, source.size_x, box, pixel_height=py, pixel_width=px)
        return draw(planes, out)

    if kind == "mip":
        if spec.axis not in (0, 1, 2):
            msg = f"{source.name}: projection axis {spec.axis} is not 0 (Z), 1 (Y) or 2 (X)"
            raise SceneNotFoundError(msg)
        view: View = ("xy", "xz", "yz")[spec.axis]
        planes = project(source, channels, [view], workers=workers)[view]
        rows, cols = planes[0].shape[:2]
        pixel_rows = (py, pz, py)[spec.axis]
        pixel_cols = (px, px, pz)[spec.axis]
        out = fit_size(rows, cols, box, pixel_height=pixel_rows, pixel_width=pixel_cols)
        return draw(planes, out)

    if kind == "section":
        planes = read_section(source, channels, spec.plane, spec.index, workers=workers)
        rows, cols = planes[0].shape[:2]
        if spec.plane == "xz":
            out = fit_size(rows, cols, box, pixel_height=pz, pixel_width=px)
        else:
            out = fit_size(rows, cols, box, pixel_height=py, pixel_width=pz)
        return draw(planes, out)

    if kind == "orthogonal":
        views = project(source, channels, ["xy", "xz", "yz"], workers=workers)
        layout = _layout_dict(
            *_orthogonal_layout((source.size_z, source.size_y, source.size_x), box, (px, py, pz))
        )
        # Each panel gets its own percentile windows: a projection over 2000 rows and one
        # over 20 planes have very different statistics, and a shared window saturates one.
        right = max(left + w for left, _, w, _ in layout.values())
        bottom = max(top + h for _, top, _, h in layout.values())
        canvas = Image.new("RGB", (right, bottom), PANEL_BACKGROUND)
        for name in ("xy", "xz", "yz"):
            left, top, w, h = layout[name]
            picture = draw(views[name], (w, h))
            canvas.paste(picture, (left, top))
        return canvas

    msg = f"unknown render kind {kind!r}"
    raise ValueError(msg)


def _pick_level(reader: ImageReader, spec: RenderSpec, metadata: ImageMetadata) -> int:
    """Smallest pyramid level still at least as large as the requested picture."""
    if spec.kind not in ("thumbnail", "slice") and not (spec.kind == "mip" and spec.axis == 0):
        return 0
    if spec.kind == "thumbnail" and metadata.size_y == 1:
        return 0
    try:
        levels = reader.level_count(spec.scene)
    except SceneNotFoundError:
        raise
    if levels <= 1:
        return 0
    px, py, _ = _pixel_sizes(metadata)
    want_w, want_h = fit_size(
        metadata.size_y, metadata.size_x, (spec.width, spec.height), pixel_height=py, pixel_width=px
    )
    shapes = list(metadata.pyramid_levels) if len(metadata.pyramid_levels) == levels else []
    if not shapes:
        shapes = [
            (
                int(reader.to_dask(spec.scene, lv).shape[3]),
                int(reader.to_dask(spec.scene, lv).shape[4]),
            )
            for lv in range(levels)
        ]
    best = 0
    for level, (size_y, size_x) in enumerate(shapes):
        if size_y >= want_h and size_x >= want_w:
            best = level
    return best


def render_reader(
    reader: ImageReader,
    spec: RenderSpec,
    *,
    workers: int | None = None,
    observe: Callable[[int, int, np.ndarray], None] | None = None,
) -> Image.Image:
    """Render ``spec`` from an open reader (scene and timepoint taken from the spec).

    ``observe`` sees the blocks of a default thumbnail only when they are the
    file's full-resolution planes (not a lower pyramid level, not reduced).
    """
    metadata = reader.metadata(spec.scene)
    level = _pick_level(reader, spec, metadata)
    full = ReaderSource(reader, spec.scene, spec.t, level=level)
    factors, mode = _reduction(full, spec, metadata)
    source = bounded_source(full, factors, mode=mode, limits=reader.limits)
    if level != 0 or source is not full:
        observe = None
    return render_source(source, spec, metadata=metadata, workers=workers, observe=observe)


def _reduction(
    source: PlaneSource, spec: RenderSpec, metadata: ImageMetadata | None
) -> tuple[tuple[int, int], Mode]:
    """Y and X reduction factors that still give ``spec``'s picture its full resolution.

    Used only for planes too large to read whole (see :mod:`.reduce`): slices and
    sections are block-averaged, projections take block maxima (the maximum
    over Z of block maxima is exactly the block maximum of the projection).
    """
    px, py, pz = _pixel_sizes(metadata)
    ny, nx, nz = source.size_y, source.size_x, source.size_z
    box = (max(1, spec.width), max(1, spec.height))
    longest = max(box)
    kind = spec.kind
    if kind == "section":
        if spec.plane == "xz":
            out_w, _ = fit_size(nz, nx, box, pixel_height=pz, pixel_width=px)
            return (1, nx // out_w), "mean"
        _, out_h = fit_size(ny, nz, box, pixel_height=py, pixel_width=pz)
        return (ny // out_h, 1), "mean"
    if kind == "orthogonal":
        (out_w, out_h), _, _ = _orthogonal_layout((nz, ny, nx), box, (px, py, pz))
        return (ny // out_h, nx // out_w), "max"
    if kind == "mip" and spec.axis == 1:
        out_w, _ = fit_size(nz, nx, box, pixel_height=pz, pixel_width=px)
        return (max(1, ny // longest), nx // out_w), "max"
    if kind == "mip" and spec.axis == 2:
        _, out_h = fit_size(ny, nz, box, pixel_height=py, pixel_width=pz)
        return (ny // out_h, max(1, nx // longest)), "max"
    out_w, out_h = fit_size(ny, nx, box, pixel_height=py, pixel_width=px)
    mode: Mode = "mean" if kind == "slice" or spec.z is not None else "max"
    return (ny // out_h, nx // out_w), mode


def render_file(
    path: Path | str | RemoteObject,
    spec: RenderSpec,
    *,
    limits: ReadLimits | None = None,
    cache: RenderCache | None = None,
    identity: str | None = None,
) -> RenderResult:
    """Render ``spec`` of the file at ``path`` to encoded bytes, through the cache.

    Synchronous and blocking: the service calls it in a worker thread. A cache
    hit costs one small file read; a miss opens the file, reads only what the
    view needs, encodes, stores and closes.

    Parameters
    ----------
    path
        The image file, or an object in a bucket read by ranges.
    spec
        What to render.
    limits
        Read limits for opening the file.
    cache
        Render cache; ``None`` renders every time.
    identity
        The file's identity for the cache key (the service passes the upload's
        SHA-256); ``None`` computes :func:`~zstack_analyzer.cache.file_identity`.

    Raises
    ------
    SceneNotFoundError
        When scene, t, z, a channel, the axis or the section index is out of range.

    Examples
    --------
    >>> result = render_file("cells.czi", RenderSpec(kind="mip"))  # doctest: +SKIP
    >>> result.media_type  # doctest: +SKIP
    'image/png'
    """
    from zstack_analyzer.loader import open_image

    if identity is not None:
        ident = identity
    elif isinstance(path, RemoteObject):
        ident = str(path)  # a stored object never changes under its name
    else:
        ident = file_identity(path)
    etag = spec.cache_key(ident)
    media_type = MEDIA_TYPES[spec.image_format]
    if cache is not None:
        cached = cache.get(ident, etag)
        if cached is not None:
            return RenderResult(cached, media_type, etag, from_cache=True)
    with open_image(path, limits=limits or ReadLimits()) as reader:
        image = render_reader(reader, spec)
    data = encode_image(image, spec.image_format)
    if cache is not None:
        try:
            cache.put(ident, etag, data)
        except OSError:
            logger.warning(
                "render cache %s: could not store %s", cache.directory, etag, exc_info=True
            )
    return RenderResult(data, media_type, etag, from_cache=False)


# --------------------------------------------------------------------------- facade
def _as_source(image_data: Any, metadata: ImageMetadata | None, timepoint: int) -> ArraySource:
    """Wrap ``image_data`` (C,Z,Y,X(,S); a leading T is accepted) as a plane source."""
    shape = tuple(int(s) for s in image_data.shape)
    name = metadata.filename if metadata is not None else "image"
    ndim = len(shape)
    has_samples = (
        metadata.samples_per_pixel > 1
        if metadata is not None
        else ndim >= 5 and shape[-1] in (3, 4) and shape[-2] > 4
    )
    spatial = 5 if has_samples else 4  # C, Z, Y, X (+S)
    if ndim == spatial + 1:  # a leading T axis
        if not 0 <= timepoint < shape[0]:
            msg = f"{name}: timepoint {timepoint} is out of range (0..{shape[0] - 1})"
            raise SceneNotFoundError(msg)
        image_data = image_data[timepoint]
    elif timepoint != 0:
        msg = f"{name}: timepoint {timepoint} is out of range (the array has no T axis)"
        raise SceneNotFoundError(msg)
    while len(image_data.shape) < spatial:  # Y,X -> Z,Y,X -> C,Z,Y,X
        image_data = image_data[np.newaxis]
    if len(image_data.shape) != spatial:
        msg = f"{name}: expected an array with axes C, Z, Y, X (+S), got shape {shape}"
        raise ValueError(msg)
    return ArraySource(image_data, name=name)


def _windows_tuple(
    windows: Sequence[tuple[float, float]] | None,
) -> tuple[tuple[float, float], ...] | None:
    if windows is None:
        return None
    return tuple((float(lo), float(hi)) for lo, hi in windows)


def _render_array_sync(
    image_data: Any,
    spec: RenderSpec,
    metadata: ImageMetadata | None,
    timepoint: int,
) -> Image.Image:
    source = _as_source(image_data, metadata, timepoint)
    return render_source(source, spec, metadata=metadata)


def _save_sync(image: Image.Image, path: Path) -> None:
    write_atomic(path, encode_image(image, format_for_path(path)))


class ThumbnailGenerator:
    """Thumbnails, projections and orthogonal views of image arrays, without blocking the loop.

    Takes the array :meth:`ImageLoader.load_image` returns (C, Z, Y, X (+S),
    numpy or dask); with ``metadata`` it uses the file's channel colours and
    the physical voxel aspect. Projections stream plane by plane, so a lazy
    array larger than memory still renders. The instance holds no event-loop
    state; blocking work runs in worker threads.

    Parameters
    ----------
    cache_dir
        Where :meth:`render_file` caches rendered files (a :class:`RenderCache`).
    cache
        An existing cache to share (wins over ``cache_dir``).
    limits
        Read limits for :meth:`render_file`.

    Examples
    --------
    >>> gen = ThumbnailGenerator()
    >>> data, md = await ImageLoader().load_image("cells.czi", lazy=True)  # doctest: +SKIP
    >>> thumb = await gen.generate_thumbnail(data, metadata=md)  # doctest: +SKIP
    >>> await gen.save_thumbnail(thumb, "cells.png")  # doctest: +SKIP
    """

    def __init__(
        self,
        cache_dir: Path | str | None = None,
        *,
        cache: RenderCache | None = None,
        limits: ReadLimits | None = None,
        max_concurrency: int = 4,
    ) -> None:
        if cache is None and cache_dir is not None:
            cache = RenderCache(cache_dir)
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.limits = limits or ReadLimits()
        self.max_concurrency = max_concurrency
        self._limiters = LoopLimiters(max_concurrency)

    def _limiter(self) -> anyio.CapacityLimiter:
        # One limiter per running loop: shared by every call in that loop, so the cap holds.
        return self._limiters.get()

    async def _render(
        self, image_data: Any, spec: RenderSpec, metadata: ImageMetadata | None, timepoint: int
    ) -> Image.Image:
        return await anyio.to_thread.run_sync(
            _render_array_sync, image_data, spec, metadata, timepoint, limiter=self._limiter()
        )

    async def generate_thumbnail(
        self,
        image_data: Any,
        size: tuple[int, int] = (256, 256),
        z_slice: int | None = None,
        channels: Sequence[int] | None = None,
        normalize: bool = True,
        *,
        metadata: ImageMetadata | None = None,
        timepoint: int = 0,
        gamma: float = 1.0,
        windows: Sequence[tuple[float, float]] | None = None,
        colors: Sequence[str] | None = None,
        percentiles: tuple[float, float] = (1.0, 99.0),
    ) -> Image.Image:
        """Plane ``z_slice``, or the Z maximum projection when it is ``None``, as an RGB picture.

        Every channel in ``channels`` (default: all, up to seven) is composited
        additively in its colour; contrast is the per-channel ``percentiles``
        window unless ``windows`` (raw values, one per channel) or
        ``normalize=False`` (plain dtype range) say otherwise. The picture fits
        ``size`` (width, height) and keeps the aspect ratio.
        """
        spec = RenderSpec(
            kind="thumbnail",
            z=z_slice,
            channels=tuple(channels) if channels is not None else None,
            width=int(size[0]),
            height=int(size[1]),
            colors=tuple(colors) if colors is not None else None,
            windows=_windows_tuple(windows),
            low_percentile=percentiles[0],
            high_percentile=percentiles[1],
            gamma=gamma,
            normalize=normalize,
        )
        return await self._render(image_data, spec, metadata, timepoint)

    async def generate_mip_thumbnail(
        self,
        image_data: Any,
        size: tuple[int, int] = (512, 512),
        channels: Sequence[int] | None = None,
        axis: int = 0,
        *,
        metadata: ImageMetadata | None = None,
        timepoint: int = 0,
        gamma: float = 1.0,
        windows: Sequence[tuple[float, float]] | None = None,
        normalize: bool = True,
    ) -> Image.Image:
        """Maximum projection along ``axis`` (0=Z: XY view, 1=Y: XZ view, 2=X: YZ view).

        The XZ view has rows Z and columns X; the YZ view rows Y and columns Z;
        Z is stretched by the voxel aspect when ``metadata`` gives it.
        """
        spec = RenderSpec(
            kind="mip",
            axis=axis,
            channels=tuple(channels) if channels is not None else None,
            width=int(size[0]),
            height=int(size[1]),
            windows=_windows_tuple(windows),
            gamma=gamma,
            normalize=normalize,
        )
        return await self._render(image_data, spec, metadata, timepoint)

    async def generate_multi_view_thumbnail(
        self,
        image_data: Any,
        size: tuple[int, int] = (768, 256),
        *,
        metadata: ImageMetadata | None = None,
        channels: Sequence[int] | None = None,
        timepoint: int = 0,
        gamma: float = 1.0,
        windows: Sequence[tuple[float, float]] | None = None,
    ) -> Image.Image:
        """XY, XZ and YZ maximum projections side by side, on one physical scale.

        All three come from one pass over Z. With ``metadata`` the Z extent is
        scaled by the voxel aspect, so an anisotropic stack looks right; see
        :func:`orthogonal_layout` for where each panel sits.
        """
        spec = RenderSpec(
            kind="orthogonal",
            channels=tuple(channels) if channels is not None else None,
            width=int(size[0]),
            height=int(size[1]),
            windows=_windows_tuple(windows),
            gamma=gamma,
        )
        return await self._render(image_data, spec, metadata, timepoint)

    async def render(
        self,
        image_data: Any,
        spec: RenderSpec,
        *,
        metadata: ImageMetadata | None = None,
        timepoint: int = 0,
    ) -> Image.Image:
        """Render any :class:`RenderSpec` (slice, section, ...) of an array."""
        return await self._render(image_data, spec, metadata, timepoint)

    async def render_file(self, path: Path | str, spec: RenderSpec) -> RenderResult:
        """Render ``spec`` of a file by path, through this generator's cache."""
        return await anyio.to_thread.run_sync(
            _render_file_kw, path, spec, self.limits, self.cache, limiter=self._limiter()
        )

    async def save_thumbnail(self, image: Image.Image, path: Path | str) -> None:
        """Save ``image`` as PNG, JPEG or WebP by the extension of ``path``, atomically."""
        target = Path(path)
        format_for_path(target)  # fail fast, on the caller's side, for a bad extension
        await anyio.to_thread.run_sync(_save_sync, image, target, limiter=self._limiter())

    def __repr__(self) -> str:
        return f"ThumbnailGenerator(cache={self.cache!r})"


def _render_file_kw(
    path: Path | str, spec: RenderSpec, limits: ReadLimits, cache: RenderCache | None
) -> RenderResult:
    return render_file(path, spec, limits=limits, cache=cache)
